/*
 * test_md.c - the metadata codec (src/md/codec.c) and the side channel
 * (src/md/sidechan.c, src/md/sidechan_srv.c).
 *
 * The golden blob tests/data/md_golden_v1.bin is regenerated, only when the
 * format changes on purpose, with
 *     NXL_MD_WRITE_GOLDEN=1 build/tests/nxl_tests md/golden_v1
 * which writes golden_md() below through the encoder before checking it.
 */
#include "harness.h"
#include "md/md.h"
#include "xt_io.h"

#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

/* --- fixtures ------------------------------------------------------------ */

static const uint8_t ucx_info[16] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05,
                                     0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
                                     0x0c, 0x0d, 0x0e, 0x0f};
static const uint8_t rkey_a[4] = {0xaa, 0xbb, 0xcc, 0xdd};
static const uint8_t rkey_b[6] = {1, 2, 3, 4, 5, 6};

static nxl__md_conn_t golden_conns[] = {
    {.backend = "UCX", .info = ucx_info, .len = sizeof(ucx_info)},
    {.backend = "SHM", .info = (const uint8_t *)"pid=4121", .len = 8},
    {.backend = "TCP", .info = NULL, .len = 0},
};
static nxl__md_region_t golden_dram_ucx[] = {
    {.desc = {0x7f0000001000u, 0x10000u, 0}, .pub = rkey_a, .pub_len = 4},
    {.desc = {0x7f0000200000u, 0x200000u, 0}, .pub = rkey_b, .pub_len = 6},
};
static nxl__md_region_t golden_vram_ucx[] = {
    {.desc = {0x7e0000000000u, 0x40000000u, 1},
     .pub = (const uint8_t *)"rk-gpu1",
     .pub_len = 7},
};
static nxl__md_region_t golden_dram_shm[] = {
    {.desc = {0x7f0000001000u, 0x10000u, 0}, .pub = NULL, .pub_len = 0},
};
static nxl__md_section_t golden_sections[] = {
    {NXL_DRAM, "UCX", 2, golden_dram_ucx},
    {NXL_VRAM, "UCX", 1, golden_vram_ucx},
    {NXL_DRAM, "SHM", 1, golden_dram_shm},
    {NXL_FILE, "POSIX", 0, NULL},
};

/* golden_md is the content of tests/data/md_golden_v1.bin. */
static const nxl__md_t *
golden_md(void)
{
    static const nxl__md_t md = {
        .agent = "prefill-0",
        .flags = NXL__MD_F_PARTIAL,
        .nconns = 3,
        .conns = golden_conns,
        .nsections = 4,
        .sections = golden_sections,
    };

    return &md;
}

/* encode_blob encodes md into a fresh blob (freed with free). */
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

/* bytes_eq compares two possibly-NULL byte ranges of length n. */
static int
bytes_eq(const uint8_t *a, const uint8_t *b, size_t n)
{
    return n == 0 || (a != NULL && b != NULL && memcmp(a, b, n) == 0);
}

/* md_same checks that b (decoded) equals a field by field. */
static int
md_same(const nxl__md_t *a, const nxl__md_t *b)
{
    size_t i, j;

    XT_ASSERT_STR(a->agent, b->agent);
    XT_ASSERT_EQ(a->flags, b->flags);
    XT_ASSERT_EQ(a->nconns, b->nconns);
    for (i = 0; i < a->nconns; i++) {
        XT_ASSERT_STR(a->conns[i].backend, b->conns[i].backend);
        XT_ASSERT_EQ(a->conns[i].len, b->conns[i].len);
        XT_ASSERT(
            bytes_eq(a->conns[i].info, b->conns[i].info, a->conns[i].len));
        XT_ASSERT(b->conns[i].len > 0 || b->conns[i].info == NULL);
    }
    XT_ASSERT_EQ(a->nsections, b->nsections);
    for (i = 0; i < a->nsections; i++) {
        const nxl__md_section_t *sa = &a->sections[i], *sb = &b->sections[i];

        XT_ASSERT_EQ(sa->kind, sb->kind);
        XT_ASSERT_STR(sa->backend, sb->backend);
        XT_ASSERT_EQ(sa->count, sb->count);
        for (j = 0; j < sa->count; j++) {
            const nxl__md_region_t *ra = &sa->regions[j], *rb = &sb->regions[j];

            XT_ASSERT_EQ(ra->desc.addr, rb->desc.addr);
            XT_ASSERT_EQ(ra->desc.len, rb->desc.len);
            XT_ASSERT_EQ(ra->desc.dev_id, rb->desc.dev_id);
            XT_ASSERT_EQ(ra->pub_len, rb->pub_len);
            XT_ASSERT(bytes_eq(ra->pub, rb->pub, ra->pub_len));
            XT_ASSERT(rb->pub_len > 0 || rb->pub == NULL);
        }
    }
    return 0;
}

