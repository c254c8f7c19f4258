/*
 * baseline.c - memory helpers, the consistency pattern and the Base B/W
 * column: what one thread gets without NXL on the same blocks.
 *
 * Private pools: process_vm_readv/writev against the target's pid with the
 * request's blocks as iovecs (what CMA gives one core). Shared pools
 * (--shared): a non-temporal SSE2 memcpy between two cold local pools, the
 * copy a mapped shared region turns a transfer into.
 */
#include "bench.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* bench_map allocates size bytes of private, prefaulted memory that a
 * fork does not copy (MADV_DONTFORK): the baselines' child processes
 * (iperf3, ucx_perftest) would otherwise leave every page copy-on-write
 * in this process, and the next row would take a write fault per page
 * (measured: TCP READ 2-8 MiB rows at half speed after each fork). */
uint8_t *
bench_map(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

    if (p == MAP_FAILED) {
        return NULL;
    }
    (void)madvise(p, size, MADV_DONTFORK);
    return p;
}

/* bench_unmap frees memory from bench_map or bench_map_huge. Accepts
 * NULL. */
void
bench_unmap(uint8_t *p, size_t size)
{
    if (p != NULL) {
        munmap(p, size);
    }
}

/* parse_cache_size reads "16384K" or "1M" as sysfs writes cache sizes. */
static size_t
parse_cache_size(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);

    if (*end == 'K') {
        v *= 1024;
    } else if (*end == 'M') {
        v *= 1024 * 1024;
    }
    return (size_t)v;
}

/* bench_llc_size returns the size of the highest cache level of cpu0 from
 * sysfs (sysconf lies in some VMs), 32 MiB if unknown. */
size_t
bench_llc_size(void)
{
    static size_t cached;
    int best_level = 0;
    size_t best = 0;
    int i;

    if (cached != 0) {
        return cached;
    }
    for (i = 0; i < 8; i++) {
        char path[128];
        char buf[64];
        FILE *f;
        int level;

        snprintf(path, sizeof(path),
                 "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        f = fopen(path, "r");
        if (f == NULL) {
            continue;
        }
        level = (fgets(buf, sizeof(buf), f) != NULL) ? atoi(buf) : 0;
        fclose(f);
        snprintf(path, sizeof(path),
                 "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        f = fopen(path, "r");
        if (f == NULL) {
            continue;
        }
        if (fgets(buf, sizeof(buf), f) != NULL && level >= best_level) {
            best_level = level;
            best = parse_cache_size(buf);
        }
        fclose(f);
    }
    if (best < 64 * KIB || best > 4 * GIB) {
        best = 32 * MIB;
    }
    cached = best;
    return cached;
}

/* bench_evict reads the eviction buffer (4x the LLC), one load per cache
 * line, so that the next timed phase starts with cold pools. */
void
bench_evict(bench_session_t *s)
{
    const volatile uint64_t *p = (const volatile uint64_t *)s->evict;
    size_t n = s->evict_size / sizeof(uint64_t);
    uint64_t sum = 0;
    size_t i;

    for (i = 0; i < n; i += 8) {
        sum += p[i];
    }
    __asm__ volatile("" : : "r"(sum) : "memory");
}

/* pattern_word is the 64-bit word of pattern key at word index w. */
static inline uint64_t
pattern_word(size_t w, uint64_t key)
{
    return ((uint64_t)w + 1) * 0x9E3779B97F4A7C15ull ^
           (key * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull);
}

/* pattern_byte is byte o of pattern key (little-endian words). */
static inline uint8_t
pattern_byte(size_t o, uint64_t key)
{
    return (uint8_t)(pattern_word(o / 8, key) >> (8 * (o % 8)));
}

/* bench_pattern_fill writes the bytes of pattern key for pattern offsets
 * [poff, poff+len) into p[0, len). */
void
bench_pattern_fill(uint8_t *p, size_t poff, size_t len, uint64_t key)
{
    size_t end = poff + len;
    size_t o = poff;

    while (o < end && o % 8 != 0) {
        p[o - poff] = pattern_byte(o, key);
        o++;
    }
    for (; o + 8 <= end; o += 8) {
        uint64_t v = pattern_word(o / 8, key);

        memcpy(p + (o - poff), &v, 8);
    }
    for (; o < end; o++) {
        p[o - poff] = pattern_byte(o, key);
    }
}

/* bench_pattern_check finds the first pattern offset in [poff, poff+len)
 * whose byte in p differs from pattern key; SIZE_MAX when none. */
size_t
bench_pattern_check(const uint8_t *p, size_t poff, size_t len, uint64_t key)
{
    size_t end = poff + len;
    size_t o = poff;

    while (o < end && o % 8 != 0) {
        if (p[o - poff] != pattern_byte(o, key)) {
            return o;
        }
        o++;
    }
    for (; o + 8 <= end; o += 8) {
        uint64_t v;

        memcpy(&v, p + (o - poff), 8);
        if (v != pattern_word(o / 8, key)) {
            size_t i;

            for (i = 0; i < 8; i++) {
                if (p[o + i - poff] != pattern_byte(o + i, key)) {
                    return o + i;
                }
            }
        }
    }
    for (; o < end; o++) {
        if (p[o - poff] != pattern_byte(o, key)) {
            return o;
        }
    }
    return SIZE_MAX;
}

/* bench_copy_nt copies n bytes with 16-byte streaming stores, so the
 * destination does not displace the cache; falls back to memcpy off x86. */
void
bench_copy_nt(void *dst, const void *src, size_t n)
{
#if defined(__SSE2__)
    uint8_t *d = dst;
    const uint8_t *s = src;
    size_t head = (16 - ((uintptr_t)d & 15)) & 15;

    if (head > n) {
        head = n;
    }
    memcpy(d, s, head);
    d += head;
    s += head;
    n -= head;
    while (n >= 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)s);
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(s + 32));
        __m128i e = _mm_loadu_si128((const __m128i *)(const void *)(s + 48));

        _mm_stream_si128((__m128i *)(void *)d, a);
        _mm_stream_si128((__m128i *)(void *)(d + 16), b);
        _mm_stream_si128((__m128i *)(void *)(d + 32), c);
        _mm_stream_si128((__m128i *)(void *)(d + 48), e);
        d += 64;
        s += 64;
        n -= 64;
    }
    while (n >= 16) {
        _mm_stream_si128((__m128i *)(void *)d,
                         _mm_loadu_si128((const __m128i *)(const void *)s));
        d += 16;
        s += 16;
        n -= 16;
    }
    memcpy(d, s, n);
    _mm_sfence();
