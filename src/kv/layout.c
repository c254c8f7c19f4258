/*
 * layout.c - KV block layouts: Dynamo's LayoutConfig, FullyContiguous (v1,
 * with alignment) and LayerSeparate (both orientations) over storage, and
 * region addressing. docs/kv-layout.md gives the formulas; the JSON wire
 * forms are in layout_json.c, which builds remote views through
 * nxl__kv_layout_new_view_ex.
 *
 * Every size is computed with overflow checks, so a config (local or from
 * a peer) whose sizes do not fit in 64 bits is refused up front and the
 * unchecked nxl__kv_addr cannot wrap for ids in range.
 */
#include "kv.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- arithmetic ---------------------------------------------------------- */

/* mul_ok / add_ok store a*b / a+b in *r and return true when it fits. */
static bool
mul_ok(uint64_t a, uint64_t b, uint64_t *r)
{
    return !__builtin_mul_overflow(a, b, r);
}

static bool
add_ok(uint64_t a, uint64_t b, uint64_t *r)
{
    return !__builtin_add_overflow(a, b, r);
}

/* align_ok stores x rounded up to a multiple of align (a power of two) in
 * *r and returns true when it fits. */
static bool
align_ok(uint64_t x, uint64_t align, uint64_t *r)
{
    uint64_t t;

    if (align <= 1) {
        *r = x;
        return true;
    }
    if (!add_ok(x, align - 1, &t)) {
        return false;
    }
    *r = t & ~(align - 1);
    return true;
}

/* ---- config and strides -------------------------------------------------- */

/* check_basic checks the per-field constraints of cfg (no sizes). */
static nxl_status_t
check_basic(const nxl_kv_layout_config_t *cfg)
{
    if (cfg == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "layout config is NULL");
    }
    if (cfg->num_blocks < 1) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "num_blocks must be at least 1 (got 0)");
    }
    if (cfg->num_layers < 1) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "num_layers must be at least 1 (got 0)");
    }
    if (cfg->outer_dim < 1 || cfg->outer_dim > 2) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "outer_dim must be 1 or 2 (got %zu)", cfg->outer_dim);
    }
    if (cfg->page_size < 1) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "page_size must be at least 1 (got 0)");
    }
    if (cfg->inner_dim < 1) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "inner_dim must be at least 1 (got 0)");
    }
    if (cfg->dtype_width_bytes < 1) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "dtype_width_bytes must be at least 1 (got 0)");
    }
    if (cfg->alignment == 0 || (cfg->alignment & (cfg->alignment - 1)) != 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "alignment must be a power of 2 (got %zu)",
                         cfg->alignment);
    }
    return NXL_OK;
}

/* compute fills *st for a basic-valid cfg; false when a size overflows
 * 64 bits (including the allocation size data + alignment - 1 and the
 * block bytes layers * outer * R). */
static bool
compute(const nxl_kv_layout_config_t *cfg, nxl_kv_layout_type_t type,
        int outer_contiguous, nxl__kv_strides_t *st)
{
    uint64_t r, t, nat, bs, os, ls = 0, data, alloc;

    if (!mul_ok(cfg->page_size, cfg->inner_dim, &t) ||
        !mul_ok(t, cfg->dtype_width_bytes, &r)) {
        return false;
    }
    /* Block bytes (every layout): layers * outer * R. */
    if (!mul_ok(r, cfg->outer_dim, &t) || !mul_ok(t, cfg->num_layers, &t)) {
        return false;
    }
    if (type == NXL_KV_FULLY_CONTIGUOUS) {
        os = r;
        ls = r * cfg->outer_dim; /* <= block bytes, checked above */
        nat = ls * cfg->num_layers;
        if (!align_ok(nat, cfg->alignment, &bs) ||
            !mul_ok(bs, cfg->num_blocks - 1, &t) || !add_ok(t, nat, &data)) {
            return false;
        }
    } else if (!outer_contiguous) {
        /* BlockIsFirstDim: per layer [blocks][outer][page][inner]. */
        os = r;
        nat = r * cfg->outer_dim;
        if (!align_ok(nat, cfg->alignment, &bs) ||
            !mul_ok(bs, cfg->num_blocks, &data)) {
            return false;
        }
    } else {
        /* BlockIsSecondDim: per layer [outer][blocks][page][inner]. */
        nat = r;
        if (!align_ok(r, cfg->alignment, &bs) ||
            !mul_ok(bs, cfg->num_blocks, &os) ||
            !mul_ok(os, cfg->outer_dim, &data)) {
            return false;
        }
    }
    if (!add_ok(data, cfg->alignment - 1, &alloc) || alloc > SIZE_MAX) {
        return false;
    }
    st->region_size = (size_t)r;
    st->outer_stride = (size_t)os;
    st->layer_stride = (size_t)ls;
    st->natural_block = (size_t)nat;
    st->block_stride = (size_t)bs;
    st->layout_data_bytes = (size_t)data;
    return true;
}

