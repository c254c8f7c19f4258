/*
 * posix_uring.c - the io_uring engine of the POSIX backend (liburing).
 *
 * One ring of queue_depth entries per engine (the completion queue is
 * twice that, so operations in flight plus their cancellations always
 * fit). Each operation in flight owns one be_posix_op_t of a fixed pool,
 * whose address is the SQE's user_data; cancellation SQEs carry 0. The
 * eventfd is registered with the ring, so it becomes readable when a
 * completion is posted; whoever calls post, check or progress reaps.
 *
 * The ring's file table (sparse, BE_POSIX_FIXED_SLOTS) receives every
 * registered fd and its buffer table every registered DRAM region of at
 * most 1 GiB, when the kernel accepts them (buffers count against
 * RLIMIT_MEMLOCK without CAP_IPC_LOCK). Operations on them use
 * IOSQE_FIXED_FILE and READ_FIXED/WRITE_FIXED; the rest use plain fds and
 * addresses.
 */
#include "posix.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define BE_POSIX_CANCEL_WARN_NS (5ull * 1000000000ull)

/* be_posix_uring_init sets the ring up; fini undoes a partial init. */
nxl_status_t
be_posix_uring_init(be_posix_engine_t *eng)
{
    nxl_status_t st;
    unsigned i;
    int ret;

    ret = io_uring_queue_init(eng->queue_depth, &eng->ring, 0);
    if (ret < 0) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "posix: io_uring unavailable: io_uring_queue_init(%u)"
                         ": %s",
                         eng->queue_depth, strerror(-ret));
    }
    eng->ring_ready = true;
    ret = io_uring_register_eventfd(&eng->ring, eng->efd);
    if (ret < 0) {
        st = nxl__fail(NXL_ERR_NOT_SUPPORTED,
                       "posix: io_uring unavailable: "
                       "io_uring_register_eventfd: %s",
                       strerror(-ret));
        goto err_exit;
    }
    eng->ops = calloc(eng->queue_depth, sizeof(*eng->ops));
    if (eng->ops == NULL) {
        st = nxl__fail(NXL_ERR_NOMEM, "posix: out of memory");
        goto err_exit;
    }
    for (i = eng->queue_depth; i-- > 0;) {
        eng->ops[i].next_free = eng->free_ops;
        eng->free_ops = &eng->ops[i];
    }
    if (eng->fixed_files) {
        ret = io_uring_register_files_sparse(&eng->ring, BE_POSIX_FIXED_SLOTS);
        if (ret == 0) {
            eng->file_slots = calloc(BE_POSIX_FIXED_SLOTS, 1);
        } else {
            nxl__debug("posix: no io_uring file table: %s", strerror(-ret));
        }
    }
    if (eng->fixed_buffers) {
        ret =
            io_uring_register_buffers_sparse(&eng->ring, BE_POSIX_FIXED_SLOTS);
        if (ret == 0) {
            eng->buf_slots = calloc(BE_POSIX_FIXED_SLOTS, 1);
        } else {
            nxl__debug("posix: no io_uring buffer table: %s", strerror(-ret));
        }
    }
    return NXL_OK;

err_exit:
    be_posix_uring_fini(eng);
    return st;
}

/* be_posix_uring_fini tears the ring down (tables go with it). */
void
be_posix_uring_fini(be_posix_engine_t *eng)
{
    if (!eng->ring_ready) {
        return;
    }
    io_uring_queue_exit(&eng->ring);
    eng->ring_ready = false;
    free(eng->ops);
    eng->ops = NULL;
    eng->free_ops = NULL;
    free(eng->file_slots);
    eng->file_slots = NULL;
    free(eng->buf_slots);
    eng->buf_slots = NULL;
}

