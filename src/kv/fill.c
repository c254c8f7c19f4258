/*
 * fill.c - fill patterns and checksums of KV blocks (Dynamo's fill.rs and
 * checksum.rs), for tests and for verifying transfers.
 *
 * A block is visited region by region, (layer, outer) in that order, each
 * region being l->region_size bytes at nxl__kv_addr. How a region is
 * reached depends on the layout's kind:
 *   SYSTEM, PINNED  written and hashed in place;
 *   DEVICE          through a host buffer and the device kind's copy (H2D
 *                   to fill, D2H to hash);
 *   DISK            through a 4096-aligned host buffer and pwrite/pread at
 *                   the region's address, which is its file offset, on the
 *                   memory region's fd; fsync after a fill. With O_DIRECT
 *                   an unaligned region is read-modify-written over the
 *                   4096-aligned span around it.
 * The layout must describe memory of this process (a local layout, or a
 * view of one).
 *
 * Checksums are XXH3-128 over the region bytes of a block, written as the
 * canonical (big-endian) 16 bytes in 32 lowercase hex digits; Dynamo uses
 * BLAKE3 here, but only equality between checksums matters to its tests.
 */
#include "kv.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define FILL_ALIGN ((size_t)4096)

/* A walk over regions: the layout, its kind's helpers and two aligned
 * scratch buffers (buf holds one region; span holds an O_DIRECT span). */
typedef struct fill_walk {
    const nxl_kv_layout_t *l;
    const nxl_memkind_ops_t *dev; /* DEVICE layouts */
    uint8_t *buf;
    size_t buf_cap;
    uint8_t *span;
    size_t span_cap;
    int last_fd;      /* DISK: the fd last_direct describes, or -1 */
    bool last_direct; /* DISK: O_DIRECT is set on last_fd */
} fill_walk_t;

/* round_up rounds n up to a multiple of FILL_ALIGN. */
static size_t
round_up(size_t n)
{
    return (n + FILL_ALIGN - 1) / FILL_ALIGN * FILL_ALIGN;
}

/* check_ids validates the layout, the id array and every id (before
 * anything is written). "Block ID b out of range". */
static nxl_status_t
check_ids(const nxl_kv_layout_t *l, const size_t *ids, size_t n)
{
    size_t i;

    if (l == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv fill: NULL layout");
    }
    if (!nxl__kv_array_ok(ids, n, sizeof(*ids))) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv fill: NULL block ids or an impossible count");
    }
    for (i = 0; i < n; i++) {
        if (ids[i] >= l->cfg.num_blocks) {
            return nxl__fail(NXL_ERR_INVALID_PARAM, "Block ID %zu out of range",
                             ids[i]);
        }
    }
    return NXL_OK;
}

/* check_layers validates [begin, end) against num_layers: "Layer range
 * a..b exceeds num_layers n". */
static nxl_status_t
check_layers(const nxl_kv_layout_t *l, size_t begin, size_t end)
{
    if (end > l->cfg.num_layers) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Layer range %zu..%zu exceeds num_layers %zu", begin,
                         end, l->cfg.num_layers);
    }
    if (begin > end) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Layer range %zu..%zu is reversed", begin, end);
    }
    return NXL_OK;
}

/* walk_init prepares a walk over l: the device kind for DEVICE layouts and
 * the scratch buffers. NXL_OK, NXL_ERR_NOMEM, NXL_ERR_NOT_SUPPORTED (a
 * device kind without copy) or NXL_ERR_INVALID_PARAM (unknown kind). */
static nxl_status_t
walk_init(fill_walk_t *w, const nxl_kv_layout_t *l)
{
    size_t r = l->region_size;
    int e;

    memset(w, 0, sizeof(*w));
    w->l = l;
    w->last_fd = -1;
    if (l->loc.kind == NXL_KV_SYSTEM || l->loc.kind == NXL_KV_PINNED) {
        return NXL_OK; /* in place, no buffer */
    }
    /* The buffers below are R rounded up (plus two pages for a span): a
     * view's R may be any size a peer described, so refuse one whose
     * rounding would wrap rather than allocate a short buffer. */
    if (r > SIZE_MAX - 3 * FILL_ALIGN) {
        return nxl__fail(NXL_ERR_NOMEM,
                         "kv fill: region of %zu bytes is too large for a "
                         "staging buffer",
                         r);
    }
    switch (l->loc.kind) {
    case NXL_KV_DEVICE:
        w->dev = nxl_memkind_device();
        if (w->dev->copy == NULL) {
            return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                             "kv fill: device kind \"%s\" cannot copy",
                             w->dev->name);
        }
        break;
    case NXL_KV_DISK:
        w->span_cap = round_up(r) + 2 * FILL_ALIGN;
        e = posix_memalign((void **)&w->span, FILL_ALIGN, w->span_cap);
        if (e != 0) {
            w->span = NULL;
            return nxl__fail_errno(e, "kv fill: buffer of %zu bytes",
                                   w->span_cap);
        }
        break;
    default: /* SYSTEM and PINNED returned above */
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv fill: unknown storage kind %d", (int)l->loc.kind);
    }
    w->buf_cap = round_up(r != 0 ? r : 1);
    e = posix_memalign((void **)&w->buf, FILL_ALIGN, w->buf_cap);
    if (e != 0) {
        w->buf = NULL;
        return nxl__fail_errno(e, "kv fill: buffer of %zu bytes", w->buf_cap);
    }
    return NXL_OK;
}

