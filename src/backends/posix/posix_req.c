/*
 * posix_req.c - requests of the POSIX backend: prep, post, check, cancel
 * and release, the queue of requests with parts left, and the op
 * bookkeeping the io_uring and thread-pool engines share (take_op,
 * advance, io_error, op_finish).
 *
 * Every post checks again that each fd of the transfer still names the
 * registered file (a closed fd is NXL_ERR_IO, another file behind the same
 * number NXL_ERR_MISMATCH) and whether it is O_DIRECT now; with O_DIRECT,
 * every file offset and length must be a multiple of the file's offset
 * alignment and every buffer address a multiple of its memory alignment,
 * or the post fails with NXL_ERR_INVALID_PARAM naming the descriptor and
 * what is misaligned. prep makes the same checks so a bad transfer fails
 * when it is made.
 */
#include "posix.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* --- the request queue (lock held) ---------------------------------------- */

/* be_posix_enqueue appends req to the queue of requests with parts left. */
static void
be_posix_enqueue(be_posix_engine_t *eng, be_posix_req_t *req)
{
    req->next = NULL;
    req->prev = eng->q_tail;
    if (eng->q_tail != NULL) {
        eng->q_tail->next = req;
    } else {
        eng->q_head = req;
    }
    eng->q_tail = req;
    req->queued = true;
}

/* be_posix_dequeue removes req from the queue. */
static void
be_posix_dequeue(be_posix_engine_t *eng, be_posix_req_t *req)
{
    if (req->prev != NULL) {
        req->prev->next = req->next;
    } else {
        eng->q_head = req->next;
    }
    if (req->next != NULL) {
        req->next->prev = req->prev;
    } else {
        eng->q_tail = req->prev;
    }
    req->prev = req->next = NULL;
    req->queued = false;
}

/* be_posix_take_op cuts the next part off the head request (posix.h). */
void
be_posix_take_op(be_posix_engine_t *eng, be_posix_op_t *op)
{
    be_posix_req_t *req = eng->q_head;
    const nxl_be_seg_t *ms = &req->mem[req->cur_desc];
    const nxl_be_seg_t *fs = &req->file[req->cur_desc];
    const be_posix_region_t *mr = ms->md, *fr = fs->md;
    uint64_t len = NXL__MIN(eng->chunk, ms->len - req->cur_off);

    op->req = req;
    op->file = fr->file;
    op->buf = (uint8_t *)(uintptr_t)(ms->addr + req->cur_off);
    op->off = fs->addr + req->cur_off;
    op->len = len;
    op->desc = req->cur_desc;
    op->buf_index = mr->buf_index;
    op->direct = fr->file->direct;
    op->retries = 0;
    req->inflight++;
    req->cur_off += len;
    if (req->cur_off == ms->len) {
        req->cur_desc++;
        req->cur_off = 0;
    }
    if (req->cur_desc == req->count) {
        be_posix_dequeue(eng, req);
    } else if (req->next != NULL) {
        /* Round robin: the other requests get the next slots. */
        be_posix_dequeue(eng, req);
        be_posix_enqueue(eng, req);
    }
}

