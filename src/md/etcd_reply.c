/*
 * etcd_reply.c - decoding etcd's answers: the gateway's JSON (range,
 * put, lease and watch replies), the base64 keys and values inside, and
 * the line framing of watch streams. Everything from etcd is hostile
 * input: answers and stream lines are bounded (NXL__ETCD_MAX_ANSWER),
 * parsed by json-c in strict mode to a bounded depth, numbers and base64
 * are validated and decoded values bounded (fuzz/fuzz_etcd.c).
 */
#include "store.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

/* b64_decode decodes padded standard base64 s (n chars) into a new blob of
 * at most max bytes. */
static nxl_status_t
b64_decode(const char *s, size_t n, size_t max, nxl_blob_t *out)
{
    size_t olen;
    uint8_t *p;

    if (!nxl__b64_check(s, n, &olen)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "etcd: a value that is not padded standard base64 "
                         "(%zu chars)",
                         n);
    }
    if (olen > max) {
        return nxl__fail(NXL_ERR_PROTO,
                         "etcd: a value of %zu bytes (at most %zu)", olen, max);
    }
    p = malloc(NXL__MAX(olen, (size_t)1));
    if (p == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "etcd: out of memory");
    }
    nxl__b64_decode(s, n, p);
    out->data = p;
    out->len = olen;
    return NXL_OK;
}

/* --- answers ------------------------------------------------------------- */

/* j_get returns member k of object o, or NULL (absent, null, o not an
 * object). */
static json_object *
j_get(json_object *o, const char *k)
{
    json_object *v = NULL;

    if (o == NULL || !json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, k, &v)) {
        return NULL;
    }
    return v;
}

/* j_i64 reads int64 member k (the gateway writes them as strings, JSON
 * numbers are accepted too) into *out; absent leaves it. false: bad. */
static bool
j_i64(json_object *o, const char *k, int64_t *out)
{
    json_object *v = j_get(o, k);
    const char *s;
    char *end;
    long long x;
    int len;

    if (v == NULL) {
        return true;
    }
    if (json_object_is_type(v, json_type_int)) {
        errno = 0;
        x = json_object_get_int64(v);
        if (errno != 0) {
            return false;
        }
        *out = x;
        return true;
    }
    if (!json_object_is_type(v, json_type_string)) {
        return false;
    }
    s = json_object_get_string(v);
    len = json_object_get_string_len(v);
    if (len < 1 || len > 20 || (size_t)len != strlen(s) ||
        !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))) {
        return false;
    }
    errno = 0;
    x = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return false;
    }
    *out = x;
    return true;
}

static bool
j_bool(json_object *o, const char *k, bool *out)
{
    json_object *v = j_get(o, k);

    if (v == NULL) {
        return true;
    }
    if (!json_object_is_type(v, json_type_boolean)) {
        return false;
    }
    *out = json_object_get_boolean(v);
    return true;
}

/* j_str returns member k when it is a string (its length in *len_p), NULL
 * when absent; *bad_p is set when it is there but not a string. */
static const char *
j_str(json_object *o, const char *k, size_t *len_p, bool *bad_p)
{
    json_object *v = j_get(o, k);

    if (v == NULL) {
        return NULL;
    }
    if (!json_object_is_type(v, json_type_string)) {
        *bad_p = true;
        return NULL;
    }
    *len_p = (size_t)json_object_get_string_len(v);
    return json_object_get_string(v);
}

/* copy_text copies an error text, printable ASCII only. */
static void
copy_text(char *dst, size_t cap, const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n && i + 1 < cap; i++) {
        dst[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    }
    dst[i] = '\0';
}

/* parse_kv reads a key-value (range kvs[i] or a watch event's kv). */
static nxl_status_t
parse_kv(json_object *kv, nxl__etcd_reply_t *r)
{
    const char *val;
    size_t vlen = 0;
    bool bad = false;

    if (!json_object_is_type(kv, json_type_object) ||
        !j_i64(kv, "mod_revision", &r->mod_revision) ||
        !j_i64(kv, "lease", &r->kv_lease)) {
        return nxl__fail(NXL_ERR_PROTO, "etcd: a malformed key-value");
    }
    val = j_str(kv, "value", &vlen, &bad);
    if (bad) {
        return nxl__fail(NXL_ERR_PROTO, "etcd: a value that is no string");
    }
    nxl_blob_free(&r->value);
    r->has_kv = true;
    if (val == NULL) {
        return NXL_OK; /* empty value: the gateway omits it */
    }
    return b64_decode(val, vlen, NXL__SC_MAX_PAYLOAD, &r->value);
}

