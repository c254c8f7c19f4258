/*
 * host.c - the pageable host kind (posix_memalign + memcpy) and the
 * synchronous stream/event ops the host kinds share.
 *
 * Host memory needs no queue: copy_async copies before it returns, so a
 * stream is only a distinct handle and every event is done once recorded.
 * A caller written for a device kind (record, then poll the event) works
 * unchanged on host memory.
 */
#include "memkind.h"

#include <stdlib.h>
#include <string.h>

#define NXL__HOST_ALIGN 4096

/* The handles of the host kinds carry a tag so that a handle of another
 * kind passed by mistake is caught rather than misread. */
#define NXL__HOSTQ_STREAM_TAG 0x6e786c73u /* "nxls" */
#define NXL__HOSTQ_EVENT_TAG 0x6e786c65u  /* "nxle" */

struct nxl__hostq_handle {
    uint32_t tag;
    int dev;
};

/* nxl__hostq_check_copy validates the arguments of a host copy: both
 * pointers non-NULL unless len is 0. */
static nxl_status_t
nxl__hostq_check_copy(void *dst, const void *src, size_t len)
{
    if (len != 0 && (dst == NULL || src == NULL)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind: copy of %zu bytes with a NULL pointer", len);
    }
    return NXL_OK;
}

/* nxl__hostq_copy copies len bytes with memcpy (the regions must not
 * overlap); dir is not used since both sides are host memory. Returns
 * NXL_OK or NXL_ERR_INVALID_PARAM. Thread-safe. */
nxl_status_t
nxl__hostq_copy(void *dst, const void *src, size_t len, nxl_copy_dir_t dir)
{
    nxl_status_t st = nxl__hostq_check_copy(dst, src, len);

    (void)dir;
    if (st != NXL_OK) {
        return st;
    }
    if (len != 0) {
        memcpy(dst, src, len);
    }
    return NXL_OK;
}

/* nxl__hostq_stream_create returns a new stream handle (owned by the
 * caller, released with nxl__hostq_stream_destroy). NXL_OK, NXL_ERR_NOMEM
 * or NXL_ERR_INVALID_PARAM. Thread-safe. */
nxl_status_t
nxl__hostq_stream_create(int dev, nxl_stream_t **stream_p)
{
    struct nxl__hostq_handle *h;

    if (stream_p == NULL || dev != 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind: host stream on device %d (only 0)", dev);
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "memkind: out of memory");
    }
    h->tag = NXL__HOSTQ_STREAM_TAG;
    *stream_p = (nxl_stream_t *)h;
    return NXL_OK;
}

/* nxl__hostq_stream_destroy frees a stream handle; nothing is queued, so
 * there is nothing to wait for. Accepts NULL. */
void
nxl__hostq_stream_destroy(nxl_stream_t *stream)
{
    struct nxl__hostq_handle *h = (struct nxl__hostq_handle *)stream;

    if (h != NULL) {
        h->tag = 0;
        free(h);
    }
}

/* nxl__hostq_is_stream checks a handle came from nxl__hostq_stream_create. */
static nxl_status_t
nxl__hostq_is_stream(nxl_stream_t *stream)
{
    const struct nxl__hostq_handle *h = (struct nxl__hostq_handle *)stream;

    if (h == NULL || h->tag != NXL__HOSTQ_STREAM_TAG) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind: not a host-kind stream");
    }
    return NXL_OK;
}

/* nxl__hostq_copy_async copies at once (host memory needs no queue), so
 * the buffers may be reused when it returns. Returns NXL_OK or
 * NXL_ERR_INVALID_PARAM. */
nxl_status_t
nxl__hostq_copy_async(void *dst, const void *src, size_t len,
                      nxl_copy_dir_t dir, nxl_stream_t *stream)
{
    nxl_status_t st = nxl__hostq_is_stream(stream);

    if (st != NXL_OK) {
        return st;
    }
    return nxl__hostq_copy(dst, src, len, dir);
}

/* nxl__hostq_stream_sync has nothing to wait for. NXL_OK or
 * NXL_ERR_INVALID_PARAM for a foreign handle. */
nxl_status_t
nxl__hostq_stream_sync(nxl_stream_t *stream)
{
    return nxl__hostq_is_stream(stream);
}

/* nxl__hostq_event_create returns a new event handle (owned by the caller,
 * released with nxl__hostq_event_destroy). Thread-safe. */
nxl_status_t
nxl__hostq_event_create(nxl_event_t **event_p)
{
    struct nxl__hostq_handle *h;

    if (event_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "memkind: NULL event_p");
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "memkind: out of memory");
    }
    h->tag = NXL__HOSTQ_EVENT_TAG;
    *event_p = (nxl_event_t *)h;
    return NXL_OK;
}

