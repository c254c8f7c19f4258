/*
 * test_ucx.c - the UCX backend through the public API.
 *
 * Two-process cases fork a peer that creates an agent "peer" with a UCX
 * backend (parameters chosen per case), registers one buffer and answers
 * commands over a SOCK_SEQPACKET socketpair: fill or check its buffer,
 * load our metadata, wait for a notification (checking, when it arrives,
 * that the data it announces is already in place), transfer into our
 * memory, exit. Each data case runs over the same-host copy path
 * (default), the UCX RMA path (local_path=ucx), err mode none and with
 * same-host detection off (the peer is treated as remote).
 *
 * Cases skip (77) when UCX cannot start here. NXL_UCX_BENCH=1 enables the
 * micro-benchmark case "bench".
 */
#include "harness.h"
#include "xt_xfer.h"

#include <dirent.h>
#include <errno.h>
#include <nxl/nxl_backend.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#define T_MIB ((uint64_t)1024 * 1024)
#define T_MSG_MAX (256 * 1024)
#define T_MAX_PARAMS 8
#define T_WAIT_MS 20000
#define T_BIG_NOTIF (64 * 1024) /* several shared-memory fragments */
#define T_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Peer commands. */
enum {
    T_OP_FILL = 1,   /* a = off, b = len, seed */
    T_OP_CHECK,      /* a = off, b = len, seed -> status 0 ok, 1 bad */
    T_OP_LOAD,       /* blob = metadata to load */
    T_OP_NOTIF_WAIT, /* a = timeout ms -> msg, name; data checked */
    T_OP_XFER,       /* a = op, b = raddr, c = len, name = target */
    T_OP_EXIT,
    T_OP_START,     /* deferred peer: set up now and answer a hello */
    T_OP_NOTIF_SEND /* a = len, seed = its first 4 bytes, name = target */
};

typedef struct {
    int op;
    uint32_t seed;
    uint64_t a, b, c;
    char name[32];
    uint32_t blob_len;
} t_cmd;

typedef struct {
    int status;
    uint64_t value;
    char name[64];
    char msg[256];
    uint32_t blob_len;
} t_rep;

/* A parameter set for both sides. */
typedef struct {
    const char *label;
    nxl_param_t items[T_MAX_PARAMS];
    size_t count;
    int shared; /* the peer's buffer comes from nxl_mem_alloc_shared */
} t_params;

/* The test process's handle on a forked peer. */
typedef struct {
    pid_t pid;
    int fd;
    uint64_t addr;
    uint64_t len;
    uint8_t *md;
    size_t md_len;
} t_peer;

static const t_params t_sets[] = {
    {"copy (default)", {{NULL, NULL}}, 0, 0},
    {"ucx rma, err auto", {{"local_path", "ucx"}}, 1, 0},
    {"ucx rma, err none", {{"local_path", "ucx"}, {"err_mode", "none"}}, 2, 0},
    {"remote-style (same_host=off)", {{"same_host", "off"}}, 1, 0},
    /* One device: UCX 1.13.1's tcp transport in err mode none with lanes
     * on two devices crashes in uct_tcp_iface_progress now and then while
     * connections are set up (docs/backends/ucx.md). */
    {"remote tcp, err none",
     {{"same_host", "off"},
      {"err_mode", "none"},
      {"engine_config", "TLS=tcp,self;NET_DEVICES=lo"}},
     3,
     0},
    /* The peer's memfd is mapped here: the map path (plain copies). */
    {"copy, peer buffer in a memfd (map path)", {{NULL, NULL}}, 0, 1},
};
#define T_SET_SHARED 5

/* --- helpers ------------------------------------------------------------ */

/* t_set_skip: NXL_UCX_TEST_SET=<index> limits cases to one parameter set
 * (debugging aid). */
static int
t_set_skip(size_t s)
{
    const char *v = getenv("NXL_UCX_TEST_SET");

    return v != NULL && v[0] != '\0' && (size_t)atoi(v) != s;
}

/* t_pattern is byte i of a buffer filled with seed (position-dependent,
 * so shifted or stale data is caught). */
static uint8_t
t_pattern(uint64_t i, uint32_t seed)
{
    uint64_t v = (i + 1) * 0x9e3779b97f4a7c15ull ^ ((uint64_t)seed << 32);

    return (uint8_t)(v >> 29) ^ (uint8_t)seed;
}

static void
t_fill(uint8_t *p, uint64_t len, uint32_t seed, uint64_t base)
{
    uint64_t i;

    for (i = 0; i < len; i++) {
        p[i] = t_pattern(base + i, seed);
    }
}

static int
t_verify(const uint8_t *p, uint64_t len, uint32_t seed, uint64_t base)
{
    uint64_t i;

    for (i = 0; i < len; i++) {
        if (p[i] != t_pattern(base + i, seed)) {
            return 1;
        }
    }
    return 0;
}

static uint8_t *
t_map(uint64_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    return p == MAP_FAILED ? NULL : p;
}

/* t_peer_buf allocates a peer's buffer: from nxl_mem_alloc_shared when tp
 * says so, else private memory. */
static uint8_t *
t_peer_buf(const t_params *tp, uint64_t len)
{
    void *p = NULL;

    if (tp != NULL && tp->shared) {
        return nxl_mem_alloc_shared(len, &p) == NXL_OK ? p : NULL;
    }
    return t_map(len);
}

static void
t_peer_buf_free(const t_params *tp, uint8_t *buf, uint64_t len)
{
    if (tp != NULL && tp->shared) {
        nxl_mem_free_shared(buf);
    } else if (buf != NULL) {
        munmap(buf, len);
    }
}

/* t_memfd_maps counts this process's mappings of NXL shared memfds (a
 * same-host UCX engine maps a peer's on the map path). */
static int
t_memfd_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int n = 0;

    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        n += strstr(line, "/memfd:nxl-shared") != NULL;
    }
    fclose(f);
    return n;
}

/* t_maps counts this process's mappings (/proc/self/maps lines). */
static int
t_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int n = 0;

    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        n += strchr(line, '\n') != NULL;
    }
    fclose(f);
    return n;
}

/* t_send writes one message: a header struct and an optional blob. */
static int
t_send(int fd, const void *hdr, size_t hlen, const void *blob, size_t blen)
{
    static uint8_t buf[T_MSG_MAX];

    if (hlen + blen > sizeof(buf)) {
        return -1;
    }
    memcpy(buf, hdr, hlen);
    if (blen > 0) {
        memcpy(buf + hlen, blob, blen);
    }
    return send(fd, buf, hlen + blen, MSG_NOSIGNAL) == (ssize_t)(hlen + blen)
               ? 0
               : -1;
}

/* t_recv reads one message; *blob_p points into a static buffer. */
static int
t_recv(int fd, void *hdr, size_t hlen, const uint8_t **blob_p, size_t *blen_p,
       int timeout_ms)
{
    static uint8_t buf[T_MSG_MAX];
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    ssize_t n;

    if (poll(&pf, 1, timeout_ms) <= 0) {
        return -1;
    }
    n = recv(fd, buf, sizeof(buf), 0);
    if (n < (ssize_t)hlen) {
        return -1;
    }
    memcpy(hdr, buf, hlen);
    if (blob_p != NULL) {
        *blob_p = buf + hlen;
        *blen_p = (size_t)n - hlen;
    }
    return 0;
}

