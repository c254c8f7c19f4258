/*
 * tx.c - the TCP backend's transmit side: each connection's queue of
 * frames and their sending, the replies a client connection expects, and
 * taking a canceled part back off its connection.
 *
 * Sending is shared: whoever appends to an empty tx queue (a posting
 * thread, or the I/O thread for replies) sends what the socket takes at
 * once and arms EPOLLOUT for the rest, under the connection's tx_lock;
 * the I/O thread sends the rest when the socket takes more (io.c).
 *
 * Payload never passes through a staging copy: frames are sent with
 * sendmsg straight from the registered buffers.
 */
#include "tcp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BE_TCP_INLINE_SEND (2u << 20) /* sent by post() itself, at most */
#define BE_TCP_IO_TURN (4u << 20)     /* I/O thread: per connection per turn */
#define BE_TCP_TXQ_HIGH 4096u /* server: stop reading requests above this */
#define BE_TCP_TXQ_LOW 1024u  /* ... and resume below this */

static const uint8_t be_tcp_zeros[64 * 1024];

/* be_tcp_txi_dropped does what finishing (sent) or dropping t owes:
 * a part now waits for its reply, malloc'd items are freed, a trailing
 * notification completes its request (an early one only when the request
 * already waits for it, see be_tcp_req_finish). tx_lock held. */
void
be_tcp_txi_dropped(be_tcp_txi_t *t, bool sent, bool in_io)
{
    be_tcp_part_t *part;
    be_tcp_req_t *req;

    switch (t->kind) {
    case BE_TCP_TX_PART:
        part = t->owner;
        if (sent && part->state == BE_TCP_P_QUEUED) {
            part->state = BE_TCP_P_WAIT;
        }
        break;
    case BE_TCP_TX_REQNOTIF:
        req = t->owner;
        req->ntx_queued = false;
        /* A posting thread (!in_io) may send an early notification; the
         * request cannot wait for it then: its part's reply needs the
         * whole frame, and is matched under this tx_lock. Everything that
         * completes a request runs under io_lock. */
        (void)in_io;
        if (!req->notif_early || req->ntx_wait) {
            be_tcp_reqnotif_done(req, sent);
        }
        break;
    default:
        free(t);
        break;
    }
}

/* be_tcp_tx_advance accounts n sent bytes against the queue head and
 * finishes the items that went out completely (tx_lock held). */
static void
be_tcp_tx_advance(be_tcp_conn_t *c, size_t n, bool in_io)
{
    be_tcp_txi_t *t;
    size_t rem;
    uint64_t z;

    while ((t = c->txq_head) != NULL) {
        while (t->idx < t->iovcnt) {
            rem = t->iov[t->idx].iov_len - t->off;
            if (n < rem) {
                t->off += n;
                return;
            }
            n -= rem;
            t->idx++;
            t->off = 0;
        }
        if (t->zeros > 0) {
            z = NXL__MIN(t->zeros, (uint64_t)n);
            t->zeros -= z;
            n -= (size_t)z;
            if (t->zeros > 0) {
                return;
            }
        }
        c->txq_head = t->next;
        if (c->txq_head == NULL) {
            c->txq_tail = NULL;
        }
        c->txq_count--;
        be_tcp_txi_dropped(t, true, in_io);
    }
}

/* be_tcp_tx_gather fills iov from the queue (at most BE_TCP_IOV_BATCH
 * entries and about max bytes) and returns the count; *bytes_p gets their
 * total. */
