/* registry.c - sorted region indexes and memory (de)registration. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

void
nxl__index_init(nxl__index_t *ix, size_t elem_size)
{
    memset(ix, 0, sizeof(*ix));
    ix->elem_size = elem_size;
}

void
nxl__index_fini(nxl__index_t *ix)
{
    free(ix->items);
    free(ix->pmax);
    ix->items = NULL;
    ix->pmax = NULL;
    ix->count = ix->cap = 0;
}

void *
nxl__index_at(const nxl__index_t *ix, size_t i)
{
    return (char *)ix->items + i * ix->elem_size;
}

static const nxl_desc_t *
ix_desc(const nxl__index_t *ix, size_t i)
{
    return (const nxl_desc_t *)nxl__index_at(ix, i);
}

/* key_le reports whether element d sorts at or before (dev, addr). */
static bool
key_le(const nxl_desc_t *d, uint64_t dev, uint64_t addr)
{
    return d->dev_id < dev || (d->dev_id == dev && d->addr <= addr);
}

/* last_le returns the position of the last element at or before (dev,
 * addr), or SIZE_MAX when there is none. */
static size_t
last_le(const nxl__index_t *ix, uint64_t dev, uint64_t addr)
{
    size_t lo = 0, hi = ix->count, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if (key_le(ix_desc(ix, mid), dev, addr)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo == 0 ? SIZE_MAX : lo - 1;
}

static bool
covers(const nxl_desc_t *r, uint64_t addr, uint64_t len, uint64_t dev)
{
    return r->dev_id == dev && addr >= r->addr && len <= r->len &&
           addr - r->addr <= r->len - len;
}

/* pmax_rebuild recomputes the prefix maxima from position from on. */
static void
pmax_rebuild(nxl__index_t *ix, size_t from)
{
    const nxl_desc_t *d, *best;
    size_t i;

    for (i = from; i < ix->count; i++) {
        d = ix_desc(ix, i);
        ix->pmax[i] = i;
        if (i == 0) {
            continue;
        }
        best = ix_desc(ix, ix->pmax[i - 1]);
        if (best->dev_id == d->dev_id &&
            best->addr + best->len > d->addr + d->len) {
            ix->pmax[i] = ix->pmax[i - 1];
        }
    }
}

void *
nxl__index_find_cover(const nxl__index_t *ix, uint64_t addr, uint64_t len,
                      uint64_t dev, size_t *hint)
{
    size_t h = *hint, pos;

    /* Descriptor lists are usually sorted: try the last hit and its
     * successor before searching. */
    if (h < ix->count && covers(ix_desc(ix, h), addr, len, dev)) {
        return nxl__index_at(ix, h);
    }
    if (h + 1 < ix->count && covers(ix_desc(ix, h + 1), addr, len, dev)) {
        *hint = h + 1;
        return nxl__index_at(ix, h + 1);
    }
    pos = last_le(ix, dev, addr);
    if (pos == SIZE_MAX) {
        return NULL;
    }
    /* Every element up to pos starts at or before addr; the one ending
     * last covers the range if any does. */
    if (!covers(ix_desc(ix, pos), addr, len, dev)) {
        pos = ix->pmax[pos];
        if (!covers(ix_desc(ix, pos), addr, len, dev)) {
            return NULL;
        }
    }
    *hint = pos;
    return nxl__index_at(ix, pos);
}

void *
nxl__index_find_exact(const nxl__index_t *ix, const nxl_desc_t *d)
{
    size_t pos = last_le(ix, d->dev_id, d->addr);
    const nxl_desc_t *r;

    /* Equal starts sort together; walk back over them. */
    for (; pos != SIZE_MAX; pos--) {
        r = ix_desc(ix, pos);
        if (r->dev_id != d->dev_id || r->addr != d->addr) {
            break;
        }
        if (r->len == d->len) {
            return nxl__index_at(ix, pos);
        }
        if (pos == 0) {
            break;
        }
    }
    return NULL;
}

void *
nxl__index_find_overlap(const nxl__index_t *ix, const nxl_desc_t *d)
{
    const nxl_desc_t *r;
    size_t pos;

    /* Among the elements starting before d ends, the one ending last. */
    pos = last_le(ix, d->dev_id, d->addr + d->len - 1);
    if (pos == SIZE_MAX) {
        return NULL;
    }
    r = ix_desc(ix, ix->pmax[pos]);
    if (r->dev_id == d->dev_id && r->addr + r->len > d->addr) {
        return nxl__index_at(ix, ix->pmax[pos]);
    }
    return NULL;
}

nxl_status_t
nxl__index_insert(nxl__index_t *ix, const void *elem)
{
    const nxl_desc_t *d = elem;
    size_t pos, cap;
    void *p;

    if (ix->count == ix->cap) {
        cap = ix->cap ? ix->cap * 2 : 16;
        p = realloc(ix->items, cap * ix->elem_size);
        if (p == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "registry: out of memory");
        }
        ix->items = p;
        p = realloc(ix->pmax, cap * sizeof(size_t));
        if (p == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "registry: out of memory");
        }
        ix->pmax = p;
        ix->cap = cap;
    }
    pos = last_le(ix, d->dev_id, d->addr);
    pos = (pos == SIZE_MAX) ? 0 : pos + 1;
    memmove(nxl__index_at(ix, pos + 1), nxl__index_at(ix, pos),
            (ix->count - pos) * ix->elem_size);
    memcpy(nxl__index_at(ix, pos), elem, ix->elem_size);
    ix->count++;
    pmax_rebuild(ix, pos);
    return NXL_OK;
}

