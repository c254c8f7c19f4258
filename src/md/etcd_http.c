/*
 * etcd_http.c - the etcd store's transport (etcd.h): curl handles, the
 * endpoint cursor and fail-over, one request to the gateway and its
 * parsed answer; the keys, JSON request bodies and name checks every op
 * builds on.
 */
#include "etcd.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Back-off ceiling between rounds of failed endpoints. */
#define ETCD_BACKOFF_MAX_MS 500

const char *
nxl__etcd_inner_error(char *buf, size_t cap)
{
    const char *m = nxl_last_error();

    snprintf(buf, cap, "%s", strncmp(m, "etcd: ", 6) == 0 ? m + 6 : m);
    return buf;
}

uint64_t
nxl__etcd_ms_left(uint64_t deadline)
{
    uint64_t now = nxl__now_ns();

    return deadline > now ? (deadline - now + 999999u) / 1000000u : 0;
}

void
nxl__etcd_sleep(nxl__etcd_t *e, uint64_t ms, bool bg)
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

CURL *
nxl__etcd_easy(nxl__etcd_t *e, bool bg)
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

void
nxl__etcd_ep_next(nxl__etcd_t *e, unsigned ep)
{
    unsigned want = ep;

    atomic_compare_exchange_strong(&e->ep_cur, &want, (ep + 1) % e->neps);
}

/* grpc_status maps a refused request to a status. */
static nxl_status_t
grpc_status(int code)
{
    switch (code) {
    case 3:  /* INVALID_ARGUMENT: too large, bad key */
    case 11: /* OUT_OF_RANGE */
        return NXL_ERR_INVALID_PARAM;
    case NXL__ETCD_GRPC_NOT_FOUND:
        return NXL_ERR_NOT_FOUND;
    case 7:  /* PERMISSION_DENIED */
    case 16: /* UNAUTHENTICATED */
        return NXL_ERR_NOT_ALLOWED;
    case NXL__ETCD_GRPC_DEADLINE:
        return NXL_ERR_TIMEOUT;
    default:
        return NXL_ERR_IO;
    }
}

