/*
 * ucx_engine.c - the UCX backend's engine: parameters, UCX configuration,
 * context and workers, registration, progress, the event fd and the
 * service thread, and the ops table.
 */
#include "ucx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#if UCP_API_VERSION >= UCP_VERSION(1, 11)
#include <ucs/config/parser.h>
#define BE_UCX_CAN_LIST_CONFIG 1
#endif

/* Parameters and their defaults (nxl_plugin_info shows these). */
static const nxl_param_t be_ucx_defaults[] = {
    {"num_workers", "1"},
    {"err_mode", "auto"},            /* auto | peer | none */
    {"engine_config", ""},           /* "KEY=VAL;KEY=VAL" for ucp_config */
    {"local_path", "copy"},          /* copy | ucx: same-host DRAM data path */
    {"same_host", "auto"},           /* auto | off: recognise local peers */
    {"service_thread", "on"},        /* on | off: serve peers without help */
    {"local_notif", "stream"},       /* stream | am: to same-host peers */
    {"device_list", ""},             /* NIXL's key: UCX_NET_DEVICES */
    {"ucx_error_handling_mode", ""}, /* NIXL's key: alias of err_mode */
};

/* be_ucx_param returns the value of key in params (always present: the
 * core merges the defaults). */
static const char *
be_ucx_param(const nxl_params_t *params, const char *key)
{
    size_t i;

    for (i = 0; params != NULL && i < params->count; i++) {
        if (strcmp(params->items[i].key, key) == 0) {
            return params->items[i].value;
        }
    }
    for (i = 0; i < NXL__ARRAY_SIZE(be_ucx_defaults); i++) {
        if (strcmp(be_ucx_defaults[i].key, key) == 0) {
            return be_ucx_defaults[i].value;
        }
    }
    return "";
}

/* be_ucx_onoff parses a boolean parameter. */
static nxl_status_t
be_ucx_onoff(const char *key, const char *v, const char *on, const char *off,
             bool *out)
{
    if (strcasecmp(v, on) == 0 || strcasecmp(v, "1") == 0 ||
        strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0) {
        *out = true;
        return NXL_OK;
    }
    if (strcasecmp(v, off) == 0 || strcasecmp(v, "0") == 0 ||
        strcasecmp(v, "false") == 0 || strcasecmp(v, "no") == 0) {
        *out = false;
        return NXL_OK;
    }
    return nxl__fail(NXL_ERR_INVALID_PARAM,
                     "ucx: parameter %s='%s': expected '%s' or '%s'", key, v,
                     on, off);
}

/* be_ucx_parse_params reads every parameter into eng. */
static nxl_status_t
be_ucx_parse_params(be_ucx_engine_t *eng, const nxl_params_t *params)
{
    const char *v;
    char *end;
    unsigned long n;
    nxl_status_t st;

    v = be_ucx_param(params, "num_workers");
    errno = 0;
    n = strtoul(v, &end, 10);
    if (v[0] == '\0' || *end != '\0' || errno != 0 || n == 0 ||
        n > BE_UCX_MAX_WORKERS) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "ucx: num_workers='%s': expected 1..%u", v,
                         BE_UCX_MAX_WORKERS);
    }
    eng->nworkers = (unsigned)n;

    v = be_ucx_param(params, "ucx_error_handling_mode");
    if (v[0] == '\0') {
        v = be_ucx_param(params, "err_mode");
    }
    if (strcasecmp(v, "auto") == 0) {
        eng->err_mode = BE_UCX_ERR_AUTO;
    } else if (strcasecmp(v, "none") == 0) {
        eng->err_mode = BE_UCX_ERR_NONE;
    } else if (strcasecmp(v, "peer") == 0) {
        eng->err_mode = BE_UCX_ERR_PEER;
    } else {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "ucx: err_mode='%s': expected auto, none or peer", v);
    }
    st = be_ucx_onoff("local_path", be_ucx_param(params, "local_path"), "copy",
                      "ucx", &eng->local_copy);
    if (st != NXL_OK) {
        return st;
    }
    st = be_ucx_onoff("same_host", be_ucx_param(params, "same_host"), "auto",
                      "off", &eng->detect_same_host);
    if (st != NXL_OK) {
        return st;
    }
    st = be_ucx_onoff("local_notif", be_ucx_param(params, "local_notif"),
                      "stream", "am", &eng->notif_stream);
    if (st != NXL_OK) {
        return st;
    }
    return be_ucx_onoff("service_thread",
                        be_ucx_param(params, "service_thread"), "on", "off",
                        &eng->service);
}

/* be_ucx_config_set applies one UCX setting, naming it on failure. */
static nxl_status_t
be_ucx_config_set(ucp_config_t *cfg, const char *key, const char *val,
                  const char *origin)
{
    ucs_status_t st;

    if (strncasecmp(key, "UCX_", 4) == 0) {
        key += 4;
    }
    if (key[0] == '\0') {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "ucx: %s: empty key", origin);
    }
    st = ucp_config_modify(cfg, key, val);
    if (st != UCS_OK) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "ucx: %s: UCX rejects %s=%s (%s)", origin, key, val,
                         ucs_status_string(st));
    }
    return NXL_OK;
}

/* be_ucx_trim cuts leading and trailing blanks of s in place. */
static char *
be_ucx_trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t') {
        s++;
    }
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) {
        *--e = '\0';
    }
    return s;
}

