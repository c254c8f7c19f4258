/*
 * connector.c - the per-agent state shared by the connector's operations:
 *
 *   registrations  what operations registered, reference-counted, in one
 *                  range tree per memory kind: an operation whose span lies
 *                  inside a registration takes a reference instead of
 *                  registering again (duplicates in one operation too), the
 *                  last reference deregisters, pool memory (pinned) never
 *                  goes with the operations, and memory the application
 *                  registered with the agent itself is used and left alone.
 *   remotes        peers loaded for active operations, reference-counted
 *                  (Dynamo G3's _remote_refs): loaded (additively) by each
 *                  operation, invalidated when the last reference goes,
 *                  never when something else loaded them first.
 *   notifications  the demultiplexer. nxl_notifs_get drains everything, so
 *                  the connector is the agent's only reader: each drained
 *                  notification whose message is exactly the key of an
 *                  open passive operation completes it (and is consumed);
 *                  every other one queues, in arrival order, for
 *                  nxl_connector_notifs_get. A key that arrives first waits
 *                  in the queue and is claimed when its operation opens.
 *
 * One mutex guards it all; draining happens under it, so concurrent
 * pollers never see or restore each other's notifications.
 */
#include "connect.h"

#include "md.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Agents that have a connector (one each). */
static pthread_mutex_t g_conns_lock = PTHREAD_MUTEX_INITIALIZER;
static nxl_connector_t *g_conns;

/* ---- connector ----------------------------------------------------------- */

NXL_API nxl_status_t
nxl_connector_create(nxl_agent_t *agent, nxl_connector_t **conn_p)
{
    pthread_condattr_t ca;
    nxl_connector_t *c, *it;
    nxl_status_t st;
    unsigned k;

    if (agent == NULL || conn_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connector_create: NULL argument");
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "connector_create: out of memory");
    }
    c->agent = agent;
    c->self = strdup(nxl_agent_name(agent));
    if (c->self == NULL) {
        st = nxl__fail(NXL_ERR_NOMEM, "connector_create: out of memory");
        goto err_free;
    }
    for (k = 0; k < NXL_MEM_KINDS; k++) {
        nxl__btree_init(&c->regs[k]);
    }
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        st = nxl__fail(NXL_ERR_NOMEM, "connector_create: mutex");
        goto err_self;
    }
    if (pthread_condattr_init(&ca) != 0) {
        st = nxl__fail(NXL_ERR_NOMEM, "connector_create: condattr");
        goto err_mutex;
    }
    (void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_cond_init(&c->cond, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        st = nxl__fail(NXL_ERR_NOMEM, "connector_create: cond");
        goto err_mutex;
    }
    pthread_condattr_destroy(&ca);

    pthread_mutex_lock(&g_conns_lock);
    for (it = g_conns; it != NULL; it = it->next_global) {
        if (it->agent == agent) {
            break;
        }
    }
    if (it != NULL) {
        pthread_mutex_unlock(&g_conns_lock);
        st = nxl__fail(NXL_ERR_NOT_ALLOWED,
                       "connector_create: agent '%s' already has a connector",
                       c->self);
        goto err_cond;
    }
    c->next_global = g_conns;
    g_conns = c;
    pthread_mutex_unlock(&g_conns_lock);
    *conn_p = c;
    return NXL_OK;

err_cond:
    pthread_cond_destroy(&c->cond);
err_mutex:
    pthread_mutex_destroy(&c->lock);
err_self:
    free(c->self);
err_free:
    free(c);
    return st;
}

NXL_API nxl_agent_t *
nxl_connector_agent(const nxl_connector_t *conn)
{
    return conn ? conn->agent : NULL;
}

/* reg_drop deregisters reg (lock held) and frees it; returns the agent's
 * status. */
static nxl_status_t
reg_drop(nxl_connector_t *conn, nxl__creg_t *reg)
{
    nxl_desc_t d = {reg->node.addr, reg->node.len, reg->node.dev};
    nxl_dlist_t dl = {reg->mem, &d, 1};
    nxl_status_t st;

    nxl__btree_remove(&conn->regs[reg->mem], &reg->node);
    free(reg);
    st = nxl_mem_deregister(conn->agent, &dl, NULL);
    if (st != NXL_OK) {
        nxl__warn("connect: deregistering 0x%llx+%llu: %s",
                  (unsigned long long)d.addr, (unsigned long long)d.len,
                  nxl_last_error());
    }
    return st;
}

