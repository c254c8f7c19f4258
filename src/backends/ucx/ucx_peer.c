/*
 * ucx_peer.c - peers and their endpoints (parked ones too), and liveness
 * (pidfds for same-host peers, UCX error callbacks for the rest). The
 * conn info is in ucx_conninfo.c, a peer's regions in ucx_rkey.c.
 */
#include "ucx.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* be_ucx_ep_err is UCX's error callback of PEER-mode endpoints (worker
 * lock held, inside ucp_worker_progress): flag the peer; it is failed
 * once the lock is dropped. */
static void
be_ucx_ep_err(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    be_ucx_pep_t *pep = arg;
    be_ucx_engine_t *eng = pep->eng;
    bool cb = be_ucx_cb_enter();

    (void)ep;
    pep->failed = true;
    if (pep->peer != NULL) {
        eng->host->log(NXL_LOG_INFO, "ucx: endpoint to '%s' failed: %s",
                       pep->peer->name, ucs_status_string(status));
        be_ucx_flag_peer(pep->peer, BE_UCX_WHY_EP);
    } else {
        /* Parked (or closing): the liveness pass closes a parked one. */
        atomic_store(&eng->park_check, true);
        atomic_store(&eng->work_pending, true);
        be_ucx_kick(eng);
    }
    be_ucx_cb_leave(cb);
}

/* be_ucx_flag_peer: remember why p must fail and wake the liveness pass
 * (safe inside UCX callbacks: no lock taken). */
void
be_ucx_flag_peer(be_ucx_peer_t *p, int why)
{
    int none = 0;

    (void)atomic_compare_exchange_strong(&p->fail_why, &none, why);
    atomic_store(&p->fail_pending, true);
    atomic_store(&p->eng->work_pending, true);
    be_ucx_kick(p->eng);
}

/* be_ucx_ep_create connects pep (on its worker, lock held or not yet
 * shared) to the peer's worker address. */
static nxl_status_t
be_ucx_ep_create(be_ucx_peer_t *p, be_ucx_pep_t *pep)
{
    be_ucx_engine_t *eng = p->eng;
    ucp_ep_params_t ep;
    ucs_status_t ust;

    memset(&ep, 0, sizeof(ep));
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                    UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                    UCP_EP_PARAM_FIELD_NAME;
    ep.address = (const ucp_address_t *)p->addr;
    ep.name = p->name;
    if (p->err_peer) {
        ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
        ep.field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLER;
        ep.err_handler.cb = be_ucx_ep_err;
        ep.err_handler.arg = pep;
    } else {
        ep.err_mode = UCP_ERR_HANDLING_MODE_NONE;
    }
    ust = ucp_ep_create(eng->workers[pep->widx].h, &ep, &pep->ep);
    if (ust != UCS_OK) {
        pep->ep = NULL;
        return nxl__fail(be_ucx_status(ust) == NXL_ERR_REMOTE_DISCONNECT
                             ? NXL_ERR_REMOTE_DISCONNECT
                             : NXL_ERR_BACKEND,
                         "ucx: ucp_ep_create to '%s' (worker %u): %s", p->name,
                         pep->widx, ucs_status_string(ust));
    }
    pep->failed = false;
    return NXL_OK;
}

