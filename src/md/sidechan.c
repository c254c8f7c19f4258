/*
 * sidechan.c - the metadata side channel: framed requests over TCP. This
 * file has the framing, the ACK payloads, the handshake's proofs and the
 * client (nxl__sc_call); the listener is in sidechan_srv.c.
 *
 * A frame is a 12-byte header ("NXSC", u8 version, u8 type, u16 reserved,
 * u32 LE payload length) and its payload; frames are never found by
 * searching for a marker inside the bytes (NIXL splits on "NIXLCOMM:",
 * which breaks on metadata that contains it).
 *
 * With a shared secret, a connection starts with a mutual challenge-
 * response before any request: the client sends HELLO (its nonce Nc), the
 * listener answers CHAL (its nonce Nl and HMAC-SHA256(secret, "NXSC
 * listener v1" || Nc || Nl)), the client checks that and sends AUTH
 * (HMAC-SHA256(secret, "NXSC client v1" || Nl || Nc)), then its requests.
 * Both nonces are fresh, so a recorded exchange proves nothing later.
 * This authenticates the two ends; it does not encrypt, and an on-path
 * attacker could still alter frames after the handshake (docs/design.md).
 * Without a secret, requests are served as they come (trusted networks).
 */
#include "sidechan.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define SC_MAGIC "NXSC"
#define SC_VERSION 1u
#define SC_ACK_FIXED 8u /* i32 status + u32 message length */

/* nxl__sc_proof: see sidechan.h. */
void
nxl__sc_proof(const void *key, size_t key_len, const char *tag,
              const uint8_t *a, const uint8_t *b, uint8_t out[NXL__SC_PROOF])
{
    uint8_t msg[32 + 2 * NXL__SC_NONCE];
    size_t tl = strlen(tag);
    unsigned olen = NXL__SC_PROOF;

    memcpy(msg, tag, tl);
    memcpy(msg + tl, a, NXL__SC_NONCE);
    memcpy(msg + tl + NXL__SC_NONCE, b, NXL__SC_NONCE);
    if (HMAC(EVP_sha256(), key, (int)key_len, msg, tl + 2 * NXL__SC_NONCE, out,
             &olen) == NULL) {
        /* Not expected; a proof of zeros matches nothing honest. */
        memset(out, 0, NXL__SC_PROOF);
    }
}

/* nxl__sc_nonce: see sidechan.h. */
nxl_status_t
nxl__sc_nonce(uint8_t n[NXL__SC_NONCE])
{
    if (getrandom(n, NXL__SC_NONCE, 0) != (ssize_t)NXL__SC_NONCE) {
        return nxl__fail_errno(errno, "sc: getrandom");
    }
    return NXL_OK;
}

/* nxl__sc_hdr_encode: see md.h. */
void
nxl__sc_hdr_encode(uint8_t type, uint32_t len, uint8_t out[NXL__SC_HDR_SIZE])
{
    memcpy(out, SC_MAGIC, 4);
    out[4] = SC_VERSION;
    out[5] = type;
    out[6] = 0;
    out[7] = 0;
    nxl__put_le32(out + 8, len);
}

/* nxl__sc_hdr_decode: see md.h. Checks run in the order of the bytes. */
nxl_status_t
nxl__sc_hdr_decode(const uint8_t in[NXL__SC_HDR_SIZE], nxl__sc_hdr_t *hdr_p)
{
    uint32_t len;

    if (memcmp(in, SC_MAGIC, 4) != 0) {
        return nxl__fail(NXL_ERR_MISMATCH,
                         "sc: bad frame magic %02x %02x %02x %02x (want "
                         "\"NXSC\")",
                         in[0], in[1], in[2], in[3]);
    }
    if (in[4] != SC_VERSION) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "sc: frame version %u is not supported (want %u)",
                         in[4], SC_VERSION);
    }
    if (in[5] < NXL__SC_LOAD || in[5] > NXL__SC_AUTH) {
        return nxl__fail(NXL_ERR_PROTO, "sc: unknown frame type %u", in[5]);
    }
    if (in[6] != 0 || in[7] != 0) {
        return nxl__fail(NXL_ERR_PROTO,
                         "sc: reserved header bytes are %02x %02x, want 0",
                         in[6], in[7]);
    }
    len = nxl__le32(in + 8);
    if (len > NXL__SC_MAX_PAYLOAD) {
        return nxl__fail(NXL_ERR_PROTO,
                         "sc: frame payload of %u bytes exceeds the %u-byte "
                         "limit",
                         len, NXL__SC_MAX_PAYLOAD);
    }
    hdr_p->type = in[5];
    hdr_p->len = len;
    return NXL_OK;
}

/* --- ACK payloads -------------------------------------------------------- */

