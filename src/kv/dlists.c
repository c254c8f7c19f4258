/*
 * dlists.c - paired descriptor lists for block transfers.
 *
 * One pair per (block, layer, outer) region, in block -> layer -> outer
 * order, merged on the fly with the previous pair whenever both sides
 * continue it contiguously on the same device. Fully contiguous layouts
 * with consecutive ids thus collapse to one descriptor per run of blocks,
 * and a partial layer range stays exact (each block contributes only the
 * bytes of its layers), unlike Dynamo's BatchedRanges hint.
 */
#include "kv.h"

#include <stdlib.h>
#include <string.h>

/* The arrays' capacity is not stored: it is at least dlists_cap(count),
 * 64 or the power of two at or above count, and the arrays are grown
 * (doubled) exactly when count reaches such a capacity. Preallocating
 * dlists_cap(n) keeps that true. */
static size_t
dlists_cap(size_t count)
{
    size_t cap = 64;

    while (cap < count) {
        cap *= 2;
    }
    return cap;
}

/* dlists_full tells whether d's arrays may have no room for one more
 * pair: none yet, or count at a capacity step. */
static bool
dlists_full(const nxl_kv_dlists_t *d)
{
    return d->src == NULL || d->dst == NULL ||
           (d->count >= 64 && (d->count & (d->count - 1)) == 0);
}

/* dlists_grow makes room for at least one more pair. Returns NXL_OK or
 * NXL_ERR_NOMEM (d unchanged). */
static nxl_status_t
dlists_grow(nxl_kv_dlists_t *d)
{
    size_t cap = dlists_cap(d->count + 1);
    nxl_desc_t *s, *t;

    s = realloc(d->src, cap * sizeof(*s));
    if (s == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "kv: descriptor list of %zu entries",
                         cap);
    }
    d->src = s;
    t = realloc(d->dst, cap * sizeof(*t));
    if (t == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "kv: descriptor list of %zu entries",
                         cap);
    }
    d->dst = t;
    return NXL_OK;
}

/* dlists_add is the one run-merging routine of the KV descriptor
 * builders (nxl_kv_build_dlists here, the TP slices through
 * nxl__kv_dlists_push): it extends the last pair by (saddr, daddr, len)
 * when both sides continue it on the same devices, else appends the pair.
 * Inline so the builders' per-region loops make no call in the common
 * case. Returns NXL_OK or NXL_ERR_NOMEM (d unchanged). */
static inline nxl_status_t
dlists_add(nxl_kv_dlists_t *d, uint64_t saddr, uint64_t daddr, uint64_t len,
           uint64_t sdev, uint64_t ddev)
{
    nxl_status_t st;

    if (d->count > 0) {
        nxl_desc_t *ls = &d->src[d->count - 1];
        nxl_desc_t *ld = &d->dst[d->count - 1];

        if (ls->addr + ls->len == saddr && ld->addr + ld->len == daddr &&
            ls->dev_id == sdev && ld->dev_id == ddev) {
            ls->len += len;
            ld->len += len;
            return NXL_OK;
        }
    }
    if (dlists_full(d)) {
        st = dlists_grow(d);
        if (st != NXL_OK) {
            return st;
        }
    }
    d->src[d->count] = (nxl_desc_t){saddr, len, sdev};
    d->dst[d->count] = (nxl_desc_t){daddr, len, ddev};
    d->count++;
    return NXL_OK;
}

/* nxl__kv_dlists_push: see kv.h (dlists_add for other files). Not
 * thread-safe on d. */
nxl_status_t
nxl__kv_dlists_push(nxl_kv_dlists_t *d, uint64_t saddr, uint64_t daddr,
                    uint64_t len, uint64_t sdev, uint64_t ddev)
{
    return dlists_add(d, saddr, daddr, len, sdev, ddev);
}

/* nxl_kv_dlists_free frees the arrays of d and zeroes it. Accepts NULL and
 * a zeroed struct. */
NXL_API void
nxl_kv_dlists_free(nxl_kv_dlists_t *d)
{
    if (d == NULL) {
        return;
    }
    free(d->src);
    free(d->dst);
    memset(d, 0, sizeof(*d));
}

/* kv_check_ids checks that every id is below l's num_blocks. */
static nxl_status_t
kv_check_ids(const nxl_kv_layout_t *l, const size_t *ids, size_t n,
             const char *which)
{
    size_t i, max = l->cfg.num_blocks;

    for (i = 0; i < n; i++) {
        if (ids[i] >= max) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "Block ID %zu out of range for %s layout "
                             "(max: %zu)",
                             ids[i], which, max);
        }
    }
    return NXL_OK;
}

/* One (layer, outer) slot of a block: its address at block 0 (block b
 * adds b * block_stride on either layout type) and its device. */
typedef struct dl_slot {
    uint64_t soff, doff;
    uint64_t sdev, ddev;
} dl_slot_t;

#define DL_STACK_SLOTS 256

