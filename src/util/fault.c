/* fault.c - fault injection (fault.h): the spec, the per-thread draw, and
 * the --wrap wrappers of the C library's calls. */
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

atomic_int nxl__fault_on;

/* Rates in parts per 2^32 (0: never), and what was failed. */
static _Atomic uint32_t fi_rate[NXL__FI_SITES];
static _Atomic unsigned long long fi_count[NXL__FI_SITES];
static _Atomic unsigned long long fi_seed = 0x9e3779b97f4a7c15ull;
static atomic_uint fi_threads;
static const char *const fi_names[NXL__FI_SITES] = {"alloc", "send",  "recv",
                                                    "cma",   "uring", "ucx"};

static _Thread_local uint64_t fi_state;

/* fi_parse reads spec into rates; returns 0, or -1 for a bad spec. */
static int
fi_parse(const char *spec, uint32_t rates[NXL__FI_SITES])
{
    char buf[256], *save = NULL, *tok, *eq, *end;
    double r;
    int i, matched;

    memset(rates, 0, NXL__FI_SITES * sizeof(rates[0]));
    if (spec == NULL || spec[0] == '\0') {
        return 0;
    }
    if (strlen(spec) >= sizeof(buf)) {
        return -1;
    }
    strcpy(buf, spec);
    for (tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        eq = strchr(tok, '=');
        if (eq == NULL) {
            return -1;
        }
        *eq = '\0';
        r = strtod(eq + 1, &end);
        if (end == eq + 1 || *end != '\0' || !(r >= 0.0 && r <= 1.0)) {
            return -1;
        }
        matched = 0;
        for (i = 0; i < NXL__FI_SITES; i++) {
            if (strcmp(tok, "all") == 0 || strcmp(tok, fi_names[i]) == 0) {
                rates[i] = r >= 1.0 ? UINT32_MAX : (uint32_t)(r * 4294967296.0);
                matched = 1;
            }
        }
        if (!matched) {
            return -1;
        }
    }
    return 0;
}

nxl_status_t
nxl__fault_set(const char *spec, unsigned long long seed)
{
    uint32_t rates[NXL__FI_SITES];
    int i, on = 0;

    if (fi_parse(spec, rates) != 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "fault: bad spec \"%s\" (want site=rate,... with "
                         "sites alloc, send, recv, cma, uring, ucx or all, "
                         "rates 0..1)",
                         spec);
    }
    atomic_store(&fi_seed, seed);
    for (i = 0; i < NXL__FI_SITES; i++) {
        atomic_store(&fi_rate[i], rates[i]);
        on |= rates[i] != 0;
    }
    atomic_store(&nxl__fault_on, on);
    return NXL_OK;
}

unsigned long long
nxl__fault_count(nxl__fault_site_t site)
{
    return (unsigned)site < NXL__FI_SITES ? atomic_load(&fi_count[site]) : 0;
}

/* fi_init reads NXL_FAULT and NXL_FAULT_SEED when the library loads. */
__attribute__((constructor)) static void
fi_init(void)
{
    const char *spec = getenv("NXL_FAULT");
    const char *seed = getenv("NXL_FAULT_SEED");

    if (spec == NULL || spec[0] == '\0') {
        return;
    }
    if (nxl__fault_set(spec, seed ? strtoull(seed, NULL, 0)
                                  : 0x9e3779b97f4a7c15ull) != NXL_OK) {
        fprintf(stderr, "nxl: %s: fault injection stays off\n",
                nxl_last_error());
        return;
    }
    fprintf(stderr, "nxl: fault injection on: NXL_FAULT=%s\n", spec);
}

bool
nxl__fault_hit_slow(nxl__fault_site_t site)
{
    uint32_t rate = atomic_load_explicit(&fi_rate[site], memory_order_relaxed);
    uint64_t x;

    if (rate == 0) {
        return false;
    }
    if (fi_state == 0) {
        fi_state = atomic_load(&fi_seed) ^
                   ((uint64_t)(atomic_fetch_add(&fi_threads, 1) + 1) *
                    0xbf58476d1ce4e5b9ull);
        fi_state |= 1;
    }
    x = fi_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    fi_state = x;
    if ((uint32_t)(x >> 32) >= rate && rate != UINT32_MAX) {
        return false;
    }
    atomic_fetch_add_explicit(&fi_count[site], 1, memory_order_relaxed);
    return true;
}

