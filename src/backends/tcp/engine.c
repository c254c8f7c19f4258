/*
 * engine.c - the TCP backend's ops table: parameters, init/fini, the
 * registration index the server checks requests against, conn info and
 * peers (connect + hello handshake).
 */
#include "tcp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* Init stages, so fini undoes exactly what init did. */
enum {
    BE_TCP_STAGE_NONE = 0,
    BE_TCP_STAGE_FDS,    /* fds set to -1, params parsed */
    BE_TCP_STAGE_LOCKS,  /* mutex and rwlock initialised */
    BE_TCP_STAGE_RUNNING /* listening, I/O thread started */
};

static const nxl_param_t be_tcp_defaults[] = {
    {"bind_addr", "0.0.0.0"},
    {"port", "0"},
    {"advertise_addr", ""},
    {"num_streams", "1"},
    {"connect_timeout_ms", "2000"},
    {"request_timeout_ms", "0"},
    {"stripe_min_bytes", "1048576"},
    {"hello_timeout_ms", "5000"},
    {"max_version", "3"},
    {"wait_spin_us", "50"},
    {"region_keys", "1"},
};

/* be_tcp_parse_addr copies an address parameter after checking it. */
static nxl_status_t
be_tcp_parse_addr(const char *key, const char *val, char *out)
{
    size_t n = val ? strlen(val) : 0, i;

    if (n >= BE_TCP_ADDR_MAX) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "tcp: %s too long", key);
    }
    for (i = 0; i < n; i++) {
        if (val[i] <= ' ' || val[i] == '/' || val[i] > '~') {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "tcp: %s=\"%s\": not an address", key, val);
        }
    }
    memcpy(out, val ? val : "", n + 1);
    return NXL_OK;
}

/* be_tcp_params applies params (keys are those of be_tcp_defaults). */
static nxl_status_t
be_tcp_params(be_tcp_engine_t *eng, const nxl_params_t *params)
{
    const nxl_param_t *p;
    nxl_status_t st = NXL_OK;
    uint64_t v;
    size_t i;

    strcpy(eng->bind_addr, "0.0.0.0");
    eng->advertise[0] = '\0';
    eng->port = 0;
    eng->num_streams = 1;
    eng->connect_timeout_ms = 2000;
    eng->request_timeout_ms = 0;
    eng->hello_timeout_ms = 5000;
    eng->max_version = BE_TCP_PROTO_MAX;
    eng->region_keys = true;
    eng->stripe_min = 1u << 20;
    eng->wait_spin_ns = 50000;
    for (i = 0; params != NULL && i < params->count && st == NXL_OK; i++) {
        p = &params->items[i];
        if (p->key == NULL) {
            continue;
        }
        if (strcmp(p->key, "bind_addr") == 0) {
            st = be_tcp_parse_addr(p->key, p->value, eng->bind_addr);
            if (st == NXL_OK && eng->bind_addr[0] == '\0') {
                strcpy(eng->bind_addr, "0.0.0.0");
            }
        } else if (strcmp(p->key, "advertise_addr") == 0) {
            st = be_tcp_parse_addr(p->key, p->value, eng->advertise);
        } else if (strcmp(p->key, "port") == 0) {
            st = nxl__param_u64("tcp", p->key, p->value, false, 0, 65535, &v);
            eng->port = (uint16_t)v;
        } else if (strcmp(p->key, "num_streams") == 0) {
            st = nxl__param_u64("tcp", p->key, p->value, false, 1, 16, &v);
            eng->num_streams = (unsigned)v;
        } else if (strcmp(p->key, "connect_timeout_ms") == 0) {
            st = nxl__param_u64("tcp", p->key, p->value, false, 1, 3600000, &v);
            eng->connect_timeout_ms = (int)v;
        } else if (strcmp(p->key, "request_timeout_ms") == 0) {
            st =
                nxl__param_u64("tcp", p->key, p->value, false, 0, 86400000, &v);
            eng->request_timeout_ms = (int)v;
        } else if (strcmp(p->key, "hello_timeout_ms") == 0) {
            st = nxl__param_u64("tcp", p->key, p->value, false, 0, 3600000, &v);
            eng->hello_timeout_ms = (int)v;
        } else if (strcmp(p->key, "max_version") == 0) {
            st = nxl__param_u64("tcp", p->key, p->value, false, 1,
                                BE_TCP_PROTO_MAX, &v);
            eng->max_version = (unsigned)v;
        } else if (strcmp(p->key, "stripe_min_bytes") == 0) {
            st = nxl__param_u64("tcp", p->key, p->value, false, 0, UINT64_MAX,
                                &v);
            eng->stripe_min = v;
        } else if (strcmp(p->key, "wait_spin_us") == 0) {
            st = nxl__param_u64("tcp", p->key, p->value, false, 0, 1000000, &v);
            eng->wait_spin_ns = v * 1000u;
        } else if (strcmp(p->key, "region_keys") == 0) {
            st = nxl__param_bool("tcp", p->key, p->value, &eng->region_keys);
        } else {
            st = nxl__fail(NXL_ERR_INVALID_PARAM, "tcp: unknown param \"%s\"",
                           p->key);
        }
    }
    return st;
}

