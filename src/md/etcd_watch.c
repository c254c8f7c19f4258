/*
 * etcd_watch.c - the etcd store's watch op and the watch thread that
 * streams DELETE events of the watched peers and reports the gone ones.
 * etcd.h describes the streams and their resync.
 */
#include "etcd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- the watch thread ---------------------------------------------------- */

static uint64_t
backoff_ns(unsigned fails)
{
    uint64_t ms = NXL__ETCD_BACKOFF_MIN_MS << NXL__MIN(fails, 5u);

    return NXL__MIN(ms, (uint64_t)NXL__ETCD_RETRY_MS) * 1000000u;
}

static nxl_status_t
watch_line(void *arg, const char *line, size_t len)
{
    nxl__etcd_watch_t *w = arg;
    nxl__etcd_reply_t r;
    nxl_status_t status;

    status = nxl__etcd_parse(line, len, NULL, &r);
    if (status != NXL_OK) {
        nxl__log(NXL_LOG_WARN, "etcd: watch of '%s': %s", w->peer,
                 nxl_last_error());
        return status;
    }
    if (r.grpc_code != 0 || r.canceled) {
        nxl__debug("etcd: watch of '%s' ended by etcd: %s", w->peer,
                   r.grpc_code ? r.message : "canceled");
        nxl__etcd_reply_fini(&r);
        return NXL_ERR_IO; /* reconnect after a resync */
    }
    w->created = w->created || r.created;
    w->last_rev = NXL__MAX(w->last_rev, r.revision);
    if (r.delete_rev > 0) {
        w->gone_rev = NXL__MAX(w->gone_rev, r.delete_rev);
    }
    nxl__etcd_reply_fini(&r);
    return NXL_OK;
}

static size_t
watch_write(char *p, size_t sz, size_t n, void *arg)
{
    nxl__etcd_watch_t *w = arg;

    n *= sz;
    return nxl__etcd_stream_feed(&w->in, p, n, watch_line, w) == NXL_OK ? n : 0;
}

/* watch_stop_stream ends w's stream (watch thread). */
static void
watch_stop_stream(nxl__etcd_t *e, nxl__etcd_watch_t *w)
{
    if (w->h != NULL) {
        curl_multi_remove_handle(e->multi, w->h);
        curl_easy_cleanup(w->h);
        w->h = NULL;
    }
    free(w->body);
    w->body = NULL;
    nxl__etcd_stream_fini(&w->in);
}

void
nxl__etcd_watch_free(nxl__etcd_t *e, nxl__etcd_watch_t *w)
{
    watch_stop_stream(e, w);
    free(w->pfx);
    free(w->end);
    free(w);
}

/* watch_start opens w's stream from w->next_rev (watch thread). */
static nxl_status_t
watch_start(nxl__etcd_t *e, nxl__etcd_watch_t *w)
{
    char url[NXL__ETCD_MAX_URL + 16];
    unsigned ep = atomic_load(&e->ep_cur) % e->neps;
    nxl__wbuf_t b;

    nxl__wbuf_init(&b);
    nxl__json_text(&b, "{\"create_request\":{\"key\":\"");
    nxl__json_text(&b, w->pfx);
    nxl__json_text(&b, "\",\"range_end\":\"");
    nxl__json_text(&b, w->end);
    nxl__json_text(&b, "\",\"start_revision\":");
    nxl__etcd_put_i64(&b, w->next_rev);
    nxl__json_text(&b, ",\"filters\":[\"NOPUT\"]}}");
    if (nxl__etcd_body_text(&b) != NXL_OK) {
        return NXL_ERR_NOMEM;
    }
    w->body = (char *)b.data;
    w->created = false;
    w->h = nxl__etcd_easy(e, true);
    if (w->h == NULL) {
        free(w->body);
        w->body = NULL;
        return nxl__fail(NXL_ERR_NOMEM, "etcd: curl_easy_init failed");
    }
    snprintf(url, sizeof(url), "%s/v3/watch", e->eps[ep]);
    w->errbuf[0] = '\0';
    curl_easy_setopt(w->h, CURLOPT_URL, url);
    curl_easy_setopt(w->h, CURLOPT_POSTFIELDS, w->body);
    curl_easy_setopt(w->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b.len);
    curl_easy_setopt(w->h, CURLOPT_WRITEFUNCTION, watch_write);
    curl_easy_setopt(w->h, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(w->h, CURLOPT_PRIVATE, w);
    curl_easy_setopt(w->h, CURLOPT_ERRORBUFFER, w->errbuf);
    curl_easy_setopt(w->h, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)NXL__ETCD_CONNECT_MS);
    if (curl_multi_add_handle(e->multi, w->h) != CURLM_OK) {
        watch_stop_stream(e, w);
        return nxl__fail(NXL_ERR_NOMEM, "etcd: curl_multi_add_handle");
    }
    return NXL_OK;
}

