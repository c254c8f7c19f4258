/*
 * codec.c - the agent metadata codec: a 12-byte header, then TLV fields.
 *
 * docs/metadata-format.md is the source of truth for the bytes. In short:
 *
 *   header   "NXMD" | u16 major | u16 minor | u32 total length
 *   field    u16 tag | u32 length | payload        (repeated to the end)
 *   AGENT    name bytes (1..255, no NUL)
 *   FLAGS    u32 flags
 *   CONN     u8 n | name[n] | u32 m | info[m] | extension fields
 *   SECTION  u8 kind | u8 n | name[n] | u32 count | count x region |
 *            extension fields
 *   region   u64 addr | u64 len | u64 dev_id | u32 m | pub[m]
 *
 * All integers are little-endian. Unknown tags (top level and extension
 * fields inside CONN and SECTION) are skipped. The decoder never trusts the
 * blob: it checks every length against what is left before using it, and
 * decodes in two passes over the same walker, the first validating and
 * sizing, the second filling one allocation that owns every byte.
 */
#include "md.h"

#include <stdlib.h>
#include <string.h>

#define MD_MAGIC "NXMD"
#define MD_MAJOR 1u
#define MD_MINOR 0u
#define MD_HDR_SIZE 12u
#define MD_FIELD_HDR 6u     /* u16 tag + u32 length */
#define MD_REGION_FIXED 28u /* addr, len, dev_id, pub length */

enum {
    MD_TAG_AGENT = 0x0001,
    MD_TAG_FLAGS = 0x0002,
    MD_TAG_CONN = 0x0003,
    MD_TAG_SECTION = 0x0004
};

/* dec_t is the state of one decoder pass. With md == NULL the pass only
 * validates and counts; with md set it also fills the allocation. */
typedef struct dec {
    const uint8_t *blob;
    size_t len;

    /* counted by every pass */
    size_t nconns;
    size_t nsections;
    size_t nregions;
    size_t nbytes; /* strings (with their NUL) and blobs */
    bool have_agent;
    bool have_flags;

    /* fill cursors (second pass only) */
    nxl__md_t *md;
    nxl__md_conn_t *conn;
    nxl__md_section_t *sec;
    nxl__md_region_t *reg;
    uint8_t *bytes;
} dec_t;

/* le16 reads a little-endian u16 at p. */
static uint16_t
le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

/* sub_reader makes a reader over blob[start, end) whose positions are
 * absolute offsets in the blob, so error messages can name the byte. */
static void
sub_reader(nxl__rbuf_t *r, const dec_t *d, size_t start, size_t end)
{
    nxl__rbuf_init(r, d->blob, end);
    (void)nxl__rbuf_skip(r, start);
}

/* take_str accounts for (first pass) or copies (second pass) a name and
 * returns the NUL-terminated copy (NULL in the first pass). */
static const char *
take_str(dec_t *d, const uint8_t *p, size_t n)
{
    char *s;

    d->nbytes += n + 1;
    if (d->md == NULL) {
        return NULL;
    }
    s = (char *)d->bytes;
    memcpy(s, p, n);
    s[n] = '\0';
    d->bytes += n + 1;
    return s;
}

/* take_bytes is take_str for blobs: no NUL, and NULL when n is 0. */
static const uint8_t *
take_bytes(dec_t *d, const uint8_t *p, size_t n)
{
    uint8_t *b;

    d->nbytes += n;
    if (d->md == NULL || n == 0) {
        return NULL;
    }
    b = d->bytes;
    memcpy(b, p, n);
    d->bytes += n;
    return b;
}

/* check_name enforces the name rule (1..255 bytes, no NUL) on a name that
 * starts at absolute offset off. */
static nxl_status_t
check_name(const char *what, size_t idx, const uint8_t *p, size_t n, size_t off)
{
    if (n == 0) {
        return nxl__fail(NXL_ERR_PROTO, "md: %s %zu: empty name at byte %zu",
                         what, idx, off);
    }
    if (n > NXL__MD_NAME_MAX) {
        return nxl__fail(NXL_ERR_PROTO,
                         "md: %s %zu: name of %zu bytes at byte %zu (max %u)",
                         what, idx, n, off, NXL__MD_NAME_MAX);
    }
    if (memchr(p, '\0', n) != NULL) {
        return nxl__fail(NXL_ERR_PROTO,
                         "md: %s %zu: NUL inside the name at byte %zu", what,
                         idx, off);
    }
    return NXL_OK;
}

