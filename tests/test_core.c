/* test_core.c - core internals: the interval index, exported symbols, and
 * descriptor merging in nxl_xfer_make (loopback, first built-in backend
 * with NXL_CAP_LOCAL). */
#include "core/core.h"
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

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
    nxl__pools_t *ps;

    /* Elements and blocks from a pool set, as the agent's are. */
    XT_ASSERT_OK(nxl__pools_create(0, &ps));
    nxl__index_init(&ix, sizeof(nxl__region_t), ps);
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
        XT_ASSERT(
            a->desc.dev_id < b->desc.dev_id ||
            (a->desc.dev_id == b->desc.dev_id && a->desc.addr < b->desc.addr));
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
    if (nxl__pools_enabled()) {
        nxl__pools_stats_t st;

        nxl__pools_stats(ps, &st);
        XT_ASSERT_EQ(st.live, 0);
    }
    nxl__pools_destroy(ps);
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

    nxl__index_init(&ix, sizeof(nxl__region_t), NULL);
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
    XT_ASSERT_EQ(
        ((nxl__region_t *)nxl__index_find_exact(&ix, &same.desc))->desc.len,
        50);
    XT_ASSERT_EQ(
        ((nxl__region_t *)nxl__index_find_exact(&ix, &big.desc))->desc.len,
        1000);
    XT_ASSERT(nxl__index_find_overlap(&ix, &(nxl_desc_t){1099, 1, 0}) != NULL);
    XT_ASSERT(nxl__index_find_overlap(&ix, &(nxl_desc_t){1100, 9, 0}) == NULL);
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

/* The B+tree against a brute-force list: 20,000 random inserts and
 * removals of (possibly overlapping, possibly equal but for tie) ranges
 * on 3 devices near both ends of the address space; after every 50 steps
 * the tree is checked (order, separators, fill, levels, links, maxima,
 * back pointers), and exact, cover and overlap queries agree with the
 * list. At the end the tree is emptied the way the connector's destroy
 * does it, removing its first node until none is left, in key order. */
static int
btree_random_with(nxl__pools_t *ps)
{
    enum { CAP = 600, STEPS = 20000 };
    static nxl__bnode_t nodes[CAP];
    static int in[CAP];
    nxl__btree_t t;
    nxl__bnode_t *got, *prev;
    uint64_t s = 0x1234567887654321ull, dev, addr, len, base;
    int step, i, want;
    unsigned maxlev = 0;

    nxl__btree_init_pools(&t, ps);
    for (step = 0; step < STEPS; step++) {
        i = (int)(rt_rand(&s) % CAP);
        if (in[i]) {
            nxl__btree_remove(&t, &nodes[i]);
            XT_ASSERT(nodes[i].leaf == NULL);
            in[i] = 0;
        } else {
            base = (rt_rand(&s) & 1) ? 0 : UINT64_MAX - 5000;
            nodes[i].dev = rt_rand(&s) % 3;
            nodes[i].addr = base + rt_rand(&s) % 4000;
            nodes[i].len = 1 + rt_rand(&s) % 300;
            nodes[i].tie = rt_rand(&s) % 2;
            got = NULL;
            if (nxl__btree_insert(&t, &nodes[i], false, &got) == NXL_OK) {
                in[i] = 1;
            } else {
                XT_ASSERT(got != NULL && got != &nodes[i]);
                XT_ASSERT(got->dev == nodes[i].dev &&
                          got->addr == nodes[i].addr &&
                          got->len == nodes[i].len && got->tie == nodes[i].tie);
                XT_ASSERT(nodes[i].leaf == NULL);
            }
        }
        maxlev = t.levels > maxlev ? t.levels : maxlev;
        if (step % 50 != 0 && step < STEPS - 1) {
            continue;
        }
        XT_ASSERT_EQ(nxl__btree_check(&t), 0);
        for (int q = 0; q < 40; q++) {
            base = (rt_rand(&s) & 1) ? 0 : UINT64_MAX - 5000;
            dev = rt_rand(&s) % 3;
            addr = base + rt_rand(&s) % 4300;
            len = 1 + rt_rand(&s) % 200;
            want = 0;
            for (int k = 0; k < CAP; k++) {
                want |= in[k] && nodes[k].dev == dev && nodes[k].addr <= addr &&
                        nodes[k].addr + nodes[k].len >= addr + len;
            }
            got = nxl__btree_cover(&t, dev, addr, len);
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
            got = nxl__btree_overlap(&t, dev, addr, len);
            XT_ASSERT_EQ(got != NULL, want);
            if (got != NULL) {
                XT_ASSERT(got->dev == dev && got->addr < addr + len &&
                          got->addr + got->len > addr);
            }
            i = (int)(rt_rand(&s) % CAP);
            got = nxl__btree_find(&t, nodes[i].dev, nodes[i].addr, nodes[i].len,
                                  nodes[i].tie);
            if (in[i]) {
                XT_ASSERT(got == &nodes[i]);
            }
        }
    }
    XT_ASSERT(maxlev >= 2); /* splits and merges of inner blocks ran */
    for (prev = NULL; (got = nxl__btree_first(&t)) != NULL; prev = got) {
        XT_ASSERT(prev == NULL || prev->dev < got->dev ||
                  (prev->dev == got->dev && prev->addr <= got->addr));
        i = (int)(got - nodes);
        XT_ASSERT(in[i]);
        in[i] = 0;
        nxl__btree_remove(&t, got);
        if (t.count % 64 == 0) {
            XT_ASSERT_EQ(nxl__btree_check(&t), 0);
        }
    }
    for (i = 0; i < CAP; i++) {
        XT_ASSERT(!in[i]);
    }
    XT_ASSERT(t.top == NULL && t.count == 0);
    nxl__btree_fini(&t);
    XT_ASSERT(nxl__btree_first(&t) == NULL && t.count == 0);
    return 0;
}

