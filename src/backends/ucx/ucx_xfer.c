/*
 * ucx_xfer.c - transfers and notifications of the UCX backend.
 *
 * A request is bound to one worker at prep. Posting links it on the
 * worker's active list; whoever holds the worker lock (post, check,
 * progress, the service thread) advances it:
 *   UCX path: issue ucp_put_nbx / ucp_get_nbx for descriptors while fewer
 *   than BE_UCX_WINDOW are in flight (all count into one tracker, the
 *   callbacks' user_data), then ucp_ep_flush_nbx after a WRITE; once the
 *   tracker is empty the data is visible at the target;
 *   copy paths: slices of at most BE_UCX_SLICE bytes / BE_UCX_IOV_MAX
 *   iovecs (BE_UCX_POST_SLICE inside post), each one process_vm_readv/
 *   writev call (memmove in-process; memcpy into the peer's mapped memfds
 *   on the map path). A slice is claimed under the worker
 *   lock and copied without it, so the caller and the service thread copy
 *   one request in parallel; copy_busy keeps the request alive meanwhile;
 * then the notification goes out as an active message on the same
 * endpoint, so it arrives after the data.
 *
 * Notification on the wire (AM id BE_UCX_AM_NOTIF, eager, no header):
 * u16 sender name length, sender name, message.
 */
#include "ucx.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* be_ucx_op_cb completes one UCX operation of a tracker (worker lock
 * held: it runs inside ucp_worker_progress or a forced close). */
static void
be_ucx_op_cb(void *request, ucs_status_t status, void *user_data)
{
    be_ucx_trk_t *trk = user_data;
    bool cb = be_ucx_cb_enter();

    if (status != UCS_OK && trk->status == UCS_OK) {
        trk->status = status;
    }
    trk->pending--;
    ucp_request_free(request);
    be_ucx_cb_leave(cb);
}

/* be_ucx_free_cb frees a standalone notification once UCX sent it. */
static void
be_ucx_free_cb(void *request, ucs_status_t status, void *user_data)
{
    bool cb = be_ucx_cb_enter();

    (void)status;
    free(user_data);
    ucp_request_free(request);
    be_ucx_cb_leave(cb);
}

/* be_ucx_finish records req's final status and unlinks it (worker lock
 * held). */
static void
be_ucx_finish(be_ucx_req_t *req, nxl_status_t status)
{
    be_ucx_worker_t *w = req->w;

    if (req->linked) {
        if (req->prev != NULL) {
            req->prev->next = req->next;
        } else {
            w->active = req->next;
        }
        if (req->next != NULL) {
            req->next->prev = req->prev;
        }
        req->prev = req->next = NULL;
        req->linked = false;
    }
    req->phase = BE_UCX_PH_DONE;
    atomic_store(&req->state, status);
}

/* be_ucx_req_fail: end req now with status (worker lock held); operations
 * UCX still holds stay with an orphaned tracker; a slice being copied
 * by the service thread defers the end to that thread. */
void
be_ucx_req_fail(be_ucx_req_t *req, nxl_status_t status, const char *fmt, ...)
{
    va_list ap;

    if (atomic_load(&req->state) != NXL_IN_PROG) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(req->err, sizeof(req->err), fmt, ap);
    va_end(ap);
    if (req->copy_busy > 0) {
        /* The service thread copies a slice of it right now: it ends the
         * request when that slice is done. */
        req->failing = true;
        req->fail_status = status;
        return;
    }
    if (req->trk != NULL && req->trk->pending > 0) {
        /* UCX still holds operations it cannot cancel here: they keep
         * the tracker (and the notification buffer) until the worker is
         * destroyed. */
        be_ucx_orphan_trk(req->eng, req->trk);
        req->trk = NULL;
    }
    be_ucx_finish(req, status);
}

/* be_ucx_ep_of returns req's endpoint, or NULL if the peer lost it. */
static ucp_ep_h
be_ucx_ep_of(const be_ucx_req_t *req)
{
    const be_ucx_peer_t *p = req->peer;
    const be_ucx_pep_t *pep;

    if (p->eps == NULL) {
        return NULL;
    }
    pep = p->eps[req->w->idx];
    return pep != NULL ? pep->ep : NULL;
}

/* be_ucx_start_fail stops issuing: the request fails once the operations
 * already issued are done. */
static void
be_ucx_start_fail(be_ucx_req_t *req, nxl_status_t status, const char *fmt, ...)
{
    va_list ap;

    if (req->failing) {
        return;
    }
    req->failing = true;
    req->fail_status = status;
    va_start(ap, fmt);
    vsnprintf(req->err, sizeof(req->err), fmt, ap);
    va_end(ap);
}

/* be_ucx_issue posts more descriptors of a UCX-path request, then the
 * flush after the last WRITE descriptor. */
