/*
 * ucx.h - internal objects of the UCX backend (libucp).
 *
 * One ucp_context per engine (features RMA, AM and WAKEUP) and num_workers
 * workers; the conn info carries worker 0's address plus this process's
 * identity (pid, start time, boot id, pid namespace) so a peer can tell
 * whether it runs on the same host.
 *
 * Data paths, chosen per transfer in prep:
 *   - UCX: ucp_put_nbx / ucp_get_nbx per descriptor (a bounded window in
 *     flight, one tracker counting completions), ucp_ep_flush_nbx after a
 *     WRITE, then the notification as an active message;
 *   - copy: a peer on this host in the same pid namespace gets DRAM
 *     transfers by cross-memory attach (process_vm_readv/writev over iovec
 *     batches, in slices the service thread helps copy; memcpy when the
 *     peer lives in this process, or when every remote region of the
 *     transfer lies in a memfd from nxl_mem_alloc_shared that this engine
 *     mapped at md_unpack via pidfd_getfd: the map path). UCX 1.13 has no
 *     RMA lane for user memory on one host (cma serves only rendezvous, so
 *     ucp_put_nbx falls back to software emulation over sysv active
 *     messages, which needs the target's CPU); see docs/backends/ucx.md.
 *
 * Liveness: endpoints are in PEER mode (err_mode auto, with the mm
 * transports' error handling switched on so a same-host peer keeps shared
 * memory), same-host peers are also watched with a pidfd, so a dead peer
 * surfaces as NXL_ERR_REMOTE_DISCONNECT and forced closes cancel what was
 * in flight. docs/backends/ucx.md has the measurements behind this.
 *
 * Locking (the ops table sets NXL_CAP_THREAD_SAFE): eng->lock guards the
 * peer list, the epoll set and peer state changes; each worker's lock
 * guards the ucp worker, its endpoints, remote keys used on it, trackers
 * and the requests bound to it. Order: eng->lock, then worker locks in
 * index order. UCX callbacks run with their worker's lock held and never
 * take eng->lock: they set flags that are acted on after the lock drops.
 */
#ifndef NXL_BACKENDS_UCX_H
#define NXL_BACKENDS_UCX_H

#include <nxl/nxl_backend.h>

#include "lstream.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>
#include <ucp/api/ucp.h>

#if UCP_API_VERSION < UCP_VERSION(1, 11)
#error "the UCX backend needs the UCP nbx active-message API (UCX >= 1.11)"
#endif

#define BE_UCX_CONN_MAGIC 0x554c584eu /* "NXLU" */
#define BE_UCX_CONN_VERSION 1u
#define BE_UCX_PUB_VERSION 2u
/* A published region: a header (version u8, kind u8, flags u8, 0 u8, key
 * len u32), the packed key, with BE_UCX_PUB_F_MEMFD a memfd record (fd
 * u32, 0 u32, off u64, dev u64, ino u64), and last the owner's
 * registration-table record (util/regtab.h: fd u32, slot u32, generation
 * u64, token u64). */
#define BE_UCX_PUB_HDR 8u
#define BE_UCX_PUB_F_MEMFD 1u
#define BE_UCX_PUB_MEMFD 32u
#define BE_UCX_PUB_RT 24u
#define BE_UCX_BOOT_ID_LEN 40u       /* /proc/.../boot_id, NUL padded */
#define BE_UCX_NAME_MAX 256u         /* agent name with its NUL */
#define BE_UCX_ADDR_MAX (1u << 20)   /* largest worker address accepted */
#define BE_UCX_RKEY_MAX (1u << 20)   /* largest packed remote key accepted */
#define BE_UCX_NOTIF_MAX (64u << 20) /* largest notification accepted */
#define BE_UCX_MAX_WORKERS 64u

#define BE_UCX_AM_NOTIF 1u /* active-message id of notifications */

#define BE_UCX_WINDOW 128u        /* UCX operations in flight per req */
#define BE_UCX_IOV_MAX 1024u      /* iovecs per process_vm_* call */
#define BE_UCX_SLICE (512u << 10) /* bytes a copy step moves */
/* ... inside post (smaller: post returns fast, small transfers still
 * finish inline). */
