/*
 * shm.c - the SHM backend: DRAM and VRAM transfers between processes of one
 * host (and between engines of one process), its ops table, peers and
 * requests.
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

#define BE_SHM_CONN_MAGIC 0x4353584eu /* "NXSC" */
#define BE_SHM_PUB_MAGIC 0x5253584eu  /* "NXSR" */
#define BE_SHM_CONN_FIXED 72u
#define BE_SHM_PUB_VERSION 2u
#define BE_SHM_PUB_RT 16u /* the registration table record, last */
#define BE_SHM_PUB_PLAIN (24u + BE_SHM_PUB_RT)
#define BE_SHM_PUB_SHARED (56u + BE_SHM_PUB_RT)
#define BE_SHM_PUB_VRAM (112u + BE_SHM_PUB_RT)
#define BE_SHM_PUB_SHARED_FLAG 1u
#define BE_SHM_PUB_VRAM_FLAG 2u

/* Process-wide list of live engines: a conn info that names this process
 * must name one of them, and loopback regions must be registered there. */
static pthread_mutex_t be_shm_global_lock = PTHREAD_MUTEX_INITIALIZER;
static be_shm_engine_t *be_shm_global_engines;
/* Bumped by every fini: a loopback peer re-checks that its engine lives
 * only when this moved (one atomic load per post otherwise). */
static atomic_uint be_shm_fini_gen;

/* --- small helpers -------------------------------------------------------- */

/* be_shm_starttime reads field 22 (start time in clock ticks since boot) of
 * /proc/<pid>/stat. Returns 0 on success, else an errno value. */
static int
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
            st = nxl__param_u64("shm", p->key, p->value, 0, 0, BE_SHM_MAX_THREADS,
                                  &v);
            if (st != NXL_OK) {
                return st;
            }
            eng->num_threads = (unsigned)v;
        } else if (strcmp(p->key, "split_threshold") == 0) {
            st = nxl__param_u64("shm", p->key, p->value, 1, 4096, UINT64_MAX >> 1,
                                  &eng->split_threshold);
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
    const nxl_memkind_ops_t *dk = NXL_HOST_HAS(eng->host, device_kind)
                                      ? eng->host->device_kind
                                      : NULL;

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

    eng->listen_fd = eng->done_fd = eng->ep_fd = -1;
    eng->host = host;
    pthread_mutex_init(&eng->rx_lock, NULL);
    pthread_mutex_init(&eng->md_lock, NULL);
    pthread_mutex_init(&eng->pool.lock, NULL);
    pthread_cond_init(&eng->pool.cond, NULL);
    eng->locks_ready = 1;
    eng->magic = BE_SHM_ENGINE_MAGIC;

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
            free(md);
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
        pthread_mutex_destroy(&eng->rx_lock);
        pthread_mutex_destroy(&eng->md_lock);
        pthread_mutex_destroy(&eng->pool.lock);
        pthread_cond_destroy(&eng->pool.cond);
        eng->locks_ready = 0;
    }
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
        memset(v + eng->slot_md_cap, 0,
               (cap - eng->slot_md_cap) * sizeof(*v));
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
    md = calloc(1, sizeof(*md));
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
        fstat(region->backing_fd, &st) == 0 &&
        S_ISREG(st.st_mode) &&
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
        free(md);
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
    free(md);
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

/* --- peers ---------------------------------------------------------------- */

/* be_shm_peer_mark_dead flags peer as gone; the first caller logs why. */
void
be_shm_peer_mark_dead(be_shm_peer_t *peer, const char *why)
{
    if (atomic_exchange(&peer->dead, 1) == 0 && !atomic_load(&peer->unloaded)) {
        nxl__log(NXL_LOG_INFO, "shm: peer %s (pid %d) is gone: %s", peer->name,
                 (int)peer->pid, why);
    }
}

/* be_shm_my_pid caches getpid() (a system call in this libc, and asked
 * once per registration); a forked child starts over. */
static atomic_int be_shm_pid_cache;
static pthread_once_t be_shm_pid_once = PTHREAD_ONCE_INIT;

static void
be_shm_pid_forget(void)
{
    atomic_store_explicit(&be_shm_pid_cache, 0, memory_order_relaxed);
}

static void
be_shm_pid_init(void)
{
    pthread_atfork(NULL, NULL, be_shm_pid_forget);
}

static pid_t
be_shm_my_pid(void)
{
    int pid;

    pthread_once(&be_shm_pid_once, be_shm_pid_init);
    pid = atomic_load_explicit(&be_shm_pid_cache, memory_order_relaxed);
    if (pid == 0) {
        pid = (int)getpid();
        atomic_store_explicit(&be_shm_pid_cache, pid, memory_order_relaxed);
    }
    return (pid_t)pid;
}

/* be_shm_find_engine returns the live engine of this process with token,
 * or NULL (global lock held). Engines inherited across fork do not count. */