static int
t_btree_random(void)
{
    return btree_random_with(NULL);
}

/* btree_on_pools runs fn with a fresh unlocked pool set and checks that
 * nothing of the set is still allocated afterwards. */
static int
btree_on_pools(int (*fn)(nxl__pools_t *))
{
    nxl__pools_stats_t st;
    nxl__pools_t *ps;

    XT_ASSERT_OK(nxl__pools_create(0, &ps));
    XT_ASSERT_EQ(fn(ps), 0);
    nxl__pools_stats(ps, &st);
    XT_ASSERT_EQ(st.live, 0);
    nxl__pools_destroy(ps);
    return 0;
}

/* The same with the tree's blocks from a pool set (the agent's indexes):
 * every block is given back by the time the tree is empty. */
static int
t_btree_random_pools(void)
{
    return btree_on_pools(btree_random_with);
}

/* The single-descent exclusive insert: 20,000 random inserts and
 * removals, each insert refused exactly when a brute-force scan finds an
 * overlap (the node in the way named, the refused node left out of the
 * tree, so removing it is a no-op), the tree checked as it goes. */
static int
t_btree_excl(void)
{
    enum { CAP = 400, STEPS = 20000 };
    static nxl__bnode_t nodes[CAP];
    static int in[CAP];
    nxl__btree_t t;
    nxl__bnode_t *got;
    uint64_t s = 0xfeedfacecafebeefull;
    int step, i, k, want, added = 0, refused = 0;
    nxl_status_t st;

    nxl__btree_init(&t);
    for (step = 0; step < STEPS; step++) {
        i = (int)(rt_rand(&s) % CAP);
        if (in[i]) {
            nxl__btree_remove(&t, &nodes[i]);
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
        got = NULL;
        st = nxl__btree_insert(&t, &nodes[i], true, &got);
        XT_ASSERT_EQ(st != NXL_OK, want);
        if (st == NXL_OK) {
            in[i] = 1;
            added++;
        } else {
            XT_ASSERT_EQ(st, NXL_ERR_NOT_ALLOWED);
            XT_ASSERT(got->dev == nodes[i].dev &&
                      got->addr < nodes[i].addr + nodes[i].len &&
                      got->addr + got->len > nodes[i].addr);
            nxl__btree_remove(&t, &nodes[i]); /* not in: no-op */
            refused++;
        }
        if (step % 100 == 0) {
            XT_ASSERT_EQ(nxl__btree_check(&t), 0);
        }
    }
    XT_ASSERT_EQ(nxl__btree_check(&t), 0);
    XT_ASSERT(added > 1000 && refused > 1000);
    nxl__btree_fini(&t);
    return 0;
}

/* bt_order fills order with 0..n-1 ascending (how 0), descending (1) or
 * shuffled (2). */
static void
bt_order(size_t *order, size_t n, int how, uint64_t *s)
{
    size_t i, j, tmp;

    for (i = 0; i < n; i++) {
        order[i] = how == 1 ? n - 1 - i : i;
    }
    for (i = n; how == 2 && i > 1; i--) {
        j = (size_t)(rt_rand(s) % i);
        tmp = order[i - 1];
        order[i - 1] = order[j];
        order[j] = tmp;
    }
}

/* Many ranges inserted in ascending, descending and shuffled order
 * (levels 3 and more), then removed in shuffled, ascending or descending
 * order (so blocks merge, and borrow from fuller neighbours on either
 * side): every step keeps the tree sound, each node is found, walks come
 * out in order, and lookups between the ranges find nothing. */
static int
t_btree_bulk(void)
{
    enum { N = 20000 };
    static const int how[][2] = {{0, 2}, {1, 0}, {2, 0}, {2, 1}};
    static nxl__bnode_t nodes[N];
    static size_t order[N];
    nxl__btree_t t;
    nxl__bnode_t *got, *n;
    uint64_t s = 0x5eed5eed5eedull;
    size_t i, pass;

    for (pass = 0; pass < sizeof(how) / sizeof(how[0]); pass++) {
        nxl__btree_init(&t);
        bt_order(order, N, how[pass][0], &s);
        for (i = 0; i < N; i++) {
            n = &nodes[order[i]];
            *n = (nxl__bnode_t){
                .dev = order[i] % 2, .addr = order[i] * 100, .len = 50};
            XT_ASSERT_OK(nxl__btree_insert(&t, n, true, &got));
            if (i % 997 == 0) {
                XT_ASSERT_EQ(nxl__btree_check(&t), 0);
            }
        }
        XT_ASSERT_EQ(nxl__btree_check(&t), 0);
        XT_ASSERT(t.levels >= 3);
        for (i = 0, n = nxl__btree_first(&t); n != NULL;
             n = nxl__btree_next(n), i++) {
            /* dev 0 first (even indexes), then dev 1 */
            XT_ASSERT_EQ(n - nodes, i < N / 2 ? 2 * i : 2 * (i - N / 2) + 1);
        }
        XT_ASSERT_EQ(i, N);
        for (i = 0; i < N; i += 7) {
            XT_ASSERT(nxl__btree_cover(&t, i % 2, i * 100 + 10, 40) ==
                      &nodes[i]);
            XT_ASSERT(nxl__btree_cover(&t, i % 2, i * 100 + 10, 41) == NULL);
            XT_ASSERT(nxl__btree_overlap(&t, i % 2, i * 100 + 50, 50) == NULL);
            XT_ASSERT(nxl__btree_overlap(&t, (i + 1) % 2, i * 100, 50) == NULL);
        }
        bt_order(order, N, how[pass][1], &s);
        for (i = 0; i < N; i++) {
            n = &nodes[order[i]];
            XT_ASSERT(nxl__btree_find(&t, n->dev, n->addr, n->len, 0) == n);
            nxl__btree_remove(&t, n);
            XT_ASSERT(nxl__btree_find(&t, n->dev, n->addr, n->len, 0) == NULL);
            if (i % 997 == 0 || i + 10 > N) {
                XT_ASSERT_EQ(nxl__btree_check(&t), 0);
            }
        }
        XT_ASSERT(t.top == NULL && t.count == 0 && t.levels == 0);
    }
    return 0;
}

/* Equal ranges told apart by tie (TCP and SHM keep duplicates so): they
 * sit in tie order across several leaves, each is found and removed by
 * itself; an exclusive insert of the same range is refused. */
static int
t_btree_ties(void)
{
    enum { N = 100 };
    static nxl__bnode_t nodes[N], other;
    nxl__btree_t t;
    nxl__bnode_t *got, *n;
    uint64_t i;

    nxl__btree_init(&t);
    for (i = 0; i < N; i++) {
        nodes[i] =
            (nxl__bnode_t){.addr = 4096, .len = 4096, .tie = (i * 37) % N};
        XT_ASSERT_OK(nxl__btree_insert(&t, &nodes[i], false, &got));
    }
    XT_ASSERT_EQ(nxl__btree_insert(&t, &nodes[5], false, &got),
                 NXL_ERR_NOT_ALLOWED);
    XT_ASSERT(got == &nodes[5]);
    other = (nxl__bnode_t){.addr = 4096, .len = 4096, .tie = 1000};
    XT_ASSERT_EQ(nxl__btree_insert(&t, &other, true, &got),
                 NXL_ERR_NOT_ALLOWED);
    XT_ASSERT(got->addr == 4096 && got->len == 4096);
    XT_ASSERT_EQ(nxl__btree_check(&t), 0);
    XT_ASSERT(t.levels >= 1);
    for (i = 0, n = nxl__btree_first(&t); n != NULL;
         n = nxl__btree_next(n), i++) {
        XT_ASSERT_EQ(n->tie, i);
    }
    XT_ASSERT_EQ(i, N);
    for (i = 0; i < N; i++) {
        XT_ASSERT(nxl__btree_find(&t, 0, 4096, 4096, nodes[i].tie) ==
                  &nodes[i]);
    }
    XT_ASSERT(nxl__btree_cover(&t, 0, 5000, 100) != NULL);
    for (i = 0; i < N; i += 2) {
        nxl__btree_remove(&t, &nodes[i]);
    }
    XT_ASSERT_EQ(nxl__btree_check(&t), 0);
    for (i = 0; i < N; i++) {
        XT_ASSERT_EQ(nxl__btree_find(&t, 0, 4096, 4096, nodes[i].tie) ==
                         &nodes[i],
                     i % 2);
    }
    nxl__btree_fini(&t);
    return 0;
}

/* An insert that cannot allocate a block fails with NXL_ERR_NOMEM and
 * leaves the tree as it was (every allocation comes before any change). */
static int
btree_nomem_with(nxl__pools_t *ps)
{
    enum { N = 5000 };
    static nxl__bnode_t nodes[N];
    static int in[N];
    nxl__btree_t t;
    nxl__bnode_t *got;
    nxl_status_t st;
    size_t i, count = 0, failed = 0;

    nxl__btree_init_pools(&t, ps);
    nodes[0] = (nxl__bnode_t){.addr = 10, .len = 10};
    XT_ASSERT_OK(nxl__fault_set("alloc=1", 11));
    XT_ASSERT_EQ(nxl__btree_insert(&t, &nodes[0], false, &got), NXL_ERR_NOMEM);
    XT_ASSERT(t.top == NULL && t.count == 0 && nodes[0].leaf == NULL);
    XT_ASSERT_OK(nxl__fault_set("alloc=0.3", 11));
    for (i = 0; i < N; i++) {
        nodes[i] = (nxl__bnode_t){.addr = (i * 7919) % N * 10, .len = 10};
        st = nxl__btree_insert(&t, &nodes[i], true, &got);
        if (st == NXL_ERR_NOMEM) {
            failed++;
            XT_ASSERT(nodes[i].leaf == NULL);
            XT_ASSERT_EQ(t.count, count);
            XT_ASSERT(nxl__btree_find(&t, 0, nodes[i].addr, 10, 0) == NULL);
        } else {
            XT_ASSERT_OK(st);
            in[i] = 1;
            count++;
        }
        if (i % 50 == 0) {
            XT_ASSERT_EQ(nxl__btree_check(&t), 0);
        }
    }
    XT_ASSERT_OK(nxl__fault_set(NULL, 0));
    XT_ASSERT_EQ(nxl__btree_check(&t), 0);
    XT_ASSERT(failed > 20 && count > N / 2);
    for (i = 0; i < N; i++) {
        XT_ASSERT_EQ(nxl__btree_find(&t, 0, nodes[i].addr, 10, 0) != NULL,
                     in[i]);
        nxl__btree_remove(&t, &nodes[i]);
    }
    XT_ASSERT(t.top == NULL && t.count == 0);
    return 0;
}

static int
t_btree_nomem(void)
{
    return btree_nomem_with(NULL);
}

/* The same with blocks from a pool set: its allocations fail at the
 * fault-injection site too, and nothing stays allocated. */
static int
t_btree_nomem_pools(void)
{
    return btree_on_pools(btree_nomem_with);
}

/* The registration table through several growths: slots given back are
 * reused first with a new generation, a peer's view refuses a revoked
 * slot and accepts the live one, and the list of slots given back has
 * room for all of them (remove never allocates); a slot never handed out
 * is ignored. */
static int
t_regtab_churn(void)
{
    enum { N = 5000 };
    static uint32_t slot[N];
    static uint64_t gen[N];
    nxl__regtab_t t;
    nxl__regtab_view_t v;
    uint32_t s2;
    uint64_t g2;
    size_t i;

    XT_ASSERT_OK(nxl__regtab_init(&t, 0x1234));
    for (i = 0; i < N; i++) {
        XT_ASSERT_OK(
            nxl__regtab_add(&t, 0, 4096 * (i + 1), 4096, &slot[i], &gen[i]));
    }
    XT_ASSERT(t.cap >= N && t.free_cap >= t.cap);
    XT_ASSERT_OK(nxl__regtab_view_open(&v, dup(t.fd), 0x1234));
    XT_ASSERT(nxl__regtab_view_slot(&v, slot[N - 1], gen[N - 1], 0, 4096 * N,
                                    4096) != NULL);
    for (i = 0; i < N; i += 2) {
        nxl__regtab_remove(&t, slot[i]);
    }
    nxl__regtab_remove(&t, N + 100); /* never handed out: ignored */
    XT_ASSERT(t.nfree <= t.free_cap);
    XT_ASSERT(nxl__regtab_view_slot(&v, slot[0], gen[0], 0, 4096, 4096) ==
              NULL);
    XT_ASSERT(nxl__regtab_view_slot(&v, slot[1], gen[1], 0, 8192, 4096) !=
              NULL);
    /* A slot given back is taken again, with a generation never used. */
    XT_ASSERT_OK(nxl__regtab_add(&t, 0, 1 << 30, 4096, &s2, &g2));
    XT_ASSERT(s2 < N && g2 > gen[N - 1]);
    XT_ASSERT(nxl__regtab_view_slot(&v, s2, g2, 0, 1 << 30, 4096) != NULL);
    for (i = 1; i < N; i += 2) {
        nxl__regtab_remove(&t, slot[i]);
    }
    nxl__regtab_remove(&t, s2);
    XT_ASSERT_EQ(t.nfree, t.used);
    XT_ASSERT(t.nfree <= t.free_cap);
    nxl__regtab_view_close(&v);
    nxl__regtab_fini(&t);
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
    nxl_dlist_t sreg = {NXL_DRAM, &(nxl_desc_t){(uintptr_t)src, sizeof(src), 0},
                        1};
    nxl_dlist_t dreg = {NXL_DRAM, &(nxl_desc_t){(uintptr_t)dst, sizeof(dst), 0},
                        1};
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

/* --- record pools (util/pool.h) ----------------------------------------- */

/* pool_fill writes a pattern of seed over n bytes at p; pool_check
 * verifies it. */
static void
pool_fill(void *p, size_t n, unsigned seed)
{
    size_t i;

    for (i = 0; i < n; i++) {
        ((uint8_t *)p)[i] = (uint8_t)(seed * 31 + i);
    }
}

static int
pool_check(const void *p, size_t n, unsigned seed)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (((const uint8_t *)p)[i] != (uint8_t)(seed * 31 + i)) {
            return -1;
        }
    }
    return 0;
}

