/*
 * etcd.c - the small etcd v3 client nxl-bench's groups use for their own
 * keys (ranks, barriers, results): etcd's HTTP/JSON gateway (/v3/...) over
 * libcurl, answers read with json-c. Agent metadata does not go through
 * here: the library publishes and fetches it (docs/etcd.md).
 *
 * Every key this client writes is bound to one lease, granted at open and
 * kept alive by a thread every TTL/3 until close revokes it: a crashed
 * benchmark's keys disappear within the TTL by themselves.
 *
 * Requests go to the current endpoint; a failed connection or an HTTP 5xx
 * moves to the next one, and a request fails after a full round without
 * an answer. Every byte of an answer is bounded: an answer is read up to
 * BENCH_ETCD_MAX_ANSWER bytes, keys and values are decoded into fixed
 * buffers, and anything larger or malformed is an error, never a crash.
 */
#include "etcd.h"

#include "bench.h"

#include <curl/curl.h>
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_ETCD_MAX_EPS 8
#define BENCH_ETCD_MAX_ANSWER (1u << 20)

struct bench_etcd {
    char eps[BENCH_ETCD_MAX_EPS][256]; /* "http://host:port", no slash */
    size_t neps;
    size_t cur;      /* main thread's endpoint */
    CURL *h;         /* main thread's handle */
    long long lease; /* 0 = none */
    int ttl_s;
    int timeout_ms; /* one request, all endpoints */
    pthread_t ka;
    int ka_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    int lease_lost; /* the keep-alive found the lease gone */
};

/* answer_t collects one HTTP answer, bounded. */
typedef struct answer {
    char *buf;
    size_t len;
    int overflow;
} answer_t;

/* sink appends curl's bytes to an answer_t, refusing more than
 * BENCH_ETCD_MAX_ANSWER bytes (the transfer then fails). */
static size_t
sink(char *p, size_t sz, size_t n, void *arg)
{
    answer_t *a = arg;
    size_t add = sz * n;
    char *nb;

    if (add > BENCH_ETCD_MAX_ANSWER - a->len) {
        a->overflow = 1;
        return 0;
    }
    nb = realloc(a->buf, a->len + add + 1);
    if (nb == NULL) {
        a->overflow = 1;
        return 0;
    }
    a->buf = nb;
    memcpy(a->buf + a->len, p, add);
    a->len += add;
    a->buf[a->len] = '\0';
    return add;
}

/* --- base64 --------------------------------------------------------------- */