static be_shm_engine_t *
be_shm_find_engine(uint64_t token)
{
    be_shm_engine_t *e;
    pid_t me = be_shm_my_pid();

    for (e = be_shm_global_engines; e != NULL; e = e->global_next) {
        if (e->token == token && e->pid == me) {
            return e;
        }
    }
    return NULL;
}

/* be_shm_self_alive checks that the engine of a loopback peer still
 * exists (an agent of this process may be destroyed while others keep its
 * metadata): cheap unless some engine was finalized since the last look. */
static int
be_shm_self_alive(be_shm_peer_t *peer)
{
    unsigned gen = atomic_load_explicit(&be_shm_fini_gen, memory_order_acquire);
    int found;

    if (gen == atomic_load_explicit(&peer->self_gen, memory_order_relaxed)) {
        return 1;
    }
    pthread_mutex_lock(&be_shm_global_lock);
    found = be_shm_find_engine(peer->token) != NULL;
    pthread_mutex_unlock(&be_shm_global_lock);
    if (!found) {
        be_shm_peer_mark_dead(peer, "its engine was destroyed");
        return 0;
    }
    atomic_store_explicit(&peer->self_gen, gen, memory_order_relaxed);
    return 1;
}

/* be_shm_peer_alive polls the peer's pidfd (or re-reads its start time
 * without one), at most every BE_SHM_ALIVE_CHECK_NS unless force. The
 * period bounds the window in which a dead peer's pid could be reused
 * before CMA notices: pid reuse needs the pid space to wrap first. */
int
be_shm_peer_alive(be_shm_peer_t *peer, int force)
{
    struct pollfd pfd;
    uint64_t now, st;
    int err;

    if (atomic_load_explicit(&peer->dead, memory_order_relaxed)) {
        return 0;
    }
    if (peer->self) {
        return be_shm_self_alive(peer);
    }
    now = nxl__now_ns();
    if (!force && now < atomic_load_explicit(&peer->next_check_ns,
                                             memory_order_relaxed)) {
        return 1;
    }
    atomic_store_explicit(&peer->next_check_ns, now + BE_SHM_ALIVE_CHECK_NS,
                          memory_order_relaxed);
    if (peer->pidfd >= 0) {
        pfd.fd = peer->pidfd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLIN | POLLHUP))) {
            be_shm_peer_mark_dead(peer, "process exited");
            return 0;
        }
        return 1;
    }
    err = be_shm_starttime(peer->pid, &st);
    if ((err == 0 && st != peer->starttime) || err == ENOENT || err == ESRCH) {
        be_shm_peer_mark_dead(peer, "process exited");
        return 0;
    }
    return 1;
}

/* be_shm_peer_put drops a reference; the last one frees the peer. */
static void
be_shm_peer_put(be_shm_peer_t *peer)
{
    be_shm_map_t *m;

    if (atomic_fetch_sub(&peer->refs, 1) != 1) {
        return;
    }
    while (peer->maps != NULL) { /* none left unless md_unload was skipped */
        m = peer->maps;
        peer->maps = m->next;
        munmap(m->base, m->size);
        free(m);
    }
    while (peer->ipcs != NULL) { /* likewise */
        be_shm_ipc_t *c = peer->ipcs;

        peer->ipcs = c->next;
        if (c->dk->ipc_close(c->local) != NXL_OK) {
            nxl__warn("shm: closing VRAM of %s: %s", peer->name,
                      nxl_last_error());
        }
        free(c);
    }
    nxl__regtab_view_close(&peer->rt);
    if (peer->pidfd >= 0) {
        close(peer->pidfd);
    }
    if (peer->tx_fd >= 0) {
        close(peer->tx_fd);
    }
    free(peer->txbuf);
    pthread_mutex_destroy(&peer->map_lock);
    pthread_mutex_destroy(&peer->tx_lock);
    free(peer->name);
    peer->magic = 0;
    free(peer);
}

/* be_shm_probe reads the peer engine's token back through CMA: proves that
 * CMA is permitted and that pid runs the engine that wrote the conn info. */
static nxl_status_t
be_shm_probe(be_shm_peer_t *peer, uint64_t probe_addr)
{
    uint64_t got = 0;
    struct iovec l = {.iov_base = &got, .iov_len = sizeof(got)};
    struct iovec r = {.iov_base = (void *)(uintptr_t)probe_addr,
                      .iov_len = sizeof(got)};
    ssize_t n;
    int err;

    n = process_vm_readv(peer->pid, &l, 1, &r, 1, 0);
    if (n < 0) {
        err = errno;
        if (err == EPERM || err == EACCES) {
            return nxl__fail(NXL_ERR_NOT_ALLOWED,
                             "shm: process_vm_readv(pid %d) not permitted "
                             "(ptrace_scope, another user?): %s",
                             (int)peer->pid, strerror(err));
        }
        if (err == ENOSYS) {
            return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                             "shm: process_vm_readv not available");
        }
        return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                         "shm: peer %s (pid %d) is gone: %s", peer->name,
                         (int)peer->pid, strerror(err));
    }
    if (n != (ssize_t)sizeof(got) || got != peer->token) {
        return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                         "shm: pid %d no longer runs peer %s's engine",
                         (int)peer->pid, peer->name);
    }
    return NXL_OK;
}

