/*
 * test_conformance.c - the backend conformance suite.
 *
 * Every built-in backend runs the same cases (the suite's parameter is the
 * backend name): two processes on 127.0.0.1, a forked peer and the test
 * process, each with one agent holding only the backend under test.
 * Backends that reach other hosts (NXL_CAP_REMOTE) run the cases a second
 * time as "<NAME>@netns": each case makes a two-host rig of network
 * namespaces (tests/netns/rig.sh), the test process enters NAME-a
 * (10.77.0.1) and the peer NAME-b (10.77.0.2), and every listener, backend
 * and side-channel address is the namespace's own (cf_net below); without
 * root these skip with the reason. The
 * peer is driven through a pair of pipes (a tiny command protocol below):
 * it reports its side-channel port and buffer addresses, fills and checks
 * its memory, waits for notifications, exchanges metadata, and can start
 * transfers of its own.
 *
 * Local storage backends (NXL_CAP_LOCAL without REMOTE, memory kinds DRAM
 * and FILE: POSIX) have no peer: the cases whose contract applies to
 * them run with the target side in a temporary file registered as
 * NXL_FILE in the test process's own agent, reached under the agent's own
 * name (cf_tgt below: the same case body fills and checks a peer's memory
 * or the file). The cases that need a peer process or notifications skip
 * with the reason.
 *
 * Oracle: NIXL's agent semantics (reference/nixl.md §1.4, §4.2-4.5, §7 and
 * the cases of §9) and the contract in the comments of include/nxl/nxl.h.
 */
#include "harness.h"
#include "md/md.h"

#include <nxl/nxl_backend.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern const char *const xt_backends[];

#define CF_NAME_MAX 32
#define CF_MSG_MAX 64
#define CF_ERR_MAX 256
#define CF_NQ_MAX 1024
#define CF_KIB ((uint64_t)1024)
#define CF_MIB ((uint64_t)1024 * 1024)
#define CF_XFER_TIMEOUT_MS 20000

/* Agent flags for cf_config. */
enum {
    CF_PROGRESS = 1u << 0,  /* progress thread */
    CF_TELEMETRY = 1u << 1, /* capture telemetry */
    CF_SYNC_RW = 1u << 2,   /* NXL_SYNC_RW */
    CF_NO_LISTEN = 1u << 3  /* no side-channel listener */
};

/* The peer's registered regions. */
enum { CF_REG_HEAP = 0, CF_REG_SHARED = 1, CF_REG_EXTRA = 2, CF_NREG = 3 };

/* Peer commands. */
enum {
    CF_OP_START = 1,     /* deferred peer: set up now, answer a hello */
    CF_OP_FILL,          /* region, off, len, seed */
    CF_OP_CHECK,         /* region, off, len, seed -> status 0 / 1 */
    CF_OP_CHECK_STRIDED, /* + stride, count, seed2 (the gaps) */
    CF_OP_NOTIF_WAIT,    /* arg = timeout; len > 0: check data on arrival */
    CF_OP_NOTIF_NONE,    /* arg = ms: nothing may arrive meanwhile */
    CF_OP_NOTIF_SEND,    /* name, msg */
    CF_OP_MD_GET,        /* arg = CF_MD_*, region -> blob */
    CF_OP_MD_FETCH,      /* port, name */
    CF_OP_MD_SEND,       /* port */
    CF_OP_MD_CHECK,      /* name, raddr, len (0 = no dlist) */
    CF_OP_MD_INVAL_LOCAL, /* port */
    CF_OP_REG_EXTRA,     /* len, arg 1 = shared memory -> value = address */
    CF_OP_XFER,          /* arg = op, region, off, len -> name @ raddr */
    CF_OP_IDLE_CPU,      /* arg = ms -> value = cpu us, value2 = wall us */
    CF_OP_DEREG_EXTRA,   /* deregister the extra region, keep its memory */
    CF_OP_REG_HALF,      /* register the first half of the extra region */
    CF_OP_EXIT
};

/* Metadata kinds for CF_OP_MD_GET. */
enum { CF_MD_FULL, CF_MD_CONN_ONLY, CF_MD_DESCS, CF_MD_DESCS_CONN };

typedef struct {
    int op;
    int region;
    int arg;
    uint32_t seed, seed2;
    uint64_t off, len, stride, count, raddr;
    uint16_t port;
    char name[CF_NAME_MAX];
    char msg[CF_MSG_MAX];
    uint32_t msg_len;
} cf_cmd;

typedef struct {
    int status;
    uint64_t value, value2;
    char name[CF_NAME_MAX];
    char msg[CF_MSG_MAX];
    uint32_t msg_len;
    uint64_t blob_len; /* bytes that follow the reply */
    char err[CF_ERR_MAX];
} cf_rep;

typedef struct {
    int status;
    int pid;
    uint16_t port;
    uint64_t addr[CF_NREG], len[CF_NREG];
    char err[CF_ERR_MAX];
} cf_hello;

typedef struct {
    const char *name;    /* NULL = "peer" */
    uint64_t heap_len;   /* malloc'ed region */
    uint64_t shared_len; /* nxl_mem_alloc_shared region, 0 = none */
    int deferred;        /* wait for CF_OP_START before setting up */
} cf_peer_cfg;

/* cf_peer is the test process's handle on a forked peer. */
typedef struct {
    pid_t pid;
    int cmd_fd, rep_fd;
    char name[CF_NAME_MAX];
    cf_hello hello;
    char err[CF_ERR_MAX]; /* the peer's last nxl_last_error */
} cf_peer;

/* One received notification, copied out of the library's list. */
typedef struct {
    char agent[CF_NAME_MAX];
    char msg[CF_MSG_MAX];
    size_t len;
} cf_notif;

/* cf_nq keeps notifications that arrived in one batch for later calls. */
typedef struct {
    cf_notif items[CF_NQ_MAX];
    size_t head, count;
} cf_nq;

/* CF_ASSERT_ONE_OF: the status is one of two errors and left a message. */
#define CF_ASSERT_ONE_OF(expr, w1, w2)                                        \
    do {                                                                      \
        nxl_status_t s_ = (expr);                                             \
        if (s_ != (w1) && s_ != (w2))                                         \
            XT_FAILF("%s -> %s, want %s or %s (%s)", #expr,                   \
                     nxl_status_name(s_), nxl_status_name(w1),                \
                     nxl_status_name(w2), nxl_last_error());                  \
        if (nxl_last_error()[0] == '\0')                                      \
            XT_FAILF("%s -> %s without an nxl_last_error message", #expr,     \
                     nxl_status_name(s_));                                    \
    } while (0)

/* CF_ASSERT_PEER: a status the peer reported (its message in p->err). */
#define CF_ASSERT_PEER(p, expr, want)                                         \
    do {                                                                      \
        nxl_status_t s_ = (expr);                                             \
        if (s_ != (want))                                                     \
            XT_FAILF("peer: %s -> %s, want %s (%s)", #expr,                   \
                     nxl_status_name(s_), nxl_status_name(want), (p)->err);   \
        if ((want) < 0 && (p)->err[0] == '\0')                                \
            XT_FAILF("peer: %s -> %s without an nxl_last_error message",      \
                     #expr, nxl_status_name(s_));                             \
    } while (0)

/* cf_caps names the NXL_CAP_* bits of caps ("REMOTE|NOTIF") in buf. */
static const char *
cf_caps(uint32_t caps, char *buf, size_t cap)
{
    static const char *const names[] = {"LOCAL", "REMOTE", "NOTIF",
                                        "THREAD_SAFE"};
    size_t i, n = 0;

    buf[0] = '\0';
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (caps & (1u << i)) {
            n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%s%s",
                                  n > 0 ? "|" : "", names[i]);
        }
    }
    return n > 0 ? buf : "none";
}

/* CF_NEED_WHY skips a case when the backend under test lacks capabilities
 * (NXL_CAP_* bits from nxl_plugin_info) or DRAM support, saying which and
 * what of the case needs them (why). */
#define CF_NEED_WHY(want, why)                                                \
    do {                                                                      \
        nxl_plugin_info_t i_;                                                 \
        char m_[64], h_[64];                                                  \
        XT_ASSERT_OK(nxl_plugin_info(cf_be(), &i_));                          \
        XT_SKIP_IF((i_.caps & (want)) != (want),                              \
                   "%s lacks %s (has %s): %s", cf_be(),                       \
                   cf_caps((want) & ~i_.caps, m_, sizeof(m_)),                \
                   cf_caps(i_.caps, h_, sizeof(h_)), (why));                  \
        XT_SKIP_IF(!(i_.mem_kinds & (1u << NXL_DRAM)), "%s lacks DRAM",       \
                   cf_be());                                                  \
    } while (0)

#define CF_NEED(want) CF_NEED_WHY(want, "the case needs them")

/* ---------------------------------------------------------------------- */
/* Data patterns: byte i of pattern seed; i is the absolute offset in the
 * buffer that receives the data, so any misplaced byte shows. */

static inline uint8_t
cf_pat(uint32_t seed, uint64_t i)
{
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^
                 (uint64_t)(seed + 1) * 0xC2B2AE3D27D4EB4Full;

    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    return (uint8_t)(x >> 56);
}

static void
cf_fill(uint8_t *p, uint64_t len, uint32_t seed, uint64_t pidx)
{
    uint64_t k;

    for (k = 0; k < len; k++) {
        p[k] = cf_pat(seed, pidx + k);
    }
}

/* cf_find_bad returns the first index not matching the pattern, or len. */
static uint64_t
cf_find_bad(const uint8_t *p, uint64_t len, uint32_t seed, uint64_t pidx)
{
    uint64_t k;

    for (k = 0; k < len; k++) {
        if (p[k] != cf_pat(seed, pidx + k)) {
            break;
        }
    }
    return k;
}

static int
cf_check_local(const uint8_t *p, uint64_t len, uint32_t seed, uint64_t pidx,
               const char *what)
{
    uint64_t k = cf_find_bad(p, len, seed, pidx);

    if (k != len) {
        XT_FAILF("%s: byte %" PRIu64 " of %" PRIu64 " is 0x%02x, want 0x%02x",
                 what, k, len, p[k], cf_pat(seed, pidx + k));
    }
    return 0;
}

