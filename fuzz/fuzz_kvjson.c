/*
 * fuzz_kvjson.c - libFuzzer target for the KV layout JSON readers.
 *
 * Any input goes to nxl_kv_layout_from_json_v1 and _v2. Each must return
 * OK or one of its documented errors without crashing, reading out of
 * bounds or leaking. A layout that was read must keep its promise that
 * every region lies inside its memory descriptor (checked at the corner
 * ids), and must survive write -> read -> write with identical bytes in
 * both wire forms.
 */
#include "kv/kv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CHECK names the violated property and aborts, so libFuzzer saves the
 * input. */
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_kvjson: %s:%d: %s (%s)\n", __FILE__,         \
                    __LINE__, #cond, nxl_last_error());                        \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* check_regions asserts that the corner regions lie in their memory
 * region (the readers revalidate; the extremes bound every other id). */
static void
check_regions(const nxl_kv_layout_t *l)
{
    const nxl_kv_layout_config_t *c = nxl_kv_layout_config(l);
    size_t bs[2] = {0, c->num_blocks - 1};
    size_t ls[2] = {0, c->num_layers - 1};
    size_t os[2] = {0, c->outer_dim - 1};
    int i, j, k;

    CHECK(l->num_regions ==
          (l->type == NXL_KV_FULLY_CONTIGUOUS ? 1 : c->num_layers));
    for (i = 0; i < 2; i++) {
        for (j = 0; j < 2; j++) {
            for (k = 0; k < 2; k++) {
                nxl_kv_region_t r;
                size_t m = l->type == NXL_KV_FULLY_CONTIGUOUS ? 0 : ls[j];

                CHECK(nxl_kv_layout_region(l, bs[i], ls[j], os[k], &r) ==
                      NXL_OK);
                CHECK(r.addr >= l->region_addr[m]);
                CHECK(r.addr + r.size >= r.addr);
                CHECK(r.addr + r.size <=
                      l->region_addr[m] + l->region_size_b[m]);
            }
        }
    }
}

/* rewrite writes l in form v (1 or 2), reads it back, writes that again
 * and asserts both outputs are identical. */
static void
rewrite(const nxl_kv_layout_t *l, int v)
{
    nxl_blob_t a = {0}, b = {0};
    nxl_kv_layout_t *l2 = NULL;
    nxl_status_t s;

    s = v == 1 ? nxl_kv_layout_to_json_v1(l, &a)
               : nxl_kv_layout_to_json_v2(l, &a);
    if (s != NXL_OK) {
        /* v2 cannot carry per-layer fds; nothing else may fail. */
        CHECK(v == 2 && s == NXL_ERR_NOT_SUPPORTED);
        return;
    }
    s = v == 1 ? nxl_kv_layout_from_json_v1(a.data, a.len, "fuzz", &l2)
               : nxl_kv_layout_from_json_v2(a.data, a.len, &l2);
    CHECK(s == NXL_OK);
    check_regions(l2);
    s = v == 1 ? nxl_kv_layout_to_json_v1(l2, &b)
               : nxl_kv_layout_to_json_v2(l2, &b);
    CHECK(s == NXL_OK);
    CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    nxl_kv_layout_destroy(l2);
    nxl_blob_free(&a);
    nxl_blob_free(&b);
}

/* reader_ok asserts a failed read returned a documented status with a
 * message. */
static void
reader_ok(nxl_status_t s, nxl_kv_layout_t *l)
{
    if (s != NXL_OK) {
        CHECK(s == NXL_ERR_PROTO || s == NXL_ERR_NOT_SUPPORTED ||
              s == NXL_ERR_NOMEM);
        CHECK(nxl_last_error()[0] != '\0');
        CHECK(l == NULL);
        return;
    }
    check_regions(l);
    rewrite(l, 1);
    rewrite(l, 2);
    nxl_kv_layout_destroy(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* LLVMFuzzerTestOneInput runs one input through both readers. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nxl_kv_layout_t *l = NULL;
    nxl_status_t s;

    s = nxl_kv_layout_from_json_v1(data, size, "fuzz", &l);
    reader_ok(s, l);
    l = NULL;
    s = nxl_kv_layout_from_json_v2(data, size, &l);
    reader_ok(s, l);
    return 0;
}
