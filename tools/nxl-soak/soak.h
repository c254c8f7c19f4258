/*
 * soak.h - nxl-soak internals shared by its source files.
 *
 * nxl-soak is a long-running reliability check over the public API of
 * include/nxl/nxl.h (docs/reliability.md). The parent process never
 * creates an agent: it starts every agent as a child that re-executes this
 * binary with --role, and talks to it over one SOCK_SEQPACKET socketpair
 * (fd 3 in the child) carrying fixed-size sk_msg_t records. Two modes:
 *
 *   soak   per backend, N agents in separate processes, every one a target
 *          and an initiator of every other; random READ/WRITE/notification
 *          traffic, every byte checked; some agents are killed and
 *          restarted at random; RSS, fds, mappings and threads sampled.
 *   fan-in per backend, one target and M initiator processes pulling and
 *          pushing checked data, a few initiators killed and restarted;
 *          shares, the target's resources before and after, and the time
 *          to serve M concurrent metadata fetches.
 */
#ifndef NXL_SOAK_H
#define NXL_SOAK_H

#include <nxl/nxl.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define SK_MAX_AGENTS 64 /* per group: agents, or 1 target + initiators */
#define SK_MAX_GROUPS 4  /* backends in one run */
#define SK_NSUB 8        /* notified-WRITE sub-slots per initiator */
#define SK_WINDOW 8      /* unacknowledged notifications per peer */
#define SK_TEXT 1024
#define SK_NAME_MAX 128
#define SK_CTL_FD 3 /* the control socket in a child */
#define SK_KIB ((uint64_t)1024)
#define SK_MIB ((uint64_t)1024 * 1024)
#define SK_GIB ((uint64_t)1024 * 1024 * 1024)

/* Roles of a child process. */
typedef enum sk_role {
    SK_ROLE_NONE = 0,
    SK_ROLE_AGENT,    /* soak: target and initiator of every peer */
    SK_ROLE_TARGET,   /* fan-in: the passive target */
    SK_ROLE_INITIATOR /* fan-in: one of the initiators */
} sk_role_t;

/* sk_opts_t holds every command-line setting (parent and child). */
typedef struct sk_opts {
    /* run */
    double duration_s;
    unsigned agents;    /* soak: agents per backend */
    unsigned stable;    /* soak: agents never killed (index < stable) */
    char backends[128]; /* comma-separated list */
    uint64_t seed;
    int seed_set;
    uint64_t max_size; /* largest transfer */
    int max_size_set;
    double kill_interval_s; /* mean time between kills, per backend */
    double warmup_s;        /* < 0: automatic */
    double ckpt_interval_s; /* checkpoints between warm-up and end */
    double op_timeout_s;    /* a transfer slower than this is a hang */
    double ack_timeout_s;   /* a notification unacknowledged this long */
    double rss_pct;         /* allowed RSS growth after warm-up, % */
    double rss_slack_mib;   /* plus this much */
    int no_rss;             /* report RSS and mappings, do not judge them */
    int avoid_known;        /* skip what triggers the known defects */
    int trace;              /* log every notification sent and received */
    unsigned fanin;         /* > 0: fan-in mode with this many initiators */
    unsigned fanin_kills;
    int no_netns; /* fan-in TCP on 127.0.0.1, not across the rig */
    int json;
    int smoke;
    int verbose;
    char log_dir[256];
    char rig[512]; /* tests/netns/rig.sh */
    /* child only */
    sk_role_t role;
    char backend[16]; /* the backend type */
    char label[96];   /* names: soak-<label>-<index> */
    char params[256]; /* backend params, key=value:key=value */
    unsigned group;
    unsigned index;
    unsigned inc;
    unsigned progress_thread;
    char addr[64];      /* own address (listener, TCP bind_addr) */
    char peer_addr[64]; /* address peers' side channels listen on */
} sk_opts_t;

/* sk_stats_t is what a child counts; sent to the parent every second and
 * at exit (so a killed incarnation loses at most its last second). */
