/*
 * reload_notif.c - reproducer: a receiver that reloads a live sender's
 * metadata stops getting the sender's larger notifications (UCX).
 *
 *   repro-reload-notif [BACKEND]        (default UCX; SHM and TCP pass)
 *
 * Two processes, A and B, one agent each (side channels on 127.0.0.1).
 * They load each other's metadata and exchange one 100-byte and one
 * 64 KiB notification each way. Then B drops A's metadata and loads it
 * again (nxl_md_invalidate + nxl_md_fetch; A is alive and never noticed).
 * A sends B 20 notifications, 100 bytes and 64 KiB alternately, driving
 * progress. B collects for 3 s. Every call returns NXL_OK.
 *
 * Expected: all 20 arrive. UCX 1.13.1: the 10 of 64 KiB never arrive
 * (16 KiB: never; 8 KiB: all arrive), silently. Exit status 1 when any is
 * missing. docs/reliability.md, "Defects found".
 */
#include <nxl/nxl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N 20
#define BIG (64 * 1024)

static const char *who = "A";

#define CHECK(e)                                                               \
    do {                                                                       \
        nxl_status_t s_ = (e);                                                 \
        if (s_ != NXL_OK) {                                                    \
            printf("%s: %s:%d %s: %s (%s)\n", who, __FILE__, __LINE__, #e,     \
                   nxl_status_name(s_), nxl_last_error());                     \
            fflush(stdout);                                                    \
            _exit(2);                                                          \
        }                                                                      \
    } while (0)

static double
now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static nxl_agent_t *
agent(const char *name, const char *be)
{
    nxl_agent_config_t cfg;
    nxl_agent_t *a;

    nxl_agent_config_init(&cfg);
    cfg.listen_thread = 1;
    cfg.listen_port = 0;
    cfg.listen_addr = "127.0.0.1";
    CHECK(nxl_agent_create(name, &cfg, &a));
    CHECK(nxl_backend_create(a, be, NULL, NULL));
    return a;
}

static void
fetch(nxl_agent_t *a, const char *name, uint16_t port)
{
    nxl_opts_t o;

    nxl_opts_init(&o);
    o.ip_addr = "127.0.0.1";
    o.port = port;
    CHECK(nxl_md_fetch(a, name, &o));
}

/* collect counts notifications into got[] (numbered by their first 4
 * bytes) for secs seconds or until want have arrived. */
static int
collect(nxl_agent_t *a, int *got, int want, double secs)
{
    double t0 = now();
    int n = 0;

    while (now() - t0 < secs && (want <= 0 || n < want)) {
        nxl_notif_list_t *l = NULL;
        size_t k;

        CHECK(nxl_notifs_get(a, &l, NULL));
        for (k = 0; l != NULL && k < l->count; k++) {
            unsigned idx = 0;

            if (l->items[k].len >= 4) {
                memcpy(&idx, l->items[k].msg, 4);
            }
            if (got != NULL && idx < N) {
                got[idx]++;
            }
            n++;
        }
        nxl_notif_list_free(l);
        usleep(1000);
    }
    return n;
}

static int
rd(int fd, void *p, size_t n)
{
    return read(fd, p, n) == (ssize_t)n ? 0 : -1;
}

static int
wr(int fd, const void *p, size_t n)
{
    return write(fd, p, n) == (ssize_t)n ? 0 : -1;
}

int
main(int argc, char **argv)
{
    const char *be = argc > 1 ? argv[1] : "UCX";
    char *m = calloc(1, BIG);
    int ab[2], ba[2], st = 0;
    uint16_t pa, pb;
    char c = 'x';
    pid_t pid;

    if (m == NULL || pipe(ab) != 0 || pipe(ba) != 0) {
        return 2;
    }
    fflush(stdout);
    pid = fork(); /* before any agent exists */
    if (pid == 0) {
        nxl_agent_t *b;
        int got[N] = {0}, i, missing = 0;

        who = "B";
        b = agent("B", be);
        pb = nxl_agent_listen_port(b);
        if (wr(ba[1], &pb, 2) || rd(ab[0], &pa, 2)) {
            _exit(2);
        }
        fetch(b, "A", pa);
        if (wr(ba[1], &c, 1) || rd(ab[0], &c, 1)) { /* both loaded */
            _exit(2);
        }
        CHECK(nxl_notif_send(b, "A", m + 8, 100, NULL));
        CHECK(nxl_notif_send(b, "A", m + 8, BIG, NULL));
        printf("B: before the reload, %d of 2 notifications from A\n",
               collect(b, NULL, 2, 3));
        CHECK(nxl_md_invalidate(b, "A"));
        fetch(b, "A", pa);
        if (wr(ba[1], &c, 1)) {
            _exit(2);
        }
        collect(b, got, N, 3);
        printf("%s: after B reloaded A's metadata, missing:", be);
        for (i = 0; i < N; i++) {
            if (!got[i]) {
                printf(" #%d (%s)", i, i % 2 ? "64 KiB" : "100 B");
                missing++;
            }
        }
        printf("%s\n", missing ? "" : " none");
        fflush(stdout);
        nxl_agent_destroy(b);
        _exit(missing ? 1 : 0);
    }
    {
        nxl_agent_t *a = agent("A", be);
        unsigned i;
        double t0;

        pa = nxl_agent_listen_port(a);
        if (wr(ab[1], &pa, 2) || rd(ba[0], &pb, 2) || rd(ba[0], &c, 1)) {
            return 2;
        }
        fetch(a, "B", pb);
        if (wr(ab[1], &c, 1)) {
            return 2;
        }
        CHECK(nxl_notif_send(a, "B", m + 8, 100, NULL));
        CHECK(nxl_notif_send(a, "B", m + 8, BIG, NULL));
        collect(a, NULL, 2, 3);
        if (rd(ba[0], &c, 1)) { /* B reloaded */
            return 2;
        }
        for (i = 0; i < N; i++) {
            memcpy(m, &i, 4);
            CHECK(nxl_notif_send(a, "B", m, i % 2 ? BIG : 100, NULL));
            nxl_agent_progress(a);
        }
        t0 = now();
        while (now() - t0 < 3.5) {
            nxl_agent_progress(a);
            usleep(1000);
        }
        waitpid(pid, &st, 0);
        nxl_agent_destroy(a);
    }
    free(m);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 2;
}
