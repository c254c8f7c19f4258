/* test_kv_config.c - backend config (Dynamo's NixlBackendConfig): the
 * builder API, parse_bool and the DYN_KVBM_NIXL_BACKEND_* environment. */
#include "harness.h"

#include <nxl/nxl_kv.h>

#include <stdlib.h>

/* param_of returns the value of key for backend name in cfg, or NULL. */
static const char *
param_of(const nxl_kv_config_t *cfg, const char *name, const char *key)
{
    const char *n;
    nxl_params_t ps;
    size_t i, j;

    for (i = 0; i < nxl_kv_config_count(cfg); i++) {
        if (nxl_kv_config_backend(cfg, i, &n, &ps) != NXL_OK) {
            return NULL;
        }
        if (strcmp(n, name) != 0) {
            continue;
        }
        for (j = 0; j < ps.count; j++) {
            if (strcmp(ps.items[j].key, key) == 0) {
                return ps.items[j].value;
            }
        }
    }
    return NULL;
}

/* nparams_of returns the param count of backend name, or -1. */
static long
nparams_of(const nxl_kv_config_t *cfg, const char *name)
{
    const char *n;
    nxl_params_t ps;
    size_t i;

    for (i = 0; i < nxl_kv_config_count(cfg); i++) {
        if (nxl_kv_config_backend(cfg, i, &n, &ps) == NXL_OK &&
            strcmp(n, name) == 0) {
            return (long)ps.count;
        }
    }
    return -1;
}

static int
t_parse_bool(void)
{
    static const char *const yes[] = {"1",  "true", "TRUE", "True", "on",
                                      "On", "ON",   "yes",  "YES",  "yEs"};
    static const char *const no[] = {"0",   "false", "FALSE", "False", "off",
                                     "OFF", "Off",   "no",    "NO",    "nO"};
    size_t i;
    int v;

    for (i = 0; i < (sizeof(yes) / sizeof(yes[0])); i++) {
        v = 7;
        XT_ASSERT_OK(nxl_kv_parse_bool(yes[i], &v));
        XT_ASSERT_EQ(v, 1);
    }
    for (i = 0; i < (sizeof(no) / sizeof(no[0])); i++) {
        v = 7;
        XT_ASSERT_OK(nxl_kv_parse_bool(no[i], &v));
        XT_ASSERT_EQ(v, 0);
    }
    v = 7;
    XT_ASSERT_STATUS(nxl_kv_parse_bool("maybe", &v), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Invalid boolean value: 'maybe'. Expected one of: "
                  "true/false, 1/0, on/off, yes/no");
    XT_ASSERT_EQ(v, 7);
    XT_ASSERT_STATUS(nxl_kv_parse_bool("", &v), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_kv_parse_bool(" true", &v), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_kv_parse_bool("2", &v), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_kv_parse_bool("y", &v), NXL_ERR_INVALID_PARAM);
    return xt_leaks();
}

/* Dynamo: test_new_config_is_empty, test_default_has_ucx. */
static int
t_new_is_empty(void)
{
    nxl_kv_config_t *cfg;
    const char *name;
    nxl_params_t ps;

    XT_ASSERT_OK(nxl_kv_config_create(&cfg));
    XT_ASSERT_EQ(nxl_kv_config_count(cfg), 0);
    XT_ASSERT(!nxl_kv_config_has_backend(cfg, "UCX"));
    XT_ASSERT_STATUS(nxl_kv_config_backend(cfg, 0, &name, &ps),
                     NXL_ERR_INVALID_PARAM);
    nxl_kv_config_destroy(cfg);
    nxl_kv_config_destroy(NULL);
    return xt_leaks();
}

