/*
 * xt_xfer.h - agents, transfers and the data they move, for suites that
 * drive the public API.
 */
#ifndef NXL_TESTS_XT_XFER_H
#define NXL_TESTS_XT_XFER_H

#include <nxl/nxl.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* xt_agent_with makes an agent called name (default config) with a
 * backend of each type in types (NULL-ended; default params). On failure
 * it destroys what it made and *agent_p is untouched. Returns the first
 * failing status. */
nxl_status_t xt_agent_with(const char *name, const char *const *types,
                           nxl_agent_t **agent_p);

/* xt_xfer_run posts x with opts and, while it is in progress, waits up to
 * timeout_ms for it: the status of the whole transfer. */
nxl_status_t xt_xfer_run(nxl_xfer_t *x, const nxl_opts_t *opts, int timeout_ms);

/* xt_fill writes the pattern of seed into n bytes at p; xt_check says
 * whether n bytes at p hold it. Byte i depends on i and seed only. */
void xt_fill(uint8_t *p, size_t n, uint32_t seed);
bool xt_check(const uint8_t *p, size_t n, uint32_t seed);

#endif /* NXL_TESTS_XT_XFER_H */
