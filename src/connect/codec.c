/*
 * codec.c - the connector's wire forms (docs/connect.md):
 *   SerializedDescriptor  {"device": "cpu"|"cuda:N", "ptr": int, "size": int}
 *   RdmaMetadata          {"descriptors": [...], "nixl_metadata": str,
 *                          "notification_key": str, "operation_kind": int}
 *   metadata string       "b64:" + base64(zlib level 6(agent metadata)),
 *                         legacy: hex(zlib(...)) (decoded, never written
 *                         unless asked)
 *
 * The decoders take peer input. They follow Dynamo's pydantic models
 * (extra="forbid", the field validators, their texts) and are stricter
 * where pydantic's lax mode would coerce: integers must be JSON integers,
 * strings JSON strings, every field present. Messages are pydantic-style,
 * "<Model>: <location>: <what>". Every length is checked before use; the
 * inflater stops at its bound; nothing here keeps a pointer into the
 * input.
 */
#include "connect.h"

#include <json-c/json.h>
#include <zlib.h>

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- enum names ---------------------------------------------------------- */

NXL_API const char *
nxl_connect_state_str(nxl_connect_state_t state)
{
    switch (state) {
    case NXL_CONNECT_INITIALIZED:
        return "INIT";
    case NXL_CONNECT_IN_PROGRESS:
        return "PROC";
    case NXL_CONNECT_COMPLETE:
        return "DONE";
    case NXL_CONNECT_ERRORED:
        return "ERR";
    case NXL_CONNECT_CANCELLED:
        return "STOP";
    default:
        return "<invalid>";
    }
}

NXL_API const char *
nxl_connect_kind_str(nxl_connect_kind_t kind)
{
    switch (kind) {
    case NXL_CONNECT_READ:
        return "READ";
    case NXL_CONNECT_WRITE:
        return "WRITE";
    default:
        return "<invalid>";
    }
}

NXL_API const char *
nxl_connect_device_str(nxl_connect_device_t device)
{
    switch (device) {
    case NXL_CONNECT_DEVICE_HOST:
        return "cpu";
    case NXL_CONNECT_DEVICE_CUDA:
        return "cuda";
    default:
        return "<invalid>";
    }
}

nxl_mem_t
nxl__device_mem(nxl_connect_device_t device)
{
    return device == NXL_CONNECT_DEVICE_CUDA ? NXL_VRAM : NXL_DRAM;
}

/* ---- device strings ------------------------------------------------------ */

#define DEVICE_VALUE_MAX 128

/* dev_norm copies s stripped of ASCII whitespace and lowercased into out
 * (cap bytes). false when it does not fit. */
static bool
dev_norm(const char *s, size_t n, char *out, size_t cap)
{
    size_t b = 0, e = n, i;

    while (b < e && isspace((unsigned char)s[b])) {
        b++;
    }
    while (e > b && isspace((unsigned char)s[e - 1])) {
        e--;
    }
    if (e - b >= cap) {
        return false;
    }
    for (i = b; i < e; i++) {
        out[i - b] = (char)tolower((unsigned char)s[i]);
    }
    out[e - b] = '\0';
    return true;
}

/* dev_id parses the id of a normalized CUDA string as Python's
 * int(v.split(":")[1]) would (0 without a ':'), refusing negative ids.
 * who prefixes the message. */
static nxl_status_t
dev_id(nxl_status_t status, const char *who, const char *v, uint64_t *id_p)
{
    const char *c = strchr(v, ':'), *e, *p;
    char seg[DEVICE_VALUE_MAX];
    uint64_t id = 0;
    size_t len;
    bool neg = false, digits = false;

    if (c == NULL) {
        *id_p = 0;
        return NXL_OK;
    }
    e = strchr(c + 1, ':');
    len = e ? (size_t)(e - (c + 1)) : strlen(c + 1);
    memcpy(seg, c + 1, len);
    seg[len] = '\0';
    p = seg;
    while (isspace((unsigned char)*p)) {
        p++;
    }
    if (*p == '+' || *p == '-') {
        neg = *p == '-';
        p++;
    }
    for (; isdigit((unsigned char)*p); p++) {
        digits = true;
        if (id > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) {
            return nxl__fail(status, "%sdevice id '%s' is out of range", who,
                             seg);
        }
        id = id * 10 + (uint64_t)(*p - '0');
    }
    while (isspace((unsigned char)*p)) {
        p++;
    }
    if (!digits || *p != '\0') {
        return nxl__fail(
            status, "%sinvalid literal for int() with base 10: '%s'", who, seg);
    }
    if (neg && id != 0) {
        return nxl__fail(status, "%sdevice id -%" PRIu64 " is negative", who,
                         id);
    }
    *id_p = id;
    return NXL_OK;
}