void
nxl__index_remove(nxl__index_t *ix, void *p)
{
    size_t pos = (size_t)((char *)p - (char *)ix->items) / ix->elem_size;

    memmove(p, nxl__index_at(ix, pos + 1),
            (ix->count - pos - 1) * ix->elem_size);
    ix->count--;
    pmax_rebuild(ix, pos);
}

/* --- registration ------------------------------------------------------- */

/* be_wanted reports whether backend be is a candidate under opts. */
static bool
be_wanted(const nxl_backend_t *be, nxl_mem_t kind, const nxl_opts_t *opts)
{
    return (be->ops.mem_kinds & (1u << kind)) && nxl__be_allowed(be, opts);
}

/* region_unregister_be undoes backend b's part of region r. */
static void
region_unregister_be(nxl_backend_t *be, nxl__region_t *r)
{
    unsigned b = be->index;

    nxl__be_lock(be);
    if (r->self_rmd[b] != NULL) {
        be->ops.md_unload(be->engine, r->self_rmd[b]);
        r->self_rmd[b] = NULL;
    }
    if (r->md[b] != NULL) {
        be->ops.mem_deregister(be->engine, r->md[b]);
        r->md[b] = NULL;
    }
    nxl__be_unlock(be);
    free(r->pub[b].data);
    r->pub[b].data = NULL;
    r->pub[b].len = 0;
}

/* region_register_be registers region r with backend be, packs its public
 * data, and loads it as this agent's own remote region for loopback. */
static nxl_status_t
region_register_be(nxl_backend_t *be, nxl_mem_t kind, nxl__region_t *r)
{
    nxl_be_region_t reg = {.addr = r->desc.addr,
                           .len = r->desc.len,
                           .dev_id = r->desc.dev_id,
                           .kind = kind,
                           .backing_fd = r->backing_fd,
                           .backing_off = r->backing_off};
    unsigned b = be->index;
    nxl_status_t status;

    nxl__be_lock(be);
    status = be->ops.mem_register(be->engine, &reg, &r->md[b]);
    if (status != NXL_OK) {
        r->md[b] = NULL;
        goto out;
    }
    if (be->ops.caps & (NXL_CAP_REMOTE | NXL_CAP_LOCAL)) {
        status = be->ops.md_pack(be->engine, r->md[b], &r->pub[b]);
        if (status == NXL_ERR_NOT_SUPPORTED) {
            status = NXL_OK;
        }
        if (status != NXL_OK) {
            goto out;
        }
    }
    if ((be->ops.caps & NXL_CAP_LOCAL) && be->self_peer != NULL) {
        status = be->ops.md_unpack(be->engine, be->self_peer, &r->desc, kind,
                                   r->pub[b].data, r->pub[b].len,
                                   &r->self_rmd[b]);
    }
out:
    nxl__be_unlock(be);
    if (status != NXL_OK) {
        region_unregister_be(be, r);
    }
    return status;
}

/* reg_check_overlap refuses descriptor i of a registration when it shares
 * a byte with a registered region of the same kind and device: overlapping
 * regions would make "which registration covers this descriptor" (and so
 * which key a transfer uses) ambiguous. */