#else
    memcpy(dst, src, n);
#endif
}

/* bench_base_iov moves n blocks: local iov[i] <-> remote pool offset
 * roff[i] (same length), for op, the baseline way. Returns 0 or -1. */
int
bench_base_iov(bench_session_t *s, nxl_op_t op, const struct iovec *liov,
               struct iovec *riov, const size_t *roff, size_t n)
{
    size_t i;

    if (s->o->storage) {
        return bench_storage_base(s, op, liov, roff, n);
    }
    if (s->base_dev) {
        for (i = 0; i < n; i++) {
            uint8_t *r = s->base_pool + roff[i];
            nxl_status_t st =
                op == NXL_READ
                    ? s->dk->copy(liov[i].iov_base, r, liov[i].iov_len,
                                  bench_copy_dir(s->base_mem, s->lmem))
                    : s->dk->copy(r, liov[i].iov_base, liov[i].iov_len,
                                  bench_copy_dir(s->lmem, s->base_mem));

            if (st != NXL_OK) {
                return bench_nxl_err(st, "baseline: %s copy", s->dk->name);
            }
        }
        return 0;
    }
    if (s->base_pool != NULL) {
        for (i = 0; i < n; i++) {
            uint8_t *r = s->base_pool + roff[i];

            if (s->o->base_memcpy) {
                if (op == NXL_READ) {
                    memcpy(liov[i].iov_base, r, liov[i].iov_len);
                } else {
                    memcpy(r, liov[i].iov_base, liov[i].iov_len);
                }
            } else if (op == NXL_READ) {
                bench_copy_nt(liov[i].iov_base, r, liov[i].iov_len);
            } else {
                bench_copy_nt(r, liov[i].iov_base, liov[i].iov_len);
            }
        }
        return 0;
    }
    for (i = 0; i < n; i++) {
        riov[i].iov_base = (void *)(uintptr_t)(s->rbase + roff[i]);
        riov[i].iov_len = liov[i].iov_len;
    }
    for (i = 0; i < n;) {
        size_t k = n - i < IOV_MAX ? n - i : IOV_MAX;
        size_t want = 0;
        size_t j;
        ssize_t got;

        for (j = 0; j < k; j++) {
            want += liov[i + j].iov_len;
        }
        if (op == NXL_READ) {
            got = process_vm_readv(s->rpid, liov + i, k, riov + i, k, 0);
        } else {
            got = process_vm_writev(s->rpid, liov + i, k, riov + i, k, 0);
        }
        if (got < 0 || (size_t)got != want) {
            bench_err("baseline: process_vm_%sv(pid %d, %zu iovecs): %s",
                      op == NXL_READ ? "read" : "write", (int)s->rpid, k,
                      got < 0 ? strerror(errno) : "short transfer");
            return -1;
        }
        i += k;
    }
    return 0;
}

/* bench_base_probe checks that process_vm_readv reaches the target. */
int
bench_base_probe(bench_session_t *s)
{
    uint64_t v;
    struct iovec l = {&v, sizeof(v)};
    struct iovec r = {(void *)(uintptr_t)s->rbase, sizeof(v)};

    if (process_vm_readv(s->rpid, &l, 1, &r, 1, 0) != (ssize_t)sizeof(v)) {
        bench_err("baseline: process_vm_readv(pid %d) fails (%s); Base B/W "
                  "will be '-'",
                  (int)s->rpid, strerror(errno));
        return -1;
    }
    return 0;
}
