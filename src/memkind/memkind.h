/*
 * memkind.h - internals of the memory kinds (src/memkind), shared by its
 * files: the host and pinned kinds reuse the synchronous stream and event
 * ops, and the pinned kind borrows the CUDA driver for cuMemHostAlloc.
 */
#ifndef NXL_MEMKIND_MEMKIND_H
#define NXL_MEMKIND_MEMKIND_H

#include <nxl/nxl_memkind.h>

#include "util.h"

/* ---- host.c: synchronous streams and events (host and pinned kinds) ---- */

/* nxl__hostq_* are the stream and event ops of the host kinds: there is no
 * queue, copy_async copies before it returns, stream_sync has nothing to
 * wait for, and an event is done as soon as it is recorded. Handles are
 * small allocations so that each one is distinct; thread-safe. */
nxl_status_t nxl__hostq_stream_create(int dev, nxl_stream_t **stream_p);
void nxl__hostq_stream_destroy(nxl_stream_t *stream);
nxl_status_t nxl__hostq_copy(void *dst, const void *src, size_t len,
                             nxl_copy_dir_t dir);
nxl_status_t nxl__hostq_copy_async(void *dst, const void *src, size_t len,
                                   nxl_copy_dir_t dir, nxl_stream_t *stream);
nxl_status_t nxl__hostq_stream_sync(nxl_stream_t *stream);
nxl_status_t nxl__hostq_event_create(nxl_event_t **event_p);
void nxl__hostq_event_destroy(nxl_event_t *event);
nxl_status_t nxl__hostq_event_record(nxl_event_t *event, nxl_stream_t *stream);
nxl_status_t nxl__hostq_event_query(nxl_event_t *event);
nxl_status_t nxl__hostq_event_sync(nxl_event_t *event);

/* nxl__hostq_ipc_* report NXL_ERR_NOT_SUPPORTED: host memory has no IPC
 * handle (the SHM backend shares host memory its own way). */
nxl_status_t nxl__hostq_ipc_get(void *ptr, nxl_ipc_handle_t *handle_p);
nxl_status_t nxl__hostq_ipc_open(int dev, const nxl_ipc_handle_t *handle,
                                 void **ptr_p);
nxl_status_t nxl__hostq_ipc_close(void *ptr);

/* nxl__hostq_device_count writes 1 (host kinds have one "device"). */
nxl_status_t nxl__hostq_device_count(int *count_p);

/* NXL__HOSTQ_OPS fills the fields of an nxl_memkind_ops_t initializer that
 * the host kinds share: device count, copies, streams, events and IPC. */
#define NXL__HOSTQ_OPS                                                         \
    .device_count = nxl__hostq_device_count, .copy = nxl__hostq_copy,          \
    .stream_create = nxl__hostq_stream_create,                                 \
    .stream_destroy = nxl__hostq_stream_destroy,                               \
    .copy_async = nxl__hostq_copy_async,                                       \
    .stream_sync = nxl__hostq_stream_sync,                                     \
    .event_create = nxl__hostq_event_create,                                   \
    .event_destroy = nxl__hostq_event_destroy,                                 \
    .event_record = nxl__hostq_event_record,                                   \
    .event_query = nxl__hostq_event_query,                                     \
    .event_sync = nxl__hostq_event_sync, .ipc_get = nxl__hostq_ipc_get,        \
    .ipc_open = nxl__hostq_ipc_open, .ipc_close = nxl__hostq_ipc_close

/* ---- cuda.c: the driver, for the pinned kind --------------------------- */

/* nxl__cuda_available loads the driver once and returns true when a CUDA
 * device can be used. It leaves nxl_last_error() alone (the pinned kind
 * asks without failing). The answer never changes within a process.
 * Thread-safe. */
bool nxl__cuda_available(void);

/* nxl__cuda_host_alloc allocates size bytes of page-locked, portable host
 * memory with cuMemHostAlloc (page aligned). Call only after
 * nxl__cuda_available returned true. Returns NXL_OK or NXL_ERR_NOMEM /
 * NXL_ERR_BACKEND with the driver's message. Thread-safe. */
nxl_status_t nxl__cuda_host_alloc(size_t size, void **ptr_p);

/* nxl__cuda_host_free releases memory from nxl__cuda_host_alloc; logs a
 * driver failure. Accepts NULL. Thread-safe. */
void nxl__cuda_host_free(void *ptr);

#endif /* NXL_MEMKIND_MEMKIND_H */
