/*
 * shm.c - the SHM backend: DRAM and VRAM transfers between processes of one
 * host (and between engines of one process). This file: the engine, local
 * regions and the ops table; peers are in shm_peer.c, a peer's regions in
 * shm_remote.c, transfers in shm_xfer.c, copy threads in shm_pool.c,
 * copies in shm_copy.c and notifications in shm_notif.c. The formats:
 *
 * Conn info (little endian, 72 + sock_len bytes, version 1):
 *    0 u32 magic "NXSC"     4 u16 version    6 u16 sock_len
 *    8 u32 pid             12 u32 zero      16 u64 starttime (stat field 22)
 *   24 u64 token           32 u64 probe address (where token lives)
 *   40 u8[16] boot_id      56 u64 pid ns inode   64 u64 net ns inode
 *   72 sock_name (abstract, without the leading NUL)
 * A peer on another boot, pid or network namespace is NXL_ERR_NOT_SUPPORTED;
 * a peer whose start time differs, or whose token cannot be read back at
 * the probe address through CMA, is gone (NXL_ERR_REMOTE_DISCONNECT).
 *
 * Public data of a region (little endian, version 2; 40, 72 or 128 bytes):
 *    0 u32 magic "NXSR"   4 u8 version   5 u8 flags   6 u16 0
 *    8 u64 addr          16 u64 len
 *   flags 1 (shared DRAM): 24 u32 memfd number in the owner   28 u32 0
 *                32 u64 offset of addr in it   40 u64 st_dev   48 u64 st_ino
 *   flags 2 (VRAM): 24 u64 dev_id   32 u64 allocation base   40 u64 its size
 *                48 u8[64] the device kind's IPC handle of the allocation
 *   then, last (16 bytes): u32 the registration table's fd number in the
 *                owner, u32 the region's slot, u64 its generation
 * No flags: plain DRAM (24 + 16 bytes). The flags exclude each other; VRAM
 * goes with memory kind NXL_VRAM and nothing else does. A VRAM region must
 * lie inside the allocation it names, and a peer that opens the handle
 * checks (mem_range) that the mapping is at least as large as claimed.
 * The slot (util/regtab.h) must describe exactly this region, and every
 * post checks that its generation is unchanged: what the owner
 * deregistered is never touched again, and a widened or forged blob
 * grants nothing. Version 1 (no table) is refused.
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

/* Process-wide list of live engines: a conn info that names this process
 * must name one of them, and loopback regions must be registered there. */
pthread_mutex_t be_shm_global_lock = PTHREAD_MUTEX_INITIALIZER;
be_shm_engine_t *be_shm_global_engines;
/* Bumped by every fini: a loopback peer re-checks that its engine lives
 * only when this moved (one atomic load per post otherwise). */
atomic_uint be_shm_fini_gen;

/* --- small helpers -------------------------------------------------------- */

/* be_shm_starttime reads field 22 (start time in clock ticks since boot) of
 * /proc/<pid>/stat. Returns 0 on success, else an errno value. */
int
be_shm_starttime(pid_t pid, uint64_t *st_p)
{
    char path[64], buf[1024], *p, *end;
    unsigned long long v;
    ssize_t n;
    int fd, field, err;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    err = errno;
    close(fd);
    if (n <= 0) {
        return n < 0 ? err : EIO;
    }
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the command name may hold spaces and ')' */
    if (p == NULL) {
        return EIO;
    }
    p++;
    for (field = 3; field < 22; field++) {
        p = strchr(p + 1, ' ');
        if (p == NULL) {
            return EIO;
        }
    }
    errno = 0;
    v = strtoull(p + 1, &end, 10);
    if (errno != 0 || end == p + 1) {
        return EIO;
    }
    *st_p = v;
    return 0;
}

/* be_shm_boot_id reads the kernel's boot id (16 bytes from its UUID text);
 * zeros when it cannot be read. */
static void
be_shm_boot_id(uint8_t id[16])
{
    char buf[64];
    unsigned k = 0, hi = 0, half = 0, d;
    ssize_t n;
    int fd, i;

    memset(id, 0, 16);
    fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    for (i = 0; i < n && k < 16; i++) {
        if (buf[i] >= '0' && buf[i] <= '9') {
            d = (unsigned)(buf[i] - '0');
        } else if (buf[i] >= 'a' && buf[i] <= 'f') {
            d = (unsigned)(buf[i] - 'a' + 10);
        } else {
            continue;
        }
        if (half) {
            id[k++] = (uint8_t)((hi << 4) | d);
        } else {
            hi = d;
        }
        half = !half;
    }
}