/* be_tcp_is_wildcard says whether addr means "every interface". */
static bool
be_tcp_is_wildcard(const char *addr)
{
    return addr[0] == '\0' || strcmp(addr, "0.0.0.0") == 0 ||
           strcmp(addr, "::") == 0 || strcmp(addr, "*") == 0;
}

/* be_tcp_is_loopback says whether addr names this host's loopback. */
static bool
be_tcp_is_loopback(const char *addr)
{
    return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 ||
           strcmp(addr, "localhost") == 0;
}

/* be_tcp_host_token identifies this host and network namespace: equal
 * tokens mean a peer's loopback address reaches the peer. */
static uint64_t
be_tcp_host_token(void)
{
    char boot[64] = {0};
    struct stat st;
    uint64_t h, ns = 0;
    ssize_t n;
    int fd;

    fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        n = read(fd, boot, sizeof(boot) - 1);
        (void)n;
        close(fd);
    }
    if (stat("/proc/self/ns/net", &st) == 0) {
        ns = ((uint64_t)st.st_dev << 32) ^ (uint64_t)st.st_ino;
    }
    h = nxl__hash64(boot, strlen(boot));
    h ^= nxl__hash64(&ns, sizeof(ns)) * 0x9e3779b97f4a7c15ull;
    return h ? h : 1;
}

/* be_tcp_self_info fills the conn info this engine advertises:
 * advertise_addr if set; else bind_addr if it is specific; else every
 * IPv4 address of an interface that is up (not loopback), then 127.0.0.1
 * (peers on the same host and network namespace try that first). */
static void
be_tcp_self_info(be_tcp_engine_t *eng, uint16_t port)
{
    be_tcp_conninfo_t *ci = &eng->self_info;
    struct ifaddrs *ifs = NULL, *ifa;
    char buf[INET_ADDRSTRLEN];

    memset(ci, 0, sizeof(*ci));
    ci->port = port;
    ci->host_token = be_tcp_host_token();
    if (eng->advertise[0] != '\0') {
        strcpy(ci->addrs[ci->naddrs++], eng->advertise);
        return;
    }
    if (!be_tcp_is_wildcard(eng->bind_addr)) {
        strcpy(ci->addrs[ci->naddrs++], eng->bind_addr);
        return;
    }
    if (getifaddrs(&ifs) == 0) {
        for (ifa = ifs; ifa != NULL; ifa = ifa->ifa_next) {
            if (ci->naddrs >= BE_TCP_MAX_ADDRS - 1) {
                break;
            }
            if (ifa->ifa_addr == NULL || ifa->ifa_addr->sa_family != AF_INET ||
                !(ifa->ifa_flags & IFF_UP) || (ifa->ifa_flags & IFF_LOOPBACK)) {
                continue;
            }
            if (inet_ntop(AF_INET,
                          &((struct sockaddr_in *)ifa->ifa_addr)->sin_addr, buf,
                          sizeof(buf)) != NULL) {
                strcpy(ci->addrs[ci->naddrs++], buf);
            }
        }
        freeifaddrs(ifs);
    }
    strcpy(ci->addrs[ci->naddrs++], "127.0.0.1");
}

