/*
 * nxl_posix_bench.c - DRAM <-> FILE throughput of the POSIX backend through
 * the public API, to compare with fio on the same file (bench/posix/run.sh).
 *
 * The file (which must exist and be at least -s bytes) is cut into blocks of
 * -b bytes. Each transfer carries -n blocks (one descriptor each, merging
 * off) at sequential or random block positions; -r transfers are kept in
 * flight, and the backend keeps at most -q operations in the kernel. Prints
 * one line: MiB/s, IOPS (blocks per second), CPU use of the process and how
 * much of the buffer is on huge pages.
 *
 * The buffer is on transparent huge pages (bench_map_huge, 2 MiB-aligned,
 * MADV_HUGEPAGE), as run.sh gives fio's: with O_DIRECT the device gets one
 * segment per physically contiguous run of the buffer, and a buffer
 * prefaulted page by page has up to 256 per MiB on the development VM,
 * which decided the comparison more than either program did. -P keeps the
 * earlier buffer (4 KiB pages, MAP_POPULATE) for before/after runs.
 */
#include "huge_map.h"

#include <nxl/nxl.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define AGENT "bench"
#define HUGE_2M ((size_t)2 << 20)

/* now_s returns a monotonic clock in seconds. */
static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* cpu_s returns user + system CPU seconds of this process. */
static double
cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

/* parse_size reads a byte count with an optional k/m/g suffix. */
static uint64_t
parse_size(const char *s)
{
    char *end;
    uint64_t v = strtoull(s, &end, 10);

    switch (*end) {
    case 'k':
    case 'K':
        v <<= 10;
        break;
    case 'm':
    case 'M':
        v <<= 20;
        break;
    case 'g':
    case 'G':
        v <<= 30;
        break;
    default:
        break;
    }
    return v;
}

/* die prints the failed call and NXL's detail, and exits. */
static void
die(const char *what, nxl_status_t st)
{
    fprintf(stderr, "%s: %s (%s)\n", what, nxl_status_name(st),
            nxl_last_error());
    exit(1);
}

/* finish waits for x: sleeping on the event fd, or spinning on status. */
static void
finish(nxl_xfer_t *x, nxl_status_t st, int poll)
{
    while (st == NXL_IN_PROG) {
        st = poll ? nxl_xfer_status(x) : nxl_xfer_wait(x, -1);
    }
    if (st != NXL_OK) {
        die("transfer", st);
    }
}

/* usage prints the options. */
static void
usage(void)
{
    fprintf(stderr,
            "usage: nxl_posix_bench -f FILE [-s size] [-b block] [-q depth] "
            "[-n blocks/xfer]\n"
            "       [-r xfers in flight] [-m read|write|randread|randwrite] "
            "[-d] [-t seconds]\n"
            "       [-a uring|threads] [-j threads] [-c chunk] [-p] "
            "[-o key=value] [-P] [-M slots]\n"
            "  -P: buffer on 4 KiB pages (default: transparent huge "
            "pages)\n"
            "  -M: memory slots of -b bytes the descriptors cycle through "
            "(default n x r)\n");
    exit(2);
}

