/*
 * xfer.c - TCP transfers: prep builds a plan of parts (one frame each, on
 * one stream), post queues the parts, the I/O thread completes them, check
 * reads the atomic status. Also notifications and request timeouts.
 *
 * Ownership rule: everything the I/O thread does to a request happens under
 * io_lock and before the request's final status is stored; once the status
 * leaves NXL_IN_PROG the engine holds no reference to the request, so the
 * caller may re-post or release it at once.
 */
#include "tcp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* be_tcp_req_complete publishes req's final status. Must be the last
 * touch of req. */
static void
be_tcp_req_complete(be_tcp_req_t *req, nxl_status_t st, const char *why)
{
    be_tcp_engine_t *eng = req->eng;

    if (st != NXL_OK && why != NULL && why != req->msg) {
        snprintf(req->msg, sizeof(req->msg), "%s", why);
    }
    atomic_fetch_sub(&eng->inflight, 1);
    atomic_store(&req->status, (int)st);
    be_tcp_signal(eng, 1, false);
}

/* be_tcp_ntx_init builds req's NOTIF frame (id 0; an early one gets its
 * WRITE's id when queued). */
static void
be_tcp_ntx_init(be_tcp_req_t *req)
{
    be_tcp_frame_t f = {.type = BE_TCP_NOTIF};

    f.aux_len = (uint32_t)req->notif_len;
    be_tcp_frame_encode(&f, req->nhdr);
    memset(&req->ntx, 0, sizeof(req->ntx));
    req->niov[0].iov_base = req->nhdr;
    req->niov[0].iov_len = BE_TCP_HDR_SIZE;
    req->niov[1].iov_base = req->plan->notif;
    req->niov[1].iov_len = req->notif_len;
    req->ntx.kind = BE_TCP_TX_REQNOTIF;
    req->ntx.owner = req;
    req->ntx.iov = req->niov;
    req->ntx.iovcnt = 2;
    req->ntx.nctrl = 2;
}

/* be_tcp_req_finish runs when every part is done (io_lock held): fail,
 * or send the trailing notification (or wait until the early one is
 * sent), or succeed. */
static void
be_tcp_req_finish(be_tcp_req_t *req)
{
    be_tcp_conn_t *c;
    bool wait;

    if (req->err != NXL_OK) {
        be_tcp_req_complete(req, (nxl_status_t)req->err, req->msg);
        return;
    }
    if (req->notif_early) {
        /* The WRITE was acknowledged, so its frame went out in full; the
         * NOTIF frame right behind it usually did too. If not, the I/O
         * thread sends it (nobody else flushes a non-empty queue) and
         * completes req then (be_tcp_txi_dropped). */
        c = req->ntx_conn;
        pthread_mutex_lock(&c->tx_lock);
        wait = req->ntx_queued;
        req->ntx_wait = wait;
        pthread_mutex_unlock(&c->tx_lock);
        if (!wait) {
            be_tcp_req_complete(req, NXL_OK, NULL);
        }
        return;
    }
    if (!req->notif_trailing) {
        be_tcp_req_complete(req, NXL_OK, NULL);
        return;
    }
    be_tcp_ntx_init(req);
    c = req->peer->conns[0];
    req->ntx_conn = c;
    req->ntx_queued = true;
    /* From here the send (now or later) completes req. */
    if (c == NULL || !be_tcp_conn_enqueue(c, &req->ntx, true)) {
        req->ntx_queued = false;
        be_tcp_req_complete(req, NXL_ERR_REMOTE_DISCONNECT,
                            "tcp: connection lost before the notification "
                            "was sent");
    }
}

/* be_tcp_reqnotif_done: the trailing notification went out, or its
 * connection died first. */
void
be_tcp_reqnotif_done(be_tcp_req_t *req, bool ok)
{
    if (ok) {
        be_tcp_req_complete(req, NXL_OK, NULL);
    } else {
        be_tcp_req_complete(req, NXL_ERR_REMOTE_DISCONNECT,
                            "tcp: connection lost before the notification "
                            "was sent");
    }
}

