/*
 * etcd.c - the etcd v3 metadata store's ops table (etcd.h describes the
 * store and its files): fetch, including the wait for a key that is not
 * there yet, invalidate and close here; publish in etcd_lease.c, watch in
 * etcd_watch.c; configuration from the environment, and open.
 */
#include "etcd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ETCD_MAX_NS 512u
#define ETCD_CLOSE_MS 1000 /* lease revoke on close */

static const nxl__md_store_ops_t etcd_ops;

static pthread_once_t etcd_curl_once = PTHREAD_ONCE_INIT;
static CURLcode etcd_curl_rc;

static void
etcd_curl_init(void)
{
    etcd_curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* --- ops ----------------------------------------------------------------- */

/* The wait for a key that is not there yet: a watch of that one key. */
typedef struct wait_ctx {
    nxl__etcd_stream_t in;
    const char *key;
    bool created, found;
    nxl_status_t bad;
    nxl__etcd_reply_t hit;
} wait_ctx_t;

static nxl_status_t
wait_line(void *arg, const char *line, size_t len)
{
    wait_ctx_t *c = arg;
    nxl__etcd_reply_t r;
    nxl_status_t status;

    status = nxl__etcd_parse(line, len, c->key, &r);
    if (status != NXL_OK) {
        c->bad = status;
        return status;
    }
    if (r.grpc_code != 0 || r.canceled) {
        nxl__debug("etcd: wait ended by etcd: %s",
                   r.grpc_code ? r.message : "canceled");
        nxl__etcd_reply_fini(&r);
        return NXL_ERR_IO;
    }
    c->created = c->created || r.created;
    if (r.has_kv) {
        c->hit = r;
        c->found = true;
        return NXL_ERR_CANCELED; /* got it: end the transfer */
    }
    nxl__etcd_reply_fini(&r);
    return NXL_OK;
}

static size_t
wait_write(char *p, size_t sz, size_t n, void *arg)
{
    wait_ctx_t *c = arg;

    n *= sz;
    return nxl__etcd_stream_feed(&c->in, p, n, wait_line, c) == NXL_OK ? n : 0;
}

/* etcd_wait_key waits until key (base64) is put at or after from. */
static nxl_status_t
etcd_wait_key(nxl__etcd_t *e, const char *key, const char *what, int64_t from,
              uint64_t deadline, uint64_t t0, nxl_blob_t *blob_p,
              uint64_t *version_p, uint64_t *session_p)
{
    char url[NXL__ETCD_MAX_URL + 16], body[1200], errbuf[CURL_ERROR_SIZE];
    nxl_status_t status = NXL_OK;
    nxl__etcd_reply_t r;
    bool expired = false;
    wait_ctx_t c;
    unsigned ep;
    CURLcode rc;
    CURL *h;

    h = nxl__etcd_easy(e, false);
    if (h == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "etcd: curl_easy_init failed");
    }
    for (;;) {
        uint64_t left = nxl__etcd_ms_left(deadline);

        if (left == 0 || expired) {
            status = nxl__fail(
                NXL_ERR_NOT_FOUND, "etcd: no %s within %llu ms", what,
                (unsigned long long)((nxl__now_ns() - t0) / 1000000u));
            break;
        }
        memset(&c, 0, sizeof(c));
        c.key = key;
        ep = atomic_load(&e->ep_cur) % e->neps;
        snprintf(url, sizeof(url), "%s/v3/watch", e->eps[ep]);
        snprintf(body, sizeof(body),
                 "{\"create_request\":{\"key\":\"%s\","
                 "\"start_revision\":\"%lld\"}}",
                 key, (long long)from);
        errbuf[0] = '\0';
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)strlen(body));
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, wait_write);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &c);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)left);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                         (long)NXL__MIN(left, (uint64_t)NXL__ETCD_CONNECT_MS));
        rc = curl_easy_perform(h);
        nxl__etcd_stream_fini(&c.in);
        if (c.found) {
            *blob_p = c.hit.value;
            c.hit.value.data = NULL;
            *version_p = (uint64_t)NXL__MAX(c.hit.revision, c.hit.mod_revision);
            *session_p = (uint64_t)c.hit.kv_lease;
            nxl__etcd_reply_fini(&c.hit);
            break;
        }
        if (c.bad != NXL_OK) {
            char in[256];

            status =
                nxl__fail(c.bad, "etcd: %s: watch on %s: %s", what, e->eps[ep],
                          nxl__etcd_inner_error(in, sizeof(in)));
            break;
        }
        if (rc == CURLE_OPERATION_TIMEDOUT && c.created) {
            /* A healthy watch ran out the whole remainder (ms_left rounds
             * up, so it may still say 1 ms): the key did not come. */
            expired = true;
            continue; /* reports NOT_FOUND */
        }
        /* The stream failed: the key may have come meanwhile. */
        nxl__debug("etcd: wait for %s on %s: %s", what, e->eps[ep],
                   errbuf[0] ? errbuf : curl_easy_strerror(rc));
        nxl__etcd_ep_next(e, ep);
        if (nxl__etcd_ms_left(deadline) == 0) {
            status = nxl__fail(rc == CURLE_OPERATION_TIMEDOUT ? NXL_ERR_TIMEOUT
                                                              : NXL_ERR_IO,
                               "etcd: %s: %s: %s", what, e->eps[ep],
                               errbuf[0] ? errbuf : curl_easy_strerror(rc));
            break;
        }
        nxl__etcd_sleep(e,
                        NXL__MIN(nxl__etcd_ms_left(deadline),
                                 (uint64_t)NXL__ETCD_BACKOFF_MIN_MS),
                        false);
        snprintf(body, sizeof(body), "{\"key\":\"%s\"}", key);
        status = nxl__etcd_call(e, h, false, what, "/v3/kv/range", body,
                                strlen(body), false, deadline, &r);
        if (status != NXL_OK) {
            nxl__etcd_reply_fini(&r);
            break;
        }
        if (r.has_kv) {
            *blob_p = r.value;
            r.value.data = NULL;
            *version_p = (uint64_t)r.revision;
            *session_p = (uint64_t)r.kv_lease;
            nxl__etcd_reply_fini(&r);
            break;
        }
        from = r.revision + 1;
        nxl__etcd_reply_fini(&r);
    }
    curl_easy_cleanup(h);
    return status;
}

