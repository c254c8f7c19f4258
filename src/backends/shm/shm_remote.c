/*
 * shm_remote.c - a peer's regions: unpacking their public data, mapping
 * shared memfds and opening device IPC handles (cached per peer), and the
 * registration-table slot a region's revocation is checked against.
 */
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* --- remote regions ------------------------------------------------------- */

/* be_shm_map_get maps the peer's memfd fd (file dev/ino, which must hold
 * [off, off + len)) once per peer and returns a counted reference. Fails
 * (the caller falls back to CMA) when the file cannot be had or is not the
 * one the public data named. */
static nxl_status_t
be_shm_map_get(be_shm_peer_t *peer, uint32_t rfd, uint64_t off, uint64_t len,
               uint64_t dev, uint64_t ino, be_shm_map_t **map_p)
{
    be_shm_map_t *m;
    uint64_t size;
    nxl_status_t status;
    void *base;
    int fd;

    pthread_mutex_lock(&peer->map_lock);
    for (m = peer->maps; m != NULL; m = m->next) {
        if (m->dev == dev && m->ino == ino && off <= m->size &&
            len <= m->size - off) {
            m->refs++;
            *map_p = m;
            pthread_mutex_unlock(&peer->map_lock);
            return NXL_OK;
        }
    }
    fd = nxl__peer_fd_open(peer->pidfd, peer->pid, rfd);
    if (fd < 0) {
        status = nxl__fail_errno(errno, "shm: memfd %u of pid %d", rfd,
                                 (int)peer->pid);
        goto err_unlock;
    }
    if (!nxl__fd_is_file(fd, dev, ino, off, len, &size)) {
        status = nxl__fail(NXL_ERR_PROTO,
                           "shm: fd %u of pid %d is not the region's memfd",
                           rfd, (int)peer->pid);
        goto err_close;
    }
    /* The pid may have been reused between the check and the open: the
     * dev/ino match above already rules out a stranger's file. */
    base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        status = nxl__fail_errno(errno, "shm: mmap of pid %d's memfd",
                                 (int)peer->pid);
        goto err_close;
    }
    close(fd);
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        munmap(base, (size_t)size);
        status = nxl__fail(NXL_ERR_NOMEM, "shm: mapping record");
        goto err_unlock;
    }
    m->dev = dev;
    m->ino = ino;
    m->base = base;
    m->size = (size_t)size;
    m->refs = 1;
    m->next = peer->maps;
    peer->maps = m;
    pthread_mutex_unlock(&peer->map_lock);
    *map_p = m;
    return NXL_OK;

err_close:
    close(fd);
err_unlock:
    pthread_mutex_unlock(&peer->map_lock);
    return status;
}

/* be_shm_map_put drops a mapping reference; the last unmaps. */
static void
be_shm_map_put(be_shm_peer_t *peer, be_shm_map_t *map)
{
    be_shm_map_t **pp;

    pthread_mutex_lock(&peer->map_lock);
    if (--map->refs == 0) {
        for (pp = &peer->maps; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == map) {
                *pp = map->next;
                break;
            }
        }
        munmap(map->base, map->size);
        free(map);
    }
    pthread_mutex_unlock(&peer->map_lock);
}

/* be_shm_ipc_open_dev picks the local device to open a peer's allocation
 * on: its dev_id when this process has such a device, else 0 (with lazy
 * peer access any device can reach it). */
static int
be_shm_ipc_open_dev(const nxl_memkind_ops_t *dk, uint64_t dev_id)
{
    int n = 0;

    if (dk->device_count != NULL && dk->device_count(&n) == NXL_OK &&
        dev_id < (uint64_t)n) {
        return (int)dev_id;
    }
    return 0;
}

/* be_shm_ipc_get opens the peer's device allocation [rbase, rbase + rsize)
 * named by handle once per peer (later rmds share it) and returns a
 * counted reference. The mapping must be at least rsize bytes (mem_range
 * of what ipc_open returned), so that a peer cannot make us reach past
 * it. */
