/* conf_failure.c - conformance cases: when things go wrong. A peer
 * killed mid-transfer, waits that time out, releasing and destroying with
 * transfers in flight, and errors that stick (the suite:
 * test_conformance.c). */
#include "xt_conf.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

/* cf_cont_later resumes a SIGSTOPped peer after a delay, so that a call
 * that wrongly waits for it does not hang the case. */
typedef struct {
    pid_t pid;
    unsigned delay_ms;
    atomic_int done; /* set by the case: resume now */
} cf_cont_arg;

static void *
cf_cont_later(void *arg)
{
    cf_cont_arg *c = arg;
    unsigned waited;

    for (waited = 0; waited < c->delay_ms && !atomic_load(&c->done);
         waited += 10) {
        usleep(10000);
    }
    kill(c->pid, SIGCONT);
    return NULL;
}

/* A peer killed with SIGKILL during a loop of big transfers (NIXL
 * error_handling "during transfer", §4.5, §7.12; DESIGN §3: a dead peer
 * surfaces as NXL_ERR_REMOTE_DISCONNECT, never a hang): the first error
 * is REMOTE_DISCONNECT (or NOT_FOUND once the peer is marked dead) within
 * 2 s; later posts keep failing; a restarted peer of the same name loads
 * with nxl_md_fetch and is used. */
int
t_peer_killed(void)
{
    const uint64_t len = 8 * CF_MIB;
    cf_peer_cfg pc = {NULL, len, 0, 0}, pc2 = {NULL, len, 0, 1};
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL, *x2 = NULL;
    nxl_status_t st;
    uint64_t t0, dt;
    uint8_t *loc;
    cf_peer p, p2;
    int k, posts = 0;

    CF_NEED_WHY(NXL_CAP_REMOTE, "the death of a peer process during transfers");
    XT_ASSERT(cf_spawn(&p, &pc) == 0);
    XT_ASSERT(cf_spawn(&p2, &pc2) == 0);
    XT_ASSERT_OK(cf_agent("main", 0, &a));
    XT_ASSERT_OK(cf_fetch(a, &p));
    loc = cf_map(len);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, len));
    cf_fill(loc, len, 800, 0);
    XT_ASSERT_OK(cf_xfer1(a, NXL_WRITE, (uintptr_t)loc,
                          cf_raddr(&p, CF_REG_HEAP, 0), len, "peer", NULL, &x));
    for (k = 0; k < 3; k++) {
        XT_ASSERT_OK(cf_run(x, NULL));
    }

    /* Kill it right after a post (in flight if the backend is async). */
    st = nxl_xfer_post(x, NULL);
    t0 = xt_now_ms();
    cf_pkill(&p);
    for (;;) {
        if (st == NXL_IN_PROG) {
            st = nxl_xfer_wait(x, 50);
            if (st == NXL_ERR_TIMEOUT) {
                st = NXL_IN_PROG;
            }
        } else if (st == NXL_OK) {
            st = nxl_xfer_post(x, NULL);
            posts++;
        } else {
            break;
        }
        if (xt_now_ms() - t0 > 5000) {
            XT_FAILF("no error 5 s after the peer was killed (%d posts "
                     "succeeded)",
                     posts);
        }
    }
    dt = xt_now_ms() - t0;
    printf("  peer death seen after %" PRIu64 " ms (%s)\n", dt,
           nxl_status_name(st));
    CF_ASSERT_ONE_OF(st, NXL_ERR_REMOTE_DISCONNECT, NXL_ERR_NOT_FOUND);
    if (dt > 2000) {
        XT_FAILF("peer death reported after %" PRIu64 " ms (> 2000)", dt);
    }
    /* Later posts fail at once (the peer is gone), never hang. */
    st = nxl_xfer_post(x, NULL);
    if (st == NXL_IN_PROG) {
        st = nxl_xfer_wait(x, 2000);
    }
    CF_ASSERT_ONE_OF(st, NXL_ERR_REMOTE_DISCONNECT, NXL_ERR_NOT_FOUND);
    printf("  next post: %s; nxl_md_check: %s\n", nxl_status_name(st),
           nxl_status_name(nxl_md_check(a, "peer", NULL)));
    nxl_xfer_release(x);
    /* New requests to the dead peer fail too. */
    CF_ASSERT_ONE_OF(cf_xfer1(a, NXL_WRITE, (uintptr_t)loc,
                              cf_raddr(&p, CF_REG_HEAP, 0), len, "peer", NULL,
                              &x2),
                     NXL_ERR_NOT_FOUND, NXL_ERR_REMOTE_DISCONNECT);

    /* A new process of the same name: fetch and use. */
    XT_ASSERT(cf_peer_start(&p2) == 0);
    XT_ASSERT_OK(cf_fetch(a, &p2));
    XT_ASSERT_OK(cf_xfer1(a, NXL_WRITE, (uintptr_t)loc,
                          cf_raddr(&p2, CF_REG_HEAP, 0), len, "peer", NULL,
                          &x2));
    cf_fill(loc, len, 801, 0);
    XT_ASSERT_OK(cf_run(x2, NULL));
    XT_ASSERT(cf_pcheck(&p2, CF_REG_HEAP, 0, len, 801, "restarted peer") == 0);
    nxl_xfer_release(x2);
    nxl_agent_destroy(a);
    cf_unmap(loc, len);
    return cf_pstop(&p2);
}