/* be_tcp_part_done finishes one part (io_lock held); idempotent. */
void
be_tcp_part_done(be_tcp_part_t *part, nxl_status_t st, const char *why)
{
    be_tcp_req_t *req = part->req;

    if (part->state == BE_TCP_P_DONE) {
        return;
    }
    part->state = BE_TCP_P_DONE;
    if (st != NXL_OK && req->err == NXL_OK) {
        req->err = st;
        snprintf(req->msg, sizeof(req->msg), "%s",
                 why && why[0] ? why : nxl_strerror(st));
    }
    if (--req->pending == 0 && !req->failing) {
        be_tcp_req_finish(req);
    }
}

/* be_tcp_req_fail ends an in-flight req with st (io_lock held): detaches
 * every part and a queued notification, then completes it once. */
void
be_tcp_req_fail(be_tcp_req_t *req, nxl_status_t st, const char *why)
{
    be_tcp_plan_t *plan = req->plan;
    be_tcp_part_t *p;
    uint32_t i;

    if (atomic_load(&req->status) != NXL_IN_PROG) {
        return;
    }
    req->failing = true;
    for (i = 0; i < plan->nparts; i++) {
        p = &plan->parts[i];
        if (p->state != BE_TCP_P_DONE) {
            be_tcp_part_detach(p);
            be_tcp_part_done(p, st, why);
        }
    }
    req->failing = false;
    if (req->ntx_queued) {
        be_tcp_ntx_detach(req);
        req->ntx_queued = false;
        if (req->err == NXL_OK) {
            req->err = st;
            snprintf(req->msg, sizeof(req->msg), "%s", why);
        }
    }
    if (req->pending == 0) {
        be_tcp_req_complete(req, (nxl_status_t)req->err, req->msg);
    }
}

/* be_tcp_timeouts fails requests past their deadline (io_lock held). The
 * oldest request of a stream is at the head of its reply ring. */
void
be_tcp_timeouts(be_tcp_engine_t *eng)
{
    uint64_t now = nxl__now_ns();
    be_tcp_req_t *victim, *r;
    be_tcp_conn_t *c;
    size_t i, guard, limit;
    char why[160];

    for (c = eng->conns; c != NULL; c = c->next) {
        if (c->server) {
            continue;
        }
        /* The ring changes under tx_lock only: bound the loop by a
         * snapshot (one victim per round, at most every expected reply
         * plus the part being received). */
        pthread_mutex_lock(&c->tx_lock);
        limit = c->ring_count;
        pthread_mutex_unlock(&c->tx_lock);
        for (guard = 0; guard <= limit; guard++) {
            victim = NULL;
            r = c->rpart != NULL ? c->rpart->req : NULL;
            if (r != NULL && r->deadline_ns != 0 && now >= r->deadline_ns &&
                !atomic_load(&r->posting)) {
                victim = r;
            }
            pthread_mutex_lock(&c->tx_lock);
            for (i = 0; victim == NULL && i < c->ring_count; i++) {
                be_tcp_expect_t *e =
                    &c->ring[(c->ring_head + i) & (c->ring_cap - 1)];

                if (e->part == NULL) {
                    continue;
                }
                r = e->part->req;
                if (r->deadline_ns == 0 || now < r->deadline_ns ||
                    atomic_load(&r->posting)) {
                    break;
                }
                victim = r;
            }
            pthread_mutex_unlock(&c->tx_lock);
            if (victim == NULL || c->dead) {
                break;
            }
            snprintf(why, sizeof(why),
                     "tcp: request to agent '%s' timed out after %d ms",
                     victim->peer->name, eng->request_timeout_ms);
            be_tcp_req_fail(victim, NXL_ERR_TIMEOUT, why);
        }
    }
}

/* be_tcp_plan_walk splits the transfer into parts: at most
 * BE_TCP_MAX_DESCS pieces each and, when striping, about `target` bytes
 * each (descriptors are cut at part boundaries). Wire descriptors are
 * stride bytes (BE_TCP_WDESC_KEYED: with the key of the remote region).
 * With plan NULL it only counts. */
