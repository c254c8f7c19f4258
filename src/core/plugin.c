/* plugin.c - built-in and out-of-tree backends, and backend creation. */
#include "core.h"

#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#define NXL__BUILTIN(x) extern const nxl_backend_ops_t nxl__be_##x##_ops;
#include "nxl_builtin.h"
#undef NXL__BUILTIN

static const nxl_backend_ops_t *const builtin_ops[] = {
#define NXL__BUILTIN(x) &nxl__be_##x##_ops,
#include "nxl_builtin.h"
#undef NXL__BUILTIN
    NULL,
};

/* A plugin found in NXL_PLUGIN_DIR: discovered by name, loaded on use. */
typedef struct plugin {
    char *name; /* upper case, from libnxl-<name>.so */
    char *path;
    nxl_backend_ops_t ops; /* valid once loaded */
    bool loaded;
    bool failed;
} plugin_t;

static pthread_mutex_t plugin_lock = PTHREAD_MUTEX_INITIALIZER;
static plugin_t *plugins;
static size_t nplugins;
static bool plugins_scanned;

/* --- optional-op stubs (libfabric's fi_no_* pattern) -------------------- */

static nxl_status_t
no_md_pack(void *self, const void *md, nxl_blob_t *out)
{
    (void)self, (void)md, (void)out;
    return NXL_ERR_NOT_SUPPORTED;
}

static nxl_status_t
no_conn_info(void *self, nxl_blob_t *out)
{
    (void)self, (void)out;
    return NXL_ERR_NOT_SUPPORTED;
}

static nxl_status_t
no_peer_load(void *self, const char *peer, const void *info, size_t len,
             void **ctx_p)
{
    (void)self, (void)peer, (void)info, (void)len, (void)ctx_p;
    return nxl__fail(NXL_ERR_NOT_SUPPORTED, "backend has no peer_load");
}

static void
no_peer_unload(void *self, void *ctx)
{
    (void)self, (void)ctx;
}

static nxl_status_t
no_md_unpack(void *self, void *ctx, const nxl_desc_t *desc, nxl_mem_t kind,
             const void *pub, size_t len, void **rmd_p)
{
    (void)self, (void)ctx, (void)desc, (void)kind, (void)pub, (void)len;
    (void)rmd_p;
    return nxl__fail(NXL_ERR_NOT_SUPPORTED, "backend has no md_unpack");
}

static void
no_md_unload(void *self, void *rmd)
{
    (void)self, (void)rmd;
}

static nxl_status_t
no_prep(void *self, void *req, const nxl_be_xfer_t *xfer)
{
    (void)self, (void)req, (void)xfer;
    return NXL_OK;
}

static void
no_cancel(void *self, void *req)
{
    (void)self, (void)req;
}

static unsigned
no_progress(void *self)
{
    (void)self;
    return 0;
}

static int
no_event_fd(void *self)
{
    (void)self;
    return -1;
}

static nxl_status_t
no_notif_send(void *self, void *ctx, const void *msg, size_t len)
{
    (void)self, (void)ctx, (void)msg, (void)len;
    return nxl__fail(NXL_ERR_NOT_SUPPORTED, "backend has no notifications");
}

static nxl_status_t
no_wait(void *self, void *req, int timeout_ms)
{
    (void)self, (void)req, (void)timeout_ms;
    return NXL_ERR_NOT_SUPPORTED; /* quietly: the core sleeps instead */
}

/* DEFAULT_OP gives an optional op the backend left NULL its default (one
 * of the no_* functions above: NOT_SUPPORTED or a no-op). */
#define DEFAULT_OP(ops, field, dflt)                                           \
    do {                                                                       \
        if ((ops)->field == NULL)                                              \
            (ops)->field = (dflt);                                             \
    } while (0)

/* ops_validate copies in (only its declared size, the libfabric size
 * rule) into a zeroed *out, checks the mandatory ops and defaults the
 * optional ones. */
