/*
 * storage.c - KV storage: System / Pinned / Device(n) / Disk(fd) memory and
 * its registration with an agent (Dynamo's StorageKind and NixlRegistered).
 *
 * A storage object describes one contiguous region. Registration goes
 * through nxl_mem_register with one descriptor; destroy always deregisters
 * before the memory is freed (or the file closed and unlinked), the order
 * Dynamo's NixlRegistered drop guarantees.
 */
#include "kv.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* nxl_kv_kind_name returns the static name of kind ("System", "Pinned",
 * "Device", "Disk"; "Unknown" otherwise). Thread-safe. */
NXL_API const char *
nxl_kv_kind_name(nxl_kv_kind_t kind)
{
    switch (kind) {
    case NXL_KV_SYSTEM:
        return "System";
    case NXL_KV_PINNED:
        return "Pinned";
    case NXL_KV_DEVICE:
        return "Device";
    case NXL_KV_DISK:
        return "Disk";
    }
    return "Unknown";
}

/* nxl__kv_kind_mem maps a storage kind to the memory type it registers as
 * (System, Pinned -> DRAM; Device -> VRAM; Disk -> FILE). Thread-safe. */
nxl_mem_t
nxl__kv_kind_mem(nxl_kv_kind_t kind)
{
    switch (kind) {
    case NXL_KV_DEVICE:
        return NXL_VRAM;
    case NXL_KV_DISK:
        return NXL_FILE;
    case NXL_KV_SYSTEM:
    case NXL_KV_PINNED:
        break;
    }
    return NXL_DRAM;
}

/* kind_valid: 1 when kind is one of the four storage kinds. */
static int
kind_valid(nxl_kv_kind_t kind)
{
    return kind == NXL_KV_SYSTEM || kind == NXL_KV_PINNED ||
           kind == NXL_KV_DEVICE || kind == NXL_KV_DISK;
}

/* storage_new allocates a zeroed storage object for loc and size; host
 * kinds get index 0. Returns NULL on allocation failure (message set). */
static nxl_kv_storage_t *
storage_new(nxl_kv_loc_t loc, size_t size)
{
    nxl_kv_storage_t *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        nxl__fail(NXL_ERR_NOMEM, "kv storage: out of memory");
        return NULL;
    }
    if (loc.kind == NXL_KV_SYSTEM || loc.kind == NXL_KV_PINNED) {
        loc.index = 0;
    }
    s->loc = loc;
    s->size = size;
    return s;
}

/* nxl_kv_storage_alloc allocates size bytes of SYSTEM, PINNED or DEVICE
 * memory (loc.index = device ordinal) through the memory kinds. The caller
 * owns *s_p (nxl_kv_storage_destroy). Returns NXL_OK, NXL_ERR_INVALID_PARAM
 * (DISK, bad kind, zero size, ordinal out of range), NXL_ERR_NOMEM, or the
 * memory kind's error (NXL_ERR_NOT_SUPPORTED where the device kind cannot
 * run, with its message). Thread-safe. */
NXL_API nxl_status_t
nxl_kv_storage_alloc(nxl_kv_loc_t loc, size_t size, nxl_kv_storage_t **s_p)
{
    const nxl_memkind_ops_t *mk;
    nxl_kv_storage_t *s;
    nxl_status_t st;
    void *ptr = NULL;
    int dev = 0;

    if (s_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv storage: NULL argument");
    }
    if (size == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv storage: size must be greater than 0");
    }
    switch (loc.kind) {
    case NXL_KV_SYSTEM:
        mk = nxl_memkind_host();
        break;
    case NXL_KV_PINNED:
        mk = nxl_memkind_pinned();
        break;
    case NXL_KV_DEVICE:
        if (loc.index > INT_MAX) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "kv storage: device ordinal %" PRIu64
                             " out of range",
                             loc.index);
        }
        mk = nxl_memkind_device();
        dev = (int)loc.index;
        break;
    case NXL_KV_DISK:
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv storage: Disk storage is created with "
                         "nxl_kv_storage_disk");
    default:
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv storage: unknown storage kind %d", (int)loc.kind);
    }
    if (mk->alloc == NULL) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "kv storage: memory kind %s cannot allocate",
                         mk->name ? mk->name : "?");
    }
    if (mk->probe != NULL) {
        st = mk->probe();
        if (st != NXL_OK) {
            return st; /* the kind set the message */
        }
    }
    s = storage_new(loc, size);
    if (s == NULL) {
        return NXL_ERR_NOMEM;
    }
    st = mk->alloc(dev, size, &ptr);
    if (st != NXL_OK) {
        free(s);
        return st; /* the kind set the message */
    }
    s->ptr = ptr;
    s->addr = (uint64_t)(uintptr_t)ptr;
    s->owned = true;
    s->mk = mk;
    *s_p = s;
    return NXL_OK;
}