NXL_API nxl_status_t
nxl_connect_device_parse(const char *s, nxl_connect_device_t *device_p,
                         uint64_t *id_p)
{
    char v[DEVICE_VALUE_MAX];
    uint64_t id = 0;
    nxl_status_t st;

    if (s == NULL || device_p == NULL || id_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connect_device_parse: NULL argument");
    }
    if (!dev_norm(s, strlen(s), v, sizeof(v))) {
        goto err_format;
    }
    if (strncmp(v, "cuda", 4) == 0 || strncmp(v, "gpu", 3) == 0) {
        st = dev_id(NXL_ERR_INVALID_PARAM, "", v, &id);
        if (st != NXL_OK) {
            return st;
        }
        *device_p = NXL_CONNECT_DEVICE_CUDA;
        *id_p = id;
        return NXL_OK;
    }
    if (strncmp(v, "cpu", 3) == 0 || strncmp(v, "host", 4) == 0) {
        *device_p = NXL_CONNECT_DEVICE_HOST;
        *id_p = 0;
        return NXL_OK;
    }
err_format:
    return nxl__fail(NXL_ERR_INVALID_PARAM,
                     "Argument `metadata` must be in the format "
                     "'cuda:<device_id>' or 'cpu'.");
}

NXL_API nxl_status_t
nxl_connect_device_format(nxl_connect_device_t device, uint64_t id, char *buf,
                          size_t cap)
{
    char tmp[32];
    int n;

    if (buf == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connect_device_format: NULL buffer");
    }
    if (device == NXL_CONNECT_DEVICE_HOST) {
        n = snprintf(tmp, sizeof(tmp), "cpu");
    } else if (device == NXL_CONNECT_DEVICE_CUDA) {
        n = snprintf(tmp, sizeof(tmp), "cuda:%" PRIu64, id);
    } else {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connect_device_format: device kind %d is not HOST "
                         "or CUDA",
                         (int)device);
    }
    if (n < 0 || (size_t)n >= cap) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connect_device_format: buffer of %zu bytes is too "
                         "small",
                         cap);
    }
    memcpy(buf, tmp, (size_t)n + 1);
    return NXL_OK;
}

/* ---- hex (base64 is in util) -------------------------------------------- */

/* hex_val returns the value of hex digit c, or -1. */
static int
hex_val(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

bool
nxl__hex_check(const char *s, size_t n)
{
    size_t i;

    if (n % 2 != 0) {
        return false;
    }
    for (i = 0; i < n; i++) {
        if (hex_val(s[i]) < 0) {
            return false;
        }
    }
    return true;
}

nxl_status_t
nxl__md_str_check(const char *who, const char *s, size_t n)
{
    size_t dn;

    if (n == 0) {
        return nxl__fail(NXL_ERR_PROTO,
                         "%sArgument `nixl_metadata` cannot be empty.", who);
    }
    if (n >= 4 && memcmp(s, "b64:", 4) == 0) {
        if (!nxl__b64_check(s + 4, n - 4, &dn)) {
            return nxl__fail(NXL_ERR_PROTO,
                             "%sthe metadata string after \"b64:\" is not "
                             "padded standard base64 (%zu characters)",
                             who, n - 4);
        }
        return NXL_OK;
    }
    if (!nxl__hex_check(s, n)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "%sthe metadata string is neither \"b64:\" + base64 "
                         "nor hex (the legacy form)",
                         who);
    }
    return NXL_OK;
}

/* ---- zlib ---------------------------------------------------------------- */

nxl_status_t
nxl__md_deflate(const void *p, size_t n, uint8_t **out_p, size_t *out_n)
{
    uLongf zn;
    uint8_t *z;
    int zr;

    if ((uLong)n != n) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "connect: metadata too large");
    }
    zn = compressBound((uLong)n);
    z = malloc(zn ? zn : 1);
    if (z == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "connect: out of memory");
    }
    zr = compress2(z, &zn, p, (uLong)n, NXL_CONNECT_ZLIB_LEVEL);
    if (zr != Z_OK) {
        free(z);
        return nxl__fail(zr == Z_MEM_ERROR ? NXL_ERR_NOMEM : NXL_ERR_UNKNOWN,
                         "connect: zlib compress2: %s", zError(zr));
    }
    if (zn > n) {
        nxl__debug("connect: compressed metadata is larger than the "
                   "original (%lu > %zu)",
                   (unsigned long)zn, n);
    }
    *out_p = z;
    *out_n = zn;
    return NXL_OK;
}

