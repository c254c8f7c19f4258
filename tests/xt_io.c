/* xt_io.c - whole reads and writes for tests (see xt_io.h). */
#include "xt_io.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int
xt_io_all(int fd, void *p, size_t len, bool wr)
{
    uint8_t *b = p;

    while (len > 0) {
        ssize_t n = wr ? write(fd, b, len) : read(fd, b, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

int
xt_write_all(int fd, const void *p, size_t len)
{
    return xt_io_all(fd, (void *)(uintptr_t)p, len, true);
}

int
xt_read_all(int fd, void *p, size_t len)
{
    return xt_io_all(fd, p, len, false);
}

int
xt_send_blob(int fd, const void *p, size_t len)
{
    uint64_t l = len;

    return xt_write_all(fd, &l, sizeof(l)) || xt_write_all(fd, p, len) ? -1 : 0;
}

int
xt_recv_blob(int fd, char **p_p, size_t *len_p)
{
    uint64_t l;
    char *p;

    if (xt_read_all(fd, &l, sizeof(l)) != 0 || l > ((uint64_t)1 << 30)) {
        return -1;
    }
    p = malloc(l + 1);
    if (p == NULL || xt_read_all(fd, p, l) != 0) {
        free(p);
        return -1;
    }
    p[l] = '\0';
    *p_p = p;
    *len_p = l;
    return 0;
}

char *
xt_read_data(const char *name, size_t *len_p)
{
    char path[512];
    FILE *f;
    char *buf;
    long n;

    snprintf(path, sizeof(path), "%s/%s", NXL_TEST_DATA_DIR, name);
    f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    *len_p = (size_t)n;
    return buf;
}
