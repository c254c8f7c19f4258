/*
 * lstream.c - local notification streams (see lstream.h).
 */
#include "lstream.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util.h"

#define LS_RX_MIN (64u << 10)    /* first receive buffer */
#define LS_RX_BUDGET (4u << 20)  /* bytes read per stream per progress */
#define LS_TX_MAX (256ull << 20) /* queued bytes per stream before NOMEM */

/* ls_conn_t: one accepted (incoming) stream. */
typedef struct ls_conn {
    uint64_t id; /* its events' value: NXL__LS_EV | id */
    struct ls_conn *prev;
    struct ls_conn *next;
    int fd;
    int have_name;
    int ready; /* paced: readable, waiting for nxl__ls_poll (set lock) */
    char name[NXL__LS_NAME_MAX + 1];
    uint8_t *buf;
    size_t len;
    size_t cap;
} ls_conn_t;

struct nxl__ls {
    const char *kind;
    uint32_t max_msg;
    int paced;            /* NXL__LS_PACED */
    atomic_uint nready;   /* paced: streams marked ready */
    atomic_uint nconns;   /* accepted streams open */
    pthread_mutex_t lock; /* events, accepted streams, the list of sends */
    int ep_fd;            /* the owner's epoll set */
    int listen_fd;        /* events: NXL__LS_EV | 0 */
    char sock[NXL__LS_SOCK_MAX + 1];
    size_t sock_len;
    uint64_t next_id;
    ls_conn_t *conns;
    struct nxl__ls_tx *txs; /* open outgoing streams (lock) */
    nxl__ls_deliver_fn deliver;
    void *ctx;
};

struct nxl__ls_tx {
    nxl__ls_t *ls;
    uint64_t id;                    /* its events' value: NXL__LS_EV | id */
    struct nxl__ls_tx *prev, *next; /* ls->txs until closed (ls lock) */
    pthread_mutex_t lock;
    char *peer; /* the peer agent's name, for messages */
    char sock[NXL__LS_SOCK_MAX + 1];
    size_t sock_len;
    int fd;
    int in_epoll; /* registered with the set */
    int want_out; /* EPOLLOUT requested */
    int closed;   /* nxl__ls_tx_close ran (only the owner writes it) */
    uint8_t *buf; /* bytes not yet written: [head, len) */
    size_t head;
    size_t len;
    size_t cap;
    atomic_int pending;        /* bytes are queued (read without lock) */
    uint64_t pos;              /* stream bytes handed to the stream (lock) */
    atomic_uint_fast64_t sent; /* stream bytes the socket took */
    nxl_status_t err;          /* sticky failure */
    nxl__ls_failed_fn failed;
    void *arg;
};

/* ls_sockaddr fills an abstract unix address from name[0..len). */
static socklen_t
ls_sockaddr(struct sockaddr_un *sa, const char *name, size_t len)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path + 1, name, len);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
}

/* nxl__ls_sock_name: see lstream.h. */
size_t
nxl__ls_sock_name(char *out, size_t cap, const char *kind, pid_t pid,
                  uint64_t token)
{
    int n = snprintf(out, cap, "nxl-%s-%d-%016" PRIx64, kind, (int)pid, token);

    return n < 0 ? 0 : NXL__MIN((size_t)n, cap - 1);
}

