/*
 * rx.c - the TCP backend's receive side: each connection's receive state
 * machine (header, descriptors and aux, payload), the matching of a
 * client connection's replies with its requests, and which thread
 * receives.
 *
 * The receiver readv()s a payload straight into its destination, with
 * the staging buffer as the last iovec to catch the next headers in the
 * same call. A read that returns less than it asked for emptied the
 * socket: the reader stops there rather than pay a second call for EAGAIN
 * (level-triggered epoll and poll() report whatever comes later). A
 * client that expects a READ reply of 32 KiB or more reads its header
 * apart first, so the payload lands in place rather than in the staging
 * buffer and a copy out of it (be_tcp_rx_hdr_only). What a server
 * connection does with a request is in srv.c.
 *
 * Replies on a client connection are received by whichever thread gets
 * there first under io_lock: the I/O thread, a thread in be_tcp_wait that
 * owns the connection (EPOLLIN off), or a thread polling its request with
 * check (be_tcp_rx_inline, trylock). A thread that keeps polling is lent
 * the connection (EPOLLIN off) so the I/O thread does not wake for
 * every reply that thread is about to take; the I/O thread takes it back
 * once nobody polled it for BE_TCP_LEND_NS (a 1 ms epoll timeout while
 * any is lent).
 */
#include "tcp.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define BE_TCP_INLINE_BUDGET (1u << 20)    /* per check() call */
#define BE_TCP_WAIT_SLICE_MS 5             /* longest poll() in be_tcp_wait */
#define BE_TCP_RX_LOWAT (256u * 1024u)     /* SO_RCVLOWAT inside big payloads */
#define BE_TCP_LEND_GAP_NS 200000u         /* two polls this close: lend it */
#define BE_TCP_LEND_NS 1000000u            /* no poll this long: take it back */
#define BE_TCP_LEND_TICK_MS 1              /* I/O thread timeout while lent */
#define BE_TCP_RX_DIRECT_MIN (32u * 1024u) /* READ reply: header apart */

/* be_tcp_cli_more sets up receiving the next frame of a READ reply that
 * comes in several (version 2): same id, a payload that continues where
 * the last frame stopped and, in the last frame, ends at the part's size
 * (or a status and no payload: the target stopped on our CANCEL). A part
 * that was canceled meanwhile (rpart NULL) has its frames discarded. */
static bool
be_tcp_cli_more(be_tcp_conn_t *c)
{
    be_tcp_part_t *part = c->rpart;
    bool last = !(c->rf.flags & BE_TCP_F_MORE);

    if (c->rf.type != BE_TCP_READ_RESP || c->rf.id != c->rmore_id) {
        be_tcp_conn_fail(c, NXL_ERR_PROTO, NXL_LOG_WARN,
                         "reply %llu (type %u) inside the reply to READ %llu",
                         (unsigned long long)c->rf.id, (unsigned)c->rf.type,
                         (unsigned long long)c->rmore_id);
        return false;
    }
    c->dst = NULL;
    c->dst_n = 0;
    if (part != NULL && c->rf.status == 0) {
        if (c->rf.data_len > part->bytes - c->rgot ||
            (last && c->rf.data_len != part->bytes - c->rgot)) {
            be_tcp_conn_fail(c, NXL_ERR_PROTO, NXL_LOG_WARN,
                             "READ reply frame of %llu bytes after %llu, "
                             "for %llu requested",
                             (unsigned long long)c->rf.data_len,
                             (unsigned long long)c->rgot,
                             (unsigned long long)part->bytes);
            return false;
        }
        c->dst = part->liov; /* the cursor (dst_i, dst_off) goes on */
        c->dst_n = part->ndesc;
    }
    c->rgot += c->rf.data_len;
    c->rmore = !last;
    c->data_left = c->rf.data_len;
    c->rstate = BE_TCP_RX_DATA;
    return true;
}

/* be_tcp_cli_reply matches a reply header with the oldest outstanding
 * request on this stream and sets up receiving its payload. */