void
nxl__md_str_append(nxl__wbuf_t *w, const uint8_t *z, size_t n, bool hex)
{
    static const char digits[] = "0123456789abcdef";
    char pair[2];
    size_t i;

    if (!hex) {
        nxl__wbuf_put(w, "b64:", 4);
        nxl__b64_encode(w, z, n);
        return;
    }
    nxl__wbuf_reserve(w, 2 * n);
    for (i = 0; i < n; i++) {
        pair[0] = digits[z[i] >> 4];
        pair[1] = digits[z[i] & 15];
        nxl__wbuf_put(w, pair, 2);
    }
}

NXL_API nxl_status_t
nxl_connect_md_encode(const void *md, size_t len, int hex, nxl_blob_t *str_p)
{
    nxl__wbuf_t w;
    uint8_t *z;
    size_t zn;
    nxl_status_t st;

    if ((md == NULL && len > 0) || str_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connect_md_encode: NULL argument");
    }
    st = nxl__md_deflate(md ? md : "", len, &z, &zn);
    if (st != NXL_OK) {
        return st;
    }
    nxl__wbuf_init(&w);
    nxl__md_str_append(&w, z, zn, hex != 0);
    free(z);
    return nxl__json_finish(&w, str_p);
}

/* md_inflate inflates exactly one zlib stream of n bytes into at most max
 * bytes (*out_p malloc'd, *out_n its size). */
static nxl_status_t
md_inflate(const uint8_t *z, size_t n, size_t max, uint8_t **out_p,
           size_t *out_n)
{
    z_stream zs;
    uint8_t *out = NULL, *grown;
    size_t cap, have = 0;
    nxl_status_t st;
    int zr;

    memset(&zs, 0, sizeof(zs));
    if (inflateInit(&zs) != Z_OK) {
        return nxl__fail(NXL_ERR_NOMEM, "connect: zlib inflateInit failed");
    }
    cap = NXL__MIN(NXL__MAX(n * 4, (size_t)4096), max + 1);
    zs.next_in = (Bytef *)(uintptr_t)z;
    zs.avail_in = 0;
    for (;;) {
        if (zs.avail_in == 0 && (size_t)(zs.next_in - z) < n) {
            size_t left = n - (size_t)(zs.next_in - z);

            zs.avail_in = (uInt)NXL__MIN(left, (size_t)UINT32_MAX);
        }
        if (out == NULL || have == cap) {
            if (out != NULL) {
                if (cap > max) {
                    st = nxl__fail(NXL_ERR_PROTO,
                                   "connect: agent metadata inflates beyond "
                                   "%zu bytes (refused)",
                                   max);
                    goto err;
                }
                cap = NXL__MIN(cap * 2, max + 1);
            }
            grown = realloc(out, cap);
            if (grown == NULL) {
                st = nxl__fail(NXL_ERR_NOMEM, "connect: out of memory");
                goto err;
            }
            out = grown;
        }
        zs.next_out = out + have;
        zs.avail_out = (uInt)NXL__MIN(cap - have, (size_t)UINT32_MAX);
        zr = inflate(&zs, Z_NO_FLUSH);
        have = (size_t)(zs.next_out - out);
        if (zr == Z_STREAM_END) {
            break;
        }
        if (have > max) {
            st = nxl__fail(NXL_ERR_PROTO,
                           "connect: agent metadata inflates beyond %zu "
                           "bytes (refused)",
                           max);
            goto err;
        }
        if (zr == Z_BUF_ERROR && zs.avail_in == 0 &&
            (size_t)(zs.next_in - z) >= n) {
            st = nxl__fail(NXL_ERR_PROTO,
                           "connect: zlib: incomplete or truncated stream");
            goto err;
        }
        if (zr != Z_OK && zr != Z_BUF_ERROR) {
            st = nxl__fail(zr == Z_MEM_ERROR ? NXL_ERR_NOMEM : NXL_ERR_PROTO,
                           "connect: zlib: %s", zs.msg ? zs.msg : zError(zr));
            goto err;
        }
    }
    if (have > max) {
        st = nxl__fail(NXL_ERR_PROTO,
                       "connect: agent metadata inflates beyond %zu bytes "
                       "(refused)",
                       max);
        goto err;
    }
    if ((size_t)(zs.next_in - z) + zs.avail_in != n || zs.avail_in != 0) {
        st = nxl__fail(NXL_ERR_PROTO,
                       "connect: %zu bytes after the end of the zlib stream",
                       n - (size_t)(zs.next_in - z));
        goto err;
    }
    inflateEnd(&zs);
    *out_p = out;
    *out_n = have;
    return NXL_OK;

err:
    inflateEnd(&zs);
    free(out);
    return st;
}

