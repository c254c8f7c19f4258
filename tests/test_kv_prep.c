/*
 * test_kv_prep.c - the transfer context's prepared lists (src/kv/prep.c):
 * the NIXL strategies prepare each layout side once and make transfers
 * from index arrays. Two agents of one process over SHM, as in kv_xfer.
 *
 * Cases: lists are reused across transfers, directions and layer ranges
 * (the context's count of prepared lists, nxl__kv_prep_made, stays put),
 * and runs that collapse go without them;
 * a peer whose metadata was invalidated or reloaded between two transfers
 * (the stale list is prepared again and the bytes arrive); layouts at the
 * same addresses with another geometry, and made again after a
 * re-registration (no wrong entry is reused); a layout
 * registered only in part (the per-transfer path, errors as before); the
 * cache's bound (least recently used lists go).
 *
 * Data are checked with Sequential fills and XXH3 checksums by position.
 */
#include "harness.h"
#include "xt_kv.h"

#include <nxl/nxl_kv.h>

#include "kv/ctx.h"

#include <stdlib.h>
#include <string.h>

#define SYS NXL_KV_SYSTEM
#define FC NXL_KV_FULLY_CONTIGUOUS
#define LS NXL_KV_LAYER_SEPARATE

#define KP_CHECK(call)                                                         \
    do {                                                                       \
        if ((call) != 0)                                                       \
            return 1;                                                          \
    } while (0)

/* The two agents, A (with the context) and B (the peer). */
typedef struct kp_pair {
    nxl_kv_agent_t *a, *b;
    nxl_kv_ctx_t *ctx;
} kp_pair;

/* kp_open makes both agents and A's context (B's metadata is loaded by
 * the case, once B's memory is registered). */
static int
kp_open(kp_pair *p)
{
    KP_CHECK(xt_kv_shm_agent("kp-A", &p->a));
    KP_CHECK(xt_kv_shm_agent("kp-B", &p->b));
    XT_ASSERT_OK(nxl_kv_ctx_create(p->a, NULL, &p->ctx));
    return 0;
}

static void
kp_close(kp_pair *p)
{
    nxl_kv_ctx_destroy(p->ctx);
    nxl_kv_agent_destroy(p->b);
    nxl_kv_agent_destroy(p->a);
}

/* Reuse: one list per (layout, side, granularity), whatever the ids, the
 * direction (NixlWrite's local list serves NixlReadFlipped's destination)
 * or the layer range (every partial range shares the per-layer lists);
 * layouts of other shapes get lists of the granularity both sides hold
 * contiguously. */