#define BE_UCX_POST_SLICE (256u << 10)
#define BE_UCX_LIVENESS_NS 1000000u         /* data-path liveness poll period */
#define BE_UCX_CANCEL_WAIT_NS 1000000000ull /* cancel waits this long */
#define BE_UCX_CLOSE_WAIT_NS 200000000ull   /* endpoint close on unload */
/* Parked same-host peers' pids are polled this often. */
#define BE_UCX_PARK_POLL_NS 1000000000ull
/* Err mode none: uncancelable operations are waited for this long. */
#define BE_UCX_NONE_WAIT_NS 10000000000ull
#define BE_UCX_PROBE_BYTE 0xa5u

/* Epoll tags (data.u64 of the engine's epoll set). */
#define BE_UCX_TAG_KICK 1ull
#define BE_UCX_TAG_WORKER (2ull << 56) /* | worker index */
#define BE_UCX_TAG_PIDFD (3ull << 56)  /* | peer id */
#define BE_UCX_TAG_MASK (0xffull << 56)

typedef struct be_ucx_engine be_ucx_engine_t;
typedef struct be_ucx_peer be_ucx_peer_t;
typedef struct be_ucx_req be_ucx_req_t;

/* Why a peer was flagged for failure (from a context that cannot fail
 * it on the spot). */
enum {
    BE_UCX_WHY_EP = 1, /* UCX endpoint error callback (PEER mode) */
    BE_UCX_WHY_EXIT,   /* its process exited (copy path saw ESRCH) */
    BE_UCX_WHY_OP,     /* an operation failed with a transport error */
    BE_UCX_WHY_RESET   /* an endpoint could not be recreated */
};

/* be_ucx_flag_peer marks p for failure; the next liveness pass fails it
 * (any context, any lock). */
void be_ucx_flag_peer(be_ucx_peer_t *p, int why);

/* err_mode values. */
typedef enum be_ucx_err {
    BE_UCX_ERR_AUTO = 0, /* NONE for same-host peers, PEER for others */
    BE_UCX_ERR_NONE = 1,
    BE_UCX_ERR_PEER = 2
} be_ucx_err_t;

/* Data paths of a request. */
typedef enum be_ucx_path {
    BE_UCX_PATH_UCX = 0,  /* ucp_put_nbx / ucp_get_nbx */
    BE_UCX_PATH_CMA = 1,  /* process_vm_readv / writev */
    BE_UCX_PATH_COPY = 2, /* memcpy: the peer lives in this process */
    BE_UCX_PATH_MAP = 3   /* memcpy into the peer's memfds mapped here */
} be_ucx_path_t;

/* Phases of a posted request. */
typedef enum be_ucx_phase {
    BE_UCX_PH_DATA = 0, /* issuing (or copying) descriptors */
    BE_UCX_PH_DRAIN,    /* all issued (and the flush): wait for UCX */
    BE_UCX_PH_NOTIF,    /* data complete: send the notification */
    BE_UCX_PH_NOTIF_WAIT,
    BE_UCX_PH_DONE
} be_ucx_phase_t;

/* This process's identity, as published in conn info. */
typedef struct be_ucx_ident {
    uint32_t pid;
    uint64_t starttime; /* /proc/<pid>/stat field 22 */
    uint64_t pidns_dev; /* stat of /proc/self/ns/pid */
    uint64_t pidns_ino;
    uint64_t netns_ino;  /* stat of /proc/self/ns/net (not published) */
    uint64_t probe_addr; /* a byte peers read to probe CMA */
    uint64_t token;      /* random per engine: tells engines apart */
    char boot_id[BE_UCX_BOOT_ID_LEN];
    char host[64];
} be_ucx_ident_t;

/* A decoded conn info. */
typedef struct be_ucx_conn {
    be_ucx_ident_t id;
    const uint8_t *addr;
    uint32_t addr_len;
} be_ucx_conn_t;

/* be_ucx_worker_t: one ucp worker and the requests bound to it. */
typedef struct be_ucx_worker {
    pthread_mutex_t lock;
    be_ucx_engine_t *eng;
    unsigned idx;
    ucp_worker_h h;
    int efd;              /* ucp_worker_get_efd, in eng->epfd */
    be_ucx_req_t *active; /* posted requests (lock) */
} be_ucx_worker_t;