/* be_tcp_first_key picks where an engine's region keys start: random, so
 * that a target restarted under the same name does not hand out the keys
 * its predecessor published (a peer holding that metadata would reach the
 * new registrations at the same addresses). Keys only tell honest peers
 * that their metadata is out of date; they guard nothing against a
 * hostile one (the range check does), so a weak fallback is fine. */
static uint64_t
be_tcp_first_key(void)
{
    uint64_t k = 0;

    if (getrandom(&k, sizeof(k), GRND_NONBLOCK) != (ssize_t)sizeof(k)) {
        k = nxl__now_ns() ^ ((uint64_t)getpid() << 40);
    }
    return k >> 1 | 1; /* never 0, and 2^63 keys before it wraps */
}

/* be_tcp_init: parse params, listen, start the I/O thread. */
static nxl_status_t
be_tcp_init(void *self, const nxl_backend_host_t *host,
            const nxl_params_t *params)
{
    be_tcp_engine_t *eng = self;
    struct epoll_event ev;
    nxl_status_t st;
    uint16_t port = 0;

    eng->host = host;
    eng->lfd = eng->epfd = eng->kick_fd = eng->efd = -1;
    eng->stage = BE_TCP_STAGE_FDS;
    st = nxl__pools_create(NXL__POOLS_LOCKED, &eng->pools);
    if (st != NXL_OK) {
        return st;
    }
    nxl__btree_init_pools(&eng->regs, eng->pools);
    atomic_store(&eng->next_key, be_tcp_first_key());
    st = be_tcp_params(eng, params);
    if (st != NXL_OK) {
        return st;
    }
    if (pthread_mutex_init(&eng->io_lock, NULL) != 0) {
        return nxl__fail(NXL_ERR_NOMEM, "tcp: pthread_mutex_init");
    }
    if (pthread_rwlock_init(&eng->reg_lock, NULL) != 0) {
        pthread_mutex_destroy(&eng->io_lock);
        return nxl__fail(NXL_ERR_NOMEM, "tcp: pthread_rwlock_init");
    }
    eng->stage = BE_TCP_STAGE_LOCKS;

    st = nxl__sock_listen(eng->bind_addr, eng->port, &eng->lfd, &port);
    if (st != NXL_OK) {
        return st;
    }
    if (fcntl(eng->lfd, F_SETFL, fcntl(eng->lfd, F_GETFL) | O_NONBLOCK) < 0) {
        return nxl__fail_errno(errno, "tcp: fcntl(listen socket)");
    }
    eng->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    eng->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    eng->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (eng->efd < 0 || eng->kick_fd < 0 || eng->epfd < 0) {
        return nxl__fail_errno(errno, "tcp: eventfd/epoll_create1");
    }
    ev.events = EPOLLIN;
    ev.data.ptr = &eng->lfd;
    if (epoll_ctl(eng->epfd, EPOLL_CTL_ADD, eng->lfd, &ev) < 0) {
        return nxl__fail_errno(errno, "tcp: epoll_ctl(listen socket)");
    }
    ev.events = EPOLLIN;
    ev.data.ptr = &eng->kick_fd;
    if (epoll_ctl(eng->epfd, EPOLL_CTL_ADD, eng->kick_fd, &ev) < 0) {
        return nxl__fail_errno(errno, "tcp: epoll_ctl(eventfd)");
    }
    be_tcp_self_info(eng, port);
    st = be_tcp_io_start(eng);
    if (st != NXL_OK) {
        return st;
    }
    eng->stage = BE_TCP_STAGE_RUNNING;
    nxl__debug("tcp: %s listening on %s:%u (advertising %s%s)",
               host && host->agent_name ? host->agent_name : "?",
               eng->bind_addr, (unsigned)port, eng->self_info.addrs[0],
               eng->self_info.naddrs > 1 ? ", ..." : "");
    return NXL_OK;
}

/* be_tcp_peer_free frees a peer whose connections are gone. */
static void
be_tcp_peer_free(be_tcp_peer_t *peer)
{
    free(peer->conns);
    free(peer->name);
    free(peer);
}