static int
be_tcp_tx_gather(const be_tcp_conn_t *c, struct iovec *iov, size_t max,
                 size_t *bytes_p)
{
    const be_tcp_txi_t *t;
    size_t total = 0, len;
    uint64_t z;
    int cnt = 0, k;

    for (t = c->txq_head; t != NULL && cnt < BE_TCP_IOV_BATCH && total < max;
         t = t->next) {
        for (k = t->idx; k < t->iovcnt && cnt < BE_TCP_IOV_BATCH && total < max;
             k++) {
            len = t->iov[k].iov_len - (k == t->idx ? t->off : 0);
            if (len == 0) {
                continue;
            }
            iov[cnt].iov_base =
                (uint8_t *)t->iov[k].iov_base + (k == t->idx ? t->off : 0);
            iov[cnt].iov_len = NXL__MIN(len, max - total);
            if (c->server && k < t->nctrl) {
                /* The sendmsg's own accesses are not recorded here (see
                 * be_tcp_conn_flush): record the control bytes now. */
                nxl__tsan_read(iov[cnt].iov_base, iov[cnt].iov_len);
            }
            total += iov[cnt].iov_len;
            cnt++;
        }
        if (k < t->iovcnt) {
            break;
        }
        for (z = t->zeros; z > 0 && cnt < BE_TCP_IOV_BATCH && total < max;
             cnt++) {
            len = (size_t)NXL__MIN(z, (uint64_t)sizeof(be_tcp_zeros));
            iov[cnt].iov_base = (void *)be_tcp_zeros;
            iov[cnt].iov_len = len;
            total += len;
            z -= len;
        }
        if (z > 0) {
            break;
        }
    }
    *bytes_p = total;
    return cnt;
}

/* be_tcp_conn_flush sends queued frames until the queue is empty, the
 * socket is full or the turn's bytes are sent (then EPOLLOUT is armed):
 * a posting thread (!in_io) stops after BE_TCP_INLINE_SEND bytes so post
 * stays short; the I/O thread after BE_TCP_IO_TURN, so a peer that reads
 * as fast as we send cannot keep it from reading this connection (a
 * CANCEL) or serving the others, nor keep tx_lock from posting threads
 * for a whole large transfer. tx_lock held.
 * Returns 0, or (I/O thread only) a negative errno on a hard socket error,
 * for the caller to kill the connection. A posting thread cannot kill it
 * (that needs io_lock): it arms EPOLLOUT instead, so the I/O thread sends
 * again and fails the connection if the error stays (an error such as
 * ENOBUFS leaves no EPOLLERR behind: returning it unnoticed left the
 * frame queued forever). */
int
be_tcp_conn_flush(be_tcp_conn_t *c, bool in_io)
{
    const size_t turn = in_io ? BE_TCP_IO_TURN : BE_TCP_INLINE_SEND;
    struct iovec iov[BE_TCP_IOV_BATCH];
    struct msghdr msg;
    size_t want, sent = 0;
    ssize_t n;
    int cnt;

    while (c->txq_head != NULL && c->fd >= 0) {
        if (sent >= turn) {
            break; /* the rest on EPOLLOUT, from the I/O thread */
        }
        cnt = be_tcp_tx_gather(c, iov, turn - sent, &want);
        if (cnt == 0) {
            be_tcp_tx_advance(c, 0, in_io);
            continue;
        }
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = iov;
        msg.msg_iovlen = (size_t)cnt;
        /* A server sends READ replies straight from registered memory;
         * under ThreadSanitizer that read was recorded when the request
         * was accepted (be_tcp_tsan_regions), so the sendmsg's accesses
         * are not recorded again. */
        /* srv_sent counts the bytes before sendmsg and takes back what
         * did not go out, so it never lags what the peer can read. */
        if (c->server) {
            nxl__tsan_ignore_begin();
            atomic_fetch_add_explicit(&c->eng->srv_sent, (uint64_t)want,
                                      memory_order_relaxed);
        }
        n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (c->server) {
            nxl__tsan_ignore_end();
            atomic_fetch_sub_explicit(&c->eng->srv_sent,
                                      want - (n < 0 ? 0 : (size_t)n),
                                      memory_order_relaxed);
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            if (in_io) {
                return -errno;
            }
            nxl__debug("tcp: send to '%s' failed on a posting thread (%s): "
                       "the I/O thread retries",
                       c->peer_name ? c->peer_name : "?", strerror(errno));
            c->want_out = true;
            be_tcp_conn_epoll(c);
            return 0;
        }
        be_tcp_tx_advance(c, (size_t)n, in_io);
        sent += (size_t)n;
        if ((size_t)n < want) {
            break; /* the socket buffer is full */
        }
    }
    /* Whatever is left goes out on EPOLLOUT, from the I/O thread. */
    if ((c->txq_head != NULL) != c->want_out ||
        (c->rx_paused && c->txq_count < BE_TCP_TXQ_LOW)) {
        c->want_out = c->txq_head != NULL;
        if (c->rx_paused && c->txq_count < BE_TCP_TXQ_LOW) {
            c->rx_paused = false;
            nxl__debug("tcp: '%s' reads again: resuming its requests",
                       c->peer_name ? c->peer_name : "?");
        }
        be_tcp_conn_epoll(c);
    }
    return 0;
}