/* be_ucx_trk_t counts a request's UCX operations in flight; it is the
 * user_data of their callbacks. When a request must let go of operations
 * that UCX cannot cancel (a dead peer in err mode NONE), the tracker is
 * orphaned: req becomes NULL and it lives until the workers are destroyed,
 * which completes those operations. */
typedef struct be_ucx_trk {
    be_ucx_req_t *req;   /* NULL once orphaned */
    unsigned pending;    /* operations not completed (worker lock) */
    ucs_status_t status; /* first failure */
    uint8_t *nbuf;       /* the notification on the wire */
    size_t ncap;
    struct be_ucx_trk *next; /* engine orphan list */
} be_ucx_trk_t;

/* be_ucx_pep_t: a peer's endpoint on one worker. It outlives the peer
 * while a graceful close is still running (eng->closing), or while it is
 * parked for a later load of the same conn info (eng->parked). */
typedef struct be_ucx_pep {
    be_ucx_engine_t *eng;
    be_ucx_peer_t *peer; /* NULL once the peer let go (worker lock) */
    unsigned widx;
    ucp_ep_h ep;
    void *close_req;         /* ucp_ep_close_nbx request in flight */
    bool failed;             /* UCX reported an error on it */
    struct be_ucx_pep *next; /* eng->closing */
} be_ucx_pep_t;

/* be_ucx_park_t: the endpoints of a live peer whose metadata was
 * unloaded, kept for a later load of the same conn info (a reload), so
 * the peer's endpoints, which UCX paired with these, stay valid: closing
 * them while the peer lives loses its multi-fragment active messages and
 * leaks its shared-memory attachments (docs/reliability.md, defects 1
 * and 2). Closed when a load brings other conn info for that name, when
 * UCX fails one of them or the peer's process exits (the liveness pass),
 * or at fini. Remote keys are not kept: a reload unpacks those of the new
 * metadata. eng->lock guards the list; the endpoints' fields stay under
 * their worker locks. */
typedef struct be_ucx_park {
    struct be_ucx_park *next; /* eng->parked */
    char name[BE_UCX_NAME_MAX];
    uint8_t *info; /* the conn info the endpoints were made for */
    size_t info_len;
    bool same_host; /* another process on this host: */
    pid_t pid;      /* polled while parked */
    uint64_t starttime;
    be_ucx_pep_t **eps; /* [nworkers]; NULL where none was kept */
} be_ucx_park_t;

/* be_ucx_md_t: a local registration. What deregistration reads (memh,
 * the table slot) comes first: among many regions the record is not
 * cached, and the core prefetches its first line only. With
 * eng->self_views the allocation goes on with room for the loopback view
 * of it (a be_ucx_rmd_t with nworkers keys, at md + 1) that md_unpack
 * hands the core for this engine's own peer: one record, and one free,
 * fewer per region. */
typedef struct be_ucx_md {
    ucp_mem_h memh;   /* its remote key is packed by md_pack, not kept */
    uint32_t rt_slot; /* its slot in the engine's registration table */
    nxl_mem_t kind;
    uint64_t rt_gen;
    uint64_t addr;
    uint64_t len;
    int backing_fd;       /* memfd (nxl_mem_alloc_shared) or -1; the
                           * core owns it */
    atomic_uint holds;    /* 1 for the registration, 1 more while its
                           * loopback view (below) is out; the last
                           * one frees the record */
    uint64_t backing_off; /* offset of addr inside it */
    uint64_t dev, ino;    /* its identity, for peers to verify */
} be_ucx_md_t;

/* be_ucx_map_t: a peer's memfd mapped here, shared by its rmds (eng->lock
 * guards the list and refs). */
typedef struct be_ucx_map {
    struct be_ucx_map *next; /* peer->maps */
    uint64_t dev, ino;
    uint8_t *base;
    size_t size;
    unsigned refs;
} be_ucx_map_t;

/* be_ucx_rmd_t: a peer's region with its remote key unpacked once per
 * endpoint (one per worker). Holds a peer reference. */
