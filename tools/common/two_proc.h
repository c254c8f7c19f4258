/*
 * two_proc.h - what the small multi-process programs over the public API
 * share (repro-kill-sender, nxl-notif-lat): a fatal status check, a
 * clock, and an agent with a listener on 127.0.0.1, one backend made from
 * "KEY=VAL:KEY=VAL" parameters and one registered DRAM region.
 *
 * Header-only; a program defines tp_who (its process's name in messages).
 */
#ifndef NXL_TOOLS_TWO_PROC_H
#define NXL_TOOLS_TWO_PROC_H

#include <nxl/nxl.h>

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TP_MAX_PARAMS 8

extern const char *tp_who;

/* TP_CHECK ends the process with status 2 when e is not NXL_OK. */
#define TP_CHECK(e)                                                            \
    do {                                                                       \
        nxl_status_t s_ = (e);                                                 \
        if (s_ != NXL_OK) {                                                    \
            fprintf(stderr, "%s: %s:%d %s: %s (%s)\n", tp_who, __FILE__,       \
                    __LINE__, #e, nxl_status_name(s_), nxl_last_error());      \
            _exit(2);                                                          \
        }                                                                      \
    } while (0)

/* tp_now_s is CLOCK_MONOTONIC in seconds. */
static inline double
tp_now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* tp_agent makes agent name with a listener on 127.0.0.1 (port from the
 * system), backend with params ("K=V:K=V", split in place; at most
 * TP_MAX_PARAMS), and buf[0, len) registered as DRAM. Exits with status
 * 77 when this build has no such backend, 2 on any other failure. */
static inline nxl_agent_t *
tp_agent(const char *name, const char *backend, char *params, void *buf,
         size_t len)
{
    nxl_param_t pr[TP_MAX_PARAMS];
    nxl_params_t ps = {pr, 0};
    nxl_desc_t d = {(uintptr_t)buf, len, 0};
    nxl_dlist_t dl = {NXL_DRAM, &d, 1};
    nxl_agent_config_t cfg;
    nxl_plugin_info_t info;
    nxl_agent_t *a;
    char *item, *save = NULL, *eq;

    for (item = strtok_r(params, ":", &save);
         item != NULL && ps.count < TP_MAX_PARAMS;
         item = strtok_r(NULL, ":", &save)) {
        eq = strchr(item, '=');
        if (eq != NULL) {
            *eq = '\0';
            pr[ps.count++] = (nxl_param_t){item, eq + 1};
        }
    }
    if (nxl_plugin_info(backend, &info) != NXL_OK) {
        printf("%s: skip: no %s backend in this build (%s)\n", tp_who, backend,
               nxl_last_error());
        fflush(stdout);
        _exit(77);
    }
    nxl_agent_config_init(&cfg);
    cfg.listen_thread = 1;
    cfg.listen_port = 0;
    cfg.listen_addr = "127.0.0.1";
    TP_CHECK(nxl_agent_create(name, &cfg, &a));
    TP_CHECK(nxl_backend_create(a, backend, &ps, NULL));
    TP_CHECK(nxl_mem_register(a, &dl, NULL));
    return a;
}

/* tp_fetch loads agent name's metadata from its listener on 127.0.0.1. */
static inline void
tp_fetch(nxl_agent_t *a, const char *name, uint16_t port)
{
    nxl_opts_t o;

    nxl_opts_init(&o);
    o.ip_addr = "127.0.0.1";
    o.port = port;
    TP_CHECK(nxl_md_fetch(a, name, &o));
}

#endif /* NXL_TOOLS_TWO_PROC_H */
