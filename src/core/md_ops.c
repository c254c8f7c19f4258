/* md_ops.c - local metadata, loading peers, and the side-channel calls. */
#include "core.h"
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* md_build fills md from the agent's state: every region (dlist NULL) or
 * the exact descriptors of dlist, and conn info when with_conn. The
 * arrays are heap-allocated; md_build_free releases them. Lock held. */
static nxl_status_t
md_build(nxl_agent_t *a, const nxl_dlist_t *dlist, bool with_conn,
         nxl__md_t *md)
{
    nxl__md_section_t *sec;
    nxl_backend_t *be;
    nxl__region_t *r;
    size_t i, n, maxsec;
    unsigned b, k;

    memset(md, 0, sizeof(*md));
    md->agent = a->name;
    md->conns = calloc(a->nbackends + 1, sizeof(*md->conns));
    maxsec = (size_t)a->nbackends * NXL_MEM_KINDS;
    md->sections = calloc(maxsec + 1, sizeof(*md->sections));
    if (md->conns == NULL || md->sections == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "metadata: out of memory");
    }
    for (b = 0; with_conn && b < a->nbackends; b++) {
        be = a->backends[b];
        if (be->ops.caps & NXL_CAP_REMOTE) {
            md->conns[md->nconns++] =
                (nxl__md_conn_t){.backend = be->ops.name,
                                 .info = be->conn_info.data,
                                 .len = (uint32_t)be->conn_info.len};
        }
    }
    if (dlist != NULL) {
        md->flags |= NXL__MD_F_PARTIAL;
        if (nxl__dlist_check(dlist, "metadata") != NXL_OK) {
            return NXL_ERR_INVALID_PARAM;
        }
        for (i = 0; i < dlist->count; i++) {
            if (nxl__index_find_exact(&a->regions[dlist->mem],
                                      &dlist->descs[i]) == NULL) {
                return nxl__fail(NXL_ERR_NOT_FOUND,
                                 "metadata: descriptor %zu (addr 0x%llx len "
                                 "%llu) is not a registration",
                                 i, (unsigned long long)dlist->descs[i].addr,
                                 (unsigned long long)dlist->descs[i].len);
            }
        }
    }
    for (k = 0; k < NXL_MEM_KINDS; k++) {
        if (dlist != NULL && (dlist->count == 0 || dlist->mem != k)) {
            continue;
        }
        for (b = 0; b < a->nbackends; b++) {
            be = a->backends[b];
            if (!(be->ops.caps & NXL_CAP_REMOTE)) {
                continue;
            }
            n = dlist ? dlist->count : nxl__index_count(&a->regions[k]);
            sec = &md->sections[md->nsections];
            sec->kind = (nxl_mem_t)k;
            sec->backend = be->ops.name;
            sec->regions =
                calloc(NXL__MAX(n, (size_t)1), sizeof(*sec->regions));
            if (sec->regions == NULL) {
                return nxl__fail(NXL_ERR_NOMEM, "metadata: out of memory");
            }
            md->nsections++;
            r = NULL;
            for (i = 0; i < n; i++) {
                r = dlist      ? nxl__index_find_exact(&a->regions[k],
                                                       &dlist->descs[i])
                    : (i == 0) ? nxl__index_first(&a->regions[k])
                               : nxl__index_next(&a->regions[k], r);
                if (nxl__region_md(r, b) == NULL) {
                    continue;
                }
                sec->regions[sec->count++] =
                    (nxl__md_region_t){.desc = r->desc,
                                       .pub = r->be[b].pub.data,
                                       .pub_len = (uint32_t)r->be[b].pub.len};
            }
            if (sec->count == 0) {
                free(sec->regions);
                md->nsections--;
            }
        }
    }
    return NXL_OK;
}

static void
md_build_free(nxl__md_t *md)
{
    size_t i;

    for (i = 0; md->sections != NULL && i < md->nsections; i++) {
        free(md->sections[i].regions);
    }
    free(md->sections);
    free(md->conns);
}