/* be_shm_peer_load validates a peer's conn info and connects to it. */
static nxl_status_t
be_shm_peer_load(void *self, const char *name, const void *info, size_t len,
                 void **peer_ctx_p)
{
    be_shm_engine_t *eng = self;
    const uint8_t *p = info;
    be_shm_peer_t *peer;
    uint64_t probe, st_now = 0;
    size_t sock_len, i;
    nxl_status_t status;
    int err;

    if (name == NULL || name[0] == '\0') {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: peer without a name");
    }
    if (info == NULL || len < BE_SHM_CONN_FIXED ||
        nxl__le32(p) != BE_SHM_CONN_MAGIC || p[4] != BE_SHM_WIRE_VERSION ||
        p[5] != 0) {
        return nxl__fail(NXL_ERR_PROTO,
                         "shm: conn info of %s: bad header (%zu bytes)", name,
                         len);
    }
    sock_len = (size_t)p[6] | ((size_t)p[7] << 8);
    if (sock_len == 0 || sock_len > BE_SHM_SOCK_MAX ||
        len != BE_SHM_CONN_FIXED + sock_len || nxl__le32(p + 12) != 0 ||
        nxl__le32(p + 8) == 0 || nxl__le32(p + 8) > INT32_MAX) {
        return nxl__fail(NXL_ERR_PROTO, "shm: conn info of %s: bad fields",
                         name);
    }
    for (i = 0; i < sock_len; i++) {
        if (p[BE_SHM_CONN_FIXED + i] < 0x21 ||
            p[BE_SHM_CONN_FIXED + i] > 0x7e) {
            return nxl__fail(NXL_ERR_PROTO,
                             "shm: conn info of %s: bad socket name", name);
        }
    }
    if (memcmp(p + 40, eng->boot_id, 16) != 0 ||
        nxl__le64(p + 56) != eng->pidns) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "shm: peer %s runs on another host or pid namespace",
                         name);
    }
    if (nxl__le64(p + 64) != eng->netns) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "shm: peer %s is in another network namespace", name);
    }

    peer = calloc(1, sizeof(*peer));
    if (peer == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "shm: peer");
    }
    peer->name = strdup(name);
    if (peer->name == NULL) {
        free(peer);
        return nxl__fail(NXL_ERR_NOMEM, "shm: peer name");
    }
    peer->magic = BE_SHM_PEER_MAGIC;
    peer->eng = eng;
    peer->pid = (pid_t)nxl__le32(p + 8);
    peer->starttime = nxl__le64(p + 16);
    peer->token = nxl__le64(p + 24);
    probe = nxl__le64(p + 32);
    peer->pidfd = -1;
    peer->tx_fd = -1;
    peer->rt.fd = -1;
    memcpy(peer->sock_name, p + BE_SHM_CONN_FIXED, sock_len);
    peer->sock_len = sock_len;
    atomic_init(&peer->refs, 1);
    pthread_mutex_init(&peer->map_lock, NULL);
    pthread_mutex_init(&peer->tx_lock, NULL);

    if (peer->pid == eng->pid) {
        pthread_mutex_lock(&be_shm_global_lock);
        atomic_store(&peer->self_gen, atomic_load(&be_shm_fini_gen));
        peer->self = (peer->starttime == eng->starttime &&
                      be_shm_find_engine(peer->token) != NULL);
        pthread_mutex_unlock(&be_shm_global_lock);
        if (!peer->self) {
            status =
                nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                          "shm: peer %s: no such engine in this process", name);
            goto err_put;
        }
    } else {
        peer->pidfd = nxl__pidfd_open(peer->pid);
        if (peer->pidfd < 0 && errno == ESRCH) {
            status = nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                               "shm: peer %s (pid %d) is gone", name,
                               (int)peer->pid);
            goto err_put;
        }
        /* Without pidfd support liveness falls back to the start time. */
        err = be_shm_starttime(peer->pid, &st_now);
        if (err != 0 || st_now != peer->starttime) {
            status = nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                               "shm: peer %s (pid %d) is gone%s", name,
                               (int)peer->pid, err == 0 ? " (pid reused)" : "");
            goto err_put;
        }
        status = be_shm_probe(peer, probe);
        if (status != NXL_OK) {
            goto err_put;
        }
    }

    status = be_shm_tx_hello(peer, eng->host->agent_name);
    if (status != NXL_OK) {
        goto err_close_tx;
    }
    *peer_ctx_p = peer;
    return NXL_OK;

err_close_tx:
    be_shm_tx_close(peer);
err_put:
    be_shm_peer_put(peer);
    return status;
}

