/*
 * sidechan_srv.c - the listener of the metadata side channel (framing and
 * the handshake are described in sidechan.c).
 *
 * The listener is one thread that poll()s the listen socket, an eventfd
 * that nxl__sc_stop writes, and every connection. Connections are
 * non-blocking state machines: read a header, read its payload, call the
 * handler, write the reply, then read the next frame. A frame (or reply)
 * that makes no progress for 5 s drops its peer, so a stalled client never
 * blocks the others. A bad frame is answered with an ACK carrying
 * NXL_ERR_PROTO and the connection is closed, since the stream can no
 * longer be trusted to be in step.
 *
 * With a shared secret the listener answers HELLO with CHAL and serves
 * requests only after a valid AUTH (sidechan.c has the exchange).
 *
 * Bounds, with or without a secret: frames of at most 64 MiB, at most 256
 * connections (at capacity the oldest one not sending a reply makes room,
 * one that has not begun the handshake first, and connections are
 * accepted in batches between reads, so that a flood of idle or stalled
 * connections cannot push a client out before its HELLO is read), a
 * frame must finish within 5 s, and each client address gets a request
 * rate (token bucket; default 1000 a second, bursts of 2000).
 */
#include "sidechan.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define SC_STALL_MS 5000u     /* a started frame must finish within this */
#define SC_IDLE_MS 60000u     /* an idle connection is closed after this */
#define SC_MAX_CONNS 256u     /* more are accepted and closed at once */
#define SC_BODY_CHUNK 65536u  /* payload buffers grow as bytes arrive */
#define SC_DRAIN_MS 1000u     /* lingering close after a rejected frame */
#define SC_DRAIN_MAX 65536u   /* bytes discarded before closing anyway */
#define SC_RATE_DEFAULT 1000u /* requests a second per client address */
#define SC_RATE_SLOTS 64u     /* client addresses tracked (LRU) */

/* sc_conn_t is one accepted connection. */
typedef struct sc_conn {
    int fd;
    /* reading a request */
    uint8_t hdr[NXL__SC_HDR_SIZE];
    size_t hdr_got;
    nxl__sc_hdr_t h;
    uint8_t *body;
    size_t body_cap;
    size_t body_got;
    /* writing a reply (when writing is set) */
    bool writing;
    bool close_after;
    /* after a rejected frame: reply sent, write side shut, discarding
     * input until the peer closes, so that close() does not turn unread
     * bytes into a reset that could destroy the reply in flight */
    bool draining;
    size_t drained;
    uint8_t out_hdr[NXL__SC_HDR_SIZE];
    nxl_blob_t out;
    size_t out_off;
    /* progress deadline: stall limit mid-frame, idle limit between */
    uint64_t deadline_ns;
    uint64_t accepted_ns;
    uint64_t client; /* the client's address, hashed */
    /* authentication (listener with a secret) */
    bool hello;  /* HELLO seen, CHAL sent */
    bool authed; /* AUTH checked */
    uint8_t nc[NXL__SC_NONCE], nl[NXL__SC_NONCE];
} sc_conn_t;

/* sc_rate_t is one client address's token bucket. */
typedef struct sc_rate {
    uint64_t client;
    uint64_t last_ns;
    double tokens;
} sc_rate_t;

struct nxl__sc {
    int lfd;
    int wake_fd;
    uint16_t port;
    nxl__sc_handler_fn handler;
    void *arg;
    pthread_t thread;
    uint8_t *key; /* shared secret, or NULL */
    size_t key_len;
    unsigned rate; /* requests a second per client address */
    /* owned by the listener thread */
    sc_conn_t *conns;
    size_t nconns;
    struct pollfd *pfds;
    sc_rate_t rates[SC_RATE_SLOTS];
};

/* --- listener ------------------------------------------------------------ */

/* deadline_after returns now + ms in nanoseconds. */
static uint64_t
deadline_after(uint64_t now, unsigned ms)
{
    return now + (uint64_t)ms * 1000000u;
}

