/*
 * tp.c - descriptor builders for heterogeneous tensor parallelism.
 *
 * A region holds page_size tokens of inner_dim elements, inner_dim being
 * heads_per_rank * head_dim. When prefill and decode split the heads over
 * different rank counts, a block moves as slices of regions: in NHD order
 * ([page][inner]) the slice of one rank is a strided range (one descriptor
 * per token); in HND order ([heads][page][head_dim]) it is one contiguous
 * range of region_size / k bytes. Descriptors of consecutive tokens and
 * regions merge when both sides happen to be contiguous.
 */
#include "kv.h"

#include <stdlib.h>

/* tp_check compares the dimensions of the local and remote layouts, with
 * `wide` the side whose inner_dim is k times the other's. */
static nxl_status_t
tp_check(const nxl_kv_layout_t *local, const size_t *local_ids,
         const nxl_kv_layout_t *remote, const size_t *remote_ids, size_t n,
         const nxl_kv_layout_t *wide, const nxl_kv_layout_t *narrow, size_t k,
         const char *wide_name, const char *narrow_name, nxl_kv_dlists_t *out)
{
    const nxl_kv_layout_config_t *w, *s;
    size_t i;

    size_t prod;

    if (local == NULL || remote == NULL || out == NULL ||
        !nxl__kv_array_ok(local_ids, n, sizeof(*local_ids)) ||
        !nxl__kv_array_ok(remote_ids, n, sizeof(*remote_ids))) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "tp: NULL argument or an impossible count");
    }
    w = &wide->cfg;
    s = &narrow->cfg;
    if (w->num_layers != s->num_layers) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "tp: num_layers differ: local=%zu, remote=%zu",
                         local->cfg.num_layers, remote->cfg.num_layers);
    }
    if (w->outer_dim != s->outer_dim) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "tp: outer_dim differs: local=%zu, remote=%zu",
                         local->cfg.outer_dim, remote->cfg.outer_dim);
    }
    if (w->page_size != s->page_size) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "tp: page_size differs: local=%zu, remote=%zu",
                         local->cfg.page_size, remote->cfg.page_size);
    }
    if (w->dtype_width_bytes != s->dtype_width_bytes) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "tp: dtype_width_bytes differs: local=%zu, "
                         "remote=%zu",
                         local->cfg.dtype_width_bytes,
                         remote->cfg.dtype_width_bytes);
    }
    if (__builtin_mul_overflow(s->inner_dim, k, &prod) ||
        w->inner_dim != prod) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "tp: inner_dim mismatch: %s inner_dim %zu must be "
                         "%zu times the %s inner_dim %zu",
                         wide_name, w->inner_dim, k, narrow_name, s->inner_dim);
    }
    for (i = 0; i < n; i++) {
        if (local_ids[i] >= local->cfg.num_blocks) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "Block ID %zu out of range for local layout "
                             "(max: %zu)",
                             local_ids[i], local->cfg.num_blocks);
        }
        if (remote_ids[i] >= remote->cfg.num_blocks) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "Block ID %zu out of range for remote layout "
                             "(max: %zu)",
                             remote_ids[i], remote->cfg.num_blocks);
        }
    }
    return NXL_OK;
}

/* tp_push appends to d the pair of the wide side's range at w and the
 * narrow side's at s (len bytes each) of layer lyr, remote side as the
 * source. Returns NXL_OK or NXL_ERR_NOMEM. */
static nxl_status_t
tp_push(nxl_kv_dlists_t *d, int wide_is_remote, uint64_t w, uint64_t s,
        size_t len, const nxl_kv_layout_t *remote, const nxl_kv_layout_t *local,
        size_t lyr)
{
    uint64_t src_dev = nxl__kv_dev(remote, lyr);
    uint64_t dst_dev = nxl__kv_dev(local, lyr);

    return wide_is_remote ? nxl__kv_dlists_push(d, w, s, len, src_dev, dst_dev)
                          : nxl__kv_dlists_push(d, s, w, len, src_dev, dst_dev);
}

/* tp_build emits the pairs: for every block pair, layer and outer, the
 * slice `slice` (of k) of the wide side's region against the whole narrow
 * region. wide_is_remote says which side is the READ source (out->src is
 * always the remote side). */
