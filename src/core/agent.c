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
                             "positive number of requests a second",
                             rate);
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
        status =
            nxl__fail(NXL_ERR_INVALID_PARAM, "agent_create: bad sync mode");
        goto err_free;
    }
    a->cfg.listen_addr = NULL; /* not kept: the caller's pointer */
    a->cfg.sc_secret = NULL;
    status = agent_secret(a, cfg);
    if (status == NXL_OK) {
        status = nxl__pools_create(0, &a->pools);
    }
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
        nxl__index_init(&a->regions[k], sizeof(nxl__region_t), a->pools);
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
        status = nxl__progress_start(a);
        if (status != NXL_OK) {
            goto err_sc;
        }
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
    nxl__pools_destroy(a->pools);
    agent_secret_free(a);
    free(a);
    return status;
}

NXL_API void
nxl_agent_destroy(nxl_agent_t *a)
{
    unsigned b;

    if (a == NULL) {
        return;
    }
    nxl__progress_stop(a);
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
    /* Every index is gone: their records and blocks with them. */
    nxl__pools_destroy(a->pools);
    agent_secret_free(a);
    free(a);
}