/* be_tcp_fini stops the I/O thread and frees everything. */
static void
be_tcp_fini(void *self)
{
    be_tcp_engine_t *eng = self;
    be_tcp_peer_t *peer;
    be_tcp_conn_t *c;
    unsigned i;

    if (eng->stage >= BE_TCP_STAGE_LOCKS) {
        be_tcp_io_stop(eng);
        pthread_mutex_lock(&eng->io_lock);
        while ((peer = eng->peers) != NULL) {
            eng->peers = peer->next;
            be_tcp_peer_kill(peer, NXL_ERR_REMOTE_DISCONNECT,
                             "tcp: backend shut down");
            for (i = 0; i < peer->nconns; i++) {
                if (peer->conns[i] != NULL) {
                    be_tcp_conn_bury(peer->conns[i]);
                }
            }
            be_tcp_peer_free(peer);
        }
        while ((c = eng->conns) != NULL) {
            be_tcp_conn_bury(c);
        }
        while ((c = eng->grave) != NULL) {
            eng->grave = c->next;
            be_tcp_conn_free(c);
        }
        pthread_mutex_unlock(&eng->io_lock);
        for (nxl__bnode_t *n = nxl__btree_first(&eng->regs), *next; n != NULL;
             n = next) {
            next = nxl__btree_next(n);
            nxl__pools_free(eng->pools,
                            NXL__BNODE_OF(n, be_tcp_region_t, node));
        }
        nxl__btree_fini(&eng->regs);
        pthread_rwlock_destroy(&eng->reg_lock);
        pthread_mutex_destroy(&eng->io_lock);
    }
    if (eng->stage >= BE_TCP_STAGE_FDS) {
        if (eng->lfd >= 0) {
            close(eng->lfd);
        }
        if (eng->epfd >= 0) {
            close(eng->epfd);
        }
        if (eng->kick_fd >= 0) {
            close(eng->kick_fd);
        }
        if (eng->efd >= 0) {
            close(eng->efd);
        }
        eng->lfd = eng->epfd = eng->kick_fd = eng->efd = -1;
    }
    /* Last: the region records and the index's blocks are gone. */
    nxl__pools_destroy(eng->pools);
    eng->pools = NULL;
    eng->stage = BE_TCP_STAGE_NONE;
}

/* be_tcp_regions_cover: is [addr, addr + len) inside one registration,
 * of that key? */
bool
be_tcp_regions_cover(be_tcp_engine_t *eng, uint64_t addr, uint64_t len,
                     uint64_t key, uint64_t *base_p)
{
    const nxl__bnode_t *node;

    if (len == 0 || len > UINT64_MAX - addr) {
        return false;
    }
    pthread_rwlock_rdlock(&eng->reg_lock);
    node = nxl__btree_cover(&eng->regs, 0, addr, len);
    /* node is the first member of its region record. */
    if (node != NULL && key != 0 &&
        ((const be_tcp_region_t *)(const void *)node)->key != key) {
        node = NULL;
    }
    if (node != NULL && base_p != NULL) {
        *base_p = node->addr;
    }
    pthread_rwlock_unlock(&eng->reg_lock);
    return node != NULL;
}

/* be_tcp_mem_register adds a DRAM region to the index. */
static nxl_status_t
be_tcp_mem_register(void *self, const nxl_be_region_t *region, void **md_p)
{
    be_tcp_engine_t *eng = self;
    be_tcp_region_t *reg;
    nxl__bnode_t *in_way;
    nxl_status_t st;

    if (region->kind != NXL_DRAM) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "tcp: only DRAM can be registered (kind %d)",
                         (int)region->kind);
    }
    if (region->len == 0 || region->len > UINT64_MAX - region->addr) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "tcp: region 0x%llx+%llu is empty or wraps around",
                         (unsigned long long)region->addr,
                         (unsigned long long)region->len);
    }
    reg = nxl__pools_alloc(eng->pools, sizeof(*reg), true);
    if (reg == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "tcp: mem_register: out of memory");
    }
    reg->addr = region->addr;
    reg->len = region->len;
    reg->key = atomic_fetch_add(&eng->next_key, 1);
    if (reg->key == 0) { /* after 2^63 registrations */
        reg->key = atomic_fetch_add(&eng->next_key, 1);
    }
    reg->node.addr = reg->addr;
    reg->node.len = reg->len;
    reg->node.tie = (uint64_t)(uintptr_t)reg; /* equal ranges may repeat */
    pthread_rwlock_wrlock(&eng->reg_lock);
    /* Distinct ties: only a failure to allocate can refuse it. */
    st = nxl__btree_insert(&eng->regs, &reg->node, false, &in_way);
    pthread_rwlock_unlock(&eng->reg_lock);
    if (st != NXL_OK) {
        nxl__pools_free(eng->pools, reg);
        return st;
    }
    *md_p = reg;
    return NXL_OK;
}