static nxl_status_t
be_shm_ipc_get(be_shm_peer_t *peer, uint64_t rbase, uint64_t rsize,
               uint64_t dev_id, const uint8_t *handle, be_shm_ipc_t **ipc_p)
{
    const nxl_memkind_ops_t *dk = peer->eng->dk;
    be_shm_ipc_t *c;
    nxl_status_t st;
    char why[200];
    void *local = NULL, *lbase = NULL;
    size_t lsize = 0;

    pthread_mutex_lock(&peer->map_lock);
    for (c = peer->ipcs; c != NULL; c = c->next) {
        if (c->rbase == rbase && c->rsize == rsize &&
            memcmp(c->handle.bytes, handle, NXL_IPC_HANDLE_SIZE) == 0) {
            c->refs++;
            pthread_mutex_unlock(&peer->map_lock);
            *ipc_p = c;
            return NXL_OK;
        }
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        pthread_mutex_unlock(&peer->map_lock);
        return nxl__fail(NXL_ERR_NOMEM, "shm: VRAM mapping record");
    }
    memcpy(c->handle.bytes, handle, NXL_IPC_HANDLE_SIZE);
    st = dk->ipc_open(be_shm_ipc_open_dev(dk, dev_id), &c->handle, &local);
    if (st != NXL_OK) {
        pthread_mutex_unlock(&peer->map_lock);
        free(c);
        snprintf(why, sizeof(why), "%s", nxl_last_error());
        return nxl__fail(st,
                         "shm: cannot open %s's VRAM allocation 0x%" PRIx64
                         "+%" PRIu64 " with device kind \"%s\": %s",
                         peer->name, rbase, rsize, dk->name, why);
    }
    st = dk->mem_range(local, &lbase, &lsize);
    if (st != NXL_OK || lbase != local || lsize < rsize) {
        dk->ipc_close(local);
        pthread_mutex_unlock(&peer->map_lock);
        free(c);
        return nxl__fail(NXL_ERR_PROTO,
                         "shm: %s's VRAM allocation 0x%" PRIx64 "+%" PRIu64
                         " opened as %zu bytes at %p (start %p)",
                         peer->name, rbase, rsize, lsize, local, lbase);
    }
    c->rbase = rbase;
    c->rsize = rsize;
    c->local = local;
    c->dk = dk;
    c->refs = 1;
    c->next = peer->ipcs;
    peer->ipcs = c;
    pthread_mutex_unlock(&peer->map_lock);
    *ipc_p = c;
    return NXL_OK;
}

/* be_shm_ipc_put drops a reference; the last one closes the mapping. */
static void
be_shm_ipc_put(be_shm_peer_t *peer, be_shm_ipc_t *c)
{
    be_shm_ipc_t **pp;

    pthread_mutex_lock(&peer->map_lock);
    if (--c->refs == 0) {
        for (pp = &peer->ipcs; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == c) {
                *pp = c->next;
                break;
            }
        }
        if (c->dk->ipc_close(c->local) != NXL_OK) {
            nxl__warn("shm: closing VRAM of %s: %s", peer->name,
                      nxl_last_error());
        }
        free(c);
    }
    pthread_mutex_unlock(&peer->map_lock);
}

/* be_shm_rt_slot finds a region's slot in its owner's registration table
 * (rec: the public data's last 16 bytes), opening the table once per peer,
 * and checks that the slot describes exactly this live region. */
static nxl_status_t
be_shm_rt_slot(be_shm_peer_t *peer, const uint8_t *rec, nxl_mem_t kind,
               uint64_t addr, uint64_t len, const nxl__regtab_slot_t **slot_p,
               uint64_t *gen_p)
{
    uint32_t fdno = nxl__le32(rec), slot = nxl__le32(rec + 4);
    uint64_t gen = nxl__le64(rec + 8);
    const nxl__regtab_slot_t *s;
    nxl_status_t st = NXL_OK;
    int fd;

    pthread_mutex_lock(&peer->map_lock);
    if (peer->rt.base == NULL) {
        fd = nxl__peer_fd_open(peer->pidfd, peer->pid, fdno);
        if (fd < 0) {
            st = nxl__fail_errno(errno,
                                 "shm: cannot open %s's registration table "
                                 "(fd %u of pid %d)",
                                 peer->name, fdno, (int)peer->pid);
            goto out;
        }
        st = nxl__regtab_view_open(&peer->rt, fd, peer->token);
        if (st != NXL_OK) {
            goto out;
        }
        peer->rt_fd = fdno;
    }
    if (fdno != peer->rt_fd) {
        st = nxl__fail(NXL_ERR_PROTO,
                       "shm: public data from %s names another registration "
                       "table (fd %u, not %u)",
                       peer->name, fdno, peer->rt_fd);
        goto out;
    }
    s = nxl__regtab_view_slot(&peer->rt, slot, gen, (uint64_t)kind, addr, len);
    if (s == NULL) {
        st = nxl__fail(NXL_ERR_PROTO,
                       "shm: %s did not register %s region 0x%" PRIx64
                       "+%" PRIu64 " as its metadata says (deregistered "
                       "since, or the metadata claims more than was "
                       "registered)",
                       peer->name, kind == NXL_VRAM ? "VRAM" : "DRAM", addr,
                       len);
        goto out;
    }
    *slot_p = s;
    *gen_p = gen;
out:
    pthread_mutex_unlock(&peer->map_lock);
    return st;
}

