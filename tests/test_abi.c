/* test_abi.c - caller-filled public structs that grow (nxl.h): the first
 * layouts are frozen here, a program built against one of them keeps
 * working, and the library refuses a struct not filled by its _init and a
 * newer layout that asks for something it does not know. */
#include "harness.h"
#include "util.h"

#include <nxl/nxl_kv.h>

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* The first layouts, as a program built against NXL 0.1 has them. These
 * mirrors never change: a field inserted or moved in nxl.h fails the
 * static assertions below, and the cases below pass these mirrors (cast)
 * to the library as an old program would. */
typedef struct v1_agent_config {
    uint32_t size;
    int progress_thread;
    int listen_thread;
    uint16_t listen_port;
    const char *listen_addr;
    nxl_sync_t sync_mode;
    int capture_telemetry;
    uint32_t progress_delay_us;
    const char *sc_secret;
} v1_agent_config_t;

typedef struct v1_opts {
    uint32_t size;
    nxl_backend_t *const *backends;
    size_t num_backends;
    int has_notif;
    const void *notif;
    size_t notif_len;
    const char *ip_addr;
    uint16_t port;
    const char *label;
    int include_conn_info;
    int skip_merge;
    int timeout_ms;
} v1_opts_t;

typedef struct v1_kv_ctx_config {
    uint32_t size;
    nxl_kv_caps_t caps;
    int device;
    unsigned poll_tick_ms;
    unsigned warn_after_ms;
    unsigned warn_every_ms;
    size_t max_pending;
} v1_kv_ctx_config_t;

typedef struct v1_kv_opts {
    uint32_t size;
    size_t layer_begin, layer_end;
    const nxl_kv_layout_t *bounce;
    const size_t *bounce_ids;
    size_t num_bounce;
    int deadline_ms;
    const void *notif;
    size_t notif_len;
} v1_kv_opts_t;

