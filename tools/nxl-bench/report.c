/*
 * report.c - statistics and output: the nixlbench table, JSON lines, CSV.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* bench_op_name returns "READ" or "WRITE". */
const char *
bench_op_name(nxl_op_t op)
{
    return op == NXL_READ ? "READ" : "WRITE";
}

/* cmp_u64 orders uint64_t values for qsort. */
static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

/* bench_stats sorts v and returns its mean, 99th percentile (nearest
 * rank) and median, in microseconds. */
bench_stats_t
bench_stats(uint64_t *v, size_t n)
{
    bench_stats_t st = {0, 0, 0};
    double sum = 0;
    size_t rank;
    size_t i;

    if (n == 0) {
        return st;
    }
    qsort(v, n, sizeof(*v), cmp_u64);
    for (i = 0; i < n; i++) {
        sum += (double)v[i];
    }
    rank = (n * 99 + 99) / 100; /* ceil(0.99 n) */
    st.avg_us = sum / (double)n / 1000.0;
    st.p99_us = (double)v[rank - 1] / 1000.0;
    st.med_us = (n % 2 == 1)
                    ? (double)v[n / 2] / 1000.0
                    : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2000.0;
    return st;
}

/* Table columns: nixlbench's, then Med Tx, Base B/W and Ratio. */
static const struct {
    const char *title;
    int width;
} cols[] = {
    {"Block Size (B)", 15}, {"Batch Size", 11},    {"B/W (GB/Sec)", 13},
    {"Avg Lat. (us)", 14},  {"Avg Prep (us)", 14}, {"P99 Prep (us)", 14},
    {"Avg Post (us)", 14},  {"P99 Post (us)", 14}, {"Avg Tx (us)", 12},
    {"P99 Tx (us)", 12},    {"Med Tx (us)", 12},   {"Base B/W", 10},
    {"Ratio", 7},
};
#define NCOLS (sizeof(cols) / sizeof(cols[0]))

/* pp_cols says whether rows carry the raw ping-pong columns: every row
 * of a --backend TCP sweep ('-' or null where a row has none). */
static int
pp_cols(const bench_opts_t *o)
{
    return strcasecmp(o->backend, "TCP") == 0 && !o->storage;
}

/* bench_report_header prints the column titles for op (table), or the CSV
 * header once; JSON needs none. */
void
bench_report_header(const bench_opts_t *o, nxl_op_t op)
{
    static int csv_done;
    size_t i;
    int total = 0;

    if (o->json) {
        return;
    }
    if (o->csv) {
        if (!csv_done) {
            printf("op,block_size,batch_size,bw_gbs,avg_lat_us,avg_prep_us,"
                   "p99_prep_us,avg_post_us,p99_post_us,avg_tx_us,p99_tx_us,"
                   "med_tx_us,base_bw_gbs,ratio,mode%s%s%s\n",
                   o->storage ? ",fio_gbs" : "",
                   o->etcd_endpoints != NULL ? ",agg_bw_gbs" : "",
                   pp_cols(o) ? ",pp_bw_gbs,pp_ratio,pp_med_tx_us,"
                                "pp_p99_tx_us"
                              : "");
            csv_done = 1;
        }
        return;
    }
    printf("\n%s (%s)\n", bench_op_name(op),
           o->prepared ? "prepared" : "create");
    for (i = 0; i < NCOLS; i++) {
        printf("%-*s", cols[i].width, cols[i].title);
        total += cols[i].width;
    }
    if (o->storage) {
        printf("   %-10s", "fio B/W");
        total += 13;
    }
    if (o->etcd_endpoints != NULL) {
        printf("   %-10s", "Agg B/W");
        total += 13;
    }
    if (pp_cols(o)) {
        printf("   %-10s%-10s%-12s", "PP B/W", "PP Ratio", "PP Med Tx");
        total += 35;
    }
    printf("\n");
    for (i = 0; i < (size_t)total; i++) {
        putchar('-');
    }
    printf("\n");
}

