/* json.c - one strict JSON parse for the layers that read JSON from peers
 * (the KV layouts, the connector's descriptors), and the JSON text writer
 * the connector and the etcd client build their documents with. */
#include "util.h"

#include <json-c/json.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

nxl_status_t
nxl__json_read(const char *p, size_t len, bool utf8, const char *who,
               struct json_object **root_p)
{
    json_tokener *tok;
    json_object *root;
    enum json_tokener_error err;
    size_t end;

    if (len > INT32_MAX) {
        return nxl__fail(NXL_ERR_PROTO, "%s: input too large", who);
    }
    tok = json_tokener_new();
    if (tok == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "%s: out of memory", who);
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT |
                                    (utf8 ? JSON_TOKENER_VALIDATE_UTF8 : 0));
    root = json_tokener_parse_ex(tok, p, (int)len);
    err = json_tokener_get_error(tok);
    if (err == json_tokener_continue) {
        /* A bare number needs an end mark; anything else is truncated. */
        root = json_tokener_parse_ex(tok, "", 1);
        err = json_tokener_get_error(tok);
        end = len;
    } else {
        end = json_tokener_get_parse_end(tok);
    }
    json_tokener_free(tok);
    if (err != json_tokener_success || root == NULL) {
        json_object_put(root);
        return nxl__fail(NXL_ERR_PROTO, "%s: %s", who,
                         err == json_tokener_continue
                             ? "unexpected end of input"
                             : json_tokener_error_desc(err));
    }
    for (; end < len; end++) {
        if (p[end] != ' ' && p[end] != '\t' && p[end] != '\n' &&
            p[end] != '\r') {
            json_object_put(root);
            return nxl__fail(NXL_ERR_PROTO,
                             "%s: trailing characters at byte %zu", who, end);
        }
    }
    *root_p = root;
    return NXL_OK;
}

void
nxl__json_text(nxl__wbuf_t *w, const char *s)
{
    nxl__wbuf_put(w, s, strlen(s));
}

void
nxl__json_u64(nxl__wbuf_t *w, uint64_t v)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%" PRIu64, v);

    nxl__wbuf_put(w, buf, (size_t)n);
}

void
nxl__json_str(nxl__wbuf_t *w, const char *s, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    size_t i, run = 0;
    char esc[6];

    nxl__wbuf_reserve(w, n + 2);
    nxl__wbuf_u8(w, '"');
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *e = NULL;

        switch (c) {
        case '"':
            e = "\\\"";
            break;
        case '\\':
            e = "\\\\";
            break;
        case '\n':
            e = "\\n";
            break;
        case '\r':
            e = "\\r";
            break;
        case '\t':
            e = "\\t";
            break;
        case '\b':
            e = "\\b";
            break;
        case '\f':
            e = "\\f";
            break;
        default:
            if (c >= 0x20) {
                continue;
            }
            esc[0] = '\\';
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = digits[c >> 4];
            esc[5] = digits[c & 15];
        }
        nxl__wbuf_put(w, s + run, i - run);
        if (e != NULL) {
            nxl__wbuf_put(w, e, 2);
        } else {
            nxl__wbuf_put(w, esc, 6);
        }
        run = i + 1;
    }
    nxl__wbuf_put(w, s + run, n - run);
    nxl__wbuf_u8(w, '"');
}

nxl_status_t
nxl__json_finish(nxl__wbuf_t *w, nxl_blob_t *json_p)
{
    nxl_blob_t b;
    nxl_status_t st;

    nxl__wbuf_u8(w, '\0');
    st = nxl__wbuf_finish(w, &b);
    if (st != NXL_OK) {
        return nxl__fail(NXL_ERR_NOMEM, "json: out of memory");
    }
    b.len--;
    *json_p = b;
    return NXL_OK;
}
