/*
 * layout_json.c - the JSON wire forms of KV layouts (docs/kv-layout.md):
 *   v1  Dynamo's SerializedNixlBlockLayout, {"FullyContiguous": {...}} or
 *       {"LayerSeparate": {...}} with the sender's strides and base offsets
 *   v2  Dynamo v2's LayoutDescriptor ({"version": 1, "layout_config": ...})
 *
 * The readers take peer input: every field is type-checked, every integer
 * range-checked (no negatives, no floats, nothing beyond 64 bits), counts
 * are checked before use, and the rebuilt view is revalidated (every region
 * must lie inside its memory descriptor) by nxl__kv_layout_new_view_ex.
 * Every reader failure is NXL_ERR_PROTO (NXL_ERR_NOT_SUPPORTED for a newer
 * version or an ObjectLayout; NXL_ERR_NOMEM) with the field at fault named.
 * Unknown extra fields are ignored, as serde does by default.
 */
#include "kv.h"

#include <json-c/json.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names -----------------------------------------------------------------
 */

static const char *const mem_names[NXL_MEM_KINDS] = {
    [NXL_DRAM] = "Dram",  [NXL_VRAM] = "Vram", [NXL_BLK] = "Block",
    [NXL_OBJ] = "Object", [NXL_FILE] = "File",
};

/* kind_mem is the memory type a storage kind registers as. */
static nxl_mem_t
kind_mem(nxl_kv_kind_t kind)
{
    switch (kind) {
    case NXL_KV_DEVICE:
        return NXL_VRAM;
    case NXL_KV_DISK:
        return NXL_FILE;
    default:
        return NXL_DRAM;
    }
}

/* ---- writer helpers ---------------------------------------------------------
 */

/* jw_add adds key: o (taking o, NULL-safe); false on failure. */
static bool
jw_add(json_object *obj, const char *key, json_object *o)
{
    if (o == NULL) {
        return false;
    }
    if (json_object_object_add(obj, key, o) != 0) {
        json_object_put(o);
        return false;
    }
    return true;
}

/* jw_u64 adds key: v to obj; false on allocation failure. */
static bool
jw_u64(json_object *obj, const char *key, uint64_t v)
{
    return jw_add(obj, key, json_object_new_uint64(v));
}

/* jw_str adds key: "s". */
static bool
jw_str(json_object *obj, const char *key, const char *s)
{
    return jw_add(obj, key, json_object_new_string(s));
}

/* jw_push_object appends a new empty object to the array arr and returns
 * it (owned by arr), or NULL on allocation failure. */