NXL_API nxl_status_t
nxl_connect_md_decode(const char *s, size_t len, size_t max_out,
                      nxl_blob_t *md_p)
{
    uint8_t *raw, *md = NULL;
    size_t rn = 0, mn = 0, i;
    nxl_status_t st;

    if ((s == NULL && len > 0) || md_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connect_md_decode: NULL argument");
    }
    if (max_out == 0) {
        max_out = NXL_CONNECT_MD_MAX;
    }
    st = nxl__md_str_check("", s, len);
    if (st != NXL_OK) {
        return st;
    }
    if (len >= 4 && memcmp(s, "b64:", 4) == 0) {
        (void)nxl__b64_check(s + 4, len - 4, &rn);
        raw = malloc(rn ? rn : 1);
        if (raw == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "connect: out of memory");
        }
        nxl__b64_decode(s + 4, len - 4, raw);
    } else {
        rn = len / 2;
        raw = malloc(rn ? rn : 1);
        if (raw == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "connect: out of memory");
        }
        for (i = 0; i < rn; i++) {
            raw[i] =
                (uint8_t)((hex_val(s[2 * i]) << 4) | hex_val(s[2 * i + 1]));
        }
    }
    st = md_inflate(raw, rn, max_out, &md, &mn);
    free(raw);
    if (st != NXL_OK) {
        return st;
    }
    md_p->data = md;
    md_p->len = mn;
    return NXL_OK;
}

/* ---- JSON text ----------------------------------------------------------- */

/* json_number_end checks the JSON number grammar at p[i..len) and returns
 * the index after it, or (size_t)-1:
 * -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static size_t
json_number_end(const char *p, size_t i, size_t len)
{
    size_t d;

    if (i < len && p[i] == '-') {
        i++;
    }
    if (i < len && p[i] == '0') {
        i++;
    } else if (i < len && p[i] >= '1' && p[i] <= '9') {
        while (i < len && isdigit((unsigned char)p[i])) {
            i++;
        }
    } else {
        return (size_t)-1;
    }
    if (i < len && p[i] == '.') {
        for (d = ++i; i < len && isdigit((unsigned char)p[i]); i++) {
        }
        if (i == d) {
            return (size_t)-1;
        }
    }
    if (i < len && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < len && (p[i] == '+' || p[i] == '-')) {
            i++;
        }
        for (d = i; i < len && isdigit((unsigned char)p[i]); i++) {
        }
        if (i == d) {
            return (size_t)-1;
        }
    }
    return i;
}

/* json_prescan refuses, before json-c sees the text, what RFC 8259 forbids
 * and json-c's strict mode still takes: single-quoted strings, NaN and
 * Infinity, numbers such as "1.", raw control characters in strings. The
 * offset of the first offence goes to *at. */
static bool
json_prescan(const char *p, size_t len, size_t *at)
{
    size_t i = 0, e;

    while (i < len) {
        unsigned char c = (unsigned char)p[i];

        if (c == '"') {
            for (i++; i < len && p[i] != '"'; i++) {
                if ((unsigned char)p[i] < 0x20) {
                    *at = i;
                    return false;
                }
                if (p[i] == '\\') {
                    i++;
                }
            }
            i++;
            continue;
        }
        if (c == '-' || isdigit(c)) {
            e = json_number_end(p, i, len);
            if (e == (size_t)-1) {
                *at = i;
                return false;
            }
            i = e;
            continue;
        }
        if (isalpha(c)) {
            for (e = i; e < len && isalpha((unsigned char)p[e]); e++) {
            }
            if (!((e - i == 4 && memcmp(p + i, "true", 4) == 0) ||
                  (e - i == 5 && memcmp(p + i, "false", 5) == 0) ||
                  (e - i == 4 && memcmp(p + i, "null", 4) == 0))) {
                *at = i;
                return false;
            }
            i = e;
            continue;
        }
        if (strchr("{}[]:, \t\r\n", c) == NULL) {
            *at = i;
            return false;
        }
        i++;
    }
    return true;
}

nxl_status_t
nxl__json_parse(const char *who, const void *json, size_t len, void **root_p)
{
    const char *p = json;
    char what[128];
    size_t end;

    if (json == NULL || len == 0) {
        return nxl__fail(NXL_ERR_PROTO, "%s: empty input", who);
    }
    if (len > NXL_CONNECT_JSON_MAX) {
        return nxl__fail(NXL_ERR_PROTO,
                         "%s: %zu bytes of JSON exceed the limit of %zu", who,
                         len, (size_t)NXL_CONNECT_JSON_MAX);
    }
    if (memchr(p, '\0', len) != NULL) {
        return nxl__fail(NXL_ERR_PROTO, "%s: NUL byte in the JSON text", who);
    }
    if (!json_prescan(p, len, &end)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "%s: invalid JSON: unexpected character at byte %zu",
                         who, end);
    }
    snprintf(what, sizeof(what), "%s: invalid JSON", who);
    return nxl__json_read(p, len, true, what, (struct json_object **)root_p);
}

