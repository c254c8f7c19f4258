/*
 * test_kv_dlists.c - descriptor lists of block transfers (Dynamo's
 * descriptor_tests.rs, translated): whole-block descriptors and run
 * coalescing for fully contiguous layouts, exact partial layer ranges,
 * per-region merges for layer-separate layouts, and the errors.
 *
 * Standard config: 2 layers, outer 2, page 16, inner 128, dtype 2 ->
 * region 4096 bytes, block 16384 bytes.
 */
#include "harness.h"
#include "xt_kv.h"

#include <nxl/nxl_kv.h>

#include "kv/kv.h"

#include <stdlib.h>
#include <string.h>

#define DL_REGION XT_KV_REGION
#define DL_BLOCK XT_KV_BLOCK

/* dl_addr returns the address of region (b, l, o). */
static uint64_t
dl_addr(const nxl_kv_layout_t *l, size_t b, size_t lyr, size_t o)
{
    nxl_kv_region_t r = {0, 0};

    if (nxl_kv_layout_region(l, b, lyr, o, &r) != NXL_OK) {
        return 0;
    }
    return r.addr;
}

/* dl_expect checks pair i of d: source region (sb, sl, 0), destination
 * (db, dl_, 0), len bytes. */
static int
dl_expect(const nxl_kv_dlists_t *d, size_t i, const nxl_kv_layout_t *s,
          size_t sb, size_t sl, const nxl_kv_layout_t *t, size_t db, size_t tl,
          uint64_t len)
{
    XT_ASSERT(i < d->count);
    XT_ASSERT_EQ(d->src[i].addr, dl_addr(s, sb, sl, 0));
    XT_ASSERT_EQ(d->dst[i].addr, dl_addr(t, db, tl, 0));
    XT_ASSERT_EQ(d->src[i].len, len);
    XT_ASSERT_EQ(d->dst[i].len, len);
    XT_ASSERT_EQ(d->src[i].dev_id, nxl_kv_layout_dev_id(s));
    XT_ASSERT_EQ(d->dst[i].dev_id, nxl_kv_layout_dev_id(t));
    return 0;
}

#define DL_EXPECT(...)                                                         \
    do {                                                                       \
        if (dl_expect(__VA_ARGS__) != 0)                                       \
            return 1;                                                          \
    } while (0)

/* dl_copy_check copies every pair of d with memcpy after filling src with
 * a pattern, then compares the bytes of every (block, layer, outer) region
 * of the transfer on both sides, and that no other destination byte
 * changed (dst was zeroed before). */
static int
dl_copy_check(const nxl_kv_layout_t *s, const size_t *sids,
              const nxl_kv_layout_t *t, const size_t *tids, size_t n, size_t lb,
              size_t le, const nxl_kv_dlists_t *d)
{
    const nxl_kv_layout_config_t *c = nxl_kv_layout_config(s);
    size_t i, b, lyr, o, moved = 0, total = 0;

    /* Pattern on every source region; zero every destination region. */
    for (b = 0; b < c->num_blocks; b++) {
        for (lyr = 0; lyr < c->num_layers; lyr++) {
            for (o = 0; o < c->outer_dim; o++) {
                uint8_t *p = (uint8_t *)(uintptr_t)dl_addr(s, b, lyr, o);

                for (i = 0; i < DL_REGION; i++) {
                    p[i] = (uint8_t)(b * 31 + lyr * 7 + o * 3 + i);
                }
            }
        }
    }
    c = nxl_kv_layout_config(t);
    for (b = 0; b < c->num_blocks; b++) {
        for (lyr = 0; lyr < c->num_layers; lyr++) {
            for (o = 0; o < c->outer_dim; o++) {
                memset((void *)(uintptr_t)dl_addr(t, b, lyr, o), 0, DL_REGION);
            }
        }
    }
    for (i = 0; i < d->count; i++) {
        memcpy((void *)(uintptr_t)d->dst[i].addr,
               (const void *)(uintptr_t)d->src[i].addr, d->src[i].len);
        moved += d->src[i].len;
    }
    for (i = 0; i < n; i++) {
        for (lyr = lb; lyr < le; lyr++) {
            for (o = 0; o < c->outer_dim; o++) {
                if (memcmp((void *)(uintptr_t)dl_addr(t, tids[i], lyr, o),
                           (void *)(uintptr_t)dl_addr(s, sids[i], lyr, o),
                           DL_REGION) != 0) {
                    XT_FAILF("region (%zu,%zu,%zu) -> (%zu,%zu,%zu) differs",
                             sids[i], lyr, o, tids[i], lyr, o);
                }
                total += DL_REGION;
            }
        }
    }
    XT_ASSERT_EQ(moved, total);
    return 0;
}