/* nxl_kv_layout_config_validate checks cfg's field constraints and that the
 * sizes of every layout type over it fit in 64 bits. Returns NXL_OK or
 * NXL_ERR_INVALID_PARAM with the field at fault. Thread-safe. */
NXL_API nxl_status_t
nxl_kv_layout_config_validate(const nxl_kv_layout_config_t *cfg)
{
    nxl__kv_strides_t st;
    nxl_status_t s = check_basic(cfg);

    if (s != NXL_OK) {
        return s;
    }
    if (!compute(cfg, NXL_KV_FULLY_CONTIGUOUS, 0, &st) ||
        !compute(cfg, NXL_KV_LAYER_SEPARATE, 0, &st) ||
        !compute(cfg, NXL_KV_LAYER_SEPARATE, 1, &st)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Layout size overflows 64 bits (blocks %zu, layers "
                         "%zu, outer %zu, page %zu, inner %zu, alignment %zu, "
                         "dtype %zu)",
                         cfg->num_blocks, cfg->num_layers, cfg->outer_dim,
                         cfg->page_size, cfg->inner_dim, cfg->alignment,
                         cfg->dtype_width_bytes);
    }
    return NXL_OK;
}

/* nxl__kv_layout_strides validates cfg and fills *st_p for the layout
 * type. NXL_OK or NXL_ERR_INVALID_PARAM. Thread-safe. */
nxl_status_t
nxl__kv_layout_strides(const nxl_kv_layout_config_t *cfg,
                       nxl_kv_layout_type_t type, int outer_contiguous,
                       nxl__kv_strides_t *st_p)
{
    nxl_status_t s;

    if (type != NXL_KV_FULLY_CONTIGUOUS && type != NXL_KV_LAYER_SEPARATE) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "unknown layout type %d",
                         (int)type);
    }
    s = nxl_kv_layout_config_validate(cfg);
    if (s != NXL_OK) {
        return s;
    }
    (void)compute(cfg, type, outer_contiguous != 0, st_p);
    return NXL_OK;
}

/* ---- storage kinds ------------------------------------------------------- */

/* loc_mem maps a storage location to its memory type and dev id (the
 * storage kind table of docs/kv-layout.md). False for an unknown kind. */
static bool
loc_mem(nxl_kv_loc_t loc, nxl_mem_t *mem, uint64_t *dev)
{
    switch (loc.kind) {
    case NXL_KV_SYSTEM:
    case NXL_KV_PINNED:
        *mem = NXL_DRAM;
        *dev = 0;
        return true;
    case NXL_KV_DEVICE:
        *mem = NXL_VRAM;
        *dev = loc.index;
        return true;
    case NXL_KV_DISK:
        *mem = NXL_FILE;
        *dev = loc.index;
        return true;
    }
    return false;
}

/* ---- construction -------------------------------------------------------- */

/* fits_region checks that everything the layout addresses in memory region
 * i (every (block, layer, outer) region, every whole block range, and the
 * layout data) lies in [0, size - base_offset) and that no address wraps. */