/* Every class: zeroed records of the asked size, 16-byte aligned and
 * line-aligned from 64 bytes (pooled builds), that do not overlap. */
static int
t_pool_classes(void)
{
    static const size_t sizes[] = {1,   16,  17,  33,  48,  49,   64,  65,
                                   100, 128, 200, 704, 960, 2047, 2048};
    enum { NS = sizeof(sizes) / sizeof(sizes[0]), PER = 3 };
    void *rec[NS][PER];
    nxl__pools_stats_t st;
    nxl__pools_t *ps;
    size_t i, j, k;

    XT_ASSERT_OK(nxl__pools_create(0, &ps));
    for (i = 0; i < NS; i++) {
        for (j = 0; j < PER; j++) {
            rec[i][j] = nxl__pools_alloc(ps, sizes[i], true);
            XT_ASSERT(rec[i][j] != NULL);
            XT_ASSERT_EQ((uintptr_t)rec[i][j] % 16, 0);
            if (nxl__pools_enabled() && sizes[i] >= 64) {
                XT_ASSERT_EQ((uintptr_t)rec[i][j] % 64, 0);
            }
            for (k = 0; k < sizes[i]; k++) {
                XT_ASSERT_EQ(((uint8_t *)rec[i][j])[k], 0);
            }
            pool_fill(rec[i][j], sizes[i], (unsigned)(i * PER + j));
        }
    }
    for (i = 0; i < NS; i++) {
        for (j = 0; j < PER; j++) {
            XT_ASSERT_EQ(
                pool_check(rec[i][j], sizes[i], (unsigned)(i * PER + j)), 0);
            nxl__pools_free(ps, rec[i][j]);
        }
    }
    nxl__pools_free(ps, NULL);
    nxl__pools_stats(ps, &st);
    XT_ASSERT_EQ(st.live, 0);
    nxl__pools_destroy(ps);
    nxl__pools_destroy(NULL);
    return 0;
}

