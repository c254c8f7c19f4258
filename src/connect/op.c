/*
 * op.c - the operations and their state machines (Dynamo's nixl_connect,
 * reference/dynamo-components.md §12.6):
 *
 *   passive  (readable, writable)
 *     create: register locals, draw a uuid4 key, snapshot the metadata
 *     INITIALIZED --the key arrives (connector demux)--> COMPLETE
 *     INITIALIZED --cancel / release--> CANCELLED
 *
 *   active   (read, write)
 *     begin: decode, check kinds and sizes, register locals, load the peer,
 *            make the transfer (notification = the key)
 *     UNINITIALIZED --first poll: post--> COMPLETE | INITIALIZED | ERRORED
 *     INITIALIZED/IN_PROGRESS --poll: check--> COMPLETE | IN_PROGRESS |
 *                                              ERRORED
 *     UNINITIALIZED/INITIALIZED/IN_PROGRESS --cancel / release--> CANCELLED
 *
 * Terminal states are sticky. Waiting sleeps: a passive waiter on the
 * agent's fd (one thread at a time; the others on the connector's
 * condition variable, woken when a drain routes a key or the sleeper
 * returns), an active one in nxl_xfer_wait. Sleeps are cut into slices of
 * WAIT_SLICE_MS so that a wake-up another thread consumed (a progress
 * thread, or a transfer wait that drained the agent fd first) costs at
 * most one slice, and so that cancel can wait for an active waiter to
 * leave the transfer it releases.
 */
#include "connect.h"

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_SLICE_MS 50

static bool
terminal(int s)
{
    return s == NXL_CONNECT_COMPLETE || s == NXL_CONNECT_CANCELLED ||
           s == NXL_CONNECT_ERRORED;
}

void
nxl__op_complete(struct nxl_connect_op *op)
{
    int s = atomic_load(&op->state);

    if (!terminal(s)) {
        atomic_store(&op->state, NXL_CONNECT_COMPLETE);
    }
}

/* op_alloc makes an operation object with a copy of n descriptors. */
static nxl_status_t
op_alloc(nxl_connector_t *conn, nxl_connect_kind_t kind, bool passive,
         const nxl_connect_desc_t *cd, size_t n, nxl_connect_op_t **op_p)
{
    nxl_connect_op_t *op;

    op = calloc(1, sizeof(*op));
    if (op == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "connect: out of memory");
    }
    op->cdescs = malloc(n * sizeof(*op->cdescs));
    op->regs = calloc(n, sizeof(*op->regs));
    if (op->cdescs == NULL || op->regs == NULL) {
        goto err_free;
    }
    if (pthread_mutex_init(&op->lock, NULL) != 0) {
        goto err_free;
    }
    if (pthread_cond_init(&op->cond, NULL) != 0) {
        pthread_mutex_destroy(&op->lock);
        goto err_free;
    }
    memcpy(op->cdescs, cd, n * sizeof(*cd));
    op->n = n;
    op->conn = conn;
    op->kind = kind;
    op->passive = passive;
    op->device = cd[0].device;
    atomic_init(&op->state, NXL_CONNECT_UNINITIALIZED);
    *op_p = op;
    return NXL_OK;

err_free:
    free(op->cdescs);
    free(op->regs);
    free(op);
    return nxl__fail(NXL_ERR_NOMEM, "connect: out of memory");
}

/* op_free frees op's memory (nothing registered or loaded any more). */
static void
op_free(nxl_connect_op_t *op)
{
    pthread_cond_destroy(&op->cond);
    pthread_mutex_destroy(&op->lock);
    free(op->cdescs);
    free(op->descs);
    free(op->regs);
    free(op->zmd);
    free(op);
}

/* op_error moves op to ERRORED with status st and the message (op lock or
 * sole ownership held). */
static void op_error(nxl_connect_op_t *op, nxl_status_t st, const char *fmt,
                     ...) __attribute__((format(printf, 3, 4)));