/* be_tcp_txq_link links t at the tail of c's queue without sending.
 * Returns whether the queue was empty. tx_lock held, c alive. */
static bool
be_tcp_txq_link(be_tcp_conn_t *c, be_tcp_txi_t *t)
{
    bool was_empty = c->txq_head == NULL;

    t->next = NULL;
    if (was_empty) {
        c->txq_head = t;
    } else {
        c->txq_tail->next = t;
    }
    c->txq_tail = t;
    c->txq_count++;
    return was_empty;
}

/* be_tcp_txq_append appends t to c's queue and sends at once if the
 * queue was empty (so a non-empty queue always has a sender: EPOLLOUT or
 * the thread that holds tx_lock). tx_lock held, c alive. */
static void
be_tcp_txq_append(be_tcp_conn_t *c, be_tcp_txi_t *t, bool in_io)
{
    if (be_tcp_txq_link(c, t)) {
        (void)be_tcp_conn_flush(c, in_io);
    }
}

/* be_tcp_conn_enqueue appends t (be_tcp_txq_append) under tx_lock. false
 * if c is dead. */
bool
be_tcp_conn_enqueue(be_tcp_conn_t *c, be_tcp_txi_t *t, bool in_io)
{
    pthread_mutex_lock(&c->tx_lock);
    if (c->dead) {
        pthread_mutex_unlock(&c->tx_lock);
        return false;
    }
    be_tcp_txq_append(c, t, in_io);
    pthread_mutex_unlock(&c->tx_lock);
    return true;
}

/* be_tcp_conn_queue_reply appends a server reply without sending; the
 * reader flushes once per batch. Pauses reading when replies pile up
 * because the client does not read them. I/O thread only. */
void
be_tcp_conn_queue_reply(be_tcp_conn_t *c, be_tcp_txi_t *t)
{
    pthread_mutex_lock(&c->tx_lock);
    (void)be_tcp_txq_link(c, t);
    if (c->txq_count >= BE_TCP_TXQ_HIGH && !c->rx_paused) {
        c->rx_paused = true;
        be_tcp_conn_epoll(c);
        nxl__debug("tcp: '%s' leaves %u replies unread: pausing its requests",
                   c->peer_name ? c->peer_name : "?", c->txq_count);
    }
    pthread_mutex_unlock(&c->tx_lock);
}

/* be_tcp_ring_push records an expected reply (tx_lock held). */
static bool
be_tcp_ring_push(be_tcp_conn_t *c, uint64_t id, uint8_t type,
                 be_tcp_part_t *part)
{
    be_tcp_expect_t *n;
    size_t i, cap;

    if (c->ring_count == c->ring_cap) {
        cap = c->ring_cap * 2;
        n = malloc(cap * sizeof(*n));
        if (n == NULL) {
            return false;
        }
        for (i = 0; i < c->ring_count; i++) {
            n[i] = c->ring[(c->ring_head + i) & (c->ring_cap - 1)];
        }
        free(c->ring);
        c->ring = n;
        c->ring_cap = cap;
        c->ring_head = 0;
    }
    n = &c->ring[(c->ring_head + c->ring_count) & (c->ring_cap - 1)];
    n->id = id;
    n->type = type;
    n->part = part;
    c->ring_count++;
    return true;
}

