/* b64.c - padded standard base64 (RFC 4648, section 4): the connector's
 * "b64:" fields and etcd's JSON gateway values. */
#include "util.h"

static const char b64_alpha[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* b64_val returns the 6-bit value of c, or -1. */
static int
b64_val(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

void
nxl__b64_encode(nxl__wbuf_t *w, const uint8_t *p, size_t n)
{
    char q[4];
    size_t i;

    nxl__wbuf_reserve(w, (n + 2) / 3 * 4);
    for (i = 0; i + 3 <= n; i += 3) {
        uint32_t v =
            ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8) | p[i + 2];

        q[0] = b64_alpha[(v >> 18) & 63];
        q[1] = b64_alpha[(v >> 12) & 63];
        q[2] = b64_alpha[(v >> 6) & 63];
        q[3] = b64_alpha[v & 63];
        nxl__wbuf_put(w, q, 4);
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;

        q[0] = b64_alpha[(v >> 18) & 63];
        q[1] = b64_alpha[(v >> 12) & 63];
        q[2] = q[3] = '=';
        nxl__wbuf_put(w, q, 4);
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8);

        q[0] = b64_alpha[(v >> 18) & 63];
        q[1] = b64_alpha[(v >> 12) & 63];
        q[2] = b64_alpha[(v >> 6) & 63];
        q[3] = '=';
        nxl__wbuf_put(w, q, 4);
    }
}

bool
nxl__b64_check(const char *s, size_t n, size_t *out_n)
{
    size_t i, pad = 0;

    if (n % 4 != 0) {
        return false;
    }
    if (n > 0 && s[n - 1] == '=') {
        pad = (n > 1 && s[n - 2] == '=') ? 2 : 1;
    }
    for (i = 0; i < n - pad; i++) {
        if (b64_val(s[i]) < 0) {
            return false;
        }
    }
    *out_n = n / 4 * 3 - pad;
    return true;
}

void
nxl__b64_decode(const char *s, size_t n, uint8_t *out)
{
    size_t i, o = 0;

    for (i = 0; i < n; i += 4) {
        int a = b64_val(s[i]), b = b64_val(s[i + 1]);
        int c = s[i + 2] == '=' ? 0 : b64_val(s[i + 2]);
        int d = s[i + 3] == '=' ? 0 : b64_val(s[i + 3]);
        uint32_t v = ((uint32_t)a << 18) | ((uint32_t)b << 12) |
                     ((uint32_t)c << 6) | (uint32_t)d;

        out[o++] = (uint8_t)(v >> 16);
        if (s[i + 2] != '=') {
            out[o++] = (uint8_t)(v >> 8);
        }
        if (s[i + 3] != '=') {
            out[o++] = (uint8_t)v;
        }
    }
}