#define DL_COPY_CHECK(...)                                                     \
    do {                                                                       \
        if (dl_copy_check(__VA_ARGS__) != 0)                                   \
            return 1;                                                          \
    } while (0)

static const nxl_kv_kind_t dl_kinds[] = {NXL_KV_SYSTEM, NXL_KV_PINNED};

/* Coalesced [0..3] -> [0..3]: one descriptor of 4 blocks. */
static int
t_fc_consecutive(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(8);
    size_t ids[] = {0, 1, 2, 3}, k;

    for (k = 0; k < 2; k++) {
        nxl_kv_layout_t *s, *t;
        nxl_kv_dlists_t d;

        XT_ASSERT_OK(xt_kv_layout(&c, NXL_KV_FULLY_CONTIGUOUS, 0, dl_kinds[k],
                                  NULL, &s));
        XT_ASSERT_OK(xt_kv_layout(&c, NXL_KV_FULLY_CONTIGUOUS, 0, dl_kinds[k],
                                  NULL, &t));
        XT_ASSERT_EQ(nxl_kv_layout_block_bytes(s), DL_BLOCK);
        XT_ASSERT_OK(nxl_kv_build_dlists(s, ids, t, ids, 4, 0, 0, &d));
        XT_ASSERT_EQ(d.count, 1);
        XT_ASSERT_EQ(d.src_mem, NXL_DRAM);
        XT_ASSERT_EQ(d.dst_mem, NXL_DRAM);
        DL_EXPECT(&d, 0, s, 0, 0, t, 0, 0, 4 * DL_BLOCK);
        DL_COPY_CHECK(s, ids, t, ids, 4, 0, 2, &d);
        nxl_kv_dlists_free(&d);
        XT_ASSERT(d.src == NULL && d.count == 0);
        nxl_kv_layout_destroy(s);
        nxl_kv_layout_destroy(t);
    }
    return 0;
}

/* Coalesced [0,2,4,6] -> [1,3,5,7]: four whole-block descriptors. */
static int
t_fc_strided(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(8);
    size_t sids[] = {0, 2, 4, 6}, tids[] = {1, 3, 5, 7}, i, k;

    for (k = 0; k < 2; k++) {
        nxl_kv_layout_t *s, *t;
        nxl_kv_dlists_t d;

        XT_ASSERT_OK(xt_kv_layout(&c, NXL_KV_FULLY_CONTIGUOUS, 0, dl_kinds[k],
                                  NULL, &s));
        XT_ASSERT_OK(xt_kv_layout(&c, NXL_KV_FULLY_CONTIGUOUS, 0, dl_kinds[k],
                                  NULL, &t));
        XT_ASSERT_OK(nxl_kv_build_dlists(s, sids, t, tids, 4, 0, 0, &d));
        XT_ASSERT_EQ(d.count, 4);
        for (i = 0; i < 4; i++) {
            DL_EXPECT(&d, i, s, sids[i], 0, t, tids[i], 0, DL_BLOCK);
        }
        DL_COPY_CHECK(s, sids, t, tids, 4, 0, 2, &d);
        nxl_kv_dlists_free(&d);
        nxl_kv_layout_destroy(s);
        nxl_kv_layout_destroy(t);
    }
    return 0;
}

/* Batched 8 contiguous -> one descriptor of 8 blocks. */
static int
t_fc_eight(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(16);
    size_t sids[8], tids[8], i;
    nxl_kv_layout_t *s, *t;
    nxl_kv_dlists_t d;

    for (i = 0; i < 8; i++) {
        sids[i] = i;
        tids[i] = i + 8;
    }
    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_FULLY_CONTIGUOUS, 0, NXL_KV_PINNED, NULL, &s));
    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_FULLY_CONTIGUOUS, 0, NXL_KV_PINNED, NULL, &t));
    XT_ASSERT_OK(nxl_kv_build_dlists(s, sids, t, tids, 8, 0, 0, &d));
    XT_ASSERT_EQ(d.count, 1);
    DL_EXPECT(&d, 0, s, 0, 0, t, 8, 0, 8 * DL_BLOCK);
    nxl_kv_dlists_free(&d);
    nxl_kv_layout_destroy(s);
    nxl_kv_layout_destroy(t);
    return 0;
}