/* nxl__ls_create: see lstream.h. */
nxl_status_t
nxl__ls_create(const char *kind, const char *sock, size_t len, uint32_t max_msg,
               int ep_fd, unsigned flags, nxl__ls_deliver_fn deliver, void *ctx,
               nxl__ls_t **ls_p)
{
    struct epoll_event ev;
    struct sockaddr_un sa;
    nxl_status_t st;
    nxl__ls_t *ls;

    *ls_p = NULL;
    if (len == 0 || len > NXL__LS_SOCK_MAX) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "%s: socket name of %zu bytes (1..%u)", kind, len,
                         NXL__LS_SOCK_MAX);
    }
    ls = calloc(1, sizeof(*ls));
    if (ls == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "%s: out of memory", kind);
    }
    ls->kind = kind;
    ls->max_msg = max_msg;
    ls->paced = (flags & NXL__LS_PACED) != 0;
    ls->deliver = deliver;
    ls->ctx = ctx;
    ls->ep_fd = ep_fd;
    ls->next_id = 1;
    memcpy(ls->sock, sock, len);
    ls->sock_len = len;
    pthread_mutex_init(&ls->lock, NULL);
    ls->listen_fd =
        socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ls->listen_fd < 0) {
        st = nxl__fail_errno(errno, "%s: socket(AF_UNIX)", kind);
        goto err;
    }
    if (bind(ls->listen_fd, (struct sockaddr *)&sa,
             ls_sockaddr(&sa, ls->sock, ls->sock_len)) < 0) {
        st = nxl__fail_errno(errno, "%s: bind(@%s)", kind, ls->sock);
        goto err;
    }
    if (listen(ls->listen_fd, SOMAXCONN) < 0) {
        st = nxl__fail_errno(errno, "%s: listen(@%s)", kind, ls->sock);
        goto err;
    }
    ev.events = EPOLLIN;
    ev.data.u64 = NXL__LS_EV;
    if (epoll_ctl(ls->ep_fd, EPOLL_CTL_ADD, ls->listen_fd, &ev) < 0) {
        st = nxl__fail_errno(errno, "%s: epoll_ctl(listener)", kind);
        goto err;
    }
    *ls_p = ls;
    return NXL_OK;

err:
    nxl__ls_destroy(ls);
    return st;
}

/* ls_conn_close unlinks, closes and frees an incoming stream (set lock
 * held). */
static void
ls_conn_close(nxl__ls_t *ls, ls_conn_t *c)
{
    epoll_ctl(ls->ep_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->ready) {
        atomic_fetch_sub(&ls->nready, 1);
    }
    atomic_fetch_sub(&ls->nconns, 1);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        ls->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    free(c->buf);
    free(c);
}

/* nxl__ls_destroy: see lstream.h. */
void
nxl__ls_destroy(nxl__ls_t *ls)
{
    if (ls == NULL) {
        return;
    }
    while (ls->conns != NULL) {
        ls_conn_close(ls, ls->conns);
    }
    if (ls->listen_fd >= 0) {
        epoll_ctl(ls->ep_fd, EPOLL_CTL_DEL, ls->listen_fd, NULL);
        close(ls->listen_fd);
    }
    pthread_mutex_destroy(&ls->lock);
    free(ls);
}

/* --- sending ------------------------------------------------------------ */

/* ls_tx_want_out turns EPOLLOUT on or off for the stream, so that sleepers
 * wake when a full socket drains (stream lock held). */
static void
ls_tx_want_out(nxl__ls_tx_t *tx, int on)
{
    struct epoll_event ev;

    if (!tx->in_epoll || tx->want_out == on) {
        return;
    }
    ev.events = EPOLLRDHUP | (on ? EPOLLOUT : 0);
    ev.data.u64 = NXL__LS_EV | tx->id;
    if (epoll_ctl(tx->ls->ep_fd, EPOLL_CTL_MOD, tx->fd, &ev) == 0) {
        tx->want_out = on;
    }
}

/* ls_tx_fail makes the stream's failure sticky and tells the owner once
 * (stream lock held). Returns st. */
static nxl_status_t
ls_tx_fail(nxl__ls_tx_t *tx, nxl_status_t st)
{
    if (tx->err == NXL_OK) {
        tx->err = st;
        if (tx->failed != NULL) {
            tx->failed(tx->arg, st);
        }
    }
    return st;
}

/* ls_tx_dead is the failure to return once the stream failed. */
static nxl_status_t
ls_tx_dead(const nxl__ls_tx_t *tx)
{
    return nxl__fail(tx->err, "%s: notification stream to %s failed",
                     tx->ls->kind, tx->peer);
}