static const char b64_alpha[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* b64_enc writes the base64 of n bytes of p into out (cap bytes with the
 * NUL). Returns 0, or -1 when it does not fit. */
static int
b64_enc(const void *p, size_t n, char *out, size_t cap)
{
    const unsigned char *s = p;
    size_t i;
    size_t o = 0;

    if ((n + 2) / 3 * 4 + 1 > cap) {
        return -1;
    }
    for (i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16 |
                     (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0) |
                     (i + 2 < n ? (unsigned)s[i + 2] : 0);

        out[o++] = b64_alpha[v >> 18];
        out[o++] = b64_alpha[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64_alpha[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64_alpha[v & 63] : '=';
    }
    out[o] = '\0';
    return 0;
}

/* b64_val returns the value of a base64 digit, or -1. */
static int
b64_val(char c)
{
    const char *p = c != '\0' ? strchr(b64_alpha, c) : NULL;

    return p != NULL ? (int)(p - b64_alpha) : -1;
}

/* b64_dec decodes text (len bytes) into out, NUL-terminated (cap bytes
 * with the NUL). Returns the decoded length, or -1 for bad base64, a NUL
 * inside, or an output that does not fit. */
static long
b64_dec(const char *text, size_t len, char *out, size_t cap)
{
    size_t i;
    size_t o = 0;

    if (len % 4 != 0) {
        return -1;
    }
    for (i = 0; i < len; i += 4) {
        int v[4];
        int k;
        int pad = 0;

        for (k = 0; k < 4; k++) {
            if (text[i + k] == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (pad > 0 || (v[k] = b64_val(text[i + k])) < 0) {
                return -1;
            }
        }
        for (k = 0; k < 3 - pad; k++) {
            unsigned w = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 |
                         (unsigned)v[2] << 6 | (unsigned)v[3];
            char c = (char)(w >> (16 - 8 * k));

            if (o + 1 >= cap || c == '\0') {
                return -1;
            }
            out[o++] = c;
        }
    }
    out[o] = '\0';
    return (long)o;
}

/* prefix_end writes etcd's range_end of prefix (its last byte plus one)
 * into out. Returns 0, or -1 for an empty or all-0xff prefix. */
static int
prefix_end(const char *prefix, char *out, size_t cap)
{
    size_t n = strlen(prefix);

    if (n == 0 || n >= cap) {
        return -1;
    }
    memcpy(out, prefix, n + 1);
    while (n > 0 && (unsigned char)out[n - 1] == 0xff) {
        n--;
    }
    if (n == 0) {
        return -1;
    }
    out[n - 1] = (char)((unsigned char)out[n - 1] + 1);
    out[n] = '\0';
    return 0;
}

/* --- requests ------------------------------------------------------------- */

/* j_int reads an int64 member that etcd writes as a string (or number);
 * absent reads as 0. Returns 0, or -1 when it is there but malformed. */
static int
j_int(json_object *o, const char *name, long long *out)
{
    json_object *v;
    const char *s;
    char *end;

    *out = 0;
    if (o == NULL || !json_object_object_get_ex(o, name, &v) || v == NULL) {
        return 0;
    }
    if (json_object_is_type(v, json_type_int)) {
        *out = (long long)json_object_get_int64(v);
        return 0;
    }
    if (!json_object_is_type(v, json_type_string)) {
        return -1;
    }
    s = json_object_get_string(v);
    errno = 0;
    *out = strtoll(s, &end, 10);
    return (errno != 0 || end == s || *end != '\0') ? -1 : 0;
}

/* call POSTs body to path on the endpoints, starting with *cur (moved to
 * the one that answered), through handle h, and parses the answer into
 * *root_p (an object; the caller puts it). A gRPC error answer
 * ({"error":..., "code":N}) is returned as -1 with its message in err,
 * and *code_p (may be NULL) set to its code; 0 otherwise. */
static int
call(bench_etcd_t *e, CURL *h, size_t *cur, const char *path, const char *body,
     json_object **root_p, int *code_p, char *err, size_t errcap)
{
    char url[320];
    char cerr[CURL_ERROR_SIZE];
    size_t tries;
    long http = 0;
    answer_t a;

    if (code_p != NULL) {
        *code_p = 0;
    }
    for (tries = 0; tries < e->neps; tries++) {
        size_t ep = (*cur + tries) % e->neps;
        json_tokener *tok;
        json_object *root;
        json_object *jerr;
        CURLcode cc;

        memset(&a, 0, sizeof(a));
        snprintf(url, sizeof(url), "%s%s", e->eps[ep], path);
        cerr[0] = '\0';
        curl_easy_reset(h);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_PROXY, "");
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &a);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)e->timeout_ms);
        cc = curl_easy_perform(h);
        http = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
        if (cc != CURLE_OK || http >= 500 || http == 0) {
            snprintf(err, errcap, "%s: %s", url,
                     a.overflow        ? "answer larger than 1 MiB"
                     : cerr[0] != '\0' ? cerr
                     : cc != CURLE_OK  ? curl_easy_strerror(cc)
                                       : "HTTP error");
            if (http >= 500 && a.buf != NULL) {
                snprintf(err, errcap, "%s: HTTP %ld: %.200s", url, http, a.buf);
            }
            free(a.buf);
            continue;
        }
        *cur = ep;
        tok = json_tokener_new();
        root = tok != NULL && a.buf != NULL
                   ? json_tokener_parse_ex(tok, a.buf, (int)a.len)
                   : NULL;
        if (tok != NULL) {
            json_tokener_free(tok);
        }
        if (root == NULL || !json_object_is_type(root, json_type_object)) {
            snprintf(err, errcap, "%s: HTTP %ld, not a JSON object: %.120s",
                     url, http, a.buf != NULL ? a.buf : "(empty)");
            json_object_put(root);
            free(a.buf);
            return -1;
        }
        free(a.buf);
        if (json_object_object_get_ex(root, "error", &jerr)) {
            json_object *msg = NULL;
            long long code = 0;

            (void)json_object_object_get_ex(root, "message", &msg);
            (void)j_int(root, "code", &code);
            if (code_p != NULL) {
                *code_p = (int)code;
            }
            snprintf(err, errcap, "%s: etcd error %lld: %.200s", url, code,
                     msg != NULL && json_object_is_type(msg, json_type_string)
                         ? json_object_get_string(msg)
                         : json_object_to_json_string(jerr));
            json_object_put(root);
            return -1;
        }
        if (http != 200) {
            snprintf(err, errcap, "%s: HTTP %ld", url, http);
            json_object_put(root);
            return -1;
        }
        *root_p = root;
        return 0;
    }
    return -1;
}