static void
be_tcp_plan_walk(const nxl_be_xfer_t *x, uint64_t target, be_tcp_plan_t *plan,
                 uint8_t *wdesc, size_t stride, struct iovec *liov,
                 uint32_t *nparts_p, size_t *npieces_p)
{
    uint64_t part_bytes = 0, off, len, take, key;
    uint32_t nparts = 0, part_pieces = 0;
    size_t npieces = 0, i;
    be_tcp_part_t *p;
    uint8_t *d;

    for (i = 0; i < x->count; i++) {
        len = x->local[i].len;
        off = 0;
        key = x->remote[i].md != NULL
                  ? ((const be_tcp_region_t *)x->remote[i].md)->key
                  : 0;
        do {
            if (part_pieces == BE_TCP_MAX_DESCS ||
                (part_pieces > 0 && part_bytes >= target)) {
                nparts++;
                part_bytes = 0;
                part_pieces = 0;
            }
            take = len - off;
            if (target != UINT64_MAX) {
                take = NXL__MIN(take, target - part_bytes);
            }
            if (plan != NULL) {
                p = &plan->parts[nparts];
                d = wdesc + npieces * stride;
                if (part_pieces == 0) {
                    p->wdesc = d;
                    p->liov = liov + npieces;
                }
                nxl__put_le64(d, x->remote[i].addr + off);
                nxl__put_le64(d + 8, take);
                if (stride == BE_TCP_WDESC_KEYED) {
                    nxl__put_le64(d + 16, key);
                }
                liov[npieces].iov_base =
                    (void *)(uintptr_t)(x->local[i].addr + off);
                liov[npieces].iov_len = (size_t)take;
                p->ndesc++;
                p->bytes += take;
            }
            part_pieces++;
            npieces++;
            part_bytes += take;
            off += take;
        } while (off < len);
    }
    if (part_pieces > 0) {
        nparts++;
    }
    *nparts_p = nparts;
    *npieces_p = npieces;
}

/* be_tcp_seg_inside checks a segment against the region its md names
 * (both sides' md are be_tcp_region_t); no md, no check. */
static bool
be_tcp_seg_inside(const nxl_be_seg_t *s)
{
    const be_tcp_region_t *r = s->md;

    return r == NULL || (s->addr >= r->addr && s->len <= r->len &&
                         s->addr - r->addr <= r->len - s->len);
}

/* be_tcp_prep checks a transfer and builds its plan: parts, the wire
 * descriptor tables and the iovecs that point into the local buffers. */
