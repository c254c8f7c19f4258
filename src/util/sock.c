/* sock.c - TCP helpers with bounded waits. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int
nxl__remaining_ms(int timeout_ms, uint64_t start_ns)
{
    uint64_t spent;

    if (timeout_ms < 0) {
        return -1;
    }
    spent = (nxl__now_ns() - start_ns) / 1000000u;
    return (spent >= (uint64_t)timeout_ms) ? 0 : timeout_ms - (int)spent;
}

static nxl_status_t
nxl__sock_wait(int fd, short events, int timeout_ms, uint64_t start_ns,
               const char *what)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    int left, rc;

    for (;;) {
        left = nxl__remaining_ms(timeout_ms, start_ns);
        if (left == 0) {
            return nxl__fail(NXL_ERR_TIMEOUT,
                             "socket: %s timed out after %d ms", what,
                             timeout_ms);
        }
        rc = poll(&pfd, 1, left);
        if (rc > 0) {
            return NXL_OK;
        }
        if (rc < 0 && errno != EINTR) {
            return nxl__fail_errno(errno, "socket: poll");
        }
    }
}

static void
nxl__sock_tune(int fd)
{
    int one = 1;

    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

nxl_status_t
nxl__sock_connect(const char *host, uint16_t port, int timeout_ms, int *fd_p)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL, *ai;
    char portstr[8];
    uint64_t start = nxl__now_ns();
    nxl_status_t status = NXL_ERR_IO;
    int fd = -1, rc, err;
    socklen_t elen = sizeof(err);

    if (host == NULL || host[0] == '\0') {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "socket: empty host");
    }
    snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
    rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "socket: resolve %s: %s", host,
                         gai_strerror(rc));
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family,
                    ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
        if (fd < 0) {
            status = nxl__fail_errno(errno, "socket: socket");
            continue;
        }
        rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc < 0 && errno == EINPROGRESS) {
            status = nxl__sock_wait(fd, POLLOUT, timeout_ms, start, "connect");
            if (status == NXL_OK) {
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0) {
                    err = errno;
                }
                rc = (err == 0) ? 0 : -1;
                errno = err;
            }
        }
        if (rc == 0) {
            break;
        }
        if (status == NXL_OK || errno != 0) {
            status = nxl__fail_errno(errno, "socket: connect %s:%u", host,
                                     (unsigned)port);
        }
        close(fd);
        fd = -1;
        if (status == NXL_ERR_TIMEOUT) {
            break;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        return status;
    }
    /* Back to blocking: callers bound their waits with poll. */
    (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    nxl__sock_tune(fd);
    *fd_p = fd;
    return NXL_OK;
}

nxl_status_t
nxl__sock_listen(const char *addr, uint16_t port, int *fd_p, uint16_t *port_p)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE,
                             .ai_family = AF_INET};
    struct addrinfo *res = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char portstr[8];
    int fd, one = 1, rc;
    nxl_status_t status;

    snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
    if (addr != NULL && strchr(addr, ':') != NULL) {
        hints.ai_family = AF_INET6;
    }
    rc = getaddrinfo(addr, portstr, &hints, &res);
    if (rc != 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "socket: resolve %s: %s",
                         addr ? addr : "*", gai_strerror(rc));
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        status = nxl__fail_errno(errno, "socket: socket");
        goto err_free;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) {
        status = nxl__fail_errno(errno, "socket: bind %s:%u",
                                 addr ? addr : "0.0.0.0", (unsigned)port);
        status = NXL_ERR_IO;
        goto err_close;
    }
    if (listen(fd, 128) < 0) {
        status = nxl__fail_errno(errno, "socket: listen");
        goto err_close;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        status = nxl__fail_errno(errno, "socket: getsockname");
        goto err_close;
    }
    *port_p =
        ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                       : ((struct sockaddr_in *)&ss)->sin_port);
    freeaddrinfo(res);
    *fd_p = fd;
    return NXL_OK;

err_close:
    close(fd);
err_free:
    freeaddrinfo(res);
    return status;
}

nxl_status_t
nxl__sock_send_all(int fd, const void *p, size_t n, int timeout_ms)
{
    const uint8_t *b = p;
    uint64_t start = nxl__now_ns();
    nxl_status_t status;
    ssize_t rc;

    while (n > 0) {
        rc = send(fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (rc > 0) {
            b += rc;
            n -= (size_t)rc;
            continue;
        }
        if (rc < 0 && errno == EINTR) {
            continue;
        }
        if (rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            status = nxl__sock_wait(fd, POLLOUT, timeout_ms, start, "send");
            if (status != NXL_OK) {
                return status;
            }
            continue;
        }
        return nxl__fail_errno(rc < 0 ? errno : EPIPE, "socket: send");
    }
    return NXL_OK;
}

nxl_status_t
nxl__sock_recv_all(int fd, void *p, size_t n, int timeout_ms)
{
    uint8_t *b = p;
    uint64_t start = nxl__now_ns();
    nxl_status_t status;
    ssize_t rc;

    while (n > 0) {
        rc = recv(fd, b, n, MSG_DONTWAIT);
        if (rc > 0) {
            b += rc;
            n -= (size_t)rc;
            continue;
        }
        if (rc == 0) {
            return nxl__fail(NXL_ERR_REMOTE_DISCONNECT,
                             "socket: peer closed the connection");
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            status = nxl__sock_wait(fd, POLLIN, timeout_ms, start, "recv");
            if (status != NXL_OK) {
                return status;
            }
            continue;
        }
        return nxl__fail_errno(errno, "socket: recv");
    }
    return NXL_OK;
}
