/*
 * xt_kv.h - shared setup of the KV tests: the standard layout config and
 * host/device/disk layouts over fresh storage.
 */
#ifndef NXL_TESTS_XT_KV_H
#define NXL_TESTS_XT_KV_H

#include <nxl/nxl_kv.h>

#include <stddef.h>

/* Region and block size of the standard config. */
#define XT_KV_REGION 4096u
#define XT_KV_BLOCK 16384u

/* xt_kv_cfg returns the standard config with nblocks blocks: 2 layers,
 * outer 2, page 16, inner 128, dtype 2, alignment 1 (region XT_KV_REGION
 * bytes, block XT_KV_BLOCK). Thread-safe. */
nxl_kv_layout_config_t xt_kv_cfg(size_t nblocks);

/* xt_kv_layout allocates a layout of type (outer_contiguous for LS) over
 * new storage of kind (index 0), registered with a (NULL = not
 * registered). The caller owns *l_p (nxl_kv_layout_destroy). Returns
 * nxl_kv_layout_alloc's status. */
nxl_status_t xt_kv_layout(const nxl_kv_layout_config_t *c,
                          nxl_kv_layout_type_t type, int outer_contiguous,
                          nxl_kv_kind_t kind, nxl_kv_agent_t *a,
                          nxl_kv_layout_t **l_p);

/* xt_kv_run transfers n blocks sids of s to dids of d with opts o (NULL:
 * defaults) on ctx and waits up to 60 s; returns the final status, with
 * the transfer's error printed when it failed. */
nxl_status_t xt_kv_run(nxl_kv_ctx_t *ctx, const nxl_kv_layout_t *s,
                       const size_t *sids, const nxl_kv_layout_t *d,
                       const size_t *dids, size_t n, const nxl_kv_opts_t *o);

/* xt_kv_same returns 0 when blocks dids of d (layers [lb, le)) carry the
 * checksums of blocks sids of s, else 1 (the first mismatch printed). */
int xt_kv_same(const nxl_kv_layout_t *s, const size_t *sids,
               const nxl_kv_layout_t *d, const size_t *dids, size_t n,
               size_t lb, size_t le);

/* xt_kv_shm_agent creates a kv agent called name (sync STRICT) with the
 * SHM backend into *a_p. Returns 0, or 1 after a failed assertion. */
int xt_kv_shm_agent(const char *name, nxl_kv_agent_t **a_p);

/* xt_kv_md_to loads from's metadata into to. Returns 0 or 1. */
int xt_kv_md_to(nxl_kv_agent_t *from, nxl_kv_agent_t *to);

/* xt_kv_view rebuilds l as a peer sees it (JSON v2: owner and memory)
 * into *v_p (the caller destroys it). Returns 0 or 1. */
int xt_kv_view(const nxl_kv_layout_t *l, nxl_kv_layout_t **v_p);

#endif /* NXL_TESTS_XT_KV_H */
