/*
 * nxl_scale_bench.c - the cost of many registrations, per region, through
 * the public API only (issue 15 "Scale"): N regions of 4 KiB registered one
 * call each in random order, nxl_md_local of all of them, nxl_md_load of
 * that blob into a second agent, a prepared list over all of them (local
 * and remote), and deregistration one call each in another random order.
 *
 *   nxl-scale-bench [--backend SHM,TCP,UCX,POSIX] [--counts 1000,10000,100000]
 *                   [--reps 3] [--order random|ascending] [--clock wall|cpu]
 *                   [--param KEY=VALUE]...
 *
 * Prints one row per (backend, count): microseconds per region for each
 * step, the median of --reps runs. --clock cpu times each step by the
 * calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID) instead of wall
 * time, so that a loaded host's other tenants do not count; work that a
 * backend hands to its own threads then does not count either. Each
 * --param (up to 8) is passed to every backend the bench creates, so give
 * it with one --backend (e.g. --backend UCX --param
 * engine_config=RCACHE_ENABLE=n). POSIX registers
 * FILE regions of one file (it has no metadata to load). Exits 1 when a call
 * fails.
 */
#include <nxl/nxl.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define SB_REGION 4096u
#define SB_STEPS 6

static const char *const sb_step_names[SB_STEPS] = {
    "register",   "md_local",    "md_load",
    "prep_local", "prep_remote", "deregister"};

/* The clock every step is timed by (--clock). */
static clockid_t sb_clock = CLOCK_MONOTONIC;

/* The backend parameters (--param). */
static nxl_param_t sb_params[8];
static size_t sb_nparams;