/* ls_tx_connect connects the stream to the peer's listener and adds it to
 * the set (stream lock held). NXL_IN_PROG: backlog full, retry later. */
static nxl_status_t
ls_tx_connect(nxl__ls_tx_t *tx)
{
    const char *kind = tx->ls->kind;
    struct epoll_event ev;
    struct sockaddr_un sa;
    socklen_t salen;
    int fd, err;

    if (tx->err != NXL_OK) {
        return ls_tx_dead(tx);
    }
    if (tx->fd >= 0) {
        return NXL_OK;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return nxl__fail_errno(errno, "%s: socket(AF_UNIX)", kind);
    }
    salen = ls_sockaddr(&sa, tx->sock, tx->sock_len);
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
            ls_tx_fail(tx, NXL_ERR_REMOTE_DISCONNECT);
            return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                             "%s: peer %s: nobody listens on @%s", kind,
                             tx->peer, tx->sock);
        }
        return ls_tx_fail(
            tx, nxl__fail_errno(err, "%s: connect(@%s)", kind, tx->sock));
    }
    ev.events = EPOLLRDHUP;
    ev.data.u64 = NXL__LS_EV | tx->id;
    if (epoll_ctl(tx->ls->ep_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        err = errno;
        close(fd);
        return nxl__fail_errno(err, "%s: epoll_ctl(stream)", kind);
    }
    tx->fd = fd;
    tx->in_epoll = 1;
    tx->want_out = 0;
    return NXL_OK;
}

/* ls_tx_send_err maps a failed send to the stream's failure (stream lock
 * held). */
static nxl_status_t
ls_tx_send_err(nxl__ls_tx_t *tx, int err)
{
    nxl_status_t st =
        nxl__fail_errno(err, "%s: send to %s", tx->ls->kind, tx->peer);

    if (err == EPIPE || err == ECONNRESET || err == ENOTCONN) {
        st = NXL_ERR_REMOTE_DISCONNECT;
    }
    return ls_tx_fail(tx, st);
}

/* ls_tx_flush writes queued bytes until the socket is full (stream lock
 * held). Returns NXL_OK (maybe bytes left) or the stream's failure. */
static nxl_status_t
ls_tx_flush(nxl__ls_tx_t *tx)
{
    nxl_status_t st;
    ssize_t n;

    if (tx->err != NXL_OK) {
        return ls_tx_dead(tx);
    }
    if (tx->head == tx->len) {
        return NXL_OK;
    }
    if (tx->fd < 0) {
        st = ls_tx_connect(tx);
        if (st != NXL_OK) {
            return (st == NXL_IN_PROG) ? NXL_OK : st;
        }
    }
    while (tx->head < tx->len) {
        n = send(tx->fd, tx->buf + tx->head, tx->len - tx->head,
                 MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                ls_tx_want_out(tx, 1);
                return NXL_OK;
            }
            return ls_tx_send_err(tx, errno);
        }
        tx->head += (size_t)n;
        atomic_fetch_add_explicit(&tx->sent, (uint64_t)n, memory_order_release);
    }
    tx->head = tx->len = 0;
    atomic_store_explicit(&tx->pending, 0, memory_order_relaxed);
    ls_tx_want_out(tx, 0);
    return NXL_OK;
}

/* ls_tx_queue appends n bytes to the queue (stream lock held). */
static nxl_status_t
ls_tx_queue(nxl__ls_tx_t *tx, const void *p, size_t n)
{
    size_t need, cap;
    uint8_t *q;

    if (tx->head > 0 && tx->head >= tx->cap / 2) {
        memmove(tx->buf, tx->buf + tx->head, tx->len - tx->head);
        tx->len -= tx->head;
        tx->head = 0;
    }
    need = tx->len + n;
    if (need - tx->head > LS_TX_MAX) {
        return nxl__fail(NXL_ERR_NOMEM,
                         "%s: %zu notification bytes queued for %s",
                         tx->ls->kind, tx->len - tx->head, tx->peer);
    }
    if (need > tx->cap) {
        cap = tx->cap ? tx->cap : 4096;
        while (cap < need) {
            cap *= 2;
        }
        q = realloc(tx->buf, cap);
        if (q == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "%s: notification queue",
                             tx->ls->kind);
        }
        tx->buf = q;
        tx->cap = cap;
    }
    memcpy(tx->buf + tx->len, p, n);
    tx->len += n;
    tx->pos += n;
    atomic_store_explicit(&tx->pending, 1, memory_order_relaxed);
    return NXL_OK;
}