/* be_tcp_mem_deregister removes a region from the index. */
static void
be_tcp_mem_deregister(void *self, void *md)
{
    be_tcp_engine_t *eng = self;
    be_tcp_region_t *reg = md;

    if (reg == NULL) {
        return;
    }
    pthread_rwlock_wrlock(&eng->reg_lock);
    nxl__btree_remove(&eng->regs, &reg->node);
    pthread_rwlock_unlock(&eng->reg_lock);
    nxl__pools_free(eng->pools, reg);
}

/* be_tcp_md_pack: a region's public data is its key (u64, little
 * endian): version-3 requests name it, so the target refuses one made
 * from metadata older than the registration. With region_keys=0 the blob
 * is empty, as before version 3 (peers from then refuse anything else). */
static nxl_status_t
be_tcp_md_pack(void *self, const void *md, nxl_blob_t *out)
{
    const be_tcp_engine_t *eng = self;
    const be_tcp_region_t *reg = md;

    out->data = NULL;
    out->len = 0;
    if (!eng->region_keys) {
        return NXL_OK;
    }
    out->data = malloc(BE_TCP_KEY_SIZE);
    if (out->data == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "tcp: md_pack: out of memory");
    }
    nxl__put_le64(out->data, reg->key);
    out->len = BE_TCP_KEY_SIZE;
    return NXL_OK;
}

/* be_tcp_conn_info writes this engine's conn info. */
static nxl_status_t
be_tcp_conn_info(void *self, nxl_blob_t *out)
{
    be_tcp_engine_t *eng = self;

    return be_tcp_conninfo_encode(&eng->self_info, out);
}

/* be_tcp_handshake sends our hello on a fresh connection and checks the
 * reply: protocol version and that the agent there is the one expected.
 * *proto_p gets the version the connection uses: the lower of the two
 * sides' highest (a server before version 2 answers max_version 0: 1). */
static nxl_status_t
be_tcp_handshake(be_tcp_engine_t *eng, int fd, const char *peer,
                 const char *where, unsigned stream, int timeout_ms,
                 uint8_t *proto_p)
{
    uint8_t buf[BE_TCP_HDR_SIZE + BE_TCP_HELLO_FIXED + BE_TCP_MAX_NAME];
    be_tcp_frame_t f = {.type = BE_TCP_HELLO};
    const char *why = NULL;
    be_tcp_hello_t h;
    nxl_status_t st;
    size_t n;

    /* max_version 1 is sent as 0, exactly what version-1 peers send. */
    n = be_tcp_hello_encode_max(
        buf + BE_TCP_HDR_SIZE, sizeof(buf) - BE_TCP_HDR_SIZE,
        eng->host->agent_name, (uint16_t)stream, (uint16_t)eng->num_streams,
        eng->max_version > 1 ? (uint16_t)eng->max_version : 0);
    if (n == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "tcp: agent name empty or longer than %u bytes",
                         BE_TCP_MAX_NAME);
    }
    f.aux_len = (uint32_t)n;
    be_tcp_frame_encode(&f, buf);
    st = nxl__sock_send_all(fd, buf, BE_TCP_HDR_SIZE + n, timeout_ms);
    if (st != NXL_OK) {
        return st;
    }
    st = nxl__sock_recv_all(fd, buf, BE_TCP_HDR_SIZE, timeout_ms);
    if (st != NXL_OK) {
        return st;
    }
    if (be_tcp_frame_decode(buf, BE_TCP_HDR_SIZE, &f, &why) <= 0 ||
        f.type != BE_TCP_HELLO_ACK) {
        return nxl__fail(NXL_ERR_PROTO, "tcp: %s is not an NXL TCP server: %s",
                         where, why ? why : "unexpected reply to hello");
    }
    st = nxl__sock_recv_all(fd, buf, f.aux_len, timeout_ms);
    if (st != NXL_OK) {
        return st;
    }
    if (!be_tcp_hello_decode(buf, f.aux_len, &h, &why)) {
        return nxl__fail(NXL_ERR_PROTO, "tcp: %s: bad hello reply: %s", where,
                         why);
    }
    if (f.status != 0 || h.version != BE_TCP_VERSION) {
        return nxl__fail(NXL_ERR_MISMATCH,
                         "tcp: %s speaks protocol version %u, we speak %u",
                         where, (unsigned)h.version, BE_TCP_VERSION);
    }
    if (h.name_len != strlen(peer) || memcmp(h.name, peer, h.name_len) != 0) {
        return nxl__fail(NXL_ERR_MISMATCH,
                         "tcp: %s is agent '%.*s', expected '%s'", where,
                         (int)h.name_len, h.name, peer);
    }
    *proto_p = (uint8_t)NXL__MIN((unsigned)h.max_version, eng->max_version);
    return NXL_OK;
}

