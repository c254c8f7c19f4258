/*
 * shm_peer.c - SHM peers: who a conn info names (pid, start time, boot and
 * namespace identity), whether it is still alive, loading and unloading
 * it, and the loopback peer (this process).
 */
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* --- peers ---------------------------------------------------------------- */

/* be_shm_peer_mark_dead flags peer as gone; the first caller logs why. */
void
be_shm_peer_mark_dead(be_shm_peer_t *peer, const char *why)
{
    if (atomic_exchange(&peer->dead, 1) == 0 && !atomic_load(&peer->unloaded)) {
        nxl__log(NXL_LOG_INFO, "shm: peer %s (pid %d) is gone: %s", peer->name,
                 (int)peer->pid, why);
    }
}

/* be_shm_my_pid caches getpid() (a system call in this libc, and asked
 * once per registration); a forked child starts over. */
static atomic_int be_shm_pid_cache;
static pthread_once_t be_shm_pid_once = PTHREAD_ONCE_INIT;

static void
be_shm_pid_forget(void)
{
    atomic_store_explicit(&be_shm_pid_cache, 0, memory_order_relaxed);
}

static void
be_shm_pid_init(void)
{
    pthread_atfork(NULL, NULL, be_shm_pid_forget);
}

static pid_t
be_shm_my_pid(void)
{
    int pid;

    pthread_once(&be_shm_pid_once, be_shm_pid_init);
    pid = atomic_load_explicit(&be_shm_pid_cache, memory_order_relaxed);
    if (pid == 0) {
        pid = (int)getpid();
        atomic_store_explicit(&be_shm_pid_cache, pid, memory_order_relaxed);
    }
    return (pid_t)pid;
}

/* be_shm_find_engine returns the live engine of this process with token,
 * or NULL (global lock held). Engines inherited across fork do not count. */
static be_shm_engine_t *
be_shm_find_engine(uint64_t token)
{
    be_shm_engine_t *e;
    pid_t me = be_shm_my_pid();

    for (e = be_shm_global_engines; e != NULL; e = e->global_next) {
        if (e->token == token && e->pid == me) {
            return e;
        }
    }
    return NULL;
}

/* be_shm_self_alive checks that the engine of a loopback peer still
 * exists (an agent of this process may be destroyed while others keep its
 * metadata): cheap unless some engine was finalized since the last look. */
static int
be_shm_self_alive(be_shm_peer_t *peer)
{
    unsigned gen = atomic_load_explicit(&be_shm_fini_gen, memory_order_acquire);
    int found;

    if (gen == atomic_load_explicit(&peer->self_gen, memory_order_relaxed)) {
        return 1;
    }
    pthread_mutex_lock(&be_shm_global_lock);
    found = be_shm_find_engine(peer->token) != NULL;
    pthread_mutex_unlock(&be_shm_global_lock);
    if (!found) {
        be_shm_peer_mark_dead(peer, "its engine was destroyed");
        return 0;
    }
    atomic_store_explicit(&peer->self_gen, gen, memory_order_relaxed);
    return 1;
}

/* be_shm_peer_alive polls the peer's pidfd (or re-reads its start time
 * without one), at most every BE_SHM_ALIVE_CHECK_NS unless force. The
 * period bounds the window in which a dead peer's pid could be reused
 * before CMA notices: pid reuse needs the pid space to wrap first. It is
 * read on the coarse clock (every post reads it; the period then stretches
 * to the next kernel tick, a few ms at most). */
int
be_shm_peer_alive(be_shm_peer_t *peer, int force)
{
    struct pollfd pfd;
    uint64_t now, st;
    int err;

    if (atomic_load_explicit(&peer->dead, memory_order_relaxed)) {
        return 0;
    }
    if (peer->self) {
        return be_shm_self_alive(peer);
    }
    now = nxl__coarse_ns();
    if (!force && now < atomic_load_explicit(&peer->next_check_ns,
                                             memory_order_relaxed)) {
        return 1;
    }
    atomic_store_explicit(&peer->next_check_ns, now + BE_SHM_ALIVE_CHECK_NS,
                          memory_order_relaxed);
    if (peer->pidfd >= 0) {
        pfd.fd = peer->pidfd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLIN | POLLHUP))) {
            be_shm_peer_mark_dead(peer, "process exited");
            return 0;
        }
        return 1;
    }
    err = be_shm_starttime(peer->pid, &st);
    if ((err == 0 && st != peer->starttime) || err == ENOENT || err == ESRCH) {
        be_shm_peer_mark_dead(peer, "process exited");
        return 0;
    }
    return 1;
}