/* ---- JSON readers -------------------------------------------------------- */

/* A field location for messages: "<Model>: descriptors.3.ptr: ". */
typedef struct jloc {
    char at[160];
} jloc_t;

/* loc_field sets l to "<model>: <prefix><name>: " (prefix may be ""). */
static void
loc_field(jloc_t *l, const char *model, const char *prefix, const char *name)
{
    snprintf(l->at, sizeof(l->at), "%s: %s%s: ", model, prefix, name);
}

/* key_print copies at most 48 printable characters of a JSON key. */
static void
key_print(const char *k, char *out, size_t cap)
{
    size_t i;

    for (i = 0; k[i] != '\0' && i + 4 < cap && i < 48; i++) {
        out[i] = isprint((unsigned char)k[i]) ? k[i] : '?';
    }
    if (k[i] != '\0' && i + 4 <= cap) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
}

/* check_extras refuses keys of obj not in names (extra="forbid"). */
static nxl_status_t
check_extras(json_object *obj, const char *model, const char *prefix,
             const char *const *names)
{
    char shown[64];
    size_t i;

    json_object_object_foreach(obj, key, val)
    {
        (void)val;
        for (i = 0; names[i] != NULL; i++) {
            if (strcmp(key, names[i]) == 0) {
                break;
            }
        }
        if (names[i] == NULL) {
            key_print(key, shown, sizeof(shown));
            return nxl__fail(NXL_ERR_PROTO,
                             "%s: %s%s: Extra inputs are not permitted", model,
                             prefix, shown);
        }
    }
    return NXL_OK;
}

/* get_field finds name in obj or fails "Field required". */
static nxl_status_t
get_field(json_object *obj, const jloc_t *l, const char *name,
          json_object **v_p)
{
    json_object *v = NULL;

    (void)name;
    if (!json_object_object_get_ex(obj, name, &v)) {
        return nxl__fail(NXL_ERR_PROTO, "%sField required", l->at);
    }
    *v_p = v;
    return NXL_OK;
}

/* get_int reads a JSON integer (not a bool, float or string) as int64 or,
 * when non-negative, as uint64 (json-c clamps values beyond 64 bits to
 * the extremes: those are refused). */
static nxl_status_t
get_int(json_object *v, const jloc_t *l, bool *neg_p, uint64_t *u_p)
{
    int64_t s;

    if (v == NULL || !json_object_is_type(v, json_type_int)) {
        return nxl__fail(NXL_ERR_PROTO, "%sInput should be a valid integer",
                         l->at);
    }
    s = json_object_get_int64(v);
    if (s < 0) {
        if (s == INT64_MIN) {
            return nxl__fail(NXL_ERR_PROTO,
                             "%sInput should be a valid integer, out of range",
                             l->at);
        }
        *neg_p = true;
        *u_p = (uint64_t)(-s);
        return NXL_OK;
    }
    *neg_p = false;
    *u_p = json_object_get_uint64(v);
    if (*u_p == UINT64_MAX) {
        return nxl__fail(NXL_ERR_PROTO,
                         "%sInput should be a valid integer, out of range",
                         l->at);
    }
    return NXL_OK;
}

/* get_str reads a JSON string. */
static nxl_status_t
get_str(json_object *v, const jloc_t *l, const char **s_p, size_t *n_p)
{
    if (v == NULL || !json_object_is_type(v, json_type_string)) {
        return nxl__fail(NXL_ERR_PROTO, "%sInput should be a valid string",
                         l->at);
    }
    *s_p = json_object_get_string(v);
    *n_p = (size_t)json_object_get_string_len(v);
    return NXL_OK;
}

static const char *const sd_fields[] = {"device", "ptr", "size", NULL};

/* sd_read reads a SerializedDescriptor object (at model, prefix such as
 * "descriptors.3.") into *d. */
