/*
 * ctx.c - the KV transfer context: executor (memcpy, device copies, NXL
 * READ/WRITE, two-hop through a pinned bounce buffer) and the completion
 * handles it returns. The poller thread that finishes asynchronous work is
 * in poller.c; ctx.h holds what both share.
 *
 * Direct transfers run on the caller's thread: memcpy and blocking device
 * copies end before nxl_kv_transfer returns; async device copies and NXL
 * requests are handed to the poller as an event or a posted request.
 * Two-hop transfers run entirely on the poller (a step machine), so
 * nxl_kv_transfer returns at once.
 */
#include "ctx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- completion handles ------------------------------------------------ */

/* nxl__kv_notif_new allocates a handle in progress with one reference (the
 * caller's) and a fresh uuid. Returns NULL with an NXL_ERR_NOMEM message. */
nxl_kv_notif_t *
nxl__kv_notif_new(int kind)
{
    nxl_kv_notif_t *n = calloc(1, sizeof(*n));
    pthread_condattr_t ca;

    if (n == NULL) {
        nxl__fail(NXL_ERR_NOMEM, "kv: out of memory for a completion");
        return NULL;
    }
    pthread_mutex_init(&n->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&n->refs, 1);
    atomic_init(&n->status, NXL_IN_PROG);
    n->kind = kind;
    n->start_ns = nxl__now_ns();
    nxl__uuid4(n->uuid);
    return n;
}

/* nxl__kv_notif_finish moves n out of NXL_IN_PROG with status st and the
 * message err (may be NULL), waking its waiters. A handle that already
 * left NXL_IN_PROG (a deadline passed) keeps its first status. Returns 1
 * when this call set the status. Thread-safe. */
int
nxl__kv_notif_finish(nxl_kv_notif_t *n, nxl_status_t st, const char *err)
{
    int set = 0;

    pthread_mutex_lock(&n->mu);
    if (atomic_load(&n->status) == NXL_IN_PROG) {
        snprintf(n->err, sizeof(n->err), "%s", err ? err : "");
        atomic_store(&n->status, st);
        pthread_cond_broadcast(&n->cv);
        set = 1;
    }
    pthread_mutex_unlock(&n->mu);
    return set;
}

/* nxl__kv_notif_unref drops one reference and frees n with the last one.
 * Whoever drops the poller's reference has already released the work
 * (request, event, two-hop job). Thread-safe. */
void
nxl__kv_notif_unref(nxl_kv_notif_t *n)
{
    if (atomic_fetch_sub(&n->refs, 1) != 1) {
        return;
    }
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
    free(n->key);
    nxl__kv_twohop_free(n->th);
    free(n);
}

/* nxl_kv_notif_status returns n's state (see nxl_kv.h); an error also goes
 * to nxl_last_error(). Thread-safe. */
NXL_API nxl_status_t
nxl_kv_notif_status(const nxl_kv_notif_t *n)
{
    nxl_status_t st;

    if (n == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "notif_status: NULL handle");
    }
    st = atomic_load(&n->status);
    if (st < 0) {
        return nxl__fail(st, "%s", n->err);
    }
    return st;
}

/* nxl_kv_notif_error returns the error text of a failed or timed-out
 * handle ("" otherwise); it lives as long as n. Thread-safe. */
NXL_API const char *
nxl_kv_notif_error(const nxl_kv_notif_t *n)
{
    if (n == NULL || atomic_load(&n->status) == NXL_IN_PROG) {
        return "";
    }
    return n->err;
}

/* nxl_kv_notif_wait sleeps on n's condition variable until n leaves
 * NXL_IN_PROG or timeout_ms passes (-1: no limit). Returns n's status, or
 * NXL_ERR_TIMEOUT for the wait itself (n unchanged). Thread-safe. */
NXL_API nxl_status_t
nxl_kv_notif_wait(nxl_kv_notif_t *n, int timeout_ms)
{
    struct timespec ts;
    nxl_status_t st;
    int rc = 0;

    if (n == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "notif_wait: NULL handle");
    }
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&n->mu);
    while (atomic_load(&n->status) == NXL_IN_PROG && rc != ETIMEDOUT) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&n->cv, &n->mu);
        } else {
            rc = pthread_cond_timedwait(&n->cv, &n->mu, &ts);
        }
    }
    st = atomic_load(&n->status);
    pthread_mutex_unlock(&n->mu);
    if (st == NXL_IN_PROG) {
        return nxl__fail(NXL_ERR_TIMEOUT,
                         "notif_wait: transfer %s still in progress after "
                         "%d ms",
                         n->uuid, timeout_ms);
    }
    return nxl_kv_notif_status(n);
}

/* nxl_kv_notif_release drops the caller's reference; work still running
 * finishes on the poller, which frees n last. Accepts NULL. Thread-safe. */
NXL_API void
nxl_kv_notif_release(nxl_kv_notif_t *n)
{
    if (n != NULL) {
        nxl__kv_notif_unref(n);
    }
}

/* nxl_kv_notif_uuid returns n's uuid4 string (lives as long as n). */
NXL_API const char *
nxl_kv_notif_uuid(const nxl_kv_notif_t *n)
{
    return n == NULL ? "" : n->uuid;
}

/* ---- configuration ----------------------------------------------------- */