/* parse_events reads a watch answer's events: DELETE revisions, and the
 * PUT of match_key. */
static nxl_status_t
parse_events(json_object *evs, const char *match_key, nxl__etcd_reply_t *r)
{
    size_t i, n, klen = 0, tlen = 0;
    json_object *ev, *kv;
    const char *type, *key;
    int64_t rev = 0;
    nxl_status_t status;
    bool bad = false;

    if (!json_object_is_type(evs, json_type_array)) {
        return nxl__fail(NXL_ERR_PROTO, "etcd: events is not an array");
    }
    n = json_object_array_length(evs);
    for (i = 0; i < n; i++) {
        ev = json_object_array_get_idx(evs, i);
        kv = j_get(ev, "kv");
        type = j_str(ev, "type", &tlen, &bad);
        if (kv == NULL || bad || !json_object_is_type(kv, json_type_object)) {
            return nxl__fail(NXL_ERR_PROTO, "etcd: a malformed watch event");
        }
        if (type != NULL && strcmp(type, "DELETE") == 0) {
            rev = 0;
            if (!j_i64(kv, "mod_revision", &rev)) {
                return nxl__fail(NXL_ERR_PROTO,
                                 "etcd: a malformed DELETE event");
            }
            r->delete_rev = NXL__MAX(r->delete_rev, NXL__MAX(rev, (int64_t)1));
            continue;
        }
        if (type != NULL && strcmp(type, "PUT") != 0) {
            return nxl__fail(NXL_ERR_PROTO,
                             "etcd: a watch event of type "
                             "'%.20s'",
                             type);
        }
        key = j_str(kv, "key", &klen, &bad);
        if (bad) {
            return nxl__fail(NXL_ERR_PROTO, "etcd: a key that is no string");
        }
        if (match_key != NULL && key != NULL && klen == strlen(match_key) &&
            memcmp(key, match_key, klen) == 0) {
            status = parse_kv(kv, r);
            if (status != NXL_OK) {
                return status;
            }
        }
    }
    return NXL_OK;
}

void
nxl__etcd_reply_fini(nxl__etcd_reply_t *r)
{
    nxl_blob_free(&r->value);
}

