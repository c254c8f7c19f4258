/*
 * shm_xfer.c - SHM transfers: building the iovec lists, planning the
 * split across copy threads, prep/post/check/cancel/release, and sending
 * a notification.
 */
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* --- requests ------------------------------------------------------------- */

/* be_shm_iov_add appends [base, base + len) to list (n entries), merging
 * with the last entry when contiguous. */
static inline void
be_shm_iov_add(struct iovec *list, size_t *n, uint64_t *last_end, uint64_t base,
               uint64_t len)
{
    if (*n > 0 && *last_end == base) {
        list[*n - 1].iov_len += (size_t)len;
    } else {
        list[*n].iov_base = (void *)(uintptr_t)base;
        list[*n].iov_len = (size_t)len;
        (*n)++;
    }
    *last_end = base + len;
}

/* be_shm_prep_mds checks the region records of descriptor i: both are
 * SHM's, the remote one is peer's, their kinds are the transfer's, and a
 * device transfer's remote region is mapped. */
static nxl_status_t
be_shm_prep_mds(const nxl_be_xfer_t *xfer, const be_shm_peer_t *peer, size_t i,
                const be_shm_md_t *lmd, const be_shm_rmd_t *rmd, int dev_path)
{
    if (lmd == NULL || lmd->magic != BE_SHM_MD_MAGIC || rmd == NULL ||
        rmd->magic != BE_SHM_RMD_MAGIC || rmd->peer != peer) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "shm: descriptor %zu: not registered with SHM "
                         "(or another peer's region)",
                         i);
    }
    if (lmd->kind != xfer->local_mem || rmd->kind != xfer->remote_mem) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "shm: descriptor %zu: regions of kinds %d and %d "
                         "in a transfer of kinds %d and %d",
                         i, (int)lmd->kind, (int)rmd->kind,
                         (int)xfer->local_mem, (int)xfer->remote_mem);
    }
    if (dev_path && !rmd->mapped) {
        if (rmd->err != NXL_OK) {
            return nxl__fail(rmd->err, "shm: descriptor %zu: %s", i,
                             rmd->errmsg);
        }
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "shm: descriptor %zu: VRAM to %s's DRAM region "
                         "0x%" PRIx64 "+%" PRIu64 ": the region is not "
                         "shared memory (nxl_mem_alloc_shared) and CMA "
                         "cannot reach device memory",
                         i, peer->name, rmd->addr, rmd->len);
    }
    return NXL_OK;
}

/* be_shm_rchk_grow doubles r->rchk (at least 8 entries). */
static nxl_status_t
be_shm_rchk_grow(be_shm_req_t *r)
{
    size_t cap = r->rchk_cap > 0 ? 2 * r->rchk_cap : 8;
    const be_shm_rmd_t **v = realloc(r->rchk, cap * sizeof(*v));

    if (v == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "shm: out of memory");
    }
    r->rchk = v;
    r->rchk_cap = cap;
    return NXL_OK;
}

/* be_shm_build walks the descriptors once: it validates each (never touch
 * memory outside what was registered or described by the peer), appends
 * it to the lists, merging runs that are contiguous (CMA lists each side
 * on its own, copy pairs when both sides do), and lists in r->rchk each
 * remote region where a run of them starts. The lists share r->cl[0, cap)
 * and r->cr[0, cap), cap >= the descriptor count: the CMA lists grow from
 * the front, the copy lists from the back (a descriptor adds to one or
 * the other), and the copy lists are turned around at the end. The counts
 * live in locals (a store through an iovec may alias r). */