static void
op_error(nxl_connect_op_t *op, nxl_status_t st, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(op->error_text, sizeof(op->error_text), fmt, ap);
    va_end(ap);
    op->error = st;
    atomic_store(&op->state, NXL_CONNECT_ERRORED);
}

/* ---- passive ------------------------------------------------------------- */

/* op_snapshot compresses the agent metadata a peer needs for op: its own
 * registrations and the connection info (all of the agent's metadata when
 * op uses memory registered outside the connector, whose extent is not
 * known here). Connector lock held. */
static nxl_status_t
op_snapshot(nxl_connector_t *conn, nxl_connect_op_t *op)
{
    nxl_desc_t *u;
    nxl_blob_t md = {NULL, 0};
    nxl_opts_t opts;
    nxl_status_t st;
    size_t i, j, nu = 0;
    bool full = false;

    u = malloc(op->n * sizeof(*u));
    if (u == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "connect: out of memory");
    }
    for (i = 0; i < op->n && !full; i++) {
        nxl__creg_t *reg = op->regs[i];

        if (reg == NULL) {
            full = true;
            break;
        }
        for (j = 0; j < i && op->regs[j] != reg; j++) {
        }
        if (j == i) {
            u[nu++] =
                (nxl_desc_t){reg->node.addr, reg->node.len, reg->node.dev};
        }
    }
    if (full) {
        st = nxl_md_local(conn->agent, &md);
    } else {
        nxl_dlist_t dl = {op->mem, u, nu};

        nxl_opts_init(&opts);
        opts.include_conn_info = 1;
        st = nxl_md_local_partial(conn->agent, &dl, &opts, &md);
    }
    free(u);
    if (st != NXL_OK) {
        return st;
    }
    st = nxl__md_deflate(md.data, md.len, &op->zmd, &op->zmd_len);
    nxl_blob_free(&md);
    return st;
}

/* passive_create is readable_create / writable_create. */
static nxl_status_t
passive_create(nxl_connector_t *conn, nxl_connect_kind_t kind,
               const nxl_connect_desc_t *descs, size_t n,
               nxl_connect_op_t **op_p)
{
    const char *who = kind == NXL_CONNECT_READ ? "connect_readable_create"
                                               : "connect_writable_create";
    nxl_connect_op_t *op;
    nxl_status_t st;

    if (conn == NULL || op_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "%s: NULL argument", who);
    }
    if (descs == NULL || n == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Argument `local_descriptors` must not be an empty "
                         "list.");
    }
    st = op_alloc(conn, kind, true, descs, n, &op);
    if (st != NXL_OK) {
        return st;
    }
    st = nxl__conn_descs(who, descs, n, &op->descs, &op->mem);
    if (st != NXL_OK) {
        goto err_free;
    }
    st = nxl_connect_uuid4(op->key);
    if (st != NXL_OK) {
        goto err_free;
    }
    op->key_len = strlen(op->key);

    pthread_mutex_lock(&conn->lock);
    st = nxl__conn_reg_acquire(conn, op->mem, op->descs, n, op->regs);
    if (st != NXL_OK) {
        goto err_unlock;
    }
    st = op_snapshot(conn, op);
    if (st != NXL_OK) {
        goto err_regs;
    }
    atomic_store(&op->state, NXL_CONNECT_INITIALIZED);
    st = nxl__conn_key_add(conn, op);
    if (st != NXL_OK) {
        goto err_regs;
    }
    nxl__conn_link(conn, op);
    pthread_mutex_unlock(&conn->lock);
    *op_p = op;
    return NXL_OK;

err_regs:
    (void)nxl__conn_reg_release(conn, op->regs, n);
err_unlock:
    pthread_mutex_unlock(&conn->lock);
err_free:
    op_free(op);
    return st;
}

NXL_API nxl_status_t
nxl_connect_readable_create(nxl_connector_t *conn,
                            const nxl_connect_desc_t *descs, size_t n,
                            nxl_connect_op_t **op_p)
{
    return passive_create(conn, NXL_CONNECT_READ, descs, n, op_p);
}