/* conn_close closes c and frees its buffers; the slot is compacted away
 * by the caller (fd == -1 marks it). */
static void
conn_close(sc_conn_t *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    free(c->body);
    free(c->out.data);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

/* conn_write sends what is left of the reply without blocking. Returns
 * false when the connection must be closed. */
static bool
conn_write(sc_conn_t *c)
{
    struct iovec iov[2];
    struct msghdr mh = {.msg_iov = iov};
    size_t total = NXL__SC_HDR_SIZE + c->out.len;
    ssize_t rc;

    while (c->out_off < total) {
        mh.msg_iovlen = 0;
        if (c->out_off < NXL__SC_HDR_SIZE) {
            iov[mh.msg_iovlen].iov_base = c->out_hdr + c->out_off;
            iov[mh.msg_iovlen].iov_len = NXL__SC_HDR_SIZE - c->out_off;
            mh.msg_iovlen++;
            if (c->out.len > 0) {
                iov[mh.msg_iovlen].iov_base = c->out.data;
                iov[mh.msg_iovlen].iov_len = c->out.len;
                mh.msg_iovlen++;
            }
        } else {
            iov[0].iov_base =
                (uint8_t *)c->out.data + (c->out_off - NXL__SC_HDR_SIZE);
            iov[0].iov_len = total - c->out_off;
            mh.msg_iovlen = 1;
        }
        rc = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (rc > 0) {
            c->out_off += (size_t)rc;
            continue;
        }
        if (rc < 0 && errno == EINTR) {
            continue;
        }
        if (rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true; /* wait for POLLOUT */
        }
        nxl__debug("sc: dropping peer: send failed (%s)",
                   rc < 0 ? strerror(errno) : "no progress");
        return false;
    }
    free(c->out.data);
    c->out.data = NULL;
    c->out.len = 0;
    c->writing = false;
    if (c->close_after) {
        (void)shutdown(c->fd, SHUT_WR);
        c->draining = true;
        c->deadline_ns = deadline_after(nxl__now_ns(), SC_DRAIN_MS);
        return true;
    }
    c->hdr_got = 0;
    c->deadline_ns = deadline_after(nxl__now_ns(), SC_IDLE_MS);
    return true;
}

/* conn_reply queues (type, payload) as the reply, taking ownership of
 * payload, and starts writing it. */
static bool
conn_reply(sc_conn_t *c, uint8_t type, nxl_blob_t payload, bool close_after)
{
    nxl__sc_hdr_encode(type, (uint32_t)payload.len, c->out_hdr);
    c->out = payload;
    c->out_off = 0;
    c->writing = true;
    c->close_after = close_after;
    c->deadline_ns = deadline_after(nxl__now_ns(), SC_STALL_MS);
    return conn_write(c);
}

/* conn_reject answers a bad frame with an ACK carrying status (whose
 * message the failing check set) and closes after sending it. */
static bool
conn_reject(sc_conn_t *c, nxl_status_t status)
{
    nxl_blob_t ack = {NULL, 0};

    nxl__debug("sc: rejecting a frame: %s", nxl_last_error());
    if (nxl__sc_ack(status, &ack) != NXL_OK) {
        return false;
    }
    return conn_reply(c, NXL__SC_ACK, ack, true);
}

/* sc_rate_take takes one request token of client's bucket, refilled at
 * sc->rate a second up to twice that; false when empty. */
static bool
sc_rate_take(nxl__sc_t *sc, uint64_t client)
{
    uint64_t now = nxl__now_ns();
    sc_rate_t *r = NULL, *lru = &sc->rates[0];
    size_t i;

    for (i = 0; i < SC_RATE_SLOTS; i++) {
        if (sc->rates[i].last_ns != 0 && sc->rates[i].client == client) {
            r = &sc->rates[i];
            break;
        }
        if (sc->rates[i].last_ns < lru->last_ns) {
            lru = &sc->rates[i];
        }
    }
    if (r == NULL) {
        r = lru;
        r->client = client;
        r->tokens = 2.0 * sc->rate;
        r->last_ns = now;
    }
    r->tokens += (double)(now - r->last_ns) * 1e-9 * sc->rate;
    if (r->tokens > 2.0 * sc->rate) {
        r->tokens = 2.0 * sc->rate;
    }
    r->last_ns = now;
    if (r->tokens < 1.0) {
        return false;
    }
    r->tokens -= 1.0;
    return true;
}

/* conn_auth runs the listener's side of the handshake: HELLO gets a CHAL
 * reply, AUTH is checked and answered by nothing (requests follow). */
static bool
conn_auth(nxl__sc_t *sc, sc_conn_t *c)
{
    uint8_t proof[NXL__SC_PROOF];
    nxl_blob_t chal;

    if (sc->key == NULL) {
        return conn_reject(c, nxl__fail(NXL_ERR_NOT_ALLOWED,
                                        "sc: this listener has no secret; "
                                        "it does not authenticate"));
    }
    if (c->h.type == NXL__SC_HELLO) {
        if (c->hello || c->body_got != NXL__SC_NONCE) {
            return conn_reject(
                c, nxl__fail(NXL_ERR_PROTO, "sc: unexpected HELLO"));
        }
        memcpy(c->nc, c->body, NXL__SC_NONCE);
        if (nxl__sc_nonce(c->nl) != NXL_OK) {
            return false;
        }
        chal.len = NXL__SC_NONCE + NXL__SC_PROOF;
        chal.data = malloc(chal.len);
        if (chal.data == NULL) {
            return false;
        }
        memcpy(chal.data, c->nl, NXL__SC_NONCE);
        nxl__sc_proof(sc->key, sc->key_len, NXL__SC_TAG_LISTENER, c->nc, c->nl,
                      (uint8_t *)chal.data + NXL__SC_NONCE);
        c->hello = true;
        free(c->body);
        c->body = NULL;
        c->body_cap = c->body_got = 0;
        return conn_reply(c, NXL__SC_CHAL, chal, false);
    }
    if (!c->hello || c->authed || c->body_got != NXL__SC_PROOF) {
        return conn_reject(c, nxl__fail(NXL_ERR_PROTO, "sc: unexpected AUTH"));
    }
    nxl__sc_proof(sc->key, sc->key_len, NXL__SC_TAG_CLIENT, c->nl, c->nc,
                  proof);
    if (CRYPTO_memcmp(proof, c->body, NXL__SC_PROOF) != 0) {
        nxl__warn("sc: a client failed authentication (wrong secret)");
        return conn_reject(c, nxl__fail(NXL_ERR_NOT_ALLOWED,
                                        "sc: authentication failed: the "
                                        "secrets differ"));
    }
    c->authed = true;
    free(c->body);
    c->body = NULL;
    c->body_cap = c->body_got = 0;
    c->hdr_got = 0;
    c->deadline_ns = deadline_after(nxl__now_ns(), SC_IDLE_MS);
    return true;
}

/* conn_dispatch hands a complete request to the handler and queues its
 * reply. */
static bool
conn_dispatch(nxl__sc_t *sc, sc_conn_t *c)
{
    uint8_t type = c->h.type, rtype = 0;
    nxl_blob_t reply = {NULL, 0};
    nxl_status_t status;

    if (!sc_rate_take(sc, c->client)) {
        return conn_reject(c, nxl__fail(NXL_ERR_NOT_ALLOWED,
                                        "sc: rate limit exceeded (%u "
                                        "requests a second per client)",
                                        sc->rate));
    }
    if (type == NXL__SC_HELLO || type == NXL__SC_AUTH) {
        return conn_auth(sc, c);
    }
    if (type != NXL__SC_LOAD && type != NXL__SC_SEND && type != NXL__SC_INVL) {
        return conn_reject(c, nxl__fail(NXL_ERR_PROTO,
                                        "sc: frame type %u is not a request",
                                        type));
    }
    if (sc->key != NULL && !c->authed) {
        return conn_reject(c, nxl__fail(NXL_ERR_NOT_ALLOWED,
                                        "sc: this listener requires "
                                        "authentication: give the client "
                                        "the same secret (sc_secret in the "
                                        "agent config, or NXL_SC_SECRET)"));
    }
    nxl__clear_error();
    sc->handler(sc->arg, type, c->body, c->body_got, &rtype, &reply);
    free(c->body);
    c->body = NULL;
    c->body_cap = c->body_got = 0;

    if ((rtype != NXL__SC_ACK && rtype != NXL__SC_MD) ||
        reply.len > NXL__SC_MAX_PAYLOAD ||
        (reply.len > 0 && reply.data == NULL)) {
        free(reply.data); /* library blobs are malloc'd (nxl__wbuf) */
        status = nxl__fail(NXL_ERR_UNKNOWN,
                           "sc: handler gave an invalid reply (type %u, %zu "
                           "bytes)",
                           rtype, reply.len);
        if (nxl__sc_ack(status, &reply) != NXL_OK) {
            return false;
        }
        rtype = NXL__SC_ACK;
    }
    return conn_reply(c, rtype, reply, false);
}

/* conn_drain discards input on a connection that is being closed.
 * Returns false once it should be closed now. */
static bool
conn_drain(sc_conn_t *c)
{
    uint8_t scratch[4096];
    ssize_t rc;

    for (;;) {
        rc = recv(c->fd, scratch, sizeof(scratch), MSG_DONTWAIT);
        if (rc > 0) {
            c->drained += (size_t)rc;
            if (c->drained > SC_DRAIN_MAX) {
                return false;
            }
            continue;
        }
        if (rc < 0 && errno == EINTR) {
            continue;
        }
        return rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
}

/* conn_admit decides from its header whether a frame's payload is read
 * at all: before authentication only HELLO and AUTH of their exact sizes
 * are, so an unauthenticated client cannot make the listener buffer
 * anything. */
static nxl_status_t
conn_admit(const nxl__sc_t *sc, const sc_conn_t *c)
{
    uint8_t t = c->h.type;

    if (t == NXL__SC_HELLO || t == NXL__SC_AUTH) {
        if (c->h.len != (t == NXL__SC_HELLO ? NXL__SC_NONCE : NXL__SC_PROOF)) {
            return nxl__fail(NXL_ERR_PROTO, "sc: %s frame of %u bytes",
                             t == NXL__SC_HELLO ? "HELLO" : "AUTH", c->h.len);
        }
        return NXL_OK;
    }
    if (sc->key != NULL && !c->authed) {
        return nxl__fail(NXL_ERR_NOT_ALLOWED,
                         "sc: this listener requires authentication: give "
                         "the client the same secret (sc_secret in the agent "
                         "config, or NXL_SC_SECRET)");
    }
    return NXL_OK;
}

/* conn_read reads as much of the current frame as is available, and
 * dispatches it once complete. Returns false when the connection must be
 * closed. */
static bool
conn_read(nxl__sc_t *sc, sc_conn_t *c)
{
    nxl_status_t status;
    size_t want, cap;
    uint8_t *p;
    ssize_t rc;

    while (!c->writing && !c->draining) {
        if (c->hdr_got < NXL__SC_HDR_SIZE) {
            rc = recv(c->fd, c->hdr + c->hdr_got, NXL__SC_HDR_SIZE - c->hdr_got,
                      MSG_DONTWAIT);
        } else {
            want = c->h.len - c->body_got;
            if (c->body_got == c->body_cap) {
                /* Grow with what arrives, so a header that announces a
                 * large frame costs nothing until its bytes come. */
                cap =
                    NXL__MIN((size_t)c->h.len,
                             NXL__MAX(c->body_cap * 2, (size_t)SC_BODY_CHUNK));
                p = realloc(c->body, cap);
                if (p == NULL) {
                    nxl__warn("sc: out of memory for a %u-byte frame",
                              c->h.len);
                    return false;
                }
                c->body = p;
                c->body_cap = cap;
            }
            want = NXL__MIN(want, c->body_cap - c->body_got);
            rc = recv(c->fd, c->body + c->body_got, want, MSG_DONTWAIT);
        }
        if (rc == 0) {
            return false; /* peer closed (mid-frame or between frames) */
        }
        if (rc < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return true;
            }
            nxl__debug("sc: dropping peer: recv: %s", strerror(errno));
            return false;
        }

        if (c->hdr_got < NXL__SC_HDR_SIZE) {
            if (c->hdr_got == 0) {
                c->deadline_ns = deadline_after(nxl__now_ns(), SC_STALL_MS);
            }
            c->hdr_got += (size_t)rc;
            if (c->hdr_got < NXL__SC_HDR_SIZE) {
                continue;
            }
            status = nxl__sc_hdr_decode(c->hdr, &c->h);
            if (status != NXL_OK) {
                return conn_reject(c, NXL_ERR_PROTO);
            }
            status = conn_admit(sc, c);
            if (status != NXL_OK) {
                return conn_reject(c, status);
            }
            c->body_got = 0;
        } else {
            c->body_got += (size_t)rc;
        }
        if (c->body_got == c->h.len) {
            if (!conn_dispatch(sc, c)) {
                return false;
            }
        }
    }
    return true;
}

/* sc_client_key hashes a peer address (without its port) for the rate
 * table. */
static uint64_t
sc_client_key(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)ss;

        return nxl__hash64(&in->sin_addr, sizeof(in->sin_addr));
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)ss;

        return nxl__hash64(&in6->sin6_addr, sizeof(in6->sin6_addr));
    }
    return 0;
}

