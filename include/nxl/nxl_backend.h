/*
 * nxl_backend.h - the backend ops table (the "south-bound" plugin ABI).
 *
 * A backend is a table of C function pointers. The core allocates the
 * backend's engine state (engine_size bytes, zeroed) and per-transfer state
 * (req_size bytes, zeroed), so a backend never allocates per request.
 *
 * Lifecycle, as the core drives it:
 *   init -> [mem_register/md_pack]* -> conn_info
 *        -> [peer_load, md_unpack]* (remote peers, and this agent itself for
 *           loopback when the backend has NXL_CAP_LOCAL)
 *        -> [prep -> (post -> check*)* -> release]*
 *        -> md_unload/peer_unload/mem_deregister -> fini
 *
 * Locking: unless the backend sets NXL_CAP_THREAD_SAFE the core serializes
 * every call into one engine. Threads the backend starts are its own; they
 * may call host->notif_recv and host->wake at any time.
 *
 * Built-in backends are compiled in. An out-of-tree backend is a shared
 * object libnxl-<name>.so in NXL_PLUGIN_DIR exporting nxl_backend_ini.
 */
#ifndef NXL_BACKEND_H
#define NXL_BACKEND_H

#include <nxl/nxl.h>
#include <nxl/nxl_memkind.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ABI 2: nxl_backend_host_t starts with its size and hands the backend
 * the device memory kind. ABI 1 plugins are refused (their host table
 * had neither). */
#define NXL_BACKEND_ABI 2

/* Capability bits. A backend with REMOTE must have NOTIF. */
enum {
    NXL_CAP_LOCAL = 1u << 0,      /* transfers within one agent */
    NXL_CAP_REMOTE = 1u << 1,     /* transfers to other agents */
    NXL_CAP_NOTIF = 1u << 2,      /* notifications */
    NXL_CAP_THREAD_SAFE = 1u << 3 /* the backend locks for itself */
};

/* nxl_backend_host_t is what the core offers a backend. It lives as long as
 * the engine. Every function is thread-safe. Fields are only ever added at
 * the end: a backend reads a field only when size covers it
 * (NXL_HOST_HAS). */
