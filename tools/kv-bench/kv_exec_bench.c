/*
 * kv_exec_bench.c - executor overhead: nxl_kv_transfer of N fully
 * contiguous 16 KiB blocks host -> host (System FC -> System FC, the
 * Memcpy strategy) against a plain memcpy loop over the same blocks, in the
 * same run, on cold data.
 *
 * Cold: every timed run first writes a scratch buffer larger than the last
 * level cache, and the runs rotate over `sets` separate source/destination
 * layouts (64 MiB each at the defaults), so neither side starts with its
 * blocks cached. The two methods alternate run by run (which goes first
 * alternates too) so drift hits both; the report gives medians and the
 * ratio executor / memcpy for consecutive ids (where the executor merges
 * the run into one copy) and for a shuffled permutation on both sides
 * (nothing merges: one copy per block on both sides).
 *
 * It also times nxl_kv_build_dlists (ns per region visited) and
 * nxl_kv_validate alone over the shuffled ids.
 *
 * --src K / --dst K (System, Pinned, Device) move the blocks between other
 * tiers: with a Device end the executor uses the CUDA strategies
 * (CudaAsyncH2D, D2H, D2D, or the blocking ones from System memory) and
 * the baseline is the hand-written loop a worker would use: one
 * cuMemcpyAsync per block on one stream, then a stream synchronize (the
 * device kind's copy_async, which is cuMemcpyAsync). The executor batches
 * scattered blocks: with NXL's own pinned and device memory through the
 * gather kernel, or with cuMemcpyBatchAsync when NXL_CUDA_COPY_KERNEL=0.
 * A Device end needs a GPU; without one the tool says why and exits 77.
 *
 * Usage: kv-exec-bench [--blocks N] [--reps R] [--sets S] [--src K]
 *                      [--dst K] [--smoke]
 */
#include <nxl/nxl_kv.h>
#include <nxl/nxl_memkind.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KB_BLOCK 16384u

/* kb_now_ns returns CLOCK_MONOTONIC in nanoseconds. */
static uint64_t
kb_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* kb_cmp_u64 orders doubles for qsort. */
static int
kb_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* kb_median sorts v and returns its median. */
static double
kb_median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), kb_cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* kb_shuffle fills ids with a random permutation of 0..n-1. */
static void
kb_shuffle(size_t *ids, size_t n, uint64_t *x)
{
    size_t i, j, t;

    for (i = 0; i < n; i++) {
        ids[i] = i;
    }
    for (i = n - 1; i > 0; i--) {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        j = (size_t)(*x % (i + 1));
        t = ids[i];
        ids[i] = ids[j];
        ids[j] = t;
    }
}

/* kb_flush writes every cache line of the scratch buffer. */
static void
kb_flush(uint8_t *scratch, size_t len, unsigned round)
{
    size_t i;

    for (i = 0; i < len; i += 64) {
        scratch[i] = (uint8_t)(round + i);
    }
}

/* kb_kind_parse reads a kind name (System, Pinned, Device); -1 if none. */
static int
kb_kind_parse(const char *name, nxl_kv_kind_t *kind_p)
{
    static const nxl_kv_kind_t kinds[] = {NXL_KV_SYSTEM, NXL_KV_PINNED,
                                          NXL_KV_DEVICE};
    size_t i;

    for (i = 0; i < 3; i++) {
        if (strcmp(name, nxl_kv_kind_name(kinds[i])) == 0) {
            *kind_p = kinds[i];
            return 0;
        }
    }
    return -1;
}

/* kb_dir is the copy direction from kind s to kind d. */
static nxl_copy_dir_t
kb_dir(nxl_kv_kind_t s, nxl_kv_kind_t d)
{
    int sd = s == NXL_KV_DEVICE, dd = d == NXL_KV_DEVICE;

    return sd ? (dd ? NXL_COPY_D2D : NXL_COPY_D2H)
              : (dd ? NXL_COPY_H2D : NXL_COPY_H2H);
}

