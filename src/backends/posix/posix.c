/*
 * posix.c - the POSIX backend: its ops table, parameters, the engine,
 * file records, registrations and the loopback peer. Requests are in
 * posix_req.c.
 *
 * Registrations: a DRAM region is remembered (and entered in the ring's
 * buffer table when possible); a FILE region {addr = offset, len, dev_id =
 * fd} takes a reference on the engine's record of that open file, made on
 * first use from fstat (identity), fcntl(F_GETFL) (access mode, O_DIRECT)
 * and statx(STATX_DIOALIGN) or BLKSSZGET (O_DIRECT alignment). A FILE
 * registration needs a length: NIXL's "len 0 = whole file" is refused by
 * the core, and here too.
 */
#include "posix.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- parameters ----------------------------------------------------------- */

static const nxl_param_t be_posix_defaults[] = {
    {"api", "auto"},           /* auto | uring | threads */
    {"queue_depth", "64"},     /* io_uring operations in flight */
    {"submit_batch", "4"},     /* io_uring SQEs per submission, at most */
    {"num_threads", "8"},      /* thread-pool workers */
    {"chunk_size", "1048576"}, /* largest single read or write */
    {"fixed_buffers", "1"},    /* DRAM regions in the ring's buffer table */
    {"fixed_files", "1"},      /* fds in the ring's file table */
    {"use_uring", "false"},    /* NIXL spelling of api=uring */
    {"use_aio", "false"},      /* NIXL: Linux AIO; here the same as auto */
    {"use_posix_aio", "false"} /* NIXL: POSIX AIO; here api=threads */
};

/* What the api parameters ask for. */
typedef enum be_posix_want {
    BE_POSIX_WANT_AUTO = 0,
    BE_POSIX_WANT_URING = 1,
    BE_POSIX_WANT_THREADS = 2
} be_posix_want_t;

/* be_posix_parse_params reads params (keys of be_posix_defaults) into eng
 * and *want_p. */