/* be_tcp_connect_peer opens stream number `stream` to peer: tries its
 * addresses (loopback first when it shares our host and namespace, last
 * otherwise) within connect_timeout_ms, then shakes hands. */
static nxl_status_t
be_tcp_connect_peer(be_tcp_engine_t *eng, be_tcp_peer_t *peer, unsigned stream,
                    int *fd_p, uint8_t *proto_p)
{
    const be_tcp_conninfo_t *ci = &peer->info;
    bool same = ci->host_token == eng->self_info.host_token;
    uint64_t start = nxl__now_ns(), spent;
    const char *order[BE_TCP_MAX_ADDRS];
    char where[BE_TCP_ADDR_MAX + 16];
    unsigned n = 0, i, pass;
    nxl_status_t st = NXL_ERR_REMOTE_DISCONNECT;
    int fd, left, each;

    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < ci->naddrs; i++) {
            if (be_tcp_is_loopback(ci->addrs[i]) ==
                (same ? pass == 0 : pass == 1)) {
                order[n++] = ci->addrs[i];
            }
        }
    }
    for (i = 0; i < n; i++) {
        spent = (nxl__now_ns() - start) / 1000000u;
        if (spent >= (uint64_t)eng->connect_timeout_ms) {
            return nxl__fail(NXL_ERR_TIMEOUT,
                             "tcp: connecting to agent '%s' timed out after "
                             "%d ms",
                             peer->name, eng->connect_timeout_ms);
        }
        left = eng->connect_timeout_ms - (int)spent;
        each = (i + 1 < n) ? NXL__MAX(left / (int)(n - i), 1) : left;
        snprintf(where, sizeof(where), "%s:%u", order[i], (unsigned)ci->port);
        st = nxl__sock_connect(order[i], ci->port, each, &fd);
        if (st != NXL_OK) {
            nxl__debug("tcp: connect %s (agent '%s'): %s", where, peer->name,
                       nxl_last_error());
            continue;
        }
        be_tcp_sock_tune(fd);
        st =
            be_tcp_handshake(eng, fd, peer->name, where, stream, left, proto_p);
        if (st != NXL_OK) {
            close(fd); /* not it (or it hung up): try the next address */
            continue;
        }
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
            st = nxl__fail_errno(errno, "tcp: fcntl");
            close(fd);
            return st;
        }
        *fd_p = fd;
        return NXL_OK;
    }
    if (st == NXL_OK || nxl_last_error()[0] == '\0') {
        st = nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                       "tcp: cannot reach agent '%s'", peer->name);
    }
    return st;
}

