/*
 * rtree.h - an ordered set of byte ranges: an AVL tree of intrusive nodes
 * keyed by (dev, addr, len), each node carrying the largest (dev, end) of
 * its subtree, so that "which range covers [addr, addr + len)" and "does
 * anything overlap it" are O(log n), as are insert and remove in any order.
 *
 * A range never spans devices: dev is the high part of the coordinate, so
 * (dev, addr) orders lexicographically and a range is [(dev, addr),
 * (dev, addr + len)). Ranges may overlap (the caller decides whether that
 * is allowed). tie orders nodes of equal (dev, addr, len): a caller that
 * keeps such duplicates apart sets it (e.g. to the node's address), one
 * that wants them refused leaves it 0; insert refuses an equal key.
 *
 * The tree owns nothing: the caller embeds an nxl__rnode_t in its own
 * struct, allocates and frees it, and gets back to the struct with
 * NXL__RNODE_OF. Not thread-safe: the caller locks.
 */
#ifndef NXL_UTIL_RTREE_H
#define NXL_UTIL_RTREE_H

#include <stddef.h>
#include <stdint.h>

/* What a descent reads (the key and the child links) comes first, so a
 * node that starts a cache line costs one line per level. */
typedef struct nxl__rnode {
    uint64_t dev, addr, len; /* the range; addr + len must not wrap */
    uint64_t tie;            /* last part of the key (usually 0) */
    struct nxl__rnode *left, *right, *parent;
    int height;
    uint64_t mdev, mend;     /* the largest (dev, addr + len) below here */
} nxl__rnode_t;

typedef struct nxl__rtree {
    nxl__rnode_t *root;
    size_t count;
} nxl__rtree_t;

/* NXL__RNODE_OF returns the struct of type type whose member field is the
 * node n (NULL for NULL). */
#define NXL__RNODE_OF(n, type, field)                                         \
    ((n) == NULL ? (type *)NULL                                               \
                 : (type *)(void *)((char *)(n) - offsetof(type, field)))

/* nxl__rtree_init makes t empty. */
void nxl__rtree_init(nxl__rtree_t *t);

/* nxl__rtree_insert adds n with the key set in n->dev, n->addr, n->len
 * (len > 0, addr + len not wrapping) and n->tie. Returns NULL when added,
 * or the node already in t with the same key (n is then not added). */
nxl__rnode_t *nxl__rtree_insert(nxl__rtree_t *t, nxl__rnode_t *n);

/* nxl__rtree_insert_excl is nxl__rtree_insert for a tree whose ranges do
 * not overlap, keeping it so: it returns a node sharing a byte with n's
 * range (n is then not added), or NULL when n was added. One descent: the
 * only candidates are the neighbours on n's path. */
nxl__rnode_t *nxl__rtree_insert_excl(nxl__rtree_t *t, nxl__rnode_t *n);

/* nxl__rtree_remove takes n (a member of t) out of t. */
void nxl__rtree_remove(nxl__rtree_t *t, nxl__rnode_t *n);

/* nxl__rtree_find returns the node with exactly this key, or NULL. */
nxl__rnode_t *nxl__rtree_find(const nxl__rtree_t *t, uint64_t dev,
                              uint64_t addr, uint64_t len, uint64_t tie);

/* nxl__rtree_cover returns a node whose range holds all of [addr, addr +
 * len) on dev, or NULL. len must be > 0 and addr + len not wrap. */
nxl__rnode_t *nxl__rtree_cover(const nxl__rtree_t *t, uint64_t dev,
                               uint64_t addr, uint64_t len);

/* nxl__rtree_overlap returns a node sharing at least one byte with [addr,
 * addr + len) on dev, or NULL. Same conditions as cover. */
nxl__rnode_t *nxl__rtree_overlap(const nxl__rtree_t *t, uint64_t dev,
                                 uint64_t addr, uint64_t len);

/* nxl__rtree_first returns the smallest node, or NULL when t is empty. */
nxl__rnode_t *nxl__rtree_first(const nxl__rtree_t *t);

/* nxl__rtree_next returns the node after n in key order, or NULL. */
nxl__rnode_t *nxl__rtree_next(const nxl__rnode_t *n);

/* nxl__rtree_check verifies t's order, balance, parent links, subtree
 * maxima and count (tests). Returns 0 when sound. */
int nxl__rtree_check(const nxl__rtree_t *t);

#endif /* NXL_UTIL_RTREE_H */
