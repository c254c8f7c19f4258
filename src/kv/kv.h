/*
 * kv.h - internals of the KV transfer layer (src/kv), shared by its files.
 *
 * Object layouts live here so that the executor can address regions
 * without a call per region, and so that the JSON codec, the storage code
 * and the descriptor builders agree on one representation.
 */
#ifndef NXL_KV_KV_H
#define NXL_KV_KV_H

/* The layer implements the experimental parts too. */
#define NXL_KV_EXPERIMENTAL 1
#include <nxl/nxl_kv.h>

#include "util.h"

#include <stdbool.h>

/* ---- config.c ---------------------------------------------------------- */

/* One enabled backend: uppercase name and its params (strings owned). */
typedef struct nxl__kv_backend_cfg {
    char *name;
    nxl_param_t *params; /* key and value strings owned */
    size_t num_params;
} nxl__kv_backend_cfg_t;

struct nxl_kv_config {
    nxl__kv_backend_cfg_t *items; /* sorted by name */
    size_t count;
};

/* nxl__kv_find_name binary-searches count items of item_size bytes at
 * items, sorted by the (case-insensitive) string pointer name_off bytes
 * into each, for name in any case: 1 and its index in *pos when present,
 * else 0 and the sorted insertion index. Reads only; thread-safe when the
 * items do not change. Used for the backend lists of configs and agents. */
int nxl__kv_find_name(const void *items, size_t count, size_t item_size,
                      size_t name_off, const char *name, size_t *pos);

/* nxl__kv_array_ok says whether a caller's array of n elements of elem
 * bytes can exist: present when n > 0, and no larger than memory. */
static inline int
nxl__kv_array_ok(const void *p, size_t n, size_t elem)
{
    return (n == 0 || p != NULL) && n <= SIZE_MAX / elem;
}

/* ---- agent.c ----------------------------------------------------------- */

struct nxl_kv_agent {
    nxl_agent_t *agent;
    char **backends; /* uppercase, sorted */
    size_t num_backends;
};

/* ---- storage.c --------------------------------------------------------- */

struct nxl_kv_storage {
    nxl_kv_loc_t loc;
    void *ptr;     /* host/device pointer; NULL for DISK */
    uint64_t addr; /* (uintptr_t)ptr, or the file offset for DISK */
    size_t size;
    bool owned; /* destroy frees ptr (through mk) / closes the fd */
    const nxl_memkind_ops_t *mk; /* kind that allocated ptr, or NULL */
    char *path;    /* DISK created by nxl_kv_storage_disk, else NULL */
    bool unlinked; /* DISK: the file is gone from the file system */
    nxl_kv_agent_t *reg_agent; /* registered with this agent, or NULL */
};

/* nxl__kv_kind_mem maps a storage kind to its nxl_mem_t. */
nxl_mem_t nxl__kv_kind_mem(nxl_kv_kind_t kind);

/* ---- layout.c ---------------------------------------------------------- */

struct nxl_kv_layout {
    nxl_kv_layout_config_t cfg;
    nxl_kv_layout_type_t type;
    int outer_contiguous; /* LAYER_SEPARATE: 1 = [outer][blocks]... */
    nxl_kv_loc_t loc;
    nxl_mem_t mem;
    uint64_t dev_id;
    size_t region_size; /* R = page * inner * dtype */
    size_t outer_stride;
    size_t layer_stride;  /* FULLY_CONTIGUOUS only */
    size_t natural_block; /* FC: layers*outer*R; LS: outer*R or R */
    size_t block_stride;
    size_t layout_data_bytes;    /* FC: whole; LS: per layer */
    size_t num_regions;          /* 1 (FC) or num_layers (LS) */
    uint64_t *region_addr;       /* storage start of each memory region */
    uint64_t *region_size_b;     /* storage size of each memory region */
    uint64_t *base_offset;       /* alignment offset inside each region */
    uint64_t *base;              /* region_addr + base_offset */
    uint64_t *region_dev;        /* dev id of each memory region: dev_id, or
                                  * each layer's fd for LS over DISK files */
    nxl_kv_storage_t **storages; /* NULL for remote views */
    bool owns_storage;           /* destroy frees storages (layout_alloc) */
    char *agent;                 /* owner agent name, or NULL */
};

/* nxl__kv_addr is the region address without checks (ids in range). */
static inline uint64_t
nxl__kv_addr(const nxl_kv_layout_t *l, size_t b, size_t lyr, size_t o)
{
    if (l->type == NXL_KV_FULLY_CONTIGUOUS) {
        return l->base[0] + b * l->block_stride + lyr * l->layer_stride +
               o * l->outer_stride;
    }
    return l->base[lyr] + b * l->block_stride + o * l->outer_stride;
}

/* nxl__kv_dev is the dev id of layer lyr's memory (ids in range): the
 * layout's dev_id except for LS over several DISK files (each its fd). */
static inline uint64_t
nxl__kv_dev(const nxl_kv_layout_t *l, size_t lyr)
{
    return l->type == NXL_KV_FULLY_CONTIGUOUS ? l->region_dev[0]
                                              : l->region_dev[lyr];
}

