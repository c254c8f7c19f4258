/* registry.c - memory (de)registration: local regions into the agent's
 * indexes (index.c) and every capable backend. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

/* --- registration ------------------------------------------------------- */

/* be_wanted reports whether backend be is a candidate under opts. */
static bool
be_wanted(const nxl_backend_t *be, nxl_mem_t kind, const nxl_opts_t *opts)
{
    return (be->ops.mem_kinds & (1u << kind)) && nxl__be_allowed(be, opts);
}

/* region_unregister_be undoes backend be's part of region r (nothing
 * when r has no entry for be: a backend created after r). */
static void
region_unregister_be(nxl_backend_t *be, nxl__region_t *r)
{
    nxl__region_be_t *e;

    if (be->index >= r->nbe) {
        return;
    }
    e = &r->be[be->index];
    if (e->self_rmd == NULL && e->md == NULL && e->pub.data == NULL) {
        return;
    }
    nxl__be_lock(be);
    if (e->self_rmd != NULL) {
        be->ops.md_unload(be->engine, e->self_rmd);
        e->self_rmd = NULL;
    }
    if (e->md != NULL) {
        be->ops.mem_deregister(be->engine, e->md);
        e->md = NULL;
    }
    nxl__be_unlock(be);
    free(e->pub.data);
    e->pub.data = NULL;
    e->pub.len = 0;
}

/* region_register_be registers region r with backend be (which r has an
 * entry for), packs its public data, and loads it as this agent's own
 * remote region for loopback. */
static nxl_status_t
region_register_be(nxl_backend_t *be, nxl_mem_t kind, nxl__region_t *r)
{
    nxl_be_region_t reg = {.addr = r->desc.addr,
                           .len = r->desc.len,
                           .dev_id = r->desc.dev_id,
                           .kind = kind,
                           .backing_fd = r->backing_fd,
                           .backing_off = r->backing_off};
    nxl__region_be_t *e = &r->be[be->index];
    nxl_status_t status;

    nxl__be_lock(be);
    status = be->ops.mem_register(be->engine, &reg, &e->md);
    if (status != NXL_OK) {
        e->md = NULL;
        goto out;
    }
    if (be->ops.caps & (NXL_CAP_REMOTE | NXL_CAP_LOCAL)) {
        status = be->ops.md_pack(be->engine, e->md, &e->pub);
        if (status == NXL_ERR_NOT_SUPPORTED) {
            status = NXL_OK;
        }
        if (status != NXL_OK) {
            goto out;
        }
    }
    if ((be->ops.caps & NXL_CAP_LOCAL) && be->self_peer != NULL) {
        status = be->ops.md_unpack(be->engine, be->self_peer, &r->desc, kind,
                                   e->pub.data, e->pub.len, &e->self_rmd);
    }
out:
    nxl__be_unlock(be);
    if (status != NXL_OK) {
        region_unregister_be(be, r);
    }
    return status;
}

/* reg_conflict says why descriptor i of dlist could not enter the index:
 * in_way is the element that overlaps it, either registered before or
 * one of this list's first i (mine). Overlapping regions would make
 * "which registration covers this descriptor" (and so which key a
 * transfer uses) ambiguous. */
static nxl_status_t
reg_conflict(const nxl_dlist_t *dlist, size_t i, const nxl__region_t *in_way,
             nxl__region_t *const *mine)
{
    const nxl_desc_t *d = &dlist->descs[i], *r = &in_way->desc;
    size_t k;

    for (k = 0; k < i; k++) {
        if (mine[k] == in_way) {
            return nxl__fail(
                NXL_ERR_NOT_ALLOWED,
                "register: descriptors %zu (addr 0x%llx len "
                "%llu) and %zu (addr 0x%llx len %llu) of the "
                "list overlap",
                k, (unsigned long long)r->addr, (unsigned long long)r->len, i,
                (unsigned long long)d->addr, (unsigned long long)d->len);
        }
    }
    if (r->addr == d->addr && r->len == d->len) {
        return nxl__fail(NXL_ERR_NOT_ALLOWED,
                         "register: descriptor %zu (addr 0x%llx len %llu) "
                         "is already registered",
                         i, (unsigned long long)d->addr,
                         (unsigned long long)d->len);
    }
    return nxl__fail(NXL_ERR_NOT_ALLOWED,
                     "register: descriptor %zu (addr 0x%llx len %llu dev "
                     "%llu) overlaps the registered region 0x%llx+%llu; "
                     "regions of one memory kind and device may not "
                     "overlap",
                     i, (unsigned long long)d->addr, (unsigned long long)d->len,
                     (unsigned long long)d->dev_id, (unsigned long long)r->addr,
                     (unsigned long long)r->len);
}