static nxl_status_t
be_shm_build(be_shm_req_t *r, const nxl_be_xfer_t *xfer,
             const be_shm_peer_t *peer, int dev_path, size_t cap)
{
    uint64_t cl_end = 0, cr_end = 0, ml_end = 0, mr_end = 0, la, ra, len;
    uint64_t cma_bytes = 0, copy_bytes = 0;
    const nxl_be_seg_t *ls = xfer->local, *rs = xfer->remote;
    struct iovec *cl = r->cl, *cr = r->cr, tmp;
    struct iovec *ml = cl + cap - 1, *mr = cr + cap - 1; /* ml[-k]: k-th */
    const be_shm_md_t *lmd, *plmd = NULL;
    const be_shm_rmd_t *rmd, *prmd = NULL, *last = NULL;
    size_t i, n = xfer->count, ncl = 0, ncr = 0, nm = 0, nrchk = 0;
    nxl_status_t st;

    for (i = 0; i < n; i++) {
        len = ls[i].len;
        la = ls[i].addr;
        ra = rs[i].addr;
        rmd = rs[i].md;
        lmd = ls[i].md;
        if (len != rs[i].len) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "shm: descriptor %zu: lengths %" PRIu64
                             " and %" PRIu64 " differ",
                             i, len, rs[i].len);
        }
        /* Runs of descriptors share their regions: check a pair of
         * records once, the bounds of every descriptor. */
        if (lmd != plmd || rmd != prmd) {
            st = be_shm_prep_mds(xfer, peer, i, lmd, rmd, dev_path);
            if (st != NXL_OK) {
                return st;
            }
            plmd = lmd;
            prmd = rmd;
            if (rmd != last) {
                if (nrchk == r->rchk_cap) {
                    st = be_shm_rchk_grow(r);
                    if (st != NXL_OK) {
                        return st;
                    }
                }
                r->rchk[nrchk++] = last = rmd;
            }
        }
        if (!be_shm_seg_inside(la, len, lmd->addr, lmd->len)) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "shm: descriptor %zu: local 0x%" PRIx64 "+%" PRIu64
                             " outside its region",
                             i, la, len);
        }
        if (!be_shm_seg_inside(ra, len, rmd->addr, rmd->len)) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "shm: descriptor %zu: remote 0x%" PRIx64
                             "+%" PRIu64 " outside %s's region",
                             i, ra, len, peer->name);
        }
        if (len == 0) {
            continue;
        }
        if (rmd->mapped) {
            ra += rmd->delta;
            if (nm > 0 && ml_end == la && mr_end == ra) {
                ml[1 - (ptrdiff_t)nm].iov_len += (size_t)len;
                mr[1 - (ptrdiff_t)nm].iov_len += (size_t)len;
            } else {
                ml[-(ptrdiff_t)nm].iov_base = (void *)(uintptr_t)la;
                ml[-(ptrdiff_t)nm].iov_len = (size_t)len;
                mr[-(ptrdiff_t)nm].iov_base = (void *)(uintptr_t)ra;
                mr[-(ptrdiff_t)nm].iov_len = (size_t)len;
                nm++;
            }
            ml_end = la + len;
            mr_end = ra + len;
            copy_bytes += len;
        } else {
            be_shm_iov_add(cl, &ncl, &cl_end, la, len);
            be_shm_iov_add(cr, &ncr, &cr_end, ra, len);
            cma_bytes += len;
        }
    }
    /* The copy pairs sit at [cap - nm, cap), last first: turn them. */
    r->ml = cl + cap - nm;
    r->mr = cr + cap - nm;
    for (i = 0; i < nm / 2; i++) {
        tmp = r->ml[i];
        r->ml[i] = r->ml[nm - 1 - i];
        r->ml[nm - 1 - i] = tmp;
        tmp = r->mr[i];
        r->mr[i] = r->mr[nm - 1 - i];
        r->mr[nm - 1 - i] = tmp;
    }
    r->ncl = ncl;
    r->ncr = ncr;
    r->nm = nm;
    r->cma_bytes = cma_bytes;
    r->copy_bytes = copy_bytes;
    r->nrchk = nxl__regtab_dedup((const void **)r->rchk, nrchk);
    return NXL_OK;
}

/* be_shm_chunk_size picks the chunk size of a split request: about 8
 * chunks per thread (so that a starved thread holds little), at least
 * 512 KiB (system call and wake-up costs stay small), at most 8 MiB. */
static uint64_t
be_shm_chunk_size(uint64_t total, unsigned threads)
{
    uint64_t cs = total / (8u * threads);

    cs = NXL__MAX(cs, (uint64_t)512 << 10);
    cs = NXL__MIN(cs, (uint64_t)8 << 20);
    return (cs + 4095) & ~(uint64_t)4095;
}

/* be_shm_rate_class maps a request size to its class for adaptive
 * splitting: below 2 MiB, [2, 4) MiB, ... , 128 MiB and more. */
