/*
 * media.c - decoded media over NIXL reads (reference/dynamo-components.md
 * §13): the producer of Dynamo's frontend (a decoded HWC uint8 image,
 * copied into library memory, registered, described by an
 * RdmaMediaDataDescriptor with its xxh3-64 content hash) and the consumer
 * of its workers (decode the descriptor, read it with a connector).
 *
 * RdmaMediaDataDescriptor, as serde writes it (tensor info flattened):
 *   {"nixl_metadata":"b64:...",
 *    "nixl_descriptor":{"addr":A,"size":S,"mem_type":"Dram","device_id":0},
 *    "shape":[H,W,C],"dtype":"UINT8",
 *    "metadata":{"Image":{"format":"Png","color_type":"Rgb8","layout":"HWC"}},
 *    "content_hash":"7a9bbcb11a898630"}
 * The reader ignores unknown fields (serde's default, no deny_unknown_fields
 * on that struct) and checks the rest.
 */
#include "connect.h"

#include <json-c/json.h>
#include <xxhash.h>

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MEDIA_MODEL "RdmaMediaDataDescriptor"
#define MEDIA_DELAY_DEFAULT_US 1000u
#define MEDIA_DELAY_MAX_US 1000000u

struct nxl_media {
    nxl_agent_t *agent;
    uint8_t *data; /* the registered copy */
    size_t size;
    bool shared;       /* from nxl_mem_alloc_shared (else malloc) */
    uint64_t shape[3]; /* H, W, C */
    char format[32];   /* "" = null */
    uint64_t hash;
};

/* ---- hash, limits, environment ------------------------------------------- */

NXL_API nxl_status_t
nxl_media_content_hash(const uint64_t *shape, size_t ndim, const void *data,
                       size_t len, uint64_t *hash_p)
{
    XXH3_state_t *s;
    uint8_t le[8], dtype = 0; /* UINT8 */
    size_t i;

    if ((shape == NULL && ndim > 0) || (data == NULL && len > 0) ||
        hash_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "media_content_hash: NULL argument");
    }
    s = XXH3_createState();
    if (s == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "media_content_hash: out of memory");
    }
    (void)XXH3_64bits_reset(s);
    /* Rank and dims fixed-width, so that shapes cannot alias. */
    nxl__put_le64(le, (uint64_t)ndim);
    (void)XXH3_64bits_update(s, le, sizeof(le));
    for (i = 0; i < ndim; i++) {
        nxl__put_le64(le, shape[i]);
        (void)XXH3_64bits_update(s, le, sizeof(le));
    }
    (void)XXH3_64bits_update(s, &dtype, 1);
    if (len > 0) {
        (void)XXH3_64bits_update(s, data, len);
    }
    *hash_p = XXH3_64bits_digest(s);
    XXH3_freeState(s);
    return NXL_OK;
}

NXL_API void
nxl_media_limits_init(nxl_media_limits_t *limits)
{
    if (limits != NULL) {
        *limits = (nxl_media_limits_t){0, 0, NXL_MEDIA_DEFAULT_MAX_ALLOC};
    }
}

NXL_API uint32_t
nxl_media_progress_delay_us(void)
{
    const char *v = getenv("DYN_MM_NIXL_PROGRESS_DELAY_US");
    const char *p;
    uint64_t x = 0;

    if (v == NULL) {
        return MEDIA_DELAY_DEFAULT_US;
    }
    p = v + (*v == '+');
    if (*p == '\0') {
        goto bad;
    }
    for (; *p != '\0'; p++) {
        if (!isdigit((unsigned char)*p) || x > (UINT64_MAX - 9) / 10) {
            goto bad;
        }
        x = x * 10 + (uint64_t)(*p - '0');
    }
    if (x > MEDIA_DELAY_MAX_US) {
        nxl__warn("media: DYN_MM_NIXL_PROGRESS_DELAY_US=%s exceeds %u; using "
                  "%u",
                  v, MEDIA_DELAY_MAX_US, MEDIA_DELAY_DEFAULT_US);
        return MEDIA_DELAY_DEFAULT_US;
    }
    return (uint32_t)x;

bad:
    nxl__warn("media: DYN_MM_NIXL_PROGRESS_DELAY_US=%s is not a number; "
              "using %u",
              v, MEDIA_DELAY_DEFAULT_US);
    return MEDIA_DELAY_DEFAULT_US;
}

/* ---- producer ------------------------------------------------------------ */

static const char *const color_types[5] = {NULL, "L8", "La8", "Rgb8", "Rgba8"};

