/* test_kv_fill.c - KV fill patterns and checksums (Dynamo's fill.rs and
 * checksum.rs oracle) on every storage kind and both layout types. */
#include "harness.h"
#include "util.h"
#include "xt_fakedev.h"

#include <nxl/nxl_kv.h>

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

/* 4 blocks, 3 layers, 2 outers, R = 16 * 16 * 2 = 512 bytes. */
static const nxl_kv_layout_config_t xt_cfg = {
    .num_blocks = 4,
    .num_layers = 3,
    .outer_dim = 2,
    .page_size = 16,
    .inner_dim = 16,
    .alignment = 1,
    .dtype_width_bytes = 2,
};
#define XT_R ((size_t)512)
#define XT_BLOCK (3 * 2 * XT_R)

/* xt_hex writes the canonical XXH3-128 of p[0..n) as 32 hex digits. */
static void
xt_hex(const void *p, size_t n, char out[NXL_KV_CHECKSUM_LEN])
{
    XXH128_canonical_t c;
    size_t i;

    XXH128_canonicalFromHash(&c, XXH3_128bits(p, n));
    for (i = 0; i < 16; i++) {
        snprintf(out + 2 * i, 3, "%02x", c.digest[i]);
    }
}

/* xt_host_region returns region (b, l, o) of a host layout as a pointer. */
static const uint8_t *
xt_host_region(const nxl_kv_layout_t *l, size_t b, size_t lyr, size_t o)
{
    nxl_kv_region_t r;

    if (nxl_kv_layout_region(l, b, lyr, o, &r) != NXL_OK || r.size != XT_R) {
        return NULL;
    }
    return (const uint8_t *)(uintptr_t)r.addr;
}

static int
t_constant_42(void)
{
    static const size_t ids[] = {0, 1};
    nxl_kv_checksum_t sums[2], other;
    char want[NXL_KV_CHECKSUM_LEN];
    nxl_kv_layout_t *l;
    uint8_t *ref = malloc(XT_BLOCK);
    const uint8_t *p;
    size_t b, lyr, o, i;

    XT_ASSERT(ref != NULL);
    XT_ASSERT_OK(nxl_kv_layout_alloc(&xt_cfg, NXL_KV_FULLY_CONTIGUOUS, 0,
                                     (nxl_kv_loc_t){NXL_KV_SYSTEM, 0}, NULL,
                                     &l));
    XT_ASSERT_OK(nxl_kv_fill_blocks(l, ids, 2, NXL_KV_FILL_CONSTANT, 42));
    for (b = 0; b < 2; b++) {
        for (lyr = 0; lyr < 3; lyr++) {
            for (o = 0; o < 2; o++) {
                p = xt_host_region(l, b, lyr, o);
                XT_ASSERT(p != NULL);
                for (i = 0; i < XT_R; i++) {
                    XT_ASSERT_EQ(p[i], 42);
                }
            }
        }
    }
    XT_ASSERT_OK(nxl_kv_checksum_blocks(l, ids, 2, 0, 0, sums));
    XT_ASSERT_EQ(strlen(sums[0].hex), 32);
    XT_ASSERT_STR(sums[0].hex, sums[1].hex);
    memset(ref, 42, XT_BLOCK);
    xt_hex(ref, XT_BLOCK, want);
    XT_ASSERT_STR(sums[0].hex, want);
    for (i = 0; i < 32; i++) {
        XT_ASSERT(strchr("0123456789abcdef", sums[0].hex[i]) != NULL);
    }
    /* One byte different -> a different checksum. */
    XT_ASSERT_OK(nxl_kv_fill_blocks(l, &ids[1], 1, NXL_KV_FILL_CONSTANT, 43));
    XT_ASSERT_OK(nxl_kv_checksum_blocks(l, &ids[1], 1, 0, 0, &other));
    XT_ASSERT(strcmp(other.hex, sums[0].hex) != 0);
    nxl_kv_layout_destroy(l);
    free(ref);
    XT_ASSERT_EQ(xt_leaks(), 0);
    return 0;
}