nxl_status_t
be_tcp_prep(void *self, void *reqp, const nxl_be_xfer_t *x)
{
    be_tcp_engine_t *eng = self;
    be_tcp_req_t *req = reqp;
    be_tcp_peer_t *peer = x->peer_ctx;
    uint64_t total = 0, target = UINT64_MAX;
    size_t npieces, ntxiov, size, i, txpos = 0, stride;
    be_tcp_plan_t *plan;
    uint32_t nparts, k, j;
    struct iovec *liov, *txiov;
    uint8_t *wdesc;
    be_tcp_part_t *p;
    be_tcp_frame_t f;

    if (x->op != NXL_READ && x->op != NXL_WRITE) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "tcp: unknown operation %d",
                         (int)x->op);
    }
    if (x->local_mem != NXL_DRAM || x->remote_mem != NXL_DRAM) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "tcp: only DRAM to DRAM transfers");
    }
    if (peer == NULL || x->count == 0 || x->local == NULL ||
        x->remote == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "tcp: transfer without a peer or descriptors");
    }
    for (i = 0; i < x->count; i++) {
        if (x->local[i].len != x->remote[i].len) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "tcp: descriptor %zu: local length %llu, remote "
                             "%llu",
                             i, (unsigned long long)x->local[i].len,
                             (unsigned long long)x->remote[i].len);
        }
        if (x->local[i].len > UINT64_MAX - total ||
            x->local[i].len > UINT64_MAX - x->local[i].addr ||
            x->remote[i].len > UINT64_MAX - x->remote[i].addr ||
            x->local[i].len > (uint64_t)SIZE_MAX) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "tcp: descriptor %zu wraps around", i);
        }
        if (!be_tcp_seg_inside(&x->local[i]) ||
            !be_tcp_seg_inside(&x->remote[i])) {
            return nxl__fail(
                NXL_ERR_INVALID_PARAM,
                "tcp: descriptor %zu lies outside its %s region", i,
                be_tcp_seg_inside(&x->local[i]) ? "remote" : "local");
        }
        total += x->local[i].len;
    }
    if (peer->nconns > 1 && total >= eng->stripe_min && total > 0) {
        target = total / peer->nconns + (total % peer->nconns != 0);
    }
    /* Version 3 names each remote region's key (0 where the metadata had
     * none); the streams of a peer all agreed on peer->proto. */
    stride = peer->proto >= 3 ? BE_TCP_WDESC_KEYED : BE_TCP_WDESC_SIZE;
    be_tcp_plan_walk(x, target, NULL, NULL, stride, NULL, &nparts, &npieces);
    ntxiov = (size_t)nparts * 2 + (x->op == NXL_WRITE ? npieces : 0);
    size = sizeof(*plan) + nparts * sizeof(be_tcp_part_t) +
           npieces * (stride + sizeof(struct iovec)) +
           ntxiov * sizeof(struct iovec);
    plan = calloc(1, size);
    if (plan == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "tcp: prep: out of memory (%zu bytes)",
                         size);
    }
    plan->parts = (be_tcp_part_t *)(plan + 1);
    liov = (struct iovec *)(plan->parts + nparts);
    txiov = liov + npieces;
    wdesc = (uint8_t *)(txiov + ntxiov);
    plan->nparts = nparts;
    be_tcp_plan_walk(x, target, plan, wdesc, stride, liov, &nparts, &npieces);

    for (k = 0; k < nparts; k++) {
        p = &plan->parts[k];
        p->req = req;
        p->index = k;
        p->txiov = txiov + txpos;
        txpos += 2 + (x->op == NXL_WRITE ? p->ndesc : 0);
        memset(&f, 0, sizeof(f));
        f.type = x->op == NXL_READ ? BE_TCP_READ_REQ : BE_TCP_WRITE_REQ;
        f.flags = stride == BE_TCP_WDESC_KEYED ? BE_TCP_F_KEYS : 0;
        f.ndesc = p->ndesc;
        f.data_len = x->op == NXL_WRITE ? p->bytes : 0;
        be_tcp_frame_encode(&f, p->hdr);
        p->txiov[0].iov_base = p->hdr;
        p->txiov[0].iov_len = BE_TCP_HDR_SIZE;
        p->txiov[1].iov_base = p->wdesc;
        p->txiov[1].iov_len = (size_t)p->ndesc * stride;
        if (x->op == NXL_WRITE) {
            for (j = 0; j < p->ndesc; j++) {
                p->txiov[2 + j] = p->liov[j];
            }
        }
        p->tx.kind = BE_TCP_TX_PART;
        p->tx.owner = p;
        p->tx.iov = p->txiov;
        p->tx.iovcnt = 2 + (x->op == NXL_WRITE ? (int)p->ndesc : 0);
        p->tx.nctrl = 2;
        p->state = BE_TCP_P_DONE;
    }
    req->eng = eng;
    req->plan = plan;
    req->peer = peer;
    req->op = x->op;
    snprintf(req->msg, sizeof(req->msg), "tcp: transfer not posted");
    atomic_store(&req->status, NXL_ERR_NOT_POSTED);
    return NXL_OK;
}

/* be_tcp_post queues every part of the transfer (sending at once where a
 * stream is idle) and returns NXL_IN_PROG; the I/O thread completes it. */