/* be_ucx_tls_has_mm: the UCX_TLS setting in cfg may enable a
 * shared-memory (mm) transport: "all", "sm"/"shm"/"mm", "sysv", "posix",
 * or an exclusion list ("^...") that does not exclude the whole group. */
static bool
be_ucx_tls_has_mm(ucp_config_t *cfg)
{
    char *buf = NULL, *line, *save = NULL, *tok, *tsave = NULL;
    bool has = true, neg, group, one;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (f == NULL) {
        return true;
    }
    ucp_config_print(cfg, f, NULL, UCS_CONFIG_PRINT_CONFIG);
    fclose(f);
    for (line = strtok_r(buf, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "UCX_TLS=", 8) != 0) {
            continue;
        }
        line += 8;
        neg = line[0] == '^';
        has = neg;
        for (tok = strtok_r(line + neg, ",", &tsave); tok != NULL;
             tok = strtok_r(NULL, ",", &tsave)) {
            group = strcasecmp(tok, "sm") == 0 || strcasecmp(tok, "shm") == 0 ||
                    strcasecmp(tok, "mm") == 0;
            one = strcasecmp(tok, "all") == 0 || strcasecmp(tok, "sysv") == 0 ||
                  strcasecmp(tok, "posix") == 0;
            if (neg && group) {
                has = false;
            } else if (!neg && (group || one)) {
                has = true;
            }
        }
        break;
    }
    free(buf);
    return has;
}

/* be_ucx_config_mm_errh: for err_mode auto, PEER endpoints everywhere.
 * UCX 1.13 offers the shared-memory transports (sysv, posix) to PEER
 * endpoints only when they expose error handling, which is off by
 * default; without it a same-host peer falls back to TCP loopback. The
 * key reaches every mm transport's interface config
 * (UCX_<TL>_ERROR_HANDLING); it is left out when the environment decides
 * or when TLS has no mm transport (UCX would warn that it is unused). */
static void
be_ucx_config_mm_errh(const be_ucx_engine_t *eng, ucp_config_t *cfg)
{
    if (eng->err_mode == BE_UCX_ERR_AUTO &&
        getenv("UCX_MM_ERROR_HANDLING") == NULL &&
        getenv("UCX_SYSV_ERROR_HANDLING") == NULL &&
        getenv("UCX_POSIX_ERROR_HANDLING") == NULL && be_ucx_tls_has_mm(cfg)) {
        (void)ucp_config_modify(cfg, "MM_ERROR_HANDLING", "y");
    }
}

/* be_ucx_config_build reads UCX_* from the environment (ucp_config_read),
 * adds this backend's defaults where the environment is silent, then
 * applies device_list and engine_config ("KEY=VAL;KEY=VAL", keys with or
 * without the UCX_ prefix), which win over both. */
static nxl_status_t
be_ucx_config_build(const be_ucx_engine_t *eng, const nxl_params_t *params,
                    ucp_config_t **cfg_p)
{
    ucp_config_t *cfg;
    ucs_status_t ust;
    nxl_status_t st = NXL_OK;
    char *copy, *item, *save = NULL, *eq;
    const char *v;

    ust = ucp_config_read(NULL, NULL, &cfg);
    if (ust != UCS_OK) {
        return nxl__fail(NXL_ERR_BACKEND, "ucx: ucp_config_read: %s",
                         ucs_status_string(ust));
    }
    /* Peer failures (err mode PEER) are noticed within about a second
     * rather than UCX's default 20 s. */
    if (getenv("UCX_KEEPALIVE_INTERVAL") == NULL) {
        (void)ucp_config_modify(cfg, "KEEPALIVE_INTERVAL", "1s");
    }
    v = be_ucx_param(params, "device_list");
    if (v[0] != '\0') {
        st = be_ucx_config_set(cfg, "NET_DEVICES", v, "device_list");
        if (st != NXL_OK) {
            goto err_release;
        }
    }
    v = be_ucx_param(params, "engine_config");
    if (v[0] == '\0') {
        be_ucx_config_mm_errh(eng, cfg);
        *cfg_p = cfg;
        return NXL_OK;
    }
    copy = strdup(v);
    if (copy == NULL) {
        st = nxl__fail(NXL_ERR_NOMEM, "ucx: out of memory");
        goto err_release;
    }
    for (item = strtok_r(copy, ";", &save); item != NULL;
         item = strtok_r(NULL, ";", &save)) {
        item = be_ucx_trim(item);
        if (item[0] == '\0') {
            continue;
        }
        eq = strchr(item, '=');
        if (eq == NULL) {
            st = nxl__fail(NXL_ERR_INVALID_PARAM,
                           "ucx: engine_config entry '%s' is not KEY=VALUE",
                           item);
            break;
        }
        *eq = '\0';
        st = be_ucx_config_set(cfg, be_ucx_trim(item), be_ucx_trim(eq + 1),
                               "engine_config");
        if (st != NXL_OK) {
            break;
        }
    }
    free(copy);
    if (st != NXL_OK) {
        goto err_release;
    }
    be_ucx_config_mm_errh(eng, cfg);
    *cfg_p = cfg;
    return NXL_OK;

err_release:
    ucp_config_release(cfg);
    return st;
}

#ifdef BE_UCX_CAN_LIST_CONFIG
/* be_ucx_known_key: "UCX_<key>" appears as a whole name in all, the list
 * of every UCX setting (with inherited names). */
