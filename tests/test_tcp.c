/*
 * test_tcp.c - the TCP backend, driven through its ops table directly:
 * two engines (usually in two processes joined by a socketpair that
 * carries conn info and commands), a fake host that records
 * notifications, and the TCP-specific cases: target-side bounds refusal,
 * crafted and garbage frames, reset and kill mid-transfer, reconnect,
 * timeouts, cancel (also a WRITE canceled mid-payload, whose
 * notification must never arrive), small frames behind large payloads
 * (the receive low-water mark), large READ replies received in place
 * (not through the staging buffer), 1,000 concurrent requests from 4 threads,
 * and the same across two network namespaces (tests/netns/rig.sh; skipped
 * when namespaces cannot be made). NXL_TCP_BENCH=1 makes the bench cases
 * measure for real and print numbers (NXL_TCP_BENCH=lat only the 4 KiB
 * latencies); otherwise they run as smoke tests.
 */
#include "harness.h"
#include "xt_host.h"
#include "xt_io.h"
#include "xt_netns.h"
#include "util.h"
#include "backends/tcp/tcp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

extern const nxl_backend_ops_t nxl__be_tcp_ops;
#define OPS (&nxl__be_tcp_ops)

/* tt_leaks runs LeakSanitizer now (cases end in _exit, which skips the
 * check at exit): 0 when clean or not built with ASan. */
static int
tt_leaks(void)
{
#if defined(__SANITIZE_ADDRESS__)
    if (__lsan_do_recoverable_leak_check() != 0) {
        fprintf(stderr, "leaks found\n");
        return 1;
    }
#endif
    return 0;
}

/* --- fake host ---------------------------------------------------------- */

#define TT_MAX_NOTIFS 256

typedef struct tt_notif {
    char peer[64];
    char msg[128];
    size_t len;
} tt_notif;

typedef struct tt_host {
    nxl_backend_host_t host;
    pthread_mutex_t lock;
    tt_notif notifs[TT_MAX_NOTIFS];
    unsigned nnotifs;
    atomic_uint wakes;
    /* At each notification, check that buf[off, off + len) holds pattern
     * seed (data visible before the notification). */
    const uint8_t *chk_buf;
    uint64_t chk_off, chk_len;
    unsigned chk_seed;
    unsigned chk_bad;
} tt_host;

/* tt_pat is the test pattern: byte i of a buffer filled with seed. */
static inline uint8_t
tt_pat(unsigned seed, uint64_t i)
{
    return (uint8_t)(i * 131u + seed * 7u + (i >> 12) + (i >> 20));
}

/* tt_fill writes pattern seed into p, counting from base. */
static void
tt_fill(uint8_t *p, uint64_t len, unsigned seed, uint64_t base)
{
    uint64_t i;

    for (i = 0; i < len; i++) {
        p[i] = tt_pat(seed, base + i);
    }
}

/* tt_bad returns the index of the first byte that differs from the
 * pattern, or -1. */
static long long
tt_bad(const uint8_t *p, uint64_t len, unsigned seed, uint64_t base)
{
    uint64_t i;

    for (i = 0; i < len; i++) {
        if (p[i] != tt_pat(seed, base + i)) {
            return (long long)i;
        }
    }
    return -1;
}

/* tt_notif_recv records a notification (and checks the data it guards). */
static void
tt_notif_recv(void *ctx, const char *peer, const void *msg, size_t len)
{
    tt_host *h = ctx;
    tt_notif *n;

    pthread_mutex_lock(&h->lock);
    if (h->chk_buf != NULL &&
        tt_bad(h->chk_buf + h->chk_off, h->chk_len, h->chk_seed, 0) >= 0) {
        h->chk_bad++;
    }
    if (h->nnotifs < TT_MAX_NOTIFS) {
        n = &h->notifs[h->nnotifs];
        snprintf(n->peer, sizeof(n->peer), "%s", peer ? peer : "(null)");
        n->len = len;
        memcpy(n->msg, msg, NXL__MIN(len, sizeof(n->msg) - 1));
        n->msg[NXL__MIN(len, sizeof(n->msg) - 1)] = '\0';
    }
    h->nnotifs++;
    pthread_mutex_unlock(&h->lock);
}

/* tt_wake counts wake-ups. */
static void
tt_wake(void *ctx)
{
    tt_host *h = ctx;

    atomic_fetch_add(&h->wakes, 1);
}

/* --- engines and transfers ---------------------------------------------- */

typedef struct tt_eng {
    tt_host h;
    void *e;
    char name[64];
} tt_eng;

/* tt_open creates and initialises an engine called name. */
static nxl_status_t
tt_open(tt_eng *t, const char *name, const nxl_param_t *params, size_t n)
{
    nxl_params_t ps = {.items = params, .count = n};

    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    pthread_mutex_init(&t->h.lock, NULL);
    xt_host_init(t->name, &t->h, tt_notif_recv, tt_wake, NULL, &t->h.host);
    return xt_engine_open(OPS, &t->h.host, &ps, &t->e);
}

/* tt_close finalises and frees an engine. */
static void
tt_close(tt_eng *t)
{
    xt_engine_close(OPS, t->e);
    t->e = NULL;
}

/* tt_nnotifs returns how many notifications arrived. */
static unsigned
tt_nnotifs(tt_eng *t)
{
    unsigned n;

    pthread_mutex_lock(&t->h.lock);
    n = t->h.nnotifs;
    pthread_mutex_unlock(&t->h.lock);
    return n;
}

/* tt_wait_notifs waits until at least n notifications arrived. */
static bool
tt_wait_notifs(tt_eng *t, unsigned n, int timeout_ms)
{
    uint64_t end = xt_now_ms() + (uint64_t)timeout_ms;

    while (tt_nnotifs(t) < n) {
        if (xt_now_ms() > end) {
            return false;
        }
        usleep(1000);
    }
    return true;
}

typedef struct tt_xfer {
    nxl_be_xfer_t x;
    nxl_be_seg_t *l, *r;
    void *req;
    tt_eng *t;
} tt_xfer;

/* tt_prep prepares a transfer of n descriptors. */
static nxl_status_t
tt_prep(tt_eng *t, tt_xfer *tx, nxl_op_t op, void *peer, const char *pname,
        size_t n, const uint64_t *laddr, const uint64_t *raddr,
        const uint64_t *len)
{
    nxl_status_t st;
    size_t i;

    memset(tx, 0, sizeof(*tx));
    tx->t = t;
    tx->l = calloc(n, sizeof(*tx->l));
    tx->r = calloc(n, sizeof(*tx->r));
    tx->req = calloc(1, OPS->req_size);
    if (tx->l == NULL || tx->r == NULL || tx->req == NULL) {
        return NXL_ERR_NOMEM;
    }
    for (i = 0; i < n; i++) {
        tx->l[i].addr = laddr[i];
        tx->l[i].len = len[i];
        tx->r[i].addr = raddr[i];
        tx->r[i].len = len[i];
    }
    tx->x.op = op;
    tx->x.local_mem = NXL_DRAM;
    tx->x.remote_mem = NXL_DRAM;
    tx->x.peer = pname;
    tx->x.peer_ctx = peer;
    tx->x.count = n;
    tx->x.local = tx->l;
    tx->x.remote = tx->r;
    for (i = 0; i < n; i++) {
        tx->x.total_bytes += len[i];
    }
    st = OPS->prep(t->e, tx->req, &tx->x);
    return st;
}

/* tt_prep1 prepares a one-descriptor transfer. */
static nxl_status_t
tt_prep1(tt_eng *t, tt_xfer *tx, nxl_op_t op, void *peer, const char *pname,
         const void *local, uint64_t remote, uint64_t len)
{
    uint64_t la = (uint64_t)(uintptr_t)local;

    return tt_prep(t, tx, op, peer, pname, 1, &la, &remote, &len);
}

/* tt_free releases a transfer and its arrays. */
static void
tt_free(tt_xfer *tx)
{
    if (tx->req != NULL) {
        OPS->release(tx->t->e, tx->req);
    }
    free(tx->req);
    free(tx->l);
    free(tx->r);
    memset(tx, 0, sizeof(*tx));
}

/* tt_wait polls check, sleeping on the event fd between polls. */
static nxl_status_t
tt_wait(tt_xfer *tx, int timeout_ms)
{
    uint64_t end = xt_now_ms() + (uint64_t)timeout_ms;
    struct pollfd pfd = {.fd = OPS->event_fd(tx->t->e), .events = POLLIN};
    nxl_status_t st;

    for (;;) {
        st = OPS->check(tx->t->e, tx->req);
        if (st != NXL_IN_PROG) {
            return st;
        }
        if (xt_now_ms() > end) {
            return NXL_IN_PROG;
        }
        (void)poll(&pfd, 1, 10);
        (void)OPS->progress(tx->t->e);
    }
}

/* tt_post_notif posts with an optional notification. */
static nxl_status_t
tt_post_notif(tt_xfer *tx, const char *notif)
{
    tx->x.has_notif = notif != NULL;
    tx->x.notif = notif;
    tx->x.notif_len = notif ? strlen(notif) : 0;
    return OPS->post(tx->t->e, tx->req, &tx->x);
}

/* tt_run posts (with an optional notification) and waits. */
static nxl_status_t
tt_run(tt_xfer *tx, const char *notif, int timeout_ms)
{
    nxl_status_t st = tt_post_notif(tx, notif);

    if (st != NXL_IN_PROG) {
        return st;
    }
    return tt_wait(tx, timeout_ms);
}

/* tt_self_peer loads an engine's own conn info as a peer (loopback). */
static nxl_status_t
tt_self_peer(tt_eng *t, void **peer_p)
{
    nxl_blob_t info = {0};
    nxl_status_t st;

    st = OPS->conn_info(t->e, &info);
    if (st != NXL_OK) {
        return st;
    }
    st = OPS->peer_load(t->e, t->name, info.data, info.len, peer_p);
    free(info.data);
    return st;
}

/* tt_register registers [p, p + len). */
static nxl_status_t
tt_register(tt_eng *t, void *p, uint64_t len, void **md_p)
{
    nxl_be_region_t r = {.addr = (uint64_t)(uintptr_t)p,
                         .len = len,
                         .kind = NXL_DRAM,
                         .backing_fd = -1};

    return OPS->mem_register(t->e, &r, md_p);
}

/* tt_map allocates zeroed, page-aligned memory. */
static uint8_t *
tt_map(uint64_t len)
{
    void *p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    return p == MAP_FAILED ? NULL : p;
}

/* --- a target agent in a child process ---------------------------------- */

enum {
    TT_START = 1, /* create the engine, register, send the hello */
    TT_VERIFY,    /* v = first byte of [a, a+b) not pattern seed, or -1 */
    TT_FILL,      /* fill [a, a+b) with pattern seed */
    TT_NOTIFS,    /* n = notifications so far, v = bad data checks */
    TT_EXPECT,    /* check [a, a+b) == pattern seed at each notification */
    TT_RESET,     /* reset every connection (linger 0) and exit */
    TT_STATS,     /* v = bytes its server side sent, n = replies it cut,
                     m = CANCELs that came after the whole reply */
    TT_QUIT
};

typedef struct tt_cmd {
    uint32_t op;
    uint32_t seed;
    uint64_t a, b;
} tt_cmd;

typedef struct tt_rep {
    int64_t v;
    uint32_t n, m;
    char text[192];
} tt_rep;

typedef struct tt_hello {
    int32_t status;
    uint32_t info_len;
    uint8_t info[512];
    uint64_t addr, len;
    char err[256];
} tt_hello;

typedef struct tt_target {
    pid_t pid;
    int sock;
    tt_hello hi;
    char name[64];
} tt_target;

typedef struct tt_target_cfg {
    const char *name;
    uint64_t len;
    const char *netns; /* setns into /var/run/netns/<netns> */
    nxl_param_t params[4];
    size_t nparams;
} tt_target_cfg;

/* tt_reset_all makes every server connection of an engine reset (RST)
 * when the process exits. A test hack: it walks the engine's connections
 * (under io_lock, which guards them). */