nxl_status_t
nxl__etcd_call(nxl__etcd_t *e, CURL *h, bool bg, const char *what,
               const char *path, const void *body, size_t blen, bool stream,
               uint64_t deadline, nxl__etcd_reply_t *r)
{
    char url[NXL__ETCD_MAX_URL + 64], errbuf[CURL_ERROR_SIZE], last[320] = "";
    uint64_t t0 = nxl__now_ns(), backoff = NXL__ETCD_BACKOFF_MIN_MS, left;
    nxl_status_t status, last_st = NXL_ERR_IO;
    unsigned ep, tried = 0;
    etcd_sink_t sink;
    long code = 0;
    CURLcode rc;
    size_t n;
    char *nl;

    memset(r, 0, sizeof(*r));
    for (;;) {
        left = nxl__etcd_ms_left(deadline);
        if (left == 0 && tried > 0) {
            break;
        }
        if (bg && atomic_load(&e->stop)) {
            return nxl__fail(NXL_ERR_CANCELED,
                             "etcd: %s: the store is "
                             "closing",
                             what);
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
        curl_easy_setopt(
            h, CURLOPT_TIMEOUT_MS,
            (long)(e->neps > 1 ? NXL__MIN(left, (uint64_t)NXL__ETCD_ATTEMPT_MS)
                               : left));
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                         (long)NXL__MIN(left, (uint64_t)NXL__ETCD_CONNECT_MS));
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
                snprintf(last, sizeof(last), "%s: HTTP %ld", e->eps[ep], code);
                last_st = NXL_ERR_IO;
            } else if (status != NXL_OK) {
                char in[256];

                return nxl__fail(status, "etcd: %s: %s (HTTP %ld): %s", what,
                                 e->eps[ep], code,
                                 nxl__etcd_inner_error(in, sizeof(in)));
            } else if (r->grpc_code == 0 && code == 200) {
                return NXL_OK;
            } else if (r->grpc_code == NXL__ETCD_GRPC_UNAVAILABLE ||
                       (r->grpc_code == 0 && code >= 500)) {
                snprintf(last, sizeof(last), "%s: %s", e->eps[ep],
                         r->grpc_code ? r->message : "HTTP error");
                last_st = NXL_ERR_IO;
                nxl__etcd_reply_fini(r);
                memset(r, 0, sizeof(*r));
            } else {
                if (r->grpc_code == 0) {
                    r->grpc_code = 2;
                    snprintf(r->message, sizeof(r->message), "HTTP %ld", code);
                }
                return nxl__fail(grpc_status(r->grpc_code),
                                 "etcd: %s: %s: %s (gRPC code %d)", what,
                                 e->eps[ep], r->message, r->grpc_code);
            }
        } else {
            nxl__wbuf_fini(&sink.w);
            if (sink.too_big) {
                return nxl__fail(NXL_ERR_PROTO,
                                 "etcd: %s: %s: an answer "
                                 "larger than %u bytes",
                                 what, e->eps[ep], NXL__ETCD_MAX_ANSWER);
            }
            if (rc == CURLE_ABORTED_BY_CALLBACK) {
                return nxl__fail(NXL_ERR_CANCELED,
                                 "etcd: %s: the store is "
                                 "closing",
                                 what);
            }
            snprintf(last, sizeof(last), "%s: %s", e->eps[ep],
                     errbuf[0] ? errbuf : curl_easy_strerror(rc));
            last_st =
                rc == CURLE_OPERATION_TIMEDOUT ? NXL_ERR_TIMEOUT : NXL_ERR_IO;
        }
        nxl__etcd_ep_next(e, ep);
        nxl__debug("etcd: %s: %s; trying the next endpoint", what, last);
        if (tried % e->neps == 0) {
            left = nxl__etcd_ms_left(deadline);
            if (left == 0) {
                break;
            }
            nxl__etcd_sleep(e, NXL__MIN(backoff, left), bg);
            backoff = NXL__MIN(backoff * 2, (uint64_t)ETCD_BACKOFF_MAX_MS);
        }
    }
    return nxl__fail(last_st,
                     "etcd: %s: no endpoint answered within %llu "
                     "ms (%u attempt%s; last: %s)",
                     what,
                     (unsigned long long)((nxl__now_ns() - t0) / 1000000u),
                     tried, tried == 1 ? "" : "s", last);
}

/* --- keys and requests --------------------------------------------------- */

void
nxl__etcd_key_b64(const nxl__etcd_t *e, const char *agent, const char *label,
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

nxl_status_t
nxl__etcd_body_text(nxl__wbuf_t *w)
{
    nxl__wbuf_put(w, "", 1);
    if (w->failed) {
        nxl__wbuf_fini(w);
        return nxl__fail(NXL_ERR_NOMEM, "etcd: out of memory");
    }
    w->len--;
    return NXL_OK;
}

void
nxl__etcd_put_i64(nxl__wbuf_t *w, int64_t v)
{
    char num[32];

    snprintf(num, sizeof(num), "\"%lld\"", (long long)v);
    nxl__json_text(w, num);
}

nxl_status_t
nxl__etcd_check_name(const char *what, const char *name)
{
    size_t n = name ? strlen(name) : 0;

    if (n == 0 || n > NXL__MD_NAME_MAX) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "etcd: %s must be 1..%u bytes",
                         what, NXL__MD_NAME_MAX);
    }
    if (strchr(name, '/') != NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "etcd: %s '%s' contains '/', which the key layout "
                         "<namespace>/<agent>/<label> cannot hold",
                         what, name);
    }
    return NXL_OK;
}

nxl_status_t
nxl__etcd_check_label(const char *label)
{
    size_t n = label ? strlen(label) : 0;

    if (n == 0 || n > NXL__ETCD_MAX_LABEL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "etcd: the label must be 1..%u bytes",
                         NXL__ETCD_MAX_LABEL);
    }
    return NXL_OK;
}

uint64_t
nxl__etcd_deadline_of(int timeout_ms)
{
    return nxl__now_ns() +
           (uint64_t)(timeout_ms > 0 ? timeout_ms : 5000) * 1000000u;
}
