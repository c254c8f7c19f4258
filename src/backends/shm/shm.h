/*
 * shm.h - internal objects of the SHM backend (same-host DRAM and VRAM
 * transfers).
 *
 * Data paths, fastest first:
 *   - loopback (the peer is an engine of this process): memcpy;
 *   - shared regions (the peer's region lives in a memfd that this process
 *     mapped once per peer): memcpy, non-temporal stores from nt_threshold;
 *   - anything else: cross-memory attach (process_vm_readv/writev) over
 *     iovec arrays built once in prep.
 * VRAM (when the device memory kind can export and open IPC handles): a
 * peer's device allocation is opened once per peer with the kind's
 * ipc_open, and a transfer with VRAM on either side is a list of the
 * kind's blocking copies (H2D, D2H or D2D) between local memory and the
 * mapped (or, for loopback, own) remote memory, on the calling thread.
 * Large requests are cut into chunks that the calling thread and a small
 * worker pool take from a shared counter, so a starved worker costs little.
 * Notifications travel over an abstract unix stream socket per (sender engine,
 * receiver engine) pair (util/lstream.h).
 *
 * Locking: the data path (prep/post/check) takes no engine lock. Engine
 * locks: md_lock (local regions by slot, exports), pool.lock (work queue),
 * and the notification set's own (util/lstream.h). Per peer: map_lock
 * (mapping cache) and its stream's lock. Order: global lock -> md_lock.
 */
#ifndef NXL_BACKENDS_SHM_H
#define NXL_BACKENDS_SHM_H

#include <nxl/nxl_backend.h>

#include "lstream.h"
#include "util.h"

#include <nxl/nxl_memkind.h>

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>
#include <sys/uio.h>

#define BE_SHM_ENGINE_MAGIC 0x454d4853u /* "SHME" */
#define BE_SHM_MD_MAGIC 0x444d4853u     /* "SHMD" */
#define BE_SHM_RMD_MAGIC 0x524d4853u    /* "SHMR" */
#define BE_SHM_PEER_MAGIC 0x504d4853u   /* "SHMP" */
#define BE_SHM_REQ_MAGIC 0x514d4853u    /* "SHMQ" */

#define BE_SHM_IOV_MAX 1024u /* per process_vm_* call, each side */
#define BE_SHM_INLINE_IOV 4u /* iovecs per list kept in req state */
#define BE_SHM_MAX_THREADS 64u
#define BE_SHM_RATE_CLASSES 8u           /* size classes for adaptive splits */
#define BE_SHM_SOCK_MAX NXL__LS_SOCK_MAX /* abstract name after the NUL */
#define BE_SHM_NOTIF_MAX (16u << 20)     /* largest notification message */
#define BE_SHM_ALIVE_CHECK_NS 1000000u   /* data path pidfd poll period */

#define BE_SHM_WIRE_VERSION 1u /* conn info version */

typedef struct be_shm_engine be_shm_engine_t;
typedef struct be_shm_peer be_shm_peer_t;
typedef struct be_shm_req be_shm_req_t;

/* The completion eventfd's event value in the engine's epoll set (the
 * streams' values are nxl__ls_owns's). */
#define BE_SHM_EV_DONE 1ull

/* be_shm_export_t: a local device allocation exported once with ipc_get,
 * shared by the VRAM registrations inside it (engine md_lock). */
typedef struct be_shm_export {
    struct be_shm_export *next;
    uint64_t base; /* the allocation, as the kind's mem_range reports it */
    uint64_t size;
    nxl_ipc_handle_t handle;
    unsigned refs;
} be_shm_export_t;

/* be_shm_md_t: a local registration (mem_register). */
typedef struct be_shm_md {
    uint32_t magic;
    nxl_mem_t kind; /* NXL_DRAM or NXL_VRAM */
    uint64_t addr;
    uint64_t len;
    uint64_t dev_id;
    be_shm_export_t *exp; /* VRAM: its allocation's handle */
    int backing_fd;       /* memfd or -1 (the core owns it) */
    uint64_t backing_off;
    uint64_t dev; /* identity of the memfd, for peers to verify */
    uint64_t ino;
    uint32_t rt_slot; /* its slot in the engine's registration table */
    uint64_t rt_gen;
} be_shm_md_t;

/* be_shm_map_t: a peer's memfd mapped here, shared by that peer's rmds. */
typedef struct be_shm_map {
    struct be_shm_map *next;
    uint64_t dev;
    uint64_t ino;
    uint8_t *base;
    size_t size;
    unsigned refs; /* rmds using it (peer map_lock) */
} be_shm_map_t;