static nxl_status_t
be_posix_parse_params(be_posix_engine_t *eng, const nxl_params_t *params,
                      be_posix_want_t *want_p)
{
    be_posix_want_t want = BE_POSIX_WANT_AUTO;
    bool api_set = false, b, use_uring = false, use_paio = false;
    const nxl_param_t *p;
    nxl_status_t st = NXL_OK;
    uint64_t v;
    size_t i;

    eng->queue_depth = 64;
    eng->submit_batch = 4;
    eng->num_threads = 8;
    eng->chunk = 1u << 20;
    eng->fixed_buffers = true;
    eng->fixed_files = true;
    for (i = 0; params != NULL && i < params->count && st == NXL_OK; i++) {
        p = &params->items[i];
        if (p->key == NULL || p->value == NULL) {
            return nxl__fail(NXL_ERR_INVALID_PARAM, "posix: NULL parameter");
        }
        if (strcmp(p->key, "api") == 0) {
            if (strcasecmp(p->value, "auto") == 0) {
                want = BE_POSIX_WANT_AUTO;
            } else if (strcasecmp(p->value, "uring") == 0 ||
                       strcasecmp(p->value, "io_uring") == 0) {
                want = BE_POSIX_WANT_URING;
                api_set = true;
            } else if (strcasecmp(p->value, "threads") == 0) {
                want = BE_POSIX_WANT_THREADS;
                api_set = true;
            } else {
                return nxl__fail(NXL_ERR_INVALID_PARAM,
                                 "posix: api=\"%s\": expected auto, uring or "
                                 "threads",
                                 p->value);
            }
        } else if (strcmp(p->key, "queue_depth") == 0) {
            st = nxl__param_u64("posix", p->key, p->value, 0, 1,
                                BE_POSIX_MAX_QD, &v);
            eng->queue_depth = (unsigned)v;
        } else if (strcmp(p->key, "submit_batch") == 0) {
            st = nxl__param_u64("posix", p->key, p->value, 0, 1,
                                BE_POSIX_MAX_QD, &v);
            eng->submit_batch = (unsigned)v;
        } else if (strcmp(p->key, "num_threads") == 0) {
            st = nxl__param_u64("posix", p->key, p->value, 0, 1,
                                BE_POSIX_MAX_THREADS, &v);
            eng->num_threads = (unsigned)v;
        } else if (strcmp(p->key, "chunk_size") == 0) {
            st = nxl__param_u64("posix", p->key, p->value, 1, 4096,
                                BE_POSIX_MAX_CHUNK, &v);
            if (st == NXL_OK && v % 4096 != 0) {
                st = nxl__fail(NXL_ERR_INVALID_PARAM,
                               "posix: chunk_size=%s is not a multiple of "
                               "4096 (O_DIRECT needs aligned pieces)",
                               p->value);
            }
            eng->chunk = v;
        } else if (strcmp(p->key, "fixed_buffers") == 0) {
            st =
                nxl__param_bool("posix", p->key, p->value, &eng->fixed_buffers);
        } else if (strcmp(p->key, "fixed_files") == 0) {
            st = nxl__param_bool("posix", p->key, p->value, &eng->fixed_files);
        } else if (strcmp(p->key, "use_uring") == 0) {
            st = nxl__param_bool("posix", p->key, p->value, &use_uring);
        } else if (strcmp(p->key, "use_posix_aio") == 0) {
            st = nxl__param_bool("posix", p->key, p->value, &use_paio);
        } else if (strcmp(p->key, "use_aio") == 0) {
            st = nxl__param_bool("posix", p->key, p->value, &b);
        } else {
            return nxl__fail(NXL_ERR_INVALID_PARAM,
                             "posix: unknown parameter '%s'", p->key);
        }
    }
    if (st != NXL_OK) {
        return st;
    }
    if (use_uring && use_paio) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "posix: use_uring and use_posix_aio exclude each "
                         "other");
    }
    if (!api_set && use_uring) {
        want = BE_POSIX_WANT_URING;
    } else if (!api_set && use_paio) {
        want = BE_POSIX_WANT_THREADS;
    }
    *want_p = want;
    return NXL_OK;
}

/* --- engine --------------------------------------------------------------- */

/* be_posix_fini releases whatever be_posix_init set up. */
static void
be_posix_fini(void *self)
{
    be_posix_engine_t *eng = self;
    be_posix_region_t *r;
    be_posix_file_t *f;

    if (eng->threads != NULL) {
        be_posix_pool_stop(eng);
    }
#ifdef NXL_HAVE_LIBURING
    if (eng->ring_ready) {
        be_posix_uring_fini(eng);
    }
#endif
    /* The core deregisters everything first; this only guards leaks. */
    while ((r = eng->drams) != NULL) {
        eng->drams = r->next;
        nxl__pools_free(eng->pools, r);
    }
    while ((f = eng->files) != NULL) {
        eng->files = f->next;
        close(f->iofd);
        free(f);
    }
    if (eng->efd >= 0) {
        close(eng->efd);
        eng->efd = -1;
    }
    if (eng->cv_ready) {
        pthread_cond_destroy(&eng->work_cv);
        pthread_cond_destroy(&eng->done_cv);
        eng->cv_ready = false;
    }
    if (eng->lock_ready) {
        pthread_mutex_destroy(&eng->lock);
        eng->lock_ready = false;
    }
    /* Last: every record of the engine's is gone. */
    nxl__pools_destroy(eng->pools);
    eng->pools = NULL;
}

/* be_posix_init reads params, makes the eventfd and starts the io_uring
 * engine or, when asked or when io_uring is refused under api=auto, the
 * thread pool. On failure be_posix_fini cleans up. */
