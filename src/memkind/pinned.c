/*
 * pinned.c - the page-locked host kind.
 *
 * With a usable CUDA driver the memory comes from cuMemHostAlloc
 * (portable), so device copies to and from it run at DMA speed. Without
 * one it is an anonymous mmap locked with mlock, best effort: a failed
 * mlock (RLIMIT_MEMLOCK, no CAP_IPC_LOCK) is logged once and the memory is
 * still returned, since pinning only matters for speed. Which path serves
 * a process is decided once (nxl__cuda_available never changes its answer),
 * so free always matches alloc. Copies, streams and events are those of
 * the host kind.
 */
#include "memkind.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static atomic_int nxl__pinned_mlock_warned;

/* pinned_span rounds size (at least 1) up to whole pages: what mmap,
 * mlock and munmap see for an allocation of size bytes. */
static size_t
pinned_span(size_t size)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t pg = page > 0 ? (size_t)page : 4096;

    if (size == 0) {
        size = 1;
    }
    return (size + pg - 1) / pg * pg;
}

/* pinned_probe: page-locked host memory is always available (mlock is
 * best effort). */
static nxl_status_t
pinned_probe(void)
{
    return NXL_OK;
}

/* pinned_alloc returns size bytes of page-aligned (>= 4096) page-locked
 * memory; the caller frees it with pinned_free and the same size. NXL_OK,
 * NXL_ERR_NOMEM, NXL_ERR_INVALID_PARAM or a driver error. Thread-safe. */
static nxl_status_t
pinned_alloc(int dev, size_t size, void **ptr_p)
{
    size_t span = pinned_span(size);
    void *p;

    if (ptr_p == NULL || dev != 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind pinned: alloc on device %d (only 0)", dev);
    }
    if (span < size) {
        return nxl__fail(NXL_ERR_NOMEM, "memkind pinned: size %zu too large",
                         size);
    }
    if (nxl__cuda_available()) {
        return nxl__cuda_host_alloc(span, ptr_p);
    }
    p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
             -1, 0);
    if (p == MAP_FAILED) {
        return nxl__fail_errno(errno, "memkind pinned: mmap(%zu)", span);
    }
    if (mlock(p, span) != 0) {
        int err = errno;

        if (atomic_exchange(&nxl__pinned_mlock_warned, 1) == 0) {
            nxl__warn("memkind pinned: mlock(%zu bytes) failed: %s; pinned "
                      "memory is pageable (raise RLIMIT_MEMLOCK to lock it)",
                      span, strerror(err));
        }
    }
    *ptr_p = p;
    return NXL_OK;
}

/* pinned_free releases memory from pinned_alloc; size must be the size
 * given to alloc. Accepts NULL. Thread-safe. */
static void
pinned_free(int dev, void *ptr, size_t size)
{
    size_t span = pinned_span(size);

    (void)dev;
    if (ptr == NULL) {
        return;
    }
    if (nxl__cuda_available()) {
        nxl__cuda_host_free(ptr);
        return;
    }
    /* munlock is implied by munmap; an unlocked range is fine too. */
    if (munmap(ptr, span) != 0) {
        nxl__warn("memkind pinned: munmap(%p, %zu): %s", ptr, span,
                  strerror(errno));
    }
}

static const nxl_memkind_ops_t nxl__pinned_ops = {
    .abi_version = NXL_MEMKIND_ABI_VERSION,
    .size = sizeof(nxl_memkind_ops_t),
    .name = "pinned",
    .type = NXL_MEMKIND_PINNED,
    .mem = NXL_DRAM,
    .probe = pinned_probe,
    .alloc = pinned_alloc,
    .free = pinned_free,
    NXL__HOSTQ_OPS,
};

/* nxl_memkind_pinned returns the page-locked host kind (static; never
 * NULL). Thread-safe. */
const nxl_memkind_ops_t *
nxl_memkind_pinned(void)
{
    return &nxl__pinned_ops;
}

int
nxl_memkind_pinned_mapped(void)
{
    return nxl__cuda_available() ? 1 : 0;
}
