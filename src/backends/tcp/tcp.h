/*
 * tcp.h - internals of the TCP backend (not part of any public API).
 *
 * The backend moves DRAM between agents over plain TCP. Each engine runs
 * one I/O thread (epoll) that accepts connections and serves READ and WRITE
 * requests straight from and into registered memory, and completes the
 * requests this engine initiated. The wire format is in frame.c and in
 * docs/backends/tcp.md.
 *
 * Files: frame.c (pure codec: frames, hello, conn info; fuzzed),
 *        engine.c (ops table, params, registrations, peers),
 *        io.c (connection lifecycle and the I/O thread),
 *        tx.c (transmit queues, sending, the expected-reply ring),
 *        rx.c (receive state machine, replies, which thread receives),
 *        srv.c (the target side: serving READ, WRITE, NOTIF, CANCEL),
 *        xfer.c (prep/post/check/cancel/release and notifications).
 * A post goes xfer.c -> tx.c; what arrives goes io.c or the polling
 * thread -> rx.c -> srv.c (requests) or xfer.c (replies).
 */
#ifndef NXL_BE_TCP_H
#define NXL_BE_TCP_H

#include <nxl/nxl_backend.h>

#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

/* --- wire format (frame.c) ---------------------------------------------- */

#define BE_TCP_HDR_SIZE 32u
#define BE_TCP_HDR_MAGIC 0x584eu       /* "NX" little-endian */
#define BE_TCP_HELLO_MAGIC 0x54435458u /* "XTCT" little-endian */
#define BE_TCP_VERSION 1u              /* the hello's version field */
#define BE_TCP_PROTO_MAX 3u            /* highest protocol we speak */
#define BE_TCP_CHUNK (4u << 20)        /* v2: READ reply frame payload */
#define BE_TCP_WDESC_SIZE 16u          /* u64 addr, u64 len */
#define BE_TCP_WDESC_KEYED 24u         /* v3: ... and u64 region key */
#define BE_TCP_KEY_SIZE 8u             /* region public data: u64 key */
#define BE_TCP_MAX_DESCS 65536u        /* descriptors in one frame */
#define BE_TCP_MAX_NOTIF (4u << 20)    /* notification message bytes */
#define BE_TCP_MAX_NAME 1024u          /* agent name bytes in a hello */
#define BE_TCP_HELLO_FIXED 14u         /* hello body without the name */
#define BE_TCP_CONNINFO_VERSION 1u
#define BE_TCP_MAX_ADDRS 8u
#define BE_TCP_ADDR_MAX 64u /* numeric address text, NUL incl. */

/* Frame types. Requests go from the connecting side (the initiator) to
 * the accepting side (the target); replies come back in request order. */
enum {
    BE_TCP_HELLO = 1,     /* c->s: aux = hello body */
    BE_TCP_HELLO_ACK = 2, /* s->c: aux = hello body (server's name) */
    BE_TCP_READ_REQ = 3,  /* c->s: ndesc descriptors */
    BE_TCP_READ_RESP = 4, /* s->c: status; data = the bytes, in order */
    BE_TCP_WRITE_REQ = 5, /* c->s: descriptors, aux = notif?, data */
    BE_TCP_WRITE_ACK = 6, /* s->c: status */
    BE_TCP_NOTIF = 7,     /* c->s: aux = message; no reply */
    BE_TCP_CANCEL = 8,    /* v2, c->s: id = a READ_REQ to cut short */
    BE_TCP_TYPE_MAX = 8
};

/* Frame flags.
 * BE_TCP_F_KEYS, READ_REQ and WRITE_REQ (v3, and only there): every
 * descriptor carries the key of the target's region it lies in (what the
 * target's metadata published; 0: none known, the target checks the range
 * only), so a request made from metadata older than the region's
 * registration is refused.
 * BE_TCP_F_NOTIF, WRITE_REQ: aux is a notification to deliver after the
 * data, if the write succeeded. Accepted from peers, no longer sent: a
 * canceled frame finished with zeros would still deliver it. A NOTIF frame
 * whose id is a WRITE_REQ's (sent right after it on the same connection)
 * replaces it.
 * BE_TCP_F_MORE, READ_RESP (v2): more reply frames of this request follow;
 * the last has no flag. */
