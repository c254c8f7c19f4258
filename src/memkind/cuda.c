/*
 * cuda.c - the CUDA device kind, on the driver API loaded with dlopen.
 *
 * libcuda.so.1 is opened once, on first use (pthread_once), and never
 * closed; the few types and constants we need are declared here so that
 * CUDA is never needed to build. Without the library, a symbol, or a
 * device, every op fails with NXL_ERR_NOT_SUPPORTED and the reason ("no
 * CUDA driver: libcuda.so.1: cannot open shared object file: ...", "no CUDA
 * device") in nxl_last_error().
 *
 * Contexts: each device's primary context is retained on first use and
 * kept for the life of the process; every op makes the right one current
 * on the calling thread (cuCtxSetCurrent), so any thread may call any op.
 * Streams are created CU_STREAM_NON_BLOCKING so that they never wait on
 * the legacy default stream, which the blocking copy uses. Events are
 * created lazily in the context of the stream they are first recorded on
 * (the driver requires event and stream to share a context).
 *
 * Alignment: the driver guarantees only 256 bytes, the kind promises
 * 4096. Sizes are rounded up to 4096; should the driver still return a
 * misaligned pointer, the allocation is redone 4096 bytes larger and the
 * aligned pointer handed out, remembered in a small list so that free
 * finds the real one (ipc_get refuses the aligned pointer, since the peer
 * would map the driver's base; export the base mem_range reports, as the
 * SHM backend does).
 */
#include "memkind.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
typedef CUresult (*nxl__cu_launch_fn)(CUfunction, unsigned, unsigned,
                                      unsigned, unsigned, unsigned,
                                      unsigned, unsigned, CUstream, void **,
                                      void **);

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

/* nxl_gather: CTA c copies pairs c, c + gridDim.x, ... of its parameter
 * block; its threads move 16 bytes each per step when source, destination
 * and length are 16-byte aligned, else one byte each. Pointers are
 * unified addresses: device memory or page-locked host memory mapped for
 * the device. Written in PTX so that no CUDA compiler is needed to build;
 * the driver compiles it for the device at first use. */
static const char nxl__gather_ptx[] =
    ".version 6.0\n"
    ".target sm_50\n"
    ".address_size 64\n"
    ".visible .entry nxl_gather(.param .align 8 .b8 a[3080])\n"
    "{\n"
    "  .reg .pred %p<4>;\n"
    "  .reg .b16 %rs<2>;\n"
    "  .reg .b32 %r<12>;\n"
    "  .reg .b64 %rd<20>;\n"
    "  mov.u64 %rd0, a;\n"
    "  ld.param.u64 %rd1, [a];\n"
    "  mov.u32 %r0, %ctaid.x;\n"
    "  mov.u32 %r1, %nctaid.x;\n"
    "  mov.u32 %r2, %tid.x;\n"
    "  mov.u32 %r3, %ntid.x;\n"
    "  cvt.u64.u32 %rd2, %r0;\n"
    "  cvt.u64.u32 %rd9, %r2;\n"
    "  cvt.u64.u32 %rd10, %r3;\n"
    "  cvt.u64.u32 %rd15, %r1;\n"
    "PAIR:\n"
    "  setp.ge.u64 %p0, %rd2, %rd1;\n"
    "  @%p0 bra DONE;\n"
    "  shl.b64 %rd3, %rd2, 3;\n"
    "  add.u64 %rd4, %rd0, %rd3;\n"
    "  ld.param.u64 %rd5, [%rd4+8];\n"
    "  ld.param.u64 %rd6, [%rd4+1032];\n"
    "  ld.param.u64 %rd7, [%rd4+2056];\n"
    "  cvta.to.global.u64 %rd5, %rd5;\n"
    "  cvta.to.global.u64 %rd6, %rd6;\n"
    "  or.b64 %rd8, %rd5, %rd6;\n"
    "  or.b64 %rd8, %rd8, %rd7;\n"
    "  and.b64 %rd8, %rd8, 15;\n"
    "  setp.ne.u64 %p1, %rd8, 0;\n"
    "  @%p1 bra BYTES;\n"
    "  shl.b64 %rd11, %rd9, 4;\n"
    "  shl.b64 %rd12, %rd10, 4;\n"
    "VEC:\n"
    "  setp.ge.u64 %p2, %rd11, %rd7;\n"
    "  @%p2 bra NEXT;\n"
    "  add.u64 %rd13, %rd5, %rd11;\n"
    "  add.u64 %rd14, %rd6, %rd11;\n"
    "  ld.global.v4.u32 {%r4, %r5, %r6, %r7}, [%rd13];\n"
    "  st.global.v4.u32 [%rd14], {%r4, %r5, %r6, %r7};\n"
    "  add.u64 %rd11, %rd11, %rd12;\n"
    "  bra.uni VEC;\n"
    "BYTES:\n"
    "  mov.u64 %rd11, %rd9;\n"
    "BLOOP:\n"
    "  setp.ge.u64 %p3, %rd11, %rd7;\n"
    "  @%p3 bra NEXT;\n"
    "  add.u64 %rd13, %rd5, %rd11;\n"
    "  add.u64 %rd14, %rd6, %rd11;\n"
    "  ld.global.u8 %rs0, [%rd13];\n"
    "  st.global.u8 [%rd14], %rs0;\n"
    "  add.u64 %rd11, %rd11, %rd10;\n"
    "  bra.uni BLOOP;\n"
    "NEXT:\n"
    "  add.u64 %rd2, %rd2, %rd15;\n"
    "  bra.uni PAIR;\n"
    "DONE:\n"
    "  ret;\n"
    "}\n";

