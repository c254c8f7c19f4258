/*
 * nxl_kv.h - the KV transfer layer: Dynamo's KV block manager transfer
 * stack (dynamo_memory::nixl and block_manager's transfer code) in C, on the
 * agent API.
 *
 * Pieces, in the order a worker uses them:
 *   config     backends to create, from code or DYN_KVBM_NIXL_BACKEND_* env
 *   agent      an nxl agent that remembers which backends it created
 *   storage    System / Pinned / Device(n) / Disk(fd) memory, registered
 *              with the agent; deregistered before it is freed
 *   layout     KV blocks laid over storage: fully contiguous or layer
 *              separate; addressing, and JSON wire forms (v1, v2) that a
 *              Dynamo peer reads
 *   strategy   which mechanism moves src -> dst (a pure function)
 *   context    an executor with its completion poller: memcpy, device
 *              copies, NXL READ/WRITE (and flipped), two-hop via a pinned
 *              bounce buffer
 *   tp         descriptor builders for heterogeneous tensor parallelism
 *   fill       fill patterns and checksums for tests and verification
 *
 * Experimental parts: the strategy tables (nxl_kv_select*), the boolean
 * parser, the UCX diagnostics and fill/checksum exist for Dynamo's test
 * oracles and for tools; they may change or go. They are declared only
 * when NXL_KV_EXPERIMENTAL is defined before this header is included.
 *
 * Error texts follow Dynamo's where its tests check them (see
 * docs/kv-layout.md and reference/dynamo-components.md). Every call returns
 * an nxl_status_t and leaves the text in nxl_last_error().
 *
 * Ownership: objects returned through *_p belong to the caller and go back
 * through their *_destroy. Thread-safety: config, layout and storage objects
 * are not thread-safe for writing but may be read from several threads;
 * nxl_kv_agent_t follows its agent's sync mode; nxl_kv_ctx_t calls are
 * thread-safe.
 */
#ifndef NXL_NXL_KV_H
#define NXL_NXL_KV_H

#include <nxl/nxl.h>
#include <nxl/nxl_memkind.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ===================================================================== */
/* Backend config (Dynamo's NixlBackendConfig)                            */
/* ===================================================================== */

typedef struct nxl_kv_config nxl_kv_config_t;

/* nxl_kv_config_create makes an empty config (no backends). */
NXL_API nxl_status_t nxl_kv_config_create(nxl_kv_config_t **cfg_p);

/* nxl_kv_config_destroy frees cfg. Accepts NULL. */
NXL_API void nxl_kv_config_destroy(nxl_kv_config_t *cfg);

/* nxl_kv_config_add_backend enables backend name (stored uppercase) with
 * no params; adding it again keeps its params. */
NXL_API nxl_status_t nxl_kv_config_add_backend(nxl_kv_config_t *cfg,
                                               const char *name);

/* nxl_kv_config_set_param enables backend name and sets one of its params
 * (key kept as given; a later set of the same key replaces it). */
NXL_API nxl_status_t nxl_kv_config_set_param(nxl_kv_config_t *cfg,
                                             const char *name, const char *key,
                                             const char *value);

/* nxl_kv_config_merge copies every backend and param of src into dst; src
 * wins where both set the same key. */
NXL_API nxl_status_t nxl_kv_config_merge(nxl_kv_config_t *dst,
                                         const nxl_kv_config_t *src);

/* nxl_kv_config_has_backend: 1 if name (case-insensitive) is enabled. */
NXL_API int nxl_kv_config_has_backend(const nxl_kv_config_t *cfg,
                                      const char *name);

/* nxl_kv_config_count returns the number of enabled backends. */
NXL_API size_t nxl_kv_config_count(const nxl_kv_config_t *cfg);

/* nxl_kv_config_backend returns backend i (0 <= i < count, sorted by name):
 * its uppercase name and params (owned by cfg, valid until cfg changes).
 * Returns NXL_OK or NXL_ERR_INVALID_PARAM. */
NXL_API nxl_status_t nxl_kv_config_backend(const nxl_kv_config_t *cfg, size_t i,
                                           const char **name_p,
                                           nxl_params_t *params_p);

#ifdef NXL_KV_EXPERIMENTAL
/* nxl_kv_parse_bool parses Dynamo's boolean grammar: case-insensitive
 * 1/true/on/yes and 0/false/off/no. Returns NXL_OK or
 * NXL_ERR_INVALID_PARAM ("Invalid boolean value: '<s>'. Expected one of:
 * true/false, 1/0, on/off, yes/no"). */
NXL_API nxl_status_t nxl_kv_parse_bool(const char *s, int *value_p);
#endif /* NXL_KV_EXPERIMENTAL */

