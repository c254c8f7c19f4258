/* test_kv_strategy.c - strategy selection (Dynamo's strategy.rs oracle)
 * and block-id validation (validation.rs oracle). */
#include "harness.h"

#include <nxl/nxl_kv.h>

#include <stdlib.h>

#define SYS NXL_KV_SYSTEM
#define PIN NXL_KV_PINNED
#define DEV NXL_KV_DEVICE
#define DSK NXL_KV_DISK

static const nxl_kv_caps_t caps_none = {0, 0};
static const nxl_kv_caps_t caps_gds = {1, 0};
static const nxl_kv_caps_t caps_rdma = {0, 1};

/* expect_direct checks select_direct(src, dst, remote, caps) ==
 * Direct(want). */
static int
expect_direct(nxl_kv_kind_t src, nxl_kv_kind_t dst, int remote,
              const nxl_kv_caps_t *caps, nxl_kv_strategy_t want)
{
    nxl_kv_plan_t p;

    XT_ASSERT_OK(nxl_kv_select_direct(src, dst, remote, caps, &p));
    if (p.two_hop || p.first != want) {
        XT_FAILF("%s -> %s (remote %d): got %s%s, want Direct(%s)",
                 nxl_kv_kind_name(src), nxl_kv_kind_name(dst), remote,
                 p.two_hop ? "TwoHop " : "", nxl_kv_strategy_name(p.first),
                 nxl_kv_strategy_name(want));
    }
    return 0;
}

/* expect_two_hop checks select_direct(...) == TwoHop(first, Pinned,
 * second). */
static int
expect_two_hop(nxl_kv_kind_t src, nxl_kv_kind_t dst, int remote,
               const nxl_kv_caps_t *caps, nxl_kv_strategy_t first,
               nxl_kv_strategy_t second)
{
    nxl_kv_plan_t p;

    XT_ASSERT_OK(nxl_kv_select_direct(src, dst, remote, caps, &p));
    if (!p.two_hop || p.first != first || p.second != second ||
        p.bounce != NXL_KV_PINNED) {
        XT_FAILF("%s -> %s (remote %d): got two_hop=%d %s/%s/%s, want "
                 "TwoHop(%s, Pinned, %s)",
                 nxl_kv_kind_name(src), nxl_kv_kind_name(dst), remote,
                 p.two_hop, nxl_kv_strategy_name(p.first),
                 nxl_kv_kind_name(p.bounce), nxl_kv_strategy_name(p.second),
                 nxl_kv_strategy_name(first), nxl_kv_strategy_name(second));
    }
    return 0;
}

#define EXPECT(call)                                                           \
    do {                                                                       \
        if ((call) != 0)                                                       \
            return 1;                                                          \
    } while (0)

static int
t_names(void)
{
    XT_ASSERT_STR(nxl_kv_strategy_name(NXL_KV_MEMCPY), "Memcpy");
    XT_ASSERT_STR(nxl_kv_strategy_name(NXL_KV_CUDA_ASYNC_H2D), "CudaAsyncH2D");
    XT_ASSERT_STR(nxl_kv_strategy_name(NXL_KV_CUDA_ASYNC_D2H), "CudaAsyncD2H");
    XT_ASSERT_STR(nxl_kv_strategy_name(NXL_KV_CUDA_ASYNC_D2D), "CudaAsyncD2D");
    XT_ASSERT_STR(nxl_kv_strategy_name(NXL_KV_CUDA_BLOCKING_H2D),
                  "CudaBlockingH2D");
    XT_ASSERT_STR(nxl_kv_strategy_name(NXL_KV_CUDA_BLOCKING_D2H),
                  "CudaBlockingD2H");
    XT_ASSERT_STR(nxl_kv_strategy_name(NXL_KV_NIXL_READ), "NixlRead");
    XT_ASSERT_STR(nxl_kv_strategy_name(NXL_KV_NIXL_WRITE), "NixlWrite");
    XT_ASSERT_STR(nxl_kv_strategy_name(NXL_KV_NIXL_WRITE_FLIPPED),
                  "NixlWriteFlipped");
    XT_ASSERT_STR(nxl_kv_strategy_name(NXL_KV_NIXL_READ_FLIPPED),
                  "NixlReadFlipped");
    XT_ASSERT_STR(nxl_kv_strategy_name(NXL_KV_INVALID), "Invalid");
    XT_ASSERT_STR(nxl_kv_kind_name(NXL_KV_SYSTEM), "System");
    XT_ASSERT_STR(nxl_kv_kind_name(NXL_KV_PINNED), "Pinned");
    XT_ASSERT_STR(nxl_kv_kind_name(NXL_KV_DEVICE), "Device");
    XT_ASSERT_STR(nxl_kv_kind_name(NXL_KV_DISK), "Disk");
    return xt_leaks();
}