/* skip_ext skips the extension fields that fill the rest of a CONN or
 * SECTION payload. None are defined in 1.0; a later minor may add some.
 * Each must be a whole TLV field inside the payload. */
static nxl_status_t
skip_ext(nxl__rbuf_t *r, const char *what, size_t idx)
{
    uint16_t tag;
    uint32_t flen;
    size_t at;

    while (nxl__rbuf_left(r) > 0) {
        at = r->pos;
        if (!nxl__rbuf_u16(r, &tag) || !nxl__rbuf_u32(r, &flen)) {
            return nxl__fail(NXL_ERR_PROTO,
                             "md: %s %zu: extension field header truncated "
                             "at byte %zu",
                             what, idx, at);
        }
        if (!nxl__rbuf_skip(r, flen)) {
            return nxl__fail(NXL_ERR_PROTO,
                             "md: %s %zu: extension field 0x%04x at byte %zu: "
                             "length %u exceeds the %zu bytes left",
                             what, idx, tag, at, flen,
                             r->len - at - MD_FIELD_HDR);
        }
    }
    return NXL_OK;
}

/* dec_agent reads the AGENT field: the whole payload is the name. */
static nxl_status_t
dec_agent(dec_t *d, size_t start, uint32_t flen)
{
    nxl_status_t status;
    const char *s;

    if (d->have_agent) {
        return nxl__fail(NXL_ERR_PROTO,
                         "md: second agent name field at byte %zu",
                         start - MD_FIELD_HDR);
    }
    status = check_name("agent", 0, d->blob + start, flen, start);
    if (status != NXL_OK) {
        return status;
    }
    d->have_agent = true;
    s = take_str(d, d->blob + start, flen);
    if (d->md != NULL) {
        d->md->agent = s;
    }
    return NXL_OK;
}

/* dec_flags reads the FLAGS field: exactly one u32. */
static nxl_status_t
dec_flags(dec_t *d, size_t start, uint32_t flen)
{
    if (d->have_flags) {
        return nxl__fail(NXL_ERR_PROTO, "md: second flags field at byte %zu",
                         start - MD_FIELD_HDR);
    }
    if (flen != 4) {
        return nxl__fail(NXL_ERR_PROTO,
                         "md: flags field at byte %zu has length %u, want 4",
                         start - MD_FIELD_HDR, flen);
    }
    d->have_flags = true;
    if (d->md != NULL) {
        d->md->flags = nxl__le32(d->blob + start);
    }
    return NXL_OK;
}

/* dec_conn reads one CONN field: backend name, conn info, extensions. */
static nxl_status_t
dec_conn(dec_t *d, size_t start, uint32_t flen)
{
    size_t idx = d->nconns;
    const uint8_t *name, *info;
    uint8_t nlen;
    uint32_t ilen;
    nxl__rbuf_t r;
    nxl_status_t status;
    size_t at;

    sub_reader(&r, d, start, start + flen);
    at = r.pos;
    if (!nxl__rbuf_u8(&r, &nlen) || !nxl__rbuf_bytes(&r, nlen, &name)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "md: conn %zu backend name truncated at byte %zu", idx,
                         at);
    }
    status = check_name("conn", idx, name, nlen, at + 1);
    if (status != NXL_OK) {
        return status;
    }
    at = r.pos;
    if (!nxl__rbuf_u32(&r, &ilen) || !nxl__rbuf_bytes(&r, ilen, &info)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "md: conn %zu info truncated at byte %zu", idx, at);
    }
    status = skip_ext(&r, "conn", idx);
    if (status != NXL_OK) {
        return status;
    }

    if (d->md != NULL) {
        d->conn->backend = take_str(d, name, nlen);
        d->conn->info = take_bytes(d, info, ilen);
        d->conn->len = ilen;
        d->conn++;
    } else {
        (void)take_str(d, name, nlen);
        (void)take_bytes(d, info, ilen);
    }
    d->nconns++;
    return NXL_OK;
}