static nxl_status_t
sd_read(json_object *obj, const char *model, const char *prefix,
        nxl_connect_desc_t *d)
{
    char v[DEVICE_VALUE_MAX];
    const char *s = NULL;
    size_t n = 0;
    json_object *f = NULL;
    jloc_t l;
    uint64_t u = 0;
    bool neg = false;
    nxl_status_t st;

    if (obj == NULL || !json_object_is_type(obj, json_type_object)) {
        size_t pl = strlen(prefix);

        if (pl == 0) {
            return nxl__fail(NXL_ERR_PROTO,
                             "%s: Input should be a valid dictionary or "
                             "instance of SerializedDescriptor",
                             model);
        }
        return nxl__fail(NXL_ERR_PROTO,
                         "%s: %.*s: Input should be a valid dictionary or "
                         "instance of SerializedDescriptor",
                         model, (int)(pl - 1), prefix);
    }
    st = check_extras(obj, model, prefix, sd_fields);
    if (st != NXL_OK) {
        return st;
    }
    loc_field(&l, model, prefix, "device");
    if ((st = get_field(obj, &l, "device", &f)) != NXL_OK ||
        (st = get_str(f, &l, &s, &n)) != NXL_OK) {
        return st;
    }
    if (memchr(s, '\0', n) != NULL || !dev_norm(s, n, v, sizeof(v)) ||
        !(strncmp(v, "cuda", 4) == 0 || strcmp(v, "cpu") == 0)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "%sArgument `device` must be one of 'cpu' or "
                         "'cuda:<device_id>'.",
                         l.at);
    }
    if (v[0] == 'c' && v[1] == 'u') {
        d->device = NXL_CONNECT_DEVICE_CUDA;
        st = dev_id(NXL_ERR_PROTO, l.at, v, &d->device_id);
        if (st != NXL_OK) {
            return st;
        }
    } else {
        d->device = NXL_CONNECT_DEVICE_HOST;
        d->device_id = 0;
    }
    loc_field(&l, model, prefix, "ptr");
    if ((st = get_field(obj, &l, "ptr", &f)) != NXL_OK ||
        (st = get_int(f, &l, &neg, &u)) != NXL_OK) {
        return st;
    }
    if (u == 0) {
        return nxl__fail(NXL_ERR_PROTO,
                         "%sArgument `ptr` cannot be zero (aka `null` or "
                         "`None`).",
                         l.at);
    }
    if (neg) {
        return nxl__fail(NXL_ERR_PROTO,
                         "%sa negative address (-%" PRIu64 ") is refused", l.at,
                         u);
    }
    d->ptr = u;
    loc_field(&l, model, prefix, "size");
    if ((st = get_field(obj, &l, "size", &f)) != NXL_OK ||
        (st = get_int(f, &l, &neg, &u)) != NXL_OK) {
        return st;
    }
    if (neg) {
        return nxl__fail(NXL_ERR_PROTO,
                         "%sArgument `size` must be an integer greater than "
                         "or equal to zero.",
                         l.at);
    }
    d->size = u;
    return NXL_OK;
}

nxl_status_t
nxl__desc_check(nxl_status_t status, const char *who,
                const nxl_connect_desc_t *d)
{
    if (d->device != NXL_CONNECT_DEVICE_HOST &&
        d->device != NXL_CONNECT_DEVICE_CUDA) {
        return nxl__fail(status,
                         "%sdevice: Argument `device` must be one of 'cpu' or "
                         "'cuda:<device_id>'.",
                         who);
    }
    if (d->ptr == 0) {
        return nxl__fail(status,
                         "%sptr: Argument `ptr` cannot be zero (aka `null` or "
                         "`None`).",
                         who);
    }
    return NXL_OK;
}

void
nxl__desc_json(nxl__wbuf_t *w, const nxl_connect_desc_t *d)
{
    char dev[48];

    (void)nxl_connect_device_format(d->device, d->device_id, dev, sizeof(dev));
    nxl__json_text(w, "{\"device\":\"");
    nxl__json_text(w, dev);
    nxl__json_text(w, "\",\"ptr\":");
    nxl__json_u64(w, d->ptr);
    nxl__json_text(w, ",\"size\":");
    nxl__json_u64(w, d->size);
    nxl__wbuf_u8(w, '}');
}

NXL_API nxl_status_t
nxl_connect_desc_encode(const nxl_connect_desc_t *d, nxl_blob_t *json_p)
{
    nxl__wbuf_t w;
    nxl_status_t st;

    if (d == NULL || json_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connect_desc_encode: NULL argument");
    }
    st = nxl__desc_check(NXL_ERR_INVALID_PARAM, "SerializedDescriptor: ", d);
    if (st != NXL_OK) {
        return st;
    }
    nxl__wbuf_init(&w);
    nxl__desc_json(&w, d);
    return nxl__json_finish(&w, json_p);
}