static nxl_status_t
be_posix_init(void *self, const nxl_backend_host_t *host,
              const nxl_params_t *params)
{
    be_posix_engine_t *eng = self;
    be_posix_want_t want = BE_POSIX_WANT_AUTO;
    nxl_status_t st;

    eng->host = host;
    eng->efd = -1;
    pthread_mutex_init(&eng->lock, NULL);
    eng->lock_ready = true;
    st = nxl__pools_create(NXL__POOLS_LOCKED, &eng->pools);
    if (st != NXL_OK) {
        return st;
    }
    pthread_cond_init(&eng->work_cv, NULL);
    pthread_cond_init(&eng->done_cv, NULL);
    eng->cv_ready = true;

    st = be_posix_parse_params(eng, params, &want);
    if (st != NXL_OK) {
        return st;
    }
    eng->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (eng->efd < 0) {
        return nxl__fail_errno(errno, "posix: eventfd");
    }
    if (want != BE_POSIX_WANT_THREADS) {
#ifdef NXL_HAVE_LIBURING
        st = be_posix_uring_init(eng);
        if (st == NXL_OK) {
            eng->api = BE_POSIX_API_URING;
            return NXL_OK;
        }
        if (want == BE_POSIX_WANT_URING) {
            return st;
        }
        nxl__log(NXL_LOG_INFO, "posix: %s; using the thread pool",
                 nxl_last_error());
        nxl__clear_error();
#else
        if (want == BE_POSIX_WANT_URING) {
            return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                             "posix: io_uring unavailable: NXL was built "
                             "without liburing (api=uring)");
        }
#endif
    }
    eng->api = BE_POSIX_API_THREADS;
    return be_posix_pool_start(eng);
}

/* be_posix_event_fd returns the eventfd that completions make readable. */
static int
be_posix_event_fd(void *self)
{
    be_posix_engine_t *eng = self;

    return eng->efd;
}

/* be_posix_signal bumps the eventfd (declared in posix.h). */
void
be_posix_signal(be_posix_engine_t *eng)
{
    uint64_t one = 1;

    if (write(eng->efd, &one, sizeof(one)) < 0) {
        /* EAGAIN: the counter is saturated, so the fd is readable. */
    }
}

/* be_posix_progress drains the eventfd, then reaps io_uring completions and
 * issues queued work. Returns the completions seen. */
static unsigned
be_posix_progress(void *self)
{
    be_posix_engine_t *eng = self;
    unsigned n = 0;
    uint64_t v;

    /* Drain first: a completion that lands after the read makes the fd
     * readable again, so none is left unsignalled. */
    if (read(eng->efd, &v, sizeof(v)) == (ssize_t)sizeof(v) &&
        eng->api == BE_POSIX_API_THREADS) {
        n = (unsigned)NXL__MIN(v, (uint64_t)UINT_MAX);
    }
#ifdef NXL_HAVE_LIBURING
    if (eng->api == BE_POSIX_API_URING) {
        pthread_mutex_lock(&eng->lock);
        n += be_posix_uring_pump(eng);
        pthread_mutex_unlock(&eng->lock);
    }
#endif
    return n;
}

/* --- files ---------------------------------------------------------------- */

/* be_posix_file_probe fills f from fd: identity, access mode, O_DIRECT and
 * its alignment. */
static nxl_status_t
be_posix_file_probe(int fd, be_posix_file_t *f)
{
    struct stat st;
    int fl, ss;

    fl = fcntl(fd, F_GETFL);
    if (fl < 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "posix: FILE descriptor names fd %d, which is not "
                         "open (%s)",
                         fd, strerror(errno));
    }
    if (be_posix_fstat(fd, &st) != 0) {
        return nxl__fail_errno(errno, "posix: fstat(fd %d)", fd);
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "posix: fd %d is neither a regular file nor a block "
                         "device (mode 0%o)",
                         fd, (unsigned)st.st_mode);
    }
    memset(f, 0, sizeof(*f));
    f->fd = fd;
    f->iofd = -1;
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->accmode = fl & O_ACCMODE;
    f->direct = (fl & O_DIRECT) != 0;
    f->fixed = -1;
    f->dio_off_align = 512;
    f->dio_mem_align = 512;