/* be_ucx_log_lanes logs which UCX lanes an endpoint uses (INFO). */
static void
be_ucx_log_lanes(be_ucx_peer_t *p, ucp_ep_h ep)
{
    char *buf = NULL, *line, *save = NULL;
    size_t len = 0;
    FILE *f;

    if (!nxl__log_enabled(NXL_LOG_INFO)) {
        return;
    }
    f = open_memstream(&buf, &len);
    if (f == NULL) {
        return;
    }
    ucp_ep_print_info(ep, f);
    fclose(f);
    for (line = strtok_r(buf, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (strstr(line, "lane[") != NULL) {
            p->eng->host->log(NXL_LOG_INFO, "ucx: '%s' %s", p->name,
                              line + strspn(line, "# "));
        }
    }
    free(buf);
}

/* be_ucx_peer_free frees a peer nobody references. */
static void
be_ucx_peer_free(be_ucx_peer_t *p)
{
    be_ucx_map_t *m;

    while (p->maps != NULL) { /* none left unless md_unload was skipped */
        m = p->maps;
        p->maps = m->next;
        munmap(m->base, m->size);
        free(m);
    }
    nxl__regtab_view_close(&p->rt);
    if (p->pidfd >= 0) {
        close(p->pidfd);
    }
    nxl__ls_tx_free(p->tx);
    free(p->eps);
    free(p->addr);
    free(p->info);
    free(p);
}

/* be_ucx_peer_put: drop a reference; the last one frees the peer. */
void
be_ucx_peer_put(be_ucx_peer_t *p)
{
    if (atomic_fetch_sub(&p->refs, 1) == 1) {
        be_ucx_peer_free(p);
    }
}

/* be_ucx_tx_open opens the notification stream to p, a same-host peer in
 * another process (its listener's name follows from the pid and token in
 * c). Nobody listening there (an NXL without streams, or another network
 * namespace: abstract sockets belong to one) leaves p->tx NULL, and its
 * notifications go as active messages. */
static void
be_ucx_tx_open(be_ucx_engine_t *eng, be_ucx_peer_t *p, const be_ucx_conn_t *c)
{
    char sock[NXL__LS_SOCK_MAX + 1];
    size_t n = nxl__ls_sock_name(sock, sizeof(sock), "ucx", (pid_t)c->id.pid,
                                 c->id.token);

    if (nxl__ls_tx_open(eng->ls, p->name, sock, n, eng->host->agent_name, NULL,
                        NULL, &p->tx) != NXL_OK) {
        eng->host->log(NXL_LOG_INFO,
                       "ucx: '%s' (pid %u): no notification stream (%s); "
                       "notifications go as UCX active messages",
                       p->name, c->id.pid, nxl_last_error());
        p->tx = NULL;
    }
}

/* be_ucx_same_host decides whether conn info c describes a process that
 * shares this host's kernel and pid namespace. */
static bool
be_ucx_same_host(const be_ucx_engine_t *eng, const be_ucx_conn_t *c)
{
    const be_ucx_ident_t *me = &eng->ident;

    return eng->detect_same_host && me->boot_id[0] != '\0' &&
           strcmp(me->boot_id, c->id.boot_id) == 0 &&
           me->pidns_dev == c->id.pidns_dev &&
           me->pidns_ino == c->id.pidns_ino && me->pidns_ino != 0;
}

/* be_ucx_netns_check warns when a process on this host (same boot id
 * and pid namespace, whatever same_host says) lives in another network
 * namespace while UCX may use its shared-memory transports: UCX picks
 * sysv/posix for it (its reachability test knows nothing of network
 * namespaces), but their wake-up signal is an abstract unix socket, which
 * belongs to a network namespace, so it is dropped (ECONNREFUSED) and a
 * sleeping receiver is never woken: notifications and UCX-path transfers
 * stall. Measured with tests/netns (conformance/UCX@netns with default
 * params): notifications timed out after 20 s. */
static void
be_ucx_netns_check(be_ucx_engine_t *eng, const be_ucx_conn_t *c,
                   const char *name)
{
    const be_ucx_ident_t *me = &eng->ident;
    char path[64];
    struct stat sb;

    if (!eng->tls_mm || me->boot_id[0] == '\0' || me->netns_ino == 0 ||
        strcmp(me->boot_id, c->id.boot_id) != 0 ||
        me->pidns_dev != c->id.pidns_dev || me->pidns_ino != c->id.pidns_ino ||
        c->id.pid == me->pid) {
        return;
    }
    snprintf(path, sizeof(path), "/proc/%u/ns/net", c->id.pid);
    if (stat(path, &sb) != 0 || (uint64_t)sb.st_ino == me->netns_ino) {
        return;
    }
    eng->host->log(NXL_LOG_WARN,
                   "ucx: agent '%s' (pid %u) runs on this host in another "
                   "network namespace: UCX's shared-memory wake-ups do not "
                   "cross network namespaces, so notifications to it may "
                   "stall; set engine_config TLS to a network transport "
                   "(e.g. 'TLS=tcp;NET_DEVICES=<its interface>')",
                   name, c->id.pid);
}

/* be_ucx_watch sets up liveness and the copy path for a same-host peer
 * in another process: a pidfd (checked against the start time so a
 * reused pid is not mistaken for the peer) and a CMA probe. */
static nxl_status_t
be_ucx_watch(be_ucx_engine_t *eng, be_ucx_peer_t *p, const be_ucx_conn_t *c)
{
    struct iovec l, r;
    uint8_t byte = 0;
    uint64_t st;
    ssize_t n;

    p->pidfd = nxl__pidfd_open(p->pid);
    if (p->pidfd < 0 && errno == ESRCH) {
        return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                         "ucx: agent '%s' (pid %d on this host) is not "
                         "running",
                         p->name, (int)p->pid);
    }
    if (p->pidfd < 0) {
        eng->host->log(NXL_LOG_INFO,
                       "ucx: no pidfd for '%s' (%s): polling its pid", p->name,
                       strerror(errno));
    }
    if (be_ucx_starttime(p->pid, &st) != 0 || st != c->id.starttime) {
        return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                         "ucx: agent '%s' (pid %d on this host) is gone: the "
                         "pid now belongs to another process",
                         p->name, (int)p->pid);
    }
    if (!eng->local_copy) {
        return NXL_OK;
    }
    l = (struct iovec){.iov_base = &byte, .iov_len = 1};
    r = (struct iovec){.iov_base = (void *)(uintptr_t)c->id.probe_addr,
                       .iov_len = 1};
    n = process_vm_readv(p->pid, &l, 1, &r, 1, 0);
    if (n == 1 && byte == BE_UCX_PROBE_BYTE) {
        p->use_copy = true;
    } else if (n < 0 && errno == ESRCH) {
        return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                         "ucx: agent '%s' (pid %d) exited", p->name,
                         (int)p->pid);
    } else {
        eng->host->log(NXL_LOG_INFO,
                       "ucx: cross-memory attach to '%s' (pid %d) is not "
                       "permitted (%s): its DRAM goes through UCX",
                       p->name, (int)p->pid,
                       n < 0 ? strerror(errno) : "probe mismatch");
    }
    return NXL_OK;
}

