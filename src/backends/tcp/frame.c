/*
 * frame.c - the TCP backend's wire codec: frame headers, descriptor tables,
 * hellos and conn info. Pure functions over byte buffers (no I/O, no
 * state), so fuzz/fuzz_tcp.c can drive them. Everything is little-endian
 * and every length is checked before it is used.
 */
#include "tcp.h"

#include <stdlib.h>
#include <string.h>

/* be_tcp_frame_encode writes f as a 32-byte header into out. */
void
be_tcp_frame_encode(const be_tcp_frame_t *f, uint8_t *out)
{
    out[0] = (uint8_t)(BE_TCP_HDR_MAGIC & 0xff);
    out[1] = (uint8_t)(BE_TCP_HDR_MAGIC >> 8);
    out[2] = f->type;
    out[3] = f->flags;
    nxl__put_le32(out + 4, (uint32_t)f->status);
    nxl__put_le32(out + 8, f->ndesc);
    nxl__put_le32(out + 12, f->aux_len);
    nxl__put_le64(out + 16, f->id);
    nxl__put_le64(out + 24, f->data_len);
}

/* be_tcp_frame_check applies the per-type rules to a decoded header. */
static bool
be_tcp_frame_check(const be_tcp_frame_t *f, const char **why_p)
{
    const char *why = NULL;

    switch (f->type) {
    case BE_TCP_HELLO:
    case BE_TCP_HELLO_ACK:
        if (f->ndesc != 0 || f->data_len != 0 || f->flags != 0) {
            why = "hello with descriptors, data or flags";
        } else if (f->aux_len < BE_TCP_HELLO_FIXED + 1 ||
                   f->aux_len > BE_TCP_HELLO_FIXED + BE_TCP_MAX_NAME) {
            why = "hello body length out of range";
        } else if (f->type == BE_TCP_HELLO && f->status != 0) {
            why = "hello with a status";
        }
        break;
    case BE_TCP_READ_REQ:
        if (f->ndesc == 0 || f->ndesc > BE_TCP_MAX_DESCS) {
            why = "READ request descriptor count out of range";
        } else if (f->aux_len != 0 || f->data_len != 0 ||
                   (f->flags & ~BE_TCP_F_KEYS) != 0 || f->status != 0) {
            why = "READ request with aux, data, unknown flags or status";
        }
        break;
    case BE_TCP_WRITE_REQ:
        if (f->ndesc == 0 || f->ndesc > BE_TCP_MAX_DESCS) {
            why = "WRITE request descriptor count out of range";
        } else if ((f->flags & ~(BE_TCP_F_NOTIF | BE_TCP_F_KEYS)) != 0 ||
                   f->status != 0) {
            why = "WRITE request with unknown flags or a status";
        } else if (!(f->flags & BE_TCP_F_NOTIF) && f->aux_len != 0) {
            why = "WRITE request with aux but no notification flag";
        } else if (f->aux_len > BE_TCP_MAX_NOTIF) {
            why = "WRITE request notification too long";
        }
        break;
    case BE_TCP_READ_RESP:
    case BE_TCP_WRITE_ACK:
        if (f->ndesc != 0 || f->aux_len != 0 ||
            (f->flags & ~(f->type == BE_TCP_READ_RESP ? BE_TCP_F_MORE : 0u)) !=
                0) {
            why = "reply with descriptors, aux or flags";
        } else if ((f->flags & BE_TCP_F_MORE) && f->status != 0) {
            why = "failed READ reply announcing more frames";
        } else if (f->status > 0) {
            why = "reply with a positive status";
        } else if (f->type == BE_TCP_WRITE_ACK && f->data_len != 0) {
            why = "WRITE ack with data";
        } else if (f->status != 0 && f->data_len != 0) {
            why = "failed READ reply with data";
        }
        break;
    case BE_TCP_NOTIF:
        if (f->ndesc != 0 || f->data_len != 0 || f->flags != 0 ||
            f->status != 0) {
            why = "notification with descriptors, data, flags or status";
        } else if (f->aux_len > BE_TCP_MAX_NOTIF) {
            why = "notification too long";
        }
        break;
    case BE_TCP_CANCEL:
        if (f->ndesc != 0 || f->aux_len != 0 || f->data_len != 0 ||
            f->flags != 0 || f->status != 0) {
            why = "cancel with descriptors, aux, data, flags or status";
        } else if (f->id == 0) {
            why = "cancel of request id 0";
        }
        break;
    default:
        why = "unknown frame type";
        break;
    }
    if (why != NULL) {
        *why_p = why;
        return false;
    }
    return true;
}

