/*
 * cuda_drv.h - the CUDA driver API subset the device kind uses, declared
 * by hand (no CUDA needed to build), and the state shared by cuda.c (the
 * kind) and cuda_gather.c (the gather kernel and batched copies).
 */
#ifndef NXL_MEMKIND_CUDA_DRV_H
#define NXL_MEMKIND_CUDA_DRV_H

#include "memkind.h"

#include <pthread.h>

/* ---- the driver API subset, declared by hand ---------------------------- */

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef struct CUipcMemHandle_st {
    char reserved[64];
} CUipcMemHandle;

_Static_assert(sizeof(CUipcMemHandle) == NXL_IPC_HANDLE_SIZE,
               "an IPC handle holds a CUipcMemHandle");

#define CUDA_SUCCESS 0
#define CUDA_ERROR_INVALID_VALUE 1
#define CUDA_ERROR_OUT_OF_MEMORY 2
#define CUDA_ERROR_NO_DEVICE 100
#define CUDA_ERROR_INVALID_DEVICE 101
#define CUDA_ERROR_NOT_FOUND 500
#define CUDA_ERROR_NOT_READY 600

#define CU_STREAM_NON_BLOCKING 0x1u
#define CU_EVENT_DISABLE_TIMING 0x2u
#define CU_MEMHOSTALLOC_PORTABLE 0x1u
#define CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS 0x1u
#define CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL 9

#define NXL__CUDA_ALIGN 4096u

/* Batched copies (CUDA 12.8): one attribute set for the whole batch. */
typedef struct CUmemLocation_st {
    int type; /* CUmemLocationType; 0 = no hint */
    int id;
} CUmemLocation;
typedef struct CUmemcpyAttributes_st {
    int srcAccessOrder; /* CUmemcpySrcAccessOrder */
    CUmemLocation srcLocHint;
    CUmemLocation dstLocHint;
    unsigned int flags;
} CUmemcpyAttributes;

#define CU_MEMCPY_SRC_ACCESS_ORDER_STREAM 1

/* The gather kernel: modules and functions, and the JIT log options. */
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
#define CU_JIT_ERROR_LOG_BUFFER 5
#define CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES 6

typedef CUresult (*nxl__cu_modload_fn)(CUmodule *, const void *, unsigned,
                                       int *, void **);
typedef CUresult (*nxl__cu_getfn_fn)(CUfunction *, CUmodule, const char *);
typedef CUresult (*nxl__cu_launch_fn)(CUfunction, unsigned, unsigned, unsigned,
                                      unsigned, unsigned, unsigned, unsigned,
                                      CUstream, void **, void **);

/* NXL__GATHER_MAX pairs go in one launch, as kernel parameters (the
 * driver copies them at launch, so nothing needs to outlive the call;
 * 8 + 3 x 128 x 8 = 3,080 bytes, under the 4 KiB parameter limit). */
#define NXL__GATHER_MAX 128
#define NXL__GATHER_THREADS 256

typedef struct nxl__gather_args {
    uint64_t n;
    uint64_t src[NXL__GATHER_MAX];
    uint64_t dst[NXL__GATHER_MAX];
    uint64_t len[NXL__GATHER_MAX];
} nxl__gather_args_t;

_Static_assert(sizeof(nxl__gather_args_t) == 3080,
               "the kernel's parameter block is 3,080 bytes");

/* CUDA 13's entry point (no failIdx) and 12.8's, which 13 keeps for old
 * binaries. Optional: a driver without both has no batched copy. */
typedef CUresult (*nxl__cu_batch_v2_fn)(CUdeviceptr *, CUdeviceptr *, size_t *,
                                        size_t, CUmemcpyAttributes *, size_t *,
                                        size_t, CUstream);
typedef CUresult (*nxl__cu_batch_v1_fn)(CUdeviceptr *, CUdeviceptr *, size_t *,
                                        size_t, CUmemcpyAttributes *, size_t *,
                                        size_t, size_t *, CUstream);