static nxl_status_t
fits_region(const nxl_kv_layout_config_t *cfg, nxl_kv_layout_type_t type,
            const nxl__kv_strides_t *st, size_t i, uint64_t addr, uint64_t size,
            uint64_t base_offset)
{
    uint64_t end, avail, t, ext, blk, need;

    if (!add_ok(addr, size, &end)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memory region %zu: addr 0x%" PRIx64 " + size %" PRIu64
                         " overflows",
                         i, addr, size);
    }
    if (base_offset > size) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memory region %zu: base offset %" PRIu64
                         " is beyond its size %" PRIu64,
                         i, base_offset, size);
    }
    avail = size - base_offset;
    /* Last region: (nb-1)*bs + (nl-1)*ls + (no-1)*os + R. */
    if (!mul_ok(st->block_stride, cfg->num_blocks - 1, &blk) ||
        !mul_ok(st->outer_stride, cfg->outer_dim - 1, &t) ||
        !add_ok(blk, t, &ext)) {
        goto overflow;
    }
    if (type == NXL_KV_FULLY_CONTIGUOUS &&
        (!mul_ok(st->layer_stride, cfg->num_layers - 1, &t) ||
         !add_ok(ext, t, &ext))) {
        goto overflow;
    }
    if (!add_ok(ext, st->region_size, &ext) ||
        !add_ok(blk, st->natural_block, &blk)) {
        goto overflow;
    }
    need = NXL__MAX(NXL__MAX(ext, blk), (uint64_t)st->layout_data_bytes);
    if (need > avail) {
        return nxl__fail(
            NXL_ERR_INVALID_PARAM,
            "memory region %zu too small for layout: needs %" PRIu64
            " bytes after base offset %" PRIu64 ", has %" PRIu64,
            i, need, base_offset, avail);
    }
    return NXL_OK;
overflow:
    return nxl__fail(NXL_ERR_INVALID_PARAM,
                     "memory region %zu: layout extent overflows 64 bits", i);
}

/* build makes a layout from validated strides and n memory regions after
 * checking that each region holds the layout (fits_region). Copies every
 * array; region_dev NULL means dev_id for all. NXL_OK, INVALID_PARAM,
 * NOMEM. */
static nxl_status_t
build(const nxl_kv_layout_config_t *cfg, nxl_kv_layout_type_t type,
      int outer_contiguous, nxl_kv_loc_t loc, nxl_mem_t mem, uint64_t dev_id,
      const nxl__kv_strides_t *st, const uint64_t *region_addr,
      const uint64_t *region_size, const uint64_t *base_offset,
      const uint64_t *region_dev, size_t n, const char *agent,
      nxl_kv_layout_t **l_p)
{
    nxl_kv_layout_t *l;
    size_t i, want;
    nxl_status_t s;

    want = type == NXL_KV_FULLY_CONTIGUOUS ? 1 : cfg->num_layers;
    if (n != want) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "%s layout needs %zu memory regions, got %zu",
                         type == NXL_KV_FULLY_CONTIGUOUS ? "FullyContiguous"
                                                         : "LayerSeparate",
                         want, n);
    }
    if (region_addr == NULL || region_size == NULL || base_offset == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memory region arrays are NULL");
    }
    for (i = 0; i < n; i++) {
        s = fits_region(cfg, type, st, i, region_addr[i], region_size[i],
                        base_offset[i]);
        if (s != NXL_OK) {
            return s;
        }
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "kv layout: out of memory");
    }
    l->region_addr = calloc(n, sizeof(uint64_t));
    l->region_size_b = calloc(n, sizeof(uint64_t));
    l->base_offset = calloc(n, sizeof(uint64_t));
    l->base = calloc(n, sizeof(uint64_t));
    l->region_dev = calloc(n, sizeof(uint64_t));
    l->agent = agent != NULL ? strdup(agent) : NULL;
    if (l->region_addr == NULL || l->region_size_b == NULL ||
        l->base_offset == NULL || l->base == NULL || l->region_dev == NULL ||
        (agent != NULL && l->agent == NULL)) {
        nxl_kv_layout_destroy(l);
        return nxl__fail(NXL_ERR_NOMEM, "kv layout: out of memory");
    }
    l->cfg = *cfg;
    l->type = type;
    l->outer_contiguous =
        type == NXL_KV_LAYER_SEPARATE && outer_contiguous != 0;
    l->loc = loc;
    l->mem = mem;
    l->dev_id = dev_id;
    l->region_size = st->region_size;
    l->outer_stride = st->outer_stride;
    l->layer_stride = st->layer_stride;
    l->natural_block = st->natural_block;
    l->block_stride = st->block_stride;
    l->layout_data_bytes = st->layout_data_bytes;
    l->num_regions = n;
    for (i = 0; i < n; i++) {
        l->region_addr[i] = region_addr[i];
        l->region_size_b[i] = region_size[i];
        l->base_offset[i] = base_offset[i];
        l->base[i] = region_addr[i] + base_offset[i]; /* fits_region */
        l->region_dev[i] = region_dev != NULL ? region_dev[i] : dev_id;
    }
    *l_p = l;
    return NXL_OK;
}