/* open_direct reopens the file behind fd (at path) with O_DIRECT, through
 * /proc/self/fd first and by path if that fails. Returns the new fd or -1
 * with errno set. */
static int
open_direct(int fd, const char *path)
{
    char proc[64];
    int nfd;

    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    nfd = open(proc, O_RDWR | O_DIRECT | O_CLOEXEC);
    if (nfd < 0 && errno != EINVAL) {
        nfd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
    }
    return nfd;
}

/* nxl_kv_storage_disk creates a size-byte file nxl-kv-XXXXXX in dir (NULL
 * or "" = $TMPDIR, else /tmp), sized with posix_fallocate where the file
 * system supports it (ftruncate otherwise), opened O_RDWR and, when
 * direct, O_DIRECT. The file is unlinked and closed at destroy. The caller
 * owns *s_p. Returns NXL_OK, NXL_ERR_INVALID_PARAM (zero size, path too
 * long), NXL_ERR_NOT_SUPPORTED (O_DIRECT refused by the file system),
 * NXL_ERR_NOMEM, or an errno-derived status. Thread-safe. */
NXL_API nxl_status_t
nxl_kv_storage_disk(const char *dir, size_t size, int direct,
                    nxl_kv_storage_t **s_p)
{
    nxl_kv_storage_t *s;
    char *path;
    size_t plen;
    int fd, nfd, err;
    nxl_status_t st;

    if (s_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv storage: NULL argument");
    }
    if (size == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv storage: size must be greater than 0");
    }
    if ((uint64_t)size > (uint64_t)INT64_MAX) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv storage: size %zu too large for a file", size);
    }
    if (dir == NULL || dir[0] == '\0') {
        dir = getenv("TMPDIR");
        if (dir == NULL || dir[0] == '\0') {
            dir = "/tmp";
        }
    }
    plen = strlen(dir) + sizeof("/nxl-kv-XXXXXX");
    if (plen > PATH_MAX) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv storage: directory path too long");
    }
    path = malloc(plen);
    if (path == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "kv storage: out of memory");
    }
    snprintf(path, plen, "%s/nxl-kv-XXXXXX", dir);
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) {
        st = nxl__fail_errno(errno, "kv storage: mkstemp in %s", dir);
        free(path);
        return st;
    }
    err = posix_fallocate(fd, 0, (off_t)size);
    if (err != 0 && err != EOPNOTSUPP && err != EINVAL && err != ENOSYS) {
        st = nxl__fail_errno(err, "kv storage: posix_fallocate(%s, %zu)", path,
                             size);
        goto err_close;
    }
    if (err != 0 && ftruncate(fd, (off_t)size) != 0) {
        st = nxl__fail_errno(errno, "kv storage: ftruncate(%s, %zu)", path,
                             size);
        goto err_close;
    }
    if (direct) {
        nfd = open_direct(fd, path);
        if (nfd < 0) {
            err = errno;
            if (err == EINVAL) {
                st = nxl__fail(NXL_ERR_NOT_SUPPORTED,
                               "kv storage: the file system of %s does not "
                               "support O_DIRECT",
                               dir);
            } else {
                st = nxl__fail_errno(err, "kv storage: open(%s, O_DIRECT)",
                                     path);
            }
            goto err_close;
        }
        close(fd);
        fd = nfd;
    }
    s = storage_new((nxl_kv_loc_t){.kind = NXL_KV_DISK, .index = (uint64_t)fd},
                    size);
    if (s == NULL) {
        st = NXL_ERR_NOMEM;
        goto err_close;
    }
    s->ptr = NULL;
    s->addr = 0;
    s->owned = true;
    s->path = path;
    *s_p = s;
    return NXL_OK;

