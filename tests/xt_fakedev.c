/*
 * xt_fakedev.c - the fake device kind (see xt_fakedev.h): host memory
 * behind the device ops, with one worker thread per stream running queued
 * copies in order.
 */
#include "xt_fakedev.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define XT_FD_DEVICES 2
#define XT_FD_STREAM_TAG 0x66647374u /* "fdst" */
#define XT_FD_EVENT_TAG 0x66646576u  /* "fdev" */
#define XT_FD_FAIL_MSG "fakedev: injected copy failure"
#define XT_FD_IPC_MAGIC 0x50494446u /* "FDIP" */
#define XT_FD_PAGE 4096u

static atomic_uint xt_fd_delay_us;
static atomic_uint xt_fd_fail_left;
static atomic_uint_fast64_t xt_fd_async_n;
static atomic_uint_fast64_t xt_fd_sync_n;
static atomic_uint_fast64_t xt_fd_bytes;
static atomic_long xt_fd_allocs;
static atomic_long xt_fd_streams;
static atomic_long xt_fd_events;
static atomic_long xt_fd_ipc_maps;
static atomic_uint_fast64_t xt_fd_dir_bad;
static atomic_int xt_fd_batch_mode;               /* XT_FD_BATCH_* */
static atomic_uint_fast64_t xt_fd_batch_n;        /* batches accepted */
static atomic_uint_fast64_t xt_fd_batch_mapped_n; /* ... marked MAPPED */

/* An allocation (a memfd mapped MAP_SHARED, so that another process can
 * map it too) or a mapping of another process's allocation (ipc_open). */
typedef struct xt_fd_mem {
    struct xt_fd_mem *next;
    uint8_t *base;
    size_t size;  /* mapped bytes, a multiple of the page */
    int fd;       /* the memfd; -1 for an IPC mapping */
    uint64_t dev; /* the memfd's identity, checked by ipc_open */
    uint64_t ino;
} xt_fd_mem_t;

static pthread_mutex_t xt_fd_mem_lock = PTHREAD_MUTEX_INITIALIZER;
static xt_fd_mem_t *xt_fd_mems;

/* One queued piece of work: a copy, or an event marker. */
typedef struct xt_fd_item {
    struct xt_fd_item *next;
    struct nxl_event *ev; /* NULL: a copy */
    uint64_t gen;         /* the record this marker completes */
    void *dst;
    const void *src;
    size_t len;
} xt_fd_item_t;

struct nxl_stream {
    uint32_t tag;
    int dev;
    pthread_mutex_t lock;
    pthread_cond_t work_cv; /* worker: queue not empty, or stop */
    pthread_cond_t idle_cv; /* waiters: done advanced */
    xt_fd_item_t *head, *tail;
    uint64_t queued, done;
    bool stop;
    nxl_status_t ev_err;   /* first failure since the last marker */
    nxl_status_t sync_err; /* first failure since the last stream_sync */
    pthread_t thread;
};

/* An event is shared by its owner and every marker still queued for it;
 * the last of them frees it. */
struct nxl_event {
    uint32_t tag;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    int refs;
    uint64_t gen;
    nxl_status_t state; /* NXL_OK, NXL_IN_PROG or the failure */
};

/* xt_fd_take_failure consumes one injected failure, if any is left. */
static bool
xt_fd_take_failure(void)
{
    unsigned n = atomic_load(&xt_fd_fail_left);

    while (n > 0) {
        if (atomic_compare_exchange_weak(&xt_fd_fail_left, &n, n - 1)) {
            return true;
        }
    }
    return false;
}

/* xt_fd_event_unref drops one reference to e; the last frees it. */
static void
xt_fd_event_unref(struct nxl_event *e)
{
    bool last;

    pthread_mutex_lock(&e->lock);
    last = --e->refs == 0;
    pthread_mutex_unlock(&e->lock);
    if (last) {
        pthread_cond_destroy(&e->cv);
        pthread_mutex_destroy(&e->lock);
        e->tag = 0;
        free(e);
        atomic_fetch_sub(&xt_fd_events, 1);
    }
}

