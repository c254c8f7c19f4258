/*
 * shm_pool.c - the engine's worker threads and split requests.
 *
 * prep cuts a large request into chunks (byte ranges of its CMA or copy
 * lists, with precomputed start cursors). post queues one helper entry per
 * worker and then takes chunks itself from an atomic counter; a worker that
 * pops a helper does the same. Nobody owns a fixed share, so a worker that
 * the scheduler starves (a busy shared machine) costs at most the chunk it
 * holds: the caller does the rest. When the caller runs out of chunks it
 * withdraws the helpers no worker picked up. Each member (caller, helpers)
 * leaves with one atomic decrement; the last one finishes the request (sends
 * its notification, publishes the state) and, when it is a worker, wakes
 * sleepers through the completion eventfd and host->wake.
 */
#include "shm.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

/* be_shm_req_set_error keeps the first failure of req with its message, so
 * that check() on another thread can report it. */
static void
be_shm_req_set_error(be_shm_req_t *req, nxl_status_t st)
{
    int expect = NXL_OK;

    if (atomic_compare_exchange_strong(&req->status, &expect, (int)st)) {
        snprintf(req->errmsg, sizeof(req->errmsg), "%s", nxl_last_error());
    }
}

/* be_shm_chunk_run moves the bytes of one chunk. */
static nxl_status_t
be_shm_chunk_run(be_shm_req_t *req, const be_shm_chunk_t *c)
{
    be_shm_peer_t *peer = req->peer;
    int use_nt;

    if (!c->copy) {
        return be_shm_cma_range(peer->pid, req->op == NXL_WRITE, req->cl,
                                req->ncl, req->cr, req->ncr, c->at, c->bytes,
                                peer, &req->cancel);
    }
    use_nt = req->copy_bytes >= req->eng->nt_threshold;
    if (req->op == NXL_READ) {
        return be_shm_copy_range(req->ml, req->mr, req->nm, c->at, c->bytes,
                                 use_nt, &req->cancel);
    }
    return be_shm_copy_range(req->mr, req->ml, req->nm, c->at, c->bytes, use_nt,
                             &req->cancel);
}

/* be_shm_take_chunks runs chunks of req until none are left, the request
 * failed or it was canceled. */
static void
be_shm_take_chunks(be_shm_req_t *req)
{
    nxl_status_t st;
    unsigned k;

    for (;;) {
        if (atomic_load_explicit(&req->status, memory_order_relaxed) !=
                NXL_OK ||
            atomic_load_explicit(&req->cancel, memory_order_relaxed)) {
            return;
        }
        k = atomic_fetch_add_explicit(&req->next_chunk, 1,
                                      memory_order_relaxed);
        if (k >= req->nchunks) {
            return;
        }
        st = be_shm_chunk_run(req, &req->chunks[k]);
        if (st != NXL_OK) {
            be_shm_req_set_error(req, st);
        }
    }
}

/* be_shm_req_finish completes req once all its data moved or failed. For
 * mapped copies the peer's liveness is checked once more, because a copy
 * into a dead peer's memfd succeeds without telling anyone. A failure that
 * came in (st < 0) already has its message in req->errmsg, written by the
 * thread that saw it; this thread's nxl_last_error() is unrelated. */
nxl_status_t
be_shm_req_finish(be_shm_req_t *req, nxl_status_t st)
{
    const nxl_be_xfer_t *xfer = req->xfer;
    be_shm_peer_t *peer = req->peer;
    nxl_status_t in = st;
    int state;

    if (st == NXL_OK && atomic_load(&req->cancel)) {
        st = nxl__fail(NXL_ERR_CANCELED, "shm: transfer canceled");
    }
    if (st == NXL_OK && req->copy_bytes > 0 && !peer->self &&
        !be_shm_peer_alive(peer, 1)) {
        st = nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                       "shm: peer %s (pid %d) is gone", peer->name,
                       (int)peer->pid);
    }
    if (st == NXL_OK && xfer->has_notif) {
        st = nxl__ls_tx_send(peer->tx, xfer->notif, xfer->notif_len, NULL);
    }
    if (st == NXL_OK) {
        state = BE_SHM_REQ_DONE;
    } else {
        state = BE_SHM_REQ_ERROR;
        if (in == NXL_OK) {
            snprintf(req->errmsg, sizeof(req->errmsg), "%s", nxl_last_error());
        }
    }
    atomic_store_explicit(&req->status, (int)st, memory_order_relaxed);
    atomic_store_explicit(&req->state, state, memory_order_release);
    return st;
}