static bool
be_ucx_known_key(const char *all, const char *key)
{
    char name[160];
    const char *p = all;
    size_t n;

    if (strncasecmp(key, "UCX_", 4) == 0) {
        key += 4;
    }
    n = (size_t)snprintf(name, sizeof(name), "UCX_%s", key);
    if (n >= sizeof(name)) {
        return false;
    }
    while ((p = strcasestr(p, name)) != NULL) {
        char next = p[n];

        if ((p == all || !(p[-1] == '_' || (p[-1] >= 'A' && p[-1] <= 'Z') ||
                           (p[-1] >= '0' && p[-1] <= '9'))) &&
            !(next == '_' || (next >= 'A' && next <= 'Z') ||
              (next >= '0' && next <= '9'))) {
            return true;
        }
        p += n;
    }
    return false;
}
#endif

/* be_ucx_config_validate rejects engine_config keys that no UCX
 * component knows. ucp_config_modify accepts any key it cannot place
 * (transport settings are applied later, when interfaces open) and UCX
 * then only warns, so check the keys against the full list of settings
 * once the components are loaded (after ucp_init). */
static nxl_status_t
be_ucx_config_validate(const nxl_params_t *params)
{
#ifdef BE_UCX_CAN_LIST_CONFIG
    const char *v = be_ucx_param(params, "engine_config");
    char *all = NULL, *copy, *item, *save = NULL, *eq;
    nxl_status_t st = NXL_OK;
    size_t len = 0;
    FILE *f;

    if (v[0] == '\0') {
        return NXL_OK;
    }
    f = open_memstream(&all, &len);
    if (f == NULL) {
        return NXL_OK;
    }
    ucs_config_parser_print_all_opts(f, "UCX_",
                                     UCS_CONFIG_PRINT_CONFIG |
                                         UCS_CONFIG_PRINT_HIDDEN |
                                         UCS_CONFIG_PRINT_DOC,
                                     &ucs_config_global_list);
    fclose(f);
    copy = strdup(v);
    if (all == NULL || copy == NULL) {
        free(all);
        free(copy);
        return NXL_OK;
    }
    for (item = strtok_r(copy, ";", &save); item != NULL;
         item = strtok_r(NULL, ";", &save)) {
        item = be_ucx_trim(item);
        eq = strchr(item, '=');
        if (item[0] == '\0' || eq == NULL) {
            continue;
        }
        *eq = '\0';
        item = be_ucx_trim(item);
        if (!be_ucx_known_key(all, item)) {
            st = nxl__fail(NXL_ERR_INVALID_PARAM,
                           "ucx: engine_config: UCX has no setting '%s'", item);
            break;
        }
    }
    free(copy);
    free(all);
    return st;
#else
    (void)params;
    return NXL_OK;
#endif
}

/* be_ucx_status: UCX status -> NXL status (unreachable peers and endpoint
 * failures become NXL_ERR_REMOTE_DISCONNECT). */
nxl_status_t
be_ucx_status(ucs_status_t st)
{
    switch (st) {
    case UCS_OK:
        return NXL_OK;
    case UCS_INPROGRESS:
        return NXL_IN_PROG;
    case UCS_ERR_CANCELED:
        return NXL_ERR_CANCELED;
    case UCS_ERR_NO_MEMORY:
        return NXL_ERR_NOMEM;
    case UCS_ERR_TIMED_OUT:
        return NXL_ERR_TIMEOUT;
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_ENDPOINT_TIMEOUT:
    case UCS_ERR_REJECTED:
    case UCS_ERR_NOT_CONNECTED:
        return NXL_ERR_REMOTE_DISCONNECT;
    case UCS_ERR_INVALID_PARAM:
        return NXL_ERR_INVALID_PARAM;
    case UCS_ERR_UNSUPPORTED:
        return NXL_ERR_NOT_SUPPORTED;
    default:
        return NXL_ERR_BACKEND;
    }
}

#if NXL__TSAN
_Thread_local unsigned be_ucx_tsan_depth;
#endif

/* be_ucx_notify: make the agent-facing event fd readable (the done eventfd
 * with the service thread, else the kick eventfd inside the epoll set). */
void
be_ucx_notify(be_ucx_engine_t *eng)
{
    uint64_t one = 1;
    int fd = eng->service ? eng->done_fd : eng->kick_fd;

    if (fd >= 0 && write(fd, &one, sizeof(one)) < 0) {
        /* The counter is saturated: the fd is readable anyway. */
    }
}

/* be_ucx_kick: wake whoever sleeps on the engine's epoll set. */
void
be_ucx_kick(be_ucx_engine_t *eng)
{
    uint64_t one = 1;

    if (eng->kick_fd >= 0 && write(eng->kick_fd, &one, sizeof(one)) < 0) {
        /* Saturated: readable anyway. */
    }
}

/* be_ucx_worker_arm: see ucx.h. */
bool
be_ucx_worker_arm(be_ucx_worker_t *w, bool kick)
{
    ucs_status_t st;
    int i;

    for (i = 0; i < 8; i++) {
        st = ucp_worker_arm(w->h);
        if (st != UCS_ERR_BUSY) {
            return false;
        }
        (void)be_ucx_progress_worker(w, false);
    }
    /* Still busy: make sure somebody comes back soon. */
    if (kick) {
        be_ucx_kick(w->eng);
    }
    return true;
}

