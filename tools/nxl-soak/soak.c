/*
 * soak.c - the parent of the soak mode.
 *
 * Per backend, a group of N agents (separate processes, every one a
 * target and an initiator of every other). Agents with index < stable are
 * never killed; the others are killed with SIGKILL at random (exponential
 * gaps of mean --kill-interval per backend) and restarted after 0.2-2 s as
 * a new incarnation under the same name. The parent announces every start
 * (PEER: port and addresses) and every kill (DOWN) to the others.
 *
 * Checkpoints (after the warm-up, every --ckpt-interval, and at the end):
 * kills pause, every agent is up, each touches every peer with the largest
 * transfers and waits for all its notifications to be acknowledged, then
 * pauses; the parent samples every agent's RSS, fds, mappings and threads
 * in that quiet state and lets them go on. The stable agents' samples at
 * the first and the last checkpoint are compared: RssAnon and RssShmem
 * may grow by at most --rss-pct plus --rss-slack-mib, mappings by 16,
 * fds and threads not at all. The same applies to a killable agent that
 * was not restarted between the two.
 */
#include "soak.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#define SK_MAX_CKPT 32
#define SK_MAX_FAILS 200
#define SK_FDLIST 8192
#define SK_MAX_DUMPS 3   /* failures that get both ends' backtraces */
#define SK_MAPS_SLACK 16 /* malloc's own mmap'ed chunks come and go */

typedef struct grp {
    const char *backend; /* the spec, as given */
    char type[16], label[96], params[256];
    unsigned g, n;
    sk_child_t ch[SK_MAX_AGENTS];
    unsigned incs[SK_MAX_AGENTS]; /* incarnations started */
    int down[SK_MAX_AGENTS];      /* killed, restart pending */
    double restart_at[SK_MAX_AGENTS];
    int ckpt_done[SK_MAX_AGENTS];
    double next_kill;
    uint64_t kills;
    sk_stats_t done_sum; /* finished incarnations */
    sk_proc_t ck[SK_MAX_CKPT][SK_MAX_AGENTS];
    unsigned ck_inc[SK_MAX_CKPT][SK_MAX_AGENTS];
    double ck_t[SK_MAX_CKPT];
    char *fd_first[SK_MAX_AGENTS]; /* fd list at the first checkpoint */
    char *fd_last[SK_MAX_AGENTS];
    sk_proc_t peak[SK_MAX_AGENTS]; /* largest samples after warm-up */
    unsigned nck;                  /* checkpoints sampled */
    int dead;                      /* retired after a crash or hang */
    double t_dead;
    char why[160];
} grp_t;

typedef struct soak {
    const sk_opts_t *o;
    const char *self;
    grp_t grp[SK_MAX_GROUPS];
    unsigned ngrp;
    unsigned nck;
    int abort;      /* stop early: a crash or a hang */
    unsigned dumps; /* backtraces taken for failures */
    uint64_t parent_failures;
    char *fails[SK_MAX_FAILS];
    unsigned nfails;
    double t0;
    sk_rng_t rng;
} soak_t;