/* CUDA 13's entry point (no failIdx) and 12.8's, which 13 keeps for old
 * binaries. Optional: a driver without both has no batched copy. */
typedef CUresult (*nxl__cu_batch_v2_fn)(CUdeviceptr *, CUdeviceptr *,
                                        size_t *, size_t,
                                        CUmemcpyAttributes *, size_t *,
                                        size_t, CUstream);
typedef CUresult (*nxl__cu_batch_v1_fn)(CUdeviceptr *, CUdeviceptr *,
                                        size_t *, size_t,
                                        CUmemcpyAttributes *, size_t *,
                                        size_t, size_t *, CUstream);

/* The symbols we resolve, each with its exact driver signature. */
#define NXL__CUDA_SYMBOLS(X)                                                  \
    X(cuInit, CUresult, (unsigned int))                                       \
    X(cuDeviceGetCount, CUresult, (int *))                                    \
    X(cuDeviceGet, CUresult, (CUdevice *, int))                               \
    X(cuDevicePrimaryCtxRetain, CUresult, (CUcontext *, CUdevice))            \
    X(cuCtxSetCurrent, CUresult, (CUcontext))                                 \
    X(cuMemAlloc_v2, CUresult, (CUdeviceptr *, size_t))                       \
    X(cuMemFree_v2, CUresult, (CUdeviceptr))                                  \
    X(cuMemcpy, CUresult, (CUdeviceptr, CUdeviceptr, size_t))                 \
    X(cuMemcpyAsync, CUresult, (CUdeviceptr, CUdeviceptr, size_t, CUstream))  \
    X(cuStreamCreate, CUresult, (CUstream *, unsigned int))                   \
    X(cuStreamDestroy_v2, CUresult, (CUstream))                               \
    X(cuStreamSynchronize, CUresult, (CUstream))                              \
    X(cuEventCreate, CUresult, (CUevent *, unsigned int))                     \
    X(cuEventRecord, CUresult, (CUevent, CUstream))                           \
    X(cuEventQuery, CUresult, (CUevent))                                      \
    X(cuEventSynchronize, CUresult, (CUevent))                                \
    X(cuEventDestroy_v2, CUresult, (CUevent))                                 \
    X(cuIpcGetMemHandle, CUresult, (CUipcMemHandle *, CUdeviceptr))           \
    X(cuIpcOpenMemHandle_v2, CUresult,                                        \
      (CUdeviceptr *, CUipcMemHandle, unsigned int))                          \
    X(cuIpcCloseMemHandle, CUresult, (CUdeviceptr))                           \
    X(cuGetErrorString, CUresult, (CUresult, const char **))                  \
    X(cuMemHostAlloc, CUresult, (void **, size_t, unsigned int))              \
    X(cuMemFreeHost, CUresult, (void *))                                      \
    X(cuPointerGetAttribute, CUresult, (void *, int, CUdeviceptr))            \
    X(cuMemGetAddressRange_v2, CUresult, (CUdeviceptr *, size_t *, CUdeviceptr))

/* A re-aligned allocation: the pointer handed out and the driver's. */
typedef struct nxl__cuda_realign {
    struct nxl__cuda_realign *next;
    CUdeviceptr user;
    CUdeviceptr raw;
} nxl__cuda_realign_t;

static struct {
    pthread_once_t once;
    bool ok;
    char msg[320];  /* why the kind cannot run (when !ok) */
    void *lib;
    int num_devices;
    pthread_mutex_t lock;   /* ctx[] and realigned */
    CUcontext *ctx;         /* primary contexts, retained on first use */
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
} g_cu = {
    .once = PTHREAD_ONCE_INIT,
    .lock = PTHREAD_MUTEX_INITIALIZER,
};

struct nxl_stream {
    CUstream s;
    int dev;
};

struct nxl_event {
    CUevent ev; /* NULL until first recorded */
    int dev;    /* device whose context ev lives in */
};

/* cu_errstr returns the driver's text for r (static strings). */
static const char *
cu_errstr(CUresult r)
{
    const char *s = NULL;

    if (g_cu.cuGetErrorString == NULL ||
        g_cu.cuGetErrorString(r, &s) != CUDA_SUCCESS || s == NULL) {
        return "unknown CUDA error";
    }
    return s;
}

/* cu_fail maps a driver failure to a status and sets the message
 * "memkind cuda: <what>: <driver text> (CUresult n)". */
static nxl_status_t
cu_fail(CUresult r, const char *what)
{
    nxl_status_t st;

    switch (r) {
    case CUDA_ERROR_OUT_OF_MEMORY:
        st = NXL_ERR_NOMEM;
        break;
    case CUDA_ERROR_INVALID_VALUE:
    case CUDA_ERROR_INVALID_DEVICE:
        st = NXL_ERR_INVALID_PARAM;
        break;
    default:
        st = NXL_ERR_BACKEND;
        break;
    }
    return nxl__fail(st, "memkind cuda: %s: %s (CUresult %d)", what,
                     cu_errstr(r), r);
}