static void
tt_reset_all(void *e)
{
    be_tcp_engine_t *eng = e;
    struct linger lg = {1, 0};
    be_tcp_conn_t *c;

    pthread_mutex_lock(&eng->io_lock);
    for (c = eng->conns; c != NULL; c = c->next) {
        if (c->server && c->fd >= 0) {
            (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
    }
    pthread_mutex_unlock(&eng->io_lock);
}

/* tt_target_main is the child: waits for TT_START, then serves commands
 * while its engine's I/O thread serves the transfers. */
static void
tt_target_main(int sock, const tt_target_cfg *cfg)
{
    tt_hello hi;
    tt_cmd cmd;
    tt_rep rep;
    tt_eng t;
    uint8_t *buf;
    void *md = NULL;
    nxl_blob_t info = {0};

    memset(&hi, 0, sizeof(hi));
    if (xt_read_all(sock, &cmd, sizeof(cmd)) != 0 || cmd.op != TT_START) {
        _exit(0);
    }
    if (cfg->netns != NULL && xt_netns_enter(cfg->netns, false) != 0) {
        hi.status = NXL_ERR_IO;
        snprintf(hi.err, sizeof(hi.err), "setns %s: %s", cfg->netns,
                 strerror(errno));
        (void)xt_write_all(sock, &hi, sizeof(hi));
        _exit(1);
    }
    buf = tt_map(cfg->len);
    hi.status = tt_open(&t, cfg->name, cfg->params, cfg->nparams);
    if (hi.status == NXL_OK && buf != NULL) {
        tt_fill(buf, cfg->len, 1, 0);
        hi.status = tt_register(&t, buf, cfg->len, &md);
    }
    if (hi.status == NXL_OK) {
        hi.status = OPS->conn_info(t.e, &info);
    }
    if (hi.status == NXL_OK && info.len <= sizeof(hi.info)) {
        memcpy(hi.info, info.data, info.len);
        hi.info_len = (uint32_t)info.len;
    }
    free(info.data);
    snprintf(hi.err, sizeof(hi.err), "%s", nxl_last_error());
    hi.addr = (uint64_t)(uintptr_t)buf;
    hi.len = cfg->len;
    (void)xt_write_all(sock, &hi, sizeof(hi));
    if (hi.status != NXL_OK) {
        _exit(1);
    }
    while (xt_read_all(sock, &cmd, sizeof(cmd)) == 0) {
        memset(&rep, 0, sizeof(rep));
        switch (cmd.op) {
        case TT_VERIFY:
            /* The initiator's transfers reached buf through this
             * engine's I/O thread, ordered through the network and our
             * command socket (xt_tsan_acquire, harness.h). */
            xt_tsan_acquire(buf);
            rep.v = tt_bad(buf + cmd.a, cmd.b, cmd.seed, 0);
            xt_tsan_release(buf);
            break;
        case TT_FILL:
            xt_tsan_acquire(buf);
            tt_fill(buf + cmd.a, cmd.b, cmd.seed, 0);
            xt_tsan_release(buf);
            break;
        case TT_NOTIFS:
            pthread_mutex_lock(&t.h.lock);
            rep.n = t.h.nnotifs;
            rep.v = t.h.chk_bad;
            if (t.h.nnotifs > 0) {
                tt_notif *n =
                    &t.h.notifs[NXL__MIN(t.h.nnotifs, TT_MAX_NOTIFS) - 1];
                snprintf(rep.text, sizeof(rep.text), "%s:%s", n->peer, n->msg);
            }
            pthread_mutex_unlock(&t.h.lock);
            break;
        case TT_EXPECT:
            pthread_mutex_lock(&t.h.lock);
            t.h.chk_buf = buf;
            t.h.chk_off = cmd.a;
            t.h.chk_len = cmd.b;
            t.h.chk_seed = cmd.seed;
            t.h.chk_bad = 0;
            pthread_mutex_unlock(&t.h.lock);
            break;
        case TT_RESET:
            tt_reset_all(t.e);
            _exit(0);
        case TT_STATS:
            rep.v = (int64_t)atomic_load(&((be_tcp_engine_t *)t.e)->srv_sent);
            rep.n = (uint32_t)atomic_load(&((be_tcp_engine_t *)t.e)->srv_cut);
            rep.m = (uint32_t)atomic_load(
                &((be_tcp_engine_t *)t.e)->srv_cut_missed);
            break;
        case TT_QUIT:
            OPS->mem_deregister(t.e, md);
            tt_close(&t);
            munmap(buf, cfg->len);
            rep.v = tt_leaks();
            (void)xt_write_all(sock, &rep, sizeof(rep));
            _exit(0);
        default:
            break;
        }
        if (xt_write_all(sock, &rep, sizeof(rep)) != 0) {
            break;
        }
    }
    _exit(0);
}

/* tt_target_fork forks a target that waits for tt_target_start. */
static int
tt_target_fork(tt_target *tg, const tt_target_cfg *cfg)
{
    int sv[2];

    memset(tg, 0, sizeof(*tg));
    snprintf(tg->name, sizeof(tg->name), "%s", cfg->name);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return -1;
    }
    tg->pid = fork();
    if (tg->pid < 0) {
        return -1;
    }
    if (tg->pid == 0) {
        close(sv[0]);
        tt_target_main(sv[1], cfg);
        _exit(0);
    }
    close(sv[1]);
    tg->sock = sv[0];
    return 0;
}

/* tt_target_start lets the target create its engine; 0 on success. */
static int
tt_target_start(tt_target *tg)
{
    tt_cmd cmd = {.op = TT_START};

    if (xt_write_all(tg->sock, &cmd, sizeof(cmd)) != 0 ||
        xt_read_all(tg->sock, &tg->hi, sizeof(tg->hi)) != 0) {
        fprintf(stderr, "target %s did not start\n", tg->name);
        return -1;
    }
    if (tg->hi.status != NXL_OK) {
        fprintf(stderr, "target %s: %s: %s\n", tg->name,
                nxl_status_name(tg->hi.status), tg->hi.err);
        return -1;
    }
    return 0;
}

/* tt_spawn forks and starts a plain target of len bytes. */
static int
tt_spawn(tt_target *tg, const char *name, uint64_t len)
{
    tt_target_cfg cfg = {.name = name, .len = len};

    if (tt_target_fork(tg, &cfg) != 0) {
        return -1;
    }
    return tt_target_start(tg);
}

/* tt_cmd_run sends a command and returns the reply. */
static tt_rep
tt_cmd_run(tt_target *tg, uint32_t op, uint32_t seed, uint64_t a, uint64_t b)
{
    tt_cmd cmd = {.op = op, .seed = seed, .a = a, .b = b};
    tt_rep rep;

    memset(&rep, 0, sizeof(rep));
    rep.v = -999;
    if (xt_write_all(tg->sock, &cmd, sizeof(cmd)) != 0 ||
        xt_read_all(tg->sock, &rep, sizeof(rep)) != 0) {
        rep.v = -998;
    }
    return rep;
}

/* tt_target_wait_notifs polls the target until it has n notifications. */
static tt_rep
tt_target_wait_notifs(tt_target *tg, unsigned n, int timeout_ms)
{
    uint64_t end = xt_now_ms() + (uint64_t)timeout_ms;
    tt_rep rep;

    for (;;) {
        rep = tt_cmd_run(tg, TT_NOTIFS, 0, 0, 0);
        if (rep.n >= n || xt_now_ms() > end) {
            return rep;
        }
        usleep(2000);
    }
}

/* tt_target_stop ends a target cleanly; returns its leak check (0). */
static int
tt_target_stop(tt_target *tg)
{
    tt_cmd cmd = {.op = TT_QUIT};
    tt_rep rep = {.v = 0};

    if (tg->pid > 0) {
        if (xt_write_all(tg->sock, &cmd, sizeof(cmd)) != 0 ||
            xt_read_all(tg->sock, &rep, sizeof(rep)) != 0) {
            rep.v = -1;
        }
        close(tg->sock);
        waitpid(tg->pid, NULL, 0);
        tg->pid = 0;
    }
    if (rep.v != 0) {
        fprintf(stderr, "target %s: leaks or no answer\n", tg->name);
    }
    return (int)rep.v;
}

/* tt_target_kill ends a target with SIGKILL. */
static void
tt_target_kill(tt_target *tg)
{
    if (tg->pid > 0) {
        kill(tg->pid, SIGKILL);
        close(tg->sock);
        waitpid(tg->pid, NULL, 0);
        tg->pid = 0;
    }
}

/* tt_load loads a target as a peer of t. */
static nxl_status_t
tt_load(tt_eng *t, tt_target *tg, void **peer_p)
{
    return OPS->peer_load(t->e, tg->name, tg->hi.info, tg->hi.info_len, peer_p);
}

/* --- codec --------------------------------------------------------------- */

/* tt_frame writes a header into out and returns the bytes written. */
static size_t
tt_frame(uint8_t *out, uint8_t type, uint8_t flags, int32_t status,
         uint32_t ndesc, uint32_t aux, uint64_t id, uint64_t data)
{
    be_tcp_frame_t f = {.type = type,
                        .flags = flags,
                        .status = status,
                        .ndesc = ndesc,
                        .aux_len = aux,
                        .id = id,
                        .data_len = data};

    be_tcp_frame_encode(&f, out);
    return BE_TCP_HDR_SIZE;
}

/* tt_wd writes one wire descriptor and returns its size. */
static size_t
tt_wd(uint8_t *out, uint64_t addr, uint64_t len)
{
    nxl__put_le64(out, addr);
    nxl__put_le64(out + 8, len);
    return BE_TCP_WDESC_SIZE;
}

/* t_frame_codec: every encoder round-trips through its decoder. */
static int
t_frame_codec(void)
{
    be_tcp_frame_t f = {.type = BE_TCP_WRITE_REQ,
                        .flags = BE_TCP_F_NOTIF,
                        .ndesc = 2,
                        .aux_len = 5,
                        .id = 0x1122334455667788ull,
                        .data_len = 300},
                   g;
    be_tcp_conninfo_t ci = {.port = 4242, .host_token = 99, .naddrs = 2}, cj;
    uint8_t buf[4096], tab[32];
    const char *why = NULL;
    be_tcp_hello_t h;
    nxl_blob_t blob;
    uint64_t total;
    size_t n = 0, k;
    long frames;

    be_tcp_frame_encode(&f, buf);
    XT_ASSERT_EQ(be_tcp_frame_decode(buf, BE_TCP_HDR_SIZE, &g, &why), 32);
    XT_ASSERT_EQ(g.type, f.type);
    XT_ASSERT_EQ(g.flags, f.flags);
    XT_ASSERT_EQ(g.ndesc, 2);
    XT_ASSERT_EQ(g.aux_len, 5);
    XT_ASSERT(g.id == f.id);
    XT_ASSERT_EQ(g.data_len, 300);
    XT_ASSERT_EQ(be_tcp_frame_decode(buf, 31, &g, &why), 0);

    tt_wd(tab, 0x1000, 100);
    tt_wd(tab + 16, 0x9000, 200);
    XT_ASSERT(be_tcp_descs_check(tab, 32, 2, BE_TCP_WDESC_SIZE, &total, &why));
    XT_ASSERT_EQ(total, 300);

    k = be_tcp_hello_encode(buf, sizeof(buf), "agent-x", 1, 4);
    XT_ASSERT_EQ(k, BE_TCP_HELLO_FIXED + 7);
    XT_ASSERT(be_tcp_hello_decode(buf, k, &h, &why));
    XT_ASSERT_EQ(h.version, BE_TCP_VERSION);
    XT_ASSERT_EQ(h.stream, 1);
    XT_ASSERT_EQ(h.nstreams, 4);
    XT_ASSERT(h.name_len == 7 && memcmp(h.name, "agent-x", 7) == 0);

    strcpy(ci.addrs[0], "10.77.0.1");
    strcpy(ci.addrs[1], "127.0.0.1");
    XT_ASSERT_OK(be_tcp_conninfo_encode(&ci, &blob));
    XT_ASSERT(be_tcp_conninfo_decode(blob.data, blob.len, &cj, &why));
    XT_ASSERT_EQ(cj.port, 4242);
    XT_ASSERT_EQ(cj.host_token, 99);
    XT_ASSERT_EQ(cj.naddrs, 2);
    XT_ASSERT_STR(cj.addrs[0], "10.77.0.1");
    XT_ASSERT_STR(cj.addrs[1], "127.0.0.1");
    for (k = 0; k < blob.len; k++) { /* every truncation is refused */
        XT_ASSERT(!be_tcp_conninfo_decode(blob.data, k, &cj, &why));
    }
    free(blob.data);

    /* A stream of every frame type scans as 6 frames, and every prefix
     * scans without an error. */
    k = be_tcp_hello_encode(buf + BE_TCP_HDR_SIZE, 100, "ab", 0, 1);
    n += tt_frame(buf + n, BE_TCP_HELLO, 0, 0, 0, (uint32_t)k, 0, 0) + k;
    n += tt_frame(buf + n, BE_TCP_READ_REQ, 0, 0, 2, 0, 1, 0);
    memcpy(buf + n, tab, 32);
    n += 32;
    n += tt_frame(buf + n, BE_TCP_WRITE_REQ, BE_TCP_F_NOTIF, 0, 2, 3, 2, 300);
    memcpy(buf + n, tab, 32);
    n += 32;
    memcpy(buf + n, "xyz", 3);
    n += 3;
    memset(buf + n, 0xab, 300);
    n += 300;
    n += tt_frame(buf + n, BE_TCP_NOTIF, 0, 0, 0, 4, 0, 0);
    memcpy(buf + n, "done", 4);
    n += 4;
    n +=
        tt_frame(buf + n, BE_TCP_READ_RESP, 0, NXL_ERR_NOT_ALLOWED, 0, 0, 1, 0);
    n += tt_frame(buf + n, BE_TCP_WRITE_ACK, 0, 0, 0, 0, 2, 0);
    frames = be_tcp_stream_scan(buf, n, &why);
    XT_ASSERT_EQ(frames, 6);
    for (k = 0; k < n; k++) {
        frames = be_tcp_stream_scan(buf, k, &why);
        XT_ASSERT(frames >= 0 && frames < 6);
    }
    XT_ASSERT_EQ(be_tcp_status_from_wire(NXL_ERR_NOT_ALLOWED),
                 NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_EQ(be_tcp_status_from_wire(-1000), NXL_ERR_BACKEND);
    XT_ASSERT_EQ(be_tcp_status_from_wire(5), NXL_ERR_BACKEND);
    return 0;
}

/* tt_rand is xorshift64*. */
static uint64_t
tt_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

/* t_frame_garbage: the decoders refuse malformed input and survive
 * random bytes. */
static int
t_frame_garbage(void)
{
    uint8_t buf[512], tab[32];
    const char *why = NULL;
    be_tcp_conninfo_t ci;
    be_tcp_frame_t f;
    be_tcp_hello_t h;
    uint64_t seed = 0x1234567, total;
    size_t len, i, k;
    long r;

#define TT_BAD_HDR(...)                                                        \
    do {                                                                       \
        tt_frame(buf, __VA_ARGS__);                                            \
        why = NULL;                                                            \
        XT_ASSERT_EQ(be_tcp_frame_decode(buf, 32, &f, &why), -1);              \
        XT_ASSERT(why != NULL);                                                \
    } while (0)
    TT_BAD_HDR(0, 0, 0, 0, 0, 0, 0);               /* type 0 */
    TT_BAD_HDR(99, 0, 0, 0, 0, 0, 0);              /* unknown type */
    TT_BAD_HDR(BE_TCP_READ_REQ, 0, 0, 0, 0, 1, 0); /* no descs */
    TT_BAD_HDR(BE_TCP_READ_REQ, 0, 0, BE_TCP_MAX_DESCS + 1, 0, 1, 0);
    TT_BAD_HDR(BE_TCP_READ_REQ, 0, 0, 1, 0, 1, 10);     /* data */
    TT_BAD_HDR(BE_TCP_WRITE_REQ, 0, 0, 1, 5, 1, 10);    /* aux, no flag */
    TT_BAD_HDR(BE_TCP_WRITE_REQ, 0x80, 0, 1, 0, 1, 10); /* unknown flag */
    TT_BAD_HDR(BE_TCP_WRITE_REQ, BE_TCP_F_NOTIF, 0, 1, BE_TCP_MAX_NOTIF + 1, 1,
               10);
    TT_BAD_HDR(BE_TCP_NOTIF, 0, 0, 0, BE_TCP_MAX_NOTIF + 1, 0, 0);
    TT_BAD_HDR(BE_TCP_NOTIF, 0, 0, 1, 4, 0, 0);        /* descs */
    TT_BAD_HDR(BE_TCP_READ_RESP, 0, 3, 0, 0, 1, 0);    /* status > 0 */
    TT_BAD_HDR(BE_TCP_READ_RESP, 0, -6, 0, 0, 1, 100); /* error + data */
    TT_BAD_HDR(BE_TCP_WRITE_ACK, 0, 0, 0, 0, 1, 100);  /* data */
    TT_BAD_HDR(BE_TCP_HELLO, 0, 0, 0, 3, 0, 0);        /* short body */
    TT_BAD_HDR(BE_TCP_HELLO, 0, 0, 0, 1u << 30, 0, 0); /* huge body */
    TT_BAD_HDR(BE_TCP_HELLO, 0, -2, 0, 20, 0, 0);      /* status */
    tt_frame(buf, BE_TCP_NOTIF, 0, 0, 0, 0, 0, 0);
    buf[0] ^= 0xff; /* magic */
    XT_ASSERT_EQ(be_tcp_frame_decode(buf, 32, &f, &why), -1);
    XT_ASSERT(strstr(why, "magic") != NULL);

    /* Descriptor tables: wrap-around, length overflow, size mismatch. */
    tt_wd(tab, UINT64_MAX - 10, 100);
    XT_ASSERT(!be_tcp_descs_check(tab, 16, 1, BE_TCP_WDESC_SIZE, &total, &why));
    tt_wd(tab, 0, UINT64_MAX - 5);
    tt_wd(tab + 16, 0, 10);
    XT_ASSERT(!be_tcp_descs_check(tab, 32, 2, BE_TCP_WDESC_SIZE, &total, &why));
    XT_ASSERT(!be_tcp_descs_check(tab, 31, 2, BE_TCP_WDESC_SIZE, &total, &why));
    /* WRITE whose data length differs from its descriptors. */
    len = tt_frame(buf, BE_TCP_WRITE_REQ, 0, 0, 1, 0, 1, 99);
    len += tt_wd(buf + len, 0x1000, 100);
    memset(buf + len, 0, 99);
    XT_ASSERT_EQ(be_tcp_stream_scan(buf, len + 99, &why), -1);
    /* Hellos: bad magic, NUL in name, length, stream numbers. */
    len = be_tcp_hello_encode(buf, sizeof(buf), "abc", 0, 1);
    XT_ASSERT(be_tcp_hello_decode(buf, len, &h, &why));
    XT_ASSERT(!be_tcp_hello_decode(buf, len - 1, &h, &why));
    buf[len - 2] = '\0';
    XT_ASSERT(!be_tcp_hello_decode(buf, len, &h, &why));
    len = be_tcp_hello_encode(buf, sizeof(buf), "abc", 3, 2);
    XT_ASSERT(!be_tcp_hello_decode(buf, len, &h, &why));
    len = be_tcp_hello_encode(buf, sizeof(buf), "abc", 0, 1);
    buf[0] ^= 1;
    XT_ASSERT(!be_tcp_hello_decode(buf, len, &h, &why));
    XT_ASSERT_EQ(be_tcp_hello_encode(buf, sizeof(buf), "", 0, 1), 0);
    /* Conn info: version, counts, port, characters, trailing bytes. */
    {
        uint8_t ok[] = {1, 1, 0x10, 0x00, 1, 0,   0,   0,
                        0, 0, 0,    0,    3, '1', '.', '2'};
        uint8_t b2[sizeof(ok) + 1];

        XT_ASSERT(be_tcp_conninfo_decode(ok, sizeof(ok), &ci, &why));
        XT_ASSERT_EQ(ci.port, 0x10);
        memcpy(b2, ok, sizeof(ok));
        b2[0] = 2;
        XT_ASSERT(!be_tcp_conninfo_decode(b2, sizeof(ok), &ci, &why));
        memcpy(b2, ok, sizeof(ok));
        b2[1] = 0;
        XT_ASSERT(!be_tcp_conninfo_decode(b2, sizeof(ok), &ci, &why));
        memcpy(b2, ok, sizeof(ok));
        b2[2] = 0;
        XT_ASSERT(!be_tcp_conninfo_decode(b2, sizeof(ok), &ci, &why));
        memcpy(b2, ok, sizeof(ok));
        b2[13] = '/';
        XT_ASSERT(!be_tcp_conninfo_decode(b2, sizeof(ok), &ci, &why));
        memcpy(b2, ok, sizeof(ok));
        b2[sizeof(ok)] = 0;
        XT_ASSERT(!be_tcp_conninfo_decode(b2, sizeof(ok) + 1, &ci, &why));
        memcpy(b2, ok, sizeof(ok));
        b2[12] = 200;
        XT_ASSERT(!be_tcp_conninfo_decode(b2, sizeof(ok), &ci, &why));
    }
    /* Random bytes (half of them behind a valid magic) never crash the
     * decoders; the scan says -1 or counts frames. */
    for (i = 0; i < 200000; i++) {
        len = (size_t)(tt_rand(&seed) % sizeof(buf));
        for (k = 0; k < len; k++) {
            buf[k] = (uint8_t)tt_rand(&seed);
        }
        if ((i & 1) && len >= 4) {
            buf[0] = 0x4e;
            buf[1] = 0x58;
            buf[2] = (uint8_t)(1 + tt_rand(&seed) % 7);
            buf[3] = (uint8_t)(tt_rand(&seed) % 2);
        }
        r = be_tcp_stream_scan(buf, len, &why);
        XT_ASSERT(r >= -1 && r <= (long)(len / 32));
        (void)be_tcp_hello_decode(buf, len, &h, &why);
        (void)be_tcp_conninfo_decode(buf, len, &ci, &why);
    }
    return 0;
}

/* --- engine basics ------------------------------------------------------- */

/* t_params: bad params are refused; conn info follows bind/advertise. */
static int
t_params(void)
{
    nxl_param_t bad[][1] = {
        {{"num_streams", "0"}},
        {{"num_streams", "17"}},
        {{"port", "70000"}},
        {{"port", "-1"}},
        {{"port", "12x"}},
        {{"bogus", "1"}},
        {{"connect_timeout_ms", "0"}},
        {{"bind_addr", "a b"}},
        {{"hello_timeout_ms", "-1"}},
        {{"hello_timeout_ms", "x"}},
        {{"max_version", "0"}},
        {{"max_version", "4"}},
        {{"region_keys", "maybe"}},
        {{"wait_spin_us", "1000001"}},
        {{"wait_spin_us", "-1"}},
    };
    nxl_param_t adv[] = {{"advertise_addr", "10.1.2.3"}};
    nxl_param_t lo[] = {{"bind_addr", "127.0.0.1"}, {"num_streams", "3"}};
    be_tcp_conninfo_t ci;
    const char *why;
    nxl_blob_t blob;
    tt_eng t;
    size_t i;

    for (i = 0; i < NXL__ARRAY_SIZE(bad); i++) {
        XT_ASSERT_STATUS(tt_open(&t, "p", bad[i], 1), NXL_ERR_INVALID_PARAM);
    }
    XT_ASSERT_EQ(OPS->num_defaults, 11);
    XT_ASSERT_STR(OPS->name, "TCP");
    XT_ASSERT(OPS->caps & NXL_CAP_LOCAL);
    XT_ASSERT(OPS->caps & NXL_CAP_THREAD_SAFE);

    XT_ASSERT_OK(tt_open(&t, "p", adv, 1));
    XT_ASSERT_OK(OPS->conn_info(t.e, &blob));
    XT_ASSERT(be_tcp_conninfo_decode(blob.data, blob.len, &ci, &why));
    XT_ASSERT_EQ(ci.naddrs, 1);
    XT_ASSERT_STR(ci.addrs[0], "10.1.2.3");
    XT_ASSERT(ci.port != 0);
    free(blob.data);
    tt_close(&t);

    XT_ASSERT_OK(tt_open(&t, "p", lo, 2));
    XT_ASSERT_OK(OPS->conn_info(t.e, &blob));
    XT_ASSERT(be_tcp_conninfo_decode(blob.data, blob.len, &ci, &why));
    XT_ASSERT_EQ(ci.naddrs, 1);
    XT_ASSERT_STR(ci.addrs[0], "127.0.0.1");
    free(blob.data);
    tt_close(&t);

    XT_ASSERT_OK(tt_open(&t, "p", NULL, 0));
    XT_ASSERT_OK(OPS->conn_info(t.e, &blob));
    XT_ASSERT(be_tcp_conninfo_decode(blob.data, blob.len, &ci, &why));
    XT_ASSERT_STR(ci.addrs[ci.naddrs - 1], "127.0.0.1");
    free(blob.data);
    tt_close(&t);
    return tt_leaks();
}

/* t_loopback: one engine, itself as the peer (NXL_CAP_LOCAL). */
static int
t_loopback(void)
{
    const uint64_t len = 1u << 20;
    uint8_t *a = tt_map(len), *b = tt_map(len);
    uint64_t la[4], ra[4], ln[4];
    void *mda, *mdb, *peer;
    tt_xfer tx;
    tt_eng t;
    int i;

    XT_ASSERT(a != NULL && b != NULL);
    tt_fill(a, len, 3, 0);
    XT_ASSERT_OK(tt_open(&t, "self", NULL, 0));
    XT_ASSERT_OK(tt_register(&t, a, len, &mda));
    XT_ASSERT_OK(tt_register(&t, b, len, &mdb));
    XT_ASSERT_OK(tt_self_peer(&t, &peer));

    /* READ b <- a in four pieces, in reverse order. */
    for (i = 0; i < 4; i++) {
        la[i] = (uint64_t)(uintptr_t)b + (uint64_t)(3 - i) * (len / 4);
        ra[i] = (uint64_t)(uintptr_t)a + (uint64_t)(3 - i) * (len / 4);
        ln[i] = len / 4;
    }
    XT_ASSERT_OK(tt_prep(&t, &tx, NXL_READ, peer, "self", 4, la, ra, ln));
    XT_ASSERT_STATUS(OPS->check(t.e, tx.req), NXL_ERR_NOT_POSTED);
    XT_ASSERT_OK(tt_run(&tx, NULL, 5000));
    XT_ASSERT_EQ(tt_bad(b, len, 3, 0), -1);
    /* Re-post is the steady-state loop. */
    memset(b, 0, len);
    XT_ASSERT_OK(tt_run(&tx, NULL, 5000));
    XT_ASSERT_EQ(tt_bad(b, len, 3, 0), -1);
    tt_free(&tx);

    /* WRITE a -> b with a notification to ourselves. */
    tt_fill(a, len / 2, 8, 0);
    XT_ASSERT_OK(tt_prep1(&t, &tx, NXL_WRITE, peer, "self", a,
                          (uint64_t)(uintptr_t)b + len / 2, len / 2));
    XT_ASSERT_OK(tt_run(&tx, "hello-self", 5000));
    XT_ASSERT_EQ(tt_bad(b + len / 2, len / 2, 8, 0), -1);
    XT_ASSERT(tt_wait_notifs(&t, 1, 2000));
    XT_ASSERT_STR(t.h.notifs[0].peer, "self");
    XT_ASSERT_STR(t.h.notifs[0].msg, "hello-self");
    tt_free(&tx);

    XT_ASSERT_OK(OPS->notif_send(t.e, peer, "standalone", 10));
    XT_ASSERT_OK(OPS->notif_send(t.e, peer, "", 0));
    XT_ASSERT(tt_wait_notifs(&t, 3, 2000));
    XT_ASSERT_STR(t.h.notifs[1].msg, "standalone");
    XT_ASSERT_EQ(t.h.notifs[2].len, 0);
    XT_ASSERT(atomic_load(&t.h.wakes) > 0);

    OPS->peer_unload(t.e, peer);
    OPS->mem_deregister(t.e, mda);
    OPS->mem_deregister(t.e, mdb);
    tt_close(&t);
    munmap(a, len);
    munmap(b, len);
    return tt_leaks();
}

/* t_fork_read_write: READ and WRITE against a target process that sleeps
 * in read() the whole time (its I/O thread answers). */
static int
t_fork_read_write(void)
{
    const uint64_t len = 4u << 20;
    uint8_t *buf = tt_map(len);
    uint64_t la[3], ra[3], ln[3];
    tt_target tg;
    tt_xfer tx;
    tt_eng t;
    tt_rep rep;
    void *peer, *md;

    XT_ASSERT(buf != NULL);
    XT_ASSERT_EQ(tt_spawn(&tg, "tgt", len), 0);
    XT_ASSERT_OK(tt_open(&t, "ini", NULL, 0));
    XT_ASSERT_OK(tt_register(&t, buf, len, &md));
    XT_ASSERT_OK(tt_load(&t, &tg, &peer));

    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_READ, peer, "tgt", buf, tg.hi.addr, len));
    XT_ASSERT_OK(tt_run(&tx, NULL, 10000));
    XT_ASSERT_EQ(tt_bad(buf, len, 1, 0), -1);
    tt_free(&tx);

    /* Scattered descriptors. */
    memset(buf, 0, len);
    la[0] = (uint64_t)(uintptr_t)buf;
    ra[0] = tg.hi.addr + 1000;
    ln[0] = 5000;
    la[1] = (uint64_t)(uintptr_t)buf + 8192;
    ra[1] = tg.hi.addr + 3000000;
    ln[1] = 1;
    la[2] = (uint64_t)(uintptr_t)buf + 9000;
    ra[2] = tg.hi.addr + 77;
    ln[2] = 70000;
    XT_ASSERT_OK(tt_prep(&t, &tx, NXL_READ, peer, "tgt", 3, la, ra, ln));
    XT_ASSERT_OK(tt_run(&tx, NULL, 10000));
    XT_ASSERT_EQ(tt_bad(buf, 5000, 1, 1000), -1);
    XT_ASSERT_EQ(buf[8192], tt_pat(1, 3000000));
    XT_ASSERT_EQ(tt_bad(buf + 9000, 70000, 1, 77), -1);
    tt_free(&tx);

    /* WRITE, checked by the target. */
    tt_fill(buf, 1u << 20, 2, 0);
    XT_ASSERT_OK(tt_prep1(&t, &tx, NXL_WRITE, peer, "tgt", buf,
                          tg.hi.addr + (1u << 20), 1u << 20));
    XT_ASSERT_OK(tt_run(&tx, NULL, 10000));
    XT_ASSERT_EQ(tt_cmd_run(&tg, TT_VERIFY, 2, 1u << 20, 1u << 20).v, -1);
    tt_free(&tx);

    /* WRITE with a notification: the data is there when it arrives. */
    tt_cmd_run(&tg, TT_EXPECT, 5, 2u << 20, 1u << 20);
    tt_fill(buf, 1u << 20, 5, 0);
    XT_ASSERT_OK(tt_prep1(&t, &tx, NXL_WRITE, peer, "tgt", buf,
                          tg.hi.addr + (2u << 20), 1u << 20));
    XT_ASSERT_OK(tt_run(&tx, "w-done", 10000));
    tt_free(&tx);
    rep = tt_target_wait_notifs(&tg, 1, 3000);
    XT_ASSERT_EQ(rep.n, 1);
    XT_ASSERT_EQ(rep.v, 0);
    XT_ASSERT_STR(rep.text, "ini:w-done");

    /* READ with a notification (sent after the data arrived). */
    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_READ, peer, "tgt", buf, tg.hi.addr, 4096));
    XT_ASSERT_OK(tt_run(&tx, "r-done", 10000));
    tt_free(&tx);
    rep = tt_target_wait_notifs(&tg, 2, 3000);
    XT_ASSERT_EQ(rep.n, 2);
    XT_ASSERT_STR(rep.text, "ini:r-done");

    XT_ASSERT_OK(OPS->notif_send(t.e, peer, "solo", 4));
    rep = tt_target_wait_notifs(&tg, 3, 3000);
    XT_ASSERT_EQ(rep.n, 3);
    XT_ASSERT_STR(rep.text, "ini:solo");

    OPS->peer_unload(t.e, peer);
    OPS->mem_deregister(t.e, md);
    tt_close(&t);
    XT_ASSERT_EQ(tt_target_stop(&tg), 0);
    return tt_leaks();
}

/* t_multistream: striped READ/WRITE over 4 streams, a notification after
 * every stream acked, and a descriptor count above one frame's limit. */
