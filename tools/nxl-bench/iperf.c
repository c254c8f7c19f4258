/*
 * iperf.c - the baselines of --backend TCP, both on the same path as the
 * NXL transfers and measured in the same run.
 *
 * iperf3 (the Base B/W column): one stream. The target (--listen, or the
 * local child) starts "iperf3 -s" on its listen address and tells the
 * initiator the port in its region message; the initiator runs
 * "iperf3 -c" for 2 s before each op's rows (their Base B/W) and after
 * them (printed), with -R for READ (the target sends, as it does for an
 * NXL READ). iperf3 sends one 128 KiB buffer over and over (hot in cache)
 * and never waits for a reply; NXL moves distinct bytes per request. The
 * ratio is NXL / iperf3 as measured in the same minute.
 *
 * The raw ping-pong (--lat_bench's baseline, and the PP columns of rows
 * of batch 1 up to BENCH_PP_MAX_BLOCK): what a request/reply over plain
 * TCP costs at that size, with nothing of NXL in it. The target runs a
 * server thread on its listen address (its port also in the region
 * message); the initiator keeps one connection (TCP_NODELAY both ends)
 * and, with blocking send/recv, posts requests of 24 bytes
 *
 *   0 u32 magic "NXPP" | 4 u32 op (0 READ, 1 WRITE) | 8 u64 off | 16 u64 len
 *
 * (little-endian): READ is answered with len bytes of the server's buffer
 * at off, WRITE carries len bytes, received into that buffer at off and
 * answered with an 8-byte ack (u64 len). Replies come in request order,
 * so up to --pipeline_depth requests can be in flight. The server's
 * buffer is a private one of the pool's size, not the NXL pool: same
 * offsets and as cold, but the baseline never races the target's
 * fill/verify of its pool. The initiator's side uses its pool's slices,
 * as the NXL row did.
 */
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define IP_OUT_MAX (256 * 1024) /* iperf3 -J output kept for parsing */
#define IP_CONNECT_TRIES 50     /* client tries while the server starts */
#define IP_SECS "2"             /* seconds per run (--smoke: 1) */

unsigned
bench_iperf_server(const char *addr, pid_t *pid_p)
{
    char exe[256], pp[16], bind_addr[64];
    char *argv[8];
    unsigned port;
    int argc = 0;
    pid_t pid;

    *pid_p = -1;
    if (bench_find_exe("iperf3", exe, sizeof(exe)) != 0) {
        return 0;
    }
    port = bench_free_port(addr);
    if (port == 0) {
        return 0;
    }
    snprintf(pp, sizeof(pp), "%u", port);
    argv[argc++] = "iperf3";
    argv[argc++] = "-s";
    argv[argc++] = "-p";
    argv[argc++] = pp;
    if (addr != NULL && addr[0] != '\0') {
        snprintf(bind_addr, sizeof(bind_addr), "%s", addr);
        argv[argc++] = "-B";
        argv[argc++] = bind_addr;
    }
    argv[argc] = NULL;
    pid = bench_spawn(exe, argv, -1, NULL, NULL);
    if (pid < 0) {
        return 0;
    }
    *pid_p = pid;
    return port;
}

/* parse_rate reads end.sum_received.bits_per_second of iperf3 -J output;
 * returns GB/s, or -1. */
static double
parse_rate(const char *out)
{
    const char *p = strstr(out, "\"sum_received\"");
    double bps;

    if (p == NULL || (p = strstr(p, "\"bits_per_second\"")) == NULL) {
        return -1;
    }
    p = strchr(p + 17, ':');
    if (p == NULL || sscanf(p + 1, "%lf", &bps) != 1 || !(bps > 0)) {
        return -1;
    }
    return bps / 8.0 / 1e9;
}

