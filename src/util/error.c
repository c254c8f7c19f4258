/* error.c - the thread-local last-error message and errno mapping. */
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define NXL__ERRBUF 512

static _Thread_local char nxl__errbuf[NXL__ERRBUF];

static void
nxl__vset(const char *fmt, va_list ap)
{
    vsnprintf(nxl__errbuf, sizeof(nxl__errbuf), fmt, ap);
}

void
nxl__set_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    nxl__vset(fmt, ap);
    va_end(ap);
}

void
nxl__clear_error(void)
{
    nxl__errbuf[0] = '\0';
}

nxl_status_t
nxl__fail(nxl_status_t status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    nxl__vset(fmt, ap);
    va_end(ap);
    nxl__debug("%s: %s", nxl_status_name(status), nxl__errbuf);
    return status;
}

static nxl_status_t
nxl__errno_status(int err)
{
    switch (err) {
    case ENOMEM:
        return NXL_ERR_NOMEM;
    case EPERM:
    case EACCES:
        return NXL_ERR_NOT_ALLOWED;
    case ESRCH:
    case ECONNRESET:
    case ECONNREFUSED:
    case EPIPE:
    case ENOTCONN:
        return NXL_ERR_REMOTE_DISCONNECT;
    case EFAULT:
    case EINVAL:
        return NXL_ERR_INVALID_PARAM;
    case ETIMEDOUT:
        return NXL_ERR_TIMEOUT;
    default:
        return NXL_ERR_IO;
    }
}

nxl_status_t
nxl__fail_errno(int err, const char *fmt, ...)
{
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    nxl__vset(fmt, ap);
    va_end(ap);
    n = strlen(nxl__errbuf);
    snprintf(nxl__errbuf + n, sizeof(nxl__errbuf) - n, ": %s", strerror(err));
    return nxl__errno_status(err);
}

NXL_API const char *
nxl_last_error(void)
{
    return nxl__errbuf;
}