/* be_shm_ipc_t: a peer's device allocation opened here with the device
 * kind's ipc_open, shared by that peer's VRAM rmds (peer map_lock). */
typedef struct be_shm_ipc {
    struct be_shm_ipc *next;
    uint64_t rbase; /* the allocation in the peer */
    uint64_t rsize;
    nxl_ipc_handle_t handle;
    uint8_t *local;              /* where rbase is mapped here */
    const nxl_memkind_ops_t *dk; /* the kind that opened it */
    unsigned refs;
} be_shm_ipc_t;

/* be_shm_rmd_t: a peer's region (md_unpack). When mapped, the peer's
 * address a is reachable here at a + delta (mod 2^64): plain memory for
 * DRAM, device memory for VRAM. A VRAM region that could not be opened
 * keeps why (err, errmsg) for prep to report. */
typedef struct be_shm_rmd {
    uint32_t magic;
    nxl_mem_t kind;
    be_shm_peer_t *peer; /* holds a peer reference */
    uint64_t addr;
    uint64_t len;
    int mapped; /* loopback, shared mapping or opened VRAM */
    uint64_t delta;
    be_shm_map_t *map; /* NULL for loopback */
    be_shm_ipc_t *ipc; /* VRAM of another process */
    nxl_status_t err;  /* VRAM not reachable: why */
    char *errmsg;
    const nxl__regtab_slot_t *rt; /* the owner's slot for it, and */
    uint64_t rt_gen;              /* the generation it was loaded with */
} be_shm_rmd_t;

/* be_shm_peer_t: a loaded peer engine (peer_load). */
struct be_shm_peer {
    uint32_t magic;
    be_shm_engine_t *eng;
    char *name;
    pid_t pid;
    int self;            /* an engine of this very process */
    int pidfd;           /* -1 for self or without pidfd support */
    uint64_t starttime;  /* /proc/<pid>/stat field 22 */
    uint64_t token;      /* the peer engine's random token */
    atomic_int dead;     /* gone or unloaded: requests fail */
    atomic_int unloaded; /* peer_unload ran; free at refs == 0 */
    atomic_uint_fast64_t next_check_ns;
    atomic_uint refs;     /* peer_load + one per rmd */
    atomic_uint inflight; /* asynchronous requests running */
    atomic_uint self_gen; /* fini generation when self was last checked */

    pthread_mutex_t map_lock;
    be_shm_map_t *maps;
    be_shm_ipc_t *ipcs;
    nxl__regtab_view_t rt; /* its registration table (map_lock) */
    uint32_t rt_fd;        /* the table's fd number in the peer */

    /* Outgoing notification stream (its own lock), to the listener
     * named in the conn info. */
    char sock_name[BE_SHM_SOCK_MAX + 1];
    size_t sock_len;
    nxl__ls_tx_t *tx;
};

/* be_shm_cursor_t: a position in a pair of iovec lists. */
typedef struct be_shm_cursor {
    size_t li;
    size_t loff;
    size_t ri;
    size_t roff;
} be_shm_cursor_t;

/* be_shm_chunk_t: a byte range of a split request's CMA or copy lists. */
typedef struct be_shm_chunk {
    be_shm_cursor_t at;
    uint64_t bytes;
    int copy; /* copy lists, else CMA lists */
} be_shm_chunk_t;

/* be_shm_helper_t: a queue entry asking one worker to help with a split
 * request (take chunks until none are left). */
typedef struct be_shm_helper {
    struct be_shm_helper *next; /* work queue link (pool lock) */
    be_shm_req_t *req;
    int queued; /* still in the queue (pool lock) */
} be_shm_helper_t;

/* Request states. */
enum {
    BE_SHM_REQ_IDLE = 0,
    BE_SHM_REQ_RUNNING = 1, /* chunks in flight */
    BE_SHM_REQ_DONE = 2,
    BE_SHM_REQ_ERROR = 3
};