/* nxl_kv_config_from_env builds a config from envp (NULL = environ) with
 * Dynamo v2 semantics: DYN_KVBM_NIXL_BACKEND_<NAME>=<bool> enables or
 * skips <NAME>; DYN_KVBM_NIXL_BACKEND_<NAME>_<PARAM>=<v> sets param
 * lowercase(<PARAM>) of <NAME> and enables it unless <NAME>=false, where
 * <NAME> is the longest known backend name prefix (UCX, GDS_MT, GDS, POSIX,
 * OBJ, LIBFABRIC, SHM, TCP) else the part before the first '_'; when
 * nothing ends up enabled, UCX is enabled. A bad boolean fails with
 * NXL_ERR_INVALID_PARAM: "Invalid value for <KEY>: Invalid boolean value:
 * '<v>'. Expected one of: true/false, 1/0, on/off, yes/no". */
NXL_API nxl_status_t nxl_kv_config_from_env(char *const *envp,
                                            nxl_kv_config_t **cfg_p);

/* ===================================================================== */
/* Agent wrapper (Dynamo's NixlAgent)                                     */
/* ===================================================================== */

typedef struct nxl_kv_agent nxl_kv_agent_t;

/* nxl_kv_agent_create creates an agent called name with no backends; acfg
 * may be NULL for nxl_agent_config_init's defaults. */
NXL_API nxl_status_t nxl_kv_agent_create(const char *name,
                                         const nxl_agent_config_t *acfg,
                                         nxl_kv_agent_t **a_p);

/* nxl_kv_agent_destroy destroys the agent and everything it owns. Storage
 * registered with it must be destroyed first. Accepts NULL. */
NXL_API void nxl_kv_agent_destroy(nxl_kv_agent_t *a);

/* nxl_kv_agent_add_backend creates backend name (uppercased) with the
 * plugin defaults overwritten by params (may be NULL). Already present ->
 * NXL_OK. Errors: NXL_ERR_NOT_FOUND "No <NAME> plugin found"; the
 * backend's status with "Failed to create nixl backend: <reason>";
 * NXL_ERR_INVALID_PARAM "Failed to set param: <key>" for an unknown key. */
NXL_API nxl_status_t nxl_kv_agent_add_backend(nxl_kv_agent_t *a,
                                              const char *name,
                                              const nxl_params_t *params);

/* nxl_kv_agent_with_backends (strict, Dynamo's with_backends /
 * require_backends): creates an agent and every backend of names; if any
 * fails, destroys it and fails with "Failed to initialize required
 * backends: [B1: reason, B2: reason]". n may be 0. */
NXL_API nxl_status_t nxl_kv_agent_with_backends(const char *name,
                                                const char *const *names,
                                                size_t n, nxl_kv_agent_t **a_p);

/* nxl_kv_agent_new_with_backends (lenient): failures are logged and
 * tolerated; fails only when none succeeded: "Failed to initialize any
 * NIXL backends from ["b1", "B2"]" (names as given, quoted as Rust's {:?}
 * prints them). */
NXL_API nxl_status_t nxl_kv_agent_new_with_backends(const char *name,
                                                    const char *const *names,
                                                    size_t n,
                                                    nxl_kv_agent_t **a_p);

/* nxl_kv_agent_from_config creates the backends of cfg with their params,
 * strict (every one must succeed) or lenient (at least one). */
NXL_API nxl_status_t nxl_kv_agent_from_config(const char *name,
                                              const nxl_kv_config_t *cfg,
                                              int strict, nxl_kv_agent_t **a_p);

/* nxl_kv_agent_has_backend: 1 if backend name (case-insensitive) was
 * created on a. */
NXL_API int nxl_kv_agent_has_backend(const nxl_kv_agent_t *a, const char *name);

/* nxl_kv_agent_require_backend returns NXL_OK if name was created, else
 * NXL_ERR_NOT_FOUND "Operation requires <NAME> backend, but it was not
 * initialized. Available backends: {"A", "B"}". */
NXL_API nxl_status_t nxl_kv_agent_require_backend(const nxl_kv_agent_t *a,
                                                  const char *name);

/* nxl_kv_agent_backend_count / nxl_kv_agent_backend_name: the created
 * backends, uppercase, sorted; names live as long as a. */
NXL_API size_t nxl_kv_agent_backend_count(const nxl_kv_agent_t *a);
NXL_API const char *nxl_kv_agent_backend_name(const nxl_kv_agent_t *a,
                                              size_t i);

#ifdef NXL_KV_EXPERIMENTAL
/* nxl_kv_ucx_diagnostics writes, into buf (cap bytes, NUL-terminated,
 * truncated when short), Dynamo's UCX_NET_DEVICES diagnostics: the
 * current UCX_NET_DEVICES / UCX_TLS / UCX_IB_ADDR_TYPE, the ACTIVE RDMA
 * ports from /sys/class/infiniband in natural order, and a recommended
 * UCX_NET_DEVICES (the ports under the same PCIe switch as an NVIDIA GPU
 * when that is a strict subset, else all), or "No active RDMA ports".
 * nxl_kv_agent_add_backend logs it when UCX fails to start. Returns the
 * length written. Thread-safe. */
