/* peerfd.c - fetching another process's file descriptor (pidfd_getfd, or
 * /proc/<pid>/fd) and checking that it is the file a peer named. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* nxl__pidfd_open: see util.h. */
int
nxl__pidfd_open(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

/* nxl__pidfd_getfd: see util.h. */
int
nxl__pidfd_getfd(int pidfd, int fd)
{
#ifdef SYS_pidfd_getfd
    return (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
#else
    (void)pidfd;
    (void)fd;
    errno = ENOSYS;
    return -1;
#endif
}

/* nxl__peer_fd_open: see util.h. */
int
nxl__peer_fd_open(int pidfd, pid_t pid, uint32_t fd)
{
    char path[64];
    int copy = -1;

    if (pidfd >= 0) {
        copy = nxl__pidfd_getfd(pidfd, (int)fd);
    }
    if (copy < 0) {
        snprintf(path, sizeof(path), "/proc/%d/fd/%u", (int)pid, fd);
        copy = open(path, O_RDWR | O_CLOEXEC);
    }
    return copy;
}

/* nxl__fd_is_file: see util.h. */
bool
nxl__fd_is_file(int fd, uint64_t dev, uint64_t ino, uint64_t off, uint64_t len,
                uint64_t *size_p)
{
    struct stat sb;

    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) ||
        (uint64_t)sb.st_dev != dev || (uint64_t)sb.st_ino != ino ||
        off > (uint64_t)sb.st_size || len > (uint64_t)sb.st_size - off) {
        return false;
    }
    *size_p = (uint64_t)sb.st_size;
    return true;
}
