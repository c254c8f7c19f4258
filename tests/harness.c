/* harness.c - fork per case, alarm, tally. Usage:
 *   nxl_tests [-l] [-j] [filter...]   (filter: substring of suite/case) */
#include "harness.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern const xt_suite *const xt_suites[];

static const char *xt_current_param;

const char *
xt_param(void)
{
    return xt_current_param;
}

uint64_t
xt_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* xt_all_stopped returns 1 when every thread of pid shows state 'T' (or
 * 't') in its stat file, 0 when one does not, -1 when pid is gone. */
static int
xt_all_stopped(pid_t pid)
{
    char path[64], line[512];
    struct dirent *de;
    int all = 1, seen = 0;
    DIR *d;

    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    d = opendir(path);
    if (d == NULL) {
        return -1;
    }
    while (all && (de = readdir(d)) != NULL) {
        FILE *f;
        char *rp;

        if (de->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof(path), "/proc/%d/task/%.20s/stat", (int)pid,
                 de->d_name);
        f = fopen(path, "r");
        if (f == NULL) {
            continue; /* the thread ended */
        }
        if (fgets(line, sizeof(line), f) != NULL &&
            (rp = strrchr(line, ')')) != NULL && rp[1] == ' ') {
            seen++;
            all = rp[2] == 'T' || rp[2] == 't';
        }
        fclose(f);
    }
    closedir(d);
    return seen > 0 ? all : -1;
}

int
xt_stop_process(pid_t pid)
{
    uint64_t end = xt_now_ms() + 3000;
    int r;

    if (kill(pid, SIGSTOP) != 0) {
        return -1;
    }
    while ((r = xt_all_stopped(pid)) == 0 && xt_now_ms() < end) {
        usleep(200);
    }
    return r == 1 ? 0 : -1;
}

/* xt_fd_walk calls fn(target, arg) for each descriptor this process has
 * open (not the directory's own), target being what it points to, until
 * fn returns non-zero. Returns how many it visited, or -1 when
 * /proc/self/fd cannot be read. */
static int
xt_fd_walk(int (*fn)(const char *target, void *arg), void *arg)
{
    char path[64], target[256];
    struct dirent *e;
    DIR *d = opendir("/proc/self/fd");
    int n = 0, stop = 0;
    ssize_t len;

    if (d == NULL) {
        return -1;
    }
    while (!stop && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d)) {
            continue;
        }
        n++;
        if (fn == NULL) {
            continue;
        }
        snprintf(path, sizeof(path), "/proc/self/fd/%.20s", e->d_name);
        len = readlink(path, target, sizeof(target) - 1);
        target[len < 0 ? 0 : len] = '\0';
        stop = fn(target, arg);
    }
    closedir(d);
    return n;
}

int
xt_open_fds(void)
{
    return xt_fd_walk(NULL, NULL);
}

/* xt_is_nvidiactl stops the walk at the CUDA driver's control node. */
static int
xt_is_nvidiactl(const char *target, void *arg)
{
    return *(int *)arg = strcmp(target, "/dev/nvidiactl") == 0;
}

int
xt_gpu_driver_open(void)
{
    int found = 0;

    (void)xt_fd_walk(xt_is_nvidiactl, &found);
    return found;
}

/* xt_print_target prints one descriptor's target. */
static int
xt_print_target(const char *target, void *arg)
{
    (void)arg;
    printf("  fd -> %s\n", target);
    return 0;
}

void
xt_print_fds(void)
{
    (void)xt_fd_walk(xt_print_target, NULL);
    fflush(stdout);
}

#ifdef __SANITIZE_ADDRESS__
int __lsan_do_recoverable_leak_check(void);
#endif

int
xt_leaks(void)
{
#ifdef __SANITIZE_ADDRESS__
    return __lsan_do_recoverable_leak_check();
#else
    return 0;
#endif
}

int
xt_tsan(void)
{
    return NXL__TSAN;
}

void
xt_tsan_release(const void *base)
{
    nxl__tsan_release(base);
}

void
xt_tsan_acquire(const void *base)
{
    nxl__tsan_acquire(base);
}

/* xt_timeout_scale is XT_TIMEOUT_SCALE (1..100) when set, else 4 under
 * ThreadSanitizer (5-15x slower), else 1. */
static unsigned
xt_timeout_scale(void)
{
    const char *v = getenv("XT_TIMEOUT_SCALE");
    long k;

    if (v != NULL && *v != '\0') {
        k = strtol(v, NULL, 10);
        if (k >= 1 && k <= 100) {
            return (unsigned)k;
        }
        fprintf(stderr, "XT_TIMEOUT_SCALE=%s ignored (1..100)\n", v);
    }
    return NXL__TSAN ? 4 : 1;
}

static int
xt_match(const char *full, int argc, char **argv)
{
    int i, any = 0;

    for (i = 1; i < argc; i++) {
        if (argv[i][0] == '-') {
            continue;
        }
        any = 1;
        if (strstr(full, argv[i]) != NULL) {
            return 1;
        }
    }
    return !any;
}

static int
xt_run_one(const char *full, const xt_case *c, unsigned timeout_s)
{
    uint64_t t0 = xt_now_ms();
    int wstatus = 0, rc;
    pid_t pid;

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        alarm(timeout_s);
        rc = c->fn();
        fflush(stdout);
        fflush(stderr);
        _exit(rc);
    }
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    /* Reap anything the case left behind (forked peers). */
    kill(-pid, SIGKILL);
    if (WIFEXITED(wstatus)) {
        rc = WEXITSTATUS(wstatus);
    } else {
        fprintf(stderr, "  %s: killed by signal %d%s\n", full,
                WTERMSIG(wstatus),
                WTERMSIG(wstatus) == SIGALRM ? " (timeout)" : "");
        rc = 1;
    }
    printf("%-4s %s (%llu ms)\n",
           rc == 0 ? "ok" : (rc == XT_SKIP ? "SKIP" : "FAIL"), full,
           (unsigned long long)(xt_now_ms() - t0));
    return rc;
}

int
main(int argc, char **argv)
{
    unsigned passed = 0, failed = 0, skipped = 0;
    const char *one_param[] = {NULL, NULL};
    const char *const *params;
    const xt_suite *s;
    const xt_case *c;
    char full[256];
    int i, list = 0, rc;
    unsigned scale = xt_timeout_scale();
    size_t k, p;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-l") == 0) {
            list = 1;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    for (k = 0; xt_suites[k] != NULL; k++) {
        s = xt_suites[k];
        params = s->params ? s->params : one_param;
        for (p = 0; p == 0 || params[p] != NULL; p++) {
            xt_current_param = params[p];
            for (c = s->cases; c->name != NULL; c++) {
                if (params[p] != NULL) {
                    snprintf(full, sizeof(full), "%s/%s/%s", s->name, params[p],
                             c->name);
                } else {
                    snprintf(full, sizeof(full), "%s/%s", s->name, c->name);
                }
                if (!xt_match(full, argc, argv)) {
                    continue;
                }
                if (list) {
                    printf("%s\n", full);
                    continue;
                }
                rc = xt_run_one(full, c,
                                (s->timeout_s ? s->timeout_s : 60) * scale);
                if (rc == 0) {
                    passed++;
                } else if (rc == XT_SKIP) {
                    skipped++;
                } else {
                    failed++;
                }
            }
            if (params[p] == NULL) {
                break;
            }
        }
    }
    if (!list) {
        printf("%u passed, %u failed, %u skipped\n", passed, failed, skipped);
    }
    return failed ? 1 : 0;
}
