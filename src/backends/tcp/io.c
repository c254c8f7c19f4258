/*
 * io.c - the TCP backend's connections and its I/O thread: making,
 * tuning, accepting, killing and freeing connections, and the thread that
 * waits on them.
 *
 * One thread per engine waits in epoll (level-triggered) on the listening
 * socket, every connection and a kick eventfd. It holds io_lock while it
 * handles a batch of events, never while it sleeps. Receiving is its job,
 * unless a thread that waits for or polls its request has the connection
 * (rx.c); sending is shared (tx.c): the I/O thread sends what a posting
 * thread left, on EPOLLOUT. A connection that dies is buried, and freed
 * after the batch, whose events may still name it.
 */
#include "tcp.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BE_TCP_RBUF_SIZE (64u * 1024u)
#define BE_TCP_RING_INIT 64u
#define BE_TCP_EVENTS 64

/* be_tcp_sock_tune sets TCP_NODELAY, keepalive (5 s idle, 3 probes 1 s
 * apart) and a 10 s user timeout, so a silent peer is noticed even when
 * nothing is in flight, and unacknowledged data fails within 10 s. */
void
be_tcp_sock_tune(int fd)
{
    int one = 1, idle = 5, intvl = 1, cnt = 3;
    unsigned utmo = 10000;

    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &utmo, sizeof(utmo));
}

/* be_tcp_conn_epoll updates the epoll interest of c (tx_lock held); no
 * system call when it does not change. */
void
be_tcp_conn_epoll(be_tcp_conn_t *c)
{
    struct epoll_event ev;

    if (c->fd < 0) {
        return;
    }
    ev.events =
        (c->rx_paused || c->rx_owned || c->rx_lent ? 0u : (uint32_t)EPOLLIN) |
        EPOLLRDHUP | (c->want_out ? (uint32_t)EPOLLOUT : 0u);
    if (ev.events == c->ep_events) {
        return;
    }
    ev.data.ptr = c;
    if (epoll_ctl(c->eng->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        nxl__warn("tcp: epoll_ctl(MOD): %s", strerror(errno));
        return;
    }
    c->ep_events = ev.events;
}

/* be_tcp_conn_new wraps a connected non-blocking fd (io_lock held). */
nxl_status_t
be_tcp_conn_new(be_tcp_engine_t *eng, int fd, bool server,
                be_tcp_conn_t **conn_p)
{
    struct epoll_event ev;
    be_tcp_conn_t *c;
    nxl_status_t st;

    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "tcp: connection: out of memory");
    }
    c->rbuf = malloc(BE_TCP_RBUF_SIZE);
    if (!server) {
        c->ring = malloc(BE_TCP_RING_INIT * sizeof(*c->ring));
        c->ring_cap = BE_TCP_RING_INIT;
    }
    if (c->rbuf == NULL || (!server && c->ring == NULL)) {
        st = nxl__fail(NXL_ERR_NOMEM, "tcp: connection: out of memory");
        goto err_free;
    }
    if (pthread_mutex_init(&c->tx_lock, NULL) != 0) {
        st = nxl__fail(NXL_ERR_NOMEM, "tcp: pthread_mutex_init");
        goto err_free;
    }
    c->eng = eng;
    c->fd = fd;
    c->server = server;
    c->rcap = BE_TCP_RBUF_SIZE;
    c->rstate = BE_TCP_RX_HDR;
    c->rcvlowat = 1;
    c->proto = 1;
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = c;
    c->ep_events = ev.events;
    if (epoll_ctl(eng->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        st = nxl__fail_errno(errno, "tcp: epoll_ctl(ADD)");
        goto err_mutex;
    }
    c->next = eng->conns;
    eng->conns = c;
    *conn_p = c;
    return NXL_OK;

err_mutex:
    pthread_mutex_destroy(&c->tx_lock);
err_free:
    free(c->rbuf);
    free(c->ring);
    free(c);
    return st;
}