typedef struct be_ucx_rmd {
    /* What md_unload reads of a record without keys comes first (the
     * core prefetches the first line only). */
    be_ucx_peer_t *peer;
    be_ucx_map_t *map; /* the peer's memfd mapped here, or NULL */
    nxl_mem_t kind;
    bool linked;   /* on peer->rmds: the peer has endpoints (else it
                    * never has keys, nor keys to unpack again) */
    bool embedded; /* the loopback view inside its registration's
                    * allocation (be_ucx_md_t), which it holds */
    uint64_t addr;
    uint64_t len;
    uint8_t *packed; /* the packed key, for endpoint resets; it follows
                      * rkey[] in the record's allocation. NULL when
                      * not linked */
    size_t packed_len;
    uint64_t delta; /* with map: peer address a is a + delta here */
    const nxl__regtab_slot_t *rt;   /* same host: the owner's slot for it */
    uint64_t rt_gen;                /* and the generation it was loaded with */
    struct be_ucx_rmd *prev, *next; /* peer->rmds (eng->lock), if linked */
    ucp_rkey_h rkey[];              /* [nworkers]; NULL where no endpoint */
} be_ucx_rmd_t;

/* be_ucx_peer_t: a loaded peer (peer_load). */
struct be_ucx_peer {
    be_ucx_engine_t *eng;
    char name[BE_UCX_NAME_MAX];
    uint64_t id;      /* epoll tag of its pidfd */
    atomic_uint refs; /* peer_load + one per rmd */
    atomic_bool dead;
    atomic_bool fail_pending; /* fail it soon, for fail_why: */
    atomic_int fail_why;      /* BE_UCX_WHY_* */
    atomic_bool unloaded;
    bool self;       /* this very engine (loopback) */
    bool same_host;  /* same boot and pid namespace */
    bool in_process; /* another engine of this process */
    bool use_copy;   /* DRAM by CMA / memcpy */
    bool err_peer;   /* endpoints in UCP_ERR_HANDLING_MODE_PEER */
    pid_t pid;
    uint64_t starttime;
    int pidfd;     /* -1: none (not same host, self, no pidfd) */
    uint8_t *addr; /* the peer's worker address */
    size_t addr_len;
    uint8_t *info; /* its whole conn info (endpoint reuse) */
    size_t info_len;
    be_ucx_pep_t **eps; /* [nworkers]; NULL entries without UCX */
    be_ucx_rmd_t *rmds;
    be_ucx_map_t *maps;    /* its memfds mapped here (eng->lock) */
    nxl__regtab_view_t rt; /* same host: its registration table */
    uint32_t rt_fd;        /* (eng->lock) the table's fd number there */
    char why[192];         /* why it is dead */
    /* Same host, another process: every notification to it (standalone
     * or after a transfer's data) goes on this stream, in order. NULL:
     * active messages (remote, this process, or a peer without a
     * listener, i.e. an older NXL). */
    nxl__ls_tx_t *tx;
    struct be_ucx_peer *next; /* eng->peers */
};

/* be_ucx_req_t: per-transfer state (req_size bytes the core allocates). */
struct be_ucx_req {
    be_ucx_engine_t *eng;
    const nxl_be_xfer_t *x;
    be_ucx_peer_t *peer;
    be_ucx_worker_t *w;
    be_ucx_trk_t *trk;
    be_ucx_path_t path;
    atomic_int state; /* NXL_IN_PROG while posted, else final */
    be_ucx_phase_t phase;
    size_t cursor;   /* next descriptor */
    uint64_t offset; /* bytes of descriptor cursor already copied */
    bool linked;     /* on w->active */
    bool canceling;
    bool failing;       /* stop issuing, drain, then fail */
    unsigned copy_busy; /* slices the service thread is copying */
    nxl_status_t fail_status;
    uint64_t notif_end;             /* its notification's end on peer->tx */
    ucp_request_param_t rp;         /* op parameters built in prep */
    const be_ucx_rmd_t **rchk;      /* distinct remote regions with a table */
    size_t nrchk;                   /* slot, checked at every post */
    char err[224];                  /* detail of the final error */
    struct be_ucx_req *prev, *next; /* w->active */
};

