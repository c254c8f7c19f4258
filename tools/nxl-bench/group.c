/*
 * group.c - nxl-bench's etcd rendezvous (--etcd_endpoints), as nixlbench's
 * ETCD runtime: N processes started anywhere take ranks, pair up by
 * --scheme, and keep their rows in step with barriers.
 *
 * Keys, all under "nxl-bench/<group>/" and bound to each process's lease
 * (etcd.c), so a crashed run's keys go within the TTL:
 *
 *   rank/<i>             "HOST PID DIGEST": rank i is taken (a transaction
 *                        creates it only if absent); DIGEST hashes the
 *                        flags that must match across the group
 *   barrier/<tag>/<i>    rank i reached barrier tag: "end" (every rank),
 *                        1, 2, ... (initiators, twice per row: after the
 *                        warmup, with the rank's CLOCK_REALTIME ns as the
 *                        value, all start at the latest plus 20 ms; and
 *                        after the timed loop, value "1")
 *   result/<tag>/<i>     initiator i's row: "BYTES T0 T1" (CLOCK_REALTIME
 *                        ns of its first post and last completion)
 *
 * Agent metadata goes through the library's own etcd store under the
 * agent names "nxlb-<group>-<rank>" (NXL_ETCD_ENDPOINTS is set from
 * --etcd_endpoints). At the end every rank posts "end"; rank 0, once all
 * have, deletes the group's keys; the others wait (briefly) for that and
 * then revoke their leases. A rank waiting at "end" that finds its own key
 * gone knows rank 0 saw everyone arrive.
 */
#include "group.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define GROUP_TTL_S 10 /* lease of the group's keys */
/* a row's timed loops start this long after the last initiator reached
 * the start barrier: more than the others' poll interval and an etcd
 * round trip, so that all of them see it in time */
#define GROUP_START_LEAD_NS 20000000ll
#define GROUP_START_POLL_US 5000 /* longest pause between polls there */

/* sleep_us sleeps us microseconds. */
static void
sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};

    nanosleep(&ts, NULL);
}

/* say prints a progress line on stdout, or on stderr when stdout carries
 * JSON or CSV. */
static void say(const bench_opts_t *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
say(const bench_opts_t *o, const char *fmt, ...)
{
    FILE *f = o->json || o->csv ? stderr : stdout;
    va_list ap;

    fputs("nxl-bench: ", f);
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fflush(f);
}

/* bench_group_name_ok checks that a group name is 1..64 bytes of
 * [A-Za-z0-9._-] (it becomes part of keys and agent names). */
int
bench_group_name_ok(const char *name)
{
    size_t i;
    size_t n = strlen(name);

    if (n == 0 || n > 64) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (!isalnum((unsigned char)name[i]) && name[i] != '.' &&
            name[i] != '_' && name[i] != '-') {
            return 0;
        }
    }
    return 1;
}

/* bench_group_agent writes rank's agent name into buf. */
void
bench_group_agent(const bench_opts_t *o, int rank, char *buf, size_t cap)
{
    snprintf(buf, cap, "nxlb-%s-%d", o->group, rank);
}

