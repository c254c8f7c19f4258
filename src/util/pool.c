/* pool.c - fixed-size records on huge pages (pool.h). */
#include "pool.h"

#include "fault.h"
#include "util.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Sanitized builds pool nothing: records come from malloc, so ASan sees a
 * use after free and TSan sees records as separate objects. */
#if defined(NXL_POOL_MALLOC) || defined(__SANITIZE_ADDRESS__) ||               \
    defined(__SANITIZE_THREAD__)
#define POOL_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||     \
    __has_feature(memory_sanitizer)
#define POOL_MALLOC 1
#endif
#endif

#define POOL_SMALL_CLASSES 3u /* 16, 32, 48 */
#define POOL_CLASSES (POOL_SMALL_CLASSES + NXL__POOL_MAX / 64)

struct pool_class;

/* A chunk's descriptor, kept off the chunk: a header at the start of
 * every 2 MiB-aligned mapping would put all of them in one cache set (of
 * the L1, L2 and, on a 32 MiB 16-way L3, L3 too), and every alloc and
 * free reads one. Found from a record's address through the set's table
 * (pool_find). */
typedef struct pool_chunk {
    char *base;                     /* the mapping, NXL__POOL_CHUNK-aligned */
    struct pool_class *cls;         /* NULL: one large record's own mapping */
    struct pool_chunk *next, *prev; /* in cls->avail (chunks with room) */
    struct pool_chunk *all_next, *all_prev; /* every chunk of cls (or the
                                               set's large records) */
    void *free;     /* freed records, linked through their first word */
    size_t map_len; /* bytes mapped */
    uint32_t used;  /* live records */
    uint32_t bump;  /* offset of the untouched tail */
    uint32_t limit; /* records end before this offset */
    bool huge;      /* NXL__POOL_CHUNK bytes, MADV_HUGEPAGE */
    bool avail;     /* on cls->avail */
} pool_chunk_t;

/* One entry of the set's table from chunk base to descriptor. */
typedef struct pool_slot {
    uintptr_t base; /* 0: empty */
    pool_chunk_t *c;
} pool_slot_t;

typedef struct pool_class {
    nxl__pools_t *set;
    uint32_t size;
    pool_chunk_t *avail; /* chunks with room, most recently freed into first */
    pool_chunk_t *all;
    pool_chunk_t *spare; /* an empty chunk kept, or NULL */
    size_t small;        /* bytes of its chunks on 4 KiB pages */
    size_t live;         /* its records allocated */
} pool_class_t;

struct nxl__pools {
    bool locked;
    pthread_mutex_t lock;
    pool_chunk_t *large; /* records over NXL__POOL_MAX */
    pool_slot_t *tab;    /* open addressing, linear probes; tcap a power
                            of 2, at most half full */
    size_t tcap;
    nxl__pools_stats_t st;
    pool_class_t cls[POOL_CLASSES];
};

bool
nxl__pools_enabled(void)
{
#ifdef POOL_MALLOC
    return false;
#else
    return true;
#endif
}

/* pool_class_of returns the index of the class that serves size (> 0,
 * <= NXL__POOL_MAX). */
static inline unsigned
pool_class_of(size_t size)
{
    if (size <= 48) {
        return (unsigned)((size + 15) / 16 - 1);
    }
    return POOL_SMALL_CLASSES + (unsigned)((size + 63) / 64 - 1);
}

nxl_status_t
nxl__pools_create(unsigned flags, nxl__pools_t **ps_p)
{
    nxl__pools_t *ps = calloc(1, sizeof(*ps));
    unsigned i;

    if (ps == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "record pool: out of memory");
    }
    ps->locked = (flags & NXL__POOLS_LOCKED) != 0;
    if (ps->locked) {
        pthread_mutex_init(&ps->lock, NULL);
    }
    for (i = 0; i < POOL_CLASSES; i++) {
        ps->cls[i].set = ps;
        ps->cls[i].size = i < POOL_SMALL_CLASSES
                              ? 16u * (i + 1)
                              : 64u * (i - POOL_SMALL_CLASSES + 1);
    }
    *ps_p = ps;
    return NXL_OK;
}