/* cu_init loads the driver, resolves every symbol, runs cuInit and counts
 * devices; on any failure it records why in g_cu.msg. Runs once. */
static void
cu_init(void)
{
    const char *err;
    CUresult r;
    int n = 0;

    g_cu.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (g_cu.lib == NULL) {
        err = dlerror();
        snprintf(g_cu.msg, sizeof(g_cu.msg), "no CUDA driver: %s",
                 err != NULL ? err : "libcuda.so.1: cannot be loaded");
        return;
    }
#define NXL__CUDA_SYM(name, ret, args)                                        \
    *(void **)(&g_cu.name) = dlsym(g_cu.lib, #name);                          \
    if (g_cu.name == NULL) {                                                  \
        snprintf(g_cu.msg, sizeof(g_cu.msg),                                  \
                 "no CUDA driver: libcuda.so.1 lacks %s (driver too old)",    \
                 #name);                                                      \
        goto fail;                                                            \
    }
    NXL__CUDA_SYMBOLS(NXL__CUDA_SYM)
#undef NXL__CUDA_SYM
    *(void **)(&g_cu.batch_v2) = dlsym(g_cu.lib, "cuMemcpyBatchAsync_v2");
    if (g_cu.batch_v2 == NULL) {
        *(void **)(&g_cu.batch_v1) = dlsym(g_cu.lib, "cuMemcpyBatchAsync");
    }
    *(void **)(&g_cu.mod_load) = dlsym(g_cu.lib, "cuModuleLoadDataEx");
    *(void **)(&g_cu.get_fn) = dlsym(g_cu.lib, "cuModuleGetFunction");
    *(void **)(&g_cu.launch) = dlsym(g_cu.lib, "cuLaunchKernel");
    {
        const char *e = getenv("NXL_CUDA_COPY_KERNEL");

        g_cu.no_kernel = e != NULL && strcmp(e, "0") == 0;
    }

    r = g_cu.cuInit(0);
    if (r == CUDA_ERROR_NO_DEVICE) {
        snprintf(g_cu.msg, sizeof(g_cu.msg), "no CUDA device (cuInit: %s)",
                 cu_errstr(r));
        goto fail;
    }
    if (r != CUDA_SUCCESS) {
        snprintf(g_cu.msg, sizeof(g_cu.msg),
                 "no usable CUDA driver: cuInit: %s (CUresult %d)",
                 cu_errstr(r), r);
        goto fail;
    }
    r = g_cu.cuDeviceGetCount(&n);
    if (r != CUDA_SUCCESS || n <= 0) {
        snprintf(g_cu.msg, sizeof(g_cu.msg), "no CUDA device%s%s",
                 r != CUDA_SUCCESS ? ": cuDeviceGetCount: " : "",
                 r != CUDA_SUCCESS ? cu_errstr(r) : "");
        goto fail;
    }
    g_cu.ctx = calloc((size_t)n, sizeof(*g_cu.ctx));
    g_cu.gather = calloc((size_t)n, sizeof(*g_cu.gather));
    g_cu.gather_state = calloc((size_t)n, sizeof(*g_cu.gather_state));
    if (g_cu.ctx == NULL || g_cu.gather == NULL || g_cu.gather_state == NULL) {
        snprintf(g_cu.msg, sizeof(g_cu.msg),
                 "memkind cuda: out of memory at init");
        goto fail;
    }
    g_cu.num_devices = n;
    g_cu.ok = true;
    return;

fail:
    /* Keep the library loaded: cu_errstr may still be asked, and an
     * unloaded driver could not be reloaded in this process anyway. */
    g_cu.ok = false;
}

/* cu_ready returns NXL_OK when the kind can run, else NOT_SUPPORTED with
 * the reason set as the last error. Thread-safe. */
static nxl_status_t
cu_ready(void)
{
    pthread_once(&g_cu.once, cu_init);
    if (!g_cu.ok) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED, "%s", g_cu.msg);
    }
    return NXL_OK;
}

/* nxl__cuda_available loads the driver once; true when a device can be
 * used. Does not touch the last error. Thread-safe. */
bool
nxl__cuda_available(void)
{
    pthread_once(&g_cu.once, cu_init);
    return g_cu.ok;
}

/* cu_use_dev makes device dev's primary context current on this thread,
 * retaining it on first use. NXL_OK, NXL_ERR_INVALID_PARAM for a bad
 * ordinal, or the driver's error. Call after cu_ready. Thread-safe. */
static nxl_status_t
cu_use_dev(int dev)
{
    CUcontext ctx;
    CUdevice d;
    CUresult r;

    if (dev < 0 || dev >= g_cu.num_devices) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind cuda: device %d out of range (%d devices)",
                         dev, g_cu.num_devices);
    }
    pthread_mutex_lock(&g_cu.lock);
    ctx = g_cu.ctx[dev];
    if (ctx == NULL) {
        r = g_cu.cuDeviceGet(&d, dev);
        if (r == CUDA_SUCCESS) {
            r = g_cu.cuDevicePrimaryCtxRetain(&ctx, d);
        }
        if (r != CUDA_SUCCESS) {
            pthread_mutex_unlock(&g_cu.lock);
            return cu_fail(r, "cuDevicePrimaryCtxRetain");
        }
        g_cu.ctx[dev] = ctx;
    }
    pthread_mutex_unlock(&g_cu.lock);
    r = g_cu.cuCtxSetCurrent(ctx);
    if (r != CUDA_SUCCESS) {
        return cu_fail(r, "cuCtxSetCurrent");
    }
    return NXL_OK;
}

