/*
 * etcd_lease.c - the etcd store's publish op and what keeps published
 * keys alive: the lease (grant, re-registration) and its keep-alive
 * thread. etcd.h describes the lease.
 */
#include "etcd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* lease_grant asks for a lease of e->ttl_s seconds. */
static nxl_status_t
lease_grant(nxl__etcd_t *e, CURL *h, bool bg, uint64_t deadline, int64_t *id_p)
{
    nxl__etcd_reply_t r;
    nxl_status_t status;
    char body[64];

    snprintf(body, sizeof(body), "{\"TTL\":\"%u\"}", e->ttl_s);
    status = nxl__etcd_call(e, h, bg, "lease grant", "/v3/lease/grant", body,
                            strlen(body), false, deadline, &r);
    if (status == NXL_OK && (r.lease_id == 0 || r.ttl <= 0)) {
        status = nxl__fail(NXL_ERR_PROTO, "etcd: lease grant answered "
                                          "without a lease");
    }
    if (status == NXL_OK) {
        *id_p = r.lease_id;
    }
    nxl__etcd_reply_fini(&r);
    return status;
}

/* kv_put writes <ns>/<agent>/<label> = val bound to lease. */
static nxl_status_t
kv_put(nxl__etcd_t *e, CURL *h, bool bg, const char *label, const uint8_t *val,
       size_t len, int64_t lease, uint64_t deadline, nxl__etcd_reply_t *r)
{
    nxl_status_t status;
    nxl__wbuf_t w;

    nxl__wbuf_init(&w);
    nxl__wbuf_reserve(&w, len / 3 * 4 + 4 * strlen(label) + 256);
    nxl__json_text(&w, "{\"key\":\"");
    nxl__etcd_key_b64(e, e->agent, label, false, &w);
    nxl__json_text(&w, "\",\"value\":\"");
    nxl__b64_encode(&w, val, len);
    nxl__json_text(&w, "\",\"lease\":");
    nxl__etcd_put_i64(&w, lease);
    nxl__json_text(&w, "}");
    status = nxl__etcd_body_text(&w);
    if (status != NXL_OK) {
        memset(r, 0, sizeof(*r));
        return status;
    }
    status = nxl__etcd_call(e, h, bg, "put", "/v3/kv/put", w.data, w.len, false,
                            deadline, r);
    nxl__wbuf_fini(&w);
    return status;
}

static bool
lease_lost(nxl_status_t status, const nxl__etcd_reply_t *r)
{
    return status == NXL_ERR_NOT_FOUND &&
           r->grpc_code == NXL__ETCD_GRPC_NOT_FOUND &&
           strstr(r->message, "lease not found") != NULL;
}

/* reregister_locked grants a new lease and writes every published key
 * again under it (e->lock held). */
static nxl_status_t
reregister_locked(nxl__etcd_t *e, CURL *h, bool bg, uint64_t deadline)
{
    nxl__etcd_reply_t r;
    nxl_status_t status;
    int64_t id = 0;
    size_t i;

    atomic_store(&e->dirty, true);
    status = lease_grant(e, h, bg, deadline, &id);
    if (status != NXL_OK) {
        return status;
    }
    atomic_store(&e->lease, id);
    for (i = 0; i < e->npubs; i++) {
        status = kv_put(e, h, bg, e->pubs[i].label, e->pubs[i].val,
                        e->pubs[i].len, id, deadline, &r);
        nxl__etcd_reply_fini(&r);
        if (status != NXL_OK) {
            return status;
        }
    }
    atomic_store(&e->dirty, false);
    nxl__log(NXL_LOG_INFO,
             "etcd: agent '%s' registered again: lease %lld, "
             "%zu keys",
             e->agent, (long long)id, e->npubs);
    return NXL_OK;
}

/* --- the keep-alive thread ----------------------------------------------- */

static uint64_t
ka_period_ms(const nxl__etcd_t *e)
{
    return NXL__MAX((uint64_t)e->ttl_s * 1000u / 3u, (uint64_t)300);
}