/* be_shm_peer_unload forgets a peer: in-flight requests stop with
 * NXL_ERR_REMOTE_DISCONNECT (workers check between system calls) before
 * it returns; the memory goes when the last rmd is unloaded. */
static void
be_shm_peer_unload(void *self, void *ctx)
{
    be_shm_peer_t *peer = ctx;
    struct timespec ts = {0, 100000};

    (void)self;
    if (peer == NULL || peer->magic != BE_SHM_PEER_MAGIC) {
        return;
    }
    atomic_store(&peer->unloaded, 1);
    atomic_store(&peer->dead, 1);
    while (atomic_load(&peer->inflight) > 0) {
        nanosleep(&ts, NULL);
    }
    be_shm_tx_drain(peer, 500);
    be_shm_tx_close(peer);
    be_shm_peer_put(peer);
}

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
    base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                0);
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

/* be_shm_seg_inside reports whether [addr, addr + len) lies in
 * [base, base + size). */
static int
be_shm_seg_inside(uint64_t addr, uint64_t len, uint64_t base, uint64_t size)
{
    return addr >= base && len <= size && addr - base <= size - len;
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
               uint64_t addr, uint64_t len,
               const nxl__regtab_slot_t **slot_p, uint64_t *gen_p)
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
    s = nxl__regtab_view_slot(&peer->rt, slot, gen, (uint64_t)kind, addr,
                              len);
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
static nxl_status_t
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
    st = be_shm_rt_slot(peer, p + len - BE_SHM_PUB_RT, kind, addr, rlen,
                        &rt, &rt_gen);
    if (st != NXL_OK) {
        return st;
    }
    rmd = calloc(1, sizeof(*rmd));
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
            free(rmd);
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
                free(rmd);
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
static void
be_shm_md_unload(void *self, void *rmdv)
{
    be_shm_rmd_t *rmd = rmdv;

    (void)self;
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
    free(rmd);
}

/* be_shm_rmd_is_mapped tells tests which path a remote region takes. */
int
be_shm_rmd_is_mapped(const void *rmdv)
{
    const be_shm_rmd_t *rmd = rmdv;

    return rmd != NULL && rmd->magic == BE_SHM_RMD_MAGIC && rmd->mapped;
}

/* --- requests ------------------------------------------------------------- */

/* be_shm_iov_add appends [base, base + len) to list (n entries), merging
 * with the last entry when contiguous; list may be NULL (counting pass). */
static void
be_shm_iov_add(struct iovec *list, size_t *n, uint64_t *last_end, uint64_t base,
               uint64_t len)
{
    if (*n > 0 && *last_end == base) {
        if (list != NULL) {
            list[*n - 1].iov_len += (size_t)len;
        }
    } else {
        if (list != NULL) {
            list[*n].iov_base = (void *)(uintptr_t)base;
            list[*n].iov_len = (size_t)len;
        }
        (*n)++;
    }
    *last_end = base + len;
}

/* be_shm_build walks the descriptors once (counting when the lists are
 * NULL, filling otherwise), merging runs that are contiguous. CMA lists
 * merge each side on its own; copy pairs merge when both sides do. */
static void
be_shm_build(be_shm_req_t *r, const nxl_be_xfer_t *xfer)
{
    uint64_t cl_end = 0, cr_end = 0, ml_end = 0, mr_end = 0, la, ra, len;
    const be_shm_rmd_t *rmd;
    size_t i, nm_before;

    r->ncl = r->ncr = r->nm = 0;
    r->cma_bytes = r->copy_bytes = 0;
    for (i = 0; i < xfer->count; i++) {
        len = xfer->local[i].len;
        if (len == 0) {
            continue;
        }
        la = xfer->local[i].addr;
        ra = xfer->remote[i].addr;
        rmd = xfer->remote[i].md;
        if (rmd->mapped) {
            ra += rmd->delta;
            nm_before = r->nm;
            if (r->nm > 0 && ml_end == la && mr_end == ra) {
                if (r->ml != NULL) {
                    r->ml[r->nm - 1].iov_len += (size_t)len;
                    r->mr[r->nm - 1].iov_len += (size_t)len;
                }
            } else {
                if (r->ml != NULL) {
                    r->ml[nm_before].iov_base = (void *)(uintptr_t)la;
                    r->ml[nm_before].iov_len = (size_t)len;
                    r->mr[nm_before].iov_base = (void *)(uintptr_t)ra;
                    r->mr[nm_before].iov_len = (size_t)len;
                }
                r->nm++;
            }
            ml_end = la + len;
            mr_end = ra + len;
            r->copy_bytes += len;
        } else {
            be_shm_iov_add(r->cl, &r->ncl, &cl_end, la, len);
            be_shm_iov_add(r->cr, &r->ncr, &cr_end, ra, len);
            r->cma_bytes += len;
        }
    }
}

/* be_shm_chunk_size picks the chunk size of a split request: about 8
 * chunks per thread (so that a starved thread holds little), at least
 * 512 KiB (system call and wake-up costs stay small), at most 8 MiB. */
