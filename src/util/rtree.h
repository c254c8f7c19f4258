/*
 * rtree.h - ordered sets of byte ranges, in two shapes with one set of
 * semantics (exact, cover and overlap lookups, ordered iteration, an
 * insert that can refuse overlaps in its own descent):
 *
 *   nxl__rtree_t  an AVL tree of intrusive nodes; never allocates.
 *   nxl__btree_t  a B+tree of wide blocks (below); allocates its blocks,
 *                 so an insert can fail, but a lookup among 100,000 ranges
 *                 touches 3-4 blocks, the upper ones cached, where the AVL
 *                 tree touches ~17 nodes spread over the caller's memory.
 *
 * nxl__rtree_t: an AVL tree of intrusive nodes keyed by (dev, addr, len),
 * each node carrying the largest (dev, end) of its subtree, so that "which range covers [addr, addr + len)" and "does
 * anything overlap it" are O(log n), as are insert and remove in any order.
 *
 * A range never spans devices: dev is the high part of the coordinate, so
 * (dev, addr) orders lexicographically and a range is [(dev, addr),
 * (dev, addr + len)). Ranges may overlap (the caller decides whether that
 * is allowed). tie orders nodes of equal (dev, addr, len): a caller that
 * keeps such duplicates apart sets it (e.g. to the node's address), one
 * that wants them refused leaves it 0; insert refuses an equal key. (All
 * of this paragraph holds for nxl__btree_t too.)
 *
 * The tree owns nothing: the caller embeds an nxl__rnode_t in its own
 * struct, allocates and frees it, and gets back to the struct with
 * NXL__RNODE_OF. Not thread-safe: the caller locks.
 */
#ifndef NXL_UTIL_RTREE_H
#define NXL_UTIL_RTREE_H

#include <nxl/nxl.h>

#include <stdbool.h>
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

/* --- nxl__btree_t -------------------------------------------------------- */

/*
 * The same ordered set of ranges, keyed by (dev, addr, len, tie), kept in a
 * B+tree: leaves hold up to NXL__BTREE_FAN keys (copied next to each other,
 * so a search reads a few adjacent lines) with pointers to the caller's
 * nodes; inner blocks hold up to NXL__BTREE_FAN children with, for each,
 * the smallest key it may hold and the largest (dev, addr + len) below it.
 * Leaves are linked in key order, and each node points back at its leaf,
 * so removing a node and stepping to the next one need no search.
 *
 * The caller embeds an nxl__bnode_t in its own struct, sets its key, and
 * must not change the key while the node is in a tree. The tree allocates
 * and frees only its blocks. Not thread-safe: the caller locks.
 */
#define NXL__BTREE_FAN 16

struct nxl__bleaf;

typedef struct nxl__bnode {
    uint64_t dev, addr, len;  /* the range; addr + len must not wrap */
    uint64_t tie;             /* last part of the key (usually 0) */
    struct nxl__bleaf *leaf;  /* private: the leaf holding it, or NULL */
} nxl__bnode_t;

typedef struct nxl__btree {
    void *top;                /* private: the root block, NULL when empty */
    unsigned levels;          /* private: inner levels above the leaves */
    size_t count;
} nxl__btree_t;

/* NXL__BNODE_OF returns the struct of type type whose member field is the
 * node n (NULL for NULL). */
#define NXL__BNODE_OF(n, type, field) NXL__RNODE_OF(n, type, field)

/* nxl__btree_init makes t empty (it holds no memory until an insert). */
void nxl__btree_init(nxl__btree_t *t);

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

#endif /* NXL_UTIL_RTREE_H */