/* nxl_kv_ctx_config_init fills cfg with the defaults of nxl_kv.h. */
NXL_API void
nxl_kv_ctx_config_init(nxl_kv_ctx_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->device = 0;
    cfg->poll_tick_ms = 1;
    cfg->warn_after_ms = 60000;
    cfg->warn_every_ms = 30000;
    cfg->max_pending = 4096;
}

/* nxl_kv_opts_init fills opts with Dynamo's TransferOptions defaults: all
 * layers, no bounce buffer, no deadline, no notification. */
NXL_API void
nxl_kv_opts_init(nxl_kv_opts_t *opts)
{
    if (opts != NULL) {
        memset(opts, 0, sizeof(*opts));
        opts->size = sizeof(*opts);
    }
}

/* ---- context lifecycle ------------------------------------------------- */

/* nxl_kv_ctx_create: see nxl_kv.h. Device streams are created on first
 * use, so a context works where the device kind cannot run. Returns
 * NXL_OK, NXL_ERR_INVALID_PARAM, NXL_ERR_NOMEM or NXL_ERR_UNKNOWN (thread
 * creation failed). */
NXL_API nxl_status_t
nxl_kv_ctx_create(nxl_kv_agent_t *a, const nxl_kv_ctx_config_t *cfg,
                  nxl_kv_ctx_t **ctx_p)
{
    nxl_kv_ctx_t *ctx;
    pthread_condattr_t ca;
    int rc;

    if (a == NULL || ctx_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "ctx_create: NULL argument");
    }
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "ctx_create: out of memory");
    }
    nxl_kv_ctx_config_init(&ctx->cfg);
    if (cfg != NULL) {
        nxl_status_t st =
            nxl__abi_in(&ctx->cfg, sizeof(ctx->cfg), cfg,
                        NXL_KV_CTX_CONFIG_V1_SIZE, "ctx_create: cfg");

        if (st != NXL_OK) {
            free(ctx);
            return st;
        }
    }
    if (ctx->cfg.poll_tick_ms == 0) {
        ctx->cfg.poll_tick_ms = 1;
    }
    if (ctx->cfg.max_pending == 0) {
        ctx->cfg.max_pending = 4096;
    }
    if (ctx->cfg.warn_every_ms == 0) {
        ctx->cfg.warn_every_ms = 1;
    }
    ctx->ka = a;
    ctx->agent = nxl_kv_agent_raw(a);
    ctx->name = nxl_agent_name(ctx->agent);
    pthread_mutex_init(&ctx->agent_mu, NULL);
    pthread_mutex_init(&ctx->stream_mu, NULL);
    pthread_mutex_init(&ctx->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ctx->cv, &ca);
    pthread_condattr_destroy(&ca);
    ctx->in_tail = &ctx->in_head;
    atomic_init(&ctx->slow_warnings, 0);
    rc = pthread_create(&ctx->thread, NULL, nxl__kv_poller_main, ctx);
    if (rc != 0) {
        pthread_cond_destroy(&ctx->cv);
        pthread_mutex_destroy(&ctx->mu);
        pthread_mutex_destroy(&ctx->stream_mu);
        pthread_mutex_destroy(&ctx->agent_mu);
        free(ctx);
        return nxl__fail(NXL_ERR_UNKNOWN, "ctx_create: poller thread: %s",
                         strerror(rc));
    }
    *ctx_p = ctx;
    return NXL_OK;
}

/* nxl_kv_ctx_destroy: see nxl_kv.h. Pending transfers drain first (their
 * errors are logged); awaited notifications are canceled. Not to be called
 * concurrently with other calls on ctx. Accepts NULL. */
NXL_API void
nxl_kv_ctx_destroy(nxl_kv_ctx_t *ctx)
{
    if (ctx == NULL) {
        return;
    }
    pthread_mutex_lock(&ctx->mu);
    ctx->stop = true;
    pthread_cond_broadcast(&ctx->cv);
    pthread_mutex_unlock(&ctx->mu);
    pthread_join(ctx->thread, NULL);
    nxl__kv_prep_clear(ctx);
    if (ctx->mk != NULL) {
        if (ctx->h2d != NULL) {
            ctx->mk->stream_destroy(ctx->h2d);
        }
        if (ctx->d2h != NULL) {
            ctx->mk->stream_destroy(ctx->d2h);
        }
    }
    pthread_cond_destroy(&ctx->cv);
    pthread_mutex_destroy(&ctx->mu);
    pthread_mutex_destroy(&ctx->stream_mu);
    pthread_mutex_destroy(&ctx->agent_mu);
    free(ctx);
}

/* nxl_kv_ctx_slow_warnings returns the count of slow-transfer warnings.
 * Thread-safe. */
NXL_API uint64_t
nxl_kv_ctx_slow_warnings(const nxl_kv_ctx_t *ctx)
{
    return ctx == NULL ? 0 : atomic_load(&ctx->slow_warnings);
}

/* ---- direct execution -------------------------------------------------- */

/* kv_streams makes sure the device kind and both streams exist; call with
 * stream_mu held. */
static nxl_status_t
kv_streams(nxl_kv_ctx_t *ctx)
{
    const nxl_memkind_ops_t *mk;
    nxl_status_t st;

    if (ctx->mk == NULL) {
        mk = nxl_memkind_device();
        if (mk->probe != NULL && (st = mk->probe()) != NXL_OK) {
            return st;
        }
        if (mk->stream_create == NULL || mk->copy_async == NULL ||
            mk->stream_sync == NULL || mk->event_create == NULL ||
            mk->event_record == NULL || mk->event_query == NULL) {
            return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                             "kv: device kind '%s' has no streams or events",
                             mk->name);
        }
        ctx->mk = mk;
    }
    if (ctx->h2d == NULL) {
        st = ctx->mk->stream_create(ctx->cfg.device, &ctx->h2d);
        if (st != NXL_OK) {
            return st;
        }
    }
    if (ctx->d2h == NULL) {
        st = ctx->mk->stream_create(ctx->cfg.device, &ctx->d2h);
        if (st != NXL_OK) {
            return st;
        }
    }
    return NXL_OK;
}