/* dec_section reads one SECTION field: kind, backend name, the regions
 * and extensions. The region count is checked against the bytes left
 * before any region is read, so a tiny blob cannot ask for a giant
 * allocation. */
static nxl_status_t
dec_section(dec_t *d, size_t start, uint32_t flen)
{
    size_t idx = d->nsections;
    const uint8_t *name, *pub;
    uint8_t kind, nlen;
    uint32_t count, i, plen;
    nxl__md_region_t *reg = NULL;
    nxl_desc_t desc;
    nxl__rbuf_t r;
    nxl_status_t status;
    size_t at;

    sub_reader(&r, d, start, start + flen);
    at = r.pos;
    if (!nxl__rbuf_u8(&r, &kind)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "md: section %zu memory kind truncated at byte %zu",
                         idx, at);
    }
    if (kind >= NXL_MEM_KINDS) {
        return nxl__fail(NXL_ERR_PROTO,
                         "md: section %zu: memory kind %u at byte %zu is not "
                         "below %d",
                         idx, kind, at, NXL_MEM_KINDS);
    }
    at = r.pos;
    if (!nxl__rbuf_u8(&r, &nlen) || !nxl__rbuf_bytes(&r, nlen, &name)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "md: section %zu backend name truncated at byte %zu",
                         idx, at);
    }
    status = check_name("section", idx, name, nlen, at + 1);
    if (status != NXL_OK) {
        return status;
    }
    at = r.pos;
    if (!nxl__rbuf_u32(&r, &count)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "md: section %zu region count truncated at byte %zu",
                         idx, at);
    }
    if ((uint64_t)count * MD_REGION_FIXED > nxl__rbuf_left(&r)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "md: section %zu: %u regions at byte %zu need at "
                         "least %llu bytes, %zu left",
                         idx, count, at,
                         (unsigned long long)count * MD_REGION_FIXED,
                         nxl__rbuf_left(&r));
    }

    if (d->md != NULL) {
        d->sec->kind = (nxl_mem_t)kind;
        d->sec->backend = take_str(d, name, nlen);
        d->sec->count = count;
        d->sec->regions = (count > 0) ? d->reg : NULL;
        reg = d->reg;
    } else {
        (void)take_str(d, name, nlen);
    }

    for (i = 0; i < count; i++) {
        at = r.pos;
        if (!nxl__rbuf_u64(&r, &desc.addr) || !nxl__rbuf_u64(&r, &desc.len) ||
            !nxl__rbuf_u64(&r, &desc.dev_id) || !nxl__rbuf_u32(&r, &plen) ||
            !nxl__rbuf_bytes(&r, plen, &pub)) {
            return nxl__fail(NXL_ERR_PROTO,
                             "md: section %zu region %u truncated at byte %zu",
                             idx, i, at);
        }
        /* No agent registers an empty or wrapping region. */
        if (desc.len == 0 || desc.addr + desc.len < desc.addr) {
            return nxl__fail(NXL_ERR_PROTO,
                             "md: section %zu region %u (0x%llx+%llu) is "
                             "empty or wraps",
                             idx, i, (unsigned long long)desc.addr,
                             (unsigned long long)desc.len);
        }
        if (reg != NULL) {
            reg[i].desc = desc;
            reg[i].pub = take_bytes(d, pub, plen);
            reg[i].pub_len = plen;
        } else {
            (void)take_bytes(d, pub, plen);
        }
    }
    status = skip_ext(&r, "section", idx);
    if (status != NXL_OK) {
        return status;
    }

    if (d->md != NULL) {
        d->reg += count;
        d->sec++;
    }
    d->nregions += count;
    d->nsections++;
    return NXL_OK;
}

/* check_header validates the 12-byte header against the blob length. The
 * magic decides "is this NXL metadata at all" (MISMATCH), the major
 * version "can this build read it" (NOT_SUPPORTED); both are checked
 * before anything that a future major could change. */
