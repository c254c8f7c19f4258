/* conf_threads.c - conformance cases: concurrent transfers on one
 * agent, bad input, and an idle agent's CPU use (the suite:
 * test_conformance.c). */
#include "xt_conf.h"

#include <pthread.h>
#include <unistd.h>

/* One thread of t_threads: its own buffers and slice of the target. */
typedef struct {
    nxl_agent_t *a;
    const cf_tgt *tgt;
    uint64_t roff;
    int idx;
    int rc;
    char err[CF_ERR_MAX];
} cf_thr;

#define CF_THR_FAIL(t, ...)                                                    \
    do {                                                                       \
        snprintf((t)->err, sizeof((t)->err), __VA_ARGS__);                     \
        (t)->rc = 1;                                                           \
        goto out;                                                              \
    } while (0)

static void *
cf_thr_main(void *arg)
{
    const uint64_t len = CF_MIB;
    cf_thr *t = arg;
    nxl_xfer_t *xw = NULL, *xr = NULL;
    nxl_status_t st;
    uint8_t *src = cf_map(len), *dst = cf_map(len);
    int i, reg = 0;

    if (src == NULL || dst == NULL) {
        CF_THR_FAIL(t, "mmap failed");
    }
    if ((st = cf_reg(t->a, src, len)) != NXL_OK ||
        (st = cf_reg(t->a, dst, len)) != NXL_OK) {
        CF_THR_FAIL(t, "register: %s (%s)", nxl_status_name(st),
                    nxl_last_error());
    }
    reg = 1;
    for (i = 0; i < 30; i++) {
        if (i % 10 == 0) {
            nxl_xfer_release(xw);
            nxl_xfer_release(xr);
            xw = xr = NULL;
            if ((st = cf_txfer1(t->a, NXL_WRITE, (uintptr_t)src, t->tgt,
                                t->roff, len, NULL, &xw)) != NXL_OK ||
                (st = cf_txfer1(t->a, NXL_READ, (uintptr_t)dst, t->tgt, t->roff,
                                len, NULL, &xr)) != NXL_OK) {
                CF_THR_FAIL(t, "create: %s (%s)", nxl_status_name(st),
                            nxl_last_error());
            }
        }
        cf_fill(src, len, (uint32_t)(t->idx * 1000 + i), 0);
        memset(dst, 0, len);
        if ((st = cf_run(xw, NULL)) != NXL_OK) {
            CF_THR_FAIL(t, "iteration %d WRITE: %s (%s)", i,
                        nxl_status_name(st), nxl_last_error());
        }
        if ((st = cf_run(xr, NULL)) != NXL_OK) {
            CF_THR_FAIL(t, "iteration %d READ: %s (%s)", i, nxl_status_name(st),
                        nxl_last_error());
        }
        if (memcmp(src, dst, len) != 0) {
            CF_THR_FAIL(t, "iteration %d: data read back differs", i);
        }
    }
out:
    nxl_xfer_release(xw);
    nxl_xfer_release(xr);
    if (reg) {
        cf_dereg(t->a, src, len);
        cf_dereg(t->a, dst, len);
    }
    cf_unmap(src, len);
    cf_unmap(dst, len);
    return NULL;
}

/* Concurrent transfers on one agent under NXL_SYNC_RW (NIXL
 * multi_threading "concurrent transfers on one agent", DESIGN §7): four
 * threads, each registering its own buffers and a slice of the target,
 * WRITE then READ back 30 times (recreating requests every 10), data
 * checked every time. */
int
t_threads(void)
{
    enum { T = 4 };
    nxl_agent_t *a = NULL;
    pthread_t th[T];
    cf_thr t[T];
    cf_tgt tg;
    int i, rc = 0;

    CF_NEED_TGT(0);
    XT_ASSERT(cf_tsetup(&tg, T * CF_MIB, CF_SYNC_RW, &a) == 0);
    for (i = 0; i < T; i++) {
        memset(&t[i], 0, sizeof(t[i]));
        t[i].a = a;
        t[i].idx = i;
        t[i].tgt = &tg;
        t[i].roff = (uint64_t)i * CF_MIB;
        XT_ASSERT_EQ(pthread_create(&th[i], NULL, cf_thr_main, &t[i]), 0);
    }
    for (i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        if (t[i].rc != 0) {
            fprintf(stderr, "thread %d: %s\n", i, t[i].err);
            rc = 1;
        }
    }
    XT_ASSERT_EQ(rc, 0);
    nxl_agent_destroy(a);
    return cf_tstop(&tg);
}

