/* index.c - the region indexes of the agent (local regions per memory
 * kind) and of each peer: range trees (src/util/btree.h) whose elements
 * start with a node and the region's descriptor. Used by registration,
 * metadata loads, prepared lists and peer unloads; calls nothing else in
 * core. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

/* The elements of an index start with this header (nxl__region_t and
 * nxl__rregion_t both do). */
typedef struct {
    nxl__bnode_t node;
    nxl_desc_t desc;
} ix_head_t;

#define IX_ELEM(n) NXL__BNODE_OF(n, ix_head_t, node)

void
nxl__index_init(nxl__index_t *ix, size_t elem_size, nxl__pools_t *pools)
{
    nxl__btree_init_pools(&ix->tree, pools);
    ix->elem_size = elem_size;
}

void
nxl__index_fini(nxl__index_t *ix)
{
    nxl__bnode_t *n, *next;

    /* The tree is dropped whole: free the elements in order, then its
     * blocks. */
    for (n = nxl__btree_first(&ix->tree); n != NULL; n = next) {
        next = nxl__btree_next(n);
        nxl__pools_free(ix->tree.pools, IX_ELEM(n));
    }
    nxl__btree_fini(&ix->tree);
}

size_t
nxl__index_count(const nxl__index_t *ix)
{
    return ix->tree.count;
}

void *
nxl__index_first(const nxl__index_t *ix)
{
    return IX_ELEM(nxl__btree_first(&ix->tree));
}

void *
nxl__index_next(const nxl__index_t *ix, const void *elem)
{
    (void)ix;
    return IX_ELEM(nxl__btree_next(&((const ix_head_t *)elem)->node));
}

/* covers says whether element e holds [addr, addr + len) on dev. */
static bool
covers(const ix_head_t *e, uint64_t addr, uint64_t len, uint64_t dev)
{
    const nxl_desc_t *r = &e->desc;

    return r->dev_id == dev && addr >= r->addr && len <= r->len &&
           addr - r->addr <= r->len - len;
}

void *
nxl__index_find_cover(const nxl__index_t *ix, uint64_t addr, uint64_t len,
                      uint64_t dev, void **hint)
{
    const ix_head_t *h = *hint, *e;

    if (len == 0 || addr + len < addr) {
        return NULL;
    }
    /* Descriptor lists are usually sorted: try the last hit and its
     * successor before searching. */
    if (h != NULL) {
        if (covers(h, addr, len, dev)) {
            return (void *)h;
        }
        e = IX_ELEM(nxl__btree_next(&h->node));
        if (e != NULL && covers(e, addr, len, dev)) {
            *hint = (void *)e;
            return (void *)e;
        }
    }
    e = IX_ELEM(nxl__btree_cover(&ix->tree, dev, addr, len));
    if (e != NULL) {
        *hint = (void *)e;
    }
    return (void *)e;
}

void *
nxl__index_find_exact(const nxl__index_t *ix, const nxl_desc_t *d)
{
    return IX_ELEM(nxl__btree_find(&ix->tree, d->dev_id, d->addr, d->len, 0));
}

void *
nxl__index_find_overlap(const nxl__index_t *ix, const nxl_desc_t *d)
{
    if (d->len == 0 || d->addr + d->len < d->addr) {
        return NULL;
    }
    return IX_ELEM(nxl__btree_overlap(&ix->tree, d->dev_id, d->addr, d->len));
}

nxl_status_t
nxl__index_add(nxl__index_t *ix, const void *elem, bool excl, void **elem_p)
{
    return nxl__index_add_ext(ix, elem, 0, excl, elem_p);
}

nxl_status_t
nxl__index_add_ext(nxl__index_t *ix, const void *elem, size_t extra, bool excl,
                   void **elem_p)
{
    const nxl_desc_t *d = &((const ix_head_t *)elem)->desc;
    nxl__bnode_t *in_way = NULL;
    nxl_status_t st;
    ix_head_t *e;

    if (d->len == 0 || d->addr + d->len < d->addr) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "registry: region 0x%llx+%llu is empty or wraps",
                         (unsigned long long)d->addr,
                         (unsigned long long)d->len);
    }
    /* The tree keeps its own copy of the keys: a search reads no
     * element, so elements need no alignment. */
    e = nxl__pools_alloc(ix->tree.pools, ix->elem_size + extra, false);
    if (e == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "registry: out of memory");
    }
    memcpy(e, elem, ix->elem_size);
    memset((char *)e + ix->elem_size, 0, extra);
    e->node.dev = d->dev_id;
    e->node.addr = d->addr;
    e->node.len = d->len;
    e->node.tie = 0;
    st = nxl__btree_insert(&ix->tree, &e->node, excl, &in_way);
    if (st != NXL_OK) {
        nxl__pools_free(ix->tree.pools, e);
        if (st == NXL_ERR_NOT_ALLOWED) {
            *elem_p = IX_ELEM(in_way);
        }
        return st;
    }
    *elem_p = e;
    return NXL_OK;
}

void
nxl__index_remove(nxl__index_t *ix, void *elem)
{
    nxl__btree_remove(&ix->tree, &((ix_head_t *)elem)->node);
    nxl__pools_free(ix->tree.pools, elem);
}