/* be_posix_free_slot returns an unused slot of table, or -1. */
static int
be_posix_free_slot(const uint8_t *table)
{
    unsigned i;

    for (i = 0; table != NULL && i < BE_POSIX_FIXED_SLOTS; i++) {
        if (table[i] == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* be_posix_uring_add_file enters f's iofd in a free file slot. */
void
be_posix_uring_add_file(be_posix_engine_t *eng, be_posix_file_t *f)
{
    int slot = be_posix_free_slot(eng->file_slots);
    int fd = f->iofd, ret;

    if (slot < 0) {
        return;
    }
    ret = io_uring_register_files_update(&eng->ring, (unsigned)slot, &fd, 1);
    if (ret != 1) {
        nxl__debug("posix: fd %d not in the ring's file table: %s", f->fd,
                   strerror(ret < 0 ? -ret : EIO));
        return;
    }
    eng->file_slots[slot] = 1;
    f->fixed = slot;
}

/* be_posix_uring_del_file empties f's file slot. */
void
be_posix_uring_del_file(be_posix_engine_t *eng, be_posix_file_t *f)
{
    int fd = -1;

    (void)io_uring_register_files_update(&eng->ring, (unsigned)f->fixed, &fd,
                                         1);
    eng->file_slots[f->fixed] = 0;
    f->fixed = -1;
}

/* be_posix_uring_add_buf registers r (<= 1 GiB) in a free buffer slot;
 * the kernel pins its pages until be_posix_uring_del_buf. */
void
be_posix_uring_add_buf(be_posix_engine_t *eng, be_posix_region_t *r)
{
    struct iovec iov;
    int slot, ret;

    if (r->len > BE_POSIX_FIXED_BUF_MAX) {
        return;
    }
    slot = be_posix_free_slot(eng->buf_slots);
    if (slot < 0) {
        return;
    }
    iov.iov_base = (void *)(uintptr_t)r->addr;
    iov.iov_len = (size_t)r->len;
    ret = io_uring_register_buffers_update_tag(&eng->ring, (unsigned)slot, &iov,
                                               NULL, 1);
    if (ret != 1) {
        nxl__debug("posix: region 0x%llx+%llu not in the ring's buffer "
                   "table: %s",
                   (unsigned long long)r->addr, (unsigned long long)r->len,
                   strerror(ret < 0 ? -ret : EIO));
        return;
    }
    eng->buf_slots[slot] = 1;
    r->buf_index = slot;
}

/* be_posix_uring_del_buf empties r's buffer slot (unpins). */
void
be_posix_uring_del_buf(be_posix_engine_t *eng, be_posix_region_t *r)
{
    struct iovec iov = {.iov_base = NULL, .iov_len = 0};

    (void)io_uring_register_buffers_update_tag(
        &eng->ring, (unsigned)r->buf_index, &iov, NULL, 1);
    eng->buf_slots[r->buf_index] = 0;
    r->buf_index = -1;
}

/* be_posix_uring_submit hands the prepared SQEs to the kernel. EAGAIN and
 * EBUSY leave them queued for the next call. */
static void
be_posix_uring_submit(be_posix_engine_t *eng)
{
    int ret;

    if (io_uring_sq_ready(&eng->ring) == 0) {
        return;
    }
    do {
        ret = io_uring_submit(&eng->ring);
    } while (ret == -EINTR);
    if (ret < 0 && ret != -EAGAIN && ret != -EBUSY && !eng->submit_warned) {
        eng->submit_warned = true;
        nxl__warn("posix: io_uring_submit: %s", strerror(-ret));
    }
}

/* be_posix_uring_op_done ends op and returns it to the pool. */
static void
be_posix_uring_op_done(be_posix_engine_t *eng, be_posix_op_t *op,
                       nxl_status_t status, const char *msg)
{
    be_posix_op_finish(eng, op, status, msg);
    op->busy = false;
    op->req = NULL;
    op->next_free = eng->free_ops;
    eng->free_ops = op;
}

/* be_posix_uring_issue prepares the SQE for (the rest of) op. */
static void
be_posix_uring_issue(be_posix_engine_t *eng, be_posix_op_t *op)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&eng->ring);
    unsigned len = (unsigned)op->len; /* <= chunk_size <= 1 GiB */
    int fd;

    if (sqe == NULL) {
        be_posix_uring_submit(eng);
        sqe = io_uring_get_sqe(&eng->ring);
    }
    if (sqe == NULL) {
        /* Cannot happen: operations in flight never exceed the entries. */
        be_posix_uring_op_done(eng, op, NXL_ERR_BACKEND,
                               "posix: io_uring submission queue full");
        return;
    }
    fd = (op->file->fixed >= 0) ? op->file->fixed : op->file->iofd;
    if (op->req->to_file) {
        if (op->buf_index >= 0) {
            io_uring_prep_write_fixed(sqe, fd, op->buf, len, op->off,
                                      op->buf_index);
        } else {
            io_uring_prep_write(sqe, fd, op->buf, len, op->off);
        }
    } else {
        if (op->buf_index >= 0) {
            io_uring_prep_read_fixed(sqe, fd, op->buf, len, op->off,
                                     op->buf_index);
        } else {
            io_uring_prep_read(sqe, fd, op->buf, len, op->off);
        }
    }
    if (op->file->fixed >= 0) {
        sqe->flags |= IOSQE_FIXED_FILE;
    }
    io_uring_sqe_set_data(sqe, op);
    op->busy = true;
    /* Submit in small batches: the kernel spends microseconds on each
     * O_DIRECT operation before the device sees the batch, so a large batch
     * leaves the device idle meanwhile (4 KiB random reads at depth 32 on a
     * virtio disk: 170k IOPS in batches of 32, 205k in batches of 4). */
    if (io_uring_sq_ready(&eng->ring) >= eng->submit_batch) {
        be_posix_uring_submit(eng);
    }
}

/* be_posix_uring_complete handles one completion of op with result res:
 * done, reissued for the rest, retried, or failed. */
static void
be_posix_uring_complete(be_posix_engine_t *eng, be_posix_op_t *op, int res)
{
    char msg[BE_POSIX_ERR_MAX];
    nxl_status_t st;
    int r;

    if (op == NULL) {
        return; /* a cancellation's own completion */
    }
    if (op->req->canceling || op->req->status != NXL_OK) {
        be_posix_uring_op_done(eng, op, NXL_OK, NULL);
        return;
    }
    if (res < 0) {
        if ((res == -EAGAIN || res == -EINTR || res == -ECANCELED) &&
            op->retries < BE_POSIX_MAX_RETRIES) {
            /* ECANCELED without a cancel: the issuing thread exited. */
            op->retries++;
            be_posix_uring_issue(eng, op);
            return;
        }
        st = be_posix_io_error(op, -res, msg, sizeof(msg));
        be_posix_uring_op_done(eng, op, st, msg);
        return;
    }
    r = be_posix_advance(op, (uint64_t)res, msg, sizeof(msg));
    if (r == 0) {
        be_posix_uring_issue(eng, op);
        return;
    }
    be_posix_uring_op_done(eng, op, r == 1 ? NXL_OK : (nxl_status_t)r, msg);
}

/* be_posix_uring_fill issues queued parts while operations are free. */
static unsigned
be_posix_uring_fill(be_posix_engine_t *eng)
{
    be_posix_op_t *op;
    unsigned n = 0;

    while (eng->free_ops != NULL && eng->q_head != NULL) {
        op = eng->free_ops;
        eng->free_ops = op->next_free;
        be_posix_take_op(eng, op);
        be_posix_uring_issue(eng, op);
        n++;
    }
    return n;
}

/* be_posix_uring_reap handles the completions in the queue one by one,
 * issuing new work as operations free up, so the device is refilled while
 * the rest of the batch is handled (see be_posix_uring_issue). With
 * refill, queued parts are issued too. */
static unsigned
be_posix_uring_reap(be_posix_engine_t *eng, bool refill)
{
    struct io_uring_cqe *cqe;
    unsigned n = 0;

    while (io_uring_peek_cqe(&eng->ring, &cqe) == 0) {
        be_posix_uring_complete(eng, io_uring_cqe_get_data(cqe), cqe->res);
        io_uring_cqe_seen(&eng->ring, cqe);
        n++;
        if (refill) {
            be_posix_uring_fill(eng);
        }
    }
    return n;
}

/* be_posix_uring_pump: reap, refill, submit (posix.h). */
unsigned
be_posix_uring_pump(be_posix_engine_t *eng)
{
    unsigned total = 0, reaped, issued, round;

    /* Submission can complete work inline (page-cache hits), so reap again
     * after each submit; a few rounds bound the time spent here. */
    for (round = 0; round < 4; round++) {
        reaped = be_posix_uring_reap(eng, true);
        issued = be_posix_uring_fill(eng);
        be_posix_uring_submit(eng);
        total += reaped;
        if (reaped == 0 && issued == 0) {
            break;
        }
    }
    return total;
}

/* be_posix_uring_cancel cancels and drains req (posix.h). */
void
be_posix_uring_cancel(be_posix_engine_t *eng, be_posix_req_t *req)
{
    struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 100000000};
    struct io_uring_cqe *cqe;
    struct io_uring_sqe *sqe;
    uint64_t start = nxl__now_ns();
    bool warned = false;
    unsigned i;

    /* Ask the kernel to drop what has not started (buffered I/O waiting in
     * io-wq); block-device I/O in progress just completes. */
    for (i = 0; i < eng->queue_depth; i++) {
        if (!eng->ops[i].busy || eng->ops[i].req != req) {
            continue;
        }
        sqe = io_uring_get_sqe(&eng->ring);
        if (sqe == NULL) {
            be_posix_uring_submit(eng);
            sqe = io_uring_get_sqe(&eng->ring);
        }
        if (sqe == NULL) {
            break;
        }
        io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)&eng->ops[i], 0);
        io_uring_sqe_set_data(sqe, NULL);
    }
    be_posix_uring_submit(eng);
    while (req->inflight > 0) {
        (void)io_uring_wait_cqe_timeout(&eng->ring, &cqe, &ts);
        be_posix_uring_reap(eng, false);
        be_posix_uring_submit(eng);
        if (!warned && nxl__now_ns() - start > BE_POSIX_CANCEL_WARN_NS) {
            warned = true;
            nxl__warn("posix: still waiting for %u operations of a canceled "
                      "transfer",
                      req->inflight);
        }
    }
}
