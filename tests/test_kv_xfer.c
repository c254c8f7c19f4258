/*
 * test_kv_xfer.c - the KV transfer context end to end (Dynamo's transfer
 * integration tests, §10 of reference/dynamo-components.md): every kind
 * pair the strategy table allows over System, Pinned, Disk and a fake
 * Device (tests/xt_fakedev: host memory with truly asynchronous copies),
 * FC and LS (block-first) layouts, round trips, two-hop through a pinned
 * bounce buffer with chunking, guard blocks, partial layer ranges, large
 * block counts, the error paths, deadlines, slow-transfer warnings, the
 * drain at destroy, and two agents of one process over SHM (notification
 * keys and a remote READ).
 *
 * Data are checked with Sequential fills and XXH3 checksums by position.
 * Waits are generous (60 s) and nothing asserts on speed.
 */
#include "harness.h"
#include "xt_fakedev.h"
#include "xt_kv.h"

#include <nxl/nxl_kv.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define XK_WAIT_MS 60000

#define SYS NXL_KV_SYSTEM
#define PIN NXL_KV_PINNED
#define DEV NXL_KV_DEVICE
#define DSK NXL_KV_DISK
#define FC NXL_KV_FULLY_CONTIGUOUS
#define LS NXL_KV_LAYER_SEPARATE

#define XK_CHECK(call)                                                         \
    do {                                                                       \
        if ((call) != 0)                                                       \
            return 1;                                                          \
    } while (0)

/* xk_cuda: this case runs on the real CUDA kind, not the fake device (the
 * *_cuda cases, which skip where no GPU runs). Set before the case body. */
static int xk_cuda;

/* xk_dev_install installs the device kind the case runs on. */
static void
xk_dev_install(void)
{
    if (xk_cuda) {
        nxl_memkind_set_device(NULL); /* the built-in CUDA kind */
    } else {
        xt_fakedev_install();
    }
}

/* xk_fake_events_left is the fake device's count of live events, 0 on
 * CUDA (whose events the driver owns). */
static long
xk_fake_events_left(void)
{
    return xk_cuda ? 0 : xt_fakedev_live_events();
}

/* xk_local_agent creates an agent with the POSIX backend (Dynamo's test
 * agent for host and disk memory). */
static int
xk_local_agent(const char *name, nxl_kv_agent_t **a_p)
{
    static const char *const names[] = {"POSIX"};

    XT_ASSERT_OK(nxl_kv_agent_with_backends(name, names, 1, a_p));
    return 0;
}

static const char *
xk_type_name(nxl_kv_layout_type_t t)
{
    return t == FC ? "FC" : "LS";
}

/* ---- p2p and round trips --------------------------------------------- */

/* xk_p2p_case: 4-block layouts, src [0,1] -> dst [2,3], bounce Pinned FC 4
 * blocks using [0,1] (used by two-hop plans only). */
static int
xk_p2p_case(nxl_kv_ctx_t *ctx, nxl_kv_agent_t *a, nxl_kv_kind_t sk,
            nxl_kv_layout_type_t st, nxl_kv_kind_t dk, nxl_kv_layout_type_t dt,
            const nxl_kv_layout_t *bounce)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(4);
    size_t sids[] = {0, 1}, dids[] = {2, 3}, bids[] = {0, 1};
    nxl_kv_layout_t *s, *d;
    nxl_kv_opts_t o;

    XT_ASSERT_OK(xt_kv_layout(&c, st, 0, sk, a, &s));
    XT_ASSERT_OK(xt_kv_layout(&c, dt, 0, dk, a, &d));
    XT_ASSERT_OK(nxl_kv_fill_blocks(s, sids, 2, NXL_KV_FILL_SEQUENTIAL, 0));
    nxl_kv_opts_init(&o);
    o.bounce = bounce;
    o.bounce_ids = bids;
    o.num_bounce = 2;
    if (xt_kv_run(ctx, s, sids, d, dids, 2, &o) != NXL_OK) {
        XT_FAILF("%s %s -> %s %s failed", nxl_kv_kind_name(sk),
                 xk_type_name(st), nxl_kv_kind_name(dk), xk_type_name(dt));
    }
    if (xt_kv_same(s, sids, d, dids, 2, 0, 0) != 0) {
        XT_FAILF("%s %s -> %s %s: data differ", nxl_kv_kind_name(sk),
                 xk_type_name(st), nxl_kv_kind_name(dk), xk_type_name(dt));
    }
    nxl_kv_layout_destroy(s);
    nxl_kv_layout_destroy(d);
    return 0;
}

/* All 64 {FC, LS} x {System, Pinned, Device, Disk} pairs. */
static int
t_p2p(void)
{
    static const nxl_kv_kind_t kinds[] = {SYS, PIN, DEV, DSK};
    static const nxl_kv_layout_type_t types[] = {FC, LS};
    nxl_kv_layout_config_t c = xt_kv_cfg(4);
    nxl_kv_layout_t *bounce;
    nxl_kv_agent_t *a;
    nxl_kv_ctx_t *ctx;
    size_t i, j, k, l;

    xk_dev_install();
    XK_CHECK(xk_local_agent("kv-p2p", &a));
    XT_ASSERT_OK(nxl_kv_ctx_create(a, NULL, &ctx));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, PIN, a, &bounce));
    for (i = 0; i < 4; i++)
        for (j = 0; j < 2; j++)
            for (k = 0; k < 4; k++)
                for (l = 0; l < 2; l++)
                    XK_CHECK(xk_p2p_case(ctx, a, kinds[i], types[j], kinds[k],
                                         types[l], bounce));
    nxl_kv_ctx_destroy(ctx);
    nxl_kv_layout_destroy(bounce);
    nxl_kv_agent_destroy(a);
    XT_ASSERT_EQ(xk_fake_events_left(), 0);
    return 0;
}

/* {FC, LS} x {System, Pinned, Device} for src, intermediate and dst (216
 * cases): src [0,1] -> inter [0,1] -> dst [2,3]. */
static int
t_roundtrip(void)
{
    static const nxl_kv_kind_t kinds[] = {SYS, PIN, DEV};
    static const nxl_kv_layout_type_t types[] = {FC, LS};
    nxl_kv_layout_config_t c = xt_kv_cfg(4);
    size_t sids[] = {0, 1}, dids[] = {2, 3}, x;
    nxl_kv_agent_t *a;
    nxl_kv_ctx_t *ctx;

    xk_dev_install();
    XK_CHECK(xk_local_agent("kv-rt", &a));
    XT_ASSERT_OK(nxl_kv_ctx_create(a, NULL, &ctx));
    for (x = 0; x < 216; x++) {
        size_t v = x;
        nxl_kv_layout_t *l[3];
        int i;

        for (i = 0; i < 3; i++) {
            XT_ASSERT_OK(xt_kv_layout(&c, types[(v / 3) % 2], 0, kinds[v % 3],
                                      a, &l[i]));
            v /= 6;
        }
        XT_ASSERT_OK(
            nxl_kv_fill_blocks(l[0], sids, 2, NXL_KV_FILL_SEQUENTIAL, 0));
        XT_ASSERT_OK(xt_kv_run(ctx, l[0], sids, l[1], sids, 2, NULL));
        XT_ASSERT_OK(xt_kv_run(ctx, l[1], sids, l[2], dids, 2, NULL));
        if (xt_kv_same(l[0], sids, l[2], dids, 2, 0, 0) != 0) {
            XT_FAILF("round trip case %zu differs", x);
        }
        for (i = 0; i < 3; i++) {
            nxl_kv_layout_destroy(l[i]);
        }
    }
    nxl_kv_ctx_destroy(ctx);
    nxl_kv_agent_destroy(a);
    return 0;
}

