/*
 * xt_io.h - whole reads and writes for tests: on the pipes and socket
 * pairs that tie a test to the processes it forks, and of files under
 * tests/data.
 */
#ifndef NXL_TESTS_XT_IO_H
#define NXL_TESTS_XT_IO_H

#include <stdbool.h>
#include <stddef.h>

/* xt_io_all moves exactly len bytes over fd: writes p to fd when wr,
 * else reads fd into p, going on after EINTR. Returns 0, or -1 on an
 * error or end of file. xt_write_all and xt_read_all are its two
 * directions. */
int xt_io_all(int fd, void *p, size_t len, bool wr);
int xt_write_all(int fd, const void *p, size_t len);
int xt_read_all(int fd, void *p, size_t len);

/* xt_send_blob writes len bytes at p after their length (a 64-bit word
 * in this host's order). xt_recv_blob reads one into *p_p (malloc'ed, a
 * NUL after its len bytes; the caller frees it) and *len_p, refusing a
 * length over 1 GiB. Both return 0 or -1. */
int xt_send_blob(int fd, const void *p, size_t len);
int xt_recv_blob(int fd, char **p_p, size_t *len_p);

/* xt_read_data reads tests/data/<name> whole into a malloc'ed buffer with
 * a NUL after its *len_p bytes (the caller frees it), or returns NULL. */
char *xt_read_data(const char *name, size_t *len_p);

#endif /* NXL_TESTS_XT_IO_H */