static uint64_t
be_shm_chunk_size(uint64_t total, unsigned threads)
{
    uint64_t cs = total / (8u * threads);

    cs = NXL__MAX(cs, (uint64_t)512 << 10);
    cs = NXL__MIN(cs, (uint64_t)8 << 20);
    return (cs + 4095) & ~(uint64_t)4095;
}

/* be_shm_rate_class maps a request size to its class for adaptive
 * splitting: below 2 MiB, [2, 4) MiB, ... , 128 MiB and more. */
static unsigned
be_shm_rate_class(uint64_t total)
{
    unsigned c = 0;

    while (c + 1 < BE_SHM_RATE_CLASSES && total >= ((uint64_t)2 << 20 << c)) {
        c++;
    }
    return c;
}

/* be_shm_plan fills r->chunks: the CMA lists then the copy lists cut into
 * pieces of cs bytes, each with its start cursor. */
static void
be_shm_plan(be_shm_req_t *r, uint64_t cs)
{
    be_shm_cursor_t c = {0, 0, 0, 0};
    uint64_t left, b;
    unsigned n = 0;

    for (left = r->cma_bytes; left > 0; left -= b) {
        b = NXL__MIN(cs, left);
        r->chunks[n++] = (be_shm_chunk_t){c, b, 0};
        be_shm_cursor_advance(&c, 0, r->cl, r->ncl, b);
        be_shm_cursor_advance(&c, 1, r->cr, r->ncr, b);
    }
    memset(&c, 0, sizeof(c));
    for (left = r->copy_bytes; left > 0; left -= b) {
        b = NXL__MIN(cs, left);
        r->chunks[n++] = (be_shm_chunk_t){c, b, 1};
        be_shm_cursor_advance(&c, 0, r->ml, r->nm, b);
    }
}

/* be_shm_prep validates every descriptor against its region (never touch
 * memory outside what was registered or described by the peer) and builds
 * the iovec lists and the split plan once, so that post only moves data. */