/* Batched [0,1,2,10,11,15] -> [0..5]: runs of 3, 2 and 1 blocks. */
static int
t_fc_runs(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(16);
    size_t sids[] = {0, 1, 2, 10, 11, 15}, tids[] = {0, 1, 2, 3, 4, 5};
    nxl_kv_layout_t *s, *t;
    nxl_kv_dlists_t d;

    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_FULLY_CONTIGUOUS, 0, NXL_KV_SYSTEM, NULL, &s));
    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_FULLY_CONTIGUOUS, 0, NXL_KV_SYSTEM, NULL, &t));
    XT_ASSERT_OK(nxl_kv_build_dlists(s, sids, t, tids, 6, 0, 0, &d));
    XT_ASSERT_EQ(d.count, 3);
    DL_EXPECT(&d, 0, s, 0, 0, t, 0, 0, 3 * DL_BLOCK);
    DL_EXPECT(&d, 1, s, 10, 0, t, 3, 0, 2 * DL_BLOCK);
    DL_EXPECT(&d, 2, s, 15, 0, t, 5, 0, DL_BLOCK);
    DL_COPY_CHECK(s, sids, t, tids, 6, 0, 2, &d);
    nxl_kv_dlists_free(&d);
    nxl_kv_layout_destroy(s);
    nxl_kv_layout_destroy(t);
    return 0;
}

/* A partial layer range over a 2-block run must not become one range
 * (Dynamo's BatchedRanges would cover layer 1 of block 0 and layer 0 of
 * block 1): one descriptor per block, each its layer's two outers. */
static int
t_fc_partial_layers(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(4);
    size_t sids[] = {0, 1}, tids[] = {2, 3}, lyr;
    nxl_kv_layout_t *s, *t;
    nxl_kv_dlists_t d;

    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_FULLY_CONTIGUOUS, 0, NXL_KV_PINNED, NULL, &s));
    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_FULLY_CONTIGUOUS, 0, NXL_KV_PINNED, NULL, &t));
    for (lyr = 0; lyr < 2; lyr++) {
        XT_ASSERT_OK(
            nxl_kv_build_dlists(s, sids, t, tids, 2, lyr, lyr + 1, &d));
        XT_ASSERT_EQ(d.count, 2);
        DL_EXPECT(&d, 0, s, 0, lyr, t, 2, lyr, 2 * DL_REGION);
        DL_EXPECT(&d, 1, s, 1, lyr, t, 3, lyr, 2 * DL_REGION);
        DL_COPY_CHECK(s, sids, t, tids, 2, lyr, lyr + 1, &d);
        nxl_kv_dlists_free(&d);
    }
    /* The full range given explicitly equals (0, 0). */
    XT_ASSERT_OK(nxl_kv_build_dlists(s, sids, t, tids, 2, 0, 2, &d));
    XT_ASSERT_EQ(d.count, 1);
    DL_EXPECT(&d, 0, s, 0, 0, t, 2, 0, 2 * DL_BLOCK);
    nxl_kv_dlists_free(&d);
    nxl_kv_layout_destroy(s);
    nxl_kv_layout_destroy(t);
    return 0;
}

/* Layer-separate layouts (block-first): each layer is its own allocation,
 * so a block's two outers merge per layer, and consecutive blocks do not
 * merge across layers. Block-second: every region stands alone. */