/* nxl__hostq_event_destroy frees an event handle. Accepts NULL. */
void
nxl__hostq_event_destroy(nxl_event_t *event)
{
    struct nxl__hostq_handle *h = (struct nxl__hostq_handle *)event;

    if (h != NULL) {
        h->tag = 0;
        free(h);
    }
}

/* nxl__hostq_is_event checks a handle came from nxl__hostq_event_create. */
static nxl_status_t
nxl__hostq_is_event(nxl_event_t *event)
{
    const struct nxl__hostq_handle *h = (struct nxl__hostq_handle *)event;

    if (h == NULL || h->tag != NXL__HOSTQ_EVENT_TAG) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind: not a host-kind event");
    }
    return NXL_OK;
}

/* nxl__hostq_event_record marks a point that is already reached. */
nxl_status_t
nxl__hostq_event_record(nxl_event_t *event, nxl_stream_t *stream)
{
    nxl_status_t st = nxl__hostq_is_event(event);

    if (st != NXL_OK) {
        return st;
    }
    return nxl__hostq_is_stream(stream);
}

/* nxl__hostq_event_query: every recorded point is done, so NXL_OK (or
 * NXL_ERR_INVALID_PARAM for a foreign handle). */
nxl_status_t
nxl__hostq_event_query(nxl_event_t *event)
{
    return nxl__hostq_is_event(event);
}

/* nxl__hostq_event_sync has nothing to wait for. */
nxl_status_t
nxl__hostq_event_sync(nxl_event_t *event)
{
    return nxl__hostq_is_event(event);
}

/* nxl__hostq_ipc_get: host kinds have no IPC handles. */
nxl_status_t
nxl__hostq_ipc_get(void *ptr, nxl_ipc_handle_t *handle_p)
{
    (void)ptr;
    (void)handle_p;
    return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                     "memkind: host memory has no IPC handle");
}

/* nxl__hostq_ipc_open: host kinds have no IPC handles. */
nxl_status_t
nxl__hostq_ipc_open(int dev, const nxl_ipc_handle_t *handle, void **ptr_p)
{
    (void)dev;
    (void)handle;
    (void)ptr_p;
    return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                     "memkind: host memory has no IPC handle");
}

/* nxl__hostq_ipc_close: host kinds have no IPC handles. */
nxl_status_t
nxl__hostq_ipc_close(void *ptr)
{
    (void)ptr;
    return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                     "memkind: host memory has no IPC handle");
}

/* nxl__hostq_device_count: host kinds have exactly one device, 0. */
nxl_status_t
nxl__hostq_device_count(int *count_p)
{
    if (count_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "memkind: NULL count_p");
    }
    *count_p = 1;
    return NXL_OK;
}

/* host_probe: pageable host memory is always available. */
static nxl_status_t
host_probe(void)
{
    return NXL_OK;
}

/* host_alloc returns size bytes (at least 1) aligned to 4096 from
 * posix_memalign; the caller frees them with host_free. NXL_OK,
 * NXL_ERR_NOMEM or NXL_ERR_INVALID_PARAM. Thread-safe. */
static nxl_status_t
host_alloc(int dev, size_t size, void **ptr_p)
{
    void *p = NULL;
    int r;

    if (ptr_p == NULL || dev != 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind host: alloc on device %d (only 0)", dev);
    }
    r = posix_memalign(&p, NXL__HOST_ALIGN, size != 0 ? size : 1);
    if (r != 0) {
        return nxl__fail_errno(r, "memkind host: posix_memalign(%zu)", size);
    }
    *ptr_p = p;
    return NXL_OK;
}

/* host_free releases memory from host_alloc. Accepts NULL. */
static void
host_free(int dev, void *ptr, size_t size)
{
    (void)dev;
    (void)size;
    free(ptr);
}

static const nxl_memkind_ops_t nxl__host_ops = {
    .abi_version = NXL_MEMKIND_ABI_VERSION,
    .size = sizeof(nxl_memkind_ops_t),
    .name = "host",
    .type = NXL_MEMKIND_HOST,
    .mem = NXL_DRAM,
    .probe = host_probe,
    .alloc = host_alloc,
    .free = host_free,
    NXL__HOSTQ_OPS,
};

/* nxl_memkind_host returns the pageable host kind (static; never NULL).
 * Thread-safe. */
const nxl_memkind_ops_t *
nxl_memkind_host(void)
{
    return &nxl__host_ops;
}
