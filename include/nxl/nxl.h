/*
 * nxl.h - the NXL agent API.
 *
 * NXL moves inference data (KV-cache blocks, embeddings, images) between
 * processes and machines. An agent owns registered memory, backends and the
 * metadata of the peers it talks to; transfers are one-sided READ/WRITE
 * requests between a local and a remote descriptor list.
 *
 * Conventions (see docs/design.md):
 *   - Every call returns an nxl_status_t: NXL_OK (0), NXL_IN_PROG (1) or a
 *     negative error. On failure nxl_last_error() holds a detail message.
 *   - Outputs come last, end in _p, and are written only on success.
 *   - Everything the library allocates goes back through the library
 *     (nxl_blob_free, nxl_notif_list_free, *_release, *_destroy).
 *   - The library never keeps a caller pointer after a call returns, except
 *     registered memory, which must stay mapped until it is deregistered.
 */
#ifndef NXL_NXL_H
#define NXL_NXL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(NXL_BUILDING) && defined(__GNUC__)
#define NXL_API __attribute__((visibility("default")))
#else
#define NXL_API
#endif

#define NXL_VERSION_MAJOR 0
#define NXL_VERSION_MINOR 1
#define NXL_VERSION_PATCH 0

/* nxl_version returns the library's version ("0.1.0"), static; it may
 * differ from the NXL_VERSION_* macros a program was built with. */
NXL_API const char *nxl_version(void);

/* The status list: one X-macro makes the enum, nxl_strerror and
 * nxl_status_name. Values 1..-12 are NIXL's numbering; -13 on are NXL's. */
#define NXL_STATUS_MAP(X)                                                      \
    X(OK, 0, "success")                                                        \
    X(IN_PROG, 1, "operation in progress")                                     \
    X(ERR_NOT_POSTED, -1, "request not posted")                                \
    X(ERR_INVALID_PARAM, -2, "invalid parameter")                              \
    X(ERR_BACKEND, -3, "backend failure")                                      \
    X(ERR_NOT_FOUND, -4, "not found")                                          \
    X(ERR_MISMATCH, -5, "mismatch")                                            \
    X(ERR_NOT_ALLOWED, -6, "not allowed")                                      \
    X(ERR_REPOST_ACTIVE, -7, "request is still active")                        \
    X(ERR_UNKNOWN, -8, "unknown error")                                        \
    X(ERR_NOT_SUPPORTED, -9, "not supported")                                  \
    X(ERR_REMOTE_DISCONNECT, -10, "remote agent disconnected")                 \
    X(ERR_CANCELED, -11, "canceled")                                           \
    X(ERR_NO_TELEMETRY, -12, "telemetry not enabled")                          \
    X(ERR_TIMEOUT, -13, "timed out")                                           \
    X(ERR_NOMEM, -14, "out of memory")                                         \
    X(ERR_IO, -15, "I/O error")                                                \
    X(ERR_PROTO, -16, "malformed input from a peer")

/* nxl_status_t is the result of every NXL call. */
typedef enum nxl_status {
#define NXL__STATUS_ENUM(name, val, msg) NXL_##name = (val),
    NXL_STATUS_MAP(NXL__STATUS_ENUM)
#undef NXL__STATUS_ENUM
} nxl_status_t;

/* nxl_strerror returns a static description of status; never NULL. */
NXL_API const char *nxl_strerror(nxl_status_t status);

/* nxl_status_name returns the static name of status ("NXL_ERR_NOT_FOUND");
 * never NULL. */
NXL_API const char *nxl_status_name(nxl_status_t status);

/* nxl_last_error returns the detail message of the last failed call on this
 * thread, or "" if none. Valid until the next failing call on this thread. */
NXL_API const char *nxl_last_error(void);

