/*
 * posix.h - internal objects of the POSIX backend: DRAM <-> FILE transfers
 * inside one agent (loopback only), through io_uring (liburing) or a
 * pread/pwrite thread pool.
 *
 * A transfer pairs DRAM descriptors with FILE descriptors (addr = file
 * offset, dev_id = fd). Each descriptor is cut into operations of at most
 * chunk_size bytes; the engine keeps at most queue_depth operations in
 * flight across all requests (io_uring) or num_threads (thread pool), taken
 * round-robin from the requests that still have work. Short reads and
 * writes are reissued for the remainder; a read that reaches end of file is
 * NXL_ERR_IO.
 *
 * io_uring path: completions are reaped by whoever calls post, check or
 * progress, one at a time, and each freed slot is refilled at once; SQEs
 * go to the kernel every submit_batch of them, so the device sees new work
 * while the rest of a batch is still being prepared. An eventfd registered
 * with the ring (event_fd) wakes sleepers when completions arrive. FILE
 * fds are entered in the ring's file table and DRAM regions (up to 1 GiB
 * each) in its buffer table when the kernel allows it, so the kernel
 * neither looks up the fd nor pins the pages per operation.
 *
 * Thread-pool path: workers take operations from the same queue, run
 * pread/pwrite until the operation is complete, and write the eventfd when
 * a request finishes.
 *
 * Locking: one engine mutex (eng->lock) guards the ring, the queue, the
 * operation pool, request state and the file and region lists. Syscalls
 * that move data run without it in the thread pool; io_uring submission
 * runs under it.
 */
#ifndef NXL_BACKENDS_POSIX_H
#define NXL_BACKENDS_POSIX_H

#include <nxl/nxl_backend.h>

#include "util.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#ifdef NXL_HAVE_LIBURING
#include <liburing.h>
#endif

#define BE_POSIX_FIXED_SLOTS 1024u /* ring file and buffer table size */
#define BE_POSIX_FIXED_BUF_MAX (1ull << 30) /* kernel limit per buffer */
#define BE_POSIX_MAX_QD 4096u
#define BE_POSIX_MAX_THREADS 256u
#define BE_POSIX_MAX_CHUNK (1ull << 30)
#define BE_POSIX_MAX_RETRIES 16u /* EAGAIN/EINTR per operation */
#define BE_POSIX_ERR_MAX 256u

typedef struct be_posix_engine be_posix_engine_t;
typedef struct be_posix_req be_posix_req_t;

/* Which engine moves the data. */
typedef enum be_posix_api {
    BE_POSIX_API_URING = 1,
    BE_POSIX_API_THREADS = 2
} be_posix_api_t;

/* Request life: IDLE (prepared or finished and collected), ACTIVE (posted,
 * operations queued or in flight), DONE (finished; status holds the
 * result). */
typedef enum be_posix_state {
    BE_POSIX_IDLE = 0,
    BE_POSIX_ACTIVE = 1,
    BE_POSIX_DONE = 2
} be_posix_state_t;

/* be_posix_file_t is one open file the engine has registrations for,
 * identified by (fd, st_dev, st_ino) when it was first registered. The
 * engine holds a duplicate of the fd (iofd, same open file description, so
 * the same flags) and does all I/O through it: the inode stays allocated
 * while registered, so a recycled fd number or inode number cannot pass
 * for the registered file, and a close during a transfer cannot redirect
 * it. */
typedef struct be_posix_file {
    int fd;   /* the caller's fd (dev_id) */
    int iofd; /* ours: F_DUPFD_CLOEXEC of fd */
    dev_t dev;
    ino_t ino;
    int accmode;            /* O_RDONLY, O_WRONLY or O_RDWR */
    uint32_t dio_off_align; /* O_DIRECT: offset and length alignment */
    uint32_t dio_mem_align; /* O_DIRECT: buffer address alignment */
    bool direct;            /* O_DIRECT seen by the last prep or post */
    bool append;            /* O_APPEND, likewise */
    int fixed;              /* slot in the ring's file table, or -1 */
    unsigned refs;          /* regions and views that use it */
    uint64_t mark;          /* prep: dedup generation */
    struct be_posix_file *prev, *next;
} be_posix_file_t;

/* be_posix_region_t is a registered region (mem_register) or this agent's
 * loopback view of one (md_unpack). */
