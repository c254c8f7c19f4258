/*
 * xt_conf.h - the fixtures of the backend conformance suite
 * (tests/test_conformance.c, cases in tests/conf_*.c).
 *
 * A case runs in two processes: the test process and a forked peer, each
 * with one agent holding only the backend under test (cf_agent). The peer
 * is driven through a pair of pipes, a tiny command protocol (cf_cmd,
 * cf_rep, xt_conf_peer.c): it reports its side-channel port and buffer
 * addresses, fills and checks its memory, waits for notifications,
 * exchanges metadata, and can start transfers of its own. A local storage
 * backend has no peer: its cases reach a FILE target in the test
 * process's own agent instead (cf_tgt, xt_conf_tgt.c). cf_env says where
 * the two processes live (loopback, or two network namespaces of a rig).
 *
 * The cf_ prefix is the suite's own; helpers return 0 on success and 1
 * (after printing why, XT_FAILF) on failure unless they say otherwise.
 */
#ifndef NXL_TESTS_XT_CONF_H
#define NXL_TESTS_XT_CONF_H

#include "harness.h"
#include "xt_netns.h"

#include <nxl/nxl_backend.h>

#include <stdbool.h>
#include <stdint.h>

#define CF_NAME_MAX 32
#define CF_MSG_MAX 64
#define CF_ERR_MAX 256
#define CF_NQ_MAX 1024
#define CF_KIB ((uint64_t)1024)
#define CF_MIB ((uint64_t)1024 * 1024)
#define CF_XFER_TIMEOUT_MS 20000

/* Agent flags for cf_agent. */
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
    CF_OP_START = 1,      /* deferred peer: set up now, answer a hello */
    CF_OP_FILL,           /* region, off, len, seed */
    CF_OP_CHECK,          /* region, off, len, seed -> status 0 / 1 */
    CF_OP_CHECK_STRIDED,  /* + stride, count, seed2 (the gaps) */
    CF_OP_NOTIF_WAIT,     /* arg = timeout; len > 0: check data on arrival */
    CF_OP_NOTIF_NONE,     /* arg = ms: nothing may arrive meanwhile */
    CF_OP_NOTIF_SEND,     /* name, msg */
    CF_OP_MD_GET,         /* arg = CF_MD_*, region -> blob */
    CF_OP_MD_FETCH,       /* port, name */
    CF_OP_MD_SEND,        /* port */
    CF_OP_MD_CHECK,       /* name, raddr, len (0 = no dlist) */
    CF_OP_MD_INVAL_LOCAL, /* port */
    CF_OP_REG_EXTRA,      /* len, arg 1 = shared memory -> value = address */
    CF_OP_XFER,           /* arg = op, region, off, len -> name @ raddr */
    CF_OP_IDLE_CPU,       /* arg = ms -> value = cpu us, value2 = wall us */
    CF_OP_DEREG_EXTRA,    /* deregister the extra region, keep its memory */
    CF_OP_REG_HALF,       /* register the first half of the extra region */
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
#define CF_ASSERT_ONE_OF(expr, w1, w2)                                         \
    do {                                                                       \
        nxl_status_t s_ = (expr);                                              \
        if (s_ != (w1) && s_ != (w2))                                          \
            XT_FAILF("%s -> %s, want %s or %s (%s)", #expr,                    \
                     nxl_status_name(s_), nxl_status_name(w1),                 \
                     nxl_status_name(w2), nxl_last_error());                   \
        if (nxl_last_error()[0] == '\0')                                       \
            XT_FAILF("%s -> %s without an nxl_last_error message", #expr,      \
                     nxl_status_name(s_));                                     \
    } while (0)