/* Memory kinds (NIXL's nixl_mem_t values). */
typedef enum nxl_mem {
    NXL_DRAM = 0,
    NXL_VRAM = 1,
    NXL_BLK = 2,
    NXL_OBJ = 3,
    NXL_FILE = 4
} nxl_mem_t;
#define NXL_MEM_KINDS 5

/* Transfer operations: READ pulls remote into local, WRITE pushes local to
 * remote. */
typedef enum nxl_op { NXL_READ = 0, NXL_WRITE = 1 } nxl_op_t;

/* Log levels: what NXL_LOG_LEVEL (or NIXL_LOG_LEVEL) names, error..trace,
 * and what a backend passes to its host's log (nxl_backend.h). */
typedef enum nxl_log_level {
    NXL_LOG_ERROR = 0,
    NXL_LOG_WARN = 1,
    NXL_LOG_INFO = 2,
    NXL_LOG_DEBUG = 3,
    NXL_LOG_TRACE = 4
} nxl_log_level_t;

/* Thread-safety level of an agent (NIXL's nixl_thread_sync_t).
 * NONE: the caller serializes all calls. STRICT: one lock for everything.
 * RW: the data path (post/status/wait) shares a lock that the control path
 * (register, load, invalidate, backend create) takes exclusively. */
typedef enum nxl_sync {
    NXL_SYNC_NONE = 0,
    NXL_SYNC_STRICT = 1,
    NXL_SYNC_RW = 2
} nxl_sync_t;

/* nxl_desc_t is one contiguous piece of memory: for DRAM/VRAM a virtual
 * address, length and device id; for FILE addr is the file offset and
 * dev_id the file descriptor. 24 bytes, as in NIXL. */
typedef struct nxl_desc {
    uint64_t addr;
    uint64_t len;
    uint64_t dev_id;
} nxl_desc_t;

/* nxl_dlist_t is a caller-owned descriptor list of one memory kind. */
typedef struct nxl_dlist {
    nxl_mem_t mem;
    const nxl_desc_t *descs;
    size_t count;
} nxl_dlist_t;

/* nxl_blob_t is a byte buffer the library allocated; release it with
 * nxl_blob_free. */
typedef struct nxl_blob {
    void *data;
    size_t len;
} nxl_blob_t;

/* nxl_param_t is one string key/value backend parameter. */
typedef struct nxl_param {
    const char *key;
    const char *value;
} nxl_param_t;

/* nxl_params_t is a caller-owned array of parameters. */
typedef struct nxl_params {
    const nxl_param_t *items;
    size_t count;
} nxl_params_t;

typedef struct nxl_agent nxl_agent_t;
typedef struct nxl_backend nxl_backend_t;
typedef struct nxl_prepped nxl_prepped_t;
typedef struct nxl_xfer nxl_xfer_t;

/* Caller-filled structs (nxl_agent_config_t, nxl_opts_t, and in nxl_kv.h
 * nxl_kv_ctx_config_t and nxl_kv_opts_t) start with their size, which
 * their _init function sets to the sizeof this program was built with.
 * Fields are only ever added at the end: the library reads what the
 * caller's layout holds and defaults the rest, so a program built against
 * an older header keeps working. A struct not filled by _init (size below
 * the first layout's, e.g. 0) is NXL_ERR_INVALID_PARAM; a newer layout
 * that sets a field this library does not know is NXL_ERR_NOT_SUPPORTED.
 * NXL_<STRUCT>_V1_SIZE are the sizes of the first layouts. */

/* nxl_agent_config_t: fill with nxl_agent_config_init, then change fields. */
typedef struct nxl_agent_config {
    uint32_t size;           /* set by nxl_agent_config_init */
    int progress_thread;     /* run progress on a thread sleeping on fds */
    int listen_thread;       /* serve the metadata side channel */
    uint16_t listen_port;    /* side-channel port; 0 = ephemeral */
    const char *listen_addr; /* bind address; NULL = 0.0.0.0 */
    nxl_sync_t sync_mode;
    int capture_telemetry;      /* per-transfer telemetry */
    uint32_t progress_delay_us; /* progress-thread wake-up period cap */
    const char *sc_secret;      /* side-channel shared secret (copied); NULL =
                                 * $NXL_SC_SECRET, else none: see below */
} nxl_agent_config_t;
#define NXL_AGENT_CONFIG_V1_SIZE                                               \
    (offsetof(nxl_agent_config_t, sc_secret) + sizeof(const char *))

