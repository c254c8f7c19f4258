/* btree.c - the ordered range set of btree.h: a B+tree of ranges. */
#include "util.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* pos_lt orders two (dev, offset) coordinates. */
static inline bool
pos_lt(uint64_t d1, uint64_t a1, uint64_t d2, uint64_t a2)
{
    return d1 < d2 || (d1 == d2 && a1 < a2);
}

#define BT_FAN NXL__BTREE_FAN
#define BT_HALF (BT_FAN / 2)
/* The fewest keys (leaf) or children (inner) of a block other than the
 * root. A quarter, not a half: a block that shrinks merges or borrows less
 * often, and a lookup still reads at most log4(n) blocks. */
#define BT_MIN (BT_FAN / 4)
#define BT_MAX_LEVELS 32 /* log4(2^64) */

/* A key: (dev, addr, len, tie). Blocks keep theirs side by side, two to a
 * cache line: a binary search among 16 reads 4 lines and finds len and
 * tie next to addr; a shift moves one run. */
typedef struct bt_key {
    uint64_t dev, addr, len, tie;
} bt_key_t;

typedef struct bt_inner bt_inner_t;

/* What both kinds of block start with. */
typedef struct bt_head {
    bt_inner_t *parent; /* NULL at the root */
    unsigned n;         /* keys (leaf) or children (inner) */
} bt_head_t;

/* A leaf: n keys in order and the nodes they belong to; leaves are linked
 * in key order. */
struct nxl__bleaf {
    bt_head_t h;
    struct nxl__bleaf *prev, *next;
    bt_key_t k[BT_FAN];
    nxl__bnode_t *node[BT_FAN];
};
typedef struct nxl__bleaf bt_leaf_t;

/* An inner block of n children. For i >= 1, k[i] separates: every key
 * under child[i - 1] is below it, none under child[i] is (k[0] is unused,
 * except while a block split off is handed to its parent, when it holds
 * the separator for it). (mdev, mend)[i] is the largest (dev, addr + len)
 * under child[i]. */
struct bt_inner {
    bt_head_t h;
    bt_key_t k[BT_FAN];
    uint64_t mdev[BT_FAN], mend[BT_FAN];
    void *child[BT_FAN];
};

#define BT_HEAD(b) ((bt_head_t *)(b))

/* bt_cmp orders key i of k against x. */
static inline int
bt_cmp(const bt_key_t *k, unsigned i, const bt_key_t *x)
{
    if (k[i].dev != x->dev) {
        return k[i].dev < x->dev ? -1 : 1;
    }
    if (k[i].addr != x->addr) {
        return k[i].addr < x->addr ? -1 : 1;
    }
    if (k[i].len != x->len) {
        return k[i].len < x->len ? -1 : 1;
    }
    if (k[i].tie != x->tie) {
        return k[i].tie < x->tie ? -1 : 1;
    }
    return 0;
}

/* bt_kmove moves cnt keys from index from of src to index to of dst (the
 * same block or another; ranges may overlap). */
static inline void
bt_kmove(bt_key_t *dst, unsigned to, const bt_key_t *src, unsigned from,
         unsigned cnt)
{
    memmove(&dst[to], &src[from], cnt * sizeof(*dst));
}

/* bt_prefetch_block asks for every line that a search of block b (a leaf
 * when leaf) may read, its keys and its child or node pointers, at once:
 * among many ranges the lower blocks are not cached, and a binary search
 * would otherwise wait for its lines one probe after another. */
static inline void
bt_prefetch_block(const void *b, bool leaf)
{
    const char *c = (const char *)((uintptr_t)b & ~(uintptr_t)63);
    const char *end = (const char *)b +
                      (leaf ? sizeof(bt_leaf_t) : offsetof(bt_inner_t, mdev));

    for (; c < end; c += 64) {
        __builtin_prefetch(c);
    }
    if (!leaf) {
        __builtin_prefetch(&((const bt_inner_t *)b)->child[0]);
        __builtin_prefetch(&((const bt_inner_t *)b)->child[BT_FAN - 1]);
    }
}

