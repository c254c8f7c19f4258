/*
 * test_connect.c - the tensor connector (include/nxl/nxl_connect.h) in one
 * process: the wire forms (round trips, the golden files of
 * tests/data/connect_*, what Dynamo's pydantic models refuse, truncation
 * at every byte, zlib bombs), the media producer (the §13.1 hash vector,
 * limits, JSON) and the operations between two agents of this process
 * over TCP on 127.0.0.1 (read, write, loopback, size and kind texts, 64
 * concurrent passive operations with waiting threads, notifications of
 * other keys kept, pool memory, shared remotes, cancel).
 *
 * Oracle: reference/dynamo-components.md §12-§13 (Dynamo's nixl_connect
 * and media producer, their texts and test cases) and the contracts in
 * nxl_connect.h. Cross-process transfers are in test_connect_xfer.c.
 */
#include "harness.h"
#include "xt_io.h"
#include "xt_xfer.h"

#include <nxl/nxl_connect.h>

#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define XC_WAIT_MS 10000

/* XC_EXPECT checks a status and that the message holds sub (or any
 * message for an error when sub is NULL). */
#define XC_EXPECT(expr, want, sub)                                             \
    do {                                                                       \
        nxl_status_t s_ = (expr);                                              \
        const char *sub_ = (sub);                                              \
        if (s_ != (want))                                                      \
            XT_FAILF("%s -> %s, want %s (%s)", #expr, nxl_status_name(s_),     \
                     nxl_status_name(want), nxl_last_error());                 \
        if ((want) < 0 && nxl_last_error()[0] == '\0')                         \
            XT_FAILF("%s -> %s without a message", #expr,                      \
                     nxl_status_name(s_));                                     \
        if (sub_ != NULL && strstr(nxl_last_error(), sub_) == NULL)            \
            XT_FAILF("%s: message \"%s\" lacks \"%s\"", #expr,                 \
                     nxl_last_error(), sub_);                                  \
    } while (0)

/* ---- helpers ------------------------------------------------------------- */

/* xc_agent makes an agent (sync STRICT: the cases share connectors
 * between threads) with backend be; TCP binds to 127.0.0.1. */
static nxl_status_t
xc_agent(const char *name, const char *be, nxl_agent_t **a_p)
{
    nxl_param_t lo[] = {{"bind_addr", "127.0.0.1"}};
    nxl_params_t tcp = {lo, 1};
    nxl_agent_config_t cfg;
    nxl_agent_t *a;
    nxl_status_t st;

    nxl_agent_config_init(&cfg);
    cfg.sync_mode = NXL_SYNC_STRICT;
    st = nxl_agent_create(name, &cfg, &a);
    if (st != NXL_OK) {
        return st;
    }
    st = nxl_backend_create(a, be, strcmp(be, "TCP") == 0 ? &tcp : NULL, NULL);
    if (st != NXL_OK) {
        nxl_agent_destroy(a);
        return st;
    }
    *a_p = a;
    return NXL_OK;
}

/* Two agents of this process with a connector each: p (passive side) and
 * a (active side). */
typedef struct xc_pair {
    nxl_agent_t *pa, *aa;
    nxl_connector_t *pc, *ac;
} xc_pair;

static nxl_status_t
xc_pair_open(xc_pair *p, const char *be)
{
    nxl_status_t st;

    memset(p, 0, sizeof(*p));
    if ((st = xc_agent("passive", be, &p->pa)) != NXL_OK ||
        (st = xc_agent("active", be, &p->aa)) != NXL_OK ||
        (st = nxl_connector_create(p->pa, &p->pc)) != NXL_OK ||
        (st = nxl_connector_create(p->aa, &p->ac)) != NXL_OK) {
        return st;
    }
    return NXL_OK;
}

static void
xc_pair_close(xc_pair *p)
{
    nxl_connector_destroy(p->pc);
    nxl_connector_destroy(p->ac);
    nxl_agent_destroy(p->pa);
    nxl_agent_destroy(p->aa);
}

/* xc_host describes a host buffer. */
static nxl_connect_desc_t
xc_host(const void *p, size_t n)
{
    return (nxl_connect_desc_t){(uint64_t)(uintptr_t)p, n,
                                NXL_CONNECT_DEVICE_HOST, 0};
}

/* xc_desc_equal compares two descriptors field by field. */
static bool
xc_desc_equal(const nxl_connect_desc_t *a, const nxl_connect_desc_t *b)
{
    return a->ptr == b->ptr && a->size == b->size && a->device == b->device &&
           a->device_id == b->device_id;
}

/* xc_state polls op once. */
static nxl_connect_state_t
xc_state(nxl_connect_op_t *op)
{
    nxl_connect_state_t s = (nxl_connect_state_t)-1;

    if (nxl_connect_op_status(op, &s) != NXL_OK) {
        return (nxl_connect_state_t)-1;
    }
    return s;
}

/* xc_metadata returns the RdmaMetadata JSON of a passive op (malloc'd). */
static char *
xc_metadata(nxl_connect_op_t *op, size_t *len_p)
{
    nxl_blob_t b;
    char *s;

    *len_p = 0;
    if (nxl_connect_op_metadata(op, 0, &b) != NXL_OK) {
        return NULL;
    }
    s = strdup(b.data);
    *len_p = b.len;
    nxl_blob_free(&b);
    return s;
}

/* ---- enums and device strings -------------------------------------------- */

static int
t_enum_values(void)
{
    XT_ASSERT_EQ(NXL_CONNECT_UNINITIALIZED, 0);
    XT_ASSERT_EQ(NXL_CONNECT_INITIALIZED, 1);
    XT_ASSERT_EQ(NXL_CONNECT_IN_PROGRESS, 2);
    XT_ASSERT_EQ(NXL_CONNECT_COMPLETE, 3);
    XT_ASSERT_EQ(NXL_CONNECT_CANCELLED, 4);
    XT_ASSERT_EQ(NXL_CONNECT_ERRORED, 5);
    XT_ASSERT_EQ(NXL_CONNECT_READ, 1);
    XT_ASSERT_EQ(NXL_CONNECT_WRITE, 2);
    XT_ASSERT_EQ(NXL_CONNECT_DEVICE_HOST, 1);
    XT_ASSERT_EQ(NXL_CONNECT_DEVICE_CUDA, 2);
    XT_ASSERT_STR(nxl_connect_state_str(NXL_CONNECT_UNINITIALIZED),
                  "<invalid>");
    XT_ASSERT_STR(nxl_connect_state_str(NXL_CONNECT_INITIALIZED), "INIT");
    XT_ASSERT_STR(nxl_connect_state_str(NXL_CONNECT_IN_PROGRESS), "PROC");
    XT_ASSERT_STR(nxl_connect_state_str(NXL_CONNECT_COMPLETE), "DONE");
    XT_ASSERT_STR(nxl_connect_state_str(NXL_CONNECT_CANCELLED), "STOP");
    XT_ASSERT_STR(nxl_connect_state_str(NXL_CONNECT_ERRORED), "ERR");
    XT_ASSERT_STR(nxl_connect_kind_str(NXL_CONNECT_READ), "READ");
    XT_ASSERT_STR(nxl_connect_kind_str(NXL_CONNECT_WRITE), "WRITE");
    XT_ASSERT_STR(nxl_connect_kind_str(NXL_CONNECT_KIND_UNSPECIFIED),
                  "<invalid>");
    XT_ASSERT_STR(nxl_connect_device_str(NXL_CONNECT_DEVICE_HOST), "cpu");
    XT_ASSERT_STR(nxl_connect_device_str(NXL_CONNECT_DEVICE_CUDA), "cuda");
    XT_ASSERT_STR(nxl_connect_device_str(NXL_CONNECT_DEVICE_UNSPECIFIED),
                  "<invalid>");
    return 0;
}

static int
t_device_strings(void)
{
    static const struct {
        const char *s;
        nxl_connect_device_t dev;
        uint64_t id;
    } ok[] = {
        {"cpu", NXL_CONNECT_DEVICE_HOST, 0},
        {" CPU ", NXL_CONNECT_DEVICE_HOST, 0},
        {"host", NXL_CONNECT_DEVICE_HOST, 0},
        {"cuda", NXL_CONNECT_DEVICE_CUDA, 0},
        {"cuda:3", NXL_CONNECT_DEVICE_CUDA, 3},
        {"CUDA:12", NXL_CONNECT_DEVICE_CUDA, 12},
        {"gpu:1", NXL_CONNECT_DEVICE_CUDA, 1},
        {"gpu", NXL_CONNECT_DEVICE_CUDA, 0},
        {"cuda: 7 ", NXL_CONNECT_DEVICE_CUDA, 7},
    };
    nxl_connect_device_t dev;
    char buf[32];
    uint64_t id;
    size_t i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        XT_ASSERT_OK(nxl_connect_device_parse(ok[i].s, &dev, &id));
        XT_ASSERT_EQ(dev, ok[i].dev);
        XT_ASSERT_EQ(id, ok[i].id);
    }
    XC_EXPECT(nxl_connect_device_parse("tpu:0", &dev, &id),
              NXL_ERR_INVALID_PARAM,
              "Argument `metadata` must be in the format 'cuda:<device_id>' "
              "or 'cpu'.");
    XC_EXPECT(nxl_connect_device_parse("cuda:x", &dev, &id),
              NXL_ERR_INVALID_PARAM,
              "invalid literal for int() with base 10: 'x'");
    XC_EXPECT(nxl_connect_device_parse("cuda:-1", &dev, &id),
              NXL_ERR_INVALID_PARAM, "negative");
    XT_ASSERT_OK(nxl_connect_device_format(NXL_CONNECT_DEVICE_CUDA, 5, buf,
                                           sizeof(buf)));
    XT_ASSERT_STR(buf, "cuda:5");
    XT_ASSERT_OK(nxl_connect_device_format(NXL_CONNECT_DEVICE_HOST, 0, buf,
                                           sizeof(buf)));
    XT_ASSERT_STR(buf, "cpu");
    XC_EXPECT(nxl_connect_device_format(NXL_CONNECT_DEVICE_UNSPECIFIED, 0, buf,
                                        sizeof(buf)),
              NXL_ERR_INVALID_PARAM, NULL);
    XC_EXPECT(
        nxl_connect_device_format(NXL_CONNECT_DEVICE_CUDA, 1234567, buf, 4),
        NXL_ERR_INVALID_PARAM, "too small");
    return 0;
}

/* ---- SerializedDescriptor ------------------------------------------------ */

static int
t_desc_roundtrip(void)
{
    nxl_connect_desc_t d = {0xFFFFFFFFFFFFF000ull, 1u << 20,
                            NXL_CONNECT_DEVICE_CUDA, 1},
                       back;
    nxl_blob_t js;
    size_t len;
    char *gold;

    XT_ASSERT_OK(nxl_connect_desc_encode(&d, &js));
    XT_ASSERT_STR(js.data, "{\"device\":\"cuda:1\","
                           "\"ptr\":18446744073709547520,\"size\":1048576}");
    XT_ASSERT_EQ(strlen(js.data), js.len);
    XT_ASSERT_OK(nxl_connect_desc_decode(js.data, js.len, &back));
    XT_ASSERT(xc_desc_equal(&back, &d));
    nxl_blob_free(&js);

    /* The validator lowercases and strips; "cpu" is HOST 0. */
    {
        const char *j = "{\"device\":\"  CUDA:2 \",\"ptr\":1,\"size\":0}";

        XT_ASSERT_OK(nxl_connect_desc_decode(j, strlen(j), &back));
    }
    XT_ASSERT_EQ(back.device, NXL_CONNECT_DEVICE_CUDA);
    XT_ASSERT_EQ(back.device_id, 2);
    XT_ASSERT_EQ(back.size, 0);

    gold = xt_read_data("connect_serialized_descriptor.json", &len);
    XT_ASSERT(gold != NULL);
    XT_ASSERT_OK(nxl_connect_desc_decode(gold, len, &back));
    XT_ASSERT_EQ(back.device, NXL_CONNECT_DEVICE_CUDA);
    XT_ASSERT_EQ(back.device_id, 3);
    XT_ASSERT_EQ(back.ptr, 139968273219584ull);
    XT_ASSERT_EQ(back.size, 0);
    free(gold);

    d.ptr = 0;
    XC_EXPECT(nxl_connect_desc_encode(&d, &js), NXL_ERR_INVALID_PARAM,
              "Argument `ptr` cannot be zero (aka `null` or `None`).");
    d.ptr = 1;
    d.device = NXL_CONNECT_DEVICE_UNSPECIFIED;
    XC_EXPECT(nxl_connect_desc_encode(&d, &js), NXL_ERR_INVALID_PARAM,
              "Argument `device` must be one of 'cpu' or 'cuda:<device_id>'.");
    return xt_leaks();
}