/* parse_error copies iperf3 -J's "error" text into buf (or nothing). */
static void
parse_error(const char *out, char *buf, size_t cap)
{
    const char *p = strstr(out, "\"error\"");
    const char *q;

    buf[0] = '\0';
    if (p == NULL || (p = strchr(p + 7, '"')) == NULL) {
        return;
    }
    q = strchr(p + 1, '"');
    if (q != NULL) {
        snprintf(buf, cap, "%.*s", (int)(q - p - 1), p + 1);
    }
}

double
bench_iperf_row(const bench_session_t *s, nxl_op_t op, char *why, size_t whycap)
{
    const bench_opts_t *o = s->o;
    char pp[16], host[64], err[192];
    char *argv[] = {"iperf3",
                    "-c",
                    host,
                    "-p",
                    pp,
                    "-t",
                    o->smoke ? "1" : IP_SECS,
                    "-J",
                    op == NXL_READ ? "-R" : NULL,
                    NULL};
    uint64_t deadline = bench_now_ns() + (uint64_t)o->timeout_s * 1000000000ull;
    char *out = malloc(IP_OUT_MAX);
    double bw = -1;
    int st = -1;
    int k;

    why[0] = '\0';
    if (out == NULL) {
        snprintf(why, whycap, "out of memory");
        return -1;
    }
    snprintf(pp, sizeof(pp), "%u", s->iperf_port);
    snprintf(host, sizeof(host), "%s", s->rhost);
    for (k = 0; k < IP_CONNECT_TRIES && bench_now_ns() < deadline; k++) {
        st = bench_run_capture(s->iperf, argv, NULL, NULL, out, IP_OUT_MAX,
                               deadline);
        parse_error(out, err, sizeof(err));
        if (st < 0 || strstr(err, "connect") == NULL) {
            break;
        }
        usleep(100000); /* the server is not listening yet */
    }
    if (st < 0) {
        snprintf(why, whycap, "iperf3 did not finish within %d s (killed)",
                 o->timeout_s);
    } else if ((bw = parse_rate(out)) < 0) {
        if (err[0] == '\0') {
            bench_last_line(out, err, sizeof(err));
        }
        snprintf(why, whycap, "iperf3 reported no rate (%s %d): %s",
                 WIFEXITED(st) ? "exit" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), err);
    }
    free(out);
    return bw;
}

/* --- the raw ping-pong --------------------------------------------------- */

#define PP_MAGIC 0x5050584eu /* "NXPP" little-endian */
#define PP_REQ_SIZE 24
#define PP_ACK_SIZE 8

/* bench_pp_server is the target's ping-pong server thread. */
struct bench_pp_server {
    int lfd; /* listening socket */
    pthread_t thread;
    pthread_mutex_t lock; /* cfd */
    int cfd;              /* the connection being served, or -1 */
    atomic_int stop;
    size_t size;  /* buffer bytes (the pool's size) */
    uint8_t *buf; /* bench_map'ed at the first connection */
};