/* xt_fd_worker runs one stream's queue in order until stop. */
static void *
xt_fd_worker(void *arg)
{
    struct nxl_stream *s = arg;
    xt_fd_item_t *it;
    nxl_status_t st, ev_err = NXL_OK;
    unsigned delay;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (s->head == NULL && !s->stop) {
            pthread_cond_wait(&s->work_cv, &s->lock);
        }
        if (s->head == NULL) {
            break; /* stop with an empty queue */
        }
        it = s->head;
        s->head = it->next;
        if (s->head == NULL) {
            s->tail = NULL;
        }
        if (it->ev != NULL) {
            ev_err = s->ev_err;
            s->ev_err = NXL_OK;
        }
        pthread_mutex_unlock(&s->lock);

        st = NXL_OK;
        if (it->ev != NULL) {
            pthread_mutex_lock(&it->ev->lock);
            if (it->ev->gen == it->gen) {
                it->ev->state = ev_err;
                pthread_cond_broadcast(&it->ev->cv);
            }
            pthread_mutex_unlock(&it->ev->lock);
            xt_fd_event_unref(it->ev);
        } else {
            delay = atomic_load(&xt_fd_delay_us);
            if (delay != 0) {
                struct timespec ts = {
                    .tv_sec = delay / 1000000u,
                    .tv_nsec = (long)(delay % 1000000u) * 1000,
                };
                nanosleep(&ts, NULL);
            }
            if (xt_fd_take_failure()) {
                st = NXL_ERR_BACKEND;
            } else {
                memcpy(it->dst, it->src, it->len);
                atomic_fetch_add(&xt_fd_async_n, 1);
                atomic_fetch_add(&xt_fd_bytes, it->len);
            }
        }
        free(it);

        pthread_mutex_lock(&s->lock);
        if (st != NXL_OK) {
            if (s->ev_err == NXL_OK) {
                s->ev_err = st;
            }
            if (s->sync_err == NXL_OK) {
                s->sync_err = st;
            }
        }
        s->done++;
        pthread_cond_broadcast(&s->idle_cv);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* xt_fd_probe: the fake always runs. */
static nxl_status_t
xt_fd_probe(void)
{
    return NXL_OK;
}

/* xt_fd_device_count: two fake devices. */
static nxl_status_t
xt_fd_device_count(int *count_p)
{
    if (count_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "fakedev: NULL count_p");
    }
    *count_p = XT_FD_DEVICES;
    return NXL_OK;
}

/* xt_fd_check_dev validates a device ordinal. */
static nxl_status_t
xt_fd_check_dev(int dev)
{
    if (dev < 0 || dev >= XT_FD_DEVICES) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "fakedev: device %d out of range (%d devices)", dev,
                         XT_FD_DEVICES);
    }
    return NXL_OK;
}

/* xt_fd_mem_find returns the allocation or mapping holding p (own: only
 * allocations, else only IPC mappings; any: both), or NULL. Called with
 * xt_fd_mem_lock held. */
enum { XT_FD_ANY = 0, XT_FD_OWN = 1, XT_FD_IMPORTED = 2 };
static xt_fd_mem_t *
xt_fd_mem_find(const void *p, int which)
{
    xt_fd_mem_t *m;
    uintptr_t a = (uintptr_t)p;

    for (m = xt_fd_mems; m != NULL; m = m->next) {
        if ((which == XT_FD_OWN && m->fd < 0) ||
            (which == XT_FD_IMPORTED && m->fd >= 0)) {
            continue;
        }
        if (a >= (uintptr_t)m->base && a - (uintptr_t)m->base < m->size) {
            return m;
        }
    }
    return NULL;
}

/* xt_fd_mem_unlink removes m from the list (lock held). */
static void
xt_fd_mem_unlink(xt_fd_mem_t *m)
{
    xt_fd_mem_t **pp;

    for (pp = &xt_fd_mems; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == m) {
            *pp = m->next;
            return;
        }
    }
}

