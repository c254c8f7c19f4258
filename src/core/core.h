/*
 * core.h - the agent's internal objects (not part of the public API).
 *
 * Ownership: the agent owns backends, local regions, peers, transfers and
 * prepared lists. Locking (docs/design.md): agent->lock is a rwlock taken
 * exclusively by the control path (register, load, invalidate, backend
 * create) and shared by the data path (prep, make, post, status); it is
 * skipped entirely in NXL_SYNC_NONE when the agent runs no thread. The
 * notification queue has its own mutex because backend threads deliver into
 * it at any time. A backend without NXL_CAP_THREAD_SAFE is additionally
 * serialized by its own mutex.
 */
#ifndef NXL_CORE_H
#define NXL_CORE_H

#include "md.h"
#include <nxl/nxl_backend.h>

#include "util.h"

#include <pthread.h>
#include <stdatomic.h>

#define NXL__MAX_BACKENDS 8
#define NXL__NAME_MAX 256

/* --- backends (plugin.c) ------------------------------------------------ */

struct nxl_backend {
    nxl_agent_t *agent;
    nxl_backend_ops_t ops; /* validated, optional ops defaulted */
    unsigned index;        /* position in agent->backends */
    void *engine;          /* ops.engine_size bytes */
    nxl_backend_host_t host;
    bool serialize; /* no NXL_CAP_THREAD_SAFE: take lock */
    pthread_mutex_t lock;
    nxl_blob_t conn_info; /* cached at create when REMOTE */
    void *self_peer;      /* peer_load(own name) result, LOCAL only */
    int event_fd;
};

/* nxl__plugin_find finds backend ops by type name (case-insensitive),
 * loading an out-of-tree plugin if needed. *ops_p is static. */
nxl_status_t nxl__plugin_find(const char *type,
                              const nxl_backend_ops_t **ops_p);

/* nxl__backend_destroy finalizes be (agent destroy; nothing uses it). */
void nxl__backend_destroy(nxl_backend_t *be);

static inline void
nxl__be_lock(nxl_backend_t *be)
{
    if (be->serialize) {
        pthread_mutex_lock(&be->lock);
    }
}

static inline void
nxl__be_unlock(nxl_backend_t *be)
{
    if (be->serialize) {
        pthread_mutex_unlock(&be->lock);
    }
}

/* --- region indexes (registry.c) ---------------------------------------- */

/* One backend's part of a local registration. */
typedef struct nxl__region_be {
    void *md;       /* mem_register result or NULL */
    void *self_rmd; /* md_unpack(self) (LOCAL) or NULL */
    nxl_blob_t pub; /* md_pack result (REMOTE) */
} nxl__region_be_t;

/* A local registration. Index elements start with node, then desc. The
 * record ends with one entry per backend the agent had when it was
 * registered (nbe; a backend created later has none, and takes no part in
 * the region): 80 bytes and 32 per backend, not a fixed
 * NXL__MAX_BACKENDS, so that 100,000 regions of a one-backend agent take
 * 13 MB with malloc's headers, not 35, and a region's lines are fewer to
 * fault in and to miss. */
typedef struct nxl__region {
    nxl__bnode_t node;
    nxl_desc_t desc;
    int backing_fd;
    unsigned nbe; /* entries in be[] */
    uint64_t backing_off;
    nxl__region_be_t be[];
} nxl__region_t;

/* nxl__region_md returns backend b's key of region r (mem_register's
 * result), or NULL when b has none. */
static inline void *
nxl__region_md(const nxl__region_t *r, unsigned b)
{
    return b < r->nbe ? r->be[b].md : NULL;
}

/* nxl__region_key returns backend b's key of region r for a transfer:
 * with self the loopback view (md_unpack of its own public data), else
 * its md; NULL when b has none. */