NXL_API void
nxl_connector_destroy(nxl_connector_t *conn)
{
    nxl_connector_t **pp;
    nxl__cremote_t *r;
    nxl__bnode_t *n;
    size_t i, open = 0;
    unsigned k;

    if (conn == NULL) {
        return;
    }
    while (conn->ops != NULL) {
        open++;
        nxl_connect_op_release(conn->ops);
    }
    if (open > 0) {
        nxl__warn("connect: connector of '%s' destroyed with %zu open "
                  "operations (released)",
                  conn->self, open);
    }
    pthread_mutex_lock(&conn->lock);
    for (k = 0; k < NXL_MEM_KINDS; k++) {
        while ((n = nxl__btree_first(&conn->regs[k])) != NULL) {
            (void)reg_drop(conn, NXL__BNODE_OF(n, nxl__creg_t, node));
        }
        nxl__btree_fini(&conn->regs[k]);
    }
    while ((r = conn->remotes) != NULL) {
        r->refs = 1;
        nxl__conn_remote_release(conn, r);
    }
    for (i = 0; i < conn->qlen; i++) {
        nxl__cnotif_t *q = &conn->q[(conn->qhead + i) % conn->qcap];

        free(q->agent);
        free(q->msg);
    }
    free(conn->q);
    free(conn->keys);
    pthread_mutex_unlock(&conn->lock);

    pthread_mutex_lock(&g_conns_lock);
    for (pp = &g_conns; *pp != NULL; pp = &(*pp)->next_global) {
        if (*pp == conn) {
            *pp = conn->next_global;
            break;
        }
    }
    pthread_mutex_unlock(&g_conns_lock);
    pthread_cond_destroy(&conn->cond);
    pthread_mutex_destroy(&conn->lock);
    free(conn->self);
    free(conn);
}

void
nxl__conn_link(nxl_connector_t *conn, struct nxl_connect_op *op)
{
    op->prev = NULL;
    op->next = conn->ops;
    if (conn->ops != NULL) {
        conn->ops->prev = op;
    }
    conn->ops = op;
}

void
nxl__conn_unlink(nxl_connector_t *conn, struct nxl_connect_op *op)
{
    if (op->prev != NULL) {
        op->prev->next = op->next;
    } else if (conn->ops == op) {
        conn->ops = op->next;
    }
    if (op->next != NULL) {
        op->next->prev = op->prev;
    }
    op->prev = op->next = NULL;
}

/* ---- registrations ------------------------------------------------------- */

/* reg_new registers d (kind mem) with the agent and indexes it: *reg_p is
 * the new entry, or NULL when memory registered outside the connector
 * covers d (the agent refused it as registered or overlapping and a local
 * prep finds it covered). */
static nxl_status_t
reg_new(nxl_connector_t *conn, nxl_mem_t mem, const nxl_desc_t *d,
        nxl__creg_t **reg_p)
{
    nxl_dlist_t dl = {mem, d, 1};
    nxl_prepped_t *pp;
    nxl__bnode_t *in_way;
    nxl__creg_t *reg;
    nxl_status_t st;

    reg = calloc(1, sizeof(*reg));
    if (reg == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "connect: out of memory");
    }
    st = nxl_mem_register(conn->agent, &dl, NULL);
    if (st == NXL_ERR_NOT_ALLOWED) {
        free(reg);
        if (nxl_dlist_prep(conn->agent, NULL, &dl, NULL, &pp) == NXL_OK) {
            nxl_dlist_release(pp);
            *reg_p = NULL;
            return NXL_OK;
        }
        return nxl__fail(NXL_ERR_NOT_ALLOWED,
                         "connect: 0x%llx+%llu overlaps registered memory "
                         "without lying inside one registration",
                         (unsigned long long)d->addr,
                         (unsigned long long)d->len);
    }
    if (st != NXL_OK) {
        free(reg);
        return st;
    }
    reg->node.dev = d->dev_id;
    reg->node.addr = d->addr;
    reg->node.len = d->len;
    reg->mem = mem;
    st = nxl__btree_insert(&conn->regs[mem], &reg->node, true, &in_way);
    if (st != NXL_OK) {
        /* Out of memory for a block (the agent accepted d, so no
         * registration of the connector is in the way): undo it. */
        (void)reg_drop(conn, reg);
        return nxl__fail(
            st, "connect: indexing 0x%llx+%llu: %s",
            (unsigned long long)d->addr, (unsigned long long)d->len,
            st == NXL_ERR_NOMEM ? "out of memory" : "overlaps a registration");
    }
    *reg_p = reg;
    return NXL_OK;
}