#define BE_TCP_F_NOTIF 0x01u
#define BE_TCP_F_MORE 0x02u
#define BE_TCP_F_KEYS 0x04u

/* be_tcp_frame_t is a decoded 32-byte frame header:
 *   0 u16 magic 0x584e | 2 u8 type | 3 u8 flags | 4 i32 status
 *   8 u32 ndesc | 12 u32 aux_len | 16 u64 id | 24 u64 data_len
 * then ndesc descriptors (16 bytes, 24 with F_KEYS), aux_len bytes of
 * aux, data_len bytes of payload. */
typedef struct be_tcp_frame {
    uint8_t type;
    uint8_t flags;
    int32_t status;
    uint32_t ndesc;
    uint32_t aux_len;
    uint64_t id;
    uint64_t data_len;
} be_tcp_frame_t;

/* be_tcp_hello_t is a decoded hello body. name points into the input. */
typedef struct be_tcp_hello {
    uint16_t version;
    uint16_t max_version; /* highest protocol the sender speaks (the
                           * field is 0 from version-1 peers: 1 here) */
    uint16_t stream;
    uint16_t nstreams;
    const char *name;
    size_t name_len;
} be_tcp_hello_t;

/* be_tcp_conninfo_t is a decoded conn info blob. */
typedef struct be_tcp_conninfo {
    uint16_t port;
    uint64_t host_token; /* same value = same host and network namespace */
    unsigned naddrs;
    char addrs[BE_TCP_MAX_ADDRS][BE_TCP_ADDR_MAX];
} be_tcp_conninfo_t;

/* be_tcp_frame_encode writes f as a 32-byte header into out. */
void be_tcp_frame_encode(const be_tcp_frame_t *f, uint8_t *out);

/* be_tcp_frame_decode decodes and validates a frame header from the len
 * bytes at p. Returns BE_TCP_HDR_SIZE on success, 0 when fewer than 32
 * bytes are given, -1 when the header is invalid (*why_p says why). Every
 * length is checked against the limits above and against its type. */
int be_tcp_frame_decode(const uint8_t *p, size_t len, be_tcp_frame_t *f,
                        const char **why_p);

/* be_tcp_wdesc_size is the size of one wire descriptor of a request
 * whose header has flags: BE_TCP_WDESC_KEYED with BE_TCP_F_KEYS, else
 * BE_TCP_WDESC_SIZE. */
static inline size_t
be_tcp_wdesc_size(uint8_t flags)
{
    return (flags & BE_TCP_F_KEYS) ? BE_TCP_WDESC_KEYED : BE_TCP_WDESC_SIZE;
}

/* be_tcp_descs_check validates ndesc wire descriptors of stride bytes
 * (be_tcp_wdesc_size) at p (exactly ndesc * stride bytes): no addr + len
 * overflows and the lengths sum without overflow; the sum goes to
 * *total_p. Keys are not checked here (any value is well formed).
 * Returns false (and *why_p) if not. */
bool be_tcp_descs_check(const uint8_t *p, size_t len, uint32_t ndesc,
                        size_t stride, uint64_t *total_p, const char **why_p);

/* be_tcp_wdesc reads wire descriptor i of a checked table of stride-byte
 * descriptors; *key gets its region key (0 when stride has none). */
static inline void
be_tcp_wdesc(const uint8_t *table, size_t stride, uint32_t i, uint64_t *addr,
             uint64_t *len, uint64_t *key)
{
    const uint8_t *d = table + (size_t)i * stride;

    *addr = nxl__le64(d);
    *len = nxl__le64(d + 8);
    *key = stride == BE_TCP_WDESC_KEYED ? nxl__le64(d + 16) : 0;
}