/* xt_fd_alloc returns size bytes (at least 1, mapped in whole pages) of a
 * fresh memfd, 4096-aligned and filled with 0xa5; free with xt_fd_free. */
static nxl_status_t
xt_fd_alloc(int dev, size_t size, void **ptr_p)
{
    nxl_status_t st = xt_fd_check_dev(dev);
    xt_fd_mem_t *m;
    struct stat sb;
    size_t span;
    void *p;
    int fd, err;

    if (st != NXL_OK) {
        return st;
    }
    if (ptr_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "fakedev: NULL ptr_p");
    }
    span = (NXL__MAX(size, (size_t)1) + XT_FD_PAGE - 1) &
           ~(size_t)(XT_FD_PAGE - 1);
    if (span < size) {
        return nxl__fail(NXL_ERR_NOMEM, "fakedev: size %zu too large", size);
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "fakedev: out of memory");
    }
    fd = memfd_create("nxl-fakedev", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)span) < 0 || fstat(fd, &sb) < 0) {
        err = errno;
        if (fd >= 0) {
            close(fd);
        }
        free(m);
        return nxl__fail_errno(err, "fakedev: memfd of %zu bytes", span);
    }
    p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        err = errno;
        close(fd);
        free(m);
        return nxl__fail_errno(err, "fakedev: mmap(%zu)", span);
    }
    memset(p, 0xa5, span);
    m->base = p;
    m->size = span;
    m->fd = fd;
    m->dev = (uint64_t)sb.st_dev;
    m->ino = (uint64_t)sb.st_ino;
    pthread_mutex_lock(&xt_fd_mem_lock);
    m->next = xt_fd_mems;
    xt_fd_mems = m;
    pthread_mutex_unlock(&xt_fd_mem_lock);
    atomic_fetch_add(&xt_fd_allocs, 1);
    *ptr_p = p;
    return NXL_OK;
}

/* xt_fd_free releases memory from xt_fd_alloc (its first byte). Accepts
 * NULL; a pointer it never returned is reported and left alone. */
static void
xt_fd_free(int dev, void *ptr, size_t size)
{
    xt_fd_mem_t *m;

    (void)dev;
    (void)size;
    if (ptr == NULL) {
        return;
    }
    pthread_mutex_lock(&xt_fd_mem_lock);
    m = xt_fd_mem_find(ptr, XT_FD_OWN);
    if (m != NULL && m->base == ptr) {
        xt_fd_mem_unlink(m);
    } else {
        m = NULL;
    }
    pthread_mutex_unlock(&xt_fd_mem_lock);
    if (m == NULL) {
        fprintf(stderr, "fakedev: free(%p): not an allocation\n", ptr);
        return;
    }
    munmap(m->base, m->size);
    close(m->fd);
    free(m);
    atomic_fetch_sub(&xt_fd_allocs, 1);
}

/* xt_fd_note_dir counts a copy whose direction does not match where its
 * pointers are (fake device memory, or not). CUDA infers the direction
 * from unified addresses, so a wrong one is no failure there; tests read
 * the count instead. */
static void
xt_fd_note_dir(void *dst, const void *src, nxl_copy_dir_t dir)
{
    bool sdev, ddev;
    nxl_copy_dir_t want;

    pthread_mutex_lock(&xt_fd_mem_lock);
    sdev = xt_fd_mem_find(src, XT_FD_ANY) != NULL;
    ddev = xt_fd_mem_find(dst, XT_FD_ANY) != NULL;
    pthread_mutex_unlock(&xt_fd_mem_lock);
    want = sdev ? (ddev ? NXL_COPY_D2D : NXL_COPY_D2H)
                : (ddev ? NXL_COPY_H2D : NXL_COPY_H2H);
    if (want != dir) {
        atomic_fetch_add(&xt_fd_dir_bad, 1);
    }
}