/* main parses the options, sets up, runs for -t seconds, reports. */
int
main(int argc, char **argv)
{
    const char *path = NULL, *mode = "read", *api = "uring";
    uint64_t size = 1ull << 30, bs = 1u << 20, nblocks, i, k, bytes = 0;
    unsigned qd = 32, per = 64, inflight = 2, slots = 0, nx;
    uint64_t rng = 12345;
    char qd_s[16], thr_s[16] = "8", chunk_s[24] = "1048576", *extra = NULL;
    int direct = 0, poll = 0, small_pages = 0, fd, c, rand_pos, write_op;
    int flags;
    double secs = 10, t0, c0, wall;
    nxl_prepped_t *lp, *rp;
    nxl_desc_t *fdescs, *mdescs, reg;
    size_t *lidx, *ridx, *perm;
    nxl_xfer_t **xs;
    nxl_status_t st, *pst;
    nxl_dlist_t dl;
    nxl_agent_t *a;
    nxl_opts_t opts;
    uint8_t *mem;
    size_t mem_size, huge;
    struct stat sb;

    while ((c = getopt(argc, argv, "f:s:b:q:n:r:m:dt:a:j:c:po:PM:")) != -1) {
        switch (c) {
        case 'f':
            path = optarg;
            break;
        case 's':
            size = parse_size(optarg);
            break;
        case 'b':
            bs = parse_size(optarg);
            break;
        case 'q':
            qd = (unsigned)atoi(optarg);
            break;
        case 'n':
            per = (unsigned)atoi(optarg);
            break;
        case 'r':
            inflight = (unsigned)atoi(optarg);
            break;
        case 'm':
            mode = optarg;
            break;
        case 'd':
            direct = 1;
            break;
        case 't':
            secs = atof(optarg);
            break;
        case 'a':
            api = optarg;
            break;
        case 'j':
            snprintf(thr_s, sizeof(thr_s), "%s", optarg);
            break;
        case 'c':
            snprintf(chunk_s, sizeof(chunk_s), "%llu",
                     (unsigned long long)parse_size(optarg));
            break;
        case 'p':
            poll = 1;
            break;
        case 'o':
            extra = optarg;
            break;
        case 'P':
            small_pages = 1;
            break;
        case 'M':
            slots = (unsigned)atoi(optarg);
            break;
        default:
            usage();
        }
    }
    if (path == NULL || bs == 0 || per == 0 || inflight == 0) {
        usage();
    }
    if (slots == 0 || slots > inflight * per) {
        slots = inflight * per; /* every descriptor in flight its own */
    }
    rand_pos = strncmp(mode, "rand", 4) == 0;
    write_op = strstr(mode, "write") != NULL;
    flags = O_RDWR | (direct ? O_DIRECT : 0);
    fd = open(path, flags);
    if (fd < 0 || fstat(fd, &sb) != 0) {
        perror(path);
        return 1;
    }
    if ((uint64_t)sb.st_size < size) {
        fprintf(stderr, "%s: %lld bytes, want at least %llu\n", path,
                (long long)sb.st_size, (unsigned long long)size);
        return 1;
    }
    nblocks = size / bs;
    snprintf(qd_s, sizeof(qd_s), "%u", qd);

    if ((st = nxl_agent_create(AGENT, NULL, &a)) != NXL_OK) {
        die("agent_create", st);
    }
    {
        nxl_param_t p[] = {{"api", api},
                           {"queue_depth", qd_s},
                           {"num_threads", thr_s},
                           {"chunk_size", chunk_s},
                           {NULL, NULL}};
        nxl_params_t ps = {p, 4};
        char *eq = extra ? strchr(extra, '=') : NULL;

        if (eq != NULL) { /* -o key=value: one more parameter */
            *eq = '\0';
            p[4] = (nxl_param_t){extra, eq + 1};
            ps.count = 5;
        }

        if ((st = nxl_backend_create(a, "POSIX", &ps, NULL)) != NXL_OK) {
            die("backend_create", st);
        }
    }
    mem_size = (size_t)(slots * bs);
    if (!small_pages) { /* whole huge pages: a 1 MiB buffer gets one too */
        mem_size = (mem_size + HUGE_2M - 1) & ~(HUGE_2M - 1);
    }
    if (small_pages) {
        mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    } else {
        mem = bench_map_huge(mem_size);
    }
    if (mem == MAP_FAILED || mem == NULL) {
        perror("mmap");
        return 1;
    }
    memset(mem, 0x5a, mem_size);
    huge = bench_huge_bytes(mem, mem_size);
    reg = (nxl_desc_t){(uintptr_t)mem, mem_size, 0};
    dl = (nxl_dlist_t){NXL_DRAM, &reg, 1};
    if ((st = nxl_mem_register(a, &dl, NULL)) != NXL_OK) {
        die("register DRAM", st);
    }
    reg = (nxl_desc_t){0, size, (uint64_t)fd};
    dl = (nxl_dlist_t){NXL_FILE, &reg, 1};
    if ((st = nxl_mem_register(a, &dl, NULL)) != NXL_OK) {
        die("register FILE", st);
    }

    /* Prepared lists: every block of the file, every memory slot. */
    fdescs = malloc(nblocks * sizeof(*fdescs));
    mdescs = malloc(slots * sizeof(*mdescs));
    for (i = 0; i < nblocks; i++) {
        fdescs[i] = (nxl_desc_t){i * bs, bs, (uint64_t)fd};
    }
    for (i = 0; i < slots; i++) {
        mdescs[i] = (nxl_desc_t){(uintptr_t)mem + i * bs, bs, 0};
    }
    dl = (nxl_dlist_t){NXL_FILE, fdescs, nblocks};
    if ((st = nxl_dlist_prep(a, AGENT, &dl, NULL, &rp)) != NXL_OK) {
        die("dlist_prep FILE", st);
    }
    dl = (nxl_dlist_t){NXL_DRAM, mdescs, slots};
    if ((st = nxl_dlist_prep(a, NULL, &dl, NULL, &lp)) != NXL_OK) {
        die("dlist_prep DRAM", st);
    }

    /* Transfers that together visit every block of the file once, in
     * order or in a random permutation (what fio's random map does), cycled
     * through: no block repeats before the whole file was read. */
    perm = malloc(nblocks * sizeof(*perm));
    for (i = 0; i < nblocks; i++) {
        perm[i] = (size_t)i;
    }
    for (i = nblocks; rand_pos && i > 1; i--) {
        size_t t;

        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        k = (rng >> 33) % i;
        t = perm[i - 1];
        perm[i - 1] = perm[k];
        perm[k] = t;
    }
    nx = (unsigned)((nblocks + per - 1) / per);
    if (nx < inflight + 1) {
        nx = inflight + 1;
    }
    xs = calloc(nx, sizeof(*xs));
    pst = calloc(nx, sizeof(*pst));
    lidx = malloc(per * sizeof(*lidx));
    ridx = malloc(per * sizeof(*ridx));
    nxl_opts_init(&opts);
    opts.skip_merge = 1;
    for (k = 0; k < nx; k++) {
        for (i = 0; i < per; i++) {
            lidx[i] = (size_t)(((k % inflight) * per + i) % slots);
            ridx[i] = perm[(k * per + i) % nblocks];
        }
        st = nxl_xfer_make(a, write_op ? NXL_WRITE : NXL_READ, lp, lidx, rp,
                           ridx, per, &opts, &xs[k]);
        if (st != NXL_OK) {
            die("xfer_make", st);
        }
    }
    free(perm);

    t0 = now_s();
    c0 = cpu_s();
    for (k = 0; k < inflight; k++) {
        pst[k] = nxl_xfer_post(xs[k], NULL);
        if (pst[k] < 0) {
            die("post", pst[k]);
        }
    }
    for (k = 0;; k++) {
        unsigned cur = (unsigned)(k % nx);
        unsigned next = (unsigned)((k + inflight) % nx);

        finish(xs[cur], pst[cur], poll);
        bytes += per * bs;
        if (now_s() - t0 >= secs) {
            for (i = 1; i < inflight; i++) {
                cur = (unsigned)((k + i) % nx);
                finish(xs[cur], pst[cur], poll);
                bytes += per * bs;
            }
            break;
        }
        pst[next] = nxl_xfer_post(xs[next], NULL);
        if (pst[next] < 0) {
            die("post", pst[next]);
        }
    }
    wall = now_s() - t0;
    printf("nxl %s %s bs=%llu qd=%u n=%u r=%u api=%s%s: %.1f MiB/s, "
           "%.0f IOPS, cpu %.0f%%, buffer %zu MiB, %zu MiB on huge pages\n",
           mode, direct ? "direct" : "buffered", (unsigned long long)bs, qd,
           per, inflight, api, poll ? " poll" : "",
           (double)bytes / wall / (1 << 20), (double)bytes / bs / wall,
           100.0 * (cpu_s() - c0) / wall, mem_size >> 20, huge >> 20);

    for (k = 0; k < nx; k++) {
        nxl_xfer_release(xs[k]);
    }
    nxl_dlist_release(lp);
    nxl_dlist_release(rp);
    nxl_agent_destroy(a);
    munmap(mem, mem_size);
    free(fdescs);
    free(mdescs);
    free(lidx);
    free(ridx);
    free(xs);
    free(pst);
    close(fd);
    return 0;
}
