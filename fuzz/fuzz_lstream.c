/*
 * fuzz_lstream.c - libFuzzer target for the local notification streams'
 * receiver (src/util/lstream.c): the hello and frame parser that the SHM
 * and UCX backends run on bytes a same-host peer wrote.
 *
 * Input: byte 0 picks the mode (bit 0: paced, as UCX; else eager, as
 * SHM; bit 1: also send the rest as one notification through a real
 * outgoing stream), the rest is written raw to a fresh connection to the
 * listener, which is then closed.
 *
 * Any input: no crash, no out-of-bounds read, no leak. Properties:
 *   - every delivered notification names a sender of 1..1024 bytes
 *     without a NUL, and is at most the set's max_msg;
 *   - once the writer closed, the receiver closes its side: no accepted
 *     stream is left open after the events are handled;
 *   - bit 1: the message sent through nxl__ls_tx_send arrives once,
 *     unchanged, from the name the stream was opened with.
 */
#include "lstream.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_lstream: %s:%d: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
            abort();                                                           \
        }                                                                      \
    } while (0)

#define MAX_MSG 4096u

typedef struct set {
    int ep;
    nxl__ls_t *ls;
    char sock[NXL__LS_SOCK_MAX + 1];
    size_t sock_len;
} set_t;

static set_t sets[2]; /* [0] eager, [1] paced */
static const uint8_t *want;
static size_t want_len;
static unsigned got_want, delivered;

static void
deliver(void *ctx, const char *from, const void *msg, size_t len)
{
    size_t nl = strlen(from);

    (void)ctx;
    CHECK(nl >= 1 && nl <= NXL__LS_NAME_MAX);
    CHECK(len <= MAX_MSG);
    delivered++;
    if (want != NULL && strcmp(from, "fuzz-tx") == 0 && len == want_len &&
        (len == 0 || memcmp(msg, want, len) == 0)) {
        got_want++;
    }
}

static void
setup(void)
{
    unsigned i;

    /* Every refused input logs a warning: millions of lines otherwise. */
    setenv("NXL_LOG_LEVEL", "error", 0);
    for (i = 0; i < 2; i++) {
        set_t *s = &sets[i];

        s->ep = epoll_create1(EPOLL_CLOEXEC);
        CHECK(s->ep >= 0);
        s->sock_len = nxl__ls_sock_name(s->sock, sizeof(s->sock),
                                        i ? "fuzzp" : "fuzze", getpid(), i);
        CHECK(nxl__ls_create("fuzz", s->sock, s->sock_len, MAX_MSG, s->ep,
                             i ? NXL__LS_PACED : 0, deliver, NULL,
                             &s->ls) == NXL_OK);
    }
}

/* pump handles the set's events (and paced reads) until nothing is left
 * to do; returns once no accepted stream is open, or after many rounds. */
static void
pump(set_t *s, int until_closed)
{
    struct epoll_event ev[16];
    int round, n, i;

    for (round = 0; round < 1000; round++) {
        unsigned work = 0;

        n = epoll_wait(s->ep, ev, 16, round < 2 ? 0 : 1);
        for (i = 0; i < n; i++) {
            CHECK(nxl__ls_owns(ev[i].data.u64));
            work += nxl__ls_event(s->ls, ev[i].data.u64, ev[i].events, NULL);
        }
        work += nxl__ls_poll(s->ls, NULL);
        if (until_closed ? !nxl__ls_receiving(s->ls) : work == 0) {
            return;
        }
    }
    CHECK(!until_closed || !nxl__ls_receiving(s->ls));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    struct sockaddr_un sa;
    set_t *s;
    int fd;

    if (!ready) {
        setup();
        ready = 1;
    }
    if (size < 1) {
        return 0;
    }
    s = &sets[data[0] & 1];
    delivered = 0;
    if (data[0] & 2) {
        nxl__ls_tx_t *tx = NULL;
        size_t len = size - 1 > MAX_MSG ? MAX_MSG : size - 1;

        want = data + 1;
        want_len = len;
        got_want = 0;
        CHECK(nxl__ls_tx_open(s->ls, "self", s->sock, s->sock_len, "fuzz-tx",
                              NULL, NULL, &tx) == NXL_OK);
        CHECK(nxl__ls_tx_send(tx, data + 1, len, NULL) == NXL_OK);
        nxl__ls_tx_drain(tx, 1000);
        pump(s, 0);
        nxl__ls_tx_free(tx);
        pump(s, 1);
        CHECK(got_want == 1);
        want = NULL;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path + 1, s->sock, s->sock_len);
    CHECK(connect(fd, (struct sockaddr *)&sa,
                  (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                              s->sock_len)) == 0);
    if (size > 1) {
        /* Within the socket's buffer: nothing reads until pump. */
        size_t n = size - 1 > 65536 ? 65536 : size - 1;

        CHECK(write(fd, data + 1, n) == (ssize_t)n);
    }
    close(fd);
    pump(s, 1);
    return 0;
}