NXL_API size_t nxl_kv_ucx_diagnostics(char *buf, size_t cap);
#endif /* NXL_KV_EXPERIMENTAL */

/* nxl_kv_agent_raw returns the underlying agent (owned by a). */
NXL_API nxl_agent_t *nxl_kv_agent_raw(const nxl_kv_agent_t *a);

/* nxl_kv_agent_name returns the agent's name (owned by a). */
NXL_API const char *nxl_kv_agent_name(const nxl_kv_agent_t *a);

/* ===================================================================== */
/* Storage (Dynamo's StorageKind, NixlRegistered)                         */
/* ===================================================================== */

/* Where memory lives. */
typedef enum nxl_kv_kind {
    NXL_KV_SYSTEM = 0, /* malloc'd host memory -> DRAM, dev 0 */
    NXL_KV_PINNED = 1, /* page-locked host memory -> DRAM, dev 0 */
    NXL_KV_DEVICE = 2, /* device memory -> VRAM, dev = ordinal */
    NXL_KV_DISK = 3    /* a file -> FILE, dev = fd, addr = offset */
} nxl_kv_kind_t;

/* nxl_kv_loc_t: a storage kind with its index (device ordinal for
 * DEVICE, file descriptor for DISK, 0 otherwise). */
typedef struct nxl_kv_loc {
    nxl_kv_kind_t kind;
    uint64_t index;
} nxl_kv_loc_t;

/* nxl_kv_kind_name returns "System", "Pinned", "Device" or "Disk". */
NXL_API const char *nxl_kv_kind_name(nxl_kv_kind_t kind);

/* nxl_kv_desc_t: what registration needs (Dynamo's NixlDescriptor). */
typedef struct nxl_kv_desc {
    uint64_t addr;
    uint64_t size;
    nxl_mem_t mem;
    uint64_t dev_id;
} nxl_kv_desc_t;

typedef struct nxl_kv_storage nxl_kv_storage_t;

/* nxl_kv_storage_alloc allocates size bytes of kind loc.kind (SYSTEM,
 * PINNED, DEVICE with loc.index as ordinal) through the memory kinds.
 * DISK is refused here (use nxl_kv_storage_disk). Device storage fails
 * with NXL_ERR_NOT_SUPPORTED where the device kind cannot run. */
NXL_API nxl_status_t nxl_kv_storage_alloc(nxl_kv_loc_t loc, size_t size,
                                          nxl_kv_storage_t **s_p);

/* nxl_kv_storage_disk creates a size-byte file in dir (NULL = $TMPDIR or
 * /tmp), opened O_RDWR (plus O_DIRECT when direct), unlinked at destroy.
 * loc.index of the result is the fd. */
NXL_API nxl_status_t nxl_kv_storage_disk(const char *dir, size_t size,
                                         int direct, nxl_kv_storage_t **s_p);

/* nxl_kv_storage_wrap describes memory the caller owns (addr; for DISK,
 * loc.index is the fd and addr the file offset). Destroy does not free
 * it. */
NXL_API nxl_status_t nxl_kv_storage_wrap(nxl_kv_loc_t loc, uint64_t addr,
                                         size_t size, nxl_kv_storage_t **s_p);

/* nxl_kv_storage_destroy deregisters s (if registered) and then frees its
 * memory (if owned). Accepts NULL. */
NXL_API void nxl_kv_storage_destroy(nxl_kv_storage_t *s);

/* Accessors. */
NXL_API nxl_kv_loc_t nxl_kv_storage_loc(const nxl_kv_storage_t *s);
NXL_API void *nxl_kv_storage_ptr(const nxl_kv_storage_t *s); /* NULL: DISK */
NXL_API uint64_t nxl_kv_storage_addr(const nxl_kv_storage_t *s);
NXL_API size_t nxl_kv_storage_size(const nxl_kv_storage_t *s);

/* nxl_kv_storage_desc fills *d (mem type and dev id as the storage kind
 * table of docs/kv-layout.md). */
NXL_API void nxl_kv_storage_desc(const nxl_kv_storage_t *s, nxl_kv_desc_t *d);

/* nxl_kv_storage_register registers s with a's agent. Already registered
 * (with any agent) -> NXL_OK without a new registration. On failure s is
 * unchanged and unregistered (the caller keeps it), and the error of the
 * agent is returned. DISK storage whose file was unlinked fails with
 * "Disk storage has already been unlinked. GDS registration will fail." */
NXL_API nxl_status_t nxl_kv_storage_register(nxl_kv_storage_t *s,
                                             nxl_kv_agent_t *a);

/* nxl_kv_storage_is_registered: 1 if s holds a registration. */
NXL_API int nxl_kv_storage_is_registered(const nxl_kv_storage_t *s);

/* nxl_kv_storage_deregister drops s's registration (NXL_OK if none). */
NXL_API nxl_status_t nxl_kv_storage_deregister(nxl_kv_storage_t *s);

