/*
 * storage.c - nxl-bench's storage mode (--backend POSIX): this process's
 * DRAM pool to and from files through the POSIX backend, and the
 * baselines on the same files.
 *
 * The files: --num_files files "nxl-bench-PID-I.dat" in --filepath, each
 * file_size bytes (the pool split evenly, whole multiples of the largest
 * block), opened with O_DIRECT under --storage_enable_direct, sized with
 * ftruncate and removed at the end. They form one "remote pool": remote
 * offset R is file R / file_size at offset R % file_size, so the sweep's
 * slices map to files exactly as they map to a peer's pool, and no block
 * straddles two files. Each file is registered as one FILE region
 * (addr = file offset 0, len = file_size, dev_id = fd; docs/backends/posix.md),
 * and transfers name this agent itself as the remote (loopback): READ is
 * file -> DRAM, WRITE is DRAM -> file.
 *
 * Consistency patterns are written and checked through a second, plain
 * (buffered) fd of each file; Linux keeps buffered and O_DIRECT access of
 * one file coherent (a direct read writes dirty cached pages back first,
 * a direct write drops the cached pages it covers).
 *
 * Baselines on the same files and blocks: Base B/W is pread/pwrite, one
 * thread, one block at a time, through the same fds (O_DIRECT included);
 * the fio column is fio's io_uring engine with the same block size,
 * depth (pipeline depth x batch per job, one job per thread), O_DIRECT
 * flag and byte count, run right after the row (`command -v fio`).
 *
 * Buffers: the pool is on transparent huge pages (bench_map_huge), and
 * fio's buffers are too: 2 MiB-aligned (--iomem_align) and, through
 * GLIBC_TUNABLES=glibc.malloc.hugetlb=1, marked MADV_HUGEPAGE by its
 * malloc. A direct transfer costs the disk a segment per physically
 * contiguous run of the buffer, and on a virtio disk that cost decides the
 * result: with 4 KiB pages fio's small buffer was often nearly
 * contiguous by chance and the large pool was not, so the column compared
 * memory layouts, not engines (docs/performance.md, "nxl-bench POSIX vs
 * fio: buffer memory").
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define STORAGE_BOUNCE (1 * MIB)

/* bench_storage_open creates and registers the files (pool_size bytes in
 * all, at most) and makes this agent the session's only peer. */