/* xt_fd_copy copies at once (or fails when a failure is injected). */
static nxl_status_t
xt_fd_copy(void *dst, const void *src, size_t len, nxl_copy_dir_t dir)
{
    if (len != 0 && (dst == NULL || src == NULL)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "fakedev: copy with a NULL pointer");
    }
    if (len != 0) {
        xt_fd_note_dir(dst, src, dir);
    }
    if (xt_fd_take_failure()) {
        return nxl__fail(NXL_ERR_BACKEND, XT_FD_FAIL_MSG);
    }
    if (len != 0) {
        memcpy(dst, src, len);
    }
    atomic_fetch_add(&xt_fd_sync_n, 1);
    atomic_fetch_add(&xt_fd_bytes, len);
    return NXL_OK;
}

/* xt_fd_stream_create starts a stream and its worker thread. */
static nxl_status_t
xt_fd_stream_create(int dev, nxl_stream_t **stream_p)
{
    nxl_status_t st = xt_fd_check_dev(dev);
    struct nxl_stream *s;
    int r;

    if (st != NXL_OK) {
        return st;
    }
    if (stream_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "fakedev: NULL stream_p");
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "fakedev: out of memory");
    }
    s->tag = XT_FD_STREAM_TAG;
    s->dev = dev;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->work_cv, NULL);
    pthread_cond_init(&s->idle_cv, NULL);
    r = pthread_create(&s->thread, NULL, xt_fd_worker, s);
    if (r != 0) {
        pthread_cond_destroy(&s->idle_cv);
        pthread_cond_destroy(&s->work_cv);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return nxl__fail_errno(r, "fakedev: pthread_create");
    }
    atomic_fetch_add(&xt_fd_streams, 1);
    *stream_p = s;
    return NXL_OK;
}

/* xt_fd_is_stream checks a stream handle is a live fake stream. */
static nxl_status_t
xt_fd_is_stream(const struct nxl_stream *s)
{
    if (s == NULL || s->tag != XT_FD_STREAM_TAG) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "fakedev: not a stream");
    }
    return NXL_OK;
}

/* xt_fd_push queues it on s and wakes the worker. */
static void
xt_fd_push(struct nxl_stream *s, xt_fd_item_t *it)
{
    pthread_mutex_lock(&s->lock);
    if (s->tail != NULL) {
        s->tail->next = it;
    } else {
        s->head = it;
    }
    s->tail = it;
    s->queued++;
    pthread_cond_signal(&s->work_cv);
    pthread_mutex_unlock(&s->lock);
}

/* xt_fd_stream_destroy waits for the queue, stops the worker, frees s. */
static void
xt_fd_stream_destroy(nxl_stream_t *s)
{
    if (s == NULL || xt_fd_is_stream(s) != NXL_OK) {
        return;
    }
    pthread_mutex_lock(&s->lock);
    while (s->done != s->queued) {
        pthread_cond_wait(&s->idle_cv, &s->lock);
    }
    s->stop = true;
    pthread_cond_signal(&s->work_cv);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->idle_cv);
    pthread_cond_destroy(&s->work_cv);
    pthread_mutex_destroy(&s->lock);
    s->tag = 0;
    free(s);
    atomic_fetch_sub(&xt_fd_streams, 1);
}

/* xt_fd_copy_async queues a copy on s. */
static nxl_status_t
xt_fd_copy_async(void *dst, const void *src, size_t len, nxl_copy_dir_t dir,
                 nxl_stream_t *s)
{
    nxl_status_t st = xt_fd_is_stream(s);
    xt_fd_item_t *it;

    if (st != NXL_OK) {
        return st;
    }
    if (len != 0 && (dst == NULL || src == NULL)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "fakedev: copy_async with a NULL pointer");
    }
    if (len != 0) {
        xt_fd_note_dir(dst, src, dir);
    }
    it = calloc(1, sizeof(*it));
    if (it == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "fakedev: out of memory");
    }
    it->dst = dst;
    it->src = src;
    it->len = len;
    xt_fd_push(s, it);
    return NXL_OK;
}