/* md_serialize encodes md_build's result into *blob_p. */
static nxl_status_t
md_serialize(nxl_agent_t *a, const nxl_dlist_t *dlist, bool with_conn,
             nxl_blob_t *blob_p)
{
    nxl__wbuf_t w;
    nxl__md_t md;
    nxl_status_t status;

    nxl__wbuf_init(&w);
    nxl__data_lock(a);
    status = md_build(a, dlist, with_conn, &md);
    if (status == NXL_OK) {
        status = nxl__md_encode(&md, &w);
    }
    nxl__data_unlock(a);
    md_build_free(&md);
    if (status == NXL_OK) {
        status = nxl__wbuf_finish(&w, blob_p);
    } else {
        nxl__wbuf_fini(&w);
    }
    return status;
}

NXL_API nxl_status_t
nxl_md_local(nxl_agent_t *agent, nxl_blob_t *blob_p)
{
    if (agent == NULL || blob_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "md_local: NULL argument");
    }
    return md_serialize(agent, NULL, true, blob_p);
}

NXL_API nxl_status_t
nxl_md_local_partial(nxl_agent_t *agent, const nxl_dlist_t *dlist,
                     const nxl_opts_t *opts, nxl_blob_t *blob_p)
{
    nxl_opts_t oc;
    bool empty = dlist == NULL || dlist->count == 0;
    nxl_dlist_t none = {.mem = NXL_DRAM, .descs = NULL, .count = 0};
    nxl_status_t status;

    if (agent == NULL || blob_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "md_local_partial: NULL argument");
    }
    status = nxl__opts_in(&opts, &oc, "md_local_partial");
    if (status != NXL_OK) {
        return status;
    }
    return md_serialize(agent, empty ? &none : dlist,
                        empty || (opts != NULL && opts->include_conn_info),
                        blob_p);
}

/* --- loading ------------------------------------------------------------ */

static nxl_backend_t *
backend_by_name(nxl_agent_t *a, const char *name)
{
    unsigned b;

    for (b = 0; b < a->nbackends; b++) {
        if (strcasecmp(a->backends[b]->ops.name, name) == 0) {
            return a->backends[b];
        }
    }
    return NULL;
}

/* md_check_conflicts verifies (before changing anything) that md agrees
 * with what is loaded for peer p: same conn info per backend. (A region
 * that comes with another key replaces the loaded one: md_evict_stale.) */
static nxl_status_t
md_check_conflicts(nxl_agent_t *a, nxl__peer_t *p, const nxl__md_t *md)
{
    nxl_backend_t *be;
    size_t i;

    for (i = 0; i < md->nconns; i++) {
        be = backend_by_name(a, md->conns[i].backend);
        if (be == NULL || p->ctx[be->index] == NULL) {
            continue;
        }
        if (p->conn[be->index].len != md->conns[i].len ||
            memcmp(p->conn[be->index].data, md->conns[i].info,
                   md->conns[i].len) != 0) {
            return nxl__fail(NXL_ERR_NOT_ALLOWED,
                             "md_load: agent '%s' is loaded with other %s "
                             "connection info; invalidate it first",
                             md->agent, be->ops.name);
        }
    }
    return NXL_OK;
}

/* md_evict removes the loaded region old of peer p, which the region d of
 * the snapshot being loaded supersedes: its keys are unloaded and p's
 * generation moves on, so lists prepared and transfers made against p
 * before are refused (NXL_ERR_NOT_FOUND: prepare them again) instead of
 * holding freed keys. NXL_ERR_NOT_ALLOWED, and nothing removed, when a
 * transfer in flight uses old. Control lock held. */