static void
be_ucx_issue(be_ucx_req_t *req)
{
    const nxl_be_xfer_t *x = req->x;
    be_ucx_trk_t *trk = req->trk;
    unsigned wi = req->w->idx;
    ucp_request_param_t fp;
    ucs_status_ptr_t sp;
    ucp_ep_h ep = be_ucx_ep_of(req);

    if (ep == NULL) {
        be_ucx_start_fail(req, NXL_ERR_REMOTE_DISCONNECT,
                          "ucx: agent '%s' has no endpoint (disconnected)",
                          req->peer->name);
        return;
    }
    while (req->cursor < x->count && trk->pending < BE_UCX_WINDOW) {
        const nxl_be_seg_t *l = &x->local[req->cursor];
        const nxl_be_seg_t *r = &x->remote[req->cursor];
        const be_ucx_md_t *lmd = l->md;
        const be_ucx_rmd_t *rmd = r->md;
        ucp_rkey_h rkey = rmd->rkey[wi];

        if (rkey == NULL) {
            be_ucx_start_fail(req, NXL_ERR_BACKEND,
                              "ucx: no remote key for region 0x%llx of '%s'",
                              (unsigned long long)rmd->addr, req->peer->name);
            return;
        }
        req->rp.memh = lmd->memh;
        if (x->op == NXL_WRITE) {
            sp = ucp_put_nbx(ep, (void *)(uintptr_t)l->addr, l->len, r->addr,
                             rkey, &req->rp);
        } else {
            sp = ucp_get_nbx(ep, (void *)(uintptr_t)l->addr, l->len, r->addr,
                             rkey, &req->rp);
        }
        if (UCS_PTR_IS_ERR(sp)) {
            be_ucx_start_fail(
                req, be_ucx_status(UCS_PTR_STATUS(sp)),
                "ucx: %s of descriptor %zu to '%s': %s",
                x->op == NXL_WRITE ? "ucp_put_nbx" : "ucp_get_nbx", req->cursor,
                req->peer->name, ucs_status_string(UCS_PTR_STATUS(sp)));
            return;
        }
        if (sp != NULL) {
            trk->pending++;
        }
        req->cursor++;
    }
    if (req->cursor < x->count) {
        return;
    }
    if (x->op == NXL_WRITE) {
        /* Remote completion of every put before the notification. */
        memset(&fp, 0, sizeof(fp));
        fp.op_attr_mask =
            UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
        fp.cb.send = be_ucx_op_cb;
        fp.user_data = trk;
        sp = ucp_ep_flush_nbx(ep, &fp);
        if (UCS_PTR_IS_ERR(sp)) {
            be_ucx_start_fail(req, be_ucx_status(UCS_PTR_STATUS(sp)),
                              "ucx: ucp_ep_flush_nbx to '%s': %s",
                              req->peer->name,
                              ucs_status_string(UCS_PTR_STATUS(sp)));
            return;
        }
        if (sp != NULL) {
            trk->pending++;
        }
    }
    req->phase = BE_UCX_PH_DRAIN;
}

/* be_ucx_copy_claim takes the next slice of a copy-path request (worker
 * lock held): up to budget bytes in up to BE_UCX_IOV_MAX iovec pairs from
 * the cursor, which moves past them. Returns the number of pairs. */
static size_t
be_ucx_copy_claim(be_ucx_req_t *req, uint64_t budget, struct iovec *liov,
                  struct iovec *riov)
{
    const nxl_be_xfer_t *x = req->x;
    bool map = req->path == BE_UCX_PATH_MAP;
    uint64_t total = 0, take, delta;
    size_t n = 0;

    while (req->cursor < x->count && n < BE_UCX_IOV_MAX && total < budget) {
        const nxl_be_seg_t *l = &x->local[req->cursor];
        const nxl_be_seg_t *r = &x->remote[req->cursor];

        take = NXL__MIN(l->len - req->offset, budget - total);
        /* map path: the peer's address, as mapped here */
        delta = map ? ((const be_ucx_rmd_t *)r->md)->delta : 0;
        liov[n].iov_base = (void *)(uintptr_t)(l->addr + req->offset);
        riov[n].iov_base = (void *)(uintptr_t)(r->addr + delta + req->offset);
        liov[n].iov_len = riov[n].iov_len = (size_t)take;
        n++;
        total += take;
        req->offset += take;
        if (req->offset == l->len) {
            req->cursor++;
            req->offset = 0;
        }
    }
    return n;
}

/* be_ucx_iov_skip drops the first got bytes of both iovec lists (a
 * partial process_vm_* call resumes after them). */
static void
be_ucx_iov_skip(struct iovec **liov, struct iovec **riov, size_t *n, size_t got)
{
    while (got > 0 && *n > 0) {
        size_t t = NXL__MIN(got, (*liov)->iov_len);

        (*liov)->iov_base = (uint8_t *)(*liov)->iov_base + t;
        (*riov)->iov_base = (uint8_t *)(*riov)->iov_base + t;
        (*liov)->iov_len -= t;
        (*riov)->iov_len -= t;
        got -= t;
        if ((*liov)->iov_len == 0) {
            (*liov)++;
            (*riov)++;
            (*n)--;
        }
    }
}

/* be_ucx_copy_do moves claimed iovecs (no lock needed): memmove within
 * this process, else process_vm_writev/readv, resuming after partial
 * calls. Returns 0 or an errno value. */
