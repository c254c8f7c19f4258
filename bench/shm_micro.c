/*
 * shm_micro.c - micro-benchmark of the SHM backend's data paths against
 * their limits, driving the ops table directly (no agent).
 *
 * A white-box benchmark: it includes the backend's private header, so it
 * links the layer archives through nxl_internal, as the tests do. Built
 * with the project (bench/CMakeLists.txt):
 * Run: build/bench/shm-micro [reps]   (prints medians of reps runs,
 *      default 5)
 * Env: SHM_CASES=cma,mapped,lat,many  SHM_THREADS=n  SHM_SPLIT=bytes
 *      SHM_POLICY=adaptive|always
 *
 * Cases, each against a baseline measured in the same run:
 *   cma:    1-64 MiB READ/WRITE of ordinary memory vs one process_vm_readv
 *           (writev) per block on one thread; cold data (the blocks rotate
 *           through 512 MiB, more than the LLC).
 *   mapped: the same against a peer's memfd region vs a one-core SSE2
 *           non-temporal copy between the same addresses.
 *   lat:    4 KiB single-descriptor READ, post to completion (median).
 *   many:   32768 x 16 KiB scattered descriptors vs a loop of batched
 *           process_vm_readv calls (1024 iovecs a side) over the same blocks.
 */
#include "backends/shm/shm.h"

#include <emmintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define POOL (512ull << 20)
#define MANY 32768u
#define MANY_BLK (16u << 10)

static const nxl_backend_ops_t *ops = &nxl__be_shm_ops;

/* Remote region info sent by the target. */
typedef struct {
    uint64_t addr, len;
    uint8_t pub[64];
    uint32_t publen;
} rinfo_t;

/* mb_set_error and the next three make a host that ignores everything. */
static void
mb_set_error(const char *fmt, ...)
{
    (void)fmt;
}
/* mb_log drops log lines. */
static void
mb_log(int level, const char *fmt, ...)
{
    (void)level;
    (void)fmt;
}
/* mb_notif drops notifications. */
static void
mb_notif(void *ctx, const char *peer, const void *msg, size_t len)
{
    (void)ctx;
    (void)peer;
    (void)msg;
    (void)len;
}
/* mb_wake ignores wake-ups. */
static void
mb_wake(void *ctx)
{
    (void)ctx;
}

static nxl_backend_host_t mb_host = {.size = sizeof(nxl_backend_host_t),
                                     .agent_name = "bench",
                                     .set_error = mb_set_error,
                                     .log = mb_log,
                                     .notif_recv = mb_notif,
                                     .wake = mb_wake};

/* mb_open creates an engine with params. */
static void *
mb_open(const nxl_param_t *p, size_t n)
{
    nxl_params_t ps = {p, n};
    void *e = calloc(1, ops->engine_size);

    if (ops->init(e, &mb_host, &ps) != NXL_OK) {
        fprintf(stderr, "init: %s\n", nxl_last_error());
        exit(1);
    }
    return e;
}

/* mb_map maps len bytes, in a memfd when fd_p is not NULL. */
static uint8_t *
mb_map(size_t len, int *fd_p)
{
    uint8_t *p;

    if (fd_p != NULL) {
        *fd_p = memfd_create("mb", MFD_CLOEXEC);
        if (ftruncate(*fd_p, (off_t)len) < 0) {
            exit(1);
        }
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, *fd_p, 0);
    } else {
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
    }
    if (p == MAP_FAILED) {
        exit(1);
    }
    memset(p, 1, len);
    return p;
}

/* mb_register registers and packs a region. */
static void *
mb_register(void *eng, uint8_t *p, size_t len, int fd, nxl_blob_t *pub)
{
    nxl_be_region_t r = {(uint64_t)(uintptr_t)p, len, 0, NXL_DRAM, fd, 0};
    void *md;

    if (ops->mem_register(eng, &r, &md) != NXL_OK ||
        (pub && ops->md_pack(eng, md, pub) != NXL_OK)) {
        exit(1);
    }
    return md;
}

/* mb_target: a plain region and a memfd region, then serve progress. */
static void
mb_target(int sock)
{
    void *eng = mb_open(NULL, 0);
    nxl_blob_t conn, pub;
    rinfo_t ri;
    uint8_t *p;
    int fd, i;
    char c;

    ops->conn_info(eng, &conn);
    send(sock, conn.data, conn.len, 0);
    for (i = 0; i < 2; i++) {
        p = mb_map(POOL * 2, i ? &fd : NULL);
        mb_register(eng, p, POOL * 2, i ? fd : -1, &pub);
        ri.addr = (uint64_t)(uintptr_t)p;
        ri.len = POOL * 2;
        ri.publen = (uint32_t)pub.len;
        memcpy(ri.pub, pub.data, pub.len);
        send(sock, &ri, sizeof(ri), 0);
    }
    while (recv(sock, &c, 1, MSG_DONTWAIT) != 0) {
        ops->progress(eng);
        usleep(1000);
    }
    _exit(0);
}