/* ---- bounce with guards ------------------------------------------------ */

/* xk_guard_case: 6-block host layout; host [0,1] -> bounce [0,1] -> host
 * [3,4] over layers [lb, le); guards host [2,5] hold 0xFF throughout. */
static int
xk_guard_case(nxl_kv_ctx_t *ctx, nxl_kv_agent_t *a, nxl_kv_kind_t hk,
              nxl_kv_layout_type_t ht, nxl_kv_kind_t bk,
              nxl_kv_layout_type_t bt, size_t lb, size_t le)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(6);
    size_t src[] = {0, 1}, mid[] = {0, 1}, dst[] = {3, 4}, guards[] = {2, 5};
    nxl_kv_checksum_t g0[2], g1[2];
    nxl_kv_layout_t *h, *b;
    nxl_kv_opts_t o;

    XT_ASSERT_OK(xt_kv_layout(&c, ht, 0, hk, a, &h));
    XT_ASSERT_OK(xt_kv_layout(&c, bt, 0, bk, a, &b));
    XT_ASSERT_OK(nxl_kv_fill_blocks(h, src, 2, NXL_KV_FILL_SEQUENTIAL, 0));
    XT_ASSERT_OK(nxl_kv_fill_blocks(h, guards, 2, NXL_KV_FILL_CONSTANT, 0xFF));
    XT_ASSERT_OK(nxl_kv_checksum_blocks(h, guards, 2, 0, 0, g0));
    XT_ASSERT_STR(g0[0].hex, g0[1].hex);
    nxl_kv_opts_init(&o);
    o.layer_begin = lb;
    o.layer_end = le;
    XT_ASSERT_OK(xt_kv_run(ctx, h, src, b, mid, 2, &o));
    XT_ASSERT_OK(xt_kv_run(ctx, b, mid, h, dst, 2, &o));
    XK_CHECK(xt_kv_same(h, src, h, dst, 2, lb, le));
    XT_ASSERT_OK(nxl_kv_checksum_blocks(h, guards, 2, 0, 0, g1));
    XT_ASSERT_STR(g1[0].hex, g0[0].hex);
    XT_ASSERT_STR(g1[1].hex, g0[1].hex);
    nxl_kv_layout_destroy(h);
    nxl_kv_layout_destroy(b);
    return 0;
}

static int
t_bounce_guards(void)
{
    static const nxl_kv_kind_t pairs[][2] = {
        {SYS, PIN}, {PIN, SYS}, {PIN, DEV}};
    static const nxl_kv_layout_type_t types[] = {FC, LS};
    nxl_kv_agent_t *a;
    nxl_kv_ctx_t *ctx;
    size_t p, i, j;

    xk_dev_install();
    XK_CHECK(xk_local_agent("kv-guards", &a));
    XT_ASSERT_OK(nxl_kv_ctx_create(a, NULL, &ctx));
    for (p = 0; p < 3; p++)
        for (i = 0; i < 2; i++)
            for (j = 0; j < 2; j++)
                XK_CHECK(xk_guard_case(ctx, a, pairs[p][0], types[i],
                                       pairs[p][1], types[j], 0, 0));
    XK_CHECK(xk_guard_case(ctx, a, PIN, FC, DEV, FC, 0, 1));
    XK_CHECK(xk_guard_case(ctx, a, PIN, LS, DEV, LS, 0, 1));
    nxl_kv_ctx_destroy(ctx);
    nxl_kv_agent_destroy(a);
    return 0;
}

/* ---- two-hop chunking ------------------------------------------------- */

/* 5 blocks through 3 bounce blocks (chunks of 3 then 2), src [0..4] ->
 * dst [4,3,2,1,0]: Device -> Disk, Disk -> Device and Disk -> Disk, each
 * with FC and LS ends. */
static int
t_buffered_transfer(void)
{
    static const nxl_kv_kind_t pairs[][2] = {
        {DEV, DSK}, {DSK, DEV}, {DSK, DSK}};
    nxl_kv_layout_config_t c5 = xt_kv_cfg(5), c3 = xt_kv_cfg(3);
    size_t sids[] = {0, 1, 2, 3, 4}, dids[] = {4, 3, 2, 1, 0};
    size_t bids[] = {0, 1, 2};
    nxl_kv_layout_t *bounce;
    nxl_kv_agent_t *a;
    nxl_kv_ctx_t *ctx;
    size_t p, t;

    xk_dev_install();
    XK_CHECK(xk_local_agent("kv-buffered", &a));
    XT_ASSERT_OK(nxl_kv_ctx_create(a, NULL, &ctx));
    XT_ASSERT_OK(xt_kv_layout(&c3, FC, 0, PIN, a, &bounce));
    for (p = 0; p < 3; p++) {
        for (t = 0; t < 2; t++) {
            nxl_kv_layout_t *s, *d;
            nxl_kv_opts_t o;

            XT_ASSERT_OK(xt_kv_layout(&c5, t ? LS : FC, 0, pairs[p][0], a, &s));
            XT_ASSERT_OK(xt_kv_layout(&c5, t ? FC : LS, 0, pairs[p][1], a, &d));
            XT_ASSERT_OK(
                nxl_kv_fill_blocks(s, sids, 5, NXL_KV_FILL_SEQUENTIAL, 0));
            nxl_kv_opts_init(&o);
            o.bounce = bounce;
            o.bounce_ids = bids;
            o.num_bounce = 3;
            XT_ASSERT_OK(xt_kv_run(ctx, s, sids, d, dids, 5, &o));
            XK_CHECK(xt_kv_same(s, sids, d, dids, 5, 0, 0));
            /* One bounce block: five chunks of one. */
            o.num_bounce = 1;
            XT_ASSERT_OK(
                nxl_kv_fill_blocks(d, sids, 5, NXL_KV_FILL_CONSTANT, 7));
            XT_ASSERT_OK(xt_kv_run(ctx, s, sids, d, dids, 5, &o));
            XK_CHECK(xt_kv_same(s, sids, d, dids, 5, 0, 0));
            nxl_kv_layout_destroy(s);
            nxl_kv_layout_destroy(d);
        }
    }
    nxl_kv_ctx_destroy(ctx);
    nxl_kv_layout_destroy(bounce);
    nxl_kv_agent_destroy(a);
    XT_ASSERT_EQ(xk_fake_events_left(), 0);
    return 0;
}

/* ---- large block counts ----------------------------------------------- */

