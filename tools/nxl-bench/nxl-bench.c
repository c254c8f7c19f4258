/*
 * nxl-bench.c - command line, diagnostics and mode dispatch of nxl-bench.
 *
 * Flags follow nixlbench (reference/nixl.md §8.1): --flag value and
 * --flag=value both work, and '-' may stand for '_' in flag names.
 */
#include "bench.h"
#include "group.h"

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
        "  --backend NAME            SHM (default), TCP, UCX, POSIX (files)\n"
        "  --backend_params k=v,..   backend parameters (both sides)\n"
        "  --ucx_err_mode MODE       UCX error handling: auto|peer|none\n"
        "  --op_type OPS             READ, WRITE or READ,WRITE (WRITE)\n"
        "  --initiator_seg_type T    DRAM (default) or VRAM\n"
        "  --target_seg_type T       DRAM, VRAM, or FILE (--backend POSIX)\n"
        "  --vram_device auto|cuda|fake  VRAM pools: CUDA, or nxl-bench's\n"
        "                            host-memory stand-in (auto: CUDA if\n"
        "                            it runs here, else fake, said so)\n"
        "  --device_list L           GPU ordinals (initiator[,target]) or\n"
        "                            UCX network devices (mlx5_0:1,...)\n"
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
        "  --base_threads N          same-host baseline threads (as\n"
        "                            --num_threads; a multiple of it: each\n"
        "                            request's bytes split between them)\n"
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
        "  --spin_us N|auto          poll status N us before sleeping in\n"
        "                            nxl_xfer_wait (-1 = always spin); auto\n"
        "                            (default): TCP 0 (its wait polls by\n"
        "                            itself), else 50\n"
        "  --timeout SEC             handshake/transfer timeout (30)\n"
        "  --smoke                   tiny self-checking run for make test\n"
        "  --enable_pt               agent progress thread (both sides)\n"
        "  --progress_threads N      the backend's num_threads parameter\n"
        "  --recreate_xfer           create and release a transfer per\n"
        "                            request, inside the timed loop\n"
        "  --reregister_mem          deregister and register the local\n"
        "                            pool again before each block size\n"
        "Storage (--backend POSIX, one process, no peer):\n"
        "  --filepath DIR            where the files go (required)\n"
        "  --num_files N             files the pool is spread over (1)\n"
        "  --storage_enable_direct   open them with O_DIRECT\n"
        "Groups through etcd (run the same command N times, any hosts):\n"
        "  --etcd_endpoints URL[,..] etcd that ranks the group and holds\n"
        "                            the agents' metadata\n"
        "  --benchmark_group NAME    the group (default)\n"
        "  --world_size N            processes in the group (2)\n"
        "  --scheme pairwise         rank 2k -> rank 2k+1; manytoone: every\n"
        "                            rank -> rank 0; onetomany: rank 0 ->\n"
        "                            every rank\n"
        "  --runtime_type ETCD       accepted for nixlbench compatibility\n"
        "Two hosts without etcd:\n"
        "  --target_host HOST        initiator only: remote target\n"
        "  --port N                  its side-channel port (8888)\n"
        "  --listen [ADDR:]PORT      target only: serve one initiator\n"
        "  --help\n"
        "Base B/W: SHM and same-host runs: process_vm_readv/writev (or a\n"
        "memcpy with --shared); UCX: ucx_perftest per row; TCP: iperf3, one\n"
        "stream on the same path (the target runs its server), 2 s before\n"
        "each op's rows and 2 s after, and a raw TCP ping-pong of the same\n"
        "size and depth (PP columns of batch-1 rows up to 64 KiB, and\n"
        "--lat_bench's baseline); POSIX: pread/pwrite on the same fds,\n"
        "plus a fio B/W column (fio io_uring, same files, block size,\n"
        "depth and O_DIRECT); VRAM: the device kind's copy between two\n"
        "local pools. Agg B/W (groups): all initiators' bytes over the\n"
        "union of their timed intervals. See docs/nxl-bench.md.\n",
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

/* parse_seg reads a segment type: DRAM, VRAM or FILE. */
static int
parse_seg(const char *flag, const char *s, nxl_mem_t *out)
{
    if (strcasecmp(s, "DRAM") == 0) {
        *out = NXL_DRAM;
        return 0;
    }
    if (strcasecmp(s, "VRAM") == 0) {
        *out = NXL_VRAM;
        return 0;
    }
    if (strcasecmp(s, "FILE") == 0) {
        *out = NXL_FILE;
        return 0;
    }
    bench_err("%s %s: unknown segment type (DRAM, VRAM or FILE)", flag, s);
    return -1;
}