/* kb_base returns the address of block 0 of l. */
static uint8_t *
kb_base(const nxl_kv_layout_t *l)
{
    nxl_kv_region_t r;

    if (nxl_kv_layout_region(l, 0, 0, 0, &r) != NXL_OK) {
        return NULL;
    }
    return (uint8_t *)(uintptr_t)r.addr;
}

/* kb_exec runs one executor transfer; returns seconds or -1. */
static double
kb_exec(nxl_kv_ctx_t *ctx, const nxl_kv_layout_t *s, const size_t *sids,
        const nxl_kv_layout_t *d, const size_t *dids, size_t n)
{
    nxl_kv_notif_t *nt;
    uint64_t t0 = kb_now_ns();
    nxl_status_t st;

    st = nxl_kv_transfer(ctx, s, sids, d, dids, n, NULL, &nt);
    if (st == NXL_OK) {
        st = nxl_kv_notif_wait(nt, -1);
        nxl_kv_notif_release(nt);
    }
    if (st != NXL_OK) {
        fprintf(stderr, "kv-exec-bench: transfer: %s (%s)\n",
                nxl_status_name(st), nxl_last_error());
        return -1;
    }
    return (double)(kb_now_ns() - t0) / 1e9;
}

/* kb_memcpy copies the same blocks with a plain loop: memcpy between host
 * tiers, else one copy_async per block on stream and a stream_sync.
 * Returns seconds, or -1 on a device error. */
static double
kb_memcpy(uint8_t *sb, const size_t *sids, uint8_t *db, const size_t *dids,
          size_t n, nxl_copy_dir_t dir, nxl_stream_t *stream)
{
    const nxl_memkind_ops_t *mk = nxl_memkind_device();
    uint64_t t0 = kb_now_ns();
    nxl_status_t st = NXL_OK;
    size_t i;

    if (dir == NXL_COPY_H2H) {
        for (i = 0; i < n; i++) {
            memcpy(db + dids[i] * KB_BLOCK, sb + sids[i] * KB_BLOCK,
                   KB_BLOCK);
        }
    } else {
        for (i = 0; i < n && st == NXL_OK; i++) {
            st = mk->copy_async(db + dids[i] * KB_BLOCK,
                                sb + sids[i] * KB_BLOCK, KB_BLOCK, dir,
                                stream);
        }
        if (st == NXL_OK) {
            st = mk->stream_sync(stream);
        }
        if (st != NXL_OK) {
            fprintf(stderr, "kv-exec-bench: baseline copy: %s (%s)\n",
                    nxl_status_name(st), nxl_last_error());
            return -1;
        }
    }
    return (double)(kb_now_ns() - t0) / 1e9;
}

/* kb_host_view returns len bytes at p readable on the host: p itself for a
 * host kind, else a copy in tmp (device to host). NULL on error. */
static uint8_t *
kb_host_view(uint8_t *p, nxl_kv_kind_t kind, uint8_t *tmp, size_t len)
{
    if (kind != NXL_KV_DEVICE) {
        return p;
    }
    if (nxl_memkind_device()->copy(tmp, p, len, NXL_COPY_D2H) != NXL_OK) {
        fprintf(stderr, "kv-exec-bench: read back: %s\n", nxl_last_error());
        return NULL;
    }
    return tmp;
}

/* kb_fill writes len bytes of host buffer h into l's blocks. */
static int
kb_fill(nxl_kv_layout_t *l, nxl_kv_kind_t kind, const uint8_t *h, size_t len)
{
    if (kind != NXL_KV_DEVICE) {
        memcpy(kb_base(l), h, len);
        return 0;
    }
    if (nxl_memkind_device()->copy(kb_base(l), h, len, NXL_COPY_H2D) !=
        NXL_OK) {
        fprintf(stderr, "kv-exec-bench: fill: %s\n", nxl_last_error());
        return 1;
    }
    return 0;
}