/* 1024..16384 blocks Pinned FC -> fake Device FC (512-byte regions to keep
 * memory small): completion for all, checksums for some, and a shuffled
 * 4096-block case so that every block is its own async copy. */
static int
t_large_block_counts(void)
{
    static const size_t counts[] = {1024, 2048, 4096, 8192, 16384};
    nxl_kv_agent_t *a;
    nxl_kv_ctx_t *ctx;
    size_t i, j, *sids, *dids;
    uint64_t x = 0x9e3779b97f4a7c15ull;

    xk_dev_install();
    XK_CHECK(xk_local_agent("kv-large", &a));
    XT_ASSERT_OK(nxl_kv_ctx_create(a, NULL, &ctx));
    sids = malloc(16384 * sizeof(size_t));
    dids = malloc(16384 * sizeof(size_t));
    XT_ASSERT(sids != NULL && dids != NULL);
    for (i = 0; i < 6; i++) {
        size_t n = i < 5 ? counts[i] : 4096;
        nxl_kv_layout_config_t c = xt_kv_cfg(n);
        nxl_kv_layout_t *s, *d;

        c.inner_dim = 16;
        for (j = 0; j < n; j++) {
            sids[j] = dids[j] = j;
        }
        if (i == 5) {
            for (j = n - 1; j > 0; j--) {
                size_t r, tmp;

                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                r = (size_t)(x % (j + 1));
                tmp = dids[j];
                dids[j] = dids[r];
                dids[r] = tmp;
            }
        }
        XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, PIN, a, &s));
        XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, DEV, a, &d));
        if (i == 0 || i == 2 || i == 5) {
            XT_ASSERT_OK(
                nxl_kv_fill_blocks(s, sids, n, NXL_KV_FILL_SEQUENTIAL, 0));
        }
        XT_ASSERT_OK(xt_kv_run(ctx, s, sids, d, dids, n, NULL));
        if (i == 0 || i == 2 || i == 5) {
            XK_CHECK(xt_kv_same(s, sids, d, dids, n, 0, 0));
        }
        nxl_kv_layout_destroy(s);
        nxl_kv_layout_destroy(d);
    }
    free(sids);
    free(dids);
    nxl_kv_ctx_destroy(ctx);
    nxl_kv_agent_destroy(a);
    return 0;
}

/* ---- batched device copies -------------------------------------------- */

/* xk_batched_run moves n shuffled blocks Pinned FC -> Device FC -> Pinned
 * FC on a new context and checks the bytes; *batches_p gets how many
 * batches the fake device accepted meanwhile. */
static int
xk_batched_run(nxl_kv_agent_t *a, size_t n, uint64_t *batches_p)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(n);
    nxl_kv_layout_t *s, *d, *back;
    size_t *ids, *rev, i;
    nxl_kv_ctx_t *ctx;
    uint64_t b0 = xt_fakedev_batches();

    c.inner_dim = 16;
    ids = malloc(n * sizeof(size_t));
    rev = malloc(n * sizeof(size_t));
    XT_ASSERT(ids != NULL && rev != NULL);
    for (i = 0; i < n; i++) {
        ids[i] = i;
        rev[i] = n - 1 - i;
    }
    XT_ASSERT_OK(nxl_kv_ctx_create(a, NULL, &ctx));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, PIN, a, &s));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, DEV, a, &d));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, PIN, a, &back));
    XT_ASSERT_OK(nxl_kv_fill_blocks(s, ids, n, NXL_KV_FILL_SEQUENTIAL, 0));
    /* Ascending to descending ids: no two neighbours merge, every block
     * is its own pair. */
    XT_ASSERT_OK(xt_kv_run(ctx, s, ids, d, rev, n, NULL));
    XT_ASSERT_OK(xt_kv_run(ctx, d, rev, back, ids, n, NULL));
    XK_CHECK(xt_kv_same(s, ids, back, ids, n, 0, 0));
    /* The context keeps its choice: a second round the same way. */
    XT_ASSERT_OK(nxl_kv_fill_blocks(back, ids, n, NXL_KV_FILL_CONSTANT, 0));
    XT_ASSERT_OK(xt_kv_run(ctx, d, rev, back, ids, n, NULL));
    XK_CHECK(xt_kv_same(s, ids, back, ids, n, 0, 0));
    *batches_p = xt_fakedev_batches() - b0;
    nxl_kv_ctx_destroy(ctx);
    nxl_kv_layout_destroy(s);
    nxl_kv_layout_destroy(d);
    nxl_kv_layout_destroy(back);
    free(ids);
    free(rev);
    return 0;
}

/* Scattered blocks between pinned and device memory go to the device kind
 * in batches of 256 pairs (600 blocks: 3 batches per transfer, 3
 * transfers); a kind without batches, or one whose batch fails part way,
 * still moves every byte, per pair, and the context stops batching after
 * a failure. */
static int
t_batched_copies(void)
{
    nxl_kv_agent_t *a;
    uint64_t nb, m0;

    xt_fakedev_install();
    XK_CHECK(xk_local_agent("kv-batch", &a));
    XK_CHECK(xk_batched_run(a, 600, &nb));
    XT_ASSERT_EQ(nb, 9);
    /* One block: nothing to batch. */
    XK_CHECK(xk_batched_run(a, 1, &nb));
    XT_ASSERT_EQ(nb, 0);
    xt_fakedev_set_batch_mode(XT_FD_BATCH_UNSUPPORTED);
    XK_CHECK(xk_batched_run(a, 600, &nb));
    XT_ASSERT_EQ(nb, 0);
    xt_fakedev_set_batch_mode(XT_FD_BATCH_FAIL_HALF);
    XK_CHECK(xk_batched_run(a, 600, &nb));
    XT_ASSERT_EQ(nb, 0);
    xt_fakedev_set_batch_mode(XT_FD_BATCH_OK);
    /* Pinned host memory is device-addressable only when CUDA allocated it
     * (a GPU host, even with the fake as the device kind): then the 9
     * accepted batches and the failed one said MAPPED, else none did.
     * Memory of the device kind always is. */
    m0 = xt_fakedev_batches_mapped();
    XT_ASSERT_EQ(m0, nxl_memkind_cuda()->probe() == NXL_OK ? 10u : 0u);
    {
        nxl_kv_layout_config_t c = xt_kv_cfg(300);
        nxl_kv_layout_t *d1, *d2;
        nxl_kv_ctx_t *ctx;
        size_t ids[300], rev[300], i;

        for (i = 0; i < 300; i++) {
            ids[i] = i;
            rev[i] = 299 - i;
        }
        c.inner_dim = 16;
        XT_ASSERT_OK(nxl_kv_ctx_create(a, NULL, &ctx));
        XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, DEV, a, &d1));
        XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, DEV, a, &d2));
        XT_ASSERT_OK(
            nxl_kv_fill_blocks(d1, ids, 300, NXL_KV_FILL_SEQUENTIAL, 0));
        XT_ASSERT_OK(xt_kv_run(ctx, d1, ids, d2, rev, 300, NULL));
        XK_CHECK(xt_kv_same(d1, ids, d2, rev, 300, 0, 0));
        XT_ASSERT_EQ(xt_fakedev_batches_mapped() - m0, 2);
        /* The other fake device's memory is not the context's (device
         * 0): a kernel there would need peer access, so not MAPPED. */
        {
            nxl_kv_loc_t other = {DEV, 1};
            nxl_kv_layout_t *d3;

            XT_ASSERT_OK(nxl_kv_layout_alloc(&c, FC, 0, other, a, &d3));
            m0 = xt_fakedev_batches_mapped();
            nb = xt_fakedev_batches();
            XT_ASSERT_OK(xt_kv_run(ctx, d1, ids, d3, rev, 300, NULL));
            XK_CHECK(xt_kv_same(d1, ids, d3, rev, 300, 0, 0));
            XT_ASSERT_EQ(xt_fakedev_batches() - nb, 2);
            XT_ASSERT_EQ(xt_fakedev_batches_mapped(), m0);
            nxl_kv_layout_destroy(d3);
        }
        nxl_kv_ctx_destroy(ctx);
        nxl_kv_layout_destroy(d1);
        nxl_kv_layout_destroy(d2);
    }
    nxl_kv_agent_destroy(a);
    XT_ASSERT_EQ(xt_fakedev_live_events(), 0);
    XT_ASSERT_EQ(xt_fakedev_dir_mismatches(), 0);
    return 0;
}

