/*
 * sweep.c - the measurements: the nixlbench table, the 4 KiB latency and
 * the many-descriptor (vLLM KV pull) benchmark.
 *
 * One row = one (op, block size, batch size). Each thread owns an equal
 * region of the pool, cut into slices of batch x block bytes; request k of
 * a thread moves slice k of its region (same offsets on both sides), and
 * iteration j posts request j mod nreq, so consecutive iterations touch
 * memory that has not been touched for a whole pool (cold data; --hot
 * reuses one slice as nixlbench does). Requests are created before the
 * timed loop (their creation time is the Prep column), the caches are
 * flushed (an eviction buffer of 4x the LLC is read) before the warmup, and
 * the baseline then runs over the same slices after another flush.
 */
#include "bench.h"
#include "group.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* worker_t is one initiator thread: its requests and samples. */
typedef struct worker {
    struct run *run;
    size_t tid;
    nxl_xfer_t **reqs; /* nreq x nt requests: slice k of the region
                        * to target j at reqs[k * nt + j] */
    uint64_t *post_ns; /* iters samples: time inside nxl_xfer_post */
    uint64_t *tx_ns;   /* iters samples: post to completion */
    size_t *fq;        /* in-flight FIFO: sample index */
    uint64_t *ft;      /* in-flight FIFO: post start time */
    uint64_t t0;
    uint64_t t1;
    int failed;
    char msg[512];
} worker_t;

/* run_t is one row being measured. */
typedef struct run {
    bench_session_t *s;
    nxl_op_t op;
    size_t block;
    size_t batch;
    size_t threads;
    size_t depth;
    size_t iters;          /* timed requests per thread */
    size_t warm;           /* untimed requests per thread first */
    int record_base;       /* keep per-iteration baseline times */
    nxl_prepped_t **lprep; /* prepared mode: all blocks of the pool,
                            * per target (onetomany: its local region) */
    nxl_prepped_t **rprep; /* the same of every target's pool */
    size_t nt;             /* targets: request streams per iteration */
    /* derived */
    size_t slice;
    size_t region;
    size_t nreq;
    uint64_t *prep_ns;
    uint64_t *base_ns; /* iters baseline samples (record_base) */
    pthread_barrier_t barrier;
    atomic_int start_failed; /* the group's start barrier failed */
    worker_t w[BENCH_MAX_THREADS];
} run_t;

static uint64_t key_seq;

static nxl_status_t make_one(run_t *r, size_t t, size_t k, size_t j,
                             nxl_xfer_t **x_p);

/* next_key returns a fresh consistency pattern key. */
static uint64_t
next_key(void)
{
    return ++key_seq * 0x100000001b3ull + 0x5eed;
}

/* worker_fail records a failed call in w (the detail message is
 * thread-local, so it is copied here, on the worker's thread). */
static int
worker_fail(worker_t *w, nxl_status_t st, const char *what)
{
    const char *d = nxl_last_error();

    snprintf(w->msg, sizeof(w->msg), "%s: %s (%s)%s%s", what, nxl_strerror(st),
             nxl_status_name(st), (d != NULL && d[0] != '\0') ? ": " : "",
             d != NULL ? d : "");
    w->failed = 1;
    return -1;
}

/* wait_done waits for x: it polls nxl_xfer_status for spin_us, then sleeps
 * in nxl_xfer_wait, never past deadline (then NXL_ERR_TIMEOUT). With
 * spin_us 0 it calls nxl_xfer_wait at once (which checks first). */
static nxl_status_t
wait_done(nxl_xfer_t *x, long spin_us, uint64_t deadline)
{
    uint64_t spin_end = 0;
    unsigned n = 0;
    nxl_status_t st;

    if (spin_us != 0) {
        st = nxl_xfer_status(x);
        if (st != NXL_IN_PROG) {
            return st;
        }
        spin_end =
            spin_us < 0 ? deadline : bench_now_ns() + (uint64_t)spin_us * 1000u;
    }
    /* the clock is read every 64 polls */
    while (spin_us != 0) {
        st = nxl_xfer_status(x);
        if (st != NXL_IN_PROG) {
            return st;
        }
        if ((++n & 63) == 0) {
            uint64_t now = bench_now_ns();

            if (now >= deadline) {
                return NXL_ERR_TIMEOUT;
            }
            if (now >= spin_end) {
                break;
            }
        }
    }
    for (;;) {
        uint64_t now = bench_now_ns();
        uint64_t left_ms;

        if (now >= deadline) {
            return NXL_ERR_TIMEOUT;
        }
        left_ms = (deadline - now) / 1000000u + 1;
        st = nxl_xfer_wait(x, left_ms > 1000 ? 1000 : (int)left_ms);
        if (st == NXL_ERR_NOT_SUPPORTED) {
            /* no sleeping wait: poll politely */
            sched_yield();
            st = nxl_xfer_status(x);
            if (st != NXL_IN_PROG) {
                return st;
            }
            continue;
        }
        if (st != NXL_ERR_TIMEOUT && st != NXL_IN_PROG) {
            return st;
        }
    }
}

/* worker_phase posts count requests, starting with iteration first, with
 * up to depth in flight; with record it keeps post and tx samples. */
static int
worker_phase(worker_t *w, size_t first, size_t count, int record)
{
    run_t *r = w->run;
    const bench_opts_t *o = r->s->o;
    uint64_t tmo = (uint64_t)o->timeout_s * 1000000000ull;
    size_t head = 0;
    size_t n = 0;
    size_t posted = 0;
    size_t done = 0;
    nxl_status_t st;

    while (done < count) {
        /* requests cycle: never post one whose previous use (the oldest
         * in flight, or older) may still be running, even when newer
         * posts completed at once */
        while (posted < count && n < r->depth &&
               (n == 0 || posted - w->fq[head] < r->nreq)) {
            size_t idx = (first + posted) % r->nreq;
            uint64_t a = bench_now_ns();
            uint64_t b;
            size_t j;
            int busy = 0;

            /* one request per target (onetomany), all posted, then
             * waited for together */
            for (j = 0; j < r->nt; j++) {
                nxl_xfer_t **xp = &w->reqs[idx * r->nt + j];

                if (o->recreate_xfer) {
                    /* its previous use is complete (see the loop
                     * condition): a new request each time, timed as part
                     * of the post */
                    nxl_xfer_release(*xp);
                    *xp = NULL;
                    st = make_one(r, w->tid, idx, j, xp);
                    if (st != NXL_OK) {
                        *xp = NULL;
                        return worker_fail(w, st, "--recreate_xfer: create");
                    }
                }
                st = nxl_xfer_post(*xp, NULL);
                if (st != NXL_OK && st != NXL_IN_PROG) {
                    return worker_fail(w, st, "nxl_xfer_post");
                }
                busy |= st == NXL_IN_PROG;
            }
            b = bench_now_ns();
            st = busy ? NXL_IN_PROG : NXL_OK;
            if (record) {
                w->post_ns[posted] = b - a;
            }
            if (st == NXL_OK) {
                if (record) {
                    w->tx_ns[posted] = b - a;
                }
                done++;
            } else {
                size_t slot = (head + n) % r->depth;

                w->fq[slot] = posted;
                w->ft[slot] = a;
                n++;
            }
            posted++;
        }
        if (n > 0) {
            size_t k = w->fq[head];
            size_t idx = (first + k) % r->nreq;
            uint64_t c;
            size_t j;

            st = NXL_OK;
            for (j = 0; j < r->nt && st == NXL_OK; j++) {
                st = wait_done(w->reqs[idx * r->nt + j], o->spin_us,
                               bench_now_ns() + tmo);
            }
            c = bench_now_ns();
            if (st != NXL_OK) {
                return worker_fail(w, st,
                                   st == NXL_ERR_TIMEOUT
                                       ? "transfer did not complete in time"
                                       : "nxl_xfer_status");
            }
            if (record) {
                w->tx_ns[k] = c - w->ft[head];
            }
            head = (head + 1) % r->depth;
            n--;
            done++;
        }
    }
    return 0;
}

