/*
 * notif_lat.c - nxl-notif-lat: notification round trips between two
 * processes of this host, public API only.
 *
 *   nxl-notif-lat [--backend UCX|SHM|TCP] [--params K=V:K=V] [--iter N]
 *                 [--size BYTES] [--xfer]
 *
 * A (this process) and B (forked before any agent exists) load each
 * other. Per iteration A sends B a notification of --size bytes (with
 * --xfer: a 4 KiB WRITE carrying it, waited for) and busy-polls
 * nxl_notifs_get until B's answer (an empty notification, sent as soon as
 * B's own busy poll sees A's) arrives. Prints the median, p10 and p90 of
 * the round trip in microseconds over --iter iterations after 1,000
 * untimed ones.
 */
#include <nxl/nxl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXP 8

static const char *who = "A";

#define CHECK(e)                                                               \
    do {                                                                       \
        nxl_status_t s_ = (e);                                                 \
        if (s_ != NXL_OK) {                                                    \
            fprintf(stderr, "%s: %s:%d %s: %s (%s)\n", who, __FILE__,          \
                    __LINE__, #e, nxl_status_name(s_), nxl_last_error());      \
            _exit(2);                                                          \
        }                                                                      \
    } while (0)

static double
now_us(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int
cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static char buf[1 << 16];

static nxl_agent_t *
agent(const char *name, const char *backend, char *params)
{
    nxl_param_t pr[MAXP];
    nxl_params_t ps = {pr, 0};
    nxl_desc_t d = {(uintptr_t)buf, sizeof(buf), 0};
    nxl_dlist_t dl = {NXL_DRAM, &d, 1};
    nxl_agent_config_t cfg;
    nxl_agent_t *a;
    char *item, *save = NULL, *eq;

    for (item = strtok_r(params, ":", &save); item != NULL && ps.count < MAXP;
         item = strtok_r(NULL, ":", &save)) {
        eq = strchr(item, '=');
        if (eq != NULL) {
            *eq = '\0';
            pr[ps.count++] = (nxl_param_t){item, eq + 1};
        }
    }
    nxl_agent_config_init(&cfg);
    cfg.listen_thread = 1;
    cfg.listen_port = 0;
    cfg.listen_addr = "127.0.0.1";
    CHECK(nxl_agent_create(name, &cfg, &a));
    CHECK(nxl_backend_create(a, backend, &ps, NULL));
    CHECK(nxl_mem_register(a, &dl, NULL));
    return a;
}

/* wait_one busy-polls until a notification arrives. */
static void
wait_one(nxl_agent_t *a)
{
    for (;;) {
        nxl_notif_list_t *l = NULL;
        size_t n;

        CHECK(nxl_notifs_get(a, &l, NULL));
        n = l != NULL ? l->count : 0;
        nxl_notif_list_free(l);
        if (n > 0) {
            return;
        }
    }
}

int
main(int argc, char **argv)
{
    const char *backend = "UCX";
    char params[256] = "", pcopy[256];
    int iter = 20000, xfer = 0, ab[2], ba[2], i, st;
    size_t size = 64;
    uint16_t pa, pb;
    double *rtt;
    nxl_opts_t fo;
    pid_t pid;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
            backend = argv[++i];
        } else if (strcmp(argv[i], "--params") == 0 && i + 1 < argc) {
            snprintf(params, sizeof(params), "%s", argv[++i]);
        } else if (strcmp(argv[i], "--iter") == 0 && i + 1 < argc) {
            iter = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
            size = (size_t)atol(argv[++i]);
        } else if (strcmp(argv[i], "--xfer") == 0) {
            xfer = 1;
        } else {
            fprintf(stderr,
                    "usage: nxl-notif-lat [--backend UCX|SHM|TCP] [--params "
                    "K=V:K=V] [--iter N] [--size BYTES] [--xfer]\n");
            return 2;
        }
    }
    if (iter < 1 || size > sizeof(buf) || pipe(ab) != 0 || pipe(ba) != 0) {
        return 2;
    }
    memcpy(pcopy, params, sizeof(pcopy));
    nxl_opts_init(&fo);
    fo.ip_addr = "127.0.0.1";
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        nxl_agent_t *b;

        who = "B";
        b = agent("B", backend, pcopy);
        pb = nxl_agent_listen_port(b);
        if (write(ba[1], &pb, 2) != 2 || read(ab[0], &pa, 2) != 2) {
            _exit(2);
        }
        fo.port = pa;
        CHECK(nxl_md_fetch(b, "A", &fo));
        if (write(ba[1], "r", 1) != 1) {
            _exit(2);
        }
        for (i = 0; i < iter + 1000; i++) {
            wait_one(b);
            CHECK(nxl_notif_send(b, "A", NULL, 0, NULL));
        }
        if (read(ab[0], &pa, 1) != 1) { /* A is done */
            _exit(2);
        }
        nxl_agent_destroy(b);
        _exit(0);
    }
    {
        nxl_agent_t *a = agent("A", backend, pcopy);
        nxl_desc_t l = {(uintptr_t)buf, 4096, 0}, r;
        nxl_dlist_t ll = {NXL_DRAM, &l, 1}, rl = {NXL_DRAM, &r, 1};
        nxl_opts_t no;
        nxl_xfer_t *x = NULL;
        uint64_t baddr = 0;
        char c;

        pa = nxl_agent_listen_port(a);
        if (write(ab[1], &pa, 2) != 2 || read(ba[0], &pb, 2) != 2) {
            return 2;
        }
        fo.port = pb;
        CHECK(nxl_md_fetch(a, "B", &fo));
        if (read(ba[0], &c, 1) != 1) {
            return 2;
        }
        if (xfer) {
            /* B's buffer sits at the same address (forked). */
            baddr = (uintptr_t)buf;
            r = (nxl_desc_t){baddr, 4096, 0};
            nxl_opts_init(&no);
            no.has_notif = 1;
            no.notif = buf;
            no.notif_len = size;
            CHECK(nxl_xfer_create(a, NXL_WRITE, &ll, &rl, "B", &no, &x));
        }
        rtt = calloc((size_t)iter, sizeof(*rtt));
        if (rtt == NULL) {
            return 2;
        }
        for (i = 0; i < iter + 1000; i++) {
            double t0 = now_us();
            nxl_status_t s;

            if (x != NULL) {
                s = nxl_xfer_post(x, NULL);
                while (s == NXL_IN_PROG) {
                    s = nxl_xfer_status(x);
                }
                CHECK(s);
            } else {
                CHECK(nxl_notif_send(a, "B", buf, size, NULL));
            }
            wait_one(a);
            if (i >= 1000) {
                rtt[i - 1000] = now_us() - t0;
            }
        }
        if (write(ab[1], "d", 1) != 1) {
            return 2;
        }
        waitpid(pid, &st, 0);
        if (x != NULL) {
            nxl_xfer_release(x);
        }
        nxl_agent_destroy(a);
        qsort(rtt, (size_t)iter, sizeof(*rtt), cmp_d);
        printf("%s%s%s, %s %zu B, %d round trips: median %.2f us, p10 %.2f, "
               "p90 %.2f\n",
               backend, params[0] ? " " : "", params,
               xfer ? "4 KiB WRITE + notification of" : "notification of",
               size, iter, rtt[iter / 2], rtt[iter / 10],
               rtt[iter - 1 - iter / 10]);
        free(rtt);
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