/* be_shm_ns_ino returns the inode of /proc/self/ns/<what>, or 0. */
static uint64_t
be_shm_ns_ino(const char *what)
{
    char path[64];
    struct stat st;

    snprintf(path, sizeof(path), "/proc/self/ns/%s", what);
    return (stat(path, &st) == 0) ? (uint64_t)st.st_ino : 0;
}

/* be_shm_default_threads is what num_threads=auto means: one worker per
 * spare core, at most 3. On the 2-core development box two threads in all
 * (caller + 1 worker) move about 1.5x the bytes of one for 4-64 MiB when
 * the machine is otherwise idle (split_policy=adaptive handles busy times);
 * more than two copying threads could not be measured there. */
static unsigned
be_shm_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (n <= 1) {
        return 0;
    }
    return (unsigned)NXL__MIN(n - 1, 3);
}

/* --- engine --------------------------------------------------------------- */

static const nxl_param_t be_shm_defaults[] = {
    {"num_threads", "auto"},
    {"split_threshold", "1048576"},
    {"nt_threshold", "262144"},
    {"split_policy", "adaptive"},
};

/* be_shm_parse_params reads params (keys of be_shm_defaults) into eng. */
static nxl_status_t
be_shm_parse_params(be_shm_engine_t *eng, const nxl_params_t *params)
{
    const nxl_param_t *p;
    nxl_status_t st;
    uint64_t v;
    size_t i;

    eng->num_threads = be_shm_default_threads();
    eng->split_threshold = 1u << 20;
    eng->nt_threshold = 256u << 10;
    for (i = 0; params != NULL && i < params->count; i++) {
        p = &params->items[i];
        if (p->key == NULL) {
            return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: NULL param key");
        }
        if (strcmp(p->key, "num_threads") == 0) {
            if (p->value != NULL && strcmp(p->value, "auto") == 0) {
                continue;
            }
            st = nxl__param_u64("shm", p->key, p->value, 0, 0,
                                BE_SHM_MAX_THREADS, &v);
            if (st != NXL_OK) {
                return st;
            }
            eng->num_threads = (unsigned)v;
        } else if (strcmp(p->key, "split_threshold") == 0) {
            st = nxl__param_u64("shm", p->key, p->value, 1, 4096,
                                UINT64_MAX >> 1, &eng->split_threshold);
            if (st != NXL_OK) {
                return st;
            }
        } else if (strcmp(p->key, "split_policy") == 0) {
            if (p->value != NULL && strcmp(p->value, "adaptive") == 0) {
                eng->split_always = 0;
            } else if (p->value != NULL && strcmp(p->value, "always") == 0) {
                eng->split_always = 1;
            } else {
                return nxl__fail(NXL_ERR_INVALID_PARAM,
                                 "shm: split_policy=\"%s\": expected adaptive "
                                 "or always",
                                 p->value ? p->value : "(null)");
            }
        } else if (strcmp(p->key, "nt_threshold") == 0) {
            st = nxl__param_u64("shm", p->key, p->value, 1, 0, UINT64_MAX >> 1,
                                &eng->nt_threshold);
            if (st != NXL_OK) {
                return st;
            }
        } else {
            return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: unknown param %s",
                             p->key);
        }
    }
    return NXL_OK;
}

/* be_shm_vram_probe decides whether this engine serves VRAM: the device
 * memory kind (host->device_kind) must run here, copy, find
 * allocations (mem_range) and export and open IPC handles. Otherwise
 * eng->dk stays NULL and dk_why says why. Leaves no error behind. */
static void
be_shm_vram_probe(be_shm_engine_t *eng)
{
    const nxl_memkind_ops_t *dk =
        NXL_HOST_HAS(eng->host, device_kind) ? eng->host->device_kind : NULL;

    eng->dk = NULL;
    if (dk == NULL) {
        snprintf(eng->dk_why, sizeof(eng->dk_why),
                 "the host offers no device memory kind");
    } else if (!NXL_MEMKIND_HAS(dk, mem_range)) {
        snprintf(eng->dk_why, sizeof(eng->dk_why),
                 "device memory kind \"%s\" cannot find allocations (no "
                 "mem_range op)",
                 dk->name);
    } else if (dk->copy == NULL || dk->ipc_get == NULL ||
               dk->ipc_open == NULL || dk->ipc_close == NULL) {
        snprintf(eng->dk_why, sizeof(eng->dk_why),
                 "device memory kind \"%s\" has no %s", dk->name,
                 dk->copy == NULL ? "copy" : "IPC");
    } else if (dk->probe == NULL || dk->probe() != NXL_OK) {
        snprintf(eng->dk_why, sizeof(eng->dk_why),
                 "device memory kind \"%s\" cannot run here: %s", dk->name,
                 dk->probe == NULL ? "no probe op" : nxl_last_error());
    } else {
        eng->dk = dk;
        eng->dk_why[0] = '\0';
    }
}

