/*
 * shm_notif.c - the notification channel and the engine's event fd.
 *
 * Every engine listens on an abstract unix stream socket
 * ("\0nxl-shm-<pid>-<token>"). A sender connects once per peer (at
 * peer_load, or later if the backlog was full) and writes a hello frame with
 * its agent name, then one frame per notification:
 *
 *   hello: magic u32 "NXSN" | version u16 = 1 | name_len u16 | name
 *   frame: type u8 (1 = notification) | 3 zero bytes | len u32 | message
 *
 * Everything is little endian; unknown frame types are skipped; a name
 * longer than BE_SHM_NAME_MAX or with a NUL, a bad magic or version, or a
 * message over BE_SHM_NOTIF_MAX closes the connection. Sockets are
 * non-blocking on both ends: a sender queues what the socket does not take
 * and flushes it from check/progress (EPOLLOUT wakes sleepers), a receiver
 * reads in progress only.
 *
 * The engine's event fd is an epoll set over the listener, the accepted
 * streams, the outgoing streams (hang-up tells that a peer engine is gone;
 * EPOLLOUT while something is queued) and an eventfd that workers write
 * when they finish a request.
 */
#include "shm.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BE_SHM_RX_MIN (64u << 10)    /* first receive buffer */
#define BE_SHM_RX_BUDGET (4u << 20)  /* bytes read per stream per progress */
#define BE_SHM_TX_MAX (256ull << 20) /* queued bytes per peer before NOMEM */

/* be_shm_conn_t: one accepted (incoming) notification stream. */
typedef struct be_shm_conn {
    be_shm_ev_t ev;
    struct be_shm_conn *prev;
    struct be_shm_conn *next;
    int fd;
    int have_name;
    char name[BE_SHM_NAME_MAX + 1];
    uint8_t *buf;
    size_t len;
    size_t cap;
} be_shm_conn_t;

/* be_shm_sockaddr fills an abstract unix address from name[0..len). */
static socklen_t
be_shm_sockaddr(struct sockaddr_un *sa, const char *name, size_t len)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path + 1, name, len);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
}

/* be_shm_notif_init opens the completion eventfd, the epoll set and the
 * listener. Leaves fds at -1 (for fini) on failure. */
nxl_status_t
be_shm_notif_init(be_shm_engine_t *eng)
{
    struct epoll_event ev;
    struct sockaddr_un sa;
    socklen_t salen;
    nxl_status_t status;
    int n;

    eng->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (eng->done_fd < 0) {
        return nxl__fail_errno(errno, "shm: eventfd");
    }
    eng->ep_fd = epoll_create1(EPOLL_CLOEXEC);
    if (eng->ep_fd < 0) {
        return nxl__fail_errno(errno, "shm: epoll_create1");
    }
    n = snprintf(eng->sock_name, sizeof(eng->sock_name), "nxl-shm-%d-%016llx",
                 (int)eng->pid, (unsigned long long)eng->token);
    eng->sock_len = (size_t)n;
    eng->listen_fd =
        socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (eng->listen_fd < 0) {
        return nxl__fail_errno(errno, "shm: socket(AF_UNIX)");
    }
    salen = be_shm_sockaddr(&sa, eng->sock_name, eng->sock_len);
    if (bind(eng->listen_fd, (struct sockaddr *)&sa, salen) < 0) {
        return nxl__fail_errno(errno, "shm: bind(@%s)", eng->sock_name);
    }
    if (listen(eng->listen_fd, SOMAXCONN) < 0) {
        return nxl__fail_errno(errno, "shm: listen(@%s)", eng->sock_name);
    }
    eng->listen_ev.kind = BE_SHM_EV_LISTEN;
    eng->listen_ev.obj = eng;
    ev.events = EPOLLIN;
    ev.data.ptr = &eng->listen_ev;
    if (epoll_ctl(eng->ep_fd, EPOLL_CTL_ADD, eng->listen_fd, &ev) < 0) {
        return nxl__fail_errno(errno, "shm: epoll_ctl(listener)");
    }
    eng->done_ev.kind = BE_SHM_EV_DONE;
    eng->done_ev.obj = eng;
    ev.events = EPOLLIN;
    ev.data.ptr = &eng->done_ev;
    if (epoll_ctl(eng->ep_fd, EPOLL_CTL_ADD, eng->done_fd, &ev) < 0) {
        status = nxl__fail_errno(errno, "shm: epoll_ctl(eventfd)");
        return status;
    }
    return NXL_OK;
}

