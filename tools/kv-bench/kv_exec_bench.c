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
 * --nixl B times the NIXL strategies instead: two KV agents in this
 * process with backend B (SHM), the peer's metadata loaded into the
 * first agent and the peer's layouts seen through their JSON v2 form, as
 * a remote worker's would be. NixlWrite pushes the first agent's blocks
 * into the peer's, NixlReadFlipped pulls the peer's into the first
 * agent's; FC and LS layouts, consecutive and shuffled ids. Each transfer
 * is timed from nxl_kv_transfer to its completion, and the process CPU
 * time (every thread: caller, poller, backend workers) is taken around
 * the submit. The baseline, alternating with it run by run, is the same
 * transfer through nxl_xfer_create on descriptor lists built before the
 * timing (nxl_kv_build_dlists), posted and waited for with
 * nxl_xfer_wait: the executor's work without its descriptor building.
 * --row OP,LAYOUT,IDS (e.g. read,LS,shuffled) runs one row only. Under
 * valgrind --tool=callgrind --collect-atstart=no, only the timed executor
 * transfers are counted (callgrind's client requests, where the header
 * was found at build time): the executor's instructions per transfer,
 * independent of the machine's load.
 *
 * Usage: kv-exec-bench [--blocks N] [--reps R] [--sets S] [--src K]
 *                      [--dst K] [--nixl B [--row OP,LAYOUT,IDS]] [--smoke]
 */
#include <nxl/nxl_kv.h>
#include <nxl/nxl_memkind.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define KB_COLLECT() CALLGRIND_TOGGLE_COLLECT
#endif
#endif
#ifndef KB_COLLECT
#define KB_COLLECT()                                                           \
    do {                                                                       \
    } while (0)