/* worker_main runs warmup, waits for the other threads (and, in an etcd
 * group, thread 0 for the other initiators: their timed loops start
 * together, none of them still warming up), then the timed iterations. */
static void *
worker_main(void *arg)
{
    worker_t *w = arg;
    run_t *r = w->run;
    bench_session_t *s = r->s;
    int rc = worker_phase(w, 0, r->warm, 0);

    if (r->threads > 1) {
        pthread_barrier_wait(&r->barrier);
    }
    if (s->grp != NULL) {
        if (w->tid == 0 &&
            bench_group_start(s->grp, s->o->timeout_s * 10) != 0) {
            atomic_store(&r->start_failed, 1); /* printed */
        }
        if (r->threads > 1) {
            pthread_barrier_wait(&r->barrier);
        }
        if (atomic_load(&r->start_failed)) {
            return NULL;
        }
    }
    if (rc == 0) {
        w->t0 = bench_now_ns();
        rc = worker_phase(w, r->warm, r->iters, 1);
        w->t1 = bench_now_ns();
    }
    return NULL;
}

/* slice_off returns the pool offset of request k of thread t. */
static size_t
slice_off(const run_t *r, size_t t, size_t k)
{
    return t * r->region + k * r->slice;
}

/* make_one creates request k of thread t (slice k of its region) to
 * target j (peers[j]; always 0 but with onetomany). */
static nxl_status_t
make_one(run_t *r, size_t t, size_t k, size_t j, nxl_xfer_t **x_p)
{
    bench_session_t *s = r->s;
    const bench_peer_t *p = &s->peers[j];
    const bench_opts_t *o = s->o;
    size_t off = slice_off(r, t, k);
    nxl_desc_t *ld = calloc(r->batch, sizeof(*ld));
    nxl_desc_t *rd = calloc(r->batch, sizeof(*rd));
    size_t *li = calloc(r->batch, sizeof(*li));
    nxl_dlist_t ldl = {s->lmem, ld, r->batch};
    nxl_dlist_t rdl = {s->rmem, rd, r->batch};
    nxl_status_t st = NXL_ERR_NOMEM;
    size_t b;

    if (ld == NULL || rd == NULL || li == NULL) {
        goto out;
    }
    for (b = 0; b < r->batch; b++) {
        bench_ldesc(s, j * s->lstride + off + b * r->block, r->block, &ld[b]);
        if (r->nt > 1) {
            /* thread-safe: not through the current peer */
            rd[b].addr = p->rbase + off + b * r->block;
            rd[b].len = r->block;
            rd[b].dev_id = s->rmem == NXL_VRAM ? p->rdev : 0;
        } else if (bench_rdesc(s, off + b * r->block, r->block, &rd[b]) != 0) {
            st = NXL_ERR_INVALID_PARAM;
            goto out;
        }
        li[b] = off / r->block + b;
    }
    if (o->prepared) {
        st = nxl_xfer_make(s->agent, r->op, r->lprep[j], li, r->rprep[j], li,
                           r->batch, NULL, x_p);
    } else {
        st = nxl_xfer_create(s->agent, r->op, &ldl, &rdl,
                             r->nt > 1 ? p->name : s->peer, NULL, x_p);
    }
out:
    free(ld);
    free(rd);
    free(li);
    return st;
}

/* make_requests creates every request of the row and times each. */
static int
make_requests(run_t *r)
{
    const bench_opts_t *o = r->s->o;
    size_t t;
    size_t k;

    for (t = 0; t < r->threads; t++) {
        worker_t *w = &r->w[t];

        for (k = 0; k < r->nreq * r->nt; k++) {
            uint64_t a = bench_now_ns();
            nxl_status_t st = make_one(r, t, k / r->nt, k % r->nt, &w->reqs[k]);

            r->prep_ns[t * r->nreq * r->nt + k] = bench_now_ns() - a;
            if (st != NXL_OK) {
                bench_nxl_err(st, "%s(%s, %zu x %zu B at pool offset %zu)",
                              o->prepared ? "nxl_xfer_make" : "nxl_xfer_create",
                              bench_op_name(r->op), r->batch, r->block,
                              slice_off(r, t, k / r->nt));
                w->reqs[k] = NULL;
                return -1;
            }
        }
    }
    return 0;
}

/* run_free releases the row's requests and buffers. */
static void
run_free(run_t *r)
{
    size_t t;
    size_t k;

    for (t = 0; t < BENCH_MAX_THREADS; t++) {
        worker_t *w = &r->w[t];

        if (w->reqs != NULL) {
            for (k = 0; k < r->nreq * r->nt; k++) {
                if (w->reqs[k] != NULL) {
                    nxl_xfer_release(w->reqs[k]);
                }
            }
        }
        free(w->reqs);
        free(w->post_ns);
        free(w->tx_ns);
        free(w->fq);
        free(w->ft);
        memset(w, 0, sizeof(*w));
    }
    free(r->prep_ns);
    free(r->base_ns);
    r->prep_ns = NULL;
    r->base_ns = NULL;
}

/* run_layout derives slices, regions and request counts and allocates the
 * sample arrays. */
static int
run_layout(run_t *r)
{
    bench_session_t *s = r->s;
    const bench_opts_t *o = s->o;
    size_t nslices;
    size_t t;
    char a[32];
    char b[32];

    r->slice = r->block * r->batch;
    r->region = s->span / r->threads / r->slice * r->slice;
    nslices = r->region / r->slice;
    if (nslices < r->depth) {
        bench_err("pool too small: %s per thread holds %zu slice(s) of %s, "
                  "need %zu (raise --total_buffer_size)",
                  bench_fmt_size(s->span / r->threads, a, sizeof(a)), nslices,
                  bench_fmt_size(r->slice, b, sizeof(b)), r->depth);
        return -1;
    }
    if (o->hot) {
        r->nreq = r->depth;
    } else {
        r->nreq = r->warm + r->iters;
        if (r->nreq > nslices) {
            r->nreq = nslices;
        }
        if (r->nreq < r->depth) {
            r->nreq = r->depth;
        }
    }
    r->prep_ns = calloc(r->threads * r->nreq * r->nt, sizeof(uint64_t));
    if (r->record_base) {
        r->base_ns = calloc(r->iters, sizeof(uint64_t));
    }
    if (r->prep_ns == NULL || (r->record_base && r->base_ns == NULL)) {
        goto nomem;
    }
    for (t = 0; t < r->threads; t++) {
        worker_t *w = &r->w[t];

        w->run = r;
        w->tid = t;
        w->reqs = calloc(r->nreq * r->nt, sizeof(*w->reqs));
        w->post_ns = calloc(r->iters, sizeof(uint64_t));
        w->tx_ns = calloc(r->iters, sizeof(uint64_t));
        w->fq = calloc(r->depth, sizeof(size_t));
        w->ft = calloc(r->depth, sizeof(uint64_t));
        if (w->reqs == NULL || w->post_ns == NULL || w->tx_ns == NULL ||
            w->fq == NULL || w->ft == NULL) {
            goto nomem;
        }
    }
    return 0;
nomem:
    bench_err("out of memory for %zu requests", r->threads * r->nreq);
    return -1;
}