static nxl_status_t
check_header(const uint8_t *b, size_t len)
{
    uint16_t major;
    uint32_t total;

    if (len < 4) {
        return nxl__fail(NXL_ERR_PROTO,
                         "md: blob of %zu bytes is shorter than the %u-byte "
                         "header",
                         len, MD_HDR_SIZE);
    }
    if (memcmp(b, MD_MAGIC, 4) != 0) {
        return nxl__fail(NXL_ERR_MISMATCH,
                         "md: bad magic %02x %02x %02x %02x (want \"NXMD\"): "
                         "not NXL metadata",
                         b[0], b[1], b[2], b[3]);
    }
    if (len < 6) {
        return nxl__fail(NXL_ERR_PROTO,
                         "md: blob of %zu bytes is shorter than the %u-byte "
                         "header",
                         len, MD_HDR_SIZE);
    }
    major = le16(b + 4);
    if (major != MD_MAJOR) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "md: format version %u.x is not supported (this "
                         "build reads %u.x)",
                         major, MD_MAJOR);
    }
    if (len < MD_HDR_SIZE) {
        return nxl__fail(NXL_ERR_PROTO,
                         "md: blob of %zu bytes is shorter than the %u-byte "
                         "header",
                         len, MD_HDR_SIZE);
    }
    total = nxl__le32(b + 8);
    if (total != len) {
        return nxl__fail(NXL_ERR_PROTO,
                         "md: header says %u bytes, blob has %zu", total, len);
    }
    return NXL_OK;
}

/* walk runs one decoder pass over the fields after the header. */
static nxl_status_t
walk(dec_t *d)
{
    size_t pos = MD_HDR_SIZE, idx = 0, body;
    nxl_status_t status;
    uint16_t tag;
    uint32_t flen;

    while (pos < d->len) {
        if (d->len - pos < MD_FIELD_HDR) {
            return nxl__fail(NXL_ERR_PROTO,
                             "md: field %zu header truncated at byte %zu "
                             "(%zu of %u bytes)",
                             idx, pos, d->len - pos, MD_FIELD_HDR);
        }
        tag = le16(d->blob + pos);
        flen = nxl__le32(d->blob + pos + 2);
        body = pos + MD_FIELD_HDR;
        if (flen > d->len - body) {
            return nxl__fail(NXL_ERR_PROTO,
                             "md: field %zu (tag 0x%04x) at byte %zu: length "
                             "%u exceeds the %zu bytes left",
                             idx, tag, pos, flen, d->len - body);
        }
        switch (tag) {
        case MD_TAG_AGENT:
            status = dec_agent(d, body, flen);
            break;
        case MD_TAG_FLAGS:
            status = dec_flags(d, body, flen);
            break;
        case MD_TAG_CONN:
            status = dec_conn(d, body, flen);
            break;
        case MD_TAG_SECTION:
            status = dec_section(d, body, flen);
            break;
        default:
            status = NXL_OK; /* unknown: skipped (forward compatibility) */
            break;
        }
        if (status != NXL_OK) {
            return status;
        }
        pos = body + flen;
        idx++;
    }
    if (!d->have_agent) {
        return nxl__fail(NXL_ERR_PROTO, "md: no agent name field");
    }
    return NXL_OK;
}

/* align_up rounds n up to a multiple of a (a power of two). */
static size_t
align_up(size_t n, size_t a)
{
    return (n + a - 1) & ~(a - 1);
}

/* nxl__md_decode: see md.h. Two passes of walk() over the same bytes:
 * validate and size, then fill one calloc'd block. */
