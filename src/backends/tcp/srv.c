/*
 * srv.c - the TCP backend's target side: what a server connection (one we
 * accepted) does with the frames its peer sends: the hello, READ and
 * WRITE requests, notifications and (version 2) CANCEL.
 *
 * A READ is answered straight from registered memory: the reply's iovecs
 * point into it, and version 2 cuts the reply into frames of BE_TCP_CHUNK
 * bytes so that a CANCEL can end it at the next frame. A WRITE's payload
 * is received straight into registered memory (rx.c reads it). A
 * descriptor outside registered memory, or (version 3) whose key is not
 * that of the region it lies in now, refuses the request with
 * NXL_ERR_NOT_ALLOWED. The receive state machine (rx.c) calls in here on
 * the thread that reads the connection, io_lock held.
 */
#include "tcp.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* be_tcp_reply_new allocates a reply frame with room for niov more
 * iovecs (payload) and aux bytes of body after the header. */
static be_tcp_txi_t *
be_tcp_reply_new(const be_tcp_frame_t *f, size_t niov, const void *aux,
                 size_t aux_len)
{
    be_tcp_txi_t *t;
    uint8_t *hdr;

    t = malloc(sizeof(*t) + (niov + 2) * sizeof(struct iovec) +
               BE_TCP_HDR_SIZE + aux_len);
    if (t == NULL) {
        return NULL;
    }
    memset(t, 0, sizeof(*t));
    t->kind = BE_TCP_TX_RESP;
    t->iov = (struct iovec *)(t + 1);
    hdr = (uint8_t *)(t->iov + niov + 2);
    be_tcp_frame_encode(f, hdr);
    if (aux_len > 0) {
        memcpy(hdr + BE_TCP_HDR_SIZE, aux, aux_len);
    }
    t->iov[0].iov_base = hdr;
    t->iov[0].iov_len = BE_TCP_HDR_SIZE + aux_len;
    t->iovcnt = 1;
    t->nctrl = 1;
    return t;
}

/* be_tcp_regions_check checks every wire descriptor of a request (stride
 * bytes each) against the registrations and, where it carries one, its
 * region's key; *bad_p gets the first one refused. */
static bool
be_tcp_regions_check(be_tcp_engine_t *eng, const uint8_t *tab, size_t stride,
                     uint32_t n, uint32_t *bad_p)
{
    uint64_t addr, len, key;
    uint32_t i;

    for (i = 0; i < n; i++) {
        be_tcp_wdesc(tab, stride, i, &addr, &len, &key);
        if (!be_tcp_regions_cover(eng, addr, len, key, NULL)) {
            *bad_p = i;
            return false;
        }
    }
    return true;
}

/* How the I/O thread's accesses to registered memory on behalf of a peer
 * are ordered with the application's under ThreadSanitizer (the hand-off
 * goes through the peer: src/util/tsan.h, docs/design.md "Running under
 * ThreadSanitizer"). No code without TSan. */
enum { BE_TCP_TSAN_ACQUIRE, BE_TCP_TSAN_READ, BE_TCP_TSAN_RELEASE };

#if NXL__TSAN
/* be_tcp_tsan_cmp orders pieces by address. */
static int
be_tcp_tsan_cmp(const void *a, const void *b)
{
    const struct iovec *x = a, *y = b;

    return (uintptr_t)x->iov_base < (uintptr_t)y->iov_base   ? -1
           : (uintptr_t)x->iov_base > (uintptr_t)y->iov_base ? 1
                                                             : 0;
}

/* be_tcp_tsan_read records one read of every byte the n pieces cover
 * (a READ may name the same bytes many times: each is recorded once). */
static void
be_tcp_tsan_read(const struct iovec *iov, size_t n)
{
    struct iovec *v = malloc(n * sizeof(*v));
    uintptr_t lo, hi, a;
    size_t i;

    if (v == NULL) {
        return; /* unrecorded: TSan misses a race, never invents one */
    }
    memcpy(v, iov, n * sizeof(*v));
    qsort(v, n, sizeof(*v), be_tcp_tsan_cmp);
    lo = hi = 0;
    for (i = 0; i < n; i++) {
        a = (uintptr_t)v[i].iov_base;
        if (i > 0 && a <= hi) {
            hi = NXL__MAX(hi, a + v[i].iov_len);
            continue;
        }
        nxl__tsan_read((const void *)lo, hi - lo);
        lo = a;
        hi = a + v[i].iov_len;
    }
    nxl__tsan_read((const void *)lo, hi - lo);
    free(v);
}