/* nxl_agent_config_init fills cfg with the defaults: no progress thread, no
 * listener, port 8888, sync NONE, no telemetry. */
NXL_API void nxl_agent_config_init(nxl_agent_config_t *cfg);

/* nxl_agent_create creates an agent called name (copied). cfg may be NULL
 * for the defaults. With listen_thread the side-channel listener runs until
 * destroy. With a side-channel secret (cfg->sc_secret, else the
 * environment variable NXL_SC_SECRET) the listener serves only clients
 * that prove they know the same secret, and this agent's nxl_md_send /
 * nxl_md_fetch / nxl_md_invalidate_local prove it and require the same of
 * the listener they call (mutual HMAC-SHA256 challenge-response; it does
 * not encrypt). Without one, the side channel trusts its network. On success
 * *agent_p owns all resources until nxl_agent_destroy. Returns NXL_OK,
 * NXL_ERR_INVALID_PARAM (NULL or empty name), NXL_ERR_NOMEM, NXL_ERR_IO
 * (listener could not bind). */
NXL_API nxl_status_t nxl_agent_create(const char *name,
                                      const nxl_agent_config_t *cfg,
                                      nxl_agent_t **agent_p);

/* nxl_agent_destroy cancels and releases outstanding transfers, deregisters
 * memory, stops threads, destroys backends and frees the agent. Accepts
 * NULL. Not thread-safe with other calls on the same agent. */
NXL_API void nxl_agent_destroy(nxl_agent_t *agent);

/* nxl_agent_name returns the agent's name; lives as long as the agent. */
NXL_API const char *nxl_agent_name(const nxl_agent_t *agent);

/* nxl_agent_listen_port returns the port the side-channel listener is
 * bound to (useful with listen_port 0), or 0 without a listener. */
NXL_API uint16_t nxl_agent_listen_port(const nxl_agent_t *agent);

/* nxl_agent_progress drives every backend once and returns the number of
 * events handled (completions, notifications). Never blocks. */
NXL_API unsigned nxl_agent_progress(nxl_agent_t *agent);

/* nxl_agent_fd returns a file descriptor that becomes readable when
 * progress or notifications may be pending, for epoll users; call
 * nxl_agent_progress after it fires. Owned by the agent. -1 if none. */
NXL_API int nxl_agent_fd(nxl_agent_t *agent);

/* nxl_plugin_info_t describes a backend type. Strings and arrays are static
 * (they live as long as the process). */
typedef struct nxl_plugin_info {
    const char *name;
    uint32_t caps;               /* NXL_CAP_* bits of nxl_backend.h */
    uint32_t mem_kinds;          /* bitmask of 1u << NXL_DRAM ... */
    const nxl_param_t *defaults; /* default parameters */
    size_t num_defaults;
} nxl_plugin_info_t;

/* nxl_plugin_names writes up to cap static backend names (built-in ones
 * first, then those found in NXL_PLUGIN_DIR as libnxl-<name>.so) into
 * names and their total number into *count_p. Thread-safe. */
NXL_API nxl_status_t nxl_plugin_names(const char **names, size_t cap,
                                      size_t *count_p);

/* nxl_plugin_info describes backend type (case-insensitive), loading a
 * plugin from NXL_PLUGIN_DIR if needed. Returns NXL_ERR_NOT_FOUND for an
 * unknown type. Thread-safe. */
NXL_API nxl_status_t nxl_plugin_info(const char *type,
                                     nxl_plugin_info_t *info_p);