/* check_sequential checks Dynamo's sequential oracle on layout l. */
static int
check_sequential(nxl_kv_layout_t *l)
{
    static const size_t ids[] = {0, 1, 2, 3};
    const uint8_t *p;

    XT_ASSERT_OK(nxl_kv_fill_blocks(l, ids, 4, NXL_KV_FILL_SEQUENTIAL, 0));
    p = xt_host_region(l, 0, 0, 0);
    XT_ASSERT(p != NULL);
    XT_ASSERT_EQ(p[0], 0);
    XT_ASSERT_EQ(p[1], 1);
    p = xt_host_region(l, 1, 1, 0);
    XT_ASSERT(p != NULL);
    XT_ASSERT_EQ(p[0], 2);
    XT_ASSERT_EQ(p[1], 3);
    p = xt_host_region(l, 1, 1, 1); /* outer is not in the pattern */
    XT_ASSERT_EQ(p[0], 2);
    XT_ASSERT_EQ(p[1], 3);
    p = xt_host_region(l, 3, 2, 1);
    XT_ASSERT_EQ(p[0], 5);
    XT_ASSERT_EQ(p[300], (3 + 2 + 300) % 256);
    XT_ASSERT_EQ(p[XT_R - 1], (3 + 2 + XT_R - 1) % 256);
    return 0;
}

static int
t_sequential(void)
{
    nxl_kv_loc_t sys = {NXL_KV_SYSTEM, 0};
    nxl_kv_layout_t *l;
    int oc;

    XT_ASSERT_OK(nxl_kv_layout_alloc(&xt_cfg, NXL_KV_FULLY_CONTIGUOUS, 0, sys,
                                     NULL, &l));
    XT_ASSERT_EQ(check_sequential(l), 0);
    nxl_kv_layout_destroy(l);
    for (oc = 0; oc <= 1; oc++) {
        XT_ASSERT_OK(nxl_kv_layout_alloc(&xt_cfg, NXL_KV_LAYER_SEPARATE, oc,
                                         sys, NULL, &l));
        XT_ASSERT_EQ(check_sequential(l), 0);
        nxl_kv_layout_destroy(l);
    }
    return 0;
}

/* fill_layers touches only its layers; checksums over a layer range
 * cover only those layers. */
static int
t_fill_layers(void)
{
    static const size_t ids[] = {0, 1};
    nxl_kv_checksum_t sums[2], all[2];
    char want[NXL_KV_CHECKSUM_LEN];
    uint8_t ref[2 * XT_R];
    nxl_kv_layout_t *l;
    const uint8_t *p;

    XT_ASSERT_OK(nxl_kv_layout_alloc(&xt_cfg, NXL_KV_LAYER_SEPARATE, 0,
                                     (nxl_kv_loc_t){NXL_KV_PINNED, 0}, NULL,
                                     &l));
    XT_ASSERT_OK(nxl_kv_fill_blocks(l, ids, 2, NXL_KV_FILL_CONSTANT, 0));
    XT_ASSERT_OK(nxl_kv_fill_layers(l, ids, 1, 1, 2, NXL_KV_FILL_CONSTANT, 7));
    XT_ASSERT_OK(
        nxl_kv_fill_layers(l, &ids[1], 1, 0, 1, NXL_KV_FILL_SEQUENTIAL, 0));
    XT_ASSERT_OK(nxl_kv_fill_layers(l, ids, 2, 2, 2, NXL_KV_FILL_CONSTANT,
                                    9)); /* empty range: no-op */
    XT_ASSERT_EQ(xt_host_region(l, 0, 0, 0)[0], 0);
    XT_ASSERT_EQ(xt_host_region(l, 0, 1, 0)[0], 7);
    XT_ASSERT_EQ(xt_host_region(l, 0, 1, 1)[XT_R - 1], 7);
    XT_ASSERT_EQ(xt_host_region(l, 0, 2, 0)[0], 0);
    p = xt_host_region(l, 1, 0, 1);
    XT_ASSERT_EQ(p[0], 1);
    XT_ASSERT_EQ(p[1], 2);
    XT_ASSERT_EQ(xt_host_region(l, 1, 1, 0)[0], 0);

    /* Layer 1 of block 0 is 2 * R bytes of 7. */
    XT_ASSERT_OK(nxl_kv_checksum_blocks(l, ids, 1, 1, 2, sums));
    memset(ref, 7, sizeof(ref));
    xt_hex(ref, sizeof(ref), want);
    XT_ASSERT_STR(sums[0].hex, want);
    /* Layers 1..3 of both blocks: 1 differs (7s), 2 does not (0s). */
    XT_ASSERT_OK(nxl_kv_checksum_blocks(l, ids, 2, 2, 3, sums));
    XT_ASSERT_STR(sums[0].hex, sums[1].hex);
    XT_ASSERT_OK(nxl_kv_checksum_blocks(l, ids, 2, 0, 0, all));
    XT_ASSERT(strcmp(all[0].hex, all[1].hex) != 0);
    nxl_kv_layout_destroy(l);
    return 0;
}