/* fnv1a hashes s into h. */
static uint64_t
fnv1a(uint64_t h, const char *s)
{
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

/* config_digest hashes the flags every rank of a group must share: what
 * the rows are and how they run (a rank with other flags would run other
 * rows and wait at barriers nobody else reaches). */
static uint64_t
config_digest(const bench_opts_t *o)
{
    char buf[1024];

    snprintf(buf, sizeof(buf),
             "%s|%d|%d,%d|%zu|%d|%d|%zu-%zu/%zu|%zu-%zu|%zu/%zu/%zu|%zu|%zu|"
             "%d|%d|%d|%d|%zu|%d|%d|%d|%d|%d|%zu|%d|%d",
             o->backend, (int)o->scheme, (int)o->ops[0],
             o->num_ops > 1 ? (int)o->ops[1] : -1, o->num_ops,
             (int)o->initiator_seg, (int)o->target_seg, o->start_block,
             o->max_block, o->block_factor, o->start_batch, o->max_batch,
             o->num_iter, o->warmup_iter, o->large_blk_iter_ftr, o->num_threads,
             o->pipeline_depth, o->check_consistency, o->prepared, o->hot,
             o->smoke, o->world_size, o->lat_bench, o->no_pretouch,
             o->recreate_xfer, o->reregister_mem, o->shared, o->desc_bench,
             o->desc_contig, o->json);
    return fnv1a(0xcbf29ce484222325ull, buf);
}

/* scheme_name returns the --scheme spelling. */
const char *
bench_scheme_name(bench_scheme_t s)
{
    switch (s) {
    case BENCH_MANYTOONE:
        return "manytoone";
    case BENCH_ONETOMANY:
        return "onetomany";
    default:
        return "pairwise";
    }
}

/* assign_roles fills the role, peers and initiator list of g's rank. */
static void
assign_roles(bench_group_t *g, bench_scheme_t scheme)
{
    size_t i;

    g->npeers = 0;
    g->ninits = 0;
    for (i = 0; i < g->world; i++) {
        int init;

        switch (scheme) {
        case BENCH_MANYTOONE:
            init = i != 0;
            break;
        case BENCH_ONETOMANY:
            init = i == 0;
            break;
        default:
            init = i % 2 == 0;
            break;
        }
        if (init) {
            g->inits[g->ninits++] = (int)i;
        }
    }
    switch (scheme) {
    case BENCH_MANYTOONE:
        g->initiator = g->rank != 0;
        if (g->initiator) {
            g->peers[g->npeers++] = 0;
        } else {
            for (i = 1; i < g->world; i++) {
                g->peers[g->npeers++] = (int)i;
            }
        }
        break;
    case BENCH_ONETOMANY:
        g->initiator = g->rank == 0;
        if (g->initiator) {
            for (i = 1; i < g->world; i++) {
                g->peers[g->npeers++] = (int)i;
            }
        } else {
            g->peers[g->npeers++] = 0;
        }
        break;
    default:
        g->initiator = g->rank % 2 == 0;
        g->peers[g->npeers++] = g->initiator ? g->rank + 1 : g->rank - 1;
        break;
    }
    g->reporter = g->initiator && g->inits[0] == g->rank;
}

/* list_ranks writes "0 (host pid), 2 (...)" for the rank keys in kvs. */
static void
list_ranks(const bench_group_t *g, const bench_kv_t *kvs, size_t n, char *buf,
           size_t cap)
{
    size_t used = 0;
    size_t plen = strlen(g->prefix) + strlen("rank/");
    size_t i;

    buf[0] = '\0';
    for (i = 0; i < n && used < cap; i++) {
        char host[128] = "?";
        int pid = 0;
        int w;

        (void)sscanf(kvs[i].val, "%127s %d", host, &pid);
        w = snprintf(
            buf + used, cap - used, "%s%s (%s pid %d)", i > 0 ? ", " : "",
            strlen(kvs[i].key) > plen ? kvs[i].key + plen : "?", host, pid);
        if (w < 0) {
            break;
        }
        used += (size_t)w;
    }
    if (n == 0) {
        snprintf(buf, cap, "none");
    }
}

/* bench_group_join takes a rank in o->group, waits (up to --timeout) for
 * all o->world_size ranks, checks they run with the same flags and
 * assigns the roles. Prints what it waits for. */
int
bench_group_join(const bench_opts_t *o, bench_group_t **g_p)
{
    bench_group_t *g = calloc(1, sizeof(*g));
    bench_kv_t *kvs = NULL;
    char host[128];
    char val[BENCH_ETCD_VAL_MAX];
    char key[BENCH_ETCD_KEY_MAX];
    char list[1024];
    uint64_t digest = config_digest(o);
    uint64_t deadline;
    uint64_t next_say;
    size_t n = 0;
    size_t i;
    int said = 0;

    if (g == NULL) {
        bench_err("out of memory");
        return -1;
    }
    g->rank = -1;
    g->world = o->world_size;
    g->o = o;
    snprintf(g->prefix, sizeof(g->prefix), "nxl-bench/%s/", o->group);
    if (bench_etcd_open(o->etcd_endpoints, GROUP_TTL_S, o->timeout_s,
                        &g->etcd) != 0) {
        goto fail;
    }
    if (gethostname(host, sizeof(host)) != 0) {
        snprintf(host, sizeof(host), "unknown");
    }
    host[sizeof(host) - 1] = '\0';
    for (i = 0; host[i] != '\0'; i++) {
        if (isspace((unsigned char)host[i])) {
            host[i] = '_';
        }
    }
    snprintf(val, sizeof(val), "%s %d %016llx", host, (int)getpid(),
             (unsigned long long)digest);
    for (i = 0; i < g->world; i++) {
        int rc;

        snprintf(key, sizeof(key), "%srank/%zu", g->prefix, i);
        rc = bench_etcd_create(g->etcd, key, val);
        if (rc < 0) {
            goto fail;
        }
        if (rc == 1) {
            g->rank = (int)i;
            break;
        }
    }
    kvs = calloc(g->world + 1, sizeof(*kvs));
    if (kvs == NULL) {
        bench_err("out of memory");
        goto fail;
    }
    snprintf(key, sizeof(key), "%srank/", g->prefix);
    if (g->rank < 0) {
        if (bench_etcd_range(g->etcd, key, kvs, g->world, &n) == 0) {
            list_ranks(g, kvs, n < g->world ? n : g->world, list, sizeof(list));
        } else {
            snprintf(list, sizeof(list), "?");
        }
        bench_err("group '%s' at %s already has its %zu ranks (%s). A run "
                  "that crashed leaves them for up to %d s; wait, or pick "
                  "another --benchmark_group (or a larger --world_size)",
                  o->group, bench_etcd_url(g->etcd), g->world, list,
                  bench_etcd_ttl(g->etcd));
        goto fail;
    }
    deadline = bench_now_ns() + (uint64_t)o->timeout_s * 1000000000ull;
    next_say = bench_now_ns() + 500000000ull;
    for (;;) {
        if (bench_etcd_range(g->etcd, key, kvs, g->world + 1, &n) != 0) {
            goto fail;
        }
        if (n >= g->world) {
            break;
        }
        if (bench_now_ns() >= deadline) {
            list_ranks(g, kvs, n < g->world + 1 ? n : g->world + 1, list,
                       sizeof(list));
            bench_err("only %zu of %zu ranks joined group '%s' at %s within "
                      "%d s (here: %s). Start %zu nxl-bench processes with "
                      "the same --etcd_endpoints, --benchmark_group %s and "
                      "--world_size %zu, or raise --timeout",
                      n, g->world, o->group, bench_etcd_url(g->etcd),
                      o->timeout_s, list, g->world, o->group, g->world);
            goto fail;
        }
        if (bench_now_ns() >= next_say) {
            say(o,
                "waiting for %zu ranks in group '%s' at %s (%zu here, "
                "this is rank %d)...",
                g->world, o->group, bench_etcd_url(g->etcd), n, g->rank);
            next_say = bench_now_ns() + (said++ < 1 ? 5 : 10) * 1000000000ull;
        }
        sleep_us(20000);
    }
    for (i = 0; i < g->world; i++) {
        char h2[128] = "?";
        int pid = 0;
        unsigned long long d = 0;

        if (sscanf(kvs[i].val, "%127s %d %llx", h2, &pid, &d) != 3) {
            bench_err("group '%s': key %s holds '%.60s', not a rank of "
                      "nxl-bench",
                      o->group, kvs[i].key, kvs[i].val);
            goto fail;
        }
        if (d != digest) {
            bench_err("group '%s': %s (%s pid %d) runs with other flags than "
                      "this process (rank %d): give every rank the same "
                      "flags (backend, sizes, iterations, scheme, "
                      "--world_size, ...)",
                      o->group, kvs[i].key + strlen(g->prefix), h2, pid,
                      g->rank);
            goto fail;
        }
    }
    free(kvs);
    assign_roles(g, o->scheme);
    *g_p = g;
    return 0;
fail:
    free(kvs);
    bench_etcd_close(g->etcd);
    free(g);
    return -1;
}

/* ranks_alive checks that every rank key of the group is still there;
 * prints the first one gone. */
static int
ranks_alive(bench_group_t *g)
{
    bench_kv_t *kvs = calloc(g->world + 1, sizeof(*kvs));
    char key[BENCH_ETCD_KEY_MAX];
    size_t n = 0;
    size_t i;
    size_t k;
    int rc = 0;

    if (kvs == NULL) {
        return 0; /* only a check */
    }
    snprintf(key, sizeof(key), "%srank/", g->prefix);
    if (bench_etcd_range(g->etcd, key, kvs, g->world + 1, &n) != 0) {
        free(kvs);
        return -1;
    }
    for (i = 0; i < g->world && rc == 0; i++) {
        char want[BENCH_ETCD_KEY_MAX];

        snprintf(want, sizeof(want), "%srank/%zu", g->prefix, i);
        for (k = 0; k < n && k < g->world + 1; k++) {
            if (strcmp(kvs[k].key, want) == 0) {
                break;
            }
        }
        if (k == n || k == g->world + 1) {
            bench_err("rank %zu left group '%s' (it failed or was killed: "
                      "see its output)",
                      i, g->o->group);
            rc = -1;
        }
    }
    free(kvs);
    return rc;
}

/* real_ns returns CLOCK_REALTIME in ns (the clock the ranks share). */
static int64_t
real_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* barrier posts barrier tag for this rank and waits until every rank
 * (all) or every initiator has posted it, up to limit_s. tag NULL means
 * the next row barrier. At "end" a vanished own key means rank 0 saw
 * everyone and cleaned up: done. With sync, each rank posts its realtime
 * clock and, once all are there, sleeps until the latest of them plus
 * GROUP_START_LEAD_NS, so that the ranks leave together rather than each
 * at its next poll; polls are then at most GROUP_START_POLL_US apart.
 * Uses g's etcd client: one thread at a time. Returns 0 or -1 (printed). */
static int
barrier(bench_group_t *g, const char *tag, int all, int limit_s, int sync)
{
    const bench_opts_t *o = g->o;
    char t[32];
    char key[BENCH_ETCD_KEY_MAX];
    char dir[BENCH_ETCD_KEY_MAX - 16];
    bench_kv_t *kvs;
    size_t need = all ? g->world : g->ninits;
    size_t n = 0;
    uint64_t start = bench_now_ns();
    uint64_t deadline = start + (uint64_t)limit_s * 1000000000ull;
    uint64_t next_say = start + 2000000000ull;
    uint64_t next_alive = start + 500000000ull;
    long pause = 500;
    long max_pause = sync ? GROUP_START_POLL_US : 20000;
    char val[32];
    int is_end;
    int rc = -1;

    if (tag == NULL) {
        if (!all && g->ninits < 2) {
            return 0; /* nobody to wait for */
        }
        snprintf(t, sizeof(t), "%llu", (unsigned long long)++g->rows);
        tag = t;
    }
    is_end = strcmp(tag, "end") == 0;
    snprintf(dir, sizeof(dir), "%sbarrier/%s/", g->prefix, tag);
    snprintf(key, sizeof(key), "%s%d", dir, g->rank);
    kvs = calloc(g->world + 1, sizeof(*kvs));
    if (kvs == NULL) {
        bench_err("out of memory");
        return -1;
    }
    snprintf(val, sizeof(val), "%lld", sync ? (long long)real_ns() : 1ll);
    if (bench_etcd_put(g->etcd, key, val) != 0) {
        goto out;
    }
    for (;;) {
        size_t k;
        int mine = 0;

        if (bench_etcd_range(g->etcd, dir, kvs, g->world + 1, &n) != 0) {
            goto out;
        }
        for (k = 0; k < n && k < g->world + 1; k++) {
            if (strcmp(kvs[k].key, key) == 0) {
                mine = 1;
            }
        }
        if (n >= need || (is_end && !mine)) {
            break;
        }
        if (!mine) {
            bench_err("group '%s': this rank's barrier key %s is gone (the "
                      "lease expired: was etcd unreachable?)",
                      o->group, key);
            goto out;
        }
        if (bench_now_ns() >= next_alive) {
            if (ranks_alive(g) != 0) {
                goto out;
            }
            next_alive = bench_now_ns() + 500000000ull;
        }
        if (bench_now_ns() >= deadline) {
            bench_err("group '%s': only %zu of %zu ranks reached barrier %s "
                      "within %d s (a rank is stuck or much slower; raise "
                      "--timeout)",
                      o->group, n, need, tag, limit_s);
            goto out;
        }
        if (bench_now_ns() >= next_say) {
            say(o,
                "waiting for %zu ranks in group '%s' at barrier %s (%zu "
                "here)...",
                need, o->group, tag, n);
            next_say = bench_now_ns() + 10000000000ull;
        }
        sleep_us(pause);
        if (pause < max_pause) {
            pause += pause / 2;
        }
    }
    if (sync) {
        long long latest = 0;
        size_t k;

        for (k = 0; k < n && k < g->world + 1; k++) {
            long long t = 0;

            if (sscanf(kvs[k].val, "%lld", &t) == 1 && t > latest) {
                latest = t;
            }
        }
        latest += GROUP_START_LEAD_NS;
        if (latest > real_ns() + 1000000000ll) {
            /* another host's clock runs ahead: do not wait for it */
            latest = real_ns() + GROUP_START_LEAD_NS;
        }
        if (latest > real_ns()) {
            struct timespec at = {(time_t)(latest / 1000000000ll),
                                  (long)(latest % 1000000000ll)};

            while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &at, NULL) ==
                   EINTR) {
            }
        }
    }
    rc = 0;