/* be_shm_peer_put drops a reference; the last one frees the peer. */
void
be_shm_peer_put(be_shm_peer_t *peer)
{
    be_shm_map_t *m;

    if (atomic_fetch_sub(&peer->refs, 1) != 1) {
        return;
    }
    while (peer->maps != NULL) { /* none left unless md_unload was skipped */
        m = peer->maps;
        peer->maps = m->next;
        munmap(m->base, m->size);
        free(m);
    }
    while (peer->ipcs != NULL) { /* likewise */
        be_shm_ipc_t *c = peer->ipcs;

        peer->ipcs = c->next;
        if (c->dk->ipc_close(c->local) != NXL_OK) {
            nxl__warn("shm: closing VRAM of %s: %s", peer->name,
                      nxl_last_error());
        }
        free(c);
    }
    nxl__regtab_view_close(&peer->rt);
    if (peer->pidfd >= 0) {
        close(peer->pidfd);
    }
    nxl__ls_tx_free(peer->tx);
    pthread_mutex_destroy(&peer->map_lock);
    free(peer->name);
    peer->magic = 0;
    free(peer);
}

/* be_shm_probe reads the peer engine's token back through CMA: proves that
 * CMA is permitted and that pid runs the engine that wrote the conn info. */
static nxl_status_t
be_shm_probe(be_shm_peer_t *peer, uint64_t probe_addr)
{
    uint64_t got = 0;
    struct iovec l = {.iov_base = &got, .iov_len = sizeof(got)};
    struct iovec r = {.iov_base = (void *)(uintptr_t)probe_addr,
                      .iov_len = sizeof(got)};
    ssize_t n;
    int err;

    n = process_vm_readv(peer->pid, &l, 1, &r, 1, 0);
    if (n < 0) {
        err = errno;
        if (err == EPERM || err == EACCES) {
            return nxl__fail(NXL_ERR_NOT_ALLOWED,
                             "shm: process_vm_readv(pid %d) not permitted "
                             "(ptrace_scope, another user?): %s",
                             (int)peer->pid, strerror(err));
        }
        if (err == ENOSYS) {
            return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                             "shm: process_vm_readv not available");
        }
        return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                         "shm: peer %s (pid %d) is gone: %s", peer->name,
                         (int)peer->pid, strerror(err));
    }
    if (n != (ssize_t)sizeof(got) || got != peer->token) {
        return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                         "shm: pid %d no longer runs peer %s's engine",
                         (int)peer->pid, peer->name);
    }
    return NXL_OK;
}