static nxl_status_t
ops_validate(const nxl_backend_ops_t *in, nxl_backend_ops_t *out)
{
    size_t n;

    if (in->abi_version != NXL_BACKEND_ABI ||
        in->size < offsetof(nxl_backend_ops_t, init)) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "plugin %s: ABI %u size %u, this build wants ABI %u",
                         in->name ? in->name : "?", in->abi_version, in->size,
                         NXL_BACKEND_ABI);
    }
    memset(out, 0, sizeof(*out));
    n = NXL__MIN((size_t)in->size, sizeof(*out));
    memcpy(out, in, n);
    if (out->name == NULL || out->init == NULL || out->fini == NULL ||
        out->mem_register == NULL || out->mem_deregister == NULL ||
        out->post == NULL || out->check == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "plugin %s: a mandatory op is missing",
                         in->name ? in->name : "?");
    }
    if ((out->caps & NXL_CAP_REMOTE) && !(out->caps & NXL_CAP_NOTIF)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "plugin %s: REMOTE without NOTIF", out->name);
    }
    DEFAULT_OP(out, md_pack, no_md_pack);
    DEFAULT_OP(out, conn_info, no_conn_info);
    DEFAULT_OP(out, peer_load, no_peer_load);
    DEFAULT_OP(out, peer_unload, no_peer_unload);
    DEFAULT_OP(out, md_unpack, no_md_unpack);
    DEFAULT_OP(out, md_unload, no_md_unload);
    DEFAULT_OP(out, prep, no_prep);
    DEFAULT_OP(out, cancel, no_cancel);
    DEFAULT_OP(out, release, no_cancel);
    DEFAULT_OP(out, progress, no_progress);
    DEFAULT_OP(out, event_fd, no_event_fd);
    DEFAULT_OP(out, notif_send, no_notif_send);
    DEFAULT_OP(out, wait, no_wait);
    return NXL_OK;
}

/* plugins_scan lists libnxl-<name>.so files in NXL_PLUGIN_DIR once. */
static void
plugins_scan(void)
{
    const char *dir = nxl__getenv("PLUGIN_DIR");
    struct dirent *de;
    plugin_t *p;
    size_t n, i;
    DIR *d;

    if (plugins_scanned) {
        return;
    }
    plugins_scanned = true;
    if (dir == NULL || (d = opendir(dir)) == NULL) {
        return;
    }
    while ((de = readdir(d)) != NULL) {
        n = strlen(de->d_name);
        if (n <= 9 || strncmp(de->d_name, "libnxl-", 7) != 0 ||
            strcmp(de->d_name + n - 3, ".so") != 0) {
            continue;
        }
        p = realloc(plugins, (nplugins + 1) * sizeof(*p));
        if (p == NULL) {
            break;
        }
        plugins = p;
        p = &plugins[nplugins];
        memset(p, 0, sizeof(*p));
        p->name = strndup(de->d_name + 7, n - 10);
        if (p->name == NULL ||
            asprintf(&p->path, "%s/%s", dir, de->d_name) < 0) {
            free(p->name);
            break;
        }
        for (i = 0; p->name[i]; i++) {
            p->name[i] = (char)toupper((unsigned char)p->name[i]);
        }
        nplugins++;
    }
    closedir(d);
}

/* plugin_load dlopens p (never closed: RTLD_NODELETE). */
static nxl_status_t
plugin_load(plugin_t *p)
{
    nxl_backend_ini_fn ini;
    const nxl_backend_ops_t *in;
    nxl_status_t status;
    void *h;

    if (p->loaded) {
        return NXL_OK;
    }
    if (p->failed) {
        return nxl__fail(NXL_ERR_NOT_FOUND, "plugin %s failed to load before",
                         p->path);
    }
    h = dlopen(p->path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (h == NULL) {
        p->failed = true;
        return nxl__fail(NXL_ERR_NOT_FOUND, "plugin %s: %s", p->path,
                         dlerror());
    }
    *(void **)&ini = dlsym(h, NXL_BACKEND_INI_SYMBOL);
    in = (ini != NULL) ? ini() : NULL;
    if (in == NULL) {
        p->failed = true;
        return nxl__fail(NXL_ERR_NOT_FOUND, "plugin %s: no %s", p->path,
                         NXL_BACKEND_INI_SYMBOL);
    }
    status = ops_validate(in, &p->ops);
    if (status != NXL_OK) {
        p->failed = true;
        return status;
    }
    p->loaded = true;
    return NXL_OK;
}

nxl_status_t
nxl__plugin_find(const char *type, const nxl_backend_ops_t **ops_p)
{
    static nxl_backend_ops_t builtin_valid[NXL__ARRAY_SIZE(builtin_ops)];
    static bool builtin_checked[NXL__ARRAY_SIZE(builtin_ops)];
    nxl_status_t status;
    size_t i;

    if (type == NULL || type[0] == '\0') {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "plugin: empty backend type");
    }
    pthread_mutex_lock(&plugin_lock);
    for (i = 0; builtin_ops[i] != NULL; i++) {
        if (strcasecmp(builtin_ops[i]->name, type) == 0) {
            if (!builtin_checked[i]) {
                status = ops_validate(builtin_ops[i], &builtin_valid[i]);
                if (status != NXL_OK) {
                    pthread_mutex_unlock(&plugin_lock);
                    return status;
                }
                builtin_checked[i] = true;
            }
            *ops_p = &builtin_valid[i];
            pthread_mutex_unlock(&plugin_lock);
            return NXL_OK;
        }
    }
    plugins_scan();
    for (i = 0; i < nplugins; i++) {
        if (strcasecmp(plugins[i].name, type) == 0) {
            status = plugin_load(&plugins[i]);
            if (status == NXL_OK) {
                *ops_p = &plugins[i].ops;
            }
            pthread_mutex_unlock(&plugin_lock);
            return status;
        }
    }
    pthread_mutex_unlock(&plugin_lock);
    return nxl__fail(NXL_ERR_NOT_FOUND, "plugin: unknown backend type '%s'",
                     type);
}

