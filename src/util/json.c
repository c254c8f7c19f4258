/* json.c - one strict JSON parse for the layers that read JSON from peers
 * (the KV layouts, the connector's descriptors). */
#include "util.h"

#include <json-c/json.h>

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