/* nxl_xfer_wait with a timeout (nxl.h; NIXL has no wait): NOT_POSTED for
 * an unposted request; with the peer stopped (SIGSTOP) an unfinished
 * transfer gives NXL_ERR_TIMEOUT after about the timeout, sleeping rather
 * than spinning; a zero timeout returns at once; once the peer resumes the
 * wait completes and the data is there. Backends that complete without
 * the peer's help (CMA) just finish; so does a FILE target, which nothing
 * can hold back (the rest is checked all the same). */
int
t_wait_timeout(void)
{
    const uint64_t len = 16 * CF_MIB;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    nxl_status_t st;
    cf_cont_arg ca;
    pthread_t th;
    uint64_t t0, dt, c0, dc;
    uint8_t *loc;
    cf_tgt t;

    CF_NEED_TGT(0);
    XT_ASSERT(cf_tsetup(&t, len, 0, &a) == 0);
    loc = cf_map(len);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, len));
    cf_fill(loc, len, 1000, 0);
    XT_ASSERT_OK(cf_txfer1(a, NXL_WRITE, (uintptr_t)loc, &t, 0, len, NULL, &x));
    t0 = xt_now_ms();
    XT_ASSERT_STATUS(nxl_xfer_wait(x, 500), NXL_ERR_NOT_POSTED);
    XT_ASSERT(xt_now_ms() - t0 < 400);

    if (t.kind == CF_T_PEER) {
        XT_ASSERT_EQ(xt_stop_process(t.peer.pid), 0);
        ca.pid = t.peer.pid;
        ca.delay_ms = 6000;
        atomic_store(&ca.done, 0);
        XT_ASSERT_EQ(pthread_create(&th, NULL, cf_cont_later, &ca), 0);
    } else {
        printf("  note: nothing holds a FILE target back; the wait runs on "
               "whatever the device leaves in flight\n");
    }
    t0 = xt_now_ms();
    st = nxl_xfer_post(x, NULL);
    dt = xt_now_ms() - t0;
    if (dt > 3000) {
        XT_FAILF("post blocked %" PRIu64 " ms (%s)", dt,
                 t.kind == CF_T_PEER ? "peer stopped" : "FILE target");
    }
    if (st == NXL_IN_PROG) {
        t0 = xt_now_ms();
        c0 = cf_cpu_us();
        st = nxl_xfer_wait(x, 300);
        dt = xt_now_ms() - t0;
        dc = cf_cpu_us() - c0;
        if (st == NXL_ERR_TIMEOUT) {
            XT_ASSERT(nxl_last_error()[0] != '\0');
            if (dt < 280 || dt > 2500) {
                XT_FAILF("wait(300 ms) timed out after %" PRIu64 " ms", dt);
            }
            if (dc > dt * 1000 / 2) {
                XT_FAILF("wait spun: %" PRIu64 " us CPU in %" PRIu64 " ms", dc,
                         dt);
            }
            t0 = xt_now_ms();
            st = nxl_xfer_wait(x, 0);
            XT_ASSERT(xt_now_ms() - t0 < 200);
            if (st != NXL_ERR_TIMEOUT && st != NXL_OK) {
                XT_FAILF("wait(0) -> %s (%s)", nxl_status_name(st),
                         nxl_last_error());
            }
        } else {
            XT_ASSERT_OK(st);
            printf("  note: transfer finished within 300 ms%s\n",
                   t.kind == CF_T_PEER ? " with the peer stopped" : "");
        }
    } else {
        XT_ASSERT_OK(st);
        printf("  note: post completed inline%s\n",
               t.kind == CF_T_PEER ? " with the peer stopped" : "");
    }
    if (t.kind == CF_T_PEER) {
        atomic_store(&ca.done, 1);
        pthread_join(th, NULL);
    }
    if (st != NXL_OK) {
        XT_ASSERT_OK(nxl_xfer_wait(x, CF_XFER_TIMEOUT_MS));
    }
    XT_ASSERT_OK(nxl_xfer_status(x));
    XT_ASSERT(cf_tcheck(&t, 0, len, 1000, "after wait") == 0);
    nxl_xfer_release(x);
    nxl_agent_destroy(a);
    cf_unmap(loc, len);
    return cf_tstop(&t);
}