/* cu_use_ptr makes current the context of the device that owns device
 * pointer p (device 0 when the driver cannot tell). */
static nxl_status_t
cu_use_ptr(const void *p)
{
    nxl_status_t st = cu_use_dev(0);
    int ordinal = 0;

    if (st != NXL_OK) {
        return st;
    }
    if (g_cu.cuPointerGetAttribute(&ordinal,
                                   CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                                   (CUdeviceptr)(uintptr_t)p) !=
            CUDA_SUCCESS ||
        ordinal == 0) {
        return NXL_OK;
    }
    return cu_use_dev(ordinal);
}

/* cuda_probe: NXL_OK when libcuda.so.1 loads and a device exists, else
 * NXL_ERR_NOT_SUPPORTED with the reason. Thread-safe. */
static nxl_status_t
cuda_probe(void)
{
    return cu_ready();
}

/* cuda_device_count writes the number of CUDA devices. */
static nxl_status_t
cuda_device_count(int *count_p)
{
    nxl_status_t st = cu_ready();

    if (st != NXL_OK) {
        return st;
    }
    if (count_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "memkind cuda: NULL count_p");
    }
    *count_p = g_cu.num_devices;
    return NXL_OK;
}

/* cuda_alloc returns size bytes of device memory on dev, 4096-aligned;
 * free with cuda_free. NXL_OK, NXL_ERR_NOMEM, NXL_ERR_INVALID_PARAM or a
 * driver error. Thread-safe. */
static nxl_status_t
cuda_alloc(int dev, size_t size, void **ptr_p)
{
    nxl__cuda_realign_t *ra;
    CUdeviceptr p = 0;
    size_t span;
    nxl_status_t st = cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    if (ptr_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "memkind cuda: NULL ptr_p");
    }
    span = (NXL__MAX(size, (size_t)1) + NXL__CUDA_ALIGN - 1) /
           NXL__CUDA_ALIGN * NXL__CUDA_ALIGN;
    if (span < size || span + NXL__CUDA_ALIGN < span) {
        return nxl__fail(NXL_ERR_NOMEM, "memkind cuda: size %zu too large",
                         size);
    }
    st = cu_use_dev(dev);
    if (st != NXL_OK) {
        return st;
    }
    r = g_cu.cuMemAlloc_v2(&p, span);
    if (r != CUDA_SUCCESS) {
        return cu_fail(r, "cuMemAlloc");
    }
    if (p % NXL__CUDA_ALIGN == 0) {
        *ptr_p = (void *)(uintptr_t)p;
        return NXL_OK;
    }
    /* Rare: redo it larger and hand out an aligned pointer inside. */
    g_cu.cuMemFree_v2(p);
    ra = calloc(1, sizeof(*ra));
    if (ra == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "memkind cuda: out of memory");
    }
    r = g_cu.cuMemAlloc_v2(&ra->raw, span + NXL__CUDA_ALIGN);
    if (r != CUDA_SUCCESS) {
        free(ra);
        return cu_fail(r, "cuMemAlloc");
    }
    ra->user = (ra->raw + NXL__CUDA_ALIGN - 1) / NXL__CUDA_ALIGN *
               NXL__CUDA_ALIGN;
    pthread_mutex_lock(&g_cu.lock);
    ra->next = g_cu.realigned;
    g_cu.realigned = ra;
    pthread_mutex_unlock(&g_cu.lock);
    *ptr_p = (void *)(uintptr_t)ra->user;
    return NXL_OK;
}

/* cu_realigned_find returns (and with take, removes) the re-aligned record of user
 * pointer p (NULL when p came straight from the driver); with take false
 * it only looks. */
static nxl__cuda_realign_t *
cu_realigned_find(CUdeviceptr p, bool take)
{
    nxl__cuda_realign_t **pp, *ra = NULL;

    pthread_mutex_lock(&g_cu.lock);
    for (pp = &g_cu.realigned; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->user == p) {
            ra = *pp;
            if (take) {
                *pp = ra->next;
            }
            break;
        }
    }
    pthread_mutex_unlock(&g_cu.lock);
    return ra;
}

/* cuda_free releases memory from cuda_alloc on dev; a driver failure is
 * logged. Accepts NULL. Thread-safe. */
static void
cuda_free(int dev, void *ptr, size_t size)
{
    nxl__cuda_realign_t *ra;
    CUdeviceptr p = (CUdeviceptr)(uintptr_t)ptr;
    CUresult r;

    (void)size;
    if (ptr == NULL || !nxl__cuda_available()) {
        return;
    }
    if (cu_use_dev(dev) != NXL_OK) {
        nxl__warn("memkind cuda: free(%p): %s", ptr, nxl_last_error());
        return;
    }
    ra = cu_realigned_find(p, true);
    if (ra != NULL) {
        p = ra->raw;
        free(ra);
    }
    r = g_cu.cuMemFree_v2(p);
    if (r != CUDA_SUCCESS) {
        nxl__warn("memkind cuda: cuMemFree(%p): %s (CUresult %d)", ptr,
                  cu_errstr(r), r);
    }
}