/* media_free_data frees the pixel copy. */
static void
media_free_data(nxl_media_t *m)
{
    if (m->shared) {
        nxl_mem_free_shared(m->data);
    } else {
        free(m->data);
    }
    m->data = NULL;
}

NXL_API nxl_status_t
nxl_media_image_create(nxl_agent_t *agent, const void *pixels, uint32_t height,
                       uint32_t width, uint32_t channels, const char *format,
                       const nxl_media_limits_t *limits, nxl_media_t **media_p)
{
    nxl_media_limits_t lim;
    nxl_media_t *m;
    nxl_desc_t d;
    nxl_dlist_t dl;
    nxl_status_t st;
    uint64_t bytes;
    void *mem = NULL;
    size_t i;

    if (agent == NULL || pixels == NULL || media_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "media_image_create: NULL argument");
    }
    if (limits == NULL) {
        nxl_media_limits_init(&lim);
    } else {
        lim = *limits;
    }
    if (height == 0 || width == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "media_image_create: a %ux%u image is empty", width,
                         height);
    }
    if (format != NULL) {
        size_t n = strlen(format);

        for (i = 0; i < n; i++) {
            if (!isalnum((unsigned char)format[i])) {
                break;
            }
        }
        if (n == 0 || i < n || n >= sizeof(((nxl_media_t *)0)->format)) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "media_image_create: format must be an image "
                             "format name such as \"Png\" (letters and "
                             "digits)");
        }
    }
    /* The image decoder's limits (the image crate's texts), then the
     * channel conversion, in Dynamo's order. */
    if ((lim.max_image_width != 0 && width > lim.max_image_width) ||
        (lim.max_image_height != 0 && height > lim.max_image_height)) {
        return nxl__fail(NXL_ERR_NOT_ALLOWED,
                         "Image size exceeds limit: %ux%u, limits %ux%u (0 = "
                         "none)",
                         width, height, lim.max_image_width,
                         lim.max_image_height);
    }
    bytes = (uint64_t)height * width;
    if (channels != 0 && bytes > UINT64_MAX / channels) {
        bytes = UINT64_MAX;
    } else {
        bytes *= channels;
    }
    if (lim.max_alloc != 0 && bytes > lim.max_alloc) {
        return nxl__fail(NXL_ERR_NOT_ALLOWED,
                         "Memory limit exceeded: %" PRIu64 " bytes of image, "
                         "max_alloc %" PRIu64,
                         bytes, lim.max_alloc);
    }
    if (channels < 1 || channels > 4) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "Unsupported channel count %u",
                         channels);
    }
    if (bytes > SIZE_MAX / 2) {
        return nxl__fail(NXL_ERR_NOMEM, "media_image_create: %" PRIu64 " bytes",
                         bytes);
    }

    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "media_image_create: out of memory");
    }
    m->agent = agent;
    m->size = (size_t)bytes;
    m->shape[0] = height;
    m->shape[1] = width;
    m->shape[2] = channels;
    if (format != NULL) {
        snprintf(m->format, sizeof(m->format), "%s", format);
    }
    /* A memfd region: same-host readers map it once. */
    if (nxl_mem_alloc_shared(m->size, &mem) == NXL_OK) {
        m->shared = true;
        m->data = mem;
    } else {
        m->data = malloc(m->size);
        if (m->data == NULL) {
            st = nxl__fail(NXL_ERR_NOMEM, "media_image_create: %zu bytes",
                           m->size);
            goto err_free;
        }
    }
    memcpy(m->data, pixels, m->size);
    st = nxl_media_content_hash(m->shape, 3, m->data, m->size, &m->hash);
    if (st != NXL_OK) {
        goto err_data;
    }
    d = (nxl_desc_t){(uint64_t)(uintptr_t)m->data, m->size, 0};
    dl = (nxl_dlist_t){NXL_DRAM, &d, 1};
    st = nxl_mem_register(agent, &dl, NULL);
    if (st != NXL_OK) {
        goto err_data;
    }
    *media_p = m;
    return NXL_OK;

err_data:
    media_free_data(m);
err_free:
    free(m);
    return st;
}

