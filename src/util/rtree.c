/* rtree.c - the ordered range set of rtree.h (an augmented AVL tree). */
#include "rtree.h"

#include <stdbool.h>

/* pos_lt orders two (dev, offset) coordinates. */
static inline bool
pos_lt(uint64_t d1, uint64_t a1, uint64_t d2, uint64_t a2)
{
    return d1 < d2 || (d1 == d2 && a1 < a2);
}

/* key_cmp orders a node against the key (dev, addr, len, tie). */
static inline int
key_cmp(const nxl__rnode_t *n, uint64_t dev, uint64_t addr, uint64_t len,
        uint64_t tie)
{
    if (n->dev != dev) {
        return n->dev < dev ? -1 : 1;
    }
    if (n->addr != addr) {
        return n->addr < addr ? -1 : 1;
    }
    if (n->len != len) {
        return n->len < len ? -1 : 1;
    }
    if (n->tie != tie) {
        return n->tie < tie ? -1 : 1;
    }
    return 0;
}

static inline int
height(const nxl__rnode_t *n)
{
    return n == NULL ? 0 : n->height;
}

/* update recomputes n's height and subtree maximum from its children. */
static void
update(nxl__rnode_t *n)
{
    const nxl__rnode_t *c[2] = {n->left, n->right};
    int hl = height(n->left), hr = height(n->right), i;

    n->height = 1 + (hl > hr ? hl : hr);
    n->mdev = n->dev;
    n->mend = n->addr + n->len;
    for (i = 0; i < 2; i++) {
        if (c[i] != NULL && pos_lt(n->mdev, n->mend, c[i]->mdev, c[i]->mend)) {
            n->mdev = c[i]->mdev;
            n->mend = c[i]->mend;
        }
    }
}

/* replace puts c where n hangs (under n's parent, or as the root). */
static void
replace(nxl__rtree_t *t, nxl__rnode_t *n, nxl__rnode_t *c)
{
    nxl__rnode_t *p = n->parent;

    if (p == NULL) {
        t->root = c;
    } else if (p->left == n) {
        p->left = c;
    } else {
        p->right = c;
    }
    if (c != NULL) {
        c->parent = p;
    }
}

/* rotate_left lifts n's right child over n and returns it. */
static nxl__rnode_t *
rotate_left(nxl__rtree_t *t, nxl__rnode_t *n)
{
    nxl__rnode_t *r = n->right;

    replace(t, n, r);
    n->right = r->left;
    if (r->left != NULL) {
        r->left->parent = n;
    }
    r->left = n;
    n->parent = r;
    update(n);
    update(r);
    return r;
}

/* rotate_right lifts n's left child over n and returns it. */
static nxl__rnode_t *
rotate_right(nxl__rtree_t *t, nxl__rnode_t *n)
{
    nxl__rnode_t *l = n->left;

    replace(t, n, l);
    n->left = l->right;
    if (l->right != NULL) {
        l->right->parent = n;
    }
    l->right = n;
    n->parent = l;
    update(n);
    update(l);
    return l;
}

/* fix_up walks from n (whose children changed) towards the root,
 * updating each node and restoring the AVL balance where it broke. A node
 * whose height and maximum come out as before leaves everything above it
 * as it was, so the walk stops there: most inserts and removals touch a
 * few nodes, not the whole path. */
static void
fix_up(nxl__rtree_t *t, nxl__rnode_t *n)
{
    uint64_t md, me;
    int bal, h;

    for (; n != NULL; n = n->parent) {
        h = n->height;
        md = n->mdev;
        me = n->mend;
        update(n);
        bal = height(n->left) - height(n->right);
        if (bal > 1) {
            if (height(n->left->left) < height(n->left->right)) {
                rotate_left(t, n->left);
            }
            n = rotate_right(t, n);
        } else if (bal < -1) {
            if (height(n->right->right) < height(n->right->left)) {
                rotate_right(t, n->right);
            }
            n = rotate_left(t, n);
        } else if (n->height == h && n->mdev == md && n->mend == me) {
            break;
        }
    }
}

void
nxl__rtree_init(nxl__rtree_t *t)
{
    t->root = NULL;
    t->count = 0;
}

