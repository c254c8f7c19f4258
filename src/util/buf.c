/* buf.c - growable writer and bounds-checked reader, little-endian; text
 * appended to fixed buffers. */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
nxl__wbuf_init(nxl__wbuf_t *w)
{
    memset(w, 0, sizeof(*w));
}

void
nxl__wbuf_fini(nxl__wbuf_t *w)
{
    free(w->data);
    memset(w, 0, sizeof(*w));
}

void
nxl__wbuf_reserve(nxl__wbuf_t *w, size_t extra)
{
    size_t need, cap;
    uint8_t *p;

    if (w->failed) {
        return;
    }
    if (extra > SIZE_MAX - w->len) {
        w->failed = true;
        return;
    }
    need = w->len + extra;
    if (need <= w->cap) {
        return;
    }
    cap = w->cap ? w->cap : 256;
    while (cap < need) {
        cap = (cap > SIZE_MAX / 2) ? need : cap * 2;
    }
    p = realloc(w->data, cap);
    if (p == NULL) {
        w->failed = true;
        return;
    }
    w->data = p;
    w->cap = cap;
}

void
nxl__wbuf_put(nxl__wbuf_t *w, const void *p, size_t n)
{
    nxl__wbuf_reserve(w, n);
    if (w->failed || n == 0) {
        return;
    }
    memcpy(w->data + w->len, p, n);
    w->len += n;
}

void
nxl__wbuf_u8(nxl__wbuf_t *w, uint8_t v)
{
    nxl__wbuf_put(w, &v, 1);
}

void
nxl__wbuf_u16(nxl__wbuf_t *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};

    nxl__wbuf_put(w, b, 2);
}

void
nxl__wbuf_u32(nxl__wbuf_t *w, uint32_t v)
{
    uint8_t b[4];

    nxl__put_le32(b, v);
    nxl__wbuf_put(w, b, 4);
}

void
nxl__wbuf_u64(nxl__wbuf_t *w, uint64_t v)
{
    uint8_t b[8];

    nxl__put_le64(b, v);
    nxl__wbuf_put(w, b, 8);
}

void
nxl__wbuf_patch_u32(nxl__wbuf_t *w, size_t off, uint32_t v)
{
    if (w->failed || off > w->len || w->len - off < 4) {
        return;
    }
    nxl__put_le32(w->data + off, v);
}

nxl_status_t
nxl__wbuf_finish(nxl__wbuf_t *w, nxl_blob_t *blob)
{
    if (w->failed) {
        nxl__wbuf_fini(w);
        return nxl__fail(NXL_ERR_NOMEM, "buffer: out of memory");
    }
    blob->data = w->data;
    blob->len = w->len;
    memset(w, 0, sizeof(*w));
    return NXL_OK;
}

void
nxl__rbuf_init(nxl__rbuf_t *r, const void *p, size_t len)
{
    r->p = p;
    r->len = (p == NULL) ? 0 : len;
    r->pos = 0;
    r->failed = false;
}

size_t
nxl__rbuf_left(const nxl__rbuf_t *r)
{
    return r->failed ? 0 : r->len - r->pos;
}

static bool
nxl__rbuf_take(nxl__rbuf_t *r, size_t n, const uint8_t **p)
{
    if (r->failed || n > r->len - r->pos) {
        r->failed = true;
        return false;
    }
    *p = r->p + r->pos;
    r->pos += n;
    return true;
}

bool
nxl__rbuf_u8(nxl__rbuf_t *r, uint8_t *v)
{
    const uint8_t *p;

    if (!nxl__rbuf_take(r, 1, &p)) {
        return false;
    }
    *v = p[0];
    return true;
}

bool
nxl__rbuf_u16(nxl__rbuf_t *r, uint16_t *v)
{
    const uint8_t *p;

    if (!nxl__rbuf_take(r, 2, &p)) {
        return false;
    }
    *v = (uint16_t)(p[0] | (p[1] << 8));
    return true;
}

bool
nxl__rbuf_u32(nxl__rbuf_t *r, uint32_t *v)
{
    const uint8_t *p;

    if (!nxl__rbuf_take(r, 4, &p)) {
        return false;
    }
    *v = nxl__le32(p);
    return true;
}

bool
nxl__rbuf_u64(nxl__rbuf_t *r, uint64_t *v)
{
    const uint8_t *p;

    if (!nxl__rbuf_take(r, 8, &p)) {
        return false;
    }
    *v = nxl__le64(p);
    return true;
}

bool
nxl__rbuf_bytes(nxl__rbuf_t *r, size_t n, const uint8_t **p)
{
    return nxl__rbuf_take(r, n, p);
}

bool
nxl__rbuf_skip(nxl__rbuf_t *r, size_t n)
{
    const uint8_t *p;

    return nxl__rbuf_take(r, n, &p);
}

/* nxl__text_addf: see util.h. */
bool
nxl__text_addf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*len + 1 >= cap) {
        return false;
    }
    va_start(ap, fmt);
    n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return false;
    }
    if ((size_t)n >= cap - *len) {
        *len = cap - 1;
        return false;
    }
    *len += (size_t)n;
    return true;
}