/* be_tcp_tsan_keys acquires (or releases) the key of the region of each
 * of the n pieces (once per run of pieces in one region). */
static void
be_tcp_tsan_keys(be_tcp_engine_t *eng, const struct iovec *iov, size_t n,
                 bool acquire)
{
    uint64_t base, last = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        if (!be_tcp_regions_cover(eng, (uint64_t)(uintptr_t)iov[i].iov_base,
                                  iov[i].iov_len, 0, &base) ||
            (i > 0 && base == last)) {
            continue;
        }
        last = base;
        if (acquire) {
            nxl__tsan_acquire((const void *)(uintptr_t)base);
        } else {
            nxl__tsan_release((const void *)(uintptr_t)base);
        }
    }
}
#endif

/* be_tcp_tsan_regions, for the n pieces of registered memory in iov:
 * ACQUIRE the keys of their regions before a WRITE's payload goes into
 * them, RELEASE them once the payload is in (before the acknowledgement
 * and the notification leave). READ acquires, records the read of the
 * pieces and releases at once, when the request is accepted: the sendmsg
 * that reads them later also hands the bytes to the peer, which may tell
 * its application, which may touch the region again, before this thread
 * is back from sendmsg to release anything (so a server's sends are not
 * recorded: be_tcp_conn_flush). */
static void
be_tcp_tsan_regions(be_tcp_engine_t *eng, const struct iovec *iov, size_t n,
                    int what)
{
#if NXL__TSAN
    if (what != BE_TCP_TSAN_RELEASE) {
        be_tcp_tsan_keys(eng, iov, n, true);
    }
    if (what == BE_TCP_TSAN_READ && n > 0) {
        be_tcp_tsan_read(iov, n);
    }
    if (what != BE_TCP_TSAN_ACQUIRE) {
        be_tcp_tsan_keys(eng, iov, n, false);
    }
#else
    (void)eng;
    (void)iov;
    (void)n;
    (void)what;
#endif
}

/* be_tcp_refused logs a request the target refused for descriptor bad
 * of its table (stride bytes a descriptor). */
static void
be_tcp_refused(be_tcp_conn_t *c, const char *op, const uint8_t *tab,
               size_t stride, uint32_t bad)
{
    uint64_t addr, len, key;
    bool inside;

    be_tcp_wdesc(tab, stride, bad, &addr, &len, &key);
    inside = key != 0 && be_tcp_regions_cover(c->eng, addr, len, 0, NULL);
    nxl__warn("tcp: refused %s from '%s': descriptor %u [0x%llx, +%llu) %s", op,
              c->peer_name ? c->peer_name : "?", (unsigned)bad,
              (unsigned long long)addr, (unsigned long long)len,
              inside ? "names an earlier registration of the region there "
                       "(key mismatch: the peer's metadata is older)"
                     : "is outside registered memory");
}