/* cuda_copy copies len bytes in direction dir (unified addressing infers
 * it; dir picks which side names the device) and returns once they are in
 * place. NXL_OK or a driver error. Thread-safe. */
static nxl_status_t
cuda_copy(void *dst, const void *src, size_t len, nxl_copy_dir_t dir)
{
    nxl_status_t st = cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    if (len == 0) {
        return NXL_OK;
    }
    if (dst == NULL || src == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind cuda: copy of %zu bytes with a NULL pointer",
                         len);
    }
    if (dir == NXL_COPY_H2H) {
        memcpy(dst, src, len);
        return NXL_OK;
    }
    st = cu_use_ptr(dir == NXL_COPY_H2D ? dst : src);
    if (st != NXL_OK) {
        return st;
    }
    r = g_cu.cuMemcpy((CUdeviceptr)(uintptr_t)dst,
                      (CUdeviceptr)(uintptr_t)src, len);
    if (r != CUDA_SUCCESS) {
        return cu_fail(r, "cuMemcpy");
    }
    /* cuMemcpy may return before an H2D or D2D copy lands; wait for the
     * legacy default stream it ran on (our streams do not block on it). */
    r = g_cu.cuStreamSynchronize(NULL);
    if (r != CUDA_SUCCESS) {
        return cu_fail(r, "cuStreamSynchronize after cuMemcpy");
    }
    return NXL_OK;
}

/* cuda_stream_create makes a non-blocking stream on dev (owned by the
 * caller; cuda_stream_destroy). Thread-safe. */
static nxl_status_t
cuda_stream_create(int dev, nxl_stream_t **stream_p)
{
    struct nxl_stream *s;
    nxl_status_t st = cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    if (stream_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "memkind cuda: NULL stream_p");
    }
    st = cu_use_dev(dev);
    if (st != NXL_OK) {
        return st;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "memkind cuda: out of memory");
    }
    r = g_cu.cuStreamCreate(&s->s, CU_STREAM_NON_BLOCKING);
    if (r != CUDA_SUCCESS) {
        free(s);
        return cu_fail(r, "cuStreamCreate");
    }
    s->dev = dev;
    *stream_p = s;
    return NXL_OK;
}

/* cuda_stream_destroy waits for the stream's work, then destroys it; a
 * driver failure is logged. Accepts NULL. */
static void
cuda_stream_destroy(nxl_stream_t *s)
{
    CUresult r;

    if (s == NULL) {
        return;
    }
    if (cu_use_dev(s->dev) == NXL_OK) {
        r = g_cu.cuStreamSynchronize(s->s);
        if (r != CUDA_SUCCESS) {
            nxl__warn("memkind cuda: stream destroy: cuStreamSynchronize: "
                      "%s (CUresult %d)", cu_errstr(r), r);
        }
        r = g_cu.cuStreamDestroy_v2(s->s);
        if (r != CUDA_SUCCESS) {
            nxl__warn("memkind cuda: cuStreamDestroy: %s (CUresult %d)",
                      cu_errstr(r), r);
        }
    }
    free(s);
}

/* cuda_copy_async queues a copy on s (cuMemcpyAsync; buffers must stay
 * valid until an event recorded after it completes). A stream is used by
 * one thread at a time. */
static nxl_status_t
cuda_copy_async(void *dst, const void *src, size_t len, nxl_copy_dir_t dir,
                nxl_stream_t *s)
{
    nxl_status_t st = cu_ready();
    CUresult r;

    (void)dir;
    if (st != NXL_OK) {
        return st;
    }
    if (s == NULL || (len != 0 && (dst == NULL || src == NULL))) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind cuda: copy_async with a NULL %s",
                         s == NULL ? "stream" : "pointer");
    }
    if (len == 0) {
        return NXL_OK;
    }
    st = cu_use_dev(s->dev);
    if (st != NXL_OK) {
        return st;
    }
    r = g_cu.cuMemcpyAsync((CUdeviceptr)(uintptr_t)dst,
                           (CUdeviceptr)(uintptr_t)src, len, s->s);
    if (r != CUDA_SUCCESS) {
        return cu_fail(r, "cuMemcpyAsync");
    }
    return NXL_OK;
}

/* cu_gather_fn returns device dev's gather kernel, compiling the PTX on
 * first use (dev's context current); NULL when the driver lacks the
 * symbols, the kernel is switched off, or the compile failed once (warned
 * with the JIT log; never retried). Thread-safe. */