static int
be_ucx_copy_do(const be_ucx_req_t *req, struct iovec *liov, struct iovec *riov,
               size_t n)
{
    const be_ucx_peer_t *p = req->peer;
    bool wr = req->x->op == NXL_WRITE;
    ssize_t got;
    size_t i;

    if (p->in_process) {
        for (i = 0; i < n; i++) {
            if (wr) {
                memmove(riov[i].iov_base, liov[i].iov_base, liov[i].iov_len);
            } else {
                memmove(liov[i].iov_base, riov[i].iov_base, liov[i].iov_len);
            }
        }
        return 0;
    }
    if (p->pidfd >= 0) {
        struct pollfd pf = {.fd = p->pidfd, .events = POLLIN};

        if (poll(&pf, 1, 0) > 0) {
            /* Exited: its pid may be reused, never touch it again (the
             * map path could, harmlessly, but a transfer to a dead peer
             * fails the same way on both paths). */
            return ESRCH;
        }
    }
    if (req->path == BE_UCX_PATH_MAP) {
        /* The mapping stays valid whatever the peer does. */
        for (i = 0; i < n; i++) {
            if (wr) {
                memcpy(riov[i].iov_base, liov[i].iov_base, liov[i].iov_len);
            } else {
                memcpy(liov[i].iov_base, riov[i].iov_base, liov[i].iov_len);
            }
        }
        return 0;
    }
    while (n > 0) {
        got = wr ? process_vm_writev(p->pid, liov, n, riov, n, 0)
                 : process_vm_readv(p->pid, liov, n, riov, n, 0);
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            return errno;
        }
        if (got == 0) {
            return EFAULT;
        }
        be_ucx_iov_skip(&liov, &riov, &n, (size_t)got);
    }
    return 0;
}

/* be_ucx_copy_error fails req after a copy error err (worker lock). */
static void
be_ucx_copy_error(be_ucx_req_t *req, int err)
{
    be_ucx_peer_t *p = req->peer;

    if (err == ESRCH) {
        be_ucx_flag_peer(p, BE_UCX_WHY_EXIT);
        be_ucx_start_fail(req, NXL_ERR_REMOTE_DISCONNECT,
                          "ucx: agent '%s' (pid %d) exited", p->name,
                          (int)p->pid);
        return;
    }
    be_ucx_start_fail(req,
                      err == EPERM    ? NXL_ERR_NOT_ALLOWED
                      : err == EFAULT ? NXL_ERR_INVALID_PARAM
                                      : NXL_ERR_BACKEND,
                      "ucx: %s(pid %d) near descriptor %zu: %s",
                      req->x->op == NXL_WRITE ? "process_vm_writev"
                                              : "process_vm_readv",
                      (int)p->pid, req->cursor, strerror(err));
}

/* be_ucx_copy_work: req has copy slices left to claim. */
static bool
be_ucx_copy_work(const be_ucx_req_t *req)
{
    return req->path != BE_UCX_PATH_UCX && req->phase == BE_UCX_PH_DATA &&
           !req->failing && !req->canceling &&
           atomic_load(&req->state) == NXL_IN_PROG &&
           req->cursor < req->x->count;
}

/* be_ucx_copy_slice: claim a slice under the worker lock, copy it without
 * the lock, account for it under the lock again (contract in ucx.h). */
bool
be_ucx_copy_slice(be_ucx_worker_t *w, be_ucx_req_t *req, uint64_t budget)
{
    struct iovec liov[BE_UCX_IOV_MAX], riov[BE_UCX_IOV_MAX];
    size_t n;
    int err;

    if (req == NULL) {
        for (req = w->active; req != NULL; req = req->next) {
            if (be_ucx_copy_work(req)) {
                break;
            }
        }
        if (req == NULL) {
            return false;
        }
    } else if (!be_ucx_copy_work(req)) {
        return false;
    }
    if (atomic_load(&req->peer->dead)) {
        be_ucx_start_fail(req, NXL_ERR_REMOTE_DISCONNECT,
                          "ucx: agent '%s' disconnected: %s", req->peer->name,
                          req->peer->why);
        return false;
    }
    n = be_ucx_copy_claim(req, budget, liov, riov);
    req->copy_busy++;
    pthread_mutex_unlock(&w->lock);
    /* Copied without the lock, so the caller and the service thread copy
     * slices of one request in parallel. The request cannot end while
     * copy_busy > 0: its buffers, descriptors and peer stay valid. */
    err = be_ucx_copy_do(req, liov, riov, n);
    pthread_mutex_lock(&w->lock);
    req->copy_busy--;
    if (err != 0) {
        be_ucx_copy_error(req, err);
    }
    return true;
}

/* be_ucx_help_copies: the service thread copies slices while any
 * copy-path request has some left (see ucx.h). */