/* be_shm_req_t: per-transfer state (req_size bytes, zeroed by the core). */
struct be_shm_req {
    uint32_t magic;
    be_shm_engine_t *eng;
    be_shm_peer_t *peer;
    nxl_op_t op;
    /* Device path: VRAM on either side; the copy lists only, each pair one
     * blocking copy of the device kind dk in direction dir. */
    int dev_path;
    nxl_copy_dir_t dir;
    const nxl_memkind_ops_t *dk;
    /* CMA lists: independent scatter lists with equal byte totals. */
    struct iovec *cl;
    struct iovec *cr;
    size_t ncl;
    size_t ncr;
    uint64_t cma_bytes;
    /* Copy lists: pairs (local, mapped remote) of equal length. */
    struct iovec *ml;
    struct iovec *mr;
    size_t nm;
    uint64_t copy_bytes;
    /* Split plan (only with a worker pool and from split_threshold). */
    be_shm_chunk_t *chunks;
    unsigned nchunks;
    be_shm_helper_t *helpers;
    unsigned nhelpers;
    void *alloc; /* the lists, when they do not fit inline */
    void *plan;  /* chunks and helpers of a split request */
    /* The distinct remote regions, checked against their owner's
     * registration table at every post. */
    const be_shm_rmd_t **rchk;
    size_t nrchk, rchk_cap;
    /* rchk[0]'s slot and generation, copied: a one-region transfer's
     * check reads no record but the owner's slot. */
    const nxl__regtab_slot_t *rt0;
    uint64_t rt0_gen;
    /* Run state. */
    const nxl_be_xfer_t *xfer;
    atomic_int state;
    atomic_int cancel;
    atomic_int status;
    uint64_t t_post; /* when a split post started (ns) */
    unsigned rate_class;
    atomic_uint next_chunk;
    atomic_uint members; /* threads (caller + helpers) not yet done */
    struct iovec inl[4 * BE_SHM_INLINE_IOV];
    char errmsg[160]; /* message of a failure seen on another thread */
};

/* be_shm_pool_t: worker threads that help with split requests. */
typedef struct be_shm_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    be_shm_helper_t *head;
    be_shm_helper_t *tail;
    int stop;
    unsigned nthreads; /* started */
    pthread_t threads[BE_SHM_MAX_THREADS];
} be_shm_pool_t;

/* be_shm_engine_t: the engine (engine_size bytes, zeroed by the core). */
struct be_shm_engine {
    uint32_t magic;
    uint64_t token; /* random; peers read it back through CMA */
    const nxl_backend_host_t *host;
    pid_t pid;
    uint64_t starttime;
    uint8_t boot_id[16];
    uint64_t pidns;
    uint64_t netns;

    /* Params. */
    unsigned num_threads;
    uint64_t split_threshold;
    uint64_t nt_threshold;
    int split_always; /* split_policy=always: no adaptive choice */

    /* Adaptive splitting: per size class (log2 of the request), moving
     * averages of the throughput (bytes/us) seen with and without the
     * pool. Races between updates only lose a sample. */
    atomic_uint split_seq;
    atomic_uint_fast64_t rate_sync[BE_SHM_RATE_CLASSES];
    atomic_uint_fast64_t rate_split[BE_SHM_RATE_CLASSES];

    /* Lifecycle flags, so that fini undoes a partial init. */
    int locks_ready;
    int pool_ready;
    int registered; /* in the process-wide engine list */

    int done_fd; /* eventfd written by workers */
    int ep_fd;   /* epoll: done_fd and the notification streams */
    char sock_name[BE_SHM_SOCK_MAX + 1];
    size_t sock_len;
    nxl__ls_t *ls; /* listener and notification streams */

    pthread_mutex_t md_lock;
    /* Where the region records (be_shm_md_t, be_shm_rmd_t) live: huge-page
     * chunks (util/pool.h) with their own mutex (the engine is
     * NXL_CAP_THREAD_SAFE). Made first in init, destroyed last in fini. */
    nxl__pools_t *pools;
    /* The live registrations by registration-table slot (md_lock), so
     * fini can free what was left registered; a slot names one live
     * registration at a time. Peers (and this engine, for loopback)
     * check a region against the table itself, not this array. */
    be_shm_md_t **slot_md;
    uint32_t slot_md_cap;
    nxl__regtab_t regtab; /* what peers check before copying */
    int regtab_ready;
    be_shm_export_t *exports; /* md_lock */

    /* VRAM: the device memory kind probed at init (it serves the engine
     * for its whole life), or NULL with the reason in dk_why. */
    const nxl_memkind_ops_t *dk;
    char dk_why[256];

    be_shm_pool_t pool;
    be_shm_engine_t *global_next; /* process-wide engine list */
};

/* --- shm.c ---------------------------------------------------------------- */

/* The ops table the core references. */
extern const nxl_backend_ops_t nxl__be_shm_ops;

/* be_shm_peer_alive reports whether peer may still be used, polling its
 * pidfd at most every BE_SHM_ALIVE_CHECK_NS. Marks it dead otherwise. */
int be_shm_peer_alive(be_shm_peer_t *peer, int force);