static nxl_status_t
be_shm_prep(void *self, void *req, const nxl_be_xfer_t *xfer)
{
    be_shm_engine_t *eng = self;
    be_shm_req_t *r = req;
    be_shm_peer_t *peer = xfer->peer_ctx;
    const be_shm_md_t *lmd;
    const be_shm_rmd_t *rmd;
    const nxl_be_seg_t *l, *rs;
    size_t i, niov, nchunks = 0, nhelpers = 0, extra;
    uint64_t cs = 0;
    struct iovec *v;
    nxl_status_t st;
    int dev_path, ldev, rdev;

    if (xfer->op != NXL_READ && xfer->op != NXL_WRITE) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: bad op %d",
                         (int)xfer->op);
    }
    if ((xfer->local_mem != NXL_DRAM && xfer->local_mem != NXL_VRAM) ||
        (xfer->remote_mem != NXL_DRAM && xfer->remote_mem != NXL_VRAM)) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "shm: only DRAM and VRAM (got %d to %d)",
                         (int)xfer->local_mem, (int)xfer->remote_mem);
    }
    dev_path = xfer->local_mem == NXL_VRAM || xfer->remote_mem == NXL_VRAM;
    if (dev_path && eng->dk == NULL) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "shm: VRAM transfers need a device memory kind with "
                         "IPC handles: %s",
                         eng->dk_why);
    }
    if (peer == NULL || peer->magic != BE_SHM_PEER_MAGIC) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: transfer without peer");
    }
    if (xfer->count > 0 && (xfer->local == NULL || xfer->remote == NULL)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: NULL descriptor list");
    }
    for (i = 0; i < xfer->count; i++) {
        l = &xfer->local[i];
        rs = &xfer->remote[i];
        lmd = l->md;
        rmd = rs->md;
        if (l->len != rs->len) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "shm: descriptor %zu: lengths %" PRIu64
                             " and %" PRIu64 " differ",
                             i, l->len, rs->len);
        }
        if (lmd == NULL || lmd->magic != BE_SHM_MD_MAGIC || rmd == NULL ||
            rmd->magic != BE_SHM_RMD_MAGIC || rmd->peer != peer) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "shm: descriptor %zu: not registered with SHM "
                             "(or another peer's region)",
                             i);
        }
        if (!be_shm_seg_inside(l->addr, l->len, lmd->addr, lmd->len)) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "shm: descriptor %zu: local 0x%" PRIx64 "+%" PRIu64
                             " outside its region",
                             i, l->addr, l->len);
        }
        if (!be_shm_seg_inside(rs->addr, rs->len, rmd->addr, rmd->len)) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "shm: descriptor %zu: remote 0x%" PRIx64
                             "+%" PRIu64 " outside %s's region",
                             i, rs->addr, rs->len, peer->name);
        }
        if (lmd->kind != xfer->local_mem || rmd->kind != xfer->remote_mem) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "shm: descriptor %zu: regions of kinds %d and %d "
                             "in a transfer of kinds %d and %d",
                             i, (int)lmd->kind, (int)rmd->kind,
                             (int)xfer->local_mem, (int)xfer->remote_mem);
        }
        if (dev_path && !rmd->mapped) {
            if (rmd->err != NXL_OK) {
                return nxl__fail(rmd->err, "shm: descriptor %zu: %s", i,
                                 rmd->errmsg);
            }
            return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                             "shm: descriptor %zu: VRAM to %s's DRAM region "
                             "0x%" PRIx64 "+%" PRIu64 ": the region is not "
                             "shared memory (nxl_mem_alloc_shared) and CMA "
                             "cannot reach device memory",
                             i, peer->name, rmd->addr, rmd->len);
        }
    }

    st = nxl__regtab_distinct(xfer, (const void ***)&r->rchk, &r->nrchk);
    if (st != NXL_OK) {
        return st;
    }
    r->cl = r->cr = r->ml = r->mr = NULL;
    be_shm_build(r, xfer); /* count */
    if (!dev_path && eng->pool.nthreads > 0 &&
        r->cma_bytes + r->copy_bytes >= eng->split_threshold) {
        cs = be_shm_chunk_size(r->cma_bytes + r->copy_bytes,
                               eng->pool.nthreads + 1);
        nchunks = (size_t)((r->cma_bytes + cs - 1) / cs +
                           (r->copy_bytes + cs - 1) / cs);
        nhelpers = NXL__MIN((size_t)eng->pool.nthreads, nchunks - 1);
    }
    if (nhelpers == 0) {
        nchunks = 0;
    }
    extra =
        nchunks * sizeof(be_shm_chunk_t) + nhelpers * sizeof(be_shm_helper_t);
    if (extra == 0 && r->ncl <= BE_SHM_INLINE_IOV &&
        r->ncr <= BE_SHM_INLINE_IOV && r->nm <= BE_SHM_INLINE_IOV) {
        v = r->inl;
        r->alloc = NULL;
    } else {
        niov = r->ncl + r->ncr + 2 * r->nm;
        r->alloc = malloc(niov * sizeof(struct iovec) + extra);
        if (r->alloc == NULL) {
            free(r->rchk);
            r->rchk = NULL;
            return nxl__fail(NXL_ERR_NOMEM, "shm: %zu iovecs", niov);
        }
        v = r->alloc;
    }
    r->cl = v;
    r->cr = r->cl + NXL__MAX(r->ncl, BE_SHM_INLINE_IOV * (v == r->inl));
    r->ml = r->cr + NXL__MAX(r->ncr, BE_SHM_INLINE_IOV * (v == r->inl));
    r->mr = r->ml + NXL__MAX(r->nm, BE_SHM_INLINE_IOV * (v == r->inl));
    be_shm_build(r, xfer); /* fill */
    r->nchunks = (unsigned)nchunks;
    r->nhelpers = (unsigned)nhelpers;
    r->chunks = NULL;
    r->helpers = NULL;
    if (nhelpers > 0) {
        r->rate_class = be_shm_rate_class(r->cma_bytes + r->copy_bytes);
        r->chunks = (be_shm_chunk_t *)(void *)(r->mr + r->nm);
        r->helpers = (be_shm_helper_t *)(void *)(r->chunks + nchunks);
        memset(r->helpers, 0, nhelpers * sizeof(be_shm_helper_t));
        be_shm_plan(r, cs);
    }
    r->eng = eng;
    r->peer = peer;
    r->op = xfer->op;
    r->dev_path = dev_path;
    r->dk = dev_path ? eng->dk : NULL;
    r->dir = NXL_COPY_H2H;
    if (dev_path) {
        ldev = xfer->local_mem == NXL_VRAM;
        rdev = xfer->remote_mem == NXL_VRAM;
        if (xfer->op == NXL_READ) { /* remote -> local */
            r->dir = rdev ? (ldev ? NXL_COPY_D2D : NXL_COPY_D2H) : NXL_COPY_H2D;
        } else {
            r->dir = ldev ? (rdev ? NXL_COPY_D2D : NXL_COPY_D2H) : NXL_COPY_H2D;
        }
    }
    atomic_store(&r->state, BE_SHM_REQ_IDLE);
    /* The request keeps the peer record alive: the core may unload the
     * peer (nxl_md_invalidate) while this request still runs or is
     * polled (check kicks the peer's notification stream). */
    atomic_fetch_add(&peer->refs, 1);
    r->magic = BE_SHM_REQ_MAGIC;
    return NXL_OK;
}

/* be_shm_req_error records a synchronous failure of req and returns st. */
static nxl_status_t
be_shm_req_error(be_shm_req_t *r, nxl_status_t st)
{
    snprintf(r->errmsg, sizeof(r->errmsg), "%s", nxl_last_error());
    atomic_store_explicit(&r->status, (int)st, memory_order_relaxed);
    atomic_store_explicit(&r->state, BE_SHM_REQ_ERROR, memory_order_release);
    return st;
}

