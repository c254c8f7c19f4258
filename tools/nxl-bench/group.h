/*
 * group.h - nxl-bench's etcd rendezvous (group.c): ranks, roles by
 * --scheme, barriers and the aggregate of the initiators' rows.
 */
#ifndef NXL_BENCH_GROUP_H
#define NXL_BENCH_GROUP_H

#include "bench.h"
#include "etcd.h"

/* bench_group_t is this process's place in a group. */
typedef struct bench_group {
    const bench_opts_t *o;
    bench_etcd_t *etcd;
    char prefix[160]; /* "nxl-bench/<group>/" */
    int rank;
    size_t world;
    int initiator;              /* this rank's role */
    int peers[BENCH_MAX_PEERS]; /* the other side's ranks */
    size_t npeers;
    int inits[BENCH_MAX_PEERS + 1]; /* every initiator's rank, ascending */
    size_t ninits;
    int reporter;  /* the lowest initiator: prints aggregates */
    uint64_t rows; /* row barriers passed */
} bench_group_t;

/* bench_group_name_ok says whether name is 1..64 bytes of [A-Za-z0-9._-]. */
int bench_group_name_ok(const char *name);

/* bench_scheme_name returns "pairwise", "manytoone" or "onetomany". */
const char *bench_scheme_name(bench_scheme_t s);

/* bench_group_agent writes the agent name of rank into buf. */
void bench_group_agent(const bench_opts_t *o, int rank, char *buf, size_t cap);

/* bench_group_join takes a rank in o->group through etcd, waits up to
 * --timeout for o->world_size ranks (printing what it waits for), checks
 * that they share the flags and assigns roles. On success *g_p owns the
 * etcd connection until bench_group_leave. Returns 0 or -1 (printed). */
int bench_group_join(const bench_opts_t *o, bench_group_t **g_p);

/* bench_group_barrier posts barrier tag (NULL: the next row barrier, a
 * no-op with fewer than two initiators) and waits up to limit_s for every
 * rank (all) or every initiator. Returns 0 or -1 (printed). */
int bench_group_barrier(bench_group_t *g, const char *tag, int all,
                        int limit_s);

/* bench_group_start is the row barrier before the initiators' timed loops
 * (after their warmups): like bench_group_barrier(g, NULL, 0, limit_s),
 * but every initiator leaves at the same CLOCK_REALTIME instant, 20 ms
 * after the last one arrived, so that the loops overlap from the start.
 * Returns 0 or -1 (printed). */
int bench_group_start(bench_group_t *g, int limit_s);

/* bench_group_result publishes this initiator's row: bytes moved between
 * realtime t0 and t1 (ns). The reporter waits for every initiator and
 * sets *agg_p to all bytes over the union of their intervals (GB/s);
 * otherwise *agg_p = -1. Returns 0 or -1. */
int bench_group_result(bench_group_t *g, uint64_t bytes, int64_t t0, int64_t t1,
                       double *agg_p);

/* bench_group_leave ends the group (the "end" barrier when ok, then rank
 * 0 deletes the group's keys) and revokes the lease. Frees g; accepts
 * NULL. Returns 0, or -1 when the end barrier failed. */
int bench_group_leave(bench_group_t *g, int ok);

#endif /* NXL_BENCH_GROUP_H */