static void be_ucx_pep_close(be_ucx_engine_t *eng, be_ucx_pep_t *pep,
                             bool force, uint64_t wait_ns);

/* be_ucx_park_free frees a parked entry whose endpoints are gone. */
static void
be_ucx_park_free(be_ucx_park_t *park)
{
    free(park->eps);
    free(park->info);
    free(park);
}

/* be_ucx_park_close closes park's endpoints (unlinked; eng->lock may be
 * held, no worker lock): by force where UCX failed one (PEER mode), else
 * gracefully (wait_ns, then in the background), and frees park. */
static void
be_ucx_park_close(be_ucx_engine_t *eng, be_ucx_park_t *park, uint64_t wait_ns)
{
    unsigned i;

    for (i = 0; i < eng->nworkers; i++) {
        be_ucx_pep_t *pep = park->eps[i];

        if (pep != NULL) {
            park->eps[i] = NULL;
            pthread_mutex_lock(&eng->workers[i].lock);
            be_ucx_pep_close(eng, pep, pep->failed, pep->failed ? 0 : wait_ns);
            pthread_mutex_unlock(&eng->workers[i].lock);
        }
    }
    be_ucx_park_free(park);
}

/* be_ucx_park_take unlinks and returns the parked endpoints of name, or
 * NULL (eng->lock held). */
static be_ucx_park_t *
be_ucx_park_take(be_ucx_engine_t *eng, const char *name)
{
    be_ucx_park_t **pp, *park;

    for (pp = &eng->parked; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, name) == 0) {
            park = *pp;
            *pp = park->next;
            park->next = NULL;
            return park;
        }
    }
    return NULL;
}

/* be_ucx_park_close_all: see ucx.h. */
void
be_ucx_park_close_all(be_ucx_engine_t *eng)
{
    be_ucx_park_t *park;

    pthread_mutex_lock(&eng->lock);
    while ((park = eng->parked) != NULL) {
        eng->parked = park->next;
        be_ucx_park_close(eng, park, BE_UCX_CLOSE_WAIT_NS);
    }
    pthread_mutex_unlock(&eng->lock);
}

/* be_ucx_park_sweep closes the parked endpoints that UCX failed, and,
 * about once per BE_UCX_PARK_POLL_NS, those of same-host peers whose
 * process exited (eng->lock held). Returns entries closed. */
static unsigned
be_ucx_park_sweep(be_ucx_engine_t *eng)
{
    be_ucx_park_t **pp, *park;
    bool failed, poll_pids = false;
    unsigned n = 0, i;
    uint64_t now;

    if (eng->parked == NULL) {
        (void)atomic_exchange(&eng->park_check, false);
        return 0;
    }
    now = nxl__now_ns();
    if (now >= eng->next_park_poll_ns) {
        eng->next_park_poll_ns = now + BE_UCX_PARK_POLL_NS;
        poll_pids = true;
    }
    if (!atomic_exchange(&eng->park_check, false) && !poll_pids) {
        return 0;
    }
    for (pp = &eng->parked; *pp != NULL;) {
        park = *pp;
        failed = park->same_host && poll_pids &&
                 !be_ucx_pid_alive(park->pid, park->starttime);
        for (i = 0; !failed && i < eng->nworkers; i++) {
            pthread_mutex_lock(&eng->workers[i].lock);
            failed = park->eps[i] != NULL && park->eps[i]->failed;
            pthread_mutex_unlock(&eng->workers[i].lock);
        }
        if (!failed) {
            pp = &park->next;
            continue;
        }
        *pp = park->next;
        eng->host->log(NXL_LOG_INFO,
                       "ucx: closing the parked endpoints of "
                       "'%s' (it is gone)",
                       park->name);
        be_ucx_park_close(eng, park, 0);
        n++;
    }
    return n;
}

/* be_ucx_eps_open gives the peer an endpoint on every worker: the parked
 * one of an earlier load of the same conn info where park has one that
 * UCX did not fail, else a new one. Consumes park (may be NULL). */
