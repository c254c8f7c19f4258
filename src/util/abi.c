/* abi.c - caller-filled public structs that grow: each starts with its
 * size, and the library reads only what the caller's layout holds. */
#include "util.h"

#include <string.h>

nxl_status_t
nxl__abi_in(void *dst, size_t dst_size, const void *src, size_t min_size,
            const char *what)
{
    const unsigned char *s = src;
    uint32_t size;
    size_t i;

    memcpy(&size, src, sizeof(size));
    if (size < min_size) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "%s: size %u is below the first layout's %zu (fill "
                         "it with its _init function first)",
                         what, size, min_size);
    }
    for (i = dst_size; i < size; i++) {
        if (s[i] != 0) {
            return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                             "%s: the caller's layout (%u bytes) sets byte "
                             "%zu, beyond the %zu this library (%s) knows",
                             what, size, i, dst_size, nxl_version());
        }
    }
    memcpy(dst, src, NXL__MIN((size_t)size, dst_size));
    memcpy(dst, &(uint32_t){(uint32_t)dst_size}, sizeof(uint32_t));
    return NXL_OK;
}
