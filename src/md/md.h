/*
 * md.h - the agent metadata codec and the side channel (internal).
 *
 * The bytes are specified in docs/metadata-format.md; that document is the
 * source of truth. The decoder reads peer input: it checks every length
 * before use and never crashes on any input (fuzz/fuzz_md.c).
 */
#ifndef NXL_MD_H
#define NXL_MD_H

#include "util.h"

#define NXL__MD_NAME_MAX 255u /* agent and backend names, bytes */

/* One registered region and its public data (remote key). */
typedef struct nxl__md_region {
    nxl_desc_t desc;
    const uint8_t *pub; /* public data; NULL when pub_len is 0 */
    uint32_t pub_len;
} nxl__md_region_t;

/* The regions one backend exposes for one memory kind. */
typedef struct nxl__md_section {
    nxl_mem_t kind;
    const char *backend; /* NUL-terminated */
    size_t count;
    nxl__md_region_t *regions;
} nxl__md_section_t;

/* One backend's connection info. */
typedef struct nxl__md_conn {
    const char *backend; /* NUL-terminated */
    const uint8_t *info;
    uint32_t len;
} nxl__md_conn_t;

/* nxl__md_t is the decoded (or to-be-encoded) metadata of one agent. */
typedef struct nxl__md {
    const char *agent; /* NUL-terminated, 1..255 bytes, no NUL inside */
    uint32_t flags;    /* NXL__MD_F_* */
    size_t nconns;
    nxl__md_conn_t *conns;
    size_t nsections;
    nxl__md_section_t *sections;
} nxl__md_t;

#define NXL__MD_F_PARTIAL 1u /* a subset of the agent's regions */

/* nxl__md_encode appends md's encoding to out. Names must be 1..255 bytes.
 * Returns NXL_OK, NXL_ERR_INVALID_PARAM or NXL_ERR_NOMEM. */
nxl_status_t nxl__md_encode(const nxl__md_t *md, nxl__wbuf_t *out);

/* nxl__md_decode parses blob into one heap allocation *md_p that owns
 * copies of every string and public blob (it does not point into blob).
 * Returns NXL_OK; NXL_ERR_MISMATCH (wrong magic: not NXL metadata);
 * NXL_ERR_NOT_SUPPORTED (a major version this build cannot read);
 * NXL_ERR_PROTO (truncated, inconsistent lengths, bad names, counts that
 * exceed the blob); NXL_ERR_NOMEM. Sets nxl_last_error on failure. */
nxl_status_t nxl__md_decode(const void *blob, size_t len, nxl__md_t **md_p);

/* nxl__md_free frees a decoded md. Accepts NULL. */
void nxl__md_free(nxl__md_t *md);

/* --- side channel ------------------------------------------------------- */

/* Frame types. Every request is answered with one frame on the same
 * connection: LOAD and INVL with ACK, SEND with MD (or ACK on error). */
enum {
    NXL__SC_LOAD = 1, /* payload: metadata blob to load */
    NXL__SC_SEND = 2, /* payload: empty; reply MD with the full metadata */
    NXL__SC_INVL = 3, /* payload: the name of the agent to forget */
    NXL__SC_ACK = 4,  /* payload: i32 status + UTF-8 detail message */
    NXL__SC_MD = 5,   /* payload: metadata blob */
    /* Authentication (a listener with a shared secret): HELLO, CHAL and
     * AUTH come first on a connection, before any request. */
    NXL__SC_HELLO = 6, /* client: its 32-byte nonce */
    NXL__SC_CHAL = 7,  /* listener: its nonce and its 32-byte proof */
    NXL__SC_AUTH = 8   /* client: its 32-byte proof (no reply) */
};

#define NXL__SC_NONCE 32u
#define NXL__SC_PROOF 32u /* HMAC-SHA256 */

/* nxl__sc_auth_t is a side channel's shared secret (the bytes are not
 * copied by the calls below that take one; nxl__sc_start_auth copies
 * them) and, for a listener, the request rate it grants each client
 * address (0: the default, 1000 a second with bursts of 2000). */
typedef struct nxl__sc_auth {
    const void *key;
    size_t len;
    unsigned rate;
} nxl__sc_auth_t;

#define NXL__SC_HDR_SIZE 12u
#define NXL__SC_MAX_PAYLOAD (64u << 20) /* frames above this are refused */

/* nxl__sc_hdr_t is a decoded frame header. */
typedef struct nxl__sc_hdr {
    uint8_t type;
    uint32_t len;
} nxl__sc_hdr_t;