static nxl_status_t
reg_check_overlap(const nxl__index_t *ix, const nxl_desc_t *d, size_t i)
{
    const nxl_desc_t *r = nxl__index_find_overlap(ix, d);

    if (r == NULL) {
        return NXL_OK;
    }
    if (r->addr == d->addr && r->len == d->len) {
        return nxl__fail(NXL_ERR_NOT_ALLOWED,
                         "register: descriptor %zu (addr 0x%llx len %llu) "
                         "is already registered", i,
                         (unsigned long long)d->addr,
                         (unsigned long long)d->len);
    }
    return nxl__fail(NXL_ERR_NOT_ALLOWED,
                     "register: descriptor %zu (addr 0x%llx len %llu dev "
                     "%llu) overlaps the registered region 0x%llx+%llu; "
                     "regions of one memory kind and device may not "
                     "overlap", i, (unsigned long long)d->addr,
                     (unsigned long long)d->len,
                     (unsigned long long)d->dev_id,
                     (unsigned long long)r->addr,
                     (unsigned long long)r->len);
}

/* desc_order sorts descriptor pointers by (dev_id, addr). */
static int
desc_order(const void *x, const void *y)
{
    const nxl_desc_t *a = *(const nxl_desc_t *const *)x;
    const nxl_desc_t *b = *(const nxl_desc_t *const *)y;

    if (a->dev_id != b->dev_id) {
        return a->dev_id < b->dev_id ? -1 : 1;
    }
    if (a->addr != b->addr) {
        return a->addr < b->addr ? -1 : 1;
    }
    return 0;
}

/* reg_check_list_overlap refuses a list whose own descriptors overlap
 * (lengths already checked). */
static nxl_status_t
reg_check_list_overlap(const nxl_dlist_t *dlist)
{
    const nxl_desc_t **v, *a, *b;
    nxl_status_t status = NXL_OK;
    size_t i;

    if (dlist->count < 2) {
        return NXL_OK;
    }
    v = malloc(dlist->count * sizeof(*v));
    if (v == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "register: out of memory");
    }
    for (i = 0; i < dlist->count; i++) {
        v[i] = &dlist->descs[i];
    }
    qsort(v, dlist->count, sizeof(*v), desc_order);
    for (i = 1; i < dlist->count; i++) {
        a = v[i - 1];
        b = v[i];
        if (a->dev_id == b->dev_id && a->addr + a->len > b->addr) {
            status = nxl__fail(NXL_ERR_NOT_ALLOWED,
                               "register: descriptors %zu (addr 0x%llx len "
                               "%llu) and %zu (addr 0x%llx len %llu) of the "
                               "list overlap", (size_t)(a - dlist->descs),
                               (unsigned long long)a->addr,
                               (unsigned long long)a->len,
                               (size_t)(b - dlist->descs),
                               (unsigned long long)b->addr,
                               (unsigned long long)b->len);
            break;
        }
    }
    free(v);
    return status;
}