/* be_shm_conn_close unlinks, closes and frees an incoming stream
 * (rx_lock held). */
static void
be_shm_conn_close(be_shm_engine_t *eng, be_shm_conn_t *c)
{
    epoll_ctl(eng->ep_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        eng->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    free(c->buf);
    free(c);
}

/* be_shm_notif_fini closes every incoming stream and the engine's fds. */
void
be_shm_notif_fini(be_shm_engine_t *eng)
{
    while (eng->conns != NULL) {
        be_shm_conn_close(eng, eng->conns);
    }
    if (eng->listen_fd >= 0) {
        close(eng->listen_fd);
        eng->listen_fd = -1;
    }
    if (eng->ep_fd >= 0) {
        close(eng->ep_fd);
        eng->ep_fd = -1;
    }
    if (eng->done_fd >= 0) {
        close(eng->done_fd);
        eng->done_fd = -1;
    }
}

/* be_shm_signal_done makes the event fd readable and pokes the agent, after
 * a worker finished a request that post had returned IN_PROG for. */
void
be_shm_signal_done(be_shm_engine_t *eng)
{
    uint64_t one = 1;
    ssize_t n;

    n = write(eng->done_fd, &one, sizeof(one));
    (void)n; /* EAGAIN: the counter is saturated, still readable */
    if (eng->host != NULL && eng->host->wake != NULL) {
        eng->host->wake(eng->host->ctx);
    }
}

/* --- sending ------------------------------------------------------------ */

/* be_shm_tx_want_out turns EPOLLOUT on or off for peer's stream, so that
 * sleepers wake when a full socket drains (tx_lock held). */
static void
be_shm_tx_want_out(be_shm_peer_t *peer, int on)
{
    struct epoll_event ev;

    if (!peer->tx_in_epoll || peer->tx_want_out == on) {
        return;
    }
    ev.events = EPOLLRDHUP | (on ? EPOLLOUT : 0);
    ev.data.ptr = &peer->tx_ev;
    if (epoll_ctl(peer->eng->ep_fd, EPOLL_CTL_MOD, peer->tx_fd, &ev) == 0) {
        peer->tx_want_out = on;
    }
}

/* be_shm_tx_fail makes the stream's failure sticky and the peer dead
 * (tx_lock held). */
static nxl_status_t
be_shm_tx_fail(be_shm_peer_t *peer, nxl_status_t st)
{
    if (peer->tx_err == NXL_OK) {
        peer->tx_err = st;
    }
    if (st == NXL_ERR_REMOTE_DISCONNECT) {
        be_shm_peer_mark_dead(peer, "notification stream closed");
    }
    return st;
}

/* be_shm_tx_connect connects the stream to the peer's listener and adds it
 * to the epoll set (tx_lock held). NXL_IN_PROG: backlog full, retry. */
nxl_status_t
be_shm_tx_connect(be_shm_peer_t *peer)
{
    struct epoll_event ev;
    struct sockaddr_un sa;
    socklen_t salen;
    int fd, err;

    if (peer->tx_err != NXL_OK) {
        return nxl__fail(peer->tx_err, "shm: notification stream to %s failed",
                         peer->name);
    }
    if (peer->tx_fd >= 0) {
        return NXL_OK;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return nxl__fail_errno(errno, "shm: socket(AF_UNIX)");
    }
    salen = be_shm_sockaddr(&sa, peer->sock_name, peer->sock_len);
    while (connect(fd, (struct sockaddr *)&sa, salen) < 0) {
        err = errno;
        if (err == EINTR) {
            continue;
        }
        close(fd);
        if (err == EAGAIN) {
            return NXL_IN_PROG;
        }
        if (err == ECONNREFUSED || err == ENOENT) {
            be_shm_tx_fail(peer, NXL_ERR_REMOTE_DISCONNECT);
            return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                             "shm: peer %s: nobody listens on @%s", peer->name,
                             peer->sock_name);
        }
        return be_shm_tx_fail(
            peer, nxl__fail_errno(err, "shm: connect(@%s)", peer->sock_name));
    }
    peer->tx_ev.kind = BE_SHM_EV_TX;
    peer->tx_ev.obj = peer;
    ev.events = EPOLLRDHUP;
    ev.data.ptr = &peer->tx_ev;
    if (epoll_ctl(peer->eng->ep_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        err = errno;
        close(fd);
        return nxl__fail_errno(err, "shm: epoll_ctl(stream)");
    }
    peer->tx_fd = fd;
    peer->tx_in_epoll = 1;
    peer->tx_want_out = 0;
    return NXL_OK;
}

/* be_shm_tx_flush writes queued bytes until the socket is full (tx_lock
 * held). Returns NXL_OK (maybe bytes left) or the stream's failure. */
static nxl_status_t
be_shm_tx_flush(be_shm_peer_t *peer)
{
    nxl_status_t st;
    ssize_t n;
    int err;

    if (peer->tx_err != NXL_OK) {
        return nxl__fail(peer->tx_err, "shm: notification stream to %s failed",
                         peer->name);
    }
    if (peer->tx_head == peer->tx_len) {
        return NXL_OK;
    }
    if (peer->tx_fd < 0) {
        st = be_shm_tx_connect(peer);
        if (st != NXL_OK) {
            return (st == NXL_IN_PROG) ? NXL_OK : st;
        }
    }
    while (peer->tx_head < peer->tx_len) {
        n = send(peer->tx_fd, peer->txbuf + peer->tx_head,
                 peer->tx_len - peer->tx_head, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            err = errno;
            if (err == EINTR) {
                continue;
            }
            if (err == EAGAIN) {
                be_shm_tx_want_out(peer, 1);
                return NXL_OK;
            }
            st = nxl__fail_errno(err, "shm: send to %s", peer->name);
            if (err == EPIPE || err == ECONNRESET || err == ENOTCONN) {
                st = NXL_ERR_REMOTE_DISCONNECT;
            }
            return be_shm_tx_fail(peer, st);
        }
        peer->tx_head += (size_t)n;
        peer->tx_bytes += (uint64_t)n;
    }
    peer->tx_head = peer->tx_len = 0;
    atomic_store_explicit(&peer->tx_pending, 0, memory_order_relaxed);
    be_shm_tx_want_out(peer, 0);
    return NXL_OK;
}

/* be_shm_tx_queue appends n bytes to the queue (tx_lock held). */
static nxl_status_t
be_shm_tx_queue(be_shm_peer_t *peer, const void *p, size_t n)
{
    size_t need, cap;
    uint8_t *q;

    if (peer->tx_head > 0 && peer->tx_head >= peer->tx_cap / 2) {
        memmove(peer->txbuf, peer->txbuf + peer->tx_head,
                peer->tx_len - peer->tx_head);
        peer->tx_len -= peer->tx_head;
        peer->tx_head = 0;
    }
    need = peer->tx_len + n;
    if (need - peer->tx_head > BE_SHM_TX_MAX) {
        return nxl__fail(NXL_ERR_NOMEM,
                         "shm: %zu notification bytes queued for %s",
                         peer->tx_len - peer->tx_head, peer->name);
    }
    if (need > peer->tx_cap) {
        cap = peer->tx_cap ? peer->tx_cap : 4096;
        while (cap < need) {
            cap *= 2;
        }
        q = realloc(peer->txbuf, cap);
        if (q == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "shm: notification queue");
        }
        peer->txbuf = q;
        peer->tx_cap = cap;
    }
    memcpy(peer->txbuf + peer->tx_len, p, n);
    peer->tx_len += n;
    atomic_store_explicit(&peer->tx_pending, 1, memory_order_relaxed);
    return NXL_OK;
}