/* pool_hash returns the home slot of chunk base b in a table of cap. */
static inline size_t
pool_hash(uintptr_t b, size_t cap)
{
    return (size_t)(((uint64_t)(b >> 21) * 0x9e3779b97f4a7c15ull) >> 32) &
           (cap - 1);
}

/* pool_find returns the descriptor of the chunk holding rec. */
static inline pool_chunk_t *
pool_find(const nxl__pools_t *ps, const void *rec)
{
    uintptr_t b = (uintptr_t)rec & ~(uintptr_t)(NXL__POOL_CHUNK - 1);
    size_t i = pool_hash(b, ps->tcap);

    while (ps->tab[i].base != b) {
        i = (i + 1) & (ps->tcap - 1);
    }
    return ps->tab[i].c;
}

/* pool_tab_put enters c into ps's table, growing it first when it would
 * be over half full. Returns false when out of memory. */
static bool
pool_tab_put(nxl__pools_t *ps, pool_chunk_t *c)
{
    pool_slot_t *old = ps->tab, *tab;
    size_t cap = ps->tcap, ncap, i, j;

    if ((ps->st.chunks + 1) * 2 > cap) {
        ncap = cap == 0 ? 16 : cap * 2;
        tab = calloc(ncap, sizeof(*tab));
        if (tab == NULL) {
            return false;
        }
        for (i = 0; i < cap; i++) {
            if (old[i].base != 0) {
                j = pool_hash(old[i].base, ncap);
                while (tab[j].base != 0) {
                    j = (j + 1) & (ncap - 1);
                }
                tab[j] = old[i];
            }
        }
        free(old);
        ps->tab = tab;
        ps->tcap = cap = ncap;
    }
    i = pool_hash((uintptr_t)c->base, cap);
    while (ps->tab[i].base != 0) {
        i = (i + 1) & (cap - 1);
    }
    ps->tab[i].base = (uintptr_t)c->base;
    ps->tab[i].c = c;
    return true;
}

/* pool_tab_del takes chunk base b out of ps's table (backward-shift
 * deletion: later entries of the probe run move up). */
static void
pool_tab_del(nxl__pools_t *ps, uintptr_t b)
{
    size_t mask = ps->tcap - 1, i = pool_hash(b, ps->tcap), j, h;

    while (ps->tab[i].base != b) {
        i = (i + 1) & mask;
    }
    for (j = (i + 1) & mask; ps->tab[j].base != 0; j = (j + 1) & mask) {
        h = pool_hash(ps->tab[j].base, ps->tcap);
        /* Move j up into the hole at i unless its home lies in (i, j]. */
        if (((j - h) & mask) >= ((j - i) & mask)) {
            ps->tab[i] = ps->tab[j];
            i = j;
        }
    }
    ps->tab[i].base = 0;
    ps->tab[i].c = NULL;
}

/* pool_map maps len bytes aligned to NXL__POOL_CHUNK (a larger mapping,
 * trimmed), or returns NULL. */
static void *
pool_map(size_t len)
{
    size_t span = len + NXL__POOL_CHUNK, head, tail;
    uintptr_t base, al;
    void *p;

    p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
             -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
    base = (uintptr_t)p;
    al = (base + NXL__POOL_CHUNK - 1) & ~(uintptr_t)(NXL__POOL_CHUNK - 1);
    head = al - base;
    tail = span - head - len;
    if (head > 0) {
        munmap(p, head);
    }
    if (tail > 0) {
        munmap((void *)(al + len), tail);
    }
    return (void *)al;
}

/* pool_link_avail puts c at the head of cls->avail. */
static void
pool_link_avail(pool_class_t *cls, pool_chunk_t *c)
{
    c->prev = NULL;
    c->next = cls->avail;
    if (cls->avail != NULL) {
        cls->avail->prev = c;
    }
    cls->avail = c;
    c->avail = true;
}

/* pool_unlink_avail takes c off cls->avail. */
static void
pool_unlink_avail(pool_class_t *cls, pool_chunk_t *c)
{
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        cls->avail = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    c->avail = false;
}

/* pool_link_all puts c at the head of *head's every-chunk list. */
static void
pool_link_all(pool_chunk_t **head, pool_chunk_t *c)
{
    c->all_prev = NULL;
    c->all_next = *head;
    if (*head != NULL) {
        (*head)->all_prev = c;
    }
    *head = c;
}