/* sb_now_us reads sb_clock in microseconds. */
static double
sb_now_us(void)
{
    struct timespec ts;

    clock_gettime(sb_clock, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* sb_shuffle puts v in a pseudo-random order (xorshift, fixed seed). */
static void
sb_shuffle(size_t *v, size_t n, uint64_t seed)
{
    uint64_t s = seed | 1;
    size_t i, j, t;

    for (i = n; i > 1; i--) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        j = (size_t)(s % i);
        t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

static int
sb_fail(const char *what, nxl_status_t st)
{
    fprintf(stderr, "nxl-scale-bench: %s: %s (%s)\n", what, nxl_status_name(st),
            nxl_last_error());
    return 1;
}

static int
sb_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* sb_agent makes an agent with one backend of type, given the --param
 * parameters. */
static nxl_status_t
sb_agent(const char *name, const char *type, nxl_agent_t **a_p)
{
    nxl_params_t params = {sb_params, sb_nparams};
    nxl_agent_t *a = NULL;
    nxl_status_t st;

    st = nxl_agent_create(name, NULL, &a);
    if (st == NXL_OK) {
        st = nxl_backend_create(a, type, &params, NULL);
    }
    if (st != NXL_OK) {
        nxl_agent_destroy(a);
        return st;
    }
    *a_p = a;
    return NXL_OK;
}

/* sb_run measures one pass over n regions; us[k] gets microseconds per
 * region of step k (negative when the step does not apply). */
static int
sb_run(const char *type, size_t n, int ascending, uint64_t seed,
       double us[SB_STEPS])
{
    int file = strcmp(type, "POSIX") == 0, fd = -1, rc = 1;
    nxl_agent_t *a = NULL, *b = NULL;
    nxl_prepped_t *lp = NULL, *rp = NULL;
    nxl_desc_t *descs = NULL;
    nxl_blob_t blob = {0};
    nxl_dlist_t one, all;
    nxl_status_t st;
    size_t *order = NULL, i;
    uint8_t *mem = MAP_FAILED;
    char path[] = "/tmp/nxl-scale-XXXXXX";
    double t;

    for (i = 0; i < SB_STEPS; i++) {
        us[i] = -1;
    }
    descs = calloc(n, sizeof(*descs));
    order = calloc(n, sizeof(*order));
    if (descs == NULL || order == NULL) {
        fprintf(stderr, "nxl-scale-bench: out of memory\n");
        goto out;
    }
    if (file) {
        fd = mkstemp(path);
        if (fd < 0 || ftruncate(fd, (off_t)(n * SB_REGION)) < 0) {
            perror("nxl-scale-bench: temporary file");
            goto out;
        }
        unlink(path);
    } else {
        mem = mmap(NULL, n * SB_REGION, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) {
            perror("nxl-scale-bench: mmap");
            goto out;
        }
    }
    for (i = 0; i < n; i++) {
        descs[i] =
            file ? (nxl_desc_t){i * SB_REGION, SB_REGION, (uint64_t)fd}
                 : (nxl_desc_t){(uintptr_t)mem + i * SB_REGION, SB_REGION, 0};
        order[i] = i;
    }
    all = (nxl_dlist_t){file ? NXL_FILE : NXL_DRAM, descs, n};
    one = all;
    one.count = 1;
    st = sb_agent("scale-a", type, &a);
    if (st != NXL_OK) {
        rc = sb_fail("agent", st);
        goto out;
    }

    if (!ascending) {
        sb_shuffle(order, n, seed);
    }
    t = sb_now_us();
    for (i = 0; i < n; i++) {
        one.descs = &descs[order[i]];
        st = nxl_mem_register(a, &one, NULL);
        if (st != NXL_OK) {
            rc = sb_fail("register", st);
            goto out;
        }
    }
    us[0] = (sb_now_us() - t) / (double)n;

    t = sb_now_us();
    st = nxl_md_local(a, &blob);
    if (st != NXL_OK) {
        rc = sb_fail("md_local", st);
        goto out;
    }
    us[1] = (sb_now_us() - t) / (double)n;

    t = sb_now_us();
    st = nxl_dlist_prep(a, NULL, &all, NULL, &lp);
    if (st != NXL_OK) {
        rc = sb_fail("prep local", st);
        goto out;
    }
    us[3] = (sb_now_us() - t) / (double)n;

    if (!file) {
        st = sb_agent("scale-b", type, &b);
        if (st != NXL_OK) {
            rc = sb_fail("second agent", st);
            goto out;
        }
        t = sb_now_us();
        st = nxl_md_load(b, blob.data, blob.len, NULL, 0);
        if (st != NXL_OK) {
            rc = sb_fail("md_load", st);
            goto out;
        }
        us[2] = (sb_now_us() - t) / (double)n;
        t = sb_now_us();
        st = nxl_dlist_prep(b, "scale-a", &all, NULL, &rp);
        if (st != NXL_OK) {
            rc = sb_fail("prep remote", st);
            goto out;
        }
        us[4] = (sb_now_us() - t) / (double)n;
    }

    sb_shuffle(order, n, seed * 31 + 7);
    t = sb_now_us();
    for (i = 0; i < n; i++) {
        one.descs = &descs[order[i]];
        st = nxl_mem_deregister(a, &one, NULL);
        if (st != NXL_OK) {
            rc = sb_fail("deregister", st);
            goto out;
        }
    }
    us[5] = (sb_now_us() - t) / (double)n;
    rc = 0;
out:
    nxl_dlist_release(lp);
    nxl_dlist_release(rp);
    nxl_blob_free(&blob);
    nxl_agent_destroy(b);
    nxl_agent_destroy(a);
    if (mem != MAP_FAILED) {
        munmap(mem, n * SB_REGION);
    }
    if (fd >= 0) {
        close(fd);
    }
    free(descs);
    free(order);
    return rc;
}

/* sb_list splits a comma-separated argument into at most cap items. */
static size_t
sb_list(char *arg, char **items, size_t cap)
{
    size_t n = 0;
    char *save = NULL, *tok;

    for (tok = strtok_r(arg, ",", &save); tok != NULL && n < cap;
         tok = strtok_r(NULL, ",", &save)) {
        items[n++] = tok;
    }
    return n;
}

int
main(int argc, char **argv)
{
    char def_be[] = "SHM,TCP,UCX,POSIX", def_counts[] = "1000,10000,100000";
    char *bes[8], *counts[8], *be_arg = def_be, *count_arg = def_counts;
    double us[SB_STEPS], runs[SB_STEPS][16];
    const char *names[16];
    size_t nbe, ncount, nnames = 0, i, j, k, n;
    int reps = 3, ascending = 0, r, found;
    char *eq;

    for (i = 1; i < (size_t)argc; i++) {
        if (strcmp(argv[i], "--backend") == 0 && i + 1 < (size_t)argc) {
            be_arg = argv[++i];
        } else if (strcmp(argv[i], "--counts") == 0 && i + 1 < (size_t)argc) {
            count_arg = argv[++i];
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < (size_t)argc) {
            reps = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--order") == 0 && i + 1 < (size_t)argc) {
            ascending = strcmp(argv[++i], "ascending") == 0;
        } else if (strcmp(argv[i], "--param") == 0 && i + 1 < (size_t)argc &&
                   sb_nparams < 8 && strchr(argv[i + 1], '=') != NULL) {
            eq = strchr(argv[++i], '=');
            *eq = '\0';
            sb_params[sb_nparams++] = (nxl_param_t){argv[i], eq + 1};
        } else if (strcmp(argv[i], "--clock") == 0 && i + 1 < (size_t)argc) {
            sb_clock = strcmp(argv[++i], "cpu") == 0 ? CLOCK_THREAD_CPUTIME_ID
                                                     : CLOCK_MONOTONIC;
        } else {
            fprintf(stderr,
                    "usage: nxl-scale-bench [--backend SHM,TCP,UCX,POSIX] "
                    "[--counts 1000,10000,100000] [--reps 3] "
                    "[--order random|ascending] [--clock wall|cpu] "
                    "[--param KEY=VALUE]...\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 16) {
        fprintf(stderr, "nxl-scale-bench: --reps must be 1..16\n");
        return 2;
    }
    nbe = sb_list(be_arg, bes, 8);
    ncount = sb_list(count_arg, counts, 8);
    nxl_plugin_names(names, 16, &nnames);
    printf("# microseconds per region (median of %d), %u-byte regions, "
           "one call each, %s order, %s time\n",
           reps, SB_REGION, ascending ? "ascending" : "random",
           sb_clock == CLOCK_MONOTONIC ? "wall" : "thread CPU");
    printf("%-6s %8s", "backend", "regions");
    for (k = 0; k < SB_STEPS; k++) {
        printf(" %11s", sb_step_names[k]);
    }
    printf("\n");
    for (i = 0; i < nbe; i++) {
        found = 0;
        for (j = 0; j < nnames && j < 16; j++) {
            found |= strcasecmp(names[j], bes[i]) == 0;
        }
        if (!found) {
            printf("%-6s  (not built)\n", bes[i]);
            continue;
        }
        for (j = 0; j < ncount; j++) {
            n = strtoul(counts[j], NULL, 10);
            if (n == 0) {
                continue;
            }
            for (r = 0; r < reps; r++) {
                if (sb_run(bes[i], n, ascending, 0x9e3779b9u + (unsigned)r,
                           us) != 0) {
                    return 1;
                }
                for (k = 0; k < SB_STEPS; k++) {
                    runs[k][r] = us[k];
                }
            }
            printf("%-6s %8zu", bes[i], n);
            for (k = 0; k < SB_STEPS; k++) {
                qsort(runs[k], (size_t)reps, sizeof(double), sb_cmp_double);
                if (runs[k][reps / 2] < 0) {
                    printf(" %11s", "-");
                } else {
                    printf(" %11.3f", runs[k][reps / 2]);
                }
            }
            printf("\n");
            fflush(stdout);
        }
    }
    return 0;
}
