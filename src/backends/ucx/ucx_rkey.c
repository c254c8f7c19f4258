/*
 * ucx_rkey.c - a peer's regions on the UCX backend: md_unpack validates
 * a region's public data and unpacks its remote key once per endpoint,
 * checks a same-host region against its owner's registration table, and
 * maps the owner's memfd (the map path) when it lies in one; md_unload
 * undoes it.
 */
#include "ucx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* be_ucx_map_get maps p's memfd rfd (file dev/ino, which must hold
 * [off, off + len)) once per peer and returns a counted reference, or
 * NULL (the caller keeps CMA) with the reason logged at debug level. */
static be_ucx_map_t *
be_ucx_map_get(be_ucx_engine_t *eng, be_ucx_peer_t *p, uint32_t rfd,
               uint64_t off, uint64_t len, uint64_t dev, uint64_t ino)
{
    be_ucx_map_t *m;
    uint64_t size;
    void *base;
    int fd;

    pthread_mutex_lock(&eng->lock);
    for (m = p->maps; m != NULL; m = m->next) {
        if (m->dev == dev && m->ino == ino && off <= m->size &&
            len <= m->size - off) {
            m->refs++;
            pthread_mutex_unlock(&eng->lock);
            return m;
        }
    }
    pthread_mutex_unlock(&eng->lock);
    if (rfd > INT32_MAX) {
        return NULL;
    }
    fd = nxl__pidfd_getfd(p->pidfd, (int)rfd);
    if (fd < 0) {
        nxl__debug("ucx: memfd %u of '%s' (pid %d): pidfd_getfd: %s; "
                   "using CMA",
                   rfd, p->name, (int)p->pid, strerror(errno));
        return NULL;
    }
    /* dev/ino rule out any other file behind that fd number. */
    if (!nxl__fd_is_file(fd, dev, ino, off, len, &size)) {
        nxl__debug("ucx: fd %u of '%s' is not the region's memfd; using CMA",
                   rfd, p->name);
        close(fd);
        return NULL;
    }
    base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (base == MAP_FAILED) {
        nxl__debug("ucx: mmap of a memfd of '%s': %s; using CMA", p->name,
                   strerror(errno));
        return NULL;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        munmap(base, (size_t)size);
        return NULL;
    }
    m->dev = dev;
    m->ino = ino;
    m->base = base;
    m->size = (size_t)size;
    m->refs = 1;
    pthread_mutex_lock(&eng->lock);
    m->next = p->maps;
    p->maps = m;
    pthread_mutex_unlock(&eng->lock);
    return m;
}

/* be_ucx_map_put drops a mapping reference; the last one unmaps. */
static void
be_ucx_map_put(be_ucx_engine_t *eng, be_ucx_peer_t *p, be_ucx_map_t *map)
{
    be_ucx_map_t **pp;
    bool last;

    pthread_mutex_lock(&eng->lock);
    last = --map->refs == 0;
    if (last) {
        for (pp = &p->maps; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == map) {
                *pp = map->next;
                break;
            }
        }
    }
    pthread_mutex_unlock(&eng->lock);
    if (last) {
        munmap(map->base, map->size);
        free(map);
    }
}

/* be_ucx_rt_slot finds a same-host region's slot in its owner's
 * registration table (rec: the public data's last BE_UCX_PUB_RT bytes),
 * opening the table once per peer, and checks that the slot describes
 * exactly this live region. */