/* be_posix_advance accounts a partial or full result (posix.h). */
int
be_posix_advance(be_posix_op_t *op, uint64_t res, char *msg, size_t cap)
{
    const char *what = op->req->to_file ? "write" : "read";

    if (res >= op->len) {
        return 1;
    }
    if (res == 0) {
        if (!op->req->to_file) {
            snprintf(msg, cap,
                     "posix: short read: descriptor %zu reached the end of "
                     "fd %d at offset %" PRIu64 " with %" PRIu64
                     " bytes still to read",
                     op->desc, op->file->fd, op->off, op->len);
        } else {
            snprintf(msg, cap,
                     "posix: write to fd %d at offset %" PRIu64
                     " (descriptor %zu) made no progress with %" PRIu64
                     " bytes left",
                     op->file->fd, op->off, op->desc, op->len);
        }
        return NXL_ERR_IO;
    }
    op->buf += res;
    op->off += res;
    op->len -= res;
    if (op->direct && (op->off % op->file->dio_off_align != 0 ||
                       (uintptr_t)op->buf % op->file->dio_mem_align != 0)) {
        /* An O_DIRECT transfer stops short of an aligned point only at the
         * end of the file (or when the file system is full). */
        snprintf(msg, cap,
                 "posix: short %s: O_DIRECT %s of descriptor %zu stopped at "
                 "offset %" PRIu64 " of fd %d with %" PRIu64 " bytes left (%s)",
                 what, what, op->desc, op->off, op->file->fd, op->len,
                 op->req->to_file ? "file system full?" : "end of file");
        return NXL_ERR_IO;
    }
    return 0;
}

/* be_posix_io_error maps errno to a status and a message (posix.h). */
nxl_status_t
be_posix_io_error(const be_posix_op_t *op, int err, char *msg, size_t cap)
{
    nxl_status_t st;
    char ebuf[128];
    const char *es, *hint = "";

    switch (err) {
    case EINVAL:
        st = NXL_ERR_INVALID_PARAM;
        if (op->direct) {
            hint = " (O_DIRECT alignment?)";
        }
        break;
    case EFAULT:
        st = NXL_ERR_INVALID_PARAM;
        hint = " (memory not mapped)";
        break;
    case EBADF:
        st = NXL_ERR_IO;
        hint = " (fd closed while the transfer ran?)";
        break;
    case ENOMEM:
        st = NXL_ERR_NOMEM;
        break;
    case EPERM:
    case EACCES:
        st = NXL_ERR_NOT_ALLOWED;
        break;
    case ECANCELED:
        st = NXL_ERR_CANCELED;
        break;
    default:
        st = NXL_ERR_IO;
        break;
    }
    es = strerror_r(err, ebuf, sizeof(ebuf));
    snprintf(msg, cap,
             "posix: %s of %" PRIu64 " bytes at offset %" PRIu64
             " of fd %d (descriptor %zu) failed: %s%s",
             op->req->to_file ? "write" : "read", op->len, op->off,
             op->file->fd, op->desc, es, hint);
    return st;
}

/* be_posix_op_finish ends one operation of a request (posix.h). */
bool
be_posix_op_finish(be_posix_engine_t *eng, be_posix_op_t *op,
                   nxl_status_t status, const char *msg)
{
    be_posix_req_t *req = op->req;

    req->inflight--;
    if (status != NXL_OK && req->status == NXL_OK && !req->canceling) {
        req->status = status;
        snprintf(req->err, sizeof(req->err), "%s", msg ? msg : "posix: error");
        if (req->queued) {
            be_posix_dequeue(eng, req);
        }
    }
    if (req->inflight == 0 && !req->queued) {
        req->state = BE_POSIX_DONE;
        return true;
    }
    return false;
}

/* --- requests ------------------------------------------------------------- */

/* be_posix_check_files makes sure each distinct fd of req still names the
 * registered file and records whether it is O_DIRECT now (lock held). */