static int
t_multistream(void)
{
    const uint64_t len = 16u << 20;
    nxl_param_t ps[] = {{"num_streams", "4"}, {"stripe_min_bytes", "65536"}};
    uint8_t *buf = tt_map(len);
    uint64_t *la, *ra, *ln;
    const size_t nd = BE_TCP_MAX_DESCS + 4464; /* 70000 */
    be_tcp_req_t *r;
    tt_target tg;
    tt_xfer tx;
    tt_eng t;
    tt_rep rep;
    void *peer;
    size_t i;

    XT_ASSERT(buf != NULL);
    XT_ASSERT_EQ(tt_spawn(&tg, "tgt4", len), 0);
    XT_ASSERT_OK(tt_open(&t, "ini4", ps, 2));
    XT_ASSERT_OK(tt_load(&t, &tg, &peer));

    tt_cmd_run(&tg, TT_EXPECT, 9, 0, 12u << 20);
    tt_fill(buf, 12u << 20, 9, 0);
    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_WRITE, peer, "tgt4", buf, tg.hi.addr, 12u << 20));
    r = tx.req;
    XT_ASSERT_EQ(r->plan->nparts, 4);
    XT_ASSERT_OK(tt_run(&tx, "striped", 10000));
    tt_free(&tx);
    rep = tt_target_wait_notifs(&tg, 1, 3000);
    XT_ASSERT_EQ(rep.n, 1);
    XT_ASSERT_EQ(rep.v, 0);
    XT_ASSERT_STR(rep.text, "ini4:striped");

    tt_cmd_run(&tg, TT_FILL, 11, 0, len);
    memset(buf, 0, len);
    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_READ, peer, "tgt4", buf, tg.hi.addr, len));
    XT_ASSERT_OK(tt_run(&tx, NULL, 10000));
    XT_ASSERT_EQ(tt_bad(buf, len, 11, 0), -1);
    tt_free(&tx);

    /* 70,000 descriptors of 64 bytes, every other 64-byte slot. */
    la = calloc(nd, sizeof(*la));
    ra = calloc(nd, sizeof(*ra));
    ln = calloc(nd, sizeof(*ln));
    XT_ASSERT(la && ra && ln);
    memset(buf, 0, len);
    for (i = 0; i < nd; i++) {
        la[i] = (uint64_t)(uintptr_t)buf + i * 128;
        ra[i] = tg.hi.addr + i * 128 + 64;
        ln[i] = 64;
    }
    XT_ASSERT_OK(tt_prep(&t, &tx, NXL_READ, peer, "tgt4", nd, la, ra, ln));
    r = tx.req;
    XT_ASSERT(r->plan->nparts >= 2);
    XT_ASSERT_OK(tt_run(&tx, NULL, 10000));
    for (i = 0; i < nd; i++) {
        if (tt_bad(buf + i * 128, 64, 11, i * 128 + 64) >= 0) {
            XT_FAILF("descriptor %zu wrong", i);
        }
    }
    tt_free(&tx);
    free(la);
    free(ra);
    free(ln);

    OPS->peer_unload(t.e, peer);
    tt_close(&t);
    XT_ASSERT_EQ(tt_target_stop(&tg), 0);
    return tt_leaks();
}

/* --- target-side checks --------------------------------------------------- */

/* t_bounds_refused: requests outside the target's registrations are
 * refused (NOT_ALLOWED, nothing written, no notification) and the same
 * connection keeps serving valid requests. */
static int
t_bounds_refused(void)
{
    const uint64_t len = 1u << 20;
    uint8_t *buf = tt_map(len);
    uint64_t la[2], ra[2], ln[2];
    tt_target tg;
    tt_xfer tx;
    tt_eng t;
    tt_rep rep;
    void *peer;

    XT_ASSERT(buf != NULL);
    XT_ASSERT_EQ(tt_spawn(&tg, "tgtb", len), 0);
    XT_ASSERT_OK(tt_open(&t, "inib", NULL, 0));
    XT_ASSERT_OK(tt_load(&t, &tg, &peer));

    /* Straddles the end of the region. */
    XT_ASSERT_OK(tt_prep1(&t, &tx, NXL_READ, peer, "tgtb", buf,
                          tg.hi.addr + len - 100, 200));
    XT_ASSERT_STATUS(tt_run(&tx, NULL, 5000), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT(strstr(nxl_last_error(), "registered memory") != NULL);
    tt_free(&tx);
    /* Nowhere near it. */
    XT_ASSERT_OK(tt_prep1(&t, &tx, NXL_READ, peer, "tgtb", buf, 0x1000, 16));
    XT_ASSERT_STATUS(tt_run(&tx, NULL, 5000), NXL_ERR_NOT_ALLOWED);
    tt_free(&tx);
    /* A WRITE with one good and one bad descriptor writes nothing and
     * delivers no notification. */
    tt_fill(buf, len, 4, 0);
    la[0] = (uint64_t)(uintptr_t)buf;
    ra[0] = tg.hi.addr;
    ln[0] = 4096;
    la[1] = (uint64_t)(uintptr_t)buf + 4096;
    ra[1] = tg.hi.addr + 2 * len;
    ln[1] = 4096;
    XT_ASSERT_OK(tt_prep(&t, &tx, NXL_WRITE, peer, "tgtb", 2, la, ra, ln));
    XT_ASSERT_STATUS(tt_run(&tx, "should-not-arrive", 5000),
                     NXL_ERR_NOT_ALLOWED);
    tt_free(&tx);
    XT_ASSERT_EQ(tt_cmd_run(&tg, TT_VERIFY, 1, 0, len).v, -1);
    /* The connection still works, and the notification never came. */
    XT_ASSERT_OK(tt_prep1(&t, &tx, NXL_READ, peer, "tgtb", buf,
                          tg.hi.addr + 4096, 8192));
    XT_ASSERT_OK(tt_run(&tx, NULL, 5000));
    XT_ASSERT_EQ(tt_bad(buf, 8192, 1, 4096), -1);
    tt_free(&tx);
    XT_ASSERT_OK(OPS->notif_send(t.e, peer, "ok", 2));
    rep = tt_target_wait_notifs(&tg, 1, 3000);
    XT_ASSERT_EQ(rep.n, 1);
    XT_ASSERT_STR(rep.text, "inib:ok");

    OPS->peer_unload(t.e, peer);
    tt_close(&t);
    XT_ASSERT_EQ(tt_target_stop(&tg), 0);
    return tt_leaks();
}

/* tt_raw_connect opens a plain socket to an engine and, with name, says
 * hello and checks the answer. */
static int tt_raw_connect_v(tt_eng *t, const char *name, uint16_t maxv,
                            uint16_t *ackv);

static int
tt_raw_connect(tt_eng *t, const char *name)
{
    return tt_raw_connect_v(t, name, 0, NULL);
}

/* tt_raw_connect_v is tt_raw_connect with a hello offering protocol maxv
 * (0: a version-1 hello); *ackv (if not NULL) gets the server's highest. */
static int
tt_raw_connect_v(tt_eng *t, const char *name, uint16_t maxv, uint16_t *ackv)
{
    be_tcp_conninfo_t ci;
    nxl_blob_t blob;
    const char *why;
    uint8_t buf[2048];
    be_tcp_frame_t f;
    be_tcp_hello_t h;
    size_t k;
    int fd = -1;

    if (OPS->conn_info(t->e, &blob) != NXL_OK) {
        return -1;
    }
    if (!be_tcp_conninfo_decode(blob.data, blob.len, &ci, &why) ||
        nxl__sock_connect("127.0.0.1", ci.port, 2000, &fd) != NXL_OK) {
        free(blob.data);
        return -1;
    }
    free(blob.data);
    if (name == NULL) {
        return fd;
    }
    k = be_tcp_hello_encode_max(buf + 32, sizeof(buf) - 32, name, 0, 1, maxv);
    tt_frame(buf, BE_TCP_HELLO, 0, 0, 0, (uint32_t)k, 0, 0);
    if (nxl__sock_send_all(fd, buf, 32 + k, 2000) != NXL_OK ||
        nxl__sock_recv_all(fd, buf, 32, 2000) != NXL_OK ||
        be_tcp_frame_decode(buf, 32, &f, &why) != 32 ||
        f.type != BE_TCP_HELLO_ACK || f.status != 0 ||
        nxl__sock_recv_all(fd, buf, f.aux_len, 2000) != NXL_OK ||
        !be_tcp_hello_decode(buf, f.aux_len, &h, &why)) {
        close(fd);
        return -1;
    }
    if (ackv != NULL) {
        *ackv = h.max_version;
    }
    return fd;
}

/* tt_closed_within says whether the server closed fd within ms. */
static bool
tt_closed_within(int fd, uint64_t ms)
{
    uint8_t b[4096];
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    uint64_t end = xt_now_ms() + ms;
    ssize_t n;

    while (xt_now_ms() < end) {
        if (poll(&pfd, 1, 100) <= 0) {
            continue;
        }
        n = recv(fd, b, sizeof(b), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            return true;
        }
    }
    return false;
}

/* tt_closed says whether the server closed fd within 2 s. */
static bool
tt_closed(int fd)
{
    return tt_closed_within(fd, 2000);
}

/* tt_hello_waiting reads how many accepted connections owe a hello. */
static unsigned
tt_hello_waiting(tt_eng *t)
{
    be_tcp_engine_t *eng = t->e;
    unsigned n;

    pthread_mutex_lock(&eng->io_lock);
    n = eng->hello_waiting;
    pthread_mutex_unlock(&eng->io_lock);
    return n;
}

/* t_hello_timeout: an accepted connection that sends nothing, part of a
 * hello header, or a header and part of its body is closed once
 * hello_timeout_ms passes; one that said hello is not, and keeps being
 * served after the others' deadlines. */
static int
t_hello_timeout(void)
{
    nxl_param_t prm[] = {{"hello_timeout_ms", "300"}};
    uint8_t *mem = tt_map(4096), buf[512];
    int good, silent, part_hdr, part_body;
    const char *why;
    be_tcp_frame_t f;
    uint64_t base, t0;
    tt_eng t;
    void *md;
    size_t n;

    XT_ASSERT(mem != NULL);
    base = (uint64_t)(uintptr_t)mem;
    tt_fill(mem, 4096, 6, 0);
    XT_ASSERT_OK(tt_open(&t, "srv", prm, 1));
    XT_ASSERT_OK(tt_register(&t, mem, 4096, &md));

    good = tt_raw_connect(&t, "early");
    XT_ASSERT(good >= 0);
    t0 = xt_now_ms();
    silent = tt_raw_connect(&t, NULL);
    part_hdr = tt_raw_connect(&t, NULL);
    part_body = tt_raw_connect(&t, NULL);
    XT_ASSERT(silent >= 0 && part_hdr >= 0 && part_body >= 0);
    n = be_tcp_hello_encode(buf + 32, sizeof(buf) - 32, "slow", 0, 1);
    tt_frame(buf, BE_TCP_HELLO, 0, 0, 0, (uint32_t)n, 0, 0);
    XT_ASSERT_OK(nxl__sock_send_all(part_hdr, buf, 20, 1000));
    XT_ASSERT_OK(nxl__sock_send_all(part_body, buf, 32 + n - 3, 1000));

    /* Generous bounds: closed at all, and not before the deadline. */
    XT_ASSERT(tt_closed_within(silent, 10000));
    XT_ASSERT(tt_closed_within(part_hdr, 10000));
    XT_ASSERT(tt_closed_within(part_body, 10000));
    XT_ASSERT(xt_now_ms() - t0 >= 300);
    printf("  three hello-less connections closed %" PRIu64 " ms after "
           "connecting (hello_timeout_ms 300)\n",
           xt_now_ms() - t0);
    XT_ASSERT_EQ(tt_hello_waiting(&t), 0);

    /* The connection that said hello first still works. */
    n = tt_frame(buf, BE_TCP_READ_REQ, 0, 0, 1, 0, 1, 0);
    n += tt_wd(buf + n, base + 8, 8);
    XT_ASSERT_OK(nxl__sock_send_all(good, buf, n, 1000));
    XT_ASSERT_OK(nxl__sock_recv_all(good, buf, 40, 2000));
    XT_ASSERT_EQ(be_tcp_frame_decode(buf, 32, &f, &why), 32);
    XT_ASSERT_EQ(f.type, BE_TCP_READ_RESP);
    XT_ASSERT_EQ(f.status, 0);
    XT_ASSERT_EQ(tt_bad(buf + 32, 8, 6, 8), -1);

    close(silent);
    close(part_hdr);
    close(part_body);
    close(good);
    OPS->mem_deregister(t.e, md);
    tt_close(&t);
    munmap(mem, 4096);
    return tt_leaks();
}

/* t_crafted_frames speaks the wire protocol by hand: requests outside
 * registered memory get error replies on a connection that stays usable;
 * malformed frames close the connection; the engine keeps serving. */
static int
t_crafted_frames(void)
{
    uint8_t *mem = tt_map(65536), buf[1024];
    const char *why;
    be_tcp_frame_t f;
    uint64_t base;
    tt_eng t;
    void *md;
    size_t n;
    int fd;

    XT_ASSERT(mem != NULL);
    base = (uint64_t)(uintptr_t)mem;
    tt_fill(mem, 65536, 4, 0);
    XT_ASSERT_OK(tt_open(&t, "srv", NULL, 0));
    XT_ASSERT_OK(tt_register(&t, mem, 65536, &md));

    /* A request before the hello closes the connection. */
    fd = tt_raw_connect(&t, NULL);
    XT_ASSERT(fd >= 0);
    n = tt_frame(buf, BE_TCP_READ_REQ, 0, 0, 1, 0, 1, 0);
    n += tt_wd(buf + n, base, 16);
    XT_ASSERT_OK(nxl__sock_send_all(fd, buf, n, 1000));
    XT_ASSERT(tt_closed(fd));
    close(fd);

    fd = tt_raw_connect(&t, "raw-client");
    XT_ASSERT(fd >= 0);
    /* READ outside: error reply, no data. */
    n = tt_frame(buf, BE_TCP_READ_REQ, 0, 0, 1, 0, 1, 0);
    n += tt_wd(buf + n, base + 65536 - 8, 16);
    XT_ASSERT_OK(nxl__sock_send_all(fd, buf, n, 1000));
    XT_ASSERT_OK(nxl__sock_recv_all(fd, buf, 32, 2000));
    XT_ASSERT_EQ(be_tcp_frame_decode(buf, 32, &f, &why), 32);
    XT_ASSERT_EQ(f.type, BE_TCP_READ_RESP);
    XT_ASSERT_EQ(f.id, 1);
    XT_ASSERT_EQ(f.status, NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_EQ(f.data_len, 0);
    /* READ inside, two descriptors, pipelined behind a WRITE outside whose
     * payload must be skipped. */
    n = tt_frame(buf, BE_TCP_WRITE_REQ, 0, 0, 1, 0, 2, 50);
    n += tt_wd(buf + n, base - 4096, 50);
    memset(buf + n, 0xee, 50);
    n += 50;
    n += tt_frame(buf + n, BE_TCP_READ_REQ, 0, 0, 2, 0, 3, 0);
    n += tt_wd(buf + n, base + 10, 100);
    n += tt_wd(buf + n, base + 60000, 20);
    XT_ASSERT_OK(nxl__sock_send_all(fd, buf, n, 1000));
    XT_ASSERT_OK(nxl__sock_recv_all(fd, buf, 32, 2000));
    XT_ASSERT_EQ(be_tcp_frame_decode(buf, 32, &f, &why), 32);
    XT_ASSERT_EQ(f.type, BE_TCP_WRITE_ACK);
    XT_ASSERT_EQ(f.id, 2);
    XT_ASSERT_EQ(f.status, NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_OK(nxl__sock_recv_all(fd, buf, 32, 2000));
    XT_ASSERT_EQ(be_tcp_frame_decode(buf, 32, &f, &why), 32);
    XT_ASSERT_EQ(f.type, BE_TCP_READ_RESP);
    XT_ASSERT_EQ(f.id, 3);
    XT_ASSERT_EQ(f.status, 0);
    XT_ASSERT_EQ(f.data_len, 120);
    XT_ASSERT_OK(nxl__sock_recv_all(fd, buf, 120, 2000));
    XT_ASSERT_EQ(tt_bad(buf, 100, 4, 10), -1);
    XT_ASSERT_EQ(tt_bad(buf + 100, 20, 4, 60000), -1);
    /* WRITE inside with a notification. */
    n = tt_frame(buf, BE_TCP_WRITE_REQ, BE_TCP_F_NOTIF, 0, 1, 3, 4, 8);
    n += tt_wd(buf + n, base, 8);
    memcpy(buf + n, "raw", 3);
    n += 3;
    memcpy(buf + n, "12345678", 8);
    n += 8;
    XT_ASSERT_OK(nxl__sock_send_all(fd, buf, n, 1000));
    XT_ASSERT_OK(nxl__sock_recv_all(fd, buf, 32, 2000));
    XT_ASSERT_EQ(be_tcp_frame_decode(buf, 32, &f, &why), 32);
    XT_ASSERT_EQ(f.type, BE_TCP_WRITE_ACK);
    XT_ASSERT_EQ(f.status, 0);
    XT_ASSERT(memcmp(mem, "12345678", 8) == 0);
    XT_ASSERT(tt_wait_notifs(&t, 1, 2000));
    XT_ASSERT_STR(t.h.notifs[0].peer, "raw-client");
    XT_ASSERT_STR(t.h.notifs[0].msg, "raw");
    /* NOTIF frames naming a WRITE: dropped after the refused one (id 2),
     * delivered after the accepted one (id 4); id 0 is standalone. */
    n = tt_frame(buf, BE_TCP_NOTIF, 0, 0, 0, 4, 2, 0);
    memcpy(buf + n, "drop", 4);
    n += 4;
    n += tt_frame(buf + n, BE_TCP_NOTIF, 0, 0, 0, 4, 4, 0);
    memcpy(buf + n, "kept", 4);
    n += 4;
    n += tt_frame(buf + n, BE_TCP_NOTIF, 0, 0, 0, 4, 0, 0);
    memcpy(buf + n, "solo", 4);
    n += 4;
    XT_ASSERT_OK(nxl__sock_send_all(fd, buf, n, 1000));
    XT_ASSERT(tt_wait_notifs(&t, 3, 2000));
    usleep(20000);
    XT_ASSERT_EQ(tt_nnotifs(&t), 3);
    XT_ASSERT_STR(t.h.notifs[1].msg, "kept");
    XT_ASSERT_STR(t.h.notifs[2].msg, "solo");
    /* Garbage closes the connection. */
    memset(buf, 0x41, 64);
    XT_ASSERT_OK(nxl__sock_send_all(fd, buf, 64, 1000));
    XT_ASSERT(tt_closed(fd));
    close(fd);

    /* A WRITE whose data length differs from its descriptors. */
    fd = tt_raw_connect(&t, "raw2");
    XT_ASSERT(fd >= 0);
    n = tt_frame(buf, BE_TCP_WRITE_REQ, 0, 0, 1, 0, 1, 7);
    n += tt_wd(buf + n, base, 8);
    XT_ASSERT_OK(nxl__sock_send_all(fd, buf, n + 7, 1000));
    XT_ASSERT(tt_closed(fd));
    close(fd);
    /* A hello with a NUL in the name, and one with a huge body. */
    fd = tt_raw_connect(&t, NULL);
    XT_ASSERT(fd >= 0);
    n = be_tcp_hello_encode(buf + 32, 200, "a-b", 0, 1);
    buf[32 + n - 2] = '\0';
    tt_frame(buf, BE_TCP_HELLO, 0, 0, 0, (uint32_t)n, 0, 0);
    XT_ASSERT_OK(nxl__sock_send_all(fd, buf, 32 + n, 1000));
    XT_ASSERT(tt_closed(fd));
    close(fd);
    fd = tt_raw_connect(&t, NULL);
    XT_ASSERT(fd >= 0);
    tt_frame(buf, BE_TCP_HELLO, 0, 0, 0, 1u << 31, 0, 0);
    XT_ASSERT_OK(nxl__sock_send_all(fd, buf, 32, 1000));
    XT_ASSERT(tt_closed(fd));
    close(fd);
    /* A frame announcing a huge descriptor table, then hang-up mid-way. */
    fd = tt_raw_connect(&t, "raw3");
    XT_ASSERT(fd >= 0);
    tt_frame(buf, BE_TCP_READ_REQ, 0, 0, BE_TCP_MAX_DESCS, 0, 1, 0);
    XT_ASSERT_OK(nxl__sock_send_all(fd, buf, 32 + 500, 1000));
    close(fd);

    /* Still serving. */
    fd = tt_raw_connect(&t, "raw4");
    XT_ASSERT(fd >= 0);
    n = tt_frame(buf, BE_TCP_READ_REQ, 0, 0, 1, 0, 9, 0);
    n += tt_wd(buf + n, base + 8, 8);
    XT_ASSERT_OK(nxl__sock_send_all(fd, buf, n, 1000));
    XT_ASSERT_OK(nxl__sock_recv_all(fd, buf, 40, 2000));
    XT_ASSERT_EQ(be_tcp_frame_decode(buf, 32, &f, &why), 32);
    XT_ASSERT_EQ(f.status, 0);
    XT_ASSERT_EQ(tt_bad(buf + 32, 8, 4, 8), -1);
    close(fd);

    OPS->mem_deregister(t.e, md);
    tt_close(&t);
    munmap(mem, 65536);
    return tt_leaks();
}

/* t_backpressure: a client that sends 5,000 READs of 64 KiB before
 * reading any reply makes the server stop reading at 4,096 queued replies
 * and resume as they drain; every reply arrives, in order. */
static int
t_backpressure(void)
{
    const unsigned n = 5000;
    uint8_t *mem = tt_map(65536), *req, *reply;
    const char *why;
    be_tcp_frame_t f;
    uint64_t base;
    size_t k = 0;
    unsigned i;
    tt_eng t;
    void *md;
    int fd;

    XT_ASSERT(mem != NULL);
    base = (uint64_t)(uintptr_t)mem;
    tt_fill(mem, 65536, 5, 0);
    XT_ASSERT_OK(tt_open(&t, "srvbp", NULL, 0));
    XT_ASSERT_OK(tt_register(&t, mem, 65536, &md));
    fd = tt_raw_connect(&t, "flooder");
    XT_ASSERT(fd >= 0);
    req = malloc((size_t)n * 48);
    reply = malloc(65536);
    XT_ASSERT(req != NULL && reply != NULL);
    for (i = 0; i < n; i++) {
        k += tt_frame(req + k, BE_TCP_READ_REQ, 0, 0, 1, 0, i + 1, 0);
        k += tt_wd(req + k, base, 65536);
    }
    XT_ASSERT_OK(nxl__sock_send_all(fd, req, k, 5000));
    usleep(100000);
    for (i = 0; i < n; i++) {
        XT_ASSERT_OK(nxl__sock_recv_all(fd, reply, 32, 5000));
        XT_ASSERT_EQ(be_tcp_frame_decode(reply, 32, &f, &why), 32);
        XT_ASSERT_EQ(f.id, i + 1);
        XT_ASSERT_EQ(f.data_len, 65536);
        XT_ASSERT_OK(nxl__sock_recv_all(fd, reply, 65536, 5000));
        if (i == 0 || i == n - 1) {
            XT_ASSERT_EQ(tt_bad(reply, 65536, 5, 0), -1);
        }
    }
    close(fd);
    free(req);
    free(reply);
    OPS->mem_deregister(t.e, md);
    tt_close(&t);
    munmap(mem, 65536);
    return tt_leaks();
}

/* --- death, reconnect ----------------------------------------------------- */

/* tt_big_read prepares a READ that takes seconds: n descriptors that all
 * cover the same len bytes on both sides. */
static nxl_status_t
tt_big_read(tt_eng *t, tt_xfer *tx, nxl_op_t op, void *peer, const char *pn,
            uint8_t *local, uint64_t remote, uint64_t len, size_t n)
{
    uint64_t *la = calloc(n, 8), *ra = calloc(n, 8), *ln = calloc(n, 8);
    nxl_status_t st;
    size_t i;

    for (i = 0; i < n; i++) {
        la[i] = (uint64_t)(uintptr_t)local;
        ra[i] = remote;
        ln[i] = len;
    }
    st = tt_prep(t, tx, op, peer, pn, n, la, ra, ln);
    free(la);
    free(ra);
    free(ln);
    return st;
}

/* tt_death ends a target while a large READ is in flight (reset: linger 0
 * and exit; else SIGKILL) and checks REMOTE_DISCONNECT within 2 s, then
 * that later requests fail at once. */
static int
tt_death(bool reset)
{
    const uint64_t len = 8u << 20;
    uint8_t *buf = tt_map(len);
    tt_target tg;
    tt_xfer tx, tx2;
    tt_eng t;
    nxl_status_t st;
    uint64_t t0;
    tt_cmd cmd = {.op = TT_RESET};
    void *peer;

    XT_ASSERT(buf != NULL);
    XT_ASSERT_EQ(tt_spawn(&tg, "victim", len), 0);
    XT_ASSERT_OK(tt_open(&t, "survivor", NULL, 0));
    XT_ASSERT_OK(tt_load(&t, &tg, &peer));
    XT_ASSERT_OK(tt_big_read(&t, &tx, NXL_READ, peer, "victim", buf, tg.hi.addr,
                             len, 2048)); /* 16 GiB */
    XT_ASSERT_EQ(tt_post_notif(&tx, NULL), NXL_IN_PROG);
    usleep(50000);
    XT_ASSERT_EQ(OPS->check(t.e, tx.req), NXL_IN_PROG);
    t0 = xt_now_ms();
    if (reset) {
        XT_ASSERT(xt_write_all(tg.sock, &cmd, sizeof(cmd)) == 0);
        close(tg.sock);
        waitpid(tg.pid, NULL, 0);
        tg.pid = 0;
    } else {
        tt_target_kill(&tg);
    }
    st = tt_wait(&tx, 2000);
    XT_ASSERT_STATUS(st, NXL_ERR_REMOTE_DISCONNECT);
    XT_ASSERT(xt_now_ms() - t0 < 2000);
    printf("  %s noticed after %llu ms: %s\n", reset ? "reset" : "kill",
           (unsigned long long)(xt_now_ms() - t0), nxl_last_error());
    /* Later requests and notifications fail at once. */
    XT_ASSERT_OK(
        tt_prep1(&t, &tx2, NXL_READ, peer, "victim", buf, tg.hi.addr, 64));
    XT_ASSERT_STATUS(tt_post_notif(&tx2, NULL), NXL_ERR_REMOTE_DISCONNECT);
    XT_ASSERT_STATUS(tt_run(&tx, NULL, 100), NXL_ERR_REMOTE_DISCONNECT);
    XT_ASSERT_STATUS(OPS->notif_send(t.e, peer, "x", 1),
                     NXL_ERR_REMOTE_DISCONNECT);
    tt_free(&tx2);
    tt_free(&tx);
    OPS->peer_unload(t.e, peer);
    tt_close(&t);
    munmap(buf, len);
    return tt_leaks();
}

/* t_reset_mid_transfer: RST during a large READ. */
static int
t_reset_mid_transfer(void)
{
    return tt_death(true);
}

/* t_kill_mid_read: SIGKILL of the target during a large READ. */
static int
t_kill_mid_read(void)
{
    return tt_death(false);
}

/* t_idle_death_wakes: a loaded peer that dies while nothing is in flight
 * wakes the agent (host->wake and the event fd) at once, and the next
 * call to it says REMOTE_DISCONNECT (before: nothing woke a thread that
 * slept on the agent's fd waiting for that peer's notification). */
static int
t_idle_death_wakes(void)
{
    struct pollfd pfd;
    unsigned w0, i;
    tt_target tg;
    tt_eng t;
    void *peer;

    XT_ASSERT_EQ(tt_spawn(&tg, "mortal", 65536), 0);
    XT_ASSERT_OK(tt_open(&t, "watcher", NULL, 0));
    XT_ASSERT_OK(tt_load(&t, &tg, &peer));
    XT_ASSERT_OK(OPS->notif_send(t.e, peer, "hi", 2));
    XT_ASSERT_EQ(tt_target_wait_notifs(&tg, 1, 5000).n, 1);
    pfd.fd = OPS->event_fd(t.e);
    pfd.events = POLLIN;
    (void)OPS->progress(t.e);
    XT_ASSERT_EQ(poll(&pfd, 1, 0), 0);
    w0 = atomic_load(&t.h.wakes);

    tt_target_kill(&tg);
    XT_ASSERT_EQ(poll(&pfd, 1, 2000), 1);
    for (i = 0; i < 200 && atomic_load(&t.h.wakes) == w0; i++) {
        usleep(10000);
    }
    XT_ASSERT(atomic_load(&t.h.wakes) > w0);
    (void)OPS->progress(t.e);
    XT_ASSERT_EQ(poll(&pfd, 1, 0), 0); /* drained: no busy loop */
    XT_ASSERT_STATUS(OPS->notif_send(t.e, peer, "hi", 2),
                     NXL_ERR_REMOTE_DISCONNECT);
    XT_ASSERT(strstr(nxl_last_error(), "mortal") != NULL);
    OPS->peer_unload(t.e, peer);
    tt_close(&t);
    return tt_leaks();
}

/* t_reconnect: after a peer dies, unload + load with its new conn info
 * connects again (unlike NIXL, disconnect is not terminal). */
static int
t_reconnect(void)
{
    const uint64_t len = 1u << 20;
    tt_target_cfg cfg = {.name = "phoenix", .len = len};
    uint8_t *buf = tt_map(len);
    tt_target t1, t2;
    tt_xfer tx;
    tt_eng t;
    void *peer;

    XT_ASSERT(buf != NULL);
    /* Fork both before this process has threads. */
    XT_ASSERT_EQ(tt_target_fork(&t1, &cfg), 0);
    XT_ASSERT_EQ(tt_target_fork(&t2, &cfg), 0);
    XT_ASSERT_EQ(tt_target_start(&t1), 0);
    XT_ASSERT_OK(tt_open(&t, "client", NULL, 0));
    XT_ASSERT_OK(tt_load(&t, &t1, &peer));
    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_READ, peer, "phoenix", buf, t1.hi.addr, len));
    XT_ASSERT_OK(tt_run(&tx, NULL, 5000));
    XT_ASSERT_EQ(tt_bad(buf, len, 1, 0), -1);
    tt_free(&tx);

    tt_target_kill(&t1);
    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_READ, peer, "phoenix", buf, t1.hi.addr, len));
    XT_ASSERT_STATUS(tt_run(&tx, NULL, 2000), NXL_ERR_REMOTE_DISCONNECT);
    tt_free(&tx);

    XT_ASSERT_EQ(tt_target_start(&t2), 0);
    tt_cmd_run(&t2, TT_FILL, 12, 0, len);
    OPS->peer_unload(t.e, peer);
    XT_ASSERT_OK(tt_load(&t, &t2, &peer));
    memset(buf, 0, len);
    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_READ, peer, "phoenix", buf, t2.hi.addr, len));
    XT_ASSERT_OK(tt_run(&tx, NULL, 5000));
    XT_ASSERT_EQ(tt_bad(buf, len, 12, 0), -1);
    tt_free(&tx);
    tt_fill(buf, 4096, 13, 0);
    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_WRITE, peer, "phoenix", buf, t2.hi.addr, 4096));
    XT_ASSERT_OK(tt_run(&tx, NULL, 5000));
    XT_ASSERT_EQ(tt_cmd_run(&t2, TT_VERIFY, 13, 0, 4096).v, -1);
    tt_free(&tx);

    OPS->peer_unload(t.e, peer);
    tt_close(&t);
    XT_ASSERT_EQ(tt_target_stop(&t2), 0);
    return tt_leaks();
}

