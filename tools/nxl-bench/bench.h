/*
 * bench.h - nxl-bench internals shared by its source files.
 *
 * nxl-bench is a nixlbench-compatible benchmark that uses only the public
 * API of include/nxl/nxl.h. One process is the initiator (it posts READ and
 * WRITE requests), the other is the passive target (it owns the remote
 * pool). Without a peer address the initiator forks and executes itself as
 * the target on 127.0.0.1. The two talk through the metadata side channel
 * (nxl_md_fetch / nxl_md_send) and short text notifications whose messages
 * start with "NXLB " (see session.c for the protocol).
 *
 * Other modes: --etcd_endpoints (group.c, etcd.c): N processes on any
 * hosts take ranks through etcd, pair up by --scheme and exchange metadata
 * through the library's etcd store; --backend POSIX (storage.c): this
 * process's DRAM to and from files, no peer; VRAM pools (vram.c) through
 * the device memory kind, or a host-memory stand-in without a GPU.
 */
#ifndef NXL_BENCH_H
#define NXL_BENCH_H

#include <nxl/nxl.h>
#include <nxl/nxl_memkind.h>

#include "huge_map.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define BENCH_MAX_PARAMS 32
#define BENCH_MAX_THREADS 64
#define BENCH_MAX_PEERS 64 /* targets of one initiator, and back */
#define BENCH_MAX_FILES 64 /* --num_files */
#define BENCH_MAX_DEVS 16  /* --device_list entries */
#define BENCH_TARGET_NAME "nxl-bench-target"
#define BENCH_INITIATOR_NAME "nxl-bench-initiator"
#define BENCH_MSG_MAX 4096

/* --spin_us auto (the default until check_opts): 0 for TCP, else 50 */
#define BENCH_SPIN_AUTO (-2L)
#define KIB ((size_t)1024)
#define MIB ((size_t)1024 * 1024)
#define GIB ((size_t)1024 * 1024 * 1024)

/* --scheme: who moves data to whom in an etcd group. */
typedef enum bench_scheme {
    BENCH_PAIRWISE = 0,  /* rank 2k -> rank 2k+1 */
    BENCH_MANYTOONE = 1, /* every rank -> rank 0 */
    BENCH_ONETOMANY = 2  /* rank 0 -> every rank */
} bench_scheme_t;

/* bench_opts_t holds every command-line setting. */
typedef struct bench_opts {
    const char *backend;
    nxl_op_t ops[2];
    size_t num_ops;
    nxl_mem_t initiator_seg;
    nxl_mem_t target_seg;
    size_t start_block;
    size_t max_block;
    size_t start_batch;
    size_t max_batch;
    size_t block_factor; /* sweep step (2 = doubling; --smoke uses 4) */
    size_t num_iter;
    size_t warmup_iter;
    size_t large_blk_iter_ftr;
    int num_iter_set; /* --num_iter given explicitly */
    size_t num_threads;
    size_t base_threads; /* baseline threads; 0 = num_threads */
    size_t pipeline_depth;
    int check_consistency;
    size_t total_buffer_size; /* bytes per side; 0 = automatic */
    int shared;
    int json;
    int csv;
    int smoke;
    int prepared;
    int hot;         /* every request reuses its first slice */
    int desc_contig; /* --desc_bench: contiguous remote blocks */
    int no_pretouch; /* skip the untimed whole-pool pass */
    int base_memcpy; /* shared baseline: plain memcpy, not NT */
    long spin_us;    /* spin on status before sleeping in wait
                      * (BENCH_SPIN_AUTO until check_opts) */
    const char *target_host;
    uint16_t port;
    const char *listen;       /* [ADDR:]PORT, target side */
    int report_fd;            /* target: write "NXLB-PORT n" here */
    const char *params_arg;   /* --backend_params as given */
    const char *ucx_err_mode; /* --ucx_err_mode: UCX err_mode param */
    char *params_buf;         /* owned, tokenized copy of it */
    nxl_param_t params[BENCH_MAX_PARAMS];
    size_t num_params;
    size_t desc_bench; /* N descriptors; 0 = off */
    int lat_bench;
    int timeout_s;        /* handshakes, notifications, one transfer */
    const char *self_exe; /* for re-executing as the target */
    /* etcd rendezvous (group.c) */
    const char *etcd_endpoints; /* URL[,URL]; NULL = no etcd */
    const char *group;          /* --benchmark_group */
    bench_scheme_t scheme;
    size_t world_size; /* processes in the group */
    /* storage (storage.c): --backend POSIX */
    int storage;          /* the backend moves DRAM <-> FILE locally */
    const char *filepath; /* directory of the files */
    size_t num_files;
    int direct;         /* --storage_enable_direct: O_DIRECT */
    int target_seg_set; /* --target_seg_type given */
    /* VRAM (vram.c) */
    const char *vram_device;     /* auto | cuda | fake */
    const char *device_list;     /* as given; NULL = all */
    int dev_ids[BENCH_MAX_DEVS]; /* numeric --device_list: VRAM ordinals */
    size_t num_dev_ids;
    int ucx_devices; /* --device_list names UCX network devices */
    /* behaviour */
    int enable_pt;         /* agent progress thread */
    long progress_threads; /* backend thread-count param; 0 = default */
    const char *pt_key;    /* that param's key in the backend */
    int recreate_xfer;     /* create + release a transfer per request */
    int reregister_mem;    /* register + deregister per request */
    int rank;              /* this process's rank (local target: 1) */
} bench_opts_t;