/* --- the wrappers (ld --wrap=NAME sends the library's calls here) ----- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
int __real_posix_memalign(void **p, size_t align, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
ssize_t __real_sendmsg(int fd, const struct msghdr *m, int flags);
ssize_t __real_send(int fd, const void *b, size_t n, int flags);
ssize_t __real_writev(int fd, const struct iovec *v, int n);
ssize_t __real_recvmsg(int fd, struct msghdr *m, int flags);
ssize_t __real_recv(int fd, void *b, size_t n, int flags);
ssize_t __real_readv(int fd, const struct iovec *v, int n);
ssize_t __real_process_vm_readv(pid_t pid, const struct iovec *l,
                                unsigned long nl, const struct iovec *r,
                                unsigned long nr, unsigned long flags);
ssize_t __real_process_vm_writev(pid_t pid, const struct iovec *l,
                                 unsigned long nl, const struct iovec *r,
                                 unsigned long nr, unsigned long flags);

#define FI_DECL(ret, name, params) ret __wrap_##name params;
FI_DECL(void *, malloc, (size_t n))
FI_DECL(void *, calloc, (size_t n, size_t size))
FI_DECL(void *, realloc, (void *p, size_t n))
FI_DECL(char *, strdup, (const char *s))
FI_DECL(int, posix_memalign, (void **p, size_t align, size_t n))
FI_DECL(void *, aligned_alloc, (size_t align, size_t n))
FI_DECL(ssize_t, sendmsg, (int fd, const struct msghdr *m, int flags))
FI_DECL(ssize_t, send, (int fd, const void *b, size_t n, int flags))
FI_DECL(ssize_t, writev, (int fd, const struct iovec *v, int n))
FI_DECL(ssize_t, recvmsg, (int fd, struct msghdr *m, int flags))
FI_DECL(ssize_t, recv, (int fd, void *b, size_t n, int flags))
FI_DECL(ssize_t, readv, (int fd, const struct iovec *v, int n))
FI_DECL(ssize_t, process_vm_readv,
        (pid_t pid, const struct iovec *l, unsigned long nl,
         const struct iovec *r, unsigned long nr, unsigned long flags))
FI_DECL(ssize_t, process_vm_writev,
        (pid_t pid, const struct iovec *l, unsigned long nl,
         const struct iovec *r, unsigned long nr, unsigned long flags))
#undef FI_DECL

/* FI_FAIL returns rv with errno err when site draws a failure. */
#define FI_FAIL(site, err, rv)                                                 \
    do {                                                                       \
        if (nxl__fault_hit(site)) {                                            \
            errno = (err);                                                     \
            return (rv);                                                       \
        }                                                                      \
    } while (0)

void *
__wrap_malloc(size_t n)
{
    FI_FAIL(NXL__FI_ALLOC, ENOMEM, NULL);
    return __real_malloc(n);
}

void *
__wrap_calloc(size_t n, size_t size)
{
    FI_FAIL(NXL__FI_ALLOC, ENOMEM, NULL);
    return __real_calloc(n, size);
}

void *
__wrap_realloc(void *p, size_t n)
{
    FI_FAIL(NXL__FI_ALLOC, ENOMEM, NULL);
    return __real_realloc(p, n);
}

char *
__wrap_strdup(const char *s)
{
    FI_FAIL(NXL__FI_ALLOC, ENOMEM, NULL);
    return __real_strdup(s);
}

int
__wrap_posix_memalign(void **p, size_t align, size_t n)
{
    if (nxl__fault_hit(NXL__FI_ALLOC)) {
        return ENOMEM;
    }
    return __real_posix_memalign(p, align, n);
}

void *
__wrap_aligned_alloc(size_t align, size_t n)
{
    FI_FAIL(NXL__FI_ALLOC, ENOMEM, NULL);
    return __real_aligned_alloc(align, n);
}

ssize_t
__wrap_sendmsg(int fd, const struct msghdr *m, int flags)
{
    FI_FAIL(NXL__FI_SEND, ENOBUFS, -1);
    return __real_sendmsg(fd, m, flags);
}

ssize_t
__wrap_send(int fd, const void *b, size_t n, int flags)
{
    FI_FAIL(NXL__FI_SEND, ENOBUFS, -1);
    return __real_send(fd, b, n, flags);
}

ssize_t
__wrap_writev(int fd, const struct iovec *v, int n)
{
    FI_FAIL(NXL__FI_SEND, ENOBUFS, -1);
    return __real_writev(fd, v, n);
}

ssize_t
__wrap_recvmsg(int fd, struct msghdr *m, int flags)
{
    FI_FAIL(NXL__FI_RECV, ECONNRESET, -1);
    return __real_recvmsg(fd, m, flags);
}

ssize_t
__wrap_recv(int fd, void *b, size_t n, int flags)
{
    FI_FAIL(NXL__FI_RECV, ECONNRESET, -1);
    return __real_recv(fd, b, n, flags);
}

ssize_t
__wrap_readv(int fd, const struct iovec *v, int n)
{
    FI_FAIL(NXL__FI_RECV, ECONNRESET, -1);
    return __real_readv(fd, v, n);
}

ssize_t
__wrap_process_vm_readv(pid_t pid, const struct iovec *l, unsigned long nl,
                        const struct iovec *r, unsigned long nr,
                        unsigned long flags)
{
    FI_FAIL(NXL__FI_CMA, ENOMEM, -1);
    return __real_process_vm_readv(pid, l, nl, r, nr, flags);
}

ssize_t
__wrap_process_vm_writev(pid_t pid, const struct iovec *l, unsigned long nl,
                         const struct iovec *r, unsigned long nr,
                         unsigned long flags)
{
    FI_FAIL(NXL__FI_CMA, ENOMEM, -1);
    return __real_process_vm_writev(pid, l, nl, r, nr, flags);
}
