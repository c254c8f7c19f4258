/* test_core.c - core internals: the interval index, exported symbols, and
 * descriptor merging in nxl_xfer_make (loopback, first built-in backend
 * with NXL_CAP_LOCAL). */
#include "core/core.h"
#include "harness.h"

#include <stdio.h>

extern const char *const xt_backends[];

/* Only nxl_* symbols leave libnxl.so (STYLE.md §3.2). */
static int
t_exports_only_nxl(void)
{
    char cmd[1024], line[512];
    int bad = 0, total = 0;
    FILE *f;

    snprintf(cmd, sizeof(cmd),
             "nm -D --defined-only '%s' 2>/dev/null | awk '{print $3}'",
             NXL_LIB_PATH);
    f = popen(cmd, "r");
    XT_SKIP_IF(f == NULL, "cannot run nm");
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '\0') {
            continue;
        }
        total++;
        if (strncmp(line, "nxl_", 4) != 0) {
            fprintf(stderr, "exported symbol outside the API: %s\n", line);
            bad++;
        }
    }
    pclose(f);
    XT_SKIP_IF(total == 0, "nm printed nothing for %s", NXL_LIB_PATH);
    XT_ASSERT_EQ(bad, 0);
    XT_ASSERT(total > 40);
    return 0;
}

static nxl__region_t
reg(uint64_t addr, uint64_t len, uint64_t dev)
{
    nxl__region_t r;

    memset(&r, 0, sizeof(r));
    r.desc = (nxl_desc_t){.addr = addr, .len = len, .dev_id = dev};
    return r;
}

/* Coverage lookups: inside, at edges, across regions, other devices. */
static int
t_index_cover(void)
{
    nxl__index_t ix;
    nxl__region_t r;
    size_t hint = 0;
    uint64_t i;

    nxl__index_init(&ix, sizeof(nxl__region_t));
    /* Insert out of order: 10 regions of 100 bytes with gaps of 100. */
    for (i = 10; i-- > 0;) {
        r = reg(1000 + i * 200, 100, 0);
        XT_ASSERT_OK(nxl__index_insert(&ix, &r));
    }
    r = reg(1000, 100, 7);
    XT_ASSERT_OK(nxl__index_insert(&ix, &r));
    XT_ASSERT_EQ(ix.count, 11);
    for (i = 1; i < ix.count; i++) {
        const nxl_desc_t *a = nxl__index_at(&ix, i - 1), *b = nxl__index_at(&ix, i);
        XT_ASSERT(a->dev_id < b->dev_id ||
                  (a->dev_id == b->dev_id && a->addr < b->addr));
    }
    XT_ASSERT(nxl__index_find_cover(&ix, 1000, 100, 0, &hint) != NULL);
    XT_ASSERT(nxl__index_find_cover(&ix, 1050, 50, 0, &hint) != NULL);
    XT_ASSERT(nxl__index_find_cover(&ix, 1050, 51, 0, &hint) == NULL);
    XT_ASSERT(nxl__index_find_cover(&ix, 999, 2, 0, &hint) == NULL);
    XT_ASSERT(nxl__index_find_cover(&ix, 1100, 1, 0, &hint) == NULL);
    XT_ASSERT(nxl__index_find_cover(&ix, 2800, 100, 0, &hint) != NULL);
    XT_ASSERT(nxl__index_find_cover(&ix, 2900, 1, 0, &hint) == NULL);
    XT_ASSERT(nxl__index_find_cover(&ix, 1200, 100, 7, &hint) == NULL);
    XT_ASSERT(nxl__index_find_cover(&ix, 1000, 100, 7, &hint) != NULL);
    XT_ASSERT(nxl__index_find_cover(&ix, UINT64_MAX - 1, 2, 0, &hint) == NULL);
    /* Sorted walk uses the hint. */
    hint = 0;
    for (i = 0; i < 10; i++) {
        XT_ASSERT(nxl__index_find_cover(&ix, 1000 + i * 200 + 10, 10, 0,
                                        &hint) != NULL);
    }
    nxl__index_fini(&ix);
    return 0;
}