/* A freed record is the next one handed out; a class's first chunks are
 * small (64, 64, 128, 256, 512 KiB) and the later ones 2 MiB, records
 * inside them; a chunk that empties is unmapped except one spare per
 * class, which the next allocation reuses, and an empty class keeps no
 * huge chunk. */
static int
t_pool_reuse_release(void)
{
    enum { N = 60000, SZ = 128 };
    static void *rec[N];
    static uint32_t order[N];
    nxl__pools_stats_t st;
    nxl__pools_t *ps;
    uint64_t s = 0x9e3779b97f4a7c15ull;
    uintptr_t base;
    size_t i, j;
    uint32_t t;
    void *a, *b;

    XT_SKIP_IF(!nxl__pools_enabled(), "records come from malloc here");
    XT_ASSERT_OK(nxl__pools_create(0, &ps));
    a = nxl__pools_alloc(ps, SZ, false);
    nxl__pools_free(ps, a);
    b = nxl__pools_alloc(ps, SZ, false);
    XT_ASSERT(a == b);
    nxl__pools_free(ps, b);
    nxl__pools_stats(ps, &st);
    XT_ASSERT_EQ(st.chunks, 1); /* the first, small, kept as the spare */
    XT_ASSERT_EQ(st.huge_chunks, 0);
    XT_ASSERT_EQ(st.mapped, NXL__POOL_SMALL);

    for (i = 0; i < N; i++) {
        rec[i] = nxl__pools_alloc(ps, SZ, false);
        XT_ASSERT(rec[i] != NULL);
        base = (uintptr_t)rec[i] & ~(uintptr_t)(NXL__POOL_CHUNK - 1);
        /* Inside the chunk (records never straddle two). */
        XT_ASSERT((uintptr_t)rec[i] + SZ <= base + NXL__POOL_CHUNK);
        *(size_t *)rec[i] = i;
        order[i] = (uint32_t)i;
    }
    nxl__pools_stats(ps, &st);
    XT_ASSERT_EQ(st.live, N);
    /* 1 MiB of small chunks holds 8,192 records of 128 bytes, 2 MiB
     * 16,384: 5 small + 4 huge chunks for 60,000. */
    XT_ASSERT_EQ(st.chunks, 9);
    XT_ASSERT_EQ(st.huge_chunks, 4);
    XT_ASSERT_EQ(st.mapped, NXL__POOL_SMALL_MAX + 4 * NXL__POOL_CHUNK);
    for (i = N; i-- > 1;) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        j = (size_t)((s >> 33) % (i + 1));
        t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (i = 0; i < N; i++) {
        XT_ASSERT_EQ(*(size_t *)rec[order[i]], order[i]);
        nxl__pools_free(ps, rec[order[i]]);
        if (i == N / 2) {
            nxl__pools_stats(ps, &st);
            XT_ASSERT_EQ(st.live, N - N / 2 - 1);
        }
    }
    nxl__pools_stats(ps, &st);
    XT_ASSERT_EQ(st.live, 0);
    XT_ASSERT(st.chunks <= 1 && st.huge_chunks == 0);
    XT_ASSERT(st.mapped <= NXL__POOL_SMALL_MAX);
    /* A loop of one allocation and one free at a huge chunk's edge keeps
     * that chunk as the spare: no mapping per step. */
    for (i = 0; i < 8192 + 16384; i++) {
        rec[i] = nxl__pools_alloc(ps, SZ, false);
        XT_ASSERT(rec[i] != NULL);
    }
    nxl__pools_stats(ps, &st);
    j = st.chunks;
    for (i = 0; i < 100; i++) {
        a = nxl__pools_alloc(ps, SZ, false);
        XT_ASSERT(a != NULL);
        nxl__pools_stats(ps, &st);
        XT_ASSERT_EQ(st.chunks, j + 1);
        nxl__pools_free(ps, a);
        nxl__pools_stats(ps, &st);
        XT_ASSERT_EQ(st.chunks, j + 1);
    }
    for (i = 0; i < 8192 + 16384; i++) {
        nxl__pools_free(ps, rec[i]);
    }
    nxl__pools_stats(ps, &st);
    XT_ASSERT(st.chunks <= 1 && st.huge_chunks == 0 && st.live == 0);
    nxl__pools_destroy(ps);
    return 0;
}