/* §5.5: host <-> host, host <-> device, device <-> device. */
static int
t_oracle_host_device(void)
{
    EXPECT(expect_direct(SYS, SYS, 0, &caps_none, NXL_KV_MEMCPY));
    EXPECT(expect_direct(SYS, PIN, 0, &caps_none, NXL_KV_MEMCPY));
    EXPECT(expect_direct(PIN, SYS, 0, &caps_none, NXL_KV_MEMCPY));
    EXPECT(expect_direct(PIN, PIN, 0, &caps_none, NXL_KV_MEMCPY));
    EXPECT(expect_direct(SYS, DEV, 0, &caps_none, NXL_KV_CUDA_BLOCKING_H2D));
    EXPECT(expect_direct(PIN, DEV, 0, &caps_none, NXL_KV_CUDA_ASYNC_H2D));
    EXPECT(expect_direct(DEV, SYS, 0, &caps_none, NXL_KV_CUDA_BLOCKING_D2H));
    EXPECT(expect_direct(DEV, PIN, 0, &caps_none, NXL_KV_CUDA_ASYNC_D2H));
    /* Device(0) -> Device(1) and Device(3) -> Device(3): the ordinal does
     * not enter selection. */
    EXPECT(expect_direct(DEV, DEV, 0, &caps_none, NXL_KV_CUDA_ASYNC_D2D));
    EXPECT(expect_direct(DEV, DEV, 0, &caps_gds, NXL_KV_CUDA_ASYNC_D2D));
    return xt_leaks();
}

/* §5.5: disk <-> host, disk <-> device with and without GDS. */
static int
t_oracle_disk(void)
{
    EXPECT(expect_direct(DSK, SYS, 0, &caps_none, NXL_KV_NIXL_READ_FLIPPED));
    EXPECT(expect_direct(DSK, PIN, 0, &caps_none, NXL_KV_NIXL_READ_FLIPPED));
    EXPECT(expect_direct(SYS, DSK, 0, &caps_none, NXL_KV_NIXL_WRITE));
    EXPECT(expect_direct(PIN, DSK, 0, &caps_none, NXL_KV_NIXL_WRITE));
    EXPECT(expect_two_hop(DEV, DSK, 0, &caps_none, NXL_KV_CUDA_ASYNC_D2H,
                          NXL_KV_NIXL_WRITE));
    EXPECT(expect_two_hop(DSK, DEV, 0, &caps_none, NXL_KV_NIXL_READ_FLIPPED,
                          NXL_KV_CUDA_ASYNC_H2D));
    EXPECT(expect_direct(DEV, DSK, 0, &caps_gds, NXL_KV_NIXL_WRITE));
    EXPECT(expect_direct(DSK, DEV, 0, &caps_gds, NXL_KV_NIXL_READ));
    /* NIXL has no file <-> file path, GDS or not. */
    EXPECT(expect_two_hop(DSK, DSK, 0, &caps_none, NXL_KV_NIXL_READ_FLIPPED,
                          NXL_KV_NIXL_WRITE));
    EXPECT(expect_two_hop(DSK, DSK, 0, &caps_gds, NXL_KV_NIXL_READ_FLIPPED,
                          NXL_KV_NIXL_WRITE));
    /* NULL caps are the defaults. */
    EXPECT(expect_two_hop(DEV, DSK, 0, NULL, NXL_KV_CUDA_ASYNC_D2H,
                          NXL_KV_NIXL_WRITE));
    return xt_leaks();
}

/* §5.4/§5.5: the legacy remote table (dst_is_remote = 1). */
static int
t_oracle_legacy_remote(void)
{
    EXPECT(expect_direct(SYS, SYS, 1, &caps_none, NXL_KV_NIXL_WRITE));
    EXPECT(expect_direct(PIN, PIN, 1, &caps_none, NXL_KV_NIXL_WRITE));
    EXPECT(expect_two_hop(DEV, SYS, 1, &caps_none, NXL_KV_CUDA_ASYNC_D2H,
                          NXL_KV_NIXL_WRITE));
    EXPECT(expect_direct(DEV, SYS, 1, &caps_rdma, NXL_KV_NIXL_WRITE));
    EXPECT(expect_two_hop(DSK, SYS, 1, &caps_none, NXL_KV_NIXL_WRITE,
                          NXL_KV_NIXL_WRITE));
    return xt_leaks();
}