/* be_ucx_engine_t: engine state (engine_size bytes the core allocates). */
struct be_ucx_engine {
    const nxl_backend_host_t *host;
    be_ucx_err_t err_mode;
    bool detect_same_host;
    /* local_notif=stream (default): notifications to same-host peers of
     * other processes on local streams; am: as UCX active messages, some
     * 10 us faster a round trip, but a sender killed while it writes one
     * stops the receiver's notifications for good (defect 6). */
    bool notif_stream;
    bool local_copy;
    bool service; /* service thread */
    bool vram_ok; /* UCX reports CUDA memory support */
    bool tls_mm;  /* UCX_TLS may enable sysv / posix */
    ucp_context_h ctx;
    unsigned nworkers;
    be_ucx_worker_t *workers;
    atomic_uint next_worker;
    void *addr; /* worker 0's address */
    size_t addr_len;
    be_ucx_ident_t ident;
    uint64_t token;       /* names this engine's registration table */
    nxl__regtab_t regtab; /* what same-host peers check before copying */
    bool regtab_ready;
    /* Where the memory-handle and remote-key records live: huge-page
     * chunks (util/pool.h) with their own mutex (the engine is
     * NXL_CAP_THREAD_SAFE: no caller's lock covers them). Destroyed last
     * in fini. */
    nxl__pools_t *pools;
    /* Notifications from same-host peers in other processes arrive on
     * local streams (util/lstream.h), not as UCX active messages: UCX's
     * shared-memory FIFO stops for good when a sender dies in the middle
     * of writing into it (docs/reliability.md, defect 6). Listener
     * "\0nxl-ucx-<pid>-<token>"; the streams' events are in epfd (values
     * for which nxl__ls_owns is true). */
    nxl__ls_t *ls;
    /* Loopback needs no endpoints (copy path, no VRAM): registrations
     * carry room for their loopback view, found by table slot. */
    bool self_views;
    /* [NXL__REGTAB_MAX_SLOTS] reserved, touched as slots are used: the
     * registration that last took each slot (with self_views), else
     * NULL; read only after the table says the slot is live. NULL when
     * the mapping failed (no views then). */
    _Atomic(be_ucx_md_t *) *slot_md;
    int epfd;    /* worker efds, pidfds, kick */
    int kick_fd; /* eventfd in epfd */
    int done_fd; /* eventfd the agent sleeps on (service on) */
    pthread_t thread;
    bool thread_started;
    atomic_bool stop;
    pthread_mutex_t lock;
    bool lock_init;
    be_ucx_peer_t *peers;
    be_ucx_park_t *parked;      /* unloaded live peers' endpoints (lock) */
    atomic_bool park_check;     /* a parked endpoint failed */
    uint64_t next_park_poll_ns; /* (lock) */
    uint64_t next_peer_id;
    atomic_bool work_pending; /* peers with fail_pending */
    atomic_uint_fast64_t next_liveness_ns;
    pthread_mutex_t orphan_lock;
    be_ucx_trk_t *orphans;
    be_ucx_pep_t *closing; /* endpoints closing gracefully (orphan_lock) */
    unsigned ucx_major, ucx_minor, ucx_release;
};

extern const nxl_backend_ops_t nxl__be_ucx_ops;

/* --- ucx_engine.c ---------------------------------------------------- */

/* be_ucx_notify makes the agent-facing event fd readable. */
void be_ucx_notify(be_ucx_engine_t *eng);
/* be_ucx_kick wakes whoever watches eng->epfd (service thread or agent). */
void be_ucx_kick(be_ucx_engine_t *eng);
/* be_ucx_status maps a UCX status to an NXL status. */
nxl_status_t be_ucx_status(ucs_status_t st);
/* be_ucx_worker_arm arms w (lock held) so its efd fires on new events;
 * progresses again while UCX says events are pending, at most 8 times.
 * Returns true when UCX still says busy: with kick, the engine's epoll set
 * is then made readable (whoever watches it comes back at once); without,
 * the caller must come back soon itself (the service thread backs off). */