/* be_ucx_orphan_trk: hand trk to the engine until the workers go (any
 * lock; orphan_lock inside). */
void
be_ucx_orphan_trk(be_ucx_engine_t *eng, be_ucx_trk_t *trk)
{
    trk->req = NULL;
    pthread_mutex_lock(&eng->orphan_lock);
    trk->next = eng->orphans;
    eng->orphans = trk;
    pthread_mutex_unlock(&eng->orphan_lock);
}

/* be_ucx_closing_add: park an endpoint whose graceful close is still
 * running; fini frees it. */
void
be_ucx_closing_add(be_ucx_engine_t *eng, be_ucx_pep_t *pep)
{
    pthread_mutex_lock(&eng->orphan_lock);
    pep->next = eng->closing;
    eng->closing = pep;
    pthread_mutex_unlock(&eng->orphan_lock);
}

/* be_ucx_drain reads an eventfd's counter to zero. */
static void
be_ucx_drain(int fd)
{
    uint64_t v;

    if (fd >= 0 && read(fd, &v, sizeof(v)) < 0) {
        /* EAGAIN: nothing to drain. */
    }
}

/* be_ucx_service_main is the service thread: it sleeps on the engine's
 * epoll set (worker event fds, peer pidfds, the kick eventfd) and
 * progresses the workers when one fires, so peers' requests, UCX
 * protocols and notifications are served without the application's help,
 * and peer deaths are noticed while the application sleeps. */
static void *
be_ucx_service_main(void *arg)
{
    be_ucx_engine_t *eng = arg;
    int wait_ms = -1;
    unsigned i;

    while (!atomic_load(&eng->stop)) {
        (void)be_ucx_liveness(eng, wait_ms);
        if (atomic_load(&eng->stop)) {
            break;
        }
        /* A worker that stays busy through its re-arms (UCX spinning on a
         * lane that does not drain: docs/reliability.md, defect 6) is
         * retried after 1 ms, not at once: the thread then leaves the
         * worker lock free for the application's threads most of the
         * time instead of holding it in a loop. */
        wait_ms = -1;
        for (i = 0; i < eng->nworkers; i++) {
            be_ucx_worker_t *w = &eng->workers[i];

            pthread_mutex_lock(&w->lock);
            (void)be_ucx_progress_worker(w, false);
            if (be_ucx_worker_arm(w, false)) {
                wait_ms = 1;
            }
            pthread_mutex_unlock(&w->lock);
        }
        (void)be_ucx_help_copies(eng);
    }
    return NULL;
}

/* be_ucx_epoll_add adds fd to the engine's epoll set under tag. */
static nxl_status_t
be_ucx_epoll_add(be_ucx_engine_t *eng, int fd, uint64_t tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};

    if (epoll_ctl(eng->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        return nxl__fail_errno(errno, "ucx: epoll_ctl(add fd %d)", fd);
    }
    return NXL_OK;
}

/* be_ucx_worker_init creates worker i: serialized thread mode (this
 * backend locks), its event fd in the epoll set, the notification
 * handler. */
static nxl_status_t
be_ucx_worker_init(be_ucx_engine_t *eng, unsigned i)
{
    be_ucx_worker_t *w = &eng->workers[i];
    ucp_worker_params_t wp;
    ucp_am_handler_param_t hp;
    ucs_status_t ust;
    char name[64];

    w->eng = eng;
    w->idx = i;
    w->efd = -1;
    snprintf(name, sizeof(name), "nxl-%.40s-%u", eng->host->agent_name, i);
    memset(&wp, 0, sizeof(wp));
    wp.field_mask =
        UCP_WORKER_PARAM_FIELD_THREAD_MODE | UCP_WORKER_PARAM_FIELD_NAME;
    wp.thread_mode = UCS_THREAD_MODE_SERIALIZED;
    wp.name = name;
    ust = ucp_worker_create(eng->ctx, &wp, &w->h);
    if (ust != UCS_OK) {
        w->h = NULL;
        return nxl__fail(NXL_ERR_BACKEND, "ucx: ucp_worker_create(%u): %s", i,
                         ucs_status_string(ust));
    }
    ust = ucp_worker_get_efd(w->h, &w->efd);
    if (ust != UCS_OK) {
        w->efd = -1;
        return nxl__fail(NXL_ERR_BACKEND, "ucx: ucp_worker_get_efd(%u): %s", i,
                         ucs_status_string(ust));
    }
    memset(&hp, 0, sizeof(hp));
    hp.field_mask =
        UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
        UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
    hp.id = BE_UCX_AM_NOTIF;
    hp.flags = UCP_AM_FLAG_WHOLE_MSG;
    hp.cb = be_ucx_am_notif;
    hp.arg = w;
    ust = ucp_worker_set_am_recv_handler(w->h, &hp);
    if (ust != UCS_OK) {
        return nxl__fail(NXL_ERR_BACKEND,
                         "ucx: ucp_worker_set_am_recv_handler(%u): %s", i,
                         ucs_status_string(ust));
    }
    (void)be_ucx_worker_arm(w, true);
    return be_ucx_epoll_add(eng, w->efd, BE_UCX_TAG_WORKER | i);
}

/* be_ucx_init: parameters, UCX config, context, workers, identity, the
 * epoll set and the service thread. On failure fini cleans up. */