/* ---- partial layer ranges --------------------------------------------- */

/* xk_layer_case moves blocks [0,1] -> [1,2] over layers [lb, le) and checks
 * them, and that the destination's other layers keep their constant. */
static int
xk_layer_case(nxl_kv_ctx_t *ctx, nxl_kv_agent_t *a, nxl_kv_kind_t sk,
              nxl_kv_layout_type_t st, nxl_kv_kind_t dk,
              nxl_kv_layout_type_t dt, size_t lb, size_t le,
              const nxl_kv_layout_t *bounce)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(4);
    size_t sids[] = {0, 1}, dids[] = {1, 2}, all[] = {0, 1, 2, 3};
    size_t refid[] = {3, 3}, bids[] = {2, 3};
    nxl_kv_layout_t *s, *d;
    nxl_kv_opts_t o;
    size_t other;

    XT_ASSERT_OK(xt_kv_layout(&c, st, 0, sk, a, &s));
    XT_ASSERT_OK(xt_kv_layout(&c, dt, 0, dk, a, &d));
    XT_ASSERT_OK(nxl_kv_fill_blocks(s, all, 4, NXL_KV_FILL_SEQUENTIAL, 0));
    XT_ASSERT_OK(nxl_kv_fill_blocks(d, all, 4, NXL_KV_FILL_CONSTANT, 0x11));
    nxl_kv_opts_init(&o);
    o.layer_begin = lb;
    o.layer_end = le;
    o.bounce = bounce;
    o.bounce_ids = bids;
    o.num_bounce = 2;
    XT_ASSERT_OK(xt_kv_run(ctx, s, sids, d, dids, 2, &o));
    XK_CHECK(xt_kv_same(s, sids, d, dids, 2, lb, le));
    if (le - lb < 2) {
        other = lb == 0 ? 1 : 0;
        /* Untouched layer of the moved blocks == the same layer of the
         * untouched block 3 (all 0x11). */
        XK_CHECK(xt_kv_same(d, refid, d, dids, 2, other, other + 1));
    }
    nxl_kv_layout_destroy(s);
    nxl_kv_layout_destroy(d);
    return 0;
}

/* Dynamo's direct cases (FC/FC full; FC -> LS layer 0; LS/LS layer 1),
 * plus device and two-hop disk paths on one layer. */
static int
t_partial_layers(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(4);
    nxl_kv_layout_t *bounce;
    nxl_kv_agent_t *a;
    nxl_kv_ctx_t *ctx;

    xt_fakedev_install();
    XK_CHECK(xk_local_agent("kv-layers", &a));
    XT_ASSERT_OK(nxl_kv_ctx_create(a, NULL, &ctx));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, PIN, a, &bounce));
    XK_CHECK(xk_layer_case(ctx, a, SYS, FC, SYS, FC, 0, 2, NULL));
    XK_CHECK(xk_layer_case(ctx, a, PIN, FC, PIN, FC, 0, 2, NULL));
    XK_CHECK(xk_layer_case(ctx, a, SYS, FC, PIN, FC, 0, 2, NULL));
    XK_CHECK(xk_layer_case(ctx, a, PIN, FC, SYS, FC, 0, 2, NULL));
    XK_CHECK(xk_layer_case(ctx, a, SYS, FC, PIN, LS, 0, 1, NULL));
    XK_CHECK(xk_layer_case(ctx, a, PIN, FC, SYS, LS, 0, 1, NULL));
    XK_CHECK(xk_layer_case(ctx, a, PIN, LS, PIN, LS, 1, 2, NULL));
    XK_CHECK(xk_layer_case(ctx, a, SYS, FC, SYS, FC, 1, 2, NULL));
    XK_CHECK(xk_layer_case(ctx, a, PIN, FC, DEV, FC, 1, 2, NULL));
    XK_CHECK(xk_layer_case(ctx, a, DEV, LS, SYS, FC, 0, 1, NULL));
    XK_CHECK(xk_layer_case(ctx, a, SYS, FC, DSK, FC, 1, 2, NULL));
    XK_CHECK(xk_layer_case(ctx, a, DSK, LS, PIN, FC, 0, 1, NULL));
    XK_CHECK(xk_layer_case(ctx, a, DEV, FC, DSK, LS, 1, 2, bounce));
    XK_CHECK(xk_layer_case(ctx, a, DSK, FC, DEV, FC, 0, 1, bounce));
    nxl_kv_ctx_destroy(ctx);
    nxl_kv_layout_destroy(bounce);
    nxl_kv_agent_destroy(a);
    return 0;
}

/* ---- errors ------------------------------------------------------------ */

/* xk_expect_err checks a refused transfer: status and message text. */
static int
xk_expect_err(nxl_kv_ctx_t *ctx, const nxl_kv_layout_t *s, const size_t *si,
              const nxl_kv_layout_t *d, const size_t *di, size_t n,
              const nxl_kv_opts_t *o, nxl_status_t want, const char *text)
{
    nxl_kv_notif_t *nt = NULL;
    nxl_status_t st = nxl_kv_transfer(ctx, s, si, d, di, n, o, &nt);

    if (st != want) {
        nxl_kv_notif_release(nt);
        XT_FAILF("got %s, want %s (%s)", nxl_status_name(st),
                 nxl_status_name(want), nxl_last_error());
    }
    if (strstr(nxl_last_error(), text) == NULL) {
        XT_FAILF("message \"%s\" lacks \"%s\"", nxl_last_error(), text);
    }
    XT_ASSERT(nt == NULL);
    return 0;
}

