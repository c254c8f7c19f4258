/*
 * test_agent.c - single-process tests of the agent API that do not depend
 * on a particular transfer backend: agent life cycle, configuration and
 * option defaults, plugin discovery, backend creation, memory registration,
 * in-process metadata round trips and the side-channel listener.
 *
 * Oracle: NIXL's agent semantics (reference/nixl.md §1.4, §7) and the
 * contract in the comments of include/nxl/nxl.h.
 */
#include "harness.h"

#include <nxl/nxl_backend.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

extern const char *const xt_backends[];

/* ta_agent makes an agent with the default config and an SHM backend. */
static nxl_status_t
ta_agent(const char *name, nxl_agent_t **agent_p)
{
    nxl_agent_t *a = NULL;
    nxl_backend_t *be = NULL;
    nxl_status_t st;

    st = nxl_agent_create(name, NULL, &a);
    if (st != NXL_OK) {
        return st;
    }
    st = nxl_backend_create(a, "SHM", NULL, &be);
    if (st != NXL_OK) {
        nxl_agent_destroy(a);
        return st;
    }
    *agent_p = a;
    return NXL_OK;
}

static void *
ta_alloc(size_t len)
{
    void *p = NULL;

    if (posix_memalign(&p, 4096, len) != 0) {
        return NULL;
    }
    memset(p, 0x5a, len);
    return p;
}

/* The first notification on a new SHM stream comes out of the first
 * nxl_notifs_get after it arrived (it used to take two: one progress pass
 * accepted the stream, the next read it), for a loopback agent and for a
 * second agent in this process. */
static int
t_first_notif_first_call(void)
{
    nxl_agent_t *a = NULL, *b = NULL;
    nxl_notif_list_t *l = NULL;
    nxl_blob_t md = {0};

    XT_ASSERT_OK(ta_agent("a", &a));
    XT_ASSERT_OK(ta_agent("b", &b));
    XT_ASSERT_OK(nxl_md_local(a, &md));
    XT_ASSERT_OK(nxl_md_load(b, md.data, md.len, NULL, 0));
    XT_ASSERT_OK(nxl_notif_send(a, "a", "x0", 2, NULL));
    XT_ASSERT_OK(nxl_notif_send(b, "a", "y0", 2, NULL));
    usleep(50000);
    XT_ASSERT_OK(nxl_notifs_get(a, &l, NULL));
    XT_ASSERT(l != NULL);
    XT_ASSERT_EQ(l->count, 2);
    nxl_notif_list_free(l);
    nxl_blob_free(&md);
    nxl_agent_destroy(b);
    nxl_agent_destroy(a);
    return 0;
}

/* An empty or NULL agent name is INVALID_PARAM (NIXL throws
 * invalid_argument); the output is written only on success; the name is
 * copied; destroy accepts NULL. */
static int
t_create_destroy(void)
{
    nxl_agent_t *sentinel = (nxl_agent_t *)(uintptr_t)0x1234;
    nxl_agent_t *a = sentinel;
    char name[16] = "agent-x";

    XT_ASSERT_STATUS(nxl_agent_create("", NULL, &a), NXL_ERR_INVALID_PARAM);
    XT_ASSERT(a == sentinel);
    XT_ASSERT_STATUS(nxl_agent_create(NULL, NULL, &a), NXL_ERR_INVALID_PARAM);
    XT_ASSERT(a == sentinel);
    XT_ASSERT_STATUS(nxl_agent_create("x", NULL, NULL), NXL_ERR_INVALID_PARAM);

    XT_ASSERT_OK(nxl_agent_create(name, NULL, &a));
    XT_ASSERT(a != NULL && a != sentinel);
    name[0] = 'Z'; /* the agent must have copied the name */
    XT_ASSERT_STR(nxl_agent_name(a), "agent-x");
    /* No listener by default. */
    XT_ASSERT_EQ(nxl_agent_listen_port(a), 0);
    /* An idle agent without backends has nothing to progress. */
    XT_ASSERT_EQ(nxl_agent_progress(a), 0);
    nxl_agent_destroy(a);
    nxl_agent_destroy(NULL);

    /* Several agents coexist in one process, each with its own state. */
    {
        nxl_agent_t *b = NULL, *c = NULL;

        XT_ASSERT_OK(nxl_agent_create("b", NULL, &b));
        XT_ASSERT_OK(nxl_agent_create("c", NULL, &c));
        XT_ASSERT_STR(nxl_agent_name(b), "b");
        XT_ASSERT_STR(nxl_agent_name(c), "c");
        nxl_agent_destroy(c);
        nxl_agent_destroy(b);
    }
    return 0;
}

/* nxl_agent_config_init gives NIXL's defaults: no progress thread, no
 * listener, port 8888, sync NONE, no telemetry. */
