/*
 * test_kv_tp.c - heterogeneous tensor-parallel descriptor builders: the
 * address math of read_slices and gather_slices in NHD ([page][inner]) and
 * HND ([heads][page][head_dim]) order, checked by moving real data with a
 * memcpy per descriptor pair and comparing every element.
 *
 * Geometry: head_dim 8, 2 layers, outer 2, page 4, dtype 2 (uint16
 * elements). Every element of a prefill region holds a value computed
 * from (block, layer, outer, token, global head, d).
 */
#include "harness.h"

#include <nxl/nxl_kv.h>

#include <stdlib.h>
#include <string.h>

#define TP_HD 8
#define TP_PAGE 4
#define TP_LAYERS 2
#define TP_OUTER 2

/* tp_val is the element of (block, layer, outer, token, head, d). */
static uint16_t
tp_val(size_t b, size_t l, size_t o, size_t t, size_t h, size_t d)
{
    return (uint16_t)(b * 4999 + l * 1013 + o * 503 + t * 67 + h * 11 + d);
}

/* tp_layout allocates a System FC layout of blocks with heads heads. */
static nxl_status_t
tp_layout(size_t blocks, size_t heads, nxl_kv_layout_t **l_p)
{
    nxl_kv_layout_config_t c = {
        .num_blocks = blocks,
        .num_layers = TP_LAYERS,
        .outer_dim = TP_OUTER,
        .page_size = TP_PAGE,
        .inner_dim = heads * TP_HD,
        .alignment = 1,
        .dtype_width_bytes = 2,
    };
    nxl_kv_loc_t loc = {NXL_KV_SYSTEM, 0};

    return nxl_kv_layout_alloc(&c, NXL_KV_FULLY_CONTIGUOUS, 0, loc, NULL, l_p);
}

/* tp_elem points at element (t, h, d) of region (b, l, o) of a layout
 * with heads heads, in NHD or HND order. */
static uint16_t *
tp_elem(const nxl_kv_layout_t *lay, size_t heads, int hnd, size_t b, size_t l,
        size_t o, size_t t, size_t h, size_t d)
{
    nxl_kv_region_t r;
    size_t idx;

    if (nxl_kv_layout_region(lay, b, l, o, &r) != NXL_OK) {
        abort();
    }
    idx = hnd ? (h * TP_PAGE + t) * TP_HD + d : (t * heads + h) * TP_HD + d;
    return (uint16_t *)(uintptr_t)r.addr + idx;
}

/* tp_fill writes tp_val into every element of every block of lay, whose
 * heads are global heads [h0, h0 + heads). */
static void
tp_fill(const nxl_kv_layout_t *lay, size_t blocks, size_t heads, size_t h0,
        int hnd)
{
    size_t b, l, o, t, h, d;

    for (b = 0; b < blocks; b++)
        for (l = 0; l < TP_LAYERS; l++)
            for (o = 0; o < TP_OUTER; o++)
                for (t = 0; t < TP_PAGE; t++)
                    for (h = 0; h < heads; h++)
                        for (d = 0; d < TP_HD; d++)
                            *tp_elem(lay, heads, hnd, b, l, o, t, h, d) =
                                tp_val(b, l, o, t, h0 + h, d);
}

/* tp_zero clears every block of lay. */
static void
tp_zero(const nxl_kv_layout_t *lay, size_t blocks)
{
    size_t b, l, o;
    nxl_kv_region_t r;

    for (b = 0; b < blocks; b++)
        for (l = 0; l < TP_LAYERS; l++)
            for (o = 0; o < TP_OUTER; o++) {
                if (nxl_kv_layout_region(lay, b, l, o, &r) == NXL_OK) {
                    memset((void *)(uintptr_t)r.addr, 0, r.size);
                }
            }
}