/* xt_fd_copy_batch_async queues each pair as copy_async does, or refuses
 * as the batch mode says: NOT_SUPPORTED (a driver without batches), or
 * BACKEND after queuing the first half (a batch the driver rejected part
 * way). */
static nxl_status_t
xt_fd_copy_batch_async(void *const *dsts, const void *const *srcs,
                       const size_t *lens, size_t n, nxl_copy_dir_t dir,
                       unsigned flags, nxl_stream_t *s)
{
    int mode = atomic_load(&xt_fd_batch_mode);
    size_t i, stop = n;
    nxl_status_t st;

    if (mode == XT_FD_BATCH_UNSUPPORTED) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED, "fakedev: no batched copy");
    }
    if (n != 0 && (dsts == NULL || srcs == NULL || lens == NULL)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "fakedev: copy_batch_async with a NULL array");
    }
    if (mode == XT_FD_BATCH_FAIL_HALF) {
        stop = n / 2;
    }
    if (flags & NXL_COPY_BATCH_MAPPED) {
        atomic_fetch_add(&xt_fd_batch_mapped_n, 1);
    }
    for (i = 0; i < stop; i++) {
        st = xt_fd_copy_async(dsts[i], srcs[i], lens[i], dir, s);
        if (st != NXL_OK) {
            return st;
        }
    }
    if (stop != n) {
        return nxl__fail(NXL_ERR_BACKEND,
                         "fakedev: injected batch failure after %zu of %zu",
                         stop, n);
    }
    atomic_fetch_add(&xt_fd_batch_n, 1);
    return NXL_OK;
}

/* xt_fd_stream_sync waits for s's queue; the first failure since the last
 * sync, if any. */
static nxl_status_t
xt_fd_stream_sync(nxl_stream_t *s)
{
    nxl_status_t st = xt_fd_is_stream(s);

    if (st != NXL_OK) {
        return st;
    }
    pthread_mutex_lock(&s->lock);
    while (s->done != s->queued) {
        pthread_cond_wait(&s->idle_cv, &s->lock);
    }
    st = s->sync_err;
    s->sync_err = NXL_OK;
    pthread_mutex_unlock(&s->lock);
    if (st != NXL_OK) {
        return nxl__fail(st, XT_FD_FAIL_MSG);
    }
    return NXL_OK;
}

/* xt_fd_event_create makes an event that is done until recorded. */
static nxl_status_t
xt_fd_event_create(nxl_event_t **event_p)
{
    struct nxl_event *e;

    if (event_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "fakedev: NULL event_p");
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "fakedev: out of memory");
    }
    e->tag = XT_FD_EVENT_TAG;
    e->refs = 1;
    e->state = NXL_OK;
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->cv, NULL);
    atomic_fetch_add(&xt_fd_events, 1);
    *event_p = e;
    return NXL_OK;
}

/* xt_fd_is_event checks an event handle. */
static nxl_status_t
xt_fd_is_event(const struct nxl_event *e)
{
    if (e == NULL || e->tag != XT_FD_EVENT_TAG) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "fakedev: not an event");
    }
    return NXL_OK;
}

/* xt_fd_event_destroy drops the owner's reference; a pending marker keeps
 * the event alive until the worker reaches it. Accepts NULL. */
static void
xt_fd_event_destroy(nxl_event_t *e)
{
    if (e != NULL && xt_fd_is_event(e) == NXL_OK) {
        xt_fd_event_unref(e);
    }
}

/* xt_fd_event_record queues a marker for e on s; e is in progress until
 * the worker reaches it (a newer record supersedes older markers). */
