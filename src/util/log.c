/* log.c - leveled logging to stderr, configured by NXL_LOG_LEVEL. */
#include "util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int nxl__log_level = -1;
static pthread_once_t nxl__log_once = PTHREAD_ONCE_INIT;

static const char *const nxl__level_names[] = {"error", "warn", "info", "debug",
                                               "trace"};

const char *
nxl__getenv(const char *name)
{
    char buf[128];
    const char *v;

    snprintf(buf, sizeof(buf), "NXL_%s", name);
    v = getenv(buf);
    if (v != NULL) {
        return v;
    }
    snprintf(buf, sizeof(buf), "NIXL_%s", name);
    return getenv(buf);
}

static void
nxl__log_init(void)
{
    const char *v = nxl__getenv("LOG_LEVEL");
    size_t i;

    nxl__log_level = NXL_LOG_WARN;
    if (v == NULL) {
        return;
    }
    for (i = 0; i < NXL__ARRAY_SIZE(nxl__level_names); i++) {
        if (strcasecmp(v, nxl__level_names[i]) == 0) {
            nxl__log_level = (int)i;
            return;
        }
    }
    if (strcasecmp(v, "warning") == 0) {
        nxl__log_level = NXL_LOG_WARN;
    } else if (strcasecmp(v, "fatal") == 0) {
        nxl__log_level = NXL_LOG_ERROR;
    }
}

bool
nxl__log_enabled(int level)
{
    pthread_once(&nxl__log_once, nxl__log_init);
    return level <= nxl__log_level;
}

void
nxl__log(int level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    if (!nxl__log_enabled(level)) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (level < 0) {
        level = 0;
    }
    if (level > NXL_LOG_TRACE) {
        level = NXL_LOG_TRACE;
    }
    fprintf(stderr, "nxl %s: %s\n", nxl__level_names[level], line);
}