err_close:
    (void)unlink(path);
    close(fd);
    free(path);
    return st;
}

/* nxl_kv_storage_wrap describes caller-owned memory (or, for DISK, the
 * caller's fd loc.index at file offset addr) without taking ownership:
 * destroy deregisters but frees nothing. The caller owns *s_p. Returns
 * NXL_OK, NXL_ERR_INVALID_PARAM (bad kind, zero size, NULL address of a
 * memory kind) or NXL_ERR_NOMEM. Thread-safe. */
NXL_API nxl_status_t
nxl_kv_storage_wrap(nxl_kv_loc_t loc, uint64_t addr, size_t size,
                    nxl_kv_storage_t **s_p)
{
    nxl_kv_storage_t *s;

    if (s_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv storage: NULL argument");
    }
    if (!kind_valid(loc.kind)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv storage: unknown storage kind %d", (int)loc.kind);
    }
    if (size == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv storage: size must be greater than 0");
    }
    if (loc.kind != NXL_KV_DISK && addr == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv storage: NULL address for %s storage",
                         nxl_kv_kind_name(loc.kind));
    }
    if (loc.kind == NXL_KV_DISK && loc.index > (uint64_t)INT_MAX) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv storage: %" PRIu64 " is not a file descriptor",
                         loc.index);
    }
    if (loc.kind == NXL_KV_DISK
            ? addr > (uint64_t)INT64_MAX ||
                  (uint64_t)size > (uint64_t)INT64_MAX - addr
            : (uint64_t)size > UINT64_MAX - addr) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv storage: range 0x%" PRIx64 "+%zu %s", addr, size,
                         loc.kind == NXL_KV_DISK
                             ? "is beyond the largest file offset"
                             : "wraps around the address space");
    }
    s = storage_new(loc, size);
    if (s == NULL) {
        return NXL_ERR_NOMEM;
    }
    s->addr = addr;
    s->ptr = loc.kind == NXL_KV_DISK ? NULL : (void *)(uintptr_t)addr;
    s->owned = false;
    *s_p = s;
    return NXL_OK;
}

/* nxl_kv_storage_destroy deregisters s when it is registered, then frees
 * owned memory through its kind, or unlinks and closes an owned file.
 * Accepts NULL. Not thread-safe with other calls on s. */
NXL_API void
nxl_kv_storage_destroy(nxl_kv_storage_t *s)
{
    if (s == NULL) {
        return;
    }
    if (s->reg_agent != NULL && nxl_kv_storage_deregister(s) != NXL_OK) {
        nxl__warn("kv storage: deregistration of %s storage failed at "
                  "destroy: %s",
                  nxl_kv_kind_name(s->loc.kind), nxl_last_error());
    }
    if (s->owned) {
        if (s->loc.kind == NXL_KV_DISK) {
            if (s->path != NULL && !s->unlinked && unlink(s->path) != 0 &&
                errno != ENOENT) {
                nxl__warn("kv storage: unlink(%s): %s", s->path,
                          strerror(errno));
            }
            close((int)s->loc.index);
        } else if (s->mk != NULL && s->mk->free != NULL) {
            s->mk->free((int)s->loc.index, s->ptr, s->size);
        }
    }
    free(s->path);
    free(s);
}

/* nxl_kv_storage_loc returns s's kind and index. Thread-safe for reading. */
NXL_API nxl_kv_loc_t
nxl_kv_storage_loc(const nxl_kv_storage_t *s)
{
    return s->loc;
}

/* nxl_kv_storage_ptr returns s's memory pointer, NULL for DISK. */
NXL_API void *
nxl_kv_storage_ptr(const nxl_kv_storage_t *s)
{
    return s->ptr;
}

/* nxl_kv_storage_addr returns s's address (the file offset for DISK). */
NXL_API uint64_t
nxl_kv_storage_addr(const nxl_kv_storage_t *s)
{
    return s->addr;
}