/* rng is xorshift64*: deterministic garbage for the robustness cases. */
static uint64_t
rng(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* decode_ok_or decodes blob and checks the status is OK or one of the
 * documented failures with a message; an OK result must re-encode to a
 * blob that decodes to the same bytes again. Returns 0 or fails. */
static int
decode_checked(const uint8_t *blob, size_t len, nxl_status_t *status_p)
{
    nxl__md_t *md = NULL, *md2 = NULL;
    nxl_blob_t e1 = {0}, e2 = {0};
    nxl_status_t s;

    nxl__clear_error();
    s = nxl__md_decode(blob, len, &md);
    *status_p = s;
    if (s != NXL_OK) {
        XT_ASSERT(s == NXL_ERR_PROTO || s == NXL_ERR_MISMATCH ||
                  s == NXL_ERR_NOT_SUPPORTED);
        XT_ASSERT(strncmp(nxl_last_error(), "md: ", 4) == 0);
        return 0;
    }
    XT_ASSERT_OK(encode_blob(md, &e1));
    XT_ASSERT_OK(nxl__md_decode(e1.data, e1.len, &md2));
    XT_ASSERT_OK(encode_blob(md2, &e2));
    XT_ASSERT_EQ(e1.len, e2.len);
    XT_ASSERT(memcmp(e1.data, e2.data, e1.len) == 0);
    if (md_same(md, md2) != 0) {
        return 1;
    }
    nxl__md_free(md);
    nxl__md_free(md2);
    free(e1.data);
    free(e2.data);
    return 0;
}

/* --- codec: round trips -------------------------------------------------- */

static int
t_roundtrip(void)
{
    nxl_blob_t b1 = {0}, b2 = {0};
    nxl__md_t *md;

    XT_ASSERT_OK(encode_blob(golden_md(), &b1));
    XT_ASSERT_OK(nxl__md_decode(b1.data, b1.len, &md));
    if (md_same(golden_md(), md) != 0) {
        return 1;
    }
    /* Decoded copies do not point into the blob. */
    XT_ASSERT((const uint8_t *)md->agent < (uint8_t *)b1.data ||
              (const uint8_t *)md->agent >= (uint8_t *)b1.data + b1.len);
    XT_ASSERT(md->sections[3].count == 0 && md->sections[3].regions == NULL);
    XT_ASSERT(md->sections[2].regions[0].pub == NULL);
    XT_ASSERT(md->conns[2].info == NULL);
    XT_ASSERT_OK(encode_blob(md, &b2));
    XT_ASSERT_EQ(b1.len, b2.len);
    XT_ASSERT(memcmp(b1.data, b2.data, b1.len) == 0);
    nxl__md_free(md);
    free(b1.data);
    free(b2.data);
    return 0;
}

static int
t_roundtrip_minimal(void)
{
    nxl__md_t in = {.agent = "a"}, *md;
    nxl_blob_t b = {0};

    XT_ASSERT_OK(encode_blob(&in, &b));
    XT_ASSERT_EQ(b.len, 12 + 6 + 1 + 6 + 4);
    XT_ASSERT_OK(nxl__md_decode(b.data, b.len, &md));
    XT_ASSERT_STR(md->agent, "a");
    XT_ASSERT_EQ(md->flags, 0);
    XT_ASSERT_EQ(md->nconns, 0);
    XT_ASSERT(md->conns == NULL);
    XT_ASSERT_EQ(md->nsections, 0);
    XT_ASSERT(md->sections == NULL);
    nxl__md_free(md);
    free(b.data);
    nxl__md_free(NULL);
    return 0;
}

/* rand_name fills buf with a random 1..max byte name without NUL. */
static void
rand_name(uint64_t *s, char *buf, size_t max)
{
    size_t n = 1 + rng(s) % max, i;

    for (i = 0; i < n; i++) {
        buf[i] = (char)(1 + rng(s) % 255);
    }
    buf[n] = '\0';
}

static int
t_roundtrip_random(void)
{
    static char names[16][256];
    static uint8_t bytes[1 << 16];
    nxl__md_conn_t conns[4];
    nxl__md_section_t secs[8];
    nxl__md_region_t regs[8][24];
    nxl__md_t in, *md;
    nxl_blob_t b;
    uint64_t seed = 0x5eed;
    size_t i, j, it, used;

    for (i = 0; i < sizeof(bytes); i++) {
        bytes[i] = (uint8_t)rng(&seed);
    }
    for (it = 0; it < 300; it++) {
        memset(&in, 0, sizeof(in));
        rand_name(&seed, names[0], it == 0 ? 255 : 40);
        in.agent = names[0];
        in.flags = (uint32_t)rng(&seed);
        in.nconns = rng(&seed) % 5;
        in.conns = in.nconns ? conns : NULL;
        for (i = 0; i < in.nconns; i++) {
            rand_name(&seed, names[1 + i], 255);
            conns[i].backend = names[1 + i];
            conns[i].len = (uint32_t)(rng(&seed) % 300);
            conns[i].info = bytes + rng(&seed) % 1000;
        }
        in.nsections = rng(&seed) % 9;
        in.sections = in.nsections ? secs : NULL;
        for (i = 0; i < in.nsections; i++) {
            rand_name(&seed, names[5 + i], 16);
            secs[i].backend = names[5 + i];
            secs[i].kind = (nxl_mem_t)(rng(&seed) % NXL_MEM_KINDS);
            secs[i].count = rng(&seed) % 25;
            secs[i].regions = secs[i].count ? regs[i] : NULL;
            for (j = 0; j < secs[i].count; j++) {
                regs[i][j].desc.addr = rng(&seed) >> 1;
                /* Any length that neither is 0 nor wraps (decoders
                 * refuse those). */
                regs[i][j].desc.len =
                    1 + rng(&seed) % (UINT64_MAX - regs[i][j].desc.addr);
                regs[i][j].desc.dev_id = rng(&seed);
                regs[i][j].pub_len =
                    (uint32_t)(rng(&seed) % 3 == 0 ? 0 : rng(&seed) % 200);
                used = rng(&seed) % 1000;
                regs[i][j].pub = regs[i][j].pub_len ? bytes + used : NULL;
            }
        }
        XT_ASSERT_OK(encode_blob(&in, &b));
        XT_ASSERT_OK(nxl__md_decode(b.data, b.len, &md));
        if (md_same(&in, md) != 0) {
            fprintf(stderr, "iteration %zu\n", it);
            return 1;
        }
        nxl__md_free(md);
        free(b.data);
    }
    return 0;
}

static int
t_encode_appends(void)
{
    nxl__wbuf_t w;
    nxl_blob_t ref = {0};
    nxl__md_t *md;

    XT_ASSERT_OK(encode_blob(golden_md(), &ref));
    nxl__wbuf_init(&w);
    nxl__wbuf_put(&w, "prefix", 6);
    XT_ASSERT_OK(nxl__md_encode(golden_md(), &w));
    XT_ASSERT_EQ(w.len, 6 + ref.len);
    XT_ASSERT(memcmp(w.data, "prefix", 6) == 0);
    XT_ASSERT(memcmp(w.data + 6, ref.data, ref.len) == 0);
    XT_ASSERT_OK(nxl__md_decode(w.data + 6, ref.len, &md));
    nxl__md_free(md);
    nxl__wbuf_fini(&w);
    free(ref.data);
    return 0;
}

static int
t_encode_rejects(void)
{
    char longname[300];
    nxl__md_region_t bad_reg = {.desc = {1, 2, 3}, .pub = NULL, .pub_len = 5};
    nxl__md_section_t sec = {NXL_DRAM, "UCX", 1, &bad_reg};
    nxl__md_conn_t conn = {.backend = "UCX", .info = NULL, .len = 3};
    nxl__md_t md = {.agent = ""};
    nxl__wbuf_t w;

    nxl__wbuf_init(&w);
    XT_ASSERT_STATUS(nxl__md_encode(&md, &w), NXL_ERR_INVALID_PARAM);
    md.agent = NULL;
    XT_ASSERT_STATUS(nxl__md_encode(&md, &w), NXL_ERR_INVALID_PARAM);
    memset(longname, 'x', 256);
    longname[256] = '\0';
    md.agent = longname;
    XT_ASSERT_STATUS(nxl__md_encode(&md, &w), NXL_ERR_INVALID_PARAM);
    longname[255] = '\0';
    XT_ASSERT_OK(nxl__md_encode(&md, &w)); /* 255 bytes is the maximum */
    w.len = 0;
    md.agent = "a";
    md.nconns = 1;
    md.conns = &conn;
    XT_ASSERT_STATUS(nxl__md_encode(&md, &w), NXL_ERR_INVALID_PARAM);
    conn.len = 0;
    conn.backend = "";
    XT_ASSERT_STATUS(nxl__md_encode(&md, &w), NXL_ERR_INVALID_PARAM);
    md.nconns = 0;
    md.nsections = 1;
    md.sections = &sec;
    XT_ASSERT_STATUS(nxl__md_encode(&md, &w), NXL_ERR_INVALID_PARAM);
    bad_reg.pub_len = 0;
    sec.kind = (nxl_mem_t)NXL_MEM_KINDS;
    XT_ASSERT_STATUS(nxl__md_encode(&md, &w), NXL_ERR_INVALID_PARAM);
    sec.kind = NXL_DRAM;
    sec.regions = NULL;
    XT_ASSERT_STATUS(nxl__md_encode(&md, &w), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_EQ(w.len, 0); /* nothing written on a rejected input */
    nxl__wbuf_fini(&w);
    return 0;
}

/* --- codec: golden blob -------------------------------------------------- */

#define GOLDEN_NAME "md_golden_v1.bin"
#define GOLDEN_PATH NXL_TEST_DATA_DIR "/" GOLDEN_NAME

static int
t_golden_v1(void)
{
    const nxl__md_t *g = golden_md();
    nxl_blob_t enc = {0};
    nxl__md_t *md;
    uint8_t *file;
    size_t len = 0;
    FILE *f;

    XT_ASSERT_OK(encode_blob(g, &enc));
    if (getenv("NXL_MD_WRITE_GOLDEN") != NULL) {
        f = fopen(GOLDEN_PATH, "wb");
        XT_ASSERT(f != NULL);
        XT_ASSERT_EQ(fwrite(enc.data, 1, enc.len, f), enc.len);
        XT_ASSERT_EQ(fclose(f), 0);
        printf("  wrote %s (%zu bytes)\n", GOLDEN_PATH, enc.len);
    }
    file = (uint8_t *)xt_read_data(GOLDEN_NAME, &len);
    XT_ASSERT(file != NULL);

    /* The encoder reproduces the frozen bytes exactly. */
    XT_ASSERT_EQ(len, enc.len);
    XT_ASSERT(memcmp(file, enc.data, len) == 0);

    /* And the frozen bytes decode to the expected values, spelled out
     * here rather than taken from the fixture. */
    XT_ASSERT_OK(nxl__md_decode(file, len, &md));
    XT_ASSERT_STR(md->agent, "prefill-0");
    XT_ASSERT_EQ(md->flags, 1);
    XT_ASSERT_EQ(md->nconns, 3);
    XT_ASSERT_STR(md->conns[0].backend, "UCX");
    XT_ASSERT_EQ(md->conns[0].len, 16);
    XT_ASSERT_EQ(md->conns[0].info[15], 0x0f);
    XT_ASSERT_STR(md->conns[1].backend, "SHM");
    XT_ASSERT(md->conns[1].len == 8 &&
              memcmp(md->conns[1].info, "pid=4121", 8) == 0);
    XT_ASSERT_STR(md->conns[2].backend, "TCP");
    XT_ASSERT_EQ(md->conns[2].len, 0);
    XT_ASSERT_EQ(md->nsections, 4);
    XT_ASSERT_EQ(md->sections[0].kind, NXL_DRAM);
    XT_ASSERT_STR(md->sections[0].backend, "UCX");
    XT_ASSERT_EQ(md->sections[0].count, 2);
    XT_ASSERT_EQ(md->sections[0].regions[1].desc.addr, 0x7f0000200000ull);
    XT_ASSERT_EQ(md->sections[0].regions[1].desc.len, 0x200000);
    XT_ASSERT_EQ(md->sections[0].regions[1].pub_len, 6);
    XT_ASSERT_EQ(md->sections[0].regions[1].pub[5], 6);
    XT_ASSERT_EQ(md->sections[1].kind, NXL_VRAM);
    XT_ASSERT_EQ(md->sections[1].regions[0].desc.dev_id, 1);
    XT_ASSERT(memcmp(md->sections[1].regions[0].pub, "rk-gpu1", 7) == 0);
    XT_ASSERT_STR(md->sections[2].backend, "SHM");
    XT_ASSERT_EQ(md->sections[2].regions[0].pub_len, 0);
    XT_ASSERT_EQ(md->sections[3].kind, NXL_FILE);
    XT_ASSERT_STR(md->sections[3].backend, "POSIX");
    XT_ASSERT_EQ(md->sections[3].count, 0);
    if (md_same(g, md) != 0) {
        return 1;
    }
    nxl__md_free(md);
    free(file);
    free(enc.data);
    return 0;
}

/* --- codec: hostile input ------------------------------------------------ */

/* top_field_ends lists the offsets where top-level fields of a valid blob
 * end. */
static size_t
top_field_ends(const uint8_t *b, size_t len, size_t *ends, size_t cap)
{
    size_t pos = 12, n = 0;

    while (pos + 6 <= len && n < cap) {
        pos += 6 + nxl__le32(b + pos + 2);
        ends[n++] = pos;
    }
    return n;
}

static int
t_truncation(void)
{
    nxl_blob_t b = {0};
    nxl_status_t s;
    uint8_t *copy;
    size_t ends[32], nends, i, k, agent_end;
    nxl__md_t *md;
    bool boundary;

    XT_ASSERT_OK(encode_blob(golden_md(), &b));
    nends = top_field_ends(b.data, b.len, ends, 32);
    XT_ASSERT_EQ(nends, 2 + 3 + 4);
    agent_end = ends[0];
    for (i = 0; i < b.len; i++) {
        /* A prefix as received: the total length no longer matches. */
        copy = malloc(i ? i : 1);
        XT_ASSERT(copy != NULL);
        memcpy(copy, b.data, i);
        nxl__clear_error();
        s = nxl__md_decode(copy, i, &md);
        if (s != NXL_ERR_PROTO) {
            XT_FAILF("prefix %zu: %s (%s)", i, nxl_status_name(s),
                     nxl_last_error());
        }
        XT_ASSERT(nxl_last_error()[0] != '\0');

        /* The same prefix with the total length patched, so the decoder
         * walks into the cut field: it decodes only when the cut falls
         * between top-level fields after the agent name. */
        if (i >= 12) {
            nxl__put_le32(copy + 8, (uint32_t)i);
            boundary = false;
            for (k = 0; k < nends; k++) {
                boundary |= (ends[k] == i && i >= agent_end);
            }
            if (decode_checked(copy, i, &s) != 0) {
                return 1;
            }
            if (s != (boundary ? NXL_OK : NXL_ERR_PROTO)) {
                XT_FAILF("patched prefix %zu: %s (%s)", i, nxl_status_name(s),
                         nxl_last_error());
            }
        }
        free(copy);
    }
    free(b.data);
    return 0;
}

static int
t_error_messages(void)
{
    nxl_blob_t b = {0};
    size_t ends[32], cut;
    char want[128];
    nxl__md_t *md;

    XT_ASSERT_OK(encode_blob(golden_md(), &b));
    (void)top_field_ends(b.data, b.len, ends, 32);
    /* Cut inside region 1 of section 0 (the 6th field): after the field
     * header, kind, name (1+3), count and all of region 0 (28+4), plus 30
     * bytes of region 1 (28 + 6 long), so the count check (2 x 28) passes.
     * Patch the field and the total to the cut. */
    {
        size_t start = ends[4], region1 = start + 6 + 1 + 1 + 3 + 4 + 32;

        cut = region1 + 30; /* inside its public data */
        nxl__put_le32(b.data + start + 2, (uint32_t)(cut - start - 6));
        nxl__put_le32(b.data + 8, (uint32_t)cut);
        XT_ASSERT_STATUS(nxl__md_decode(b.data, cut, &md), NXL_ERR_PROTO);
        snprintf(want, sizeof(want),
                 "md: section 0 region 1 truncated at byte %zu", region1);
        XT_ASSERT_STR(nxl_last_error(), want);
    }
    free(b.data);
    return 0;
}

static int
t_random_garbage(void)
{
    uint8_t buf[600];
    uint64_t seed = 12345;
    nxl_status_t s;
    size_t it, len, i;
    unsigned ok = 0;

    for (it = 0; it < 200000; it++) {
        len = rng(&seed) % sizeof(buf);
        for (i = 0; i < len; i++) {
            buf[i] = (uint8_t)rng(&seed);
        }
        if (it % 2 == 1 && len >= 12) {
            /* A valid header, so the walk reaches the fields; small tags
             * and lengths make known fields likely. */
            memcpy(buf, "NXMD\x01\x00\x00\x00", 8);
            nxl__put_le32(buf + 8, (uint32_t)len);
            for (i = 12; i + 6 <= len; i += 6 + (rng(&seed) % 40)) {
                buf[i] = (uint8_t)(1 + rng(&seed) % 5);
                buf[i + 1] = 0;
                nxl__put_le32(buf + i + 2, (uint32_t)(rng(&seed) % 48));
            }
        }
        if (decode_checked(buf, len, &s) != 0) {
            fprintf(stderr, "iteration %zu\n", it);
            return 1;
        }
        ok += (s == NXL_OK);
    }
    printf("  %u of %zu random blobs decoded\n", ok, it);
    return 0;
}

static int
t_bit_flips(void)
{
    nxl_blob_t b = {0};
    nxl_status_t s;
    size_t bit;
    unsigned st[4] = {0};

    XT_ASSERT_OK(encode_blob(golden_md(), &b));
    for (bit = 0; bit < b.len * 8; bit++) {
        ((uint8_t *)b.data)[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (decode_checked(b.data, b.len, &s) != 0) {
            fprintf(stderr, "bit %zu\n", bit);
            return 1;
        }
        st[s == NXL_OK             ? 0
           : s == NXL_ERR_PROTO    ? 1
           : s == NXL_ERR_MISMATCH ? 2
                                   : 3]++;
        ((uint8_t *)b.data)[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    printf("  %zu flips: %u ok, %u proto, %u mismatch, %u not-supported\n",
           b.len * 8, st[0], st[1], st[2], st[3]);
    XT_ASSERT(st[2] == 32 && st[1] > 0);
    free(b.data);
    return 0;
}

/* hand-written blob builder, independent of the encoder */
typedef struct {
    nxl__wbuf_t w;
    size_t field_at;
} hb_t;

static void
hb_header(hb_t *h, uint16_t major, uint16_t minor)
{
    nxl__wbuf_init(&h->w);
    nxl__wbuf_put(&h->w, "NXMD", 4);
    nxl__wbuf_u16(&h->w, major);
    nxl__wbuf_u16(&h->w, minor);
    nxl__wbuf_u32(&h->w, 0);
}

static void
hb_open(hb_t *h, uint16_t tag)
{
    nxl__wbuf_u16(&h->w, tag);
    h->field_at = h->w.len;
    nxl__wbuf_u32(&h->w, 0);
}

static void
hb_close(hb_t *h)
{
    nxl__wbuf_patch_u32(&h->w, h->field_at,
                        (uint32_t)(h->w.len - h->field_at - 4));
}

static void
hb_name(hb_t *h, const char *s)
{
    nxl__wbuf_u8(&h->w, (uint8_t)strlen(s));
    nxl__wbuf_put(&h->w, s, strlen(s));
}

static void
hb_ext(hb_t *h, uint16_t tag, const char *payload)
{
    nxl__wbuf_u16(&h->w, tag);
    nxl__wbuf_u32(&h->w, (uint32_t)strlen(payload));
    nxl__wbuf_put(&h->w, payload, strlen(payload));
}

static void
hb_finish(hb_t *h)
{
    nxl__wbuf_patch_u32(&h->w, 8, (uint32_t)h->w.len);
}

/* hb_golden writes the golden metadata by hand, with extension fields
 * (unknown tags) at the top level and inside a conn and a section when
 * ext is set. */
static void
hb_golden(hb_t *h, uint16_t major, uint16_t minor, bool ext)
{
    const nxl__md_t *g = golden_md();
    size_t i, j;

    hb_header(h, major, minor);
    if (ext) {
        hb_ext(h, 0x7777, "future top-level field");
    }
    hb_open(h, 1);
    nxl__wbuf_put(&h->w, g->agent, strlen(g->agent));
    hb_close(h);
    hb_open(h, 2);
    nxl__wbuf_u32(&h->w, g->flags);
    hb_close(h);
    for (i = 0; i < g->nconns; i++) {
        hb_open(h, 3);
        hb_name(h, g->conns[i].backend);
        nxl__wbuf_u32(&h->w, g->conns[i].len);
        nxl__wbuf_put(&h->w, g->conns[i].info, g->conns[i].len);
        if (ext) {
            hb_ext(h, 0x0101, "conn extension");
            hb_ext(h, 0x0102, "");
        }
        hb_close(h);
    }
    for (i = 0; i < g->nsections; i++) {
        const nxl__md_section_t *s = &g->sections[i];

        hb_open(h, 4);
        nxl__wbuf_u8(&h->w, (uint8_t)s->kind);
        hb_name(h, s->backend);
        nxl__wbuf_u32(&h->w, (uint32_t)s->count);
        for (j = 0; j < s->count; j++) {
            nxl__wbuf_u64(&h->w, s->regions[j].desc.addr);
            nxl__wbuf_u64(&h->w, s->regions[j].desc.len);
            nxl__wbuf_u64(&h->w, s->regions[j].desc.dev_id);
            nxl__wbuf_u32(&h->w, s->regions[j].pub_len);
            nxl__wbuf_put(&h->w, s->regions[j].pub, s->regions[j].pub_len);
        }
        if (ext) {
            hb_ext(h, 0x0201, "section extension");
        }
        hb_close(h);
        if (ext && i == 1) {
            hb_ext(h, 0xfffe, "between sections");
        }
    }
    hb_finish(h);
}

static int
t_unknown_fields(void)
{
    nxl_blob_t ref = {0};
    nxl__md_t *md;
    hb_t h;

    /* Without extensions the hand-built blob is the encoder's. */
    XT_ASSERT_OK(encode_blob(golden_md(), &ref));
    hb_golden(&h, 1, 0, false);
    XT_ASSERT_EQ(h.w.len, ref.len);
    XT_ASSERT(memcmp(h.w.data, ref.data, ref.len) == 0);
    nxl__wbuf_fini(&h.w);

    hb_golden(&h, 1, 0, true);
    XT_ASSERT_OK(nxl__md_decode(h.w.data, h.w.len, &md));
    if (md_same(golden_md(), md) != 0) {
        return 1;
    }
    nxl__md_free(md);

    /* An extension that overruns its section is a bad length. */
    {
        size_t at = h.w.len - 1;
        uint8_t *p = h.w.data;

        /* The last bytes are the FILE/POSIX section's extension field
         * "section extension" (17 bytes): claim one byte more. */
        XT_ASSERT(memcmp(p + at - 16, "section extension", 17) == 0);
        nxl__put_le32(p + at - 16 - 4, 18);
        XT_ASSERT_STATUS(nxl__md_decode(h.w.data, h.w.len, &md), NXL_ERR_PROTO);
        XT_ASSERT(strstr(nxl_last_error(), "section 3: extension field") !=
                  NULL);
    }
    nxl__wbuf_fini(&h.w);
    free(ref.data);
    return 0;
}

static int
t_versions(void)
{
    nxl__md_t *md;
    hb_t h;

    hb_golden(&h, 1, 7, true); /* a future minor with new fields */
    XT_ASSERT_OK(nxl__md_decode(h.w.data, h.w.len, &md));
    if (md_same(golden_md(), md) != 0) {
        return 1;
    }
    nxl__md_free(md);
    nxl__wbuf_fini(&h.w);

    hb_golden(&h, 2, 0, false);
    XT_ASSERT_STATUS(nxl__md_decode(h.w.data, h.w.len, &md),
                     NXL_ERR_NOT_SUPPORTED);
    /* Only the first 6 bytes are read for the version verdict. */
    XT_ASSERT_STATUS(nxl__md_decode(h.w.data, 6, &md), NXL_ERR_NOT_SUPPORTED);
    nxl__wbuf_fini(&h.w);

    hb_golden(&h, 0, 0, false);
    XT_ASSERT_STATUS(nxl__md_decode(h.w.data, h.w.len, &md),
                     NXL_ERR_NOT_SUPPORTED);
    nxl__wbuf_fini(&h.w);

    hb_golden(&h, 1, 0, false);
    h.w.data[0] = 'X';
    XT_ASSERT_STATUS(nxl__md_decode(h.w.data, h.w.len, &md), NXL_ERR_MISMATCH);
    XT_ASSERT_STATUS(nxl__md_decode(h.w.data, 4, &md), NXL_ERR_MISMATCH);
    /* NIXL's own serializer prefix is not ours either. */
    XT_ASSERT_STATUS(nxl__md_decode("nixlSerDes|Agent", 16, &md),
                     NXL_ERR_MISMATCH);
    XT_ASSERT_STATUS(nxl__md_decode("", 0, &md), NXL_ERR_PROTO);
    XT_ASSERT_STATUS(nxl__md_decode(NULL, 0, &md), NXL_ERR_PROTO);
    nxl__wbuf_fini(&h.w);
    return 0;
}

/* one_field builds header + one agent field + the given raw field. */
static void
one_field(hb_t *h, uint16_t tag, const void *p, size_t n)
{
    hb_header(h, 1, 0);
    hb_ext(h, 1, "agent");
    nxl__wbuf_u16(&h->w, tag);
    nxl__wbuf_u32(&h->w, (uint32_t)n);
    nxl__wbuf_put(&h->w, p, n);
    hb_finish(h);
}

/* expect_proto checks that h decodes to PROTO with msg in the message. */
static int
expect_proto(hb_t *h, const char *msg)
{
    nxl__md_t *md = NULL;

    XT_ASSERT_STATUS(nxl__md_decode(h->w.data, h->w.len, &md), NXL_ERR_PROTO);
    if (strstr(nxl_last_error(), msg) == NULL) {
        XT_FAILF("message \"%s\" lacks \"%s\"", nxl_last_error(), msg);
    }
    nxl__wbuf_fini(&h->w);
    return 0;
}

static int
t_bad_fields(void)
{
    uint8_t sec[64];
    hb_t h;

    /* agent: empty, NUL inside, 256 bytes, twice, missing */
    hb_header(&h, 1, 0);
    hb_ext(&h, 1, "");
    hb_finish(&h);
    if (expect_proto(&h, "agent 0: empty name") != 0) {
        return 1;
    }
    one_field(&h, 1, "a\0b", 3);
    if (expect_proto(&h, "second agent name") != 0) {
        return 1;
    }
    hb_header(&h, 1, 0);
    hb_ext(&h, 2, "1234");
    hb_finish(&h);
    if (expect_proto(&h, "no agent name") != 0) {
        return 1;
    }
    hb_header(&h, 1, 0);
    nxl__wbuf_u16(&h.w, 1);
    nxl__wbuf_u32(&h.w, 3);
    nxl__wbuf_put(&h.w, "a\0b", 3);
    hb_finish(&h);
    if (expect_proto(&h, "NUL inside the name") != 0) {
        return 1;
    }
    {
        char big[257];

        memset(big, 'n', 256);
        big[256] = '\0';
        hb_header(&h, 1, 0);
        hb_ext(&h, 1, big);
        hb_finish(&h);
        if (expect_proto(&h, "name of 256 bytes") != 0) {
            return 1;
        }
    }
    /* flags: bad length, twice */
    one_field(&h, 2, "123", 3);
    if (expect_proto(&h, "has length 3, want 4") != 0) {
        return 1;
    }
    hb_header(&h, 1, 0);
    hb_ext(&h, 1, "a");
    hb_ext(&h, 2, "1234");
    hb_ext(&h, 2, "1234");
    hb_finish(&h);
    if (expect_proto(&h, "second flags") != 0) {
        return 1;
    }
    /* conn: empty backend name, info overruns */
    one_field(&h, 3, "\0\0\0\0\0", 5);
    if (expect_proto(&h, "conn 0: empty name") != 0) {
        return 1;
    }
    one_field(&h, 3, "\3UCX\5\0\0\0abcd", 12);
    if (expect_proto(&h, "conn 0 info truncated") != 0) {
        return 1;
    }
    /* section: kind 5, empty name, count truncated */
    one_field(&h, 4, "\5\3UCX\0\0\0\0", 9);
    if (expect_proto(&h, "memory kind 5") != 0) {
        return 1;
    }
    one_field(&h, 4, "\0\0\0\0\0\0", 6);
    if (expect_proto(&h, "section 0: empty name") != 0) {
        return 1;
    }
    one_field(&h, 4, "\0\3UCX\0\0", 7);
    if (expect_proto(&h, "region count truncated") != 0) {
        return 1;
    }
    /* section whose one region's public data overruns */
    memset(sec, 0, sizeof(sec));
    memcpy(sec, "\1\3UCX\1\0\0\0", 9);
    nxl__put_le32(sec + 9 + 24, 100);
    one_field(&h, 4, sec, 9 + 28 + 10);
    if (expect_proto(&h, "section 0 region 0 truncated") != 0) {
        return 1;
    }
    /* top-level field header cut, field longer than the blob */
    hb_header(&h, 1, 0);
    hb_ext(&h, 1, "a");
    nxl__wbuf_put(&h.w, "\1\0\0", 3);
    hb_finish(&h);
    if (expect_proto(&h, "field 1 header truncated") != 0) {
        return 1;
    }
    hb_header(&h, 1, 0);
    hb_ext(&h, 1, "a");
    nxl__wbuf_put(&h.w, "\x33\x33\xff\xff\xff\xff", 6);
    hb_finish(&h);
    if (expect_proto(&h, "exceeds the 0 bytes left") != 0) {
        return 1;
    }
    /* total length disagrees with the blob */
    hb_header(&h, 1, 0);
    hb_ext(&h, 1, "a");
    hb_finish(&h);
    nxl__wbuf_u8(&h.w, 0);
    if (expect_proto(&h, "header says 19 bytes, blob has 20") != 0) {
        return 1;
    }
    return 0;
}

/* heap_in_use returns the bytes malloc has handed out (0 where the
 * allocator does not say, e.g. under ASan). */
static size_t
heap_in_use(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    return mallinfo2().uordblks + mallinfo2().hblkhd;
#else
    return 0;
#endif
}

static int
t_giant_counts(void)
{
    uint8_t sec[16];
    size_t before, peak;
    uint64_t t0 = xt_now_ms();
    nxl__md_t *md;
    hb_t h;
    int i;

    /* 4 billion regions announced in a 40-byte blob. */
    memcpy(sec, "\0\3UCX\xff\xff\xff\xff", 9);
    one_field(&h, 4, sec, 9);
    before = heap_in_use();
    for (i = 0; i < 1000; i++) {
        XT_ASSERT_STATUS(nxl__md_decode(h.w.data, h.w.len, &md), NXL_ERR_PROTO);
    }
    peak = heap_in_use();
    XT_ASSERT(strstr(nxl_last_error(), "4294967295 regions") != NULL);
    XT_ASSERT(peak < before + 65536);
    nxl__wbuf_fini(&h.w);

    /* Conn info of 4 GiB - 16 bytes, a field of 4 GiB - 1. */
    one_field(&h, 3, "\3UCX\xf0\xff\xff\xff", 8);
    if (expect_proto(&h, "conn 0 info truncated") != 0) {
        return 1;
    }
    hb_header(&h, 1, 0);
    hb_ext(&h, 1, "a");
    nxl__wbuf_put(&h.w, "\4\0\xff\xff\xff\xff\0\3UCX", 11);
    hb_finish(&h);
    if (expect_proto(&h, "length 4294967295 exceeds") != 0) {
        return 1;
    }
    XT_ASSERT(xt_now_ms() - t0 < 2000);
    return 0;
}

/* --- side channel: frames and ACKs --------------------------------------- */

static int
t_sc_header(void)
{
    uint8_t hdr[NXL__SC_HDR_SIZE], bad[NXL__SC_HDR_SIZE];
    nxl__sc_hdr_t h;
    uint8_t type;

    for (type = NXL__SC_LOAD; type <= NXL__SC_MD; type++) {
        nxl__sc_hdr_encode(type, 0x01020304u, hdr);
        XT_ASSERT(memcmp(hdr, "NXSC\x01", 5) == 0);
        XT_ASSERT(hdr[6] == 0 && hdr[7] == 0 && hdr[8] == 4 && hdr[11] == 1);
        XT_ASSERT_OK(nxl__sc_hdr_decode(hdr, &h));
        XT_ASSERT_EQ(h.type, type);
        XT_ASSERT_EQ(h.len, 0x01020304u);
    }
    nxl__sc_hdr_encode(NXL__SC_LOAD, NXL__SC_MAX_PAYLOAD, hdr);
    XT_ASSERT_OK(nxl__sc_hdr_decode(hdr, &h));

    memcpy(bad, hdr, sizeof(bad));
    bad[1] = 'I';
    XT_ASSERT_STATUS(nxl__sc_hdr_decode(bad, &h), NXL_ERR_MISMATCH);
    memcpy(bad, "NIXLCOMM:LOAD", 12);
    XT_ASSERT_STATUS(nxl__sc_hdr_decode(bad, &h), NXL_ERR_MISMATCH);
    memcpy(bad, hdr, sizeof(bad));
    bad[4] = 2;
    XT_ASSERT_STATUS(nxl__sc_hdr_decode(bad, &h), NXL_ERR_NOT_SUPPORTED);
    memcpy(bad, hdr, sizeof(bad));
    bad[5] = 0;
    XT_ASSERT_STATUS(nxl__sc_hdr_decode(bad, &h), NXL_ERR_PROTO);
    bad[5] = NXL__SC_AUTH + 1;
    XT_ASSERT_STATUS(nxl__sc_hdr_decode(bad, &h), NXL_ERR_PROTO);
    memcpy(bad, hdr, sizeof(bad));
    bad[7] = 1;
    XT_ASSERT_STATUS(nxl__sc_hdr_decode(bad, &h), NXL_ERR_PROTO);
    nxl__sc_hdr_encode(NXL__SC_LOAD, NXL__SC_MAX_PAYLOAD + 1, bad);
    XT_ASSERT_STATUS(nxl__sc_hdr_decode(bad, &h), NXL_ERR_PROTO);
    XT_ASSERT(strstr(nxl_last_error(), "exceeds") != NULL);
    return 0;
}

static int
t_sc_ack(void)
{
    nxl_blob_t ack = {0};
    uint8_t raw[16];

    nxl__fail(NXL_ERR_IO, "stale message");
    XT_ASSERT_OK(nxl__sc_ack(NXL_OK, &ack));
    XT_ASSERT_EQ(ack.len, 8); /* no message for success */
    XT_ASSERT_EQ(nxl__sc_ack_parse(ack.data, ack.len), NXL_OK);
    free(ack.data);

    nxl__fail(NXL_ERR_NOT_ALLOWED, "md: agent B: conn info changed");
    XT_ASSERT_OK(nxl__sc_ack(NXL_ERR_NOT_ALLOWED, &ack));
    XT_ASSERT_EQ(ack.len, 8 + strlen("md: agent B: conn info changed"));
    nxl__clear_error();
    XT_ASSERT_STATUS(nxl__sc_ack_parse(ack.data, ack.len), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_STR(nxl_last_error(), "peer: md: agent B: conn info changed");
    /* one byte short, one byte long */
    XT_ASSERT_STATUS(nxl__sc_ack_parse(ack.data, ack.len - 1), NXL_ERR_PROTO);
    free(ack.data);

    XT_ASSERT_STATUS(nxl__sc_ack_parse(raw, 7), NXL_ERR_PROTO);
    XT_ASSERT_STATUS(nxl__sc_ack_parse(NULL, 0), NXL_ERR_PROTO);
    nxl__put_le32(raw, (uint32_t)-9999);
    nxl__put_le32(raw + 4, 2);
    memcpy(raw + 8, "zz", 2);
    XT_ASSERT_STATUS(nxl__sc_ack_parse(raw, 10), NXL_ERR_UNKNOWN);
    XT_ASSERT(strstr(nxl_last_error(), "-9999") != NULL);
    nxl__put_le32(raw, 7);
    XT_ASSERT_STATUS(nxl__sc_ack_parse(raw, 10), NXL_ERR_PROTO);
    nxl__put_le32(raw, (uint32_t)NXL_ERR_NOT_FOUND);
    nxl__put_le32(raw + 4, 0);
    XT_ASSERT_STATUS(nxl__sc_ack_parse(raw, 8), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STR(nxl_last_error(), "peer: NXL_ERR_NOT_FOUND");
    return 0;
}

/* --- side channel: listener ---------------------------------------------- */

typedef struct {
    pthread_mutex_t lock;
    unsigned loads, sends, invls;
    size_t last_len;
    unsigned sleep_ms; /* the handler's delay, for timeout tests */
} handler_state_t;

/* test_handler: LOAD decodes the payload and ACKs the result; SEND
 * replies with the golden metadata; INVL of "bad" is NOT_FOUND. */
static void
test_handler(void *arg, uint8_t type, const uint8_t *payload, size_t len,
             uint8_t *reply_type_p, nxl_blob_t *reply_p)
{
    handler_state_t *hs = arg;
    nxl_status_t status = NXL_OK;
    nxl__md_t *md;

    if (hs->sleep_ms) {
        usleep(hs->sleep_ms * 1000u);
    }
    pthread_mutex_lock(&hs->lock);
    hs->last_len = len;
    switch (type) {
    case NXL__SC_LOAD:
        hs->loads++;
        status = nxl__md_decode(payload, len, &md);
        nxl__md_free(status == NXL_OK ? md : NULL);
        break;
    case NXL__SC_SEND:
        hs->sends++;
        if (encode_blob(golden_md(), reply_p) == NXL_OK) {
            *reply_type_p = NXL__SC_MD;
            pthread_mutex_unlock(&hs->lock);
            return;
        }
        status = NXL_ERR_NOMEM;
        break;
    case NXL__SC_INVL:
        hs->invls++;
        if (len == 3 && memcmp(payload, "bad", 3) == 0) {
            status = nxl__fail(NXL_ERR_NOT_FOUND, "md: no agent named bad");
        }
        break;
    }
    pthread_mutex_unlock(&hs->lock);
    *reply_type_p = NXL__SC_ACK;
    (void)nxl__sc_ack(status, reply_p);
}

static handler_state_t hstate = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* call_ack makes one call and returns the status its ACK carries. */
static nxl_status_t
call_ack(uint16_t port, uint8_t type, const void *p, size_t n)
{
    nxl_blob_t reply = {0};
    uint8_t rtype = 0;
    nxl_status_t status;

    status = nxl__sc_call("127.0.0.1", port, type, p, n, 3000, &rtype, &reply);
    if (status != NXL_OK) {
        return status;
    }
    if (rtype != NXL__SC_ACK) {
        free(reply.data);
        return nxl__fail(NXL_ERR_PROTO, "test: reply type %u", rtype);
    }
    status = nxl__sc_ack_parse(reply.data, reply.len);
    free(reply.data);
    return status;
}

static int
t_sc_roundtrip(void)
{
    nxl_blob_t blob = {0}, reply = {0};
    uint8_t rtype = 0;
    nxl__sc_t *sc;
    nxl__md_t *md;
    uint16_t port;

    XT_ASSERT_OK(nxl__sc_start("127.0.0.1", 0, test_handler, &hstate, &sc));
    port = nxl__sc_port(sc);
    XT_ASSERT(port != 0);

    XT_ASSERT_OK(encode_blob(golden_md(), &blob));
    XT_ASSERT_OK(call_ack(port, NXL__SC_LOAD, blob.data, blob.len));
    XT_ASSERT_EQ(hstate.last_len, blob.len);

    /* A LOAD of garbage comes back as the decoder's error. */
    XT_ASSERT_STATUS(call_ack(port, NXL__SC_LOAD, "NXMD\1\0", 6),
                     NXL_ERR_PROTO);
    XT_ASSERT(strncmp(nxl_last_error(), "peer: md: ", 10) == 0);

    XT_ASSERT_OK(nxl__sc_call("127.0.0.1", port, NXL__SC_SEND, NULL, 0, 3000,
                              &rtype, &reply));
    XT_ASSERT_EQ(rtype, NXL__SC_MD);
    XT_ASSERT_OK(nxl__md_decode(reply.data, reply.len, &md));
    if (md_same(golden_md(), md) != 0) {
        return 1;
    }
    nxl__md_free(md);
    free(reply.data);

    XT_ASSERT_OK(call_ack(port, NXL__SC_INVL, "prefill-0", 9));
    XT_ASSERT_STATUS(call_ack(port, NXL__SC_INVL, "bad", 3), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STR(nxl_last_error(), "peer: md: no agent named bad");

    /* Requests only: ACK and MD are replies. */
    XT_ASSERT_STATUS(call_ack(port, NXL__SC_ACK, NULL, 0),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_EQ(hstate.loads, 2);
    XT_ASSERT_EQ(hstate.sends, 1);
    XT_ASSERT_EQ(hstate.invls, 2);
    nxl__sc_stop(sc);
    nxl__sc_stop(NULL);
    free(blob.data);
    return 0;
}

/* raw_connect opens a plain client connection to the listener. */
static int
raw_connect(uint16_t port)
{
    int fd = -1;

    if (nxl__sock_connect("127.0.0.1", port, 2000, &fd) != NXL_OK) {
        return -1;
    }
    return fd;
}

/* raw_frame sends one frame with header fields given raw. */
static nxl_status_t
raw_frame(int fd, uint8_t type, uint32_t len, const void *p, size_t n)
{
    uint8_t hdr[NXL__SC_HDR_SIZE];
    nxl_status_t status;

    nxl__sc_hdr_encode(type, len, hdr);
    status = nxl__sock_send_all(fd, hdr, sizeof(hdr), 2000);
    if (status == NXL_OK && n > 0) {
        status = nxl__sock_send_all(fd, p, n, 2000);
    }
    return status;
}

/* raw_reply reads one reply frame; the payload is malloc'd into *blob. */
static nxl_status_t
raw_reply(int fd, uint8_t *type_p, nxl_blob_t *blob, int timeout_ms)
{
    uint8_t hdr[NXL__SC_HDR_SIZE];
    nxl__sc_hdr_t h;
    nxl_status_t status;

    status = nxl__sock_recv_all(fd, hdr, sizeof(hdr), timeout_ms);
    if (status == NXL_OK) {
        status = nxl__sc_hdr_decode(hdr, &h);
    }
    if (status != NXL_OK) {
        return status;
    }
    blob->len = h.len;
    blob->data = malloc(h.len ? h.len : 1);
    *type_p = h.type;
    return nxl__sock_recv_all(fd, blob->data, h.len, timeout_ms);
}

/* expect_eof waits up to timeout_ms for the peer to close fd. */
static int
expect_eof(int fd, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    char c;

    if (poll(&pfd, 1, timeout_ms) != 1) {
        return 0;
    }
    return recv(fd, &c, 1, 0) <= 0;
}

static int
t_sc_pipelined(void)
{
    nxl_blob_t blob = {0}, r = {0};
    uint8_t rtype;
    nxl__sc_t *sc;
    int fd, i;

    signal(SIGPIPE, SIG_DFL); /* the listener must not depend on SIG_IGN */
    XT_ASSERT_OK(nxl__sc_start("127.0.0.1", 0, test_handler, &hstate, &sc));
    fd = raw_connect(nxl__sc_port(sc));
    XT_ASSERT(fd >= 0);
    XT_ASSERT_OK(encode_blob(golden_md(), &blob));

    /* Three frames written back to back, then the three replies. */
    XT_ASSERT_OK(
        raw_frame(fd, NXL__SC_LOAD, (uint32_t)blob.len, blob.data, blob.len));
    XT_ASSERT_OK(raw_frame(fd, NXL__SC_SEND, 0, NULL, 0));
    XT_ASSERT_OK(raw_frame(fd, NXL__SC_INVL, 3, "bad", 3));
    XT_ASSERT_OK(raw_reply(fd, &rtype, &r, 2000));
    XT_ASSERT_EQ(rtype, NXL__SC_ACK);
    XT_ASSERT_OK(nxl__sc_ack_parse(r.data, r.len));
    free(r.data);
    XT_ASSERT_OK(raw_reply(fd, &rtype, &r, 2000));
    XT_ASSERT_EQ(rtype, NXL__SC_MD);
    XT_ASSERT_EQ(r.len, blob.len);
    XT_ASSERT(memcmp(r.data, blob.data, blob.len) == 0);
    free(r.data);
    XT_ASSERT_OK(raw_reply(fd, &rtype, &r, 2000));
    XT_ASSERT_STATUS(nxl__sc_ack_parse(r.data, r.len), NXL_ERR_NOT_FOUND);
    free(r.data);

    /* Then one at a time on the same connection. */
    for (i = 0; i < 20; i++) {
        XT_ASSERT_OK(raw_frame(fd, NXL__SC_INVL, 1, "x", 1));
        XT_ASSERT_OK(raw_reply(fd, &rtype, &r, 2000));
        XT_ASSERT_OK(nxl__sc_ack_parse(r.data, r.len));
        free(r.data);
    }
    close(fd);

    /* Peers that leave before reading their reply (SIGPIPE is default
     * here: a send without MSG_NOSIGNAL would kill this process). */
    for (i = 0; i < 20; i++) {
        fd = raw_connect(nxl__sc_port(sc));
        XT_ASSERT(fd >= 0);
        XT_ASSERT_OK(raw_frame(fd, NXL__SC_SEND, 0, NULL, 0));
        close(fd);
    }
    XT_ASSERT_OK(call_ack(nxl__sc_port(sc), NXL__SC_INVL, "x", 1));
    nxl__sc_stop(sc);
    free(blob.data);
    return 0;
}

static int
t_sc_big_frame(void)
{
    size_t n = (3u << 20) + 17;
    nxl__md_conn_t conn = {.backend = "UCX", .len = (uint32_t)n};
    nxl__md_t md = {.agent = "big", .nconns = 1, .conns = &conn};
    nxl_blob_t blob = {0};
    uint8_t *info;
    nxl__sc_t *sc;
    size_t i;

    info = malloc(n);
    for (i = 0; i < n; i++) {
        info[i] = (uint8_t)(i * 7);
    }
    conn.info = info;
    XT_ASSERT_OK(encode_blob(&md, &blob));
    XT_ASSERT_OK(nxl__sc_start("127.0.0.1", 0, test_handler, &hstate, &sc));
    XT_ASSERT_OK(call_ack(nxl__sc_port(sc), NXL__SC_LOAD, blob.data, blob.len));
    XT_ASSERT_EQ(hstate.last_len, blob.len);
    nxl__sc_stop(sc);
    free(blob.data);
    free(info);
    return 0;
}

static int
t_sc_bad_frames(void)
{
    nxl_blob_t r = {0};
    uint8_t rtype, hdr[NXL__SC_HDR_SIZE];
    nxl__sc_t *sc;
    uint16_t port;
    int fd;

    XT_ASSERT_OK(nxl__sc_start("127.0.0.1", 0, test_handler, &hstate, &sc));
    port = nxl__sc_port(sc);

    /* Over the limit: refused with PROTO before any payload is read. */
    fd = raw_connect(port);
    XT_ASSERT(fd >= 0);
    XT_ASSERT_OK(raw_frame(fd, NXL__SC_LOAD, NXL__SC_MAX_PAYLOAD + 1, NULL, 0));
    XT_ASSERT_OK(raw_reply(fd, &rtype, &r, 2000));
    XT_ASSERT_EQ(rtype, NXL__SC_ACK);
    XT_ASSERT_STATUS(nxl__sc_ack_parse(r.data, r.len), NXL_ERR_PROTO);
    XT_ASSERT(strstr(nxl_last_error(), "exceeds") != NULL);
    free(r.data);
    XT_ASSERT(expect_eof(fd, 2000));
    close(fd);
    XT_ASSERT_STATUS(nxl__sc_call("127.0.0.1", port, NXL__SC_LOAD, "",
                                  (size_t)NXL__SC_MAX_PAYLOAD + 1, 1000, &rtype,
                                  &r),
                     NXL_ERR_INVALID_PARAM);

    /* NIXL's framing, bad magic: PROTO, then closed. */
    fd = raw_connect(port);
    XT_ASSERT(fd >= 0);
    XT_ASSERT_OK(
        nxl__sock_send_all(fd, "\x0d\0\0\0\0\0\0\0NIXLCOMM:SEND", 21, 2000));
    XT_ASSERT_OK(raw_reply(fd, &rtype, &r, 2000));
    XT_ASSERT_STATUS(nxl__sc_ack_parse(r.data, r.len), NXL_ERR_PROTO);
    XT_ASSERT(strstr(nxl_last_error(), "magic") != NULL);
    free(r.data);
    XT_ASSERT(expect_eof(fd, 2000));
    close(fd);

    /* A reply type sent as a request, after a good frame. */
    fd = raw_connect(port);
    XT_ASSERT(fd >= 0);
    XT_ASSERT_OK(raw_frame(fd, NXL__SC_INVL, 1, "x", 1));
    XT_ASSERT_OK(raw_reply(fd, &rtype, &r, 2000));
    free(r.data);
    XT_ASSERT_OK(raw_frame(fd, NXL__SC_MD, 2, "zz", 2));
    XT_ASSERT_OK(raw_reply(fd, &rtype, &r, 2000));
    XT_ASSERT_STATUS(nxl__sc_ack_parse(r.data, r.len), NXL_ERR_PROTO);
    XT_ASSERT(strstr(nxl_last_error(), "not a request") != NULL);
    free(r.data);
    XT_ASSERT(expect_eof(fd, 2000));
    close(fd);

    /* Reserved bytes set. */
    fd = raw_connect(port);
    XT_ASSERT(fd >= 0);
    nxl__sc_hdr_encode(NXL__SC_SEND, 0, hdr);
    hdr[6] = 0x80;
    XT_ASSERT_OK(nxl__sock_send_all(fd, hdr, sizeof(hdr), 2000));
    XT_ASSERT_OK(raw_reply(fd, &rtype, &r, 2000));
    XT_ASSERT_STATUS(nxl__sc_ack_parse(r.data, r.len), NXL_ERR_PROTO);
    free(r.data);
    XT_ASSERT(expect_eof(fd, 2000));
    close(fd);

    /* The listener still serves. */
    XT_ASSERT_OK(call_ack(port, NXL__SC_INVL, "x", 1));
    nxl__sc_stop(sc);
    return 0;
}

static int
t_sc_stalled_peer(void)
{
    uint64_t t0;
    nxl__sc_t *sc;
    uint16_t port;
    int half, body, i;

    XT_ASSERT_OK(nxl__sc_start("127.0.0.1", 0, test_handler, &hstate, &sc));
    port = nxl__sc_port(sc);

    /* One peer sends half a header, another a header and part of its
     * payload; both then stall. */
    half = raw_connect(port);
    XT_ASSERT(half >= 0);
    XT_ASSERT_OK(nxl__sock_send_all(half, "NXSC\x01\x01", 6, 2000));
    body = raw_connect(port);
    XT_ASSERT(body >= 0);
    XT_ASSERT_OK(raw_frame(body, NXL__SC_LOAD, 1000, "NXMD", 4));

    /* Others are served at once meanwhile. */
    t0 = xt_now_ms();
    for (i = 0; i < 10; i++) {
        XT_ASSERT_OK(call_ack(port, NXL__SC_INVL, "x", 1));
    }
    XT_ASSERT(xt_now_ms() - t0 < 1000);

    /* The stalled peers are dropped after about 5 s. */
    t0 = xt_now_ms();
    XT_ASSERT(expect_eof(half, 8000));
    XT_ASSERT(expect_eof(body, 2000));
    XT_ASSERT(xt_now_ms() - t0 > 3000);
    XT_ASSERT(xt_now_ms() - t0 < 7500);
    close(half);
    close(body);
    XT_ASSERT_EQ(hstate.loads, 0);
    nxl__sc_stop(sc);
    return 0;
}

static int
t_sc_stop_with_conns(void)
{
    nxl_blob_t r = {0};
    uint8_t rtype;
    int fds[4], i;
    uint64_t t0;
    nxl__sc_t *sc;
    uint16_t port;

    XT_ASSERT_OK(nxl__sc_start("127.0.0.1", 0, test_handler, &hstate, &sc));
    port = nxl__sc_port(sc);
    for (i = 0; i < 4; i++) {
        fds[i] = raw_connect(port);
        XT_ASSERT(fds[i] >= 0);
    }
    /* idle after a frame, mid-header, mid-payload, fresh */
    XT_ASSERT_OK(raw_frame(fds[0], NXL__SC_INVL, 1, "x", 1));
    XT_ASSERT_OK(raw_reply(fds[0], &rtype, &r, 2000));
    free(r.data);
    XT_ASSERT_OK(nxl__sock_send_all(fds[1], "NXS", 3, 2000));
    XT_ASSERT_OK(raw_frame(fds[2], NXL__SC_LOAD, 100, "abc", 3));
    usleep(50000);

    t0 = xt_now_ms();
    nxl__sc_stop(sc);
    XT_ASSERT(xt_now_ms() - t0 < 500);
    for (i = 0; i < 4; i++) {
        XT_ASSERT(expect_eof(fds[i], 1000));
        close(fds[i]);
    }
    /* The port is closed now. */
    XT_ASSERT(call_ack(port, NXL__SC_INVL, "x", 1) != NXL_OK);
    return 0;
}

static int
t_sc_call_timeout(void)
{
    nxl_blob_t r = {0};
    uint8_t rtype;
    uint64_t t0;
    uint16_t port;
    int lfd;
    nxl__sc_t *sc;
    handler_state_t slow = {.lock = PTHREAD_MUTEX_INITIALIZER,
                            .sleep_ms = 1500};

    /* A listener that never accepts: the connection completes in the
     * kernel, the reply never comes. */
    XT_ASSERT_OK(nxl__sock_listen("127.0.0.1", 0, &lfd, &port));
    t0 = xt_now_ms();
    XT_ASSERT_STATUS(
        nxl__sc_call("127.0.0.1", port, NXL__SC_SEND, NULL, 0, 300, &rtype, &r),
        NXL_ERR_TIMEOUT);
    XT_ASSERT(xt_now_ms() - t0 >= 250 && xt_now_ms() - t0 < 1500);
    XT_ASSERT(strstr(nxl_last_error(), "127.0.0.1") != NULL);
    close(lfd);

    /* A handler slower than the caller's budget. */
    XT_ASSERT_OK(nxl__sc_start("127.0.0.1", 0, test_handler, &slow, &sc));
    t0 = xt_now_ms();
    XT_ASSERT_STATUS(nxl__sc_call("127.0.0.1", nxl__sc_port(sc), NXL__SC_SEND,
                                  NULL, 0, 300, &rtype, &r),
                     NXL_ERR_TIMEOUT);
    XT_ASSERT(xt_now_ms() - t0 < 1400);
    nxl__sc_stop(sc);

    /* Nobody listening: unreachable, not a disconnect. */
    XT_ASSERT_STATUS(
        nxl__sc_call("127.0.0.1", port, NXL__SC_SEND, NULL, 0, 300, &rtype, &r),
        NXL_ERR_IO);
    XT_ASSERT(strstr(nxl_last_error(), "refused") != NULL);
    return 0;
}

const xt_suite xt_suite_md = {
    .name = "md",
    .timeout_s = 60,
    .cases =
        (const xt_case[]){
            {"roundtrip", t_roundtrip},
            {"roundtrip_minimal", t_roundtrip_minimal},
            {"roundtrip_random", t_roundtrip_random},
            {"encode_appends", t_encode_appends},
            {"encode_rejects", t_encode_rejects},
            {"golden_v1", t_golden_v1},
            {"truncation", t_truncation},
            {"error_messages", t_error_messages},
            {"random_garbage", t_random_garbage},
            {"bit_flips", t_bit_flips},
            {"unknown_fields", t_unknown_fields},
            {"versions", t_versions},
            {"bad_fields", t_bad_fields},
            {"giant_counts", t_giant_counts},
            {"sc_header", t_sc_header},
            {"sc_ack", t_sc_ack},
            {"sc_roundtrip", t_sc_roundtrip},
            {"sc_pipelined", t_sc_pipelined},
            {"sc_big_frame", t_sc_big_frame},
            {"sc_bad_frames", t_sc_bad_frames},
            {"sc_stalled_peer", t_sc_stalled_peer},
            {"sc_stop_with_conns", t_sc_stop_with_conns},
            {"sc_call_timeout", t_sc_call_timeout},
            {NULL, NULL},
        },
};