static int
t_errors(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(4);
    size_t ids[] = {0, 1}, other[] = {2, 3}, dup[] = {2, 2}, oob[] = {0, 4};
    size_t ovl[] = {1, 2}, bids[] = {0, 1};
    nxl_kv_layout_t *dev, *disk, *sys, *sys3, *pin, *remote;
    nxl_kv_agent_t *a;
    nxl_kv_ctx_t *ctx;
    nxl_kv_opts_t o;

    xt_fakedev_install();
    XK_CHECK(xk_local_agent("kv-errors", &a));
    XT_ASSERT_OK(nxl_kv_ctx_create(a, NULL, &ctx));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, DEV, a, &dev));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, DSK, a, &disk));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, SYS, a, &sys));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, PIN, a, &pin));
    c.num_layers = 3;
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, SYS, a, &sys3));
    c = xt_kv_cfg(4);
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, SYS, NULL, &remote));
    XT_ASSERT_OK(nxl_kv_layout_set_agent(remote, "somebody-else"));

    nxl_kv_opts_init(&o);
    XK_CHECK(xk_expect_err(ctx, dev, ids, disk, ids, 2, &o,
                           NXL_ERR_INVALID_PARAM,
                           "Two-hop transfers require a bounce buffer."));
    XK_CHECK(xk_expect_err(ctx, disk, ids, dev, ids, 2, NULL,
                           NXL_ERR_INVALID_PARAM,
                           "Two-hop transfers require a bounce buffer."));
    o.bounce = sys;
    o.bounce_ids = bids;
    o.num_bounce = 2;
    XK_CHECK(xk_expect_err(ctx, dev, ids, disk, ids, 2, &o,
                           NXL_ERR_INVALID_PARAM,
                           "Bounce buffer layout does not match bounce "
                           "location."));
    o.bounce = pin;
    o.num_bounce = 0;
    XK_CHECK(xk_expect_err(ctx, dev, ids, disk, ids, 2, &o,
                           NXL_ERR_INVALID_PARAM,
                           "Bounce buffer has no blocks"));
    o.num_bounce = 2;
    o.bounce_ids = oob;
    XK_CHECK(xk_expect_err(ctx, dev, ids, disk, ids, 2, &o,
                           NXL_ERR_INVALID_PARAM, "out of range for bounce"));
    o.bounce_ids = dup;
    XK_CHECK(xk_expect_err(ctx, dev, ids, disk, ids, 2, &o,
                           NXL_ERR_INVALID_PARAM, "not unique"));
    /* Validation. */
    XK_CHECK(xk_expect_err(ctx, sys, ids, pin, dup, 2, NULL,
                           NXL_ERR_INVALID_PARAM,
                           "Destination block IDs are not unique"));
    XK_CHECK(xk_expect_err(ctx, sys, oob, pin, ids, 2, NULL,
                           NXL_ERR_INVALID_PARAM,
                           "Block ID 4 out of range for source"));
    XK_CHECK(xk_expect_err(ctx, sys, ids, sys, ovl, 2, NULL,
                           NXL_ERR_INVALID_PARAM,
                           "Source and destination blocks overlap"));
    /* Builder errors before anything moved. */
    XK_CHECK(xk_expect_err(ctx, sys, ids, sys3, other, 2, NULL,
                           NXL_ERR_INVALID_PARAM,
                           "Layouts have incompatible layer counts: src=2, "
                           "dst=3"));
    nxl_kv_opts_init(&o);
    o.layer_begin = 1;
    o.layer_end = 5;
    XK_CHECK(xk_expect_err(ctx, sys, ids, pin, ids, 2, &o,
                           NXL_ERR_INVALID_PARAM, "Layer range 1..5"));
    /* Strategy errors. */
    XK_CHECK(xk_expect_err(ctx, remote, ids, remote, other, 2, NULL,
                           NXL_ERR_INVALID_PARAM,
                           "Both src and dst are remote"));
    XK_CHECK(xk_expect_err(ctx, disk, ids, remote, ids, 2, NULL,
                           NXL_ERR_NOT_SUPPORTED,
                           "Neither local nor remote disk transfers"));
    XK_CHECK(xk_expect_err(ctx, dev, ids, remote, ids, 2, NULL,
                           NXL_ERR_NOT_SUPPORTED, "GPU RDMA is disabled"));
    /* Remote System -> local System over an agent that never loaded
     * "somebody-else": the NXL request itself fails. */
    {
        nxl_kv_notif_t *nt = NULL;

        XT_ASSERT(nxl_kv_transfer(ctx, remote, ids, sys, ids, 2, NULL, &nt) <
                  0);
        XT_ASSERT(nt == NULL);
    }
    XT_ASSERT_STATUS(nxl_kv_transfer(NULL, sys, ids, pin, ids, 2, NULL, NULL),
                     NXL_ERR_INVALID_PARAM);
    nxl_kv_ctx_destroy(ctx);
    nxl_kv_layout_destroy(dev);
    nxl_kv_layout_destroy(disk);
    nxl_kv_layout_destroy(sys);
    nxl_kv_layout_destroy(sys3);
    nxl_kv_layout_destroy(pin);
    nxl_kv_layout_destroy(remote);
    nxl_kv_agent_destroy(a);
    return 0;
}

/* A failed device copy completes the handle with the event's error;
 * memcpy and zero-block transfers complete at once with distinct uuid4s. */
static int
t_completion_basics(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(4);
    size_t ids[] = {0, 1};
    nxl_kv_layout_t *pin, *dev, *sys;
    nxl_kv_notif_t *n1, *n2;
    nxl_kv_agent_t *a;
    nxl_kv_ctx_t *ctx;
    const char *u;

    xt_fakedev_install();
    XK_CHECK(xk_local_agent("kv-basics", &a));
    XT_ASSERT_OK(nxl_kv_ctx_create(a, NULL, &ctx));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, PIN, a, &pin));
    XT_ASSERT_OK(xt_kv_layout(&c, LS, 0, SYS, a, &sys));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, DEV, a, &dev));

    XT_ASSERT_OK(nxl_kv_transfer(ctx, pin, ids, sys, ids, 2, NULL, &n1));
    XT_ASSERT_OK(nxl_kv_notif_status(n1));
    XT_ASSERT_STR(nxl_kv_notif_error(n1), "");
    XT_ASSERT_OK(nxl_kv_transfer(ctx, pin, NULL, sys, NULL, 0, NULL, &n2));
    XT_ASSERT_OK(nxl_kv_notif_wait(n2, 0));
    u = nxl_kv_notif_uuid(n1);
    XT_ASSERT_EQ(strlen(u), 36);
    XT_ASSERT(u[8] == '-' && u[13] == '-' && u[18] == '-' && u[23] == '-');
    XT_ASSERT(u[14] == '4');
    XT_ASSERT(strchr("89ab", u[19]) != NULL);
    XT_ASSERT(strcmp(u, nxl_kv_notif_uuid(n2)) != 0);
    nxl_kv_notif_release(n1);
    nxl_kv_notif_release(n2);

    xt_fakedev_fail_next(1);
    XT_ASSERT_OK(nxl_kv_transfer(ctx, pin, ids, dev, ids, 2, NULL, &n1));
    XT_ASSERT_STATUS(nxl_kv_notif_wait(n1, XK_WAIT_MS), NXL_ERR_BACKEND);
    XT_ASSERT(strstr(nxl_kv_notif_error(n1), "CUDA event query failed") !=
              NULL);
    XT_ASSERT(strstr(nxl_kv_notif_error(n1), "injected") != NULL);
    nxl_kv_notif_release(n1);
    /* The context still works afterwards. */
    XT_ASSERT_OK(nxl_kv_fill_blocks(pin, ids, 2, NXL_KV_FILL_SEQUENTIAL, 0));
    XT_ASSERT_OK(xt_kv_run(ctx, pin, ids, dev, ids, 2, NULL));
    XK_CHECK(xt_kv_same(pin, ids, dev, ids, 2, 0, 0));
    nxl_kv_notif_release(NULL);

    nxl_kv_ctx_destroy(ctx);
    nxl_kv_layout_destroy(pin);
    nxl_kv_layout_destroy(sys);
    nxl_kv_layout_destroy(dev);
    nxl_kv_agent_destroy(a);
    XT_ASSERT_EQ(xt_fakedev_live_events(), 0);
    XT_ASSERT_EQ(xt_fakedev_live_streams(), 0);
    return 0;
}