unsigned
be_ucx_help_copies(be_ucx_engine_t *eng)
{
    unsigned i, done = 0;
    bool found = true;

    while (found && !atomic_load(&eng->stop)) {
        found = false;
        for (i = 0; i < eng->nworkers; i++) {
            be_ucx_worker_t *w = &eng->workers[i];

            pthread_mutex_lock(&w->lock);
            if (be_ucx_copy_slice(w, NULL, BE_UCX_SLICE)) {
                found = true;
                done += be_ucx_progress_worker(w, false) > 0;
            }
            pthread_mutex_unlock(&w->lock);
        }
    }
    return done;
}

/* be_ucx_send_notif sends req's notification (sender name + message)
 * on req's endpoint; the tracker owns the buffer until UCX is done. */
static void
be_ucx_send_notif(be_ucx_req_t *req)
{
    be_ucx_engine_t *eng = req->eng;
    const nxl_be_xfer_t *x = req->x;
    be_ucx_trk_t *trk = req->trk;
    const char *me = eng->host->agent_name;
    size_t nl = strlen(me), need = 2 + nl + x->notif_len;
    ucp_request_param_t ap;
    ucs_status_ptr_t sp;
    ucp_ep_h ep;
    uint8_t *nb;

    if (req->peer->self) {
        eng->host->notif_recv(eng->host->ctx, me, x->notif, x->notif_len);
        req->phase = BE_UCX_PH_DONE;
        return;
    }
    if (req->peer->tx != NULL) {
        /* The data is complete at the target: the stream may carry it.
         * The request ends when the socket took the frame (NOTIF_WAIT),
         * so a sender cannot run ahead of a slow receiver by more than
         * the socket holds, as with an active message. */
        nxl_status_t st = nxl__ls_tx_send(req->peer->tx, x->notif, x->notif_len,
                                          &req->notif_end);

        if (st != NXL_OK) {
            be_ucx_start_fail(req, st, "ucx: notification to '%s': %s",
                              req->peer->name, nxl_last_error());
            return;
        }
        req->phase = BE_UCX_PH_NOTIF_WAIT;
        return;
    }
    ep = be_ucx_ep_of(req);
    if (ep == NULL) {
        be_ucx_start_fail(req, NXL_ERR_REMOTE_DISCONNECT,
                          "ucx: agent '%s' has no endpoint (disconnected)",
                          req->peer->name);
        return;
    }
    if (trk->ncap < need) {
        nb = realloc(trk->nbuf, need);
        if (nb == NULL) {
            be_ucx_start_fail(req, NXL_ERR_NOMEM, "ucx: out of memory");
            return;
        }
        trk->nbuf = nb;
        trk->ncap = need;
    }
    nb = trk->nbuf;
    nb[0] = (uint8_t)nl;
    nb[1] = (uint8_t)(nl >> 8);
    memcpy(nb + 2, me, nl);
    if (x->notif_len > 0) {
        memcpy(nb + 2 + nl, x->notif, x->notif_len);
    }
    memset(&ap, 0, sizeof(ap));
    ap.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                      UCP_OP_ATTR_FIELD_FLAGS;
    ap.cb.send = be_ucx_op_cb;
    ap.user_data = trk;
    ap.flags = UCP_AM_SEND_FLAG_EAGER;
    sp = ucp_am_send_nbx(ep, BE_UCX_AM_NOTIF, NULL, 0, nb, need, &ap);
    if (UCS_PTR_IS_ERR(sp)) {
        be_ucx_start_fail(req, be_ucx_status(UCS_PTR_STATUS(sp)),
                          "ucx: notification to '%s': %s", req->peer->name,
                          ucs_status_string(UCS_PTR_STATUS(sp)));
        return;
    }
    if (sp != NULL) {
        trk->pending++;
    }
    req->phase = BE_UCX_PH_NOTIF_WAIT;
}

/* be_ucx_advance: the request state machine (worker lock held); see the
 * top of this file. */
bool
be_ucx_advance(be_ucx_req_t *req)
{
    be_ucx_trk_t *trk = req->trk;

    if (atomic_load(&req->state) != NXL_IN_PROG) {
        return true;
    }
    for (;;) {
        if (trk->status != UCS_OK && !req->failing) {
            be_ucx_start_fail(req, be_ucx_status(trk->status),
                              "ucx: transfer with '%s' failed: %s",
                              req->peer->name, ucs_status_string(trk->status));
            if (req->fail_status == NXL_ERR_REMOTE_DISCONNECT) {
                /* A transport error (err mode none has no endpoint
                 * callback): fail the peer's other requests too. */
                be_ucx_flag_peer(req->peer, BE_UCX_WHY_OP);
            }
        }
        if (req->failing || req->canceling) {
            if (trk->pending > 0 || req->copy_busy > 0) {
                return false;
            }
            be_ucx_finish(req,
                          req->failing ? req->fail_status : NXL_ERR_CANCELED);
            if (!req->failing) {
                snprintf(req->err, sizeof(req->err), "ucx: canceled");
            }
            return true;
        }
        switch (req->phase) {
        case BE_UCX_PH_DATA:
            if (req->path == BE_UCX_PATH_UCX) {
                be_ucx_issue(req);
                if (req->phase == BE_UCX_PH_DATA && !req->failing) {
                    return false; /* window full */
                }
            } else if (req->cursor == req->x->count && req->copy_busy == 0) {
                req->phase = BE_UCX_PH_NOTIF;
            } else {
                return false; /* slices left, or being copied */
            }
            break;
        case BE_UCX_PH_DRAIN:
            if (trk->pending > 0) {
                return false;
            }
            req->phase = BE_UCX_PH_NOTIF;
            break;
        case BE_UCX_PH_NOTIF:
            if (req->x->has_notif) {
                be_ucx_send_notif(req);
            } else {
                req->phase = BE_UCX_PH_DONE;
            }
            break;
        case BE_UCX_PH_NOTIF_WAIT:
            if (trk->pending > 0) {
                return false;
            }
            if (req->peer->tx != NULL && req->x->has_notif &&
                nxl__ls_tx_sent(req->peer->tx) < req->notif_end) {
                nxl_status_t st = nxl__ls_tx_failed(req->peer->tx);

                if (st != NXL_OK) {
                    be_ucx_start_fail(req, st,
                                      "ucx: notification stream to '%s' "
                                      "failed",
                                      req->peer->name);
                    break;
                }
                nxl__ls_tx_kick(req->peer->tx);
                return false;
            }
            req->phase = BE_UCX_PH_DONE;
            break;
        case BE_UCX_PH_DONE:
            be_ucx_finish(req, NXL_OK);
            return true;
        }
    }
}