#endif

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
            memcpy(db + dids[i] * KB_BLOCK, sb + sids[i] * KB_BLOCK, KB_BLOCK);
        }
    } else {
        for (i = 0; i < n && st == NXL_OK; i++) {
            st = mk->copy_async(db + dids[i] * KB_BLOCK,
                                sb + sids[i] * KB_BLOCK, KB_BLOCK, dir, stream);
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

/* ---- --nixl: the NIXL strategies between two agents -------------------- */

#define KB_A "kv-bench-a"
#define KB_B "kv-bench-b"

/* kb_cpu_ns returns the CPU time of the whole process (every thread). */
static uint64_t
kb_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* kb_agent creates a KV agent with backend be and a strict lock (the
 * context's poller and the caller share it). 0 or -1. */
static int
kb_agent(const char *name, const char *be, nxl_kv_agent_t **a_p)
{
    nxl_agent_config_t cfg;

    nxl_agent_config_init(&cfg);
    cfg.sync_mode = NXL_SYNC_STRICT;
    if (nxl_kv_agent_create(name, &cfg, a_p) != NXL_OK) {
        return -1;
    }
    if (nxl_kv_agent_add_backend(*a_p, be, NULL) != NXL_OK) {
        nxl_kv_agent_destroy(*a_p);
        return -1;
    }
    return 0;
}

/* kb_view rebuilds l as a peer sees it: JSON v2 carries the owner's name
 * and memory regions. 0 or -1. */
static int
kb_view(const nxl_kv_layout_t *l, nxl_kv_layout_t **v_p)
{
    nxl_blob_t j = {NULL, 0};
    nxl_status_t st = nxl_kv_layout_to_json_v2(l, &j);

    if (st == NXL_OK) {
        st = nxl_kv_layout_from_json_v2(j.data, j.len, v_p);
    }
    nxl_blob_free(&j);
    return st == NXL_OK ? 0 : -1;
}

/* kb_region returns the address of region (b, lyr, o) of l (in this
 * process: both agents live here). */
static uint8_t *
kb_region(const nxl_kv_layout_t *l, size_t b, size_t lyr, size_t o)
{
    nxl_kv_region_t r;

    if (nxl_kv_layout_region(l, b, lyr, o, &r) != NXL_OK) {
        return NULL;
    }
    return (uint8_t *)(uintptr_t)r.addr;
}

/* kb_set writes every region of l's n blocks: with 0 when clear, else
 * with a value of its own that is never 0. */
static void
kb_set(const nxl_kv_layout_t *l, size_t n, int clear)
{
    const nxl_kv_layout_config_t *c = nxl_kv_layout_config(l);
    size_t r = nxl_kv_layout_region_size(l), b, lyr, o;

    for (b = 0; b < n; b++) {
        for (lyr = 0; lyr < c->num_layers; lyr++) {
            for (o = 0; o < c->outer_dim; o++) {
                memset(kb_region(l, b, lyr, o),
                       clear ? 0 : 1 + (int)((b * 7 + lyr * 3 + o) % 251), r);
            }
        }
    }
}

/* kb_same checks every region of blocks dids of d against sids of s. */
static int
kb_same(const nxl_kv_layout_t *s, const size_t *sids, const nxl_kv_layout_t *d,
        const size_t *dids, size_t n)
{
    const nxl_kv_layout_config_t *c = nxl_kv_layout_config(s);
    size_t r = nxl_kv_layout_region_size(s), i, lyr, o;

    for (i = 0; i < n; i++) {
        for (lyr = 0; lyr < c->num_layers; lyr++) {
            for (o = 0; o < c->outer_dim; o++) {
                if (memcmp(kb_region(d, dids[i], lyr, o),
                           kb_region(s, sids[i], lyr, o), r) != 0) {
                    fprintf(stderr,
                            "kv-exec-bench: block %zu -> %zu (layer %zu, "
                            "outer %zu) differs\n",
                            sids[i], dids[i], lyr, o);
                    return 1;
                }
            }
        }
    }
    return 0;
}

/* kb_nixl_exec runs one executor transfer: seconds to completion, or -1;
 * *cpu_p gets the process CPU seconds of the submit. Callgrind counts the
 * submit when count is set. */
static double
kb_nixl_exec(nxl_kv_ctx_t *ctx, const nxl_kv_layout_t *s, const size_t *sids,
             const nxl_kv_layout_t *d, const size_t *dids, size_t n, int count,
             double *cpu_p)
{
    nxl_kv_notif_t *nt;
    uint64_t t0 = kb_now_ns(), c0 = kb_cpu_ns();
    nxl_status_t st;

    if (count) {
        KB_COLLECT();
    }
    st = nxl_kv_transfer(ctx, s, sids, d, dids, n, NULL, &nt);
    if (count) {
        KB_COLLECT();
    }
    *cpu_p = (double)(kb_cpu_ns() - c0) / 1e9;
    if (st == NXL_OK) {
        st = nxl_kv_notif_wait(nt, -1);
        if (st != NXL_OK) {
            fprintf(stderr, "kv-exec-bench: transfer: %s (%s)\n",
                    nxl_status_name(st), nxl_kv_notif_error(nt));
        }
        nxl_kv_notif_release(nt);
        if (st != NXL_OK) {
            return -1;
        }
    } else {
        fprintf(stderr, "kv-exec-bench: transfer: %s (%s)\n",
                nxl_status_name(st), nxl_last_error());
        return -1;
    }
    return (double)(kb_now_ns() - t0) / 1e9;
}

/* kb_nixl_create runs the baseline: nxl_xfer_create on the lists of d
 * (built beforehand), post, nxl_xfer_wait, release. READ reads d's source
 * (the peer's) into its destination (ours): the lists swap, as the
 * executor's NixlReadFlipped does. Seconds or -1; *cpu_p as kb_nixl_exec
 * (create and post). */
static double
kb_nixl_create(nxl_agent_t *a, nxl_op_t op, const nxl_kv_dlists_t *d,
               double *cpu_p)
{
    nxl_dlist_t sl = {d->src_mem, d->src, d->count};
    nxl_dlist_t dl = {d->dst_mem, d->dst, d->count};
    nxl_xfer_t *x = NULL;
    uint64_t t0 = kb_now_ns(), c0 = kb_cpu_ns();
    nxl_status_t st;

    st = nxl_xfer_create(a, op, op == NXL_READ ? &dl : &sl,
                         op == NXL_READ ? &sl : &dl, KB_B, NULL, &x);
    if (st == NXL_OK) {
        st = nxl_xfer_post(x, NULL);
    }
    *cpu_p = (double)(kb_cpu_ns() - c0) / 1e9;
    if (st == NXL_IN_PROG) {
        st = nxl_xfer_wait(x, -1);
    }
    if (st != NXL_OK) {
        fprintf(stderr, "kv-exec-bench: xfer_create baseline: %s (%s)\n",
                nxl_status_name(st), nxl_last_error());
    }
    nxl_xfer_release(x);
    return st == NXL_OK ? (double)(kb_now_ns() - t0) / 1e9 : -1;
}

/* kb_row says whether row (NULL: all) names (op, layout tn, mode) as
 * "write|read,FC|LS,consecutive|shuffled". */
static int
kb_row(const char *row, int op, const char *tn, int mode)
{
    char name[32];

    snprintf(name, sizeof(name), "%s,%s,%s", op ? "read" : "write", tn,
             mode ? "shuffled" : "consecutive");
    return row == NULL || strcmp(row, name) == 0;
}

/* kb_nixl is the --nixl mode: every (layout type, op, ids) row, each with
 * a fresh context (its first transfer is reported apart: it prepares
 * what later ones reuse). Returns the exit status. */
static int
kb_nixl(const char *be, const char *row, size_t n, size_t reps, size_t sets,
        size_t scratch_len, const size_t *seq, const size_t *ps,
        const size_t *pd, uint8_t *scratch)
{
    static const nxl_kv_layout_type_t types[2] = {NXL_KV_FULLY_CONTIGUOUS,
                                                  NXL_KV_LAYER_SEPARATE};
    nxl_kv_layout_config_t cfg = {
        .num_blocks = n,
        .num_layers = 2,
        .outer_dim = 2,
        .page_size = 16,
        .inner_dim = 128,
        .alignment = 1,
        .dtype_width_bytes = 2,
    };
    const nxl_kv_loc_t sys = {NXL_KV_SYSTEM, 0};
    nxl_kv_layout_t **la, **lb, **vb;
    nxl_kv_dlists_t *dl;
    nxl_kv_agent_t *a, *b;
    nxl_blob_t md = {NULL, 0};
    double *te, *tb, *ce, *cb;
    unsigned round = 0;
    size_t t, k, i;
    int op, mode, rc = 0, ran = 0;

    la = calloc(sets, sizeof(*la));
    lb = calloc(sets, sizeof(*lb));
    vb = calloc(sets, sizeof(*vb));
    dl = calloc(sets, sizeof(*dl));
    te = malloc(reps * sizeof(double));
    tb = malloc(reps * sizeof(double));
    ce = malloc(reps * sizeof(double));
    cb = malloc(reps * sizeof(double));
    if (!la || !lb || !vb || !dl || !te || !tb || !ce || !cb) {
        fprintf(stderr, "kv-exec-bench: out of memory\n");
        return 1;
    }
    if (kb_agent(KB_A, be, &a) != 0 || kb_agent(KB_B, be, &b) != 0) {
        /* A backend that is not built or cannot run here: a skip. */
        fprintf(stderr, "kv-exec-bench: agents with %s: %s\n", be,
                nxl_last_error());
        return 77;
    }
    printf("kv-exec-bench --nixl %s: %zu blocks of %u bytes (%.1f MiB), "
           "%s <-> %s (metadata loaded, layouts from JSON v2), %zu reps, "
           "%zu layout sets, %zu MiB flush\n",
           be, n, KB_BLOCK, (double)n * KB_BLOCK / (1 << 20), KB_A, KB_B, reps,
           sets, scratch_len >> 20);
    printf("median per transfer: wall to completion, process CPU around "
           "the submit; 'first' is a fresh context's first transfer\n");
    for (t = 0; t < 2 && rc == 0; t++) {
        const char *tn = types[t] == NXL_KV_FULLY_CONTIGUOUS ? "FC" : "LS";

        if (!kb_row(row, 0, tn, 0) && !kb_row(row, 0, tn, 1) &&
            !kb_row(row, 1, tn, 0) && !kb_row(row, 1, tn, 1)) {
            continue;
        }
        for (k = 0; k < sets; k++) {
            if (nxl_kv_layout_alloc(&cfg, types[t], 0, sys, a, &la[k]) !=
                    NXL_OK ||
                nxl_kv_layout_alloc(&cfg, types[t], 0, sys, b, &lb[k]) !=
                    NXL_OK ||
                kb_view(lb[k], &vb[k]) != 0) {
                fprintf(stderr, "kv-exec-bench: layouts: %s\n",
                        nxl_last_error());
                return 1;
            }
            kb_set(la[k], n, 0);
            kb_set(lb[k], n, 0);
        }
        /* The peer's metadata, with this type's layouts registered. */
        if (nxl_md_local(nxl_kv_agent_raw(b), &md) != NXL_OK ||
            nxl_md_load(nxl_kv_agent_raw(a), md.data, md.len, NULL, 0) !=
                NXL_OK) {
            fprintf(stderr, "kv-exec-bench: metadata: %s\n", nxl_last_error());
            return 1;
        }
        nxl_blob_free(&md);
        for (op = 0; op < 2 && rc == 0; op++) {
            for (mode = 0; mode < 2 && rc == 0; mode++) {
                const size_t *si = mode ? ps : seq, *di = mode ? pd : seq;
                nxl_kv_ctx_t *ctx;
                double first, c, me, mb, dc;

                if (!kb_row(row, op, tn, mode)) {
                    continue;
                }
                ran++;
                for (k = 0; k < sets; k++) {
                    const nxl_kv_layout_t *s = op ? vb[k] : la[k];
                    const nxl_kv_layout_t *d = op ? la[k] : vb[k];

                    if (nxl_kv_build_dlists(s, si, d, di, n, 0, 0, &dl[k]) !=
                        NXL_OK) {
                        fprintf(stderr, "kv-exec-bench: build: %s\n",
                                nxl_last_error());
                        return 1;
                    }
                }
                if (nxl_kv_ctx_create(a, NULL, &ctx) != NXL_OK) {
                    fprintf(stderr, "kv-exec-bench: context: %s\n",
                            nxl_last_error());
                    return 1;
                }
                kb_flush(scratch, scratch_len, round++);
                first = kb_nixl_exec(ctx, op ? vb[0] : la[0], si,
                                     op ? la[0] : vb[0], di, n, 0, &c);
                if (first < 0 ||
                    kb_nixl_create(nxl_kv_agent_raw(a),
                                   op ? NXL_READ : NXL_WRITE, &dl[0], &c) < 0) {
                    return 1;
                }
                for (i = 0; i < reps; i++) {
                    size_t sx = i % sets;
                    int exec_first = (i % 2) == 0;
                    int j;

                    for (j = 0; j < 2; j++) {
                        kb_flush(scratch, scratch_len, round++);
                        if ((j == 0) == exec_first) {
                            te[i] = kb_nixl_exec(ctx, op ? vb[sx] : la[sx], si,
                                                 op ? la[sx] : vb[sx], di, n, 1,
                                                 &ce[i]);
                            if (te[i] < 0) {
                                return 1;
                            }
                        } else {
                            tb[i] = kb_nixl_create(nxl_kv_agent_raw(a),
                                                   op ? NXL_READ : NXL_WRITE,
                                                   &dl[sx], &cb[i]);
                            if (tb[i] < 0) {
                                return 1;
                            }
                        }
                    }
                }
                /* The executor's bytes: clear the destination of set 0,
                 * transfer once more and compare every region. */
                kb_set(op ? la[0] : lb[0], n, 1);
                if (kb_nixl_exec(ctx, op ? vb[0] : la[0], si,
                                 op ? la[0] : vb[0], di, n, 0, &c) < 0 ||
                    kb_same(op ? vb[0] : la[0], si, op ? la[0] : vb[0], di,
                            n) != 0) {
                    rc = 1;
                }
                nxl_kv_ctx_destroy(ctx);
                for (k = 0; k < sets; k++) {
                    nxl_kv_dlists_free(&dl[k]);
                }
                me = kb_median(te, reps);
                mb = kb_median(tb, reps);
                /* Run i of each method moved the same bytes of the same
                 * set: the median of the pairwise CPU differences is the
                 * executor's cost over the baseline, less noisy than the
                 * difference of the medians. */
                for (i = 0; i < reps; i++) {
                    tb[i] = ce[i] - cb[i];
                }
                dc = kb_median(tb, reps);
                printf("%-5s %s %-11s executor %8.3f ms cpu %8.1f us "
                       "(first %8.3f ms)  xfer_create %8.3f ms cpu %8.1f us"
                       "  ratio %.3f  cpu over baseline %+7.1f us\n",
                       op ? "read" : "write", tn,
                       mode ? "shuffled" : "consecutive", me * 1e3,
                       kb_median(ce, reps) * 1e6, first * 1e3, mb * 1e3,
                       kb_median(cb, reps) * 1e6, me / mb, dc * 1e6);
            }
        }
        for (k = 0; k < sets; k++) {
            nxl_kv_layout_destroy(vb[k]);
            nxl_kv_layout_destroy(la[k]);
            nxl_kv_layout_destroy(lb[k]);
        }
    }
    nxl_kv_agent_destroy(a);
    nxl_kv_agent_destroy(b);
    if (ran == 0 && rc == 0) {
        fprintf(stderr,
                "kv-exec-bench: no row '%s' (OP,LAYOUT,IDS: "
                "write|read,FC|LS,consecutive|shuffled)\n",
                row);
        rc = 2;
    }
    free(la);
    free(lb);
    free(vb);
    free(dl);
    free(te);
    free(tb);
    free(ce);
    free(cb);
    return rc;
}

int
main(int argc, char **argv)
{
    nxl_kv_layout_config_t cfg = {
        .num_layers = 2,
        .outer_dim = 2,
        .page_size = 16,
        .inner_dim = 128,
        .alignment = 1,
        .dtype_width_bytes = 2,
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
    const char *nixl = NULL, *row = NULL;
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
                fprintf(stderr,
                        "kv-exec-bench: unknown kind '%s' (System, "
                        "Pinned or Device)\n",
                        argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--nixl") == 0 && i + 1 < (size_t)argc) {
            nixl = argv[++i];
        } else if (strcmp(argv[i], "--row") == 0 && i + 1 < (size_t)argc) {
            row = argv[++i];
        } else if (strcmp(argv[i], "--smoke") == 0) {
            n = 256;
            reps = 3;
            sets = 1;
            scratch_len = 4u << 20;
        } else {
            fprintf(stderr,
                    "usage: %s [--blocks N] [--reps R] [--sets S] "
                    "[--src K] [--dst K] [--nixl B [--row OP,LAYOUT,IDS]] "
                    "[--smoke]\n",
                    argv[0]);
            return 2;
        }
    }
    if (n == 0 || reps == 0 || sets == 0) {
        fprintf(stderr, "kv-exec-bench: blocks, reps and sets must be > 0\n");
        return 2;
    }
    if (row != NULL && nixl == NULL) {
        fprintf(stderr, "kv-exec-bench: --row needs --nixl\n");
        return 2;
    }
    if (nixl != NULL) {
        if (sloc.kind != NXL_KV_SYSTEM || dloc.kind != NXL_KV_SYSTEM) {
            fprintf(stderr, "kv-exec-bench: --nixl moves System blocks; "
                            "drop --src and --dst\n");
            return 2;
        }
        seq = malloc(n * sizeof(size_t));
        ps = malloc(n * sizeof(size_t));
        pd = malloc(n * sizeof(size_t));
        scratch = malloc(scratch_len);
        if (!seq || !ps || !pd || !scratch) {
            fprintf(stderr, "kv-exec-bench: out of memory\n");
            return 1;
        }
        for (i = 0; i < n; i++) {
            seq[i] = i;
        }
        kb_shuffle(ps, n, &x);
        kb_shuffle(pd, n, &x);
        rc = kb_nixl(nixl, row, n, reps, sets, scratch_len, seq, ps, pd,
                     scratch);
        free(seq);
        free(ps);
        free(pd);
        free(scratch);
        return rc;
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
        if (nxl_kv_layout_alloc(&cfg, NXL_KV_FULLY_CONTIGUOUS, 0, sloc, NULL,
                                &src[k]) != NXL_OK ||
            nxl_kv_layout_alloc(&cfg, NXL_KV_FULLY_CONTIGUOUS, 0, dloc, NULL,
                                &dst[k]) != NXL_OK) {
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
           nxl_kv_kind_name(sloc.kind), nxl_kv_kind_name(dloc.kind), reps, sets,
           scratch_len >> 20);
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
        if (kb_check(kb_host_view(kb_base(src[0]), sloc.kind, hs, n * KB_BLOCK),
                     si,
                     kb_host_view(kb_base(dst[0]), dloc.kind, hd, n * KB_BLOCK),
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
               mm * 1e3, (double)n * KB_BLOCK / mm / 1e9, me / mm);
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
                fprintf(stderr, "kv-exec-bench: build: %s\n", nxl_last_error());
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
