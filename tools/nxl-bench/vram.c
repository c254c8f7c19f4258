/*
 * vram.c - VRAM pools for nxl-bench (--initiator_seg_type / --target_seg_type
 * VRAM): which device memory kind runs them, and pattern access to pools
 * that the CPU may not touch directly.
 *
 * The device kind is the library's (nxl_memkind_device: CUDA, loaded at
 * run time) when it runs here. Without a GPU, --vram_device fake (or auto,
 * which says so) installs "fakedev", a stand-in written against the public
 * nxl_memkind.h only: host memory in memfds behind the device-kind ops, so
 * the VRAM paths of the library (SHM: IPC handles opened by the peer,
 * device-kind copies) run and can be checked on any host. Its numbers are
 * host-memory copies, never GPU figures, and every output says which kind
 * ran.
 *
 * fakedev: each allocation is a memfd of whole pages mapped MAP_SHARED and
 * filled with 0xa5; copies are memcpy (blocking); there are no streams or
 * events (the ops read as NXL_ERR_NOT_SUPPORTED). ipc_get exports
 * {magic, pid, memfd number, size, st_dev, st_ino}; ipc_open in another
 * process of this host takes the memfd with pidfd_getfd (or
 * /proc/PID/fd/N), checks it is that file and maps all of it. A process
 * cannot open its own handle (CUDA refuses that too).
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FD_MAGIC 0x4642584eu /* "NXBF" */
#define FD_DEVICES 4
#define STAGE_SIZE (4 * MIB)

/* fd_region_t is one fakedev allocation (fd >= 0) or IPC mapping. */
typedef struct fd_region {
    uint8_t *base;
    size_t size;
    int fd; /* the memfd of an allocation; -1 for a mapping */
    int dev;
} fd_region_t;

/* fd_handle_t is the exported form of an allocation (in the 64 bytes of
 * nxl_ipc_handle_t). */
typedef struct fd_handle {
    uint32_t magic;
    uint32_t pid;
    uint32_t fd;
    uint32_t dev;
    uint64_t size;
    uint64_t st_dev;
    uint64_t st_ino;
} fd_handle_t;
_Static_assert(sizeof(fd_handle_t) <= NXL_IPC_HANDLE_SIZE,
               "fakedev handle must fit an nxl_ipc_handle_t");

static pthread_mutex_t fd_lock = PTHREAD_MUTEX_INITIALIZER;
static fd_region_t *fd_regions;
static size_t fd_nregions;
static size_t fd_cap;

/* fd_find returns the region holding [p, p+1), or NULL. Lock held. */
static fd_region_t *
fd_find(const void *p)
{
    const uint8_t *q = p;
    size_t i;

    for (i = 0; i < fd_nregions; i++) {
        if (q >= fd_regions[i].base &&
            q < fd_regions[i].base + fd_regions[i].size) {
            return &fd_regions[i];
        }
    }
    return NULL;
}

/* fd_add records a region. Lock held. Returns 0 or -1 (no memory). */
static int
fd_add(uint8_t *base, size_t size, int fd, int dev)
{
    if (fd_nregions == fd_cap) {
        size_t nc = fd_cap == 0 ? 16 : fd_cap * 2;
        fd_region_t *n = realloc(fd_regions, nc * sizeof(*n));

        if (n == NULL) {
            return -1;
        }
        fd_regions = n;
        fd_cap = nc;
    }
    fd_regions[fd_nregions++] = (fd_region_t){base, size, fd, dev};
    return 0;
}

/* fd_remove drops region r. Lock held. */
static void
fd_remove(fd_region_t *r)
{
    *r = fd_regions[--fd_nregions];
}

/* fd_probe: the stand-in runs everywhere. */
static nxl_status_t
fd_probe(void)
{
    return NXL_OK;
}

/* fd_device_count reports FD_DEVICES devices (ordinals are labels). */
static nxl_status_t
fd_device_count(int *count_p)
{
    if (count_p == NULL) {
        return NXL_ERR_INVALID_PARAM;
    }
    *count_p = FD_DEVICES;
    return NXL_OK;
}

/* fd_alloc makes a memfd of size bytes (whole pages) on dev, maps it
 * shared and fills it with 0xa5. */