/* KV_BATCH is how many pairs one batched submission carries (the arrays
 * live on the stack: 3 x 8 bytes a pair). */
#define KV_BATCH 256

/* kv_queue_batched queues d's pairs on stream in batches of KV_BATCH with
 * the kind's copy_batch_async. NXL_ERR_NOT_SUPPORTED, with nothing queued,
 * when the kind has no batched copy or one failed before (ctx->no_batch);
 * after a failure it sets ctx->no_batch, warns once and returns
 * NXL_ERR_NOT_SUPPORTED too: the caller queues every pair again singly,
 * which is safe (a pair queued twice copies the same bytes twice). Call
 * with stream_mu held. */
static nxl_status_t
kv_queue_batched(nxl_kv_ctx_t *ctx, const nxl_kv_dlists_t *d,
                 nxl_copy_dir_t dir, unsigned flags, nxl_stream_t *stream)
{
    void *dsts[KV_BATCH];
    const void *srcs[KV_BATCH];
    size_t lens[KV_BATCH], i = 0, k;
    nxl_status_t st = NXL_OK;

    if (ctx->no_batch || !NXL_MEMKIND_HAS(ctx->mk, copy_batch_async)) {
        return NXL_ERR_NOT_SUPPORTED;
    }
    while (st == NXL_OK && i < d->count) {
        for (k = 0; k < KV_BATCH && i + k < d->count; k++) {
            dsts[k] = (void *)(uintptr_t)d->dst[i + k].addr;
            srcs[k] = (const void *)(uintptr_t)d->src[i + k].addr;
            lens[k] = (size_t)d->src[i + k].len;
        }
        st = ctx->mk->copy_batch_async(dsts, srcs, lens, k, dir, flags, stream);
        i += k;
    }
    if (st != NXL_OK) {
        ctx->no_batch = 1;
        if (st != NXL_ERR_NOT_SUPPORTED) {
            nxl__warn("kv: batched device copy failed (%s: %s); this "
                      "context copies block by block from now on",
                      nxl_status_name(st), nxl_last_error());
        }
        return NXL_ERR_NOT_SUPPORTED;
    }
    return NXL_OK;
}

/* kv_layout_mapped says whether the context's device can address all of
 * l's memory by pointer: every storage is NXL's own allocation, from a
 * device kind on that same device (another GPU's memory would need peer
 * access) or from the pinned kind while CUDA backs it (cuMemHostAlloc
 * memory is mapped for every device under unified addressing).
 * Registered memory of unknown origin is not: a copy kernel touching
 * pageable memory would fault the device context. */
static int
kv_layout_mapped(const nxl_kv_ctx_t *ctx, const nxl_kv_layout_t *l)
{
    size_t i;

    if (l->storages == NULL) {
        return 0;
    }
    for (i = 0; i < l->num_regions; i++) {
        const nxl_kv_storage_t *sg = l->storages[i];

        if (sg == NULL || sg->mk == NULL) {
            return 0;
        }
        if (sg->mk->type == NXL_MEMKIND_DEVICE
                ? sg->loc.index != (uint64_t)ctx->cfg.device
                : !(sg->mk == nxl_memkind_pinned() &&
                    nxl_memkind_pinned_mapped())) {
            return 0;
        }
    }
    return 1;
}

/* kv_exec_device queues every pair of d on the D2H stream (D2H strategies)
 * or the H2D stream (the others). Async strategies record an event into
 * *op; blocking ones synchronize the stream. On a failure the stream is
 * synchronized before returning, so nothing still touches the memory. */