static bool
be_tcp_cli_reply(be_tcp_conn_t *c)
{
    be_tcp_expect_t e = {0};
    be_tcp_part_t *part;
    bool have = false, more = (c->rf.flags & BE_TCP_F_MORE) != 0;

    if (c->rmore) {
        return be_tcp_cli_more(c);
    }
    if (more && c->proto < 2) {
        be_tcp_conn_fail(c, NXL_ERR_PROTO, NXL_LOG_WARN,
                         "READ reply in several frames on a version-1 "
                         "connection");
        return false;
    }
    pthread_mutex_lock(&c->tx_lock);
    if (c->ring_count > 0) {
        e = c->ring[c->ring_head];
        have = true;
        c->ring_head = (c->ring_head + 1) & (c->ring_cap - 1);
        c->ring_count--;
        if (e.part != NULL) {
            e.part->state = BE_TCP_P_RECV;
        }
    }
    pthread_mutex_unlock(&c->tx_lock);
    part = e.part;
    c->rpart = part;
    if (!have || e.id != c->rf.id || e.type != c->rf.type) {
        be_tcp_conn_fail(c, NXL_ERR_PROTO, NXL_LOG_WARN,
                         "reply %llu (type %u) matches no request",
                         (unsigned long long)c->rf.id, (unsigned)c->rf.type);
        return false;
    }
    c->dst = NULL;
    c->dst_n = 0;
    if (c->rf.type == BE_TCP_READ_RESP && c->rf.status == 0 && part != NULL) {
        if (more ? c->rf.data_len > part->bytes
                 : c->rf.data_len != part->bytes) {
            be_tcp_conn_fail(c, NXL_ERR_PROTO, NXL_LOG_WARN,
                             "READ reply of %llu bytes for %llu requested",
                             (unsigned long long)c->rf.data_len,
                             (unsigned long long)part->bytes);
            return false;
        }
        c->dst = part->liov;
        c->dst_n = part->ndesc;
    }
    c->dst_i = 0;
    c->dst_off = 0;
    c->rmore = more;
    c->rmore_id = c->rf.id;
    c->rgot = c->rf.data_len;
    c->data_left = c->rf.data_len;
    c->rstate = BE_TCP_RX_DATA;
    return true;
}

/* be_tcp_on_header dispatches a decoded header (rx state HDR). */
static bool
be_tcp_on_header(be_tcp_conn_t *c)
{
    uint8_t t = c->rf.type;

    if (c->server) {
        if (!c->hello_done
                ? t != BE_TCP_HELLO
                : (t != BE_TCP_READ_REQ && t != BE_TCP_WRITE_REQ &&
                   t != BE_TCP_NOTIF && (t != BE_TCP_CANCEL || c->proto < 2))) {
            be_tcp_conn_fail(c, NXL_ERR_PROTO, NXL_LOG_WARN,
                             "unexpected frame type %u", (unsigned)t);
            return false;
        }
        if (t == BE_TCP_CANCEL) {
            be_tcp_srv_cancel(c, c->rf.id); /* a header and nothing more */
            return true;
        }
        /* Version 3 requests carry region keys; earlier ones cannot. */
        if ((t == BE_TCP_READ_REQ || t == BE_TCP_WRITE_REQ) &&
            ((c->rf.flags & BE_TCP_F_KEYS) != 0) != (c->proto >= 3)) {
            be_tcp_conn_fail(c, NXL_ERR_PROTO, NXL_LOG_WARN,
                             "request %s region keys on a version-%u "
                             "connection",
                             c->proto >= 3 ? "without" : "with",
                             (unsigned)c->proto);
            return false;
        }
        c->rstate = BE_TCP_RX_CTRL;
        c->bigfill = 0;
        return true;
    }
    if (t != BE_TCP_READ_RESP && t != BE_TCP_WRITE_ACK) {
        be_tcp_conn_fail(c, NXL_ERR_PROTO, NXL_LOG_WARN,
                         "unexpected frame type %u", (unsigned)t);
        return false;
    }
    return be_tcp_cli_reply(c);
}

