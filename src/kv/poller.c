/*
 * poller.c - the completion poller of a transfer context (Dynamo's
 * process_polling_notifications and process_nixl_notification_events in
 * one thread).
 *
 * The thread sleeps on the context's condition variable while nothing is
 * pending and ticks every poll_tick_ms while work exists. Each tick it
 * polls posted NXL requests (nxl_xfer_status), device events
 * (event_query), advances two-hop jobs, matches awaited notification keys
 * (fetching nxl_notifs_get only while such waits exist) and applies
 * deadlines and slow-transfer warnings. A handle whose deadline passed
 * reports NXL_ERR_TIMEOUT at once but stays on the list until its work
 * really ends, and only then is the request released or the event
 * destroyed: nothing a copy may still touch is freed early.
 *
 * Everything below runs on the poller thread only, except where noted.
 */
#include "ctx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Notifications kept for keys not awaited yet (oldest dropped). */
#define KV_EARLY_MAX 4096

typedef struct kv_early {
    char *msg;
    size_t len;
} kv_early_t;

/* Poller-private state. */
typedef struct kv_poller {
    nxl_kv_notif_t *active; /* being watched, in submission order */
    nxl_kv_notif_t **tail;
    kv_early_t *early; /* arrival order, oldest first */
    size_t nearly;
    uint64_t dropped;
} kv_poller_t;

/* kv_early_push keeps a fetched notification until a wait claims it. */
static void
kv_early_push(kv_poller_t *p, const void *msg, size_t len)
{
    char *copy;

    if (p->early == NULL) {
        p->early = calloc(KV_EARLY_MAX, sizeof(*p->early));
        if (p->early == NULL) {
            nxl__warn("kv poller: out of memory; a notification is lost");
            return;
        }
    }
    copy = malloc(len + 1);
    if (copy == NULL) {
        nxl__warn("kv poller: out of memory; a notification is lost");
        return;
    }
    memcpy(copy, msg, len);
    copy[len] = '\0';
    if (p->nearly == KV_EARLY_MAX) {
        nxl__warn("kv poller: %d notifications wait for no one; dropping "
                  "the oldest ('%.64s')",
                  KV_EARLY_MAX, p->early[0].msg);
        free(p->early[0].msg);
        memmove(p->early, p->early + 1, (KV_EARLY_MAX - 1) * sizeof(*p->early));
        p->nearly--;
        p->dropped++;
    }
    p->early[p->nearly].msg = copy;
    p->early[p->nearly].len = len;
    p->nearly++;
}

/* kv_early_take removes the oldest kept notification equal to key and
 * returns 1, or returns 0 when none matches. */
static int
kv_early_take(kv_poller_t *p, const char *key, size_t len)
{
    size_t i;

    for (i = 0; i < p->nearly; i++) {
        if (p->early[i].len == len && memcmp(p->early[i].msg, key, len) == 0) {
            free(p->early[i].msg);
            memmove(p->early + i, p->early + i + 1,
                    (p->nearly - i - 1) * sizeof(*p->early));
            p->nearly--;
            return 1;
        }
    }
    return 0;
}

/* kv_fetch moves every notification the agent received into the early
 * list; a failure is logged and the tick goes on (Dynamo skips it). */
static void
kv_fetch(nxl_kv_ctx_t *ctx, kv_poller_t *p)
{
    nxl_notif_list_t *list = NULL;
    nxl_status_t st;
    size_t i;

    pthread_mutex_lock(&ctx->agent_mu);
    st = nxl_notifs_get(ctx->agent, &list, NULL);
    if (st != NXL_OK) {
        nxl__warn("kv poller: failed to fetch notifications: %s",
                  nxl_last_error());
    }
    pthread_mutex_unlock(&ctx->agent_mu);
    if (st != NXL_OK) {
        return;
    }
    for (i = 0; i < list->count; i++) {
        kv_early_push(p, list->items[i].msg, list->items[i].len);
    }
    nxl_notif_list_free(list);
}

/* kv_op_poll asks whether op ended: NXL_OK, NXL_IN_PROG, or an error with
 * its text in err. */
static nxl_status_t
kv_op_poll(nxl_kv_ctx_t *ctx, nxl__kv_op_t *op, char *err, size_t cap)
{
    nxl_status_t st = NXL_OK;

    switch (op->kind) {
    case NXL__KV_OP_XFER:
        pthread_mutex_lock(&ctx->agent_mu);
        st = nxl_xfer_status(op->xfer);
        if (st < 0) {
            snprintf(err, cap, "NIXL transfer status check failed: %s",
                     nxl_last_error());
        }
        pthread_mutex_unlock(&ctx->agent_mu);
        break;
    case NXL__KV_OP_EVENT:
        st = op->mk->event_query(op->event);
        if (st < 0) {
            snprintf(err, cap, "CUDA event query failed: %s", nxl_last_error());
        }
        break;
    default:
        break;
    }
    return st;
}

