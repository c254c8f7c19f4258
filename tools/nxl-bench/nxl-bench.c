/*
 * nxl-bench.c - command line, diagnostics and mode dispatch of nxl-bench.
 *
 * Flags follow nixlbench (reference/nixl.md §8.1): --flag value and
 * --flag=value both work, and '-' may stand for '_' in flag names.
 */
#include "bench.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* bench_err prints "nxl-bench: message" to stderr. */
void
bench_err(const char *fmt, ...)
{
    va_list ap;

    fputs("nxl-bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* bench_nxl_err reports a failed library call with its status and the
 * library's detail message. */
int
bench_nxl_err(nxl_status_t st, const char *fmt, ...)
{
    va_list ap;
    const char *detail = nxl_last_error();

    fputs("nxl-bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s (%s)%s%s\n", nxl_strerror(st), nxl_status_name(st),
            (detail != NULL && detail[0] != '\0') ? ": " : "",
            detail != NULL ? detail : "");
    return -1;
}

/* bench_now_ns returns CLOCK_MONOTONIC in nanoseconds. */
uint64_t
bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* bench_fmt_size writes n as "N B", "N KiB", "N MiB" or "N GiB" when it is
 * a whole multiple, else in bytes. */
const char *
bench_fmt_size(size_t n, char *buf, size_t cap)
{
    if (n >= GIB && n % GIB == 0) {
        snprintf(buf, cap, "%zu GiB", n / GIB);
    } else if (n >= MIB && n % MIB == 0) {
        snprintf(buf, cap, "%zu MiB", n / MIB);
    } else if (n >= KIB && n % KIB == 0) {
        snprintf(buf, cap, "%zu KiB", n / KIB);
    } else {
        snprintf(buf, cap, "%zu B", n);
    }
    return buf;
}

/* usage prints the flag list. */
static void
usage(FILE *f)
{
    fputs(
        "usage: nxl-bench [flags]\n"
        "A nixlbench-compatible benchmark over the NXL agent API.\n"
        "\n"
        "Without --target_host or --listen, runs both sides on this host\n"
        "(the target is this program, re-executed). Flags take '--flag value'\n"
        "or '--flag=value'. Sizes accept K, M, G suffixes (powers of 1024).\n"
        "\n"
        "  --backend NAME            SHM (default), TCP, UCX, ...\n"
        "  --backend_params k=v,..   backend parameters (both sides)\n"
        "  --ucx_err_mode MODE       UCX error handling: auto|peer|none\n"
        "  --op_type OPS             READ, WRITE or READ,WRITE (WRITE)\n"
        "  --initiator_seg_type T    DRAM (VRAM is not supported yet)\n"
        "  --target_seg_type T       DRAM\n"
        "  --start_block_size N      first block size (4096)\n"
        "  --max_block_size N        last block size (64M), doubling\n"
        "  --start_batch_size N      descriptors per request (1), doubling\n"
        "  --max_batch_size N        (1)\n"
        "  --num_iter N              timed requests per thread (1000)\n"
        "  --warmup_iter N           untimed requests first (100)\n"
        "  --large_blk_iter_ftr N    blocks > 1 MiB run num_iter/N (16)\n"
        "  --num_threads N           initiator threads, each its own\n"
        "                            requests (1)\n"
        "  --pipeline_depth N        requests in flight per thread (1)\n"
        "  --total_buffer_size N     pool per side (max(256M, 4x LLC))\n"
        "  --check_consistency       verify every transferred byte\n"
        "  --prepared                nxl_dlist_prep + nxl_xfer_make, not\n"
        "                            nxl_xfer_create (or --prepared_xfer)\n"
        "  --shared                  both pools from nxl_mem_alloc_shared\n"
        "  --hot                     each request keeps its slice (as in\n"
        "                            nixlbench; default rotates: cold data)\n"
        "  --json | --csv            machine-readable rows on stdout\n"
        "  --lat_bench               median post->completion of one 4 KiB\n"
        "                            descriptor (size: --start_block_size)\n"
        "  --desc_bench N            N descriptors of --start_block_size in\n"
        "                            one prepared request (vLLM KV pull)\n"
        "  --desc_contig             --desc_bench: remote blocks in order\n"
        "                            (default: shuffled, nothing merges)\n"
        "  --base_copy nt|memcpy     shared-mode baseline copy (nt)\n"
        "  --no_pretouch             skip the untimed whole-pool READ and\n"
        "                            WRITE that map the peer's pages first\n"
        "  --spin_us N               poll status N us before sleeping (50;\n"
        "                            -1 = always spin)\n"
        "  --timeout SEC             handshake/transfer timeout (30)\n"
        "  --smoke                   tiny self-checking run for make test\n"
        "  --target_host HOST        initiator only: remote target\n"
        "  --port N                  its side-channel port (8888)\n"
        "  --listen [ADDR:]PORT      target only: serve one initiator\n"
        "  --help\n"
        "Base B/W: SHM and same-host runs: process_vm_readv/writev (or a\n"
        "memcpy with --shared); UCX: ucx_perftest per row; TCP: iperf3, one\n"
        "stream on the same path (the target runs its server), 2 s before\n"
        "each op's rows and 2 s after.\n",
        f);
}

/* parse_size reads "4096", "4K", "64M", "1G" or "4KiB"; -1 on error. */
static int
parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;
    size_t mult = 1;

    if (s == NULL || !isdigit((unsigned char)s[0])) {
        return -1;
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0) {
        return -1;
    }
    switch (toupper((unsigned char)*end)) {
    case 'K':
        mult = KIB;
        end++;
        break;
    case 'M':
        mult = MIB;
        end++;
        break;
    case 'G':
        mult = GIB;
        end++;
        break;
    default:
        break;
    }
    if (*end == 'i' || *end == 'I') {
        end++;
    }
    if (*end == 'B' || *end == 'b') {
        end++;
    }
    if (*end != '\0' || (mult > 1 && v > SIZE_MAX / mult)) {
        return -1;
    }
    *out = (size_t)v * mult;
    return 0;
}

/* parse_bool reads a gflags boolean value. */
static int
parse_bool(const char *s, int *out)
{
    if (s == NULL || strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0 ||
        strcasecmp(s, "yes") == 0) {
        *out = 1;
        return 0;
    }
    if (strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0 ||
        strcasecmp(s, "no") == 0) {
        *out = 0;
        return 0;
    }
    return -1;
}

/* parse_ops reads "READ", "WRITE" or a comma list of them. */
static int
parse_ops(const char *s, bench_opts_t *o)
{
    char buf[64];
    char *save = NULL;
    char *tok;

    if (strlen(s) >= sizeof(buf)) {
        return -1;
    }
    strcpy(buf, s);
    o->num_ops = 0;
    for (tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        nxl_op_t op;

        if (strcasecmp(tok, "READ") == 0) {
            op = NXL_READ;
        } else if (strcasecmp(tok, "WRITE") == 0) {
            op = NXL_WRITE;
        } else {
            return -1;
        }
        if (o->num_ops == 2) {
            return -1;
        }
        o->ops[o->num_ops++] = op;
    }
    return o->num_ops > 0 ? 0 : -1;
}

/* parse_seg reads a segment type; only DRAM is usable. */
static int
parse_seg(const char *flag, const char *s, nxl_mem_t *out)
{
    if (strcasecmp(s, "DRAM") == 0) {
        *out = NXL_DRAM;
        return 0;
    }
    if (strcasecmp(s, "VRAM") == 0) {
        bench_err("%s VRAM: GPU memory is not supported by nxl-bench yet "
                  "(DRAM only)", flag);
        return -1;
    }
    bench_err("%s %s: unknown segment type (DRAM only)", flag, s);
    return -1;
}

/* parse_params splits "k=v,k=v" into o->params. */
static int
parse_params(const char *s, bench_opts_t *o)
{
    char *save = NULL;
    char *tok;

    free(o->params_buf);
    o->params_buf = strdup(s);
    if (o->params_buf == NULL) {
        return -1;
    }
    o->num_params = 0;
    for (tok = strtok_r(o->params_buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');

        if (eq == NULL || eq == tok || o->num_params == BENCH_MAX_PARAMS) {
            bench_err("--backend_params: bad item '%s' (want k=v)", tok);
            return -1;
        }
        *eq = '\0';
        o->params[o->num_params].key = tok;
        o->params[o->num_params].value = eq + 1;
        o->num_params++;
    }
    return 0;
}

/* parse_long reads an integer within [lo, hi]. */
static int
parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    if (s == NULL) {
        return -1;
    }
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

/* opts_defaults fills o with nixlbench's defaults. */
static void
opts_defaults(bench_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->backend = "SHM";
    o->ops[0] = NXL_WRITE;
    o->num_ops = 1;
    o->initiator_seg = NXL_DRAM;
    o->target_seg = NXL_DRAM;
    o->start_block = 4 * KIB;
    o->max_block = 64 * MIB;
    o->start_batch = 1;
    o->max_batch = 1;
    o->block_factor = 2;
    o->num_iter = 1000;
    o->warmup_iter = 100;
    o->large_blk_iter_ftr = 16;
    o->num_threads = 1;
    o->pipeline_depth = 1;
    o->spin_us = 50;
    o->port = 8888;
    o->report_fd = -1;
    o->timeout_s = 30;
}

/* flag_is compares a flag name with '-' and '_' treated alike. */
static int
flag_is(const char *name, size_t len, const char *want)
{
    size_t i;

    if (strlen(want) != len) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        char c = name[i] == '-' ? '_' : name[i];

        if (c != want[i]) {
            return 0;
        }
    }
    return 1;
}

/* Flags that take no value (a value may still follow '='). */
static const char *const bool_flags[] = {
    "check_consistency", "prepared", "prepared_xfer", "shared", "json",
    "csv", "smoke", "lat_bench", "help", "hot", "desc_contig",
    "no_pretouch", NULL,
};

/* is_bool_flag says whether name (len bytes) is a boolean flag. */
static int
is_bool_flag(const char *name, size_t len)
{
    size_t i;

    for (i = 0; bool_flags[i] != NULL; i++) {
        if (flag_is(name, len, bool_flags[i])) {
            return 1;
        }
    }
    return 0;
}

/* apply_flag sets one flag. Returns 0, 1 for --help, -1 on error. */
static int
apply_flag(bench_opts_t *o, const char *name, size_t len, const char *val)
{
    long l;
    int b;

#define IS(x) flag_is(name, len, x)
#define SIZE_FLAG(x, field)                                                   \
    if (IS(x)) {                                                              \
        if (parse_size(val, &o->field) != 0 || o->field == 0) {               \
            goto bad;                                                         \
        }                                                                     \
        return 0;                                                             \
    }
#define BOOL_FLAG(x, field)                                                   \
    if (IS(x)) {                                                              \
        if (parse_bool(val, &b) != 0) {                                       \
            goto bad;                                                         \
        }                                                                     \
        o->field = b;                                                         \
        return 0;                                                             \
    }
    if (IS("help")) {
        return 1;
    }
    if (IS("backend")) {
        o->backend = val;
        return 0;
    }
    if (IS("op_type")) {
        return parse_ops(val, o) == 0 ? 0 : (bench_err("--op_type %s: want "
                                                       "READ, WRITE or "
                                                       "READ,WRITE",
                                                       val),
                                             -1);
    }
    if (IS("initiator_seg_type")) {
        return parse_seg("--initiator_seg_type", val, &o->initiator_seg);
    }
    if (IS("target_seg_type")) {
        return parse_seg("--target_seg_type", val, &o->target_seg);
    }
    SIZE_FLAG("start_block_size", start_block)
    SIZE_FLAG("max_block_size", max_block)
    SIZE_FLAG("start_batch_size", start_batch)
    SIZE_FLAG("max_batch_size", max_batch)
    SIZE_FLAG("large_blk_iter_ftr", large_blk_iter_ftr)
    SIZE_FLAG("num_threads", num_threads)
    SIZE_FLAG("pipeline_depth", pipeline_depth)
    SIZE_FLAG("total_buffer_size", total_buffer_size)
    SIZE_FLAG("desc_bench", desc_bench)
    if (IS("num_iter")) {
        if (parse_size(val, &o->num_iter) != 0 || o->num_iter == 0) {
            goto bad;
        }
        o->num_iter_set = 1;
        return 0;
    }
    if (IS("warmup_iter")) {
        if (parse_size(val, &o->warmup_iter) != 0) {
            goto bad;
        }
        return 0;
    }
    BOOL_FLAG("check_consistency", check_consistency)
    BOOL_FLAG("prepared", prepared)
    BOOL_FLAG("prepared_xfer", prepared)
    BOOL_FLAG("shared", shared)
    BOOL_FLAG("json", json)
    BOOL_FLAG("csv", csv)
    BOOL_FLAG("smoke", smoke)
    BOOL_FLAG("lat_bench", lat_bench)
    BOOL_FLAG("hot", hot)
    BOOL_FLAG("desc_contig", desc_contig)
    BOOL_FLAG("no_pretouch", no_pretouch)
    if (IS("base_copy")) {
        if (val != NULL && strcmp(val, "nt") == 0) {
            o->base_memcpy = 0;
        } else if (val != NULL && strcmp(val, "memcpy") == 0) {
            o->base_memcpy = 1;
        } else {
            goto bad;
        }
        return 0;
    }
    if (IS("spin_us")) {
        if (parse_long(val, -1, 10000000, &l) != 0) {
            goto bad;
        }
        o->spin_us = l;
        return 0;
    }
    if (IS("timeout")) {
        if (parse_long(val, 1, 86400, &l) != 0) {
            goto bad;
        }
        o->timeout_s = (int)l;
        return 0;
    }
    if (IS("target_host")) {
        o->target_host = val;
        return 0;
    }
    if (IS("port")) {
        if (parse_long(val, 1, 65535, &l) != 0) {
            goto bad;
        }
        o->port = (uint16_t)l;
        return 0;
    }
    if (IS("listen")) {
        o->listen = val;
        return 0;
    }
    if (IS("report_fd")) {
        if (parse_long(val, 0, 1 << 20, &l) != 0) {
            goto bad;
        }
        o->report_fd = (int)l;
        return 0;
    }
    if (IS("ucx_err_mode")) {
        if (val == NULL || (strcmp(val, "peer") != 0 &&
                            strcmp(val, "none") != 0 &&
                            strcmp(val, "auto") != 0)) {
            goto bad;
        }
        o->ucx_err_mode = val;
        return 0;
    }
    if (IS("backend_params")) {
        o->params_arg = val;
        return parse_params(val, o);
    }
    bench_err("unknown flag --%.*s (try --help)", (int)len, name);
    return -1;
bad:
    bench_err("--%.*s: bad value '%s'", (int)len, name,
              val != NULL ? val : "");
    return -1;
#undef IS
#undef SIZE_FLAG
#undef BOOL_FLAG
}

/* parse_args fills o from argv. Returns 0, 1 for --help, -1 on error. */
static int
parse_args(bench_opts_t *o, int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *name;
        const char *eq;
        const char *val = NULL;
        size_t len;
        int rc;

        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            if (strcmp(arg, "-h") == 0) {
                return 1;
            }
            bench_err("unexpected argument '%s' (try --help)", arg);
            return -1;
        }
        name = arg + 2;
        eq = strchr(name, '=');
        if (eq != NULL) {
            len = (size_t)(eq - name);
            val = eq + 1;
        } else {
            len = strlen(name);
            if (!is_bool_flag(name, len)) {
                if (i + 1 >= argc) {
                    bench_err("--%s needs a value", name);
                    return -1;
                }
                val = argv[++i];
            }
        }
        rc = apply_flag(o, name, len, val);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* check_opts applies --smoke and validates combinations. */
static int
check_opts(bench_opts_t *o)
{
    if (o->smoke) {
        /* a few sizes, few iterations, both ops, every byte verified */
        o->ops[0] = NXL_READ;
        o->ops[1] = NXL_WRITE;
        o->num_ops = 2;
        o->start_block = 4 * KIB;
        o->max_block = 1 * MIB;
        o->block_factor = 4;
        o->start_batch = 1;
        o->max_batch = 4;
        o->num_iter = 20;
        o->num_iter_set = 1;
        o->warmup_iter = 2;
        o->check_consistency = 1;
        if (o->total_buffer_size == 0) {
            size_t need = o->max_block * o->max_batch * o->num_threads *
                          o->pipeline_depth;

            o->total_buffer_size = need > 16 * MIB ? need : 16 * MIB;
        }
        if (o->timeout_s > 10) {
            o->timeout_s = 10;
        }
    }
    if (o->listen != NULL && o->target_host != NULL) {
        bench_err("--listen (target) and --target_host (initiator) exclude "
                  "each other");
        return -1;
    }
    if (o->max_block < o->start_block) {
        o->max_block = o->start_block;
    }
    if (o->max_batch < o->start_batch) {
        o->max_batch = o->start_batch;
    }
    if (o->num_threads > BENCH_MAX_THREADS) {
        bench_err("--num_threads %zu: at most %d", o->num_threads,
                  BENCH_MAX_THREADS);
        return -1;
    }
    if (o->json && o->csv) {
        bench_err("--json and --csv exclude each other");
        return -1;
    }
    if (o->pipeline_depth > 4096) {
        bench_err("--pipeline_depth %zu: at most 4096", o->pipeline_depth);
        return -1;
    }
    return 0;
}

/* self_path returns this program's path for re-executing it as the
 * target (readlink of /proc/self/exe, which tools such as valgrind map to
 * the real program), else argv0. */
static const char *
self_path(const char *argv0)
{
    static char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);

    if (n <= 0 || (size_t)n >= sizeof(buf) - 1) {
        return argv0;
    }
    buf[n] = '\0';
    return buf;
}