/* t_agent creates an agent with a UCX backend using params. */
static nxl_status_t
t_agent(const char *name, const t_params *tp, nxl_agent_t **a_p)
{
    nxl_params_t params = {tp ? tp->items : NULL, tp ? tp->count : 0};
    nxl_agent_t *a = NULL;
    nxl_status_t st;

    st = nxl_agent_create(name, NULL, &a);
    if (st != NXL_OK) {
        return st;
    }
    st = nxl_backend_create(a, "UCX", &params, NULL);
    if (st != NXL_OK) {
        nxl_agent_destroy(a);
        return st;
    }
    *a_p = a;
    return NXL_OK;
}

/* t_ucx_usable: can a UCX backend start here at all? The probe runs in
 * a child: UCX is not fork-safe, and peers are forked later. */
static int
t_ucx_usable(char *why, size_t cap)
{
    nxl_plugin_info_t info;
    nxl_agent_t *a = NULL;
    nxl_status_t st;
    int pfd[2], ws = 0;
    ssize_t n;
    pid_t pid;

    if (nxl_plugin_info("UCX", &info) != NXL_OK) {
        snprintf(why, cap, "UCX backend not built in");
        return 0;
    }
    if (pipe(pfd) != 0) {
        snprintf(why, cap, "pipe: %s", strerror(errno));
        return 0;
    }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        st = t_agent("probe", NULL, &a);
        if (st != NXL_OK) {
            dprintf(pfd[1], "UCX cannot start: %s (%s)", nxl_status_name(st),
                    nxl_last_error());
            _exit(1);
        }
        nxl_agent_destroy(a);
        _exit(0);
    }
    close(pfd[1]);
    n = pid > 0 ? read(pfd[0], why, cap - 1) : -1;
    close(pfd[0]);
    why[n > 0 ? n : 0] = '\0';
    if (pid < 0 || waitpid(pid, &ws, 0) != pid || !WIFEXITED(ws) ||
        WEXITSTATUS(ws) != 0) {
        if (why[0] == '\0') {
            snprintf(why, cap, "the UCX probe crashed");
        }
        return 0;
    }
    return 1;
}

#define T_NEED_UCX()                                                           \
    do {                                                                       \
        char why_[512];                                                        \
        XT_SKIP_IF(!t_ucx_usable(why_, sizeof(why_)), "%s", why_);             \
    } while (0)

/* T_BEGIN skips without UCX and notes the open fds (after a first UCX
 * start, which may keep process-wide state). */
#define T_BEGIN()                                                              \
    T_NEED_UCX();                                                              \
    const int fds0_ = xt_open_fds()

/* T_END: no fd and no memory leaked by the case. */
#define T_END()                                                                \
    do {                                                                       \
        XT_ASSERT_EQ(xt_open_fds(), fds0_);                                    \
        XT_ASSERT_EQ(xt_leaks(), 0);                                           \
        return 0;                                                              \
    } while (0)

/* t_child_run is the peer's main loop. A deferred peer waits for
 * T_OP_START before it touches UCX: UCX is not fork-safe, so a peer
 * forked after the test process started UCX must be forked early. */
static int
t_child_run(int fd, const char *name, const t_params *tp, uint64_t len,
            int deferred)
{
    nxl_agent_t *a = NULL;
    nxl_blob_t md = {NULL, 0};
    nxl_desc_t d;
    nxl_dlist_t dl;
    nxl_status_t st;
    uint8_t *buf;
    const uint8_t *blob;
    size_t blen;
    t_cmd c;
    t_rep r;

    if (deferred && (t_recv(fd, &c, sizeof(c), NULL, NULL, -1) != 0 ||
                     c.op != T_OP_START)) {
        return 4;
    }
    memset(&r, 0, sizeof(r));
    buf = t_peer_buf(tp, len);
    st = buf ? t_agent(name, tp, &a) : NXL_ERR_NOMEM;
    if (st == NXL_OK) {
        d = (nxl_desc_t){(uintptr_t)buf, len, 0};
        dl = (nxl_dlist_t){NXL_DRAM, &d, 1};
        st = nxl_mem_register(a, &dl, NULL);
    }
    if (st == NXL_OK) {
        st = nxl_md_local(a, &md);
    }
    r.status = st;
    r.value = (uintptr_t)buf;
    snprintf(r.msg, sizeof(r.msg), "%s", st ? nxl_last_error() : "");
    r.blob_len = (uint32_t)md.len;
    if (t_send(fd, &r, sizeof(r), md.data, md.len) != 0 || st != NXL_OK) {
        return 1;
    }
    nxl_blob_free(&md);
    for (;;) {
        if (t_recv(fd, &c, sizeof(c), &blob, &blen, -1) != 0) {
            return 2;
        }
        memset(&r, 0, sizeof(r));
        switch (c.op) {
        case T_OP_FILL:
            t_fill(buf + c.a, c.b, c.seed, c.a);
            break;
        case T_OP_CHECK:
            r.status = t_verify(buf + c.a, c.b, c.seed, c.a);
            break;
        case T_OP_LOAD:
            r.status = nxl_md_load(a, blob, blen, NULL, 0);
            snprintf(r.msg, sizeof(r.msg), "%s", nxl_last_error());
            break;
        case T_OP_NOTIF_WAIT: {
            uint64_t t0 = xt_now_ms();
            nxl_notif_list_t *nl = NULL;

            r.status = -1;
            while (xt_now_ms() - t0 < c.a) {
                if (nxl_notifs_get(a, &nl, NULL) == NXL_OK && nl->count > 0) {
                    unsigned long long off = 0, n = 0;
                    unsigned seed = 0;
                    size_t ml = nl->items[0].len < sizeof(r.msg) - 1
                                    ? nl->items[0].len
                                    : sizeof(r.msg) - 1;

                    memcpy(r.msg, nl->items[0].msg, ml);
                    r.msg[ml] = '\0';
                    snprintf(r.name, sizeof(r.name), "%s", nl->items[0].agent);
                    r.value = nl->items[0].len;
                    /* "chk:off:len:seed": the data must be there now. */
                    if (sscanf(r.msg, "chk:%llu:%llu:%u", &off, &n, &seed) ==
                        3) {
                        r.status = t_verify(buf + off, n, seed, off) ? 2 : 0;
                    } else {
                        r.status = 0;
                    }
                    nxl_notif_list_free(nl);
                    break;
                }
                nxl_notif_list_free(nl);
                nl = NULL;
                usleep(200);
            }
            break;
        }
        case T_OP_XFER: {
            nxl_desc_t ld = {(uintptr_t)buf, c.c, 0}, rd = {c.b, c.c, 0};
            nxl_dlist_t l = {NXL_DRAM, &ld, 1}, rl = {NXL_DRAM, &rd, 1};
            nxl_xfer_t *x = NULL;

            r.status =
                nxl_xfer_create(a, (nxl_op_t)c.a, &l, &rl, c.name, NULL, &x);
            if (r.status == NXL_OK) {
                r.status = nxl_xfer_post(x, NULL);
                if (r.status == NXL_IN_PROG) {
                    r.status = nxl_xfer_wait(x, T_WAIT_MS);
                }
            }
            snprintf(r.msg, sizeof(r.msg), "%s",
                     r.status ? nxl_last_error() : "");
            nxl_xfer_release(x);
            break;
        }
        case T_OP_NOTIF_SEND: {
            static uint8_t nb[T_BIG_NOTIF];

            if (c.a > sizeof(nb) || c.a < 4) {
                r.status = -3;
                break;
            }
            memcpy(nb, &c.seed, 4);
            r.status = nxl_notif_send(a, c.name, nb, c.a, NULL);
            snprintf(r.msg, sizeof(r.msg), "%s",
                     r.status ? nxl_last_error() : "");
            break;
        }
        case T_OP_EXIT:
            nxl_agent_destroy(a);
            t_peer_buf_free(tp, buf, len);
            r.status = xt_leaks() != 0;
            (void)t_send(fd, &r, sizeof(r), NULL, 0);
            return r.status ? 5 : 0;
        default:
            r.status = -2;
        }
        if (t_send(fd, &r, sizeof(r), NULL, 0) != 0) {
            return 3;
        }
    }
}