static int
t_ls_regions(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(4);
    size_t ids[] = {0, 1}, tids[] = {1, 2}, b, lyr, o, i;
    nxl_kv_layout_t *s, *t, *f;
    nxl_kv_dlists_t d;

    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_LAYER_SEPARATE, 0, NXL_KV_SYSTEM, NULL, &s));
    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_LAYER_SEPARATE, 0, NXL_KV_PINNED, NULL, &t));
    XT_ASSERT_OK(nxl_kv_build_dlists(s, ids, t, tids, 2, 0, 0, &d));
    XT_ASSERT_EQ(d.count, 4);
    i = 0;
    for (b = 0; b < 2; b++) {
        for (lyr = 0; lyr < 2; lyr++) {
            DL_EXPECT(&d, i, s, ids[b], lyr, t, tids[b], lyr, 2 * DL_REGION);
            i++;
        }
    }
    DL_COPY_CHECK(s, ids, t, tids, 2, 0, 2, &d);
    nxl_kv_dlists_free(&d);

    /* One layer only: the two blocks are adjacent in that layer's
     * allocation on both sides, so they merge into one range. */
    XT_ASSERT_OK(nxl_kv_build_dlists(s, ids, t, tids, 2, 1, 2, &d));
    XT_ASSERT_EQ(d.count, 1);
    DL_EXPECT(&d, 0, s, 0, 1, t, 1, 1, 4 * DL_REGION);
    DL_COPY_CHECK(s, ids, t, tids, 2, 1, 2, &d);
    nxl_kv_dlists_free(&d);
    nxl_kv_layout_destroy(t);

    /* Block-second destination: no two regions are adjacent there. */
    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_LAYER_SEPARATE, 1, NXL_KV_SYSTEM, NULL, &t));
    XT_ASSERT_OK(nxl_kv_build_dlists(s, ids, t, tids, 2, 0, 0, &d));
    XT_ASSERT_EQ(d.count, 8);
    i = 0;
    for (b = 0; b < 2; b++) {
        for (lyr = 0; lyr < 2; lyr++) {
            for (o = 0; o < 2; o++) {
                XT_ASSERT_EQ(d.src[i].addr, dl_addr(s, ids[b], lyr, o));
                XT_ASSERT_EQ(d.dst[i].addr, dl_addr(t, tids[b], lyr, o));
                XT_ASSERT_EQ(d.src[i].len, DL_REGION);
                i++;
            }
        }
    }
    DL_COPY_CHECK(s, ids, t, tids, 2, 0, 2, &d);
    nxl_kv_dlists_free(&d);

    /* FC -> LS block-first: merges need both sides contiguous, so per
     * (block, layer). */
    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_FULLY_CONTIGUOUS, 0, NXL_KV_SYSTEM, NULL, &f));
    nxl_kv_layout_destroy(t);
    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_LAYER_SEPARATE, 0, NXL_KV_SYSTEM, NULL, &t));
    XT_ASSERT_OK(nxl_kv_build_dlists(f, ids, t, tids, 2, 0, 0, &d));
    XT_ASSERT_EQ(d.count, 4);
    DL_COPY_CHECK(f, ids, t, tids, 2, 0, 2, &d);
    nxl_kv_dlists_free(&d);
    nxl_kv_layout_destroy(f);
    nxl_kv_layout_destroy(s);
    nxl_kv_layout_destroy(t);
    return 0;
}

/* Alignment padding between blocks stops merging of consecutive ids. */
static int
t_fc_aligned_blocks(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(4);
    size_t ids[] = {0, 1, 2};
    nxl_kv_layout_t *s, *t;
    nxl_kv_dlists_t d;

    c.alignment = 65536; /* block stride 64 KiB for 16 KiB of data */
    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_FULLY_CONTIGUOUS, 0, NXL_KV_SYSTEM, NULL, &s));
    c.alignment = 1;
    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_FULLY_CONTIGUOUS, 0, NXL_KV_SYSTEM, NULL, &t));
    XT_ASSERT_OK(nxl_kv_build_dlists(s, ids, t, ids, 3, 0, 0, &d));
    XT_ASSERT_EQ(d.count, 3);
    DL_EXPECT(&d, 1, s, 1, 0, t, 1, 0, DL_BLOCK);
    DL_COPY_CHECK(s, ids, t, ids, 3, 0, 2, &d);
    nxl_kv_dlists_free(&d);
    nxl_kv_layout_destroy(s);
    nxl_kv_layout_destroy(t);
    return 0;
}

/* Layer-separate layouts over files: each layer is its own file, so each
 * layer's pairs carry that file's fd, and pairs of different files never
 * merge even where offsets would continue. */