static unsigned
be_shm_rate_class(uint64_t total)
{
    unsigned c = 0;

    while (c + 1 < BE_SHM_RATE_CLASSES && total >= ((uint64_t)2 << 20 << c)) {
        c++;
    }
    return c;
}

/* be_shm_plan fills r->chunks: the CMA lists then the copy lists cut into
 * pieces of cs bytes, each with its start cursor. */
static void
be_shm_plan(be_shm_req_t *r, uint64_t cs)
{
    be_shm_cursor_t c = {0, 0, 0, 0};
    uint64_t left, b;
    unsigned n = 0;

    for (left = r->cma_bytes; left > 0; left -= b) {
        b = NXL__MIN(cs, left);
        r->chunks[n++] = (be_shm_chunk_t){c, b, 0};
        be_shm_cursor_advance(&c, 0, r->cl, r->ncl, b);
        be_shm_cursor_advance(&c, 1, r->cr, r->ncr, b);
    }
    memset(&c, 0, sizeof(c));
    for (left = r->copy_bytes; left > 0; left -= b) {
        b = NXL__MIN(cs, left);
        r->chunks[n++] = (be_shm_chunk_t){c, b, 1};
        be_shm_cursor_advance(&c, 0, r->ml, r->nm, b);
    }
}

/* be_shm_prep validates every descriptor against its region (never touch
 * memory outside what was registered or described by the peer) and builds
 * the iovec lists and the split plan once, so that post only moves data. */
nxl_status_t
be_shm_prep(void *self, void *req, const nxl_be_xfer_t *xfer)
{
    be_shm_engine_t *eng = self;
    be_shm_req_t *r = req;
    be_shm_peer_t *peer = xfer->peer_ctx;
    size_t n, cap, nchunks = 0, nhelpers = 0;
    uint64_t cs = 0;
    struct iovec *v;
    nxl_status_t st;
    int dev_path, ldev, rdev;

    if (xfer->op != NXL_READ && xfer->op != NXL_WRITE) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: bad op %d",
                         (int)xfer->op);
    }
    if ((xfer->local_mem != NXL_DRAM && xfer->local_mem != NXL_VRAM) ||
        (xfer->remote_mem != NXL_DRAM && xfer->remote_mem != NXL_VRAM)) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "shm: only DRAM and VRAM (got %d to %d)",
                         (int)xfer->local_mem, (int)xfer->remote_mem);
    }
    dev_path = xfer->local_mem == NXL_VRAM || xfer->remote_mem == NXL_VRAM;
    if (dev_path && eng->dk == NULL) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "shm: VRAM transfers need a device memory kind with "
                         "IPC handles: %s",
                         eng->dk_why);
    }
    if (peer == NULL || peer->magic != BE_SHM_PEER_MAGIC) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: transfer without peer");
    }
    if (xfer->count > 0 && (xfer->local == NULL || xfer->remote == NULL)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: NULL descriptor list");
    }
    /* Two lists of n: the one pass fills them (be_shm_build). */
    n = xfer->count;
    if (n <= BE_SHM_INLINE_IOV) {
        v = r->inl;
        r->alloc = NULL;
        cap = 2 * BE_SHM_INLINE_IOV;
    } else {
        if (n > SIZE_MAX / (2 * sizeof(struct iovec))) {
            return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: %zu descriptors", n);
        }
        r->alloc = malloc(2 * n * sizeof(struct iovec));
        if (r->alloc == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "shm: %zu iovecs", 2 * n);
        }
        v = r->alloc;
        cap = n;
    }
    r->cl = v;
    r->cr = v + cap;
    r->rchk = NULL;
    r->rchk_cap = 0;
    st = be_shm_build(r, xfer, peer, dev_path, cap);
    if (st != NXL_OK) {
        goto err_free;
    }
    r->rt0 = r->nrchk > 0 ? r->rchk[0]->rt : NULL;
    r->rt0_gen = r->nrchk > 0 ? r->rchk[0]->rt_gen : 0;
    if (!dev_path && eng->pool.nthreads > 0 &&
        r->cma_bytes + r->copy_bytes >= eng->split_threshold) {
        cs = be_shm_chunk_size(r->cma_bytes + r->copy_bytes,
                               eng->pool.nthreads + 1);
        nchunks = (size_t)((r->cma_bytes + cs - 1) / cs +
                           (r->copy_bytes + cs - 1) / cs);
        nhelpers = NXL__MIN((size_t)eng->pool.nthreads, nchunks - 1);
    }
    if (nhelpers == 0) {
        nchunks = 0;
    }
    r->plan = NULL;
    if (nhelpers > 0) {
        r->plan = malloc(nchunks * sizeof(be_shm_chunk_t) +
                         nhelpers * sizeof(be_shm_helper_t));
        if (r->plan == NULL) {
            st = nxl__fail(NXL_ERR_NOMEM, "shm: %zu chunks", nchunks);
            goto err_free;
        }
    }
    r->nchunks = (unsigned)nchunks;
    r->nhelpers = (unsigned)nhelpers;
    r->chunks = NULL;
    r->helpers = NULL;
    if (nhelpers > 0) {
        r->rate_class = be_shm_rate_class(r->cma_bytes + r->copy_bytes);
        r->chunks = r->plan;
        r->helpers = (be_shm_helper_t *)(void *)(r->chunks + nchunks);
        memset(r->helpers, 0, nhelpers * sizeof(be_shm_helper_t));
        be_shm_plan(r, cs);
    }
    r->eng = eng;
    r->peer = peer;
    r->op = xfer->op;
    r->dev_path = dev_path;
    r->dk = dev_path ? eng->dk : NULL;
    r->dir = NXL_COPY_H2H;
    if (dev_path) {
        ldev = xfer->local_mem == NXL_VRAM;
        rdev = xfer->remote_mem == NXL_VRAM;
        if (xfer->op == NXL_READ) { /* remote -> local */
            r->dir = rdev ? (ldev ? NXL_COPY_D2D : NXL_COPY_D2H) : NXL_COPY_H2D;
        } else {
            r->dir = ldev ? (rdev ? NXL_COPY_D2D : NXL_COPY_D2H) : NXL_COPY_H2D;
        }
    }
    atomic_store(&r->state, BE_SHM_REQ_IDLE);
    /* The request keeps the peer record alive: the core may unload the
     * peer (nxl_md_invalidate) while this request still runs or is
     * polled (check kicks the peer's notification stream). */
    atomic_fetch_add(&peer->refs, 1);
    r->magic = BE_SHM_REQ_MAGIC;
    return NXL_OK;