typedef struct be_posix_region {
    nxl_mem_t kind; /* NXL_DRAM or NXL_FILE */
    uint64_t addr;  /* DRAM: address; FILE: file offset */
    uint64_t len;
    uint64_t dev_id;       /* FILE: the fd */
    be_posix_file_t *file; /* FILE: holds a reference */
    int buf_index;         /* DRAM: slot in the ring's buffer table */
    bool view;             /* made by md_unpack */
    struct be_posix_region *prev, *next; /* engine's DRAM region list */
} be_posix_region_t;

/* be_posix_op_t is one read or write of at most chunk_size bytes. */
typedef struct be_posix_op {
    be_posix_req_t *req;
    be_posix_file_t *file;
    uint8_t *buf;
    uint64_t off;  /* file offset of the part left */
    uint64_t len;  /* bytes left */
    size_t desc;   /* descriptor index, for messages */
    int buf_index; /* fixed buffer slot or -1 */
    bool direct;   /* the file was O_DIRECT at post */
    bool busy;     /* in flight in the ring */
    unsigned retries;
    struct be_posix_op *next_free;
} be_posix_op_t;

/* be_posix_req_t is the per-transfer state (req_size bytes, zeroed by the
 * core). Fields below "per post" are reset by every post. */
struct be_posix_req {
    be_posix_engine_t *eng;
    const nxl_be_seg_t *mem;  /* DRAM side of each descriptor */
    const nxl_be_seg_t *file; /* FILE side */
    size_t count;
    bool to_file;            /* write memory to the file */
    be_posix_file_t **files; /* the distinct files (prep) */
    size_t nfiles;

    /* per post (eng->lock) */
    be_posix_state_t state;
    size_t cur_desc; /* next part to issue */
    uint64_t cur_off;
    unsigned inflight; /* operations issued and not finished */
    bool queued;       /* on the engine's queue */
    bool canceling;
    nxl_status_t status; /* first error, or NXL_OK */
    char err[BE_POSIX_ERR_MAX];
    be_posix_req_t *prev, *next; /* the queue */
};

/* be_posix_engine_t is the engine state (engine_size bytes, zeroed). */
struct be_posix_engine {
    const nxl_backend_host_t *host;
    be_posix_api_t api;
    unsigned queue_depth;
    unsigned submit_batch; /* io_uring: submit every this many SQEs */
    unsigned num_threads;
    uint64_t chunk;
    bool fixed_buffers; /* parameter */
    bool fixed_files;   /* parameter */

    pthread_mutex_t lock;
    bool lock_ready;
    /* Where the region records (be_posix_region_t) live: huge-page chunks
     * (util/pool.h) with their own mutex (the engine is NXL_CAP_THREAD_SAFE).
     * Made first in init, destroyed last in fini. */
    nxl__pools_t *pools;
    int efd;       /* eventfd: event_fd */
    char self_tag; /* its address is the loopback peer ctx */

    be_posix_file_t *files;
    be_posix_region_t *drams;
    be_posix_region_t *last_reg; /* the last mem_register, for md_unpack */
    uint64_t mark_gen;

    be_posix_req_t *q_head, *q_tail;

    /* io_uring */
    bool ring_ready;
    be_posix_op_t *ops; /* queue_depth operations */
    be_posix_op_t *free_ops;
    uint8_t *file_slots; /* BE_POSIX_FIXED_SLOTS, 1 = used; or NULL */
    uint8_t *buf_slots;
    bool submit_warned;
#ifdef NXL_HAVE_LIBURING
    struct io_uring ring;
#endif

    /* thread pool */
    pthread_cond_t work_cv; /* work queued or stop */
    pthread_cond_t done_cv; /* an operation finished (cancel waits) */
    bool cv_ready;
    pthread_t *threads;
    unsigned nthreads;
    bool stop;
};

/* be_posix_fstat is fstat(fd, st): the identity check of a FILE fd, made
 * at every registration of it and every post. glibc (2.33 on) makes fstat
 * a newfstatat(fd, "", AT_EMPTY_PATH), which also copies and checks the
 * empty path; on x86_64, where the kernel's struct stat is glibc's, the
 * plain fstat system call gives the same result ~60-100 ns sooner (0.70
 * against 0.75-0.87 us on the VM of docs/performance.md, issue 15).
 * Returns 0, or -1 with errno set. Thread-safe. */
static inline int
be_posix_fstat(int fd, struct stat *st)
{
#if defined(__x86_64__) && defined(SYS_fstat)
    return (int)syscall(SYS_fstat, fd, st);
#else
    return fstat(fd, st);
#endif
}

/* --- posix.c ------------------------------------------------------------ */

/* be_posix_signal makes event_fd readable. */
void be_posix_signal(be_posix_engine_t *eng);

/* --- posix_req.c: the ops of requests (each takes eng->lock) ------------ */