int
bench_storage_open(bench_session_t *s, size_t pool_size)
{
    const bench_opts_t *o = s->o;
    size_t unit = o->max_block > 4096 ? o->max_block : 4096;
    nxl_desc_t d[BENCH_MAX_FILES];
    nxl_dlist_t dl;
    struct stat st = {0};
    nxl_status_t rc;
    char a[32];
    char b[32];
    int i;

    for (i = 0; i < BENCH_MAX_FILES; i++) {
        s->fds[i] = -1;
        s->vfds[i] = -1;
    }
    errno = 0;
    if (stat(o->filepath, &st) != 0 || !S_ISDIR(st.st_mode)) {
        const char *why = "not a directory";

        if (!S_ISDIR(st.st_mode) && errno != 0 && st.st_mode == 0) {
            why = strerror(errno);
        }
        bench_err("--filepath %s: %s (give an existing directory on the "
                  "file system to measure)",
                  o->filepath, why);
        return -1;
    }
    s->file_size = pool_size / o->num_files / unit * unit;
    if (s->file_size == 0) {
        bench_err("--num_files %zu: a %s pool cannot give each file one %s "
                  "block; raise --total_buffer_size or lower --num_files",
                  o->num_files, bench_fmt_size(pool_size, a, sizeof(a)),
                  bench_fmt_size(unit, b, sizeof(b)));
        return -1;
    }
    for (i = 0; i < (int)o->num_files; i++) {
        int flags = O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC;

        snprintf(s->paths[i], sizeof(s->paths[i]), "%s/nxl-bench-%d-%d.dat",
                 o->filepath, (int)getpid(), i);
        s->fds[i] = open(s->paths[i], flags | (o->direct ? O_DIRECT : 0), 0644);
        if (s->fds[i] < 0 && o->direct && errno == EINVAL) {
            bench_err("--storage_enable_direct: the file system of %s does "
                      "not support O_DIRECT (tmpfs?): pick a directory on a "
                      "disk, or drop --storage_enable_direct",
                      o->filepath);
            unlink(s->paths[i]);
            s->paths[i][0] = '\0';
            return -1;
        }
        if (s->fds[i] < 0) {
            bench_err("cannot create %s: %s", s->paths[i], strerror(errno));
            s->paths[i][0] = '\0';
            return -1;
        }
        s->nfiles = i + 1;
        s->vfds[i] = open(s->paths[i], O_RDWR | O_CLOEXEC);
        if (s->vfds[i] < 0 || ftruncate(s->fds[i], (off_t)s->file_size) != 0) {
            bench_err("%s: %s", s->paths[i], strerror(errno));
            return -1;
        }
        d[i].addr = 0;
        d[i].len = s->file_size;
        d[i].dev_id = (uint64_t)s->fds[i];
    }
    dl.mem = NXL_FILE;
    dl.descs = d;
    dl.count = (size_t)s->nfiles;
    rc = nxl_mem_register(s->agent, &dl, NULL);
    if (rc != NXL_OK) {
        return bench_nxl_err(
            rc, "nxl_mem_register(%d files of %s in %s)", s->nfiles,
            bench_fmt_size(s->file_size, a, sizeof(a)), o->filepath);
    }
    s->files_registered = 1;
    s->rmem = NXL_FILE;
    s->rbase = 0;
    s->rsize = (size_t)s->nfiles * s->file_size;
    s->rpid = getpid();
    s->same_host = 1;
    snprintf(s->peer, sizeof(s->peer), "%s", nxl_agent_name(s->agent));
    memset(&s->peers[0], 0, sizeof(s->peers[0]));
    snprintf(s->peers[0].name, sizeof(s->peers[0].name), "%.127s", s->peer);
    s->peers[0].rsize = s->rsize;
    s->peers[0].rmem = NXL_FILE;
    s->peers[0].same_host = 1;
    s->peers[0].rank = -1;
    s->npeers = 1;
    return 0;
}

/* bench_storage_close deregisters, closes and removes the files. */
void
bench_storage_close(bench_session_t *s)
{
    int i;

    if (s->files_registered) {
        nxl_desc_t d[BENCH_MAX_FILES];
        nxl_dlist_t dl = {NXL_FILE, d, (size_t)s->nfiles};
        nxl_status_t rc;

        for (i = 0; i < s->nfiles; i++) {
            d[i] = (nxl_desc_t){0, s->file_size, (uint64_t)s->fds[i]};
        }
        rc = nxl_mem_deregister(s->agent, &dl, NULL);
        if (rc != NXL_OK) {
            bench_nxl_err(rc, "nxl_mem_deregister(files)");
        }
        s->files_registered = 0;
    }
    for (i = 0; i < s->nfiles; i++) {
        if (s->fds[i] >= 0) {
            close(s->fds[i]);
        }
        if (s->vfds[i] >= 0) {
            close(s->vfds[i]);
        }
        s->fds[i] = s->vfds[i] = -1;
        if (s->paths[i][0] != '\0') {
            unlink(s->paths[i]);
            s->paths[i][0] = '\0';
        }
    }
    s->nfiles = 0;
}

/* file_of maps remote offset roff (len bytes) to a file and its offset.
 * Returns the file index, or -1 when the range leaves the files or
 * straddles two. */
static int
file_of(const bench_session_t *s, size_t roff, size_t len, size_t *foff)
{
    size_t f;

    if (s->file_size == 0 || len > s->file_size) {
        return -1;
    }
    f = roff / s->file_size;
    *foff = roff % s->file_size;
    if (f >= (size_t)s->nfiles || *foff + len > s->file_size) {
        return -1;
    }
    return (int)f;
}

/* bench_storage_desc fills d with the FILE descriptor of remote range
 * [roff, roff+len). Returns 0, or -1 (printed) when it straddles files. */
