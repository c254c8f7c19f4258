/*
 * uuid.c - random (version 4) uuid strings for the KV layer's completion
 * handles and the connector's notification keys.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

/* A per-thread pool of kernel randomness, refilled 256 bytes at a time, so
 * a uuid costs no system call in the common case. */
static _Thread_local uint8_t uuid_rnd[256];
static _Thread_local size_t uuid_rnd_left;

/* uuid_rnd_fill refills the pool from getrandom, else /dev/urandom, else
 * (never expected) the clock mixed with the pool's address. */
static void
uuid_rnd_fill(void)
{
    size_t got = 0;
    ssize_t r;
    int fd;

    while (got < sizeof(uuid_rnd)) {
        r = getrandom(uuid_rnd + got, sizeof(uuid_rnd) - got, 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        got += (size_t)r;
    }
    if (got < sizeof(uuid_rnd)) {
        fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        while (fd >= 0 && got < sizeof(uuid_rnd)) {
            r = read(fd, uuid_rnd + got, sizeof(uuid_rnd) - got);
            if (r < 0 && errno == EINTR) {
                continue;
            }
            if (r <= 0) {
                break;
            }
            got += (size_t)r;
        }
        if (fd >= 0) {
            close(fd);
        }
    }
    if (got < sizeof(uuid_rnd)) {
        uint64_t x = nxl__now_ns() ^ (uint64_t)(uintptr_t)uuid_rnd;
        size_t i;

        for (i = got; i < sizeof(uuid_rnd); i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            uuid_rnd[i] = (uint8_t)(x >> 56);
        }
    }
    uuid_rnd_left = sizeof(uuid_rnd);
}

void
nxl__uuid4(char out[NXL__UUID_LEN])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    size_t i, o = 0;

    if (uuid_rnd_left < sizeof(b)) {
        uuid_rnd_fill();
    }
    memcpy(b, uuid_rnd + sizeof(uuid_rnd) - uuid_rnd_left, sizeof(b));
    uuid_rnd_left -= sizeof(b);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out[o++] = '-';
        }
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}