static json_object *
jw_push_object(json_object *arr)
{
    json_object *o = json_object_new_object();

    if (o == NULL || json_object_array_add(arr, o) != 0) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* jw_config makes a LayoutConfig object, or NULL. */
static json_object *
jw_config(const nxl_kv_layout_config_t *c)
{
    json_object *o = json_object_new_object();

    if (o == NULL || !jw_u64(o, "num_blocks", c->num_blocks) ||
        !jw_u64(o, "num_layers", c->num_layers) ||
        !jw_u64(o, "outer_dim", c->outer_dim) ||
        !jw_u64(o, "page_size", c->page_size) ||
        !jw_u64(o, "inner_dim", c->inner_dim) ||
        !jw_u64(o, "alignment", c->alignment) ||
        !jw_u64(o, "dtype_width_bytes", c->dtype_width_bytes)) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* jw_kind makes the StorageKind / StorageType value of loc: "System",
 * "Pinned", {"Device": n} or {"Disk": fd}; NULL on failure. */
static json_object *
jw_kind(nxl_kv_loc_t loc)
{
    json_object *o;

    switch (loc.kind) {
    case NXL_KV_SYSTEM:
        return json_object_new_string("System");
    case NXL_KV_PINNED:
        return json_object_new_string("Pinned");
    case NXL_KV_DEVICE:
    case NXL_KV_DISK:
        o = json_object_new_object();
        if (o == NULL ||
            !jw_u64(o, loc.kind == NXL_KV_DEVICE ? "Device" : "Disk",
                    loc.index)) {
            json_object_put(o);
            return NULL;
        }
        return o;
    }
    return NULL;
}

/* jw_finish prints root compactly (serde_json's form: no spaces, '/' not
 * escaped) into *json_p and drops root. */
static nxl_status_t
jw_finish(json_object *root, nxl_blob_t *json_p)
{
    size_t len = 0;
    const char *s = json_object_to_json_string_length(
        root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    void *copy;

    if (s == NULL || (copy = malloc(len + 1)) == NULL) {
        json_object_put(root);
        return nxl__fail(NXL_ERR_NOMEM, "kv layout json: out of memory");
    }
    memcpy(copy, s, len + 1);
    json_object_put(root);
    json_p->data = copy;
    json_p->len = len;
    return NXL_OK;
}

static nxl_status_t
jw_nomem(json_object *root)
{
    json_object_put(root);
    return nxl__fail(NXL_ERR_NOMEM, "kv layout json: out of memory");
}

/* ---- v1 writer
 * --------------------------------------------------------------- */

/* nxl_kv_layout_to_json_v1 writes l as Dynamo's SerializedNixlBlockLayout
 * JSON into *json_p (the caller's: nxl_blob_free). Local layouts need every
 * storage registered (NXL_ERR_NOT_ALLOWED "Storage does not provide NIXL
 * descriptors for serialization"); remote views re-serialize as read.
 * NXL_ERR_INVALID_PARAM, NXL_ERR_NOMEM. Reads l only: thread-safe. */
NXL_API nxl_status_t
nxl_kv_layout_to_json_v1(const nxl_kv_layout_t *l, nxl_blob_t *json_p)
{
    json_object *root, *body, *cfg, *offs, *descs;
    bool fc;
    size_t i;

    if (l == NULL || json_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "nxl_kv_layout_to_json_v1: NULL argument");
    }
    for (i = 0; l->storages != NULL && i < l->num_regions; i++) {
        if (!nxl_kv_storage_is_registered(l->storages[i])) {
            return nxl__fail(NXL_ERR_NOT_ALLOWED,
                             "Storage does not provide NIXL descriptors for "
                             "serialization");
        }
    }
    fc = l->type == NXL_KV_FULLY_CONTIGUOUS;
    root = json_object_new_object();
    body = json_object_new_object();
    if (root == NULL || body == NULL) {
        json_object_put(body);
        return jw_nomem(root);
    }
    if (!jw_add(root, fc ? "FullyContiguous" : "LayerSeparate", body)) {
        return jw_nomem(root);
    }
    cfg = json_object_new_object();
    if (!jw_add(body, "config", cfg) ||
        !jw_add(cfg, "inner", jw_config(&l->cfg)) ||
        !jw_u64(cfg, "memory_region_size", l->region_size) ||
        !jw_u64(cfg, "outer_dim_stride_in_bytes", l->outer_stride)) {
        return jw_nomem(root);
    }
    if (fc) {
        if (!jw_u64(cfg, "layer_stride_in_bytes", l->layer_stride) ||
            !jw_u64(cfg, "natural_block_stride", l->natural_block) ||
            !jw_u64(cfg, "block_stride_in_bytes", l->block_stride) ||
            !jw_u64(cfg, "layout_data_bytes", l->layout_data_bytes)) {
            return jw_nomem(root);
        }
    } else if (!jw_u64(cfg, "block_stride_in_bytes", l->block_stride) ||
               !jw_u64(cfg, "layout_data_bytes", l->layout_data_bytes) ||
               !jw_add(cfg, "is_outer_contiguous",
                       json_object_new_boolean(l->outer_contiguous))) {
        return jw_nomem(root);
    }
    offs = json_object_new_array();
    if (!jw_add(body, "base_offsets", offs)) {
        return jw_nomem(root);
    }
    for (i = 0; i < l->num_regions; i++) {
        json_object *v = json_object_new_uint64(l->base_offset[i]);

        if (v == NULL || json_object_array_add(offs, v) != 0) {
            json_object_put(v);
            return jw_nomem(root);
        }
    }
    descs = json_object_new_array();
    if (!jw_add(body, "storage_descriptors", descs)) {
        return jw_nomem(root);
    }
    for (i = 0; i < l->num_regions; i++) {
        json_object *d = jw_push_object(descs);

        if (d == NULL || !jw_u64(d, "addr", l->region_addr[i]) ||
            !jw_u64(d, "size", l->region_size_b[i]) ||
            !jw_str(d, "mem_type", mem_names[l->mem]) ||
            !jw_u64(d, "device_id", l->region_dev[i])) {
            return jw_nomem(root);
        }
    }
    if (!jw_add(body, "storage_type", jw_kind(l->loc))) {
        return jw_nomem(root);
    }
    return jw_finish(root, json_p);
}

/* ---- v2 writer
 * --------------------------------------------------------------- */

/* nxl_kv_layout_to_json_v2 writes l as Dynamo v2's LayoutDescriptor JSON
 * into *json_p (nxl_blob_free). Memory descriptors start at each region's
 * aligned base (v2 has no base offsets). NXL_ERR_INVALID_PARAM when l has
 * no agent name; NXL_ERR_NOT_SUPPORTED for LS over several DISK files (v2
 * carries one device id) and for a v1 view whose peer strides differ from
 * those its config gives (v2 carries no strides); NXL_ERR_NOMEM. Reads l
 * only: thread-safe. */
NXL_API nxl_status_t
nxl_kv_layout_to_json_v2(const nxl_kv_layout_t *l, nxl_blob_t *json_p)
{
    json_object *root, *md, *descs, *det, *inner;
    nxl__kv_strides_t st;
    size_t i;

    if (l == NULL || json_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "nxl_kv_layout_to_json_v2: NULL argument");
    }
    if (l->agent == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "v2 layout descriptor needs the owner agent name "
                         "(nxl_kv_layout_set_agent)");
    }
    /* v2 carries no strides: the reader derives them from the config, so
     * a v1 view built with a peer's differing strides cannot be sent. */
    if (nxl__kv_layout_strides(&l->cfg, l->type, l->outer_contiguous, &st) !=
            NXL_OK ||
        st.outer_stride != l->outer_stride ||
        st.layer_stride != l->layer_stride ||
        st.natural_block != l->natural_block ||
        st.block_stride != l->block_stride ||
        st.layout_data_bytes != l->layout_data_bytes) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "v2 layout descriptor carries no strides, and this "
                         "layout's strides differ from those of its config");
    }
    for (i = 1; i < l->num_regions; i++) {
        if (l->region_dev[i] != l->region_dev[0]) {
            return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                             "v2 layout descriptor carries one device id; "
                             "layer %zu has %" PRIu64 ", layer 0 %" PRIu64,
                             i, l->region_dev[i], l->region_dev[0]);
        }
    }
    root = json_object_new_object();
    if (root == NULL || !jw_u64(root, "version", 1) ||
        !jw_add(root, "layout_config", jw_config(&l->cfg)) ||
        !jw_add(root, "location", jw_kind(l->loc))) {
        return jw_nomem(root);
    }
    md = json_object_new_object();
    if (!jw_add(root, "nixl_metadata", md) ||
        !jw_str(md, "agent_name", l->agent) ||
        !jw_str(md, "mem_type", mem_names[l->mem]) ||
        !jw_u64(md, "device_id", l->dev_id)) {
        return jw_nomem(root);
    }
    descs = json_object_new_array();
    if (!jw_add(root, "memory_descriptors", descs)) {
        return jw_nomem(root);
    }
    for (i = 0; i < l->num_regions; i++) {
        json_object *d = jw_push_object(descs);

        if (d == NULL || !jw_u64(d, "addr", l->base[i]) ||
            !jw_u64(d, "size", l->region_size_b[i] - l->base_offset[i])) {
            return jw_nomem(root);
        }
    }
    det = json_object_new_object();
    inner = json_object_new_object();
    if (!jw_add(root, "layout_type_details", det)) {
        json_object_put(inner);
        return jw_nomem(root);
    }
    if (l->type == NXL_KV_FULLY_CONTIGUOUS) {
        if (!jw_add(det, "FullyContiguous", inner) ||
            !jw_str(inner, "block_format", "Operational")) {
            return jw_nomem(root);
        }
    } else if (!jw_add(det, "LayerSeparate", inner) ||
               !jw_str(inner, "block_dim",
                       l->outer_contiguous ? "BlockIsSecondDim"
                                           : "BlockIsFirstDim")) {
        return jw_nomem(root);
    }
    return jw_finish(root, json_p);
}