static int
t_desc_rejects(void)
{
    static const struct {
        const char *json;
        const char *msg;
    } bad[] = {
        {"{\"device\":\"cpu\",\"ptr\":1,\"size\":2,\"x\":0}",
         "SerializedDescriptor: x: Extra inputs are not permitted"},
        {"{\"ptr\":1,\"size\":2}", "device: Field required"},
        {"{\"device\":\"cpu\",\"size\":2}", "ptr: Field required"},
        {"{\"device\":\"cpu\",\"ptr\":1}", "size: Field required"},
        {"{\"device\":3,\"ptr\":1,\"size\":2}",
         "device: Input should be a valid string"},
        {"{\"device\":\"cpu\",\"ptr\":\"1\",\"size\":2}",
         "ptr: Input should be a valid integer"},
        {"{\"device\":\"cpu\",\"ptr\":1.5,\"size\":2}",
         "ptr: Input should be a valid integer"},
        {"{\"device\":\"cpu\",\"ptr\":1,\"size\":true}",
         "size: Input should be a valid integer"},
        {"{\"device\":\"cpu\",\"ptr\":null,\"size\":2}",
         "ptr: Input should be a valid integer"},
        {"{\"device\":\"cpu\",\"ptr\":0,\"size\":2}",
         "ptr: Argument `ptr` cannot be zero (aka `null` or `None`)."},
        {"{\"device\":\"cpu\",\"ptr\":1,\"size\":-1}",
         "size: Argument `size` must be an integer greater than or equal to "
         "zero."},
        {"{\"device\":\"tpu\",\"ptr\":1,\"size\":2}",
         "device: Argument `device` must be one of 'cpu' or "
         "'cuda:<device_id>'."},
        {"{\"device\":\"cpux\",\"ptr\":1,\"size\":2}",
         "Argument `device` must be one of"},
        {"{\"device\":\"cuda:zz\",\"ptr\":1,\"size\":2}",
         "invalid literal for int() with base 10: 'zz'"},
        {"{\"device\":\"cpu\",\"ptr\":99999999999999999999999,\"size\":2}",
         "ptr: Input should be a valid integer"},
        {"{\"device\":\"cpu\",\"ptr\":-5,\"size\":2}", "negative address"},
        {"[1,2]", "Input should be a valid dictionary or instance of "
                  "SerializedDescriptor"},
        {"{\"device\":\"cpu\",'ptr':1,\"size\":2}", "invalid JSON"},
        {"{\"device\":\"cpu\",\"ptr\":1,\"size\":2} x", "invalid JSON"},
        {"{\"device\":\"cpu\",\"ptr\":1,\"size\":2} ", NULL},
        {"{\"device\":\"cpu\",\"ptr\":NaN,\"size\":2}", "invalid JSON"},
        {"{\"device\":\"cpu\",\"ptr\":Infinity,\"size\":2}", "invalid JSON"},
        {"{\"device\":\"cpu\",\"ptr\":1.,\"size\":2}", "invalid JSON"},
        {"{\"device\":\"cpu\",\"ptr\":01,\"size\":2}", "invalid JSON"},
        {"{\"device\":\"c\tpu\",\"ptr\":1,\"size\":2}", "invalid JSON"},
        {"{\"device\":\"cpu\",\"ptr\":1,\"size\":2}/**/", "invalid JSON"},
        {"", "empty input"},
    };
    nxl_connect_desc_t d;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        nxl_status_t st =
            nxl_connect_desc_decode(bad[i].json, strlen(bad[i].json), &d);

        if (bad[i].msg == NULL) { /* trailing whitespace is fine */
            XT_ASSERT_OK(st);
            continue;
        }
        if (st != NXL_ERR_PROTO ||
            strstr(nxl_last_error(), bad[i].msg) == NULL) {
            XT_FAILF("%s -> %s \"%s\", want PROTO \"%s\"", bad[i].json,
                     nxl_status_name(st), nxl_last_error(), bad[i].msg);
        }
    }
    return xt_leaks();
}

/* ---- RdmaMetadata -------------------------------------------------------- */

/* xc_md_equal compares two RdmaMetadata values. */
static bool
xc_md_equal(const nxl_rdma_metadata_t *a, const nxl_rdma_metadata_t *b)
{
    size_t i;

    if (a->num_descriptors != b->num_descriptors) {
        return false;
    }
    for (i = 0; i < a->num_descriptors; i++) {
        if (!xc_desc_equal(&a->descriptors[i], &b->descriptors[i])) {
            return false;
        }
    }
    return strcmp(a->nixl_metadata, b->nixl_metadata) == 0 &&
           strcmp(a->notification_key, b->notification_key) == 0 &&
           a->operation_kind == b->operation_kind;
}

static int
t_rdma_roundtrip(void)
{
    nxl_connect_desc_t d[3] = {
        {0x7f0000001000ull, 4096, NXL_CONNECT_DEVICE_HOST, 0},
        {0x7f0000100000ull, 1, NXL_CONNECT_DEVICE_HOST, 0},
        {0x7f0000200000ull, 0, NXL_CONNECT_DEVICE_HOST, 0},
    };
    nxl_rdma_metadata_t md = {d, 3, NULL, "key \"quoted\" \\ \x01 \xc3\xa9", 2};
    nxl_rdma_metadata_t *back, *again;
    nxl_blob_t mds, js, js2;
    uint8_t payload[300];

    xt_fill(payload, sizeof(payload), 9);
    XT_ASSERT_OK(nxl_connect_md_encode(payload, sizeof(payload), 0, &mds));
    md.nixl_metadata = mds.data;
    XT_ASSERT_OK(nxl_rdma_metadata_encode(&md, &js));
    XT_ASSERT(strncmp(js.data, "{\"descriptors\":[{\"device\":\"cpu\",\"ptr\":",
                      37) == 0);
    XT_ASSERT(strstr(js.data,
                     "\"notification_key\":\"key \\\"quoted\\\" \\\\ "
                     "\\u0001 \xc3\xa9\",\"operation_kind\":2}") != NULL);
    XT_ASSERT_OK(nxl_rdma_metadata_decode(js.data, js.len, &back));
    XT_ASSERT(xc_md_equal(&md, back));
    /* encode(decode(x)) == x, byte for byte. */
    XT_ASSERT_OK(nxl_rdma_metadata_encode(back, &js2));
    XT_ASSERT_EQ(js2.len, js.len);
    XT_ASSERT(memcmp(js.data, js2.data, js.len) == 0);
    /* Hex form: the same value. */
    nxl_blob_free(&mds);
    XT_ASSERT_OK(nxl_connect_md_encode(payload, sizeof(payload), 1, &mds));
    md.nixl_metadata = mds.data;
    nxl_blob_free(&js2);
    XT_ASSERT_OK(nxl_rdma_metadata_encode(&md, &js2));
    XT_ASSERT_OK(nxl_rdma_metadata_decode(js2.data, js2.len, &again));
    XT_ASSERT(xc_md_equal(&md, again));
    /* An empty descriptor list is a valid model (refused at begin). */
    md.num_descriptors = 0;
    nxl_blob_free(&js2);
    XT_ASSERT_OK(nxl_rdma_metadata_encode(&md, &js2));
    nxl_rdma_metadata_free(again);
    XT_ASSERT_OK(nxl_rdma_metadata_decode(js2.data, js2.len, &again));
    XT_ASSERT_EQ(again->num_descriptors, 0);
    nxl_rdma_metadata_free(again);
    nxl_rdma_metadata_free(back);
    nxl_blob_free(&js);
    nxl_blob_free(&js2);
    nxl_blob_free(&mds);
    nxl_rdma_metadata_free(NULL);
    return xt_leaks();
}

/* The golden files were written by Python (json, zlib level 6, base64),
 * as Dynamo's PassiveOperation.metadata() and pydantic write them. */
static int
t_rdma_golden(void)
{
    static const char *const keys[] = {
        "0f2d6a0e-5b1c-4d7e-9a3f-1c2b3d4e5f60",
        "9d3e8f1a-2b4c-4e6f-8a0b-c1d2e3f4a5b6",
        "9d3e8f1a-2b4c-4e6f-8a0b-c1d2e3f4a5b6",
    };
    static const char *const files[] = {
        "connect_rdma_metadata.json",
        "connect_rdma_metadata_pretty.json",
        "connect_rdma_metadata_hex.json",
    };
    nxl_rdma_metadata_t *md;
    nxl_blob_t agent_md, js, s;
    char *gold, *want;
    size_t len, wlen, i;

    want = xt_read_data("connect_golden_md.bin", &wlen);
    XT_ASSERT(want != NULL);
    for (i = 0; i < 3; i++) {
        gold = xt_read_data(files[i], &len);
        XT_ASSERT(gold != NULL);
        XT_ASSERT_OK(nxl_rdma_metadata_decode(gold, len, &md));
        XT_ASSERT_STR(md->notification_key, keys[i]);
        XT_ASSERT_OK(nxl_connect_md_decode(
            md->nixl_metadata, strlen(md->nixl_metadata), 0, &agent_md));
        XT_ASSERT_EQ(agent_md.len, wlen);
        XT_ASSERT(memcmp(agent_md.data, want, wlen) == 0);
        nxl_blob_free(&agent_md);
        if (i == 0) {
            /* Two CUDA descriptors, READ; our encoder writes the same
             * bytes as pydantic's model_dump_json. */
            XT_ASSERT_EQ(md->num_descriptors, 2);
            XT_ASSERT_EQ(md->descriptors[0].device, NXL_CONNECT_DEVICE_CUDA);
            XT_ASSERT_EQ(md->descriptors[1].ptr, 140234568939520ull);
            XT_ASSERT_EQ(md->descriptors[1].size, 4096);
            XT_ASSERT_EQ(md->operation_kind, NXL_CONNECT_READ);
            XT_ASSERT_OK(nxl_rdma_metadata_encode(md, &js));
            XT_ASSERT_EQ(js.len, len);
            XT_ASSERT(memcmp(js.data, gold, len) == 0);
            nxl_blob_free(&js);
            /* And our compressor is byte-identical to Python's zlib. */
            XT_ASSERT_OK(nxl_connect_md_encode(want, wlen, 0, &s));
            XT_ASSERT_STR(s.data, md->nixl_metadata);
            nxl_blob_free(&s);
        } else {
            XT_ASSERT_EQ(md->num_descriptors, 1);
            XT_ASSERT_EQ(md->descriptors[0].device, NXL_CONNECT_DEVICE_HOST);
            XT_ASSERT_EQ(md->descriptors[0].size, 65536);
        }
        if (i == 2) {
            XT_ASSERT(strncmp(md->nixl_metadata, "b64:", 4) != 0);
            XT_ASSERT_OK(nxl_connect_md_encode(want, wlen, 1, &s));
            XT_ASSERT_STR(s.data, md->nixl_metadata);
            nxl_blob_free(&s);
        }
        nxl_rdma_metadata_free(md);
        free(gold);
    }
    free(want);
    return xt_leaks();
}

