/*
 * etcd.c - the etcd v3 metadata store, through etcd's HTTP/JSON gateway
 * (libcurl for HTTP, json-c for the answers).
 *
 * Keys are <ns>/<agent>/<label> (one slash each; NIXL writes a double one
 * with its default namespace), values the metadata blob; keys and values
 * travel base64-encoded in the gateway's JSON.
 *
 * Objects and threads (docs/etcd.md):
 * - the ops handle: one keep-alive curl handle under e->lock for publish,
 *   fetch and invalidate (the caller's thread);
 * - the lease: granted on the first publish; every key this agent writes
 *   is bound to it, so a crashed agent's keys vanish after the TTL. The
 *   keep-alive thread renews it every TTL/3 over its own connection; when
 *   etcd answers that the lease is gone (expired while unreachable, or
 *   etcd lost its data) it grants a new one and writes every published
 *   key again (e->pubs keeps a copy of each);
 * - the watch thread: one curl multi handle with one /v3/watch stream per
 *   watched peer (prefix <ns>/<peer>/, DELETE events only). A DELETE
 *   after the revision the peer was loaded at calls the owner's gone
 *   callback. A broken stream is resumed on the next endpoint after a
 *   range read that tells whether the peer still exists;
 * - a fetch of a key that is not there waits on a /v3/watch of that key
 *   in the caller's thread, up to its timeout.
 * Endpoints are tried in turn: a connection failure, a timeout or an
 * "unavailable" answer moves every handle to the next endpoint, with a
 * short back-off once all have failed, until the call's deadline.
 *
 * Every byte from etcd is checked: answers are bounded (96 MiB, lines of
 * streams too) and decoded by etcd_reply.c (fuzz/fuzz_etcd.c).
 */
#include "store.h"

#include <curl/curl.h>
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ETCD_MAX_URL 512u
#define ETCD_MAX_NS 512u
#define ETCD_CONNECT_MS 1000     /* connect timeout per attempt */
#define ETCD_ATTEMPT_MS 2000     /* per attempt when there are endpoints
                                  * to fail over to */
#define ETCD_RETRY_MS 500        /* background retry period */
#define ETCD_BACKOFF_MIN_MS 50
#define ETCD_BACKOFF_MAX_MS 500
#define ETCD_CLOSE_MS 1000       /* lease revoke on close */

enum { GRPC_DEADLINE = 4, GRPC_NOT_FOUND = 5, GRPC_UNAVAILABLE = 14 };

typedef struct nxl__etcd nxl__etcd_t;

/* A key this agent published: what the lease keeps alive. */
typedef struct etcd_pub {
    char *label;
    uint8_t *val;
    size_t len;
} etcd_pub_t;

/* A watched peer. peer, pfx and end never change; load_rev and load_seq
 * are under e->wlock; the rest belongs to the watch thread. */
typedef struct etcd_watch {
    struct etcd_watch *next;
    nxl__etcd_t *e;
    char peer[NXL__MD_NAME_MAX + 1];
    char *pfx, *end;          /* base64 of <ns>/<peer>/ and its range end */
    int64_t load_rev;         /* the peer was last loaded at this revision */
    uint64_t load_seq;        /* bumped by every watch() */
    uint64_t session;         /* the lease of what was loaded (0 unknown) */
    CURL *h;                  /* the stream; NULL while (re)connecting */
    char *body;
    nxl__etcd_stream_t in;
    int64_t next_rev;         /* start the next stream here; 0: resync */
    int64_t last_rev;         /* highest revision the stream reported */
    int64_t gone_rev;         /* a DELETE was seen at this revision */
    bool force_gone;          /* a resync found the prefix empty */
    bool created;             /* etcd confirmed the current stream */
    unsigned fails;
    uint64_t retry_at;        /* ns */
    char errbuf[CURL_ERROR_SIZE];
} etcd_watch_t;

struct nxl__etcd {
    nxl__md_store_t base;
    char agent[NXL__MD_NAME_MAX + 1];
    char **eps;
    unsigned neps;
    atomic_uint ep_cur;
    char *ns;
    unsigned ttl_s;
    nxl__md_store_gone_fn gone;
    void *arg;
    struct curl_slist *hdrs;
    atomic_bool stop;

    pthread_mutex_t lock;     /* ops handle, pubs, lease changes */
    CURL *ops;
    _Atomic int64_t lease;    /* 0: none granted */
    atomic_bool dirty;        /* a re-registration is incomplete */
    etcd_pub_t *pubs;
    size_t npubs, cap;

    pthread_mutex_t ka_mu;    /* the keep-alive thread's sleep */
    pthread_cond_t ka_cv;
    pthread_t ka_tid;
    bool ka_running;
    CURL *ka_h;

    pthread_mutex_t wlock;    /* watches (list and load_rev) */
    etcd_watch_t *watches;
    CURLM *multi;
    CURL *w_sync;             /* the watch thread's range reads */
    pthread_t w_tid;
    bool w_running;
};

