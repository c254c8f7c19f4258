/* xfer.c - prepared descriptor lists and transfer requests. */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct nxl_prepped {
    nxl_agent_t *agent;
    bool remote; /* the remote side of transfers */
    bool self;   /* remote side named this agent */
    char peer[NXL__NAME_MAX];
    uint64_t gen;
    nxl_mem_t mem;
    size_t count;
    uint32_t mask; /* backends that cover every descriptor */
    /* Per backend: each descriptor with that backend's key, side by
     * side, so that a make reads one 32-byte record per descriptor (in
     * one cache line: 64-byte aligned) for a shuffled remote list. */
    nxl_be_seg_t *seg[NXL__MAX_BACKENDS];
    /* Local (or loopback) lists: the agent's reg_gen their keys were
     * checked at (a cache, written by makes under the shared lock). */
    atomic_uint_fast64_t reg_gen;
};

/* nxl_xfer: what a post reads comes first (the first three lines), so
 * that a post of a transfer that is not in the cache misses few lines;
 * the names and the error text are read on slow paths only. */
struct nxl_xfer {
    nxl_agent_t *agent;
    nxl_backend_t *be;
    void *req;
    atomic_int state; /* nxl_status_t of the last post */
    bool to_peer;     /* generation-checked remote peer */
    bool self;        /* loopback: the remote side is local too */
    bool telemetry;   /* the agent captures it: read the clocks */
    bool prepped;     /* backend prep succeeded */
    uint64_t gen;
    /* The peer record, found by name; good while the agent's peer_drops
     * equals peer_drops (a post then skips the search by name). */
    nxl__peer_t *peer_p;
    uint64_t peer_drops;
    uint64_t reg_gen; /* agent reg_gen its local keys held at */
    nxl_be_xfer_t bx;
    nxl_be_seg_t *segs; /* local at [0], remote at [n], n the pair count */
    bool segs_inline;   /* segs lie in this block (few descriptors) */
    void *notif;
    size_t notif_len;
    bool has_notif;
    uint64_t post_start_ns;
    nxl_xfer_telemetry_t telem;
    struct nxl_xfer *prev, *next;
    char peer[NXL__NAME_MAX];
    char err[256]; /* detail of the sticky error */
};

/* XFER_PREFETCH is how many descriptor pairs ahead xfer_build_on
 * prefetches the remote side's records. */
#define XFER_PREFETCH 32

/* XFER_REQ_OFF is where a transfer's block holds the backend's request;
 * XFER_INLINE_SEGS the most descriptor pairs whose segments the block
 * holds too. */
#define XFER_ROUND64(n) (((n) + (size_t)63) & ~(size_t)63)
#define XFER_REQ_OFF XFER_ROUND64(sizeof(struct nxl_xfer))
#define XFER_INLINE_SEGS 4

static void
prepped_free(nxl_prepped_t *pp)
{
    unsigned b;

    if (pp == NULL) {
        return;
    }
    for (b = 0; b < NXL__MAX_BACKENDS; b++) {
        free(pp->seg[b]);
    }
    free(pp);
}

/* prep_resolve fills pp (mem/flags set) with, per backend, each of descs
 * (pp->count, the caller's, read only here) and the backend md of the
 * region covering it, keeping only backends that cover all. The agent
 * lock is held. */