/* kv_op_release frees the request or event of an op that ended. */
static void
kv_op_release(nxl_kv_ctx_t *ctx, nxl__kv_op_t *op)
{
    if (op->kind == NXL__KV_OP_XFER) {
        pthread_mutex_lock(&ctx->agent_mu);
        nxl_xfer_release(op->xfer);
        pthread_mutex_unlock(&ctx->agent_mu);
    } else if (op->kind == NXL__KV_OP_EVENT) {
        op->mk->event_destroy(op->event);
    }
    memset(op, 0, sizeof(*op));
}

/* kv_fail logs a failed check (Dynamo's wording) and completes n with it
 * (unless a deadline already reported it). */
static void
kv_fail(nxl_kv_notif_t *n, nxl_status_t st, const char *err, int stopping)
{
    nxl__warn("%s (uuid=%s): %s",
              stopping ? "Transfer status check failed during shutdown"
                       : "Transfer status check failed",
              n->uuid, err);
    nxl__kv_notif_finish(n, st, err);
}

/* kv_watch applies the deadline and the slow-transfer warning to n, which
 * is still pending at now. */
static void
kv_watch(nxl_kv_ctx_t *ctx, nxl_kv_notif_t *n, uint64_t now)
{
    uint64_t elapsed = now - n->start_ns;
    char msg[160];

    if (n->deadline_ns != 0 && now >= n->deadline_ns &&
        atomic_load(&n->status) == NXL_IN_PROG) {
        snprintf(
            msg, sizeof(msg),
            "Transfer %s passed its deadline of %llu ms (it keeps its "
            "memory until it ends)",
            n->uuid,
            (unsigned long long)((n->deadline_ns - n->start_ns) / 1000000u));
        nxl__kv_notif_finish(n, NXL_ERR_TIMEOUT, msg);
    }
    if (elapsed > (uint64_t)ctx->cfg.warn_after_ms * 1000000u &&
        (n->last_warn_ns == 0 ||
         now - n->last_warn_ns > (uint64_t)ctx->cfg.warn_every_ms * 1000000u)) {
        nxl__warn("Transfer has been pending for over 1 minute (uuid=%s, "
                  "elapsed_secs=%.3f)",
                  n->uuid, (double)elapsed / 1e9);
        n->last_warn_ns = now;
        atomic_fetch_add(&ctx->slow_warnings, 1);
    }
}

/* kv_twohop_step launches the next hop of n's job (hop 1 of the current
 * chunk, or hop 2, which then moves to the next chunk). */
static nxl_status_t
kv_twohop_step(nxl_kv_ctx_t *ctx, nxl_kv_notif_t *n)
{
    nxl__kv_twohop_t *th = n->th;
    nxl_status_t st;
    int last;

    if (th->hop == 0) {
        th->k = NXL__MIN(th->nb, th->n - th->next);
        st = nxl__kv_exec_direct(ctx, th->first, th->src, th->sids + th->next,
                                 th->bounce, th->bids, th->k, th->lb, th->le,
                                 NULL, 0, 0, &n->op);
        if (st == NXL_OK) {
            th->hop = 1;
        }
        return st;
    }
    last = th->next + th->k >= th->n;
    st = nxl__kv_exec_direct(ctx, th->second, th->bounce, th->bids, th->dst,
                             th->dids + th->next, th->k, th->lb, th->le,
                             th->msg, th->msg_len, last && th->has_msg, &n->op);
    if (st == NXL_OK) {
        th->hop = 0;
        th->next += th->k;
    }
    return st;
}

/* kv_slot_back gives the slot of an item that ends back to the context.
 * Called before the item's final status is set: a thread woken by that
 * status may submit again at once and must find the slot free. */
static void
kv_slot_back(nxl_kv_ctx_t *ctx)
{
    pthread_mutex_lock(&ctx->mu);
    ctx->pending--;
    pthread_mutex_unlock(&ctx->mu);
}

/* kv_poll_item advances n and returns 1 when it is finished, its work
 * released and its slot given back (the poller then drops its reference),
 * 0 while pending. */