NXL_API nxl_status_t
nxl_connect_writable_create(nxl_connector_t *conn,
                            const nxl_connect_desc_t *descs, size_t n,
                            nxl_connect_op_t **op_p)
{
    return passive_create(conn, NXL_CONNECT_WRITE, descs, n, op_p);
}

NXL_API nxl_status_t
nxl_connect_op_metadata(const nxl_connect_op_t *op, int hex, nxl_blob_t *json_p)
{
    nxl_rdma_metadata_t md;
    nxl__wbuf_t s, w;
    nxl_status_t st;

    if (op == NULL || json_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connect_op_metadata: NULL argument");
    }
    if (!op->passive) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connect_op_metadata: only readable and writable "
                         "operations publish metadata");
    }
    nxl__wbuf_init(&s);
    nxl__md_str_append(&s, op->zmd, op->zmd_len, hex != 0);
    nxl__wbuf_u8(&s, '\0');
    if (s.failed) {
        nxl__wbuf_fini(&s);
        return nxl__fail(NXL_ERR_NOMEM, "connect: out of memory");
    }
    md = (nxl_rdma_metadata_t){
        .descriptors = op->cdescs,
        .num_descriptors = op->n,
        .nixl_metadata = (const char *)s.data,
        .notification_key = op->key,
        .operation_kind = op->kind,
    };
    nxl__wbuf_init(&w);
    nxl__rdma_md_json(&w, &md);
    nxl__wbuf_fini(&s);
    st = nxl__json_finish(&w, json_p);
    return st;
}

/* ---- active -------------------------------------------------------------- */

/* size_check is Dynamo's ActiveOperation check, after it unwraps lists of
 * one descriptor. */
static nxl_status_t
size_check(const nxl_connect_desc_t *l, size_t n, const nxl_connect_desc_t *r,
           size_t m)
{
    size_t i;

    if ((n == 1) != (m == 1)) {
        return nxl__fail(NXL_ERR_MISMATCH,
                         "Both `local_descriptors` and `remote_descriptors` "
                         "must be either lists or single descriptors.");
    }
    if (n == 1) {
        if (l[0].size != r[0].size) {
            return nxl__fail(NXL_ERR_MISMATCH,
                             "Local and remote descriptors must be the same "
                             "size. %" PRIu64 " != %" PRIu64 ".",
                             l[0].size, r[0].size);
        }
        return NXL_OK;
    }
    if (n != m) {
        return nxl__fail(NXL_ERR_MISMATCH,
                         "When `local_descriptors` and `remote_descriptors` "
                         "are lists, they must have the same length. %zu != "
                         "%zu.",
                         n, m);
    }
    for (i = 0; i < n; i++) {
        if (l[i].size != r[i].size) {
            return nxl__fail(NXL_ERR_MISMATCH,
                             "Descriptor length mismatch: `local_descriptors` "
                             "and `remote_descriptors` descriptor at %zu must "
                             "have the same size. %" PRIu64 " != %" PRIu64 ".",
                             i, l[i].size, r[i].size);
        }
    }
    return NXL_OK;
}