/* be_shm_init sets up the engine: identity, params, notification listener
 * and event fd, worker pool, VRAM probe. fini undoes whatever part of this
 * ran. */
static nxl_status_t
be_shm_init(void *self, const nxl_backend_host_t *host,
            const nxl_params_t *params)
{
    be_shm_engine_t *eng = self;
    nxl_status_t st;
    int err;

    eng->done_fd = eng->ep_fd = -1;
    eng->host = host;
    pthread_mutex_init(&eng->md_lock, NULL);
    pthread_mutex_init(&eng->pool.lock, NULL);
    pthread_cond_init(&eng->pool.cond, NULL);
    eng->locks_ready = 1;
    eng->magic = BE_SHM_ENGINE_MAGIC;

    st = nxl__pools_create(NXL__POOLS_LOCKED, &eng->pools);
    if (st != NXL_OK) {
        return st;
    }
    st = be_shm_parse_params(eng, params);
    if (st != NXL_OK) {
        return st;
    }
    eng->pid = getpid();
    err = be_shm_starttime(eng->pid, &eng->starttime);
    if (err != 0) {
        return nxl__fail_errno(err, "shm: reading /proc/self/stat");
    }
    if (getrandom(&eng->token, sizeof(eng->token), GRND_NONBLOCK) !=
        (ssize_t)sizeof(eng->token)) {
        eng->token = nxl__now_ns() ^ ((uint64_t)eng->pid << 40) ^
                     (uint64_t)(uintptr_t)eng;
    }
    eng->token |= 1; /* never 0 */
    st = nxl__regtab_init(&eng->regtab, eng->token);
    eng->regtab_ready = 1;
    if (st != NXL_OK) {
        return st;
    }
    be_shm_boot_id(eng->boot_id);
    eng->pidns = be_shm_ns_ino("pid");
    eng->netns = be_shm_ns_ino("net");
    be_shm_vram_probe(eng);

    st = be_shm_notif_init(eng);
    if (st != NXL_OK) {
        return st;
    }
    eng->pool_ready = 1;
    st = be_shm_pool_start(eng, eng->num_threads);
    if (st != NXL_OK) {
        return st;
    }
    pthread_mutex_lock(&be_shm_global_lock);
    eng->global_next = be_shm_global_engines;
    be_shm_global_engines = eng;
    eng->registered = 1;
    pthread_mutex_unlock(&be_shm_global_lock);
    return NXL_OK;
}

/* be_shm_fini releases everything init set up. Peers and requests are gone
 * by now (the core unloads them first); leftover regions are freed. */
static void
be_shm_fini(void *self)
{
    be_shm_engine_t *eng = self;
    be_shm_engine_t **pp;
    be_shm_md_t *md;
    uint32_t i;

    if (eng->magic != BE_SHM_ENGINE_MAGIC) {
        return;
    }
    if (eng->registered) {
        pthread_mutex_lock(&be_shm_global_lock);
        for (pp = &be_shm_global_engines; *pp != NULL;
             pp = &(*pp)->global_next) {
            if (*pp == eng) {
                *pp = eng->global_next;
                break;
            }
        }
        atomic_fetch_add(&be_shm_fini_gen, 1);
        pthread_mutex_unlock(&be_shm_global_lock);
        eng->registered = 0;
    }
    if (eng->pool_ready) {
        be_shm_pool_stop(eng);
        eng->pool_ready = 0;
    }
    be_shm_notif_fini(eng);
    for (i = 0; i < eng->slot_md_cap; i++) {
        md = eng->slot_md[i];
        if (md != NULL) {
            md->magic = 0;
            nxl__pools_free(eng->pools, md);
        }
    }
    free(eng->slot_md);
    eng->slot_md = NULL;
    eng->slot_md_cap = 0;
    if (eng->regtab_ready) {
        nxl__regtab_fini(&eng->regtab);
        eng->regtab_ready = 0;
    }
    while (eng->exports != NULL) {
        be_shm_export_t *x = eng->exports;

        eng->exports = x->next;
        free(x);
    }
    if (eng->locks_ready) {
        pthread_mutex_destroy(&eng->md_lock);
        pthread_mutex_destroy(&eng->pool.lock);
        pthread_cond_destroy(&eng->pool.cond);
        eng->locks_ready = 0;
    }
    /* Last: every record of the engine's is gone. */
    nxl__pools_destroy(eng->pools);
    eng->pools = NULL;
    eng->magic = 0;
}