/* be_shm_rate_note: see shm.h. The average moves 1/8 towards each
 * sample. */
void
be_shm_rate_note(atomic_uint_fast64_t *avg, uint64_t bytes, uint64_t ns)
{
    uint64_t sample, old;

    if (ns == 0) {
        return;
    }
    sample = (bytes * 1000u) / ns; /* bytes per microsecond */
    sample = NXL__MAX(sample, 1u);
    old = atomic_load_explicit(avg, memory_order_relaxed);
    if (old != 0) {
        sample = (old * 7 + sample) / 8;
    }
    atomic_store_explicit(avg, sample, memory_order_relaxed);
}

/* be_shm_split_wanted: see shm.h. Splitting pays off on an idle machine
 * (two threads moved 1.5x the bytes of one on the 2-core development box)
 * but costs up to half when the worker is descheduled, because the request
 * completes only when the worker's chunk does; so measure and choose. */
int
be_shm_split_wanted(be_shm_engine_t *eng, const be_shm_req_t *req)
{
    unsigned c = req->rate_class, seq;
    uint64_t s, p;
    int prefer;

    if (eng->split_always) {
        return 1;
    }
    s = atomic_load_explicit(&eng->rate_sync[c], memory_order_relaxed);
    p = atomic_load_explicit(&eng->rate_split[c], memory_order_relaxed);
    if (s == 0 || p == 0) {
        return s != 0; /* learn both: sync first, then split */
    }
    prefer = p * 10 > s * 11; /* split must win by 10% */
    seq = atomic_fetch_add_explicit(&eng->split_seq, 1, memory_order_relaxed);
    return (seq % 16 == 15) ? !prefer : prefer;
}

/* be_shm_req_leave takes n members off req; the last one finishes it and
 * records the throughput of the split. Returns 1 then (req may be released
 * by its owner right after). */
static int
be_shm_req_leave(be_shm_req_t *req, unsigned n)
{
    be_shm_peer_t *peer = req->peer;
    be_shm_engine_t *eng = req->eng;

    if (n == 0 || atomic_fetch_sub_explicit(&req->members, n,
                                            memory_order_acq_rel) != n) {
        return 0;
    }
    if (atomic_load(&req->status) == NXL_OK && !atomic_load(&req->cancel)) {
        be_shm_rate_note(&eng->rate_split[req->rate_class],
                         req->cma_bytes + req->copy_bytes,
                         nxl__now_ns() - req->t_post);
    }
    be_shm_req_finish(req, (nxl_status_t)atomic_load(&req->status));
    atomic_fetch_sub(&peer->inflight, 1);
    return 1;
}

/* be_shm_pool_unqueue removes req's helpers that no worker popped yet and
 * returns how many. */
static unsigned
be_shm_pool_unqueue(be_shm_engine_t *eng, be_shm_req_t *req)
{
    be_shm_pool_t *pool = &eng->pool;
    be_shm_helper_t **pp, *prev = NULL;
    unsigned n = 0;

    pthread_mutex_lock(&pool->lock);
    pp = &pool->head;
    while (*pp != NULL) {
        if ((*pp)->req == req) {
            (*pp)->queued = 0;
            *pp = (*pp)->next;
            n++;
        } else {
            prev = *pp;
            pp = &(*pp)->next;
        }
    }
    pool->tail = prev;
    pthread_mutex_unlock(&pool->lock);
    return n;
}

/* be_shm_pool_push appends req's helpers to the queue and wakes as many
 * workers. */
