/*
 * huge_map.h - buffers for benchmarks that a device reads and writes
 * directly (O_DIRECT): memory on transparent huge pages, and a check of
 * how much of it the kernel really backed with them. Shared by nxl-bench's
 * storage pool (tools/nxl-bench) and the issue-5 POSIX bench
 * (bench/posix/nxl_posix_bench.c). Plain C11 + POSIX, no NXL headers.
 */
#ifndef NXL_TOOLS_HUGE_MAP_H
#define NXL_TOOLS_HUGE_MAP_H

#include <stddef.h>
#include <stdint.h>

/* bench_map_huge allocates size bytes of private, prefaulted memory,
 * 2 MiB-aligned and marked MADV_HUGEPAGE (and MADV_DONTFORK) before the
 * first touch, so that transparent huge pages back it where the kernel
 * allows; else 4 KiB pages. Returns NULL when out of memory; free with
 * munmap(p, size) (nxl-bench: bench_unmap). Thread-safe. */
uint8_t *bench_map_huge(size_t size);

/* bench_huge_bytes returns how many bytes of [p, p + size) the kernel
 * backs with huge pages now: the AnonHugePages of the mappings of
 * /proc/self/smaps that overlap the range (whole mappings; capped at
 * size), 0 when smaps cannot be read. Thread-safe. */
size_t bench_huge_bytes(const void *p, size_t size);

#endif
