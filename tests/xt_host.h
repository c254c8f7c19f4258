/*
 * xt_host.h - a fake backend host, for tests that drive a backend's ops
 * table directly, without an agent: the host table the core would hand
 * the engine, and opening and closing an engine as the core does.
 */
#ifndef NXL_TESTS_XT_HOST_H
#define NXL_TESTS_XT_HOST_H

#include <nxl/nxl_backend.h>

/* xt_host_set_error and xt_host_log are what a fake host passes as
 * set_error and log: they do what the core's host does. */
void xt_host_set_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
void xt_host_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* xt_host_init fills *host_p as the core fills an engine's host table:
 * its size, agent_name (which must outlive the engine), set_error and log
 * (the two above), ctx, notif_recv and wake as given (NULL: none), and
 * device_kind (NULL: the engine serves no VRAM). */
void xt_host_init(const char *agent_name, void *ctx,
                  void (*notif_recv)(void *ctx, const char *peer,
                                     const void *msg, size_t len),
                  void (*wake)(void *ctx), const nxl_memkind_ops_t *device_kind,
                  nxl_backend_host_t *host_p);

/* xt_engine_open allocates a zeroed engine of ops->engine_size bytes and
 * runs ops->init on it with host (which must outlive the engine) and
 * params. On failure it runs ops->fini and frees the engine, as the core
 * does. *eng_p is set only on success. Returns NXL_ERR_NOMEM or init's
 * status. */
nxl_status_t xt_engine_open(const nxl_backend_ops_t *ops,
                            const nxl_backend_host_t *host,
                            const nxl_params_t *params, void **eng_p);

/* xt_engine_close runs ops->fini on eng and frees it. Accepts NULL. */
void xt_engine_close(const nxl_backend_ops_t *ops, void *eng);

#endif /* NXL_TESTS_XT_HOST_H */