/* be_tcp_peer_load connects num_streams streams to a peer. */
static nxl_status_t
be_tcp_peer_load(void *self, const char *name, const void *info, size_t len,
                 void **peer_ctx_p)
{
    be_tcp_engine_t *eng = self;
    be_tcp_peer_t *peer;
    const char *why = NULL;
    nxl_status_t st;
    uint8_t proto = 1;
    unsigned i;
    int fd = -1;

    if (name == NULL || name[0] == '\0' || strlen(name) > BE_TCP_MAX_NAME) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "tcp: bad peer name");
    }
    peer = calloc(1, sizeof(*peer));
    if (peer == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "tcp: peer_load: out of memory");
    }
    if (info == NULL || !be_tcp_conninfo_decode(info, len, &peer->info, &why)) {
        free(peer);
        return nxl__fail(NXL_ERR_PROTO, "tcp: conn info of '%s': %s", name,
                         why ? why : "missing");
    }
    peer->eng = eng;
    peer->name = strdup(name);
    peer->conns = calloc(eng->num_streams, sizeof(*peer->conns));
    if (peer->name == NULL || peer->conns == NULL) {
        st = nxl__fail(NXL_ERR_NOMEM, "tcp: peer_load: out of memory");
        goto err_free;
    }
    peer->nconns = eng->num_streams;
    peer->proto = BE_TCP_PROTO_MAX;
    for (i = 0; i < peer->nconns; i++) {
        st = be_tcp_connect_peer(eng, peer, i, &fd, &proto);
        if (st != NXL_OK) {
            goto err_conns;
        }
        pthread_mutex_lock(&eng->io_lock);
        st = be_tcp_conn_new(eng, fd, false, &peer->conns[i]);
        if (st == NXL_OK) {
            peer->conns[i]->peer = peer;
            peer->conns[i]->proto = proto;
            /* Streams agree (same two sides); the lowest is safe. */
            peer->proto = NXL__MIN(peer->proto, proto);
        }
        pthread_mutex_unlock(&eng->io_lock);
        if (st != NXL_OK) {
            close(fd);
            goto err_conns;
        }
    }
    pthread_mutex_lock(&eng->io_lock);
    peer->next = eng->peers;
    eng->peers = peer;
    pthread_mutex_unlock(&eng->io_lock);
    nxl__debug("tcp: connected to agent '%s' (%u stream%s)", name, peer->nconns,
               peer->nconns == 1 ? "" : "s");
    *peer_ctx_p = peer;
    return NXL_OK;

err_conns:
    pthread_mutex_lock(&eng->io_lock);
    for (i = 0; i < peer->nconns; i++) {
        if (peer->conns[i] != NULL) {
            be_tcp_conn_bury(peer->conns[i]);
        }
    }
    pthread_mutex_unlock(&eng->io_lock);
err_free:
    be_tcp_peer_free(peer);
    return st;
}

/* be_tcp_peer_unload fails the peer's transfers with REMOTE_DISCONNECT,
 * closes its streams and forgets it. */
static void
be_tcp_peer_unload(void *self, void *peer_ctx)
{
    be_tcp_engine_t *eng = self;
    be_tcp_peer_t *peer = peer_ctx, **pp;
    unsigned i;

    if (peer == NULL) {
        return;
    }
    pthread_mutex_lock(&eng->io_lock);
    be_tcp_peer_kill(peer, NXL_ERR_REMOTE_DISCONNECT, "tcp: peer unloaded");
    for (i = 0; i < peer->nconns; i++) {
        if (peer->conns[i] != NULL) {
            be_tcp_conn_bury(peer->conns[i]);
        }
    }
    for (pp = &eng->peers; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == peer) {
            *pp = peer->next;
            break;
        }
    }
    pthread_mutex_unlock(&eng->io_lock);
    be_tcp_peer_free(peer);
}

/* be_tcp_md_unpack records a peer region's bounds, so prep can refuse a
 * descriptor outside it before anything goes on the wire (the target
 * checks again), and its key: public data of 8 bytes (a key, not 0) or
 * none (peers before version 3, or region_keys=0: key 0, the target then
 * checks the range only). Anything else is malformed. */