/* be_tcp_frame_decode decodes and validates a 32-byte frame header. */
int
be_tcp_frame_decode(const uint8_t *p, size_t len, be_tcp_frame_t *f,
                    const char **why_p)
{
    be_tcp_frame_t t;

    if (len < BE_TCP_HDR_SIZE) {
        return 0;
    }
    if ((uint16_t)(p[0] | (p[1] << 8)) != BE_TCP_HDR_MAGIC) {
        *why_p = "bad frame magic";
        return -1;
    }
    t.type = p[2];
    t.flags = p[3];
    t.status = (int32_t)nxl__le32(p + 4);
    t.ndesc = nxl__le32(p + 8);
    t.aux_len = nxl__le32(p + 12);
    t.id = nxl__le64(p + 16);
    t.data_len = nxl__le64(p + 24);
    if (!be_tcp_frame_check(&t, why_p)) {
        return -1;
    }
    *f = t;
    return (int)BE_TCP_HDR_SIZE;
}

/* be_tcp_descs_check validates a table of wire descriptors. */
bool
be_tcp_descs_check(const uint8_t *p, size_t len, uint32_t ndesc, size_t stride,
                   uint64_t *total_p, const char **why_p)
{
    uint64_t total = 0, addr, dlen, key;
    uint32_t i;

    if (ndesc > BE_TCP_MAX_DESCS ||
        (stride != BE_TCP_WDESC_SIZE && stride != BE_TCP_WDESC_KEYED) ||
        len != (size_t)ndesc * stride) {
        *why_p = "descriptor table size mismatch";
        return false;
    }
    for (i = 0; i < ndesc; i++) {
        be_tcp_wdesc(p, stride, i, &addr, &dlen, &key);
        if (dlen > UINT64_MAX - addr) {
            *why_p = "descriptor wraps the address space";
            return false;
        }
        if (dlen > UINT64_MAX - total) {
            *why_p = "descriptor lengths overflow";
            return false;
        }
        total += dlen;
    }
    *total_p = total;
    return true;
}

/* be_tcp_hello_encode writes a version-1 hello body (max_version 0). */
size_t
be_tcp_hello_encode(uint8_t *out, size_t cap, const char *name, uint16_t stream,
                    uint16_t nstreams)
{
    return be_tcp_hello_encode_max(out, cap, name, stream, nstreams, 0);
}

/* be_tcp_hello_encode_max writes a hello body:
 *   u32 magic | u16 version (1) | u16 stream | u16 nstreams
 *   | u16 max_version (0 before version 2) | u16 name_len | name bytes
 *   (no NUL). The version field stays 1: servers before version 2 refuse
 *   any other, and ignore max_version (it was reserved, never checked). */
size_t
be_tcp_hello_encode_max(uint8_t *out, size_t cap, const char *name,
                        uint16_t stream, uint16_t nstreams,
                        uint16_t max_version)
{
    size_t n = strlen(name);

    if (n == 0 || n > BE_TCP_MAX_NAME || cap < BE_TCP_HELLO_FIXED + n) {
        return 0;
    }
    nxl__put_le32(out, BE_TCP_HELLO_MAGIC);
    out[4] = (uint8_t)BE_TCP_VERSION;
    out[5] = 0;
    out[6] = (uint8_t)stream;
    out[7] = (uint8_t)(stream >> 8);
    out[8] = (uint8_t)nstreams;
    out[9] = (uint8_t)(nstreams >> 8);
    out[10] = (uint8_t)max_version;
    out[11] = (uint8_t)(max_version >> 8);
    out[12] = (uint8_t)n;
    out[13] = (uint8_t)(n >> 8);
    memcpy(out + BE_TCP_HELLO_FIXED, name, n);
    return BE_TCP_HELLO_FIXED + n;
}

