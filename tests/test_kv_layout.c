/* test_kv_layout.c - KV block layouts: Dynamo's layout oracle (v1 and v2
 * numbers), allocation over every host storage kind, and the v1 / v2 JSON
 * forms: golden files, round trips, and hostile input. */
#include "harness.h"
#include "kv/kv.h"
#include "xt_io.h"

#include <nxl/nxl_kv.h>

#include <limits.h>
#include <stdint.h>
#include <unistd.h>

/* ---- helpers ----------------------------------------------------------- */

static nxl_kv_layout_config_t
mkcfg(size_t nb, size_t nl, size_t od, size_t ps, size_t in, size_t al,
      size_t dt)
{
    nxl_kv_layout_config_t c = {
        .num_blocks = nb,
        .num_layers = nl,
        .outer_dim = od,
        .page_size = ps,
        .inner_dim = in,
        .alignment = al,
        .dtype_width_bytes = dt,
    };
    return c;
}

/* The v1 oracle config: 7 blocks, 5 layers, outer 2, page 4, inner 13,
 * dtype 4 => R = 208. */
static nxl_kv_layout_config_t
oracle(size_t alignment)
{
    return mkcfg(7, 5, 2, 4, 13, alignment, 4);
}

static nxl_kv_storage_t *
wrap(nxl_kv_kind_t kind, uint64_t index, uint64_t addr, size_t size)
{
    nxl_kv_loc_t loc = {kind, index};
    nxl_kv_storage_t *s = NULL;

    if (nxl_kv_storage_wrap(loc, addr, size, &s) != NXL_OK) {
        return NULL;
    }
    return s;
}

static uint64_t
raddr(const nxl_kv_layout_t *l, size_t b, size_t lyr, size_t o)
{
    nxl_kv_region_t r = {0, 0};

    if (nxl_kv_layout_region(l, b, lyr, o, &r) != NXL_OK) {
        return UINT64_MAX;
    }
    return r.addr;
}

/* subst returns a copy of s with the first `from` replaced by `to` (NULL
 * when `from` does not occur: a broken test). */
static char *
subst(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);
    size_t a, b, c;
    char *out;

    if (p == NULL) {
        return NULL;
    }
    a = (size_t)(p - s);
    b = strlen(to);
    c = strlen(p + strlen(from));
    out = malloc(a + b + c + 1);
    if (out == NULL) {
        return NULL; /* out of memory (make faults): callers check */
    }
    memcpy(out, s, a);
    memcpy(out + a, to, b);
    memcpy(out + a + b, p + strlen(from), c + 1);
    return out;
}

/* same_layout compares everything a view carries. */
static int
same_layout(const nxl_kv_layout_t *a, const nxl_kv_layout_t *b)
{
    size_t i;

    XT_ASSERT(memcmp(&a->cfg, &b->cfg, sizeof(a->cfg)) == 0);
    XT_ASSERT_EQ(a->type, b->type);
    XT_ASSERT_EQ(a->outer_contiguous, b->outer_contiguous);
    XT_ASSERT_EQ(a->loc.kind, b->loc.kind);
    XT_ASSERT_EQ(a->loc.index, b->loc.index);
    XT_ASSERT_EQ(a->mem, b->mem);
    XT_ASSERT_EQ(a->dev_id, b->dev_id);
    XT_ASSERT_EQ(a->region_size, b->region_size);
    XT_ASSERT_EQ(a->outer_stride, b->outer_stride);
    XT_ASSERT_EQ(a->layer_stride, b->layer_stride);
    XT_ASSERT_EQ(a->natural_block, b->natural_block);
    XT_ASSERT_EQ(a->block_stride, b->block_stride);
    XT_ASSERT_EQ(a->layout_data_bytes, b->layout_data_bytes);
    XT_ASSERT_EQ(a->num_regions, b->num_regions);
    for (i = 0; i < a->num_regions; i++) {
        XT_ASSERT_EQ(a->base[i], b->base[i]);
        XT_ASSERT_EQ(a->region_dev[i], b->region_dev[i]);
    }
    return 0;
}

/* same_json writes l in JSON form version (1 or 2) and checks that the
 * bytes are the golden g[0..len). Returns 0, or 1 after reporting. */
static int
same_json(const nxl_kv_layout_t *l, int version, const char *g, size_t len)
{
    nxl_blob_t out = {NULL, 0};
    size_t got;
    int same;

    XT_ASSERT_OK(version == 1 ? nxl_kv_layout_to_json_v1(l, &out)
                              : nxl_kv_layout_to_json_v2(l, &out));
    got = out.len;
    same = got == len && memcmp(out.data, g, len) == 0;
    nxl_blob_free(&out);
    XT_ASSERT_EQ(got, len);
    XT_ASSERT(same);
    return 0;
}

/* ---- config -------------------------------------------------------------- */

static int
t_config_validate(void)
{
    nxl_kv_layout_config_t c = oracle(1);

    XT_ASSERT_OK(nxl_kv_layout_config_validate(&c));
    c.alignment = 256;
    XT_ASSERT_OK(nxl_kv_layout_config_validate(&c));
    c.alignment = 3;
    XT_ASSERT_STATUS(nxl_kv_layout_config_validate(&c), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(), "alignment must be a power of 2 (got 3)");
    c.alignment = 0;
    XT_ASSERT_STATUS(nxl_kv_layout_config_validate(&c), NXL_ERR_INVALID_PARAM);
    c = oracle(1);
    c.outer_dim = 3;
    XT_ASSERT_STATUS(nxl_kv_layout_config_validate(&c), NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "outer_dim") != NULL);
    c = oracle(1);
    c.num_blocks = 0;
    XT_ASSERT_STATUS(nxl_kv_layout_config_validate(&c), NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "num_blocks") != NULL);
    c = oracle(1);
    c.dtype_width_bytes = 0;
    XT_ASSERT_STATUS(nxl_kv_layout_config_validate(&c), NXL_ERR_INVALID_PARAM);
    /* Sizes beyond 64 bits. */
    c = oracle(1);
    c.num_blocks = SIZE_MAX / 1000;
    XT_ASSERT_STATUS(nxl_kv_layout_config_validate(&c), NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "overflow") != NULL);
    c = oracle(1);
    c.page_size = (size_t)1 << 40;
    c.inner_dim = (size_t)1 << 30;
    XT_ASSERT_STATUS(nxl_kv_layout_config_validate(&c), NXL_ERR_INVALID_PARAM);
    c = oracle((size_t)1 << 63); /* alignment itself overflows the stride */
    XT_ASSERT_STATUS(nxl_kv_layout_config_validate(&c), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_kv_layout_config_validate(NULL),
                     NXL_ERR_INVALID_PARAM);
    return 0;
}

/* ---- FullyContiguous (v1 oracle) ---------------------------------------- */