/* nxl_backend_create instantiates backend type (case-insensitive) with
 * params (NULL = defaults; unknown keys are an error) on agent. One backend
 * per type per agent. The handle lives until nxl_agent_destroy.
 * Returns NXL_OK, NXL_ERR_NOT_FOUND (unknown type), NXL_ERR_INVALID_PARAM
 * (duplicate type, bad param), or the backend's init error. */
NXL_API nxl_status_t nxl_backend_create(nxl_agent_t *agent, const char *type,
                                        const nxl_params_t *params,
                                        nxl_backend_t **be_p);

/* nxl_backend_name returns the backend's type name ("SHM"). */
NXL_API const char *nxl_backend_name(const nxl_backend_t *be);

/* nxl_backend_get returns the backend of type on agent, or NULL. */
NXL_API nxl_backend_t *nxl_backend_get(nxl_agent_t *agent, const char *type);

/* nxl_opts_t carries the optional arguments of NIXL's extra params. Fill
 * with nxl_opts_init. The library copies what it keeps. */
typedef struct nxl_opts {
    uint32_t size;                  /* set by nxl_opts_init */
    nxl_backend_t *const *backends; /* restrict to these backends */
    size_t num_backends;
    int has_notif; /* attach notif (even when empty) */
    const void *notif;
    size_t notif_len;
    const char *ip_addr;   /* side-channel peer */
    uint16_t port;         /* side-channel port, default 8888 */
    const char *label;     /* etcd label; NULL = "metadata" */
    int include_conn_info; /* partial metadata: add conn info */
    int skip_merge;        /* nxl_xfer_make: keep descriptors */
    int timeout_ms;        /* side channel, etcd; 0 = 5000 */
} nxl_opts_t;
#define NXL_OPTS_V1_SIZE (offsetof(nxl_opts_t, timeout_ms) + sizeof(int))

/* nxl_opts_init fills opts with defaults: nothing set, port 8888. */
NXL_API void nxl_opts_init(nxl_opts_t *opts);

/* nxl_mem_register registers every descriptor of dlist with every backend
 * that supports dlist->mem (or opts->backends). Succeeds when at least one
 * backend registered all descriptors; a backend that fails part way is
 * rolled back. Memory must stay valid until deregistered. Regions of one
 * memory kind and device id may not overlap, within the list or with
 * what is registered: which registration covers a descriptor must be
 * unambiguous (NIXL does not check; see docs/design.md).
 * Returns NXL_OK, NXL_ERR_INVALID_PARAM (NULL, zero length, address 0 of
 * DRAM or VRAM, bad opts), NXL_ERR_NOT_SUPPORTED (no backend takes this
 * kind), NXL_ERR_NOT_ALLOWED (already registered, or overlapping a
 * registration), or a backend error; a refused call registers nothing. */
NXL_API nxl_status_t nxl_mem_register(nxl_agent_t *agent,
                                      const nxl_dlist_t *dlist,
                                      const nxl_opts_t *opts);

/* nxl_mem_deregister drops registrations made by nxl_mem_register; each
 * descriptor must match a registration exactly. Returns NXL_OK,
 * NXL_ERR_INVALID_PARAM or NXL_ERR_NOT_FOUND. */
NXL_API nxl_status_t nxl_mem_deregister(nxl_agent_t *agent,
                                        const nxl_dlist_t *dlist,
                                        const nxl_opts_t *opts);

/* nxl_mem_alloc_shared allocates size bytes (rounded up to a page) of
 * zeroed memory inside a memfd. Same-host peers map such regions once, so
 * SHM READ/WRITE on them become plain copies. Free with
 * nxl_mem_free_shared. Thread-safe. Returns NXL_OK, NXL_ERR_INVALID_PARAM,
 * NXL_ERR_NOMEM. */
