/*
 * nxl_memkind.h - memory kinds: host, pinned host and device memory behind
 * one small ops table.
 *
 * The KV layer allocates, copies and shares memory through these tables so
 * that one executor serves plain host memory, pinned host memory and GPU
 * memory. The CUDA kind loads libcuda.so.1 with dlopen on first use; CUDA is
 * never needed to build, and without a driver or a GPU the kind reports
 * NXL_ERR_NOT_SUPPORTED with the reason in nxl_last_error().
 *
 * A program (or a test) may install its own device kind with
 * nxl_memkind_set_device, e.g. host memory behind the same ops with copies
 * done on a worker thread, so the device paths run on machines without GPU.
 *
 * Thread-safety: the getters and nxl_memkind_set_device are thread-safe.
 * Every op of a kind is thread-safe unless noted; a stream is used by one
 * thread at a time.
 */
#ifndef NXL_NXL_MEMKIND_H
#define NXL_NXL_MEMKIND_H

#include <nxl/nxl.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * NXL_MEMKIND_ABI_VERSION names the layout of nxl_memkind_ops_t a table was
 * built against. Layouts only grow at the end, and every version keeps the
 * fields of the ones before:
 *   1: abi_version .. ipc_close
 *   2: adds mem_range
 *   3: adds copy_batch_async
 * nxl_memkind_set_device accepts every version up to this one whose size
 * covers that version's fields. Code reading an op added after version 1
 * goes through NXL_MEMKIND_HAS, which reads the op of a table too small to
 * hold it (an older build) as absent, i.e. NXL_ERR_NOT_SUPPORTED.
 */
#define NXL_MEMKIND_ABI_VERSION 3

/* Which memory a kind hands out. */
typedef enum nxl_memkind_type {
    NXL_MEMKIND_HOST = 0,   /* pageable host memory (malloc) */
    NXL_MEMKIND_PINNED = 1, /* page-locked host memory */
    NXL_MEMKIND_DEVICE = 2  /* device memory (VRAM) */
} nxl_memkind_type_t;

/* Direction of a copy, as cudaMemcpyKind without "default". */
typedef enum nxl_copy_dir {
    NXL_COPY_H2H = 0,
    NXL_COPY_H2D = 1,
    NXL_COPY_D2H = 2,
    NXL_COPY_D2D = 3
} nxl_copy_dir_t;

/* Opaque per-kind stream and event handles (cudaStream_t, cudaEvent_t). */
typedef struct nxl_stream nxl_stream_t;
typedef struct nxl_event nxl_event_t;

/* An IPC handle: opaque bytes another process of this host opens. */
#define NXL_IPC_HANDLE_SIZE 64
typedef struct nxl_ipc_handle {
    uint8_t bytes[NXL_IPC_HANDLE_SIZE];
} nxl_ipc_handle_t;

/*
 * nxl_memkind_ops_t: a memory kind. Every op returns NXL_OK or an error with
 * an nxl_last_error() message; NXL_ERR_NOT_SUPPORTED where the kind cannot
 * do it (a host kind has no IPC). `dev` is the device ordinal (0 for host
 * kinds). Ops that a kind leaves NULL read as NOT_SUPPORTED.
 */
typedef struct nxl_memkind_ops {
    uint32_t abi_version; /* NXL_MEMKIND_ABI_VERSION */
    uint32_t size;        /* sizeof(nxl_memkind_ops_t) of the builder */
    const char *name;     /* "host", "pinned", "cuda", ... */
    nxl_memkind_type_t type;
    nxl_mem_t mem; /* the nxl_mem_t its memory registers as */

    /* probe checks the kind can run here (driver loaded, device present). */
    nxl_status_t (*probe)(void);
    /* device_count writes the number of devices (1 for host kinds). */
    nxl_status_t (*device_count)(int *count_p);

    /* alloc returns size bytes on dev, aligned to at least 4096 bytes. */
    nxl_status_t (*alloc)(int dev, size_t size, void **ptr_p);
    /* free releases memory from alloc. Accepts NULL. */
    void (*free)(int dev, void *ptr, size_t size);

    /* copy copies len bytes and returns when they are in place. */
    nxl_status_t (*copy)(void *dst, const void *src, size_t len,
                         nxl_copy_dir_t dir);

    /* stream_create/destroy: an ordered queue of async copies on dev.
     * stream_destroy waits for queued work first. */
    nxl_status_t (*stream_create)(int dev, nxl_stream_t **stream_p);
    void (*stream_destroy)(nxl_stream_t *stream);
    /* copy_async queues a copy on stream; src and dst must stay valid until
     * an event recorded after it completes. */
    nxl_status_t (*copy_async)(void *dst, const void *src, size_t len,
                               nxl_copy_dir_t dir, nxl_stream_t *stream);
    /* stream_sync waits for everything queued on stream. */
    nxl_status_t (*stream_sync)(nxl_stream_t *stream);

    /* event_create/destroy; event_record marks the point reached by stream;
     * event_query returns NXL_OK when that point is done, NXL_IN_PROG when
     * not yet, or the error of the failed work; event_sync waits. */
    nxl_status_t (*event_create)(nxl_event_t **event_p);
    void (*event_destroy)(nxl_event_t *event);
    nxl_status_t (*event_record)(nxl_event_t *event, nxl_stream_t *stream);
    nxl_status_t (*event_query)(nxl_event_t *event);
    nxl_status_t (*event_sync)(nxl_event_t *event);

    /* ipc_get exports memory from alloc; ipc_open maps a handle from
     * another process of this host at *ptr_p; ipc_close unmaps it. */
    nxl_status_t (*ipc_get)(void *ptr, nxl_ipc_handle_t *handle_p);
    nxl_status_t (*ipc_open)(int dev, const nxl_ipc_handle_t *handle,
                             void **ptr_p);
    nxl_status_t (*ipc_close)(void *ptr);

    /* ---- version 2 (read with NXL_MEMKIND_HAS) ---- */

    /* mem_range finds the allocation that holds ptr: memory from alloc, or
     * a mapping from ipc_open. Writes its first byte and its size (as the
     * kind rounded it); NXL_ERR_NOT_FOUND when ptr is not memory of this
     * kind. ipc_get of *base_p exports the whole allocation, and ipc_open
     * in a peer maps it from its first byte (CUDA:
     * cuMemGetAddressRange). */
    nxl_status_t (*mem_range)(const void *ptr, void **base_p, size_t *size_p);

    /* ---- version 3 (read with NXL_MEMKIND_HAS) ---- */

    /* copy_batch_async queues n copies (lens[i] bytes from srcs[i] to
     * dsts[i], all in direction dir) on stream as one submission. The batch
     * is ordered with the rest of the stream; copies within it are not
     * ordered, so they must not overlap. The arrays are read before it
     * returns; the buffers, as for copy_async, must stay valid until an
     * event recorded after it completes. flags: NXL_COPY_BATCH_MAPPED
     * promises that every buffer is memory of a device kind or page-locked
     * host memory the device addresses (the pinned kind's, with CUDA),
     * which lets the kind copy with a kernel on the device instead of the
     * copy engines; never set it for other memory (a kernel touching it
     * would fault). NXL_ERR_NOT_SUPPORTED when the kind has no batched copy
     * (CUDA before 12.8 without the kernel): the caller then queues
     * copy_async per pair. After another error some copies of the batch
     * may be queued; queuing the whole batch again per pair is safe. A
     * stream is used by one thread at a time. */
    nxl_status_t (*copy_batch_async)(void *const *dsts, const void *const *srcs,
                                     const size_t *lens, size_t n,
                                     nxl_copy_dir_t dir, unsigned flags,
                                     nxl_stream_t *stream);
} nxl_memkind_ops_t;

