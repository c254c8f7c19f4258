/*
 * dlpack.h - the few DLPack (v0.x, unversioned "dltensor" capsule) types
 * the binding reads, declared here so that no external header is needed.
 * Layout as in dmlc/dlpack's dlpack.h; only the fields are used.
 */
#ifndef NXLPY_DLPACK_H
#define NXLPY_DLPACK_H

#include <stdint.h>

/* Device types the binding understands. */
enum {
    NXLPY_DL_CPU = 1,
    NXLPY_DL_CUDA = 2,
    NXLPY_DL_CUDA_HOST = 3,
    NXLPY_DL_CUDA_MANAGED = 13
};

typedef struct nxlpy_dl_device {
    int32_t device_type; /* DLDeviceType (a C enum: int-sized) */
    int32_t device_id;
} nxlpy_dl_device_t;

typedef struct nxlpy_dl_dtype {
    uint8_t code;
    uint8_t bits;
    uint16_t lanes;
} nxlpy_dl_dtype_t;

typedef struct nxlpy_dl_tensor {
    void *data;
    nxlpy_dl_device_t device;
    int32_t ndim;
    nxlpy_dl_dtype_t dtype;
    int64_t *shape;
    int64_t *strides; /* in elements; NULL = compact row-major */
    uint64_t byte_offset;
} nxlpy_dl_tensor_t;

typedef struct nxlpy_dl_managed {
    nxlpy_dl_tensor_t dl_tensor;
    void *manager_ctx;
    void (*deleter)(struct nxlpy_dl_managed *self);
} nxlpy_dl_managed_t;

_Static_assert(sizeof(nxlpy_dl_tensor_t) == 48, "DLTensor layout");
_Static_assert(sizeof(nxlpy_dl_managed_t) == 64, "DLManagedTensor layout");

#endif /* NXLPY_DLPACK_H */