/* be_shm_tx_hello queues the hello frame; peer_load calls it first, so the
 * hello is the first thing on the stream. */
nxl_status_t
be_shm_tx_hello(be_shm_peer_t *peer, const char *own_name)
{
    uint8_t hdr[BE_SHM_HELLO_LEN];
    size_t len = strlen(own_name);
    nxl_status_t st;

    if (len == 0 || len > BE_SHM_NAME_MAX) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "shm: agent name of %zu bytes (1..%u)", len,
                         BE_SHM_NAME_MAX);
    }
    nxl__put_le32(hdr, BE_SHM_HELLO_MAGIC);
    hdr[4] = (uint8_t)BE_SHM_WIRE_VERSION;
    hdr[5] = 0;
    hdr[6] = (uint8_t)len;
    hdr[7] = (uint8_t)(len >> 8);
    pthread_mutex_lock(&peer->tx_lock);
    st = be_shm_tx_queue(peer, hdr, sizeof(hdr));
    if (st == NXL_OK) {
        st = be_shm_tx_queue(peer, own_name, len);
    }
    if (st == NXL_OK) {
        st = be_shm_tx_flush(peer);
    }
    pthread_mutex_unlock(&peer->tx_lock);
    return st;
}

/* be_shm_tx_send frames msg and writes it, directly when nothing is queued
 * (the common case: one sendmsg), queueing the rest behind what waits. */