static const nxl__md_store_ops_t etcd_ops;

/* --- HTTP ---------------------------------------------------------------- */

/* inner_error copies this thread's last error without its "etcd: " prefix
 * into buf, to nest it in a new message (nxl__fail must not read the
 * buffer it writes). */
static const char *
inner_error(char *buf, size_t cap)
{
    const char *m = nxl_last_error();

    snprintf(buf, cap, "%s", strncmp(m, "etcd: ", 6) == 0 ? m + 6 : m);
    return buf;
}

static pthread_once_t etcd_curl_once = PTHREAD_ONCE_INIT;
static CURLcode etcd_curl_rc;

static void
etcd_curl_init(void)
{
    etcd_curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static uint64_t
ms_left(uint64_t deadline)
{
    uint64_t now = nxl__now_ns();

    return deadline > now ? (deadline - now + 999999u) / 1000000u : 0;
}

/* etcd_sleep waits ms; a background sleep (bg) ends early on close. */
static void
etcd_sleep(nxl__etcd_t *e, uint64_t ms, bool bg)
{
    struct timespec ts;

    if (!bg) {
        ts.tv_sec = (time_t)(ms / 1000u);
        ts.tv_nsec = (long)(ms % 1000u) * 1000000L;
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000u);
    ts.tv_nsec += (long)(ms % 1000u) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&e->ka_mu);
    while (!atomic_load(&e->stop) &&
           pthread_cond_timedwait(&e->ka_cv, &e->ka_mu, &ts) == 0) {
    }
    pthread_mutex_unlock(&e->ka_mu);
}

/* etcd_abort_cb stops a background transfer once the store closes. */
static int
etcd_abort_cb(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut,
              curl_off_t un)
{
    nxl__etcd_t *e = arg;

    (void)dt, (void)dn, (void)ut, (void)un;
    return atomic_load(&e->stop) ? 1 : 0;
}

/* etcd_easy makes a handle with the options every request shares. */
static CURL *
etcd_easy(nxl__etcd_t *e, bool bg)
{
    CURL *h = curl_easy_init();

    if (h == NULL) {
        return NULL;
    }
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROXY, ""); /* etcd is reached directly */
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, e->hdrs);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 10L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 5L);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    if (bg) {
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, etcd_abort_cb);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, e);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    }
    return h;
}

typedef struct etcd_sink {
    nxl__wbuf_t w;
    bool too_big;
} etcd_sink_t;

static size_t
sink_write(char *p, size_t sz, size_t n, void *arg)
{
    etcd_sink_t *s = arg;

    n *= sz;
    if (n > NXL__ETCD_MAX_ANSWER - s->w.len) {
        s->too_big = true;
        return 0;
    }
    nxl__wbuf_put(&s->w, p, n);
    return s->w.failed ? 0 : n;
}

/* ep_next moves the shared endpoint cursor off ep (if nobody did yet). */
static void
ep_next(nxl__etcd_t *e, unsigned ep)
{
    unsigned want = ep;

    atomic_compare_exchange_strong(&e->ep_cur, &want, (ep + 1) % e->neps);
}

/* grpc_status maps a refused request to a status. */
static nxl_status_t
grpc_status(int code)
{
    switch (code) {
    case 3: /* INVALID_ARGUMENT: too large, bad key */
    case 11: /* OUT_OF_RANGE */
        return NXL_ERR_INVALID_PARAM;
    case GRPC_NOT_FOUND:
        return NXL_ERR_NOT_FOUND;
    case 7: /* PERMISSION_DENIED */
    case 16: /* UNAUTHENTICATED */
        return NXL_ERR_NOT_ALLOWED;
    case GRPC_DEADLINE:
        return NXL_ERR_TIMEOUT;
    default:
        return NXL_ERR_IO;
    }
}

/* etcd_call POSTs body to path on the endpoints in turn until one answers
 * or deadline passes, and parses the answer (the first line of a stream
 * when stream) into *r (release with nxl__etcd_reply_fini whatever the
 * status). An answer etcd refuses is returned as its mapped status with
 * r->grpc_code set; "unavailable" answers and transport failures go to
 * the next endpoint. what names the operation in messages. */
