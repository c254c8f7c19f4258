/* xt_kv.c - shared setup of the KV tests (see xt_kv.h). */
#include "xt_kv.h"

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