#ifdef STATX_DIOALIGN
    {
        struct statx stx;

        if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
            (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align != 0) {
            f->dio_off_align = stx.stx_dio_offset_align;
            f->dio_mem_align = NXL__MAX(stx.stx_dio_mem_align, 1u);
            return NXL_OK;
        }
    }
#endif
    if (S_ISBLK(st.st_mode) && ioctl(fd, BLKSSZGET, &ss) == 0 && ss > 0) {
        f->dio_off_align = (uint32_t)ss;
        f->dio_mem_align = (uint32_t)ss;
    }
    return NXL_OK;
}

/* be_posix_file_get finds the engine's record of fd (same file) or makes
 * one, and takes a reference (lock held). */
static nxl_status_t
be_posix_file_get(be_posix_engine_t *eng, int fd, be_posix_file_t **f_p)
{
    be_posix_file_t probe, *f;
    struct stat sb;
    nxl_status_t st;

    /* A file already in use needs only its identity checked (one system
     * call; the engine does its I/O on its own duplicate, whose flags were
     * probed when it was made). */
    if (be_posix_fstat(fd, &sb) == 0) {
        for (f = eng->files; f != NULL; f = f->next) {
            if (f->fd == fd && f->dev == sb.st_dev && f->ino == sb.st_ino) {
                f->refs++;
                *f_p = f;
                return NXL_OK;
            }
        }
    }
    st = be_posix_file_probe(fd, &probe);
    if (st != NXL_OK) {
        return st;
    }
    for (f = eng->files; f != NULL; f = f->next) {
        if (f->fd == fd && f->dev == probe.dev && f->ino == probe.ino) {
            break;
        }
    }
    if (f == NULL) {
        f = malloc(sizeof(*f));
        if (f == NULL) {
            return nxl__fail(NXL_ERR_NOMEM, "posix: out of memory");
        }
        *f = probe;
        f->iofd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (f->iofd < 0) {
            st = nxl__fail_errno(errno, "posix: duplicating fd %d", fd);
            free(f);
            return st;
        }
        f->next = eng->files;
        if (eng->files != NULL) {
            eng->files->prev = f;
        }
        eng->files = f;
#ifdef NXL_HAVE_LIBURING
        if (eng->ring_ready && eng->fixed_files) {
            be_posix_uring_add_file(eng, f);
        }
#endif
    }
    f->refs++;
    *f_p = f;
    return NXL_OK;
}

/* be_posix_file_put drops a reference; the last one frees f (lock held). */
static void
be_posix_file_put(be_posix_engine_t *eng, be_posix_file_t *f)
{
    if (--f->refs > 0) {
        return;
    }
#ifdef NXL_HAVE_LIBURING
    if (f->fixed >= 0) {
        be_posix_uring_del_file(eng, f);
    }
#endif
    if (f->prev != NULL) {
        f->prev->next = f->next;
    } else {
        eng->files = f->next;
    }
    if (f->next != NULL) {
        f->next->prev = f->prev;
    }
    close(f->iofd);
    free(f);
}

/* --- registrations -------------------------------------------------------- */

/* be_posix_mem_register records a DRAM region (entering it in the ring's
 * buffer table when possible) or a FILE range of an open fd. */