/* cf_check_byte checks that len bytes all equal v (untouched guards). */
static int
cf_check_byte(const uint8_t *p, uint64_t len, uint8_t v, const char *what)
{
    uint64_t k;

    for (k = 0; k < len; k++) {
        if (p[k] != v) {
            XT_FAILF("%s: guard byte %" PRIu64 " is 0x%02x, want 0x%02x",
                     what, k, p[k], v);
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Small shared helpers. */

static int
cf_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    ssize_t n;

    while (len > 0) {
        n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int
cf_read_all(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    ssize_t n;

    while (len > 0) {
        n = read(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (n == 0) {
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static uint8_t *
cf_map(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    return p == MAP_FAILED ? NULL : p;
}

static void
cf_unmap(void *p, size_t len)
{
    if (p != NULL) {
        munmap(p, len);
    }
}

static uint64_t
cf_cpu_us(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_utime.tv_sec * 1000000u +
           (uint64_t)ru.ru_utime.tv_usec +
           (uint64_t)ru.ru_stime.tv_sec * 1000000u +
           (uint64_t)ru.ru_stime.tv_usec;
}

/* ---------------------------------------------------------------------- */
/* Where the two processes of a case live: both on 127.0.0.1, or (params
 * "<NAME>@netns") in two namespaces of a rig. The peer swaps self and
 * other after it entered its namespace. */

#define CF_NETNS_SUFFIX "@netns"
#define CF_RIG NXL_TEST_DATA_DIR "/../netns/rig.sh"
#define CF_ADDR_A "10.77.0.1" /* rig.sh: NAME-a, the test process */
#define CF_ADDR_B "10.77.0.2" /* NAME-b, the peer */

typedef struct {
    char backend[CF_NAME_MAX]; /* the backend type (param minus suffix) */
    const char *self;          /* this process's address */
    const char *other;         /* the other process's address */
    char peer_ns[48];          /* namespace the peer enters; "" = none */
    nxl_param_t params[4];     /* backend params of the netns variant */
    nxl_params_t plist;
} cf_net;

static cf_net cf_env = {"", "127.0.0.1", "127.0.0.1", "", {{0}}, {0}};

/* cf_be returns the type of the backend under test: the suite parameter
 * without the "@netns" suffix. */
static const char *
cf_be(void)
{
    const char *p = xt_param();
    size_t n;

    if (cf_env.backend[0] == '\0' && p != NULL) {
        n = strcspn(p, "@");
        if (n >= sizeof(cf_env.backend)) {
            n = sizeof(cf_env.backend) - 1;
        }
        memcpy(cf_env.backend, p, n);
        cf_env.backend[n] = '\0';
    }
    return cf_env.backend;
}

/* cf_netns is true when this case runs across network namespaces. */
static bool
cf_netns(void)
{
    const char *p = xt_param();

    return p != NULL && strstr(p, CF_NETNS_SUFFIX) != NULL;
}

/* cf_net_params fills the backend params of the netns variant for this
 * process's address: TCP binds its data server to it; UCX treats the
 * peer as another host (same_host=off: the rig shares the boot id and pid
 * namespace, so the copy path would bypass the network) and is limited
 * to TCP over the veth (shared memory and cma also cross network
 * namespaces, and a loopback lane would reach the wrong namespace's lo).
 * Other backends get none. */
static void
cf_net_params(void)
{
    size_t n = 0;

    if (!cf_netns()) {
        return;
    }
    if (strcasecmp(cf_be(), "TCP") == 0) {
        cf_env.params[n++] = (nxl_param_t){"bind_addr", cf_env.self};
    } else if (strcasecmp(cf_be(), "UCX") == 0) {
        cf_env.params[n++] = (nxl_param_t){"same_host", "off"};
        cf_env.params[n++] =
            (nxl_param_t){"engine_config", "TLS=tcp;NET_DEVICES=veth0"};
    }
    cf_env.plist.items = cf_env.params;
    cf_env.plist.count = n;
}

/* cf_be_params returns the backend params of the case (NULL: defaults). */
static const nxl_params_t *
cf_be_params(void)
{
    return cf_env.plist.count > 0 ? &cf_env.plist : NULL;
}

/* cf_enter_netns moves the calling (single-threaded) process into
 * /var/run/netns/<ns> and, as `ip netns exec` does, gives it a private
 * mount namespace with a sysfs of the new network namespace: UCX lists
 * network devices from /sys/class/net, which otherwise still shows the
 * devices of the namespace that mounted it. -1 with errno on failure. */
static int
cf_enter_netns(const char *ns)
{
    char path[256];
    int fd, rc;

    snprintf(path, sizeof(path), "/var/run/netns/%s", ns);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    rc = setns(fd, CLONE_NEWNET);
    close(fd);
    if (rc != 0 || unshare(CLONE_NEWNS) != 0 ||
        mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) != 0) {
        return -1;
    }
    (void)umount2("/sys", MNT_DETACH);
    return mount(ns, "/sys", "sysfs", 0, NULL);
}

static void
cf_config(nxl_agent_config_t *c, unsigned flags)
{
    nxl_agent_config_init(c);
    c->listen_thread = !(flags & CF_NO_LISTEN);
    c->listen_port = 0;
    c->listen_addr = cf_env.self;
    c->progress_thread = (flags & CF_PROGRESS) != 0;
    c->capture_telemetry = (flags & CF_TELEMETRY) != 0;
    c->sync_mode = (flags & CF_SYNC_RW) ? NXL_SYNC_RW : NXL_SYNC_NONE;
}

/* cf_agent makes an agent holding only the backend under test. */
static nxl_status_t
cf_agent(const char *name, unsigned flags, nxl_agent_t **agent_p)
{
    nxl_agent_config_t cfg;
    nxl_agent_t *a = NULL;
    nxl_backend_t *be = NULL;
    nxl_status_t st;

    cf_config(&cfg, flags);
    st = nxl_agent_create(name, &cfg, &a);
    if (st != NXL_OK) {
        return st;
    }
    st = nxl_backend_create(a, cf_be(), cf_be_params(), &be);
    if (st != NXL_OK) {
        nxl_agent_destroy(a);
        return st;
    }
    *agent_p = a;
    return NXL_OK;
}

static nxl_dlist_t
cf_dl(const nxl_desc_t *d, size_t n)
{
    nxl_dlist_t l = {NXL_DRAM, d, n};

    return l;
}

static nxl_status_t
cf_reg(nxl_agent_t *a, const void *p, uint64_t len)
{
    nxl_desc_t d = {(uintptr_t)p, len, 0};
    nxl_dlist_t l = cf_dl(&d, 1);

    return nxl_mem_register(a, &l, NULL);
}

static nxl_status_t
cf_dereg(nxl_agent_t *a, const void *p, uint64_t len)
{
    nxl_desc_t d = {(uintptr_t)p, len, 0};
    nxl_dlist_t l = cf_dl(&d, 1);

    return nxl_mem_deregister(a, &l, NULL);
}

/* cf_run posts x and waits for it: the status of the whole transfer. */
static nxl_status_t
cf_run(nxl_xfer_t *x, const nxl_opts_t *opts)
{
    nxl_status_t st = nxl_xfer_post(x, opts);

    if (st == NXL_IN_PROG) {
        st = nxl_xfer_wait(x, CF_XFER_TIMEOUT_MS);
    }
    return st;
}

/* cf_xfer1 builds a one-descriptor transfer local <-> remote. */
static nxl_status_t
cf_xfer1(nxl_agent_t *a, nxl_op_t op, uint64_t laddr, uint64_t raddr,
         uint64_t len, const char *remote, const nxl_opts_t *opts,
         nxl_xfer_t **x_p)
{
    nxl_desc_t ld = {laddr, len, 0}, rd = {raddr, len, 0};
    nxl_dlist_t ll = cf_dl(&ld, 1), rl = cf_dl(&rd, 1);

    return nxl_xfer_create(a, op, &ll, &rl, remote, opts, x_p);
}

static void
cf_opts_peer(nxl_opts_t *o, uint16_t port)
{
    nxl_opts_init(o);
    o->ip_addr = cf_env.other;
    o->port = port;
}

static void
cf_opts_notif(nxl_opts_t *o, const char *msg)
{
    nxl_opts_init(o);
    o->has_notif = 1;
    o->notif = msg;
    o->notif_len = strlen(msg);
}

/* cf_nq_next returns the next notification of agent a, waiting up to
 * timeout_ms; NXL_ERR_TIMEOUT when none came. */
static nxl_status_t
cf_nq_next(nxl_agent_t *a, cf_nq *q, int timeout_ms, cf_notif *out)
{
    uint64_t t0 = xt_now_ms();
    nxl_notif_list_t *l;
    nxl_status_t st;
    cf_notif *n;
    size_t i, len;

    for (;;) {
        if (q->count > 0) {
            *out = q->items[q->head];
            q->head = (q->head + 1) % CF_NQ_MAX;
            q->count--;
            return NXL_OK;
        }
        l = NULL;
        st = nxl_notifs_get(a, &l, NULL);
        if (st != NXL_OK) {
            return st;
        }
        for (i = 0; l != NULL && i < l->count && q->count < CF_NQ_MAX; i++) {
            n = &q->items[(q->head + q->count) % CF_NQ_MAX];
            memset(n, 0, sizeof(*n));
            snprintf(n->agent, sizeof(n->agent), "%s",
                     l->items[i].agent ? l->items[i].agent : "(null)");
            n->len = l->items[i].len;
            len = n->len < CF_MSG_MAX ? n->len : CF_MSG_MAX;
            if (len > 0 && l->items[i].msg != NULL) {
                memcpy(n->msg, l->items[i].msg, len);
            }
            q->count++;
        }
        nxl_notif_list_free(l);
        if (q->count > 0) {
            continue;
        }
        if (xt_now_ms() - t0 >= (uint64_t)timeout_ms) {
            return NXL_ERR_TIMEOUT;
        }
        usleep(200);
    }
}

/* cf_notif_is: the notification came from agent with message msg. */
static int
cf_notif_is(const cf_notif *n, const char *agent, const char *msg,
            size_t len)
{
    return strcmp(n->agent, agent) == 0 && n->len == len &&
           (len == 0 || memcmp(n->msg, msg, len) == 0);
}

/* ---------------------------------------------------------------------- */
/* The peer process. */

typedef struct {
    nxl_agent_t *agent;
    uint8_t *reg[CF_NREG];
    uint64_t len[CF_NREG];
    int extra_shared; /* reg[CF_REG_EXTRA] is nxl_mem_alloc_shared */
    cf_nq q;
} cf_pstate;

static nxl_status_t
cf_peer_setup(cf_pstate *ps, const cf_peer_cfg *cfg, cf_hello *h)
{
    nxl_status_t st;
    void *p = NULL;

    st = cf_agent(cfg->name ? cfg->name : "peer", CF_PROGRESS, &ps->agent);
    if (st != NXL_OK) {
        return st;
    }
    if (posix_memalign(&p, 4096, cfg->heap_len) != 0) {
        return NXL_ERR_NOMEM;
    }
    memset(p, 0, cfg->heap_len);
    ps->reg[CF_REG_HEAP] = p;
    ps->len[CF_REG_HEAP] = cfg->heap_len;
    st = cf_reg(ps->agent, p, cfg->heap_len);
    if (st != NXL_OK) {
        return st;
    }
    if (cfg->shared_len > 0) {
        st = nxl_mem_alloc_shared(cfg->shared_len, &p);
        if (st != NXL_OK) {
            return st;
        }
        ps->reg[CF_REG_SHARED] = p;
        ps->len[CF_REG_SHARED] = cfg->shared_len;
        st = cf_reg(ps->agent, p, cfg->shared_len);
        if (st != NXL_OK) {
            return st;
        }
    }
    h->pid = (int)getpid();
    h->port = nxl_agent_listen_port(ps->agent);
    return NXL_OK;
}

/* cf_peer_range points *p_p at [off, off + len) of a region. */
static int
cf_peer_range(cf_pstate *ps, const cf_cmd *c, uint64_t span, uint8_t **p_p,
              cf_rep *r)
{
    if (c->region < 0 || c->region >= CF_NREG ||
        ps->reg[c->region] == NULL || c->off > ps->len[c->region] ||
        span > ps->len[c->region] - c->off) {
        r->status = -1;
        snprintf(r->err, sizeof(r->err), "peer: range outside region %d",
                 c->region);
        return -1;
    }
    *p_p = ps->reg[c->region] + c->off;
    return 0;
}

/* cf_peer_touch brackets the peer's own accesses to a region that the
 * test process reads or writes with one-sided transfers: ordered through
 * the test's pipes and the network, which ThreadSanitizer cannot see
 * (xt_tsan_acquire, harness.h). begin = 1 before, 0 after. */
static void
cf_peer_touch(const cf_pstate *ps, int region, int begin)
{
    if (region < 0 || region >= CF_NREG || ps->reg[region] == NULL) {
        return;
    }
    if (begin) {
        xt_tsan_acquire(ps->reg[region]);
    } else {
        xt_tsan_release(ps->reg[region]);
    }
}

static void
cf_peer_status(cf_rep *r, nxl_status_t st)
{
    r->status = st;
    if (st < 0) {
        snprintf(r->err, sizeof(r->err), "%s", nxl_last_error());
    }
}

/* cf_peer_handle runs one command; *blob_p gets bytes to send after the
 * reply (library-owned blob). */
static void
cf_peer_handle(cf_pstate *ps, const cf_cmd *c, cf_rep *r, nxl_blob_t *blob)
{
    nxl_desc_t d, rd;
    nxl_dlist_t dl, rl;
    nxl_opts_t o;
    nxl_xfer_t *x = NULL;
    nxl_status_t st;
    cf_notif n;
    uint8_t *p = NULL;
    uint64_t k, bad, t0, c0;
    void *mem = NULL;

    switch (c->op) {
    case CF_OP_FILL:
        if (cf_peer_range(ps, c, c->len, &p, r) == 0) {
            cf_peer_touch(ps, c->region, 1);
            cf_fill(p, c->len, c->seed, c->off);
            cf_peer_touch(ps, c->region, 0);
        }
        break;
    case CF_OP_CHECK:
        if (cf_peer_range(ps, c, c->len, &p, r) == 0) {
            cf_peer_touch(ps, c->region, 1);
            bad = cf_find_bad(p, c->len, c->seed, c->off);
            cf_peer_touch(ps, c->region, 0);
            r->status = bad != c->len;
            r->value = bad;
            if (bad != c->len) {
                snprintf(r->err, sizeof(r->err),
                         "byte %" PRIu64 " of %" PRIu64
                         " is 0x%02x, want 0x%02x",
                         bad, c->len, p[bad],
                         cf_pat(c->seed, c->off + bad));
            }
        }
        break;
    case CF_OP_CHECK_STRIDED:
        if (c->stride < c->len ||
            cf_peer_range(ps, c, c->stride * c->count, &p, r) != 0) {
            r->status = -1;
            break;
        }
        cf_peer_touch(ps, c->region, 1);
        for (k = 0; k < c->count; k++) {
            uint64_t o0 = c->off + k * c->stride;

            bad = cf_find_bad(p + k * c->stride, c->len, c->seed, o0);
            if (bad == c->len) {
                bad = cf_find_bad(p + k * c->stride + c->len,
                                  c->stride - c->len, c->seed2, o0 + c->len);
                if (bad == c->stride - c->len) {
                    continue;
                }
                bad += c->len;
            }
            r->status = 1;
            r->value = k * c->stride + bad;
            snprintf(r->err, sizeof(r->err),
                     "slot %" PRIu64 " byte %" PRIu64 " wrong", k, bad);
            break;
        }
        cf_peer_touch(ps, c->region, 0);
        break;
    case CF_OP_NOTIF_WAIT:
        st = cf_nq_next(ps->agent, &ps->q, c->arg, &n);
        cf_peer_status(r, st);
        if (st != NXL_OK) {
            break;
        }
        /* The data must be visible once the notification is seen. */
        r->value2 = 1;
        if (c->len > 0 && cf_peer_range(ps, c, c->len, &p, r) == 0) {
            cf_peer_touch(ps, c->region, 1);
            bad = cf_find_bad(p, c->len, c->seed, c->off);
            cf_peer_touch(ps, c->region, 0);
            r->value2 = bad == c->len;
            r->value = bad;
        }
        memcpy(r->name, n.agent, sizeof(r->name));
        memcpy(r->msg, n.msg, sizeof(r->msg));
        r->msg_len = (uint32_t)n.len;
        break;
    case CF_OP_NOTIF_NONE:
        st = cf_nq_next(ps->agent, &ps->q, c->arg, &n);
        if (st == NXL_OK) {
            r->status = 1;
            memcpy(r->name, n.agent, sizeof(r->name));
            memcpy(r->msg, n.msg, sizeof(r->msg));
            r->msg_len = (uint32_t)n.len;
        } else if (st != NXL_ERR_TIMEOUT) {
            cf_peer_status(r, st);
        }
        break;
    case CF_OP_NOTIF_SEND:
        cf_peer_status(r, nxl_notif_send(ps->agent, c->name, c->msg,
                                         c->msg_len, NULL));
        break;
    case CF_OP_MD_GET:
        d = (nxl_desc_t){0, 0, 0};
        if (c->arg != CF_MD_FULL && c->arg != CF_MD_CONN_ONLY) {
            if (c->region < 0 || c->region >= CF_NREG ||
                ps->reg[c->region] == NULL) {
                r->status = -1;
                break;
            }
            d = (nxl_desc_t){(uintptr_t)ps->reg[c->region],
                             ps->len[c->region], 0};
        }
        nxl_opts_init(&o);
        o.include_conn_info = c->arg == CF_MD_DESCS_CONN;
        dl = cf_dl(c->arg == CF_MD_CONN_ONLY ? NULL : &d,
                   c->arg == CF_MD_CONN_ONLY ? 0 : 1);
        st = c->arg == CF_MD_FULL
                 ? nxl_md_local(ps->agent, blob)
                 : nxl_md_local_partial(ps->agent, &dl, &o, blob);
        cf_peer_status(r, st);
        if (st == NXL_OK) {
            r->blob_len = blob->len;
        }
        break;
    case CF_OP_MD_FETCH:
        cf_opts_peer(&o, c->port);
        cf_peer_status(r, nxl_md_fetch(ps->agent,
                                       c->name[0] ? c->name : NULL, &o));
        break;
    case CF_OP_MD_SEND:
        cf_opts_peer(&o, c->port);
        cf_peer_status(r, nxl_md_send(ps->agent, &o));
        break;
    case CF_OP_MD_INVAL_LOCAL:
        cf_opts_peer(&o, c->port);
        cf_peer_status(r, nxl_md_invalidate_local(ps->agent, &o));
        break;
    case CF_OP_MD_CHECK:
        d = (nxl_desc_t){c->raddr, c->len, 0};
        dl = cf_dl(&d, 1);
        cf_peer_status(r, nxl_md_check(ps->agent, c->name,
                                       c->len > 0 ? &dl : NULL));
        break;
    case CF_OP_DEREG_EXTRA:
        if (ps->reg[CF_REG_EXTRA] == NULL) {
            r->status = -1;
            break;
        }
        cf_peer_status(r, cf_dereg(ps->agent, ps->reg[CF_REG_EXTRA],
                                   ps->len[CF_REG_EXTRA]));
        break;
    case CF_OP_REG_HALF:
        if (ps->reg[CF_REG_EXTRA] == NULL) {
            r->status = -1;
            break;
        }
        cf_peer_status(r, cf_reg(ps->agent, ps->reg[CF_REG_EXTRA],
                                 ps->len[CF_REG_EXTRA] / 2));
        break;
    case CF_OP_REG_EXTRA:
        mem = NULL;
        if (ps->reg[CF_REG_EXTRA] != NULL ||
            (c->arg == 1 ? nxl_mem_alloc_shared(c->len, &mem) != NXL_OK
                         : posix_memalign(&mem, 4096, c->len) != 0)) {
            r->status = -1;
            break;
        }
        memset(mem, 0, c->len);
        st = cf_reg(ps->agent, mem, c->len);
        cf_peer_status(r, st);
        if (st == NXL_OK) {
            ps->reg[CF_REG_EXTRA] = mem;
            ps->extra_shared = c->arg == 1;
            ps->len[CF_REG_EXTRA] = c->len;
            r->value = (uintptr_t)mem;
        } else if (c->arg == 1) {
            nxl_mem_free_shared(mem);
        } else {
            free(mem);
        }
        break;
    case CF_OP_XFER:
        if (cf_peer_range(ps, c, c->len, &p, r) != 0) {
            break;
        }
        d = (nxl_desc_t){(uintptr_t)p, c->len, 0};
        rd = (nxl_desc_t){c->raddr, c->len, 0};
        dl = cf_dl(&d, 1);
        rl = cf_dl(&rd, 1);
        st = nxl_xfer_create(ps->agent, (nxl_op_t)c->arg, &dl, &rl, c->name,
                             NULL, &x);
        if (st == NXL_OK) {
            st = cf_run(x, NULL);
        }
        cf_peer_status(r, st);
        nxl_xfer_release(x);
        break;
    case CF_OP_IDLE_CPU:
        t0 = xt_now_ms();
        c0 = cf_cpu_us();
        usleep((useconds_t)c->arg * 1000u);
        r->value = cf_cpu_us() - c0;
        r->value2 = (xt_now_ms() - t0) * 1000u;
        break;
    default:
        r->status = -1;
        snprintf(r->err, sizeof(r->err), "peer: unknown op %d", c->op);
        break;
    }
}

/* cf_peer_main is the body of the forked peer; it never returns. */
static void
cf_peer_main(const cf_peer_cfg *cfg, int cmd_fd, int rep_fd)
{
    static cf_pstate ps;
    nxl_blob_t blob;
    cf_hello h;
    cf_cmd c;
    cf_rep r;
    nxl_status_t st;
    int i;

    if (cfg->deferred) {
        if (cf_read_all(cmd_fd, &c, sizeof(c)) != 0 || c.op != CF_OP_START) {
            _exit(2);
        }
    }
    memset(&h, 0, sizeof(h));
    st = cf_peer_setup(&ps, cfg, &h);
    h.status = st;
    if (st != NXL_OK) {
        snprintf(h.err, sizeof(h.err), "%s", nxl_last_error());
    }
    for (i = 0; i < CF_NREG; i++) {
        h.addr[i] = (uintptr_t)ps.reg[i];
        h.len[i] = ps.len[i];
    }
    if (cf_write_all(rep_fd, &h, sizeof(h)) != 0 || st != NXL_OK) {
        _exit(2);
    }
    for (;;) {
        if (cf_read_all(cmd_fd, &c, sizeof(c)) != 0) {
            _exit(2);
        }
        if (c.op == CF_OP_EXIT) {
            break;
        }
        memset(&r, 0, sizeof(r));
        blob.data = NULL;
        blob.len = 0;
        cf_peer_handle(&ps, &c, &r, &blob);
        if (cf_write_all(rep_fd, &r, sizeof(r)) != 0 ||
            (r.blob_len > 0 &&
             cf_write_all(rep_fd, blob.data, blob.len) != 0)) {
            _exit(2);
        }
        nxl_blob_free(&blob);
    }
    nxl_agent_destroy(ps.agent);
    if (ps.reg[CF_REG_SHARED] != NULL) {
        nxl_mem_free_shared(ps.reg[CF_REG_SHARED]);
    }
    free(ps.reg[CF_REG_HEAP]);
    if (ps.extra_shared) {
        nxl_mem_free_shared(ps.reg[CF_REG_EXTRA]);
    } else {
        free(ps.reg[CF_REG_EXTRA]);
    }
    memset(&r, 0, sizeof(r));
    (void)cf_write_all(rep_fd, &r, sizeof(r));
    /* exit(), not _exit(): under ASan the leak checker runs here. */
    exit(0);
}

/* ---------------------------------------------------------------------- */
/* The test process's side of the peer. */

static int
cf_peer_hello(cf_peer *p)
{
    if (cf_read_all(p->rep_fd, &p->hello, sizeof(p->hello)) != 0) {
        XT_FAILF("peer %s (pid %d) died before its hello", p->name,
                 (int)p->pid);
    }
    if (p->hello.status != NXL_OK) {
        XT_FAILF("peer setup failed: %s (%s)",
                 nxl_status_name((nxl_status_t)p->hello.status),
                 p->hello.err);
    }
    return 0;
}

/* cf_peer_enter moves a just-forked peer into its namespace and makes
 * its addresses and backend params those of that side; on failure it
 * answers the hello with the error and exits. */
static void
cf_peer_enter(int rep_fd)
{
    cf_hello h;

    if (cf_enter_netns(cf_env.peer_ns) != 0) {
        memset(&h, 0, sizeof(h));
        h.status = NXL_ERR_IO;
        snprintf(h.err, sizeof(h.err), "peer: setns %s: %s", cf_env.peer_ns,
                 strerror(errno));
        (void)cf_write_all(rep_fd, &h, sizeof(h));
        _exit(2);
    }
    cf_env.self = CF_ADDR_B;
    cf_env.other = CF_ADDR_A;
    cf_net_params();
}

/* cf_spawn forks a peer (killed with us via PR_SET_PDEATHSIG). A deferred
 * peer sets its agent up only at cf_peer_start. Fork before creating
 * agents here: the child of a threaded process must not touch the
 * library's state. */
static int
cf_spawn(cf_peer *p, const cf_peer_cfg *cfg)
{
    int cp[2], rp[2];
    pid_t parent = getpid(), pid;

    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", cfg->name ? cfg->name : "peer");
    XT_ASSERT(pipe(cp) == 0);
    XT_ASSERT(pipe(rp) == 0);
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    XT_ASSERT(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(3);
        }
        close(cp[1]);
        close(rp[0]);
        if (cf_env.peer_ns[0] != '\0') {
            cf_peer_enter(rp[1]);
        }
        cf_peer_main(cfg, cp[0], rp[1]);
        _exit(4);
    }
    close(cp[0]);
    close(rp[1]);
    p->pid = pid;
    p->cmd_fd = cp[1];
    p->rep_fd = rp[0];
    if (!cfg->deferred) {
        return cf_peer_hello(p);
    }
    return 0;
}

static int
cf_send(cf_peer *p, const cf_cmd *c)
{
    if (cf_write_all(p->cmd_fd, c, sizeof(*c)) != 0) {
        XT_FAILF("peer %s (pid %d): command pipe broken", p->name,
                 (int)p->pid);
    }
    return 0;
}

/* cf_recv reads a reply; a blob after it goes to *blob_p (malloc'ed) or
 * is dropped. */
static int
cf_recv(cf_peer *p, cf_rep *r, void **blob_p)
{
    void *b;

    if (cf_read_all(p->rep_fd, r, sizeof(*r)) != 0) {
        XT_FAILF("peer %s (pid %d) died", p->name, (int)p->pid);
    }
    snprintf(p->err, sizeof(p->err), "%s", r->err);
    if (r->blob_len > 0) {
        b = malloc(r->blob_len);
        XT_ASSERT(b != NULL);
        if (cf_read_all(p->rep_fd, b, r->blob_len) != 0) {
            free(b);
            XT_FAILF("peer %s died sending a blob", p->name);
        }
        if (blob_p != NULL) {
            *blob_p = b;
        } else {
            free(b);
        }
    }
    return 0;
}

static int
cf_call(cf_peer *p, const cf_cmd *c, cf_rep *r)
{
    if (cf_send(p, c) != 0) {
        return 1;
    }
    return cf_recv(p, r, NULL);
}

static cf_cmd
cf_cmd_of(int op)
{
    cf_cmd c;

    memset(&c, 0, sizeof(c));
    c.op = op;
    return c;
}

static int
cf_peer_start(cf_peer *p)
{
    cf_cmd c = cf_cmd_of(CF_OP_START);

    if (cf_send(p, &c) != 0) {
        return 1;
    }
    return cf_peer_hello(p);
}

/* cf_raddr is the peer's address of offset off in a region. */
static uint64_t
cf_raddr(const cf_peer *p, int region, uint64_t off)
{
    return p->hello.addr[region] + off;
}

static int
cf_pfill(cf_peer *p, int region, uint64_t off, uint64_t len, uint32_t seed)
{
    cf_cmd c = cf_cmd_of(CF_OP_FILL);
    cf_rep r;

    c.region = region;
    c.off = off;
    c.len = len;
    c.seed = seed;
    if (cf_call(p, &c, &r) != 0) {
        return 1;
    }
    if (r.status != 0) {
        XT_FAILF("peer fill: %s", r.err);
    }
    return 0;
}

/* cf_pcheck: the peer's [off, off + len) of region holds pattern seed. */
static int
cf_pcheck(cf_peer *p, int region, uint64_t off, uint64_t len, uint32_t seed,
          const char *what)
{
    cf_cmd c = cf_cmd_of(CF_OP_CHECK);
    cf_rep r;

    c.region = region;
    c.off = off;
    c.len = len;
    c.seed = seed;
    if (cf_call(p, &c, &r) != 0) {
        return 1;
    }
    if (r.status != 0) {
        XT_FAILF("%s: peer data wrong at [%" PRIu64 "+%" PRIu64 "): %s",
                 what, off, len, r.err);
    }
    return 0;
}

static nxl_status_t
cf_pmd_check(cf_peer *p, const char *name, uint64_t addr, uint64_t len)
{
    cf_cmd c = cf_cmd_of(CF_OP_MD_CHECK);
    cf_rep r;

    snprintf(c.name, sizeof(c.name), "%s", name);
    c.raddr = addr;
    c.len = len;
    if (cf_call(p, &c, &r) != 0) {
        return NXL_ERR_UNKNOWN;
    }
    return (nxl_status_t)r.status;
}

/* cf_pmd runs a side-channel command (FETCH, SEND, INVAL_LOCAL) on the
 * peer against the listener at port. */
static nxl_status_t
cf_pmd(cf_peer *p, int op, uint16_t port, const char *name)
{
    cf_cmd c = cf_cmd_of(op);
    cf_rep r;

    c.port = port;
    if (name != NULL) {
        snprintf(c.name, sizeof(c.name), "%s", name);
    }
    if (cf_call(p, &c, &r) != 0) {
        return NXL_ERR_UNKNOWN;
    }
    return (nxl_status_t)r.status;
}

/* cf_pblob gets the peer's metadata of a kind (malloc'ed copy). */
static int
cf_pblob(cf_peer *p, int kind, int region, void **data_p, size_t *len_p)
{
    cf_cmd c = cf_cmd_of(CF_OP_MD_GET);
    cf_rep r;
    void *b = NULL;

    c.arg = kind;
    c.region = region;
    if (cf_send(p, &c) != 0 || cf_recv(p, &r, &b) != 0) {
        return 1;
    }
    if (r.status != NXL_OK || b == NULL) {
        free(b);
        XT_FAILF("peer metadata (kind %d): %s (%s)", kind,
                 nxl_status_name((nxl_status_t)r.status), r.err);
    }
    *data_p = b;
    *len_p = r.blob_len;
    return 0;
}

/* cf_pnone: no further notification reaches the peer within ms. */
static int
cf_pnone(cf_peer *p, int ms)
{
    cf_cmd c = cf_cmd_of(CF_OP_NOTIF_NONE);
    cf_rep r;

    c.arg = ms;
    if (cf_call(p, &c, &r) != 0) {
        return 1;
    }
    if (r.status != 0) {
        XT_FAILF("peer got an unexpected notification from \"%s\" "
                 "(%u bytes \"%.*s\") or failed: %s",
                 r.name, r.msg_len,
                 (int)(r.msg_len < CF_MSG_MAX ? r.msg_len : CF_MSG_MAX),
                 r.msg, r.err);
    }
    return 0;
}

/* cf_pstop ends the peer cleanly: destroy, free and exit 0 (under ASan
 * the leak checker runs in the peer too). */
static int
cf_pstop(cf_peer *p)
{
    cf_cmd c = cf_cmd_of(CF_OP_EXIT);
    cf_rep r;
    int ws = 0;

    if (p->pid <= 0) {
        return 0;
    }
    if (cf_send(p, &c) != 0 || cf_recv(p, &r, NULL) != 0) {
        return 1;
    }
    while (waitpid(p->pid, &ws, 0) < 0 && errno == EINTR) {
    }
    close(p->cmd_fd);
    close(p->rep_fd);
    p->pid = -1;
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
        XT_FAILF("peer %s exited with status 0x%x", p->name, ws);
    }
    return 0;
}

/* cf_pkill kills the peer with SIGKILL and reaps it. */
static void
cf_pkill(cf_peer *p)
{
    int ws;

    if (p->pid <= 0) {
        return;
    }
    kill(p->pid, SIGKILL);
    while (waitpid(p->pid, &ws, 0) < 0 && errno == EINTR) {
    }
    close(p->cmd_fd);
    close(p->rep_fd);
    p->pid = -1;
}

/* cf_fetch loads the peer's metadata through its side channel. */
static nxl_status_t
cf_fetch(nxl_agent_t *a, const cf_peer *p)
{
    nxl_opts_t o;

    cf_opts_peer(&o, p->hello.port);
    return nxl_md_fetch(a, p->name, &o);
}

/* cf_setup: the common start of a case: a peer with a heap region (and
 * optionally a shared one), then this process's agent "main" with the
 * peer's metadata loaded. */
static int
cf_setup(cf_peer *p, uint64_t heap, uint64_t shared, unsigned flags,
         nxl_agent_t **a_p)
{
    cf_peer_cfg pc = {NULL, heap, shared, 0};

    if (cf_spawn(p, &pc) != 0) {
        return 1;
    }
    XT_ASSERT_OK(cf_agent("main", flags, a_p));
    XT_ASSERT_OK(cf_fetch(*a_p, p));
    return 0;
}

/* cf_unused_port returns a loopback port nobody listens on. */
static uint16_t
cf_unused_port(void)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    uint16_t port = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0) {
        return port;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0) {
        port = ntohs(sa.sin_port);
    }
    close(fd);
    return port;
}

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

/* cf_rng is a small deterministic generator for shuffles. */
static uint32_t
cf_rng(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

static void
cf_shuffle(size_t *v, size_t n, uint64_t *s)
{
    size_t i, j, t;

    for (i = 0; i < n; i++) {
        v[i] = i;
    }
    for (i = n; i > 1; i--) {
        j = cf_rng(s) % i;
        t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* ---------------------------------------------------------------------- */
/* Target memory: where the "remote" side of a case lives.
 *
 * CF_T_PEER: the heap region of a forked peer, reached under the name
 *   "peer" after a metadata fetch: backends with NXL_CAP_REMOTE.
 * CF_T_FILE: a temporary file whose bytes [CF_TFILE_BASE, + len) are
 *   registered as NXL_FILE {CF_TFILE_BASE, len, fd} in the case's agents
 *   and reached under the agent's own name (loopback): local storage
 *   backends (NXL_CAP_LOCAL without REMOTE, memory kinds DRAM and FILE,
 *   e.g. POSIX). Descriptor addr = file offset, dev_id = fd; the range
 *   does not start at offset 0, so an offset taken relative to the
 *   region instead of the file shows. The file is unlinked as soon as it
 *   is open.
 * CF_T_MEM: a DRAM buffer of this process registered with the agent and
 *   reached under its own name (t_loopback of transport backends).
 * A case body uses only cf_t* calls on its target, so the same contract
 * is checked on a peer's memory and on a file. */
typedef enum { CF_T_PEER, CF_T_FILE, CF_T_MEM } cf_tkind;

typedef struct {
    cf_tkind kind;
    cf_peer peer;  /* PEER */
    int region;    /* PEER: which region of the peer (CF_REG_*) */
    int fd;        /* FILE, else -1 */
    uint8_t *mem;  /* MEM */
    uint64_t len;  /* FILE, MEM: the registered length */
} cf_tgt;

#define CF_TCHUNK CF_MIB
#define CF_TFILE_BASE ((uint64_t)12288)

/* cf_file_tgt: the backend under test is a local storage backend, so its
 * cases target a FILE. */
static bool
cf_file_tgt(void)
{
    nxl_plugin_info_t i;

    return nxl_plugin_info(cf_be(), &i) == NXL_OK &&
           (i.caps & NXL_CAP_LOCAL) && !(i.caps & NXL_CAP_REMOTE) &&
           (i.mem_kinds & (1u << NXL_FILE)) &&
           (i.mem_kinds & (1u << NXL_DRAM));
}

/* CF_NEED_TGT skips a case unless it has a target: a local storage
 * backend (FILE target) runs it, any other backend needs REMOTE (peer
 * target) plus the capabilities want. */
#define CF_NEED_TGT(want)                                                     \
    do {                                                                      \
        if (!cf_file_tgt())                                                   \
            CF_NEED_WHY(NXL_CAP_REMOTE | (want),                              \
                        "the case needs a peer process (or FILE memory "      \
                        "for a local backend)");                              \
    } while (0)

/* cf_has_cap: the backend under test has every capability of want. */
static bool
cf_has_cap(uint32_t want)
{
    nxl_plugin_info_t i;

    return nxl_plugin_info(cf_be(), &i) == NXL_OK &&
           (i.caps & want) == want;
}

/* cf_tmpfile opens a new, already unlinked file of len bytes (a hole)
 * under $TMPDIR or /tmp; -1 with errno on failure. */
static int
cf_tmpfile(uint64_t len)
{
    const char *dir = getenv("TMPDIR");
    char path[256];
    int fd;

    snprintf(path, sizeof(path), "%s/nxl-conf-XXXXXX",
             dir != NULL && dir[0] != '\0' ? dir : "/tmp");
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    unlink(path);
    if (ftruncate(fd, (off_t)len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* cf_tinit makes a local target of kind FILE or MEM with len bytes. */
static int
cf_tinit(cf_tgt *t, cf_tkind kind, uint64_t len)
{
    memset(t, 0, sizeof(*t));
    t->kind = kind;
    t->fd = -1;
    t->len = len;
    if (kind == CF_T_FILE) {
        t->fd = cf_tmpfile(CF_TFILE_BASE + len);
        if (t->fd < 0) {
            XT_FAILF("temporary file of %" PRIu64 " bytes: %s", len,
                     strerror(errno));
        }
    } else if (kind == CF_T_MEM) {
        t->mem = cf_map(len);
        XT_ASSERT(t->mem != NULL);
    }
    return 0;
}

/* cf_tregister registers a FILE or MEM target with agent a. */
static nxl_status_t
cf_tregister(const cf_tgt *t, nxl_agent_t *a)
{
    nxl_desc_t d = {CF_TFILE_BASE, t->len, (uint64_t)t->fd};
    nxl_dlist_t l = {NXL_FILE, &d, 1};

    if (t->kind == CF_T_MEM) {
        return cf_reg(a, t->mem, t->len);
    }
    return nxl_mem_register(a, &l, NULL);
}

/* cf_tattach makes the target reachable from agent a: the peer's
 * metadata fetched, or the file/buffer registered with a. */
static nxl_status_t
cf_tattach(cf_tgt *t, nxl_agent_t *a)
{
    if (t->kind == CF_T_PEER) {
        return cf_fetch(a, &t->peer);
    }
    return cf_tregister(t, a);
}

/* cf_tsetup_sh: the common start of a case on a target of len bytes: a
 * peer (with a shared region of shared bytes) and agent "main" with its
 * metadata (cf_setup), or agent "main" (no listener: nothing to exchange)
 * with a registered FILE target. */
static int
cf_tsetup_sh(cf_tgt *t, uint64_t len, uint64_t shared, unsigned flags,
             nxl_agent_t **a_p)
{
    if (!cf_file_tgt()) {
        memset(t, 0, sizeof(*t));
        t->kind = CF_T_PEER;
        t->region = CF_REG_HEAP;
        t->fd = -1;
        return cf_setup(&t->peer, len, shared, flags, a_p);
    }
    XT_ASSERT(cf_tinit(t, CF_T_FILE, len) == 0);
    XT_ASSERT_OK(cf_agent("main", flags | CF_NO_LISTEN, a_p));
    XT_ASSERT_OK(cf_tattach(t, *a_p));
    return 0;
}

static int
cf_tsetup(cf_tgt *t, uint64_t len, unsigned flags, nxl_agent_t **a_p)
{
    return cf_tsetup_sh(t, len, 0, flags, a_p);
}

/* cf_tstop ends the target after the case's agents are destroyed: the
 * peer stops cleanly, the file is closed, the buffer unmapped. */
static int
cf_tstop(cf_tgt *t)
{
    if (t->kind == CF_T_PEER) {
        return cf_pstop(&t->peer);
    }
    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
    cf_unmap(t->mem, t->len);
    t->mem = NULL;
    return 0;
}

/* cf_tname is the agent name under which a reaches the target. */
static const char *
cf_tname(const cf_tgt *t, nxl_agent_t *a)
{
    return t->kind == CF_T_PEER ? "peer" : nxl_agent_name(a);
}

static uint64_t
cf_taddr(const cf_tgt *t, uint64_t off)
{
    switch (t->kind) {
    case CF_T_PEER:
        return cf_raddr(&t->peer, t->region, off);
    case CF_T_MEM:
        return (uintptr_t)t->mem + off;
    default:
        return CF_TFILE_BASE + off;
    }
}

static uint64_t
cf_tdev(const cf_tgt *t)
{
    return t->kind == CF_T_FILE ? (uint64_t)t->fd : 0;
}

/* cf_tdesc describes [off, off + len) of the target. */
static nxl_desc_t
cf_tdesc(const cf_tgt *t, uint64_t off, uint64_t len)
{
    nxl_desc_t d = {cf_taddr(t, off), len, cf_tdev(t)};

    return d;
}

static nxl_dlist_t
cf_tdl(const cf_tgt *t, const nxl_desc_t *d, size_t n)
{
    nxl_dlist_t l = {t->kind == CF_T_FILE ? NXL_FILE : NXL_DRAM, d, n};

    return l;
}

/* cf_txfer1 builds a one-descriptor transfer between local DRAM at laddr
 * and [roff, roff + len) of the target. */
static nxl_status_t
cf_txfer1(nxl_agent_t *a, nxl_op_t op, uint64_t laddr, const cf_tgt *t,
          uint64_t roff, uint64_t len, const nxl_opts_t *opts,
          nxl_xfer_t **x_p)
{
    nxl_desc_t ld = {laddr, len, 0}, rd = cf_tdesc(t, roff, len);
    nxl_dlist_t ll = cf_dl(&ld, 1), rl = cf_tdl(t, &rd, 1);

    return nxl_xfer_create(a, op, &ll, &rl, cf_tname(t, a), opts, x_p);
}

/* cf_tio reads (wr = 0) or writes len bytes at off of the FILE target
 * (file offset CF_TFILE_BASE + off). */
static int
cf_tio(const cf_tgt *t, int wr, uint8_t *buf, uint64_t len, uint64_t off)
{
    ssize_t n;

    off += CF_TFILE_BASE;
    while (len > 0) {
        n = wr ? pwrite(t->fd, buf, (size_t)len, (off_t)off)
               : pread(t->fd, buf, (size_t)len, (off_t)off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            XT_FAILF("%s of %" PRIu64 " bytes at offset %" PRIu64
                     " of the target file: %s",
                     wr ? "pwrite" : "pread", len, off,
                     n < 0 ? strerror(errno) : "end of file");
        }
        buf += n;
        len -= (uint64_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* cf_tfill writes pattern seed to [off, off + len) of the target. */
static int
cf_tfill(cf_tgt *t, uint64_t off, uint64_t len, uint32_t seed)
{
    uint8_t *b;
    uint64_t k, n;

    if (t->kind == CF_T_PEER) {
        return cf_pfill(&t->peer, t->region, off, len, seed);
    }
    XT_ASSERT(off <= t->len && len <= t->len - off);
    if (t->kind == CF_T_MEM) {
        cf_fill(t->mem + off, len, seed, off);
        return 0;
    }
    b = malloc(CF_TCHUNK);
    XT_ASSERT(b != NULL);
    for (k = 0; k < len; k += n) {
        n = len - k < CF_TCHUNK ? len - k : CF_TCHUNK;
        cf_fill(b, n, seed, off + k);
        if (cf_tio(t, 1, b, n, off + k) != 0) {
            free(b);
            return 1;
        }
    }
    free(b);
    return 0;
}

/* cf_tcheck: [off, off + len) of the target holds pattern seed. */
static int
cf_tcheck(cf_tgt *t, uint64_t off, uint64_t len, uint32_t seed,
          const char *what)
{
    uint8_t *b;
    uint64_t k, n, bad;

    if (t->kind == CF_T_PEER) {
        return cf_pcheck(&t->peer, t->region, off, len, seed, what);
    }
    XT_ASSERT(off <= t->len && len <= t->len - off);
    if (t->kind == CF_T_MEM) {
        return cf_check_local(t->mem + off, len, seed, off, what);
    }
    b = malloc(CF_TCHUNK);
    XT_ASSERT(b != NULL);
    for (k = 0; k < len; k += n) {
        n = len - k < CF_TCHUNK ? len - k : CF_TCHUNK;
        if (cf_tio(t, 0, b, n, off + k) != 0) {
            free(b);
            return 1;
        }
        bad = cf_find_bad(b, n, seed, off + k);
        if (bad != n) {
            uint8_t got = b[bad];

            free(b);
            XT_FAILF("%s: file data wrong at [%" PRIu64 "+%" PRIu64
                     "): byte %" PRIu64 " is 0x%02x, want 0x%02x",
                     what, off, len, k + bad, got,
                     cf_pat(seed, off + k + bad));
        }
    }
    free(b);
    return 0;
}

/* cf_tcheck_strided: count slots of stride bytes from offset 0 each hold
 * seed in their first len bytes and seed2 in the rest (the gaps). */
static int
cf_tcheck_strided(cf_tgt *t, uint64_t len, uint64_t stride, uint64_t count,
                  uint32_t seed, uint32_t seed2, const char *what)
{
    cf_cmd c;
    cf_rep r;
    uint8_t *b;
    uint64_t k, bad;

    if (t->kind == CF_T_PEER) {
        c = cf_cmd_of(CF_OP_CHECK_STRIDED);
        c.region = t->region;
        c.len = len;
        c.stride = stride;
        c.count = count;
        c.seed = seed;
        c.seed2 = seed2;
        if (cf_call(&t->peer, &c, &r) != 0) {
            return 1;
        }
        if (r.status != 0) {
            XT_FAILF("%s: peer data wrong: %s", what, r.err);
        }
        return 0;
    }
    XT_ASSERT(stride >= len && count <= t->len / stride);
    b = t->mem;
    if (t->kind == CF_T_FILE) {
        b = malloc(stride * count);
        XT_ASSERT(b != NULL);
        if (cf_tio(t, 0, b, stride * count, 0) != 0) {
            free(b);
            return 1;
        }
    }
    for (k = 0; k < count; k++) {
        uint64_t o0 = k * stride;

        bad = cf_find_bad(b + o0, len, seed, o0);
        if (bad == len) {
            bad = len + cf_find_bad(b + o0 + len, stride - len, seed2,
                                    o0 + len);
        }
        if (bad != stride) {
            uint8_t got = b[o0 + bad];

            if (t->kind == CF_T_FILE) {
                free(b);
            }
            XT_FAILF("%s: slot %" PRIu64 " byte %" PRIu64
                     " is 0x%02x, want 0x%02x",
                     what, k, bad, got,
                     cf_pat(bad < len ? seed : seed2, o0 + bad));
        }
    }
    if (t->kind == CF_T_FILE) {
        free(b);
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Cases. */

/* READ and WRITE move exactly the described bytes at 1 B, 4 KiB, 1 MiB and
 * 64 MiB (NIXL TestTransfer; nxl.h: READ pulls remote into local, WRITE
 * pushes local to remote): data checked on the receiving side, guard
 * bytes on both sides untouched, unaligned offsets, and the transfer runs
 * on the backend under test (nxl_xfer_backend). The target is the peer's
 * memory or a FILE (cf_tgt), here and in every case using CF_NEED_TGT. */
static int
t_sizes(void)
{
    static const uint64_t sizes[] = {1, 4 * CF_KIB, CF_MIB, 64 * CF_MIB};
    const uint64_t roff = 4096 + 3, loff = 4096 + 1, guard = 64;
    const uint64_t buflen = 64 * CF_MIB + 3 * 4096;
    const uint32_t bg = 777;
    nxl_agent_t *a = NULL;
    nxl_backend_t *be = NULL;
    nxl_xfer_t *x = NULL;
    uint8_t *loc;
    cf_tgt t;
    char what[64];
    size_t i;
    int op;
    uint32_t seed = 1;

    CF_NEED_TGT(0);
    XT_ASSERT(cf_tsetup(&t, buflen, 0, &a) == 0);
    loc = cf_map(buflen);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, buflen));
    XT_ASSERT(cf_tfill(&t, 0, buflen, bg) == 0);

    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t n = sizes[i];

        for (op = NXL_READ; op <= NXL_WRITE; op++) {
            seed++;
            snprintf(what, sizeof(what), "%s of %" PRIu64 " bytes",
                     op == NXL_READ ? "READ" : "WRITE", n);
            memset(loc + loff - guard, 0xa5, n + 2 * guard);
            if (op == NXL_WRITE) {
                cf_fill(loc + loff, n, seed, roff);
            } else {
                XT_ASSERT(cf_tfill(&t, roff, n, seed) == 0);
            }
            XT_ASSERT_OK(cf_txfer1(a, (nxl_op_t)op, (uintptr_t)loc + loff,
                                   &t, roff, n, NULL, &x));
            XT_ASSERT_OK(nxl_xfer_backend(x, &be));
            XT_ASSERT(be != NULL);
            XT_ASSERT(strcasecmp(nxl_backend_name(be), cf_be()) == 0);
            XT_ASSERT_OK(cf_run(x, NULL));
            XT_ASSERT_OK(nxl_xfer_status(x));
            nxl_xfer_release(x);
            x = NULL;
            if (op == NXL_WRITE) {
                XT_ASSERT(cf_tcheck(&t, roff, n, seed, what) == 0);
            } else {
                XT_ASSERT(cf_check_local(loc + loff, n, seed, roff, what) ==
                          0);
            }
            /* Nothing outside the described range moved. */
            XT_ASSERT(cf_tcheck(&t, roff - guard, guard, bg, what) == 0);
            XT_ASSERT(cf_tcheck(&t, roff + n, guard, bg, what) == 0);
            XT_ASSERT(cf_check_byte(loc + loff - guard, guard, 0xa5, what) ==
                      0);
            XT_ASSERT(cf_check_byte(loc + loff + n, guard, 0xa5, what) == 0);
            /* Sizes grow, so later guards lie beyond every earlier
             * write and still hold the background. */
        }
    }
    nxl_agent_destroy(a);
    cf_unmap(loc, buflen);
    return cf_tstop(&t);
}

/* Many descriptors per request: 1000 x 4 KiB, scattered (gaps on both
 * sides) and in random order, WRITE through nxl_xfer_create and READ
 * through prepared lists (NIXL TestTransfer with 1000-descriptor
 * requests); every slot lands where its descriptor says, gaps untouched. */
static int
t_many_descs(void)
{
    enum { N = 1000 };
    const uint64_t len = 4096, slot = 8192, buflen = N * slot;
    const uint32_t bg = 91, seed_w = 92, seed_r = 93;
    static nxl_desc_t ld[N], rd[N];
    static size_t pl[N], pr[N], idx[N];
    nxl_prepped_t *lp = NULL, *rp = NULL;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    nxl_dlist_t ll, rl;
    nxl_opts_t o;
    cf_tgt t;
    uint8_t *loc;
    uint64_t rng = 12345;
    size_t i;

    CF_NEED_TGT(0);
    XT_ASSERT(cf_tsetup(&t, buflen, 0, &a) == 0);
    loc = cf_map(buflen);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, buflen));
    cf_shuffle(pl, N, &rng);
    cf_shuffle(pr, N, &rng);
    for (i = 0; i < N; i++) {
        /* Local slots start 512 bytes in; remote slots at their start. */
        ld[i] = (nxl_desc_t){(uintptr_t)loc + pl[i] * slot + 512, len, 0};
        rd[i] = cf_tdesc(&t, pr[i] * slot, len);
        cf_fill(loc + pl[i] * slot + 512, len, seed_w, pr[i] * slot);
        idx[i] = i;
    }
    ll = cf_dl(ld, N);
    rl = cf_tdl(&t, rd, N);

    /* WRITE, one-shot. */
    XT_ASSERT(cf_tfill(&t, 0, buflen, bg) == 0);
    XT_ASSERT_OK(nxl_xfer_create(a, NXL_WRITE, &ll, &rl, cf_tname(&t, a), NULL,
                                 &x));
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    XT_ASSERT(cf_tcheck_strided(&t, len, slot, N, seed_w, bg,
                                "scattered WRITE") == 0);

    /* READ, prepared lists, with and without merging. */
    XT_ASSERT_OK(nxl_dlist_prep(a, NULL, &ll, NULL, &lp));
    XT_ASSERT_OK(nxl_dlist_prep(a, cf_tname(&t, a), &rl, NULL, &rp));
    for (int pass = 0; pass < 2; pass++) {
        XT_ASSERT(cf_tfill(&t, 0, buflen, seed_r + pass) == 0);
        memset(loc, 0xa5, buflen);
        nxl_opts_init(&o);
        o.skip_merge = pass;
        XT_ASSERT_OK(nxl_xfer_make(a, NXL_READ, lp, idx, rp, idx, N, &o, &x));
        XT_ASSERT_OK(cf_run(x, NULL));
        nxl_xfer_release(x);
        for (i = 0; i < N; i++) {
            uint8_t *s = loc + pl[i] * slot;

            XT_ASSERT(cf_check_local(s + 512, len, seed_r + pass,
                                     pr[i] * slot, "scattered READ") == 0);
            XT_ASSERT(cf_check_byte(s, 512, 0xa5, "scattered READ") == 0);
            XT_ASSERT(cf_check_byte(s + 512 + len, slot - 512 - len, 0xa5,
                                    "scattered READ") == 0);
        }
    }
    nxl_dlist_release(lp);
    nxl_dlist_release(rp);
    nxl_agent_destroy(a);
    cf_unmap(loc, buflen);
    return cf_tstop(&t);
}

/* Reposting one request (NIXL §1.4 postXferReq, §7.5): a repost while the
 * request is active is NXL_ERR_REPOST_ACTIVE (with a message) and does not
 * disturb the running transfer; a repost after completion is the
 * steady-state loop and moves the buffer's current contents each time. */
static int
t_repost(void)
{
    const uint64_t big = 16 * CF_MIB, small = CF_MIB;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    nxl_status_t st, st2;
    uint8_t *loc;
    cf_tgt t;
    int k, in_prog = 0, active = 0;

    CF_NEED_TGT(0);
    XT_ASSERT(cf_tsetup(&t, big, 0, &a) == 0);
    loc = cf_map(big);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, big));

    XT_ASSERT_OK(cf_txfer1(a, NXL_WRITE, (uintptr_t)loc, &t, 0, big, NULL,
                           &x));
    for (k = 0; k < 5; k++) {
        cf_fill(loc, big, 100 + (uint32_t)k, 0);
        st = nxl_xfer_post(x, NULL);
        if (st == NXL_IN_PROG) {
            in_prog++;
            st2 = nxl_xfer_post(x, NULL);
            if (st2 == NXL_ERR_REPOST_ACTIVE) {
                active++;
                XT_ASSERT(nxl_last_error()[0] != '\0');
            } else if (st2 != NXL_OK && st2 != NXL_IN_PROG) {
                XT_FAILF("repost while active -> %s (%s)",
                         nxl_status_name(st2), nxl_last_error());
            }
            st = nxl_xfer_wait(x, CF_XFER_TIMEOUT_MS);
        }
        XT_ASSERT_OK(st);
        XT_ASSERT_OK(nxl_xfer_status(x));
        XT_ASSERT(cf_tcheck(&t, 0, big, 100 + (uint32_t)k, "repost WRITE") ==
                  0);
    }
    if (in_prog > 0 && active == 0) {
        XT_FAILF("%d posts were in progress but an immediate repost never "
                 "returned NXL_ERR_REPOST_ACTIVE", in_prog);
    }
    if (in_prog == 0) {
        printf("  note: every 16 MiB post completed inline; "
               "REPOST_ACTIVE not reachable\n");
    }
    nxl_xfer_release(x);

    /* READ loop: the peer changes its data, each repost picks it up. */
    XT_ASSERT_OK(cf_txfer1(a, NXL_READ, (uintptr_t)loc, &t, 4096, small, NULL,
                           &x));
    for (k = 0; k < 4; k++) {
        XT_ASSERT(cf_tfill(&t, 4096, small, 200 + (uint32_t)k) == 0);
        XT_ASSERT_OK(cf_run(x, NULL));
        XT_ASSERT(cf_check_local(loc, small, 200 + (uint32_t)k, 4096,
                                 "repost READ") == 0);
    }
    nxl_xfer_release(x);
    nxl_agent_destroy(a);
    cf_unmap(loc, big);
    return cf_tstop(&t);
}

/* cf_notif_post: post x with opts while the peer waits for one
 * notification and checks [roff, roff + len) for seed the moment it sees
 * it; the notification must come from "main" with message msg. */
static int
cf_notif_post(cf_peer *p, nxl_xfer_t *x, const nxl_opts_t *opts,
              uint64_t roff, uint64_t len, uint32_t seed, const char *msg,
              size_t msg_len)
{
    cf_cmd c = cf_cmd_of(CF_OP_NOTIF_WAIT);
    cf_rep r;

    c.arg = 10000;
    c.region = CF_REG_HEAP;
    c.off = roff;
    c.len = len;
    c.seed = seed;
    if (cf_send(p, &c) != 0) {
        return 1;
    }
    XT_ASSERT_OK(cf_run(x, opts));
    if (cf_recv(p, &r, NULL) != 0) {
        return 1;
    }
    if (r.status != NXL_OK) {
        XT_FAILF("peer got no notification \"%s\": %s (%s)", msg,
                 nxl_status_name((nxl_status_t)r.status), r.err);
    }
    if (strcmp(r.name, "main") != 0 || r.msg_len != msg_len ||
        (msg_len > 0 && memcmp(r.msg, msg, msg_len) != 0)) {
        XT_FAILF("notification from \"%s\" with %u bytes \"%.*s\"; want "
                 "from \"main\" with %zu bytes \"%s\"",
                 r.name, r.msg_len,
                 (int)(r.msg_len < CF_MSG_MAX ? r.msg_len : CF_MSG_MAX),
                 r.msg, msg_len, msg);
    }
    if (r.value2 != 1) {
        XT_FAILF("notification \"%s\" arrived before the data (byte %" PRIu64
                 " wrong)", msg, r.value);
    }
    return 0;
}

/* A notification attached to a transfer (NIXL §7.6): delivered to the
 * target under the initiator's name, after the data is visible (the peer
 * checks the data the moment it sees it), exactly one per post over
 * several posts, an empty message is legal; post opts replace the
 * attached message (NULL keeps it, opts without a notification clears
 * it, as NIXL's extra params on post); READ and xfer_make carry one too. */
static int
t_notif_xfer(void)
{
    const uint64_t len = CF_MIB;
    nxl_prepped_t *lp = NULL, *rp = NULL;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    nxl_desc_t ld, rd;
    nxl_dlist_t ll, rl;
    nxl_opts_t o, none;
    uint8_t *loc;
    cf_peer p;
    size_t zero = 0;

    CF_NEED_WHY(NXL_CAP_REMOTE | NXL_CAP_NOTIF,
                "notifications attached to transfers reach a peer process");
    XT_ASSERT(cf_setup(&p, len, 0, 0, &a) == 0);
    loc = cf_map(len);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, len));

    cf_opts_notif(&o, "note-0");
    XT_ASSERT_OK(cf_xfer1(a, NXL_WRITE, (uintptr_t)loc,
                          cf_raddr(&p, CF_REG_HEAP, 0), len, "peer", &o, &x));
    /* Post 0 carries the creation-time message. */
    cf_fill(loc, len, 300, 0);
    XT_ASSERT(cf_notif_post(&p, x, NULL, 0, len, 300, "note-0", 6) == 0);
    /* Post 1 replaces it with an empty one. */
    cf_fill(loc, len, 301, 0);
    cf_opts_notif(&o, "");
    XT_ASSERT(cf_notif_post(&p, x, &o, 0, len, 301, "", 0) == 0);
    /* Post 2 keeps the empty one. */
    cf_fill(loc, len, 302, 0);
    XT_ASSERT(cf_notif_post(&p, x, NULL, 0, len, 302, "", 0) == 0);
    /* Post 3 replaces it again. */
    cf_fill(loc, len, 303, 0);
    cf_opts_notif(&o, "note-3, a longer message");
    XT_ASSERT(cf_notif_post(&p, x, &o, 0, len, 303,
                            "note-3, a longer message", 24) == 0);
    /* Exactly one per post: nothing else is pending. */
    XT_ASSERT(cf_pnone(&p, 300) == 0);
    /* Opts without a notification clear it. */
    cf_fill(loc, len, 304, 0);
    nxl_opts_init(&none);
    XT_ASSERT_OK(cf_run(x, &none));
    XT_ASSERT(cf_pcheck(&p, CF_REG_HEAP, 0, len, 304, "WRITE") == 0);
    XT_ASSERT(cf_pnone(&p, 300) == 0);
    nxl_xfer_release(x);

    /* READ with a notification: the target is told too. */
    XT_ASSERT(cf_pfill(&p, CF_REG_HEAP, 0, len, 310) == 0);
    cf_opts_notif(&o, "rd");
    XT_ASSERT_OK(cf_xfer1(a, NXL_READ, (uintptr_t)loc,
                          cf_raddr(&p, CF_REG_HEAP, 0), len, "peer", &o, &x));
    XT_ASSERT(cf_notif_post(&p, x, NULL, 0, 0, 0, "rd", 2) == 0);
    XT_ASSERT(cf_check_local(loc, len, 310, 0, "READ") == 0);
    nxl_xfer_release(x);

    /* A prepared-list transfer made with a notification. */
    ld = (nxl_desc_t){(uintptr_t)loc, len, 0};
    rd = (nxl_desc_t){cf_raddr(&p, CF_REG_HEAP, 0), len, 0};
    ll = cf_dl(&ld, 1);
    rl = cf_dl(&rd, 1);
    XT_ASSERT_OK(nxl_dlist_prep(a, NULL, &ll, NULL, &lp));
    XT_ASSERT_OK(nxl_dlist_prep(a, "peer", &rl, NULL, &rp));
    cf_opts_notif(&o, "made");
    XT_ASSERT_OK(nxl_xfer_make(a, NXL_WRITE, lp, &zero, rp, &zero, 1, &o, &x));
    cf_fill(loc, len, 320, 0);
    XT_ASSERT(cf_notif_post(&p, x, NULL, 0, len, 320, "made", 4) == 0);
    XT_ASSERT(cf_pnone(&p, 300) == 0);
    nxl_xfer_release(x);
    nxl_dlist_release(lp);
    nxl_dlist_release(rp);

    nxl_agent_destroy(a);
    cf_unmap(loc, len);
    return cf_pstop(&p);
}

/* Standalone notifications (NIXL NotificationOnly, §1.4 genNotif): each
 * reaches the other agent exactly once under the sender's name, empty
 * ones included, in both directions (the peer sends back after loading
 * our metadata through our side channel). */
static int
t_notif_standalone(void)
{
    enum { M = 20 };
    nxl_agent_t *a = NULL;
    cf_cmd c;
    cf_rep r;
    cf_peer p;
    cf_nq *q;
    cf_notif n;
    char msg[CF_MSG_MAX];
    int seen[M], i, k;

    CF_NEED_WHY(NXL_CAP_REMOTE | NXL_CAP_NOTIF,
                "standalone notifications go between two processes' agents");
    XT_ASSERT(cf_setup(&p, 4096, 0, 0, &a) == 0);
    q = calloc(1, sizeof(*q));
    XT_ASSERT(q != NULL);

    c = cf_cmd_of(CF_OP_NOTIF_WAIT);
    c.arg = 10000;
    XT_ASSERT(cf_send(&p, &c) == 0);
    XT_ASSERT_OK(nxl_notif_send(a, "peer", "hello", 5, NULL));
    XT_ASSERT(cf_recv(&p, &r, NULL) == 0);
    CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
    XT_ASSERT_STR(r.name, "main");
    XT_ASSERT(r.msg_len == 5 && memcmp(r.msg, "hello", 5) == 0);

    /* An empty message is legal. */
    XT_ASSERT(cf_send(&p, &c) == 0);
    XT_ASSERT_OK(nxl_notif_send(a, "peer", "", 0, NULL));
    XT_ASSERT(cf_recv(&p, &r, NULL) == 0);
    CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
    XT_ASSERT_STR(r.name, "main");
    XT_ASSERT_EQ(r.msg_len, 0);

    /* A burst: every message exactly once. */
    for (i = 0; i < M; i++) {
        snprintf(msg, sizeof(msg), "burst-%d", i);
        XT_ASSERT_OK(nxl_notif_send(a, "peer", msg, strlen(msg), NULL));
        seen[i] = 0;
    }
    for (i = 0; i < M; i++) {
        XT_ASSERT(cf_call(&p, &c, &r) == 0);
        CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
        XT_ASSERT_STR(r.name, "main");
        if (r.msg_len < 7 || r.msg_len >= CF_MSG_MAX ||
            memcmp(r.msg, "burst-", 6) != 0) {
            XT_FAILF("unexpected burst message (%u bytes)", r.msg_len);
        }
        r.msg[r.msg_len] = '\0';
        k = atoi(r.msg + 6);
        XT_ASSERT(k >= 0 && k < M);
        XT_ASSERT_EQ(seen[k], 0);
        seen[k] = 1;
    }
    XT_ASSERT(cf_pnone(&p, 300) == 0);

    /* The other way: the peer loads us and notifies us. */
    CF_ASSERT_PEER(&p, cf_pmd(&p, CF_OP_MD_FETCH, nxl_agent_listen_port(a),
                              "main"),
                   NXL_OK);
    c = cf_cmd_of(CF_OP_NOTIF_SEND);
    snprintf(c.name, sizeof(c.name), "main");
    memcpy(c.msg, "back", 4);
    c.msg_len = 4;
    XT_ASSERT(cf_call(&p, &c, &r) == 0);
    CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
    c.msg_len = 0;
    XT_ASSERT(cf_call(&p, &c, &r) == 0);
    CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
    XT_ASSERT_OK(cf_nq_next(a, q, 10000, &n));
    if (!cf_notif_is(&n, "peer", "back", 4)) {
        XT_FAILF("got \"%s\" from \"%s\", want \"back\" from \"peer\"", n.msg,
                 n.agent);
    }
    XT_ASSERT_OK(cf_nq_next(a, q, 10000, &n));
    XT_ASSERT(cf_notif_is(&n, "peer", "", 0));
    XT_ASSERT_EQ(cf_nq_next(a, q, 300, &n), NXL_ERR_TIMEOUT);

    free(q);
    nxl_agent_destroy(a);
    return cf_pstop(&p);
}

/* A notification to the agent's own name (NIXL SelfNotification, §7.7)
 * arrives under its own name, without any metadata exchange; empty too. */
static int
t_notif_self(void)
{
    nxl_agent_t *a = NULL;
    cf_nq *q;
    cf_notif n;

    CF_NEED_WHY(NXL_CAP_LOCAL | NXL_CAP_NOTIF,
                "the case sends notifications to the agent's own name");
    q = calloc(1, sizeof(*q));
    XT_ASSERT(q != NULL);
    XT_ASSERT_OK(cf_agent("main", CF_NO_LISTEN, &a));
    XT_ASSERT_OK(nxl_notif_send(a, "main", "self", 4, NULL));
    XT_ASSERT_OK(nxl_notif_send(a, "main", "", 0, NULL));
    XT_ASSERT_OK(cf_nq_next(a, q, 10000, &n));
    if (!cf_notif_is(&n, "main", "self", 4)) {
        XT_FAILF("got %zu bytes from \"%s\", want \"self\" from \"main\"",
                 n.len, n.agent);
    }
    XT_ASSERT_OK(cf_nq_next(a, q, 10000, &n));
    XT_ASSERT(cf_notif_is(&n, "main", "", 0));
    XT_ASSERT_EQ(cf_nq_next(a, q, 200, &n), NXL_ERR_TIMEOUT);
    nxl_agent_destroy(a);
    free(q);
    return 0;
}

/* Loopback (NIXL §7.4): a transfer to the agent's own name works without
 * any metadata exchange, one-shot and through prepared lists (index
 * remapping: the halves swapped), READ and WRITE, between two
 * registrations of this process: DRAM <-> DRAM, or DRAM <-> FILE for a
 * local storage backend (cf_tgt). */
static int
t_loopback(void)
{
    const uint64_t len = CF_MIB;
    nxl_prepped_t *lp = NULL, *rp = NULL;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    nxl_desc_t ld[2], rd[2];
    nxl_dlist_t ll, rl;
    uint8_t *src;
    size_t li[2] = {0, 1}, ri[2] = {1, 0};
    cf_tgt t;

    CF_NEED(NXL_CAP_LOCAL);
    src = cf_map(len);
    XT_ASSERT(src != NULL);
    XT_ASSERT(cf_tinit(&t, cf_file_tgt() ? CF_T_FILE : CF_T_MEM, len) == 0);
    XT_ASSERT_OK(cf_agent("main", CF_NO_LISTEN, &a));
    XT_ASSERT_OK(cf_reg(a, src, len));
    XT_ASSERT_OK(cf_tregister(&t, a));

    cf_fill(src, len, 400, 0);
    XT_ASSERT_OK(cf_txfer1(a, NXL_WRITE, (uintptr_t)src, &t, 0, len, NULL,
                           &x));
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    XT_ASSERT(cf_tcheck(&t, 0, len, 400, "loopback WRITE") == 0);

    XT_ASSERT(cf_tfill(&t, 0, len, 401) == 0);
    XT_ASSERT_OK(cf_txfer1(a, NXL_READ, (uintptr_t)src, &t, 0, len, NULL,
                           &x));
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    XT_ASSERT(cf_check_local(src, len, 401, 0, "loopback READ") == 0);

    /* Prepared lists, the halves swapped. */
    ld[0] = (nxl_desc_t){(uintptr_t)src, len / 2, 0};
    ld[1] = (nxl_desc_t){(uintptr_t)src + len / 2, len / 2, 0};
    rd[0] = cf_tdesc(&t, 0, len / 2);
    rd[1] = cf_tdesc(&t, len / 2, len / 2);
    ll = cf_dl(ld, 2);
    rl = cf_tdl(&t, rd, 2);
    XT_ASSERT_OK(nxl_dlist_prep(a, "", &ll, NULL, &lp));
    XT_ASSERT_OK(nxl_dlist_prep(a, "main", &rl, NULL, &rp));
    cf_fill(src, len / 2, 402, len / 2);
    cf_fill(src + len / 2, len / 2, 402, 0);
    XT_ASSERT_OK(nxl_xfer_make(a, NXL_WRITE, lp, li, rp, ri, 2, NULL, &x));
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    XT_ASSERT(cf_tcheck(&t, 0, len, 402, "loopback prepped WRITE") == 0);
    /* And back: target half i into source half 1 - i. */
    XT_ASSERT(cf_tfill(&t, 0, len, 403) == 0);
    memset(src, 0xa5, len);
    XT_ASSERT_OK(nxl_xfer_make(a, NXL_READ, lp, li, rp, ri, 2, NULL, &x));
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    XT_ASSERT(cf_check_local(src, len / 2, 403, len / 2,
                             "loopback prepped READ") == 0);
    XT_ASSERT(cf_check_local(src + len / 2, len / 2, 403, 0,
                             "loopback prepped READ") == 0);
    nxl_dlist_release(lp);
    nxl_dlist_release(rp);

    nxl_agent_destroy(a);
    cf_unmap(src, len);
    return cf_tstop(&t);
}

/* The side channel (NIXL remoteMDFromSocket, §4.4-4.5): fetch loads the
 * peer (a wrong expected name is MISMATCH); send makes the peer load us
 * (its nxl_md_check OK, our regions covered); invalidate_local makes it
 * forget us (NOT_FOUND); partial sends over the socket: conn info only,
 * then descriptors; an address with no listener fails IO/TIMEOUT; no
 * address is NOT_SUPPORTED. */
static int
t_sidechannel(void)
{
    const uint64_t len = 64 * CF_KIB;
    nxl_agent_t *a = NULL;
    nxl_desc_t d;
    nxl_dlist_t dl, empty = {NXL_DRAM, NULL, 0};
    nxl_opts_t o;
    uint8_t *loc;
    cf_peer p;

    CF_NEED_WHY(NXL_CAP_REMOTE,
                "metadata exchange over the side channel with a peer process");
    XT_ASSERT(cf_setup(&p, len, 0, 0, &a) == 0);
    loc = cf_map(len);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, len));
    d = (nxl_desc_t){(uintptr_t)loc, len, 0};
    dl = cf_dl(&d, 1);

    /* The fetch of cf_setup loaded the peer with its regions. */
    {
        nxl_desc_t rd = {cf_raddr(&p, CF_REG_HEAP, 0), len, 0};
        nxl_dlist_t rl = cf_dl(&rd, 1);

        XT_ASSERT_OK(nxl_md_check(a, "peer", &rl));
    }
    cf_opts_peer(&o, p.hello.port);
    XT_ASSERT_STATUS(nxl_md_fetch(a, "someone-else", &o), NXL_ERR_MISMATCH);

    /* send -> the peer has us; invalidate_local -> it has not. */
    CF_ASSERT_PEER(&p, cf_pmd_check(&p, "main", 0, 0), NXL_ERR_NOT_FOUND);
    XT_ASSERT_OK(nxl_md_send(a, &o));
    CF_ASSERT_PEER(&p, cf_pmd_check(&p, "main", 0, 0), NXL_OK);
    CF_ASSERT_PEER(&p, cf_pmd_check(&p, "main", (uintptr_t)loc, len),
                   NXL_OK);
    XT_ASSERT_OK(nxl_md_invalidate_local(a, &o));
    CF_ASSERT_PEER(&p, cf_pmd_check(&p, "main", 0, 0), NXL_ERR_NOT_FOUND);

    /* Partial over the socket: conn info only, then the descriptors. */
    XT_ASSERT_OK(nxl_md_send_partial(a, &empty, &o));
    CF_ASSERT_PEER(&p, cf_pmd_check(&p, "main", 0, 0), NXL_OK);
    CF_ASSERT_PEER(&p, cf_pmd_check(&p, "main", (uintptr_t)loc, len),
                   NXL_ERR_NOT_FOUND);
    XT_ASSERT_OK(nxl_md_send_partial(a, &dl, &o));
    CF_ASSERT_PEER(&p, cf_pmd_check(&p, "main", (uintptr_t)loc, len),
                   NXL_OK);
    XT_ASSERT_OK(nxl_md_invalidate_local(a, &o));
    CF_ASSERT_PEER(&p, cf_pmd_check(&p, "main", 0, 0), NXL_ERR_NOT_FOUND);

    /* The peer fetches us through our listener. */
    CF_ASSERT_PEER(&p, cf_pmd(&p, CF_OP_MD_FETCH, nxl_agent_listen_port(a),
                              "main"),
                   NXL_OK);
    CF_ASSERT_PEER(&p, cf_pmd_check(&p, "main", (uintptr_t)loc, len),
                   NXL_OK);

    /* No address at all; nobody listening at the address. */
    nxl_opts_init(&o);
    XT_ASSERT_STATUS(nxl_md_send(a, &o), NXL_ERR_NOT_SUPPORTED);
    cf_opts_peer(&o, cf_unused_port());
    o.timeout_ms = 2000;
    CF_ASSERT_ONE_OF(nxl_md_send(a, &o), NXL_ERR_IO, NXL_ERR_TIMEOUT);
    CF_ASSERT_ONE_OF(nxl_md_fetch(a, "peer", &o), NXL_ERR_IO,
                     NXL_ERR_TIMEOUT);
    CF_ASSERT_ONE_OF(nxl_md_invalidate_local(a, &o), NXL_ERR_IO,
                     NXL_ERR_TIMEOUT);

    nxl_agent_destroy(a);
    cf_unmap(loc, len);
    return cf_pstop(&p);
}

/* Invalidation (NIXL §4.5, §7.9): after nxl_md_invalidate, transfers,
 * prepared lists and new requests to that peer fail NOT_FOUND; a reload
 * works and the requests made before it stay stale (generation). */
static int
t_invalidate(void)
{
    const uint64_t len = 64 * CF_KIB;
    nxl_prepped_t *lp = NULL, *rp = NULL, *pp = NULL;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL, *xm = NULL, *x2 = NULL;
    nxl_desc_t ld, rd;
    nxl_dlist_t ll, rl;
    uint8_t *loc;
    cf_peer p;
    size_t zero = 0;

    CF_NEED_WHY(NXL_CAP_REMOTE | NXL_CAP_NOTIF,
                "invalidation of a loaded peer's metadata");
    XT_ASSERT(cf_setup(&p, len, 0, 0, &a) == 0);
    loc = cf_map(len);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, len));
    ld = (nxl_desc_t){(uintptr_t)loc, len, 0};
    rd = (nxl_desc_t){cf_raddr(&p, CF_REG_HEAP, 0), len, 0};
    ll = cf_dl(&ld, 1);
    rl = cf_dl(&rd, 1);

    XT_ASSERT_OK(nxl_xfer_create(a, NXL_WRITE, &ll, &rl, "peer", NULL, &x));
    XT_ASSERT_OK(nxl_dlist_prep(a, NULL, &ll, NULL, &lp));
    XT_ASSERT_OK(nxl_dlist_prep(a, "peer", &rl, NULL, &rp));
    XT_ASSERT_OK(nxl_xfer_make(a, NXL_WRITE, lp, &zero, rp, &zero, 1, NULL,
                               &xm));
    XT_ASSERT_OK(cf_run(x, NULL));
    XT_ASSERT_OK(cf_run(xm, NULL));

    XT_ASSERT_OK(nxl_md_invalidate(a, "peer"));
    XT_ASSERT_STATUS(nxl_md_check(a, "peer", NULL), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(nxl_xfer_post(x, NULL), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(nxl_xfer_post(xm, NULL), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(nxl_xfer_make(a, NXL_WRITE, lp, &zero, rp, &zero, 1,
                                   NULL, &x2),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT(x2 == NULL);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, &rl, "peer", NULL,
                                     &x2),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT(x2 == NULL);
    XT_ASSERT_STATUS(nxl_dlist_prep(a, "peer", &rl, NULL, &pp),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT(pp == NULL);
    XT_ASSERT_STATUS(nxl_notif_send(a, "peer", "x", 1, NULL),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(nxl_md_invalidate(a, "peer"), NXL_ERR_NOT_FOUND);

    /* Reload: new requests work, the old ones stay stale. */
    XT_ASSERT_OK(cf_fetch(a, &p));
    XT_ASSERT_STATUS(nxl_xfer_post(x, NULL), NXL_ERR_NOT_FOUND);
    XT_ASSERT_OK(nxl_xfer_create(a, NXL_WRITE, &ll, &rl, "peer", NULL, &x2));
    cf_fill(loc, len, 500, 0);
    XT_ASSERT_OK(cf_run(x2, NULL));
    XT_ASSERT(cf_pcheck(&p, CF_REG_HEAP, 0, len, 500, "after reload") == 0);
    nxl_xfer_release(x2);
    XT_ASSERT_OK(nxl_dlist_prep(a, "peer", &rl, NULL, &pp));
    XT_ASSERT_OK(nxl_xfer_make(a, NXL_WRITE, lp, &zero, pp, &zero, 1, NULL,
                               &x2));
    cf_fill(loc, len, 501, 0);
    XT_ASSERT_OK(cf_run(x2, NULL));
    XT_ASSERT(cf_pcheck(&p, CF_REG_HEAP, 0, len, 501, "after reload") == 0);

    nxl_xfer_release(x2);
    nxl_xfer_release(x);
    nxl_xfer_release(xm);
    nxl_dlist_release(pp);
    nxl_dlist_release(lp);
    nxl_dlist_release(rp);
    nxl_agent_destroy(a);
    cf_unmap(loc, len);
    return cf_pstop(&p);
}

/* nxl_md_load errors (NIXL §4.2, §7.8): own blob INVALID_PARAM; garbage
 * and truncated blobs MISMATCH or PROTO and load nothing; a conflicting
 * reload (same name, other conn info) NOT_ALLOWED and leaves the loaded
 * peer usable; an identical reload is ignored; an additive reload (a new
 * region) is OK and covers old and new regions. */
static int
t_md_errors(void)
{
    const uint64_t len = 64 * CF_KIB, extra = 256 * CF_KIB;
    nxl_agent_t *a = NULL, *twin = NULL;
    nxl_blob_t own = {NULL, 0}, tb = {NULL, 0};
    nxl_xfer_t *x = NULL;
    uint8_t junk[512], *loc;
    char name[CF_NAME_MAX];
    cf_peer_cfg pc = {NULL, len, 0, 0};
    void *full = NULL, *fx = NULL;
    size_t full_len = 0, fx_len = 0, i;
    uint64_t xaddr;
    cf_cmd c;
    cf_rep r;
    cf_peer p;

    CF_NEED_WHY(NXL_CAP_REMOTE,
                "loading a peer's metadata blob (own blob, garbage, "
                "conflicts)");
    XT_ASSERT(cf_spawn(&p, &pc) == 0);
    XT_ASSERT_OK(cf_agent("main", 0, &a));
    loc = cf_map(extra);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, extra));

    XT_ASSERT_OK(nxl_md_local(a, &own));
    XT_ASSERT_STATUS(nxl_md_load(a, own.data, own.len, NULL, 0),
                     NXL_ERR_INVALID_PARAM);
    nxl_blob_free(&own);

    /* Garbage: random bytes, a short string, a truncated real blob. */
    for (i = 0; i < sizeof(junk); i++) {
        junk[i] = (uint8_t)(i * 37 + 11);
    }
    CF_ASSERT_ONE_OF(nxl_md_load(a, junk, sizeof(junk), NULL, 0),
                     NXL_ERR_MISMATCH, NXL_ERR_PROTO);
    CF_ASSERT_ONE_OF(nxl_md_load(a, "hello", 5, NULL, 0), NXL_ERR_MISMATCH,
                     NXL_ERR_PROTO);
    XT_ASSERT(cf_pblob(&p, CF_MD_FULL, 0, &full, &full_len) == 0);
    for (i = 1; i < full_len; i += (full_len / 7) + 1) {
        CF_ASSERT_ONE_OF(nxl_md_load(a, full, i, NULL, 0), NXL_ERR_MISMATCH,
                         NXL_ERR_PROTO);
    }
    XT_ASSERT_STATUS(nxl_md_check(a, "peer", NULL), NXL_ERR_NOT_FOUND);

    /* The real blob loads and reports the name; identical reload is OK. */
    memset(name, 0, sizeof(name));
    XT_ASSERT_OK(nxl_md_load(a, full, full_len, name, sizeof(name)));
    XT_ASSERT_STR(name, "peer");
    XT_ASSERT_OK(nxl_md_load(a, full, full_len, NULL, 0));

    /* Another process's agent of the same name conflicts. */
    XT_ASSERT_OK(cf_agent("peer", CF_NO_LISTEN, &twin));
    XT_ASSERT_OK(cf_reg(twin, loc, len));
    XT_ASSERT_OK(nxl_md_local(twin, &tb));
    XT_ASSERT_STATUS(nxl_md_load(a, tb.data, tb.len, NULL, 0),
                     NXL_ERR_NOT_ALLOWED);
    nxl_blob_free(&tb);
    nxl_agent_destroy(twin);
    XT_ASSERT_OK(cf_xfer1(a, NXL_WRITE, (uintptr_t)loc,
                          cf_raddr(&p, CF_REG_HEAP, 0), len, "peer", NULL,
                          &x));
    cf_fill(loc, len, 600, 0);
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    XT_ASSERT(cf_pcheck(&p, CF_REG_HEAP, 0, len, 600, "after conflict") == 0);

    /* Additive: the peer registers another region; reload adds it. */
    c = cf_cmd_of(CF_OP_REG_EXTRA);
    c.len = extra;
    XT_ASSERT(cf_call(&p, &c, &r) == 0);
    CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
    xaddr = r.value;
    {
        nxl_desc_t d = {xaddr, extra, 0};
        nxl_dlist_t dl = cf_dl(&d, 1);

        XT_ASSERT_STATUS(nxl_md_check(a, "peer", &dl), NXL_ERR_NOT_FOUND);
        XT_ASSERT(cf_pblob(&p, CF_MD_FULL, 0, &fx, &fx_len) == 0);
        XT_ASSERT_OK(nxl_md_load(a, fx, fx_len, NULL, 0));
        XT_ASSERT_OK(nxl_md_check(a, "peer", &dl));
        d = (nxl_desc_t){cf_raddr(&p, CF_REG_HEAP, 0), len, 0};
        XT_ASSERT_OK(nxl_md_check(a, "peer", &dl));
    }
    XT_ASSERT_OK(cf_xfer1(a, NXL_WRITE, (uintptr_t)loc, xaddr, extra, "peer",
                          NULL, &x));
    cf_fill(loc, extra, 601, 0);
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    XT_ASSERT(cf_pcheck(&p, CF_REG_EXTRA, 0, extra, 601, "extra region") ==
              0);

    free(full);
    free(fx);
    nxl_agent_destroy(a);
    cf_unmap(loc, extra);
    return cf_pstop(&p);
}

/* Partial metadata (NIXL §4.3, §7.11): descriptors without conn info do
 * not load for an unknown peer; conn info only (nxl_md_local_partial with
 * an empty list) loads the peer with no regions; its descriptors then
 * load additively and transfers work; descriptors with conn info load in
 * one step. */
static int
t_md_partial(void)
{
    const uint64_t len = 64 * CF_KIB;
    nxl_agent_t *a = NULL, *b = NULL;
    nxl_xfer_t *x = NULL;
    nxl_desc_t hd, sd;
    nxl_dlist_t hl, sl;
    nxl_status_t st;
    cf_peer_cfg pc = {NULL, len, len, 0};
    void *conn = NULL, *descs = NULL, *sdescs = NULL, *both = NULL;
    size_t conn_len, descs_len, sdescs_len, both_len;
    char name[CF_NAME_MAX];
    uint8_t *loc;
    cf_peer p;

    CF_NEED_WHY(NXL_CAP_REMOTE,
                "partial metadata of a peer process");
    XT_ASSERT(cf_spawn(&p, &pc) == 0);
    XT_ASSERT_OK(cf_agent("main", 0, &a));
    loc = cf_map(len);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, len));
    hd = (nxl_desc_t){cf_raddr(&p, CF_REG_HEAP, 0), len, 0};
    sd = (nxl_desc_t){cf_raddr(&p, CF_REG_SHARED, 0), len, 0};
    hl = cf_dl(&hd, 1);
    sl = cf_dl(&sd, 1);
    XT_ASSERT(cf_pblob(&p, CF_MD_CONN_ONLY, 0, &conn, &conn_len) == 0);
    XT_ASSERT(cf_pblob(&p, CF_MD_DESCS, CF_REG_HEAP, &descs, &descs_len) ==
              0);
    XT_ASSERT(cf_pblob(&p, CF_MD_DESCS, CF_REG_SHARED, &sdescs,
                       &sdescs_len) == 0);
    XT_ASSERT(cf_pblob(&p, CF_MD_DESCS_CONN, CF_REG_HEAP, &both,
                       &both_len) == 0);

    st = nxl_md_load(a, descs, descs_len, NULL, 0);
    if (st >= 0) {
        XT_FAILF("descriptors without conn info of an unknown peer loaded "
                 "(%s)", nxl_status_name(st));
    }
    XT_ASSERT(nxl_last_error()[0] != '\0');
    XT_ASSERT_STATUS(nxl_md_check(a, "peer", NULL), NXL_ERR_NOT_FOUND);

    memset(name, 0, sizeof(name));
    XT_ASSERT_OK(nxl_md_load(a, conn, conn_len, name, sizeof(name)));
    XT_ASSERT_STR(name, "peer");
    XT_ASSERT_OK(nxl_md_check(a, "peer", NULL));
    XT_ASSERT_STATUS(nxl_md_check(a, "peer", &hl), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(cf_xfer1(a, NXL_WRITE, (uintptr_t)loc, hd.addr, len,
                              "peer", NULL, &x),
                     NXL_ERR_NOT_FOUND);

    XT_ASSERT_OK(nxl_md_load(a, descs, descs_len, NULL, 0));
    XT_ASSERT_OK(nxl_md_check(a, "peer", &hl));
    XT_ASSERT_STATUS(nxl_md_check(a, "peer", &sl), NXL_ERR_NOT_FOUND);
    XT_ASSERT_OK(cf_xfer1(a, NXL_WRITE, (uintptr_t)loc, hd.addr, len, "peer",
                          NULL, &x));
    cf_fill(loc, len, 700, 0);
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    XT_ASSERT(cf_pcheck(&p, CF_REG_HEAP, 0, len, 700, "partial") == 0);

    XT_ASSERT_OK(nxl_md_load(a, sdescs, sdescs_len, NULL, 0));
    XT_ASSERT_OK(nxl_md_check(a, "peer", &sl));
    XT_ASSERT_OK(nxl_md_check(a, "peer", &hl));
    XT_ASSERT_OK(cf_xfer1(a, NXL_READ, (uintptr_t)loc, sd.addr, len, "peer",
                          NULL, &x));
    XT_ASSERT(cf_pfill(&p, CF_REG_SHARED, 0, len, 701) == 0);
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    XT_ASSERT(cf_check_local(loc, len, 701, 0, "partial shared") == 0);

    /* Descriptors with conn info: one step, on a fresh agent. */
    XT_ASSERT_OK(cf_agent("main2", CF_NO_LISTEN, &b));
    XT_ASSERT_OK(nxl_md_load(b, both, both_len, NULL, 0));
    XT_ASSERT_OK(nxl_md_check(b, "peer", &hl));
    XT_ASSERT_STATUS(nxl_md_check(b, "peer", &sl), NXL_ERR_NOT_FOUND);
    nxl_agent_destroy(b);

    free(conn);
    free(descs);
    free(sdescs);
    free(both);
    nxl_agent_destroy(a);
    cf_unmap(loc, len);
    return cf_pstop(&p);
}

/* A peer killed with SIGKILL during a loop of big transfers (NIXL
 * error_handling "during transfer", §4.5, §7.12; DESIGN §3: a dead peer
 * surfaces as NXL_ERR_REMOTE_DISCONNECT, never a hang): the first error
 * is REMOTE_DISCONNECT (or NOT_FOUND once the peer is marked dead) within
 * 2 s; later posts keep failing; a restarted peer of the same name loads
 * with nxl_md_fetch and is used. */
static int
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

    CF_NEED_WHY(NXL_CAP_REMOTE,
                "the death of a peer process during transfers");
    XT_ASSERT(cf_spawn(&p, &pc) == 0);
    XT_ASSERT(cf_spawn(&p2, &pc2) == 0);
    XT_ASSERT_OK(cf_agent("main", 0, &a));
    XT_ASSERT_OK(cf_fetch(a, &p));
    loc = cf_map(len);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, len));
    cf_fill(loc, len, 800, 0);
    XT_ASSERT_OK(cf_xfer1(a, NXL_WRITE, (uintptr_t)loc,
                          cf_raddr(&p, CF_REG_HEAP, 0), len, "peer", NULL,
                          &x));
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
                     "succeeded)", posts);
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
                              cf_raddr(&p, CF_REG_HEAP, 0), len, "peer",
                              NULL, &x2),
                     NXL_ERR_NOT_FOUND, NXL_ERR_REMOTE_DISCONNECT);

    /* A new process of the same name: fetch and use. */
    XT_ASSERT(cf_peer_start(&p2) == 0);
    XT_ASSERT_OK(cf_fetch(a, &p2));
    XT_ASSERT_OK(cf_xfer1(a, NXL_WRITE, (uintptr_t)loc,
                          cf_raddr(&p2, CF_REG_HEAP, 0), len, "peer", NULL,
                          &x2));
    cf_fill(loc, len, 801, 0);
    XT_ASSERT_OK(cf_run(x2, NULL));
    XT_ASSERT(cf_pcheck(&p2, CF_REG_HEAP, 0, len, 801, "restarted peer") ==
              0);
    nxl_xfer_release(x2);
    nxl_agent_destroy(a);
    cf_unmap(loc, len);
    return cf_pstop(&p2);
}

