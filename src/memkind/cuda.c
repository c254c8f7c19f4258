/*
 * cuda.c - the CUDA device kind, on the driver API loaded with dlopen.
 *
 * libcuda.so.1 is opened once, on first use (pthread_once), and never
 * closed; the few types and constants we need are declared here so that
 * CUDA is never needed to build. Without the library, a symbol, or a
 * device, every op fails with NXL_ERR_NOT_SUPPORTED and the reason ("no
 * CUDA driver: libcuda.so.1: cannot open shared object file: ...", "no CUDA
 * device") in nxl_last_error().
 *
 * Contexts: each device's primary context is retained on first use and
 * kept for the life of the process; every op makes the right one current
 * on the calling thread (cuCtxSetCurrent), so any thread may call any op.
 * Streams are created CU_STREAM_NON_BLOCKING so that they never wait on
 * the legacy default stream, which the blocking copy uses. Events are
 * created lazily in the context of the stream they are first recorded on
 * (the driver requires event and stream to share a context).
 *
 * Alignment: the driver guarantees only 256 bytes, the kind promises
 * 4096. Sizes are rounded up to 4096; should the driver still return a
 * misaligned pointer, the allocation is redone 4096 bytes larger and the
 * aligned pointer handed out, remembered in a small list so that free
 * finds the real one (ipc_get refuses the aligned pointer, since the peer
 * would map the driver's base; export the base mem_range reports, as the
 * SHM backend does).
 */
#include "cuda_drv.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

nxl__cu_t nxl__cu = {
    .once = PTHREAD_ONCE_INIT,
    .lock = PTHREAD_MUTEX_INITIALIZER,
};

/* nxl__cu_errstr returns the driver's text for r (static strings). */
const char *
nxl__cu_errstr(CUresult r)
{
    const char *s = NULL;

    if (nxl__cu.cuGetErrorString == NULL ||
        nxl__cu.cuGetErrorString(r, &s) != CUDA_SUCCESS || s == NULL) {
        return "unknown CUDA error";
    }
    return s;
}

/* nxl__cu_fail maps a driver failure to a status and sets the message
 * "memkind cuda: <what>: <driver text> (CUresult n)". */
nxl_status_t
nxl__cu_fail(CUresult r, const char *what)
{
    nxl_status_t st;

    switch (r) {
    case CUDA_ERROR_OUT_OF_MEMORY:
        st = NXL_ERR_NOMEM;
        break;
    case CUDA_ERROR_INVALID_VALUE:
    case CUDA_ERROR_INVALID_DEVICE:
        st = NXL_ERR_INVALID_PARAM;
        break;
    default:
        st = NXL_ERR_BACKEND;
        break;
    }
    return nxl__fail(st, "memkind cuda: %s: %s (CUresult %d)", what,
                     nxl__cu_errstr(r), r);
}

/* cu_init loads the driver, resolves every symbol, runs cuInit and counts
 * devices; on any failure it records why in nxl__cu.msg. Runs once. */