NXL_API nxl_status_t nxl_mem_alloc_shared(size_t size, void **addr_p);

/* nxl_mem_free_shared frees memory from nxl_mem_alloc_shared. Deregister it
 * first. Accepts NULL. */
NXL_API void nxl_mem_free_shared(void *addr);

/* nxl_md_local serializes this agent's metadata: its name, the conn info
 * of its remote-capable backends and all registered regions with their
 * remote keys. Release with nxl_blob_free. */
NXL_API nxl_status_t nxl_md_local(nxl_agent_t *agent, nxl_blob_t *blob_p);

/* nxl_md_local_partial serializes only the descriptors of dlist (each must
 * match a registration exactly), with conn info when
 * opts->include_conn_info or when dlist is NULL or empty (conn info only).
 * Returns NXL_OK or NXL_ERR_NOT_FOUND (descriptor not registered). */
NXL_API nxl_status_t nxl_md_local_partial(nxl_agent_t *agent,
                                          const nxl_dlist_t *dlist,
                                          const nxl_opts_t *opts,
                                          nxl_blob_t *blob_p);

/* nxl_md_load loads a peer's metadata blob. Loading is additive: new
 * regions are added and identical ones ignored. The peer's name is copied
 * into name_buf (cap bytes, NUL-terminated) when name_buf is not NULL.
 * Returns NXL_OK; NXL_ERR_INVALID_PARAM (own name, NULL); NXL_ERR_MISMATCH
 * (not NXL metadata); NXL_ERR_PROTO (malformed); NXL_ERR_NOT_ALLOWED (a
 * region or conn info that conflicts with what is loaded); NXL_ERR_BACKEND
 * (no backend in common). */
NXL_API nxl_status_t nxl_md_load(nxl_agent_t *agent, const void *blob,
                                 size_t len, char *name_buf, size_t cap);

/* nxl_md_invalidate forgets peer remote: its prepared lists and transfers
 * then fail with NXL_ERR_NOT_FOUND. Returns NXL_OK, NXL_ERR_NOT_FOUND,
 * NXL_ERR_INVALID_PARAM (own name). */
NXL_API nxl_status_t nxl_md_invalidate(nxl_agent_t *agent, const char *remote);

/* nxl_md_check returns NXL_OK when peer remote is loaded and, if dlist is
 * not NULL, every descriptor of dlist is covered by its regions; otherwise
 * NXL_ERR_NOT_FOUND. */
NXL_API nxl_status_t nxl_md_check(nxl_agent_t *agent, const char *remote,
                                  const nxl_dlist_t *dlist);

/* nxl_md_send sends this agent's metadata to the side channel at
 * opts->ip_addr:opts->port, which loads it. Without ip_addr, and with
 * NXL_ETCD_ENDPOINTS (or NIXL_ETCD_ENDPOINTS) set, it publishes it in etcd
 * under <NXL_ETCD_NAMESPACE>/<agent>/<opts->label or "metadata">, bound to
 * a lease the agent keeps alive until nxl_agent_destroy (docs/etcd.md).
 * Synchronous: returns the peer's load status (or etcd's answer),
 * NXL_ERR_TIMEOUT, NXL_ERR_IO, or NXL_ERR_NOT_SUPPORTED with neither
 * ip_addr nor etcd. After NXL_ERR_TIMEOUT the peer may still load the
 * metadata later: the timeout stops the wait, not the peer's work. */
NXL_API nxl_status_t nxl_md_send(nxl_agent_t *agent, const nxl_opts_t *opts);

/* nxl_md_send_partial is nxl_md_send of nxl_md_local_partial(dlist); to
 * etcd it needs opts->label (else NXL_ERR_INVALID_PARAM). */
NXL_API nxl_status_t nxl_md_send_partial(nxl_agent_t *agent,
                                         const nxl_dlist_t *dlist,
                                         const nxl_opts_t *opts);