/* nxl__sc_ack: see md.h. The message is empty for OK. */
nxl_status_t
nxl__sc_ack(nxl_status_t status, nxl_blob_t *reply_p)
{
    const char *msg = (status < 0) ? nxl_last_error() : "";
    size_t n = strlen(msg);
    nxl__wbuf_t w;

    nxl__wbuf_init(&w);
    nxl__wbuf_u32(&w, (uint32_t)(int32_t)status);
    nxl__wbuf_u32(&w, (uint32_t)n);
    nxl__wbuf_put(&w, msg, n);
    return nxl__wbuf_finish(&w, reply_p);
}

/* nxl__sc_ack_parse: see md.h. The payload is exactly 8 + M bytes. */
nxl_status_t
nxl__sc_ack_parse(const uint8_t *payload, size_t len)
{
    int32_t status;
    uint32_t mlen;

    if (payload == NULL || len < SC_ACK_FIXED) {
        return nxl__fail(NXL_ERR_PROTO, "sc: ACK of %zu bytes (min %u)", len,
                         SC_ACK_FIXED);
    }
    status = (int32_t)nxl__le32(payload);
    mlen = nxl__le32(payload + 4);
    if (mlen != len - SC_ACK_FIXED) {
        return nxl__fail(NXL_ERR_PROTO,
                         "sc: ACK message length %u, but %zu bytes follow",
                         mlen, len - SC_ACK_FIXED);
    }
    if (status >= 0) {
        /* OK (or IN_PROG); anything else positive is a protocol error. */
        if (status > NXL_IN_PROG) {
            return nxl__fail(NXL_ERR_PROTO, "sc: ACK status %d", status);
        }
        return (nxl_status_t)status;
    }
    /* A status this build does not know (a newer peer) reads as UNKNOWN;
     * the peer's text keeps the detail. */
    if (!nxl__status_known(status)) {
        return nxl__fail(NXL_ERR_UNKNOWN, "peer: status %d: %.*s", status,
                         (int)NXL__MIN(mlen, 400u), (const char *)payload + 8);
    }
    if (mlen == 0) {
        return nxl__fail((nxl_status_t)status, "peer: %s",
                         nxl_status_name((nxl_status_t)status));
    }
    return nxl__fail((nxl_status_t)status, "peer: %.*s",
                     (int)NXL__MIN(mlen, 480u), (const char *)payload + 8);
}

/* --- client -------------------------------------------------------------- */

/* call_fail prefixes the current error message with the call's context. */
static nxl_status_t
call_fail(nxl_status_t status, const char *ip, uint16_t port, const char *what)
{
    char detail[400];

    snprintf(detail, sizeof(detail), "%s", nxl_last_error());
    return nxl__fail(status, "sc: %s %s:%u: %s", what, ip, (unsigned)port,
                     detail);
}

/* sc_send_frame sends one frame within what is left of timeout_ms. */
static nxl_status_t
sc_send_frame(int fd, uint8_t type, const void *payload, size_t len,
              int timeout_ms, uint64_t start)
{
    uint8_t hdr[NXL__SC_HDR_SIZE];
    nxl_status_t status;

    nxl__sc_hdr_encode(type, (uint32_t)len, hdr);
    status = nxl__sock_send_all(fd, hdr, sizeof(hdr),
                                nxl__remaining_ms(timeout_ms, start));
    if (status == NXL_OK && len > 0) {
        status = nxl__sock_send_all(fd, payload, len,
                                    nxl__remaining_ms(timeout_ms, start));
    }
    return status;
}

/* sc_recv_frame reads one frame (header checked; the body malloc'd, NULL
 * when empty) within what is left of timeout_ms. */
static nxl_status_t
sc_recv_frame(int fd, nxl__sc_hdr_t *h, uint8_t **body_p, int timeout_ms,
              uint64_t start)
{
    uint8_t hdr[NXL__SC_HDR_SIZE];
    nxl_status_t status;
    uint8_t *body = NULL;

    status = nxl__sock_recv_all(fd, hdr, sizeof(hdr),
                                nxl__remaining_ms(timeout_ms, start));
    if (status != NXL_OK) {
        return status;
    }
    status = nxl__sc_hdr_decode(hdr, h);
    if (status != NXL_OK) {
        return NXL_ERR_PROTO;
    }
    if (h->len > 0) {
        body = malloc(h->len);
        if (body == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "sc: reply of %u bytes", h->len);
        }
        status = nxl__sock_recv_all(fd, body, h->len,
                                    nxl__remaining_ms(timeout_ms, start));
        if (status != NXL_OK) {
            free(body);
            return status;
        }
    }
    *body_p = body;
    return NXL_OK;
}