static nxl_status_t
be_ucx_init(void *self, const nxl_backend_host_t *host,
            const nxl_params_t *params)
{
    be_ucx_engine_t *eng = self;
    ucp_config_t *cfg = NULL;
    ucp_params_t up;
    ucp_context_attr_t ca;
    ucs_status_t ust;
    nxl_status_t st;
    unsigned i;

    eng->host = host;
    eng->epfd = eng->kick_fd = eng->done_fd = -1;
    pthread_mutex_init(&eng->lock, NULL);
    pthread_mutex_init(&eng->orphan_lock, NULL);
    eng->lock_init = true;
    st = nxl__pools_create(NXL__POOLS_LOCKED, &eng->pools);
    if (st == NXL_OK) {
        st = be_ucx_parse_params(eng, params);
    }
    if (st != NXL_OK) {
        return st;
    }
    if (getrandom(&eng->token, sizeof(eng->token), GRND_NONBLOCK) !=
        (ssize_t)sizeof(eng->token)) {
        eng->token = nxl__now_ns() ^ (uint64_t)(uintptr_t)eng;
    }
    eng->token |= 1;
    st = nxl__regtab_init(&eng->regtab, eng->token);
    eng->regtab_ready = true;
    if (st != NXL_OK) {
        return st;
    }
    ucp_get_version(&eng->ucx_major, &eng->ucx_minor, &eng->ucx_release);
    if (eng->ucx_major != UCP_API_MAJOR || eng->ucx_minor < UCP_API_MINOR) {
        host->log(NXL_LOG_WARN,
                  "ucx: built against UCX %d.%d but running %u.%u.%u",
                  UCP_API_MAJOR, UCP_API_MINOR, eng->ucx_major, eng->ucx_minor,
                  eng->ucx_release);
    }
    st = be_ucx_config_build(eng, params, &cfg);
    if (st != NXL_OK) {
        return st;
    }
    eng->tls_mm = be_ucx_tls_has_mm(cfg);
    memset(&up, 0, sizeof(up));
    up.field_mask = UCP_PARAM_FIELD_FEATURES |
                    UCP_PARAM_FIELD_MT_WORKERS_SHARED | UCP_PARAM_FIELD_NAME;
    up.features = UCP_FEATURE_RMA | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
    /* Control calls (mem_map, rkey pack) may run while another thread
     * progresses a worker. */
    up.mt_workers_shared = 1;
    up.name = host->agent_name;
    ust = ucp_init(&up, cfg, &eng->ctx);
    ucp_config_release(cfg);
    if (ust != UCS_OK) {
        eng->ctx = NULL;
        return nxl__fail(NXL_ERR_BACKEND,
                         "ucx: ucp_init: %s (check UCX_TLS / engine_config)",
                         ucs_status_string(ust));
    }
    st = be_ucx_config_validate(params);
    if (st != NXL_OK) {
        return st;
    }
    memset(&ca, 0, sizeof(ca));
    ca.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
    if (ucp_context_query(eng->ctx, &ca) == UCS_OK) {
        eng->vram_ok = (ca.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA)) != 0;
    }
    /* The loopback peer has no endpoints exactly then (be_ucx_peer_load:
     * need_eps), so its views of our regions hold no keys. */
    if (eng->local_copy && !eng->vram_ok) {
        void *m = mmap(NULL, NXL__REGTAB_MAX_SLOTS * sizeof(*eng->slot_md),
                       PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

        if (m != MAP_FAILED) {
            eng->slot_md = m;
            eng->self_views = true;
        }
    }
    eng->epfd = epoll_create1(EPOLL_CLOEXEC);
    eng->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (eng->epfd < 0 || eng->kick_fd < 0) {
        return nxl__fail_errno(errno, "ucx: epoll/eventfd");
    }
    st = be_ucx_epoll_add(eng, eng->kick_fd, BE_UCX_TAG_KICK);
    if (st != NXL_OK) {
        return st;
    }
    if (eng->service) {
        eng->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (eng->done_fd < 0) {
            return nxl__fail_errno(errno, "ucx: eventfd");
        }
    }
    eng->workers = calloc(eng->nworkers, sizeof(*eng->workers));
    if (eng->workers == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "ucx: out of memory");
    }
    for (i = 0; i < eng->nworkers; i++) {
        pthread_mutex_init(&eng->workers[i].lock, NULL);
    }
    for (i = 0; i < eng->nworkers; i++) {
        st = be_ucx_worker_init(eng, i);
        if (st != NXL_OK) {
            return st;
        }
    }
    ust = ucp_worker_get_address(eng->workers[0].h,
                                 (ucp_address_t **)&eng->addr, &eng->addr_len);
    if (ust != UCS_OK) {
        eng->addr = NULL;
        return nxl__fail(NXL_ERR_BACKEND, "ucx: ucp_worker_get_address: %s",
                         ucs_status_string(ust));
    }
    st = be_ucx_ident_init(eng);
    if (st != NXL_OK) {
        return st;
    }
    {
        char sock[NXL__LS_SOCK_MAX + 1];
        size_t n = nxl__ls_sock_name(sock, sizeof(sock), "ucx",
                                     (pid_t)eng->ident.pid, eng->ident.token);

        st = nxl__ls_create("ucx", sock, n, BE_UCX_NOTIF_MAX, eng->epfd,
                            NXL__LS_PACED, be_ucx_ls_deliver, eng, &eng->ls);
    }
    if (st != NXL_OK) {
        return st;
    }
    if (eng->service) {
        if (pthread_create(&eng->thread, NULL, be_ucx_service_main, eng) != 0) {
            return nxl__fail(NXL_ERR_BACKEND,
                             "ucx: cannot start the service thread");
        }
        eng->thread_started = true;
    }
    host->log(NXL_LOG_INFO,
              "ucx: UCX %u.%u.%u, %u worker(s), err_mode %s, local path %s, "
              "service thread %s, VRAM %s",
              eng->ucx_major, eng->ucx_minor, eng->ucx_release, eng->nworkers,
              eng->err_mode == BE_UCX_ERR_AUTO   ? "auto"
              : eng->err_mode == BE_UCX_ERR_NONE ? "none"
                                                 : "peer",
              eng->local_copy ? "copy" : "ucx", eng->service ? "on" : "off",
              eng->vram_ok ? "yes" : "no (UCX has no CUDA support)");
    return NXL_OK;
}