static nxl_status_t
kv_exec_device(nxl_kv_ctx_t *ctx, nxl_kv_strategy_t s,
               const nxl_kv_layout_t *src, const nxl_kv_layout_t *dst,
               const nxl_kv_dlists_t *d, nxl__kv_op_t *op)
{
    nxl_copy_dir_t dir;
    nxl_stream_t *stream;
    nxl_event_t *ev = NULL;
    nxl_status_t st;
    int async = 1;
    size_t i;

    switch (s) {
    case NXL_KV_CUDA_BLOCKING_H2D:
        async = 0;
        /* fall through */
    case NXL_KV_CUDA_ASYNC_H2D:
        dir = NXL_COPY_H2D;
        break;
    case NXL_KV_CUDA_BLOCKING_D2H:
        async = 0;
        /* fall through */
    case NXL_KV_CUDA_ASYNC_D2H:
        dir = NXL_COPY_D2H;
        break;
    default:
        dir = NXL_COPY_D2D;
        break;
    }
    pthread_mutex_lock(&ctx->stream_mu);
    st = kv_streams(ctx);
    if (st != NXL_OK) {
        pthread_mutex_unlock(&ctx->stream_mu);
        return st;
    }
    stream = (dir == NXL_COPY_D2H) ? ctx->d2h : ctx->h2d;
    if (async) {
        st = ctx->mk->event_create(&ev);
    }
    /* Async strategies (pinned or device memory at both ends) go in
     * batches where the kind has them: one driver call per KV_BATCH pairs
     * instead of one per pair. Blocking ones (pageable host memory) stay
     * pair by pair. */
    if (st == NXL_OK && async && d->count > 1 &&
        kv_queue_batched(ctx, d, dir,
                         kv_layout_mapped(ctx, src) &&
                                 kv_layout_mapped(ctx, dst)
                             ? NXL_COPY_BATCH_MAPPED
                             : 0,
                         stream) == NXL_OK) {
        i = d->count;
    } else {
        i = 0;
    }
    for (; st == NXL_OK && i < d->count; i++) {
        st = ctx->mk->copy_async((void *)(uintptr_t)d->dst[i].addr,
                                 (const void *)(uintptr_t)d->src[i].addr,
                                 (size_t)d->src[i].len, dir, stream);
    }
    if (st == NXL_OK && async) {
        st = ctx->mk->event_record(ev, stream);
    }
    if (st != NXL_OK || !async) {
        /* Blocking copies end here; after a failure, wait for what was
         * queued so no copy outlives the call. */
        nxl_status_t st2 = ctx->mk->stream_sync(stream);

        if (st == NXL_OK) {
            st = st2;
        }
        if (ev != NULL) {
            ctx->mk->event_destroy(ev);
            ev = NULL;
        }
    }
    pthread_mutex_unlock(&ctx->stream_mu);
    if (st == NXL_OK && async) {
        op->kind = NXL__KV_OP_EVENT;
        op->event = ev;
        op->mk = ctx->mk;
    }
    return st;
}

/* Merging must shrink a transfer this many times for its own lists to
 * be used instead of the prepared ones (see kv_exec_nixl). */
#define KV_RUNS_FACTOR 8

/* kv_make_lists makes the transfer the per-transfer way: this transfer's
 * own merged lists (nxl_kv_build_dlists), prepared by nxl_xfer_create.
 * For transfers that merge into a few runs and for layouts the cache
 * cannot hold or prepare whole. Takes agent_mu around the create. */
static nxl_status_t
kv_make_lists(nxl_kv_ctx_t *ctx, nxl_op_t xop, int flipped,
              const nxl_kv_layout_t *src, const size_t *src_ids,
              const nxl_kv_layout_t *dst, const size_t *dst_ids, size_t n,
              size_t lb, size_t le, const char *remote, const nxl_opts_t *o,
              nxl_xfer_t **x_p)
{
    nxl_kv_dlists_t d;
    nxl_dlist_t sl, dl;
    nxl_status_t st;

    st = nxl__kv_build_dlists(src, src_ids, dst, dst_ids, n, lb, le, &d);
    if (st != NXL_OK) {
        return st;
    }
    sl = (nxl_dlist_t){d.src_mem, d.src, d.count};
    dl = (nxl_dlist_t){d.dst_mem, d.dst, d.count};
    pthread_mutex_lock(&ctx->agent_mu);
    st = nxl_xfer_create(ctx->agent, xop, flipped ? &dl : &sl,
                         flipped ? &sl : &dl, remote, o, x_p);
    pthread_mutex_unlock(&ctx->agent_mu);
    nxl_kv_dlists_free(&d);
    return st;
}

/* kv_make_prepped makes the transfer from the cached lists of local
 * layout ll and remote layout rl (against remote) at granularity g, with
 * index pairs (li[i], ri[i]), i < cnt. NXL_ERR_NOT_FOUND from the make is
 * a list gone stale (its memory deregistered, the peer's metadata
 * reloaded or invalidated): both lists are dropped, prepared again, and
 * the make is retried once. *fallback_p is set when the lists cannot be
 * had (too large for the cache, or not coverable whole): the caller then
 * makes the transfer the per-transfer way. agent_mu held. */
static nxl_status_t
kv_make_prepped(nxl_kv_ctx_t *ctx, nxl_op_t xop, const nxl_kv_layout_t *ll,
                const nxl_kv_layout_t *rl, const char *remote, int g,
                const size_t *li, const size_t *ri, size_t cnt,
                const nxl_opts_t *o, nxl_xfer_t **x_p, int *fallback_p)
{
    const nxl_prepped_t *lp = NULL, *rp = NULL;
    nxl_status_t st;
    int retried = 0;

    for (;;) {
        st = nxl__kv_prep_get(ctx, ll, NULL, g, NULL, &lp);
        if (st == NXL_OK) {
            st = nxl__kv_prep_get(ctx, rl, remote, g, lp, &rp);
        }
        if (st != NXL_OK) {
            *fallback_p = 1;
            return st;
        }
        st = nxl_xfer_make(ctx->agent, xop, lp, li, rp, ri, cnt, o, x_p);
        if (st != NXL_ERR_NOT_FOUND || retried) {
            return st;
        }
        nxl__kv_prep_drop(ctx, lp);
        nxl__kv_prep_drop(ctx, rp);
        retried = 1;
    }
}

/* kv_exec_nixl posts one NXL request moving blocks src_ids of src to
 * dst_ids of dst over layers [lb, le), with the lists, op and remote
 * agent of Dynamo's executor (§7.2): flipped strategies swap the lists,
 * READ names the source's agent, WRITE the destination's (our own name for
 * local files: loopback). Each layout's list comes prepared from the
 * context's cache (prep.c) and the request is made from index arrays.
 * Done at once -> released, op NONE; in progress -> *op holds the
 * request. */