/* reg_check_descs refuses an empty or wrapping descriptor, and address 0
 * of host or device memory. */
static nxl_status_t
reg_check_descs(const nxl_dlist_t *dlist)
{
    const nxl_desc_t *d;
    size_t i;

    for (i = 0; i < dlist->count; i++) {
        d = &dlist->descs[i];
        if (d->len == 0 || d->addr + d->len < d->addr) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "register: descriptor %zu has a bad length "
                             "(addr 0x%llx len %llu)",
                             i, (unsigned long long)d->addr,
                             (unsigned long long)d->len);
        }
        if (d->addr == 0 &&
            (dlist->mem == NXL_DRAM || dlist->mem == NXL_VRAM)) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "register: descriptor %zu has address 0", i);
        }
    }
    return NXL_OK;
}

NXL_API nxl_status_t
nxl_mem_register(nxl_agent_t *agent, const nxl_dlist_t *dlist,
                 const nxl_opts_t *opts)
{
    nxl_opts_t oc;
    nxl__region_t fresh, *one = NULL, **regs = &one;
    nxl_status_t status, last = NXL_ERR_NOT_SUPPORTED;
    nxl__index_t *ix;
    nxl_backend_t *be;
    unsigned b, nok = 0, tried = 0;
    size_t i, n = 0;
    void *e;

    if (agent == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "register: NULL agent");
    }
    status = nxl__dlist_check(dlist, "register");
    if (status == NXL_OK && dlist->count == 0) {
        status = nxl__fail(NXL_ERR_INVALID_PARAM, "register: empty list");
    }
    if (status == NXL_OK) {
        status = nxl__opts_in(&opts, &oc, "register");
    }
    if (status == NXL_OK) {
        status = reg_check_descs(dlist);
    }
    if (status != NXL_OK) {
        return status;
    }
    if (dlist->count > 1) {
        regs = malloc(dlist->count * sizeof(*regs));
        if (regs == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "register: out of memory");
        }
    }
    nxl__ctl_lock(agent);
    ix = &agent->regions[dlist->mem];
    /* Enter every region first: the index refuses overlaps in the same
     * descent that places a region, and nobody sees them before the lock
     * is released. */
    for (n = 0; n < dlist->count; n++) {
        memset(&fresh, 0, sizeof(fresh));
        fresh.desc = dlist->descs[n];
        fresh.backing_fd = -1;
        fresh.nbe = agent->nbackends;
        if (dlist->mem == NXL_DRAM) {
            nxl__shared_lookup(fresh.desc.addr, fresh.desc.len,
                               &fresh.backing_fd, &fresh.backing_off);
        }
        status = nxl__index_add_ext(
            ix, &fresh, fresh.nbe * sizeof(nxl__region_be_t), true, &e);
        if (status == NXL_ERR_NOT_ALLOWED) {
            status = reg_conflict(dlist, n, e, regs);
        }
        if (status != NXL_OK) {
            goto undo;
        }
        regs[n] = e;
    }
    /* Best effort across backends, all-or-nothing within one backend. */
    for (b = 0; b < agent->nbackends; b++) {
        be = agent->backends[b];
        if (!be_wanted(be, dlist->mem, opts)) {
            continue;
        }
        tried++;
        for (i = 0; i < n; i++) {
            last = region_register_be(be, dlist->mem, regs[i]);
            if (last != NXL_OK) {
                break;
            }
        }
        if (i < n) {
            nxl__warn("register: backend %s refused descriptor %zu: %s",
                      be->ops.name, i, nxl_last_error());
            while (i-- > 0) {
                region_unregister_be(be, regs[i]);
            }
            continue;
        }
        nok++;
    }
    if (nok > 0) {
        goto out;
    }
    /* Keep the backend's own reason when one was asked. */
    status = (tried == 0)
                 ? nxl__fail(NXL_ERR_NOT_SUPPORTED,
                             "register: no backend takes memory kind %d",
                             (int)dlist->mem)
                 : last;