/* nxl__kv_layout_new_view_ex: see kv.h. Thread-safe. */
nxl_status_t
nxl__kv_layout_new_view_ex(const nxl_kv_layout_config_t *cfg,
                           nxl_kv_layout_type_t type, int outer_contiguous,
                           nxl_kv_loc_t loc, nxl_mem_t mem, uint64_t dev_id,
                           const nxl__kv_strides_t *st,
                           const uint64_t *region_addr,
                           const uint64_t *region_size,
                           const uint64_t *base_offset,
                           const uint64_t *region_dev, size_t n,
                           const char *agent, nxl_kv_layout_t **l_p)
{
    nxl__kv_strides_t mine;
    nxl_status_t s;

    if (l_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv layout view: NULL argument");
    }
    s = nxl__kv_layout_strides(cfg, type, outer_contiguous, &mine);
    if (s != NXL_OK) {
        return s;
    }
    if (st != NULL && st->region_size != mine.region_size) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memory_region_size %zu does not match the config's "
                         "page_size * inner_dim * dtype_width_bytes = %zu",
                         st->region_size, mine.region_size);
    }
    return build(cfg, type, outer_contiguous, loc, mem, dev_id,
                 st != NULL ? st : &mine, region_addr, region_size, base_offset,
                 region_dev, n, agent, l_p);
}

/* nxl__kv_layout_new_view: see kv.h. Thread-safe. */
nxl_status_t
nxl__kv_layout_new_view(const nxl_kv_layout_config_t *cfg,
                        nxl_kv_layout_type_t type, int outer_contiguous,
                        nxl_kv_loc_t loc, nxl_mem_t mem, uint64_t dev_id,
                        const uint64_t *region_addr,
                        const uint64_t *region_size,
                        const uint64_t *base_offset, size_t n,
                        const char *agent, nxl_kv_layout_t **l_p)
{
    return nxl__kv_layout_new_view_ex(cfg, type, outer_contiguous, loc, mem,
                                      dev_id, NULL, region_addr, region_size,
                                      base_offset, NULL, n, agent, l_p);
}

/* over_storage lays a layout over n storages (not owned), after the
 * Dynamo size check on each: "Storage size X is less than required size Y
 * (including base offset for alignment)". All storages must share a kind
 * (and a device, for DEVICE). */