/* be_tcp_hello_encode writes a hello body for name into out (capacity
 * cap) and returns its length, or 0 if it does not fit. It offers
 * protocol version 1 only (max_version field 0), as peers before version
 * 2 did. */
size_t be_tcp_hello_encode(uint8_t *out, size_t cap, const char *name,
                           uint16_t stream, uint16_t nstreams);

/* be_tcp_hello_encode_max is be_tcp_hello_encode offering max_version
 * (written as is, 1 included) as the highest protocol spoken. */
size_t be_tcp_hello_encode_max(uint8_t *out, size_t cap, const char *name,
                               uint16_t stream, uint16_t nstreams,
                               uint16_t max_version);

/* be_tcp_hello_decode validates a hello body. */
bool be_tcp_hello_decode(const uint8_t *p, size_t len, be_tcp_hello_t *h,
                         const char **why_p);

/* be_tcp_conninfo_encode serializes ci into *out (malloc). */
nxl_status_t be_tcp_conninfo_encode(const be_tcp_conninfo_t *ci,
                                    nxl_blob_t *out);

/* be_tcp_conninfo_decode validates conn info (peer input). */
bool be_tcp_conninfo_decode(const uint8_t *p, size_t len, be_tcp_conninfo_t *ci,
                            const char **why_p);

/* be_tcp_stream_scan walks a byte stream of frames as a receiver would
 * (headers, descriptor tables, hellos; payloads skipped) and returns the
 * number of whole frames, or -1 at the first invalid one. Pure; the fuzz
 * target and the tests drive it. */
long be_tcp_stream_scan(const uint8_t *p, size_t len, const char **why_p);

/* be_tcp_status_from_wire maps a status a peer sent to one we report:
 * known errors pass, anything else becomes NXL_ERR_BACKEND. */
nxl_status_t be_tcp_status_from_wire(int32_t st);

/* --- engine state ------------------------------------------------------- */

typedef struct be_tcp_engine be_tcp_engine_t;
typedef struct be_tcp_conn be_tcp_conn_t;
typedef struct be_tcp_peer be_tcp_peer_t;
typedef struct be_tcp_req be_tcp_req_t;
typedef struct be_tcp_part be_tcp_part_t;
typedef struct be_tcp_txi be_tcp_txi_t;

/* What a transmit item is, which decides what finishing it means. */
enum {
    BE_TCP_TX_PART = 1, /* a request frame of a transfer part */
    BE_TCP_TX_NOTIF,    /* standalone notification (malloc, freed) */
    BE_TCP_TX_REQNOTIF, /* a transfer's trailing notification */
    BE_TCP_TX_ORPHAN,   /* rest of a canceled frame (malloc, freed) */
    BE_TCP_TX_RESP,     /* a server reply (malloc, freed) */
    BE_TCP_TX_CTRL      /* a CANCEL frame (malloc, freed) */
};

/* be_tcp_txi_t is one frame queued for sending on a connection. iov[0..
 * nctrl) are control bytes, the rest payload; an orphan sends zeros after
 * its iovs. idx/off track how much went out. */
struct be_tcp_txi {
    be_tcp_txi_t *next;
    uint8_t kind;
    int iovcnt;
    int nctrl;
    int idx;
    size_t off;
    uint64_t zeros;
    struct iovec *iov;
    void *owner;
};

/* Part states. */
enum {
    BE_TCP_P_IDLE = 0,
    BE_TCP_P_QUEUED, /* in its connection's tx queue */
    BE_TCP_P_WAIT,   /* sent, waiting for the reply */
    BE_TCP_P_RECV,   /* reply payload being received */
    BE_TCP_P_DONE
};

/* be_tcp_part_t is one frame's worth of a transfer on one stream. */
struct be_tcp_part {
    be_tcp_txi_t tx;
    be_tcp_req_t *req;
    uint32_t index; /* position in the plan: stream = base + index */
    uint32_t ndesc;
    uint8_t hdr[BE_TCP_HDR_SIZE];
    uint8_t *wdesc;      /* ndesc wire descriptors (remote side) */
    struct iovec *liov;  /* ndesc local pieces */
    struct iovec *txiov; /* [hdr, wdesc, payload (WRITE)...] */
    uint64_t bytes;
    int state;           /* BE_TCP_P_*, under the conn's tx_lock */
    be_tcp_conn_t *conn; /* where the current post put it */
    uint64_t id;
};