static int
t_rdma_rejects(void)
{
#define B64 "\"b64:eJwLycgsVgCiRIWS1OISPQBDBAZ4\""
#define DOK "{\"device\":\"cpu\",\"ptr\":4096,\"size\":16}"
    static const struct {
        const char *json;
        const char *msg;
    } bad[] = {
        {"{\"descriptors\":[" DOK "],\"nixl_metadata\":" B64
         ",\"notification_key\":\"k\",\"operation_kind\":1,\"extra\":1}",
         "RdmaMetadata: extra: Extra inputs are not permitted"},
        {"{\"descriptors\":[{\"device\":\"cpu\",\"ptr\":1,\"size\":1,"
         "\"dev_id\":0}],\"nixl_metadata\":" B64
         ",\"notification_key\":\"k\",\"operation_kind\":1}",
         "RdmaMetadata: descriptors.0.dev_id: Extra inputs are not permitted"},
        {"{\"nixl_metadata\":" B64
         ",\"notification_key\":\"k\",\"operation_kind\":1}",
         "RdmaMetadata: descriptors: Field required"},
        {"{\"descriptors\":[],\"notification_key\":\"k\",\"operation_kind\":1}",
         "RdmaMetadata: nixl_metadata: Field required"},
        {"{\"descriptors\":[],\"nixl_metadata\":" B64 ",\"operation_kind\":1}",
         "RdmaMetadata: notification_key: Field required"},
        {"{\"descriptors\":[],\"nixl_metadata\":" B64
         ",\"notification_key\":\"k\"}",
         "RdmaMetadata: operation_kind: Field required"},
        {"{\"descriptors\":{},\"nixl_metadata\":" B64
         ",\"notification_key\":\"k\",\"operation_kind\":1}",
         "descriptors: Input should be a valid list"},
        {"{\"descriptors\":[5],\"nixl_metadata\":" B64
         ",\"notification_key\":\"k\",\"operation_kind\":1}",
         "descriptors.0: Input should be a valid dictionary"},
        {"{\"descriptors\":[" DOK "," DOK ",{\"device\":\"cpu\",\"ptr\":0,"
         "\"size\":1}],\"nixl_metadata\":" B64
         ",\"notification_key\":\"k\",\"operation_kind\":1}",
         "descriptors.2.ptr: Argument `ptr` cannot be zero"},
        {"{\"descriptors\":[],\"nixl_metadata\":5"
         ",\"notification_key\":\"k\",\"operation_kind\":1}",
         "nixl_metadata: Input should be a valid string"},
        {"{\"descriptors\":[],\"nixl_metadata\":" B64
         ",\"notification_key\":7,\"operation_kind\":1}",
         "notification_key: Input should be a valid string"},
        {"{\"descriptors\":[],\"nixl_metadata\":" B64
         ",\"notification_key\":\"k\",\"operation_kind\":\"1\"}",
         "operation_kind: Input should be a valid integer"},
        {"{\"descriptors\":[],\"nixl_metadata\":" B64
         ",\"notification_key\":\"k\",\"operation_kind\":1.0}",
         "operation_kind: Input should be a valid integer"},
        {"{\"descriptors\":[],\"nixl_metadata\":" B64
         ",\"notification_key\":\"k\",\"operation_kind\":true}",
         "operation_kind: Input should be a valid integer"},
        {"{\"descriptors\":[],\"nixl_metadata\":" B64
         ",\"notification_key\":\"k\",\"operation_kind\":0}",
         "Argument `operation_kind` must be an integer value of "
         "`dynamo.nixl_connect.OperationKind`."},
        {"{\"descriptors\":[],\"nixl_metadata\":" B64
         ",\"notification_key\":\"k\",\"operation_kind\":4}",
         "Argument `operation_kind` must be an integer value"},
        {"{\"descriptors\":[],\"nixl_metadata\":" B64
         ",\"notification_key\":\"\",\"operation_kind\":1}",
         "Argument `notification_key` must not be an empty string."},
        {"{\"descriptors\":[],\"nixl_metadata\":" B64
         ",\"notification_key\":\"a\\u0000b\",\"operation_kind\":1}",
         "NUL"},
        {"{\"descriptors\":[],\"nixl_metadata\":\"\""
         ",\"notification_key\":\"k\",\"operation_kind\":1}",
         "Argument `nixl_metadata` cannot be empty."},
        {"{\"descriptors\":[],\"nixl_metadata\":\"b64:@@@@\""
         ",\"notification_key\":\"k\",\"operation_kind\":1}",
         "not padded standard base64"},
        {"{\"descriptors\":[],\"nixl_metadata\":\"b64:eJw\""
         ",\"notification_key\":\"k\",\"operation_kind\":1}",
         "not padded standard base64"},
        {"{\"descriptors\":[],\"nixl_metadata\":\"b64:eJ=w\""
         ",\"notification_key\":\"k\",\"operation_kind\":1}",
         "not padded standard base64"},
        {"{\"descriptors\":[],\"nixl_metadata\":\"789cxx\""
         ",\"notification_key\":\"k\",\"operation_kind\":1}",
         "neither \"b64:\" + base64 nor hex"},
        {"{\"descriptors\":[],\"nixl_metadata\":\"789\""
         ",\"notification_key\":\"k\",\"operation_kind\":1}",
         "neither \"b64:\" + base64 nor hex"},
        {"[]", "RdmaMetadata: Input should be a valid dictionary"},
        {"\"x\"", "RdmaMetadata: Input should be a valid dictionary"},
        {"{\"descriptors\":[],\"nixl_metadata\":\"\xff\xfe\""
         ",\"notification_key\":\"k\",\"operation_kind\":1}",
         "invalid JSON"},
        {"{\"descriptors\":[],}", "invalid JSON"},
    };
    nxl_rdma_metadata_t *md = NULL;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        nxl_status_t st =
            nxl_rdma_metadata_decode(bad[i].json, strlen(bad[i].json), &md);

        if (st != NXL_ERR_PROTO ||
            strstr(nxl_last_error(), bad[i].msg) == NULL) {
            XT_FAILF("case %zu: %s -> %s \"%s\", want PROTO \"%s\"", i,
                     bad[i].json, nxl_status_name(st), nxl_last_error(),
                     bad[i].msg);
        }
        XT_ASSERT(md == NULL);
    }
    /* A key at the limit passes, one byte more does not. */
    {
        size_t n = NXL_CONNECT_KEY_MAX + 1, off;
        char *j = malloc(200 + n);

        XT_ASSERT(j != NULL);
        off = (size_t)sprintf(j, "{\"descriptors\":[],\"nixl_metadata\":" B64
                                 ",\"notification_key\":\"");
        memset(j + off, 'k', n);
        strcpy(j + off + n, "\",\"operation_kind\":1}");
        XC_EXPECT(nxl_rdma_metadata_decode(j, strlen(j), &md), NXL_ERR_PROTO,
                  "longer than");
        memmove(j + off + n - 1, j + off + n, strlen(j + off + n) + 1);
        XT_ASSERT_OK(nxl_rdma_metadata_decode(j, strlen(j), &md));
        XT_ASSERT_EQ(strlen(md->notification_key), NXL_CONNECT_KEY_MAX);
        nxl_rdma_metadata_free(md);
        free(j);
    }
    /* A NUL byte inside the text, and input past the size limit. */
    XC_EXPECT(nxl_rdma_metadata_decode("{\"a\":1}\0", 8, &md), NXL_ERR_PROTO,
              "NUL byte");
    XC_EXPECT(nxl_rdma_metadata_decode("{}", NXL_CONNECT_JSON_MAX + 1, &md),
              NXL_ERR_PROTO, "exceed the limit");
    XC_EXPECT(nxl_rdma_metadata_decode(NULL, 0, &md), NXL_ERR_PROTO,
              "empty input");
    return xt_leaks();
#undef B64
#undef DOK
}

/* Every proper prefix of a valid document is refused (and none crashes). */
static int
t_rdma_truncated(void)
{
    nxl_rdma_metadata_t *md;
    size_t len, i;
    char *gold, *cut;

    gold = xt_read_data("connect_rdma_metadata.json", &len);
    XT_ASSERT(gold != NULL);
    for (i = 0; i < len; i++) {
        cut = malloc(i ? i : 1);
        XT_ASSERT(cut != NULL);
        memcpy(cut, gold, i);
        md = NULL;
        if (nxl_rdma_metadata_decode(cut, i, &md) != NXL_ERR_PROTO) {
            XT_FAILF("prefix of %zu bytes accepted or not PROTO (%s)", i,
                     nxl_last_error());
        }
        XT_ASSERT(md == NULL);
        free(cut);
    }
    XT_ASSERT_OK(nxl_rdma_metadata_decode(gold, len, &md));
    nxl_rdma_metadata_free(md);
    free(gold);
    return xt_leaks();
}

static int
t_encode_rejects(void)
{
    nxl_connect_desc_t d = {4096, 8, NXL_CONNECT_DEVICE_HOST, 0};
    nxl_rdma_metadata_t md = {&d, 1, "b64:eJwDAAAAAAE=", "k", 1};
    nxl_blob_t js;

    XT_ASSERT_OK(nxl_rdma_metadata_encode(&md, &js));
    nxl_blob_free(&js);
    md.operation_kind = 0;
    XC_EXPECT(nxl_rdma_metadata_encode(&md, &js), NXL_ERR_INVALID_PARAM,
              "Argument `operation_kind` must be an integer value");
    md.operation_kind = 2;
    md.notification_key = "";
    XC_EXPECT(nxl_rdma_metadata_encode(&md, &js), NXL_ERR_INVALID_PARAM,
              "must not be an empty string");
    md.notification_key = "k";
    md.nixl_metadata = "b64:!";
    XC_EXPECT(nxl_rdma_metadata_encode(&md, &js), NXL_ERR_INVALID_PARAM,
              "base64");
    md.nixl_metadata = "b64:eJwDAAAAAAE=";
    d.ptr = 0;
    XC_EXPECT(nxl_rdma_metadata_encode(&md, &js), NXL_ERR_INVALID_PARAM,
              "descriptors.0.ptr: Argument `ptr` cannot be zero");
    return 0;
}

/* ---- metadata strings ---------------------------------------------------- */

static int
t_md_string(void)
{
    static uint8_t payload[100000];
    nxl_blob_t s, back;
    char *up;
    size_t i;

    xt_fill(payload, sizeof(payload), 3);
    for (i = 0; i < 2; i++) {
        XT_ASSERT_OK(
            nxl_connect_md_encode(payload, sizeof(payload), (int)i, &s));
        XT_ASSERT_EQ(strncmp(s.data, "b64:", 4) == 0, i == 0);
        XT_ASSERT_EQ(strlen(s.data), s.len);
        XT_ASSERT_OK(nxl_connect_md_decode(s.data, s.len, 0, &back));
        XT_ASSERT_EQ(back.len, sizeof(payload));
        XT_ASSERT(memcmp(back.data, payload, sizeof(payload)) == 0);
        nxl_blob_free(&back);
        if (i == 1) {
            /* Legacy hex in upper case (bytes.fromhex takes both). */
            up = strdup(s.data);
            for (size_t k = 0; up[k]; k++) {
                up[k] = (char)toupper((unsigned char)up[k]);
            }
            XT_ASSERT_OK(nxl_connect_md_decode(up, s.len, 0, &back));
            XT_ASSERT_EQ(back.len, sizeof(payload));
            nxl_blob_free(&back);
            free(up);
        }
        /* Exactly at the bound passes; one byte under it does not. */
        XT_ASSERT_OK(
            nxl_connect_md_decode(s.data, s.len, sizeof(payload), &back));
        nxl_blob_free(&back);
        XC_EXPECT(
            nxl_connect_md_decode(s.data, s.len, sizeof(payload) - 1, &back),
            NXL_ERR_PROTO, "inflates beyond");
        nxl_blob_free(&s);
    }
    /* Empty metadata survives the round trip. */
    XT_ASSERT_OK(nxl_connect_md_encode(NULL, 0, 0, &s));
    XT_ASSERT_OK(nxl_connect_md_decode(s.data, s.len, 0, &back));
    XT_ASSERT_EQ(back.len, 0);
    nxl_blob_free(&back);
    nxl_blob_free(&s);
    return xt_leaks();
}