static nxl_status_t
etcd_call(nxl__etcd_t *e, CURL *h, bool bg, const char *what,
          const char *path, const void *body, size_t blen, bool stream,
          uint64_t deadline, nxl__etcd_reply_t *r)
{
    char url[ETCD_MAX_URL + 64], errbuf[CURL_ERROR_SIZE], last[320] = "";
    uint64_t t0 = nxl__now_ns(), backoff = ETCD_BACKOFF_MIN_MS, left;
    nxl_status_t status, last_st = NXL_ERR_IO;
    unsigned ep, tried = 0;
    etcd_sink_t sink;
    long code = 0;
    CURLcode rc;
    size_t n;
    char *nl;

    memset(r, 0, sizeof(*r));
    for (;;) {
        left = ms_left(deadline);
        if (left == 0 && tried > 0) {
            break;
        }
        if (bg && atomic_load(&e->stop)) {
            return nxl__fail(NXL_ERR_CANCELED, "etcd: %s: the store is "
                             "closing", what);
        }
        left = NXL__MAX(left, (uint64_t)1);
        ep = atomic_load(&e->ep_cur) % e->neps;
        snprintf(url, sizeof(url), "%s%s", e->eps[ep], path);
        memset(&sink, 0, sizeof(sink));
        errbuf[0] = '\0';
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
                         (long)(e->neps > 1 ? NXL__MIN(left,
                                                       (uint64_t)
                                                           ETCD_ATTEMPT_MS)
                                            : left));
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                         (long)NXL__MIN(left, (uint64_t)ETCD_CONNECT_MS));
        rc = curl_easy_perform(h);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
        tried++;
        if (rc == CURLE_OK) {
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
            n = sink.w.len;
            if (stream && n > 0 &&
                (nl = memchr(sink.w.data, '\n', n)) != NULL) {
                n = (size_t)(nl - (char *)sink.w.data);
            }
            status = nxl__etcd_parse((const char *)sink.w.data, n, NULL, r);
            nxl__wbuf_fini(&sink.w);
            if (status != NXL_OK && code >= 500) {
                /* A proxy or a dying server: not etcd's JSON. */
                snprintf(last, sizeof(last), "%s: HTTP %ld", e->eps[ep],
                         code);
                last_st = NXL_ERR_IO;
            } else if (status != NXL_OK) {
                char in[256];

                return nxl__fail(status, "etcd: %s: %s (HTTP %ld): %s",
                                 what, e->eps[ep], code,
                                 inner_error(in, sizeof(in)));
            } else if (r->grpc_code == 0 && code == 200) {
                return NXL_OK;
            } else if (r->grpc_code == GRPC_UNAVAILABLE ||
                       (r->grpc_code == 0 && code >= 500)) {
                snprintf(last, sizeof(last), "%s: %s", e->eps[ep],
                         r->grpc_code ? r->message : "HTTP error");
                last_st = NXL_ERR_IO;
                nxl__etcd_reply_fini(r);
                memset(r, 0, sizeof(*r));
            } else {
                if (r->grpc_code == 0) {
                    r->grpc_code = 2;
                    snprintf(r->message, sizeof(r->message), "HTTP %ld",
                             code);
                }
                return nxl__fail(grpc_status(r->grpc_code),
                                 "etcd: %s: %s: %s (gRPC code %d)", what,
                                 e->eps[ep], r->message, r->grpc_code);
            }
        } else {
            nxl__wbuf_fini(&sink.w);
            if (sink.too_big) {
                return nxl__fail(NXL_ERR_PROTO, "etcd: %s: %s: an answer "
                                 "larger than %u bytes", what, e->eps[ep],
                                 NXL__ETCD_MAX_ANSWER);
            }
            if (rc == CURLE_ABORTED_BY_CALLBACK) {
                return nxl__fail(NXL_ERR_CANCELED, "etcd: %s: the store is "
                                 "closing", what);
            }
            snprintf(last, sizeof(last), "%s: %s", e->eps[ep],
                     errbuf[0] ? errbuf : curl_easy_strerror(rc));
            last_st = rc == CURLE_OPERATION_TIMEDOUT ? NXL_ERR_TIMEOUT
                                                     : NXL_ERR_IO;
        }
        ep_next(e, ep);
        nxl__debug("etcd: %s: %s; trying the next endpoint", what, last);
        if (tried % e->neps == 0) {
            left = ms_left(deadline);
            if (left == 0) {
                break;
            }
            etcd_sleep(e, NXL__MIN(backoff, left), bg);
            backoff = NXL__MIN(backoff * 2, (uint64_t)ETCD_BACKOFF_MAX_MS);
        }
    }
    return nxl__fail(last_st, "etcd: %s: no endpoint answered within %llu "
                     "ms (%u attempt%s; last: %s)", what,
                     (unsigned long long)((nxl__now_ns() - t0) / 1000000u),
                     tried, tried == 1 ? "" : "s", last);
}

/* --- keys and requests --------------------------------------------------- */

/* key_b64 appends base64(<ns>/<agent>/<label>) to out; label NULL gives
 * the prefix <ns>/<agent>/, and with end its range end. */
static void
key_b64(const nxl__etcd_t *e, const char *agent, const char *label,
        bool end, nxl__wbuf_t *out)
{
    nxl__wbuf_t k;

    nxl__wbuf_init(&k);
    nxl__wbuf_put(&k, e->ns, strlen(e->ns));
    nxl__wbuf_put(&k, "/", 1);
    nxl__wbuf_put(&k, agent, strlen(agent));
    nxl__wbuf_put(&k, label ? "/" : (end ? "0" : "/"), 1); /* '/'+1 = '0' */
    if (label != NULL) {
        nxl__wbuf_put(&k, label, strlen(label));
    }
    if (k.failed) {
        out->failed = true;
    } else {
        nxl__b64_encode(out, k.data, k.len);
    }
    nxl__wbuf_fini(&k);
}