static int
t_reuse(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(8);
    size_t all[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    size_t s1[] = {0, 1, 2}, d1[] = {5, 6, 7}, s2[] = {3, 4}, d2[] = {0, 1};
    size_t s3[] = {5}, d3[] = {2}, s4[] = {6, 7}, d4[] = {3, 4};
    size_t d5[] = {2, 3, 4};
    nxl_kv_layout_t *la, *lb, *vb, *ls0, *ls1;
    nxl_kv_opts_t o;
    kp_pair p;

    KP_CHECK(kp_open(&p));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, SYS, p.a, &la));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, SYS, p.b, &lb));
    XT_ASSERT_OK(xt_kv_layout(&c, LS, 0, SYS, p.a, &ls0));
    XT_ASSERT_OK(xt_kv_layout(&c, LS, 1, SYS, p.a, &ls1));
    KP_CHECK(xt_kv_md_to(p.b, p.a));
    KP_CHECK(xt_kv_view(lb, &vb));
    XT_ASSERT_OK(nxl_kv_fill_blocks(la, all, 8, NXL_KV_FILL_SEQUENTIAL, 0));
    XT_ASSERT_OK(nxl_kv_fill_blocks(ls0, all, 8, NXL_KV_FILL_SEQUENTIAL, 0));
    XT_ASSERT_OK(nxl_kv_fill_blocks(ls1, all, 8, NXL_KV_FILL_SEQUENTIAL, 0));
    XT_ASSERT_EQ(nxl__kv_prep_made(p.ctx), 0);

    /* NixlWrite, whole blocks: A's and B's block lists. */
    XT_ASSERT_OK(xt_kv_run(p.ctx, la, s1, vb, d1, 3, NULL));
    KP_CHECK(xt_kv_same(la, s1, lb, d1, 3, 0, 0));
    XT_ASSERT_EQ(nxl__kv_prep_made(p.ctx), 2);
    XT_ASSERT_OK(xt_kv_run(p.ctx, la, s2, vb, d2, 2, NULL));
    KP_CHECK(xt_kv_same(la, s2, lb, d2, 2, 0, 0));
    XT_ASSERT_EQ(nxl__kv_prep_made(p.ctx), 2);

    /* Consecutive ids that merge into one run (8 blocks, one descriptor)
     * are cheaper to describe by that run: their own lists, no prep. */
    XT_ASSERT_OK(xt_kv_run(p.ctx, la, all, vb, all, 8, NULL));
    KP_CHECK(xt_kv_same(la, all, lb, all, 8, 0, 0));
    XT_ASSERT_EQ(nxl__kv_prep_made(p.ctx), 2);

    /* A partial layer range: per-layer lists, shared by every range. */
    nxl_kv_opts_init(&o);
    o.layer_begin = 1;
    o.layer_end = 2;
    XT_ASSERT_OK(xt_kv_run(p.ctx, la, s3, vb, d3, 1, &o));
    KP_CHECK(xt_kv_same(la, s3, lb, d3, 1, 1, 2));
    XT_ASSERT_EQ(nxl__kv_prep_made(p.ctx), 4);
    o.layer_begin = 0;
    o.layer_end = 1;
    XT_ASSERT_OK(xt_kv_run(p.ctx, la, s3, vb, d3, 1, &o));
    KP_CHECK(xt_kv_same(la, s3, lb, d3, 1, 0, 2));
    XT_ASSERT_EQ(nxl__kv_prep_made(p.ctx), 4);

    /* NixlReadFlipped, B's blocks into A's: the same two block lists. */
    XT_ASSERT_OK(xt_kv_run(p.ctx, vb, d1, la, s4, 2, NULL));
    KP_CHECK(xt_kv_same(lb, d1, la, s4, 2, 0, 0));
    XT_ASSERT_EQ(nxl__kv_prep_made(p.ctx), 4);

    /* Layer-separate, block first: layers are contiguous, blocks not, so
     * per-layer lists (B's exists already). Outer first: per-region lists
     * on both sides. */
    XT_ASSERT_OK(xt_kv_run(p.ctx, ls0, s2, vb, d4, 2, NULL));
    KP_CHECK(xt_kv_same(ls0, s2, lb, d4, 2, 0, 0));
    XT_ASSERT_EQ(nxl__kv_prep_made(p.ctx), 5);
    XT_ASSERT_OK(xt_kv_run(p.ctx, ls1, s1, vb, d5, 3, NULL));
    KP_CHECK(xt_kv_same(ls1, s1, lb, d5, 3, 0, 0));
    XT_ASSERT_EQ(nxl__kv_prep_made(p.ctx), 7);
    XT_ASSERT_OK(xt_kv_run(p.ctx, vb, d4, ls1, s4, 2, NULL));
    KP_CHECK(xt_kv_same(lb, d4, ls1, s4, 2, 0, 0));
    XT_ASSERT_EQ(nxl__kv_prep_made(p.ctx), 7);

    nxl_kv_layout_destroy(vb);
    nxl_kv_layout_destroy(ls1);
    nxl_kv_layout_destroy(ls0);
    nxl_kv_layout_destroy(lb);
    nxl_kv_layout_destroy(la);
    kp_close(&p);
    return 0;
}

/* A peer reloaded between two transfers: the cached list against it is
 * stale (core refuses it), so the context prepares both lists again and
 * retries, and the bytes arrive. Invalidated and not reloaded, the
 * transfer fails as without the cache. */
