/*
 * agent.c - the children of nxl-soak: a soak agent (target and initiator
 * of every peer), a fan-in target, a fan-in initiator.
 *
 * Memory of an agent (all DRAM, registered in one nxl_mem_register call):
 *
 *   pattern  max_size bytes from nxl_mem_alloc_shared (a memfd: SHM peers
 *            map it and copy; a stale mapping of a dead incarnation would
 *            show as the wrong pattern), filled with the pattern stream of
 *            this incarnation's seed; peers READ it.
 *   slots    one per possible initiator j: a WRITE slot (max_size bytes)
 *            that only j writes, then (soak) SK_NSUB sub-slots for WRITEs
 *            with a notification, which this agent verifies against the
 *            hash carried by the notification, then acknowledges.
 *   local    src and dst, max_size bytes each: the local side of this
 *            agent's own transfers.
 *
 * Everything is prefaulted at start, so RSS after warm-up measures the
 * library, not the pools. The parent's messages only change state here
 * (peer up, peer down, checkpoint, stop); the actions they call for run
 * in the main loop, never inside a transfer.
 */
#include "soak.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#define SK_NMAGIC 0x314e4b53u /* "SKN1" */
#define SK_GRACE_S 5.0        /* a failing peer must be announced dead by */
#define SK_MAX_DESCS 1024
#define SK_MAX_FAIL_MSGS 40 /* FAIL records sent per incarnation */
#define SK_ACKQ 32
#define SK_MAX_PARAMS 9

/* Notification kinds. */
enum { SK_N_WRITE = 'W', SK_N_READ = 'R', SK_N_SOLO = 'S', SK_N_ACK = 'A' };
/* Sequence classes: notifications attached to transfers, and standalone
 * ones (nxl_notif_send promises no order against transfers). */
enum { SK_CLS_XFER = 0, SK_CLS_SOLO = 1 };

/* sk_nmsg_t heads every notification; pad_len pattern bytes follow. */
typedef struct sk_nmsg {
    uint32_t magic;
    uint8_t type;
    uint8_t cls;
    uint16_t sender;
    uint32_t sender_inc;
    uint32_t recv_inc;  /* the receiver incarnation the sender loaded */
    uint64_t seq;       /* for an ack: the acknowledged one */
    uint64_t data_seed; /* WRITE: stream of the written bytes; 0 = none */
    uint64_t off, len;  /* WRITE: range inside the sub-slot */
    uint32_t sub;
    uint32_t pad_len;
    uint64_t h_lo, h_hi; /* WRITE: XXH3-128 of the written bytes */
} sk_nmsg_t;

#define SK_PAD_SMALL 600        /* most notifications: < 600 pad bytes */
#define SK_PAD_BIG (256 * 1024) /* one in 64: up to this many */
#define SK_NMSG_MAX (sizeof(sk_nmsg_t) + SK_PAD_BIG)

/* sk_out_t is one notification waiting for its acknowledgement. */
typedef struct sk_out {
    int used;
    int cls;
    uint64_t seq;
    int sub;
    double t_sent;
    size_t len; /* of the notification */
} sk_out_t;

/* sk_ack_t is one acknowledgement waiting to be sent. */
typedef struct sk_ack {
    int cls;
    uint64_t seq;
    uint32_t sender_inc;
} sk_ack_t;

typedef struct sk_peer {
    int exists;
    char name[SK_NAME_MAX];
    /* what the parent announced */
    int up;
    uint32_t inc;
    uint32_t dead_inc; /* highest incarnation announced dead */
    int down_pending;  /* DOWN not handled by the main loop yet */
    uint16_t port;
    uint64_t pat_addr, slot_addr, pat_seed;
    /* what the agent has loaded */
    uint32_t loaded_inc; /* 0 = nothing */
    int load_failed;     /* the last fetch failed: a load that fails
                          * after replacing a dead entry leaves none */
    uint32_t epoch;      /* bumps at every load and invalidation */
    /* sending to it */
    uint32_t tx_inc; /* the incarnation xseq, sseq and out[] are for */
    uint64_t xseq, sseq;
    sk_out_t out[SK_WINDOW];
    int sub_busy[SK_NSUB];
    nxl_xfer_t *kept;
    uint32_t kept_epoch;
    uint64_t kept_seed, kept_off, kept_len, kept_loc;
    /* receiving from it */
    uint32_t rx_inc;
    uint64_t rx_xseq, rx_sseq;
    sk_ack_t acks[SK_ACKQ];
    unsigned nacks;
} sk_peer_t;

typedef struct sk_agent {
    const sk_opts_t *o;
    sk_role_t role;
    nxl_agent_t *a;
    char name[SK_NAME_MAX];
    unsigned group, idx, inc, nagents;
    uint64_t pat_seed;
    uint64_t max; /* largest transfer */
    uint8_t *pat;
    uint64_t pat_len;
    uint8_t *slots;
    uint64_t slots_len, stride, wslot_len, sub_len;
    unsigned nsub;
    uint8_t *loc; /* src then dst */
    uint64_t loc_len;
    uint8_t *src, *dst;
    sk_peer_t peers[SK_MAX_AGENTS];
    int ctl;
    sk_rng_t rng;
    sk_stats_t st;
    int acks_on; /* soak: acknowledge every notification */
    int paused, stop, go;
    int touch;      /* checkpoint: largest sizes, one descriptor */
    unsigned blame; /* next failure: peer index + 1 to inspect */
    uint64_t ckpt;  /* pending checkpoint number, 0 = none */
    double next_stats;
    unsigned fail_msgs;
    uint8_t poison;
    uint8_t *nbuf; /* an outgoing notification */
    uint8_t *pad;  /* expected padding of an incoming one */
} sk_agent_t;

static sk_agent_t G;

/* ---------------------------------------------------------------------- */
/* Reporting. */

static void
send_stats(sk_agent_t *ag, uint32_t type)
{
    sk_msg_t m;

    memset(&m, 0, sizeof(m));
    m.type = type;
    m.idx = ag->idx;
    m.inc = ag->inc;
    m.st = ag->st;
    if (sk_msg_send(ag->ctl, &m) != 0) {
        _exit(3); /* the parent is gone */
    }
}

static void
heartbeat(sk_agent_t *ag)
{
    double now = sk_now_s();

    if (now >= ag->next_stats) {
        send_stats(ag, SK_M_STATS);
        ag->next_stats = now + 1.0;
    }
}

/* fail records one failure: counted, logged, and sent to the parent. */
static void __attribute__((format(printf, 2, 3)))
fail(sk_agent_t *ag, const char *fmt, ...)
{
    sk_msg_t m;
    va_list ap;

    memset(&m, 0, sizeof(m));
    va_start(ap, fmt);
    vsnprintf(m.text, sizeof(m.text), fmt, ap);
    va_end(ap);
    ag->st.failures++;
    fprintf(stderr, "[%s inc %u] FAIL %s\n", ag->name, ag->inc, m.text);
    fflush(stderr);
    if (ag->fail_msgs++ < SK_MAX_FAIL_MSGS) {
        m.type = SK_M_FAIL;
        m.idx = ag->idx;
        m.inc = ag->inc;
        m.st = ag->st;
        m.u[0] = ag->blame; /* the parent dumps both ends of a hang */
        (void)sk_msg_send(ag->ctl, &m);
    }
    ag->blame = 0;
}

static void
fail_st(sk_agent_t *ag, nxl_status_t s, const char *what)
{
    fail(ag, "%s: %s (%s)", what, nxl_status_name(s), nxl_last_error());
}

/* trim_heap gives malloc's free pages back to the kernel and returns the
 * bytes malloc still holds for the program, so that RssAnon sampled after
 * it measures memory in use, not pages that glibc keeps in its arenas
 * (a fan-in target's 32 receive buffers, freed in the middle of a
 * progress-thread arena, stayed resident otherwise: 20 MiB once in CI). */
static uint64_t
trim_heap(void)
{
    struct mallinfo2 mi;

    (void)malloc_trim(0);
    mi = mallinfo2();
    return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
}

/* ---------------------------------------------------------------------- */
/* Control messages. */

