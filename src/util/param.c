/* param.c - parsing of backend parameter values, shared by the backends. */
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <strings.h>

nxl_status_t
nxl__param_u64(const char *who, const char *key, const char *val, bool bytes,
               uint64_t min, uint64_t max, uint64_t *out)
{
    unsigned long long v;
    char *end;
    int shift = 0;

    if (val == NULL || val[0] < '0' || val[0] > '9') {
        goto err_bad;
    }
    errno = 0;
    v = strtoull(val, &end, 10);
    if (errno != 0) {
        goto err_bad;
    }
    if (bytes && *end != '\0' && end[1] == '\0') {
        switch (*end) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        default:
            goto err_bad;
        }
        end++;
    }
    if (*end != '\0' || v > (max >> shift)) {
        goto err_bad;
    }
    v <<= shift;
    if (v < min) {
        goto err_bad;
    }
    *out = v;
    return NXL_OK;

err_bad:
    return nxl__fail(NXL_ERR_INVALID_PARAM,
                     "%s: %s=\"%s\": expected an integer in [%" PRIu64
                     ", %" PRIu64 "]%s",
                     who, key, val ? val : "(null)", min, max,
                     bytes ? " (k/m/g suffix allowed)" : "");
}

nxl_status_t
nxl__param_bool(const char *who, const char *key, const char *val, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off", ""};
    size_t i;

    for (i = 0; val != NULL && i < NXL__ARRAY_SIZE(yes); i++) {
        if (strcasecmp(val, yes[i]) == 0) {
            *out = true;
            return NXL_OK;
        }
    }
    for (i = 0; val != NULL && i < NXL__ARRAY_SIZE(no); i++) {
        if (strcasecmp(val, no[i]) == 0) {
            *out = false;
            return NXL_OK;
        }
    }
    return nxl__fail(NXL_ERR_INVALID_PARAM,
                     "%s: %s=\"%s\": expected true or false", who, key,
                     val ? val : "(null)");
}
