/*
 * perftest.c - the Base B/W column of --backend UCX: ucx_perftest, UCX's
 * own benchmark, run for every row in the same run (a server and a client
 * on this host, -t ucp_put_bw for WRITE, -t ucp_get for READ, the row's
 * block size, iterations and warmup times the batch size), with the UCX
 * transports the NXL run uses (UCX_* variables of this process, plus the
 * engine_config of --backend_params as UCX_KEY=VAL).
 *
 * ucx_perftest moves one buffer that UCX allocated itself (hot in cache,
 * in shared memory its peer maps); compare it with --hot rows.
 *
 * Every child is bounded: the client by --timeout, the server by a second
 * more; on expiry both are killed and the row's column reads '-'.
 */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PT_OUT_MAX (64 * 1024) /* client output kept for parsing */
#define PT_CONNECT_TRIES 50    /* client tries while the server starts */

/* set_engine_env exports engine_config ("KEY=VAL;KEY=VAL", keys with or
 * without UCX_) of --backend_params as UCX_KEY=VAL (in a child). */
static void
set_engine_env(const bench_opts_t *o)
{
    const char *v = NULL;
    char buf[1024];
    char *save = NULL;
    char *tok;
    size_t i;

    for (i = 0; i < o->num_params; i++) {
        if (strcmp(o->params[i].key, "engine_config") == 0) {
            v = o->params[i].value;
        }
    }
    if (v == NULL || snprintf(buf, sizeof(buf), "%s", v) >= (int)sizeof(buf)) {
        return;
    }
    for (tok = strtok_r(buf, ";", &save); tok != NULL;
         tok = strtok_r(NULL, ";", &save)) {
        char name[256];
        char *eq = strchr(tok, '=');

        while (*tok == ' ') {
            tok++;
        }
        if (eq == NULL || eq == tok) {
            continue;
        }
        *eq = '\0';
        snprintf(name, sizeof(name), "%s%s",
                 strncmp(tok, "UCX_", 4) == 0 ? "" : "UCX_", tok);
        setenv(name, eq + 1, 1);
    }
}

/* pt_env is what a ucx_perftest child gets: the engine_config of
 * --backend_params, and UCX's info log (its lanes) for a client. */
typedef struct pt_env {
    const bench_opts_t *o;
    int info;
} pt_env;

/* pt_child_env sets a ucx_perftest child's environment (bench_spawn). */
static void
pt_child_env(const void *arg)
{
    const pt_env *e = arg;

    set_engine_env(e->o);
    if (e->info) {
        setenv("UCX_LOG_LEVEL", "info", 1); /* the ep_cfg line: lanes */
    }
}

/* parse_final reads the bandwidth (overall, MB/s = MiB/s) from the
 * "Final:" summary line; returns GB/s, or -1. */
static double
parse_final(const char *out)
{
    const char *p = out;

    while ((p = strstr(p, "Final:")) != NULL) {
        double v[8];
        int n = sscanf(p + 6, "%lf %lf %lf %lf %lf %lf %lf %lf", &v[0], &v[1],
                       &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);

        if (n == 8 && v[5] > 0) {
            return v[5] * 1048576.0 / 1e9;
        }
        p += 6;
    }
    return -1;
}

/* parse_lanes copies the first "ep_cfg[...]: ..." description (UCX info
 * log) into buf. */
static void
parse_lanes(const char *out, char *buf, size_t cap)
{
    const char *p = strstr(out, "ep_cfg[");
    const char *c;
    size_t n;

    if (p == NULL || (c = strstr(p, "]: ")) == NULL) {
        return;
    }
    c += 3;
    n = strcspn(c, "\r\n");
    snprintf(buf, cap, "%.*s", (int)n, c);
}

/* bench_perftest_row measures one row with ucx_perftest: op, message size
 * block, iters and warm messages. Returns GB/s, or -1 with the reason in
 * why. lanes (when still empty) receives UCX's lane description. */
double
bench_perftest_row(const bench_session_t *s, nxl_op_t op, size_t block,
                   size_t iters, size_t warm, char *why, size_t whycap,
                   char *lanes, size_t lanecap)
{
    const bench_opts_t *o = s->o;
    char sz[32], nn[32], ww[32], pp[16], tail[192];
    char *sargv[] = {"ucx_perftest", "-p", pp, NULL};
    char *cargv[] = {"ucx_perftest",
                     "127.0.0.1",
                     "-p",
                     pp,
                     "-t",
                     op == NXL_WRITE ? "ucp_put_bw" : "ucp_get",
                     "-s",
                     sz,
                     "-n",
                     nn,
                     "-w",
                     ww,
                     NULL};
    uint64_t deadline = bench_now_ns() + (uint64_t)o->timeout_s * 1000000000ull;
    unsigned port = bench_free_port(NULL);
    pt_env senv = {o, 0}, cenv = {o, 1};
    char *out = NULL;
    double bw = -1;
    pid_t srv;
    int st = -1;
    int k;

    why[0] = '\0';
    if (port == 0) {
        snprintf(why, whycap, "no free TCP port for ucx_perftest");
        return -1;
    }
    out = malloc(PT_OUT_MAX);
    if (out == NULL) {
        snprintf(why, whycap, "out of memory");
        return -1;
    }
    snprintf(sz, sizeof(sz), "%zu", block);
    snprintf(nn, sizeof(nn), "%zu", iters > 0 ? iters : 1);
    snprintf(ww, sizeof(ww), "%zu", warm);
    snprintf(pp, sizeof(pp), "%u", port);
    srv = bench_spawn(s->perftest, sargv, -1, pt_child_env, &senv);
    if (srv < 0) {
        snprintf(why, whycap, "fork: %s", strerror(errno));
        free(out);
        return -1;
    }
    /* The client cannot connect until the server listens: retry that. */
    for (k = 0; k < PT_CONNECT_TRIES && bench_now_ns() < deadline; k++) {
        st = bench_run_capture(s->perftest, cargv, pt_child_env, &cenv, out,
                               PT_OUT_MAX, deadline);
        if (st < 0 || (WIFEXITED(st) && WEXITSTATUS(st) == 0) ||
            strstr(out, "onnect") == NULL) {
            break;
        }
        usleep(100000);
    }
    if (bench_reap(srv, bench_now_ns() + 2000000000ull) < 0 && st >= 0 &&
        bench_now_ns() >= deadline) {
        st = -1;
    }
    if (st < 0) {
        snprintf(why, whycap,
                 "ucx_perftest did not finish within %d s "
                 "(killed)",
                 o->timeout_s);
    } else if ((bw = parse_final(out)) < 0) {
        bench_last_line(out, tail, sizeof(tail));
        snprintf(why, whycap,
                 "ucx_perftest printed no 'Final:' line (%s "
                 "%d): %s",
                 WIFEXITED(st) ? "exit" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), tail);
    } else if (lanes != NULL && lanes[0] == '\0') {
        parse_lanes(out, lanes, lanecap);
    }
    free(out);
    return bw;
}