static void
ctl_handle(sk_agent_t *ag, const sk_msg_t *m)
{
    sk_peer_t *p = m->idx < SK_MAX_AGENTS ? &ag->peers[m->idx] : NULL;

    switch (m->type) {
    case SK_M_PEER:
        if (p == NULL || !p->exists) {
            fail(ag, "parent announced unknown peer %u", m->idx);
            break;
        }
        p->up = 1;
        p->inc = m->inc;
        p->port = (uint16_t)m->u[0];
        p->pat_addr = m->u[1];
        p->slot_addr = m->u[2];
        p->pat_seed = sk_pattern_seed(ag->o->seed, ag->group, m->idx, m->inc);
        break;
    case SK_M_DOWN:
        if (p == NULL || !p->exists) {
            break;
        }
        if (m->inc > p->dead_inc) {
            p->dead_inc = m->inc;
        }
        if (p->inc == m->inc) {
            p->up = 0;
        }
        p->down_pending = 1;
        ag->st.peer_deaths++;
        break;
    case SK_M_CKPT:
        ag->ckpt = m->u[0];
        break;
    case SK_M_RESUME:
        ag->paused = 0;
        break;
    case SK_M_STOP:
        ag->stop = 1;
        break;
    case SK_M_GO:
        ag->go = 1;
        break;
    case SK_M_TRIM: {
        sk_msg_t r;

        memset(&r, 0, sizeof(r));
        r.type = SK_M_TRIMMED;
        r.idx = ag->idx;
        r.inc = ag->inc;
        r.u[0] = trim_heap();
        r.st = ag->st;
        (void)sk_msg_send(ag->ctl, &r);
        break;
    }
    default:
        fail(ag, "unknown control message %u", m->type);
        break;
    }
}

/* ctl_poll handles every pending control message, waiting up to
 * timeout_ms for the first. */
static void
ctl_poll(sk_agent_t *ag, int timeout_ms)
{
    sk_msg_t m;
    int r;

    r = sk_msg_recv(ag->ctl, &m, timeout_ms);
    while (r == 1) {
        ctl_handle(ag, &m);
        r = sk_msg_recv(ag->ctl, &m, 0);
    }
    if (r < 0) {
        _exit(3); /* the parent is gone */
    }
}

/* idle_wait sleeps until a control message or agent event, at most ms. */
static void
idle_wait(sk_agent_t *ag, int ms)
{
    struct pollfd pf[2];
    int n = 1;

    pf[0].fd = ag->ctl;
    pf[0].events = POLLIN;
    pf[1].fd = nxl_agent_fd(ag->a);
    pf[1].events = POLLIN;
    if (pf[1].fd >= 0) {
        n = 2;
    }
    (void)poll(pf, (nfds_t)n, ms);
    ctl_poll(ag, 0);
}

/* ---------------------------------------------------------------------- */
/* Peers: errors, loading, deaths. */

/* peer_error classifies a failed call involving peer p, which was at
 * incarnation inc: when the parent announces inc dead within the grace
 * time, it is an expected error (sidechan: a side-channel call; otherwise
 * the status must be REMOTE_DISCONNECT or NOT_FOUND, the contract for a
 * dead peer); anything else is a failure. */
static void
peer_error(sk_agent_t *ag, sk_peer_t *p, uint32_t inc, const char *what,
           nxl_status_t s, int sidechan)
{
    char detail[512];
    double until = sk_now_s() + SK_GRACE_S;

    snprintf(detail, sizeof(detail), "%s", nxl_last_error());
    while (p->dead_inc < inc && sk_now_s() < until) {
        ctl_poll(ag, 100);
    }
    if (p->dead_inc >= inc) {
        if (sidechan) {
            ag->st.exp_sidechan++;
        } else if (s == NXL_ERR_REMOTE_DISCONNECT) {
            ag->st.exp_disconnect++;
        } else if (s == NXL_ERR_NOT_FOUND) {
            ag->st.exp_not_found++;
        } else {
            fail(ag,
                 "%s to %s (incarnation %u, killed): %s (%s), expected "
                 "NXL_ERR_REMOTE_DISCONNECT or NXL_ERR_NOT_FOUND",
                 what, p->name, inc, nxl_status_name(s), detail);
        }
        return;
    }
    fail(ag, "%s to %s (incarnation %u, alive): %s (%s)", what, p->name, inc,
         nxl_status_name(s), detail);
}

static void
peer_reset_tx(sk_agent_t *ag, sk_peer_t *p)
{
    unsigned i;

    for (i = 0; i < SK_WINDOW; i++) {
        if (p->out[i].used) {
            ag->st.lost_with_peer++;
        }
        p->out[i].used = 0;
    }
    memset(p->sub_busy, 0, sizeof(p->sub_busy));
    p->xseq = 0;
    p->sseq = 0;
}

static unsigned
out_count(const sk_peer_t *p)
{
    unsigned i, n = 0;

    for (i = 0; i < SK_WINDOW; i++) {
        n += p->out[i].used != 0;
    }
    return n;
}

/* peer_unload invalidates p's metadata here. */
static void
peer_unload(sk_agent_t *ag, sk_peer_t *p)
{
    nxl_status_t s;

    if (p->loaded_inc == 0) {
        return;
    }
    s = nxl_md_invalidate(ag->a, p->name);
    if (s != NXL_OK && !(s == NXL_ERR_NOT_FOUND && p->load_failed)) {
        fail_st(ag, s, "nxl_md_invalidate of a loaded peer");
    }
    ag->st.invalidations++;
    p->loaded_inc = 0;
    p->epoch++;
}

/* handle_downs runs what a DOWN calls for: the peer's unacknowledged
 * notifications are lost with it, and half the time its metadata is
 * dropped now (the other half, the reload after its restart must replace
 * it). */
static void
handle_downs(sk_agent_t *ag)
{
    unsigned i;

    for (i = 0; i < ag->nagents; i++) {
        sk_peer_t *p = &ag->peers[i];

        if (!p->exists || !p->down_pending) {
            continue;
        }
        p->down_pending = 0;
        if (p->tx_inc != 0 && p->tx_inc <= p->dead_inc) {
            peer_reset_tx(ag, p);
        }
        if (p->loaded_inc != 0 && p->loaded_inc <= p->dead_inc &&
            sk_rng_below(&ag->rng, 2) == 0) {
            peer_unload(ag, p);
        }
    }
}

/* peer_fetch loads p's current incarnation from its side channel. */
static void
peer_fetch(sk_agent_t *ag, sk_peer_t *p)
{
    nxl_opts_t o;
    nxl_status_t s;
    uint32_t inc = p->inc;
    int conflict = 0;

    nxl_opts_init(&o);
    o.ip_addr = ag->o->peer_addr;
    o.port = p->port;
    for (;;) {
        s = nxl_md_fetch(ag->a, p->name, &o);
        if (s == NXL_OK) {
            break;
        }
        if (s == NXL_ERR_NOT_ALLOWED && p->loaded_inc != 0 &&
            p->loaded_inc != inc && !conflict) {
            /* The old incarnation is still loaded and the library has not
             * seen it die: different conn info is refused, as documented.
             * Drop it and load the new one. */
            conflict = 1;
            ag->st.conflicts++;
            peer_unload(ag, p);
            continue;
        }
        p->load_failed = 1;
        peer_error(ag, p, inc, "nxl_md_fetch", s, 1);
        return;
    }
    p->load_failed = 0;
    if (p->tx_inc != inc) {
        /* A new incarnation: its sequences start at 1. Whatever was
         * still unacknowledged went with the old one. */
        peer_reset_tx(ag, p);
        p->tx_inc = inc;
    }
    ag->st.fetches++;
    p->loaded_inc = inc;
    p->epoch++;
}

static void
fetch_pending(sk_agent_t *ag)
{
    unsigned i;

    for (i = 0; i < ag->nagents; i++) {
        sk_peer_t *p = &ag->peers[i];

        if (p->exists && p->up && p->loaded_inc != p->inc) {
            peer_fetch(ag, p);
        }
    }
}

static int
peer_ready(const sk_peer_t *p)
{
    return p->exists && p->up && p->loaded_inc == p->inc &&
           p->dead_inc < p->inc;
}

static sk_peer_t *
pick_peer(sk_agent_t *ag)
{
    unsigned cand[SK_MAX_AGENTS], n = 0, i;

    for (i = 0; i < ag->nagents; i++) {
        if (peer_ready(&ag->peers[i])) {
            cand[n++] = i;
        }
    }
    if (n == 0) {
        return NULL;
    }
    return &ag->peers[cand[sk_rng_below(&ag->rng, n)]];
}

/* peer_index returns p's agent index. */
static unsigned
peer_index(const sk_agent_t *ag, const sk_peer_t *p)
{
    return (unsigned)(p - ag->peers);
}

/* ---------------------------------------------------------------------- */
/* Transfers. */

/* xfer_run posts x (with po, NULL = keep) and waits for it, sleeping in
 * one-second slices so the parent keeps hearing from us. Returns its final
 * status; NXL_ERR_TIMEOUT after the op timeout (a hang). */
static nxl_status_t
xfer_run(sk_agent_t *ag, nxl_xfer_t *x, const nxl_opts_t *po, double *secs_p)
{
    double t0 = sk_now_s();
    nxl_status_t s = nxl_xfer_post(x, po);

    while (s == NXL_IN_PROG) {
        s = nxl_xfer_wait(x, 1000);
        if (s == NXL_ERR_TIMEOUT) {
            heartbeat(ag);
            if (sk_now_s() - t0 > ag->o->op_timeout_s) {
                break;
            }
            s = NXL_IN_PROG;
        }
    }
    if (secs_p != NULL) {
        *secs_p = sk_now_s() - t0;
    }
    return s;
}