static void
cu_init(void)
{
    const char *err;
    CUresult r;
    int n = 0;

    nxl__cu.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (nxl__cu.lib == NULL) {
        err = dlerror();
        snprintf(nxl__cu.msg, sizeof(nxl__cu.msg), "no CUDA driver: %s",
                 err != NULL ? err : "libcuda.so.1: cannot be loaded");
        return;
    }
#define NXL__CUDA_SYM(name, ret, args)                                         \
    *(void **)(&nxl__cu.name) = dlsym(nxl__cu.lib, #name);                     \
    if (nxl__cu.name == NULL) {                                                \
        snprintf(nxl__cu.msg, sizeof(nxl__cu.msg),                             \
                 "no CUDA driver: libcuda.so.1 lacks %s (driver too old)",     \
                 #name);                                                       \
        goto fail;                                                             \
    }
    NXL__CUDA_SYMBOLS(NXL__CUDA_SYM)
#undef NXL__CUDA_SYM
    *(void **)(&nxl__cu.batch_v2) = dlsym(nxl__cu.lib, "cuMemcpyBatchAsync_v2");
    if (nxl__cu.batch_v2 == NULL) {
        *(void **)(&nxl__cu.batch_v1) =
            dlsym(nxl__cu.lib, "cuMemcpyBatchAsync");
    }
    *(void **)(&nxl__cu.mod_load) = dlsym(nxl__cu.lib, "cuModuleLoadDataEx");
    *(void **)(&nxl__cu.get_fn) = dlsym(nxl__cu.lib, "cuModuleGetFunction");
    *(void **)(&nxl__cu.launch) = dlsym(nxl__cu.lib, "cuLaunchKernel");
    {
        const char *e = getenv("NXL_CUDA_COPY_KERNEL");

        nxl__cu.no_kernel = e != NULL && strcmp(e, "0") == 0;
    }

    r = nxl__cu.cuInit(0);
    if (r == CUDA_ERROR_NO_DEVICE) {
        snprintf(nxl__cu.msg, sizeof(nxl__cu.msg),
                 "no CUDA device (cuInit: %s)", nxl__cu_errstr(r));
        goto fail;
    }
    if (r != CUDA_SUCCESS) {
        snprintf(nxl__cu.msg, sizeof(nxl__cu.msg),
                 "no usable CUDA driver: cuInit: %s (CUresult %d)",
                 nxl__cu_errstr(r), r);
        goto fail;
    }
    r = nxl__cu.cuDeviceGetCount(&n);
    if (r != CUDA_SUCCESS || n <= 0) {
        snprintf(nxl__cu.msg, sizeof(nxl__cu.msg), "no CUDA device%s%s",
                 r != CUDA_SUCCESS ? ": cuDeviceGetCount: " : "",
                 r != CUDA_SUCCESS ? nxl__cu_errstr(r) : "");
        goto fail;
    }
    nxl__cu.ctx = calloc((size_t)n, sizeof(*nxl__cu.ctx));
    nxl__cu.gather = calloc((size_t)n, sizeof(*nxl__cu.gather));
    nxl__cu.gather_state = calloc((size_t)n, sizeof(*nxl__cu.gather_state));
    if (nxl__cu.ctx == NULL || nxl__cu.gather == NULL ||
        nxl__cu.gather_state == NULL) {
        snprintf(nxl__cu.msg, sizeof(nxl__cu.msg),
                 "memkind cuda: out of memory at init");
        goto fail;
    }
    nxl__cu.num_devices = n;
    nxl__cu.ok = true;
    return;

fail:
    /* Keep the library loaded: nxl__cu_errstr may still be asked, and an
     * unloaded driver could not be reloaded in this process anyway. */
    nxl__cu.ok = false;
}

/* cu_ready returns NXL_OK when the kind can run, else NOT_SUPPORTED with
 * the reason set as the last error. Thread-safe. */
nxl_status_t
nxl__cu_ready(void)
{
    pthread_once(&nxl__cu.once, cu_init);
    if (!nxl__cu.ok) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED, "%s", nxl__cu.msg);
    }
    return NXL_OK;
}

/* nxl__cuda_available loads the driver once; true when a device can be
 * used. Does not touch the last error. Thread-safe. */
bool
nxl__cuda_available(void)
{
    pthread_once(&nxl__cu.once, cu_init);
    return nxl__cu.ok;
}

/* cu_use_dev makes device dev's primary context current on this thread,
 * retaining it on first use. NXL_OK, NXL_ERR_INVALID_PARAM for a bad
 * ordinal, or the driver's error. Call after cu_ready. Thread-safe. */
nxl_status_t
nxl__cu_use_dev(int dev)
{
    CUcontext ctx;
    CUdevice d;
    CUresult r;

    if (dev < 0 || dev >= nxl__cu.num_devices) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind cuda: device %d out of range (%d devices)",
                         dev, nxl__cu.num_devices);
    }
    pthread_mutex_lock(&nxl__cu.lock);
    ctx = nxl__cu.ctx[dev];
    if (ctx == NULL) {
        r = nxl__cu.cuDeviceGet(&d, dev);
        if (r == CUDA_SUCCESS) {
            r = nxl__cu.cuDevicePrimaryCtxRetain(&ctx, d);
        }
        if (r != CUDA_SUCCESS) {
            pthread_mutex_unlock(&nxl__cu.lock);
            return nxl__cu_fail(r, "cuDevicePrimaryCtxRetain");
        }
        nxl__cu.ctx[dev] = ctx;
    }
    pthread_mutex_unlock(&nxl__cu.lock);
    r = nxl__cu.cuCtxSetCurrent(ctx);
    if (r != CUDA_SUCCESS) {
        return nxl__cu_fail(r, "cuCtxSetCurrent");
    }
    return NXL_OK;
}