/* --- local regions -------------------------------------------------------- */

/* be_shm_export_get finds (or exports with the device kind's ipc_get)
 * the device allocation holding [addr, addr + len) and returns a counted
 * reference to its handle. NXL_ERR_NOT_SUPPORTED when this engine has no
 * IPC-capable device kind; NXL_ERR_INVALID_PARAM when the range is not
 * inside one device allocation; else the kind's error. */
static nxl_status_t
be_shm_export_get(be_shm_engine_t *eng, uint64_t addr, uint64_t len,
                  be_shm_export_t **exp_p)
{
    const nxl_memkind_ops_t *dk = eng->dk;
    be_shm_export_t *x;
    char why[200];
    nxl_status_t st;
    void *basep = NULL;
    size_t size = 0;
    uint64_t base;

    if (dk == NULL) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "shm: cannot register VRAM: VRAM between processes "
                         "needs a device memory kind with IPC handles: %s",
                         eng->dk_why);
    }
    st = dk->mem_range((const void *)(uintptr_t)addr, &basep, &size);
    if (st != NXL_OK) {
        snprintf(why, sizeof(why), "%s", nxl_last_error());
        return nxl__fail(st == NXL_ERR_NOT_FOUND ? NXL_ERR_INVALID_PARAM : st,
                         "shm: VRAM region 0x%" PRIx64 "+%" PRIu64
                         ": no allocation of device kind \"%s\" holds it: %s",
                         addr, len, dk->name, why);
    }
    base = (uint64_t)(uintptr_t)basep;
    if (size == 0 || base + size < base ||
        !(addr >= base && len <= size && addr - base <= size - len)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "shm: VRAM region 0x%" PRIx64 "+%" PRIu64
                         " is not inside one allocation (0x%" PRIx64
                         "+%zu holds its start)",
                         addr, len, base, size);
    }
    pthread_mutex_lock(&eng->md_lock);
    for (x = eng->exports; x != NULL; x = x->next) {
        if (x->base == base && x->size == size) {
            x->refs++;
            pthread_mutex_unlock(&eng->md_lock);
            *exp_p = x;
            return NXL_OK;
        }
    }
    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        pthread_mutex_unlock(&eng->md_lock);
        return nxl__fail(NXL_ERR_NOMEM, "shm: VRAM export record");
    }
    st = dk->ipc_get(basep, &x->handle);
    if (st != NXL_OK) {
        pthread_mutex_unlock(&eng->md_lock);
        free(x);
        snprintf(why, sizeof(why), "%s", nxl_last_error());
        return nxl__fail(st,
                         "shm: VRAM region 0x%" PRIx64 "+%" PRIu64
                         ": device kind \"%s\" cannot export its allocation: "
                         "%s",
                         addr, len, dk->name, why);
    }
    x->base = base;
    x->size = size;
    x->refs = 1;
    x->next = eng->exports;
    eng->exports = x;
    pthread_mutex_unlock(&eng->md_lock);
    *exp_p = x;
    return NXL_OK;
}

/* be_shm_export_put drops a reference to an exported allocation. */
static void
be_shm_export_put(be_shm_engine_t *eng, be_shm_export_t *exp)
{
    be_shm_export_t **pp;

    pthread_mutex_lock(&eng->md_lock);
    if (--exp->refs == 0) {
        for (pp = &eng->exports; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == exp) {
                *pp = exp->next;
                break;
            }
        }
        free(exp);
    }
    pthread_mutex_unlock(&eng->md_lock);
}

/* be_shm_slot_md_set files md (NULL: nothing) under registration-table
 * slot, growing the array to hold it (md_lock held). Returns NXL_OK or
 * NXL_ERR_NOMEM with a message. */
