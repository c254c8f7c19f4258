/*
 * test_posix.c - the POSIX backend (DRAM <-> FILE) through the public API.
 *
 * The suite runs twice, once per engine (parameter api=uring, api=threads).
 * Where io_uring is refused here (seccomp, io_uring_disabled, no liburing)
 * the uring cases skip; the thread-pool cases run regardless. Files are
 * mkstemp files under /tmp, unlinked as soon as they are open.
 */
#include "harness.h"

#include <nxl/nxl_backend.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define TP_LEAKED() (__lsan_do_recoverable_leak_check() != 0)
#else
#define TP_LEAKED() 0
#endif

#define TP_AGENT_NAME "posix-test"
#define TP_KIB ((uint64_t)1024)
#define TP_MIB ((uint64_t)1024 * 1024)
#define TP_WAIT_MS 20000
#define TP_COUNT(v) (sizeof(v) / sizeof((v)[0]))

/* The last error of tp_run, kept across nxl_xfer_release. */
static _Thread_local char tp_err[512];

/* tp_agent creates an agent with a POSIX backend on the suite's engine,
 * plus extra params. Returns 0, XT_SKIP (printed why) or 1. */
static int
tp_agent(const nxl_agent_config_t *cfg, const nxl_param_t *extra, size_t nextra,
         nxl_agent_t **a_p)
{
    nxl_param_t p[8];
    nxl_params_t ps;
    nxl_agent_t *a;
    nxl_status_t st;
    size_t n = 0, i;

    p[n++] = (nxl_param_t){"api", xt_param()};
    for (i = 0; i < nextra && n < 8; i++) {
        p[n++] = extra[i];
    }
    ps = (nxl_params_t){p, n};
    if (nxl_agent_create(TP_AGENT_NAME, cfg, &a) != NXL_OK) {
        fprintf(stderr, "agent_create: %s\n", nxl_last_error());
        return 1;
    }
    st = nxl_backend_create(a, "POSIX", &ps, NULL);
    if (st == NXL_ERR_NOT_SUPPORTED && strcmp(xt_param(), "uring") == 0) {
        printf("  skip: io_uring is not available here: %s\n",
               nxl_last_error());
        nxl_agent_destroy(a);
        return XT_SKIP;
    }
    if (st != NXL_OK) {
        fprintf(stderr, "backend_create(POSIX): %s: %s\n", nxl_status_name(st),
                nxl_last_error());
        nxl_agent_destroy(a);
        return 1;
    }
    *a_p = a;
    return 0;
}

#define TP_AGENT(cfg, extra, n, a_p)                                           \
    do {                                                                       \
        int rc_ = tp_agent((cfg), (extra), (n), (a_p));                        \
        if (rc_ != 0)                                                          \
            return rc_;                                                        \
    } while (0)

/* tp_tmpfile opens a new empty file under /tmp, already unlinked. */
static int
tp_tmpfile(void)
{
    char path[] = "/tmp/nxl-posix-XXXXXX";
    int fd = mkostemp(path, O_CLOEXEC);

    if (fd >= 0) {
        unlink(path);
    }
    return fd;
}

/* tp_map returns len bytes of zeroed, page-aligned memory. */
static uint8_t *
tp_map(uint64_t len)
{
    void *p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    return p == MAP_FAILED ? NULL : p;
}

/* tp_fill writes a pattern that depends on seed and the byte's index. */
static void
tp_fill(uint8_t *p, uint64_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1, i;

    for (i = 0; i < len; i++) {
        if ((i & 7) == 0) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        p[i] = (uint8_t)(x >> ((i & 7) * 8));
    }
}

/* tp_reg registers one descriptor. */
static nxl_status_t
tp_reg(nxl_agent_t *a, nxl_mem_t mem, uint64_t addr, uint64_t len, uint64_t dev)
{
    nxl_desc_t d = {addr, len, dev};
    nxl_dlist_t dl = {mem, &d, 1};

    return nxl_mem_register(a, &dl, NULL);
}

/* tp_dereg deregisters one descriptor. */
static nxl_status_t
tp_dereg(nxl_agent_t *a, nxl_mem_t mem, uint64_t addr, uint64_t len,
         uint64_t dev)
{
    nxl_desc_t d = {addr, len, dev};
    nxl_dlist_t dl = {mem, &d, 1};

    return nxl_mem_deregister(a, &dl, NULL);
}

/* tp_make builds a transfer of n (memory, file) pairs against this agent. */
static nxl_status_t
tp_make(nxl_agent_t *a, nxl_op_t op, const nxl_desc_t *mem,
        const nxl_desc_t *file, size_t n, nxl_xfer_t **x_p)
{
    nxl_dlist_t l = {NXL_DRAM, mem, n}, r = {NXL_FILE, file, n};

    return nxl_xfer_create(a, op, &l, &r, TP_AGENT_NAME, NULL, x_p);
}

/* tp_wait finishes a posted transfer. */
static nxl_status_t
tp_wait(nxl_xfer_t *x, nxl_status_t posted)
{
    return (posted == NXL_IN_PROG) ? nxl_xfer_wait(x, TP_WAIT_MS) : posted;
}

/* tp_run makes, posts, waits for and releases one transfer; its error
 * message stays in tp_err. */
static nxl_status_t
tp_run(nxl_agent_t *a, nxl_op_t op, const nxl_desc_t *mem,
       const nxl_desc_t *file, size_t n)
{
    nxl_xfer_t *x;
    nxl_status_t st;

    tp_err[0] = '\0';
    st = tp_make(a, op, mem, file, n, &x);
    if (st == NXL_OK) {
        st = tp_wait(x, nxl_xfer_post(x, NULL));
        if (st != NXL_OK) {
            snprintf(tp_err, sizeof(tp_err), "%s", nxl_last_error());
        }
        nxl_xfer_release(x);
    } else {
        snprintf(tp_err, sizeof(tp_err), "%s", nxl_last_error());
    }
    return st;
}

#define TP_ASSERT_ERR(expr, want, text)                                        \
    do {                                                                       \
        nxl_status_t s2_ = (expr);                                             \
        if (s2_ != (want))                                                     \
            XT_FAILF("%s -> %s, want %s (%s)", #expr, nxl_status_name(s2_),    \
                     nxl_status_name(want), tp_err);                           \
        if (strstr(tp_err, (text)) == NULL)                                    \
            XT_FAILF("%s: message \"%s\" lacks \"%s\"", #expr, tp_err,         \
                     (text));                                                  \
    } while (0)

/* tp_file_equals reads len bytes at off of fd and compares them to want. */
static int
tp_file_equals(int fd, uint64_t off, const uint8_t *want, uint64_t len)
{
    uint8_t *buf = malloc(len ? len : 1);
    ssize_t n;
    int eq;

    if (buf == NULL) {
        return 0;
    }
    n = pread(fd, buf, len, (off_t)off);
    eq = n == (ssize_t)len && memcmp(buf, want, len) == 0;
    free(buf);
    return eq;
}

/* tp_try_direct turns O_DIRECT on (or off) for fd. */
static int
tp_set_direct(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0) {
        return -1;
    }
    fl = on ? (fl | O_DIRECT) : (fl & ~O_DIRECT);
    return fcntl(fd, F_SETFL, fl);
}

/* --- cases ---------------------------------------------------------------- */

