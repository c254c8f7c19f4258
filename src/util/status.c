/* status.c - the second and third products of NXL_STATUS_MAP, the
 * library's version, and nxl_blob_free: public functions every layer may
 * use, so they live at the bottom (util). */
#include "util.h"

#include <stdlib.h>

#define NXL__STR2(x) #x
#define NXL__STR(x) NXL__STR2(x)

NXL_API const char *
nxl_version(void)
{
    return NXL__STR(NXL_VERSION_MAJOR) "." NXL__STR(
        NXL_VERSION_MINOR) "." NXL__STR(NXL_VERSION_PATCH);
}

NXL_API const char *
nxl_strerror(nxl_status_t status)
{
    switch (status) {
#define NXL__STATUS_STR(name, val, msg)                                        \
    case NXL_##name:                                                           \
        return msg;
        NXL_STATUS_MAP(NXL__STATUS_STR)
#undef NXL__STATUS_STR
    }
    return "unknown status";
}

bool
nxl__status_known(int status)
{
    switch (status) {
#define NXL__STATUS_KNOWN(name, val, msg)                                      \
    case NXL_##name:                                                           \
        return true;
        NXL_STATUS_MAP(NXL__STATUS_KNOWN)
#undef NXL__STATUS_KNOWN
    }
    return false;
}

NXL_API const char *
nxl_status_name(nxl_status_t status)
{
    switch (status) {
#define NXL__STATUS_NAME(name, val, msg)                                       \
    case NXL_##name:                                                           \
        return "NXL_" #name;
        NXL_STATUS_MAP(NXL__STATUS_NAME)
#undef NXL__STATUS_NAME
    }
    return "NXL_UNKNOWN_STATUS";
}

NXL_API void
nxl_blob_free(nxl_blob_t *blob)
{
    if (blob == NULL) {
        return;
    }
    free(blob->data);
    blob->data = NULL;
    blob->len = 0;
}
