/*
 * store.h - name-addressed metadata stores (internal): the md_store ops
 * table and its etcd implementation (etcd.c and the files etcd.h lists).
 *
 * A store keeps each agent's metadata under (agent, label) so that peers
 * find it by name instead of by address. The core (core/md_ops.c) uses a
 * store for nxl_md_send, nxl_md_send_partial, nxl_md_fetch and
 * nxl_md_invalidate_local when no side-channel address is given and
 * NXL_ETCD_ENDPOINTS (or NIXL_ETCD_ENDPOINTS) is set. Nothing here knows
 * the agent: the store reports a vanished peer through the gone callback
 * its owner passed at open. docs/etcd.md describes the etcd layout, the
 * lease and watch semantics, fail-over and the errors.
 */
#ifndef NXL_MD_STORE_H
#define NXL_MD_STORE_H

#include "md.h"

/* Bounds on what etcd sends: bytes of one answer or watch-stream line,
 * and the nesting depth json-c accepts. */
#define NXL__ETCD_MAX_ANSWER (96u << 20)
#define NXL__ETCD_JSON_DEPTH 16

typedef struct nxl__md_store nxl__md_store_t;

/* nxl__md_store_gone_fn is called on a store thread when the entries of a
 * watched peer vanish (deleted, or their lease expired). It runs with the
 * store's watch lock held: it may take the agent's locks but must not call
 * back into the store. */
typedef void (*nxl__md_store_gone_fn)(void *arg, const char *remote);

/* The ops table. Every op may block on the network up to its timeout; all
 * are thread-safe. Errors set nxl_last_error. */
typedef struct nxl__md_store_ops {
    const char *name; /* "etcd" */

    /* publish stores blob (copied) under label for this store's agent,
     * replacing what was there, and keeps it there while the store lives
     * (re-publishing it if the store loses it). Returns NXL_OK,
     * NXL_ERR_INVALID_PARAM (bad name or label), NXL_ERR_IO or
     * NXL_ERR_TIMEOUT (store unreachable within timeout_ms), or the
     * store's refusal. */
    nxl_status_t (*publish)(nxl__md_store_t *s, const char *label,
                            const void *blob, size_t len, int timeout_ms);

    /* fetch reads remote's blob under label into *blob_p (release with
     * nxl_blob_free), waiting up to timeout_ms for it to appear; the store
     * version it was read at goes to *version_p and the publisher's
     * session (etcd: the key's lease; 0 unknown) to *session_p, both for
     * watch. Returns NXL_OK, NXL_ERR_NOT_FOUND (not there within
     * timeout_ms), NXL_ERR_INVALID_PARAM, NXL_ERR_IO, NXL_ERR_TIMEOUT,
     * NXL_ERR_PROTO (a malformed answer). */
    nxl_status_t (*fetch)(nxl__md_store_t *s, const char *remote,
                          const char *label, int timeout_ms, nxl_blob_t *blob_p,
                          uint64_t *version_p, uint64_t *session_p);

    /* watch makes the store call gone(remote) once remote's entries are
     * deleted after version (a fetch result). Watching a peer already
     * watched moves its version forward; *replaced_p says whether what
     * was loaded before came from another session of remote (it
     * restarted: drop the old one before loading). Never blocks on the
     * network. Returns NXL_OK, NXL_ERR_INVALID_PARAM or NXL_ERR_NOMEM. */
    nxl_status_t (*watch)(nxl__md_store_t *s, const char *remote,
                          uint64_t version, uint64_t session, bool *replaced_p);

    /* invalidate deletes every entry of this store's agent (its peers'
     * watches fire) and forgets what publish keeps alive. Statuses as
     * publish. */
    nxl_status_t (*invalidate)(nxl__md_store_t *s, int timeout_ms);

    /* close stops the store's threads, withdraws this agent's entries as
     * fast as the store allows (etcd: revokes the lease, waiting at most
     * about one second) and frees s. No gone call runs after it returns. */
    void (*close)(nxl__md_store_t *s);
} nxl__md_store_ops_t;

struct nxl__md_store {
    const nxl__md_store_ops_t *ops;
};

/* --- etcd (etcd.c, etcd_reply.c) ---------------------------------------- */

#define NXL__ETCD_DEFAULT_NS "/nixl/agents"
#define NXL__ETCD_DEFAULT_TTL 10u /* lease TTL, seconds */
#define NXL__ETCD_MAX_ENDPOINTS 16u
#define NXL__ETCD_MAX_LABEL 255u