/* sc_make_room closes the oldest connection that is not sending a reply,
 * so that a table full of idle or stalled connections (a flood) cannot
 * lock new clients out; with a secret, one that has not sent its HELLO
 * goes before one in or past the handshake (a client mid-handshake is not
 * pushed out by a flood of connections that never speak; a flood that
 * sends HELLOs falls back to the oldest). False when every connection is
 * replying. */
static bool
sc_make_room(nxl__sc_t *sc)
{
    sc_conn_t *victim = NULL;
    size_t i;

    for (i = 0; i < sc->nconns; i++) {
        sc_conn_t *c = &sc->conns[i];

        if (c->writing) {
            continue;
        }
        if (victim == NULL || (victim->hello && !c->hello) ||
            (victim->hello == c->hello &&
             c->accepted_ns < victim->accepted_ns)) {
            victim = c;
        }
    }
    if (victim == NULL) {
        return false;
    }
    nxl__debug("sc: %u connections open: dropping the oldest idle one",
               SC_MAX_CONNS);
    conn_close(victim);
    *victim = sc->conns[--sc->nconns];
    return true;
}

/* sc_accept accepts up to SC_ACCEPT_BATCH pending connections; the
 * poll loop reads the open ones before it takes more, so a client's first
 * bytes are read before a burst of new connections can make it the
 * oldest. */
