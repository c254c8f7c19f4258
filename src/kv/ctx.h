/*
 * ctx.h - internals of the transfer context (ctx.c) and its completion
 * poller (poller.c).
 *
 * Locks, in the order they may nest: ctx->mu (incoming list, counts, stop)
 * is never held while calling out; ctx->agent_mu serializes this context's
 * calls into the agent (an agent in sync mode NONE is not thread-safe, and
 * the poller runs beside the callers); ctx->stream_mu serializes the device
 * streams; a handle's mu guards its status and wakes its waiters. None of
 * them is held while another is taken, except agent_mu/stream_mu taken
 * alone around one call sequence.
 */
#ifndef NXL_KV_CTX_H
#define NXL_KV_CTX_H

#include "kv.h"

#include <pthread.h>
#include <stdatomic.h>

/* What a handle waits for. */
enum {
    NXL__KV_N_OP = 0,     /* one direct transfer (request or event) */
    NXL__KV_N_TWOHOP = 1, /* a two-hop job run by the poller */
    NXL__KV_N_KEY = 2     /* an NXL notification whose message is key */
};

/* The asynchronous part of one direct transfer. */
enum {
    NXL__KV_OP_NONE = 0, /* nothing outstanding */
    NXL__KV_OP_XFER = 1, /* a posted NXL request */
    NXL__KV_OP_EVENT = 2 /* a device event recorded after the copies */
};

typedef struct nxl__kv_op {
    int kind;
    nxl_xfer_t *xfer;
    nxl_event_t *event;
    const nxl_memkind_ops_t *mk; /* kind that created event */
} nxl__kv_op_t;

/* A two-hop job: chunks of nb blocks, hop 1 (src -> bounce) then hop 2
 * (bounce -> dst) for each, strictly in order. Ids are copies (one
 * allocation starting at sids). */
typedef struct nxl__kv_twohop {
    const nxl_kv_layout_t *src, *dst, *bounce;
    size_t *sids, *dids, *bids;
    size_t n, nb;
    size_t next; /* first block of the current chunk */
    size_t k;    /* length of the current chunk */
    int hop;     /* next hop to launch: 0 or 1 */
    nxl_kv_strategy_t first, second;
    size_t lb, le;
    void *msg; /* NXL notification for the last NXL hop, or NULL */
    size_t msg_len;
    int has_msg;
} nxl__kv_twohop_t;

/* Granularity of a prepared layout list (prep.c): one descriptor per
 * block, per (block, layer) or per (block, layer, outer) region. */
enum { NXL__KV_G_BLOCK = 0, NXL__KV_G_LAYER = 1, NXL__KV_G_REGION = 2 };

/* Most prepared lists one context keeps (least recently used evicted). */
#define NXL__KV_PREP_ENTRIES 32

typedef struct nxl__kv_prep nxl__kv_prep_t;

/* The context's prepared lists (prep.c); agent_mu guards it. */
typedef struct nxl__kv_preps {
    nxl__kv_prep_t *e[NXL__KV_PREP_ENTRIES];
    size_t n;
    size_t descs;  /* descriptors held by all entries */
    uint64_t tick; /* last use stamp */
    uint64_t made; /* lists prepared since the context was made */
} nxl__kv_preps_t;

struct nxl_kv_notif {
    atomic_int refs; /* caller + poller */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    _Atomic nxl_status_t status;
    char err[512]; /* fixed once status leaves IN_PROG */
    char uuid[NXL__UUID_LEN];
    uint64_t start_ns;
    /* Poller-owned from submission on. */
    struct nxl_kv_notif *next;
    int kind;
    nxl__kv_op_t op;
    nxl__kv_twohop_t *th;
    char *key;
    size_t key_len;
    uint64_t deadline_ns;  /* 0 = none */
    uint64_t last_warn_ns; /* 0 = never warned */
};

struct nxl_kv_ctx {
    nxl_kv_agent_t *ka;
    nxl_agent_t *agent;
    const char *name; /* the agent's name */
    nxl_kv_ctx_config_t cfg;
    pthread_mutex_t agent_mu;
    nxl__kv_preps_t preps; /* under agent_mu */
    pthread_mutex_t stream_mu;
    const nxl_memkind_ops_t *mk; /* device kind of the streams */
    nxl_stream_t *h2d, *d2h;
    int no_batch; /* the kind's batched copy failed once: per pair now */
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* CLOCK_MONOTONIC; poller sleeps here */
    nxl_kv_notif_t *in_head; /* submitted, not yet taken by the poller */
    nxl_kv_notif_t **in_tail;
    size_t pending; /* reserved slots: incoming + active */
    bool stop;
    pthread_t thread;
    atomic_uint_fast64_t slow_warnings;
};