static void
note_time(sk_agent_t *ag, double secs)
{
    uint64_t us = (uint64_t)(secs * 1e6);

    if (us > ag->st.max_op_us) {
        ag->st.max_op_us = us;
    }
}

/* split_len cuts len into k > 0 pieces of at least one byte. */
static void
split_len(sk_agent_t *ag, uint64_t len, size_t k, uint64_t *lens)
{
    size_t i;
    uint64_t left = len;

    for (i = 0; i < k; i++) {
        uint64_t rest = k - i - 1; /* pieces after this one */
        uint64_t l;

        if (i == k - 1) {
            l = left;
        } else if (sk_rng_below(&ag->rng, 4) == 0) {
            l = 1 + sk_rng_below(&ag->rng, left - rest);
        } else {
            l = left / (k - i);
        }
        lens[i] = l;
        left -= l;
    }
}

/* pick_len draws a transfer length, log-uniform in [1, max] (max during a
 * checkpoint's touch round). */
static uint64_t
pick_len(sk_agent_t *ag, uint64_t max)
{
    return ag->touch ? max : sk_rng_logsize(&ag->rng, max);
}

static size_t
pick_ndescs(sk_agent_t *ag, uint64_t len)
{
    uint64_t r = sk_rng_below(&ag->rng, 100), k;

    if (ag->touch) {
        return 1;
    }

    if (r < 70) {
        k = 1;
    } else if (r < 92) {
        k = 2 + sk_rng_below(&ag->rng, 15);
    } else {
        k = 17 + sk_rng_below(&ag->rng, SK_MAX_DESCS - 16);
    }
    return (size_t)(k > len ? len : k);
}

/* make_xfer builds a transfer of k pairs, by nxl_xfer_create or through
 * prepared lists, with or without merging. */
static nxl_status_t
make_xfer(sk_agent_t *ag, nxl_op_t op, const nxl_desc_t *ld,
          const nxl_desc_t *rd, size_t k, const char *remote,
          const nxl_opts_t *no, nxl_xfer_t **x_p)
{
    nxl_dlist_t l = {NXL_DRAM, ld, k}, r = {NXL_DRAM, rd, k};
    nxl_prepped_t *lp = NULL, *rp = NULL;
    static size_t idx[SK_MAX_DESCS];
    nxl_opts_t o;
    nxl_status_t s;
    size_t i;

    if (no != NULL) {
        o = *no;
    } else {
        nxl_opts_init(&o);
    }
    if (sk_rng_below(&ag->rng, 2) == 0) {
        return nxl_xfer_create(ag->a, op, &l, &r, remote, &o, x_p);
    }
    o.skip_merge = sk_rng_below(&ag->rng, 4) == 0;
    s = nxl_dlist_prep(ag->a, NULL, &l, NULL, &lp);
    if (s != NXL_OK) {
        return s;
    }
    s = nxl_dlist_prep(ag->a, remote, &r, NULL, &rp);
    if (s == NXL_OK) {
        for (i = 0; i < k; i++) {
            idx[i] = i;
        }
        s = nxl_xfer_make(ag->a, op, lp, idx, rp, idx, k, &o, x_p);
    }
    nxl_dlist_release(lp);
    nxl_dlist_release(rp);
    return s;
}

/* op_error reports a failed step of an operation on peer p (loopback:
 * p == NULL, always a failure). */
static void
op_error(sk_agent_t *ag, sk_peer_t *p, uint32_t inc, const char *what,
         nxl_status_t s)
{
    if (s == NXL_ERR_TIMEOUT) {
        ag->blame = p != NULL ? peer_index(ag, p) + 1 : ag->idx + 1;
        fail(ag, "%s to %s: no completion within %.0f s (a hang)", what,
             p != NULL ? p->name : "self", ag->o->op_timeout_s);
        return;
    }
    if (p == NULL) {
        fail_st(ag, s, what);
        return;
    }
    peer_error(ag, p, inc, what, s, 0);
}

/* check_pattern verifies len bytes at buf against the pieces; alt seeds
 * name the stale streams worth recognizing. */
static int
check_pattern(sk_agent_t *ag, const uint8_t *buf, uint64_t len,
              const sk_piece_t *pc, size_t n, const char *what, const char *who)
{
    uint64_t lo, hi, elo, ehi;
    char text[600];

    sk_hash(buf, len, &lo, &hi);
    sk_pattern_hash(pc, n, &elo, &ehi);
    if (lo == elo && hi == ehi) {
        ag->st.bytes_checked += len;
        return 0;
    }
    if (sk_pattern_diff(buf, pc, n, NULL, 0, text, sizeof(text)) == 0) {
        snprintf(text, sizeof(text),
                 "XXH3 differs but the bytes match "
                 "(hash error?)");
    }
    fail(ag, "CORRUPTION: %s from %s, %" PRIu64 " bytes in %zu pieces: %s",
         what, who, len, n, text);
    return -1;
}

/* stale_alts fills the seeds of p's earlier incarnations, for diagnosis. */
static size_t
stale_alts(sk_agent_t *ag, const sk_peer_t *p, unsigned pidx, uint64_t *alt,
           size_t cap)
{
    size_t n = 0;
    uint32_t i;

    for (i = p->inc; i > 1 && n < cap; i--) {
        alt[n++] = sk_pattern_seed(ag->o->seed, ag->group, pidx, i - 1);
    }
    return n;
}

/* read_pieces picks k random ranges of a pattern area (READ may overlap). */
static void
read_pieces(sk_agent_t *ag, uint64_t seed, uint64_t area, uint64_t len,
            size_t k, sk_piece_t *pc)
{
    static uint64_t lens[SK_MAX_DESCS];
    size_t i;

    split_len(ag, len, k, lens);
    for (i = 0; i < k; i++) {
        pc[i].seed = seed;
        pc[i].len = lens[i];
        pc[i].off = sk_rng_below(&ag->rng, area - lens[i] + 1);
    }
}

/* fill_nmsg makes a notification of type t to p in buf; returns its
 * length. */
static size_t
fill_nmsg(sk_agent_t *ag, const sk_peer_t *p, uint8_t t, int cls, uint64_t seq,
          uint8_t *buf)
{
    sk_nmsg_t h;

    memset(&h, 0, sizeof(h));
    h.magic = SK_NMAGIC;
    h.type = t;
    h.cls = (uint8_t)cls;
    h.sender = (uint16_t)ag->idx;
    h.sender_inc = ag->inc;
    h.recv_inc = p->loaded_inc;
    h.seq = seq;
    h.pad_len = (uint32_t)sk_rng_below(&ag->rng, SK_PAD_SMALL);
    if (t != SK_N_ACK && sk_rng_below(&ag->rng, 64) == 0) {
        h.pad_len = (uint32_t)sk_rng_below(&ag->rng, SK_PAD_BIG + 1);
    }
    memcpy(buf, &h, sizeof(h));
    sk_pattern_fill(buf + sizeof(h), sk_mix64(seq ^ ((uint64_t)t << 56)), 0,
                    h.pad_len);
    return sizeof(h) + h.pad_len;
}

static void
out_add(sk_agent_t *ag, sk_peer_t *p, int cls, uint64_t seq, int sub,
        size_t len)
{
    unsigned i;

    if (ag->o->trace) {
        fprintf(stderr,
                "%.6f TX to %s class %d seq %" PRIu64 " len %zu "
                "sub %d\n",
                sk_now_s(), p->name, cls, seq, len, sub);
    }
    ag->st.notifs_sent++;
    if (cls == SK_CLS_XFER) {
        ag->st.xseq_sent++;
    } else {
        ag->st.sseq_sent++;
    }
    if (!ag->acks_on) {
        return;
    }
    for (i = 0; i < SK_WINDOW; i++) {
        if (!p->out[i].used) {
            p->out[i] = (sk_out_t){1, cls, seq, sub, sk_now_s(), len};
            if (sub >= 0) {
                p->sub_busy[sub] = 1;
            }
            return;
        }
    }
    fail(ag, "internal: notification window overflow");
}

/* op_read READs random pieces of p's pattern (optionally with a
 * notification) and checks them. */