static nxl_status_t
md_evict(nxl_agent_t *a, nxl__peer_t *p, nxl_mem_t kind, nxl__rregion_t *old,
         const nxl_desc_t *d)
{
    nxl_backend_t *be;
    unsigned b;

    if (nxl__xfers_using_remote(a, old)) {
        return nxl__fail(NXL_ERR_NOT_ALLOWED,
                         "md_load: '%s' registered 0x%llx+%llu over its "
                         "region 0x%llx+%llu, which a transfer in flight "
                         "still uses; load it again once that is done",
                         p->name, (unsigned long long)d->addr,
                         (unsigned long long)d->len,
                         (unsigned long long)old->desc.addr,
                         (unsigned long long)old->desc.len);
    }
    for (b = 0; b < a->nbackends; b++) {
        if (old->rmd[b] != NULL) {
            be = a->backends[b];
            nxl__be_lock(be);
            be->ops.md_unload(be->engine, old->rmd[b]);
            nxl__be_unlock(be);
        }
    }
    nxl__log(NXL_LOG_DEBUG,
             "md_load: '%s': region 0x%llx+%llu replaced "
             "by 0x%llx+%llu",
             p->name, (unsigned long long)old->desc.addr,
             (unsigned long long)old->desc.len, (unsigned long long)d->addr,
             (unsigned long long)d->len);
    nxl__index_remove(&p->regions[kind], old);
    p->generation = atomic_fetch_add(&a->generation, 1) + 1;
    return NXL_OK;
}

/* md_evict_stale makes room for region r (memory kind kind, backend b) of
 * the snapshot being loaded into peer p. A loaded region of an earlier
 * load goes when it is r's range under another key of b, or when it
 * overlaps r without being its range: an NXL agent never holds two
 * overlapping registrations at once (docs/design.md, "Region indexes"),
 * so the peer deregistered it since (it freed a buffer and registered it,
 * part of it or a larger one around it, again). Kept, a lookup could pick
 * the dead key and the transfer fail. Regions of one load may overlap (a
 * foreign peer's snapshot) and stay. Statuses as md_evict. */
static nxl_status_t
md_evict_stale(nxl_agent_t *a, nxl__peer_t *p, nxl_mem_t kind, unsigned b,
               const nxl__md_region_t *r)
{
    nxl__rregion_t *old = nxl__index_find_exact(&p->regions[kind], &r->desc);
    nxl_status_t status;

    if (old != NULL) {
        if (old->load == p->loads || old->rmd[b] == NULL ||
            old->pubhash[b] == nxl__hash64(r->pub, r->pub_len)) {
            return NXL_OK; /* the same region: md_apply keeps it */
        }
        status = md_evict(a, p, kind, old, &r->desc);
        if (status != NXL_OK) {
            return status;
        }
    }
    while ((old = nxl__index_find_overlap(&p->regions[kind], &r->desc)) !=
               NULL &&
           old->load != p->loads) {
        status = md_evict(a, p, kind, old, &r->desc);
        if (status != NXL_OK) {
            return status;
        }
    }
    return NXL_OK;
}

/* md_apply loads md into peer p (conflicts already checked). On failure
 * what was added stays loaded: it is consistent, only incomplete. */