nxl_status_t
nxl__etcd_parse(const char *text, size_t len, const char *match_key,
                nxl__etcd_reply_t *r)
{
    json_object *root = NULL, *msg, *err, *hdr, *kvs;
    json_tokener *tok;
    nxl_status_t status = NXL_OK;
    const char *s;
    size_t end, slen = 0;
    int64_t code = 0;
    bool bad = false;

    memset(r, 0, sizeof(*r));
    if (len > NXL__ETCD_MAX_ANSWER) {
        return nxl__fail(NXL_ERR_PROTO, "etcd: an answer of %zu bytes", len);
    }
    tok = json_tokener_new_ex(NXL__ETCD_JSON_DEPTH);
    if (tok == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "etcd: out of memory");
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    root = json_tokener_parse_ex(tok, text, (int)len);
    if (root == NULL || json_tokener_get_error(tok) != json_tokener_success) {
        status = nxl__fail(
            NXL_ERR_PROTO,
            "etcd: an answer that is not "
            "JSON (%s)",
            root == NULL && json_tokener_get_error(tok) == json_tokener_continue
                ? "truncated"
                : json_tokener_error_desc(json_tokener_get_error(tok)));
        goto out;
    }
    for (end = json_tokener_get_parse_end(tok); end < len; end++) {
        if (text[end] != ' ' && text[end] != '\n' && text[end] != '\r' &&
            text[end] != '\t') {
            status = nxl__fail(NXL_ERR_PROTO, "etcd: bytes after the JSON "
                                              "answer");
            goto out;
        }
    }
    if (!json_object_is_type(root, json_type_object)) {
        status = nxl__fail(NXL_ERR_PROTO, "etcd: an answer that is not a "
                                          "JSON object");
        goto out;
    }
    /* Errors: {"error":"text","message":"text","code":N} (unary) or
     * {"error":{"grpc_code":N,"message":"text",...}} (streams). */
    err = j_get(root, "error");
    if (err != NULL) {
        json_object *eo =
            json_object_is_type(err, json_type_object) ? err : root;

        if (!j_i64(eo, eo == err ? "grpc_code" : "code", &code)) {
            bad = true;
        }
        s = j_str(eo, "message", &slen, &bad);
        if (s == NULL && eo == root) {
            s = j_str(root, "error", &slen, &bad);
        }
        if (bad) {
            status = nxl__fail(NXL_ERR_PROTO, "etcd: a malformed error "
                                              "answer");
            goto out;
        }
        if (s == NULL || slen == 0) {
            s = "unknown error";
            slen = strlen(s);
        }
        r->grpc_code = (code > 0 && code < 100) ? (int)code : 2;
        copy_text(r->message, sizeof(r->message), s, slen);
        goto out;
    }
    msg = j_get(root, "result");
    if (msg == NULL) {
        msg = root;
    } else if (!json_object_is_type(msg, json_type_object)) {
        status = nxl__fail(NXL_ERR_PROTO, "etcd: result is not an object");
        goto out;
    }
    hdr = j_get(msg, "header");
    if ((hdr != NULL && !json_object_is_type(hdr, json_type_object)) ||
        !j_i64(hdr, "revision", &r->revision) ||
        !j_i64(msg, "count", &r->count) || !j_i64(msg, "ID", &r->lease_id) ||
        !j_i64(msg, "TTL", &r->ttl) || !j_bool(msg, "created", &r->created) ||
        !j_bool(msg, "canceled", &r->canceled) ||
        !j_i64(msg, "compact_revision", &r->compact_revision)) {
        status = nxl__fail(NXL_ERR_PROTO, "etcd: a malformed answer (header, "
                                          "count, ID, TTL or watch fields)");
        goto out;
    }
    kvs = j_get(msg, "kvs");
    if (kvs != NULL) {
        if (!json_object_is_type(kvs, json_type_array)) {
            status = nxl__fail(NXL_ERR_PROTO, "etcd: kvs is not an array");
            goto out;
        }
        if (json_object_array_length(kvs) > 0) {
            status = parse_kv(json_object_array_get_idx(kvs, 0), r);
            if (status != NXL_OK) {
                goto out;
            }
        }
    }
    if (j_get(msg, "events") != NULL) {
        status = parse_events(j_get(msg, "events"), match_key, r);
    }
out:
    if (status != NXL_OK) {
        nxl__etcd_reply_fini(r);
    }
    json_object_put(root);
    json_tokener_free(tok);
    return status;
}

/* --- streams ------------------------------------------------------------- */

static bool
blank(const char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (p[i] != ' ' && p[i] != '\r' && p[i] != '\t') {
            return false;
        }
    }
    return true;
}

nxl_status_t
nxl__etcd_stream_feed(nxl__etcd_stream_t *s, const void *data, size_t n,
                      nxl__etcd_line_fn fn, void *arg)
{
    const char *p = data, *nl;
    size_t take, cap;
    nxl_status_t status;
    char *nb;

    if (s->max == 0) {
        s->max = NXL__ETCD_MAX_ANSWER;
    }
    while (n > 0) {
        nl = memchr(p, '\n', n);
        take = nl ? (size_t)(nl - p) : n;
        if (s->len + take > s->max) {
            return nxl__fail(NXL_ERR_PROTO,
                             "etcd: a stream line longer "
                             "than %zu bytes",
                             s->max);
        }
        if (nl != NULL && s->len == 0) {
            /* A whole line in this chunk: no copy. */
            status = blank(p, take) ? NXL_OK : fn(arg, p, take);
        } else {
            if (s->len + take > s->cap) {
                cap = NXL__MAX(s->cap * 2, (size_t)4096);
                cap = NXL__MAX(cap, s->len + take);
                nb = realloc(s->buf, cap);
                if (nb == NULL) {
                    return nxl__fail(NXL_ERR_NOMEM, "etcd: out of memory");
                }
                s->buf = nb;
                s->cap = cap;
            }
            memcpy(s->buf + s->len, p, take);
            s->len += take;
            status = NXL_OK;
            if (nl != NULL) {
                status =
                    blank(s->buf, s->len) ? NXL_OK : fn(arg, s->buf, s->len);
                s->len = 0;
            }
        }
        if (status != NXL_OK) {
            return status;
        }
        take += nl != NULL;
        p += take;
        n -= take;
    }
    return NXL_OK;
}

void
nxl__etcd_stream_fini(nxl__etcd_stream_t *s)
{
    free(s->buf);
    memset(s, 0, sizeof(*s));
}
