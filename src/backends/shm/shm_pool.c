/*
 * shm_pool.c - the engine's worker threads and the completion of split
 * requests.
 *
 * A split request has nparts parts; post queues parts 1..n-1 and runs part
 * 0 on the calling thread. Every part accounts for itself with one atomic
 * decrement; the thread that takes parts_left to zero finishes the request
 * (sends its notification, publishes the state) and, when it is a worker,
 * wakes sleepers through the completion eventfd and host->wake.
 */
#include "backends/shm/shm.h"

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

/* be_shm_part_run moves the bytes of one part; returns 1 when it was the
 * last part of its request (the caller then finishes the request). */
int
be_shm_part_run(be_shm_part_t *part)
{
    be_shm_req_t *req = part->req;
    be_shm_peer_t *peer = req->peer;
    nxl_status_t st = NXL_OK;
    int use_nt;

    if (atomic_load_explicit(&req->cancel, memory_order_relaxed)) {
        st = nxl__fail(NXL_ERR_CANCELED, "shm: transfer canceled");
    }
    if (st == NXL_OK && part->cma_bytes > 0) {
        st = be_shm_cma_range(peer->pid, req->op == NXL_WRITE, req->cl,
                              req->ncl, req->cr, req->ncr, part->cma_at,
                              part->cma_bytes, peer, &req->cancel);
    }
    if (st == NXL_OK && part->copy_bytes > 0) {
        use_nt = req->copy_bytes >= req->eng->nt_threshold;
        if (req->op == NXL_READ) {
            st = be_shm_copy_range(req->ml, req->mr, req->nm, part->copy_at,
                                   part->copy_bytes, use_nt, &req->cancel);
        } else {
            st = be_shm_copy_range(req->mr, req->ml, req->nm, part->copy_at,
                                   part->copy_bytes, use_nt, &req->cancel);
        }
    }
    if (st != NXL_OK) {
        be_shm_req_set_error(req, st);
    }
    return atomic_fetch_sub_explicit(&req->parts_left, 1,
                                     memory_order_acq_rel) == 1;
}

/* be_shm_req_finish completes req once all its data moved or failed. For
 * mapped copies the peer's liveness is checked once more, because a copy
 * into a dead peer's memfd succeeds without telling anyone. */
nxl_status_t
be_shm_req_finish(be_shm_req_t *req, nxl_status_t st)
{
    const nxl_be_xfer_t *xfer = req->xfer;
    be_shm_peer_t *peer = req->peer;
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
        st = be_shm_tx_send(peer, xfer->notif, xfer->notif_len,
                            &req->notif_seq);
        if (st == NXL_OK) {
            st = be_shm_tx_done(peer, req->notif_seq);
        }
    }
    if (st == NXL_OK) {
        state = BE_SHM_REQ_DONE;
    } else if (st == NXL_IN_PROG) {
        state = BE_SHM_REQ_NOTIF;
    } else {
        state = BE_SHM_REQ_ERROR;
        snprintf(req->errmsg, sizeof(req->errmsg), "%s", nxl_last_error());
    }
    atomic_store_explicit(&req->status, (int)st, memory_order_relaxed);
    atomic_store_explicit(&req->state, state, memory_order_release);
    return st;
}

/* be_shm_worker is one pool thread: pop a part, run it, finish the request
 * when it was the last part. */
static void *
be_shm_worker(void *arg)
{
    be_shm_engine_t *eng = arg;
    be_shm_pool_t *pool = &eng->pool;
    be_shm_part_t *part;
    be_shm_req_t *req;
    be_shm_peer_t *peer;

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (pool->head == NULL && !pool->stop) {
            pthread_cond_wait(&pool->cond, &pool->lock);
        }
        if (pool->head == NULL) {
            break;
        }
        part = pool->head;
        pool->head = part->next;
        if (pool->head == NULL) {
            pool->tail = NULL;
        }
        pthread_mutex_unlock(&pool->lock);

        req = part->req;
        if (be_shm_part_run(part)) {
            /* req may be released as soon as its state is published:
             * keep what is needed afterwards in locals. */
            peer = req->peer;
            be_shm_req_finish(req, (nxl_status_t)atomic_load(&req->status));
            atomic_fetch_sub(&peer->inflight, 1);
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
        rc = pthread_create(&pool->threads[pool->nthreads], NULL,
                            be_shm_worker, eng);
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

/* be_shm_pool_push appends n consecutive parts to the queue and wakes as
 * many workers. */
void
be_shm_pool_push(be_shm_engine_t *eng, be_shm_part_t *first, unsigned n)
{
    be_shm_pool_t *pool = &eng->pool;
    unsigned i;

    if (n == 0) {
        return;
    }
    for (i = 0; i + 1 < n; i++) {
        first[i].next = &first[i + 1];
    }
    first[n - 1].next = NULL;
    pthread_mutex_lock(&pool->lock);
    if (pool->tail != NULL) {
        pool->tail->next = first;
    } else {
        pool->head = first;
    }
    pool->tail = &first[n - 1];
    if (n == 1) {
        pthread_cond_signal(&pool->cond);
    } else {
        pthread_cond_broadcast(&pool->cond);
    }
    pthread_mutex_unlock(&pool->lock);
}