/* xc_b64 returns "b64:" + base64 of n bytes (malloc'd). */
static char *
xc_b64(const uint8_t *p, size_t n)
{
    static const char a[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *s = malloc(4 + (n + 2) / 3 * 4 + 1), *o;
    size_t i;

    if (s == NULL) {
        return NULL;
    }
    memcpy(s, "b64:", 4);
    o = s + 4;
    for (i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;

        if (i + 1 < n) {
            v |= (uint32_t)p[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= p[i + 2];
        }
        *o++ = a[(v >> 18) & 63];
        *o++ = a[(v >> 12) & 63];
        *o++ = i + 1 < n ? a[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? a[v & 63] : '=';
    }
    *o = '\0';
    return s;
}

static int
t_md_string_rejects(void)
{
    uint8_t z[256], junk[64];
    uLongf zn = sizeof(z);
    nxl_blob_t back;
    char *s;
    size_t i;

    XT_ASSERT_EQ(compress2(z, &zn, (const Bytef *)"hello metadata", 14, 6),
                 Z_OK);
    /* Truncated streams at every length. */
    for (i = 0; i < zn; i++) {
        s = xc_b64(z, i);
        XT_ASSERT(s != NULL);
        if (nxl_connect_md_decode(s, strlen(s), 0, &back) != NXL_ERR_PROTO) {
            XT_FAILF("%zu of %lu zlib bytes accepted", i, (unsigned long)zn);
        }
        free(s);
    }
    s = xc_b64(z, zn);
    XT_ASSERT(s != NULL);
    XT_ASSERT_OK(nxl_connect_md_decode(s, strlen(s), 0, &back));
    XT_ASSERT_EQ(back.len, 14);
    nxl_blob_free(&back);
    free(s);
    /* Trailing bytes after the stream. */
    z[zn] = 0;
    s = xc_b64(z, zn + 1);
    XT_ASSERT(s != NULL);
    XC_EXPECT(nxl_connect_md_decode(s, strlen(s), 0, &back), NXL_ERR_PROTO,
              "after the end of the zlib stream");
    free(s);
    /* Not zlib at all, and a corrupted stream. */
    xt_fill(junk, sizeof(junk), 77);
    s = xc_b64(junk, sizeof(junk));
    XT_ASSERT(s != NULL);
    XC_EXPECT(nxl_connect_md_decode(s, strlen(s), 0, &back), NXL_ERR_PROTO,
              "zlib");
    free(s);
    z[zn / 2] ^= 0x55;
    s = xc_b64(z, zn);
    XT_ASSERT(s != NULL);
    XC_EXPECT(nxl_connect_md_decode(s, strlen(s), 0, &back), NXL_ERR_PROTO,
              NULL);
    free(s);
    XC_EXPECT(nxl_connect_md_decode("", 0, 0, &back), NXL_ERR_PROTO,
              "cannot be empty");
    XC_EXPECT(nxl_connect_md_decode("b64:", 4, 0, &back), NXL_ERR_PROTO,
              "truncated");
    XC_EXPECT(nxl_connect_md_decode("b64:eJw*", 8, 0, &back), NXL_ERR_PROTO,
              "base64");
    XC_EXPECT(nxl_connect_md_decode("78 9c", 5, 0, &back), NXL_ERR_PROTO,
              "hex");
    return xt_leaks();
}

/* A zlib bomb: 256 MiB of zeros in ~250 KiB of stream must stop at the
 * bound (64 MiB) without allocating the rest. */
static int
t_zlib_bomb(void)
{
    static uint8_t zeros[1 << 20];
    nxl_blob_t back;
    z_stream zs;
    uint8_t *z;
    size_t cap = 2u << 20, i;
    char *s;

    memset(&zs, 0, sizeof(zs));
    XT_ASSERT_EQ(deflateInit(&zs, 9), Z_OK);
    z = malloc(cap);
    XT_ASSERT(z != NULL);
    zs.next_out = z;
    zs.avail_out = (uInt)cap;
    for (i = 0; i < 256; i++) {
        zs.next_in = zeros;
        zs.avail_in = sizeof(zeros);
        XT_ASSERT_EQ(deflate(&zs, i + 1 == 256 ? Z_FINISH : Z_NO_FLUSH) >= 0,
                     1);
        XT_ASSERT(zs.avail_in == 0);
    }
    XT_ASSERT(zs.avail_out > 0);
    s = xc_b64(z, cap - zs.avail_out);
    XT_ASSERT(s != NULL);
    printf("  256 MiB of zeros in %zu bytes of zlib\n", cap - zs.avail_out);
    deflateEnd(&zs);
    free(z);
    XC_EXPECT(nxl_connect_md_decode(s, strlen(s), 0, &back), NXL_ERR_PROTO,
              "inflates beyond 67108864 bytes");
    free(s);
    return xt_leaks();
}

static int
t_uuid4(void)
{
    char a[NXL_CONNECT_UUID_LEN], b[NXL_CONNECT_UUID_LEN];
    size_t i;

    XT_ASSERT_OK(nxl_connect_uuid4(a));
    XT_ASSERT_OK(nxl_connect_uuid4(b));
    XT_ASSERT_EQ(strlen(a), 36);
    XT_ASSERT(strcmp(a, b) != 0);
    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            XT_ASSERT(a[i] == '-');
        } else {
            XT_ASSERT(strchr("0123456789abcdef", a[i]) != NULL);
        }
    }
    XT_ASSERT(a[14] == '4');
    XT_ASSERT(strchr("89ab", a[19]) != NULL);
    return 0;
}

/* ---- media --------------------------------------------------------------- */

static int
t_media_hash_vector(void)
{
    const uint64_t shape[3] = {1, 2, 3};
    const uint8_t bytes[6] = {0, 1, 2, 3, 4, 5};
    const uint64_t other[3] = {1, 3, 2};
    uint64_t h, h2;
    char hex[17];

    XT_ASSERT_OK(nxl_media_content_hash(shape, 3, bytes, 6, &h));
    XT_ASSERT_EQ(h, 0x7a9bbcb11a898630ull);
    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)h);
    XT_ASSERT_STR(hex, "7a9bbcb11a898630");
    /* The shape is part of the identity. */
    XT_ASSERT_OK(nxl_media_content_hash(other, 3, bytes, 6, &h2));
    XT_ASSERT(h2 != h);
    return xt_leaks();
}

static int
t_media_limits(void)
{
    static uint8_t px[64 * 64 * 4];
    nxl_media_limits_t lim;
    nxl_media_t *m = NULL;
    nxl_agent_t *a;

    XT_ASSERT_OK(xc_agent("media", "TCP", &a));
    nxl_media_limits_init(&lim);
    XT_ASSERT_EQ(lim.max_image_width, 0);
    XT_ASSERT_EQ(lim.max_image_height, 0);
    XT_ASSERT_EQ(lim.max_alloc, NXL_MEDIA_DEFAULT_MAX_ALLOC);
    XC_EXPECT(nxl_media_image_create(a, px, 8, 8, 5, NULL, NULL, &m),
              NXL_ERR_INVALID_PARAM, "Unsupported channel count 5");
    XC_EXPECT(nxl_media_image_create(a, px, 8, 8, 0, NULL, NULL, &m),
              NXL_ERR_INVALID_PARAM, "Unsupported channel count 0");
    XC_EXPECT(nxl_media_image_create(a, px, 0, 8, 3, NULL, NULL, &m),
              NXL_ERR_INVALID_PARAM, "empty");
    XC_EXPECT(nxl_media_image_create(a, px, 8, 8, 3, "P n g", NULL, &m),
              NXL_ERR_INVALID_PARAM, "format");
    /* Dynamo's cases: width 100 over 50, height 100 over 50. */
    lim.max_image_width = 50;
    XC_EXPECT(nxl_media_image_create(a, px, 50, 100, 3, NULL, &lim, &m),
              NXL_ERR_NOT_ALLOWED, "Image size exceeds limit");
    XT_ASSERT_OK(nxl_media_image_create(a, px, 50, 50, 1, NULL, &lim, &m));
    nxl_media_destroy(m);
    lim.max_image_width = 0;
    lim.max_image_height = 50;
    XC_EXPECT(nxl_media_image_create(a, px, 100, 50, 3, NULL, &lim, &m),
              NXL_ERR_NOT_ALLOWED, "Image size exceeds limit");
    /* 8000 x 8000 RGB is over 128 MiB (checked before any copy). */
    nxl_media_limits_init(&lim);
    XC_EXPECT(nxl_media_image_create(a, px, 8000, 8000, 3, NULL, NULL, &m),
              NXL_ERR_NOT_ALLOWED, "Memory limit exceeded");
    lim.max_alloc = 64 * 64 * 4 - 1;
    XC_EXPECT(nxl_media_image_create(a, px, 64, 64, 4, NULL, &lim, &m),
              NXL_ERR_NOT_ALLOWED, "Memory limit exceeded");
    lim.max_alloc = 64 * 64 * 4;
    XT_ASSERT_OK(nxl_media_image_create(a, px, 64, 64, 4, NULL, &lim, &m));
    nxl_media_destroy(m);
    lim.max_alloc = 0; /* no limit */
    XT_ASSERT_OK(nxl_media_image_create(a, px, 64, 64, 4, "Png", &lim, &m));
    nxl_media_destroy(m);
    nxl_media_destroy(NULL);
    nxl_agent_destroy(a);
    return xt_leaks();
}

static int
t_media_json(void)
{
    static const char *const ct[5] = {NULL, "L8", "La8", "Rgb8", "Rgba8"};
    const uint8_t bytes[6] = {0, 1, 2, 3, 4, 5};
    nxl_media_desc_t *d;
    nxl_media_t *m;
    nxl_agent_t *a;
    nxl_blob_t js;
    char want[160];
    uint32_t c;
    size_t size;

    XT_ASSERT_OK(xc_agent("media", "TCP", &a));
    /* The §13.1 vector: shape [1, 2, 3] over bytes 0..5. */
    XT_ASSERT_OK(nxl_media_image_create(a, bytes, 1, 2, 3, "Png", NULL, &m));
    XT_ASSERT_EQ(nxl_media_hash(m), 0x7a9bbcb11a898630ull);
    XT_ASSERT(memcmp(nxl_media_data(m, &size), bytes, 6) == 0);
    XT_ASSERT_EQ(size, 6);
    XT_ASSERT(nxl_media_data(m, NULL) != (const void *)bytes);
    XT_ASSERT_OK(nxl_media_json(m, &js));
    XT_ASSERT(strncmp(js.data, "{\"nixl_metadata\":\"b64:", 22) == 0);
    snprintf(want, sizeof(want),
             "\",\"nixl_descriptor\":{\"addr\":%llu,\"size\":6,\"mem_type\":"
             "\"Dram\",\"device_id\":0},\"shape\":[1,2,3],\"dtype\":\"UINT8\"",
             (unsigned long long)(uintptr_t)nxl_media_data(m, NULL));
    XT_ASSERT(strstr(js.data, want) != NULL);
    XT_ASSERT(strstr(js.data,
                     ",\"metadata\":{\"Image\":{\"format\":\"Png\","
                     "\"color_type\":\"Rgb8\",\"layout\":\"HWC\"}},"
                     "\"content_hash\":\"7a9bbcb11a898630\"}") != NULL);
    XT_ASSERT_OK(nxl_media_desc_decode(js.data, js.len, &d));
    XT_ASSERT_EQ(d->addr, (uintptr_t)nxl_media_data(m, NULL));
    XT_ASSERT_EQ(d->size, 6);
    XT_ASSERT_EQ(d->mem_type, NXL_DRAM);
    XT_ASSERT_EQ(d->ndim, 3);
    XT_ASSERT_EQ(d->shape[2], 3);
    XT_ASSERT_STR(d->dtype, "UINT8");
    XT_ASSERT(d->has_content_hash);
    XT_ASSERT_EQ(d->content_hash, 0x7a9bbcb11a898630ull);
    XT_ASSERT_STR(d->metadata_json, "{\"Image\":{\"format\":\"Png\","
                                    "\"color_type\":\"Rgb8\",\"layout\":"
                                    "\"HWC\"}}");
    nxl_media_desc_free(d);
    nxl_blob_free(&js);
    nxl_media_destroy(m);
    /* Every channel count names its colour type; no format is null. */
    for (c = 1; c <= 4; c++) {
        uint8_t px[2 * 2 * 4] = {0};

        XT_ASSERT_OK(nxl_media_image_create(a, px, 2, 2, c, NULL, NULL, &m));
        XT_ASSERT_OK(nxl_media_json(m, &js));
        snprintf(want, sizeof(want), "\"format\":null,\"color_type\":\"%s\"",
                 ct[c]);
        XT_ASSERT(strstr(js.data, want) != NULL);
        nxl_blob_free(&js);
        nxl_media_destroy(m);
    }
    nxl_agent_destroy(a);
    return xt_leaks();
}

static int
t_media_desc_golden(void)
{
    static const struct {
        const char *from, *to, *msg;
    } bad[] = {
        {"\"dtype\":\"UINT8\"", "\"dtype\":\"FLOAT32\"", "unknown variant"},
        {"\"mem_type\":\"Dram\"", "\"mem_type\":\"Unknown\"", "mem_type"},
        {"\"size\":6", "\"size\":7", "shape holds 6 bytes"},
        {"\"shape\":[1,2,3]", "\"shape\":[]", "0 dimensions"},
        {"\"shape\":[1,2,3]", "\"shape\":[1,2,-3]", "unsigned"},
        {"\"content_hash\":\"7a9bbcb11a898630\"", "\"content_hash\":\"7a9b\"",
         "16 hex digits"},
        {"\"nixl_metadata\"", "\"nixl_meta\"", "missing field `nixl_metadata`"},
        {"\"addr\"", "\"adr\"", "missing field `addr`"},
        {"\"device_id\":0", "\"device_id\":\"0\"", "device_id"},
    };
    nxl_media_desc_t *d;
    char *gold, *j, *at;
    size_t len, i;

    gold = xt_read_data("connect_media_descriptor.json", &len);
    XT_ASSERT(gold != NULL);
    XT_ASSERT_OK(nxl_media_desc_decode(gold, len, &d));
    XT_ASSERT_EQ(d->addr, 94558320418816ull);
    XT_ASSERT_EQ(d->content_hash, 0x7a9bbcb11a898630ull);
    XT_ASSERT_EQ(d->ndim, 3);
    nxl_media_desc_free(d);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        j = malloc(len + 64);
        XT_ASSERT(j != NULL);
        at = strstr(gold, bad[i].from);
        XT_ASSERT(at != NULL);
        memcpy(j, gold, (size_t)(at - gold));
        strcpy(j + (at - gold), bad[i].to);
        strcat(j, at + strlen(bad[i].from));
        XC_EXPECT(nxl_media_desc_decode(j, strlen(j), &d), NXL_ERR_PROTO,
                  bad[i].msg);
        free(j);
    }
    /* Unknown fields are ignored (serde), metadata and hash optional. */
    {
        const char *j =
            "{\"nixl_metadata\":\"b64:eJwDAAAAAAE=\",\"nixl_descriptor\":{"
            "\"addr\":1,\"size\":4,\"mem_type\":\"Vram\",\"device_id\":2,"
            "\"x\":1},\"shape\":[2,2],\"dtype\":\"UINT8\",\"future\":[1]}";

        XT_ASSERT_OK(nxl_media_desc_decode(j, strlen(j), &d));
    }
    XT_ASSERT_EQ(d->mem_type, NXL_VRAM);
    XT_ASSERT_EQ(d->device_id, 2);
    XT_ASSERT(!d->has_content_hash);
    XT_ASSERT_STR(d->metadata_json, "null");
    nxl_media_desc_free(d);
    free(gold);
    return xt_leaks();
}