static CUfunction
cu_gather_fn(int dev)
{
    char log[1024] = "";
    int opts[2] = {CU_JIT_ERROR_LOG_BUFFER,
                   CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *vals[2] = {log, (void *)(uintptr_t)sizeof(log)};
    CUfunction f = NULL;
    CUmodule mod = NULL;
    CUresult r;

    if (g_cu.no_kernel || g_cu.mod_load == NULL || g_cu.get_fn == NULL ||
        g_cu.launch == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&g_cu.lock);
    if (g_cu.gather_state[dev] == 0) {
        r = g_cu.mod_load(&mod, nxl__gather_ptx, 2, opts, vals);
        if (r == CUDA_SUCCESS) {
            r = g_cu.get_fn(&f, mod, "nxl_gather");
        }
        if (r == CUDA_SUCCESS) {
            g_cu.gather[dev] = f;
            g_cu.gather_state[dev] = 1;
        } else {
            g_cu.gather_state[dev] = -1;
            nxl__warn("memkind cuda: the gather kernel did not load on "
                      "device %d (%s, CUresult %d)%s%s; batches go to "
                      "cuMemcpyBatchAsync",
                      dev, cu_errstr(r), r, log[0] ? ": " : "", log);
        }
    }
    f = g_cu.gather_state[dev] == 1 ? g_cu.gather[dev] : NULL;
    pthread_mutex_unlock(&g_cu.lock);
    return f;
}

/* cu_gather launches f over n pairs on s, NXL__GATHER_MAX per launch. */
static nxl_status_t
cu_gather(CUfunction f, void *const *dsts, const void *const *srcs,
          const size_t *lens, size_t n, nxl_stream_t *s)
{
    nxl__gather_args_t a;
    void *params[1] = {&a};
    size_t i = 0, k;
    CUresult r;

    while (i < n) {
        for (k = 0; k < NXL__GATHER_MAX && i + k < n; k++) {
            a.src[k] = (uint64_t)(uintptr_t)srcs[i + k];
            a.dst[k] = (uint64_t)(uintptr_t)dsts[i + k];
            a.len[k] = (uint64_t)lens[i + k];
        }
        a.n = k;
        r = g_cu.launch(f, (unsigned)k, 1, 1, NXL__GATHER_THREADS, 1, 1, 0,
                        s->s, params, NULL);
        if (r != CUDA_SUCCESS) {
            return cu_fail(r, "cuLaunchKernel (gather)");
        }
        i += k;
    }
    return NXL_OK;
}

/* cuda_copy_batch_async queues n copies on s: with NXL_COPY_BATCH_MAPPED
 * through the gather kernel (one launch per NXL__GATHER_MAX pairs, on the
 * device's SMs), else, or when the kernel cannot load, with one
 * cuMemcpyBatchAsync (source read in stream order). NOT_SUPPORTED when
 * neither is there. dir is implied by the pointers, as for copy_async. */
static nxl_status_t
cuda_copy_batch_async(void *const *dsts, const void *const *srcs,
                      const size_t *lens, size_t n, nxl_copy_dir_t dir,
                      unsigned flags, nxl_stream_t *s)
{
    CUfunction gather;
    CUmemcpyAttributes attr = {.srcAccessOrder =
                                   CU_MEMCPY_SRC_ACCESS_ORDER_STREAM};
    size_t attr_idx = 0, fail_idx = 0;
    nxl_status_t st = cu_ready();
    CUresult r;

    (void)dir;
    if (st != NXL_OK) {
        return st;
    }
    if (s == NULL || (n != 0 && (dsts == NULL || srcs == NULL ||
                                 lens == NULL))) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind cuda: copy_batch_async with a NULL %s",
                         s == NULL ? "stream" : "array");
    }
    if (n == 0) {
        return NXL_OK;
    }
    st = cu_use_dev(s->dev);
    if (st != NXL_OK) {
        return st;
    }
    if ((flags & NXL_COPY_BATCH_MAPPED) &&
        (gather = cu_gather_fn(s->dev)) != NULL) {
        return cu_gather(gather, dsts, srcs, lens, n, s);
    }
    if (g_cu.batch_v2 == NULL && g_cu.batch_v1 == NULL) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "memkind cuda: this driver has no "
                         "cuMemcpyBatchAsync (CUDA 12.8 or later)");
    }
    /* A pointer and a CUdeviceptr have the same size and representation
     * here (unified addressing on 64-bit hosts); the driver only reads
     * the arrays. */
    _Static_assert(sizeof(void *) == sizeof(CUdeviceptr),
                   "device pointers are host-pointer sized");
    if (g_cu.batch_v2 != NULL) {
        r = g_cu.batch_v2((CUdeviceptr *)(uintptr_t)dsts,
                          (CUdeviceptr *)(uintptr_t)srcs, (size_t *)lens, n,
                          &attr, &attr_idx, 1, s->s);
    } else {
        r = g_cu.batch_v1((CUdeviceptr *)(uintptr_t)dsts,
                          (CUdeviceptr *)(uintptr_t)srcs, (size_t *)lens, n,
                          &attr, &attr_idx, 1, &fail_idx, s->s);
    }
    if (r != CUDA_SUCCESS) {
        return cu_fail(r, "cuMemcpyBatchAsync");
    }
    return NXL_OK;
}

/* cuda_stream_sync waits for everything queued on s; returns the error of
 * failed work. */
static nxl_status_t
cuda_stream_sync(nxl_stream_t *s)
{
    nxl_status_t st = cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    if (s == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "memkind cuda: NULL stream");
    }
    st = cu_use_dev(s->dev);
    if (st != NXL_OK) {
        return st;
    }
    r = g_cu.cuStreamSynchronize(s->s);
    if (r != CUDA_SUCCESS) {
        return cu_fail(r, "cuStreamSynchronize");
    }
    return NXL_OK;
}

/* cuda_event_create makes an event handle (owned by the caller;
 * cuda_event_destroy). The driver event is made at the first record, in
 * that stream's context. */
static nxl_status_t
cuda_event_create(nxl_event_t **event_p)
{
    struct nxl_event *e;
    nxl_status_t st = cu_ready();

    if (st != NXL_OK) {
        return st;
    }
    if (event_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "memkind cuda: NULL event_p");
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "memkind cuda: out of memory");
    }
    e->dev = -1;
    *event_p = e;
    return NXL_OK;
}