/* --- concurrency, cancel, timeouts, event fd ------------------------------ */

typedef struct tt_worker {
    tt_eng *t;
    void *peer;
    uint64_t raddr; /* this worker's 1 MiB slice on the target */
    uint64_t roff;  /* its offset in the target's buffer */
    uint8_t *local; /* 1 MiB */
    unsigned n;
    int failed;
    char err[256];
} tt_worker;

/* tt_worker_main posts n 4 KiB READs at once, waits for all, checks them,
 * then does the same with WRITEs. */
static void *
tt_worker_main(void *arg)
{
    tt_worker *w = arg;
    tt_xfer *tx = calloc(w->n, sizeof(*tx));
    nxl_status_t st;
    unsigned i, k;

    for (k = 0; k < 2 && !w->failed; k++) {
        if (k == 1) {
            tt_fill(w->local, (uint64_t)w->n * 4096, 6, 0);
        }
        for (i = 0; i < w->n && !w->failed; i++) {
            st = tt_prep1(w->t, &tx[i], k == 0 ? NXL_READ : NXL_WRITE, w->peer,
                          "many", w->local + (size_t)i * 4096,
                          w->raddr + (uint64_t)i * 4096, 4096);
            if (st == NXL_OK) {
                st = tt_post_notif(&tx[i], NULL);
            }
            if (st != NXL_IN_PROG && st != NXL_OK) {
                w->failed = 1;
                snprintf(w->err, sizeof(w->err), "post %u: %s %s", i,
                         nxl_status_name(st), nxl_last_error());
            }
        }
        for (i = 0; i < w->n; i++) {
            if (tx[i].req == NULL) {
                continue;
            }
            st = tt_wait(&tx[i], 10000);
            if (st != NXL_OK && !w->failed) {
                w->failed = 1;
                snprintf(w->err, sizeof(w->err), "wait %u: %s %s", i,
                         nxl_status_name(st), nxl_last_error());
            }
            tt_free(&tx[i]);
        }
        if (k == 0 && !w->failed) {
            long long bad = tt_bad(w->local, (uint64_t)w->n * 4096, 1, w->roff);

            if (bad >= 0) {
                w->failed = 1;
                snprintf(w->err, sizeof(w->err), "READ data wrong at %lld",
                         bad);
            }
        }
    }
    free(tx);
    return NULL;
}

/* t_concurrent_small: 1,000 concurrent 4 KiB requests from 4 threads. */
static int
t_concurrent_small(void)
{
    const uint64_t len = 4u << 20;
    tt_worker w[4];
    pthread_t th[4];
    tt_target tg;
    tt_eng t;
    void *peer;
    int i;

    XT_ASSERT_EQ(tt_spawn(&tg, "many", len), 0);
    XT_ASSERT_OK(tt_open(&t, "threads", NULL, 0));
    XT_ASSERT_OK(tt_load(&t, &tg, &peer));
    for (i = 0; i < 4; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].t = &t;
        w[i].peer = peer;
        w[i].roff = (uint64_t)i << 20;
        w[i].raddr = tg.hi.addr + w[i].roff;
        w[i].local = tt_map(1u << 20);
        w[i].n = 250;
        XT_ASSERT(w[i].local != NULL);
    }
    /* Each worker: 250 READs in flight (1,000 in all), checked, then 250
     * WRITEs, checked on the target below. */
    for (i = 0; i < 4; i++) {
        XT_ASSERT_EQ(pthread_create(&th[i], NULL, tt_worker_main, &w[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        if (w[i].failed) {
            XT_FAILF("worker %d: %s", i, w[i].err);
        }
    }
    for (i = 0; i < 4; i++) {
        /* The target now holds pattern 6 (relative to each slice). */
        XT_ASSERT_EQ(
            tt_cmd_run(&tg, TT_VERIFY, 6, (uint64_t)i << 20, 250 * 4096).v, -1);
        munmap(w[i].local, 1u << 20);
    }
    OPS->peer_unload(t.e, peer);
    tt_close(&t);
    XT_ASSERT_EQ(tt_target_stop(&tg), 0);
    return tt_leaks();
}

/* t_cancel: canceling (or releasing) an in-flight READ or WRITE returns at
 * once, and the stream stays usable: the rest of a canceled READ reply is
 * discarded, the rest of a canceled WRITE goes out as zeros. */
static int
t_cancel(void)
{
    const uint64_t len = 8u << 20;
    uint8_t *buf = tt_map(len), *small = tt_map(65536);
    tt_target tg;
    tt_xfer big, tx;
    tt_eng t;
    uint64_t t0;
    void *peer;
    int k;

    XT_ASSERT(buf != NULL && small != NULL);
    XT_ASSERT_EQ(tt_spawn(&tg, "tgtc", len), 0);
    XT_ASSERT_OK(tt_open(&t, "inic", NULL, 0));
    XT_ASSERT_OK(tt_load(&t, &tg, &peer));
    tt_fill(buf, len, 2, 0);
    for (k = 0; k < 3; k++) {
        XT_ASSERT_OK(tt_big_read(&t, &big, k == 1 ? NXL_WRITE : NXL_READ, peer,
                                 "tgtc", buf, tg.hi.addr, len, 32));
        XT_ASSERT_EQ(tt_post_notif(&big, k == 0 ? "never" : NULL), NXL_IN_PROG);
        XT_ASSERT_STATUS(OPS->post(t.e, big.req, &big.x),
                         NXL_ERR_REPOST_ACTIVE);
        usleep(20000);
        t0 = xt_now_ms();
        if (k < 2) {
            OPS->cancel(t.e, big.req);
            XT_ASSERT_STATUS(OPS->check(t.e, big.req), NXL_ERR_CANCELED);
        }
        tt_free(&big); /* k == 2: release while in flight */
        XT_ASSERT(xt_now_ms() - t0 < 500);
        /* Same stream, next request. */
        XT_ASSERT_OK(tt_prep1(&t, &tx, NXL_READ, peer, "tgtc", small,
                              tg.hi.addr + 8u * 1000003u, 65536));
        XT_ASSERT_OK(tt_run(&tx, NULL, 10000));
        if (k != 1) {
            XT_ASSERT_EQ(tt_bad(small, 65536, 1, 8u * 1000003u), -1);
        }
        tt_free(&tx);
        tt_cmd_run(&tg, TT_FILL, 1, 0, len); /* undo the canceled WRITE */
    }
    XT_ASSERT_EQ(tt_target_wait_notifs(&tg, 0, 0).n, 0);
    OPS->peer_unload(t.e, peer);
    tt_close(&t);
    XT_ASSERT_EQ(tt_target_stop(&tg), 0);
    return tt_leaks();
}

/* --- protocol version 2: CANCEL reaches the target ---------------------- */

/* t_frame_v2: the version-2 codec: hellos carry the highest version (0 =
 * 1 from older peers), CANCEL frames are a bare header naming a request,
 * READ replies may say more frames follow. */
static int
t_frame_v2(void)
{
    struct {
        uint8_t type, flags;
        int32_t status;
        uint32_t ndesc, aux;
        uint64_t id, data;
        bool ok;
    } cases[] = {
        {BE_TCP_CANCEL, 0, 0, 0, 0, 5, 0, true},
        {BE_TCP_CANCEL, 0, 0, 0, 0, 0, 0, false}, /* id 0 */
        {BE_TCP_CANCEL, 1, 0, 0, 0, 5, 0, false},
        {BE_TCP_CANCEL, 0, -1, 0, 0, 5, 0, false},
        {BE_TCP_CANCEL, 0, 0, 1, 0, 5, 0, false},
        {BE_TCP_CANCEL, 0, 0, 0, 4, 5, 0, false},
        {BE_TCP_CANCEL, 0, 0, 0, 0, 5, 8, false},
        {BE_TCP_READ_RESP, BE_TCP_F_MORE, 0, 0, 0, 5, 4096, true},
        {BE_TCP_READ_RESP, BE_TCP_F_MORE, NXL_ERR_CANCELED, 0, 0, 5, 0, false},
        {BE_TCP_READ_RESP, 0, NXL_ERR_CANCELED, 0, 0, 5, 0, true},
        {BE_TCP_READ_RESP, 0x04, 0, 0, 0, 5, 8, false},
        {BE_TCP_WRITE_ACK, BE_TCP_F_MORE, 0, 0, 0, 5, 0, false},
        {9, 0, 0, 0, 0, 5, 0, false},
    };
    uint8_t buf[256];
    const char *why;
    be_tcp_frame_t f;
    be_tcp_hello_t h;
    size_t i, k;

    for (i = 0; i < NXL__ARRAY_SIZE(cases); i++) {
        tt_frame(buf, cases[i].type, cases[i].flags, cases[i].status,
                 cases[i].ndesc, cases[i].aux, cases[i].id, cases[i].data);
        why = NULL;
        if (be_tcp_frame_decode(buf, 32, &f, &why) != (cases[i].ok ? 32 : -1)) {
            fprintf(stderr, "case %zu: %s\n", i, why ? why : "accepted");
            return 1;
        }
    }
    /* A CANCEL scans as a frame of its own. */
    k = tt_frame(buf, BE_TCP_CANCEL, 0, 0, 0, 0, 3, 0);
    XT_ASSERT_EQ(be_tcp_stream_scan(buf, k, &why), 1);
    /* Hellos: max_version round-trips; 0 (older peers) reads as 1. */
    k = be_tcp_hello_encode_max(buf, sizeof(buf), "v2", 0, 1, 2);
    XT_ASSERT(be_tcp_hello_decode(buf, k, &h, &why));
    XT_ASSERT_EQ(h.version, BE_TCP_VERSION);
    XT_ASSERT_EQ(h.max_version, 2);
    k = be_tcp_hello_encode(buf, sizeof(buf), "v1", 0, 1);
    XT_ASSERT_EQ(buf[10], 0);
    XT_ASSERT_EQ(buf[11], 0);
    XT_ASSERT(be_tcp_hello_decode(buf, k, &h, &why));
    XT_ASSERT_EQ(h.max_version, 1);
    return 0;
}

/* tt_stats asks a target for its server counters. */
static tt_rep
tt_stats(tt_target *tg)
{
    return tt_cmd_run(tg, TT_STATS, 0, 0, 0);
}

/* tt_sent_settled is the target's sent-bytes count once it stopped
 * moving for 30 ms (the counter never lags what we received, see
 * be_tcp_conn_flush; the wait is for bytes still on their way). */
static uint64_t
tt_sent_settled(tt_target *tg)
{
    uint64_t a = (uint64_t)tt_stats(tg).v, b;

    for (;;) {
        usleep(30000);
        b = (uint64_t)tt_stats(tg).v;
        if (b == a) {
            return b;
        }
        a = b;
    }
}

/* tt_ver is the max_version param for version v. NXL_TCP_TEST_FORCE_V1=1
 * makes every side speak version 1 (what all peers did before version 2),
 * which shows the version-2 expectations of tcp/cancel_target fail then. */
static const char *
tt_ver(unsigned v)
{
    return (v == 1 || getenv("NXL_TCP_TEST_FORCE_V1") != NULL) ? "1" : "2";
}

/* tt_cancel_pair runs an initiator offering version ini_v against a
 * target offering tgt_v: checks the version they agree on, a 16 MiB READ
 * and a 1 MiB WRITE byte for byte, then posts a 256 MiB READ (16 x the
 * target's 16 MiB) and releases it at once (mid: once the target has
 * sent 8 MiB of it). *sent_p gets the bytes the target's server side
 * sent for that READ (its sendmsg count, less the small READ after it,
 * which must return the right bytes on the same stream); *late_p is true
 * when the READ had already finished when it was released (a slow or
 * loaded host), so the run shows nothing about canceling. */
static int
tt_cancel_pair(unsigned ini_v, unsigned tgt_v, bool mid, uint64_t *sent_p,
               bool *late_p)
{
    const uint64_t len = 16u << 20;
    const size_t n = 16;
    uint8_t *buf = tt_map(len), *small = tt_map(65536);
    tt_target_cfg cfg = {.name = "tgtv", .len = len, .nparams = 1};
    nxl_param_t ip[1] = {{"max_version", tt_ver(ini_v)}};
    unsigned want;
    be_tcp_peer_t *bp;
    tt_target tg;
    tt_xfer big, tx;
    tt_eng t;
    uint64_t s0, s1, t0;
    tt_rep rep;
    void *peer;

    XT_ASSERT(buf != NULL && small != NULL);
    cfg.params[0].key = "max_version";
    cfg.params[0].value = tt_ver(tgt_v);
    want =
        (strcmp(ip[0].value, "2") == 0 && strcmp(cfg.params[0].value, "2") == 0)
            ? 2
            : 1;
    XT_ASSERT_EQ(tt_target_fork(&tg, &cfg), 0);
    XT_ASSERT_EQ(tt_target_start(&tg), 0);
    XT_ASSERT_OK(tt_open(&t, "iniv", ip, 1));
    XT_ASSERT_OK(tt_load(&t, &tg, &peer));
    bp = peer;
    XT_ASSERT_EQ(bp->conns[0]->proto, want);

    /* Data both ways (the READ is 4 reply frames in version 2). */
    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_READ, peer, "tgtv", buf, tg.hi.addr, len));
    XT_ASSERT_OK(tt_run(&tx, NULL, 20000));
    XT_ASSERT_EQ(tt_bad(buf, len, 1, 0), -1);
    tt_free(&tx);
    tt_fill(buf, 1u << 20, 7, 0);
    XT_ASSERT_OK(tt_prep1(&t, &tx, NXL_WRITE, peer, "tgtv", buf,
                          tg.hi.addr + 4096, 1u << 20));
    XT_ASSERT_OK(tt_run(&tx, NULL, 20000));
    tt_free(&tx);
    XT_ASSERT_EQ(tt_cmd_run(&tg, TT_VERIFY, 7, 4096, 1u << 20).v, -1);
    tt_cmd_run(&tg, TT_FILL, 1, 0, len);

    /* The big READ, released in flight. */
    s0 = tt_sent_settled(&tg);
    XT_ASSERT_OK(
        tt_big_read(&t, &big, NXL_READ, peer, "tgtv", buf, tg.hi.addr, len, n));
    XT_ASSERT_EQ(tt_post_notif(&big, NULL), NXL_IN_PROG);
    if (mid) {
        /* Stopped (every thread) the moment 8 MiB went out, the target
         * sends nothing between that moment and the CANCEL's arrival. */
        t0 = xt_now_ms();
        while ((uint64_t)tt_stats(&tg).v - s0 < (8u << 20)) {
            XT_ASSERT(xt_now_ms() - t0 < 20000);
            usleep(200);
        }
        (void)xt_stop_process(tg.pid);
    }
    *late_p = OPS->check(t.e, big.req) != NXL_IN_PROG;
    tt_free(&big);
    if (mid) {
        (void)kill(tg.pid, SIGCONT);
    }
    /* Same stream, next request: it comes after what is left of the
     * reply, so once it is back the target has sent all it will. */
    XT_ASSERT_OK(tt_prep1(&t, &tx, NXL_READ, peer, "tgtv", small,
                          tg.hi.addr + 12345, 65536));
    XT_ASSERT_OK(tt_run(&tx, NULL, 20000));
    XT_ASSERT_EQ(tt_bad(small, 65536, 1, 12345), -1);
    tt_free(&tx);
    s1 = tt_sent_settled(&tg);
    *sent_p = s1 - s0 - (BE_TCP_HDR_SIZE + 65536);
    /* Version 1 sends no CANCEL. Version 2 sends one, and the target cuts
     * the reply or finds it all sent already (late); a READ released
     * before a byte of its request went out never reached the target. */
    rep = tt_stats(&tg);
    if (want == 1) {
        XT_ASSERT_EQ(rep.n + rep.m, 0u);
    } else {
        *late_p = *late_p || (rep.n == 0 && rep.m == 1);
        XT_ASSERT(rep.n + rep.m == 1 || (rep.n + rep.m == 0 && *sent_p == 0));
    }

    OPS->peer_unload(t.e, peer);
    tt_close(&t);
    XT_ASSERT_EQ(tt_target_stop(&tg), 0);
    munmap(buf, len);
    munmap(small, 65536);
    return 0;
}

