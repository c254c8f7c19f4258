/*
 * fuzz_md.c - libFuzzer target for the metadata decoder.
 *
 * Any input: nxl__md_decode must return OK or one of its documented
 * errors without crashing, reading out of bounds, leaking, or allocating
 * more than the input justifies. A decoded result must satisfy the
 * documented invariants and survive encode -> decode -> encode with
 * identical bytes (the encoding of a decoded md is canonical).
 */
#include "md/md.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* check names the violated property and aborts, so libFuzzer saves the
 * input. */
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_md: %s:%d: %s\n", __FILE__, __LINE__,        \
                    #cond);                                                    \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* check_name asserts the decoder's name guarantees. */
static void
check_name(const char *s)
{
    size_t n;

    CHECK(s != NULL);
    n = strlen(s);
    CHECK(n >= 1 && n <= NXL__MD_NAME_MAX);
}

/* check_md asserts the invariants nxl__md_decode promises. */
static void
check_md(const nxl__md_t *md, size_t len)
{
    size_t i, j, total = 0;

    check_name(md->agent);
    CHECK((md->nconns == 0) == (md->conns == NULL));
    CHECK((md->nsections == 0) == (md->sections == NULL));
    for (i = 0; i < md->nconns; i++) {
        check_name(md->conns[i].backend);
        CHECK((md->conns[i].len == 0) == (md->conns[i].info == NULL));
        total += md->conns[i].len;
    }
    for (i = 0; i < md->nsections; i++) {
        const nxl__md_section_t *s = &md->sections[i];

        check_name(s->backend);
        CHECK((unsigned)s->kind < NXL_MEM_KINDS);
        CHECK((s->count == 0) == (s->regions == NULL));
        for (j = 0; j < s->count; j++) {
            CHECK((s->regions[j].pub_len == 0) == (s->regions[j].pub == NULL));
            total += s->regions[j].pub_len + 28u;
        }
    }
    CHECK(total <= len);
}

/* encode_blob encodes md into a malloc'd blob. */
static nxl_status_t
encode_blob(const nxl__md_t *md, nxl_blob_t *blob)
{
    nxl__wbuf_t w;
    nxl_status_t status;

    nxl__wbuf_init(&w);
    status = nxl__md_encode(md, &w);
    if (status != NXL_OK) {
        nxl__wbuf_fini(&w);
        return status;
    }
    return nxl__wbuf_finish(&w, blob);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* LLVMFuzzerTestOneInput runs one input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nxl_blob_t e1 = {0}, e2 = {0};
    nxl__md_t *md = NULL, *md2 = NULL;
    nxl_status_t status;

    status = nxl__md_decode(data, size, &md);
    if (status != NXL_OK) {
        CHECK(status == NXL_ERR_PROTO || status == NXL_ERR_MISMATCH ||
              status == NXL_ERR_NOT_SUPPORTED);
        CHECK(strncmp(nxl_last_error(), "md: ", 4) == 0);
        return 0;
    }
    check_md(md, size);

    CHECK(encode_blob(md, &e1) == NXL_OK);
    /* Re-encoding drops unknown fields and adds only an absent FLAGS
     * field (10 bytes). */
    CHECK(e1.len <= size + 10);
    CHECK(nxl__md_decode(e1.data, e1.len, &md2) == NXL_OK);
    check_md(md2, e1.len);
    CHECK(encode_blob(md2, &e2) == NXL_OK);
    CHECK(e1.len == e2.len && memcmp(e1.data, e2.data, e1.len) == 0);

    nxl__md_free(md);
    nxl__md_free(md2);
    free(e1.data);
    free(e2.data);
    return 0;
}