/* walk_fini frees the walk's buffers. */
static void
walk_fini(fill_walk_t *w)
{
    free(w->buf);
    free(w->span);
    w->buf = w->span = NULL;
}

/* region_fd returns the fd of layer lyr's memory region (DISK): the
 * region's dev id (LS over files has one fd per layer), else the
 * layout's. */
static int
region_fd(const nxl_kv_layout_t *l, size_t lyr)
{
    size_t idx = l->type == NXL_KV_FULLY_CONTIGUOUS ? 0 : lyr;

    if (l->region_dev != NULL && idx < l->num_regions) {
        return (int)l->region_dev[idx];
    }
    return (int)l->dev_id;
}

/* fd_direct says whether fd has O_DIRECT (remembered for the last fd). */
static nxl_status_t
fd_direct(fill_walk_t *w, int fd, bool *direct_p)
{
    int fl;

    if (fd != w->last_fd) {
        fl = fcntl(fd, F_GETFL);
        if (fl < 0) {
            return nxl__fail_errno(errno, "kv fill: fcntl(fd %d)", fd);
        }
        w->last_fd = fd;
        w->last_direct = (fl & O_DIRECT) != 0;
    }
    *direct_p = w->last_direct;
    return NXL_OK;
}

/* pread_upto reads up to len bytes at off, retrying EINTR and short
 * reads, stopping at end of file; *got_p = bytes read. */
static nxl_status_t
pread_upto(int fd, void *dst, size_t len, uint64_t off, size_t *got_p)
{
    size_t got = 0;
    ssize_t r;

    while (got < len) {
        r = pread(fd, (uint8_t *)dst + got, len - got, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return nxl__fail_errno(
                errno, "kv fill: pread(fd %d, %zu bytes at %" PRIu64 ")", fd,
                len - got, off + got);
        }
        if (r == 0) {
            break;
        }
        got += (size_t)r;
    }
    *got_p = got;
    return NXL_OK;
}

/* pwrite_all writes len bytes at off, retrying EINTR and short writes. */
static nxl_status_t
pwrite_all(int fd, const void *src, size_t len, uint64_t off)
{
    size_t put = 0;
    ssize_t r;

    while (put < len) {
        r = pwrite(fd, (const uint8_t *)src + put, len - put,
                   (off_t)(off + put));
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return nxl__fail_errno(
                errno, "kv fill: pwrite(fd %d, %zu bytes at %" PRIu64 ")", fd,
                len - put, off + put);
        }
        put += (size_t)r;
    }
    return NXL_OK;
}

/* disk_span decides how a region [off, off + len) of fd is reached: in
 * place (*n_p = 0), or, with O_DIRECT on fd and a region that is not
 * 4096-aligned, through w->span: then it reads the aligned span
 * [*start_p, *start_p + *n_p) around the region (which fits the span
 * buffer) from fd into w->span, *got_p bytes (fewer when the file ends
 * inside it). */
static nxl_status_t
disk_span(fill_walk_t *w, int fd, uint64_t off, size_t len, uint64_t *start_p,
          size_t *n_p, size_t *got_p)
{
    bool direct = false;
    nxl_status_t st = fd_direct(w, fd, &direct);

    *n_p = 0;
    if (st != NXL_OK || !direct ||
        (off % FILL_ALIGN == 0 && len % FILL_ALIGN == 0)) {
        return st;
    }
    *start_p = off / FILL_ALIGN * FILL_ALIGN;
    *n_p = (size_t)((off + len + FILL_ALIGN - 1) / FILL_ALIGN * FILL_ALIGN -
                    *start_p);
    return pread_upto(fd, w->span, *n_p, *start_p, got_p);
}

/* disk_write writes w->buf[0..len) at file offset off of fd; with
 * O_DIRECT and an unaligned region, over the aligned span around it. */