/* CF_ASSERT_PEER: a status the peer reported (its message in p->err). */
#define CF_ASSERT_PEER(p, expr, want)                                          \
    do {                                                                       \
        nxl_status_t s_ = (expr);                                              \
        if (s_ != (want))                                                      \
            XT_FAILF("peer: %s -> %s, want %s (%s)", #expr,                    \
                     nxl_status_name(s_), nxl_status_name(want), (p)->err);    \
        if ((want) < 0 && (p)->err[0] == '\0')                                 \
            XT_FAILF("peer: %s -> %s without an nxl_last_error message",       \
                     #expr, nxl_status_name(s_));                              \
    } while (0)

/* cf_caps names the NXL_CAP_* bits of caps ("REMOTE|NOTIF") in buf. */
const char *cf_caps(uint32_t caps, char *buf, size_t cap);

/* CF_NEED_WHY skips a case when the backend under test lacks capabilities
 * (NXL_CAP_* bits from nxl_plugin_info) or DRAM support, saying which and
 * what of the case needs them (why). */
#define CF_NEED_WHY(want, why)                                                 \
    do {                                                                       \
        nxl_plugin_info_t i_;                                                  \
        char m_[64], h_[64];                                                   \
        XT_ASSERT_OK(nxl_plugin_info(cf_be(), &i_));                           \
        XT_SKIP_IF((i_.caps & (want)) != (want), "%s lacks %s (has %s): %s",   \
                   cf_be(), cf_caps((want) & ~i_.caps, m_, sizeof(m_)),        \
                   cf_caps(i_.caps, h_, sizeof(h_)), (why));                   \
        XT_SKIP_IF(!(i_.mem_kinds & (1u << NXL_DRAM)), "%s lacks DRAM",        \
                   cf_be());                                                   \
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

/* cf_fill writes pattern seed to len bytes at p, p[0] being byte pidx of
 * the pattern. */
void cf_fill(uint8_t *p, uint64_t len, uint32_t seed, uint64_t pidx);
/* cf_find_bad returns the first index not matching the pattern, or len. */
uint64_t cf_find_bad(const uint8_t *p, uint64_t len, uint32_t seed,
                     uint64_t pidx);
/* cf_check_local: len bytes at p hold pattern seed from byte pidx on;
 * what names them in the failure. */
int cf_check_local(const uint8_t *p, uint64_t len, uint32_t seed, uint64_t pidx,
                   const char *what);
/* cf_check_byte checks that len bytes all equal v (untouched guards). */
int cf_check_byte(const uint8_t *p, uint64_t len, uint8_t v, const char *what);

/* cf_map maps len bytes of private anonymous memory (NULL on failure);
 * cf_unmap unmaps them (accepts NULL). */
uint8_t *cf_map(size_t len);
void cf_unmap(void *p, size_t len);
/* cf_cpu_us is the CPU time (user + system) this process used, in us. */
uint64_t cf_cpu_us(void);

/* ---------------------------------------------------------------------- */
/* Where the two processes of a case live: both on 127.0.0.1, or (params
 * "<NAME>@netns") in two namespaces of a rig. The peer swaps self and
 * other after it entered its namespace: the test process lives in NAME-a
 * (XT_RIG_ADDR_A), the peer in NAME-b (XT_RIG_ADDR_B). */

#define CF_NETNS_SUFFIX "@netns"

typedef struct {
    char backend[CF_NAME_MAX]; /* the backend type (param minus suffix) */
    const char *self;          /* this process's address */
    const char *other;         /* the other process's address */
    char peer_ns[48];          /* namespace the peer enters; "" = none */
    nxl_param_t params[4];     /* backend params of the netns variant */
    nxl_params_t plist;
} cf_net;

/* cf_env is this process's side of the case (xt_conf.c); the suite's
 * runner fills it for a netns variant, a peer after it entered its
 * namespace. */
extern cf_net cf_env;

/* cf_be returns the type of the backend under test: the suite parameter
 * without the "@netns" suffix. */
const char *cf_be(void);
/* cf_netns is true when this case runs across network namespaces. */
bool cf_netns(void);
/* cf_net_params fills the backend params of the netns variant for this
 * process's address: TCP binds its data server to it; UCX treats the
 * peer as another host (same_host=off: the rig shares the boot id and pid
 * namespace, so the copy path would bypass the network) and is limited
 * to TCP over the veth (shared memory and cma also cross network
 * namespaces, and a loopback lane would reach the wrong namespace's lo).
 * Other backends get none. */
void cf_net_params(void);

/* cf_agent makes an agent holding only the backend under test, with the
 * CF_* flags, listening on cf_env.self. */
nxl_status_t cf_agent(const char *name, unsigned flags, nxl_agent_t **agent_p);
/* cf_dl is a DRAM list of the n descriptors at d. */
nxl_dlist_t cf_dl(const nxl_desc_t *d, size_t n);
/* cf_reg and cf_dereg register and deregister len bytes of DRAM at p. */
nxl_status_t cf_reg(nxl_agent_t *a, const void *p, uint64_t len);
nxl_status_t cf_dereg(nxl_agent_t *a, const void *p, uint64_t len);
/* cf_run posts x and waits for it: the status of the whole transfer. */
nxl_status_t cf_run(nxl_xfer_t *x, const nxl_opts_t *opts);
/* cf_xfer1 builds a one-descriptor transfer local <-> remote. */
nxl_status_t cf_xfer1(nxl_agent_t *a, nxl_op_t op, uint64_t laddr,
                      uint64_t raddr, uint64_t len, const char *remote,
                      const nxl_opts_t *opts, nxl_xfer_t **x_p);
/* cf_opts_peer is options addressing the side channel of the other
 * process at port; cf_opts_notif options carrying notification msg. */
void cf_opts_peer(nxl_opts_t *o, uint16_t port);
void cf_opts_notif(nxl_opts_t *o, const char *msg);
/* cf_nq_next returns the next notification of agent a, waiting up to
 * timeout_ms; NXL_ERR_TIMEOUT when none came. */
nxl_status_t cf_nq_next(nxl_agent_t *a, cf_nq *q, int timeout_ms,
                        cf_notif *out);
/* cf_notif_is: the notification came from agent with message msg. */
int cf_notif_is(const cf_notif *n, const char *agent, const char *msg,
                size_t len);

/* ---------------------------------------------------------------------- */
/* The peer process (xt_conf_peer.c). */

/* cf_spawn forks a peer (killed with us via PR_SET_PDEATHSIG) into
 * cf_env.peer_ns when that is set. A deferred peer sets its agent up only
 * at cf_peer_start. Fork before creating agents here: the child of a
 * threaded process must not touch the library's state. */
int cf_spawn(cf_peer *p, const cf_peer_cfg *cfg);
/* cf_peer_start has a deferred peer set up and reads its hello. */
int cf_peer_start(cf_peer *p);
/* cf_cmd_of is a zeroed command op. */
cf_cmd cf_cmd_of(int op);
/* cf_send sends a command; cf_recv reads a reply, and a blob after it
 * goes to *blob_p (malloc'ed) or is dropped; cf_call is both, dropping
 * any blob. The peer's nxl_last_error lands in p->err. */
int cf_send(cf_peer *p, const cf_cmd *c);
int cf_recv(cf_peer *p, cf_rep *r, void **blob_p);
int cf_call(cf_peer *p, const cf_cmd *c, cf_rep *r);
/* cf_raddr is the peer's address of offset off in a region. */
uint64_t cf_raddr(const cf_peer *p, int region, uint64_t off);
/* cf_pfill has the peer write pattern seed to [off, off + len) of
 * region. */
int cf_pfill(cf_peer *p, int region, uint64_t off, uint64_t len, uint32_t seed);
/* cf_pcheck: the peer's [off, off + len) of region holds pattern seed. */
int cf_pcheck(cf_peer *p, int region, uint64_t off, uint64_t len, uint32_t seed,
              const char *what);
/* cf_pmd_check is the peer's nxl_md_check of agent name and, with len >
 * 0, the region [addr, addr + len). */
nxl_status_t cf_pmd_check(cf_peer *p, const char *name, uint64_t addr,
                          uint64_t len);
/* cf_pmd runs a side-channel command (FETCH, SEND, INVAL_LOCAL) on the
 * peer against the listener at port. */
nxl_status_t cf_pmd(cf_peer *p, int op, uint16_t port, const char *name);
/* cf_pblob gets the peer's metadata of a kind (malloc'ed copy). */
int cf_pblob(cf_peer *p, int kind, int region, void **data_p, size_t *len_p);
/* cf_pnone: no further notification reaches the peer within ms. */
int cf_pnone(cf_peer *p, int ms);
/* cf_pstop ends the peer cleanly: destroy, free and exit 0 (under ASan
 * the leak checker runs in the peer too). */
int cf_pstop(cf_peer *p);
/* cf_pkill kills the peer with SIGKILL and reaps it. */
void cf_pkill(cf_peer *p);
/* cf_fetch loads the peer's metadata through its side channel. */
nxl_status_t cf_fetch(nxl_agent_t *a, const cf_peer *p);
/* cf_setup: the common start of a case: a peer with a heap region (and
 * optionally a shared one), then this process's agent "main" with the
 * peer's metadata loaded. */
int cf_setup(cf_peer *p, uint64_t heap, uint64_t shared, unsigned flags,
             nxl_agent_t **a_p);

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
    cf_peer peer; /* PEER */
    int region;   /* PEER: which region of the peer (CF_REG_*) */
    int fd;       /* FILE, else -1 */
    uint8_t *mem; /* MEM */
    uint64_t len; /* FILE, MEM: the registered length */
} cf_tgt;

/* CF_NEED_TGT skips a case unless it has a target: a local storage
 * backend (FILE target) runs it, any other backend needs REMOTE (peer
 * target) plus the capabilities want. */
#define CF_NEED_TGT(want)                                                      \
    do {                                                                       \
        if (!cf_file_tgt())                                                    \
            CF_NEED_WHY(NXL_CAP_REMOTE | (want),                               \
                        "the case needs a peer process (or FILE memory "       \
                        "for a local backend)");                               \
    } while (0)

/* cf_file_tgt: the backend under test is a local storage backend, so its
 * cases target a FILE. */
bool cf_file_tgt(void);
/* cf_has_cap: the backend under test has every capability of want. */
bool cf_has_cap(uint32_t want);
/* cf_tinit makes a local target of kind FILE or MEM with len bytes. */
int cf_tinit(cf_tgt *t, cf_tkind kind, uint64_t len);
/* cf_tregister registers a FILE or MEM target with agent a. */
nxl_status_t cf_tregister(const cf_tgt *t, nxl_agent_t *a);
/* cf_tattach makes the target reachable from agent a: the peer's
 * metadata fetched, or the file/buffer registered with a. */
nxl_status_t cf_tattach(cf_tgt *t, nxl_agent_t *a);
/* cf_tsetup_sh: the common start of a case on a target of len bytes: a
 * peer (with a shared region of shared bytes) and agent "main" with its
 * metadata (cf_setup), or agent "main" (no listener: nothing to exchange)
 * with a registered FILE target. cf_tsetup is that without a shared
 * region. */
int cf_tsetup_sh(cf_tgt *t, uint64_t len, uint64_t shared, unsigned flags,
                 nxl_agent_t **a_p);
int cf_tsetup(cf_tgt *t, uint64_t len, unsigned flags, nxl_agent_t **a_p);
/* cf_tstop ends the target after the case's agents are destroyed: the
 * peer stops cleanly, the file is closed, the buffer unmapped. */
int cf_tstop(cf_tgt *t);
/* cf_tname is the agent name under which a reaches the target. */
const char *cf_tname(const cf_tgt *t, nxl_agent_t *a);
/* cf_taddr and cf_tdev are the descriptor address of offset off of the
 * target and its dev_id. */
uint64_t cf_taddr(const cf_tgt *t, uint64_t off);
uint64_t cf_tdev(const cf_tgt *t);
/* cf_tdesc describes [off, off + len) of the target. */
nxl_desc_t cf_tdesc(const cf_tgt *t, uint64_t off, uint64_t len);
/* cf_tdl is a list of the n descriptors at d of the target's kind. */
nxl_dlist_t cf_tdl(const cf_tgt *t, const nxl_desc_t *d, size_t n);
/* cf_txfer1 builds a one-descriptor transfer between local DRAM at laddr
 * and [roff, roff + len) of the target. */
nxl_status_t cf_txfer1(nxl_agent_t *a, nxl_op_t op, uint64_t laddr,
                       const cf_tgt *t, uint64_t roff, uint64_t len,
                       const nxl_opts_t *opts, nxl_xfer_t **x_p);
/* cf_tfill writes pattern seed to [off, off + len) of the target. */
int cf_tfill(cf_tgt *t, uint64_t off, uint64_t len, uint32_t seed);
/* cf_tcheck: [off, off + len) of the target holds pattern seed. */
int cf_tcheck(cf_tgt *t, uint64_t off, uint64_t len, uint32_t seed,
              const char *what);
/* cf_tcheck_strided: count slots of stride bytes from offset 0 each hold
 * seed in their first len bytes and seed2 in the rest (the gaps). */
int cf_tcheck_strided(cf_tgt *t, uint64_t len, uint64_t stride, uint64_t count,
                      uint32_t seed, uint32_t seed2, const char *what);

/* ---------------------------------------------------------------------- */
/* The cases, once: X(name) for each t_<name>, in the order they run. */
#define CF_CASES(X)                                                            \
    X(sizes)            /* conf_xfer.c */                                      \
    X(many_descs)       /* conf_xfer.c */                                      \
    X(repost)           /* conf_xfer.c */                                      \
    X(notif_xfer)       /* conf_notif.c */                                     \
    X(notif_standalone) /* conf_notif.c */                                     \
    X(notif_self)       /* conf_notif.c */                                     \
    X(loopback)         /* conf_xfer.c */                                      \
    X(sidechannel)      /* conf_md.c */                                        \
    X(invalidate)       /* conf_md.c */                                        \
    X(md_errors)        /* conf_md.c */                                        \
    X(md_partial)       /* conf_md.c */                                        \
    X(peer_killed)      /* conf_failure.c */                                   \
    X(threads)          /* conf_threads.c */                                   \
    X(bad_input)        /* conf_threads.c */                                   \
    X(wait_timeout)     /* conf_failure.c */                                   \
    X(release_inflight) /* conf_failure.c */                                   \
    X(telemetry)        /* conf_xfer.c */                                      \
    X(prepped)          /* conf_xfer.c */                                      \
    X(idle_cpu)         /* conf_threads.c */                                   \
    X(shared)           /* conf_xfer.c */                                      \
    X(reg_rules)        /* conf_reg.c */                                       \
    X(sticky_error)     /* conf_failure.c */                                   \
    X(destroy_inflight) /* conf_failure.c */                                   \
    X(revoked)          /* conf_reg.c */                                       \
    X(revoked_again)    /* conf_reg.c */                                       \
    X(widened)          /* conf_reg.c */

/* t_<name> runs one case: 0, XT_SKIP or 1 (harness.h). */
#define CF_DECLARE(n) int t_##n(void);
CF_CASES(CF_DECLARE)
#undef CF_DECLARE

#endif /* NXL_TESTS_XT_CONF_H */