int
bench_storage_desc(const bench_session_t *s, size_t roff, size_t len,
                   nxl_desc_t *d)
{
    size_t foff;
    int f = file_of(s, roff, len, &foff);

    if (f < 0) {
        bench_err("a %zu-byte block at offset %zu crosses the end of a "
                  "%zu-byte file: use block sizes that divide "
                  "--max_block_size",
                  len, roff, s->file_size);
        return -1;
    }
    d->addr = foff;
    d->len = len;
    d->dev_id = (uint64_t)s->fds[f];
    return 0;
}

/* io_full runs pread or pwrite until len bytes moved. Returns 0 or -1
 * with errno (0 for the end of the file). */
static int
io_full(int fd, int write, uint8_t *p, size_t len, size_t off)
{
    while (len > 0) {
        ssize_t n = write ? pwrite(fd, p, len, (off_t)off)
                          : pread(fd, p, len, (off_t)off);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            if (n == 0) {
                errno = 0;
            }
            return -1;
        }
        p += n;
        off += (size_t)n;
        len -= (size_t)n;
    }
    return 0;
}

/* each_piece calls fn for every piece of ranges (remote offset, length)
 * cut at file ends and at STORAGE_BOUNCE bytes. */
static int
each_piece(bench_session_t *s, const size_t *ranges, size_t n,
           int (*fn)(bench_session_t *s, int f, size_t foff, size_t roff,
                     size_t len, void *arg),
           void *arg)
{
    size_t i;

    for (i = 0; i < n; i++) {
        size_t roff = ranges[2 * i];
        size_t left = ranges[2 * i + 1];

        while (left > 0) {
            size_t foff = roff % s->file_size;
            size_t len = s->file_size - foff;
            size_t f = roff / s->file_size;
            int rc;

            if (len > left) {
                len = left;
            }
            if (len > STORAGE_BOUNCE) {
                len = STORAGE_BOUNCE;
            }
            if (f >= (size_t)s->nfiles) {
                bench_err("range at %zu is past the files", roff);
                return -1;
            }
            rc = fn(s, (int)f, foff, roff, len, arg);
            if (rc != 0) {
                return rc;
            }
            roff += len;
            left -= len;
        }
    }
    return 0;
}

/* piece_ctx_t carries the pattern key and bounce buffer of a fill or
 * verify. */
typedef struct piece_ctx {
    uint64_t key;
    uint8_t *buf;
} piece_ctx_t;

/* fill_piece writes one piece of the pattern through the plain fd. */
static int
fill_piece(bench_session_t *s, int f, size_t foff, size_t roff, size_t len,
           void *arg)
{
    piece_ctx_t *c = arg;

    bench_pattern_fill(c->buf, roff, len, c->key);
    if (io_full(s->vfds[f], 1, c->buf, len, foff) != 0) {
        bench_err("pwrite %s: %s", s->paths[f], strerror(errno));
        return -1;
    }
    return 0;
}

/* verify_piece reads one piece through the plain fd and checks it. */
static int
verify_piece(bench_session_t *s, int f, size_t foff, size_t roff, size_t len,
             void *arg)
{
    piece_ctx_t *c = arg;
    size_t bad;

    if (io_full(s->vfds[f], 0, c->buf, len, foff) != 0) {
        bench_err("pread %s: %s", s->paths[f],
                  errno != 0 ? strerror(errno) : "end of file");
        return -1;
    }
    bad = bench_pattern_check(c->buf, roff, len, c->key);
    if (bad != SIZE_MAX) {
        bench_err("consistency: file %s holds wrong data at offset %zu "
                  "after WRITE",
                  s->paths[f], foff + (bad - roff));
        return 1;
    }
    return 0;
}

/* bench_storage_fill writes pattern key into the files' ranges. */
int
bench_storage_fill(bench_session_t *s, uint64_t key, const size_t *ranges,
                   size_t n)
{
    piece_ctx_t c = {key, bench_map(STORAGE_BOUNCE)};
    int rc;

    if (c.buf == NULL) {
        bench_err("out of memory");
        return -1;
    }
    rc = each_piece(s, ranges, n, fill_piece, &c);
    bench_unmap(c.buf, STORAGE_BOUNCE);
    return rc;
}

/* bench_storage_verify checks pattern key in the files' ranges: 0 right,
 * 1 wrong (printed, counted), -1 error. */
