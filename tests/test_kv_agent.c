/* test_kv_agent.c - the KV agent wrapper (Dynamo's NixlAgent): backend
 * tracking, strict and lenient constructors, params and their errors. */
#include "harness.h"

#include <nxl/nxl_kv.h>

/* have_ucx: 1 when this build has the UCX backend. */
static int
have_ucx(void)
{
    nxl_plugin_info_t info;

    return nxl_plugin_info("UCX", &info) == NXL_OK;
}

/* Dynamo's test_agent_backend_tracking, over SHM and POSIX. */
static int
t_tracking(void)
{
    const char *names[] = {"shm", "Posix"};
    nxl_kv_agent_t *a;

    XT_ASSERT_OK(nxl_kv_agent_with_backends("kv-agent-test", names, 2, &a));
    XT_ASSERT_STR(nxl_kv_agent_name(a), "kv-agent-test");
    XT_ASSERT(nxl_kv_agent_raw(a) != NULL);
    XT_ASSERT_EQ(nxl_kv_agent_backend_count(a), 2);
    XT_ASSERT_STR(nxl_kv_agent_backend_name(a, 0), "POSIX");
    XT_ASSERT_STR(nxl_kv_agent_backend_name(a, 1), "SHM");
    XT_ASSERT(nxl_kv_agent_backend_name(a, 2) == NULL);
    XT_ASSERT(nxl_kv_agent_has_backend(a, "SHM"));
    XT_ASSERT(nxl_kv_agent_has_backend(a, "shm"));
    XT_ASSERT(nxl_kv_agent_has_backend(a, "pOsIx"));
    XT_ASSERT(!nxl_kv_agent_has_backend(a, "UCX"));
    XT_ASSERT(!nxl_kv_agent_has_backend(a, "SH"));
    /* The backends really exist on the raw agent. */
    XT_ASSERT(nxl_backend_get(nxl_kv_agent_raw(a), "SHM") != NULL);
    XT_ASSERT(nxl_backend_get(nxl_kv_agent_raw(a), "POSIX") != NULL);
    XT_ASSERT(nxl_backend_get(nxl_kv_agent_raw(a), "TCP") == NULL);
    nxl_kv_agent_destroy(a);
    nxl_kv_agent_destroy(NULL);
    return xt_leaks();
}