/* be_tcp_conn_push_part queues a part's request frame on c. */
bool
be_tcp_conn_push_part(be_tcp_conn_t *c, be_tcp_part_t *part,
                      be_tcp_txi_t *after)
{
    uint8_t reply;
    bool was_empty;

    pthread_mutex_lock(&c->tx_lock);
    if (c->dead) {
        pthread_mutex_unlock(&c->tx_lock);
        return false;
    }
    part->id = ++c->next_id;
    nxl__put_le64(part->hdr + 16, part->id);
    reply =
        part->hdr[2] == BE_TCP_READ_REQ ? BE_TCP_READ_RESP : BE_TCP_WRITE_ACK;
    if (!be_tcp_ring_push(c, part->id, reply, part)) {
        pthread_mutex_unlock(&c->tx_lock);
        return false;
    }
    part->conn = c;
    part->state = BE_TCP_P_QUEUED;
    part->tx.idx = 0;
    part->tx.off = 0;
    was_empty = be_tcp_txq_link(c, &part->tx);
    if (after != NULL) {
        nxl__put_le64((uint8_t *)after->iov[0].iov_base + 16, part->id);
        after->idx = 0;
        after->off = 0;
        (void)be_tcp_txq_link(c, after);
    }
    if (was_empty) {
        (void)be_tcp_conn_flush(c, false);
    }
    pthread_mutex_unlock(&c->tx_lock);
    return true;
}

/* be_tcp_txi_orphan copies what is left of a half-sent frame: the control
 * bytes verbatim, the payload as zeros (the buffers belong to a request
 * that is being canceled). NULL when out of memory. */
static be_tcp_txi_t *
be_tcp_txi_orphan(const be_tcp_txi_t *t)
{
    size_t ctrl = 0, rem, pos = 0;
    uint64_t pay = t->zeros;
    be_tcp_txi_t *o;
    uint8_t *buf;
    int k;

    for (k = t->idx; k < t->iovcnt; k++) {
        rem = t->iov[k].iov_len - (k == t->idx ? t->off : 0);
        if (k < t->nctrl) {
            ctrl += rem;
        } else {
            pay += rem;
        }
    }
    o = malloc(sizeof(*o) + sizeof(struct iovec) + ctrl);
    if (o == NULL) {
        return NULL;
    }
    memset(o, 0, sizeof(*o));
    o->iov = (struct iovec *)(o + 1);
    buf = (uint8_t *)(o->iov + 1);
    for (k = t->idx; k < t->iovcnt && k < t->nctrl; k++) {
        rem = t->iov[k].iov_len - (k == t->idx ? t->off : 0);
        memcpy(buf + pos,
               (const uint8_t *)t->iov[k].iov_base + (k == t->idx ? t->off : 0),
               rem);
        pos += rem;
    }
    o->kind = BE_TCP_TX_ORPHAN;
    o->iov[0].iov_base = buf;
    o->iov[0].iov_len = ctrl;
    o->iovcnt = 1;
    o->nctrl = 1;
    o->zeros = pay;
    return o;
}

/* Results of be_tcp_txq_remove. */
enum { TXQ_NOMEM = -1, TXQ_UNSENT = 0, TXQ_GOING = 1 };

/* be_tcp_txq_remove takes t out of c's queue (tx_lock held). Returns
 * TXQ_UNSENT when no byte of t went out (its frames never reach the peer),
 * TXQ_GOING when t is not queued (sent already) or half sent (the head is
 * replaced by its orphan, which finishes the frame), or TXQ_NOMEM when
 * that orphan needed memory we lack. */
static int
be_tcp_txq_remove(be_tcp_conn_t *c, be_tcp_txi_t *t)
{
    be_tcp_txi_t **pp, *prev = NULL, *o;

    for (pp = &c->txq_head; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
        if (*pp != t) {
            continue;
        }
        if (t == c->txq_head && (t->idx > 0 || t->off > 0)) {
            o = be_tcp_txi_orphan(t);
            if (o == NULL) {
                return TXQ_NOMEM;
            }
            o->next = t->next;
            *pp = o;
            if (c->txq_tail == t) {
                c->txq_tail = o;
            }
            return TXQ_GOING;
        }
        *pp = t->next;
        if (c->txq_tail == t) {
            c->txq_tail = prev;
        }
        c->txq_count--;
        return TXQ_UNSENT;
    }
    return TXQ_GOING;
}

/* ring_drop removes every expected reply of part from c's ring, keeping
 * the order of the others (tx_lock held): its request never went out, so
 * no reply will come for it. */