/* A record over NXL__POOL_MAX has a mapping of its own, zeroed, unmapped
 * by its free. */
static int
t_pool_large(void)
{
    nxl__pools_stats_t st;
    nxl__pools_t *ps;
    uint8_t *a, *b;
    size_t i;

    XT_ASSERT_OK(nxl__pools_create(0, &ps));
    a = nxl__pools_alloc(ps, 5000, true);
    b = nxl__pools_alloc(ps, (size_t)3 << 20, true);
    XT_ASSERT(a != NULL && b != NULL);
    for (i = 0; i < 5000; i++) {
        XT_ASSERT_EQ(a[i], 0);
    }
    XT_ASSERT_EQ(b[((size_t)3 << 20) - 1], 0);
    pool_fill(a, 5000, 1);
    memset(b, 0xab, (size_t)3 << 20);
    XT_ASSERT_EQ(pool_check(a, 5000, 1), 0);
    if (nxl__pools_enabled()) {
        nxl__pools_stats(ps, &st);
        XT_ASSERT_EQ(st.chunks, 2);
        XT_ASSERT_EQ(st.live, 2);
    }
    nxl__pools_free(ps, b);
    nxl__pools_free(ps, a);
    nxl__pools_stats(ps, &st);
    XT_ASSERT_EQ(st.chunks, 0);
    XT_ASSERT_EQ(st.live, 0);
    nxl__pools_destroy(ps);
    return 0;
}