/* be_shm_post_dev moves a device-path request: one blocking copy of the
 * device kind per pair of the copy lists (every remote region is mapped
 * here: opened VRAM, a shared DRAM mapping, or this very process). A
 * failed copy with the peer gone, or a peer found gone after the copies,
 * is NXL_ERR_REMOTE_DISCONNECT. */
static nxl_status_t
be_shm_post_dev(be_shm_req_t *r)
{
    int write = (r->op == NXL_WRITE);
    nxl_status_t st;
    char why[160];
    size_t i;

    for (i = 0; i < r->nm; i++) {
        if (write) {
            st = r->dk->copy(r->mr[i].iov_base, r->ml[i].iov_base,
                             r->ml[i].iov_len, r->dir);
        } else {
            st = r->dk->copy(r->ml[i].iov_base, r->mr[i].iov_base,
                             r->ml[i].iov_len, r->dir);
        }
        if (st != NXL_OK) {
            if (!be_shm_peer_alive(r->peer, 1)) {
                snprintf(why, sizeof(why), "%s", nxl_last_error());
                return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                                 "shm: peer %s (pid %d) is gone: %s",
                                 r->peer->name, (int)r->peer->pid, why);
            }
            return st;
        }
    }
    /* Into a dead peer's mapping a copy succeeds silently: look again. */
    if (!be_shm_peer_alive(r->peer, 1)) {
        return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                         "shm: peer %s (pid %d) went away during the copy",
                         r->peer->name, (int)r->peer->pid);
    }
    return NXL_OK;
}

/* be_shm_post_sync moves a request on the calling thread. The common case
 * (at most IOV_MAX iovecs a side) is one process_vm_* call on the lists
 * prep built; a partial transfer continues where the kernel stopped. */
static nxl_status_t
be_shm_post_sync(be_shm_req_t *r)
{
    be_shm_peer_t *peer = r->peer;
    be_shm_cursor_t at = {0, 0, 0, 0};
    int write = (r->op == NXL_WRITE);
    ssize_t n = 0;
    int err, use_nt;

    if (r->dev_path) {
        return be_shm_post_dev(r);
    }
    if (r->cma_bytes > 0) {
        if (r->ncl <= BE_SHM_IOV_MAX && r->ncr <= BE_SHM_IOV_MAX) {
            if (write) {
                n = process_vm_writev(peer->pid, r->cl, r->ncl, r->cr, r->ncr,
                                      0);
            } else {
                n = process_vm_readv(peer->pid, r->cl, r->ncl, r->cr, r->ncr,
                                     0);
            }
            if (n < 0) {
                err = errno;
                if (err != EINTR) {
                    if (err == ESRCH) {
                        be_shm_peer_mark_dead(peer, "process_vm_* found no "
                                                    "process");
                    }
                    return nxl__fail_errno(err, "shm: %s(pid %d)",
                                           write ? "process_vm_writev"
                                                 : "process_vm_readv",
                                           (int)peer->pid);
                }
                n = 0;
            }
        }
        if ((uint64_t)n < r->cma_bytes) {
            be_shm_cursor_advance(&at, 0, r->cl, r->ncl, (uint64_t)n);
            be_shm_cursor_advance(&at, 1, r->cr, r->ncr, (uint64_t)n);
            nxl_status_t st =
                be_shm_cma_range(peer->pid, write, r->cl, r->ncl, r->cr, r->ncr,
                                 at, r->cma_bytes - (uint64_t)n, peer, NULL);
            if (st != NXL_OK) {
                return st;
            }
        }
    }
    if (r->copy_bytes > 0) {
        use_nt = r->copy_bytes >= r->eng->nt_threshold;
        at.li = at.loff = 0;
        if (write) {
            be_shm_copy_range(r->mr, r->ml, r->nm, at, r->copy_bytes, use_nt,
                              NULL);
        } else {
            be_shm_copy_range(r->ml, r->mr, r->nm, at, r->copy_bytes, use_nt,
                              NULL);
        }
    }
    return NXL_OK;
}

/* be_shm_post starts a prepared request: split across the worker pool
 * (the caller takes chunks too; NXL_IN_PROG while a worker still holds
 * one) or moved synchronously. No allocation and, for small requests, no system
 * call but the one process_vm_* (the pidfd is polled at most once per
 * millisecond). */