static nxl_status_t
disk_write(fill_walk_t *w, int fd, uint64_t off, size_t len)
{
    uint64_t start = 0;
    size_t n, got = 0;
    nxl_status_t st = disk_span(w, fd, off, len, &start, &n, &got);

    if (st != NXL_OK) {
        return st;
    }
    if (n == 0) {
        return pwrite_all(fd, w->buf, len, off);
    }
    if (got < n) {
        memset(w->span + got, 0, n - got);
    }
    memcpy(w->span + (off - start), w->buf, len);
    return pwrite_all(fd, w->span, n, start);
}

/* disk_read reads len bytes at file offset off of fd into w->buf (via the
 * aligned span with O_DIRECT and an unaligned region). A read past the
 * end of the file is NXL_ERR_IO. */
static nxl_status_t
disk_read(fill_walk_t *w, int fd, uint64_t off, size_t len)
{
    uint64_t start = 0;
    size_t n, got = 0;
    nxl_status_t st = disk_span(w, fd, off, len, &start, &n, &got);

    if (st != NXL_OK) {
        return st;
    }
    if (n == 0) {
        st = pread_upto(fd, w->buf, len, off, &got);
        if (st == NXL_OK && got < len) {
            return nxl__fail(NXL_ERR_IO,
                             "kv fill: fd %d ends inside the region at %" PRIu64
                             " (%zu of %zu bytes)",
                             fd, off, got, len);
        }
        return st;
    }
    if (got < off - start + len) {
        return nxl__fail(NXL_ERR_IO,
                         "kv fill: fd %d ends inside the region at %" PRIu64,
                         fd, off);
    }
    memcpy(w->buf, w->span + (off - start), len);
    return NXL_OK;
}

/* pattern_write writes the pattern of region (b, lyr, *) into p[0..len). */
static void
pattern_write(uint8_t *p, size_t len, nxl_kv_fill_t pattern, uint8_t value,
              size_t b, size_t lyr)
{
    size_t o;

    if (pattern == NXL_KV_FILL_CONSTANT) {
        memset(p, value, len);
        return;
    }
    for (o = 0; o < len; o++) {
        p[o] = (uint8_t)(b + lyr + o);
    }
}

/* fill_range fills layers [begin, end) of blocks ids with the pattern,
 * then fsyncs the files of a DISK layout. Arguments already checked. */
static nxl_status_t
fill_range(const nxl_kv_layout_t *l, const size_t *ids, size_t n, size_t begin,
           size_t end, nxl_kv_fill_t pattern, uint8_t value)
{
    size_t r = l->region_size, i, lyr, o;
    uint64_t addr;
    fill_walk_t w;
    int fd;
    nxl_status_t st;

    if (pattern != NXL_KV_FILL_CONSTANT && pattern != NXL_KV_FILL_SEQUENTIAL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv fill: unknown pattern %d",
                         (int)pattern);
    }
    st = walk_init(&w, l);
    if (st != NXL_OK) {
        goto out;
    }
    for (i = 0; i < n; i++) {
        for (lyr = begin; lyr < end; lyr++) {
            /* The pattern does not depend on outer: build it once. */
            if (w.buf != NULL) {
                pattern_write(w.buf, r, pattern, value, ids[i], lyr);
            }
            for (o = 0; o < l->cfg.outer_dim; o++) {
                addr = nxl__kv_addr(l, ids[i], lyr, o);
                switch (l->loc.kind) {
                case NXL_KV_DEVICE:
                    st = w.dev->copy((void *)(uintptr_t)addr, w.buf, r,
                                     NXL_COPY_H2D);
                    break;
                case NXL_KV_DISK:
                    st = disk_write(&w, region_fd(l, lyr), addr, r);
                    break;
                default:
                    pattern_write((uint8_t *)(uintptr_t)addr, r, pattern, value,
                                  ids[i], lyr);
                    break;
                }
                if (st != NXL_OK) {
                    goto out;
                }
            }
        }
    }
    if (l->loc.kind == NXL_KV_DISK && n != 0) {
        /* One fsync per file: FC has one, LS one per layer. */
        for (lyr = begin; lyr < end; lyr++) {
            fd = region_fd(l, lyr);
            if (lyr > begin && fd == region_fd(l, lyr - 1)) {
                continue;
            }
            if (fsync(fd) != 0) {
                st = nxl__fail_errno(errno, "kv fill: fsync(fd %d)", fd);
                goto out;
            }
        }
    }
out:
    walk_fini(&w);
    return st;
}