static void
op_read(sk_agent_t *ag, sk_peer_t *p, int notify)
{
    static sk_piece_t pc[SK_MAX_DESCS];
    static nxl_desc_t ld[SK_MAX_DESCS], rd[SK_MAX_DESCS];
    uint8_t *nbuf = ag->nbuf;
    uint64_t len = pick_len(ag, ag->max), loff, pos;
    size_t k = pick_ndescs(ag, len), i;
    uint32_t inc = p->loaded_inc;
    nxl_xfer_t *x = NULL;
    nxl_opts_t no;
    nxl_status_t s;
    uint64_t seq = 0;
    double secs;

    if (notify && ag->acks_on && out_count(p) >= SK_WINDOW) {
        notify = 0; /* the window is full: a plain READ */
    }
    read_pieces(ag, p->pat_seed, ag->pat_len, len, k, pc);
    loff = sk_rng_below(&ag->rng, ag->max - len + 1);
    for (i = 0, pos = 0; i < k; i++) {
        ld[i] = (nxl_desc_t){(uintptr_t)(ag->dst + loff + pos), pc[i].len, 0};
        rd[i] = (nxl_desc_t){p->pat_addr + pc[i].off, pc[i].len, 0};
        pos += pc[i].len;
    }
    memset(ag->dst + loff, ag->poison++, len);
    nxl_opts_init(&no);
    if (notify) {
        seq = p->xseq + 1;
        no.has_notif = 1;
        no.notif = nbuf;
        no.notif_len = fill_nmsg(ag, p, SK_N_READ, SK_CLS_XFER, seq, nbuf);
    }
    s = make_xfer(ag, NXL_READ, ld, rd, k, p->name, &no, &x);
    if (s != NXL_OK) {
        op_error(ag, p, inc, "READ create", s);
        return;
    }
    s = xfer_run(ag, x, NULL, &secs);
    nxl_xfer_release(x);
    if (s != NXL_OK) {
        op_error(ag, p, inc, notify ? "READ+notification" : "READ", s);
        return;
    }
    note_time(ag, secs);
    if (notify) {
        p->xseq = seq;
        out_add(ag, p, SK_CLS_XFER, seq, -1, no.notif_len);
        ag->st.nreads++;
    } else {
        ag->st.reads++;
    }
    ag->st.ops++;
    ag->st.descs += k;
    if (check_pattern(ag, ag->dst + loff, len, pc, k, "READ", p->name) != 0) {
        uint64_t alt[8];
        size_t na = stale_alts(ag, p, peer_index(ag, p), alt, 8);
        char text[600];

        if (na > 0 && sk_pattern_diff(ag->dst + loff, pc, k, alt, na, text,
                                      sizeof(text)) != 0) {
            fail(ag, "  with earlier incarnations of %s: %s", p->name, text);
        }
    }
}

/* op_loop READs this agent's own pattern through loopback. */
static void
op_loop(sk_agent_t *ag)
{
    static sk_piece_t pc[SK_MAX_DESCS];
    static nxl_desc_t ld[SK_MAX_DESCS], rd[SK_MAX_DESCS];
    uint64_t len = sk_rng_logsize(&ag->rng, ag->max), loff, pos;
    size_t k = pick_ndescs(ag, len), i;
    nxl_xfer_t *x = NULL;
    nxl_status_t s;
    double secs;

    read_pieces(ag, ag->pat_seed, ag->pat_len, len, k, pc);
    loff = sk_rng_below(&ag->rng, ag->max - len + 1);
    for (i = 0, pos = 0; i < k; i++) {
        ld[i] = (nxl_desc_t){(uintptr_t)(ag->dst + loff + pos), pc[i].len, 0};
        rd[i] = (nxl_desc_t){(uintptr_t)(ag->pat + pc[i].off), pc[i].len, 0};
        pos += pc[i].len;
    }
    memset(ag->dst + loff, ag->poison++, len);
    s = make_xfer(ag, NXL_READ, ld, rd, k, ag->name, NULL, &x);
    if (s != NXL_OK) {
        fail_st(ag, s, "loopback READ create");
        return;
    }
    s = xfer_run(ag, x, NULL, &secs);
    nxl_xfer_release(x);
    if (s != NXL_OK) {
        op_error(ag, NULL, 0, "loopback READ", s);
        return;
    }
    note_time(ag, secs);
    ag->st.reads++;
    ag->st.ops++;
    ag->st.descs += k;
    (void)check_pattern(ag, ag->dst + loff, len, pc, k, "loopback READ",
                        "self");
}

/* write_pieces places k non-overlapping pieces of total len in a slot of
 * slot_len bytes (equal zones, one piece in each). */
static void
write_pieces(sk_agent_t *ag, uint64_t slot_len, uint64_t len, size_t k,
             uint64_t *offs, uint64_t *lens)
{
    uint64_t zone = slot_len / k;
    size_t i;

    for (i = 0; i < k; i++) {
        lens[i] = len / k + (i < len % k ? 1 : 0);
        offs[i] = i * zone + sk_rng_below(&ag->rng, zone - lens[i] + 1);
    }
}

/* op_write WRITEs a fresh stream into this agent's slot at p (with a
 * notification into a sub-slot, which p verifies and acknowledges, when
 * notify), then READs it back and checks it. */
static void
op_write(sk_agent_t *ag, sk_peer_t *p, int notify)
{
    static nxl_desc_t ld[SK_MAX_DESCS], rd[SK_MAX_DESCS];
    static uint64_t offs[SK_MAX_DESCS], lens[SK_MAX_DESCS];
    uint8_t *nbuf = ag->nbuf;
    uint64_t base, area, len, pos, seed = sk_rng_next(&ag->rng) | 1;
    uint64_t h_lo, h_hi, seq = 0;
    uint32_t inc = p->loaded_inc;
    nxl_xfer_t *x = NULL;
    sk_piece_t whole;
    nxl_opts_t no;
    nxl_status_t s;
    size_t k, i;
    int sub = -1;
    double secs, secs2;

    base = p->slot_addr + (uint64_t)ag->idx * ag->stride;
    area = ag->wslot_len;
    if (notify && ag->acks_on) {
        unsigned cand[SK_NSUB], nc = 0;

        for (i = 0; i < ag->nsub; i++) {
            if (!p->sub_busy[i]) {
                cand[nc++] = (unsigned)i;
            }
        }
        if (nc == 0 || out_count(p) >= SK_WINDOW) {
            return;
        }
        sub = (int)cand[sk_rng_below(&ag->rng, nc)];
        base += ag->wslot_len + (uint64_t)sub * ag->sub_len;
        area = ag->sub_len;
    }
    len = pick_len(ag, area);
    if (sub >= 0) {
        /* One to four pieces, contiguous at the target (mergeable). */
        uint64_t off = sk_rng_below(&ag->rng, area - len + 1);

        k = ag->touch ? 1 : 1 + (size_t)sk_rng_below(&ag->rng, 4);
        if (k > len) {
            k = (size_t)len;
        }
        split_len(ag, len, k, lens);
        for (i = 0, pos = off; i < k; i++) {
            offs[i] = pos;
            pos += lens[i];
        }
    } else {
        k = pick_ndescs(ag, len);
        if (len > (area / k) * k) {
            len = (area / k) * k;
        }
        write_pieces(ag, area, len, k, offs, lens);
    }
    sk_pattern_fill(ag->src, seed, 0, len);
    sk_hash(ag->src, len, &h_lo, &h_hi);
    for (i = 0, pos = 0; i < k; i++) {
        ld[i] = (nxl_desc_t){(uintptr_t)(ag->src + pos), lens[i], 0};
        rd[i] = (nxl_desc_t){base + offs[i], lens[i], 0};
        pos += lens[i];
    }
    nxl_opts_init(&no);
    if (notify) {
        sk_nmsg_t h;

        seq = p->xseq + 1;
        no.has_notif = 1;
        no.notif = nbuf;
        no.notif_len = fill_nmsg(ag, p, SK_N_WRITE, SK_CLS_XFER, seq, nbuf);
        memcpy(&h, nbuf, sizeof(h));
        if (sub >= 0) {
            h.data_seed = seed;
            h.sub = (uint32_t)sub;
            h.off = offs[0];
            h.len = len;
            h.h_lo = h_lo;
            h.h_hi = h_hi;
        }
        memcpy(nbuf, &h, sizeof(h));
    }
    s = make_xfer(ag, NXL_WRITE, ld, rd, k, p->name, &no, &x);
    if (s != NXL_OK) {
        op_error(ag, p, inc, "WRITE create", s);
        return;
    }
    s = xfer_run(ag, x, NULL, &secs);
    nxl_xfer_release(x);
    x = NULL;
    if (s != NXL_OK) {
        op_error(ag, p, inc, notify ? "WRITE+notification" : "WRITE", s);
        return;
    }
    if (notify) {
        p->xseq = seq;
        out_add(ag, p, SK_CLS_XFER, seq, sub, no.notif_len);
    }
    if (sub >= 0) {
        /* p checks these bytes when the notification arrives. */
        note_time(ag, secs);
        ag->st.nwrites++;
        ag->st.ops++;
        ag->st.descs += k;
        return;
    }
    /* Read it back into dst (poisoned), same pieces. */
    for (i = 0, pos = 0; i < k; i++) {
        ld[i].addr = (uintptr_t)(ag->dst + pos);
        pos += lens[i];
    }
    memset(ag->dst, ag->poison++, len);
    s = make_xfer(ag, NXL_READ, ld, rd, k, p->name, NULL, &x);
    if (s != NXL_OK) {
        op_error(ag, p, inc, "READ-back create", s);
        return;
    }
    s = xfer_run(ag, x, NULL, &secs2);
    nxl_xfer_release(x);
    if (s != NXL_OK) {
        op_error(ag, p, inc, "READ-back", s);
        return;
    }
    note_time(ag, secs + secs2);
    if (notify) {
        ag->st.nwrites++;
    } else {
        ag->st.writes++;
    }
    ag->st.ops++;
    ag->st.descs += 2 * k;
    whole = (sk_piece_t){seed, 0, len};
    (void)check_pattern(ag, ag->dst, len, &whole, 1, "WRITE then READ back",
                        p->name);
}

