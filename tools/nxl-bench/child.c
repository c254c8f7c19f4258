/*
 * child.c - the external baselines' child processes (ucx_perftest,
 * iperf3): finding a program in $PATH, starting it with its output
 * captured, and bounding every wait so a hung baseline never hangs the
 * benchmark.
 */
#include "bench.h"

#include <arpa/inet.h>
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

int
bench_find_exe(const char *name, char *buf, size_t cap)
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

        if (n > 0 &&
            (size_t)snprintf(buf, cap, "%.*s/%s", (int)n, p, name) < cap &&
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

unsigned
bench_free_port(const char *addr)
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
    if (addr != NULL && addr[0] != '\0' &&
        inet_pton(AF_INET, addr, &a.sin_addr) != 1) {
        close(fd);
        return 0;
    }
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0) {
        port = ntohs(a.sin_port);
    }
    close(fd);
    return port;
}

pid_t
bench_spawn(const char *exe, char *const argv[], int out_fd,
            void (*child_env)(const void *arg), const void *arg)
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
    if (child_env != NULL) {
        child_env(arg);
    }
    execv(exe, argv);
    _exit(127);
}

int
bench_reap(pid_t pid, uint64_t deadline)
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

int
bench_run_capture(const char *exe, char *const argv[],
                  void (*child_env)(const void *arg), const void *arg,
                  char *out, size_t cap, uint64_t deadline)
{
    size_t used = 0;
    int pfd[2];
    pid_t pid;

    out[0] = '\0';
    if (pipe(pfd) != 0) {
        return -1;
    }
    pid = bench_spawn(exe, argv, pfd[1], child_env, arg);
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
        if (used + (size_t)n >= cap) { /* keep the tail: summaries end it */
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
    return bench_reap(pid, deadline);
}

void
bench_last_line(const char *out, char *buf, size_t cap)
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