nxl_status_t
be_tcp_post(void *self, void *reqp, const nxl_be_xfer_t *x)
{
    be_tcp_engine_t *eng = self;
    be_tcp_req_t *req = reqp;
    be_tcp_plan_t *plan = req->plan;
    be_tcp_peer_t *peer = x->peer_ctx;
    nxl_status_t st = NXL_ERR_REMOTE_DISCONNECT;
    uint32_t i, j, n;
    unsigned base = 0;
    be_tcp_conn_t *c;
    be_tcp_part_t *p;
    uint8_t *nb;
    char why[200];

    if (plan == NULL || peer == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "tcp: transfer not prepared");
    }
    if (atomic_load(&req->status) == NXL_IN_PROG) {
        return nxl__fail(NXL_ERR_REPOST_ACTIVE,
                         "tcp: transfer is still in flight");
    }
    if (atomic_load(&peer->dead) != 0) {
        return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                         "tcp: agent '%s' is disconnected (%s); reload its "
                         "metadata to reconnect",
                         peer->name, peer->why);
    }
    if (x->has_notif) {
        if (x->notif_len > BE_TCP_MAX_NOTIF ||
            (x->notif == NULL && x->notif_len > 0)) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "tcp: notification of %zu bytes (limit %u)",
                             x->notif_len, BE_TCP_MAX_NOTIF);
        }
        if (x->notif_len > plan->notif_cap) {
            nb = realloc(plan->notif, x->notif_len);
            if (nb == NULL) {
                return nxl__fail(NXL_ERR_NOMEM, "tcp: post: out of memory");
            }
            plan->notif = nb;
            plan->notif_cap = x->notif_len;
        }
        if (x->notif_len > 0) {
            memcpy(plan->notif, x->notif, x->notif_len);
        }
    }
    n = plan->nparts;
    req->peer = peer;
    req->notif_len = x->has_notif ? x->notif_len : 0;
    /* A WRITE in one part sends its notification as a NOTIF frame right
     * behind it on the same connection (see be_tcp_conn_push_part); a
     * cancel that catches the WRITE half sent drops it unsent. */
    req->notif_early = x->has_notif && req->op == NXL_WRITE && n == 1;
    req->notif_trailing = x->has_notif && !req->notif_early;
    req->ntx_wait = false;
    req->err = NXL_OK;
    req->msg[0] = '\0';
    req->pending = n;
    req->failing = false;
    req->ntx_queued = false;
    req->ntx_conn = NULL;
    req->deadline_ns =
        eng->request_timeout_ms > 0
            ? nxl__now_ns() + (uint64_t)eng->request_timeout_ms * 1000000u
            : 0;
    atomic_store(&req->posting, true);
    if (atomic_fetch_add(&eng->inflight, 1) == 0 &&
        eng->request_timeout_ms > 0) {
        be_tcp_kick(eng); /* the I/O thread may sleep without a timeout */
    }
    atomic_store(&req->status, NXL_IN_PROG);
    if (peer->nconns > 1) {
        base = atomic_fetch_add(&peer->rr, 1);
    }
    if (req->notif_early) {
        be_tcp_ntx_init(req);
    }
    for (i = 0; i < n; i++) {
        p = &plan->parts[i];
        p->state = BE_TCP_P_IDLE;
        p->conn = NULL;
        c = peer->conns[(base + i) % peer->nconns];
        if (req->notif_early && c != NULL) {
            req->ntx_conn = c;
            req->ntx_queued = true;
        }
        if (c == NULL ||
            !be_tcp_conn_push_part(c, p, req->notif_early ? &req->ntx : NULL)) {
            req->ntx_queued = false;
            st = (c == NULL || atomic_load(&peer->dead) != 0)
                     ? NXL_ERR_REMOTE_DISCONNECT
                     : NXL_ERR_NOMEM;
            break;
        }
    }
    atomic_store(&req->posting, false);
    if (i == n) {
        return NXL_IN_PROG;
    }
    /* Some parts could not be queued: finish them here; the queued ones
     * end through their (dead) connection or their replies. */
    snprintf(why, sizeof(why), "tcp: agent '%s': %s", peer->name,
             st == NXL_ERR_NOMEM ? "out of memory" : "connection lost");
    pthread_mutex_lock(&eng->io_lock);
    for (j = i; j < n; j++) {
        be_tcp_part_done(&plan->parts[j], st, why);
    }
    pthread_mutex_unlock(&eng->io_lock);
    if (i == 0) {
        st = (nxl_status_t)atomic_load(&req->status);
        return nxl__fail(st, "%s", req->msg);
    }
    return NXL_IN_PROG;
}