NXL_API nxl_status_t
nxl_plugin_names(const char **names, size_t cap, size_t *count_p)
{
    size_t n = 0, i;

    if (count_p == NULL || (cap > 0 && names == NULL)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "plugin_names: NULL argument");
    }
    pthread_mutex_lock(&plugin_lock);
    for (i = 0; builtin_ops[i] != NULL; i++, n++) {
        if (n < cap) {
            names[n] = builtin_ops[i]->name;
        }
    }
    plugins_scan();
    for (i = 0; i < nplugins; i++, n++) {
        if (n < cap) {
            names[n] = plugins[i].name;
        }
    }
    pthread_mutex_unlock(&plugin_lock);
    *count_p = n;
    return NXL_OK;
}

NXL_API nxl_status_t
nxl_plugin_info(const char *type, nxl_plugin_info_t *info_p)
{
    const nxl_backend_ops_t *ops;
    nxl_status_t status;

    if (info_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "plugin_info: NULL output");
    }
    status = nxl__plugin_find(type, &ops);
    if (status != NXL_OK) {
        return status;
    }
    info_p->name = ops->name;
    info_p->caps = ops->caps;
    info_p->mem_kinds = ops->mem_kinds;
    info_p->defaults = ops->defaults;
    info_p->num_defaults = ops->num_defaults;
    return NXL_OK;
}

/* --- host callbacks ----------------------------------------------------- */

static void
host_set_error(const char *fmt, ...)
{
    char buf[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    nxl__set_error("%s", buf);
}

static void
host_log(int level, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    if (!nxl__log_enabled(level)) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    nxl__log(level, "%s", buf);
}

static void
host_notif_recv(void *ctx, const char *peer, const void *msg, size_t len)
{
    nxl__notif_push(ctx, peer, msg, len);
}

static void
host_wake(void *ctx)
{
    nxl_agent_t *a = ctx;
    uint64_t one = 1;

    if (write(a->wake_fd, &one, sizeof(one)) < 0) {
        /* The counter is saturated: the fd is readable anyway. */
    }
}

/* --- backend creation --------------------------------------------------- */

/* params_merge builds the full parameter list: defaults overridden by the
 * caller's values; an unknown key is INVALID_PARAM. */
static nxl_status_t
params_merge(const nxl_backend_ops_t *ops, const nxl_params_t *user,
             nxl_param_t **out_p)
{
    nxl_param_t *out;
    size_t i, j;

    if (user != NULL && user->count > 0 && user->items == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "backend %s: params->count is %zu but "
                         "params->items is NULL",
                         ops->name, user->count);
    }
    if (user != NULL && user->count > SIZE_MAX / sizeof(*user->items)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "backend %s: params->count %zu cannot be in memory",
                         ops->name, user->count);
    }
    out = calloc(ops->num_defaults + 1, sizeof(*out));
    if (out == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "backend: out of memory");
    }
    for (i = 0; i < ops->num_defaults; i++) {
        out[i] = ops->defaults[i];
    }
    for (j = 0; user != NULL && j < user->count; j++) {
        const nxl_param_t *u = &user->items[j];

        if (u->key == NULL || u->value == NULL) {
            free(out);
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "backend %s: parameter %zu has a NULL key or "
                             "value",
                             ops->name, j);
        }
        for (i = 0; i < ops->num_defaults; i++) {
            if (strcmp(out[i].key, u->key) == 0) {
                out[i].value = u->value;
                break;
            }
        }
        if (i == ops->num_defaults) {
            free(out);
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "backend %s: unknown parameter '%s'", ops->name,
                             u->key);
        }
    }
    *out_p = out;
    return NXL_OK;
}