/* Bad input gets the documented status and an nxl_last_error message, no
 * crash, and leaves outputs untouched (nxl.h; NIXL §7.3, python
 * "improper descriptor inputs"): NULL arguments, a bad op, zero length,
 * mismatched counts and lengths, unregistered local memory, remote
 * descriptors outside the peer's regions (wholly and partly), an unknown
 * peer, bad indices, garbage metadata; the agent still works after. */
int
t_bad_input(void)
{
    const uint64_t len = 64 * CF_KIB;
    nxl_xfer_t *const sentinel = (nxl_xfer_t *)(uintptr_t)0x5151;
    nxl_prepped_t *const psent = (nxl_prepped_t *)(uintptr_t)0x5252;
    nxl_prepped_t *lp = NULL, *rp = NULL, *pp = psent;
    nxl_xfer_t *x = sentinel, *ok = NULL;
    nxl_xfer_telemetry_t tm;
    nxl_backend_t *be = NULL;
    nxl_agent_t *a = NULL;
    nxl_desc_t ld, rd, l2[2], r2[2], bad;
    nxl_dlist_t ll, rl, l2l, r2l, badl, rbadl;
    nxl_dlist_t nulld = {NXL_DRAM, NULL, 1};
    uint8_t *loc, *unreg, junk[64];
    size_t i0 = 0, i1 = 1, i2 = 2;
    uint64_t rbase, rdev;
    const char *rn;
    nxl_opts_t o;
    cf_tgt t;

    CF_NEED_TGT(NXL_CAP_NOTIF);
    XT_ASSERT(cf_tsetup(&t, len, 0, &a) == 0);
    loc = cf_map(len);
    unreg = cf_map(len);
    XT_ASSERT(loc != NULL && unreg != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, len));
    rbase = cf_taddr(&t, 0);
    rdev = cf_tdev(&t);
    rn = cf_tname(&t, a);
    ld = (nxl_desc_t){(uintptr_t)loc, 4096, 0};
    rd = (nxl_desc_t){rbase, 4096, rdev};
    ll = cf_dl(&ld, 1);
    rl = cf_tdl(&t, &rd, 1);

    /* NULL arguments and a bad op. */
    XT_ASSERT_STATUS(nxl_xfer_create(NULL, NXL_WRITE, &ll, &rl, rn, NULL, &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, NULL, &rl, rn, NULL, &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, NULL, rn, NULL, &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, &rl, NULL, NULL, &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, &rl, rn, NULL, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_create(a, (nxl_op_t)7, &ll, &rl, rn, NULL, &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &nulld, &rl, rn, NULL, &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, &nulld, rn, NULL, &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT(x == sentinel);

    /* Zero length, counts, lengths. */
    l2[0] = (nxl_desc_t){(uintptr_t)loc, 0, 0};
    r2[0] = (nxl_desc_t){rbase, 0, rdev};
    l2l = cf_dl(l2, 1);
    r2l = cf_tdl(&t, r2, 1);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &l2l, &r2l, rn, NULL, &x),
                     NXL_ERR_INVALID_PARAM);
    l2[0] = (nxl_desc_t){(uintptr_t)loc, 4096, 0};
    l2[1] = (nxl_desc_t){(uintptr_t)loc + 8192, 4096, 0};
    l2l = cf_dl(l2, 2);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &l2l, &rl, rn, NULL, &x),
                     NXL_ERR_INVALID_PARAM);
    r2[0] = (nxl_desc_t){rbase, 2048, rdev};
    r2l = cf_tdl(&t, r2, 1);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, &r2l, rn, NULL, &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_READ, &ll, &r2l, rn, NULL, &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT(x == sentinel);

    /* Memory not covered by registrations. */
    badl = cf_dl(&bad, 1);
    rbadl = cf_tdl(&t, &bad, 1);
    bad = (nxl_desc_t){(uintptr_t)unreg, 4096, 0};
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &badl, &rl, rn, NULL, &x),
                     NXL_ERR_NOT_FOUND);
    bad = (nxl_desc_t){(uintptr_t)loc + len - 2048, 4096, 0};
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &badl, &rl, rn, NULL, &x),
                     NXL_ERR_NOT_FOUND);
    bad = (nxl_desc_t){rbase + len, 4096, rdev};
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, &rbadl, rn, NULL, &x),
                     NXL_ERR_NOT_FOUND);
    bad = (nxl_desc_t){rbase + len - 2048, 4096, rdev};
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, &rbadl, rn, NULL, &x),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_READ, &ll, &rbadl, rn, NULL, &x),
                     NXL_ERR_NOT_FOUND);
    bad = (nxl_desc_t){rbase - 1, 4096, rdev};
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, &rbadl, rn, NULL, &x),
                     NXL_ERR_NOT_FOUND);
    bad = (nxl_desc_t){rbase, 4096, rdev + 7}; /* another device id */
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, &rbadl, rn, NULL, &x),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(
        nxl_xfer_create(a, NXL_WRITE, &ll, &rl, "nobody", NULL, &x),
        NXL_ERR_NOT_FOUND);
    XT_ASSERT(x == sentinel);

    /* Prepared lists. */
    XT_ASSERT_STATUS(nxl_dlist_prep(NULL, rn, &rl, NULL, &pp),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_dlist_prep(a, rn, NULL, NULL, &pp),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_dlist_prep(a, rn, &rl, NULL, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_dlist_prep(a, "nobody", &rl, NULL, &pp),
                     NXL_ERR_NOT_FOUND);
    bad = (nxl_desc_t){rbase + len - 2048, 4096, rdev};
    XT_ASSERT_STATUS(nxl_dlist_prep(a, rn, &rbadl, NULL, &pp),
                     NXL_ERR_NOT_FOUND);
    bad = (nxl_desc_t){(uintptr_t)unreg, 4096, 0};
    XT_ASSERT_STATUS(nxl_dlist_prep(a, NULL, &badl, NULL, &pp),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT(pp == psent);

    /* Indices out of range, unequal pair lengths, NULLs. */
    l2[0] = (nxl_desc_t){(uintptr_t)loc, 4096, 0};
    l2[1] = (nxl_desc_t){(uintptr_t)loc + 8192, 2048, 0};
    r2[0] = (nxl_desc_t){rbase, 4096, rdev};
    r2[1] = (nxl_desc_t){rbase + 8192, 4096, rdev};
    l2l = cf_dl(l2, 2);
    r2l = cf_tdl(&t, r2, 2);
    XT_ASSERT_OK(nxl_dlist_prep(a, NULL, &l2l, NULL, &lp));
    XT_ASSERT_OK(nxl_dlist_prep(a, rn, &r2l, NULL, &rp));
    XT_ASSERT_STATUS(nxl_xfer_make(a, NXL_WRITE, lp, &i2, rp, &i0, 1, NULL, &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_make(a, NXL_WRITE, lp, &i0, rp, &i2, 1, NULL, &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_make(a, NXL_WRITE, lp, &i1, rp, &i0, 1, NULL, &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(
        nxl_xfer_make(a, NXL_WRITE, lp, NULL, rp, &i0, 1, NULL, &x),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(
        nxl_xfer_make(a, NXL_WRITE, NULL, &i0, rp, &i0, 1, NULL, &x),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(
        nxl_xfer_make(a, NXL_WRITE, lp, &i0, NULL, &i0, 1, NULL, &x),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(
        nxl_xfer_make(a, (nxl_op_t)9, lp, &i0, rp, &i0, 1, NULL, &x),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(
        nxl_xfer_make(a, NXL_WRITE, lp, &i0, rp, &i0, 1, NULL, NULL),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT(x == sentinel);

    /* Request calls on NULL. */
    XT_ASSERT_STATUS(nxl_xfer_post(NULL, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_status(NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_wait(NULL, 10), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_telemetry(NULL, &tm), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_backend(NULL, &be), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_OK(nxl_xfer_create(a, NXL_WRITE, &ll, &rl, rn, NULL, &ok));
    XT_ASSERT_STATUS(nxl_xfer_telemetry(ok, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_backend(ok, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_status(ok), NXL_ERR_NOT_POSTED);
    XT_ASSERT_STATUS(nxl_xfer_wait(ok, 10), NXL_ERR_NOT_POSTED);

    /* Notifications. */
    XT_ASSERT_STATUS(nxl_notif_send(NULL, rn, "x", 1, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_notif_send(a, rn, NULL, 5, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_notif_send(a, "nobody", "x", 1, NULL),
                     NXL_ERR_NOT_FOUND);

    /* Garbage metadata, and metadata calls without a peer address. */
    memset(junk, 0xee, sizeof(junk));
    CF_ASSERT_ONE_OF(nxl_md_load(a, junk, sizeof(junk), NULL, 0),
                     NXL_ERR_MISMATCH, NXL_ERR_PROTO);
    nxl_opts_init(&o);
    XT_ASSERT_STATUS(nxl_md_fetch(a, rn, &o), NXL_ERR_NOT_SUPPORTED);
    XT_ASSERT_STATUS(nxl_md_invalidate_local(a, &o), NXL_ERR_NOT_SUPPORTED);

    /* None of it broke anything. */
    cf_fill(loc, 4096, 900, 0);
    XT_ASSERT_OK(cf_run(ok, NULL));
    XT_ASSERT(cf_tcheck(&t, 0, 4096, 900, "after bad input") == 0);
    nxl_xfer_release(ok);
    nxl_dlist_release(lp);
    nxl_dlist_release(rp);
    nxl_agent_destroy(a);
    cf_unmap(loc, len);
    cf_unmap(unreg, len);
    return cf_tstop(&t);
}

/* An idle agent with a progress thread sleeps (DESIGN §7: the thread
 * sleeps on the backends' fds, no busy spinning): after a WRITE, a READ
 * back (checked) and, with NOTIF, a notification, both processes (on a
 * FILE target: this one) use < 5% CPU over 2 s. */
int
t_idle_cpu(void)
{
    const uint64_t len = CF_MIB, ms = 2000;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    uint64_t t0, c0, dc, dt;
    uint8_t *loc;
    cf_cmd c;
    cf_rep r;
    cf_tgt t;

    CF_NEED_TGT(NXL_CAP_NOTIF);
    XT_ASSERT(cf_tsetup(&t, len, CF_PROGRESS, &a) == 0);
    loc = cf_map(len);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, len));
    cf_fill(loc, len, 1250, 0);
    XT_ASSERT_OK(cf_txfer1(a, NXL_WRITE, (uintptr_t)loc, &t, 0, len, NULL, &x));
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    memset(loc, 0, len);
    XT_ASSERT_OK(cf_txfer1(a, NXL_READ, (uintptr_t)loc, &t, 0, len, NULL, &x));
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    XT_ASSERT(cf_check_local(loc, len, 1250, 0, "READ back") == 0);
    if (cf_has_cap(NXL_CAP_NOTIF)) {
        XT_ASSERT_OK(nxl_notif_send(a, cf_tname(&t, a), "idle", 4, NULL));
    }
    usleep(100000);

    if (t.kind == CF_T_PEER) {
        c = cf_cmd_of(CF_OP_IDLE_CPU);
        c.arg = (int)ms;
        XT_ASSERT(cf_send(&t.peer, &c) == 0);
    }
    t0 = xt_now_ms();
    c0 = cf_cpu_us();
    usleep((useconds_t)ms * 1000u);
    dc = cf_cpu_us() - c0;
    dt = xt_now_ms() - t0;
    if (t.kind != CF_T_PEER) {
        printf("  idle CPU: this process %" PRIu64 " us in %" PRIu64
               " ms (no peer)\n",
               dc, dt);
        r.value = 0;
        r.value2 = 1;
    } else {
        XT_ASSERT(cf_recv(&t.peer, &r, NULL) == 0);
        printf("  idle CPU: this process %" PRIu64 " us in %" PRIu64
               " ms, peer %" PRIu64 " us in %" PRIu64 " ms\n",
               dc, dt, r.value, r.value2 / 1000);
    }
    if (dc * 20 > dt * 1000) {
        XT_FAILF("idle agent used %" PRIu64 " us CPU in %" PRIu64
                 " ms (>= 5%%)",
                 dc, dt);
    }
    if (r.value * 20 > r.value2) {
        XT_FAILF("idle peer used %" PRIu64 " us CPU in %" PRIu64 " us (>= 5%%)",
                 r.value, r.value2);
    }
    nxl_agent_destroy(a);
    cf_unmap(loc, len);
    return cf_tstop(&t);
}