/* copy_batch_async flags: every buffer is device-addressable (above). */
#define NXL_COPY_BATCH_MAPPED 0x1u

/* NXL_MEMKIND_V1_SIZE and NXL_MEMKIND_V2_SIZE are the sizes of version 1
 * and version 2 tables. */
#define NXL_MEMKIND_V1_SIZE offsetof(nxl_memkind_ops_t, mem_range)
#define NXL_MEMKIND_V2_SIZE offsetof(nxl_memkind_ops_t, copy_batch_async)

/* NXL_MEMKIND_HAS(ops, op) is true when table ops holds op (its size
 * covers the field) and op is set; use it for ops added after version 1. */
#define NXL_MEMKIND_HAS(ops, op)                                               \
    ((ops)->size >= offsetof(nxl_memkind_ops_t, op) + sizeof((ops)->op) &&     \
     (ops)->op != NULL)

/* nxl_memkind_host returns the pageable host kind (posix_memalign 4096,
 * memcpy). Its streams and events, like the pinned kind's, are
 * synchronous: copy_async copies before it returns and an event is done as
 * soon as it is recorded; it has no IPC (NXL_ERR_NOT_SUPPORTED). Never
 * NULL. */
NXL_API const nxl_memkind_ops_t *nxl_memkind_host(void);

/* nxl_memkind_pinned returns the page-locked host kind: cuMemHostAlloc when
 * CUDA is present, else page-aligned memory locked with mlock (best effort:
 * a failed mlock, e.g. RLIMIT_MEMLOCK, still returns the memory and logs
 * once). Never NULL. */
NXL_API const nxl_memkind_ops_t *nxl_memkind_pinned(void);

/* nxl_memkind_pinned_mapped returns 1 when the pinned kind's memory comes
 * from the CUDA driver (cuMemHostAlloc, portable), so a device copy reaches
 * it by DMA, and 0 when it is mlock'ed host memory. The answer never
 * changes within a process. Thread-safe. */
NXL_API int nxl_memkind_pinned_mapped(void);

/* nxl_memkind_cuda returns the CUDA device kind. Its probe loads
 * libcuda.so.1 and reports NXL_ERR_NOT_SUPPORTED ("no CUDA driver:
 * libcuda.so.1: cannot open ...", "no CUDA device") where it cannot run;
 * every other op then reports the same. Never NULL. */
NXL_API const nxl_memkind_ops_t *nxl_memkind_cuda(void);

/* nxl_memkind_device returns the device kind in use: the one installed with
 * nxl_memkind_set_device, else the CUDA kind. Never NULL. */
NXL_API const nxl_memkind_ops_t *nxl_memkind_device(void);

/* nxl_memkind_set_device installs ops as the device kind (NULL restores
 * CUDA). ops must live until replaced. Returns NXL_OK, or
 * NXL_ERR_INVALID_PARAM for an abi_version outside 1..NXL_MEMKIND_ABI_VERSION,
 * a size too small for that version's table, no name, or a type that is
 * not NXL_MEMKIND_DEVICE. */
NXL_API nxl_status_t nxl_memkind_set_device(const nxl_memkind_ops_t *ops);

/* nxl_memkind_copy copies len bytes between memory of kinds src_kind and
 * dst_kind with whichever kind can do it (the device kind when either side
 * is device memory). Blocking. */
NXL_API nxl_status_t nxl_memkind_copy(void *dst, nxl_memkind_type_t dst_kind,
                                      const void *src,
                                      nxl_memkind_type_t src_kind, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* NXL_NXL_MEMKIND_H */