/* run_workers runs the timed loop on every thread. */
static int
run_workers(run_t *r)
{
    pthread_t th[BENCH_MAX_THREADS];
    size_t t;
    size_t started = 0;
    int rc = 0;

    atomic_store(&r->start_failed, 0);
    if (r->threads == 1) {
        worker_main(&r->w[0]);
    } else {
        if (pthread_barrier_init(&r->barrier, NULL, (unsigned)r->threads) !=
            0) {
            bench_err("pthread_barrier_init failed");
            return -1;
        }
        for (t = 0; t < r->threads; t++) {
            int e = pthread_create(&th[t], NULL, worker_main, &r->w[t]);

            if (e != 0) {
                bench_err("pthread_create: %s", strerror(e));
                /* the barrier would never open: give up */
                exit(1);
            }
            started++;
        }
        for (t = 0; t < started; t++) {
            pthread_join(th[t], NULL);
        }
        pthread_barrier_destroy(&r->barrier);
    }
    if (atomic_load(&r->start_failed)) {
        rc = -1;
    }
    for (t = 0; t < r->threads; t++) {
        if (r->w[t].failed) {
            bench_err("%s %zu x %zu B, thread %zu: %s", bench_op_name(r->op),
                      r->batch, r->block, t, r->w[t].msg);
            rc = -1;
        }
    }
    return rc;
}

/* base_worker_t is one thread of the baseline (run_baseline): it moves
 * part `part` of `parts` of every slice of row thread `tid`. */
typedef struct base_worker {
    run_t *r;
    size_t tid;
    size_t part;
    size_t parts;
    size_t n; /* baseline threads in all (the barrier's count) */
    uint64_t t0;
    uint64_t t1;
    int rc;
} base_worker_t;

/* base_main runs one baseline thread: the row's warmup and iteration
 * counts over its thread's slices, one request at a time. With one part
 * it moves the slice block by block, as the row does; with several, its
 * share of the slice's bytes as one contiguous piece (the pool's blocks
 * of a slice are contiguous). The threads leave one barrier before the
 * timed loop; thread 0 keeps per-iteration times when the row records
 * them. */
static void *
base_main(void *arg)
{
    base_worker_t *b = arg;
    run_t *r = b->r;
    bench_session_t *s = r->s;
    size_t n = b->parts > 1 ? 1 : r->batch;
    size_t lo = r->slice * b->part / b->parts;
    size_t len = r->slice * (b->part + 1) / b->parts - lo;
    struct iovec *liov = calloc(n, sizeof(*liov));
    struct iovec *riov = calloc(n, sizeof(*riov));
    size_t *roff = calloc(n, sizeof(*roff));
    uint64_t *samples = b->tid == 0 && b->part == 0 ? r->base_ns : NULL;
    int ok = liov != NULL && riov != NULL && roff != NULL;
    size_t j;
    size_t k;

    if (!ok) {
        bench_err("out of memory");
    }
    for (j = 0; j < r->warm + r->iters; j++) {
        size_t off = slice_off(r, b->tid, j % r->nreq);
        uint64_t a = 0;

        if (j == r->warm) {
            if (b->n > 1) {
                pthread_barrier_wait(&r->barrier);
            }
            b->t0 = bench_now_ns();
        }
        if (!ok) {
            continue; /* still meet the barrier */
        }
        for (k = 0; k < n; k++) {
            size_t o = n > 1 ? off + k * r->block : off + lo;

            liov[k].iov_base = s->pool + o;
            liov[k].iov_len = n > 1 ? r->block : len;
            roff[k] = o;
        }
        if (samples != NULL) {
            a = bench_now_ns();
        }
        if (bench_base_iov(s, r->op, liov, riov, roff, n) != 0) {
            ok = 0; /* printed; the others wait at the barrier */
            continue;
        }
        if (samples != NULL && j >= r->warm) {
            samples[j - r->warm] = bench_now_ns() - a;
        }
    }
    b->t1 = bench_now_ns();
    b->rc = ok ? 0 : -1;
    free(liov);
    free(riov);
    free(roff);
    return NULL;
}

/* run_baseline moves the row's slices the baseline way with
 * --base_threads threads (by default as many as the row has): each row
 * thread's slices are moved by base_threads / threads of them, which split
 * every slice's bytes; one request at a time each, the row's warmup and
 * iteration counts. A device kind's copy uses one thread. Returns the
 * aggregate GB/s over the union of their timed loops in *bw_p; 0 or -1
 * (printed). */
static int
run_baseline(run_t *r, double *bw_p)
{
    bench_session_t *s = r->s;
    base_worker_t b[BENCH_MAX_THREADS];
    pthread_t th[BENCH_MAX_THREADS];
    size_t parts = s->base_dev ? 1 : s->o->base_threads / r->threads;
    size_t n = s->base_dev ? 1 : r->threads * parts;
    uint64_t tmin = UINT64_MAX;
    uint64_t tmax = 0;
    size_t t;
    int rc = 0;

    memset(b, 0, sizeof(b));
    bench_evict(s);
    if (n > 1 && pthread_barrier_init(&r->barrier, NULL, (unsigned)n) != 0) {
        bench_err("pthread_barrier_init failed");
        return -1;
    }
    for (t = 0; t < n; t++) {
        b[t].r = r;
        b[t].tid = s->base_dev ? 0 : t / parts;
        b[t].part = s->base_dev ? 0 : t % parts;
        b[t].parts = parts;
        b[t].n = n;
    }
    for (t = 1; t < n; t++) {
        int e = pthread_create(&th[t], NULL, base_main, &b[t]);

        if (e != 0) {
            bench_err("pthread_create: %s", strerror(e));
            exit(1); /* the barrier would never open */
        }
    }
    base_main(&b[0]);
    for (t = 1; t < n; t++) {
        pthread_join(th[t], NULL);
    }
    if (n > 1) {
        pthread_barrier_destroy(&r->barrier);
    }
    for (t = 0; t < n; t++) {
        rc |= b[t].rc;
        tmin = b[t].t0 < tmin ? b[t].t0 : tmin;
        tmax = b[t].t1 > tmax ? b[t].t1 : tmax;
    }
    if (rc == 0) {
        *bw_p =
            (double)((n / parts) * r->iters * r->slice) / (double)(tmax - tmin);
    }
    return rc;
}

/* pp_phase moves count blocks of thread 0's slices (from iteration
 * first) through the raw ping-pong with up to r->depth requests in flight
 * (ft: their post times, depth entries); with tx it keeps each request's
 * post -> reply time. Returns 0 or -1 with the reason in why. */
static int
pp_phase(run_t *r, size_t first, size_t count, uint64_t *ft, uint64_t *tx,
         char *why, size_t whycap)
{
    bench_session_t *s = r->s;
    size_t posted = 0;
    size_t done = 0;
    size_t off;

    while (done < count) {
        while (posted < count && posted - done < r->depth) {
            off = slice_off(r, 0, (first + posted) % r->nreq);
            ft[posted % r->depth] = bench_now_ns();
            if (bench_pp_post(s, r->op, off, r->block, why, whycap) != 0) {
                return -1;
            }
            posted++;
        }
        off = slice_off(r, 0, (first + done) % r->nreq);
        if (bench_pp_done(s, r->op, off, r->block, why, whycap) != 0) {
            return -1;
        }
        if (tx != NULL) {
            tx[done] = bench_now_ns() - ft[done % r->depth];
        }
        done++;
    }
    return 0;
}