/* nxl_xfer_release of an in-flight request (nxl.h: cancels and returns
 * only when no backend touches its buffers; NIXL releaseXferReq): WRITE
 * and READ right after post, then with the peer stopped (release must not
 * wait for it) or, on a FILE target, a READ of 4096 scattered 4 KiB
 * pieces (more than the backend keeps in flight). After a READ's release
 * the local buffer is overwritten and must stay so (a late completion
 * would land in it); every buffer is unmapped at once after release (a
 * late access would crash) and the agent keeps working with the target.
 * UCX over TCP (UCX@netns): the stopped peer gets one 4 KiB WRITE, which
 * the sockets take whole; a WRITE that fills them makes UCX 1.13.1 crash
 * now and then after the reset (docs/backends/ucx.md, "Limits and
 * notes"). */
int
t_release_inflight(void)
{
    enum { NP = 4096 };
    const uint64_t len = 16 * CF_MIB, piece = len / NP;
    static nxl_desc_t ld[NP], rd[NP];
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    nxl_dlist_t ll, rl;
    nxl_status_t st;
    cf_cont_arg ca;
    pthread_t th;
    uint64_t t0, dt;
    uint8_t *loc;
    cf_tgt t;
    size_t i;
    int k, in_flight = 0;

    CF_NEED_TGT(0);
    XT_ASSERT(cf_tsetup(&t, len, 0, &a) == 0);
    for (k = 0; k < 3; k++) {
        nxl_op_t op = k == 0                ? NXL_WRITE
                      : k == 1              ? NXL_READ
                      : t.kind == CF_T_PEER ? NXL_WRITE
                                            : NXL_READ;

        loc = cf_map(len);
        XT_ASSERT(loc != NULL);
        XT_ASSERT_OK(cf_reg(a, loc, len));
        if (k == 2 && t.kind != CF_T_PEER) {
            for (i = 0; i < NP; i++) {
                ld[i] = (nxl_desc_t){(uintptr_t)loc + i * piece, piece, 0};
                rd[i] = cf_tdesc(&t, (NP - 1 - i) * piece, piece);
            }
            ll = cf_dl(ld, NP);
            rl = cf_tdl(&t, rd, NP);
            XT_ASSERT_OK(
                nxl_xfer_create(a, op, &ll, &rl, cf_tname(&t, a), NULL, &x));
        } else {
            uint64_t xlen = len;

            if (k == 2 && t.kind == CF_T_PEER && cf_netns() &&
                strcasecmp(cf_be(), "UCX") == 0) {
                xlen = 4096;
            }
            XT_ASSERT_OK(
                cf_txfer1(a, op, (uintptr_t)loc, &t, 0, xlen, NULL, &x));
        }
        if (k == 2 && t.kind == CF_T_PEER) {
            XT_ASSERT_EQ(xt_stop_process(t.peer.pid), 0);
            ca.pid = t.peer.pid;
            ca.delay_ms = 4000;
            atomic_store(&ca.done, 0);
            XT_ASSERT_EQ(pthread_create(&th, NULL, cf_cont_later, &ca), 0);
        }
        st = nxl_xfer_post(x, NULL);
        if (st != NXL_OK && st != NXL_IN_PROG) {
            XT_FAILF("post -> %s (%s)", nxl_status_name(st), nxl_last_error());
        }
        in_flight += st == NXL_IN_PROG;
        t0 = xt_now_ms();
        nxl_xfer_release(x);
        dt = xt_now_ms() - t0;
        if (op == NXL_READ) {
            /* Nothing may write into the buffer any more. */
            memset(loc, 0x5a, len);
            usleep(20000);
            XT_ASSERT(cf_check_byte(loc, len, 0x5a,
                                    "READ buffer after its release") == 0);
        }
        XT_ASSERT_OK(cf_dereg(a, loc, len));
        cf_unmap(loc, len);
        if (k == 2 && t.kind == CF_T_PEER) {
            atomic_store(&ca.done, 1);
            pthread_join(th, NULL);
            if (dt >= 3500) {
                XT_FAILF("release of an in-flight request waited %" PRIu64
                         " ms for a stopped peer",
                         dt);
            }
        }
    }
    printf("  %d of 3 posts were in flight at their release\n", in_flight);

    /* The agent and the target still work. */
    loc = cf_map(CF_MIB);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, CF_MIB));
    XT_ASSERT_OK(
        cf_txfer1(a, NXL_WRITE, (uintptr_t)loc, &t, 0, CF_MIB, NULL, &x));
    cf_fill(loc, CF_MIB, 1100, 0);
    XT_ASSERT_OK(cf_run(x, NULL));
    XT_ASSERT(cf_tcheck(&t, 0, CF_MIB, 1100, "after release") == 0);
    nxl_xfer_release(x);
    nxl_agent_destroy(a);
    cf_unmap(loc, CF_MIB);
    return cf_tstop(&t);
}