static nxl_status_t
be_ucx_rt_slot(be_ucx_engine_t *eng, be_ucx_peer_t *p, const uint8_t *rec,
               const nxl_desc_t *desc, nxl_mem_t kind,
               const nxl__regtab_slot_t **slot_p, uint64_t *gen_p)
{
    uint32_t fdno = nxl__le32(rec), slot = nxl__le32(rec + 4);
    uint64_t gen = nxl__le64(rec + 8), token = nxl__le64(rec + 16);
    const nxl__regtab_slot_t *s;
    nxl_status_t st = NXL_OK;
    int fd;

    pthread_mutex_lock(&eng->lock);
    if (p->rt.base == NULL) {
        fd = nxl__peer_fd_open(p->pidfd, p->pid, fdno);
        if (fd < 0) {
            st = nxl__fail_errno(errno,
                                 "ucx: cannot open the registration table "
                                 "of '%s' (fd %u of pid %d)",
                                 p->name, fdno, (int)p->pid);
            goto out;
        }
        st = nxl__regtab_view_open(&p->rt, fd, token);
        if (st != NXL_OK) {
            goto out;
        }
        p->rt_fd = fdno;
    }
    if (fdno != p->rt_fd || token != p->rt.token) {
        st = nxl__fail(NXL_ERR_PROTO,
                       "ucx: a region of '%s' names another registration "
                       "table",
                       p->name);
        goto out;
    }
    s = nxl__regtab_view_slot(&p->rt, slot, gen, (uint64_t)kind, desc->addr,
                              desc->len);
    if (s == NULL) {
        st = nxl__fail(NXL_ERR_PROTO,
                       "ucx: '%s' did not register region 0x%llx+%llu as "
                       "its metadata says (deregistered since, or the "
                       "metadata claims more than was registered)",
                       p->name, (unsigned long long)desc->addr,
                       (unsigned long long)desc->len);
        goto out;
    }
    *slot_p = s;
    *gen_p = gen;
out:
    pthread_mutex_unlock(&eng->lock);
    return st;
}

/* be_ucx_self_view returns the loopback view kept in the allocation of
 * this engine's own registration that rec (the public data's
 * registration-table record) names, zeroed and marked embedded, with a
 * hold on that registration; or NULL, and the caller allocates a record:
 * the engine keeps no views, rec names another region, or its view is
 * out already. Call only once be_ucx_rt_slot has found rec's slot live
 * with rec's generation: the registration is then not freed (the core
 * deregisters its own regions under the lock it makes their loopback
 * views under). */
static be_ucx_rmd_t *
be_ucx_self_view(be_ucx_engine_t *eng, const uint8_t *rec,
                 const nxl_desc_t *desc, nxl_mem_t kind)
{
    uint32_t slot = nxl__le32(rec + 4);
    uint64_t gen = nxl__le64(rec + 8);
    unsigned one = 1;
    be_ucx_rmd_t *rmd;
    be_ucx_md_t *md;

    if (!eng->self_views || slot >= NXL__REGTAB_MAX_SLOTS) {
        return NULL;
    }
    md = atomic_load_explicit(&eng->slot_md[slot], memory_order_acquire);
    if (md == NULL || md->rt_gen != gen || md->addr != desc->addr ||
        md->len != desc->len || md->kind != kind ||
        !atomic_compare_exchange_strong(&md->holds, &one, 2)) {
        return NULL;
    }
    rmd = (be_ucx_rmd_t *)(void *)(md + 1);
    memset(rmd, 0, sizeof(*rmd) + eng->nworkers * sizeof(ucp_rkey_h));
    rmd->embedded = true;
    return rmd;
}

/* be_ucx_rmd_free frees a record md_unpack made: an embedded view drops
 * its hold on its registration (the last hold frees that). */
static void
be_ucx_rmd_free(be_ucx_engine_t *eng, be_ucx_rmd_t *rmd)
{
    be_ucx_md_t *md;

    if (!rmd->embedded) {
        nxl__pools_free(eng->pools, rmd);
        return;
    }
    md = (be_ucx_md_t *)(void *)rmd - 1;
    if (atomic_fetch_sub(&md->holds, 1) == 1) {
        nxl__pools_free(eng->pools, md);
    }
}

/* be_ucx_md_unpack: validate a region's public data and unpack its key once
 * per endpoint (one per worker). */