static nxl_status_t
xt_fd_event_record(nxl_event_t *e, nxl_stream_t *s)
{
    nxl_status_t st = xt_fd_is_event(e);
    xt_fd_item_t *it;

    if (st == NXL_OK) {
        st = xt_fd_is_stream(s);
    }
    if (st != NXL_OK) {
        return st;
    }
    it = calloc(1, sizeof(*it));
    if (it == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "fakedev: out of memory");
    }
    pthread_mutex_lock(&e->lock);
    e->gen++;
    e->refs++;
    e->state = NXL_IN_PROG;
    it->gen = e->gen;
    pthread_mutex_unlock(&e->lock);
    it->ev = e;
    xt_fd_push(s, it);
    return NXL_OK;
}

/* xt_fd_event_query: NXL_OK, NXL_IN_PROG or the failure before it. */
static nxl_status_t
xt_fd_event_query(nxl_event_t *e)
{
    nxl_status_t st = xt_fd_is_event(e);

    if (st != NXL_OK) {
        return st;
    }
    pthread_mutex_lock(&e->lock);
    st = e->state;
    pthread_mutex_unlock(&e->lock);
    if (st < 0) {
        return nxl__fail(st, XT_FD_FAIL_MSG);
    }
    return st;
}

/* xt_fd_event_sync waits until e is no longer in progress. */
static nxl_status_t
xt_fd_event_sync(nxl_event_t *e)
{
    nxl_status_t st = xt_fd_is_event(e);

    if (st != NXL_OK) {
        return st;
    }
    pthread_mutex_lock(&e->lock);
    while (e->state == NXL_IN_PROG) {
        pthread_cond_wait(&e->cv, &e->lock);
    }
    st = e->state;
    pthread_mutex_unlock(&e->lock);
    if (st < 0) {
        return nxl__fail(st, XT_FD_FAIL_MSG);
    }
    return NXL_OK;
}

/* Handle layout (little endian): 0 u32 magic "FDIP", 4 u32 pid, 8 u32 fd
 * of the memfd in that process, 12 u32 0, 16 u64 size, 24 u64 st_dev,
 * 32 u64 st_ino, the rest zero. */

/* xt_fd_ipc_get exports the allocation holding ptr (all of it, as CUDA
 * does): who owns it and which memfd. */
static nxl_status_t
xt_fd_ipc_get(void *ptr, nxl_ipc_handle_t *handle_p)
{
    xt_fd_mem_t *m;

    if (ptr == NULL || handle_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "fakedev: ipc_get with a NULL argument");
    }
    memset(handle_p, 0, sizeof(*handle_p));
    pthread_mutex_lock(&xt_fd_mem_lock);
    m = xt_fd_mem_find(ptr, XT_FD_OWN);
    if (m != NULL) {
        nxl__put_le32(handle_p->bytes, XT_FD_IPC_MAGIC);
        nxl__put_le32(handle_p->bytes + 4, (uint32_t)getpid());
        nxl__put_le32(handle_p->bytes + 8, (uint32_t)m->fd);
        nxl__put_le64(handle_p->bytes + 16, m->size);
        nxl__put_le64(handle_p->bytes + 24, m->dev);
        nxl__put_le64(handle_p->bytes + 32, m->ino);
    }
    pthread_mutex_unlock(&xt_fd_mem_lock);
    if (m == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "fakedev: ipc_get(%p): not in an allocation of this "
                         "process",
                         ptr);
    }
    return NXL_OK;
}

/* xt_fd_ipc_open maps the allocation a handle of another process names:
 * its memfd, fetched with pidfd_getfd (or /proc/<pid>/fd), must be the
 * file the handle describes. A handle of this very process is refused, as
 * CUDA refuses it. */
