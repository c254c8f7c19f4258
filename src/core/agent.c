/* agent.c - agent lifecycle, locking, peers, progress and waiting. */
#include "core.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

NXL_API void
nxl_agent_config_init(nxl_agent_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->listen_port = 8888;
    cfg->sync_mode = NXL_SYNC_NONE;
    cfg->progress_delay_us = 100000;
}

NXL_API void
nxl_opts_init(nxl_opts_t *opts)
{
    if (opts == NULL) {
        return;
    }
    memset(opts, 0, sizeof(*opts));
    opts->size = sizeof(*opts);
    opts->port = 8888;
}

nxl_status_t
nxl__opts_in(const nxl_opts_t **opts_p, nxl_opts_t *copy, const char *where)
{
    char what[64];
    nxl_status_t status;

    if (*opts_p == NULL) {
        return NXL_OK;
    }
    nxl_opts_init(copy);
    snprintf(what, sizeof(what), "%s: opts", where);
    status = nxl__abi_in(copy, sizeof(*copy), *opts_p, NXL_OPTS_V1_SIZE, what);
    if (status != NXL_OK) {
        return status;
    }
    *opts_p = copy;
    return nxl__opts_check(copy, where);
}

nxl_status_t
nxl__opts_check(const nxl_opts_t *opts, const char *where)
{
    if (opts == NULL) {
        return NXL_OK;
    }
    if (opts->num_backends > 0 && opts->backends == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "%s: opts->num_backends is %zu but opts->backends "
                         "is NULL", where, opts->num_backends);
    }
    if (opts->num_backends > SIZE_MAX / sizeof(*opts->backends)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "%s: opts->num_backends %zu cannot be in memory",
                         where, opts->num_backends);
    }
    if (opts->has_notif && opts->notif_len > 0 && opts->notif == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "%s: opts->notif_len is %zu but opts->notif is "
                         "NULL", where, opts->notif_len);
    }
    return NXL_OK;
}

nxl_status_t
nxl__dlist_check(const nxl_dlist_t *dlist, const char *where)
{
    if (dlist == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "%s: the descriptor list is NULL", where);
    }
    if ((unsigned)dlist->mem >= NXL_MEM_KINDS) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "%s: bad memory kind %d",
                         where, (int)dlist->mem);
    }
    if (dlist->count > 0 && dlist->descs == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "%s: the list has %zu descriptors but descs is "
                         "NULL", where, dlist->count);
    }
    if (dlist->count > SIZE_MAX / (2 * sizeof(nxl_desc_t))) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "%s: %zu descriptors cannot be in memory", where,
                         dlist->count);
    }
    return NXL_OK;
}

bool
nxl__be_allowed(const nxl_backend_t *be, const nxl_opts_t *opts)
{
    size_t i;

    if (opts == NULL || opts->num_backends == 0) {
        return true;
    }
    for (i = 0; i < opts->num_backends; i++) {
        if (opts->backends[i] == be) {
            return true;
        }
    }
    return false;
}

/* --- locking ------------------------------------------------------------ */

void
nxl__ctl_lock(nxl_agent_t *a)
{
    if (a->locking) {
        pthread_rwlock_wrlock(&a->lock);
    }
}

void
nxl__ctl_unlock(nxl_agent_t *a)
{
    if (a->locking) {
        pthread_rwlock_unlock(&a->lock);
    }
}

void
nxl__data_lock(nxl_agent_t *a)
{
    if (!a->locking) {
        return;
    }
    if (a->cfg.sync_mode == NXL_SYNC_STRICT) {
        pthread_rwlock_wrlock(&a->lock);
    } else {
        pthread_rwlock_rdlock(&a->lock);
    }
}

void
nxl__data_unlock(nxl_agent_t *a)
{
    if (a->locking) {
        pthread_rwlock_unlock(&a->lock);
    }
}

/* --- peers -------------------------------------------------------------- */

nxl__peer_t *
nxl__peer_find(nxl_agent_t *a, const char *name)
{
    nxl__peer_t *p;

    for (p = a->peers; p != NULL; p = p->next) {
        if (strcmp(p->name, name) == 0) {
            return p;
        }
    }
    return NULL;
}