nxl__rnode_t *
nxl__rtree_insert(nxl__rtree_t *t, nxl__rnode_t *n)
{
    nxl__rnode_t **link = &t->root, *parent = NULL;
    int c;

    while (*link != NULL) {
        parent = *link;
        c = key_cmp(parent, n->dev, n->addr, n->len, n->tie);
        if (c == 0) {
            return parent;
        }
        link = c > 0 ? &parent->left : &parent->right;
    }
    n->left = n->right = NULL;
    n->parent = parent;
    update(n);
    *link = n;
    t->count++;
    fix_up(t, parent);
    return NULL;
}

nxl__rnode_t *
nxl__rtree_insert_excl(nxl__rtree_t *t, nxl__rnode_t *n)
{
    nxl__rnode_t **link = &t->root, *parent = NULL, *pred = NULL,
                 *succ = NULL;
    uint64_t end = n->addr + n->len;

    while (*link != NULL) {
        parent = *link;
        if (key_cmp(parent, n->dev, n->addr, n->len, n->tie) > 0) {
            succ = parent;
            link = &parent->left;
        } else {
            pred = parent; /* an equal key lands here and overlaps */
            link = &parent->right;
        }
    }
    /* Without overlaps, starts and ends rise together: only the nearest
     * range on each side can reach n. */
    if (pred != NULL && pred->dev == n->dev &&
        pred->addr + pred->len > n->addr) {
        return pred;
    }
    if (succ != NULL && succ->dev == n->dev && succ->addr < end) {
        return succ;
    }
    n->left = n->right = NULL;
    n->parent = parent;
    update(n);
    *link = n;
    t->count++;
    fix_up(t, parent);
    return NULL;
}

void
nxl__rtree_remove(nxl__rtree_t *t, nxl__rnode_t *n)
{
    nxl__rnode_t *s = NULL, *from;

    if (n->left == NULL || n->right == NULL) {
        from = n->parent;
        replace(t, n, n->left != NULL ? n->left : n->right);
    } else {
        /* Put the successor s (leftmost on the right, no left child) in
         * n's place. */
        s = n->right;
        while (s->left != NULL) {
            s = s->left;
        }
        if (s->parent != n) {
            from = s->parent;
            from->left = s->right;
            if (s->right != NULL) {
                s->right->parent = from;
            }
            s->right = n->right;
            n->right->parent = s;
        } else {
            from = s;
        }
        s->left = n->left;
        n->left->parent = s;
        replace(t, n, s);
        /* s stands where n stood: start it from n's values, so fix_up
         * compares against what the nodes above were computed with. */
        s->height = n->height;
        s->mdev = n->mdev;
        s->mend = n->mend;
    }
    n->left = n->right = n->parent = NULL;
    t->count--;
    fix_up(t, from);
    if (s != NULL && s != from) {
        /* The walk from below may have stopped under s, whose values are
         * still n's (n's own end may have been the maximum). */
        fix_up(t, s);
    }
}

nxl__rnode_t *
nxl__rtree_find(const nxl__rtree_t *t, uint64_t dev, uint64_t addr,
                uint64_t len, uint64_t tie)
{
    nxl__rnode_t *n = t->root;
    int c;

    while (n != NULL) {
        c = key_cmp(n, dev, addr, len, tie);
        if (c == 0) {
            return n;
        }
        n = c > 0 ? n->left : n->right;
    }
    return NULL;
}

/* reach finds a node starting at or before (dev, lim) (strictly before
 * when strict) whose end lies at or after (dev, want) (strictly after when
 * strict). Nodes starting there are a left-closed part of the order, so
 * the search is one descent; the subtree maxima point into a left subtree
 * that holds a match. */