err_free:
    free(r->alloc);
    r->alloc = NULL;
    free(r->rchk);
    r->rchk = NULL;
    return st;
}

/* be_shm_req_error records a synchronous failure of req and returns st. */
static nxl_status_t
be_shm_req_error(be_shm_req_t *r, nxl_status_t st)
{
    snprintf(r->errmsg, sizeof(r->errmsg), "%s", nxl_last_error());
    atomic_store_explicit(&r->status, (int)st, memory_order_relaxed);
    atomic_store_explicit(&r->state, BE_SHM_REQ_ERROR, memory_order_release);
    return st;
}

/* be_shm_post_dev moves a device-path request: one blocking copy of the
 * device kind per pair of the copy lists (every remote region is mapped
 * here: opened VRAM, a shared DRAM mapping, or this very process). A
 * failed copy with the peer gone, or a peer found gone after the copies,
 * is NXL_ERR_REMOTE_DISCONNECT. */
static nxl_status_t
be_shm_post_dev(be_shm_req_t *r)
{
    int write = (r->op == NXL_WRITE);
    nxl_status_t st;
    char why[160];
    size_t i;

    for (i = 0; i < r->nm; i++) {
        if (write) {
            st = r->dk->copy(r->mr[i].iov_base, r->ml[i].iov_base,
                             r->ml[i].iov_len, r->dir);
        } else {
            st = r->dk->copy(r->ml[i].iov_base, r->mr[i].iov_base,
                             r->ml[i].iov_len, r->dir);
        }
        if (st != NXL_OK) {
            if (!be_shm_peer_alive(r->peer, 1)) {
                snprintf(why, sizeof(why), "%s", nxl_last_error());
                return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                                 "shm: peer %s (pid %d) is gone: %s",
                                 r->peer->name, (int)r->peer->pid, why);
            }
            return st;
        }
    }
    /* Into a dead peer's mapping a copy succeeds silently: look again. */
    if (!be_shm_peer_alive(r->peer, 1)) {
        return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                         "shm: peer %s (pid %d) went away during the copy",
                         r->peer->name, (int)r->peer->pid);
    }
    return NXL_OK;
}