static int
t_progress_delay_env(void)
{
    static const struct {
        const char *v;
        uint32_t want;
    } cases[] = {
        {NULL, 1000},      {"0", 0},      {"250", 250}, {"1000000", 1000000},
        {"1000001", 1000}, {"abc", 1000}, {"-5", 1000}, {"", 1000},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (cases[i].v == NULL) {
            unsetenv("DYN_MM_NIXL_PROGRESS_DELAY_US");
        } else {
            setenv("DYN_MM_NIXL_PROGRESS_DELAY_US", cases[i].v, 1);
        }
        XT_ASSERT_EQ(nxl_media_progress_delay_us(), cases[i].want);
    }
    return 0;
}

/* The worker's consumer reads the frontend's image (two agents here). */
static int
t_media_read(void)
{
    static uint8_t px[48 * 32 * 4], dst[48 * 32 * 4];
    nxl_connect_desc_t d = xc_host(dst, sizeof(dst));
    nxl_connect_desc_t small = xc_host(dst, 10);
    nxl_connector_t *c;
    nxl_connect_op_t *op;
    nxl_agent_t *fe, *w;
    nxl_media_t *m;
    nxl_blob_t js;

    xt_fill(px, sizeof(px), 5);
    XT_ASSERT_OK(xc_agent("media-loader-test", "TCP", &fe));
    XT_ASSERT_OK(xc_agent("worker", "TCP", &w));
    XT_ASSERT_OK(nxl_connector_create(w, &c));
    XT_ASSERT_OK(nxl_media_image_create(fe, px, 48, 32, 4, "WebP", NULL, &m));
    XT_ASSERT_OK(nxl_media_json(m, &js));
    XC_EXPECT(nxl_media_read_begin(c, js.data, js.len, &small, 1, &op),
              NXL_ERR_MISMATCH,
              "Local and remote descriptors must be the same size. 10 != "
              "6144.");
    XT_ASSERT_OK(nxl_media_read_begin(c, js.data, js.len, &d, 1, &op));
    XT_ASSERT_OK(nxl_connect_op_wait(op, XC_WAIT_MS));
    XT_ASSERT(xt_check(dst, sizeof(dst), 5));
    nxl_connect_op_release(op);
    /* The reader's key reached the frontend; dropping it leaves nothing. */
    XT_ASSERT_OK(nxl_media_discard_notifs(fe));
    nxl_blob_free(&js);
    nxl_media_destroy(m);
    nxl_connector_destroy(c);
    nxl_agent_destroy(w);
    nxl_agent_destroy(fe);
    return xt_leaks();
}

/* ---- operations between two agents of this process ----------------------- */

static int
t_read_write(void)
{
    static uint8_t src[3][20000], dst[3][20000];
    nxl_connect_desc_t sd[3], dd[3];
    nxl_connect_op_t *pass, *act;
    nxl_connect_op_info_t info;
    nxl_connect_state_t s;
    xc_pair p;
    char *js;
    size_t len, i;

    XT_ASSERT_OK(xc_pair_open(&p, "TCP"));
    for (i = 0; i < 3; i++) {
        xt_fill(src[i], sizeof(src[i]) - i * 1000, (uint32_t)i + 1);
        sd[i] = xc_host(src[i], sizeof(src[i]) - i * 1000);
        dd[i] = xc_host(dst[i], sizeof(dst[i]) - i * 1000);
    }
    /* Readable (passive) + read (active). */
    XT_ASSERT_OK(nxl_connect_readable_create(p.pc, sd, 3, &pass));
    XT_ASSERT_EQ(xc_state(pass), NXL_CONNECT_INITIALIZED);
    js = xc_metadata(pass, &len);
    XT_ASSERT(js != NULL);
    XT_ASSERT_OK(nxl_connect_read_begin(p.ac, dd, 3, js, len, &act));
    XT_ASSERT_OK(nxl_connect_op_info(act, &info));
    XT_ASSERT_EQ(info.state, NXL_CONNECT_UNINITIALIZED); /* lazy post */
    XT_ASSERT_STR(info.remote_agent, "passive");
    XT_ASSERT_EQ(info.passive, 0);
    XT_ASSERT_OK(nxl_connect_op_wait(act, XC_WAIT_MS));
    XT_ASSERT_OK(nxl_connect_op_wait(pass, XC_WAIT_MS));
    XT_ASSERT_EQ(xc_state(pass), NXL_CONNECT_COMPLETE);
    XT_ASSERT_EQ(xc_state(act), NXL_CONNECT_COMPLETE);
    for (i = 0; i < 3; i++) {
        XT_ASSERT(xt_check(dst[i], sizeof(dst[i]) - i * 1000, (uint32_t)i + 1));
    }
    XT_ASSERT_OK(nxl_connect_op_info(pass, &info));
    XT_ASSERT_EQ(info.kind, NXL_CONNECT_READ);
    XT_ASSERT_EQ(info.passive, 1);
    XT_ASSERT_EQ(info.num_descriptors, 3);
    XT_ASSERT_EQ(strlen(info.notification_key), 36);
    nxl_connect_op_release(act);
    nxl_connect_op_release(pass);
    free(js);

    /* Writable (passive) + write (active), one descriptor each. */
    memset(dst, 0, sizeof(dst));
    XT_ASSERT_OK(nxl_connect_writable_create(p.pc, dd, 1, &pass));
    js = xc_metadata(pass, &len);
    XT_ASSERT(strstr(js, "\"operation_kind\":2}") != NULL);
    XT_ASSERT_OK(nxl_connect_write_begin(p.ac, sd, 1, js, len, &act));
    XT_ASSERT_OK(nxl_connect_op_status(act, &s));
    XT_ASSERT(s == NXL_CONNECT_COMPLETE || s == NXL_CONNECT_INITIALIZED);
    XT_ASSERT_OK(nxl_connect_op_wait(act, XC_WAIT_MS));
    XT_ASSERT_OK(nxl_connect_op_wait(pass, XC_WAIT_MS));
    XT_ASSERT(xt_check(dst[0], sizeof(dst[0]), 1));
    nxl_connect_op_release(act);
    nxl_connect_op_release(pass);
    free(js);
    xc_pair_close(&p);
    return xt_leaks();
}

/* The same connector on both sides: this agent's own metadata is not
 * loaded; the transfer runs loopback. */
static int
t_loopback(void)
{
    static uint8_t src[4096], dst[4096];
    nxl_connect_desc_t sd = xc_host(src, sizeof(src));
    nxl_connect_desc_t dd = xc_host(dst, sizeof(dst));
    nxl_connect_op_t *pass, *act;
    nxl_connect_op_info_t info;
    nxl_connector_t *c;
    nxl_agent_t *a;
    char *js;
    size_t len;

    XT_ASSERT_OK(xc_agent("solo", "TCP", &a));
    XT_ASSERT_OK(nxl_connector_create(a, &c));
    xt_fill(src, sizeof(src), 11);
    XT_ASSERT_OK(nxl_connect_readable_create(c, &sd, 1, &pass));
    js = xc_metadata(pass, &len);
    XT_ASSERT_OK(nxl_connect_read_begin(c, &dd, 1, js, len, &act));
    XT_ASSERT_OK(nxl_connect_op_info(act, &info));
    XT_ASSERT_STR(info.remote_agent, "solo");
    XT_ASSERT_OK(nxl_connect_op_wait(act, XC_WAIT_MS));
    XT_ASSERT_OK(nxl_connect_op_wait(pass, XC_WAIT_MS));
    XT_ASSERT(xt_check(dst, sizeof(dst), 11));
    nxl_connect_op_release(act);
    nxl_connect_op_release(pass);
    free(js);
    XC_EXPECT(nxl_connector_create(a, &c), NXL_ERR_NOT_ALLOWED,
              "already has a connector");
    nxl_connector_destroy(c);
    nxl_agent_destroy(a);
    return xt_leaks();
}

/* Dynamo's texts for pairing, sizes and the local list; a refused begin
 * leaves nothing registered or loaded. */
static int
t_begin_rejects(void)
{
    static uint8_t src[4][256], dst[4][256];
    nxl_connect_desc_t sd[3], dd[4];
    nxl_connect_op_t *rd, *wr, *op = NULL;
    nxl_rdma_metadata_t *md;
    nxl_blob_t bad;
    xc_pair p;
    char *rjs, *wjs;
    size_t rlen, wlen, i;

    XT_ASSERT_OK(xc_pair_open(&p, "TCP"));
    for (i = 0; i < 3; i++) {
        sd[i] = xc_host(src[i], 100 + i);
    }
    for (i = 0; i < 4; i++) {
        dd[i] = xc_host(dst[i], 100 + i);
    }
    XT_ASSERT_OK(nxl_connect_readable_create(p.pc, sd, 3, &rd));
    XT_ASSERT_OK(nxl_connect_writable_create(p.pc, sd, 1, &wr));
    rjs = xc_metadata(rd, &rlen);
    wjs = xc_metadata(wr, &wlen);

    XC_EXPECT(nxl_connect_read_begin(p.ac, dd, 3, wjs, wlen, &op),
              NXL_ERR_INVALID_PARAM,
              "Cannot create a `dynamo.nixl_connect.ReadOperation` to read "
              "from a remote `dynamo.nixl_connect.WritableOperation`.");
    XC_EXPECT(nxl_connect_write_begin(p.ac, dd, 3, rjs, rlen, &op),
              NXL_ERR_INVALID_PARAM,
              "Cannot create a `WriteOperation` to write to a remote "
              "`ReadableOperation`.");
    XC_EXPECT(nxl_connect_read_begin(p.ac, dd, 4, rjs, rlen, &op),
              NXL_ERR_MISMATCH,
              "When `local_descriptors` and `remote_descriptors` are lists, "
              "they must have the same length. 4 != 3.");
    XC_EXPECT(nxl_connect_read_begin(p.ac, dd, 1, rjs, rlen, &op),
              NXL_ERR_MISMATCH,
              "Both `local_descriptors` and `remote_descriptors` must be "
              "either lists or single descriptors.");
    dd[1].size = 7;
    XC_EXPECT(nxl_connect_read_begin(p.ac, dd, 3, rjs, rlen, &op),
              NXL_ERR_MISMATCH,
              "Descriptor length mismatch: `local_descriptors` and "
              "`remote_descriptors` descriptor at 1 must have the same size. "
              "7 != 101.");
    dd[1].size = 101;
    XC_EXPECT(nxl_connect_write_begin(p.ac, &dd[1], 1, wjs, wlen, &op),
              NXL_ERR_MISMATCH,
              "Local and remote descriptors must be the same size. 101 != "
              "100.");
    XC_EXPECT(nxl_connect_read_begin(p.ac, dd, 0, rjs, rlen, &op),
              NXL_ERR_INVALID_PARAM,
              "Argument `local_descriptors` must not be an empty list.");
    dd[2].ptr = 0;
    XC_EXPECT(nxl_connect_read_begin(p.ac, dd, 3, rjs, rlen, &op),
              NXL_ERR_INVALID_PARAM,
              "Cannot register memory with a null pointer.");
    dd[2].ptr = (uintptr_t)dst[2];
    dd[2].device = NXL_CONNECT_DEVICE_CUDA;
    XC_EXPECT(nxl_connect_read_begin(p.ac, dd, 3, rjs, rlen, &op),
              NXL_ERR_INVALID_PARAM,
              "All local descriptors must have the same memory type.");
    dd[2].device = NXL_CONNECT_DEVICE_HOST;
    XC_EXPECT(nxl_connect_readable_create(p.pc, sd, 0, &op),
              NXL_ERR_INVALID_PARAM,
              "Argument `local_descriptors` must not be an empty list.");

    /* Empty descriptor list and bad agent metadata from the peer. */
    XT_ASSERT_OK(nxl_rdma_metadata_decode(rjs, rlen, &md));
    md->num_descriptors = 0;
    XC_EXPECT(nxl_connect_begin_md(p.ac, NXL_CONNECT_READ, dd, 3, md, &op),
              NXL_ERR_PROTO,
              "Request descriptor must contain at least one serialized "
              "descriptor.");
    md->num_descriptors = 3;
    md->nixl_metadata = "b64:eJwDAAAAAAE="; /* zlib of nothing */
    XC_EXPECT(nxl_connect_begin_md(p.ac, NXL_CONNECT_READ, dd, 3, md, &op),
              NXL_ERR_PROTO, "not readable");
    XT_ASSERT_OK(nxl_connect_md_encode("garbage", 7, 0, &bad));
    md->nixl_metadata = bad.data;
    XC_EXPECT(nxl_connect_begin_md(p.ac, NXL_CONNECT_READ, dd, 3, md, &op),
              NXL_ERR_PROTO, "not readable");
    nxl_blob_free(&bad);
    nxl_rdma_metadata_free(md);
    XT_ASSERT(op == NULL);
    /* Nothing of the refused calls stayed: the peer is not loaded and the
     * local buffers can be registered by hand. */
    XC_EXPECT(nxl_md_check(p.aa, "passive", NULL), NXL_ERR_NOT_FOUND, NULL);
    {
        nxl_desc_t d = {(uintptr_t)dst[0], 100, 0};
        nxl_dlist_t dl = {NXL_DRAM, &d, 1};

        XT_ASSERT_OK(nxl_mem_register(p.aa, &dl, NULL));
        XT_ASSERT_OK(nxl_mem_deregister(p.aa, &dl, NULL));
    }
    nxl_connect_op_release(rd);
    nxl_connect_op_release(wr);
    free(rjs);
    free(wjs);
    xc_pair_close(&p);
    return xt_leaks();
}