static nxl_status_t
be_shm_post(void *self, void *req, const nxl_be_xfer_t *xfer)
{
    be_shm_req_t *r = req;
    be_shm_peer_t *peer;
    uint64_t t0 = 0;
    size_t k;
    nxl_status_t st;
    int state;

    (void)self;
    if (r->magic != BE_SHM_REQ_MAGIC) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: request not prepared");
    }
    state = atomic_load_explicit(&r->state, memory_order_acquire);
    if (state == BE_SHM_REQ_RUNNING) {
        return nxl__fail(NXL_ERR_REPOST_ACTIVE, "shm: request still active");
    }
    peer = r->peer;
    /* A device copy costs more than a pidfd poll: always look. */
    if (!be_shm_peer_alive(peer, r->dev_path)) {
        return be_shm_req_error(r, nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                                             "shm: peer %s (pid %d) is gone",
                                             peer->name, (int)peer->pid));
    }
    for (k = 0; k < r->nrchk; k++) {
        if (!nxl__regtab_live(r->rchk[k]->rt, r->rchk[k]->rt_gen)) {
            return be_shm_req_error(
                r, nxl__fail(NXL_ERR_NOT_FOUND,
                             "shm: %s deregistered its region 0x%" PRIx64
                             "+%" PRIu64 " after this transfer was made "
                             "(reload its metadata)",
                             peer->name, r->rchk[k]->addr,
                             r->rchk[k]->len));
        }
    }
    r->xfer = xfer;
    atomic_store_explicit(&r->cancel, 0, memory_order_relaxed);
    atomic_store_explicit(&r->status, NXL_OK, memory_order_relaxed);

    if (r->nhelpers > 0) {
        if (be_shm_split_wanted(r->eng, r)) {
            return be_shm_split_post(r);
        }
        t0 = nxl__now_ns();
    }

    st = be_shm_post_sync(r);
    if (st != NXL_OK) {
        return be_shm_req_error(r, st);
    }
    if (r->nhelpers > 0) {
        be_shm_rate_note(&r->eng->rate_sync[r->rate_class],
                         r->cma_bytes + r->copy_bytes, nxl__now_ns() - t0);
    }
    if (xfer->has_notif) {
        st = be_shm_tx_send(peer, xfer->notif, xfer->notif_len);
        if (st != NXL_OK) {
            return be_shm_req_error(r, st);
        }
    }
    atomic_store_explicit(&r->state, BE_SHM_REQ_DONE, memory_order_release);
    return NXL_OK;
}

/* be_shm_check reports a request's state; notifications still queued for
 * the peer are pushed further on the way. */
static nxl_status_t
be_shm_check(void *self, void *req)
{
    be_shm_req_t *r = req;
    nxl_status_t st;

    (void)self;
    if (r->magic != BE_SHM_REQ_MAGIC) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: request not prepared");
    }
    switch (atomic_load_explicit(&r->state, memory_order_acquire)) {
    case BE_SHM_REQ_DONE:
        be_shm_tx_kick(r->peer);
        return NXL_OK;
    case BE_SHM_REQ_RUNNING:
        return NXL_IN_PROG;
    case BE_SHM_REQ_ERROR:
        st = (nxl_status_t)atomic_load(&r->status);
        return nxl__fail(st, "%s", r->errmsg);
    default:
        return nxl__fail(NXL_ERR_NOT_POSTED, "shm: request not posted");
    }
}

/* be_shm_cancel stops a request: queued helpers are withdrawn, workers see
 * the flag between system calls; returns once no chunk runs. A
 * notification already queued is still delivered (a stream cannot take
 * bytes back). */
static void
be_shm_cancel(void *self, void *req)
{
    be_shm_req_t *r = req;

    (void)self;
    if (r->magic != BE_SHM_REQ_MAGIC) {
        return;
    }
    atomic_store(&r->cancel, 1);
    be_shm_split_cancel(r);
    while (atomic_load_explicit(&r->state, memory_order_acquire) ==
           BE_SHM_REQ_RUNNING) {
        sched_yield();
    }
    atomic_store(&r->state, BE_SHM_REQ_IDLE);
}

/* be_shm_release frees what prep allocated. */
static void
be_shm_release(void *self, void *req)
{
    be_shm_req_t *r = req;

    if (r->magic != BE_SHM_REQ_MAGIC) {
        return;
    }
    if (atomic_load(&r->state) == BE_SHM_REQ_RUNNING) {
        be_shm_cancel(self, req);
    }
    free(r->alloc);
    r->alloc = NULL;
    free(r->rchk);
    r->rchk = NULL;
    r->magic = 0;
    be_shm_peer_put(r->peer);
}

/* be_shm_event_fd returns the epoll set progress drains. */
static int
be_shm_event_fd(void *self)
{
    be_shm_engine_t *eng = self;

    return eng->ep_fd;
}

/* be_shm_notif_send queues a standalone notification to peer. */
static nxl_status_t
be_shm_notif_send(void *self, void *peer_ctx, const void *msg, size_t len)
{
    be_shm_peer_t *peer = peer_ctx;

    (void)self;
    if (peer == NULL || peer->magic != BE_SHM_PEER_MAGIC) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: notif_send without peer");
    }
    if (msg == NULL && len > 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: NULL notification");
    }
    if (!be_shm_peer_alive(peer, 1)) {
        return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                         "shm: peer %s (pid %d) is gone", peer->name,
                         (int)peer->pid);
    }
    return be_shm_tx_send(peer, msg, len);
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
