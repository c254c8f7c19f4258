/*
 * validate.c - block-id validation of a transfer (Dynamo's validation.rs,
 * every check of its debug build), with its error texts.
 *
 * Order of the checks, as Dynamo's: lengths, destination uniqueness,
 * bounce uniqueness, src/dst disjointness (same layout object only), then
 * ranges of source, destination and bounce ids.
 */
#include "kv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for the id lists of the messages (nxl_last_error truncates longer
 * texts anyway). */
#define LIST_MAX 400

/* An id with the index it was seen at. */
typedef struct seen_id {
    size_t id;
    size_t idx;
} seen_id_t;

/* cmp_id_idx orders by id, then by index. */
static int
cmp_id_idx(const void *a, const void *b)
{
    const seen_id_t *x = a, *y = b;

    if (x->id != y->id) {
        return x->id < y->id ? -1 : 1;
    }
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

/* cmp_idx orders by index. */
static int
cmp_idx(const void *a, const void *b)
{
    const seen_id_t *x = a, *y = b;

    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

/* cmp_size orders size_t values. */
static int
cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;

    return x < y ? -1 : (x > y);
}

/* list_add appends ", id" (or "id" first) to buf at *len, ending the list
 * with "..." once it is full. */
static void
list_add(char *buf, size_t *len, size_t id)
{
    if (*len >= LIST_MAX) {
        return;
    }
    if (!nxl__text_addf(buf, LIST_MAX, len, "%s%zu", *len ? ", " : "", id)) {
        /* Full: mark the cut (buffer has LIST_MAX + 4 bytes). */
        memcpy(buf + LIST_MAX - 1, "...", 4);
        *len = LIST_MAX;
    }
}

/* Largest id range a bitmap is used for (16 MiB of bits); beyond it, or
 * when an id is out of range, the checks sort instead. */
#define BITMAP_MAX_IDS ((size_t)1 << 27)

/* bitmap_new returns a zeroed bitmap for ids below limit, or NULL when
 * limit is too large or memory is short (the caller then sorts). */
static uint64_t *
bitmap_new(size_t limit)
{
    if (limit == 0 || limit > BITMAP_MAX_IDS) {
        return NULL;
    }
    return calloc((limit + 63) / 64, sizeof(uint64_t));
}

/* bitmap_set sets bit id and returns whether it was already set. */
static inline int
bitmap_set(uint64_t *bm, size_t id)
{
    uint64_t bit = (uint64_t)1 << (id & 63);
    int was = (bm[id >> 6] & bit) != 0;

    bm[id >> 6] |= bit;
    return was;
}

/* bitmap_scan walks ids over bm (bits for ids below limit), setting each
 * id's bit when mark: -1 at the first id out of range, 0 at the first id
 * whose bit was already set when stop_on_set, else 1. */
static int
bitmap_scan(uint64_t *bm, const size_t *ids, size_t n, size_t limit, bool mark,
            bool stop_on_set)
{
    size_t i;
    int was;

    for (i = 0; i < n; i++) {
        if (ids[i] >= limit) {
            return -1;
        }
        was = mark ? bitmap_set(bm, ids[i])
                   : (bm[ids[i] >> 6] & ((uint64_t)1 << (ids[i] & 63))) != 0;
        if (was && stop_on_set) {
            return 0;
        }
    }
    return 1;
}

/* ids_distinct_fast answers "are ids all distinct?" in one pass over a
 * bitmap when every id is below limit: 1 yes, 0 no, -1 cannot tell (an id
 * out of range, limit too large, no memory). The common case (no
 * duplicates) then costs O(n) instead of a sort. */
static int
ids_distinct_fast(const size_t *ids, size_t n, size_t limit)
{
    uint64_t *bm = bitmap_new(limit);
    int res;

    if (bm == NULL) {
        return -1;
    }
    res = bitmap_scan(bm, ids, n, limit, true, true);
    free(bm);
    return res;
}

/* ids_disjoint_fast answers "do src and dst share no id?" like
 * ids_distinct_fast: 1 disjoint, 0 not, -1 cannot tell. */
static int
ids_disjoint_fast(const size_t *src, const size_t *dst, size_t n, size_t limit)
{
    uint64_t *bm = bitmap_new(limit);
    int res;

    if (bm == NULL) {
        return -1;
    }
    res = bitmap_scan(bm, src, n, limit, true, false);
    if (res == 1) {
        res = bitmap_scan(bm, dst, n, limit, false, true);
    }
    free(bm);
    return res;
}

/* check_unique fails with "<what> block IDs are not unique: duplicates =
 * [a, b]" when ids has repeats, each reported once in first-seen order. */
static nxl_status_t
check_unique(const size_t *ids, size_t n, size_t limit, const char *what)
{
    char list[LIST_MAX + 4];
    seen_id_t *v;
    size_t i, j, ndup = 0, len = 0;

    if (n < 2 || ids_distinct_fast(ids, n, limit) == 1) {
        return NXL_OK;
    }
    v = calloc(n, sizeof(*v));
    if (v == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "kv validate: out of memory");
    }
    for (i = 0; i < n; i++) {
        v[i] = (seen_id_t){.id = ids[i], .idx = i};
    }
    qsort(v, n, sizeof(*v), cmp_id_idx);
    /* Keep one entry (the first occurrence) per repeated id. */
    for (i = 0; i < n; i = j) {
        for (j = i + 1; j < n && v[j].id == v[i].id; j++) {
        }
        if (j - i > 1) {
            v[ndup++] = v[i];
        }
    }
    if (ndup == 0) {
        free(v);
        return NXL_OK;
    }
    qsort(v, ndup, sizeof(*v), cmp_idx);
    list[0] = '\0';
    for (i = 0; i < ndup; i++) {
        list_add(list, &len, v[i].id);
    }
    free(v);
    return nxl__fail(NXL_ERR_INVALID_PARAM,
                     "%s block IDs are not unique: duplicates = [%s]", what,
                     list);
}