#define SC_ACCEPT_BATCH 32
static void
sc_accept(nxl__sc_t *sc)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    sc_conn_t *c;
    unsigned n;
    int fd;

    for (n = 0; n < SC_ACCEPT_BATCH; n++) {
        sl = sizeof(ss);
        memset(&ss, 0, sizeof(ss));
        fd = accept4(sc->lfd, (struct sockaddr *)&ss, &sl,
                     SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                nxl__warn("sc: accept: %s", strerror(errno));
            }
            return;
        }
        if (sc->nconns == SC_MAX_CONNS && !sc_make_room(sc)) {
            nxl__warn("sc: %u connections replying; refusing one",
                      SC_MAX_CONNS);
            close(fd);
            continue;
        }
        c = &sc->conns[sc->nconns++];
        memset(c, 0, sizeof(*c));
        c->fd = fd;
        c->accepted_ns = nxl__now_ns();
        c->client = sc_client_key(&ss);
        c->deadline_ns = deadline_after(c->accepted_ns, SC_IDLE_MS);
    }
}

/* sc_poll_timeout returns the ms until the nearest connection deadline,
 * capped at one second. */
static int
sc_poll_timeout(const nxl__sc_t *sc, uint64_t now)
{
    uint64_t best = 1000;
    size_t i;

    for (i = 0; i < sc->nconns; i++) {
        if (sc->conns[i].deadline_ns <= now) {
            return 0;
        }
        best = NXL__MIN(best,
                        (sc->conns[i].deadline_ns - now + 999999u) / 1000000u);
    }
    return (int)best;
}