/* cu_event_drop destroys e's driver event (logged on failure). The
 * driver frees a still-pending event once it completes. */
static void
cu_event_drop(struct nxl_event *e)
{
    CUresult r;

    if (e->ev == NULL) {
        return;
    }
    if (cu_use_dev(e->dev) == NXL_OK) {
        r = g_cu.cuEventDestroy_v2(e->ev);
        if (r != CUDA_SUCCESS) {
            nxl__warn("memkind cuda: cuEventDestroy: %s (CUresult %d)",
                      cu_errstr(r), r);
        }
    }
    e->ev = NULL;
    e->dev = -1;
}

/* cuda_event_destroy frees e. Accepts NULL. */
static void
cuda_event_destroy(nxl_event_t *e)
{
    if (e == NULL) {
        return;
    }
    cu_event_drop(e);
    free(e);
}

/* cuda_event_record marks the point s has reached (cuEventRecord),
 * creating or moving the driver event into s's context first. */
static nxl_status_t
cuda_event_record(nxl_event_t *e, nxl_stream_t *s)
{
    nxl_status_t st = cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    if (e == NULL || s == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind cuda: event_record with a NULL %s",
                         e == NULL ? "event" : "stream");
    }
    if (e->ev != NULL && e->dev != s->dev) {
        cu_event_drop(e);
    }
    st = cu_use_dev(s->dev);
    if (st != NXL_OK) {
        return st;
    }
    if (e->ev == NULL) {
        r = g_cu.cuEventCreate(&e->ev, CU_EVENT_DISABLE_TIMING);
        if (r != CUDA_SUCCESS) {
            e->ev = NULL;
            return cu_fail(r, "cuEventCreate");
        }
        e->dev = s->dev;
    }
    r = g_cu.cuEventRecord(e->ev, s->s);
    if (r != CUDA_SUCCESS) {
        return cu_fail(r, "cuEventRecord");
    }
    return NXL_OK;
}

/* cu_event_enter is the start of the event waits: the kind must run, e be
 * given, and, when e was recorded (*recorded_p), its context is made
 * current. */
static nxl_status_t
cu_event_enter(const struct nxl_event *e, bool *recorded_p)
{
    nxl_status_t st = cu_ready();

    *recorded_p = false;
    if (st != NXL_OK) {
        return st;
    }
    if (e == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "memkind cuda: NULL event");
    }
    if (e->ev == NULL) {
        return NXL_OK;
    }
    *recorded_p = true;
    return cu_use_dev(e->dev);
}

/* cuda_event_query: NXL_OK when the recorded point is done (or nothing
 * was recorded), NXL_IN_PROG for CUDA_ERROR_NOT_READY, else the error of
 * the failed work. */
static nxl_status_t
cuda_event_query(nxl_event_t *e)
{
    bool recorded;
    nxl_status_t st = cu_event_enter(e, &recorded);
    CUresult r;

    if (st != NXL_OK || !recorded) {
        return st;
    }
    r = g_cu.cuEventQuery(e->ev);
    if (r == CUDA_SUCCESS) {
        return NXL_OK;
    }
    if (r == CUDA_ERROR_NOT_READY) {
        return NXL_IN_PROG;
    }
    return cu_fail(r, "cuEventQuery");
}

/* cuda_event_sync waits for the recorded point; returns its error. */
static nxl_status_t
cuda_event_sync(nxl_event_t *e)
{
    bool recorded;
    nxl_status_t st = cu_event_enter(e, &recorded);
    CUresult r;

    if (st != NXL_OK || !recorded) {
        return st;
    }
    r = g_cu.cuEventSynchronize(e->ev);
    if (r != CUDA_SUCCESS) {
        return cu_fail(r, "cuEventSynchronize");
    }
    return NXL_OK;
}

/* cuda_ipc_get exports the allocation at ptr (a pointer from cuda_alloc)
 * as a CUipcMemHandle in handle_p. */
static nxl_status_t
cuda_ipc_get(void *ptr, nxl_ipc_handle_t *handle_p)
{
    CUipcMemHandle h;
    nxl_status_t st = cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    if (ptr == NULL || handle_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind cuda: ipc_get with a NULL argument");
    }
    if (cu_realigned_find((CUdeviceptr)(uintptr_t)ptr, false) != NULL) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "memkind cuda: %p was re-aligned inside a larger "
                         "driver allocation and cannot be exported", ptr);
    }
    st = cu_use_ptr(ptr);
    if (st != NXL_OK) {
        return st;
    }
    memset(&h, 0, sizeof(h));
    r = g_cu.cuIpcGetMemHandle(&h, (CUdeviceptr)(uintptr_t)ptr);
    if (r != CUDA_SUCCESS) {
        return cu_fail(r, "cuIpcGetMemHandle");
    }
    memcpy(handle_p->bytes, &h, sizeof(h));
    return NXL_OK;
}

/* cuda_ipc_open maps a handle exported by another process on device dev;
 * *ptr_p is released with cuda_ipc_close. */