static nxl_status_t
be_posix_mem_register(void *self, const nxl_be_region_t *region, void **md_p)
{
    be_posix_engine_t *eng = self;
    be_posix_region_t *r;
    nxl_status_t st = NXL_OK;

    if (region->kind != NXL_DRAM && region->kind != NXL_FILE) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "posix: memory kind %d is not DRAM or FILE",
                         (int)region->kind);
    }
    if (region->len == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "posix: a registration needs a length (a FILE range "
                         "of length 0 does not mean the whole file here)");
    }
    if (region->kind == NXL_FILE &&
        (region->dev_id > INT_MAX || region->addr > (uint64_t)INT64_MAX ||
         region->len > (uint64_t)INT64_MAX - region->addr)) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "posix: FILE descriptor (offset %" PRIu64
                         " len %" PRIu64 " fd %" PRIu64 ") is out of range",
                         region->addr, region->len, region->dev_id);
    }
    r = nxl__pools_alloc(eng->pools, sizeof(*r), true);
    if (r == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "posix: out of memory");
    }
    r->kind = region->kind;
    r->addr = region->addr;
    r->len = region->len;
    r->dev_id = region->dev_id;
    r->buf_index = -1;

    pthread_mutex_lock(&eng->lock);
    if (r->kind == NXL_FILE) {
        st = be_posix_file_get(eng, (int)region->dev_id, &r->file);
        if (st != NXL_OK) {
            goto err_unlock;
        }
    } else {
        r->next = eng->drams;
        if (eng->drams != NULL) {
            eng->drams->prev = r;
        }
        eng->drams = r;
#ifdef NXL_HAVE_LIBURING
        if (eng->ring_ready && eng->fixed_buffers) {
            be_posix_uring_add_buf(eng, r);
        }
#endif
    }
    eng->last_reg = r;
    pthread_mutex_unlock(&eng->lock);
    *md_p = r;
    return NXL_OK;

err_unlock:
    pthread_mutex_unlock(&eng->lock);
    nxl__pools_free(eng->pools, r);
    return st;
}

/* be_posix_mem_deregister drops a registration; no transfer uses it. */
static void
be_posix_mem_deregister(void *self, void *md)
{
    be_posix_engine_t *eng = self;
    be_posix_region_t *r = md;

    pthread_mutex_lock(&eng->lock);
    if (eng->last_reg == r) {
        eng->last_reg = NULL;
    }
    if (r->kind == NXL_FILE) {
        be_posix_file_put(eng, r->file);
    } else {
#ifdef NXL_HAVE_LIBURING
        if (r->buf_index >= 0) {
            be_posix_uring_del_buf(eng, r);
        }
#endif
        if (r->prev != NULL) {
            r->prev->next = r->next;
        } else {
            eng->drams = r->next;
        }
        if (r->next != NULL) {
            r->next->prev = r->prev;
        }
    }
    pthread_mutex_unlock(&eng->lock);
    nxl__pools_free(eng->pools, r);
}

/* be_posix_md_pack has nothing to publish: the backend is local only. */
static nxl_status_t
be_posix_md_pack(void *self, const void *md, nxl_blob_t *out)
{
    (void)self, (void)md;
    out->data = NULL;
    out->len = 0;
    return NXL_OK;
}

/* be_posix_peer_load accepts only this agent itself (loopback). */
static nxl_status_t
be_posix_peer_load(void *self, const char *peer, const void *info, size_t len,
                   void **peer_ctx_p)
{
    be_posix_engine_t *eng = self;

    (void)info, (void)len;
    if (peer == NULL || strcmp(peer, eng->host->agent_name) != 0) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "posix: the POSIX backend moves data inside one "
                         "agent only; it cannot reach agent '%s'",
                         peer ? peer : "(null)");
    }
    *peer_ctx_p = &eng->self_tag;
    return NXL_OK;
}

/* be_posix_region_matches reports whether registration r is desc. */
static bool
be_posix_region_matches(const be_posix_region_t *r, const nxl_desc_t *desc,
                        nxl_mem_t kind)
{
    return r->kind == kind && r->addr == desc->addr && r->len == desc->len &&
           (kind != NXL_FILE || r->dev_id == desc->dev_id);
}

/* be_posix_md_unpack makes this agent's loopback view of its own region
 * desc: the same range, the same file reference or buffer slot. */