/* be_tcp_on_data_done finishes a frame whose payload has arrived. */
static bool
be_tcp_on_data_done(be_tcp_conn_t *c)
{
    be_tcp_part_t *part;
    nxl_status_t st;
    char why[160];

    c->rstate = BE_TCP_RX_HDR;
    c->dst = NULL;
    if (c->server) {
        return be_tcp_srv_write_done(c);
    }
    if (c->rmore) {
        return true; /* more frames of this reply follow (rpart stays) */
    }
    part = c->rpart;
    c->rpart = NULL;
    if (part == NULL) {
        return true; /* canceled or timed out: reply discarded */
    }
    st = be_tcp_status_from_wire(c->rf.status);
    why[0] = '\0';
    if (st != NXL_OK) {
        snprintf(why, sizeof(why), "tcp: agent '%s' refused the %s (%s)%s",
                 c->peer ? c->peer->name : "?",
                 c->rf.type == BE_TCP_READ_RESP ? "READ" : "WRITE",
                 nxl_status_name(st),
                 st != NXL_ERR_NOT_ALLOWED ? ""
                 : c->proto >= 3
                     ? ": a descriptor is outside its registered memory, or "
                       "in a region registered after the metadata we hold"
                     : ": a descriptor is outside its registered memory");
    }
    be_tcp_part_done(part, st, why);
    return true;
}

/* be_tcp_dst_advance moves the destination cursor n bytes on, copying
 * from src first when src is not NULL. */
static void
be_tcp_dst_advance(be_tcp_conn_t *c, const uint8_t *src, size_t n)
{
    size_t room, k;

    c->data_left -= n;
    if (c->dst == NULL) {
        return;
    }
    if (src != NULL && !c->server) {
        atomic_fetch_add_explicit(&c->eng->cli_staged, (uint64_t)n,
                                  memory_order_relaxed);
    }
    while (n > 0 && c->dst_i < c->dst_n) {
        room = c->dst[c->dst_i].iov_len - c->dst_off;
        k = NXL__MIN(room, n);
        if (src != NULL && k > 0) {
            memcpy((uint8_t *)c->dst[c->dst_i].iov_base + c->dst_off, src, k);
            src += k;
        }
        n -= k;
        c->dst_off += k;
        if (c->dst_off == c->dst[c->dst_i].iov_len) {
            c->dst_i++;
            c->dst_off = 0;
        }
    }
}

/* be_tcp_ctrl_len is the descriptor table plus aux of the current frame. */
static size_t
be_tcp_ctrl_len(const be_tcp_conn_t *c)
{
    return (size_t)c->rf.ndesc * be_tcp_wdesc_size(c->rf.flags) + c->rf.aux_len;
}

/* be_tcp_rx_frames processes the bytes buffered in rbuf. Returns false if
 * the connection died; true when it needs more bytes (or is paused). */
static bool
be_tcp_rx_frames(be_tcp_conn_t *c)
{
    const char *why = NULL;
    const uint8_t *ctrl;
    size_t avail, need, take;
    uint8_t *nb;
    int rc;

    for (;;) {
        if (c->dead) {
            return false;
        }
        if (c->rx_paused) {
            return true;
        }
        avail = c->rlen - c->rpos;
        switch (c->rstate) {
        case BE_TCP_RX_HDR:
            rc = be_tcp_frame_decode(c->rbuf + c->rpos, avail, &c->rf, &why);
            if (rc == 0) {
                return true;
            }
            if (rc < 0) {
                be_tcp_conn_fail(c, NXL_ERR_PROTO, NXL_LOG_WARN,
                                 "bad frame: %s", why);
                return false;
            }
            c->rpos += BE_TCP_HDR_SIZE;
            if (!be_tcp_on_header(c)) {
                return false;
            }
            break;
        case BE_TCP_RX_CTRL:
            need = be_tcp_ctrl_len(c);
            if (need <= c->rcap) {
                if (avail < need) {
                    return true;
                }
                ctrl = c->rbuf + c->rpos;
                c->rpos += need;
            } else {
                if (c->bigcap < need) {
                    nb = realloc(c->big, need);
                    if (nb == NULL) {
                        be_tcp_conn_fail(c, NXL_ERR_NOMEM, NXL_LOG_WARN,
                                         "out of memory");
                        return false;
                    }
                    c->big = nb;
                    c->bigcap = need;
                }
                take = NXL__MIN(avail, need - c->bigfill);
                memcpy(c->big + c->bigfill, c->rbuf + c->rpos, take);
                c->rpos += take;
                c->bigfill += take;
                if (c->bigfill < need) {
                    return true;
                }
                ctrl = c->big;
                c->bigfill = 0;
            }
            if (!be_tcp_on_ctrl(c, ctrl)) {
                return false;
            }
            break;
        default: /* BE_TCP_RX_DATA */
            if (c->data_left == 0) {
                if (!be_tcp_on_data_done(c)) {
                    return false;
                }
                break;
            }
            if (avail == 0) {
                return true;
            }
            take = (size_t)NXL__MIN((uint64_t)avail, c->data_left);
            be_tcp_dst_advance(c, c->rbuf + c->rpos, take);
            c->rpos += take;
            break;
        }
    }
}