/* bt_lower returns the first index in [0, n) whose key is not below x, or
 * n. */
static unsigned
bt_lower(const bt_key_t *k, unsigned n, const bt_key_t *x)
{
    unsigned lo = 0, hi = n, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if (bt_cmp(k, mid, x) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* bt_route returns the child of p that may hold x: the last i whose
 * separator k[i] is not above x (0 when x is below k[1]). */
static unsigned
bt_route(const bt_inner_t *p, const bt_key_t *x)
{
    unsigned lo = 1, hi = p->h.n, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if (bt_cmp(p->k, mid, x) <= 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo - 1;
}

/* bt_max sets (*d, *e) to the largest (dev, addr + len) in block b (a leaf
 * when leaf), which is not empty. */
static void
bt_max(const void *b, bool leaf, uint64_t *d, uint64_t *e)
{
    const bt_leaf_t *l = b;
    const bt_inner_t *p = b;
    uint64_t md, me, xd, xe;
    unsigned i;

    if (leaf) {
        md = l->k[0].dev;
        me = l->k[0].addr + l->k[0].len;
    } else {
        md = p->mdev[0];
        me = p->mend[0];
    }
    for (i = 1; i < BT_HEAD(b)->n; i++) {
        if (leaf) {
            xd = l->k[i].dev;
            xe = l->k[i].addr + l->k[i].len;
        } else {
            xd = p->mdev[i];
            xe = p->mend[i];
        }
        if (pos_lt(md, me, xd, xe)) {
            md = xd;
            me = xe;
        }
    }
    *d = md;
    *e = me;
}

/* bt_slot returns the index of child c in p. */
static unsigned
bt_slot(const bt_inner_t *p, const void *c)
{
    unsigned i = 0;

    while (p->child[i] != c) {
        i++;
    }
    return i;
}

/* bt_set_max stores child i's largest end in p. */
static void
bt_set_max(bt_inner_t *p, unsigned i, bool leaf)
{
    bt_max(p->child[i], leaf, &p->mdev[i], &p->mend[i]);
}

/* bt_refresh recomputes the maxima above block b (a leaf when leaf) level
 * by level, and stops at the first parent whose entry comes out as it
 * was: nothing above it changed either. */
static void
bt_refresh(void *b, bool leaf)
{
    bt_inner_t *p;
    uint64_t d, e;
    unsigned i;

    for (p = BT_HEAD(b)->parent; p != NULL; b = p, p = p->h.parent) {
        bt_max(b, leaf, &d, &e);
        leaf = false;
        i = bt_slot(p, b);
        if (p->mdev[i] == d && p->mend[i] == e) {
            return;
        }
        p->mdev[i] = d;
        p->mend[i] = e;
    }
}

/* bt_leaf_put puts n at index pos of l, which has room. */
static void
bt_leaf_put(bt_leaf_t *l, unsigned pos, nxl__bnode_t *n)
{
    bt_key_t x = {n->dev, n->addr, n->len, n->tie};
    unsigned tail = l->h.n - pos;

    bt_kmove(l->k, pos + 1, l->k, pos, tail);
    memmove(&l->node[pos + 1], &l->node[pos], tail * sizeof(l->node[0]));
    l->k[pos] = x;
    l->node[pos] = n;
    n->leaf = l;
    l->h.n++;
}

/* bt_inner_put puts child c (whose lower bound is sep and largest end
 * (d, e)) at index at of p, which has room; at >= 1. */
static void
bt_inner_put(bt_inner_t *p, unsigned at, const bt_key_t *sep, void *c,
             uint64_t d, uint64_t e)
{
    unsigned tail = p->h.n - at;

    bt_kmove(p->k, at + 1, p->k, at, tail);
    memmove(&p->mdev[at + 1], &p->mdev[at], tail * sizeof(p->mdev[0]));
    memmove(&p->mend[at + 1], &p->mend[at], tail * sizeof(p->mend[0]));
    memmove(&p->child[at + 1], &p->child[at], tail * sizeof(p->child[0]));
    p->k[at] = *sep;
    p->mdev[at] = d;
    p->mend[at] = e;
    p->child[at] = c;
    BT_HEAD(c)->parent = p;
    p->h.n++;
}

/* bt_inner_cut removes child at (>= 1) and its separator from p. */
static void
bt_inner_cut(bt_inner_t *p, unsigned at)
{
    unsigned tail = p->h.n - at - 1;

    bt_kmove(p->k, at, p->k, at + 1, tail);
    memmove(&p->mdev[at], &p->mdev[at + 1], tail * sizeof(p->mdev[0]));
    memmove(&p->mend[at], &p->mend[at + 1], tail * sizeof(p->mend[0]));
    memmove(&p->child[at], &p->child[at + 1], tail * sizeof(p->child[0]));
    p->h.n--;
}

/* bt_inner_take moves cnt children from index from of src to index to of
 * dst (keys, maxima and parent links; separators are the caller's; src
 * may be dst). */
static void
bt_inner_take(bt_inner_t *dst, unsigned to, bt_inner_t *src, unsigned from,
              unsigned cnt)
{
    unsigned i;

    bt_kmove(dst->k, to, src->k, from, cnt);
    memmove(&dst->mdev[to], &src->mdev[from], cnt * sizeof(dst->mdev[0]));
    memmove(&dst->mend[to], &src->mend[from], cnt * sizeof(dst->mend[0]));
    memmove(&dst->child[to], &src->child[from], cnt * sizeof(dst->child[0]));
    for (i = 0; dst != src && i < cnt; i++) {
        BT_HEAD(dst->child[to + i])->parent = dst;
    }
}

/* bt_leaf_take moves cnt keys from index from of src to index to of dst
 * (src may be dst), pointing their nodes at dst. */
static void
bt_leaf_take(bt_leaf_t *dst, unsigned to, bt_leaf_t *src, unsigned from,
             unsigned cnt)
{
    unsigned i;

    bt_kmove(dst->k, to, src->k, from, cnt);
    memmove(&dst->node[to], &src->node[from], cnt * sizeof(dst->node[0]));
    /* Only nodes that change leaves are written: they are the caller's
     * memory, likely out of cache. */
    for (i = 0; dst != src && i < cnt; i++) {
        dst->node[to + i]->leaf = dst;
    }
}

/* bt_empty makes t empty, keeping its pool set. */
static void
bt_empty(nxl__btree_t *t)
{
    t->top = NULL;
    t->levels = 0;
    t->count = 0;
}

void
nxl__btree_init(nxl__btree_t *t)
{
    nxl__btree_init_pools(t, NULL);
}

void
nxl__btree_init_pools(nxl__btree_t *t, nxl__pools_t *pools)
{
    bt_empty(t);
    t->pools = pools;
}

/* bt_free_sub frees block b and every block below it (levels inner levels
 * down to the leaves). */
static void
bt_free_sub(nxl__pools_t *pools, void *b, unsigned levels)
{
    bt_inner_t *p = b;
    unsigned i;

    if (levels > 0) {
        for (i = 0; i < p->h.n; i++) {
            bt_free_sub(pools, p->child[i], levels - 1);
        }
    }
    nxl__pools_free(pools, b);
}

void
nxl__btree_fini(nxl__btree_t *t)
{
    if (t->top != NULL) {
        bt_free_sub(t->pools, t->top, t->levels);
    }
    bt_empty(t);
}

/* bt_excl_in_way returns the node next to index pos of leaf l (where a
 * range [addr, end) on dev would go) that overlaps it, or NULL. Without
 * overlaps in the tree, starts and ends rise together: only the nearest
 * range on each side can reach it. */
static nxl__bnode_t *
bt_excl_in_way(const bt_leaf_t *l, unsigned pos, uint64_t dev, uint64_t addr,
               uint64_t end)
{
    const bt_leaf_t *pl = l, *sl = l;
    unsigned pi = pos, si = pos;

    if (pi == 0) {
        pl = l->prev;
        pi = pl != NULL ? pl->h.n : 0;
    }
    if (pl != NULL && pl->k[pi - 1].dev == dev &&
        pl->k[pi - 1].addr + pl->k[pi - 1].len > addr) {
        return pl->node[pi - 1];
    }
    if (si == l->h.n) {
        sl = l->next;
        si = 0;
    }
    if (sl != NULL && sl->k[si].dev == dev && sl->k[si].addr < end) {
        return sl->node[si];
    }
    return NULL;
}

/* bt_grow hangs block r, split off block l (leaves when leaf), right after
 * l in l's parent path[lv - 1] (idx[lv - 1] is l's index there), or under
 * a new root when l was the root. A full parent splits in turn, taking a
 * block from spare (the caller allocated one per full block on the path,
 * plus one for a new root). r's lower bound is r->k[0]. */
static void
bt_grow(nxl__btree_t *t, bt_inner_t **path, const unsigned *idx, unsigned lv,
        void *l, void *r, bool leaf, bt_inner_t **spare)
{
    uint64_t ld, le, rd, re;
    bt_inner_t *p, *q;
    bt_key_t sep;
    unsigned i;

    for (;;) {
        sep = leaf ? ((bt_leaf_t *)r)->k[0] : ((bt_inner_t *)r)->k[0];
        bt_max(l, leaf, &ld, &le);
        bt_max(r, leaf, &rd, &re);
        if (lv == 0) {
            p = *spare;
            p->h.parent = NULL;
            p->h.n = 1;
            p->child[0] = l;
            p->mdev[0] = ld;
            p->mend[0] = le;
            BT_HEAD(l)->parent = p;
            bt_inner_put(p, 1, &sep, r, rd, re);
            t->top = p;
            t->levels++;
            return;
        }
        p = path[lv - 1];
        i = idx[lv - 1];
        if (p->h.n < BT_FAN) {
            p->mdev[i] = ld;
            p->mend[i] = le;
            bt_inner_put(p, i + 1, &sep, r, rd, re);
            bt_refresh(p, false);
            return;
        }
        /* p is full: its upper half moves to q (q->k[0] is then the
         * separator for q), and r joins the half where l is. */
        q = *spare++;
        q->h.parent = NULL;
        bt_inner_take(q, 0, p, BT_HALF, BT_FAN - BT_HALF);
        q->h.n = BT_FAN - BT_HALF;
        p->h.n = BT_HALF;
        if (i < BT_HALF) {
            p->mdev[i] = ld;
            p->mend[i] = le;
            bt_inner_put(p, i + 1, &sep, r, rd, re);
        } else {
            q->mdev[i - BT_HALF] = ld;
            q->mend[i - BT_HALF] = le;
            bt_inner_put(q, i + 1 - BT_HALF, &sep, r, rd, re);
        }
        l = p;
        r = q;
        leaf = false;
        lv--;
    }
}

/* bt_split_put adds n at index pos of the full leaf l (path and idx lead
 * to it), splitting l and the full blocks above it. All blocks are
 * allocated before anything changes, so a failure leaves t as it was. */
static nxl_status_t
bt_split_put(nxl__btree_t *t, bt_inner_t **path, const unsigned *idx,
             bt_leaf_t *l, unsigned pos, nxl__bnode_t *n)
{
    bt_inner_t *spare[BT_MAX_LEVELS + 1];
    unsigned need = 0, got = 0, lv;
    bt_leaf_t *r;

    for (lv = t->levels; lv > 0 && path[lv - 1]->h.n == BT_FAN; lv--) {
        need++;
    }
    if (lv == 0) {
        need++; /* every block on the path splits: a new root */
    }
    r = nxl__pools_alloc(t->pools, sizeof(*r), false);
    while (r != NULL && got < need &&
           (spare[got] = nxl__pools_alloc(t->pools, sizeof(bt_inner_t),
                                          false)) != NULL) {
        got++;
    }
    if (r == NULL || got < need) {
        while (got > 0) {
            nxl__pools_free(t->pools, spare[--got]);
        }
        nxl__pools_free(t->pools, r);
        n->leaf = NULL;
        return nxl__fail(NXL_ERR_NOMEM, "range index: out of memory");
    }
    r->h.parent = NULL;
    r->h.n = BT_FAN - BT_HALF;
    bt_leaf_take(r, 0, l, BT_HALF, BT_FAN - BT_HALF);
    l->h.n = BT_HALF;
    r->prev = l;
    r->next = l->next;
    if (l->next != NULL) {
        l->next->prev = r;
    }
    l->next = r;
    if (pos <= BT_HALF) {
        bt_leaf_put(l, pos, n);
    } else {
        bt_leaf_put(r, pos - BT_HALF, n);
    }
    t->count++;
    bt_grow(t, path, idx, t->levels, l, r, true, spare);
    return NXL_OK;
}

nxl_status_t
nxl__btree_insert(nxl__btree_t *t, nxl__bnode_t *n, bool excl,
                  nxl__bnode_t **in_way_p)
{
    bt_inner_t *path[BT_MAX_LEVELS];
    unsigned idx[BT_MAX_LEVELS], lv, pos;
    bt_key_t x = {n->dev, n->addr, n->len, n->tie};
    uint64_t end = n->addr + n->len;
    nxl__bnode_t *in_way = NULL;
    bt_inner_t *p;
    bt_leaf_t *l;
    void *b;

    if (t->top == NULL) {
        l = nxl__pools_alloc(t->pools, sizeof(*l), true);
        if (l == NULL) {
            n->leaf = NULL;
            return nxl__fail(NXL_ERR_NOMEM, "range index: out of memory");
        }
        t->top = l;
        t->levels = 0;
    }
    b = t->top;
    for (lv = 0; lv < t->levels; lv++) {
        p = b;
        bt_prefetch_block(p, false);
        path[lv] = p;
        idx[lv] = bt_route(p, &x);
        b = p->child[idx[lv]];
    }
    l = b;
    bt_prefetch_block(l, true);
    pos = bt_lower(l->k, l->h.n, &x);
    if (pos < l->h.n && bt_cmp(l->k, pos, &x) == 0) {
        in_way = l->node[pos];
    } else if (excl) {
        in_way = bt_excl_in_way(l, pos, n->dev, n->addr, end);
    }
    if (in_way != NULL) {
        if (in_way != n) {
            n->leaf = NULL; /* not in (unless it was already) */
        }
        *in_way_p = in_way;
        return NXL_ERR_NOT_ALLOWED;
    }
    if (l->h.n == BT_FAN) {
        return bt_split_put(t, path, idx, l, pos, n);
    }
    bt_leaf_put(l, pos, n);
    t->count++;
    /* Maxima only grow: stop at the first one already past n's end. */
    for (lv = t->levels; lv-- > 0;) {
        p = path[lv];
        if (!pos_lt(p->mdev[idx[lv]], p->mend[idx[lv]], n->dev, end)) {
            break;
        }
        p->mdev[idx[lv]] = n->dev;
        p->mend[idx[lv]] = end;
    }
    return NXL_OK;
}

/* bt_merge empties child li + 1 of p into child li (leaves when leaf),
 * frees it and drops it from p. */
static void
bt_merge(nxl__pools_t *pools, bt_inner_t *p, unsigned li, bool leaf)
{
    void *lb = p->child[li], *rb = p->child[li + 1];
    unsigned ln = BT_HEAD(lb)->n, rn = BT_HEAD(rb)->n;
    bt_leaf_t *l = lb, *r = rb;
    bt_inner_t *li_ = lb, *ri = rb;

    if (leaf) {
        bt_leaf_take(l, ln, r, 0, rn);
        l->next = r->next;
        if (r->next != NULL) {
            r->next->prev = l;
        }
    } else {
        /* The separator between them becomes the key of r's first child. */
        bt_inner_take(li_, ln, ri, 0, rn);
        li_->k[ln] = p->k[li + 1];
    }
    BT_HEAD(lb)->n = ln + rn;
    nxl__pools_free(pools, rb);
    bt_inner_cut(p, li + 1);
    bt_set_max(p, li, leaf);
}

/* bt_balance evens out children li and li + 1 of p (leaves when leaf),
 * which together hold more than a block does, and sets the separator
 * between them. */
static void
bt_balance(bt_inner_t *p, unsigned li, bool leaf)
{
    void *lb = p->child[li], *rb = p->child[li + 1];
    unsigned ln = BT_HEAD(lb)->n, rn = BT_HEAD(rb)->n, want = (ln + rn) / 2;
    unsigned m;
    bt_leaf_t *l = lb, *r = rb;
    bt_inner_t *il = lb, *ir = rb;
    bt_key_t sep = p->k[li + 1];

    if (ln < want) {
        m = want - ln; /* r's first m move to l's end */
        if (leaf) {
            bt_leaf_take(l, ln, r, 0, m);
            bt_leaf_take(r, 0, r, m, rn - m);
        } else {
            bt_inner_take(il, ln, ir, 0, m);
            il->k[ln] = sep;
            sep = ir->k[m];
            bt_inner_take(ir, 0, ir, m, rn - m);
        }
    } else {
        m = ln - want; /* l's last m move to r's front */
        if (leaf) {
            bt_leaf_take(r, m, r, 0, rn);
            bt_leaf_take(r, 0, l, ln - m, m);
        } else {
            bt_inner_take(ir, m, ir, 0, rn);
            ir->k[m] = sep;
            bt_inner_take(ir, 0, il, ln - m, m);
            sep = ir->k[0];
        }
    }
    BT_HEAD(lb)->n = ln < want ? ln + m : ln - m;
    BT_HEAD(rb)->n = ln < want ? rn - m : rn + m;
    if (leaf) {
        sep = r->k[0];
    }
    p->k[li + 1] = sep;
    bt_set_max(p, li, leaf);
    bt_set_max(p, li + 1, leaf);
}

void
nxl__btree_remove(nxl__btree_t *t, nxl__bnode_t *n)
{
    bt_leaf_t *l = n->leaf;
    bt_inner_t *p;
    unsigned j, i;
    bool leaf = true;
    void *b;

    if (l == NULL) {
        return;
    }
    for (j = 0; l->node[j] != n; j++) {
    }
    bt_leaf_take(l, j, l, j + 1, l->h.n - j - 1);
    l->h.n--;
    n->leaf = NULL;
    t->count--;
    /* A block that fell below BT_MIN merges with a neighbour, or borrows
     * from it when both would not fit in one; a merge may leave the
     * parent short in turn. */
    for (b = l;; b = p, leaf = false) {
        p = BT_HEAD(b)->parent;
        if (p == NULL) {
            if (leaf && l->h.n == 0) {
                nxl__pools_free(t->pools, l);
                bt_empty(t);
            } else if (!leaf && BT_HEAD(b)->n == 1) {
                t->top = ((bt_inner_t *)b)->child[0];
                BT_HEAD(t->top)->parent = NULL;
                t->levels--;
                nxl__pools_free(t->pools, b);
            }
            return;
        }
        if (BT_HEAD(b)->n >= BT_MIN) {
            bt_refresh(b, leaf);
            return;
        }
        i = bt_slot(p, b);
        i = i > 0 ? i - 1 : 0; /* b and its left neighbour, or its right */
        if (BT_HEAD(p->child[i])->n + BT_HEAD(p->child[i + 1])->n <= BT_FAN) {
            bt_merge(t->pools, p, i, leaf);
            continue;
        }
        bt_balance(p, i, leaf);
        bt_refresh(p, false);
        return;
    }
}

nxl__bnode_t *
nxl__btree_find(const nxl__btree_t *t, uint64_t dev, uint64_t addr,
                uint64_t len, uint64_t tie)
{
    bt_key_t x = {dev, addr, len, tie};
    const bt_leaf_t *l;
    const void *b = t->top;
    unsigned lv, pos;

    if (b == NULL) {
        return NULL;
    }
    for (lv = 0; lv < t->levels; lv++) {
        bt_prefetch_block(b, false);
        b = ((const bt_inner_t *)b)->child[bt_route(b, &x)];
    }
    l = b;
    bt_prefetch_block(l, true);
    pos = bt_lower(l->k, l->h.n, &x);
    return (pos < l->h.n && bt_cmp(l->k, pos, &x) == 0) ? l->node[pos] : NULL;
}

/* bt_reach is reach() for the B+tree: a node starting at or before (dev,
 * lim) (strictly before when strict) whose end lies at or after (dev,
 * want) (strictly after when strict). The starts in range are a prefix of
 * the key order, so in each inner block the children before the one that
 * holds the boundary start in range entirely: the maxima say whether one
 * of them holds a match (then a descent by maxima finds it); only the
 * boundary child needs looking into. */
static nxl__bnode_t *
bt_reach(const nxl__btree_t *t, uint64_t dev, uint64_t lim, uint64_t want,
         bool strict)
{
    const void *b = t->top, *cand = NULL;
    const bt_inner_t *p;
    const bt_leaf_t *l;
    unsigned lv, cand_lv = 0, k, i;

#define BT_STARTS_IN(d, a)                                                     \
    (strict ? pos_lt((d), (a), dev, lim) : !pos_lt(dev, lim, (d), (a)))
#define BT_ENDS_OK(d, e)                                                       \
    (strict ? pos_lt(dev, want, (d), (e)) : !pos_lt((d), (e), dev, want))

    if (b == NULL) {
        return NULL;
    }
    for (lv = t->levels; lv > 0; lv--) {
        p = b;
        for (k = 1; k < p->h.n && BT_STARTS_IN(p->k[k].dev, p->k[k].addr);
             k++) {
        }
        k--; /* the boundary child; those before it start in range */
        for (i = k; i-- > 0;) {
            if (BT_ENDS_OK(p->mdev[i], p->mend[i])) {
                cand = p->child[i];
                cand_lv = lv - 1;
                break;
            }
        }
        if (!BT_ENDS_OK(p->mdev[k], p->mend[k])) {
            b = NULL;
            break;
        }
        b = p->child[k];
    }
    if (b != NULL) {
        l = b;
        for (i = 0; i < l->h.n && BT_STARTS_IN(l->k[i].dev, l->k[i].addr);
             i++) {
            if (BT_ENDS_OK(l->k[i].dev, l->k[i].addr + l->k[i].len)) {
                return l->node[i];
            }
        }
    }
    if (cand == NULL) {
        return NULL;
    }
    /* cand starts in range and its maximum reaches: follow the maxima. */
    for (b = cand, lv = cand_lv; lv > 0; lv--) {
        p = b;
        for (i = 0; !BT_ENDS_OK(p->mdev[i], p->mend[i]); i++) {
        }
        b = p->child[i];
    }
    l = b;
    for (i = 0; !BT_ENDS_OK(l->k[i].dev, l->k[i].addr + l->k[i].len); i++) {
    }
    return l->node[i];
#undef BT_STARTS_IN
#undef BT_ENDS_OK
}

nxl__bnode_t *
nxl__btree_cover(const nxl__btree_t *t, uint64_t dev, uint64_t addr,
                 uint64_t len)
{
    nxl__bnode_t *n = bt_reach(t, dev, addr, addr + len, false);

    return (n != NULL && n->dev == dev) ? n : NULL;
}

nxl__bnode_t *
nxl__btree_overlap(const nxl__btree_t *t, uint64_t dev, uint64_t addr,
                   uint64_t len)
{
    nxl__bnode_t *n = bt_reach(t, dev, addr + len, addr, true);

    return (n != NULL && n->dev == dev) ? n : NULL;
}

nxl__bnode_t *
nxl__btree_first(const nxl__btree_t *t)
{
    const void *b = t->top;
    unsigned lv;

    if (b == NULL) {
        return NULL;
    }
    for (lv = 0; lv < t->levels; lv++) {
        b = ((const bt_inner_t *)b)->child[0];
    }
    return ((const bt_leaf_t *)b)->node[0];
}

nxl__bnode_t *
nxl__btree_next(const nxl__bnode_t *n)
{
    const bt_leaf_t *l = n->leaf;
    unsigned j;

    for (j = 0; l->node[j] != n; j++) {
    }
    if (j + 1 < l->h.n) {
        return l->node[j + 1];
    }
    return l->next != NULL ? l->next->node[0] : NULL;
}

/* The walk state of nxl__btree_check. */
typedef struct bt_check {
    const bt_leaf_t *last; /* the previous leaf in key order */
    size_t count;
} bt_check_t;

/* bt_check_sub verifies block b, levels inner levels above the leaves,
 * whose keys must lie in [lo, hi) (NULL: unbounded), and sets its largest
 * end. Returns 0 when sound. */
static int
bt_check_sub(const void *b, unsigned levels, const bt_inner_t *parent,
             const bt_key_t *lo, const bt_key_t *hi, bt_check_t *c,
             uint64_t *md, uint64_t *me)
{
    const bt_head_t *h = b;
    const bt_inner_t *p = b;
    const bt_leaf_t *l = b;
    const bt_key_t *clo, *chi, *sep = levels > 0 ? p->k : l->k;
    const nxl__bnode_t *n;
    uint64_t d, e;
    unsigned i, first = levels > 0 ? 1 : 0;

    if (h->parent != parent || h->n > BT_FAN ||
        h->n < (parent != NULL ? BT_MIN : (levels > 0 ? 2 : 1))) {
        return -1;
    }
    for (i = first; i < h->n; i++) {
        if ((i > first && bt_cmp(sep, i - 1, &sep[i]) >= 0) ||
            (lo != NULL && bt_cmp(sep, i, lo) < 0) ||
            (hi != NULL && bt_cmp(sep, i, hi) >= 0)) {
            return -1;
        }
    }
    if (levels == 0) {
        if (l->prev != c->last || (c->last != NULL && c->last->next != l)) {
            return -1;
        }
        c->last = l;
        for (i = 0; i < h->n; i++) {
            n = l->node[i];
            if (n == NULL || n->leaf != l || n->dev != sep[i].dev ||
                n->addr != sep[i].addr || n->len != sep[i].len ||
                n->tie != sep[i].tie || n->len == 0 ||
                n->addr + n->len < n->addr) {
                return -1;
            }
        }
        c->count += h->n;
        bt_max(l, true, md, me);
        return 0;
    }
    for (i = 0; i < h->n; i++) {
        clo = i == 0 ? lo : &sep[i];
        chi = i + 1 == h->n ? hi : &sep[i + 1];
        if (bt_check_sub(p->child[i], levels - 1, p, clo, chi, c, &d, &e) !=
                0 ||
            d != p->mdev[i] || e != p->mend[i]) {
            return -1;
        }
    }
    bt_max(p, false, md, me);
    return 0;
}

int
nxl__btree_check(const nxl__btree_t *t)
{
    bt_check_t c = {NULL, 0};
    const nxl__bnode_t *n, *next;
    uint64_t d, e;
    size_t count = 0;

    if (t->top == NULL) {
        return (t->count == 0 && t->levels == 0) ? 0 : -1;
    }
    if (bt_check_sub(t->top, t->levels, NULL, NULL, NULL, &c, &d, &e) != 0 ||
        c.last->next != NULL || c.count != t->count) {
        return -1;
    }
    /* The in-order walk agrees with the count and the order. */
    for (n = nxl__btree_first(t); n != NULL; n = next) {
        next = nxl__btree_next(n);
        if (next != NULL && pos_lt(next->dev, next->addr, n->dev, n->addr)) {
            return -1;
        }
        count++;
    }
    return count == t->count ? 0 : -1;
}