/* be_ucx_worker_settle gives w up to BE_UCX_SETTLE_MS to send what it
 * still queues (a flush of every endpoint, the ones UCX's wire-up made for
 * peers that connected to us included) before it is destroyed: UCX 1.13.1
 * aborts when ucp_worker_destroy purges a wire-up reply still pending on
 * a lane (ucp_request.c:684; docs/reliability.md, defect 4; seen in
 * conformance/UCX@netns/sidechannel on a loaded host). A flush that does
 * not finish in time (a dead peer) is left to the destroy, as before. */
#define BE_UCX_SETTLE_MS 100
static void
be_ucx_worker_settle(be_ucx_worker_t *w)
{
    ucp_request_param_t prm;
    uint64_t end;
    void *req;

    memset(&prm, 0, sizeof(prm));
    req = ucp_worker_flush_nbx(w->h, &prm);
    if (req == NULL || UCS_PTR_IS_ERR(req)) {
        return; /* nothing queued, or nothing to wait for */
    }
    end = nxl__now_ns() + (uint64_t)BE_UCX_SETTLE_MS * 1000000u;
    while (ucp_request_check_status(req) == UCS_INPROGRESS &&
           nxl__now_ns() < end) {
        if (be_ucx_worker_progress(w->h) == 0) {
            usleep(200);
        }
    }
    ucp_request_free(req);
}

/* be_ucx_fini releases everything, also after a failed init. */
static void
be_ucx_fini(void *self)
{
    be_ucx_engine_t *eng = self;
    be_ucx_trk_t *t;
    be_ucx_pep_t *pep;
    unsigned i;

    if (eng->thread_started) {
        atomic_store(&eng->stop, true);
        be_ucx_kick(eng);
        pthread_join(eng->thread, NULL);
        eng->thread_started = false;
    }
    while (eng->peers != NULL) {
        eng->host->log(NXL_LOG_WARN, "ucx: peer '%s' still loaded at fini",
                       eng->peers->name);
        be_ucx_peer_unload(eng, eng->peers);
    }
    /* Before the workers go: these are live endpoints. */
    be_ucx_park_close_all(eng);
    if (eng->regtab_ready) {
        nxl__regtab_fini(&eng->regtab);
        eng->regtab_ready = false;
    }
    if (eng->slot_md != NULL) {
        munmap(eng->slot_md, NXL__REGTAB_MAX_SLOTS * sizeof(*eng->slot_md));
        eng->slot_md = NULL;
        eng->self_views = false;
    }
    pthread_mutex_lock(&eng->orphan_lock);
    for (pep = eng->closing; pep != NULL; pep = pep->next) {
        if (pep->close_req != NULL) {
            ucp_request_free(pep->close_req);
            pep->close_req = NULL;
        }
    }
    pthread_mutex_unlock(&eng->orphan_lock);
    if (eng->addr != NULL) {
        ucp_worker_release_address(eng->workers[0].h, eng->addr);
        eng->addr = NULL;
    }
    for (i = 0; eng->workers != NULL && i < eng->nworkers; i++) {
        be_ucx_worker_t *w = &eng->workers[i];

        /* Destroying a worker completes what UCX still holds (orphaned
         * operations of dead peers) through their callbacks. */
        if (w->h != NULL) {
            be_ucx_worker_settle(w);
            ucp_worker_destroy(w->h);
            w->h = NULL;
        }
        pthread_mutex_destroy(&w->lock);
    }
    free(eng->workers);
    eng->workers = NULL;
    while ((t = eng->orphans) != NULL) {
        eng->orphans = t->next;
        free(t->nbuf);
        free(t);
    }
    while ((pep = eng->closing) != NULL) {
        eng->closing = pep->next;
        free(pep);
    }
    if (eng->ctx != NULL) {
        ucp_cleanup(eng->ctx);
        eng->ctx = NULL;
    }
    /* After the peers (their streams are freed) and the service thread. */
    nxl__ls_destroy(eng->ls);
    eng->ls = NULL;
    if (eng->epfd >= 0) {
        close(eng->epfd);
    }
    if (eng->kick_fd >= 0) {
        close(eng->kick_fd);
    }
    if (eng->done_fd >= 0) {
        close(eng->done_fd);
    }
    eng->epfd = eng->kick_fd = eng->done_fd = -1;
    if (eng->lock_init) {
        pthread_mutex_destroy(&eng->lock);
        pthread_mutex_destroy(&eng->orphan_lock);
        eng->lock_init = false;
    }
    /* Last: every record of the engine's is gone. */
    nxl__pools_destroy(eng->pools);
    eng->pools = NULL;
}