static nxl_status_t
over_storage(const nxl_kv_layout_config_t *cfg, nxl_kv_layout_type_t type,
             int outer_contiguous, nxl_kv_storage_t *const *storages, size_t n,
             nxl_kv_layout_t **l_p)
{
    nxl__kv_strides_t st;
    uint64_t *buf, *addr, *size, *off, *dev, aligned, req;
    nxl_kv_loc_t loc;
    nxl_mem_t mem = NXL_DRAM;
    uint64_t dev0 = 0;
    nxl_kv_layout_t *l = NULL;
    nxl_status_t s;
    size_t i;

    s = nxl__kv_layout_strides(cfg, type, outer_contiguous, &st);
    if (s != NXL_OK) {
        return s;
    }
    for (i = 0; i < n; i++) {
        if (storages[i] == NULL) {
            return nxl__fail(NXL_ERR_INVALID_PARAM, "storage %zu is NULL", i);
        }
    }
    loc = storages[0]->loc;
    if (!loc_mem(loc, &mem, &dev0)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "unknown storage kind %d",
                         (int)loc.kind);
    }
    for (i = 1; i < n; i++) {
        nxl_kv_loc_t li = storages[i]->loc;

        if (li.kind != loc.kind ||
            (li.kind == NXL_KV_DEVICE && li.index != loc.index)) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "LayerSeparate storages must share one kind: "
                             "layer %zu is %s(%" PRIu64 "), layer 0 is "
                             "%s(%" PRIu64 ")",
                             i, nxl_kv_kind_name(li.kind), li.index,
                             nxl_kv_kind_name(loc.kind), loc.index);
        }
    }
    buf = calloc(4 * n, sizeof(uint64_t));
    if (buf == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "kv layout: out of memory");
    }
    addr = buf;
    size = buf + n;
    off = buf + 2 * n;
    dev = buf + 3 * n;
    for (i = 0; i < n; i++) {
        const nxl_kv_storage_t *sg = storages[i];
        nxl_mem_t m;

        addr[i] = sg->addr;
        size[i] = sg->size;
        (void)loc_mem(sg->loc, &m, &dev[i]);
        if (!align_ok(sg->addr, cfg->alignment, &aligned) ||
            !add_ok(st.layout_data_bytes, aligned - sg->addr, &req)) {
            s = nxl__fail(NXL_ERR_INVALID_PARAM,
                          "storage %zu: address 0x%" PRIx64
                          " cannot be aligned to %zu",
                          i, sg->addr, cfg->alignment);
            goto out;
        }
        off[i] = aligned - sg->addr;
        if (sg->size < req) {
            s = nxl__fail(NXL_ERR_INVALID_PARAM,
                          "Storage size %zu is less than required size %" PRIu64
                          " (including base offset for alignment)",
                          sg->size, req);
            goto out;
        }
    }
    s = build(cfg, type, outer_contiguous, loc, mem, dev0, &st, addr, size, off,
              dev, n, NULL, &l);
    if (s != NXL_OK) {
        goto out;
    }
    l->storages = calloc(n, sizeof(*l->storages));
    if (l->storages == NULL) {
        nxl_kv_layout_destroy(l);
        s = nxl__fail(NXL_ERR_NOMEM, "kv layout: out of memory");
        goto out;
    }
    memcpy(l->storages, storages, n * sizeof(*l->storages));
    *l_p = l;
out:
    free(buf);
    return s;
}

/* nxl_kv_layout_fc lays a fully contiguous layout over storage (borrowed:
 * it must outlive the layout). NXL_OK; NXL_ERR_INVALID_PARAM for a bad
 * config or a storage too small ("Storage size X is less than required
 * size Y (including base offset for alignment)"); NXL_ERR_NOMEM. *l_p is
 * the caller's (nxl_kv_layout_destroy). Thread-safe. */
NXL_API nxl_status_t
nxl_kv_layout_fc(const nxl_kv_layout_config_t *cfg, nxl_kv_storage_t *storage,
                 nxl_kv_layout_t **l_p)
{
    if (storage == NULL || l_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "nxl_kv_layout_fc: NULL storage or output");
    }
    return over_storage(cfg, NXL_KV_FULLY_CONTIGUOUS, 0, &storage, 1, l_p);
}

/* nxl_kv_layout_ls lays a layer-separate layout over n storages (borrowed),
 * one per layer. n != num_layers: NXL_ERR_INVALID_PARAM "LayerSeparate
 * layout requires exactly one storage region per layer"; else as
 * nxl_kv_layout_fc. Thread-safe. */
NXL_API nxl_status_t
nxl_kv_layout_ls(const nxl_kv_layout_config_t *cfg, int outer_contiguous,
                 nxl_kv_storage_t *const *storages, size_t n,
                 nxl_kv_layout_t **l_p)
{
    nxl_status_t s;

    if (l_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "nxl_kv_layout_ls: NULL output");
    }
    s = check_basic(cfg);
    if (s != NXL_OK) {
        return s;
    }
    if (storages == NULL || n != cfg->num_layers) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "LayerSeparate layout requires exactly one storage "
                         "region per layer");
    }
    return over_storage(cfg, NXL_KV_LAYER_SEPARATE, outer_contiguous != 0,
                        storages, n, l_p);
}