static nxl_status_t
be_posix_md_unpack(void *self, void *peer_ctx, const nxl_desc_t *desc,
                   nxl_mem_t kind, const void *pub, size_t len, void **rmd_p)
{
    be_posix_engine_t *eng = self;
    be_posix_region_t *src = NULL, *v;
    be_posix_file_t *f;

    (void)pub, (void)len;
    if (peer_ctx != &eng->self_tag) {
        return nxl__fail(NXL_ERR_NOT_SUPPORTED,
                         "posix: regions of other agents are not reachable");
    }
    v = nxl__pools_alloc(eng->pools, sizeof(*v), true);
    if (v == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "posix: out of memory");
    }
    pthread_mutex_lock(&eng->lock);
    if (eng->last_reg != NULL &&
        be_posix_region_matches(eng->last_reg, desc, kind)) {
        src = eng->last_reg;
    } else if (kind == NXL_DRAM) {
        for (src = eng->drams; src != NULL; src = src->next) {
            if (be_posix_region_matches(src, desc, kind)) {
                break;
            }
        }
    }
    if (src != NULL) {
        *v = *src;
        v->prev = v->next = NULL;
    } else if (kind == NXL_FILE) {
        /* The record of the file the fd names now. */
        struct stat st;
        bool open = desc->dev_id <= INT_MAX &&
                    be_posix_fstat((int)desc->dev_id, &st) == 0;

        for (f = eng->files; f != NULL; f = f->next) {
            if ((uint64_t)f->fd == desc->dev_id &&
                (!open || (f->dev == st.st_dev && f->ino == st.st_ino))) {
                break;
            }
        }
        if (f == NULL) {
            pthread_mutex_unlock(&eng->lock);
            nxl__pools_free(eng->pools, v);
            return nxl__fail(NXL_ERR_NOT_FOUND,
                             "posix: fd %" PRIu64 " is not registered",
                             desc->dev_id);
        }
        *v = (be_posix_region_t){.kind = NXL_FILE,
                                 .addr = desc->addr,
                                 .len = desc->len,
                                 .dev_id = desc->dev_id,
                                 .file = f,
                                 .buf_index = -1};
    } else {
        pthread_mutex_unlock(&eng->lock);
        nxl__pools_free(eng->pools, v);
        return nxl__fail(NXL_ERR_NOT_FOUND,
                         "posix: DRAM region 0x%" PRIx64 "+%" PRIu64
                         " is not registered",
                         desc->addr, desc->len);
    }
    v->view = true;
    if (v->file != NULL) {
        v->file->refs++;
    }
    pthread_mutex_unlock(&eng->lock);
    *rmd_p = v;
    return NXL_OK;
}

/* be_posix_md_unload drops a loopback view. */
static void
be_posix_md_unload(void *self, void *rmd)
{
    be_posix_engine_t *eng = self;
    be_posix_region_t *v = rmd;

    if (v->file != NULL) {
        pthread_mutex_lock(&eng->lock);
        be_posix_file_put(eng, v->file);
        pthread_mutex_unlock(&eng->lock);
    }
    nxl__pools_free(eng->pools, v);
}

const nxl_backend_ops_t nxl__be_posix_ops = {
    .abi_version = NXL_BACKEND_ABI,
    .size = sizeof(nxl_backend_ops_t),
    .name = "POSIX",
    .caps = NXL_CAP_LOCAL | NXL_CAP_THREAD_SAFE,
    .mem_kinds = (1u << NXL_DRAM) | (1u << NXL_FILE),
    .engine_size = sizeof(be_posix_engine_t),
    .req_size = sizeof(be_posix_req_t),
    .defaults = be_posix_defaults,
    .num_defaults = NXL__ARRAY_SIZE(be_posix_defaults),
    .init = be_posix_init,
    .fini = be_posix_fini,
    .mem_register = be_posix_mem_register,
    .mem_deregister = be_posix_mem_deregister,
    .md_pack = be_posix_md_pack,
    .peer_load = be_posix_peer_load,
    .md_unpack = be_posix_md_unpack,
    .md_unload = be_posix_md_unload,
    .prep = be_posix_prep,
    .post = be_posix_post,
    .check = be_posix_check,
    .cancel = be_posix_cancel,
    .release = be_posix_release,
    .progress = be_posix_progress,
    .event_fd = be_posix_event_fd,
};