/* ---- reader helpers
 * ---------------------------------------------------------- */

/* jr_parse parses len bytes of JSON (one value, optional surrounding
 * whitespace) into *root_p. NXL_ERR_PROTO for anything else. */
static nxl_status_t
jr_parse(const void *json, size_t len, json_object **root_p)
{
    const char *p = json;

    if (json == NULL || len == 0) {
        return nxl__fail(NXL_ERR_PROTO, "kv layout json: empty input");
    }
    if (memchr(p, '\0', len) != NULL) {
        return nxl__fail(NXL_ERR_PROTO, "kv layout json: NUL byte in input");
    }
    return nxl__json_read(p, len, false, "kv layout json", root_p);
}

/* jr_get finds field name of obj (an object, described by at) with type t
 * (json_type_null = any). NXL_ERR_PROTO "missing field `name` (at at)" or
 * "invalid type for `name` (at at): expected ...". */
static nxl_status_t
jr_get(json_object *obj, const char *at, const char *name, json_type t,
       json_object **v_p)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(obj, name, &v) || v == NULL) {
        return nxl__fail(NXL_ERR_PROTO, "missing field `%s` (at %s)", name, at);
    }
    if (t != json_type_null && !json_object_is_type(v, t)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "invalid type for `%s` (at %s): expected %s, got %s",
                         name, at, json_type_to_name(t),
                         json_type_to_name(json_object_get_type(v)));
    }
    *v_p = v;
    return NXL_OK;
}