nxl_status_t
be_ucx_md_unpack(void *self, void *peer_ctx, const nxl_desc_t *desc,
                 nxl_mem_t kind, const void *pub, size_t len, void **rmd_p)
{
    be_ucx_engine_t *eng = self;
    be_ucx_peer_t *p = peer_ctx;
    const uint8_t *b = pub;
    be_ucx_rmd_t *rmd;
    ucs_status_t ust;
    nxl_status_t st;
    const nxl__regtab_slot_t *rt = NULL;
    uint64_t rt_gen = 0;
    uint32_t klen;
    size_t extra;
    unsigned i;
    bool linked;

    if (pub != NULL && len >= 1 && b[0] == 1) {
        return nxl__fail(NXL_ERR_PROTO,
                         "ucx: public data of a region of '%s' is version 1 "
                         "(no registration table, so deregistration could "
                         "not be enforced): the peer must run this NXL "
                         "version",
                         p->name);
    }
    if (pub == NULL || len < BE_UCX_PUB_HDR || b[0] != BE_UCX_PUB_VERSION ||
        (b[2] & ~BE_UCX_PUB_F_MEMFD) != 0 || b[3] != 0) {
        return nxl__fail(NXL_ERR_PROTO,
                         "ucx: public data of a region of '%s' is not an NXL "
                         "UCX key (%zu bytes)",
                         p->name, len);
    }
    klen = nxl__le32(b + 4);
    extra = (b[2] & BE_UCX_PUB_F_MEMFD) != 0 ? BE_UCX_PUB_MEMFD : 0;
    if (klen == 0 || klen > BE_UCX_RKEY_MAX ||
        len - BE_UCX_PUB_HDR < extra + BE_UCX_PUB_RT ||
        (size_t)klen != len - BE_UCX_PUB_HDR - extra - BE_UCX_PUB_RT) {
        return nxl__fail(NXL_ERR_PROTO,
                         "ucx: remote key of a region of '%s' claims %u "
                         "bytes in %zu",
                         p->name, klen, len);
    }
    if (b[1] != (uint8_t)kind) {
        return nxl__fail(NXL_ERR_PROTO,
                         "ucx: a region of '%s' is listed as memory kind %d "
                         "but its key says %u",
                         p->name, (int)kind, b[1]);
    }
    if (p->same_host || p->in_process || p->self) {
        /* Same host: everything but the network path reaches the
         * owner's memory without the owner's say, so its registration
         * table decides, now and at every post. */
        st = be_ucx_rt_slot(eng, p, b + len - BE_UCX_PUB_RT, desc, kind, &rt,
                            &rt_gen);
        if (st != NXL_OK) {
            return st;
        }
    }
    /* A peer without endpoints (loopback on the copy path: this engine
     * needs UCX for none of its transfers) never unpacks the key nor
     * unpacks it again after an endpoint reset, so its records keep no
     * copy of it and stay off the peer's list: a smaller record, and
     * md_unload writes no list neighbours (among many regions, two cache
     * misses per deregistration). For this engine itself the record is
     * the view kept with the registration, when there is one. */
    linked = p->eps != NULL;
    rmd = NULL;
    if (!linked && p->self && rt != NULL) {
        rmd = be_ucx_self_view(eng, b + len - BE_UCX_PUB_RT, desc, kind);
    }
    if (rmd == NULL) {
        /* One allocation: the record, its keys per worker, then the
         * packed key (one malloc and free fewer per region, and its lines
         * adjacent). */
        rmd =
            nxl__pools_alloc(eng->pools,
                             sizeof(*rmd) + eng->nworkers * sizeof(ucp_rkey_h) +
                                 (linked ? klen : 0),
                             true);
        if (rmd == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "ucx: out of memory");
        }
    }
    if (linked) {
        rmd->packed = (uint8_t *)&rmd->rkey[eng->nworkers];
        memcpy(rmd->packed, b + BE_UCX_PUB_HDR, klen);
        rmd->packed_len = klen;
    }
    rmd->linked = linked;
    rmd->peer = p;
    rmd->addr = desc->addr;
    rmd->len = desc->len;
    rmd->kind = kind;
    rmd->rt = rt;
    rmd->rt_gen = rt_gen;
    if (extra > 0) {
        const uint8_t *e = b + BE_UCX_PUB_HDR + klen;
        uint64_t off = nxl__le64(e + 8);

        if (nxl__le32(e + 4) != 0 || kind != NXL_DRAM) {
            st = nxl__fail(NXL_ERR_PROTO,
                           "ucx: bad memfd record in a "
                           "region of '%s'",
                           p->name);
            goto err_destroy;
        }
        /* Only a peer in another process reached by the copy path: the
         * pidfd vouches for the process the fd is taken from. */
        if (p->use_copy && !p->in_process && p->pidfd >= 0 && desc->len > 0 &&
            off + desc->len >= off) {
            rmd->map = be_ucx_map_get(eng, p, nxl__le32(e), off, desc->len,
                                      nxl__le64(e + 16), nxl__le64(e + 24));
            if (rmd->map != NULL) {
                rmd->delta =
                    (uint64_t)(uintptr_t)(rmd->map->base + off) - desc->addr;
            }
        }
    }
    for (i = 0; p->eps != NULL && i < eng->nworkers; i++) {
        be_ucx_worker_t *w = &eng->workers[i];

        pthread_mutex_lock(&w->lock);
        ust = UCS_OK;
        if (p->eps[i] != NULL && p->eps[i]->ep != NULL) {
            ust = ucp_ep_rkey_unpack(p->eps[i]->ep, rmd->packed, &rmd->rkey[i]);
        }
        pthread_mutex_unlock(&w->lock);
        if (ust != UCS_OK) {
            rmd->rkey[i] = NULL;
            st = nxl__fail(NXL_ERR_PROTO,
                           "ucx: remote key of region 0x%llx+%llu of '%s': "
                           "ucp_ep_rkey_unpack: %s",
                           (unsigned long long)desc->addr,
                           (unsigned long long)desc->len, p->name,
                           ucs_status_string(ust));
            goto err_destroy;
        }
    }
    atomic_fetch_add(&p->refs, 1);
    if (linked) {
        pthread_mutex_lock(&eng->lock);
        rmd->next = p->rmds;
        if (p->rmds != NULL) {
            p->rmds->prev = rmd;
        }
        p->rmds = rmd;
        pthread_mutex_unlock(&eng->lock);
    }
    *rmd_p = rmd;
    return NXL_OK;