/* mb_nt is the one-core non-temporal copy baseline. */
static void
mb_nt(uint8_t *d, const uint8_t *s, size_t n)
{
    size_t i;

    for (i = 0; i + 64 <= n; i += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i b =
            _mm_loadu_si128((const __m128i *)(const void *)(s + i + 16));
        __m128i c =
            _mm_loadu_si128((const __m128i *)(const void *)(s + i + 32));
        __m128i e =
            _mm_loadu_si128((const __m128i *)(const void *)(s + i + 48));
        _mm_stream_si128((__m128i *)(void *)(d + i), a);
        _mm_stream_si128((__m128i *)(void *)(d + i + 16), b);
        _mm_stream_si128((__m128i *)(void *)(d + i + 32), c);
        _mm_stream_si128((__m128i *)(void *)(d + i + 48), e);
    }
    _mm_sfence();
}

/* mb_cmp sorts doubles. */
static int
mb_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* mb_median returns the median of v[0..n). */
static double
mb_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), mb_cmp);
    return v[n / 2];
}

typedef struct {
    void *eng;
    void *peer;
    pid_t pid;
    uint8_t *local;
    void *lmd;
    rinfo_t ri[2];
    void *rmd[2];
} mb_t;

/* mb_bw runs transfers of size sz rotating through the pool with
 * SHM (mode 0) or the baseline (mode 1); returns GB/s. */
static double
mb_bw(mb_t *m, int remote, nxl_op_t op, size_t sz, int mode)
{
    size_t iters = NXL__MAX((size_t)(256ull << 20) / sz, 8), i, off = 0;
    nxl_be_seg_t l, r;
    nxl_be_xfer_t x;
    void *req = calloc(1, ops->req_size);
    uint64_t t0;
    nxl_status_t st;

    memset(&x, 0, sizeof(x));
    x.op = op;
    x.local_mem = x.remote_mem = NXL_DRAM;
    x.peer = "target";
    x.peer_ctx = m->peer;
    x.count = 1;
    x.local = &l;
    x.remote = &r;
    t0 = nxl__now_ns();
    for (i = 0; i < iters; i++) {
        uint8_t *la = m->local + off;
        uint64_t ra = m->ri[remote].addr + off;

        off += sz;
        if (off + sz > POOL) {
            off = 0;
        }
        if (mode == 1) {
            if (remote == 0) {
                struct iovec lv = {la, sz}, rv = {(void *)(uintptr_t)ra, sz};
                if (op == NXL_READ) {
                    process_vm_readv(m->pid, &lv, 1, &rv, 1, 0);
                } else {
                    process_vm_writev(m->pid, &lv, 1, &rv, 1, 0);
                }
            } else {
                be_shm_rmd_t *rmd = m->rmd[1];
                uint8_t *mapped = (uint8_t *)(uintptr_t)(ra + rmd->delta);
                if (op == NXL_READ) {
                    mb_nt(la, mapped, sz);
                } else {
                    mb_nt(mapped, la, sz);
                }
            }
            continue;
        }
        l = (nxl_be_seg_t){(uint64_t)(uintptr_t)la, sz, 0, m->lmd};
        r = (nxl_be_seg_t){ra, sz, 0, m->rmd[remote]};
        x.total_bytes = sz;
        memset(req, 0, ops->req_size);
        if (ops->prep(m->eng, req, &x) != NXL_OK) {
            exit(2);
        }
        st = ops->post(m->eng, req, &x);
        while (st == NXL_IN_PROG) {
            st = ops->check(m->eng, req);
        }
        if (st != NXL_OK) {
            fprintf(stderr, "xfer: %s\n", nxl_last_error());
            exit(2);
        }
        ops->release(m->eng, req);
    }
    free(req);
    return (double)(iters * sz) / (double)(nxl__now_ns() - t0);
}