/* t_cancel_target: with version 2 on both sides, releasing an in-flight
 * 256 MiB READ stops the target's reply: it sends far less than the
 * whole (released at once, and once 8 MiB went out), and the stream stays
 * usable. Mixed pairs (either side version 1) agree on version 1, move
 * data correctly and cancel as before: the target sends the whole reply
 * and the initiator discards it. A version-2 run that says nothing (the
 * READ was done before the release came, or the release came so late
 * that a quarter went out: a loaded host, a sanitizer) is run again, up
 * to 4 times; a target that does not cut fails every run. */
static int
t_cancel_target(void)
{
    const uint64_t full = 256u << 20;
    static const struct {
        unsigned ini, tgt;
        bool mid;
    } pairs[] = {
        {2, 2, false}, {2, 2, true}, {2, 1, false}, {1, 2, false}, {1, 1, true},
    };
    uint64_t sent;
    unsigned run;
    size_t i;
    bool v2, late;

    for (i = 0; i < NXL__ARRAY_SIZE(pairs); i++) {
        v2 = pairs[i].ini == 2 && pairs[i].tgt == 2;
        for (run = 1;; run++) {
            if (tt_cancel_pair(pairs[i].ini, pairs[i].tgt, pairs[i].mid, &sent,
                               &late) != 0) {
                fprintf(stderr, "pair %u/%u failed\n", pairs[i].ini,
                        pairs[i].tgt);
                return 1;
            }
            printf("  initiator v%u, target v%u, released %s: target sent "
                   "%llu of %llu bytes%s\n",
                   pairs[i].ini, pairs[i].tgt,
                   pairs[i].mid ? "after 8 MiB" : "at once",
                   (unsigned long long)sent, (unsigned long long)full,
                   late ? " (the READ was done first)" : "");
            if (!v2 || (!late && sent < full / 4) || run == 4) {
                break;
            }
        }
        if (v2) {
            XT_ASSERT(!late && sent < full / 4);
        } else {
            XT_ASSERT(sent >= full);
        }
    }
    return tt_leaks();
}

/* t_crafted_cancel: CANCEL frames from a raw client. On a version-1
 * connection a CANCEL is an unknown frame (closed); malformed ones close a
 * version-2 connection; one naming nothing (or a reply already out, or a
 * WRITE) is ignored; one behind a 40 MiB READ whose reply we do not read
 * ends that reply at a frame boundary with a CANCELED frame, and the READ
 * behind it is answered in full. */
static int
t_crafted_cancel(void)
{
    static const struct {
        uint8_t flags;
        int32_t status;
        uint32_t ndesc, aux;
        uint64_t id, data;
    } bad[] = {
        {0, 0, 0, 0, 0, 0}, {1, 0, 0, 0, 5, 0}, {0, -1, 0, 0, 5, 0},
        {0, 0, 1, 0, 5, 0}, {0, 0, 0, 4, 5, 0}, {0, 0, 0, 0, 5, 8},
    };
    const uint32_t nd = 640; /* 640 x 64 KiB = 40 MiB, 10 reply frames */
    uint8_t *mem = tt_map(65536), *req, *data, buf[256];
    be_tcp_engine_t *eng;
    uint64_t base, got = 0;
    const char *why;
    be_tcp_frame_t f;
    uint16_t ackv = 0;
    unsigned frames = 0;
    size_t n, i;
    tt_eng t;
    void *md;
    int fd;

    XT_ASSERT(mem != NULL);
    base = (uint64_t)(uintptr_t)mem;
    tt_fill(mem, 65536, 4, 0);
    XT_ASSERT_OK(tt_open(&t, "srvc", NULL, 0));
    XT_ASSERT_OK(tt_register(&t, mem, 65536, &md));
    eng = t.e;

    /* Version 1: CANCEL is not a frame there. */
    fd = tt_raw_connect_v(&t, "raw-v1", 0, &ackv);
    XT_ASSERT(fd >= 0);
    XT_ASSERT_EQ(ackv, BE_TCP_PROTO_MAX);
    n = tt_frame(buf, BE_TCP_CANCEL, 0, 0, 0, 0, 1, 0);
    XT_ASSERT_OK(nxl__sock_send_all(fd, buf, n, 1000));
    XT_ASSERT(tt_closed(fd));
    close(fd);
    /* Malformed CANCEL frames (with the bytes they announce). */
    for (i = 0; i < NXL__ARRAY_SIZE(bad); i++) {
        fd = tt_raw_connect_v(&t, "raw-bad", 2, NULL);
        XT_ASSERT(fd >= 0);
        n = tt_frame(buf, BE_TCP_CANCEL, bad[i].flags, bad[i].status,
                     bad[i].ndesc, bad[i].aux, bad[i].id, bad[i].data);
        memset(buf + n, 0, 64);
        n += bad[i].ndesc * 16u + bad[i].aux + (size_t)bad[i].data;
        XT_ASSERT_OK(nxl__sock_send_all(fd, buf, n, 1000));
        XT_ASSERT(tt_closed(fd));
        close(fd);
    }

    fd = tt_raw_connect_v(&t, "raw-v2", 2, &ackv);
    XT_ASSERT(fd >= 0);
    XT_ASSERT_EQ(ackv, BE_TCP_PROTO_MAX);
    /* CANCELs naming nothing, then a READ: answered. */
    n = tt_frame(buf, BE_TCP_CANCEL, 0, 0, 0, 0, 77, 0);
    n += tt_frame(buf + n, BE_TCP_CANCEL, 0, 0, 0, 0, 1, 0);
    n += tt_frame(buf + n, BE_TCP_READ_REQ, 0, 0, 1, 0, 1, 0);
    n += tt_wd(buf + n, base + 8, 8);
    XT_ASSERT_OK(nxl__sock_send_all(fd, buf, n, 1000));
    XT_ASSERT_OK(nxl__sock_recv_all(fd, buf, 40, 2000));
    XT_ASSERT_EQ(be_tcp_frame_decode(buf, 32, &f, &why), 32);
    XT_ASSERT(f.type == BE_TCP_READ_RESP && f.id == 1 && f.status == 0 &&
              f.flags == 0 && f.data_len == 8);
    XT_ASSERT_EQ(tt_bad(buf + 32, 8, 4, 8), -1);

    /* 40 MiB READ, its CANCEL and a small READ, in one send. */
    req = malloc(32 + nd * 16u + 32 + 48);
    data = malloc(BE_TCP_CHUNK);
    XT_ASSERT(req != NULL && data != NULL);
    n = tt_frame(req, BE_TCP_READ_REQ, 0, 0, nd, 0, 2, 0);
    for (i = 0; i < nd; i++) {
        n += tt_wd(req + n, base, 65536);
    }
    n += tt_frame(req + n, BE_TCP_CANCEL, 0, 0, 0, 0, 2, 0);
    n += tt_frame(req + n, BE_TCP_READ_REQ, 0, 0, 1, 0, 3, 0);
    n += tt_wd(req + n, base + 100, 50);
    XT_ASSERT_OK(nxl__sock_send_all(fd, req, n, 1000));
    usleep(50000); /* the server has read all of it; we read nothing yet */
    for (;;) {
        XT_ASSERT_OK(nxl__sock_recv_all(fd, buf, 32, 5000));
        XT_ASSERT_EQ(be_tcp_frame_decode(buf, 32, &f, &why), 32);
        XT_ASSERT(f.type == BE_TCP_READ_RESP && f.id == 2);
        if (f.status != 0) {
            XT_ASSERT_EQ(f.status, NXL_ERR_CANCELED);
            XT_ASSERT(f.data_len == 0 && f.flags == 0);
            break;
        }
        XT_ASSERT(f.flags == BE_TCP_F_MORE); /* never the full reply */
        XT_ASSERT_EQ(f.data_len, BE_TCP_CHUNK);
        XT_ASSERT_OK(nxl__sock_recv_all(fd, data, BE_TCP_CHUNK, 5000));
        for (i = 0; i < BE_TCP_CHUNK / 65536u; i++) {
            XT_ASSERT_EQ(tt_bad(data + i * 65536u, 65536, 4, 0), -1);
        }
        got += f.data_len;
        frames++;
    }
    printf("  40 MiB READ canceled: %u frames (%llu bytes) came before the "
           "CANCELED frame\n",
           frames, (unsigned long long)got);
    XT_ASSERT(got < (uint64_t)nd * 65536u);
    XT_ASSERT_EQ(atomic_load(&eng->srv_cut), 1);
    XT_ASSERT_OK(nxl__sock_recv_all(fd, buf, 32 + 50, 2000));
    XT_ASSERT_EQ(be_tcp_frame_decode(buf, 32, &f, &why), 32);
    XT_ASSERT(f.id == 3 && f.status == 0 && f.data_len == 50);
    XT_ASSERT_EQ(tt_bad(buf + 32, 50, 4, 100), -1);

    /* The same READ canceled mid-reply: we read its first frame, then
     * send the CANCEL; the frame in progress is finished, then a
     * CANCELED frame ends the reply. */
    n = tt_frame(req, BE_TCP_READ_REQ, 0, 0, nd, 0, 6, 0);
    for (i = 0; i < nd; i++) {
        n += tt_wd(req + n, base, 65536);
    }
    XT_ASSERT_OK(nxl__sock_send_all(fd, req, n, 1000));
    got = 0;
    frames = 0;
    for (;;) {
        XT_ASSERT_OK(nxl__sock_recv_all(fd, buf, 32, 5000));
        XT_ASSERT_EQ(be_tcp_frame_decode(buf, 32, &f, &why), 32);
        XT_ASSERT(f.type == BE_TCP_READ_RESP && f.id == 6);
        if (f.status != 0) {
            XT_ASSERT_EQ(f.status, NXL_ERR_CANCELED);
            XT_ASSERT(f.data_len == 0 && f.flags == 0);
            break;
        }
        XT_ASSERT(f.flags == BE_TCP_F_MORE);
        XT_ASSERT_EQ(f.data_len, BE_TCP_CHUNK);
        XT_ASSERT_OK(nxl__sock_recv_all(fd, data, BE_TCP_CHUNK, 5000));
        for (i = 0; i < BE_TCP_CHUNK / 65536u; i++) {
            XT_ASSERT_EQ(tt_bad(data + i * 65536u, 65536, 4, 0), -1);
        }
        got += f.data_len;
        if (frames++ == 0) {
            n = tt_frame(buf, BE_TCP_CANCEL, 0, 0, 0, 0, 6, 0);
            XT_ASSERT_OK(nxl__sock_send_all(fd, buf, n, 1000));
        }
    }
    printf("  40 MiB READ canceled after its first frame: %u frames (%llu "
           "bytes) came\n",
           frames, (unsigned long long)got);
    XT_ASSERT(frames >= 1 && got < (uint64_t)nd * 65536u);
    XT_ASSERT_EQ(atomic_load(&eng->srv_cut), 2);

    /* CANCEL of a reply already out, and of a WRITE: ignored. */
    n = tt_frame(buf, BE_TCP_CANCEL, 0, 0, 0, 0, 3, 0);
    n += tt_frame(buf + n, BE_TCP_WRITE_REQ, 0, 0, 1, 0, 4, 8);
    n += tt_wd(buf + n, base + 200, 8);
    memcpy(buf + n, "abcdefgh", 8);
    n += 8;
    n += tt_frame(buf + n, BE_TCP_CANCEL, 0, 0, 0, 0, 4, 0);
    n += tt_frame(buf + n, BE_TCP_READ_REQ, 0, 0, 1, 0, 5, 0);
    n += tt_wd(buf + n, base + 200, 8);
    XT_ASSERT_OK(nxl__sock_send_all(fd, buf, n, 1000));
    XT_ASSERT_OK(nxl__sock_recv_all(fd, buf, 32 + 40, 2000));
    XT_ASSERT_EQ(be_tcp_frame_decode(buf, 32, &f, &why), 32);
    XT_ASSERT(f.type == BE_TCP_WRITE_ACK && f.id == 4 && f.status == 0);
    XT_ASSERT_EQ(be_tcp_frame_decode(buf + 32, 32, &f, &why), 32);
    XT_ASSERT(f.type == BE_TCP_READ_RESP && f.id == 5 && f.data_len == 8);
    XT_ASSERT(memcmp(buf + 64, "abcdefgh", 8) == 0);
    XT_ASSERT_EQ(atomic_load(&eng->srv_cut), 2);
    close(fd);
    free(req);
    free(data);

    OPS->mem_deregister(t.e, md);
    tt_close(&t);
    munmap(mem, 65536);
    return tt_leaks();
}

/* tt_fake is a hand-written version-2 server for t_crafted_replies: it
 * answers one hello, reads one READ of 256 bytes and replies with the
 * frames of its mode. */
typedef struct tt_fake {
    int lfd;
    uint16_t port;
    int mode;
} tt_fake;

/* tt_fake_main serves one connection (see tt_fake). */
static void *
tt_fake_main(void *arg)
{
    tt_fake *fk = arg;
    uint8_t buf[512], pay[512];
    const char *why;
    be_tcp_frame_t f;
    size_t n, k, i;
    uint64_t id;
    int fd;

    fd = accept(fk->lfd, NULL, NULL);
    if (fd < 0) {
        return NULL;
    }
    if (nxl__sock_recv_all(fd, buf, 32, 5000) != NXL_OK ||
        be_tcp_frame_decode(buf, 32, &f, &why) != 32 ||
        nxl__sock_recv_all(fd, buf, f.aux_len, 5000) != NXL_OK) {
        close(fd);
        return NULL;
    }
    k = be_tcp_hello_encode_max(buf + 32, sizeof(buf) - 32, "fake", 0, 1, 2);
    tt_frame(buf, BE_TCP_HELLO_ACK, 0, 0, 0, (uint32_t)k, 0, 0);
    (void)nxl__sock_send_all(fd, buf, 32 + k, 5000);
    if (nxl__sock_recv_all(fd, buf, 48, 5000) != NXL_OK ||
        be_tcp_frame_decode(buf, 32, &f, &why) != 32) {
        close(fd);
        return NULL;
    }
    id = f.id;
    for (i = 0; i < sizeof(pay); i++) {
        pay[i] = (uint8_t)(i * 7 + 1);
    }
    /* Frames: (flags, id offset, length), per mode. */
    {
        static const struct {
            int nfr;
            uint8_t flags[3];
            uint8_t idd[3];
            uint16_t len[3];
        } modes[] = {
            {3, {BE_TCP_F_MORE, BE_TCP_F_MORE, 0}, {0, 0, 0}, {100, 100, 56}},
            {1, {BE_TCP_F_MORE}, {0}, {300}},            /* past the end */
            {2, {BE_TCP_F_MORE, 0}, {0, 1}, {100, 156}}, /* other id */
            {2, {BE_TCP_F_MORE, 0}, {0, 0}, {100, 100}}, /* short */
            {2, {BE_TCP_F_MORE, 0}, {0, 0}, {100, 200}}, /* long */
            {2, {BE_TCP_F_MORE, 0}, {0, 0}, {100, 156}}, /* valid, v1 */
        };
        int m = fk->mode, j;
        size_t off = 0;

        for (j = 0; j < modes[m].nfr; j++) {
            n = tt_frame(buf, BE_TCP_READ_RESP, modes[m].flags[j], 0, 0, 0,
                         id + modes[m].idd[j], modes[m].len[j]);
            memcpy(buf + n, pay + off, modes[m].len[j]);
            off += modes[m].len[j];
            if (nxl__sock_send_all(fd, buf, n + modes[m].len[j], 5000) !=
                NXL_OK) {
                break;
            }
        }
    }
    (void)recv(fd, buf, sizeof(buf), 0); /* until the client hangs up */
    close(fd);
    return NULL;
}

/* t_crafted_replies: our client against a hand-written version-2 server.
 * A READ reply in three frames lands byte for byte; a frame past the
 * requested size, a frame of another request inside the reply, a last
 * frame short or long of the size, and frames flagged MORE on a
 * connection that agreed on version 1 each fail the READ (protocol
 * error, the peer is failed). */
static int
t_crafted_replies(void)
{
    nxl_param_t v1[] = {{"max_version", "1"}};
    be_tcp_conninfo_t ci = {.host_token = 1, .naddrs = 1};
    uint8_t *mem = tt_map(4096);
    pthread_t th;
    nxl_status_t st;
    nxl_blob_t blob;
    tt_fake fk;
    tt_xfer tx;
    tt_eng t;
    void *peer;
    int mode;
    size_t i;

    XT_ASSERT(mem != NULL);
    strcpy(ci.addrs[0], "127.0.0.1");
    for (mode = 0; mode < 6; mode++) {
        memset(&fk, 0, sizeof(fk));
        fk.mode = mode;
        XT_ASSERT_OK(nxl__sock_listen("127.0.0.1", 0, &fk.lfd, &fk.port));
        ci.port = fk.port;
        XT_ASSERT_OK(be_tcp_conninfo_encode(&ci, &blob));
        XT_ASSERT_EQ(pthread_create(&th, NULL, tt_fake_main, &fk), 0);
        XT_ASSERT_OK(tt_open(&t, "inifk", v1, mode == 5 ? 1 : 0));
        XT_ASSERT_OK(OPS->peer_load(t.e, "fake", blob.data, blob.len, &peer));
        free(blob.data);
        memset(mem, 0, 4096);
        XT_ASSERT_OK(
            tt_prep1(&t, &tx, NXL_READ, peer, "fake", mem, 0x10000, 256));
        st = tt_run(&tx, NULL, 5000);
        if (mode == 0) {
            XT_ASSERT_OK(st);
            for (i = 0; i < 256; i++) {
                XT_ASSERT_EQ(mem[i], (uint8_t)(i * 7 + 1));
            }
        } else {
            printf("  mode %d: %s\n", mode, nxl_status_name(st));
            XT_ASSERT(st != NXL_OK && st != NXL_IN_PROG);
        }
        tt_free(&tx);
        OPS->peer_unload(t.e, peer);
        tt_close(&t);
        pthread_join(th, NULL);
        close(fk.lfd);
    }
    munmap(mem, 4096);
    return tt_leaks();
}

/* --- the wait op (caller-driven receive) -------------------------------- */

/* tt_wait_op waits for tx through the wait op as nxl_xfer_wait does: on
 * NXL_ERR_NOT_SUPPORTED (another thread receives on the connections) it
 * sleeps on the event fd for a moment, counting that in *fallbacks_p. */
static nxl_status_t
tt_wait_op(tt_xfer *tx, int timeout_ms, unsigned *fallbacks_p)
{
    uint64_t end = xt_now_ms() + (uint64_t)timeout_ms;
    struct pollfd pfd = {.fd = OPS->event_fd(tx->t->e), .events = POLLIN};
    nxl_status_t st;

    for (;;) {
        st = OPS->check(tx->t->e, tx->req);
        if (st != NXL_IN_PROG || xt_now_ms() > end) {
            return st;
        }
        st = OPS->wait(tx->t->e, tx->req, 50);
        if (st == NXL_ERR_NOT_SUPPORTED) {
            if (fallbacks_p != NULL) {
                (*fallbacks_p)++;
            }
            (void)poll(&pfd, 1, 1);
            (void)OPS->progress(tx->t->e);
        }
    }
}

typedef struct tt_waiter {
    tt_eng *t;
    void *peer;
    const char *pname;
    uint8_t *local;
    uint64_t raddr, len;
    unsigned seed, rounds, fallbacks;
    tt_xfer *tx; /* one_wait: wait for this one only */
    nxl_status_t st;
    uint64_t ms; /* how long one_wait took */
    int failed;
} tt_waiter;

/* tt_waiter_reads READs its slice rounds times, each waited for through
 * the wait op, and checks the data. */
static void *
tt_waiter_reads(void *arg)
{
    tt_waiter *w = arg;
    tt_xfer tx;
    unsigned r;

    for (r = 0; r < w->rounds && !w->failed; r++) {
        memset(w->local, 0, w->len);
        if (tt_prep1(w->t, &tx, NXL_READ, w->peer, w->pname, w->local, w->raddr,
                     w->len) != NXL_OK ||
            tt_post_notif(&tx, NULL) < 0 ||
            tt_wait_op(&tx, 10000, &w->fallbacks) != NXL_OK ||
            tt_bad(w->local, w->len, w->seed, 0) >= 0) {
            fprintf(stderr, "waiter: round %u failed: %s\n", r,
                    nxl_last_error());
            w->failed = 1;
        }
        tt_free(&tx);
    }
    return NULL;
}

/* tt_waiter_one waits once for w->tx through the wait op. */
static void *
tt_waiter_one(void *arg)
{
    tt_waiter *w = arg;
    uint64_t t0 = xt_now_ms();

    w->st = OPS->wait(w->t->e, w->tx->req, 3000);
    w->ms = xt_now_ms() - t0;
    return NULL;
}

