/*
 * huge_map.c - huge-page buffers for O_DIRECT benchmarks (huge_map.h).
 *
 * Why: a direct read or write hands the device one segment per physically
 * contiguous run of the user buffer, and on the development VM's virtio
 * disk a 1 MiB transfer costs about one unit per segment. A large pool
 * prefaulted page by page is scattered (126-256 runs per MiB measured
 * there), a buffer on huge pages is one run per 2 MiB; which side of a
 * comparison with fio happened to get contiguous memory decided the
 * result (docs/performance.md, "nxl-bench POSIX vs fio: buffer memory").
 */
#include "huge_map.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE_ALIGN ((size_t)2 << 20)

/* bench_map_huge: see huge_map.h. Maps size + 2 MiB, trims the mapping to
 * a 2 MiB-aligned start, advises, then touches every 4 KiB page (with THP
 * the first touch of each 2 MiB faults in a whole huge page). */
uint8_t *
bench_map_huge(size_t size)
{
    size_t span = size + HUGE_ALIGN;
    uint8_t *raw = mmap(NULL, span, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *p;
    size_t head;
    size_t i;

    if (raw == MAP_FAILED) {
        return NULL;
    }
    p = (uint8_t *)(((uintptr_t)raw + HUGE_ALIGN - 1) &
                    ~(uintptr_t)(HUGE_ALIGN - 1));
    head = (size_t)(p - raw);
    if (head > 0) {
        munmap(raw, head);
    }
    munmap(p + size, span - head - size); /* HUGE_ALIGN - head > 0 bytes */
#ifdef MADV_HUGEPAGE
    (void)madvise(p, size, MADV_HUGEPAGE);
#endif
    (void)madvise(p, size, MADV_DONTFORK);
    for (i = 0; i < size; i += 4096) {
        p[i] = 0; /* prefault, as MAP_POPULATE would */
    }
    return p;
}

/* bench_huge_bytes: see huge_map.h. Reads /proc/self/smaps line by line:
 * a mapping's header line ("lo-hi perms ...") opens it, its
 * "AnonHugePages: N kB" line is added when the mapping overlaps the
 * range; the rest of a line longer than the buffer is skipped. */
size_t
bench_huge_bytes(const void *p, size_t size)
{
    uintptr_t lo = (uintptr_t)p, hi = lo + size;
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int overlap = 0, at_start = 1;
    size_t total = 0;

    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        uintmax_t a, b, kb;
        int start = at_start;

        at_start = strchr(line, '\n') != NULL; /* a long path continues */
        if (!start) {
            continue;
        }
        if (sscanf(line, "%jx-%jx ", &a, &b) == 2) {
            overlap = a < hi && b > lo;
        } else if (overlap && sscanf(line, "AnonHugePages: %ju kB", &kb) == 1) {
            total += (size_t)kb * 1024;
        }
    }
    fclose(f);
    return total < size ? total : size;
}