/* nxl_md_fetch asks the side channel at opts->ip_addr:opts->port for its
 * metadata and loads it. remote, if not NULL, must match the name the peer
 * answers with (else NXL_ERR_MISMATCH). Through etcd (no ip_addr) it reads
 * remote's metadata (remote required) under opts->label or "metadata",
 * waiting up to the timeout for it to appear (else NXL_ERR_NOT_FOUND), and
 * then watches remote: when its keys go (invalidated, destroyed, crashed)
 * this agent invalidates it. Synchronous; statuses as nxl_md_send and
 * nxl_md_load. */
NXL_API nxl_status_t nxl_md_fetch(nxl_agent_t *agent, const char *remote,
                                  const nxl_opts_t *opts);

/* nxl_md_invalidate_local tells the side channel at opts->ip_addr:port to
 * forget this agent; through etcd it deletes every key of this agent, so
 * every peer watching it forgets it. Synchronous; statuses as
 * nxl_md_send. */
NXL_API nxl_status_t nxl_md_invalidate_local(nxl_agent_t *agent,
                                             const nxl_opts_t *opts);

/* nxl_dlist_prep resolves dlist once against registrations for repeated
 * nxl_xfer_make calls: remote NULL or "" = local memory; remote = a loaded
 * peer or this agent's own name (loopback). The handle copies dlist.
 * Returns NXL_OK, NXL_ERR_INVALID_PARAM, NXL_ERR_NOT_FOUND (peer unknown or
 * a descriptor not covered by any backend's registrations). */
NXL_API nxl_status_t nxl_dlist_prep(nxl_agent_t *agent, const char *remote,
                                    const nxl_dlist_t *dlist,
                                    const nxl_opts_t *opts,
                                    nxl_prepped_t **prepped_p);

/* nxl_dlist_release frees a prepared list; transfers made from it stay
 * valid. Accepts NULL. */
NXL_API void nxl_dlist_release(nxl_prepped_t *prepped);

/* nxl_xfer_make builds a transfer from prepared lists: local[lidx[i]] and
 * remote[ridx[i]] for i < count, with equal lengths pairwise. Runs of
 * consecutive indices that are contiguous on both sides are merged into one
 * descriptor unless opts->skip_merge. A notification in opts is attached
 * (only backends that deliver notifications are then candidates).
 * Returns NXL_OK, NXL_ERR_INVALID_PARAM (index out of range, length
 * mismatch), NXL_ERR_NOT_FOUND (peer gone, no common backend),
 * NXL_ERR_NOT_SUPPORTED (a notification, but the backends that cover both
 * lists cannot deliver one). */
NXL_API nxl_status_t nxl_xfer_make(nxl_agent_t *agent, nxl_op_t op,
                                   const nxl_prepped_t *local,
                                   const size_t *lidx,
                                   const nxl_prepped_t *remote,
                                   const size_t *ridx, size_t count,
                                   const nxl_opts_t *opts, nxl_xfer_t **xfer_p);

/* nxl_xfer_create builds a transfer in one step from two descriptor lists
 * of equal count and equal per-index lengths, against remote_agent (or this
 * agent's own name for loopback). Statuses as nxl_xfer_make. */
NXL_API nxl_status_t nxl_xfer_create(nxl_agent_t *agent, nxl_op_t op,
                                     const nxl_dlist_t *local,
                                     const nxl_dlist_t *remote,
                                     const char *remote_agent,
                                     const nxl_opts_t *opts,
                                     nxl_xfer_t **xfer_p);

/* nxl_xfer_post starts xfer. opts, when not NULL, replaces the attached
 * notification (NULL keeps it). Returns NXL_OK if done at once, NXL_IN_PROG,
 * NXL_ERR_REPOST_ACTIVE while still active, NXL_ERR_NOT_FOUND if the peer
 * was invalidated or reloaded since the transfer was made, or an error.
 * Re-posting after completion is the steady-state loop. */