/* pool_unlink_all takes c off *head's every-chunk list. */
static void
pool_unlink_all(pool_chunk_t **head, pool_chunk_t *c)
{
    if (c->all_prev != NULL) {
        c->all_prev->all_next = c->all_next;
    } else {
        *head = c->all_next;
    }
    if (c->all_next != NULL) {
        c->all_next->all_prev = c->all_prev;
    }
}

/* pool_unmap unmaps chunk c, drops its descriptor and counts it out of
 * ps's stats. */
static void
pool_unmap(nxl__pools_t *ps, pool_chunk_t *c)
{
    pool_tab_del(ps, (uintptr_t)c->base);
    ps->st.chunks--;
    ps->st.huge_chunks -= c->huge;
    ps->st.mapped -= c->map_len;
    munmap(c->base, c->map_len);
    free(c);
}

/* pool_chunk_make maps len bytes and makes their descriptor, entered in
 * ps's table and stats; NULL when out of memory. */
static pool_chunk_t *
pool_chunk_make(nxl__pools_t *ps, size_t len)
{
    pool_chunk_t *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    c->base = pool_map(len);
    if (c->base == NULL || !pool_tab_put(ps, c)) {
        if (c->base != NULL) {
            munmap(c->base, len);
        }
        free(c);
        return NULL;
    }
    c->map_len = len;
    ps->st.chunks++;
    ps->st.mapped += len;
    return c;
}

/* pool_chunk_new maps a chunk for cls: on 4 KiB pages while cls holds
 * less than NXL__POOL_SMALL_MAX of them (NXL__POOL_SMALL, then as much as
 * it holds: 64, 64, 128, 256, 512 KiB), after that NXL__POOL_CHUNK bytes
 * on huge pages, so a 2 MiB page at most doubles a class's footprint.
 * Lists it; NULL when the mapping fails. */