/* put_le32/put_le64/get_le32/get_le64: the request's integers. */
static void
put_le32(uint8_t *p, uint32_t v)
{
    int i;

    for (i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void
put_le64(uint8_t *p, uint64_t v)
{
    int i;

    for (i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint32_t
get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t
get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* recv_all receives exactly n bytes into p (blocking). Returns 0, 1 on
 * EOF before the first byte, or -1 (errno set; EPIPE for EOF later). */
static int
recv_all(int fd, void *p, size_t n)
{
    uint8_t *q = p;
    size_t got = 0;
    ssize_t k;

    while (got < n) {
        k = recv(fd, q + got, n - got, MSG_WAITALL);
        if (k > 0) {
            got += (size_t)k;
        } else if (k == 0) {
            if (got == 0) {
                return 1;
            }
            errno = EPIPE;
            return -1;
        } else if (errno != EINTR) {
            return -1;
        }
    }
    return 0;
}

/* send_all sends exactly the bytes of iov[0..cnt) (blocking; iov is
 * consumed). Returns 0 or -1 (errno set). */
static int
send_all(int fd, struct iovec *iov, int cnt)
{
    struct msghdr msg;
    ssize_t k;

    while (cnt > 0) {
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = iov;
        msg.msg_iovlen = (size_t)cnt;
        k = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        while (cnt > 0 && (size_t)k >= iov->iov_len) {
            k -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + k;
            iov->iov_len -= (size_t)k;
        }
    }
    return 0;
}

/* pp_nodelay turns Nagle off on fd, as the NXL backend does. */
static void
pp_nodelay(int fd)
{
    int one = 1;

    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* pp_serve_conn answers fd's requests until it closes or sends one that
 * is not valid (then it is dropped). */
static void
pp_serve_conn(struct bench_pp_server *srv, int fd)
{
    uint8_t req[PP_REQ_SIZE];
    uint8_t ack[PP_ACK_SIZE];
    struct iovec iov;
    uint64_t off, len;
    uint32_t op;

    for (;;) {
        if (recv_all(fd, req, sizeof(req)) != 0) {
            return; /* closed, or the server stops */
        }
        op = get_le32(req + 4);
        off = get_le64(req + 8);
        len = get_le64(req + 16);
        if (get_le32(req) != PP_MAGIC || op > 1 || len > srv->size ||
            off > srv->size - len) {
            bench_err("target: ping-pong: bad request (op %u, %llu bytes "
                      "at %llu): dropping the connection",
                      op, (unsigned long long)len, (unsigned long long)off);
            return;
        }
        if (op == 0) {
            iov.iov_base = srv->buf + off;
            iov.iov_len = (size_t)len;
            if (send_all(fd, &iov, 1) != 0) {
                return;
            }
            continue;
        }
        if (recv_all(fd, srv->buf + off, (size_t)len) != 0) {
            return;
        }
        put_le64(ack, len);
        iov.iov_base = ack;
        iov.iov_len = sizeof(ack);
        if (send_all(fd, &iov, 1) != 0) {
            return;
        }
    }
}

/* pp_main is the server thread: one connection at a time. */
static void *
pp_main(void *arg)
{
    struct bench_pp_server *srv = arg;
    int fd;

    while (!atomic_load(&srv->stop)) {
        fd = accept4(srv->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            break; /* shut down (EINVAL), or broken */
        }
        pthread_mutex_lock(&srv->lock);
        if (atomic_load(&srv->stop)) {
            pthread_mutex_unlock(&srv->lock);
            close(fd);
            break;
        }
        srv->cfd = fd;
        pthread_mutex_unlock(&srv->lock);
        pp_nodelay(fd);
        if (srv->buf == NULL) {
            srv->buf = bench_map(srv->size);
        }
        if (srv->buf != NULL) {
            pp_serve_conn(srv, fd);
        } else {
            bench_err("target: ping-pong: no memory for its %zu-byte "
                      "buffer",
                      srv->size);
        }
        pthread_mutex_lock(&srv->lock);
        srv->cfd = -1;
        pthread_mutex_unlock(&srv->lock);
        close(fd);
    }
    return NULL;
}

unsigned
bench_pp_server_start(const char *addr, size_t pool_size,
                      struct bench_pp_server **srv_p)
{
    struct bench_pp_server *srv;
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    int one = 1;
    int e;

    *srv_p = NULL;
    srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        bench_err("target: ping-pong server: out of memory");
        return 0;
    }
    srv->cfd = -1;
    srv->size = pool_size;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (addr != NULL && addr[0] != '\0' &&
        inet_pton(AF_INET, addr, &a.sin_addr) != 1) {
        bench_err("target: ping-pong server: %s is not an IPv4 address", addr);
        free(srv);
        return 0;
    }
    srv->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (srv->lfd < 0) {
        bench_err("target: ping-pong server: socket: %s", strerror(errno));
        free(srv);
        return 0;
    }
    (void)setsockopt(srv->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(srv->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(srv->lfd, 4) != 0 ||
        getsockname(srv->lfd, (struct sockaddr *)&a, &al) != 0) {
        bench_err("target: ping-pong server on %s: %s",
                  addr != NULL && addr[0] != '\0' ? addr : "0.0.0.0",
                  strerror(errno));
        close(srv->lfd);
        free(srv);
        return 0;
    }
    pthread_mutex_init(&srv->lock, NULL);
    e = pthread_create(&srv->thread, NULL, pp_main, srv);
    if (e != 0) {
        bench_err("target: ping-pong server: pthread_create: %s", strerror(e));
        pthread_mutex_destroy(&srv->lock);
        close(srv->lfd);
        free(srv);
        return 0;
    }
    *srv_p = srv;
    return ntohs(a.sin_port);
}

void
bench_pp_server_stop(struct bench_pp_server *srv)
{
    if (srv == NULL) {
        return;
    }
    /* shutdown wakes the thread in accept (EINVAL) or recv (EOF) */
    pthread_mutex_lock(&srv->lock);
    atomic_store(&srv->stop, 1);
    if (srv->cfd >= 0) {
        shutdown(srv->cfd, SHUT_RDWR);
    }
    pthread_mutex_unlock(&srv->lock);
    shutdown(srv->lfd, SHUT_RDWR);
    pthread_join(srv->thread, NULL);
    close(srv->lfd);
    pthread_mutex_destroy(&srv->lock);
    bench_unmap(srv->buf, srv->size);
    free(srv);
}

int
bench_pp_connect(bench_session_t *s, char *why, size_t whycap)
{
    struct sockaddr_in a;
    struct timeval tv = {.tv_sec = s->o->timeout_s};
    int fd;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)s->pp_port);
    if (inet_pton(AF_INET, s->rhost, &a.sin_addr) != 1) {
        snprintf(why, whycap, "the target's address '%s' is not IPv4",
                 s->rhost);
        return -1;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, whycap, "socket: %s", strerror(errno));
        return -1;
    }
    pp_nodelay(fd);
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        snprintf(why, whycap, "connect to %s:%u: %s", s->rhost, s->pp_port,
                 strerror(errno));
        close(fd);
        return -1;
    }
    s->pp_fd = fd;
    return 0;
}

void
bench_pp_close(bench_session_t *s)
{
    if (s->pp_fd >= 0) {
        close(s->pp_fd);
        s->pp_fd = -1;
    }
}

int
bench_pp_post(bench_session_t *s, nxl_op_t op, size_t off, size_t len,
              char *why, size_t whycap)
{
    uint8_t req[PP_REQ_SIZE];
    struct iovec iov[2] = {{req, sizeof(req)}, {s->pool + off, len}};

    put_le32(req, PP_MAGIC);
    put_le32(req + 4, op == NXL_READ ? 0 : 1);
    put_le64(req + 8, off);
    put_le64(req + 16, len);
    if (send_all(s->pp_fd, iov, op == NXL_READ ? 1 : 2) != 0) {
        snprintf(why, whycap, "send to %s:%u: %s", s->rhost, s->pp_port,
                 strerror(errno));
        return -1;
    }
    return 0;
}

int
bench_pp_done(bench_session_t *s, nxl_op_t op, size_t off, size_t len,
              char *why, size_t whycap)
{
    uint8_t ack[PP_ACK_SIZE];
    int rc;

    if (op == NXL_READ) {
        rc = recv_all(s->pp_fd, s->pool + off, len);
    } else {
        rc = recv_all(s->pp_fd, ack, sizeof(ack));
    }
    if (rc != 0) {
        snprintf(why, whycap, "receive from %s:%u: %s", s->rhost, s->pp_port,
                 rc > 0 ? "the server closed the connection" : strerror(errno));
        return -1;
    }
    if (op == NXL_WRITE && get_le64(ack) != len) {
        snprintf(why, whycap, "ack for %llu bytes, %zu sent",
                 (unsigned long long)get_le64(ack), len);
        return -1;
    }
    return 0;
}