static nxl_status_t
kv_exec_nixl(nxl_kv_ctx_t *ctx, nxl_kv_strategy_t s, const nxl_kv_layout_t *src,
             const size_t *src_ids, const nxl_kv_layout_t *dst,
             const size_t *dst_ids, size_t n, size_t lb, size_t le,
             const void *msg, size_t msg_len, int has_msg, nxl__kv_op_t *op)
{
    int flipped =
        (s == NXL_KV_NIXL_READ_FLIPPED || s == NXL_KV_NIXL_WRITE_FLIPPED);
    nxl_op_t xop = (s == NXL_KV_NIXL_READ || s == NXL_KV_NIXL_READ_FLIPPED)
                       ? NXL_READ
                       : NXL_WRITE;
    const char *remote = (xop == NXL_READ) ? src->agent : dst->agent;
    const nxl_kv_layout_t *ll = flipped ? dst : src, *rl = flipped ? src : dst;
    const size_t *lids = flipped ? dst_ids : src_ids;
    const size_t *rids = flipped ? src_ids : dst_ids;
    size_t units, ulo, uhi, k, cnt, i, u, *idx = NULL;
    const size_t *li = lids, *ri = rids;
    nxl_xfer_t *x = NULL;
    nxl_opts_t o;
    nxl_status_t st;
    int g, rg, fallback = 0;

    if (remote == NULL) {
        remote = ctx->name;
    }
    st = nxl__kv_pair_check(src, src_ids, dst, dst_ids, n, 0, &lb, &le);
    if (st != NXL_OK) {
        return st;
    }
    /* The coarsest unit both layouts hold contiguously; whole blocks only
     * when the transfer moves every layer. */
    g = nxl__kv_gran(ll);
    rg = nxl__kv_gran(rl);
    if (rg > g) {
        g = rg;
    }
    if (g == NXL__KV_G_BLOCK && (lb != 0 || le != src->cfg.num_layers)) {
        g = NXL__KV_G_LAYER;
    }
    units = nxl__kv_units(ll, g);
    ulo = g == NXL__KV_G_BLOCK   ? 0
          : g == NXL__KV_G_LAYER ? lb
                                 : lb * src->cfg.outer_dim;
    uhi = g == NXL__KV_G_BLOCK   ? 1
          : g == NXL__KV_G_LAYER ? le
                                 : le * src->cfg.outer_dim;
    k = uhi - ulo;
    if (n > SIZE_MAX / 2 / sizeof(size_t) / k) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv: %zu blocks of %zu descriptors", n, k);
    }
    cnt = n * k;
    /* Core merges the index pairs at some 85 instructions each; building
     * this transfer's own lists costs some 20 per block and 330 per merged
     * descriptor (two index lookups and the make). When runs collapse the
     * transfer 8-fold or more (consecutive ids on fully contiguous
     * layouts), its own lists are the cheaper way (docs/performance.md). */
    if (nxl__kv_merged(ll, lids, rl, rids, n, g, ulo, uhi) <=
        cnt / KV_RUNS_FACTOR) {
        fallback = 1;
    } else if (g != NXL__KV_G_BLOCK) {
        /* Block granularity has one unit per block: the ids are the
         * indices. Else units [ulo, uhi) of every block: block by block,
         * or unit by unit where a unit of block b + 1 follows the same
         * unit of block b on both sides (layer-separate layouts), so that
         * consecutive ids merge into one descriptor per unit. */
        idx = malloc(2 * cnt * sizeof(*idx));
        if (idx == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "kv: out of memory for %zu indices",
                             2 * cnt);
        }
        if (nxl__kv_unit_bytes(ll, g) == ll->block_stride &&
            nxl__kv_unit_bytes(rl, g) == rl->block_stride) {
            for (u = ulo; u < uhi; u++) {
                size_t *lu = idx + (u - ulo) * n, *ru = lu + cnt;

                for (i = 0; i < n; i++) {
                    lu[i] = lids[i] * units + u;
                    ru[i] = rids[i] * units + u;
                }
            }
        } else {
            for (i = 0; i < n; i++) {
                size_t lbase = lids[i] * units, rbase = rids[i] * units;

                for (u = ulo; u < uhi; u++) {
                    idx[i * k + u - ulo] = lbase + u;
                    idx[cnt + i * k + u - ulo] = rbase + u;
                }
            }
        }
        li = idx;
        ri = idx + cnt;
    }
    nxl_opts_init(&o);
    if (has_msg) {
        o.has_notif = 1;
        o.notif = msg;
        o.notif_len = msg_len;
    }
    if (!fallback) {
        pthread_mutex_lock(&ctx->agent_mu);
        st = kv_make_prepped(ctx, xop, ll, rl, remote, g, li, ri, cnt, &o, &x,
                             &fallback);
        pthread_mutex_unlock(&ctx->agent_mu);
    }
    free(idx);
    if (fallback) {
        st = kv_make_lists(ctx, xop, flipped, src, src_ids, dst, dst_ids, n, lb,
                           le, remote, &o, &x);
    }
    if (st != NXL_OK) {
        return st;
    }
    pthread_mutex_lock(&ctx->agent_mu);
    st = nxl_xfer_post(x, NULL);
    if (st != NXL_IN_PROG) {
        /* Keep the post's message across the release. */
        char err[512];

        snprintf(err, sizeof(err), "%s", nxl_last_error());
        nxl_xfer_release(x);
        x = NULL;
        if (st < 0) {
            nxl__fail(st, "%s", err);
        }
    }
    pthread_mutex_unlock(&ctx->agent_mu);
    if (st == NXL_IN_PROG) {
        op->kind = NXL__KV_OP_XFER;
        op->xfer = x;
        return NXL_OK;
    }
    return st;
}