/* be_tcp_plan_t is what prep builds once per transfer (one allocation). */
typedef struct be_tcp_plan {
    uint32_t nparts;
    be_tcp_part_t *parts;
    uint8_t *notif; /* copy of this post's notification */
    size_t notif_cap;
} be_tcp_plan_t;

/* be_tcp_req_t is the core-allocated per-transfer state (req_size). */
struct be_tcp_req {
    _Atomic int status; /* NXL_IN_PROG while in flight */
    be_tcp_engine_t *eng;
    be_tcp_plan_t *plan;
    be_tcp_peer_t *peer;
    nxl_op_t op;
    bool notif_trailing; /* send the notification after all parts */
    bool notif_early;    /* a single WRITE part: its NOTIF frame is
                          * queued right behind it (same connection) */
    bool ntx_wait;       /* early: all parts done, the NOTIF frame not
                          * yet sent; its sending completes req
                          * (ntx_conn's tx_lock) */
    size_t notif_len;
    uint32_t pending;     /* parts not done; under io_lock after post */
    int err;              /* first error, under io_lock */
    uint64_t deadline_ns; /* 0 = none */
    atomic_bool posting;  /* post is still queueing parts */
    bool failing;         /* req_fail is detaching parts */
    be_tcp_txi_t ntx;     /* trailing notification frame */
    bool ntx_queued;      /* io_lock, and ntx_conn's tx_lock if early */
    be_tcp_conn_t *ntx_conn;
    uint8_t nhdr[BE_TCP_HDR_SIZE];
    struct iovec niov[2];
    char msg[192]; /* detail for a failed status */
};

/* Expected replies on a client connection, in request order. */
typedef struct be_tcp_expect {
    uint64_t id;
    uint8_t type;        /* BE_TCP_READ_RESP or BE_TCP_WRITE_ACK */
    be_tcp_part_t *part; /* NULL: canceled, discard the reply */
} be_tcp_expect_t;

/* Receive states. */
enum { BE_TCP_RX_HDR = 0, BE_TCP_RX_CTRL, BE_TCP_RX_DATA };

/* be_tcp_conn_t is one TCP connection: a client stream of a peer (we sent
 * the hello) or a server connection (we accepted it). */
struct be_tcp_conn {
    be_tcp_engine_t *eng;
    be_tcp_conn_t *next; /* engine's list (io_lock) */
    int fd;
    bool server;
    uint8_t proto;           /* negotiated protocol version (1..3) */
    bool hello_done;         /* server: a valid hello arrived */
    bool hello_wait;         /* server: counted in eng->hello_waiting */
    uint64_t hello_deadline; /* server: close if no hello by then (ns) */
    bool in_grave;
    be_tcp_peer_t *peer; /* client side */
    char *peer_name;     /* server side: from the hello */

    /* tx: under tx_lock */
    pthread_mutex_t tx_lock;
    bool dead;
    bool want_out;      /* EPOLLOUT armed */
    bool rx_paused;     /* server: EPOLLIN dropped (backpressure) */
    bool rx_owned;      /* client: a thread in be_tcp_wait receives
                         * on it, EPOLLIN dropped (io_lock and
                         * tx_lock to set; it stays out of the
                         * grave's frees while set) */
    bool rx_lent;       /* client: threads polling its requests
                         * (check) receive on it, EPOLLIN dropped
                         * until none polled for BE_TCP_LEND_NS
                         * (io_lock and tx_lock to set) */
    uint64_t poll_last; /* client: last check() that received on it
                         * (ns, io_lock) */
    uint32_t ep_events; /* the epoll interest set now (tx_lock) */
    be_tcp_txi_t *txq_head, *txq_tail;
    unsigned txq_count;
    uint64_t next_id;
    be_tcp_expect_t *ring; /* client: expected replies */
    size_t ring_cap, ring_head, ring_count;