/* t_wait_op: the wait op receives replies on the calling thread. Checks
 * data through it (one thread, then two threads on one stream, one of
 * which must fall back or share); that it returns IN_PROG after its
 * timeout when the target is stopped; that a cancel from another thread
 * ends it within a poll slice; and that a target killed while a thread
 * waits, or its peer unloaded, gives REMOTE_DISCONNECT within 2 s (the
 * connections it held are freed afterwards: ASan sees a use after free). */
static int
t_wait_op(void)
{
    const uint64_t len = 16u << 20;
    uint8_t *buf = tt_map(len);
    tt_waiter w[2];
    pthread_t th[2];
    tt_target tg;
    tt_xfer tx;
    tt_eng t;
    uint64_t t0;
    void *peer;
    int i;

    XT_ASSERT(buf != NULL);
    XT_ASSERT_EQ(tt_spawn(&tg, "waitee", len), 0);
    XT_ASSERT_OK(tt_open(&t, "waiter", NULL, 0));
    XT_ASSERT_OK(tt_load(&t, &tg, &peer));

    /* One thread, 16 MiB and 4 KiB. */
    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_READ, peer, "waitee", buf, tg.hi.addr, len));
    XT_ASSERT_EQ(tt_post_notif(&tx, NULL), NXL_IN_PROG);
    XT_ASSERT_OK(tt_wait_op(&tx, 10000, NULL));
    XT_ASSERT_EQ(tt_bad(buf, len, 1, 0), -1);
    tt_free(&tx);
    XT_ASSERT_OK(tt_prep1(&t, &tx, NXL_READ, peer, "waitee", buf,
                          tg.hi.addr + 4096, 4096));
    memset(buf, 0, 4096);
    (void)tt_post_notif(&tx, NULL);
    XT_ASSERT_OK(tt_wait_op(&tx, 5000, NULL));
    XT_ASSERT_EQ(tt_bad(buf, 4096, 1, 4096), -1);
    /* Done: the op says so at once. */
    XT_ASSERT_OK(OPS->wait(t.e, tx.req, 1000));
    tt_free(&tx);

    /* Two threads on the one stream, each its own 8 MiB slice. */
    tt_cmd_run(&tg, TT_FILL, 21, 0, len / 2);
    tt_cmd_run(&tg, TT_FILL, 22, len / 2, len / 2);
    for (i = 0; i < 2; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].t = &t;
        w[i].peer = peer;
        w[i].pname = "waitee";
        w[i].local = buf + (uint64_t)i * (len / 2);
        w[i].raddr = tg.hi.addr + (uint64_t)i * (len / 2);
        w[i].len = len / 2;
        w[i].seed = 21u + (unsigned)i;
        w[i].rounds = 20;
        XT_ASSERT_EQ(pthread_create(&th[i], NULL, tt_waiter_reads, &w[i]), 0);
    }
    for (i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        XT_ASSERT_EQ(w[i].failed, 0);
    }
    printf("  two waiters: %u + %u fallbacks to the event fd\n", w[0].fallbacks,
           w[1].fallbacks);

    /* Target stopped: the op returns IN_PROG after its timeout; then a
     * cancel from another thread ends a wait within a slice. */
    XT_ASSERT_EQ(xt_stop_process(tg.pid), 0);
    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_READ, peer, "waitee", buf, tg.hi.addr, 1u << 20));
    XT_ASSERT_EQ(tt_post_notif(&tx, NULL), NXL_IN_PROG);
    t0 = xt_now_ms();
    XT_ASSERT_STATUS(OPS->wait(t.e, tx.req, 200), NXL_IN_PROG);
    XT_ASSERT(xt_now_ms() - t0 >= 190 && xt_now_ms() - t0 < 1500);
    memset(&w[0], 0, sizeof(w[0]));
    w[0].t = &t;
    w[0].tx = &tx;
    XT_ASSERT_EQ(pthread_create(&th[0], NULL, tt_waiter_one, &w[0]), 0);
    usleep(100000);
    OPS->cancel(t.e, tx.req);
    pthread_join(th[0], NULL);
    XT_ASSERT_EQ(w[0].st, NXL_ERR_CANCELED);
    printf("  canceled wait returned after %llu ms\n",
           (unsigned long long)w[0].ms);
    XT_ASSERT(w[0].ms < 1000);
    tt_free(&tx);

    /* The peer unloaded while a thread waits: the connections it holds
     * are buried but freed only after it let them go. */
    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_READ, peer, "waitee", buf, tg.hi.addr, 1u << 20));
    XT_ASSERT_EQ(tt_post_notif(&tx, NULL), NXL_IN_PROG);
    XT_ASSERT_EQ(pthread_create(&th[0], NULL, tt_waiter_one, &w[0]), 0);
    usleep(100000);
    OPS->peer_unload(t.e, peer);
    pthread_join(th[0], NULL);
    XT_ASSERT_EQ(w[0].st, NXL_ERR_REMOTE_DISCONNECT);
    XT_ASSERT(w[0].ms < 1000);
    tt_free(&tx);
    XT_ASSERT_EQ(kill(tg.pid, SIGCONT), 0);
    XT_ASSERT_OK(tt_load(&t, &tg, &peer));
    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_READ, peer, "waitee", buf, tg.hi.addr, 1u << 20));
    XT_ASSERT_EQ(tt_post_notif(&tx, NULL), NXL_IN_PROG);
    XT_ASSERT_OK(tt_wait_op(&tx, 5000, NULL));
    tt_free(&tx);
    XT_ASSERT_EQ(xt_stop_process(tg.pid), 0);

    /* Killed while a thread waits (stopped: nothing was answered). */
    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_READ, peer, "waitee", buf, tg.hi.addr, 1u << 20));
    XT_ASSERT_EQ(tt_post_notif(&tx, NULL), NXL_IN_PROG);
    w[0].st = NXL_OK;
    XT_ASSERT_EQ(pthread_create(&th[0], NULL, tt_waiter_one, &w[0]), 0);
    usleep(100000);
    tt_target_kill(&tg);
    pthread_join(th[0], NULL);
    XT_ASSERT_EQ(w[0].st, NXL_ERR_REMOTE_DISCONNECT);
    printf("  killed peer: wait returned after %llu ms\n",
           (unsigned long long)w[0].ms);
    XT_ASSERT(w[0].ms < 2100);
    XT_ASSERT_STATUS(OPS->check(t.e, tx.req), NXL_ERR_REMOTE_DISCONNECT);
    tt_free(&tx);
    usleep(20000); /* the I/O thread frees the connection the waiter held */
    OPS->peer_unload(t.e, peer);
    tt_close(&t);
    munmap(buf, len);
    return tt_leaks();
}

/* tt_cpu_ms is the calling thread's CPU time in ms. */
static double
tt_cpu_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* t_wait_spin: the wait op polls before it sleeps only while its request
 * is the engine's only one in flight, for at most wait_spin_us. The
 * target is stopped, so nothing completes: with wait_spin_us 200 ms a
 * lone request's 300 ms wait burns CPU for up to 200 ms of it (at least
 * 10 ms even on a loaded host), the same wait with a second request in
 * flight sleeps at once (under a tenth of that, or 5 ms), and so does a
 * lone one with wait_spin_us 0. Fails if the wait spins regardless of what else
 * is in flight, or never spins. */
static int
t_wait_spin(void)
{
    nxl_param_t spin[] = {{"wait_spin_us", "200000"}};
    nxl_param_t nospin[] = {{"wait_spin_us", "0"}};
    uint8_t *buf = tt_map(1u << 20);
    double c0, lone, two, off;
    tt_xfer a, b;
    tt_target tg;
    tt_eng t, u;
    void *peer, *upeer;

    XT_ASSERT(buf != NULL);
    XT_ASSERT_EQ(tt_spawn(&tg, "spinee", 1u << 20), 0);
    XT_ASSERT_OK(tt_open(&t, "spinner", spin, 1));
    XT_ASSERT_OK(tt_open(&u, "sleeper", nospin, 1));
    XT_ASSERT_OK(tt_load(&t, &tg, &peer));
    XT_ASSERT_OK(tt_load(&u, &tg, &upeer));
    XT_ASSERT_OK(
        tt_prep1(&t, &a, NXL_READ, peer, "spinee", buf, tg.hi.addr, 4096));
    XT_ASSERT_OK(tt_prep1(&t, &b, NXL_READ, peer, "spinee", buf + 4096,
                          tg.hi.addr + 4096, 4096));
    XT_ASSERT_EQ(xt_stop_process(tg.pid), 0);

    XT_ASSERT_EQ(tt_post_notif(&a, NULL), NXL_IN_PROG);
    c0 = tt_cpu_ms();
    XT_ASSERT_STATUS(OPS->wait(t.e, a.req, 300), NXL_IN_PROG);
    lone = tt_cpu_ms() - c0;
    XT_ASSERT_EQ(tt_post_notif(&b, NULL), NXL_IN_PROG);
    c0 = tt_cpu_ms();
    XT_ASSERT_STATUS(OPS->wait(t.e, a.req, 300), NXL_IN_PROG);
    two = tt_cpu_ms() - c0;
    tt_free(&b); /* canceled: a is alone again, but u's engine spins not */
    tt_free(&a);
    XT_ASSERT_OK(
        tt_prep1(&u, &a, NXL_READ, upeer, "spinee", buf, tg.hi.addr, 4096));
    XT_ASSERT_EQ(tt_post_notif(&a, NULL), NXL_IN_PROG);
    c0 = tt_cpu_ms();
    XT_ASSERT_STATUS(OPS->wait(u.e, a.req, 300), NXL_IN_PROG);
    off = tt_cpu_ms() - c0;
    printf("  300 ms waits, CPU: alone %.1f ms, with another %.1f ms, "
           "wait_spin_us 0 %.1f ms\n",
           lone, two, off);
    /* Sleeping at once costs well under 5 ms of CPU even under TSan; on a
     * starved host the lone spin itself may burn little more than its
     * 10 ms floor, so a tenth of it is no bar there. */
    XT_ASSERT(lone >= 10.0);
    XT_ASSERT(two < (lone / 10 > 5.0 ? lone / 10 : 5.0));
    XT_ASSERT(off < (lone / 10 > 5.0 ? lone / 10 : 5.0));

    /* Running again: the lone request completes through the op. */
    XT_ASSERT_EQ(kill(tg.pid, SIGCONT), 0);
    XT_ASSERT_OK(tt_wait_op(&a, 5000, NULL));
    tt_free(&a);
    OPS->peer_unload(t.e, peer);
    OPS->peer_unload(u.e, upeer);
    tt_close(&t);
    tt_close(&u);
    tt_target_kill(&tg);
    munmap(buf, 1u << 20);
    return tt_leaks();
}

/* t_cancel_write_notif: a WRITE in one part with a notification, canceled
 * while its payload is half sent, must never deliver that notification:
 * the target gets zeros for the unsent rest and cannot tell them from
 * data. The target is stopped (SIGSTOP) so the 64 MiB frame cannot get
 * through the socket buffers (a few MiB) before the cancel. Fails on a
 * sender that carries the notification in the WRITE frame itself. */
static int
t_cancel_write_notif(void)
{
    const uint64_t len = 64u << 20;
    uint8_t *buf = tt_map(len), *small = tt_map(65536);
    tt_target tg;
    tt_xfer big, tx;
    tt_eng t;
    tt_rep rep;
    void *peer;
    int ws;

    XT_ASSERT(buf != NULL && small != NULL);
    XT_ASSERT_EQ(tt_spawn(&tg, "tgtw", len), 0);
    XT_ASSERT_OK(tt_open(&t, "iniw", NULL, 0));
    XT_ASSERT_OK(tt_load(&t, &tg, &peer));
    tt_fill(buf, len, 3, 0);
    kill(tg.pid, SIGSTOP);
    XT_ASSERT_EQ(waitpid(tg.pid, &ws, WUNTRACED), tg.pid);
    XT_ASSERT(WIFSTOPPED(ws));
    XT_ASSERT_OK(
        tt_prep1(&t, &big, NXL_WRITE, peer, "tgtw", buf, tg.hi.addr, len));
    XT_ASSERT_EQ(tt_post_notif(&big, "half-sent"), NXL_IN_PROG);
    usleep(50000); /* the I/O thread fills the socket buffers */
    XT_ASSERT_EQ(OPS->check(t.e, big.req), NXL_IN_PROG);
    OPS->cancel(t.e, big.req);
    XT_ASSERT_STATUS(OPS->check(t.e, big.req), NXL_ERR_CANCELED);
    tt_free(&big);
    kill(tg.pid, SIGCONT);
    /* The next request on the same stream is served after the rest of
     * the canceled frame; then a standalone notification. */
    XT_ASSERT_OK(tt_prep1(&t, &tx, NXL_READ, peer, "tgtw", small,
                          tg.hi.addr + len - 65536, 65536));
    XT_ASSERT_OK(tt_run(&tx, NULL, 20000));
    tt_free(&tx);
    XT_ASSERT_OK(OPS->notif_send(t.e, peer, "after", 5));
    rep = tt_target_wait_notifs(&tg, 1, 5000);
    XT_ASSERT_EQ(rep.n, 1);
    XT_ASSERT_STR(rep.text, "iniw:after");
    /* A WRITE with a notification that is not canceled still delivers it
     * after its data. */
    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_WRITE, peer, "tgtw", buf, tg.hi.addr, len));
    XT_ASSERT_OK(tt_run(&tx, "whole", 20000));
    tt_free(&tx);
    rep = tt_target_wait_notifs(&tg, 2, 5000);
    XT_ASSERT_EQ(rep.n, 2);
    XT_ASSERT_STR(rep.text, "iniw:whole");
    XT_ASSERT_EQ(tt_cmd_run(&tg, TT_VERIFY, 3, 0, len).v, -1);
    OPS->peer_unload(t.e, peer);
    tt_close(&t);
    XT_ASSERT_EQ(tt_target_stop(&tg), 0);
    munmap(buf, len);
    munmap(small, 65536);
    return tt_leaks();
}

/* tt_spin waits for tx by spinning on check (the caller then receives
 * its replies itself, 1 MiB per call) up to timeout_ms. */
static nxl_status_t
tt_spin(tt_xfer *tx, int timeout_ms)
{
    uint64_t end = xt_now_ms() + (uint64_t)timeout_ms;
    nxl_status_t st;

    while ((st = OPS->check(tx->t->e, tx->req)) == NXL_IN_PROG &&
           xt_now_ms() < end) {
    }
    return st;
}

/* t_big_then_small: large READs and WRITEs, each followed by small ones
 * on the same stream, waited for by sleeping on the event fd (the I/O
 * threads receive everything) and by spinning on check. Inside a large
 * payload the receiver raises the socket's receive low-water mark
 * (SO_RCVLOWAT); a mark left behind once the payload is done (e.g. when
 * the read budget ran out with it) hides the small frames that follow
 * from epoll, and those requests never complete. */
static int
t_big_then_small(void)
{
    const uint64_t big = 16u << 20, len = 20u << 20;
    uint8_t *buf = tt_map(len);
    tt_xfer bx, sx;
    tt_target tg;
    tt_eng t;
    void *peer;
    int k, j;

    XT_ASSERT(buf != NULL);
    XT_ASSERT_EQ(tt_spawn(&tg, "tgtp", len), 0);
    XT_ASSERT_OK(tt_open(&t, "inip", NULL, 0));
    XT_ASSERT_OK(tt_load(&t, &tg, &peer));
    for (k = 0; k < 24; k++) {
        nxl_op_t op = (k & 1) ? NXL_WRITE : NXL_READ;

        XT_ASSERT_OK(tt_prep1(&t, &bx, op, peer, "tgtp", buf, tg.hi.addr, big));
        XT_ASSERT_OK(tt_run(&bx, NULL, 5000));
        for (j = 0; j < 2; j++) {
            XT_ASSERT_OK(tt_prep1(&t, &sx, j ? NXL_WRITE : NXL_READ, peer,
                                  "tgtp", buf + big, tg.hi.addr + big, 4096));
            XT_ASSERT_EQ(tt_post_notif(&sx, NULL), NXL_IN_PROG);
            XT_ASSERT_OK((k & 2) ? tt_spin(&sx, 5000) : tt_wait(&sx, 5000));
            tt_free(&sx);
        }
        /* Pipelined: big, then small right behind it. */
        XT_ASSERT_OK(tt_prep1(&t, &sx, op, peer, "tgtp", buf + big,
                              tg.hi.addr + big, 4096));
        XT_ASSERT_EQ(tt_post_notif(&bx, NULL), NXL_IN_PROG);
        XT_ASSERT_EQ(tt_post_notif(&sx, NULL), NXL_IN_PROG);
        XT_ASSERT_OK(tt_wait(&bx, 5000));
        XT_ASSERT_OK(tt_wait(&sx, 5000));
        tt_free(&sx);
        tt_free(&bx);
    }
    OPS->peer_unload(t.e, peer);
    tt_close(&t);
    XT_ASSERT_EQ(tt_target_stop(&tg), 0);
    munmap(buf, len);
    return tt_leaks();
}

/* t_read_direct: at depth 1 a READ reply of 32 KiB or more lands in its
 * destination straight from the socket (the header is read apart), not
 * through the connection's staging buffer and a copy out of it; a 4 KiB
 * reply still comes through rbuf with its header. Counted by the engine's
 * cli_staged (payload bytes copied out of rbuf), for both receivers: the
 * wait op's poll and the I/O thread (event fd). Fails if large replies
 * are staged (about 64 KiB each without the header-apart read), or if the
 * counter does not count (the 4 KiB replies). The data is checked. */
static int
t_read_direct(void)
{
    static const uint64_t size[2] = {4096u, 65536u};
    const uint64_t len = 1u << 20;
    uint8_t *buf = tt_map(len);
    uint64_t s0, staged[2], off;
    tt_target tg;
    tt_xfer tx;
    tt_eng t;
    void *peer;
    int i, k;

    XT_ASSERT(buf != NULL);
    XT_ASSERT_EQ(tt_spawn(&tg, "direct", len), 0);
    XT_ASSERT_OK(tt_open(&t, "stager", NULL, 0));
    XT_ASSERT_OK(tt_load(&t, &tg, &peer));
    for (i = 0; i < 2; i++) { /* 16 small READs, then 16 large ones */
        s0 = atomic_load(&((be_tcp_engine_t *)t.e)->cli_staged);
        for (k = 0; k < 16; k++) {
            off = (uint64_t)k * size[i];
            memset(buf, 0, size[i]);
            XT_ASSERT_OK(tt_prep1(&t, &tx, NXL_READ, peer, "direct", buf,
                                  tg.hi.addr + off, size[i]));
            XT_ASSERT_EQ(tt_post_notif(&tx, NULL), NXL_IN_PROG);
            XT_ASSERT_OK((k & 1) ? tt_wait(&tx, 5000)
                                 : tt_wait_op(&tx, 5000, NULL));
            XT_ASSERT_EQ(tt_bad(buf, size[i], 1, off), -1);
            tt_free(&tx);
        }
        staged[i] = atomic_load(&((be_tcp_engine_t *)t.e)->cli_staged) - s0;
    }
    printf("  staged payload: 16 x 4 KiB READ %llu bytes, 16 x 64 KiB READ "
           "%llu bytes\n",
           (unsigned long long)staged[0], (unsigned long long)staged[1]);
    XT_ASSERT_EQ(staged[0], 16u * 4096u);
    XT_ASSERT(staged[1] < 65536u);
    OPS->peer_unload(t.e, peer);
    tt_close(&t);
    XT_ASSERT_EQ(tt_target_stop(&tg), 0);
    munmap(buf, len);
    return tt_leaks();
}

/* t_request_timeout: a target that stops answering (SIGSTOP) makes a
 * request end with NXL_ERR_TIMEOUT after request_timeout_ms; once it runs
 * again the stream works (the late reply is dropped). */
static int
t_request_timeout(void)
{
    nxl_param_t ps[] = {{"request_timeout_ms", "300"}};
    uint8_t *buf = tt_map(65536);
    tt_target tg;
    tt_xfer tx;
    tt_eng t;
    uint64_t t0, dt;
    void *peer;
    int ws;

    XT_ASSERT_EQ(tt_spawn(&tg, "sleepy", 1u << 20), 0);
    XT_ASSERT_OK(tt_open(&t, "impatient", ps, 1));
    XT_ASSERT_OK(tt_load(&t, &tg, &peer));
    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_READ, peer, "sleepy", buf, tg.hi.addr, 4096));
    XT_ASSERT_OK(tt_run(&tx, NULL, 5000));
    kill(tg.pid, SIGSTOP);
    XT_ASSERT_EQ(waitpid(tg.pid, &ws, WUNTRACED), tg.pid); /* all stopped */
    XT_ASSERT(WIFSTOPPED(ws));
    t0 = xt_now_ms();
    XT_ASSERT_STATUS(tt_run(&tx, NULL, 5000), NXL_ERR_TIMEOUT);
    dt = xt_now_ms() - t0;
    XT_ASSERT(dt >= 290 && dt < 2000);
    kill(tg.pid, SIGCONT);
    tt_free(&tx);
    memset(buf, 0, 4096);
    XT_ASSERT_OK(tt_prep1(&t, &tx, NXL_READ, peer, "sleepy", buf,
                          tg.hi.addr + 4096, 4096));
    XT_ASSERT_OK(tt_run(&tx, NULL, 5000));
    XT_ASSERT_EQ(tt_bad(buf, 4096, 1, 4096), -1);
    tt_free(&tx);
    OPS->peer_unload(t.e, peer);
    tt_close(&t);
    XT_ASSERT_EQ(tt_target_stop(&tg), 0);
    return tt_leaks();
}

/* t_event_fd: completions and notifications make the event fd readable;
 * progress drains it and counts them. */