static nxl_status_t
be_ucx_eps_open(be_ucx_engine_t *eng, be_ucx_peer_t *p, be_ucx_park_t *park)
{
    nxl_status_t st = NXL_OK;
    unsigned i, kept = 0;

    p->eps = calloc(eng->nworkers, sizeof(*p->eps));
    if (p->eps == NULL) {
        if (park != NULL) {
            be_ucx_park_close(eng, park, 0);
        }
        return nxl__fail(NXL_ERR_NOMEM, "ucx: out of memory");
    }
    for (i = 0; i < eng->nworkers; i++) {
        be_ucx_pep_t *old = park != NULL ? park->eps[i] : NULL;
        be_ucx_pep_t *pep;

        if (park != NULL) {
            park->eps[i] = NULL;
        }
        if (old != NULL) {
            pthread_mutex_lock(&eng->workers[i].lock);
            if (!old->failed && old->ep != NULL) {
                /* The same endpoint again: the peer's side stays paired
                 * with it. */
                old->peer = p;
                p->eps[i] = old;
                kept++;
                pthread_mutex_unlock(&eng->workers[i].lock);
                continue;
            }
            be_ucx_pep_close(eng, old, old->failed, 0); /* failed: PEER */
            pthread_mutex_unlock(&eng->workers[i].lock);
        }
        if (st != NXL_OK) {
            continue; /* still take the rest out of park */
        }
        pep = calloc(1, sizeof(*pep));
        if (pep == NULL) {
            st = nxl__fail(NXL_ERR_NOMEM, "ucx: out of memory");
            continue;
        }
        pep->eng = eng;
        pep->peer = p;
        pep->widx = i;
        p->eps[i] = pep;
        pthread_mutex_lock(&eng->workers[i].lock);
        st = be_ucx_ep_create(p, pep);
        if (st == NXL_OK && i == 0) {
            be_ucx_log_lanes(p, pep->ep);
        }
        pthread_mutex_unlock(&eng->workers[i].lock);
    }
    if (park != NULL) {
        nxl__debug("ucx: '%s' reloaded with the same conn info: %u of %u "
                   "endpoint(s) kept",
                   p->name, kept, eng->nworkers);
        be_ucx_park_free(park);
    }
    return st;
}

/* be_ucx_pep_close closes pep's endpoint (worker lock held). force: UCX
 * cancels what is outstanding (PEER mode only). Otherwise a graceful
 * close runs up to wait_ns, then goes on in the background. pep is freed
 * or parked on eng->closing. */
static void
be_ucx_pep_close(be_ucx_engine_t *eng, be_ucx_pep_t *pep, bool force,
                 uint64_t wait_ns)
{
    ucp_request_param_t cp;
    uint64_t deadline;
    void *req;

    pep->peer = NULL;
    if (pep->ep == NULL) {
        free(pep);
        return;
    }
    memset(&cp, 0, sizeof(cp));
    cp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    cp.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
    req = ucp_ep_close_nbx(pep->ep, &cp);
    pep->ep = NULL;
    if (req == NULL || UCS_PTR_IS_ERR(req)) {
        free(pep);
        return;
    }
    deadline = nxl__now_ns() + wait_ns;
    while (ucp_request_check_status(req) == UCS_INPROGRESS &&
           nxl__now_ns() < deadline) {
        if (be_ucx_worker_progress(eng->workers[pep->widx].h) == 0) {
            sched_yield();
        }
    }
    if (ucp_request_check_status(req) != UCS_INPROGRESS) {
        ucp_request_free(req);
        free(pep);
        return;
    }
    pep->close_req = req;
    be_ucx_closing_add(eng, pep);
}

/* be_ucx_peer_load: parse the conn info, decide same host / this process,
 * watch a same-host process (pidfd, CMA probe) and open one endpoint per
 * worker (PEER mode unless err_mode none), or take back those parked when
 * the same conn info was unloaded (a reload of a live peer). */
