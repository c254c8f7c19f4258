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
    const nxl__region_t *a, *b;
    nxl__index_t ix;
    nxl__region_t r;
    void *hint = NULL, *e = NULL;
    uint64_t i;

    nxl__index_init(&ix, sizeof(nxl__region_t));
    /* Insert out of order: 10 regions of 100 bytes with gaps of 100. */
    for (i = 10; i-- > 0;) {
        r = reg(1000 + i * 200, 100, 0);
        XT_ASSERT_OK(nxl__index_add(&ix, &r, true, &e));
    }
    r = reg(1000, 100, 7);
    XT_ASSERT_OK(nxl__index_add(&ix, &r, true, &e));
    XT_ASSERT_EQ(nxl__index_add(&ix, &r, false, &e), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_EQ(((nxl__region_t *)e)->desc.addr, 1000);
    r = reg(UINT64_MAX - 10, 20, 0);
    XT_ASSERT_STATUS(nxl__index_add(&ix, &r, false, &e), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_EQ(nxl__index_count(&ix), 11);
    for (a = nxl__index_first(&ix), i = 1; (b = nxl__index_next(&ix, a));
         a = b, i++) {
        XT_ASSERT(a->desc.dev_id < b->desc.dev_id ||
                  (a->desc.dev_id == b->desc.dev_id &&
                   a->desc.addr < b->desc.addr));
    }
    XT_ASSERT_EQ(i, 11);
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
    XT_ASSERT(nxl__index_find_cover(&ix, 1000, 0, 0, &hint) == NULL);
    /* Sorted walk uses the hint. */
    hint = NULL;
    for (i = 0; i < 10; i++) {
        XT_ASSERT(nxl__index_find_cover(&ix, 1000 + i * 200 + 10, 10, 0,
                                        &hint) != NULL);
        XT_ASSERT_EQ(((nxl__region_t *)hint)->desc.addr, 1000 + i * 200);
    }
    /* Exclusive adds refuse any overlap and name the region in the way;
     * touching neighbours and other devices are fine. */
    r = reg(1150, 100, 0);
    XT_ASSERT_EQ(nxl__index_add(&ix, &r, true, &e), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_EQ(((nxl__region_t *)e)->desc.addr, 1200);
    r = reg(1050, 10, 0);
    XT_ASSERT_EQ(nxl__index_add(&ix, &r, true, &e), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_EQ(((nxl__region_t *)e)->desc.addr, 1000);
    r = reg(1100, 100, 0);
    XT_ASSERT_OK(nxl__index_add(&ix, &r, true, &e));
    r = reg(1150, 100, 3);
    XT_ASSERT_OK(nxl__index_add(&ix, &r, true, &e));
    XT_ASSERT_EQ(nxl__index_count(&ix), 13);
    nxl__index_fini(&ix);
    return 0;
}

/* Overlapping elements (peer indexes may get them from old peers; local
 * registration refuses them before inserting): coverage finds the one that
 * covers a range even when a later-starting one does not; exact lookup
 * tells equal starts apart; removal keeps lookups right. */
static int
t_index_overlap_exact_remove(void)
{
    nxl__index_t ix;
    nxl__region_t big = reg(100, 1000, 0), small = reg(200, 10, 0),
                  same = reg(100, 50, 0);
    void *hint = NULL, *e = NULL;
    nxl__region_t *r;

    nxl__index_init(&ix, sizeof(nxl__region_t));
    XT_ASSERT_OK(nxl__index_add(&ix, &small, false, &e));
    XT_ASSERT_OK(nxl__index_add(&ix, &big, false, &e));
    XT_ASSERT_OK(nxl__index_add(&ix, &same, false, &e));
    /* [500, 600) lies after small's start but only big covers it. */
    r = nxl__index_find_cover(&ix, 500, 100, 0, &hint);
    XT_ASSERT(r != NULL);
    XT_ASSERT_EQ(r->desc.len, 1000);
    hint = NULL;
    r = nxl__index_find_cover(&ix, 205, 5, 0, &hint);
    XT_ASSERT(r != NULL);
    XT_ASSERT(nxl__index_find_cover(&ix, 1050, 51, 0, &hint) == NULL);
    XT_ASSERT(nxl__index_find_exact(&ix, &same.desc) != NULL);
    XT_ASSERT_EQ(((nxl__region_t *)nxl__index_find_exact(&ix, &same.desc))
                     ->desc.len, 50);
    XT_ASSERT_EQ(((nxl__region_t *)nxl__index_find_exact(&ix, &big.desc))
                     ->desc.len, 1000);
    XT_ASSERT(nxl__index_find_overlap(&ix, &(nxl_desc_t){1099, 1, 0}) !=
              NULL);
    XT_ASSERT(nxl__index_find_overlap(&ix, &(nxl_desc_t){1100, 9, 0}) ==
              NULL);
    XT_ASSERT(nxl__index_find_overlap(&ix, &(nxl_desc_t){0, 100, 0}) == NULL);
    XT_ASSERT(nxl__index_find_overlap(&ix, &(nxl_desc_t){0, 101, 1}) == NULL);
    nxl__index_remove(&ix, nxl__index_find_exact(&ix, &big.desc));
    XT_ASSERT_EQ(nxl__index_count(&ix), 2);
    hint = NULL;
    XT_ASSERT(nxl__index_find_cover(&ix, 500, 100, 0, &hint) == NULL);
    XT_ASSERT(nxl__index_find_cover(&ix, 120, 10, 0, &hint) != NULL);
    XT_ASSERT(nxl__index_find_exact(&ix, &big.desc) == NULL);
    nxl__index_fini(&ix);
    return 0;
}

/* rt_rand is a xorshift generator for the range-tree test. */
static uint64_t
rt_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The range tree against a brute-force list: 20,000 random inserts and
 * removals of (possibly overlapping) ranges on 3 devices near the top and
 * bottom of the address space; after each step the tree is checked
 * (order, AVL balance, parents, maxima), and exact, cover and overlap
 * queries agree with the list. */
static int
t_rtree_random(void)
{
    enum { CAP = 600, STEPS = 20000 };
    static nxl__rnode_t nodes[CAP];
    static int in[CAP];
    nxl__rtree_t t;
    nxl__rnode_t *got;
    uint64_t s = 0x1234567887654321ull, dev, addr, len, base;
    int step, i, want;

    nxl__rtree_init(&t);
    for (step = 0; step < STEPS; step++) {
        i = (int)(rt_rand(&s) % CAP);
        if (in[i]) {
            nxl__rtree_remove(&t, &nodes[i]);
            in[i] = 0;
        } else {
            base = (rt_rand(&s) & 1) ? 0 : UINT64_MAX - 5000;
            nodes[i].dev = rt_rand(&s) % 3;
            nodes[i].addr = base + rt_rand(&s) % 4000;
            nodes[i].len = 1 + rt_rand(&s) % 300;
            nodes[i].tie = rt_rand(&s) % 2;
            got = nxl__rtree_insert(&t, &nodes[i]);
            if (got == NULL) {
                in[i] = 1;
            } else {
                XT_ASSERT(got->dev == nodes[i].dev &&
                          got->addr == nodes[i].addr &&
                          got->len == nodes[i].len);
            }
        }
        if (step % 50 != 0 && step < STEPS - 1) {
            continue;
        }
        XT_ASSERT_EQ(nxl__rtree_check(&t), 0);
        /* Queries. */
        for (int q = 0; q < 40; q++) {
            base = (rt_rand(&s) & 1) ? 0 : UINT64_MAX - 5000;
            dev = rt_rand(&s) % 3;
            addr = base + rt_rand(&s) % 4300;
            len = 1 + rt_rand(&s) % 200;
            want = 0;
            for (int k = 0; k < CAP; k++) {
                want |= in[k] && nodes[k].dev == dev &&
                        nodes[k].addr <= addr &&
                        nodes[k].addr + nodes[k].len >= addr + len;
            }
            got = nxl__rtree_cover(&t, dev, addr, len);
            XT_ASSERT_EQ(got != NULL, want);
            if (got != NULL) {
                XT_ASSERT(got->dev == dev && got->addr <= addr &&
                          got->addr + got->len >= addr + len);
            }
            want = 0;
            for (int k = 0; k < CAP; k++) {
                want |= in[k] && nodes[k].dev == dev &&
                        nodes[k].addr < addr + len &&
                        nodes[k].addr + nodes[k].len > addr;
            }
            got = nxl__rtree_overlap(&t, dev, addr, len);
            XT_ASSERT_EQ(got != NULL, want);
            if (got != NULL) {
                XT_ASSERT(got->dev == dev && got->addr < addr + len &&
                          got->addr + got->len > addr);
            }
            i = (int)(rt_rand(&s) % CAP);
            got = nxl__rtree_find(&t, nodes[i].dev, nodes[i].addr,
                                  nodes[i].len, nodes[i].tie);
            if (in[i]) {
                XT_ASSERT(got == &nodes[i]);
            }
        }
    }
    return 0;
}

/* nxl__rtree_insert_excl keeps a tree free of overlaps: 20,000 random
 * inserts and removals, each insert refused exactly when a brute-force
 * scan finds an overlap, the tree checked as it goes. */
static int
t_rtree_excl(void)
{
    enum { CAP = 400, STEPS = 20000 };
    static nxl__rnode_t nodes[CAP];
    static int in[CAP];
    nxl__rtree_t t;
    nxl__rnode_t *got;
    uint64_t s = 0xfeedfacecafebeefull;
    int step, i, k, want, added = 0;

    nxl__rtree_init(&t);
    for (step = 0; step < STEPS; step++) {
        i = (int)(rt_rand(&s) % CAP);
        if (in[i]) {
            nxl__rtree_remove(&t, &nodes[i]);
            in[i] = 0;
            continue;
        }
        nodes[i].dev = rt_rand(&s) % 2;
        nodes[i].addr = rt_rand(&s) % 20000;
        nodes[i].len = 1 + rt_rand(&s) % 200;
        nodes[i].tie = 0;
        want = 0;
        for (k = 0; k < CAP; k++) {
            want |= in[k] && nodes[k].dev == nodes[i].dev &&
                    nodes[k].addr < nodes[i].addr + nodes[i].len &&
                    nodes[k].addr + nodes[k].len > nodes[i].addr;
        }
        got = nxl__rtree_insert_excl(&t, &nodes[i]);
        XT_ASSERT_EQ(got != NULL, want);
        if (got == NULL) {
            in[i] = 1;
            added++;
        } else {
            XT_ASSERT(got->dev == nodes[i].dev &&
                      got->addr < nodes[i].addr + nodes[i].len &&
                      got->addr + got->len > nodes[i].addr);
        }
        if (step % 100 == 0) {
            XT_ASSERT_EQ(nxl__rtree_check(&t), 0);
        }
    }
    XT_ASSERT_EQ(nxl__rtree_check(&t), 0);
    XT_ASSERT(added > 1000);
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
        {"rtree_random", t_rtree_random},
        {"rtree_excl", t_rtree_excl},
        {"xfer_make_merges", t_xfer_make_merges},
        {NULL, NULL},
    },
};
