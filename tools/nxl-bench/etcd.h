/*
 * etcd.h - nxl-bench's small etcd v3 client (etcd.c): leased puts, a
 * create-if-absent transaction, prefix ranges and deletes through etcd's
 * HTTP/JSON gateway. Failures are printed ("nxl-bench: etcd ...") and
 * returned as -1.
 */
#ifndef NXL_BENCH_ETCD_H
#define NXL_BENCH_ETCD_H

#include <stddef.h>

#define BENCH_ETCD_KEY_MAX 256 /* bytes of a key, with the NUL */
#define BENCH_ETCD_VAL_MAX 256 /* bytes of a value, with the NUL */

typedef struct bench_etcd bench_etcd_t;

/* bench_kv_t is one key and its value as read (NUL-terminated). */
typedef struct bench_kv {
    char key[BENCH_ETCD_KEY_MAX];
    char val[BENCH_ETCD_VAL_MAX];
} bench_kv_t;

/* bench_etcd_open parses endpoints ("URL[,URL]"; host:port means
 * http://host:port), grants a lease of ttl_s seconds and starts the thread
 * that keeps it alive; each request may take up to min(timeout_s, 5) s
 * per endpoint. On success *e_p owns it until bench_etcd_close. */
int bench_etcd_open(const char *endpoints, int ttl_s, int timeout_s,
                    bench_etcd_t **e_p);

/* bench_etcd_close stops the keep-alive and revokes the lease, which
 * deletes every key written through e. Accepts NULL. */
void bench_etcd_close(bench_etcd_t *e);

/* bench_etcd_url returns the endpoint that answered last; lives as long
 * as e. */
const char *bench_etcd_url(const bench_etcd_t *e);

/* bench_etcd_ttl returns the lease TTL etcd granted, in seconds. */
int bench_etcd_ttl(const bench_etcd_t *e);

/* bench_etcd_lease_lost says whether the keep-alive found the lease gone
 * (its keys with it). */
int bench_etcd_lease_lost(bench_etcd_t *e);

/* bench_etcd_put writes key = val (both NUL-terminated, under
 * BENCH_ETCD_KEY_MAX / BENCH_ETCD_VAL_MAX bytes) under the lease. */
int bench_etcd_put(bench_etcd_t *e, const char *key, const char *val);

/* bench_etcd_create writes key = val under the lease unless key exists
 * (one transaction). Returns 1 written, 0 it existed, -1 error. */
int bench_etcd_create(bench_etcd_t *e, const char *key, const char *val);

/* bench_etcd_range reads the keys under prefix: the first cap into kvs
 * (key order) and their total number into *n_p. Returns 0 or -1. */
int bench_etcd_range(bench_etcd_t *e, const char *prefix, bench_kv_t *kvs,
                     size_t cap, size_t *n_p);

/* bench_etcd_delete_prefix deletes every key under prefix. */
int bench_etcd_delete_prefix(bench_etcd_t *e, const char *prefix);

#endif /* NXL_BENCH_ETCD_H */