/* nxl__ls_tx_open: see lstream.h. */
nxl_status_t
nxl__ls_tx_open(nxl__ls_t *ls, const char *peer_name, const char *sock,
                size_t len, const char *own_name, nxl__ls_failed_fn failed,
                void *arg, nxl__ls_tx_t **tx_p)
{
    uint8_t hdr[NXL__LS_HELLO_LEN];
    size_t nlen = strlen(own_name);
    nxl__ls_tx_t *tx;
    nxl_status_t st;

    *tx_p = NULL;
    if (nlen == 0 || nlen > NXL__LS_NAME_MAX) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "%s: agent name of %zu bytes (1..%u)", ls->kind, nlen,
                         NXL__LS_NAME_MAX);
    }
    if (len == 0 || len > NXL__LS_SOCK_MAX) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "%s: socket name of %zu bytes (1..%u)", ls->kind, len,
                         NXL__LS_SOCK_MAX);
    }
    tx = calloc(1, sizeof(*tx));
    if (tx == NULL || (tx->peer = strdup(peer_name)) == NULL) {
        free(tx);
        return nxl__fail(NXL_ERR_NOMEM, "%s: out of memory", ls->kind);
    }
    tx->ls = ls;
    tx->fd = -1;
    memcpy(tx->sock, sock, len);
    tx->sock_len = len;
    tx->failed = failed;
    tx->arg = arg;
    pthread_mutex_init(&tx->lock, NULL);
    pthread_mutex_lock(&ls->lock);
    tx->id = ls->next_id++;
    tx->next = ls->txs;
    if (ls->txs != NULL) {
        ls->txs->prev = tx;
    }
    ls->txs = tx;
    pthread_mutex_unlock(&ls->lock);
    nxl__put_le32(hdr, NXL__LS_HELLO_MAGIC);
    hdr[4] = (uint8_t)NXL__LS_WIRE_VERSION;
    hdr[5] = 0;
    hdr[6] = (uint8_t)nlen;
    hdr[7] = (uint8_t)(nlen >> 8);
    pthread_mutex_lock(&tx->lock);
    st = ls_tx_queue(tx, hdr, sizeof(hdr));
    if (st == NXL_OK) {
        st = ls_tx_queue(tx, own_name, nlen);
    }
    if (st == NXL_OK) {
        st = ls_tx_flush(tx);
    }
    pthread_mutex_unlock(&tx->lock);
    if (st != NXL_OK) {
        nxl__ls_tx_free(tx);
        return st;
    }
    *tx_p = tx;
    return NXL_OK;
}