nxl_status_t
nxl__md_decode(const void *blob, size_t len, nxl__md_t **md_p)
{
    dec_t d = {.blob = blob, .len = len};
    size_t off_conns, off_secs, off_regs, off_bytes, size;
    nxl_status_t status;
    uint8_t *mem;

    if (md_p == NULL || (blob == NULL && len > 0)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "md: decode: NULL argument");
    }
    status = check_header(blob, (blob == NULL) ? 0 : len);
    if (status != NXL_OK) {
        return status;
    }

    /* Pass 1: validate everything and size the allocation. Every element
     * is backed by at least as many blob bytes as it needs, and len fits
     * a u32, so these sums cannot overflow a size_t. */
    status = walk(&d);
    if (status != NXL_OK) {
        return status;
    }
    off_conns = align_up(sizeof(nxl__md_t), _Alignof(nxl__md_conn_t));
    off_secs = align_up(off_conns + d.nconns * sizeof(nxl__md_conn_t),
                        _Alignof(nxl__md_section_t));
    off_regs = align_up(off_secs + d.nsections * sizeof(nxl__md_section_t),
                        _Alignof(nxl__md_region_t));
    off_bytes = off_regs + d.nregions * sizeof(nxl__md_region_t);
    size = off_bytes + d.nbytes;

    mem = calloc(1, size);
    if (mem == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "md: decode: %zu bytes", size);
    }

    /* Pass 2: the same walk, filling the allocation. */
    d.md = (nxl__md_t *)mem;
    d.md->nconns = d.nconns;
    d.md->conns = d.nconns ? (nxl__md_conn_t *)(mem + off_conns) : NULL;
    d.md->nsections = d.nsections;
    d.md->sections = d.nsections ? (nxl__md_section_t *)(mem + off_secs) : NULL;
    d.conn = (nxl__md_conn_t *)(mem + off_conns);
    d.sec = (nxl__md_section_t *)(mem + off_secs);
    d.reg = (nxl__md_region_t *)(mem + off_regs);
    d.bytes = mem + off_bytes;
    d.nconns = d.nsections = d.nregions = d.nbytes = 0;
    d.have_agent = d.have_flags = false;
    status = walk(&d);
    if (status != NXL_OK) {
        /* Cannot happen: pass 1 accepted the same bytes. */
        free(mem);
        return status;
    }
    *md_p = d.md;
    return NXL_OK;
}

/* nxl__md_free: the decoded md is a single allocation. */
void
nxl__md_free(nxl__md_t *md)
{
    free(md);
}

/* enc_name_len returns the length of a valid name (1..255 bytes), or 0
 * after setting an INVALID_PARAM message. */
static size_t
enc_name_len(const char *name, const char *what, size_t idx)
{
    size_t n;

    if (name == NULL) {
        nxl__fail(NXL_ERR_INVALID_PARAM, "md: encode: %s %zu: NULL name", what,
                  idx);
        return 0;
    }
    n = strnlen(name, NXL__MD_NAME_MAX + 1);
    if (n == 0 || n > NXL__MD_NAME_MAX) {
        nxl__fail(NXL_ERR_INVALID_PARAM,
                  "md: encode: %s %zu: name must be 1..%u bytes", what, idx,
                  NXL__MD_NAME_MAX);
        return 0;
    }
    return n;
}

/* enc_section_size validates one section and returns its payload size in
 * *size_p (checked to fit a u32 field length). */
static nxl_status_t
enc_section_size(const nxl__md_section_t *s, size_t idx, uint64_t *size_p)
{
    uint64_t size;
    size_t n, i;

    n = enc_name_len(s->backend, "section", idx);
    if (n == 0) {
        return NXL_ERR_INVALID_PARAM;
    }
    if ((unsigned)s->kind >= NXL_MEM_KINDS) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "md: encode: section %zu: memory kind %d", idx,
                         (int)s->kind);
    }
    if (s->count > UINT32_MAX || (s->count > 0 && s->regions == NULL)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "md: encode: section %zu: bad region list (%zu)", idx,
                         s->count);
    }
    size = 1 + 1 + n + 4;
    for (i = 0; i < s->count; i++) {
        if (s->regions[i].pub_len > 0 && s->regions[i].pub == NULL) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "md: encode: section %zu region %zu: NULL public "
                             "data of %u bytes",
                             idx, i, s->regions[i].pub_len);
        }
        size += MD_REGION_FIXED + (uint64_t)s->regions[i].pub_len;
        if (size > UINT32_MAX) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "md: encode: section %zu exceeds 4 GiB", idx);
        }
    }
    *size_p = size;
    return NXL_OK;
}