/* Dynamo: test_with_backend, test_backend_name_case_insensitive. */
static int
t_with_backend_case(void)
{
    nxl_kv_config_t *cfg;
    const char *name;
    nxl_params_t ps;

    XT_ASSERT_OK(nxl_kv_config_create(&cfg));
    XT_ASSERT_OK(nxl_kv_config_add_backend(cfg, "ucx"));
    XT_ASSERT_OK(nxl_kv_config_add_backend(cfg, "Gds_mt"));
    XT_ASSERT_OK(nxl_kv_config_add_backend(cfg, "OTHER"));
    XT_ASSERT(nxl_kv_config_has_backend(cfg, "ucx"));
    XT_ASSERT(nxl_kv_config_has_backend(cfg, "UCX"));
    XT_ASSERT(nxl_kv_config_has_backend(cfg, "gds_mt"));
    XT_ASSERT(nxl_kv_config_has_backend(cfg, "GDS_MT"));
    XT_ASSERT(nxl_kv_config_has_backend(cfg, "other"));
    XT_ASSERT(nxl_kv_config_has_backend(cfg, "OTHER"));
    XT_ASSERT(!nxl_kv_config_has_backend(cfg, "gds"));
    XT_ASSERT_EQ(nxl_kv_config_count(cfg), 3);
    /* Stored uppercase, sorted by name. */
    XT_ASSERT_OK(nxl_kv_config_backend(cfg, 0, &name, &ps));
    XT_ASSERT_STR(name, "GDS_MT");
    XT_ASSERT_OK(nxl_kv_config_backend(cfg, 1, &name, &ps));
    XT_ASSERT_STR(name, "OTHER");
    XT_ASSERT_OK(nxl_kv_config_backend(cfg, 2, &name, &ps));
    XT_ASSERT_STR(name, "UCX");
    XT_ASSERT_EQ(ps.count, 0);
    /* Adding again (any case) neither duplicates nor drops params. */
    XT_ASSERT_OK(nxl_kv_config_set_param(cfg, "Ucx", "device_list", "mlx5_0"));
    XT_ASSERT_OK(nxl_kv_config_add_backend(cfg, "UCX"));
    XT_ASSERT_EQ(nxl_kv_config_count(cfg), 3);
    XT_ASSERT_STR(param_of(cfg, "UCX", "device_list"), "mlx5_0");
    XT_ASSERT_STATUS(nxl_kv_config_add_backend(cfg, ""), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_kv_config_set_param(cfg, "UCX", "", "x"),
                     NXL_ERR_INVALID_PARAM);
    nxl_kv_config_destroy(cfg);
    return xt_leaks();
}

/* Dynamo: test_with_backend_params, test_iter. */
static int
t_params_and_iter(void)
{
    nxl_kv_config_t *cfg;
    const char *name;
    nxl_params_t ps;

    XT_ASSERT_OK(nxl_kv_config_create(&cfg));
    XT_ASSERT_OK(nxl_kv_config_add_backend(cfg, "UCX"));
    XT_ASSERT_OK(nxl_kv_config_set_param(cfg, "GDS", "threads", "4"));
    XT_ASSERT_OK(nxl_kv_config_set_param(cfg, "gds", "buffer_size", "1048576"));
    XT_ASSERT_EQ(nparams_of(cfg, "UCX"), 0);
    XT_ASSERT_EQ(nparams_of(cfg, "GDS"), 2);
    XT_ASSERT_STR(param_of(cfg, "GDS", "threads"), "4");
    XT_ASSERT_STR(param_of(cfg, "GDS", "buffer_size"), "1048576");
    /* A later set replaces the value; keys keep their case. */
    XT_ASSERT_OK(nxl_kv_config_set_param(cfg, "GDS", "threads", "8"));
    XT_ASSERT_OK(nxl_kv_config_set_param(cfg, "GDS", "Threads", "1"));
    XT_ASSERT_STR(param_of(cfg, "GDS", "threads"), "8");
    XT_ASSERT_STR(param_of(cfg, "GDS", "Threads"), "1");
    XT_ASSERT_EQ(nparams_of(cfg, "GDS"), 3);
    /* iter: two items. */
    XT_ASSERT_EQ(nxl_kv_config_count(cfg), 2);
    XT_ASSERT_OK(nxl_kv_config_backend(cfg, 0, &name, &ps));
    XT_ASSERT_STR(name, "GDS");
    XT_ASSERT_EQ(ps.count, 3);
    XT_ASSERT_OK(nxl_kv_config_backend(cfg, 1, &name, &ps));
    XT_ASSERT_STR(name, "UCX");
    XT_ASSERT_STATUS(nxl_kv_config_backend(cfg, 2, &name, &ps),
                     NXL_ERR_INVALID_PARAM);
    nxl_kv_config_destroy(cfg);
    return xt_leaks();
}