static pool_chunk_t *
pool_chunk_new(pool_class_t *cls)
{
    bool huge = cls->small >= NXL__POOL_SMALL_MAX;
    size_t len = huge                           ? NXL__POOL_CHUNK
                 : cls->small < NXL__POOL_SMALL ? NXL__POOL_SMALL
                                                : cls->small;
    pool_chunk_t *c = pool_chunk_make(cls->set, len);

    if (c == NULL) {
        return NULL;
    }
    /* Advice only: a kernel without THP (or with it off) still gives
     * working 4 KiB pages. */
    (void)madvise(c->base, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    c->cls = cls;
    c->limit = (uint32_t)len;
    c->huge = huge;
    if (!huge) {
        cls->small += len;
    }
    pool_link_all(&cls->all, c);
    pool_link_avail(cls, c);
    cls->set->st.huge_chunks += huge;
    return c;
}

/* pool_has_room says whether chunk c can give one more record of size. */
static inline bool
pool_has_room(const pool_chunk_t *c, uint32_t size)
{
    return c->free != NULL || c->bump + size <= c->limit;
}

/* pool_alloc_large maps a record of size (> NXL__POOL_MAX) of its own. */
static void *
pool_alloc_large(nxl__pools_t *ps, size_t size)
{
    size_t len;
    pool_chunk_t *c;

    if (size > SIZE_MAX - 4096 - NXL__POOL_CHUNK) {
        return NULL;
    }
    len = (size + 4095) & ~(size_t)4095;
    c = pool_chunk_make(ps, len);
    if (c == NULL) {
        return NULL;
    }
    pool_link_all(&ps->large, c);
    ps->st.live++;
    return c->base; /* fresh pages are zero */
}

/* pool_alloc_locked serves size from ps (its lock, if any, held). */
static void *
pool_alloc_locked(nxl__pools_t *ps, size_t size)
{
    pool_class_t *cls;
    pool_chunk_t *c;
    void *rec;

    if (size > NXL__POOL_MAX) {
        return pool_alloc_large(ps, size);
    }
    cls = &ps->cls[pool_class_of(size)];
    c = cls->avail;
    if (c == NULL && (c = pool_chunk_new(cls)) == NULL) {
        return NULL;
    }
    if (c->free != NULL) {
        rec = c->free;
        c->free = *(void **)rec;
    } else {
        rec = c->base + c->bump;
        c->bump += cls->size;
    }
    c->used++;
    cls->live++;
    if (c == cls->spare) {
        cls->spare = NULL;
    }
    if (!pool_has_room(c, cls->size)) {
        pool_unlink_avail(cls, c);
    }
    ps->st.live++;
    return rec;
}

void *
nxl__pools_alloc(nxl__pools_t *ps, size_t size, bool zero)
{
    void *rec;

#ifdef POOL_MALLOC
    ps = NULL;
#endif
    if (ps == NULL) {
        return zero ? calloc(1, size) : malloc(size);
    }
    if (size == 0 || nxl__fault_hit(NXL__FI_ALLOC)) {
        return NULL;
    }
    if (ps->locked) {
        pthread_mutex_lock(&ps->lock);
    }
    rec = pool_alloc_locked(ps, size);
    if (ps->locked) {
        pthread_mutex_unlock(&ps->lock);
    }
    if (rec != NULL && zero) {
        memset(rec, 0, size);
    }
    return rec;
}

/* pool_chunk_drop unmaps cls's empty chunk c. */
static void
pool_chunk_drop(pool_class_t *cls, pool_chunk_t *c)
{
    if (!c->huge) {
        cls->small -= c->map_len;
    }
    if (c->avail) {
        pool_unlink_avail(cls, c);
    }
    pool_unlink_all(&cls->all, c);
    pool_unmap(cls->set, c);
}

/* pool_free_locked gives rec back to its chunk (ps's lock, if any, held).
 * A chunk that empties becomes the class's spare (so that a loop of one
 * allocation and one free at a chunk's edge does not map and unmap each
 * time) unless the class has one, or it is a huge chunk of a class with
 * no record left; a class with no record left keeps no huge spare (no
 * 2 MiB held for nothing). */
static void
pool_free_locked(nxl__pools_t *ps, void *rec)
{
    pool_chunk_t *c = pool_find(ps, rec);
    pool_class_t *cls = c->cls;

    ps->st.live--;
    if (cls == NULL) {
        pool_unlink_all(&ps->large, c);
        pool_unmap(ps, c);
        return;
    }
    *(void **)rec = c->free;
    c->free = rec;
    c->used--;
    cls->live--;
    if (!c->avail) {
        pool_link_avail(cls, c);
    }
    if (c->used == 0) {
        if (cls->spare == NULL && (!c->huge || cls->live > 0)) {
            /* Afresh: records are handed out in address order again. */
            c->free = NULL;
            c->bump = 0;
            cls->spare = c;
        } else {
            pool_chunk_drop(cls, c);
        }
    }
    if (cls->live == 0 && cls->spare != NULL && cls->spare->huge) {
        pool_chunk_drop(cls, cls->spare);
        cls->spare = NULL;
    }
}

void
nxl__pools_free(nxl__pools_t *ps, void *rec)
{
#ifdef POOL_MALLOC
    ps = NULL;
#endif
    if (ps == NULL || rec == NULL) {
        free(rec);
        return;
    }
    if (ps->locked) {
        pthread_mutex_lock(&ps->lock);
    }
    pool_free_locked(ps, rec);
    if (ps->locked) {
        pthread_mutex_unlock(&ps->lock);
    }
}

void
nxl__pools_destroy(nxl__pools_t *ps)
{
    pool_chunk_t *c, *next;
    unsigned i;

    if (ps == NULL) {
        return;
    }
    for (i = 0; i < POOL_CLASSES; i++) {
        for (c = ps->cls[i].all; c != NULL; c = next) {
            next = c->all_next;
            pool_unmap(ps, c);
        }
    }
    for (c = ps->large; c != NULL; c = next) {
        next = c->all_next;
        pool_unmap(ps, c);
    }
    if (ps->locked) {
        pthread_mutex_destroy(&ps->lock);
    }
    free(ps->tab);
    free(ps);
}

void
nxl__pools_stats(nxl__pools_t *ps, nxl__pools_stats_t *st)
{
    memset(st, 0, sizeof(*st));
    if (ps == NULL) {
        return;
    }
    if (ps->locked) {
        pthread_mutex_lock(&ps->lock);
    }
    *st = ps->st;
    if (ps->locked) {
        pthread_mutex_unlock(&ps->lock);
    }
}