static nxl_status_t
prep_resolve(nxl_agent_t *a, nxl_prepped_t *pp, const nxl_desc_t *descs,
             const nxl_opts_t *opts)
{
    nxl__index_t *ix;
    nxl__peer_t *peer = NULL;
    nxl_backend_t *be;
    uint32_t mask = 0;
    void *hint = NULL;
    size_t i;
    unsigned b;

    if (pp->remote && !pp->self) {
        peer = nxl__peer_find(a, pp->peer);
        if (peer == NULL || atomic_load(&peer->dead)) {
            return nxl__fail(NXL_ERR_NOT_FOUND,
                             "prep: no metadata loaded for agent '%s'",
                             pp->peer);
        }
        pp->gen = peer->generation;
        ix = &peer->regions[pp->mem];
    } else {
        ix = &a->regions[pp->mem];
    }
    for (b = 0; b < a->nbackends; b++) {
        be = a->backends[b];
        if (!nxl__be_allowed(be, opts)) {
            continue;
        }
        if (peer != NULL && peer->ctx[b] == NULL) {
            continue;
        }
        if (pp->self && be->self_peer == NULL) {
            continue;
        }
        if (pp->count > SIZE_MAX / sizeof(nxl_be_seg_t) ||
            posix_memalign((void **)&pp->seg[b], 64,
                           NXL__MAX(pp->count, (size_t)1) *
                               sizeof(nxl_be_seg_t)) != 0) {
            pp->seg[b] = NULL;
            return nxl__fail(NXL_ERR_NOMEM, "prep: out of memory");
        }
        mask |= 1u << b;
    }
    for (i = 0; i < pp->count && mask != 0; i++) {
        const nxl_desc_t *d = &descs[i];
        void *r, *const *rmds = NULL;
        const nxl__region_t *lr = NULL;

        if (d->len == 0 || d->addr + d->len < d->addr) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "prep: descriptor %zu has a bad length", i);
        }
        r = nxl__index_find_cover(ix, d->addr, d->len, d->dev_id, &hint);
        if (r == NULL) {
            return nxl__fail(NXL_ERR_NOT_FOUND,
                             "prep: descriptor %zu (addr 0x%llx len %llu dev "
                             "%llu) is not inside a region registered by %s",
                             i, (unsigned long long)d->addr,
                             (unsigned long long)d->len,
                             (unsigned long long)d->dev_id,
                             pp->remote ? pp->peer : "this agent");
        }
        if (peer != NULL) {
            rmds = ((nxl__rregion_t *)r)->rmd;
        } else {
            lr = r;
        }
        for (b = 0; b < a->nbackends; b++) {
            void *md;

            if (!(mask & (1u << b))) {
                continue;
            }
            md = rmds != NULL ? rmds[b] : nxl__region_key(lr, b, pp->self);
            if (md == NULL) {
                mask &= ~(1u << b);
                continue;
            }
            pp->seg[b][i] = (nxl_be_seg_t){
                .addr = d->addr, .len = d->len, .dev_id = d->dev_id, .md = md};
        }
    }
    if (mask == 0) {
        return nxl__fail(NXL_ERR_NOT_FOUND,
                         "prep: no single backend covers every descriptor "
                         "(%zu descriptors, %s)",
                         pp->count, pp->remote ? pp->peer : "local");
    }
    pp->mask = mask;
    atomic_store(&pp->reg_gen, atomic_load(&a->reg_gen));
    return NXL_OK;
}

/* local_key_ok says whether local region index ix still has a region
 * covering [addr, addr + len) on dev whose key for backend b (its md, or
 * with self its loopback self_rmd) is md. */
static bool
local_key_ok(const nxl__index_t *ix, uint64_t addr, uint64_t len, uint64_t dev,
             unsigned b, bool self, const void *md, void **hint)
{
    const nxl__region_t *r = nxl__index_find_cover(ix, addr, len, dev, hint);

    return r != NULL && nxl__region_key(r, b, self) == md;
}

/* prep_recheck confirms, after a deregistration anywhere in the agent,
 * that every key a local or loopback list holds still belongs to a live
 * registration of its memory (else NOT_FOUND: the list must be prepared
 * again). Shared agent lock held; deregistration takes it exclusively. */
static nxl_status_t
prep_recheck(nxl_agent_t *a, nxl_prepped_t *pp)
{
    uint64_t now = atomic_load(&a->reg_gen);
    void *hint = NULL;
    size_t i;
    unsigned b;

    if ((pp->remote && !pp->self) || atomic_load(&pp->reg_gen) == now) {
        return NXL_OK;
    }
    for (i = 0; i < pp->count; i++) {
        for (b = 0; b < a->nbackends; b++) {
            const nxl_be_seg_t *d;

            if (!(pp->mask & (1u << b))) {
                continue;
            }
            d = &pp->seg[b][i];
            if (!local_key_ok(&a->regions[pp->mem], d->addr, d->len, d->dev_id,
                              b, pp->self, d->md, &hint)) {
                return nxl__fail(NXL_ERR_NOT_FOUND,
                                 "xfer: descriptor %zu (addr 0x%llx len "
                                 "%llu) of a prepared list was deregistered "
                                 "since the list was prepared; prepare it "
                                 "again",
                                 i, (unsigned long long)d->addr,
                                 (unsigned long long)d->len);
            }
        }
    }
    atomic_store(&pp->reg_gen, now);
    return NXL_OK;
}

/* xfer_recheck is prep_recheck for a transfer's segments (local ones, and
 * the remote ones of a loopback transfer), before a post. */