/* t_hello waits for a peer's hello (metadata, buffer address). */
static int
t_hello(t_peer *p, const char *name, uint64_t len)
{
    const uint8_t *blob;
    size_t blen;
    t_rep r;

    if (t_recv(p->fd, &r, sizeof(r), &blob, &blen, T_WAIT_MS) != 0) {
        fprintf(stderr, "peer %s: no hello\n", name);
        return -1;
    }
    if (r.status != NXL_OK) {
        fprintf(stderr, "peer %s: setup failed: %s (%s)\n", name,
                nxl_status_name(r.status), r.msg);
        return -1;
    }
    p->addr = r.value;
    p->len = len;
    p->md = malloc(blen);
    if (p->md == NULL) {
        return -1;
    }
    memcpy(p->md, blob, blen);
    p->md_len = blen;
    return 0;
}

/* t_fork forks a peer called name with params tp and a len-byte buffer;
 * a deferred one sets up only at t_start. */
static int
t_fork(t_peer *p, const char *name, const t_params *tp, uint64_t len,
       int deferred)
{
    int sv[2];

    memset(p, 0, sizeof(*p));
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0) {
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    p->pid = fork();
    if (p->pid < 0) {
        return -1;
    }
    if (p->pid == 0) {
        close(sv[0]);
        _exit(t_child_run(sv[1], name, tp, len, deferred));
    }
    close(sv[1]);
    p->fd = sv[0];
    p->len = len;
    return 0;
}

/* t_spawn forks a peer and waits for its hello. */
static int
t_spawn(t_peer *p, const char *name, const t_params *tp, uint64_t len)
{
    if (t_fork(p, name, tp, len, 0) != 0) {
        return -1;
    }
    return t_hello(p, name, len);
}

/* t_start lets a deferred peer set up and waits for its hello. */
static int
t_start(t_peer *p, const char *name)
{
    t_cmd c = {.op = T_OP_START};

    if (t_send(p->fd, &c, sizeof(c), NULL, 0) != 0) {
        return -1;
    }
    return t_hello(p, name, p->len);
}

/* t_call sends a command and waits for the reply. */
static int
t_call(t_peer *p, const t_cmd *c, const void *blob, size_t blen, t_rep *r)
{
    if (t_send(p->fd, c, sizeof(*c), blob, blen) != 0) {
        return -1;
    }
    return t_recv(p->fd, r, sizeof(*r), NULL, NULL, T_WAIT_MS + 5000);
}

static int
t_pfill(t_peer *p, uint64_t off, uint64_t len, uint32_t seed)
{
    t_cmd c = {.op = T_OP_FILL, .seed = seed, .a = off, .b = len};
    t_rep r;

    return t_call(p, &c, NULL, 0, &r) == 0 ? r.status : -1;
}

static int
t_pcheck(t_peer *p, uint64_t off, uint64_t len, uint32_t seed)
{
    t_cmd c = {.op = T_OP_CHECK, .seed = seed, .a = off, .b = len};
    t_rep r;

    return t_call(p, &c, NULL, 0, &r) == 0 ? r.status : -1;
}

/* t_pstop asks the peer to exit and reaps it; 0 on a clean exit. */
static int
t_pstop(t_peer *p)
{
    t_cmd c = {.op = T_OP_EXIT};
    t_rep r;
    int ws = 0;

    if (p->pid <= 0) {
        return 0;
    }
    (void)t_call(p, &c, NULL, 0, &r);
    waitpid(p->pid, &ws, 0);
    close(p->fd);
    free(p->md);
    p->pid = 0;
    return WIFEXITED(ws) && WEXITSTATUS(ws) == 0 ? 0 : 1;
}

/* t_pkill kills the peer at once. */
static void
t_pkill(t_peer *p)
{
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    close(p->fd);
    free(p->md);
    p->pid = 0;
}

/* t_make builds a transfer of len bytes cut into n descriptors between
 * local address l and the peer's address r. */
static nxl_status_t
t_make(nxl_agent_t *a, nxl_op_t op, uint64_t l, uint64_t r, uint64_t len,
       size_t n, const char *peer, const char *notif, nxl_xfer_t **x_p)
{
    nxl_desc_t *ld = calloc(n, sizeof(*ld)), *rd = calloc(n, sizeof(*rd));
    nxl_dlist_t ll = {NXL_DRAM, ld, n}, rl = {NXL_DRAM, rd, n};
    nxl_opts_t o;
    uint64_t chunk = len / n;
    nxl_status_t st;
    size_t i;

    if (ld == NULL || rd == NULL) {
        free(ld);
        free(rd);
        return NXL_ERR_NOMEM;
    }
    /* Every other block swapped, so descriptors do not merge. */
    for (i = 0; i < n; i++) {
        size_t j = (n > 1 && (i ^ 1) < n) ? (i ^ 1) : i;

        ld[i] = (nxl_desc_t){l + j * chunk, chunk, 0};
        rd[i] = (nxl_desc_t){r + j * chunk, chunk, 0};
    }
    nxl_opts_init(&o);
    if (notif != NULL) {
        o.has_notif = 1;
        o.notif = notif;
        o.notif_len = strlen(notif);
    }
    st = nxl_xfer_create(a, op, &ll, &rl, peer, &o, x_p);
    free(ld);
    free(rd);
    return st;
}

/* t_run posts x and waits for it. */
static nxl_status_t
t_run(nxl_xfer_t *x)
{
    return xt_xfer_run(x, NULL, T_WAIT_MS);
}

/* t_setup: peer "peer" with tp and len bytes, and our agent "main" (same
 * params) with its metadata loaded. */
static int
t_setup(const t_params *tp, uint64_t len, t_peer *p, nxl_agent_t **a_p)
{
    nxl_status_t st;

    if (t_spawn(p, "peer", tp, len) != 0) {
        return -1;
    }
    st = t_agent("main", tp, a_p);
    if (st == NXL_OK) {
        st = nxl_md_load(*a_p, p->md, p->md_len, NULL, 0);
    }
    if (st != NXL_OK) {
        fprintf(stderr, "setup: %s (%s)\n", nxl_status_name(st),
                nxl_last_error());
        return -1;
    }
    return 0;
}

static nxl_status_t
t_reg(nxl_agent_t *a, void *p, uint64_t len)
{
    nxl_desc_t d = {(uintptr_t)p, len, 0};
    nxl_dlist_t dl = {NXL_DRAM, &d, 1};

    return nxl_mem_register(a, &dl, NULL);
}

/* --- cases -------------------------------------------------------------- */