static nxl_status_t
be_posix_check_files(be_posix_req_t *req)
{
    be_posix_file_t *f;
    struct stat st;
    size_t i;
    int fl;

    for (i = 0; i < req->nfiles; i++) {
        f = req->files[i];
        if (be_posix_fstat(f->fd, &st) != 0) {
            if (errno == EBADF) {
                return nxl__fail(NXL_ERR_IO,
                                 "posix: fd %d was closed; a FILE "
                                 "registration's fd must stay open until it "
                                 "is deregistered",
                                 f->fd);
            }
            return nxl__fail_errno(errno, "posix: fstat(fd %d)", f->fd);
        }
        if (st.st_dev != f->dev || st.st_ino != f->ino) {
            return nxl__fail(NXL_ERR_MISMATCH,
                             "posix: fd %d now names another file (device "
                             "%llu inode %llu; registered: device %llu "
                             "inode %llu)",
                             f->fd, (unsigned long long)st.st_dev,
                             (unsigned long long)st.st_ino,
                             (unsigned long long)f->dev,
                             (unsigned long long)f->ino);
        }
        /* The flags of the description the I/O goes through. */
        fl = fcntl(f->iofd, F_GETFL);
        if (fl < 0) {
            return nxl__fail_errno(errno, "posix: fcntl(fd %d)", f->iofd);
        }
        f->direct = (fl & O_DIRECT) != 0;
        f->append = (fl & O_APPEND) != 0;
        if (f->append && req->to_file) {
            return nxl__fail(NXL_ERR_NOT_ALLOWED,
                             "posix: fd %d is open with O_APPEND: writes "
                             "would land at the end of the file, not at the "
                             "descriptors' offsets",
                             f->fd);
        }
    }
    return NXL_OK;
}

/* be_posix_check_align enforces O_DIRECT alignment on every descriptor of a
 * file that is O_DIRECT (lock held, after be_posix_check_files). */
static nxl_status_t
be_posix_check_align(const be_posix_engine_t *eng, const be_posix_req_t *req)
{
    const be_posix_region_t *fr;
    const be_posix_file_t *f;
    uint64_t off, len, addr;
    size_t i;

    for (i = 0; i < req->count; i++) {
        fr = req->file[i].md;
        f = fr->file;
        if (!f->direct) {
            continue;
        }
        off = req->file[i].addr;
        len = req->file[i].len;
        addr = req->mem[i].addr;
        if (off % f->dio_off_align != 0) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "posix: descriptor %zu: file offset %" PRIu64
                             " is not a multiple of %u, which O_DIRECT on fd "
                             "%d requires",
                             i, off, f->dio_off_align, f->fd);
        }
        if (len % f->dio_off_align != 0) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "posix: descriptor %zu: length %" PRIu64
                             " is not a multiple of %u, which O_DIRECT on fd "
                             "%d requires",
                             i, len, f->dio_off_align, f->fd);
        }
        if (addr % f->dio_mem_align != 0) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "posix: descriptor %zu: buffer address 0x%" PRIx64
                             " is not aligned to %u bytes, which O_DIRECT on "
                             "fd %d requires",
                             i, addr, f->dio_mem_align, f->fd);
        }
        if (eng->chunk % f->dio_off_align != 0) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "posix: chunk_size %" PRIu64 " is not a multiple "
                             "of fd %d's O_DIRECT alignment %u",
                             eng->chunk, f->fd, f->dio_off_align);
        }
    }
    return NXL_OK;
}

/* be_posix_prep_segs checks every descriptor pair of req against its
 * regions and the file's access mode, and collects the distinct files
 * (lock held). */