/* The ops table as the plugin API reports it. */
static int
t_plugin_info(void)
{
    nxl_plugin_info_t info;
    size_t i, found = 0;

    XT_ASSERT_OK(nxl_plugin_info("posix", &info));
    XT_ASSERT_STR(info.name, "POSIX");
    XT_ASSERT_EQ(info.caps, NXL_CAP_LOCAL | NXL_CAP_THREAD_SAFE);
    XT_ASSERT_EQ(info.mem_kinds, (1u << NXL_DRAM) | (1u << NXL_FILE));
    for (i = 0; i < info.num_defaults; i++) {
        if (strcmp(info.defaults[i].key, "queue_depth") == 0) {
            XT_ASSERT_STR(info.defaults[i].value, "64");
            found++;
        }
        if (strcmp(info.defaults[i].key, "api") == 0 ||
            strcmp(info.defaults[i].key, "num_threads") == 0) {
            found++;
        }
    }
    XT_ASSERT_EQ(found, 3);
    return 0;
}

/* Bad parameters fail backend creation with INVALID_PARAM. */
static int
t_params(void)
{
    static const nxl_param_t bad[][1] = {
        {{"queue_depth", "0"}},     {{"queue_depth", "100000"}},
        {{"chunk_size", "1000"}},   {{"chunk_size", "4097"}},
        {{"api", "aio"}},           {{"num_threads", "0"}},
        {{"fixed_files", "maybe"}}, {{"no_such_key", "1"}},
    };
    nxl_params_t ps;
    nxl_agent_t *a;
    size_t i;
    nxl_status_t st;

    XT_ASSERT_OK(nxl_agent_create(TP_AGENT_NAME, NULL, &a));
    for (i = 0; i < TP_COUNT(bad); i++) {
        ps = (nxl_params_t){bad[i], 1};
        XT_ASSERT_STATUS(nxl_backend_create(a, "POSIX", &ps, NULL),
                         NXL_ERR_INVALID_PARAM);
    }
    /* NIXL's spellings are accepted. */
    ps = (nxl_params_t){
        (const nxl_param_t[]){{"use_posix_aio", "true"}, {"chunk_size", "64k"}},
        2};
    XT_ASSERT_OK(nxl_backend_create(a, "POSIX", &ps, NULL));
    nxl_agent_destroy(a);

    XT_ASSERT_OK(nxl_agent_create(TP_AGENT_NAME, NULL, &a));
    ps = (nxl_params_t){(const nxl_param_t[]){{"use_uring", "true"}}, 1};
    st = nxl_backend_create(a, "POSIX", &ps, NULL);
    XT_ASSERT(st == NXL_OK || st == NXL_ERR_NOT_SUPPORTED);
    nxl_agent_destroy(a);
    XT_ASSERT(!TP_LEAKED());
    return 0;
}

/* tp_count_workers counts this process's threads named nxl-posix. */
static int
tp_count_workers(void)
{
    char path[300], comm[64];
    struct dirent *de;
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    FILE *f;

    if (d == NULL) {
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
        f = fopen(path, "r");
        if (f == NULL) {
            continue;
        }
        if (fgets(comm, sizeof(comm), f) != NULL &&
            strncmp(comm, "nxl-posix", 9) == 0) {
            n++;
        }
        fclose(f);
    }
    closedir(d);
    return n;
}

/* The engine is the one asked for: threads start num_threads workers,
 * io_uring none. */
static int
t_engine(void)
{
    nxl_param_t p[] = {{"num_threads", "3"}};
    nxl_agent_t *a;

    TP_AGENT(NULL, p, 1, &a);
    if (strcmp(xt_param(), "threads") == 0) {
        XT_ASSERT_EQ(tp_count_workers(), 3);
    } else {
        XT_ASSERT_EQ(tp_count_workers(), 0);
    }
    nxl_agent_destroy(a);
    XT_ASSERT_EQ(tp_count_workers(), 0);
    return 0;
}

/* tp_refuse_uring installs a seccomp filter (this process only: each case
 * runs in its own child) that fails io_uring_setup with EPERM, as container
 * runtimes do. Returns 0 or -1. */
static int
tp_refuse_uring(void)
{
#ifdef __NR_io_uring_setup
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & 0xffff)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {(unsigned short)TP_COUNT(f), f};

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        return -1;
    }
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
#else
    return -1;
#endif
}

/* Where io_uring is refused, api=auto falls back to the thread pool and
 * works; api=uring fails with NOT_SUPPORTED and says why. */
static int
t_uring_refused(void)
{
    nxl_param_t p[] = {{"api", "auto"}, {"num_threads", "2"}};
    nxl_params_t ps = {p, 2};
    const uint64_t len = 64 * TP_KIB;
    nxl_desc_t md, fdesc;
    uint8_t *buf, *dst;
    nxl_agent_t *a;
    int fd;

    XT_SKIP_IF(tp_refuse_uring() != 0, "cannot install a seccomp filter: %s",
               strerror(errno));
    buf = tp_map(len);
    dst = tp_map(len);
    fd = tp_tmpfile();
    XT_ASSERT(buf != NULL && dst != NULL && fd >= 0);
    XT_ASSERT_OK(nxl_agent_create(TP_AGENT_NAME, NULL, &a));
    p[0].value = "uring";
    XT_ASSERT_STATUS(nxl_backend_create(a, "POSIX", &ps, NULL),
                     NXL_ERR_NOT_SUPPORTED);
    XT_ASSERT(strstr(nxl_last_error(), "io_uring") != NULL);
    p[0].value = "auto";
    XT_ASSERT_OK(nxl_backend_create(a, "POSIX", &ps, NULL));
    XT_ASSERT_EQ(tp_count_workers(), 2);
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)buf, len, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)dst, len, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_FILE, 0, len, (uint64_t)fd));
    tp_fill(buf, len, 41);
    md = (nxl_desc_t){(uintptr_t)buf, len, 0};
    fdesc = (nxl_desc_t){0, len, (uint64_t)fd};
    XT_ASSERT_OK(tp_run(a, NXL_WRITE, &md, &fdesc, 1));
    md.addr = (uintptr_t)dst;
    XT_ASSERT_OK(tp_run(a, NXL_READ, &md, &fdesc, 1));
    XT_ASSERT(memcmp(buf, dst, len) == 0);
    nxl_agent_destroy(a);
    close(fd);
    munmap(buf, len);
    munmap(dst, len);
    XT_ASSERT(!TP_LEAKED());
    return 0;
}