/* be_ucx_mem_register maps one region with ucp_mem_map. Its remote key
 * is packed by md_pack, which the core calls right after (so the memory
 * handle is still cached then) and which releases UCP's buffer at once:
 * deregistration then has no key buffer to free, whose header among
 * many regions is a cache miss. VRAM needs a UCX that reports CUDA
 * memory support. */
static nxl_status_t
be_ucx_mem_register(void *self, const nxl_be_region_t *region, void **md_p)
{
    be_ucx_engine_t *eng = self;
    ucp_mem_map_params_t mp;
    be_ucx_md_t *md;
    ucs_status_t ust;
    nxl_status_t st;

    if (region->kind == NXL_VRAM && !eng->vram_ok) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "ucx: cannot register VRAM: this UCX (%u.%u.%u) was "
                         "built without CUDA support (ucp_context_query "
                         "reports no cuda memory type; install a UCX with "
                         "the cuda transports, e.g. ucx-cuda)",
                         eng->ucx_major, eng->ucx_minor, eng->ucx_release);
    }
    if (region->kind != NXL_DRAM && region->kind != NXL_VRAM) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "ucx: memory kind %d is not supported",
                         (int)region->kind);
    }
    md = nxl__pools_alloc(
        eng->pools,
        sizeof(*md) + (eng->self_views ? sizeof(be_ucx_rmd_t) +
                                             eng->nworkers * sizeof(ucp_rkey_h)
                                       : 0),
        true);
    if (md == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "ucx: out of memory");
    }
    atomic_init(&md->holds, 1);
    md->addr = region->addr;
    md->len = region->len;
    md->kind = region->kind;
    md->backing_fd = -1;
    if (region->kind == NXL_DRAM && region->backing_fd >= 0) {
        struct stat sb;

        /* Same-host peers map the memfd (see ucx_rkey.c md_unpack). */
        if (fstat(region->backing_fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
            md->backing_fd = region->backing_fd;
            md->backing_off = region->backing_off;
            md->dev = (uint64_t)sb.st_dev;
            md->ino = (uint64_t)sb.st_ino;
        }
    }
    memset(&mp, 0, sizeof(mp));
    mp.field_mask =
        UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
    mp.address = (void *)(uintptr_t)region->addr;
    mp.length = region->len;
    if (region->kind == NXL_VRAM) {
        mp.field_mask |= UCP_MEM_MAP_PARAM_FIELD_MEMORY_TYPE;
        mp.memory_type = UCS_MEMORY_TYPE_CUDA;
    }
    ust = ucp_mem_map(eng->ctx, &mp, &md->memh);
    if (ust != UCS_OK) {
        st = nxl__fail(
            NXL_ERR_BACKEND, "ucx: ucp_mem_map(0x%llx, %llu bytes, %s): %s",
            (unsigned long long)region->addr, (unsigned long long)region->len,
            region->kind == NXL_VRAM ? "VRAM" : "DRAM", ucs_status_string(ust));
        goto err_free;
    }
    st = nxl__regtab_add(&eng->regtab, (uint64_t)md->kind, md->addr, md->len,
                         &md->rt_slot, &md->rt_gen);
    if (st != NXL_OK) {
        ucp_mem_unmap(eng->ctx, md->memh);
        goto err_free;
    }
    if (eng->slot_md != NULL) {
        atomic_store_explicit(&eng->slot_md[md->rt_slot], md,
                              memory_order_release);
    }
    *md_p = md;
    return NXL_OK;

err_free:
    nxl__pools_free(eng->pools, md);
    return st;
}

/* be_ucx_mem_deregister revokes a region from same-host peers (its table
 * slot) and unmaps it; no transfer uses it any more. */
static void
be_ucx_mem_deregister(void *self, void *mdp)
{
    be_ucx_engine_t *eng = self;
    be_ucx_md_t *md = mdp;
    ucs_status_t ust;

    if (md == NULL) {
        return;
    }
    /* Among many regions neither the table slot nor UCP's memory handle
     * is cached, and both are reached from md: ask for both now. The
     * slot is written after the unmap, which hides its miss (written
     * first, the unlock after the store waited for it); the caller sees
     * neither step before this returns, so the order is not observable:
     * same-host peers fail from their next post after it. A prefetch past
     * the end of the handle does no harm. */
    nxl__regtab_prefetch(&eng->regtab, md->rt_slot);
    __builtin_prefetch((const char *)md->memh);
    __builtin_prefetch((const char *)md->memh + 64);
    __builtin_prefetch((const char *)md->memh + 128);
    ust = ucp_mem_unmap(eng->ctx, md->memh);
    if (ust != UCS_OK) {
        eng->host->log(NXL_LOG_WARN, "ucx: ucp_mem_unmap: %s",
                       ucs_status_string(ust));
    }
    nxl__regtab_remove(&eng->regtab, md->rt_slot);
    /* Its loopback view, if still out, frees it instead. */
    if (atomic_fetch_sub(&md->holds, 1) == 1) {
        nxl__pools_free(eng->pools, md);
    }
}

/* be_ucx_md_pack writes a region's public data: a small header (version,
 * memory kind, flags, key length), the packed remote key, for a region
 * in a memfd where that memfd is (flag BE_UCX_PUB_F_MEMFD), and last its
 * slot in this engine's registration table, which same-host peers check
 * before and during use (revocation). */