/* op_solo sends a standalone notification. */
static void
op_solo(sk_agent_t *ag, sk_peer_t *p)
{
    uint8_t *nbuf = ag->nbuf;
    uint64_t seq = p->sseq + 1;
    uint32_t inc = p->loaded_inc;
    size_t n;
    nxl_status_t s;

    if (ag->acks_on && out_count(p) >= SK_WINDOW) {
        return;
    }
    n = fill_nmsg(ag, p, SK_N_SOLO, SK_CLS_SOLO, seq, nbuf);
    s = nxl_notif_send(ag->a, p->name, nbuf, n, NULL);
    if (s != NXL_OK) {
        op_error(ag, p, inc, "nxl_notif_send", s);
        return;
    }
    p->sseq = seq;
    out_add(ag, p, SK_CLS_SOLO, seq, -1, n);
    ag->st.notifs++;
    ag->st.ops++;
}

/* op_batch posts up to four READs (to random peers) before waiting for any
 * of them. */
static void
op_batch(sk_agent_t *ag)
{
    enum { NB = 4 };
    static sk_piece_t pc[NB][16];
    nxl_desc_t ld[NB][16], rd[NB][16];
    sk_peer_t *pp[NB];
    nxl_xfer_t *x[NB];
    nxl_status_t s[NB];
    uint32_t inc[NB];
    uint64_t len[NB], quarter = ag->max / NB;
    size_t k[NB], i, j, n = 1 + (size_t)sk_rng_below(&ag->rng, NB);
    double t0 = sk_now_s();

    if (quarter == 0) {
        return;
    }
    for (i = 0; i < n; i++) {
        uint64_t pos = 0;

        x[i] = NULL;
        pp[i] = pick_peer(ag);
        if (pp[i] == NULL) {
            return;
        }
        inc[i] = pp[i]->loaded_inc;
        len[i] = sk_rng_logsize(&ag->rng, quarter);
        k[i] = 1 + (size_t)sk_rng_below(&ag->rng, 16);
        if (k[i] > len[i]) {
            k[i] = (size_t)len[i];
        }
        read_pieces(ag, pp[i]->pat_seed, ag->pat_len, len[i], k[i], pc[i]);
        for (j = 0; j < k[i]; j++) {
            ld[i][j] = (nxl_desc_t){(uintptr_t)(ag->dst + i * quarter + pos),
                                    pc[i][j].len, 0};
            rd[i][j] =
                (nxl_desc_t){pp[i]->pat_addr + pc[i][j].off, pc[i][j].len, 0};
            pos += pc[i][j].len;
        }
        memset(ag->dst + i * quarter, ag->poison++, len[i]);
    }
    for (i = 0; i < n; i++) {
        s[i] = make_xfer(ag, NXL_READ, ld[i], rd[i], k[i], pp[i]->name, NULL,
                         &x[i]);
        if (s[i] == NXL_OK) {
            s[i] = nxl_xfer_post(x[i], NULL);
        }
    }
    for (i = 0; i < n; i++) {
        while (s[i] == NXL_IN_PROG) {
            s[i] = nxl_xfer_wait(x[i], 1000);
            if (s[i] == NXL_ERR_TIMEOUT) {
                heartbeat(ag);
                if (sk_now_s() - t0 <= ag->o->op_timeout_s) {
                    s[i] = NXL_IN_PROG;
                }
            }
        }
    }
    for (i = 0; i < n; i++) {
        nxl_xfer_release(x[i]);
    }
    note_time(ag, sk_now_s() - t0);
    for (i = 0; i < n; i++) {
        if (s[i] != NXL_OK) {
            op_error(ag, pp[i], inc[i], "batched READ", s[i]);
            continue;
        }
        ag->st.reads++;
        ag->st.ops++;
        ag->st.descs += k[i];
        (void)check_pattern(ag, ag->dst + i * quarter, len[i], pc[i], k[i],
                            "batched READ", pp[i]->name);
    }
    ag->st.batches++;
}

/* op_repost re-posts p's kept READ handle. A handle made before p was
 * invalidated or reloaded must be refused with NXL_ERR_NOT_FOUND
 * (nxl_xfer_post's contract); then a new one is made. */
static void
op_repost(sk_agent_t *ag, sk_peer_t *p)
{
    nxl_desc_t ld, rd;
    nxl_status_t s;
    sk_piece_t pc;
    uint32_t inc = p->loaded_inc;
    double secs;

    if (p->kept != NULL && p->kept_epoch != p->epoch) {
        s = xfer_run(ag, p->kept, NULL, NULL);
        if (s == NXL_ERR_NOT_FOUND) {
            ag->st.stale_checks++;
        } else {
            fail(ag,
                 "a transfer made before %s was invalidated or reloaded "
                 "was posted: %s (%s), expected NXL_ERR_NOT_FOUND",
                 p->name, nxl_status_name(s), nxl_last_error());
        }
        nxl_xfer_release(p->kept);
        p->kept = NULL;
    }
    if (p->kept == NULL) {
        uint64_t cap = ag->max < SK_MIB ? ag->max : SK_MIB;

        p->kept_len = sk_rng_logsize(&ag->rng, cap);
        p->kept_off = sk_rng_below(&ag->rng, ag->pat_len - p->kept_len + 1);
        p->kept_loc = sk_rng_below(&ag->rng, ag->max - p->kept_len + 1);
        p->kept_seed = p->pat_seed;
        ld = (nxl_desc_t){(uintptr_t)(ag->dst + p->kept_loc), p->kept_len, 0};
        rd = (nxl_desc_t){p->pat_addr + p->kept_off, p->kept_len, 0};
        s = make_xfer(ag, NXL_READ, &ld, &rd, 1, p->name, NULL, &p->kept);
        if (s != NXL_OK) {
            p->kept = NULL;
            op_error(ag, p, inc, "kept READ create", s);
            return;
        }
        p->kept_epoch = p->epoch;
    }
    memset(ag->dst + p->kept_loc, ag->poison++, p->kept_len);
    s = xfer_run(ag, p->kept, NULL, &secs);
    if (s != NXL_OK) {
        op_error(ag, p, inc, "kept READ re-post", s);
        return;
    }
    note_time(ag, secs);
    ag->st.reposts++;
    ag->st.reads++;
    ag->st.ops++;
    ag->st.descs++;
    pc = (sk_piece_t){p->kept_seed, p->kept_off, p->kept_len};
    (void)check_pattern(ag, ag->dst + p->kept_loc, p->kept_len, &pc, 1,
                        "kept READ", p->name);
}

/* untouched reports whether len bytes at buf all equal v. */
static int
untouched(const uint8_t *buf, uint64_t len, uint8_t v, uint64_t *at_p)
{
    uint64_t i, w = 0x0101010101010101ull * v;

    for (i = 0; i + 8 <= len; i += 8) {
        uint64_t x;

        memcpy(&x, buf + i, 8);
        if (x != w) {
            break;
        }
    }
    for (; i < len; i++) {
        if (buf[i] != v) {
            *at_p = i;
            return 0;
        }
    }
    return 1;
}

/* op_cancel posts a READ of p's pattern (or a WRITE into this agent's
 * slot at p) and releases it at once or after a moment, mostly while it
 * is in flight. nxl_xfer_release must return only once no backend
 * touches the buffers: the destination of a READ is filled with a marker
 * right after, and must still hold it a few milliseconds later. The slot
 * at p is undefined after a canceled WRITE (docs/backends/tcp.md, TCP
 * "Cancel and release"); the next WRITE there is read back, so no check
 * relies on it. */
