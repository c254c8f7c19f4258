/*
 * etcd.h - internals of the etcd v3 metadata store (store.h declares what
 * the md layer uses: the ops table behind nxl__etcd_open), through etcd's
 * HTTP/JSON gateway (libcurl for HTTP, json-c for the answers).
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
 *
 * Files: etcd.c (the ops table: fetch, invalidate, close; configuration
 *        and open),
 *        etcd_http.c (the transport: curl handles, endpoints and
 *        fail-over, one request and its parsed answer; keys, request
 *        bodies and name checks),
 *        etcd_lease.c (publish, the lease and its keep-alive thread),
 *        etcd_watch.c (the watch op and the watch thread),
 *        etcd_reply.c (decoding answers and streams; declared in store.h).
 */
#ifndef NXL_MD_ETCD_H
#define NXL_MD_ETCD_H

#include "store.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define NXL__ETCD_MAX_URL 512u
#define NXL__ETCD_CONNECT_MS 1000 /* connect timeout per attempt */
/* Per attempt when there are endpoints to fail over to. */
#define NXL__ETCD_ATTEMPT_MS 2000
#define NXL__ETCD_RETRY_MS 500 /* background retry period */
#define NXL__ETCD_BACKOFF_MIN_MS 50

/* gRPC codes the store tells apart in etcd's error answers. */
enum {
    NXL__ETCD_GRPC_DEADLINE = 4,
    NXL__ETCD_GRPC_NOT_FOUND = 5,
    NXL__ETCD_GRPC_UNAVAILABLE = 14
};

typedef struct nxl__etcd nxl__etcd_t;

/* A key this agent published: what the lease keeps alive. */
typedef struct nxl__etcd_pub {
    char *label;
    uint8_t *val;
    size_t len;
} nxl__etcd_pub_t;

/* A watched peer. peer, pfx and end never change; load_rev and load_seq
 * are under e->wlock; the rest belongs to the watch thread. */
typedef struct nxl__etcd_watch {
    struct nxl__etcd_watch *next;
    nxl__etcd_t *e;
    char peer[NXL__MD_NAME_MAX + 1];
    char *pfx, *end;   /* base64 of <ns>/<peer>/ and its range end */
    int64_t load_rev;  /* the peer was last loaded at this revision */
    uint64_t load_seq; /* bumped by every watch() */
    uint64_t session;  /* the lease of what was loaded (0 unknown) */
    CURL *h;           /* the stream; NULL while (re)connecting */
    char *body;
    nxl__etcd_stream_t in;
    int64_t next_rev; /* start the next stream here; 0: resync */
    int64_t last_rev; /* highest revision the stream reported */
    int64_t gone_rev; /* a DELETE was seen at this revision */
    bool force_gone;  /* a resync found the prefix empty */
    bool created;     /* etcd confirmed the current stream */
    unsigned fails;
    uint64_t retry_at; /* ns */
    char errbuf[CURL_ERROR_SIZE];
} nxl__etcd_watch_t;

/* The store. base comes first: the ops get an nxl__md_store_t * that is
 * an nxl__etcd_t *. agent, eps, neps, ns, ttl_s, gone, arg and hdrs are set
 * by open and never change; each lock below guards the group it heads. */
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

    pthread_mutex_t lock; /* ops handle, pubs, lease changes */
    CURL *ops;
    _Atomic int64_t lease; /* 0: none granted */
    atomic_bool dirty;     /* a re-registration is incomplete */
    nxl__etcd_pub_t *pubs;
    size_t npubs, cap;

    pthread_mutex_t ka_mu; /* the keep-alive thread's sleep */
    pthread_cond_t ka_cv;
    pthread_t ka_tid;
    bool ka_running;
    CURL *ka_h;

    pthread_mutex_t wlock; /* watches (list and load_rev) */
    nxl__etcd_watch_t *watches;
    CURLM *multi;
    CURL *w_sync; /* the watch thread's range reads */
    pthread_t w_tid;
    bool w_running;
};

/* --- etcd_http.c: the transport ------------------------------------------ */

/* nxl__etcd_inner_error copies this thread's last error without its
 * "etcd: " prefix into buf (cap bytes) and returns buf, to nest it in a
 * new message (nxl__fail must not read the buffer it writes). */
const char *nxl__etcd_inner_error(char *buf, size_t cap);

/* nxl__etcd_ms_left returns the milliseconds from now to deadline (an
 * nxl__now_ns time), rounded up; 0 once it has passed. */
uint64_t nxl__etcd_ms_left(uint64_t deadline);

/* nxl__etcd_deadline_of returns the nxl__now_ns time timeout_ms from now
 * (5 s when timeout_ms <= 0). */
uint64_t nxl__etcd_deadline_of(int timeout_ms);

/* nxl__etcd_sleep blocks for ms; a background sleep (bg) waits on
 * e->ka_cv under e->ka_mu and ends early once the store closes. */