/* WRITE then READ back 1 B, 4 KiB, 1 MiB and 64 MiB at an odd offset. */
static int
t_sizes(void)
{
    static const uint64_t sizes[] = {1, 4 * TP_KIB, TP_MIB, 64 * TP_MIB};
    const uint64_t max = 64 * TP_MIB, base = 12345;
    nxl_desc_t md, fdesc;
    nxl_backend_t *be;
    nxl_xfer_t *x;
    uint8_t *src, *dst;
    nxl_agent_t *a;
    size_t i;
    int fd;

    src = tp_map(max);
    dst = tp_map(max);
    fd = tp_tmpfile();
    XT_ASSERT(src != NULL && dst != NULL && fd >= 0);
    TP_AGENT(NULL, NULL, 0, &a);
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)src, max, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)dst, max, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_FILE, 0, base + max, (uint64_t)fd));

    /* The transfer runs on POSIX. */
    md = (nxl_desc_t){(uintptr_t)src, 1, 0};
    fdesc = (nxl_desc_t){base, 1, (uint64_t)fd};
    XT_ASSERT_OK(tp_make(a, NXL_WRITE, &md, &fdesc, 1, &x));
    XT_ASSERT_OK(nxl_xfer_backend(x, &be));
    XT_ASSERT_STR(nxl_backend_name(be), "POSIX");
    nxl_xfer_release(x);

    for (i = 0; i < TP_COUNT(sizes); i++) {
        uint64_t n = sizes[i];

        tp_fill(src, n, i + 1);
        memset(dst, 0, n);
        md = (nxl_desc_t){(uintptr_t)src, n, 0};
        fdesc = (nxl_desc_t){base, n, (uint64_t)fd};
        XT_ASSERT_OK(tp_run(a, NXL_WRITE, &md, &fdesc, 1));
        XT_ASSERT(tp_file_equals(fd, base, src, n));
        md = (nxl_desc_t){(uintptr_t)dst, n, 0};
        XT_ASSERT_OK(tp_run(a, NXL_READ, &md, &fdesc, 1));
        if (memcmp(src, dst, n) != 0) {
            XT_FAILF("%llu bytes read back differ", (unsigned long long)n);
        }
    }
    nxl_agent_destroy(a);
    close(fd);
    munmap(src, max);
    munmap(dst, max);
    XT_ASSERT(!TP_LEAKED());
    return 0;
}

/* tp_shuffle fills v with a permutation of 0..n-1 (deterministic). */
static void
tp_shuffle(size_t *v, size_t n, uint64_t seed)
{
    size_t i, j, t;

    for (i = 0; i < n; i++) {
        v[i] = i;
    }
    for (i = n; i > 1; i--) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        j = (size_t)((seed >> 33) % i);
        t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* 1000 descriptors of 4 KiB at scattered file and memory offsets in one
 * request, written and read back into other scattered places. */
static int
t_many_descs(void)
{
    enum { N = 1000, SLOTS = 2000 };
    const uint64_t blk = 4 * TP_KIB, mlen = SLOTS * blk;
    nxl_desc_t *md, *fdesc;
    size_t *fperm, *mperm, i;
    uint8_t *src, *dst;
    nxl_agent_t *a;
    int fd;

    src = tp_map(mlen);
    dst = tp_map(mlen);
    md = calloc(N, sizeof(*md));
    fdesc = calloc(N, sizeof(*fdesc));
    fperm = calloc(SLOTS, sizeof(*fperm));
    mperm = calloc(SLOTS, sizeof(*mperm));
    fd = tp_tmpfile();
    XT_ASSERT(src && dst && md && fdesc && fperm && mperm && fd >= 0);
    TP_AGENT(NULL, NULL, 0, &a);
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)src, mlen, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)dst, mlen, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_FILE, 0, SLOTS * blk, (uint64_t)fd));
    tp_fill(src, mlen, 77);

    tp_shuffle(fperm, SLOTS, 1);
    tp_shuffle(mperm, SLOTS, 2);
    for (i = 0; i < N; i++) {
        md[i] = (nxl_desc_t){(uintptr_t)src + mperm[i] * blk, blk, 0};
        fdesc[i] = (nxl_desc_t){fperm[i] * blk, blk, (uint64_t)fd};
    }
    XT_ASSERT_OK(tp_run(a, NXL_WRITE, md, fdesc, N));
    for (i = 0; i < N; i++) {
        XT_ASSERT(
            tp_file_equals(fd, fperm[i] * blk, src + mperm[i] * blk, blk));
    }
    /* Read back into dst at another permutation. */
    tp_shuffle(mperm, SLOTS, 3);
    for (i = 0; i < N; i++) {
        md[i] = (nxl_desc_t){(uintptr_t)dst + mperm[i] * blk, blk, 0};
    }
    XT_ASSERT_OK(tp_run(a, NXL_READ, md, fdesc, N));
    for (i = 0; i < N; i++) {
        uint8_t want[4096];

        XT_ASSERT(pread(fd, want, blk, (off_t)(fperm[i] * blk)) ==
                  (ssize_t)blk);
        if (memcmp(dst + mperm[i] * blk, want, blk) != 0) {
            XT_FAILF("descriptor %zu differs after READ", i);
        }
    }
    nxl_agent_destroy(a);
    close(fd);
    munmap(src, mlen);
    munmap(dst, mlen);
    free(md);
    free(fdesc);
    free(fperm);
    free(mperm);
    XT_ASSERT(!TP_LEAKED());
    return 0;
}

/* Small queue depths and pieces: many operations per descriptor, all
 * through a ring (or pool) of 1 and of 4. */
static int
t_queue_depth(void)
{
    static const char *const depths[] = {"1", "4"};
    const uint64_t len = 2 * TP_MIB;
    nxl_desc_t md[16], fdesc[16];
    uint8_t *src, *dst;
    nxl_agent_t *a;
    size_t d, i;
    int fd;

    src = tp_map(len);
    dst = tp_map(len);
    XT_ASSERT(src != NULL && dst != NULL);
    for (d = 0; d < TP_COUNT(depths); d++) {
        nxl_param_t p[] = {{"queue_depth", depths[d]},
                           {"num_threads", depths[d]},
                           {"chunk_size", "4096"}};

        fd = tp_tmpfile();
        XT_ASSERT(fd >= 0);
        TP_AGENT(NULL, p, 3, &a);
        XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)src, len, 0));
        XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)dst, len, 0));
        XT_ASSERT_OK(tp_reg(a, NXL_FILE, 0, len, (uint64_t)fd));
        tp_fill(src, len, 10 + d);
        memset(dst, 0, len);
        /* 16 descriptors of 128 KiB, file order reversed. */
        for (i = 0; i < 16; i++) {
            md[i] = (nxl_desc_t){(uintptr_t)src + i * len / 16, len / 16, 0};
            fdesc[i] =
                (nxl_desc_t){(15 - i) * len / 16, len / 16, (uint64_t)fd};
        }
        XT_ASSERT_OK(tp_run(a, NXL_WRITE, md, fdesc, 16));
        for (i = 0; i < 16; i++) {
            md[i].addr = (uintptr_t)dst + i * len / 16;
        }
        XT_ASSERT_OK(tp_run(a, NXL_READ, md, fdesc, 16));
        XT_ASSERT(memcmp(src, dst, len) == 0);
        nxl_agent_destroy(a);
        close(fd);
    }
    munmap(src, len);
    munmap(dst, len);
    XT_ASSERT(!TP_LEAKED());
    return 0;
}

/* O_DIRECT: aligned transfers work (fixed buffers and plain ones);
 * misaligned offsets, lengths and buffers fail at creation with
 * INVALID_PARAM naming the culprit; a file turned O_DIRECT after the
 * transfer was made is checked again at post. */