/* jr_uint checks that v (field name at at) is a non-negative integer no
 * larger than max and stores it. */
static nxl_status_t
jr_uint(json_object *v, const char *at, const char *name, uint64_t max,
        uint64_t *out)
{
    uint64_t u;

    if (!json_object_is_type(v, json_type_int)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "invalid type for `%s` (at %s): expected an unsigned "
                         "integer, got %s",
                         name, at, json_type_to_name(json_object_get_type(v)));
    }
    if (json_object_get_int64(v) < 0) {
        return nxl__fail(NXL_ERR_PROTO,
                         "invalid value for `%s` (at %s): %" PRId64
                         " is negative",
                         name, at, json_object_get_int64(v));
    }
    u = json_object_get_uint64(v);
    /* json-c clamps integers beyond 64 bits to UINT64_MAX: refuse it. */
    if (max == UINT64_MAX) {
        max = UINT64_MAX - 1;
    }
    if (u > max) {
        return nxl__fail(NXL_ERR_PROTO,
                         "invalid value for `%s` (at %s): %s is out of range "
                         "(max %" PRIu64 ")",
                         name, at, json_object_to_json_string(v), max);
    }
    *out = u;
    return NXL_OK;
}

/* jr_u64 reads the unsigned field name of obj. */
static nxl_status_t
jr_u64(json_object *obj, const char *at, const char *name, uint64_t max,
       uint64_t *out)
{
    json_object *v = NULL;
    nxl_status_t s = jr_get(obj, at, name, json_type_null, &v);

    return s != NXL_OK ? s : jr_uint(v, at, name, max, out);
}

/* jr_size reads a usize field into a size_t. */
static nxl_status_t
jr_size(json_object *obj, const char *at, const char *name, size_t *out)
{
    uint64_t u;
    nxl_status_t s = jr_u64(obj, at, name, SIZE_MAX, &u);

    if (s == NXL_OK) {
        *out = (size_t)u;
    }
    return s;
}

/* jr_config reads a LayoutConfig object; alignment defaults to 1 when
 * missing and need_alignment is false (v2). The values are range-checked
 * here; the constraints by nxl_kv_layout_config_validate later. */
static nxl_status_t
jr_config(json_object *o, const char *at, bool need_alignment,
          nxl_kv_layout_config_t *c)
{
    json_object *v;
    nxl_status_t s;

    if (!json_object_is_type(o, json_type_object)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "invalid type (at %s): expected an "
                         "object",
                         at);
    }
    if ((s = jr_size(o, at, "num_blocks", &c->num_blocks)) != NXL_OK ||
        (s = jr_size(o, at, "num_layers", &c->num_layers)) != NXL_OK ||
        (s = jr_size(o, at, "outer_dim", &c->outer_dim)) != NXL_OK ||
        (s = jr_size(o, at, "page_size", &c->page_size)) != NXL_OK ||
        (s = jr_size(o, at, "inner_dim", &c->inner_dim)) != NXL_OK ||
        (s = jr_size(o, at, "dtype_width_bytes", &c->dtype_width_bytes)) !=
            NXL_OK) {
        return s;
    }
    if (!need_alignment && !json_object_object_get_ex(o, "alignment", &v)) {
        c->alignment = 1;
        return NXL_OK;
    }
    return jr_size(o, at, "alignment", &c->alignment);
}

/* jr_mem parses a MemType name. */
static nxl_status_t
jr_mem(json_object *obj, const char *at, nxl_mem_t *mem)
{
    json_object *v = NULL;
    const char *s;
    nxl_status_t st = jr_get(obj, at, "mem_type", json_type_string, &v);
    int i;

    if (st != NXL_OK) {
        return st;
    }
    s = json_object_get_string(v);
    for (i = 0; i < NXL_MEM_KINDS; i++) {
        if (strcmp(s, mem_names[i]) == 0 &&
            strlen(s) == (size_t)json_object_get_string_len(v)) {
            *mem = (nxl_mem_t)i;
            return NXL_OK;
        }
    }
    return nxl__fail(NXL_ERR_PROTO,
                     "unknown variant `%.40s` for `mem_type` (at %s), "
                     "expected one of Dram, Vram, Block, Object, File",
                     s, at);
}

/* jr_kind parses a StorageKind / StorageType value (field name of obj):
 * "System" | "Pinned" | {"Device": n} (n <= u32) | {"Disk": fd}. */