/* nxl__kv_exec_direct runs one direct strategy over n block pairs and
 * layers [lb, le); the ids were validated (nxl_kv_validate at submission,
 * kv_check_bounce for bounce ids). Synchronous completion leaves op->kind
 * NONE; otherwise *op holds the work the poller must watch. Thread-safe. */
nxl_status_t
nxl__kv_exec_direct(nxl_kv_ctx_t *ctx, nxl_kv_strategy_t s,
                    const nxl_kv_layout_t *src, const size_t *src_ids,
                    const nxl_kv_layout_t *dst, const size_t *dst_ids, size_t n,
                    size_t lb, size_t le, const void *msg, size_t msg_len,
                    int has_msg, nxl__kv_op_t *op)
{
    nxl_kv_dlists_t d;
    nxl_status_t st;
    size_t i;

    op->kind = NXL__KV_OP_NONE;
    if (n == 0) {
        return NXL_OK;
    }
    if (s == NXL_KV_INVALID || s < NXL_KV_MEMCPY) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Invalid transfer strategy for src=%s, dst=%s",
                         nxl_kv_kind_name(src->loc.kind),
                         nxl_kv_kind_name(dst->loc.kind));
    }
    if (s == NXL_KV_NIXL_READ || s == NXL_KV_NIXL_WRITE ||
        s == NXL_KV_NIXL_WRITE_FLIPPED || s == NXL_KV_NIXL_READ_FLIPPED) {
        return kv_exec_nixl(ctx, s, src, src_ids, dst, dst_ids, n, lb, le, msg,
                            msg_len, has_msg, op);
    }
    st = nxl_kv_build_dlists(src, src_ids, dst, dst_ids, n, lb, le, &d);
    if (st != NXL_OK) {
        return st;
    }
    switch (s) {
    case NXL_KV_MEMCPY:
        for (i = 0; i < d.count; i++) {
            memcpy((void *)(uintptr_t)d.dst[i].addr,
                   (const void *)(uintptr_t)d.src[i].addr,
                   (size_t)d.src[i].len);
        }
        break;
    case NXL_KV_CUDA_ASYNC_H2D:
    case NXL_KV_CUDA_ASYNC_D2H:
    case NXL_KV_CUDA_ASYNC_D2D:
    case NXL_KV_CUDA_BLOCKING_H2D:
    case NXL_KV_CUDA_BLOCKING_D2H:
        st = kv_exec_device(ctx, s, src, dst, &d, op);
        break;
    default:
        st = nxl__fail(NXL_ERR_INVALID_PARAM,
                       "Invalid transfer strategy for src=%s, dst=%s",
                       nxl_kv_kind_name(src->loc.kind),
                       nxl_kv_kind_name(dst->loc.kind));
        break;
    }
    nxl_kv_dlists_free(&d);
    return st;
}

/* ---- transfer entry ---------------------------------------------------- */

/* kv_is_local: a layout is local when its agent is unknown or ctx's. */
static int
kv_is_local(const nxl_kv_ctx_t *ctx, const nxl_kv_layout_t *l)
{
    return l->agent == NULL || strcmp(l->agent, ctx->name) == 0;
}

/* kv_cmp_size orders size_t values for qsort. */
static int
kv_cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;

    return (x > y) - (x < y);
}

/* kv_check_bounce checks the bounce buffer of a two-hop plan: present,
 * pinned, non-empty, ids in range and unique, shaped like the source. */
static nxl_status_t
kv_check_bounce(const nxl_kv_layout_t *src, const nxl_kv_plan_t *plan,
                const nxl_kv_opts_t *o)
{
    const nxl_kv_layout_t *b = o->bounce;
    size_t *sorted, i;

    if (b == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Two-hop transfers require a bounce buffer.");
    }
    if (b->loc.kind != plan->bounce) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Bounce buffer layout does not match bounce "
                         "location.");
    }
    if (o->num_bounce == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "Bounce buffer has no blocks");
    }
    if (o->bounce_ids == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Bounce buffer block ids are NULL");
    }
    if (!nxl__kv_array_ok(o->bounce_ids, o->num_bounce,
                          sizeof(*o->bounce_ids))) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Bounce buffer of %zu blocks cannot be in memory",
                         o->num_bounce);
    }
    if (b->cfg.num_layers != src->cfg.num_layers) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Layouts have incompatible layer counts: src=%zu, "
                         "dst=%zu",
                         src->cfg.num_layers, b->cfg.num_layers);
    }
    if (b->cfg.outer_dim != src->cfg.outer_dim) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Layouts have incompatible outer dimensions: "
                         "src=%zu, dst=%zu",
                         src->cfg.outer_dim, b->cfg.outer_dim);
    }
    if (b->region_size != src->region_size) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Size mismatch at block=(%zu,%zu), layer=0, "
                         "outer=0: src=%zu, dst=%zu",
                         (size_t)0, o->bounce_ids[0], src->region_size,
                         b->region_size);
    }
    for (i = 0; i < o->num_bounce; i++) {
        if (o->bounce_ids[i] >= b->cfg.num_blocks) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "Block ID %zu out of range for bounce layout "
                             "(max: %zu)",
                             o->bounce_ids[i], b->cfg.num_blocks);
        }
    }
    sorted = malloc(o->num_bounce * sizeof(*sorted));
    if (sorted == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "kv: out of memory");
    }
    memcpy(sorted, o->bounce_ids, o->num_bounce * sizeof(*sorted));
    qsort(sorted, o->num_bounce, sizeof(*sorted), kv_cmp_size);
    for (i = 1; i < o->num_bounce; i++) {
        if (sorted[i] == sorted[i - 1]) {
            size_t dup = sorted[i];

            free(sorted);
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "Bounce block IDs are not unique: duplicates "
                             "include %zu",
                             dup);
        }
    }
    free(sorted);
    return NXL_OK;
}