static int
t_peer_reload(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(8);
    size_t all[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    size_t s1[] = {0, 1}, d1[] = {2, 3}, s2[] = {4, 5}, d2[] = {0, 1};
    size_t s3[] = {6}, d3[] = {7};
    nxl_kv_layout_t *la, *lb, *vb;
    uint64_t made;
    kp_pair p;

    KP_CHECK(kp_open(&p));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, SYS, p.a, &la));
    XT_ASSERT_OK(xt_kv_layout(&c, LS, 0, SYS, p.b, &lb));
    KP_CHECK(xt_kv_md_to(p.b, p.a));
    KP_CHECK(xt_kv_view(lb, &vb));
    XT_ASSERT_OK(nxl_kv_fill_blocks(la, all, 8, NXL_KV_FILL_SEQUENTIAL, 0));
    XT_ASSERT_OK(xt_kv_run(p.ctx, la, s1, vb, d1, 2, NULL));
    KP_CHECK(xt_kv_same(la, s1, lb, d1, 2, 0, 0));
    XT_ASSERT_EQ(nxl__kv_prep_made(p.ctx), 2);

    /* Invalidated and loaded again: a new generation of kp-B. */
    XT_ASSERT_OK(nxl_md_invalidate(nxl_kv_agent_raw(p.a), "kp-B"));
    KP_CHECK(xt_kv_md_to(p.b, p.a));
    XT_ASSERT_OK(xt_kv_run(p.ctx, la, s2, vb, d2, 2, NULL));
    KP_CHECK(xt_kv_same(la, s2, lb, d2, 2, 0, 0));
    XT_ASSERT_EQ(nxl__kv_prep_made(p.ctx), 4);
    XT_ASSERT_OK(xt_kv_run(p.ctx, la, s3, vb, d3, 1, NULL));
    KP_CHECK(xt_kv_same(la, s3, lb, d3, 1, 0, 0));
    XT_ASSERT_EQ(nxl__kv_prep_made(p.ctx), 4);

    /* Invalidated only: NOT_FOUND, as the per-transfer lists gave. */
    XT_ASSERT_OK(nxl_md_invalidate(nxl_kv_agent_raw(p.a), "kp-B"));
    XT_ASSERT_STATUS(xt_kv_run(p.ctx, la, s3, vb, d3, 1, NULL),
                     NXL_ERR_NOT_FOUND);
    made = nxl__kv_prep_made(p.ctx);
    KP_CHECK(xt_kv_md_to(p.b, p.a));
    XT_ASSERT_OK(xt_kv_run(p.ctx, vb, d1, la, s3, 1, NULL));
    KP_CHECK(xt_kv_same(lb, d1, la, s3, 1, 0, 0));
    XT_ASSERT(nxl__kv_prep_made(p.ctx) > made);

    nxl_kv_layout_destroy(vb);
    nxl_kv_layout_destroy(lb);
    nxl_kv_layout_destroy(la);
    kp_close(&p);
    return 0;
}

/* kp_fc_over lays cfg over storage s as a fully contiguous layout owned by
 * agent name (NULL: local), and for a peer's also its view. */
static int
kp_fc_over(const nxl_kv_layout_config_t *cfg, nxl_kv_storage_t *s,
           const char *name, nxl_kv_layout_t **l_p, nxl_kv_layout_t **v_p)
{
    XT_ASSERT_OK(nxl_kv_layout_fc(cfg, s, l_p));
    if (name != NULL) {
        XT_ASSERT_OK(nxl_kv_layout_set_agent(*l_p, name));
        KP_CHECK(xt_kv_view(*l_p, v_p));
    }
    return 0;
}

/* Layouts destroyed and made again over the same memory. First at the
 * very same layout addresses with another geometry, whose block b lies
 * elsewhere: a list found by the layout's pointer would move the wrong
 * bytes, which the checks see. The allocator does not promise to hand a
 * freed layout's address to the next one, so the case makes that happen
 * itself: the layouts the context is given are two caller-owned slots,
 * holding one layout and then the other. Then destroyed and made again
 * with the same geometry over memory deregistered and registered anew:
 * the lists are found, stale, and prepared again. */