NXL_API nxl_status_t nxl_xfer_post(nxl_xfer_t *xfer, const nxl_opts_t *opts);

/* nxl_xfer_status polls xfer (driving progress): NXL_OK when done,
 * NXL_IN_PROG, NXL_ERR_NOT_POSTED, or the sticky error of the transfer. */
NXL_API nxl_status_t nxl_xfer_status(nxl_xfer_t *xfer);

/* nxl_xfer_wait blocks until xfer is no longer in progress or timeout_ms
 * passes (-1 = forever), sleeping rather than spinning: on the backends'
 * fds, or, where the backend can (TCP), on the transfer's own
 * connections, receiving its data on this thread. TCP first polls for up
 * to its wait_spin_us param (50 us) while xfer is its only request in
 * flight. Returns the status as nxl_xfer_status, or NXL_ERR_TIMEOUT. */
NXL_API nxl_status_t nxl_xfer_wait(nxl_xfer_t *xfer, int timeout_ms);

/* nxl_xfer_release cancels xfer if in flight, returns once no backend
 * touches its buffers, and frees it. Accepts NULL. */
NXL_API void nxl_xfer_release(nxl_xfer_t *xfer);

/* nxl_xfer_telemetry_t: durations in microseconds (rounded up: a post that
 * took any time reports at least 1) of the last post. */
typedef struct nxl_xfer_telemetry {
    uint64_t start_us; /* CLOCK_REALTIME of the post */
    uint64_t post_us;  /* time inside nxl_xfer_post */
    uint64_t xfer_us;  /* post to completion */
    uint64_t total_bytes;
    uint64_t desc_count; /* after merging */
} nxl_xfer_telemetry_t;

/* nxl_xfer_telemetry reports the last completed post. Returns
 * NXL_ERR_NO_TELEMETRY unless the agent captures telemetry. */
NXL_API nxl_status_t nxl_xfer_telemetry(const nxl_xfer_t *xfer,
                                        nxl_xfer_telemetry_t *t_p);

/* nxl_xfer_backend reports which backend runs xfer. */
NXL_API nxl_status_t nxl_xfer_backend(const nxl_xfer_t *xfer,
                                      nxl_backend_t **be_p);

/* nxl_notif_send sends a standalone notification of len bytes (0 is
 * legal) to remote, or to this agent itself. No ordering against transfers.
 * Returns NXL_OK, NXL_ERR_NOT_FOUND (peer unknown), NXL_ERR_NOT_SUPPORTED
 * (no notification-capable backend in common), or a backend error. */
NXL_API nxl_status_t nxl_notif_send(nxl_agent_t *agent, const char *remote,
                                    const void *msg, size_t len,
                                    const nxl_opts_t *opts);

/* nxl_notif_t is one received notification. */
typedef struct nxl_notif {
    const char *agent; /* sender's name */
    const void *msg;
    size_t len;
} nxl_notif_t;

/* nxl_notif_list_t is a batch of notifications owned by the library. */
typedef struct nxl_notif_list {
    size_t count;
    nxl_notif_t *items;
} nxl_notif_list_t;

/* nxl_notifs_get drives progress and returns, in arrival order, every
 * notification received since the last call (possibly none). Release
 * *list_p with nxl_notif_list_free. */
NXL_API nxl_status_t nxl_notifs_get(nxl_agent_t *agent,
                                    nxl_notif_list_t **list_p,
                                    const nxl_opts_t *opts);

/* nxl_notif_list_free releases a list from nxl_notifs_get. Accepts NULL. */
NXL_API void nxl_notif_list_free(nxl_notif_list_t *list);

/* nxl_blob_free releases a blob the library returned and zeroes it.
 * Accepts NULL and empty blobs. */
NXL_API void nxl_blob_free(nxl_blob_t *blob);

#ifdef __cplusplus
}
#endif

#endif /* NXL_NXL_H */