NXL_API nxl_status_t
nxl_backend_create(nxl_agent_t *agent, const char *type,
                   const nxl_params_t *params, nxl_backend_t **be_p)
{
    const nxl_backend_ops_t *ops;
    nxl_param_t *merged = NULL;
    nxl_params_t mp;
    nxl_backend_t *be;
    nxl_status_t status;
    struct epoll_event ev;
    unsigned i;

    if (agent == NULL || type == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "backend_create: NULL argument");
    }
    status = nxl__plugin_find(type, &ops);
    if (status != NXL_OK) {
        return status;
    }
    status = params_merge(ops, params, &merged);
    if (status != NXL_OK) {
        return status;
    }
    nxl__ctl_lock(agent);
    for (i = 0; i < agent->nbackends; i++) {
        if (strcasecmp(agent->backends[i]->ops.name, ops->name) == 0) {
            status = nxl__fail(NXL_ERR_INVALID_PARAM,
                               "backend_create: agent %s already has a %s "
                               "backend",
                               agent->name, ops->name);
            goto err_unlock;
        }
    }
    if (agent->nbackends == NXL__MAX_BACKENDS) {
        status = nxl__fail(NXL_ERR_NOT_ALLOWED,
                           "backend_create: at most %d backends per agent",
                           NXL__MAX_BACKENDS);
        goto err_unlock;
    }
    be = calloc(1, sizeof(*be));
    if (be == NULL) {
        status = nxl__fail(NXL_ERR_NOMEM, "backend_create: out of memory");
        goto err_unlock;
    }
    be->agent = agent;
    be->ops = *ops;
    be->index = agent->nbackends;
    be->serialize = !(ops->caps & NXL_CAP_THREAD_SAFE);
    pthread_mutex_init(&be->lock, NULL);
    be->event_fd = -1;
    be->host = (nxl_backend_host_t){.size = sizeof(nxl_backend_host_t),
                                    .ctx = agent,
                                    .agent_name = agent->name,
                                    .set_error = host_set_error,
                                    .log = host_log,
                                    .notif_recv = host_notif_recv,
                                    .wake = host_wake,
                                    .device_kind = nxl_memkind_device()};
    be->engine = calloc(1, NXL__MAX(ops->engine_size, (size_t)1));
    if (be->engine == NULL) {
        status = nxl__fail(NXL_ERR_NOMEM, "backend_create: out of memory");
        goto err_free_be;
    }
    mp = (nxl_params_t){.items = merged, .count = ops->num_defaults};
    status = ops->init(be->engine, &be->host, &mp);
    if (status != NXL_OK) {
        goto err_fini;
    }
    if (ops->caps & (NXL_CAP_REMOTE | NXL_CAP_LOCAL)) {
        status = ops->conn_info(be->engine, &be->conn_info);
        if (status == NXL_ERR_NOT_SUPPORTED && !(ops->caps & NXL_CAP_REMOTE)) {
            status = NXL_OK;
        }
        if (status != NXL_OK) {
            goto err_fini;
        }
    }
    if (ops->caps & NXL_CAP_LOCAL) {
        /* Loopback: this agent is a peer of its own. */
        status = ops->peer_load(be->engine, agent->name, be->conn_info.data,
                                be->conn_info.len, &be->self_peer);
        if (status == NXL_ERR_NOT_SUPPORTED) {
            status = NXL_OK;
        }
        if (status != NXL_OK) {
            goto err_fini;
        }
    }
    be->event_fd = ops->event_fd(be->engine);
    if (be->event_fd >= 0) {
        ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = be};
        (void)epoll_ctl(agent->ep_fd, EPOLL_CTL_ADD, be->event_fd, &ev);
    }
    agent->backends[agent->nbackends++] = be;
    nxl__ctl_unlock(agent);
    free(merged);
    if (be_p != NULL) {
        *be_p = be;
    }
    return NXL_OK;

err_fini:
    if (be->self_peer != NULL) {
        ops->peer_unload(be->engine, be->self_peer);
    }
    ops->fini(be->engine);
    free(be->conn_info.data);
    free(be->engine);
err_free_be:
    pthread_mutex_destroy(&be->lock);
    free(be);
err_unlock:
    nxl__ctl_unlock(agent);
    free(merged);
    return status;
}

void
nxl__backend_destroy(nxl_backend_t *be)
{
    if (be->self_peer != NULL) {
        be->ops.peer_unload(be->engine, be->self_peer);
    }
    be->ops.fini(be->engine);
    free(be->conn_info.data);
    free(be->engine);
    pthread_mutex_destroy(&be->lock);
    free(be);
}

NXL_API const char *
nxl_backend_name(const nxl_backend_t *be)
{
    return be ? be->ops.name : NULL;
}

NXL_API nxl_backend_t *
nxl_backend_get(nxl_agent_t *agent, const char *type)
{
    unsigned i;

    if (agent == NULL || type == NULL) {
        return NULL;
    }
    for (i = 0; i < agent->nbackends; i++) {
        if (strcasecmp(agent->backends[i]->ops.name, type) == 0) {
            return agent->backends[i];
        }
    }
    return NULL;
}