static nxl_status_t
jr_kind(json_object *obj, const char *at, const char *name, nxl_kv_loc_t *loc)
{
    json_object *v = NULL, *x = NULL;
    nxl_status_t s = jr_get(obj, at, name, json_type_null, &v);
    char where[64];

    if (s != NXL_OK) {
        return s;
    }
    loc->index = 0;
    if (json_object_is_type(v, json_type_string)) {
        const char *str = json_object_get_string(v);

        if (strcmp(str, "System") == 0 && json_object_get_string_len(v) == 6) {
            loc->kind = NXL_KV_SYSTEM;
            return NXL_OK;
        }
        if (strcmp(str, "Pinned") == 0 && json_object_get_string_len(v) == 6) {
            loc->kind = NXL_KV_PINNED;
            return NXL_OK;
        }
        return nxl__fail(NXL_ERR_PROTO,
                         "unsupported variant `%.40s` for `%s` (at %s)", str,
                         name, at);
    }
    if (!json_object_is_type(v, json_type_object) ||
        json_object_object_length(v) != 1) {
        return nxl__fail(NXL_ERR_PROTO,
                         "invalid type for `%s` (at %s): expected a string "
                         "or an object with one key",
                         name, at);
    }
    snprintf(where, sizeof(where), "%s.%s", at, name);
    if (json_object_object_get_ex(v, "Device", &x)) {
        loc->kind = NXL_KV_DEVICE;
        return jr_uint(x, where, "Device", UINT32_MAX, &loc->index);
    }
    if (json_object_object_get_ex(v, "Disk", &x)) {
        loc->kind = NXL_KV_DISK;
        return jr_uint(x, where, "Disk", UINT64_MAX, &loc->index);
    }
    {
        struct json_object_iterator it = json_object_iter_begin(v);

        return nxl__fail(NXL_ERR_PROTO,
                         "unsupported variant `%.40s` for `%s` (at %s)",
                         json_object_iter_peek_name(&it), name, at);
    }
}

/* jr_variant: obj must be an object with exactly one key (serde's
 * externally tagged enum); *name_p and *body_p receive it. */
static nxl_status_t
jr_variant(json_object *obj, const char *at, const char **name_p,
           json_object **body_p)
{
    struct json_object_iterator it;

    *name_p = NULL;
    *body_p = NULL;
    if (!json_object_is_type(obj, json_type_object) ||
        json_object_object_length(obj) != 1) {
        return nxl__fail(NXL_ERR_PROTO,
                         "invalid type (at %s): expected an object with one "
                         "key naming the variant",
                         at);
    }
    it = json_object_iter_begin(obj);
    *name_p = json_object_iter_peek_name(&it);
    *body_p = json_object_iter_peek_value(&it);
    return NXL_OK;
}

/* as_proto turns a validation failure of the rebuilt layout into
 * NXL_ERR_PROTO, keeping its message behind a prefix. */
static nxl_status_t
as_proto(nxl_status_t s, const char *prefix)
{
    char msg[256];

    if (s != NXL_ERR_INVALID_PARAM) {
        return s;
    }
    snprintf(msg, sizeof(msg), "%s", nxl_last_error());
    return nxl__fail(NXL_ERR_PROTO, "%s: %s", prefix, msg);
}

/* check_mem: the memory type must be the one loc's kind registers as. */
static nxl_status_t
check_mem(nxl_mem_t mem, nxl_kv_loc_t loc, const char *at)
{
    if (mem != kind_mem(loc.kind)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "mem_type %s (at %s) does not match storage kind %s",
                         mem_names[mem], at, nxl_kv_kind_name(loc.kind));
    }
    return NXL_OK;
}

/* ---- v1 reader
 * --------------------------------------------------------------- */

/* v1_body reads a SerializableNixlLayout body of variant fc/ls and builds
 * the view. */