static void __attribute__((format(printf, 2, 3)))
pfail(soak_t *s, const char *fmt, ...)
{
    char buf[SK_TEXT + 256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    s->parent_failures++;
    fprintf(sk_txt, "FAIL %s\n", buf);
    fflush(sk_txt);
    if (s->nfails < SK_MAX_FAILS) {
        s->fails[s->nfails++] = strdup(buf);
    }
}

static void
note_fail(soak_t *s, const char *buf)
{
    fprintf(sk_txt, "FAIL %s\n", buf);
    fflush(sk_txt);
    if (s->nfails < SK_MAX_FAILS) {
        s->fails[s->nfails++] = strdup(buf);
    }
}

/* retire stops backend g after one of its agents crashed or hung: its
 * agents are killed and it takes no further part (checkpoints, kills,
 * verdict), so the other backends go on. The run ends when none is
 * left. */
static void
retire(soak_t *s, grp_t *g, const char *why)
{
    unsigned i, gi, alive = 0;

    if (g->dead) {
        return;
    }
    g->dead = 1;
    g->t_dead = sk_now_s() - s->t0;
    snprintf(g->why, sizeof(g->why), "%s", why);
    pfail(s, "backend %s retired at %.0f s: %s (the others go on)", g->backend,
          g->t_dead, why);
    for (i = 0; i < g->n; i++) {
        sk_kill(&g->ch[i]);
        g->down[i] = 0;
    }
    for (gi = 0; gi < s->ngrp; gi++) {
        alive += !s->grp[gi].dead;
    }
    if (alive == 0) {
        s->abort = 1;
    }
}

static void
child_name(const grp_t *g, unsigned i, char *buf, size_t cap)
{
    snprintf(buf, cap, "soak-%s-%u", g->label, i);
}

static void
send_peer(soak_t *s, grp_t *g, unsigned to, unsigned about)
{
    sk_child_t *a = &g->ch[about];
    sk_msg_t m;

    (void)s;
    memset(&m, 0, sizeof(m));
    m.type = SK_M_PEER;
    m.idx = about;
    m.inc = a->inc;
    m.u[0] = a->port;
    m.u[1] = a->pat_addr;
    m.u[2] = a->slot_addr;
    (void)sk_msg_send(g->ch[to].fd, &m);
}

static int
usable(const grp_t *g, unsigned i)
{
    const sk_child_t *c = &g->ch[i];

    return c->alive && c->hello && !c->killed && c->fd >= 0 && !g->down[i];
}

static int
start_agent(soak_t *s, grp_t *g, unsigned i)
{
    sk_spawn_cfg_t c;

    memset(&c, 0, sizeof(c));
    c.self_exe = s->self;
    c.o = s->o;
    c.role = SK_ROLE_AGENT;
    c.backend = g->type;
    c.label = g->label;
    c.params = g->params;
    c.group = g->g;
    c.idx = i;
    c.inc = ++g->incs[i];
    c.agents = g->n;
    c.progress_thread = (i % 2) == 1;
    c.max_size = s->o->max_size;
    if (sk_spawn(&c, &g->ch[i]) != 0) {
        pfail(s, "%s: cannot start agent %u", g->backend, i);
        return -1;
    }
    g->down[i] = 0;
    return 0;
}

/* finished records the last stats of an incarnation that is gone. */
static void
finished(grp_t *g, unsigned i)
{
    sk_child_t *c = &g->ch[i];

    sk_stats_add(&g->done_sum, &c->st);
    memset(&c->st, 0, sizeof(c->st));
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

static void
handle_msg(soak_t *s, grp_t *g, unsigned i, const sk_msg_t *m)
{
    sk_child_t *c = &g->ch[i];
    char name[SK_NAME_MAX];
    unsigned j;

    child_name(g, i, name, sizeof(name));
    switch (m->type) {
    case SK_M_HELLO:
        c->hello = 1;
        c->t_hello = sk_now_s();
        c->port = (uint16_t)m->u[0];
        c->pat_addr = m->u[1];
        c->slot_addr = m->u[2];
        for (j = 0; j < g->n; j++) {
            if (j != i && usable(g, j)) {
                send_peer(s, g, j, i);
                send_peer(s, g, i, j);
            }
        }
        break;
    case SK_M_STATS:
        c->st = m->st;
        c->t_last_stats = sk_now_s();
        break;
    case SK_M_FAIL: {
        char buf[SK_TEXT + 2 * SK_NAME_MAX];

        c->st = m->st;
        snprintf(buf, sizeof(buf), "%s (incarnation %u): %s", name, m->inc,
                 m->text);
        note_fail(s, buf);
        /* A hang or a lost notification names a peer: keep both ends'
         * threads and open fds in their logs (the first few times). */
        if (m->u[0] > 0 && m->u[0] <= g->n && s->dumps < SK_MAX_DUMPS) {
            sk_child_t *o = &g->ch[m->u[0] - 1];

            s->dumps++;
            fprintf(sk_txt,
                    "  (backtraces and fds of %s and soak-%s-%u in "
                    "their logs)\n",
                    name, g->label, (unsigned)m->u[0] - 1);
            sk_backtrace(c->pid, c->log);
            if (o != c && o->alive && !o->killed) {
                sk_backtrace(o->pid, o->log);
            }
        }
        break;
    }
    case SK_M_CKPT_DONE:
        c->st = m->st;
        c->t_last_stats = sk_now_s();
        g->ckpt_done[i] = (int)m->u[0];
        break;
    case SK_M_BYE:
        c->st = m->st;
        c->byed = 1;
        break;
    default:
        pfail(s, "%s: unexpected message %u", name, m->type);
        break;
    }
}

/* exited classifies a child that was just reaped: killed by us, stopped
 * cleanly, or a crash (which ends the run). */
static void
exited(soak_t *s, grp_t *g, unsigned i)
{
    sk_child_t *c = &g->ch[i];
    char name[SK_NAME_MAX];
    int st = c->exit_status;
    sk_msg_t m;

    /* What it sent last may still sit in the socket. */
    while (c->fd >= 0 && sk_msg_recv(c->fd, &m, 0) == 1) {
        handle_msg(s, g, i, &m);
    }

    child_name(g, i, name, sizeof(name));
    if (!c->killed && !(c->stopping && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        if (WIFSIGNALED(st)) {
            pfail(s, "%s (incarnation %u, pid %d) died of signal %d (%s)", name,
                  c->inc, (int)c->pid, WTERMSIG(st), strsignal(WTERMSIG(st)));
        } else {
            pfail(s, "%s (incarnation %u, pid %d) exited with status %d", name,
                  c->inc, (int)c->pid, WEXITSTATUS(st));
        }
        sk_log_tail(c->log, 30, sk_txt);
        finished(g, i);
        retire(s, g, "an agent crashed");
        return;
    }
    finished(g, i);
}

/* pump handles every message and exit, waiting up to ms. */
static void
pump(soak_t *s, int ms)
{
    struct pollfd pf[SK_MAX_GROUPS * SK_MAX_AGENTS];
    unsigned who[SK_MAX_GROUPS * SK_MAX_AGENTS][2];
    nfds_t n = 0, k;
    unsigned gi, i;

    for (gi = 0; gi < s->ngrp; gi++) {
        for (i = 0; i < s->grp[gi].n; i++) {
            if (s->grp[gi].ch[i].fd >= 0) {
                pf[n].fd = s->grp[gi].ch[i].fd;
                pf[n].events = POLLIN;
                pf[n].revents = 0;
                who[n][0] = gi;
                who[n][1] = i;
                n++;
            }
        }
    }
    if (poll(pf, n, ms) < 0 && errno != EINTR) {
        return;
    }
    for (k = 0; k < n; k++) {
        grp_t *g = &s->grp[who[k][0]];
        unsigned idx = who[k][1];
        sk_msg_t m;
        int r;

        if (pf[k].revents == 0) {
            continue;
        }
        while ((r = sk_msg_recv(g->ch[idx].fd, &m, 0)) == 1) {
            handle_msg(s, g, idx, &m);
        }
        if (r < 0) {
            /* Closed: the process is exiting; reaped below or later. */
            close(g->ch[idx].fd);
            g->ch[idx].fd = -1;
        }
    }
    for (gi = 0; gi < s->ngrp; gi++) {
        for (i = 0; i < s->grp[gi].n; i++) {
            sk_child_t *c = &s->grp[gi].ch[i];

            if (c->alive && sk_reap(c)) {
                exited(s, &s->grp[gi], i);
            }
        }
    }
}

static double
exp_gap(soak_t *s, double mean)
{
    return -mean * log(1.0 - sk_rng_unit(&s->rng));
}

static void
kill_one(soak_t *s, grp_t *g)
{
    unsigned cand[SK_MAX_AGENTS], n = 0, i, j;

    for (i = s->o->stable; i < g->n; i++) {
        if (usable(g, i)) {
            cand[n++] = i;
        }
    }
    if (n == 0) {
        return;
    }
    i = cand[sk_rng_below(&s->rng, n)];
    sk_kill(&g->ch[i]);
    g->down[i] = 1;
    g->restart_at[i] = sk_now_s() + 0.2 + 1.8 * sk_rng_unit(&s->rng);
    g->kills++;
    if (s->o->verbose) {
        fprintf(sk_txt, "  kill soak-%s-%u (incarnation %u, pid %d)\n",
                g->label, i, g->ch[i].inc, (int)g->ch[i].pid);
    }
    for (j = 0; j < g->n; j++) {
        sk_msg_t m;

        if (j == i || !usable(g, j)) {
            continue;
        }
        memset(&m, 0, sizeof(m));
        m.type = SK_M_DOWN;
        m.idx = i;
        m.inc = g->ch[i].inc;
        (void)sk_msg_send(g->ch[j].fd, &m);
    }
}

/* restarts starts the killed agents whose time has come (all of them when
 * force). */
static void
restarts(soak_t *s, int force)
{
    double now = sk_now_s();
    unsigned gi, i;

    for (gi = 0; gi < s->ngrp; gi++) {
        grp_t *g = &s->grp[gi];

        for (i = 0; i < g->n && !g->dead; i++) {
            if (!g->down[i] || (!force && now < g->restart_at[i])) {
                continue;
            }
            if (g->ch[i].alive) {
                if (!sk_reap(&g->ch[i])) {
                    continue; /* not gone yet */
                }
                exited(s, g, i);
            }
            (void)start_agent(s, g, i);
        }
    }
}

static void
hang_check(soak_t *s)
{
    double now = sk_now_s(), limit = 3 * s->o->op_timeout_s + 60;
    unsigned gi, i;

    for (gi = 0; gi < s->ngrp; gi++) {
        grp_t *g = &s->grp[gi];

        for (i = 0; i < g->n; i++) {
            sk_child_t *c = &g->ch[i];

            if (c->alive && !c->killed && now - c->t_last_stats > limit) {
                pfail(s,
                      "soak-%s-%u (incarnation %u, pid %d) silent for %.0f "
                      "s: hung (backtrace in %s)",
                      g->label, i, c->inc, (int)c->pid, now - c->t_last_stats,
                      c->log);
                sk_backtrace(c->pid, c->log);
                c->t_last_stats = now;
                retire(s, g, "an agent hung");
            }
        }
    }
}

static void
peaks(soak_t *s)
{
    unsigned gi, i;

    for (gi = 0; gi < s->ngrp; gi++) {
        grp_t *g = &s->grp[gi];

        for (i = 0; i < g->n; i++) {
            sk_proc_t p;

            if (!usable(g, i) || sk_proc_sample(g->ch[i].pid, &p) != 0) {
                continue;
            }
            if (p.anon_kib > g->peak[i].anon_kib) {
                g->peak[i].anon_kib = p.anon_kib;
            }
            if (p.rss_kib > g->peak[i].rss_kib) {
                g->peak[i].rss_kib = p.rss_kib;
            }
            if (p.fds > g->peak[i].fds) {
                g->peak[i].fds = p.fds;
            }
            if (p.threads > g->peak[i].threads) {
                g->peak[i].threads = p.threads;
            }
        }
    }
}

static int
all_up(soak_t *s)
{
    unsigned gi, i;

    for (gi = 0; gi < s->ngrp; gi++) {
        for (i = 0; i < s->grp[gi].n && !s->grp[gi].dead; i++) {
            if (!usable(&s->grp[gi], i)) {
                return 0;
            }
        }
    }
    return 1;
}

/* checkpoint runs checkpoint number k (1-based); resume = let them go on
 * after sampling. */
static void
checkpoint(soak_t *s, int resume)
{
    unsigned k = ++s->nck, gi, i;
    double until = sk_now_s() + 120, t_ck = sk_now_s();
    int done;

    if (k > SK_MAX_CKPT) {
        s->nck--;
        return;
    }
    /* Everyone up (restart what is down) and announced. */
    while (!s->abort && !all_up(s) && sk_now_s() < until) {
        restarts(s, 1);
        pump(s, 50);
    }
    for (gi = 0; gi < s->ngrp; gi++) {
        for (i = 0; i < s->grp[gi].n && !s->grp[gi].dead; i++) {
            if (!usable(&s->grp[gi], i)) {
                retire(s, &s->grp[gi],
                       "an agent did not come up for a "
                       "checkpoint within 120 s");
            }
        }
    }
    if (s->abort) {
        return;
    }
    pump(s, 200); /* let the PEER announcements land */
    for (gi = 0; gi < s->ngrp; gi++) {
        for (i = 0; i < s->grp[gi].n && !s->grp[gi].dead; i++) {
            sk_msg_t m;

            memset(&m, 0, sizeof(m));
            m.type = SK_M_CKPT;
            m.u[0] = k;
            s->grp[gi].ckpt_done[i] = 0;
            (void)sk_msg_send(s->grp[gi].ch[i].fd, &m);
        }
    }
    until = sk_now_s() + 2 * s->o->ack_timeout_s + 120;
    do {
        pump(s, 50);
        done = 1;
        for (gi = 0; gi < s->ngrp; gi++) {
            for (i = 0; i < s->grp[gi].n && !s->grp[gi].dead; i++) {
                done &= s->grp[gi].ckpt_done[i] == (int)k;
            }
        }
    } while (!done && !s->abort && sk_now_s() < until);
    for (gi = 0; gi < s->ngrp && !done; gi++) {
        for (i = 0; i < s->grp[gi].n && !s->grp[gi].dead; i++) {
            if (s->grp[gi].ckpt_done[i] != (int)k) {
                char why[160];

                snprintf(why, sizeof(why),
                         "soak-%s-%u did not finish "
                         "checkpoint %u",
                         s->grp[gi].label, i, k);
                retire(s, &s->grp[gi], why);
            }
        }
    }
    if (s->abort) {
        return;
    }
    /* Quiet now: let in-flight socket work settle, then sample. */
    pump(s, 1000);
    for (gi = 0; gi < s->ngrp; gi++) {
        grp_t *g = &s->grp[gi];

        if (g->dead) {
            continue;
        }
        g->nck = k;
        g->ck_t[k - 1] = sk_now_s() - s->t0;
        for (i = 0; i < g->n; i++) {
            char *list = malloc(SK_FDLIST);

            (void)sk_proc_sample(g->ch[i].pid, &g->ck[k - 1][i]);
            g->ck_inc[k - 1][i] = g->ch[i].inc;
            if (list != NULL) {
                sk_proc_fd_list(g->ch[i].pid, list, SK_FDLIST);
                if (k == 1) {
                    g->fd_first[i] = list;
                } else {
                    free(g->fd_last[i]);
                    g->fd_last[i] = list;
                }
            }
        }
    }
    if (s->o->verbose || !s->o->json) {
        fprintf(sk_txt, "  checkpoint %u at %.0f s (took %.1f s)\n", k,
                sk_now_s() - s->t0, sk_now_s() - t_ck);
        fflush(sk_txt);
    }
    if (resume) {
        for (gi = 0; gi < s->ngrp; gi++) {
            for (i = 0; i < s->grp[gi].n && !s->grp[gi].dead; i++) {
                sk_msg_t m;

                memset(&m, 0, sizeof(m));
                m.type = SK_M_RESUME;
                (void)sk_msg_send(s->grp[gi].ch[i].fd, &m);
            }
        }
    }
}

static void
stop_all(soak_t *s)
{
    double until = sk_now_s() + 60;
    unsigned gi, i;
    int left;

    for (gi = 0; gi < s->ngrp; gi++) {
        for (i = 0; i < s->grp[gi].n; i++) {
            sk_child_t *c = &s->grp[gi].ch[i];
            sk_msg_t m;

            if (c->alive && c->fd >= 0 && !c->killed) {
                memset(&m, 0, sizeof(m));
                m.type = SK_M_STOP;
                c->stopping = 1;
                (void)sk_msg_send(c->fd, &m);
            }
            s->grp[gi].down[i] = 0;
        }
    }
    do {
        pump(s, 50);
        left = 0;
        for (gi = 0; gi < s->ngrp; gi++) {
            for (i = 0; i < s->grp[gi].n; i++) {
                left += s->grp[gi].ch[i].alive;
            }
        }
    } while (left > 0 && sk_now_s() < until);
    for (gi = 0; gi < s->ngrp; gi++) {
        for (i = 0; i < s->grp[gi].n; i++) {
            sk_child_t *c = &s->grp[gi].ch[i];

            if (c->alive) {
                pfail(s,
                      "soak-%s-%u did not exit within 60 s of STOP "
                      "(backtrace in %s)",
                      s->grp[gi].label, i, c->log);
                sk_backtrace(c->pid, c->log);
                sk_kill(c);
                c->killed = 1;
                while (!sk_reap(c)) {
                    usleep(10000);
                }
                finished(&s->grp[gi], i);
            }
        }
    }
}

/* ---------------------------------------------------------------------- */
/* The verdict and the summary. */

static double
pct(uint64_t a, uint64_t b)
{
    return a == 0 ? 0.0 : 100.0 * ((double)b - (double)a) / (double)a;
}

/* judge compares the stable agents' first and last checkpoints. */
static void
judge(soak_t *s)
{
    unsigned gi, i, last = s->nck;

    if (s->nck < 2) {
        if (!s->abort) {
            pfail(s, "fewer than two checkpoints: nothing to compare");
        }
        return;
    }
    for (gi = 0; gi < s->ngrp; gi++) {
        grp_t *g = &s->grp[gi];

        last = g->nck;
        if (g->dead || last < 2) {
            continue; /* retired: its failure is on record already */
        }
        for (i = 0; i < g->n; i++) {
            const sk_proc_t *a = &g->ck[0][i], *b = &g->ck[last - 1][i];
            double lim;

            if (g->ck_inc[0][i] != g->ck_inc[last - 1][i] || !a->ok || !b->ok) {
                continue; /* restarted in between: nothing to compare */
            }
            lim = (double)a->anon_kib * (1.0 + s->o->rss_pct / 100.0) +
                  s->o->rss_slack_mib * 1024.0;
            if (!s->o->no_rss && (double)b->anon_kib > lim) {
                pfail(s,
                      "soak-%s-%u: RssAnon grew from %" PRIu64
                      " KiB to %" PRIu64
                      " KiB (+%.1f%%; allowed %.0f%% + %.0f MiB)",
                      g->label, i, a->anon_kib, b->anon_kib,
                      pct(a->anon_kib, b->anon_kib), s->o->rss_pct,
                      s->o->rss_slack_mib);
            }
            if (b->fds > a->fds) {
                char d[768] = "?";

                if (g->fd_first[i] != NULL && g->fd_last[i] != NULL) {
                    sk_fd_diff(g->fd_first[i], g->fd_last[i], d, sizeof(d));
                }
                pfail(s, "soak-%s-%u: open fds grew from %u to %u (%s)",
                      g->label, i, a->fds, b->fds, d);
            }
            if (b->threads > a->threads) {
                pfail(s, "soak-%s-%u: threads grew from %u to %u", g->label, i,
                      a->threads, b->threads);
            }
            /* Peers' shared memory mapped here: a mapping kept after its
             * owner died would add its pages at every restart. */
            lim = (double)a->shmem_kib * (1.0 + s->o->rss_pct / 100.0) +
                  s->o->rss_slack_mib * 1024.0;
            if (!s->o->no_rss && (double)b->shmem_kib > lim) {
                pfail(s,
                      "soak-%s-%u: RssShmem grew from %" PRIu64
                      " KiB to %" PRIu64 " KiB (+%.1f%%)",
                      g->label, i, a->shmem_kib, b->shmem_kib,
                      pct(a->shmem_kib, b->shmem_kib));
            }
            if (!s->o->no_rss && b->maps > a->maps + SK_MAPS_SLACK) {
                pfail(s,
                      "soak-%s-%u: mappings grew from %u to %u (allowed "
                      "+%d)",
                      g->label, i, a->maps, b->maps, SK_MAPS_SLACK);
            }
        }
    }
}

static void
group_total(const grp_t *g, sk_stats_t *t)
{
    unsigned i;

    *t = g->done_sum;
    for (i = 0; i < g->n; i++) {
        sk_stats_add(t, &g->ch[i].st);
    }
}

static uint64_t
group_failures(const grp_t *g)
{
    sk_stats_t t;

    group_total(g, &t);
    return t.failures;
}

static void
print_text(soak_t *s, FILE *f, double secs)
{
    unsigned gi, i, last = s->nck;
    char b1[32], b2[32];

    fprintf(f,
            "\nnxl-soak summary: %.0f s, seed %" PRIu64 ", max size %s, "
            "%u agents per backend (%u never killed), kill interval %.0f s\n",
            secs, s->o->seed, sk_fmt_bytes(s->o->max_size, b1, sizeof(b1)),
            s->o->agents, s->o->stable, s->o->kill_interval_s);
    for (gi = 0; gi < s->ngrp; gi++) {
        const grp_t *g = &s->grp[gi];
        sk_stats_t t;

        group_total(g, &t);
        last = g->nck;
        fprintf(f, "backend %s\n", g->backend);
        if (g->dead) {
            fprintf(f, "  RETIRED at %.0f s: %s\n", g->t_dead, g->why);
        }
        fprintf(f,
                "  operations %" PRIu64 " (READ %" PRIu64 ", WRITE+READ "
                "back %" PRIu64 ", WRITE+notification %" PRIu64 ", READ+"
                "notification %" PRIu64 ", standalone notifications %" PRIu64
                "; %" PRIu64 " batches, %" PRIu64 " re-posts of a "
                "kept handle, %" PRIu64 " released in flight), %" PRIu64
                " descriptors\n",
                t.ops, t.reads, t.writes, t.nwrites, t.nreads, t.notifs,
                t.batches, t.reposts, t.cancels, t.descs);
        fprintf(f,
                "  bytes checked %s (XXH3-128); notifications sent %" PRIu64
                ", received in order and checked %" PRIu64
                ", acknowledged %" PRIu64 "\n",
                sk_fmt_bytes(t.bytes_checked, b1, sizeof(b1)), t.notifs_sent,
                t.notifs_checked, t.acks);
        fprintf(f,
                "  kills survived %" PRIu64 "; expected errors %" PRIu64
                " (REMOTE_DISCONNECT %" PRIu64 ", NOT_FOUND %" PRIu64
                ", side channel %" PRIu64 "); notifications lost with a "
                "killed peer %" PRIu64 ", late from a dead incarnation %" PRIu64
                "\n",
                g->kills, t.exp_disconnect + t.exp_not_found + t.exp_sidechan,
                t.exp_disconnect, t.exp_not_found, t.exp_sidechan,
                t.lost_with_peer, t.late_old);
        fprintf(f,
                "  metadata: %" PRIu64 " fetches, %" PRIu64
                " invalidations, %" PRIu64 " reloads refused until "
                "invalidated, %" PRIu64 " stale handles refused; slowest "
                "operation %.3f s\n",
                t.fetches, t.invalidations, t.conflicts, t.stale_checks,
                (double)t.max_op_us / 1e6);
        fprintf(f, "  failures %" PRIu64 "\n", t.failures);
        if (last >= 1) {
            fprintf(f, "  %-12s %5s  %-32s %-9s %-9s %-9s %-12s %s\n", "agent",
                    "incs", "RssAnon ck1 -> end", "fds", "threads", "maps",
                    "RssShmem end", "peak RssAnon/fds");
        }
        for (i = 0; i < g->n && last >= 1; i++) {
            const sk_proc_t *a = &g->ck[0][i], *b = &g->ck[last - 1][i];
            int same = g->ck_inc[0][i] == g->ck_inc[last - 1][i];
            char rss[64], fds[24], thr[24], maps[24];

            if (same) {
                snprintf(rss, sizeof(rss), "%s -> %s (%+.1f%%)",
                         sk_fmt_bytes(a->anon_kib * 1024, b1, sizeof(b1)),
                         sk_fmt_bytes(b->anon_kib * 1024, b2, sizeof(b2)),
                         pct(a->anon_kib, b->anon_kib));
                snprintf(fds, sizeof(fds), "%u->%u", a->fds, b->fds);
                snprintf(thr, sizeof(thr), "%u->%u", a->threads, b->threads);
                snprintf(maps, sizeof(maps), "%u->%u", a->maps, b->maps);
            } else {
                snprintf(rss, sizeof(rss), "(restarted) end %s",
                         sk_fmt_bytes(b->anon_kib * 1024, b1, sizeof(b1)));
                snprintf(fds, sizeof(fds), "end %u", b->fds);
                snprintf(thr, sizeof(thr), "end %u", b->threads);
                snprintf(maps, sizeof(maps), "end %u", b->maps);
            }
            fprintf(f, "  soak-%s-%-3u %5u  %-32s %-9s %-9s %-9s %-12s %s/%u\n",
                    g->label, i, g->incs[i], rss, fds, thr, maps,
                    sk_fmt_bytes(b->shmem_kib * 1024, b1, sizeof(b1)),
                    sk_fmt_bytes(g->peak[i].anon_kib * 1024, b2, sizeof(b2)),
                    g->peak[i].fds);
        }
        if (last > 2) {
            fprintf(f, "  RssAnon at every checkpoint (s: KiB per agent):");
            for (i = 0; i < last; i++) {
                unsigned j;

                fprintf(f, "%s %.0f:", i ? ";" : "", g->ck_t[i]);
                for (j = 0; j < g->n; j++) {
                    fprintf(f, " %" PRIu64, g->ck[i][j].anon_kib);
                }
            }
            fputc('\n', f);
        }
    }
    if (s->nfails > 0) {
        fprintf(f, "failures (first %u):\n", s->nfails);
        for (i = 0; i < s->nfails; i++) {
            fprintf(f, "  %s\n", s->fails[i]);
        }
    }
}

static void
stats_json(FILE *f, const sk_stats_t *t)
{
    fprintf(f,
            "{\"ops\":%" PRIu64 ",\"reads\":%" PRIu64 ",\"writes\":%" PRIu64
            ",\"notified_writes\":%" PRIu64 ",\"notified_reads\":%" PRIu64
            ",\"notifs\":%" PRIu64 ",\"batches\":%" PRIu64
            ",\"reposts\":%" PRIu64 ",\"cancels\":%" PRIu64
            ",\"stale_checks\":%" PRIu64 ",\"descs\":%" PRIu64
            ",\"bytes_checked\":%" PRIu64 ",\"notifs_sent\":%" PRIu64
            ",\"notifs_checked\":%" PRIu64 ",\"acks\":%" PRIu64
            ",\"lost_with_peer\":%" PRIu64 ",\"late_old\":%" PRIu64
            ",\"exp_disconnect\":%" PRIu64 ",\"exp_not_found\":%" PRIu64
            ",\"exp_sidechan\":%" PRIu64 ",\"invalidations\":%" PRIu64
            ",\"fetches\":%" PRIu64 ",\"conflicts\":%" PRIu64
            ",\"failures\":%" PRIu64 ",\"max_op_us\":%" PRIu64 "}",
            t->ops, t->reads, t->writes, t->nwrites, t->nreads, t->notifs,
            t->batches, t->reposts, t->cancels, t->stale_checks, t->descs,
            t->bytes_checked, t->notifs_sent, t->notifs_checked, t->acks,
            t->lost_with_peer, t->late_old, t->exp_disconnect, t->exp_not_found,
            t->exp_sidechan, t->invalidations, t->fetches, t->conflicts,
            t->failures, t->max_op_us);
}

static void
print_json(soak_t *s, FILE *f, double secs, int ok)
{
    unsigned gi, i, k;

    fprintf(f,
            "{\"mode\":\"soak\",\"seconds\":%.1f,\"seed\":%" PRIu64
            ",\"max_size\":%" PRIu64 ",\"agents\":%u,\"stable\":%u,"
            "\"ok\":%s,\"parent_failures\":%" PRIu64 ",\"backends\":[",
            secs, s->o->seed, s->o->max_size, s->o->agents, s->o->stable,
            ok ? "true" : "false", s->parent_failures);
    for (gi = 0; gi < s->ngrp; gi++) {
        const grp_t *g = &s->grp[gi];
        sk_stats_t t;

        group_total(g, &t);
        fprintf(f,
                "%s{\"backend\":\"%s\",\"kills\":%" PRIu64
                ",\"retired_at\":%.0f,\"stats\":",
                gi ? "," : "", g->backend, g->kills,
                g->dead ? g->t_dead : -1.0);
        stats_json(f, &t);
        fprintf(f, ",\"agents\":[");
        for (i = 0; i < g->n; i++) {
            fprintf(f,
                    "%s{\"name\":\"soak-%s-%u\",\"incarnations\":%u,"
                    "\"checkpoints\":[",
                    i ? "," : "", g->label, i, g->incs[i]);
            for (k = 0; k < g->nck; k++) {
                const sk_proc_t *p = &g->ck[k][i];

                fprintf(f,
                        "%s{\"t\":%.0f,\"inc\":%u,\"rss_kib\":%" PRIu64
                        ",\"anon_kib\":%" PRIu64 ",\"shmem_kib\":%" PRIu64
                        ",\"fds\":%u,\"threads\":%u,\"maps\":%u}",
                        k ? "," : "", g->ck_t[k], g->ck_inc[k][i], p->rss_kib,
                        p->anon_kib, p->shmem_kib, p->fds, p->threads, p->maps);
            }
            fprintf(f, "]}");
        }
        fprintf(f, "]}");
    }
    fprintf(f, "],\"failures\":[");
    for (i = 0; i < s->nfails; i++) {
        if (i) {
            fputc(',', f);
        }
        sk_json_str(f, s->fails[i]);
    }
    fprintf(f, "]}\n");
}

/* ---------------------------------------------------------------------- */

int
sk_soak_main(const sk_opts_t *o, const char *self_exe)
{
    static soak_t S;
    soak_t *s = &S;
    char list[128], *save = NULL, *tok, b1[32];
    double warmup, t_end, next_ck, next_sample, secs;
    uint64_t per_agent, total;
    unsigned gi, i;
    int ok;

    memset(s, 0, sizeof(*s));
    s->o = o;
    s->self = self_exe;
    sk_rng_seed(&s->rng, o->seed ^ 0x50a4ull);
    snprintf(list, sizeof(list), "%s", o->backends);
    for (tok = strtok_r(list, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        grp_t *g;

        char type[16], label[96], params[256];

        if (sk_backend_spec(tok, type, sizeof(type), label, sizeof(label),
                            params, sizeof(params)) != 0) {
            sk_err("bad backend '%s'", tok);
            return 2;
        }
        if (strcasecmp(type, "POSIX") == 0) {
            fprintf(sk_txt,
                    "skip POSIX: a local storage backend, no peers "
                    "to soak (its transfers are in the conformance suite)\n");
            continue;
        }
        if (!sk_backend_built(type)) {
            fprintf(sk_txt,
                    "skip %s: not built into this libnxl (nxl_plugin_names "
                    "does not list it)\n",
                    tok);
            continue;
        }
        if (s->ngrp == SK_MAX_GROUPS) {
            sk_err("at most %d backends", SK_MAX_GROUPS);
            return 2;
        }
        g = &s->grp[s->ngrp];
        g->backend = strdup(tok);
        snprintf(g->type, sizeof(g->type), "%s", type);
        snprintf(g->label, sizeof(g->label), "%s", label);
        snprintf(g->params, sizeof(g->params), "%s", params);
        g->g = s->ngrp;
        g->n = o->agents;
        s->ngrp++;
    }
    if (s->ngrp == 0) {
        sk_err("no backend to soak");
        return 2;
    }
    per_agent = 3 * o->max_size +
                o->agents * (o->max_size + SK_NSUB * (o->max_size < 2 * SK_MIB
                                                          ? o->max_size
                                                          : 2 * SK_MIB));
    total = per_agent * o->agents * s->ngrp;
    fprintf(sk_txt,
            "nxl-soak: %u backends x %u agents, %.0f s, seed %" PRIu64
            ", sizes 1 B..%s, pools %s in all, logs in %s\n",
            s->ngrp, o->agents, o->duration_s, o->seed,
            sk_fmt_bytes(o->max_size, b1, sizeof(b1)),
            sk_fmt_bytes(total, list, sizeof(list)), o->log_dir);
    for (gi = 0; gi < s->ngrp && o->avoid_known; gi++) {
        if (strcasecmp(s->grp[gi].type, "UCX") == 0) {
            fprintf(sk_txt, "%s", SK_UCX_KNOWN_AVOIDED);
            break;
        }
    }
    fflush(sk_txt);

    for (gi = 0; gi < s->ngrp; gi++) {
        for (i = 0; i < s->grp[gi].n; i++) {
            if (start_agent(s, &s->grp[gi], i) != 0) {
                s->abort = 1;
            }
        }
    }
    {
        double until = sk_now_s() + 120;

        while (!s->abort && !all_up(s) && sk_now_s() < until) {
            pump(s, 50);
        }
        if (!s->abort && !all_up(s)) {
            pfail(s, "not every agent started within 120 s");
            s->abort = 1;
        }
    }
    s->t0 = sk_now_s();
    warmup = o->warmup_s >= 0 ? o->warmup_s
                              : fmin(60.0, fmax(10.0, o->duration_s / 4));
    t_end = s->t0 + o->duration_s;
    next_ck = s->t0 + warmup;
    next_sample = s->t0 + 1;
    for (gi = 0; gi < s->ngrp; gi++) {
        s->grp[gi].next_kill = s->t0 + exp_gap(s, o->kill_interval_s);
    }
    while (!s->abort) {
        double now = sk_now_s();

        if (now >= t_end) {
            break;
        }
        if (now >= next_ck) {
            checkpoint(s, 1);
            next_ck = sk_now_s() + o->ckpt_interval_s;
            if (next_ck > t_end - o->ckpt_interval_s / 2) {
                next_ck = t_end + 1;
            }
            for (gi = 0; gi < s->ngrp; gi++) {
                s->grp[gi].next_kill =
                    sk_now_s() + exp_gap(s, o->kill_interval_s);
            }
            continue;
        }
        for (gi = 0; gi < s->ngrp && o->kill_interval_s > 0; gi++) {
            if (now >= s->grp[gi].next_kill && !s->grp[gi].dead) {
                kill_one(s, &s->grp[gi]);
                s->grp[gi].next_kill = now + exp_gap(s, o->kill_interval_s);
            }
        }
        restarts(s, 0);
        if (now >= next_sample) {
            if (s->nck >= 1) {
                peaks(s);
            }
            hang_check(s);
            next_sample = now + 1;
        }
        pump(s, 50);
    }
    if (!s->abort) {
        checkpoint(s, 0);
    }
    secs = sk_now_s() - s->t0;
    stop_all(s);
    judge(s);
    ok = s->parent_failures == 0;
    for (gi = 0; gi < s->ngrp; gi++) {
        ok &= group_failures(&s->grp[gi]) == 0;
    }
    print_text(s, sk_txt, secs);
    if (o->json) {
        print_json(s, stdout, secs, ok);
    }
    fprintf(sk_txt, "%s\n", ok ? "nxl-soak: PASS" : "nxl-soak: FAIL");
    return ok ? 0 : 1;
}