/* be_ucx_progress_worker: ucp_worker_progress until idle (at most 64
 * rounds), one copy slice when asked, then advance every request. */
unsigned
be_ucx_progress_worker(be_ucx_worker_t *w, bool copies)
{
    be_ucx_req_t *r, *next;
    unsigned n = 0, k, i, done = 0;

    for (i = 0; i < 64; i++) {
        k = be_ucx_worker_progress(w->h);
        if (k == 0) {
            break;
        }
        n += k;
    }
    if (copies && be_ucx_copy_slice(w, NULL, BE_UCX_SLICE)) {
        n++; /* the lock was dropped meanwhile; the list walk follows */
    }
    for (r = w->active; r != NULL; r = next) {
        next = r->next;
        if (be_ucx_advance(r)) {
            done++;
        }
    }
    if (done > 0) {
        be_ucx_notify(w->eng);
    }
    return n + done;
}

/* be_ucx_final returns req's final status, setting this thread's error
 * message for failures. */
static nxl_status_t
be_ucx_final(be_ucx_req_t *req, nxl_status_t st)
{
    if (st < 0) {
        return nxl__fail(st, "%s", req->err[0] ? req->err : "ucx: failed");
    }
    return st;
}

/* be_ucx_rchk_build keeps the distinct remote regions of x that have a
 * registration-table slot (same-host peers), for the check of every
 * post. */
static nxl_status_t
be_ucx_rchk_build(be_ucx_req_t *req, const nxl_be_xfer_t *x)
{
    size_t i, k = 0;
    nxl_status_t st;

    st = nxl__regtab_distinct(x, (const void ***)&req->rchk, &req->nrchk);
    if (st != NXL_OK) {
        return st;
    }
    for (i = 0; i < req->nrchk; i++) {
        if (req->rchk[i] != NULL && req->rchk[i]->rt != NULL) {
            req->rchk[k++] = req->rchk[i];
        }
    }
    req->nrchk = k;
    return NXL_OK;
}

/* be_ucx_prep: bind the request to a worker (round robin), choose its data
 * path and build the UCX operation parameters once. */
nxl_status_t
be_ucx_prep(void *self, void *reqp, const nxl_be_xfer_t *x)
{
    be_ucx_engine_t *eng = self;
    be_ucx_req_t *req = reqp;
    be_ucx_peer_t *p = x->peer_ctx;
    nxl_status_t st;
    unsigned wi;
    size_t i;

    if (p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "ucx: transfer without a "
                                                "peer");
    }
    if (atomic_load(&p->dead)) {
        return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                         "ucx: agent '%s' disconnected: %s", p->name, p->why);
    }
    wi = atomic_fetch_add(&eng->next_worker, 1) % eng->nworkers;
    req->eng = eng;
    req->x = x;
    req->peer = p;
    req->w = &eng->workers[wi];
    atomic_init(&req->state, NXL_OK);
    if (x->local_mem == NXL_DRAM && x->remote_mem == NXL_DRAM && p->use_copy) {
        req->path = p->in_process ? BE_UCX_PATH_COPY : BE_UCX_PATH_CMA;
        if (req->path == BE_UCX_PATH_CMA) {
            /* Every remote region in a memfd mapped here: plain copies
             * (stops at the first region that is not). */
            for (i = 0; i < x->count; i++) {
                const be_ucx_rmd_t *rmd = x->remote[i].md;

                if (rmd == NULL || rmd->map == NULL) {
                    break;
                }
            }
            if (x->count > 0 && i == x->count) {
                req->path = BE_UCX_PATH_MAP;
            }
        }
    } else {
        req->path = BE_UCX_PATH_UCX;
        if ((x->local_mem == NXL_VRAM || x->remote_mem == NXL_VRAM) &&
            !eng->vram_ok) {
            return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                             "ucx: VRAM transfers need a UCX with CUDA "
                             "support");
        }
        if (p->eps == NULL || p->eps[wi] == NULL) {
            return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                             "ucx: no UCX endpoint to '%s' for this transfer",
                             p->name);
        }
        for (i = 0; i < x->count; i++) {
            if (x->local[i].md == NULL || x->remote[i].md == NULL) {
                return nxl__fail(NXL_ERR_INVALID_PARAM,
                                 "ucx: descriptor %zu has no registration", i);
            }
        }
    }
    st = be_ucx_rchk_build(req, x);
    if (st != NXL_OK) {
        return st;
    }
    req->trk = calloc(1, sizeof(*req->trk));
    if (req->trk == NULL) {
        free(req->rchk);
        req->rchk = NULL;
        return nxl__fail(NXL_ERR_NOMEM, "ucx: out of memory");
    }
    req->trk->req = req;
    memset(&req->rp, 0, sizeof(req->rp));
    req->rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                           UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMH;