static nxl_status_t
etcd_fetch(nxl__md_store_t *s, const char *remote, const char *label,
           int timeout_ms, nxl_blob_t *blob_p, uint64_t *version_p,
           uint64_t *session_p)
{
    nxl__etcd_t *e = (nxl__etcd_t *)s;
    uint64_t t0 = nxl__now_ns(), deadline = nxl__etcd_deadline_of(timeout_ms);
    char what[2 * (NXL__MD_NAME_MAX + NXL__ETCD_MAX_LABEL) + ETCD_MAX_NS + 64];
    nxl__etcd_reply_t r;
    nxl_status_t status;
    nxl__wbuf_t key, body;

    status = nxl__etcd_check_name("the agent name", remote);
    if (status == NXL_OK) {
        status = nxl__etcd_check_label(label);
    }
    if (status != NXL_OK) {
        return status;
    }
    snprintf(what, sizeof(what), "metadata of '%s' (label '%s') at %s/%s/%s",
             remote, label, e->ns, remote, label);
    nxl__wbuf_init(&key);
    nxl__etcd_key_b64(e, remote, label, false, &key);
    status = nxl__etcd_body_text(&key);
    if (status != NXL_OK) {
        return status;
    }
    nxl__wbuf_init(&body);
    nxl__json_text(&body, "{\"key\":\"");
    nxl__json_text(&body, (const char *)key.data);
    nxl__json_text(&body, "\"}");
    status = nxl__etcd_body_text(&body);
    if (status != NXL_OK) {
        nxl__wbuf_fini(&key);
        return status;
    }
    pthread_mutex_lock(&e->lock);
    status = nxl__etcd_call(e, e->ops, false, what, "/v3/kv/range", body.data,
                            body.len, false, deadline, &r);
    pthread_mutex_unlock(&e->lock);
    nxl__wbuf_fini(&body);
    if (status == NXL_OK && r.has_kv) {
        *blob_p = r.value;
        r.value.data = NULL;
        *version_p = (uint64_t)r.revision;
        *session_p = (uint64_t)r.kv_lease;
    } else if (status == NXL_OK) {
        status = etcd_wait_key(e, (const char *)key.data, what, r.revision + 1,
                               deadline, t0, blob_p, version_p, session_p);
    }
    nxl__etcd_reply_fini(&r);
    nxl__wbuf_fini(&key);
    return status;
}