static nxl_status_t
xfer_recheck(nxl_agent_t *a, nxl_xfer_t *x)
{
    uint64_t now = atomic_load(&a->reg_gen);
    const nxl_be_seg_t *s;
    void *hl = NULL, *hr = NULL;
    unsigned b = x->be->index;
    size_t i;

    if (x->reg_gen == now) {
        return NXL_OK;
    }
    for (i = 0; i < x->bx.count; i++) {
        s = &x->bx.local[i];
        if (!local_key_ok(&a->regions[x->bx.local_mem], s->addr, s->len,
                          s->dev_id, b, false, s->md, &hl)) {
            return nxl__fail(NXL_ERR_NOT_FOUND,
                             "xfer_post: local memory 0x%llx+%llu of this "
                             "transfer was deregistered since it was made",
                             (unsigned long long)s->addr,
                             (unsigned long long)s->len);
        }
        s = &x->bx.remote[i];
        if (x->self && !local_key_ok(&a->regions[x->bx.remote_mem], s->addr,
                                     s->len, s->dev_id, b, true, s->md, &hr)) {
            return nxl__fail(NXL_ERR_NOT_FOUND,
                             "xfer_post: memory 0x%llx+%llu this loopback "
                             "transfer targets was deregistered since it "
                             "was made",
                             (unsigned long long)s->addr,
                             (unsigned long long)s->len);
        }
    }
    x->reg_gen = now;
    return NXL_OK;
}

/* prepped_new resolves dlist into a new list. remote NULL/"" = local. */
static nxl_status_t
prepped_new(nxl_agent_t *a, const char *remote, const nxl_dlist_t *dlist,
            const nxl_opts_t *opts, nxl_prepped_t **pp_p)
{
    nxl_prepped_t *pp;
    nxl_status_t status;

    status = nxl__dlist_check(dlist, "prep");
    if (status != NXL_OK) {
        return status;
    }
    if (remote != NULL && strlen(remote) >= NXL__NAME_MAX) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "prep: agent name too long");
    }
    pp = calloc(1, sizeof(*pp));
    if (pp == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "prep: out of memory");
    }
    pp->agent = a;
    pp->remote = remote != NULL && remote[0] != '\0';
    if (pp->remote) {
        strcpy(pp->peer, remote);
        pp->self = strcmp(remote, a->name) == 0;
    }
    pp->mem = dlist->mem;
    pp->count = dlist->count;
    status = prep_resolve(a, pp, dlist->descs, opts);
    if (status != NXL_OK) {
        prepped_free(pp);
        return status;
    }
    *pp_p = pp;
    return NXL_OK;
}

NXL_API nxl_status_t
nxl_dlist_prep(nxl_agent_t *agent, const char *remote, const nxl_dlist_t *dlist,
               const nxl_opts_t *opts, nxl_prepped_t **prepped_p)
{
    nxl_opts_t oc;
    nxl_status_t status;

    if (agent == NULL || prepped_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "prep: NULL argument");
    }
    status = nxl__opts_in(&opts, &oc, "prep");
    if (status != NXL_OK) {
        return status;
    }
    nxl__data_lock(agent);
    status = prepped_new(agent, remote, dlist, opts, prepped_p);
    nxl__data_unlock(agent);
    return status;
}

NXL_API void
nxl_dlist_release(nxl_prepped_t *prepped)
{
    prepped_free(prepped);
}

/* --- transfers ---------------------------------------------------------- */

static void
xfer_link(nxl_agent_t *a, nxl_xfer_t *x)
{
    pthread_mutex_lock(&a->xfer_lock);
    x->next = a->xfers;
    if (a->xfers != NULL) {
        a->xfers->prev = x;
    }
    a->xfers = x;
    pthread_mutex_unlock(&a->xfer_lock);
}

static void
xfer_unlink(nxl_agent_t *a, nxl_xfer_t *x)
{
    pthread_mutex_lock(&a->xfer_lock);
    if (x->prev != NULL) {
        x->prev->next = x->next;
    } else {
        a->xfers = x->next;
    }
    if (x->next != NULL) {
        x->next->prev = x->prev;
    }
    pthread_mutex_unlock(&a->xfer_lock);
}

/* xfer_set_notif replaces the attached notification with a copy. */
static nxl_status_t
xfer_set_notif(nxl_xfer_t *x, const nxl_opts_t *opts)
{
    void *copy = NULL;

    if (opts != NULL && opts->has_notif) {
        if (opts->notif_len > 0 && opts->notif == NULL) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "notification: NULL message of %zu bytes",
                             opts->notif_len);
        }
        copy = malloc(NXL__MAX(opts->notif_len, (size_t)1));
        if (copy == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "notification: out of memory");
        }
        if (opts->notif_len > 0) {
            memcpy(copy, opts->notif, opts->notif_len);
        }
    }
    free(x->notif);
    x->notif = copy;
    x->notif_len = copy ? opts->notif_len : 0;
    x->has_notif = copy != NULL;
    x->bx.has_notif = x->has_notif;
    x->bx.notif = x->notif;
    x->bx.notif_len = x->notif_len;
    return NXL_OK;
}