/* nxl_kv_fill_blocks fills every region (all layers, all outers) of blocks
 * ids of l with pattern (value for CONSTANT), whatever the layout's kind.
 * All ids are checked first: "Block ID b out of range" and nothing is
 * written. Returns NXL_OK, NXL_ERR_INVALID_PARAM, NXL_ERR_NOMEM,
 * NXL_ERR_IO or the device kind's error. Not thread-safe for the same
 * blocks; different blocks may be filled from several threads. */
NXL_API nxl_status_t
nxl_kv_fill_blocks(const nxl_kv_layout_t *l, const size_t *ids, size_t n,
                   nxl_kv_fill_t pattern, uint8_t value)
{
    nxl_status_t st = check_ids(l, ids, n);

    if (st != NXL_OK) {
        return st;
    }
    return fill_range(l, ids, n, 0, l->cfg.num_layers, pattern, value);
}

/* nxl_kv_fill_layers fills layers [layer_begin, layer_end) of blocks ids
 * (any kind). "Layer range a..b exceeds num_layers n" when layer_end is
 * past the last layer; an empty range writes nothing. Statuses as
 * nxl_kv_fill_blocks. */
NXL_API nxl_status_t
nxl_kv_fill_layers(const nxl_kv_layout_t *l, const size_t *ids, size_t n,
                   size_t layer_begin, size_t layer_end, nxl_kv_fill_t pattern,
                   uint8_t value)
{
    nxl_status_t st = check_ids(l, ids, n);

    if (st == NXL_OK) {
        st = check_layers(l, layer_begin, layer_end);
    }
    if (st != NXL_OK) {
        return st;
    }
    return fill_range(l, ids, n, layer_begin, layer_end, pattern, value);
}

/* nxl_kv_checksum_blocks writes into sums[i] the XXH3-128 (32 lowercase
 * hex digits) of block ids[i]'s regions over layers [layer_begin,
 * layer_end) (0, 0 = all), hashed in layer -> outer order. sums is
 * written only on success. Returns NXL_OK, NXL_ERR_INVALID_PARAM,
 * NXL_ERR_NOMEM, NXL_ERR_IO or the device kind's error. Thread-safe for
 * concurrent readers. */
NXL_API nxl_status_t
nxl_kv_checksum_blocks(const nxl_kv_layout_t *l, const size_t *ids, size_t n,
                       size_t layer_begin, size_t layer_end,
                       nxl_kv_checksum_t *sums)
{
    XXH3_state_t *hs = NULL;
    XXH128_canonical_t canon;
    nxl_kv_checksum_t *out = NULL;
    const uint8_t *p;
    size_t r, i, lyr, o, k;
    uint64_t addr;
    fill_walk_t w;
    nxl_status_t st = check_ids(l, ids, n);

    if (st != NXL_OK) {
        return st;
    }
    if (n != 0 && sums == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv checksum: NULL sums");
    }
    if (layer_begin == 0 && layer_end == 0) {
        layer_end = l->cfg.num_layers;
    }
    st = check_layers(l, layer_begin, layer_end);
    if (st != NXL_OK) {
        return st;
    }
    r = l->region_size;
    st = walk_init(&w, l);
    if (st != NXL_OK) {
        goto out;
    }
    hs = XXH3_createState();
    out = calloc(n != 0 ? n : 1, sizeof(*out));
    if (hs == NULL || out == NULL) {
        st = nxl__fail(NXL_ERR_NOMEM, "kv checksum: out of memory");
        goto out;
    }
    for (i = 0; i < n; i++) {
        XXH3_128bits_reset(hs);
        for (lyr = layer_begin; lyr < layer_end; lyr++) {
            for (o = 0; o < l->cfg.outer_dim; o++) {
                addr = nxl__kv_addr(l, ids[i], lyr, o);
                switch (l->loc.kind) {
                case NXL_KV_DEVICE:
                    st = w.dev->copy(w.buf, (const void *)(uintptr_t)addr, r,
                                     NXL_COPY_D2H);
                    p = w.buf;
                    break;
                case NXL_KV_DISK:
                    st = disk_read(&w, region_fd(l, lyr), addr, r);
                    p = w.buf;
                    break;
                default:
                    p = (const uint8_t *)(uintptr_t)addr;
                    break;
                }
                if (st != NXL_OK) {
                    goto out;
                }
                XXH3_128bits_update(hs, p, r);
            }
        }
        XXH128_canonicalFromHash(&canon, XXH3_128bits_digest(hs));
        for (k = 0; k < sizeof(canon.digest); k++) {
            snprintf(out[i].hex + 2 * k, 3, "%02x", canon.digest[k]);
        }
    }
    if (n != 0) {
        memcpy(sums, out, n * sizeof(*out));
    }
out:
    XXH3_freeState(hs);
    free(out);
    walk_fini(&w);
    return st;
}