void
nxl__peer_drop(nxl_agent_t *a, nxl__peer_t *p)
{
    nxl__peer_t **pp;
    nxl_backend_t *be;
    nxl__rregion_t *r;
    unsigned b, k;

    for (pp = &a->peers; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    /* Stop the peer's transfers first, then drop its regions. */
    for (b = 0; b < a->nbackends; b++) {
        be = a->backends[b];
        if (p->ctx[b] != NULL) {
            nxl__be_lock(be);
            be->ops.peer_unload(be->engine, p->ctx[b]);
            nxl__be_unlock(be);
        }
    }
    for (k = 0; k < NXL_MEM_KINDS; k++) {
        for (r = nxl__index_first(&p->regions[k]); r != NULL;
             r = nxl__index_next(&p->regions[k], r)) {
            for (b = 0; b < a->nbackends; b++) {
                if (r->rmd[b] != NULL) {
                    be = a->backends[b];
                    nxl__be_lock(be);
                    be->ops.md_unload(be->engine, r->rmd[b]);
                    nxl__be_unlock(be);
                }
            }
        }
        nxl__index_fini(&p->regions[k]);
    }
    for (b = 0; b < NXL__MAX_BACKENDS; b++) {
        free(p->conn[b].data);
    }
    free(p);
}

void
nxl__peer_mark_dead(nxl_agent_t *a, const char *name)
{
    nxl__peer_t *p = nxl__peer_find(a, name);

    if (p != NULL) {
        atomic_store(&p->dead, true);
    }
}

/* --- progress ----------------------------------------------------------- */

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

NXL_API const char *
nxl_agent_name(const nxl_agent_t *agent)
{
    return agent ? agent->name : NULL;
}

NXL_API uint16_t
nxl_agent_listen_port(const nxl_agent_t *agent)
{
    return (agent && agent->sc) ? nxl__sc_port(agent->sc) : 0;
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

/* agent_secret copies the side-channel secret (cfg, else NXL_SC_SECRET)
 * and the per-client request rate (NXL_SC_RATE, requests a second). */
static nxl_status_t
agent_secret(nxl_agent_t *a, const nxl_agent_config_t *cfg)
{
    const char *s = (cfg != NULL && cfg->sc_secret != NULL)
                        ? cfg->sc_secret
                        : getenv("NXL_SC_SECRET");
    const char *rate = getenv("NXL_SC_RATE");
    char *end = NULL;
    unsigned long r;

    memset(&a->sc_auth, 0, sizeof(a->sc_auth));
    if (rate != NULL && rate[0] != '\0') {
        r = strtoul(rate, &end, 10);
        if (*end != '\0' || r == 0 || r > 1000000000ul) {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "agent_create: NXL_SC_RATE=\"%s\": want a "
                             "positive number of requests a second", rate);
        }
        a->sc_auth.rate = (unsigned)r;
    }
    if (s == NULL || s[0] == '\0') {
        return NXL_OK;
    }
    a->sc_auth.len = strlen(s);
    a->sc_auth.key = strdup(s);
    if (a->sc_auth.key == NULL) {
        a->sc_auth.len = 0;
        return nxl__fail(NXL_ERR_NOMEM, "agent_create: out of memory");
    }
    return NXL_OK;
}

/* agent_secret_free wipes and frees the secret. */
static void
agent_secret_free(nxl_agent_t *a)
{
    if (a->sc_auth.key != NULL) {
        memset((void *)a->sc_auth.key, 0, a->sc_auth.len);
        free((void *)a->sc_auth.key);
    }
    a->sc_auth.key = NULL;
    a->sc_auth.len = 0;
}

NXL_API nxl_status_t
nxl_agent_create(const char *name, const nxl_agent_config_t *cfg,
                 nxl_agent_t **agent_p)
{
    nxl_agent_config_t c;
    struct epoll_event ev;
    nxl_agent_t *a;
    nxl_status_t status;
    unsigned k;
    int rc;

    if (agent_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "agent_create: agent_p (the output) is NULL");
    }
    if (name == NULL || name[0] == '\0') {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "agent_create: the name must be non-empty");
    }
    if (strlen(name) > NXL__MD_NAME_MAX) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "agent_create: name longer than %u bytes",
                         NXL__MD_NAME_MAX);
    }
    /* The caller's layout may be older than this build's (nxl.h). */
    nxl_agent_config_init(&c);
    if (cfg != NULL &&
        (status = nxl__abi_in(&c, sizeof(c), cfg, NXL_AGENT_CONFIG_V1_SIZE,
                              "agent_create: cfg")) != NXL_OK) {
        return status;
    }
    cfg = &c;
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "agent_create: out of memory");
    }
    strcpy(a->name, name);
    a->cfg = c;
    if ((unsigned)a->cfg.sync_mode > NXL_SYNC_RW) {
        status = nxl__fail(NXL_ERR_INVALID_PARAM, "agent_create: bad sync mode");
        goto err_free;
    }
    a->cfg.listen_addr = NULL; /* not kept: the caller's pointer */
    a->cfg.sc_secret = NULL;
    status = agent_secret(a, cfg);
    if (status != NXL_OK) {
        goto err_free;
    }
    a->locking = a->cfg.sync_mode != NXL_SYNC_NONE || a->cfg.listen_thread ||
                 a->cfg.progress_thread;
    pthread_rwlock_init(&a->lock, NULL);
    pthread_mutex_init(&a->xfer_lock, NULL);
    pthread_mutex_init(&a->notif_lock, NULL);
    pthread_mutex_init(&a->store_lock, NULL);
    for (k = 0; k < NXL_MEM_KINDS; k++) {
        nxl__index_init(&a->regions[k], sizeof(nxl__region_t));
    }
    atomic_init(&a->generation, 0);
    atomic_init(&a->progress_stop, false);
    a->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (a->wake_fd < 0) {
        status = nxl__fail_errno(errno, "agent_create: eventfd");
        goto err_locks;
    }
    a->ep_fd = epoll_create1(EPOLL_CLOEXEC);
    if (a->ep_fd < 0) {
        status = nxl__fail_errno(errno, "agent_create: epoll_create1");
        goto err_wake;
    }
    ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(a->ep_fd, EPOLL_CTL_ADD, a->wake_fd, &ev) < 0) {
        status = nxl__fail_errno(errno, "agent_create: epoll_ctl");
        goto err_ep;
    }
    if (a->cfg.listen_thread) {
        status = nxl__sc_start_auth(cfg ? cfg->listen_addr : NULL,
                                    a->cfg.listen_port, &a->sc_auth,
                                    nxl__sc_handler, a, &a->sc);
        if (status != NXL_OK) {
            goto err_ep;
        }
    }
    if (a->cfg.progress_thread) {
        rc = pthread_create(&a->progress_tid, NULL, progress_main, a);
        if (rc != 0) {
            status = nxl__fail_errno(rc, "agent_create: progress thread");
            goto err_sc;
        }
        a->progress_running = true;
    }
    *agent_p = a;
    return NXL_OK;

