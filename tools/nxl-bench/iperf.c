/*
 * iperf.c - the Base B/W column of --backend TCP: iperf3, one stream,
 * on the same path as the NXL transfers, run for every row in the same
 * run. The target (--listen, or the local child) starts "iperf3 -s" on
 * its listen address and tells the initiator the port in its region
 * message; the initiator runs "iperf3 -c" for 2 s before each op's rows
 * (their Base B/W) and after them (printed), with -R for READ (the target
 * sends, as it does for an NXL READ).
 *
 * iperf3 sends one 128 KiB buffer over and over (hot in cache) and never
 * waits for a reply; NXL moves distinct bytes per request. The ratio is
 * NXL / iperf3 as measured in the same minute.
 */
#include "bench.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define IP_OUT_MAX (256 * 1024) /* iperf3 -J output kept for parsing */
#define IP_CONNECT_TRIES 50     /* client tries while the server starts */
#define IP_SECS "2"             /* seconds per run (--smoke: 1) */

unsigned
bench_iperf_server(const char *addr, pid_t *pid_p)
{
    char exe[256], pp[16], bind_addr[64];
    char *argv[8];
    unsigned port;
    int argc = 0;
    pid_t pid;

    *pid_p = -1;
    if (bench_find_exe("iperf3", exe, sizeof(exe)) != 0) {
        return 0;
    }
    port = bench_free_port(addr);
    if (port == 0) {
        return 0;
    }
    snprintf(pp, sizeof(pp), "%u", port);
    argv[argc++] = "iperf3";
    argv[argc++] = "-s";
    argv[argc++] = "-p";
    argv[argc++] = pp;
    if (addr != NULL && addr[0] != '\0') {
        snprintf(bind_addr, sizeof(bind_addr), "%s", addr);
        argv[argc++] = "-B";
        argv[argc++] = bind_addr;
    }
    argv[argc] = NULL;
    pid = bench_spawn(exe, argv, -1, NULL, NULL);
    if (pid < 0) {
        return 0;
    }
    *pid_p = pid;
    return port;
}

/* parse_rate reads end.sum_received.bits_per_second of iperf3 -J output;
 * returns GB/s, or -1. */
static double
parse_rate(const char *out)
{
    const char *p = strstr(out, "\"sum_received\"");
    double bps;

    if (p == NULL || (p = strstr(p, "\"bits_per_second\"")) == NULL) {
        return -1;
    }
    p = strchr(p + 17, ':');
    if (p == NULL || sscanf(p + 1, "%lf", &bps) != 1 || !(bps > 0)) {
        return -1;
    }
    return bps / 8.0 / 1e9;
}

/* parse_error copies iperf3 -J's "error" text into buf (or nothing). */
static void
parse_error(const char *out, char *buf, size_t cap)
{
    const char *p = strstr(out, "\"error\"");
    const char *q;

    buf[0] = '\0';
    if (p == NULL || (p = strchr(p + 7, '"')) == NULL) {
        return;
    }
    q = strchr(p + 1, '"');
    if (q != NULL) {
        snprintf(buf, cap, "%.*s", (int)(q - p - 1), p + 1);
    }
}

double
bench_iperf_row(const bench_session_t *s, nxl_op_t op, char *why,
                size_t whycap)
{
    const bench_opts_t *o = s->o;
    char pp[16], host[64], err[192];
    char *argv[] = {"iperf3", "-c", host, "-p", pp, "-t",
                    o->smoke ? "1" : IP_SECS, "-J",
                    op == NXL_READ ? "-R" : NULL, NULL};
    uint64_t deadline =
        bench_now_ns() + (uint64_t)o->timeout_s * 1000000000ull;
    char *out = malloc(IP_OUT_MAX);
    double bw = -1;
    int st = -1;
    int k;

    why[0] = '\0';
    if (out == NULL) {
        snprintf(why, whycap, "out of memory");
        return -1;
    }
    snprintf(pp, sizeof(pp), "%u", s->iperf_port);
    snprintf(host, sizeof(host), "%s", s->rhost);
    for (k = 0; k < IP_CONNECT_TRIES && bench_now_ns() < deadline; k++) {
        st = bench_run_capture(s->iperf, argv, NULL, NULL, out, IP_OUT_MAX,
                               deadline);
        parse_error(out, err, sizeof(err));
        if (st < 0 || strstr(err, "connect") == NULL) {
            break;
        }
        usleep(100000); /* the server is not listening yet */
    }
    if (st < 0) {
        snprintf(why, whycap, "iperf3 did not finish within %d s (killed)",
                 o->timeout_s);
    } else if ((bw = parse_rate(out)) < 0) {
        if (err[0] == '\0') {
            bench_last_line(out, err, sizeof(err));
        }
        snprintf(why, whycap, "iperf3 reported no rate (%s %d): %s",
                 WIFEXITED(st) ? "exit" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), err);
    }
    free(out);
    return bw;
}