nxl_status_t
nxl__conn_reg_acquire(nxl_connector_t *conn, nxl_mem_t mem,
                      const nxl_desc_t *descs, size_t n, nxl__creg_t **regs)
{
    nxl__bnode_t *node;
    nxl__creg_t *reg;
    nxl_status_t st;
    size_t i;

    for (i = 0; i < n; i++) {
        const nxl_desc_t *d = &descs[i];

        node = nxl__btree_cover(&conn->regs[mem], d->dev_id, d->addr, d->len);
        if (node != NULL) {
            reg = NXL__BNODE_OF(node, nxl__creg_t, node);
            reg->refs++;
            regs[i] = reg;
            continue;
        }
        st = reg_new(conn, mem, d, &reg);
        if (st != NXL_OK) {
            goto err_release;
        }
        if (reg != NULL) {
            reg->refs = 1;
        }
        regs[i] = reg;
    }
    return NXL_OK;

err_release:
    (void)nxl__conn_reg_release(conn, regs, i);
    return st;
}

nxl_status_t
nxl__conn_reg_release(nxl_connector_t *conn, nxl__creg_t **regs, size_t n)
{
    nxl_status_t first = NXL_OK, st;
    size_t i;

    for (i = 0; i < n; i++) {
        nxl__creg_t *reg = regs[i];

        if (reg == NULL) {
            continue;
        }
        regs[i] = NULL;
        if (--reg->refs > 0 || reg->pinned) {
            continue;
        }
        st = reg_drop(conn, reg);
        if (st != NXL_OK && first == NXL_OK) {
            first = st;
        }
    }
    return first;
}

nxl_status_t
nxl__conn_descs(const char *who, const nxl_connect_desc_t *cd, size_t n,
                nxl_desc_t **out, nxl_mem_t *mem_p)
{
    nxl_desc_t *d;
    size_t i;

    if (cd == NULL || n == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Argument `local_descriptors` must not be an empty "
                         "list.");
    }
    for (i = 0; i < n; i++) {
        if (cd[i].device != NXL_CONNECT_DEVICE_HOST &&
            cd[i].device != NXL_CONNECT_DEVICE_CUDA) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "%s: descriptor %zu: device kind %d is not HOST "
                             "or CUDA",
                             who, i, (int)cd[i].device);
        }
        if (cd[i].ptr == 0) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "Cannot register memory with a null pointer.");
        }
        if (cd[i].size == 0 || cd[i].ptr + cd[i].size < cd[i].ptr) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "%s: descriptor %zu: %llu bytes at 0x%llx cannot "
                             "be registered",
                             who, i, (unsigned long long)cd[i].size,
                             (unsigned long long)cd[i].ptr);
        }
        if (cd[i].device != cd[0].device) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "All local descriptors must have the same memory "
                             "type.");
        }
    }
    d = malloc(n * sizeof(*d));
    if (d == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "%s: out of memory", who);
    }
    for (i = 0; i < n; i++) {
        d[i] = (nxl_desc_t){cd[i].ptr, cd[i].size, cd[i].device_id};
    }
    *out = d;
    *mem_p = nxl__device_mem(cd[0].device);
    return NXL_OK;
}

NXL_API nxl_status_t
nxl_connector_register(nxl_connector_t *conn, const nxl_connect_desc_t *descs,
                       size_t n)
{
    nxl__creg_t **done = NULL;
    bool *fresh = NULL;
    nxl_desc_t *d;
    nxl_mem_t mem;
    nxl_status_t st;
    size_t i;

    if (conn == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connector_register: NULL connector");
    }
    st = nxl__conn_descs("connector_register", descs, n, &d, &mem);
    if (st != NXL_OK) {
        return st;
    }
    done = calloc(n, sizeof(*done));
    fresh = calloc(n, sizeof(*fresh));
    if (done == NULL || fresh == NULL) {
        st = nxl__fail(NXL_ERR_NOMEM, "connector_register: out of memory");
        goto out;
    }
    pthread_mutex_lock(&conn->lock);
    for (i = 0; i < n; i++) {
        nxl__bnode_t *node = nxl__btree_find(&conn->regs[mem], d[i].dev_id,
                                             d[i].addr, d[i].len, 0);
        nxl__creg_t *reg;

        if (node != NULL) {
            reg = NXL__BNODE_OF(node, nxl__creg_t, node);
            fresh[i] = !reg->pinned;
            reg->pinned = true;
            done[i] = reg;
            continue;
        }
        st = reg_new(conn, mem, &d[i], &reg);
        if (st == NXL_OK && reg == NULL) {
            st = nxl__fail(NXL_ERR_NOT_ALLOWED,
                           "connector_register: 0x%llx+%llu is registered "
                           "outside the connector",
                           (unsigned long long)d[i].addr,
                           (unsigned long long)d[i].len);
        }
        if (st != NXL_OK) {
            break;
        }
        reg->pinned = true;
        fresh[i] = true;
        done[i] = reg;
    }
    if (st != NXL_OK) {
        /* Undo this call only: unpin what it pinned, drop what it made. */
        while (i-- > 0) {
            if (!fresh[i]) {
                continue;
            }
            done[i]->pinned = false;
            if (done[i]->refs == 0) {
                (void)reg_drop(conn, done[i]);
            }
        }
    }
    pthread_mutex_unlock(&conn->lock);
out:
    free(done);
    free(fresh);
    free(d);
    return st;
}