static nxl_status_t
be_tcp_md_unpack(void *self, void *peer_ctx, const nxl_desc_t *desc,
                 nxl_mem_t kind, const void *pub, size_t len, void **rmd_p)
{
    be_tcp_region_t *r;
    uint64_t key = 0;

    (void)peer_ctx;
    if (kind != NXL_DRAM) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "tcp: remote memory kind %d is not DRAM", (int)kind);
    }
    if (len == BE_TCP_KEY_SIZE && pub != NULL) {
        key = nxl__le64(pub);
    }
    if (len != 0 && key == 0) {
        return nxl__fail(NXL_ERR_PROTO,
                         "tcp: region data of %zu bytes is not a key (8 "
                         "bytes, not 0)",
                         len);
    }
    if (desc == NULL || desc->len > UINT64_MAX - desc->addr) {
        return nxl__fail(NXL_ERR_PROTO, "tcp: remote region wraps around");
    }
    r = nxl__pools_alloc(((be_tcp_engine_t *)self)->pools, sizeof(*r), false);
    if (r == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "tcp: md_unpack: out of memory");
    }
    r->addr = desc->addr;
    r->len = desc->len;
    r->key = key;
    *rmd_p = r;
    return NXL_OK;
}

/* be_tcp_md_unload frees what md_unpack made. */
static void
be_tcp_md_unload(void *self, void *rmd)
{
    nxl__pools_free(((be_tcp_engine_t *)self)->pools, rmd);
}

/* be_tcp_signal counts n events and makes the event fd readable (one
 * write until the next progress call drains it). A notification also
 * wakes the agent (host->wake), as the backend contract asks; for
 * completions the event fd, which the agent sleeps on, is enough. */
void
be_tcp_signal(be_tcp_engine_t *eng, unsigned n, bool notif)
{
    uint64_t one = 1;
    ssize_t rc;

    atomic_fetch_add(&eng->events, n);
    if (atomic_exchange(&eng->efd_pending, 1) == 0) {
        rc = write(eng->efd, &one, sizeof(one));
        (void)rc;
    }
    if (notif && eng->host != NULL && eng->host->wake != NULL) {
        eng->host->wake(eng->host->ctx);
    }
}

/* be_tcp_progress: the I/O thread does the work; this drains the event fd
 * and reports how many completions and notifications happened. */
static unsigned
be_tcp_progress(void *self)
{
    be_tcp_engine_t *eng = self;
    uint64_t v;
    ssize_t rc;

    if (atomic_exchange(&eng->efd_pending, 0) != 0) {
        rc = read(eng->efd, &v, sizeof(v));
        (void)rc;
    }
    return atomic_exchange(&eng->events, 0);
}

/* be_tcp_event_fd returns the eventfd that completions make readable. */
static int
be_tcp_event_fd(void *self)
{
    return ((be_tcp_engine_t *)self)->efd;
}

const nxl_backend_ops_t nxl__be_tcp_ops = {
    .abi_version = NXL_BACKEND_ABI,
    .size = sizeof(nxl_backend_ops_t),
    .name = "TCP",
    .caps =
        NXL_CAP_LOCAL | NXL_CAP_REMOTE | NXL_CAP_NOTIF | NXL_CAP_THREAD_SAFE,
    .mem_kinds = 1u << NXL_DRAM,
    .engine_size = sizeof(be_tcp_engine_t),
    .req_size = sizeof(be_tcp_req_t),
    .defaults = be_tcp_defaults,
    .num_defaults = NXL__ARRAY_SIZE(be_tcp_defaults),
    .init = be_tcp_init,
    .fini = be_tcp_fini,
    .mem_register = be_tcp_mem_register,
    .mem_deregister = be_tcp_mem_deregister,
    .md_pack = be_tcp_md_pack,
    .conn_info = be_tcp_conn_info,
    .peer_load = be_tcp_peer_load,
    .peer_unload = be_tcp_peer_unload,
    .md_unpack = be_tcp_md_unpack,
    .md_unload = be_tcp_md_unload,
    .prep = be_tcp_prep,
    .post = be_tcp_post,
    .check = be_tcp_check,
    .cancel = be_tcp_cancel,
    .release = be_tcp_release,
    .progress = be_tcp_progress,
    .event_fd = be_tcp_event_fd,
    .notif_send = be_tcp_notif_send,
    .wait = be_tcp_wait,
};