/* be_tcp_srv_hello answers a client's hello (server side). */
static bool
be_tcp_srv_hello(be_tcp_conn_t *c, const uint8_t *body, size_t len)
{
    be_tcp_engine_t *eng = c->eng;
    uint8_t ack[BE_TCP_HELLO_FIXED + BE_TCP_MAX_NAME];
    be_tcp_frame_t f = {.type = BE_TCP_HELLO_ACK};
    const char *why = NULL;
    be_tcp_hello_t h;
    be_tcp_txi_t *t;
    size_t n;

    if (!be_tcp_hello_decode(body, len, &h, &why)) {
        be_tcp_conn_fail(c, NXL_ERR_PROTO, NXL_LOG_WARN, "bad hello: %s", why);
        return false;
    }
    c->peer_name = strndup(h.name, h.name_len);
    if (c->peer_name == NULL) {
        be_tcp_conn_fail(c, NXL_ERR_NOMEM, NXL_LOG_WARN, "out of memory");
        return false;
    }
    /* Both sides name their highest version; the lower one is used. */
    c->proto = (uint8_t)NXL__MIN((unsigned)h.max_version, eng->max_version);
    n = be_tcp_hello_encode_max(
        ack, sizeof(ack), eng->host->agent_name, h.stream, h.nstreams,
        eng->max_version > 1 ? (uint16_t)eng->max_version : 0);
    f.aux_len = (uint32_t)n;
    if (h.version != BE_TCP_VERSION) {
        f.status = NXL_ERR_NOT_SUPPORTED;
    }
    t = be_tcp_reply_new(&f, 0, ack, n);
    if (n == 0 || t == NULL) {
        free(t);
        be_tcp_conn_fail(c, NXL_ERR_NOMEM, NXL_LOG_WARN, "cannot answer hello");
        return false;
    }
    if (f.status != 0) {
        (void)send(c->fd, t->iov[0].iov_base, t->iov[0].iov_len,
                   MSG_NOSIGNAL | MSG_DONTWAIT);
        free(t);
        be_tcp_conn_fail(c, NXL_ERR_NOT_SUPPORTED, NXL_LOG_WARN,
                         "protocol version %u not supported",
                         (unsigned)h.version);
        return false;
    }
    c->hello_done = true;
    be_tcp_hello_unwait(c);
    be_tcp_conn_queue_reply(c, t);
    nxl__debug("tcp: '%s' connected (stream %u of %u, protocol %u)",
               c->peer_name, (unsigned)h.stream + 1, (unsigned)h.nstreams,
               (unsigned)c->proto);
    return true;
}

/* be_tcp_rresp_t is a version-2 READ reply: one transmit item whose iovecs
 * are the frames of the reply, each a header followed by its share of the
 * payload. A CANCEL rewrites the first header not yet started into the
 * last frame (status CANCELED, no data) and ends the item there. */
typedef struct be_tcp_rresp {
    be_tcp_txi_t t; /* first member: freed as a transmit item */
    uint64_t id;
    uint32_t nframes;
    uint32_t *hidx; /* iov index of each frame's header */
    uint8_t *hdrs;  /* nframes headers of BE_TCP_HDR_SIZE bytes */
} be_tcp_rresp_t;

/* Most frames one version-2 READ reply is cut into: above
 * BE_TCP_RESP_FRAMES * BE_TCP_CHUNK bytes the frames grow instead, so a
 * peer cannot make us allocate more than a few hundred KiB of headers. */
#define BE_TCP_RESP_FRAMES 4096u

/* be_tcp_rresp_new builds the version-2 reply to READ id: the n checked
 * descriptors of stride bytes at tab (total bytes) in frames of BE_TCP_CHUNK
 * bytes, all but the last flagged F_MORE. NULL when out of memory. */