NXL_API nxl_status_t
nxl_connector_deregister(nxl_connector_t *conn, const nxl_connect_desc_t *descs,
                         size_t n)
{
    nxl_status_t first = NXL_OK, st;
    nxl_mem_t mem;
    nxl_desc_t *d;
    size_t i;

    if (conn == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connector_deregister: NULL connector");
    }
    st = nxl__conn_descs("connector_deregister", descs, n, &d, &mem);
    if (st != NXL_OK) {
        return st;
    }
    pthread_mutex_lock(&conn->lock);
    for (i = 0; i < n; i++) {
        nxl__bnode_t *node = nxl__btree_find(&conn->regs[mem], d[i].dev_id,
                                             d[i].addr, d[i].len, 0);
        nxl__creg_t *reg = NXL__BNODE_OF(node, nxl__creg_t, node);

        if (reg == NULL || !reg->pinned) {
            st = nxl__fail(NXL_ERR_NOT_FOUND,
                           "connector_deregister: 0x%llx+%llu is not pool "
                           "memory of this connector",
                           (unsigned long long)d[i].addr,
                           (unsigned long long)d[i].len);
        } else {
            reg->pinned = false;
            st = reg->refs == 0 ? reg_drop(conn, reg) : NXL_OK;
        }
        if (st != NXL_OK && first == NXL_OK) {
            first = st;
        }
    }
    pthread_mutex_unlock(&conn->lock);
    free(d);
    return first;
}

/* ---- remotes ------------------------------------------------------------- */

/* remote_busy says whether an open operation that is not terminal uses r. */
static bool
remote_busy(nxl_connector_t *conn, nxl__cremote_t *r, size_t *count_p)
{
    struct nxl_connect_op *op;
    size_t count = 0;

    for (op = conn->ops; op != NULL; op = op->next) {
        int s = atomic_load(&op->state);

        if (op->remote == r && s != NXL_CONNECT_COMPLETE &&
            s != NXL_CONNECT_CANCELLED && s != NXL_CONNECT_ERRORED) {
            count++;
        }
    }
    *count_p = count;
    return count > 0;
}

/* region_key fills a cregion from a decoded section and region. */
static nxl__cregion_t
region_key(const nxl__md_section_t *sec, const nxl__md_region_t *reg)
{
    return (nxl__cregion_t){
        .backend = nxl__hash64(sec->backend, strlen(sec->backend)),
        .pub = nxl__hash64(reg->pub, reg->pub_len),
        .desc = reg->desc,
        .kind = sec->kind,
    };
}

/* stale_overlap says whether a keyed region of snapshot m overlaps one r
 * remembers without being the same region under the same key: the peer
 * deregistered that memory and registered (part of) it again, and an
 * additive load would leave the old key in force for the overlap (the
 * agent keeps both and may resolve a descriptor to the stale one). */
static bool
stale_overlap(const nxl__cremote_t *r, const nxl__md_t *m)
{
    size_t s, i, j;

    for (s = 0; s < m->nsections; s++) {
        const nxl__md_section_t *sec = &m->sections[s];

        for (i = 0; i < sec->count; i++) {
            nxl__cregion_t k;

            if (sec->regions[i].pub_len == 0) {
                continue; /* no key (TCP): the target checks bounds */
            }
            k = region_key(sec, &sec->regions[i]);
            for (j = 0; j < r->nregions; j++) {
                const nxl__cregion_t *o = &r->regions[j];

                if (o->kind != k.kind || o->backend != k.backend ||
                    o->desc.dev_id != k.desc.dev_id ||
                    o->desc.addr >= k.desc.addr + k.desc.len ||
                    k.desc.addr >= o->desc.addr + o->desc.len) {
                    continue;
                }
                if (o->desc.addr != k.desc.addr || o->desc.len != k.desc.len ||
                    o->pub != k.pub) {
                    return true;
                }
            }
        }
    }
    return false;
}