/* bench_peer_t is one peer of a session: a target (on an initiator) or an
 * initiator (on a target). */
typedef struct bench_peer {
    char name[128];
    uint64_t rbase; /* its pool's address (FILE: 0) */
    size_t rsize;
    pid_t rpid;
    int rshared;
    nxl_mem_t rmem; /* its pool's memory kind */
    uint64_t rdev;  /* its pool's dev_id */
    int same_host;
    int done; /* target side: it said "done" */
    int rank; /* etcd rank, -1 otherwise */
} bench_peer_t;

struct bench_group;
struct bench_pp_server;

/* bench_session_t is one side's state: agent, backend, pool, peer. */
typedef struct bench_session {
    const bench_opts_t *o;
    nxl_agent_t *agent;
    nxl_backend_t *be;
    char peer[256]; /* the other agent's name */
    uint8_t *pool;  /* local pool, registered */
    size_t pool_size;
    size_t span;     /* usable: min(local, remote pool size) */
    int pool_shared; /* from nxl_mem_alloc_shared */
    int registered;
    /* initiator only: the target's pool and where it runs */
    uint64_t rbase;
    size_t rsize;
    pid_t rpid; /* target's pid (on the target: initiator's) */
    int rshared;
    int same_host;
    int base_ok;              /* a baseline can be measured */
    const char *base_name;    /* "process_vm_readv/writev", "nt-memcpy" */
    uint8_t *base_pool;       /* shared mode: the second local pool */
    int base_perftest;        /* UCX: sweep rows' baseline is ucx_perftest */
    char perftest[256];       /* its path */
    char perftest_lanes[256]; /* UCX lanes it reported (first row) */
    int perftest_warned;      /* a failure reason was printed */
    int base_iperf;           /* TCP: sweep rows' baseline is iperf3 */
    char iperf[256];          /* its path */
    char rhost[64];           /* initiator: the target's address */
    unsigned iperf_port;      /* the target's iperf3 server, 0 = none */
    double iperf_gbs;         /* the current op's iperf3 figure, < 0: none */
    pid_t iperf_pid;          /* target: that server */
    unsigned pp_port;         /* the target's raw TCP ping-pong server,
                               * 0 = none (iperf.c) */
    int pp_fd;                /* initiator: its connection, -1 = none */
    int base_pp;              /* TCP: small rows and --lat_bench get a
                               * raw ping-pong baseline */
    int pp_warned;            /* a ping-pong failure was printed */
    struct bench_pp_server *pp_srv; /* target: that server */
    uint8_t *evict;                 /* cache eviction buffer */
    size_t evict_size;
    pid_t child; /* local mode: the target process */
    /* received notifications not yet consumed */
    struct bench_msg {
        char *from;
        char *msg;
    } queue[16];
    size_t queue_len;
    int failures;  /* consistency failures seen */
    int peer_gone; /* a send found the peer dead: stop talking */
    /* every peer (peers[0] mirrors peer, rbase, rsize, rpid above) */
    bench_peer_t peers[BENCH_MAX_PEERS];
    size_t npeers;
    struct bench_group *grp; /* etcd group, NULL without etcd */
    /* target of several initiators (--scheme manytoone): peers[j] owns
     * the pool's slice [j * slice_size, (j+1) * slice_size); slice_off is
     * the slice of the message being answered, peer its sender */
    int multi;
    size_t slice_off;
    size_t slice_size; /* 0: the whole pool */
    size_t cur;        /* initiator: peers[cur] is peer, rbase, ... */
    size_t lstride;    /* onetomany: local region size per target,
                        * target j's at j * lstride; 0 otherwise */
    size_t lbase;      /* the current peer's: cur * lstride */
    /* local pool kind and remote descriptors' kind */
    nxl_mem_t lmem;
    uint64_t ldev;
    nxl_mem_t rmem;
    const nxl_memkind_ops_t *dk; /* device kind of VRAM pools, or NULL */
    int dev_fake;                /* dk is nxl-bench's host-memory stand-in */
    uint8_t *stage;              /* host staging buffer for VRAM patterns */
    size_t stage_size;
    int base_dev;       /* baseline: device-kind copy (VRAM pools) */
    nxl_mem_t base_mem; /* base_pool's kind (DRAM or VRAM) */
    /* storage */
    int nfiles;
    int fds[BENCH_MAX_FILES];  /* the registered fds (O_DIRECT maybe) */
    int vfds[BENCH_MAX_FILES]; /* plain fds: fill, verify */
    char paths[BENCH_MAX_FILES][512];
    size_t file_size;
    int files_registered;
    int base_fio; /* rows carry a fio column */
    char fio[256];
    int fio_warned;
    /* consistency accounting */
    uint64_t checked_bytes;
    size_t checked_rows;
    size_t checked_ops[2]; /* rows verified per op */
    int mono_real_set;
    int64_t mono_to_real; /* CLOCK_REALTIME - CLOCK_MONOTONIC, ns */
} bench_session_t;

