/*
 * fuzz_connect.c - libFuzzer target for the connector's wire decoders
 * (include/nxl/nxl_connect.h), the code that reads what a peer sends:
 *   nxl_rdma_metadata_decode   RdmaMetadata JSON
 *   nxl_connect_desc_decode    SerializedDescriptor JSON
 *   nxl_media_desc_decode      RdmaMediaDataDescriptor JSON
 *   nxl_connect_md_decode      "b64:"/hex zlib agent-metadata strings
 *   nxl_connect_device_parse   device strings
 * Each must return OK or a documented error with a message, without
 * crashing, reading out of bounds, leaking or inflating past its bound.
 * What decodes must survive encode -> decode with the same value and
 * encode -> decode -> encode with the same bytes.
 */
#include <nxl/nxl_connect.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CHECK names the violated property and aborts, so libFuzzer saves the
 * input. */
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_connect: %s:%d: %s (%s)\n", __FILE__,        \
                    __LINE__, #cond, nxl_last_error());                        \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* The inflate bound for fuzzing: small, so bombs are cheap to refuse. */
#define FUZZ_MD_MAX ((size_t)1 << 20)

static int
desc_equal(const nxl_connect_desc_t *a, const nxl_connect_desc_t *b)
{
    return a->ptr == b->ptr && a->size == b->size && a->device == b->device &&
           a->device_id == b->device_id;
}

/* failed asserts a refused decode gave a documented status and a message. */
static void
failed(nxl_status_t s)
{
    CHECK(s == NXL_ERR_PROTO || s == NXL_ERR_NOMEM);
    CHECK(nxl_last_error()[0] != '\0');
}

static void
fuzz_rdma(const uint8_t *data, size_t size)
{
    nxl_rdma_metadata_t *md = NULL, *md2 = NULL;
    nxl_blob_t a = {0}, b = {0}, amd = {0};
    nxl_status_t s;
    size_t i;

    s = nxl_rdma_metadata_decode(data, size, &md);
    if (s != NXL_OK) {
        failed(s);
        CHECK(md == NULL);
        return;
    }
    CHECK(nxl_rdma_metadata_encode(md, &a) == NXL_OK);
    CHECK(strlen(a.data) == a.len);
    CHECK(nxl_rdma_metadata_decode(a.data, a.len, &md2) == NXL_OK);
    CHECK(md2->num_descriptors == md->num_descriptors);
    for (i = 0; i < md->num_descriptors; i++) {
        CHECK(desc_equal(&md->descriptors[i], &md2->descriptors[i]));
    }
    CHECK(strcmp(md->nixl_metadata, md2->nixl_metadata) == 0);
    CHECK(strcmp(md->notification_key, md2->notification_key) == 0);
    CHECK(md->operation_kind == md2->operation_kind);
    CHECK(nxl_rdma_metadata_encode(md2, &b) == NXL_OK);
    CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    /* The metadata string passed the syntax check; inflating it may still
     * fail, but only as documented and within the bound. */
    s = nxl_connect_md_decode(md->nixl_metadata, strlen(md->nixl_metadata),
                              FUZZ_MD_MAX, &amd);
    if (s == NXL_OK) {
        CHECK(amd.len <= FUZZ_MD_MAX);
        nxl_blob_free(&amd);
    } else {
        failed(s);
    }
    nxl_blob_free(&a);
    nxl_blob_free(&b);
    nxl_rdma_metadata_free(md2);
    nxl_rdma_metadata_free(md);
}

static void
fuzz_desc(const uint8_t *data, size_t size)
{
    nxl_connect_desc_t d, d2;
    nxl_blob_t a = {0};
    nxl_status_t s;

    s = nxl_connect_desc_decode(data, size, &d);
    if (s != NXL_OK) {
        failed(s);
        return;
    }
    CHECK(nxl_connect_desc_encode(&d, &a) == NXL_OK);
    CHECK(nxl_connect_desc_decode(a.data, a.len, &d2) == NXL_OK);
    CHECK(desc_equal(&d, &d2));
    nxl_blob_free(&a);
}

static void
fuzz_media(const uint8_t *data, size_t size)
{
    nxl_media_desc_t *d = NULL;
    uint64_t bytes = 1;
    nxl_status_t s;
    size_t i;

    s = nxl_media_desc_decode(data, size, &d);
    if (s != NXL_OK) {
        failed(s);
        CHECK(d == NULL);
        return;
    }
    CHECK(d->ndim >= 1 && d->ndim <= NXL_MEDIA_MAX_DIMS);
    for (i = 0; i < d->ndim; i++) {
        bytes *= d->shape[i];
    }
    CHECK(bytes == d->size);
    CHECK(strcmp(d->dtype, "UINT8") == 0);
    CHECK(d->metadata_json != NULL && d->nixl_metadata != NULL);
    nxl_media_desc_free(d);
}

static void
fuzz_md_string(const uint8_t *data, size_t size)
{
    nxl_blob_t md = {0}, again = {0}, back = {0};
    nxl_status_t s;

    s = nxl_connect_md_decode((const char *)data, size, FUZZ_MD_MAX, &md);
    if (s != NXL_OK) {
        failed(s);
        return;
    }
    CHECK(md.len <= FUZZ_MD_MAX);
    /* Re-encoding gives a string that decodes to the same bytes. */
    CHECK(nxl_connect_md_encode(md.data, md.len, size % 2, &again) == NXL_OK);
    CHECK(nxl_connect_md_decode(again.data, again.len, FUZZ_MD_MAX, &back) ==
          NXL_OK);
    CHECK(back.len == md.len && memcmp(back.data, md.data, md.len) == 0);
    nxl_blob_free(&md);
    nxl_blob_free(&again);
    nxl_blob_free(&back);
}

static void
fuzz_device(const uint8_t *data, size_t size)
{
    char s[256], out[64];
    nxl_connect_device_t dev;
    uint64_t id, id2;
    nxl_connect_device_t dev2;
    size_t n = size < sizeof(s) - 1 ? size : sizeof(s) - 1;

    memcpy(s, data, n);
    s[n] = '\0';
    if (nxl_connect_device_parse(s, &dev, &id) != NXL_OK) {
        CHECK(nxl_last_error()[0] != '\0');
        return;
    }
    CHECK(dev == NXL_CONNECT_DEVICE_HOST || dev == NXL_CONNECT_DEVICE_CUDA);
    CHECK(nxl_connect_device_format(dev, id, out, sizeof(out)) == NXL_OK);
    CHECK(nxl_connect_device_parse(out, &dev2, &id2) == NXL_OK);
    CHECK(dev2 == dev && id2 == id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* LLVMFuzzerTestOneInput runs one input through every decoder. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_rdma(data, size);
    fuzz_desc(data, size);
    fuzz_media(data, size);
    fuzz_md_string(data, size);
    fuzz_device(data, size);
    return 0;
}