static void
op_cancel(sk_agent_t *ag, sk_peer_t *p)
{
    nxl_desc_t ld, rd;
    nxl_xfer_t *x = NULL;
    nxl_status_t s;
    uint32_t inc = p->loaded_inc;
    int write = sk_rng_below(&ag->rng, 3) == 0;
    uint64_t len = pick_len(ag, ag->max), loff, roff, at = 0;
    uint8_t mark = (uint8_t)(ag->poison++ | 1);

    loff = sk_rng_below(&ag->rng, ag->max - len + 1);
    if (write) {
        roff = sk_rng_below(&ag->rng, ag->wslot_len - len + 1);
        ld = (nxl_desc_t){(uintptr_t)(ag->src + loff), len, 0};
        rd = (nxl_desc_t){p->slot_addr + (uint64_t)ag->idx * ag->stride + roff,
                          len, 0};
    } else {
        roff = sk_rng_below(&ag->rng, ag->pat_len - len + 1);
        ld = (nxl_desc_t){(uintptr_t)(ag->dst + loff), len, 0};
        rd = (nxl_desc_t){p->pat_addr + roff, len, 0};
    }
    s = make_xfer(ag, write ? NXL_WRITE : NXL_READ, &ld, &rd, 1, p->name, NULL,
                  &x);
    if (s != NXL_OK) {
        op_error(ag, p, inc, "create (to cancel)", s);
        return;
    }
    s = nxl_xfer_post(x, NULL);
    if (s == NXL_IN_PROG && sk_rng_below(&ag->rng, 2) == 0) {
        s = nxl_xfer_wait(x, (int)sk_rng_below(&ag->rng, 3));
        if (s == NXL_ERR_TIMEOUT) {
            s = NXL_IN_PROG;
        }
    }
    nxl_xfer_release(x);
    if (s != NXL_OK && s != NXL_IN_PROG) {
        op_error(ag, p, inc, "post (to cancel)", s);
        return;
    }
    if (!write) {
        memset(ag->dst + loff, mark, len);
        usleep(2000);
        if (!untouched(ag->dst + loff, len, mark, &at)) {
            fail(ag,
                 "CORRUPTION: %s wrote byte %" PRIu64 " of a canceled "
                 "%" PRIu64 "-byte READ after nxl_xfer_release returned "
                 "(status at release %s)",
                 p->name, at, len, nxl_status_name(s));
        }
    }
    ag->st.cancels++;
    ag->st.ops++;
    ag->st.descs++;
}

/* op_inval drops p's metadata and loads it again. Only with no
 * notification to p unacknowledged: a reload may replace the stream they
 * travel on, and nothing orders two streams. */
static void
op_inval(sk_agent_t *ag, sk_peer_t *p)
{
    if (out_count(p) != 0) {
        return;
    }
    peer_unload(ag, p);
    peer_fetch(ag, p);
}

/* ---------------------------------------------------------------------- */
/* Receiving notifications. */

static void
handle_ack(sk_agent_t *ag, sk_peer_t *p, const sk_nmsg_t *h)
{
    unsigned i;

    if (h->sender_inc != p->loaded_inc || h->sender_inc <= p->dead_inc) {
        /* From an incarnation that is gone (read late from its stream):
         * what it acknowledges was counted lost when it died. */
        ag->st.late_old++;
        return;
    }
    for (i = 0; i < SK_WINDOW; i++) {
        sk_out_t *o = &p->out[i];

        if (o->used && o->cls == h->cls && o->seq == h->seq) {
            o->used = 0;
            if (o->sub >= 0) {
                p->sub_busy[o->sub] = 0;
            }
            ag->st.acks++;
            return;
        }
    }
    fail(ag,
         "unexpected acknowledgement from %s (incarnation %u, class %u, "
         "seq %" PRIu64 "; loaded %u, announced %u, dead %u, sent %" PRIu64
         "/%" PRIu64 ")",
         p->name, h->sender_inc, h->cls, h->seq, p->loaded_inc, p->inc,
         p->dead_inc, p->xseq, p->sseq);
}

static void
handle_notif(sk_agent_t *ag, const char *from, const uint8_t *msg, size_t len)
{
    sk_nmsg_t h;
    sk_peer_t *p;
    uint64_t *rx;
    uint8_t *pad = ag->pad;

    if (len < sizeof(h)) {
        fail(ag, "notification of %zu bytes from %s (too short)", len, from);
        return;
    }
    memcpy(&h, msg, sizeof(h));
    if (h.magic != SK_NMAGIC || h.pad_len > SK_PAD_BIG ||
        len != sizeof(h) + h.pad_len || h.sender >= ag->nagents ||
        !ag->peers[h.sender].exists) {
        fail(ag, "malformed notification from %s (%zu bytes, magic %08x)", from,
             len, h.magic);
        return;
    }
    p = &ag->peers[h.sender];
    if (strcmp(p->name, from) != 0) {
        fail(ag, "notification says sender %u (%s) but came from %s", h.sender,
             p->name, from);
        return;
    }
    sk_pattern_fill(pad, sk_mix64(h.seq ^ ((uint64_t)h.type << 56)), 0,
                    h.pad_len);
    if (memcmp(pad, msg + sizeof(h), h.pad_len) != 0) {
        fail(ag,
             "CORRUPTION: notification payload from %s (seq %" PRIu64
             ", %zu bytes) differs",
             from, h.seq, len);
        return;
    }
    if (ag->o->trace) {
        fprintf(stderr,
                "%.6f RX from %s type %c class %d seq %" PRIu64 " len %zu\n",
                sk_now_s(), from, h.type, h.cls, h.seq, len);
    }
    if (h.recv_inc != ag->inc) {
        fail(ag,
             "notification from %s (incarnation %u) was addressed to "
             "incarnation %u and reached incarnation %u",
             from, h.sender_inc, h.recv_inc, ag->inc);
        return;
    }
    if (h.type == SK_N_ACK) {
        handle_ack(ag, p, &h);
        return;
    }
    if (h.sender_inc < p->rx_inc) {
        ag->st.late_old++; /* the old incarnation's stream, read late */
        return;
    }
    if (h.sender_inc > p->rx_inc) {
        p->rx_inc = h.sender_inc;
        p->rx_xseq = 0;
        p->rx_sseq = 0;
    }
    rx = h.cls == SK_CLS_XFER ? &p->rx_xseq : &p->rx_sseq;
    if (h.seq != *rx + 1) {
        fail(ag,
             "notification from %s (incarnation %u, %s) out of order: "
             "seq %" PRIu64 " after %" PRIu64,
             from, h.sender_inc,
             h.cls == SK_CLS_XFER ? "transfer" : "standalone", h.seq, *rx);
    }
    if (h.seq > *rx) {
        *rx = h.seq;
    }
    if (h.type == SK_N_WRITE && h.data_seed != 0) {
        const uint8_t *at;
        uint64_t lo, hi;

        if (h.sub >= ag->nsub || h.off + h.len > ag->sub_len || h.len == 0) {
            fail(ag,
                 "notification from %s names sub-slot %u [%" PRIu64
                 ", +%" PRIu64 ") outside the slot",
                 from, h.sub, h.off, h.len);
            return;
        }
        at = ag->slots + (uint64_t)h.sender * ag->stride + ag->wslot_len +
             (uint64_t)h.sub * ag->sub_len + h.off;
        sk_hash(at, h.len, &lo, &hi);
        if (lo != h.h_lo || hi != h.h_hi) {
            sk_piece_t pc = {h.data_seed, 0, h.len};
            char text[600];

            if (sk_pattern_diff(at, &pc, 1, NULL, 0, text, sizeof(text)) == 0) {
                snprintf(text, sizeof(text),
                         "the bytes match the stream; "
                         "the carried hash does not");
            }
            fail(ag,
                 "CORRUPTION: WRITE with notification from %s (seq %" PRIu64
                 ") not in memory when its notification arrived: %s",
                 from, h.seq, text);
        } else {
            ag->st.notif_bytes_checked += h.len;
            ag->st.bytes_checked += h.len;
        }
    }
    ag->st.notifs_checked++;
    if (ag->acks_on) {
        if (p->nacks < SK_ACKQ) {
            p->acks[p->nacks++] = (sk_ack_t){h.cls, h.seq, h.sender_inc};
        } else {
            fail(ag, "internal: ack queue of %s full", p->name);
        }
    }
}

static void
notif_service(sk_agent_t *ag)
{
    nxl_notif_list_t *l = NULL;
    nxl_status_t s;
    size_t i;

    s = nxl_notifs_get(ag->a, &l, NULL);
    if (s != NXL_OK) {
        fail_st(ag, s, "nxl_notifs_get");
        return;
    }
    for (i = 0; l != NULL && i < l->count; i++) {
        handle_notif(ag, l->items[i].agent, l->items[i].msg, l->items[i].len);
    }
    nxl_notif_list_free(l);
}