/* ===================================================================== */
/* Layouts                                                                */
/* ===================================================================== */

/* nxl_kv_layout_config_t: Dynamo's LayoutConfig. Region (page) size
 * R = page_size * inner_dim * dtype_width_bytes. */
typedef struct nxl_kv_layout_config {
    size_t num_blocks;        /* >= 1 */
    size_t num_layers;        /* >= 1 */
    size_t outer_dim;         /* 1 or 2 */
    size_t page_size;         /* >= 1, tokens per block */
    size_t inner_dim;         /* >= 1, elements per token */
    size_t alignment;         /* power of two; 1 = none */
    size_t dtype_width_bytes; /* >= 1, default 2 */
} nxl_kv_layout_config_t;

/* nxl_kv_layout_config_validate checks the constraints above. */
NXL_API nxl_status_t
nxl_kv_layout_config_validate(const nxl_kv_layout_config_t *cfg);

typedef enum nxl_kv_layout_type {
    NXL_KV_FULLY_CONTIGUOUS = 0, /* [blocks][layers][outer][page][inner] */
    NXL_KV_LAYER_SEPARATE = 1    /* one allocation per layer */
} nxl_kv_layout_type_t;

/* nxl_kv_region_t: one (block, layer, outer) region. */
typedef struct nxl_kv_region {
    uint64_t addr;
    uint64_t size;
} nxl_kv_region_t;

typedef struct nxl_kv_layout nxl_kv_layout_t;

/* nxl_kv_layout_fc lays a fully contiguous layout over one storage (not
 * owned: it must outlive the layout). Strides: outer R, layer R*outer,
 * block align_up(layers*R*outer, alignment); base offset aligns the first
 * block. Too small: NXL_ERR_INVALID_PARAM "Storage size X is less than
 * required size Y (including base offset for alignment)". */
NXL_API nxl_status_t nxl_kv_layout_fc(const nxl_kv_layout_config_t *cfg,
                                      nxl_kv_storage_t *storage,
                                      nxl_kv_layout_t **l_p);

/* nxl_kv_layout_ls lays a layer-separate layout over n storages, one per
 * layer (not owned). outer_contiguous = 0: per layer
 * [blocks][outer][page][inner] (BlockIsFirstDim); 1: [outer][blocks]...
 * (BlockIsSecondDim). n != num_layers: "LayerSeparate layout requires
 * exactly one storage region per layer". */
NXL_API nxl_status_t nxl_kv_layout_ls(const nxl_kv_layout_config_t *cfg,
                                      int outer_contiguous,
                                      nxl_kv_storage_t *const *storages,
                                      size_t n, nxl_kv_layout_t **l_p);

/* nxl_kv_layout_alloc allocates the storage a layout needs (kind
 * loc.kind; DISK makes temp files in $TMPDIR), registers it with a when a
 * is not NULL (a failed registration is not an error: the storage stays
 * unregistered, as in Dynamo) and owns it. */
NXL_API nxl_status_t nxl_kv_layout_alloc(const nxl_kv_layout_config_t *cfg,
                                         nxl_kv_layout_type_t type,
                                         int outer_contiguous, nxl_kv_loc_t loc,
                                         nxl_kv_agent_t *a,
                                         nxl_kv_layout_t **l_p);

/* nxl_kv_layout_destroy frees l and the storage it owns (deregistering
 * first). Accepts NULL. */
NXL_API void nxl_kv_layout_destroy(nxl_kv_layout_t *l);

/* nxl_kv_layout_region returns the address and size of region (block,
 * layer, outer). Errors (NXL_ERR_INVALID_PARAM): "Block ID b out of range
 * (max: n)", "Layer ID l out of range (max: n)", "Outer ID o out of range
 * (max: n)". */
NXL_API nxl_status_t nxl_kv_layout_region(const nxl_kv_layout_t *l,
                                          size_t block, size_t layer,
                                          size_t outer, nxl_kv_region_t *r_p);

/* Accessors. Strings live as long as l. */
NXL_API const nxl_kv_layout_config_t *
nxl_kv_layout_config(const nxl_kv_layout_t *l);
NXL_API nxl_kv_layout_type_t nxl_kv_layout_type(const nxl_kv_layout_t *l);
NXL_API int nxl_kv_layout_outer_contiguous(const nxl_kv_layout_t *l);
NXL_API int nxl_kv_layout_is_fully_contiguous(const nxl_kv_layout_t *l);
NXL_API nxl_kv_loc_t nxl_kv_layout_loc(const nxl_kv_layout_t *l);
NXL_API nxl_mem_t nxl_kv_layout_mem(const nxl_kv_layout_t *l);
NXL_API uint64_t nxl_kv_layout_dev_id(const nxl_kv_layout_t *l);
NXL_API size_t nxl_kv_layout_region_size(const nxl_kv_layout_t *l);
/* Data bytes of one block over all layers and outer dims: layers * outer * R
 * (strides and alignment padding excluded). */