err_sc:
    nxl__sc_stop(a->sc);
err_ep:
    close(a->ep_fd);
err_wake:
    close(a->wake_fd);
err_locks:
    pthread_rwlock_destroy(&a->lock);
    pthread_mutex_destroy(&a->xfer_lock);
    pthread_mutex_destroy(&a->notif_lock);
    pthread_mutex_destroy(&a->store_lock);
err_free:
    agent_secret_free(a);
    free(a);
    return status;
}

NXL_API void
nxl_agent_destroy(nxl_agent_t *a)
{
    uint64_t one = 1;
    unsigned b;

    if (a == NULL) {
        return;
    }
    if (a->progress_running) {
        atomic_store(&a->progress_stop, true);
        if (write(a->wake_fd, &one, sizeof(one)) < 0) {
            /* already readable */
        }
        pthread_join(a->progress_tid, NULL);
    }
    /* Before the peers go: the store's watch thread invalidates peers. */
    nxl__md_store_fini(a);
    nxl__sc_stop(a->sc);
    a->sc = NULL;
    nxl__xfers_release_all(a);
    while (a->peers != NULL) {
        nxl__peer_drop(a, a->peers);
    }
    nxl__regions_fini(a);
    for (b = a->nbackends; b-- > 0;) {
        nxl__backend_destroy(a->backends[b]);
    }
    nxl__notifs_fini(a);
    close(a->ep_fd);
    close(a->wake_fd);
    pthread_rwlock_destroy(&a->lock);
    pthread_mutex_destroy(&a->xfer_lock);
    pthread_mutex_destroy(&a->notif_lock);
    pthread_mutex_destroy(&a->store_lock);
    agent_secret_free(a);
    free(a);
}
