/*
 * cuda_gather.c - batched device copies: the gather kernel (PTX, compiled
 * by the driver at first use, one launch per NXL__GATHER_MAX pairs) and
 * cuMemcpyBatchAsync, behind the CUDA kind's copy_batch_async.
 */
#include "cuda_drv.h"

#include <stdint.h>

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

/* cu_gather_fn returns device dev's gather kernel, compiling the PTX on
 * first use (dev's context current); NULL when the driver lacks the
 * symbols, the kernel is switched off, or the compile failed once (warned
 * with the JIT log; never retried). Thread-safe. */
static CUfunction
cu_gather_fn(int dev)
{
    char log[1024] = "";
    int opts[2] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *vals[2] = {log, (void *)(uintptr_t)sizeof(log)};
    CUfunction f = NULL;
    CUmodule mod = NULL;
    CUresult r;

    if (nxl__cu.no_kernel || nxl__cu.mod_load == NULL ||
        nxl__cu.get_fn == NULL || nxl__cu.launch == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&nxl__cu.lock);
    if (nxl__cu.gather_state[dev] == 0) {
        r = nxl__cu.mod_load(&mod, nxl__gather_ptx, 2, opts, vals);
        if (r == CUDA_SUCCESS) {
            r = nxl__cu.get_fn(&f, mod, "nxl_gather");
        }
        if (r == CUDA_SUCCESS) {
            nxl__cu.gather[dev] = f;
            nxl__cu.gather_state[dev] = 1;
        } else {
            nxl__cu.gather_state[dev] = -1;
            nxl__warn("memkind cuda: the gather kernel did not load on "
                      "device %d (%s, CUresult %d)%s%s; batches go to "
                      "cuMemcpyBatchAsync",
                      dev, nxl__cu_errstr(r), r, log[0] ? ": " : "", log);
        }
    }
    f = nxl__cu.gather_state[dev] == 1 ? nxl__cu.gather[dev] : NULL;
    pthread_mutex_unlock(&nxl__cu.lock);
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
        r = nxl__cu.launch(f, (unsigned)k, 1, 1, NXL__GATHER_THREADS, 1, 1, 0,
                           s->s, params, NULL);
        if (r != CUDA_SUCCESS) {
            return nxl__cu_fail(r, "cuLaunchKernel (gather)");
        }
        i += k;
    }
    return NXL_OK;
}

/* nxl__cuda_copy_batch_async queues n copies on s: with NXL_COPY_BATCH_MAPPED
 * through the gather kernel (one launch per NXL__GATHER_MAX pairs, on the
 * device's SMs), else, or when the kernel cannot load, with one
 * cuMemcpyBatchAsync (source read in stream order). NOT_SUPPORTED when
 * neither is there. dir is implied by the pointers, as for copy_async. */
nxl_status_t
nxl__cuda_copy_batch_async(void *const *dsts, const void *const *srcs,
                           const size_t *lens, size_t n, nxl_copy_dir_t dir,
                           unsigned flags, nxl_stream_t *s)
{
    CUfunction gather;
    CUmemcpyAttributes attr = {.srcAccessOrder =
                                   CU_MEMCPY_SRC_ACCESS_ORDER_STREAM};
    size_t attr_idx = 0, fail_idx = 0;
    nxl_status_t st = nxl__cu_ready();
    CUresult r;

    (void)dir;
    if (st != NXL_OK) {
        return st;
    }
    if (s == NULL ||
        (n != 0 && (dsts == NULL || srcs == NULL || lens == NULL))) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "memkind cuda: copy_batch_async with a NULL %s",
                         s == NULL ? "stream" : "array");
    }
    if (n == 0) {
        return NXL_OK;
    }
    st = nxl__cu_use_dev(s->dev);
    if (st != NXL_OK) {
        return st;
    }
    if ((flags & NXL_COPY_BATCH_MAPPED) &&
        (gather = cu_gather_fn(s->dev)) != NULL) {
        return cu_gather(gather, dsts, srcs, lens, n, s);
    }
    if (nxl__cu.batch_v2 == NULL && nxl__cu.batch_v1 == NULL) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "memkind cuda: this driver has no "
                         "cuMemcpyBatchAsync (CUDA 12.8 or later)");
    }
    /* A pointer and a CUdeviceptr have the same size and representation
     * here (unified addressing on 64-bit hosts); the driver only reads
     * the arrays. */
    _Static_assert(sizeof(void *) == sizeof(CUdeviceptr),
                   "device pointers are host-pointer sized");
    if (nxl__cu.batch_v2 != NULL) {
        r = nxl__cu.batch_v2((CUdeviceptr *)(uintptr_t)dsts,
                             (CUdeviceptr *)(uintptr_t)srcs, (size_t *)lens, n,
                             &attr, &attr_idx, 1, s->s);
    } else {
        r = nxl__cu.batch_v1((CUdeviceptr *)(uintptr_t)dsts,
                             (CUdeviceptr *)(uintptr_t)srcs, (size_t *)lens, n,
                             &attr, &attr_idx, 1, &fail_idx, s->s);
    }
    if (r != CUDA_SUCCESS) {
        return nxl__cu_fail(r, "cuMemcpyBatchAsync");
    }
    return NXL_OK;
}