/* alloc_one allocates size bytes of loc's kind (DISK: a temp file), and
 * registers it with a when a is not NULL, ignoring a failed registration
 * (the storage stays unregistered, as Dynamo's register_with_nixl). */
static nxl_status_t
alloc_one(nxl_kv_loc_t loc, size_t size, nxl_kv_agent_t *a,
          nxl_kv_storage_t **s_p)
{
    nxl_status_t s;

    if (loc.kind == NXL_KV_DISK) {
        s = nxl_kv_storage_disk(NULL, size, 0, s_p);
    } else {
        s = nxl_kv_storage_alloc(loc, size, s_p);
    }
    if (s != NXL_OK) {
        return s;
    }
    if (a != NULL) {
        nxl_status_t r = nxl_kv_storage_register(*s_p, a);

        if (r != NXL_OK) {
            nxl__debug("kv layout: %s storage of %zu bytes stays "
                       "unregistered: %s",
                       nxl_kv_kind_name(loc.kind), size, nxl_last_error());
        }
    }
    return NXL_OK;
}

/* nxl_kv_layout_alloc allocates the storage a layout of cfg and type needs
 * (FC: one of layout_data_bytes + alignment - 1 bytes; LS: one such per
 * layer) of kind loc.kind (loc.index = device ordinal; ignored for DISK,
 * whose files are created in $TMPDIR or /tmp), registers each with a when
 * a is not NULL (failures tolerated), lays the layout over it and owns it.
 * The layout's agent is a's name when a is given. Returns NXL_OK, the
 * storage's error (e.g. NXL_ERR_NOT_SUPPORTED for DEVICE without a GPU),
 * NXL_ERR_INVALID_PARAM, NXL_ERR_NOMEM; on failure nothing is left
 * allocated. Thread-safe. */
NXL_API nxl_status_t
nxl_kv_layout_alloc(const nxl_kv_layout_config_t *cfg,
                    nxl_kv_layout_type_t type, int outer_contiguous,
                    nxl_kv_loc_t loc, nxl_kv_agent_t *a, nxl_kv_layout_t **l_p)
{
    nxl__kv_strides_t st;
    nxl_kv_storage_t **sv;
    nxl_kv_layout_t *l = NULL;
    nxl_mem_t mem;
    uint64_t dev;
    size_t n, i, size;
    nxl_status_t s;

    if (l_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "nxl_kv_layout_alloc: NULL output");
    }
    if (!loc_mem(loc, &mem, &dev)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "unknown storage kind %d",
                         (int)loc.kind);
    }
    s = nxl__kv_layout_strides(cfg, type, outer_contiguous, &st);
    if (s != NXL_OK) {
        return s;
    }
    n = type == NXL_KV_FULLY_CONTIGUOUS ? 1 : cfg->num_layers;
    size = st.layout_data_bytes + (cfg->alignment - 1); /* compute() */
    sv = calloc(n, sizeof(*sv));
    if (sv == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "kv layout: out of memory");
    }
    for (i = 0; i < n; i++) {
        s = alloc_one(loc, size, a, &sv[i]);
        if (s != NXL_OK) {
            goto fail;
        }
    }
    if (type == NXL_KV_FULLY_CONTIGUOUS) {
        s = nxl_kv_layout_fc(cfg, sv[0], &l);
    } else {
        s = nxl_kv_layout_ls(cfg, outer_contiguous, sv, n, &l);
    }
    if (s != NXL_OK) {
        goto fail;
    }
    if (a != NULL) {
        s = nxl_kv_layout_set_agent(l, nxl_kv_agent_name(a));
        if (s != NXL_OK) {
            goto fail;
        }
    }
    l->owns_storage = true;
    free(sv);
    *l_p = l;
    return NXL_OK;
fail:
    if (l != NULL) {
        nxl_kv_layout_destroy(l); /* borrowed storages: not freed */
    }
    for (i = 0; i < n; i++) {
        nxl_kv_storage_destroy(sv[i]);
    }
    free(sv);
    return s;
}

/* nxl_kv_layout_destroy frees l, and the storages it owns (each
 * deregistered before its memory is freed). Accepts NULL. Not thread-safe
 * with other calls on l. */