static be_tcp_rresp_t *
be_tcp_rresp_new(uint64_t id, const uint8_t *tab, size_t stride, uint32_t n,
                 uint64_t total)
{
    be_tcp_frame_t f = {.type = BE_TCP_READ_RESP, .id = id};
    uint64_t chunk = BE_TCP_CHUNK, room, addr, len, key, take;
    uint32_t nfr, k = 0, i;
    be_tcp_rresp_t *r;
    size_t niov, sz;
    int cnt = 0;

    if (total / BE_TCP_RESP_FRAMES >= chunk) {
        chunk = total / BE_TCP_RESP_FRAMES + 1;
    }
    nfr = total == 0 ? 1 : (uint32_t)((total - 1) / chunk + 1);
    niov = (size_t)n + 2u * nfr;
    sz = sizeof(*r) + niov * sizeof(struct iovec) + nfr * sizeof(uint32_t) +
         (size_t)nfr * BE_TCP_HDR_SIZE;
    r = malloc(sz);
    if (r == NULL) {
        return NULL;
    }
    memset(r, 0, sizeof(*r));
    r->t.kind = BE_TCP_TX_RESP;
    r->t.owner = r;
    r->t.iov = (struct iovec *)(r + 1);
    r->hidx = (uint32_t *)(r->t.iov + niov);
    r->hdrs = (uint8_t *)(r->hidx + nfr);
    r->id = id;
    r->nframes = nfr;
    room = 0;
    for (i = 0; i <= n; i++) {
        addr = 0;
        len = 0;
        if (i < n) {
            be_tcp_wdesc(tab, stride, i, &addr, &len, &key);
        }
        do {
            if (room == 0 && k < nfr) {
                /* Next frame: its header, then up to chunk bytes. */
                f.data_len = NXL__MIN(chunk, total - (uint64_t)k * chunk);
                f.flags = k + 1 < nfr ? BE_TCP_F_MORE : 0;
                be_tcp_frame_encode(&f, r->hdrs + (size_t)k * BE_TCP_HDR_SIZE);
                r->hidx[k] = (uint32_t)cnt;
                r->t.iov[cnt].iov_base = r->hdrs + (size_t)k * BE_TCP_HDR_SIZE;
                r->t.iov[cnt].iov_len = BE_TCP_HDR_SIZE;
                cnt++;
                room = f.data_len;
                k++;
            }
            take = NXL__MIN(len, room);
            if (take > 0) {
                r->t.iov[cnt].iov_base = (void *)(uintptr_t)addr;
                r->t.iov[cnt].iov_len = (size_t)take;
                cnt++;
                addr += take;
                len -= take;
                room -= take;
            }
        } while (len > 0);
    }
    r->t.iovcnt = cnt;
    r->t.nctrl = 0; /* headers are interleaved; see be_tcp_tx_gather */
    return r;
}

/* be_tcp_srv_cancel handles a CANCEL frame (version 2): if the reply to
 * READ id is still in the send queue and a frame boundary lies ahead,
 * the reply ends there with a CANCELED frame; the frame being written is
 * finished first (the peer expects its announced length). An id that
 * matches nothing (the reply is out, or it was a WRITE) is ignored. */
void
be_tcp_srv_cancel(be_tcp_conn_t *c, uint64_t id)
{
    be_tcp_frame_t f = {
        .type = BE_TCP_READ_RESP, .id = id, .status = NXL_ERR_CANCELED};
    be_tcp_rresp_t *r = NULL;
    uint64_t dropped = 0;
    be_tcp_txi_t *t;
    uint32_t k;
    int i;

    pthread_mutex_lock(&c->tx_lock);
    for (t = c->txq_head; t != NULL; t = t->next) {
        if (t->kind == BE_TCP_TX_RESP && t->owner != NULL &&
            ((be_tcp_rresp_t *)t->owner)->id == id) {
            r = t->owner;
            break;
        }
    }
    for (k = 0; r != NULL && k < r->nframes; k++) {
        i = (int)r->hidx[k];
        if (i > r->t.idx || (i == r->t.idx && r->t.off == 0)) {
            break; /* header k not started: the reply can end here */
        }
    }
    if (r != NULL && k < r->nframes) {
        for (i = (int)r->hidx[k] + 1; i < r->t.iovcnt; i++) {
            dropped += r->t.iov[i].iov_len;
        }
        be_tcp_frame_encode(&f, r->hdrs + (size_t)k * BE_TCP_HDR_SIZE);
        r->t.iovcnt = (int)r->hidx[k] + 1;
    }
    pthread_mutex_unlock(&c->tx_lock);
    if (r != NULL && k < r->nframes) {
        atomic_fetch_add_explicit(&c->eng->srv_cut, 1, memory_order_relaxed);
        nxl__debug("tcp: '%s' canceled READ %llu: %llu bytes not sent",
                   c->peer_name ? c->peer_name : "?", (unsigned long long)id,
                   (unsigned long long)dropped);
    } else {
        atomic_fetch_add_explicit(&c->eng->srv_cut_missed, 1,
                                  memory_order_relaxed);
        nxl__debug("tcp: '%s' canceled READ %llu: nothing left to stop",
                   c->peer_name ? c->peer_name : "?", (unsigned long long)id);
    }
}