static int
t_odirect(void)
{
    const uint64_t len = 4 * TP_MIB;
    nxl_desc_t md, fdesc;
    uint8_t *src, *dst, *heap = NULL;
    nxl_xfer_t *x;
    nxl_agent_t *a;
    int fd;

    fd = tp_tmpfile();
    XT_ASSERT(fd >= 0);
    if (tp_set_direct(fd, 1) != 0) {
        close(fd);
        XT_SKIP_IF(1, "O_DIRECT is not supported on /tmp's file system: %s",
                   strerror(errno));
    }
    src = tp_map(len);
    dst = tp_map(len);
    XT_ASSERT(src != NULL && dst != NULL);
    XT_ASSERT(posix_memalign((void **)&heap, 4096, TP_MIB) == 0);
    TP_AGENT(NULL, NULL, 0, &a);
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)src, len, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)dst, len, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)heap, TP_MIB, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_FILE, 0, 2 * len, (uint64_t)fd));

    tp_fill(src, len, 5);
    md = (nxl_desc_t){(uintptr_t)src, len, 0};
    fdesc = (nxl_desc_t){TP_MIB, len, (uint64_t)fd};
    XT_ASSERT_OK(tp_run(a, NXL_WRITE, &md, &fdesc, 1));
    md = (nxl_desc_t){(uintptr_t)dst, len, 0};
    XT_ASSERT_OK(tp_run(a, NXL_READ, &md, &fdesc, 1));
    XT_ASSERT(memcmp(src, dst, len) == 0);
    /* A heap buffer: 4 KiB pieces into the middle. */
    memset(heap, 0, TP_MIB);
    md = (nxl_desc_t){(uintptr_t)heap + 4096, 8192, 0};
    fdesc = (nxl_desc_t){TP_MIB + 512, 8192, (uint64_t)fd};
    XT_ASSERT_OK(tp_run(a, NXL_READ, &md, &fdesc, 1));
    XT_ASSERT(memcmp(heap + 4096, src + 512, 8192) == 0);

    /* Misaligned: buffer, offset, length. Nothing is posted. */
    md = (nxl_desc_t){(uintptr_t)src + 1, 4096, 0};
    fdesc = (nxl_desc_t){0, 4096, (uint64_t)fd};
    TP_ASSERT_ERR(tp_run(a, NXL_WRITE, &md, &fdesc, 1), NXL_ERR_INVALID_PARAM,
                  "buffer address");
    md = (nxl_desc_t){(uintptr_t)src, 4096, 0};
    fdesc = (nxl_desc_t){100, 4096, (uint64_t)fd};
    TP_ASSERT_ERR(tp_run(a, NXL_READ, &md, &fdesc, 1), NXL_ERR_INVALID_PARAM,
                  "file offset 100");
    md = (nxl_desc_t){(uintptr_t)src, 1000, 0};
    fdesc = (nxl_desc_t){0, 1000, (uint64_t)fd};
    TP_ASSERT_ERR(tp_run(a, NXL_WRITE, &md, &fdesc, 1), NXL_ERR_INVALID_PARAM,
                  "length 1000");
    XT_ASSERT(strstr(tp_err, "O_DIRECT") != NULL);

    /* Made while buffered (fine), posted after O_DIRECT was switched on. */
    XT_ASSERT(tp_set_direct(fd, 0) == 0);
    md = (nxl_desc_t){(uintptr_t)dst + 3, 4096, 0};
    fdesc = (nxl_desc_t){TP_MIB, 4096, (uint64_t)fd};
    XT_ASSERT_OK(tp_make(a, NXL_READ, &md, &fdesc, 1, &x));
    XT_ASSERT(tp_set_direct(fd, 1) == 0);
    XT_ASSERT_STATUS(nxl_xfer_post(x, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "buffer address") != NULL);
    XT_ASSERT(tp_set_direct(fd, 0) == 0);
    XT_ASSERT_OK(tp_wait(x, nxl_xfer_post(x, NULL)));
    XT_ASSERT(memcmp(dst + 3, src, 4096) == 0);
    nxl_xfer_release(x);

    nxl_agent_destroy(a);
    close(fd);
    munmap(src, len);
    munmap(dst, len);
    free(heap);
    XT_ASSERT(!TP_LEAKED());
    return 0;
}

/* Descriptors outside the registered range fail when the transfer is made
 * and no byte of the file changes. */
static int
t_out_of_range(void)
{
    const uint64_t flen = 128 * TP_KIB;
    nxl_desc_t md, fdesc;
    uint8_t *buf, *orig;
    struct stat st;
    nxl_agent_t *a;
    int fd, fd2;

    buf = tp_map(flen);
    orig = tp_map(flen);
    fd = tp_tmpfile();
    fd2 = tp_tmpfile();
    XT_ASSERT(buf != NULL && orig != NULL && fd >= 0 && fd2 >= 0);
    tp_fill(orig, flen, 9);
    XT_ASSERT(pwrite(fd, orig, flen, 0) == (ssize_t)flen);
    tp_fill(buf, flen, 10);
    TP_AGENT(NULL, NULL, 0, &a);
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)buf, flen, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_FILE, 4096, 64 * TP_KIB, (uint64_t)fd));

    md = (nxl_desc_t){(uintptr_t)buf, 4096, 0};
    fdesc = (nxl_desc_t){0, 4096, (uint64_t)fd}; /* before the range */
    XT_ASSERT_STATUS(tp_run(a, NXL_WRITE, &md, &fdesc, 1), NXL_ERR_NOT_FOUND);
    fdesc = (nxl_desc_t){4096 + 64 * TP_KIB - 100, 4096, (uint64_t)fd};
    XT_ASSERT_STATUS(tp_run(a, NXL_WRITE, &md, &fdesc, 1), NXL_ERR_NOT_FOUND);
    fdesc = (nxl_desc_t){4096 + 64 * TP_KIB, 1, (uint64_t)fd}; /* just past */
    XT_ASSERT_STATUS(tp_run(a, NXL_WRITE, &md, &fdesc, 1), NXL_ERR_NOT_FOUND);
    fdesc = (nxl_desc_t){4096, 4096, (uint64_t)fd2}; /* unregistered fd */
    XT_ASSERT_STATUS(tp_run(a, NXL_WRITE, &md, &fdesc, 1), NXL_ERR_NOT_FOUND);
    XT_ASSERT(fstat(fd, &st) == 0);
    XT_ASSERT_EQ(st.st_size, flen);
    XT_ASSERT(tp_file_equals(fd, 0, orig, flen));
    XT_ASSERT(fstat(fd2, &st) == 0);
    XT_ASSERT_EQ(st.st_size, 0);
    /* The range itself works, edge to edge. */
    md = (nxl_desc_t){(uintptr_t)buf, 64 * TP_KIB, 0};
    fdesc = (nxl_desc_t){4096, 64 * TP_KIB, (uint64_t)fd};
    XT_ASSERT_OK(tp_run(a, NXL_WRITE, &md, &fdesc, 1));
    XT_ASSERT(tp_file_equals(fd, 4096, buf, 64 * TP_KIB));
    /* A FILE registration needs a length. */
    XT_ASSERT_STATUS(tp_reg(a, NXL_FILE, 0, 0, (uint64_t)fd),
                     NXL_ERR_INVALID_PARAM);
    /* A closed or bogus fd cannot be registered. */
    XT_ASSERT(tp_reg(a, NXL_FILE, 0, 4096, 1000000) != NXL_OK);

    nxl_agent_destroy(a);
    close(fd);
    close(fd2);
    munmap(buf, flen);
    munmap(orig, flen);
    XT_ASSERT(!TP_LEAKED());
    return 0;
}

