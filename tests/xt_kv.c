/* xt_kv.c - shared setup of the KV tests (see xt_kv.h). */
#include "harness.h"
#include "xt_kv.h"

#include <stdio.h>
#include <stdlib.h>

/* xt_kv_cfg: see xt_kv.h. */
nxl_kv_layout_config_t
xt_kv_cfg(size_t nblocks)
{
    nxl_kv_layout_config_t c = {
        .num_blocks = nblocks,
        .num_layers = 2,
        .outer_dim = 2,
        .page_size = 16,
        .inner_dim = 128,
        .alignment = 1,
        .dtype_width_bytes = 2,
    };

    return c;
}

/* xt_kv_layout: see xt_kv.h. */
nxl_status_t
xt_kv_layout(const nxl_kv_layout_config_t *c, nxl_kv_layout_type_t type,
             int outer_contiguous, nxl_kv_kind_t kind, nxl_kv_agent_t *a,
             nxl_kv_layout_t **l_p)
{
    nxl_kv_loc_t loc = {kind, 0};

    return nxl_kv_layout_alloc(c, type, outer_contiguous, loc, a, l_p);
}

/* xt_kv_run transfers and waits; returns the final status. */
nxl_status_t
xt_kv_run(nxl_kv_ctx_t *ctx, const nxl_kv_layout_t *s, const size_t *sids,
          const nxl_kv_layout_t *d, const size_t *dids, size_t n,
          const nxl_kv_opts_t *o)
{
    nxl_kv_notif_t *nt = NULL;
    nxl_status_t st;

    st = nxl_kv_transfer(ctx, s, sids, d, dids, n, o, &nt);
    if (st != NXL_OK) {
        return st;
    }
    st = nxl_kv_notif_wait(nt, 60000);
    if (st != NXL_OK) {
        fprintf(stderr, "transfer %s: %s (%s)\n", nxl_kv_notif_uuid(nt),
                nxl_status_name(st), nxl_kv_notif_error(nt));
    }
    nxl_kv_notif_release(nt);
    return st;
}

/* xt_kv_same checks that blocks dids of d (layers [lb, le)) carry the
 * checksums of blocks sids of s. */
int
xt_kv_same(const nxl_kv_layout_t *s, const size_t *sids,
           const nxl_kv_layout_t *d, const size_t *dids, size_t n, size_t lb,
           size_t le)
{
    nxl_kv_checksum_t *a = calloc(n, sizeof(*a)), *b = calloc(n, sizeof(*b));
    size_t i;
    int rc = 0;

    XT_ASSERT(a != NULL && b != NULL);
    XT_ASSERT_OK(nxl_kv_checksum_blocks(s, sids, n, lb, le, a));
    XT_ASSERT_OK(nxl_kv_checksum_blocks(d, dids, n, lb, le, b));
    for (i = 0; i < n && rc == 0; i++) {
        if (strcmp(a[i].hex, b[i].hex) != 0) {
            fprintf(stderr, "block %zu -> %zu (layers %zu..%zu): %s != %s\n",
                    sids[i], dids[i], lb, le, a[i].hex, b[i].hex);
            rc = 1;
        }
    }
    free(a);
    free(b);
    return rc;
}

/* xt_kv_shm_agent creates an agent with the SHM backend and a strict lock, as
 * the test thread and the context's poller use it together. */
int
xt_kv_shm_agent(const char *name, nxl_kv_agent_t **a_p)
{
    nxl_agent_config_t cfg;

    nxl_agent_config_init(&cfg);
    cfg.sync_mode = NXL_SYNC_STRICT;
    XT_ASSERT_OK(nxl_kv_agent_create(name, &cfg, a_p));
    XT_ASSERT_OK(nxl_kv_agent_add_backend(*a_p, "SHM", NULL));
    return 0;
}

/* xt_kv_md_to loads from's metadata into to. */
int
xt_kv_md_to(nxl_kv_agent_t *from, nxl_kv_agent_t *to)
{
    nxl_blob_t b = {NULL, 0};

    XT_ASSERT_OK(nxl_md_local(nxl_kv_agent_raw(from), &b));
    XT_ASSERT_OK(nxl_md_load(nxl_kv_agent_raw(to), b.data, b.len, NULL, 0));
    nxl_blob_free(&b);
    return 0;
}

/* xt_kv_view rebuilds l as the peer sees it: JSON v2 carries the owner's name
 * and memory descriptors. */
int
xt_kv_view(const nxl_kv_layout_t *l, nxl_kv_layout_t **v_p)
{
    nxl_blob_t j = {NULL, 0};

    XT_ASSERT_OK(nxl_kv_layout_to_json_v2(l, &j));
    XT_ASSERT_OK(nxl_kv_layout_from_json_v2(j.data, j.len, v_p));
    nxl_blob_free(&j);
    return 0;
}