/* 50,000 random allocations and frees of mixed sizes against a shadow:
 * no record is handed out twice or overwritten by another's. */
static int
t_pool_random(void)
{
    enum { SLOTS = 700, STEPS = 50000 };
    static void *rec[SLOTS];
    static size_t size[SLOTS];
    static const size_t sizes[] = {24, 80, 112, 144, 208, 704, 960, 3000};
    nxl__pools_stats_t st;
    nxl__pools_t *ps;
    uint64_t s = 42;
    size_t i, step, live = 0;

    XT_ASSERT_OK(nxl__pools_create(0, &ps));
    for (step = 0; step < STEPS; step++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        i = (size_t)((s >> 33) % SLOTS);
        if (rec[i] != NULL) {
            XT_ASSERT_EQ(pool_check(rec[i], size[i], (unsigned)i), 0);
            nxl__pools_free(ps, rec[i]);
            rec[i] = NULL;
            live--;
        } else {
            size[i] = sizes[(s >> 20) % (sizeof(sizes) / sizeof(sizes[0]))];
            rec[i] = nxl__pools_alloc(ps, size[i], (s >> 40) & 1);
            XT_ASSERT(rec[i] != NULL);
            pool_fill(rec[i], size[i], (unsigned)i);
            live++;
        }
    }
    if (nxl__pools_enabled()) {
        nxl__pools_stats(ps, &st);
        XT_ASSERT_EQ(st.live, live);
    }
    for (i = 0; i < SLOTS; i++) {
        if (rec[i] != NULL) {
            XT_ASSERT_EQ(pool_check(rec[i], size[i], (unsigned)i), 0);
            nxl__pools_free(ps, rec[i]);
        }
    }
    nxl__pools_stats(ps, &st);
    XT_ASSERT_EQ(st.live, 0);
    nxl__pools_destroy(ps);
    return 0;
}