static int
t_ls_disk_fds(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(4);
    size_t ids[] = {0, 1}, i;
    nxl_kv_layout_t *s, *t;
    nxl_kv_dlists_t d;

    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_FULLY_CONTIGUOUS, 0, NXL_KV_SYSTEM, NULL, &s));
    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_LAYER_SEPARATE, 0, NXL_KV_DISK, NULL, &t));
    XT_ASSERT_OK(nxl_kv_build_dlists(s, ids, t, ids, 2, 0, 0, &d));
    XT_ASSERT_EQ(d.dst_mem, NXL_FILE);
    XT_ASSERT_EQ(d.count, 4);
    XT_ASSERT(d.dst[0].dev_id != d.dst[1].dev_id);
    for (i = 0; i < 4; i++) {
        XT_ASSERT_EQ(d.dst[i].dev_id, d.dst[i % 2].dev_id);
        XT_ASSERT_EQ(d.dst[i].addr, dl_addr(t, i / 2, i % 2, 0));
        XT_ASSERT_EQ(d.dst[i].len, 2 * DL_REGION);
        XT_ASSERT_EQ(d.src[i].dev_id, 0);
    }
    nxl_kv_dlists_free(&d);
    nxl_kv_layout_destroy(s);
    nxl_kv_layout_destroy(t);
    return 0;
}

/* The push helper merges only when both sides continue on the same
 * devices. */
static int
t_push_merge(void)
{
    nxl_kv_dlists_t d = {0};
    size_t i;

    XT_ASSERT_OK(nxl__kv_dlists_push(&d, 1000, 5000, 10, 0, 0));
    XT_ASSERT_OK(nxl__kv_dlists_push(&d, 1010, 5010, 10, 0, 0)); /* merge */
    XT_ASSERT_EQ(d.count, 1);
    XT_ASSERT_EQ(d.src[0].len, 20);
    XT_ASSERT_OK(nxl__kv_dlists_push(&d, 1020, 5040, 10, 0, 0)); /* dst gap */
    XT_ASSERT_OK(nxl__kv_dlists_push(&d, 1030, 5050, 10, 1, 0)); /* src dev */
    XT_ASSERT_OK(nxl__kv_dlists_push(&d, 1040, 5060, 10, 1, 7)); /* dst dev */
    XT_ASSERT_OK(nxl__kv_dlists_push(&d, 1050, 5070, 10, 1, 7)); /* merge */
    XT_ASSERT_EQ(d.count, 4);
    XT_ASSERT_EQ(d.src[3].len, 20);
    XT_ASSERT_EQ(d.dst[3].dev_id, 7);
    /* Growth past the first allocation keeps earlier pairs. */
    for (i = 0; i < 1000; i++) {
        XT_ASSERT_OK(nxl__kv_dlists_push(&d, 100000 + i * 20, 900000 + i * 30,
                                         10, 0, 0));
    }
    XT_ASSERT_EQ(d.count, 1004);
    XT_ASSERT_EQ(d.src[0].addr, 1000);
    XT_ASSERT_EQ(d.dst[1003].addr, 900000 + 999 * 30);
    nxl_kv_dlists_free(&d);
    nxl_kv_dlists_free(NULL);
    return 0;
}

/* Errors: layer and outer mismatches, region size, ids, layer ranges. */
static int
t_errors(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(4);
    size_t ids[] = {0, 1}, bad[] = {0, 4};
    nxl_kv_layout_t *s, *t;
    nxl_kv_dlists_t d = {0};

    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_FULLY_CONTIGUOUS, 0, NXL_KV_SYSTEM, NULL, &s));

    c.num_layers = 3;
    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_FULLY_CONTIGUOUS, 0, NXL_KV_SYSTEM, NULL, &t));
    XT_ASSERT_STATUS(nxl_kv_build_dlists(s, ids, t, ids, 2, 0, 0, &d),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Layouts have incompatible layer counts: src=2, dst=3");
    nxl_kv_layout_destroy(t);

    c = xt_kv_cfg(4);
    c.outer_dim = 1;
    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_FULLY_CONTIGUOUS, 0, NXL_KV_SYSTEM, NULL, &t));
    XT_ASSERT_STATUS(nxl_kv_build_dlists(s, ids, t, ids, 2, 0, 0, &d),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Layouts have incompatible outer dimensions: src=2, dst=1");
    nxl_kv_layout_destroy(t);

    c = xt_kv_cfg(4);
    c.inner_dim = 64;
    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_LAYER_SEPARATE, 0, NXL_KV_SYSTEM, NULL, &t));
    XT_ASSERT_STATUS(nxl_kv_build_dlists(s, ids, t, ids + 1, 1, 1, 2, &d),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(), "Size mismatch at block=(0,1), layer=1, "
                                    "outer=0: src=4096, dst=2048");
    nxl_kv_layout_destroy(t);

    c = xt_kv_cfg(4);
    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_FULLY_CONTIGUOUS, 0, NXL_KV_SYSTEM, NULL, &t));
    XT_ASSERT_STATUS(nxl_kv_build_dlists(s, bad, t, ids, 2, 0, 0, &d),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "Block ID 4 out of range for source") !=
              NULL);
    XT_ASSERT_STATUS(nxl_kv_build_dlists(s, ids, t, bad, 2, 0, 0, &d),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "destination") != NULL);
    XT_ASSERT_STATUS(nxl_kv_build_dlists(s, ids, t, ids, 2, 1, 3, &d),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "Layer range 1..3") != NULL);
    XT_ASSERT_STATUS(nxl_kv_build_dlists(s, ids, t, ids, 2, 1, 1, &d),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_kv_build_dlists(s, NULL, t, ids, 2, 0, 0, &d),
                     NXL_ERR_INVALID_PARAM);
    /* Nothing was written on failure. */
    XT_ASSERT(d.src == NULL && d.count == 0);
    /* Zero blocks: an empty list. */
    XT_ASSERT_OK(nxl_kv_build_dlists(s, NULL, t, NULL, 0, 0, 0, &d));
    XT_ASSERT_EQ(d.count, 0);
    nxl_kv_dlists_free(&d);
    nxl_kv_layout_destroy(s);
    nxl_kv_layout_destroy(t);
    return 0;
}