/* WRITE then READ back, 4 MiB in 1, 7 and 1024 descriptors, for every
 * parameter set; the peer checks what we wrote, we check what we read. */
static int
t_write_read(void)
{
    const uint64_t len = 4 * T_MIB;
    static const size_t ndesc[] = {1, 64, 1024};
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    uint8_t *loc;
    uint32_t seed = 10;
    size_t s, k;
    t_peer p;

    T_BEGIN();
    for (s = 0; s < T_ARRAY_SIZE(t_sets); s++) {
        if (t_set_skip(s)) {
            continue;
        }
        printf("  %s\n", t_sets[s].label);
        XT_ASSERT_EQ(t_memfd_maps(), 0);
        XT_ASSERT(t_setup(&t_sets[s], len, &p, &a) == 0);
        /* Only the map path maps the peer's memfd here. */
        XT_ASSERT_EQ(t_memfd_maps() > 0, s == T_SET_SHARED);
        loc = t_map(len);
        XT_ASSERT(loc != NULL);
        XT_ASSERT_OK(t_reg(a, loc, len));
        for (k = 0; k < T_ARRAY_SIZE(ndesc); k++) {
            seed++;
            t_fill(loc, len, seed, 0);
            XT_ASSERT_OK(t_make(a, NXL_WRITE, (uintptr_t)loc, p.addr, len,
                                ndesc[k], "peer", NULL, &x));
            XT_ASSERT_OK(t_run(x));
            XT_ASSERT_OK(t_run(x)); /* re-post after completion */
            nxl_xfer_release(x);
            XT_ASSERT_EQ(t_pcheck(&p, 0, len, seed), 0);

            seed++;
            XT_ASSERT_EQ(t_pfill(&p, 0, len, seed), 0);
            memset(loc, 0, len);
            XT_ASSERT_OK(t_make(a, NXL_READ, (uintptr_t)loc, p.addr, len,
                                ndesc[k], "peer", NULL, &x));
            XT_ASSERT_OK(t_run(x));
            nxl_xfer_release(x);
            XT_ASSERT_EQ(t_verify(loc, len, seed, 0), 0);
        }
        nxl_agent_destroy(a);
        XT_ASSERT_EQ(t_memfd_maps(), 0); /* unmapped with the peer */
        munmap(loc, len);
        XT_ASSERT_EQ(t_pstop(&p), 0);
    }
    T_END();
}

/* A notification attached to a WRITE arrives after the data: the peer
 * checks its buffer the moment the notification shows up. Also READ with
 * a notification, an empty one, and a standalone one. */
static int
t_notif_after_data(void)
{
    const uint64_t len = 8 * T_MIB;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    char msg[128];
    uint8_t *loc;
    size_t s;
    int i;
    t_cmd c = {.op = T_OP_NOTIF_WAIT, .a = T_WAIT_MS};
    t_rep r;
    t_peer p;

    T_BEGIN();
    for (s = 0; s < T_ARRAY_SIZE(t_sets); s++) {
        if (t_set_skip(s)) {
            continue;
        }
        printf("  %s\n", t_sets[s].label);
        XT_ASSERT(t_setup(&t_sets[s], len, &p, &a) == 0);
        loc = t_map(len);
        XT_ASSERT(loc != NULL);
        XT_ASSERT_OK(t_reg(a, loc, len));
        for (i = 0; i < 3; i++) {
            uint32_t seed = 100 + (uint32_t)i;
            uint64_t off = (uint64_t)i * T_MIB, n = len - off;

            t_fill(loc + off, n, seed, off);
            snprintf(msg, sizeof(msg), "chk:%llu:%llu:%u",
                     (unsigned long long)off, (unsigned long long)n, seed);
            XT_ASSERT_OK(t_make(a, NXL_WRITE, (uintptr_t)loc + off,
                                p.addr + off, n, 16, "peer", msg, &x));
            XT_ASSERT_EQ(t_send(p.fd, &c, sizeof(c), NULL, 0), 0);
            XT_ASSERT_OK(t_run(x));
            XT_ASSERT_EQ(
                t_recv(p.fd, &r, sizeof(r), NULL, NULL, T_WAIT_MS + 5000), 0);
            XT_ASSERT_EQ(r.status, 0);
            XT_ASSERT_STR(r.name, "main");
            XT_ASSERT_STR(r.msg, msg);
            nxl_xfer_release(x);
        }
        /* READ with an empty notification. */
        XT_ASSERT_OK(t_make(a, NXL_READ, (uintptr_t)loc, p.addr, T_MIB, 4,
                            "peer", "", &x));
        XT_ASSERT_EQ(t_send(p.fd, &c, sizeof(c), NULL, 0), 0);
        XT_ASSERT_OK(t_run(x));
        XT_ASSERT_EQ(t_recv(p.fd, &r, sizeof(r), NULL, NULL, T_WAIT_MS), 0);
        XT_ASSERT_EQ(r.status, 0);
        XT_ASSERT_EQ(r.value, 0);
        nxl_xfer_release(x);
        /* Standalone. */
        XT_ASSERT_EQ(t_send(p.fd, &c, sizeof(c), NULL, 0), 0);
        XT_ASSERT_OK(nxl_notif_send(a, "peer", "hello", 5, NULL));
        XT_ASSERT_EQ(t_recv(p.fd, &r, sizeof(r), NULL, NULL, T_WAIT_MS), 0);
        XT_ASSERT_EQ(r.status, 0);
        XT_ASSERT_STR(r.msg, "hello");
        nxl_agent_destroy(a);
        munmap(loc, len);
        XT_ASSERT_EQ(t_pstop(&p), 0);
    }
    T_END();
}

/* t_kill_once kills the peer right after posting a large transfer and
 * measures how long until the transfer reports the death. */
static int
t_kill_once(const t_params *tp, nxl_op_t op)
{
    const uint64_t len = 64 * T_MIB;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    nxl_status_t st;
    uint64_t t0, dt;
    uint8_t *loc;
    t_peer p;

    XT_ASSERT(t_setup(tp, len, &p, &a) == 0);
    loc = t_map(len);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(t_reg(a, loc, len));
    XT_ASSERT_OK(
        t_make(a, op, (uintptr_t)loc, p.addr, len, 64, "peer", NULL, &x));
    XT_ASSERT_OK(t_run(x));
    st = nxl_xfer_post(x, NULL);
    t0 = xt_now_ms();
    t_pkill(&p);
    while (st == NXL_OK || st == NXL_IN_PROG) {
        if (st == NXL_OK) {
            st = nxl_xfer_post(x, NULL);
        } else {
            st = nxl_xfer_wait(x, 50);
            if (st == NXL_ERR_TIMEOUT) {
                st = NXL_IN_PROG;
            }
        }
        if (xt_now_ms() - t0 > 5000) {
            XT_FAILF("%s: no error 5 s after the peer was killed", tp->label);
        }
    }
    dt = xt_now_ms() - t0;
    printf("  %-30s %s: %s after %llu ms\n", tp->label,
           op == NXL_WRITE ? "WRITE" : "READ", nxl_status_name(st),
           (unsigned long long)dt);
    if (st != NXL_ERR_REMOTE_DISCONNECT && st != NXL_ERR_NOT_FOUND) {
        XT_FAILF("want REMOTE_DISCONNECT, got %s (%s)", nxl_status_name(st),
                 nxl_last_error());
    }
    XT_ASSERT(dt <= 2000);
    /* Later posts fail at once. */
    t0 = xt_now_ms();
    st = nxl_xfer_post(x, NULL);
    XT_ASSERT(st == NXL_ERR_NOT_FOUND || st == NXL_ERR_REMOTE_DISCONNECT);
    XT_ASSERT(xt_now_ms() - t0 < 100);
    nxl_xfer_release(x);
    /* Operations UCX could not cancel still belong to it until the
     * backend goes: keep the buffer mapped until then. */
    nxl_agent_destroy(a);
    munmap(loc, len);
    return 0;
}