/* remember_regions adds the keyed regions of m that r does not hold yet.
 * Out of memory only weakens the stale check (logged). */
static void
remember_regions(nxl__cremote_t *r, const nxl__md_t *m)
{
    size_t s, i, j;

    for (s = 0; s < m->nsections; s++) {
        const nxl__md_section_t *sec = &m->sections[s];

        for (i = 0; i < sec->count; i++) {
            nxl__cregion_t k;

            if (sec->regions[i].pub_len == 0) {
                continue;
            }
            k = region_key(sec, &sec->regions[i]);
            for (j = 0; j < r->nregions; j++) {
                if (memcmp(&r->regions[j], &k, sizeof(k)) == 0) {
                    break;
                }
            }
            if (j < r->nregions) {
                continue;
            }
            if (r->nregions == r->capregions) {
                size_t cap = r->capregions ? r->capregions * 2 : 8;
                nxl__cregion_t *g = realloc(r->regions, cap * sizeof(*g));

                if (g == NULL) {
                    nxl__warn("connect: out of memory remembering the "
                              "regions of '%s'",
                              r->name);
                    return;
                }
                r->regions = g;
                r->capregions = cap;
            }
            memset(&r->regions[r->nregions], 0, sizeof(k));
            r->regions[r->nregions++] = k;
        }
    }
}

nxl_status_t
nxl__conn_remote_acquire(nxl_connector_t *conn, const void *md, size_t len,
                         char *name_buf, nxl__cremote_t **remote_p)
{
    nxl__cremote_t *r;
    nxl__md_t *m;
    nxl_status_t st;
    bool external = false, replaced = false;
    size_t busy = 0;

    /* Learn the name first: loopback needs no load, and a peer that
     * something else loaded must never be invalidated by us. */
    st = nxl__md_decode(md, len, &m);
    if (st != NXL_OK) {
        return nxl__fail(st == NXL_ERR_NOMEM ? st : NXL_ERR_PROTO,
                         "connect: the agent metadata is not readable: %s",
                         nxl_last_error());
    }
    snprintf(name_buf, NXL__MD_NAME_MAX + 1, "%s", m->agent);
    if (strcmp(name_buf, conn->self) == 0) {
        nxl__md_free(m);
        *remote_p = NULL;
        return NXL_OK;
    }
    for (r = conn->remotes; r != NULL; r = r->next) {
        if (strcmp(r->name, name_buf) == 0) {
            break;
        }
    }
    if (r == NULL) {
        external = nxl_md_check(conn->agent, name_buf, NULL) == NXL_OK;
    } else if (!r->external && (stale_overlap(r, m) ||
                                r->nregions >= NXL__CREMOTE_MAX_REGIONS)) {
        /* Start over from this snapshot when nothing needs the loaded
         * one; refuse while an open operation does. */
        if (remote_busy(conn, r, &busy)) {
            nxl__md_free(m);
            return nxl__fail(NXL_ERR_NOT_ALLOWED,
                             "connect: the metadata of '%s' re-registers "
                             "memory that the loaded metadata describes "
                             "under another key, which open operations "
                             "still use",
                             name_buf);
        }
        (void)nxl_md_invalidate(conn->agent, name_buf);
        r->nregions = 0;
        replaced = true;
    }
    st = nxl_md_load(conn->agent, md, len, NULL, 0);
    if (st == NXL_ERR_NOT_ALLOWED && r != NULL && !r->external && !replaced &&
        !remote_busy(conn, r, &busy)) {
        /* A newer snapshot that conflicts with the loaded one (memory
         * re-registered with other keys): no open operation still needs
         * the old one, so start over. */
        (void)nxl_md_invalidate(conn->agent, name_buf);
        r->nregions = 0;
        st = nxl_md_load(conn->agent, md, len, NULL, 0);
    }
    if (st != NXL_OK) {
        nxl__md_free(m);
        if (st == NXL_ERR_NOT_ALLOWED) {
            return nxl__fail(st,
                             "connect: the metadata of '%s' conflicts with "
                             "the loaded one, which %s (%s)",
                             name_buf,
                             busy > 0 ? "open operations still use"
                                      : "something else loaded",
                             nxl_last_error());
        }
        return st;
    }
    if (r == NULL) {
        r = calloc(1, sizeof(*r));
        if (r == NULL || (r->name = strdup(name_buf)) == NULL) {
            free(r);
            nxl__md_free(m);
            if (!external) {
                (void)nxl_md_invalidate(conn->agent, name_buf);
            }
            return nxl__fail(NXL_ERR_NOMEM, "connect: out of memory");
        }
        r->external = external;
        r->next = conn->remotes;
        conn->remotes = r;
    }
    if (!r->external) {
        remember_regions(r, m);
    }
    nxl__md_free(m);
    r->refs++;
    *remote_p = r;
    return NXL_OK;
}

