/* test_status.c - status codes, names and the last-error message. */
#include "harness.h"
#include "util.h"

#include <errno.h>
#define ESRCH_VALUE ESRCH

static int
t_values_pinned(void)
{
    XT_ASSERT_EQ(NXL_OK, 0);
    XT_ASSERT_EQ(NXL_IN_PROG, 1);
    XT_ASSERT_EQ(NXL_ERR_NOT_POSTED, -1);
    XT_ASSERT_EQ(NXL_ERR_INVALID_PARAM, -2);
    XT_ASSERT_EQ(NXL_ERR_BACKEND, -3);
    XT_ASSERT_EQ(NXL_ERR_NOT_FOUND, -4);
    XT_ASSERT_EQ(NXL_ERR_MISMATCH, -5);
    XT_ASSERT_EQ(NXL_ERR_NOT_ALLOWED, -6);
    XT_ASSERT_EQ(NXL_ERR_REPOST_ACTIVE, -7);
    XT_ASSERT_EQ(NXL_ERR_UNKNOWN, -8);
    XT_ASSERT_EQ(NXL_ERR_NOT_SUPPORTED, -9);
    XT_ASSERT_EQ(NXL_ERR_REMOTE_DISCONNECT, -10);
    XT_ASSERT_EQ(NXL_ERR_CANCELED, -11);
    XT_ASSERT_EQ(NXL_ERR_NO_TELEMETRY, -12);
    XT_ASSERT_EQ(NXL_ERR_TIMEOUT, -13);
    XT_ASSERT_EQ(NXL_ERR_NOMEM, -14);
    XT_ASSERT_EQ(NXL_ERR_IO, -15);
    XT_ASSERT_EQ(NXL_ERR_PROTO, -16);
    return 0;
}

static int
t_names_and_strings(void)
{
    int s;

    XT_ASSERT_STR(nxl_status_name(NXL_OK), "NXL_OK");
    XT_ASSERT_STR(nxl_status_name(NXL_ERR_REMOTE_DISCONNECT),
                  "NXL_ERR_REMOTE_DISCONNECT");
    XT_ASSERT_STR(nxl_strerror(NXL_ERR_NOT_FOUND), "not found");
    XT_ASSERT_STR(nxl_status_name((nxl_status_t)-999), "NXL_UNKNOWN_STATUS");
    XT_ASSERT_STR(nxl_strerror((nxl_status_t)42), "unknown status");
    for (s = 1; s >= -16; s--) {
        XT_ASSERT(strncmp(nxl_status_name((nxl_status_t)s), "NXL_", 4) == 0);
        XT_ASSERT(strcmp(nxl_strerror((nxl_status_t)s), "unknown status") != 0);
    }
    return 0;
}

static int
t_last_error(void)
{
    nxl__clear_error();
    XT_ASSERT_STR(nxl_last_error(), "");
    XT_ASSERT_EQ(nxl__fail(NXL_ERR_IO, "x %d", 7), NXL_ERR_IO);
    XT_ASSERT_STR(nxl_last_error(), "x 7");
    XT_ASSERT_EQ(nxl__fail_errno(ESRCH_VALUE, "cma"),
                 NXL_ERR_REMOTE_DISCONNECT);
    XT_ASSERT(strncmp(nxl_last_error(), "cma: ", 5) == 0);
    return 0;
}

const xt_suite xt_suite_status = {
    .name = "status",
    .cases =
        (const xt_case[]){
            {"values_pinned", t_values_pinned},
            {"names_and_strings", t_names_and_strings},
            {"last_error", t_last_error},
            {NULL, NULL},
        },
};