/* cf_sticky_thr asks for the status of a failed transfer on a thread of
 * its own (nxl_last_error is per thread). */
typedef struct {
    nxl_xfer_t *x;
    nxl_status_t st;
    char err[CF_ERR_MAX];
} cf_sticky_arg;

static void *
cf_sticky_thr(void *arg)
{
    cf_sticky_arg *s = arg;

    s->st = nxl_xfer_status(s->x);
    snprintf(s->err, sizeof(s->err), "%s", nxl_last_error());
    return NULL;
}

/* Errors stick (nxl.h nxl_xfer_status: "the sticky error of the
 * transfer"): a transfer that fails in the backend reports that error,
 * with a message, from every later nxl_xfer_status and nxl_xfer_wait,
 * also on another thread, and never turns into success by itself; a
 * repost once the cause is gone succeeds and moves the data. The failure
 * is a READ from a FILE target shrunk below its registered range (a short
 * read, NXL_ERR_IO). A transfer between registered memories of two live
 * processes cannot be made to fail in the backend; for transport backends
 * t_peer_killed checks that the failure a dead peer causes stays. */
int
t_sticky_error(void)
{
    const uint64_t len = CF_MIB, short_len = 64 * CF_KIB;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    nxl_status_t st;
    cf_sticky_arg sa;
    pthread_t th;
    uint8_t *loc;
    cf_tgt t;
    int k;

    CF_NEED(NXL_CAP_LOCAL);
    if (!cf_file_tgt()) {
        printf("  skip: a transfer of %s to a live peer's registered memory "
               "cannot be made to fail (peer_killed checks that a dead "
               "peer's error stays)\n",
               cf_be());
        return XT_SKIP;
    }
    XT_ASSERT(cf_tsetup(&t, len, 0, &a) == 0);
    loc = cf_map(len);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, len));
    XT_ASSERT(cf_tfill(&t, 0, len, 1600) == 0);
    XT_ASSERT_EQ(ftruncate(t.fd, (off_t)cf_taddr(&t, short_len)), 0);

    XT_ASSERT_OK(cf_txfer1(a, NXL_READ, (uintptr_t)loc, &t, 0, len, NULL, &x));
    st = cf_run(x, NULL);
    if (st != NXL_ERR_IO) {
        XT_FAILF("READ past the end of the file -> %s (%s), want "
                 "NXL_ERR_IO",
                 nxl_status_name(st), nxl_last_error());
    }
    XT_ASSERT(nxl_last_error()[0] != '\0');
    for (k = 0; k < 3; k++) {
        XT_ASSERT_STATUS(nxl_xfer_status(x), NXL_ERR_IO);
        XT_ASSERT(nxl_last_error()[0] != '\0');
        XT_ASSERT_STATUS(nxl_xfer_wait(x, k * 10), NXL_ERR_IO);
        XT_ASSERT(nxl_last_error()[0] != '\0');
        nxl_agent_progress(a);
    }
    memset(&sa, 0, sizeof(sa));
    sa.x = x;
    XT_ASSERT_EQ(pthread_create(&th, NULL, cf_sticky_thr, &sa), 0);
    pthread_join(th, NULL);
    if (sa.st != NXL_ERR_IO || sa.err[0] == '\0') {
        XT_FAILF("status on another thread -> %s (\"%s\"), want NXL_ERR_IO "
                 "with a message",
                 nxl_status_name(sa.st), sa.err);
    }
    /* Still short: a repost fails the same way. */
    XT_ASSERT_STATUS(cf_run(x, NULL), NXL_ERR_IO);
    /* The cause gone, a repost succeeds and the error is over. */
    XT_ASSERT(cf_tfill(&t, 0, len, 1601) == 0);
    XT_ASSERT_OK(cf_run(x, NULL));
    XT_ASSERT_OK(nxl_xfer_status(x));
    XT_ASSERT(cf_check_local(loc, len, 1601, 0, "READ after the error") == 0);
    nxl_xfer_release(x);
    nxl_agent_destroy(a);
    cf_unmap(loc, len);
    return cf_tstop(&t);
}