static nxl_status_t
cuda_ipc_open(int dev, const nxl_ipc_handle_t *handle, void **ptr_p)
{
    CUipcMemHandle h;
    CUdeviceptr p = 0;
    nxl_status_t st = cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    if (handle == NULL || ptr_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind cuda: ipc_open with a NULL argument");
    }
    st = cu_use_dev(dev);
    if (st != NXL_OK) {
        return st;
    }
    memcpy(&h, handle->bytes, sizeof(h));
    r = g_cu.cuIpcOpenMemHandle_v2(&p, h, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS);
    if (r != CUDA_SUCCESS) {
        return cu_fail(r, "cuIpcOpenMemHandle");
    }
    *ptr_p = (void *)(uintptr_t)p;
    return NXL_OK;
}

/* cuda_ipc_close unmaps memory from cuda_ipc_open. */
static nxl_status_t
cuda_ipc_close(void *ptr)
{
    nxl_status_t st = cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    if (ptr == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "memkind cuda: NULL ptr");
    }
    st = cu_use_ptr(ptr);
    if (st != NXL_OK) {
        return st;
    }
    r = g_cu.cuIpcCloseMemHandle((CUdeviceptr)(uintptr_t)ptr);
    if (r != CUDA_SUCCESS) {
        return cu_fail(r, "cuIpcCloseMemHandle");
    }
    return NXL_OK;
}

/* cuda_mem_range finds the driver allocation holding ptr
 * (cuMemGetAddressRange): memory from cuda_alloc (for a re-aligned one,
 * the driver's larger allocation) or a mapping from cuda_ipc_open.
 * NXL_ERR_NOT_FOUND when ptr is not device memory. Thread-safe. */
static nxl_status_t
cuda_mem_range(const void *ptr, void **base_p, size_t *size_p)
{
    CUdeviceptr base = 0;
    size_t size = 0;
    nxl_status_t st = cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    if (ptr == NULL || base_p == NULL || size_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind cuda: mem_range with a NULL argument");
    }
    st = cu_use_ptr(ptr);
    if (st != NXL_OK) {
        return st;
    }
    r = g_cu.cuMemGetAddressRange_v2(&base, &size,
                                     (CUdeviceptr)(uintptr_t)ptr);
    if (r == CUDA_ERROR_NOT_FOUND || r == CUDA_ERROR_INVALID_VALUE) {
        return nxl__fail(NXL_ERR_NOT_FOUND,
                         "memkind cuda: %p is not in a device allocation: %s "
                         "(CUresult %d)",
                         ptr, cu_errstr(r), r);
    }
    if (r != CUDA_SUCCESS) {
        return cu_fail(r, "cuMemGetAddressRange");
    }
    *base_p = (void *)(uintptr_t)base;
    *size_p = size;
    return NXL_OK;
}

/* nxl__cuda_host_alloc allocates portable page-locked host memory. */
nxl_status_t
nxl__cuda_host_alloc(size_t size, void **ptr_p)
{
    void *p = NULL;
    nxl_status_t st = cu_ready();
    CUresult r;

    if (st != NXL_OK) {
        return st;
    }
    st = cu_use_dev(0);
    if (st != NXL_OK) {
        return st;
    }
    r = g_cu.cuMemHostAlloc(&p, size, CU_MEMHOSTALLOC_PORTABLE);
    if (r != CUDA_SUCCESS) {
        return cu_fail(r, "cuMemHostAlloc");
    }
    *ptr_p = p;
    return NXL_OK;
}

/* nxl__cuda_host_free releases memory from nxl__cuda_host_alloc. */
void
nxl__cuda_host_free(void *ptr)
{
    CUresult r;

    if (ptr == NULL || !nxl__cuda_available()) {
        return;
    }
    if (cu_use_dev(0) != NXL_OK) {
        nxl__warn("memkind pinned: free(%p): %s", ptr, nxl_last_error());
        return;
    }
    r = g_cu.cuMemFreeHost(ptr);
    if (r != CUDA_SUCCESS) {
        nxl__warn("memkind pinned: cuMemFreeHost(%p): %s (CUresult %d)", ptr,
                  cu_errstr(r), r);
    }
}

static const nxl_memkind_ops_t nxl__cuda_ops = {
    .abi_version = NXL_MEMKIND_ABI_VERSION,
    .size = sizeof(nxl_memkind_ops_t),
    .name = "cuda",
    .type = NXL_MEMKIND_DEVICE,
    .mem = NXL_VRAM,
    .probe = cuda_probe,
    .device_count = cuda_device_count,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .copy = cuda_copy,
    .stream_create = cuda_stream_create,
    .stream_destroy = cuda_stream_destroy,
    .copy_async = cuda_copy_async,
    .stream_sync = cuda_stream_sync,
    .event_create = cuda_event_create,
    .event_destroy = cuda_event_destroy,
    .event_record = cuda_event_record,
    .event_query = cuda_event_query,
    .event_sync = cuda_event_sync,
    .ipc_get = cuda_ipc_get,
    .ipc_open = cuda_ipc_open,
    .ipc_close = cuda_ipc_close,
    .mem_range = cuda_mem_range,
    .copy_batch_async = cuda_copy_batch_async,
};

/* nxl_memkind_cuda returns the CUDA device kind (static; never NULL). Its
 * ops report NXL_ERR_NOT_SUPPORTED where CUDA cannot run. Thread-safe. */
const nxl_memkind_ops_t *
nxl_memkind_cuda(void)
{
    return &nxl__cuda_ops;
}