/* Reads past the end of the file are NXL_ERR_IO with a clear message,
 * buffered and O_DIRECT; a read that ends exactly at EOF is fine. */
static int
t_short_read(void)
{
    const uint64_t flen = 10000, blen = TP_MIB;
    nxl_desc_t md, fdesc;
    uint8_t *buf, *data;
    nxl_agent_t *a;
    int fd;

    buf = tp_map(blen);
    data = tp_map(blen);
    fd = tp_tmpfile();
    XT_ASSERT(buf != NULL && data != NULL && fd >= 0);
    tp_fill(data, flen, 3);
    XT_ASSERT(pwrite(fd, data, flen, 0) == (ssize_t)flen);
    TP_AGENT(NULL, NULL, 0, &a);
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)buf, blen, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_FILE, 0, blen, (uint64_t)fd));

    md = (nxl_desc_t){(uintptr_t)buf, flen, 0};
    fdesc = (nxl_desc_t){0, flen, (uint64_t)fd};
    XT_ASSERT_OK(tp_run(a, NXL_READ, &md, &fdesc, 1));
    XT_ASSERT(memcmp(buf, data, flen) == 0);

    md = (nxl_desc_t){(uintptr_t)buf, 64 * TP_KIB, 0};
    fdesc = (nxl_desc_t){0, 64 * TP_KIB, (uint64_t)fd};
    TP_ASSERT_ERR(tp_run(a, NXL_READ, &md, &fdesc, 1), NXL_ERR_IO,
                  "short read");
    fdesc = (nxl_desc_t){20000, 64 * TP_KIB, (uint64_t)fd};
    TP_ASSERT_ERR(tp_run(a, NXL_READ, &md, &fdesc, 1), NXL_ERR_IO,
                  "short read");
    /* Many descriptors, one past the end: the request fails as a whole. */
    {
        nxl_desc_t mds[8], fds[8];
        size_t i;

        for (i = 0; i < 8; i++) {
            mds[i] = (nxl_desc_t){(uintptr_t)buf + i * 8192, 4096, 0};
            fds[i] = (nxl_desc_t){i * 1024 + (i == 5 ? 9000 : 0), 1024,
                                  (uint64_t)fd};
            mds[i].len = 1024;
        }
        TP_ASSERT_ERR(tp_run(a, NXL_READ, mds, fds, 8), NXL_ERR_IO,
                      "descriptor 5");
    }
    /* O_DIRECT: the kernel stops at EOF, then nothing is left to read. */
    if (tp_set_direct(fd, 1) == 0) {
        md = (nxl_desc_t){(uintptr_t)buf, 16384, 0};
        fdesc = (nxl_desc_t){0, 16384, (uint64_t)fd};
        TP_ASSERT_ERR(tp_run(a, NXL_READ, &md, &fdesc, 1), NXL_ERR_IO,
                      "short read");
        XT_ASSERT(memcmp(buf, data, flen) == 0);
    }
    nxl_agent_destroy(a);
    close(fd);
    munmap(buf, blen);
    munmap(data, blen);
    XT_ASSERT(!TP_LEAKED());
    return 0;
}

/* A file closed underneath: posting fails with NXL_ERR_IO; the fd number
 * reused by another file is NXL_ERR_MISMATCH; closing during a transfer
 * neither crashes nor hangs (the engine reads through its own duplicate, so
 * the transfer completes). */
static int
t_closed_fd(void)
{
    const uint64_t len = 16 * TP_MIB;
    nxl_desc_t md, fdesc;
    nxl_status_t st;
    nxl_xfer_t *x;
    uint8_t *buf;
    nxl_agent_t *a;
    int fd, fd2, i;

    buf = tp_map(len);
    fd = tp_tmpfile();
    XT_ASSERT(buf != NULL && fd >= 0);
    tp_fill(buf, len, 4);
    XT_ASSERT(pwrite(fd, buf, len, 0) == (ssize_t)len);
    TP_AGENT(NULL, NULL, 0, &a);
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)buf, len, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_FILE, 0, len, (uint64_t)fd));
    md = (nxl_desc_t){(uintptr_t)buf, 64 * TP_KIB, 0};
    fdesc = (nxl_desc_t){0, 64 * TP_KIB, (uint64_t)fd};
    XT_ASSERT_OK(tp_make(a, NXL_READ, &md, &fdesc, 1, &x));
    XT_ASSERT_OK(tp_wait(x, nxl_xfer_post(x, NULL)));

    close(fd);
    XT_ASSERT_STATUS(nxl_xfer_post(x, NULL), NXL_ERR_IO);
    XT_ASSERT(strstr(nxl_last_error(), "closed") != NULL);
    XT_ASSERT_STATUS(nxl_xfer_status(x), NXL_ERR_IO);

    /* The number now names another file. */
    fd2 = tp_tmpfile();
    XT_ASSERT(fd2 >= 0);
    XT_ASSERT(dup2(fd2, fd) == fd);
    XT_ASSERT_STATUS(nxl_xfer_post(x, NULL), NXL_ERR_MISMATCH);
    XT_ASSERT(strstr(nxl_last_error(), "another file") != NULL);
    nxl_xfer_release(x);
    XT_ASSERT_OK(tp_dereg(a, NXL_FILE, 0, len, (uint64_t)fd));
    close(fd);
    close(fd2);

    /* Closed while reading 16 MiB in 64 KiB pieces. */
    for (i = 0; i < 3; i++) {
        fd = tp_tmpfile();
        XT_ASSERT(fd >= 0);
        XT_ASSERT(pwrite(fd, buf, len, 0) == (ssize_t)len);
        XT_ASSERT_OK(tp_reg(a, NXL_FILE, 0, len, (uint64_t)fd));
        md = (nxl_desc_t){(uintptr_t)buf, len, 0};
        fdesc = (nxl_desc_t){0, len, (uint64_t)fd};
        XT_ASSERT_OK(tp_make(a, NXL_READ, &md, &fdesc, 1, &x));
        st = nxl_xfer_post(x, NULL);
        close(fd);
        XT_ASSERT_OK(tp_wait(x, st));
        nxl_xfer_release(x);
        XT_ASSERT_OK(tp_dereg(a, NXL_FILE, 0, len, (uint64_t)fd));
    }
    nxl_agent_destroy(a);
    munmap(buf, len);
    XT_ASSERT(!TP_LEAKED());
    return 0;
}

/* The steady-state loop: one transfer posted 20 times, with new data each
 * time; a re-post while active is REPOST_ACTIVE. */