/* One thread of t_threads: its own buffers and slice of the target. */
typedef struct {
    nxl_agent_t *a;
    const cf_tgt *tgt;
    uint64_t roff;
    int idx;
    int rc;
    char err[CF_ERR_MAX];
} cf_thr;

#define CF_THR_FAIL(t, ...)                                                   \
    do {                                                                      \
        snprintf((t)->err, sizeof((t)->err), __VA_ARGS__);                    \
        (t)->rc = 1;                                                          \
        goto out;                                                             \
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
                (st = cf_txfer1(t->a, NXL_READ, (uintptr_t)dst, t->tgt,
                                t->roff, len, NULL, &xr)) != NXL_OK) {
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
            CF_THR_FAIL(t, "iteration %d READ: %s (%s)", i,
                        nxl_status_name(st), nxl_last_error());
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
static int
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
static int
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
    XT_ASSERT_STATUS(nxl_xfer_create(NULL, NXL_WRITE, &ll, &rl, rn, NULL,
                                     &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, NULL, &rl, rn, NULL,
                                     &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, NULL, rn, NULL,
                                     &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, &rl, NULL, NULL, &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, &rl, rn, NULL,
                                     NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_create(a, (nxl_op_t)7, &ll, &rl, rn, NULL,
                                     &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &nulld, &rl, rn, NULL,
                                     &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, &nulld, rn, NULL,
                                     &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT(x == sentinel);

    /* Zero length, counts, lengths. */
    l2[0] = (nxl_desc_t){(uintptr_t)loc, 0, 0};
    r2[0] = (nxl_desc_t){rbase, 0, rdev};
    l2l = cf_dl(l2, 1);
    r2l = cf_tdl(&t, r2, 1);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &l2l, &r2l, rn, NULL,
                                     &x),
                     NXL_ERR_INVALID_PARAM);
    l2[0] = (nxl_desc_t){(uintptr_t)loc, 4096, 0};
    l2[1] = (nxl_desc_t){(uintptr_t)loc + 8192, 4096, 0};
    l2l = cf_dl(l2, 2);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &l2l, &rl, rn, NULL,
                                     &x),
                     NXL_ERR_INVALID_PARAM);
    r2[0] = (nxl_desc_t){rbase, 2048, rdev};
    r2l = cf_tdl(&t, r2, 1);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, &r2l, rn, NULL,
                                     &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_READ, &ll, &r2l, rn, NULL,
                                     &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT(x == sentinel);

    /* Memory not covered by registrations. */
    badl = cf_dl(&bad, 1);
    rbadl = cf_tdl(&t, &bad, 1);
    bad = (nxl_desc_t){(uintptr_t)unreg, 4096, 0};
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &badl, &rl, rn, NULL,
                                     &x),
                     NXL_ERR_NOT_FOUND);
    bad = (nxl_desc_t){(uintptr_t)loc + len - 2048, 4096, 0};
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &badl, &rl, rn, NULL,
                                     &x),
                     NXL_ERR_NOT_FOUND);
    bad = (nxl_desc_t){rbase + len, 4096, rdev};
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, &rbadl, rn, NULL,
                                     &x),
                     NXL_ERR_NOT_FOUND);
    bad = (nxl_desc_t){rbase + len - 2048, 4096, rdev};
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, &rbadl, rn, NULL,
                                     &x),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_READ, &ll, &rbadl, rn, NULL,
                                     &x),
                     NXL_ERR_NOT_FOUND);
    bad = (nxl_desc_t){rbase - 1, 4096, rdev};
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, &rbadl, rn, NULL,
                                     &x),
                     NXL_ERR_NOT_FOUND);
    bad = (nxl_desc_t){rbase, 4096, rdev + 7}; /* another device id */
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, &rbadl, rn, NULL,
                                     &x),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, &rl, "nobody", NULL,
                                     &x),
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
    XT_ASSERT_STATUS(nxl_xfer_make(a, NXL_WRITE, lp, &i2, rp, &i0, 1, NULL,
                                   &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_make(a, NXL_WRITE, lp, &i0, rp, &i2, 1, NULL,
                                   &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_make(a, NXL_WRITE, lp, &i1, rp, &i0, 1, NULL,
                                   &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_make(a, NXL_WRITE, lp, NULL, rp, &i0, 1, NULL,
                                   &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_make(a, NXL_WRITE, NULL, &i0, rp, &i0, 1, NULL,
                                   &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_make(a, NXL_WRITE, lp, &i0, NULL, &i0, 1, NULL,
                                   &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_make(a, (nxl_op_t)9, lp, &i0, rp, &i0, 1, NULL,
                                   &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_make(a, NXL_WRITE, lp, &i0, rp, &i0, 1, NULL,
                                   NULL),
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

/* nxl_xfer_wait with a timeout (nxl.h; NIXL has no wait): NOT_POSTED for
 * an unposted request; with the peer stopped (SIGSTOP) an unfinished
 * transfer gives NXL_ERR_TIMEOUT after about the timeout, sleeping rather
 * than spinning; a zero timeout returns at once; once the peer resumes the
 * wait completes and the data is there. Backends that complete without
 * the peer's help (CMA) just finish; so does a FILE target, which nothing
 * can hold back (the rest is checked all the same). */
static int
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
    XT_ASSERT_OK(cf_txfer1(a, NXL_WRITE, (uintptr_t)loc, &t, 0, len, NULL,
                           &x));
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
                XT_FAILF("wait spun: %" PRIu64 " us CPU in %" PRIu64 " ms",
                         dc, dt);
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
 * now and then after the reset (docs/backends.md, UCX, limits). */
static int
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
        nxl_op_t op = k == 0 ? NXL_WRITE : k == 1 ? NXL_READ
                      : t.kind == CF_T_PEER ? NXL_WRITE : NXL_READ;

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
            XT_ASSERT_OK(nxl_xfer_create(a, op, &ll, &rl, cf_tname(&t, a),
                                         NULL, &x));
        } else {
            uint64_t xlen = len;

            if (k == 2 && t.kind == CF_T_PEER && cf_netns() &&
                strcasecmp(cf_be(), "UCX") == 0) {
                xlen = 4096;
            }
            XT_ASSERT_OK(cf_txfer1(a, op, (uintptr_t)loc, &t, 0, xlen, NULL,
                                   &x));
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
            XT_FAILF("post -> %s (%s)", nxl_status_name(st),
                     nxl_last_error());
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
    XT_ASSERT_OK(cf_txfer1(a, NXL_WRITE, (uintptr_t)loc, &t, 0, CF_MIB, NULL,
                           &x));
    cf_fill(loc, CF_MIB, 1100, 0);
    XT_ASSERT_OK(cf_run(x, NULL));
    XT_ASSERT(cf_tcheck(&t, 0, CF_MIB, 1100, "after release") == 0);
    nxl_xfer_release(x);
    nxl_agent_destroy(a);
    cf_unmap(loc, CF_MIB);
    return cf_tstop(&t);
}

/* Telemetry (NIXL §7.10, getXferTelemetry): NO_TELEMETRY unless the agent
 * captures it; then total_bytes and desc_count (after merging) are exact,
 * xfer_us >= post_us and start_us is the wall-clock time of the post;
 * prepared lists merge contiguous runs unless skip_merge. */
static int
t_telemetry(void)
{
    const uint64_t len = CF_MIB;
    nxl_prepped_t *lp = NULL, *rp = NULL;
    nxl_agent_t *a = NULL, *b = NULL;
    nxl_xfer_telemetry_t tm;
    nxl_xfer_t *x = NULL;
    nxl_desc_t ld[4], rd[4];
    nxl_dlist_t ll, rl;
    nxl_opts_t o;
    struct timespec ts;
    uint64_t now_us;
    size_t idx[4] = {0, 1, 2, 3};
    uint8_t *loc;
    cf_tgt t;
    int k;

    CF_NEED_TGT(0);
    XT_ASSERT(cf_tsetup(&t, len, 0, &a) == 0);
    loc = cf_map(len);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, len));
    XT_ASSERT_OK(cf_txfer1(a, NXL_WRITE, (uintptr_t)loc, &t, 0, 4096, NULL,
                           &x));
    XT_ASSERT_OK(cf_run(x, NULL));
    XT_ASSERT_STATUS(nxl_xfer_telemetry(x, &tm), NXL_ERR_NO_TELEMETRY);
    nxl_xfer_release(x);

    XT_ASSERT_OK(cf_agent("main2", CF_TELEMETRY | CF_NO_LISTEN, &b));
    XT_ASSERT_OK(cf_reg(b, loc, len));
    XT_ASSERT_OK(cf_tattach(&t, b));
    /* Three scattered 64 KiB pieces. */
    ld[0] = (nxl_desc_t){(uintptr_t)loc, 65536, 0};
    ld[1] = (nxl_desc_t){(uintptr_t)loc + 131072, 65536, 0};
    ld[2] = (nxl_desc_t){(uintptr_t)loc + 262144, 65536, 0};
    rd[0] = cf_tdesc(&t, 524288, 65536);
    rd[1] = cf_tdesc(&t, 0, 65536);
    rd[2] = cf_tdesc(&t, 262144, 65536);
    ll = cf_dl(ld, 3);
    rl = cf_tdl(&t, rd, 3);
    XT_ASSERT_OK(nxl_xfer_create(b, NXL_WRITE, &ll, &rl, cf_tname(&t, b),
                                 NULL, &x));
    for (k = 0; k < 2; k++) {
        XT_ASSERT_OK(cf_run(x, NULL));
        memset(&tm, 0, sizeof(tm));
        XT_ASSERT_OK(nxl_xfer_telemetry(x, &tm));
        XT_ASSERT_EQ(tm.total_bytes, 3 * 65536);
        XT_ASSERT_EQ(tm.desc_count, 3);
        if (tm.xfer_us < tm.post_us) {
            XT_FAILF("xfer_us %" PRIu64 " < post_us %" PRIu64, tm.xfer_us,
                     tm.post_us);
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        now_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000;
        if (tm.start_us > now_us || now_us - tm.start_us > 60000000u) {
            XT_FAILF("start_us %" PRIu64 " is not the time of the post "
                     "(now %" PRIu64 ")",
                     tm.start_us, now_us);
        }
    }
    nxl_xfer_release(x);

    /* Four contiguous 16 KiB blocks on both sides: merged into one. */
    for (k = 0; k < 4; k++) {
        ld[k] = (nxl_desc_t){(uintptr_t)loc + (uint64_t)k * 16384, 16384, 0};
        rd[k] = cf_tdesc(&t, (uint64_t)k * 16384, 16384);
    }
    ll = cf_dl(ld, 4);
    rl = cf_tdl(&t, rd, 4);
    XT_ASSERT_OK(nxl_dlist_prep(b, NULL, &ll, NULL, &lp));
    XT_ASSERT_OK(nxl_dlist_prep(b, cf_tname(&t, b), &rl, NULL, &rp));
    for (k = 0; k < 2; k++) {
        nxl_opts_init(&o);
        o.skip_merge = k;
        XT_ASSERT_OK(nxl_xfer_make(b, NXL_READ, lp, idx, rp, idx, 4, &o, &x));
        XT_ASSERT(cf_tfill(&t, 0, 65536, 1200 + (uint32_t)k) == 0);
        XT_ASSERT_OK(cf_run(x, NULL));
        XT_ASSERT(cf_check_local(loc, 65536, 1200 + (uint32_t)k, 0,
                                 "merged READ") == 0);
        XT_ASSERT_OK(nxl_xfer_telemetry(x, &tm));
        XT_ASSERT_EQ(tm.total_bytes, 65536);
        XT_ASSERT_EQ(tm.desc_count, k ? 4 : 1);
        nxl_xfer_release(x);
    }
    nxl_dlist_release(lp);
    nxl_dlist_release(rp);
    nxl_agent_destroy(b);
    nxl_agent_destroy(a);
    cf_unmap(loc, len);
    return cf_tstop(&t);
}

/* The prepared-list path (nxl_dlist_prep + nxl_xfer_make, NIXL
 * prepXferDlist/makeXferReq) and the one-shot path (nxl_xfer_create) move
 * the same data: blocks by index in reverse order, a subset, local lists
 * prepared with NULL and "" alike; a transfer outlives the prepared lists
 * it was made from. */
static int
t_prepped(void)
{
    enum { NB = 16 };
    const uint64_t blk = 64 * CF_KIB, len = NB * blk;
    nxl_prepped_t *lp = NULL, *lp2 = NULL, *rp = NULL;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *xw = NULL, *xr = NULL, *xc = NULL;
    nxl_desc_t ld[NB], rd[NB];
    nxl_dlist_t ll, rl;
    size_t li[NB], ri[NB], sl[3] = {3, 4, 5}, sr[3] = {7, 8, 9};
    uint8_t *loc;
    cf_tgt t;
    size_t i;

    CF_NEED_TGT(0);
    XT_ASSERT(cf_tsetup(&t, len, 0, &a) == 0);
    loc = cf_map(len);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, len));
    for (i = 0; i < NB; i++) {
        ld[i] = (nxl_desc_t){(uintptr_t)loc + i * blk, blk, 0};
        rd[i] = cf_tdesc(&t, i * blk, blk);
        li[i] = i;
        ri[i] = NB - 1 - i;
    }
    ll = cf_dl(ld, NB);
    rl = cf_tdl(&t, rd, NB);
    XT_ASSERT_OK(nxl_dlist_prep(a, NULL, &ll, NULL, &lp));
    XT_ASSERT_OK(nxl_dlist_prep(a, "", &ll, NULL, &lp2));
    XT_ASSERT_OK(nxl_dlist_prep(a, cf_tname(&t, a), &rl, NULL, &rp));

    /* WRITE local block i to remote block NB-1-i. */
    for (i = 0; i < NB; i++) {
        cf_fill(loc + i * blk, blk, 1300, (NB - 1 - i) * blk);
    }
    XT_ASSERT_OK(nxl_xfer_make(a, NXL_WRITE, lp, li, rp, ri, NB, NULL, &xw));
    XT_ASSERT_OK(cf_run(xw, NULL));
    XT_ASSERT(cf_tcheck(&t, 0, len, 1300, "prepped WRITE") == 0);

    /* READ remote blocks 7..9 into local 3..5. */
    XT_ASSERT_OK(nxl_xfer_make(a, NXL_READ, lp2, sl, rp, sr, 3, NULL, &xr));
    XT_ASSERT(cf_tfill(&t, 0, len, 1301) == 0);
    memset(loc, 0xa5, len);
    XT_ASSERT_OK(cf_run(xr, NULL));
    XT_ASSERT(cf_check_local(loc + 3 * blk, 3 * blk, 1301, 7 * blk,
                             "prepped READ") == 0);
    XT_ASSERT(cf_check_byte(loc, 3 * blk, 0xa5, "prepped READ") == 0);
    XT_ASSERT(cf_check_byte(loc + 6 * blk, len - 6 * blk, 0xa5,
                            "prepped READ") == 0);

    /* Transfers stay valid after their prepared lists are released. */
    nxl_dlist_release(lp);
    nxl_dlist_release(lp2);
    nxl_dlist_release(rp);
    XT_ASSERT(cf_tfill(&t, 0, len, 1302) == 0);
    XT_ASSERT_OK(cf_run(xr, NULL));
    XT_ASSERT(cf_check_local(loc + 3 * blk, 3 * blk, 1302, 7 * blk,
                             "READ after release of lists") == 0);

    /* The one-shot path over the same lists. */
    XT_ASSERT_OK(nxl_xfer_create(a, NXL_READ, &ll, &rl, cf_tname(&t, a), NULL,
                                 &xc));
    XT_ASSERT(cf_tfill(&t, 0, len, 1303) == 0);
    XT_ASSERT_OK(cf_run(xc, NULL));
    XT_ASSERT(cf_check_local(loc, len, 1303, 0, "one-shot READ") == 0);

    nxl_xfer_release(xw);
    nxl_xfer_release(xr);
    nxl_xfer_release(xc);
    nxl_agent_destroy(a);
    cf_unmap(loc, len);
    return cf_tstop(&t);
}

/* An idle agent with a progress thread sleeps (DESIGN §7: the thread
 * sleeps on the backends' fds, no busy spinning): after a WRITE, a READ
 * back (checked) and, with NOTIF, a notification, both processes (on a
 * FILE target: this one) use < 5% CPU over 2 s. */
static int
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
    XT_ASSERT_OK(cf_txfer1(a, NXL_WRITE, (uintptr_t)loc, &t, 0, len, NULL,
                           &x));
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    memset(loc, 0, len);
    XT_ASSERT_OK(cf_txfer1(a, NXL_READ, (uintptr_t)loc, &t, 0, len, NULL,
                           &x));
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
        XT_FAILF("idle peer used %" PRIu64 " us CPU in %" PRIu64
                 " us (>= 5%%)",
                 r.value, r.value2);
    }
    nxl_agent_destroy(a);
    cf_unmap(loc, len);
    return cf_tstop(&t);
}

/* nxl_mem_alloc_shared regions (nxl.h, DESIGN §3 SHM) work as either side
 * of READ and WRITE: shared <-> shared, shared <-> heap, heap <-> shared,
 * started by us and by the peer (which loads our metadata); with a FILE
 * target, shared <-> file and heap <-> file. */
static int
t_shared(void)
{
    const uint64_t len = CF_MIB, n = 256 * CF_KIB;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    uint8_t *heap, *shm = NULL, *lb;
    uint32_t seed = 1400;
    cf_cmd c;
    cf_rep r;
    cf_tgt t, rt;
    cf_peer *p = &t.peer;
    int op, combo, dir;

    CF_NEED_TGT(0);
    XT_ASSERT(cf_tsetup_sh(&t, len, len, 0, &a) == 0);
    heap = cf_map(len);
    XT_ASSERT(heap != NULL);
    XT_ASSERT_OK(nxl_mem_alloc_shared(len, (void **)&shm));
    XT_ASSERT_OK(cf_reg(a, heap, len));
    XT_ASSERT_OK(cf_reg(a, shm, len));

    /* We initiate: combo 0 shared/shared, 1 shared/heap, 2 heap/shared
     * (local/peer); on a FILE target 1 shared/file and 2 heap/file. */
    for (combo = 0; combo < 3; combo++) {
        uint64_t loff = 4096 * (uint64_t)(combo + 1), roff = 8192;

        rt = t;
        rt.region = combo == 1 ? CF_REG_HEAP : CF_REG_SHARED;
        if (t.kind != CF_T_PEER && combo == 0) {
            continue;
        }
        lb = combo == 2 ? heap : shm;
        for (op = NXL_READ; op <= NXL_WRITE; op++) {
            seed++;
            if (op == NXL_WRITE) {
                cf_fill(lb + loff, n, seed, roff);
            } else {
                XT_ASSERT(cf_tfill(&rt, roff, n, seed) == 0);
            }
            XT_ASSERT_OK(cf_txfer1(a, (nxl_op_t)op, (uintptr_t)lb + loff,
                                   &rt, roff, n, NULL, &x));
            XT_ASSERT_OK(cf_run(x, NULL));
            nxl_xfer_release(x);
            if (op == NXL_WRITE) {
                XT_ASSERT(cf_tcheck(&rt, roff, n, seed, "WRITE with shared") ==
                          0);
            } else {
                XT_ASSERT(cf_check_local(lb + loff, n, seed, roff,
                                         "READ with shared") == 0);
            }
        }
    }

    /* The peer initiates, into and out of our shared and heap regions. */
    if (t.kind != CF_T_PEER) {
        printf("  not run: peer-initiated transfers (a local storage "
               "backend has no peer)\n");
        goto done;
    }
    CF_ASSERT_PEER(p, cf_pmd(p, CF_OP_MD_FETCH, nxl_agent_listen_port(a),
                              "main"),
                   NXL_OK);
    for (dir = 0; dir < 4; dir++) {
        int preg = dir & 1 ? CF_REG_SHARED : CF_REG_HEAP;
        uint64_t poff = 4096, moff = 12288;

        lb = dir & 2 ? heap : shm;
        for (op = NXL_READ; op <= NXL_WRITE; op++) {
            seed++;
            if (op == NXL_WRITE) {
                /* The peer pushes its region into ours. */
                XT_ASSERT(cf_pfill(p, preg, poff, n, seed) == 0);
            } else {
                /* The peer pulls ours into its region. */
                xt_tsan_acquire(lb);
                cf_fill(lb + moff, n, seed, poff);
                xt_tsan_release(lb);
            }
            c = cf_cmd_of(CF_OP_XFER);
            c.arg = op;
            c.region = preg;
            c.off = poff;
            c.len = n;
            c.raddr = (uintptr_t)lb + moff;
            snprintf(c.name, sizeof(c.name), "main");
            XT_ASSERT(cf_call(p, &c, &r) == 0);
            CF_ASSERT_PEER(p, (nxl_status_t)r.status, NXL_OK);
            if (op == NXL_WRITE) {
                xt_tsan_acquire(lb);
                XT_ASSERT(cf_check_local(lb + moff, n, seed, poff,
                                         "peer WRITE into us") == 0);
                xt_tsan_release(lb);
            } else {
                XT_ASSERT(cf_pcheck(p, preg, poff, n, seed,
                                    "peer READ from us") == 0);
            }
        }
    }

done:
    nxl_agent_destroy(a);
    nxl_mem_free_shared(shm);
    cf_unmap(heap, len);
    return cf_tstop(&t);
}

/* Registration rules (nxl.h nxl_mem_register/deregister; NIXL §7.2): a
 * zero length or a NULL list is NXL_ERR_INVALID_PARAM, the same
 * descriptor again NXL_ERR_NOT_ALLOWED, deregistering what was never
 * registered or other bounds NXL_ERR_NOT_FOUND, and a refused call leaves
 * the registration as it was. Memory is usable exactly while registered:
 * a descriptor reaching past a registration, or over a deregistered one,
 * fails NXL_ERR_NOT_FOUND when the transfer or prepared list is made; a
 * new registration works again. Checked on local DRAM and, where the
 * target is this agent's own (a FILE), on the target too. */
static int
t_reg_rules(void)
{
    const uint64_t len = 256 * CF_KIB;
    nxl_prepped_t *pp = NULL;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    nxl_desc_t d, rd;
    nxl_dlist_t dl, rl, empty = {NXL_DRAM, NULL, 0};
    uint8_t *loc, *unreg;
    uint64_t dev, base;
    cf_tgt t;

    CF_NEED_TGT(0);
    XT_ASSERT(cf_tsetup(&t, len, 0, &a) == 0);
    loc = cf_map(len);
    unreg = cf_map(len);
    XT_ASSERT(loc != NULL && unreg != NULL);

    /* Local DRAM. */
    XT_ASSERT_STATUS(cf_reg(a, loc, 0), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_mem_register(a, NULL, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_mem_register(NULL, &empty, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_OK(cf_reg(a, loc, len));
    XT_ASSERT_STATUS(cf_reg(a, loc, len), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT(nxl_last_error()[0] != '\0');
    XT_ASSERT_STATUS(cf_dereg(a, unreg, len), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(cf_dereg(a, loc, len / 2), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(cf_dereg(a, loc + 4096, len - 4096), NXL_ERR_NOT_FOUND);
    /* Still registered as it was: a transfer over all of it works. */
    cf_fill(loc, len, 1500, 0);
    XT_ASSERT_OK(cf_txfer1(a, NXL_WRITE, (uintptr_t)loc, &t, 0, len, NULL,
                           &x));
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    x = NULL;
    XT_ASSERT(cf_tcheck(&t, 0, len, 1500, "WRITE after refused calls") ==
              0);
    /* Partly covered: refused when made. */
    d = (nxl_desc_t){(uintptr_t)loc + len - 2048, 4096, 0};
    dl = cf_dl(&d, 1);
    XT_ASSERT_STATUS(nxl_dlist_prep(a, NULL, &dl, NULL, &pp),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(cf_txfer1(a, NXL_WRITE, (uintptr_t)loc + len - 2048, &t,
                               0, 4096, NULL, &x),
                     NXL_ERR_NOT_FOUND);
    /* Deregistered: gone, once. */
    XT_ASSERT_OK(cf_dereg(a, loc, len));
    XT_ASSERT_STATUS(cf_dereg(a, loc, len), NXL_ERR_NOT_FOUND);
    d = (nxl_desc_t){(uintptr_t)loc, 4096, 0};
    XT_ASSERT_STATUS(nxl_dlist_prep(a, NULL, &dl, NULL, &pp),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(cf_txfer1(a, NXL_WRITE, (uintptr_t)loc, &t, 0, 4096,
                               NULL, &x),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT(pp == NULL && x == NULL);
    /* Registered again: works again. */
    XT_ASSERT_OK(cf_reg(a, loc, len));
    XT_ASSERT(cf_tfill(&t, 0, len, 1501) == 0);
    XT_ASSERT_OK(cf_txfer1(a, NXL_READ, (uintptr_t)loc, &t, 0, len, NULL,
                           &x));
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    x = NULL;
    XT_ASSERT(cf_check_local(loc, len, 1501, 0, "READ after re-register") ==
              0);

    if (t.kind != CF_T_FILE) {
        printf("  not run: target rules (the target is the peer's "
               "memory)\n");
        goto done;
    }
    /* The FILE target: {offset, len, fd}. */
    dev = cf_tdev(&t);
    base = cf_taddr(&t, 0);
    rd = (nxl_desc_t){base, 0, dev};
    rl = cf_tdl(&t, &rd, 1);
    XT_ASSERT_STATUS(nxl_mem_register(a, &rl, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(cf_tregister(&t, a), NXL_ERR_NOT_ALLOWED);
    rd = (nxl_desc_t){base, len / 2, dev};
    XT_ASSERT_STATUS(nxl_mem_deregister(a, &rl, NULL), NXL_ERR_NOT_FOUND);
    rd = (nxl_desc_t){base, len, dev + 1000};
    XT_ASSERT_STATUS(nxl_mem_deregister(a, &rl, NULL), NXL_ERR_NOT_FOUND);
    rd = (nxl_desc_t){0, base + len, dev};
    XT_ASSERT_STATUS(nxl_mem_deregister(a, &rl, NULL), NXL_ERR_NOT_FOUND);
    rd = cf_tdesc(&t, len - 2048, 4096);
    XT_ASSERT_STATUS(nxl_dlist_prep(a, cf_tname(&t, a), &rl, NULL, &pp),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(cf_txfer1(a, NXL_WRITE, (uintptr_t)loc, &t, len - 2048,
                               4096, NULL, &x),
                     NXL_ERR_NOT_FOUND);
    rd = (nxl_desc_t){base, len, dev};
    XT_ASSERT_OK(nxl_mem_deregister(a, &rl, NULL));
    XT_ASSERT_STATUS(nxl_mem_deregister(a, &rl, NULL), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(cf_txfer1(a, NXL_WRITE, (uintptr_t)loc, &t, 0, 4096,
                               NULL, &x),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT(pp == NULL && x == NULL);
    XT_ASSERT_OK(cf_tregister(&t, a));
    cf_fill(loc, len, 1502, 0);
    XT_ASSERT_OK(cf_txfer1(a, NXL_WRITE, (uintptr_t)loc, &t, 0, len, NULL,
                           &x));
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    XT_ASSERT(cf_tcheck(&t, 0, len, 1502, "WRITE after file re-register") ==
              0);

done:
    nxl_agent_destroy(a);
    cf_unmap(loc, len);
    cf_unmap(unreg, len);
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
static int
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

    XT_ASSERT_OK(cf_txfer1(a, NXL_READ, (uintptr_t)loc, &t, 0, len, NULL,
                           &x));
    st = cf_run(x, NULL);
    if (st != NXL_ERR_IO) {
        XT_FAILF("READ past the end of the file -> %s (%s), want "
                 "NXL_ERR_IO", nxl_status_name(st), nxl_last_error());
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
    XT_ASSERT(cf_check_local(loc, len, 1601, 0, "READ after the error") ==
              0);
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
static int
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
    XT_ASSERT_OK(cf_txfer1(a, NXL_WRITE, (uintptr_t)src, &t, 0, len, NULL,
                           &xw));
    XT_ASSERT_OK(cf_txfer1(a, NXL_READ, (uintptr_t)dst, &t, len, len, NULL,
                           &xr));
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
    XT_ASSERT(cf_check_byte(dst, len, 0x5a, "READ buffer after destroy") ==
              0);
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
    XT_ASSERT_OK(cf_txfer1(b, NXL_WRITE, (uintptr_t)src, &t, 0, len, NULL,
                           &xw));
    XT_ASSERT_OK(cf_run(xw, NULL));
    XT_ASSERT(cf_tcheck(&t, 0, len, 1702, "WRITE after destroy") == 0);
    XT_ASSERT(cf_tcheck(&t, len, len, 1701, "untouched half") == 0);
    nxl_xfer_release(xw);
    nxl_agent_destroy(b);
    cf_unmap(src, len);
    return cf_tstop(&t);
}

/* cf_pextra has the peer register its extra region (shared: from
 * nxl_mem_alloc_shared) of len bytes, and loads the peer's metadata again
 * so that a knows it. *addr_p gets its address. */
static int
cf_pextra(cf_peer *p, nxl_agent_t *a, uint64_t len, int shared,
          uint64_t *addr_p)
{
    cf_cmd c = cf_cmd_of(CF_OP_REG_EXTRA);
    cf_rep r;

    c.len = len;
    c.arg = shared;
    if (cf_call(p, &c, &r) != 0) {
        return 1;
    }
    CF_ASSERT_PEER(p, (nxl_status_t)r.status, NXL_OK);
    XT_ASSERT_OK(cf_fetch(a, p));
    *addr_p = r.value;
    return 0;
}

/* CF_SKIP_UNENFORCED skips where revocation is not NXL's to enforce: UCX
 * to a peer on another host over a transport without RDMA (here: tcp),
 * where UCX emulates RMA with active messages whose target-side handler
 * writes or reads any address it is sent, without a key check
 * (docs/backends/ucx.md; the NIC checks keys on RDMA transports, and the
 * registration table covers same-host peers). */
#define CF_SKIP_UNENFORCED()                                                  \
    XT_SKIP_IF(cf_netns() && strcasecmp(cf_be(), "UCX") == 0,                 \
               "UCX software RMA (tcp) reaches any address of a peer on "     \
               "another host; revocation there rests on UCX, which does not " \
               "check keys on that path")

/* cf_revoked_post posts x, which must fail now (its remote region was
 * deregistered): any error with a message, within the transfer timeout. */
static int
cf_revoked_post(nxl_xfer_t *x, const char *what)
{
    nxl_status_t st = cf_run(x, NULL);

    if (st >= 0) {
        XT_FAILF("%s over a deregistered region -> %s", what,
                 nxl_status_name(st));
    }
    if (nxl_last_error()[0] == '\0') {
        XT_FAILF("%s -> %s without a message", what, nxl_status_name(st));
    }
    printf("  %s: %s (%s)\n", what, nxl_status_name(st), nxl_last_error());
    return 0;
}

/* Revocation (issue 15): once the owner deregisters a region, no peer
 * reaches it, whatever metadata the peer still holds. The peer registers
 * a region (heap memory, then shared memory), the initiator loads it and
 * moves data both ways; the peer deregisters it and keeps the memory. A
 * READ and a WRITE made before, reposted, and ones made after from the old
 * metadata, all fail with a message; the region's bytes and the READ
 * buffer stay as they were. */
static int
t_revoked(void)
{
    const uint64_t len = 256 * CF_KIB;
    nxl_xfer_t *xr = NULL, *xw = NULL;
    nxl_agent_t *a = NULL;
    uint64_t raddr;
    uint8_t *loc, *in;
    int shared;
    cf_peer p;
    cf_cmd c;
    cf_rep r;

    CF_NEED_WHY(NXL_CAP_REMOTE, "a peer that deregisters memory");
    CF_SKIP_UNENFORCED();
    loc = cf_map(len);
    in = cf_map(len);
    XT_ASSERT(loc != NULL && in != NULL);
    for (shared = 0; shared < 2; shared++) {
        XT_ASSERT(cf_setup(&p, CF_MIB, 0, 0, &a) == 0);
        XT_ASSERT_OK(cf_reg(a, loc, len));
        XT_ASSERT_OK(cf_reg(a, in, len));
        XT_ASSERT(cf_pextra(&p, a, len, shared, &raddr) == 0);
        XT_ASSERT_OK(cf_xfer1(a, NXL_WRITE, (uintptr_t)loc, raddr, len,
                              "peer", NULL, &xw));
        XT_ASSERT_OK(cf_xfer1(a, NXL_READ, (uintptr_t)in, raddr, len, "peer",
                              NULL, &xr));
        cf_fill(loc, len, 1800, 0);
        XT_ASSERT_OK(cf_run(xw, NULL));
        XT_ASSERT_OK(cf_run(xr, NULL));
        XT_ASSERT(cf_check_local(in, len, 1800, 0, "READ while registered") ==
                  0);

        /* The owner deregisters (and keeps the bytes, now its own). */
        XT_ASSERT(cf_pfill(&p, CF_REG_EXTRA, 0, len, 1801) == 0);
        c = cf_cmd_of(CF_OP_DEREG_EXTRA);
        XT_ASSERT(cf_call(&p, &c, &r) == 0);
        CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
        cf_fill(loc, len, 1802, 0);
        memset(in, 0x77, len);
        XT_ASSERT(cf_revoked_post(xw, shared ? "WRITE (shared) made before"
                                             : "WRITE made before") == 0);
        XT_ASSERT(cf_revoked_post(xr, shared ? "READ (shared) made before"
                                             : "READ made before") == 0);
        nxl_xfer_release(xw);
        nxl_xfer_release(xr);
        xw = xr = NULL;
        /* Made now, from the metadata still loaded. */
        if (cf_xfer1(a, NXL_WRITE, (uintptr_t)loc, raddr, len, "peer", NULL,
                     &xw) == NXL_OK) {
            XT_ASSERT(cf_revoked_post(xw, "WRITE made after") == 0);
        }
        if (cf_xfer1(a, NXL_READ, (uintptr_t)in, raddr, len, "peer", NULL,
                     &xr) == NXL_OK) {
            XT_ASSERT(cf_revoked_post(xr, "READ made after") == 0);
        }
        nxl_xfer_release(xw);
        nxl_xfer_release(xr);
        xw = xr = NULL;
        XT_ASSERT(cf_pcheck(&p, CF_REG_EXTRA, 0, len, 1801,
                            "deregistered region") == 0);
        XT_ASSERT(cf_check_byte(in, len, 0x77, "READ buffer") == 0);
        /* The peer itself is still fine. */
        XT_ASSERT_OK(cf_xfer1(a, NXL_WRITE, (uintptr_t)loc,
                              cf_raddr(&p, CF_REG_HEAP, 0), len, "peer",
                              NULL, &xw));
        XT_ASSERT_OK(cf_run(xw, NULL));
        XT_ASSERT(cf_pcheck(&p, CF_REG_HEAP, 0, len, 1802, "heap region") ==
                  0);
        nxl_xfer_release(xw);
        xw = NULL;
        nxl_agent_destroy(a);
        a = NULL;
        XT_ASSERT(cf_pstop(&p) == 0);
    }
    cf_unmap(loc, len);
    cf_unmap(in, len);
    return 0;
}

/* cf_widen rewrites the metadata blob md (len bytes) so that the region
 * at addr claims twice its length, in the core's descriptor and wherever
 * the backend's public data repeats (addr, len) as two little-endian
 * words: what a forger would do. *out_p is a new blob (free it). */
static int
cf_widen(const void *md, size_t len, uint64_t addr, void **out_p,
         size_t *out_len_p)
{
    nxl__md_t *m = NULL;
    nxl__wbuf_t w;
    nxl_blob_t b;
    size_t i, j, k, hits = 0;
    uint8_t *copy = malloc(len);

    XT_ASSERT(copy != NULL);
    memcpy(copy, md, len);
    XT_ASSERT_OK(nxl__md_decode(copy, len, &m));
    for (i = 0; i < m->nsections; i++) {
        for (j = 0; j < m->sections[i].count; j++) {
            nxl__md_region_t *r = &m->sections[i].regions[j];
            uint8_t *pub = (uint8_t *)(uintptr_t)r->pub;

            if (r->desc.addr != addr) {
                continue;
            }
            for (k = 0; pub != NULL && k + 16 <= r->pub_len; k++) {
                if (nxl__le64(pub + k) == addr &&
                    nxl__le64(pub + k + 8) == r->desc.len) {
                    nxl__put_le64(pub + k + 8, 2 * r->desc.len);
                }
            }
            r->desc.len *= 2;
            hits++;
        }
    }
    XT_ASSERT(hits > 0);
    nxl__wbuf_init(&w);
    XT_ASSERT_OK(nxl__md_encode(m, &w));
    XT_ASSERT_OK(nxl__wbuf_finish(&w, &b));
    nxl__md_free(m);
    free(copy);
    *out_p = b.data;
    *out_len_p = b.len;
    return 0;
}

/* A widened or forged blob grants nothing (issue 15): the peer's metadata
 * with one region claiming twice its length (in every place it is
 * written) either does not load, or the transfers over the second half
 * fail; that half of the peer's memory stays unread and unwritten. */
static int
t_widened(void)
{
    const uint64_t len = 256 * CF_KIB;
    nxl_xfer_t *x = NULL;
    nxl_agent_t *a = NULL;
    nxl_status_t st;
    uint64_t raddr;
    void *md = NULL, *wide = NULL;
    size_t md_len, wide_len;
    uint8_t *loc;
    cf_peer p;
    cf_cmd c;
    cf_rep r;

    CF_NEED_WHY(NXL_CAP_REMOTE, "a peer's metadata to forge");
    CF_SKIP_UNENFORCED();
    XT_ASSERT(cf_setup(&p, CF_MIB, 0, 0, &a) == 0);
    loc = cf_map(2 * len);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, 2 * len));
    /* Two heap regions back to back would let a widened one reach the
     * other; the extra region is alone in its allocation. */
    c = cf_cmd_of(CF_OP_REG_EXTRA);
    c.len = 2 * len;
    XT_ASSERT(cf_call(&p, &c, &r) == 0);
    CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
    raddr = r.value;
    /* Register only the first half: deregister all, register half. */
    c = cf_cmd_of(CF_OP_DEREG_EXTRA);
    XT_ASSERT(cf_call(&p, &c, &r) == 0);
    CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
    XT_ASSERT(cf_pfill(&p, CF_REG_EXTRA, 0, 2 * len, 1900) == 0);
    {
        cf_cmd rc = cf_cmd_of(CF_OP_REG_HALF);

        XT_ASSERT(cf_call(&p, &rc, &r) == 0);
        CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
    }
    XT_ASSERT(cf_pblob(&p, CF_MD_FULL, 0, &md, &md_len) == 0);
    XT_ASSERT(cf_widen(md, md_len, raddr, &wide, &wide_len) == 0);
    XT_ASSERT_OK(nxl_md_invalidate(a, "peer"));
    st = nxl_md_load(a, wide, wide_len, NULL, 0);
    printf("  widened metadata: load %s%s%s\n", nxl_status_name(st),
           st == NXL_OK ? "" : ": ", st == NXL_OK ? "" : nxl_last_error());
    if (st == NXL_OK) {
        memset(loc, 0x66, 2 * len);
        st = cf_xfer1(a, NXL_READ, (uintptr_t)loc, raddr + len, len, "peer",
                      NULL, &x);
        if (st == NXL_OK) {
            st = cf_run(x, NULL);
            nxl_xfer_release(x);
            x = NULL;
        }
        printf("  READ of the unregistered half: %s (%s)\n",
               nxl_status_name(st), nxl_last_error());
        XT_ASSERT(st < 0);
        XT_ASSERT(cf_check_byte(loc, len, 0x66, "READ buffer") == 0);
        cf_fill(loc, len, 1901, 0);
        st = cf_xfer1(a, NXL_WRITE, (uintptr_t)loc, raddr + len, len, "peer",
                      NULL, &x);
        if (st == NXL_OK) {
            st = cf_run(x, NULL);
            nxl_xfer_release(x);
            x = NULL;
        }
        printf("  WRITE of the unregistered half: %s (%s)\n",
               nxl_status_name(st), nxl_last_error());
        XT_ASSERT(st < 0);
    }
    XT_ASSERT(cf_pcheck(&p, CF_REG_EXTRA, len, len, 1900,
                        "unregistered half") == 0);
    free(md);
    free(wide);
    nxl_agent_destroy(a);
    cf_unmap(loc, 2 * len);
    return cf_pstop(&p);
}

/* ---------------------------------------------------------------------- */
/* Running a case: directly, or inside a rig of network namespaces. */

/* cf_rig_up makes a two-host rig named after this process (unique among
 * concurrent runs), with a guard process in its own session (the
 * harness's group kill spares it) that removes the rig when this process
 * dies however it dies. Returns 0, XT_SKIP (reason printed) or 1. */
static int
cf_rig_up(char *name, size_t cap, int *guard_p)
{
    char cmd[512];
    int pfd[2], rc;
    pid_t pid;
    char b;

    if (geteuid() != 0) {
        printf("  skip: %s needs root to make network namespaces\n",
               xt_param());
        return XT_SKIP;
    }
    snprintf(name, cap, "nxlcf%d", (int)getpid());
    XT_ASSERT(pipe(pfd) == 0);
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    XT_ASSERT(pid >= 0);
    if (pid == 0) {
        setsid();
        close(pfd[1]);
        while (read(pfd[0], &b, 1) > 0 || errno == EINTR) {
        }
        snprintf(cmd, sizeof(cmd), "%s down %s >/dev/null 2>&1", CF_RIG,
                 name);
        rc = system(cmd);
        _exit(rc == 0 ? 0 : 1);
    }
    close(pfd[0]);
    /* Peers must not hold the guard's pipe open: close-on-exec does not
     * help (they do not exec), but they die with us (PDEATHSIG). */
    *guard_p = pfd[1];
    snprintf(cmd, sizeof(cmd), "%s up %s 2", CF_RIG, name);
    rc = system(cmd);
    if (rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 77) {
        printf("  skip: rig.sh cannot make network namespaces here\n");
        close(*guard_p);
        return XT_SKIP;
    }
    if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
        close(*guard_p);
        XT_FAILF("rig.sh up %s failed (status 0x%x)", name, rc);
    }
    return 0;
}

/* cf_rig_down removes the rig and releases its guard. */
static void
cf_rig_down(const char *name, int guard)
{
    char cmd[512];

    snprintf(cmd, sizeof(cmd), "%s down %s", CF_RIG, name);
    if (system(cmd) != 0) {
        fprintf(stderr, "rig.sh down %s failed\n", name);
    }
    close(guard);
}

/* cf_case runs one case. For "<NAME>@netns" it first makes the rig and
 * enters NAME-a (the peers cf_spawn forks enter NAME-b), then removes
 * the rig, whatever the case returned. */
static int
cf_case(xt_fn fn)
{
    char rig[32];
    int guard = -1, rc;

    cf_be();
    if (!cf_netns()) {
        return fn();
    }
    rc = cf_rig_up(rig, sizeof(rig), &guard);
    if (rc != 0) {
        return rc;
    }
    snprintf(cf_env.peer_ns, sizeof(cf_env.peer_ns), "%s-b", rig);
    {
        char ns_a[48];

        snprintf(ns_a, sizeof(ns_a), "%s-a", rig);
        if (cf_enter_netns(ns_a) != 0) {
            fprintf(stderr, "setns %s: %s\n", ns_a, strerror(errno));
            cf_rig_down(rig, guard);
            return 1;
        }
    }
    cf_env.self = CF_ADDR_A;
    cf_env.other = CF_ADDR_B;
    cf_net_params();
    rc = fn();
    cf_rig_down(rig, guard);
    return rc;
}

/* The cases, once: X(name) for each t_<name>. */
#define CF_CASES(X)                                                           \
    X(sizes)                                                                  \
    X(many_descs)                                                             \
    X(repost)                                                                 \
    X(notif_xfer)                                                             \
    X(notif_standalone)                                                       \
    X(notif_self)                                                             \
    X(loopback)                                                               \
    X(sidechannel)                                                            \
    X(invalidate)                                                             \
    X(md_errors)                                                              \
    X(md_partial)                                                             \
    X(peer_killed)                                                            \
    X(threads)                                                                \
    X(bad_input)                                                              \
    X(wait_timeout)                                                           \
    X(release_inflight)                                                       \
    X(telemetry)                                                              \
    X(prepped)                                                                \
    X(idle_cpu)                                                               \
    X(shared)                                                                 \
    X(reg_rules)                                                              \
    X(sticky_error)                                                           \
    X(destroy_inflight)                                                      \
    X(revoked)                                                               \
    X(widened)

/* cf_case_<name> is what the harness runs for t_<name>. */
#define CF_WRAP(n)                                                            \
    static int cf_case_##n(void) { return cf_case(t_##n); }
CF_CASES(CF_WRAP)
#undef CF_WRAP

/* The suite's parameters: every built-in backend, then "<NAME>@netns"
 * for those that reach other hosts (NXL_CAP_REMOTE, less the ones below).
 * Filled before main (the harness reads the list at start); the backend
 * table is static. */
#define CF_MAX_PARAMS 32
static const char *cf_params[CF_MAX_PARAMS + 1];
static char cf_netns_names[CF_MAX_PARAMS][CF_NAME_MAX];

/* REMOTE backends that serve only peers on their own host and network
 * namespace by design (SHM refuses a peer in another network namespace
 * with NXL_ERR_NOT_SUPPORTED, docs/backends.md "SHM"). A new REMOTE
 * backend runs across namespaces unless it is listed here. */
static const char *const cf_same_host_only[] = {"SHM", NULL};

/* cf_host_bound says whether backend be is in cf_same_host_only. */
static bool
cf_host_bound(const char *be)
{
    size_t i;

    for (i = 0; cf_same_host_only[i] != NULL; i++) {
        if (strcasecmp(be, cf_same_host_only[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* cf_params_init builds cf_params from xt_backends. */
__attribute__((constructor)) static void
cf_params_init(void)
{
    nxl_plugin_info_t info;
    size_t n = 0, k, m = 0;

    for (k = 0; xt_backends[k] != NULL && n < CF_MAX_PARAMS; k++) {
        cf_params[n++] = xt_backends[k];
    }
    for (k = 0; xt_backends[k] != NULL && n < CF_MAX_PARAMS; k++) {
        if (nxl_plugin_info(xt_backends[k], &info) == NXL_OK &&
            (info.caps & NXL_CAP_REMOTE) && !cf_host_bound(xt_backends[k])) {
            snprintf(cf_netns_names[m], CF_NAME_MAX, "%s" CF_NETNS_SUFFIX,
                     xt_backends[k]);
            cf_params[n++] = cf_netns_names[m++];
        }
    }
    cf_params[n] = NULL;
}

const xt_suite xt_suite_conformance = {
    .name = "conformance",
    .timeout_s = 60,
    .params = cf_params,
    .cases = (const xt_case[]){
#define CF_ENTRY(n) {#n, cf_case_##n},
        CF_CASES(CF_ENTRY)
#undef CF_ENTRY
        {NULL, NULL},
    },
};