/* The peer is killed mid-transfer: REMOTE_DISCONNECT within 2 s, for the
 * copy path and the UCX path (pidfd), err mode none (pidfd, UCX cannot
 * cancel) and a peer treated as remote (UCX's own failure detection). */
static int
t_peer_killed(void)
{
    size_t s;

    T_BEGIN();
    for (s = 0; s < T_ARRAY_SIZE(t_sets); s++) {
        if (t_set_skip(s)) {
            continue;
        }
        if (t_kill_once(&t_sets[s], s % 2 ? NXL_READ : NXL_WRITE) != 0) {
            return 1;
        }
    }
    T_END();
}

/* After a peer dies, a new process under the same name is reached once
 * its metadata is loaded again (the old peer is replaced); a live peer
 * that is invalidated and reloaded works too, and invalidating it leaves
 * its own endpoint to us usable. */
static int
t_reconnect(void)
{
    const uint64_t len = 2 * T_MIB;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    nxl_blob_t md = {NULL, 0};
    uint8_t *loc;
    size_t s;
    t_peer p, p2;
    t_cmd c;
    t_rep r;

    T_BEGIN();
    for (s = 0; s < T_ARRAY_SIZE(t_sets); s++) {
        if (t_set_skip(s)) {
            continue;
        }
        const t_params *tp = &t_sets[s];

        printf("  %s\n", tp->label);
        /* The restarted peer is forked before this process starts UCX. */
        XT_ASSERT(t_fork(&p2, "peer", tp, len, 1) == 0);
        XT_ASSERT(t_setup(tp, len, &p, &a) == 0);
        loc = t_map(len);
        XT_ASSERT(loc != NULL);
        XT_ASSERT_OK(t_reg(a, loc, len));
        t_fill(loc, len, 300, 0);
        XT_ASSERT_OK(t_make(a, NXL_WRITE, (uintptr_t)loc, p.addr, len, 4,
                            "peer", NULL, &x));
        XT_ASSERT_OK(t_run(x));
        nxl_xfer_release(x);

        /* The peer loads our metadata and writes into us. */
        XT_ASSERT_OK(nxl_md_local(a, &md));
        c = (t_cmd){.op = T_OP_LOAD};
        XT_ASSERT_EQ(t_call(&p, &c, md.data, md.len, &r), 0);
        XT_ASSERT_EQ(r.status, NXL_OK);
        nxl_blob_free(&md);

        /* Invalidate and reload a live peer. */
        XT_ASSERT_OK(nxl_md_invalidate(a, "peer"));
        c = (t_cmd){
            .op = T_OP_XFER, .a = NXL_WRITE, .b = (uintptr_t)loc, .c = len};
        snprintf(c.name, sizeof(c.name), "main");
        XT_ASSERT_EQ(t_pfill(&p, 0, len, 301), 0);
        XT_ASSERT_EQ(t_call(&p, &c, NULL, 0, &r), 0);
        if (r.status != NXL_OK) {
            XT_FAILF("peer WRITE after we invalidated it: %s (%s)",
                     nxl_status_name(r.status), r.msg);
        }
        XT_ASSERT_EQ(t_verify(loc, len, 301, 0), 0);
        XT_ASSERT_OK(nxl_md_load(a, p.md, p.md_len, NULL, 0));
        t_fill(loc, len, 302, 0);
        XT_ASSERT_OK(t_make(a, NXL_WRITE, (uintptr_t)loc, p.addr, len, 4,
                            "peer", NULL, &x));
        XT_ASSERT_OK(t_run(x));
        XT_ASSERT_EQ(t_pcheck(&p, 0, len, 302), 0);

        /* Kill it; a restarted peer of the same name takes its place. */
        t_pkill(&p);
        {
            nxl_status_t st = t_run(x);
            uint64_t t0 = xt_now_ms();

            while (st == NXL_OK && xt_now_ms() - t0 < 3000) {
                st = t_run(x);
            }
            XT_ASSERT(st == NXL_ERR_REMOTE_DISCONNECT ||
                      st == NXL_ERR_NOT_FOUND);
        }
        nxl_xfer_release(x);
        XT_ASSERT(t_start(&p2, "peer") == 0);
        XT_ASSERT_OK(nxl_md_load(a, p2.md, p2.md_len, NULL, 0));
        t_fill(loc, len, 303, 0);
        XT_ASSERT_OK(t_make(a, NXL_WRITE, (uintptr_t)loc, p2.addr, len, 4,
                            "peer", NULL, &x));
        XT_ASSERT_OK(t_run(x));
        XT_ASSERT_EQ(t_pcheck(&p2, 0, len, 303), 0);
        nxl_xfer_release(x);
        nxl_agent_destroy(a);
        munmap(loc, len);
        XT_ASSERT_EQ(t_pstop(&p2), 0);
    }
    T_END();
}

/* t_big_notif has peer p send us a T_BIG_NOTIF-byte notification that
 * starts with seq and waits up to 3 s for it. 0 when it arrived. */
static int
t_big_notif(t_peer *p, nxl_agent_t *a, uint32_t seq)
{
    t_cmd c = {.op = T_OP_NOTIF_SEND, .seed = seq, .a = T_BIG_NOTIF};
    uint64_t t0;
    t_rep r;
    int got = 0;

    snprintf(c.name, sizeof(c.name), "main");
    XT_ASSERT_EQ(t_call(p, &c, NULL, 0, &r), 0);
    if (r.status != NXL_OK) {
        XT_FAILF("the peer's nxl_notif_send: %s (%s)",
                 nxl_status_name(r.status), r.msg);
    }
    for (t0 = xt_now_ms(); !got && xt_now_ms() - t0 < 3000;) {
        nxl_notif_list_t *l = NULL;
        size_t k;

        XT_ASSERT_OK(nxl_notifs_get(a, &l, NULL));
        for (k = 0; l != NULL && k < l->count; k++) {
            got |= strcmp(l->items[k].agent, "peer") == 0 &&
                   l->items[k].len == T_BIG_NOTIF &&
                   memcmp(l->items[k].msg, &seq, 4) == 0;
        }
        nxl_notif_list_free(l);
        if (!got) {
            usleep(1000);
        }
    }
    return got ? 0 : 1;
}

/* Reloading a live peer's metadata (nxl_md_invalidate, then nxl_md_load
 * of the same metadata) 20 times: after every reload the peer's 64 KiB
 * notification arrives and a WRITE lands, and the reloads add no
 * mappings. Before the UCX backend kept the endpoints of a reload,
 * UCX 1.13.1 lost every notification of several fragments from the
 * first reload on, silently, and each reload kept three of the peer's
 * shared-memory segments mapped (docs/reliability.md, defects 1 and 2).
 * Then the peer restarts under the same name while its endpoints are
 * parked: the new process is reached through new ones. */
