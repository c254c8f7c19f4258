/*
 * lstream.h - local notification streams: ordered, framed notifications
 * between backend engines of one host, over abstract unix stream sockets.
 *
 * Why the kernel and not shared memory: a process killed while it writes
 * a frame leaves nothing half-written that the receiver must get past.
 * The socket keeps the bytes that were sent, the receiver reads up to the
 * cut and closes that one stream; every other sender goes on. A ring in
 * shared memory has no such owner: UCX 1.13's shared-memory FIFO stops
 * for good at an element whose writer died between claiming and filling
 * it (docs/reliability.md, "Defects found", 6).
 *
 * Every engine that receives owns an nxl__ls_t: a listener on
 * "\0nxl-<kind>-<pid>-<token as 16 hex digits>" and the streams it
 * accepted. A sender opens one nxl__ls_tx_t per peer engine; it connects
 * (again later if the backlog was full) and writes a hello frame with its
 * agent name, then one frame per notification:
 *
 *   hello: magic u32 "NXSN" | version u16 = 1 | name_len u16 | name
 *   frame: type u8 (1 = notification) | 3 zero bytes | len u32 | message
 *
 * Everything is little endian; unknown frame types are skipped; a name
 * longer than NXL__LS_NAME_MAX or with a NUL, a bad magic or version, or
 * a message over the set's max_msg closes that stream (its sender is not
 * trusted). Connections from another user are refused unless one side is
 * root. Sockets are non-blocking on both ends: a sender queues what the
 * socket does not take and flushes it from nxl__ls_tx_kick or when the
 * set reports the socket writable; a receiver reads in nxl__ls_progress
 * only.
 *
 * The listener, the accepted streams and the outgoing streams (hang-up
 * tells that a peer engine is gone; EPOLLOUT while bytes are queued) sit
 * in the owner's epoll set, with event values for which nxl__ls_owns is
 * true; the owner hands those to nxl__ls_event. Not an epoll set of its
 * own inside the owner's: with two threads waiting on nested sets (a
 * service thread and an application thread, as in the UCX backend) the
 * kernel can drop the wakeup, and a receiver then sleeps on full sockets
 * while every sender waits for it (seen: the UCX fan-in stalled). Events
 * carry stream ids, not pointers: a stream that another thread closed
 * in between is looked up, not found, and the event is ignored.
 *
 * Thread safety: nxl__ls_event and nxl__ls_tx_close take the set's lock
 * (then a stream's); sends on one stream are serialized by its own lock.
 * Lock order: set -> stream. The deliver callback runs with the set's lock
 * held; the failed callback with the stream's lock held (and maybe the
 * set's): neither may call back into this module.
 */
#ifndef NXL_UTIL_LSTREAM_H
#define NXL_UTIL_LSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "nxl/nxl.h"

#define NXL__LS_NAME_MAX 1024u /* agent name in a hello frame */
#define NXL__LS_SOCK_MAX 107u  /* abstract name bytes after the NUL */

/* The wire (see the top of this file). */
#define NXL__LS_HELLO_MAGIC 0x4e53584eu /* "NXSN" */
#define NXL__LS_WIRE_VERSION 1u
#define NXL__LS_HELLO_LEN 8u /* magic u32, version u16, name_len u16 */
#define NXL__LS_FRAME_HDR 8u /* type u8, 3 reserved zero bytes, len u32 */
#define NXL__LS_FRAME_NOTIF 1u

/* nxl__ls_create's flags. NXL__LS_PACED: an event of an accepted stream
 * only marks it readable (and asks the owner to wake its application);
 * nxl__ls_poll, called from the application's progress, reads it. A
 * receiver then takes notifications as fast as its application asks for
 * them, not as fast as a service thread can read them, and a slow
 * application leaves the backlog in the senders' sockets and queues
 * rather than in its own memory. Without it, events read at once. */
#define NXL__LS_PACED 1u

/* Event values of the streams in the owner's epoll set (data.u64). */
#define NXL__LS_EV (1ull << 48)
#define NXL__LS_EV_MASK (0xffffull << 48)

typedef struct nxl__ls nxl__ls_t;
typedef struct nxl__ls_tx nxl__ls_tx_t;

/* nxl__ls_deliver_fn hands one received notification from agent `from`
 * to the owner (set lock held). */
typedef void (*nxl__ls_deliver_fn)(void *ctx, const char *from, const void *msg,
                                   size_t len);

/* nxl__ls_failed_fn tells a stream's owner that the stream failed for
 * good with st (NXL_ERR_REMOTE_DISCONNECT: the peer engine is gone).
 * Called once, with the stream's lock held. */
typedef void (*nxl__ls_failed_fn)(void *arg, nxl_status_t st);

/* nxl__ls_sock_name writes "nxl-<kind>-<pid>-<token>" (the abstract name
 * without its leading NUL) to out; returns its length (< cap). */
size_t nxl__ls_sock_name(char *out, size_t cap, const char *kind, pid_t pid,
                         uint64_t token);

/* nxl__ls_owns: value (an epoll event's data.u64) is one of a set's. */
static inline int
nxl__ls_owns(uint64_t value)
{
    return (value & NXL__LS_EV_MASK) == NXL__LS_EV;
}