static void
be_shm_pool_push(be_shm_engine_t *eng, be_shm_req_t *req)
{
    be_shm_pool_t *pool = &eng->pool;
    be_shm_helper_t *h = req->helpers;
    unsigned i, n = req->nhelpers;

    for (i = 0; i < n; i++) {
        h[i].req = req;
        h[i].queued = 1;
        h[i].next = (i + 1 < n) ? &h[i + 1] : NULL;
    }
    pthread_mutex_lock(&pool->lock);
    if (pool->tail != NULL) {
        pool->tail->next = &h[0];
    } else {
        pool->head = &h[0];
    }
    pool->tail = &h[n - 1];
    if (n == 1) {
        pthread_cond_signal(&pool->cond);
    } else {
        pthread_cond_broadcast(&pool->cond);
    }
    pthread_mutex_unlock(&pool->lock);
}

/* be_shm_split_post: see shm.h. */
nxl_status_t
be_shm_split_post(be_shm_req_t *req)
{
    nxl_status_t st;
    unsigned n;

    req->t_post = nxl__now_ns();
    atomic_store_explicit(&req->next_chunk, 0, memory_order_relaxed);
    atomic_store_explicit(&req->members, req->nhelpers + 1,
                          memory_order_relaxed);
    atomic_fetch_add(&req->peer->inflight, 1);
    atomic_store_explicit(&req->state, BE_SHM_REQ_RUNNING,
                          memory_order_release);
    if (req->nhelpers > 0) {
        be_shm_pool_push(req->eng, req);
    }
    be_shm_take_chunks(req);
    n = 1 + (req->nhelpers > 0 ? be_shm_pool_unqueue(req->eng, req) : 0);
    if (!be_shm_req_leave(req, n)) {
        return NXL_IN_PROG;
    }
    st = (nxl_status_t)atomic_load(&req->status);
    if (st < 0) {
        return nxl__fail(st, "%s", req->errmsg);
    }
    return st;
}

/* be_shm_split_cancel: see shm.h. */
void
be_shm_split_cancel(be_shm_req_t *req)
{
    if (req->nhelpers > 0 && atomic_load(&req->state) == BE_SHM_REQ_RUNNING) {
        be_shm_req_leave(req, be_shm_pool_unqueue(req->eng, req));
    }
}

/* be_shm_worker is one pool thread: pop a helper entry, take chunks of its
 * request, leave it (finishing it when last). */
static void *
be_shm_worker(void *arg)
{
    be_shm_engine_t *eng = arg;
    be_shm_pool_t *pool = &eng->pool;
    be_shm_helper_t *h;
    be_shm_req_t *req;

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (pool->head == NULL && !pool->stop) {
            pthread_cond_wait(&pool->cond, &pool->lock);
        }
        if (pool->head == NULL) {
            break;
        }
        h = pool->head;
        pool->head = h->next;
        if (pool->head == NULL) {
            pool->tail = NULL;
        }
        h->queued = 0;
        req = h->req;
        pthread_mutex_unlock(&pool->lock);

        be_shm_take_chunks(req);
        if (be_shm_req_leave(req, 1)) {
            be_shm_signal_done(eng);
        }
        pthread_mutex_lock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* be_shm_pool_start starts n worker threads with every signal blocked, so
 * that the application's handlers run on its own threads. */
nxl_status_t
be_shm_pool_start(be_shm_engine_t *eng, unsigned n)
{
    be_shm_pool_t *pool = &eng->pool;
    sigset_t all, old;
    nxl_status_t status = NXL_OK;
    int rc;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    while (pool->nthreads < n) {
        rc = pthread_create(&pool->threads[pool->nthreads], NULL, be_shm_worker,
                            eng);
        if (rc != 0) {
            status = nxl__fail_errno(rc, "shm: pthread_create");
            break;
        }
        pool->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return status;
}

/* be_shm_pool_stop asks the workers to exit once the queue is empty and
 * joins them. */
void
be_shm_pool_stop(be_shm_engine_t *eng)
{
    be_shm_pool_t *pool = &eng->pool;
    unsigned i;

    pthread_mutex_lock(&pool->lock);
    pool->stop = 1;
    pthread_cond_broadcast(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    for (i = 0; i < pool->nthreads; i++) {
        pthread_join(pool->threads[i], NULL);
    }
    pool->nthreads = 0;
}