    /* rx: the I/O thread, under io_lock */
    int rstate;
    be_tcp_frame_t rf;
    uint8_t *rbuf;
    size_t rcap, rpos, rlen;
    uint8_t *big; /* control bytes larger than rbuf */
    size_t bigcap, bigfill;
    uint8_t *aux; /* copy of a WRITE_REQ's notification */
    size_t auxcap;
    struct iovec *riov; /* data destinations (server WRITE) */
    size_t riovcap;
    const struct iovec *dst; /* current destinations, NULL = discard */
    size_t dst_n, dst_i, dst_off;
    uint64_t data_left;
    be_tcp_part_t *rpart; /* client: the part being received */
    bool rmore;           /* client: the reply being received goes on
                           * in more frames (v2, F_MORE seen) */
    uint64_t rmore_id;    /* ... of this request id */
    uint64_t rgot;        /* ... with this many payload bytes so far */
    int rcvlowat;         /* SO_RCVLOWAT now set on fd (1 = default) */
    int32_t rstatus;      /* server: status of the current WRITE */
    uint64_t refused_id;  /* server: id of the last refused WRITE; a
                           * NOTIF frame carrying it is dropped */
};

/* be_tcp_peer_t is a loaded remote (or this) agent. */
struct be_tcp_peer {
    be_tcp_engine_t *eng;
    be_tcp_peer_t *next;
    char *name;
    be_tcp_conninfo_t info;
    unsigned nconns;
    be_tcp_conn_t **conns;
    _Atomic unsigned rr;
    _Atomic int dead; /* 0, or the status that killed it */
    uint8_t proto;    /* protocol version its streams agreed on */
    char why[160];
};

/* be_tcp_region_t is a registration: what mem_register returns for a
 * local region and md_unpack for a peer's. key names this registration
 * (of this engine: unique, never 0, published as the region's public
 * data; of a peer: as its metadata said, 0 when it published none). */
typedef struct be_tcp_region {
    nxl__bnode_t node; /* local ones: in the engine's regs */
    uint64_t addr;
    uint64_t len;
    uint64_t key;
} be_tcp_region_t;

/* be_tcp_engine_t is the engine state (engine_size, zeroed by the core). */
struct be_tcp_engine {
    const nxl_backend_host_t *host;
    int stage; /* how far init got (fini undoes that) */

    /* params */
    char bind_addr[BE_TCP_ADDR_MAX];
    char advertise[BE_TCP_ADDR_MAX];
    uint16_t port;
    unsigned num_streams;
    int connect_timeout_ms;
    int request_timeout_ms;
    int hello_timeout_ms;  /* accepted connections must say hello */
    unsigned max_version;  /* highest protocol offered (param) */
    bool region_keys;      /* publish region keys (param) */
    uint64_t stripe_min;   /* transfers below this use one stream */
    uint64_t wait_spin_ns; /* be_tcp_wait polls this long first, when
                            * its request is the only one in flight */

    int lfd, epfd, kick_fd, efd;
    be_tcp_conninfo_t self_info;

    pthread_t thread;
    bool thread_started;
    atomic_bool stop;
    pthread_mutex_t io_lock; /* rx state, conn lifetime, req outcomes */
    /* Threads waiting in be_tcp_cancel for io_lock: the I/O thread lets
     * them in between batches (a mutex is not fair, and a busy I/O thread
     * would take it back before they run). */
    _Atomic int io_waiters;

    pthread_rwlock_t reg_lock;
    nxl__btree_t regs; /* local be_tcp_region_t (reg_lock) */
    /* The next region key: starts at a random value (a restarted target
     * does not hand out its predecessor's keys again), never 0. */
    _Atomic uint64_t next_key;
    /* Where the region records and regs' blocks live: huge-page chunks
     * (util/pool.h) with their own mutex (the engine is NXL_CAP_THREAD_SAFE).
     * Made first in init, destroyed last in fini. */
    nxl__pools_t *pools;