#define SAME(v1, cur, f)                                                       \
    _Static_assert(offsetof(v1, f) == offsetof(cur, f),                        \
                   #cur "." #f " moved: fields are only added at the end")

SAME(v1_agent_config_t, nxl_agent_config_t, size);
SAME(v1_agent_config_t, nxl_agent_config_t, progress_thread);
SAME(v1_agent_config_t, nxl_agent_config_t, listen_thread);
SAME(v1_agent_config_t, nxl_agent_config_t, listen_port);
SAME(v1_agent_config_t, nxl_agent_config_t, listen_addr);
SAME(v1_agent_config_t, nxl_agent_config_t, sync_mode);
SAME(v1_agent_config_t, nxl_agent_config_t, capture_telemetry);
SAME(v1_agent_config_t, nxl_agent_config_t, progress_delay_us);
SAME(v1_agent_config_t, nxl_agent_config_t, sc_secret);
_Static_assert(sizeof(v1_agent_config_t) == NXL_AGENT_CONFIG_V1_SIZE,
               "NXL_AGENT_CONFIG_V1_SIZE changed");
SAME(v1_opts_t, nxl_opts_t, size);
SAME(v1_opts_t, nxl_opts_t, backends);
SAME(v1_opts_t, nxl_opts_t, num_backends);
SAME(v1_opts_t, nxl_opts_t, has_notif);
SAME(v1_opts_t, nxl_opts_t, notif);
SAME(v1_opts_t, nxl_opts_t, notif_len);
SAME(v1_opts_t, nxl_opts_t, ip_addr);
SAME(v1_opts_t, nxl_opts_t, port);
SAME(v1_opts_t, nxl_opts_t, label);
SAME(v1_opts_t, nxl_opts_t, include_conn_info);
SAME(v1_opts_t, nxl_opts_t, skip_merge);
SAME(v1_opts_t, nxl_opts_t, timeout_ms);
_Static_assert(offsetof(v1_opts_t, timeout_ms) + sizeof(int) ==
                   NXL_OPTS_V1_SIZE,
               "NXL_OPTS_V1_SIZE changed");
SAME(v1_kv_ctx_config_t, nxl_kv_ctx_config_t, size);
SAME(v1_kv_ctx_config_t, nxl_kv_ctx_config_t, caps);
SAME(v1_kv_ctx_config_t, nxl_kv_ctx_config_t, max_pending);
_Static_assert(sizeof(v1_kv_ctx_config_t) == NXL_KV_CTX_CONFIG_V1_SIZE,
               "NXL_KV_CTX_CONFIG_V1_SIZE changed");
SAME(v1_kv_opts_t, nxl_kv_opts_t, size);
SAME(v1_kv_opts_t, nxl_kv_opts_t, deadline_ms);
SAME(v1_kv_opts_t, nxl_kv_opts_t, notif_len);
_Static_assert(sizeof(v1_kv_opts_t) == NXL_KV_OPTS_V1_SIZE,
               "NXL_KV_OPTS_V1_SIZE changed");

/* The _init functions stamp the size this program was built with. */
static int
t_init_sets_size(void)
{
    nxl_agent_config_t c;
    nxl_opts_t o;
    nxl_kv_ctx_config_t kc;
    nxl_kv_opts_t ko;

    memset(&c, 0xab, sizeof(c));
    nxl_agent_config_init(&c);
    XT_ASSERT_EQ(c.size, sizeof(c));
    nxl_opts_init(&o);
    XT_ASSERT_EQ(o.size, sizeof(o));
    nxl_kv_ctx_config_init(&kc);
    XT_ASSERT_EQ(kc.size, sizeof(kc));
    nxl_kv_opts_init(&ko);
    XT_ASSERT_EQ(ko.size, sizeof(ko));
    return 0;
}

/* An old program's agent config and opts, passed to the library of today:
 * every call that takes them works and honours their fields. */
static int
t_old_program_runs(void)
{
    v1_agent_config_t c = {.size = sizeof(v1_agent_config_t),
                           .listen_thread = 1,
                           .listen_port = 0,
                           .listen_addr = "127.0.0.1",
                           .sync_mode = NXL_SYNC_RW,
                           .progress_delay_us = 100000};
    v1_opts_t o = {.size = sizeof(v1_opts_t), .port = 8888};
    nxl_agent_t *a = NULL;
    nxl_backend_t *be = NULL;
    nxl_dlist_t dl;
    nxl_desc_t d;
    char *buf = malloc(4096);

    XT_ASSERT(buf != NULL);
    XT_ASSERT_OK(
        nxl_agent_create("abi-old", (const nxl_agent_config_t *)&c, &a));
    XT_ASSERT(nxl_agent_listen_port(a) != 0); /* listen_thread honoured */
    XT_ASSERT_OK(nxl_backend_create(a, "TCP", NULL, &be));
    d = (nxl_desc_t){.addr = (uint64_t)(uintptr_t)buf, .len = 4096};
    dl = (nxl_dlist_t){.mem = NXL_DRAM, .descs = &d, .count = 1};
    o.backends = &be;
    o.num_backends = 1;
    XT_ASSERT_OK(nxl_mem_register(a, &dl, (const nxl_opts_t *)&o));
    /* A restriction the old struct carries is read: no such backend. */
    o.num_backends = 1;
    o.backends = NULL;
    XT_ASSERT_STATUS(nxl_mem_deregister(a, &dl, (const nxl_opts_t *)&o),
                     NXL_ERR_INVALID_PARAM);
    o.backends = &be;
    XT_ASSERT_OK(nxl_mem_deregister(a, &dl, (const nxl_opts_t *)&o));
    nxl_agent_destroy(a);
    free(buf);
    return 0;
}

/* A struct not filled by _init (size 0) is refused with a message that
 * says what to do; so are an opts and a kv config. */
static int
t_size_zero_refused(void)
{
    nxl_agent_config_t c;
    nxl_opts_t o;
    nxl_kv_ctx_config_t kc;
    nxl_agent_t *a = NULL;
    nxl_kv_agent_t *ka = NULL;
    nxl_kv_ctx_t *ctx = NULL;
    nxl_blob_t b = {0};

    nxl_agent_config_init(&c);
    c.size = 0;
    XT_ASSERT_STATUS(nxl_agent_create("abi-zero", &c, &a),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "_init") != NULL);
    XT_ASSERT(a == NULL);
    c.size = NXL_AGENT_CONFIG_V1_SIZE - 1;
    XT_ASSERT_STATUS(nxl_agent_create("abi-zero", &c, &a),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_OK(nxl_agent_create("abi-zero", NULL, &a));
    memset(&o, 0, sizeof(o));
    o.port = 8888;
    XT_ASSERT_STATUS(nxl_md_local_partial(a, NULL, &o, &b),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "md_local_partial: opts") != NULL);
    nxl_agent_destroy(a);

    XT_ASSERT_OK(nxl_kv_agent_create("abi-kv", NULL, &ka));
    nxl_kv_ctx_config_init(&kc);
    kc.size = 0;
    XT_ASSERT_STATUS(nxl_kv_ctx_create(ka, &kc, &ctx), NXL_ERR_INVALID_PARAM);
    XT_ASSERT(ctx == NULL);
    nxl_kv_agent_destroy(ka);
    return 0;
}