/* Overlapping regions (NIXL allows them): coverage finds the region that
 * covers a range even when a later-starting one does not; exact lookup
 * tells equal starts apart; removal keeps lookups right. */
static int
t_index_overlap_exact_remove(void)
{
    nxl__index_t ix;
    nxl__region_t big = reg(100, 1000, 0), small = reg(200, 10, 0),
                  same = reg(100, 50, 0);
    size_t hint = 0;
    nxl__region_t *r;

    nxl__index_init(&ix, sizeof(nxl__region_t));
    XT_ASSERT_OK(nxl__index_insert(&ix, &small));
    XT_ASSERT_OK(nxl__index_insert(&ix, &big));
    XT_ASSERT_OK(nxl__index_insert(&ix, &same));
    /* [500, 600) lies after small's start but only big covers it. */
    r = nxl__index_find_cover(&ix, 500, 100, 0, &hint);
    XT_ASSERT(r != NULL);
    XT_ASSERT_EQ(r->desc.len, 1000);
    hint = 0;
    r = nxl__index_find_cover(&ix, 205, 5, 0, &hint);
    XT_ASSERT(r != NULL);
    XT_ASSERT(nxl__index_find_cover(&ix, 1050, 51, 0, &hint) == NULL);
    XT_ASSERT(nxl__index_find_exact(&ix, &same.desc) != NULL);
    XT_ASSERT_EQ(((nxl__region_t *)nxl__index_find_exact(&ix, &same.desc))
                     ->desc.len, 50);
    XT_ASSERT_EQ(((nxl__region_t *)nxl__index_find_exact(&ix, &big.desc))
                     ->desc.len, 1000);
    nxl__index_remove(&ix, nxl__index_find_exact(&ix, &big.desc));
    XT_ASSERT_EQ(ix.count, 2);
    hint = 0;
    XT_ASSERT(nxl__index_find_cover(&ix, 500, 100, 0, &hint) == NULL);
    XT_ASSERT(nxl__index_find_cover(&ix, 120, 10, 0, &hint) != NULL);
    XT_ASSERT(nxl__index_find_exact(&ix, &big.desc) == NULL);
    nxl__index_fini(&ix);
    return 0;
}

/* A loopback agent on the first LOCAL-capable built-in backend. */
static int
loop_agent(nxl_agent_t **a_p)
{
    nxl_agent_config_t cfg;
    nxl_plugin_info_t info;
    size_t i;

    nxl_agent_config_init(&cfg);
    cfg.capture_telemetry = 1;
    if (nxl_agent_create("core-test", &cfg, a_p) != NXL_OK) {
        return 1;
    }
    for (i = 0; xt_backends[i] != NULL; i++) {
        if (nxl_plugin_info(xt_backends[i], &info) == NXL_OK &&
            (info.caps & NXL_CAP_LOCAL) &&
            nxl_backend_create(*a_p, xt_backends[i], NULL, NULL) == NXL_OK) {
            return 0;
        }
    }
    return XT_SKIP;
}

/* Runs of blocks contiguous on both sides merge into one descriptor;
 * skip_merge keeps them; a gap breaks a run. */