nxl_status_t
nxl__connect_begin(nxl_connector_t *conn, nxl_connect_kind_t kind,
                   const nxl_connect_desc_t *local, size_t n,
                   const nxl_rdma_metadata_t *md, nxl_connect_op_t **op_p)
{
    const nxl_connect_desc_t *rd = md->descriptors;
    size_t m = md->num_descriptors, i;
    nxl_desc_t *rdescs = NULL;
    nxl_connect_op_t *op;
    nxl_blob_t amd = {NULL, 0};
    nxl_dlist_t ldl, rdl;
    nxl_opts_t opts;
    nxl_status_t st;

    /* Dynamo's order: the pairing, the remote list, the local list, the
     * sizes, then the side effects. */
    if (md->operation_kind != kind) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "%s",
                         kind == NXL_CONNECT_READ
                             ? "Cannot create a `dynamo.nixl_connect."
                               "ReadOperation` to read from a remote "
                               "`dynamo.nixl_connect.WritableOperation`."
                             : "Cannot create a `WriteOperation` to write to "
                               "a remote `ReadableOperation`.");
    }
    if (m == 0) {
        return nxl__fail(NXL_ERR_PROTO,
                         "Request descriptor must contain at least one "
                         "serialized descriptor.");
    }
    if (local == NULL || n == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Argument `local_descriptors` must not be an empty "
                         "list.");
    }
    st = size_check(local, n, rd, m);
    if (st != NXL_OK) {
        return st;
    }
    for (i = 1; i < m; i++) {
        if (rd[i].device != rd[0].device) {
            return nxl__fail(NXL_ERR_PROTO,
                             "All local descriptors must have the same memory "
                             "type.");
        }
    }
    st = op_alloc(conn, kind, false, local, n, &op);
    if (st != NXL_OK) {
        return st;
    }
    st = nxl__conn_descs(kind == NXL_CONNECT_READ ? "connect_read_begin"
                                                  : "connect_write_begin",
                         local, n, &op->descs, &op->mem);
    if (st != NXL_OK) {
        goto err_free;
    }
    rdescs = malloc(m * sizeof(*rdescs));
    if (rdescs == NULL) {
        st = nxl__fail(NXL_ERR_NOMEM, "connect: out of memory");
        goto err_free;
    }
    for (i = 0; i < m; i++) {
        rdescs[i] = (nxl_desc_t){rd[i].ptr, rd[i].size, rd[i].device_id};
    }
    memcpy(op->key, md->notification_key, strlen(md->notification_key) + 1);
    op->key_len = strlen(op->key);
    st = nxl_connect_md_decode(md->nixl_metadata, strlen(md->nixl_metadata), 0,
                               &amd);
    if (st != NXL_OK) {
        goto err_free;
    }

    /* Under the connector lock from the load to the link, so that no other
     * operation's load invalidates the peer in between. */
    pthread_mutex_lock(&conn->lock);
    st = nxl__conn_reg_acquire(conn, op->mem, op->descs, n, op->regs);
    if (st != NXL_OK) {
        goto err_unlock;
    }
    st = nxl__conn_remote_acquire(conn, amd.data, amd.len, op->remote_name,
                                  &op->remote);
    if (st != NXL_OK) {
        goto err_regs;
    }
    nxl_opts_init(&opts);
    opts.has_notif = 1;
    opts.notif = op->key;
    opts.notif_len = op->key_len;
    ldl = (nxl_dlist_t){op->mem, op->descs, n};
    rdl = (nxl_dlist_t){nxl__device_mem(rd[0].device), rdescs, m};
    st = nxl_xfer_create(conn->agent,
                         kind == NXL_CONNECT_READ ? NXL_READ : NXL_WRITE, &ldl,
                         &rdl, op->remote_name, &opts, &op->xfer);
    if (st != NXL_OK) {
        goto err_remote;
    }
    nxl__conn_link(conn, op);
    pthread_mutex_unlock(&conn->lock);
    nxl_blob_free(&amd);
    free(rdescs);
    *op_p = op;
    return NXL_OK;

err_remote:
    nxl__conn_remote_release(conn, op->remote);
err_regs:
    (void)nxl__conn_reg_release(conn, op->regs, n);
err_unlock:
    pthread_mutex_unlock(&conn->lock);
err_free:
    nxl_blob_free(&amd);
    free(rdescs);
    op_free(op);
    return st;
}

