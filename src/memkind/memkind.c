/*
 * memkind.c - the device-kind switch and the cross-kind copy.
 *
 * The device kind is one atomic pointer: NULL means the CUDA kind, else
 * the table a program (or a test) installed with nxl_memkind_set_device.
 */
#include "memkind.h"

#include <stdatomic.h>
#include <string.h>

static _Atomic(const nxl_memkind_ops_t *) nxl__device_kind;

/* nxl_memkind_device returns the installed device kind, else the CUDA
 * kind. Never NULL. Thread-safe. */
const nxl_memkind_ops_t *
nxl_memkind_device(void)
{
    const nxl_memkind_ops_t *ops = atomic_load(&nxl__device_kind);

    return ops != NULL ? ops : nxl_memkind_cuda();
}

/* nxl_memkind_set_device installs ops as the device kind (NULL restores
 * CUDA). Checks abi_version (1 to ours), size (at least the table of that
 * version: tables grow at the end, and ops added later are read with
 * NXL_MEMKIND_HAS), a name, and type DEVICE; NXL_ERR_INVALID_PARAM
 * otherwise, leaving the current kind installed. ops must outlive its
 * installation. Thread-safe; copies already running on the old kind
 * finish on it. */
nxl_status_t
nxl_memkind_set_device(const nxl_memkind_ops_t *ops)
{
    size_t min;

    if (ops != NULL) {
        if (ops->abi_version < 1 ||
            ops->abi_version > NXL_MEMKIND_ABI_VERSION) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "memkind: device kind abi_version %u, want 1 to "
                             "%u",
                             ops->abi_version, NXL_MEMKIND_ABI_VERSION);
        }
        min = ops->abi_version == 1   ? NXL_MEMKIND_V1_SIZE
              : ops->abi_version == 2 ? NXL_MEMKIND_V2_SIZE
                                      : sizeof(nxl_memkind_ops_t);
        if (ops->size < min) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "memkind: device kind size %u, want >= %zu for "
                             "abi_version %u",
                             ops->size, min, ops->abi_version);
        }
        if (ops->name == NULL) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "memkind: device kind without a name");
        }
        if (ops->type != NXL_MEMKIND_DEVICE) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "memkind: kind \"%s\" has type %d, not "
                             "NXL_MEMKIND_DEVICE",
                             ops->name, (int)ops->type);
        }
    }
    atomic_store(&nxl__device_kind, ops);
    return NXL_OK;
}

/* nxl__memkind_valid_type: true for the three kind types. */
static bool
nxl__memkind_valid_type(nxl_memkind_type_t t)
{
    return t == NXL_MEMKIND_HOST || t == NXL_MEMKIND_PINNED ||
           t == NXL_MEMKIND_DEVICE;
}

/* nxl_memkind_copy copies len bytes from src (memory of src_kind) to dst
 * (of dst_kind) and returns when they are in place: through the device
 * kind's copy when either side is device memory (H2D, D2H or D2D), else
 * memcpy. NXL_OK, NXL_ERR_INVALID_PARAM (bad kind, NULL pointer with
 * len > 0), NXL_ERR_NOT_SUPPORTED (device kind cannot copy) or the device
 * kind's error. Thread-safe. */
nxl_status_t
nxl_memkind_copy(void *dst, nxl_memkind_type_t dst_kind, const void *src,
                 nxl_memkind_type_t src_kind, size_t len)
{
    const nxl_memkind_ops_t *dev;
    nxl_copy_dir_t dir;
    bool sdev, ddev;

    if (!nxl__memkind_valid_type(dst_kind) ||
        !nxl__memkind_valid_type(src_kind)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind: copy between unknown kinds %d -> %d",
                         (int)src_kind, (int)dst_kind);
    }
    if (len == 0) {
        return NXL_OK;
    }
    if (dst == NULL || src == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind: copy of %zu bytes with a NULL pointer", len);
    }
    sdev = src_kind == NXL_MEMKIND_DEVICE;
    ddev = dst_kind == NXL_MEMKIND_DEVICE;
    if (!sdev && !ddev) {
        memcpy(dst, src, len);
        return NXL_OK;
    }
    dir = sdev ? (ddev ? NXL_COPY_D2D : NXL_COPY_D2H) : NXL_COPY_H2D;
    dev = nxl_memkind_device();
    if (dev->copy == NULL) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "memkind: device kind \"%s\" has no copy", dev->name);
    }
    return dev->copy(dst, src, len, dir);
}