nxl_status_t
be_shm_tx_send(be_shm_peer_t *peer, const void *msg, size_t len)
{
    uint8_t hdr[BE_SHM_FRAME_HDR];
    struct iovec iov[2];
    struct msghdr mh;
    size_t done = 0, total = sizeof(hdr) + len;
    nxl_status_t st = NXL_OK;
    ssize_t n;
    int err;

    if (len > BE_SHM_NOTIF_MAX) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "shm: notification of %zu bytes (max %u)", len,
                         BE_SHM_NOTIF_MAX);
    }
    memset(hdr, 0, sizeof(hdr));
    hdr[0] = BE_SHM_FRAME_NOTIF;
    nxl__put_le32(hdr + 4, (uint32_t)len);

    pthread_mutex_lock(&peer->tx_lock);
    if (peer->tx_err != NXL_OK) {
        st = nxl__fail(peer->tx_err, "shm: notification stream to %s failed",
                       peer->name);
        goto out_unlock;
    }
    if (peer->tx_fd < 0) {
        st = be_shm_tx_connect(peer);
        if (st == NXL_IN_PROG) {
            st = NXL_OK;
        } else if (st != NXL_OK) {
            goto out_unlock;
        }
    }
    if (peer->tx_head == peer->tx_len && peer->tx_fd >= 0) {
        iov[0].iov_base = hdr;
        iov[0].iov_len = sizeof(hdr);
        iov[1].iov_base = (void *)msg;
        iov[1].iov_len = len;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = iov;
        mh.msg_iovlen = (len > 0) ? 2 : 1;
        do {
            n = sendmsg(peer->tx_fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            err = errno;
            if (err != EAGAIN) {
                st = nxl__fail_errno(err, "shm: send to %s", peer->name);
                if (err == EPIPE || err == ECONNRESET || err == ENOTCONN) {
                    st = NXL_ERR_REMOTE_DISCONNECT;
                }
                st = be_shm_tx_fail(peer, st);
                goto out_unlock;
            }
            n = 0;
        }
        done = (size_t)n;
        peer->tx_bytes += done;
    }
    if (done < sizeof(hdr)) {
        st = be_shm_tx_queue(peer, hdr + done, sizeof(hdr) - done);
        if (st == NXL_OK && len > 0) {
            st = be_shm_tx_queue(peer, msg, len);
        }
    } else if (done < total) {
        st = be_shm_tx_queue(peer, (const uint8_t *)msg + (done - sizeof(hdr)),
                             total - done);
    }
    if (st != NXL_OK) {
        /* A partly written frame cannot be taken back: the stream is
         * unusable from here on. */
        if (done > 0) {
            be_shm_tx_fail(peer, st);
        }
        goto out_unlock;
    }
    if (done < total) {
        st = be_shm_tx_flush(peer);
    }
out_unlock:
    pthread_mutex_unlock(&peer->tx_lock);
    return st;
}