/* be_tcp_rx_hdr_only says whether a client connection's next read should
 * take only the rest of a reply header, because the reply it starts is a
 * READ payload of at least BE_TCP_RX_DIRECT_MIN bytes: the read after it
 * then puts the payload straight into its destination. A read into rbuf
 * would take the payload there and copy it out again (be_tcp_dst_advance),
 * and at depth 1 that copy runs after the segment's ACK and before the
 * next request, on the critical path (64 KiB READ on the 2-vCPU rig,
 * traced: about 12 us of memmove into a cold destination, against 2-3 us
 * for the extra readv; docs/performance.md, sixth session). The expected
 * reply is the continuation of rpart (several frames, version 2) or the
 * ring's oldest entry (tx_lock: posting threads push to the ring).
 * io_lock held. */
static bool
be_tcp_rx_hdr_only(be_tcp_conn_t *c)
{
    const be_tcp_part_t *part;
    uint64_t left;
    bool big = false;

    if (c->server || c->rstate != BE_TCP_RX_HDR ||
        c->rlen - c->rpos >= BE_TCP_HDR_SIZE) {
        return false;
    }
    if (c->rmore) {
        part = c->rpart;
        return part != NULL && part->bytes - c->rgot >= BE_TCP_RX_DIRECT_MIN;
    }
    pthread_mutex_lock(&c->tx_lock);
    if (c->ring_count > 0) {
        part = c->ring[c->ring_head].part;
        left = part != NULL ? part->bytes : 0;
        big = c->ring[c->ring_head].type == BE_TCP_READ_RESP &&
              left >= BE_TCP_RX_DIRECT_MIN;
    }
    pthread_mutex_unlock(&c->tx_lock);
    return big;
}

/* be_tcp_rx_iov builds the readv list for the next read: payload goes
 * straight to its destination (or the big control buffer), and rbuf's
 * free space comes last for whatever follows (only the rest of the header
 * when be_tcp_rx_hdr_only). *direct_p is the number of bytes that land
 * outside rbuf, *want_p all the list takes. */
static int
be_tcp_rx_iov(be_tcp_conn_t *c, struct iovec *iov, size_t *direct_p,
              size_t *want_p)
{
    size_t direct = 0, i, off, len, need, room;
    uint64_t left;
    int cnt = 0;

    if (c->rstate == BE_TCP_RX_DATA && c->dst != NULL && c->data_left > 0) {
        left = c->data_left;
        for (i = c->dst_i, off = c->dst_off;
             i < c->dst_n && left > 0 && cnt < BE_TCP_IOV_BATCH - 1;
             i++, off = 0) {
            len = (size_t)NXL__MIN((uint64_t)(c->dst[i].iov_len - off), left);
            if (len == 0) {
                continue;
            }
            iov[cnt].iov_base = (uint8_t *)c->dst[i].iov_base + off;
            iov[cnt].iov_len = len;
            cnt++;
            direct += len;
            left -= len;
        }
    } else if (c->rstate == BE_TCP_RX_CTRL &&
               (need = be_tcp_ctrl_len(c)) > c->rcap) {
        iov[cnt].iov_base = c->big + c->bigfill;
        iov[cnt].iov_len = need - c->bigfill;
        direct = iov[cnt].iov_len;
        cnt++;
    }
    room = c->rcap - c->rlen;
    if (be_tcp_rx_hdr_only(c)) {
        room = NXL__MIN(room, BE_TCP_HDR_SIZE - (c->rlen - c->rpos));
    }
    iov[cnt].iov_base = c->rbuf + c->rlen;
    iov[cnt].iov_len = room;
    cnt++;
    *direct_p = direct;
    *want_p = direct + room;
    return cnt;
}