/* call_main runs call on the main thread's handle and prints a failure
 * as "etcd WHAT: detail". */
static int
call_main(bench_etcd_t *e, const char *what, const char *path, const char *body,
          json_object **root_p)
{
    char err[1024];

    if (call(e, e->h, &e->cur, path, body, root_p, NULL, err, sizeof(err)) !=
        0) {
        bench_err("etcd %s: %s", what, err);
        return -1;
    }
    return 0;
}

/* keepalive renews the lease every TTL/3 on its own handle until close.
 * A lease etcd says is gone is reported once: the group's keys are gone
 * with it, which the barriers notice. */
static void *
keepalive(void *arg)
{
    bench_etcd_t *e = arg;
    CURL *h = curl_easy_init();
    size_t cur = 0; /* its own endpoint index (e->cur is the main
                     * thread's, written without a lock): fails over the
                     * same way from the first endpoint */
    long period_ms = e->ttl_s * 1000L / 3;

    if (period_ms < 200) {
        period_ms = 200;
    }
    pthread_mutex_lock(&e->mu);
    while (!e->stop && h != NULL) {
        struct timespec ts;
        char body[64];
        char err[1024];
        json_object *root = NULL;
        json_object *res = NULL;
        long long ttl = 0;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += period_ms / 1000;
        ts.tv_nsec += (period_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!e->stop &&
               pthread_cond_timedwait(&e->cv, &e->mu, &ts) != ETIMEDOUT) {
        }
        if (e->stop) {
            break;
        }
        snprintf(body, sizeof(body), "{\"ID\":\"%lld\"}", e->lease);
        pthread_mutex_unlock(&e->mu);
        if (call(e, h, &cur, "/v3/lease/keepalive", body, &root, NULL, err,
                 sizeof(err)) == 0) {
            if (!json_object_object_get_ex(root, "result", &res)) {
                res = root;
            }
            if (j_int(res, "TTL", &ttl) == 0 && ttl <= 0) {
                pthread_mutex_lock(&e->mu);
                if (!e->lease_lost) {
                    bench_err("etcd: the group's lease %lld expired (etcd "
                              "was unreachable for %d s?)",
                              e->lease, e->ttl_s);
                }
                e->lease_lost = 1;
                pthread_mutex_unlock(&e->mu);
            }
            json_object_put(root);
        }
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    if (h != NULL) {
        curl_easy_cleanup(h);
    }
    return NULL;
}

/* parse_endpoints splits "URL[,URL]" (commas, semicolons or spaces;
 * host:port means http://host:port) into e->eps. */
static int
parse_endpoints(bench_etcd_t *e, const char *list)
{
    const char *p = list;

    e->neps = 0;
    while (*p != '\0') {
        size_t n = strcspn(p, ",; ");
        char *ep;
        size_t len;

        if (n > 0) {
            if (e->neps == BENCH_ETCD_MAX_EPS || n > 200) {
                bench_err("--etcd_endpoints: at most %d endpoints of 200 "
                          "bytes",
                          BENCH_ETCD_MAX_EPS);
                return -1;
            }
            ep = e->eps[e->neps];
            if (memmem(p, n, "://", 3) != NULL) {
                snprintf(ep, sizeof(e->eps[0]), "%.*s", (int)n, p);
            } else {
                snprintf(ep, sizeof(e->eps[0]), "http://%.*s", (int)n, p);
            }
            len = strlen(ep);
            while (len > 0 && ep[len - 1] == '/') {
                ep[--len] = '\0';
            }
            e->neps++;
        }
        p += n;
        if (*p != '\0') {
            p++;
        }
    }
    if (e->neps == 0) {
        bench_err("--etcd_endpoints '%s': no endpoint (want "
                  "http://HOST:PORT[,...])",
                  list);
        return -1;
    }
    return 0;
}

/* bench_etcd_open connects to the endpoints, grants the lease and starts
 * the keep-alive thread. */
int
bench_etcd_open(const char *endpoints, int ttl_s, int timeout_s,
                bench_etcd_t **e_p)
{
    bench_etcd_t *e = calloc(1, sizeof(*e));
    json_object *root = NULL;
    char body[64];
    long long id = 0;
    long long ttl = 0;

    if (e == NULL) {
        bench_err("out of memory");
        return -1;
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->ttl_s = ttl_s;
    e->timeout_ms = (timeout_s > 5 ? 5 : timeout_s) * 1000;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    e->h = curl_easy_init();
    if (e->h == NULL || parse_endpoints(e, endpoints) != 0) {
        bench_etcd_close(e);
        return -1;
    }
    snprintf(body, sizeof(body), "{\"TTL\":%d}", ttl_s);
    if (call_main(e, "lease grant", "/v3/lease/grant", body, &root) != 0) {
        bench_err("is etcd running at %s? (start it, or fix "
                  "--etcd_endpoints)",
                  endpoints);
        bench_etcd_close(e);
        return -1;
    }
    if (j_int(root, "ID", &id) != 0 || j_int(root, "TTL", &ttl) != 0 ||
        id == 0 || ttl <= 0) {
        bench_err("etcd lease grant: unexpected answer %.200s",
                  json_object_to_json_string(root));
        json_object_put(root);
        bench_etcd_close(e);
        return -1;
    }
    json_object_put(root);
    e->lease = id;
    e->ttl_s = (int)ttl;
    if (pthread_create(&e->ka, NULL, keepalive, e) != 0) {
        bench_err("cannot start the etcd keep-alive thread");
        bench_etcd_close(e);
        return -1;
    }
    e->ka_started = 1;
    *e_p = e;
    return 0;
}

/* bench_etcd_close stops the keep-alive thread and revokes the lease
 * (every key written through e goes with it). Accepts NULL. */
void
bench_etcd_close(bench_etcd_t *e)
{
    if (e == NULL) {
        return;
    }
    if (e->ka_started) {
        pthread_mutex_lock(&e->mu);
        e->stop = 1;
        pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->ka, NULL);
    }
    if (e->lease != 0 && e->h != NULL) {
        json_object *root = NULL;
        char body[64];
        char err[1024];

        snprintf(body, sizeof(body), "{\"ID\":\"%lld\"}", e->lease);
        if (call(e, e->h, &e->cur, "/v3/lease/revoke", body, &root, NULL, err,
                 sizeof(err)) == 0) {
            json_object_put(root);
        } else if (!e->lease_lost) {
            bench_err("etcd lease revoke: %s (the group's keys expire in "
                      "%d s)",
                      err, e->ttl_s);
        }
    }
    if (e->h != NULL) {
        curl_easy_cleanup(e->h);
    }
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

/* bench_etcd_url returns the endpoint that answered last (lives as long
 * as e). */
const char *
bench_etcd_url(const bench_etcd_t *e)
{
    return e->eps[e->cur];
}

/* bench_etcd_ttl returns the lease's TTL in seconds. */
int
bench_etcd_ttl(const bench_etcd_t *e)
{
    return e->ttl_s;
}

/* kv_body writes the base64 key and value of a put into k and v. */
static int
kv_b64(const char *key, const char *val, char *k, size_t kcap, char *v,
       size_t vcap)
{
    if (b64_enc(key, strlen(key), k, kcap) != 0 ||
        b64_enc(val, strlen(val), v, vcap) != 0) {
        bench_err("etcd: key '%.60s' or its value is too long", key);
        return -1;
    }
    return 0;
}

/* bench_etcd_put writes key = val under the lease. */
int
bench_etcd_put(bench_etcd_t *e, const char *key, const char *val)
{
    char k[BENCH_ETCD_KEY_MAX * 2];
    char v[BENCH_ETCD_VAL_MAX * 2];
    char body[BENCH_ETCD_KEY_MAX * 2 + BENCH_ETCD_VAL_MAX * 2 + 128];
    json_object *root = NULL;

    if (kv_b64(key, val, k, sizeof(k), v, sizeof(v)) != 0) {
        return -1;
    }
    snprintf(body, sizeof(body),
             "{\"key\":\"%s\",\"value\":\"%s\",\"lease\":\"%lld\"}", k, v,
             e->lease);
    if (call_main(e, "put", "/v3/kv/put", body, &root) != 0) {
        return -1;
    }
    json_object_put(root);
    return 0;
}

/* bench_etcd_create writes key = val under the lease only if key does not
 * exist (a transaction comparing its create revision with 0). Returns 1
 * when it wrote, 0 when the key existed, -1 on error. */
int
bench_etcd_create(bench_etcd_t *e, const char *key, const char *val)
{
    char k[BENCH_ETCD_KEY_MAX * 2];
    char v[BENCH_ETCD_VAL_MAX * 2];
    char body[BENCH_ETCD_KEY_MAX * 4 + BENCH_ETCD_VAL_MAX * 2 + 256];
    json_object *root = NULL;
    json_object *ok = NULL;
    int rc;

    if (kv_b64(key, val, k, sizeof(k), v, sizeof(v)) != 0) {
        return -1;
    }
    snprintf(body, sizeof(body),
             "{\"compare\":[{\"key\":\"%s\",\"target\":\"CREATE\","
             "\"result\":\"EQUAL\",\"create_revision\":\"0\"}],"
             "\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":"
             "\"%s\",\"lease\":\"%lld\"}}]}",
             k, k, v, e->lease);
    if (call_main(e, "txn", "/v3/kv/txn", body, &root) != 0) {
        return -1;
    }
    /* etcd leaves "succeeded" out when it is false */
    rc = json_object_object_get_ex(root, "succeeded", &ok) &&
                 json_object_is_type(ok, json_type_boolean) &&
                 json_object_get_boolean(ok)
             ? 1
             : 0;
    json_object_put(root);
    return rc;
}

/* bench_etcd_range reads every key under prefix (at most cap of them into
 * kvs, in key order) and writes their number into *n_p. Returns 0, or -1
 * on error (a key or value longer than the buffers, bad base64 included). */
int
bench_etcd_range(bench_etcd_t *e, const char *prefix, bench_kv_t *kvs,
                 size_t cap, size_t *n_p)
{
    char k[BENCH_ETCD_KEY_MAX * 2];
    char endk[BENCH_ETCD_KEY_MAX];
    char end[BENCH_ETCD_KEY_MAX * 2];
    char body[BENCH_ETCD_KEY_MAX * 4 + 64];
    json_object *root = NULL;
    json_object *arr = NULL;
    long long count = 0;
    size_t i;
    size_t n;

    if (b64_enc(prefix, strlen(prefix), k, sizeof(k)) != 0 ||
        prefix_end(prefix, endk, sizeof(endk)) != 0 ||
        b64_enc(endk, strlen(endk), end, sizeof(end)) != 0) {
        bench_err("etcd: bad prefix '%.60s'", prefix);
        return -1;
    }
    snprintf(body, sizeof(body), "{\"key\":\"%s\",\"range_end\":\"%s\"}", k,
             end);
    if (call_main(e, "range", "/v3/kv/range", body, &root) != 0) {
        return -1;
    }
    if (j_int(root, "count", &count) != 0 || count < 0) {
        bench_err("etcd range %s: bad count in %.200s", prefix,
                  json_object_to_json_string(root));
        json_object_put(root);
        return -1;
    }
    n = 0;
    if (json_object_object_get_ex(root, "kvs", &arr)) {
        if (!json_object_is_type(arr, json_type_array)) {
            bench_err("etcd range %s: kvs is not an array", prefix);
            json_object_put(root);
            return -1;
        }
        n = json_object_array_length(arr);
    }
    for (i = 0; i < n && i < cap; i++) {
        json_object *kv = json_object_array_get_idx(arr, i);
        json_object *jk = NULL;
        json_object *jv = NULL;
        const char *ks;
        const char *vs = "";

        if (kv == NULL || !json_object_is_type(kv, json_type_object) ||
            !json_object_object_get_ex(kv, "key", &jk) ||
            !json_object_is_type(jk, json_type_string)) {
            goto bad;
        }
        ks = json_object_get_string(jk);
        /* an empty value is left out */
        if (json_object_object_get_ex(kv, "value", &jv)) {
            if (!json_object_is_type(jv, json_type_string)) {
                goto bad;
            }
            vs = json_object_get_string(jv);
        }
        if (b64_dec(ks, strlen(ks), kvs[i].key, sizeof(kvs[i].key)) < 0 ||
            b64_dec(vs, strlen(vs), kvs[i].val, sizeof(kvs[i].val)) < 0) {
            goto bad;
        }
    }
    json_object_put(root);
    *n_p = (size_t)count > n ? (size_t)count : n;
    return 0;
bad:
    bench_err("etcd range %s: entry %zu is malformed or longer than %d "
              "bytes",
              prefix, i, BENCH_ETCD_VAL_MAX);
    json_object_put(root);
    return -1;
}

/* bench_etcd_delete_prefix deletes every key under prefix. */
int
bench_etcd_delete_prefix(bench_etcd_t *e, const char *prefix)
{
    char k[BENCH_ETCD_KEY_MAX * 2];
    char endk[BENCH_ETCD_KEY_MAX];
    char end[BENCH_ETCD_KEY_MAX * 2];
    char body[BENCH_ETCD_KEY_MAX * 4 + 64];
    json_object *root = NULL;

    if (b64_enc(prefix, strlen(prefix), k, sizeof(k)) != 0 ||
        prefix_end(prefix, endk, sizeof(endk)) != 0 ||
        b64_enc(endk, strlen(endk), end, sizeof(end)) != 0) {
        bench_err("etcd: bad prefix '%.60s'", prefix);
        return -1;
    }
    snprintf(body, sizeof(body), "{\"key\":\"%s\",\"range_end\":\"%s\"}", k,
             end);
    if (call_main(e, "delete", "/v3/kv/deleterange", body, &root) != 0) {
        return -1;
    }
    json_object_put(root);
    return 0;
}

/* bench_etcd_lease_lost says whether the keep-alive found the lease
 * gone. */
int
bench_etcd_lease_lost(bench_etcd_t *e)
{
    int lost;

    pthread_mutex_lock(&e->mu);
    lost = e->lease_lost;
    pthread_mutex_unlock(&e->mu);
    return lost;
}