/* sc_thread is the listener loop. */
static void *
sc_thread(void *arg)
{
    nxl__sc_t *sc = arg;
    struct pollfd *pfds = sc->pfds;
    size_t i, j, n;
    uint64_t now;
    bool keep;
    int rc;

    for (;;) {
        pfds[0] = (struct pollfd){.fd = sc->wake_fd, .events = POLLIN};
        pfds[1] = (struct pollfd){.fd = sc->lfd, .events = POLLIN};
        n = sc->nconns;
        for (i = 0; i < n; i++) {
            pfds[2 + i] = (struct pollfd){
                .fd = sc->conns[i].fd,
                .events = sc->conns[i].writing ? POLLOUT : POLLIN};
        }
        rc = poll(pfds, 2 + n, sc_poll_timeout(sc, nxl__now_ns()));
        if (rc < 0) {
            if (errno == EINTR) {
                continue;
            }
            nxl__error("sc: poll: %s", strerror(errno));
            break;
        }
        if (pfds[0].revents != 0) {
            break; /* nxl__sc_stop */
        }

        now = nxl__now_ns();
        for (i = 0; i < n; i++) {
            sc_conn_t *c = &sc->conns[i];

            keep = true;
            if (pfds[2 + i].revents & POLLNVAL) {
                keep = false;
            } else if (pfds[2 + i].revents != 0) {
                keep = c->draining  ? conn_drain(c)
                       : c->writing ? conn_write(c)
                                    : conn_read(sc, c);
            }
            /* The deadline is set when a frame (or reply) starts, not per
             * byte, so a peer that trickles bytes is dropped too. */
            if (keep && c->deadline_ns <= now) {
                nxl__debug("sc: dropping peer: %s",
                           c->draining ? "closing"
                           : (c->writing || c->hdr_got > 0)
                               ? "frame stalled for 5 s"
                               : "idle");
                keep = false;
            }
            if (!keep) {
                conn_close(c);
            }
        }
        /* Compact closed slots before accepting new ones. */
        for (i = j = 0; i < sc->nconns; i++) {
            if (sc->conns[i].fd >= 0) {
                sc->conns[j++] = sc->conns[i];
            }
        }
        sc->nconns = j;

        if (pfds[1].revents & POLLIN) {
            sc_accept(sc);
        }
    }

    for (i = 0; i < sc->nconns; i++) {
        conn_close(&sc->conns[i]);
    }
    sc->nconns = 0;
    return NULL;
}