struct pool_thr {
    nxl__pools_t *ps;
    unsigned id;
    int bad;
};

/* pool_thr_main allocates and frees records of one set from several
 * threads at once, each checking its own records' patterns. */
static void *
pool_thr_main(void *arg)
{
    enum { SLOTS = 300, STEPS = 40000 };
    struct pool_thr *t = arg;
    void *rec[SLOTS] = {0};
    uint64_t s = t->id + 1;
    unsigned i, step, seed;

    for (step = 0; step < STEPS && !t->bad; step++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        i = (unsigned)((s >> 33) % SLOTS);
        seed = t->id * SLOTS + i;
        if (rec[i] != NULL) {
            t->bad |= pool_check(rec[i], 200, seed) != 0;
            nxl__pools_free(t->ps, rec[i]);
            rec[i] = NULL;
        } else if ((rec[i] = nxl__pools_alloc(t->ps, 200, false)) != NULL) {
            pool_fill(rec[i], 200, seed);
        } else {
            t->bad = 1;
        }
    }
    for (i = 0; i < SLOTS; i++) {
        if (rec[i] != NULL) {
            t->bad |= pool_check(rec[i], 200, t->id * SLOTS + i) != 0;
            nxl__pools_free(t->ps, rec[i]);
        }
    }
    return NULL;
}

/* A locked set (a thread-safe backend's) under four threads at once. */
static int
t_pool_locked_threads(void)
{
    enum { NT = 4 };
    struct pool_thr t[NT];
    pthread_t tid[NT];
    nxl__pools_stats_t st;
    nxl__pools_t *ps;
    unsigned i;

    XT_ASSERT_OK(nxl__pools_create(NXL__POOLS_LOCKED, &ps));
    for (i = 0; i < NT; i++) {
        t[i] = (struct pool_thr){.ps = ps, .id = i};
        XT_ASSERT_EQ(pthread_create(&tid[i], NULL, pool_thr_main, &t[i]), 0);
    }
    for (i = 0; i < NT; i++) {
        pthread_join(tid[i], NULL);
        XT_ASSERT_EQ(t[i].bad, 0);
    }
    nxl__pools_stats(ps, &st);
    XT_ASSERT_EQ(st.live, 0);
    nxl__pools_destroy(ps);
    return 0;
}