bool be_ucx_worker_arm(be_ucx_worker_t *w, bool kick);
/* be_ucx_orphan_trk moves trk to the engine's orphan list. */
void be_ucx_orphan_trk(be_ucx_engine_t *eng, be_ucx_trk_t *trk);
/* be_ucx_closing_add parks pep (its close in flight) until fini. */
void be_ucx_closing_add(be_ucx_engine_t *eng, be_ucx_pep_t *pep);

/* --- ucx_conninfo.c --------------------------------------------------- */

/* be_ucx_ident_init fills this process's identity. */
nxl_status_t be_ucx_ident_init(be_ucx_engine_t *eng);
nxl_status_t be_ucx_conn_info(void *self, nxl_blob_t *out);
/* be_ucx_starttime reads pid's start time (clock ticks since boot) into
 * *st_p, which tells a process from a later one that reuses its pid. No
 * lock needed. Returns 0, or -1 when /proc does not tell. */
int be_ucx_starttime(pid_t pid, uint64_t *st_p);
/* be_ucx_conn_parse validates and decodes peer's conn info into *c, whose
 * addr points into info. No lock needed. Returns NXL_OK, or NXL_ERR_PROTO
 * with a last-error message that names peer. */
nxl_status_t be_ucx_conn_parse(const char *peer, const void *info, size_t len,
                               be_ucx_conn_t *c);
/* be_ucx_pid_alive: pid still runs the process that started at
 * starttime. No lock needed; never blocks. */
bool be_ucx_pid_alive(pid_t pid, uint64_t starttime);

/* --- ucx_peer.c ------------------------------------------------------- */

nxl_status_t be_ucx_peer_load(void *self, const char *peer, const void *info,
                              size_t len, void **peer_ctx_p);
void be_ucx_peer_unload(void *self, void *peer_ctx);
/* be_ucx_peer_put drops a peer reference; the last one frees it. */
void be_ucx_peer_put(be_ucx_peer_t *p);
/* be_ucx_peer_fail marks p dead, fails its requests and closes its
 * endpoints. No worker lock may be held; eng->lock is taken. */
void be_ucx_peer_fail(be_ucx_engine_t *eng, be_ucx_peer_t *p, const char *why);
/* be_ucx_liveness polls pidfds (timeout_ms 0 = never blocks) and acts on
 * deferred endpoint failures. Returns events handled. No lock held. */
unsigned be_ucx_liveness(be_ucx_engine_t *eng, int timeout_ms);
/* be_ucx_park_close_all closes every parked endpoint (fini; no lock
 * held). */
void be_ucx_park_close_all(be_ucx_engine_t *eng);
/* be_ucx_peer_gone: p is known dead or its process exited (no lock). */
bool be_ucx_peer_gone(be_ucx_peer_t *p);
/* be_ucx_ep_reset replaces p's endpoint on worker w (lock held) after a
 * forced close, and unpacks p's remote keys again for it. */
nxl_status_t be_ucx_ep_reset(be_ucx_peer_t *p, be_ucx_worker_t *w);

/* --- ucx_rkey.c ------------------------------------------------------- */

nxl_status_t be_ucx_md_unpack(void *self, void *peer_ctx,
                              const nxl_desc_t *desc, nxl_mem_t kind,
                              const void *pub, size_t len, void **rmd_p);
void be_ucx_md_unload(void *self, void *rmd);

/* --- ucx_xfer.c ------------------------------------------------------- */

nxl_status_t be_ucx_prep(void *self, void *req, const nxl_be_xfer_t *xfer);
nxl_status_t be_ucx_post(void *self, void *req, const nxl_be_xfer_t *xfer);
nxl_status_t be_ucx_check(void *self, void *req);
void be_ucx_cancel(void *self, void *req);
void be_ucx_release(void *self, void *req);
nxl_status_t be_ucx_notif_send(void *self, void *peer_ctx, const void *msg,
                               size_t len);
/* be_ucx_ls_deliver hands a notification that arrived on a local stream
 * to the agent (nxl__ls_deliver_fn; it runs in progress, from
 * nxl__ls_poll). */
void be_ucx_ls_deliver(void *ctx, const char *from, const void *msg,
                       size_t len);