/* Dynamo's tests 1 and 2 with the real UCX backend. */
static int
t_ucx_tracking_and_require(void)
{
    const char *names[] = {"UCX"};
    nxl_kv_agent_t *a;
    nxl_status_t st;

    XT_SKIP_IF(!have_ucx(), "UCX backend not built");
    st = nxl_kv_agent_with_backends("test", names, 1, &a);
    XT_SKIP_IF(st != NXL_OK, "UCX backend cannot start here: %s",
               nxl_last_error());
    XT_ASSERT(nxl_kv_agent_has_backend(a, "UCX"));
    XT_ASSERT(nxl_kv_agent_has_backend(a, "ucx"));
    XT_ASSERT_OK(nxl_kv_agent_require_backend(a, "UCX"));
    XT_ASSERT_OK(nxl_kv_agent_require_backend(a, "ucx"));
    XT_ASSERT_STATUS(nxl_kv_agent_require_backend(a, "GDS_MT"),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_STR(nxl_last_error(),
                  "Operation requires GDS_MT backend, but it was not "
                  "initialized. Available backends: {\"UCX\"}");
    nxl_kv_agent_destroy(a);
    return xt_leaks();
}

static int
t_require_message(void)
{
    const char *names[] = {"SHM", "POSIX"};
    nxl_kv_agent_t *a;

    XT_ASSERT_OK(nxl_kv_agent_with_backends("req", NULL, 0, &a));
    XT_ASSERT_EQ(nxl_kv_agent_backend_count(a), 0);
    XT_ASSERT_STATUS(nxl_kv_agent_require_backend(a, "ucx"), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STR(nxl_last_error(),
                  "Operation requires UCX backend, but it was not "
                  "initialized. Available backends: {}");
    nxl_kv_agent_destroy(a);

    XT_ASSERT_OK(nxl_kv_agent_with_backends("req", names, 2, &a));
    XT_ASSERT_OK(nxl_kv_agent_require_backend(a, "Shm"));
    XT_ASSERT_STATUS(nxl_kv_agent_require_backend(a, "gds_mt"),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_STR(nxl_last_error(),
                  "Operation requires GDS_MT backend, but it was not "
                  "initialized. Available backends: {\"POSIX\", \"SHM\"}");
    nxl_kv_agent_destroy(a);
    return xt_leaks();
}

/* Dynamo's test_require_backends_strict. */
static int
t_strict(void)
{
    const char *ucx_dude[] = {"UCX", "DUDE"};
    const char *shm_dude_nope[] = {"SHM", "dude", "nope"};
    nxl_kv_agent_t *a = (nxl_kv_agent_t *)&a;

    if (have_ucx()) {
        XT_ASSERT_STATUS(nxl_kv_agent_with_backends("strict", ucx_dude, 2, &a),
                         NXL_ERR_NOT_FOUND);
        /* UCX may also fail where it cannot start; DUDE is always last. */
        XT_ASSERT(strstr(nxl_last_error(), "DUDE: No DUDE plugin found]") !=
                  NULL);
        XT_ASSERT(strncmp(nxl_last_error(),
                          "Failed to initialize required backends: [",
                          40) == 0);
        XT_ASSERT(a == (nxl_kv_agent_t *)&a);
    }
    XT_ASSERT_STATUS(nxl_kv_agent_with_backends("strict", shm_dude_nope, 3, &a),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_STR(nxl_last_error(),
                  "Failed to initialize required backends: [DUDE: No DUDE "
                  "plugin found, NOPE: No NOPE plugin found]");
    XT_ASSERT(a == (nxl_kv_agent_t *)&a);
    return xt_leaks();
}

/* Exactly the Dynamo message when UCX starts. */
static int
t_strict_ucx_exact(void)
{
    const char *ucx[] = {"UCX"}, *ucx_dude[] = {"UCX", "DUDE"};
    nxl_kv_agent_t *a;

    XT_SKIP_IF(!have_ucx(), "UCX backend not built");
    XT_SKIP_IF(nxl_kv_agent_with_backends("probe", ucx, 1, &a) != NXL_OK,
               "UCX backend cannot start here: %s", nxl_last_error());
    nxl_kv_agent_destroy(a);
    XT_ASSERT_STATUS(nxl_kv_agent_with_backends("strict", ucx_dude, 2, &a),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_STR(nxl_last_error(), "Failed to initialize required backends: "
                                    "[DUDE: No DUDE plugin found]");
    return xt_leaks();
}

static int
t_lenient(void)
{
    const char *good_bad[] = {"dude", "shm"};
    const char *all_bad[] = {"dude", "Nope"};
    nxl_kv_agent_t *a = (nxl_kv_agent_t *)&a;

    XT_ASSERT_OK(nxl_kv_agent_new_with_backends("lenient", good_bad, 2, &a));
    XT_ASSERT_EQ(nxl_kv_agent_backend_count(a), 1);
    XT_ASSERT(nxl_kv_agent_has_backend(a, "SHM"));
    XT_ASSERT(!nxl_kv_agent_has_backend(a, "DUDE"));
    nxl_kv_agent_destroy(a);

    a = (nxl_kv_agent_t *)&a;
    XT_ASSERT_STATUS(nxl_kv_agent_new_with_backends("lenient", all_bad, 2, &a),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_STR(nxl_last_error(),
                  "Failed to initialize any NIXL backends from "
                  "[\"dude\", \"Nope\"]");
    XT_ASSERT(a == (nxl_kv_agent_t *)&a);
    /* Names are quoted and escaped as Rust's {:?} prints them. */
    {
        const char *odd[] = {"x\"y", "t\tz\\"};

        XT_ASSERT_STATUS(nxl_kv_agent_new_with_backends("lenient", odd, 2, &a),
                         NXL_ERR_NOT_FOUND);
        XT_ASSERT_STR(nxl_last_error(),
                      "Failed to initialize any NIXL backends from "
                      "[\"x\\\"y\", \"t\\tz\\\\\"]");
    }
    /* An empty list always fails (Dynamo: zero backends succeeded). */
    XT_ASSERT_STATUS(nxl_kv_agent_new_with_backends("lenient", NULL, 0, &a),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(),
                  "Failed to initialize any NIXL backends from []");
    return xt_leaks();
}

static int
t_add_backend(void)
{
    static const nxl_param_t bad_key[] = {{"api", "threads"},
                                          {"bogus_key", "1"}};
    static const nxl_param_t bad_val[] = {{"api", "bogus"}};
    static const nxl_param_t good[] = {{"api", "threads"},
                                       {"num_threads", "2"}};
    nxl_params_t p;
    nxl_kv_agent_t *a;
    nxl_status_t st;

    XT_ASSERT_OK(nxl_kv_agent_create("add", NULL, &a));
    XT_ASSERT_STATUS(nxl_kv_agent_add_backend(a, "dude", NULL),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_STR(nxl_last_error(), "No DUDE plugin found");

    /* Idempotent, any case. */
    XT_ASSERT_OK(nxl_kv_agent_add_backend(a, "shm", NULL));
    XT_ASSERT_OK(nxl_kv_agent_add_backend(a, "SHM", NULL));
    XT_ASSERT_OK(nxl_kv_agent_add_backend(a, "Shm", NULL));
    XT_ASSERT_EQ(nxl_kv_agent_backend_count(a), 1);

    /* A key the plugin does not know. */
    p = (nxl_params_t){bad_key, 2};
    XT_ASSERT_STATUS(nxl_kv_agent_add_backend(a, "posix", &p),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(), "Failed to set param: bogus_key");
    XT_ASSERT(!nxl_kv_agent_has_backend(a, "POSIX"));

    /* Custom values reach the backend: a bad one fails its init. */
    p = (nxl_params_t){bad_val, 1};
    st = nxl_kv_agent_add_backend(a, "posix", &p);
    XT_ASSERT(st != NXL_OK);
    XT_ASSERT(
        strncmp(nxl_last_error(), "Failed to create nixl backend: ", 31) == 0);
    XT_ASSERT(strlen(nxl_last_error()) > 31);
    XT_ASSERT(!nxl_kv_agent_has_backend(a, "POSIX"));

    /* Good custom values over the defaults. */
    p = (nxl_params_t){good, 2};
    XT_ASSERT_OK(nxl_kv_agent_add_backend(a, "posix", &p));
    XT_ASSERT(nxl_kv_agent_has_backend(a, "POSIX"));
    XT_ASSERT_EQ(nxl_kv_agent_backend_count(a), 2);
    XT_ASSERT_STATUS(nxl_kv_agent_add_backend(a, "", NULL),
                     NXL_ERR_INVALID_PARAM);
    nxl_kv_agent_destroy(a);
    return xt_leaks();
}

static int
t_from_config(void)
{
    nxl_kv_config_t *cfg;
    nxl_kv_agent_t *a;
    char *env[] = {"DYN_KVBM_NIXL_BACKEND_SHM=true",
                   "DYN_KVBM_NIXL_BACKEND_POSIX_API=threads",
                   "DYN_KVBM_NIXL_BACKEND_POSIX_NUM_THREADS=2", NULL};
    char *env_bad[] = {"DYN_KVBM_NIXL_BACKEND_TCP_NOT_A_KEY=1", NULL};

    XT_ASSERT_OK(nxl_kv_config_create(&cfg));
    XT_ASSERT_OK(nxl_kv_config_add_backend(cfg, "shm"));
    XT_ASSERT_OK(nxl_kv_config_set_param(cfg, "posix", "api", "threads"));
    XT_ASSERT_OK(nxl_kv_agent_from_config("cfg", cfg, 1, &a));
    XT_ASSERT_EQ(nxl_kv_agent_backend_count(a), 2);
    XT_ASSERT(nxl_kv_agent_has_backend(a, "posix"));
    XT_ASSERT(nxl_kv_agent_has_backend(a, "shm"));
    nxl_kv_agent_destroy(a);

    /* Strict fails on the bad one; lenient keeps the rest. */
    XT_ASSERT_OK(nxl_kv_config_set_param(cfg, "posix", "api", "bogus"));
    XT_ASSERT_OK(nxl_kv_config_add_backend(cfg, "dude"));
    XT_ASSERT(nxl_kv_agent_from_config("cfg", cfg, 1, &a) != NXL_OK);
    XT_ASSERT(strncmp(nxl_last_error(),
                      "Failed to initialize required backends: [DUDE: No "
                      "DUDE plugin found, POSIX: Failed to create nixl "
                      "backend: ",
                      107) == 0);
    XT_ASSERT_OK(nxl_kv_agent_from_config("cfg", cfg, 0, &a));
    XT_ASSERT_EQ(nxl_kv_agent_backend_count(a), 1);
    XT_ASSERT(nxl_kv_agent_has_backend(a, "SHM"));
    nxl_kv_agent_destroy(a);
    nxl_kv_config_destroy(cfg);

    /* From the environment. */
    XT_ASSERT_OK(nxl_kv_config_from_env(env, &cfg));
    XT_ASSERT_OK(nxl_kv_agent_from_config("env", cfg, 1, &a));
    XT_ASSERT_STR(nxl_kv_agent_backend_name(a, 0), "POSIX");
    XT_ASSERT_STR(nxl_kv_agent_backend_name(a, 1), "SHM");
    nxl_kv_agent_destroy(a);
    nxl_kv_config_destroy(cfg);
    XT_ASSERT_OK(nxl_kv_config_from_env(env_bad, &cfg));
    XT_ASSERT_STATUS(nxl_kv_agent_from_config("env", cfg, 1, &a),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STR(nxl_last_error(), "Failed to initialize required backends: "
                                    "[TCP: Failed to set param: not_a_key]");
    nxl_kv_config_destroy(cfg);
    return xt_leaks();
}

const xt_suite xt_suite_kv_agent = {
    .name = "kv_agent",
    .cases =
        (const xt_case[]){
            {"tracking", t_tracking},
            {"ucx_tracking_and_require", t_ucx_tracking_and_require},
            {"require_message", t_require_message},
            {"strict", t_strict},
            {"strict_ucx_exact", t_strict_ucx_exact},
            {"lenient", t_lenient},
            {"add_backend", t_add_backend},
            {"from_config", t_from_config},
            {NULL, NULL},
        },
    .timeout_s = 30,
};