static int
t_same_address(void)
{
    static struct nxl_kv_layout slot_a, slot_v;
    nxl_kv_layout_config_t c1 = xt_kv_cfg(8), c2 = xt_kv_cfg(16);
    size_t all[16], s1[] = {0, 1}, d1[] = {2, 3}, s2[] = {4, 5};
    size_t d2[] = {6, 7}, z[] = {15, 15, 15, 15}, far[] = {4, 5, 6, 7};
    nxl_kv_layout_t *la1, *lb1, *vb1, *la, *lb, *vb;
    nxl_kv_storage_t *sa, *sb;
    kp_pair p;
    size_t i;

    for (i = 0; i < 16; i++) {
        all[i] = i;
    }
    c2.num_layers = 1; /* blocks of 8 KiB over the same 128 KiB */
    KP_CHECK(kp_open(&p));
    XT_ASSERT_OK(
        nxl_kv_storage_alloc((nxl_kv_loc_t){SYS, 0}, 8 * XT_KV_BLOCK, &sa));
    XT_ASSERT_OK(
        nxl_kv_storage_alloc((nxl_kv_loc_t){SYS, 0}, 8 * XT_KV_BLOCK, &sb));
    XT_ASSERT_OK(nxl_kv_storage_register(sa, p.a));
    XT_ASSERT_OK(nxl_kv_storage_register(sb, p.b));
    KP_CHECK(xt_kv_md_to(p.b, p.a));

    KP_CHECK(kp_fc_over(&c1, sa, NULL, &la1, NULL));
    KP_CHECK(kp_fc_over(&c1, sb, "kp-B", &lb1, &vb1));
    XT_ASSERT_OK(nxl_kv_fill_blocks(la1, all, 8, NXL_KV_FILL_SEQUENTIAL, 0));
    XT_ASSERT_OK(nxl_kv_fill_blocks(lb1, all, 8, NXL_KV_FILL_CONSTANT, 0));
    slot_a = *la1;
    slot_v = *vb1;
    XT_ASSERT_OK(xt_kv_run(p.ctx, &slot_a, s1, &slot_v, d1, 2, NULL));
    KP_CHECK(xt_kv_same(la1, s1, lb1, d1, 2, 0, 0));
    XT_ASSERT_EQ(nxl__kv_prep_made(p.ctx), 2);

    /* Another geometry in the same slots: new lists. */
    KP_CHECK(kp_fc_over(&c2, sa, NULL, &la, NULL));
    KP_CHECK(kp_fc_over(&c2, sb, "kp-B", &lb, &vb));
    XT_ASSERT_OK(nxl_kv_fill_blocks(la, all, 16, NXL_KV_FILL_SEQUENTIAL, 0));
    XT_ASSERT_OK(nxl_kv_fill_blocks(lb, all, 16, NXL_KV_FILL_CONSTANT, 0));
    slot_a = *la;
    slot_v = *vb;
    XT_ASSERT_OK(xt_kv_run(p.ctx, &slot_a, s1, &slot_v, d1, 2, NULL));
    KP_CHECK(xt_kv_same(la, s1, lb, d1, 2, 0, 0));
    /* Where the old geometry's blocks 2 and 3 were: untouched. */
    KP_CHECK(xt_kv_same(lb, z, lb, far, 4, 0, 0));
    XT_ASSERT_EQ(nxl__kv_prep_made(p.ctx), 4);
    nxl_kv_layout_destroy(vb1);
    nxl_kv_layout_destroy(lb1);
    nxl_kv_layout_destroy(la1);
    nxl_kv_layout_destroy(vb);
    nxl_kv_layout_destroy(lb);
    nxl_kv_layout_destroy(la);

    /* The same geometry again, over memory registered anew on both sides
     * (B's metadata reloaded): the cached lists match by key but hold
     * dead registrations; the transfer prepares them again. */
    XT_ASSERT_OK(nxl_kv_storage_deregister(sa));
    XT_ASSERT_OK(nxl_kv_storage_register(sa, p.a));
    XT_ASSERT_OK(nxl_kv_storage_deregister(sb));
    XT_ASSERT_OK(nxl_kv_storage_register(sb, p.b));
    KP_CHECK(xt_kv_md_to(p.b, p.a));
    KP_CHECK(kp_fc_over(&c2, sa, NULL, &la, NULL));
    KP_CHECK(kp_fc_over(&c2, sb, "kp-B", &lb, &vb));
    XT_ASSERT_OK(xt_kv_run(p.ctx, la, s2, vb, d2, 2, NULL));
    KP_CHECK(xt_kv_same(la, s2, lb, d2, 2, 0, 0));
    /* SHM gives every registration a new generation, so B's reloaded
     * region supersedes the old one and both lists are made again. */
    XT_ASSERT_EQ(nxl__kv_prep_made(p.ctx), 6);

    nxl_kv_layout_destroy(vb);
    nxl_kv_layout_destroy(lb);
    nxl_kv_layout_destroy(la);
    nxl_kv_storage_destroy(sb);
    nxl_kv_storage_destroy(sa);
    kp_close(&p);
    return 0;
}

/* A layout registered only in part cannot be prepared whole: its
 * transfers take the per-transfer lists, so what is registered moves and
 * what is not fails as it always did. */
