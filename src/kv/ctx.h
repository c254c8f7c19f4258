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

#define NXL__KV_UUID_LEN 37

/* What a handle waits for. */
enum {
    NXL__KV_N_OP = 0,     /* one direct transfer (request or event) */
    NXL__KV_N_TWOHOP = 1, /* a two-hop job run by the poller */
    NXL__KV_N_KEY = 2     /* an NXL notification whose message is key */
};

/* The asynchronous part of one direct transfer. */
enum {
    NXL__KV_OP_NONE = 0,  /* nothing outstanding */
    NXL__KV_OP_XFER = 1,  /* a posted NXL request */
    NXL__KV_OP_EVENT = 2  /* a device event recorded after the copies */
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
    size_t next;  /* first block of the current chunk */
    size_t k;     /* length of the current chunk */
    int hop;      /* next hop to launch: 0 or 1 */
    nxl_kv_strategy_t first, second;
    size_t lb, le;
    void *msg;    /* NXL notification for the last NXL hop, or NULL */
    size_t msg_len;
    int has_msg;
} nxl__kv_twohop_t;

struct nxl_kv_notif {
    atomic_int refs;          /* caller + poller */
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* CLOCK_MONOTONIC */
    _Atomic nxl_status_t status;
    char err[512];            /* fixed once status leaves IN_PROG */
    char uuid[NXL__KV_UUID_LEN];
    uint64_t start_ns;
    /* Poller-owned from submission on. */
    struct nxl_kv_notif *next;
    int kind;
    nxl__kv_op_t op;
    nxl__kv_twohop_t *th;
    char *key;
    size_t key_len;
    uint64_t deadline_ns;     /* 0 = none */
    uint64_t last_warn_ns;    /* 0 = never warned */
};

struct nxl_kv_ctx {
    nxl_kv_agent_t *ka;
    nxl_agent_t *agent;
    const char *name;         /* the agent's name */
    nxl_kv_ctx_config_t cfg;
    pthread_mutex_t agent_mu;
    pthread_mutex_t stream_mu;
    const nxl_memkind_ops_t *mk; /* device kind of the streams */
    nxl_stream_t *h2d, *d2h;
    int no_batch; /* the kind's batched copy failed once: per pair now */
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* CLOCK_MONOTONIC; poller sleeps here */
    nxl_kv_notif_t *in_head;  /* submitted, not yet taken by the poller */
    nxl_kv_notif_t **in_tail;
    size_t pending;           /* reserved slots: incoming + active */
    bool stop;
    pthread_t thread;
    atomic_uint_fast64_t slow_warnings;
};

/* ctx.c */
nxl_kv_notif_t *nxl__kv_notif_new(int kind);
int nxl__kv_notif_finish(nxl_kv_notif_t *n, nxl_status_t st,
                         const char *err);
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

/* poller.c: the thread body (arg is the context). */
void *nxl__kv_poller_main(void *arg);

#endif /* NXL_KV_CTX_H */