static nxl_status_t
md_apply(nxl_agent_t *a, nxl__peer_t *p, const nxl__md_t *md)
{
    const nxl__md_section_t *s;
    nxl__rregion_t *rr, fresh;
    nxl_backend_t *be;
    nxl_status_t status;
    unsigned common = 0, b;
    size_t i, j;
    void *rmd;

    for (i = 0; i < md->nconns; i++) {
        be = backend_by_name(a, md->conns[i].backend);
        if (be == NULL || !(be->ops.caps & NXL_CAP_REMOTE)) {
            continue;
        }
        common++;
        b = be->index;
        if (p->ctx[b] != NULL) {
            continue;
        }
        p->conn[b].data = malloc(NXL__MAX(md->conns[i].len, 1u));
        if (p->conn[b].data == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "md_load: out of memory");
        }
        if (md->conns[i].len > 0) { /* empty conn info has no bytes */
            memcpy(p->conn[b].data, md->conns[i].info, md->conns[i].len);
        }
        p->conn[b].len = md->conns[i].len;
        nxl__be_lock(be);
        status = be->ops.peer_load(be->engine, md->agent, md->conns[i].info,
                                   md->conns[i].len, &p->ctx[b]);
        nxl__be_unlock(be);
        if (status != NXL_OK) {
            p->ctx[b] = NULL;
            free(p->conn[b].data);
            p->conn[b].data = NULL;
            return status;
        }
    }
    if (md->nconns > 0 && common == 0) {
        return nxl__fail(NXL_ERR_BACKEND,
                         "md_load: agent '%s' has no backend in common with "
                         "this agent",
                         md->agent);
    }
    p->loads++;
    for (i = 0; i < md->nsections; i++) {
        s = &md->sections[i];
        be = backend_by_name(a, s->backend);
        if (be == NULL) {
            continue;
        }
        b = be->index;
        if (p->ctx[b] == NULL) {
            return nxl__fail(NXL_ERR_NOT_FOUND,
                             "md_load: regions of '%s' for %s arrived "
                             "without its connection info",
                             md->agent, be->ops.name);
        }
        for (j = 0; j < s->count; j++) {
            const nxl__md_region_t *r = &s->regions[j];
            bool added;

            status = md_evict_stale(a, p, s->kind, b, r);
            if (status != NXL_OK) {
                return status;
            }
            /* Place the region (or find it loaded) in one descent. */
            memset(&fresh, 0, sizeof(fresh));
            fresh.desc = r->desc;
            fresh.load = p->loads;
            status = nxl__index_add(&p->regions[s->kind], &fresh, false,
                                    (void **)&rr);
            added = status == NXL_OK;
            if (status != NXL_OK && status != NXL_ERR_NOT_ALLOWED) {
                return status;
            }
            if (rr->rmd[b] != NULL) {
                continue; /* identical: additive load ignores it */
            }
            nxl__be_lock(be);
            status = be->ops.md_unpack(be->engine, p->ctx[b], &r->desc, s->kind,
                                       r->pub, r->pub_len, &rmd);
            nxl__be_unlock(be);
            if (status != NXL_OK) {
                if (added) {
                    nxl__index_remove(&p->regions[s->kind], rr);
                }
                return status;
            }
            rr->rmd[b] = rmd;
            rr->pubhash[b] = nxl__hash64(r->pub, r->pub_len);
        }
    }
    return NXL_OK;
}

/* md_load_locked loads a decoded md (control lock held). */
static nxl_status_t
md_load_locked(nxl_agent_t *a, const nxl__md_t *md)
{
    nxl__peer_t *p;
    nxl_status_t status;
    bool fresh = false;
    unsigned k;

    if (strcmp(md->agent, a->name) == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "md_load: the metadata is this agent's own ('%s')",
                         a->name);
    }
    p = nxl__peer_find(a, md->agent);
    if (p != NULL && atomic_load(&p->dead)) {
        /* The peer disconnected: this is its restart, replace it. */
        nxl__peer_drop(a, p);
        p = NULL;
    }
    if (p == NULL) {
        p = calloc(1, sizeof(*p));
        if (p == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "md_load: out of memory");
        }
        strcpy(p->name, md->agent);
        atomic_init(&p->dead, false);
        p->generation = atomic_fetch_add(&a->generation, 1) + 1;
        for (k = 0; k < NXL_MEM_KINDS; k++) {
            nxl__index_init(&p->regions[k], sizeof(nxl__rregion_t), a->pools);
        }
        fresh = true;
    } else {
        status = md_check_conflicts(a, p, md);
        if (status != NXL_OK) {
            return status;
        }
    }
    status = md_apply(a, p, md);
    if (fresh) {
        p->next = a->peers;
        a->peers = p;
        if (status != NXL_OK) {
            nxl__peer_drop(a, p);
        }
    }
    return status;
}

NXL_API nxl_status_t
nxl_md_load(nxl_agent_t *agent, const void *blob, size_t len, char *name_buf,
            size_t cap)
{
    nxl__md_t *md = NULL;
    nxl_status_t status;

    if (agent == NULL || blob == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "md_load: NULL argument");
    }
    status = nxl__md_decode(blob, len, &md);
    if (status != NXL_OK) {
        return status;
    }
    nxl__ctl_lock(agent);
    status = md_load_locked(agent, md);
    nxl__ctl_unlock(agent);
    if (status == NXL_OK && name_buf != NULL && cap > 0) {
        snprintf(name_buf, cap, "%s", md->agent);
    }
    nxl__md_free(md);
    return status;
}

