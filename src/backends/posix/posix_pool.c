/*
 * posix_pool.c - the thread-pool engine of the POSIX backend: num_threads
 * workers take operations from the engine's queue and run pread/pwrite
 * (retrying EINTR, continuing short transfers) outside the lock. The
 * worker that finishes a request writes the eventfd. Used when io_uring is
 * unavailable (no liburing, a seccomp filter, io_uring_disabled) or when
 * api=threads.
 */
#include "posix.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BE_POSIX_CANCEL_WARN_S 5

/* be_posix_pool_run moves the whole of op. Returns NXL_OK or an error with
 * its message in msg. */
static nxl_status_t
be_posix_pool_run(be_posix_op_t *op, char *msg, size_t cap)
{
    ssize_t n;
    int r;

    for (;;) {
        if (op->req->to_file) {
            n = pwrite(op->file->iofd, op->buf, (size_t)op->len,
                       (off_t)op->off);
        } else {
            n = pread(op->file->iofd, op->buf, (size_t)op->len, (off_t)op->off);
        }
        if (n < 0) {
            if ((errno == EINTR || errno == EAGAIN) &&
                op->retries < BE_POSIX_MAX_RETRIES) {
                op->retries++;
                continue;
            }
            return be_posix_io_error(op, errno, msg, cap);
        }
        r = be_posix_advance(op, (uint64_t)n, msg, cap);
        if (r == 1) {
            return NXL_OK;
        }
        if (r < 0) {
            return (nxl_status_t)r;
        }
    }
}

/* be_posix_worker is one pool thread: take, run, finish, until stop. */
static void *
be_posix_worker(void *arg)
{
    be_posix_engine_t *eng = arg;
    char msg[BE_POSIX_ERR_MAX];
    be_posix_op_t op;
    nxl_status_t st;
    bool done;

    memset(&op, 0, sizeof(op));
    op.buf_index = -1;
    pthread_mutex_lock(&eng->lock);
    for (;;) {
        while (!eng->stop && eng->q_head == NULL) {
            pthread_cond_wait(&eng->work_cv, &eng->lock);
        }
        if (eng->stop) {
            break;
        }
        be_posix_take_op(eng, &op);
        pthread_mutex_unlock(&eng->lock);

        msg[0] = '\0';
        st = be_posix_pool_run(&op, msg, sizeof(msg));

        pthread_mutex_lock(&eng->lock);
        done = be_posix_op_finish(eng, &op, st, msg);
        if (done) {
            /* Wake cancel (it waits under this lock) and sleepers. */
            pthread_cond_broadcast(&eng->done_cv);
            be_posix_signal(eng);
        }
    }
    pthread_mutex_unlock(&eng->lock);
    return NULL;
}

/* be_posix_pool_start starts the workers with all signals blocked. */
nxl_status_t
be_posix_pool_start(be_posix_engine_t *eng)
{
    sigset_t all, old;
    unsigned i;
    int err = 0;

    eng->threads = calloc(eng->num_threads, sizeof(*eng->threads));
    if (eng->threads == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "posix: out of memory");
    }
    /* Workers take no signals: the application's handlers run on its own
     * threads. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (i = 0; i < eng->num_threads; i++) {
        err = pthread_create(&eng->threads[i], NULL, be_posix_worker, eng);
        if (err != 0) {
            break;
        }
        pthread_setname_np(eng->threads[i], "nxl-posix");
        eng->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        return nxl__fail_errno(err, "posix: starting worker %u of %u", i,
                               eng->num_threads);
    }
    return NXL_OK;
}

/* be_posix_pool_stop tells the workers to stop and joins them. */
void
be_posix_pool_stop(be_posix_engine_t *eng)
{
    unsigned i;

    pthread_mutex_lock(&eng->lock);
    eng->stop = true;
    pthread_cond_broadcast(&eng->work_cv);
    pthread_mutex_unlock(&eng->lock);
    for (i = 0; i < eng->nthreads; i++) {
        pthread_join(eng->threads[i], NULL);
    }
    free(eng->threads);
    eng->threads = NULL;
    eng->nthreads = 0;
}

/* be_posix_pool_cancel waits for req's operations (lock held). */
void
be_posix_pool_cancel(be_posix_engine_t *eng, be_posix_req_t *req)
{
    struct timespec deadline;
    unsigned waited = 0;

    /* req is off the queue, so workers only finish what they hold. */
    while (req->inflight > 0) {
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 1;
        if (pthread_cond_timedwait(&eng->done_cv, &eng->lock, &deadline) ==
                ETIMEDOUT &&
            ++waited == BE_POSIX_CANCEL_WARN_S) {
            nxl__warn("posix: still waiting for %u operations of a canceled "
                      "transfer",
                      req->inflight);
        }
    }
}