NXL_API size_t nxl_kv_layout_block_bytes(const nxl_kv_layout_t *l);
/* Agent that owns the memory: set by nxl_kv_layout_alloc with an agent, by
 * nxl_kv_layout_set_agent, or from JSON; NULL when unknown. */
NXL_API const char *nxl_kv_layout_agent(const nxl_kv_layout_t *l);
NXL_API nxl_status_t nxl_kv_layout_set_agent(nxl_kv_layout_t *l,
                                             const char *agent_name);

/* nxl_kv_layout_to_json_v1 writes Dynamo's SerializedNixlBlockLayout JSON
 * ({"FullyContiguous": {...}} / {"LayerSeparate": {...}}). Every storage
 * must be registered: else NXL_ERR_NOT_ALLOWED "Storage does not provide
 * NIXL descriptors for serialization". Free with nxl_blob_free. */
NXL_API nxl_status_t nxl_kv_layout_to_json_v1(const nxl_kv_layout_t *l,
                                              nxl_blob_t *json_p);

/* nxl_kv_layout_from_json_v1 rebuilds a remote view (no storage owned)
 * from v1 JSON; agent_name names its owner (v1 does not carry it; may be
 * NULL). Malformed input -> NXL_ERR_PROTO with the field at fault; wrong
 * descriptor counts -> "FullyContiguous reconstruction expects exactly one
 * NixlStorage descriptor" / "LayerSeparate reconstruction expects exactly
 * one NixlStorage descriptor per layer". */
NXL_API nxl_status_t nxl_kv_layout_from_json_v1(const void *json, size_t len,
                                                const char *agent_name,
                                                nxl_kv_layout_t **l_p);

/* nxl_kv_layout_to_json_v2 writes Dynamo v2's LayoutDescriptor JSON
 * ({"version":1,"layout_config":...,"location":...,"nixl_metadata":...,
 * "memory_descriptors":[...],"layout_type_details":...}). The agent name is
 * the layout's (NXL_ERR_INVALID_PARAM when unknown). */
NXL_API nxl_status_t nxl_kv_layout_to_json_v2(const nxl_kv_layout_t *l,
                                              nxl_blob_t *json_p);

/* nxl_kv_layout_from_json_v2 rebuilds a remote view from v2 JSON.
 * "version" > 1 -> NXL_ERR_NOT_SUPPORTED "Unsupported serialization
 * version: v. Maximum supported: 1"; malformed -> NXL_ERR_PROTO. */
NXL_API nxl_status_t nxl_kv_layout_from_json_v2(const void *json, size_t len,
                                                nxl_kv_layout_t **l_p);

/* ===================================================================== */
/* Strategy selection                                                     */
/* ===================================================================== */

typedef enum nxl_kv_strategy {
    NXL_KV_MEMCPY = 0,
    NXL_KV_CUDA_ASYNC_H2D,
    NXL_KV_CUDA_ASYNC_D2H,
    NXL_KV_CUDA_ASYNC_D2D,
    NXL_KV_CUDA_BLOCKING_H2D,
    NXL_KV_CUDA_BLOCKING_D2H,
    NXL_KV_NIXL_READ,
    NXL_KV_NIXL_WRITE,
    NXL_KV_NIXL_WRITE_FLIPPED,
    NXL_KV_NIXL_READ_FLIPPED,
    NXL_KV_INVALID
} nxl_kv_strategy_t;

/* nxl_kv_strategy_name returns Dynamo's name ("Memcpy", "NixlReadFlipped"). */
NXL_API const char *nxl_kv_strategy_name(nxl_kv_strategy_t s);

/* nxl_kv_caps_t: Dynamo's TransferCapabilities; both default 0. */
typedef struct nxl_kv_caps {
    int allow_gds;      /* device <-> disk directly */
    int allow_gpu_rdma; /* device <-> remote directly */
} nxl_kv_caps_t;

/* nxl_kv_plan_t: Direct(first) when !two_hop; else first -> bounce
 * (always PINNED) -> second. */
typedef struct nxl_kv_plan {
    int two_hop;
    nxl_kv_strategy_t first;
    nxl_kv_kind_t bounce;
    nxl_kv_strategy_t second;
} nxl_kv_plan_t;

#ifdef NXL_KV_EXPERIMENTAL
/* nxl_kv_select_direct is Dynamo's select_direct_strategy: the local table
 * (dst_is_remote = 0) or the legacy remote table (1). */
NXL_API nxl_status_t nxl_kv_select_direct(nxl_kv_kind_t src, nxl_kv_kind_t dst,
                                          int dst_is_remote,
                                          const nxl_kv_caps_t *caps,
                                          nxl_kv_plan_t *plan_p);

