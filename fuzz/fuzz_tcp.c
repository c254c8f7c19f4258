/*
 * fuzz_tcp.c - libFuzzer target for the TCP backend's wire decoders
 * (src/backends/tcp/frame.c): the frame-stream walk a receiver does, the
 * 32-byte header, descriptor tables, hellos and conn info.
 *
 * Any input: no crash, no out-of-bounds read, no leak. Properties checked:
 *   - be_tcp_stream_scan returns -1 or a frame count <= len / 32;
 *   - a header that decodes re-encodes to the same 32 bytes;
 *   - a descriptor table that checks sums to what it reports, read as
 *     version-1/2 descriptors (16 bytes) and as version-3 ones (24, with
 *     a region key); only requests carry the keys flag;
 *   - a decoded CANCEL (protocol version 2) is a bare header naming a
 *     request (id not 0); a READ reply saying more frames follow has
 *     status 0;
 *   - a hello with version field 1 re-encodes identically with its
 *     max_version field (0 from version-1 peers reads as 1);
 *   - conn info that decodes re-encodes to the same bytes (it is exact).
 */
#include "backends/tcp/tcp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CHECK names the violated property and aborts, so libFuzzer saves the
 * input. */
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_tcp: %s:%d: %s\n", __FILE__, __LINE__,       \
                    #cond);                                                    \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* fuzz_header checks the header decoder at p. */
static void
fuzz_header(const uint8_t *p, size_t len)
{
    be_tcp_frame_t f;
    const char *why = NULL;
    uint8_t out[BE_TCP_HDR_SIZE];
    int rc;

    rc = be_tcp_frame_decode(p, len, &f, &why);
    CHECK(rc == -1 || rc == 0 || rc == (int)BE_TCP_HDR_SIZE);
    CHECK(rc != 0 || len < BE_TCP_HDR_SIZE);
    CHECK(rc != -1 || why != NULL);
    if (rc == (int)BE_TCP_HDR_SIZE) {
        CHECK(f.ndesc <= BE_TCP_MAX_DESCS);
        if (f.type == BE_TCP_CANCEL) {
            CHECK(f.id != 0 && f.ndesc == 0 && f.aux_len == 0 &&
                  f.data_len == 0 && f.flags == 0 && f.status == 0);
        }
        if (f.flags & BE_TCP_F_MORE) {
            CHECK(f.type == BE_TCP_READ_RESP && f.status == 0);
        }
        if (f.flags & BE_TCP_F_KEYS) {
            CHECK(f.type == BE_TCP_READ_REQ || f.type == BE_TCP_WRITE_REQ);
        }
        be_tcp_frame_encode(&f, out);
        CHECK(memcmp(out, p, BE_TCP_HDR_SIZE) == 0);
    }
}

/* fuzz_descs checks the descriptor table check on the whole input, read
 * as descriptors of stride bytes. */
static void
fuzz_descs(const uint8_t *p, size_t len, size_t stride)
{
    const char *why = NULL;
    uint64_t total = 0, sum = 0, a, l, k;
    uint32_t n = (uint32_t)(len / stride), i;

    if (n > BE_TCP_MAX_DESCS) {
        n = BE_TCP_MAX_DESCS;
    }
    /* A table whose size is not n descriptors is refused. */
    CHECK(n == 0 || !be_tcp_descs_check(p, (size_t)n * stride - 1, n, stride,
                                        &total, &why));
    if (be_tcp_descs_check(p, (size_t)n * stride, n, stride, &total, &why)) {
        for (i = 0; i < n; i++) {
            be_tcp_wdesc(p, stride, i, &a, &l, &k);
            CHECK(l <= UINT64_MAX - a);
            CHECK(stride == BE_TCP_WDESC_KEYED || k == 0);
            sum += l;
        }
        CHECK(sum == total);
    }
}

/* fuzz_hello checks the hello decoder. */
static void
fuzz_hello(const uint8_t *p, size_t len)
{
    uint8_t out[BE_TCP_HELLO_FIXED + BE_TCP_MAX_NAME];
    const char *why = NULL;
    char name[BE_TCP_MAX_NAME + 1];
    be_tcp_hello_t h;
    uint16_t raw;
    size_t n;

    if (!be_tcp_hello_decode(p, len, &h, &why)) {
        return;
    }
    CHECK(h.name_len >= 1 && h.name_len <= BE_TCP_MAX_NAME);
    CHECK(h.stream < h.nstreams);
    CHECK(memchr(h.name, '\0', h.name_len) == NULL);
    memcpy(name, h.name, h.name_len);
    name[h.name_len] = '\0';
    raw = (uint16_t)(p[10] | (p[11] << 8));
    CHECK(h.max_version == (raw == 0 ? 1 : raw));
    if (h.version == BE_TCP_VERSION && p[5] == 0) {
        n = be_tcp_hello_encode_max(out, sizeof(out), name, h.stream,
                                    h.nstreams, raw);
        CHECK(n == len && memcmp(out, p, len) == 0);
    }
}

/* fuzz_conninfo checks the conn info decoder. */
static void
fuzz_conninfo(const uint8_t *p, size_t len)
{
    be_tcp_conninfo_t ci, cj;
    const char *why = NULL;
    nxl_blob_t blob;
    unsigned i;

    if (!be_tcp_conninfo_decode(p, len, &ci, &why)) {
        return;
    }
    CHECK(ci.naddrs >= 1 && ci.naddrs <= BE_TCP_MAX_ADDRS && ci.port != 0);
    for (i = 0; i < ci.naddrs; i++) {
        CHECK(strlen(ci.addrs[i]) >= 1 &&
              strlen(ci.addrs[i]) < BE_TCP_ADDR_MAX);
    }
    CHECK(be_tcp_conninfo_encode(&ci, &blob) == NXL_OK);
    CHECK(blob.len == len && memcmp(blob.data, p, len) == 0);
    CHECK(be_tcp_conninfo_decode(blob.data, blob.len, &cj, &why));
    free(blob.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* LLVMFuzzerTestOneInput reads the input every way a peer's bytes are
 * read: as a frame stream, a header (at each 32-byte boundary of the
 * first few), a descriptor table, a hello and conn info. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *why = NULL;
    long frames;
    size_t off;

    frames = be_tcp_stream_scan(data, size, &why);
    CHECK(frames >= -1 && frames <= (long)(size / BE_TCP_HDR_SIZE));
    CHECK(frames != -1 || why != NULL);
    for (off = 0; off <= size && off < 4 * BE_TCP_HDR_SIZE;
         off += BE_TCP_HDR_SIZE) {
        fuzz_header(data + off, size - off);
    }
    fuzz_descs(data, size, BE_TCP_WDESC_SIZE);
    fuzz_descs(data, size, BE_TCP_WDESC_KEYED);
    fuzz_hello(data, size);
    fuzz_conninfo(data, size);
    if (size > BE_TCP_HDR_SIZE) {
        fuzz_hello(data + BE_TCP_HDR_SIZE, size - BE_TCP_HDR_SIZE);
    }
    return 0;
}