/* be_tcp_hello_decode validates a hello body (exact length, magic, a
 * non-empty name without NUL bytes). The versions are returned, not
 * judged: the server answers what it speaks. */
bool
be_tcp_hello_decode(const uint8_t *p, size_t len, be_tcp_hello_t *h,
                    const char **why_p)
{
    nxl__rbuf_t r;
    uint32_t magic;
    uint16_t version, stream, nstreams, reserved, name_len;
    const uint8_t *name;

    nxl__rbuf_init(&r, p, len);
    if (!nxl__rbuf_u32(&r, &magic) || !nxl__rbuf_u16(&r, &version) ||
        !nxl__rbuf_u16(&r, &stream) || !nxl__rbuf_u16(&r, &nstreams) ||
        !nxl__rbuf_u16(&r, &reserved) || !nxl__rbuf_u16(&r, &name_len)) {
        *why_p = "hello truncated";
        return false;
    }
    if (magic != BE_TCP_HELLO_MAGIC) {
        *why_p = "bad hello magic";
        return false;
    }
    if (name_len == 0 || name_len > BE_TCP_MAX_NAME ||
        nxl__rbuf_left(&r) != name_len ||
        !nxl__rbuf_bytes(&r, name_len, &name)) {
        *why_p = "bad hello name length";
        return false;
    }
    if (memchr(name, '\0', name_len) != NULL) {
        *why_p = "NUL in hello name";
        return false;
    }
    if (nstreams == 0 || stream >= nstreams) {
        *why_p = "bad hello stream numbers";
        return false;
    }
    h->version = version;
    h->max_version = reserved == 0 ? 1 : reserved;
    h->stream = stream;
    h->nstreams = nstreams;
    h->name = (const char *)name;
    h->name_len = name_len;
    return true;
}

/* be_tcp_conninfo_encode serializes conn info:
 *   u8 version (1) | u8 naddrs (1..8) | u16 port | u64 host token
 *   | naddrs * (u8 len (1..63) | address text). */
nxl_status_t
be_tcp_conninfo_encode(const be_tcp_conninfo_t *ci, nxl_blob_t *out)
{
    nxl__wbuf_t w;
    unsigned i;
    size_t n;

    nxl__wbuf_init(&w);
    nxl__wbuf_u8(&w, BE_TCP_CONNINFO_VERSION);
    nxl__wbuf_u8(&w, (uint8_t)ci->naddrs);
    nxl__wbuf_u16(&w, ci->port);
    nxl__wbuf_u64(&w, ci->host_token);
    for (i = 0; i < ci->naddrs; i++) {
        n = strlen(ci->addrs[i]);
        nxl__wbuf_u8(&w, (uint8_t)n);
        nxl__wbuf_put(&w, ci->addrs[i], n);
    }
    if (nxl__wbuf_finish(&w, out) != NXL_OK) {
        return nxl__fail(NXL_ERR_NOMEM, "tcp: conn info: out of memory");
    }
    return NXL_OK;
}

/* be_tcp_addr_char says whether c may appear in a numeric IPv4/IPv6
 * address or a host name. */
static bool
be_tcp_addr_char(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') || c == '.' || c == ':' || c == '-' ||
           c == '%' || c == '_';
}