static nxl_status_t
fd_alloc(int dev, size_t size, void **ptr_p)
{
    size_t span = (size + 4095) & ~(size_t)4095;
    uint8_t *p;
    int fd;

    if (ptr_p == NULL || dev < 0 || dev >= FD_DEVICES || size == 0 ||
        span < size) {
        return NXL_ERR_INVALID_PARAM;
    }
    fd = memfd_create("nxl-bench-fakedev", MFD_CLOEXEC);
    if (fd < 0) {
        bench_err("fakedev: memfd_create: %s", strerror(errno));
        return NXL_ERR_NOMEM;
    }
    if (ftruncate(fd, (off_t)span) != 0) {
        bench_err("fakedev: ftruncate(%zu): %s", span, strerror(errno));
        close(fd);
        return NXL_ERR_NOMEM;
    }
    p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        bench_err("fakedev: mmap(%zu): %s", span, strerror(errno));
        close(fd);
        return NXL_ERR_NOMEM;
    }
    memset(p, 0xa5, span);
    pthread_mutex_lock(&fd_lock);
    if (fd_add(p, span, fd, dev) != 0) {
        pthread_mutex_unlock(&fd_lock);
        munmap(p, span);
        close(fd);
        return NXL_ERR_NOMEM;
    }
    pthread_mutex_unlock(&fd_lock);
    *ptr_p = p;
    return NXL_OK;
}

/* fd_free releases an allocation. Accepts NULL. */
static void
fd_free(int dev, void *ptr, size_t size)
{
    fd_region_t *r;

    (void)dev;
    (void)size;
    if (ptr == NULL) {
        return;
    }
    pthread_mutex_lock(&fd_lock);
    r = fd_find(ptr);
    if (r != NULL && r->base == ptr && r->fd >= 0) {
        munmap(r->base, r->size);
        close(r->fd);
        fd_remove(r);
    }
    pthread_mutex_unlock(&fd_lock);
}

/* fd_copy copies with memcpy, whatever the direction. */
static nxl_status_t
fd_copy(void *dst, const void *src, size_t len, nxl_copy_dir_t dir)
{
    (void)dir;
    if (len > 0 && (dst == NULL || src == NULL)) {
        return NXL_ERR_INVALID_PARAM;
    }
    memcpy(dst, src, len);
    return NXL_OK;
}

/* fd_ipc_get exports the allocation that starts at ptr. */
static nxl_status_t
fd_ipc_get(void *ptr, nxl_ipc_handle_t *handle_p)
{
    fd_handle_t h;
    struct stat st;
    fd_region_t *r;

    if (handle_p == NULL) {
        return NXL_ERR_INVALID_PARAM;
    }
    pthread_mutex_lock(&fd_lock);
    r = fd_find(ptr);
    if (r == NULL || r->fd < 0 || fstat(r->fd, &st) != 0) {
        pthread_mutex_unlock(&fd_lock);
        return NXL_ERR_NOT_FOUND;
    }
    memset(&h, 0, sizeof(h));
    h.magic = FD_MAGIC;
    h.pid = (uint32_t)getpid();
    h.fd = (uint32_t)r->fd;
    h.dev = (uint32_t)r->dev;
    h.size = r->size;
    h.st_dev = (uint64_t)st.st_dev;
    h.st_ino = (uint64_t)st.st_ino;
    pthread_mutex_unlock(&fd_lock);
    memset(handle_p, 0, sizeof(*handle_p));
    memcpy(handle_p->bytes, &h, sizeof(h));
    return NXL_OK;
}

/* fd_take_fd duplicates fd number fd of process pid into this one:
 * pidfd_getfd, else /proc/PID/fd/N. Returns the new fd or -1. */
static int
fd_take_fd(pid_t pid, int fd)
{
    char path[64];
    int nfd = -1;
#if defined(SYS_pidfd_open) && defined(SYS_pidfd_getfd)
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);

    if (pfd >= 0) {
        nfd = (int)syscall(SYS_pidfd_getfd, pfd, fd, 0);
        close(pfd);
    }
#endif
    if (nfd < 0) {
        snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
        nfd = open(path, O_RDWR | O_CLOEXEC);
    }
    return nfd;
}