static int
t_event_fd(void)
{
    uint8_t *a = tt_map(65536), *b = tt_map(65536);
    struct pollfd pfd;
    nxl_status_t st;
    void *peer, *md;
    tt_xfer tx;
    tt_eng t;

    XT_ASSERT_OK(tt_open(&t, "efd", NULL, 0));
    XT_ASSERT_OK(tt_register(&t, a, 65536, &md));
    XT_ASSERT_OK(tt_self_peer(&t, &peer));
    pfd.fd = OPS->event_fd(t.e);
    pfd.events = POLLIN;
    XT_ASSERT(pfd.fd >= 0);
    (void)OPS->progress(t.e);
    XT_ASSERT_EQ(poll(&pfd, 1, 0), 0);
    XT_ASSERT_OK(tt_prep1(&t, &tx, NXL_READ, peer, "efd", b,
                          (uint64_t)(uintptr_t)a, 65536));
    st = tt_post_notif(&tx, NULL);
    XT_ASSERT(st == NXL_IN_PROG || st == NXL_OK);
    XT_ASSERT_EQ(poll(&pfd, 1, 2000), 1);
    XT_ASSERT_OK(OPS->check(t.e, tx.req));
    XT_ASSERT(OPS->progress(t.e) >= 1);
    XT_ASSERT_EQ(poll(&pfd, 1, 0), 0);
    XT_ASSERT_OK(OPS->notif_send(t.e, peer, "ping", 4));
    XT_ASSERT_EQ(poll(&pfd, 1, 2000), 1);
    XT_ASSERT(OPS->progress(t.e) >= 1);
    XT_ASSERT_EQ(tt_nnotifs(&t), 1);
    tt_free(&tx);
    OPS->peer_unload(t.e, peer);
    OPS->mem_deregister(t.e, md);
    tt_close(&t);
    return tt_leaks();
}

/* t_peer_errors: bad conn info, the wrong agent at an address, nobody
 * listening, and bad transfers are refused with the right status. */
static int
t_peer_errors(void)
{
    uint8_t junk[5] = {9, 9, 9, 9, 9}, mem[64];
    be_tcp_conninfo_t ci = {.naddrs = 1, .host_token = 1};
    nxl_be_region_t vr = {.addr = 4096, .len = 4096, .kind = NXL_VRAM};
    nxl_desc_t d = {.addr = 1, .len = 1};
    nxl_blob_t info, dead;
    uint16_t port;
    tt_eng a, b;
    void *peer, *md;
    tt_xfer tx;
    uint64_t t0;
    int lfd;

    XT_ASSERT_OK(tt_open(&a, "alpha", NULL, 0));
    XT_ASSERT_OK(tt_open(&b, "beta", NULL, 0));
    XT_ASSERT_STATUS(OPS->peer_load(a.e, "x", junk, sizeof(junk), &peer),
                     NXL_ERR_PROTO);
    XT_ASSERT_STATUS(OPS->peer_load(a.e, "x", NULL, 0, &peer), NXL_ERR_PROTO);
    XT_ASSERT_OK(OPS->conn_info(b.e, &info));
    XT_ASSERT_STATUS(OPS->peer_load(a.e, "gamma", info.data, info.len, &peer),
                     NXL_ERR_MISMATCH);
    XT_ASSERT(strstr(nxl_last_error(), "expected 'gamma'") != NULL);
    XT_ASSERT_OK(OPS->peer_load(a.e, "beta", info.data, info.len, &peer));
    free(info.data);

    /* Nobody listening there any more: fails fast. */
    XT_ASSERT_OK(nxl__sock_listen("127.0.0.1", 0, &lfd, &port));
    close(lfd);
    ci.port = port;
    strcpy(ci.addrs[0], "127.0.0.1");
    XT_ASSERT_OK(be_tcp_conninfo_encode(&ci, &dead));
    t0 = xt_now_ms();
    XT_ASSERT(OPS->peer_load(a.e, "ghost", dead.data, dead.len, &md) < 0);
    XT_ASSERT(nxl_last_error()[0] != '\0');
    XT_ASSERT(xt_now_ms() - t0 < 2500);
    free(dead.data);

    /* Bad regions and transfers. */
    XT_ASSERT_STATUS(OPS->mem_register(a.e, &vr, &md), NXL_ERR_NOT_SUPPORTED);
    XT_ASSERT_STATUS(OPS->md_unpack(a.e, peer, &d, NXL_DRAM, junk, 3, &md),
                     NXL_ERR_PROTO);
    d.addr = 4096;
    d.len = 64;
    XT_ASSERT_OK(OPS->md_unpack(a.e, peer, &d, NXL_DRAM, NULL, 0, &md));
    {
        /* prep refuses a descriptor outside the region its md names. */
        uint64_t la = (uint64_t)(uintptr_t)mem, ra = 4096 + 8, l = 64;

        XT_ASSERT_OK(tt_prep(&a, &tx, NXL_READ, peer, "beta", 1, &la, &ra, &l));
        OPS->release(a.e, tx.req);
        tx.r[0].md = md;
        XT_ASSERT_STATUS(OPS->prep(a.e, tx.req, &tx.x), NXL_ERR_INVALID_PARAM);
        tx.r[0].addr = 4096;
        XT_ASSERT_OK(OPS->prep(a.e, tx.req, &tx.x));
        tt_free(&tx);
    }
    OPS->md_unload(a.e, md);
    XT_ASSERT_OK(tt_prep1(&a, &tx, NXL_READ, peer, "beta", mem, 4096, 64));
    tt_free(&tx);
    memset(&tx, 0, sizeof(tx));
    {
        uint64_t la = (uint64_t)(uintptr_t)mem, ra = 4096, l = 64;
        nxl_status_t st;

        st = tt_prep(&a, &tx, NXL_READ, peer, "beta", 1, &la, &ra, &l);
        XT_ASSERT_OK(st);
        OPS->release(a.e, tx.req);
        tx.r[0].len = 65;
        XT_ASSERT_STATUS(OPS->prep(a.e, tx.req, &tx.x), NXL_ERR_INVALID_PARAM);
        tx.r[0].len = 64;
        tx.x.remote_mem = NXL_VRAM;
        XT_ASSERT_STATUS(OPS->prep(a.e, tx.req, &tx.x), NXL_ERR_NOT_SUPPORTED);
        tx.x.remote_mem = NXL_DRAM;
        tx.x.count = 0;
        XT_ASSERT_STATUS(OPS->prep(a.e, tx.req, &tx.x), NXL_ERR_INVALID_PARAM);
        free(tx.req);
        free(tx.l);
        free(tx.r);
    }
    XT_ASSERT_STATUS(OPS->notif_send(a.e, peer, mem, BE_TCP_MAX_NOTIF + 1),
                     NXL_ERR_INVALID_PARAM);
    OPS->peer_unload(a.e, peer);
    tt_close(&a);
    tt_close(&b);
    return tt_leaks();
}

/* --- across network namespaces (tests/netns/rig.sh) ----------------------- */

/* t_netns: a target in namespace a, this process in namespace b; the
 * target binds the wildcard address, so its conn info lists 10.77.0.1 and
 * 127.0.0.1, and the differing host token steers us to 10.77.0.1. */
static int
t_netns(void)
{
    const uint64_t len = 4u << 20;
    tt_target_cfg cfg = {.name = "ns-target", .len = len};
    be_tcp_conninfo_t ci;
    const char *why;
    uint8_t *buf;
    tt_target tg;
    tt_xfer tx;
    tt_eng t;
    xt_rig rig;
    tt_rep rep;
    void *peer;
    uint64_t t0;
    int rc;

    rc = xt_rig_up(&rig, "nxltcp", "");
    if (rc != 0) {
        return rc;
    }
    cfg.netns = rig.ns_a;
    buf = tt_map(len);
    XT_ASSERT_EQ(tt_target_fork(&tg, &cfg), 0);
    XT_ASSERT_EQ(tt_target_start(&tg), 0);
    XT_ASSERT(be_tcp_conninfo_decode(tg.hi.info, tg.hi.info_len, &ci, &why));
    XT_ASSERT_STR(ci.addrs[0], "10.77.0.1");
    XT_ASSERT_EQ(xt_netns_enter(rig.ns_b, false), 0);
    XT_ASSERT_OK(tt_open(&t, "ns-initiator", NULL, 0));
    XT_ASSERT_OK(tt_load(&t, &tg, &peer));

    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_READ, peer, "ns-target", buf, tg.hi.addr, len));
    XT_ASSERT_OK(tt_run(&tx, NULL, 10000));
    XT_ASSERT_EQ(tt_bad(buf, len, 1, 0), -1);
    tt_free(&tx);
    tt_cmd_run(&tg, TT_EXPECT, 3, 0, len);
    tt_fill(buf, len, 3, 0);
    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_WRITE, peer, "ns-target", buf, tg.hi.addr, len));
    XT_ASSERT_OK(tt_run(&tx, "across", 10000));
    tt_free(&tx);
    rep = tt_target_wait_notifs(&tg, 1, 3000);
    XT_ASSERT_EQ(rep.n, 1);
    XT_ASSERT_EQ(rep.v, 0);
    XT_ASSERT_STR(rep.text, "ns-initiator:across");

    /* Kill mid-READ across the veth. */
    XT_ASSERT_OK(tt_big_read(&t, &tx, NXL_READ, peer, "ns-target", buf,
                             tg.hi.addr, len, 4096));
    XT_ASSERT_EQ(tt_post_notif(&tx, NULL), NXL_IN_PROG);
    usleep(30000);
    t0 = xt_now_ms();
    tt_target_kill(&tg);
    XT_ASSERT_STATUS(tt_wait(&tx, 2000), NXL_ERR_REMOTE_DISCONNECT);
    XT_ASSERT(xt_now_ms() - t0 < 2000);
    tt_free(&tx);
    OPS->peer_unload(t.e, peer);
    tt_close(&t);
    xt_rig_down(&rig);
    return 0;
}

/* tt_retrans returns TCP's RetransSegs counter of this process's network
 * namespace (/proc/net/snmp), or -1. */
static long long
tt_retrans(void)
{
    char line[1024], names[1024];
    long long v = -1;
    FILE *f = fopen("/proc/net/snmp", "r");
    char *n, *x, *sn, *sx;
    bool have = false;

    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "Tcp:", 4) != 0) {
            continue;
        }
        if (!have) {
            snprintf(names, sizeof(names), "%s", line);
            have = true;
            continue;
        }
        n = strtok_r(names, " \n", &sn);
        x = strtok_r(line, " \n", &sx);
        while (n != NULL && x != NULL) {
            if (strcmp(n, "RetransSegs") == 0) {
                v = strtoll(x, NULL, 10);
            }
            n = strtok_r(NULL, " \n", &sn);
            x = strtok_r(NULL, " \n", &sx);
        }
        break;
    }
    fclose(f);
    return v;
}

/* t_netns_slow_link: the degraded-network case. Both hosts' links are
 * shaped to 40 Mbit/s by tc tbf with a 5 ms queue that TCP overflows, so
 * packets drop and are retransmitted (tc netem, the usual tool, is not in
 * this kernel; tbf is the closest real thing). A 2 MiB READ, a 2 MiB
 * WRITE with a notification and 64 pipelined 16 KiB READs all complete
 * with the right bytes, the notification after the data, through both
 * the polling and the waiting paths. The READ taking at least 300 ms
 * (420 ms at the shaped rate) shows the shaping was in effect. */
static int
t_netns_slow_link(void)
{
    const uint64_t len = 4u << 20, big = 2u << 20, small = 16384;
    enum { NSMALL = 64 };
    tt_target_cfg cfg = {.name = "far", .len = len};
    char cmd[256];
    uint8_t *buf = tt_map(len);
    tt_xfer tx, *sx = calloc(NSMALL, sizeof(*sx));
    long long re0, re1;
    uint64_t t0, ms;
    tt_target tg;
    tt_eng t;
    xt_rig rig;
    tt_rep rep;
    void *peer;
    int rc, i;

    XT_ASSERT(buf != NULL && sx != NULL);
    rc = xt_rig_up(&rig, "nxltcp", "--rate 40mbit 2>/dev/null");
    if (rc != 0) {
        return rc;
    }
    cfg.netns = rig.ns_a;
    snprintf(cmd, sizeof(cmd),
             "tc -n %s qdisc show dev veth0 | grep -q tbf && "
             "tc -n %s qdisc show dev veth0 | grep -q tbf",
             rig.ns_a, rig.ns_b);
    if (system(cmd) != 0) {
        xt_rig_down(&rig);
        printf("  skip: tc tbf (rate shaping) is not available here\n");
        return XT_SKIP;
    }
    XT_ASSERT_EQ(tt_target_fork(&tg, &cfg), 0);
    XT_ASSERT_EQ(tt_target_start(&tg), 0);
    XT_ASSERT_EQ(xt_netns_enter(rig.ns_b, false), 0);
    XT_ASSERT_OK(tt_open(&t, "near", NULL, 0));
    XT_ASSERT_OK(tt_load(&t, &tg, &peer));
    re0 = tt_retrans();

    /* 2 MiB READ, waited for on this thread (the wait op). */
    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_READ, peer, "far", buf, tg.hi.addr, big));
    t0 = xt_now_ms();
    XT_ASSERT_EQ(tt_post_notif(&tx, NULL), NXL_IN_PROG);
    XT_ASSERT_OK(tt_wait_op(&tx, 20000, NULL));
    ms = xt_now_ms() - t0;
    XT_ASSERT_EQ(tt_bad(buf, big, 1, 0), -1);
    tt_free(&tx);
    printf("  2 MiB READ over 40 Mbit/s: %llu ms (%.1f Mbit/s)\n",
           (unsigned long long)ms, ms ? big * 8.0 / 1000.0 / (double)ms : 0);
    XT_ASSERT(ms >= 300);

    /* 2 MiB WRITE with a notification, polled. */
    tt_cmd_run(&tg, TT_EXPECT, 5, big, big);
    tt_fill(buf + big, big, 5, 0);
    XT_ASSERT_OK(tt_prep1(&t, &tx, NXL_WRITE, peer, "far", buf + big,
                          tg.hi.addr + big, big));
    XT_ASSERT_OK(tt_run(&tx, "slow", 20000));
    tt_free(&tx);
    rep = tt_target_wait_notifs(&tg, 1, 5000);
    XT_ASSERT_EQ(rep.n, 1);
    XT_ASSERT_EQ(rep.v, 0);
    XT_ASSERT_STR(rep.text, "near:slow");

    /* 64 pipelined 16 KiB READs of distinct blocks. */
    memset(buf, 0, (size_t)NSMALL * small);
    for (i = 0; i < NSMALL; i++) {
        XT_ASSERT_OK(tt_prep1(&t, &sx[i], NXL_READ, peer, "far",
                              buf + (uint64_t)i * small,
                              tg.hi.addr + (uint64_t)i * small, small));
        XT_ASSERT(tt_post_notif(&sx[i], NULL) >= 0);
    }
    for (i = 0; i < NSMALL; i++) {
        XT_ASSERT_OK(i % 2 ? tt_wait(&sx[i], 20000)
                           : tt_wait_op(&sx[i], 20000, NULL));
        tt_free(&sx[i]);
    }
    XT_ASSERT_EQ(tt_bad(buf, (uint64_t)NSMALL * small, 1, 0), -1);
    re1 = tt_retrans();
    printf("  TCP segments retransmitted in this namespace: %lld\n",
           re0 >= 0 && re1 >= 0 ? re1 - re0 : -1);

    OPS->peer_unload(t.e, peer);
    tt_close(&t);
    XT_ASSERT_EQ(tt_target_stop(&tg), 0);
    xt_rig_down(&rig);
    free(sx);
    munmap(buf, len);
    return tt_leaks();
}

/* t_netns_partition: the link between the namespaces goes down while a
 * READ is in flight: the target is silent, not dead, so no socket error
 * comes; request_timeout_ms ends the READ with NXL_ERR_TIMEOUT. After the
 * link comes back the same stream serves the next READ. */
static int
t_netns_partition(void)
{
    const uint64_t len = 1u << 20;
    nxl_param_t ps[] = {{"request_timeout_ms", "400"}};
    tt_target_cfg cfg = {.name = "island", .len = len};
    char cmd[256];
    uint8_t *buf = tt_map(len);
    tt_target tg;
    tt_xfer tx;
    tt_eng t;
    xt_rig rig;
    uint64_t t0;
    void *peer;
    int rc;

    rc = xt_rig_up(&rig, "nxltcp", "");
    if (rc != 0) {
        return rc;
    }
    cfg.netns = rig.ns_a;
    XT_ASSERT_EQ(tt_target_fork(&tg, &cfg), 0);
    XT_ASSERT_EQ(tt_target_start(&tg), 0);
    XT_ASSERT_EQ(xt_netns_enter(rig.ns_b, false), 0);
    XT_ASSERT_OK(tt_open(&t, "mainland", ps, 1));
    XT_ASSERT_OK(tt_load(&t, &tg, &peer));
    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_READ, peer, "island", buf, tg.hi.addr, len));
    XT_ASSERT_OK(tt_run(&tx, NULL, 5000));

    snprintf(cmd, sizeof(cmd), "ip -n %s link set veth0 down", rig.ns_a);
    XT_ASSERT_EQ(system(cmd), 0);
    t0 = xt_now_ms();
    XT_ASSERT_STATUS(tt_run(&tx, NULL, 5000), NXL_ERR_TIMEOUT);
    XT_ASSERT(xt_now_ms() - t0 < 1500);
    snprintf(cmd, sizeof(cmd), "ip -n %s link set veth0 up", rig.ns_a);
    XT_ASSERT_EQ(system(cmd), 0);
    memset(buf, 0, len);
    tt_free(&tx);
    XT_ASSERT_OK(
        tt_prep1(&t, &tx, NXL_READ, peer, "island", buf, tg.hi.addr, len));
    /* Retransmission backs off during the outage: allow a few seconds,
     * and re-post if the first try also timed out. */
    for (rc = 0; rc < 20; rc++) {
        nxl_status_t st = tt_run(&tx, NULL, 5000);

        if (st == NXL_OK) {
            break;
        }
        XT_ASSERT_STATUS(st, NXL_ERR_TIMEOUT);
    }
    XT_ASSERT(rc < 20);
    XT_ASSERT_EQ(tt_bad(buf, len, 1, 0), -1);
    tt_free(&tx);
    OPS->peer_unload(t.e, peer);
    tt_close(&t);
    XT_ASSERT_EQ(tt_target_stop(&tg), 0);
    xt_rig_down(&rig);
    return tt_leaks();
}

/* --- micro-benchmark ---------------------------------------------------- */

static int
tt_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* tt_bench_lat times 4 KiB post -> completion of op (with a notification
 * when notif is not NULL); wait = sleep on the event fd instead of
 * spinning on check. */
static int
tt_bench_lat(tt_eng *t, void *peer, const char *pn, uint8_t *local,
             uint64_t remote, uint64_t size, unsigned n, bool wait, nxl_op_t op,
             const char *notif, const char *label)
{
    uint64_t *ns = calloc(n, sizeof(*ns)), t0;
    nxl_status_t st;
    tt_xfer tx;
    unsigned i;

    XT_ASSERT(ns != NULL);
    XT_ASSERT_OK(tt_prep1(t, &tx, op, peer, pn, local, remote, size));
    for (i = 0; i < n + n / 10; i++) {
        t0 = nxl__now_ns();
        st = tt_post_notif(&tx, notif);
        if (wait) {
            st = tt_wait(&tx, 5000);
        } else {
            while ((st = OPS->check(t->e, tx.req)) == NXL_IN_PROG) {
            }
        }
        XT_ASSERT_OK(st);
        if (i >= n / 10) {
            ns[i - n / 10] = nxl__now_ns() - t0;
        }
    }
    qsort(ns, n, sizeof(*ns), tt_cmp_u64);
    printf("  %s %s %llu B%s %s: median %.1f us, p99 %.1f us (%u posts)\n",
           label, op == NXL_READ ? "READ" : "WRITE", (unsigned long long)size,
           notif != NULL ? " + notification" : "",
           wait ? "event-fd wait" : "spin", ns[n / 2] / 1e3,
           ns[n * 99 / 100] / 1e3, n);
    tt_free(&tx);
    free(ns);
    return 0;
}

/* tt_bench_bw moves count blocks of bsize repeatedly for about secs and
 * prints GB/s (10^9 bytes) and Gbit/s. */
static int
tt_bench_bw(tt_eng *t, void *peer, const char *pn, nxl_op_t op, uint8_t *local,
            uint64_t remote, uint64_t bsize, size_t count, uint64_t stride,
            double secs, const char *label)
{
    uint64_t *la = calloc(count, 8), *ra = calloc(count, 8),
             *ln = calloc(count, 8), t0, dt, bytes = 0;
    unsigned iters = 0;
    tt_xfer tx;
    size_t i;

    XT_ASSERT(la && ra && ln);
    for (i = 0; i < count; i++) {
        la[i] = (uint64_t)(uintptr_t)local + i * stride;
        ra[i] = remote + i * stride;
        ln[i] = bsize;
    }
    XT_ASSERT_OK(tt_prep(t, &tx, op, peer, pn, count, la, ra, ln));
    XT_ASSERT_OK(tt_run(&tx, NULL, 30000)); /* warm-up */
    t0 = nxl__now_ns();
    do {
        XT_ASSERT_OK(tt_run(&tx, NULL, 30000));
        bytes += bsize * count;
        iters++;
        dt = nxl__now_ns() - t0;
    } while (dt < (uint64_t)(secs * 1e9) || iters < 2);
    printf("  %s %s %zu x %llu KiB%s: %.2f GB/s (%.1f Gbit/s), %u "
           "iterations\n",
           label, op == NXL_READ ? "READ " : "WRITE", count,
           (unsigned long long)(bsize >> 10),
           stride == 0 ? " (same block: cache-hot)" : "",
           bytes / (dt / 1e9) / 1e9, bytes * 8 / (dt / 1e9) / 1e9, iters);
    tt_free(&tx);
    free(la);
    free(ra);
    free(ln);
    return 0;
}

/* tt_bench runs the set against a target; NXL_TCP_BENCH=1 for real runs
 * (512 MiB buffers, ~1 s per size), NXL_TCP_BENCH=lat for only the
 * latencies, else a quick smoke pass. */