/* body_text finishes a JSON body built in w as a NUL-terminated string. */
static nxl_status_t
body_text(nxl__wbuf_t *w)
{
    nxl__wbuf_put(w, "", 1);
    if (w->failed) {
        nxl__wbuf_fini(w);
        return nxl__fail(NXL_ERR_NOMEM, "etcd: out of memory");
    }
    w->len--;
    return NXL_OK;
}

static void
put_str(nxl__wbuf_t *w, const char *s)
{
    nxl__wbuf_put(w, s, strlen(s));
}

static void
put_i64(nxl__wbuf_t *w, int64_t v)
{
    char num[32];

    snprintf(num, sizeof(num), "\"%lld\"", (long long)v);
    put_str(w, num);
}

static nxl_status_t
check_name(const char *what, const char *name)
{
    size_t n = name ? strlen(name) : 0;

    if (n == 0 || n > NXL__MD_NAME_MAX) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "etcd: %s must be 1..%u bytes", what,
                         NXL__MD_NAME_MAX);
    }
    if (strchr(name, '/') != NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "etcd: %s '%s' contains '/', which the key layout "
                         "<namespace>/<agent>/<label> cannot hold", what,
                         name);
    }
    return NXL_OK;
}

static nxl_status_t
check_label(const char *label)
{
    size_t n = label ? strlen(label) : 0;

    if (n == 0 || n > NXL__ETCD_MAX_LABEL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "etcd: the label must be 1..%u bytes",
                         NXL__ETCD_MAX_LABEL);
    }
    return NXL_OK;
}

/* lease_grant asks for a lease of e->ttl_s seconds. */
static nxl_status_t
lease_grant(nxl__etcd_t *e, CURL *h, bool bg, uint64_t deadline,
            int64_t *id_p)
{
    nxl__etcd_reply_t r;
    nxl_status_t status;
    char body[64];

    snprintf(body, sizeof(body), "{\"TTL\":\"%u\"}", e->ttl_s);
    status = etcd_call(e, h, bg, "lease grant", "/v3/lease/grant", body,
                       strlen(body), false, deadline, &r);
    if (status == NXL_OK && (r.lease_id == 0 || r.ttl <= 0)) {
        status = nxl__fail(NXL_ERR_PROTO, "etcd: lease grant answered "
                           "without a lease");
    }
    if (status == NXL_OK) {
        *id_p = r.lease_id;
    }
    nxl__etcd_reply_fini(&r);
    return status;
}

/* kv_put writes <ns>/<agent>/<label> = val bound to lease. */
static nxl_status_t
kv_put(nxl__etcd_t *e, CURL *h, bool bg, const char *label,
       const uint8_t *val, size_t len, int64_t lease, uint64_t deadline,
       nxl__etcd_reply_t *r)
{
    nxl_status_t status;
    nxl__wbuf_t w;

    nxl__wbuf_init(&w);
    nxl__wbuf_reserve(&w, len / 3 * 4 + 4 * strlen(label) + 256);
    put_str(&w, "{\"key\":\"");
    key_b64(e, e->agent, label, false, &w);
    put_str(&w, "\",\"value\":\"");
    nxl__b64_encode(&w, val, len);
    put_str(&w, "\",\"lease\":");
    put_i64(&w, lease);
    put_str(&w, "}");
    status = body_text(&w);
    if (status != NXL_OK) {
        memset(r, 0, sizeof(*r));
        return status;
    }
    status = etcd_call(e, h, bg, "put", "/v3/kv/put", w.data, w.len, false,
                       deadline, r);
    nxl__wbuf_fini(&w);
    return status;
}

static bool
lease_lost(nxl_status_t status, const nxl__etcd_reply_t *r)
{
    return status == NXL_ERR_NOT_FOUND && r->grpc_code == GRPC_NOT_FOUND &&
           strstr(r->message, "lease not found") != NULL;
}

/* reregister_locked grants a new lease and writes every published key
 * again under it (e->lock held). */
static nxl_status_t
reregister_locked(nxl__etcd_t *e, CURL *h, bool bg, uint64_t deadline)
{
    nxl__etcd_reply_t r;
    nxl_status_t status;
    int64_t id = 0;
    size_t i;

    atomic_store(&e->dirty, true);
    status = lease_grant(e, h, bg, deadline, &id);
    if (status != NXL_OK) {
        return status;
    }
    atomic_store(&e->lease, id);
    for (i = 0; i < e->npubs; i++) {
        status = kv_put(e, h, bg, e->pubs[i].label, e->pubs[i].val,
                        e->pubs[i].len, id, deadline, &r);
        nxl__etcd_reply_fini(&r);
        if (status != NXL_OK) {
            return status;
        }
    }
    atomic_store(&e->dirty, false);
    nxl__log(NXL_LOG_INFO, "etcd: agent '%s' registered again: lease %lld, "
             "%zu keys", e->agent, (long long)id, e->npubs);
    return NXL_OK;
}