/* tp_move copies every pair (src = remote, dst = local). */
static void
tp_move(const nxl_kv_dlists_t *d)
{
    size_t i;

    for (i = 0; i < d->count; i++) {
        memcpy((void *)(uintptr_t)d->dst[i].addr,
               (const void *)(uintptr_t)d->src[i].addr, d->src[i].len);
    }
}

/* tp_expect checks every element of the local blocks lids[0], lids[1]
 * (heads heads) against tp_val of the remote blocks rids[0], rids[1] at
 * global heads [h0, h0 + heads). Returns 0, or 1 after reporting the
 * first element that differs. */
static int
tp_expect(const nxl_kv_layout_t *local, size_t heads, int hnd,
          const size_t *lids, const size_t *rids, size_t h0)
{
    size_t i, l, o, t, h, d;

    for (i = 0; i < 2; i++)
        for (l = 0; l < TP_LAYERS; l++)
            for (o = 0; o < TP_OUTER; o++)
                for (t = 0; t < TP_PAGE; t++)
                    for (h = 0; h < heads; h++)
                        for (d = 0; d < TP_HD; d++) {
                            uint16_t got = *tp_elem(local, heads, hnd, lids[i],
                                                    l, o, t, h, d);
                            uint16_t want = tp_val(rids[i], l, o, t, h0 + h, d);

                            if (got != want) {
                                XT_FAILF("block %zu l%zu o%zu t%zu h%zu d%zu: "
                                         "%u != %u",
                                         lids[i], l, o, t, h, d, got, want);
                            }
                        }
    return 0;
}

/* Decode TP 4 reading from prefill TP 2 (k = 2): each decode rank reads
 * its half of the heads of prefill rank rank / 2. Prefill ranks hold 4
 * heads, decode ranks 2. */
static int
tp_read_case(int hnd)
{
    size_t rids[] = {3, 1}, lids[] = {0, 2}, i;
    nxl_kv_layout_t *remote[2], *local;
    unsigned rank;

    for (i = 0; i < 2; i++) {
        XT_ASSERT_OK(tp_layout(4, 4, &remote[i]));
        tp_fill(remote[i], 4, 4, i * 4, hnd);
    }
    XT_ASSERT_OK(tp_layout(3, 2, &local));
    for (rank = 0; rank < 4; rank++) {
        nxl_kv_dlists_t dl;
        const nxl_kv_layout_t *r = remote[rank / 2];

        tp_zero(local, 3);
        XT_ASSERT_OK(nxl_kv_tp_read_slices(local, lids, r, rids, 2, 2, 4, rank,
                                           hnd, &dl));
        XT_ASSERT_EQ(dl.src_mem, NXL_DRAM);
        /* NHD: one pair per token (the remote side is strided); HND: one
         * per region. */
        XT_ASSERT_EQ(dl.count, 2 * TP_LAYERS * TP_OUTER * (hnd ? 1 : TP_PAGE));
        XT_ASSERT_EQ(dl.src[0].len,
                     hnd ? TP_PAGE * 2 * TP_HD * 2 : 2 * TP_HD * 2);
        XT_ASSERT_EQ(dl.dst[0].addr, (uint64_t)(uintptr_t)tp_elem(
                                         local, 2, hnd, 0, 0, 0, 0, 0, 0));
        XT_ASSERT_EQ(dl.src[0].addr,
                     (uint64_t)(uintptr_t)tp_elem(r, 4, hnd, 3, 0, 0, 0,
                                                  (rank % 2) * 2, 0));
        tp_move(&dl);
        nxl_kv_dlists_free(&dl);
        if (tp_expect(local, 2, hnd, lids, rids, rank * 2) != 0) {
            XT_FAILF("decode rank %u", rank);
        }
        /* The untouched local block stays zero. */
        XT_ASSERT_EQ(*tp_elem(local, 2, hnd, 1, 1, 1, 3, 1, 7), 0);
    }
    nxl_kv_layout_destroy(local);
    nxl_kv_layout_destroy(remote[0]);
    nxl_kv_layout_destroy(remote[1]);
    return 0;
}