static int
t_repost(void)
{
    const uint64_t len = 256 * TP_KIB, big = 8 * TP_MIB;
    nxl_param_t p[] = {
        {"queue_depth", "1"}, {"num_threads", "1"}, {"chunk_size", "4096"}};
    nxl_desc_t md, fdesc;
    nxl_status_t st;
    nxl_xfer_t *x;
    uint8_t *buf, *dst;
    nxl_agent_t *a;
    int fd, i;

    buf = tp_map(big);
    dst = tp_map(big);
    fd = tp_tmpfile();
    XT_ASSERT(buf != NULL && dst != NULL && fd >= 0);
    TP_AGENT(NULL, p, 3, &a);
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)buf, big, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)dst, big, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_FILE, 0, big, (uint64_t)fd));
    md = (nxl_desc_t){(uintptr_t)buf, len, 0};
    fdesc = (nxl_desc_t){0, len, (uint64_t)fd};
    XT_ASSERT_OK(tp_make(a, NXL_WRITE, &md, &fdesc, 1, &x));
    for (i = 0; i < 20; i++) {
        tp_fill(buf, len, 100 + (uint64_t)i);
        XT_ASSERT_OK(tp_wait(x, nxl_xfer_post(x, NULL)));
        XT_ASSERT(tp_file_equals(fd, 0, buf, len));
    }
    nxl_xfer_release(x);

    /* 2048 pieces through a queue of one: still active right after. */
    tp_fill(buf, big, 7);
    XT_ASSERT(pwrite(fd, buf, big, 0) == (ssize_t)big);
    md = (nxl_desc_t){(uintptr_t)dst, big, 0};
    fdesc = (nxl_desc_t){0, big, (uint64_t)fd};
    XT_ASSERT_OK(tp_make(a, NXL_READ, &md, &fdesc, 1, &x));
    for (i = 0; i < 3; i++) {
        memset(dst, 0, big);
        st = nxl_xfer_post(x, NULL);
        XT_ASSERT(st == NXL_IN_PROG || st == NXL_OK);
        if (st == NXL_IN_PROG) {
            XT_ASSERT_STATUS(nxl_xfer_post(x, NULL), NXL_ERR_REPOST_ACTIVE);
        }
        XT_ASSERT_OK(tp_wait(x, st));
        XT_ASSERT(memcmp(dst, buf, big) == 0);
    }
    nxl_xfer_release(x);
    nxl_agent_destroy(a);
    close(fd);
    munmap(buf, big);
    munmap(dst, big);
    XT_ASSERT(!TP_LEAKED());
    return 0;
}

/* Releasing a transfer in flight returns only when no I/O touches its
 * buffer any more: bytes written after the release stay put. */
static int
t_release_inflight(void)
{
    const uint64_t len = 32 * TP_MIB;
    nxl_param_t p[] = {
        {"queue_depth", "2"}, {"num_threads", "2"}, {"chunk_size", "65536"}};
    nxl_desc_t md, fdesc;
    nxl_status_t st;
    nxl_xfer_t *x;
    uint8_t *buf, *dst;
    nxl_agent_t *a;
    uint64_t k;
    int fd, i, inflight = 0;

    buf = tp_map(len);
    dst = tp_map(len);
    fd = tp_tmpfile();
    XT_ASSERT(buf != NULL && dst != NULL && fd >= 0);
    tp_fill(buf, len, 8);
    XT_ASSERT(pwrite(fd, buf, len, 0) == (ssize_t)len);
    TP_AGENT(NULL, p, 3, &a);
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)dst, len, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_FILE, 0, len, (uint64_t)fd));
    md = (nxl_desc_t){(uintptr_t)dst, len, 0};
    fdesc = (nxl_desc_t){0, len, (uint64_t)fd};
    for (i = 0; i < 5; i++) {
        XT_ASSERT_OK(tp_make(a, NXL_READ, &md, &fdesc, 1, &x));
        st = nxl_xfer_post(x, NULL);
        XT_ASSERT(st == NXL_IN_PROG || st == NXL_OK);
        inflight += st == NXL_IN_PROG;
        nxl_xfer_release(x);
        memset(dst, 0xab, len);
        usleep(50000);
        for (k = 0; k < len; k++) {
            if (dst[k] != 0xab) {
                XT_FAILF("byte %llu changed after release",
                         (unsigned long long)k);
            }
        }
    }
    XT_ASSERT(inflight > 0);
    /* The engine still works afterwards. */
    XT_ASSERT_OK(tp_run(a, NXL_READ, &md, &fdesc, 1));
    XT_ASSERT(memcmp(dst, buf, len) == 0);
    nxl_agent_destroy(a);
    close(fd);
    munmap(buf, len);
    munmap(dst, len);
    XT_ASSERT(!TP_LEAKED());
    return 0;
}

/* nxl_xfer_wait sleeps on the event fd: with and without a progress
 * thread, with a zero timeout, and a transfer destroyed with the agent. */
static int
t_wait(void)
{
    const uint64_t len = 32 * TP_MIB;
    nxl_agent_config_t cfg;
    nxl_desc_t md, fdesc;
    nxl_status_t st;
    nxl_xfer_t *x;
    uint8_t *buf, *dst;
    nxl_agent_t *a;
    int fd, pt;

    buf = tp_map(len);
    dst = tp_map(len);
    fd = tp_tmpfile();
    XT_ASSERT(buf != NULL && dst != NULL && fd >= 0);
    tp_fill(buf, len, 12);
    XT_ASSERT(pwrite(fd, buf, len, 0) == (ssize_t)len);
    for (pt = 0; pt < 2; pt++) {
        nxl_agent_config_init(&cfg);
        cfg.progress_thread = pt;
        TP_AGENT(&cfg, NULL, 0, &a);
        XT_ASSERT(nxl_agent_fd(a) >= 0);
        XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)dst, len, 0));
        XT_ASSERT_OK(tp_reg(a, NXL_FILE, 0, len, (uint64_t)fd));
        md = (nxl_desc_t){(uintptr_t)dst, len, 0};
        fdesc = (nxl_desc_t){0, len, (uint64_t)fd};
        XT_ASSERT_OK(tp_make(a, NXL_READ, &md, &fdesc, 1, &x));
        XT_ASSERT_STATUS(nxl_xfer_status(x), NXL_ERR_NOT_POSTED);
        memset(dst, 0, len);
        st = nxl_xfer_post(x, NULL);
        XT_ASSERT(st == NXL_OK || st == NXL_IN_PROG);
        st = nxl_xfer_wait(x, 0);
        XT_ASSERT(st == NXL_OK || st == NXL_ERR_TIMEOUT);
        XT_ASSERT_OK(nxl_xfer_wait(x, -1));
        XT_ASSERT(memcmp(dst, buf, len) == 0);
        XT_ASSERT_OK(nxl_xfer_status(x));
        /* Left in flight for nxl_agent_destroy to cancel. */
        st = nxl_xfer_post(x, NULL);
        XT_ASSERT(st == NXL_OK || st == NXL_IN_PROG);
        nxl_agent_destroy(a);
    }
    close(fd);
    munmap(buf, len);
    munmap(dst, len);
    XT_ASSERT(!TP_LEAKED());
    return 0;
}

/* One worker thread of t_threads. */
typedef struct {
    nxl_agent_t *a;
    uint8_t *buf;
    uint64_t len;
    uint64_t off;
    int fd;
    int seed;
    int failed;
    char why[256];
} tp_thr_t;