/* be_ucx_ls_event handles one event of epfd that belongs to the local
 * streams (accepts, marks a stream readable, flushes queued sends) and
 * wakes the agent when a stream has notifications to read; returns events
 * handled. Any thread. */
unsigned be_ucx_ls_event(be_ucx_engine_t *eng, uint64_t value, uint32_t events);

/* be_ucx_am_notif is the active-message handler of notifications. */
ucs_status_t be_ucx_am_notif(void *arg, const void *header, size_t hlen,
                             void *data, size_t len,
                             const ucp_am_recv_param_t *param);
/* be_ucx_advance moves req on (worker lock held); returns true when it
 * reached a final state. */
bool be_ucx_advance(be_ucx_req_t *req);
/* be_ucx_req_fail ends req with status (worker lock held), orphaning
 * operations UCX still holds. */
void be_ucx_req_fail(be_ucx_req_t *req, nxl_status_t status, const char *fmt,
                     ...) __attribute__((format(printf, 3, 4)));
/* be_ucx_copy_slice copies one slice (up to budget bytes) of req, or of
 * the first copy-path request of w with slices left when req is NULL.
 * Called with w's lock held; drops it during the copy and takes it again.
 * Returns whether it claimed a slice. */
bool be_ucx_copy_slice(be_ucx_worker_t *w, be_ucx_req_t *req, uint64_t budget);
/* be_ucx_help_copies copies slices of copy-path requests outside the
 * worker locks (the service thread, alongside the caller's own steps);
 * returns requests it finished. No lock held. */
unsigned be_ucx_help_copies(be_ucx_engine_t *eng);
/* be_ucx_progress_worker progresses w (lock held) and advances its
 * requests, first copying one slice when copies is set (the lock is
 * dropped meanwhile); returns events handled. */
unsigned be_ucx_progress_worker(be_ucx_worker_t *w, bool copies);

/* --- ThreadSanitizer ----------------------------------------------------
 * UCX is not instrumented. Inside ucp_worker_progress it copies
 * registered memory for peers (software RMA: its PUT and GET
 * active-message handlers) and offers no hook where NXL could acquire or
 * release the region (the hand-off contract of src/util/tsan.h), so TSan
 * would see the memcpy those handlers call race with the application's
 * own fills and checks of the region, which the peer in fact orders. So
 * the memory accesses made inside ucp_worker_progress are not recorded
 * (synchronization still is: UCX's mutexes stay paired), except those of
 * NXL's own callbacks, which UCX calls from there and which bracket their
 * bodies with be_ucx_cb_enter/leave. A TSan suppression cannot say this:
 * called_from_lib also hides UCX's mutex calls (a lock taken in libuct
 * and released from libucp then looks held forever), and a frame pattern
 * for libucp also matches NXL's callbacks, whose stacks pass through it.
 * No code without TSan. */
#if NXL__TSAN
extern _Thread_local unsigned be_ucx_tsan_depth; /* progress calls open */
#endif

/* be_ucx_worker_progress is ucp_worker_progress(h) (see above). */
static inline unsigned
be_ucx_worker_progress(ucp_worker_h h)
{
    unsigned n;

#if NXL__TSAN
    be_ucx_tsan_depth++;
    nxl__tsan_ignore_begin();
#endif
    n = ucp_worker_progress(h);
#if NXL__TSAN
    nxl__tsan_ignore_end();
    be_ucx_tsan_depth--;
#endif
    return n;
}

/* be_ucx_cb_enter starts a callback's body: its accesses are recorded
 * even when UCX runs it inside be_ucx_worker_progress. Returns what
 * be_ucx_cb_leave needs. */
static inline bool
be_ucx_cb_enter(void)
{
#if NXL__TSAN
    if (be_ucx_tsan_depth > 0) {
        nxl__tsan_ignore_end();
        return true;
    }
#endif
    return false;
}

/* be_ucx_cb_leave ends a callback's body (entered is be_ucx_cb_enter's
 * answer). */
static inline void
be_ucx_cb_leave(bool entered)
{
    if (entered) {
        nxl__tsan_ignore_begin();
    }
}

#endif /* NXL_BACKENDS_UCX_H */