typedef struct sk_stats {
    uint64_t ops;                 /* checked operations that completed */
    uint64_t reads;               /* READ of the peer's pattern, verified */
    uint64_t writes;              /* WRITE then READ back, verified */
    uint64_t nwrites;             /* WRITE + notification, verified by target */
    uint64_t nreads;              /* READ + notification */
    uint64_t notifs;              /* standalone notifications */
    uint64_t batches;             /* several transfers in flight at once */
    uint64_t reposts;             /* re-posts of a kept transfer handle */
    uint64_t stale_checks;        /* kept handle refused after a reload */
    uint64_t cancels;             /* released while in flight, buffer checked */
    uint64_t descs;               /* descriptors posted */
    uint64_t bytes_checked;       /* bytes verified by XXH3 */
    uint64_t notifs_sent;         /* notifications sent (all kinds) */
    uint64_t notifs_checked;      /* received, in order, payload verified */
    uint64_t notif_bytes_checked; /* data verified at a notification */
    uint64_t acks;                /* acknowledgements received */
    uint64_t lost_with_peer;      /* unacknowledged when the peer died */
    uint64_t late_old;            /* from an older incarnation, after a newer */
    uint64_t exp_disconnect; /* NXL_ERR_REMOTE_DISCONNECT from a dead peer */
    uint64_t exp_not_found;  /* NXL_ERR_NOT_FOUND from a dead peer */
    uint64_t exp_sidechan;   /* side-channel call to a dead peer failed */
    uint64_t invalidations;  /* nxl_md_invalidate */
    uint64_t fetches;        /* nxl_md_fetch that succeeded */
    uint64_t conflicts;      /* fetch NOT_ALLOWED, invalidated, refetched */
    uint64_t peer_deaths;    /* peer deaths announced to us */
    uint64_t failures;
    uint64_t max_op_us; /* slowest checked operation */
    uint64_t xseq_sent; /* fan-in: transfer notifications sent */
    uint64_t sseq_sent; /* fan-in: standalone notifications sent */
} sk_stats_t;

/* Message types: child -> parent, then parent -> child. */
enum {
    SK_M_HELLO = 1, /* u: port, pattern addr, slot addr, pid */
    SK_M_READY,     /* fan-in initiator: agent made, waiting for GO */
    SK_M_FETCHED,   /* u: t0, t1 (CLOCK_MONOTONIC ns); status */
    SK_M_STATS,     /* st */
    SK_M_FAIL,      /* text */
    SK_M_CKPT_DONE, /* u[0] = checkpoint number */
    SK_M_BYE,       /* st: final */
    SK_M_RX,        /* target: idx/inc of a sender, u: xseq, sseq */
    SK_M_TRIMMED,   /* u: malloc bytes in use after malloc_trim */
    SK_M_PEER = 32, /* idx/inc up; u: port, pattern addr, slot addr */
    SK_M_DOWN,      /* idx/inc killed */
    SK_M_CKPT,      /* u[0] = number: touch every peer, drain, pause */
    SK_M_RESUME,
    SK_M_STOP, /* finish, destroy the agent, BYE, exit 0 */
    SK_M_GO,   /* fan-in: fetch the target's metadata now */
    SK_M_TRIM  /* malloc_trim, then TRIMMED (before a sample) */
};

/* sk_msg_t is one control record (one SOCK_SEQPACKET datagram). */
typedef struct sk_msg {
    uint32_t type;
    uint32_t idx;
    uint32_t inc;
    int32_t status;
    uint64_t u[6];
    sk_stats_t st;
    char text[SK_TEXT];
} sk_msg_t;

/* sk_rng_t is a xoshiro256** state. */
typedef struct sk_rng {
    uint64_t s[4];
} sk_rng_t;

/* sk_piece_t is one contiguous range of a pattern stream. */
typedef struct sk_piece {
    uint64_t seed;
    uint64_t off;
    uint64_t len;
} sk_piece_t;

/* sk_proc_t is one sample of a process's resources from /proc. */
typedef struct sk_proc {
    uint64_t rss_kib;   /* VmRSS */
    uint64_t anon_kib;  /* RssAnon */
    uint64_t file_kib;  /* RssFile */
    uint64_t shmem_kib; /* RssShmem */
    unsigned fds;
    unsigned maps;
    unsigned threads;
    int ok;
} sk_proc_t;

/* What --avoid-known changes (docs/reliability.md, "Defects found"): the
 * soak itself avoids nothing any more (agents reload live peers' metadata
 * on every backend since defects 1 and 2 were fixed); the fan-in reports
 * the UCX target's mappings without judging them (defect 5). */
#define SK_UCX_KNOWN_AVOIDED                                                   \
    "--avoid-known: the soak avoids nothing (UCX reloads of live peers "       \
    "are\n  exercised: defects 1 and 2 are fixed); only the fan-in leaves "    \
    "UCX defect 5\n  unjudged (docs/reliability.md, \"Defects found\")\n"

/* nxl-soak.c */
/* sk_txt receives the human-readable output: stdout, or stderr with --json
 * (stdout then carries only the JSON summary). */
extern FILE *sk_txt;
void sk_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
uint64_t sk_now_ns(void);
double sk_now_s(void);
const char *sk_fmt_bytes(uint64_t n, char *buf, size_t cap);
int sk_parse_size(const char *s, uint64_t *v_p);

/* util.c: random numbers, patterns, hashing, control messages, /proc. */
void sk_rng_seed(sk_rng_t *r, uint64_t seed);
uint64_t sk_rng_next(sk_rng_t *r);
uint64_t sk_rng_below(sk_rng_t *r, uint64_t n);     /* [0, n) */
double sk_rng_unit(sk_rng_t *r);                    /* [0, 1) */
uint64_t sk_rng_logsize(sk_rng_t *r, uint64_t max); /* log-uniform 1..max */
uint64_t sk_mix64(uint64_t x);
uint64_t sk_pattern_seed(uint64_t run_seed, unsigned group, unsigned idx,
                         unsigned inc);