/* cu_use_ptr makes current the context of the device that owns device
 * pointer p (device 0 when the driver cannot tell). */
static nxl_status_t
cu_use_ptr(const void *p)
{
    nxl_status_t st = nxl__cu_use_dev(0);
    int ordinal = 0;

    if (st != NXL_OK) {
        return st;
    }
    if (nxl__cu.cuPointerGetAttribute(
            &ordinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
            (CUdeviceptr)(uintptr_t)p) != CUDA_SUCCESS ||
        ordinal == 0) {
        return NXL_OK;
    }
    return nxl__cu_use_dev(ordinal);
}

/* cuda_probe: NXL_OK when libcuda.so.1 loads and a device exists, else
 * NXL_ERR_NOT_SUPPORTED with the reason. Thread-safe. */
static nxl_status_t
cuda_probe(void)
{
    return nxl__cu_ready();
}

/* cuda_device_count writes the number of CUDA devices. */
static nxl_status_t
cuda_device_count(int *count_p)
{
    nxl_status_t st = nxl__cu_ready();

    if (st != NXL_OK) {
        return st;
    }
    if (count_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "memkind cuda: NULL count_p");
    }
    *count_p = nxl__cu.num_devices;
    return NXL_OK;
}

/* cuda_alloc returns size bytes of device memory on dev, 4096-aligned;
 * free with cuda_free. NXL_OK, NXL_ERR_NOMEM, NXL_ERR_INVALID_PARAM or a
 * driver error. Thread-safe. */
static nxl_status_t
cuda_alloc(int dev, size_t size, void **ptr_p)
{
    nxl__cuda_realign_t *ra;
    CUdeviceptr p = 0;
    size_t span;
    nxl_status_t st = nxl__cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    if (ptr_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "memkind cuda: NULL ptr_p");
    }
    span = (NXL__MAX(size, (size_t)1) + NXL__CUDA_ALIGN - 1) / NXL__CUDA_ALIGN *
           NXL__CUDA_ALIGN;
    if (span < size || span + NXL__CUDA_ALIGN < span) {
        return nxl__fail(NXL_ERR_NOMEM, "memkind cuda: size %zu too large",
                         size);
    }
    st = nxl__cu_use_dev(dev);
    if (st != NXL_OK) {
        return st;
    }
    r = nxl__cu.cuMemAlloc_v2(&p, span);
    if (r != CUDA_SUCCESS) {
        return nxl__cu_fail(r, "cuMemAlloc");
    }
    if (p % NXL__CUDA_ALIGN == 0) {
        *ptr_p = (void *)(uintptr_t)p;
        return NXL_OK;
    }
    /* Rare: redo it larger and hand out an aligned pointer inside. */
    nxl__cu.cuMemFree_v2(p);
    ra = calloc(1, sizeof(*ra));
    if (ra == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "memkind cuda: out of memory");
    }
    r = nxl__cu.cuMemAlloc_v2(&ra->raw, span + NXL__CUDA_ALIGN);
    if (r != CUDA_SUCCESS) {
        free(ra);
        return nxl__cu_fail(r, "cuMemAlloc");
    }
    ra->user =
        (ra->raw + NXL__CUDA_ALIGN - 1) / NXL__CUDA_ALIGN * NXL__CUDA_ALIGN;
    pthread_mutex_lock(&nxl__cu.lock);
    ra->next = nxl__cu.realigned;
    nxl__cu.realigned = ra;
    pthread_mutex_unlock(&nxl__cu.lock);
    *ptr_p = (void *)(uintptr_t)ra->user;
    return NXL_OK;
}

/* cu_realigned_find returns (and with take, removes) the re-aligned record of
 * user pointer p (NULL when p came straight from the driver); with take false
 * it only looks. */
static nxl__cuda_realign_t *
cu_realigned_find(CUdeviceptr p, bool take)
{
    nxl__cuda_realign_t **pp, *ra = NULL;

    pthread_mutex_lock(&nxl__cu.lock);
    for (pp = &nxl__cu.realigned; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->user == p) {
            ra = *pp;
            if (take) {
                *pp = ra->next;
            }
            break;
        }
    }
    pthread_mutex_unlock(&nxl__cu.lock);
    return ra;
}