/* json_begin decodes rdma_json and begins an operation of kind. */
static nxl_status_t
json_begin(nxl_connector_t *conn, nxl_connect_kind_t kind,
           const nxl_connect_desc_t *local, size_t n, const void *rdma_json,
           size_t len, nxl_connect_op_t **op_p)
{
    nxl_rdma_metadata_t *md;
    nxl_status_t st;

    if (conn == NULL || op_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connect_%s_begin: NULL argument",
                         kind == NXL_CONNECT_READ ? "read" : "write");
    }
    st = nxl_rdma_metadata_decode(rdma_json, len, &md);
    if (st != NXL_OK) {
        return st;
    }
    st = nxl__connect_begin(conn, kind, local, n, md, op_p);
    nxl_rdma_metadata_free(md);
    return st;
}

NXL_API nxl_status_t
nxl_connect_read_begin(nxl_connector_t *conn, const nxl_connect_desc_t *local,
                       size_t n, const void *rdma_json, size_t len,
                       nxl_connect_op_t **op_p)
{
    return json_begin(conn, NXL_CONNECT_READ, local, n, rdma_json, len, op_p);
}

NXL_API nxl_status_t
nxl_connect_write_begin(nxl_connector_t *conn, const nxl_connect_desc_t *local,
                        size_t n, const void *rdma_json, size_t len,
                        nxl_connect_op_t **op_p)
{
    return json_begin(conn, NXL_CONNECT_WRITE, local, n, rdma_json, len, op_p);
}

NXL_API nxl_status_t
nxl_connect_begin_md(nxl_connector_t *conn, nxl_connect_kind_t kind,
                     const nxl_connect_desc_t *local, size_t n,
                     const nxl_rdma_metadata_t *md, nxl_connect_op_t **op_p)
{
    nxl_status_t st;

    if (conn == NULL || md == NULL || op_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connect_begin_md: NULL argument");
    }
    if (kind != NXL_CONNECT_READ && kind != NXL_CONNECT_WRITE) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Argument `operation_kind` must be either `READ` or "
                         "`WRITE`.");
    }
    st = nxl__rdma_md_check(NXL_ERR_INVALID_PARAM, md);
    if (st != NXL_OK) {
        return st;
    }
    return nxl__connect_begin(conn, kind, local, n, md, op_p);
}

/* active_step posts (first poll) or checks the transfer (op lock held). */
static void
active_step(nxl_connect_op_t *op)
{
    const char *verb = op->kind == NXL_CONNECT_READ ? "READ from" : "WRITE to";
    int s = atomic_load(&op->state);
    nxl_status_t st;

    if (terminal(s)) {
        return;
    }
    if (s == NXL_CONNECT_UNINITIALIZED) {
        st = nxl_xfer_post(op->xfer, NULL);
        if (st == NXL_OK) {
            atomic_store(&op->state, NXL_CONNECT_COMPLETE);
        } else if (st == NXL_IN_PROG) {
            atomic_store(&op->state, NXL_CONNECT_INITIALIZED);
        } else {
            op_error(op, st, "connect: %s '%s' failed to post: %s", verb,
                     op->remote_name, nxl_last_error());
        }
        return;
    }
    st = nxl_xfer_status(op->xfer);
    if (st == NXL_OK) {
        atomic_store(&op->state, NXL_CONNECT_COMPLETE);
    } else if (st == NXL_IN_PROG) {
        atomic_store(&op->state, NXL_CONNECT_IN_PROGRESS);
    } else {
        op_error(op, st, "connect: %s '%s' failed: %s", verb, op->remote_name,
                 nxl_last_error());
    }
}

/* ---- polling, waiting, cancelling ---------------------------------------- */

NXL_API nxl_status_t
nxl_connect_op_status(nxl_connect_op_t *op, nxl_connect_state_t *state_p)
{
    nxl_status_t st;
    int s;

    if (op == NULL || state_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connect_op_status: NULL argument");
    }
    s = atomic_load(&op->state);
    if (!terminal(s)) {
        if (op->passive) {
            pthread_mutex_lock(&op->conn->lock);
            st = nxl__conn_drain(op->conn);
            pthread_mutex_unlock(&op->conn->lock);
            if (st != NXL_OK) {
                return st;
            }
        } else {
            pthread_mutex_lock(&op->lock);
            active_step(op);
            pthread_mutex_unlock(&op->lock);
        }
        s = atomic_load(&op->state);
    }
    *state_p = (nxl_connect_state_t)s;
    return NXL_OK;
}