static nxl_status_t
etcd_invalidate(nxl__md_store_t *s, int timeout_ms)
{
    nxl__etcd_t *e = (nxl__etcd_t *)s;
    nxl__etcd_reply_t r;
    nxl_status_t status;
    nxl__wbuf_t b;

    status = nxl__etcd_check_name("the agent name", e->agent);
    if (status != NXL_OK) {
        return status;
    }
    nxl__wbuf_init(&b);
    nxl__json_text(&b, "{\"key\":\"");
    nxl__etcd_key_b64(e, e->agent, NULL, false, &b);
    nxl__json_text(&b, "\",\"range_end\":\"");
    nxl__etcd_key_b64(e, e->agent, NULL, true, &b);
    nxl__json_text(&b, "\"}");
    status = nxl__etcd_body_text(&b);
    if (status != NXL_OK) {
        return status;
    }
    pthread_mutex_lock(&e->lock);
    status =
        nxl__etcd_call(e, e->ops, false, "delete", "/v3/kv/deleterange", b.data,
                       b.len, false, nxl__etcd_deadline_of(timeout_ms), &r);
    if (status == NXL_OK) {
        nxl__etcd_pubs_clear(e);
    }
    pthread_mutex_unlock(&e->lock);
    nxl__etcd_reply_fini(&r);
    nxl__wbuf_fini(&b);
    return status;
}

static void
etcd_free(nxl__etcd_t *e)
{
    unsigned i;

    for (i = 0; e->eps != NULL && i < e->neps; i++) {
        free(e->eps[i]);
    }
    free(e->eps);
    free(e->ns);
    nxl__etcd_pubs_clear(e);
    free(e->pubs);
    curl_easy_cleanup(e->ops);
    curl_easy_cleanup(e->ka_h);
    curl_slist_free_all(e->hdrs);
    pthread_mutex_destroy(&e->lock);
    pthread_mutex_destroy(&e->ka_mu);
    pthread_cond_destroy(&e->ka_cv);
    pthread_mutex_destroy(&e->wlock);
    free(e);
}

static void
etcd_close(nxl__md_store_t *s)
{
    nxl__etcd_t *e = (nxl__etcd_t *)s;
    nxl__etcd_reply_t r;
    nxl__etcd_watch_t *w;
    char body[64];
    int64_t id;

    if (e == NULL) {
        return;
    }
    pthread_mutex_lock(&e->ka_mu);
    atomic_store(&e->stop, true);
    pthread_cond_broadcast(&e->ka_cv);
    pthread_mutex_unlock(&e->ka_mu);
    if (e->w_running) {
        curl_multi_wakeup(e->multi);
        pthread_join(e->w_tid, NULL);
    }
    if (e->ka_running) {
        pthread_join(e->ka_tid, NULL);
    }
    while ((w = e->watches) != NULL) {
        e->watches = w->next;
        nxl__etcd_watch_free(e, w);
    }
    curl_easy_cleanup(e->w_sync);
    curl_multi_cleanup(e->multi);
    id = atomic_load(&e->lease);
    if (id != 0) {
        /* A clean exit: the keys go now, not after the TTL. */
        snprintf(body, sizeof(body), "{\"ID\":\"%lld\"}", (long long)id);
        if (nxl__etcd_call(e, e->ops, false, "lease revoke", "/v3/lease/revoke",
                           body, strlen(body), false,
                           nxl__now_ns() + ETCD_CLOSE_MS * 1000000ull,
                           &r) != NXL_OK) {
            nxl__log(NXL_LOG_INFO, "%s (its keys expire after %u s)",
                     nxl_last_error(), e->ttl_s);
        }
        nxl__etcd_reply_fini(&r);
    }
    etcd_free(e);
}

static const nxl__md_store_ops_t etcd_ops = {
    .name = "etcd",
    .publish = nxl__etcd_publish,
    .fetch = etcd_fetch,
    .watch = nxl__etcd_watch_peer,
    .invalidate = etcd_invalidate,
    .close = etcd_close,
};

/* --- configuration and open ---------------------------------------------- */

nxl_status_t
nxl__etcd_cfg_env(nxl__etcd_cfg_t *cfg)
{
    const char *eps = nxl__getenv("ETCD_ENDPOINTS");
    const char *ttl = nxl__getenv("ETCD_LEASE_TTL");
    uint64_t v = 0;
    nxl_status_t status;

    memset(cfg, 0, sizeof(*cfg));
    if (eps == NULL || eps[strspn(eps, ",; \t")] == '\0') {
        return nxl__fail(NXL_ERR_NOT_FOUND,
                         "etcd: NXL_ETCD_ENDPOINTS is not set");
    }
    cfg->endpoints = eps;
    cfg->ns = nxl__getenv("ETCD_NAMESPACE");
    if (ttl != NULL) {
        status = nxl__param_u64("etcd", "NXL_ETCD_LEASE_TTL", ttl, false, 1,
                                86400, &v);
        if (status != NXL_OK) {
            return status;
        }
        cfg->ttl_s = (unsigned)v;
    }
    return NXL_OK;
}