static inline void *
nxl__region_key(const nxl__region_t *r, unsigned b, bool self)
{
    if (b >= r->nbe) {
        return NULL;
    }
    return self ? r->be[b].self_rmd : r->be[b].md;
}

/* A region of a peer. */
typedef struct nxl__rregion {
    nxl__bnode_t node;
    nxl_desc_t desc;
    void *rmd[NXL__MAX_BACKENDS];
    uint64_t pubhash[NXL__MAX_BACKENDS];
    uint64_t load; /* the peer's md_load that added it */
} nxl__rregion_t;

/* nxl__index_t is a set of regions (elements of elem_size bytes that start
 * with an nxl__bnode_t and an nxl_desc_t) ordered by (dev_id, addr, len)
 * in a B+tree of ranges (util/btree.h): insert, remove, exact and covering
 * lookups are O(log n) in any order with few cache misses, and element
 * pointers stay put until the element is removed. The index allocates and
 * frees its elements (from the agent's record pools, util/pool.h). */
typedef struct nxl__index {
    nxl__btree_t tree;
    size_t elem_size;
} nxl__index_t;

/* nxl__index_init makes ix empty; its elements and tree blocks will come
 * from pools (NULL: malloc), which must outlive them. The agent's pools
 * rely on the agent's control lock, under which every index changes. */
void nxl__index_init(nxl__index_t *ix, size_t elem_size, nxl__pools_t *pools);
/* nxl__index_fini frees every element (their contents are the caller's
 * to release first). */
void nxl__index_fini(nxl__index_t *ix);
size_t nxl__index_count(const nxl__index_t *ix);
/* nxl__index_first / nxl__index_next walk the elements in order (NULL at
 * the end). */
void *nxl__index_first(const nxl__index_t *ix);
void *nxl__index_next(const nxl__index_t *ix, const void *elem);
/* nxl__index_find_exact returns the element whose desc equals d, or NULL. */
void *nxl__index_find_exact(const nxl__index_t *ix, const nxl_desc_t *d);
/* nxl__index_find_overlap returns an element sharing a byte with d (same
 * dev_id), or NULL (also for an empty or wrapping d). */
void *nxl__index_find_overlap(const nxl__index_t *ix, const nxl_desc_t *d);
/* nxl__index_find_cover returns an element covering [addr, addr+len) on
 * dev_id, or NULL. *hint holds the last element found (start with NULL;
 * valid only while the index is unchanged): sorted lookups are O(1). */
void *nxl__index_find_cover(const nxl__index_t *ix, uint64_t addr, uint64_t len,
                            uint64_t dev_id, void **hint);
/* nxl__index_add adds a copy of elem (its node is set from its desc) and
 * sets *elem_p to the stored element. With excl it refuses any overlap
 * (the index must then hold none), else only an equal desc. Returns
 * NXL_OK; NXL_ERR_NOT_ALLOWED with *elem_p the element in the way and no
 * message (the caller says what the conflict means); NXL_ERR_NOMEM or
 * NXL_ERR_INVALID_PARAM (empty or wrapping desc) with a message. */
nxl_status_t nxl__index_add(nxl__index_t *ix, const void *elem, bool excl,
                            void **elem_p);
/* nxl__index_add_ext is nxl__index_add for an element of elem_size +
 * extra bytes: the first elem_size are copied from elem, the extra ones
 * zeroed (a record that ends in a flexible array). */
nxl_status_t nxl__index_add_ext(nxl__index_t *ix, const void *elem,
                                size_t extra, bool excl, void **elem_p);
/* nxl__index_remove removes and frees the element elem. */
void nxl__index_remove(nxl__index_t *ix, void *elem);

/* --- peers -------------------------------------------------------------- */