static void
be_tcp_ring_drop(be_tcp_conn_t *c, const be_tcp_part_t *part)
{
    size_t i, kept = 0, mask = c->ring_cap - 1;

    for (i = 0; i < c->ring_count; i++) {
        be_tcp_expect_t e = c->ring[(c->ring_head + i) & mask];

        if (e.part != part) {
            c->ring[(c->ring_head + kept++) & mask] = e;
        }
    }
    c->ring_count = kept;
}

/* be_tcp_cancel_send queues a CANCEL frame for request id on c (version
 * 2; tx_lock held): the target stops the READ's reply at its next frame
 * boundary. Out of memory, nothing is sent: the reply then comes in full
 * and is discarded, as with a version-1 peer. */
static void
be_tcp_cancel_send(be_tcp_conn_t *c, uint64_t id)
{
    be_tcp_frame_t f = {.type = BE_TCP_CANCEL, .id = id};
    be_tcp_txi_t *t;

    t = malloc(sizeof(*t) + sizeof(struct iovec) + BE_TCP_HDR_SIZE);
    if (t == NULL) {
        return;
    }
    memset(t, 0, sizeof(*t));
    t->kind = BE_TCP_TX_CTRL;
    t->iov = (struct iovec *)(t + 1);
    t->iov[0].iov_base = t->iov + 1;
    t->iov[0].iov_len = BE_TCP_HDR_SIZE;
    t->iovcnt = 1;
    t->nctrl = 1;
    be_tcp_frame_encode(&f, t->iov[0].iov_base);
    be_tcp_txq_append(c, t, false);
}

/* be_tcp_part_detach takes a part off its connection (io_lock held). */
void
be_tcp_part_detach(be_tcp_part_t *part)
{
    be_tcp_conn_t *c = part->conn;
    int res = TXQ_GOING;
    size_t i;

    if (c == NULL || part->state == BE_TCP_P_DONE) {
        return;
    }
    pthread_mutex_lock(&c->tx_lock);
    if (c->dead) {
        pthread_mutex_unlock(&c->tx_lock);
        return;
    }
    if (part->state == BE_TCP_P_QUEUED) {
        res = be_tcp_txq_remove(c, &part->tx);
    }
    if (res == TXQ_UNSENT) {
        be_tcp_ring_drop(c, part);
    } else {
        /* Its replies still come: they are read and dropped. A
         * version-2 target is asked to cut a READ's reply short. */
        for (i = 0; i < c->ring_count; i++) {
            be_tcp_expect_t *e =
                &c->ring[(c->ring_head + i) & (c->ring_cap - 1)];

            if (e->part == part) {
                e->part = NULL;
            }
        }
        if (res == TXQ_GOING && c->proto >= 2 &&
            part->hdr[2] == BE_TCP_READ_REQ) {
            be_tcp_cancel_send(c, part->id);
        }
    }
    pthread_mutex_unlock(&c->tx_lock);
    if (c->rpart == part) {
        c->rpart = NULL;
        c->dst = NULL;
    }
    if (res == TXQ_NOMEM && c->peer != NULL) {
        be_tcp_peer_kill(c->peer, NXL_ERR_NOMEM,
                         "tcp: out of memory while canceling a transfer");
    }
}

/* be_tcp_txi_detach takes a request's trailing notification off c. */
static void
be_tcp_txi_detach(be_tcp_conn_t *c, be_tcp_txi_t *t)
{
    bool ok;

    pthread_mutex_lock(&c->tx_lock);
    ok = c->dead || be_tcp_txq_remove(c, t) != TXQ_NOMEM;
    pthread_mutex_unlock(&c->tx_lock);
    if (!ok && c->peer != NULL) {
        be_tcp_peer_kill(c->peer, NXL_ERR_NOMEM,
                         "tcp: out of memory while canceling a transfer");
    }
}

/* be_tcp_ntx_detach is be_tcp_txi_detach for req's notification. */
void
be_tcp_ntx_detach(be_tcp_req_t *req)
{
    if (req->ntx_conn != NULL) {
        be_tcp_txi_detach(req->ntx_conn, &req->ntx);
    }
}