/* --- nxl-bench.c: diagnostics ------------------------------------------- */

/* bench_err prints "nxl-bench: message" to stderr. */
void bench_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* bench_nxl_err prints "nxl-bench: what: strerror(st) (NAME): last_error"
 * and returns -1. */
int bench_nxl_err(nxl_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* bench_now_ns returns CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);

/* bench_fmt_size writes a human size ("4 KiB", "64 MiB") into buf. */
const char *bench_fmt_size(size_t n, char *buf, size_t cap);

/* --- session.c: agents, pools, the notification protocol ----------------- */

/* bench_run_target runs the target side until the initiator says "done",
 * disappears or goes quiet. Returns the process exit code. */
int bench_run_target(const bench_opts_t *o);

/* bench_session_open sets up the initiator: starts the local target when
 * there is no --target_host, creates the agent, backend and pool, exchanges
 * metadata and region info. Returns 0 or -1 (message printed). */
int bench_session_open(bench_session_t *s, const bench_opts_t *o,
                       struct bench_group *grp);

/* bench_run_group_target runs a target rank of an etcd group until its
 * initiator says "done". Returns the process exit code. */
int bench_run_group_target(const bench_opts_t *o, struct bench_group *g);

/* bench_pool_reregister deregisters and registers the local pool again
 * (--reregister_mem). Returns 0 or -1 (printed). */
int bench_pool_reregister(bench_session_t *s);

/* bench_session_close says "done" to the target, frees everything and
 * reaps the local target. Returns 0, or -1 when the target failed. */
int bench_session_close(bench_session_t *s);

/* bench_peer_use makes peers[j] the session's current peer (peer, rbase,
 * rsize, rpid): the one notifications, fills and verifies go to. An
 * initiator of --scheme onetomany has one peer per target. */
void bench_peer_use(bench_session_t *s, size_t j);