static int
tt_bench(const char *netns_a, const char *netns_b, const char *label)
{
    const char *mode = getenv("NXL_TCP_BENCH");
    bool real = mode != NULL, lat_only = mode && strcmp(mode, "lat") == 0;
    const char *streams = getenv("NXL_TCP_STREAMS");
    const uint64_t len = real ? (512u << 20) : (16u << 20);
    const uint64_t sizes[] = {1u << 20, 4u << 20, 16u << 20, 64u << 20};
    nxl_param_t ps[] = {{"num_streams", streams ? streams : "1"}};
    tt_target_cfg cfg = {.name = "bench-tgt", .len = len, .netns = netns_a};
    double secs = real ? 1.0 : 0.02;
    uint8_t *buf = tt_map(len);
    tt_target tg;
    tt_eng t;
    void *peer;
    size_t i;
    int k, rc;

    XT_ASSERT(buf != NULL);
    XT_ASSERT_EQ(tt_target_fork(&tg, &cfg), 0);
    XT_ASSERT_EQ(tt_target_start(&tg), 0);
    if (netns_b != NULL) {
        XT_ASSERT_EQ(xt_netns_enter(netns_b, false), 0);
    }
    XT_ASSERT_OK(tt_open(&t, "bench-ini", ps, 1));
    XT_ASSERT_OK(tt_load(&t, &tg, &peer));
    memset(buf, 1, len);
    printf("  %s: num_streams %s\n", label, ps[0].value);
    rc = tt_bench_lat(&t, peer, "bench-tgt", buf, tg.hi.addr, 4096,
                      real ? 20000 : 200, false, NXL_READ, NULL, label);
    rc = rc ? rc
            : tt_bench_lat(&t, peer, "bench-tgt", buf, tg.hi.addr, 4096,
                           real ? 5000 : 100, true, NXL_READ, NULL, label);
    rc = rc ? rc
            : tt_bench_lat(&t, peer, "bench-tgt", buf, tg.hi.addr, 4096,
                           real ? 20000 : 200, false, NXL_WRITE, "lat", label);
    for (i = 0; rc == 0 && !lat_only && i < NXL__ARRAY_SIZE(sizes); i++) {
        if (sizes[i] > len) {
            continue;
        }
        for (k = 0; k < 2 && rc == 0; k++) {
            rc = tt_bench_bw(&t, peer, "bench-tgt", k ? NXL_WRITE : NXL_READ,
                             buf, tg.hi.addr, sizes[i], 1, sizes[i], secs,
                             label);
        }
    }
    if (rc == 0 && !lat_only) {
        rc = tt_bench_bw(&t, peer, "bench-tgt", NXL_READ, buf, tg.hi.addr,
                         16384, (size_t)(len / 16384), 16384, secs, label);
    }
    if (rc == 0 &&
        !lat_only) { /* 64 MiB from one 256 KiB block, as iperf3 reuses one */
        rc = tt_bench_bw(&t, peer, "bench-tgt", NXL_READ, buf, tg.hi.addr,
                         256u << 10, 256, 0, secs, label);
    }
    OPS->peer_unload(t.e, peer);
    tt_close(&t);
    XT_ASSERT_EQ(tt_target_stop(&tg), 0);
    munmap(buf, len);
    return rc;
}

/* t_bench_loopback: the micro-bench over 127.0.0.1. */
static int
t_bench_loopback(void)
{
    return tt_bench(NULL, NULL, "loopback");
}

/* t_bench_netns: the micro-bench across the veth pair of a rig. */
static int
t_bench_netns(void)
{
    xt_rig rig;
    int rc;

    rc = xt_rig_up(&rig, "nxltcp", "");
    if (rc != 0) {
        return rc;
    }
    rc = tt_bench(rig.ns_a, rig.ns_b, "veth");
    xt_rig_down(&rig);
    return rc;
}

/* --- protocol version 3: region keys ------------------------------------ */

/* t_frame_v3: requests may carry region keys (flag 4): READ and WRITE
 * only; their descriptors are then 24 bytes, which the table check and
 * the stream walk follow. */
static int
t_frame_v3(void)
{
    struct {
        uint8_t type, flags;
        uint32_t ndesc, aux;
        uint64_t data;
        bool ok;
    } cases[] = {
        {BE_TCP_READ_REQ, BE_TCP_F_KEYS, 1, 0, 0, true},
        {BE_TCP_WRITE_REQ, BE_TCP_F_KEYS, 1, 0, 8, true},
        {BE_TCP_WRITE_REQ, BE_TCP_F_KEYS | BE_TCP_F_NOTIF, 1, 2, 8, true},
        {BE_TCP_READ_REQ, BE_TCP_F_KEYS | BE_TCP_F_NOTIF, 1, 0, 0, false},
        {BE_TCP_READ_REQ, 0x08, 1, 0, 0, false},
        {BE_TCP_READ_RESP, BE_TCP_F_KEYS, 0, 0, 8, false},
        {BE_TCP_WRITE_ACK, BE_TCP_F_KEYS, 0, 0, 0, false},
        {BE_TCP_NOTIF, BE_TCP_F_KEYS, 0, 2, 0, false},
        {BE_TCP_CANCEL, BE_TCP_F_KEYS, 0, 0, 0, false},
    };
    uint8_t buf[512], tab[48];
    uint64_t total = 0, a, l, k;
    const char *why;
    be_tcp_frame_t f;
    size_t i, n;

    for (i = 0; i < NXL__ARRAY_SIZE(cases); i++) {
        tt_frame(buf, cases[i].type, cases[i].flags, 0, cases[i].ndesc,
                 cases[i].aux, 5, cases[i].data);
        why = NULL;
        if (be_tcp_frame_decode(buf, 32, &f, &why) != (cases[i].ok ? 32 : -1)) {
            fprintf(stderr, "case %zu: %s\n", i, why ? why : "accepted");
            return 1;
        }
    }
    XT_ASSERT_EQ(be_tcp_wdesc_size(BE_TCP_F_KEYS), BE_TCP_WDESC_KEYED);
    XT_ASSERT_EQ(be_tcp_wdesc_size(BE_TCP_F_NOTIF), BE_TCP_WDESC_SIZE);
    /* Keyed tables: sizes follow the stride, keys read back. */
    tt_wd(tab, 4096, 64);
    nxl__put_le64(tab + 16, 77);
    tt_wd(tab + 24, 8192, 8);
    nxl__put_le64(tab + 40, 0);
    XT_ASSERT(be_tcp_descs_check(tab, 48, 2, BE_TCP_WDESC_KEYED, &total, &why));
    XT_ASSERT_EQ(total, 72u);
    be_tcp_wdesc(tab, BE_TCP_WDESC_KEYED, 1, &a, &l, &k);
    XT_ASSERT(a == 8192 && l == 8 && k == 0);
    be_tcp_wdesc(tab, BE_TCP_WDESC_KEYED, 0, &a, &l, &k);
    XT_ASSERT(a == 4096 && l == 64 && k == 77);
    XT_ASSERT(
        !be_tcp_descs_check(tab, 32, 2, BE_TCP_WDESC_KEYED, &total, &why));
    XT_ASSERT(!be_tcp_descs_check(tab, 48, 2, 20, &total, &why));
    be_tcp_wdesc(tab, BE_TCP_WDESC_SIZE, 0, &a, &l, &k);
    XT_ASSERT(a == 4096 && l == 64 && k == 0);
    /* A keyed READ and WRITE (data: zeros), then a reply: three frames. */
    memset(buf, 0, sizeof(buf));
    n = tt_frame(buf, BE_TCP_READ_REQ, BE_TCP_F_KEYS, 0, 2, 0, 1, 0);
    memcpy(buf + n, tab, 48);
    n += 48;
    n += tt_frame(buf + n, BE_TCP_WRITE_REQ, BE_TCP_F_KEYS, 0, 1, 0, 2, 8);
    memcpy(buf + n, tab + 24, 24);
    n += 24 + 8;
    n += tt_frame(buf + n, BE_TCP_READ_RESP, 0, 0, 0, 0, 1, 72);
    memset(buf + n, 0, 72);
    n += 72;
    XT_ASSERT_EQ(be_tcp_stream_scan(buf, n, &why), 3);
    /* Without the flag the WRITE's table is read as one 16-byte
     * descriptor, and the walk falls out of step with the frames. */
    buf[32 + 48 + 3] = 0; /* the WRITE's flags: no keys */
    XT_ASSERT_EQ(be_tcp_stream_scan(buf, n, &why), -1);
    return 0;
}

/* tt_unpack_own unpacks the public data of the engine's own region md (as
 * a peer that fetched its metadata now would) for [p, p + len). */
static nxl_status_t
tt_unpack_own(tt_eng *t, void *peer, void *md, void *p, uint64_t len,
              void **rmd_p)
{
    nxl_desc_t d = {.addr = (uint64_t)(uintptr_t)p, .len = len};
    nxl_blob_t pub = {0};
    nxl_status_t st;

    st = OPS->md_pack(t->e, md, &pub);
    if (st == NXL_OK) {
        st = OPS->md_unpack(t->e, peer, &d, NXL_DRAM, pub.data, pub.len, rmd_p);
    }
    free(pub.data);
    return st;
}

/* tt_prep_md prepares a READ of len bytes from remote into local whose
 * remote side names rmd (what md_unpack made). */
static nxl_status_t
tt_prep_md(tt_eng *t, tt_xfer *tx, void *peer, void *local, void *remote,
           uint64_t len, void *rmd)
{
    nxl_status_t st;

    st = tt_prep1(t, tx, NXL_READ, peer, t->name, local,
                  (uint64_t)(uintptr_t)remote, len);
    if (st != NXL_OK) {
        return st;
    }
    OPS->release(t->e, tx->req);
    tx->r[0].md = rmd;
    return OPS->prep(t->e, tx->req, &tx->x);
}

/* t_region_keys: a region's public data is its key (8 bytes, never 0,
 * new for each registration); a version-3 request made from metadata
 * older than the registration is refused, with a message, and moves no
 * byte; with the new metadata it is served. Public data of 0 bytes (a
 * peer before version 3, or region_keys=0) leaves the range check alone;
 * other sizes and a zero key are malformed. A version-2 initiator is
 * range-checked only, as before. */
static int
t_region_keys(void)
{
    const uint64_t len = 65536;
    nxl_param_t nokeys[] = {{"region_keys", "0"}};
    nxl_param_t v2[] = {{"max_version", "2"}};
    uint8_t *a = tt_map(len), *b = tt_map(len), zero[9] = {0};
    void *mda, *mdb, *peer, *rmd, *rmd2, *peer2;
    nxl_desc_t d = {.addr = (uint64_t)(uintptr_t)a, .len = len};
    uint64_t ka, kb, ka2;
    nxl_blob_t pub, info;
    tt_eng t, u;
    tt_xfer tx, ty;

    XT_ASSERT(a != NULL && b != NULL);
    XT_ASSERT_OK(tt_open(&t, "keys", NULL, 0));
    XT_ASSERT_OK(tt_register(&t, a, len, &mda));
    XT_ASSERT_OK(tt_register(&t, b, len, &mdb));
    XT_ASSERT_OK(OPS->md_pack(t.e, mda, &pub));
    XT_ASSERT_EQ(pub.len, (size_t)BE_TCP_KEY_SIZE);
    ka = nxl__le64(pub.data);
    free(pub.data);
    kb = ((be_tcp_region_t *)mdb)->key;
    XT_ASSERT(ka != 0 && kb != 0 && ka != kb);
    XT_ASSERT_EQ(ka, ((be_tcp_region_t *)mda)->key);
    XT_ASSERT_OK(tt_self_peer(&t, &peer));
    XT_ASSERT_EQ(((be_tcp_peer_t *)peer)->proto, 3);

    /* Malformed public data. */
    XT_ASSERT_STATUS(OPS->md_unpack(t.e, peer, &d, NXL_DRAM, zero, 8, &rmd),
                     NXL_ERR_PROTO);
    XT_ASSERT(strstr(nxl_last_error(), "not a key") != NULL);
    XT_ASSERT_STATUS(OPS->md_unpack(t.e, peer, &d, NXL_DRAM, zero, 9, &rmd),
                     NXL_ERR_PROTO);
    XT_ASSERT_STATUS(OPS->md_unpack(t.e, peer, &d, NXL_DRAM, &ka, 7, &rmd),
                     NXL_ERR_PROTO);

    /* Served with the key of the registration. */
    tt_fill(a, len, 21, 0);
    XT_ASSERT_OK(tt_unpack_own(&t, peer, mda, a, len, &rmd));
    XT_ASSERT_EQ(((be_tcp_region_t *)rmd)->key, ka);
    XT_ASSERT_OK(tt_prep_md(&t, &tx, peer, b, a, len, rmd));
    XT_ASSERT_OK(tt_run(&tx, NULL, 5000));
    XT_ASSERT_EQ(tt_bad(b, len, 21, 0), -1);

    /* Registered again: the READ prepared before and one prepared now
     * from the old key are refused; b keeps its bytes. */
    OPS->mem_deregister(t.e, mda);
    XT_ASSERT_OK(tt_register(&t, a, len, &mda));
    ka2 = ((be_tcp_region_t *)mda)->key;
    XT_ASSERT(ka2 != 0 && ka2 != ka && ka2 != kb);
    memset(b, 0x5a, len);
    tt_fill(a, len, 22, 0);
    XT_ASSERT_STATUS(tt_run(&tx, NULL, 5000), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT(strstr(((be_tcp_req_t *)tx.req)->msg, "registered after") !=
              NULL);
    tt_free(&tx);
    XT_ASSERT_STATUS(tt_prep_md(&t, &tx, peer, b, a, len, rmd) == NXL_OK
                         ? tt_run(&tx, NULL, 5000)
                         : NXL_ERR_INVALID_PARAM,
                     NXL_ERR_NOT_ALLOWED);
    tt_free(&tx);
    XT_ASSERT_EQ(b[0], 0x5a);
    XT_ASSERT_EQ(b[len - 1], 0x5a);

    /* The new metadata reaches it; so does a region without a key. */
    XT_ASSERT_OK(tt_unpack_own(&t, peer, mda, a, len, &rmd2));
    XT_ASSERT_OK(tt_prep_md(&t, &tx, peer, b, a, len, rmd2));
    XT_ASSERT_OK(tt_run(&tx, NULL, 5000));
    XT_ASSERT_EQ(tt_bad(b, len, 22, 0), -1);
    tt_free(&tx);
    OPS->md_unload(t.e, rmd2);
    XT_ASSERT_OK(OPS->md_unpack(t.e, peer, &d, NXL_DRAM, NULL, 0, &rmd2));
    XT_ASSERT_EQ(((be_tcp_region_t *)rmd2)->key, 0u);
    memset(b, 0, len);
    XT_ASSERT_OK(tt_prep_md(&t, &tx, peer, b, a, len, rmd2));
    XT_ASSERT_OK(tt_run(&tx, NULL, 5000));
    XT_ASSERT_EQ(tt_bad(b, len, 22, 0), -1);
    tt_free(&tx);
    OPS->md_unload(t.e, rmd2);

    /* A version-2 initiator sends no keys: the old key still reaches the
     * range (what every peer got before version 3). */
    XT_ASSERT_OK(tt_open(&u, "keys-v2", v2, 1));
    XT_ASSERT_OK(OPS->conn_info(t.e, &info));
    XT_ASSERT_OK(OPS->peer_load(u.e, "keys", info.data, info.len, &peer2));
    free(info.data);
    XT_ASSERT_EQ(((be_tcp_peer_t *)peer2)->proto, 2);
    memset(b, 0, len);
    XT_ASSERT_OK(OPS->md_unpack(u.e, peer2, &d, NXL_DRAM, &ka, 8, &rmd2));
    XT_ASSERT_OK(tt_register(&u, b, len, &mdb));
    XT_ASSERT_OK(tt_prep1(&u, &ty, NXL_READ, peer2, "keys", b,
                          (uint64_t)(uintptr_t)a, len));
    OPS->release(u.e, ty.req);
    ty.r[0].md = rmd2;
    XT_ASSERT_OK(OPS->prep(u.e, ty.req, &ty.x));
    XT_ASSERT_OK(tt_run(&ty, NULL, 5000));
    XT_ASSERT_EQ(tt_bad(b, len, 22, 0), -1);
    tt_free(&ty);
    OPS->md_unload(u.e, rmd2);
    OPS->peer_unload(u.e, peer2);
    OPS->mem_deregister(u.e, mdb);
    tt_close(&u);

    /* region_keys=0 publishes nothing. */
    XT_ASSERT_OK(tt_open(&u, "nokeys", nokeys, 1));
    XT_ASSERT_OK(tt_register(&u, b, len, &mdb));
    XT_ASSERT_OK(OPS->md_pack(u.e, mdb, &pub));
    XT_ASSERT_EQ(pub.len, 0u);
    free(pub.data);
    OPS->mem_deregister(u.e, mdb);
    tt_close(&u);

    OPS->md_unload(t.e, rmd);
    OPS->peer_unload(t.e, peer);
    tt_close(&t);
    munmap(a, len);
    munmap(b, len);
    return tt_leaks();
}

/* tt_keyed_read sends a version-3 READ of [addr, addr + len) naming key
 * on fd and reads the reply header (and len bytes of data into out when
 * it succeeds). Returns the reply's status, or 1 when the connection
 * failed. */
static int
tt_keyed_read(int fd, uint64_t id, uint64_t addr, uint64_t len, uint64_t key,
              uint8_t *out)
{
    uint8_t buf[BE_TCP_HDR_SIZE + BE_TCP_WDESC_KEYED];
    const char *why;
    be_tcp_frame_t f;
    size_t n;

    n = tt_frame(buf, BE_TCP_READ_REQ, BE_TCP_F_KEYS, 0, 1, 0, id, 0);
    n += tt_wd(buf + n, addr, len);
    nxl__put_le64(buf + n, key);
    n += 8;
    if (nxl__sock_send_all(fd, buf, n, 2000) != NXL_OK ||
        nxl__sock_recv_all(fd, buf, BE_TCP_HDR_SIZE, 2000) != NXL_OK ||
        be_tcp_frame_decode(buf, BE_TCP_HDR_SIZE, &f, &why) != 32 ||
        f.type != BE_TCP_READ_RESP || f.id != id) {
        return 1;
    }
    if (f.status == 0 &&
        (f.data_len != len ||
         nxl__sock_recv_all(fd, out, (size_t)len, 2000) != NXL_OK)) {
        return 1;
    }
    return f.status;
}

/* t_crafted_keys speaks version 3 by hand: a READ naming the region's key
 * or key 0 is served, one naming another key gets NOT_ALLOWED and the
 * connection goes on; so does a WRITE, whose bytes stay out of memory. A
 * request without keys on a version-3 connection, or with keys on a
 * version-2 one, closes it. */
static int
t_crafted_keys(void)
{
    uint8_t *mem = tt_map(65536), buf[256], out[64];
    const char *why;
    be_tcp_frame_t f;
    uint64_t base, key;
    uint16_t ackv = 0;
    size_t n;
    tt_eng t;
    void *md;
    int fd;

    XT_ASSERT(mem != NULL);
    base = (uint64_t)(uintptr_t)mem;
    tt_fill(mem, 65536, 9, 0);
    XT_ASSERT_OK(tt_open(&t, "srvk", NULL, 0));
    XT_ASSERT_OK(tt_register(&t, mem, 65536, &md));
    key = ((be_tcp_region_t *)md)->key;

    fd = tt_raw_connect_v(&t, "raw-v3", 3, &ackv);
    XT_ASSERT(fd >= 0);
    XT_ASSERT_EQ(ackv, 3);
    XT_ASSERT_EQ(tt_keyed_read(fd, 1, base + 64, 64, key, out), 0);
    XT_ASSERT_EQ(tt_bad(out, 64, 9, 64), -1);
    XT_ASSERT_EQ(tt_keyed_read(fd, 2, base + 64, 64, key + 1, out),
                 NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_EQ(tt_keyed_read(fd, 3, base + 128, 64, 0, out), 0);
    XT_ASSERT_EQ(tt_bad(out, 64, 9, 128), -1);
    XT_ASSERT_EQ(tt_keyed_read(fd, 4, base + 65500, 64, key, out),
                 NXL_ERR_NOT_ALLOWED);
    /* WRITE naming another key: acknowledged NOT_ALLOWED, nothing lands. */
    n = tt_frame(buf, BE_TCP_WRITE_REQ, BE_TCP_F_KEYS, 0, 1, 0, 5, 16);
    n += tt_wd(buf + n, base, 16);
    nxl__put_le64(buf + n, key ^ 0x100);
    n += 8;
    memset(buf + n, 0xee, 16);
    n += 16;
    XT_ASSERT_OK(nxl__sock_send_all(fd, buf, n, 2000));
    XT_ASSERT_OK(nxl__sock_recv_all(fd, buf, 32, 2000));
    XT_ASSERT_EQ(be_tcp_frame_decode(buf, 32, &f, &why), 32);
    XT_ASSERT(f.type == BE_TCP_WRITE_ACK && f.id == 5 &&
              f.status == NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_EQ(tt_bad(mem, 65536, 9, 0), -1);
    /* No keys on a version-3 connection: closed. */
    n = tt_frame(buf, BE_TCP_READ_REQ, 0, 0, 1, 0, 6, 0);
    n += tt_wd(buf + n, base, 8);
    XT_ASSERT_OK(nxl__sock_send_all(fd, buf, n, 2000));
    XT_ASSERT(tt_closed(fd));
    close(fd);

    /* Keys on a version-2 connection: closed. */
    fd = tt_raw_connect_v(&t, "raw-v2k", 2, &ackv);
    XT_ASSERT(fd >= 0);
    XT_ASSERT_EQ(tt_keyed_read(fd, 1, base, 8, key, out), 1);
    XT_ASSERT(tt_closed(fd));
    close(fd);

    OPS->mem_deregister(t.e, md);
    tt_close(&t);
    munmap(mem, 65536);
    return tt_leaks();
}

const xt_suite xt_suite_tcp = {
    .name = "tcp",
    .timeout_s = 60,
    .cases =
        (const xt_case[]){
            {"frame_codec", t_frame_codec},
            {"frame_garbage", t_frame_garbage},
            {"params", t_params},
            {"loopback", t_loopback},
            {"fork_read_write", t_fork_read_write},
            {"multistream", t_multistream},
            {"bounds_refused", t_bounds_refused},
            {"crafted_frames", t_crafted_frames},
            {"hello_timeout", t_hello_timeout},
            {"backpressure", t_backpressure},
            {"reset_mid_transfer", t_reset_mid_transfer},
            {"kill_mid_read", t_kill_mid_read},
            {"reconnect", t_reconnect},
            {"idle_death_wakes", t_idle_death_wakes},
            {"concurrent_small", t_concurrent_small},
            {"cancel", t_cancel},
            {"cancel_write_notif", t_cancel_write_notif},
            {"frame_v2", t_frame_v2},
            {"cancel_target", t_cancel_target},
            {"crafted_cancel", t_crafted_cancel},
            {"crafted_replies", t_crafted_replies},
            {"frame_v3", t_frame_v3},
            {"region_keys", t_region_keys},
            {"crafted_keys", t_crafted_keys},
            {"wait_op", t_wait_op},
            {"wait_spin", t_wait_spin},
            {"big_then_small", t_big_then_small},
            {"read_direct", t_read_direct},
            {"request_timeout", t_request_timeout},
            {"event_fd", t_event_fd},
            {"peer_errors", t_peer_errors},
            {"netns", t_netns},
            {"netns_partition", t_netns_partition},
            {"netns_slow_link", t_netns_slow_link},
            {"bench_loopback", t_bench_loopback},
            {"bench_netns", t_bench_netns},
            {NULL, NULL},
        },
};