/* be_tcp_conn_free frees a dead connection's memory. */
void
be_tcp_conn_free(be_tcp_conn_t *c)
{
    pthread_mutex_destroy(&c->tx_lock);
    free(c->rbuf);
    free(c->big);
    free(c->aux);
    free(c->riov);
    free(c->ring);
    free(c->peer_name);
    free(c);
}

/* be_tcp_hello_unwait stops counting c among the accepted connections
 * that owe a hello (io_lock held). */
void
be_tcp_hello_unwait(be_tcp_conn_t *c)
{
    if (c->hello_wait) {
        c->hello_wait = false;
        c->eng->hello_waiting--;
    }
}

/* be_tcp_conn_kill closes c and fails what is in flight on it with st
 * (io_lock held). The struct stays until it is buried and freed. */
static void
be_tcp_conn_kill(be_tcp_conn_t *c, nxl_status_t st, const char *why)
{
    be_tcp_engine_t *eng = c->eng;
    be_tcp_txi_t *items, *t;
    be_tcp_conn_t **pp;
    be_tcp_part_t *p;
    size_t i;

    pthread_mutex_lock(&c->tx_lock);
    if (c->dead) {
        pthread_mutex_unlock(&c->tx_lock);
        return;
    }
    c->dead = true;
    be_tcp_hello_unwait(c);
    if (c->rx_lent) {
        c->rx_lent = false;
        eng->nlent--;
    }
    if (c->fd >= 0) {
        (void)epoll_ctl(eng->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        if (c->rx_owned) {
            (void)shutdown(c->fd, SHUT_RDWR); /* wakes its waiter's poll */
        }
        close(c->fd);
        c->fd = -1;
    }
    items = c->txq_head;
    c->txq_head = c->txq_tail = NULL;
    c->txq_count = 0;
    c->want_out = false;
    pthread_mutex_unlock(&c->tx_lock);

    while ((t = items) != NULL) {
        items = t->next;
        be_tcp_txi_dropped(t, false, true);
    }
    for (i = 0; i < c->ring_count; i++) {
        p = c->ring[(c->ring_head + i) & (c->ring_cap - 1)].part;
        if (p != NULL) {
            be_tcp_part_done(p, st, why);
        }
    }
    c->ring_count = 0;
    if (c->rpart != NULL) {
        p = c->rpart;
        c->rpart = NULL;
        be_tcp_part_done(p, st, why);
    }
    c->dst = NULL;
    for (pp = &eng->conns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    c->next = NULL;
}

/* be_tcp_conn_bury kills c and queues it for freeing after the I/O
 * thread's current batch (which may still hold events naming it). */
void
be_tcp_conn_bury(be_tcp_conn_t *c)
{
    be_tcp_engine_t *eng = c->eng;

    be_tcp_conn_kill(c, NXL_ERR_REMOTE_DISCONNECT, "tcp: connection closed");
    if (!c->in_grave) {
        c->in_grave = true;
        c->peer = NULL;
        c->next = eng->grave;
        eng->grave = c;
    }
}

/* be_tcp_peer_kill: see tcp.h. */
bool
be_tcp_peer_kill(be_tcp_peer_t *peer, nxl_status_t st, const char *why)
{
    bool first = false;
    unsigned i;

    if (atomic_load(&peer->dead) == 0) {
        snprintf(peer->why, sizeof(peer->why), "%s", why);
        atomic_store(&peer->dead, (int)st);
        first = true;
    }
    for (i = 0; i < peer->nconns; i++) {
        if (peer->conns[i] != NULL) {
            be_tcp_conn_kill(peer->conns[i], st, why);
        }
    }
    return first;
}

/* be_tcp_conn_fail: see tcp.h. */
void
be_tcp_conn_fail(be_tcp_conn_t *c, nxl_status_t st, int level, const char *fmt,
                 ...)
{
    char why[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (c->server) {
        nxl__log(level, "tcp: connection from '%s': %s",
                 c->peer_name ? c->peer_name : "?", why);
        be_tcp_conn_bury(c);
    } else if (c->peer != NULL) {
        nxl__log(level, "tcp: agent '%s': %s", c->peer->name, why);
        if (be_tcp_peer_kill(c->peer, st, why)) {
            /* As SHM and UCX do when a peer dies: a thread asleep on the
             * agent's fd, waiting for this peer's notification, wakes
             * and learns it from its next call to the peer. */
            be_tcp_signal(c->eng, 0, true);
        }
    } else {
        be_tcp_conn_kill(c, st, why);
    }
}

/* be_tcp_loss_level is the log level for losing c: a warning when
 * requests were in flight on it, else (a peer that went away idle, or a
 * client of our server) only debug. */
int
be_tcp_loss_level(be_tcp_conn_t *c)
{
    bool busy;

    if (c->server) {
        return NXL_LOG_DEBUG;
    }
    pthread_mutex_lock(&c->tx_lock);
    busy = c->ring_count > 0 || c->txq_head != NULL;
    pthread_mutex_unlock(&c->tx_lock);
    return (busy || c->rpart != NULL) ? NXL_LOG_WARN : NXL_LOG_DEBUG;
}

/* be_tcp_conn_write is the EPOLLOUT handler. */
static void
be_tcp_conn_write(be_tcp_conn_t *c)
{
    bool was_paused;
    int rc;

    pthread_mutex_lock(&c->tx_lock);
    was_paused = c->rx_paused;
    rc = be_tcp_conn_flush(c, true);
    pthread_mutex_unlock(&c->tx_lock);
    if (rc < 0) {
        be_tcp_conn_fail(c, NXL_ERR_REMOTE_DISCONNECT, be_tcp_loss_level(c),
                         "send: %s", strerror(-rc));
        return;
    }
    if (was_paused && !c->rx_paused) {
        be_tcp_conn_read(c, BE_TCP_READ_BUDGET); /* frames wait in rbuf */
    }
}

/* be_tcp_accept takes every pending connection. */
static void
be_tcp_accept(be_tcp_engine_t *eng)
{
    be_tcp_conn_t *c;
    int fd;

    for (;;) {
        fd = accept4(eng->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                nxl__warn("tcp: accept: %s", strerror(errno));
            }
            return;
        }
        be_tcp_sock_tune(fd);
        if (be_tcp_conn_new(eng, fd, true, &c) != NXL_OK) {
            nxl__warn("tcp: dropping a connection: %s", nxl_last_error());
            close(fd);
            continue;
        }
        if (eng->hello_timeout_ms > 0) {
            c->hello_wait = true;
            c->hello_deadline =
                nxl__now_ns() + (uint64_t)eng->hello_timeout_ms * 1000000u;
            eng->hello_waiting++;
        }
    }
}

/* be_tcp_hello_timeouts closes accepted connections whose hello did not
 * arrive (whole) by their deadline, so a silent or slow client cannot hold
 * a connection and its buffers; returns the milliseconds until the next
 * deadline, or -1 when no connection waits (io_lock held). */
static int
be_tcp_hello_timeouts(be_tcp_engine_t *eng)
{
    uint64_t now = nxl__now_ns(), next = UINT64_MAX;
    be_tcp_conn_t *c, *n;

    if (eng->hello_waiting == 0) {
        return -1;
    }
    for (c = eng->conns; c != NULL; c = n) {
        n = c->next;
        if (!c->hello_wait) {
            continue;
        }
        if (now >= c->hello_deadline) {
            be_tcp_conn_fail(c, NXL_ERR_TIMEOUT, NXL_LOG_WARN,
                             "no hello within %d ms (hello_timeout_ms)%s: "
                             "closing",
                             eng->hello_timeout_ms,
                             c->rlen > 0 || c->rstate != BE_TCP_RX_HDR
                                 ? ", only part of one arrived"
                                 : "");
        } else if (c->hello_deadline < next) {
            next = c->hello_deadline;
        }
    }
    if (next == UINT64_MAX) {
        return -1;
    }
    return (int)NXL__MIN((next - now) / 1000000u + 1, 1000u);
}

/* be_tcp_grave_free frees the buried connections, except those a thread
 * in be_tcp_wait still holds (freed in a later batch). io_lock held. */
static void
be_tcp_grave_free(be_tcp_engine_t *eng)
{
    be_tcp_conn_t *c, *keep = NULL;

    while ((c = eng->grave) != NULL) {
        eng->grave = c->next;
        if (c->rx_owned) {
            c->next = keep;
            keep = c;
        } else {
            be_tcp_conn_free(c);
        }
    }
    eng->grave = keep;
}

/* be_tcp_io_main is the I/O thread. */
static void *
be_tcp_io_main(void *arg)
{
    be_tcp_engine_t *eng = arg;
    struct epoll_event evs[BE_TCP_EVENTS];
    be_tcp_conn_t *c;
    uint64_t v;
    ssize_t rc;
    int n, i, timeout, hello_ms = -1, lend_ms = -1;

    while (!atomic_load(&eng->stop)) {
        timeout = -1;
        if (eng->request_timeout_ms > 0 && atomic_load(&eng->inflight) > 0) {
            timeout = NXL__MAX(NXL__MIN(eng->request_timeout_ms / 4, 250), 1);
        }
        if (hello_ms >= 0 && (timeout < 0 || hello_ms < timeout)) {
            timeout = hello_ms;
        }
        if (lend_ms >= 0 && (timeout < 0 || lend_ms < timeout)) {
            timeout = lend_ms;
        }
        n = epoll_wait(eng->epfd, evs, BE_TCP_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            nxl__error("tcp: epoll_wait: %s", strerror(errno));
            break;
        }
        pthread_mutex_lock(&eng->io_lock);
        for (i = 0; i < n; i++) {
            if (evs[i].data.ptr == &eng->lfd) {
                be_tcp_accept(eng);
                continue;
            }
            if (evs[i].data.ptr == &eng->kick_fd) {
                rc = read(eng->kick_fd, &v, sizeof(v));
                (void)rc;
                continue;
            }
            c = evs[i].data.ptr;
            if (c->dead) {
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
                be_tcp_conn_read(c, BE_TCP_READ_BUDGET);
            }
            if (!c->dead && (evs[i].events & EPOLLOUT)) {
                be_tcp_conn_write(c);
            }
        }
        if (eng->request_timeout_ms > 0) {
            be_tcp_timeouts(eng);
        }
        hello_ms = be_tcp_hello_timeouts(eng);
        lend_ms = be_tcp_lend_expire(eng);
        be_tcp_grave_free(eng);
        pthread_mutex_unlock(&eng->io_lock);
        for (i = 0; i < 1000 && atomic_load(&eng->io_waiters) > 0; i++) {
            sched_yield(); /* a canceling thread takes io_lock first */
        }
    }
    return NULL;
}

/* be_tcp_io_start starts the I/O thread. */
nxl_status_t
be_tcp_io_start(be_tcp_engine_t *eng)
{
    int rc;

    atomic_store(&eng->stop, false);
    rc = pthread_create(&eng->thread, NULL, be_tcp_io_main, eng);
    if (rc != 0) {
        return nxl__fail_errno(rc, "tcp: pthread_create");
    }
    (void)pthread_setname_np(eng->thread, "nxl-tcp");
    eng->thread_started = true;
    return NXL_OK;
}

/* be_tcp_kick wakes the I/O thread through its eventfd. */
void
be_tcp_kick(be_tcp_engine_t *eng)
{
    uint64_t one = 1;
    ssize_t rc;

    rc = write(eng->kick_fd, &one, sizeof(one));
    (void)rc;
}

/* be_tcp_io_stop stops and joins the I/O thread. */
void
be_tcp_io_stop(be_tcp_engine_t *eng)
{
    if (!eng->thread_started) {
        return;
    }
    atomic_store(&eng->stop, true);
    be_tcp_kick(eng);
    pthread_join(eng->thread, NULL);
    eng->thread_started = false;
}