/* be_tcp_check returns the request's status; a failure sets the detail
 * message the I/O thread recorded. */
nxl_status_t
be_tcp_check(void *self, void *reqp)
{
    be_tcp_req_t *req = reqp;
    int st = atomic_load(&req->status);

    if (st == NXL_IN_PROG) {
        be_tcp_rx_inline(self, req);
        st = atomic_load(&req->status);
    }
    if (st < 0) {
        return nxl__fail((nxl_status_t)st, "%s",
                         req->msg[0] ? req->msg : nxl_strerror(st));
    }
    return (nxl_status_t)st;
}

/* be_tcp_cancel ends an in-flight request with NXL_ERR_CANCELED; when it
 * returns no buffer of the request is touched any more. */
void
be_tcp_cancel(void *self, void *reqp)
{
    be_tcp_engine_t *eng = self;
    be_tcp_req_t *req = reqp;

    if (req->plan == NULL) {
        return;
    }
    atomic_fetch_add(&eng->io_waiters, 1);
    pthread_mutex_lock(&eng->io_lock);
    atomic_fetch_sub(&eng->io_waiters, 1);
    be_tcp_req_fail(req, NXL_ERR_CANCELED, "tcp: transfer canceled");
    pthread_mutex_unlock(&eng->io_lock);
}

/* be_tcp_release frees the plan (canceling first if still in flight). */
void
be_tcp_release(void *self, void *reqp)
{
    be_tcp_req_t *req = reqp;

    if (req->plan == NULL) {
        return;
    }
    if (atomic_load(&req->status) == NXL_IN_PROG) {
        be_tcp_cancel(self, req);
    }
    free(req->plan->notif);
    free(req->plan);
    req->plan = NULL;
}

/* be_tcp_notif_send queues a standalone notification on stream 0. */
nxl_status_t
be_tcp_notif_send(void *self, void *peer_ctx, const void *msg, size_t len)
{
    be_tcp_peer_t *peer = peer_ctx;
    be_tcp_frame_t f = {.type = BE_TCP_NOTIF};
    be_tcp_txi_t *t;
    uint8_t *buf;

    (void)self;
    if (peer == NULL || (msg == NULL && len > 0)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "tcp: notif_send: no peer");
    }
    if (len > BE_TCP_MAX_NOTIF) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "tcp: notification of %zu bytes (limit %u)", len,
                         BE_TCP_MAX_NOTIF);
    }
    if (atomic_load(&peer->dead) != 0) {
        return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                         "tcp: agent '%s' is disconnected (%s); reload its "
                         "metadata to reconnect",
                         peer->name, peer->why);
    }
    t = malloc(sizeof(*t) + sizeof(struct iovec) + BE_TCP_HDR_SIZE + len);
    if (t == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "tcp: notif_send: out of memory");
    }
    memset(t, 0, sizeof(*t));
    t->iov = (struct iovec *)(t + 1);
    buf = (uint8_t *)(t->iov + 1);
    f.aux_len = (uint32_t)len;
    be_tcp_frame_encode(&f, buf);
    if (len > 0) {
        memcpy(buf + BE_TCP_HDR_SIZE, msg, len);
    }
    t->kind = BE_TCP_TX_NOTIF;
    t->iov[0].iov_base = buf;
    t->iov[0].iov_len = BE_TCP_HDR_SIZE + len;
    t->iovcnt = 1;
    t->nctrl = 1;
    if (peer->conns[0] == NULL ||
        !be_tcp_conn_enqueue(peer->conns[0], t, false)) {
        free(t);
        return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                         "tcp: agent '%s' is disconnected", peer->name);
    }
    return NXL_OK;
}