/* sc_client_auth runs the client's side of the handshake on fd. */
static nxl_status_t
sc_client_auth(int fd, const nxl__sc_auth_t *auth, int timeout_ms,
               uint64_t start)
{
    uint8_t nc[NXL__SC_NONCE], proof[NXL__SC_PROOF];
    nxl__sc_hdr_t h;
    nxl_status_t status;
    uint8_t *body = NULL;

    status = nxl__sc_nonce(nc);
    if (status == NXL_OK) {
        status =
            sc_send_frame(fd, NXL__SC_HELLO, nc, sizeof(nc), timeout_ms, start);
    }
    if (status == NXL_OK) {
        status = sc_recv_frame(fd, &h, &body, timeout_ms, start);
    }
    if (status != NXL_OK) {
        return status;
    }
    if (h.type == NXL__SC_ACK) {
        status = nxl__sc_ack_parse(body, h.len);
        free(body);
        return status < 0 ? status
                          : nxl__fail(NXL_ERR_PROTO,
                                      "sc: HELLO answered with an OK ACK");
    }
    if (h.type != NXL__SC_CHAL || h.len != NXL__SC_NONCE + NXL__SC_PROOF) {
        free(body);
        return nxl__fail(NXL_ERR_PROTO,
                         "sc: HELLO answered with frame type "
                         "%u of %u bytes",
                         h.type, h.len);
    }
    nxl__sc_proof(auth->key, auth->len, NXL__SC_TAG_LISTENER, nc, body, proof);
    if (CRYPTO_memcmp(proof, body + NXL__SC_NONCE, NXL__SC_PROOF) != 0) {
        free(body);
        return nxl__fail(NXL_ERR_NOT_ALLOWED,
                         "sc: the listener does not know the secret");
    }
    nxl__sc_proof(auth->key, auth->len, NXL__SC_TAG_CLIENT, body, nc, proof);
    free(body);
    return sc_send_frame(fd, NXL__SC_AUTH, proof, sizeof(proof), timeout_ms,
                         start);
}

/* nxl__sc_call: see md.h. */
nxl_status_t
nxl__sc_call(const char *ip, uint16_t port, uint8_t type, const void *payload,
             size_t len, int timeout_ms, uint8_t *reply_type_p,
             nxl_blob_t *reply_p)
{
    return nxl__sc_call_auth(ip, port, NULL, type, payload, len, timeout_ms,
                             reply_type_p, reply_p);
}

/* nxl__sc_call_auth: see md.h. One connection per call; every step gets
 * what is left of timeout_ms. */
nxl_status_t
nxl__sc_call_auth(const char *ip, uint16_t port, const nxl__sc_auth_t *auth,
                  uint8_t type, const void *payload, size_t len, int timeout_ms,
                  uint8_t *reply_type_p, nxl_blob_t *reply_p)
{
    uint64_t start = nxl__now_ns();
    nxl__sc_hdr_t h;
    nxl_status_t status;
    uint8_t *body = NULL;
    int fd;

    if (ip == NULL || reply_type_p == NULL || reply_p == NULL ||
        (payload == NULL && len > 0) ||
        (auth != NULL && auth->len > 0 && auth->key == NULL)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "sc: call: NULL argument");
    }
    if (type != NXL__SC_LOAD && type != NXL__SC_SEND && type != NXL__SC_INVL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "sc: call: frame type %u is not a request", type);
    }
    if (len > NXL__SC_MAX_PAYLOAD) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "sc: call: payload of %zu bytes exceeds the %u-byte "
                         "limit",
                         len, NXL__SC_MAX_PAYLOAD);
    }

    status = nxl__sock_connect(ip, port, timeout_ms, &fd);
    if (status == NXL_ERR_REMOTE_DISCONNECT) {
        /* Refused or reset while connecting: nobody serves ip:port. That
         * is an unreachable address (IO), not a peer that went away. */
        return NXL_ERR_IO; /* the message names ip:port and the errno */
    }
    if (status != NXL_OK) {
        return status;
    }
    if (auth != NULL && auth->len > 0) {
        status = sc_client_auth(fd, auth, timeout_ms, start);
        if (status != NXL_OK) {
            status = call_fail(status, ip, port, "authenticating with");
            goto err_close;
        }
    }
    status = sc_send_frame(fd, type, payload, len, timeout_ms, start);
    if (status != NXL_OK) {
        status = call_fail(status, ip, port, "send to");
        goto err_close;
    }
    status = sc_recv_frame(fd, &h, &body, timeout_ms, start);
    if (status == NXL_OK && h.type != NXL__SC_ACK && h.type != NXL__SC_MD) {
        free(body);
        body = NULL;
        status = nxl__fail(NXL_ERR_PROTO, "reply of type %u", h.type);
    }
    if (status != NXL_OK) {
        status = call_fail(status, ip, port, "reply from");
        goto err_close;
    }
    close(fd);
    *reply_type_p = h.type;
    reply_p->data = body;
    reply_p->len = h.len;
    return NXL_OK;

err_close:
    close(fd);
    return status;
}