static void
xfer_free(nxl_xfer_t *x)
{
    if (!x->segs_inline) {
        free(x->segs);
    }
    free(x->notif);
    free(x);
}

/* xfer_build_on makes the transfer on backend be (agent lock held). */
static nxl_status_t
xfer_build_on(nxl_agent_t *a, nxl_backend_t *be, nxl_op_t op,
              const nxl_prepped_t *lp, const size_t *lidx,
              const nxl_prepped_t *rp, const size_t *ridx, size_t n,
              const nxl_opts_t *opts, nxl_xfer_t **xfer_p)
{
    nxl_be_seg_t *ls, *rs;
    nxl_status_t status;
    nxl_xfer_t *x;
    uint64_t total = 0;
    size_t i, m = 0, li, ri;
    unsigned b;
    bool merge = opts == NULL || !opts->skip_merge;

    if (n > SIZE_MAX / 2 / sizeof(nxl_be_seg_t)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "xfer: %zu descriptors", n);
    }
    /* One block: the transfer, the backend's request at XFER_REQ_OFF and,
     * for a few descriptors, the segments after it (a post then finds
     * them at addresses it knows before any of them is loaded). */
    size_t rsz = XFER_ROUND64(NXL__MAX(be->ops.req_size, (size_t)1));
    size_t ssz = n <= XFER_INLINE_SEGS ? 2 * n * sizeof(nxl_be_seg_t) : 0;

    x = aligned_alloc(64, XFER_ROUND64(XFER_REQ_OFF + rsz + ssz));
    if (x == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "xfer: out of memory");
    }
    memset(x, 0, XFER_REQ_OFF + rsz + ssz);
    x->req = (char *)x + XFER_REQ_OFF;
    x->segs_inline = ssz > 0;
    x->segs = x->segs_inline ? (nxl_be_seg_t *)(void *)((char *)x->req + rsz)
                             : malloc(2 * n * sizeof(nxl_be_seg_t));
    if (x->segs == NULL) {
        status = nxl__fail(NXL_ERR_NOMEM, "xfer: out of memory");
        goto err_free;
    }
    /* One pass, with the lists' fields in locals (the stores to the
     * segments would otherwise make the compiler reload them) and the
     * segment being grown kept in registers until it is closed. Remote
     * segments go to segs + n: no move once the merged count is known. */
    ls = x->segs;
    rs = x->segs + n;
    b = be->index;
    const nxl_be_seg_t *lsegs = lp->seg[b], *rsegs = rp->seg[b];
    const size_t lcount = lp->count, rcount = rp->count;
    nxl_be_seg_t lcur = {0}, rcur = {0};

    for (i = 0; i < n; i++) {
        /* Remote indexes come shuffled (a KV pull names its blocks in
         * any order): fetch the record a few pairs ahead, so that the
         * cache misses overlap instead of queueing. */
        if (ridx != NULL && i + XFER_PREFETCH < n &&
            ridx[i + XFER_PREFETCH] < rcount) {
            __builtin_prefetch(&rsegs[ridx[i + XFER_PREFETCH]]);
        }
        li = lidx ? lidx[i] : i;
        ri = ridx ? ridx[i] : i;
        if (li >= lcount || ri >= rcount) {
            status = nxl__fail(NXL_ERR_INVALID_PARAM,
                               "xfer: index pair %zu (%zu, %zu) out of range "
                               "(%zu local, %zu remote descriptors)",
                               i, li, ri, lcount, rcount);
            goto err_free;
        }
        const nxl_be_seg_t *ld = &lsegs[li], *rd = &rsegs[ri];
        uint64_t len = ld->len;

        if (len != rd->len) {
            status = nxl__fail(NXL_ERR_INVALID_PARAM,
                               "xfer: descriptor pair %zu has lengths %llu "
                               "(local) and %llu (remote)",
                               i, (unsigned long long)len,
                               (unsigned long long)rd->len);
            goto err_free;
        }
        total += len;
        /* Merge a block that continues the previous one on both sides. */
        if (merge && m > 0 && lcur.addr + lcur.len == ld->addr &&
            rcur.addr + rcur.len == rd->addr && lcur.dev_id == ld->dev_id &&
            rcur.dev_id == rd->dev_id && lcur.md == ld->md &&
            rcur.md == rd->md) {
            lcur.len += len;
            rcur.len += len;
            continue;
        }
        if (m > 0) {
            ls[m - 1] = lcur;
            rs[m - 1] = rcur;
        }
        lcur = *ld;
        rcur = *rd;
        m++;
    }
    if (m > 0) {
        ls[m - 1] = lcur;
        rs[m - 1] = rcur;
    }
    x->agent = a;
    x->be = be;
    x->to_peer = !rp->self;
    x->self = rp->self;
    x->reg_gen = atomic_load(&a->reg_gen);
    strcpy(x->peer, rp->peer);
    x->gen = rp->gen;
    x->peer_p = rp->self ? NULL : nxl__peer_find(a, rp->peer);
    x->peer_drops = a->peer_drops;
    x->bx = (nxl_be_xfer_t){
        .op = op,
        .local_mem = lp->mem,
        .remote_mem = rp->mem,
        .peer = x->peer,
        .peer_ctx = rp->self ? be->self_peer : x->peer_p->ctx[b],
        .count = m,
        .local = ls,
        .remote = rs,
        .total_bytes = total,
    };
    atomic_init(&x->state, NXL_ERR_NOT_POSTED);
    status = xfer_set_notif(x, opts);
    if (status != NXL_OK) {
        goto err_free;
    }
    nxl__be_lock(be);
    status = be->ops.prep(be->engine, x->req, &x->bx);
    nxl__be_unlock(be);
    if (status != NXL_OK) {
        goto err_free;
    }
    x->prepped = true;
    x->telemetry = a->cfg.capture_telemetry != 0;
    x->telem.total_bytes = total;
    x->telem.desc_count = m;
    xfer_link(a, x);
    *xfer_p = x;
    return NXL_OK;