/* be_tcp_rx_lowat sets the socket's receive low-water mark for what comes
 * next: BE_TCP_RX_LOWAT while more than that of a payload is still to
 * arrive, else 1 (the default). epoll then reports the socket only when a
 * good chunk waits, so a large READ reply or WRITE payload is received in
 * chunks of at least 256 KiB instead of a wake-up per burst the sender
 * gets out: across veth on the 2-core box the receiving thread otherwise
 * wakes for every few dozen KiB and its wake-ups and the sender's
 * alternate (1-16 MiB READ went from 0.6-0.7x to 0.8-1.1x iperf3, see
 * docs/performance.md). The mark never exceeds what the peer still owes
 * in this frame, so the wake-up always comes; EOF, errors and a full
 * receive window report the socket regardless. Small frames never touch
 * it (no system call on the 4 KiB path). */
static void
be_tcp_rx_lowat(be_tcp_conn_t *c)
{
    int want = 1;

    if (c->rstate == BE_TCP_RX_DATA && c->data_left > BE_TCP_RX_LOWAT) {
        want = (int)BE_TCP_RX_LOWAT;
    }
    if (want != c->rcvlowat) {
        (void)setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &want, sizeof(want));
        c->rcvlowat = want;
    }
}

/* be_tcp_conn_read reads and handles what a connection has, up to budget
 * bytes per call (level-triggered epoll brings it back), then flushes the
 * replies it produced. A short read ends the reading: the socket was
 * empty, and a second call would only say EAGAIN (for a 4 KiB request
 * that is one of 4 system calls of the serving thread). io_lock held. */
void
be_tcp_conn_read(be_tcp_conn_t *c, size_t budget)
{
    struct iovec iov[BE_TCP_IOV_BATCH];
    size_t direct, got, want;
    bool paused, drained = false;
    ssize_t n;
    int cnt, rc;

    for (;;) {
        if (!be_tcp_rx_frames(c)) {
            return;
        }
        paused = c->rx_paused;
        /* Here, after the buffered bytes were handled, and on every way
         * out below: a mark left from a payload that is done would hide
         * the frames after it from epoll. */
        be_tcp_rx_lowat(c);
        if (!paused && budget > 0 && !drained) {
            if (c->rpos > 0) {
                memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
                c->rlen -= c->rpos;
                c->rpos = 0;
            }
            cnt = be_tcp_rx_iov(c, iov, &direct, &want);
            n = readv(c->fd, iov, cnt);
            if (n == 0) {
                be_tcp_conn_fail(c, NXL_ERR_REMOTE_DISCONNECT,
                                 be_tcp_loss_level(c),
                                 "peer closed the connection");
                return;
            }
            if (n > 0) {
                got = NXL__MIN((size_t)n, direct);
                if (got > 0) {
                    if (c->rstate == BE_TCP_RX_DATA) {
                        be_tcp_dst_advance(c, NULL, got);
                    } else {
                        c->bigfill += got;
                    }
                }
                c->rlen += (size_t)n - got;
                budget -= NXL__MIN(budget, (size_t)n);
                drained = (size_t)n < want; /* handle it, read no more */
                continue;
            }
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                rc = errno;
                be_tcp_conn_fail(c, nxl__fail_errno(rc, "tcp: recv"),
                                 be_tcp_loss_level(c), "recv: %s",
                                 strerror(rc));
                return;
            }
        }
        if (!c->server) {
            return;
        }
        /* Send the replies this batch produced; if that drained a paused
         * queue, go on with the requests still waiting in rbuf. */
        pthread_mutex_lock(&c->tx_lock);
        rc = c->want_out ? 0 : be_tcp_conn_flush(c, true);
        pthread_mutex_unlock(&c->tx_lock);
        if (rc < 0) {
            be_tcp_conn_fail(c, NXL_ERR_REMOTE_DISCONNECT, NXL_LOG_DEBUG,
                             "send: %s", strerror(-rc));
            return;
        }
        if (!paused || c->rx_paused || budget == 0) {
            return;
        }
    }
}