/* kv_twohop_new copies everything a two-hop job needs past the call. */
static nxl__kv_twohop_t *
kv_twohop_new(const nxl_kv_layout_t *src, const size_t *src_ids,
              const nxl_kv_layout_t *dst, const size_t *dst_ids, size_t n,
              const nxl_kv_plan_t *plan, const nxl_kv_opts_t *o)
{
    size_t nb = o->num_bounce < n ? o->num_bounce : n;
    nxl__kv_twohop_t *th;
    size_t *ids;

    th = calloc(1, sizeof(*th));
    ids = malloc((2 * n + nb) * sizeof(size_t) + 1);
    if (th == NULL || ids == NULL ||
        (o->notif_len > 0 && (th->msg = malloc(o->notif_len)) == NULL)) {
        free(ids);
        if (th != NULL) {
            free(th->msg);
        }
        free(th);
        nxl__fail(NXL_ERR_NOMEM, "kv: out of memory for a two-hop job");
        return NULL;
    }
    memcpy(ids, src_ids, n * sizeof(size_t));
    memcpy(ids + n, dst_ids, n * sizeof(size_t));
    memcpy(ids + 2 * n, o->bounce_ids, nb * sizeof(size_t));
    th->src = src;
    th->dst = dst;
    th->bounce = o->bounce;
    th->sids = ids;
    th->dids = ids + n;
    th->bids = ids + 2 * n;
    th->n = n;
    th->nb = nb;
    th->first = plan->first;
    th->second = plan->second;
    th->lb = o->layer_begin;
    th->le = o->layer_end;
    if (o->notif != NULL) {
        th->has_msg = 1;
        th->msg_len = o->notif_len;
        if (o->notif_len > 0) {
            memcpy(th->msg, o->notif, o->notif_len);
        }
    }
    return th;
}

/* nxl__kv_twohop_free frees a two-hop job. Accepts NULL. */
void
nxl__kv_twohop_free(nxl__kv_twohop_t *th)
{
    if (th != NULL) {
        free(th->sids);
        free(th->msg);
        free(th);
    }
}

/* kv_is_async: strategies whose completion the poller watches. */
static int
kv_is_async(nxl_kv_strategy_t s)
{
    return s != NXL_KV_MEMCPY && s != NXL_KV_CUDA_BLOCKING_H2D &&
           s != NXL_KV_CUDA_BLOCKING_D2H;
}

/* nxl__kv_reserve takes one poller slot (capacity max_pending). Returns
 * NXL_OK or NXL_ERR_NOT_ALLOWED when the poller is full or stopping. */
nxl_status_t
nxl__kv_reserve(nxl_kv_ctx_t *ctx)
{
    nxl_status_t st = NXL_OK;

    pthread_mutex_lock(&ctx->mu);
    if (ctx->stop) {
        st = nxl__fail(NXL_ERR_NOT_ALLOWED, "kv: the context is stopping");
    } else if (ctx->pending >= ctx->cfg.max_pending) {
        st = nxl__fail(NXL_ERR_NOT_ALLOWED,
                       "Notification channel full or closed (%zu pending, "
                       "max_pending %zu)",
                       ctx->pending, ctx->cfg.max_pending);
    } else {
        ctx->pending++;
    }
    pthread_mutex_unlock(&ctx->mu);
    return st;
}

/* nxl__kv_unreserve gives back a slot taken by nxl__kv_reserve that was
 * not used. */
void
nxl__kv_unreserve(nxl_kv_ctx_t *ctx)
{
    pthread_mutex_lock(&ctx->mu);
    ctx->pending--;
    pthread_cond_broadcast(&ctx->cv);
    pthread_mutex_unlock(&ctx->mu);
}

/* nxl__kv_submit hands n (holding a reserved slot) to the poller, which
 * takes a second reference. */
void
nxl__kv_submit(nxl_kv_ctx_t *ctx, nxl_kv_notif_t *n, int deadline_ms)
{
    if (deadline_ms > 0) {
        n->deadline_ns = n->start_ns + (uint64_t)deadline_ms * 1000000u;
    }
    atomic_fetch_add(&n->refs, 1);
    n->next = NULL;
    pthread_mutex_lock(&ctx->mu);
    *ctx->in_tail = n;
    ctx->in_tail = &n->next;
    pthread_cond_broadcast(&ctx->cv);
    pthread_mutex_unlock(&ctx->mu);
}

/* nxl_kv_transfer: see nxl_kv.h. The layouts (and the bounce layout) must
 * stay alive until the returned handle completes; id arrays and the
 * notification message are copied. Thread-safe. */
