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
#include "two_proc.h"

#include <stdlib.h>
#include <sys/wait.h>

const char *tp_who = "A";

static double
now_us(void)
{
    return tp_now_s() * 1e6;
}

static int
cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static char buf[1 << 16];

/* wait_one busy-polls until a notification arrives. */
static void
wait_one(nxl_agent_t *a)
{
    for (;;) {
        nxl_notif_list_t *l = NULL;
        size_t n;

        TP_CHECK(nxl_notifs_get(a, &l, NULL));
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
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        nxl_agent_t *b;

        tp_who = "B";
        b = tp_agent("B", backend, pcopy, buf, sizeof(buf));
        pb = nxl_agent_listen_port(b);
        if (write(ba[1], &pb, 2) != 2 || read(ab[0], &pa, 2) != 2) {
            _exit(2);
        }
        tp_fetch(b, "A", pa);
        if (write(ba[1], "r", 1) != 1) {
            _exit(2);
        }
        for (i = 0; i < iter + 1000; i++) {
            wait_one(b);
            TP_CHECK(nxl_notif_send(b, "A", NULL, 0, NULL));
        }
        if (read(ab[0], &pa, 1) != 1) { /* A is done */
            _exit(2);
        }
        nxl_agent_destroy(b);
        _exit(0);
    }
    {
        nxl_agent_t *a = tp_agent("A", backend, pcopy, buf, sizeof(buf));
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
        tp_fetch(a, "B", pb);
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
            TP_CHECK(nxl_xfer_create(a, NXL_WRITE, &ll, &rl, "B", &no, &x));
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
                TP_CHECK(s);
            } else {
                TP_CHECK(nxl_notif_send(a, "B", buf, size, NULL));
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
               xfer ? "4 KiB WRITE + notification of" : "notification of", size,
               iter, rtt[iter / 2], rtt[iter / 10], rtt[iter - 1 - iter / 10]);
        free(rtt);
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