static int
t_config_defaults(void)
{
    nxl_agent_config_t cfg;
    nxl_agent_t *a = NULL;

    memset(&cfg, 0xab, sizeof(cfg));
    nxl_agent_config_init(&cfg);
    XT_ASSERT_EQ(cfg.progress_thread, 0);
    XT_ASSERT_EQ(cfg.listen_thread, 0);
    XT_ASSERT_EQ(cfg.listen_port, 8888);
    XT_ASSERT(cfg.listen_addr == NULL);
    XT_ASSERT_EQ(cfg.sync_mode, NXL_SYNC_NONE);
    XT_ASSERT_EQ(cfg.capture_telemetry, 0);

    /* Every sync mode is accepted. */
    cfg.sync_mode = NXL_SYNC_STRICT;
    XT_ASSERT_OK(nxl_agent_create("strict", &cfg, &a));
    nxl_agent_destroy(a);
    cfg.sync_mode = NXL_SYNC_RW;
    XT_ASSERT_OK(nxl_agent_create("rw", &cfg, &a));
    nxl_agent_destroy(a);
    return 0;
}

/* nxl_opts_init: nothing set, port 8888 (NIXL's default extra params). */
static int
t_opts_defaults(void)
{
    nxl_opts_t o;

    memset(&o, 0xab, sizeof(o));
    nxl_opts_init(&o);
    XT_ASSERT(o.backends == NULL);
    XT_ASSERT_EQ(o.num_backends, 0);
    XT_ASSERT_EQ(o.has_notif, 0);
    XT_ASSERT(o.notif == NULL);
    XT_ASSERT_EQ(o.notif_len, 0);
    XT_ASSERT(o.ip_addr == NULL);
    XT_ASSERT_EQ(o.port, 8888);
    XT_ASSERT(o.label == NULL);
    XT_ASSERT_EQ(o.include_conn_info, 0);
    XT_ASSERT_EQ(o.skip_merge, 0);
    XT_ASSERT_EQ(o.timeout_ms, 0);
    return 0;
}

/* nxl_plugin_names lists the built-in backends (SHM always); a size query
 * with cap 0 reports the count; a short array is filled up to cap. */
static int
t_plugin_names(void)
{
    const char *names[64];
    size_t n = 0, n0 = 0, i, k;
    int found;

    XT_ASSERT_OK(nxl_plugin_names(names, 64, &n));
    XT_ASSERT(n >= 1 && n <= 64);
    for (k = 0; xt_backends[k] != NULL; k++) {
        found = 0;
        for (i = 0; i < n; i++) {
            XT_ASSERT(names[i] != NULL && names[i][0] != '\0');
            if (strcasecmp(names[i], xt_backends[k]) == 0) {
                found = 1;
            }
        }
        if (!found) {
            XT_FAILF("built-in backend %s not listed", xt_backends[k]);
        }
    }
    found = 0;
    for (i = 0; i < n; i++) {
        found |= strcmp(names[i], "SHM") == 0;
    }
    XT_ASSERT(found);

    XT_ASSERT_OK(nxl_plugin_names(NULL, 0, &n0));
    XT_ASSERT_EQ(n0, n);
    if (n > 1) {
        const char *one[1] = {NULL};

        XT_ASSERT_OK(nxl_plugin_names(one, 1, &n0));
        XT_ASSERT_EQ(n0, n);
        XT_ASSERT(one[0] != NULL);
    }
    XT_ASSERT_STATUS(nxl_plugin_names(names, 64, NULL), NXL_ERR_INVALID_PARAM);
    return 0;
}

/* nxl_plugin_info describes each backend type, case-insensitively; an
 * unknown type is NOT_FOUND and leaves the output untouched. A backend that
 * supports REMOTE must support NOTIF (NIXL's createBackend rule). */