/* ---- deadlines, warnings, drain --------------------------------------- */

/* xk_slow_setup makes an agent, a context with cfg, a pinned source of
 * 8 filled blocks and a device destination; every async copy then takes
 * delay_us (8 shuffled blocks -> 8 copies). */
static int
xk_slow_setup(const nxl_kv_ctx_config_t *cfg, unsigned delay_us,
              nxl_kv_agent_t **a, nxl_kv_ctx_t **ctx, nxl_kv_layout_t **s,
              nxl_kv_layout_t **d)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(8);
    size_t all[] = {0, 1, 2, 3, 4, 5, 6, 7};

    xt_fakedev_install();
    XK_CHECK(xk_local_agent("kv-slow", a));
    XT_ASSERT_OK(nxl_kv_ctx_create(*a, cfg, ctx));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, PIN, *a, s));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, DEV, *a, d));
    XT_ASSERT_OK(nxl_kv_fill_blocks(*s, all, 8, NXL_KV_FILL_SEQUENTIAL, 0));
    xt_fakedev_set_delay_us(delay_us);
    return 0;
}

static const size_t xk_src8[] = {0, 2, 4, 6, 1, 3, 5, 7};
static const size_t xk_dst8[] = {7, 5, 3, 1, 6, 4, 2, 0};

/* The deadline turns the handle to TIMEOUT while the copies go on; the
 * event lives until they end, and the data still arrive. */
static int
t_deadline_timeout(void)
{
    nxl_kv_layout_t *s, *d;
    nxl_kv_notif_t *nt;
    nxl_kv_agent_t *a;
    nxl_kv_ctx_t *ctx;
    nxl_kv_opts_t o;
    uint64_t t0;

    XK_CHECK(xk_slow_setup(NULL, 250000, &a, &ctx, &s, &d));
    nxl_kv_opts_init(&o);
    o.deadline_ms = 20;
    XT_ASSERT_OK(nxl_kv_transfer(ctx, s, xk_src8, d, xk_dst8, 8, &o, &nt));
    XT_ASSERT_STATUS(nxl_kv_notif_wait(nt, XK_WAIT_MS), NXL_ERR_TIMEOUT);
    XT_ASSERT_EQ(nxl_kv_notif_status(nt), NXL_ERR_TIMEOUT);
    XT_ASSERT(strstr(nxl_kv_notif_error(nt), "deadline") != NULL);
    /* 8 copies of 250 ms cannot be done yet: the event is alive. */
    XT_ASSERT(xt_fakedev_live_events() >= 1);
    t0 = xt_now_ms();
    while (xt_fakedev_live_events() > 0 && xt_now_ms() - t0 < XK_WAIT_MS) {
        usleep(10000);
    }
    XT_ASSERT_EQ(xt_fakedev_live_events(), 0);
    XT_ASSERT_EQ(nxl_kv_notif_status(nt), NXL_ERR_TIMEOUT);
    XK_CHECK(xt_kv_same(s, xk_src8, d, xk_dst8, 8, 0, 0));
    nxl_kv_notif_release(nt);

    /* A generous deadline is not reached. */
    o.deadline_ms = XK_WAIT_MS;
    xt_fakedev_set_delay_us(0);
    XT_ASSERT_OK(xt_kv_run(ctx, s, xk_src8, d, xk_dst8, 8, &o));
    nxl_kv_ctx_destroy(ctx);
    nxl_kv_layout_destroy(s);
    nxl_kv_layout_destroy(d);
    nxl_kv_agent_destroy(a);
    return 0;
}

/* Slow-transfer warnings: after warn_after_ms, then every warn_every_ms,
 * counted; none once the transfer ended. */
static int
t_slow_warnings(void)
{
    nxl_kv_layout_t *s, *d;
    nxl_kv_ctx_config_t cfg;
    nxl_kv_notif_t *nt;
    nxl_kv_agent_t *a;
    nxl_kv_ctx_t *ctx;
    uint64_t w;

    nxl_kv_ctx_config_init(&cfg);
    XT_ASSERT_EQ(cfg.poll_tick_ms, 1);
    XT_ASSERT_EQ(cfg.warn_after_ms, 60000);
    XT_ASSERT_EQ(cfg.warn_every_ms, 30000);
    XT_ASSERT_EQ(cfg.max_pending, 4096);
    cfg.warn_after_ms = 10;
    cfg.warn_every_ms = 200;
    XK_CHECK(xk_slow_setup(&cfg, 100000, &a, &ctx, &s, &d));
    XT_ASSERT_EQ(nxl_kv_ctx_slow_warnings(ctx), 0);
    XT_ASSERT_OK(nxl_kv_transfer(ctx, s, xk_src8, d, xk_dst8, 8, NULL, &nt));
    XT_ASSERT_OK(nxl_kv_notif_wait(nt, XK_WAIT_MS));
    nxl_kv_notif_release(nt);
    /* At least 800 ms pending with warnings due after 10 ms. */
    w = nxl_kv_ctx_slow_warnings(ctx);
    XT_ASSERT(w >= 1);
    usleep(50000);
    XT_ASSERT_EQ(nxl_kv_ctx_slow_warnings(ctx), w);
    XK_CHECK(xt_kv_same(s, xk_src8, d, xk_dst8, 8, 0, 0));
    nxl_kv_ctx_destroy(ctx);
    nxl_kv_layout_destroy(s);
    nxl_kv_layout_destroy(d);
    nxl_kv_agent_destroy(a);
    return 0;
}

/* Destroy waits for pending work: released handles and kept ones, a
 * two-hop job, and an await that never completes (canceled). */