/* nxl__sc_start: see md.h. The listen socket is non-blocking so that the
 * accept loop drains the backlog and stops at EAGAIN. */
nxl_status_t
nxl__sc_start(const char *addr, uint16_t port, nxl__sc_handler_fn handler,
              void *arg, nxl__sc_t **sc_p)
{
    return nxl__sc_start_auth(addr, port, NULL, handler, arg, sc_p);
}

/* nxl__sc_start_auth: see md.h. */
nxl_status_t
nxl__sc_start_auth(const char *addr, uint16_t port, const nxl__sc_auth_t *auth,
                   nxl__sc_handler_fn handler, void *arg, nxl__sc_t **sc_p)
{
    nxl_status_t status;
    nxl__sc_t *sc;
    int rc;

    if (handler == NULL || sc_p == NULL ||
        (auth != NULL && auth->len > 0 && auth->key == NULL)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "sc: start: NULL argument");
    }
    sc = calloc(1, sizeof(*sc));
    if (sc == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "sc: start");
    }
    sc->handler = handler;
    sc->arg = arg;
    sc->rate = (auth != NULL && auth->rate > 0) ? auth->rate : SC_RATE_DEFAULT;
    if (auth != NULL && auth->len > 0) {
        sc->key = malloc(auth->len);
        if (sc->key == NULL) {
            free(sc);
            return nxl__fail(NXL_ERR_NOMEM, "sc: start");
        }
        memcpy(sc->key, auth->key, auth->len);
        sc->key_len = auth->len;
    }
    sc->lfd = sc->wake_fd = -1;
    sc->conns = calloc(SC_MAX_CONNS, sizeof(*sc->conns));
    sc->pfds = calloc(2 + SC_MAX_CONNS, sizeof(*sc->pfds));
    if (sc->conns == NULL || sc->pfds == NULL) {
        status = nxl__fail(NXL_ERR_NOMEM, "sc: start");
        goto err_free;
    }

    status = nxl__sock_listen(addr, port, &sc->lfd, &sc->port);
    if (status != NXL_OK) {
        status = NXL_ERR_IO;
        goto err_free;
    }
    if (fcntl(sc->lfd, F_SETFL, fcntl(sc->lfd, F_GETFL) | O_NONBLOCK) < 0) {
        status = nxl__fail_errno(errno, "sc: fcntl(O_NONBLOCK)");
        status = NXL_ERR_IO;
        goto err_close_listen;
    }
    sc->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (sc->wake_fd < 0) {
        status = nxl__fail_errno(errno, "sc: eventfd");
        status = NXL_ERR_IO;
        goto err_close_listen;
    }
    rc = pthread_create(&sc->thread, NULL, sc_thread, sc);
    if (rc != 0) {
        status = nxl__fail_errno(rc, "sc: pthread_create");
        status = NXL_ERR_IO;
        goto err_close_wake;
    }
    *sc_p = sc;
    return NXL_OK;