NXL_API nxl_status_t
nxl_kv_transfer(nxl_kv_ctx_t *ctx, const nxl_kv_layout_t *src,
                const size_t *src_ids, const nxl_kv_layout_t *dst,
                const size_t *dst_ids, size_t n, const nxl_kv_opts_t *opts,
                nxl_kv_notif_t **n_p)
{
    nxl_kv_opts_t defaults;
    nxl_kv_plan_t plan;
    nxl__kv_op_t op;
    nxl_kv_notif_t *nt;
    nxl_status_t st;
    int reserved = 0;

    if (ctx == NULL || src == NULL || dst == NULL || n_p == NULL ||
        (n > 0 && (src_ids == NULL || dst_ids == NULL))) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv_transfer: NULL argument");
    }
    nxl_kv_opts_init(&defaults);
    if (opts != NULL && (st = nxl__abi_in(&defaults, sizeof(defaults), opts,
                                          NXL_KV_OPTS_V1_SIZE,
                                          "kv_transfer: opts")) != NXL_OK) {
        return st;
    }
    opts = &defaults;
    if (opts->notif == NULL && opts->notif_len > 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv_transfer: opts->notif_len is %zu but "
                         "opts->notif is NULL",
                         opts->notif_len);
    }
    st = nxl_kv_validate(src, src_ids, n, dst, dst_ids, n, NULL, NULL, 0);
    if (st != NXL_OK) {
        return st;
    }
    st = nxl_kv_select(src->loc.kind, kv_is_local(ctx, src), dst->loc.kind,
                       kv_is_local(ctx, dst), &ctx->cfg.caps, &plan);
    if (st != NXL_OK) {
        return st;
    }
    if (plan.two_hop) {
        st = kv_check_bounce(src, &plan, opts);
        if (st != NXL_OK) {
            return st;
        }
        if (opts->layer_end > src->cfg.num_layers ||
            (opts->layer_end != 0 && opts->layer_begin >= opts->layer_end) ||
            (opts->layer_end == 0 && opts->layer_begin != 0)) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "Layer range %zu..%zu exceeds num_layers %zu or "
                             "is empty",
                             opts->layer_begin, opts->layer_end,
                             src->cfg.num_layers);
        }
        nt = nxl__kv_notif_new(NXL__KV_N_TWOHOP);
        if (nt == NULL) {
            return NXL_ERR_NOMEM;
        }
        if (n == 0) {
            nxl__kv_notif_finish(nt, NXL_OK, NULL);
            *n_p = nt;
            return NXL_OK;
        }
        nt->th = kv_twohop_new(src, src_ids, dst, dst_ids, n, &plan, opts);
        if (nt->th == NULL) {
            nxl__kv_notif_unref(nt);
            return NXL_ERR_NOMEM;
        }
        st = nxl__kv_reserve(ctx);
        if (st != NXL_OK) {
            nxl__kv_notif_unref(nt);
            return st;
        }
        nxl__kv_submit(ctx, nt, opts->deadline_ms);
        *n_p = nt;
        return NXL_OK;
    }
    nt = nxl__kv_notif_new(NXL__KV_N_OP);
    if (nt == NULL) {
        return NXL_ERR_NOMEM;
    }
    if (kv_is_async(plan.first) && n > 0) {
        st = nxl__kv_reserve(ctx);
        if (st != NXL_OK) {
            nxl__kv_notif_unref(nt);
            return st;
        }
        reserved = 1;
    }
    st = nxl__kv_exec_direct(ctx, plan.first, src, src_ids, dst, dst_ids, n,
                             opts->layer_begin, opts->layer_end, opts->notif,
                             opts->notif_len, opts->notif != NULL, &op);
    if (st != NXL_OK || op.kind == NXL__KV_OP_NONE) {
        if (reserved) {
            nxl__kv_unreserve(ctx);
        }
        if (st != NXL_OK) {
            nxl__kv_notif_unref(nt);
            return st;
        }
        nxl__kv_notif_finish(nt, NXL_OK, NULL);
        *n_p = nt;
        return NXL_OK;
    }
    nt->op = op;
    nxl__kv_submit(ctx, nt, opts->deadline_ms);
    *n_p = nt;
    return NXL_OK;
}

/* nxl_kv_ctx_await_notif: see nxl_kv.h. The key is copied. Returns NXL_OK
 * with *n_p, NXL_ERR_INVALID_PARAM, NXL_ERR_NOMEM or NXL_ERR_NOT_ALLOWED
 * (poller full or stopping). Thread-safe. */
NXL_API nxl_status_t
nxl_kv_ctx_await_notif(nxl_kv_ctx_t *ctx, const char *key, int deadline_ms,
                       nxl_kv_notif_t **n_p)
{
    nxl_kv_notif_t *nt;
    nxl_status_t st;

    if (ctx == NULL || key == NULL || n_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "await_notif: NULL argument");
    }
    nt = nxl__kv_notif_new(NXL__KV_N_KEY);
    if (nt == NULL) {
        return NXL_ERR_NOMEM;
    }
    nt->key_len = strlen(key);
    nt->key = strdup(key);
    if (nt->key == NULL) {
        nxl__kv_notif_unref(nt);
        return nxl__fail(NXL_ERR_NOMEM, "await_notif: out of memory");
    }
    st = nxl__kv_reserve(ctx);
    if (st != NXL_OK) {
        nxl__kv_notif_unref(nt);
        return st;
    }
    nxl__kv_submit(ctx, nt, deadline_ms);
    *n_p = nt;
    return NXL_OK;
}