/* nxl__etcd_cfg_t configures an etcd store. Strings are copied by open. */
typedef struct nxl__etcd_cfg {
    const char *endpoints; /* "http://h:p,h2:p2" (comma, semicolon or space
                            * separated; http:// is the default scheme) */
    const char *ns;        /* key namespace; NULL = NXL__ETCD_DEFAULT_NS;
                            * trailing '/' dropped */
    unsigned ttl_s;        /* lease TTL; 0 = NXL__ETCD_DEFAULT_TTL */
} nxl__etcd_cfg_t;

/* nxl__etcd_cfg_env fills cfg from NXL_/NIXL_ETCD_ENDPOINTS,
 * ETCD_NAMESPACE and ETCD_LEASE_TTL (the strings point into the
 * environment). Returns NXL_OK, NXL_ERR_NOT_FOUND (no endpoints set) or
 * NXL_ERR_INVALID_PARAM (a bad TTL). */
nxl_status_t nxl__etcd_cfg_env(nxl__etcd_cfg_t *cfg);

/* nxl__etcd_open makes an etcd store for agent (its name is checked: no
 * '/'). Nothing is sent until the first op; threads start on first need
 * (the lease keep-alive on the first publish, the watch thread on the
 * first watch). Returns NXL_OK, NXL_ERR_INVALID_PARAM (bad endpoints,
 * namespace or name), NXL_ERR_NOMEM. */
nxl_status_t nxl__etcd_open(const nxl__etcd_cfg_t *cfg, const char *agent,
                            nxl__md_store_gone_fn gone, void *arg,
                            nxl__md_store_t **store_p);

/* nxl__etcd_reply_t is one decoded etcd JSON answer (unary response or one
 * stream message), as far as the store needs it. */
typedef struct nxl__etcd_reply {
    int64_t revision;         /* header.revision */
    int64_t count;            /* range: count */
    bool has_kv;              /* range: kvs[0] present (or watch PUT) */
    nxl_blob_t value;         /* its value, decoded; owned */
    int64_t mod_revision;     /* its mod_revision */
    int64_t kv_lease;         /* its lease (0: none) */
    int64_t lease_id;         /* lease grant / keep-alive: ID */
    int64_t ttl;              /* lease grant / keep-alive: TTL (0 absent) */
    bool created, canceled;   /* watch */
    int64_t compact_revision; /* watch canceled by compaction */
    int64_t delete_rev;       /* watch: highest DELETE event revision */
    int grpc_code;            /* an error answer: its gRPC code (else 0) */
    char message[200];        /* an error answer: its text */
} nxl__etcd_reply_t;

/* nxl__etcd_parse decodes text (len bytes of JSON, not NUL-terminated)
 * into *r (zeroed first; release with nxl__etcd_reply_fini). With
 * match_key (base64 of a key) a watch PUT event for that key fills
 * has_kv/value/mod_revision. Values above NXL__SC_MAX_PAYLOAD decoded
 * bytes are refused. Returns NXL_OK or NXL_ERR_PROTO (not JSON, wrong
 * types, bad base64 or numbers) / NXL_ERR_NOMEM, with a message. */
nxl_status_t nxl__etcd_parse(const char *text, size_t len,
                             const char *match_key, nxl__etcd_reply_t *r);
void nxl__etcd_reply_fini(nxl__etcd_reply_t *r);

/* nxl__etcd_stream_t splits a newline-delimited stream (the gateway's
 * streaming answers) into lines of at most max bytes. */
typedef struct nxl__etcd_stream {
    char *buf;
    size_t len, cap, max;
} nxl__etcd_stream_t;

typedef nxl_status_t (*nxl__etcd_line_fn)(void *arg, const char *line,
                                          size_t len);

/* nxl__etcd_stream_feed appends n bytes and calls fn for every complete
 * non-blank line. Returns NXL_OK, fn's first error, NXL_ERR_PROTO (a line
 * longer than max) or NXL_ERR_NOMEM; the stream is unusable after an
 * error. */
nxl_status_t nxl__etcd_stream_feed(nxl__etcd_stream_t *s, const void *p,
                                   size_t n, nxl__etcd_line_fn fn, void *arg);
void nxl__etcd_stream_fini(nxl__etcd_stream_t *s);

#endif /* NXL_MD_STORE_H */