/* be_shm_tx_kick flushes the peer's queue when something waits in it;
 * without, it costs one atomic load. Never blocks on a busy lock. */
void
be_shm_tx_kick(be_shm_peer_t *peer)
{
    if (!atomic_load_explicit(&peer->tx_pending, memory_order_relaxed)) {
        return;
    }
    if (pthread_mutex_trylock(&peer->tx_lock) == 0) {
        be_shm_tx_flush(peer);
        pthread_mutex_unlock(&peer->tx_lock);
    }
}

/* be_shm_tx_drain waits (poll on the socket) up to timeout_ms for queued
 * notifications to leave, so that unloading a peer right after a transfer
 * completed does not lose its notification. */
void
be_shm_tx_drain(be_shm_peer_t *peer, int timeout_ms)
{
    uint64_t end = nxl__now_ns() + (uint64_t)timeout_ms * 1000000u;
    struct pollfd pfd;
    uint64_t now;
    int fd;

    for (;;) {
        pthread_mutex_lock(&peer->tx_lock);
        if (be_shm_tx_flush(peer) != NXL_OK || peer->tx_head == peer->tx_len) {
            pthread_mutex_unlock(&peer->tx_lock);
            return;
        }
        fd = peer->tx_fd;
        pthread_mutex_unlock(&peer->tx_lock);
        now = nxl__now_ns();
        if (now >= end) {
            nxl__warn("shm: dropping notifications queued for %s", peer->name);
            return;
        }
        if (fd >= 0) {
            pfd.fd = fd;
            pfd.events = POLLOUT;
            poll(&pfd, 1, (int)NXL__MIN((end - now) / 1000000u + 1, 10u));
        } else {
            usleep(1000); /* backlog full: connect again shortly */
        }
    }
}

/* be_shm_tx_close removes the stream from the epoll set under rx_lock, so
 * that no progress call still holds an event that points at the peer. */
void
be_shm_tx_close(be_shm_peer_t *peer)
{
    be_shm_engine_t *eng = peer->eng;

    pthread_mutex_lock(&eng->rx_lock);
    pthread_mutex_lock(&peer->tx_lock);
    if (peer->tx_fd >= 0) {
        if (peer->tx_in_epoll) {
            epoll_ctl(eng->ep_fd, EPOLL_CTL_DEL, peer->tx_fd, NULL);
        }
        close(peer->tx_fd);
    }
    peer->tx_fd = -1;
    peer->tx_in_epoll = 0;
    if (peer->tx_err == NXL_OK) {
        peer->tx_err = NXL_ERR_REMOTE_DISCONNECT;
    }
    free(peer->txbuf);
    peer->txbuf = NULL;
    peer->tx_head = peer->tx_len = peer->tx_cap = 0;
    atomic_store(&peer->tx_pending, 0);
    pthread_mutex_unlock(&peer->tx_lock);
    pthread_mutex_unlock(&eng->rx_lock);
}

/* be_shm_tx_event handles readiness of an outgoing stream (rx_lock held):
 * a hang-up means the peer engine closed its listener side (it is gone);
 * EPOLLOUT means queued bytes can move. */