/* --- the keep-alive thread ----------------------------------------------- */

static uint64_t
ka_period_ms(const nxl__etcd_t *e)
{
    return NXL__MAX((uint64_t)e->ttl_s * 1000u / 3u, (uint64_t)300);
}

static void *
ka_main(void *arg)
{
    nxl__etcd_t *e = arg;
    uint64_t period = ka_period_ms(e), wait = period;
    nxl__etcd_reply_t r;
    nxl_status_t status;
    bool failing = false;
    char body[64];
    int64_t id;

    for (;;) {
        etcd_sleep(e, wait, true);
        if (atomic_load(&e->stop)) {
            break;
        }
        wait = period;
        id = atomic_load(&e->lease);
        if (id == 0) {
            continue;
        }
        snprintf(body, sizeof(body), "{\"ID\":\"%lld\"}", (long long)id);
        status = etcd_call(e, e->ka_h, true, "lease keep-alive",
                           "/v3/lease/keepalive", body, strlen(body), true,
                           nxl__now_ns() + period * 1000000u, &r);
        if (status == NXL_ERR_CANCELED) {
            nxl__etcd_reply_fini(&r);
            break;
        }
        if (status == NXL_OK && r.ttl > 0 && !atomic_load(&e->dirty)) {
            if (failing) {
                nxl__log(NXL_LOG_INFO, "etcd: agent '%s': lease keep-alive "
                         "works again", e->agent);
            }
            failing = false;
        } else if ((status == NXL_OK && r.ttl <= 0) ||
                   lease_lost(status, &r) || atomic_load(&e->dirty)) {
            /* The lease is gone (or a re-registration is unfinished). */
            pthread_mutex_lock(&e->lock);
            status = NXL_OK;
            if (atomic_load(&e->lease) == id || atomic_load(&e->dirty)) {
                nxl__log(NXL_LOG_WARN, "etcd: agent '%s': lease %lld is "
                         "gone; registering again", e->agent, (long long)id);
                status = reregister_locked(e, e->ka_h, true,
                                           nxl__now_ns() + period * 1000000u);
            }
            pthread_mutex_unlock(&e->lock);
            if (status != NXL_OK) {
                nxl__log(NXL_LOG_WARN, "%s (agent '%s'; retrying every "
                         "%u ms)", nxl_last_error(), e->agent, ETCD_RETRY_MS);
                wait = ETCD_RETRY_MS;
            }
            failing = status != NXL_OK;
        } else {
            if (!failing) {
                nxl__log(NXL_LOG_WARN, "%s (agent '%s'; retrying every "
                         "%u ms)", nxl_last_error(), e->agent, ETCD_RETRY_MS);
            }
            failing = true;
            wait = ETCD_RETRY_MS;
        }
        nxl__etcd_reply_fini(&r);
    }
    return NULL;
}

/* --- the watch thread ---------------------------------------------------- */

static uint64_t
backoff_ns(unsigned fails)
{
    uint64_t ms = ETCD_BACKOFF_MIN_MS << NXL__MIN(fails, 5u);

    return NXL__MIN(ms, (uint64_t)ETCD_RETRY_MS) * 1000000u;
}

static nxl_status_t
watch_line(void *arg, const char *line, size_t len)
{
    etcd_watch_t *w = arg;
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
    etcd_watch_t *w = arg;

    n *= sz;
    return nxl__etcd_stream_feed(&w->in, p, n, watch_line, w) == NXL_OK ? n
                                                                         : 0;
}

/* watch_stop_stream ends w's stream (watch thread). */
static void
watch_stop_stream(nxl__etcd_t *e, etcd_watch_t *w)
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

static void
watch_free(nxl__etcd_t *e, etcd_watch_t *w)
{
    watch_stop_stream(e, w);
    free(w->pfx);
    free(w->end);
    free(w);
}

/* watch_start opens w's stream from w->next_rev (watch thread). */
static nxl_status_t
watch_start(nxl__etcd_t *e, etcd_watch_t *w)
{
    char url[ETCD_MAX_URL + 16];
    unsigned ep = atomic_load(&e->ep_cur) % e->neps;
    nxl__wbuf_t b;

    nxl__wbuf_init(&b);
    put_str(&b, "{\"create_request\":{\"key\":\"");
    put_str(&b, w->pfx);
    put_str(&b, "\",\"range_end\":\"");
    put_str(&b, w->end);
    put_str(&b, "\",\"start_revision\":");
    put_i64(&b, w->next_rev);
    put_str(&b, ",\"filters\":[\"NOPUT\"]}}");
    if (body_text(&b) != NXL_OK) {
        return NXL_ERR_NOMEM;
    }
    w->body = (char *)b.data;
    w->created = false;
    w->h = etcd_easy(e, true);
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
    curl_easy_setopt(w->h, CURLOPT_CONNECTTIMEOUT_MS, (long)ETCD_CONNECT_MS);
    if (curl_multi_add_handle(e->multi, w->h) != CURLM_OK) {
        watch_stop_stream(e, w);
        return nxl__fail(NXL_ERR_NOMEM, "etcd: curl_multi_add_handle");
    }
    return NXL_OK;
}