/* parse_scheme reads --scheme. */
static int
parse_scheme(const char *s, bench_scheme_t *out)
{
    if (s != NULL && strcasecmp(s, "pairwise") == 0) {
        *out = BENCH_PAIRWISE;
    } else if (s != NULL && strcasecmp(s, "manytoone") == 0) {
        *out = BENCH_MANYTOONE;
    } else if (s != NULL && strcasecmp(s, "onetomany") == 0) {
        *out = BENCH_ONETOMANY;
    } else {
        bench_err("--scheme %s: want pairwise, manytoone or onetomany",
                  s != NULL ? s : "");
        return -1;
    }
    return 0;
}

/* parse_devices reads --device_list: "all", numbers (VRAM ordinals, the
 * initiator's first, the target's second) or names (UCX network devices,
 * handed to the backend's device_list parameter). */
static int
parse_devices(const char *s, bench_opts_t *o)
{
    const char *p = s;
    int names = 0;
    int nums = 0;

    o->device_list = s;
    o->num_dev_ids = 0;
    o->ucx_devices = 0;
    if (s == NULL || s[0] == '\0') {
        bench_err("--device_list: empty (want all, 0,1 or mlx5_0:1,...)");
        return -1;
    }
    if (strcasecmp(s, "all") == 0) {
        o->device_list = NULL;
        return 0;
    }
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        char *end;
        long v;

        if (n == 0) {
            bench_err("--device_list %s: empty item", s);
            return -1;
        }
        errno = 0;
        v = strtol(p, &end, 10);
        if (end == p + n && errno == 0 && v >= 0 && v < 1024) {
            if (o->num_dev_ids == BENCH_MAX_DEVS) {
                bench_err("--device_list: at most %d devices", BENCH_MAX_DEVS);
                return -1;
            }
            o->dev_ids[o->num_dev_ids++] = (int)v;
            nums = 1;
        } else {
            names = 1;
        }
        p += n;
        if (*p == ',') {
            p++;
        }
    }
    if (names && nums) {
        bench_err("--device_list %s: mixes GPU ordinals and network device "
                  "names; give one kind",
                  s);
        return -1;
    }
    o->ucx_devices = names;
    return 0;
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
    o->spin_us = BENCH_SPIN_AUTO;
    o->port = 8888;
    o->report_fd = -1;
    o->timeout_s = 30;
    o->scheme = BENCH_PAIRWISE;
    o->world_size = 2;
    o->num_files = 1;
    o->rank = -1;
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
    "check_consistency",
    "prepared",
    "prepared_xfer",
    "shared",
    "json",
    "csv",
    "smoke",
    "lat_bench",
    "help",
    "hot",
    "desc_contig",
    "no_pretouch",
    "storage_enable_direct",
    "enable_pt",
    "recreate_xfer",
    "reregister_mem",
    NULL,
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
#define SIZE_FLAG(x, field)                                                    \
    if (IS(x)) {                                                               \
        if (parse_size(val, &o->field) != 0 || o->field == 0) {                \
            goto bad;                                                          \
        }                                                                      \
        return 0;                                                              \
    }