static nxl_status_t
be_posix_prep_segs(be_posix_engine_t *eng, be_posix_req_t *req)
{
    const be_posix_region_t *mr, *fr;
    const nxl_be_seg_t *ms, *fs;
    uint64_t gen = ++eng->mark_gen;
    size_t i, n = 0;

    for (i = 0; i < req->count; i++) {
        ms = &req->mem[i];
        fs = &req->file[i];
        mr = ms->md;
        fr = fs->md;
        if (mr == NULL || fr == NULL || mr->kind != NXL_DRAM ||
            fr->kind != NXL_FILE || ms->len != fs->len || ms->len == 0) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "posix: descriptor %zu is not a DRAM/FILE pair "
                             "of registered regions",
                             i);
        }
        if (ms->addr < mr->addr || ms->addr - mr->addr > mr->len ||
            ms->len > mr->len - (ms->addr - mr->addr)) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "posix: descriptor %zu: memory 0x%" PRIx64
                             "+%" PRIu64 " is outside its registered region",
                             i, ms->addr, ms->len);
        }
        if (fs->dev_id != (uint64_t)fr->file->fd || fs->addr < fr->addr ||
            fs->addr - fr->addr > fr->len ||
            fs->len > fr->len - (fs->addr - fr->addr)) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "posix: descriptor %zu: file range %" PRIu64
                             "+%" PRIu64 " of fd %" PRIu64 " is outside the "
                             "registered range %" PRIu64 "+%" PRIu64
                             " of fd %d",
                             i, fs->addr, fs->len, fs->dev_id, fr->addr,
                             fr->len, fr->file->fd);
        }
        if (req->to_file && fr->file->accmode == O_RDONLY) {
            return nxl__fail(NXL_ERR_NOT_ALLOWED,
                             "posix: descriptor %zu: fd %d is open read-only "
                             "and cannot be written",
                             i, fr->file->fd);
        }
        if (!req->to_file && fr->file->accmode == O_WRONLY) {
            return nxl__fail(NXL_ERR_NOT_ALLOWED,
                             "posix: descriptor %zu: fd %d is open write-only "
                             "and cannot be read",
                             i, fr->file->fd);
        }
        if (fr->file->mark != gen) {
            fr->file->mark = gen;
            n++;
        }
    }
    req->files = malloc(n * sizeof(*req->files));
    if (req->files == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "posix: out of memory");
    }
    gen = ++eng->mark_gen;
    for (i = 0; i < req->count; i++) {
        fr = req->file[i].md;
        if (fr->file->mark != gen) {
            fr->file->mark = gen;
            req->files[req->nfiles++] = fr->file;
        }
    }
    return NXL_OK;
}

/* be_posix_prep sorts out which side is memory and which is the file,
 * validates the descriptors, and checks O_DIRECT alignment already, so a
 * transfer that can never run fails when it is made. */
nxl_status_t
be_posix_prep(void *self, void *req_p, const nxl_be_xfer_t *xfer)
{
    be_posix_engine_t *eng = self;
    be_posix_req_t *req = req_p;
    nxl_status_t st;

    if (xfer->count == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "posix: no descriptors");
    }
    if (xfer->peer_ctx != &eng->self_tag) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "posix: local transfers only (agent '%s')",
                         xfer->peer ? xfer->peer : "(null)");
    }
    if (xfer->local_mem == NXL_DRAM && xfer->remote_mem == NXL_FILE) {
        req->mem = xfer->local;
        req->file = xfer->remote;
        req->to_file = xfer->op == NXL_WRITE;
    } else if (xfer->local_mem == NXL_FILE && xfer->remote_mem == NXL_DRAM) {
        req->mem = xfer->remote;
        req->file = xfer->local;
        req->to_file = xfer->op == NXL_READ;
    } else {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "posix: moves data between DRAM and FILE only "
                         "(local kind %d, remote kind %d)",
                         (int)xfer->local_mem, (int)xfer->remote_mem);
    }
    req->eng = eng;
    req->count = xfer->count;
    req->state = BE_POSIX_IDLE;

    pthread_mutex_lock(&eng->lock);
    st = be_posix_prep_segs(eng, req);
    if (st == NXL_OK) {
        st = be_posix_check_files(req);
    }
    if (st == NXL_OK) {
        st = be_posix_check_align(eng, req);
    }
    pthread_mutex_unlock(&eng->lock);
    if (st != NXL_OK) {
        free(req->files);
        req->files = NULL;
        req->nfiles = 0;
    }
    return st;
}

/* be_posix_result returns req's outcome (lock held): its status once done,
 * else NXL_IN_PROG. */
static nxl_status_t
be_posix_result(const be_posix_req_t *req)
{
    return (req->state == BE_POSIX_DONE) ? req->status : NXL_IN_PROG;
}