void
nxl__conn_remote_release(nxl_connector_t *conn, nxl__cremote_t *r)
{
    nxl__cremote_t **pp;
    nxl_status_t st;

    if (r == NULL || --r->refs > 0) {
        return;
    }
    for (pp = &conn->remotes; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    if (!r->external) {
        st = nxl_md_invalidate(conn->agent, r->name);
        if (st != NXL_OK && st != NXL_ERR_NOT_FOUND) {
            nxl__warn("connect: invalidating '%s': %s", r->name,
                      nxl_last_error());
        }
    }
    free(r->regions);
    free(r->name);
    free(r);
}

/* ---- notification demultiplexer ------------------------------------------ */

/* key_bucket returns the bucket of a key (keycap > 0). */
static size_t
key_bucket(const nxl_connector_t *conn, const void *k, size_t n)
{
    return (size_t)nxl__hash64(k, n) & (conn->keycap - 1);
}

/* key_find returns the open passive op whose key is exactly msg. */
static struct nxl_connect_op *
key_find(const nxl_connector_t *conn, const void *msg, size_t len)
{
    struct nxl_connect_op *op;

    if (conn->keycap == 0 || len == 0 || len > NXL_CONNECT_KEY_MAX) {
        return NULL;
    }
    for (op = conn->keys[key_bucket(conn, msg, len)]; op != NULL;
         op = op->key_next) {
        if (op->key_len == len && memcmp(op->key, msg, len) == 0) {
            return op;
        }
    }
    return NULL;
}

/* q_push appends a copy of a notification to the queue. */
static nxl_status_t
q_push(nxl_connector_t *conn, const char *agent, const void *msg, size_t len)
{
    nxl__cnotif_t rec, *grown;
    size_t cap, i;

    if (conn->qlen == conn->qcap) {
        cap = conn->qcap ? conn->qcap * 2 : 32;
        grown = malloc(cap * sizeof(*grown));
        if (grown == NULL) {
            return NXL_ERR_NOMEM;
        }
        for (i = 0; i < conn->qlen; i++) {
            grown[i] = conn->q[(conn->qhead + i) % conn->qcap];
        }
        free(conn->q);
        conn->q = grown;
        conn->qcap = cap;
        conn->qhead = 0;
    }
    rec.agent = strdup(agent);
    rec.msg = malloc(len ? len : 1);
    rec.len = len;
    if (rec.agent == NULL || rec.msg == NULL) {
        free(rec.agent);
        free(rec.msg);
        return NXL_ERR_NOMEM;
    }
    if (len > 0) {
        memcpy(rec.msg, msg, len);
    }
    conn->q[(conn->qhead + conn->qlen) % conn->qcap] = rec;
    conn->qlen++;
    return NXL_OK;
}

/* q_take removes queued item i (0 = oldest), keeping the order. */
static void
q_take(nxl_connector_t *conn, size_t i)
{
    nxl__cnotif_t *q = conn->q;
    size_t cap = conn->qcap, j;

    free(q[(conn->qhead + i) % cap].agent);
    free(q[(conn->qhead + i) % cap].msg);
    for (j = i; j + 1 < conn->qlen; j++) {
        q[(conn->qhead + j) % cap] = q[(conn->qhead + j + 1) % cap];
    }
    conn->qlen--;
}

nxl_status_t
nxl__conn_key_add(nxl_connector_t *conn, struct nxl_connect_op *op)
{
    struct nxl_connect_op **grown, *it, *next;
    size_t cap, i, b;

    if (conn->nkeys + 1 > conn->keycap) {
        cap = conn->keycap ? conn->keycap * 2 : 64;
        grown = calloc(cap, sizeof(*grown));
        if (grown == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "connect: out of memory");
        }
        for (i = 0; i < conn->keycap; i++) {
            for (it = conn->keys[i]; it != NULL; it = next) {
                next = it->key_next;
                b = (size_t)nxl__hash64(it->key, it->key_len) & (cap - 1);
                it->key_next = grown[b];
                grown[b] = it;
            }
        }
        free(conn->keys);
        conn->keys = grown;
        conn->keycap = cap;
    }
    /* A key that arrived before its operation opened. */
    for (i = 0; i < conn->qlen; i++) {
        nxl__cnotif_t *q = &conn->q[(conn->qhead + i) % conn->qcap];

        if (q->len == op->key_len && memcmp(q->msg, op->key, q->len) == 0) {
            q_take(conn, i);
            nxl__op_complete(op);
            return NXL_OK;
        }
    }
    b = key_bucket(conn, op->key, op->key_len);
    op->key_next = conn->keys[b];
    conn->keys[b] = op;
    conn->nkeys++;
    op->keyed = true;
    return NXL_OK;
}