typedef struct nxl__peer {
    char name[NXL__NAME_MAX];
    uint64_t generation;
    uint64_t loads;                      /* md_loads applied to this peer */
    atomic_bool dead;                    /* a backend reported disconnect */
    void *ctx[NXL__MAX_BACKENDS];        /* peer_load result */
    nxl_blob_t conn[NXL__MAX_BACKENDS];  /* the conn info loaded */
    nxl__index_t regions[NXL_MEM_KINDS]; /* of nxl__rregion_t */
    struct nxl__peer *next;
} nxl__peer_t;

/* --- agent -------------------------------------------------------------- */

typedef struct nxl__notif_rec {
    char *agent;
    void *msg;
    size_t len;
} nxl__notif_rec_t;

struct nxl_agent {
    char name[NXL__NAME_MAX];
    nxl_agent_config_t cfg;
    bool locking;
    pthread_rwlock_t lock;

    nxl_backend_t *backends[NXL__MAX_BACKENDS];
    unsigned nbackends;

    nxl__index_t regions[NXL_MEM_KINDS]; /* of nxl__region_t */
    /* Where the records of every index (local and peers') and their tree
     * blocks live: huge-page chunks (util/pool.h), unlocked, under the
     * control lock like the indexes; destroyed last. */
    nxl__pools_t *pools;
    nxl__peer_t *peers;
    /* Bumped by every nxl__peer_drop (under the exclusive lock): a
     * transfer's cached peer pointer is good while this has not moved. */
    uint64_t peer_drops;
    atomic_uint_fast64_t generation;
    /* Bumped by every deregistration: prepared lists and transfers that
     * hold keys of local regions check theirs again when it moved. */
    atomic_uint_fast64_t reg_gen;

    pthread_mutex_t xfer_lock; /* the list of live transfers */
    struct nxl_xfer *xfers;

    pthread_mutex_t notif_lock;
    nxl__notif_rec_t *notifs;
    size_t nnotifs, notifs_cap;

    int wake_fd; /* eventfd: host->wake */
    int ep_fd;   /* epoll of wake_fd + backend fds */

    nxl__sc_t *sc;               /* side-channel listener */
    pthread_mutex_t store_lock;  /* opening store */
    struct nxl__md_store *store; /* etcd store, opened on first use */
    nxl__sc_auth_t sc_auth;      /* its secret (owned) and rate */
    pthread_t progress_tid;
    atomic_bool progress_stop;
    bool progress_running;
};

/* Lock helpers: control = exclusive, data = shared (STRICT: exclusive
 * too); no-ops for an agent without threads and sync NONE. Inline, so
 * that the files of core do not call back into agent.c. */
static inline void
nxl__ctl_lock(nxl_agent_t *a)
{
    if (a->locking) {
        pthread_rwlock_wrlock(&a->lock);
    }
}

static inline void
nxl__ctl_unlock(nxl_agent_t *a)
{
    if (a->locking) {
        pthread_rwlock_unlock(&a->lock);
    }
}

static inline void
nxl__data_lock(nxl_agent_t *a)
{
    if (!a->locking) {
        return;
    }
    if (a->cfg.sync_mode == NXL_SYNC_STRICT) {
        pthread_rwlock_wrlock(&a->lock);
    } else {
        pthread_rwlock_rdlock(&a->lock);
    }
}

static inline void
nxl__data_unlock(nxl_agent_t *a)
{
    if (a->locking) {
        pthread_rwlock_unlock(&a->lock);
    }
}

/* nxl__peer_find returns the loaded peer called name, or NULL. Needs the
 * agent lock (either mode). */
nxl__peer_t *nxl__peer_find(nxl_agent_t *a, const char *name);
/* nxl__peer_drop unloads and frees peer p (control lock held). */
void nxl__peer_drop(nxl_agent_t *a, nxl__peer_t *p);
/* nxl__peer_mark_dead records that a backend saw peer name disconnect;
 * later posts fail NOT_FOUND and a reload replaces it. */
void nxl__peer_mark_dead(nxl_agent_t *a, const char *name);