static int
t_drain_on_destroy(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(8);
    size_t bids[] = {0, 1, 2}, all[] = {0, 1, 2, 3, 4, 5, 6, 7};
    nxl_kv_layout_t *s, *d, *d2, *disk, *bounce;
    nxl_kv_notif_t *kept, *hop, *key;
    nxl_kv_agent_t *a;
    nxl_kv_ctx_t *ctx;
    nxl_kv_opts_t o;

    XK_CHECK(xk_slow_setup(NULL, 20000, &a, &ctx, &s, &d));
    XT_ASSERT_OK(xt_kv_layout(&c, LS, 0, DSK, a, &disk));
    XT_ASSERT_OK(xt_kv_layout(&c, LS, 0, DEV, a, &d2));
    XT_ASSERT_OK(nxl_kv_fill_blocks(d2, all, 8, NXL_KV_FILL_SEQUENTIAL, 0));
    c.num_blocks = 3;
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, PIN, a, &bounce));
    XT_ASSERT_OK(nxl_kv_transfer(ctx, s, xk_src8, d, xk_dst8, 8, NULL, &kept));
    nxl_kv_opts_init(&o);
    o.bounce = bounce;
    o.bounce_ids = bids;
    o.num_bounce = 3;
    /* Device -> Disk: D2H on the (slow) device, then POSIX writes, in
     * three chunks. */
    XT_ASSERT_OK(nxl_kv_transfer(ctx, d2, xk_src8, disk, xk_dst8, 8, &o, &hop));
    nxl_kv_notif_release(hop);
    XT_ASSERT_OK(nxl_kv_ctx_await_notif(ctx, "never-sent", 0, &key));
    nxl_kv_ctx_destroy(ctx);
    XT_ASSERT_EQ(xt_fakedev_live_events(), 0);
    XT_ASSERT_OK(nxl_kv_notif_status(kept));
    XT_ASSERT_STATUS(nxl_kv_notif_status(key), NXL_ERR_CANCELED);
    nxl_kv_notif_release(kept);
    nxl_kv_notif_release(key);
    XK_CHECK(xt_kv_same(s, xk_src8, d, xk_dst8, 8, 0, 0));
    XK_CHECK(xt_kv_same(d2, xk_src8, disk, xk_dst8, 8, 0, 0));
    nxl_kv_layout_destroy(s);
    nxl_kv_layout_destroy(d);
    nxl_kv_layout_destroy(d2);
    nxl_kv_layout_destroy(disk);
    nxl_kv_layout_destroy(bounce);
    nxl_kv_agent_destroy(a);
    return 0;
}

/* max_pending bounds the poller: a second async transfer is refused while
 * the first is pending, accepted after. */
static int
t_max_pending(void)
{
    nxl_kv_layout_t *s, *d;
    nxl_kv_ctx_config_t cfg;
    nxl_kv_notif_t *n1, *n2 = NULL;
    nxl_kv_agent_t *a;
    nxl_kv_ctx_t *ctx;
    size_t one[] = {0}, two[] = {1};

    nxl_kv_ctx_config_init(&cfg);
    cfg.max_pending = 1;
    XK_CHECK(xk_slow_setup(&cfg, 300000, &a, &ctx, &s, &d));
    XT_ASSERT_OK(nxl_kv_transfer(ctx, s, one, d, one, 1, NULL, &n1));
    XT_ASSERT_STATUS(nxl_kv_transfer(ctx, s, two, d, two, 1, NULL, &n2),
                     NXL_ERR_NOT_ALLOWED);
    XT_ASSERT(n2 == NULL);
    /* Synchronous strategies need no slot. */
    XT_ASSERT_OK(nxl_kv_notif_wait(n1, XK_WAIT_MS));
    nxl_kv_notif_release(n1);
    xt_fakedev_set_delay_us(0);
    XT_ASSERT_OK(xt_kv_run(ctx, s, two, d, two, 1, NULL));
    /* The slot is free once the wait returns: a thread that submits as
     * soon as its last transfer completed never finds the one slot taken
     * (the poller gives it back before it sets the status). */
    for (int i = 0; i < 300; i++) {
        XT_ASSERT_OK(nxl_kv_transfer(ctx, s, one, d, one, 1, NULL, &n1));
        XT_ASSERT_OK(nxl_kv_notif_wait(n1, XK_WAIT_MS));
        nxl_kv_notif_release(n1);
    }
    nxl_kv_ctx_destroy(ctx);
    nxl_kv_layout_destroy(s);
    nxl_kv_layout_destroy(d);
    nxl_kv_agent_destroy(a);
    return 0;
}

/* ---- two agents over SHM ---------------------------------------------- */

/* Agent B writes into A's blocks with a notification key; A's context
 * completes an await of that key. Keys that arrive before the await (with
 * and without another await running) are kept; an unknown key times out. */