out:
    free(kvs);
    return rc;
}

/* bench_group_barrier: see group.h. */
int
bench_group_barrier(bench_group_t *g, const char *tag, int all, int limit_s)
{
    return barrier(g, tag, all, limit_s, 0);
}

/* bench_group_start: see group.h. */
int
bench_group_start(bench_group_t *g, int limit_s)
{
    return barrier(g, NULL, 0, limit_s, 1);
}

/* bench_group_result publishes this initiator's row (bytes moved between
 * realtime t0 and t1, ns) under the current row tag; the reporter waits
 * for every initiator's and writes the aggregate bandwidth, all bytes over
 * the union of the intervals, into *agg_p (GB/s). Others get -1. */
int
bench_group_result(bench_group_t *g, uint64_t bytes, int64_t t0, int64_t t1,
                   double *agg_p)
{
    const bench_opts_t *o = g->o;
    char key[BENCH_ETCD_KEY_MAX];
    char dir[BENCH_ETCD_KEY_MAX - 16];
    char val[BENCH_ETCD_VAL_MAX];
    bench_kv_t *kvs = NULL;
    uint64_t deadline =
        bench_now_ns() + (uint64_t)o->timeout_s * 10 * 1000000000ull;
    size_t n = 0;
    size_t k;
    long pause = 500;
    int rc = -1;

    *agg_p = -1;
    if (g->ninits < 2) {
        return 0;
    }
    snprintf(dir, sizeof(dir), "%sresult/%llu/", g->prefix,
             (unsigned long long)g->rows);
    snprintf(key, sizeof(key), "%s%d", dir, g->rank);
    snprintf(val, sizeof(val), "%llu %lld %lld", (unsigned long long)bytes,
             (long long)t0, (long long)t1);
    if (bench_etcd_put(g->etcd, key, val) != 0) {
        return -1;
    }
    if (!g->reporter) {
        return 0;
    }
    kvs = calloc(g->world + 1, sizeof(*kvs));
    if (kvs == NULL) {
        bench_err("out of memory");
        return -1;
    }
    for (;;) {
        if (bench_etcd_range(g->etcd, dir, kvs, g->world + 1, &n) != 0) {
            goto out;
        }
        if (n >= g->ninits) {
            break;
        }
        if (bench_now_ns() >= deadline) {
            bench_err("group '%s': only %zu of %zu initiators reported row "
                      "%llu",
                      o->group, n, g->ninits, (unsigned long long)g->rows);
            goto out;
        }
        sleep_us(pause);
        if (pause < 20000) {
            pause += pause / 2;
        }
    }
    {
        unsigned long long total = 0;
        long long lo = INT64_MAX;
        long long hi = INT64_MIN;

        for (k = 0; k < n && k < g->world + 1; k++) {
            unsigned long long b;
            long long a;
            long long z;

            if (sscanf(kvs[k].val, "%llu %lld %lld", &b, &a, &z) != 3 ||
                z < a) {
                bench_err("group '%s': bad result %s = '%.60s'", o->group,
                          kvs[k].key, kvs[k].val);
                goto out;
            }
            total += b;
            lo = a < lo ? a : lo;
            hi = z > hi ? z : hi;
        }
        *agg_p = hi > lo ? (double)total / (double)(hi - lo) : -1;
    }
    rc = 0;
out:
    free(kvs);
    return rc;
}