err_close_wake:
    close(sc->wake_fd);
err_close_listen:
    close(sc->lfd);
err_free:
    free(sc->pfds);
    free(sc->conns);
    if (sc->key != NULL) {
        OPENSSL_cleanse(sc->key, sc->key_len);
        free(sc->key);
    }
    free(sc);
    return status;
}

/* nxl__sc_port: see md.h. */
uint16_t
nxl__sc_port(const nxl__sc_t *sc)
{
    return sc->port;
}

/* nxl__sc_stop: see md.h. The eventfd wakes the thread's poll; the thread
 * closes every connection before it returns. */
void
nxl__sc_stop(nxl__sc_t *sc)
{
    uint64_t one = 1;
    ssize_t rc;

    if (sc == NULL) {
        return;
    }
    do {
        rc = write(sc->wake_fd, &one, sizeof(one));
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        /* Only EAGAIN is possible (counter saturated): it is readable. */
        nxl__debug("sc: stop: eventfd write: %s", strerror(errno));
    }
    pthread_join(sc->thread, NULL);
    close(sc->wake_fd);
    close(sc->lfd);
    free(sc->pfds);
    free(sc->conns);
    if (sc->key != NULL) {
        OPENSSL_cleanse(sc->key, sc->key_len);
        free(sc->key);
    }
    free(sc);
}