void
nxl__conn_key_remove(nxl_connector_t *conn, struct nxl_connect_op *op)
{
    struct nxl_connect_op **pp;

    if (!op->keyed) {
        return;
    }
    for (pp = &conn->keys[key_bucket(conn, op->key, op->key_len)]; *pp != NULL;
         pp = &(*pp)->key_next) {
        if (*pp == op) {
            *pp = op->key_next;
            break;
        }
    }
    op->key_next = NULL;
    op->keyed = false;
    conn->nkeys--;
}

nxl_status_t
nxl__conn_drain(nxl_connector_t *conn)
{
    nxl_notif_list_t *list;
    struct nxl_connect_op *op;
    nxl_status_t st;
    size_t i, dropped = 0;
    bool routed = false;

    st = nxl_notifs_get(conn->agent, &list, NULL);
    if (st != NXL_OK) {
        return st;
    }
    for (i = 0; i < list->count; i++) {
        const nxl_notif_t *it = &list->items[i];

        op = key_find(conn, it->msg, it->len);
        if (op != NULL) {
            nxl__conn_key_remove(conn, op);
            nxl__op_complete(op);
            routed = true;
            continue;
        }
        if (q_push(conn, it->agent, it->msg, it->len) != NXL_OK) {
            dropped++;
        }
    }
    nxl_notif_list_free(list);
    if (dropped > 0) {
        nxl__error("connect: %zu notifications dropped: out of memory",
                   dropped);
    }
    if (routed) {
        pthread_cond_broadcast(&conn->cond);
    }
    return NXL_OK;
}

NXL_API nxl_status_t
nxl_connector_notifs_get(nxl_connector_t *conn, nxl_notif_list_t **list_p)
{
    nxl_notif_list_t *list;
    size_t i, bytes;
    nxl_status_t st;
    char *p;

    if (conn == NULL || list_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connector_notifs_get: NULL argument");
    }
    pthread_mutex_lock(&conn->lock);
    st = nxl__conn_drain(conn);
    if (st != NXL_OK) {
        pthread_mutex_unlock(&conn->lock);
        return st;
    }
    /* The layout nxl_notif_list_free expects: one allocation holding the
     * header, the items, then names and messages. */
    bytes = sizeof(*list) + conn->qlen * sizeof(nxl_notif_t);
    for (i = 0; i < conn->qlen; i++) {
        nxl__cnotif_t *q = &conn->q[(conn->qhead + i) % conn->qcap];

        bytes += strlen(q->agent) + 1 + q->len;
    }
    list = malloc(bytes);
    if (list == NULL) {
        pthread_mutex_unlock(&conn->lock);
        return nxl__fail(NXL_ERR_NOMEM, "connector_notifs_get: out of memory");
    }
    list->count = conn->qlen;
    list->items = (nxl_notif_t *)(list + 1);
    p = (char *)(list->items + conn->qlen);
    for (i = 0; i < conn->qlen; i++) {
        nxl__cnotif_t *q = &conn->q[(conn->qhead + i) % conn->qcap];
        size_t nl = strlen(q->agent) + 1;

        memcpy(p, q->agent, nl);
        list->items[i].agent = p;
        p += nl;
        if (q->len > 0) {
            memcpy(p, q->msg, q->len);
        }
        list->items[i].msg = p;
        list->items[i].len = q->len;
        p += q->len;
        free(q->agent);
        free(q->msg);
    }
    conn->qlen = 0;
    conn->qhead = 0;
    pthread_mutex_unlock(&conn->lock);
    *list_p = list;
    return NXL_OK;
}