nxl_status_t
be_ucx_peer_load(void *self, const char *name, const void *info, size_t len,
                 void **peer_ctx_p)
{
    be_ucx_engine_t *eng = self;
    be_ucx_park_t *park;
    be_ucx_conn_t c;
    be_ucx_peer_t *p;
    nxl_status_t st;
    bool need_eps;

    if (name == NULL || strlen(name) >= BE_UCX_NAME_MAX) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "ucx: bad agent name");
    }
    st = be_ucx_conn_parse(name, info, len, &c);
    if (st != NXL_OK) {
        return st;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "ucx: out of memory");
    }
    p->eng = eng;
    strcpy(p->name, name);
    atomic_init(&p->refs, 1);
    p->pidfd = -1;
    p->rt.fd = -1;
    p->pid = (pid_t)c.id.pid;
    p->starttime = c.id.starttime;
    p->addr = malloc(c.addr_len);
    if (p->addr == NULL) {
        st = nxl__fail(NXL_ERR_NOMEM, "ucx: out of memory");
        goto err_free;
    }
    memcpy(p->addr, c.addr, c.addr_len);
    p->addr_len = c.addr_len;
    p->info = malloc(len);
    if (p->info == NULL) {
        st = nxl__fail(NXL_ERR_NOMEM, "ucx: out of memory");
        goto err_free;
    }
    memcpy(p->info, info, len);
    p->info_len = len;
    p->self = c.id.token == eng->ident.token && c.id.pid == eng->ident.pid;
    be_ucx_netns_check(eng, &c, name);
    p->same_host = p->self || be_ucx_same_host(eng, &c);
    if (p->same_host && c.id.pid == eng->ident.pid) {
        /* This engine (loopback) or another engine of this process. */
        p->in_process = true;
        p->use_copy = eng->local_copy;
    } else if (p->same_host) {
        st = be_ucx_watch(eng, p, &c);
        if (st != NXL_OK) {
            goto err_free;
        }
        if (eng->notif_stream) {
            be_ucx_tx_open(eng, p, &c);
        }
    }
    p->err_peer = eng->err_mode != BE_UCX_ERR_NONE;
    /* Loopback, and a same-host peer of another process reached by CMA
     * whose notifications go on a stream, need UCX only for what the copy
     * path cannot do (VRAM). Without endpoints to it nothing of ours
     * writes into that peer's shared-memory FIFO (defect 6), and UCX's
     * wire-up leaves no endpoints and mappings of ours on its side
     * (defect 5). */
    need_eps = !p->use_copy || eng->vram_ok || (!p->self && p->tx == NULL);
    /* Endpoints parked by an unload of this name: the same conn info
     * takes them back; other conn info (a restart) closes them. */
    pthread_mutex_lock(&eng->lock);
    park = be_ucx_park_take(eng, name);
    pthread_mutex_unlock(&eng->lock);
    if (park != NULL && (!need_eps || park->info_len != len ||
                         memcmp(park->info, info, len) != 0)) {
        eng->host->log(NXL_LOG_INFO,
                       "ucx: '%s' comes with other conn info: "
                       "closing the endpoints of its earlier load",
                       name);
        be_ucx_park_close(eng, park, BE_UCX_CLOSE_WAIT_NS);
        park = NULL;
    }
    if (need_eps) {
        st = be_ucx_eps_open(eng, p, park);
        if (st != NXL_OK) {
            goto err_eps;
        }
    }
    pthread_mutex_lock(&eng->lock);
    p->id = ++eng->next_peer_id;
    if (p->pidfd >= 0) {
        struct epoll_event ev = {.events = EPOLLIN,
                                 .data.u64 = BE_UCX_TAG_PIDFD | p->id};

        if (epoll_ctl(eng->epfd, EPOLL_CTL_ADD, p->pidfd, &ev) != 0) {
            eng->host->log(NXL_LOG_WARN, "ucx: epoll_ctl(pidfd): %s",
                           strerror(errno));
        }
    }
    p->next = eng->peers;
    eng->peers = p;
    pthread_mutex_unlock(&eng->lock);
    eng->host->log(NXL_LOG_INFO,
                   "ucx: loaded '%s' (host %s, pid %u): %s, err mode %s, "
                   "DRAM by %s",
                   name, c.id.host, c.id.pid,
                   p->self         ? "this engine"
                   : p->in_process ? "this process"
                   : p->same_host  ? "same host"
                                   : "remote",
                   p->err_peer ? "peer" : "none",
                   p->use_copy ? (p->in_process ? "memcpy" : "CMA") : "UCX");
    *peer_ctx_p = p;
    return NXL_OK;

err_eps:
    if (p->eps != NULL) {
        unsigned i;

        for (i = 0; i < eng->nworkers; i++) {
            if (p->eps[i] != NULL) {
                pthread_mutex_lock(&eng->workers[i].lock);
                be_ucx_pep_close(eng, p->eps[i], p->err_peer, 0);
                pthread_mutex_unlock(&eng->workers[i].lock);
            }
        }
    }
err_free:
    be_ucx_peer_free(p);
    return st;
}

/* be_ucx_peer_gone: p is marked dead or its process has exited. */
bool
be_ucx_peer_gone(be_ucx_peer_t *p)
{
    struct pollfd pf;

    if (atomic_load(&p->dead)) {
        return true;
    }
    if (p->pidfd >= 0) {
        pf = (struct pollfd){.fd = p->pidfd, .events = POLLIN};
        return poll(&pf, 1, 0) > 0;
    }
    if (p->same_host && !p->in_process) {
        return !be_ucx_pid_alive(p->pid, p->starttime);
    }
    return false;
}

/* be_ucx_peer_busy: some request of p on w (lock held) has UCX
 * operations in flight. */
static bool
be_ucx_peer_busy(const be_ucx_worker_t *w, const be_ucx_peer_t *p)
{
    const be_ucx_req_t *r;

    for (r = w->active; r != NULL; r = r->next) {
        if (r->peer == p && r->trk != NULL && r->trk->pending > 0) {
            return true;
        }
    }
    return false;
}