static int
t_read_nhd(void)
{
    return tp_read_case(0);
}

static int
t_read_hnd(void)
{
    return tp_read_case(1);
}

/* Prefill TP 4 feeding decode TP 2 (k = 2): decode rank 1 gathers from
 * prefill ranks 2 and 3 (2 heads each) into its 4 heads. */
static int
tp_gather_case(int hnd)
{
    size_t rids[] = {0, 2}, lids[] = {1, 0};
    nxl_kv_layout_t *remote[4], *local;
    unsigned q;

    for (q = 0; q < 4; q++) {
        XT_ASSERT_OK(tp_layout(3, 2, &remote[q]));
        tp_fill(remote[q], 3, 2, q * 2, hnd);
    }
    XT_ASSERT_OK(tp_layout(2, 4, &local));
    tp_zero(local, 2);
    for (q = 2; q < 4; q++) {
        nxl_kv_dlists_t dl;

        XT_ASSERT_OK(nxl_kv_tp_gather_slices(local, lids, remote[q], rids, 2, 4,
                                             2, q, hnd, &dl));
        XT_ASSERT_EQ(dl.count, 2 * TP_LAYERS * TP_OUTER * (hnd ? 1 : TP_PAGE));
        XT_ASSERT_EQ(dl.dst[0].addr,
                     (uint64_t)(uintptr_t)tp_elem(local, 4, hnd, 1, 0, 0, 0,
                                                  (q % 2) * 2, 0));
        XT_ASSERT_EQ(dl.src[0].addr, (uint64_t)(uintptr_t)tp_elem(
                                         remote[q], 2, hnd, 0, 0, 0, 0, 0, 0));
        tp_move(&dl);
        nxl_kv_dlists_free(&dl);
    }
    XT_ASSERT(tp_expect(local, 4, hnd, lids, rids, 4) == 0);
    for (q = 0; q < 4; q++) {
        nxl_kv_layout_destroy(remote[q]);
    }
    nxl_kv_layout_destroy(local);
    return 0;
}

static int
t_gather_nhd(void)
{
    return tp_gather_case(0);
}

static int
t_gather_hnd(void)
{
    return tp_gather_case(1);
}

/* Equal TP (k = 1) degenerates to whole regions: FC blocks merge. */
static int
t_equal_tp(void)
{
    size_t ids[] = {0, 1};
    nxl_kv_layout_t *a, *b;
    nxl_kv_dlists_t dl;

    XT_ASSERT_OK(tp_layout(2, 2, &a));
    XT_ASSERT_OK(tp_layout(2, 2, &b));
    XT_ASSERT_OK(nxl_kv_tp_read_slices(a, ids, b, ids, 2, 2, 2, 1, 0, &dl));
    XT_ASSERT_EQ(dl.count, 1);
    XT_ASSERT_EQ(dl.src[0].len, nxl_kv_layout_block_bytes(a) * 2);
    nxl_kv_dlists_free(&dl);
    nxl_kv_layout_destroy(a);
    nxl_kv_layout_destroy(b);
    return 0;
}

