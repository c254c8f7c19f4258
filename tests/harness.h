/*
 * harness.h - the plain C test runner (STYLE.md §3.8).
 *
 * Each case runs in a forked child under alarm(), so a crash or a hang is
 * one failure. A case returns 0 (pass), XT_SKIP (77, after printing why) or
 * anything else (fail). The runner prints "N passed, N failed, N skipped"
 * last.
 */
#ifndef NXL_TEST_HARNESS_H
#define NXL_TEST_HARNESS_H

#include <nxl/nxl.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

typedef int (*xt_fn)(void);
typedef struct {
    const char *name;
    xt_fn fn;
} xt_case;

/* A suite: a name, its cases, and the seconds each case may take (times
 * XT_TIMEOUT_SCALE from the environment, default 1, or 4 under
 * ThreadSanitizer). A suite with param_list runs once per parameter;
 * xt_param() returns it. */
typedef struct {
    const char *name;
    const xt_case *cases;
    unsigned timeout_s;
    const char *const *params; /* NULL-terminated, or NULL */
} xt_suite;

#define XT_SKIP 77

/* xt_param returns the current suite parameter (e.g. a backend name). */
const char *xt_param(void);

#define XT_FAILF(...)                                                          \
    do {                                                                       \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                        \
        fprintf(stderr, __VA_ARGS__);                                          \
        fputc('\n', stderr);                                                   \
        return 1;                                                              \
    } while (0)

#define XT_ASSERT(cond)                                                        \
    do {                                                                       \
        if (!(cond))                                                           \
            XT_FAILF("assertion failed: %s", #cond);                           \
    } while (0)

#define XT_ASSERT_EQ(a, b)                                                     \
    do {                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                    \
        if (a_ != b_)                                                          \
            XT_FAILF("%s == %s (%lld vs %lld)", #a, #b, a_, b_);               \
    } while (0)

#define XT_ASSERT_STR(a, b)                                                    \
    do {                                                                       \
        const char *a_ = (a), *b_ = (b);                                       \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                   \
            XT_FAILF("%s == %s (\"%s\" vs \"%s\")", #a, #b,                    \
                     a_ ? a_ : "(null)", b_ ? b_ : "(null)");                  \
    } while (0)

#define XT_ASSERT_OK(expr)                                                     \
    do {                                                                       \
        nxl_status_t s_ = (expr);                                              \
        if (s_ != NXL_OK)                                                      \
            XT_FAILF("%s -> %s (%s)", #expr, nxl_status_name(s_),              \
                     nxl_last_error());                                        \
    } while (0)

/* XT_ASSERT_STATUS checks a status and that a failure left a message. */
#define XT_ASSERT_STATUS(expr, want)                                           \
    do {                                                                       \
        nxl_status_t s_ = (expr);                                              \
        if (s_ != (want))                                                      \
            XT_FAILF("%s -> %s, want %s (%s)", #expr, nxl_status_name(s_),     \
                     nxl_status_name(want), nxl_last_error());                 \
        if ((want) < 0 && nxl_last_error()[0] == '\0')                         \
            XT_FAILF("%s -> %s without an nxl_last_error message", #expr,      \
                     nxl_status_name(s_));                                     \
    } while (0)

/* XT_ASSERT_MSG checks that the last error mentions text. */
#define XT_ASSERT_MSG(text)                                                    \
    do {                                                                       \
        if (strstr(nxl_last_error(), (text)) == NULL)                          \
            XT_FAILF("nxl_last_error() \"%s\" does not mention \"%s\"",        \
                     nxl_last_error(), (text));                                \
    } while (0)

#define XT_SKIP_IF(cond, ...)                                                  \
    do {                                                                       \
        if (cond) {                                                            \
            printf("  skip: ");                                                \
            printf(__VA_ARGS__);                                               \
            printf("\n");                                                      \
            fflush(stdout);                                                    \
            return XT_SKIP;                                                    \
        }                                                                      \
    } while (0)

/* xt_now_ms returns a monotonic clock in milliseconds. */
uint64_t xt_now_ms(void);

/* xt_stop_process sends SIGSTOP to pid and returns 0 once every thread of
 * it is stopped (read from /proc/<pid>/task/<tid>/stat), -1 after 3 s.
 * kill() alone returns before the group stop ends: a thread already on a
 * CPU may still answer a request sent just after it. */
int xt_stop_process(pid_t pid);

/* xt_open_fds counts this process's open file descriptors, or -1. */
int xt_open_fds(void);

/* xt_gpu_driver_open says whether the CUDA driver is live in this process
 * (it holds /dev/nvidiactl). cuInit and the first context open about a
 * dozen descriptors (device nodes, pipes, an event fd, a socket) that the
 * driver keeps for the process's life: a count taken before it started
 * cannot be compared with one taken after. */
int xt_gpu_driver_open(void);

/* xt_print_fds prints each open descriptor and what it points to (for a
 * failed fd count). */
void xt_print_fds(void);

/* xt_leaks runs LeakSanitizer now and returns non-zero on a leak (cases
 * end with _exit, which skips the exit-time check); 0 without ASan. */
int xt_leaks(void);

/* xt_tsan says whether this build runs under ThreadSanitizer (1) or not
 * (0). A case that cannot run under it (a timing bound its slowdown
 * breaks) skips with XT_SKIP_IF(xt_tsan(), "reason"). */
int xt_tsan(void);

/* xt_tsan_release and xt_tsan_acquire make a hand-off of registered
 * memory through another process visible to ThreadSanitizer (no-ops
 * without it; docs/design.md "Threads and locks"). base is the region's
 * start address as registered. A process whose memory a peer reads or
 * writes calls xt_tsan_release(base) after it filled or checked the
 * region and before it tells the peer to go on, and xt_tsan_acquire(base)
 * after it learned (from the peer) that the transfer is done and before
 * it touches the region. */
void xt_tsan_release(const void *base);
void xt_tsan_acquire(const void *base);

#endif /* NXL_TEST_HARNESS_H */