static int
t_reload_live(void)
{
    static const size_t sets[] = {0, 1, 2, 3, 4};
    const uint64_t len = T_MIB;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    nxl_blob_t md = {NULL, 0};
    int maps1 = 0, maps20, k;
    uint8_t *loc;
    size_t i;
    t_peer p, p2;
    t_cmd c;
    t_rep r;

    T_BEGIN();
    for (i = 0; i < T_ARRAY_SIZE(sets); i++) {
        const t_params *tp = &t_sets[sets[i]];

        if (t_set_skip(sets[i])) {
            continue;
        }
        printf("  %s\n", tp->label);
        XT_ASSERT(t_fork(&p2, "peer", tp, len, 1) == 0);
        XT_ASSERT(t_setup(tp, len, &p, &a) == 0);
        loc = t_map(len);
        XT_ASSERT(loc != NULL);
        XT_ASSERT_OK(t_reg(a, loc, len));
        XT_ASSERT_OK(nxl_md_local(a, &md));
        c = (t_cmd){.op = T_OP_LOAD};
        XT_ASSERT_EQ(t_call(&p, &c, md.data, md.len, &r), 0);
        XT_ASSERT_EQ(r.status, NXL_OK);
        XT_ASSERT_EQ(t_big_notif(&p, a, 0), 0);
        for (k = 1; k <= 20; k++) {
            XT_ASSERT_OK(nxl_md_invalidate(a, "peer"));
            XT_ASSERT_OK(nxl_md_load(a, p.md, p.md_len, NULL, 0));
            if (t_big_notif(&p, a, (uint32_t)k) != 0) {
                XT_FAILF("reload %d: the peer's %d-byte notification did "
                         "not arrive",
                         k, T_BIG_NOTIF);
            }
            t_fill(loc, len, 600 + (uint32_t)k, 0);
            XT_ASSERT_OK(t_make(a, NXL_WRITE, (uintptr_t)loc, p.addr, len, 4,
                                "peer", NULL, &x));
            XT_ASSERT_OK(t_run(x));
            nxl_xfer_release(x);
            XT_ASSERT_EQ(t_pcheck(&p, 0, len, 600 + (uint32_t)k), 0);
            if (k == 1) {
                maps1 = t_maps();
            }
        }
        maps20 = t_maps();
        printf("    mappings: %d after 1 reload, %d after 20\n", maps1, maps20);
        XT_ASSERT(maps20 <= maps1 + 5);

        /* Parked, then the peer restarts under the same name. */
        XT_ASSERT_OK(nxl_md_invalidate(a, "peer"));
        t_pkill(&p);
        XT_ASSERT(t_start(&p2, "peer") == 0);
        XT_ASSERT_OK(nxl_md_load(a, p2.md, p2.md_len, NULL, 0));
        c = (t_cmd){.op = T_OP_LOAD};
        XT_ASSERT_EQ(t_call(&p2, &c, md.data, md.len, &r), 0);
        XT_ASSERT_EQ(r.status, NXL_OK);
        nxl_blob_free(&md);
        t_fill(loc, len, 700, 0);
        XT_ASSERT_OK(t_make(a, NXL_WRITE, (uintptr_t)loc, p2.addr, len, 4,
                            "peer", NULL, &x));
        XT_ASSERT_OK(t_run(x));
        nxl_xfer_release(x);
        XT_ASSERT_EQ(t_pcheck(&p2, 0, len, 700), 0);
        XT_ASSERT_EQ(t_big_notif(&p2, a, 99), 0);
        nxl_agent_destroy(a);
        munmap(loc, len);
        XT_ASSERT_EQ(t_pstop(&p2), 0);
    }
    T_END();
}

/* t_try_create reports the status of creating a UCX backend with the
 * given key/value pairs (NULL-terminated). */
static nxl_status_t
t_try_create(const char *k1, const char *v1, const char *k2, const char *v2)
{
    nxl_param_t it[2] = {{k1, v1}, {k2, v2}};
    nxl_params_t ps = {it, k2 ? 2 : (k1 ? 1 : 0)};
    nxl_agent_t *a = NULL;
    nxl_status_t st;

    XT_ASSERT_OK(nxl_agent_create("cfg", NULL, &a));
    st = nxl_backend_create(a, "UCX", &ps, NULL);
    nxl_agent_destroy(a);
    return st;
}

/* t_loop_ok runs a WRITE/READ loopback (an agent to itself) with params
 * tp and checks the data. */
static int
t_loop_ok(const t_params *tp)
{
    const uint64_t len = T_MIB;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    uint8_t *src = t_map(len), *dst = t_map(len);

    XT_ASSERT(src != NULL && dst != NULL);
    XT_ASSERT_OK(t_agent("loop", tp, &a));
    XT_ASSERT_OK(t_reg(a, src, len));
    XT_ASSERT_OK(t_reg(a, dst, len));
    t_fill(src, len, 500, 0);
    XT_ASSERT_OK(t_make(a, NXL_WRITE, (uintptr_t)src, (uintptr_t)dst, len, 8,
                        "loop", NULL, &x));
    XT_ASSERT_OK(t_run(x));
    nxl_xfer_release(x);
    XT_ASSERT_EQ(t_verify(dst, len, 500, 0), 0);
    t_fill(dst, len, 501, 0);
    XT_ASSERT_OK(t_make(a, NXL_READ, (uintptr_t)src, (uintptr_t)dst, len, 8,
                        "loop", "self", &x));
    XT_ASSERT_OK(t_run(x));
    nxl_xfer_release(x);
    XT_ASSERT_EQ(t_verify(src, len, 501, 0), 0);
    nxl_agent_destroy(a);
    munmap(src, len);
    munmap(dst, len);
    return 0;
}

/* engine_config reaches ucp_config_modify (a bad key or malformed entry
 * is INVALID_PARAM naming it; TLS restricts the transports), it wins over
 * UCX_* from the environment, which UCX otherwise reads itself. */