/* An allocation fails (NULL) at fault injection's alloc site. */
static int
t_pool_fault(void)
{
    nxl__pools_t *ps;
    void *a;

    XT_ASSERT_OK(nxl__pools_create(0, &ps));
    XT_ASSERT_OK(nxl__fault_set("alloc=1", 3));
    a = nxl__pools_alloc(ps, 128, true);
    XT_ASSERT_OK(nxl__fault_set(NULL, 0));
    XT_ASSERT(a == NULL);
    a = nxl__pools_alloc(ps, 128, true);
    XT_ASSERT(a != NULL);
    nxl__pools_free(ps, a);
    nxl__pools_destroy(ps);
    return 0;
}

/* An agent with a few regions keeps their records in small chunks (4 KiB
 * pages): no 2 MiB chunk, at most a small chunk per record kind; so does
 * one with 1,000. Then 20,000 regions move it onto huge chunks, and
 * deregistering them gives every record and every huge chunk back. */
static int
t_pool_agent_idle(void)
{
    enum { N = 20000, B = 64 };
    static uint8_t buf[N * B];
    nxl_desc_t d[N];
    nxl_dlist_t l = {NXL_DRAM, d, 10};
    nxl__pools_stats_t st;
    nxl_agent_t *a;
    size_t i;
    int rc;

    XT_SKIP_IF(!nxl__pools_enabled(), "records come from malloc here");
    rc = loop_agent(&a);
    XT_SKIP_IF(rc == XT_SKIP, "no built-in backend with loopback");
    XT_ASSERT_EQ(rc, 0);
    for (i = 0; i < N; i++) {
        d[i] = (nxl_desc_t){(uintptr_t)buf + i * B, B, 0};
    }
    XT_ASSERT_OK(nxl_mem_register(a, &l, NULL));
    nxl__pools_stats(a->pools, &st);
    XT_ASSERT_EQ(st.live, 11); /* 10 region records, 1 leaf */
    XT_ASSERT_EQ(st.huge_chunks, 0);
    XT_ASSERT(st.chunks <= 2 && st.mapped <= 2 * NXL__POOL_SMALL);
    XT_ASSERT_OK(nxl_mem_deregister(a, &l, NULL));
    l.count = 1000;
    XT_ASSERT_OK(nxl_mem_register(a, &l, NULL));
    nxl__pools_stats(a->pools, &st);
    XT_ASSERT_EQ(st.huge_chunks, 0);
    XT_ASSERT_OK(nxl_mem_deregister(a, &l, NULL));
    l.count = N;
    XT_ASSERT_OK(nxl_mem_register(a, &l, NULL));
    nxl__pools_stats(a->pools, &st);
    XT_ASSERT(st.huge_chunks >= 1);
    XT_ASSERT(st.live > N);
    XT_ASSERT_OK(nxl_mem_deregister(a, &l, NULL));
    nxl__pools_stats(a->pools, &st);
    XT_ASSERT_EQ(st.live, 0);
    XT_ASSERT_EQ(st.huge_chunks, 0);
    nxl_agent_destroy(a);
    return 0;
}

const xt_suite xt_suite_core = {
    .name = "core",
    .cases =
        (const xt_case[]){
            {"exports_only_nxl", t_exports_only_nxl},
            {"index_cover", t_index_cover},
            {"index_overlap_exact_remove", t_index_overlap_exact_remove},
            {"btree_random", t_btree_random},
            {"btree_excl", t_btree_excl},
            {"btree_bulk", t_btree_bulk},
            {"btree_ties", t_btree_ties},
            {"btree_nomem", t_btree_nomem},
            {"btree_random_pools", t_btree_random_pools},
            {"btree_nomem_pools", t_btree_nomem_pools},
            {"pool_classes", t_pool_classes},
            {"pool_reuse_release", t_pool_reuse_release},
            {"pool_large", t_pool_large},
            {"pool_random", t_pool_random},
            {"pool_locked_threads", t_pool_locked_threads},
            {"pool_fault", t_pool_fault},
            {"pool_agent_idle", t_pool_agent_idle},
            {"regtab_churn", t_regtab_churn},
            {"xfer_make_merges", t_xfer_make_merges},
            {NULL, NULL},
        },
};
