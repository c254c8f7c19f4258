/* shared_mem.c - memfd-backed allocations that same-host peers map. */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct shared_alloc {
    uint64_t addr;
    uint64_t len;
    int fd;
} shared_alloc_t;

static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static shared_alloc_t *shared_allocs;
static size_t shared_count, shared_cap;

NXL_API nxl_status_t
nxl_mem_alloc_shared(size_t size, void **addr_p)
{
    long page = sysconf(_SC_PAGESIZE);
    shared_alloc_t *p;
    nxl_status_t status;
    size_t len;
    void *addr;
    int fd;

    if (size == 0 || addr_p == NULL || size > SIZE_MAX - (size_t)page) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "alloc_shared: bad size or NULL output");
    }
    len = (size + (size_t)page - 1) & ~((size_t)page - 1);
    fd = memfd_create("nxl-shared", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        return nxl__fail_errno(errno, "alloc_shared: memfd_create");
    }
    if (ftruncate(fd, (off_t)len) < 0) {
        status = nxl__fail_errno(errno, "alloc_shared: ftruncate(%zu)", len);
        goto err_close;
    }
    /* Peers map this file: a size change would turn their accesses into
     * SIGBUS, so the size is sealed. */
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        status = nxl__fail_errno(errno, "alloc_shared: F_ADD_SEALS");
        goto err_close;
    }
    addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (addr == MAP_FAILED) {
        status = nxl__fail_errno(errno, "alloc_shared: mmap(%zu)", len);
        goto err_close;
    }
    pthread_mutex_lock(&shared_lock);
    if (shared_count == shared_cap) {
        p = realloc(shared_allocs,
                    (shared_cap ? shared_cap * 2 : 16) * sizeof(*p));
        if (p == NULL) {
            pthread_mutex_unlock(&shared_lock);
            munmap(addr, len);
            status = nxl__fail(NXL_ERR_NOMEM, "alloc_shared: out of memory");
            goto err_close;
        }
        shared_allocs = p;
        shared_cap = shared_cap ? shared_cap * 2 : 16;
    }
    shared_allocs[shared_count++] = (shared_alloc_t){
        .addr = (uint64_t)(uintptr_t)addr, .len = len, .fd = fd};
    pthread_mutex_unlock(&shared_lock);
    *addr_p = addr;
    return NXL_OK;

err_close:
    close(fd);
    return status;
}

NXL_API void
nxl_mem_free_shared(void *addr)
{
    uint64_t a = (uint64_t)(uintptr_t)addr;
    size_t i;

    if (addr == NULL) {
        return;
    }
    pthread_mutex_lock(&shared_lock);
    for (i = 0; i < shared_count; i++) {
        if (shared_allocs[i].addr == a) {
            munmap(addr, shared_allocs[i].len);
            close(shared_allocs[i].fd);
            shared_allocs[i] = shared_allocs[--shared_count];
            pthread_mutex_unlock(&shared_lock);
            return;
        }
    }
    pthread_mutex_unlock(&shared_lock);
    nxl__warn("free_shared: %p was not allocated by nxl_mem_alloc_shared",
              addr);
}

void
nxl__shared_lookup(uint64_t addr, uint64_t len, int *fd_p, uint64_t *off_p)
{
    size_t i;

    *fd_p = -1;
    *off_p = 0;
    pthread_mutex_lock(&shared_lock);
    for (i = 0; i < shared_count; i++) {
        const shared_alloc_t *s = &shared_allocs[i];

        if (addr >= s->addr && len <= s->len &&
            addr - s->addr <= s->len - len) {
            *fd_p = s->fd;
            *off_p = addr - s->addr;
            break;
        }
    }
    pthread_mutex_unlock(&shared_lock);
}
