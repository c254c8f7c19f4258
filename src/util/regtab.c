/* regtab.c - the registration table of regtab.h. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define RT_MAP_BYTES                                                           \
    ((size_t)NXL__REGTAB_HDR +                                                 \
     (size_t)NXL__REGTAB_MAX_SLOTS * sizeof(nxl__regtab_slot_t))
#define RT_FIRST_CAP 1024u

/* rt_slot returns slot i of a mapped table. */
static inline nxl__regtab_slot_t *
rt_slot(const uint8_t *base, uint32_t i)
{
    return (nxl__regtab_slot_t *)(void *)(base + NXL__REGTAB_HDR +
                                          (size_t)i *
                                              sizeof(nxl__regtab_slot_t));
}

/* rt_grow makes the file hold cap slots (lock held), and the list of
 * slots given back room for all of them: nxl__regtab_remove never
 * allocates (a large realloc there made glibc consolidate every small
 * free chunk, a walk over cold memory in the middle of a deregister). */
static nxl_status_t
rt_grow(nxl__regtab_t *t, uint32_t cap)
{
    off_t size =
        (off_t)(NXL__REGTAB_HDR + (size_t)cap * sizeof(nxl__regtab_slot_t));
    uint32_t *p;

    p = realloc(t->free, (size_t)cap * sizeof(*p));
    if (p == NULL) {
        return nxl__fail(NXL_ERR_NOMEM,
                         "registration table: growing to %u "
                         "slots",
                         cap);
    }
    t->free = p;
    t->free_cap = cap;
    if (ftruncate(t->fd, size) != 0) {
        return nxl__fail_errno(errno,
                               "registration table: growing to %u "
                               "slots",
                               cap);
    }
    t->cap = cap;
    nxl__put_le64(t->base + 16, cap);
    return NXL_OK;
}