NXL_API nxl_status_t
nxl_md_invalidate(nxl_agent_t *agent, const char *remote)
{
    nxl__peer_t *p;
    nxl_status_t status = NXL_OK;

    if (agent == NULL || remote == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "md_invalidate: NULL argument");
    }
    if (strcmp(remote, agent->name) == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "md_invalidate: cannot invalidate this agent itself");
    }
    nxl__ctl_lock(agent);
    p = nxl__peer_find(agent, remote);
    if (p == NULL) {
        status = nxl__fail(NXL_ERR_NOT_FOUND,
                           "md_invalidate: agent '%s' is not loaded", remote);
    } else {
        nxl__peer_drop(agent, p);
    }
    nxl__ctl_unlock(agent);
    return status;
}

NXL_API nxl_status_t
nxl_md_check(nxl_agent_t *agent, const char *remote, const nxl_dlist_t *dlist)
{
    nxl__peer_t *p;
    nxl_status_t status = NXL_OK;
    void *hint = NULL;
    size_t i;

    if (agent == NULL || remote == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "md_check: NULL argument");
    }
    if (dlist != NULL && nxl__dlist_check(dlist, "md_check") != NXL_OK) {
        return NXL_ERR_INVALID_PARAM;
    }
    nxl__data_lock(agent);
    p = nxl__peer_find(agent, remote);
    if (p == NULL || atomic_load(&p->dead)) {
        status = nxl__fail(NXL_ERR_NOT_FOUND,
                           "md_check: agent '%s' is not loaded", remote);
        goto out;
    }
    for (i = 0; dlist != NULL && i < dlist->count; i++) {
        const nxl_desc_t *d = &dlist->descs[i];

        if (nxl__index_find_cover(&p->regions[dlist->mem], d->addr, d->len,
                                  d->dev_id, &hint) == NULL) {
            status = nxl__fail(NXL_ERR_NOT_FOUND,
                               "md_check: descriptor %zu is not covered by "
                               "the regions of '%s'",
                               i, remote);
            goto out;
        }
    }
out:
    nxl__data_unlock(agent);
    return status;
}

/* --- side channel ------------------------------------------------------- */

void
nxl__sc_handler(void *arg, uint8_t type, const uint8_t *payload, size_t len,
                uint8_t *reply_type_p, nxl_blob_t *reply_p)
{
    nxl_agent_t *a = arg;
    nxl_status_t status;
    char name[NXL__NAME_MAX];

    switch (type) {
    case NXL__SC_LOAD:
        status = nxl_md_load(a, payload, len, NULL, 0);
        break;
    case NXL__SC_SEND:
        status = nxl_md_local(a, reply_p);
        if (status == NXL_OK) {
            *reply_type_p = NXL__SC_MD;
            return;
        }
        break;
    case NXL__SC_INVL:
        if (len == 0 || len >= sizeof(name) || memchr(payload, 0, len)) {
            status = nxl__fail(NXL_ERR_PROTO, "side channel: bad INVL name");
            break;
        }
        memcpy(name, payload, len);
        name[len] = '\0';
        status = nxl_md_invalidate(a, name);
        break;
    default:
        status = nxl__fail(NXL_ERR_PROTO,
                           "side channel: unexpected frame "
                           "type %u",
                           type);
        break;
    }
    *reply_type_p = NXL__SC_ACK;
    if (nxl__sc_ack(status, reply_p) != NXL_OK) {
        reply_p->data = NULL;
        reply_p->len = 0;
    }
}

/* --- name store (etcd) -------------------------------------------------- */

/* Without opts->ip_addr, and with NXL_ETCD_ENDPOINTS (or NIXL_...) set,
 * nxl_md_send / _send_partial / _fetch / _invalidate_local go to the
 * agent's metadata store (md/store.h, docs/etcd.md), opened on first use. */

#define MD_STORE_LABEL "metadata" /* NIXL's label for the full metadata */

/* md_store_gone runs on the store's watch thread when a fetched peer's
 * entries vanish (invalidated, or its lease expired): it drops the peer
 * as nxl_md_invalidate does. */
static void
md_store_gone(void *arg, const char *remote)
{
    nxl_agent_t *a = arg;
    nxl__peer_t *p;

    nxl__ctl_lock(a);
    p = nxl__peer_find(a, remote);
    if (p != NULL) {
        nxl__peer_drop(a, p);
        nxl__log(NXL_LOG_INFO,
                 "etcd: '%s' left the store; '%s' invalidated "
                 "it",
                 remote, a->name);
    }
    nxl__ctl_unlock(a);
}