/* nxl__kv_pair_check: see kv.h. */
nxl_status_t
nxl__kv_pair_check(const nxl_kv_layout_t *src, const size_t *src_ids,
                   const nxl_kv_layout_t *dst, const size_t *dst_ids, size_t n,
                   int check_ids, size_t *lb_p, size_t *le_p)
{
    size_t nl = src->cfg.num_layers, no = src->cfg.outer_dim;
    size_t lb = *lb_p, le = *le_p;
    nxl_status_t st;

    if (nl != dst->cfg.num_layers) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Layouts have incompatible layer counts: src=%zu, "
                         "dst=%zu",
                         nl, dst->cfg.num_layers);
    }
    if (no != dst->cfg.outer_dim) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Layouts have incompatible outer dimensions: "
                         "src=%zu, dst=%zu",
                         no, dst->cfg.outer_dim);
    }
    if (lb == 0 && le == 0) {
        le = nl;
    }
    if (lb >= le || le > nl) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Layer range %zu..%zu exceeds num_layers %zu or is "
                         "empty",
                         lb, le, nl);
    }
    if (check_ids) {
        st = kv_check_ids(src, src_ids, n, "source");
        if (st == NXL_OK) {
            st = kv_check_ids(dst, dst_ids, n, "destination");
        }
        if (st != NXL_OK) {
            return st;
        }
    }
    /* Every region of a layout has the same size, so one comparison
     * covers all pairs; report it at the first pair as Dynamo would. */
    if (n > 0 && src->region_size != dst->region_size) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Size mismatch at block=(%zu,%zu), layer=%zu, "
                         "outer=0: src=%zu, dst=%zu",
                         src_ids[0], dst_ids[0], lb, src->region_size,
                         dst->region_size);
    }
    *lb_p = lb;
    *le_p = le;
    return NXL_OK;
}

/* nxl_kv_build_dlists: see nxl_kv.h. *out is overwritten (its previous
 * arrays are not freed) and written only on success. Thread-safe (reads
 * the layouts only). */
NXL_API nxl_status_t
nxl_kv_build_dlists(const nxl_kv_layout_t *src, const size_t *src_ids,
                    const nxl_kv_layout_t *dst, const size_t *dst_ids, size_t n,
                    size_t layer_begin, size_t layer_end, nxl_kv_dlists_t *out)
{
    nxl_status_t st;

    if (src == NULL || dst == NULL || out == NULL ||
        !nxl__kv_array_ok(src_ids, n, sizeof(*src_ids)) ||
        !nxl__kv_array_ok(dst_ids, n, sizeof(*dst_ids))) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "build_dlists: NULL argument or an impossible count");
    }
    st = nxl__kv_pair_check(src, src_ids, dst, dst_ids, n, 1, &layer_begin,
                            &layer_end);
    if (st != NXL_OK) {
        return st;
    }
    return nxl__kv_build_dlists(src, src_ids, dst, dst_ids, n, layer_begin,
                                layer_end, out);
}

/* nxl__kv_build_dlists: see kv.h. */
nxl_status_t
nxl__kv_build_dlists(const nxl_kv_layout_t *src, const size_t *src_ids,
                     const nxl_kv_layout_t *dst, const size_t *dst_ids,
                     size_t n, size_t layer_begin, size_t layer_end,
                     nxl_kv_dlists_t *out)
{
    dl_slot_t stack_slots[DL_STACK_SLOTS], *slots = stack_slots;
    nxl_kv_dlists_t d = {0};
    size_t no, i, k, nslots, lyr, o, rs;
    uint64_t sbs, dbs;
    bool whole;
    nxl_status_t st = NXL_OK;

    no = src->cfg.outer_dim;
    rs = src->region_size;
    d.src_mem = src->mem;
    d.dst_mem = dst->mem;
    if (n == 0) {
        *out = d;
        return NXL_OK;
    }
    /* The (layer, outer) slots of one block, in order, at block 0. */
    nslots = (layer_end - layer_begin) * no;
    if (nslots > DL_STACK_SLOTS) {
        slots = malloc(nslots * sizeof(*slots));
        if (slots == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "build_dlists: out of memory");
        }
    }
    k = 0;
    whole = true;
    for (lyr = layer_begin; lyr < layer_end; lyr++) {
        for (o = 0; o < no; o++, k++) {
            slots[k].soff = nxl__kv_addr(src, 0, lyr, o);
            slots[k].doff = nxl__kv_addr(dst, 0, lyr, o);
            /* LS layouts over files have one fd per layer. */
            slots[k].sdev = nxl__kv_dev(src, lyr);
            slots[k].ddev = nxl__kv_dev(dst, lyr);
            if (k > 0 && (slots[k].soff != slots[k - 1].soff + rs ||
                          slots[k].doff != slots[k - 1].doff + rs ||
                          slots[k].sdev != slots[k - 1].sdev ||
                          slots[k].ddev != slots[k - 1].ddev)) {
                whole = false;
            }
        }
    }
    sbs = src->block_stride;
    dbs = dst->block_stride;
    /* Room for one pair per block up front: the common merged cases never
     * grow the arrays again. */
    d.src = malloc(dlists_cap(n) * sizeof(*d.src));
    d.dst = malloc(dlists_cap(n) * sizeof(*d.dst));
    if (d.src == NULL || d.dst == NULL) {
        st = nxl__fail(NXL_ERR_NOMEM, "build_dlists: %zu descriptors", n);
    }
    if (whole) {
        /* The block's slots form one span on both sides (FC layouts with
         * any layer range, LS layouts on one layer): one pair per block
         * before merging, exactly the bytes of those layers. */
        uint64_t span = (uint64_t)nslots * rs;

        for (i = 0; i < n && st == NXL_OK; i++) {
            st = dlists_add(&d, slots[0].soff + src_ids[i] * sbs,
                            slots[0].doff + dst_ids[i] * dbs, span,
                            slots[0].sdev, slots[0].ddev);
        }
    } else {
        for (i = 0; i < n && st == NXL_OK; i++) {
            uint64_t sb = src_ids[i] * sbs, db = dst_ids[i] * dbs;

            for (k = 0; k < nslots && st == NXL_OK; k++) {
                st = dlists_add(&d, slots[k].soff + sb, slots[k].doff + db, rs,
                                slots[k].sdev, slots[k].ddev);
            }
        }
    }
    if (slots != stack_slots) {
        free(slots);
    }
    if (st != NXL_OK) {
        nxl_kv_dlists_free(&d);
        return st;
    }
    *out = d;
    return NXL_OK;
}
