/*
 * connect.h - internals of the tensor connector (src/connect), shared by
 * its files: the codec helpers (base64, hex, zlib, JSON text), and the
 * connector and operation objects.
 *
 * connect sits on the public agent API (include/nxl/nxl.h) plus util; it
 * reads the metadata codec (src/md) only to learn a peer's name before
 * loading it.
 */
#ifndef NXL_CONNECT_CONNECT_H
#define NXL_CONNECT_CONNECT_H

#include <nxl/nxl_connect.h>

#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

/* ---- codec.c ------------------------------------------------------------ */

/* nxl__hex_check says whether s (n chars) is an even run of hex digits. */
bool nxl__hex_check(const char *s, size_t n);

/* nxl__md_str_check checks the syntax of an agent-metadata string (who
 * names it in the message): non-empty, "b64:" + base64 or hex. Returns
 * NXL_OK or NXL_ERR_PROTO. */
nxl_status_t nxl__md_str_check(const char *who, const char *s, size_t n);

/* nxl__json_parse parses len bytes of one JSON value (json-c, strict,
 * UTF-8 checked, at most NXL_CONNECT_JSON_MAX) into *root_p (a
 * json_object *, released with json_object_put). who prefixes the
 * message. NXL_ERR_PROTO or NXL_ERR_NOMEM on failure. */
nxl_status_t nxl__json_parse(const char *who, const void *json, size_t len,
                             void **root_p);

/* nxl__desc_check checks a descriptor as Dynamo's SerializedDescriptor
 * validators do (ptr != 0, device HOST or CUDA); the message is prefixed
 * with who. Returns NXL_OK or status. */
nxl_status_t nxl__desc_check(nxl_status_t status, const char *who,
                             const nxl_connect_desc_t *d);

/* nxl__desc_json appends d as SerializedDescriptor JSON to w. */
void nxl__desc_json(nxl__wbuf_t *w, const nxl_connect_desc_t *d);

/* nxl__rdma_md_check checks md for encoding (or a begin): the decoder's
 * rules. Returns NXL_OK or status with the decoder's message. */
nxl_status_t nxl__rdma_md_check(nxl_status_t status,
                                const nxl_rdma_metadata_t *md);

/* nxl__rdma_md_json appends md as RdmaMetadata JSON to w (md checked). */
void nxl__rdma_md_json(nxl__wbuf_t *w, const nxl_rdma_metadata_t *md);

/* nxl__md_deflate compresses n bytes at level 6 into *out_p (malloc'd;
 * *out_n its size). NXL_OK or NXL_ERR_NOMEM. */
nxl_status_t nxl__md_deflate(const void *p, size_t n, uint8_t **out_p,
                             size_t *out_n);

/* nxl__md_str_append appends the metadata string of compressed bytes (n
 * of them): "b64:" + base64, or hex. */
void nxl__md_str_append(nxl__wbuf_t *w, const uint8_t *z, size_t n, bool hex);

/* nxl__device_mem maps a device kind to a memory kind (HOST -> DRAM, CUDA
 * -> VRAM). */
nxl_mem_t nxl__device_mem(nxl_connect_device_t device);

/* ---- connector.c ------------------------------------------------------- */

/* One memory registration the connector made (or pinned as a pool). */
typedef struct nxl__creg {
    nxl__bnode_t node; /* (dev_id, addr, len) in conn->regs[kind] */
    nxl_mem_t mem;
    unsigned refs; /* operations using it */
    bool pinned;   /* pool memory: not deregistered at refs 0 */
} nxl__creg_t;

/* One keyed region of a peer's snapshots the connector loaded: what a
 * later snapshot must not overlap with another key (see
 * nxl__conn_remote_acquire). */
typedef struct nxl__cregion {
    uint64_t backend; /* hash of the backend's name */
    uint64_t pub;     /* hash of the public data (the remote key) */
    nxl_desc_t desc;
    nxl_mem_t kind;
} nxl__cregion_t;

/* NXL__CREMOTE_MAX_REGIONS bounds the regions remembered per peer: past
 * it, a snapshot replaces the loaded ones when no open operation needs
 * them (a peer kept loaded does not grow without bound). */
#define NXL__CREMOTE_MAX_REGIONS 1024

/* One peer loaded for active operations. */
typedef struct nxl__cremote {
    struct nxl__cremote *next;
    char *name;
    unsigned refs;           /* open active operations on it, and handles */
    unsigned handles;        /* of which nxl_connector_remote_add's */
    bool external;           /* was loaded before the connector loaded it */
    nxl__cregion_t *regions; /* keyed regions of the loaded snapshots */
    size_t nregions, capregions;
} nxl__cremote_t;

/* One notification the connector holds for the application. */
typedef struct nxl__cnotif {
    char *agent;
    void *msg;
    size_t len;
} nxl__cnotif_t;