/* check_disjoint fails with "Source and destination blocks overlap (same
 * layout): overlapping = [..]" (destination order) when a dst id is also a
 * src id. */
static nxl_status_t
check_disjoint(const size_t *src, const size_t *dst, size_t n, size_t limit)
{
    char list[LIST_MAX + 4];
    size_t *sorted, i, len = 0, nover = 0;

    if (n == 0 || ids_disjoint_fast(src, dst, n, limit) == 1) {
        return NXL_OK;
    }
    sorted = calloc(n, sizeof(*sorted));
    if (sorted == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "kv validate: out of memory");
    }
    memcpy(sorted, src, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), cmp_size);
    list[0] = '\0';
    for (i = 0; i < n; i++) {
        if (bsearch(&dst[i], sorted, n, sizeof(*sorted), cmp_size) != NULL) {
            list_add(list, &len, dst[i]);
            nover++;
        }
    }
    free(sorted);
    if (nover == 0) {
        return NXL_OK;
    }
    return nxl__fail(NXL_ERR_INVALID_PARAM,
                     "Source and destination blocks overlap (same layout): "
                     "overlapping = [%s]",
                     list);
}

/* check_range fails with "Block ID b out of range for <name> (max=n)"
 * (Dynamo's BlockOutOfRange text) for the first id not below l's
 * num_blocks. */
static nxl_status_t
check_range(const size_t *ids, size_t n, const nxl_kv_layout_t *l,
            const char *name)
{
    size_t i, max = l->cfg.num_blocks;

    for (i = 0; i < n; i++) {
        if (ids[i] >= max) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "Block ID %zu out of range for %s (max=%zu)",
                             ids[i], name, max);
        }
    }
    return NXL_OK;
}

/* nxl_kv_validate checks the block ids of a transfer (see nxl_kv.h):
 * equal lengths (bounce ids, when given, as many as src), unique dst and
 * bounce ids, disjoint src/dst ids when src and dst are the same layout
 * object, every id in range of its layout (bounce ids only with a bounce
 * layout). Returns NXL_OK, NXL_ERR_INVALID_PARAM with Dynamo's message, or
 * NXL_ERR_NOMEM. Thread-safe (reads only). */
NXL_API nxl_status_t
nxl_kv_validate(const nxl_kv_layout_t *src, const size_t *src_ids, size_t n_src,
                const nxl_kv_layout_t *dst, const size_t *dst_ids, size_t n_dst,
                const nxl_kv_layout_t *bounce, const size_t *bounce_ids,
                size_t n_bounce)
{
    nxl_status_t st;

    if (src == NULL || dst == NULL ||
        !nxl__kv_array_ok(src_ids, n_src, sizeof(*src_ids)) ||
        !nxl__kv_array_ok(dst_ids, n_dst, sizeof(*dst_ids)) ||
        !nxl__kv_array_ok(bounce_ids, n_bounce, sizeof(*bounce_ids))) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv validate: NULL argument or an impossible count");
    }
    if (n_src != n_dst || (bounce_ids != NULL && n_bounce != n_src)) {
        if (bounce_ids == NULL) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "Block ID lists have mismatched lengths: src=%zu, "
                             "dst=%zu, bounce=None",
                             n_src, n_dst);
        }
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Block ID lists have mismatched lengths: src=%zu, "
                         "dst=%zu, bounce=Some(%zu)",
                         n_src, n_dst, n_bounce);
    }
    st = check_unique(dst_ids, n_dst, dst->cfg.num_blocks, "Destination");
    if (st == NXL_OK && bounce_ids != NULL) {
        st =
            check_unique(bounce_ids, n_bounce,
                         bounce != NULL ? bounce->cfg.num_blocks : 0, "Bounce");
    }
    if (st == NXL_OK && src == dst) {
        st = check_disjoint(src_ids, dst_ids, n_src, src->cfg.num_blocks);
    }
    if (st == NXL_OK) {
        st = check_range(src_ids, n_src, src, "source");
    }
    if (st == NXL_OK) {
        st = check_range(dst_ids, n_dst, dst, "destination");
    }
    if (st == NXL_OK && bounce != NULL && bounce_ids != NULL) {
        st = check_range(bounce_ids, n_bounce, bounce, "bounce");
    }
    return st;
}