    be_tcp_peer_t *peers; /* io_lock */
    be_tcp_conn_t *conns; /* live connections (io_lock) */
    be_tcp_conn_t *grave; /* freed after the I/O thread's batch */
    atomic_uint events;   /* completions + notifications */
    atomic_int efd_pending;
    atomic_uint inflight;   /* posted parts not yet done */
    unsigned hello_waiting; /* accepted, no hello yet (io_lock) */
    unsigned nlent;         /* client connections lent (io_lock) */
    /* Counters (tests, debugging): bytes our server side sent (counted
     * before sendmsg, the unsent rest taken back after, so it never lags
     * what the peer received), READ replies it cut short on a CANCEL,
     * and CANCELs that came after the whole reply was sent. */
    _Atomic uint64_t srv_sent;
    _Atomic uint64_t srv_cut;
    _Atomic uint64_t srv_cut_missed;
    /* Client side: READ reply payload bytes that went through rbuf and
     * were copied out to their destinations (be_tcp_dst_advance). */
    _Atomic uint64_t cli_staged;
};

/* --- engine.c ----------------------------------------------------------- */

/* be_tcp_regions_cover says whether [addr, addr + len) lies inside one
 * registered region whose key is key (key 0: any region); if so and
 * base_p is not NULL, *base_p gets that region's start address. Takes the
 * region read lock. */
bool be_tcp_regions_cover(be_tcp_engine_t *eng, uint64_t addr, uint64_t len,
                          uint64_t key, uint64_t *base_p);

/* be_tcp_signal counts n events (completions, or a notification when
 * notif) and makes the event fd readable. */
void be_tcp_signal(be_tcp_engine_t *eng, unsigned n, bool notif);

/* --- limits shared by io.c, tx.c and rx.c ------------------------------ */

/* Most iovecs in one sendmsg or readv. */
#define BE_TCP_IOV_BATCH 1024
/* Most bytes read from one connection per wake-up of the thread that
 * receives (level-triggered epoll and poll() bring it back). */
#define BE_TCP_READ_BUDGET (8u << 20)

/* --- io.c: connection lifecycle and the I/O thread ---------------------- */

/* be_tcp_io_start starts the I/O thread. Returns NXL_OK, or an error
 * (logged) when the thread cannot be created. */
nxl_status_t be_tcp_io_start(be_tcp_engine_t *eng);
/* be_tcp_kick wakes the I/O thread (it re-reads its timeout). */
void be_tcp_kick(be_tcp_engine_t *eng);
/* be_tcp_io_stop stops and joins the I/O thread (no-op if it is not
 * running). */
void be_tcp_io_stop(be_tcp_engine_t *eng);

/* be_tcp_conn_new makes a connection around a connected non-blocking fd
 * and adds it to epoll (protocol version 1 until the caller sets
 * proto). Caller holds io_lock. */
nxl_status_t be_tcp_conn_new(be_tcp_engine_t *eng, int fd, bool server,
                             be_tcp_conn_t **conn_p);

/* be_tcp_peer_kill marks peer dead with status (the first status and why
 * stay), fails everything in flight to it and closes its connections
 * (io_lock held). Returns true when this call marked it dead. */
bool be_tcp_peer_kill(be_tcp_peer_t *peer, nxl_status_t status,
                      const char *why);

/* be_tcp_conn_bury closes conn and queues it for freeing (io_lock). */
void be_tcp_conn_bury(be_tcp_conn_t *conn);

/* be_tcp_conn_fail ends conn after an error, logging "why" (fmt) at
 * level: a client stream takes its peer down (be_tcp_peer_kill: every
 * request to it fails with st), a server connection is buried. io_lock
 * held; conn is dead on return. */