static int
t_errors(void)
{
    static const size_t bad[] = {0, 9};
    nxl_kv_checksum_t sums[2];
    nxl_kv_layout_t *l;

    XT_ASSERT_OK(nxl_kv_layout_alloc(&xt_cfg, NXL_KV_FULLY_CONTIGUOUS, 0,
                                     (nxl_kv_loc_t){NXL_KV_SYSTEM, 0}, NULL,
                                     &l));
    XT_ASSERT_OK(nxl_kv_fill_blocks(l, bad, 1, NXL_KV_FILL_CONSTANT, 1));
    XT_ASSERT_STATUS(nxl_kv_fill_blocks(l, bad, 2, NXL_KV_FILL_CONSTANT, 2),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(), "Block ID 9 out of range");
    XT_ASSERT_EQ(xt_host_region(l, 0, 0, 0)[0], 1); /* nothing written */
    XT_ASSERT_STATUS(
        nxl_kv_fill_layers(l, bad, 1, 0, 5, NXL_KV_FILL_CONSTANT, 2),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(), "Layer range 0..5 exceeds num_layers 3");
    XT_ASSERT_STATUS(
        nxl_kv_fill_layers(l, bad, 1, 2, 1, NXL_KV_FILL_CONSTANT, 2),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(
        nxl_kv_fill_layers(l, bad, 2, 0, 1, NXL_KV_FILL_CONSTANT, 2),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(), "Block ID 9 out of range");
    XT_ASSERT_STATUS(nxl_kv_checksum_blocks(l, bad, 2, 0, 0, sums),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(), "Block ID 9 out of range");
    XT_ASSERT_STATUS(nxl_kv_checksum_blocks(l, bad, 1, 1, 4, sums),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(), "Layer range 1..4 exceeds num_layers 3");
    XT_ASSERT_STATUS(nxl_kv_checksum_blocks(l, bad, 1, 0, 0, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_kv_fill_blocks(NULL, bad, 1, NXL_KV_FILL_CONSTANT, 0),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_kv_fill_blocks(l, NULL, 1, NXL_KV_FILL_CONSTANT, 0),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_kv_fill_blocks(l, bad, 1, (nxl_kv_fill_t)5, 0),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_OK(nxl_kv_fill_blocks(l, NULL, 0, NXL_KV_FILL_CONSTANT, 0));
    XT_ASSERT_OK(nxl_kv_checksum_blocks(l, NULL, 0, 0, 0, NULL));
    nxl_kv_layout_destroy(l);
    return 0;
}

/* check_against_host fills l (any kind) and a system layout of the same
 * config the same way and compares every block's checksum: the bytes and
 * their order must be identical. */
static int
check_against_host(nxl_kv_layout_t *l)
{
    static const size_t seq[] = {0, 2, 3}, con[] = {1};
    nxl_kv_checksum_t a[4], b[4];
    size_t all[4] = {0, 1, 2, 3};
    nxl_kv_layout_t *ref;
    int i;

    XT_ASSERT_OK(nxl_kv_layout_alloc(&xt_cfg, NXL_KV_FULLY_CONTIGUOUS, 0,
                                     (nxl_kv_loc_t){NXL_KV_SYSTEM, 0}, NULL,
                                     &ref));
    XT_ASSERT_OK(nxl_kv_fill_blocks(l, seq, 3, NXL_KV_FILL_SEQUENTIAL, 0));
    XT_ASSERT_OK(nxl_kv_fill_blocks(l, con, 1, NXL_KV_FILL_CONSTANT, 42));
    XT_ASSERT_OK(nxl_kv_fill_blocks(ref, seq, 3, NXL_KV_FILL_SEQUENTIAL, 0));
    XT_ASSERT_OK(nxl_kv_fill_blocks(ref, con, 1, NXL_KV_FILL_CONSTANT, 42));
    XT_ASSERT_OK(nxl_kv_checksum_blocks(l, all, 4, 0, 0, a));
    XT_ASSERT_OK(nxl_kv_checksum_blocks(ref, all, 4, 0, 0, b));
    for (i = 0; i < 4; i++) {
        XT_ASSERT_STR(a[i].hex, b[i].hex);
    }
    XT_ASSERT(strcmp(a[0].hex, a[2].hex) != 0);
    /* A layer range agrees too. */
    XT_ASSERT_OK(nxl_kv_checksum_blocks(l, all, 4, 1, 3, a));
    XT_ASSERT_OK(nxl_kv_checksum_blocks(ref, all, 4, 1, 3, b));
    for (i = 0; i < 4; i++) {
        XT_ASSERT_STR(a[i].hex, b[i].hex);
    }
    nxl_kv_layout_destroy(ref);
    return 0;
}

static int
t_pinned_and_ls(void)
{
    nxl_kv_layout_t *l;
    int oc;

    for (oc = 0; oc <= 1; oc++) {
        XT_ASSERT_OK(nxl_kv_layout_alloc(&xt_cfg, NXL_KV_LAYER_SEPARATE, oc,
                                         (nxl_kv_loc_t){NXL_KV_PINNED, 0}, NULL,
                                         &l));
        XT_ASSERT_EQ(check_against_host(l), 0);
        nxl_kv_layout_destroy(l);
    }
    return 0;
}

static int
t_disk(void)
{
    nxl_kv_loc_t disk = {NXL_KV_DISK, 0};
    nxl_kv_region_t r;
    nxl_kv_layout_t *l;
    uint8_t got[4];
    int fds_before = xt_open_fds(), oc;

    XT_ASSERT_OK(nxl_kv_layout_alloc(&xt_cfg, NXL_KV_FULLY_CONTIGUOUS, 0, disk,
                                     NULL, &l));
    XT_ASSERT_EQ(check_against_host(l), 0);
    /* The bytes really are in the file, at the region's offset. */
    XT_ASSERT_OK(nxl_kv_layout_region(l, 2, 1, 1, &r));
    XT_ASSERT_EQ(pread((int)nxl_kv_layout_dev_id(l), got, 4, (off_t)r.addr), 4);
    XT_ASSERT_EQ(got[0], 3);
    XT_ASSERT_EQ(got[3], 6);
    XT_ASSERT_OK(nxl_kv_layout_region(l, 1, 0, 0, &r));
    XT_ASSERT_EQ(pread((int)nxl_kv_layout_dev_id(l), got, 1, (off_t)r.addr), 1);
    XT_ASSERT_EQ(got[0], 42);
    nxl_kv_layout_destroy(l);
    /* Layer separate over disk: one file per layer. */
    for (oc = 0; oc <= 1; oc++) {
        XT_ASSERT_OK(nxl_kv_layout_alloc(&xt_cfg, NXL_KV_LAYER_SEPARATE, oc,
                                         disk, NULL, &l));
        XT_ASSERT_EQ(check_against_host(l), 0);
        nxl_kv_layout_destroy(l);
    }
    XT_ASSERT_EQ(xt_open_fds(), fds_before);
    return 0;
}

/* O_DIRECT files with 512-byte regions: fill read-modify-writes the
 * aligned 4096-byte span around each region, without clobbering its
 * neighbours. */
static int
t_disk_direct(void)
{
    nxl_kv_storage_t *s;
    nxl_kv_layout_t *l;
    nxl_status_t st;
    size_t need = 4 * XT_BLOCK;

    st = nxl_kv_storage_disk("/tmp", need, 1, &s);
    XT_SKIP_IF(st == NXL_ERR_NOT_SUPPORTED, "O_DIRECT refused on /tmp: %s",
               nxl_last_error());
    XT_ASSERT_OK(st);
    XT_ASSERT(fcntl((int)nxl_kv_storage_loc(s).index, F_GETFL) & O_DIRECT);
    XT_ASSERT_OK(nxl_kv_layout_fc(&xt_cfg, s, &l));
    XT_ASSERT_EQ(check_against_host(l), 0);
    nxl_kv_layout_destroy(l);
    nxl_kv_storage_destroy(s);
    return 0;
}

/* Device layouts go through the device kind's copies (the fake here). */
static int
t_fake_device(void)
{
    static const size_t one[] = {2};
    nxl_kv_loc_t dev = {NXL_KV_DEVICE, 1};
    nxl_kv_checksum_t sum;
    nxl_kv_layout_t *l;
    uint64_t before;

    xt_fakedev_install();
    XT_ASSERT_OK(nxl_kv_layout_alloc(&xt_cfg, NXL_KV_FULLY_CONTIGUOUS, 0, dev,
                                     NULL, &l));
    XT_ASSERT_EQ(check_against_host(l), 0);
    /* One H2D copy per region filled, one D2H per region hashed. */
    before = xt_fakedev_sync_copies();
    XT_ASSERT_OK(nxl_kv_fill_blocks(l, one, 1, NXL_KV_FILL_CONSTANT, 5));
    XT_ASSERT_EQ(xt_fakedev_sync_copies() - before, 3 * 2);
    XT_ASSERT_OK(nxl_kv_checksum_blocks(l, one, 1, 0, 0, &sum));
    XT_ASSERT_EQ(xt_fakedev_sync_copies() - before, 2 * 3 * 2);
    /* A failed device copy is the fill's error. */
    xt_fakedev_fail_next(1);
    XT_ASSERT_STATUS(nxl_kv_fill_blocks(l, one, 1, NXL_KV_FILL_CONSTANT, 5),
                     NXL_ERR_BACKEND);
    nxl_kv_layout_destroy(l);
    XT_ASSERT_OK(
        nxl_kv_layout_alloc(&xt_cfg, NXL_KV_LAYER_SEPARATE, 1, dev, NULL, &l));
    XT_ASSERT_EQ(check_against_host(l), 0);
    nxl_kv_layout_destroy(l);
    XT_ASSERT_EQ(xt_fakedev_live_allocs(), 0);
    XT_ASSERT_EQ(xt_leaks(), 0);
    return 0;
}

/* Without a device kind that runs, device layouts cannot even be made;
 * with the CUDA kind absent the fill is never reached. */
static int
t_device_without_gpu(void)
{
    nxl_kv_layout_t *l = NULL;

    XT_SKIP_IF(nxl_memkind_cuda()->probe() == NXL_OK, "a GPU is present");
    XT_ASSERT_STATUS(nxl_kv_layout_alloc(&xt_cfg, NXL_KV_FULLY_CONTIGUOUS, 0,
                                         (nxl_kv_loc_t){NXL_KV_DEVICE, 0}, NULL,
                                         &l),
                     NXL_ERR_NOT_SUPPORTED);
    XT_ASSERT(l == NULL);
    return 0;
}

/* A view whose region size R is near 2^64 (a peer may describe one: it
 * fits its memory descriptor) must not get a staging buffer whose size
 * wrapped around when R was rounded up to pages: the fill and the
 * checksum refuse it, on a device kind and on a disk kind. */
static int
t_huge_region_view(void)
{
    static const size_t one[] = {0};
    static const char *const fmt =
        "{\"version\":1,\"layout_config\":{\"num_blocks\":1,"
        "\"num_layers\":1,\"outer_dim\":1,"
        "\"page_size\":18446744073709547521,\"inner_dim\":1,"
        "\"alignment\":1,\"dtype_width_bytes\":1},\"location\":%s,"
        "\"nixl_metadata\":{\"agent_name\":\"peer\",\"mem_type\":\"%s\","
        "\"device_id\":0},\"memory_descriptors\":[{\"addr\":1,"
        "\"size\":18446744073709547521}],\"layout_type_details\":"
        "{\"FullyContiguous\":{\"block_format\":\"Operational\"}}}";
    static const char *const where[2][2] = {
        {"{\"Device\":0}", "Vram"},
        {"{\"Disk\":0}", "File"},
    };
    nxl_kv_checksum_t sum;
    nxl_kv_layout_t *l;
    char json[1024];
    int i, n;

    xt_fakedev_install();
    for (i = 0; i < 2; i++) {
        n = snprintf(json, sizeof(json), fmt, where[i][0], where[i][1]);
        XT_ASSERT(n > 0 && (size_t)n < sizeof(json));
        XT_ASSERT_OK(nxl_kv_layout_from_json_v2(json, (size_t)n, &l));
        XT_ASSERT_EQ(nxl_kv_layout_region_size(l), (size_t)0 - 4095);
        XT_ASSERT_STATUS(nxl_kv_fill_blocks(l, one, 1, NXL_KV_FILL_CONSTANT, 1),
                         NXL_ERR_NOMEM);
        XT_ASSERT(strstr(nxl_last_error(), "too large") != NULL);
        XT_ASSERT_STATUS(nxl_kv_checksum_blocks(l, one, 1, 0, 0, &sum),
                         NXL_ERR_NOMEM);
        nxl_kv_layout_destroy(l);
    }
    XT_ASSERT_EQ(xt_fakedev_sync_copies(), 0);
    XT_ASSERT_EQ(xt_leaks(), 0);
    return 0;
}

const xt_suite xt_suite_kv_fill = {
    .name = "kv_fill",
    .timeout_s = 30,
    .cases =
        (const xt_case[]){
            {"constant_42", t_constant_42},
            {"sequential", t_sequential},
            {"fill_layers", t_fill_layers},
            {"errors", t_errors},
            {"pinned_and_ls", t_pinned_and_ls},
            {"disk", t_disk},
            {"disk_direct", t_disk_direct},
            {"fake_device", t_fake_device},
            {"device_without_gpu", t_device_without_gpu},
            {"huge_region_view", t_huge_region_view},
            {NULL, NULL},
        },
};
