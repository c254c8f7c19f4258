/* xt_xfer.c - agents, transfers and their data for tests (see
 * xt_xfer.h). */
#include "xt_xfer.h"

nxl_status_t
xt_agent_with(const char *name, const char *const *types, nxl_agent_t **agent_p)
{
    nxl_agent_t *a = NULL;
    nxl_status_t st;

    st = nxl_agent_create(name, NULL, &a);
    for (; st == NXL_OK && *types != NULL; types++) {
        st = nxl_backend_create(a, *types, NULL, NULL);
    }
    if (st != NXL_OK) {
        nxl_agent_destroy(a);
        return st;
    }
    *agent_p = a;
    return NXL_OK;
}

nxl_status_t
xt_xfer_run(nxl_xfer_t *x, const nxl_opts_t *opts, int timeout_ms)
{
    nxl_status_t st = nxl_xfer_post(x, opts);

    if (st == NXL_IN_PROG) {
        st = nxl_xfer_wait(x, timeout_ms);
    }
    return st;
}

/* xt_pat is byte i of the pattern of seed. */
static uint8_t
xt_pat(size_t i, uint32_t seed)
{
    return (uint8_t)((i * 131u + seed * 7u + (i >> 8)) ^ seed);
}

void
xt_fill(uint8_t *p, size_t n, uint32_t seed)
{
    size_t i;

    for (i = 0; i < n; i++) {
        p[i] = xt_pat(i, seed);
    }
}

bool
xt_check(const uint8_t *p, size_t n, uint32_t seed)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (p[i] != xt_pat(i, seed)) {
            return false;
        }
    }
    return true;
}