/* wait_result turns a terminal state into wait's return. */
static nxl_status_t
wait_result(nxl_connect_op_t *op, int s)
{
    if (s == NXL_CONNECT_COMPLETE) {
        return NXL_OK;
    }
    if (s == NXL_CONNECT_CANCELLED) {
        return nxl__fail(NXL_ERR_CANCELED, "connect: the operation was "
                                           "cancelled");
    }
    return nxl__fail(op->error, "%s", op->error_text);
}

/* wait_left returns the milliseconds left of timeout_ms since start_ns
 * (-1 for no timeout). */
static int
wait_left(uint64_t start_ns, int timeout_ms)
{
    uint64_t spent;

    if (timeout_ms < 0) {
        return -1;
    }
    spent = (nxl__now_ns() - start_ns) / 1000000u;
    return spent >= (uint64_t)timeout_ms ? 0 : (int)(timeout_ms - spent);
}

/* passive_wait: drain, then sleep on the agent fd (one thread) or the
 * connector's condition (the others), until op is terminal. */
static nxl_status_t
passive_wait(nxl_connect_op_t *op, uint64_t start, int timeout_ms)
{
    nxl_connector_t *conn = op->conn;
    struct pollfd pfd = {.fd = nxl_agent_fd(conn->agent), .events = POLLIN};
    struct timespec ts;
    nxl_status_t st;
    int s, left, slice;

    pthread_mutex_lock(&conn->lock);
    for (;;) {
        st = nxl__conn_drain(conn);
        if (st != NXL_OK) {
            pthread_mutex_unlock(&conn->lock);
            return st;
        }
        s = atomic_load(&op->state);
        if (terminal(s)) {
            pthread_mutex_unlock(&conn->lock);
            return wait_result(op, s);
        }
        left = wait_left(start, timeout_ms);
        if (left == 0) {
            pthread_mutex_unlock(&conn->lock);
            return nxl__fail(NXL_ERR_TIMEOUT,
                             "connect: operation still waiting for its "
                             "notification after %d ms",
                             timeout_ms);
        }
        slice = (left < 0 || left > WAIT_SLICE_MS) ? WAIT_SLICE_MS : left;
        if (!conn->poller) {
            conn->poller = true;
            pthread_mutex_unlock(&conn->lock);
            (void)poll(&pfd, 1, slice);
            pthread_mutex_lock(&conn->lock);
            conn->poller = false;
            pthread_cond_broadcast(&conn->cond);
        } else {
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += (long)slice * 1000000L;
            ts.tv_sec += ts.tv_nsec / 1000000000L;
            ts.tv_nsec %= 1000000000L;
            (void)pthread_cond_timedwait(&conn->cond, &conn->lock, &ts);
        }
    }
}

NXL_API nxl_status_t
nxl_connect_op_wait(nxl_connect_op_t *op, int timeout_ms)
{
    uint64_t start = nxl__now_ns();
    nxl_xfer_t *x;
    int s, left, slice;

    if (op == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "connect_op_wait: NULL op");
    }
    if (op->passive) {
        return passive_wait(op, start, timeout_ms);
    }
    pthread_mutex_lock(&op->lock);
    for (;;) {
        active_step(op);
        s = atomic_load(&op->state);
        if (terminal(s)) {
            pthread_mutex_unlock(&op->lock);
            return wait_result(op, s);
        }
        left = wait_left(start, timeout_ms);
        if (left == 0) {
            pthread_mutex_unlock(&op->lock);
            return nxl__fail(NXL_ERR_TIMEOUT,
                             "connect: transfer still in progress after %d "
                             "ms",
                             timeout_ms);
        }
        slice = (left < 0 || left > WAIT_SLICE_MS) ? WAIT_SLICE_MS : left;
        x = op->xfer;
        op->waiters++;
        pthread_mutex_unlock(&op->lock);
        (void)nxl_xfer_wait(x, slice);
        pthread_mutex_lock(&op->lock);
        if (--op->waiters == 0) {
            pthread_cond_broadcast(&op->cond);
        }
    }
}