/* nxl_kv_storage_size returns s's size in bytes. */
NXL_API size_t
nxl_kv_storage_size(const nxl_kv_storage_t *s)
{
    return s->size;
}

/* nxl_kv_storage_desc fills *d with what registration needs: addr, size,
 * memory type (DRAM, VRAM, FILE) and dev id (0 for host kinds, the ordinal
 * for Device, the fd for Disk). Thread-safe for reading. */
NXL_API void
nxl_kv_storage_desc(const nxl_kv_storage_t *s, nxl_kv_desc_t *d)
{
    d->addr = s->addr;
    d->size = s->size;
    d->mem = nxl__kv_kind_mem(s->loc.kind);
    d->dev_id = (s->loc.kind == NXL_KV_DEVICE || s->loc.kind == NXL_KV_DISK)
                    ? s->loc.index
                    : 0;
}

/* storage_dlist fills desc and dl with s's one-descriptor list. */
static void
storage_dlist(const nxl_kv_storage_t *s, nxl_desc_t *desc, nxl_dlist_t *dl)
{
    nxl_kv_desc_t d;

    nxl_kv_storage_desc(s, &d);
    *desc = (nxl_desc_t){.addr = d.addr, .len = d.size, .dev_id = d.dev_id};
    *dl = (nxl_dlist_t){.mem = d.mem, .descs = desc, .count = 1};
}

/* nxl_kv_storage_register registers s with a's agent (one descriptor of
 * s's memory type). Already registered -> NXL_OK with no new registration.
 * On failure s stays valid and unregistered and the agent's status is
 * returned; DISK whose file is already unlinked -> NXL_ERR_NOT_ALLOWED
 * "Disk storage has already been unlinked. GDS registration will fail.".
 * a must outlive the registration. Not thread-safe with other calls on s. */
NXL_API nxl_status_t
nxl_kv_storage_register(nxl_kv_storage_t *s, nxl_kv_agent_t *a)
{
    nxl_desc_t desc;
    nxl_dlist_t dl;
    struct stat stbuf;
    nxl_status_t st;

    if (s == NULL || a == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv storage register: NULL argument");
    }
    if (s->reg_agent != NULL) {
        return NXL_OK;
    }
    if (s->loc.kind == NXL_KV_DISK) {
        if (fstat((int)s->loc.index, &stbuf) != 0) {
            return nxl__fail_errno(errno,
                                   "kv storage register: fstat(fd %" PRIu64 ")",
                                   s->loc.index);
        }
        if (stbuf.st_nlink == 0) {
            s->unlinked = true;
            return nxl__fail(NXL_ERR_NOT_ALLOWED,
                             "Disk storage has already been unlinked. GDS "
                             "registration will fail.");
        }
    }
    storage_dlist(s, &desc, &dl);
    st = nxl_mem_register(nxl_kv_agent_raw(a), &dl, NULL);
    if (st != NXL_OK) {
        return st; /* the agent set the message */
    }
    s->reg_agent = a;
    return NXL_OK;
}

/* nxl_kv_storage_is_registered returns 1 if s holds a registration. */
NXL_API int
nxl_kv_storage_is_registered(const nxl_kv_storage_t *s)
{
    return s != NULL && s->reg_agent != NULL;
}

/* nxl_kv_storage_deregister drops s's registration. Returns NXL_OK (also
 * when s is not registered) or the agent's error, in which case s is
 * considered unregistered anyway (the registration cannot be retried
 * meaningfully). Not thread-safe with other calls on s. */
NXL_API nxl_status_t
nxl_kv_storage_deregister(nxl_kv_storage_t *s)
{
    nxl_desc_t desc;
    nxl_dlist_t dl;
    nxl_kv_agent_t *a;

    if (s == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv storage deregister: NULL argument");
    }
    a = s->reg_agent;
    if (a == NULL) {
        return NXL_OK;
    }
    s->reg_agent = NULL;
    storage_dlist(s, &desc, &dl);
    return nxl_mem_deregister(nxl_kv_agent_raw(a), &dl, NULL);
}