undo:
    while (n-- > 0) {
        nxl__index_remove(ix, regs[n]);
    }
out:
    nxl__ctl_unlock(agent);
    if (regs != &one) {
        free(regs);
    }
    return status;
}

/* region_prefetch asks for every line of record r at once. Among many
 * regions, a record about to be dropped is not cached, and dropping it
 * reads several of its lines (the node, then each backend's md, loopback
 * view and public data); asked for together they arrive in about the time
 * of one miss, not one after another. */
static inline void
region_prefetch(const nxl_agent_t *agent, const nxl__region_t *r)
{
    /* The agent's backend count bounds r->nbe, which is not read: it sits
     * in one of the lines asked for. A prefetch past the end of the record
     * does no harm. */
    size_t off, size = sizeof(*r) + agent->nbackends * sizeof(r->be[0]);

    for (off = 0; off < size; off += 64) {
        __builtin_prefetch((const char *)r + off, 1);
    }
}

/* region_drop undoes every backend's registration of r. */
static void
region_drop(nxl_agent_t *agent, nxl__region_t *r)
{
    unsigned b;

    /* Likewise each backend's records of r, read by its deregistration
     * after the previous backend's is done. */
    for (b = 0; b < r->nbe; b++) {
        __builtin_prefetch(r->be[b].md);
        __builtin_prefetch(r->be[b].self_rmd);
        __builtin_prefetch(r->be[b].pub.data);
    }
    /* Backends are never removed: r's entries are the first nbe. */
    for (b = 0; b < r->nbe; b++) {
        region_unregister_be(agent->backends[b], r);
    }
}

NXL_API nxl_status_t
nxl_mem_deregister(nxl_agent_t *agent, const nxl_dlist_t *dlist,
                   const nxl_opts_t *opts)
{
    nxl_opts_t oc;
    nxl_status_t status = NXL_OK;
    nxl__region_t *r = NULL;
    nxl__index_t *ix;
    size_t i;

    if (agent == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "deregister: NULL agent");
    }
    status = nxl__dlist_check(dlist, "deregister");
    if (status == NXL_OK) {
        status = nxl__opts_in(&opts, &oc, "deregister");
    }
    if (status != NXL_OK) {
        return status;
    }
    nxl__ctl_lock(agent);
    ix = &agent->regions[dlist->mem];
    for (i = 0; i < dlist->count; i++) {
        r = nxl__index_find_exact(ix, &dlist->descs[i]);
        if (r == NULL) {
            status = nxl__fail(NXL_ERR_NOT_FOUND,
                               "deregister: descriptor %zu (addr 0x%llx len "
                               "%llu dev %llu) is not a registration",
                               i, (unsigned long long)dlist->descs[i].addr,
                               (unsigned long long)dlist->descs[i].len,
                               (unsigned long long)dlist->descs[i].dev_id);
            goto out;
        }
        if (dlist->count == 1) {
            region_prefetch(agent, r);
        }
    }
    for (i = 0; i < dlist->count; i++) {
        /* One descriptor: the lookup above found it. */
        const nxl__region_t *u =
            dlist->count == 1 ? r : nxl__index_find_exact(ix, &dlist->descs[i]);

        if (nxl__xfers_using(agent, u)) {
            status = nxl__fail(NXL_ERR_NOT_ALLOWED,
                               "deregister: descriptor %zu (addr 0x%llx len "
                               "%llu) is in use by a transfer in flight; "
                               "wait for it or release it first",
                               i, (unsigned long long)dlist->descs[i].addr,
                               (unsigned long long)dlist->descs[i].len);
            goto out;
        }
    }
    /* Prepared lists and transfers holding keys check them again. */
    atomic_fetch_add(&agent->reg_gen, 1);
    for (i = 0; i < dlist->count; i++) {
        /* One descriptor: the lookup above found it. Several may list one
         * twice, so look each up again (the second finds nothing). */
        if (dlist->count > 1) {
            r = nxl__index_find_exact(ix, &dlist->descs[i]);
            if (r == NULL) {
                continue;
            }
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
    nxl__region_t *r;
    unsigned k;

    for (k = 0; k < NXL_MEM_KINDS; k++) {
        for (r = nxl__index_first(&agent->regions[k]); r != NULL;
             r = nxl__index_next(&agent->regions[k], r)) {
            region_drop(agent, r);
        }
        nxl__index_fini(&agent->regions[k]);
    }
}
