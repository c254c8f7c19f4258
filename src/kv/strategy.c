/*
 * strategy.c - transfer strategy selection (Dynamo's strategy.rs): which
 * mechanism moves blocks from one storage kind to another, directly or in
 * two hops through a pinned bounce buffer.
 *
 * Everything here is a pure function of its arguments: no allocation and
 * no state besides the thread's last-error message on failure.
 */
#include "kv.h"

/* nxl_kv_strategy_name returns Dynamo's static name of s ("Memcpy",
 * "NixlReadFlipped", ...; "Invalid" for NXL_KV_INVALID and unknown
 * values). Thread-safe. */
NXL_API const char *
nxl_kv_strategy_name(nxl_kv_strategy_t s)
{
    switch (s) {
    case NXL_KV_MEMCPY:
        return "Memcpy";
    case NXL_KV_CUDA_ASYNC_H2D:
        return "CudaAsyncH2D";
    case NXL_KV_CUDA_ASYNC_D2H:
        return "CudaAsyncD2H";
    case NXL_KV_CUDA_ASYNC_D2D:
        return "CudaAsyncD2D";
    case NXL_KV_CUDA_BLOCKING_H2D:
        return "CudaBlockingH2D";
    case NXL_KV_CUDA_BLOCKING_D2H:
        return "CudaBlockingD2H";
    case NXL_KV_NIXL_READ:
        return "NixlRead";
    case NXL_KV_NIXL_WRITE:
        return "NixlWrite";
    case NXL_KV_NIXL_WRITE_FLIPPED:
        return "NixlWriteFlipped";
    case NXL_KV_NIXL_READ_FLIPPED:
        return "NixlReadFlipped";
    case NXL_KV_INVALID:
        break;
    }
    return "Invalid";
}

/* direct makes the plan Direct(s). */
static nxl_kv_plan_t
direct(nxl_kv_strategy_t s)
{
    return (nxl_kv_plan_t){.two_hop = 0,
                           .first = s,
                           .bounce = NXL_KV_SYSTEM,
                           .second = NXL_KV_INVALID};
}

/* two_hop makes the plan TwoHop(first -> Pinned -> second). */
static nxl_kv_plan_t
two_hop(nxl_kv_strategy_t first, nxl_kv_strategy_t second)
{
    return (nxl_kv_plan_t){.two_hop = 1,
                           .first = first,
                           .bounce = NXL_KV_PINNED,
                           .second = second};
}

/* is_host: System or Pinned. */
static int
is_host(nxl_kv_kind_t k)
{
    return k == NXL_KV_SYSTEM || k == NXL_KV_PINNED;
}

/* check_kind fails with NXL_ERR_INVALID_PARAM for a value outside the
 * storage kinds. */
static nxl_status_t
check_kind(nxl_kv_kind_t k, const char *side)
{
    if (k == NXL_KV_SYSTEM || k == NXL_KV_PINNED || k == NXL_KV_DEVICE ||
        k == NXL_KV_DISK) {
        return NXL_OK;
    }
    return nxl__fail(NXL_ERR_INVALID_PARAM,
                     "kv strategy: unknown %s storage kind %d", side, (int)k);
}

/* select_local is the local -> local table (Dynamo v2, System <-> Device
 * by blocking copies). */
static nxl_kv_plan_t
select_local(nxl_kv_kind_t src, nxl_kv_kind_t dst, const nxl_kv_caps_t *caps)
{
    switch (src) {
    case NXL_KV_SYSTEM:
    case NXL_KV_PINNED:
        if (is_host(dst)) {
            return direct(NXL_KV_MEMCPY);
        }
        if (dst == NXL_KV_DEVICE) {
            return direct(src == NXL_KV_SYSTEM ? NXL_KV_CUDA_BLOCKING_H2D
                                               : NXL_KV_CUDA_ASYNC_H2D);
        }
        return direct(NXL_KV_NIXL_WRITE); /* -> Disk */
    case NXL_KV_DEVICE:
        if (dst == NXL_KV_SYSTEM) {
            return direct(NXL_KV_CUDA_BLOCKING_D2H);
        }
        if (dst == NXL_KV_PINNED) {
            return direct(NXL_KV_CUDA_ASYNC_D2H);
        }
        if (dst == NXL_KV_DEVICE) {
            return direct(NXL_KV_CUDA_ASYNC_D2D);
        }
        return caps->allow_gds
                   ? direct(NXL_KV_NIXL_WRITE)
                   : two_hop(NXL_KV_CUDA_ASYNC_D2H, NXL_KV_NIXL_WRITE);
    case NXL_KV_DISK:
        break;
    }
    /* Disk -> ... */
    if (is_host(dst)) {
        return direct(NXL_KV_NIXL_READ_FLIPPED);
    }
    if (dst == NXL_KV_DEVICE) {
        return caps->allow_gds
                   ? direct(NXL_KV_NIXL_READ)
                   : two_hop(NXL_KV_NIXL_READ_FLIPPED, NXL_KV_CUDA_ASYNC_H2D);
    }
    /* NIXL has no direct file <-> file path. */
    return two_hop(NXL_KV_NIXL_READ_FLIPPED, NXL_KV_NIXL_WRITE);
}