/* watch_resync reads w's prefix (count only): *count_p keys exist at
 * revision *rev_p (watch thread, wlock not held). */
static nxl_status_t
watch_resync(nxl__etcd_t *e, etcd_watch_t *w, int64_t *rev_p,
             int64_t *count_p)
{
    nxl__etcd_reply_t r;
    nxl_status_t status;
    nxl__wbuf_t b;

    nxl__wbuf_init(&b);
    put_str(&b, "{\"key\":\"");
    put_str(&b, w->pfx);
    put_str(&b, "\",\"range_end\":\"");
    put_str(&b, w->end);
    put_str(&b, "\",\"count_only\":true}");
    status = body_text(&b);
    if (status != NXL_OK) {
        return status;
    }
    status = etcd_call(e, e->w_sync, true, "watch resync", "/v3/kv/range",
                       b.data, b.len, false,
                       nxl__now_ns() + ETCD_ATTEMPT_MS * 1000000ull, &r);
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
    etcd_watch_t *w, **pp;
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
            watch_free(e, w);
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
    etcd_watch_t *w;
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
                ep_next(e, ep);
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

/* --- ops ----------------------------------------------------------------- */

static uint64_t
deadline_of(int timeout_ms)
{
    return nxl__now_ns() +
           (uint64_t)(timeout_ms > 0 ? timeout_ms : 5000) * 1000000u;
}

static nxl_status_t
pub_set(nxl__etcd_t *e, const char *label, const void *blob, size_t len)
{
    etcd_pub_t *p = NULL, *np;
    uint8_t *val;
    size_t i;

    val = malloc(NXL__MAX(len, (size_t)1));
    if (val == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "etcd: out of memory");
    }
    memcpy(val, blob, len);
    for (i = 0; i < e->npubs; i++) {
        if (strcmp(e->pubs[i].label, label) == 0) {
            p = &e->pubs[i];
            break;
        }
    }
    if (p == NULL) {
        if (e->npubs == e->cap) {
            np = realloc(e->pubs, (e->cap ? e->cap * 2 : 4) * sizeof(*np));
            if (np == NULL) {
                free(val);
                return nxl__fail(NXL_ERR_NOMEM, "etcd: out of memory");
            }
            e->pubs = np;
            e->cap = e->cap ? e->cap * 2 : 4;
        }
        p = &e->pubs[e->npubs];
        p->label = strdup(label);
        if (p->label == NULL) {
            free(val);
            return nxl__fail(NXL_ERR_NOMEM, "etcd: out of memory");
        }
        e->npubs++;
    } else {
        free(p->val);
    }
    p->val = val;
    p->len = len;
    return NXL_OK;
}

static void
pubs_clear(nxl__etcd_t *e)
{
    size_t i;

    for (i = 0; i < e->npubs; i++) {
        free(e->pubs[i].label);
        free(e->pubs[i].val);
    }
    e->npubs = 0;
}

static nxl_status_t
etcd_publish(nxl__md_store_t *s, const char *label, const void *blob,
             size_t len, int timeout_ms)
{
    nxl__etcd_t *e = (nxl__etcd_t *)s;
    uint64_t deadline = deadline_of(timeout_ms);
    nxl__etcd_reply_t r;
    nxl_status_t status;
    int64_t id;
    int rc;

    status = check_name("the agent name", e->agent);
    if (status == NXL_OK) {
        status = check_label(label);
    }
    if (status != NXL_OK) {
        return status;
    }
    if (len > NXL__SC_MAX_PAYLOAD) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "etcd: metadata of %zu bytes "
                         "(at most %u)", len, NXL__SC_MAX_PAYLOAD);
    }
    pthread_mutex_lock(&e->lock);
    id = atomic_load(&e->lease);
    if (id == 0) {
        status = lease_grant(e, e->ops, false, deadline, &id);
        if (status != NXL_OK) {
            goto out;
        }
        atomic_store(&e->lease, id);
        if (!e->ka_running) {
            rc = pthread_create(&e->ka_tid, NULL, ka_main, e);
            if (rc != 0) {
                status = nxl__fail_errno(rc, "etcd: keep-alive thread");
                goto out;
            }
            e->ka_running = true;
        }
    }
    status = kv_put(e, e->ops, false, label, blob, len, id, deadline, &r);
    if (lease_lost(status, &r)) {
        /* Expired while etcd was out of reach: register everything again
         * before the keep-alive thread notices. */
        nxl__etcd_reply_fini(&r);
        status = reregister_locked(e, e->ops, false, deadline);
        if (status == NXL_OK) {
            status = kv_put(e, e->ops, false, label, blob, len,
                            atomic_load(&e->lease), deadline, &r);
        } else {
            memset(&r, 0, sizeof(r));
        }
    }
    nxl__etcd_reply_fini(&r);
    if (status == NXL_OK) {
        status = pub_set(e, label, blob, len);
    }