/* select (§5.1, §5.3): both local uses the local table; one side remote
 * uses the production rules. */
static int
t_select_remote_rules(void)
{
    nxl_kv_plan_t p;

    XT_ASSERT_STATUS(nxl_kv_select(SYS, 0, SYS, 0, &caps_none, &p),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Both src and dst are remote - this is not supported.");

    XT_ASSERT_OK(nxl_kv_select(DEV, 1, DSK, 1, &caps_none, &p));
    XT_ASSERT(p.two_hop && p.first == NXL_KV_CUDA_ASYNC_D2H &&
              p.bounce == NXL_KV_PINNED && p.second == NXL_KV_NIXL_WRITE);
    XT_ASSERT_OK(nxl_kv_select(PIN, 1, PIN, 1, NULL, &p));
    XT_ASSERT(!p.two_hop && p.first == NXL_KV_MEMCPY);

    /* Push and pull between host kinds. */
    XT_ASSERT_OK(nxl_kv_select(SYS, 1, PIN, 0, &caps_none, &p));
    XT_ASSERT(!p.two_hop && p.first == NXL_KV_NIXL_WRITE);
    XT_ASSERT_OK(nxl_kv_select(PIN, 0, SYS, 1, &caps_none, &p));
    XT_ASSERT(!p.two_hop && p.first == NXL_KV_NIXL_READ_FLIPPED);

    /* Disk over NIXL is refused on either side, before the RDMA rule. */
    XT_ASSERT_STATUS(nxl_kv_select(DSK, 1, SYS, 0, &caps_rdma, &p),
                     NXL_ERR_NOT_SUPPORTED);
    XT_ASSERT_STR(nxl_last_error(), "Neither local nor remote disk transfers "
                                    "are supported over NIXL at this time.");
    XT_ASSERT_STATUS(nxl_kv_select(DEV, 1, DSK, 0, &caps_none, &p),
                     NXL_ERR_NOT_SUPPORTED);
    XT_ASSERT_STR(nxl_last_error(), "Neither local nor remote disk transfers "
                                    "are supported over NIXL at this time.");

    /* Device needs GPU RDMA: no bounce fallback on this path. */
    XT_ASSERT_STATUS(nxl_kv_select(DEV, 1, SYS, 0, &caps_none, &p),
                     NXL_ERR_NOT_SUPPORTED);
    XT_ASSERT_STR(nxl_last_error(),
                  "GPU RDMA is disabled - this transfer requires GPU RDMA.");
    XT_ASSERT_STATUS(nxl_kv_select(PIN, 0, DEV, 1, NULL, &p),
                     NXL_ERR_NOT_SUPPORTED);
    XT_ASSERT_OK(nxl_kv_select(DEV, 1, SYS, 0, &caps_rdma, &p));
    XT_ASSERT(!p.two_hop && p.first == NXL_KV_NIXL_WRITE);
    XT_ASSERT_OK(nxl_kv_select(PIN, 0, DEV, 1, &caps_rdma, &p));
    XT_ASSERT(!p.two_hop && p.first == NXL_KV_NIXL_READ_FLIPPED);
    XT_ASSERT_OK(nxl_kv_select(DEV, 0, DEV, 1, &caps_rdma, &p));
    XT_ASSERT(!p.two_hop && p.first == NXL_KV_NIXL_READ_FLIPPED);
    return xt_leaks();
}

static int
t_bad_kind(void)
{
    nxl_kv_plan_t p = {7, NXL_KV_MEMCPY, NXL_KV_DISK, NXL_KV_MEMCPY};

    XT_ASSERT_STATUS(nxl_kv_select_direct((nxl_kv_kind_t)9, SYS, 0, NULL, &p),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_kv_select(SYS, 1, (nxl_kv_kind_t)-1, 1, NULL, &p),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_kv_select_direct(SYS, SYS, 0, NULL, NULL),
                     NXL_ERR_INVALID_PARAM);
    /* Outputs are written only on success. */
    XT_ASSERT_EQ(p.two_hop, 7);
    return xt_leaks();
}

/* ---- validation ---------------------------------------------------------- */

/* A small System layout over wrapped host memory. */
typedef struct vlayout {
    void *mem;
    nxl_kv_storage_t *s;
    nxl_kv_layout_t *l;
} vlayout_t;

static int
vl_make(vlayout_t *v, size_t num_blocks)
{
    nxl_kv_layout_config_t cfg = {.num_blocks = num_blocks,
                                  .num_layers = 2,
                                  .outer_dim = 2,
                                  .page_size = 4,
                                  .inner_dim = 8,
                                  .alignment = 1,
                                  .dtype_width_bytes = 2};
    size_t size = num_blocks * 2 * 2 * 4 * 8 * 2;

    v->mem = calloc(1, size);
    XT_ASSERT(v->mem != NULL);
    XT_ASSERT_OK(nxl_kv_storage_wrap((nxl_kv_loc_t){NXL_KV_SYSTEM, 0},
                                     (uint64_t)(uintptr_t)v->mem, size, &v->s));
    XT_ASSERT_OK(nxl_kv_layout_fc(&cfg, v->s, &v->l));
    return 0;
}

static void
vl_free(vlayout_t *v)
{
    nxl_kv_layout_destroy(v->l);
    nxl_kv_storage_destroy(v->s);
    free(v->mem);
}

static int
t_validate_oracle(void)
{
    vlayout_t a, b;
    const size_t ok5[] = {0, 1, 2, 3, 4}, src5[] = {5, 6, 7, 8, 9};
    const size_t dup1[] = {0, 1, 2, 1, 3}, dup12[] = {0, 1, 2, 1, 3, 2};
    const size_t src6[] = {4, 5, 6, 7, 8, 9};
    const size_t s012[] = {0, 1, 2}, s567[] = {5, 6, 7}, s234[] = {2, 3, 4};
    const size_t s56[] = {5, 6};

    if (vl_make(&a, 16) != 0 || vl_make(&b, 16) != 0) {
        return 1;
    }
    XT_ASSERT_OK(nxl_kv_validate(a.l, src5, 5, b.l, ok5, 5, NULL, NULL, 0));
    XT_ASSERT_STATUS(nxl_kv_validate(a.l, src5, 5, b.l, dup1, 5, NULL, NULL, 0),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Destination block IDs are not unique: duplicates = [1]");
    XT_ASSERT_STATUS(
        nxl_kv_validate(a.l, src6, 6, b.l, dup12, 6, NULL, NULL, 0),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Destination block IDs are not unique: duplicates = [1, 2]");
    /* Same layout object: disjoint ids are fine, shared ones are not. */
    XT_ASSERT_OK(nxl_kv_validate(a.l, s012, 3, a.l, s567, 3, NULL, NULL, 0));
    XT_ASSERT_STATUS(nxl_kv_validate(a.l, s012, 3, a.l, s234, 3, NULL, NULL, 0),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Source and destination blocks overlap (same layout): "
                  "overlapping = [2]");
    /* Different layouts with equal ids are fine. */
    XT_ASSERT_OK(nxl_kv_validate(a.l, s012, 3, b.l, s012, 3, NULL, NULL, 0));
    XT_ASSERT_STATUS(nxl_kv_validate(a.l, s012, 3, b.l, s56, 2, NULL, NULL, 0),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Block ID lists have mismatched lengths: src=3, dst=2, "
                  "bounce=None");
    vl_free(&a);
    vl_free(&b);
    return xt_leaks();
}

static int
t_validate_range_and_bounce(void)
{
    vlayout_t a, b, c;
    const size_t s012[] = {0, 1, 2}, s789[] = {7, 8, 9}, s567[] = {5, 6, 7};
    const size_t d9[] = {9, 0, 1}, bb[] = {3, 4, 3}, b2[] = {0, 1};
    const size_t b_ok[] = {0, 1, 2}, b_far[] = {0, 1, 4};
    const size_t ov_src[] = {0, 1, 2, 3}, ov_dst[] = {3, 9, 1, 10};

    if (vl_make(&a, 8) != 0 || vl_make(&b, 8) != 0 || vl_make(&c, 4) != 0) {
        return 1;
    }
    XT_ASSERT_STATUS(nxl_kv_validate(a.l, s789, 3, b.l, s012, 3, NULL, NULL, 0),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Block ID 8 out of range for source (max=8)");
    XT_ASSERT_STATUS(nxl_kv_validate(a.l, s012, 3, b.l, d9, 3, NULL, NULL, 0),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Block ID 9 out of range for destination (max=8)");
    /* Duplicates are reported before ranges, also for ids out of range
     * (the bitmap fast path must hand those to the full check). */
    {
        const size_t d99[] = {9, 9, 1};

        XT_ASSERT_STATUS(
            nxl_kv_validate(a.l, s012, 3, b.l, d99, 3, NULL, NULL, 0),
            NXL_ERR_INVALID_PARAM);
        XT_ASSERT_STR(nxl_last_error(),
                      "Destination block IDs are not unique: duplicates = [9]");
    }
    /* Bounce ids: as many as src, unique, in range of the bounce layout. */
    XT_ASSERT_OK(nxl_kv_validate(a.l, s012, 3, b.l, s567, 3, c.l, b_ok, 3));
    XT_ASSERT_STATUS(nxl_kv_validate(a.l, s012, 3, b.l, s567, 3, c.l, b2, 2),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Block ID lists have mismatched lengths: src=3, dst=3, "
                  "bounce=Some(2)");
    /* src != dst with bounce ids given reports the bounce count too. */
    XT_ASSERT_STATUS(nxl_kv_validate(a.l, s012, 3, b.l, b2, 2, c.l, b_ok, 3),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Block ID lists have mismatched lengths: src=3, dst=2, "
                  "bounce=Some(3)");
    XT_ASSERT_STATUS(nxl_kv_validate(a.l, s012, 3, b.l, s567, 3, c.l, bb, 3),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Bounce block IDs are not unique: duplicates = [3]");
    XT_ASSERT_STATUS(nxl_kv_validate(a.l, s012, 3, b.l, s567, 3, c.l, b_far, 3),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Block ID 4 out of range for bounce (max=4)");
    /* Overlap is checked before ranges and lists every shared id in
     * destination order. */
    XT_ASSERT_STATUS(
        nxl_kv_validate(a.l, ov_src, 4, a.l, ov_dst, 4, NULL, NULL, 0),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Source and destination blocks overlap (same layout): "
                  "overlapping = [3, 1]");
    /* Empty transfers are valid. */
    XT_ASSERT_OK(nxl_kv_validate(a.l, NULL, 0, a.l, NULL, 0, NULL, NULL, 0));
    XT_ASSERT_STATUS(
        nxl_kv_validate(NULL, s012, 3, b.l, s567, 3, NULL, NULL, 0),
        NXL_ERR_INVALID_PARAM);
    vl_free(&a);
    vl_free(&b);
    vl_free(&c);
    return xt_leaks();
}

/* Many duplicates: reported once each, in first-seen order, and the
 * message stays bounded. */
static int
t_validate_many_duplicates(void)
{
    vlayout_t a, b;
    enum { N = 4000 };
    size_t *src = malloc(N * sizeof(size_t)), *dst = malloc(N * sizeof(size_t));
    size_t i;

    XT_ASSERT(src != NULL && dst != NULL);
    if (vl_make(&a, N) != 0 || vl_make(&b, N) != 0) {
        return 1;
    }
    for (i = 0; i < N; i++) {
        src[i] = i;
        dst[i] = (N - 1 - i) / 2; /* every id twice, descending */
    }
    XT_ASSERT_STATUS(nxl_kv_validate(a.l, src, N, b.l, dst, N, NULL, NULL, 0),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strncmp(nxl_last_error(),
                      "Destination block IDs are not unique: duplicates = "
                      "[1999, 1998, 1997, ",
                      70) == 0);
    vl_free(&a);
    vl_free(&b);
    free(src);
    free(dst);
    return xt_leaks();
}

const xt_suite xt_suite_kv_strategy = {
    .name = "kv_strategy",
    .cases =
        (const xt_case[]){
            {"names", t_names},
            {"oracle_host_device", t_oracle_host_device},
            {"oracle_disk", t_oracle_disk},
            {"oracle_legacy_remote", t_oracle_legacy_remote},
            {"select_remote_rules", t_select_remote_rules},
            {"bad_kind", t_bad_kind},
            {"validate_oracle", t_validate_oracle},
            {"validate_range_and_bounce", t_validate_range_and_bounce},
            {"validate_many_duplicates", t_validate_many_duplicates},
            {NULL, NULL},
        },
};