/* fd_ipc_open maps another process's allocation. */
static nxl_status_t
fd_ipc_open(int dev, const nxl_ipc_handle_t *handle, void **ptr_p)
{
    fd_handle_t h;
    struct stat st;
    uint8_t *p;
    int fd;

    (void)dev;
    if (handle == NULL || ptr_p == NULL) {
        return NXL_ERR_INVALID_PARAM;
    }
    memcpy(&h, handle->bytes, sizeof(h));
    if (h.magic != FD_MAGIC || h.size == 0 || h.size % 4096 != 0 ||
        h.size > (uint64_t)SIZE_MAX) {
        bench_err("fakedev: not a fakedev IPC handle (is the peer running "
                  "--vram_device fake too?)");
        return NXL_ERR_INVALID_PARAM;
    }
    if (h.pid == (uint32_t)getpid()) {
        return NXL_ERR_NOT_SUPPORTED;
    }
    fd = fd_take_fd((pid_t)h.pid, (int)h.fd);
    if (fd < 0) {
        bench_err("fakedev: cannot take fd %u of pid %u: %s (same host and "
                  "pid namespace, and ptrace permission, are needed)",
                  h.fd, h.pid, strerror(errno));
        return NXL_ERR_NOT_ALLOWED;
    }
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_dev != h.st_dev ||
        (uint64_t)st.st_ino != h.st_ino || (uint64_t)st.st_size < h.size) {
        bench_err("fakedev: fd %u of pid %u is not the exported allocation",
                  h.fd, h.pid);
        close(fd);
        return NXL_ERR_MISMATCH;
    }
    p = mmap(NULL, (size_t)h.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        bench_err("fakedev: mmap of pid %u's allocation: %s", h.pid,
                  strerror(errno));
        return NXL_ERR_NOMEM;
    }
    pthread_mutex_lock(&fd_lock);
    if (fd_add(p, (size_t)h.size, -1, (int)h.dev) != 0) {
        pthread_mutex_unlock(&fd_lock);
        munmap(p, (size_t)h.size);
        return NXL_ERR_NOMEM;
    }
    pthread_mutex_unlock(&fd_lock);
    *ptr_p = p;
    return NXL_OK;
}

/* fd_ipc_close unmaps a mapping from fd_ipc_open. */
static nxl_status_t
fd_ipc_close(void *ptr)
{
    fd_region_t *r;

    pthread_mutex_lock(&fd_lock);
    r = fd_find(ptr);
    if (r == NULL || r->base != ptr || r->fd >= 0) {
        pthread_mutex_unlock(&fd_lock);
        return NXL_ERR_NOT_FOUND;
    }
    munmap(r->base, r->size);
    fd_remove(r);
    pthread_mutex_unlock(&fd_lock);
    return NXL_OK;
}

/* fd_mem_range finds the allocation or mapping holding ptr. */
static nxl_status_t
fd_mem_range(const void *ptr, void **base_p, size_t *size_p)
{
    fd_region_t *r;

    pthread_mutex_lock(&fd_lock);
    r = fd_find(ptr);
    if (r == NULL) {
        pthread_mutex_unlock(&fd_lock);
        return NXL_ERR_NOT_FOUND;
    }
    *base_p = r->base;
    *size_p = r->size;
    pthread_mutex_unlock(&fd_lock);
    return NXL_OK;
}

static const nxl_memkind_ops_t fd_ops = {
    .abi_version = NXL_MEMKIND_ABI_VERSION,
    .size = sizeof(nxl_memkind_ops_t),
    .name = "fakedev",
    .type = NXL_MEMKIND_DEVICE,
    .mem = NXL_VRAM,
    .probe = fd_probe,
    .device_count = fd_device_count,
    .alloc = fd_alloc,
    .free = fd_free,
    .copy = fd_copy,
    .ipc_get = fd_ipc_get,
    .ipc_open = fd_ipc_open,
    .ipc_close = fd_ipc_close,
    .mem_range = fd_mem_range,
};

/* bench_vram_setup picks the device kind for VRAM pools before any agent
 * exists (backends look at it when they start): fake installs fakedev;
 * cuda needs the CUDA kind to probe; auto takes CUDA when it probes, else
 * fakedev, saying so on stderr (quiet: not). Writes the kind and whether
 * it is the stand-in. */
int
bench_vram_setup(const bench_opts_t *o, int quiet,
                 const nxl_memkind_ops_t **dk_p, int *fake_p)
{
    const char *mode = o->vram_device != NULL ? o->vram_device : "auto";
    const nxl_memkind_ops_t *cuda = nxl_memkind_cuda();
    nxl_status_t st;
    char why[256];

    *fake_p = 0;
    if (strcasecmp(mode, "fake") != 0) {
        st = cuda->probe != NULL ? cuda->probe() : NXL_ERR_NOT_SUPPORTED;
        if (st == NXL_OK) {
            *dk_p = nxl_memkind_device();
            return 0;
        }
        snprintf(why, sizeof(why), "%s", nxl_last_error());
        if (strcasecmp(mode, "cuda") == 0) {
            bench_err("--vram_device cuda: the CUDA device kind cannot run "
                      "here (%s); without a GPU use --vram_device fake",
                      why[0] != '\0' ? why : nxl_strerror(st));
            return -1;
        }
        if (!quiet) {
            bench_err("VRAM: no CUDA device (%s): using fakedev, host memory "
                      "behind the device-kind ops (figures are host copies, "
                      "not GPU; --vram_device fake says this on purpose)",
                      why[0] != '\0' ? why : nxl_strerror(st));
        }
    }
    st = nxl_memkind_set_device(&fd_ops);
    if (st != NXL_OK) {
        return bench_nxl_err(st, "nxl_memkind_set_device(fakedev)");
    }
    *dk_p = nxl_memkind_device();
    *fake_p = 1;
    return 0;
}