/* tp_thr_main writes and reads back its own range 20 times. */
static void *
tp_thr_main(void *arg)
{
    tp_thr_t *t = arg;
    uint8_t *half = t->buf + t->len;
    nxl_desc_t md, fdesc;
    nxl_status_t st;
    int i;

    for (i = 0; i < 20 && !t->failed; i++) {
        tp_fill(t->buf, t->len, (uint64_t)(t->seed * 100 + i));
        md = (nxl_desc_t){(uintptr_t)t->buf, t->len, 0};
        fdesc = (nxl_desc_t){t->off, t->len, (uint64_t)t->fd};
        st = tp_run(t->a, NXL_WRITE, &md, &fdesc, 1);
        if (st == NXL_OK) {
            memset(half, 0, t->len);
            md.addr = (uintptr_t)half;
            st = tp_run(t->a, NXL_READ, &md, &fdesc, 1);
        }
        if (st != NXL_OK) {
            t->failed = 1;
            snprintf(t->why, sizeof(t->why), "%s: %s", nxl_status_name(st),
                     nxl_last_error());
        } else if (memcmp(half, t->buf, t->len) != 0) {
            t->failed = 1;
            snprintf(t->why, sizeof(t->why), "iteration %d differs", i);
        }
    }
    return NULL;
}

/* Four threads share one agent (NXL_SYNC_RW) and one file. */
static int
t_threads(void)
{
    enum { T = 4 };
    const uint64_t len = 256 * TP_KIB;
    nxl_agent_config_t cfg;
    pthread_t tid[T];
    tp_thr_t th[T];
    uint8_t *mem;
    nxl_agent_t *a;
    int fd, i;

    mem = tp_map(T * 2 * len);
    fd = tp_tmpfile();
    XT_ASSERT(mem != NULL && fd >= 0);
    nxl_agent_config_init(&cfg);
    cfg.sync_mode = NXL_SYNC_RW;
    TP_AGENT(&cfg, NULL, 0, &a);
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)mem, T * 2 * len, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_FILE, 0, T * len, (uint64_t)fd));
    for (i = 0; i < T; i++) {
        th[i] = (tp_thr_t){.a = a,
                           .buf = mem + (uint64_t)i * 2 * len,
                           .len = len,
                           .off = (uint64_t)i * len,
                           .fd = fd,
                           .seed = i};
        XT_ASSERT(pthread_create(&tid[i], NULL, tp_thr_main, &th[i]) == 0);
    }
    for (i = 0; i < T; i++) {
        pthread_join(tid[i], NULL);
    }
    for (i = 0; i < T; i++) {
        if (th[i].failed) {
            XT_FAILF("thread %d: %s", i, th[i].why);
        }
    }
    nxl_agent_destroy(a);
    close(fd);
    munmap(mem, T * 2 * len);
    XT_ASSERT(!TP_LEAKED());
    return 0;
}

/* Four transfers in flight at once on a small queue, all complete. */
static int
t_concurrent(void)
{
    enum { N = 4 };
    const uint64_t len = 4 * TP_MIB;
    nxl_param_t p[] = {{"queue_depth", "8"}, {"chunk_size", "65536"}};
    nxl_desc_t md, fdesc;
    nxl_xfer_t *x[N];
    nxl_status_t st[N];
    uint8_t *src, *dst;
    nxl_agent_t *a;
    int fd, i;

    src = tp_map(N * len);
    dst = tp_map(N * len);
    fd = tp_tmpfile();
    XT_ASSERT(src != NULL && dst != NULL && fd >= 0);
    tp_fill(src, N * len, 21);
    TP_AGENT(NULL, p, 2, &a);
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)src, N * len, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)dst, N * len, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_FILE, 0, N * len, (uint64_t)fd));
    for (i = 0; i < N; i++) {
        md = (nxl_desc_t){(uintptr_t)src + (uint64_t)i * len, len, 0};
        fdesc = (nxl_desc_t){(uint64_t)(N - 1 - i) * len, len, (uint64_t)fd};
        XT_ASSERT_OK(tp_make(a, NXL_WRITE, &md, &fdesc, 1, &x[i]));
    }
    for (i = 0; i < N; i++) {
        st[i] = nxl_xfer_post(x[i], NULL);
        XT_ASSERT(st[i] == NXL_OK || st[i] == NXL_IN_PROG);
    }
    for (i = N; i-- > 0;) {
        XT_ASSERT_OK(tp_wait(x[i], st[i]));
        nxl_xfer_release(x[i]);
    }
    for (i = 0; i < N; i++) {
        XT_ASSERT(tp_file_equals(fd, (uint64_t)(N - 1 - i) * len,
                                 src + (uint64_t)i * len, len));
    }
    md = (nxl_desc_t){(uintptr_t)dst, N * len, 0};
    fdesc = (nxl_desc_t){0, N * len, (uint64_t)fd};
    XT_ASSERT_OK(tp_run(a, NXL_READ, &md, &fdesc, 1));
    for (i = 0; i < N; i++) {
        XT_ASSERT(memcmp(dst + (uint64_t)(N - 1 - i) * len,
                         src + (uint64_t)i * len, len) == 0);
    }
    nxl_agent_destroy(a);
    close(fd);
    munmap(src, N * len);
    munmap(dst, N * len);
    XT_ASSERT(!TP_LEAKED());
    return 0;
}

/* Access modes, sides and kinds: WRITE to a read-only or O_APPEND fd is
 * NOT_ALLOWED; the FILE list may be the local one (READ then fills the
 * file); DRAM <-> DRAM is not this backend's. */
static int
t_sides_and_modes(void)
{
    const uint64_t len = 64 * TP_KIB;
    nxl_desc_t md, fdesc;
    nxl_dlist_t l, r;
    nxl_backend_t *be;
    nxl_opts_t opts;
    nxl_xfer_t *x;
    uint8_t *buf, *dst;
    nxl_agent_t *a;
    char path[64];
    int fd, ro;

    buf = tp_map(len);
    dst = tp_map(len);
    fd = tp_tmpfile();
    XT_ASSERT(buf != NULL && dst != NULL && fd >= 0);
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ro = open(path, O_RDONLY | O_CLOEXEC);
    XT_ASSERT(ro >= 0);
    TP_AGENT(NULL, NULL, 0, &a);
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)buf, len, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)dst, len, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_FILE, 0, len, (uint64_t)fd));
    XT_ASSERT_OK(tp_reg(a, NXL_FILE, 0, len, (uint64_t)ro));

    /* Local FILE, remote DRAM: READ pulls memory into the file. */
    tp_fill(buf, len, 31);
    md = (nxl_desc_t){(uintptr_t)buf, len, 0};
    fdesc = (nxl_desc_t){0, len, (uint64_t)fd};
    l = (nxl_dlist_t){NXL_FILE, &fdesc, 1};
    r = (nxl_dlist_t){NXL_DRAM, &md, 1};
    XT_ASSERT_OK(nxl_xfer_create(a, NXL_READ, &l, &r, TP_AGENT_NAME, NULL, &x));
    XT_ASSERT_OK(tp_wait(x, nxl_xfer_post(x, NULL)));
    nxl_xfer_release(x);
    XT_ASSERT(tp_file_equals(fd, 0, buf, len));

    /* The read-only fd reads, and refuses writes when made. */
    md = (nxl_desc_t){(uintptr_t)dst, len, 0};
    fdesc = (nxl_desc_t){0, len, (uint64_t)ro};
    XT_ASSERT_OK(tp_run(a, NXL_READ, &md, &fdesc, 1));
    XT_ASSERT(memcmp(dst, buf, len) == 0);
    TP_ASSERT_ERR(tp_run(a, NXL_WRITE, &md, &fdesc, 1), NXL_ERR_NOT_ALLOWED,
                  "read-only");

    /* O_APPEND would put every write at the end: refused, reads fine. */
    XT_ASSERT(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_APPEND) == 0);
    md = (nxl_desc_t){(uintptr_t)buf, len, 0};
    fdesc = (nxl_desc_t){0, len, (uint64_t)fd};
    TP_ASSERT_ERR(tp_run(a, NXL_WRITE, &md, &fdesc, 1), NXL_ERR_NOT_ALLOWED,
                  "O_APPEND");
    md.addr = (uintptr_t)dst;
    XT_ASSERT_OK(tp_run(a, NXL_READ, &md, &fdesc, 1));
    XT_ASSERT(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_APPEND) == 0);

    /* DRAM to DRAM through POSIX alone. */
    be = nxl_backend_get(a, "POSIX");
    XT_ASSERT(be != NULL);
    nxl_opts_init(&opts);
    opts.backends = &be;
    opts.num_backends = 1;
    l = (nxl_dlist_t){NXL_DRAM, &(nxl_desc_t){(uintptr_t)dst, len, 0}, 1};
    r = (nxl_dlist_t){NXL_DRAM, &(nxl_desc_t){(uintptr_t)buf, len, 0}, 1};
    XT_ASSERT_STATUS(
        nxl_xfer_create(a, NXL_READ, &l, &r, TP_AGENT_NAME, &opts, &x),
        NXL_ERR_NOT_SUPPORTED);

    nxl_agent_destroy(a);
    close(ro);
    close(fd);
    munmap(buf, len);
    munmap(dst, len);
    XT_ASSERT(!TP_LEAKED());
    return 0;
}