#define XC_NOPS 64
#define XC_OPSZ 4096

typedef struct xc_waiter {
    nxl_connect_op_t **ops;
    size_t n;
    nxl_status_t st;
} xc_waiter;

/* xc_wait_thread waits for its share of passive operations. */
static void *
xc_wait_thread(void *arg)
{
    xc_waiter *w = arg;
    size_t i;

    w->st = NXL_OK;
    for (i = 0; i < w->n && w->st == NXL_OK; i++) {
        w->st = nxl_connect_op_wait(w->ops[i], 20000);
    }
    return NULL;
}

/* 64 passive operations on one agent complete independently, each only
 * when its own key arrives, while four threads wait on them and the
 * application's notifications (including keys that share a prefix with
 * an operation's) stay for it, in order. */
static int
t_concurrent_64(void)
{
    static uint8_t src[XC_NOPS][XC_OPSZ], dst[XC_NOPS][XC_OPSZ];
    nxl_connect_op_t *pass[XC_NOPS], *act, *later[XC_NOPS];
    nxl_connect_op_info_t info;
    nxl_notif_list_t *list;
    pthread_t th[4];
    xc_waiter w[4];
    size_t order[XC_NOPS], len[XC_NOPS], i, j, k;
    char *js[XC_NOPS], prefix[40], suffixed[48];
    xc_pair p;

    XT_ASSERT_OK(xc_pair_open(&p, "TCP"));
    for (i = 0; i < XC_NOPS; i++) {
        nxl_connect_desc_t d = xc_host(src[i], XC_OPSZ);

        xt_fill(src[i], XC_OPSZ, (uint32_t)i + 100);
        XT_ASSERT_OK(nxl_connect_readable_create(p.pc, &d, 1, &pass[i]));
        js[i] = xc_metadata(pass[i], &len[i]);
        XT_ASSERT(js[i] != NULL);
        order[i] = i;
    }
    /* Shuffle the read order (fixed seed). */
    srand(42);
    for (i = XC_NOPS - 1; i > 0; i--) {
        j = (size_t)rand() % (i + 1);
        k = order[i];
        order[i] = order[j];
        order[j] = k;
    }
    /* Threads wait on the operations in read order, 16 each. */
    for (i = 0; i < XC_NOPS; i++) {
        later[i] = pass[order[i]];
    }
    for (i = 0; i < 4; i++) {
        w[i] = (xc_waiter){&later[i * 16], 16, NXL_ERR_UNKNOWN};
    }
    for (i = 0; i < 4; i++) {
        XT_ASSERT_EQ(pthread_create(&th[i], NULL, xc_wait_thread, &w[i]), 0);
    }
    XT_ASSERT_OK(nxl_connect_op_info(pass[order[0]], &info));
    snprintf(prefix, sizeof(prefix), "%.20s", info.notification_key);
    snprintf(suffixed, sizeof(suffixed), "%sx", info.notification_key);
    for (i = 0; i < XC_NOPS; i++) {
        size_t o = order[i];
        nxl_connect_desc_t d = xc_host(dst[o], XC_OPSZ);

        /* Not yet read: not complete (no other key completes it). */
        XT_ASSERT_OK(nxl_connect_op_info(pass[o], &info));
        XT_ASSERT_EQ(info.state, NXL_CONNECT_INITIALIZED);
        XT_ASSERT_OK(nxl_connect_read_begin(p.ac, &d, 1, js[o], len[o], &act));
        if (i == 0) {
            /* The application's notifications, around the keys. */
            XT_ASSERT_OK(nxl_notif_send(p.aa, "passive", "app-1", 5, NULL));
            XT_ASSERT_OK(
                nxl_notif_send(p.aa, "passive", prefix, strlen(prefix), NULL));
            XT_ASSERT_OK(nxl_notif_send(p.aa, "passive", suffixed,
                                        strlen(suffixed), NULL));
        }
        XT_ASSERT_OK(nxl_connect_op_wait(act, XC_WAIT_MS));
        XT_ASSERT(xt_check(dst[o], XC_OPSZ, (uint32_t)o + 100));
        if (i + 1 == XC_NOPS) {
            /* (The peer is loaded while an operation holds it.) */
            XT_ASSERT_OK(nxl_notif_send(p.aa, "passive", "app-2", 5, NULL));
        }
        nxl_connect_op_release(act);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        XT_ASSERT_OK(w[i].st);
    }
    for (i = 0; i < XC_NOPS; i++) {
        XT_ASSERT_EQ(xc_state(pass[i]), NXL_CONNECT_COMPLETE);
    }
    /* What is left for the application: its four, in order, no keys. */
    {
        const char *want[4] = {"app-1", prefix, suffixed, "app-2"};
        size_t got = 0;
        uint64_t t0 = xt_now_ms();

        while (got < 4 && xt_now_ms() - t0 < XC_WAIT_MS) {
            XT_ASSERT_OK(nxl_connector_notifs_get(p.pc, &list));
            for (i = 0; i < list->count; i++) {
                XT_ASSERT(got < 4);
                XT_ASSERT_EQ(list->items[i].len, strlen(want[got]));
                XT_ASSERT(memcmp(list->items[i].msg, want[got],
                                 list->items[i].len) == 0);
                XT_ASSERT_STR(list->items[i].agent, "active");
                got++;
            }
            nxl_notif_list_free(list);
            if (got < 4) {
                usleep(1000);
            }
        }
        XT_ASSERT_EQ(got, 4);
    }
    for (i = 0; i < XC_NOPS; i++) {
        nxl_connect_op_release(pass[i]);
        free(js[i]);
    }
    xc_pair_close(&p);
    return xt_leaks();
}

/* Memory: duplicates and overlapping operations share one registration,
 * pool memory outlives operations, memory the application registered is
 * never deregistered by the connector. */
static int
t_registrations(void)
{
    static uint8_t buf[3][8192], ext[4096];
    nxl_connect_desc_t whole = xc_host(buf[0], 8192);
    nxl_connect_desc_t half = xc_host(buf[0], 4096);
    nxl_connect_desc_t dup[2] = {xc_host(buf[1], 100), xc_host(buf[1], 100)};
    nxl_connect_desc_t pool = xc_host(buf[2], 8192);
    nxl_connect_desc_t in_pool = xc_host(buf[2] + 100, 200);
    nxl_connect_desc_t e = xc_host(ext, sizeof(ext));
    nxl_connect_op_t *a, *b, *c;
    nxl_desc_t d;
    nxl_dlist_t dl = {NXL_DRAM, &d, 1};
    nxl_connector_t *conn;
    nxl_agent_t *ag;

    XT_ASSERT_OK(xc_agent("regs", "TCP", &ag));
    XT_ASSERT_OK(nxl_connector_create(ag, &conn));
    /* a registers the whole buffer; b uses half of it; releasing a keeps
     * it registered for b, releasing b deregisters it. */
    XT_ASSERT_OK(nxl_connect_readable_create(conn, &whole, 1, &a));
    XT_ASSERT_OK(nxl_connect_readable_create(conn, &half, 1, &b));
    nxl_connect_op_release(a);
    d = (nxl_desc_t){(uintptr_t)buf[0], 8192, 0};
    XC_EXPECT(nxl_mem_register(ag, &dl, NULL), NXL_ERR_NOT_ALLOWED, NULL);
    nxl_connect_op_release(b);
    XT_ASSERT_OK(nxl_mem_register(ag, &dl, NULL)); /* it was deregistered */
    XT_ASSERT_OK(nxl_mem_deregister(ag, &dl, NULL));
    /* The same descriptor twice in one operation: deregistered once. */
    XT_ASSERT_OK(nxl_connect_readable_create(conn, dup, 2, &a));
    nxl_connect_op_release(a);
    d = (nxl_desc_t){(uintptr_t)buf[1], 100, 0};
    XT_ASSERT_OK(nxl_mem_register(ag, &dl, NULL));
    XT_ASSERT_OK(nxl_mem_deregister(ag, &dl, NULL));
    /* Pool memory stays registered after its operations. */
    XT_ASSERT_OK(nxl_connector_register(conn, &pool, 1));
    XT_ASSERT_OK(nxl_connect_writable_create(conn, &in_pool, 1, &a));
    XT_ASSERT_OK(nxl_connect_writable_create(conn, &pool, 1, &b));
    nxl_connect_op_release(a);
    nxl_connect_op_release(b);
    d = (nxl_desc_t){(uintptr_t)buf[2], 8192, 0};
    XC_EXPECT(nxl_mem_register(ag, &dl, NULL), NXL_ERR_NOT_ALLOWED, NULL);
    XC_EXPECT(nxl_connector_deregister(conn, &in_pool, 1), NXL_ERR_NOT_FOUND,
              "not pool memory");
    XT_ASSERT_OK(nxl_connector_deregister(conn, &pool, 1));
    XT_ASSERT_OK(nxl_mem_register(ag, &dl, NULL));
    XT_ASSERT_OK(nxl_mem_deregister(ag, &dl, NULL));
    /* An operation's memory becomes pool memory when registered so. */
    XT_ASSERT_OK(nxl_connect_readable_create(conn, &pool, 1, &a));
    XT_ASSERT_OK(nxl_connector_register(conn, &pool, 1));
    nxl_connect_op_release(a);
    XC_EXPECT(nxl_mem_register(ag, &dl, NULL), NXL_ERR_NOT_ALLOWED, NULL);
    XT_ASSERT_OK(nxl_connector_deregister(conn, &pool, 1));
    /* Memory the application registered: used, left registered. */
    d = (nxl_desc_t){(uintptr_t)ext, sizeof(ext), 0};
    XT_ASSERT_OK(nxl_mem_register(ag, &dl, NULL));
    XT_ASSERT_OK(nxl_connect_readable_create(conn, &e, 1, &c));
    e.size = 64;
    XT_ASSERT_OK(nxl_connect_readable_create(conn, &e, 1, &a));
    nxl_connect_op_release(c);
    nxl_connect_op_release(a);
    XT_ASSERT_OK(nxl_mem_deregister(ag, &dl, NULL)); /* still ours */
    XT_ASSERT_OK(nxl_connector_register(conn, &e, 1));
    XT_ASSERT_OK(nxl_connector_deregister(conn, &e, 1));
    /* A span straddling a registration is refused with a reason. */
    XT_ASSERT_OK(nxl_connect_readable_create(conn, &half, 1, &a));
    whole.ptr += 2048;
    XC_EXPECT(nxl_connect_readable_create(conn, &whole, 1, &b),
              NXL_ERR_NOT_ALLOWED, "overlaps registered memory");
    nxl_connect_op_release(a);
    nxl_connector_destroy(conn);
    nxl_agent_destroy(ag);
    return xt_leaks();
}

/* Overlapping active operations on one peer load it once (one
 * reference each); the last release invalidates it; a peer loaded by
 * the application is never invalidated by the connector. */