#if UCP_API_VERSION >= UCP_VERSION(1, 12)
    req->rp.op_attr_mask |= UCP_OP_ATTR_FLAG_MULTI_SEND;
#endif
    req->rp.cb.send = be_ucx_op_cb;
    req->rp.user_data = req->trk;
    return NXL_OK;
}

/* be_ucx_post: start the request: the first window of UCX operations or
 * the first copy slice; OK when it finished inline. */
nxl_status_t
be_ucx_post(void *self, void *reqp, const nxl_be_xfer_t *x)
{
    be_ucx_engine_t *eng = self;
    be_ucx_req_t *req = reqp;
    be_ucx_worker_t *w = req->w;
    be_ucx_peer_t *p = req->peer;
    nxl_status_t st;
    size_t i;

    if (atomic_load(&p->dead)) {
        return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                         "ucx: agent '%s' disconnected: %s", p->name, p->why);
    }
    for (i = 0; i < req->nrchk; i++) {
        if (!nxl__regtab_live(req->rchk[i]->rt, req->rchk[i]->rt_gen)) {
            return nxl__fail(NXL_ERR_NOT_FOUND,
                             "ucx: '%s' deregistered its region 0x%llx+%llu "
                             "after this transfer was made (reload its "
                             "metadata)",
                             p->name, (unsigned long long)req->rchk[i]->addr,
                             (unsigned long long)req->rchk[i]->len);
        }
    }
    if (req->trk == NULL) {
        /* The last tracker was orphaned. */
        req->trk = calloc(1, sizeof(*req->trk));
        if (req->trk == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "ucx: out of memory");
        }
        req->trk->req = req;
        req->rp.user_data = req->trk;
    }
    req->x = x;
    req->trk->status = UCS_OK;
    req->cursor = 0;
    req->offset = 0;
    req->phase = BE_UCX_PH_DATA;
    req->failing = req->canceling = false;
    req->err[0] = '\0';
    atomic_store(&req->state, NXL_IN_PROG);
    pthread_mutex_lock(&w->lock);
    req->prev = NULL;
    req->next = w->active;
    if (w->active != NULL) {
        w->active->prev = req;
    }
    w->active = req;
    req->linked = true;
    if (req->path != BE_UCX_PATH_UCX) {
        (void)be_ucx_copy_slice(w, req, BE_UCX_POST_SLICE);
    }
    (void)be_ucx_advance(req);
    pthread_mutex_unlock(&w->lock);
    st = atomic_load(&req->state);
    if (st == NXL_IN_PROG) {
        if (req->path != BE_UCX_PATH_UCX) {
            /* Copy steps continue from the agent's next check or
             * progress (do not let a waiter sleep) and from the service
             * thread, which copies slices alongside. */
            be_ucx_notify(eng);
            if (eng->service) {
                be_ucx_kick(eng);
            }
        }
        return NXL_IN_PROG;
    }
    return be_ucx_final(req, st);
}

/* be_ucx_check: poll liveness (no service thread), progress the worker,
 * copy a slice, advance; never waits. */
nxl_status_t
be_ucx_check(void *self, void *reqp)
{
    be_ucx_engine_t *eng = self;
    be_ucx_req_t *req = reqp;
    be_ucx_worker_t *w = req->w;
    nxl_status_t st = atomic_load(&req->state);
    bool more = false;

    if (st != NXL_IN_PROG) {
        return be_ucx_final(req, st);
    }
    if (!eng->service || atomic_load(&eng->work_pending)) {
        (void)be_ucx_liveness(eng, 0);
    }
    pthread_mutex_lock(&w->lock);
    if (atomic_load(&req->state) == NXL_IN_PROG) {
        (void)be_ucx_progress_worker(w, false);
        if (req->path != BE_UCX_PATH_UCX) {
            (void)be_ucx_copy_slice(w, req, BE_UCX_SLICE);
        }
        (void)be_ucx_advance(req);
        more = be_ucx_copy_work(req);
        if (!eng->service && atomic_load(&req->state) == NXL_IN_PROG &&
            req->path == BE_UCX_PATH_UCX) {
            (void)be_ucx_worker_arm(w, true);
        }
    }
    pthread_mutex_unlock(&w->lock);
    if (atomic_load(&eng->work_pending)) {
        (void)be_ucx_liveness(eng, 0);
    }
    if (more) {
        /* More to copy: do not let the waiter sleep. */
        be_ucx_notify(eng);
    }
    return be_ucx_final(req, atomic_load(&req->state));
}