struct nxl_connector {
    nxl_agent_t *agent;
    char *self;           /* the agent's name (copied) */
    pthread_mutex_t lock; /* everything below */
    pthread_cond_t cond;  /* routed completions, end of a poll */
    bool poller;          /* a waiter sleeps on the agent fd */
    nxl__btree_t regs[NXL_MEM_KINDS];
    nxl__cremote_t *remotes;
    nxl__cnotif_t *q;             /* unclaimed notifications, in order */
    size_t qhead, qlen, qcap;     /* ring: qlen items from qhead */
    struct nxl_connect_op **keys; /* open passive ops by key (hash) */
    size_t nkeys, keycap;         /* keycap a power of 2, or 0 */
    struct nxl_connect_op *ops;   /* every open operation */
    struct nxl_connector *next_global;
};

/* nxl__conn_drain moves the agent's notifications into conn (lock held):
 * those carrying the key of an open passive operation complete it, the
 * rest queue for the application. NXL_OK or the agent's error. */
nxl_status_t nxl__conn_drain(nxl_connector_t *conn);

/* nxl__conn_reg_acquire makes n descriptors of one memory kind usable by an
 * operation (lock held): for each, a reference on the connector's
 * registration covering it, a new registration, or NULL when memory
 * registered outside the connector covers it. regs receives n entries.
 * On failure nothing is held. */
nxl_status_t nxl__conn_reg_acquire(nxl_connector_t *conn, nxl_mem_t mem,
                                   const nxl_desc_t *descs, size_t n,
                                   nxl__creg_t **regs);

/* nxl__conn_reg_release drops the references of nxl__conn_reg_acquire
 * (lock held), deregistering what nothing holds. Tries them all; returns
 * the first error. */
nxl_status_t nxl__conn_reg_release(nxl_connector_t *conn, nxl__creg_t **regs,
                                   size_t n);

/* nxl__conn_key_add / _remove index an open passive operation by key
 * (lock held). add also claims a matching queued notification. */
nxl_status_t nxl__conn_key_add(nxl_connector_t *conn,
                               struct nxl_connect_op *op);
void nxl__conn_key_remove(nxl_connector_t *conn, struct nxl_connect_op *op);

/* nxl__conn_remote_acquire loads the peer of agent metadata md (len bytes)
 * for op and takes a reference on it (lock held). *remote_p is NULL for
 * this agent's own metadata (loopback). The name goes to name_buf (256
 * bytes). */
nxl_status_t nxl__conn_remote_acquire(nxl_connector_t *conn, const void *md,
                                      size_t len, char *name_buf,
                                      nxl__cremote_t **remote_p);

/* nxl__conn_remote_release drops a reference (lock held); the last one
 * invalidates the peer unless external. Accepts NULL. */
void nxl__conn_remote_release(nxl_connector_t *conn, nxl__cremote_t *r);

/* nxl__conn_descs checks n connector descriptors for registration (n >=
 * 1, ptr != 0, size > 0, one device kind; Dynamo's texts) and converts
 * them to agent descriptors (*out malloc'd) of kind *mem_p. who names the
 * caller in messages. */
nxl_status_t nxl__conn_descs(const char *who, const nxl_connect_desc_t *cd,
                             size_t n, nxl_desc_t **out, nxl_mem_t *mem_p);

/* nxl__conn_link / _unlink add and remove op in conn's list (lock held). */
void nxl__conn_link(nxl_connector_t *conn, struct nxl_connect_op *op);
void nxl__conn_unlink(nxl_connector_t *conn, struct nxl_connect_op *op);

/* ---- op.c -------------------------------------------------------------- */

struct nxl_connect_op {
    nxl_connector_t *conn;
    struct nxl_connect_op *prev, *next; /* conn->ops */
    struct nxl_connect_op *key_next;    /* conn->keys bucket chain */
    nxl_connect_kind_t kind;
    bool passive;
    _Atomic int state;  /* nxl_connect_state_t */
    nxl_status_t error; /* ERRORED: set before state */
    char error_text[256];
    char key[NXL_CONNECT_KEY_MAX + 1];
    size_t key_len;
    bool keyed; /* in conn's key index */
    nxl_mem_t mem;
    nxl_connect_device_t device;
    nxl_desc_t *descs;          /* local, as registered */
    nxl_connect_desc_t *cdescs; /* local, as given */
    size_t n;
    nxl__creg_t **regs; /* n entries (NULL = outside memory) */
    /* passive */
    uint8_t *zmd; /* compressed agent metadata snapshot */
    size_t zmd_len;
    /* active */
    pthread_mutex_t lock;   /* post/status transitions */
    pthread_cond_t cond;    /* a waiter left (cancel waits for it) */
    unsigned waiters;       /* threads inside nxl_xfer_wait */
    nxl__cremote_t *remote; /* NULL for loopback */
    char remote_name[256];
    nxl_xfer_t *xfer;
};

/* nxl__op_complete marks a passive op COMPLETE (connector lock held). */
void nxl__op_complete(struct nxl_connect_op *op);

/* nxl__connect_begin makes an active operation from a checked md (the
 * body of read_begin, write_begin, begin_md and media_read_begin). */
nxl_status_t nxl__connect_begin(nxl_connector_t *conn, nxl_connect_kind_t kind,
                                const nxl_connect_desc_t *local, size_t n,
                                const nxl_rdma_metadata_t *md,
                                nxl_connect_op_t **op_p);

#endif /* NXL_CONNECT_CONNECT_H */