/* cuda_free releases memory from cuda_alloc on dev; a driver failure is
 * logged. Accepts NULL. Thread-safe. */
static void
cuda_free(int dev, void *ptr, size_t size)
{
    nxl__cuda_realign_t *ra;
    CUdeviceptr p = (CUdeviceptr)(uintptr_t)ptr;
    CUresult r;

    (void)size;
    if (ptr == NULL || !nxl__cuda_available()) {
        return;
    }
    if (nxl__cu_use_dev(dev) != NXL_OK) {
        nxl__warn("memkind cuda: free(%p): %s", ptr, nxl_last_error());
        return;
    }
    ra = cu_realigned_find(p, true);
    if (ra != NULL) {
        p = ra->raw;
        free(ra);
    }
    r = nxl__cu.cuMemFree_v2(p);
    if (r != CUDA_SUCCESS) {
        nxl__warn("memkind cuda: cuMemFree(%p): %s (CUresult %d)", ptr,
                  nxl__cu_errstr(r), r);
    }
}

/* cuda_copy copies len bytes in direction dir (unified addressing infers
 * it; dir picks which side names the device) and returns once they are in
 * place. NXL_OK or a driver error. Thread-safe. */
static nxl_status_t
cuda_copy(void *dst, const void *src, size_t len, nxl_copy_dir_t dir)
{
    nxl_status_t st = nxl__cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    if (len == 0) {
        return NXL_OK;
    }
    if (dst == NULL || src == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind cuda: copy of %zu bytes with a NULL pointer",
                         len);
    }
    if (dir == NXL_COPY_H2H) {
        memcpy(dst, src, len);
        return NXL_OK;
    }
    st = cu_use_ptr(dir == NXL_COPY_H2D ? dst : src);
    if (st != NXL_OK) {
        return st;
    }
    r = nxl__cu.cuMemcpy((CUdeviceptr)(uintptr_t)dst,
                         (CUdeviceptr)(uintptr_t)src, len);
    if (r != CUDA_SUCCESS) {
        return nxl__cu_fail(r, "cuMemcpy");
    }
    /* cuMemcpy may return before an H2D or D2D copy lands; wait for the
     * legacy default stream it ran on (our streams do not block on it). */
    r = nxl__cu.cuStreamSynchronize(NULL);
    if (r != CUDA_SUCCESS) {
        return nxl__cu_fail(r, "cuStreamSynchronize after cuMemcpy");
    }
    return NXL_OK;
}

/* cuda_stream_create makes a non-blocking stream on dev (owned by the
 * caller; cuda_stream_destroy). Thread-safe. */
static nxl_status_t
cuda_stream_create(int dev, nxl_stream_t **stream_p)
{
    struct nxl_stream *s;
    nxl_status_t st = nxl__cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    if (stream_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "memkind cuda: NULL stream_p");
    }
    st = nxl__cu_use_dev(dev);
    if (st != NXL_OK) {
        return st;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "memkind cuda: out of memory");
    }
    r = nxl__cu.cuStreamCreate(&s->s, CU_STREAM_NON_BLOCKING);
    if (r != CUDA_SUCCESS) {
        free(s);
        return nxl__cu_fail(r, "cuStreamCreate");
    }
    s->dev = dev;
    *stream_p = s;
    return NXL_OK;
}

/* cuda_stream_destroy waits for the stream's work, then destroys it; a
 * driver failure is logged. Accepts NULL. */
static void
cuda_stream_destroy(nxl_stream_t *s)
{
    CUresult r;

    if (s == NULL) {
        return;
    }
    if (nxl__cu_use_dev(s->dev) == NXL_OK) {
        r = nxl__cu.cuStreamSynchronize(s->s);
        if (r != CUDA_SUCCESS) {
            nxl__warn("memkind cuda: stream destroy: cuStreamSynchronize: "
                      "%s (CUresult %d)",
                      nxl__cu_errstr(r), r);
        }
        r = nxl__cu.cuStreamDestroy_v2(s->s);
        if (r != CUDA_SUCCESS) {
            nxl__warn("memkind cuda: cuStreamDestroy: %s (CUresult %d)",
                      nxl__cu_errstr(r), r);
        }
    }
    free(s);
}

/* cuda_copy_async queues a copy on s (cuMemcpyAsync; buffers must stay
 * valid until an event recorded after it completes). A stream is used by
 * one thread at a time. */