/* be_shm_post_sync moves a request on the calling thread. The common case
 * (at most IOV_MAX iovecs a side) is one process_vm_* call on the lists
 * prep built; a partial transfer continues where the kernel stopped. */
static nxl_status_t
be_shm_post_sync(be_shm_req_t *r)
{
    be_shm_peer_t *peer = r->peer;
    be_shm_cursor_t at = {0, 0, 0, 0};
    int write = (r->op == NXL_WRITE);
    ssize_t n = 0;
    int err, use_nt;

    if (r->dev_path) {
        return be_shm_post_dev(r);
    }
    if (r->cma_bytes > 0) {
        if (r->ncl <= BE_SHM_IOV_MAX && r->ncr <= BE_SHM_IOV_MAX) {
            if (write) {
                n = process_vm_writev(peer->pid, r->cl, r->ncl, r->cr, r->ncr,
                                      0);
            } else {
                n = process_vm_readv(peer->pid, r->cl, r->ncl, r->cr, r->ncr,
                                     0);
            }
            if (n < 0) {
                err = errno;
                if (err != EINTR) {
                    if (err == ESRCH) {
                        be_shm_peer_mark_dead(peer, "process_vm_* found no "
                                                    "process");
                    }
                    return nxl__fail_errno(err, "shm: %s(pid %d)",
                                           write ? "process_vm_writev"
                                                 : "process_vm_readv",
                                           (int)peer->pid);
                }
                n = 0;
            }
        }
        if ((uint64_t)n < r->cma_bytes) {
            be_shm_cursor_advance(&at, 0, r->cl, r->ncl, (uint64_t)n);
            be_shm_cursor_advance(&at, 1, r->cr, r->ncr, (uint64_t)n);
            nxl_status_t st =
                be_shm_cma_range(peer->pid, write, r->cl, r->ncl, r->cr, r->ncr,
                                 at, r->cma_bytes - (uint64_t)n, peer, NULL);
            if (st != NXL_OK) {
                return st;
            }
        }
    }
    if (r->copy_bytes > 0) {
        use_nt = r->copy_bytes >= r->eng->nt_threshold;
        at.li = at.loff = 0;
        if (write) {
            be_shm_copy_range(r->mr, r->ml, r->nm, at, r->copy_bytes, use_nt,
                              NULL);
        } else {
            be_shm_copy_range(r->ml, r->mr, r->nm, at, r->copy_bytes, use_nt,
                              NULL);
        }
    }
    return NXL_OK;
}

/* be_shm_post starts a prepared request: split across the worker pool
 * (the caller takes chunks too; NXL_IN_PROG while a worker still holds
 * one) or moved synchronously. No allocation and, for small requests, no system
 * call but the one process_vm_* (the pidfd is polled at most once per
 * millisecond). */
nxl_status_t
be_shm_post(void *self, void *req, const nxl_be_xfer_t *xfer)
{
    be_shm_req_t *r = req;
    be_shm_peer_t *peer;
    uint64_t t0 = 0;
    size_t k;
    nxl_status_t st;
    int state;

    (void)self;
    if (r->magic != BE_SHM_REQ_MAGIC) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: request not prepared");
    }
    state = atomic_load_explicit(&r->state, memory_order_acquire);
    if (state == BE_SHM_REQ_RUNNING) {
        return nxl__fail(NXL_ERR_REPOST_ACTIVE, "shm: request still active");
    }
    peer = r->peer;
    /* A device copy costs more than a pidfd poll: always look. */
    if (!be_shm_peer_alive(peer, r->dev_path)) {
        return be_shm_req_error(r, nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                                             "shm: peer %s (pid %d) is gone",
                                             peer->name, (int)peer->pid));
    }
    for (k = 0; k < r->nrchk; k++) {
        if (k == 0 ? !nxl__regtab_live(r->rt0, r->rt0_gen)
                   : !nxl__regtab_live(r->rchk[k]->rt, r->rchk[k]->rt_gen)) {
            return be_shm_req_error(
                r, nxl__fail(NXL_ERR_NOT_FOUND,
                             "shm: %s deregistered its region 0x%" PRIx64
                             "+%" PRIu64 " after this transfer was made "
                             "(reload its metadata)",
                             peer->name, r->rchk[k]->addr, r->rchk[k]->len));
        }
    }
    r->xfer = xfer;
    atomic_store_explicit(&r->cancel, 0, memory_order_relaxed);
    atomic_store_explicit(&r->status, NXL_OK, memory_order_relaxed);

    if (r->nhelpers > 0) {
        if (be_shm_split_wanted(r->eng, r)) {
            return be_shm_split_post(r);
        }
        t0 = nxl__now_ns();
    }

    st = be_shm_post_sync(r);
    if (st != NXL_OK) {
        return be_shm_req_error(r, st);
    }
    if (r->nhelpers > 0) {
        be_shm_rate_note(&r->eng->rate_sync[r->rate_class],
                         r->cma_bytes + r->copy_bytes, nxl__now_ns() - t0);
    }
    if (xfer->has_notif) {
        st = nxl__ls_tx_send(peer->tx, xfer->notif, xfer->notif_len, NULL);
        if (st != NXL_OK) {
            return be_shm_req_error(r, st);
        }
    }
    atomic_store_explicit(&r->state, BE_SHM_REQ_DONE, memory_order_release);
    return NXL_OK;
}