/* Errors name the dimension or rank at fault. */
static int
t_errors(void)
{
    size_t ids[] = {0}, bad[] = {5};
    nxl_kv_layout_t *wide, *narrow, *odd;
    nxl_kv_dlists_t dl = {0};

    XT_ASSERT_OK(tp_layout(2, 4, &wide));
    XT_ASSERT_OK(tp_layout(2, 2, &narrow));
    XT_ASSERT_OK(tp_layout(2, 3, &odd));

    XT_ASSERT_STATUS(
        nxl_kv_tp_read_slices(narrow, ids, wide, ids, 1, 2, 4, 4, 0, &dl),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "decode_rank 4") != NULL);
    XT_ASSERT_STATUS(
        nxl_kv_tp_read_slices(narrow, ids, wide, ids, 1, 2, 3, 0, 0, &dl),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "multiple") != NULL);
    XT_ASSERT_STATUS(
        nxl_kv_tp_read_slices(narrow, ids, wide, ids, 1, 0, 4, 0, 0, &dl),
        NXL_ERR_INVALID_PARAM);
    /* k = 4 but the remote is only twice as wide. */
    XT_ASSERT_STATUS(
        nxl_kv_tp_read_slices(narrow, ids, wide, ids, 1, 1, 4, 0, 0, &dl),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "inner_dim") != NULL);
    XT_ASSERT_STATUS(
        nxl_kv_tp_read_slices(narrow, ids, odd, ids, 1, 1, 2, 0, 1, &dl),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "inner_dim") != NULL);
    XT_ASSERT_STATUS(
        nxl_kv_tp_read_slices(narrow, bad, wide, ids, 1, 1, 2, 0, 0, &dl),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "Block ID 5") != NULL);
    XT_ASSERT_STATUS(
        nxl_kv_tp_gather_slices(wide, ids, narrow, ids, 1, 2, 4, 0, 0, &dl),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "multiple") != NULL);
    XT_ASSERT_STATUS(
        nxl_kv_tp_gather_slices(wide, ids, narrow, ids, 1, 4, 2, 4, 0, &dl),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "prefill_rank 4") != NULL);
    /* The local side must be the wide one when gathering. */
    XT_ASSERT_STATUS(
        nxl_kv_tp_gather_slices(narrow, ids, wide, ids, 1, 4, 2, 0, 0, &dl),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "inner_dim") != NULL);
    XT_ASSERT(dl.src == NULL && dl.count == 0);
    nxl_kv_layout_destroy(odd);

    {
        nxl_kv_layout_config_t c = {
            .num_blocks = 2,
            .num_layers = 3,
            .outer_dim = TP_OUTER,
            .page_size = TP_PAGE,
            .inner_dim = 4 * TP_HD,
            .alignment = 1,
            .dtype_width_bytes = 2,
        };
        nxl_kv_loc_t loc = {NXL_KV_SYSTEM, 0};

        XT_ASSERT_OK(nxl_kv_layout_alloc(&c, NXL_KV_FULLY_CONTIGUOUS, 0, loc,
                                         NULL, &odd));
        XT_ASSERT_STATUS(
            nxl_kv_tp_read_slices(narrow, ids, odd, ids, 1, 1, 2, 0, 0, &dl),
            NXL_ERR_INVALID_PARAM);
        XT_ASSERT(strstr(nxl_last_error(), "num_layers") != NULL);
        nxl_kv_layout_destroy(odd);
        c.num_layers = TP_LAYERS;
        c.page_size = 8;
        XT_ASSERT_OK(nxl_kv_layout_alloc(&c, NXL_KV_FULLY_CONTIGUOUS, 0, loc,
                                         NULL, &odd));
        XT_ASSERT_STATUS(
            nxl_kv_tp_read_slices(narrow, ids, odd, ids, 1, 1, 2, 0, 0, &dl),
            NXL_ERR_INVALID_PARAM);
        XT_ASSERT(strstr(nxl_last_error(), "page_size") != NULL);
        nxl_kv_layout_destroy(odd);
    }
    nxl_kv_layout_destroy(wide);
    nxl_kv_layout_destroy(narrow);
    return 0;
}

const xt_suite xt_suite_kv_tp = {
    .name = "kv_tp",
    .cases =
        (const xt_case[]){
            {"read_nhd", t_read_nhd},
            {"read_hnd", t_read_hnd},
            {"gather_nhd", t_gather_nhd},
            {"gather_hnd", t_gather_hnd},
            {"equal_tp", t_equal_tp},
            {"errors", t_errors},
            {NULL, NULL},
        },
    .timeout_s = 60,
};