err_destroy:
    for (i = 0; i < eng->nworkers; i++) {
        if (rmd->rkey[i] != NULL) {
            pthread_mutex_lock(&eng->workers[i].lock);
            ucp_rkey_destroy(rmd->rkey[i]);
            pthread_mutex_unlock(&eng->workers[i].lock);
        }
    }
    if (rmd->map != NULL) {
        be_ucx_map_put(eng, p, rmd->map);
    }
    be_ucx_rmd_free(eng, rmd);
    return st;
}

/* be_ucx_md_unload: destroy the keys (valid after the endpoint closed) and
 * drop the peer reference. */
void
be_ucx_md_unload(void *self, void *rmdp)
{
    be_ucx_engine_t *eng = self;
    be_ucx_rmd_t *rmd = rmdp;
    be_ucx_peer_t *p;
    unsigned i;

    if (rmd == NULL) {
        return;
    }
    p = rmd->peer;
    /* The list neighbours are written below, and among many regions they
     * are not cached: ask for them now, so that the misses overlap the
     * key destruction instead of stalling the unlock after the unlink. */
    if (rmd->linked) {
        __builtin_prefetch(rmd->prev, 1);
        __builtin_prefetch(rmd->next, 1);
    }
    /* Unlinked: its peer has no endpoints, so it holds no keys (and
     * rkey[], at the record's end, need not be read). */
    for (i = 0; rmd->linked && i < eng->nworkers; i++) {
        if (rmd->rkey[i] != NULL) {
            pthread_mutex_lock(&eng->workers[i].lock);
            ucp_rkey_destroy(rmd->rkey[i]);
            rmd->rkey[i] = NULL;
            pthread_mutex_unlock(&eng->workers[i].lock);
        }
    }
    if (rmd->linked) {
        pthread_mutex_lock(&eng->lock);
        if (rmd->prev != NULL) {
            rmd->prev->next = rmd->next;
        } else {
            p->rmds = rmd->next;
        }
        if (rmd->next != NULL) {
            rmd->next->prev = rmd->prev;
        }
        pthread_mutex_unlock(&eng->lock);
    }
    if (rmd->map != NULL) {
        be_ucx_map_put(eng, p, rmd->map);
    }
    be_ucx_rmd_free(eng, rmd);
    be_ucx_peer_put(p);
}