/* nxl_kv_select is Dynamo's select_strategy: both remote -> INVALID_PARAM
 * "Both src and dst are remote - this is not supported."; both local ->
 * the local table; one remote -> the v2 production rules ("Neither local
 * nor remote disk transfers are supported over NIXL at this time.", "GPU
 * RDMA is disabled - this transfer requires GPU RDMA.", both
 * NXL_ERR_NOT_SUPPORTED; NixlWrite when src is local, NixlReadFlipped when
 * dst is local). */
NXL_API nxl_status_t nxl_kv_select(nxl_kv_kind_t src, int src_local,
                                   nxl_kv_kind_t dst, int dst_local,
                                   const nxl_kv_caps_t *caps,
                                   nxl_kv_plan_t *plan_p);
#endif /* NXL_KV_EXPERIMENTAL */

/* ===================================================================== */
/* Block-id validation                                                    */
/* ===================================================================== */

/* nxl_kv_validate checks a block transfer (Dynamo's validation.rs, all
 * checks as its debug build): equal lengths ("Block ID lists have
 * mismatched lengths: src=3, dst=2, bounce=None"), unique destination ids
 * ("Destination block IDs are not unique: duplicates = [1, 2]", first-seen
 * order), unique bounce ids, every id below its layout's num_blocks
 * ("Block ID 9 out of range for source (max=8)"),
 * and, when src and dst are the same layout object, no id on both sides
 * ("Source and destination blocks overlap (same layout): overlapping =
 * [2]"). bounce and bounce_ids may be NULL; bounce_ids, when given, must
 * be as many as src_ids ("..., bounce=Some(2)"). Returns NXL_OK or
 * NXL_ERR_INVALID_PARAM. */
NXL_API nxl_status_t nxl_kv_validate(const nxl_kv_layout_t *src,
                                     const size_t *src_ids, size_t n_src,
                                     const nxl_kv_layout_t *dst,
                                     const size_t *dst_ids, size_t n_dst,
                                     const nxl_kv_layout_t *bounce,
                                     const size_t *bounce_ids, size_t n_bounce);

/* ===================================================================== */
/* Descriptor lists                                                       */
/* ===================================================================== */

/* nxl_kv_dlists_t: paired descriptor lists (src[i] moves to dst[i]) the
 * builders below produce. Owned by the library; free with
 * nxl_kv_dlists_free. */
typedef struct nxl_kv_dlists {
    nxl_mem_t src_mem, dst_mem;
    nxl_desc_t *src;
    nxl_desc_t *dst;
    size_t count;
} nxl_kv_dlists_t;

NXL_API void nxl_kv_dlists_free(nxl_kv_dlists_t *d);

/* nxl_kv_build_dlists builds the descriptors of moving blocks src_ids of
 * src to dst_ids of dst over layers [layer_begin, layer_end) (0, 0 = all):
 * one pair per (block, layer, outer) region in that order, then every run
 * of pairs contiguous on both sides merged into one (so fully contiguous
 * layouts with consecutive ids give one descriptor per run; partial layer
 * ranges stay correct). Errors: "Layouts have incompatible layer counts:
 * src=a, dst=b", "Layouts have incompatible outer dimensions: src=a,
 * dst=b", "Size mismatch at block=(s,d), layer=l, outer=o: src=x, dst=y",
 * out-of-range ids and layer ranges. */
NXL_API nxl_status_t nxl_kv_build_dlists(const nxl_kv_layout_t *src,
                                         const size_t *src_ids,
                                         const nxl_kv_layout_t *dst,
                                         const size_t *dst_ids, size_t n,
                                         size_t layer_begin, size_t layer_end,
                                         nxl_kv_dlists_t *out);

/* ===================================================================== */
/* Tensor-parallel slicing                                                */
/* ===================================================================== */

/* Heterogeneous TP between a prefill worker (tp_prefill ranks) and a
 * decode worker (tp_decode ranks); heads are split evenly over ranks, and
 * a region's inner_dim is heads_per_rank * head_dim. head_major = 0: a
 * region is [page][inner] (Dynamo's NHD order) so a head slice is strided,
 * one descriptor per token; 1: [heads][page][head_dim] (HND) so a slice is
 * one contiguous range.
 *
 * nxl_kv_tp_read_slices (tp_decode > tp_prefill, k = tp_decode /
 * tp_prefill): decode rank `decode_rank` reads its 1/k head slice of every
 * region of the prefill blocks remote_ids of `remote` into its whole local
 * regions of local_ids of `local`. The remote inner_dim must be k times the
 * local one.
 *
 * nxl_kv_tp_gather_slices (tp_prefill > tp_decode, k = tp_prefill /
 * tp_decode): the local decode block gathers from prefill rank
 * `prefill_rank` (of the k feeding it) that rank's whole regions into the
 * rank's 1/k slice of every local region. The local inner_dim must be k
 * times the remote one.
 *
 * In both, out->src are the remote (READ source) descriptors and out->dst
 * the local ones, paired. Errors (NXL_ERR_INVALID_PARAM) name the
 * mismatched dimension. */