err_free:
    xfer_free(x);
    return status;
}

/* xfer_build makes a transfer of n index pairs from two resolved lists
 * (agent lock held). */
static nxl_status_t
xfer_build(nxl_agent_t *a, nxl_op_t op, const nxl_prepped_t *lp,
           const size_t *lidx, const nxl_prepped_t *rp, const size_t *ridx,
           size_t n, const nxl_opts_t *opts, nxl_xfer_t **xfer_p)
{
    nxl_status_t status = NXL_ERR_NOT_FOUND;
    nxl__peer_t *peer;
    nxl_backend_t *be;
    uint32_t mask;
    unsigned b, tried = 0, no_notif = 0;

    if ((unsigned)op > NXL_WRITE) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "xfer: bad operation %d",
                         (int)op);
    }
    if (lp->remote || !rp->remote) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "xfer: the local list must be prepared without an "
                         "agent name and the remote list with one");
    }
    if (lp->agent != a || rp->agent != a) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "xfer: lists prepared by another agent");
    }
    if (!rp->self) {
        peer = nxl__peer_find(a, rp->peer);
        if (peer == NULL || peer->generation != rp->gen ||
            atomic_load(&peer->dead)) {
            return nxl__fail(NXL_ERR_NOT_FOUND,
                             "xfer: metadata of '%s' was invalidated or "
                             "reloaded since the list was prepared",
                             rp->peer);
        }
    }
    status = prep_recheck(a, (nxl_prepped_t *)lp);
    if (status == NXL_OK) {
        status = prep_recheck(a, (nxl_prepped_t *)rp);
    }
    if (status != NXL_OK) {
        return status;
    }
    status = NXL_ERR_NOT_FOUND;
    /* Backends in creation order; one that turns the transfer down
     * (NOT_SUPPORTED, e.g. POSIX for DRAM to DRAM) passes it on. */
    mask = lp->mask & rp->mask;
    for (b = 0; b < a->nbackends; b++) {
        be = a->backends[b];
        if (!(mask & (1u << b)) || !nxl__be_allowed(be, opts) ||
            !(be->ops.caps & (rp->self ? NXL_CAP_LOCAL : NXL_CAP_REMOTE))) {
            continue;
        }
        if (opts != NULL && opts->has_notif &&
            !(be->ops.caps & NXL_CAP_NOTIF)) {
            no_notif++; /* it would drop the notification */
            continue;
        }
        tried++;
        status = xfer_build_on(a, be, op, lp, lidx, rp, ridx, n, opts, xfer_p);
        if (status != NXL_ERR_NOT_SUPPORTED) {
            return status;
        }
    }
    if (tried == 0 && no_notif > 0) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "xfer: the backend that covers both lists cannot "
                         "deliver notifications (remote '%s'); make the "
                         "transfer without one, or register the memory with "
                         "a backend that can",
                         rp->peer);
    }
    if (tried == 0) {
        return nxl__fail(NXL_ERR_NOT_FOUND,
                         "xfer: no backend covers both lists (remote '%s')",
                         rp->peer);
    }
    return status;
}