static nxl_status_t
be_shm_slot_md_set(be_shm_engine_t *eng, uint32_t slot, be_shm_md_t *md)
{
    be_shm_md_t **v;
    uint32_t cap;

    if (slot >= eng->slot_md_cap) {
        cap = eng->slot_md_cap > 0 ? eng->slot_md_cap : 1024;
        while (cap <= slot) {
            cap *= 2;
        }
        v = realloc(eng->slot_md, cap * sizeof(*v));
        if (v == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "shm: region list");
        }
        memset(v + eng->slot_md_cap, 0, (cap - eng->slot_md_cap) * sizeof(*v));
        eng->slot_md = v;
        eng->slot_md_cap = cap;
    }
    eng->slot_md[slot] = md;
    return NXL_OK;
}

/* be_shm_mem_register records a DRAM region (nothing to pin for CMA) and,
 * for memfd-backed memory, the file identity a peer checks after mapping;
 * or a VRAM region with the IPC handle of its device allocation (exported
 * once per allocation). */
static nxl_status_t
be_shm_mem_register(void *self, const nxl_be_region_t *region, void **md_p)
{
    be_shm_engine_t *eng = self;
    be_shm_export_t *exp = NULL;
    struct stat st;
    be_shm_md_t *md;
    nxl_status_t status;

    if (region->kind != NXL_DRAM && region->kind != NXL_VRAM) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "shm: memory kind %d is neither DRAM nor VRAM",
                         (int)region->kind);
    }
    if (region->len == 0 || region->addr == 0 ||
        region->addr + region->len < region->addr) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "shm: bad region 0x%" PRIx64 "+%" PRIu64, region->addr,
                         region->len);
    }
    if (region->kind == NXL_VRAM) {
        status = be_shm_export_get(eng, region->addr, region->len, &exp);
        if (status != NXL_OK) {
            return status;
        }
    }
    md = nxl__pools_alloc(eng->pools, sizeof(*md), true);
    if (md == NULL) {
        if (exp != NULL) {
            be_shm_export_put(eng, exp);
        }
        return nxl__fail(NXL_ERR_NOMEM, "shm: region record");
    }
    md->magic = BE_SHM_MD_MAGIC;
    md->kind = region->kind;
    md->addr = region->addr;
    md->len = region->len;
    md->dev_id = region->dev_id;
    md->exp = exp;
    md->backing_fd = -1;
    if (region->kind == NXL_DRAM && region->backing_fd >= 0 &&
        fstat(region->backing_fd, &st) == 0 && S_ISREG(st.st_mode) &&
        region->backing_off + region->len >= region->backing_off &&
        region->backing_off + region->len <= (uint64_t)st.st_size) {
        md->backing_fd = region->backing_fd;
        md->backing_off = region->backing_off;
        md->dev = (uint64_t)st.st_dev;
        md->ino = (uint64_t)st.st_ino;
    }
    status = nxl__regtab_add(&eng->regtab, (uint64_t)md->kind, md->addr,
                             md->len, &md->rt_slot, &md->rt_gen);
    if (status == NXL_OK) {
        pthread_mutex_lock(&eng->md_lock);
        status = be_shm_slot_md_set(eng, md->rt_slot, md);
        pthread_mutex_unlock(&eng->md_lock);
        if (status != NXL_OK) {
            nxl__regtab_remove(&eng->regtab, md->rt_slot);
        }
    }
    if (status != NXL_OK) {
        if (exp != NULL) {
            be_shm_export_put(eng, exp);
        }
        nxl__pools_free(eng->pools, md);
        return status;
    }
    *md_p = md;
    return NXL_OK;
}

/* be_shm_mem_deregister forgets a region (and its export reference). */
static void
be_shm_mem_deregister(void *self, void *mdv)
{
    be_shm_engine_t *eng = self;
    be_shm_md_t *md = mdv;

    if (md == NULL || md->magic != BE_SHM_MD_MAGIC) {
        return;
    }
    /* Out of the array first: once the table has the slot back, another
     * registration may take it. */
    pthread_mutex_lock(&eng->md_lock);
    (void)be_shm_slot_md_set(eng, md->rt_slot, NULL); /* in range: no growth */
    pthread_mutex_unlock(&eng->md_lock);
    /* Peers holding this region's metadata fail from their next post. */
    nxl__regtab_remove(&eng->regtab, md->rt_slot);
    if (md->exp != NULL) {
        be_shm_export_put(eng, md->exp);
    }
    md->magic = 0;
    nxl__pools_free(eng->pools, md);
}