static int
t_remote_refs(void)
{
    static uint8_t src[2][512], dst[2][512];
    nxl_connect_desc_t s0 = xc_host(src[0], 512), s1 = xc_host(src[1], 512);
    nxl_connect_desc_t d0 = xc_host(dst[0], 512), d1 = xc_host(dst[1], 512);
    nxl_connect_op_t *p0, *p1, *a0, *a1;
    nxl_blob_t md;
    char *j0, *j1;
    size_t l0, l1;
    xc_pair p;

    XT_ASSERT_OK(xc_pair_open(&p, "TCP"));
    XT_ASSERT_OK(nxl_connect_readable_create(p.pc, &s0, 1, &p0));
    XT_ASSERT_OK(nxl_connect_readable_create(p.pc, &s1, 1, &p1));
    j0 = xc_metadata(p0, &l0);
    j1 = xc_metadata(p1, &l1);
    XT_ASSERT_OK(nxl_connect_read_begin(p.ac, &d0, 1, j0, l0, &a0));
    XT_ASSERT_OK(nxl_connect_read_begin(p.ac, &d1, 1, j1, l1, &a1));
    XT_ASSERT_OK(nxl_connect_op_wait(a0, XC_WAIT_MS));
    nxl_connect_op_release(a0);
    XT_ASSERT_OK(nxl_md_check(p.aa, "passive", NULL)); /* a1 holds it */
    XT_ASSERT_OK(nxl_connect_op_wait(a1, XC_WAIT_MS));
    nxl_connect_op_release(a1);
    XC_EXPECT(nxl_md_check(p.aa, "passive", NULL), NXL_ERR_NOT_FOUND, NULL);

    /* Loaded by the application first: left loaded. */
    XT_ASSERT_OK(nxl_md_local(p.pa, &md));
    XT_ASSERT_OK(nxl_md_load(p.aa, md.data, md.len, NULL, 0));
    nxl_blob_free(&md);
    XT_ASSERT_OK(nxl_connect_read_begin(p.ac, &d0, 1, j0, l0, &a0));
    XT_ASSERT_OK(nxl_connect_op_wait(a0, XC_WAIT_MS));
    nxl_connect_op_release(a0);
    XT_ASSERT_OK(nxl_md_check(p.aa, "passive", NULL));
    nxl_connect_op_release(p0);
    nxl_connect_op_release(p1);
    free(j0);
    free(j1);
    xc_pair_close(&p);
    return xt_leaks();
}

/* The passive side re-registers the same buffer for a new operation: a
 * snapshot that conflicts with the loaded one (the backend's key changed)
 * replaces it once no open operation still needs the old one, and is
 * refused with a reason while one does. */
static int
xc_reregistered_peer(const char *be)
{
    static uint8_t src[2048], dst[2][2048];
    nxl_connect_desc_t sd = xc_host(src, sizeof(src));
    nxl_connect_desc_t d0 = xc_host(dst[0], sizeof(dst[0]));
    nxl_connect_desc_t d1 = xc_host(dst[1], sizeof(dst[1]));
    nxl_connect_op_t *p1, *p2, *a1, *a2, *a3;
    size_t l1, l2;
    nxl_status_t st;
    char *j1, *j2;
    xc_pair p;

    XT_ASSERT_OK(xc_pair_open(&p, be));
    xt_fill(src, sizeof(src), 21);
    XT_ASSERT_OK(nxl_connect_readable_create(p.pc, &sd, 1, &p1));
    j1 = xc_metadata(p1, &l1);
    XT_ASSERT_OK(nxl_connect_read_begin(p.ac, &d0, 1, j1, l1, &a1));
    XT_ASSERT_OK(nxl_connect_op_wait(a1, XC_WAIT_MS));
    XT_ASSERT_OK(nxl_connect_op_wait(p1, XC_WAIT_MS));
    nxl_connect_op_release(p1); /* deregisters src */
    XT_ASSERT_OK(nxl_connect_readable_create(p.pc, &sd, 1, &p2));
    j2 = xc_metadata(p2, &l2);
    /* a1 is COMPLETE (not released): a conflicting snapshot may replace
     * the loaded one. */
    XT_ASSERT_OK(nxl_connect_read_begin(p.ac, &d1, 1, j2, l2, &a2));
    XT_ASSERT_OK(nxl_connect_op_wait(a2, XC_WAIT_MS));
    XT_ASSERT(xt_check(dst[1], sizeof(dst[1]), 21));
    XT_ASSERT_OK(nxl_connect_op_wait(p2, XC_WAIT_MS));
    nxl_connect_op_release(a1);
    nxl_connect_op_release(a2);
    /* Again, with a2 released and a3 open but not posted: a conflicting
     * snapshot is refused while a3 needs the loaded one. */
    XT_ASSERT_OK(nxl_connect_readable_create(p.pc, &sd, 1, &p1));
    free(j1);
    j1 = xc_metadata(p1, &l1);
    XT_ASSERT_OK(nxl_connect_read_begin(p.ac, &d0, 1, j1, l1, &a3));
    nxl_connect_op_release(p2);
    nxl_connect_op_release(p1);
    XT_ASSERT_OK(nxl_connect_readable_create(p.pc, &sd, 1, &p2));
    free(j2);
    j2 = xc_metadata(p2, &l2);
    st = nxl_connect_read_begin(p.ac, &d1, 1, j2, l2, &a2);
    if (st == NXL_OK) {
        printf("  %s re-registers with the same key: no conflict\n", be);
        nxl_connect_op_release(a2);
    } else {
        XC_EXPECT(st, NXL_ERR_NOT_ALLOWED, "open operations still use");
        printf("  %s: a conflicting snapshot is refused while an open "
               "operation needs the loaded one\n",
               be);
    }
    nxl_connect_op_release(a3);
    nxl_connect_op_release(p2);
    free(j1);
    free(j2);
    xc_pair_close(&p);
    return xt_leaks();
}

static int
t_reregistered_peer(void)
{
    int rc = xc_reregistered_peer("TCP");

    return rc != 0 ? rc : xc_reregistered_peer("SHM");
}

/* cancel and release: Dynamo's rules, and a cancelled passive key goes to
 * the application when it arrives. */
static int
t_cancel(void)
{
    static uint8_t src[1024], dst[1024];
    nxl_connect_desc_t sd = xc_host(src, sizeof(src));
    nxl_connect_desc_t dd = xc_host(dst, sizeof(dst));
    nxl_connect_op_t *pass, *act;
    nxl_connect_op_info_t info;
    nxl_notif_list_t *list;
    size_t len, got = 0;
    uint64_t t0;
    xc_pair p;
    char *js;

    XT_ASSERT_OK(xc_pair_open(&p, "TCP"));
    XT_ASSERT_OK(nxl_connect_readable_create(p.pc, &sd, 1, &pass));
    js = xc_metadata(pass, &len);
    /* Active, cancelled before its post. */
    XT_ASSERT_OK(nxl_connect_read_begin(p.ac, &dd, 1, js, len, &act));
    XT_ASSERT_OK(nxl_connect_op_cancel(act));
    XT_ASSERT_EQ(xc_state(act), NXL_CONNECT_CANCELLED);
    XC_EXPECT(nxl_connect_op_wait(act, 0), NXL_ERR_CANCELED, "cancelled");
    XT_ASSERT_OK(nxl_connect_op_cancel(act)); /* again: no effect */
    nxl_connect_op_release(act);
    XT_ASSERT_EQ(xc_state(pass), NXL_CONNECT_INITIALIZED);
    /* Passive cancelled; the reader still reads; its key then belongs to
     * the application. */
    XT_ASSERT_OK(nxl_connect_op_cancel(pass));
    XT_ASSERT_EQ(xc_state(pass), NXL_CONNECT_CANCELLED);
    XT_ASSERT_OK(nxl_connect_op_info(pass, &info));
    XT_ASSERT_OK(nxl_connect_read_begin(p.ac, &dd, 1, js, len, &act));
    XT_ASSERT_OK(nxl_connect_op_wait(act, XC_WAIT_MS));
    XT_ASSERT_OK(nxl_connect_op_cancel(act)); /* COMPLETE: no effect */
    XT_ASSERT_EQ(xc_state(act), NXL_CONNECT_COMPLETE);
    t0 = xt_now_ms();
    while (got == 0 && xt_now_ms() - t0 < XC_WAIT_MS) {
        XT_ASSERT_OK(nxl_connector_notifs_get(p.pc, &list));
        if (list->count > 0) {
            XT_ASSERT_EQ(list->count, 1);
            XT_ASSERT_EQ(list->items[0].len, 36);
            XT_ASSERT(memcmp(list->items[0].msg, info.notification_key, 36) ==
                      0);
            got = 1;
        }
        nxl_notif_list_free(list);
        usleep(1000);
    }
    XT_ASSERT_EQ(got, 1);
    XT_ASSERT_EQ(xc_state(pass), NXL_CONNECT_CANCELLED);
    nxl_connect_op_release(act);
    nxl_connect_op_release(pass);
    free(js);
    xc_pair_close(&p);
    return xt_leaks();
}

/* An errored active operation: cancel refuses with Dynamo's text, wait
 * returns the cause; passive waits time out on time. */
static int
t_errored(void)
{
    static uint8_t src[1024], dst[1024];
    nxl_connect_desc_t sd = xc_host(src, sizeof(src));
    nxl_connect_desc_t dd = xc_host(dst, sizeof(dst));
    nxl_connect_op_t *pass, *act;
    nxl_connect_op_info_t info;
    nxl_connect_state_t s;
    nxl_status_t st;
    uint64_t t0;
    size_t len;
    xc_pair p;
    char *js;

    XT_ASSERT_OK(xc_pair_open(&p, "TCP"));
    XT_ASSERT_OK(nxl_connect_readable_create(p.pc, &sd, 1, &pass));
    js = xc_metadata(pass, &len);
    XT_ASSERT_OK(nxl_connect_read_begin(p.ac, &dd, 1, js, len, &act));
    /* The peer goes away before the lazy post. */
    XT_ASSERT_OK(nxl_md_invalidate(p.aa, "passive"));
    XT_ASSERT_OK(nxl_connect_op_status(act, &s));
    XT_ASSERT_EQ(s, NXL_CONNECT_ERRORED);
    XT_ASSERT_OK(nxl_connect_op_info(act, &info));
    XT_ASSERT_EQ(info.error, NXL_ERR_NOT_FOUND);
    XT_ASSERT(strstr(info.error_text, "READ from 'passive'") != NULL);
    st = nxl_connect_op_wait(act, 100);
    XT_ASSERT_EQ(st, NXL_ERR_NOT_FOUND);
    XC_EXPECT(nxl_connect_op_cancel(act), NXL_ERR_NOT_ALLOWED,
              "Operation is errored, unable to cancel the operation.");
    nxl_connect_op_release(act);
    t0 = xt_now_ms();
    XC_EXPECT(nxl_connect_op_wait(pass, 150), NXL_ERR_TIMEOUT, "150 ms");
    XT_ASSERT(xt_now_ms() - t0 >= 140);
    XT_ASSERT(xt_now_ms() - t0 < 2000);
    nxl_connect_op_release(pass);
    free(js);
    xc_pair_close(&p);
    return xt_leaks();
}

/* The passive side frees a buffer and registers part of it again (an
 * overlapping region under a new key) while the active side keeps it
 * loaded: the new snapshot replaces the loaded one when no open operation
 * needs it (an additive load would leave the stale key in force for the
 * overlap), and is refused with a reason while one does. */
static int
xc_overlap_reregistered(const char *be)
{
    static uint8_t src[16384], dst[16384], small[4096];
    nxl_connect_desc_t whole = xc_host(src, sizeof(src));
    nxl_connect_desc_t part = xc_host(src + 4096, 4096);
    nxl_connect_desc_t dd = xc_host(dst, sizeof(dst));
    nxl_connect_desc_t dpart = xc_host(small, sizeof(small));
    nxl_connect_op_t *p1, *p2, *a1, *a2;
    char *j1, *j2, name[64];
    size_t l1, l2;
    nxl_blob_t md;
    unsigned refs;
    xc_pair p;

    XT_ASSERT_OK(xc_pair_open(&p, be));
    xt_fill(src, sizeof(src), 31);
    XT_ASSERT_OK(nxl_md_local(p.pa, &md));
    XT_ASSERT_OK(nxl_connector_remote_add(p.ac, md.data, md.len, name,
                                          sizeof(name))); /* kept loaded */
    nxl_blob_free(&md);
    XT_ASSERT_OK(nxl_connect_readable_create(p.pc, &whole, 1, &p1));
    j1 = xc_metadata(p1, &l1);
    XT_ASSERT_OK(nxl_connect_read_begin(p.ac, &dd, 1, j1, l1, &a1));
    XT_ASSERT_OK(nxl_connect_op_wait(a1, XC_WAIT_MS));
    XT_ASSERT(xt_check(dst, sizeof(dst), 31));
    nxl_connect_op_release(a1);
    XT_ASSERT_OK(nxl_connect_op_wait(p1, XC_WAIT_MS));
    nxl_connect_op_release(p1); /* deregisters src */
    memset(dst, 0, sizeof(dst));
    XT_ASSERT_OK(nxl_connect_readable_create(p.pc, &part, 1, &p2));
    j2 = xc_metadata(p2, &l2);
    XT_ASSERT_OK(nxl_connect_read_begin(p.ac, &dpart, 1, j2, l2, &a2));
    XT_ASSERT_OK(nxl_connect_op_wait(a2, XC_WAIT_MS));
    XT_ASSERT(memcmp(small, src + 4096, 4096) == 0);
    XT_ASSERT_OK(nxl_connect_op_wait(p2, XC_WAIT_MS));
    nxl_connect_op_release(a2);
    /* Again with an open (not posted) read of the current snapshot: a
     * stale-overlapping one is refused while it is open. */
    XT_ASSERT_OK(nxl_connect_read_begin(p.ac, &dpart, 1, j2, l2, &a1));
    nxl_connect_op_release(p2);
    XT_ASSERT_OK(nxl_connect_readable_create(p.pc, &whole, 1, &p1));
    free(j1);
    j1 = xc_metadata(p1, &l1);
    /* TCP too: its regions carry keys (protocol version 3), and a
     * stale one would be refused by the target. */
    XC_EXPECT(nxl_connect_read_begin(p.ac, &dd, 1, j1, l1, &a2),
              NXL_ERR_NOT_ALLOWED, "open operations still use");
    nxl_connect_op_release(a1);
    XT_ASSERT_OK(nxl_connect_read_begin(p.ac, &dd, 1, j1, l1, &a2));
    XT_ASSERT_OK(nxl_connect_op_wait(a2, XC_WAIT_MS));
    XT_ASSERT(xt_check(dst, sizeof(dst), 31));
    nxl_connect_op_release(a2);
    XT_ASSERT_OK(nxl_connector_remote_refs(p.ac, "passive", &refs));
    XT_ASSERT_EQ(refs, 1); /* the handle */
    XT_ASSERT_OK(nxl_connector_remote_remove(p.ac, "passive"));
    nxl_connect_op_release(p1);
    free(j1);
    free(j2);
    xc_pair_close(&p);
    return xt_leaks();
}