/* be_tcp_lend lends client connection c to polling threads (on: EPOLLIN
 * off) or gives it back to the I/O thread. io_lock held. */
static void
be_tcp_lend(be_tcp_conn_t *c, bool on)
{
    pthread_mutex_lock(&c->tx_lock);
    if (!c->dead && c->rx_lent != on) {
        c->rx_lent = on;
        c->eng->nlent += on ? 1u : (unsigned)-1;
        be_tcp_conn_epoll(c);
    }
    pthread_mutex_unlock(&c->tx_lock);
}

/* be_tcp_lend_expire gives back the connections nobody polled for
 * BE_TCP_LEND_NS; returns the I/O thread's timeout while some stay lent
 * (ms), or -1 (io_lock held). */
int
be_tcp_lend_expire(be_tcp_engine_t *eng)
{
    uint64_t now;
    be_tcp_conn_t *c;

    if (eng->nlent == 0) {
        return -1;
    }
    now = nxl__now_ns();
    for (c = eng->conns; c != NULL; c = c->next) {
        if (c->rx_lent && now - c->poll_last >= BE_TCP_LEND_NS) {
            be_tcp_lend(c, false);
        }
    }
    return eng->nlent > 0 ? BE_TCP_LEND_TICK_MS : -1;
}

/* be_tcp_rx_inline lets a thread polling req receive its replies itself
 * when the I/O thread is not busy (io_lock free): a spinning caller then
 * does not wait for the I/O thread to be scheduled. Polling again within
 * BE_TCP_LEND_GAP_NS lends the connection to such threads (see the top of
 * this file): the I/O thread no longer wakes for the replies they take
 * (on the 2-core test host it woke for each, 1.1 context switches per
 * 4 KiB READ, and then waited for io_lock). Never blocks. */
void
be_tcp_rx_inline(be_tcp_engine_t *eng, be_tcp_req_t *req)
{
    be_tcp_peer_t *peer;
    be_tcp_conn_t *c;
    bool kick = false;
    uint64_t now;
    unsigned i;

    if (pthread_mutex_trylock(&eng->io_lock) != 0) {
        return;
    }
    /* Still in flight under io_lock: its peer is still loaded. */
    if (atomic_load(&req->status) == NXL_IN_PROG) {
        peer = req->peer;
        now = nxl__now_ns();
        for (i = 0; i < peer->nconns; i++) {
            c = peer->conns[i];
            if (c == NULL || c->dead) {
                continue;
            }
            if (!c->rx_lent && now - c->poll_last < BE_TCP_LEND_GAP_NS) {
                kick = eng->nlent == 0; /* it may sleep without timeout */
                be_tcp_lend(c, true);
            }
            c->poll_last = now;
            be_tcp_conn_read(c, BE_TCP_INLINE_BUDGET);
        }
    }
    pthread_mutex_unlock(&eng->io_lock);
    if (kick) {
        be_tcp_kick(eng);
    }
}

/* be_tcp_own gives receiving on client connection c to a waiting thread
 * (on) or back to the I/O thread (off). io_lock held. */
static void
be_tcp_own(be_tcp_conn_t *c, bool on)
{
    pthread_mutex_lock(&c->tx_lock);
    c->rx_owned = on;
    if (!c->dead) {
        be_tcp_conn_epoll(c);
    }
    pthread_mutex_unlock(&c->tx_lock);
}

/* be_tcp_wait_spin polls req's connections (be_tcp_rx_inline) for up to
 * the engine's wait_spin_us, but no later than end (ns), while req is the
 * only request of the engine in flight: its reply is then on the critical
 * path and a poll() wake-up (5-10 us, more on a busy host) would add to its
 * latency. With others in flight the wake-up overlaps them, and the CPU a
 * poller takes is the peer's and the kernel's when they share it (depth-8
 * READ on the 2-vCPU rig: docs/performance.md), so it returns at once.
 * Returns req's status. Any thread; takes io_lock by trylock only. */