nxl_status_t
nxl__regtab_init(nxl__regtab_t *t, uint64_t token)
{
    nxl_status_t st;
    void *p;

    memset(t, 0, sizeof(*t));
    t->fd = -1;
    pthread_mutex_init(&t->lock, NULL);
    t->next_gen = 1;
    t->fd = memfd_create("nxl-regtab", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (t->fd < 0) {
        return nxl__fail_errno(errno, "registration table: memfd_create");
    }
    /* Peers map it at a fixed size: it must never shrink under them. */
    if (fcntl(t->fd, F_ADD_SEALS, F_SEAL_SHRINK) != 0) {
        return nxl__fail_errno(errno, "registration table: F_ADD_SEALS");
    }
    p = mmap(NULL, RT_MAP_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, t->fd, 0);
    if (p == MAP_FAILED) {
        return nxl__fail_errno(errno, "registration table: mmap");
    }
    t->base = p;
    if (ftruncate(t->fd, NXL__REGTAB_HDR) != 0) {
        return nxl__fail_errno(errno, "registration table: ftruncate");
    }
    nxl__put_le32(t->base, NXL__REGTAB_MAGIC);
    nxl__put_le32(t->base + 4, NXL__REGTAB_VERSION);
    nxl__put_le64(t->base + 8, token);
    st = rt_grow(t, RT_FIRST_CAP);
    return st;
}

void
nxl__regtab_fini(nxl__regtab_t *t)
{
    if (t->base != NULL) {
        munmap(t->base, RT_MAP_BYTES);
        t->base = NULL;
    }
    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
    free(t->free);
    t->free = NULL;
    t->nfree = t->free_cap = 0;
    pthread_mutex_destroy(&t->lock);
}

nxl_status_t
nxl__regtab_add(nxl__regtab_t *t, uint64_t kind, uint64_t addr, uint64_t len,
                uint32_t *slot_p, uint64_t *gen_p)
{
    nxl__regtab_slot_t *s;
    nxl_status_t st = NXL_OK;
    uint32_t i;
    uint64_t gen;

    pthread_mutex_lock(&t->lock);
    if (t->nfree > 0) {
        i = t->free[--t->nfree];
    } else {
        if (t->used == t->cap) {
            if (t->cap >= NXL__REGTAB_MAX_SLOTS) {
                st = nxl__fail(NXL_ERR_NOMEM,
                               "registration table: %u registrations is the "
                               "most one engine holds",
                               t->cap);
                goto out;
            }
            st = rt_grow(t, t->cap * 2 > NXL__REGTAB_MAX_SLOTS
                                ? NXL__REGTAB_MAX_SLOTS
                                : t->cap * 2);
            if (st != NXL_OK) {
                goto out;
            }
        }
        i = t->used++;
    }
    gen = t->next_gen++;
    s = rt_slot(t->base, i);
    /* Fields first, then the generation that makes them count. */
    atomic_store_explicit(&s->kind, kind, memory_order_relaxed);
    atomic_store_explicit(&s->addr, addr, memory_order_relaxed);
    atomic_store_explicit(&s->len, len, memory_order_relaxed);
    atomic_store_explicit(&s->gen, gen, memory_order_release);
    *slot_p = i;
    *gen_p = gen;
out:
    pthread_mutex_unlock(&t->lock);
    return st;
}

void
nxl__regtab_remove(nxl__regtab_t *t, uint32_t slot)
{
    pthread_mutex_lock(&t->lock);
    if (slot >= t->used) {
        pthread_mutex_unlock(&t->lock);
        return;
    }
    /* A generation no region will ever carry: the old one is dead. */
    atomic_store_explicit(&rt_slot(t->base, slot)->gen, t->next_gen++,
                          memory_order_release);
    /* The list holds every slot the file does (rt_grow); only a slot
     * given back twice could find it full, and is then not reused. */
    if (t->nfree < t->free_cap) {
        t->free[t->nfree++] = slot;
    }
    pthread_mutex_unlock(&t->lock);
}

nxl_status_t
nxl__regtab_view_open(nxl__regtab_view_t *v, int fd, uint64_t token)
{
    uint8_t hdr[NXL__REGTAB_HDR];
    void *p;

    v->fd = -1;
    v->base = NULL;
    if (pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
        nxl__le32(hdr) != NXL__REGTAB_MAGIC ||
        nxl__le32(hdr + 4) != NXL__REGTAB_VERSION ||
        nxl__le64(hdr + 8) != token) {
        close(fd);
        return nxl__fail(NXL_ERR_PROTO,
                         "registration table: the peer's fd is not its "
                         "table");
    }
    p = mmap(NULL, RT_MAP_BYTES, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        close(fd);
        return nxl__fail_errno(errno, "registration table: mmap of a "
                                      "peer's table");
    }
    v->fd = fd;
    v->base = p;
    v->token = token;
    atomic_store_explicit(&v->slots, 0, memory_order_relaxed);
    return NXL_OK;
}

void
nxl__regtab_view_close(nxl__regtab_view_t *v)
{
    if (v->base != NULL) {
        munmap((void *)v->base, RT_MAP_BYTES);
        v->base = NULL;
    }
    if (v->fd >= 0) {
        close(v->fd);
        v->fd = -1;
    }
}

const nxl__regtab_slot_t *
nxl__regtab_view_slot(const nxl__regtab_view_t *v, uint32_t slot, uint64_t gen,
                      uint64_t kind, uint64_t addr, uint64_t len)
{
    const nxl__regtab_slot_t *s;
    struct stat sb;
    uint64_t n;

    if (v->base == NULL || slot >= NXL__REGTAB_MAX_SLOTS || gen == 0) {
        return NULL;
    }
    /* Only a slot past what the file was last seen to hold costs a look
     * at its size (the file never shrinks). */
    if (slot >= atomic_load_explicit((_Atomic uint32_t *)&v->slots,
                                     memory_order_relaxed)) {
        if (fstat(v->fd, &sb) != 0 ||
            (uint64_t)sb.st_size < NXL__REGTAB_HDR + sizeof(*s)) {
            return NULL;
        }
        n = ((uint64_t)sb.st_size - NXL__REGTAB_HDR) / sizeof(*s);
        n = n > NXL__REGTAB_MAX_SLOTS ? NXL__REGTAB_MAX_SLOTS : n;
        /* A cache in a const view: the slot count only grows. */
        atomic_store_explicit((_Atomic uint32_t *)&v->slots, (uint32_t)n,
                              memory_order_relaxed);
        if (slot >= n) {
            return NULL;
        }
    }
    s = rt_slot(v->base, slot);
    if (!nxl__regtab_live(s, gen)) {
        return NULL;
    }
    if (atomic_load_explicit((_Atomic uint64_t *)&s->kind,
                             memory_order_relaxed) != kind ||
        atomic_load_explicit((_Atomic uint64_t *)&s->addr,
                             memory_order_relaxed) != addr ||
        atomic_load_explicit((_Atomic uint64_t *)&s->len,
                             memory_order_relaxed) != len ||
        !nxl__regtab_live(s, gen)) {
        return NULL;
    }
    return s;
}

/* rt_ptr_order sorts pointers. */
static int
rt_ptr_order(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (const void *const *)a;
    uintptr_t y = (uintptr_t) * (const void *const *)b;

    return (x > y) - (x < y);
}

nxl_status_t
nxl__regtab_distinct(const nxl_be_xfer_t *x, const void ***v_p, size_t *n_p)
{
    const void **v, *last = NULL;
    size_t i, n = 0;

    v = malloc((x->count > 0 ? x->count : 1) * sizeof(*v));
    if (v == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "remote region list: out of memory");
    }
    for (i = 0; i < x->count; i++) {
        if (i == 0 || x->remote[i].md != last) {
            last = x->remote[i].md;
            v[n++] = last;
        }
    }
    *v_p = v;
    *n_p = nxl__regtab_dedup(v, n);
    return NXL_OK;
}

size_t
nxl__regtab_dedup(const void **v, size_t n)
{
    size_t i, k;

    if (n <= 1) {
        return n;
    }
    qsort(v, n, sizeof(*v), rt_ptr_order);
    for (i = 1, k = 0; i < n; i++) {
        if (v[i] != v[k]) {
            v[++k] = v[i];
        }
    }
    return k + 1;
}