#define BOOL_FLAG(x, field)                                                    \
    if (IS(x)) {                                                               \
        if (parse_bool(val, &b) != 0) {                                        \
            goto bad;                                                          \
        }                                                                      \
        o->field = b;                                                          \
        return 0;                                                              \
    }
    if (IS("help")) {
        return 1;
    }
    if (IS("backend")) {
        o->backend = val;
        return 0;
    }
    if (IS("op_type")) {
        return parse_ops(val, o) == 0 ? 0
                                      : (bench_err("--op_type %s: want "
                                                   "READ, WRITE or "
                                                   "READ,WRITE",
                                                   val),
                                         -1);
    }
    if (IS("initiator_seg_type")) {
        return parse_seg("--initiator_seg_type", val, &o->initiator_seg);
    }
    if (IS("target_seg_type")) {
        o->target_seg_set = 1;
        return parse_seg("--target_seg_type", val, &o->target_seg);
    }
    if (IS("etcd_endpoints")) {
        o->etcd_endpoints = val;
        return 0;
    }
    if (IS("benchmark_group")) {
        o->group = val;
        return 0;
    }
    if (IS("runtime_type")) {
        /* nixlbench's; etcd is the one runtime nxl-bench has for groups */
        if (val == NULL || strcasecmp(val, "ETCD") != 0) {
            bench_err("--runtime_type %s: nxl-bench's group runtime is ETCD "
                      "(two processes without etcd: --listen and "
                      "--target_host)",
                      val != NULL ? val : "");
            return -1;
        }
        return 0;
    }
    if (IS("scheme")) {
        return parse_scheme(val, &o->scheme);
    }
    SIZE_FLAG("world_size", world_size)
    SIZE_FLAG("num_files", num_files)
    if (IS("filepath")) {
        o->filepath = val;
        return 0;
    }
    BOOL_FLAG("storage_enable_direct", direct)
    if (IS("vram_device")) {
        if (val == NULL ||
            (strcasecmp(val, "auto") != 0 && strcasecmp(val, "cuda") != 0 &&
             strcasecmp(val, "fake") != 0)) {
            goto bad;
        }
        o->vram_device = val;
        return 0;
    }
    if (IS("device_list")) {
        return parse_devices(val, o);
    }
    BOOL_FLAG("enable_pt", enable_pt)
    BOOL_FLAG("recreate_xfer", recreate_xfer)
    BOOL_FLAG("reregister_mem", reregister_mem)
    if (IS("progress_threads")) {
        if (parse_long(val, 0, 1024, &l) != 0) {
            goto bad;
        }
        o->progress_threads = l;
        return 0;
    }
    SIZE_FLAG("start_block_size", start_block)
    SIZE_FLAG("max_block_size", max_block)
    SIZE_FLAG("start_batch_size", start_batch)
    SIZE_FLAG("max_batch_size", max_batch)
    SIZE_FLAG("large_blk_iter_ftr", large_blk_iter_ftr)
    SIZE_FLAG("num_threads", num_threads)
    SIZE_FLAG("base_threads", base_threads)
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
        if (strcmp(val, "auto") == 0) {
            o->spin_us = BENCH_SPIN_AUTO;
            return 0;
        }
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
        if (val == NULL ||
            (strcmp(val, "peer") != 0 && strcmp(val, "none") != 0 &&
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
    bench_err("unknown flag --%.*s: see nxl-bench --help for the flags "
              "(nixlbench flags nxl-bench lacks are listed in "
              "docs/nxl-bench.md)",
              (int)len, name);
    return -1;
bad:
    bench_err("--%.*s: bad value '%s'", (int)len, name, val != NULL ? val : "");
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

/* check_backend checks that --backend exists (listing those that do) and
 * takes the memory kinds and parameters the flags ask of it. */
static int
check_backend(bench_opts_t *o)
{
    nxl_plugin_info_t info;
    nxl_status_t st = nxl_plugin_info(o->backend, &info);
    size_t i;

    if (st == NXL_ERR_NOT_FOUND) {
        const char *names[32];
        char list[512];
        size_t n = 0;
        size_t used = 0;

        list[0] = '\0';
        if (nxl_plugin_names(names, 32, &n) == NXL_OK) {
            for (i = 0; i < n && i < 32; i++) {
                int w = snprintf(list + used, sizeof(list) - used, "%s%s",
                                 i > 0 ? ", " : "", names[i]);

                if (w < 0 || (size_t)w >= sizeof(list) - used) {
                    break;
                }
                used += (size_t)w;
            }
        }
        bench_err("--backend %s: no such backend; this build has: %s "
                  "(plugins come from NXL_PLUGIN_DIR)",
                  o->backend, list[0] != '\0' ? list : "none");
        return -1;
    }
    if (st != NXL_OK) {
        return bench_nxl_err(st, "nxl_plugin_info(%s)", o->backend);
    }
    if ((o->initiator_seg == NXL_VRAM || o->target_seg == NXL_VRAM) &&
        (info.mem_kinds & (1u << NXL_VRAM)) == 0) {
        bench_err("--backend %s does not move VRAM: use --backend SHM for "
                  "VRAM pools on one host%s",
                  o->backend,
                  strcasecmp(o->backend, "UCX") == 0
                      ? " (this UCX build has no CUDA support)"
                      : "");
        return -1;
    }
    if (strcasecmp(o->backend, "SHM") == 0 && !o->shared &&
        (o->initiator_seg == NXL_VRAM) != (o->target_seg == NXL_VRAM)) {
        /* the SHM backend reaches a peer's private DRAM with CMA, which
         * cannot read or write device memory */
        bench_err("--backend SHM moves VRAM <-> DRAM only with shared host "
                  "pools (CMA cannot reach device memory): add --shared, "
                  "or make both --initiator_seg_type and --target_seg_type "
                  "VRAM");
        return -1;
    }
    if (o->progress_threads > 0 || o->ucx_devices) {
        const char *want = o->ucx_devices ? "device_list" : "num_threads";

        for (i = 0; i < info.num_defaults; i++) {
            if (strcmp(info.defaults[i].key, want) == 0) {
                break;
            }
        }
        if (i == info.num_defaults) {
            bench_err("%s: backend %s has no '%s' parameter (%s)",
                      o->ucx_devices ? "--device_list" : "--progress_threads",
                      o->backend, want,
                      o->ucx_devices
                          ? "network device names are for --backend UCX; "
                            "GPU ordinals are numbers"
                          : "see nxl-info for its parameters, and "
                            "--backend_params");
            return -1;
        }
        if (!o->ucx_devices) {
            o->pt_key = "num_threads";
        }
    }
    return 0;
}

/* check_storage validates --backend POSIX and the storage flags. */
static int
check_storage(bench_opts_t *o)
{
    o->storage = strcasecmp(o->backend, "POSIX") == 0;
    if (!o->storage) {
        if (o->target_seg == NXL_FILE || o->initiator_seg == NXL_FILE) {
            bench_err("--%s_seg_type FILE: files are moved by --backend "
                      "POSIX (with --filepath DIR)",
                      o->target_seg == NXL_FILE ? "target" : "initiator");
            return -1;
        }
        if (o->filepath != NULL || o->direct) {
            bench_err("%s: add --backend POSIX (the storage backend)",
                      o->filepath != NULL ? "--filepath"
                                          : "--storage_enable_direct");
            return -1;
        }
        return 0;
    }
    if (o->target_host != NULL || o->listen != NULL ||
        o->etcd_endpoints != NULL) {
        bench_err("--backend POSIX is a storage backend: one process moves "
                  "its DRAM to and from files, there is no network peer. "
                  "Drop %s and give --filepath DIR",
                  o->target_host != NULL ? "--target_host"
                  : o->listen != NULL    ? "--listen"
                                         : "--etcd_endpoints");
        return -1;
    }
    if (o->target_seg_set && o->target_seg != NXL_FILE) {
        bench_err("--backend POSIX moves DRAM to and from files: use "
                  "--target_seg_type FILE (or leave it out)");
        return -1;
    }
    if (o->initiator_seg != NXL_DRAM) {
        bench_err("--backend POSIX: --initiator_seg_type must be DRAM (the "
                  "POSIX backend reads and writes host memory)");
        return -1;
    }
    o->target_seg = NXL_FILE;
    if (o->filepath == NULL) {
        bench_err("--backend POSIX needs --filepath DIR: the directory "
                  "whose file system to measure (its files are created and "
                  "removed)");
        return -1;
    }
    if (o->num_files > BENCH_MAX_FILES) {
        bench_err("--num_files %zu: at most %d", o->num_files, BENCH_MAX_FILES);
        return -1;
    }
    if (o->shared) {
        bench_err("--shared is for DRAM pairs; --backend POSIX has no peer "
                  "pool");
        return -1;
    }
    return 0;
}

/* check_group validates the etcd group flags. */
static int
check_group(bench_opts_t *o)
{
    if (o->etcd_endpoints == NULL) {
        if (o->group != NULL) {
            bench_err("--benchmark_group needs --etcd_endpoints URL (the "
                      "etcd that ranks the group)");
            return -1;
        }
        return 0;
    }
    if (o->group == NULL) {
        o->group = "default"; /* nixlbench's default */
    }
    if (o->target_host != NULL || o->listen != NULL) {
        bench_err("--etcd_endpoints: ranks and metadata go through etcd; "
                  "drop %s",
                  o->target_host != NULL ? "--target_host" : "--listen");
        return -1;
    }
    if (!bench_group_name_ok(o->group)) {
        bench_err("--benchmark_group '%s': want 1..64 of A-Z a-z 0-9 . _ -",
                  o->group);
        return -1;
    }
    if (o->world_size < 2 || o->world_size > BENCH_MAX_PEERS) {
        bench_err("--world_size %zu: want 2..%d processes", o->world_size,
                  BENCH_MAX_PEERS);
        return -1;
    }
    if (o->scheme == BENCH_PAIRWISE && o->world_size % 2 != 0) {
        bench_err("--scheme pairwise pairs rank 2k with rank 2k+1: give an "
                  "even --world_size (now %zu)",
                  o->world_size);
        return -1;
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
        char a[32];
        char b[32];

        if (o->desc_bench == 0 && !o->lat_bench) {
            bench_err("--max_block_size %s is under --start_block_size %s: "
                      "raise --max_block_size to at least %s, or lower "
                      "--start_block_size",
                      bench_fmt_size(o->max_block, a, sizeof(a)),
                      bench_fmt_size(o->start_block, b, sizeof(b)), b);
            return -1;
        }
        o->max_block = o->start_block; /* only start_block is used */
    }
    if (check_backend(o) != 0 || check_storage(o) != 0 || check_group(o) != 0) {
        return -1;
    }
    if (o->spin_us == BENCH_SPIN_AUTO) {
        /* TCP's nxl_xfer_wait polls by itself while the request is the
         * only one in flight and sleeps at once otherwise (the poller's
         * CPU is the peer's when they share it); the others sleep at once
         * in nxl_xfer_wait, so the bench polls first. */
        o->spin_us = strcasecmp(o->backend, "TCP") == 0 ? 0 : 50;
    }
    if (o->max_batch < o->start_batch) {
        o->max_batch = o->start_batch;
    }
    if (o->num_threads > BENCH_MAX_THREADS) {
        bench_err("--num_threads %zu: at most %d", o->num_threads,
                  BENCH_MAX_THREADS);
        return -1;
    }
    if (o->base_threads == 0) {
        o->base_threads = o->num_threads;
    }
    if (o->base_threads > BENCH_MAX_THREADS ||
        o->base_threads % o->num_threads != 0) {
        bench_err("--base_threads %zu: a multiple of --num_threads (%zu), at "
                  "most %d",
                  o->base_threads, o->num_threads, BENCH_MAX_THREADS);
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

/* report_checked says what --check_consistency verified. */
static void
report_checked(const bench_session_t *s, int ok)
{
    const bench_opts_t *o = s->o;
    FILE *f = o->json || o->csv ? stderr : stdout;
    char a[32];
    const char *where;

    if (o->storage) {
        where = "WRITE: read back from the files through a second, plain fd";
    } else if (s->rmem == NXL_VRAM) {
        where = "WRITE: checked by the target in its VRAM pool, copied to "
                "host memory";
    } else {
        where = "WRITE: checked by the target in its pool";
    }
    fprintf(f,
            "nxl-bench: --check_consistency: %s %zu rows (%zu READ, %zu "
            "WRITE), %s compared byte for byte with an offset-dependent "
            "pattern (READ: in this side's %s pool; %s)%s\n",
            ok ? "verified" : "checked", s->checked_rows, s->checked_ops[0],
            s->checked_ops[1],
            bench_fmt_size((size_t)s->checked_bytes, a, sizeof(a)),
            s->lmem == NXL_VRAM ? "VRAM" : "DRAM", where,
            s->failures > 0 ? "; MISMATCHES FOUND (above)" : "");
}

/* main parses flags and runs the target, or the initiator's benchmarks. */
int
main(int argc, char **argv)
{
    bench_opts_t o;
    bench_session_t s;
    bench_group_t *grp = NULL;
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
    if (o.etcd_endpoints != NULL) {
        /* the library's etcd store carries the agents' metadata */
        if (setenv("NXL_ETCD_ENDPOINTS", o.etcd_endpoints, 1) != 0 ||
            bench_group_join(&o, &grp) != 0) {
            free(o.params_buf);
            return 1;
        }
        o.rank = grp->rank;
        if (!grp->initiator) {
            ret = bench_run_group_target(&o, grp);
            if (bench_group_leave(grp, ret == 0) != 0) {
                ret = 1;
            }
            if (o.smoke) {
                fprintf(stdout, "nxl-bench --smoke (rank %d, target): %s\n",
                        o.rank, ret == 0 ? "ok" : "FAILED");
            }
            free(o.params_buf);
            return ret;
        }
    }

    if (bench_session_open(&s, &o, grp) != 0) {
        bench_session_close(&s);
        bench_group_leave(grp, 0);
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
    if (o.check_consistency) {
        report_checked(&s, ret == 0);
    }
    if (bench_session_close(&s) != 0) {
        ret = 1;
    }
    if (grp != NULL && bench_group_leave(grp, ret == 0) != 0) {
        ret = 1;
    }
    if (o.smoke) {
        fprintf(stdout, "nxl-bench --smoke: %s\n", ret == 0 ? "ok" : "FAILED");
    }
    free(o.params_buf);
    return ret;
}