/* be_ucx_cancel: stop issuing and wait for what is in flight: up to 1 s
 * then a forced endpoint reset (PEER mode), or as long as the peer lives
 * (NONE mode cannot cancel; capped at BE_UCX_NONE_WAIT_NS). */
void
be_ucx_cancel(void *self, void *reqp)
{
    be_ucx_engine_t *eng = self;
    be_ucx_req_t *req = reqp;
    be_ucx_worker_t *w = req->w;
    be_ucx_peer_t *p = req->peer;
    uint64_t start = nxl__now_ns(), now;
    bool done = false, warned = false;

    if (atomic_load(&req->state) != NXL_IN_PROG) {
        return;
    }
    while (!done) {
        pthread_mutex_lock(&w->lock);
        req->canceling = true;
        now = nxl__now_ns();
        if (atomic_load(&req->state) != NXL_IN_PROG) {
            done = true; /* finished, or a peer failure ended it */
        } else if (req->copy_busy > 0) {
            /* The service thread finishes its slice within a moment. */
            pthread_mutex_unlock(&w->lock);
            usleep(50);
            continue;
        } else if (req->trk->pending == 0) {
            be_ucx_finish(req, NXL_ERR_CANCELED);
            snprintf(req->err, sizeof(req->err), "ucx: canceled");
            done = true;
        } else if (be_ucx_peer_gone(p)) {
            /* Nothing will complete: let UCX keep the operations. */
            be_ucx_req_fail(req, NXL_ERR_CANCELED, "ucx: canceled");
            done = true;
        } else if (p->err_peer && now - start >= BE_UCX_CANCEL_WAIT_NS) {
            /* A forced close completes the operations (canceled); a
             * fresh endpoint keeps the peer usable. */
            eng->host->log(NXL_LOG_WARN,
                           "ucx: a canceled transfer to '%s' does not "
                           "finish: resetting the endpoint",
                           p->name);
            (void)be_ucx_ep_reset(p, w);
            be_ucx_req_fail(req, NXL_ERR_CANCELED, "ucx: canceled");
            done = true;
        } else if (!p->err_peer && now - start >= BE_UCX_NONE_WAIT_NS) {
            eng->host->log(NXL_LOG_ERROR,
                           "ucx: %u operation(s) to '%s' cannot be "
                           "canceled in err mode none and did not finish "
                           "in %llu s; UCX keeps them: their buffers must "
                           "stay mapped",
                           req->trk->pending, p->name,
                           BE_UCX_NONE_WAIT_NS / 1000000000ull);
            be_ucx_req_fail(req, NXL_ERR_CANCELED, "ucx: canceled");
            done = true;
        } else {
            if (!p->err_peer && !warned &&
                now - start >= BE_UCX_CANCEL_WAIT_NS) {
                eng->host->log(NXL_LOG_WARN,
                               "ucx: waiting for %u operation(s) to '%s': "
                               "err mode none cannot cancel them",
                               req->trk->pending, p->name);
                warned = true;
            }
            if (be_ucx_progress_worker(w, false) == 0) {
                pthread_mutex_unlock(&w->lock);
                (void)be_ucx_liveness(eng, 0);
                usleep(100);
                continue;
            }
        }
        pthread_mutex_unlock(&w->lock);
    }
    (void)be_ucx_liveness(eng, 0);
}

/* be_ucx_release: free the tracker (orphaned if UCX still holds any of
 * its operations). */
void
be_ucx_release(void *self, void *reqp)
{
    be_ucx_engine_t *eng = self;
    be_ucx_req_t *req = reqp;
    be_ucx_trk_t *trk = req->trk;

    free(req->rchk);
    req->rchk = NULL;
    req->nrchk = 0;
    if (trk == NULL || req->w == NULL) {
        return;
    }
    pthread_mutex_lock(&req->w->lock);
    while (req->copy_busy > 0) {
        /* Not expected (the core cancels first): let the slice finish. */
        pthread_mutex_unlock(&req->w->lock);
        usleep(50);
        pthread_mutex_lock(&req->w->lock);
    }
    if (req->linked) {
        be_ucx_req_fail(req, NXL_ERR_CANCELED, "ucx: released");
    }
    trk = req->trk;
    req->trk = NULL;
    if (trk != NULL && trk->pending > 0) {
        be_ucx_orphan_trk(eng, trk);
        trk = NULL;
    }
    pthread_mutex_unlock(&req->w->lock);
    if (trk != NULL) {
        free(trk->nbuf);
        free(trk);
    }
}

/* be_ucx_notif_send: a standalone notification on worker 0 (to this
 * engine: delivered directly). */
