/*
 * xt_fakedev.h - a fake device memory kind for tests ("fakedev": type
 * NXL_MEMKIND_DEVICE, mem NXL_VRAM), so that device paths run on machines
 * without a GPU.
 *
 * Memory is host memory (each allocation a memfd mapped MAP_SHARED, in
 * whole pages, filled with 0xa5 like uninitialised device memory), on 2
 * devices. Copies made with copy_async
 * are really asynchronous: each stream has a worker thread that runs its
 * queue in order; an event recorded on a stream completes when the worker
 * reaches it, and until then event_query returns NXL_IN_PROG. An event
 * reports the first failure among the copies queued on its stream since
 * the previous event of that stream; stream_sync reports the first failure
 * since the previous stream_sync. stream_destroy waits for its queue. An
 * event may be destroyed while still pending (as with CUDA).
 *
 * IPC works between processes of one host as CUDA IPC does: ipc_get
 * exports the whole allocation holding a pointer as {magic, pid, memfd
 * number, size, file identity}; ipc_open in another process fetches the
 * memfd with pidfd_getfd (or /proc/<pid>/fd), checks it is that file and
 * maps all of it; ipc_close unmaps. A handle of the calling process itself
 * is refused (CUDA refuses it too). mem_range finds the allocation or IPC
 * mapping holding a pointer.
 *
 * Knobs and counters are process-wide and thread-safe; each test case runs
 * in its own process, so they start at zero.
 */
#ifndef NXL_TESTS_XT_FAKEDEV_H
#define NXL_TESTS_XT_FAKEDEV_H

#include <nxl/nxl_memkind.h>

#include <stdint.h>

/* xt_fakedev_ops returns the fake kind's table (static). */
const nxl_memkind_ops_t *xt_fakedev_ops(void);

/* xt_fakedev_install makes the fake the device kind
 * (nxl_memkind_set_device); aborts if that fails. */
void xt_fakedev_install(void);

/* xt_fakedev_reset zeroes the copy counters (async, blocking, bytes,
 * direction mismatches) and
 * clears the knobs; the live counts track objects and are left alone. */
void xt_fakedev_reset(void);

/* xt_fakedev_set_delay_us makes the stream workers sleep us microseconds
 * before each async copy (0 = none), so a test can observe NXL_IN_PROG. */
void xt_fakedev_set_delay_us(unsigned us);

/* xt_fakedev_fail_next makes the next n copies (async ones when their
 * worker runs them, blocking ones at once) fail with NXL_ERR_BACKEND
 * "fakedev: injected copy failure" without copying. */
void xt_fakedev_fail_next(unsigned n);

/* Counters: async copies executed by workers, blocking copies done, bytes
 * moved by both, and live allocations, streams and events. */
uint64_t xt_fakedev_async_copies(void);
uint64_t xt_fakedev_sync_copies(void);
uint64_t xt_fakedev_bytes_copied(void);
long xt_fakedev_live_allocs(void);
long xt_fakedev_live_streams(void);
long xt_fakedev_live_events(void);
/* xt_fakedev_dir_mismatches counts copies (blocking and queued) whose
 * nxl_copy_dir_t does not match where their pointers are: fake device
 * memory (allocations and IPC mappings) or not. Such copies still run, as
 * CUDA runs them (unified addressing); tests assert the count. */
uint64_t xt_fakedev_dir_mismatches(void);
/* xt_fakedev_set_batch_mode sets how copy_batch_async behaves (reset
 * restores XT_FD_BATCH_OK): queue every pair; NXL_ERR_NOT_SUPPORTED (a
 * driver before CUDA 12.8); or queue the first half and fail with
 * NXL_ERR_BACKEND. xt_fakedev_batches counts the batches it accepted. */
#define XT_FD_BATCH_OK 0
#define XT_FD_BATCH_UNSUPPORTED 1
#define XT_FD_BATCH_FAIL_HALF 2
void xt_fakedev_set_batch_mode(int mode);
uint64_t xt_fakedev_batches(void);
/* xt_fakedev_batches_mapped counts batches (accepted or not) that came
 * with NXL_COPY_BATCH_MAPPED. */
uint64_t xt_fakedev_batches_mapped(void);

/* xt_fakedev_live_ipc_maps counts mappings from ipc_open not yet closed. */
long xt_fakedev_live_ipc_maps(void);

#endif /* NXL_TESTS_XT_FAKEDEV_H */