static int
be_tcp_wait_spin(be_tcp_engine_t *eng, be_tcp_req_t *req, uint64_t end)
{
    uint64_t stop, now;
    int st = atomic_load(&req->status);
    unsigned n = 0;

    if (eng->wait_spin_ns == 0 || st != NXL_IN_PROG) {
        return st;
    }
    now = nxl__now_ns();
    stop = NXL__MIN(end, now + eng->wait_spin_ns);
    while (st == NXL_IN_PROG && atomic_load(&eng->inflight) == 1) {
        /* the clock every 8 polls: a poll is a readv, about 1 us */
        if ((++n & 7) == 0 && nxl__now_ns() >= stop) {
            break;
        }
        be_tcp_rx_inline(eng, req);
        st = atomic_load(&req->status);
    }
    return st;
}

/* be_tcp_wait: see tcp.h. Each poll() sleeps at most BE_TCP_WAIT_SLICE_MS,
 * so a request that ends without traffic on these connections (canceled,
 * timed out, failed on another stream) is seen soon. */
nxl_status_t
be_tcp_wait(void *self, void *reqp, int timeout_ms)
{
    be_tcp_engine_t *eng = self;
    be_tcp_req_t *req = reqp;
    be_tcp_conn_t *own[16];
    struct pollfd pfd[16];
    bool buried = false;
    uint64_t end, now;
    be_tcp_peer_t *peer;
    be_tcp_conn_t *c;
    unsigned n = 0, i;
    int st, ms;

    if (req->plan == NULL) {
        return NXL_ERR_NOT_SUPPORTED;
    }
    end = nxl__now_ns() + (uint64_t)NXL__MAX(timeout_ms, 0) * 1000000u;
    st = be_tcp_wait_spin(eng, req, end);
    if (st != NXL_IN_PROG) {
        return (nxl_status_t)st;
    }
    pthread_mutex_lock(&eng->io_lock);
    /* Still in flight under io_lock: its peer is still loaded. */
    if (atomic_load(&req->status) == NXL_IN_PROG) {
        peer = req->peer;
        for (i = 0; i < peer->nconns && n < NXL__ARRAY_SIZE(own); i++) {
            c = peer->conns[i];
            if (c == NULL || c->dead || c->rx_owned) {
                continue;
            }
            be_tcp_own(c, true);
            own[n] = c;
            pfd[n].fd = c->fd;
            pfd[n].events = POLLIN;
            n++;
        }
    }
    st = atomic_load(&req->status);
    if (n == 0) {
        pthread_mutex_unlock(&eng->io_lock);
        return st == NXL_IN_PROG ? NXL_ERR_NOT_SUPPORTED : (nxl_status_t)st;
    }
    while (st == NXL_IN_PROG) {
        now = nxl__now_ns();
        if (now >= end) {
            break;
        }
        ms = (int)NXL__MIN((end - now + 999999u) / 1000000u,
                           (uint64_t)BE_TCP_WAIT_SLICE_MS);
        pthread_mutex_unlock(&eng->io_lock);
        if (poll(pfd, n, ms) < 0 && errno != EINTR) {
            ms = -1; /* cannot happen with valid arguments; give up */
        }
        pthread_mutex_lock(&eng->io_lock);
        for (i = 0; i < n; i++) {
            c = own[i];
            if (!c->dead && pfd[i].revents != 0) {
                be_tcp_conn_read(c, BE_TCP_READ_BUDGET);
            }
            if (c->dead) {
                pfd[i].fd = -1; /* closed: the number may be reused */
            }
        }
        st = atomic_load(&req->status);
        if (ms < 0) {
            break;
        }
    }
    for (i = 0; i < n; i++) {
        be_tcp_own(own[i], false);
        buried |= own[i]->in_grave;
    }
    pthread_mutex_unlock(&eng->io_lock);
    if (buried) {
        be_tcp_kick(eng); /* the I/O thread frees what it kept for us */
    }
    return (nxl_status_t)st; /* the core's check sets an error's text */
}