NXL_API nxl_status_t
nxl_connect_desc_decode(const void *json, size_t len, nxl_connect_desc_t *d_p)
{
    nxl_connect_desc_t d;
    void *root;
    nxl_status_t st;

    if (d_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connect_desc_decode: NULL output");
    }
    st = nxl__json_parse("SerializedDescriptor", json, len, &root);
    if (st != NXL_OK) {
        return st;
    }
    st = sd_read(root, "SerializedDescriptor", "", &d);
    json_object_put(root);
    if (st != NXL_OK) {
        return st;
    }
    *d_p = d;
    return NXL_OK;
}

/* ---- RdmaMetadata -------------------------------------------------------- */

static const char *const rm_fields[] = {
    "descriptors", "nixl_metadata", "notification_key", "operation_kind", NULL};

/* key_check applies the rules for a notification key (who prefixes). */
static nxl_status_t
key_check(nxl_status_t status, const char *who, const char *k, size_t n)
{
    if (n == 0) {
        return nxl__fail(status,
                         "%sArgument `notification_key` must not be an empty "
                         "string.",
                         who);
    }
    if (n > NXL_CONNECT_KEY_MAX) {
        return nxl__fail(status, "%sthe key of %zu bytes is longer than %d",
                         who, n, NXL_CONNECT_KEY_MAX);
    }
    if (memchr(k, '\0', n) != NULL) {
        return nxl__fail(status, "%sthe key holds a NUL byte", who);
    }
    return NXL_OK;
}

/* kind_check applies Dynamo's operation_kind validator. */
static nxl_status_t
kind_check(nxl_status_t status, const char *who, bool neg, uint64_t v)
{
    if (neg || v < 1 || v > 3) {
        return nxl__fail(status,
                         "%sArgument `operation_kind` must be an integer value "
                         "of `dynamo.nixl_connect.OperationKind`.",
                         who);
    }
    return NXL_OK;
}

nxl_status_t
nxl__rdma_md_check(nxl_status_t status, const nxl_rdma_metadata_t *md)
{
    char who[96];
    size_t i;
    nxl_status_t st;

    if (md->num_descriptors > 0 && md->descriptors == NULL) {
        return nxl__fail(status, "RdmaMetadata: descriptors: NULL with a "
                                 "count");
    }
    for (i = 0; i < md->num_descriptors; i++) {
        snprintf(who, sizeof(who), "RdmaMetadata: descriptors.%zu.", i);
        st = nxl__desc_check(status, who, &md->descriptors[i]);
        if (st != NXL_OK) {
            return st;
        }
    }
    if (md->nixl_metadata == NULL) {
        return nxl__fail(status, "RdmaMetadata: nixl_metadata: Field "
                                 "required");
    }
    st = nxl__md_str_check("RdmaMetadata: nixl_metadata: ", md->nixl_metadata,
                           strlen(md->nixl_metadata));
    if (st != NXL_OK) {
        char msg[256];

        snprintf(msg, sizeof(msg), "%s", nxl_last_error());
        return nxl__fail(status, "%s", msg);
    }
    if (md->notification_key == NULL) {
        return nxl__fail(status, "RdmaMetadata: notification_key: Field "
                                 "required");
    }
    st = key_check(status,
                   "RdmaMetadata: notification_key: ", md->notification_key,
                   strlen(md->notification_key));
    if (st != NXL_OK) {
        return st;
    }
    return kind_check(
        status, "RdmaMetadata: operation_kind: ", md->operation_kind < 0,
        md->operation_kind < 0 ? 0 : (uint64_t)md->operation_kind);
}

void
nxl__rdma_md_json(nxl__wbuf_t *w, const nxl_rdma_metadata_t *md)
{
    char num[24];
    size_t i;

    nxl__json_text(w, "{\"descriptors\":[");
    for (i = 0; i < md->num_descriptors; i++) {
        if (i > 0) {
            nxl__wbuf_u8(w, ',');
        }
        nxl__desc_json(w, &md->descriptors[i]);
    }
    nxl__json_text(w, "],\"nixl_metadata\":");
    nxl__json_str(w, md->nixl_metadata, strlen(md->nixl_metadata));
    nxl__json_text(w, ",\"notification_key\":");
    nxl__json_str(w, md->notification_key, strlen(md->notification_key));
    nxl__json_text(w, ",\"operation_kind\":");
    snprintf(num, sizeof(num), "%" PRId64, md->operation_kind);
    nxl__json_text(w, num);
    nxl__wbuf_u8(w, '}');
}

NXL_API nxl_status_t
nxl_rdma_metadata_encode(const nxl_rdma_metadata_t *md, nxl_blob_t *json_p)
{
    nxl__wbuf_t w;
    nxl_status_t st;

    if (md == NULL || json_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "rdma_metadata_encode: NULL argument");
    }
    st = nxl__rdma_md_check(NXL_ERR_INVALID_PARAM, md);
    if (st != NXL_OK) {
        return st;
    }
    nxl__wbuf_init(&w);
    nxl__rdma_md_json(&w, md);
    return nxl__json_finish(&w, json_p);
}