nxl_status_t
be_ucx_notif_send(void *self, void *peer_ctx, const void *msg, size_t len)
{
    be_ucx_engine_t *eng = self;
    be_ucx_peer_t *p = peer_ctx;
    const char *me = eng->host->agent_name;
    size_t nl = strlen(me);
    be_ucx_worker_t *w = &eng->workers[0];
    ucp_request_param_t ap;
    ucs_status_ptr_t sp;
    ucp_ep_h ep;
    uint8_t *nb;

    if (p->self) {
        eng->host->notif_recv(eng->host->ctx, me, msg, len);
        return NXL_OK;
    }
    if (atomic_load(&p->dead)) {
        return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                         "ucx: agent '%s' disconnected: %s", p->name, p->why);
    }
    if (p->tx != NULL) {
        return nxl__ls_tx_send(p->tx, msg, len, NULL);
    }
    nb = malloc(2 + nl + len);
    if (nb == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "ucx: out of memory");
    }
    nb[0] = (uint8_t)nl;
    nb[1] = (uint8_t)(nl >> 8);
    memcpy(nb + 2, me, nl);
    if (len > 0) {
        memcpy(nb + 2 + nl, msg, len);
    }
    memset(&ap, 0, sizeof(ap));
    ap.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                      UCP_OP_ATTR_FIELD_FLAGS;
    ap.cb.send = be_ucx_free_cb;
    ap.user_data = nb;
    ap.flags = UCP_AM_SEND_FLAG_EAGER;
    pthread_mutex_lock(&w->lock);
    ep = (p->eps != NULL && p->eps[0] != NULL) ? p->eps[0]->ep : NULL;
    if (ep == NULL) {
        pthread_mutex_unlock(&w->lock);
        free(nb);
        return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                         "ucx: agent '%s' has no endpoint", p->name);
    }
    sp = ucp_am_send_nbx(ep, BE_UCX_AM_NOTIF, NULL, 0, nb, 2 + nl + len, &ap);
    if (sp == NULL) {
        free(nb);
    } else if (UCS_PTR_IS_ERR(sp)) {
        pthread_mutex_unlock(&w->lock);
        free(nb);
        return nxl__fail(be_ucx_status(UCS_PTR_STATUS(sp)),
                         "ucx: notification to '%s': %s", p->name,
                         ucs_status_string(UCS_PTR_STATUS(sp)));
    } else {
        (void)be_ucx_worker_progress(w->h);
    }
    pthread_mutex_unlock(&w->lock);
    if (eng->service) {
        be_ucx_kick(eng);
    }
    return NXL_OK;
}

/* be_ucx_ls_deliver: see ucx.h. */
void
be_ucx_ls_deliver(void *ctx, const char *from, const void *msg, size_t len)
{
    be_ucx_engine_t *eng = ctx;

    eng->host->notif_recv(eng->host->ctx, from, msg, len);
}

/* be_ucx_ls_event: see ucx.h. */
unsigned
be_ucx_ls_event(be_ucx_engine_t *eng, uint64_t value, uint32_t events)
{
    unsigned wake = 0, n = nxl__ls_event(eng->ls, value, events, &wake);

    if (wake > 0) {
        be_ucx_notify(eng);
    }
    return n;
}

/* be_ucx_am_notif_body: validate a received notification (peer input)
 * and hand it to the agent. */
static ucs_status_t
be_ucx_am_notif_body(void *arg, const void *header, size_t hlen, void *data,
                     size_t len, const ucp_am_recv_param_t *param)
{
    be_ucx_worker_t *w = arg;
    be_ucx_engine_t *eng = w->eng;
    const uint8_t *b = data;
    char name[BE_UCX_NAME_MAX];
    size_t nl;

    (void)header;
    (void)hlen;
    if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) {
        eng->host->log(NXL_LOG_WARN,
                       "ucx: dropped a rendezvous notification (%zu bytes)",
                       len);
        return UCS_OK;
    }
    if (len < 2 || len > BE_UCX_NOTIF_MAX) {
        eng->host->log(NXL_LOG_WARN,
                       "ucx: dropped a malformed notification "
                       "(%zu bytes)",
                       len);
        return UCS_OK;
    }
    nl = (size_t)b[0] | ((size_t)b[1] << 8);
    if (nl == 0 || nl >= sizeof(name) || nl > len - 2 ||
        memchr(b + 2, '\0', nl) != NULL) {
        eng->host->log(NXL_LOG_WARN, "ucx: dropped a notification with a bad "
                                     "sender name");
        return UCS_OK;
    }
    memcpy(name, b + 2, nl);
    name[nl] = '\0';
    eng->host->notif_recv(eng->host->ctx, name, b + 2 + nl, len - 2 - nl);
    be_ucx_notify(eng);
    return UCS_OK;
}

ucs_status_t
be_ucx_am_notif(void *arg, const void *header, size_t hlen, void *data,
                size_t len, const ucp_am_recv_param_t *param)
{
    bool cb = be_ucx_cb_enter();
    ucs_status_t st;

    st = be_ucx_am_notif_body(arg, header, hlen, data, len, param);
    be_ucx_cb_leave(cb);
    return st;
}