/* be_shm_md_unpack validates a peer's public data for region desc and
 * decides how to reach it: identity (loopback), a shared mapping, CMA, or
 * (VRAM) the peer's device allocation opened with its IPC handle. A VRAM
 * region that cannot be opened here still loads (the rest of the peer's
 * metadata stays usable); transfers on it fail in prep with the reason. */
nxl_status_t
be_shm_md_unpack(void *self, void *peer_ctx, const nxl_desc_t *desc,
                 nxl_mem_t kind, const void *pub, size_t len, void **rmd_p)
{
    be_shm_engine_t *eng = self;
    be_shm_peer_t *peer = peer_ctx;
    const uint8_t *p = pub;
    be_shm_rmd_t *rmd;
    be_shm_map_t *map = NULL;
    be_shm_ipc_t *ipc = NULL;
    const nxl__regtab_slot_t *rt = NULL;
    uint64_t addr, rlen, off, base = 0, asize = 0, rt_gen = 0;
    nxl_status_t st;
    int shared, vram;

    if (peer == NULL || peer->magic != BE_SHM_PEER_MAGIC) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: md_unpack without peer");
    }
    if (kind != NXL_DRAM && kind != NXL_VRAM) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "shm: memory kind %d is neither DRAM nor VRAM",
                         (int)kind);
    }
    if (pub != NULL && len >= 8 && nxl__le32(p) == BE_SHM_PUB_MAGIC &&
        p[4] == 1) {
        return nxl__fail(NXL_ERR_PROTO,
                         "shm: public data from %s is version 1 (no "
                         "registration table, so deregistration could not "
                         "be enforced): the peer must run this NXL version",
                         peer->name);
    }
    if (pub == NULL || len < BE_SHM_PUB_PLAIN ||
        nxl__le32(p) != BE_SHM_PUB_MAGIC || p[4] != BE_SHM_PUB_VERSION ||
        (p[5] & ~(BE_SHM_PUB_SHARED_FLAG | BE_SHM_PUB_VRAM_FLAG)) != 0 ||
        p[5] == (BE_SHM_PUB_SHARED_FLAG | BE_SHM_PUB_VRAM_FLAG) || p[6] != 0 ||
        p[7] != 0) {
        return nxl__fail(NXL_ERR_PROTO, "shm: public data from %s: bad header",
                         peer->name);
    }
    shared = (p[5] & BE_SHM_PUB_SHARED_FLAG) != 0;
    vram = (p[5] & BE_SHM_PUB_VRAM_FLAG) != 0;
    if (vram != (kind == NXL_VRAM)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "shm: public data from %s: a %s region loaded as %s",
                         peer->name, vram ? "VRAM" : "DRAM",
                         kind == NXL_VRAM ? "VRAM" : "DRAM");
    }
    if (len != (vram     ? BE_SHM_PUB_VRAM
                : shared ? BE_SHM_PUB_SHARED
                         : BE_SHM_PUB_PLAIN) ||
        (shared && nxl__le32(p + 28) != 0) ||
        (shared && nxl__le32(p + 24) > INT32_MAX)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "shm: public data from %s: bad length or fields",
                         peer->name);
    }
    addr = nxl__le64(p + 8);
    rlen = nxl__le64(p + 16);
    if (desc == NULL || addr != desc->addr || rlen != desc->len || rlen == 0 ||
        addr + rlen < addr) {
        return nxl__fail(NXL_ERR_PROTO,
                         "shm: public data from %s describes another region",
                         peer->name);
    }
    if (vram) {
        base = nxl__le64(p + 32);
        asize = nxl__le64(p + 40);
        if (asize == 0 || base + asize < base ||
            !be_shm_seg_inside(addr, rlen, base, asize)) {
            return nxl__fail(NXL_ERR_PROTO,
                             "shm: public data from %s: VRAM region "
                             "0x%" PRIx64 "+%" PRIu64 " is not inside its "
                             "allocation 0x%" PRIx64 "+%" PRIu64,
                             peer->name, addr, rlen, base, asize);
        }
    }
    /* The slot must describe exactly this live region: that is how a
     * loopback (same-process) peer's region is known to be registered,
     * too. */
    st = be_shm_rt_slot(peer, p + len - BE_SHM_PUB_RT, kind, addr, rlen, &rt,
                        &rt_gen);
    if (st != NXL_OK) {
        return st;
    }
    rmd = nxl__pools_alloc(eng->pools, sizeof(*rmd), true);
    if (rmd == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "shm: remote region");
    }
    rmd->rt = rt;
    rmd->rt_gen = rt_gen;
    rmd->magic = BE_SHM_RMD_MAGIC;
    rmd->kind = kind;
    rmd->peer = peer;
    rmd->addr = addr;
    rmd->len = rlen;
    if (peer->self) {
        rmd->mapped = 1;
        rmd->delta = 0;
    } else if (vram) {
        if (eng->dk == NULL) {
            st = nxl__fail(NXL_ERR_NOT_SUPPORTED,
                           "shm: cannot reach %s's VRAM: VRAM between "
                           "processes needs a device memory kind with IPC "
                           "handles: %s",
                           peer->name, eng->dk_why);
        } else {
            st = be_shm_ipc_get(peer, base, asize, nxl__le64(p + 24), p + 48,
                                &ipc);
        }
        if (st == NXL_ERR_NOMEM || st == NXL_ERR_PROTO) {
            nxl__pools_free(eng->pools, rmd);
            return st;
        }
        if (st == NXL_OK) {
            rmd->mapped = 1;
            rmd->ipc = ipc;
            rmd->delta = (uint64_t)(uintptr_t)ipc->local - base;
        } else {
            rmd->err = st;
            rmd->errmsg = strdup(nxl_last_error());
            if (rmd->errmsg == NULL) {
                nxl__pools_free(eng->pools, rmd);
                return nxl__fail(NXL_ERR_NOMEM, "shm: remote region");
            }
            nxl__debug("%s", rmd->errmsg);
        }
    } else if (shared) {
        off = nxl__le64(p + 32);
        if (be_shm_map_get(peer, nxl__le32(p + 24), off, rlen,
                           nxl__le64(p + 40), nxl__le64(p + 48),
                           &map) == NXL_OK) {
            rmd->mapped = 1;
            rmd->map = map;
            rmd->delta = (uint64_t)(uintptr_t)(map->base + off) - addr;
        } else {
            nxl__debug("shm: region of %s not mapped, using CMA: %s",
                       peer->name, nxl_last_error());
        }
    }
    atomic_fetch_add(&peer->refs, 1);
    *rmd_p = rmd;
    return NXL_OK;
}

/* be_shm_md_unload drops a remote region (and its mapping reference). */
void
be_shm_md_unload(void *self, void *rmdv)
{
    be_shm_engine_t *eng = self;
    be_shm_rmd_t *rmd = rmdv;

    if (rmd == NULL || rmd->magic != BE_SHM_RMD_MAGIC) {
        return;
    }
    if (rmd->map != NULL) {
        be_shm_map_put(rmd->peer, rmd->map);
    }
    if (rmd->ipc != NULL) {
        be_shm_ipc_put(rmd->peer, rmd->ipc);
    }
    be_shm_peer_put(rmd->peer);
    free(rmd->errmsg);
    rmd->magic = 0;
    nxl__pools_free(eng->pools, rmd);
}

/* be_shm_rmd_is_mapped tells tests which path a remote region takes. */
int
be_shm_rmd_is_mapped(const void *rmdv)
{
    const be_shm_rmd_t *rmd = rmdv;

    return rmd != NULL && rmd->magic == BE_SHM_RMD_MAGIC && rmd->mapped;
}