NXL_API nxl_status_t
nxl_xfer_make(nxl_agent_t *agent, nxl_op_t op, const nxl_prepped_t *local,
              const size_t *lidx, const nxl_prepped_t *remote,
              const size_t *ridx, size_t count, const nxl_opts_t *opts,
              nxl_xfer_t **xfer_p)
{
    nxl_opts_t oc;
    nxl_status_t status;

    if (agent == NULL || local == NULL || remote == NULL || xfer_p == NULL ||
        (count > 0 && (lidx == NULL || ridx == NULL))) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "xfer_make: NULL argument");
    }
    if (count == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "xfer_make: no descriptors");
    }
    status = nxl__opts_in(&opts, &oc, "xfer_make");
    if (status != NXL_OK) {
        return status;
    }
    nxl__data_lock(agent);
    status =
        xfer_build(agent, op, local, lidx, remote, ridx, count, opts, xfer_p);
    nxl__data_unlock(agent);
    return status;
}

NXL_API nxl_status_t
nxl_xfer_create(nxl_agent_t *agent, nxl_op_t op, const nxl_dlist_t *local,
                const nxl_dlist_t *remote, const char *remote_agent,
                const nxl_opts_t *opts, nxl_xfer_t **xfer_p)
{
    nxl_opts_t oc;
    nxl_prepped_t *lp = NULL, *rp = NULL;
    nxl_status_t status;

    if (agent == NULL || local == NULL || remote == NULL ||
        remote_agent == NULL || remote_agent[0] == '\0' || xfer_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "xfer_create: NULL argument");
    }
    if (local->count != remote->count) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "xfer_create: %zu local but %zu remote descriptors",
                         local->count, remote->count);
    }
    if (local->count == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "xfer_create: no descriptors");
    }
    status = nxl__opts_in(&opts, &oc, "xfer_create");
    if (status != NXL_OK) {
        return status;
    }
    nxl__data_lock(agent);
    status = prepped_new(agent, NULL, local, opts, &lp);
    if (status == NXL_OK) {
        status = prepped_new(agent, remote_agent, remote, opts, &rp);
    }
    if (status == NXL_OK) {
        status = xfer_build(agent, op, lp, NULL, rp, NULL, local->count, opts,
                            xfer_p);
    }
    nxl__data_unlock(agent);
    prepped_free(lp);
    prepped_free(rp);
    return status;
}

/* ns_to_us_up converts a duration to microseconds, rounding up: a
 * post that took 300 ns took time, and reports 1 us, not 0 (NIXL's
 * telemetry users check that durations are positive). */
static inline uint64_t
ns_to_us_up(uint64_t ns)
{
    return (ns + 999u) / 1000u;
}

/* xfer_finish records a terminal status and its telemetry. */
static void
xfer_finish(nxl_xfer_t *x, nxl_status_t status)
{
    if (x->telemetry) {
        x->telem.xfer_us = ns_to_us_up(nxl__now_ns() - x->post_start_ns);
    }
    if (status < 0) {
        snprintf(x->err, sizeof(x->err), "%s", nxl_last_error());
    }
    atomic_store(&x->state, status);
    if (status == NXL_ERR_REMOTE_DISCONNECT && x->to_peer) {
        nxl__peer_mark_dead(x->agent, x->peer);
    }
}

/* xfer_prefetch starts loading what a post reads (the transfer's first
 * lines and up to 512 bytes of the backend's request, which follows it in
 * the same block) while the core checks the transfer: one of many
 * transfers posted in turn is often out of the cache, and the misses then
 * overlap instead of queueing one behind the other. */
static inline void
xfer_prefetch(const nxl_xfer_t *x)
{
    const char *p = (const char *)x;
    size_t o;

    for (o = 0; o < 3 * 64; o += 64) { /* the fields a post reads */
        __builtin_prefetch(p + o, 1);
    }
    for (o = 0; o < 512; o += 64) { /* the request: no load needed */
        __builtin_prefetch(p + XFER_REQ_OFF + o, 1);
    }
}