/* Dynamo: test_merge_configs; src wins on a shared key. */
static int
t_merge(void)
{
    nxl_kv_config_t *a, *b;

    XT_ASSERT_OK(nxl_kv_config_create(&a));
    XT_ASSERT_OK(nxl_kv_config_create(&b));
    XT_ASSERT_OK(nxl_kv_config_add_backend(a, "ucx"));
    XT_ASSERT_OK(nxl_kv_config_set_param(a, "POSIX", "api", "threads"));
    XT_ASSERT_OK(nxl_kv_config_set_param(a, "POSIX", "queue_depth", "8"));
    XT_ASSERT_OK(nxl_kv_config_add_backend(b, "gds"));
    XT_ASSERT_OK(nxl_kv_config_set_param(b, "posix", "api", "uring"));
    XT_ASSERT_OK(nxl_kv_config_merge(a, b));
    XT_ASSERT(nxl_kv_config_has_backend(a, "ucx"));
    XT_ASSERT(nxl_kv_config_has_backend(a, "gds"));
    XT_ASSERT(nxl_kv_config_has_backend(a, "posix"));
    XT_ASSERT_EQ(nxl_kv_config_count(a), 3);
    XT_ASSERT_STR(param_of(a, "POSIX", "api"), "uring");
    XT_ASSERT_STR(param_of(a, "POSIX", "queue_depth"), "8");
    /* b is unchanged; merging a config into itself is a no-op. */
    XT_ASSERT_EQ(nxl_kv_config_count(b), 2);
    XT_ASSERT_OK(nxl_kv_config_merge(a, a));
    XT_ASSERT_EQ(nxl_kv_config_count(a), 3);
    nxl_kv_config_destroy(a);
    nxl_kv_config_destroy(b);
    return xt_leaks();
}

/* from_env over an explicit envp. */
static int
t_env_enable_disable(void)
{
    char *env[] = {
        "PATH=/bin",
        "DYN_KVBM_NIXL_BACKEND_UCX=true",
        "DYN_KVBM_NIXL_BACKEND_POSIX=yes",
        "DYN_KVBM_NIXL_BACKEND_GDS=false",
        "DYN_KVBM_NIXL_BACKEND_SHM=0",
        "DYN_KVBM_NIXL_BACKEND_TCP=On",
        "XDYN_KVBM_NIXL_BACKEND_OBJ=true",
        NULL,
    };
    nxl_kv_config_t *cfg;

    XT_ASSERT_OK(nxl_kv_config_from_env(env, &cfg));
    XT_ASSERT_EQ(nxl_kv_config_count(cfg), 3);
    XT_ASSERT(nxl_kv_config_has_backend(cfg, "UCX"));
    XT_ASSERT(nxl_kv_config_has_backend(cfg, "POSIX"));
    XT_ASSERT(nxl_kv_config_has_backend(cfg, "TCP"));
    XT_ASSERT(!nxl_kv_config_has_backend(cfg, "GDS"));
    XT_ASSERT(!nxl_kv_config_has_backend(cfg, "SHM"));
    XT_ASSERT(!nxl_kv_config_has_backend(cfg, "OBJ"));
    XT_ASSERT_EQ(nparams_of(cfg, "UCX"), 0);
    nxl_kv_config_destroy(cfg);
    return xt_leaks();
}

/* Underscore variables are params (lowercased) that enable their backend;
 * the longest known name is the backend. */
static int
t_env_params_prefix(void)
{
    char *env[] = {
        "DYN_KVBM_NIXL_BACKEND_OBJ_BUCKET=my-bucket",
        "DYN_KVBM_NIXL_BACKEND_OBJ_ENDPOINT_OVERRIDE=http://x:9000",
        "DYN_KVBM_NIXL_BACKEND_GDS_MT=true",
        "DYN_KVBM_NIXL_BACKEND_GDS_MT_THREAD_COUNT=4",
        "DYN_KVBM_NIXL_BACKEND_GDS_BATCH_POOL_SIZE=16",
        "DYN_KVBM_NIXL_BACKEND_CUSTOM_Some_Key=Mixed=Case",
        NULL,
    };
    nxl_kv_config_t *cfg;

    XT_ASSERT_OK(nxl_kv_config_from_env(env, &cfg));
    XT_ASSERT_EQ(nxl_kv_config_count(cfg), 4);
    XT_ASSERT_STR(param_of(cfg, "OBJ", "bucket"), "my-bucket");
    XT_ASSERT_STR(param_of(cfg, "OBJ", "endpoint_override"), "http://x:9000");
    XT_ASSERT_EQ(nparams_of(cfg, "OBJ"), 2);
    /* GDS_MT is a name of its own, not GDS with param "mt". */
    XT_ASSERT_STR(param_of(cfg, "GDS_MT", "thread_count"), "4");
    XT_ASSERT_EQ(nparams_of(cfg, "GDS_MT"), 1);
    XT_ASSERT_STR(param_of(cfg, "GDS", "batch_pool_size"), "16");
    XT_ASSERT_EQ(nparams_of(cfg, "GDS"), 1);
    /* Unknown names end at the first '_'; values are kept verbatim. */
    XT_ASSERT_STR(param_of(cfg, "CUSTOM", "some_key"), "Mixed=Case");
    /* UCX is not added when something is enabled. */
    XT_ASSERT(!nxl_kv_config_has_backend(cfg, "UCX"));
    nxl_kv_config_destroy(cfg);
    return xt_leaks();
}