NXL_API nxl_status_t
nxl_media_json(const nxl_media_t *m, nxl_blob_t *json_p)
{
    nxl_desc_t d;
    nxl_dlist_t dl;
    nxl_opts_t opts;
    nxl_blob_t md;
    nxl__wbuf_t w;
    nxl_status_t st;
    uint8_t *z;
    size_t zn;
    char hex[17];

    if (m == NULL || json_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "media_json: NULL argument");
    }
    /* The image's own region and the connection info are all a reader
     * needs. */
    d = (nxl_desc_t){(uint64_t)(uintptr_t)m->data, m->size, 0};
    dl = (nxl_dlist_t){NXL_DRAM, &d, 1};
    nxl_opts_init(&opts);
    opts.include_conn_info = 1;
    st = nxl_md_local_partial(m->agent, &dl, &opts, &md);
    if (st != NXL_OK) {
        return st;
    }
    st = nxl__md_deflate(md.data, md.len, &z, &zn);
    nxl_blob_free(&md);
    if (st != NXL_OK) {
        return st;
    }
    nxl__wbuf_init(&w);
    nxl__json_text(&w, "{\"nixl_metadata\":\"");
    nxl__md_str_append(&w, z, zn, false);
    free(z);
    nxl__json_text(&w, "\",\"nixl_descriptor\":{\"addr\":");
    nxl__json_u64(&w, d.addr);
    nxl__json_text(&w, ",\"size\":");
    nxl__json_u64(&w, d.len);
    nxl__json_text(&w, ",\"mem_type\":\"Dram\",\"device_id\":0},\"shape\":[");
    nxl__json_u64(&w, m->shape[0]);
    nxl__wbuf_u8(&w, ',');
    nxl__json_u64(&w, m->shape[1]);
    nxl__wbuf_u8(&w, ',');
    nxl__json_u64(&w, m->shape[2]);
    nxl__json_text(&w, "],\"dtype\":\"UINT8\",\"metadata\":{\"Image\":{"
                       "\"format\":");
    if (m->format[0] != '\0') {
        nxl__json_str(&w, m->format, strlen(m->format));
    } else {
        nxl__json_text(&w, "null");
    }
    nxl__json_text(&w, ",\"color_type\":\"");
    nxl__json_text(&w, color_types[m->shape[2]]);
    nxl__json_text(&w, "\",\"layout\":\"HWC\"}},\"content_hash\":\"");
    snprintf(hex, sizeof(hex), "%016" PRIx64, m->hash);
    nxl__json_text(&w, hex);
    nxl__json_text(&w, "\"}");
    return nxl__json_finish(&w, json_p);
}

NXL_API uint64_t
nxl_media_hash(const nxl_media_t *m)
{
    return m ? m->hash : 0;
}

NXL_API const void *
nxl_media_data(const nxl_media_t *m, size_t *size_p)
{
    if (m == NULL) {
        return NULL;
    }
    if (size_p != NULL) {
        *size_p = m->size;
    }
    return m->data;
}

NXL_API void
nxl_media_destroy(nxl_media_t *m)
{
    nxl_desc_t d;
    nxl_dlist_t dl;

    if (m == NULL) {
        return;
    }
    d = (nxl_desc_t){(uint64_t)(uintptr_t)m->data, m->size, 0};
    dl = (nxl_dlist_t){NXL_DRAM, &d, 1};
    if (nxl_mem_deregister(m->agent, &dl, NULL) != NXL_OK) {
        nxl__warn("media: deregistering an image: %s", nxl_last_error());
    }
    media_free_data(m);
    free(m);
}

NXL_API nxl_status_t
nxl_media_discard_notifs(nxl_agent_t *agent)
{
    nxl_notif_list_t *list;
    nxl_status_t st;

    st = nxl_notifs_get(agent, &list, NULL);
    if (st != NXL_OK) {
        return st;
    }
    nxl_notif_list_free(list);
    return NXL_OK;
}

/* ---- consumer ------------------------------------------------------------ */

/* mfield finds key in obj: "missing field `key`" (serde) otherwise. */
static nxl_status_t
mfield(json_object *obj, const char *at, const char *key, json_type t,
       json_object **v_p)
{
    json_object *v = NULL;

    *v_p = NULL;
    if (!json_object_object_get_ex(obj, key, &v)) {
        return nxl__fail(NXL_ERR_PROTO, "%s: %smissing field `%s`", MEDIA_MODEL,
                         at, key);
    }
    if (v == NULL || !json_object_is_type(v, t)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "%s: %s%s: invalid type: expected %s, got %s",
                         MEDIA_MODEL, at, key, json_type_to_name(t),
                         json_type_to_name(json_object_get_type(v)));
    }
    *v_p = v;
    return NXL_OK;
}