/* be_tcp_conninfo_decode validates conn info (peer input). */
bool
be_tcp_conninfo_decode(const uint8_t *p, size_t len, be_tcp_conninfo_t *ci,
                       const char **why_p)
{
    be_tcp_conninfo_t t;
    nxl__rbuf_t r;
    uint8_t version, naddrs, alen;
    const uint8_t *a;
    unsigned i, k;

    memset(&t, 0, sizeof(t));
    nxl__rbuf_init(&r, p, len);
    if (!nxl__rbuf_u8(&r, &version) || !nxl__rbuf_u8(&r, &naddrs) ||
        !nxl__rbuf_u16(&r, &t.port) || !nxl__rbuf_u64(&r, &t.host_token)) {
        *why_p = "conn info truncated";
        return false;
    }
    if (version != BE_TCP_CONNINFO_VERSION) {
        *why_p = "unknown conn info version";
        return false;
    }
    if (naddrs == 0 || naddrs > BE_TCP_MAX_ADDRS) {
        *why_p = "conn info address count out of range";
        return false;
    }
    if (t.port == 0) {
        *why_p = "conn info port 0";
        return false;
    }
    for (i = 0; i < naddrs; i++) {
        if (!nxl__rbuf_u8(&r, &alen) || alen == 0 || alen >= BE_TCP_ADDR_MAX ||
            !nxl__rbuf_bytes(&r, alen, &a)) {
            *why_p = "bad conn info address length";
            return false;
        }
        for (k = 0; k < alen; k++) {
            if (!be_tcp_addr_char(a[k])) {
                *why_p = "bad character in conn info address";
                return false;
            }
        }
        memcpy(t.addrs[i], a, alen);
        t.addrs[i][alen] = '\0';
    }
    if (nxl__rbuf_left(&r) != 0) {
        *why_p = "trailing bytes after conn info";
        return false;
    }
    t.naddrs = naddrs;
    *ci = t;
    return true;
}

/* be_tcp_stream_scan walks frames the way a receiver does. A partial last
 * frame is not an error (a receiver would wait for the rest). */
long
be_tcp_stream_scan(const uint8_t *p, size_t len, const char **why_p)
{
    be_tcp_frame_t f;
    be_tcp_hello_t h;
    size_t pos = 0, dtab, stride;
    uint64_t total;
    long frames = 0;
    int rc;

    while (pos < len) {
        rc = be_tcp_frame_decode(p + pos, len - pos, &f, why_p);
        if (rc < 0) {
            return -1;
        }
        if (rc == 0) {
            break;
        }
        pos += BE_TCP_HDR_SIZE;
        stride = be_tcp_wdesc_size(f.flags);
        dtab = (size_t)f.ndesc * stride;
        if (len - pos < dtab + f.aux_len) {
            break;
        }
        if (f.ndesc > 0) {
            if (!be_tcp_descs_check(p + pos, dtab, f.ndesc, stride, &total,
                                    why_p)) {
                return -1;
            }
            if (f.type == BE_TCP_WRITE_REQ && total != f.data_len) {
                *why_p = "WRITE data length differs from its descriptors";
                return -1;
            }
        }
        pos += dtab;
        if (f.type == BE_TCP_HELLO || f.type == BE_TCP_HELLO_ACK) {
            if (!be_tcp_hello_decode(p + pos, f.aux_len, &h, why_p)) {
                return -1;
            }
        }
        pos += f.aux_len;
        if (f.data_len > len - pos) {
            break;
        }
        pos += (size_t)f.data_len;
        frames++;
    }
    return frames;
}

/* be_tcp_status_from_wire maps a peer's status to one we report. */
nxl_status_t
be_tcp_status_from_wire(int32_t st)
{
    switch (st) {
    case NXL_OK:
    case NXL_ERR_INVALID_PARAM:
    case NXL_ERR_NOT_ALLOWED:
    case NXL_ERR_NOMEM:
    case NXL_ERR_IO:
    case NXL_ERR_PROTO:
    case NXL_ERR_NOT_SUPPORTED:
        return (nxl_status_t)st;
    default:
        return NXL_ERR_BACKEND;
    }
}