static nxl_status_t
xt_fd_ipc_open(int dev, const nxl_ipc_handle_t *handle, void **ptr_p)
{
    nxl_status_t st = xt_fd_check_dev(dev);
    const uint8_t *h;
    xt_fd_mem_t *m;
    uint64_t size, fsize;
    uint32_t pid, rfd;
    int pidfd, fd, err;
    void *p;

    if (st != NXL_OK) {
        return st;
    }
    if (handle == NULL || ptr_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "fakedev: ipc_open with a NULL argument");
    }
    h = handle->bytes;
    pid = nxl__le32(h + 4);
    rfd = nxl__le32(h + 8);
    size = nxl__le64(h + 16);
    if (nxl__le32(h) != XT_FD_IPC_MAGIC || nxl__le32(h + 12) != 0 || pid == 0 ||
        pid > INT32_MAX || rfd > INT32_MAX || size == 0 ||
        size % XT_FD_PAGE != 0 || size > SIZE_MAX) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "fakedev: ipc_open: not a fakedev IPC handle");
    }
    if ((pid_t)pid == getpid()) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "fakedev: ipc_open: the handle is from this very "
                         "process (CUDA refuses those too)");
    }
    pidfd = nxl__pidfd_open((pid_t)pid);
    fd = nxl__peer_fd_open(pidfd, (pid_t)pid, rfd);
    err = errno;
    if (pidfd >= 0) {
        close(pidfd);
    }
    if (fd < 0) {
        return nxl__fail_errno(err, "fakedev: ipc_open: memfd %u of pid %u",
                               rfd, pid);
    }
    if (!nxl__fd_is_file(fd, nxl__le64(h + 24), nxl__le64(h + 32), 0, size,
                         &fsize)) {
        close(fd);
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "fakedev: ipc_open: fd %u of pid %u is not the "
                         "allocation the handle names",
                         rfd, pid);
    }
    p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    err = errno;
    close(fd);
    if (p == MAP_FAILED) {
        return nxl__fail_errno(err, "fakedev: ipc_open: mmap(%" PRIu64 ")",
                               size);
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        munmap(p, (size_t)size);
        return nxl__fail(NXL_ERR_NOMEM, "fakedev: out of memory");
    }
    m->base = p;
    m->size = (size_t)size;
    m->fd = -1;
    m->dev = nxl__le64(h + 24); /* the file's, as checked above */
    m->ino = nxl__le64(h + 32);
    pthread_mutex_lock(&xt_fd_mem_lock);
    m->next = xt_fd_mems;
    xt_fd_mems = m;
    pthread_mutex_unlock(&xt_fd_mem_lock);
    atomic_fetch_add(&xt_fd_ipc_maps, 1);
    *ptr_p = p;
    return NXL_OK;
}

/* xt_fd_ipc_close unmaps what xt_fd_ipc_open returned. */
static nxl_status_t
xt_fd_ipc_close(void *ptr)
{
    xt_fd_mem_t *m;

    pthread_mutex_lock(&xt_fd_mem_lock);
    m = xt_fd_mem_find(ptr, XT_FD_IMPORTED);
    if (m != NULL && m->base == ptr) {
        xt_fd_mem_unlink(m);
    } else {
        m = NULL;
    }
    pthread_mutex_unlock(&xt_fd_mem_lock);
    if (m == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "fakedev: ipc_close(%p): not an IPC mapping", ptr);
    }
    munmap(m->base, m->size);
    free(m);
    atomic_fetch_sub(&xt_fd_ipc_maps, 1);
    return NXL_OK;
}

/* xt_fd_mem_range finds the allocation or IPC mapping holding ptr. */
static nxl_status_t
xt_fd_mem_range(const void *ptr, void **base_p, size_t *size_p)
{
    xt_fd_mem_t *m;

    if (base_p == NULL || size_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "fakedev: mem_range with a NULL argument");
    }
    pthread_mutex_lock(&xt_fd_mem_lock);
    m = xt_fd_mem_find(ptr, XT_FD_ANY);
    if (m != NULL) {
        *base_p = m->base;
        *size_p = m->size;
    }
    pthread_mutex_unlock(&xt_fd_mem_lock);
    if (m == NULL) {
        return nxl__fail(NXL_ERR_NOT_FOUND,
                         "fakedev: %p is not fake device memory", ptr);
    }
    return NXL_OK;
}