/* A 32k-region build (2048 blocks x 8 layers x 2 outers, shuffled so that
 * nothing merges) yields exactly one pair per region in order. */
static int
t_large_unmerged(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(2048);
    size_t *sids, *tids, i, j, b, lyr, o;
    nxl_kv_layout_t *s, *t;
    nxl_kv_dlists_t d;
    uint64_t x = 88172645463325252ull;

    c.num_layers = 8;
    c.inner_dim = 16; /* 512-byte regions keep this small */
    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_LAYER_SEPARATE, 1, NXL_KV_SYSTEM, NULL, &s));
    XT_ASSERT_OK(
        xt_kv_layout(&c, NXL_KV_FULLY_CONTIGUOUS, 0, NXL_KV_SYSTEM, NULL, &t));
    sids = malloc(2048 * sizeof(size_t));
    tids = malloc(2048 * sizeof(size_t));
    XT_ASSERT(sids != NULL && tids != NULL);
    for (i = 0; i < 2048; i++) {
        sids[i] = tids[i] = i;
    }
    for (i = 2047; i > 0; i--) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        j = (size_t)(x % (i + 1));
        b = tids[i];
        tids[i] = tids[j];
        tids[j] = b;
    }
    XT_ASSERT_OK(nxl_kv_build_dlists(s, sids, t, tids, 2048, 0, 0, &d));
    XT_ASSERT_EQ(d.count, 2048 * 8 * 2);
    i = 0;
    for (b = 0; b < 2048; b += 511) {
        for (lyr = 0; lyr < 8; lyr++) {
            for (o = 0; o < 2; o++) {
                i = (b * 8 + lyr) * 2 + o;
                XT_ASSERT_EQ(d.src[i].addr, dl_addr(s, sids[b], lyr, o));
                XT_ASSERT_EQ(d.dst[i].addr, dl_addr(t, tids[b], lyr, o));
                XT_ASSERT_EQ(d.dst[i].len, 512);
            }
        }
    }
    nxl_kv_dlists_free(&d);
    free(sids);
    free(tids);
    nxl_kv_layout_destroy(s);
    nxl_kv_layout_destroy(t);
    return 0;
}

const xt_suite xt_suite_kv_dlists = {
    .name = "kv_dlists",
    .cases =
        (const xt_case[]){
            {"fc_consecutive", t_fc_consecutive},
            {"fc_strided", t_fc_strided},
            {"fc_eight", t_fc_eight},
            {"fc_runs", t_fc_runs},
            {"fc_partial_layers", t_fc_partial_layers},
            {"ls_regions", t_ls_regions},
            {"fc_aligned_blocks", t_fc_aligned_blocks},
            {"ls_disk_fds", t_ls_disk_fds},
            {"push_merge", t_push_merge},
            {"errors", t_errors},
            {"large_unmerged", t_large_unmerged},
            {NULL, NULL},
        },
    .timeout_s = 60,
};