/* nxl_agent_destroy with transfers in flight (nxl.h: cancels and releases
 * outstanding transfers): a WRITE and a READ of 16 MiB posted and never
 * released; destroy returns, no buffer is touched afterwards (the READ
 * buffer, overwritten, stays so), a FILE target's fd stays open, and a
 * new agent uses the target. */
int
t_destroy_inflight(void)
{
    const uint64_t len = 16 * CF_MIB;
    nxl_agent_t *a = NULL, *b = NULL;
    nxl_xfer_t *xw = NULL, *xr = NULL;
    nxl_status_t sw, sr;
    uint8_t *src, *dst;
    cf_tgt t;

    CF_NEED_TGT(0);
    XT_ASSERT(cf_tsetup(&t, 2 * len, 0, &a) == 0);
    src = cf_map(len);
    dst = cf_map(len);
    XT_ASSERT(src != NULL && dst != NULL);
    XT_ASSERT_OK(cf_reg(a, src, len));
    XT_ASSERT_OK(cf_reg(a, dst, len));
    cf_fill(src, len, 1700, 0);
    XT_ASSERT(cf_tfill(&t, len, len, 1701) == 0);
    XT_ASSERT_OK(
        cf_txfer1(a, NXL_WRITE, (uintptr_t)src, &t, 0, len, NULL, &xw));
    XT_ASSERT_OK(
        cf_txfer1(a, NXL_READ, (uintptr_t)dst, &t, len, len, NULL, &xr));
    sw = nxl_xfer_post(xw, NULL);
    sr = nxl_xfer_post(xr, NULL);
    if ((sw != NXL_OK && sw != NXL_IN_PROG) ||
        (sr != NXL_OK && sr != NXL_IN_PROG)) {
        XT_FAILF("posts -> %s, %s (%s)", nxl_status_name(sw),
                 nxl_status_name(sr), nxl_last_error());
    }
    printf("  in flight at destroy: WRITE %s, READ %s\n",
           sw == NXL_IN_PROG ? "yes" : "no", sr == NXL_IN_PROG ? "yes" : "no");
    nxl_agent_destroy(a);
    memset(dst, 0x5a, len);
    usleep(20000);
    XT_ASSERT(cf_check_byte(dst, len, 0x5a, "READ buffer after destroy") == 0);
    if (t.kind == CF_T_FILE && fcntl(t.fd, F_GETFD) < 0) {
        XT_FAILF("the target's fd %d was closed by the destroy: %s", t.fd,
                 strerror(errno));
    }
    cf_unmap(dst, len);

    /* A new agent reaches the target and moves data. */
    XT_ASSERT_OK(cf_agent("main2", CF_NO_LISTEN, &b));
    XT_ASSERT_OK(cf_tattach(&t, b));
    XT_ASSERT_OK(cf_reg(b, src, len));
    cf_fill(src, len, 1702, 0);
    XT_ASSERT_OK(
        cf_txfer1(b, NXL_WRITE, (uintptr_t)src, &t, 0, len, NULL, &xw));
    XT_ASSERT_OK(cf_run(xw, NULL));
    XT_ASSERT(cf_tcheck(&t, 0, len, 1702, "WRITE after destroy") == 0);
    XT_ASSERT(cf_tcheck(&t, len, len, 1701, "untouched half") == 0);
    nxl_xfer_release(xw);
    nxl_agent_destroy(b);
    cf_unmap(src, len);
    return cf_tstop(&t);
}