static nxl_status_t
parse_endpoints(nxl__etcd_t *e, const char *list)
{
    const char *p = list, *scheme;
    size_t n, len;
    char *ep;

    e->eps = calloc(NXL__ETCD_MAX_ENDPOINTS, sizeof(*e->eps));
    if (e->eps == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "etcd: out of memory");
    }
    for (;;) {
        p += strspn(p, ",; \t\r\n");
        n = strcspn(p, ",; \t\r\n");
        if (n == 0) {
            break;
        }
        if (e->neps == NXL__ETCD_MAX_ENDPOINTS) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "etcd: more than %u endpoints",
                             NXL__ETCD_MAX_ENDPOINTS);
        }
        scheme = "";
        if (n < 3 || memmem(p, n, "://", 3) == NULL) {
            scheme = "http://";
        } else if (!(n > 7 && strncmp(p, "http://", 7) == 0) &&
                   !(n > 8 && strncmp(p, "https://", 8) == 0)) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "etcd: endpoint '%.*s': only http:// and "
                             "https:// are supported",
                             (int)NXL__MIN(n, 200u), p);
        }
        len = n;
        while (len > 0 && p[len - 1] == '/') {
            len--;
        }
        if (len + strlen(scheme) > NXL__ETCD_MAX_URL ||
            len <= (scheme[0] ? 0u : (p[4] == 's' ? 8u : 7u))) {
            return nxl__fail(NXL_ERR_INVALID_PARAM, "etcd: bad endpoint '%.*s'",
                             (int)NXL__MIN(n, 200u), p);
        }
        ep = malloc(strlen(scheme) + len + 1);
        if (ep == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "etcd: out of memory");
        }
        sprintf(ep, "%s%.*s", scheme, (int)len, p);
        e->eps[e->neps++] = ep;
        p += n;
    }
    if (e->neps == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "etcd: no endpoint in '%.200s'",
                         list);
    }
    return NXL_OK;
}

nxl_status_t
nxl__etcd_open(const nxl__etcd_cfg_t *cfg, const char *agent,
               nxl__md_store_gone_fn gone, void *arg, nxl__md_store_t **store_p)
{
    const char *ns = cfg->ns ? cfg->ns : NXL__ETCD_DEFAULT_NS;
    nxl__etcd_t *e;
    nxl_status_t status;
    size_t nlen;

    if (agent == NULL || agent[0] == '\0' || strlen(agent) > NXL__MD_NAME_MAX ||
        gone == NULL || cfg->endpoints == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "etcd: open: bad argument");
    }
    nlen = strlen(ns);
    while (nlen > 0 && ns[nlen - 1] == '/') {
        nlen--;
    }
    if (nlen > ETCD_MAX_NS) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "etcd: a namespace longer "
                         "than %u bytes",
                         ETCD_MAX_NS);
    }
    pthread_once(&etcd_curl_once, etcd_curl_init);
    if (etcd_curl_rc != CURLE_OK) {
        return nxl__fail(NXL_ERR_IO, "etcd: curl_global_init: %s",
                         curl_easy_strerror(etcd_curl_rc));
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "etcd: out of memory");
    }
    e->base.ops = &etcd_ops;
    snprintf(e->agent, sizeof(e->agent), "%s", agent);
    e->ttl_s = cfg->ttl_s ? cfg->ttl_s : NXL__ETCD_DEFAULT_TTL;
    e->gone = gone;
    e->arg = arg;
    atomic_init(&e->ep_cur, 0);
    atomic_init(&e->stop, false);
    atomic_init(&e->lease, 0);
    atomic_init(&e->dirty, false);
    pthread_mutex_init(&e->lock, NULL);
    pthread_mutex_init(&e->ka_mu, NULL);
    pthread_cond_init(&e->ka_cv, NULL);
    pthread_mutex_init(&e->wlock, NULL);
    e->ns = strndup(ns, nlen);
    if (e->ns == NULL) {
        status = nxl__fail(NXL_ERR_NOMEM, "etcd: out of memory");
        goto err;
    }
    status = parse_endpoints(e, cfg->endpoints);
    if (status != NXL_OK) {
        goto err;
    }
    e->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    if (e->hdrs != NULL) {
        struct curl_slist *h2 = curl_slist_append(e->hdrs, "Expect:");

        if (h2 == NULL) {
            curl_slist_free_all(e->hdrs);
        }
        e->hdrs = h2;
    }
    e->ops = nxl__etcd_easy(e, false);
    e->ka_h = nxl__etcd_easy(e, true);
    if (e->hdrs == NULL || e->ops == NULL || e->ka_h == NULL) {
        status = nxl__fail(NXL_ERR_NOMEM, "etcd: curl_easy_init failed");
        goto err;
    }
    *store_p = &e->base;
    return NXL_OK;

err:
    etcd_free(e);
    return status;
}