/* run_pingpong measures the raw TCP ping-pong baseline of a batch-1 row:
 * thread 0's slices, the row's warmup and iteration counts and depth, one
 * connection, after a cache flush (iperf.c). On a failure the baseline is
 * off for the rest of the run (said once) and the row keeps '-'. */
static void
run_pingpong(run_t *r, bench_row_t *row)
{
    bench_session_t *s = r->s;
    uint64_t *ft = calloc(r->depth, sizeof(uint64_t));
    uint64_t *tx = calloc(r->iters, sizeof(uint64_t));
    uint64_t t0;
    uint64_t t1;
    char why[256] = "out of memory";

    bench_progress(s->o, "ping-pong %s %zu B", bench_op_name(r->op), r->block);
    bench_evict(s);
    if (ft != NULL && tx != NULL &&
        pp_phase(r, 0, r->warm, ft, NULL, why, sizeof(why)) == 0) {
        t0 = bench_now_ns();
        if (pp_phase(r, r->warm, r->iters, ft, tx, why, sizeof(why)) == 0) {
            t1 = bench_now_ns();
            row->pp_bw_gbs = (double)(r->iters * r->block) / (double)(t1 - t0);
            row->pp_tx = bench_stats(tx, r->iters);
            free(ft);
            free(tx);
            return;
        }
    }
    bench_err("raw ping-pong baseline is '-' from %s %zu B on: %s",
              bench_op_name(r->op), r->block, why);
    if (s->o->smoke) {
        s->failures++; /* the smoke run checks the baseline too */
    }
    bench_pp_close(s); /* mid-exchange: the stream is out of step */
    s->base_pp = 0;
    free(ft);
    free(tx);
}

/* check_ranges lists the (offset, length) pairs a row touches. */
static size_t
check_ranges(const run_t *r, size_t *ranges)
{
    size_t t;

    for (t = 0; t < r->threads; t++) {
        ranges[2 * t] = slice_off(r, t, 0);
        ranges[2 * t + 1] = r->nreq * r->slice;
    }
    return r->threads;
}

/* tkey returns target j's pattern key for a row keyed key: each target
 * of onetomany gets its own, so data from the wrong one is caught. */
static uint64_t
tkey(uint64_t key, size_t j)
{
    return key ^ ((uint64_t)j << 40);
}

/* remote_all asks each target of the row to fill (verify 0) or check
 * (verify 1) its pattern key in the ranges; the first target is current
 * again afterwards. */
static int
remote_all(run_t *r, int verify, uint64_t key, const size_t *ranges, size_t n)
{
    bench_session_t *s = r->s;
    size_t j;
    int rc = 0;

    for (j = r->nt; j-- > 0 && rc == 0;) {
        if (r->nt > 1) {
            bench_peer_use(s, j);
        }
        rc = verify ? bench_remote_verify(s, tkey(key, j), ranges, n)
                    : bench_remote_fill(s, tkey(key, j), ranges, n);
    }
    if (r->nt > 1) {
        bench_peer_use(s, 0);
    }
    return rc;
}

/* local_all fills (check 0) or checks (check 1, *bad_p = the first wrong
 * pattern offset or SIZE_MAX) the ranges of every target's local region
 * with its pattern key (poison: its key ^ 0xbad). Returns 0 or -1. */