NXL_API nxl_status_t nxl_kv_tp_read_slices(
    const nxl_kv_layout_t *local, const size_t *local_ids,
    const nxl_kv_layout_t *remote, const size_t *remote_ids, size_t n,
    unsigned tp_prefill, unsigned tp_decode, unsigned decode_rank,
    int head_major, nxl_kv_dlists_t *out);

NXL_API nxl_status_t nxl_kv_tp_gather_slices(
    const nxl_kv_layout_t *local, const size_t *local_ids,
    const nxl_kv_layout_t *remote, const size_t *remote_ids, size_t n,
    unsigned tp_prefill, unsigned tp_decode, unsigned prefill_rank,
    int head_major, nxl_kv_dlists_t *out);

/* ===================================================================== */
/* Transfer context, executor and completion                              */
/* ===================================================================== */

typedef struct nxl_kv_ctx nxl_kv_ctx_t;
typedef struct nxl_kv_notif nxl_kv_notif_t;

/* nxl_kv_ctx_config_t: fill with nxl_kv_ctx_config_init. */
typedef struct nxl_kv_ctx_config {
    uint32_t size; /* set by nxl_kv_ctx_config_init (nxl.h) */
    nxl_kv_caps_t caps;
    int device;             /* device ordinal for streams, default 0 */
    unsigned poll_tick_ms;  /* poller tick while work exists, default 1 */
    unsigned warn_after_ms; /* first slow-transfer warning, 60000 */
    unsigned warn_every_ms; /* repeat warning period, 30000 */
    size_t max_pending;     /* poller capacity, default 4096 */
} nxl_kv_ctx_config_t;
#define NXL_KV_CTX_CONFIG_V1_SIZE                                              \
    (offsetof(nxl_kv_ctx_config_t, max_pending) + sizeof(size_t))

NXL_API void nxl_kv_ctx_config_init(nxl_kv_ctx_config_t *cfg);

/* nxl_kv_ctx_create makes an executor on agent a (not owned; must outlive
 * the context) and starts its poller thread, which ticks only while
 * transfers are pending. cfg may be NULL. The context serializes its own
 * calls into the agent; a caller that uses the agent while the context
 * has work pending should create it with sync mode STRICT or RW. */
NXL_API nxl_status_t nxl_kv_ctx_create(nxl_kv_agent_t *a,
                                       const nxl_kv_ctx_config_t *cfg,
                                       nxl_kv_ctx_t **ctx_p);

/* nxl_kv_ctx_destroy waits for every pending transfer to finish (drain,
 * warning on errors), ends open nxl_kv_ctx_await_notif waits with
 * NXL_ERR_CANCELED, stops the poller and frees ctx. Handles stay valid
 * until released. Accepts NULL. */
NXL_API void nxl_kv_ctx_destroy(nxl_kv_ctx_t *ctx);

/* nxl_kv_ctx_slow_warnings returns how many slow-transfer warnings the
 * poller has logged ("Transfer has been pending for over 1 minute"). */
NXL_API uint64_t nxl_kv_ctx_slow_warnings(const nxl_kv_ctx_t *ctx);

/* nxl_kv_opts_t: Dynamo's TransferOptions. Fill with nxl_kv_opts_init. */
typedef struct nxl_kv_opts {
    uint32_t size;                 /* set by nxl_kv_opts_init (nxl.h) */
    size_t layer_begin, layer_end; /* 0, 0 = all layers */
    const nxl_kv_layout_t *bounce; /* pinned bounce layout (two-hop) */
    const size_t *bounce_ids;      /* its blocks to use */
    size_t num_bounce;
    int deadline_ms;   /* 0 = none: report NXL_ERR_TIMEOUT
                          after this, memory stays in use
                          until the transfer really ends */
    const void *notif; /* NXL notification sent to the remote
                          agent after the data (NIXL ops) */
    size_t notif_len;
} nxl_kv_opts_t;
#define NXL_KV_OPTS_V1_SIZE                                                    \
    (offsetof(nxl_kv_opts_t, notif_len) + sizeof(size_t))

NXL_API void nxl_kv_opts_init(nxl_kv_opts_t *opts);

/* nxl_kv_transfer moves blocks src_ids of src to dst_ids of dst: validate,
 * select the plan (a layout is local when its agent is ctx's agent or
 * unknown), then execute: memcpy inline; device copies queued on a stream
 * with an event the poller watches; NXL READ/WRITE posted on the agent
 * with the local/remote lists of Dynamo's executor (§7.2); two-hop through
 * opts->bounce in chunks of num_bounce blocks, hops and chunks in order.
 * Returns NXL_OK with *n_p a completion handle (possibly already done), or
 * an error before anything moved ("Two-hop transfers require a bounce
 * buffer.", "Bounce buffer layout does not match bounce location.", "Bounce
 * buffer has no blocks", validation and strategy errors; NXL_ERR_NOT_ALLOWED
 * when max_pending transfers are pending). The layouts must stay alive
 * until the handle is done; ids and the notification are copied. */