/* mu64 reads a non-negative JSON integer below 2^64 - 1. */
static nxl_status_t
mu64(json_object *v, const char *at, const char *key, uint64_t *u_p)
{
    uint64_t u;

    if (v == NULL || !json_object_is_type(v, json_type_int) ||
        json_object_get_int64(v) < 0) {
        return nxl__fail(NXL_ERR_PROTO,
                         "%s: %s%s: invalid value: expected an unsigned "
                         "integer",
                         MEDIA_MODEL, at, key);
    }
    u = json_object_get_uint64(v);
    if (u == UINT64_MAX) {
        return nxl__fail(NXL_ERR_PROTO, "%s: %s%s: integer out of range",
                         MEDIA_MODEL, at, key);
    }
    *u_p = u;
    return NXL_OK;
}

/* mfield_u64 reads the unsigned field key of obj. */
static nxl_status_t
mfield_u64(json_object *obj, const char *at, const char *key, uint64_t *u_p)
{
    json_object *v;
    nxl_status_t st = mfield(obj, at, key, json_type_int, &v);

    return st != NXL_OK ? st : mu64(v, at, key, u_p);
}

NXL_API nxl_status_t
nxl_media_desc_decode(const void *json, size_t len, nxl_media_desc_t **desc_p)
{
    static const char *const mems[] = {"Dram", "Vram", "Block", "Object",
                                       "File"};
    json_object *root, *nd, *v, *meta = NULL, *hash = NULL;
    nxl_media_desc_t d, *out;
    const char *mds, *mt, *mtext, *hs;
    size_t mdn, mtn, i;
    uint64_t bytes = 1;
    nxl_status_t st;
    char *p;

    if (desc_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "media_desc_decode: NULL output");
    }
    st = nxl__json_parse(MEDIA_MODEL, json, len, (void **)&root);
    if (st != NXL_OK) {
        return st;
    }
    memset(&d, 0, sizeof(d));
    if (!json_object_is_type(root, json_type_object)) {
        st = nxl__fail(NXL_ERR_PROTO, "%s: invalid type: expected a map",
                       MEDIA_MODEL);
        goto out;
    }
    if ((st = mfield(root, "", "nixl_metadata", json_type_string, &v)) !=
        NXL_OK) {
        goto out;
    }
    mds = json_object_get_string(v);
    mdn = (size_t)json_object_get_string_len(v);
    if ((st = nxl__md_str_check(MEDIA_MODEL ": nixl_metadata: ", mds, mdn)) !=
        NXL_OK) {
        goto out;
    }
    if ((st = mfield(root, "", "nixl_descriptor", json_type_object, &nd)) !=
            NXL_OK ||
        (st = mfield_u64(nd, "nixl_descriptor.", "addr", &d.addr)) != NXL_OK ||
        (st = mfield_u64(nd, "nixl_descriptor.", "size", &d.size)) != NXL_OK ||
        (st = mfield(nd, "nixl_descriptor.", "mem_type", json_type_string,
                     &v)) != NXL_OK) {
        goto out;
    }
    mt = json_object_get_string(v);
    for (i = 0; i < NXL__ARRAY_SIZE(mems); i++) {
        if (strcmp(mt, mems[i]) == 0) {
            break;
        }
    }
    if (i == NXL__ARRAY_SIZE(mems)) {
        st = nxl__fail(NXL_ERR_PROTO,
                       "%s: nixl_descriptor.mem_type: unknown or "
                       "untransferable variant (expected Dram, Vram, Block, "
                       "Object or File)",
                       MEDIA_MODEL);
        goto out;
    }
    d.mem_type = (nxl_mem_t)i;
    if ((st = mfield_u64(nd, "nixl_descriptor.", "device_id", &d.device_id)) !=
        NXL_OK) {
        goto out;
    }
    if ((st = mfield(root, "", "shape", json_type_array, &v)) != NXL_OK) {
        goto out;
    }
    d.ndim = json_object_array_length(v);
    if (d.ndim == 0 || d.ndim > NXL_MEDIA_MAX_DIMS) {
        st = nxl__fail(NXL_ERR_PROTO, "%s: shape: %zu dimensions (1..%d)",
                       MEDIA_MODEL, d.ndim, NXL_MEDIA_MAX_DIMS);
        goto out;
    }
    for (i = 0; i < d.ndim; i++) {
        st = mu64(json_object_array_get_idx(v, i), "", "shape", &d.shape[i]);
        if (st != NXL_OK) {
            goto out;
        }
        if (d.shape[i] != 0 && bytes > UINT64_MAX / d.shape[i]) {
            st = nxl__fail(NXL_ERR_PROTO,
                           "%s: shape: the element count "
                           "overflows",
                           MEDIA_MODEL);
            goto out;
        }
        bytes *= d.shape[i];
    }
    if ((st = mfield(root, "", "dtype", json_type_string, &v)) != NXL_OK) {
        goto out;
    }
    if (strcmp(json_object_get_string(v), "UINT8") != 0) {
        st = nxl__fail(NXL_ERR_PROTO,
                       "%s: dtype: unknown variant, expected `UINT8`",
                       MEDIA_MODEL);
        goto out;
    }
    if (bytes != d.size) {
        st = nxl__fail(NXL_ERR_PROTO,
                       "%s: shape holds %" PRIu64 " bytes but the descriptor "
                       "%" PRIu64,
                       MEDIA_MODEL, bytes, d.size);
        goto out;
    }
    (void)json_object_object_get_ex(root, "metadata", &meta);
    mtext = meta == NULL ? "null"
                         : json_object_to_json_string_ext(
                               meta, JSON_C_TO_STRING_PLAIN |
                                         JSON_C_TO_STRING_NOSLASHESCAPE);
    if (mtext == NULL) {
        st = nxl__fail(NXL_ERR_NOMEM, "%s: out of memory", MEDIA_MODEL);
        goto out;
    }
    mtn = strlen(mtext);
    if (json_object_object_get_ex(root, "content_hash", &hash) &&
        hash != NULL) {
        if (!json_object_is_type(hash, json_type_string) ||
            json_object_get_string_len(hash) != 16 ||
            !nxl__hex_check(json_object_get_string(hash), 16)) {
            st = nxl__fail(NXL_ERR_PROTO,
                           "%s: content_hash: expected 16 hex digits",
                           MEDIA_MODEL);
            goto out;
        }
        hs = json_object_get_string(hash);
        d.has_content_hash = 1;
        d.content_hash = strtoull(hs, NULL, 16);
    }

    out = malloc(sizeof(*out) + mdn + 1 + mtn + 1 + sizeof("UINT8"));
    if (out == NULL) {
        st = nxl__fail(NXL_ERR_NOMEM, "%s: out of memory", MEDIA_MODEL);
        goto out;
    }
    *out = d;
    p = (char *)(out + 1);
    memcpy(p, mds, mdn);
    p[mdn] = '\0';
    out->nixl_metadata = p;
    p += mdn + 1;
    memcpy(p, mtext, mtn + 1);
    out->metadata_json = p;
    p += mtn + 1;
    memcpy(p, "UINT8", sizeof("UINT8"));
    out->dtype = p;
    *desc_p = out;
    st = NXL_OK;