/* be_shm_peer_load validates a peer's conn info and connects to it. */
nxl_status_t
be_shm_peer_load(void *self, const char *name, const void *info, size_t len,
                 void **peer_ctx_p)
{
    be_shm_engine_t *eng = self;
    const uint8_t *p = info;
    be_shm_peer_t *peer;
    uint64_t probe, st_now = 0;
    size_t sock_len, i;
    nxl_status_t status;
    int err;

    if (name == NULL || name[0] == '\0') {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "shm: peer without a name");
    }
    if (info == NULL || len < BE_SHM_CONN_FIXED ||
        nxl__le32(p) != BE_SHM_CONN_MAGIC || p[4] != BE_SHM_WIRE_VERSION ||
        p[5] != 0) {
        return nxl__fail(NXL_ERR_PROTO,
                         "shm: conn info of %s: bad header (%zu bytes)", name,
                         len);
    }
    sock_len = (size_t)p[6] | ((size_t)p[7] << 8);
    if (sock_len == 0 || sock_len > BE_SHM_SOCK_MAX ||
        len != BE_SHM_CONN_FIXED + sock_len || nxl__le32(p + 12) != 0 ||
        nxl__le32(p + 8) == 0 || nxl__le32(p + 8) > INT32_MAX) {
        return nxl__fail(NXL_ERR_PROTO, "shm: conn info of %s: bad fields",
                         name);
    }
    for (i = 0; i < sock_len; i++) {
        if (p[BE_SHM_CONN_FIXED + i] < 0x21 ||
            p[BE_SHM_CONN_FIXED + i] > 0x7e) {
            return nxl__fail(NXL_ERR_PROTO,
                             "shm: conn info of %s: bad socket name", name);
        }
    }
    if (memcmp(p + 40, eng->boot_id, 16) != 0 ||
        nxl__le64(p + 56) != eng->pidns) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "shm: peer %s runs on another host or pid namespace",
                         name);
    }
    if (nxl__le64(p + 64) != eng->netns) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "shm: peer %s is in another network namespace", name);
    }

    peer = calloc(1, sizeof(*peer));
    if (peer == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "shm: peer");
    }
    peer->name = strdup(name);
    if (peer->name == NULL) {
        free(peer);
        return nxl__fail(NXL_ERR_NOMEM, "shm: peer name");
    }
    peer->magic = BE_SHM_PEER_MAGIC;
    peer->eng = eng;
    peer->pid = (pid_t)nxl__le32(p + 8);
    peer->starttime = nxl__le64(p + 16);
    peer->token = nxl__le64(p + 24);
    probe = nxl__le64(p + 32);
    peer->pidfd = -1;
    peer->rt.fd = -1;
    memcpy(peer->sock_name, p + BE_SHM_CONN_FIXED, sock_len);
    peer->sock_len = sock_len;
    atomic_init(&peer->refs, 1);
    pthread_mutex_init(&peer->map_lock, NULL);

    if (peer->pid == eng->pid) {
        pthread_mutex_lock(&be_shm_global_lock);
        atomic_store(&peer->self_gen, atomic_load(&be_shm_fini_gen));
        peer->self = (peer->starttime == eng->starttime &&
                      be_shm_find_engine(peer->token) != NULL);
        pthread_mutex_unlock(&be_shm_global_lock);
        if (!peer->self) {
            status =
                nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                          "shm: peer %s: no such engine in this process", name);
            goto err_put;
        }
    } else {
        peer->pidfd = nxl__pidfd_open(peer->pid);
        if (peer->pidfd < 0 && errno == ESRCH) {
            status = nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                               "shm: peer %s (pid %d) is gone", name,
                               (int)peer->pid);
            goto err_put;
        }
        /* Without pidfd support liveness falls back to the start time. */
        err = be_shm_starttime(peer->pid, &st_now);
        if (err != 0 || st_now != peer->starttime) {
            status = nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                               "shm: peer %s (pid %d) is gone%s", name,
                               (int)peer->pid, err == 0 ? " (pid reused)" : "");
            goto err_put;
        }
        status = be_shm_probe(peer, probe);
        if (status != NXL_OK) {
            goto err_put;
        }
    }

    status = be_shm_tx_open(peer);
    if (status != NXL_OK) {
        goto err_put;
    }
    *peer_ctx_p = peer;
    return NXL_OK;

err_put:
    be_shm_peer_put(peer);
    return status;
}

/* be_shm_peer_unload forgets a peer: in-flight requests stop with
 * NXL_ERR_REMOTE_DISCONNECT (workers check between system calls) before
 * it returns; the memory goes when the last rmd is unloaded. */
void
be_shm_peer_unload(void *self, void *ctx)
{
    be_shm_peer_t *peer = ctx;
    struct timespec ts = {0, 100000};

    (void)self;
    if (peer == NULL || peer->magic != BE_SHM_PEER_MAGIC) {
        return;
    }
    atomic_store(&peer->unloaded, 1);
    atomic_store(&peer->dead, 1);
    while (atomic_load(&peer->inflight) > 0) {
        nanosleep(&ts, NULL);
    }
    nxl__ls_tx_drain(peer->tx, 500);
    nxl__ls_tx_close(peer->tx);
    be_shm_peer_put(peer);
}