/* be_ucx_wait_peer_ops progresses w (lock held) until no request of p on
 * it has UCX operations in flight, p is gone, or deadline passes. */
static void
be_ucx_wait_peer_ops(be_ucx_worker_t *w, be_ucx_peer_t *p, uint64_t deadline)
{
    while (be_ucx_peer_busy(w, p) && nxl__now_ns() < deadline &&
           !be_ucx_peer_gone(p)) {
        if (be_ucx_worker_progress(w->h) == 0) {
            sched_yield();
        }
    }
}

/* be_ucx_peer_linked: a request of p is still on w's list (lock held). */
static bool
be_ucx_peer_linked(const be_ucx_worker_t *w, const be_ucx_peer_t *p)
{
    const be_ucx_req_t *r;

    for (r = w->active; r != NULL; r = r->next) {
        if (r->peer == p) {
            return true;
        }
    }
    return false;
}

/* be_ucx_fail_reqs ends every request of p on w (lock held). */
static void
be_ucx_fail_reqs(be_ucx_worker_t *w, be_ucx_peer_t *p, nxl_status_t status,
                 const char *why)
{
    be_ucx_req_t *r, *next;

    for (r = w->active; r != NULL; r = next) {
        next = r->next;
        if (r->peer == p) {
            be_ucx_req_fail(r, status, "ucx: agent '%s': %s", p->name, why);
        }
    }
}

/* be_ucx_park_new prepares an entry to park p's endpoints in, or NULL
 * when they are to be closed: p is dead or failing, has no endpoints, or
 * memory is short. (In err mode NONE UCX reports no endpoint error, so a
 * remote peer that dies while parked keeps its endpoints until a load of
 * its name or fini: one set per name at most. Closing them instead would
 * lose its larger notifications after a reload, as in PEER mode.) */
static be_ucx_park_t *
be_ucx_park_new(be_ucx_engine_t *eng, const be_ucx_peer_t *p)
{
    be_ucx_park_t *park;

    if (atomic_load(&p->dead) || atomic_load(&p->fail_pending) ||
        p->eps == NULL || p->info == NULL) {
        return NULL;
    }
    park = calloc(1, sizeof(*park));
    if (park == NULL) {
        return NULL;
    }
    park->eps = calloc(eng->nworkers, sizeof(*park->eps));
    park->info = malloc(p->info_len);
    if (park->eps == NULL || park->info == NULL) {
        be_ucx_park_free(park);
        return NULL;
    }
    memcpy(park->info, p->info, p->info_len);
    park->info_len = p->info_len;
    strcpy(park->name, p->name);
    park->same_host = p->same_host && !p->in_process;
    park->pid = p->pid;
    park->starttime = p->starttime;
    return park;
}

/* be_ucx_peer_unload: forget p. In-flight requests get a short grace
 * period (PEER mode) or are waited for while p lives (NONE mode), then
 * end with NXL_ERR_REMOTE_DISCONNECT. A live peer's endpoints that have
 * no operation left are parked for a reload of the same conn info
 * (be_ucx_park_t); the others close gracefully, or by force when
 * operations are left (PEER mode). */