/* main parses flags and runs the target, or the initiator's benchmarks. */
int
main(int argc, char **argv)
{
    bench_opts_t o;
    bench_session_t s;
    int rc;
    int ret = 0;

    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    opts_defaults(&o);
    o.self_exe = self_path(argv[0]);
    rc = parse_args(&o, argc, argv);
    if (rc == 1) {
        usage(stdout);
        free(o.params_buf);
        return 0;
    }
    if (rc != 0 || check_opts(&o) != 0) {
        free(o.params_buf);
        return 2;
    }
    if (o.listen != NULL) {
        ret = bench_run_target(&o);
        free(o.params_buf);
        return ret;
    }

    if (bench_session_open(&s, &o) != 0) {
        bench_session_close(&s);
        free(o.params_buf);
        return 1;
    }
    if (o.no_pretouch) {
        rc = 0;
    } else {
        rc = bench_pretouch(&s);
    }
    if (rc != 0) {
        /* reported */
    } else if (o.desc_bench > 0) {
        rc = bench_desc(&s);
    } else if (o.lat_bench) {
        rc = bench_lat(&s);
    } else {
        rc = bench_sweep(&s);
        if (rc == 0 && o.smoke) {
            /* the smoke run also covers prepared lists and a shuffled
             * many-descriptor request */
            o.prepared = !o.prepared;
            rc = bench_sweep(&s);
            if (rc == 0) {
                o.desc_bench = 512;
                o.num_iter = 3;
                rc = bench_desc(&s);
            }
        }
    }
    if (rc != 0 || s.failures > 0) {
        ret = 1;
    }
    if (bench_session_close(&s) != 0) {
        ret = 1;
    }
    if (o.smoke) {
        fprintf(stdout, "nxl-bench --smoke: %s\n", ret == 0 ? "ok" : "FAILED");
    }
    free(o.params_buf);
    return ret;
}
