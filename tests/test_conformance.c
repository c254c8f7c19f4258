/*
 * test_conformance.c - the backend conformance suite.
 *
 * Every built-in backend runs the same cases (the suite's parameter is the
 * backend name): two processes on 127.0.0.1, a forked peer and the test
 * process, each with one agent holding only the backend under test.
 * Backends that reach other hosts (NXL_CAP_REMOTE) run the cases a second
 * time as "<NAME>@netns": each case makes a two-host rig of network
 * namespaces (tests/netns/rig.sh), the test process enters NAME-a
 * (10.77.0.1) and the peer NAME-b (10.77.0.2), and every listener, backend
 * and side-channel address is the namespace's own (cf_net, xt_conf.h);
 * without root these skip with the reason. The peer is driven through a
 * pair of pipes (a tiny command protocol, xt_conf_peer.c): it reports its
 * side-channel port and buffer addresses, fills and checks its memory,
 * waits for notifications, exchanges metadata, and can start transfers of
 * its own.
 *
 * Local storage backends (NXL_CAP_LOCAL without REMOTE, memory kinds DRAM
 * and FILE: POSIX) have no peer: the cases whose contract applies to
 * them run with the target side in a temporary file registered as
 * NXL_FILE in the test process's own agent, reached under the agent's own
 * name (cf_tgt, xt_conf_tgt.c: the same case body fills and checks a
 * peer's memory or the file). The cases that need a peer process or
 * notifications skip with the reason.
 *
 * This file is the suite: its parameters and how a case runs (directly,
 * or inside a rig). The cases are in tests/conf_<group>.c, listed once
 * in CF_CASES (xt_conf.h); their fixtures in tests/xt_conf*.c.
 *
 * Oracle: NIXL's agent semantics (reference/nixl.md §1.4, §4.2-4.5, §7 and
 * the cases of §9) and the contract in the comments of include/nxl/nxl.h.
 */
#include "xt_conf.h"

#include <errno.h>
#include <strings.h>

extern const char *const xt_backends[];

/* ---------------------------------------------------------------------- */
/* Running a case: directly, or inside a rig of network namespaces. */

/* cf_case runs one case. For "<NAME>@netns" it first makes the rig and
 * enters NAME-a (the peers cf_spawn forks enter NAME-b), then removes
 * the rig, whatever the case returned. */
static int
cf_case(xt_fn fn)
{
    xt_rig rig;
    int rc;

    cf_be();
    if (!cf_netns()) {
        return fn();
    }
    rc = xt_rig_up(&rig, "nxlcf", "");
    if (rc != 0) {
        return rc;
    }
    snprintf(cf_env.peer_ns, sizeof(cf_env.peer_ns), "%s", rig.ns_b);
    if (xt_netns_enter(rig.ns_a, true) != 0) {
        fprintf(stderr, "setns %s: %s\n", rig.ns_a, strerror(errno));
        xt_rig_down(&rig);
        return 1;
    }
    cf_env.self = XT_RIG_ADDR_A;
    cf_env.other = XT_RIG_ADDR_B;
    cf_net_params();
    rc = fn();
    xt_rig_down(&rig);
    return rc;
}

/* cf_case_<name> is what the harness runs for t_<name>. */
#define CF_WRAP(n)                                                             \
    static int cf_case_##n(void)                                               \
    {                                                                          \
        return cf_case(t_##n);                                                 \
    }
CF_CASES(CF_WRAP)
#undef CF_WRAP

/* The suite's parameters: every built-in backend, then "<NAME>@netns"
 * for those that reach other hosts (NXL_CAP_REMOTE, less the ones below).
 * Filled before main (the harness reads the list at start); the backend
 * table is static. */
#define CF_MAX_PARAMS 32
static const char *cf_params[CF_MAX_PARAMS + 1];
static char cf_netns_names[CF_MAX_PARAMS][CF_NAME_MAX];

/* REMOTE backends that serve only peers on their own host and network
 * namespace by design (SHM refuses a peer in another network namespace
 * with NXL_ERR_NOT_SUPPORTED, docs/backends/shm.md). A new REMOTE
 * backend runs across namespaces unless it is listed here. */
static const char *const cf_same_host_only[] = {"SHM", NULL};

/* cf_host_bound says whether backend be is in cf_same_host_only. */
static bool
cf_host_bound(const char *be)
{
    size_t i;

    for (i = 0; cf_same_host_only[i] != NULL; i++) {
        if (strcasecmp(be, cf_same_host_only[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* cf_params_init builds cf_params from xt_backends. */
__attribute__((constructor)) static void
cf_params_init(void)
{
    nxl_plugin_info_t info;
    size_t n = 0, k, m = 0;

    for (k = 0; xt_backends[k] != NULL && n < CF_MAX_PARAMS; k++) {
        cf_params[n++] = xt_backends[k];
    }
    for (k = 0; xt_backends[k] != NULL && n < CF_MAX_PARAMS; k++) {
        if (nxl_plugin_info(xt_backends[k], &info) == NXL_OK &&
            (info.caps & NXL_CAP_REMOTE) && !cf_host_bound(xt_backends[k])) {
            snprintf(cf_netns_names[m], CF_NAME_MAX, "%s" CF_NETNS_SUFFIX,
                     xt_backends[k]);
            cf_params[n++] = cf_netns_names[m++];
        }
    }
    cf_params[n] = NULL;
}

const xt_suite xt_suite_conformance = {
    .name = "conformance",
    .timeout_s = 60,
    .params = cf_params,
    .cases =
        (const xt_case[]){
#define CF_ENTRY(n) {#n, cf_case_##n},
            CF_CASES(CF_ENTRY)
#undef CF_ENTRY
                {NULL, NULL},
        },
};