static nxl_status_t
cuda_copy_async(void *dst, const void *src, size_t len, nxl_copy_dir_t dir,
                nxl_stream_t *s)
{
    nxl_status_t st = nxl__cu_ready();
    CUresult r;

    (void)dir;
    if (st != NXL_OK) {
        return st;
    }
    if (s == NULL || (len != 0 && (dst == NULL || src == NULL))) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind cuda: copy_async with a NULL %s",
                         s == NULL ? "stream" : "pointer");
    }
    if (len == 0) {
        return NXL_OK;
    }
    st = nxl__cu_use_dev(s->dev);
    if (st != NXL_OK) {
        return st;
    }
    r = nxl__cu.cuMemcpyAsync((CUdeviceptr)(uintptr_t)dst,
                              (CUdeviceptr)(uintptr_t)src, len, s->s);
    if (r != CUDA_SUCCESS) {
        return nxl__cu_fail(r, "cuMemcpyAsync");
    }
    return NXL_OK;
}

/* cuda_stream_sync waits for everything queued on s; returns the error of
 * failed work. */
static nxl_status_t
cuda_stream_sync(nxl_stream_t *s)
{
    nxl_status_t st = nxl__cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    if (s == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "memkind cuda: NULL stream");
    }
    st = nxl__cu_use_dev(s->dev);
    if (st != NXL_OK) {
        return st;
    }
    r = nxl__cu.cuStreamSynchronize(s->s);
    if (r != CUDA_SUCCESS) {
        return nxl__cu_fail(r, "cuStreamSynchronize");
    }
    return NXL_OK;
}

/* cuda_event_create makes an event handle (owned by the caller;
 * cuda_event_destroy). The driver event is made at the first record, in
 * that stream's context. */
static nxl_status_t
cuda_event_create(nxl_event_t **event_p)
{
    struct nxl_event *e;
    nxl_status_t st = nxl__cu_ready();

    if (st != NXL_OK) {
        return st;
    }
    if (event_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "memkind cuda: NULL event_p");
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "memkind cuda: out of memory");
    }
    e->dev = -1;
    *event_p = e;
    return NXL_OK;
}

/* cu_event_drop destroys e's driver event (logged on failure). The
 * driver frees a still-pending event once it completes. */
static void
cu_event_drop(struct nxl_event *e)
{
    CUresult r;

    if (e->ev == NULL) {
        return;
    }
    if (nxl__cu_use_dev(e->dev) == NXL_OK) {
        r = nxl__cu.cuEventDestroy_v2(e->ev);
        if (r != CUDA_SUCCESS) {
            nxl__warn("memkind cuda: cuEventDestroy: %s (CUresult %d)",
                      nxl__cu_errstr(r), r);
        }
    }
    e->ev = NULL;
    e->dev = -1;
}

/* cuda_event_destroy frees e. Accepts NULL. */
static void
cuda_event_destroy(nxl_event_t *e)
{
    if (e == NULL) {
        return;
    }
    cu_event_drop(e);
    free(e);
}

/* cuda_event_record marks the point s has reached (cuEventRecord),
 * creating or moving the driver event into s's context first. */
static nxl_status_t
cuda_event_record(nxl_event_t *e, nxl_stream_t *s)
{
    nxl_status_t st = nxl__cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    if (e == NULL || s == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind cuda: event_record with a NULL %s",
                         e == NULL ? "event" : "stream");
    }
    if (e->ev != NULL && e->dev != s->dev) {
        cu_event_drop(e);
    }
    st = nxl__cu_use_dev(s->dev);
    if (st != NXL_OK) {
        return st;
    }
    if (e->ev == NULL) {
        r = nxl__cu.cuEventCreate(&e->ev, CU_EVENT_DISABLE_TIMING);
        if (r != CUDA_SUCCESS) {
            e->ev = NULL;
            return nxl__cu_fail(r, "cuEventCreate");
        }
        e->dev = s->dev;
    }
    r = nxl__cu.cuEventRecord(e->ev, s->s);
    if (r != CUDA_SUCCESS) {
        return nxl__cu_fail(r, "cuEventRecord");
    }
    return NXL_OK;
}

/* cu_event_enter is the start of the event waits: the kind must run, e be
 * given, and, when e was recorded (*recorded_p), its context is made
 * current. */