/* be_tcp_srv_read answers a READ request straight from registered
 * memory, or with NOT_ALLOWED when a descriptor lies outside it. */
static bool
be_tcp_srv_read(be_tcp_conn_t *c, const uint8_t *tab)
{
    be_tcp_frame_t f = {.type = BE_TCP_READ_RESP, .id = c->rf.id};
    size_t stride = be_tcp_wdesc_size(c->rf.flags);
    const char *why = NULL;
    uint64_t total, addr, len, key;
    uint32_t i, bad = 0, n = c->rf.ndesc;
    be_tcp_txi_t *t;
    bool ok;

    if (!be_tcp_descs_check(tab, (size_t)n * stride, n, stride, &total, &why)) {
        be_tcp_conn_fail(c, NXL_ERR_PROTO, NXL_LOG_WARN, "READ: %s", why);
        return false;
    }
    ok = be_tcp_regions_check(c->eng, tab, stride, n, &bad);
    if (ok && c->proto >= 2) {
        be_tcp_rresp_t *r = be_tcp_rresp_new(c->rf.id, tab, stride, n, total);

        if (r == NULL) {
            be_tcp_conn_fail(c, NXL_ERR_NOMEM, NXL_LOG_WARN, "out of memory");
            return false;
        }
        be_tcp_tsan_regions(c->eng, r->t.iov, (size_t)r->t.iovcnt,
                            BE_TCP_TSAN_READ);
        be_tcp_conn_queue_reply(c, &r->t);
        return true;
    }
    if (ok) {
        f.data_len = total;
    } else {
        f.status = NXL_ERR_NOT_ALLOWED;
        be_tcp_refused(c, "READ", tab, stride, bad);
    }
    t = be_tcp_reply_new(&f, ok ? n : 0, NULL, 0);
    if (t == NULL) {
        be_tcp_conn_fail(c, NXL_ERR_NOMEM, NXL_LOG_WARN, "out of memory");
        return false;
    }
    if (ok) {
        for (i = 0; i < n; i++) {
            be_tcp_wdesc(tab, stride, i, &addr, &len, &key);
            t->iov[1 + i].iov_base = (void *)(uintptr_t)addr;
            t->iov[1 + i].iov_len = (size_t)len;
        }
        t->iovcnt = 1 + (int)n;
        be_tcp_tsan_regions(c->eng, t->iov + 1, n, BE_TCP_TSAN_READ);
    }
    be_tcp_conn_queue_reply(c, t);
    return true;
}

/* be_tcp_srv_write sets up receiving a WRITE's payload into registered
 * memory, or discarding it when a descriptor lies outside. */
static bool
be_tcp_srv_write(be_tcp_conn_t *c, const uint8_t *tab)
{
    size_t stride = be_tcp_wdesc_size(c->rf.flags);
    const char *why = NULL;
    uint64_t total, addr, len, key;
    uint32_t i, bad = 0, n = c->rf.ndesc;
    struct iovec *riov;
    uint8_t *aux;
    bool ok;

    if (!be_tcp_descs_check(tab, (size_t)n * stride, n, stride, &total, &why)) {
        be_tcp_conn_fail(c, NXL_ERR_PROTO, NXL_LOG_WARN, "WRITE: %s", why);
        return false;
    }
    if (total != c->rf.data_len) {
        be_tcp_conn_fail(c, NXL_ERR_PROTO, NXL_LOG_WARN,
                         "WRITE: %llu data bytes for %llu descriptor bytes",
                         (unsigned long long)c->rf.data_len,
                         (unsigned long long)total);
        return false;
    }
    if (c->rf.aux_len > c->auxcap) {
        aux = realloc(c->aux, c->rf.aux_len);
        if (aux == NULL) {
            be_tcp_conn_fail(c, NXL_ERR_NOMEM, NXL_LOG_WARN, "out of memory");
            return false;
        }
        c->aux = aux;
        c->auxcap = c->rf.aux_len;
    }
    if (c->rf.aux_len > 0) {
        memcpy(c->aux, tab + (size_t)n * stride, c->rf.aux_len);
    }
    ok = be_tcp_regions_check(c->eng, tab, stride, n, &bad);
    if (ok && n > c->riovcap) {
        riov = realloc(c->riov, n * sizeof(*riov));
        if (riov == NULL) {
            be_tcp_conn_fail(c, NXL_ERR_NOMEM, NXL_LOG_WARN, "out of memory");
            return false;
        }
        c->riov = riov;
        c->riovcap = n;
    }
    if (ok) {
        for (i = 0; i < n; i++) {
            be_tcp_wdesc(tab, stride, i, &addr, &len, &key);
            c->riov[i].iov_base = (void *)(uintptr_t)addr;
            c->riov[i].iov_len = (size_t)len;
        }
        c->dst = c->riov;
        c->dst_n = n;
        c->rstatus = 0;
        be_tcp_tsan_regions(c->eng, c->riov, n, BE_TCP_TSAN_ACQUIRE);
    } else {
        be_tcp_refused(c, "WRITE", tab, stride, bad);
        c->dst = NULL;
        c->dst_n = 0;
        c->rstatus = NXL_ERR_NOT_ALLOWED;
        c->refused_id = c->rf.id;
    }
    c->dst_i = 0;
    c->dst_off = 0;
    c->data_left = c->rf.data_len;
    return true;
}