/* bench_vram_describe writes which device kind runs VRAM pools. */
const char *
bench_vram_describe(const bench_session_t *s, char *buf, size_t cap)
{
    if (s->dk == NULL) {
        snprintf(buf, cap, "none");
    } else if (s->dev_fake) {
        snprintf(buf, cap,
                 "fakedev (nxl-bench's host-memory stand-in, no GPU), "
                 "device %d",
                 (int)s->ldev);
    } else {
        snprintf(buf, cap, "%s device %d", s->dk->name, (int)s->ldev);
    }
    return buf;
}

/* stage_get returns the session's host staging buffer, allocating it. */
static uint8_t *
stage_get(bench_session_t *s)
{
    if (s->stage == NULL) {
        s->stage = bench_map(STAGE_SIZE);
        if (s->stage == NULL) {
            bench_err("no memory for a %zu-byte staging buffer",
                      (size_t)STAGE_SIZE);
            return NULL;
        }
        s->stage_size = STAGE_SIZE;
    }
    return s->stage;
}

/* bench_pool_fill writes pattern key for pattern offsets [poff, poff+len)
 * into the local pool at loff: directly for DRAM, through the staging
 * buffer and the device kind's copy for VRAM. Returns 0 or -1. */
int
bench_pool_fill(bench_session_t *s, size_t loff, size_t poff, size_t len,
                uint64_t key)
{
    uint8_t *st;
    size_t done;

    if (s->lmem != NXL_VRAM) {
        bench_pattern_fill(s->pool + loff, poff, len, key);
        return 0;
    }
    st = stage_get(s);
    if (st == NULL) {
        return -1;
    }
    for (done = 0; done < len;) {
        size_t n = len - done < s->stage_size ? len - done : s->stage_size;
        nxl_status_t rc;

        bench_pattern_fill(st, poff + done, n, key);
        rc = s->dk->copy(s->pool + loff + done, st, n, NXL_COPY_H2D);
        if (rc != NXL_OK) {
            return bench_nxl_err(rc, "%s copy to VRAM", s->dk->name);
        }
        done += n;
    }
    return 0;
}

/* bench_pool_check compares the local pool at loff with pattern key for
 * pattern offsets [poff, poff+len): *bad_p = the first wrong pattern
 * offset, or SIZE_MAX. Returns 0, or -1 when a device copy failed. */
int
bench_pool_check(bench_session_t *s, size_t loff, size_t poff, size_t len,
                 uint64_t key, size_t *bad_p)
{
    uint8_t *st;
    size_t done;

    *bad_p = SIZE_MAX;
    if (s->lmem != NXL_VRAM) {
        *bad_p = bench_pattern_check(s->pool + loff, poff, len, key);
        return 0;
    }
    st = stage_get(s);
    if (st == NULL) {
        return -1;
    }
    for (done = 0; done < len;) {
        size_t n = len - done < s->stage_size ? len - done : s->stage_size;
        nxl_status_t rc =
            s->dk->copy(st, s->pool + loff + done, n, NXL_COPY_D2H);

        if (rc != NXL_OK) {
            return bench_nxl_err(rc, "%s copy from VRAM", s->dk->name);
        }
        *bad_p = bench_pattern_check(st, poff + done, n, key);
        if (*bad_p != SIZE_MAX) {
            return 0;
        }
        done += n;
    }
    return 0;
}

/* bench_copy_dir returns the copy direction from kind src to kind dst. */
nxl_copy_dir_t
bench_copy_dir(nxl_mem_t src, nxl_mem_t dst)
{
    if (src == NXL_VRAM) {
        return dst == NXL_VRAM ? NXL_COPY_D2D : NXL_COPY_D2H;
    }
    return dst == NXL_VRAM ? NXL_COPY_H2D : NXL_COPY_H2H;
}