static nxl_status_t
v1_body(json_object *body, bool fc, const char *agent_name,
        nxl_kv_layout_t **l_p)
{
    const char *at = fc ? "FullyContiguous" : "LayerSeparate";
    const char *at_cfg = fc ? "FullyContiguous.config" : "LayerSeparate.config";
    json_object *cfg = NULL, *inner = NULL, *offs = NULL, *descs = NULL;
    json_object *v = NULL;
    nxl_kv_layout_config_t c;
    nxl__kv_strides_t st, mine;
    nxl_kv_loc_t loc;
    nxl_mem_t mem = NXL_DRAM;
    uint64_t *buf = NULL;
    int oc = 0;
    size_t n, i;
    nxl_status_t s;

    if (!json_object_is_type(body, json_type_object)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "invalid type (at %s): expected an "
                         "object",
                         at);
    }
    if ((s = jr_get(body, at, "config", json_type_object, &cfg)) != NXL_OK ||
        (s = jr_get(cfg, at_cfg, "inner", json_type_object, &inner)) !=
            NXL_OK ||
        (s = jr_config(inner,
                       fc ? "FullyContiguous.config.inner"
                          : "LayerSeparate.config.inner",
                       true, &c)) != NXL_OK) {
        return s;
    }
    memset(&st, 0, sizeof(st));
    if ((s = jr_size(cfg, at_cfg, "memory_region_size", &st.region_size)) !=
            NXL_OK ||
        (s = jr_size(cfg, at_cfg, "outer_dim_stride_in_bytes",
                     &st.outer_stride)) != NXL_OK ||
        (s = jr_size(cfg, at_cfg, "block_stride_in_bytes", &st.block_stride)) !=
            NXL_OK ||
        (s = jr_size(cfg, at_cfg, "layout_data_bytes",
                     &st.layout_data_bytes)) != NXL_OK) {
        return s;
    }
    if (fc) {
        if ((s = jr_size(cfg, at_cfg, "layer_stride_in_bytes",
                         &st.layer_stride)) != NXL_OK ||
            (s = jr_size(cfg, at_cfg, "natural_block_stride",
                         &st.natural_block)) != NXL_OK) {
            return s;
        }
    } else {
        if ((s = jr_get(cfg, at_cfg, "is_outer_contiguous", json_type_boolean,
                        &v)) != NXL_OK) {
            return s;
        }
        oc = json_object_get_boolean(v) ? 1 : 0;
    }
    if ((s = jr_get(body, at, "storage_descriptors", json_type_array,
                    &descs)) != NXL_OK) {
        return s;
    }
    n = json_object_array_length(descs);
    if (fc && n != 1) {
        return nxl__fail(NXL_ERR_PROTO, "FullyContiguous reconstruction "
                                        "expects exactly one NixlStorage "
                                        "descriptor");
    }
    if (!fc && n != c.num_layers) {
        return nxl__fail(NXL_ERR_PROTO, "LayerSeparate reconstruction expects "
                                        "exactly one NixlStorage descriptor "
                                        "per layer");
    }
    /* Older FullyContiguous senders wrote one "base_offset". */
    if (fc && !json_object_object_get_ex(body, "base_offsets", &offs) &&
        json_object_object_get_ex(body, "base_offset", &offs)) {
        offs = NULL;
    } else if ((s = jr_get(body, at, "base_offsets", json_type_array, &offs)) !=
               NXL_OK) {
        return s;
    }
    if (offs != NULL && json_object_array_length(offs) != n) {
        return nxl__fail(NXL_ERR_PROTO,
                         "base_offsets (at %s) has %zu entries, expected one "
                         "per storage descriptor (%zu)",
                         at, json_object_array_length(offs), n);
    }
    if ((s = jr_kind(body, at, "storage_type", &loc)) != NXL_OK) {
        return s;
    }
    /* Config first (so the layout math below cannot overflow). */
    s = nxl_kv_layout_config_validate(&c);
    if (s != NXL_OK) {
        return as_proto(s, fc ? "FullyContiguous.config.inner"
                              : "LayerSeparate.config.inner");
    }
    if (!fc) {
        (void)nxl__kv_layout_strides(&c, NXL_KV_LAYER_SEPARATE, oc, &mine);
        st.natural_block = mine.natural_block; /* not on the wire for LS */
    }
    buf = calloc(4 * n, sizeof(uint64_t));
    if (buf == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "kv layout json: out of memory");
    }
    for (i = 0; i < n; i++) {
        json_object *d = json_object_array_get_idx(descs, i);
        char where[64];
        nxl_mem_t m;

        snprintf(where, sizeof(where), "%s.storage_descriptors[%zu]", at, i);
        if (!json_object_is_type(d, json_type_object)) {
            s = nxl__fail(NXL_ERR_PROTO,
                          "invalid type (at %s): expected an object", where);
            goto out;
        }
        if ((s = jr_u64(d, where, "addr", UINT64_MAX, &buf[i])) != NXL_OK ||
            (s = jr_u64(d, where, "size", SIZE_MAX, &buf[n + i])) != NXL_OK ||
            (s = jr_mem(d, where, &m)) != NXL_OK ||
            (s = jr_u64(d, where, "device_id", UINT64_MAX, &buf[3 * n + i])) !=
                NXL_OK ||
            (s = check_mem(m, loc, where)) != NXL_OK) {
            goto out;
        }
        mem = m;
        if (offs == NULL) {
            s = jr_u64(body, at, "base_offset", SIZE_MAX, &buf[2 * n]);
        } else {
            snprintf(where, sizeof(where), "%s.base_offsets", at);
            s = jr_uint(json_object_array_get_idx(offs, i), where,
                        "base_offsets[]", SIZE_MAX, &buf[2 * n + i]);
        }
        if (s != NXL_OK) {
            goto out;
        }
    }
    s = nxl__kv_layout_new_view_ex(
        &c, fc ? NXL_KV_FULLY_CONTIGUOUS : NXL_KV_LAYER_SEPARATE, oc, loc, mem,
        buf[3 * n], &st, buf, buf + n, buf + 2 * n, buf + 3 * n, n, agent_name,
        l_p);
    s = as_proto(s, at);