/* bench_send formats a notification and sends it to the peer. */
int bench_send(bench_session_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* bench_pool_default returns the pool size per side for o. */
size_t bench_pool_default(const bench_opts_t *o);

/* bench_recv waits up to timeout_ms for a message from the peer starting
 * with prefix and copies it into buf. Returns 0, or -1 on timeout/error. */
int bench_recv(bench_session_t *s, const char *prefix, char *buf, size_t cap,
               int timeout_ms);

/* bench_remote_fill asks the target to write pattern key into the ranges
 * (pairs of offset, length) and waits for its answer. */
int bench_remote_fill(bench_session_t *s, uint64_t key, const size_t *ranges,
                      size_t nranges);

/* bench_remote_verify asks the target to check pattern key in the ranges.
 * Returns 0 when they hold it, 1 on a mismatch (reported), -1 on error. */
int bench_remote_verify(bench_session_t *s, uint64_t key, const size_t *ranges,
                        size_t nranges);

/* --- baseline.c: memory helpers and baselines ---------------------------- */

/* bench_map allocates size bytes of private, prefaulted, page-aligned
 * memory, or NULL. Free with bench_unmap. */
uint8_t *bench_map(size_t size);
/* bench_map_huge (huge_map.h, tools/common, shared with
 * bench/posix/nxl_posix_bench.c) is bench_map backed by transparent huge
 * pages where the kernel allows: the storage pool, which the device reads
 * and writes directly. */
void bench_unmap(uint8_t *p, size_t size);

/* bench_llc_size returns the last-level cache size in bytes. */
size_t bench_llc_size(void);

/* bench_evict reads the eviction buffer so that pools are cold again. */
void bench_evict(bench_session_t *s);

/* bench_pattern_fill writes the bytes of pattern key for pattern offsets
 * [poff, poff+len) into p[0, len). The pattern depends on the offset, so
 * a block moved to another offset is detected. */
void bench_pattern_fill(uint8_t *p, size_t poff, size_t len, uint64_t key);

/* bench_pattern_check returns the first pattern offset in [poff, poff+len)
 * whose byte in p is wrong, or SIZE_MAX when all are right. */
size_t bench_pattern_check(const uint8_t *p, size_t poff, size_t len,
                           uint64_t key);

/* bench_copy_nt copies n bytes with SSE2 streaming (non-temporal) stores. */
void bench_copy_nt(void *dst, const void *src, size_t n);

/* bench_base_iov moves n blocks the baseline way: local liov[i] <->
 * remote pool offset roff[i] (same length) with process_vm_readv/writev in
 * IOV_MAX chunks (riov is scratch of n entries), or in shared mode with an
 * NT memcpy against the second local pool. Returns 0 or -1 (printed). */
int bench_base_iov(bench_session_t *s, nxl_op_t op, const struct iovec *liov,
                   struct iovec *riov, const size_t *roff, size_t n);

/* bench_base_probe checks that process_vm_readv reaches the target. */
int bench_base_probe(bench_session_t *s);

/* --- child.c: external baseline programs ------------------------------- */

/* bench_find_exe finds program name in $PATH (its path into buf): 0, or
 * -1 when it is not installed. */
int bench_find_exe(const char *name, char *buf, size_t cap);

/* bench_free_port asks the kernel for a TCP port free now on IPv4
 * address addr (NULL or "": 127.0.0.1); 0 when there is none. */
unsigned bench_free_port(const char *addr);

/* bench_spawn starts exe with argv in a child that dies with us; its
 * stdout and stderr go to out_fd (or /dev/null when -1); child_env (may
 * be NULL) runs in the child before exec. Returns the pid or -1. */
pid_t bench_spawn(const char *exe, char *const argv[], int out_fd,
                  void (*child_env)(const void *arg), const void *arg);

/* bench_reap waits for pid until deadline (ns, bench_now_ns), then kills
 * it. Returns its wait status, or -1 when it had to be killed. */
int bench_reap(pid_t pid, uint64_t deadline);

/* bench_run_capture runs exe to its end or deadline, keeping the tail of
 * its output (NUL-terminated) in out. Returns its wait status or -1
 * (killed at the deadline, or it could not start). */
int bench_run_capture(const char *exe, char *const argv[],
                      void (*child_env)(const void *arg), const void *arg,
                      char *out, size_t cap, uint64_t deadline);

/* bench_last_line copies the last non-empty line of out into buf. */
void bench_last_line(const char *out, char *buf, size_t cap);

/* --- iperf.c: the TCP baselines: iperf3 and a raw ping-pong ------------- */

/* Rows up to this block size (batch 1) get the raw ping-pong baseline. */
#define BENCH_PP_MAX_BLOCK (64 * KIB)

/* bench_pp_server_start starts the raw TCP ping-pong server thread on addr
 * (NULL/"": all addresses) at a port the kernel picks; it serves one
 * connection at a time from and into a private buffer of pool_size bytes
 * (allocated at the first request). Returns the port, or 0 (reason
 * printed) with *srv_p NULL. */
unsigned bench_pp_server_start(const char *addr, size_t pool_size,
                               struct bench_pp_server **srv_p);

/* bench_pp_server_stop stops and joins the server and frees it. Accepts
 * NULL. */
void bench_pp_server_stop(struct bench_pp_server *srv);

/* bench_pp_connect opens s->pp_fd to the target's ping-pong server
 * (s->rhost, s->pp_port) with TCP_NODELAY, blocking, and send/receive
 * timeouts of --timeout. Returns 0, or -1 with the reason in why. */
int bench_pp_connect(bench_session_t *s, char *why, size_t whycap);

/* bench_pp_close closes s->pp_fd (if open). */
void bench_pp_close(bench_session_t *s);

/* bench_pp_post sends one request: READ asks for len bytes of the
 * server's buffer at off; WRITE carries len bytes of the local pool at
 * off. Blocking. Returns 0, or -1 with the reason in why. */
int bench_pp_post(bench_session_t *s, nxl_op_t op, size_t off, size_t len,
                  char *why, size_t whycap);

/* bench_pp_done receives the reply to the oldest request: READ's len
 * bytes into the local pool at off, WRITE's 8-byte ack. Blocking.
 * Returns 0, or -1 with the reason in why. */
int bench_pp_done(bench_session_t *s, nxl_op_t op, size_t off, size_t len,
                  char *why, size_t whycap);

/* bench_iperf_server starts "iperf3 -s" on addr (NULL/"": all addresses)
 * at a free port for the target's lifetime (it dies with the target).
 * Returns the port, or 0 when iperf3 is missing or did not start. */
unsigned bench_iperf_server(const char *addr, pid_t *pid_p);

/* bench_iperf_row runs one iperf3 single-stream client against the
 * target's server (s->rhost, s->iperf_port) for 2 s, in the op's
 * direction (READ: the target sends, iperf3 -R; WRITE: we send), bounded
 * by --timeout. Returns the receiver's rate in GB/s, or -1 with the reason
 * in why. */
double bench_iperf_row(const bench_session_t *s, nxl_op_t op, char *why,
                       size_t whycap);

/* --- perftest.c: the ucx_perftest baseline (--backend UCX) ------------ */

/* bench_perftest_row runs a ucx_perftest server and client on this host
 * (ucp_put_bw for WRITE, ucp_get for READ; block-byte messages, iters
 * timed and warm warmup ones), bounded by --timeout. Returns its overall
 * bandwidth in GB/s, or -1 with the reason in why. The first lane
 * description UCX prints goes to lanes when lanes is empty. */
double bench_perftest_row(const bench_session_t *s, nxl_op_t op, size_t block,
                          size_t iters, size_t warm, char *why, size_t whycap,
                          char *lanes, size_t lanecap);

/* bench_rdesc fills d with the descriptor of the peer's pool range
 * [roff, roff+len): an address in its pool, or a file and offset in
 * storage mode. Returns 0, or -1 (printed). */
int bench_rdesc(const bench_session_t *s, size_t roff, size_t len,
                nxl_desc_t *d);

/* bench_ldesc fills d with the descriptor of local pool range
 * [loff, loff+len). */
void bench_ldesc(const bench_session_t *s, size_t loff, size_t len,
                 nxl_desc_t *d);

/* --- storage.c: --backend POSIX, DRAM <-> files ------------------------ */

/* bench_storage_open creates --num_files files in --filepath (pool_size
 * bytes in all, at most), registers them as FILE regions and makes this
 * agent the session's only peer. Returns 0 or -1 (printed). */
int bench_storage_open(bench_session_t *s, size_t pool_size);

/* bench_storage_close deregisters, closes and removes the files. */
void bench_storage_close(bench_session_t *s);

/* bench_storage_desc fills d with the FILE descriptor of remote range
 * [roff, roff+len). Returns 0, or -1 (printed) when it straddles files. */
int bench_storage_desc(const bench_session_t *s, size_t roff, size_t len,
                       nxl_desc_t *d);

/* bench_storage_fill writes pattern key into the files' ranges. */
int bench_storage_fill(bench_session_t *s, uint64_t key, const size_t *ranges,
                       size_t n);

/* bench_storage_verify checks pattern key in the files' ranges: 0 right,
 * 1 wrong (printed, counted), -1 error. */
int bench_storage_verify(bench_session_t *s, uint64_t key, const size_t *ranges,
                         size_t n);

/* bench_storage_base moves n blocks with pread/pwrite through the
 * registered fds. Returns 0 or -1 (printed). */
int bench_storage_base(bench_session_t *s, nxl_op_t op,
                       const struct iovec *liov, const size_t *roff, size_t n);

/* bench_fio_row runs fio's io_uring engine on the session's files.
 * Returns GB/s, or -1 with the reason in why. */
double bench_fio_row(bench_session_t *s, nxl_op_t op, size_t block,
                     size_t depth, size_t threads, size_t bytes, char *why,
                     size_t whycap);

/* --- vram.c: VRAM pools ------------------------------------------------- */

/* bench_vram_setup picks the device kind for VRAM pools (before any agent
 * exists). Returns 0 or -1 (printed). */
int bench_vram_setup(const bench_opts_t *o, int quiet,
                     const nxl_memkind_ops_t **dk_p, int *fake_p);

/* bench_vram_describe writes which device kind runs VRAM pools. */
const char *bench_vram_describe(const bench_session_t *s, char *buf,
                                size_t cap);

/* bench_pool_fill writes pattern key (pattern offsets [poff, poff+len))
 * into the local pool at loff, DRAM or VRAM. Returns 0 or -1. */
int bench_pool_fill(bench_session_t *s, size_t loff, size_t poff, size_t len,
                    uint64_t key);

/* bench_pool_check compares the local pool at loff with pattern key:
 * *bad_p = the first wrong pattern offset or SIZE_MAX. Returns 0 or -1. */
int bench_pool_check(bench_session_t *s, size_t loff, size_t poff, size_t len,
                     uint64_t key, size_t *bad_p);

/* bench_copy_dir returns the copy direction from kind src to kind dst. */
nxl_copy_dir_t bench_copy_dir(nxl_mem_t src, nxl_mem_t dst);

/* --- sweep.c: measurements ----------------------------------------------- */

/* bench_pretouch moves the whole pool once each way, untimed, so that
 * first-use costs (mapping a peer's shared region) are paid up front. */
int bench_pretouch(bench_session_t *s);

/* bench_sweep runs the nixlbench table for every op. Returns 0 or -1. */
int bench_sweep(bench_session_t *s);

/* bench_lat runs the 4 KiB post->completion latency benchmark. */
int bench_lat(bench_session_t *s);

/* bench_desc runs the --desc_bench (vLLM KV pull) benchmark. */
int bench_desc(bench_session_t *s);

/* --- report.c: statistics and output -------------------------------------- */

/* bench_stats_t summarizes a sample of durations in nanoseconds. */
typedef struct bench_stats {
    double avg_us;
    double p99_us;
    double med_us;
} bench_stats_t;

/* bench_stats sorts v (n values, ns) in place and summarizes it. */
bench_stats_t bench_stats(uint64_t *v, size_t n);

/* bench_row_t is one line of the sweep table. */
typedef struct bench_row {
    nxl_op_t op;
    size_t block;
    size_t batch;
    double bw_gbs;
    double avg_lat_us;
    bench_stats_t prep;
    bench_stats_t post;
    bench_stats_t tx;
    double base_bw_gbs;  /* < 0: no baseline */
    double fio_gbs;      /* storage: fio on the same files; < 0: none */
    double agg_bw_gbs;   /* etcd group: all initiators; < 0: none */
    double pp_bw_gbs;    /* TCP: raw ping-pong, same depth and
                          * slices; < 0: none */
    bench_stats_t pp_tx; /* its post -> reply times */
} bench_row_t;

/* bench_report_header prints the table header (or the CSV header). */
void bench_report_header(const bench_opts_t *o, nxl_op_t op);

/* bench_report_row prints one row as a table line, JSON object or CSV. */
void bench_report_row(const bench_opts_t *o, const bench_row_t *r);

/* bench_progress shows what runs now on a terminal's stderr. */
void bench_progress(const bench_opts_t *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* bench_progress_done clears a progress line. */
void bench_progress_done(const bench_opts_t *o);

/* bench_op_name returns "READ" or "WRITE". */
const char *bench_op_name(nxl_op_t op);

#endif /* NXL_BENCH_H */