void nxl__etcd_sleep(nxl__etcd_t *e, uint64_t ms, bool bg);

/* nxl__etcd_easy makes a curl handle with the options every request
 * shares (JSON headers, POST, no proxy, http and https only, TCP
 * keep-alive); a background handle (bg) aborts its transfers once the
 * store closes. Returns NULL when curl cannot make one. The caller
 * frees it with curl_easy_cleanup. */
CURL *nxl__etcd_easy(nxl__etcd_t *e, bool bg);

/* nxl__etcd_ep_next moves the shared endpoint cursor off ep, unless
 * another thread already did. Thread-safe, never blocks. */
void nxl__etcd_ep_next(nxl__etcd_t *e, unsigned ep);

/* nxl__etcd_call POSTs body (blen bytes) to path on the endpoints in turn
 * until one answers or deadline passes, and parses the answer (the first
 * line of a stream when stream) into *r (release with
 * nxl__etcd_reply_fini whatever the status). An answer etcd refuses is
 * returned as its mapped status with r->grpc_code set; "unavailable"
 * answers and transport failures go to the next endpoint, with a short
 * back-off once every endpoint failed. what names the operation in
 * messages. Blocks up to deadline on h, which one thread uses at a time;
 * a background call (bg) stops with NXL_ERR_CANCELED once the store
 * closes. Returns NXL_OK, the refusal's status (NXL_ERR_INVALID_PARAM,
 * NXL_ERR_NOT_FOUND, NXL_ERR_NOT_ALLOWED, NXL_ERR_TIMEOUT, NXL_ERR_IO),
 * NXL_ERR_PROTO (an answer that is not etcd's JSON or is too large),
 * NXL_ERR_IO or NXL_ERR_TIMEOUT (no endpoint answered) or
 * NXL_ERR_CANCELED, with a message. */
nxl_status_t nxl__etcd_call(nxl__etcd_t *e, CURL *h, bool bg, const char *what,
                            const char *path, const void *body, size_t blen,
                            bool stream, uint64_t deadline,
                            nxl__etcd_reply_t *r);

/* nxl__etcd_key_b64 appends base64(<ns>/<agent>/<label>) to out; label
 * NULL gives the prefix <ns>/<agent>/, and with end its range end. Out of
 * memory sets out->failed. */
void nxl__etcd_key_b64(const nxl__etcd_t *e, const char *agent,
                       const char *label, bool end, nxl__wbuf_t *out);

/* nxl__etcd_body_text finishes a JSON body built in w as a NUL-terminated
 * string (w->len leaves the NUL out). Returns NXL_OK, or NXL_ERR_NOMEM
 * with a message, w then freed, when w ran out of memory. */
nxl_status_t nxl__etcd_body_text(nxl__wbuf_t *w);

/* nxl__etcd_put_i64 appends v to w as a quoted decimal, the gateway's
 * spelling of an int64. */
void nxl__etcd_put_i64(nxl__wbuf_t *w, int64_t v);

/* nxl__etcd_check_name checks that name fits the key layout: 1 to
 * NXL__MD_NAME_MAX bytes, no '/'. Returns NXL_OK or NXL_ERR_INVALID_PARAM
 * with a message naming it what. */
nxl_status_t nxl__etcd_check_name(const char *what, const char *name);

/* nxl__etcd_check_label checks that label is 1 to NXL__ETCD_MAX_LABEL
 * bytes. Returns NXL_OK or NXL_ERR_INVALID_PARAM with a message. */
nxl_status_t nxl__etcd_check_label(const char *label);

/* --- etcd_lease.c: publish and the lease ---------------------------------- */

/* nxl__etcd_publish is the store's publish op (store.h). It takes e->lock
 * for the whole call; the first one grants the lease and starts the
 * keep-alive thread, and a lease found gone is granted again with every
 * published key written anew before the key is put. */
nxl_status_t nxl__etcd_publish(nxl__md_store_t *s, const char *label,
                               const void *blob, size_t len, int timeout_ms);

/* nxl__etcd_pubs_clear forgets every published key (e->lock held, or the
 * store's threads stopped). Never fails. */
void nxl__etcd_pubs_clear(nxl__etcd_t *e);

/* --- etcd_watch.c: the watch op and thread -------------------------------- */

/* nxl__etcd_watch_peer is the store's watch op (store.h). It takes
 * e->wlock, and starts the watch thread (its curl multi handle and range
 * read handle) with the first watch. */
nxl_status_t nxl__etcd_watch_peer(nxl__md_store_t *s, const char *remote,
                                  uint64_t version, uint64_t session,
                                  bool *replaced_p);

/* nxl__etcd_watch_free ends w's stream (if any) and frees w. Called by
 * the watch thread, or by close once that thread has stopped. */
void nxl__etcd_watch_free(nxl__etcd_t *e, nxl__etcd_watch_t *w);

#endif /* NXL_MD_ETCD_H */
