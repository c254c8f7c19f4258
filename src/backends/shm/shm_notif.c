/*
 * shm_notif.c - the notification channel and the engine's event fd.
 *
 * Notifications travel on local notification streams (util/lstream.h):
 * every engine listens on "\0nxl-shm-<pid>-<token>", named in its conn
 * info; a sender opens one stream per peer at peer_load.
 *
 * The engine's event fd is an epoll set over the streams (listener,
 * accepted and outgoing ones, added by util/lstream.c) and an eventfd that
 * workers write when they finish a request.
 */
#include "shm.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* be_shm_deliver hands a received notification to the agent. */
static void
be_shm_deliver(void *ctx, const char *from, const void *msg, size_t len)
{
    be_shm_engine_t *eng = ctx;

    eng->host->notif_recv(eng->host->ctx, from, msg, len);
}

/* be_shm_notif_init opens the completion eventfd, the epoll set and the
 * listener. Leaves fds at -1 (for fini) on failure. */
nxl_status_t
be_shm_notif_init(be_shm_engine_t *eng)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = BE_SHM_EV_DONE};

    eng->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (eng->done_fd < 0) {
        return nxl__fail_errno(errno, "shm: eventfd");
    }
    eng->ep_fd = epoll_create1(EPOLL_CLOEXEC);
    if (eng->ep_fd < 0) {
        return nxl__fail_errno(errno, "shm: epoll_create1");
    }
    eng->sock_len = nxl__ls_sock_name(eng->sock_name, sizeof(eng->sock_name),
                                      "shm", eng->pid, eng->token);
    if (epoll_ctl(eng->ep_fd, EPOLL_CTL_ADD, eng->done_fd, &ev) < 0) {
        return nxl__fail_errno(errno, "shm: epoll_ctl(eventfd)");
    }
    return nxl__ls_create("shm", eng->sock_name, eng->sock_len,
                          BE_SHM_NOTIF_MAX, eng->ep_fd, 0, be_shm_deliver, eng,
                          &eng->ls);
}

/* be_shm_notif_fini closes the streams' set and the engine's fds. */
void
be_shm_notif_fini(be_shm_engine_t *eng)
{
    nxl__ls_destroy(eng->ls);
    eng->ls = NULL;
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

/* be_shm_tx_failed: the peer's stream failed for good; a closed stream
 * means its engine is gone. */
static void
be_shm_tx_failed(void *arg, nxl_status_t st)
{
    if (st == NXL_ERR_REMOTE_DISCONNECT) {
        be_shm_peer_mark_dead(arg, "notification stream closed");
    }
}

/* be_shm_tx_open: see shm.h. */
nxl_status_t
be_shm_tx_open(be_shm_peer_t *peer)
{
    be_shm_engine_t *eng = peer->eng;

    return nxl__ls_tx_open(eng->ls, peer->name, peer->sock_name, peer->sock_len,
                           eng->host->agent_name, be_shm_tx_failed, peer,
                           &peer->tx);
}

/* be_shm_progress drains the epoll set once, without blocking. */
unsigned
be_shm_progress(void *self)
{
    be_shm_engine_t *eng = self;
    struct epoll_event evs[32];
    unsigned handled = 0, delivered = 0;
    uint64_t cnt;
    ssize_t r;
    int n, i;

    n = epoll_wait(eng->ep_fd, evs, (int)NXL__ARRAY_SIZE(evs), 0);
    for (i = 0; i < n; i++) {
        if (evs[i].data.u64 == BE_SHM_EV_DONE) {
            r = read(eng->done_fd, &cnt, sizeof(cnt));
            if (r == (ssize_t)sizeof(cnt)) {
                handled += (unsigned)NXL__MIN(cnt, 1u << 20);
            }
        } else if (nxl__ls_owns(evs[i].data.u64)) {
            handled += nxl__ls_event(eng->ls, evs[i].data.u64, evs[i].events,
                                     &delivered);
        }
    }
    if (delivered > 0 && eng->host->wake != NULL) {
        eng->host->wake(eng->host->ctx);
    }
    return handled + delivered;
}