/* md_store_wanted says whether a call with opts goes to the store. */
static bool
md_store_wanted(const nxl_opts_t *opts)
{
    const char *eps;

    if (opts != NULL && opts->ip_addr != NULL && opts->ip_addr[0] != '\0') {
        return false;
    }
    eps = nxl__getenv("ETCD_ENDPOINTS");
    return eps != NULL && eps[strspn(eps, ",; \t")] != '\0';
}

/* md_store_get returns the agent's store, opening it on first use, and the
 * call's timeout. No agent lock may be held. */
static nxl_status_t
md_store_get(nxl_agent_t *a, const nxl_opts_t *opts, const char *where,
             nxl__md_store_t **store_p, int *timeout_p)
{
    nxl_status_t status = nxl__opts_check(opts, where);
    nxl__etcd_cfg_t cfg;

    if (status != NXL_OK) {
        return status;
    }
    pthread_mutex_lock(&a->store_lock);
    if (a->store == NULL) {
        status = nxl__etcd_cfg_env(&cfg);
        if (status == NXL_OK) {
            status = nxl__etcd_open(&cfg, a->name, md_store_gone, a, &a->store);
        }
        if (status == NXL_OK && !a->locking) {
            /* The store's watch thread invalidates peers, so the agent
             * locks from now on even in NXL_SYNC_NONE. Safe to switch:
             * such a caller makes no other call on the agent meanwhile. */
            a->locking = true;
        }
    }
    *store_p = a->store;
    pthread_mutex_unlock(&a->store_lock);
    *timeout_p =
        (opts != NULL && opts->timeout_ms > 0) ? opts->timeout_ms : 5000;
    return status;
}

void
nxl__md_store_fini(nxl_agent_t *a)
{
    if (a->store != NULL) {
        a->store->ops->close(a->store);
        a->store = NULL;
    }
}

/* md_store_send publishes blob under label (nxl_md_send and _partial). */
static nxl_status_t
md_store_send(nxl_agent_t *a, const nxl_dlist_t *dlist, bool partial,
              const nxl_opts_t *opts)
{
    const char *where = partial ? "md_send_partial" : "md_send";
    const char *label =
        (opts != NULL && opts->label != NULL && opts->label[0] != '\0')
            ? opts->label
            : NULL;
    nxl__md_store_t *s;
    nxl_status_t status;
    nxl_blob_t blob;
    int timeout = 0;

    if (partial && label == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "%s: etcd needs opts->label for partial metadata",
                         where);
    }
    status = md_store_get(a, opts, where, &s, &timeout);
    if (status != NXL_OK) {
        return status;
    }
    status = partial ? nxl_md_local_partial(a, dlist, opts, &blob)
                     : nxl_md_local(a, &blob);
    if (status != NXL_OK) {
        return status;
    }
    status = s->ops->publish(s, label ? label : MD_STORE_LABEL, blob.data,
                             blob.len, timeout);
    nxl_blob_free(&blob);
    return status;
}

/* md_store_fetch reads remote's metadata under opts->label (default
 * "metadata"), waiting for it up to the timeout, loads it and watches the
 * peer so that its disappearance invalidates it here. */