int
bench_storage_verify(bench_session_t *s, uint64_t key, const size_t *ranges,
                     size_t n)
{
    piece_ctx_t c = {key, bench_map(STORAGE_BOUNCE)};
    int rc;

    if (c.buf == NULL) {
        bench_err("out of memory");
        return -1;
    }
    rc = each_piece(s, ranges, n, verify_piece, &c);
    bench_unmap(c.buf, STORAGE_BOUNCE);
    if (rc == 1) {
        s->failures++;
    }
    return rc;
}

/* bench_storage_base moves n blocks with pread (READ) or pwrite (WRITE):
 * local liov[i] <-> remote offset roff[i], one at a time, through the
 * registered fds. Returns 0 or -1 (printed). */
int
bench_storage_base(bench_session_t *s, nxl_op_t op, const struct iovec *liov,
                   const size_t *roff, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        size_t foff = 0;
        int f = file_of(s, roff[i], liov[i].iov_len, &foff);

        if (f < 0 || io_full(s->fds[f], op == NXL_WRITE, liov[i].iov_base,
                             liov[i].iov_len, foff) != 0) {
            bench_err("baseline: %s %s at %zu: %s",
                      op == NXL_WRITE ? "pwrite" : "pread",
                      f >= 0 ? s->paths[f] : "?", foff,
                      f < 0        ? "outside the files"
                      : errno != 0 ? strerror(errno)
                                   : "end of file");
            return -1;
        }
    }
    return 0;
}

/* fio_filenames joins the file paths with ':' (fio's separator), escaping
 * any ':' in them. Returns 0, or -1 when they do not fit. */
static int
fio_filenames(const bench_session_t *s, char *buf, size_t cap)
{
    size_t used = 0;
    int i;

    for (i = 0; i < s->nfiles; i++) {
        const char *p;

        if (i > 0) {
            if (used + 1 >= cap) {
                return -1;
            }
            buf[used++] = ':';
        }
        for (p = s->paths[i]; *p != '\0'; p++) {
            if (used + 2 >= cap) {
                return -1;
            }
            if (*p == ':') {
                buf[used++] = '\\';
            }
            buf[used++] = *p;
        }
    }
    buf[used] = '\0';
    return 0;
}

/* fio_bw reads jobs[0].<read|write>.bw_bytes from fio's JSON in out
 * (which may start with warnings). Returns bytes/s, or -1 (why set). */
static double
fio_bw(const char *out, nxl_op_t op, char *why, size_t whycap)
{
    const char *start = strstr(out, "\"fio version\"");
    json_tokener *tok;
    json_object *root = NULL;
    json_object *jobs;
    json_object *job;
    json_object *dir;
    json_object *bw;
    double v = -1;

    while (start != NULL && start > out && *start != '{') {
        start--;
    }
    if (start == NULL || *start != '{') {
        char last[200];

        bench_last_line(out, last, sizeof(last));
        snprintf(why, whycap, "fio printed no JSON report (%s)", last);
        return -1;
    }
    tok = json_tokener_new();
    if (tok != NULL) {
        root = json_tokener_parse_ex(tok, start, (int)strlen(start));
        json_tokener_free(tok);
    }
    if (root == NULL || !json_object_object_get_ex(root, "jobs", &jobs) ||
        !json_object_is_type(jobs, json_type_array) ||
        json_object_array_length(jobs) < 1 ||
        (job = json_object_array_get_idx(jobs, 0)) == NULL ||
        !json_object_object_get_ex(job, op == NXL_READ ? "read" : "write",
                                   &dir) ||
        !json_object_object_get_ex(dir, "bw_bytes", &bw) ||
        !(json_object_is_type(bw, json_type_int) ||
          json_object_is_type(bw, json_type_double))) {
        snprintf(why, whycap, "fio's JSON report has no jobs[0].%s.bw_bytes",
                 op == NXL_READ ? "read" : "write");
    } else {
        v = json_object_get_double(bw);
        if (v <= 0) {
            snprintf(why, whycap, "fio reported %.0f bytes/s", v);
            v = -1;
        }
    }
    json_object_put(root);
    return v;
}

/* fio_child_env puts the glibc tunable that makes fio's malloc ask for
 * transparent huge pages (tunables, the GLIBC_TUNABLES value to set) into
 * fio's environment; runs in the child between fork and exec
 * (bench_spawn), as perftest.c's does. */