static int
local_all(run_t *r, int check, int poison, uint64_t key, const size_t *ranges,
          size_t n, size_t *bad_p)
{
    bench_session_t *s = r->s;
    size_t i;
    size_t j;

    for (j = 0; j < r->nt; j++) {
        uint64_t k = tkey(key, j) ^ (poison ? 0xbad : 0);

        for (i = 0; i < n; i++) {
            size_t loff = j * s->lstride + ranges[2 * i];

            if (check) {
                if (bench_pool_check(s, loff, ranges[2 * i], ranges[2 * i + 1],
                                     k, bad_p) != 0) {
                    return -1;
                }
                if (*bad_p != SIZE_MAX) {
                    return 0;
                }
            } else if (bench_pool_fill(s, loff, ranges[2 * i],
                                       ranges[2 * i + 1], k) != 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* check_before prepares the data a row will verify: READ has the target
 * (or the files) take the pattern and poisons our slices; WRITE writes it
 * locally. */
static int
check_before(run_t *r, uint64_t key, const size_t *ranges, size_t n)
{
    if (r->op == NXL_READ) {
        if (local_all(r, 0, 1, key, ranges, n, NULL) != 0) {
            return -1;
        }
        return remote_all(r, 0, key, ranges, n);
    }
    return local_all(r, 0, 0, key, ranges, n, NULL);
}

/* count_checked adds a verified row of n ranges to the session's
 * consistency accounting. */
static void
count_checked(bench_session_t *s, nxl_op_t op, const size_t *ranges, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        s->checked_bytes += ranges[2 * i + 1];
    }
    s->checked_rows++;
    s->checked_ops[op == NXL_WRITE]++;
}

/* check_after verifies the row's data: ours after READ, the target's (or
 * the files') after WRITE. Returns 0, or -1 on a mismatch or error. */
static int
check_after(run_t *r, uint64_t key, const size_t *ranges, size_t n)
{
    size_t bad = SIZE_MAX;
    size_t j;

    if (r->op == NXL_WRITE) {
        if (remote_all(r, 1, key, ranges, n) != 0) {
            return -1;
        }
    } else {
        if (local_all(r, 1, 0, key, ranges, n, &bad) != 0) {
            return -1;
        }
        if (bad != SIZE_MAX) {
            bench_err("consistency: wrong data after READ %zu x %zu B at "
                      "pool offset %zu",
                      r->batch, r->block, bad);
            r->s->failures++;
            return -1;
        }
    }
    for (j = 1; j < r->nt; j++) {
        count_checked(r->s, r->op, ranges, n); /* each target's bytes */
        r->s->checked_rows--;
        r->s->checked_ops[r->op == NXL_WRITE]--;
    }
    count_checked(r->s, r->op, ranges, n);
    return 0;
}

/* mono_to_real converts a CLOCK_MONOTONIC time (ns) to CLOCK_REALTIME, so
 * that the ranks of a group compare their intervals. */
static int64_t
mono_to_real(bench_session_t *s, uint64_t mono)
{
    if (!s->mono_real_set) {
        struct timespec rt;

        clock_gettime(CLOCK_REALTIME, &rt);
        s->mono_to_real = (int64_t)rt.tv_sec * 1000000000ll + rt.tv_nsec -
                          (int64_t)bench_now_ns();
        s->mono_real_set = 1;
    }
    return (int64_t)mono + s->mono_to_real;
}

/* run_row measures one row into row (and the baseline samples when
 * r->record_base). */
static int
run_row(run_t *r, bench_row_t *row)
{
    bench_session_t *s = r->s;
    const bench_opts_t *o = s->o;
    size_t ranges[2 * BENCH_MAX_THREADS];
    size_t nranges = 0;
    uint64_t key = 0;
    uint64_t tmin = UINT64_MAX;
    uint64_t tmax = 0;
    uint64_t *all = NULL;
    size_t t;
    int rc = -1;

    memset(row, 0, sizeof(*row));
    row->op = r->op;
    row->block = r->block;
    row->batch = r->batch;
    row->base_bw_gbs = -1;
    row->fio_gbs = -1;
    row->agg_bw_gbs = -1;
    row->pp_bw_gbs = -1;
    if (run_layout(r) != 0 || make_requests(r) != 0) {
        goto out;
    }
    if (o->check_consistency) {
        key = next_key();
        nranges = check_ranges(r, ranges);
        if (check_before(r, key, ranges, nranges) != 0) {
            goto out;
        }
    }
    bench_evict(s);
    /* a group's initiators start each row's timed loop together (see
     * worker_main) and wait for each other before their baselines */
    if (run_workers(r) != 0) {
        goto out;
    }
    if (s->grp != NULL &&
        bench_group_barrier(s->grp, NULL, 0, o->timeout_s * 10) != 0) {
        goto out;
    }
    if (o->check_consistency && check_after(r, key, ranges, nranges) != 0) {
        goto out;
    }
    all = calloc(r->threads * r->iters, sizeof(uint64_t));
    if (all == NULL) {
        bench_err("out of memory");
        goto out;
    }
    for (t = 0; t < r->threads; t++) {
        if (r->w[t].t0 < tmin) {
            tmin = r->w[t].t0;
        }
        if (r->w[t].t1 > tmax) {
            tmax = r->w[t].t1;
        }
    }
    row->bw_gbs = (double)(r->threads * r->iters * r->slice * r->nt) /
                  (double)(tmax - tmin);
    row->avg_lat_us =
        (double)(tmax - tmin) / 1000.0 / (double)(r->iters * r->batch * r->nt);
    row->prep = bench_stats(r->prep_ns, r->threads * r->nreq * r->nt);
    for (t = 0; t < r->threads; t++) {
        memcpy(all + t * r->iters, r->w[t].post_ns,
               r->iters * sizeof(uint64_t));
    }
    row->post = bench_stats(all, r->threads * r->iters);
    for (t = 0; t < r->threads; t++) {
        memcpy(all + t * r->iters, r->w[t].tx_ns, r->iters * sizeof(uint64_t));
    }
    row->tx = bench_stats(all, r->threads * r->iters);
    if (s->grp != NULL &&
        bench_group_result(s->grp,
                           (uint64_t)(r->threads * r->iters * r->slice * r->nt),
                           mono_to_real(s, tmin), mono_to_real(s, tmax),
                           &row->agg_bw_gbs) != 0) {
        goto out;
    }
    if (r->nt > 1) {
        /* onetomany: the one initiator's figure is the aggregate */
        row->agg_bw_gbs = row->bw_gbs;
    }
    if (s->base_fio) {
        char why[256];

        bench_progress(o, "fio %s %zu B", bench_op_name(r->op), r->block);
        row->fio_gbs =
            bench_fio_row(s, r->op, r->block, r->depth * r->batch, r->threads,
                          r->iters * r->slice, why, sizeof(why));
        if (row->fio_gbs < 0 && !s->fio_warned) {
            bench_err("the fio column is '-': %s", why);
            s->fio_warned = 1;
            if (o->smoke) {
                s->failures++; /* the smoke run checks the baseline too */
            }
        }
    }
    if (s->base_perftest) {
        char why[256];

        bench_progress(o, "ucx_perftest %s %zu B", bench_op_name(r->op),
                       r->block);
        row->base_bw_gbs = bench_perftest_row(
            s, r->op, r->block, r->iters * r->batch, r->warm * r->batch, why,
            sizeof(why), s->perftest_lanes, sizeof(s->perftest_lanes));
        if (row->base_bw_gbs < 0 && !s->perftest_warned) {
            bench_err("Base B/W is '-': %s", why);
            s->perftest_warned = 1;
        }
    } else if (s->base_iperf) {
        row->base_bw_gbs = s->iperf_gbs; /* measured before the op's rows */
    } else if (s->base_ok && run_baseline(r, &row->base_bw_gbs) != 0) {
        goto out;
    }
    if (s->base_pp && r->batch == 1 && r->nt == 1 &&
        (o->lat_bench || r->block <= BENCH_PP_MAX_BLOCK)) {
        run_pingpong(r, row);
    }
    rc = 0;
out:
    free(all);
    /* keep the targets' idle timers fresh on long sweeps */
    for (t = s->npeers > 1 ? s->npeers : 1; t-- > 0;) {
        if (s->npeers > 1) {
            bench_peer_use(s, t);
        }
        if (bench_send(s, "NXLB ping") != 0) {
            rc = -1;
        }
    }
    return rc;
}

/* row_iters applies --large_blk_iter_ftr to the iteration counts. */
static void
row_iters(const bench_opts_t *o, size_t block, size_t *iters, size_t *warm)
{
    *iters = o->num_iter;
    *warm = o->warmup_iter;
    if (block > MIB && o->large_blk_iter_ftr > 1) {
        *iters /= o->large_blk_iter_ftr;
        *warm /= o->large_blk_iter_ftr;
    }
    if (*iters == 0) {
        *iters = 1;
    }
}

/* prep_pool prepares local and remote lists of every block of the pool
 * for nxl_xfer_make. */
static int
prep_pool(bench_session_t *s, size_t block, nxl_prepped_t **l_p,
          nxl_prepped_t **r_p)
{
    size_t n = s->span / block;
    nxl_desc_t *ld = calloc(n, sizeof(*ld));
    nxl_desc_t *rd = calloc(n, sizeof(*rd));
    nxl_dlist_t ldl = {s->lmem, ld, n};
    nxl_dlist_t rdl = {s->rmem, rd, n};
    nxl_status_t st;
    size_t i;
    int rc = -1;

    if (ld == NULL || rd == NULL) {
        bench_err("out of memory");
        goto out;
    }
    for (i = 0; i < n; i++) {
        bench_ldesc(s, s->lbase + i * block, block, &ld[i]);
        if (bench_rdesc(s, i * block, block, &rd[i]) != 0) {
            goto out;
        }
    }
    st = nxl_dlist_prep(s->agent, NULL, &ldl, NULL, l_p);
    if (st != NXL_OK) {
        bench_nxl_err(st, "nxl_dlist_prep(local, %zu x %zu B)", n, block);
        goto out;
    }
    st = nxl_dlist_prep(s->agent, s->peer, &rdl, NULL, r_p);
    if (st != NXL_OK) {
        bench_nxl_err(st, "nxl_dlist_prep(%s, %zu x %zu B)", s->peer, n, block);
        nxl_dlist_release(*l_p);
        *l_p = NULL;
        goto out;
    }
    rc = 0;
out:
    free(ld);
    free(rd);
    return rc;
}

/* sweep_iperf measures iperf3 for op's rows: before them (when is NULL)
 * into s->iperf_gbs, the Base B/W of every row of op, or after them, only
 * printed beside the first figure so a drift during the rows shows. The
 * rows themselves run back to back: a 1-2 s iperf3 run between rows made
 * the next NXL row scatter by up to 2x on the 2-core box. */
static void
sweep_iperf(bench_session_t *s, nxl_op_t op, const char *when)
{
    const bench_opts_t *o = s->o;
    char why[256];
    double gbs;

    bench_progress(o, "iperf3 %s", bench_op_name(op));
    gbs = bench_iperf_row(s, op, why, sizeof(why));
    bench_progress_done(o);
    if (gbs < 0) {
        bench_err("iperf3 %s%s%s: %s", bench_op_name(op), when ? " " : "",
                  when ? when : "", why);
        if (o->smoke) {
            s->failures++; /* the smoke run checks the baseline too */
        }
    }
    if (when == NULL) {
        s->iperf_gbs = gbs;
        return;
    }
    fprintf(o->json || o->csv ? stderr : stdout,
            "nxl-bench: iperf3 one stream, %s direction: %.3f GB/s before "
            "the rows (their Base B/W), %.3f GB/s after\n",
            bench_op_name(op), s->iperf_gbs, gbs);
}

/* bench_sweep runs the table: every op, block size and batch size. */
int
bench_sweep(bench_session_t *s)
{
    const bench_opts_t *o = s->o;
    size_t f = o->block_factor;
    size_t rows = 0;
    size_t done = 0;
    size_t i;
    size_t block;
    size_t batch;
    size_t nt = s->npeers > 1 ? s->npeers : 1; /* onetomany: targets */
    run_t *r = calloc(1, sizeof(*r));
    int rc = 0;

    if (r == NULL) {
        bench_err("out of memory");
        return -1;
    }
    for (block = o->start_block; block <= o->max_block; block *= f) {
        for (batch = o->start_batch; batch <= o->max_batch; batch *= f) {
            rows++;
        }
    }
    rows *= o->num_ops;
    for (i = 0; i < o->num_ops && rc == 0; i++) {
        if (s->base_iperf) {
            sweep_iperf(s, o->ops[i], NULL);
        }
        bench_report_header(o, o->ops[i]);
        for (block = o->start_block; block <= o->max_block && rc == 0;
             block *= f) {
            nxl_prepped_t *lp[BENCH_MAX_PEERS] = {NULL};
            nxl_prepped_t *rp[BENCH_MAX_PEERS] = {NULL};
            size_t j;

            if (o->reregister_mem && bench_pool_reregister(s) != 0) {
                rc = -1;
                break;
            }
            for (j = nt; o->prepared && j-- > 0;) {
                if (nt > 1) {
                    bench_peer_use(s, j); /* ends on the first */
                }
                if (prep_pool(s, block, &lp[j], &rp[j]) != 0) {
                    rc = -1;
                    break;
                }
            }
            if (rc != 0) {
                if (nt > 1) {
                    bench_peer_use(s, 0);
                }
                for (j = 0; j < nt; j++) {
                    nxl_dlist_release(lp[j]);
                    nxl_dlist_release(rp[j]);
                }
                break;
            }
            for (batch = o->start_batch; batch <= o->max_batch && rc == 0;
                 batch *= f) {
                bench_row_t row;
                char sz[32];

                memset(r, 0, sizeof(*r));
                r->s = s;
                r->op = o->ops[i];
                r->block = block;
                r->batch = batch;
                r->threads = o->num_threads;
                r->depth = o->pipeline_depth;
                r->lprep = lp;
                r->rprep = rp;
                r->nt = nt;
                row_iters(o, block, &r->iters, &r->warm);
                bench_progress(
                    o, "nxl-bench: %s %s x %zu (%zu/%zu)", bench_op_name(r->op),
                    bench_fmt_size(block, sz, sizeof(sz)), batch, ++done, rows);
                rc = run_row(r, &row);
                run_free(r);
                bench_progress_done(o);
                if (rc == 0) {
                    bench_report_row(o, &row);
                }
            }
            for (j = 0; j < nt; j++) {
                nxl_dlist_release(lp[j]);
                nxl_dlist_release(rp[j]);
            }
        }
        if (rc == 0 && s->base_iperf) {
            sweep_iperf(s, o->ops[i], "after");
        }
    }
    if (rc == 0 && s->base_perftest && s->perftest_lanes[0] != '\0') {
        fprintf(o->json || o->csv ? stderr : stdout,
                "nxl-bench: ucx_perftest's UCX lanes: %s\n", s->perftest_lanes);
    }
    free(r);
    return rc;
}

/* pretouch_one moves the current peer's whole pool once in each
 * direction, untimed, in descriptors of up to 64 MiB, so that whatever
 * the library maps or pins on first use (a peer's shared region is mapped
 * page by page) is in place, as in a long-running process. */
static int
pretouch_one(bench_session_t *s)
{
    size_t chunk = 64 * MIB;
    size_t n = 0;
    nxl_desc_t *ld = NULL;
    nxl_desc_t *rd = NULL;
    nxl_dlist_t ldl;
    nxl_dlist_t rdl;
    nxl_op_t ops[2] = {NXL_READ, NXL_WRITE};
    size_t off;
    size_t i;
    int rc = -1;

    if (s->o->storage && s->file_size < chunk) {
        chunk = s->file_size; /* no piece straddles two files */
    }
    n = (s->span + chunk - 1) / chunk;
    ld = calloc(n, sizeof(*ld));
    rd = calloc(n, sizeof(*rd));
    if (ld == NULL || rd == NULL) {
        bench_err("out of memory");
        goto out;
    }
    for (i = 0, off = 0; off < s->span; i++) {
        size_t len = s->span - off < chunk ? s->span - off : chunk;

        if (s->o->storage && len > s->file_size - off % s->file_size) {
            len = s->file_size - off % s->file_size;
        }
        bench_ldesc(s, s->lbase + off, len, &ld[i]);
        if (bench_rdesc(s, off, len, &rd[i]) != 0) {
            goto out;
        }
        off += len;
    }
    ldl = (nxl_dlist_t){s->lmem, ld, i};
    rdl = (nxl_dlist_t){s->rmem, rd, i};
    for (i = 0; i < 2; i++) {
        nxl_xfer_t *x = NULL;
        nxl_status_t st =
            nxl_xfer_create(s->agent, ops[i], &ldl, &rdl, s->peer, NULL, &x);

        if (st != NXL_OK) {
            bench_nxl_err(st, "nxl_xfer_create(%s of the whole pool)",
                          bench_op_name(ops[i]));
            goto out;
        }
        st = nxl_xfer_post(x, NULL);
        if (st == NXL_IN_PROG) {
            st = wait_done(x, s->o->spin_us,
                           bench_now_ns() +
                               (uint64_t)s->o->timeout_s * 1000000000ull);
        }
        nxl_xfer_release(x);
        if (st != NXL_OK) {
            bench_nxl_err(st, "%s of the whole pool", bench_op_name(ops[i]));
            goto out;
        }
    }
    rc = 0;
out:
    free(ld);
    free(rd);
    return rc;
}

/* bench_pretouch pretouches the current peer's pool, or every target's
 * (onetomany). */
int
bench_pretouch(bench_session_t *s)
{
    size_t j;
    int rc = 0;

    if (s->npeers <= 1) {
        return pretouch_one(s);
    }
    for (j = s->npeers; j-- > 0 && rc == 0;) {
        bench_peer_use(s, j);
        rc = pretouch_one(s);
    }
    bench_peer_use(s, 0);
    return rc;
}

/* bench_lat measures the median post->completion time of one
 * single-descriptor request of --start_block_size (4 KiB) per op, over
 * --num_iter iterations (10000 unless given), against the baseline's
 * median for the same slices (TCP: the raw ping-pong's, same size). */
int
bench_lat(bench_session_t *s)
{
    const bench_opts_t *o = s->o;
    run_t *r = calloc(1, sizeof(*r));
    size_t i;
    int rc = 0;

    if (r == NULL) {
        bench_err("out of memory");
        return -1;
    }
    for (i = 0; i < o->num_ops && rc == 0; i++) {
        bench_row_t row;
        bench_stats_t base = {0, 0, 0};
        int have_base = 0;
        nxl_prepped_t *lp = NULL;
        nxl_prepped_t *rp = NULL;

        if (o->prepared && prep_pool(s, o->start_block, &lp, &rp) != 0) {
            rc = -1;
            break;
        }
        memset(r, 0, sizeof(*r));
        r->s = s;
        r->op = o->ops[i];
        r->block = o->start_block;
        r->batch = 1;
        r->threads = 1;
        r->depth = 1;
        r->iters = o->num_iter_set ? o->num_iter : 10000;
        r->warm = o->warmup_iter;
        r->record_base = 1;
        r->lprep = &lp;
        r->rprep = &rp;
        r->nt = 1; /* the first target only */
        rc = run_row(r, &row);
        if (rc == 0 && s->base_ok) {
            base = bench_stats(r->base_ns, r->iters);
            have_base = 1;
        } else if (rc == 0 && row.pp_bw_gbs > 0) {
            base = row.pp_tx;
            have_base = 1;
        }
        if (rc == 0 && o->json) {
            printf("{\"bench\":\"lat\",\"op\":\"%s\",\"mode\":\"%s\","
                   "\"block_size\":%zu,\"iters\":%zu,\"med_us\":%.3f,"
                   "\"avg_us\":%.3f,\"p99_us\":%.3f,\"avg_post_us\":%.3f,",
                   bench_op_name(r->op), o->prepared ? "prepared" : "create",
                   r->block, r->iters, row.tx.med_us, row.tx.avg_us,
                   row.tx.p99_us, row.post.avg_us);
            if (have_base) {
                printf("\"base_med_us\":%.3f,\"base_p99_us\":%.3f,"
                       "\"ratio\":%.3f}\n",
                       base.med_us, base.p99_us, base.med_us / row.tx.med_us);
            } else {
                printf("\"base_med_us\":null,\"base_p99_us\":null,"
                       "\"ratio\":null}\n");
            }
        } else if (rc == 0 && o->csv) {
            if (i == 0) {
                printf("bench,op,block_size,iters,med_us,avg_us,p99_us,"
                       "base_med_us,ratio,base_p99_us\n");
            }
            printf("lat,%s,%zu,%zu,%.3f,%.3f,%.3f,", bench_op_name(r->op),
                   r->block, r->iters, row.tx.med_us, row.tx.avg_us,
                   row.tx.p99_us);
            if (have_base) {
                printf("%.3f,%.3f,%.3f\n", base.med_us,
                       base.med_us / row.tx.med_us, base.p99_us);
            } else {
                printf(",,\n");
            }
        } else if (rc == 0) {
            printf("\nlatency %s, %zu B x 1, %zu iterations, %s data:\n",
                   bench_op_name(r->op), r->block, r->iters,
                   o->hot ? "hot" : "cold");
            printf("  NXL post->completion: median %.3f us, avg %.3f us, "
                   "p99 %.3f us (avg post %.3f us)\n",
                   row.tx.med_us, row.tx.avg_us, row.tx.p99_us,
                   row.post.avg_us);
            if (have_base) {
                printf("  baseline (%s):  median %.3f us, avg %.3f us, "
                       "p99 %.3f us\n",
                       s->base_name, base.med_us, base.avg_us, base.p99_us);
                printf("  ratio (baseline median / NXL median): %.2f\n",
                       base.med_us / row.tx.med_us);
            } else {
                printf("  baseline: -\n");
            }
        }
        run_free(r);
        nxl_dlist_release(lp);
        nxl_dlist_release(rp);
    }
    free(r);
    return rc;
}

/* median_u64 returns the median of v (sorted in place) in ns. */
static double
median_u64(uint64_t *v, size_t n)
{
    return bench_stats(v, n).med_us * 1000.0;
}

/* desc_check_before prepares --desc_bench verification: READ has the
 * target fill its blocks and poisons ours; WRITE fills local block i with
 * the pattern of the remote block it goes to. */
static int
desc_check_before(bench_session_t *s, nxl_op_t op, uint64_t key,
                  const size_t *ridx, size_t n, size_t block)
{
    size_t range[2] = {0, n * block};
    size_t i;

    if (op == NXL_READ) {
        if (bench_pool_fill(s, 0, 0, n * block, key ^ 0xbad) != 0) {
            return -1;
        }
        return bench_remote_fill(s, key, range, 1);
    }
    for (i = 0; i < n; i++) {
        if (bench_pool_fill(s, i * block, ridx[i] * block, block, key) != 0) {
            return -1;
        }
    }
    return 0;
}

/* desc_check_after verifies --desc_bench data on the side that received
 * it. */
static int
desc_check_after(bench_session_t *s, nxl_op_t op, uint64_t key,
                 const size_t *ridx, size_t n, size_t block)
{
    size_t range[2] = {0, n * block};
    size_t i;

    if (op == NXL_WRITE) {
        if (bench_remote_verify(s, key, range, 1) != 0) {
            return -1;
        }
        count_checked(s, op, range, 1);
        return 0;
    }
    for (i = 0; i < n; i++) {
        size_t bad = SIZE_MAX;

        if (bench_pool_check(s, i * block, ridx[i] * block, block, key, &bad) !=
            0) {
            return -1;
        }
        if (bad != SIZE_MAX) {
            bench_err("consistency: local block %zu holds wrong data after "
                      "READ of remote block %zu (pattern offset %zu)",
                      i, ridx[i], bad);
            s->failures++;
            return -1;
        }
    }
    count_checked(s, op, range, 1);
    return 0;
}

/* desc_once makes, posts and waits for the whole N-descriptor request,
 * timing make and transfer. */
static int
desc_once(bench_session_t *s, nxl_op_t op, nxl_prepped_t *lp, nxl_prepped_t *rp,
          const size_t *lidx, const size_t *ridx, size_t n, uint64_t *make_ns,
          uint64_t *xfer_ns)
{
    nxl_xfer_t *x = NULL;
    nxl_status_t st;
    uint64_t a;
    uint64_t b;
    uint64_t c;

    a = bench_now_ns();
    st = nxl_xfer_make(s->agent, op, lp, lidx, rp, ridx, n, NULL, &x);
    b = bench_now_ns();
    if (st != NXL_OK) {
        return bench_nxl_err(st, "nxl_xfer_make(%s, %zu descriptors)",
                             bench_op_name(op), n);
    }
    st = nxl_xfer_post(x, NULL);
    if (st == NXL_IN_PROG) {
        st = wait_done(x, s->o->spin_us,
                       bench_now_ns() +
                           (uint64_t)s->o->timeout_s * 1000000000ull);
    }
    c = bench_now_ns();
    nxl_xfer_release(x);
    if (st != NXL_OK) {
        return bench_nxl_err(st, "%s of %zu descriptors", bench_op_name(op), n);
    }
    *make_ns = b - a;
    *xfer_ns = c - b;
    return 0;
}

/* bench_desc runs --desc_bench: one request of N descriptors of
 * --start_block_size from prepared lists (local blocks in order, remote
 * blocks shuffled unless --desc_contig), against process_vm_readv/writev
 * of the same blocks in IOV_MAX chunks. */
int
bench_desc(bench_session_t *s)
{
    const bench_opts_t *o = s->o;
    size_t n = o->desc_bench;
    size_t block = o->start_block;
    size_t reps = o->num_iter_set ? o->num_iter : 5;
    size_t *lidx = calloc(n, sizeof(size_t));
    size_t *ridx = calloc(n, sizeof(size_t));
    nxl_desc_t *ld = calloc(n, sizeof(nxl_desc_t));
    nxl_desc_t *rd = calloc(n, sizeof(nxl_desc_t));
    struct iovec *liov = calloc(n, sizeof(struct iovec));
    struct iovec *riov = calloc(n, sizeof(struct iovec));
    size_t *roff = calloc(n, sizeof(size_t));
    uint64_t *mk = calloc(reps, sizeof(uint64_t));
    uint64_t *xf = calloc(reps, sizeof(uint64_t));
    uint64_t *bs = calloc(reps, sizeof(uint64_t));
    nxl_prepped_t *lp = NULL;
    nxl_prepped_t *rp = NULL;
    nxl_dlist_t ldl = {s->lmem, ld, n};
    nxl_dlist_t rdl = {s->rmem, rd, n};
    uint64_t seed = 0x2545F4914F6CDD1Dull;
    uint64_t t0;
    uint64_t t1;
    uint64_t t2;
    double prep_l_ms;
    double prep_r_ms;
    nxl_status_t st;
    char sz[32];
    char tot[32];
    size_t i;
    size_t k;
    int rc = -1;

    if (lidx == NULL || ridx == NULL || ld == NULL || rd == NULL ||
        liov == NULL || riov == NULL || roff == NULL || mk == NULL ||
        xf == NULL || bs == NULL) {
        bench_err("out of memory for %zu descriptors", n);
        goto out;
    }
    if (n > s->span / block) {
        bench_err("--desc_bench %zu x %zu B does not fit the %zu-byte pool", n,
                  block, s->span);
        goto out;
    }
    for (i = 0; i < n; i++) {
        lidx[i] = i;
        ridx[i] = i;
    }
    if (!o->desc_contig) {
        for (i = n - 1; i > 0; i--) { /* Fisher-Yates, xorshift64 */
            size_t j;
            size_t tmp;

            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            j = (size_t)(seed % (i + 1));
            tmp = ridx[i];
            ridx[i] = ridx[j];
            ridx[j] = tmp;
        }
    }
    for (i = 0; i < n; i++) {
        bench_ldesc(s, i * block, block, &ld[i]);
        if (bench_rdesc(s, i * block, block, &rd[i]) != 0) {
            goto out;
        }
        liov[i].iov_base = s->pool + i * block;
        liov[i].iov_len = block;
        roff[i] = ridx[i] * block;
    }
    t0 = bench_now_ns();
    st = nxl_dlist_prep(s->agent, NULL, &ldl, NULL, &lp);
    t1 = bench_now_ns();
    if (st != NXL_OK) {
        bench_nxl_err(st, "nxl_dlist_prep(local, %zu descriptors)", n);
        goto out;
    }
    st = nxl_dlist_prep(s->agent, s->peer, &rdl, NULL, &rp);
    t2 = bench_now_ns();
    if (st != NXL_OK) {
        bench_nxl_err(st, "nxl_dlist_prep(%s, %zu descriptors)", s->peer, n);
        goto out;
    }
    prep_l_ms = (double)(t1 - t0) / 1e6;
    prep_r_ms = (double)(t2 - t1) / 1e6;
    if (!o->json && !o->csv) {
        printf("\ndesc_bench: %zu x %s = %s in one request, %s remote "
               "blocks, %d repetitions (median)\n",
               n, bench_fmt_size(block, sz, sizeof(sz)),
               bench_fmt_size(n * block, tot, sizeof(tot)),
               o->desc_contig ? "contiguous" : "shuffled", (int)reps);
        printf("  nxl_dlist_prep: local %.3f ms, remote %.3f ms\n", prep_l_ms,
               prep_r_ms);
    }
    for (i = 0; i < o->num_ops; i++) {
        nxl_op_t op = o->ops[i];
        uint64_t wm;
        uint64_t wx;
        double make_ns;
        double xfer_ns;
        double base_ns = 0;
        double bytes = (double)(n * block);

        /* one untimed round first */
        if (desc_once(s, op, lp, rp, lidx, ridx, n, &wm, &wx) != 0) {
            goto out;
        }
        for (k = 0; k < reps; k++) {
            uint64_t key = next_key();

            if (o->check_consistency &&
                desc_check_before(s, op, key, ridx, n, block) != 0) {
                goto out;
            }
            bench_evict(s);
            if (desc_once(s, op, lp, rp, lidx, ridx, n, &mk[k], &xf[k]) != 0) {
                goto out;
            }
            if (o->check_consistency &&
                desc_check_after(s, op, key, ridx, n, block) != 0) {
                goto out;
            }
        }
        if (s->base_ok) {
            if (bench_base_iov(s, op, liov, riov, roff, n) != 0) {
                goto out;
            }
            for (k = 0; k < reps; k++) {
                bench_evict(s);
                t0 = bench_now_ns();
                if (bench_base_iov(s, op, liov, riov, roff, n) != 0) {
                    goto out;
                }
                bs[k] = bench_now_ns() - t0;
            }
            base_ns = median_u64(bs, reps);
        }
        make_ns = median_u64(mk, reps);
        xfer_ns = median_u64(xf, reps);
        if (s->base_iperf) {
            sweep_iperf(s, op, NULL); /* into s->iperf_gbs, < 0: failed */
        }
        if (o->json) {
            printf("{\"bench\":\"desc\",\"op\":\"%s\",\"descs\":%zu,"
                   "\"block_size\":%zu,\"shuffled\":%s,\"reps\":%zu,"
                   "\"prep_local_ms\":%.3f,\"prep_remote_ms\":%.3f,"
                   "\"make_ms\":%.3f,\"make_ns_per_desc\":%.1f,"
                   "\"xfer_ms\":%.3f,\"xfer_gbs\":%.3f,"
                   "\"make_xfer_gbs\":%.3f,",
                   bench_op_name(op), n, block,
                   o->desc_contig ? "false" : "true", reps, prep_l_ms,
                   prep_r_ms, make_ns / 1e6, make_ns / (double)n, xfer_ns / 1e6,
                   bytes / xfer_ns, bytes / (make_ns + xfer_ns));
            if (s->base_iperf && s->iperf_gbs > 0) {
                printf("\"iperf3_gbs\":%.3f,\"iperf3_ratio\":%.3f,",
                       s->iperf_gbs, bytes / xfer_ns / s->iperf_gbs);
            }
            if (s->base_ok) {
                printf("\"base_gbs\":%.3f,\"ratio\":%.3f,"
                       "\"ratio_with_make\":%.3f}\n",
                       bytes / base_ns, base_ns / xfer_ns,
                       base_ns / (make_ns + xfer_ns));
            } else {
                printf("\"base_gbs\":null,\"ratio\":null,"
                       "\"ratio_with_make\":null}\n");
            }
            continue;
        }
        printf("  %s: nxl_xfer_make %.3f ms (%.1f ns/descriptor); transfer "
               "%.3f ms = %.3f GB/s; make+transfer %.3f GB/s\n",
               bench_op_name(op), make_ns / 1e6, make_ns / (double)n,
               xfer_ns / 1e6, bytes / xfer_ns, bytes / (make_ns + xfer_ns));
        if (s->base_ok) {
            printf("  %s: baseline (%s%s) %.3f ms = %.3f GB/s; ratio %.2f "
                   "(with make %.2f)\n",
                   bench_op_name(op), s->base_name,
                   s->base_pool != NULL ? "" : ", IOV_MAX chunks",
                   base_ns / 1e6, bytes / base_ns, base_ns / xfer_ns,
                   base_ns / (make_ns + xfer_ns));
        } else {
            printf("  %s: baseline -\n", bench_op_name(op));
        }
        if (s->base_iperf && s->iperf_gbs > 0) {
            printf("  %s: iperf3 one stream, same path and direction, "
                   "measured after it: %.3f GB/s; ratio %.2f\n",
                   bench_op_name(op), s->iperf_gbs,
                   bytes / xfer_ns / s->iperf_gbs);
        }
    }
    rc = 0;
out:
    if (bench_send(s, "NXLB ping") != 0) {
        rc = -1;
    }
    nxl_dlist_release(lp);
    nxl_dlist_release(rp);
    free(lidx);
    free(ridx);
    free(ld);
    free(rd);
    free(liov);
    free(riov);
    free(roff);
    free(mk);
    free(xf);
    free(bs);
    return rc;
}