static void *
ka_main(void *arg)
{
    nxl__etcd_t *e = arg;
    uint64_t period = ka_period_ms(e), wait = period;
    nxl__etcd_reply_t r;
    nxl_status_t status;
    bool failing = false;
    char body[64];
    int64_t id;

    for (;;) {
        nxl__etcd_sleep(e, wait, true);
        if (atomic_load(&e->stop)) {
            break;
        }
        wait = period;
        id = atomic_load(&e->lease);
        if (id == 0) {
            continue;
        }
        snprintf(body, sizeof(body), "{\"ID\":\"%lld\"}", (long long)id);
        status = nxl__etcd_call(e, e->ka_h, true, "lease keep-alive",
                                "/v3/lease/keepalive", body, strlen(body), true,
                                nxl__now_ns() + period * 1000000u, &r);
        if (status == NXL_ERR_CANCELED) {
            nxl__etcd_reply_fini(&r);
            break;
        }
        if (status == NXL_OK && r.ttl > 0 && !atomic_load(&e->dirty)) {
            if (failing) {
                nxl__log(NXL_LOG_INFO,
                         "etcd: agent '%s': lease keep-alive "
                         "works again",
                         e->agent);
            }
            failing = false;
        } else if ((status == NXL_OK && r.ttl <= 0) || lease_lost(status, &r) ||
                   atomic_load(&e->dirty)) {
            /* The lease is gone (or a re-registration is unfinished). */
            pthread_mutex_lock(&e->lock);
            status = NXL_OK;
            if (atomic_load(&e->lease) == id || atomic_load(&e->dirty)) {
                nxl__log(NXL_LOG_WARN,
                         "etcd: agent '%s': lease %lld is "
                         "gone; registering again",
                         e->agent, (long long)id);
                status = reregister_locked(e, e->ka_h, true,
                                           nxl__now_ns() + period * 1000000u);
            }
            pthread_mutex_unlock(&e->lock);
            if (status != NXL_OK) {
                nxl__log(NXL_LOG_WARN,
                         "%s (agent '%s'; retrying every "
                         "%u ms)",
                         nxl_last_error(), e->agent, NXL__ETCD_RETRY_MS);
                wait = NXL__ETCD_RETRY_MS;
            }
            failing = status != NXL_OK;
        } else {
            if (!failing) {
                nxl__log(NXL_LOG_WARN,
                         "%s (agent '%s'; retrying every "
                         "%u ms)",
                         nxl_last_error(), e->agent, NXL__ETCD_RETRY_MS);
            }
            failing = true;
            wait = NXL__ETCD_RETRY_MS;
        }
        nxl__etcd_reply_fini(&r);
    }
    return NULL;
}

/* --- publish ------------------------------------------------------------ */

static nxl_status_t
pub_set(nxl__etcd_t *e, const char *label, const void *blob, size_t len)
{
    nxl__etcd_pub_t *p = NULL, *np;
    uint8_t *val;
    size_t i;

    val = malloc(NXL__MAX(len, (size_t)1));
    if (val == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "etcd: out of memory");
    }
    memcpy(val, blob, len);
    for (i = 0; i < e->npubs; i++) {
        if (strcmp(e->pubs[i].label, label) == 0) {
            p = &e->pubs[i];
            break;
        }
    }
    if (p == NULL) {
        if (e->npubs == e->cap) {
            np = realloc(e->pubs, (e->cap ? e->cap * 2 : 4) * sizeof(*np));
            if (np == NULL) {
                free(val);
                return nxl__fail(NXL_ERR_NOMEM, "etcd: out of memory");
            }
            e->pubs = np;
            e->cap = e->cap ? e->cap * 2 : 4;
        }
        p = &e->pubs[e->npubs];
        p->label = strdup(label);
        if (p->label == NULL) {
            free(val);
            return nxl__fail(NXL_ERR_NOMEM, "etcd: out of memory");
        }
        e->npubs++;
    } else {
        free(p->val);
    }
    p->val = val;
    p->len = len;
    return NXL_OK;
}

void
nxl__etcd_pubs_clear(nxl__etcd_t *e)
{
    size_t i;

    for (i = 0; i < e->npubs; i++) {
        free(e->pubs[i].label);
        free(e->pubs[i].val);
    }
    e->npubs = 0;
}

nxl_status_t
nxl__etcd_publish(nxl__md_store_t *s, const char *label, const void *blob,
                  size_t len, int timeout_ms)
{
    nxl__etcd_t *e = (nxl__etcd_t *)s;
    uint64_t deadline = nxl__etcd_deadline_of(timeout_ms);
    nxl__etcd_reply_t r;
    nxl_status_t status;
    int64_t id;
    int rc;

    status = nxl__etcd_check_name("the agent name", e->agent);
    if (status == NXL_OK) {
        status = nxl__etcd_check_label(label);
    }
    if (status != NXL_OK) {
        return status;
    }
    if (len > NXL__SC_MAX_PAYLOAD) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "etcd: metadata of %zu bytes "
                         "(at most %u)",
                         len, NXL__SC_MAX_PAYLOAD);
    }
    pthread_mutex_lock(&e->lock);
    id = atomic_load(&e->lease);
    if (id == 0) {
        status = lease_grant(e, e->ops, false, deadline, &id);
        if (status != NXL_OK) {
            goto out;
        }
        atomic_store(&e->lease, id);
        if (!e->ka_running) {
            rc = pthread_create(&e->ka_tid, NULL, ka_main, e);
            if (rc != 0) {
                status = nxl__fail_errno(rc, "etcd: keep-alive thread");
                goto out;
            }
            e->ka_running = true;
        }
    }
    status = kv_put(e, e->ops, false, label, blob, len, id, deadline, &r);
    if (lease_lost(status, &r)) {
        /* Expired while etcd was out of reach: register everything again
         * before the keep-alive thread notices. */
        nxl__etcd_reply_fini(&r);
        status = reregister_locked(e, e->ops, false, deadline);
        if (status == NXL_OK) {
            status = kv_put(e, e->ops, false, label, blob, len,
                            atomic_load(&e->lease), deadline, &r);
        } else {
            memset(&r, 0, sizeof(r));
        }
    }
    nxl__etcd_reply_fini(&r);
    if (status == NXL_OK) {
        status = pub_set(e, label, blob, len);
    }
out:
    pthread_mutex_unlock(&e->lock);
    return status;
}