static unsigned
be_shm_tx_event(be_shm_peer_t *peer, uint32_t events)
{
    pthread_mutex_lock(&peer->tx_lock);
    if (events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)) {
        if (peer->tx_in_epoll) {
            epoll_ctl(peer->eng->ep_fd, EPOLL_CTL_DEL, peer->tx_fd, NULL);
            peer->tx_in_epoll = 0;
        }
        nxl__fail(NXL_ERR_REMOTE_DISCONNECT, "shm: peer %s hung up",
                  peer->name);
        be_shm_tx_fail(peer, NXL_ERR_REMOTE_DISCONNECT);
    } else if (events & EPOLLOUT) {
        be_shm_tx_flush(peer);
    }
    atomic_store_explicit(&peer->tx_pending, peer->tx_head != peer->tx_len,
                          memory_order_relaxed);
    pthread_mutex_unlock(&peer->tx_lock);
    return 1;
}

/* --- receiving ---------------------------------------------------------- */

static int be_shm_conn_read(be_shm_engine_t *eng, be_shm_conn_t *c,
                            unsigned *delivered);

/* be_shm_accept takes every pending connection and reads what each one
 * already carries (a stream's first frame often arrives with its connect:
 * waiting for the next epoll round would hand it out one progress call
 * late). Connections from another user are refused unless one side is
 * root (CMA would refuse them too). */
static unsigned
be_shm_accept(be_shm_engine_t *eng, unsigned *delivered)
{
    struct epoll_event ev;
    struct ucred cred;
    socklen_t clen;
    be_shm_conn_t *c;
    unsigned handled = 0;
    uid_t me = geteuid();
    int fd;

    for (;;) {
        fd = accept4(eng->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN) {
                nxl__warn("shm: accept on @%s: %s", eng->sock_name,
                          strerror(errno));
            }
            return handled;
        }
        handled++;
        clen = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
            (cred.uid != me && cred.uid != 0 && me != 0)) {
            nxl__warn("shm: refused a notification stream from another user");
            close(fd);
            continue;
        }
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            nxl__warn("shm: out of memory accepting a stream");
            close(fd);
            continue;
        }
        c->fd = fd;
        c->ev.kind = BE_SHM_EV_CONN;
        c->ev.obj = c;
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.ptr = &c->ev;
        if (epoll_ctl(eng->ep_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            nxl__warn("shm: epoll_ctl(accepted): %s", strerror(errno));
            close(fd);
            free(c);
            continue;
        }
        c->next = eng->conns;
        if (eng->conns != NULL) {
            eng->conns->prev = c;
        }
        eng->conns = c;
        if (be_shm_conn_read(eng, c, delivered) < 0) {
            be_shm_conn_close(eng, c);
        }
    }
}

/* be_shm_parse delivers every complete frame in c->buf and keeps the rest.
 * Returns -1 on a protocol violation (the caller closes the stream). */
static int
be_shm_parse(be_shm_engine_t *eng, be_shm_conn_t *c, unsigned *delivered)
{
    const uint8_t *p;
    size_t pos = 0, avail, name_len;
    uint32_t flen;

    for (;;) {
        p = c->buf + pos;
        avail = c->len - pos;
        if (!c->have_name) {
            if (avail < BE_SHM_HELLO_LEN) {
                break;
            }
            name_len = (size_t)p[6] | ((size_t)p[7] << 8);
            if (nxl__le32(p) != BE_SHM_HELLO_MAGIC ||
                p[4] != BE_SHM_WIRE_VERSION || p[5] != 0 || name_len == 0 ||
                name_len > BE_SHM_NAME_MAX) {
                nxl__warn("shm: bad hello on a notification stream");
                return -1;
            }
            if (avail < BE_SHM_HELLO_LEN + name_len) {
                break;
            }
            if (memchr(p + BE_SHM_HELLO_LEN, 0, name_len) != NULL) {
                nxl__warn("shm: NUL in a peer name");
                return -1;
            }
            memcpy(c->name, p + BE_SHM_HELLO_LEN, name_len);
            c->name[name_len] = '\0';
            c->have_name = 1;
            pos += BE_SHM_HELLO_LEN + name_len;
            continue;
        }
        if (avail < BE_SHM_FRAME_HDR) {
            break;
        }
        flen = nxl__le32(p + 4);
        if (flen > BE_SHM_NOTIF_MAX) {
            nxl__warn("shm: %s sent a %u-byte frame (max %u)", c->name,
                      (unsigned)flen, BE_SHM_NOTIF_MAX);
            return -1;
        }
        if (avail < BE_SHM_FRAME_HDR + (size_t)flen) {
            break; /* conn_read grows the buffer to the frame's size */
        }
        if (p[0] == BE_SHM_FRAME_NOTIF) {
            eng->host->notif_recv(eng->host->ctx, c->name, p + BE_SHM_FRAME_HDR,
                                  flen);
            (*delivered)++;
        }
        pos += BE_SHM_FRAME_HDR + (size_t)flen;
    }
    if (pos > 0) {
        memmove(c->buf, c->buf + pos, c->len - pos);
        c->len -= pos;
    }
    return 0;
}