NXL_API nxl_status_t
nxl_xfer_post(nxl_xfer_t *x, const nxl_opts_t *opts)
{
    nxl_opts_t oc;
    nxl_agent_t *a;
    nxl__peer_t *peer;
    nxl_status_t status;
    int cur;

    if (x == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "xfer_post: NULL transfer");
    }
    xfer_prefetch(x);
    status = nxl__opts_in(&opts, &oc, "xfer_post");
    if (status != NXL_OK) {
        return status;
    }
    a = x->agent;
    cur = atomic_load(&x->state);
    if (cur == NXL_IN_PROG ||
        !atomic_compare_exchange_strong(&x->state, &cur, NXL_IN_PROG)) {
        return nxl__fail(NXL_ERR_REPOST_ACTIVE,
                         "xfer_post: the transfer is still in progress");
    }
    nxl__data_lock(a);
    if (x->to_peer) {
        /* Peers are dropped under the exclusive lock, which this shared
         * one excludes; a transfer has one poster at a time (state). */
        if (x->peer_drops != a->peer_drops || x->peer_p == NULL) {
            x->peer_p = nxl__peer_find(a, x->peer);
            x->peer_drops = a->peer_drops;
        }
        peer = x->peer_p;
        if (peer == NULL || peer->generation != x->gen ||
            atomic_load(&peer->dead)) {
            status = nxl__fail(NXL_ERR_NOT_FOUND,
                               "xfer_post: metadata of '%s' was invalidated "
                               "or reloaded since the transfer was made",
                               x->peer);
            snprintf(x->err, sizeof(x->err), "%s", nxl_last_error());
            atomic_store(&x->state, status);
            goto out;
        }
    }
    status = xfer_recheck(a, x);
    if (status != NXL_OK) {
        snprintf(x->err, sizeof(x->err), "%s", nxl_last_error());
        atomic_store(&x->state, status);
        goto out;
    }
    if (opts != NULL) {
        status = (opts->has_notif && !(x->be->ops.caps & NXL_CAP_NOTIF))
                     ? nxl__fail(NXL_ERR_NOT_SUPPORTED,
                                 "xfer_post: backend %s cannot deliver "
                                 "notifications",
                                 x->be->ops.name)
                     : xfer_set_notif(x, opts);
        if (status != NXL_OK) {
            atomic_store(&x->state, cur);
            goto out;
        }
    }
    /* Only telemetry reads the clocks: three reads are ~5% of a 4 KiB
     * same-host READ. */
    if (x->telemetry) {
        x->post_start_ns = nxl__now_ns();
        x->telem.start_us = nxl__realtime_us();
    }
    nxl__be_lock(x->be);
    status = x->be->ops.post(x->be->engine, x->req, &x->bx);
    nxl__be_unlock(x->be);
    if (x->telemetry) {
        x->telem.post_us = ns_to_us_up(nxl__now_ns() - x->post_start_ns);
    }
    if (status != NXL_IN_PROG) {
        xfer_finish(x, status);
    }
out:
    nxl__data_unlock(a);
    return status;
}

NXL_API nxl_status_t
nxl_xfer_status(nxl_xfer_t *x)
{
    nxl_status_t status;

    if (x == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "xfer_status: NULL transfer");
    }
    status = atomic_load(&x->state);
    if (status == NXL_ERR_NOT_POSTED) {
        return nxl__fail(status, "xfer_status: the transfer was not posted");
    }
    if (status < 0) {
        /* Sticky: repeat the detail of the failure for this thread. */
        return nxl__fail(status, "%s", x->err);
    }
    if (status != NXL_IN_PROG) {
        return status;
    }
    nxl__data_lock(x->agent);
    nxl__be_lock(x->be);
    status = x->be->ops.check(x->be->engine, x->req);
    nxl__be_unlock(x->be);
    if (status != NXL_IN_PROG) {
        xfer_finish(x, status);
    }
    nxl__data_unlock(x->agent);
    return status;
}