static int
t_plugin_info(void)
{
    nxl_plugin_info_t info, before;
    size_t k, i;

    XT_ASSERT_OK(nxl_plugin_info("SHM", &info));
    XT_ASSERT_STR(info.name, "SHM");
    XT_ASSERT(info.mem_kinds & (1u << NXL_DRAM));
    XT_ASSERT(info.caps & NXL_CAP_NOTIF);
    XT_ASSERT(info.caps & (NXL_CAP_LOCAL | NXL_CAP_REMOTE));
    XT_ASSERT(info.num_defaults == 0 || info.defaults != NULL);

    memset(&info, 0, sizeof(info));
    XT_ASSERT_OK(nxl_plugin_info("shm", &info));
    XT_ASSERT_STR(info.name, "SHM");

    for (k = 0; xt_backends[k] != NULL; k++) {
        XT_ASSERT_OK(nxl_plugin_info(xt_backends[k], &info));
        XT_ASSERT(strcasecmp(info.name, xt_backends[k]) == 0);
        XT_ASSERT(info.mem_kinds != 0);
        XT_ASSERT(info.caps & (NXL_CAP_LOCAL | NXL_CAP_REMOTE));
        if (info.caps & NXL_CAP_REMOTE) {
            XT_ASSERT(info.caps & NXL_CAP_NOTIF);
        }
        for (i = 0; i < info.num_defaults; i++) {
            XT_ASSERT(info.defaults[i].key != NULL);
            XT_ASSERT(info.defaults[i].key[0] != '\0');
            XT_ASSERT(info.defaults[i].value != NULL);
        }
    }

    memset(&before, 0x5c, sizeof(before));
    memcpy(&info, &before, sizeof(info));
    XT_ASSERT_STATUS(nxl_plugin_info("NO_SUCH_BACKEND", &info),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT(memcmp(&info, &before, sizeof(info)) == 0);
    XT_ASSERT_STATUS(nxl_plugin_info(NULL, &info), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_plugin_info("SHM", NULL), NXL_ERR_INVALID_PARAM);
    return 0;
}

/* One backend per type per agent (second create INVALID_PARAM, also with a
 * different case); unknown type NOT_FOUND; unknown param key
 * INVALID_PARAM; the documented defaults are accepted back as params. */
static int
t_backend_create(void)
{
    nxl_agent_t *a = NULL, *b = NULL;
    nxl_backend_t *be = NULL, *be2 = NULL;
    nxl_plugin_info_t info;
    nxl_params_t params;
    nxl_param_t bad = {"no_such_key", "1"};

    XT_ASSERT_OK(nxl_agent_create("a", NULL, &a));
    XT_ASSERT(nxl_backend_get(a, "SHM") == NULL);
    XT_ASSERT_STATUS(nxl_backend_create(a, "NO_SUCH", NULL, &be),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT(be == NULL);
    XT_ASSERT_STATUS(nxl_backend_create(a, NULL, NULL, &be),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_backend_create(NULL, "SHM", NULL, &be),
                     NXL_ERR_INVALID_PARAM);

    /* An unknown key fails and leaves no backend behind. */
    params.items = &bad;
    params.count = 1;
    XT_ASSERT_STATUS(nxl_backend_create(a, "SHM", &params, &be),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT(nxl_backend_get(a, "SHM") == NULL);

    XT_ASSERT_OK(nxl_backend_create(a, "SHM", NULL, &be));
    XT_ASSERT(be != NULL);
    XT_ASSERT_STR(nxl_backend_name(be), "SHM");
    XT_ASSERT(nxl_backend_get(a, "SHM") == be);
    XT_ASSERT(nxl_backend_get(a, "shm") == be);
    XT_ASSERT_STATUS(nxl_backend_create(a, "SHM", NULL, &be2),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT(be2 == NULL);
    XT_ASSERT_STATUS(nxl_backend_create(a, "shm", NULL, &be2),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT(nxl_backend_get(a, "SHM") == be);

    /* The defaults nxl_plugin_info reports are valid params. */
    XT_ASSERT_OK(nxl_plugin_info("SHM", &info));
    XT_ASSERT_OK(nxl_agent_create("b", NULL, &b));
    params.items = info.defaults;
    params.count = info.num_defaults;
    XT_ASSERT_OK(nxl_backend_create(b, "SHM", &params, &be2));
    XT_ASSERT(be2 != NULL && be2 != be);
    XT_ASSERT(nxl_backend_get(b, "SHM") == be2);

    nxl_agent_destroy(b);
    nxl_agent_destroy(a);
    return 0;
}

/* Registration: exact-match deregistration, double registration
 * NOT_ALLOWED, zero length INVALID_PARAM, unknown deregistration NOT_FOUND,
 * a failing batch leaves nothing registered, a kind no backend takes is
 * NOT_SUPPORTED, and register/deregister repeats (NIXL agent.cpp). */
static int
t_register(void)
{
    nxl_agent_t *a = NULL, *bare = NULL;
    nxl_backend_t *be;
    uint8_t *buf = ta_alloc(1 << 20);
    nxl_desc_t d[3], z;
    nxl_dlist_t dl, zl, one;
    nxl_opts_t o;
    int i;

    XT_ASSERT(buf != NULL);
    XT_ASSERT_OK(ta_agent("a", &a));
    be = nxl_backend_get(a, "SHM");
    XT_ASSERT(be != NULL);

    d[0] = (nxl_desc_t){(uintptr_t)buf, 4096, 0};
    d[1] = (nxl_desc_t){(uintptr_t)buf + 65536, 8192, 0};
    d[2] = (nxl_desc_t){(uintptr_t)buf + 131072, 100, 0};
    one = (nxl_dlist_t){NXL_DRAM, d, 1};
    dl = (nxl_dlist_t){NXL_DRAM, d, 3};

    XT_ASSERT_OK(nxl_mem_register(a, &one, NULL));
    XT_ASSERT_STATUS(nxl_mem_register(a, &one, NULL), NXL_ERR_NOT_ALLOWED);

    /* Deregistration needs the exact descriptor. */
    z = (nxl_desc_t){(uintptr_t)buf, 2048, 0};
    zl = (nxl_dlist_t){NXL_DRAM, &z, 1};
    XT_ASSERT_STATUS(nxl_mem_deregister(a, &zl, NULL), NXL_ERR_NOT_FOUND);
    z = (nxl_desc_t){(uintptr_t)buf + 1, 4096, 0};
    XT_ASSERT_STATUS(nxl_mem_deregister(a, &zl, NULL), NXL_ERR_NOT_FOUND);
    z = (nxl_desc_t){(uintptr_t)buf, 4096, 1};
    XT_ASSERT_STATUS(nxl_mem_deregister(a, &zl, NULL), NXL_ERR_NOT_FOUND);
    XT_ASSERT_OK(nxl_mem_deregister(a, &one, NULL));
    XT_ASSERT_STATUS(nxl_mem_deregister(a, &one, NULL), NXL_ERR_NOT_FOUND);

    /* Zero length and NULL arguments. */
    z = (nxl_desc_t){(uintptr_t)buf, 0, 0};
    XT_ASSERT_STATUS(nxl_mem_register(a, &zl, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_mem_register(a, NULL, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_mem_register(NULL, &one, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_mem_deregister(a, NULL, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_mem_deregister(NULL, &one, NULL),
                     NXL_ERR_INVALID_PARAM);
    {
        nxl_dlist_t nd = {NXL_DRAM, NULL, 1};

        XT_ASSERT_STATUS(nxl_mem_register(a, &nd, NULL), NXL_ERR_INVALID_PARAM);
    }

    /* A batch with one bad descriptor fails as a whole: the good ones are
     * not left registered. */
    {
        nxl_desc_t mix[2] = {{(uintptr_t)buf, 4096, 0},
                             {(uintptr_t)buf + 8192, 0, 0}};
        nxl_dlist_t ml = {NXL_DRAM, mix, 2};

        XT_ASSERT(nxl_mem_register(a, &ml, NULL) < 0);
        XT_ASSERT(nxl_last_error()[0] != '\0');
        XT_ASSERT_OK(nxl_mem_register(a, &one, NULL));
        XT_ASSERT_OK(nxl_mem_deregister(a, &one, NULL));
    }

    /* Batches, repeated. */
    for (i = 0; i < 20; i++) {
        XT_ASSERT_OK(nxl_mem_register(a, &dl, NULL));
        XT_ASSERT_OK(nxl_mem_deregister(a, &dl, NULL));
    }

    /* Restricting to a backend the agent has. */
    nxl_opts_init(&o);
    o.backends = &be;
    o.num_backends = 1;
    XT_ASSERT_OK(nxl_mem_register(a, &dl, &o));
    XT_ASSERT_OK(nxl_mem_deregister(a, &dl, &o));

    /* A kind no backend takes, and an agent with no backend. */
    {
        nxl_plugin_info_t info;

        XT_ASSERT_OK(nxl_plugin_info("SHM", &info));
        if (!(info.mem_kinds & (1u << NXL_OBJ))) {
            nxl_dlist_t ol = {NXL_OBJ, d, 1};

            XT_ASSERT_STATUS(nxl_mem_register(a, &ol, NULL),
                             NXL_ERR_NOT_SUPPORTED);
        }
    }
    XT_ASSERT_OK(nxl_agent_create("bare", NULL, &bare));
    XT_ASSERT_STATUS(nxl_mem_register(bare, &one, NULL), NXL_ERR_NOT_SUPPORTED);
    nxl_agent_destroy(bare);

    /* Destroy deregisters what is still registered. */
    XT_ASSERT_OK(nxl_mem_register(a, &dl, NULL));
    nxl_agent_destroy(a);
    free(buf);
    return 0;
}

/* A backend created after a region was registered takes no part in that
 * region (the region's record has no entry for it): a list over it
 * prepared for the new backend is NOT_FOUND, one for the old backend and
 * one over a region registered after the new backend both resolve, and
 * metadata, deregistration and destroy handle both regions. */
static int
t_backend_after_register(void)
{
    nxl_agent_t *a = NULL;
    nxl_backend_t *shm, *tcp = NULL;
    nxl_prepped_t *pp = NULL;
    uint8_t *buf = ta_alloc(1 << 16);
    nxl_blob_t md = {0};
    nxl_desc_t d[2];
    nxl_dlist_t early, late;
    nxl_opts_t o;

    XT_ASSERT(buf != NULL);
    XT_ASSERT_OK(ta_agent("a", &a));
    shm = nxl_backend_get(a, "SHM");
    XT_ASSERT(shm != NULL);
    d[0] = (nxl_desc_t){(uintptr_t)buf, 4096, 0};
    d[1] = (nxl_desc_t){(uintptr_t)buf + 8192, 4096, 0};
    early = (nxl_dlist_t){NXL_DRAM, &d[0], 1};
    late = (nxl_dlist_t){NXL_DRAM, &d[1], 1};
    XT_ASSERT_OK(nxl_mem_register(a, &early, NULL));
    if (nxl_backend_create(a, "TCP", NULL, &tcp) != NXL_OK) {
        nxl_agent_destroy(a);
        free(buf);
        return XT_SKIP;
    }
    XT_ASSERT_OK(nxl_mem_register(a, &late, NULL));

    nxl_opts_init(&o);
    o.num_backends = 1;
    o.backends = &tcp;
    XT_ASSERT_STATUS(nxl_dlist_prep(a, NULL, &early, &o, &pp),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_OK(nxl_dlist_prep(a, NULL, &late, &o, &pp));
    nxl_dlist_release(pp);
    pp = NULL;
    o.backends = &shm;
    XT_ASSERT_OK(nxl_dlist_prep(a, NULL, &early, &o, &pp));
    nxl_dlist_release(pp);
    pp = NULL;
    XT_ASSERT_OK(nxl_dlist_prep(a, "a", &early, &o, &pp));
    nxl_dlist_release(pp);

    XT_ASSERT_OK(nxl_md_local(a, &md));
    nxl_blob_free(&md);
    XT_ASSERT_OK(nxl_mem_deregister(a, &early, NULL));
    XT_ASSERT_STATUS(nxl_mem_deregister(a, &early, NULL), NXL_ERR_NOT_FOUND);
    XT_ASSERT_OK(nxl_mem_register(a, &early, NULL));
    /* Destroy drops both, each with the backends it has. */
    nxl_agent_destroy(a);
    free(buf);
    return 0;
}

/* nxl_mem_alloc_shared: page-rounded, zeroed, writable; registers with
 * SHM; bad arguments are INVALID_PARAM; free accepts NULL. */
static int
t_alloc_shared(void)
{
    void *p = NULL, *q = (void *)(uintptr_t)0x77;
    nxl_agent_t *a = NULL;
    nxl_desc_t d;
    nxl_dlist_t dl;
    size_t i;
    long pg = sysconf(_SC_PAGESIZE);

    XT_ASSERT_OK(nxl_mem_alloc_shared(1, &p));
    XT_ASSERT(p != NULL);
    XT_ASSERT_EQ((uintptr_t)p % (uintptr_t)pg, 0);
    for (i = 0; i < (size_t)pg; i++) {
        XT_ASSERT_EQ(((uint8_t *)p)[i], 0);
    }
    memset(p, 0xee, (size_t)pg); /* the whole rounded page is usable */
    nxl_mem_free_shared(p);

    XT_ASSERT_STATUS(nxl_mem_alloc_shared(0, &q), NXL_ERR_INVALID_PARAM);
    XT_ASSERT(q == (void *)(uintptr_t)0x77);
    XT_ASSERT_STATUS(nxl_mem_alloc_shared(4096, NULL), NXL_ERR_INVALID_PARAM);

    XT_ASSERT_OK(nxl_mem_alloc_shared(3 << 20, &p));
    XT_ASSERT_OK(ta_agent("a", &a));
    d = (nxl_desc_t){(uintptr_t)p, 3 << 20, 0};
    dl = (nxl_dlist_t){NXL_DRAM, &d, 1};
    XT_ASSERT_OK(nxl_mem_register(a, &dl, NULL));
    XT_ASSERT_OK(nxl_mem_deregister(a, &dl, NULL));
    /* A sub-range of a shared allocation registers too (alone: regions
     * may not overlap). */
    {
        nxl_desc_t s = {(uintptr_t)p + 8192, 4096, 0};
        nxl_dlist_t sl = {NXL_DRAM, &s, 1};

        XT_ASSERT_OK(nxl_mem_register(a, &sl, NULL));
        XT_ASSERT_STATUS(nxl_mem_register(a, &dl, NULL), NXL_ERR_NOT_ALLOWED);
        XT_ASSERT_OK(nxl_mem_deregister(a, &sl, NULL));
    }
    nxl_agent_destroy(a);
    nxl_mem_free_shared(p);
    nxl_mem_free_shared(NULL);
    return 0;
}

/* nxl_md_local of one agent loads into a second agent in the same
 * process; nxl_md_check covers exactly the registered ranges; own blob is
 * INVALID_PARAM; reload of the same blob is OK; invalidate forgets. */
static int
t_md_round_trip(void)
{
    nxl_agent_t *a = NULL, *b = NULL;
    uint8_t *buf = ta_alloc(1 << 20);
    nxl_desc_t d = {(uintptr_t)buf, 1 << 20, 0}, q;
    nxl_dlist_t dl = {NXL_DRAM, &d, 1}, ql = {NXL_DRAM, &q, 1};
    nxl_blob_t blob = {NULL, 0}, own = {NULL, 0};
    char name[64];

    XT_ASSERT(buf != NULL);
    XT_ASSERT_OK(ta_agent("A", &a));
    XT_ASSERT_OK(ta_agent("B", &b));
    XT_ASSERT_OK(nxl_mem_register(a, &dl, NULL));
    XT_ASSERT_OK(nxl_md_local(a, &blob));
    XT_ASSERT(blob.data != NULL && blob.len > 0);

    XT_ASSERT_STATUS(nxl_md_check(b, "A", NULL), NXL_ERR_NOT_FOUND);
    memset(name, 0, sizeof(name));
    XT_ASSERT_OK(nxl_md_load(b, blob.data, blob.len, name, sizeof(name)));
    XT_ASSERT_STR(name, "A");
    XT_ASSERT_OK(nxl_md_check(b, "A", NULL));
    XT_ASSERT_OK(nxl_md_check(b, "A", &dl));
    q = (nxl_desc_t){(uintptr_t)buf + 4096, 4096, 0};
    XT_ASSERT_OK(nxl_md_check(b, "A", &ql));
    q = (nxl_desc_t){(uintptr_t)buf + 4096, 1 << 20, 0};
    XT_ASSERT_STATUS(nxl_md_check(b, "A", &ql), NXL_ERR_NOT_FOUND);
    q = (nxl_desc_t){(uintptr_t)buf - 1, 2, 0};
    XT_ASSERT_STATUS(nxl_md_check(b, "A", &ql), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(nxl_md_check(b, "nobody", NULL), NXL_ERR_NOT_FOUND);

    /* Identical reload is ignored; name_buf is optional. */
    XT_ASSERT_OK(nxl_md_load(b, blob.data, blob.len, NULL, 0));

    /* Own metadata is refused. */
    XT_ASSERT_OK(nxl_md_local(a, &own));
    XT_ASSERT_STATUS(nxl_md_load(a, own.data, own.len, NULL, 0),
                     NXL_ERR_INVALID_PARAM);
    nxl_blob_free(&own);
    XT_ASSERT(own.data == NULL && own.len == 0);

    XT_ASSERT_STATUS(nxl_md_invalidate(b, "B"), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_md_invalidate(b, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_OK(nxl_md_invalidate(b, "A"));
    XT_ASSERT_STATUS(nxl_md_check(b, "A", NULL), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(nxl_md_invalidate(b, "A"), NXL_ERR_NOT_FOUND);

    /* Reload after invalidation works. */
    XT_ASSERT_OK(nxl_md_load(b, blob.data, blob.len, NULL, 0));
    XT_ASSERT_OK(nxl_md_check(b, "A", &dl));

    /* Partial metadata of an unregistered descriptor is NOT_FOUND. */
    {
        nxl_blob_t p = {NULL, 0};

        q = (nxl_desc_t){(uintptr_t)buf, 4096, 0};
        XT_ASSERT_STATUS(nxl_md_local_partial(a, &ql, NULL, &p),
                         NXL_ERR_NOT_FOUND);
        XT_ASSERT(p.data == NULL);
        XT_ASSERT_OK(nxl_md_local_partial(a, &dl, NULL, &p));
        XT_ASSERT(p.len > 0);
        nxl_blob_free(&p);
        XT_ASSERT_OK(nxl_md_local_partial(a, NULL, NULL, &p));
        XT_ASSERT(p.len > 0);
        nxl_blob_free(&p);
    }

    XT_ASSERT_STATUS(nxl_md_local(NULL, &own), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_md_local(a, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_md_load(b, NULL, 10, NULL, 0), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_md_load(NULL, blob.data, blob.len, NULL, 0),
                     NXL_ERR_INVALID_PARAM);

    nxl_blob_free(&blob);
    nxl_agent_destroy(b);
    nxl_agent_destroy(a);
    free(buf);
    return 0;
}

/* Two agents of one process move data through SHM after an in-process
 * metadata exchange (no side channel involved). */
static int
t_two_agents_one_process(void)
{
    nxl_agent_t *a = NULL, *b = NULL;
    uint8_t *src = ta_alloc(65536), *dst = ta_alloc(65536);
    nxl_desc_t ds = {0}, dd = {0};
    nxl_dlist_t ls = {NXL_DRAM, &ds, 1}, ld = {NXL_DRAM, &dd, 1};
    nxl_blob_t blob = {NULL, 0};
    nxl_xfer_t *x = NULL;
    nxl_status_t st;
    size_t i;

    XT_ASSERT(src != NULL && dst != NULL);
    for (i = 0; i < 65536; i++) {
        src[i] = (uint8_t)(i * 7 + 3);
    }
    memset(dst, 0, 65536);
    ds = (nxl_desc_t){(uintptr_t)src, 65536, 0};
    dd = (nxl_desc_t){(uintptr_t)dst, 65536, 0};
    XT_ASSERT_OK(ta_agent("A", &a));
    XT_ASSERT_OK(ta_agent("B", &b));
    XT_ASSERT_OK(nxl_mem_register(a, &ld, NULL));
    XT_ASSERT_OK(nxl_mem_register(b, &ls, NULL));
    XT_ASSERT_OK(nxl_md_local(a, &blob));
    XT_ASSERT_OK(nxl_md_load(b, blob.data, blob.len, NULL, 0));
    nxl_blob_free(&blob);

    XT_ASSERT_OK(nxl_xfer_create(b, NXL_WRITE, &ls, &ld, "A", NULL, &x));
    XT_ASSERT_STATUS(nxl_xfer_status(x), NXL_ERR_NOT_POSTED);
    st = nxl_xfer_post(x, NULL);
    XT_ASSERT(st == NXL_OK || st == NXL_IN_PROG);
    XT_ASSERT_OK(nxl_xfer_wait(x, 10000));
    XT_ASSERT_OK(nxl_xfer_status(x));
    XT_ASSERT(memcmp(src, dst, 65536) == 0);
    nxl_xfer_release(x);

    nxl_agent_destroy(b);
    nxl_agent_destroy(a);
    free(src);
    free(dst);
    return 0;
}

/* Release functions accept NULL and empty objects (STYLE.md §3.4). */
static int
t_free_null(void)
{
    nxl_blob_t empty = {NULL, 0};

    nxl_blob_free(NULL);
    nxl_blob_free(&empty);
    nxl_notif_list_free(NULL);
    nxl_dlist_release(NULL);
    nxl_xfer_release(NULL);
    nxl_agent_destroy(NULL);
    nxl_mem_free_shared(NULL);
    return 0;
}

/* With listen_port 0 the listener takes an ephemeral port, reports it, and
 * accepts TCP connections there; without a listener the port is 0; a port
 * already in use makes agent creation fail with NXL_ERR_IO. */
static int
t_listen_port(void)
{
    nxl_agent_config_t cfg;
    nxl_agent_t *a = NULL, *b = (nxl_agent_t *)(uintptr_t)0x99;
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    uint16_t port;
    int fd, lfd, one = 1;

    nxl_agent_config_init(&cfg);
    cfg.listen_thread = 1;
    cfg.listen_port = 0;
    cfg.listen_addr = "127.0.0.1";
    XT_ASSERT_OK(nxl_agent_create("L", &cfg, &a));
    port = nxl_agent_listen_port(a);
    XT_ASSERT(port > 0);

    fd = socket(AF_INET, SOCK_STREAM, 0);
    XT_ASSERT(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    XT_ASSERT_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);

    /* A junk client must not take the listener down. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    XT_ASSERT_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    XT_ASSERT(write(fd, "GET / HTTP/1.0\r\n\r\n", 18) == 18);
    close(fd);
    usleep(50000);
    {
        nxl_agent_t *c = NULL;
        nxl_opts_t o;

        XT_ASSERT_OK(ta_agent("C", &c));
        nxl_opts_init(&o);
        o.ip_addr = "127.0.0.1";
        o.port = port;
        XT_ASSERT_OK(nxl_md_fetch(c, "L", &o));
        nxl_agent_destroy(c);
    }
    nxl_agent_destroy(a);

    /* Occupy a port, then ask an agent to listen there. */
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    XT_ASSERT(lfd >= 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    XT_ASSERT_EQ(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    XT_ASSERT_EQ(listen(lfd, 4), 0);
    XT_ASSERT_EQ(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    cfg.listen_port = ntohs(sa.sin_port);
    XT_ASSERT_STATUS(nxl_agent_create("L2", &cfg, &b), NXL_ERR_IO);
    XT_ASSERT(b == (nxl_agent_t *)(uintptr_t)0x99);
    close(lfd);
    return 0;
}

/* nxl_agent_fd is a valid descriptor once a backend exists, stable across
 * calls; progress on an idle agent returns 0 at once. */
static int
t_agent_fd(void)
{
    nxl_agent_t *a = NULL;
    uint64_t t0;
    int fd, i;

    XT_ASSERT_OK(ta_agent("a", &a));
    fd = nxl_agent_fd(a);
    XT_ASSERT(fd >= 0);
    XT_ASSERT(fcntl(fd, F_GETFD) >= 0);
    XT_ASSERT_EQ(nxl_agent_fd(a), fd);
    t0 = xt_now_ms();
    for (i = 0; i < 1000; i++) {
        nxl_agent_progress(a);
    }
    XT_ASSERT(xt_now_ms() - t0 < 2000);
    nxl_agent_destroy(a);
    return 0;
}

/* Notifications: an agent with nothing received returns an empty list;
 * NULL arguments are INVALID_PARAM. */
static int
t_notifs_empty(void)
{
    nxl_agent_t *a = NULL;
    nxl_notif_list_t *l = NULL;

    XT_ASSERT_OK(ta_agent("a", &a));
    XT_ASSERT_OK(nxl_notifs_get(a, &l, NULL));
    XT_ASSERT(l == NULL || l->count == 0);
    nxl_notif_list_free(l);
    XT_ASSERT_STATUS(nxl_notifs_get(NULL, &l, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_notifs_get(a, NULL, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_notif_send(a, "nobody", "x", 1, NULL),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(nxl_notif_send(a, NULL, "x", 1, NULL),
                     NXL_ERR_INVALID_PARAM);
    nxl_agent_destroy(a);
    return 0;
}

/* NXL_PLUGIN_DIR naming a directory with junk (a text file named like a
 * plugin, a real shared object without the entry symbol, an unrelated
 * file) must not crash discovery; built-ins keep working. */
static int
t_plugin_dir_junk(void)
{
    char dir[] = "/tmp/nxl-plugdir-XXXXXX";
    char path[256];
    const char *names[64];
    nxl_plugin_info_t info;
    nxl_agent_t *a = NULL;
    size_t n = 0, i;
    FILE *f;
    int rc = 0, has_shm = 0;
    const char *libs[] = {"/lib/x86_64-linux-gnu/libm.so.6",
                          "/usr/lib/x86_64-linux-gnu/libm.so.6",
                          "/lib64/libm.so.6", NULL};

    XT_ASSERT(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/libnxl-bogus.so", dir);
    f = fopen(path, "w");
    XT_ASSERT(f != NULL);
    fputs("this is not an ELF file\n", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/README.txt", dir);
    f = fopen(path, "w");
    XT_ASSERT(f != NULL);
    fputs("hello\n", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/libnxl-empty.so", dir);
    f = fopen(path, "w");
    XT_ASSERT(f != NULL);
    fclose(f);
    for (i = 0; libs[i] != NULL; i++) {
        if (access(libs[i], R_OK) == 0) {
            char cmd[600];

            snprintf(cmd, sizeof(cmd), "cp '%s' '%s/libnxl-nosym.so'", libs[i],
                     dir);
            if (system(cmd) != 0) {
                fprintf(stderr, "copy of %s failed\n", libs[i]);
            }
            break;
        }
    }
    setenv("NXL_PLUGIN_DIR", dir, 1);

    XT_ASSERT_OK(nxl_plugin_names(names, 64, &n));
    for (i = 0; i < n && i < 64; i++) {
        has_shm |= strcmp(names[i], "SHM") == 0;
    }
    if (!has_shm) {
        fprintf(stderr, "SHM missing from plugin names\n");
        rc = 1;
    }
    if (nxl_plugin_info("BOGUS", &info) == NXL_OK ||
        nxl_plugin_info("EMPTY", &info) == NXL_OK ||
        nxl_plugin_info("NOSYM", &info) == NXL_OK) {
        fprintf(stderr, "a junk plugin was accepted\n");
        rc = 1;
    }
    if (nxl_last_error()[0] == '\0') {
        fprintf(stderr, "a junk plugin failed without a message\n");
        rc = 1;
    }
    XT_ASSERT_OK(nxl_agent_create("a", NULL, &a));
    if (nxl_backend_create(a, "BOGUS", NULL, &(nxl_backend_t *){NULL}) ==
        NXL_OK) {
        fprintf(stderr, "backend from a junk plugin was created\n");
        rc = 1;
    }
    XT_ASSERT_OK(nxl_backend_create(a, "SHM", NULL, &(nxl_backend_t *){NULL}));
    nxl_agent_destroy(a);

    snprintf(path, sizeof(path), "rm -rf '%s'", dir);
    if (system(path) != 0) {
        fprintf(stderr, "cleanup of %s failed\n", dir);
    }
    return rc;
}

/* ta_err_thread fails a call on another thread; nxl_last_error is
 * per-thread. */
static void *
ta_err_thread(void *arg)
{
    nxl_plugin_info_t info;
    char *out = arg;

    (void)nxl_plugin_info(NULL, &info);
    snprintf(out, 256, "%s", nxl_last_error());
    return NULL;
}

/* nxl_last_error is thread-local: another thread's failure does not
 * replace this thread's message. */
static int
t_last_error_thread_local(void)
{
    nxl_plugin_info_t info;
    char mine[256], theirs[256] = "";
    pthread_t th;

    XT_ASSERT(nxl_plugin_info("NO_SUCH_BACKEND", &info) == NXL_ERR_NOT_FOUND);
    snprintf(mine, sizeof(mine), "%s", nxl_last_error());
    XT_ASSERT(mine[0] != '\0');
    XT_ASSERT_EQ(pthread_create(&th, NULL, ta_err_thread, theirs), 0);
    pthread_join(th, NULL);
    XT_ASSERT(theirs[0] != '\0');
    XT_ASSERT_STR(nxl_last_error(), mine);
    return 0;
}

const xt_suite xt_suite_agent = {
    .name = "agent",
    .timeout_s = 30,
    .cases =
        (const xt_case[]){
            {"create_destroy", t_create_destroy},
            {"config_defaults", t_config_defaults},
            {"opts_defaults", t_opts_defaults},
            {"plugin_names", t_plugin_names},
            {"plugin_info", t_plugin_info},
            {"backend_create", t_backend_create},
            {"register", t_register},
            {"backend_after_register", t_backend_after_register},
            {"alloc_shared", t_alloc_shared},
            {"md_round_trip", t_md_round_trip},
            {"two_agents_one_process", t_two_agents_one_process},
            {"free_null", t_free_null},
            {"listen_port", t_listen_port},
            {"agent_fd", t_agent_fd},
            {"notifs_empty", t_notifs_empty},
            {"first_notif_first_call", t_first_notif_first_call},
            {"plugin_dir_junk", t_plugin_dir_junk},
            {"last_error_thread_local", t_last_error_thread_local},
            {NULL, NULL},
        },
};