void be_tcp_conn_fail(be_tcp_conn_t *conn, nxl_status_t st, int level,
                      const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* be_tcp_hello_unwait stops counting server connection conn among those
 * that owe a hello (no-op if it is not counted). io_lock held. */
void be_tcp_hello_unwait(be_tcp_conn_t *conn);

/* be_tcp_loss_level returns the log level for losing conn: NXL_LOG_WARN
 * when requests of ours were in flight on it (a client connection), else
 * NXL_LOG_DEBUG. Takes tx_lock; io_lock held. */
int be_tcp_loss_level(be_tcp_conn_t *conn);

/* be_tcp_conn_free frees a dead connection's memory. */
void be_tcp_conn_free(be_tcp_conn_t *conn);

/* be_tcp_sock_tune sets TCP_NODELAY, keepalive and the user timeout. */
void be_tcp_sock_tune(int fd);

/* be_tcp_conn_epoll sets conn's epoll interest from its state: EPOLLIN
 * unless its reading is paused, owned or lent, EPOLLOUT while want_out.
 * No system call when that does not change; a failure is logged and
 * leaves the old interest. tx_lock held. */
void be_tcp_conn_epoll(be_tcp_conn_t *conn);

/* --- tx.c: transmit queues ---------------------------------------------- */

/* be_tcp_conn_enqueue appends txi to conn's queue and, when the queue was
 * empty, sends what the socket takes now. Returns false (txi not queued)
 * if conn is dead. in_io says the caller holds io_lock. */
bool be_tcp_conn_enqueue(be_tcp_conn_t *conn, be_tcp_txi_t *txi, bool in_io);

/* be_tcp_conn_push_part assigns part an id, records the expected reply and
 * queues its frame, followed by after (if not NULL: a request's NOTIF
 * frame, whose header in iov[0] gets part's id) with nothing between, so
 * both go out in one sendmsg where the socket takes them. false (nothing
 * queued) if conn is dead. */
bool be_tcp_conn_push_part(be_tcp_conn_t *conn, be_tcp_part_t *part,
                           be_tcp_txi_t *after);

/* be_tcp_conn_queue_reply appends a server reply to conn's queue without
 * sending it (the reader flushes once per batch), and stops reading
 * conn's requests while BE_TCP_TXQ_HIGH replies or more wait. Takes
 * tx_lock; I/O thread (io_lock held). */
void be_tcp_conn_queue_reply(be_tcp_conn_t *conn, be_tcp_txi_t *txi);

/* be_tcp_conn_flush sends conn's queued frames until the queue is empty,
 * the socket is full or the turn's bytes are out, arms EPOLLOUT for the
 * rest, and resumes a paused server connection whose queue fell below
 * BE_TCP_TXQ_LOW. in_io says the caller is the I/O thread. tx_lock held.
 * Returns 0, or (in_io only) a negative errno on a hard socket error, for
 * the caller to fail the connection; a posting thread arms EPOLLOUT
 * instead. */
int be_tcp_conn_flush(be_tcp_conn_t *conn, bool in_io);

/* be_tcp_txi_dropped finishes txi, sent (sent) or dropped with its dead
 * connection: a part then waits for its reply, malloc'd items are freed,
 * a trailing notification may complete its request. tx_lock held, or
 * txi already off a dead connection's queue (io_lock held). */
void be_tcp_txi_dropped(be_tcp_txi_t *txi, bool sent, bool in_io);

/* be_tcp_part_detach takes a not-done part off its connection: out of the
 * tx queue (a half-sent frame is finished from a copy and zeros), its
 * reply discarded. io_lock held. */
void be_tcp_part_detach(be_tcp_part_t *part);

/* be_tcp_ntx_detach takes req's trailing notification off its
 * connection's queue (io_lock held). */
void be_tcp_ntx_detach(be_tcp_req_t *req);

/* --- rx.c: receiving ---------------------------------------------------- */

/* be_tcp_conn_read reads what conn has, up to budget bytes, and runs it
 * through the receive state machine (replies complete parts; a server's
 * requests go to srv.c, and the replies they produce are flushed). A
 * short read ends it. io_lock held; conn may be dead on return (a peer
 * that closed or sent bad input fails it). */
void be_tcp_conn_read(be_tcp_conn_t *conn, size_t budget);

/* be_tcp_rx_inline receives req's replies on the calling thread if the
 * I/O thread is idle (trylock); never blocks. A thread that polls a
 * connection again within BE_TCP_LEND_GAP_NS is lent it: the I/O thread
 * stops waking for its replies until nobody polled it for
 * BE_TCP_LEND_NS. */
void be_tcp_rx_inline(be_tcp_engine_t *eng, be_tcp_req_t *req);

/* be_tcp_lend_expire gives the I/O thread back the lent connections that
 * nobody polled for BE_TCP_LEND_NS. io_lock held. Returns the I/O
 * thread's epoll timeout (ms) while some stay lent, else -1. */
int be_tcp_lend_expire(be_tcp_engine_t *eng);

/* be_tcp_wait is the wait op: when req is the engine's only request in
 * flight, the calling thread first polls its connections for up to
 * wait_spin_us (param); then it takes over receiving
 * on req's connections that no other waiter has (their EPOLLIN is off
 * meanwhile), sleeps in poll() on them and handles what arrives itself,
 * until req ends or timeout_ms passes. NXL_ERR_NOT_SUPPORTED when it has
 * no connection to take (the core then sleeps on the event fd). */
nxl_status_t be_tcp_wait(void *self, void *req, int timeout_ms);

/* --- srv.c: the target side of a server connection --------------------- */

/* be_tcp_on_ctrl handles a request frame whose descriptors and aux (ctrl,
 * rf.ndesc descriptors of be_tcp_wdesc_size(rf.flags) + rf.aux_len bytes) have
 * arrived on server connection conn: answers a hello, queues a READ's reply,
 * sets up receiving a WRITE's payload or delivers a notification, and sets the
 * next receive state (DATA for a WRITE, else HDR). io_lock held. Returns false
 * when conn failed (bad input from the peer, or out of memory). */
bool be_tcp_on_ctrl(be_tcp_conn_t *conn, const uint8_t *ctrl);

/* be_tcp_srv_write_done finishes the WRITE whose payload conn has just
 * received: releases its regions, delivers its notification if it
 * succeeded and queues its acknowledgement. io_lock held. Returns false
 * when conn failed (out of memory). */
bool be_tcp_srv_write_done(be_tcp_conn_t *conn);

/* be_tcp_srv_cancel handles a CANCEL frame for READ id on conn (protocol
 * 2): a reply still queued ends at its next frame boundary with a
 * CANCELED frame; an id that matches nothing is ignored. Takes tx_lock;
 * io_lock held. */
void be_tcp_srv_cancel(be_tcp_conn_t *conn, uint64_t id);

/* --- xfer.c ------------------------------------------------------------- */

/* be_tcp_part_done finishes one part with status st (io_lock held). */
void be_tcp_part_done(be_tcp_part_t *part, nxl_status_t st, const char *why);

/* be_tcp_req_fail ends an in-flight req with st: detaches every part that
 * is not done, then sets the status (io_lock held). */
void be_tcp_req_fail(be_tcp_req_t *req, nxl_status_t st, const char *why);

/* be_tcp_reqnotif_done is called when a trailing notification went out
 * (ok) or its connection died (!ok). io_lock held. */
void be_tcp_reqnotif_done(be_tcp_req_t *req, bool ok);

/* be_tcp_timeouts fails parts past their deadline (io_lock held). */
void be_tcp_timeouts(be_tcp_engine_t *eng);

nxl_status_t be_tcp_prep(void *self, void *req, const nxl_be_xfer_t *xfer);
nxl_status_t be_tcp_post(void *self, void *req, const nxl_be_xfer_t *xfer);
nxl_status_t be_tcp_check(void *self, void *req);
void be_tcp_cancel(void *self, void *req);
void be_tcp_release(void *self, void *req);
nxl_status_t be_tcp_notif_send(void *self, void *peer_ctx, const void *msg,
                               size_t len);

#endif /* NXL_BE_TCP_H */