/* The symbols we resolve, each with its exact driver signature. */
#define NXL__CUDA_SYMBOLS(X)                                                   \
    X(cuInit, CUresult, (unsigned int))                                        \
    X(cuDeviceGetCount, CUresult, (int *))                                     \
    X(cuDeviceGet, CUresult, (CUdevice *, int))                                \
    X(cuDevicePrimaryCtxRetain, CUresult, (CUcontext *, CUdevice))             \
    X(cuCtxSetCurrent, CUresult, (CUcontext))                                  \
    X(cuMemAlloc_v2, CUresult, (CUdeviceptr *, size_t))                        \
    X(cuMemFree_v2, CUresult, (CUdeviceptr))                                   \
    X(cuMemcpy, CUresult, (CUdeviceptr, CUdeviceptr, size_t))                  \
    X(cuMemcpyAsync, CUresult, (CUdeviceptr, CUdeviceptr, size_t, CUstream))   \
    X(cuStreamCreate, CUresult, (CUstream *, unsigned int))                    \
    X(cuStreamDestroy_v2, CUresult, (CUstream))                                \
    X(cuStreamSynchronize, CUresult, (CUstream))                               \
    X(cuEventCreate, CUresult, (CUevent *, unsigned int))                      \
    X(cuEventRecord, CUresult, (CUevent, CUstream))                            \
    X(cuEventQuery, CUresult, (CUevent))                                       \
    X(cuEventSynchronize, CUresult, (CUevent))                                 \
    X(cuEventDestroy_v2, CUresult, (CUevent))                                  \
    X(cuIpcGetMemHandle, CUresult, (CUipcMemHandle *, CUdeviceptr))            \
    X(cuIpcOpenMemHandle_v2, CUresult,                                         \
      (CUdeviceptr *, CUipcMemHandle, unsigned int))                           \
    X(cuIpcCloseMemHandle, CUresult, (CUdeviceptr))                            \
    X(cuGetErrorString, CUresult, (CUresult, const char **))                   \
    X(cuMemHostAlloc, CUresult, (void **, size_t, unsigned int))               \
    X(cuMemFreeHost, CUresult, (void *))                                       \
    X(cuPointerGetAttribute, CUresult, (void *, int, CUdeviceptr))             \
    X(cuMemGetAddressRange_v2, CUresult, (CUdeviceptr *, size_t *, CUdeviceptr))

/* A re-aligned allocation: the pointer handed out and the driver's. */
typedef struct nxl__cuda_realign {
    struct nxl__cuda_realign *next;
    CUdeviceptr user;
    CUdeviceptr raw;
} nxl__cuda_realign_t;

/* nxl__cu_t: the driver as loaded (cuda.c), shared with the gather kernel
 * (cuda_gather.c). One instance, nxl__cu. */
typedef struct nxl__cu {
    pthread_once_t once;
    bool ok;
    char msg[320]; /* why the kind cannot run (when !ok) */
    void *lib;
    int num_devices;
    pthread_mutex_t lock; /* ctx[] and realigned */
    CUcontext *ctx;       /* primary contexts, retained on first use */
    nxl__cuda_realign_t *realigned;
    nxl__cu_batch_v2_fn batch_v2; /* optional: cuMemcpyBatchAsync_v2 */
    nxl__cu_batch_v1_fn batch_v1; /* optional: cuMemcpyBatchAsync (12.8) */
    nxl__cu_modload_fn mod_load;  /* optional: cuModuleLoadDataEx */
    nxl__cu_getfn_fn get_fn;      /* optional: cuModuleGetFunction */
    nxl__cu_launch_fn launch;     /* optional: cuLaunchKernel */
    bool no_kernel;               /* NXL_CUDA_COPY_KERNEL=0 */
    CUfunction *gather;           /* per device, under lock */
    signed char *gather_state;    /* per device: 0 untried, 1 ok, -1 failed */
#define NXL__CUDA_FN(name, ret, args) ret(*name) args;
    NXL__CUDA_SYMBOLS(NXL__CUDA_FN)
#undef NXL__CUDA_FN
} nxl__cu_t;

extern nxl__cu_t nxl__cu;

struct nxl_stream {
    CUstream s;
    int dev;
};

struct nxl_event {
    CUevent ev; /* NULL until first recorded */
    int dev;    /* device whose context ev lives in */
};

/* nxl__cu_errstr returns the driver's text for r (static strings). */
const char *nxl__cu_errstr(CUresult r);

/* nxl__cu_fail maps a driver failure to a status and sets the message
 * "memkind cuda: <what>: <driver text> (CUresult n)". */
nxl_status_t nxl__cu_fail(CUresult r, const char *what);

/* nxl__cu_ready loads the driver once; NXL_OK or NXL_ERR_NOT_SUPPORTED
 * with the reason. Thread-safe. */
nxl_status_t nxl__cu_ready(void);

/* nxl__cu_use_dev makes device dev's primary context current on this
 * thread, retaining it on first use. NXL_OK, NXL_ERR_INVALID_PARAM for a
 * bad ordinal, or the driver's error. Call after nxl__cu_ready.
 * Thread-safe. */
nxl_status_t nxl__cu_use_dev(int dev);

/* nxl__cuda_copy_batch_async is the kind's copy_batch_async
 * (cuda_gather.c): n copies queued on s, through the gather kernel for
 * NXL_COPY_BATCH_MAPPED, else one cuMemcpyBatchAsync. */
nxl_status_t nxl__cuda_copy_batch_async(void *const *dsts,
                                        const void *const *srcs,
                                        const size_t *lens, size_t n,
                                        nxl_copy_dir_t dir, unsigned flags,
                                        nxl_stream_t *s);

#endif /* NXL_MEMKIND_CUDA_DRV_H */