static const nxl_memkind_ops_t xt_fd_ops = {
    .abi_version = NXL_MEMKIND_ABI_VERSION,
    .size = sizeof(nxl_memkind_ops_t),
    .name = "fakedev",
    .type = NXL_MEMKIND_DEVICE,
    .mem = NXL_VRAM,
    .probe = xt_fd_probe,
    .device_count = xt_fd_device_count,
    .alloc = xt_fd_alloc,
    .free = xt_fd_free,
    .copy = xt_fd_copy,
    .stream_create = xt_fd_stream_create,
    .stream_destroy = xt_fd_stream_destroy,
    .copy_async = xt_fd_copy_async,
    .stream_sync = xt_fd_stream_sync,
    .event_create = xt_fd_event_create,
    .event_destroy = xt_fd_event_destroy,
    .event_record = xt_fd_event_record,
    .event_query = xt_fd_event_query,
    .event_sync = xt_fd_event_sync,
    .ipc_get = xt_fd_ipc_get,
    .ipc_open = xt_fd_ipc_open,
    .ipc_close = xt_fd_ipc_close,
    .mem_range = xt_fd_mem_range,
    .copy_batch_async = xt_fd_copy_batch_async,
};

/* xt_fakedev_ops returns the fake kind's static table. */
const nxl_memkind_ops_t *
xt_fakedev_ops(void)
{
    return &xt_fd_ops;
}

/* xt_fakedev_install makes the fake the device kind; aborts on failure. */
void
xt_fakedev_install(void)
{
    if (nxl_memkind_set_device(&xt_fd_ops) != NXL_OK) {
        fprintf(stderr, "xt_fakedev_install: %s\n", nxl_last_error());
        abort();
    }
}

/* xt_fakedev_reset zeroes the copy counters and clears the knobs. */
void
xt_fakedev_reset(void)
{
    atomic_store(&xt_fd_delay_us, 0);
    atomic_store(&xt_fd_fail_left, 0);
    atomic_store(&xt_fd_async_n, 0);
    atomic_store(&xt_fd_batch_mode, XT_FD_BATCH_OK);
    atomic_store(&xt_fd_batch_n, 0);
    atomic_store(&xt_fd_batch_mapped_n, 0);
    atomic_store(&xt_fd_sync_n, 0);
    atomic_store(&xt_fd_bytes, 0);
    atomic_store(&xt_fd_dir_bad, 0);
}

/* xt_fakedev_set_delay_us sets the sleep before each async copy. */
void
xt_fakedev_set_delay_us(unsigned us)
{
    atomic_store(&xt_fd_delay_us, us);
}

/* xt_fakedev_fail_next makes the next n copies fail. */
void
xt_fakedev_fail_next(unsigned n)
{
    atomic_store(&xt_fd_fail_left, n);
}

/* Counters (see xt_fakedev.h); atomic reads. */
uint64_t
xt_fakedev_async_copies(void)
{
    return atomic_load(&xt_fd_async_n);
}

uint64_t
xt_fakedev_sync_copies(void)
{
    return atomic_load(&xt_fd_sync_n);
}

uint64_t
xt_fakedev_bytes_copied(void)
{
    return atomic_load(&xt_fd_bytes);
}

long
xt_fakedev_live_allocs(void)
{
    return atomic_load(&xt_fd_allocs);
}

long
xt_fakedev_live_streams(void)
{
    return atomic_load(&xt_fd_streams);
}

long
xt_fakedev_live_events(void)
{
    return atomic_load(&xt_fd_events);
}

uint64_t
xt_fakedev_dir_mismatches(void)
{
    return atomic_load(&xt_fd_dir_bad);
}

long
xt_fakedev_live_ipc_maps(void)
{
    return atomic_load(&xt_fd_ipc_maps);
}

void
xt_fakedev_set_batch_mode(int mode)
{
    atomic_store(&xt_fd_batch_mode, mode);
}

uint64_t
xt_fakedev_batches(void)
{
    return atomic_load(&xt_fd_batch_n);
}

uint64_t
xt_fakedev_batches_mapped(void)
{
    return atomic_load(&xt_fd_batch_mapped_n);
}