static int
t_engine_config(void)
{
    t_params tp = {"tls", {{"local_path", "ucx"}, {"engine_config", ""}}, 2, 0};

    T_BEGIN();
    XT_ASSERT_STATUS(t_try_create("engine_config", "NO_SUCH_KEY=1", NULL, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "NO_SUCH_KEY") != NULL);
    XT_ASSERT_STATUS(t_try_create("engine_config", "TLS", NULL, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(
        t_try_create("engine_config", "RNDV_THRESH=banana", NULL, NULL),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT_OK(t_try_create(
        "engine_config", " UCX_RNDV_THRESH = 64k ; ; TLS=all ", NULL, NULL));

    /* Transports from engine_config. */
    tp.items[1].value = "TLS=tcp,self";
    XT_ASSERT(t_loop_ok(&tp) == 0);

    /* The environment reaches UCX: no transport that exists. */
    XT_ASSERT_EQ(setenv("UCX_TLS", "no_such_transport", 1), 0);
    XT_ASSERT_STATUS(t_try_create(NULL, NULL, NULL, NULL), NXL_ERR_BACKEND);
    printf("  UCX_TLS=no_such_transport: %s\n", nxl_last_error());
    /* engine_config overrides it. */
    tp.items[1].value = "TLS=sm,self";
    XT_ASSERT(t_loop_ok(&tp) == 0);
    unsetenv("UCX_TLS");
    T_END();
}

/* Parameter validation (err_mode and its NIXL alias, num_workers,
 * local_path, same_host, service_thread, local_notif) and every err mode
 * working. */
static int
t_params_case(void)
{
    static const char *const modes[] = {"auto", "peer", "none"};
    t_params tp;
    size_t i;

    T_BEGIN();
    XT_ASSERT_STATUS(t_try_create("err_mode", "sometimes", NULL, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "err_mode") != NULL);
    XT_ASSERT_STATUS(
        t_try_create("ucx_error_handling_mode", "bogus", NULL, NULL),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT_OK(t_try_create("ucx_error_handling_mode", "none", NULL, NULL));
    XT_ASSERT_STATUS(t_try_create("num_workers", "0", NULL, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(t_try_create("num_workers", "65", NULL, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(t_try_create("num_workers", "2x", NULL, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(t_try_create("local_path", "teleport", NULL, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(t_try_create("same_host", "maybe", NULL, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(t_try_create("service_thread", "sometimes", NULL, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(t_try_create("local_notif", "pigeon", NULL, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(t_try_create("no_such_param", "1", NULL, NULL),
                     NXL_ERR_INVALID_PARAM);

    for (i = 0; i < T_ARRAY_SIZE(modes); i++) {
        tp = (t_params){"mode",
                        {{"err_mode", modes[i]},
                         {"local_path", "ucx"},
                         {"num_workers", "3"},
                         {"service_thread", i == 2 ? "off" : "on"}},
                        4,
                        0};
        printf("  err_mode=%s, 3 workers, service thread %s\n", modes[i],
               tp.items[3].value);
        XT_ASSERT(t_loop_ok(&tp) == 0);
    }
    T_END();
}

/* Several requests in flight at once on several workers, against a peer
 * (err_mode peer: TCP loopback on one host), each data-checked. */
static int
t_workers(void)
{
    const uint64_t len = 8 * T_MIB, part = len / 8;
    t_params tp = {
        "workers",
        {{"num_workers", "4"}, {"local_path", "ucx"}, {"err_mode", "peer"}},
        3,
        0};
    nxl_xfer_t *x[8];
    nxl_agent_t *a = NULL;
    uint8_t *loc;
    int i, round;
    t_peer p;

    T_BEGIN();
    XT_ASSERT(t_setup(&tp, len, &p, &a) == 0);
    loc = t_map(len);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(t_reg(a, loc, len));
    for (i = 0; i < 8; i++) {
        XT_ASSERT_OK(t_make(a, NXL_WRITE, (uintptr_t)loc + i * part,
                            p.addr + i * part, part, 16, "peer", NULL, &x[i]));
    }
    for (round = 0; round < 3; round++) {
        t_fill(loc, len, 700 + (uint32_t)round, 0);
        for (i = 0; i < 8; i++) {
            nxl_status_t st = nxl_xfer_post(x[i], NULL);

            XT_ASSERT(st == NXL_OK || st == NXL_IN_PROG);
        }
        for (i = 0; i < 8; i++) {
            XT_ASSERT_OK(nxl_xfer_wait(x[i], T_WAIT_MS));
        }
        XT_ASSERT_EQ(t_pcheck(&p, 0, len, 700 + (uint32_t)round), 0);
    }
    for (i = 0; i < 8; i++) {
        nxl_xfer_release(x[i]);
    }
    nxl_agent_destroy(a);
    munmap(loc, len);
    XT_ASSERT_EQ(t_pstop(&p), 0);
    T_END();
}

/* Registering VRAM without a CUDA-capable UCX is NOT_SUPPORTED with a
 * message naming the cause (never a generic backend error). */
static int
t_vram(void)
{
    nxl_agent_t *a = NULL;
    nxl_desc_t d = {0x100000, 4096, 0};
    nxl_dlist_t dl = {NXL_VRAM, &d, 1};
    nxl_status_t st;

    char log[4096];
    FILE *cap;
    ssize_t n;
    int saved;

    T_BEGIN();
    XT_ASSERT_OK(t_agent("vram", NULL, &a));
    /* The core logs each backend's refusal (warn) and returns its own
     * summary: capture stderr to see the UCX backend's reason. */
    cap = tmpfile();
    XT_ASSERT(cap != NULL);
    fflush(stderr);
    saved = dup(2);
    XT_ASSERT(saved >= 0 && dup2(fileno(cap), 2) == 2);
    st = nxl_mem_register(a, &dl, NULL);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    if (st == NXL_OK) {
        nxl_mem_deregister(a, &dl, NULL);
        nxl_agent_destroy(a);
        XT_SKIP_IF(1, "this UCX has CUDA support");
    }
    XT_ASSERT_EQ(st, NXL_ERR_NOT_SUPPORTED);
    rewind(cap);
    n = (ssize_t)fread(log, 1, sizeof(log) - 1, cap);
    log[n > 0 ? n : 0] = '\0';
    fclose(cap);
    printf("  status %s (%s); logged: %s", nxl_status_name(st),
           nxl_last_error(), log);
    XT_ASSERT(strstr(log, "CUDA") != NULL);
    nxl_agent_destroy(a);
    T_END();
}

/* --- micro-benchmark (NXL_UCX_BENCH=1) --------------------------------- */

/* t_now_ns is a monotonic clock in nanoseconds. */
static uint64_t
t_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* t_bench_bw times iters posts of a len-byte transfer (n descriptors). */
static double
t_bench_bw(nxl_agent_t *a, nxl_op_t op, uint8_t *loc, uint64_t raddr,
           uint64_t len, size_t n, int iters)
{
    nxl_xfer_t *x = NULL;
    uint64_t t0;
    double sec;
    int i;

    if (t_make(a, op, (uintptr_t)loc, raddr, len, n, "peer", NULL, &x) !=
        NXL_OK) {
        return -1;
    }
    for (i = 0; i < 2; i++) {
        if (t_run(x) != NXL_OK) {
            return -1;
        }
    }
    t0 = t_now_ns();
    for (i = 0; i < iters; i++) {
        if (t_run(x) != NXL_OK) {
            return -1;
        }
    }
    sec = (double)(t_now_ns() - t0) / 1e9;
    nxl_xfer_release(x);
    return (double)len * iters / sec / 1e9;
}

/* t_bench_verify moves len bytes once more with fresh data and checks
 * them at the destination; 0 when right. */
static int
t_bench_verify(nxl_agent_t *a, t_peer *p, nxl_op_t op, uint8_t *loc,
               uint64_t len, uint32_t seed)
{
    nxl_xfer_t *x = NULL;
    int bad;

    if (op == NXL_WRITE) {
        t_fill(loc, len, seed, 0);
    } else if (t_pfill(p, 0, len, seed) != 0) {
        return -1;
    }
    if (t_make(a, op, (uintptr_t)loc, p->addr, len, 1, "peer", NULL, &x) !=
            NXL_OK ||
        t_run(x) != NXL_OK) {
        nxl_xfer_release(x);
        return -1;
    }
    nxl_xfer_release(x);
    bad = op == NXL_WRITE ? t_pcheck(p, 0, len, seed)
                          : t_verify(loc, len, seed, 0);
    return bad;
}

/* Bandwidth of 1-64 MiB READ/WRITE per data path, and the post cost of
 * 32768 x 16 KiB. Prints a table; asserts nothing. */
static int
t_bench(void)
{
    static const uint64_t sizes[] = {4, 64, 1024, 4096, 16384, 65536}; /* KiB */
    const uint64_t big = 512 * T_MIB;
    const char *v = getenv("NXL_UCX_BENCH");
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    uint8_t *loc;
    size_t s, k;
    int op, i;
    t_peer p;

    XT_SKIP_IF(v == NULL || strcmp(v, "1") != 0,
               "set NXL_UCX_BENCH=1 to run the micro-benchmark");
    T_NEED_UCX();
    for (s = 0; s < 3; s++) {
        const t_params *tp = &t_sets[s < 2 ? s : T_SET_SHARED];

        XT_ASSERT(t_setup(tp, big, &p, &a) == 0);
        loc = t_map(big);
        XT_ASSERT(loc != NULL);
        memset(loc, 1, big);
        XT_ASSERT_EQ(t_pfill(&p, 0, big, 1), 0);
        XT_ASSERT_OK(t_reg(a, loc, big));
        printf("  %s\n", tp->label);
        for (op = NXL_READ; op <= NXL_WRITE; op++) {
            for (k = 0; k < T_ARRAY_SIZE(sizes); k++) {
                uint64_t len = sizes[k] * 1024;
                int iters = sizes[k] >= 65536  ? 8
                            : sizes[k] >= 1024 ? (int)(1048576 / sizes[k])
                                               : 2000;

                printf("    %-5s %6llu KiB: %6.2f GB/s\n",
                       op == NXL_READ ? "READ" : "WRITE",
                       (unsigned long long)sizes[k],
                       t_bench_bw(a, (nxl_op_t)op, loc, p.addr, len, 1, iters));
                XT_ASSERT_EQ(t_bench_verify(a, &p, (nxl_op_t)op, loc, len,
                                            (uint32_t)(900 + k)),
                             0);
            }
        }
        /* Post cost: 32768 descriptors of 16 KiB (no merging). */
        for (op = NXL_READ; op <= NXL_WRITE; op++) {
            uint64_t post = 0, total = 0, t0, t1;

            XT_ASSERT_OK(t_make(a, (nxl_op_t)op, (uintptr_t)loc, p.addr, big,
                                32768, "peer", NULL, &x));
            for (i = 0; i < 5; i++) {
                nxl_status_t st;

                t0 = t_now_ns();
                st = nxl_xfer_post(x, NULL);
                t1 = t_now_ns();
                if (st == NXL_IN_PROG) {
                    st = nxl_xfer_wait(x, T_WAIT_MS);
                }
                XT_ASSERT_OK(st);
                if (i > 0) {
                    post += t1 - t0;
                    total += t_now_ns() - t0;
                }
            }
            printf("    %-5s 32768 x 16 KiB: post %.1f ns/desc, whole "
                   "transfer %.2f GB/s (%.0f ns/desc)\n",
                   op == NXL_READ ? "READ" : "WRITE", (double)post / 4 / 32768,
                   (double)big * 4 / total, (double)total / 4 / 32768);
            nxl_xfer_release(x);
        }
        nxl_agent_destroy(a);
        munmap(loc, big);
        XT_ASSERT_EQ(t_pstop(&p), 0);
    }
    return 0;
}

/* t_views_round registers T_VIEWS pages of buf with a (params tp), moves
 * data page to page through loopback, deregisters and registers the odd
 * pages again in another order (their table slots are reused), moves
 * data again, and checks that a transfer made before its target was
 * deregistered fails. */
#define T_VIEWS 64
static int
t_views_round(const t_params *tp, uint8_t *buf)
{
    const uint64_t pg = 4096;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    size_t i, k, round;

    XT_ASSERT_OK(t_agent("views", tp, &a));
    for (i = 0; i < T_VIEWS; i++) {
        XT_ASSERT_OK(t_reg(a, buf + i * pg, pg));
    }
    for (round = 0; round < 3; round++) {
        for (i = 0; i + 1 < T_VIEWS; i += 2) {
            t_fill(buf + i * pg, pg, (uint32_t)(700 + round * 100 + i), 0);
            XT_ASSERT_OK(t_make(a, round % 2 ? NXL_READ : NXL_WRITE,
                                (uintptr_t)(buf + (round % 2 ? i + 1 : i) * pg),
                                (uintptr_t)(buf + (round % 2 ? i : i + 1) * pg),
                                pg, 1, "views", NULL, &x));
            XT_ASSERT_OK(t_run(x));
            nxl_xfer_release(x);
            XT_ASSERT_EQ(t_verify(buf + (i + 1) * pg, pg,
                                  (uint32_t)(700 + round * 100 + i), 0),
                         0);
        }
        /* Odd pages go and come back, every 7th first. */
        for (k = 0; k < T_VIEWS / 2; k++) {
            nxl_desc_t d = {
                (uintptr_t)(buf + ((k * 7) % (T_VIEWS / 2) * 2 + 1) * pg), pg,
                0};
            nxl_dlist_t dl = {NXL_DRAM, &d, 1};

            XT_ASSERT_OK(nxl_mem_deregister(a, &dl, NULL));
        }
        for (k = T_VIEWS / 2; k-- > 0;) {
            XT_ASSERT_OK(t_reg(a, buf + (k * 2 + 1) * pg, pg));
        }
    }
    /* Made, then its target deregistered: refused at post. */
    XT_ASSERT_OK(t_make(a, NXL_WRITE, (uintptr_t)buf, (uintptr_t)(buf + pg), pg,
                        1, "views", NULL, &x));
    {
        nxl_desc_t d = {(uintptr_t)(buf + pg), pg, 0};
        nxl_dlist_t dl = {NXL_DRAM, &d, 1};

        XT_ASSERT_OK(nxl_mem_deregister(a, &dl, NULL));
    }
    XT_ASSERT(t_run(x) != NXL_OK);
    nxl_xfer_release(x);
    /* The rest is left for agent_destroy to drop. */
    nxl_agent_destroy(a);
    return 0;
}

/* Loopback views: with the copy path (the default) a region's loopback
 * record lives in its registration's allocation and is found by table
 * slot; with local_path=ucx it is a record of its own on the key list.
 * Both through slot reuse, out-of-order deregistration, revocation and
 * destroy with regions left. */
static int
t_loopback_views(void)
{
    t_params copy = {"copy", {{"local_path", "copy"}}, 1, 0};
    t_params rma = {"ucx", {{"local_path", "ucx"}}, 1, 0};
    uint8_t *buf;

    T_BEGIN();
    buf = t_map(T_VIEWS * 4096);
    XT_ASSERT(buf != NULL);
    XT_ASSERT(t_views_round(&copy, buf) == 0);
    XT_ASSERT(t_views_round(&rma, buf) == 0);
    munmap(buf, T_VIEWS * 4096);
    T_END();
}

const xt_suite xt_suite_ucx = {
    .name = "ucx",
    .timeout_s = 120,
    .cases =
        (const xt_case[]){
            {"write_read", t_write_read},
            {"notif_after_data", t_notif_after_data},
            {"peer_killed", t_peer_killed},
            {"reconnect", t_reconnect},
            {"reload_live", t_reload_live},
            {"engine_config", t_engine_config},
            {"params", t_params_case},
            {"workers", t_workers},
            {"vram", t_vram},
            {"loopback_views", t_loopback_views},
            {"bench", t_bench},
            {NULL, NULL},
        },
};