void
be_ucx_peer_unload(void *self, void *peer_ctx)
{
    be_ucx_engine_t *eng = self;
    be_ucx_peer_t *p = peer_ctx, **pp;
    be_ucx_park_t *park, *old;
    unsigned i, kept = 0;
    bool dead;

    if (p == NULL) {
        return;
    }
    park = be_ucx_park_new(eng, p);
    pthread_mutex_lock(&eng->lock);
    for (pp = &eng->peers; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    if (p->pidfd >= 0 && !atomic_load(&p->dead)) {
        (void)epoll_ctl(eng->epfd, EPOLL_CTL_DEL, p->pidfd, NULL);
    }
    atomic_store(&p->unloaded, true);
    dead = atomic_load(&p->dead);
    for (i = 0; i < eng->nworkers; i++) {
        be_ucx_worker_t *w = &eng->workers[i];

        pthread_mutex_lock(&w->lock);
        if (!dead) {
            /* A live peer: let what is in flight finish (PEER mode
             * briefly, then cancel; NONE mode cannot cancel, so longer). */
            be_ucx_wait_peer_ops(w, p,
                                 nxl__now_ns() + (p->err_peer
                                                      ? BE_UCX_CLOSE_WAIT_NS
                                                      : BE_UCX_NONE_WAIT_NS));
        }
        if (p->eps != NULL && p->eps[i] != NULL) {
            be_ucx_pep_t *pep = p->eps[i];
            bool busy = be_ucx_peer_busy(w, p);

            p->eps[i] = NULL;
            if (park != NULL && !dead && !busy && !pep->failed &&
                pep->ep != NULL && !atomic_load(&p->fail_pending)) {
                pep->peer = NULL; /* its error callback now flags the park */
                park->eps[i] = pep;
                kept++;
            } else {
                /* PEER mode: a forced close cancels what is left. */
                be_ucx_pep_close(eng, pep, p->err_peer && (dead || busy),
                                 dead || busy ? 0 : BE_UCX_CLOSE_WAIT_NS);
            }
        }
        be_ucx_fail_reqs(w, p, NXL_ERR_REMOTE_DISCONNECT,
                         "its metadata was unloaded");
        /* A request the service thread is copying a slice of ends when
         * that slice is done; it must not outlive the peer. */
        while (be_ucx_peer_linked(w, p)) {
            pthread_mutex_unlock(&w->lock);
            usleep(50);
            pthread_mutex_lock(&w->lock);
        }
        pthread_mutex_unlock(&w->lock);
    }
    if (kept > 0) {
        old = be_ucx_park_take(eng, p->name); /* none expected */
        if (old != NULL) {
            be_ucx_park_close(eng, old, 0);
        }
        park->next = eng->parked;
        eng->parked = park;
        park = NULL;
    }
    pthread_mutex_unlock(&eng->lock);
    if (park != NULL) {
        be_ucx_park_free(park);
    }
    /* Notifications of transfers that completed are still delivered. */
    if (p->tx != NULL) {
        if (!dead) {
            nxl__ls_tx_drain(p->tx, 500);
        }
        nxl__ls_tx_close(p->tx);
    }
    be_ucx_peer_put(p);
}

/* be_ucx_peer_fail_locked: be_ucx_peer_fail with eng->lock held. */
static void
be_ucx_peer_fail_locked(be_ucx_engine_t *eng, be_ucx_peer_t *p, const char *why)
{
    unsigned i;

    if (atomic_load(&p->dead)) {
        return;
    }
    /* The reason first: readers look at it once they see dead. */
    snprintf(p->why, sizeof(p->why), "%s", why);
    atomic_store(&p->dead, true);
    if (p->pidfd >= 0) {
        (void)epoll_ctl(eng->epfd, EPOLL_CTL_DEL, p->pidfd, NULL);
    }
    eng->host->log(NXL_LOG_WARN, "ucx: agent '%s' disconnected: %s", p->name,
                   why);
    for (i = 0; i < eng->nworkers; i++) {
        be_ucx_worker_t *w = &eng->workers[i];

        pthread_mutex_lock(&w->lock);
        if (p->eps != NULL && p->eps[i] != NULL) {
            be_ucx_pep_t *pep = p->eps[i];

            p->eps[i] = NULL;
            /* PEER mode: completes the outstanding operations (canceled).
             * NONE mode cannot cancel: the requests below orphan them. */
            be_ucx_pep_close(eng, pep, p->err_peer, 0);
        }
        be_ucx_fail_reqs(w, p, NXL_ERR_REMOTE_DISCONNECT, why);
        pthread_mutex_unlock(&w->lock);
    }
    be_ucx_notify(eng);
}

/* be_ucx_peer_fail: be_ucx_peer_fail_locked taking eng->lock. */
void
be_ucx_peer_fail(be_ucx_engine_t *eng, be_ucx_peer_t *p, const char *why)
{
    pthread_mutex_lock(&eng->lock);
    be_ucx_peer_fail_locked(eng, p, why);
    pthread_mutex_unlock(&eng->lock);
}

/* be_ucx_peer_by_id finds a loaded peer (eng->lock held). */
static be_ucx_peer_t *
be_ucx_peer_by_id(be_ucx_engine_t *eng, uint64_t id)
{
    be_ucx_peer_t *p;

    for (p = eng->peers; p != NULL; p = p->next) {
        if (p->id == id) {
            return p;
        }
    }
    return NULL;
}

/* be_ucx_sweep fails peers flagged by UCX callbacks or the copy path,
 * and polls the pids of same-host peers that have no pidfd. */
static unsigned
be_ucx_sweep(be_ucx_engine_t *eng)
{
    be_ucx_peer_t *p;
    unsigned n = 0;
    char why[128];

    atomic_store(&eng->work_pending, false);
    pthread_mutex_lock(&eng->lock);
    n += be_ucx_park_sweep(eng);
    for (p = eng->peers; p != NULL; p = p->next) {
        if (atomic_load(&p->dead)) {
            continue;
        }
        if (atomic_exchange(&p->fail_pending, false)) {
            switch (atomic_load(&p->fail_why)) {
            case BE_UCX_WHY_EP:
                snprintf(why, sizeof(why),
                         "UCX reported an endpoint "
                         "failure");
                break;
            case BE_UCX_WHY_EXIT:
                snprintf(why, sizeof(why), "process %d exited", (int)p->pid);
                break;
            case BE_UCX_WHY_OP:
                snprintf(why, sizeof(why),
                         "a transfer failed with a "
                         "transport error");
                break;
            default:
                snprintf(why, sizeof(why),
                         "its endpoint could not be "
                         "recreated");
                break;
            }
            be_ucx_peer_fail_locked(eng, p, why);
            n++;
        } else if (p->same_host && !p->in_process && p->pidfd < 0 &&
                   !be_ucx_pid_alive(p->pid, p->starttime)) {
            snprintf(why, sizeof(why), "pid %d exited", (int)p->pid);
            be_ucx_peer_fail_locked(eng, p, why);
            n++;
        }
    }
    pthread_mutex_unlock(&eng->lock);
    return n;
}

/* be_ucx_liveness: one pass over the epoll set (pidfds, kick, the local
 * notification streams) with timeout_ms, then the flagged peers. With the
 * service thread (which waits on the set) timeout 0 is rate-limited to one
 * pass per BE_UCX_LIVENESS_NS unless work is pending or same-host peers
 * have notification streams open to us: their events are then picked up
 * here by the caller, without a hop through the service thread (which
 * costs a wake-up on the notification's path). Without the service
 * thread every progress call passes. */
unsigned
be_ucx_liveness(be_ucx_engine_t *eng, int timeout_ms)
{
    struct epoll_event ev[32];
    be_ucx_peer_t *p;
    unsigned n = 0;
    uint64_t now, v;
    char why[64];
    int k, i;

    if (timeout_ms == 0 && eng->service && !atomic_load(&eng->work_pending) &&
        !nxl__ls_receiving(eng->ls)) {
        /* The data path polls at most once per period. */
        now = nxl__now_ns();
        if (now < atomic_load(&eng->next_liveness_ns)) {
            return 0;
        }
        atomic_store(&eng->next_liveness_ns, now + BE_UCX_LIVENESS_NS);
    }
    k = epoll_wait(eng->epfd, ev, 32, timeout_ms);
    for (i = 0; i < k; i++) {
        uint64_t tag = ev[i].data.u64;

        if (tag == BE_UCX_TAG_KICK) {
            if (read(eng->kick_fd, &v, sizeof(v)) > 0) {
                n++;
            }
        } else if (nxl__ls_owns(tag)) {
            n += be_ucx_ls_event(eng, tag, ev[i].events);
        } else if ((tag & BE_UCX_TAG_MASK) == BE_UCX_TAG_PIDFD) {
            pthread_mutex_lock(&eng->lock);
            p = be_ucx_peer_by_id(eng, tag & ~BE_UCX_TAG_MASK);
            if (p != NULL) {
                snprintf(why, sizeof(why), "process %d exited", (int)p->pid);
                be_ucx_peer_fail_locked(eng, p, why);
                n++;
            }
            pthread_mutex_unlock(&eng->lock);
        }
    }
    if (atomic_load(&eng->work_pending) || k == 0) {
        n += be_ucx_sweep(eng);
    }
    return n;
}

/* be_ucx_ep_reset: force-close p's endpoint on w (its operations complete
 * as canceled), open a fresh one and unpack p's keys for it (w locked). */
nxl_status_t
be_ucx_ep_reset(be_ucx_peer_t *p, be_ucx_worker_t *w)
{
    be_ucx_engine_t *eng = p->eng;
    be_ucx_pep_t *pep, *fresh;
    be_ucx_rmd_t *rmd;
    ucs_status_t ust;
    nxl_status_t st;

    if (p->eps == NULL || p->eps[w->idx] == NULL) {
        return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                         "ucx: '%s' has no "
                         "endpoint",
                         p->name);
    }
    fresh = calloc(1, sizeof(*fresh));
    if (fresh == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "ucx: out of memory");
    }
    pep = p->eps[w->idx];
    be_ucx_pep_close(eng, pep, true, 0);
    fresh->eng = eng;
    fresh->peer = p;
    fresh->widx = w->idx;
    p->eps[w->idx] = fresh;
    st = be_ucx_ep_create(p, fresh);
    if (st != NXL_OK) {
        be_ucx_flag_peer(p, BE_UCX_WHY_RESET);
        return st;
    }
    /* Remote keys belong to an endpoint: unpack them again. The core
     * keeps md_unpack/md_unload (control path) away from here. */
    for (rmd = p->rmds; rmd != NULL; rmd = rmd->next) {
        if (rmd->rkey[w->idx] != NULL) {
            ucp_rkey_destroy(rmd->rkey[w->idx]);
            rmd->rkey[w->idx] = NULL;
        }
        ust = ucp_ep_rkey_unpack(fresh->ep, rmd->packed, &rmd->rkey[w->idx]);
        if (ust != UCS_OK) {
            rmd->rkey[w->idx] = NULL;
            eng->host->log(NXL_LOG_WARN,
                           "ucx: re-unpacking a key of '%s': "
                           "%s",
                           p->name, ucs_status_string(ust));
        }
    }
    return NXL_OK;
}
