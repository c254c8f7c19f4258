/*
 * fuzz_etcd.c - libFuzzer target for the etcd store's readers of server
 * bytes (src/md/etcd.c): the JSON answer parser and the newline splitter
 * of the gateway's streams.
 *
 * The whole input is parsed as one answer (with a key to match, as a
 * fetch's watch does); then it is fed to a stream in chunks whose sizes
 * come from the first byte, and every line is parsed as a watch message.
 * Whatever the bytes: no crash, no leak, a failure leaves an "etcd: "
 * message and no value, and a success never yields a value larger than
 * the limit.
 */
#include "md/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_etcd: %s:%d: %s\n", __FILE__, __LINE__,      \
                    #cond);                                                    \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* check_one parses text and checks what any result must satisfy. */
static nxl_status_t
check_one(const char *text, size_t len, const char *key)
{
    nxl__etcd_reply_t r;
    nxl_status_t status = nxl__etcd_parse(text, len, key, &r);

    if (status != NXL_OK) {
        CHECK(status == NXL_ERR_PROTO || status == NXL_ERR_NOMEM);
        CHECK(strncmp(nxl_last_error(), "etcd: ", 6) == 0);
        CHECK(r.value.data == NULL && r.value.len == 0);
        return status;
    }
    CHECK(r.value.len <= NXL__SC_MAX_PAYLOAD);
    CHECK(r.value.len == 0 || r.has_kv);
    CHECK(r.grpc_code >= 0 && r.grpc_code < 100);
    CHECK(memchr(r.message, '\0', sizeof(r.message)) != NULL);
    if (r.grpc_code != 0) {
        CHECK(r.message[0] != '\0');
    }
    nxl__etcd_reply_fini(&r);
    return NXL_OK;
}

static nxl_status_t
on_line(void *arg, const char *line, size_t len)
{
    unsigned *n = arg;

    CHECK(len > 0 && memchr(line, '\n', len) == NULL);
    (*n)++;
    (void)check_one(line, len, NULL);
    return NXL_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* LLVMFuzzerTestOneInput runs one input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nxl__etcd_stream_t s;
    size_t chunk, off;
    unsigned lines = 0;
    nxl_status_t status = NXL_OK;

    (void)check_one((const char *)data, size, "YQ==");
    memset(&s, 0, sizeof(s));
    s.max = 4096;
    chunk = size > 0 ? (size_t)data[0] % 64 + 1 : 1;
    for (off = 0; off < size && status == NXL_OK; off += chunk) {
        status = nxl__etcd_stream_feed(&s, data + off,
                                       size - off < chunk ? size - off : chunk,
                                       on_line, &lines);
    }
    CHECK(status == NXL_OK || status == NXL_ERR_PROTO);
    nxl__etcd_stream_fini(&s);
    return 0;
}
