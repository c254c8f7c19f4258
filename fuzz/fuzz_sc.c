/*
 * fuzz_sc.c - libFuzzer target for the side-channel frame header and ACK
 * payload parsers (the parts of src/md/sidechan.c that read peer bytes
 * outside the socket loop).
 *
 * The input is read three ways: its first 12 bytes as a frame header
 * (a header that decodes must re-encode to the same bytes), the whole
 * input as an ACK payload, and the bytes after the header as an ACK
 * payload (the shape of a real reply). A parsed ACK is rebuilt with
 * nxl__sc_ack and must parse to the same status.
 */
#include "md/md.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_sc: %s:%d: %s\n", __FILE__, __LINE__,        \
                    #cond);                                                    \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* check_ack parses p as an ACK payload and checks the round trip. */
static void
check_ack(const uint8_t *p, size_t n)
{
    nxl_status_t status, again;
    nxl_blob_t ack = {0};

    status = nxl__sc_ack_parse(p, n);
    if (status == NXL_ERR_PROTO && strncmp(nxl_last_error(), "sc: ", 4) == 0) {
        return; /* malformed */
    }
    CHECK(status <= NXL_IN_PROG);
    CHECK(status >= 0 || strncmp(nxl_last_error(), "peer: ", 6) == 0);
    CHECK(nxl__sc_ack(status, &ack) == NXL_OK);
    again = nxl__sc_ack_parse(ack.data, ack.len);
    CHECK(again == status);
    free(ack.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* LLVMFuzzerTestOneInput runs one input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t again[NXL__SC_HDR_SIZE];
    nxl__sc_hdr_t h;
    nxl_status_t status;

    if (size >= NXL__SC_HDR_SIZE) {
        status = nxl__sc_hdr_decode(data, &h);
        if (status == NXL_OK) {
            CHECK(h.type >= NXL__SC_LOAD && h.type <= NXL__SC_AUTH);
            CHECK(h.len <= NXL__SC_MAX_PAYLOAD);
            nxl__sc_hdr_encode(h.type, h.len, again);
            CHECK(memcmp(again, data, NXL__SC_HDR_SIZE) == 0);
        } else {
            CHECK(status == NXL_ERR_MISMATCH ||
                  status == NXL_ERR_NOT_SUPPORTED || status == NXL_ERR_PROTO);
        }
        check_ack(data + NXL__SC_HDR_SIZE, size - NXL__SC_HDR_SIZE);
    }
    check_ack(size ? data : NULL, size);
    return 0;
}
