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
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PT_OUT_MAX (64 * 1024) /* client output kept for parsing */
#define PT_CONNECT_TRIES 50    /* client tries while the server starts */

/* bench_perftest_find looks for ucx_perftest in $PATH; returns 0 and the
 * path in buf, or -1 (not installed). */
int
bench_perftest_find(char *buf, size_t cap)
{
    const char *path = getenv("PATH");
    const char *p;

    if (path == NULL || path[0] == '\0') {
        path = "/usr/local/bin:/usr/bin:/bin";
    }
    for (p = path; *p != '\0';) {
        const char *e = strchr(p, ':');
        size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
        struct stat st;

        if (n > 0 && (size_t)snprintf(buf, cap, "%.*s/ucx_perftest", (int)n,
                                      p) < cap &&
            stat(buf, &st) == 0 && S_ISREG(st.st_mode) &&
            access(buf, X_OK) == 0) {
            return 0;
        }
        p += n;
        if (*p == ':') {
            p++;
        }
    }
    return -1;
}

/* free_port asks the kernel for a TCP port that is free now. */
static unsigned
free_port(void)
{
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    unsigned port = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        return 0;
    }
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0) {
        port = ntohs(a.sin_port);
    }
    close(fd);
    return port;
}

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

/* spawn starts ucx_perftest with argv; its stdout and stderr go to out_fd
 * (or /dev/null when -1). */
static pid_t
spawn(const bench_opts_t *o, const char *exe, char *const argv[], int out_fd,
      int info)
{
    pid_t parent = getpid();
    pid_t pid;

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid != 0) {
        return pid;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent) {
        _exit(1);
    }
    if (out_fd < 0) {
        out_fd = open("/dev/null", O_WRONLY);
    }
    if (out_fd >= 0) {
        dup2(out_fd, 1);
        dup2(out_fd, 2);
    }
    set_engine_env(o);
    if (info) {
        setenv("UCX_LOG_LEVEL", "info", 1); /* the ep_cfg line: lanes */
    }
    execv(exe, argv);
    _exit(127);
}

/* reap waits for pid until deadline (ns), then kills it. Returns its wait
 * status, or -1 when it had to be killed. */
static int
reap(pid_t pid, uint64_t deadline)
{
    int status = 0;

    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);

        if (r == pid) {
            return status;
        }
        if (r < 0 && errno != EINTR) {
            return -1;
        }
        if (bench_now_ns() >= deadline) {
            kill(pid, SIGKILL);
            (void)waitpid(pid, &status, 0);
            return -1;
        }
        usleep(2000);
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

/* run_client runs one client against port, collecting its output; returns
 * its wait status or -1 (timeout / error). */
static int
run_client(const bench_opts_t *o, const char *exe, char *const argv[],
           char *out, size_t cap, uint64_t deadline)
{
    size_t used = 0;
    int pfd[2];
    pid_t pid;

    out[0] = '\0';
    if (pipe(pfd) != 0) {
        return -1;
    }
    pid = spawn(o, exe, argv, pfd[1], 1);
    close(pfd[1]);
    if (pid < 0) {
        close(pfd[0]);
        return -1;
    }
    for (;;) {
        struct pollfd pf = {pfd[0], POLLIN, 0};
        uint64_t now = bench_now_ns();
        char tmp[4096];
        ssize_t n;

        if (now >= deadline) {
            break;
        }
        if (poll(&pf, 1, (int)((deadline - now) / 1000000ull) + 1) <= 0) {
            continue;
        }
        n = read(pfd[0], tmp, sizeof(tmp));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        if (used + (size_t)n >= cap) { /* keep the tail: Final comes last */
            size_t drop = used + (size_t)n - (cap - 1);

            if (drop > used) {
                drop = used;
            }
            memmove(out, out + drop, used - drop);
            used -= drop;
            if ((size_t)n > cap - 1 - used) {
                n = (ssize_t)(cap - 1 - used);
            }
        }
        memcpy(out + used, tmp, (size_t)n);
        used += (size_t)n;
        out[used] = '\0';
    }
    close(pfd[0]);
    return reap(pid, deadline);
}

/* last_line copies the last non-empty line of out into buf. */
static void
last_line(const char *out, char *buf, size_t cap)
{
    size_t end = strlen(out);
    size_t start;

    while (end > 0 && (out[end - 1] == '\n' || out[end - 1] == '\r')) {
        end--;
    }
    start = end;
    while (start > 0 && out[start - 1] != '\n') {
        start--;
    }
    snprintf(buf, cap, "%.*s", (int)(end - start), out + start);
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
    char *cargv[] = {"ucx_perftest", "127.0.0.1", "-p", pp, "-t",
                     op == NXL_WRITE ? "ucp_put_bw" : "ucp_get",
                     "-s", sz, "-n", nn, "-w", ww, NULL};
    uint64_t deadline =
        bench_now_ns() + (uint64_t)o->timeout_s * 1000000000ull;
    unsigned port = free_port();
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
    srv = spawn(o, s->perftest, sargv, -1, 0);
    if (srv < 0) {
        snprintf(why, whycap, "fork: %s", strerror(errno));
        free(out);
        return -1;
    }
    /* The client cannot connect until the server listens: retry that. */
    for (k = 0; k < PT_CONNECT_TRIES && bench_now_ns() < deadline; k++) {
        st = run_client(o, s->perftest, cargv, out, PT_OUT_MAX, deadline);
        if (st < 0 || (WIFEXITED(st) && WEXITSTATUS(st) == 0) ||
            strstr(out, "onnect") == NULL) {
            break;
        }
        usleep(100000);
    }
    if (reap(srv, bench_now_ns() + 2000000000ull) < 0 && st >= 0 &&
        bench_now_ns() >= deadline) {
        st = -1;
    }
    if (st < 0) {
        snprintf(why, whycap, "ucx_perftest did not finish within %d s "
                 "(killed)", o->timeout_s);
    } else if ((bw = parse_final(out)) < 0) {
        last_line(out, tail, sizeof(tail));
        snprintf(why, whycap, "ucx_perftest printed no 'Final:' line (%s "
                 "%d): %s", WIFEXITED(st) ? "exit" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), tail);
    } else if (lanes != NULL && lanes[0] == '\0') {
        parse_lanes(out, lanes, lanecap);
    }
    free(out);
    return bw;
}