/* mb_lat measures 4 KiB READ post-to-completion, median over n, in ns. */
static double
mb_lat(mb_t *m, int remote, int mode)
{
    enum { N = 20000 };
    static double v[N];
    nxl_be_seg_t l, r;
    nxl_be_xfer_t x;
    void *req = calloc(1, ops->req_size);
    uint64_t t0, off = 0;
    int i;

    memset(&x, 0, sizeof(x));
    x.op = NXL_READ;
    x.local_mem = x.remote_mem = NXL_DRAM;
    x.peer = "target";
    x.peer_ctx = m->peer;
    x.count = 1;
    x.local = &l;
    x.remote = &r;
    x.total_bytes = 4096;
    l = (nxl_be_seg_t){(uint64_t)(uintptr_t)m->local, 4096, 0, m->lmd};
    r = (nxl_be_seg_t){m->ri[remote].addr, 4096, 0, m->rmd[remote]};
    ops->prep(m->eng, req, &x);
    for (i = 0; i < N; i++) {
        struct iovec lv = {m->local, 4096},
                     rv = {(void *)(uintptr_t)(m->ri[remote].addr + off), 4096};
        (void)off;
        t0 = nxl__now_ns();
        if (mode == 1) {
            process_vm_readv(m->pid, &lv, 1, &rv, 1, 0);
        } else if (ops->post(m->eng, req, &x) != NXL_OK) {
            exit(3);
        }
        v[i] = (double)(nxl__now_ns() - t0);
    }
    ops->release(m->eng, req);
    free(req);
    return mb_median(v, N);
}

/* mb_many: 32768 x 16 KiB scattered blocks (stride 32 KiB both sides). */
static double
mb_many(mb_t *m, nxl_op_t op, int mode, int reps)
{
    static nxl_be_seg_t l[MANY], r[MANY];
    static struct iovec lv[MANY], rv[MANY];
    nxl_be_xfer_t x;
    void *req = calloc(1, ops->req_size);
    uint64_t t0, best = UINT64_MAX, dt;
    nxl_status_t st;
    unsigned i;
    int k;

    for (i = 0; i < MANY; i++) {
        /* Local blocks reversed, remote forward: nothing merges. */
        uint64_t la =
            (uint64_t)(uintptr_t)m->local + (uint64_t)(MANY - 1 - i) * MANY_BLK;
        uint64_t ra = m->ri[0].addr + (uint64_t)i * 2 * MANY_BLK;

        l[i] = (nxl_be_seg_t){la, MANY_BLK, 0, m->lmd};
        r[i] = (nxl_be_seg_t){ra, MANY_BLK, 0, m->rmd[0]};
        lv[i] = (struct iovec){(void *)(uintptr_t)la, MANY_BLK};
        rv[i] = (struct iovec){(void *)(uintptr_t)ra, MANY_BLK};
    }
    memset(&x, 0, sizeof(x));
    x.op = op;
    x.local_mem = x.remote_mem = NXL_DRAM;
    x.peer = "target";
    x.peer_ctx = m->peer;
    x.count = MANY;
    x.local = l;
    x.remote = r;
    x.total_bytes = (uint64_t)MANY * MANY_BLK;
    ops->prep(m->eng, req, &x);
    for (k = 0; k < reps; k++) {
        t0 = nxl__now_ns();
        if (mode == 1) {
            for (i = 0; i < MANY; i += 1024) {
                if (op == NXL_READ) {
                    process_vm_readv(m->pid, lv + i, 1024, rv + i, 1024, 0);
                } else {
                    process_vm_writev(m->pid, lv + i, 1024, rv + i, 1024, 0);
                }
            }
        } else {
            st = ops->post(m->eng, req, &x);
            while (st == NXL_IN_PROG) {
                st = ops->check(m->eng, req);
            }
            if (st != NXL_OK) {
                exit(4);
            }
        }
        dt = nxl__now_ns() - t0;
        best = NXL__MIN(best, dt);
    }
    ops->release(m->eng, req);
    free(req);
    return (double)x.total_bytes / (double)best;
}

/* mb_want reports whether case name is selected by SHM_CASES (default
 * all), a comma-separated list of cma, mapped, lat, many. */
static int
mb_want(const char *name)
{
    const char *c = getenv("SHM_CASES");

    return c == NULL || strstr(c, name) != NULL;
}