/* nxl__ls_tx_send: see lstream.h. */
nxl_status_t
nxl__ls_tx_send(nxl__ls_tx_t *tx, const void *msg, size_t len, uint64_t *end_p)
{
    uint8_t hdr[NXL__LS_FRAME_HDR];
    struct iovec iov[2];
    struct msghdr mh;
    size_t done = 0, total = sizeof(hdr) + len;
    nxl_status_t st = NXL_OK;
    ssize_t n;

    if (len > tx->ls->max_msg) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "%s: notification of %zu bytes (max %u)", tx->ls->kind,
                         len, (unsigned)tx->ls->max_msg);
    }
    memset(hdr, 0, sizeof(hdr));
    hdr[0] = NXL__LS_FRAME_NOTIF;
    nxl__put_le32(hdr + 4, (uint32_t)len);

    pthread_mutex_lock(&tx->lock);
    if (tx->err != NXL_OK) {
        st = ls_tx_dead(tx);
        goto out_unlock;
    }
    if (tx->fd < 0) {
        st = ls_tx_connect(tx);
        if (st == NXL_IN_PROG) {
            st = NXL_OK;
        } else if (st != NXL_OK) {
            goto out_unlock;
        }
    }
    if (tx->head == tx->len && tx->fd >= 0) {
        iov[0].iov_base = hdr;
        iov[0].iov_len = sizeof(hdr);
        iov[1].iov_base = (void *)msg;
        iov[1].iov_len = len;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = iov;
        mh.msg_iovlen = (len > 0) ? 2 : 1;
        do {
            n = sendmsg(tx->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            if (errno != EAGAIN) {
                st = ls_tx_send_err(tx, errno);
                goto out_unlock;
            }
            n = 0;
        }
        done = (size_t)n;
        tx->pos += done;
        atomic_fetch_add_explicit(&tx->sent, (uint64_t)done,
                                  memory_order_release);
    }
    if (done < sizeof(hdr)) {
        st = ls_tx_queue(tx, hdr + done, sizeof(hdr) - done);
        if (st == NXL_OK && len > 0) {
            st = ls_tx_queue(tx, msg, len);
        }
    } else if (done < total) {
        st = ls_tx_queue(tx, (const uint8_t *)msg + (done - sizeof(hdr)),
                         total - done);
    }
    if (st != NXL_OK) {
        /* A partly written frame cannot be taken back: the stream is
         * unusable from here on. */
        if (done > 0) {
            ls_tx_fail(tx, st);
        }
        goto out_unlock;
    }
    if (end_p != NULL) {
        *end_p = tx->pos;
    }
    if (done < total) {
        st = ls_tx_flush(tx);
    }
out_unlock:
    pthread_mutex_unlock(&tx->lock);
    return st;
}

/* nxl__ls_tx_kick: see lstream.h. */
void
nxl__ls_tx_kick(nxl__ls_tx_t *tx)
{
    if (!atomic_load_explicit(&tx->pending, memory_order_relaxed)) {
        return;
    }
    if (pthread_mutex_trylock(&tx->lock) == 0) {
        ls_tx_flush(tx);
        pthread_mutex_unlock(&tx->lock);
    }
}