/* be_shm_md_pack writes a region's public data (layout at the top). */
static nxl_status_t
be_shm_md_pack(void *self, const void *mdv, nxl_blob_t *out)
{
    const be_shm_engine_t *eng = self;
    const be_shm_md_t *md = mdv;
    size_t len = (md->kind == NXL_VRAM)  ? BE_SHM_PUB_VRAM
                 : (md->backing_fd >= 0) ? BE_SHM_PUB_SHARED
                                         : BE_SHM_PUB_PLAIN;
    uint8_t *p;

    p = calloc(1, len);
    if (p == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "shm: public data");
    }
    nxl__put_le32(p, BE_SHM_PUB_MAGIC);
    p[4] = BE_SHM_PUB_VERSION;
    p[5] = (md->backing_fd >= 0) ? BE_SHM_PUB_SHARED_FLAG : 0;
    nxl__put_le64(p + 8, md->addr);
    nxl__put_le64(p + 16, md->len);
    if (md->kind == NXL_VRAM) {
        p[5] = BE_SHM_PUB_VRAM_FLAG;
        nxl__put_le64(p + 24, md->dev_id);
        nxl__put_le64(p + 32, md->exp->base);
        nxl__put_le64(p + 40, md->exp->size);
        memcpy(p + 48, md->exp->handle.bytes, NXL_IPC_HANDLE_SIZE);
    } else if (md->backing_fd >= 0) {
        nxl__put_le32(p + 24, (uint32_t)md->backing_fd);
        nxl__put_le64(p + 32, md->backing_off);
        nxl__put_le64(p + 40, md->dev);
        nxl__put_le64(p + 48, md->ino);
    }
    nxl__put_le32(p + len - BE_SHM_PUB_RT, (uint32_t)eng->regtab.fd);
    nxl__put_le32(p + len - BE_SHM_PUB_RT + 4, md->rt_slot);
    nxl__put_le64(p + len - BE_SHM_PUB_RT + 8, md->rt_gen);
    out->data = p;
    out->len = len;
    return NXL_OK;
}

/* be_shm_conn_info writes how peers reach this engine (layout at the top). */
static nxl_status_t
be_shm_conn_info(void *self, nxl_blob_t *out)
{
    be_shm_engine_t *eng = self;
    size_t len = BE_SHM_CONN_FIXED + eng->sock_len;
    uint8_t *p;

    p = calloc(1, len);
    if (p == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "shm: conn info");
    }
    nxl__put_le32(p, BE_SHM_CONN_MAGIC);
    p[4] = BE_SHM_WIRE_VERSION;
    p[6] = (uint8_t)eng->sock_len;
    p[7] = (uint8_t)(eng->sock_len >> 8);
    nxl__put_le32(p + 8, (uint32_t)eng->pid);
    nxl__put_le64(p + 16, eng->starttime);
    nxl__put_le64(p + 24, eng->token);
    nxl__put_le64(p + 32, (uint64_t)(uintptr_t)&eng->token);
    memcpy(p + 40, eng->boot_id, 16);
    nxl__put_le64(p + 56, eng->pidns);
    nxl__put_le64(p + 64, eng->netns);
    memcpy(p + BE_SHM_CONN_FIXED, eng->sock_name, eng->sock_len);
    out->data = p;
    out->len = len;
    return NXL_OK;
}

const nxl_backend_ops_t nxl__be_shm_ops = {
    .abi_version = NXL_BACKEND_ABI,
    .size = sizeof(nxl_backend_ops_t),
    .name = "SHM",
    .caps =
        NXL_CAP_LOCAL | NXL_CAP_REMOTE | NXL_CAP_NOTIF | NXL_CAP_THREAD_SAFE,
    .mem_kinds = (1u << NXL_DRAM) | (1u << NXL_VRAM),
    .engine_size = sizeof(be_shm_engine_t),
    .req_size = sizeof(be_shm_req_t),
    .defaults = be_shm_defaults,
    .num_defaults = NXL__ARRAY_SIZE(be_shm_defaults),
    .init = be_shm_init,
    .fini = be_shm_fini,
    .mem_register = be_shm_mem_register,
    .mem_deregister = be_shm_mem_deregister,
    .md_pack = be_shm_md_pack,
    .conn_info = be_shm_conn_info,
    .peer_load = be_shm_peer_load,
    .peer_unload = be_shm_peer_unload,
    .md_unpack = be_shm_md_unpack,
    .md_unload = be_shm_md_unload,
    .prep = be_shm_prep,
    .post = be_shm_post,
    .check = be_shm_check,
    .cancel = be_shm_cancel,
    .release = be_shm_release,
    .progress = be_shm_progress,
    .event_fd = be_shm_event_fd,
    .notif_send = be_shm_notif_send,
};