/* kb_check compares the destination blocks with their sources. */
static int
kb_check(uint8_t *sb, const size_t *sids, uint8_t *db, const size_t *dids,
         size_t n)
{
    size_t i;

    if (sb == NULL || db == NULL) {
        return 1;
    }
    for (i = 0; i < n; i++) {
        if (memcmp(db + dids[i] * KB_BLOCK, sb + sids[i] * KB_BLOCK,
                   KB_BLOCK) != 0) {
            fprintf(stderr, "kv-exec-bench: block %zu -> %zu differs\n",
                    sids[i], dids[i]);
            return 1;
        }
    }
    return 0;
}

int
main(int argc, char **argv)
{
    nxl_kv_layout_config_t cfg = {
        .num_layers = 2, .outer_dim = 2, .page_size = 16, .inner_dim = 128,
        .alignment = 1, .dtype_width_bytes = 2,
    };
    nxl_kv_loc_t sloc = {NXL_KV_SYSTEM, 0}, dloc = {NXL_KV_SYSTEM, 0};
    nxl_stream_t *stream = NULL;
    uint8_t *hs = NULL, *hd = NULL;
    nxl_copy_dir_t dir;
    size_t n = 4096, reps = 21, sets = 2, scratch_len = 64u << 20, i, k;
    nxl_kv_layout_t **src, **dst;
    nxl_kv_agent_t *agent;
    nxl_kv_ctx_t *ctx;
    size_t *seq, *ps, *pd;
    double *te, *tm;
    uint8_t *scratch;
    uint64_t x = 0x2545f4914f6cdd1dull;
    unsigned round = 0;
    double me;
    int mode, rc = 0;

    for (i = 1; i < (size_t)argc; i++) {
        if (strcmp(argv[i], "--blocks") == 0 && i + 1 < (size_t)argc) {
            n = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < (size_t)argc) {
            reps = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--sets") == 0 && i + 1 < (size_t)argc) {
            sets = strtoull(argv[++i], NULL, 10);
        } else if ((strcmp(argv[i], "--src") == 0 ||
                    strcmp(argv[i], "--dst") == 0) &&
                   i + 1 < (size_t)argc) {
            nxl_kv_loc_t *l = argv[i][2] == 's' ? &sloc : &dloc;

            if (kb_kind_parse(argv[++i], &l->kind) != 0) {
                fprintf(stderr, "kv-exec-bench: unknown kind '%s' (System, "
                        "Pinned or Device)\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--smoke") == 0) {
            n = 256;
            reps = 3;
            sets = 1;
            scratch_len = 4u << 20;
        } else {
            fprintf(stderr,
                    "usage: %s [--blocks N] [--reps R] [--sets S] "
                    "[--src K] [--dst K] [--smoke]\n",
                    argv[0]);
            return 2;
        }
    }
    if (n == 0 || reps == 0 || sets == 0) {
        fprintf(stderr, "kv-exec-bench: blocks, reps and sets must be > 0\n");
        return 2;
    }
    dir = kb_dir(sloc.kind, dloc.kind);
    if (dir != NXL_COPY_H2H) {
        const nxl_memkind_ops_t *mk = nxl_memkind_device();

        if (mk->probe() != NXL_OK) {
            fprintf(stderr, "kv-exec-bench: a Device end needs a GPU: %s\n",
                    nxl_last_error());
            return 77;
        }
        if (mk->stream_create(0, &stream) != NXL_OK) {
            fprintf(stderr, "kv-exec-bench: stream: %s\n", nxl_last_error());
            return 1;
        }
    }
    cfg.num_blocks = n;
    src = calloc(sets, sizeof(*src));
    dst = calloc(sets, sizeof(*dst));
    seq = malloc(n * sizeof(size_t));
    ps = malloc(n * sizeof(size_t));
    pd = malloc(n * sizeof(size_t));
    te = malloc(reps * sizeof(double));
    tm = malloc(reps * sizeof(double));
    scratch = malloc(scratch_len);
    hs = malloc(n * KB_BLOCK);
    hd = malloc(n * KB_BLOCK);
    if (!src || !dst || !seq || !ps || !pd || !te || !tm || !scratch || !hs ||
        !hd) {
        fprintf(stderr, "kv-exec-bench: out of memory\n");
        return 1;
    }
    if (nxl_kv_agent_with_backends("kv-exec-bench", NULL, 0, &agent) !=
            NXL_OK ||
        nxl_kv_ctx_create(agent, NULL, &ctx) != NXL_OK) {
        fprintf(stderr, "kv-exec-bench: setup: %s\n", nxl_last_error());
        return 1;
    }
    for (k = 0; k < sets; k++) {
        if (nxl_kv_layout_alloc(&cfg, NXL_KV_FULLY_CONTIGUOUS, 0, sloc,
                                NULL, &src[k]) != NXL_OK ||
            nxl_kv_layout_alloc(&cfg, NXL_KV_FULLY_CONTIGUOUS, 0, dloc,
                                NULL, &dst[k]) != NXL_OK) {
            fprintf(stderr, "kv-exec-bench: layouts: %s\n", nxl_last_error());
            return 1;
        }
        /* Write everything once so page faults stay out of the timings;
         * every source block differs from the others. */
        for (i = 0; i < n * KB_BLOCK; i += 64) {
            hs[i] = (uint8_t)(k + 1 + i / KB_BLOCK);
            memset(hs + i + 1, (int)(k + 1), 63);
        }
        memset(hd, 0, n * KB_BLOCK);
        if (kb_fill(src[k], sloc.kind, hs, n * KB_BLOCK) != 0 ||
            kb_fill(dst[k], dloc.kind, hd, n * KB_BLOCK) != 0) {
            return 1;
        }
    }
    for (i = 0; i < n; i++) {
        seq[i] = i;
    }
    kb_shuffle(ps, n, &x);
    kb_shuffle(pd, n, &x);
    printf("kv-exec-bench: %zu blocks of %u bytes (%.1f MiB) %s FC -> "
           "%s FC, %zu reps, %zu layout sets, %zu MiB flush\n",
           n, KB_BLOCK, (double)n * KB_BLOCK / (1 << 20),
           nxl_kv_kind_name(sloc.kind), nxl_kv_kind_name(dloc.kind), reps,
           sets, scratch_len >> 20);
    for (mode = 0; mode < 2; mode++) {
        const size_t *si = mode ? ps : seq, *di = mode ? pd : seq;
        double mm;

        /* One warm-up of each. */
        if (kb_exec(ctx, src[0], si, dst[0], di, n) < 0) {
            return 1;
        }
        if (kb_memcpy(kb_base(src[0]), si, kb_base(dst[0]), di, n, dir,
                      stream) < 0) {
            return 1;
        }
        for (i = 0; i < reps; i++) {
            nxl_kv_layout_t *s = src[i % sets], *d = dst[i % sets];
            int exec_first = (i % 2) == 0;
            int j;

            for (j = 0; j < 2; j++) {
                kb_flush(scratch, scratch_len, round++);
                if ((j == 0) == exec_first) {
                    te[i] = kb_exec(ctx, s, si, d, di, n);
                    if (te[i] < 0) {
                        return 1;
                    }
                } else {
                    tm[i] = kb_memcpy(kb_base(s), si, kb_base(d), di, n, dir,
                                      stream);
                    if (tm[i] < 0) {
                        return 1;
                    }
                }
            }
        }
        /* The last run on set 0 decides what it holds: check that run's
         * copy, by whichever method, against the source blocks. */
        if (kb_check(kb_host_view(kb_base(src[0]), sloc.kind, hs,
                                  n * KB_BLOCK),
                     si,
                     kb_host_view(kb_base(dst[0]), dloc.kind, hd,
                                  n * KB_BLOCK),
                     di, n) != 0) {
            rc = 1;
        }
        me = kb_median(te, reps);
        mm = kb_median(tm, reps);
        printf("%-11s executor %8.3f ms (%6.2f GB/s)  %s %8.3f ms "
               "(%6.2f GB/s)  ratio %.3f\n",
               mode ? "shuffled" : "consecutive", me * 1e3,
               (double)n * KB_BLOCK / me / 1e9,
               dir == NXL_COPY_H2H ? "memcpy loop" : "cuMemcpyAsync loop",
               mm * 1e3,
               (double)n * KB_BLOCK / mm / 1e9, me / mm);
    }
    /* The link's ceiling for device ends: one copy of all the bytes. */
    if (dir != NXL_COPY_H2H) {
        const nxl_memkind_ops_t *mk = nxl_memkind_device();
        size_t one = n * KB_BLOCK;
        uint64_t t0;

        for (i = 0; i < reps; i++) {
            t0 = kb_now_ns();
            if (mk->copy_async(kb_base(dst[i % sets]), kb_base(src[i % sets]),
                               one, dir, stream) != NXL_OK ||
                mk->stream_sync(stream) != NXL_OK) {
                fprintf(stderr, "kv-exec-bench: one copy: %s\n",
                        nxl_last_error());
                return 1;
            }
            te[i] = (double)(kb_now_ns() - t0) / 1e9;
        }
        me = kb_median(te, reps);
        printf("one copy of all %zu bytes: %8.3f ms (%6.2f GB/s)\n", one,
               me * 1e3, (double)one / me / 1e9);
    }
    /* Descriptor building alone over the shuffled ids: every (block,
     * layer, outer) region is visited (4 per block), a block's regions
     * merge into one pair and no two blocks merge. */
    {
        size_t nb = n < 8192 ? n : 8192, regions;
        nxl_kv_dlists_t d;
        double tb[15];
        uint64_t t0;

        regions = nb * cfg.num_layers * cfg.outer_dim;
        for (i = 0; i < 15; i++) {
            t0 = kb_now_ns();
            if (nxl_kv_build_dlists(src[0], ps, dst[0], pd, nb, 0, 0, &d) !=
                NXL_OK) {
                fprintf(stderr, "kv-exec-bench: build: %s\n",
                        nxl_last_error());
                return 1;
            }
            tb[i] = (double)(kb_now_ns() - t0);
            nxl_kv_dlists_free(&d);
        }
        printf("build_dlists: %zu regions (%zu blocks, shuffled) -> median "
               "%.1f ns per region\n",
               regions, nb, kb_median(tb, 15) / (double)regions);
        /* Block-id validation, the other per-transfer cost. */
        for (i = 0; i < 15; i++) {
            t0 = kb_now_ns();
            if (nxl_kv_validate(src[0], ps, nb, dst[0], pd, nb, NULL, NULL,
                                0) != NXL_OK) {
                fprintf(stderr, "kv-exec-bench: validate: %s\n",
                        nxl_last_error());
                return 1;
            }
            tb[i] = (double)(kb_now_ns() - t0);
        }
        printf("validate: %zu shuffled ids -> median %.1f us\n", nb,
               kb_median(tb, 15) / 1e3);
    }
    nxl_kv_ctx_destroy(ctx);
    for (k = 0; k < sets; k++) {
        nxl_kv_layout_destroy(src[k]);
        nxl_kv_layout_destroy(dst[k]);
    }
    nxl_kv_agent_destroy(agent);
    if (stream != NULL) {
        nxl_memkind_device()->stream_destroy(stream);
    }
    free(hs);
    free(hd);
    free(src);
    free(dst);
    free(seq);
    free(ps);
    free(pd);
    free(te);
    free(tm);
    free(scratch);
    return rc;
}