/* nxl__ls_tx_drain: see lstream.h. */
void
nxl__ls_tx_drain(nxl__ls_tx_t *tx, int timeout_ms)
{
    const uint64_t idle = (uint64_t)timeout_ms * 1000000u;
    uint64_t end = nxl__now_ns() + idle, now;
    size_t left, last = SIZE_MAX;
    struct pollfd pfd;
    int fd;

    for (;;) {
        pthread_mutex_lock(&tx->lock);
        if (ls_tx_flush(tx) != NXL_OK || tx->head == tx->len) {
            pthread_mutex_unlock(&tx->lock);
            return;
        }
        fd = tx->fd;
        left = tx->len - tx->head;
        pthread_mutex_unlock(&tx->lock);
        now = nxl__now_ns();
        if (left < last) {
            /* The receiver reads: it gets another timeout_ms. */
            last = left;
            end = now + idle;
        }
        if (now >= end) {
            nxl__warn("%s: dropping %zu notification bytes queued for %s "
                      "(none taken in %d ms)",
                      tx->ls->kind, left, tx->peer, timeout_ms);
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

/* nxl__ls_tx_sent: see lstream.h. */
uint64_t
nxl__ls_tx_sent(nxl__ls_tx_t *tx)
{
    return atomic_load_explicit(&tx->sent, memory_order_acquire);
}

/* nxl__ls_tx_failed: see lstream.h. */
nxl_status_t
nxl__ls_tx_failed(nxl__ls_tx_t *tx)
{
    nxl_status_t st;

    pthread_mutex_lock(&tx->lock);
    st = tx->err;
    pthread_mutex_unlock(&tx->lock);
    return st;
}

/* nxl__ls_tx_close: see lstream.h. */
void
nxl__ls_tx_close(nxl__ls_tx_t *tx)
{
    nxl__ls_t *ls;

    if (tx == NULL || tx->closed) {
        return; /* closed: the set may be gone already */
    }
    ls = tx->ls;
    pthread_mutex_lock(&ls->lock);
    pthread_mutex_lock(&tx->lock);
    if (tx->fd >= 0) {
        if (tx->in_epoll) {
            epoll_ctl(ls->ep_fd, EPOLL_CTL_DEL, tx->fd, NULL);
        }
        close(tx->fd);
    }
    tx->fd = -1;
    tx->in_epoll = 0;
    if (tx->prev != NULL) {
        tx->prev->next = tx->next;
    } else {
        ls->txs = tx->next;
    }
    if (tx->next != NULL) {
        tx->next->prev = tx->prev;
    }
    tx->prev = tx->next = NULL;
    if (tx->err == NXL_OK) {
        tx->err = NXL_ERR_REMOTE_DISCONNECT; /* closed: no owner callback */
    }
    free(tx->buf);
    tx->buf = NULL;
    tx->head = tx->len = tx->cap = 0;
    atomic_store(&tx->pending, 0);
    tx->closed = 1;
    pthread_mutex_unlock(&tx->lock);
    pthread_mutex_unlock(&ls->lock);
}

/* nxl__ls_tx_free: see lstream.h. */
void
nxl__ls_tx_free(nxl__ls_tx_t *tx)
{
    if (tx == NULL) {
        return;
    }
    nxl__ls_tx_close(tx);
    pthread_mutex_destroy(&tx->lock);
    free(tx->peer);
    free(tx);
}

/* ls_tx_event handles readiness of an outgoing stream (set lock held): a
 * hang-up means the peer engine closed its side (it is gone); EPOLLOUT
 * means queued bytes can move. */
static unsigned
ls_tx_event(nxl__ls_tx_t *tx, uint32_t events)
{
    pthread_mutex_lock(&tx->lock);
    if (events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)) {
        if (tx->in_epoll) {
            epoll_ctl(tx->ls->ep_fd, EPOLL_CTL_DEL, tx->fd, NULL);
            tx->in_epoll = 0;
        }
        nxl__fail(NXL_ERR_REMOTE_DISCONNECT, "%s: peer %s hung up",
                  tx->ls->kind, tx->peer);
        ls_tx_fail(tx, NXL_ERR_REMOTE_DISCONNECT);
    } else if (events & EPOLLOUT) {
        ls_tx_flush(tx);
    }
    atomic_store_explicit(&tx->pending, tx->head != tx->len,
                          memory_order_relaxed);
    pthread_mutex_unlock(&tx->lock);
    return 1;
}

/* --- receiving ---------------------------------------------------------- */

static int ls_conn_read(nxl__ls_t *ls, ls_conn_t *c, unsigned *delivered);

/* ls_conn_ready marks a paced stream readable for nxl__ls_poll and asks
 * the owner to wake its application (set lock held). */
static void
ls_conn_ready(nxl__ls_t *ls, ls_conn_t *c, unsigned *wake)
{
    if (!c->ready) {
        c->ready = 1;
        atomic_fetch_add(&ls->nready, 1);
    }
    if (wake != NULL) {
        (*wake)++;
    }
}

/* ls_accept takes every pending connection and reads what each one
 * already carries (a stream's first frame often arrives with its connect:
 * waiting for the next epoll round would hand it out one progress call
 * late). Connections from another user are refused unless one side is
 * root (CMA would refuse them too). */
static unsigned
ls_accept(nxl__ls_t *ls, unsigned *delivered)
{
    struct epoll_event ev;
    struct ucred cred;
    socklen_t clen;
    ls_conn_t *c;
    unsigned handled = 0;
    uid_t me = geteuid();
    int fd;

    for (;;) {
        fd = accept4(ls->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN) {
                nxl__warn("%s: accept on @%s: %s", ls->kind, ls->sock,
                          strerror(errno));
            }
            return handled;
        }
        handled++;
        clen = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
            (cred.uid != me && cred.uid != 0 && me != 0)) {
            nxl__warn("%s: refused a notification stream from another user",
                      ls->kind);
            close(fd);
            continue;
        }
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            nxl__warn("%s: out of memory accepting a stream", ls->kind);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->id = ls->next_id++;
        ev.events = EPOLLIN | EPOLLRDHUP | (ls->paced ? EPOLLONESHOT : 0);
        ev.data.u64 = NXL__LS_EV | c->id;
        if (epoll_ctl(ls->ep_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            nxl__warn("%s: epoll_ctl(accepted): %s", ls->kind, strerror(errno));
            close(fd);
            free(c);
            continue;
        }
        c->next = ls->conns;
        if (ls->conns != NULL) {
            ls->conns->prev = c;
        }
        ls->conns = c;
        atomic_fetch_add(&ls->nconns, 1);
        if (ls->paced) {
            /* Its first frames often came with the connect. */
            ls_conn_ready(ls, c, delivered);
        } else if (ls_conn_read(ls, c, delivered) < 0) {
            ls_conn_close(ls, c);
        }
    }
}

/* ls_parse delivers every complete frame in c->buf and keeps the rest.
 * Returns -1 on a protocol violation (the caller closes the stream). */
static int
ls_parse(nxl__ls_t *ls, ls_conn_t *c, unsigned *delivered)
{
    const uint8_t *p;
    size_t pos = 0, avail, name_len;
    uint32_t flen;

    for (;;) {
        p = c->buf + pos;
        avail = c->len - pos;
        if (!c->have_name) {
            if (avail < NXL__LS_HELLO_LEN) {
                break;
            }
            name_len = (size_t)p[6] | ((size_t)p[7] << 8);
            if (nxl__le32(p) != NXL__LS_HELLO_MAGIC ||
                p[4] != NXL__LS_WIRE_VERSION || p[5] != 0 || name_len == 0 ||
                name_len > NXL__LS_NAME_MAX) {
                nxl__warn("%s: bad hello on a notification stream", ls->kind);
                return -1;
            }
            if (avail < NXL__LS_HELLO_LEN + name_len) {
                break;
            }
            if (memchr(p + NXL__LS_HELLO_LEN, 0, name_len) != NULL) {
                nxl__warn("%s: NUL in a peer name", ls->kind);
                return -1;
            }
            memcpy(c->name, p + NXL__LS_HELLO_LEN, name_len);
            c->name[name_len] = '\0';
            c->have_name = 1;
            pos += NXL__LS_HELLO_LEN + name_len;
            continue;
        }
        if (avail < NXL__LS_FRAME_HDR) {
            break;
        }
        flen = nxl__le32(p + 4);
        if (flen > ls->max_msg) {
            nxl__warn("%s: %s sent a %u-byte frame (max %u)", ls->kind, c->name,
                      (unsigned)flen, (unsigned)ls->max_msg);
            return -1;
        }
        if (avail < NXL__LS_FRAME_HDR + (size_t)flen) {
            break; /* conn_read grows the buffer to the frame's size */
        }
        if (p[0] == NXL__LS_FRAME_NOTIF) {
            ls->deliver(ls->ctx, c->name, p + NXL__LS_FRAME_HDR, flen);
            if (delivered != NULL) {
                (*delivered)++;
            }
        }
        pos += NXL__LS_FRAME_HDR + (size_t)flen;
    }
    if (pos > 0) {
        memmove(c->buf, c->buf + pos, c->len - pos);
        c->len -= pos;
    }
    return 0;
}

/* ls_conn_read reads what a stream has (up to a budget, for fairness) and
 * delivers its frames. Returns 1 when the socket is empty, 0 when the
 * budget ran out first, -1 when the stream must be closed. */
static int
ls_conn_read(nxl__ls_t *ls, ls_conn_t *c, unsigned *delivered)
{
    size_t budget = LS_RX_BUDGET, want, cap;
    uint8_t *q;
    ssize_t n;

    while (budget > 0) {
        /* Room for at least the frame being assembled, read ahead 64 KiB. */
        want = c->len + LS_RX_MIN;
        if (c->len >= NXL__LS_FRAME_HDR && c->have_name) {
            want = NXL__MAX(want,
                            NXL__LS_FRAME_HDR + (size_t)nxl__le32(c->buf + 4));
        }
        if (want > c->cap) {
            cap = c->cap ? c->cap : LS_RX_MIN;
            while (cap < want) {
                cap *= 2;
            }
            q = realloc(c->buf, cap);
            if (q == NULL) {
                nxl__warn("%s: out of memory receiving from %s", ls->kind,
                          c->name);
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
            return (errno == EAGAIN) ? 1 : -1;
        }
        if (n == 0) {
            return -1;
        }
        c->len += (size_t)n;
        budget -= NXL__MIN(budget, (size_t)n);
        if (ls_parse(ls, c, delivered) < 0) {
            return -1;
        }
    }
    return 0;
}

/* nxl__ls_event: see lstream.h. */
unsigned
nxl__ls_event(nxl__ls_t *ls, uint64_t value, uint32_t events, unsigned *wake)
{
    uint64_t id = value & ~NXL__LS_EV_MASK;
    unsigned handled = 0;
    nxl__ls_tx_t *tx;
    ls_conn_t *c;

    pthread_mutex_lock(&ls->lock);
    if (id == 0) {
        handled = ls_accept(ls, wake);
        goto out;
    }
    /* Found under the lock, or gone: another thread got the same event
     * and closed the stream, or it was closed since. */
    for (c = ls->conns; c != NULL && c->id != id; c = c->next) {
    }
    if (c != NULL) {
        /* A hang-up still delivers the frames before it: the stream
         * closes when recv reports the end (or an error). */
        if (ls->paced) {
            ls_conn_ready(ls, c, wake);
        } else if (ls_conn_read(ls, c, wake) < 0) {
            ls_conn_close(ls, c);
        }
        handled = 1;
        goto out;
    }
    for (tx = ls->txs; tx != NULL && tx->id != id; tx = tx->next) {
    }
    if (tx != NULL) {
        handled = ls_tx_event(tx, events);
    }
out:
    pthread_mutex_unlock(&ls->lock);
    return handled;
}

/* nxl__ls_receiving: see lstream.h. */
int
nxl__ls_receiving(nxl__ls_t *ls)
{
    return atomic_load_explicit(&ls->nconns, memory_order_relaxed) > 0;
}

/* nxl__ls_poll: see lstream.h. */
unsigned
nxl__ls_poll(nxl__ls_t *ls, unsigned *delivered)
{
    struct epoll_event ev;
    ls_conn_t *c, *next;
    unsigned handled = 0;
    int r;

    if (atomic_load_explicit(&ls->nready, memory_order_relaxed) == 0) {
        return 0;
    }
    pthread_mutex_lock(&ls->lock);
    for (c = ls->conns; c != NULL; c = next) {
        next = c->next;
        if (!c->ready) {
            continue;
        }
        handled++;
        r = ls_conn_read(ls, c, delivered);
        if (r < 0) {
            ls_conn_close(ls, c);
        } else if (r > 0) {
            /* Empty: armed again (a frame that came meanwhile is seen by
             * the re-arm itself). */
            c->ready = 0;
            atomic_fetch_sub(&ls->nready, 1);
            ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
            ev.data.u64 = NXL__LS_EV | c->id;
            if (epoll_ctl(ls->ep_fd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
                nxl__warn("%s: epoll_ctl(re-arm): %s", ls->kind,
                          strerror(errno));
                ls_conn_close(ls, c);
            }
        }
    }
    pthread_mutex_unlock(&ls->lock);
    return handled;
}