/* select_legacy_remote is Dynamo's select_remote_strategy (dst remote),
 * reproduced as its unit tests expect, Disk's literal first hop included. */
static nxl_kv_plan_t
select_legacy_remote(nxl_kv_kind_t src, const nxl_kv_caps_t *caps)
{
    switch (src) {
    case NXL_KV_SYSTEM:
    case NXL_KV_PINNED:
        break;
    case NXL_KV_DEVICE:
        return caps->allow_gpu_rdma
                   ? direct(NXL_KV_NIXL_WRITE)
                   : two_hop(NXL_KV_CUDA_ASYNC_D2H, NXL_KV_NIXL_WRITE);
    case NXL_KV_DISK:
        return two_hop(NXL_KV_NIXL_WRITE, NXL_KV_NIXL_WRITE);
    }
    return direct(NXL_KV_NIXL_WRITE);
}

/* check_args checks the arguments both selectors take (plan_p, the two
 * kinds) and points *caps_p at the defaults when it is NULL. */
static nxl_status_t
check_args(nxl_kv_kind_t src, nxl_kv_kind_t dst, const nxl_kv_caps_t **caps_p,
           const nxl_kv_plan_t *plan_p)
{
    static const nxl_kv_caps_t none = {0, 0};
    nxl_status_t st;

    if (plan_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv strategy: NULL argument");
    }
    st = check_kind(src, "source");
    if (st == NXL_OK) {
        st = check_kind(dst, "destination");
    }
    if (st == NXL_OK && *caps_p == NULL) {
        *caps_p = &none;
    }
    return st;
}

/* nxl_kv_select_direct is Dynamo's select_direct_strategy: the local table
 * (dst_is_remote 0) or the legacy remote table (1). caps NULL = defaults
 * (no GDS, no GPU RDMA). Writes *plan_p and returns NXL_OK, or
 * NXL_ERR_INVALID_PARAM for an unknown kind or NULL plan_p. Thread-safe. */
NXL_API nxl_status_t
nxl_kv_select_direct(nxl_kv_kind_t src, nxl_kv_kind_t dst, int dst_is_remote,
                     const nxl_kv_caps_t *caps, nxl_kv_plan_t *plan_p)
{
    nxl_status_t st = check_args(src, dst, &caps, plan_p);

    if (st != NXL_OK) {
        return st;
    }
    *plan_p = dst_is_remote ? select_legacy_remote(src, caps)
                            : select_local(src, dst, caps);
    return NXL_OK;
}

/* nxl_kv_select is Dynamo's select_strategy: both remote -> error; both
 * local -> the local table; one remote -> v2's production rules (no Disk,
 * Device only with GPU RDMA; NixlWrite pushing from a local src,
 * NixlReadFlipped pulling into a local dst). caps NULL = defaults. Writes
 * *plan_p and returns NXL_OK, NXL_ERR_INVALID_PARAM (both remote, unknown
 * kind) or NXL_ERR_NOT_SUPPORTED (disk over NIXL, GPU RDMA disabled) with
 * Dynamo's message. Thread-safe. */
NXL_API nxl_status_t
nxl_kv_select(nxl_kv_kind_t src, int src_local, nxl_kv_kind_t dst,
              int dst_local, const nxl_kv_caps_t *caps, nxl_kv_plan_t *plan_p)
{
    nxl_status_t st = check_args(src, dst, &caps, plan_p);

    if (st != NXL_OK) {
        return st;
    }
    if (!src_local && !dst_local) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Both src and dst are remote - this is not "
                         "supported.");
    }
    if (src_local && dst_local) {
        *plan_p = select_local(src, dst, caps);
        return NXL_OK;
    }
    if (src == NXL_KV_DISK || dst == NXL_KV_DISK) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "Neither local nor remote disk transfers are "
                         "supported over NIXL at this time.");
    }
    if (!caps->allow_gpu_rdma &&
        (src == NXL_KV_DEVICE || dst == NXL_KV_DEVICE)) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "GPU RDMA is disabled - this transfer requires GPU "
                         "RDMA.");
    }
    *plan_p = direct(src_local ? NXL_KV_NIXL_WRITE : NXL_KV_NIXL_READ_FLIPPED);
    return NXL_OK;
}