static int
t_xfer_make_merges(void)
{
    enum { N = 64, B = 4096 };
    static uint8_t src[N * B], dst[N * B];
    nxl_desc_t ld[N], rd[N];
    size_t li[N], ri[N], i;
    nxl_dlist_t sreg = {NXL_DRAM, &(nxl_desc_t){(uintptr_t)src, sizeof(src), 0}, 1};
    nxl_dlist_t dreg = {NXL_DRAM, &(nxl_desc_t){(uintptr_t)dst, sizeof(dst), 0}, 1};
    nxl_dlist_t l = {NXL_DRAM, ld, N}, r = {NXL_DRAM, rd, N};
    nxl_prepped_t *lp, *rp;
    nxl_xfer_telemetry_t t;
    nxl_xfer_t *x;
    nxl_agent_t *a;
    nxl_opts_t o;
    int rc;

    rc = loop_agent(&a);
    XT_SKIP_IF(rc == XT_SKIP, "no built-in backend with loopback");
    XT_ASSERT_EQ(rc, 0);
    for (i = 0; i < sizeof(src); i++) {
        src[i] = (uint8_t)(i * 7 + 3);
    }
    XT_ASSERT_OK(nxl_mem_register(a, &sreg, NULL));
    XT_ASSERT_OK(nxl_mem_register(a, &dreg, NULL));
    for (i = 0; i < N; i++) {
        ld[i] = (nxl_desc_t){(uintptr_t)dst + i * B, B, 0};
        rd[i] = (nxl_desc_t){(uintptr_t)src + i * B, B, 0};
        li[i] = ri[i] = i;
    }
    XT_ASSERT_OK(nxl_dlist_prep(a, NULL, &l, NULL, &lp));
    XT_ASSERT_OK(nxl_dlist_prep(a, "core-test", &r, NULL, &rp));

    /* All 64 consecutive: one descriptor. */
    XT_ASSERT_OK(nxl_xfer_make(a, NXL_READ, lp, li, rp, ri, N, NULL, &x));
    rc = nxl_xfer_post(x, NULL);
    XT_ASSERT(rc == NXL_OK || rc == NXL_IN_PROG);
    XT_ASSERT_OK(nxl_xfer_wait(x, 5000));
    XT_ASSERT_OK(nxl_xfer_telemetry(x, &t));
    XT_ASSERT_EQ(t.desc_count, 1);
    XT_ASSERT_EQ(t.total_bytes, (uint64_t)N * B);
    XT_ASSERT(memcmp(src, dst, sizeof(src)) == 0);
    nxl_xfer_release(x);

    /* skip_merge keeps 64. */
    nxl_opts_init(&o);
    o.skip_merge = 1;
    XT_ASSERT_OK(nxl_xfer_make(a, NXL_READ, lp, li, rp, ri, N, &o, &x));
    XT_ASSERT_OK(nxl_xfer_telemetry(x, &t));
    XT_ASSERT_EQ(t.desc_count, N);
    nxl_xfer_release(x);

    /* Blocks 0..9, 20..29 (remote reversed in the second run): 2 + 10. */
    for (i = 0; i < 10; i++) {
        li[i] = ri[i] = i;
        li[10 + i] = 20 + i;
        ri[10 + i] = 29 - i;
    }
    XT_ASSERT_OK(nxl_xfer_make(a, NXL_READ, lp, li, rp, ri, 20, NULL, &x));
    XT_ASSERT_OK(nxl_xfer_telemetry(x, &t));
    XT_ASSERT_EQ(t.desc_count, 11);
    memset(dst, 0, sizeof(dst));
    rc = nxl_xfer_post(x, NULL);
    XT_ASSERT(rc == NXL_OK || rc == NXL_IN_PROG);
    XT_ASSERT_OK(nxl_xfer_wait(x, 5000));
    for (i = 0; i < 10; i++) {
        XT_ASSERT(memcmp(dst + (20 + i) * B, src + (29 - i) * B, B) == 0);
    }
    nxl_xfer_release(x);
    nxl_dlist_release(lp);
    nxl_dlist_release(rp);
    nxl_agent_destroy(a);
    return 0;
}

const xt_suite xt_suite_core = {
    .name = "core",
    .cases = (const xt_case[]){
        {"exports_only_nxl", t_exports_only_nxl},
        {"index_cover", t_index_cover},
        {"index_overlap_exact_remove", t_index_overlap_exact_remove},
        {"xfer_make_merges", t_xfer_make_merges},
        {NULL, NULL},
    },
};