static int
t_fc_oracle(void)
{
    nxl_kv_layout_config_t c = oracle(1);
    const uint64_t base = 0x100000;
    nxl_kv_storage_t *s = wrap(NXL_KV_SYSTEM, 0, base, 14560);
    nxl_kv_layout_t *l = NULL;
    const size_t ids[][2] = {{0, 0}, {0, 4}, {6, 0}, {6, 4}, {3, 2}};
    size_t i, o;

    XT_ASSERT(s != NULL);
    XT_ASSERT_OK(nxl_kv_layout_fc(&c, s, &l));
    XT_ASSERT_EQ(nxl_kv_layout_region_size(l), 208);
    XT_ASSERT_EQ(l->outer_stride, 208);
    XT_ASSERT_EQ(l->layer_stride, 416);
    XT_ASSERT_EQ(l->natural_block, 2080);
    XT_ASSERT_EQ(l->block_stride, 2080);
    XT_ASSERT_EQ(l->layout_data_bytes, 14560); /* 7*5*2*4*13*4 */
    XT_ASSERT_EQ(nxl_kv_layout_block_bytes(l), 2080);
    XT_ASSERT_EQ(nxl_kv_layout_type(l), NXL_KV_FULLY_CONTIGUOUS);
    XT_ASSERT(nxl_kv_layout_is_fully_contiguous(l));
    XT_ASSERT_EQ(nxl_kv_layout_mem(l), NXL_DRAM);
    XT_ASSERT_EQ(nxl_kv_layout_dev_id(l), 0);
    XT_ASSERT_EQ(nxl_kv_layout_loc(l).kind, NXL_KV_SYSTEM);
    XT_ASSERT(nxl_kv_layout_agent(l) == NULL);
    XT_ASSERT_EQ(nxl_kv_layout_config(l)->num_layers, 5);
    for (i = 0; i < NXL__ARRAY_SIZE(ids); i++) {
        for (o = 0; o < 2; o++) {
            nxl_kv_region_t r;

            XT_ASSERT_OK(nxl_kv_layout_region(l, ids[i][0], ids[i][1], o, &r));
            XT_ASSERT_EQ(r.addr,
                         base + ids[i][0] * 2080 + ids[i][1] * 416 + o * 208);
            XT_ASSERT_EQ(r.size, 208);
        }
    }
    /* The last byte of the last region is the last byte of the storage. */
    XT_ASSERT_EQ(raddr(l, 6, 4, 1) + 208, base + 14560);
    XT_ASSERT_OK(nxl_kv_layout_set_agent(l, "worker-3"));
    XT_ASSERT_STR(nxl_kv_layout_agent(l), "worker-3");
    XT_ASSERT_OK(nxl_kv_layout_set_agent(l, NULL));
    XT_ASSERT(nxl_kv_layout_agent(l) == NULL);
    nxl_kv_layout_destroy(l);
    nxl_kv_storage_destroy(s); /* borrowed: still ours */
    return 0;
}

static int
t_fc_storage_too_small(void)
{
    nxl_kv_layout_config_t c = oracle(1);
    nxl_kv_storage_t *s = wrap(NXL_KV_SYSTEM, 0, 0x100000, 14559);
    nxl_kv_layout_t *l = NULL;

    XT_ASSERT(s != NULL);
    XT_ASSERT_STATUS(nxl_kv_layout_fc(&c, s, &l), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Storage size 14559 is less than required size 14560 "
                  "(including base offset for alignment)");
    XT_ASSERT(l == NULL);
    nxl_kv_storage_destroy(s);
    /* With alignment 256 at an unaligned address the base offset counts. */
    c = oracle(256);
    s = wrap(NXL_KV_SYSTEM, 0, 0x100001, 15904 + 254);
    XT_ASSERT_STATUS(nxl_kv_layout_fc(&c, s, &l), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Storage size 16158 is less than required size 16159 "
                  "(including base offset for alignment)");
    nxl_kv_storage_destroy(s);
    s = wrap(NXL_KV_SYSTEM, 0, 0x100001, 15904 + 255);
    XT_ASSERT_OK(nxl_kv_layout_fc(&c, s, &l));
    XT_ASSERT_EQ(l->base_offset[0], 255);
    XT_ASSERT_EQ(raddr(l, 0, 0, 0), 0x100100);
    nxl_kv_layout_destroy(l);
    nxl_kv_storage_destroy(s);
    /* An address that cannot be aligned without wrapping. */
    s = wrap(NXL_KV_SYSTEM, 0, UINT64_MAX - 10, 100000);
    XT_ASSERT_STATUS(nxl_kv_layout_fc(&c, s, &l), NXL_ERR_INVALID_PARAM);
    nxl_kv_storage_destroy(s);
    XT_ASSERT_STATUS(nxl_kv_layout_fc(&c, NULL, &l), NXL_ERR_INVALID_PARAM);
    return 0;
}