/* nxl__sc_hdr_encode writes a 12-byte header for (type, len) into out. */
void nxl__sc_hdr_encode(uint8_t type, uint32_t len,
                        uint8_t out[NXL__SC_HDR_SIZE]);

/* nxl__sc_hdr_decode checks the magic, version, type and length of a
 * 12-byte header. Returns NXL_OK, NXL_ERR_MISMATCH (bad magic),
 * NXL_ERR_NOT_SUPPORTED (version), NXL_ERR_PROTO (type, length). */
nxl_status_t nxl__sc_hdr_decode(const uint8_t in[NXL__SC_HDR_SIZE],
                                nxl__sc_hdr_t *hdr_p);

/* nxl__sc_handler_fn serves one request frame on the listener thread. It
 * writes the reply's type and payload (the caller frees reply_p->data with
 * nxl_blob_free). Errors are answered as ACK frames by the handler. */
typedef void (*nxl__sc_handler_fn)(void *arg, uint8_t type,
                                   const uint8_t *payload, size_t len,
                                   uint8_t *reply_type_p, nxl_blob_t *reply_p);

typedef struct nxl__sc nxl__sc_t;

/* nxl__sc_start binds addr:port (NULL = any, 0 = ephemeral) and starts the
 * listener thread, which serves connections one frame at a time with
 * bounded reads (a stalled peer is dropped after 5 s) and calls handler
 * for each request. Returns NXL_OK or NXL_ERR_IO. */
nxl_status_t nxl__sc_start(const char *addr, uint16_t port,
                           nxl__sc_handler_fn handler, void *arg,
                           nxl__sc_t **sc_p);

/* nxl__sc_start_auth is nxl__sc_start for a listener that answers only
 * clients proving they know auth's secret (auth NULL or an empty key: no
 * authentication, as nxl__sc_start). Either way requests are limited to
 * auth->rate per client address; a client over it gets an ACK with
 * NXL_ERR_NOT_ALLOWED and is dropped. */
nxl_status_t nxl__sc_start_auth(const char *addr, uint16_t port,
                                const nxl__sc_auth_t *auth,
                                nxl__sc_handler_fn handler, void *arg,
                                nxl__sc_t **sc_p);

/* nxl__sc_port returns the bound port. */
uint16_t nxl__sc_port(const nxl__sc_t *sc);

/* nxl__sc_stop stops the thread, closes every connection and frees sc.
 * Accepts NULL. Returns only after the handler can no longer run. */
void nxl__sc_stop(nxl__sc_t *sc);

/* nxl__sc_call connects to ip:port, sends one (type, payload) frame, and
 * reads the reply frame within timeout_ms in total. Returns NXL_OK with
 * the reply in *reply_type_p / *reply_p (free with nxl_blob_free);
 * NXL_ERR_IO (cannot connect: refused, unreachable), NXL_ERR_TIMEOUT,
 * NXL_ERR_REMOTE_DISCONNECT (the peer closed before its reply was
 * complete), NXL_ERR_PROTO (a bad reply frame), NXL_ERR_INVALID_PARAM. */
nxl_status_t nxl__sc_call(const char *ip, uint16_t port, uint8_t type,
                          const void *payload, size_t len, int timeout_ms,
                          uint8_t *reply_type_p, nxl_blob_t *reply_p);

/* nxl__sc_call_auth is nxl__sc_call that first proves it knows auth's
 * secret and checks that the listener knows it too (mutual HMAC-SHA256
 * challenge-response over fresh nonces). auth NULL or empty: nxl__sc_call.
 * Extra statuses: NXL_ERR_NOT_ALLOWED (a secret on one side only, or a
 * different one). */
nxl_status_t nxl__sc_call_auth(const char *ip, uint16_t port,
                               const nxl__sc_auth_t *auth, uint8_t type,
                               const void *payload, size_t len, int timeout_ms,
                               uint8_t *reply_type_p, nxl_blob_t *reply_p);

/* nxl__sc_ack builds an ACK payload for status and the current
 * nxl_last_error() message (when status is an error). */
nxl_status_t nxl__sc_ack(nxl_status_t status, nxl_blob_t *reply_p);

/* nxl__sc_ack_parse reads an ACK payload: returns the status it carries
 * and, for an error, sets nxl_last_error to "peer: <message>". Malformed
 * ACKs are NXL_ERR_PROTO. */
nxl_status_t nxl__sc_ack_parse(const uint8_t *payload, size_t len);

#endif /* NXL_MD_H */