/* be_shm_peer_mark_dead records that peer is gone (any thread). */
void be_shm_peer_mark_dead(be_shm_peer_t *peer, const char *why);

/* be_shm_rmd_is_mapped reports whether transfers to rmd are plain copies
 * (loopback or a shared mapping); for tests. */
int be_shm_rmd_is_mapped(const void *rmd);

/* --- shm_copy.c --------------------------------------------------------- */

/* be_shm_copy copies n bytes, with non-temporal stores when use_nt (the
 * request is at least nt_threshold bytes), else with memcpy. */
void be_shm_copy(void *dst, const void *src, size_t n, int use_nt);

/* be_shm_copy_range copies nbytes of the pair lists (dst[i] <- src[i])
 * starting at cursor (li/loff). Stops early (returning NXL_ERR_CANCELED)
 * when *cancel becomes set. */
nxl_status_t be_shm_copy_range(const struct iovec *dst, const struct iovec *src,
                               size_t n, be_shm_cursor_t at, uint64_t nbytes,
                               int use_nt, const atomic_int *cancel);

/* be_shm_cma_range moves nbytes between this process (l) and pid (r)
 * starting at cursor at, in windows of at most BE_SHM_IOV_MAX iovecs per
 * side, continuing after partial transfers. write selects
 * process_vm_writev. peer (may be NULL) is marked dead on ESRCH; cancel
 * (may be NULL) is checked between calls. */
nxl_status_t be_shm_cma_range(pid_t pid, int write, const struct iovec *l,
                              size_t nl, const struct iovec *r, size_t nr,
                              be_shm_cursor_t at, uint64_t nbytes,
                              be_shm_peer_t *peer, const atomic_int *cancel);

/* be_shm_cursor_advance moves a cursor over list (n entries) by bytes;
 * side 0 moves li/loff, side 1 ri/roff. */
void be_shm_cursor_advance(be_shm_cursor_t *c, int side,
                           const struct iovec *list, size_t n, uint64_t bytes);

/* --- shm_pool.c --------------------------------------------------------- */

/* be_shm_pool_start starts n workers (n may be 0). */
nxl_status_t be_shm_pool_start(be_shm_engine_t *eng, unsigned n);
/* be_shm_pool_stop joins the workers; the queue must be empty. */
void be_shm_pool_stop(be_shm_engine_t *eng);
/* be_shm_split_post runs a split request: queues its helpers, takes
 * chunks on the calling thread, withdraws helpers no worker picked up.
 * Returns the final status, or NXL_IN_PROG while a worker still runs. */
nxl_status_t be_shm_split_post(be_shm_req_t *req);
/* be_shm_split_wanted decides whether a request prepared with chunks is
 * split this time: always with split_policy=always, else by the measured
 * throughput of both ways for its size class (exploring the other way one
 * time in 16). */
int be_shm_split_wanted(be_shm_engine_t *eng, const be_shm_req_t *req);
/* be_shm_rate_note adds a sample (bytes moved in ns) to a moving
 * average. */
void be_shm_rate_note(atomic_uint_fast64_t *avg, uint64_t bytes, uint64_t ns);
/* be_shm_split_cancel withdraws queued helpers of req; chunks in flight
 * stop at the next system call or copy piece. */
void be_shm_split_cancel(be_shm_req_t *req);

/* be_shm_req_finish completes req after its data moved (status st): sends
 * the attached notification and publishes the final state, which it
 * returns. */
nxl_status_t be_shm_req_finish(be_shm_req_t *req, nxl_status_t st);

/* --- shm_notif.c -------------------------------------------------------- */

/* be_shm_notif_init creates the completion eventfd, the epoll set and the
 * notification listener (util/lstream.h). */
nxl_status_t be_shm_notif_init(be_shm_engine_t *eng);
/* be_shm_notif_fini closes what notif_init opened (every peer's stream
 * freed before). */
void be_shm_notif_fini(be_shm_engine_t *eng);
/* be_shm_tx_open opens peer's outgoing stream to the listener its conn
 * info named; NXL_ERR_REMOTE_DISCONNECT when nobody listens there. */
nxl_status_t be_shm_tx_open(be_shm_peer_t *peer);
/* be_shm_progress handles ready fds: the completion eventfd, and the
 * streams' set (accepts, receives and delivers notifications, flushes
 * queued streams). Returns events handled. */
unsigned be_shm_progress(void *self);
/* be_shm_signal_done wakes sleepers after a worker finished a request. */
void be_shm_signal_done(be_shm_engine_t *eng);