static int
t_partial_registration(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(8);
    size_t all[8] = {0, 1, 2, 3, 4, 5, 6, 7}, s1[] = {0, 1, 2, 3};
    size_t d1[] = {4, 5, 6, 7}, s2[] = {6}, d2[] = {0};
    nxl_kv_storage_t *big, *half;
    nxl_kv_layout_t *la, *lb, *vb;
    kp_pair p;

    KP_CHECK(kp_open(&p));
    XT_ASSERT_OK(
        nxl_kv_storage_alloc((nxl_kv_loc_t){SYS, 0}, 8 * XT_KV_BLOCK, &big));
    XT_ASSERT_OK(nxl_kv_storage_wrap((nxl_kv_loc_t){SYS, 0},
                                     nxl_kv_storage_addr(big), 4 * XT_KV_BLOCK,
                                     &half));
    XT_ASSERT_OK(nxl_kv_storage_register(half, p.a));
    XT_ASSERT_OK(nxl_kv_layout_fc(&c, big, &la));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, SYS, p.b, &lb));
    KP_CHECK(xt_kv_md_to(p.b, p.a));
    KP_CHECK(xt_kv_view(lb, &vb));
    XT_ASSERT_OK(nxl_kv_fill_blocks(la, all, 8, NXL_KV_FILL_SEQUENTIAL, 0));
    XT_ASSERT_OK(xt_kv_run(p.ctx, la, s1, vb, d1, 4, NULL));
    KP_CHECK(xt_kv_same(la, s1, lb, d1, 4, 0, 0));
    XT_ASSERT_EQ(nxl__kv_prep_made(p.ctx), 0);
    XT_ASSERT_STATUS(xt_kv_run(p.ctx, la, s2, vb, d2, 1, NULL),
                     NXL_ERR_NOT_FOUND);

    nxl_kv_layout_destroy(vb);
    nxl_kv_layout_destroy(lb);
    nxl_kv_layout_destroy(la);
    nxl_kv_storage_destroy(half);
    nxl_kv_storage_destroy(big);
    kp_close(&p);
    return 0;
}

#define KP_MANY (NXL__KV_PREP_ENTRIES + 8)

/* The cache's bound: transfers into more peer layouts than it holds keep
 * it at NXL__KV_PREP_ENTRIES lists; the least recently used go (the
 * first peer layout's list is prepared again), the one used every time
 * stays. */
static int
t_bound(void)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(2);
    size_t zero[] = {0}, one[] = {1}, i;
    nxl_kv_layout_t *la, *lb[KP_MANY], *vb[KP_MANY];
    uint64_t made;
    kp_pair p;

    KP_CHECK(kp_open(&p));
    XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, SYS, p.a, &la));
    for (i = 0; i < KP_MANY; i++) {
        XT_ASSERT_OK(xt_kv_layout(&c, FC, 0, SYS, p.b, &lb[i]));
    }
    KP_CHECK(xt_kv_md_to(p.b, p.a));
    for (i = 0; i < KP_MANY; i++) {
        KP_CHECK(xt_kv_view(lb[i], &vb[i]));
    }
    XT_ASSERT_OK(nxl_kv_fill_blocks(la, zero, 1, NXL_KV_FILL_SEQUENTIAL, 0));
    for (i = 0; i < KP_MANY; i++) {
        XT_ASSERT_OK(xt_kv_run(p.ctx, la, zero, vb[i], one, 1, NULL));
        KP_CHECK(xt_kv_same(la, zero, lb[i], one, 1, 0, 0));
        XT_ASSERT_EQ(nxl__kv_prep_made(p.ctx), i + 2);
        XT_ASSERT(p.ctx->preps.n <= NXL__KV_PREP_ENTRIES);
    }
    XT_ASSERT_EQ(p.ctx->preps.n, NXL__KV_PREP_ENTRIES);
    made = nxl__kv_prep_made(p.ctx);
    XT_ASSERT_OK(xt_kv_run(p.ctx, la, zero, vb[0], zero, 1, NULL));
    KP_CHECK(xt_kv_same(la, zero, lb[0], zero, 1, 0, 0));
    XT_ASSERT_EQ(nxl__kv_prep_made(p.ctx), made + 1);

    for (i = 0; i < KP_MANY; i++) {
        nxl_kv_layout_destroy(vb[i]);
        nxl_kv_layout_destroy(lb[i]);
    }
    nxl_kv_layout_destroy(la);
    kp_close(&p);
    return 0;
}

const xt_suite xt_suite_kv_prep = {
    .name = "kv_prep",
    .cases =
        (const xt_case[]){
            {"reuse", t_reuse},
            {"peer_reload", t_peer_reload},
            {"same_address", t_same_address},
            {"partial_registration", t_partial_registration},
            {"bound", t_bound},
            {NULL, NULL},
        },
};