/* bench_report_row prints one result row in the chosen format. */
void
bench_report_row(const bench_opts_t *o, const bench_row_t *r)
{
    int has_base = r->base_bw_gbs > 0;
    double ratio = has_base ? r->bw_gbs / r->base_bw_gbs : 0;
    int has_pp = r->pp_bw_gbs > 0;
    double pp_ratio = has_pp ? r->bw_gbs / r->pp_bw_gbs : 0;
    const char *mode = o->prepared ? "prepared" : "create";

    if (o->json) {
        printf("{\"op\":\"%s\",\"mode\":\"%s\",\"block_size\":%zu,"
               "\"batch_size\":%zu,\"bw_gbs\":%.4f,\"avg_lat_us\":%.3f,"
               "\"avg_prep_us\":%.3f,\"p99_prep_us\":%.3f,"
               "\"avg_post_us\":%.3f,\"p99_post_us\":%.3f,"
               "\"avg_tx_us\":%.3f,\"p99_tx_us\":%.3f,\"med_tx_us\":%.3f,",
               bench_op_name(r->op), mode, r->block, r->batch, r->bw_gbs,
               r->avg_lat_us, r->prep.avg_us, r->prep.p99_us, r->post.avg_us,
               r->post.p99_us, r->tx.avg_us, r->tx.p99_us, r->tx.med_us);
        if (o->storage) {
            if (r->fio_gbs > 0) {
                printf("\"fio_gbs\":%.4f,", r->fio_gbs);
            } else {
                printf("\"fio_gbs\":null,");
            }
        }
        if (r->agg_bw_gbs > 0) {
            printf("\"agg_bw_gbs\":%.4f,", r->agg_bw_gbs);
        }
        if (pp_cols(o) && has_pp) {
            printf("\"pp_bw_gbs\":%.4f,\"pp_ratio\":%.3f,"
                   "\"pp_med_tx_us\":%.3f,\"pp_p99_tx_us\":%.3f,",
                   r->pp_bw_gbs, pp_ratio, r->pp_tx.med_us, r->pp_tx.p99_us);
        } else if (pp_cols(o)) {
            printf("\"pp_bw_gbs\":null,\"pp_ratio\":null,"
                   "\"pp_med_tx_us\":null,\"pp_p99_tx_us\":null,");
        }
        if (has_base) {
            printf("\"base_bw_gbs\":%.4f,\"ratio\":%.3f}\n", r->base_bw_gbs,
                   ratio);
        } else {
            printf("\"base_bw_gbs\":null,\"ratio\":null}\n");
        }
        return;
    }
    if (o->csv) {
        printf("%s,%zu,%zu,%.4f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,",
               bench_op_name(r->op), r->block, r->batch, r->bw_gbs,
               r->avg_lat_us, r->prep.avg_us, r->prep.p99_us, r->post.avg_us,
               r->post.p99_us, r->tx.avg_us, r->tx.p99_us, r->tx.med_us);
        if (has_base) {
            printf("%.4f,%.3f,%s", r->base_bw_gbs, ratio, mode);
        } else {
            printf(",,%s", mode);
        }
        if (o->storage) {
            if (r->fio_gbs > 0) {
                printf(",%.4f", r->fio_gbs);
            } else {
                printf(",");
            }
        }
        if (o->etcd_endpoints != NULL) {
            if (r->agg_bw_gbs > 0) {
                printf(",%.4f", r->agg_bw_gbs);
            } else {
                printf(",");
            }
        }
        if (pp_cols(o) && has_pp) {
            printf(",%.4f,%.3f,%.3f,%.3f", r->pp_bw_gbs, pp_ratio,
                   r->pp_tx.med_us, r->pp_tx.p99_us);
        } else if (pp_cols(o)) {
            printf(",,,,");
        }
        printf("\n");
        return;
    }
    printf("%-*zu%-*zu%-*.3f%-*.3f%-*.3f%-*.3f%-*.3f%-*.3f%-*.3f%-*.3f"
           "%-*.3f",
           cols[0].width, r->block, cols[1].width, r->batch, cols[2].width,
           r->bw_gbs, cols[3].width, r->avg_lat_us, cols[4].width,
           r->prep.avg_us, cols[5].width, r->prep.p99_us, cols[6].width,
           r->post.avg_us, cols[7].width, r->post.p99_us, cols[8].width,
           r->tx.avg_us, cols[9].width, r->tx.p99_us, cols[10].width,
           r->tx.med_us);
    if (has_base) {
        printf("%-*.3f%-7.2f", cols[11].width, r->base_bw_gbs, ratio);
    } else {
        printf("%-*s%-7s", cols[11].width, "-", "-");
    }
    if (o->storage) {
        if (r->fio_gbs > 0) {
            printf("   %-10.3f", r->fio_gbs);
        } else {
            printf("   %-10s", "-");
        }
    }
    if (o->etcd_endpoints != NULL) {
        if (r->agg_bw_gbs > 0) {
            printf("   %-10.3f", r->agg_bw_gbs);
        } else {
            printf("   %-10s", "-");
        }
    }
    if (pp_cols(o) && has_pp) {
        printf("   %-10.3f%-10.2f%-12.3f", r->pp_bw_gbs, pp_ratio,
               r->pp_tx.med_us);
    } else if (pp_cols(o)) {
        printf("   %-10s%-10s%-12s", "-", "-", "-");
    }
    printf("\n");
}

/* bench_progress rewrites one status line on stderr when it is a
 * terminal, so long sweeps show what runs. */
void
bench_progress(const bench_opts_t *o, const char *fmt, ...)
{
    va_list ap;

    if (o->smoke || !isatty(STDERR_FILENO)) {
        return;
    }
    fputs("\r\033[K", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
}

/* bench_progress_done clears the status line. */
void
bench_progress_done(const bench_opts_t *o)
{
    if (o->smoke || !isatty(STDERR_FILENO)) {
        return;
    }
    fputs("\r\033[K", stderr);
    fflush(stderr);
}