void sk_pattern_fill(uint8_t *dst, uint64_t seed, uint64_t off, uint64_t len);
/* sk_pattern_hash returns XXH3-128 (lo, hi) of the concatenated pieces,
 * generated in small chunks (no buffer of their size). */
void sk_pattern_hash(const sk_piece_t *pieces, size_t n, uint64_t *lo_p,
                     uint64_t *hi_p);
void sk_hash(const void *buf, uint64_t len, uint64_t *lo_p, uint64_t *hi_p);
/* sk_pattern_diff finds the first byte of buf that differs from the pieces;
 * returns 0 when none does, else 1 with a description in text. alt seeds,
 * when given, are other pattern streams the bytes are compared with. */
int sk_pattern_diff(const uint8_t *buf, const sk_piece_t *pieces, size_t n,
                    const uint64_t *alt, size_t nalt, char *text, size_t cap);
int sk_msg_send(int fd, const sk_msg_t *m);
/* sk_msg_recv: 1 got one, 0 nothing (non-blocking), -1 closed/error. */
int sk_msg_recv(int fd, sk_msg_t *m, int timeout_ms);
int sk_proc_sample(pid_t pid, sk_proc_t *p);
int sk_proc_fd_list(pid_t pid, char *buf, size_t cap);
/* sk_fd_diff writes "+fd->target" for each entry of fd list b missing from
 * a, then "-fd->target" for each entry of a missing from b. */
void sk_fd_diff(const char *a, const char *b, char *out, size_t cap);
int sk_enter_netns(const char *ns);

/* agent.c: the children. */
int sk_child_main(const sk_opts_t *o);

/* soak.c / fanin.c: the parent's modes. */
int sk_soak_main(const sk_opts_t *o, const char *self_exe);
int sk_fanin_main(const sk_opts_t *o, const char *self_exe);

/* spawn.c: starting children, logs, the rig. */
typedef struct sk_child {
    pid_t pid;
    int fd; /* control socket; -1 when none */
    unsigned group, idx, inc;
    int alive;    /* process running (not reaped) */
    int killed;   /* we sent SIGKILL */
    int stopping; /* we sent STOP */
    int byed;     /* BYE received */
    int hello;    /* HELLO received */
    uint16_t port;
    uint64_t pat_addr, slot_addr;
    double t_spawn, t_hello, t_last_stats, t_exit;
    sk_stats_t st; /* latest stats of this incarnation */
    int exit_status;
    char log[512];
} sk_child_t;

typedef struct sk_spawn_cfg {
    const char *self_exe;
    const sk_opts_t *o;
    sk_role_t role;
    const char *backend; /* type */
    const char *label;   /* for names and log files */
    const char *params;  /* "" or key=value:key=value */
    unsigned group, idx, inc, agents;
    int progress_thread;
    const char *addr;      /* NULL: 127.0.0.1 */
    const char *peer_addr; /* NULL: 127.0.0.1 */
    const char *netns;     /* NULL: stay here */
    uint64_t max_size;
} sk_spawn_cfg_t;

int sk_spawn(const sk_spawn_cfg_t *c, sk_child_t *ch);
/* sk_reap checks ch without blocking; 1 when it exited (status set). */
int sk_reap(sk_child_t *ch);
void sk_kill(sk_child_t *ch);
void sk_log_tail(const char *path, int lines, FILE *out);
void sk_backtrace(pid_t pid, const char *log);
/* sk_backtrace_brief prints one line per thread of pid to out: its
 * innermost ten functions (gdb), for a report that only the output
 * reaches (CI). */
void sk_backtrace_brief(pid_t pid, const char *label, FILE *out);
int sk_mkdir_logs(const sk_opts_t *o, char *dir, size_t cap);
int sk_rig_up(const sk_opts_t *o, char *name, size_t cap, int *guard_p,
              char *why, size_t why_cap);
void sk_rig_down(const sk_opts_t *o, const char *name, int guard);
int sk_backend_built(const char *name);
/* sk_backend_spec splits "TYPE[:key=value...]" into the type, a label
 * usable in names (the spec with every other character than letters,
 * digits and '-' made '_') and the params part. -1 when malformed. */
int sk_backend_spec(const char *spec, char *type, size_t tcap, char *label,
                    size_t lcap, char *params, size_t pcap);
void sk_stats_add(sk_stats_t *sum, const sk_stats_t *s);

/* The JSON writer of the summaries. */
void sk_json_str(FILE *f, const char *s);

#endif /* NXL_SOAK_H */