static nxl_status_t
be_ucx_md_pack(void *self, const void *mdp, nxl_blob_t *out)
{
    const be_ucx_engine_t *eng = self;
    const be_ucx_md_t *md = mdp;
    size_t extra = md->backing_fd >= 0 ? BE_UCX_PUB_MEMFD : 0;
    size_t klen;
    ucs_status_t ust;
    uint8_t *p, *e;
    void *key;

    /* Packed here, not kept: the public data is the copy the core keeps
     * (it calls md_pack once per registration), and UCP's buffer is
     * freed while it is still cached. */
    ust = ucp_rkey_pack(eng->ctx, md->memh, &key, &klen);
    if (ust != UCS_OK) {
        return nxl__fail(NXL_ERR_BACKEND, "ucx: ucp_rkey_pack: %s",
                         ucs_status_string(ust));
    }
    p = malloc(BE_UCX_PUB_HDR + klen + extra + BE_UCX_PUB_RT);
    if (p == NULL) {
        ucp_rkey_buffer_release(key);
        return nxl__fail(NXL_ERR_NOMEM, "ucx: out of memory");
    }
    p[0] = BE_UCX_PUB_VERSION;
    p[1] = (uint8_t)md->kind;
    p[2] = extra > 0 ? BE_UCX_PUB_F_MEMFD : 0;
    p[3] = 0;
    nxl__put_le32(p + 4, (uint32_t)klen);
    memcpy(p + BE_UCX_PUB_HDR, key, klen);
    ucp_rkey_buffer_release(key);
    if (extra > 0) {
        e = p + BE_UCX_PUB_HDR + klen;
        nxl__put_le32(e, (uint32_t)md->backing_fd);
        nxl__put_le32(e + 4, 0);
        nxl__put_le64(e + 8, md->backing_off);
        nxl__put_le64(e + 16, md->dev);
        nxl__put_le64(e + 24, md->ino);
    }
    e = p + BE_UCX_PUB_HDR + klen + extra;
    nxl__put_le32(e, (uint32_t)eng->regtab.fd);
    nxl__put_le32(e + 4, md->rt_slot);
    nxl__put_le64(e + 8, md->rt_gen);
    nxl__put_le64(e + 16, eng->token);
    out->data = p;
    out->len = BE_UCX_PUB_HDR + klen + extra + BE_UCX_PUB_RT;
    return NXL_OK;
}

/* be_ucx_progress: liveness and deferred failures, then every worker
 * (copy steps included); arms the workers when no service thread does. */
static unsigned
be_ucx_progress(void *self)
{
    be_ucx_engine_t *eng = self;
    unsigned n = 0, i;

    if (eng->service) {
        be_ucx_drain(eng->done_fd);
    }
    n += be_ucx_liveness(eng, 0);
    /* Notifications from same-host peers are read here, at the pace of
     * the application (util/lstream.h, NXL__LS_PACED). */
    n += nxl__ls_poll(eng->ls, NULL);
    for (i = 0; i < eng->nworkers; i++) {
        be_ucx_worker_t *w = &eng->workers[i];

        pthread_mutex_lock(&w->lock);
        n += be_ucx_progress_worker(w, true);
        if (!eng->service) {
            (void)be_ucx_worker_arm(w, true);
        }
        pthread_mutex_unlock(&w->lock);
    }
    if (atomic_load(&eng->work_pending)) {
        n += be_ucx_liveness(eng, 0);
    }
    return n;
}

/* be_ucx_event_fd: with the service thread, an eventfd it (and finishing
 * requests) signal; without it, the epoll set of worker event fds, peer
 * pidfds and the kick eventfd. */
static int
be_ucx_event_fd(void *self)
{
    be_ucx_engine_t *eng = self;

    return eng->service ? eng->done_fd : eng->epfd;
}

const nxl_backend_ops_t nxl__be_ucx_ops = {
    .abi_version = NXL_BACKEND_ABI,
    .size = sizeof(nxl_backend_ops_t),
    .name = "UCX",
    .caps =
        NXL_CAP_LOCAL | NXL_CAP_REMOTE | NXL_CAP_NOTIF | NXL_CAP_THREAD_SAFE,
    .mem_kinds = (1u << NXL_DRAM) | (1u << NXL_VRAM),
    .engine_size = sizeof(be_ucx_engine_t),
    .req_size = sizeof(be_ucx_req_t),
    .defaults = be_ucx_defaults,
    .num_defaults = NXL__ARRAY_SIZE(be_ucx_defaults),
    .init = be_ucx_init,
    .fini = be_ucx_fini,
    .mem_register = be_ucx_mem_register,
    .mem_deregister = be_ucx_mem_deregister,
    .md_pack = be_ucx_md_pack,
    .conn_info = be_ucx_conn_info,
    .peer_load = be_ucx_peer_load,
    .peer_unload = be_ucx_peer_unload,
    .md_unpack = be_ucx_md_unpack,
    .md_unload = be_ucx_md_unload,
    .prep = be_ucx_prep,
    .post = be_ucx_post,
    .check = be_ucx_check,
    .cancel = be_ucx_cancel,
    .release = be_ucx_release,
    .progress = be_ucx_progress,
    .event_fd = be_ucx_event_fd,
    .notif_send = be_ucx_notif_send,
};