/* be_posix_prep checks a transfer's descriptors against their regions and
 * the files' access modes and O_DIRECT alignment, and records its
 * distinct files. Returns NXL_OK, NXL_ERR_NOT_SUPPORTED (not DRAM <-> FILE
 * in this agent) or another error (a descriptor outside its region or
 * misaligned, a wrong access mode, a closed or replaced fd, no memory). */
nxl_status_t be_posix_prep(void *self, void *req, const nxl_be_xfer_t *xfer);
/* be_posix_post checks the files again and queues req; may complete it at
 * once (NXL_OK). Returns NXL_IN_PROG, NXL_OK, NXL_ERR_REPOST_ACTIVE or an
 * error. Never blocks on I/O. */
nxl_status_t be_posix_post(void *self, void *req, const nxl_be_xfer_t *xfer);
/* be_posix_check moves req on and returns NXL_IN_PROG, its final status, or
 * NXL_ERR_NOT_POSTED. Never blocks on I/O. */
nxl_status_t be_posix_check(void *self, void *req);
/* be_posix_cancel ends an active req as NXL_ERR_CANCELED and returns once
 * none of its operations is in flight. */
void be_posix_cancel(void *self, void *req);
/* be_posix_release frees what prep allocated (req not in flight; no lock
 * taken). */
void be_posix_release(void *self, void *req);

/* --- posix_req.c: shared request machinery (eng->lock held) ------------- */

/* be_posix_take_op fills op with the next part of the request at the head
 * of the queue, dequeues that request once all its parts are issued (else
 * rotates it to the tail) and counts op as in flight. The queue must not be
 * empty. */
void be_posix_take_op(be_posix_engine_t *eng, be_posix_op_t *op);

/* be_posix_advance accounts res >= 0 bytes of op as done. Returns 1 when op
 * is complete, 0 when the rest must be issued again, or an error status
 * with a message in msg (cap bytes). */
int be_posix_advance(be_posix_op_t *op, uint64_t res, char *msg, size_t cap);

/* be_posix_io_error formats a failed read or write of op (err is an errno
 * value) into msg and returns its status. */
nxl_status_t be_posix_io_error(const be_posix_op_t *op, int err, char *msg,
                               size_t cap);

/* be_posix_op_finish ends op with status (msg explains an error) and
 * returns true when that ended its request. */
bool be_posix_op_finish(be_posix_engine_t *eng, be_posix_op_t *op,
                        nxl_status_t status, const char *msg);

/* --- posix_uring.c --------------------------------------------------------
 * All but init and fini need eng->lock. */
#ifdef NXL_HAVE_LIBURING
/* be_posix_uring_init creates the ring (queue_depth entries), its file and
 * buffer tables and registers eng->efd. NOT_SUPPORTED when the kernel (or
 * a seccomp filter) refuses io_uring. */
nxl_status_t be_posix_uring_init(be_posix_engine_t *eng);
void be_posix_uring_fini(be_posix_engine_t *eng);
/* be_posix_uring_add_file / _add_buf enter a file or a DRAM region in the
 * ring's tables when possible (best effort: -1 stays otherwise). */
void be_posix_uring_add_file(be_posix_engine_t *eng, be_posix_file_t *f);
void be_posix_uring_del_file(be_posix_engine_t *eng, be_posix_file_t *f);
void be_posix_uring_add_buf(be_posix_engine_t *eng, be_posix_region_t *r);
void be_posix_uring_del_buf(be_posix_engine_t *eng, be_posix_region_t *r);
/* be_posix_uring_pump reaps completions, issues queued parts and submits,
 * until nothing moves (bounded). Returns completions reaped. */
unsigned be_posix_uring_pump(be_posix_engine_t *eng);
/* be_posix_uring_cancel stops issuing req, asks the kernel to cancel its
 * operations in flight and waits until none is left. */
void be_posix_uring_cancel(be_posix_engine_t *eng, be_posix_req_t *req);
#endif

/* --- posix_pool.c -------------------------------------------------------- */

/* be_posix_pool_start starts num_threads workers (lock not held). */
nxl_status_t be_posix_pool_start(be_posix_engine_t *eng);
/* be_posix_pool_stop stops and joins them (lock not held). */
void be_posix_pool_stop(be_posix_engine_t *eng);
/* be_posix_pool_cancel stops issuing req and waits for its operations in
 * flight (lock held). */
void be_posix_pool_cancel(be_posix_engine_t *eng, be_posix_req_t *req);

#endif /* NXL_BACKENDS_POSIX_H */