NXL_API nxl_status_t
nxl_mem_register(nxl_agent_t *agent, const nxl_dlist_t *dlist,
                 const nxl_opts_t *opts)
{
    nxl__region_t *regs = NULL;
    nxl_status_t status = NXL_OK, last = NXL_ERR_NOT_SUPPORTED;
    nxl__index_t *ix;
    nxl_backend_t *be;
    unsigned b, nok = 0, tried = 0;
    size_t i;

    if (agent == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "register: NULL agent");
    }
    status = nxl__dlist_check(dlist, "register");
    if (status != NXL_OK) {
        return status;
    }
    if (dlist->count == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "register: empty list");
    }
    status = nxl__opts_check(opts, "register");
    if (status != NXL_OK) {
        return status;
    }
    nxl__ctl_lock(agent);
    ix = &agent->regions[dlist->mem];
    for (i = 0; i < dlist->count; i++) {
        const nxl_desc_t *d = &dlist->descs[i];

        if (d->len == 0 || d->addr + d->len < d->addr) {
            status = nxl__fail(NXL_ERR_INVALID_PARAM,
                               "register: descriptor %zu has a bad length "
                               "(addr 0x%llx len %llu)", i,
                               (unsigned long long)d->addr,
                               (unsigned long long)d->len);
            goto out;
        }
        if (d->addr == 0 &&
            (dlist->mem == NXL_DRAM || dlist->mem == NXL_VRAM)) {
            status = nxl__fail(NXL_ERR_INVALID_PARAM,
                               "register: descriptor %zu has address 0", i);
            goto out;
        }
        status = reg_check_overlap(ix, d, i);
        if (status != NXL_OK) {
            goto out;
        }
    }
    status = reg_check_list_overlap(dlist);
    if (status != NXL_OK) {
        goto out;
    }
    regs = calloc(dlist->count, sizeof(*regs));
    if (regs == NULL) {
        status = nxl__fail(NXL_ERR_NOMEM, "register: out of memory");
        goto out;
    }
    for (i = 0; i < dlist->count; i++) {
        regs[i].desc = dlist->descs[i];
        regs[i].backing_fd = -1;
        if (dlist->mem == NXL_DRAM) {
            nxl__shared_lookup(regs[i].desc.addr, regs[i].desc.len,
                               &regs[i].backing_fd, &regs[i].backing_off);
        }
    }
    /* Best effort across backends, all-or-nothing within one backend. */
    for (b = 0; b < agent->nbackends; b++) {
        be = agent->backends[b];
        if (!be_wanted(be, dlist->mem, opts)) {
            continue;
        }
        tried++;
        for (i = 0; i < dlist->count; i++) {
            last = region_register_be(be, dlist->mem, &regs[i]);
            if (last != NXL_OK) {
                break;
            }
        }
        if (i < dlist->count) {
            nxl__warn("register: backend %s refused descriptor %zu: %s",
                      be->ops.name, i, nxl_last_error());
            while (i-- > 0) {
                region_unregister_be(be, &regs[i]);
            }
            continue;
        }
        nok++;
    }
    if (nok == 0) {
        /* Keep the backend's own reason when one was asked. */
        status = (tried == 0)
                     ? nxl__fail(NXL_ERR_NOT_SUPPORTED,
                                 "register: no backend takes memory kind %d",
                                 (int)dlist->mem)
                     : last;
        goto out;
    }
    for (i = 0; i < dlist->count; i++) {
        status = nxl__index_insert(ix, &regs[i]);
        if (status != NXL_OK) {
            /* Roll back the ones inserted and every backend registration. */
            while (i-- > 0) {
                nxl__index_remove(ix, nxl__index_find_exact(ix, &regs[i].desc));
            }
            for (i = 0; i < dlist->count; i++) {
                for (b = 0; b < agent->nbackends; b++) {
                    region_unregister_be(agent->backends[b], &regs[i]);
                }
            }
            goto out;
        }
    }
out:
    nxl__ctl_unlock(agent);
    free(regs);
    return status;
}

/* region_drop undoes every backend's registration of r. */
static void
region_drop(nxl_agent_t *agent, nxl__region_t *r)
{
    unsigned b;

    for (b = 0; b < agent->nbackends; b++) {
        region_unregister_be(agent->backends[b], r);
    }
}

NXL_API nxl_status_t
nxl_mem_deregister(nxl_agent_t *agent, const nxl_dlist_t *dlist,
                   const nxl_opts_t *opts)
{
    nxl_status_t status = NXL_OK;
    nxl__region_t *r;
    nxl__index_t *ix;
    size_t i;

    if (agent == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "deregister: NULL agent");
    }
    status = nxl__dlist_check(dlist, "deregister");
    if (status == NXL_OK) {
        status = nxl__opts_check(opts, "deregister");
    }
    if (status != NXL_OK) {
        return status;
    }
    nxl__ctl_lock(agent);
    ix = &agent->regions[dlist->mem];
    for (i = 0; i < dlist->count; i++) {
        if (nxl__index_find_exact(ix, &dlist->descs[i]) == NULL) {
            status = nxl__fail(NXL_ERR_NOT_FOUND,
                               "deregister: descriptor %zu (addr 0x%llx len "
                               "%llu dev %llu) is not a registration", i,
                               (unsigned long long)dlist->descs[i].addr,
                               (unsigned long long)dlist->descs[i].len,
                               (unsigned long long)dlist->descs[i].dev_id);
            goto out;
        }
    }
    for (i = 0; i < dlist->count; i++) {
        r = nxl__index_find_exact(ix, &dlist->descs[i]);
        if (r == NULL) {
            continue; /* listed twice */
        }
        region_drop(agent, r);
        nxl__index_remove(ix, r);
    }
out:
    nxl__ctl_unlock(agent);
    return status;
}

void
nxl__regions_fini(nxl_agent_t *agent)
{
    unsigned k;
    size_t i;

    for (k = 0; k < NXL_MEM_KINDS; k++) {
        for (i = 0; i < agent->regions[k].count; i++) {
            region_drop(agent, nxl__index_at(&agent->regions[k], i));
        }
        nxl__index_fini(&agent->regions[k]);
    }
}