/* ctx.c */
nxl_kv_notif_t *nxl__kv_notif_new(int kind);
int nxl__kv_notif_finish(nxl_kv_notif_t *n, nxl_status_t st, const char *err);
void nxl__kv_notif_unref(nxl_kv_notif_t *n);
void nxl__kv_twohop_free(nxl__kv_twohop_t *th);
nxl_status_t nxl__kv_exec_direct(nxl_kv_ctx_t *ctx, nxl_kv_strategy_t s,
                                 const nxl_kv_layout_t *src,
                                 const size_t *src_ids,
                                 const nxl_kv_layout_t *dst,
                                 const size_t *dst_ids, size_t n, size_t lb,
                                 size_t le, const void *msg, size_t msg_len,
                                 int has_msg, nxl__kv_op_t *op);
nxl_status_t nxl__kv_reserve(nxl_kv_ctx_t *ctx);
void nxl__kv_unreserve(nxl_kv_ctx_t *ctx);
void nxl__kv_submit(nxl_kv_ctx_t *ctx, nxl_kv_notif_t *n, int deadline_ms);

/* prep.c: prepared lists of the NIXL strategies. Call with agent_mu
 * held, except nxl__kv_prep_made. */

/* nxl__kv_gran is the coarsest granularity whose units are contiguous
 * (and on one device) in l. */
int nxl__kv_gran(const nxl_kv_layout_t *l);

/* nxl__kv_units is the number of units of granularity g in one block. */
size_t nxl__kv_units(const nxl_kv_layout_t *l, int g);

/* nxl__kv_unit_bytes is the length of one unit of l at granularity g. */
uint64_t nxl__kv_unit_bytes(const nxl_kv_layout_t *l, int g);

/* nxl__kv_merged estimates how many descriptors moving blocks lids of ll
 * to rids of rl, units [ulo, uhi) of each block at granularity g, leaves
 * once contiguous runs are merged: one per run of consecutive ids where
 * those units span whole blocks on both sides (runs counted exactly up to
 * 65 ids, from a sample of 64 places beyond), one per block where they
 * are one range on both sides, else one per unit. Reads only. */
size_t nxl__kv_merged(const nxl_kv_layout_t *ll, const size_t *lids,
                      const nxl_kv_layout_t *rl, const size_t *rids, size_t n,
                      int g, size_t ulo, size_t uhi);

/* nxl__kv_prep_get returns the list of every unit of l at granularity g,
 * prepared by ctx's agent for the local side (peer NULL) or against peer
 * (a loaded peer or the agent's own name), from the cache or prepared now
 * and kept there, evicting the least recently used lists but never keep
 * (a list the caller holds; NULL for none: the budget may be passed by
 * one list for its sake). *pp_p belongs to the cache: valid until the
 * next call on it that may evict. NXL_ERR_NOT_SUPPORTED, with no message,
 * when the list would be larger than the cache may hold; otherwise
 * nxl_dlist_prep's errors. */
nxl_status_t nxl__kv_prep_get(nxl_kv_ctx_t *ctx, const nxl_kv_layout_t *l,
                              const char *peer, int g,
                              const nxl_prepped_t *keep,
                              const nxl_prepped_t **pp_p);

/* nxl__kv_prep_drop releases the cached list pp (nothing if not held). */
void nxl__kv_prep_drop(nxl_kv_ctx_t *ctx, const nxl_prepped_t *pp);

/* nxl__kv_prep_clear releases every cached list (context destroy). */
void nxl__kv_prep_clear(nxl_kv_ctx_t *ctx);

/* nxl__kv_prep_made counts the lists ctx has prepared so far (a test
 * hook: a transfer that found its lists cached adds nothing). Takes
 * agent_mu. */
uint64_t nxl__kv_prep_made(nxl_kv_ctx_t *ctx);

/* poller.c: the thread body (arg is the context). */
void *nxl__kv_poller_main(void *arg);

#endif /* NXL_KV_CTX_H */