/* A newer program's larger struct: unknown bytes that are zero (fields
 * left at their defaults) are fine; a set one is NOT_SUPPORTED, since
 * this library cannot honour an option it does not know. */
static int
t_newer_layout(void)
{
    struct {
        nxl_agent_config_t c;
        uint64_t later[4];
    } big;
    nxl_agent_t *a = NULL;

    memset(&big, 0, sizeof(big));
    nxl_agent_config_init(&big.c);
    big.c.size = sizeof(big);
    XT_ASSERT_OK(nxl_agent_create("abi-new", &big.c, &a));
    nxl_agent_destroy(a);
    a = NULL;
    big.later[2] = 1;
    XT_ASSERT_STATUS(nxl_agent_create("abi-new", &big.c, &a),
                     NXL_ERR_NOT_SUPPORTED);
    XT_ASSERT(strstr(nxl_last_error(), nxl_version()) != NULL);
    XT_ASSERT(a == NULL);
    return 0;
}

/* nxl__abi_in itself, with a struct that grew: a caller built against the
 * shorter layout gets the defaults of the fields it lacks. */
typedef struct toy_v1 {
    uint32_t size;
    int a;
    int b;
} toy_v1;
typedef struct toy_v2 {
    uint32_t size;
    int a;
    int b;
    int added;        /* default 7 */
    const char *name; /* default "dflt" */
} toy_v2;

static int
t_shorter_layout_gets_defaults(void)
{
    toy_v1 old = {.size = sizeof(toy_v1), .a = 1, .b = 2};
    toy_v2 cur = {.size = sizeof(toy_v2), .added = 7, .name = "dflt"};

    XT_ASSERT_OK(nxl__abi_in(&cur, sizeof(cur), &old, sizeof(toy_v1), "toy"));
    XT_ASSERT_EQ(cur.size, sizeof(toy_v2));
    XT_ASSERT_EQ(cur.a, 1);
    XT_ASSERT_EQ(cur.b, 2);
    XT_ASSERT_EQ(cur.added, 7);
    XT_ASSERT_STR(cur.name, "dflt");
    old.size = sizeof(toy_v1) - 4;
    XT_ASSERT_STATUS(
        nxl__abi_in(&cur, sizeof(cur), &old, sizeof(toy_v1), "toy"),
        NXL_ERR_INVALID_PARAM);
    return 0;
}

const xt_suite xt_suite_abi = {
    .name = "abi",
    .cases =
        (const xt_case[]){
            {"init_sets_size", t_init_sets_size},
            {"old_program_runs", t_old_program_runs},
            {"size_zero_refused", t_size_zero_refused},
            {"newer_layout", t_newer_layout},
            {"shorter_layout_gets_defaults", t_shorter_layout_gets_defaults},
            {NULL, NULL},
        },
};