static int
t_overlap_reregistered(void)
{
    int rc = xc_overlap_reregistered("SHM");

    return rc != 0 ? rc : xc_overlap_reregistered("TCP");
}

/* ---- take, info, remote handles ------------------------------------------ */

/* xc_send_all sends each message from the active agent to "passive" (the
 * passive agent's metadata loaded first) and waits until the passive
 * connector holds them all. */
static int
xc_send_all(xc_pair *p, const char *const *msgs, size_t n)
{
    nxl_connector_info_t ci;
    nxl_blob_t md;
    uint64_t t0;
    size_t i;
    int found;

    XT_ASSERT_OK(nxl_md_local(p->pa, &md));
    XT_ASSERT_OK(nxl_md_load(p->aa, md.data, md.len, NULL, 0));
    nxl_blob_free(&md);
    for (i = 0; i < n; i++) {
        XT_ASSERT_OK(
            nxl_notif_send(p->aa, "passive", msgs[i], strlen(msgs[i]), NULL));
    }
    t0 = xt_now_ms();
    do {
        /* A take of a message nobody sent only drains. */
        XT_ASSERT_OK(nxl_connector_notif_take(p->pc, "none", 4, &found));
        XT_ASSERT_EQ(found, 0);
        XT_ASSERT_OK(nxl_connector_info(p->pc, &ci));
        if (ci.num_queued < n) {
            usleep(1000);
        }
    } while (ci.num_queued < n && xt_now_ms() - t0 < XC_WAIT_MS);
    XT_ASSERT_EQ(ci.num_queued, n);
    return 0;
}

/* nxl_connector_notif_take removes the oldest equal message only; prefix
 * collisions and the others stay, in order; a key an open operation
 * claims never reaches it. */
static int
t_notif_take(void)
{
    static const char *const msgs[] = {"first", "second", "first", "firstly",
                                       "fir"};
    static const char *const left[] = {"second", "firstly", "fir"};
    nxl_notif_list_t *list;
    int found = -1;
    size_t i;
    xc_pair p;

    XT_ASSERT_OK(xc_pair_open(&p, "TCP"));
    if (xc_send_all(&p, msgs, 5) != 0) {
        return 1;
    }
    XT_ASSERT_OK(nxl_connector_notif_take(p.pc, "first", 5, &found));
    XT_ASSERT_EQ(found, 1);
    XT_ASSERT_OK(nxl_connector_notif_take(p.pc, "first", 5, &found));
    XT_ASSERT_EQ(found, 1);
    XT_ASSERT_OK(nxl_connector_notif_take(p.pc, "first", 5, &found));
    XT_ASSERT_EQ(found, 0);
    XC_EXPECT(nxl_connector_notif_take(p.pc, NULL, 3, &found),
              NXL_ERR_INVALID_PARAM, NULL);
    XT_ASSERT_OK(nxl_connector_notifs_get(p.pc, &list));
    XT_ASSERT_EQ(list->count, 3);
    for (i = 0; i < 3; i++) {
        XT_ASSERT_EQ(list->items[i].len, strlen(left[i]));
        XT_ASSERT(memcmp(list->items[i].msg, left[i], strlen(left[i])) == 0);
    }
    nxl_notif_list_free(list);
    xc_pair_close(&p);
    return xt_leaks();
}

/* nxl_connector_info counts operations, keys, registrations (pool
 * apart), peers and queued notifications; everything is back to zero
 * once the operations are released. */
static int
t_connector_info(void)
{
    static uint8_t src[4096], dst[4096], pool[8192];
    nxl_connect_desc_t sd = xc_host(src, sizeof(src));
    nxl_connect_desc_t dd = xc_host(dst, sizeof(dst));
    nxl_connect_desc_t pd = xc_host(pool, sizeof(pool));
    nxl_connector_info_t ci;
    nxl_connect_op_t *pass, *act;
    size_t len;
    char *js;
    xc_pair p;

    XT_ASSERT_OK(xc_pair_open(&p, "TCP"));
    XC_EXPECT(nxl_connector_info(NULL, &ci), NXL_ERR_INVALID_PARAM, NULL);
    XT_ASSERT_OK(nxl_connector_register(p.pc, &pd, 1));
    XT_ASSERT_OK(nxl_connect_readable_create(p.pc, &sd, 1, &pass));
    XT_ASSERT_OK(nxl_connector_info(p.pc, &ci));
    XT_ASSERT_EQ(ci.num_ops, 1);
    XT_ASSERT_EQ(ci.num_keys, 1);
    XT_ASSERT_EQ(ci.num_regs, 2);
    XT_ASSERT_EQ(ci.num_pool, 1);
    XT_ASSERT_EQ(ci.num_remotes, 0);
    js = xc_metadata(pass, &len);
    XT_ASSERT_OK(nxl_connect_read_begin(p.ac, &dd, 1, js, len, &act));
    XT_ASSERT_OK(nxl_connector_info(p.ac, &ci));
    XT_ASSERT_EQ(ci.num_ops, 1);
    XT_ASSERT_EQ(ci.num_keys, 0);
    XT_ASSERT_EQ(ci.num_regs, 1);
    XT_ASSERT_EQ(ci.num_remotes, 1);
    XT_ASSERT_OK(nxl_connect_op_wait(act, XC_WAIT_MS));
    XT_ASSERT_OK(nxl_connect_op_wait(pass, XC_WAIT_MS));
    XT_ASSERT_OK(nxl_connector_info(p.pc, &ci));
    XT_ASSERT_EQ(ci.num_keys, 0);
    nxl_connect_op_release(act);
    nxl_connect_op_release(pass);
    XT_ASSERT_OK(nxl_connector_info(p.ac, &ci));
    XT_ASSERT_EQ(ci.num_ops + ci.num_regs + ci.num_remotes, 0);
    XT_ASSERT_OK(nxl_connector_info(p.pc, &ci));
    XT_ASSERT_EQ(ci.num_ops, 0);
    XT_ASSERT_EQ(ci.num_regs, 1); /* the pool */
    XT_ASSERT_OK(nxl_connector_deregister(p.pc, &pd, 1));
    XT_ASSERT_OK(nxl_connector_info(p.pc, &ci));
    XT_ASSERT_EQ(ci.num_regs, 0);
    free(js);
    xc_pair_close(&p);
    return xt_leaks();
}

/* Remote handles (Dynamo's Remote): one reference each, shared with the
 * operations; the last reference of either kind invalidates the peer; a
 * remove without a handle is NOT_FOUND and drops no operation's
 * reference. */
static int
t_remote_handles(void)
{
    static uint8_t src[512], dst[512];
    nxl_connect_desc_t sd = xc_host(src, sizeof(src));
    nxl_connect_desc_t dd = xc_host(dst, sizeof(dst));
    nxl_connect_op_t *pass, *act;
    char name[64], tiny[4];
    unsigned refs = 99;
    nxl_blob_t md;
    size_t len;
    char *js;
    xc_pair p;

    XT_ASSERT_OK(xc_pair_open(&p, "TCP"));
    XT_ASSERT_OK(nxl_md_local(p.pa, &md));
    XT_ASSERT_OK(nxl_connector_remote_refs(p.ac, "passive", &refs));
    XT_ASSERT_EQ(refs, 0);
    XC_EXPECT(
        nxl_connector_remote_add(p.ac, md.data, md.len, tiny, sizeof(tiny)),
        NXL_ERR_INVALID_PARAM, "needs 8 bytes");
    XC_EXPECT(nxl_md_check(p.aa, "passive", NULL), NXL_ERR_NOT_FOUND, NULL);
    XC_EXPECT(nxl_connector_remote_add(p.ac, "junk", 4, name, sizeof(name)),
              NXL_ERR_PROTO, NULL);
    XT_ASSERT_OK(
        nxl_connector_remote_add(p.ac, md.data, md.len, name, sizeof(name)));
    XT_ASSERT_STR(name, "passive");
    XT_ASSERT_OK(
        nxl_connector_remote_add(p.ac, md.data, md.len, name, sizeof(name)));
    XT_ASSERT_OK(nxl_connector_remote_refs(p.ac, "passive", &refs));
    XT_ASSERT_EQ(refs, 2);
    XT_ASSERT_OK(nxl_connect_readable_create(p.pc, &sd, 1, &pass));
    js = xc_metadata(pass, &len);
    XT_ASSERT_OK(nxl_connect_read_begin(p.ac, &dd, 1, js, len, &act));
    XT_ASSERT_OK(nxl_connector_remote_refs(p.ac, "passive", &refs));
    XT_ASSERT_EQ(refs, 3);
    XT_ASSERT_OK(nxl_connector_remote_remove(p.ac, "passive"));
    XT_ASSERT_OK(nxl_connector_remote_remove(p.ac, "passive"));
    XC_EXPECT(nxl_connector_remote_remove(p.ac, "passive"), NXL_ERR_NOT_FOUND,
              "no reference");
    XT_ASSERT_OK(nxl_md_check(p.aa, "passive", NULL)); /* act holds it */
    XT_ASSERT_OK(nxl_connect_op_wait(act, XC_WAIT_MS));
    nxl_connect_op_release(act);
    XC_EXPECT(nxl_md_check(p.aa, "passive", NULL), NXL_ERR_NOT_FOUND, NULL);
    /* Own metadata: loopback, no reference, remove is a no-op. */
    nxl_blob_free(&md);
    XT_ASSERT_OK(nxl_md_local(p.aa, &md));
    XT_ASSERT_OK(
        nxl_connector_remote_add(p.ac, md.data, md.len, name, sizeof(name)));
    XT_ASSERT_STR(name, "active");
    XT_ASSERT_OK(nxl_connector_remote_remove(p.ac, "active"));
    nxl_blob_free(&md);
    nxl_connect_op_release(pass);
    free(js);
    xc_pair_close(&p);
    return xt_leaks();
}

const xt_suite xt_suite_connect = {
    .name = "connect",
    .timeout_s = 60,
    .cases =
        (const xt_case[]){
            {"enum_values", t_enum_values},
            {"device_strings", t_device_strings},
            {"desc_roundtrip", t_desc_roundtrip},
            {"desc_rejects", t_desc_rejects},
            {"rdma_roundtrip", t_rdma_roundtrip},
            {"rdma_golden", t_rdma_golden},
            {"rdma_rejects", t_rdma_rejects},
            {"rdma_truncated", t_rdma_truncated},
            {"encode_rejects", t_encode_rejects},
            {"md_string", t_md_string},
            {"md_string_rejects", t_md_string_rejects},
            {"zlib_bomb", t_zlib_bomb},
            {"uuid4", t_uuid4},
            {"media_hash_vector", t_media_hash_vector},
            {"media_limits", t_media_limits},
            {"media_json", t_media_json},
            {"media_desc_golden", t_media_desc_golden},
            {"progress_delay_env", t_progress_delay_env},
            {"media_read", t_media_read},
            {"read_write", t_read_write},
            {"loopback", t_loopback},
            {"begin_rejects", t_begin_rejects},
            {"concurrent_64", t_concurrent_64},
            {"registrations", t_registrations},
            {"remote_refs", t_remote_refs},
            {"reregistered_peer", t_reregistered_peer},
            {"cancel", t_cancel},
            {"errored", t_errored},
            {"notif_take", t_notif_take},
            {"connector_info", t_connector_info},
            {"remote_handles", t_remote_handles},
            {"overlap_reregistered", t_overlap_reregistered},
            {NULL, NULL},
        },
};