/* nxl__kv_strides_t: the derived sizes of a layout (struct nxl_kv_layout's
 * fields of the same names). */
typedef struct nxl__kv_strides {
    size_t region_size;
    size_t outer_stride;
    size_t layer_stride;
    size_t natural_block;
    size_t block_stride;
    size_t layout_data_bytes;
} nxl__kv_strides_t;

/* nxl__kv_layout_strides validates cfg and computes the strides of a layout
 * of type (outer_contiguous for LAYER_SEPARATE) as docs/kv-layout.md gives
 * them. NXL_ERR_INVALID_PARAM when cfg is invalid or a size overflows. */
nxl_status_t nxl__kv_layout_strides(const nxl_kv_layout_config_t *cfg,
                                    nxl_kv_layout_type_t type,
                                    int outer_contiguous,
                                    nxl__kv_strides_t *st_p);

/* nxl__kv_layout_new_view_ex is nxl__kv_layout_new_view with explicit
 * strides (a peer's; st->region_size must be cfg's R; NULL = the strides
 * cfg gives, as nxl__kv_layout_new_view uses) and per-region dev ids
 * (region_dev, n entries, or NULL for dev_id everywhere). Checks that every
 * region, block and the layout data lie inside their memory region without
 * overflow (NXL_ERR_INVALID_PARAM otherwise). Copies the arrays. */
nxl_status_t nxl__kv_layout_new_view_ex(
    const nxl_kv_layout_config_t *cfg, nxl_kv_layout_type_t type,
    int outer_contiguous, nxl_kv_loc_t loc, nxl_mem_t mem, uint64_t dev_id,
    const nxl__kv_strides_t *st, const uint64_t *region_addr,
    const uint64_t *region_size, const uint64_t *base_offset,
    const uint64_t *region_dev, size_t n, const char *agent,
    nxl_kv_layout_t **l_p);

/* nxl__kv_layout_new_view builds a layout from strides and remote regions
 * without storage (the JSON readers use it); takes no ownership of the
 * arrays (copies them). The strides are computed from cfg; n must be 1
 * (FC) or num_layers (LS) and every region must fit (as _ex checks);
 * NXL_ERR_INVALID_PARAM otherwise, NXL_ERR_NOMEM. */
nxl_status_t nxl__kv_layout_new_view(const nxl_kv_layout_config_t *cfg,
                                     nxl_kv_layout_type_t type,
                                     int outer_contiguous, nxl_kv_loc_t loc,
                                     nxl_mem_t mem, uint64_t dev_id,
                                     const uint64_t *region_addr,
                                     const uint64_t *region_size,
                                     const uint64_t *base_offset, size_t n,
                                     const char *agent, nxl_kv_layout_t **l_p);

/* ---- dlists.c ---------------------------------------------------------- */

/* nxl__kv_pair_check checks what moving blocks src_ids of src to dst_ids
 * of dst over layers [*lb_p, *le_p) (0, 0 = all) needs of the two
 * layouts, with Dynamo's texts (NXL_ERR_INVALID_PARAM): equal layer counts
 * and outer dimensions, a layer range inside num_layers, ids in range
 * (when check_ids: the executor's ids were validated at submission),
 * equal region sizes. On success *lb_p and *le_p hold the range made
 * explicit. Reads the layouts only. */
nxl_status_t nxl__kv_pair_check(const nxl_kv_layout_t *src,
                                const size_t *src_ids,
                                const nxl_kv_layout_t *dst,
                                const size_t *dst_ids, size_t n, int check_ids,
                                size_t *lb_p, size_t *le_p);

/* nxl__kv_build_dlists is nxl_kv_build_dlists for arguments that passed
 * nxl__kv_pair_check (ids in range, layer range explicit). */
nxl_status_t nxl__kv_build_dlists(const nxl_kv_layout_t *src,
                                  const size_t *src_ids,
                                  const nxl_kv_layout_t *dst,
                                  const size_t *dst_ids, size_t n,
                                  size_t layer_begin, size_t layer_end,
                                  nxl_kv_dlists_t *out);

/* nxl__kv_dlists_push appends the pair (s, d) of equal length, merging it
 * into the last pair when both sides continue it contiguously (same dev).
 * Returns NXL_OK or NXL_ERR_NOMEM. */
nxl_status_t nxl__kv_dlists_push(nxl_kv_dlists_t *d, uint64_t saddr,
                                 uint64_t daddr, uint64_t len, uint64_t sdev,
                                 uint64_t ddev);

/* ---- diag.c ------------------------------------------------------------ */

/* nxl__kv_is_pci_bdf: 1 if s is a PCI address "dddd:bb:dd.f". */
int nxl__kv_is_pci_bdf(const char *s);

/* nxl__kv_ucx_diag writes the UCX_NET_DEVICES diagnostics for the sysfs
 * tree at root and the environment envp into buf; returns its length. */
size_t nxl__kv_ucx_diag(const char *root, char *const *envp, char *buf,
                        size_t cap);

#endif /* NXL_KV_KV_H */
