/*
 * fault.h - fault injection: make the calls that can fail in production
 * fail on purpose, at chosen rates, so that every error path runs
 * (etcd's and SQLite's habit). Off unless NXL_FAULT is set:
 *
 *   NXL_FAULT="alloc=0.01,send=0.01,recv=0.01,cma=0.01,uring=0.01,ucx=0.01"
 *   NXL_FAULT="all=0.01"      every site at 1%
 *   NXL_FAULT_SEED=7          the pseudo-random sequence (per thread)
 *
 * The library's objects are linked with -Wl,--wrap for each hooked call
 * (src/CMakeLists.txt), so the call sites stay as they are: a wrapper in
 * fault.c asks nxl__fault_hit() and either fails the call the way the
 * real one fails (NULL/ENOMEM, -1 with errno, a UCX error status) or
 * passes it on. Disabled, a hooked call costs one predictable branch.
 * The spec is read from the environment when the library loads.
 *
 * Sites and how they fail:
 *   alloc  malloc, calloc, realloc, strdup, posix_memalign, aligned_alloc:
 *          NULL (or ENOMEM)
 *   send   sendmsg, send, writev: -1, ENOBUFS
 *   recv   recvmsg, recv, readv: -1, ECONNRESET
 *   cma    process_vm_readv, process_vm_writev: -1, ENOMEM
 *   uring  io_uring_submit: -ENOMEM
 *   ucx    ucp_put_nbx, ucp_get_nbx, ucp_am_send_nbx, ucp_ep_flush_nbx:
 *          UCS_ERR_NO_MEMORY; ucp_mem_map: UCS_ERR_NO_MEMORY
 */
#ifndef NXL_UTIL_FAULT_H
#define NXL_UTIL_FAULT_H

#include <nxl/nxl.h>

#include <stdatomic.h>
#include <stdbool.h>

typedef enum nxl__fault_site {
    NXL__FI_ALLOC = 0,
    NXL__FI_SEND,
    NXL__FI_RECV,
    NXL__FI_CMA,
    NXL__FI_URING,
    NXL__FI_UCX,
    NXL__FI_SITES
} nxl__fault_site_t;

/* nxl__fault_on is nonzero while a spec with a nonzero rate is set. */
extern atomic_int nxl__fault_on;

/* nxl__fault_hit_slow: see nxl__fault_hit. */
bool nxl__fault_hit_slow(nxl__fault_site_t site);

/* nxl__fault_hit says whether this call at site should fail now.
 * Thread-safe. */
static inline bool
nxl__fault_hit(nxl__fault_site_t site)
{
    return __builtin_expect(
               atomic_load_explicit(&nxl__fault_on, memory_order_relaxed) != 0,
               0) &&
           nxl__fault_hit_slow(site);
}

/* nxl__fault_set replaces the spec (same syntax as NXL_FAULT; NULL or ""
 * turns injection off) and the seed, and returns NXL_OK or
 * NXL_ERR_INVALID_PARAM for a bad spec (then nothing changes). For tests;
 * not thread-safe against calls in flight. */
nxl_status_t nxl__fault_set(const char *spec, unsigned long long seed);

/* nxl__fault_count returns how many calls at site were failed so far. */
unsigned long long nxl__fault_count(nxl__fault_site_t site);

#endif /* NXL_UTIL_FAULT_H */