/* Registrations come and go while the engine lives: a region registered,
 * used, deregistered and registered again (new fixed slots), many files. */
static int
t_register_cycle(void)
{
    enum { F = 40 };
    const uint64_t len = 16 * TP_KIB;
    nxl_desc_t md[F], fdesc[F];
    uint8_t *buf, *dst;
    nxl_agent_t *a;
    int fds[F], i, round;

    buf = tp_map(F * len);
    dst = tp_map(F * len);
    XT_ASSERT(buf != NULL && dst != NULL);
    TP_AGENT(NULL, NULL, 0, &a);
    for (round = 0; round < 3; round++) {
        tp_fill(buf, F * len, (uint64_t)round);
        memset(dst, 0, F * len);
        XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)buf, F * len, 0));
        XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)dst, F * len, 0));
        for (i = 0; i < F; i++) {
            fds[i] = tp_tmpfile();
            XT_ASSERT(fds[i] >= 0);
            XT_ASSERT_OK(tp_reg(a, NXL_FILE, 0, len, (uint64_t)fds[i]));
            md[i] = (nxl_desc_t){(uintptr_t)buf + (uint64_t)i * len, len, 0};
            fdesc[i] = (nxl_desc_t){0, len, (uint64_t)fds[i]};
        }
        XT_ASSERT_OK(tp_run(a, NXL_WRITE, md, fdesc, F));
        for (i = 0; i < F; i++) {
            md[i].addr = (uintptr_t)dst + (uint64_t)i * len;
        }
        XT_ASSERT_OK(tp_run(a, NXL_READ, md, fdesc, F));
        XT_ASSERT(memcmp(buf, dst, F * len) == 0);
        for (i = 0; i < F; i++) {
            XT_ASSERT_OK(tp_dereg(a, NXL_FILE, 0, len, (uint64_t)fds[i]));
            close(fds[i]);
        }
        XT_ASSERT_OK(tp_dereg(a, NXL_DRAM, (uintptr_t)buf, F * len, 0));
        XT_ASSERT_OK(tp_dereg(a, NXL_DRAM, (uintptr_t)dst, F * len, 0));
    }
    nxl_agent_destroy(a);
    munmap(buf, F * len);
    munmap(dst, F * len);
    XT_ASSERT(!TP_LEAKED());
    return 0;
}

/* POSIX delivers no notifications: a transfer that asks for one is
 * refused when it is made (NOT_SUPPORTED), and so is a post that attaches
 * one, instead of completing and dropping it. */
static int
t_notif_refused(void)
{
    const uint64_t len = 4096;
    nxl_desc_t md = {0, len, 0}, fd_desc;
    nxl_dlist_t ml = {NXL_DRAM, &md, 1}, fl = {NXL_FILE, &fd_desc, 1};
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    nxl_opts_t o;
    uint8_t *buf = tp_map(len);
    int fd = tp_tmpfile();

    XT_ASSERT(buf != NULL && fd >= 0);
    XT_ASSERT(ftruncate(fd, (off_t)len) == 0);
    TP_AGENT(NULL, NULL, 0, &a);
    md.addr = (uintptr_t)buf;
    fd_desc = (nxl_desc_t){0, len, (uint64_t)fd};
    XT_ASSERT_OK(tp_reg(a, NXL_DRAM, (uintptr_t)buf, len, 0));
    XT_ASSERT_OK(tp_reg(a, NXL_FILE, 0, len, (uint64_t)fd));
    nxl_opts_init(&o);
    o.has_notif = 1;
    o.notif = "hello";
    o.notif_len = 5;
    XT_ASSERT_STATUS(
        nxl_xfer_create(a, NXL_WRITE, &ml, &fl, TP_AGENT_NAME, &o, &x),
        NXL_ERR_NOT_SUPPORTED);
    XT_ASSERT(strstr(nxl_last_error(), "notification") != NULL);
    XT_ASSERT(x == NULL);
    XT_ASSERT_OK(
        nxl_xfer_create(a, NXL_WRITE, &ml, &fl, TP_AGENT_NAME, NULL, &x));
    XT_ASSERT_STATUS(nxl_xfer_post(x, &o), NXL_ERR_NOT_SUPPORTED);
    /* Still usable without one. */
    XT_ASSERT(nxl_xfer_post(x, NULL) >= 0);
    XT_ASSERT_OK(nxl_xfer_wait(x, TP_WAIT_MS));
    nxl_xfer_release(x);
    XT_ASSERT_OK(tp_dereg(a, NXL_FILE, 0, len, (uint64_t)fd));
    XT_ASSERT_OK(tp_dereg(a, NXL_DRAM, (uintptr_t)buf, len, 0));
    nxl_agent_destroy(a);
    close(fd);
    munmap(buf, len);
    return 0;
}

static const char *const tp_apis[] = {"uring", "threads", NULL};

const xt_suite xt_suite_posix = {
    .name = "posix",
    .timeout_s = 60,
    .params = tp_apis,
    .cases =
        (const xt_case[]){
            {"plugin_info", t_plugin_info},
            {"params", t_params},
            {"engine", t_engine},
            {"uring_refused", t_uring_refused},
            {"sizes", t_sizes},
            {"many_descs", t_many_descs},
            {"queue_depth", t_queue_depth},
            {"odirect", t_odirect},
            {"out_of_range", t_out_of_range},
            {"short_read", t_short_read},
            {"closed_fd", t_closed_fd},
            {"repost", t_repost},
            {"release_inflight", t_release_inflight},
            {"wait", t_wait},
            {"threads", t_threads},
            {"concurrent", t_concurrent},
            {"sides_and_modes", t_sides_and_modes},
            {"register_cycle", t_register_cycle},
            {"notif_refused", t_notif_refused},
            {NULL, NULL},
        },
};