NXL_API void
nxl_kv_layout_destroy(nxl_kv_layout_t *l)
{
    size_t i;

    if (l == NULL) {
        return;
    }
    if (l->owns_storage && l->storages != NULL) {
        for (i = 0; i < l->num_regions; i++) {
            nxl_kv_storage_destroy(l->storages[i]);
        }
    }
    free(l->storages);
    free(l->region_addr);
    free(l->region_size_b);
    free(l->base_offset);
    free(l->base);
    free(l->region_dev);
    free(l->agent);
    free(l);
}

/* ---- addressing and accessors ---------------------------------------------
 */

/* nxl_kv_layout_region fills *r_p with the address and size (R) of region
 * (block, layer, outer). NXL_ERR_INVALID_PARAM "Block ID b out of range
 * (max: n)" (and Layer ID / Outer ID) when an id is >= its bound. Reads
 * only: thread-safe. */
NXL_API nxl_status_t
nxl_kv_layout_region(const nxl_kv_layout_t *l, size_t block, size_t layer,
                     size_t outer, nxl_kv_region_t *r_p)
{
    if (l == NULL || r_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "nxl_kv_layout_region: NULL layout or output");
    }
    if (block >= l->cfg.num_blocks) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Block ID %zu out of range (max: %zu)", block,
                         l->cfg.num_blocks);
    }
    if (layer >= l->cfg.num_layers) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Layer ID %zu out of range (max: %zu)", layer,
                         l->cfg.num_layers);
    }
    if (outer >= l->cfg.outer_dim) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Outer ID %zu out of range (max: %zu)", outer,
                         l->cfg.outer_dim);
    }
    r_p->addr = nxl__kv_addr(l, block, layer, outer);
    r_p->size = l->region_size;
    return NXL_OK;
}

/* Accessors: plain reads of l (not NULL); thread-safe. */
NXL_API const nxl_kv_layout_config_t *
nxl_kv_layout_config(const nxl_kv_layout_t *l)
{
    return &l->cfg;
}

NXL_API nxl_kv_layout_type_t
nxl_kv_layout_type(const nxl_kv_layout_t *l)
{
    return l->type;
}

NXL_API int
nxl_kv_layout_outer_contiguous(const nxl_kv_layout_t *l)
{
    return l->outer_contiguous;
}

NXL_API int
nxl_kv_layout_is_fully_contiguous(const nxl_kv_layout_t *l)
{
    return l->type == NXL_KV_FULLY_CONTIGUOUS;
}

NXL_API nxl_kv_loc_t
nxl_kv_layout_loc(const nxl_kv_layout_t *l)
{
    return l->loc;
}

NXL_API nxl_mem_t
nxl_kv_layout_mem(const nxl_kv_layout_t *l)
{
    return l->mem;
}

NXL_API uint64_t
nxl_kv_layout_dev_id(const nxl_kv_layout_t *l)
{
    return l->dev_id;
}

NXL_API size_t
nxl_kv_layout_region_size(const nxl_kv_layout_t *l)
{
    return l->region_size;
}

/* Block bytes: the data of one block over all layers and outer dims,
 * layers * outer * R (fits: checked by compute()). */
NXL_API size_t
nxl_kv_layout_block_bytes(const nxl_kv_layout_t *l)
{
    return l->cfg.num_layers * l->cfg.outer_dim * l->region_size;
}

NXL_API const char *
nxl_kv_layout_agent(const nxl_kv_layout_t *l)
{
    return l->agent;
}

/* nxl_kv_layout_set_agent records agent_name (copied; NULL forgets it) as
 * the owner of l's memory. NXL_OK, NXL_ERR_INVALID_PARAM (l NULL),
 * NXL_ERR_NOMEM (l unchanged). Not thread-safe with readers of l. */
NXL_API nxl_status_t
nxl_kv_layout_set_agent(nxl_kv_layout_t *l, const char *agent_name)
{
    char *copy = NULL;

    if (l == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "nxl_kv_layout_set_agent: NULL layout");
    }
    if (agent_name != NULL) {
        copy = strdup(agent_name);
        if (copy == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "kv layout: out of memory");
        }
    }
    free(l->agent);
    l->agent = copy;
    return NXL_OK;
}