/* be_tcp_deliver hands a notification to the agent. */
static void
be_tcp_deliver(be_tcp_conn_t *c, const uint8_t *msg, size_t len)
{
    const nxl_backend_host_t *host = c->eng->host;

    if (host != NULL && host->notif_recv != NULL) {
        host->notif_recv(host->ctx, c->peer_name, msg, len);
    }
    be_tcp_signal(c->eng, 1, true);
}

/* be_tcp_srv_write_done finishes a WRITE whose payload has arrived: its
 * regions are released, its notification delivered (if it succeeded) and
 * its acknowledgement queued. */
bool
be_tcp_srv_write_done(be_tcp_conn_t *c)
{
    be_tcp_frame_t f = {.type = BE_TCP_WRITE_ACK, .id = c->rf.id};
    be_tcp_txi_t *t;

    if (c->rstatus == 0) {
        be_tcp_tsan_regions(c->eng, c->riov, c->dst_n, BE_TCP_TSAN_RELEASE);
    }
    if (c->rstatus == 0 && (c->rf.flags & BE_TCP_F_NOTIF)) {
        be_tcp_deliver(c, c->aux, c->rf.aux_len);
    }
    f.status = c->rstatus;
    t = be_tcp_reply_new(&f, 0, NULL, 0);
    if (t == NULL) {
        be_tcp_conn_fail(c, NXL_ERR_NOMEM, NXL_LOG_WARN, "out of memory");
        return false;
    }
    be_tcp_conn_queue_reply(c, t);
    return true;
}

/* be_tcp_on_ctrl handles a server frame's descriptors and aux. */
bool
be_tcp_on_ctrl(be_tcp_conn_t *c, const uint8_t *ctrl)
{
    switch (c->rf.type) {
    case BE_TCP_HELLO:
        c->rstate = BE_TCP_RX_HDR;
        return be_tcp_srv_hello(c, ctrl, c->rf.aux_len);
    case BE_TCP_READ_REQ:
        c->rstate = BE_TCP_RX_HDR;
        return be_tcp_srv_read(c, ctrl);
    case BE_TCP_WRITE_REQ:
        c->rstate = BE_TCP_RX_DATA;
        return be_tcp_srv_write(c, ctrl);
    default: /* BE_TCP_NOTIF */
        c->rstate = BE_TCP_RX_HDR;
        /* id 0: standalone; else the WRITE it follows, which must not
         * have been refused. */
        if (c->rf.id != 0 && c->rf.id == c->refused_id) {
            nxl__debug("tcp: dropping the notification of refused WRITE "
                       "%llu from '%s'",
                       (unsigned long long)c->rf.id,
                       c->peer_name ? c->peer_name : "?");
            return true;
        }
        be_tcp_deliver(c, ctrl, c->rf.aux_len);
        return true;
    }
}