NXL_API nxl_status_t
nxl_rdma_metadata_decode(const void *json, size_t len,
                         nxl_rdma_metadata_t **md_p)
{
    static const char *const model = "RdmaMetadata";
    json_object *root, *descs = NULL, *f = NULL;
    nxl_connect_desc_t *d;
    nxl_rdma_metadata_t *md;
    const char *mds = NULL, *key = NULL;
    size_t n, i, mdn = 0, keyn = 0;
    char prefix[48];
    uint64_t kind = 0;
    bool neg = false;
    jloc_t l;
    nxl_status_t st;
    char *p;

    if (md_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "rdma_metadata_decode: NULL output");
    }
    st = nxl__json_parse(model, json, len, (void **)&root);
    if (st != NXL_OK) {
        return st;
    }
    if (!json_object_is_type(root, json_type_object)) {
        st = nxl__fail(NXL_ERR_PROTO,
                       "RdmaMetadata: Input should be a valid dictionary or "
                       "instance of RdmaMetadata");
        goto out_root;
    }
    st = check_extras(root, model, "", rm_fields);
    if (st != NXL_OK) {
        goto out_root;
    }
    loc_field(&l, model, "", "descriptors");
    if ((st = get_field(root, &l, "descriptors", &descs)) != NXL_OK) {
        goto out_root;
    }
    if (descs == NULL || !json_object_is_type(descs, json_type_array)) {
        st = nxl__fail(NXL_ERR_PROTO, "%sInput should be a valid list", l.at);
        goto out_root;
    }
    n = json_object_array_length(descs);
    loc_field(&l, model, "", "nixl_metadata");
    if ((st = get_field(root, &l, "nixl_metadata", &f)) != NXL_OK ||
        (st = get_str(f, &l, &mds, &mdn)) != NXL_OK ||
        (st = nxl__md_str_check(l.at, mds, mdn)) != NXL_OK) {
        goto out_root;
    }
    loc_field(&l, model, "", "notification_key");
    if ((st = get_field(root, &l, "notification_key", &f)) != NXL_OK ||
        (st = get_str(f, &l, &key, &keyn)) != NXL_OK ||
        (st = key_check(NXL_ERR_PROTO, l.at, key, keyn)) != NXL_OK) {
        goto out_root;
    }
    loc_field(&l, model, "", "operation_kind");
    if ((st = get_field(root, &l, "operation_kind", &f)) != NXL_OK ||
        (st = get_int(f, &l, &neg, &kind)) != NXL_OK ||
        (st = kind_check(NXL_ERR_PROTO, l.at, neg, kind)) != NXL_OK) {
        goto out_root;
    }

    /* One allocation: the struct, the descriptors, then the strings. */
    md = calloc(1, sizeof(*md) + n * sizeof(*d) + mdn + 1 + keyn + 1);
    if (md == NULL) {
        st = nxl__fail(NXL_ERR_NOMEM, "RdmaMetadata: out of memory");
        goto out_root;
    }
    d = (nxl_connect_desc_t *)(md + 1);
    for (i = 0; i < n; i++) {
        snprintf(prefix, sizeof(prefix), "descriptors.%zu.", i);
        st = sd_read(json_object_array_get_idx(descs, i), model, prefix, &d[i]);
        if (st != NXL_OK) {
            free(md);
            goto out_root;
        }
    }
    p = (char *)(d + n);
    memcpy(p, mds, mdn);
    p[mdn] = '\0';
    md->nixl_metadata = p;
    p += mdn + 1;
    memcpy(p, key, keyn);
    p[keyn] = '\0';
    md->notification_key = p;
    md->descriptors = d;
    md->num_descriptors = n;
    md->operation_kind = (int64_t)kind;
    *md_p = md;
    st = NXL_OK;

out_root:
    json_object_put(root);
    return st;
}

NXL_API void
nxl_rdma_metadata_free(nxl_rdma_metadata_t *md)
{
    free(md);
}

/* ---- uuid4 --------------------------------------------------------------- */

_Static_assert(NXL_CONNECT_UUID_LEN == NXL__UUID_LEN, "uuid buffer size");

NXL_API nxl_status_t
nxl_connect_uuid4(char buf[NXL_CONNECT_UUID_LEN])
{
    if (buf == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "connect_uuid4: NULL buffer");
    }
    nxl__uuid4(buf);
    return NXL_OK;
}