static nxl_status_t
cu_event_enter(const struct nxl_event *e, bool *recorded_p)
{
    nxl_status_t st = nxl__cu_ready();

    *recorded_p = false;
    if (st != NXL_OK) {
        return st;
    }
    if (e == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "memkind cuda: NULL event");
    }
    if (e->ev == NULL) {
        return NXL_OK;
    }
    *recorded_p = true;
    return nxl__cu_use_dev(e->dev);
}

/* cuda_event_query: NXL_OK when the recorded point is done (or nothing
 * was recorded), NXL_IN_PROG for CUDA_ERROR_NOT_READY, else the error of
 * the failed work. */
static nxl_status_t
cuda_event_query(nxl_event_t *e)
{
    bool recorded;
    nxl_status_t st = cu_event_enter(e, &recorded);
    CUresult r;

    if (st != NXL_OK || !recorded) {
        return st;
    }
    r = nxl__cu.cuEventQuery(e->ev);
    if (r == CUDA_SUCCESS) {
        return NXL_OK;
    }
    if (r == CUDA_ERROR_NOT_READY) {
        return NXL_IN_PROG;
    }
    return nxl__cu_fail(r, "cuEventQuery");
}

/* cuda_event_sync waits for the recorded point; returns its error. */
static nxl_status_t
cuda_event_sync(nxl_event_t *e)
{
    bool recorded;
    nxl_status_t st = cu_event_enter(e, &recorded);
    CUresult r;

    if (st != NXL_OK || !recorded) {
        return st;
    }
    r = nxl__cu.cuEventSynchronize(e->ev);
    if (r != CUDA_SUCCESS) {
        return nxl__cu_fail(r, "cuEventSynchronize");
    }
    return NXL_OK;
}

/* cuda_ipc_get exports the allocation at ptr (a pointer from cuda_alloc)
 * as a CUipcMemHandle in handle_p. */
static nxl_status_t
cuda_ipc_get(void *ptr, nxl_ipc_handle_t *handle_p)
{
    CUipcMemHandle h;
    nxl_status_t st = nxl__cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    if (ptr == NULL || handle_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind cuda: ipc_get with a NULL argument");
    }
    if (cu_realigned_find((CUdeviceptr)(uintptr_t)ptr, false) != NULL) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "memkind cuda: %p was re-aligned inside a larger "
                         "driver allocation and cannot be exported",
                         ptr);
    }
    st = cu_use_ptr(ptr);
    if (st != NXL_OK) {
        return st;
    }
    memset(&h, 0, sizeof(h));
    r = nxl__cu.cuIpcGetMemHandle(&h, (CUdeviceptr)(uintptr_t)ptr);
    if (r != CUDA_SUCCESS) {
        return nxl__cu_fail(r, "cuIpcGetMemHandle");
    }
    memcpy(handle_p->bytes, &h, sizeof(h));
    return NXL_OK;
}

/* cuda_ipc_open maps a handle exported by another process on device dev;
 * *ptr_p is released with cuda_ipc_close. */
static nxl_status_t
cuda_ipc_open(int dev, const nxl_ipc_handle_t *handle, void **ptr_p)
{
    CUipcMemHandle h;
    CUdeviceptr p = 0;
    nxl_status_t st = nxl__cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    if (handle == NULL || ptr_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind cuda: ipc_open with a NULL argument");
    }
    st = nxl__cu_use_dev(dev);
    if (st != NXL_OK) {
        return st;
    }
    memcpy(&h, handle->bytes, sizeof(h));
    r = nxl__cu.cuIpcOpenMemHandle_v2(&p, h,
                                      CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS);
    if (r != CUDA_SUCCESS) {
        return nxl__cu_fail(r, "cuIpcOpenMemHandle");
    }
    *ptr_p = (void *)(uintptr_t)p;
    return NXL_OK;
}

/* cuda_ipc_close unmaps memory from cuda_ipc_open. */
static nxl_status_t
cuda_ipc_close(void *ptr)
{
    nxl_status_t st = nxl__cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    if (ptr == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "memkind cuda: NULL ptr");
    }
    st = cu_use_ptr(ptr);
    if (st != NXL_OK) {
        return st;
    }
    r = nxl__cu.cuIpcCloseMemHandle((CUdeviceptr)(uintptr_t)ptr);
    if (r != CUDA_SUCCESS) {
        return nxl__cu_fail(r, "cuIpcCloseMemHandle");
    }
    return NXL_OK;
}