static int
t_notif_event(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(8);
    size_t s1[] = {0, 1}, d1[] = {4, 5}, s2[] = {2}, d2[] = {6}, s3[] = {3};
    size_t d3[] = {7};
    nxl_kv_layout_t *la, *lb, *va;
    nxl_kv_agent_t *a, *b;
    nxl_kv_ctx_t *ca, *cb;
    nxl_kv_notif_t *w, *w2, *nb;
    nxl_kv_opts_t o;
    uint64_t t0;

    XK_CHECK(xt_kv_shm_agent("kv-A", &a));
    XK_CHECK(xt_kv_shm_agent("kv-B", &b));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, SYS, a, &la));
    XT_ASSERT_OK(xt_kv_layout(&c, LS, 0, PIN, b, &lb));
    XT_ASSERT_STR(nxl_kv_layout_agent(la), "kv-A");
    XK_CHECK(xt_kv_md_to(a, b));
    XK_CHECK(xt_kv_view(la, &va));
    XT_ASSERT_STR(nxl_kv_layout_agent(va), "kv-A");
    XT_ASSERT_OK(nxl_kv_ctx_create(a, NULL, &ca));
    XT_ASSERT_OK(nxl_kv_ctx_create(b, NULL, &cb));
    XT_ASSERT_OK(nxl_kv_fill_blocks(lb, s1, 2, NXL_KV_FILL_SEQUENTIAL, 0));
    XT_ASSERT_OK(nxl_kv_fill_blocks(lb, s2, 1, NXL_KV_FILL_SEQUENTIAL, 0));
    XT_ASSERT_OK(nxl_kv_fill_blocks(lb, s3, 1, NXL_KV_FILL_SEQUENTIAL, 0));

    /* Awaited first, then written. */
    XT_ASSERT_OK(nxl_kv_ctx_await_notif(ca, "key-1", 0, &w));
    XT_ASSERT_EQ(nxl_kv_notif_status(w), NXL_IN_PROG);
    nxl_kv_opts_init(&o);
    o.notif = "key-1";
    o.notif_len = 5;
    XT_ASSERT_OK(xt_kv_run(cb, lb, s1, va, d1, 2, &o));
    XT_ASSERT_OK(nxl_kv_notif_wait(w, XK_WAIT_MS));
    nxl_kv_notif_release(w);
    XK_CHECK(xt_kv_same(lb, s1, la, d1, 2, 0, 0));

    /* Early: written (and delivered) before anyone awaits it. */
    o.notif = "key-early";
    o.notif_len = 9;
    XT_ASSERT_OK(xt_kv_run(cb, lb, s2, va, d2, 1, &o));
    XT_ASSERT_OK(nxl_kv_ctx_await_notif(ca, "key-early", 0, &w));
    XT_ASSERT_OK(nxl_kv_notif_wait(w, XK_WAIT_MS));
    nxl_kv_notif_release(w);
    XK_CHECK(xt_kv_same(lb, s2, la, d2, 1, 0, 0));

    /* Early while another key is awaited: the poller fetches it and keeps
     * it; the other await times out on its deadline. */
    XT_ASSERT_OK(nxl_kv_ctx_await_notif(ca, "key-never", 1000, &w2));
    o.notif = "key-3";
    o.notif_len = 5;
    XT_ASSERT_OK(nxl_kv_transfer(cb, lb, s3, va, d3, 1, &o, &nb));
    XT_ASSERT_OK(nxl_kv_notif_wait(nb, XK_WAIT_MS));
    nxl_kv_notif_release(nb);
    XT_ASSERT_STATUS(nxl_kv_notif_wait(w2, XK_WAIT_MS), NXL_ERR_TIMEOUT);
    XT_ASSERT_EQ(nxl_kv_notif_status(w2), NXL_ERR_TIMEOUT);
    nxl_kv_notif_release(w2);
    t0 = xt_now_ms();
    XT_ASSERT_OK(nxl_kv_ctx_await_notif(ca, "key-3", 0, &w));
    XT_ASSERT_OK(nxl_kv_notif_wait(w, XK_WAIT_MS));
    nxl_kv_notif_release(w);
    XT_ASSERT(xt_now_ms() - t0 < XK_WAIT_MS);
    XK_CHECK(xt_kv_same(lb, s3, la, d3, 1, 0, 0));

    /* A plain notification (no transfer) with the key works as well, and
     * a key is consumed once: a second await of key-1 does not see it. */
    XT_ASSERT_OK(nxl_kv_ctx_await_notif(ca, "key-1", 300, &w));
    XT_ASSERT_STATUS(nxl_kv_notif_wait(w, XK_WAIT_MS), NXL_ERR_TIMEOUT);
    nxl_kv_notif_release(w);
    XT_ASSERT_OK(nxl_kv_ctx_await_notif(ca, "plain", 0, &w));
    XT_ASSERT_OK(nxl_notif_send(nxl_kv_agent_raw(b), "kv-A", "plain", 5, NULL));
    XT_ASSERT_OK(nxl_kv_notif_wait(w, XK_WAIT_MS));
    nxl_kv_notif_release(w);

    nxl_kv_ctx_destroy(cb);
    nxl_kv_ctx_destroy(ca);
    nxl_kv_layout_destroy(va);
    nxl_kv_layout_destroy(la);
    nxl_kv_layout_destroy(lb);
    nxl_kv_agent_destroy(b);
    nxl_kv_agent_destroy(a);
    return 0;
}

/* Agent A reads B's blocks (NixlReadFlipped: local list = A's, remote =
 * B's, READ from "kv-B") and writes them back to other blocks of B
 * (NixlWrite). */
static int
t_remote_read(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(6);
    size_t bs[] = {0, 1, 2}, ad[] = {5, 3, 1}, bd[] = {3, 4, 5};
    nxl_kv_layout_t *la, *lb, *vb;
    nxl_kv_agent_t *a, *b;
    nxl_kv_ctx_t *ca;

    XK_CHECK(xt_kv_shm_agent("kv-A", &a));
    XK_CHECK(xt_kv_shm_agent("kv-B", &b));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, PIN, a, &la));
    XT_ASSERT_OK(xt_kv_layout(&c, LS, 0, SYS, b, &lb));
    XT_ASSERT_OK(nxl_kv_fill_blocks(lb, bs, 3, NXL_KV_FILL_SEQUENTIAL, 0));
    XK_CHECK(xt_kv_md_to(b, a));
    XK_CHECK(xt_kv_view(lb, &vb));
    XT_ASSERT_OK(nxl_kv_ctx_create(a, NULL, &ca));
    XT_ASSERT_OK(xt_kv_run(ca, vb, bs, la, ad, 3, NULL));
    XK_CHECK(xt_kv_same(lb, bs, la, ad, 3, 0, 0));
    /* One layer back into B. */
    {
        nxl_kv_opts_t o;

        nxl_kv_opts_init(&o);
        o.layer_begin = 1;
        o.layer_end = 2;
        XT_ASSERT_OK(xt_kv_run(ca, la, ad, vb, bd, 3, &o));
        XK_CHECK(xt_kv_same(lb, bs, lb, bd, 3, 1, 2));
    }
    nxl_kv_ctx_destroy(ca);
    nxl_kv_layout_destroy(vb);
    nxl_kv_layout_destroy(la);
    nxl_kv_layout_destroy(lb);
    nxl_kv_agent_destroy(b);
    nxl_kv_agent_destroy(a);
    return 0;
}

/* ---- the same cases on a real GPU -------------------------------------- */

/* XK_ON_CUDA runs case fn with the CUDA kind as the device, or skips with
 * the driver's reason where no GPU runs (every CPU-only host). */
#define XK_ON_CUDA(fn)                                                         \
    do {                                                                       \
        XT_SKIP_IF(nxl_memkind_cuda()->probe() != NXL_OK, "%s",                \
                   nxl_last_error());                                          \
        xk_cuda = 1;                                                           \
        return fn();                                                           \
    } while (0)

static int
t_p2p_cuda(void)
{
    XK_ON_CUDA(t_p2p);
}
static int
t_roundtrip_cuda(void)
{
    XK_ON_CUDA(t_roundtrip);
}
static int
t_bounce_guards_cuda(void)
{
    XK_ON_CUDA(t_bounce_guards);
}
static int
t_buffered_transfer_cuda(void)
{
    XK_ON_CUDA(t_buffered_transfer);
}
static int
t_large_block_counts_cuda(void)
{
    XK_ON_CUDA(t_large_block_counts);
}

const xt_suite xt_suite_kv_xfer = {
    .name = "kv_xfer",
    .cases =
        (const xt_case[]){
            {"p2p", t_p2p},
            {"roundtrip", t_roundtrip},
            {"bounce_guards", t_bounce_guards},
            {"buffered_transfer", t_buffered_transfer},
            {"large_block_counts", t_large_block_counts},
            {"partial_layers", t_partial_layers},
            {"errors", t_errors},
            {"completion_basics", t_completion_basics},
            {"deadline_timeout", t_deadline_timeout},
            {"slow_warnings", t_slow_warnings},
            {"drain_on_destroy", t_drain_on_destroy},
            {"max_pending", t_max_pending},
            {"notif_event", t_notif_event},
            {"remote_read", t_remote_read},
            {"batched_copies", t_batched_copies},
            {"p2p_cuda", t_p2p_cuda},
            {"roundtrip_cuda", t_roundtrip_cuda},
            {"bounce_guards_cuda", t_bounce_guards_cuda},
            {"buffered_transfer_cuda", t_buffered_transfer_cuda},
            {"large_block_counts_cuda", t_large_block_counts_cuda},
            {NULL, NULL},
        },
    .timeout_s = 300,
};
