/*
 * btree.h - an ordered set of byte ranges, keyed by (dev, addr, len, tie),
 * with exact, cover and overlap lookups, ordered iteration, and an insert
 * that can refuse overlaps in its own descent.
 *
 * A range never spans devices: dev is the high part of the coordinate, so
 * (dev, addr) orders lexicographically and a range is [(dev, addr),
 * (dev, addr + len)). Ranges may overlap (the caller decides whether that
 * is allowed). tie orders nodes of equal (dev, addr, len): a caller that
 * keeps such duplicates apart sets it (e.g. to the node's address), one
 * that wants them refused leaves it 0; insert refuses an equal key.
 *
 * The set is a B+tree: leaves hold up to NXL__BTREE_FAN keys (copied next
 * to each other, so a search reads a few adjacent lines) with pointers to
 * the caller's nodes; inner blocks hold up to NXL__BTREE_FAN children
 * with, for each, the smallest key it may hold and the largest (dev, addr
 * + len) below it. Leaves are linked in key order, and each node points
 * back at its leaf, so removing a node and stepping to the next one need
 * no search. A lookup among 100,000 ranges touches 3-4 blocks, the upper
 * ones cached.
 *
 * The caller embeds an nxl__bnode_t in its own struct, sets its key, gets
 * back to the struct with NXL__BNODE_OF, and must not change the key while
 * the node is in a tree. The tree allocates and frees only its blocks, so
 * an insert can fail (NXL_ERR_NOMEM); blocks come from malloc or a pool
 * set (util/pool.h). Not thread-safe: the caller locks.
 */
#ifndef NXL_UTIL_BTREE_H
#define NXL_UTIL_BTREE_H

#include <nxl/nxl.h>

#include "pool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NXL__BTREE_FAN 16

struct nxl__bleaf;

typedef struct nxl__bnode {
    uint64_t dev, addr, len; /* the range; addr + len must not wrap */
    uint64_t tie;            /* last part of the key (usually 0) */
    struct nxl__bleaf *leaf; /* private: the leaf holding it, or NULL */
} nxl__bnode_t;

typedef struct nxl__btree {
    void *top;       /* private: the root block, NULL when empty */
    unsigned levels; /* private: inner levels above the leaves */
    size_t count;
    nxl__pools_t *pools; /* private: where blocks come from (NULL: malloc) */
} nxl__btree_t;

/* NXL__BNODE_OF returns the struct of type type whose member field is the
 * node n (NULL for NULL). */
#define NXL__BNODE_OF(n, type, field)                                          \
    ((n) == NULL ? (type *)NULL                                                \
                 : (type *)(void *)((char *)(n)-offsetof(type, field)))

/* nxl__btree_init makes t empty (it holds no memory until an insert);
 * its blocks will come from malloc. */
void nxl__btree_init(nxl__btree_t *t);

/* nxl__btree_init_pools is nxl__btree_init with blocks from pools (NULL:
 * malloc), which must outlive t's blocks; the tree's caller's lock then
 * covers pools too unless pools is a locked set (util/pool.h). */
void nxl__btree_init_pools(nxl__btree_t *t, nxl__pools_t *pools);

/* nxl__btree_fini frees t's blocks and leaves it empty. The nodes stay
 * the caller's (free them first or after: fini does not read them). */
void nxl__btree_fini(nxl__btree_t *t);

/* nxl__btree_insert adds n with the key set in n->dev, n->addr, n->len
 * (len > 0, addr + len not wrapping) and n->tie, in one descent. Without
 * excl it refuses only a node with the same key; with excl (a tree whose
 * ranges do not overlap, kept so) any node sharing a byte with n's range.
 * Returns NXL_OK; NXL_ERR_NOT_ALLOWED with *in_way_p the node in the way
 * and no message; or NXL_ERR_NOMEM with a message (t is then unchanged).
 * A node not added has n->leaf NULL (unless it was a member already). */
nxl_status_t nxl__btree_insert(nxl__btree_t *t, nxl__bnode_t *n, bool excl,
                               nxl__bnode_t **in_way_p);

/* nxl__btree_remove takes n (a member of t) out of t, without a search.
 * A node that is in no tree (n->leaf NULL) is left alone. Never fails. */
void nxl__btree_remove(nxl__btree_t *t, nxl__bnode_t *n);

/* nxl__btree_find returns the node with exactly this key, or NULL. */
nxl__bnode_t *nxl__btree_find(const nxl__btree_t *t, uint64_t dev,
                              uint64_t addr, uint64_t len, uint64_t tie);

/* nxl__btree_cover returns a node whose range holds all of [addr, addr +
 * len) on dev, or NULL. len must be > 0 and addr + len not wrap. */
nxl__bnode_t *nxl__btree_cover(const nxl__btree_t *t, uint64_t dev,
                               uint64_t addr, uint64_t len);

/* nxl__btree_overlap returns a node sharing at least one byte with [addr,
 * addr + len) on dev, or NULL. Same conditions as cover. */
nxl__bnode_t *nxl__btree_overlap(const nxl__btree_t *t, uint64_t dev,
                                 uint64_t addr, uint64_t len);

/* nxl__btree_first returns the smallest node, or NULL when t is empty. */
nxl__bnode_t *nxl__btree_first(const nxl__btree_t *t);

/* nxl__btree_next returns the node after n (a member of a tree) in key
 * order, or NULL. */
nxl__bnode_t *nxl__btree_next(const nxl__bnode_t *n);

/* nxl__btree_check verifies t's order, separators, fill, levels, parent
 * and leaf links, subtree maxima, back pointers and count (tests).
 * Returns 0 when sound. */
int nxl__btree_check(const nxl__btree_t *t);

#endif /* NXL_UTIL_BTREE_H */