NXL_API nxl_status_t
nxl_connect_op_cancel(nxl_connect_op_t *op)
{
    nxl_connector_t *conn;
    nxl_xfer_t *x;
    int s;

    if (op == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "connect_op_cancel: NULL op");
    }
    conn = op->conn;
    if (op->passive) {
        pthread_mutex_lock(&conn->lock);
        s = atomic_load(&op->state);
        if (!terminal(s)) {
            nxl__conn_key_remove(conn, op);
            atomic_store(&op->state, NXL_CONNECT_CANCELLED);
            pthread_cond_broadcast(&conn->cond);
        }
        pthread_mutex_unlock(&conn->lock);
        return NXL_OK;
    }
    pthread_mutex_lock(&op->lock);
    s = atomic_load(&op->state);
    if (s == NXL_CONNECT_ERRORED) {
        pthread_mutex_unlock(&op->lock);
        return nxl__fail(NXL_ERR_NOT_ALLOWED,
                         "Operation is errored, unable to cancel the "
                         "operation.");
    }
    if (terminal(s)) {
        pthread_mutex_unlock(&op->lock);
        return NXL_OK;
    }
    atomic_store(&op->state, NXL_CONNECT_CANCELLED);
    while (op->waiters > 0) {
        pthread_cond_wait(&op->cond, &op->lock);
    }
    x = op->xfer;
    op->xfer = NULL;
    pthread_mutex_unlock(&op->lock);
    nxl_xfer_release(x); /* cancels; returns once the backend let go */
    return NXL_OK;
}

NXL_API void
nxl_connect_op_release(nxl_connect_op_t *op)
{
    nxl_connector_t *conn;
    nxl_status_t st;
    int s;

    if (op == NULL) {
        return;
    }
    conn = op->conn;
    s = atomic_load(&op->state);
    if (!op->passive) {
        if (!terminal(s)) {
            atomic_store(&op->state, NXL_CONNECT_CANCELLED);
        }
        nxl_xfer_release(op->xfer);
        op->xfer = NULL;
    }
    pthread_mutex_lock(&conn->lock);
    if (op->passive) {
        nxl__conn_key_remove(conn, op);
        if (!terminal(s)) {
            atomic_store(&op->state, NXL_CONNECT_CANCELLED);
        }
        pthread_cond_broadcast(&conn->cond);
    }
    nxl__conn_unlink(conn, op);
    st = nxl__conn_reg_release(conn, op->regs, op->n);
    if (st != NXL_OK) {
        nxl__warn("connect: releasing an operation: %s", nxl_last_error());
    }
    nxl__conn_remote_release(conn, op->remote);
    op->remote = NULL;
    pthread_mutex_unlock(&conn->lock);
    op_free(op);
}

NXL_API nxl_status_t
nxl_connect_op_info(const nxl_connect_op_t *op, nxl_connect_op_info_t *info_p)
{
    int s;

    if (op == NULL || info_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "connect_op_info: NULL argument");
    }
    s = atomic_load(&((nxl_connect_op_t *)op)->state);
    *info_p = (nxl_connect_op_info_t){
        .kind = op->kind,
        .passive = op->passive,
        .state = (nxl_connect_state_t)s,
        .error = s == NXL_CONNECT_ERRORED ? op->error : NXL_OK,
        .error_text = s == NXL_CONNECT_ERRORED ? op->error_text : "",
        .notification_key = op->key,
        .remote_agent = op->passive ? "" : op->remote_name,
        .num_descriptors = op->n,
    };
    return NXL_OK;
}