/* be_shm_check reports a request's state; notifications still queued for
 * the peer are pushed further on the way. */
nxl_status_t
be_shm_check(void *self, void *req)
{
    be_shm_req_t *r = req;
    nxl_status_t st;

    (void)self;
    if (r->magic != BE_SHM_REQ_MAGIC) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: request not prepared");
    }
    switch (atomic_load_explicit(&r->state, memory_order_acquire)) {
    case BE_SHM_REQ_DONE:
        nxl__ls_tx_kick(r->peer->tx);
        return NXL_OK;
    case BE_SHM_REQ_RUNNING:
        return NXL_IN_PROG;
    case BE_SHM_REQ_ERROR:
        st = (nxl_status_t)atomic_load(&r->status);
        return nxl__fail(st, "%s", r->errmsg);
    default:
        return nxl__fail(NXL_ERR_NOT_POSTED, "shm: request not posted");
    }
}

/* be_shm_cancel stops a request: queued helpers are withdrawn, workers see
 * the flag between system calls; returns once no chunk runs. A
 * notification already queued is still delivered (a stream cannot take
 * bytes back). */
void
be_shm_cancel(void *self, void *req)
{
    be_shm_req_t *r = req;

    (void)self;
    if (r->magic != BE_SHM_REQ_MAGIC) {
        return;
    }
    atomic_store(&r->cancel, 1);
    be_shm_split_cancel(r);
    while (atomic_load_explicit(&r->state, memory_order_acquire) ==
           BE_SHM_REQ_RUNNING) {
        sched_yield();
    }
    atomic_store(&r->state, BE_SHM_REQ_IDLE);
}

/* be_shm_release frees what prep allocated. */
void
be_shm_release(void *self, void *req)
{
    be_shm_req_t *r = req;

    if (r->magic != BE_SHM_REQ_MAGIC) {
        return;
    }
    if (atomic_load(&r->state) == BE_SHM_REQ_RUNNING) {
        be_shm_cancel(self, req);
    }
    free(r->alloc);
    r->alloc = NULL;
    free(r->plan);
    r->plan = NULL;
    free(r->rchk);
    r->rchk = NULL;
    r->magic = 0;
    be_shm_peer_put(r->peer);
}

/* be_shm_event_fd returns the epoll set progress drains. */
int
be_shm_event_fd(void *self)
{
    be_shm_engine_t *eng = self;

    return eng->ep_fd;
}

/* be_shm_notif_send queues a standalone notification to peer. */
nxl_status_t
be_shm_notif_send(void *self, void *peer_ctx, const void *msg, size_t len)
{
    be_shm_peer_t *peer = peer_ctx;

    (void)self;
    if (peer == NULL || peer->magic != BE_SHM_PEER_MAGIC) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: notif_send without peer");
    }
    if (msg == NULL && len > 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: NULL notification");
    }
    if (!be_shm_peer_alive(peer, 1)) {
        return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                         "shm: peer %s (pid %d) is gone", peer->name,
                         (int)peer->pid);
    }
    return nxl__ls_tx_send(peer->tx, msg, len, NULL);
}