static nxl_status_t
tp_build(const nxl_kv_layout_t *local, const size_t *local_ids,
         const nxl_kv_layout_t *remote, const size_t *remote_ids, size_t n,
         size_t slice, int head_major, int wide_is_remote, nxl_kv_dlists_t *out)
{
    const nxl_kv_layout_t *wide = wide_is_remote ? remote : local;
    const nxl_kv_layout_t *narrow = wide_is_remote ? local : remote;
    size_t nl = local->cfg.num_layers, no = local->cfg.outer_dim;
    size_t page = local->cfg.page_size;
    size_t nrow = narrow->cfg.inner_dim * narrow->cfg.dtype_width_bytes;
    size_t wrow = wide->cfg.inner_dim * wide->cfg.dtype_width_bytes;
    size_t nregion = narrow->region_size;
    nxl_kv_dlists_t d = {0};
    size_t i, lyr, o, t;
    nxl_status_t st = NXL_OK;

    d.src_mem = remote->mem;
    d.dst_mem = local->mem;
    for (i = 0; i < n && st == NXL_OK; i++) {
        size_t wb = wide_is_remote ? remote_ids[i] : local_ids[i];
        size_t nb = wide_is_remote ? local_ids[i] : remote_ids[i];

        for (lyr = 0; lyr < nl && st == NXL_OK; lyr++) {
            for (o = 0; o < no && st == NXL_OK; o++) {
                uint64_t wa = nxl__kv_addr(wide, wb, lyr, o);
                uint64_t na = nxl__kv_addr(narrow, nb, lyr, o);

                if (head_major) {
                    /* [heads][page][head_dim]: the slice is heads
                     * [slice*h, (slice+1)*h), one contiguous range. */
                    uint64_t w = wa + slice * nregion;

                    st = tp_push(&d, wide_is_remote, w, na, nregion, remote,
                                 local, lyr);
                    continue;
                }
                /* [page][inner]: token t's slice sits at t*wrow +
                 * slice*nrow on the wide side, t*nrow on the narrow. */
                for (t = 0; t < page && st == NXL_OK; t++) {
                    uint64_t w = wa + t * wrow + slice * nrow;
                    uint64_t s = na + t * nrow;

                    st = tp_push(&d, wide_is_remote, w, s, nrow, remote, local,
                                 lyr);
                }
            }
        }
    }
    if (st != NXL_OK) {
        nxl_kv_dlists_free(&d);
        return st;
    }
    *out = d;
    return NXL_OK;
}

/* tp_slices is the shared body of the two public builders: it checks the
 * ranks (tp_decode a multiple of tp_prefill when wide_is_remote, the
 * reverse otherwise; rank below the larger of the two) and builds the
 * slice lists of rank's slice of the wide side into *out (written only on
 * success). Error texts name op and the parameters as the caller spells
 * them. Thread-safe. */
static nxl_status_t
tp_slices(const char *op, const nxl_kv_layout_t *local, const size_t *local_ids,
          const nxl_kv_layout_t *remote, const size_t *remote_ids, size_t n,
          unsigned tp_prefill, unsigned tp_decode, unsigned rank,
          int head_major, int wide_is_remote, nxl_kv_dlists_t *out)
{
    /* The wide side runs on the fewer ranks (few); each of its ranks
     * holds k = many / few slices, one per rank of the narrow side. */
    unsigned many = wide_is_remote ? tp_decode : tp_prefill;
    unsigned few = wide_is_remote ? tp_prefill : tp_decode;
    const char *many_name = wide_is_remote ? "tp_decode" : "tp_prefill";
    const char *few_name = wide_is_remote ? "tp_prefill" : "tp_decode";
    size_t k;
    nxl_status_t st;

    if (tp_prefill == 0 || tp_decode == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "tp: tp_prefill (%u) and tp_decode (%u) must be at "
                         "least 1",
                         tp_prefill, tp_decode);
    }
    if (many < few || many % few != 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "tp: %s needs %s (%u) to be a multiple of %s (%u)", op,
                         many_name, many, few_name, few);
    }
    if (rank >= many) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "tp: %s %u out of range (%s %u)",
                         wide_is_remote ? "decode_rank" : "prefill_rank", rank,
                         many_name, many);
    }
    k = many / few;
    st = tp_check(local, local_ids, remote, remote_ids, n,
                  wide_is_remote ? remote : local,
                  wide_is_remote ? local : remote, k,
                  wide_is_remote ? "remote" : "local",
                  wide_is_remote ? "local" : "remote", out);
    if (st != NXL_OK) {
        return st;
    }
    return tp_build(local, local_ids, remote, remote_ids, n, rank % k,
                    head_major, wide_is_remote, out);
}

/* nxl_kv_tp_read_slices: see nxl_kv.h. *out is overwritten and written
 * only on success; free it with nxl_kv_dlists_free. Thread-safe. Returns
 * NXL_OK, NXL_ERR_INVALID_PARAM (dimension, rank or id at fault) or
 * NXL_ERR_NOMEM. */
NXL_API nxl_status_t
nxl_kv_tp_read_slices(const nxl_kv_layout_t *local, const size_t *local_ids,
                      const nxl_kv_layout_t *remote, const size_t *remote_ids,
                      size_t n, unsigned tp_prefill, unsigned tp_decode,
                      unsigned decode_rank, int head_major,
                      nxl_kv_dlists_t *out)
{
    return tp_slices("read_slices", local, local_ids, remote, remote_ids, n,
                     tp_prefill, tp_decode, decode_rank, head_major, 1, out);
}

/* nxl_kv_tp_gather_slices: see nxl_kv.h. *out is overwritten and written
 * only on success; free it with nxl_kv_dlists_free. Thread-safe. Returns
 * NXL_OK, NXL_ERR_INVALID_PARAM or NXL_ERR_NOMEM. */
NXL_API nxl_status_t
nxl_kv_tp_gather_slices(const nxl_kv_layout_t *local, const size_t *local_ids,
                        const nxl_kv_layout_t *remote, const size_t *remote_ids,
                        size_t n, unsigned tp_prefill, unsigned tp_decode,
                        unsigned prefill_rank, int head_major,
                        nxl_kv_dlists_t *out)
{
    return tp_slices("gather_slices", local, local_ids, remote, remote_ids, n,
                     tp_prefill, tp_decode, prefill_rank, head_major, 0, out);
}