/* ack_flush sends the queued acknowledgements whose sender is loaded. */
static void
ack_flush(sk_agent_t *ag)
{
    unsigned i, j;

    for (i = 0; i < ag->nagents; i++) {
        sk_peer_t *p = &ag->peers[i];
        unsigned keep = 0;

        for (j = 0; j < p->nacks; j++) {
            sk_ack_t *k = &p->acks[j];
            uint8_t *nbuf = ag->nbuf;
            sk_nmsg_t h;
            size_t n;
            nxl_status_t s;

            if (k->sender_inc < p->inc || k->sender_inc <= p->dead_inc) {
                continue; /* that sender is gone: drop */
            }
            if (!p->up || p->loaded_inc != k->sender_inc) {
                p->acks[keep++] = *k; /* not loaded yet */
                continue;
            }
            n = fill_nmsg(ag, p, SK_N_ACK, k->cls, k->seq, nbuf);
            memcpy(&h, nbuf, sizeof(h));
            h.cls = (uint8_t)k->cls;
            memcpy(nbuf, &h, sizeof(h));
            s = nxl_notif_send(ag->a, p->name, nbuf, n, NULL);
            if (s != NXL_OK) {
                op_error(ag, p, k->sender_inc, "acknowledgement", s);
            }
        }
        p->nacks = keep;
    }
}

/* ack_deadlines fails notifications a live peer has not acknowledged in
 * time. */
static void
ack_deadlines(sk_agent_t *ag)
{
    double now = sk_now_s();
    unsigned i, j;

    for (i = 0; i < ag->nagents; i++) {
        sk_peer_t *p = &ag->peers[i];

        if (!peer_ready(p)) {
            continue;
        }
        for (j = 0; j < SK_WINDOW; j++) {
            sk_out_t *o = &p->out[j];

            if (o->used && now - o->t_sent > ag->o->ack_timeout_s) {
                ag->blame = i + 1;
                fail(ag,
                     "notification to %s (%s seq %" PRIu64 ", %zu "
                     "bytes) not acknowledged within %.0f s: lost, or never "
                     "delivered",
                     p->name, o->cls == SK_CLS_XFER ? "transfer" : "standalone",
                     o->seq, o->len, ag->o->ack_timeout_s);
                o->used = 0;
                if (o->sub >= 0) {
                    p->sub_busy[o->sub] = 0;
                }
            }
        }
    }
}

/* service does everything but traffic: control, deaths, loads,
 * notifications, acknowledgements, heartbeat. */
static void
service(sk_agent_t *ag)
{
    ctl_poll(ag, 0);
    handle_downs(ag);
    fetch_pending(ag);
    notif_service(ag);
    ack_flush(ag);
    ack_deadlines(ag);
    heartbeat(ag);
}

/* ---------------------------------------------------------------------- */
/* Checkpoints: every peer touched with the largest transfers, every
 * notification acknowledged, then pause until RESUME. The parent samples
 * resources while all agents are paused. */

static int
all_acked(const sk_agent_t *ag)
{
    unsigned i;

    for (i = 0; i < ag->nagents; i++) {
        if (ag->peers[i].exists && out_count(&ag->peers[i]) != 0) {
            return 0;
        }
    }
    return 1;
}

static void
checkpoint(sk_agent_t *ag)
{
    uint64_t k = ag->ckpt;
    double until;
    unsigned i, s;
    sk_msg_t m;

    ag->ckpt = 0;
    service(ag);
    ag->touch = 1;
    for (i = 0; i < ag->nagents; i++) {
        sk_peer_t *p = &ag->peers[i];

        if (!peer_ready(p)) {
            if (p->exists) {
                fail(ag, "checkpoint %" PRIu64 ": peer %s is not loaded", k,
                     p->name);
            }
            continue;
        }
        op_read(ag, p, 0);
        op_write(ag, p, 0);
        op_repost(ag, p);
        op_solo(ag, p);
        for (s = 0; s < ag->nsub && peer_ready(p); s++) {
            while (out_count(p) >= SK_WINDOW - 1 && peer_ready(p)) {
                service(ag);
                idle_wait(ag, 5);
            }
            op_write(ag, p, 1);
        }
    }
    ag->touch = 0;
    until = sk_now_s() + ag->o->ack_timeout_s;
    while (!all_acked(ag) && sk_now_s() < until) {
        service(ag);
        idle_wait(ag, 5);
    }
    if (!all_acked(ag)) {
        fail(ag,
             "checkpoint %" PRIu64 ": notifications unacknowledged "
             "after %.0f s",
             k, ag->o->ack_timeout_s);
    }
    memset(&m, 0, sizeof(m));
    m.type = SK_M_CKPT_DONE;
    m.idx = ag->idx;
    m.inc = ag->inc;
    m.u[0] = k;
    m.u[1] = trim_heap(); /* the parent samples RSS on this message */
    m.st = ag->st;
    (void)sk_msg_send(ag->ctl, &m);
    ag->paused = 1;
}

/* ---------------------------------------------------------------------- */
/* Setup. */

static void *
map_anon(uint64_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    return p == MAP_FAILED ? NULL : p;
}

static uint64_t
page_up(uint64_t n)
{
    return (n + 4095) & ~(uint64_t)4095;
}

static int
setup(sk_agent_t *ag)
{
    const sk_opts_t *o = ag->o;
    nxl_agent_config_t cfg;
    static char pbuf[256];
    nxl_param_t prm[SK_MAX_PARAMS];
    nxl_params_t params = {prm, 0};
    char *tok, *save = NULL;
    nxl_desc_t d[3];
    nxl_dlist_t dl = {NXL_DRAM, d, 0};
    nxl_status_t s;
    unsigned i;
    int target = ag->role != SK_ROLE_INITIATOR;

    ag->nbuf = malloc(SK_NMSG_MAX);
    ag->pad = malloc(SK_PAD_BIG);
    if (ag->nbuf == NULL || ag->pad == NULL) {
        fail(ag, "out of memory");
        return -1;
    }
    ag->max = o->max_size;
    ag->wslot_len = page_up(ag->max);
    ag->nsub = ag->role == SK_ROLE_AGENT ? SK_NSUB : 0;
    ag->sub_len =
        ag->nsub ? page_up(ag->max < 2 * SK_MIB ? ag->max : 2 * SK_MIB) : 0;
    ag->stride = ag->wslot_len + ag->nsub * ag->sub_len;
    ag->pat_len = page_up(ag->max);
    ag->pat_seed = sk_pattern_seed(o->seed, ag->group, ag->idx, ag->inc);
    if (target) {
        s = nxl_mem_alloc_shared(ag->pat_len, (void **)&ag->pat);
        if (s != NXL_OK) {
            fail_st(ag, s, "nxl_mem_alloc_shared");
            return -1;
        }
        sk_pattern_fill(ag->pat, ag->pat_seed, 0, ag->pat_len);
        ag->slots_len = ag->stride * ag->nagents;
        ag->slots = map_anon(ag->slots_len);
        if (ag->slots == NULL) {
            fail(ag, "mmap of %" PRIu64 " bytes of slots: %s", ag->slots_len,
                 strerror(errno));
            return -1;
        }
        /* Prefault every slot but this agent's own (never written). */
        for (i = 0; i < ag->nagents; i++) {
            if (i != ag->idx) {
                memset(ag->slots + i * ag->stride, 0, ag->stride);
            }
        }
    }
    if (ag->role != SK_ROLE_TARGET) {
        ag->loc_len = 2 * page_up(ag->max);
        ag->loc = map_anon(ag->loc_len);
        if (ag->loc == NULL) {
            fail(ag, "mmap of %" PRIu64 " local bytes: %s", ag->loc_len,
                 strerror(errno));
            return -1;
        }
        memset(ag->loc, 0, ag->loc_len);
        ag->src = ag->loc;
        ag->dst = ag->loc + page_up(ag->max);
    }

    nxl_agent_config_init(&cfg);
    cfg.listen_thread = target;
    cfg.listen_port = 0;
    cfg.listen_addr = o->addr;
    cfg.progress_thread = (int)o->progress_thread;
    s = nxl_agent_create(ag->name, &cfg, &ag->a);
    if (s != NXL_OK) {
        fail_st(ag, s, "nxl_agent_create");
        return -1;
    }
    if (strcasecmp(o->backend, "TCP") == 0 &&
        strcmp(o->addr, "127.0.0.1") != 0) {
        prm[params.count++] = (nxl_param_t){"bind_addr", o->addr};
    }
    /* --params key=value:key=value (the copy is cut in place). */
    snprintf(pbuf, sizeof(pbuf), "%s", o->params);
    for (tok = strtok_r(pbuf, ":", &save); tok != NULL;
         tok = strtok_r(NULL, ":", &save)) {
        char *eq = strchr(tok, '=');

        if (eq == NULL || params.count == SK_MAX_PARAMS) {
            fail(ag, "bad backend params '%s'", o->params);
            return -1;
        }
        *eq = '\0';
        prm[params.count++] = (nxl_param_t){tok, eq + 1};
    }
    s = nxl_backend_create(ag->a, o->backend, params.count ? &params : NULL,
                           NULL);
    if (s != NXL_OK) {
        fail_st(ag, s, "nxl_backend_create");
        return -1;
    }
    if (target) {
        d[dl.count++] = (nxl_desc_t){(uintptr_t)ag->pat, ag->pat_len, 0};
        d[dl.count++] = (nxl_desc_t){(uintptr_t)ag->slots, ag->slots_len, 0};
    }
    if (ag->loc != NULL) {
        d[dl.count++] = (nxl_desc_t){(uintptr_t)ag->loc, ag->loc_len, 0};
    }
    s = nxl_mem_register(ag->a, &dl, NULL);
    if (s != NXL_OK) {
        fail_st(ag, s, "nxl_mem_register");
        return -1;
    }
    for (i = 0; i < ag->nagents; i++) {
        sk_peer_t *p = &ag->peers[i];

        if (i == ag->idx) {
            continue;
        }
        if (ag->role == SK_ROLE_INITIATOR && i != 0) {
            continue; /* an initiator knows only the target */
        }
        p->exists = 1;
        snprintf(p->name, sizeof(p->name), "%s-%s-%u",
                 ag->role == SK_ROLE_AGENT ? "soak" : "fanin", o->label, i);
    }
    return 0;
}