static int
t_fc_index_errors(void)
{
    nxl_kv_layout_config_t c = oracle(1);
    nxl_kv_storage_t *s = wrap(NXL_KV_SYSTEM, 0, 0x100000, 14560);
    nxl_kv_layout_t *l = NULL;
    nxl_kv_region_t r;

    XT_ASSERT_OK(nxl_kv_layout_fc(&c, s, &l));
    XT_ASSERT_STATUS(nxl_kv_layout_region(l, 7, 0, 0, &r),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(), "Block ID 7 out of range (max: 7)");
    XT_ASSERT_STATUS(nxl_kv_layout_region(l, 0, 5, 0, &r),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(), "Layer ID 5 out of range (max: 5)");
    XT_ASSERT_STATUS(nxl_kv_layout_region(l, 0, 0, 2, &r),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(), "Outer ID 2 out of range (max: 2)");
    XT_ASSERT_STATUS(nxl_kv_layout_region(l, SIZE_MAX, 0, 0, &r),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_OK(nxl_kv_layout_region(l, 6, 4, 1, &r));
    nxl_kv_layout_destroy(l);
    nxl_kv_storage_destroy(s);
    return 0;
}

static int
t_fc_alignment_256(void)
{
    nxl_kv_layout_config_t c = oracle(256);
    nxl_kv_loc_t sys = {NXL_KV_SYSTEM, 0};
    nxl_kv_layout_t *l = NULL;
    size_t b;

    XT_ASSERT_OK(
        nxl_kv_layout_alloc(&c, NXL_KV_FULLY_CONTIGUOUS, 0, sys, NULL, &l));
    XT_ASSERT_EQ(l->natural_block, 2080);
    XT_ASSERT_EQ(l->block_stride, 2304);
    XT_ASSERT_EQ(l->layout_data_bytes, 6 * 2304 + 2080);
    XT_ASSERT_EQ(nxl_kv_storage_size(l->storages[0]), 6 * 2304 + 2080 + 255);
    for (b = 0; b < 3; b++) {
        XT_ASSERT_EQ(raddr(l, b, 0, 0) % 256, 0);
        if (b > 0) {
            XT_ASSERT_EQ(raddr(l, b, 0, 0) - raddr(l, b - 1, 0, 0), 2304);
        }
    }
    /* Every region lies inside the allocation. */
    XT_ASSERT(raddr(l, 6, 4, 1) + 208 <=
              nxl_kv_storage_addr(l->storages[0]) +
                  nxl_kv_storage_size(l->storages[0]));
    /* The memory is real: write the first and last region. */
    memset((void *)(uintptr_t)raddr(l, 0, 0, 0), 0xab, 208);
    memset((void *)(uintptr_t)raddr(l, 6, 4, 1), 0xcd, 208);
    nxl_kv_layout_destroy(l);
    return xt_leaks();
}

static int
t_fc_alloc_system(void)
{
    nxl_kv_layout_config_t c = oracle(1);
    nxl_kv_loc_t sys = {NXL_KV_SYSTEM, 0};
    nxl_kv_layout_t *l = NULL;

    XT_ASSERT_OK(
        nxl_kv_layout_alloc(&c, NXL_KV_FULLY_CONTIGUOUS, 0, sys, NULL, &l));
    XT_ASSERT(l->owns_storage);
    XT_ASSERT_EQ(l->num_regions, 1);
    XT_ASSERT_EQ(nxl_kv_storage_size(l->storages[0]), 14560);
    XT_ASSERT_EQ(raddr(l, 0, 0, 0), nxl_kv_storage_addr(l->storages[0]));
    XT_ASSERT_EQ(nxl_kv_layout_mem(l), NXL_DRAM);
    XT_ASSERT(nxl_kv_layout_agent(l) == NULL);
    memset((void *)(uintptr_t)raddr(l, 6, 4, 1), 0x5a, 208);
    nxl_kv_layout_destroy(l);
    /* A bad config allocates nothing. */
    c.alignment = 3;
    XT_ASSERT_STATUS(
        nxl_kv_layout_alloc(&c, NXL_KV_FULLY_CONTIGUOUS, 0, sys, NULL, &l),
        NXL_ERR_INVALID_PARAM);
    return xt_leaks();
}

/* ---- LayerSeparate ---------------------------------------------------------
 */

/* check_ls checks every region of an LS layout over storages at bases. */
static int
check_ls(const nxl_kv_layout_t *l, const uint64_t *bases, int oc)
{
    const nxl_kv_layout_config_t *c = nxl_kv_layout_config(l);
    size_t b, lyr, o, bs = oc ? 208 : 416, os = oc ? 208 * 7 : 208;

    XT_ASSERT_EQ(l->block_stride, bs);
    XT_ASSERT_EQ(l->outer_stride, os);
    XT_ASSERT_EQ(l->layout_data_bytes, 2912);
    XT_ASSERT_EQ(l->natural_block, oc ? 208 : 416);
    XT_ASSERT_EQ(nxl_kv_layout_outer_contiguous(l), oc);
    XT_ASSERT(!nxl_kv_layout_is_fully_contiguous(l));
    XT_ASSERT_EQ(nxl_kv_layout_block_bytes(l), 2080);
    for (b = 0; b < c->num_blocks; b++) {
        for (lyr = 0; lyr < c->num_layers; lyr++) {
            for (o = 0; o < c->outer_dim; o++) {
                XT_ASSERT_EQ(raddr(l, b, lyr, o), bases[lyr] + b * bs + o * os);
            }
        }
    }
    return 0;
}

static int
t_ls_both_orientations(void)
{
    nxl_kv_layout_config_t c = oracle(1);
    nxl_kv_storage_t *sv[5];
    uint64_t bases[5];
    nxl_kv_layout_t *l = NULL;
    nxl_kv_region_t r;
    int oc, rc;
    size_t i;

    for (i = 0; i < 5; i++) {
        bases[i] = 0x200000 + i * 0x10000;
        sv[i] = wrap(NXL_KV_PINNED, 0, bases[i], 2912);
        XT_ASSERT(sv[i] != NULL);
    }
    for (oc = 0; oc <= 1; oc++) {
        XT_ASSERT_OK(nxl_kv_layout_ls(&c, oc, sv, 5, &l));
        XT_ASSERT_EQ(nxl_kv_layout_type(l), NXL_KV_LAYER_SEPARATE);
        XT_ASSERT_EQ(nxl_kv_layout_loc(l).kind, NXL_KV_PINNED);
        XT_ASSERT_EQ(nxl_kv_layout_mem(l), NXL_DRAM);
        rc = check_ls(l, bases, oc);
        if (rc == 0) {
            XT_ASSERT_STATUS(nxl_kv_layout_region(l, 7, 0, 0, &r),
                             NXL_ERR_INVALID_PARAM);
            XT_ASSERT_STR(nxl_last_error(), "Block ID 7 out of range (max: 7)");
            XT_ASSERT_STATUS(nxl_kv_layout_region(l, 0, 5, 0, &r),
                             NXL_ERR_INVALID_PARAM);
            XT_ASSERT_STR(nxl_last_error(), "Layer ID 5 out of range (max: 5)");
        }
        nxl_kv_layout_destroy(l);
        if (rc != 0) {
            return rc;
        }
    }
    XT_ASSERT_STATUS(nxl_kv_layout_ls(&c, 0, sv, 4, &l), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(), "LayerSeparate layout requires exactly "
                                    "one storage region per layer");
    /* One layer too small. */
    nxl_kv_storage_destroy(sv[3]);
    sv[3] = wrap(NXL_KV_PINNED, 0, bases[3], 2911);
    XT_ASSERT_STATUS(nxl_kv_layout_ls(&c, 1, sv, 5, &l), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Storage size 2911 is less than required size 2912 "
                  "(including base offset for alignment)");
    /* Mixed kinds are refused. */
    nxl_kv_storage_destroy(sv[3]);
    sv[3] = wrap(NXL_KV_SYSTEM, 0, bases[3], 2912);
    XT_ASSERT_STATUS(nxl_kv_layout_ls(&c, 1, sv, 5, &l), NXL_ERR_INVALID_PARAM);
    for (i = 0; i < 5; i++) {
        nxl_kv_storage_destroy(sv[i]);
    }
    return 0;
}

static int
t_ls_alloc_aligned(void)
{
    nxl_kv_layout_config_t c = oracle(256);
    nxl_kv_loc_t sys = {NXL_KV_SYSTEM, 0};
    nxl_kv_layout_t *l = NULL;
    size_t lyr;

    /* Block-first: block stride align_up(2*208, 256) = 512. */
    XT_ASSERT_OK(
        nxl_kv_layout_alloc(&c, NXL_KV_LAYER_SEPARATE, 0, sys, NULL, &l));
    XT_ASSERT_EQ(l->block_stride, 512);
    XT_ASSERT_EQ(l->layout_data_bytes, 512 * 7);
    XT_ASSERT_EQ(l->num_regions, 5);
    for (lyr = 0; lyr < 5; lyr++) {
        XT_ASSERT_EQ(nxl_kv_storage_size(l->storages[lyr]), 512 * 7 + 255);
        XT_ASSERT_EQ(raddr(l, 0, lyr, 0) % 256, 0);
        XT_ASSERT_EQ(raddr(l, 1, lyr, 0) - raddr(l, 0, lyr, 0), 512);
        memset((void *)(uintptr_t)raddr(l, 6, lyr, 1), 1, 208);
    }
    nxl_kv_layout_destroy(l);
    /* Outer-first: block stride align_up(208, 256) = 256, outer 256*7. */
    XT_ASSERT_OK(
        nxl_kv_layout_alloc(&c, NXL_KV_LAYER_SEPARATE, 1, sys, NULL, &l));
    XT_ASSERT_EQ(l->block_stride, 256);
    XT_ASSERT_EQ(l->outer_stride, 256 * 7);
    XT_ASSERT_EQ(l->layout_data_bytes, 256 * 7 * 2);
    XT_ASSERT_EQ(raddr(l, 0, 2, 1) - raddr(l, 0, 2, 0), 256 * 7);
    memset((void *)(uintptr_t)raddr(l, 6, 4, 1), 1, 208);
    nxl_kv_layout_destroy(l);
    return xt_leaks();
}

static int
t_ls_alloc_disk(void)
{
    nxl_kv_layout_config_t c = mkcfg(4, 3, 2, 4, 8, 1, 2);
    nxl_kv_loc_t disk = {NXL_KV_DISK, 0};
    nxl_kv_layout_t *l = NULL;
    nxl_blob_t j = {NULL, 0};
    int fds = xt_open_fds();
    size_t i;

    XT_ASSERT_OK(
        nxl_kv_layout_alloc(&c, NXL_KV_LAYER_SEPARATE, 0, disk, NULL, &l));
    XT_ASSERT_EQ(nxl_kv_layout_mem(l), NXL_FILE);
    XT_ASSERT_EQ(nxl_kv_layout_loc(l).kind, NXL_KV_DISK);
    for (i = 0; i < 3; i++) {
        nxl_kv_loc_t sl = nxl_kv_storage_loc(l->storages[i]);

        XT_ASSERT_EQ(l->region_dev[i], sl.index);
        XT_ASSERT_EQ(nxl__kv_dev(l, i), sl.index);
        XT_ASSERT_EQ(nxl_kv_storage_size(l->storages[i]), 64 * 2 * 4);
        /* Disk addresses are file offsets. */
        XT_ASSERT_EQ(raddr(l, 0, i, 0), 0);
        XT_ASSERT_EQ(raddr(l, 3, i, 1), 3 * 128 + 64);
    }
    XT_ASSERT(l->region_dev[0] != l->region_dev[1]);
    XT_ASSERT_EQ(nxl_kv_layout_dev_id(l), l->region_dev[0]);
    /* v2 has one device id for all layers. */
    XT_ASSERT_OK(nxl_kv_layout_set_agent(l, "g3"));
    XT_ASSERT_STATUS(nxl_kv_layout_to_json_v2(l, &j), NXL_ERR_NOT_SUPPORTED);
    nxl_kv_layout_destroy(l);
    if (fds >= 0) {
        XT_ASSERT_EQ(xt_open_fds(), fds);
    }
    /* FC on disk: one file, dev = its fd. */
    XT_ASSERT_OK(
        nxl_kv_layout_alloc(&c, NXL_KV_FULLY_CONTIGUOUS, 0, disk, NULL, &l));
    XT_ASSERT_EQ(nxl_kv_layout_dev_id(l),
                 nxl_kv_storage_loc(l->storages[0]).index);
    XT_ASSERT_EQ(nxl__kv_dev(l, 2), nxl_kv_layout_dev_id(l));
    nxl_kv_layout_destroy(l);
    return xt_leaks();
}

/* ---- v2 oracle numbers (base 0x1000) ------------------------------------- */

static int
t_v2_oracle_fc(void)
{
    nxl_kv_layout_config_t c = mkcfg(10, 4, 2, 16, 128, 1, 2);
    const uint64_t R = 4096, req = 10 * 4 * 2 * 16 * 128 * 2;
    nxl_kv_storage_t *s = wrap(NXL_KV_SYSTEM, 0, 0x1000, req);
    nxl_kv_layout_t *l = NULL;

    XT_ASSERT_OK(nxl_kv_layout_fc(&c, s, &l));
    XT_ASSERT_EQ(l->layout_data_bytes, req);
    XT_ASSERT_EQ(nxl_kv_layout_region_size(l), R);
    XT_ASSERT_EQ(raddr(l, 0, 0, 0), 0x1000);
    XT_ASSERT_EQ(raddr(l, 0, 0, 1), 0x1000 + R);
    XT_ASSERT_EQ(raddr(l, 0, 1, 0), 0x1000 + 2 * R);
    XT_ASSERT_EQ(raddr(l, 1, 0, 0), 0x1000 + 2 * 4 * R);
    nxl_kv_layout_destroy(l);
    nxl_kv_storage_destroy(s);
    return 0;
}

static int
t_v2_oracle_ls(void)
{
    nxl_kv_layout_config_t c = mkcfg(2, 4, 2, 16, 128, 1, 2);
    const uint64_t R = 4096, per = 2 * 2 * 16 * 128 * 2;
    nxl_kv_storage_t *sv[4];
    nxl_kv_layout_t *l = NULL;
    size_t i;

    for (i = 0; i < 4; i++) {
        sv[i] = wrap(NXL_KV_DEVICE, 0, 0x1000 + i * per, per);
        XT_ASSERT(sv[i] != NULL);
    }
    XT_ASSERT_OK(nxl_kv_layout_ls(&c, 0, sv, 4, &l));
    XT_ASSERT_EQ(l->layout_data_bytes, per);
    XT_ASSERT_EQ(nxl_kv_layout_mem(l), NXL_VRAM);
    XT_ASSERT_EQ(raddr(l, 0, 0, 0), 0x1000);
    XT_ASSERT_EQ(raddr(l, 0, 1, 0), 0x1000 + per);
    XT_ASSERT_EQ(raddr(l, 0, 0, 1), 0x1000 + R);
    nxl_kv_layout_destroy(l);
    for (i = 0; i < 4; i++) {
        nxl_kv_storage_destroy(sv[i]);
    }
    return 0;
}

/* layout/utils.rs: 2 blocks x 2 layers x 1 outer => 4 distinct regions of
 * the same size. */
static int
t_four_regions(void)
{
    nxl_kv_layout_config_t c = mkcfg(2, 2, 1, 4, 13, 1, 2);
    nxl_kv_loc_t sys = {NXL_KV_SYSTEM, 0};
    nxl_kv_layout_t *l = NULL;
    uint64_t seen[4];
    size_t b, lyr, k = 0, j;

    XT_ASSERT_OK(
        nxl_kv_layout_alloc(&c, NXL_KV_FULLY_CONTIGUOUS, 0, sys, NULL, &l));
    for (b = 0; b < 2; b++) {
        for (lyr = 0; lyr < 2; lyr++) {
            nxl_kv_region_t r;

            XT_ASSERT_OK(nxl_kv_layout_region(l, b, lyr, 0, &r));
            XT_ASSERT_EQ(r.size, 104);
            for (j = 0; j < k; j++) {
                XT_ASSERT(seen[j] != r.addr);
            }
            seen[k++] = r.addr;
        }
    }
    XT_ASSERT_EQ(k, 4);
    nxl_kv_layout_destroy(l);
    return 0;
}

/* ---- JSON: golden files ----------------------------------------------------
 */

static int
t_golden_v1_fc(void)
{
    size_t len;
    char *g = xt_read_data("kv_layout_v1_fc.json", &len);
    nxl_kv_layout_t *l = NULL;
    const uint64_t A = 0x7f3a5c000000ull;

    XT_ASSERT(g != NULL);
    XT_ASSERT_OK(nxl_kv_layout_from_json_v1(g, len, "prefill-0", &l));
    XT_ASSERT_EQ(l->cfg.num_blocks, 10);
    XT_ASSERT_EQ(l->cfg.num_layers, 2);
    XT_ASSERT_EQ(l->cfg.outer_dim, 2);
    XT_ASSERT_EQ(l->cfg.page_size, 4);
    XT_ASSERT_EQ(l->cfg.inner_dim, 13);
    XT_ASSERT_EQ(l->cfg.alignment, 1);
    XT_ASSERT_EQ(l->cfg.dtype_width_bytes, 2);
    XT_ASSERT_EQ(l->type, NXL_KV_FULLY_CONTIGUOUS);
    XT_ASSERT_EQ(l->region_size, 104);
    XT_ASSERT_EQ(l->outer_stride, 104);
    XT_ASSERT_EQ(l->layer_stride, 208);
    XT_ASSERT_EQ(l->natural_block, 416);
    XT_ASSERT_EQ(l->block_stride, 416);
    XT_ASSERT_EQ(l->layout_data_bytes, 4160);
    XT_ASSERT_EQ(l->num_regions, 1);
    XT_ASSERT_EQ(l->base_offset[0], 0);
    XT_ASSERT_EQ(l->region_addr[0], A);
    XT_ASSERT_EQ(l->region_size_b[0], 4160);
    XT_ASSERT_EQ(l->mem, NXL_DRAM);
    XT_ASSERT_EQ(l->dev_id, 0);
    XT_ASSERT_EQ(l->loc.kind, NXL_KV_SYSTEM);
    XT_ASSERT(l->storages == NULL && !l->owns_storage);
    XT_ASSERT_STR(nxl_kv_layout_agent(l), "prefill-0");
    XT_ASSERT_EQ(raddr(l, 9, 1, 1), A + 9 * 416 + 208 + 104);
    /* Our writer emits the same bytes. */
    XT_ASSERT(same_json(l, 1, g, len) == 0);
    nxl_kv_layout_destroy(l);
    XT_ASSERT_OK(nxl_kv_layout_from_json_v1(g, len, NULL, &l));
    XT_ASSERT(nxl_kv_layout_agent(l) == NULL);
    nxl_kv_layout_destroy(l);
    free(g);
    return 0;
}

static int
t_golden_v1_ls(void)
{
    size_t len, i;
    char *g = xt_read_data("kv_layout_v1_ls.json", &len);
    nxl_kv_layout_t *l = NULL;
    const uint64_t A[3] = {0x7f0000100010ull, 0x7f0000200000ull,
                           0x7f00003000f0ull};
    const uint64_t off[3] = {240, 0, 16};

    XT_ASSERT(g != NULL);
    XT_ASSERT_OK(nxl_kv_layout_from_json_v1(g, len, "decode-7", &l));
    XT_ASSERT_EQ(l->cfg.num_blocks, 4);
    XT_ASSERT_EQ(l->cfg.num_layers, 3);
    XT_ASSERT_EQ(l->cfg.outer_dim, 2);
    XT_ASSERT_EQ(l->cfg.page_size, 4);
    XT_ASSERT_EQ(l->cfg.inner_dim, 8);
    XT_ASSERT_EQ(l->cfg.alignment, 256);
    XT_ASSERT_EQ(l->cfg.dtype_width_bytes, 2);
    XT_ASSERT_EQ(l->type, NXL_KV_LAYER_SEPARATE);
    XT_ASSERT_EQ(l->outer_contiguous, 0);
    XT_ASSERT_EQ(l->region_size, 64);
    XT_ASSERT_EQ(l->outer_stride, 64);
    XT_ASSERT_EQ(l->block_stride, 256);
    XT_ASSERT_EQ(l->layout_data_bytes, 1024);
    XT_ASSERT_EQ(l->loc.kind, NXL_KV_DEVICE);
    XT_ASSERT_EQ(l->loc.index, 1);
    XT_ASSERT_EQ(l->mem, NXL_VRAM);
    XT_ASSERT_EQ(l->dev_id, 1);
    XT_ASSERT_EQ(l->num_regions, 3);
    for (i = 0; i < 3; i++) {
        XT_ASSERT_EQ(l->region_addr[i], A[i]);
        XT_ASSERT_EQ(l->region_size_b[i], 1279);
        XT_ASSERT_EQ(l->base_offset[i], off[i]);
        XT_ASSERT_EQ(l->region_dev[i], 1);
        XT_ASSERT_EQ(raddr(l, 0, i, 0) % 256, 0);
        XT_ASSERT_EQ(raddr(l, 3, i, 1), A[i] + off[i] + 3 * 256 + 64);
    }
    XT_ASSERT(same_json(l, 1, g, len) == 0);
    nxl_kv_layout_destroy(l);
    free(g);
    return 0;
}

static int
t_golden_v2_fc(void)
{
    size_t len;
    char *g = xt_read_data("kv_layout_v2_fc.json", &len);
    nxl_kv_layout_t *l = NULL;

    XT_ASSERT(g != NULL);
    XT_ASSERT_OK(nxl_kv_layout_from_json_v2(g, len, &l));
    XT_ASSERT_EQ(l->cfg.num_blocks, 10);
    XT_ASSERT_EQ(l->cfg.num_layers, 4);
    XT_ASSERT_EQ(l->cfg.outer_dim, 2);
    XT_ASSERT_EQ(l->cfg.page_size, 16);
    XT_ASSERT_EQ(l->cfg.inner_dim, 128);
    XT_ASSERT_EQ(l->cfg.alignment, 1);
    XT_ASSERT_EQ(l->cfg.dtype_width_bytes, 2);
    XT_ASSERT_EQ(l->type, NXL_KV_FULLY_CONTIGUOUS);
    XT_ASSERT_EQ(l->loc.kind, NXL_KV_PINNED);
    XT_ASSERT_EQ(l->mem, NXL_DRAM);
    XT_ASSERT_EQ(l->dev_id, 0);
    XT_ASSERT_STR(nxl_kv_layout_agent(l), "prefill-0");
    XT_ASSERT_EQ(l->num_regions, 1);
    XT_ASSERT_EQ(l->region_addr[0], 0x1000);
    XT_ASSERT_EQ(l->region_size_b[0], 327680);
    XT_ASSERT_EQ(raddr(l, 1, 0, 0), 0x1000 + 2 * 4 * 4096);
    XT_ASSERT_EQ(raddr(l, 0, 1, 0), 0x1000 + 2 * 4096);
    XT_ASSERT(same_json(l, 2, g, len) == 0);
    nxl_kv_layout_destroy(l);
    free(g);
    return 0;
}

static int
t_golden_v2_ls(void)
{
    size_t len;
    char *g = xt_read_data("kv_layout_v2_ls.json", &len);
    nxl_kv_layout_t *l = NULL;

    XT_ASSERT(g != NULL);
    XT_ASSERT_OK(nxl_kv_layout_from_json_v2(g, len, &l));
    XT_ASSERT_EQ(l->cfg.num_blocks, 2);
    XT_ASSERT_EQ(l->cfg.num_layers, 2);
    XT_ASSERT_EQ(l->type, NXL_KV_LAYER_SEPARATE);
    XT_ASSERT_EQ(l->outer_contiguous, 1);
    XT_ASSERT_EQ(l->loc.kind, NXL_KV_DEVICE);
    XT_ASSERT_EQ(l->loc.index, 5);
    XT_ASSERT_EQ(l->mem, NXL_VRAM);
    XT_ASSERT_EQ(l->dev_id, 5);
    XT_ASSERT_STR(nxl_kv_layout_agent(l), "decode-1");
    XT_ASSERT_EQ(l->num_regions, 2);
    XT_ASSERT_EQ(l->region_addr[0], 4096);
    XT_ASSERT_EQ(l->region_addr[1], 20480);
    XT_ASSERT_EQ(l->region_size_b[1], 16384);
    XT_ASSERT_EQ(l->block_stride, 4096);
    XT_ASSERT_EQ(l->outer_stride, 8192);
    XT_ASSERT_EQ(raddr(l, 1, 1, 1), 20480 + 4096 + 8192);
    XT_ASSERT(same_json(l, 2, g, len) == 0);
    nxl_kv_layout_destroy(l);
    free(g);
    return 0;
}

/* ---- JSON: round trips ------------------------------------------------------
 */

/* roundtrip writes l in both forms, reads each back and compares. */
static int
roundtrip(const nxl_kv_layout_t *l)
{
    nxl_blob_t j1 = {NULL, 0}, j2 = {NULL, 0};
    nxl_kv_layout_t *r1 = NULL, *r2 = NULL;
    int rc;

    XT_ASSERT_OK(nxl_kv_layout_to_json_v1(l, &j1));
    XT_ASSERT_OK(nxl_kv_layout_from_json_v1(j1.data, j1.len,
                                            nxl_kv_layout_agent(l), &r1));
    rc = same_layout(l, r1);
    nxl_kv_layout_destroy(r1);
    nxl_blob_free(&j1);
    if (rc != 0) {
        return rc;
    }
    XT_ASSERT_OK(nxl_kv_layout_to_json_v2(l, &j2));
    XT_ASSERT_OK(nxl_kv_layout_from_json_v2(j2.data, j2.len, &r2));
    rc = same_layout(l, r2);
    if (rc == 0 && strcmp(nxl_kv_layout_agent(r2), nxl_kv_layout_agent(l))) {
        rc = 1;
    }
    nxl_kv_layout_destroy(r2);
    nxl_blob_free(&j2);
    return rc;
}

static int
t_roundtrip_views(void)
{
    const nxl_kv_layout_config_t c = mkcfg(9, 3, 2, 8, 16, 64, 2);
    const nxl_kv_loc_t locs[] = {{NXL_KV_SYSTEM, 0},
                                 {NXL_KV_PINNED, 0},
                                 {NXL_KV_DEVICE, 3},
                                 {NXL_KV_DISK, 42}};
    const nxl_mem_t mems[] = {NXL_DRAM, NXL_DRAM, NXL_VRAM, NXL_FILE};
    uint64_t addr[3] = {0x7f0000001000ull, 0x7f0000101000ull,
                        0x7f0000201000ull};
    uint64_t size[3] = {1 << 20, 1 << 20, 1 << 20};
    uint64_t off[3] = {0, 0, 0};
    size_t k;
    int oc, rc;

    for (k = 0; k < NXL__ARRAY_SIZE(locs); k++) {
        uint64_t dev =
            locs[k].kind == NXL_KV_SYSTEM || locs[k].kind == NXL_KV_PINNED
                ? 0
                : locs[k].index;
        nxl_kv_layout_t *l = NULL;

        XT_ASSERT_OK(nxl__kv_layout_new_view(&c, NXL_KV_FULLY_CONTIGUOUS, 0,
                                             locs[k], mems[k], dev, addr, size,
                                             off, 1, "peer-a", &l));
        rc = roundtrip(l);
        nxl_kv_layout_destroy(l);
        if (rc != 0) {
            return rc;
        }
        for (oc = 0; oc <= 1; oc++) {
            XT_ASSERT_OK(nxl__kv_layout_new_view(&c, NXL_KV_LAYER_SEPARATE, oc,
                                                 locs[k], mems[k], dev, addr,
                                                 size, off, 3, "peer/b", &l));
            rc = roundtrip(l);
            nxl_kv_layout_destroy(l);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

static int
t_json_v1_needs_registration(void)
{
    nxl_kv_layout_config_t c = oracle(1);
    nxl_kv_storage_t *s = wrap(NXL_KV_SYSTEM, 0, 0x100000, 14560);
    nxl_kv_layout_t *l = NULL;
    nxl_blob_t j = {NULL, 0};

    XT_ASSERT_OK(nxl_kv_layout_fc(&c, s, &l));
    XT_ASSERT_STATUS(nxl_kv_layout_to_json_v1(l, &j), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_STR(nxl_last_error(), "Storage does not provide NIXL "
                                    "descriptors for serialization");
    XT_ASSERT(j.data == NULL);
    /* v2 needs the owner's name. */
    XT_ASSERT_STATUS(nxl_kv_layout_to_json_v2(l, &j), NXL_ERR_INVALID_PARAM);
    nxl_kv_layout_destroy(l);
    nxl_kv_storage_destroy(s);
    return 0;
}

/* A registered local layout (an agent with a host backend) round-trips in
 * both forms and keeps the agent name. */
static int
t_json_registered_roundtrip(void)
{
    static const char *const backends[] = {"SHM", "TCP", "POSIX"};
    nxl_kv_layout_config_t c = mkcfg(6, 3, 2, 4, 13, 128, 2);
    nxl_kv_loc_t sys = {NXL_KV_SYSTEM, 0};
    nxl_kv_agent_t *a = NULL;
    nxl_kv_layout_t *l = NULL;
    size_t i;
    int rc = 0, have = 0, t;

    XT_ASSERT_OK(nxl_kv_agent_create("kvl-agent", NULL, &a));
    for (i = 0; i < NXL__ARRAY_SIZE(backends) && !have; i++) {
        have = nxl_kv_agent_add_backend(a, backends[i], NULL) == NXL_OK;
    }
    if (!have) {
        nxl_kv_agent_destroy(a);
        XT_SKIP_IF(1, "no host backend could be created");
    }
    for (t = 0; t < 3 && rc == 0; t++) {
        XT_ASSERT_OK(nxl_kv_layout_alloc(
            &c, t == 0 ? NXL_KV_FULLY_CONTIGUOUS : NXL_KV_LAYER_SEPARATE,
            t == 2, sys, a, &l));
        XT_ASSERT_STR(nxl_kv_layout_agent(l), "kvl-agent");
        for (i = 0; i < l->num_regions; i++) {
            XT_ASSERT(nxl_kv_storage_is_registered(l->storages[i]));
        }
        XT_ASSERT_EQ(l->base[0] % 128, 0);
        rc = roundtrip(l);
        nxl_kv_layout_destroy(l); /* deregisters before freeing */
    }
    nxl_kv_agent_destroy(a);
    return rc;
}

/* ---- JSON: hostile input
 * ------------------------------------------------------ */

static const char *const goldens[] = {
    "kv_layout_v1_fc.json",
    "kv_layout_v1_ls.json",
    "kv_layout_v2_fc.json",
    "kv_layout_v2_ls.json",
};

/* Every strict prefix of every golden file fails cleanly with PROTO in
 * both readers; each golden is refused by the other form's reader. */
static int
t_json_truncated(void)
{
    size_t k, n, len;

    for (k = 0; k < NXL__ARRAY_SIZE(goldens); k++) {
        char *g = xt_read_data(goldens[k], &len);
        int v1 = k < 2;
        nxl_kv_layout_t *l = NULL;

        XT_ASSERT(g != NULL);
        for (n = 0; n < len; n++) {
            char *cut = malloc(n + 1);

            XT_ASSERT(cut != NULL);
            memcpy(cut, g, n);
            XT_ASSERT_STATUS(nxl_kv_layout_from_json_v1(cut, n, "x", &l),
                             NXL_ERR_PROTO);
            XT_ASSERT_STATUS(nxl_kv_layout_from_json_v2(cut, n, &l),
                             NXL_ERR_PROTO);
            XT_ASSERT(l == NULL);
            free(cut);
        }
        if (v1) {
            XT_ASSERT_STATUS(nxl_kv_layout_from_json_v2(g, len, &l),
                             NXL_ERR_PROTO);
            XT_ASSERT(strstr(nxl_last_error(), "version") != NULL);
        } else {
            XT_ASSERT_STATUS(nxl_kv_layout_from_json_v1(g, len, "x", &l),
                             NXL_ERR_PROTO);
        }
        /* Whitespace around the value is fine, anything else is not. */
        {
            char *pad = malloc(len + 3), *tail = malloc(len + 2);

            pad[0] = ' ';
            memcpy(pad + 1, g, len);
            memcpy(pad + 1 + len, "\n ", 2);
            memcpy(tail, g, len);
            memcpy(tail + len, "x", 1);
            if (v1) {
                XT_ASSERT_OK(nxl_kv_layout_from_json_v1(pad, len + 3, "x", &l));
                nxl_kv_layout_destroy(l);
                XT_ASSERT_STATUS(
                    nxl_kv_layout_from_json_v1(tail, len + 1, "x", &l),
                    NXL_ERR_PROTO);
            } else {
                XT_ASSERT_OK(nxl_kv_layout_from_json_v2(pad, len + 3, &l));
                nxl_kv_layout_destroy(l);
                XT_ASSERT_STATUS(nxl_kv_layout_from_json_v2(tail, len + 1, &l),
                                 NXL_ERR_PROTO);
            }
            free(pad);
            free(tail);
        }
        free(g);
    }
    return xt_leaks();
}

/* bad_case: golden file, text to replace, replacement, reader, status and
 * a substring of the message (NULL: any). */
typedef struct {
    const char *file;
    const char *from;
    const char *to;
    nxl_status_t want;
    const char *msg;
} bad_case;

static const bad_case bad_cases[] = {
    /* types and ranges */
    {"kv_layout_v1_fc.json", "\"num_blocks\":10", "\"num_blocks\":\"10\"",
     NXL_ERR_PROTO, "invalid type for `num_blocks`"},
    {"kv_layout_v1_fc.json", "\"num_blocks\":10", "\"num_blocks\":-10",
     NXL_ERR_PROTO, "`num_blocks`"},
    {"kv_layout_v1_fc.json", "\"num_blocks\":10", "\"num_blocks\":10.0",
     NXL_ERR_PROTO, "`num_blocks`"},
    {"kv_layout_v1_fc.json", "\"num_blocks\":10", "\"num_blocks\":null",
     NXL_ERR_PROTO, "`num_blocks`"},
    {"kv_layout_v1_fc.json", "\"num_blocks\":10",
     "\"num_blocks\":99999999999999999999999", NXL_ERR_PROTO, "range"},
    {"kv_layout_v1_fc.json", "\"num_blocks\":10",
     "\"num_blocks\":18446744073709551615", NXL_ERR_PROTO, NULL},
    {"kv_layout_v1_fc.json", "\"num_blocks\":10", "\"num_blocks\":0",
     NXL_ERR_PROTO, "num_blocks"},
    {"kv_layout_v1_fc.json", "\"alignment\":1", "\"alignment\":3",
     NXL_ERR_PROTO, "alignment must be a power of 2"},
    {"kv_layout_v1_fc.json", "\"num_blocks\":10", "\"num_blocks\":true",
     NXL_ERR_PROTO, "`num_blocks`"},
    {"kv_layout_v1_fc.json", "\"num_blocks\":10,", "", NXL_ERR_PROTO,
     "missing field `num_blocks`"},
    {"kv_layout_v1_fc.json", "\"layer_stride_in_bytes\":208,", "",
     NXL_ERR_PROTO, "missing field `layer_stride_in_bytes`"},
    {"kv_layout_v1_fc.json", ",\"storage_type\":\"System\"", "", NXL_ERR_PROTO,
     "missing field `storage_type`"},
    {"kv_layout_v1_fc.json", "\"storage_type\":\"System\"",
     "\"storage_type\":\"Nixl\"", NXL_ERR_PROTO, "Nixl"},
    {"kv_layout_v1_fc.json", "\"storage_type\":\"System\"",
     "\"storage_type\":{\"Device\":-1}", NXL_ERR_PROTO, "Device"},
    {"kv_layout_v1_fc.json", "\"storage_type\":\"System\"",
     "\"storage_type\":{\"Device\":4294967296}", NXL_ERR_PROTO, "range"},
    {"kv_layout_v1_fc.json", "\"storage_type\":\"System\"",
     "\"storage_type\":[1]", NXL_ERR_PROTO, "storage_type"},
    {"kv_layout_v1_fc.json", "\"mem_type\":\"Dram\"", "\"mem_type\":\"Gpu\"",
     NXL_ERR_PROTO, "mem_type"},
    {"kv_layout_v1_fc.json", "\"mem_type\":\"Dram\"", "\"mem_type\":\"Vram\"",
     NXL_ERR_PROTO, "does not match"},
    {"kv_layout_v1_fc.json", "{\"FullyContiguous\"", "{\"Contiguous\"",
     NXL_ERR_PROTO, "unknown variant"},
    {"kv_layout_v1_fc.json", "\"base_offsets\":[0]", "\"base_offsets\":[]",
     NXL_ERR_PROTO, "base_offsets"},
    {"kv_layout_v1_fc.json", "\"base_offsets\":[0]", "\"base_offsets\":[-1]",
     NXL_ERR_PROTO, "base_offsets"},
    {"kv_layout_v1_fc.json", "\"base_offsets\":[0]", "\"base_offsets\":{}",
     NXL_ERR_PROTO, "base_offsets"},
    /* counts (Dynamo's texts) */
    {"kv_layout_v1_fc.json", "\"storage_descriptors\":[",
     "\"storage_descriptors\":[{\"addr\":1,\"size\":1,\"mem_type\":\"Dram\","
     "\"device_id\":0},",
     NXL_ERR_PROTO,
     "FullyContiguous reconstruction expects exactly one NixlStorage "
     "descriptor"},
    {"kv_layout_v1_fc.json", "\"storage_descriptors\":[{", "\"x\":[{",
     NXL_ERR_PROTO, "missing field `storage_descriptors`"},
    {"kv_layout_v1_ls.json",
     "\"storage_descriptors\":[{\"addr\":139637977776144,"
     "\"size\":1279,\"mem_type\":\"Vram\","
     "\"device_id\":1},",
     "\"storage_descriptors\":[", NXL_ERR_PROTO,
     "LayerSeparate reconstruction expects exactly one NixlStorage "
     "descriptor per layer"},
    {"kv_layout_v1_ls.json", "\"is_outer_contiguous\":false",
     "\"is_outer_contiguous\":0", NXL_ERR_PROTO, "is_outer_contiguous"},
    /* revalidation: regions must fit their descriptors */
    {"kv_layout_v1_fc.json", "\"size\":4160", "\"size\":4159", NXL_ERR_PROTO,
     "too small"},
    {"kv_layout_v1_fc.json", "\"addr\":139888628334592",
     "\"addr\":18446744073709551000", NXL_ERR_PROTO, "overflow"},
    {"kv_layout_v1_fc.json", "\"base_offsets\":[0]", "\"base_offsets\":[1]",
     NXL_ERR_PROTO, "too small"},
    {"kv_layout_v1_fc.json", "\"block_stride_in_bytes\":416",
     "\"block_stride_in_bytes\":4611686018427387904", NXL_ERR_PROTO,
     "overflow"},
    {"kv_layout_v1_fc.json", "\"block_stride_in_bytes\":416",
     "\"block_stride_in_bytes\":417", NXL_ERR_PROTO, "too small"},
    {"kv_layout_v1_fc.json", "\"memory_region_size\":104",
     "\"memory_region_size\":105", NXL_ERR_PROTO, "memory_region_size"},
    {"kv_layout_v1_fc.json", "\"num_blocks\":10",
     "\"num_blocks\":9223372036854775807", NXL_ERR_PROTO, "overflow"},
    {"kv_layout_v1_ls.json", "\"base_offsets\":[240,0,16]",
     "\"base_offsets\":[240,0,1280]", NXL_ERR_PROTO, "beyond"},
    /* v2 */
    {"kv_layout_v2_fc.json", "\"version\":1", "\"version\":2",
     NXL_ERR_NOT_SUPPORTED,
     "Unsupported serialization version: 2. Maximum supported: 1"},
    {"kv_layout_v2_fc.json", "\"version\":1", "\"version\":-1", NXL_ERR_PROTO,
     "version"},
    {"kv_layout_v2_fc.json", "\"version\":1", "\"version\":4294967296",
     NXL_ERR_PROTO, "version"},
    {"kv_layout_v2_fc.json", "\"version\":1,", "", NXL_ERR_PROTO,
     "missing field `version`"},
    {"kv_layout_v2_fc.json", "\"memory_descriptors\":[",
     "\"memory_descriptors\":[{\"addr\":0,\"size\":1},", NXL_ERR_PROTO,
     "FullyContiguous layout requires exactly 1 memory region, got 2"},
    {"kv_layout_v2_ls.json", ",{\"addr\":20480,\"size\":16384}", "",
     NXL_ERR_PROTO,
     "LayerSeparate layout requires 2 memory regions (one per layer), got 1"},
    {"kv_layout_v2_ls.json", "\"BlockIsSecondDim\"", "\"BlockIsThirdDim\"",
     NXL_ERR_PROTO, "block_dim"},
    {"kv_layout_v2_fc.json", "\"Operational\"", "\"Compressed\"", NXL_ERR_PROTO,
     "block_format"},
    {"kv_layout_v2_fc.json",
     "{\"FullyContiguous\":{\"block_format\":\"Operational\"}}",
     "{\"ObjectLayout\":{\"num_objects\":1,\"object_size\":4096}}",
     NXL_ERR_NOT_SUPPORTED, "ObjectLayout"},
    {"kv_layout_v2_fc.json", "\"agent_name\":\"prefill-0\"", "\"agent_name\":7",
     NXL_ERR_PROTO, "agent_name"},
    {"kv_layout_v2_fc.json", "\"agent_name\":\"prefill-0\"",
     "\"agent_name\":\"pre\\u0000fill\"", NXL_ERR_PROTO, "agent_name"},
    {"kv_layout_v2_fc.json", "\"size\":327680", "\"size\":327679",
     NXL_ERR_PROTO, "too small"},
    {"kv_layout_v2_fc.json", "\"location\":\"Pinned\"",
     "\"location\":{\"Device\":0}", NXL_ERR_PROTO, "does not match"},
    {"kv_layout_v2_fc.json", "\"location\":\"Pinned\"",
     "\"location\":{\"Device\":0,\"Disk\":1}", NXL_ERR_PROTO, "location"},
    {"kv_layout_v2_fc.json", "\"inner_dim\":128", "\"inner_dim\":1e2",
     NXL_ERR_PROTO, "inner_dim"},
    {"kv_layout_v2_ls.json", "\"layout_type_details\":{",
     "\"layout_type_details\":{\"FullyContiguous\":{},", NXL_ERR_PROTO,
     "layout_type_details"},
};

static int
t_json_malformed(void)
{
    size_t k, len;

    for (k = 0; k < NXL__ARRAY_SIZE(bad_cases); k++) {
        const bad_case *bc = &bad_cases[k];
        char *g = xt_read_data(bc->file, &len);
        char *bad;
        nxl_kv_layout_t *l = NULL;
        nxl_status_t s;

        XT_ASSERT(g != NULL);
        bad = subst(g, bc->from, bc->to);
        free(g);
        if (bad == NULL) {
            XT_FAILF("case %zu: `%s` not in %s", k, bc->from, bc->file);
        }
        if (strstr(bc->file, "_v1_") != NULL) {
            s = nxl_kv_layout_from_json_v1(bad, strlen(bad), "peer", &l);
        } else {
            s = nxl_kv_layout_from_json_v2(bad, strlen(bad), &l);
        }
        free(bad);
        if (s != bc->want) {
            nxl_kv_layout_destroy(l);
            XT_FAILF("case %zu (%s -> %s): %s, want %s (%s)", k, bc->from,
                     bc->to, nxl_status_name(s), nxl_status_name(bc->want),
                     nxl_last_error());
        }
        XT_ASSERT(l == NULL);
        if (bc->msg != NULL && strstr(nxl_last_error(), bc->msg) == NULL) {
            XT_FAILF("case %zu: message \"%s\" lacks \"%s\"", k,
                     nxl_last_error(), bc->msg);
        }
    }
    return xt_leaks();
}

/* Accepted variations: unknown fields are ignored, v2 version 0 and a
 * missing v2 alignment are read, the old scalar "base_offset" of v1 FC. */
static int
t_json_lenient(void)
{
    static const struct {
        const char *file, *from, *to;
    } ok[] = {
        {"kv_layout_v1_fc.json", "\"storage_type\"",
         "\"extra\":{\"a\":[1,2,{\"b\":null}]},\"storage_type\""},
        {"kv_layout_v1_fc.json", "\"base_offsets\":[0]", "\"base_offset\":0"},
        {"kv_layout_v2_fc.json", "\"version\":1", "\"version\":0"},
        {"kv_layout_v2_fc.json", "\"alignment\":1,", ""},
        {"kv_layout_v2_ls.json", "\"device_id\":5",
         "\"device_id\":5,\"future\":\"x\""},
    };
    size_t k, len;

    for (k = 0; k < NXL__ARRAY_SIZE(ok); k++) {
        char *g = xt_read_data(ok[k].file, &len);
        char *v = g ? subst(g, ok[k].from, ok[k].to) : NULL;
        nxl_kv_layout_t *l = NULL;

        free(g);
        XT_ASSERT(v != NULL);
        if (strstr(ok[k].file, "_v1_") != NULL) {
            XT_ASSERT_OK(nxl_kv_layout_from_json_v1(v, strlen(v), NULL, &l));
        } else {
            XT_ASSERT_OK(nxl_kv_layout_from_json_v2(v, strlen(v), &l));
        }
        XT_ASSERT_EQ(l->cfg.alignment, 1);
        nxl_kv_layout_destroy(l);
        free(v);
    }
    /* Bytes that are not JSON at all. */
    {
        nxl_kv_layout_t *l = NULL;
        static const char junk[] = "{\"a\":\x00}";

        XT_ASSERT_STATUS(
            nxl_kv_layout_from_json_v1(junk, sizeof(junk) - 1, NULL, &l),
            NXL_ERR_PROTO);
        XT_ASSERT_STATUS(nxl_kv_layout_from_json_v2("[]", 2, &l),
                         NXL_ERR_PROTO);
        XT_ASSERT_STATUS(nxl_kv_layout_from_json_v1("7", 1, NULL, &l),
                         NXL_ERR_PROTO);
        XT_ASSERT_STATUS(nxl_kv_layout_from_json_v1(NULL, 0, NULL, &l),
                         NXL_ERR_PROTO);
    }
    return 0;
}

/* v1 keeps the sender's strides (within the descriptors) even where they
 * differ from what the config gives; such a view cannot go out as v2,
 * which carries no strides. */
static int
t_json_v1_peer_strides(void)
{
    size_t len;
    char *g = xt_read_data("kv_layout_v1_ls.json", &len);
    char *v = g ? subst(g, "\"alignment\":256", "\"alignment\":512") : NULL;
    nxl_kv_layout_t *l = NULL;
    nxl_blob_t j = {NULL, 0};

    free(g);
    XT_ASSERT(v != NULL);
    XT_ASSERT_OK(nxl_kv_layout_from_json_v1(v, strlen(v), "peer", &l));
    XT_ASSERT_EQ(l->cfg.alignment, 512);
    XT_ASSERT_EQ(l->block_stride, 256); /* the sender's, not 512 */
    XT_ASSERT_EQ(raddr(l, 1, 0, 0) - raddr(l, 0, 0, 0), 256);
    XT_ASSERT_STATUS(nxl_kv_layout_to_json_v2(l, &j), NXL_ERR_NOT_SUPPORTED);
    XT_ASSERT(strstr(nxl_last_error(), "strides") != NULL);
    XT_ASSERT_OK(nxl_kv_layout_to_json_v1(l, &j));
    XT_ASSERT(strstr(j.data, "\"block_stride_in_bytes\":256") != NULL);
    nxl_blob_free(&j);
    nxl_kv_layout_destroy(l);
    free(v);
    return 0;
}

const xt_suite xt_suite_kv_layout = {
    .name = "kv_layout",
    .cases =
        (const xt_case[]){
            {"config_validate", t_config_validate},
            {"fc_oracle", t_fc_oracle},
            {"fc_storage_too_small", t_fc_storage_too_small},
            {"fc_index_errors", t_fc_index_errors},
            {"fc_alignment_256", t_fc_alignment_256},
            {"fc_alloc_system", t_fc_alloc_system},
            {"ls_both_orientations", t_ls_both_orientations},
            {"ls_alloc_aligned", t_ls_alloc_aligned},
            {"ls_alloc_disk", t_ls_alloc_disk},
            {"v2_oracle_fc", t_v2_oracle_fc},
            {"v2_oracle_ls", t_v2_oracle_ls},
            {"four_regions", t_four_regions},
            {"golden_v1_fc", t_golden_v1_fc},
            {"golden_v1_ls", t_golden_v1_ls},
            {"golden_v2_fc", t_golden_v2_fc},
            {"golden_v2_ls", t_golden_v2_ls},
            {"roundtrip_views", t_roundtrip_views},
            {"json_v1_needs_registration", t_json_v1_needs_registration},
            {"json_registered_roundtrip", t_json_registered_roundtrip},
            {"json_truncated", t_json_truncated},
            {"json_malformed", t_json_malformed},
            {"json_lenient", t_json_lenient},
            {"json_v1_peer_strides", t_json_v1_peer_strides},
            {NULL, NULL},
        },
    .timeout_s = 60,
};