/* enc_validate checks md and returns the encoded size in *total_p. */
static nxl_status_t
enc_validate(const nxl__md_t *md, uint64_t *total_p)
{
    uint64_t total, size;
    nxl_status_t status;
    size_t n, i;

    n = enc_name_len(md->agent, "agent", 0);
    if (n == 0) {
        return NXL_ERR_INVALID_PARAM;
    }
    if ((md->nconns > 0 && md->conns == NULL) ||
        (md->nsections > 0 && md->sections == NULL)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "md: encode: NULL conn or section list");
    }
    total = MD_HDR_SIZE + MD_FIELD_HDR + n + MD_FIELD_HDR + 4;
    for (i = 0; i < md->nconns; i++) {
        const nxl__md_conn_t *c = &md->conns[i];

        n = enc_name_len(c->backend, "conn", i);
        if (n == 0) {
            return NXL_ERR_INVALID_PARAM;
        }
        if (c->len > 0 && c->info == NULL) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "md: encode: conn %zu: NULL info of %u bytes", i,
                             c->len);
        }
        size = 1 + n + 4 + (uint64_t)c->len;
        if (size > UINT32_MAX) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "md: encode: conn %zu exceeds 4 GiB", i);
        }
        total += MD_FIELD_HDR + size;
    }
    for (i = 0; i < md->nsections; i++) {
        status = enc_section_size(&md->sections[i], i, &size);
        if (status != NXL_OK) {
            return status;
        }
        total += MD_FIELD_HDR + size;
        if (total > UINT32_MAX) {
            break;
        }
    }
    if (total > UINT32_MAX) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "md: encode: metadata exceeds 4 GiB");
    }
    *total_p = total;
    return NXL_OK;
}

/* enc_field_hdr writes a field header whose length is known. */
static void
enc_field_hdr(nxl__wbuf_t *out, uint16_t tag, uint64_t len)
{
    nxl__wbuf_u16(out, tag);
    nxl__wbuf_u32(out, (uint32_t)len);
}

/* nxl__md_encode: see md.h. Validates everything and computes the exact
 * size first, so nothing is appended to out for a rejected md. */
nxl_status_t
nxl__md_encode(const nxl__md_t *md, nxl__wbuf_t *out)
{
    uint64_t total = 0, size = 0;
    nxl_status_t status;
    size_t i, j, n;

    if (md == NULL || out == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "md: encode: NULL argument");
    }
    status = enc_validate(md, &total);
    if (status != NXL_OK) {
        return status;
    }

    nxl__wbuf_reserve(out, (size_t)total);
    nxl__wbuf_put(out, MD_MAGIC, 4);
    nxl__wbuf_u16(out, MD_MAJOR);
    nxl__wbuf_u16(out, MD_MINOR);
    nxl__wbuf_u32(out, (uint32_t)total);

    n = strlen(md->agent);
    enc_field_hdr(out, MD_TAG_AGENT, n);
    nxl__wbuf_put(out, md->agent, n);
    enc_field_hdr(out, MD_TAG_FLAGS, 4);
    nxl__wbuf_u32(out, md->flags);

    for (i = 0; i < md->nconns; i++) {
        const nxl__md_conn_t *c = &md->conns[i];

        n = strlen(c->backend);
        enc_field_hdr(out, MD_TAG_CONN, 1 + n + 4 + (uint64_t)c->len);
        nxl__wbuf_u8(out, (uint8_t)n);
        nxl__wbuf_put(out, c->backend, n);
        nxl__wbuf_u32(out, c->len);
        nxl__wbuf_put(out, c->info, c->len);
    }

    for (i = 0; i < md->nsections; i++) {
        const nxl__md_section_t *s = &md->sections[i];

        (void)enc_section_size(s, i, &size); /* validated above */
        n = strlen(s->backend);
        enc_field_hdr(out, MD_TAG_SECTION, size);
        nxl__wbuf_u8(out, (uint8_t)s->kind);
        nxl__wbuf_u8(out, (uint8_t)n);
        nxl__wbuf_put(out, s->backend, n);
        nxl__wbuf_u32(out, (uint32_t)s->count);
        for (j = 0; j < s->count; j++) {
            const nxl__md_region_t *r = &s->regions[j];

            nxl__wbuf_u64(out, r->desc.addr);
            nxl__wbuf_u64(out, r->desc.len);
            nxl__wbuf_u64(out, r->desc.dev_id);
            nxl__wbuf_u32(out, r->pub_len);
            nxl__wbuf_put(out, r->pub, r->pub_len);
        }
    }

    if (out->failed) {
        return nxl__fail(NXL_ERR_NOMEM,
                         "md: encode: out of memory (%llu bytes)",
                         (unsigned long long)total);
    }
    return NXL_OK;
}