/* watch_resync reads w's prefix (count only): *count_p keys exist at
 * revision *rev_p (watch thread, wlock not held). */
static nxl_status_t
watch_resync(nxl__etcd_t *e, nxl__etcd_watch_t *w, int64_t *rev_p,
             int64_t *count_p)
{
    nxl__etcd_reply_t r;
    nxl_status_t status;
    nxl__wbuf_t b;

    nxl__wbuf_init(&b);
    nxl__json_text(&b, "{\"key\":\"");
    nxl__json_text(&b, w->pfx);
    nxl__json_text(&b, "\",\"range_end\":\"");
    nxl__json_text(&b, w->end);
    nxl__json_text(&b, "\",\"count_only\":true}");
    status = nxl__etcd_body_text(&b);
    if (status != NXL_OK) {
        return status;
    }
    status = nxl__etcd_call(
        e, e->w_sync, true, "watch resync", "/v3/kv/range", b.data, b.len,
        false, nxl__now_ns() + NXL__ETCD_ATTEMPT_MS * 1000000ull, &r);
    nxl__wbuf_fini(&b);
    if (status == NXL_OK) {
        *rev_p = r.revision;
        *count_p = r.count;
    }
    nxl__etcd_reply_fini(&r);
    return status;
}

/* watch_step_locked starts the streams that are due and reports gone
 * peers (wlock held; dropped around resync reads). Returns the ms until
 * the next retry is due. */
static uint64_t
watch_step_locked(nxl__etcd_t *e)
{
    uint64_t now = nxl__now_ns(), next = now + 1000000000ull;
    nxl__etcd_watch_t *w, **pp;
    int64_t rev = 0, count = 0;
    bool unreachable = false;
    nxl_status_t status;
    uint64_t seq;

    for (w = e->watches; w != NULL && !atomic_load(&e->stop); w = w->next) {
        if (w->h != NULL || w->force_gone || w->gone_rev > 0) {
            continue;
        }
        if (w->retry_at > now) {
            next = NXL__MIN(next, w->retry_at);
            continue;
        }
        if (unreachable && w->next_rev == 0) {
            /* After a failed resync the others wait for the next pass:
             * one silent endpoint must not stall the loop once per peer. */
            w->retry_at = now + backoff_ns(w->fails);
            next = NXL__MIN(next, w->retry_at);
            continue;
        }
        if (w->next_rev == 0) {
            seq = w->load_seq;
            pthread_mutex_unlock(&e->wlock);
            status = watch_resync(e, w, &rev, &count);
            pthread_mutex_lock(&e->wlock);
            now = nxl__now_ns();
            if (status != NXL_OK) {
                w->retry_at = now + backoff_ns(++w->fails);
                next = NXL__MIN(next, w->retry_at);
                unreachable = true;
                continue;
            }
            if (count == 0 && w->load_seq == seq) {
                nxl__debug("etcd: '%s' has no keys any more", w->peer);
                w->force_gone = true;
                continue;
            }
            if (rev < w->last_rev || rev < w->load_rev) {
                /* etcd lost its history (restored or recreated): older
                 * revisions say nothing about the new numbering. */
                w->load_rev = 0;
                w->last_rev = 0;
            }
            w->next_rev = (w->last_rev > 0 && w->last_rev < rev)
                              ? w->last_rev + 1
                              : rev + 1;
        }
        if (watch_start(e, w) != NXL_OK) {
            w->retry_at = now + backoff_ns(++w->fails);
            next = NXL__MIN(next, w->retry_at);
        }
    }
    /* Decide and report under wlock: a fetch racing with this either
     * moved load_rev first (the DELETE is stale) or reloads after. */
    for (pp = &e->watches; (w = *pp) != NULL;) {
        if (w->force_gone || (w->gone_rev > 0 && w->gone_rev > w->load_rev)) {
            *pp = w->next;
            nxl__debug("etcd: '%s' is gone (revision %lld)", w->peer,
                       (long long)w->gone_rev);
            e->gone(e->arg, w->peer);
            nxl__etcd_watch_free(e, w);
            continue;
        }
        w->gone_rev = 0;
        pp = &w->next;
    }
    now = nxl__now_ns();
    return next > now ? (next - now) / 1000000u : 0;
}

