/* progress.c - driving the backends: one pass over every engine, the
 * agent's fd for event loops, and the optional progress thread. */
#include "core.h"

#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

unsigned
nxl__progress_all(nxl_agent_t *a)
{
    unsigned n = 0, b;
    uint64_t v;
    nxl_backend_t *be;

    /* Drain the wake counter; each backend re-arms its own fd. */
    if (read(a->wake_fd, &v, sizeof(v)) > 0) {
        n++;
    }
    for (b = 0; b < a->nbackends; b++) {
        be = a->backends[b];
        nxl__be_lock(be);
        n += be->ops.progress(be->engine);
        nxl__be_unlock(be);
    }
    return n;
}

void
nxl__wait_events(nxl_agent_t *a, int timeout_ms)
{
    struct pollfd pfd = {.fd = a->ep_fd, .events = POLLIN};

    (void)poll(&pfd, 1, timeout_ms);
}

NXL_API unsigned
nxl_agent_progress(nxl_agent_t *agent)
{
    unsigned n;

    if (agent == NULL) {
        return 0;
    }
    nxl__data_lock(agent);
    n = nxl__progress_all(agent);
    nxl__data_unlock(agent);
    return n;
}

NXL_API int
nxl_agent_fd(nxl_agent_t *agent)
{
    return agent ? agent->ep_fd : -1;
}

/* progress_main is the optional progress thread: it sleeps on the agent's
 * epoll fd (backend event fds + wake eventfd) and drives progress when one
 * fires, or at most every progress_delay_us for backends without an fd. */
static void *
progress_main(void *arg)
{
    nxl_agent_t *a = arg;
    int delay_ms = (int)NXL__MAX(a->cfg.progress_delay_us / 1000u, 1u);
    struct epoll_event ev[8];

    while (!atomic_load(&a->progress_stop)) {
        (void)epoll_wait(a->ep_fd, ev, 8, delay_ms);
        if (atomic_load(&a->progress_stop)) {
            break;
        }
        nxl__data_lock(a);
        nxl__progress_all(a);
        nxl__data_unlock(a);
    }
    return NULL;
}

nxl_status_t
nxl__progress_start(nxl_agent_t *a)
{
    int rc = pthread_create(&a->progress_tid, NULL, progress_main, a);

    if (rc != 0) {
        return nxl__fail_errno(rc, "agent_create: progress thread");
    }
    a->progress_running = true;
    return NXL_OK;
}

void
nxl__progress_stop(nxl_agent_t *a)
{
    uint64_t one = 1;

    if (!a->progress_running) {
        return;
    }
    atomic_store(&a->progress_stop, true);
    if (write(a->wake_fd, &one, sizeof(one)) < 0) {
        /* already readable */
    }
    pthread_join(a->progress_tid, NULL);
    a->progress_running = false;
}
