/* xt_host.c - a fake backend host (see xt_host.h). */
#include "xt_host.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
xt_host_set_error(const char *fmt, ...)
{
    char buf[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    nxl__set_error("%s", buf);
}

void
xt_host_log(int level, const char *fmt, ...)
{
    char buf[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    nxl__log(level, "%s", buf);
}

void
xt_host_init(const char *agent_name, void *ctx,
             void (*notif_recv)(void *ctx, const char *peer, const void *msg,
                                size_t len),
             void (*wake)(void *ctx), const nxl_memkind_ops_t *device_kind,
             nxl_backend_host_t *host_p)
{
    memset(host_p, 0, sizeof(*host_p));
    host_p->size = sizeof(*host_p);
    host_p->ctx = ctx;
    host_p->agent_name = agent_name;
    host_p->set_error = xt_host_set_error;
    host_p->log = xt_host_log;
    host_p->notif_recv = notif_recv;
    host_p->wake = wake;
    host_p->device_kind = device_kind;
}

nxl_status_t
xt_engine_open(const nxl_backend_ops_t *ops, const nxl_backend_host_t *host,
               const nxl_params_t *params, void **eng_p)
{
    nxl_status_t st;
    void *eng;

    eng = calloc(1, ops->engine_size);
    if (eng == NULL) {
        return NXL_ERR_NOMEM;
    }
    st = ops->init(eng, host, params);
    if (st != NXL_OK) {
        ops->fini(eng);
        free(eng);
        return st;
    }
    *eng_p = eng;
    return NXL_OK;
}

void
xt_engine_close(const nxl_backend_ops_t *ops, void *eng)
{
    if (eng == NULL) {
        return;
    }
    ops->fini(eng);
    free(eng);
}
