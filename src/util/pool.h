/*
 * pool.h - a home for small fixed-size records on huge pages: the
 * per-region records that registration allocates by the hundred thousand
 * (the core's region records, the B+tree blocks that index them, a
 * backend's memory-handle records).
 *
 * Why: 100,000 such records spread by malloc over some 10,000 4 KiB pages
 * miss the TLB on every cold access (a page walk, in a VM a nested one,
 * before the cache miss itself); the same records in 2 MiB pages fit the
 * TLB. A pool set serves each size class (16-byte steps up to 48 bytes,
 * 64-byte steps from 64 to NXL__POOL_MAX; sizes of 64 bytes or more are
 * line-aligned) from chunks of its own:
 *
 *   - A chunk is an anonymous mapping aligned to NXL__POOL_CHUNK (2 MiB).
 *     Its descriptor lives apart (headers at 2 MiB-aligned addresses
 *     would all share one cache set); a free finds it from the record's
 *     address masked, in a small hash table of the set's chunks, so it
 *     needs no size.
 *   - A class's first chunks are small, on 4 KiB pages (MADV_NOHUGEPAGE):
 *     64 KiB, then doubling, until they hold NXL__POOL_SMALL_MAX (1 MiB,
 *     some 8,000 records of 128 bytes); only later chunks are 2 MiB with
 *     MADV_HUGEPAGE. An agent with few records pays the 4 KiB pages it
 *     touches, not 2 MiB per class, and a 2 MiB page at most doubles a
 *     class's footprint.
 *   - Records come from a chunk's free list, else its untouched tail
 *     (pages are touched only when used). Chunks with room are listed per
 *     class; a chunk that empties is unmapped, except one spare per class
 *     (so a register/deregister loop at a chunk's edge does not map and
 *     unmap each time), and no huge spare once the class is empty.
 *     nxl__pools_destroy unmaps everything.
 *   - A record larger than NXL__POOL_MAX gets a mapping of its own.
 *
 * Under AddressSanitizer or ThreadSanitizer (NXL_SANITIZE), or with
 * NXL_POOL_MALLOC defined at build time, every record comes from malloc
 * and goes back with free, so the sanitizers keep seeing use after free
 * and races on records.
 *
 * Allocation failures go through fault injection's alloc site (fault.h).
 *
 * Thread safety: a set made with NXL__POOLS_LOCKED takes its own mutex in
 * alloc and free; one made without relies on the caller's lock (every
 * alloc and free of its records, and destroy, under one lock).
 */
#ifndef NXL_UTIL_POOL_H
#define NXL_UTIL_POOL_H

#include <nxl/nxl.h>

#include <stdbool.h>
#include <stddef.h>

#define NXL__POOL_CHUNK ((size_t)2 << 20)     /* chunk size and alignment */
#define NXL__POOL_SMALL ((size_t)64 << 10)    /* a class's first chunk */
#define NXL__POOL_SMALL_MAX ((size_t)1 << 20) /* 4 KiB pages up to this */
#define NXL__POOL_MAX ((size_t)2048)          /* largest pooled record */

/* Flags of nxl__pools_create. */
#define NXL__POOLS_LOCKED 1u /* alloc/free take the set's own mutex */

typedef struct nxl__pools nxl__pools_t;

/* nxl__pools_create makes an empty set (it maps nothing until the first
 * alloc) into *ps_p. Returns NXL_OK or NXL_ERR_NOMEM (with a message). */
nxl_status_t nxl__pools_create(unsigned flags, nxl__pools_t **ps_p);

/* nxl__pools_destroy unmaps every chunk of ps (NULL is fine). Its records
 * must be dead: freed, or never to be read again. */
void nxl__pools_destroy(nxl__pools_t *ps);

/* nxl__pools_alloc returns size bytes (> 0), 16-byte aligned and 64-byte
 * aligned from 64 bytes, zeroed when zero, or NULL when out of memory
 * (no message: the caller says what failed). A NULL ps means malloc. */
void *nxl__pools_alloc(nxl__pools_t *ps, size_t size, bool zero);

/* nxl__pools_free gives back rec from nxl__pools_alloc(ps, ...) (NULL is
 * fine). ps must be the set it came from (NULL: it came from malloc). */
void nxl__pools_free(nxl__pools_t *ps, void *rec);

/* nxl__pools_stats_t: what a set holds (tests and benchmarks). */
typedef struct nxl__pools_stats {
    size_t chunks;      /* mappings, spares and large records included */
    size_t huge_chunks; /* of which NXL__POOL_CHUNK with MADV_HUGEPAGE */
    size_t mapped;      /* bytes mapped */
    size_t live;        /* records allocated and not freed */
} nxl__pools_stats_t;

/* nxl__pools_stats fills *st (zeros for a NULL ps or a malloc build). */
void nxl__pools_stats(nxl__pools_t *ps, nxl__pools_stats_t *st);

/* nxl__pools_enabled says whether this build pools (false: malloc). */
bool nxl__pools_enabled(void);

#endif /* NXL_UTIL_POOL_H */
