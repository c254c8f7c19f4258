/*
 * util.h - internal services below everything else: errors, logging, time,
 * bounds-checked byte buffers. Not part of the public API.
 */
#ifndef NXL_UTIL_H
#define NXL_UTIL_H

#include <nxl/nxl.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define NXL__MIN(a, b) ((a) < (b) ? (a) : (b))
#define NXL__MAX(a, b) ((a) > (b) ? (a) : (b))
#define NXL__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* --- errors (src/util/error.c) ------------------------------------------ */

/* nxl__fail sets this thread's last-error message and returns status, so a
 * failing function can `return nxl__fail(NXL_ERR_IO, "shm: ...")`. The
 * function that decides a call failed calls it; callers pass the status up
 * without calling it again. */
nxl_status_t nxl__fail(nxl_status_t status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* nxl__fail_errno is nxl__fail with ": strerror(err)" appended and the
 * status chosen from err (ENOMEM -> NOMEM, EPERM/EACCES -> NOT_ALLOWED,
 * ESRCH/ECONNRESET/EPIPE -> REMOTE_DISCONNECT, EFAULT -> INVALID_PARAM,
 * ETIMEDOUT -> TIMEOUT, else IO). */
nxl_status_t nxl__fail_errno(int err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* nxl__set_error sets the last-error message without a status. */
void nxl__set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* nxl__clear_error empties this thread's last-error message. */
void nxl__clear_error(void);

/* nxl__abi_in reads a caller-filled public struct that starts with a
 * uint32_t size (set by its _init function to the sizeof the caller was
 * built with) into dst, this build's layout of dst_size bytes, already
 * filled with the defaults: it copies the first min(size, dst_size) bytes,
 * so fields the caller's (older) layout lacks keep their defaults, then
 * sets dst's size to dst_size. min_size is the size of the struct's first
 * layout. Returns NXL_OK; NXL_ERR_INVALID_PARAM when size is below
 * min_size (0: not filled by _init); NXL_ERR_NOT_SUPPORTED when a newer
 * layout sets bytes beyond dst_size (an option this build cannot honour).
 * what names the struct in the message. Thread-safe. */
nxl_status_t nxl__abi_in(void *dst, size_t dst_size, const void *src,
                         size_t min_size, const char *what);

/* nxl__status_known tells whether status is one of this build's
 * nxl_status_t values (a newer peer may send others). Thread-safe. */
bool nxl__status_known(int status);

/* --- logging (src/util/log.c) ------------------------------------------- */

/* nxl__log writes "nxl <level>: message" to stderr when level is at or
 * below NXL_LOG_LEVEL (or NIXL_LOG_LEVEL): error|warn|info|debug|trace,
 * default warn. Thread-safe. */
void nxl__log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
bool nxl__log_enabled(int level);

#define nxl__error(...) nxl__log(NXL_LOG_ERROR, __VA_ARGS__)
#define nxl__warn(...) nxl__log(NXL_LOG_WARN, __VA_ARGS__)
#define nxl__debug(...)                                                        \
    do {                                                                       \
        if (nxl__log_enabled(NXL_LOG_DEBUG))                                   \
            nxl__log(NXL_LOG_DEBUG, __VA_ARGS__);                              \
    } while (0)

/* nxl__getenv returns NXL_<name> if set, else NIXL_<name>, else NULL. */
const char *nxl__getenv(const char *name);

/* --- time (src/util/time.c) --------------------------------------------- */

/* nxl__now_ns returns CLOCK_MONOTONIC in nanoseconds. */
uint64_t nxl__now_ns(void);
/* nxl__coarse_ns returns CLOCK_MONOTONIC_COARSE in nanoseconds: the same
 * timeline, advancing once a kernel tick (1-10 ms), and several times
 * cheaper to read than nxl__now_ns (no TSC read: ~10 ns against 35-65 ns
 * on a KVM guest). For periods that may stretch by a tick. Thread-safe. */
uint64_t nxl__coarse_ns(void);
/* nxl__remaining_ms returns what is left of timeout_ms since start_ns (an
 * nxl__now_ns reading): -1 for a negative timeout ("forever"), 0 once the
 * deadline passed. Thread-safe. */
int nxl__remaining_ms(int timeout_ms, uint64_t start_ns);
/* nxl__realtime_us returns CLOCK_REALTIME in microseconds. */
uint64_t nxl__realtime_us(void);

/* --- byte buffers (src/util/buf.c) -------------------------------------- */

/* nxl__wbuf_t is a growable little-endian writer. After an allocation
 * failure it stays failed: writes are ignored and finish returns NOMEM. */
typedef struct nxl__wbuf {
    uint8_t *data;
    size_t len;
    size_t cap;
    bool failed;
} nxl__wbuf_t;

void nxl__wbuf_init(nxl__wbuf_t *w);
void nxl__wbuf_fini(nxl__wbuf_t *w);
void nxl__wbuf_reserve(nxl__wbuf_t *w, size_t extra);
void nxl__wbuf_put(nxl__wbuf_t *w, const void *p, size_t n);
void nxl__wbuf_u8(nxl__wbuf_t *w, uint8_t v);
void nxl__wbuf_u16(nxl__wbuf_t *w, uint16_t v);
void nxl__wbuf_u32(nxl__wbuf_t *w, uint32_t v);
void nxl__wbuf_u64(nxl__wbuf_t *w, uint64_t v);
/* nxl__wbuf_patch_u32 overwrites 4 bytes at off (a length written earlier). */
void nxl__wbuf_patch_u32(nxl__wbuf_t *w, size_t off, uint32_t v);
/* nxl__wbuf_finish moves the bytes into *blob (the caller frees it with
 * nxl_blob_free) and resets w. Returns NXL_OK or NXL_ERR_NOMEM. */
nxl_status_t nxl__wbuf_finish(nxl__wbuf_t *w, nxl_blob_t *blob);

/* nxl__rbuf_t is a bounds-checked little-endian reader over peer input.
 * Every getter returns false (and reads nothing) when fewer bytes remain
 * than requested; the reader then stays failed. */
typedef struct nxl__rbuf {
    const uint8_t *p;
    size_t len;
    size_t pos;
    bool failed;
} nxl__rbuf_t;

void nxl__rbuf_init(nxl__rbuf_t *r, const void *p, size_t len);
size_t nxl__rbuf_left(const nxl__rbuf_t *r);
bool nxl__rbuf_u8(nxl__rbuf_t *r, uint8_t *v);
bool nxl__rbuf_u16(nxl__rbuf_t *r, uint16_t *v);
bool nxl__rbuf_u32(nxl__rbuf_t *r, uint32_t *v);
bool nxl__rbuf_u64(nxl__rbuf_t *r, uint64_t *v);
/* nxl__rbuf_bytes points *p at the next n bytes (no copy) and skips them. */
bool nxl__rbuf_bytes(nxl__rbuf_t *r, size_t n, const uint8_t **p);
bool nxl__rbuf_skip(nxl__rbuf_t *r, size_t n);

/* Little-endian helpers for fixed headers. */
static inline uint32_t
nxl__le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}
static inline uint64_t
nxl__le64(const uint8_t *p)
{
    return (uint64_t)nxl__le32(p) | ((uint64_t)nxl__le32(p + 4) << 32);
}
static inline void
nxl__put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline void
nxl__put_le64(uint8_t *p, uint64_t v)
{
    nxl__put_le32(p, (uint32_t)v);
    nxl__put_le32(p + 4, (uint32_t)(v >> 32));
}

/* nxl__text_addf appends printf-style text to the NUL-terminated text in
 * buf (cap bytes) at *len, advancing *len. Text that does not fit is cut
 * (buf stays NUL-terminated, *len stops at cap - 1). Returns true when all
 * of it fit, false when it was cut, buf was already full or formatting
 * failed. The caller owns buf; thread-safe for distinct buffers. */
bool nxl__text_addf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* --- backend parameters (src/util/param.c) ----------------------------- */

/* nxl__param_u64 parses val, the value of parameter key of backend who, as
 * a decimal integer within [min, max]; with bytes a k/m/g (binary) suffix
 * is allowed. NXL_ERR_INVALID_PARAM with a message naming key otherwise. */
nxl_status_t nxl__param_u64(const char *who, const char *key, const char *val,
                            bool bytes, uint64_t min, uint64_t max,
                            uint64_t *out);
/* nxl__param_bool parses 1/0, true/false, yes/no, on/off (any case; an
 * empty value is false). */
nxl_status_t nxl__param_bool(const char *who, const char *key, const char *val,
                             bool *out);

/* --- sockets (src/util/sock.c) ------------------------------------------ */

/* nxl__sock_connect opens a TCP connection to host:port (numeric IPv4/IPv6
 * or a name) within timeout_ms, with TCP_NODELAY and CLOEXEC. Returns the
 * blocking fd in *fd_p; NXL_ERR_IO, NXL_ERR_TIMEOUT, NXL_ERR_INVALID_PARAM. */
nxl_status_t nxl__sock_connect(const char *host, uint16_t port, int timeout_ms,
                               int *fd_p);
/* nxl__sock_listen binds and listens on addr (NULL = any) and port (0 =
 * ephemeral); *port_p receives the bound port. */
nxl_status_t nxl__sock_listen(const char *addr, uint16_t port, int *fd_p,
                              uint16_t *port_p);
/* nxl__sock_send_all writes n bytes, retrying on EINTR/partial writes,
 * waiting at most timeout_ms in total (-1 = forever). */
nxl_status_t nxl__sock_send_all(int fd, const void *p, size_t n,
                                int timeout_ms);
/* nxl__sock_recv_all reads exactly n bytes within timeout_ms; a closed
 * peer is NXL_ERR_REMOTE_DISCONNECT. */
nxl_status_t nxl__sock_recv_all(int fd, void *p, size_t n, int timeout_ms);

/* --- another process's files (src/util/peerfd.c) ----------------------- */

/* nxl__pidfd_open returns a pidfd (CLOEXEC) for pid, or -1 with errno
 * (ENOSYS where the system headers lack the call). The caller closes it.
 * Thread-safe. */
int nxl__pidfd_open(pid_t pid);
/* nxl__pidfd_getfd returns a copy (CLOEXEC, the caller's to close) of fd
 * of the process behind pidfd, or -1 with errno (ENOSYS as above). Needs
 * ptrace access to that process. Thread-safe. */
int nxl__pidfd_getfd(int pidfd, int fd);
/* nxl__peer_fd_open returns a copy of fd of process pid: through pidfd
 * (skipped when negative), else or when that fails by opening
 * /proc/<pid>/fd/<fd> read-write (CLOEXEC). -1 with errno from the last
 * try. The caller closes the result. Thread-safe. */
int nxl__peer_fd_open(int pidfd, pid_t pid, uint32_t fd);
/* nxl__fd_is_file says whether fd is a regular file with device dev and
 * inode ino that holds [off, off + len) (rules out any other file behind
 * a peer's fd number); true stores its size in *size_p. Thread-safe. */
bool nxl__fd_is_file(int fd, uint64_t dev, uint64_t ino, uint64_t off,
                     uint64_t len, uint64_t *size_p);

/* --- hashing (src/util/hash.c) ------------------------------------------ */

/* nxl__hash64 is FNV-1a 64 over n bytes (names, small keys; not crypto). */
uint64_t nxl__hash64(const void *p, size_t n);

/* --- uuid (src/util/uuid.c) -------------------------------------------- */

#define NXL__UUID_LEN 37 /* 36 characters and a NUL */

/* nxl__uuid4 writes a random (version 4, RFC 4122 variant) uuid string
 * into out, lower-case hex with dashes. Randomness comes from a per-thread
 * pool refilled from getrandom (else /dev/urandom), so most calls make no
 * system call. Thread-safe. */
void nxl__uuid4(char out[NXL__UUID_LEN]);

/* --- base64 (src/util/b64.c) ------------------------------------------ */

/* nxl__b64_encode appends the padded standard base64 of n bytes to w. */
void nxl__b64_encode(nxl__wbuf_t *w, const uint8_t *p, size_t n);

/* nxl__b64_check says whether s (n chars) is padded standard base64; the
 * decoded size goes to *out_n. */
bool nxl__b64_check(const char *s, size_t n, size_t *out_n);

/* nxl__b64_decode decodes checked base64 s (n chars) into out (room for
 * the size nxl__b64_check gave). */
void nxl__b64_decode(const char *s, size_t n, uint8_t *out);

/* --- JSON (src/util/json.c) -------------------------------------------- */

struct json_object;

/* nxl__json_read parses the len bytes at p (no NUL inside: the caller
 * checks) as one strict JSON value, UTF-8 validated when utf8, with
 * nothing but white space after it. *root_p gets a new reference (the
 * caller puts it). Returns NXL_OK, NXL_ERR_NOMEM or NXL_ERR_PROTO
 * ("<who>: <json-c's reason>", "<who>: trailing characters at byte N",
 * "<who>: input too large"). Thread-safe. */
nxl_status_t nxl__json_read(const char *p, size_t len, bool utf8,
                            const char *who, struct json_object **root_p);

/* nxl__json_str appends s (n bytes) as a JSON string literal to w. */
void nxl__json_str(nxl__wbuf_t *w, const char *s, size_t n);

/* nxl__json_text appends NUL-terminated text to w. */
void nxl__json_text(nxl__wbuf_t *w, const char *s);

/* nxl__json_u64 appends v in decimal to w. */
void nxl__json_u64(nxl__wbuf_t *w, uint64_t v);

/* nxl__json_finish NUL-terminates w and moves it into *json_p (len
 * excludes the NUL). NXL_OK or NXL_ERR_NOMEM. */
nxl_status_t nxl__json_finish(nxl__wbuf_t *w, nxl_blob_t *json_p);

#include "btree.h"
#include "fault.h"
#include "regtab.h"
#include "tsan.h"

#endif /* NXL_UTIL_H */