static int
kv_poll_item(nxl_kv_ctx_t *ctx, kv_poller_t *p, nxl_kv_notif_t *n, uint64_t now,
             int stopping)
{
    char err[512];
    nxl_status_t st;

    switch (n->kind) {
    case NXL__KV_N_KEY:
        if (kv_early_take(p, n->key, n->key_len)) {
            kv_slot_back(ctx);
            nxl__kv_notif_finish(n, NXL_OK, NULL);
            return 1;
        }
        if (stopping) {
            snprintf(err, sizeof(err),
                     "The transfer context was destroyed before "
                     "notification '%.200s' arrived",
                     n->key);
            kv_slot_back(ctx);
            nxl__kv_notif_finish(n, NXL_ERR_CANCELED, err);
            return 1;
        }
        kv_watch(ctx, n, now);
        /* Nothing is held for a key: a passed deadline ends the wait. */
        if (atomic_load(&n->status) == NXL_IN_PROG) {
            return 0;
        }
        kv_slot_back(ctx);
        return 1;
    case NXL__KV_N_TWOHOP:
        for (;;) {
            if (n->op.kind != NXL__KV_OP_NONE) {
                st = kv_op_poll(ctx, &n->op, err, sizeof(err));
                if (st == NXL_IN_PROG) {
                    break;
                }
                kv_op_release(ctx, &n->op);
                if (st != NXL_OK) {
                    kv_slot_back(ctx);
                    kv_fail(n, st, err, stopping);
                    return 1;
                }
            }
            if (atomic_load(&n->status) != NXL_IN_PROG) {
                kv_slot_back(ctx);
                return 1; /* timed out: launch nothing more */
            }
            if (n->th->hop == 0 && n->th->next >= n->th->n) {
                kv_slot_back(ctx);
                nxl__kv_notif_finish(n, NXL_OK, NULL);
                return 1;
            }
            st = kv_twohop_step(ctx, n);
            if (st != NXL_OK) {
                snprintf(err, sizeof(err), "%s", nxl_last_error());
                kv_slot_back(ctx);
                kv_fail(n, st, err, stopping);
                return 1;
            }
        }
        kv_watch(ctx, n, now);
        return 0;
    default:
        st = kv_op_poll(ctx, &n->op, err, sizeof(err));
        if (st == NXL_IN_PROG) {
            kv_watch(ctx, n, now);
            return 0;
        }
        kv_op_release(ctx, &n->op);
        kv_slot_back(ctx);
        if (st == NXL_OK) {
            nxl__kv_notif_finish(n, NXL_OK, NULL);
        } else {
            kv_fail(n, st, err, stopping);
        }
        return 1;
    }
}

/* kv_tick runs one pass over the active list; finished handles leave it
 * (their slots are back already). */
static void
kv_tick(nxl_kv_ctx_t *ctx, kv_poller_t *p, int stopping)
{
    nxl_kv_notif_t **pp, *n;
    uint64_t now;

    for (n = p->active; n != NULL; n = n->next) {
        if (n->kind == NXL__KV_N_KEY) {
            kv_fetch(ctx, p);
            break;
        }
    }
    now = nxl__now_ns();
    pp = &p->active;
    while ((n = *pp) != NULL) {
        if (kv_poll_item(ctx, p, n, now, stopping)) {
            *pp = n->next;
            nxl__kv_notif_unref(n);
        } else {
            pp = &n->next;
        }
    }
    p->tail = pp;
}

/* kv_deadline_in returns the absolute CLOCK_MONOTONIC time ms from now. */
static struct timespec
kv_deadline_in(unsigned ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* nxl__kv_poller_main is the poller thread: take submissions, tick while
 * anything is active, sleep on ctx->cv otherwise; after stop, drain every
 * transfer (awaited keys are canceled) and exit. */
void *
nxl__kv_poller_main(void *arg)
{
    nxl_kv_ctx_t *ctx = arg;
    kv_poller_t p = {0};
    struct timespec ts;
    size_t i;
    int stopping;

    p.tail = &p.active;
    pthread_mutex_lock(&ctx->mu);
    for (;;) {
        if (ctx->in_head != NULL) {
            *p.tail = ctx->in_head;
            p.tail = ctx->in_tail;
            ctx->in_head = NULL;
            ctx->in_tail = &ctx->in_head;
        }
        stopping = ctx->stop;
        if (p.active == NULL) {
            if (stopping) {
                break;
            }
            pthread_cond_wait(&ctx->cv, &ctx->mu);
            continue;
        }
        pthread_mutex_unlock(&ctx->mu);
        kv_tick(ctx, &p, stopping);
        pthread_mutex_lock(&ctx->mu);
        if (p.active != NULL && ctx->in_head == NULL && ctx->stop == stopping) {
            ts = kv_deadline_in(ctx->cfg.poll_tick_ms);
            pthread_cond_timedwait(&ctx->cv, &ctx->mu, &ts);
        }
    }
    pthread_mutex_unlock(&ctx->mu);
    for (i = 0; i < p.nearly; i++) {
        free(p.early[i].msg);
    }
    free(p.early);
    return NULL;
}