/* main forks the target, loads it and runs the selected cases. */
int
main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 5, sv[2], i, k, s, remote, opi;
    static const size_t sizes[] = {1u << 20, 4u << 20, 16u << 20, 64u << 20};
    uint8_t conn[256];
    nxl_desc_t d;
    double a[16], b[16], q[16], ra, rb;
    ssize_t n;
    mb_t m;

    if (reps < 1 || reps > 15) {
        reps = 5;
    }
    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv);
    m.pid = fork();
    if (m.pid == 0) {
        close(sv[0]);
        mb_target(sv[1]);
    }
    close(sv[1]);
    n = recv(sv[0], conn, sizeof(conn), 0);
    recv(sv[0], &m.ri[0], sizeof(m.ri[0]), 0);
    recv(sv[0], &m.ri[1], sizeof(m.ri[1]), 0);
    {
        static nxl_param_t ps[3];
        size_t np = 0;

        if (getenv("SHM_THREADS") != NULL) {
            ps[np++] = (nxl_param_t){"num_threads", getenv("SHM_THREADS")};
        }
        if (getenv("SHM_POLICY") != NULL) {
            ps[np++] = (nxl_param_t){"split_policy", getenv("SHM_POLICY")};
        }
        if (getenv("SHM_SPLIT") != NULL) {
            ps[np++] = (nxl_param_t){"split_threshold", getenv("SHM_SPLIT")};
        }
        m.eng = mb_open(ps, np);
    }
    printf("engine: num_threads=%u split_threshold=%llu nt_threshold=%llu\n",
           ((be_shm_engine_t *)m.eng)->num_threads,
           (unsigned long long)((be_shm_engine_t *)m.eng)->split_threshold,
           (unsigned long long)((be_shm_engine_t *)m.eng)->nt_threshold);
    m.local = mb_map(POOL, NULL);
    m.lmd = mb_register(m.eng, m.local, POOL, -1, NULL);
    if (ops->peer_load(m.eng, "target", conn, (size_t)n, &m.peer) != NXL_OK) {
        fprintf(stderr, "peer_load: %s\n", nxl_last_error());
        return 77;
    }
    for (i = 0; i < 2; i++) {
        d = (nxl_desc_t){m.ri[i].addr, m.ri[i].len, 0};
        ops->md_unpack(m.eng, m.peer, &d, NXL_DRAM, m.ri[i].pub, m.ri[i].publen,
                       &m.rmd[i]);
    }
    printf("mapped: %d\n", be_shm_rmd_is_mapped(m.rmd[1]));

    for (remote = 0; remote < 2; remote++) {
        if (!mb_want(remote ? "mapped" : "cma")) {
            continue;
        }
        for (opi = 0; opi < 2; opi++) {
            for (s = 0; s < 4; s++) {
                for (k = 0; k < reps; k++) {
                    b[k] = mb_bw(&m, remote, (nxl_op_t)opi, sizes[s], 1);
                    a[k] = mb_bw(&m, remote, (nxl_op_t)opi, sizes[s], 0);
                    q[k] = a[k] / b[k];
                }
                ra = mb_median(a, reps);
                rb = mb_median(b, reps);
                printf("%-6s %-5s %3zu MiB: shm %6.2f GB/s  %-10s %6.2f GB/s  "
                       "median ratio %.2f\n",
                       remote ? "mapped" : "cma", opi ? "WRITE" : "READ",
                       sizes[s] >> 20, ra, remote ? "nt-memcpy" : "vm_rw 1thr",
                       rb, mb_median(q, reps));
            }
        }
    }
    for (remote = 0; remote < 2 && mb_want("lat"); remote++) {
        for (k = 0; k < reps; k++) {
            a[k] = mb_lat(&m, remote, 0);
            b[k] = mb_lat(&m, remote, 1);
        }
        printf("lat 4KiB READ %-6s: shm post-to-completion median %.0f ns "
               "(raw process_vm_readv %.0f ns)\n",
               remote ? "mapped" : "cma", mb_median(a, reps),
               mb_median(b, reps));
    }
    for (opi = 0; opi < 2 && mb_want("many"); opi++) {
        for (k = 0; k < reps; k++) {
            b[k] = mb_many(&m, (nxl_op_t)opi, 1, 1);
            a[k] = mb_many(&m, (nxl_op_t)opi, 0, 1);
            q[k] = a[k] / b[k];
        }
        ra = mb_median(a, reps);
        rb = mb_median(b, reps);
        printf("many 32768x16KiB %-5s: shm %6.2f GB/s  batched vm_rw %6.2f "
               "GB/s  median ratio %.2f\n",
               opi ? "WRITE" : "READ", ra, rb, mb_median(q, reps));
    }
    for (i = 0; i < 2; i++) {
        ops->md_unload(m.eng, m.rmd[i]);
    }
    ops->peer_unload(m.eng, m.peer);
    close(sv[0]);
    waitpid(m.pid, NULL, 0);
    ops->mem_deregister(m.eng, m.lmd);
    ops->fini(m.eng);
    free(m.eng);
    return 0;
}