out:
    free(buf);
    return s;
}

/* nxl_kv_layout_from_json_v1 rebuilds a remote view (owning no storage)
 * from len bytes of v1 JSON; agent_name (may be NULL) is copied as its
 * owner. NXL_ERR_PROTO naming the field at fault (including Dynamo's
 * descriptor count texts); NXL_ERR_NOMEM. *l_p is the caller's. Thread-safe
 * (json-c is reentrant). */
NXL_API nxl_status_t
nxl_kv_layout_from_json_v1(const void *json, size_t len, const char *agent_name,
                           nxl_kv_layout_t **l_p)
{
    json_object *root, *body;
    const char *name;
    nxl_status_t s;

    if (l_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "nxl_kv_layout_from_json_v1: NULL output");
    }
    s = jr_parse(json, len, &root);
    if (s != NXL_OK) {
        return s;
    }
    s = jr_variant(root, "SerializedNixlBlockLayout", &name, &body);
    if (s == NXL_OK) {
        if (strcmp(name, "FullyContiguous") == 0) {
            s = v1_body(body, true, agent_name, l_p);
        } else if (strcmp(name, "LayerSeparate") == 0) {
            s = v1_body(body, false, agent_name, l_p);
        } else {
            s = nxl__fail(NXL_ERR_PROTO,
                          "unknown variant `%.40s`, expected FullyContiguous "
                          "or LayerSeparate",
                          name);
        }
    }
    json_object_put(root);
    return s;
}

/* ---- v2 reader
 * --------------------------------------------------------------- */

