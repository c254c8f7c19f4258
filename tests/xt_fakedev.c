/*
 * xt_fakedev.c - the fake device kind (see xt_fakedev.h): host memory
 * behind the device ops, with one worker thread per stream running queued
 * copies in order.
 */
#include "xt_fakedev.h"

#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define XT_FD_DEVICES 2
#define XT_FD_STREAM_TAG 0x66647374u /* "fdst" */
#define XT_FD_EVENT_TAG 0x66646576u  /* "fdev" */
#define XT_FD_FAIL_MSG "fakedev: injected copy failure"

static atomic_uint xt_fd_delay_us;
static atomic_uint xt_fd_fail_left;
static atomic_uint_fast64_t xt_fd_async_n;
static atomic_uint_fast64_t xt_fd_sync_n;
static atomic_uint_fast64_t xt_fd_bytes;
static atomic_long xt_fd_allocs;
static atomic_long xt_fd_streams;
static atomic_long xt_fd_events;

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

/* xt_fd_alloc returns size bytes (at least 1) 4096-aligned, filled with
 * 0xa5; free with xt_fd_free. */
static nxl_status_t
xt_fd_alloc(int dev, size_t size, void **ptr_p)
{
    nxl_status_t st = xt_fd_check_dev(dev);
    void *p = NULL;
    int r;

    if (st != NXL_OK) {
        return st;
    }
    if (ptr_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "fakedev: NULL ptr_p");
    }
    if (size == 0) {
        size = 1;
    }
    r = posix_memalign(&p, 4096, size);
    if (r != 0) {
        return nxl__fail_errno(r, "fakedev: posix_memalign(%zu)", size);
    }
    memset(p, 0xa5, size);
    atomic_fetch_add(&xt_fd_allocs, 1);
    *ptr_p = p;
    return NXL_OK;
}

/* xt_fd_free releases memory from xt_fd_alloc. Accepts NULL. */
static void
xt_fd_free(int dev, void *ptr, size_t size)
{
    (void)dev;
    (void)size;
    if (ptr != NULL) {
        free(ptr);
        atomic_fetch_sub(&xt_fd_allocs, 1);
    }
}

/* xt_fd_copy copies at once (or fails when a failure is injected). */
static nxl_status_t
xt_fd_copy(void *dst, const void *src, size_t len, nxl_copy_dir_t dir)
{
    (void)dir;
    if (len != 0 && (dst == NULL || src == NULL)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "fakedev: copy with a NULL pointer");
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

    (void)dir;
    if (st != NXL_OK) {
        return st;
    }
    if (len != 0 && (dst == NULL || src == NULL)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "fakedev: copy_async with a NULL pointer");
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

/* xt_fd_ipc_get: the fake has no IPC. */
static nxl_status_t
xt_fd_ipc_get(void *ptr, nxl_ipc_handle_t *handle_p)
{
    (void)ptr;
    (void)handle_p;
    return nxl__fail(NXL_ERR_NOT_SUPPORTED, "fakedev: no IPC");
}

/* xt_fd_ipc_open: the fake has no IPC. */
static nxl_status_t
xt_fd_ipc_open(int dev, const nxl_ipc_handle_t *handle, void **ptr_p)
{
    (void)dev;
    (void)handle;
    (void)ptr_p;
    return nxl__fail(NXL_ERR_NOT_SUPPORTED, "fakedev: no IPC");
}

/* xt_fd_ipc_close: the fake has no IPC. */
static nxl_status_t
xt_fd_ipc_close(void *ptr)
{
    (void)ptr;
    return nxl__fail(NXL_ERR_NOT_SUPPORTED, "fakedev: no IPC");
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
    atomic_store(&xt_fd_sync_n, 0);
    atomic_store(&xt_fd_bytes, 0);
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