static nxl_status_t
md_store_fetch(nxl_agent_t *a, const char *remote, const nxl_opts_t *opts)
{
    const char *label =
        (opts != NULL && opts->label != NULL && opts->label[0] != '\0')
            ? opts->label
            : MD_STORE_LABEL;
    nxl_blob_t blob = {0};
    nxl__md_store_t *s;
    nxl__md_t *md = NULL;
    nxl__peer_t *p;
    nxl_status_t status;
    uint64_t version = 0, session = 0;
    bool replaced = false;
    int timeout = 0;

    if (remote == NULL || remote[0] == '\0') {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "md_fetch: etcd needs the remote agent's name");
    }
    if (strcmp(remote, a->name) == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "md_fetch: '%s' is this agent itself", remote);
    }
    status = md_store_get(a, opts, "md_fetch", &s, &timeout);
    if (status != NXL_OK) {
        return status;
    }
    status =
        s->ops->fetch(s, remote, label, timeout, &blob, &version, &session);
    if (status != NXL_OK) {
        return status;
    }
    status = nxl__md_decode(blob.data, blob.len, &md);
    if (status != NXL_OK) {
        goto out;
    }
    if (strcmp(remote, md->agent) != 0) {
        status = nxl__fail(NXL_ERR_MISMATCH,
                           "md_fetch: etcd holds metadata of '%s' under the "
                           "name '%s'",
                           md->agent, remote);
        goto out;
    }
    /* Watch before loading: a deletion older than this version can then
     * no longer drop what is loaded now. */
    status = s->ops->watch(s, remote, version, session, &replaced);
    if (status != NXL_OK) {
        goto out;
    }
    nxl__ctl_lock(a);
    p = replaced ? nxl__peer_find(a, remote) : NULL;
    if (p != NULL) {
        /* remote restarted (a new session replaced its keys without a
         * deletion): what is loaded belongs to the old process. */
        nxl__peer_drop(a, p);
    }
    status = md_load_locked(a, md);
    nxl__ctl_unlock(a);
out:
    nxl__md_free(md);
    nxl_blob_free(&blob);
    return status;
}

/* md_store_invalidate deletes this agent's entries. */
static nxl_status_t
md_store_invalidate(nxl_agent_t *a, const nxl_opts_t *opts)
{
    nxl__md_store_t *s;
    nxl_status_t status;
    int timeout = 0;

    status = md_store_get(a, opts, "md_invalidate_local", &s, &timeout);
    if (status != NXL_OK) {
        return status;
    }
    return s->ops->invalidate(s, timeout);
}

/* sc_target checks that opts names a side-channel peer. */
static nxl_status_t
sc_target(const nxl_opts_t *opts, int *timeout_p)
{
    nxl_status_t status = nxl__opts_check(opts, "metadata");

    if (status != NXL_OK) {
        return status;
    }
    if (opts == NULL || opts->ip_addr == NULL || opts->ip_addr[0] == '\0') {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "metadata: no opts->ip_addr given and "
                         "NXL_ETCD_ENDPOINTS is not set");
    }
    *timeout_p = opts->timeout_ms > 0 ? opts->timeout_ms : 5000;
    return NXL_OK;
}

/* sc_send_blob sends a LOAD frame carrying blob and returns the ACK. */
static nxl_status_t
sc_send_blob(nxl_agent_t *a, const nxl_opts_t *opts, int timeout,
             const nxl_blob_t *blob)
{
    nxl_blob_t reply = {0};
    nxl_status_t status;
    uint8_t rtype = 0;

    status =
        nxl__sc_call_auth(opts->ip_addr, opts->port, &a->sc_auth, NXL__SC_LOAD,
                          blob->data, blob->len, timeout, &rtype, &reply);
    if (status != NXL_OK) {
        return status;
    }
    if (rtype != NXL__SC_ACK) {
        status =
            nxl__fail(NXL_ERR_PROTO,
                      "side channel: LOAD answered with frame type %u", rtype);
    } else {
        status = nxl__sc_ack_parse(reply.data, reply.len);
    }
    nxl_blob_free(&reply);
    return status;
}

/* md_send sends this agent's metadata (all of it, or the part dlist
 * describes when partial) to the etcd store or the side channel opts
 * name: nxl_md_send and nxl_md_send_partial, where names the call. */
static nxl_status_t
md_send(nxl_agent_t *agent, const nxl_dlist_t *dlist, bool partial,
        const nxl_opts_t *opts, const char *where)
{
    nxl_opts_t oc;
    nxl_blob_t blob;
    nxl_status_t status;
    int timeout = 0;

    if (agent == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "%s: NULL agent", where);
    }
    status = nxl__opts_in(&opts, &oc, where);
    if (status != NXL_OK) {
        return status;
    }
    if (md_store_wanted(opts)) {
        return md_store_send(agent, dlist, partial, opts);
    }
    status = sc_target(opts, &timeout);
    if (status != NXL_OK) {
        return status;
    }
    status = partial ? nxl_md_local_partial(agent, dlist, opts, &blob)
                     : nxl_md_local(agent, &blob);
    if (status != NXL_OK) {
        return status;
    }
    status = sc_send_blob(agent, opts, timeout, &blob);
    nxl_blob_free(&blob);
    return status;
}