NXL_API nxl_status_t
nxl_connector_notif_take(nxl_connector_t *conn, const void *msg, size_t len,
                         int *found_p)
{
    nxl_status_t st;
    size_t i;

    if (conn == NULL || found_p == NULL || (msg == NULL && len > 0)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connector_notif_take: NULL argument");
    }
    pthread_mutex_lock(&conn->lock);
    st = nxl__conn_drain(conn);
    if (st != NXL_OK) {
        pthread_mutex_unlock(&conn->lock);
        return st;
    }
    *found_p = 0;
    for (i = 0; i < conn->qlen; i++) {
        nxl__cnotif_t *q = &conn->q[(conn->qhead + i) % conn->qcap];

        if (q->len == len && (len == 0 || memcmp(q->msg, msg, len) == 0)) {
            q_take(conn, i);
            *found_p = 1;
            break;
        }
    }
    pthread_mutex_unlock(&conn->lock);
    return NXL_OK;
}

NXL_API nxl_status_t
nxl_connector_info(nxl_connector_t *conn, nxl_connector_info_t *info_p)
{
    nxl_connector_info_t info;
    struct nxl_connect_op *op;
    nxl__cremote_t *r;
    nxl__bnode_t *n;
    unsigned k;

    if (conn == NULL || info_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connector_info: NULL argument");
    }
    memset(&info, 0, sizeof(info));
    pthread_mutex_lock(&conn->lock);
    for (op = conn->ops; op != NULL; op = op->next) {
        info.num_ops++;
    }
    info.num_keys = conn->nkeys;
    for (k = 0; k < NXL_MEM_KINDS; k++) {
        for (n = nxl__btree_first(&conn->regs[k]); n != NULL;
             n = nxl__btree_next(n)) {
            info.num_regs++;
            if (NXL__BNODE_OF(n, nxl__creg_t, node)->pinned) {
                info.num_pool++;
            }
        }
    }
    for (r = conn->remotes; r != NULL; r = r->next) {
        info.num_remotes++;
    }
    info.num_queued = conn->qlen;
    pthread_mutex_unlock(&conn->lock);
    *info_p = info;
    return NXL_OK;
}

NXL_API nxl_status_t
nxl_connector_remote_add(nxl_connector_t *conn, const void *md, size_t len,
                         char *name_buf, size_t cap)
{
    char name[NXL__MD_NAME_MAX + 1];
    nxl__cremote_t *r = NULL;
    nxl_status_t st;

    if (conn == NULL || md == NULL || len == 0 || name_buf == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connector_remote_add: NULL or empty argument");
    }
    pthread_mutex_lock(&conn->lock);
    st = nxl__conn_remote_acquire(conn, md, len, name, &r);
    if (st == NXL_OK && strlen(name) >= cap) {
        nxl__conn_remote_release(conn, r);
        st = nxl__fail(NXL_ERR_INVALID_PARAM,
                       "connector_remote_add: the name '%s' needs %zu bytes",
                       name, strlen(name) + 1);
    } else if (st == NXL_OK && r != NULL) {
        r->handles++;
    }
    pthread_mutex_unlock(&conn->lock);
    if (st == NXL_OK) {
        memcpy(name_buf, name, strlen(name) + 1);
    }
    return st;
}

/* remote_find returns the peer name the connector holds, or NULL (lock
 * held). */
static nxl__cremote_t *
remote_find(nxl_connector_t *conn, const char *name)
{
    nxl__cremote_t *r;

    for (r = conn->remotes; r != NULL; r = r->next) {
        if (strcmp(r->name, name) == 0) {
            return r;
        }
    }
    return NULL;
}

NXL_API nxl_status_t
nxl_connector_remote_remove(nxl_connector_t *conn, const char *name)
{
    nxl__cremote_t *r;

    if (conn == NULL || name == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connector_remote_remove: NULL argument");
    }
    if (strcmp(name, conn->self) == 0) {
        return NXL_OK;
    }
    pthread_mutex_lock(&conn->lock);
    r = remote_find(conn, name);
    if (r == NULL || r->handles == 0) {
        pthread_mutex_unlock(&conn->lock);
        return nxl__fail(NXL_ERR_NOT_FOUND,
                         "connector_remote_remove: no reference is held on "
                         "'%s'",
                         name);
    }
    r->handles--;
    nxl__conn_remote_release(conn, r);
    pthread_mutex_unlock(&conn->lock);
    return NXL_OK;
}

NXL_API nxl_status_t
nxl_connector_remote_refs(nxl_connector_t *conn, const char *name,
                          unsigned *refs_p)
{
    nxl__cremote_t *r;

    if (conn == NULL || name == NULL || refs_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connector_remote_refs: NULL argument");
    }
    pthread_mutex_lock(&conn->lock);
    r = remote_find(conn, name);
    *refs_p = r != NULL ? r->refs : 0;
    pthread_mutex_unlock(&conn->lock);
    return NXL_OK;
}