static void
teardown(sk_agent_t *ag)
{
    unsigned i;

    for (i = 0; i < ag->nagents; i++) {
        nxl_xfer_release(ag->peers[i].kept);
        ag->peers[i].kept = NULL;
    }
    nxl_agent_destroy(ag->a);
    ag->a = NULL;
    nxl_mem_free_shared(ag->pat);
    if (ag->slots != NULL) {
        munmap(ag->slots, ag->slots_len);
    }
    if (ag->loc != NULL) {
        munmap(ag->loc, ag->loc_len);
    }
}

static void
say_hello(sk_agent_t *ag, uint32_t type)
{
    sk_msg_t m;

    memset(&m, 0, sizeof(m));
    m.type = type;
    m.idx = ag->idx;
    m.inc = ag->inc;
    m.u[0] = nxl_agent_listen_port(ag->a);
    m.u[1] = (uintptr_t)ag->pat;
    m.u[2] = (uintptr_t)ag->slots;
    m.u[3] = (uint64_t)getpid();
    if (sk_msg_send(ag->ctl, &m) != 0) {
        _exit(3);
    }
}

static void
bye(sk_agent_t *ag)
{
    send_stats(ag, SK_M_BYE);
}

/* ---------------------------------------------------------------------- */
/* The three roles. */

static void
soak_loop(sk_agent_t *ag)
{
    while (!ag->stop) {
        sk_peer_t *p;
        uint64_t r;

        service(ag);
        if (ag->stop) {
            break;
        }
        if (ag->ckpt != 0) {
            checkpoint(ag);
            continue;
        }
        if (ag->paused) {
            idle_wait(ag, 20);
            continue;
        }
        p = pick_peer(ag);
        r = sk_rng_below(&ag->rng, 100);
        if (p == NULL) {
            if (r < 50) {
                op_loop(ag);
            } else {
                idle_wait(ag, 20);
            }
            continue;
        }
        if (r < 26) {
            op_read(ag, p, 0);
        } else if (r < 50) {
            op_write(ag, p, 0);
        } else if (r < 60) {
            op_write(ag, p, 1);
        } else if (r < 66) {
            op_read(ag, p, 1);
        } else if (r < 72) {
            op_solo(ag, p);
        } else if (r < 78) {
            op_batch(ag);
        } else if (r < 91) {
            op_repost(ag, p);
        } else if (r < 95) {
            op_loop(ag);
        } else if (r < 98) {
            op_cancel(ag, p);
        } else if (sk_rng_below(&ag->rng, 4) == 0) {
            op_inval(ag, p);
        }
    }
}

static void
initiator_loop(sk_agent_t *ag)
{
    sk_peer_t *p = &ag->peers[0];
    sk_msg_t m;
    uint64_t t0, t1;
    nxl_status_t s;
    nxl_opts_t o;

    say_hello(ag, SK_M_READY);
    while (!ag->go && !ag->stop) {
        ctl_poll(ag, 100);
    }
    /* The timed fetch: all initiators get GO at once. */
    nxl_opts_init(&o);
    o.ip_addr = ag->o->peer_addr;
    o.port = p->port;
    t0 = sk_now_ns();
    s = nxl_md_fetch(ag->a, p->name, &o);
    t1 = sk_now_ns();
    memset(&m, 0, sizeof(m));
    m.type = SK_M_FETCHED;
    m.idx = ag->idx;
    m.inc = ag->inc;
    m.status = s;
    m.u[0] = t0;
    m.u[1] = t1;
    if (s != NXL_OK) {
        snprintf(m.text, sizeof(m.text), "%s", nxl_last_error());
        fail_st(ag, s, "nxl_md_fetch of the target");
    }
    (void)sk_msg_send(ag->ctl, &m);
    if (s == NXL_OK) {
        p->loaded_inc = p->inc;
        p->tx_inc = p->inc;
        p->epoch++;
        ag->st.fetches++;
    }
    while (!ag->stop) {
        uint64_t r;

        ctl_poll(ag, 0);
        heartbeat(ag);
        if (ag->stop) {
            break;
        }
        if (p->loaded_inc != p->inc) {
            peer_fetch(ag, p);
            if (p->loaded_inc != p->inc) {
                idle_wait(ag, 100);
                continue;
            }
        }
        r = sk_rng_below(&ag->rng, 100);
        if (r < 30) {
            op_read(ag, p, 0);
        } else if (r < 60) {
            op_write(ag, p, 0);
        } else if (r < 72) {
            op_write(ag, p, 1);
        } else if (r < 80) {
            op_read(ag, p, 1);
        } else if (r < 86) {
            op_solo(ag, p);
        } else {
            op_repost(ag, p);
        }
        notif_service(ag);
    }
}

static void
target_loop(sk_agent_t *ag)
{
    double until;
    unsigned i;

    while (!ag->stop) {
        ctl_poll(ag, 0);
        notif_service(ag);
        heartbeat(ag);
        idle_wait(ag, 100);
    }
    /* Drain what is still on its way, then report what arrived. */
    until = sk_now_s() + 1.0;
    while (sk_now_s() < until) {
        notif_service(ag);
        idle_wait(ag, 50);
    }
    for (i = 0; i < ag->nagents; i++) {
        sk_peer_t *p = &ag->peers[i];
        sk_msg_t m;

        if (!p->exists || p->rx_inc == 0) {
            continue;
        }
        memset(&m, 0, sizeof(m));
        m.type = SK_M_RX;
        m.idx = i;
        m.inc = p->rx_inc;
        m.u[0] = p->rx_xseq;
        m.u[1] = p->rx_sseq;
        (void)sk_msg_send(ag->ctl, &m);
    }
}

int
sk_child_main(const sk_opts_t *o)
{
    sk_agent_t *ag = &G;

    memset(ag, 0, sizeof(*ag));
    signal(SIGPIPE, SIG_IGN);
    ag->o = o;
    ag->role = o->role;
    ag->ctl = SK_CTL_FD;
    ag->group = o->group;
    ag->idx = o->index;
    ag->inc = o->inc;
    ag->nagents = o->agents;
    ag->acks_on = o->role == SK_ROLE_AGENT;
    ag->next_stats = sk_now_s() + 1.0;
    snprintf(ag->name, sizeof(ag->name), "%s-%s-%u",
             o->role == SK_ROLE_AGENT ? "soak" : "fanin", o->label, o->index);
    sk_rng_seed(&ag->rng, sk_mix64(o->seed ^ ((uint64_t)o->inc << 32) ^
                                   ((uint64_t)o->group << 16) ^ o->index));
    ag->poison = (uint8_t)sk_rng_next(&ag->rng);
    fprintf(stderr, "[%s inc %u] pid %d starting\n", ag->name, ag->inc,
            (int)getpid());
    if (ag->nagents > SK_MAX_AGENTS || ag->idx >= ag->nagents) {
        fail(ag, "bad index %u of %u", ag->idx, ag->nagents);
        return 2;
    }
    if (setup(ag) != 0) {
        return 2;
    }
    switch (ag->role) {
    case SK_ROLE_AGENT:
        say_hello(ag, SK_M_HELLO);
        soak_loop(ag);
        break;
    case SK_ROLE_TARGET:
        say_hello(ag, SK_M_HELLO);
        target_loop(ag);
        break;
    case SK_ROLE_INITIATOR:
        initiator_loop(ag);
        break;
    default:
        return 2;
    }
    teardown(ag);
    bye(ag);
    fprintf(stderr, "[%s inc %u] clean exit\n", ag->name, ag->inc);
    return 0;
}