out:
    json_object_put(root);
    return st;
}

NXL_API void
nxl_media_desc_free(nxl_media_desc_t *desc)
{
    free(desc);
}

NXL_API nxl_status_t
nxl_media_read_begin(nxl_connector_t *conn, const void *media_json, size_t len,
                     const nxl_connect_desc_t *local, size_t n,
                     nxl_connect_op_t **op_p)
{
    nxl_media_desc_t *d;
    nxl_connect_desc_t rd;
    nxl_rdma_metadata_t md;
    char key[NXL_CONNECT_UUID_LEN];
    nxl_status_t st;

    if (conn == NULL || op_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "media_read_begin: NULL argument");
    }
    st = nxl_media_desc_decode(media_json, len, &d);
    if (st != NXL_OK) {
        return st;
    }
    st = nxl_connect_uuid4(key);
    if (st != NXL_OK) {
        goto out;
    }
    /* Dynamo: "cpu" when mem_type is Dram, else "cuda:<device_id>". */
    rd = (nxl_connect_desc_t){
        .ptr = d->addr,
        .size = d->size,
        .device = d->mem_type == NXL_DRAM ? NXL_CONNECT_DEVICE_HOST
                                          : NXL_CONNECT_DEVICE_CUDA,
        .device_id = d->mem_type == NXL_DRAM ? 0 : d->device_id,
    };
    md = (nxl_rdma_metadata_t){
        .descriptors = &rd,
        .num_descriptors = 1,
        .nixl_metadata = d->nixl_metadata,
        .notification_key = key,
        .operation_kind = NXL_CONNECT_READ,
    };
    st = nxl__rdma_md_check(NXL_ERR_PROTO, &md);
    if (st == NXL_OK) {
        st = nxl__connect_begin(conn, NXL_CONNECT_READ, local, n, &md, op_p);
    }
out:
    nxl_media_desc_free(d);
    return st;
}