/* nxl__ls_create binds the listener on sock (len bytes, from
 * nxl__ls_sock_name or a peer's conn info) and adds it to the owner's
 * epoll set ep_fd (which outlives ls), as every stream later. kind
 * prefixes log lines ("shm", "ucx"). max_msg bounds a notification both
 * ways (sent on this set's streams, received by it; below 4 GiB).
 * deliver(ctx, ...) receives. Returns NXL_OK, NXL_ERR_NOMEM, or an
 * errno-based failure (name in use). */
nxl_status_t nxl__ls_create(const char *kind, const char *sock, size_t len,
                            uint32_t max_msg, int ep_fd, unsigned flags,
                            nxl__ls_deliver_fn deliver, void *ctx,
                            nxl__ls_t **ls_p);

/* nxl__ls_destroy closes the listener and every accepted stream (out of
 * the owner's set). Every nxl__ls_tx_t opened on ls must be closed first.
 * Accepts NULL. */
void nxl__ls_destroy(nxl__ls_t *ls);

/* nxl__ls_event handles one event of the owner's set whose value
 * nxl__ls_owns: accepts, reads and delivers (the listener, an accepted
 * stream), or moves queued bytes / notes a hang-up (an outgoing stream);
 * never blocks. A stale value (the stream closed meanwhile) is ignored.
 * Returns events handled; *wake (may be NULL) is raised when the owner
 * should wake its application: notifications delivered, or (paced) a
 * stream marked readable. Any thread. */
unsigned nxl__ls_event(nxl__ls_t *ls, uint64_t value, uint32_t events,
                       unsigned *wake);

/* nxl__ls_receiving: some peer has a stream open to this set (one atomic
 * load), i.e. notifications may come on it. */
int nxl__ls_receiving(nxl__ls_t *ls);

/* nxl__ls_poll reads the streams that NXL__LS_PACED marked readable (up
 * to 4 MiB each a call) and delivers their frames; one atomic load when
 * none is. Returns streams read; *delivered (may be NULL) gets the
 * notifications delivered added. Any thread. */
unsigned nxl__ls_poll(nxl__ls_t *ls, unsigned *delivered);

/* nxl__ls_tx_open makes the stream to the engine listening on sock (len
 * bytes) for agent peer_name, queues the hello naming own_name and tries
 * to connect. failed(arg, st) (may be NULL) hears of its failure. The
 * stream's events go to ls's set. Returns NXL_OK, NXL_ERR_INVALID_PARAM
 * (a name of 0 or over NXL__LS_NAME_MAX bytes, sock too long),
 * NXL_ERR_NOMEM, or NXL_ERR_REMOTE_DISCONNECT (nobody listens there). */
nxl_status_t nxl__ls_tx_open(nxl__ls_t *ls, const char *peer_name,
                             const char *sock, size_t len, const char *own_name,
                             nxl__ls_failed_fn failed, void *arg,
                             nxl__ls_tx_t **tx_p);

/* nxl__ls_tx_send puts one notification frame on the stream: in order
 * behind everything sent before, written at once when nothing waits
 * (one sendmsg), else queued (up to 256 MiB per stream). *end_p (may be
 * NULL) gets the frame's end as a stream position: the frame has left
 * this process once nxl__ls_tx_sent reaches it. Returns NXL_OK,
 * NXL_ERR_INVALID_PARAM (over the set's max_msg), NXL_ERR_NOMEM, or the
 * stream's sticky failure (NXL_ERR_REMOTE_DISCONNECT once the peer engine
 * is gone). Thread-safe. */
nxl_status_t nxl__ls_tx_send(nxl__ls_tx_t *tx, const void *msg, size_t len,
                             uint64_t *end_p);

/* nxl__ls_tx_sent is how many stream bytes the socket has taken (a
 * position to compare with nxl__ls_tx_send's *end_p). Lock-free. */
uint64_t nxl__ls_tx_sent(nxl__ls_tx_t *tx);

/* nxl__ls_tx_kick writes queued bytes if there are any; otherwise it
 * costs one atomic load. Never blocks on a busy lock. */
void nxl__ls_tx_kick(nxl__ls_tx_t *tx);

/* nxl__ls_tx_drain waits (poll on the socket) for queued bytes to leave,
 * so that unloading a peer right after a transfer does not lose its
 * notifications. A send returns once its frame is queued, so a fast
 * sender can be far ahead of a busy receiver: the wait goes on while the
 * receiver takes bytes, and gives up (with a warning) once none left for
 * timeout_ms, or the stream failed. */
void nxl__ls_tx_drain(nxl__ls_tx_t *tx, int timeout_ms);

/* nxl__ls_tx_failed is the stream's sticky failure (NXL_OK while usable).
 */
nxl_status_t nxl__ls_tx_failed(nxl__ls_tx_t *tx);

/* nxl__ls_tx_close takes the stream out of its set (under the set's lock,
 * so no progress call still holds an event that points at it) and closes
 * it; bytes still queued are dropped and later sends fail with
 * NXL_ERR_REMOTE_DISCONNECT (the failed callback is not called). The
 * object stays valid until nxl__ls_tx_free. A second call does nothing
 * (and does not touch the set). Not to be called concurrently with
 * itself or nxl__ls_tx_free. Accepts NULL. */
void nxl__ls_tx_close(nxl__ls_tx_t *tx);

/* nxl__ls_tx_free closes the stream if nxl__ls_tx_close did not (that
 * needs its set alive) and frees it. Accepts NULL. */
void nxl__ls_tx_free(nxl__ls_tx_t *tx);

#endif /* NXL_UTIL_LSTREAM_H */