NXL_API nxl_status_t
nxl_xfer_wait(nxl_xfer_t *x, int timeout_ms)
{
    uint64_t start = nxl__now_ns(), spent;
    nxl_status_t status;
    int slice;

    for (;;) {
        status = nxl_xfer_status(x);
        if (status != NXL_IN_PROG) {
            return status;
        }
        spent = (nxl__now_ns() - start) / 1000000u;
        if (timeout_ms >= 0 && spent >= (uint64_t)timeout_ms) {
            return nxl__fail(NXL_ERR_TIMEOUT,
                             "xfer_wait: still in progress after %d ms",
                             timeout_ms);
        }
        /* A thread-safe backend may progress the transfer on this thread
         * (TCP receives the reply itself): one wake-up instead of its
         * thread's and then ours. */
        if (!x->be->serialize) {
            slice = 50;
            if (timeout_ms >= 0) {
                slice = (int)NXL__MIN((uint64_t)slice, timeout_ms - spent);
            }
            status = x->be->ops.wait(x->be->engine, x->req, slice);
            if (status != NXL_ERR_NOT_SUPPORTED) {
                if (status == NXL_IN_PROG && !x->agent->progress_running) {
                    nxl_agent_progress(x->agent);
                }
                continue;
            }
        }
        /* Sleep on the backends' fds. A backend without an fd, or a
         * progress thread that may drain the fds first, gets a short
         * slice so completion is still seen promptly. */
        slice = (x->be->event_fd >= 0 && !x->agent->progress_running) ? 50 : 1;
        if (timeout_ms >= 0) {
            slice = (int)NXL__MIN((uint64_t)slice, timeout_ms - spent);
        }
        nxl__wait_events(x->agent, slice);
        if (!x->agent->progress_running) {
            nxl_agent_progress(x->agent);
        }
    }
}

/* xfer_destroy cancels (if needed) and frees x; x is unlinked. */
static void
xfer_destroy(nxl_xfer_t *x)
{
    if (atomic_load(&x->state) == NXL_IN_PROG) {
        nxl__be_lock(x->be);
        x->be->ops.cancel(x->be->engine, x->req);
        nxl__be_unlock(x->be);
        atomic_store(&x->state, NXL_ERR_CANCELED);
    }
    if (x->prepped) {
        nxl__be_lock(x->be);
        x->be->ops.release(x->be->engine, x->req);
        nxl__be_unlock(x->be);
    }
    xfer_free(x);
}

NXL_API void
nxl_xfer_release(nxl_xfer_t *x)
{
    nxl_agent_t *a;

    if (x == NULL) {
        return;
    }
    a = x->agent;
    nxl__data_lock(a);
    xfer_unlink(a, x);
    xfer_destroy(x);
    nxl__data_unlock(a);
}

bool
nxl__xfers_using(nxl_agent_t *a, const nxl__region_t *r)
{
    const void *md, *self_rmd;
    const nxl_xfer_t *x;
    bool used = false;
    unsigned b;
    size_t i;

    pthread_mutex_lock(&a->xfer_lock);
    for (x = a->xfers; x != NULL && !used; x = x->next) {
        if (atomic_load(&x->state) != NXL_IN_PROG) {
            continue;
        }
        b = x->be->index;
        md = nxl__region_key(r, b, false);
        self_rmd = nxl__region_key(r, b, true);
        for (i = 0; i < x->bx.count && !used; i++) {
            used =
                (md != NULL && x->bx.local[i].md == md) ||
                (x->self && self_rmd != NULL && x->bx.remote[i].md == self_rmd);
        }
    }
    pthread_mutex_unlock(&a->xfer_lock);
    return used;
}

bool
nxl__xfers_using_remote(nxl_agent_t *a, const nxl__rregion_t *rr)
{
    const nxl_xfer_t *x;
    bool used = false;
    unsigned b;
    size_t i;

    pthread_mutex_lock(&a->xfer_lock);
    for (x = a->xfers; x != NULL && !used; x = x->next) {
        if (!x->to_peer || atomic_load(&x->state) != NXL_IN_PROG) {
            continue;
        }
        b = x->be->index;
        if (rr->rmd[b] == NULL) {
            continue;
        }
        for (i = 0; i < x->bx.count && !used; i++) {
            used = x->bx.remote[i].md == rr->rmd[b];
        }
    }
    pthread_mutex_unlock(&a->xfer_lock);
    return used;
}

void
nxl__xfers_release_all(nxl_agent_t *a)
{
    nxl_xfer_t *x;

    while ((x = a->xfers) != NULL) {
        xfer_unlink(a, x);
        xfer_destroy(x);
    }
}

NXL_API nxl_status_t
nxl_xfer_telemetry(const nxl_xfer_t *x, nxl_xfer_telemetry_t *t_p)
{
    if (x == NULL || t_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "xfer_telemetry: NULL argument");
    }
    if (!x->agent->cfg.capture_telemetry) {
        return nxl__fail(NXL_ERR_NO_TELEMETRY,
                         "xfer_telemetry: the agent does not capture "
                         "telemetry (capture_telemetry = 0)");
    }
    *t_p = x->telem;
    return NXL_OK;
}

NXL_API nxl_status_t
nxl_xfer_backend(const nxl_xfer_t *x, nxl_backend_t **be_p)
{
    if (x == NULL || be_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "xfer_backend: NULL argument");
    }
    *be_p = x->be;
    return NXL_OK;
}