static void *
watch_main(void *arg)
{
    nxl__etcd_t *e = arg;
    nxl__etcd_watch_t *w;
    uint64_t wait_ms;
    CURLMsg *m;
    bool again;
    int running, left;

    while (!atomic_load(&e->stop)) {
        pthread_mutex_lock(&e->wlock);
        wait_ms = watch_step_locked(e);
        pthread_mutex_unlock(&e->wlock);
        curl_multi_perform(e->multi, &running);
        again = false;
        while ((m = curl_multi_info_read(e->multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE) {
                continue;
            }
            w = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&w);
            if (w == NULL) {
                continue;
            }
            if (w->gone_rev == 0) {
                unsigned ep = atomic_load(&e->ep_cur) % e->neps;

                nxl__debug("etcd: watch of '%s' on %s ended: %s", w->peer,
                           e->eps[ep],
                           w->errbuf[0] ? w->errbuf
                                        : curl_easy_strerror(m->data.result));
                nxl__etcd_ep_next(e, ep);
                w->retry_at = nxl__now_ns() + backoff_ns(w->fails++);
            }
            w->next_rev = 0; /* resync before the next stream */
            watch_stop_stream(e, w);
            again = true;
        }
        /* A DELETE seen by perform is reported at once. */
        pthread_mutex_lock(&e->wlock);
        for (w = e->watches; w != NULL; w = w->next) {
            if (w->gone_rev > 0 || w->force_gone) {
                again = true;
            } else if (w->h != NULL && w->fails > 0 && w->created) {
                w->fails = 0; /* the stream works again */
            }
        }
        pthread_mutex_unlock(&e->wlock);
        if (!again && !atomic_load(&e->stop)) {
            curl_multi_poll(e->multi, NULL, 0,
                            (int)NXL__MIN(wait_ms, (uint64_t)1000), NULL);
        }
    }
    return NULL;
}

/* --- the watch op --------------------------------------------------------- */

nxl_status_t
nxl__etcd_watch_peer(nxl__md_store_t *s, const char *remote, uint64_t version,
                     uint64_t session, bool *replaced_p)
{
    nxl__etcd_t *e = (nxl__etcd_t *)s;
    nxl_status_t status;
    nxl__etcd_watch_t *w;
    nxl__wbuf_t a, b;
    int rc;

    *replaced_p = false;
    status = nxl__etcd_check_name("the agent name", remote);
    if (status != NXL_OK) {
        return status;
    }
    pthread_mutex_lock(&e->wlock);
    for (w = e->watches; w != NULL; w = w->next) {
        if (strcmp(w->peer, remote) == 0) {
            *replaced_p =
                w->session != 0 && session != 0 && w->session != session;
            w->session = session;
            w->load_rev = NXL__MAX(w->load_rev, (int64_t)version);
            w->load_seq++;
            pthread_mutex_unlock(&e->wlock);
            return NXL_OK;
        }
    }
    if (!e->w_running) {
        e->multi = curl_multi_init();
        e->w_sync = nxl__etcd_easy(e, true);
        if (e->multi == NULL || e->w_sync == NULL) {
            status = nxl__fail(NXL_ERR_NOMEM, "etcd: curl_multi_init failed");
            goto err;
        }
        rc = pthread_create(&e->w_tid, NULL, watch_main, e);
        if (rc != 0) {
            status = nxl__fail_errno(rc, "etcd: watch thread");
            goto err;
        }
        e->w_running = true;
    }
    w = calloc(1, sizeof(*w));
    nxl__wbuf_init(&a);
    nxl__wbuf_init(&b);
    nxl__etcd_key_b64(e, remote, NULL, false, &a);
    nxl__etcd_key_b64(e, remote, NULL, true, &b);
    if (w == NULL || nxl__etcd_body_text(&a) != NXL_OK ||
        nxl__etcd_body_text(&b) != NXL_OK) {
        nxl__wbuf_fini(&a);
        nxl__wbuf_fini(&b);
        free(w);
        status = nxl__fail(NXL_ERR_NOMEM, "etcd: out of memory");
        goto err;
    }
    w->e = e;
    snprintf(w->peer, sizeof(w->peer), "%s", remote);
    w->pfx = (char *)a.data;
    w->end = (char *)b.data;
    w->load_rev = (int64_t)version;
    w->session = session;
    w->next_rev = (int64_t)version + 1;
    w->next = e->watches;
    e->watches = w;
    pthread_mutex_unlock(&e->wlock);
    curl_multi_wakeup(e->multi);
    return NXL_OK;

err:
    if (!e->w_running) {
        curl_easy_cleanup(e->w_sync);
        curl_multi_cleanup(e->multi);
        e->w_sync = NULL;
        e->multi = NULL;
    }
    pthread_mutex_unlock(&e->wlock);
    return status;
}
