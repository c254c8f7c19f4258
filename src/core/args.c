/* args.c - what every public call checks first: option structs (of any
 * layout since the first, nxl.h) and descriptor lists. */
#include "core.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

NXL_API void
nxl_opts_init(nxl_opts_t *opts)
{
    if (opts == NULL) {
        return;
    }
    memset(opts, 0, sizeof(*opts));
    opts->size = sizeof(*opts);
    opts->port = 8888;
}

nxl_status_t
nxl__opts_in(const nxl_opts_t **opts_p, nxl_opts_t *copy, const char *where)
{
    char what[64];
    nxl_status_t status;

    if (*opts_p == NULL) {
        return NXL_OK;
    }
    /* This build's layout (the common case, e.g. every post with a
     * notification): read in place, nothing to copy. */
    if ((*opts_p)->size == sizeof(nxl_opts_t)) {
        return nxl__opts_check(*opts_p, where);
    }
    nxl_opts_init(copy);
    snprintf(what, sizeof(what), "%s: opts", where);
    status = nxl__abi_in(copy, sizeof(*copy), *opts_p, NXL_OPTS_V1_SIZE, what);
    if (status != NXL_OK) {
        return status;
    }
    *opts_p = copy;
    return nxl__opts_check(copy, where);
}

nxl_status_t
nxl__opts_check(const nxl_opts_t *opts, const char *where)
{
    if (opts == NULL) {
        return NXL_OK;
    }
    if (opts->num_backends > 0 && opts->backends == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "%s: opts->num_backends is %zu but opts->backends "
                         "is NULL",
                         where, opts->num_backends);
    }
    if (opts->num_backends > SIZE_MAX / sizeof(*opts->backends)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "%s: opts->num_backends %zu cannot be in memory",
                         where, opts->num_backends);
    }
    if (opts->has_notif && opts->notif_len > 0 && opts->notif == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "%s: opts->notif_len is %zu but opts->notif is "
                         "NULL",
                         where, opts->notif_len);
    }
    return NXL_OK;
}

nxl_status_t
nxl__dlist_check(const nxl_dlist_t *dlist, const char *where)
{
    if (dlist == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "%s: the descriptor list is NULL", where);
    }
    if ((unsigned)dlist->mem >= NXL_MEM_KINDS) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "%s: bad memory kind %d", where,
                         (int)dlist->mem);
    }
    if (dlist->count > 0 && dlist->descs == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "%s: the list has %zu descriptors but descs is "
                         "NULL",
                         where, dlist->count);
    }
    if (dlist->count > SIZE_MAX / (2 * sizeof(nxl_desc_t))) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "%s: %zu descriptors cannot be in memory", where,
                         dlist->count);
    }
    return NXL_OK;
}

bool
nxl__be_allowed(const nxl_backend_t *be, const nxl_opts_t *opts)
{
    size_t i;

    if (opts == NULL || opts->num_backends == 0) {
        return true;
    }
    for (i = 0; i < opts->num_backends; i++) {
        if (opts->backends[i] == be) {
            return true;
        }
    }
    return false;
}