/* be_shm_conn_read reads what a stream has (up to a budget, for fairness)
 * and delivers its frames. Returns -1 when the stream must be closed. */
static int
be_shm_conn_read(be_shm_engine_t *eng, be_shm_conn_t *c, unsigned *delivered)
{
    size_t budget = BE_SHM_RX_BUDGET, want, cap;
    uint8_t *q;
    ssize_t n;

    while (budget > 0) {
        /* Room for at least the frame being assembled, read ahead 64 KiB. */
        want = c->len + BE_SHM_RX_MIN;
        if (c->len >= BE_SHM_FRAME_HDR && c->have_name) {
            want = NXL__MAX(want,
                            BE_SHM_FRAME_HDR + (size_t)nxl__le32(c->buf + 4));
        }
        if (want > c->cap) {
            cap = c->cap ? c->cap : BE_SHM_RX_MIN;
            while (cap < want) {
                cap *= 2;
            }
            q = realloc(c->buf, cap);
            if (q == NULL) {
                nxl__warn("shm: out of memory receiving from %s", c->name);
                return -1;
            }
            c->buf = q;
            c->cap = cap;
        }
        n = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return (errno == EAGAIN) ? 0 : -1;
        }
        if (n == 0) {
            return -1;
        }
        c->len += (size_t)n;
        budget -= NXL__MIN(budget, (size_t)n);
        if (be_shm_parse(eng, c, delivered) < 0) {
            return -1;
        }
    }
    return 0;
}

/* be_shm_progress drains the epoll set once, without blocking. */
unsigned
be_shm_progress(void *self)
{
    be_shm_engine_t *eng = self;
    struct epoll_event evs[32];
    unsigned handled = 0, delivered = 0;
    be_shm_ev_t *ev;
    uint64_t cnt;
    ssize_t r;
    int n, i;

    pthread_mutex_lock(&eng->rx_lock);
    n = epoll_wait(eng->ep_fd, evs, (int)NXL__ARRAY_SIZE(evs), 0);
    for (i = 0; i < n; i++) {
        ev = evs[i].data.ptr;
        switch (ev->kind) {
        case BE_SHM_EV_LISTEN:
            handled += be_shm_accept(eng, &delivered);
            break;
        case BE_SHM_EV_DONE:
            r = read(eng->done_fd, &cnt, sizeof(cnt));
            if (r == (ssize_t)sizeof(cnt)) {
                handled += (unsigned)NXL__MIN(cnt, 1u << 20);
            }
            break;
        case BE_SHM_EV_CONN:
            /* A hang-up still delivers the frames before it: the stream
             * closes when recv reports the end (or an error). */
            if (be_shm_conn_read(eng, ev->obj, &delivered) < 0) {
                be_shm_conn_close(eng, ev->obj);
            }
            handled++;
            break;
        case BE_SHM_EV_TX:
            handled += be_shm_tx_event(ev->obj, evs[i].events);
            break;
        }
    }
    pthread_mutex_unlock(&eng->rx_lock);
    if (delivered > 0 && eng->host->wake != NULL) {
        eng->host->wake(eng->host->ctx);
    }
    return handled + delivered;
}