static nxl__rnode_t *
reach(const nxl__rtree_t *t, uint64_t dev, uint64_t lim, uint64_t want,
      bool strict)
{
    nxl__rnode_t *n = t->root, *m;

#define RT_STARTS_IN(x)                                                       \
    (strict ? pos_lt((x)->dev, (x)->addr, dev, lim)                           \
            : !pos_lt(dev, lim, (x)->dev, (x)->addr))
#define RT_ENDS_OK(d, e)                                                      \
    (strict ? pos_lt(dev, want, (d), (e)) : !pos_lt((d), (e), dev, want))

    while (n != NULL) {
        if (!RT_STARTS_IN(n)) {
            n = n->left;
            continue;
        }
        /* n and its whole left subtree start in range. */
        if (RT_ENDS_OK(n->dev, n->addr + n->len)) {
            return n;
        }
        m = n->left;
        if (m != NULL && RT_ENDS_OK(m->mdev, m->mend)) {
            while (!RT_ENDS_OK(m->dev, m->addr + m->len)) {
                m = (m->left != NULL && RT_ENDS_OK(m->left->mdev,
                                                   m->left->mend))
                        ? m->left
                        : m->right;
            }
            return m;
        }
        n = n->right;
    }
    return NULL;
#undef RT_STARTS_IN
#undef RT_ENDS_OK
}

nxl__rnode_t *
nxl__rtree_cover(const nxl__rtree_t *t, uint64_t dev, uint64_t addr,
                 uint64_t len)
{
    nxl__rnode_t *n = reach(t, dev, addr, addr + len, false);

    /* A node of a lower device ends below (dev, anything); one that
     * reached is on dev. */
    return (n != NULL && n->dev == dev) ? n : NULL;
}

nxl__rnode_t *
nxl__rtree_overlap(const nxl__rtree_t *t, uint64_t dev, uint64_t addr,
                   uint64_t len)
{
    nxl__rnode_t *n = reach(t, dev, addr + len, addr, true);

    return (n != NULL && n->dev == dev) ? n : NULL;
}

nxl__rnode_t *
nxl__rtree_first(const nxl__rtree_t *t)
{
    nxl__rnode_t *n = t->root;

    while (n != NULL && n->left != NULL) {
        n = n->left;
    }
    return n;
}

nxl__rnode_t *
nxl__rtree_next(const nxl__rnode_t *n)
{
    const nxl__rnode_t *p;

    if (n->right != NULL) {
        n = n->right;
        while (n->left != NULL) {
            n = n->left;
        }
        return (nxl__rnode_t *)n;
    }
    for (p = n->parent; p != NULL && p->right == n; p = p->parent) {
        n = p;
    }
    return (nxl__rnode_t *)p;
}

/* check_sub verifies the subtree at n; returns its height, -1 if bad, and
 * counts its nodes. */
static int
check_sub(const nxl__rnode_t *n, const nxl__rnode_t *parent, size_t *count)
{
    uint64_t md, me;
    int hl, hr;

    if (n == NULL) {
        return 0;
    }
    if (n->parent != parent || n->len == 0 || n->addr + n->len < n->addr) {
        return -1;
    }
    if ((n->left != NULL &&
         key_cmp(n->left, n->dev, n->addr, n->len, n->tie) >= 0) ||
        (n->right != NULL &&
         key_cmp(n->right, n->dev, n->addr, n->len, n->tie) <= 0)) {
        return -1;
    }
    hl = check_sub(n->left, n, count);
    hr = check_sub(n->right, n, count);
    if (hl < 0 || hr < 0 || hl - hr > 1 || hr - hl > 1 ||
        n->height != 1 + (hl > hr ? hl : hr)) {
        return -1;
    }
    md = n->dev;
    me = n->addr + n->len;
    if (n->left != NULL && pos_lt(md, me, n->left->mdev, n->left->mend)) {
        md = n->left->mdev;
        me = n->left->mend;
    }
    if (n->right != NULL && pos_lt(md, me, n->right->mdev, n->right->mend)) {
        md = n->right->mdev;
        me = n->right->mend;
    }
    if (md != n->mdev || me != n->mend) {
        return -1;
    }
    (*count)++;
    return n->height;
}

int
nxl__rtree_check(const nxl__rtree_t *t)
{
    const nxl__rnode_t *n, *next;
    size_t count = 0;

    if (check_sub(t->root, NULL, &count) < 0 || count != t->count) {
        return -1;
    }
    /* In-order walk agrees with the count and the order. */
    count = 0;
    for (n = nxl__rtree_first(t); n != NULL; n = next) {
        next = nxl__rtree_next(n);
        if (next != NULL && key_cmp(next, n->dev, n->addr, n->len, n->tie) <= 0) {
            return -1;
        }
        count++;
    }
    return count == t->count ? 0 : -1;
}