/* cuda_mem_range finds the driver allocation holding ptr
 * (cuMemGetAddressRange): memory from cuda_alloc (for a re-aligned one,
 * the driver's larger allocation) or a mapping from cuda_ipc_open.
 * NXL_ERR_NOT_FOUND when ptr is not device memory. Thread-safe. */
static nxl_status_t
cuda_mem_range(const void *ptr, void **base_p, size_t *size_p)
{
    CUdeviceptr base = 0;
    size_t size = 0;
    nxl_status_t st = nxl__cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    if (ptr == NULL || base_p == NULL || size_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind cuda: mem_range with a NULL argument");
    }
    st = cu_use_ptr(ptr);
    if (st != NXL_OK) {
        return st;
    }
    r = nxl__cu.cuMemGetAddressRange_v2(&base, &size,
                                        (CUdeviceptr)(uintptr_t)ptr);
    if (r == CUDA_ERROR_NOT_FOUND || r == CUDA_ERROR_INVALID_VALUE) {
        return nxl__fail(NXL_ERR_NOT_FOUND,
                         "memkind cuda: %p is not in a device allocation: %s "
                         "(CUresult %d)",
                         ptr, nxl__cu_errstr(r), r);
    }
    if (r != CUDA_SUCCESS) {
        return nxl__cu_fail(r, "cuMemGetAddressRange");
    }
    *base_p = (void *)(uintptr_t)base;
    *size_p = size;
    return NXL_OK;
}

/* nxl__cuda_host_alloc allocates portable page-locked host memory. */
nxl_status_t
nxl__cuda_host_alloc(size_t size, void **ptr_p)
{
    void *p = NULL;
    nxl_status_t st = nxl__cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    st = nxl__cu_use_dev(0);
    if (st != NXL_OK) {
        return st;
    }
    r = nxl__cu.cuMemHostAlloc(&p, size, CU_MEMHOSTALLOC_PORTABLE);
    if (r != CUDA_SUCCESS) {
        return nxl__cu_fail(r, "cuMemHostAlloc");
    }
    *ptr_p = p;
    return NXL_OK;
}

/* nxl__cuda_host_free releases memory from nxl__cuda_host_alloc. */
void
nxl__cuda_host_free(void *ptr)
{
    CUresult r;

    if (ptr == NULL || !nxl__cuda_available()) {
        return;
    }
    if (nxl__cu_use_dev(0) != NXL_OK) {
        nxl__warn("memkind pinned: free(%p): %s", ptr, nxl_last_error());
        return;
    }
    r = nxl__cu.cuMemFreeHost(ptr);
    if (r != CUDA_SUCCESS) {
        nxl__warn("memkind pinned: cuMemFreeHost(%p): %s (CUresult %d)", ptr,
                  nxl__cu_errstr(r), r);
    }
}

static const nxl_memkind_ops_t nxl__cuda_ops = {
    .abi_version = NXL_MEMKIND_ABI_VERSION,
    .size = sizeof(nxl_memkind_ops_t),
    .name = "cuda",
    .type = NXL_MEMKIND_DEVICE,
    .mem = NXL_VRAM,
    .probe = cuda_probe,
    .device_count = cuda_device_count,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .copy = cuda_copy,
    .stream_create = cuda_stream_create,
    .stream_destroy = cuda_stream_destroy,
    .copy_async = cuda_copy_async,
    .stream_sync = cuda_stream_sync,
    .event_create = cuda_event_create,
    .event_destroy = cuda_event_destroy,
    .event_record = cuda_event_record,
    .event_query = cuda_event_query,
    .event_sync = cuda_event_sync,
    .ipc_get = cuda_ipc_get,
    .ipc_open = cuda_ipc_open,
    .ipc_close = cuda_ipc_close,
    .mem_range = cuda_mem_range,
    .copy_batch_async = nxl__cuda_copy_batch_async,
};

/* nxl_memkind_cuda returns the CUDA device kind (static; never NULL). Its
 * ops report NXL_ERR_NOT_SUPPORTED where CUDA cannot run. Thread-safe. */
const nxl_memkind_ops_t *
nxl_memkind_cuda(void)
{
    return &nxl__cuda_ops;
}