/* v2_build reads the v2 fields of root after the version check. */
static nxl_status_t
v2_build(json_object *root, nxl_kv_layout_t **l_p)
{
    json_object *lc = NULL, *md = NULL, *descs = NULL, *det = NULL;
    json_object *inner = NULL, *v = NULL;
    nxl_kv_layout_config_t c;
    nxl_kv_layout_type_t type;
    nxl_kv_loc_t loc;
    nxl_mem_t mem;
    uint64_t dev, *buf;
    const char *vname, *agent, *str;
    int oc = 0;
    size_t n, i;
    nxl_status_t s;

    if ((s = jr_get(root, "LayoutDescriptor", "layout_config", json_type_object,
                    &lc)) != NXL_OK ||
        (s = jr_config(lc, "layout_config", false, &c)) != NXL_OK ||
        (s = jr_kind(root, "LayoutDescriptor", "location", &loc)) != NXL_OK ||
        (s = jr_get(root, "LayoutDescriptor", "nixl_metadata", json_type_object,
                    &md)) != NXL_OK ||
        (s = jr_get(md, "nixl_metadata", "agent_name", json_type_string, &v)) !=
            NXL_OK) {
        return s;
    }
    agent = json_object_get_string(v);
    if (strlen(agent) != (size_t)json_object_get_string_len(v)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "invalid value for `agent_name` (at nixl_metadata): "
                         "contains a NUL character");
    }
    if ((s = jr_mem(md, "nixl_metadata", &mem)) != NXL_OK ||
        (s = jr_u64(md, "nixl_metadata", "device_id", UINT64_MAX, &dev)) !=
            NXL_OK ||
        (s = check_mem(mem, loc, "nixl_metadata")) != NXL_OK ||
        (s = jr_get(root, "LayoutDescriptor", "memory_descriptors",
                    json_type_array, &descs)) != NXL_OK ||
        (s = jr_get(root, "LayoutDescriptor", "layout_type_details",
                    json_type_null, &det)) != NXL_OK ||
        (s = jr_variant(det, "layout_type_details", &vname, &inner)) !=
            NXL_OK) {
        return s;
    }
    n = json_object_array_length(descs);
    if (strcmp(vname, "FullyContiguous") == 0) {
        type = NXL_KV_FULLY_CONTIGUOUS;
        if ((s = jr_get(inner, "layout_type_details.FullyContiguous",
                        "block_format", json_type_string, &v)) != NXL_OK) {
            return s;
        }
        str = json_object_get_string(v);
        if (strcmp(str, "Operational") != 0) {
            return nxl__fail(NXL_ERR_PROTO,
                             "unknown variant `%.40s` for `block_format`, "
                             "expected Operational",
                             str);
        }
        if (n != 1) {
            return nxl__fail(NXL_ERR_PROTO,
                             "FullyContiguous layout requires exactly 1 "
                             "memory region, got %zu",
                             n);
        }
    } else if (strcmp(vname, "LayerSeparate") == 0) {
        type = NXL_KV_LAYER_SEPARATE;
        if ((s = jr_get(inner, "layout_type_details.LayerSeparate", "block_dim",
                        json_type_string, &v)) != NXL_OK) {
            return s;
        }
        str = json_object_get_string(v);
        if (strcmp(str, "BlockIsFirstDim") == 0) {
            oc = 0;
        } else if (strcmp(str, "BlockIsSecondDim") == 0) {
            oc = 1;
        } else {
            return nxl__fail(NXL_ERR_PROTO,
                             "unknown variant `%.40s` for `block_dim`, "
                             "expected BlockIsFirstDim or BlockIsSecondDim",
                             str);
        }
        if (n != c.num_layers) {
            return nxl__fail(NXL_ERR_PROTO,
                             "LayerSeparate layout requires %zu memory "
                             "regions (one per layer), got %zu",
                             c.num_layers, n);
        }
    } else if (strcmp(vname, "ObjectLayout") == 0) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "ObjectLayout descriptors are not supported");
    } else {
        return nxl__fail(NXL_ERR_PROTO,
                         "unknown variant `%.40s` for `layout_type_details`",
                         vname);
    }
    s = nxl_kv_layout_config_validate(&c);
    if (s != NXL_OK) {
        return as_proto(s, "layout_config");
    }
    buf = calloc(3 * n, sizeof(uint64_t));
    if (buf == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "kv layout json: out of memory");
    }
    for (i = 0; i < n; i++) {
        json_object *d = json_object_array_get_idx(descs, i);
        char where[48];

        snprintf(where, sizeof(where), "memory_descriptors[%zu]", i);
        if (!json_object_is_type(d, json_type_object)) {
            s = nxl__fail(NXL_ERR_PROTO,
                          "invalid type (at %s): expected an object", where);
            goto out;
        }
        if ((s = jr_u64(d, where, "addr", UINT64_MAX, &buf[i])) != NXL_OK ||
            (s = jr_u64(d, where, "size", SIZE_MAX, &buf[n + i])) != NXL_OK) {
            goto out;
        }
    }
    s = nxl__kv_layout_new_view(&c, type, oc, loc, mem, dev, buf, buf + n,
                                buf + 2 * n, n, agent, l_p);
    s = as_proto(s, "memory_descriptors");
out:
    free(buf);
    return s;
}

/* nxl_kv_layout_from_json_v2 rebuilds a remote view (owning no storage)
 * from len bytes of v2 JSON; the owner agent is nixl_metadata.agent_name.
 * The version is checked before the rest: > 1 -> NXL_ERR_NOT_SUPPORTED
 * "Unsupported serialization version: v. Maximum supported: 1"; an
 * ObjectLayout -> NXL_ERR_NOT_SUPPORTED; malformed -> NXL_ERR_PROTO;
 * NXL_ERR_NOMEM. Thread-safe. */
NXL_API nxl_status_t
nxl_kv_layout_from_json_v2(const void *json, size_t len, nxl_kv_layout_t **l_p)
{
    json_object *root, *v = NULL;
    uint64_t version = 0;
    nxl_status_t s;

    if (l_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "nxl_kv_layout_from_json_v2: NULL output");
    }
    s = jr_parse(json, len, &root);
    if (s != NXL_OK) {
        return s;
    }
    if (!json_object_is_type(root, json_type_object)) {
        s = nxl__fail(NXL_ERR_PROTO, "invalid type (at LayoutDescriptor): "
                                     "expected an object");
    } else if ((s = jr_get(root, "LayoutDescriptor", "version", json_type_null,
                           &v)) == NXL_OK &&
               (s = jr_uint(v, "LayoutDescriptor", "version", UINT32_MAX,
                            &version)) == NXL_OK) {
        if (version > 1) {
            s = nxl__fail(NXL_ERR_NOT_SUPPORTED,
                          "Unsupported serialization version: %" PRIu64
                          ". Maximum supported: 1",
                          version);
        } else {
            s = v2_build(root, l_p);
        }
    }
    json_object_put(root);
    return s;
}