out:
    pthread_mutex_unlock(&e->lock);
    return status;
}

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
    return nxl__etcd_stream_feed(&c->in, p, n, wait_line, c) == NXL_OK ? n
                                                                       : 0;
}

/* etcd_wait_key waits until key (base64) is put at or after from. */
static nxl_status_t
etcd_wait_key(nxl__etcd_t *e, const char *key, const char *what,
              int64_t from, uint64_t deadline, uint64_t t0, nxl_blob_t *blob_p,
              uint64_t *version_p, uint64_t *session_p)
{
    char url[ETCD_MAX_URL + 16], body[1200], errbuf[CURL_ERROR_SIZE];
    nxl_status_t status = NXL_OK;
    nxl__etcd_reply_t r;
    bool expired = false;
    wait_ctx_t c;
    unsigned ep;
    CURLcode rc;
    CURL *h;

    h = etcd_easy(e, false);
    if (h == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "etcd: curl_easy_init failed");
    }
    for (;;) {
        uint64_t left = ms_left(deadline);

        if (left == 0 || expired) {
            status = nxl__fail(NXL_ERR_NOT_FOUND, "etcd: no %s within %llu ms",
                               what,
                               (unsigned long long)((nxl__now_ns() - t0) /
                                                    1000000u));
            break;
        }
        memset(&c, 0, sizeof(c));
        c.key = key;
        ep = atomic_load(&e->ep_cur) % e->neps;
        snprintf(url, sizeof(url), "%s/v3/watch", e->eps[ep]);
        snprintf(body, sizeof(body), "{\"create_request\":{\"key\":\"%s\","
                 "\"start_revision\":\"%lld\"}}", key, (long long)from);
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
                         (long)NXL__MIN(left, (uint64_t)ETCD_CONNECT_MS));
        rc = curl_easy_perform(h);
        nxl__etcd_stream_fini(&c.in);
        if (c.found) {
            *blob_p = c.hit.value;
            c.hit.value.data = NULL;
            *version_p = (uint64_t)NXL__MAX(c.hit.revision,
                                            c.hit.mod_revision);
            *session_p = (uint64_t)c.hit.kv_lease;
            nxl__etcd_reply_fini(&c.hit);
            break;
        }
        if (c.bad != NXL_OK) {
            char in[256];

            status = nxl__fail(c.bad, "etcd: %s: watch on %s: %s", what,
                               e->eps[ep], inner_error(in, sizeof(in)));
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
        ep_next(e, ep);
        if (ms_left(deadline) == 0) {
            status = nxl__fail(rc == CURLE_OPERATION_TIMEDOUT ? NXL_ERR_TIMEOUT
                                                              : NXL_ERR_IO,
                               "etcd: %s: %s: %s", what, e->eps[ep],
                               errbuf[0] ? errbuf : curl_easy_strerror(rc));
            break;
        }
        etcd_sleep(e,
                   NXL__MIN(ms_left(deadline), (uint64_t)ETCD_BACKOFF_MIN_MS),
                   false);
        snprintf(body, sizeof(body), "{\"key\":\"%s\"}", key);
        status = etcd_call(e, h, false, what, "/v3/kv/range", body,
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
    uint64_t t0 = nxl__now_ns(), deadline = deadline_of(timeout_ms);
    char what[2 * (NXL__MD_NAME_MAX + NXL__ETCD_MAX_LABEL) + ETCD_MAX_NS + 64];
    nxl__etcd_reply_t r;
    nxl_status_t status;
    nxl__wbuf_t key, body;

    status = check_name("the agent name", remote);
    if (status == NXL_OK) {
        status = check_label(label);
    }
    if (status != NXL_OK) {
        return status;
    }
    snprintf(what, sizeof(what), "metadata of '%s' (label '%s') at %s/%s/%s",
             remote, label, e->ns, remote, label);
    nxl__wbuf_init(&key);
    key_b64(e, remote, label, false, &key);
    status = body_text(&key);
    if (status != NXL_OK) {
        return status;
    }
    nxl__wbuf_init(&body);
    put_str(&body, "{\"key\":\"");
    put_str(&body, (const char *)key.data);
    put_str(&body, "\"}");
    status = body_text(&body);
    if (status != NXL_OK) {
        nxl__wbuf_fini(&key);
        return status;
    }
    pthread_mutex_lock(&e->lock);
    status = etcd_call(e, e->ops, false, what, "/v3/kv/range", body.data,
                       body.len, false, deadline, &r);
    pthread_mutex_unlock(&e->lock);
    nxl__wbuf_fini(&body);
    if (status == NXL_OK && r.has_kv) {
        *blob_p = r.value;
        r.value.data = NULL;
        *version_p = (uint64_t)r.revision;
        *session_p = (uint64_t)r.kv_lease;
    } else if (status == NXL_OK) {
        status = etcd_wait_key(e, (const char *)key.data, what,
                               r.revision + 1, deadline, t0, blob_p,
                               version_p, session_p);
    }
    nxl__etcd_reply_fini(&r);
    nxl__wbuf_fini(&key);
    return status;
}

static nxl_status_t
etcd_watch(nxl__md_store_t *s, const char *remote, uint64_t version,
           uint64_t session, bool *replaced_p)
{
    nxl__etcd_t *e = (nxl__etcd_t *)s;
    nxl_status_t status;
    etcd_watch_t *w;
    nxl__wbuf_t a, b;
    int rc;

    *replaced_p = false;
    status = check_name("the agent name", remote);
    if (status != NXL_OK) {
        return status;
    }
    pthread_mutex_lock(&e->wlock);
    for (w = e->watches; w != NULL; w = w->next) {
        if (strcmp(w->peer, remote) == 0) {
            *replaced_p = w->session != 0 && session != 0 &&
                          w->session != session;
            w->session = session;
            w->load_rev = NXL__MAX(w->load_rev, (int64_t)version);
            w->load_seq++;
            pthread_mutex_unlock(&e->wlock);
            return NXL_OK;
        }
    }
    if (!e->w_running) {
        e->multi = curl_multi_init();
        e->w_sync = etcd_easy(e, true);
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
    key_b64(e, remote, NULL, false, &a);
    key_b64(e, remote, NULL, true, &b);
    if (w == NULL || body_text(&a) != NXL_OK || body_text(&b) != NXL_OK) {
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

static nxl_status_t
etcd_invalidate(nxl__md_store_t *s, int timeout_ms)
{
    nxl__etcd_t *e = (nxl__etcd_t *)s;
    nxl__etcd_reply_t r;
    nxl_status_t status;
    nxl__wbuf_t b;

    status = check_name("the agent name", e->agent);
    if (status != NXL_OK) {
        return status;
    }
    nxl__wbuf_init(&b);
    put_str(&b, "{\"key\":\"");
    key_b64(e, e->agent, NULL, false, &b);
    put_str(&b, "\",\"range_end\":\"");
    key_b64(e, e->agent, NULL, true, &b);
    put_str(&b, "\"}");
    status = body_text(&b);
    if (status != NXL_OK) {
        return status;
    }
    pthread_mutex_lock(&e->lock);
    status = etcd_call(e, e->ops, false, "delete", "/v3/kv/deleterange",
                       b.data, b.len, false, deadline_of(timeout_ms), &r);
    if (status == NXL_OK) {
        pubs_clear(e);
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
    pubs_clear(e);
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
    etcd_watch_t *w;
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
        watch_free(e, w);
    }
    curl_easy_cleanup(e->w_sync);
    curl_multi_cleanup(e->multi);
    id = atomic_load(&e->lease);
    if (id != 0) {
        /* A clean exit: the keys go now, not after the TTL. */
        snprintf(body, sizeof(body), "{\"ID\":\"%lld\"}", (long long)id);
        if (etcd_call(e, e->ops, false, "lease revoke", "/v3/lease/revoke",
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
    .publish = etcd_publish,
    .fetch = etcd_fetch,
    .watch = etcd_watch,
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
                             "https:// are supported", (int)NXL__MIN(n, 200u),
                             p);
        }
        len = n;
        while (len > 0 && p[len - 1] == '/') {
            len--;
        }
        if (len + strlen(scheme) > ETCD_MAX_URL ||
            len <= (scheme[0] ? 0u : (p[4] == 's' ? 8u : 7u))) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "etcd: bad endpoint '%.*s'",
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
               nxl__md_store_gone_fn gone, void *arg,
               nxl__md_store_t **store_p)
{
    const char *ns = cfg->ns ? cfg->ns : NXL__ETCD_DEFAULT_NS;
    nxl__etcd_t *e;
    nxl_status_t status;
    size_t nlen;

    if (agent == NULL || agent[0] == '\0' ||
        strlen(agent) > NXL__MD_NAME_MAX || gone == NULL ||
        cfg->endpoints == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "etcd: open: bad argument");
    }
    nlen = strlen(ns);
    while (nlen > 0 && ns[nlen - 1] == '/') {
        nlen--;
    }
    if (nlen > ETCD_MAX_NS) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "etcd: a namespace longer "
                         "than %u bytes", ETCD_MAX_NS);
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
    e->ops = etcd_easy(e, false);
    e->ka_h = etcd_easy(e, true);
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