/* bench_group_leave ends the group: with ok, the "end" barrier of every
 * rank, then rank 0 deletes the group's keys and the others wait up to
 * 5 s for that; then the lease is revoked. Without ok (this rank failed)
 * only the revoke: the others see the rank leave. Accepts NULL. Returns
 * 0, or -1 when the end barrier failed. */
int
bench_group_leave(bench_group_t *g, int ok)
{
    char key[BENCH_ETCD_KEY_MAX];
    int rc = 0;

    if (g == NULL) {
        return 0;
    }
    if (ok) {
        rc = bench_group_barrier(g, "end", 1, g->o->timeout_s * 10);
    }
    if (ok && rc == 0) {
        if (g->rank == 0) {
            if (bench_etcd_delete_prefix(g->etcd, g->prefix) != 0) {
                rc = -1;
            }
        } else {
            uint64_t deadline = bench_now_ns() + 5000000000ull;

            snprintf(key, sizeof(key), "%srank/%d", g->prefix, g->rank);
            while (bench_now_ns() < deadline) {
                bench_kv_t kv;
                size_t n = 0;

                if (bench_etcd_range(g->etcd, key, &kv, 1, &n) != 0 || n == 0) {
                    break;
                }
                sleep_us(20000);
            }
        }
    }
    bench_etcd_close(g->etcd);
    free(g);
    return rc;
}