/* nxl__opts_check validates what every call reads from opts (NULL is the
 * defaults): a backend restriction needs its array, an attached
 * notification of len > 0 its bytes. where names the caller in the
 * message. Returns NXL_OK or NXL_ERR_INVALID_PARAM. */
nxl_status_t nxl__opts_check(const nxl_opts_t *opts, const char *where);
/* nxl__opts_in is what a public call does first with its opts: a caller's
 * struct (of any layout since the first, nxl.h) is read into *copy, this
 * build's layout with defaults where the caller's is shorter, checked with
 * nxl__opts_check, and *opts_p then points at copy. NULL, and a struct
 * of this build's size (read in place), stay as they are.
 * Returns NXL_OK, NXL_ERR_INVALID_PARAM or NXL_ERR_NOT_SUPPORTED
 * (nxl__abi_in). */
nxl_status_t nxl__opts_in(const nxl_opts_t **opts_p, nxl_opts_t *copy,
                          const char *where);
/* nxl__dlist_check validates a caller's descriptor list: not NULL, a known
 * memory kind, descriptors present when count > 0, and a count whose bytes
 * fit in memory. where names the caller. Returns NXL_OK or
 * NXL_ERR_INVALID_PARAM. */
nxl_status_t nxl__dlist_check(const nxl_dlist_t *dlist, const char *where);
/* nxl__be_allowed reports whether opts (checked) lets backend be be used:
 * no restriction, or be is one of opts->backends. */
bool nxl__be_allowed(const nxl_backend_t *be, const nxl_opts_t *opts);

/* nxl__regions_fini deregisters every local region (destroy). */
void nxl__regions_fini(nxl_agent_t *a);
/* nxl__shared_lookup finds the memfd allocation holding [addr, addr+len):
 * *fd_p and *off_p, or -1 when there is none. */
void nxl__shared_lookup(uint64_t addr, uint64_t len, int *fd_p,
                        uint64_t *off_p);

/* nxl__xfers_using reports whether a transfer of a still in flight uses
 * one of region r's backend keys (md or loopback self_rmd). */
bool nxl__xfers_using(nxl_agent_t *a, const nxl__region_t *r);
/* nxl__xfers_using_remote reports whether a transfer still in flight uses
 * one of a peer region's backend keys (rr->rmd). */
bool nxl__xfers_using_remote(nxl_agent_t *a, const nxl__rregion_t *rr);

/* nxl__xfers_release_all releases every live transfer (destroy). */
void nxl__xfers_release_all(nxl_agent_t *a);
/* nxl__notif_push queues a notification (any thread). */
void nxl__notif_push(nxl_agent_t *a, const char *peer, const void *msg,
                     size_t len);
/* nxl__notifs_fini frees queued notifications. */
void nxl__notifs_fini(nxl_agent_t *a);
/* nxl__progress_start starts the progress thread (progress.c), which
 * sleeps on the agent's fd and drives progress; nxl__progress_stop stops
 * and joins it (no-op when it does not run). Start returns NXL_OK or the
 * pthread error's status. Called by create and destroy only. */
nxl_status_t nxl__progress_start(nxl_agent_t *a);
void nxl__progress_stop(nxl_agent_t *a);
/* nxl__progress_all drives every backend once (data lock held or not). */
unsigned nxl__progress_all(nxl_agent_t *a);
/* nxl__wait_events sleeps on the agent's fds up to timeout_ms. */
void nxl__wait_events(nxl_agent_t *a, int timeout_ms);
/* nxl__md_store_fini closes the agent's metadata store, if one was opened:
 * its threads stop and its lease is revoked (md_ops.c; destroy). */
void nxl__md_store_fini(nxl_agent_t *a);
/* nxl__sc_handler serves side-channel requests (md_ops.c). */
void nxl__sc_handler(void *arg, uint8_t type, const uint8_t *payload,
                     size_t len, uint8_t *reply_type_p, nxl_blob_t *reply_p);

#endif /* NXL_CORE_H */