/* Nothing enabled -> UCX; NAME=false wins over NAME_PARAM. */
static int
t_env_default_and_false(void)
{
    char *empty[] = {NULL};
    char *off[] = {
        "DYN_KVBM_NIXL_BACKEND_OBJ_BUCKET=b",
        "DYN_KVBM_NIXL_BACKEND_UCX=false",
        "DYN_KVBM_NIXL_BACKEND_OBJ=false",
        NULL,
    };
    char *order[] = {
        "DYN_KVBM_NIXL_BACKEND_POSIX=no",
        "DYN_KVBM_NIXL_BACKEND_POSIX_API=threads",
        "DYN_KVBM_NIXL_BACKEND_TCP_PORT=0",
        NULL,
    };
    nxl_kv_config_t *cfg;

    XT_ASSERT_OK(nxl_kv_config_from_env(empty, &cfg));
    XT_ASSERT_EQ(nxl_kv_config_count(cfg), 1);
    XT_ASSERT(nxl_kv_config_has_backend(cfg, "UCX"));
    nxl_kv_config_destroy(cfg);

    /* Everything disabled: still UCX (Dynamo v2's default). */
    XT_ASSERT_OK(nxl_kv_config_from_env(off, &cfg));
    XT_ASSERT_EQ(nxl_kv_config_count(cfg), 1);
    XT_ASSERT(nxl_kv_config_has_backend(cfg, "UCX"));
    XT_ASSERT(!nxl_kv_config_has_backend(cfg, "OBJ"));
    nxl_kv_config_destroy(cfg);

    /* The false comes first: order does not matter. */
    XT_ASSERT_OK(nxl_kv_config_from_env(order, &cfg));
    XT_ASSERT_EQ(nxl_kv_config_count(cfg), 1);
    XT_ASSERT(!nxl_kv_config_has_backend(cfg, "POSIX"));
    XT_ASSERT_STR(param_of(cfg, "TCP", "port"), "0");
    nxl_kv_config_destroy(cfg);
    return xt_leaks();
}

static int
t_env_bad_bool(void)
{
    char *env[] = {
        "DYN_KVBM_NIXL_BACKEND_UCX=true",
        "DYN_KVBM_NIXL_BACKEND_GDS_MT=maybe",
        NULL,
    };
    nxl_kv_config_t *cfg = (nxl_kv_config_t *)&cfg;

    XT_ASSERT_STATUS(nxl_kv_config_from_env(env, &cfg), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Invalid value for DYN_KVBM_NIXL_BACKEND_GDS_MT: Invalid "
                  "boolean value: 'maybe'. Expected one of: true/false, 1/0, "
                  "on/off, yes/no");
    XT_ASSERT(cfg == (nxl_kv_config_t *)&cfg);
    return xt_leaks();
}

/* envp NULL reads the process environment. */
static int
t_env_environ(void)
{
    nxl_kv_config_t *cfg;

    XT_ASSERT(setenv("DYN_KVBM_NIXL_BACKEND_SHM", "TRUE", 1) == 0);
    XT_ASSERT(setenv("DYN_KVBM_NIXL_BACKEND_SHM_NUM_THREADS", "2", 1) == 0);
    XT_ASSERT_OK(nxl_kv_config_from_env(NULL, &cfg));
    XT_ASSERT(nxl_kv_config_has_backend(cfg, "SHM"));
    XT_ASSERT_STR(param_of(cfg, "SHM", "num_threads"), "2");
    nxl_kv_config_destroy(cfg);
    XT_ASSERT(setenv("DYN_KVBM_NIXL_BACKEND_SHM", "nope", 1) == 0);
    XT_ASSERT_STATUS(nxl_kv_config_from_env(NULL, &cfg), NXL_ERR_INVALID_PARAM);
    return xt_leaks();
}

const xt_suite xt_suite_kv_config = {
    .name = "kv_config",
    .cases =
        (const xt_case[]){
            {"parse_bool", t_parse_bool},
            {"new_is_empty", t_new_is_empty},
            {"with_backend_case", t_with_backend_case},
            {"params_and_iter", t_params_and_iter},
            {"merge", t_merge},
            {"env_enable_disable", t_env_enable_disable},
            {"env_params_prefix", t_env_params_prefix},
            {"env_default_and_false", t_env_default_and_false},
            {"env_bad_bool", t_env_bad_bool},
            {"env_environ", t_env_environ},
            {NULL, NULL},
        },
};