NXL_API nxl_status_t nxl_kv_transfer(
    nxl_kv_ctx_t *ctx, const nxl_kv_layout_t *src, const size_t *src_ids,
    const nxl_kv_layout_t *dst, const size_t *dst_ids, size_t n,
    const nxl_kv_opts_t *opts, nxl_kv_notif_t **n_p);

/* nxl_kv_notif_status: NXL_OK (done), NXL_IN_PROG, NXL_ERR_TIMEOUT
 * (deadline passed; the transfer may still be running) or the transfer's
 * error, whose text nxl_kv_notif_error returns. Thread-safe. */
NXL_API nxl_status_t nxl_kv_notif_status(const nxl_kv_notif_t *n);
NXL_API const char *nxl_kv_notif_error(const nxl_kv_notif_t *n);

/* nxl_kv_notif_wait blocks until n is no longer in progress or timeout_ms
 * passes (-1 forever; then NXL_ERR_TIMEOUT without changing n). */
NXL_API nxl_status_t nxl_kv_notif_wait(nxl_kv_notif_t *n, int timeout_ms);

/* nxl_kv_notif_release drops the caller's handle; a transfer still running
 * finishes in the poller. Accepts NULL. */
NXL_API void nxl_kv_notif_release(nxl_kv_notif_t *n);

/* nxl_kv_notif_uuid returns the transfer's uuid4 string (36 chars), the
 * key a notification-event completion matches. */
NXL_API const char *nxl_kv_notif_uuid(const nxl_kv_notif_t *n);

/* nxl_kv_ctx_await_notif registers a completion that ends when an NXL
 * notification whose message is exactly key arrives from any peer (the
 * notification-event path, §8.3: a key that arrives before it is awaited
 * is kept, not dropped). deadline_ms 0 = none. While such waits exist
 * the poller takes the agent's notifications (nxl_notifs_get) and keeps
 * the ones no wait matches, up to 4096 (oldest dropped with a warning). */
NXL_API nxl_status_t nxl_kv_ctx_await_notif(nxl_kv_ctx_t *ctx, const char *key,
                                            int deadline_ms,
                                            nxl_kv_notif_t **n_p);

/* ===================================================================== */
/* Fill and checksum                                                      */
#ifdef NXL_KV_EXPERIMENTAL
/* ===================================================================== */

typedef enum nxl_kv_fill {
    NXL_KV_FILL_CONSTANT = 0,  /* every byte = value */
    NXL_KV_FILL_SEQUENTIAL = 1 /* byte o of region (b, l, *) =
                                  (b + l + o) mod 256 */
} nxl_kv_fill_t;

/* nxl_kv_fill_blocks fills every region (all layers, all outers) of blocks
 * ids of l, whatever its kind (device via a host buffer and copy, disk via
 * an aligned buffer, pwrite and fsync). "Block ID b out of range". */
NXL_API nxl_status_t nxl_kv_fill_blocks(const nxl_kv_layout_t *l,
                                        const size_t *ids, size_t n,
                                        nxl_kv_fill_t pattern, uint8_t value);

/* nxl_kv_fill_layers fills only layers [layer_begin, layer_end) of blocks
 * ids with pattern, any kind; "Layer range a..b exceeds num_layers n"
 * (NXL_ERR_INVALID_PARAM; layer_begin > layer_end is refused too); an empty
 * range writes nothing. Ids are all checked before anything is written. */
NXL_API nxl_status_t nxl_kv_fill_layers(const nxl_kv_layout_t *l,
                                        const size_t *ids, size_t n,
                                        size_t layer_begin, size_t layer_end,
                                        nxl_kv_fill_t pattern, uint8_t value);

/* Checksum: XXH3-128 over a block's regions in layer -> outer order, as 32
 * lowercase hex digits and a NUL. */
#define NXL_KV_CHECKSUM_LEN 33
typedef struct nxl_kv_checksum {
    char hex[NXL_KV_CHECKSUM_LEN];
} nxl_kv_checksum_t;

/* nxl_kv_checksum_blocks writes the checksum of each block ids[i] over
 * layers [layer_begin, layer_end) (0, 0 = all) into sums[i] (device
 * memory is copied to the host first, disk regions are read). The same
 * bytes give the same checksum whatever the kind or layout type. Errors
 * as nxl_kv_fill_layers. */
NXL_API nxl_status_t nxl_kv_checksum_blocks(const nxl_kv_layout_t *l,
                                            const size_t *ids, size_t n,
                                            size_t layer_begin,
                                            size_t layer_end,
                                            nxl_kv_checksum_t *sums);
#endif /* NXL_KV_EXPERIMENTAL */

#ifdef __cplusplus
}
#endif

#endif /* NXL_NXL_KV_H */