typedef struct nxl_backend_host {
    uint32_t size;          /* sizeof(nxl_backend_host_t) of the core */
    void *ctx;              /* pass back as the first argument */
    const char *agent_name; /* this agent's name */
    /* set_error sets the calling thread's nxl_last_error() message. */
    void (*set_error)(const char *fmt, ...)
        __attribute__((format(printf, 1, 2)));
    /* log writes one line at level if NXL_LOG_LEVEL allows it. */
    void (*log)(int level, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
    /* notif_recv hands one received notification to the agent, which
     * copies it. Call it only after the data of any transfer it belongs to
     * is visible in the target's memory. */
    void (*notif_recv)(void *ctx, const char *peer, const void *msg,
                       size_t len);
    /* wake makes the agent's fd readable, so sleepers call progress. */
    void (*wake)(void *ctx);
    /* device_kind is the device memory kind this engine may use for VRAM
     * (the one installed when the backend was created, see
     * nxl_memkind_set_device), or NULL: the backend then serves no VRAM.
     * A backend reaches device memory only through it. */
    const nxl_memkind_ops_t *device_kind;
} nxl_backend_host_t;

/* NXL_HOST_HAS tells whether host (a const nxl_backend_host_t *) carries
 * field. */
#define NXL_HOST_HAS(host, field)                                              \
    ((host)->size >=                                                           \
     offsetof(nxl_backend_host_t, field) + sizeof((host)->field))

/* nxl_be_region_t is one region to register. */
typedef struct nxl_be_region {
    uint64_t addr;
    uint64_t len;
    uint64_t dev_id;
    nxl_mem_t kind;
    int backing_fd;       /* memfd holding the region (nxl_mem_alloc_shared),
                           * or -1; valid while the region is registered */
    uint64_t backing_off; /* offset of addr inside backing_fd */
} nxl_be_region_t;

/* nxl_be_seg_t is one side of one transfer descriptor. md is what
 * mem_register (local) or md_unpack (remote) returned for the region that
 * covers [addr, addr + len). */
typedef struct nxl_be_seg {
    uint64_t addr;
    uint64_t len;
    uint64_t dev_id;
    void *md;
} nxl_be_seg_t;

/* nxl_be_xfer_t describes one transfer. The core owns it; the arrays stay
 * valid and unchanged from prep until release. Only the notification may
 * differ between posts. local[i].len == remote[i].len for every i. */
typedef struct nxl_be_xfer {
    nxl_op_t op;
    nxl_mem_t local_mem;
    nxl_mem_t remote_mem;
    const char *peer; /* remote agent name (own name: loopback) */
    void *peer_ctx;   /* what peer_load returned for peer */
    size_t count;
    const nxl_be_seg_t *local;
    const nxl_be_seg_t *remote;
    uint64_t total_bytes;
    int has_notif; /* deliver notif after the data */
    const void *notif;
    size_t notif_len;
} nxl_be_xfer_t;

/* nxl_backend_ops_t: the table. Fields marked mandatory must be set;
 * the core fills empty optional ones with stubs returning
 * NXL_ERR_NOT_SUPPORTED (or doing nothing), so it never checks for NULL. */
typedef struct nxl_backend_ops {
    uint32_t abi_version;        /* NXL_BACKEND_ABI */
    uint32_t size;               /* sizeof(nxl_backend_ops_t) when built */
    const char *name;            /* upper case: "SHM", "TCP", "UCX", "POSIX" */
    uint32_t caps;               /* NXL_CAP_* */
    uint32_t mem_kinds;          /* bitmask of 1u << NXL_DRAM ... */
    size_t engine_size;          /* engine state the core allocates, zeroed */
    size_t req_size;             /* per-transfer state the core allocates */
    const nxl_param_t *defaults; /* default params (static) */
    size_t num_defaults;

    /* init (mandatory) prepares a zeroed engine with params (every key is
     * one of defaults; values are the caller's or the default). On failure
     * it sets an error and returns it; fini is then still called. */
    nxl_status_t (*init)(void *self, const nxl_backend_host_t *host,
                         const nxl_params_t *params);
    /* fini (mandatory) releases everything. Never fails; logs instead. */
    void (*fini)(void *self);

    /* mem_register (mandatory) registers one region; *md_p is private to
     * the backend and handed back in nxl_be_seg_t.md. */
    nxl_status_t (*mem_register)(void *self, const nxl_be_region_t *region,
                                 void **md_p);
    /* mem_deregister (mandatory) drops md. No transfer uses it any more. */
    void (*mem_deregister)(void *self, void *md);

    /* md_pack writes md's public data (what a peer needs to reach the
     * region: a remote key, a pid, a memfd) into *out, allocated with
     * malloc (the core frees it). An empty blob is fine. */
    nxl_status_t (*md_pack)(void *self, const void *md, nxl_blob_t *out);
    /* conn_info writes how peers reach this engine into *out (malloc). */
    nxl_status_t (*conn_info)(void *self, nxl_blob_t *out);

    /* peer_load connects to (or records) peer from its conn info; info is
     * peer input: validate every byte (NXL_ERR_PROTO). *peer_ctx_p is
     * handed back in nxl_be_xfer_t.peer_ctx. Called for this agent's own
     * name with its own conn info when the backend has NXL_CAP_LOCAL. */
    nxl_status_t (*peer_load)(void *self, const char *peer, const void *info,
                              size_t len, void **peer_ctx_p);
    /* peer_unload forgets peer; its in-flight transfers end with
     * NXL_ERR_REMOTE_DISCONNECT (or complete) before it returns. */
    void (*peer_unload)(void *self, void *peer_ctx);
    /* md_unpack turns a peer's public data for region desc into a remote
     * md; pub is peer input: validate it. */
    nxl_status_t (*md_unpack)(void *self, void *peer_ctx,
                              const nxl_desc_t *desc, nxl_mem_t kind,
                              const void *pub, size_t len, void **rmd_p);
    /* md_unload drops a remote md. No transfer uses it any more. */
    void (*md_unload)(void *self, void *rmd);

    /* prep readies req (req_size zeroed bytes) for xfer; called once when
     * the transfer is made. May reject it (NXL_ERR_NOT_SUPPORTED). */
    nxl_status_t (*prep)(void *self, void *req, const nxl_be_xfer_t *xfer);
    /* post (mandatory) starts xfer. Returns NXL_OK if all data moved (and
     * the notification, if any, was sent) already, NXL_IN_PROG if check
     * must be polled, or an error. Never blocks for long. */
    nxl_status_t (*post)(void *self, void *req, const nxl_be_xfer_t *xfer);
    /* check (mandatory) polls req: NXL_OK, NXL_IN_PROG or an error. May
     * progress the engine. Never blocks. */
    nxl_status_t (*check)(void *self, void *req);
    /* cancel stops an in-flight req and returns once the backend no longer
     * touches its buffers. */
    void (*cancel)(void *self, void *req);
    /* release frees what prep set up in req; req is not in flight. */
    void (*release)(void *self, void *req);

    /* progress advances all work; returns events handled. Never blocks. */
    unsigned (*progress)(void *self);
    /* event_fd returns a fd that is readable when progress has work, or
     * -1. The progress thread and nxl_xfer_wait sleep on it. */
    int (*event_fd)(void *self);

    /* notif_send sends a standalone notification to peer. */
    nxl_status_t (*notif_send)(void *self, void *peer_ctx, const void *msg,
                               size_t len);

    /* wait (optional, added after ABI 1 shipped: a table whose size ends
     * before it has none) lets the thread in nxl_xfer_wait progress req
     * itself, e.g. receive its data, instead of sleeping until the
     * backend's own thread has done so and woken it. Blocks at most
     * timeout_ms. Returns NXL_OK or an error when req ended, NXL_IN_PROG
     * when the time ran out, NXL_ERR_NOT_SUPPORTED (at once, no error
     * message set) when it cannot wait for req now; the core then sleeps
     * on event_fd. Called without the agent lock and only for backends
     * with NXL_CAP_THREAD_SAFE, possibly from several threads. */
    nxl_status_t (*wait)(void *self, void *req, int timeout_ms);
} nxl_backend_ops_t;

/* The one symbol an out-of-tree backend libnxl-<name>.so exports. */
typedef const nxl_backend_ops_t *(*nxl_backend_ini_fn)(void);
#define NXL_BACKEND_INI_SYMBOL "nxl_backend_ini"

#ifdef __cplusplus
}
#endif

#endif /* NXL_BACKEND_H */
