/* notif.c - the notification queue and the notification calls. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

void
nxl__notif_push(nxl_agent_t *a, const char *peer, const void *msg, size_t len)
{
    nxl__notif_rec_t rec, *p;
    size_t cap;

    rec.agent = strdup(peer ? peer : "");
    rec.msg = malloc(len ? len : 1);
    rec.len = len;
    if (rec.agent == NULL || rec.msg == NULL) {
        goto err_drop;
    }
    if (len > 0) {
        memcpy(rec.msg, msg, len);
    }
    pthread_mutex_lock(&a->notif_lock);
    if (a->nnotifs == a->notifs_cap) {
        cap = a->notifs_cap ? a->notifs_cap * 2 : 32;
        p = realloc(a->notifs, cap * sizeof(*p));
        if (p == NULL) {
            pthread_mutex_unlock(&a->notif_lock);
            goto err_drop;
        }
        a->notifs = p;
        a->notifs_cap = cap;
    }
    a->notifs[a->nnotifs++] = rec;
    pthread_mutex_unlock(&a->notif_lock);
    return;

err_drop:
    nxl__error("notification from %s (%zu bytes) dropped: out of memory",
               peer ? peer : "?", len);
    free(rec.agent);
    free(rec.msg);
}

void
nxl__notifs_fini(nxl_agent_t *a)
{
    size_t i;

    for (i = 0; i < a->nnotifs; i++) {
        free(a->notifs[i].agent);
        free(a->notifs[i].msg);
    }
    free(a->notifs);
    a->notifs = NULL;
    a->nnotifs = a->notifs_cap = 0;
}

NXL_API nxl_status_t
nxl_notifs_get(nxl_agent_t *agent, nxl_notif_list_t **list_p,
               const nxl_opts_t *opts)
{
    nxl_opts_t oc;
    nxl__notif_rec_t *recs;
    nxl_notif_list_t *list;
    size_t n, i, bytes;
    char *p;

    if (agent == NULL || list_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "notifs_get: NULL argument");
    }
    if (nxl__opts_in(&opts, &oc, "notifs_get") != NXL_OK) {
        return NXL_ERR_INVALID_PARAM;
    }
    if (!agent->progress_running) {
        nxl_agent_progress(agent);
    }
    pthread_mutex_lock(&agent->notif_lock);
    recs = agent->notifs;
    n = agent->nnotifs;
    agent->notifs = NULL;
    agent->nnotifs = agent->notifs_cap = 0;
    pthread_mutex_unlock(&agent->notif_lock);

    /* One allocation: header, items, then names and messages. */
    bytes = sizeof(*list) + n * sizeof(nxl_notif_t);
    for (i = 0; i < n; i++) {
        bytes += strlen(recs[i].agent) + 1 + recs[i].len;
    }
    list = malloc(bytes);
    if (list == NULL) {
        /* Put them back so nothing is lost. */
        for (i = 0; i < n; i++) {
            nxl__notif_push(agent, recs[i].agent, recs[i].msg, recs[i].len);
            free(recs[i].agent);
            free(recs[i].msg);
        }
        free(recs);
        return nxl__fail(NXL_ERR_NOMEM, "notifs_get: out of memory");
    }
    list->count = n;
    list->items = (nxl_notif_t *)(list + 1);
    p = (char *)(list->items + n);
    for (i = 0; i < n; i++) {
        size_t nl = strlen(recs[i].agent) + 1;

        memcpy(p, recs[i].agent, nl);
        list->items[i].agent = p;
        p += nl;
        if (recs[i].len > 0) {
            memcpy(p, recs[i].msg, recs[i].len);
        }
        list->items[i].msg = p;
        list->items[i].len = recs[i].len;
        p += recs[i].len;
        free(recs[i].agent);
        free(recs[i].msg);
    }
    free(recs);
    *list_p = list;
    return NXL_OK;
}

NXL_API void
nxl_notif_list_free(nxl_notif_list_t *list)
{
    free(list);
}

NXL_API nxl_status_t
nxl_notif_send(nxl_agent_t *agent, const char *remote, const void *msg,
               size_t len, const nxl_opts_t *opts)
{
    nxl_opts_t oc;
    nxl_status_t status = NXL_ERR_NOT_SUPPORTED;
    nxl_backend_t *be;
    nxl__peer_t *p = NULL;
    bool self;
    void *ctx;
    unsigned b;

    if (agent == NULL || remote == NULL || (len > 0 && msg == NULL)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "notif_send: NULL argument");
    }
    status = nxl__opts_in(&opts, &oc, "notif_send");
    if (status != NXL_OK) {
        return status;
    }
    status = NXL_ERR_NOT_SUPPORTED;
    self = strcmp(remote, agent->name) == 0;
    nxl__data_lock(agent);
    if (!self) {
        p = nxl__peer_find(agent, remote);
        if (p == NULL || atomic_load(&p->dead)) {
            status = nxl__fail(NXL_ERR_NOT_FOUND,
                               "notif_send: no metadata loaded for agent '%s'",
                               remote);
            goto out;
        }
    }
    for (b = 0; b < agent->nbackends; b++) {
        be = agent->backends[b];
        if (!(be->ops.caps & NXL_CAP_NOTIF) || !nxl__be_allowed(be, opts)) {
            continue;
        }
        ctx = self ? be->self_peer : p->ctx[b];
        if (ctx == NULL) {
            continue;
        }
        nxl__be_lock(be);
        status = be->ops.notif_send(be->engine, ctx, msg, len);
        nxl__be_unlock(be);
        if (status == NXL_ERR_REMOTE_DISCONNECT && p != NULL) {
            atomic_store(&p->dead, true);
        }
        goto out;
    }
    status =
        nxl__fail(NXL_ERR_NOT_SUPPORTED,
                  "notif_send: no notification backend reaches '%s'", remote);
out:
    nxl__data_unlock(agent);
    return status;
}