NXL_API nxl_status_t
nxl_md_send(nxl_agent_t *agent, const nxl_opts_t *opts)
{
    return md_send(agent, NULL, false, opts, "md_send");
}

NXL_API nxl_status_t
nxl_md_send_partial(nxl_agent_t *agent, const nxl_dlist_t *dlist,
                    const nxl_opts_t *opts)
{
    return md_send(agent, dlist, true, opts, "md_send_partial");
}

NXL_API nxl_status_t
nxl_md_fetch(nxl_agent_t *agent, const char *remote, const nxl_opts_t *opts)
{
    nxl_opts_t oc;
    nxl_blob_t reply = {0};
    nxl__md_t *md = NULL;
    nxl_status_t status;
    uint8_t rtype = 0;
    int timeout = 0;

    if (agent == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "md_fetch: NULL agent");
    }
    status = nxl__opts_in(&opts, &oc, "md_fetch");
    if (status != NXL_OK) {
        return status;
    }
    if (md_store_wanted(opts)) {
        return md_store_fetch(agent, remote, opts);
    }
    status = sc_target(opts, &timeout);
    if (status != NXL_OK) {
        return status;
    }
    status = nxl__sc_call_auth(opts->ip_addr, opts->port, &agent->sc_auth,
                               NXL__SC_SEND, NULL, 0, timeout, &rtype, &reply);
    if (status != NXL_OK) {
        return status;
    }
    if (rtype == NXL__SC_ACK) {
        status = nxl__sc_ack_parse(reply.data, reply.len);
        if (status == NXL_OK) {
            status = nxl__fail(NXL_ERR_PROTO,
                               "side channel: SEND answered without metadata");
        }
        goto out;
    }
    if (rtype != NXL__SC_MD) {
        status =
            nxl__fail(NXL_ERR_PROTO,
                      "side channel: SEND answered with frame type %u", rtype);
        goto out;
    }
    status = nxl__md_decode(reply.data, reply.len, &md);
    if (status != NXL_OK) {
        goto out;
    }
    if (remote != NULL && remote[0] != '\0' && strcmp(remote, md->agent) != 0) {
        status = nxl__fail(
            NXL_ERR_MISMATCH, "md_fetch: %s:%u is agent '%s', not '%s'",
            opts->ip_addr, (unsigned)opts->port, md->agent, remote);
        goto out;
    }
    nxl__ctl_lock(agent);
    status = md_load_locked(agent, md);
    nxl__ctl_unlock(agent);
out:
    nxl__md_free(md);
    nxl_blob_free(&reply);
    return status;
}

NXL_API nxl_status_t
nxl_md_invalidate_local(nxl_agent_t *agent, const nxl_opts_t *opts)
{
    nxl_opts_t oc;
    nxl_blob_t reply = {0};
    nxl_status_t status;
    uint8_t rtype = 0;
    int timeout = 0;

    if (agent == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "md_invalidate_local: NULL");
    }
    status = nxl__opts_in(&opts, &oc, "md_invalidate_local");
    if (status != NXL_OK) {
        return status;
    }
    if (md_store_wanted(opts)) {
        return md_store_invalidate(agent, opts);
    }
    status = sc_target(opts, &timeout);
    if (status != NXL_OK) {
        return status;
    }
    status = nxl__sc_call_auth(opts->ip_addr, opts->port, &agent->sc_auth,
                               NXL__SC_INVL, agent->name, strlen(agent->name),
                               timeout, &rtype, &reply);
    if (status != NXL_OK) {
        return status;
    }
    status = (rtype == NXL__SC_ACK)
                 ? nxl__sc_ack_parse(reply.data, reply.len)
                 : nxl__fail(NXL_ERR_PROTO,
                             "side channel: INVL answered with frame type %u",
                             rtype);
    nxl_blob_free(&reply);
    return status;
}