/* be_posix_post validates the files again, queues the request and, with
 * io_uring, issues its first batch (up to queue_depth operations) in one
 * submission; data already in the page cache may be copied before it
 * returns, which then makes it NXL_OK. */
nxl_status_t
be_posix_post(void *self, void *req_p, const nxl_be_xfer_t *xfer)
{
    be_posix_engine_t *eng = self;
    be_posix_req_t *req = req_p;
    nxl_status_t st;

    (void)xfer;
    pthread_mutex_lock(&eng->lock);
    if (req->state == BE_POSIX_ACTIVE) {
        pthread_mutex_unlock(&eng->lock);
        return nxl__fail(NXL_ERR_REPOST_ACTIVE,
                         "posix: the transfer is still in progress");
    }
    st = be_posix_check_files(req);
    if (st == NXL_OK) {
        st = be_posix_check_align(eng, req);
    }
    if (st != NXL_OK) {
        pthread_mutex_unlock(&eng->lock);
        return st;
    }
    req->state = BE_POSIX_ACTIVE;
    req->cur_desc = 0;
    req->cur_off = 0;
    req->inflight = 0;
    req->canceling = false;
    req->status = NXL_OK;
    req->err[0] = '\0';
    be_posix_enqueue(eng, req);
#ifdef NXL_HAVE_LIBURING
    if (eng->api == BE_POSIX_API_URING) {
        be_posix_uring_pump(eng);
    }
#endif
    if (eng->api == BE_POSIX_API_THREADS) {
        pthread_cond_broadcast(&eng->work_cv);
    }
    st = be_posix_result(req);
    pthread_mutex_unlock(&eng->lock);
    if (st < 0) {
        return nxl__fail(st, "%s", req->err);
    }
    return st;
}

/* be_posix_check reaps completions (io_uring), issues more work and
 * reports req's outcome. Never blocks on I/O. */
nxl_status_t
be_posix_check(void *self, void *req_p)
{
    be_posix_engine_t *eng = self;
    be_posix_req_t *req = req_p;
    nxl_status_t st;

    pthread_mutex_lock(&eng->lock);
    if (req->state == BE_POSIX_IDLE) {
        pthread_mutex_unlock(&eng->lock);
        return nxl__fail(NXL_ERR_NOT_POSTED, "posix: transfer not posted");
    }
#ifdef NXL_HAVE_LIBURING
    if (req->state == BE_POSIX_ACTIVE && eng->api == BE_POSIX_API_URING) {
        be_posix_uring_pump(eng);
    }
#endif
    st = be_posix_result(req);
    pthread_mutex_unlock(&eng->lock);
    if (st < 0) {
        return nxl__fail(st, "%s", req->err);
    }
    return st;
}

/* be_posix_cancel stops issuing req and returns once none of its
 * operations is in flight, so its buffers are no longer touched. */
void
be_posix_cancel(void *self, void *req_p)
{
    be_posix_engine_t *eng = self;
    be_posix_req_t *req = req_p;

    pthread_mutex_lock(&eng->lock);
    if (req->state == BE_POSIX_ACTIVE) {
        req->canceling = true;
        if (req->queued) {
            be_posix_dequeue(eng, req);
        }
#ifdef NXL_HAVE_LIBURING
        if (eng->api == BE_POSIX_API_URING) {
            be_posix_uring_cancel(eng, req);
        }
#endif
        if (eng->api == BE_POSIX_API_THREADS) {
            be_posix_pool_cancel(eng, req);
        }
        req->state = BE_POSIX_DONE;
        req->status = NXL_ERR_CANCELED;
        snprintf(req->err, sizeof(req->err), "posix: transfer canceled");
    }
    pthread_mutex_unlock(&eng->lock);
}

/* be_posix_release frees what prep allocated; req is not in flight. */
void
be_posix_release(void *self, void *req_p)
{
    be_posix_req_t *req = req_p;

    (void)self;
    free(req->files);
    req->files = NULL;
    req->nfiles = 0;
}