static void
fio_child_env(const void *tunables)
{
    setenv("GLIBC_TUNABLES", tunables, 1);
}

/* bench_fio_row runs fio's io_uring engine on the session's files: op,
 * block-byte I/Os, iodepth depth per job, threads jobs of bytes each,
 * O_DIRECT as the session. Returns GB/s, or -1 with the reason in why. */
double
bench_fio_row(bench_session_t *s, nxl_op_t op, size_t block, size_t depth,
              size_t threads, size_t bytes, char *why, size_t whycap)
{
    const bench_opts_t *o = s->o;
    char files[BENCH_MAX_FILES * 520];
    char a_name[] = "--name=nxl-bench";
    char a_files[sizeof(files) + 16];
    char a_rw[16];
    char a_bs[48];
    char a_depth[48];
    char a_direct[16];
    char a_size[64];
    char a_io[64];
    char a_jobs[48];
    char a_engine[] = "--ioengine=io_uring";
    char a_group[] = "--group_reporting";
    char a_out[] = "--output-format=json";
    char a_inval[] = "--invalidate=0";
    char a_create[] = "--allow_file_create=0";
    char a_align[] = "--iomem_align=2M"; /* whole huge pages, see above */
    char tunables[512];
    const char *old = getenv("GLIBC_TUNABLES");
    char *argv[20];
    char *out;
    size_t cap = 256 * KIB;
    int argc = 0;
    int st;
    int n;
    double bw;

    if (fio_filenames(s, files, sizeof(files)) != 0) {
        snprintf(why, whycap, "file names too long for fio");
        return -1;
    }
    out = malloc(cap);
    if (out == NULL) {
        snprintf(why, whycap, "out of memory");
        return -1;
    }
    snprintf(a_files, sizeof(a_files), "--filename=%s", files);
    snprintf(a_rw, sizeof(a_rw), "--rw=%s", op == NXL_READ ? "read" : "write");
    snprintf(a_bs, sizeof(a_bs), "--bs=%zu", block);
    snprintf(a_depth, sizeof(a_depth), "--iodepth=%zu", depth);
    snprintf(a_direct, sizeof(a_direct), "--direct=%d", o->direct ? 1 : 0);
    snprintf(a_size, sizeof(a_size), "--size=%zu",
             (size_t)s->nfiles * s->file_size);
    snprintf(a_io, sizeof(a_io), "--io_size=%zu", bytes);
    snprintf(a_jobs, sizeof(a_jobs), "--numjobs=%zu", threads);
    argv[argc++] = "fio";
    argv[argc++] = a_name;
    argv[argc++] = a_files;
    argv[argc++] = a_rw;
    argv[argc++] = a_bs;
    argv[argc++] = a_depth;
    argv[argc++] = a_engine;
    argv[argc++] = a_direct;
    argv[argc++] = a_size;
    argv[argc++] = a_io;
    argv[argc++] = a_jobs;
    argv[argc++] = a_group;
    argv[argc++] = a_inval;
    argv[argc++] = a_create;
    argv[argc++] = a_align;
    argv[argc++] = a_out;
    argv[argc] = NULL;
    n = snprintf(tunables, sizeof(tunables), "%s%sglibc.malloc.hugetlb=1",
                 old != NULL ? old : "",
                 old != NULL && old[0] != '\0' ? ":" : "");
    if (n < 0 || (size_t)n >= sizeof(tunables)) {
        /* the caller's own tunables are too long to extend: keep them */
        snprintf(tunables, sizeof(tunables), "%s", old);
    }
    st = bench_run_capture(s->fio, argv, fio_child_env, tunables, out, cap,
                           bench_now_ns() +
                               (uint64_t)o->timeout_s * 1000000000ull);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char last[200];

        bench_last_line(out, last, sizeof(last));
        snprintf(why, whycap, "fio %s (%s)",
                 st == -1 ? "did not finish within --timeout" : "failed", last);
        free(out);
        return -1;
    }
    bw = fio_bw(out, op, why, whycap);
    free(out);
    return bw < 0 ? -1 : bw / 1e9;
}