/* ---- shared by shm.c, shm_peer.c, shm_remote.c and shm_xfer.c --------- */

#define BE_SHM_CONN_MAGIC 0x4353584eu /* "NXSC" */
#define BE_SHM_PUB_MAGIC 0x5253584eu  /* "NXSR" */
#define BE_SHM_CONN_FIXED 72u
#define BE_SHM_PUB_VERSION 2u
#define BE_SHM_PUB_RT 16u /* the registration table record, last */
#define BE_SHM_PUB_PLAIN (24u + BE_SHM_PUB_RT)
#define BE_SHM_PUB_SHARED (56u + BE_SHM_PUB_RT)
#define BE_SHM_PUB_VRAM (112u + BE_SHM_PUB_RT)
#define BE_SHM_PUB_SHARED_FLAG 1u
#define BE_SHM_PUB_VRAM_FLAG 2u

/* Process-wide list of live engines (shm.c): a conn info that names this
 * process must name one of them, and loopback regions must be registered
 * there; be_shm_fini_gen is bumped by every fini. */
extern pthread_mutex_t be_shm_global_lock;
extern be_shm_engine_t *be_shm_global_engines;
extern atomic_uint be_shm_fini_gen;

/* be_shm_starttime reads field 22 (start time in clock ticks since boot) of
 * /proc/<pid>/stat. Returns 0 on success, else an errno value. */
int be_shm_starttime(pid_t pid, uint64_t *st_p);

/* be_shm_peer_put drops a reference; the last one frees the peer. */
void be_shm_peer_put(be_shm_peer_t *peer);

/* be_shm_peer_load validates a peer's conn info and connects to it. */
nxl_status_t be_shm_peer_load(void *self, const char *name, const void *info,
                              size_t len, void **peer_ctx_p);

/* be_shm_peer_unload forgets a peer: in-flight requests stop with
 * NXL_ERR_REMOTE_DISCONNECT (workers check between system calls) before
 * it returns; the memory goes when the last rmd is unloaded. */
void be_shm_peer_unload(void *self, void *ctx);

/* be_shm_seg_inside reports whether [addr, addr + len) lies in
 * [base, base + size) (inline: prep runs it twice per descriptor). */
static inline int
be_shm_seg_inside(uint64_t addr, uint64_t len, uint64_t base, uint64_t size)
{
    return addr >= base && len <= size && addr - base <= size - len;
}

/* be_shm_md_unpack validates a peer's public data for region desc and
 * decides how to reach it: identity (loopback), a shared mapping, CMA, or
 * (VRAM) the peer's device allocation opened with its IPC handle. A VRAM
 * region that cannot be opened here still loads (the rest of the peer's
 * metadata stays usable); transfers on it fail in prep with the reason. */
nxl_status_t be_shm_md_unpack(void *self, void *peer_ctx,
                              const nxl_desc_t *desc, nxl_mem_t kind,
                              const void *pub, size_t len, void **rmd_p);

/* be_shm_md_unload drops a remote region (and its mapping reference). */
void be_shm_md_unload(void *self, void *rmdv);

/* be_shm_prep validates every descriptor against its region (never touch
 * memory outside what was registered or described by the peer) and builds
 * the iovec lists and the split plan once, so that post only moves data. */
nxl_status_t be_shm_prep(void *self, void *req, const nxl_be_xfer_t *xfer);

/* be_shm_post starts a prepared request: split across the worker pool
 * (the caller takes chunks too; NXL_IN_PROG while a worker still holds
 * one) or moved synchronously. No allocation and, for small requests, no
 * system call but the one process_vm_* (the pidfd is polled at most once
 * per millisecond). */
nxl_status_t be_shm_post(void *self, void *req, const nxl_be_xfer_t *xfer);

/* be_shm_check reports a request's state; notifications still queued for
 * the peer are pushed further on the way. */
nxl_status_t be_shm_check(void *self, void *req);

/* be_shm_cancel stops a request: queued helpers are withdrawn, workers see
 * the flag between system calls; returns once no chunk runs. A
 * notification already queued is still delivered (a stream cannot take
 * bytes back). */
void be_shm_cancel(void *self, void *req);

/* be_shm_release frees what prep allocated. */
void be_shm_release(void *self, void *req);

/* be_shm_event_fd returns the epoll set progress drains. */
int be_shm_event_fd(void *self);

/* be_shm_notif_send queues a standalone notification to peer. */
nxl_status_t be_shm_notif_send(void *self, void *peer_ctx, const void *msg,
                               size_t len);

#endif /* NXL_BACKENDS_SHM_H */
