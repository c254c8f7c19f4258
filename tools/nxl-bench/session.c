/*
 * session.c - both sides of nxl-bench: agents, pools, the target process
 * and the notification protocol between them.
 *
 * Setup: the target creates its agent with the side-channel listener,
 * registers its pool and publishes its port. The initiator fetches the
 * target's metadata (nxl_md_fetch), sends its own (nxl_md_send), then talks
 * in notifications, each a line of text starting with "NXLB ":
 *
 *   initiator -> target            target -> initiator
 *   hello 1                        region BASE SIZE PID SHARED BOOTID PIDNS
 *                                         [IPERF_PORT [MEM DEV [PP_PORT]]]
 *   fill KEY N OFF LEN ...         filled KEY
 *   verify KEY N OFF LEN ...       verified KEY ok | verified KEY fail OFF
 *   ping                           (nothing; keeps the target's idle timer)
 *   done                           bye
 *
 * fill/verify exist for --check_consistency: the target writes or checks a
 * pattern that depends on the pool offset and KEY. IPERF_PORT (TCP only,
 * 0 = none) is the target's iperf3 server for the Base B/W column, and
 * PP_PORT (TCP only, 0 = none) its raw ping-pong server (iperf.c); a
 * target without a field has none. MEM and DEV are its pool's memory kind
 * and device. Every wait is bounded.
 */
#include "bench.h"
#include "group.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* bench_pool_default returns the pool size per side: --total_buffer_size,
 * or enough for --desc_bench, or max(256 MiB, 4x LLC, one slice per
 * request in flight). */
size_t
bench_pool_default(const bench_opts_t *o)
{
    size_t size;
    size_t need;

    if (o->total_buffer_size != 0) {
        size = o->total_buffer_size;
    } else if (o->desc_bench != 0) {
        size = o->desc_bench * o->start_block;
    } else {
        size = 256 * MIB;
        if (size < 4 * bench_llc_size()) {
            size = 4 * bench_llc_size();
        }
        need = o->max_block * o->max_batch * o->num_threads * o->pipeline_depth;
        if (size < need) {
            size = need;
        }
    }
    return (size + 4095) & ~(size_t)4095;
}

/* sleep_ms sleeps for ms milliseconds. */
static void
sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* read_small reads a one-line file into buf, stripping the newline. */
static void
read_small(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");

    snprintf(buf, cap, "none");
    if (f == NULL) {
        return;
    }
    if (fgets(buf, (int)cap, f) == NULL) {
        snprintf(buf, cap, "none");
    }
    buf[strcspn(buf, "\n")] = '\0';
    fclose(f);
}

/* host_identity fills the boot id and the pid namespace of this process:
 * two processes with equal values can reach each other by pid. */
static void
host_identity(char *boot, size_t bcap, char *pidns, size_t pcap)
{
    ssize_t n;

    read_small("/proc/sys/kernel/random/boot_id", boot, bcap);
    n = readlink("/proc/self/ns/pid", pidns, pcap - 1);
    if (n <= 0) {
        snprintf(pidns, pcap, "none");
    } else {
        pidns[n] = '\0';
    }
    /* the values travel as single words */
    for (char *p = pidns; *p != '\0'; p++) {
        if (*p == ' ') {
            *p = '_';
        }
    }
}

/* pool_alloc allocates, prefaults and registers the session's pool. */
static int
pool_alloc(bench_session_t *s, size_t size, int shared)
{
    nxl_desc_t d;
    nxl_dlist_t dl;
    nxl_status_t st;
    char sz[32];

    s->pool_size = size;
    if (s->lmem == NXL_VRAM) {
        void *p = NULL;

        st = s->dk->alloc((int)s->ldev, size, &p);
        if (st != NXL_OK) {
            return bench_nxl_err(st, "%s alloc(device %d, %s)", s->dk->name,
                                 (int)s->ldev,
                                 bench_fmt_size(size, sz, sizeof(sz)));
        }
        s->pool = p;
    } else if (shared) {
        void *p = NULL;

        st = nxl_mem_alloc_shared(size, &p);
        if (st != NXL_OK) {
            return bench_nxl_err(st, "nxl_mem_alloc_shared(%s)",
                                 bench_fmt_size(size, sz, sizeof(sz)));
        }
        s->pool = p;
        s->pool_shared = 1;
        memset(s->pool, 0x5a, size); /* prefault */
    } else {
        /* storage: the device reads and writes the pool directly, so it
         * gets huge pages as fio's buffer gets contiguous ones
         * (bench_map_huge) */
        s->pool = s->o->storage ? bench_map_huge(size) : bench_map(size);
        if (s->pool == NULL) {
            bench_err("cannot allocate a %s pool: %s",
                      bench_fmt_size(size, sz, sizeof(sz)), strerror(errno));
            return -1;
        }
        memset(s->pool, 0x5a, size);
    }
    d.addr = (uint64_t)(uintptr_t)s->pool;
    d.len = size;
    d.dev_id = s->lmem == NXL_VRAM ? s->ldev : 0;
    dl.mem = s->lmem;
    dl.descs = &d;
    dl.count = 1;
    st = nxl_mem_register(s->agent, &dl, NULL);
    if (st != NXL_OK) {
        return bench_nxl_err(st, "nxl_mem_register(%s pool at %p)",
                             bench_fmt_size(size, sz, sizeof(sz)),
                             (void *)s->pool);
    }
    s->registered = 1;
    return 0;
}

/* bench_pool_reregister deregisters the local pool and registers it
 * again (--reregister_mem). Returns 0 or -1 (printed). */
int
bench_pool_reregister(bench_session_t *s)
{
    nxl_desc_t d;
    nxl_dlist_t dl = {s->lmem, &d, 1};
    nxl_status_t st;

    bench_ldesc(s, 0, s->pool_size, &d);
    st = nxl_mem_deregister(s->agent, &dl, NULL);
    if (st != NXL_OK) {
        s->registered = 0;
        return bench_nxl_err(st, "--reregister_mem: nxl_mem_deregister");
    }
    st = nxl_mem_register(s->agent, &dl, NULL);
    if (st != NXL_OK) {
        s->registered = 0;
        return bench_nxl_err(st, "--reregister_mem: nxl_mem_register");
    }
    return 0;
}

/* pool_free deregisters and frees the pool. */
static void
pool_free(bench_session_t *s)
{
    if (s->registered) {
        nxl_desc_t d = {(uint64_t)(uintptr_t)s->pool, s->pool_size,
                        s->lmem == NXL_VRAM ? s->ldev : 0};
        nxl_dlist_t dl = {s->lmem, &d, 1};
        nxl_status_t st = nxl_mem_deregister(s->agent, &dl, NULL);

        if (st != NXL_OK) {
            bench_nxl_err(st, "nxl_mem_deregister");
        }
        s->registered = 0;
    }
    if (s->pool != NULL) {
        if (s->lmem == NXL_VRAM) {
            s->dk->free((int)s->ldev, s->pool, s->pool_size);
        } else if (s->pool_shared) {
            nxl_mem_free_shared(s->pool);
        } else {
            bench_unmap(s->pool, s->pool_size);
        }
        s->pool = NULL;
    }
}

/* setup_kinds sets this side's pool kind and device (target: the target
 * side) and installs the device kind when either side uses VRAM; both
 * processes need it, the one that opens the other's IPC handles too. */
static int
setup_kinds(bench_session_t *s, int target)
{
    const bench_opts_t *o = s->o;
    nxl_mem_t mine = target ? o->target_seg : o->initiator_seg;
    int count = 0;
    nxl_status_t st;

    s->lmem = mine == NXL_VRAM ? NXL_VRAM : NXL_DRAM;
    s->rmem = target ? o->initiator_seg : o->target_seg;
    s->ldev = 0;
    if (o->num_dev_ids > 0) {
        s->ldev = (uint64_t)(target && o->num_dev_ids > 1 ? o->dev_ids[1]
                                                          : o->dev_ids[0]);
    }
    if (o->initiator_seg != NXL_VRAM && o->target_seg != NXL_VRAM) {
        return 0;
    }
    if (bench_vram_setup(o, target, &s->dk, &s->dev_fake) != 0) {
        return -1;
    }
    if (s->lmem == NXL_VRAM) {
        st = s->dk->device_count != NULL ? s->dk->device_count(&count)
                                         : NXL_ERR_NOT_SUPPORTED;
        if (st != NXL_OK) {
            return bench_nxl_err(st, "%s device_count", s->dk->name);
        }
        if (s->ldev >= (uint64_t)count) {
            bench_err("--device_list: device %d does not exist (%s has %d "
                      "device%s: 0..%d)",
                      (int)s->ldev, s->dk->name, count, count == 1 ? "" : "s",
                      count - 1);
            return -1;
        }
    }
    return 0;
}

/* agent_open creates the agent and the backend of the session. */
static int
agent_open(bench_session_t *s, const char *name, const nxl_agent_config_t *cfg)
{
    const bench_opts_t *o = s->o;
    nxl_param_t items[BENCH_MAX_PARAMS + 4];
    nxl_params_t params = {items, o->num_params};
    nxl_status_t st;

    nxl_param_t extra[3];
    size_t nextra = 0;
    char ptbuf[24];
    size_t i;
    size_t k;

    if (o->ucx_err_mode != NULL) {
        extra[nextra++] = (nxl_param_t){"err_mode", o->ucx_err_mode};
    }
    if (o->pt_key != NULL && o->progress_threads > 0) {
        snprintf(ptbuf, sizeof(ptbuf), "%ld", o->progress_threads);
        extra[nextra++] = (nxl_param_t){o->pt_key, ptbuf};
    }
    if (o->ucx_devices) {
        extra[nextra++] = (nxl_param_t){"device_list", o->device_list};
    }
    for (k = 0; k < nextra; k++) {
        for (i = 0; i < o->num_params; i++) {
            if (strcmp(o->params[i].key, extra[k].key) == 0) {
                bench_err("--backend_params %s=%s and the flag that sets it "
                          "exclude each other; give one",
                          o->params[i].key, o->params[i].value);
                return -1;
            }
        }
    }
    if (o->num_params + nextra > BENCH_MAX_PARAMS + 1) {
        bench_err("--backend_params: too many parameters");
        return -1;
    }
    memcpy(items, o->params, o->num_params * sizeof(items[0]));
    for (k = 0; k < nextra; k++) {
        items[params.count++] = extra[k];
    }

    st = nxl_agent_create(name, cfg, &s->agent);
    if (st != NXL_OK) {
        return bench_nxl_err(st, "nxl_agent_create(%s)", name);
    }
    st = nxl_backend_create(s->agent, o->backend,
                            params.count > 0 ? &params : NULL, &s->be);
    if (st != NXL_OK) {
        return bench_nxl_err(st, "nxl_backend_create(%s)", o->backend);
    }
    return 0;
}

/* queue_clear frees the received messages not consumed. */
static void
queue_clear(bench_session_t *s)
{
    size_t i;

    for (i = 0; i < s->queue_len; i++) {
        free(s->queue[i].from);
        free(s->queue[i].msg);
    }
    s->queue_len = 0;
}

/* fetch_notifs moves new "NXLB " notifications into the queue, dropping
 * anything else. Returns the number queued, or -1 on error. */
static int
fetch_notifs(bench_session_t *s)
{
    nxl_notif_list_t *list = NULL;
    nxl_status_t st;
    size_t i;
    int n = 0;

    st = nxl_notifs_get(s->agent, &list, NULL);
    if (st != NXL_OK) {
        return bench_nxl_err(st, "nxl_notifs_get");
    }
    for (i = 0; list != NULL && i < list->count; i++) {
        const nxl_notif_t *it = &list->items[i];
        struct bench_msg *m;

        if (it->len < 5 || it->len >= BENCH_MSG_MAX ||
            memcmp(it->msg, "NXLB ", 5) != 0) {
            continue;
        }
        if (s->multi) {
            size_t j;

            for (j = 0; j < s->npeers; j++) {
                if (strcmp(it->agent, s->peers[j].name) == 0) {
                    break;
                }
            }
            if (j == s->npeers) {
                continue; /* not one of our initiators */
            }
        } else if (s->peer[0] != '\0' && strcmp(it->agent, s->peer) != 0) {
            continue;
        }
        if (s->queue_len == sizeof(s->queue) / sizeof(s->queue[0])) {
            bench_err("notification queue full; dropping '%s'",
                      s->queue[0].msg);
            free(s->queue[0].from);
            free(s->queue[0].msg);
            memmove(&s->queue[0], &s->queue[1],
                    (s->queue_len - 1) * sizeof(s->queue[0]));
            s->queue_len--;
        }
        m = &s->queue[s->queue_len];
        m->from = strdup(it->agent);
        m->msg = strndup(it->msg, it->len);
        if (m->from == NULL || m->msg == NULL) {
            free(m->from);
            free(m->msg);
            continue;
        }
        s->queue_len++;
        n++;
    }
    nxl_notif_list_free(list);
    return n;
}

/* wait_readable sleeps until the agent's fd is readable or ms passes. */
static void
wait_readable(bench_session_t *s, int ms)
{
    int fd = nxl_agent_fd(s->agent);

    if (fd >= 0) {
        struct pollfd p = {fd, POLLIN, 0};

        (void)poll(&p, 1, ms);
    } else {
        struct timespec ts = {0, 200000};

        nanosleep(&ts, NULL);
    }
}

/* queue_take removes the first queued message starting with prefix. */
static struct bench_msg
queue_take(bench_session_t *s, const char *prefix)
{
    struct bench_msg m = {NULL, NULL};
    size_t i;

    for (i = 0; i < s->queue_len; i++) {
        if (prefix == NULL ||
            strncmp(s->queue[i].msg, prefix, strlen(prefix)) == 0) {
            m = s->queue[i];
            memmove(&s->queue[i], &s->queue[i + 1],
                    (s->queue_len - i - 1) * sizeof(s->queue[0]));
            s->queue_len--;
            break;
        }
    }
    return m;
}

/* bench_send formats a notification and sends it to the peer. */
int
bench_send(bench_session_t *s, const char *fmt, ...)
{
    char buf[BENCH_MSG_MAX];
    va_list ap;
    int n;
    nxl_status_t st;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        bench_err("notification too long");
        return -1;
    }
    if (s->o->storage) {
        return 0; /* no peer: the files are ours */
    }
    if (s->peer_gone) {
        return -1;
    }
    st = nxl_notif_send(s->agent, s->peer, buf, (size_t)n, NULL);
    if (st != NXL_OK) {
        if (st == NXL_ERR_REMOTE_DISCONNECT || st == NXL_ERR_NOT_FOUND) {
            s->peer_gone = 1; /* say it once */
        }
        return bench_nxl_err(st, "nxl_notif_send(%s, \"%.20s\")", s->peer, buf);
    }
    return 0;
}

/* bench_recv waits up to timeout_ms for a peer message starting with
 * prefix. */
int
bench_recv(bench_session_t *s, const char *prefix, char *buf, size_t cap,
           int timeout_ms)
{
    uint64_t deadline = bench_now_ns() + (uint64_t)timeout_ms * 1000000ull;

    for (;;) {
        struct bench_msg m = queue_take(s, prefix);

        if (m.msg != NULL) {
            snprintf(buf, cap, "%s", m.msg);
            free(m.from);
            free(m.msg);
            return 0;
        }
        if (fetch_notifs(s) < 0) {
            return -1;
        }
        if (s->queue_len > 0) {
            continue;
        }
        if (bench_now_ns() >= deadline) {
            bench_err("no '%s' from %s within %d ms", prefix, s->peer,
                      timeout_ms);
            return -1;
        }
        wait_readable(s, 2);
    }
}

/* append_ranges formats " N OFF LEN ..." after a message head. */
static int
append_ranges(char *buf, size_t cap, size_t used, const size_t *ranges,
              size_t nranges)
{
    size_t i;
    int n;

    n = snprintf(buf + used, cap - used, " %zu", nranges);
    if (n < 0 || (size_t)n >= cap - used) {
        return -1;
    }
    used += (size_t)n;
    for (i = 0; i < nranges; i++) {
        n = snprintf(buf + used, cap - used, " %zu %zu", ranges[2 * i],
                     ranges[2 * i + 1]);
        if (n < 0 || (size_t)n >= cap - used) {
            return -1;
        }
        used += (size_t)n;
    }
    return 0;
}

/* remote_cmd sends "NXLB VERB KEY ranges" and waits for the answer
 * starting with "NXLB REPLY KEY". */
static int
remote_cmd(bench_session_t *s, const char *verb, const char *reply,
           uint64_t key, const size_t *ranges, size_t nranges, char *ans,
           size_t cap)
{
    char buf[BENCH_MSG_MAX];
    char want[64];
    int n;
    nxl_status_t st;

    n = snprintf(buf, sizeof(buf), "NXLB %s %llx", verb,
                 (unsigned long long)key);
    if (append_ranges(buf, sizeof(buf), (size_t)n, ranges, nranges) != 0) {
        bench_err("too many ranges for one notification");
        return -1;
    }
    st = nxl_notif_send(s->agent, s->peer, buf, strlen(buf), NULL);
    if (st != NXL_OK) {
        return bench_nxl_err(st, "nxl_notif_send(%s, %s)", s->peer, verb);
    }
    snprintf(want, sizeof(want), "NXLB %s %llx ", reply,
             (unsigned long long)key);
    /* filling or checking a large pool takes time on the target */
    return bench_recv(s, want, ans, cap, s->o->timeout_s * 1000 * 4);
}

/* bench_remote_fill asks the target to write pattern key into ranges. */
int
bench_remote_fill(bench_session_t *s, uint64_t key, const size_t *ranges,
                  size_t nranges)
{
    char ans[256];

    if (s->o->storage) {
        return bench_storage_fill(s, key, ranges, nranges);
    }
    return remote_cmd(s, "fill", "filled", key, ranges, nranges, ans,
                      sizeof(ans));
}

/* bench_remote_verify asks the target to check pattern key in ranges. */
int
bench_remote_verify(bench_session_t *s, uint64_t key, const size_t *ranges,
                    size_t nranges)
{
    char ans[256];
    char want[64];
    int n;

    if (s->o->storage) {
        return bench_storage_verify(s, key, ranges, nranges);
    }
    if (remote_cmd(s, "verify", "verified", key, ranges, nranges, ans,
                   sizeof(ans)) != 0) {
        return -1;
    }
    n = snprintf(want, sizeof(want), "NXLB verified %llx ",
                 (unsigned long long)key);
    if (strcmp(ans + n, "ok") == 0) {
        return 0;
    }
    bench_err("consistency: target found wrong data after WRITE (%s)", ans + n);
    s->failures++;
    return 1;
}

/* --- target ------------------------------------------------------------- */

/* parse_listen splits "[ADDR:]PORT" into addr (in buf) and port. */
static int
parse_listen(const char *spec, char *buf, size_t cap, uint16_t *port)
{
    const char *colon = strrchr(spec, ':');
    const char *p = colon != NULL ? colon + 1 : spec;
    char *end;
    long v;

    errno = 0;
    v = strtol(p, &end, 10);
    if (*p == '\0' || *end != '\0' || errno != 0 || v < 0 || v > 65535) {
        return -1;
    }
    *port = (uint16_t)v;
    if (colon == NULL || colon == spec) {
        buf[0] = '\0';
    } else {
        if ((size_t)(colon - spec) >= cap) {
            return -1;
        }
        memcpy(buf, spec, (size_t)(colon - spec));
        buf[colon - spec] = '\0';
    }
    return 0;
}

/* parse_ranges reads " N OFF LEN ..." and checks them against the pool. */
static int
parse_ranges(const bench_session_t *s, const char *p, size_t *ranges,
             size_t cap, size_t *n_p)
{
    char *end;
    unsigned long long n;
    size_t i;
    size_t lim = s->slice_size != 0 ? s->slice_size : s->pool_size;

    n = strtoull(p, &end, 10);
    if (end == p || n > cap) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        unsigned long long off;
        unsigned long long len;

        p = end;
        off = strtoull(p, &end, 10);
        if (end == p) {
            return -1;
        }
        p = end;
        len = strtoull(p, &end, 10);
        if (end == p || off > lim || len > lim - off) {
            return -1;
        }
        ranges[2 * i] = (size_t)off;
        ranges[2 * i + 1] = (size_t)len;
    }
    *n_p = (size_t)n;
    return 0;
}

/* target_handle answers one initiator message. Returns 1 after "done",
 * 0 to go on, -1 on error. */
static int
target_handle(bench_session_t *s, const char *msg)
{
    size_t ranges[2 * 2 * BENCH_MAX_THREADS];
    size_t n = 0;
    size_t i;
    unsigned long long key;
    char *end;

    if (strncmp(msg, "NXLB hello", 10) == 0) {
        char boot[64];
        char pidns[64];

        host_identity(boot, sizeof(boot), pidns, sizeof(pidns));
        return bench_send(
            s, "NXLB region %llx %zu %d %d %s %s %u %d %llu %u",
            (unsigned long long)(uintptr_t)(s->pool + s->slice_off),
            s->slice_size != 0 ? s->slice_size : s->pool_size, (int)getpid(),
            s->pool_shared, boot, pidns, s->iperf_port, (int)s->lmem,
            (unsigned long long)s->ldev, s->pp_port);
    }
    if (strcmp(msg, "NXLB ping") == 0) {
        return 0;
    }
    if (strcmp(msg, "NXLB done") == 0) {
        return bench_send(s, "NXLB bye") == 0 ? 1 : -1;
    }
    if (strncmp(msg, "NXLB fill ", 10) == 0) {
        key = strtoull(msg + 10, &end, 16);
        if (parse_ranges(s, end, ranges, 2 * BENCH_MAX_THREADS, &n) != 0) {
            bench_err("target: bad request '%.60s'", msg);
            return -1;
        }
        for (i = 0; i < n; i++) {
            if (bench_pool_fill(s, s->slice_off + ranges[2 * i], ranges[2 * i],
                                ranges[2 * i + 1], key) != 0) {
                return -1;
            }
        }
        return bench_send(s, "NXLB filled %llx done", key);
    }
    if (strncmp(msg, "NXLB verify ", 12) == 0) {
        key = strtoull(msg + 12, &end, 16);
        if (parse_ranges(s, end, ranges, 2 * BENCH_MAX_THREADS, &n) != 0) {
            bench_err("target: bad request '%.60s'", msg);
            return -1;
        }
        for (i = 0; i < n; i++) {
            size_t bad = SIZE_MAX;

            if (bench_pool_check(s, s->slice_off + ranges[2 * i], ranges[2 * i],
                                 ranges[2 * i + 1], key, &bad) != 0) {
                return -1;
            }
            if (bad != SIZE_MAX) {
                return bench_send(s,
                                  "NXLB verified %llx fail at pool offset "
                                  "%zu (range %zu+%zu)",
                                  key, bad, ranges[2 * i], ranges[2 * i + 1]);
            }
        }
        return bench_send(s, "NXLB verified %llx ok", key);
    }
    bench_err("target: unexpected message '%.60s'", msg);
    return 0;
}

/* hello_pid returns the initiator's pid from "NXLB hello 1 PID BOOT PIDNS"
 * when it runs on this host in our pid namespace (so that its death can be
 * seen with kill(pid, 0)), else 0. */
static pid_t
hello_pid(const char *msg)
{
    char boot[64];
    char pidns[64];
    char rboot[64];
    char rpidns[64];
    int pid;

    if (sscanf(msg, "NXLB hello 1 %d %63s %63s", &pid, rboot, rpidns) != 3 ||
        pid <= 0) {
        return 0;
    }
    host_identity(boot, sizeof(boot), pidns, sizeof(pidns));
    if (strcmp(boot, "none") == 0 || strcmp(boot, rboot) != 0 ||
        strcmp(pidns, rpidns) != 0) {
        return 0;
    }
    return (pid_t)pid;
}

/* target_loop serves the initiator until "done". Before the hello it
 * waits up to 10x the timeout, afterwards it gives up after 10x the timeout
 * of silence (the initiator pings between rows), or at once when the local
 * parent is gone. */
static int
target_loop(bench_session_t *s, pid_t parent)
{
    uint64_t idle_ns = (uint64_t)s->o->timeout_s * 10 * 1000000000ull;
    uint64_t last = bench_now_ns();

    for (;;) {
        struct bench_msg m;
        int rc;

        if (fetch_notifs(s) < 0) {
            return -1;
        }
        m = queue_take(s, NULL);
        if (m.msg == NULL) {
            if (parent > 0 && getppid() != parent) {
                bench_err("target: the initiator process is gone");
                return -1;
            }
            if (s->rpid > 0 && kill(s->rpid, 0) != 0 && errno == ESRCH) {
                bench_err("target: initiator %s (pid %d) is gone", s->peer,
                          (int)s->rpid);
                return -1;
            }
            if (s->peer[0] != '\0' &&
                nxl_md_check(s->agent, s->peer, NULL) != NXL_OK) {
                /* the library drops a peer it saw die */
                bench_err("target: initiator %s disconnected", s->peer);
                return -1;
            }
            if (bench_now_ns() - last > idle_ns) {
                bench_err("target: no message from the initiator for %d s; "
                          "giving up",
                          s->o->timeout_s * 10);
                return -1;
            }
            wait_readable(s, 2);
            continue;
        }
        last = bench_now_ns();
        if (s->peer[0] == '\0') {
            if (strncmp(m.msg, "NXLB hello", 10) != 0) {
                free(m.from);
                free(m.msg);
                continue;
            }
            snprintf(s->peer, sizeof(s->peer), "%s", m.from);
            s->rpid = hello_pid(m.msg);
        }
        rc = target_handle(s, m.msg);
        free(m.from);
        free(m.msg);
        if (rc != 0) {
            return rc > 0 ? 0 : -1;
        }
    }
}

/* multi_target_loop serves every initiator of a manytoone target, each
 * in its own slice of the pool, until all of them said "done". It gives
 * up when one of them disappears or all go quiet for 10x the timeout. */
static int
multi_target_loop(bench_session_t *s)
{
    uint64_t idle_ns = (uint64_t)s->o->timeout_s * 10 * 1000000000ull;
    uint64_t last = bench_now_ns();
    size_t left = s->npeers;

    while (left > 0) {
        struct bench_msg m;
        size_t j;
        int rc;

        if (fetch_notifs(s) < 0) {
            return -1;
        }
        m = queue_take(s, NULL);
        if (m.msg == NULL) {
            for (j = 0; j < s->npeers; j++) {
                bench_peer_t *p = &s->peers[j];

                if (p->done) {
                    continue;
                }
                if (p->rpid > 0 && kill(p->rpid, 0) != 0 && errno == ESRCH) {
                    bench_err("target: initiator %s (pid %d) is gone", p->name,
                              (int)p->rpid);
                    return -1;
                }
                if (nxl_md_check(s->agent, p->name, NULL) != NXL_OK) {
                    bench_err("target: initiator %s disconnected", p->name);
                    return -1;
                }
            }
            if (bench_now_ns() - last > idle_ns) {
                bench_err("target: no message from the initiators for %d "
                          "s; giving up",
                          s->o->timeout_s * 10);
                return -1;
            }
            wait_readable(s, 2);
            continue;
        }
        last = bench_now_ns();
        for (j = 0; j < s->npeers; j++) {
            if (strcmp(m.from, s->peers[j].name) == 0) {
                break;
            }
        }
        if (j == s->npeers || s->peers[j].done) {
            free(m.from);
            free(m.msg);
            continue;
        }
        snprintf(s->peer, sizeof(s->peer), "%s", s->peers[j].name);
        s->slice_off = j * s->slice_size;
        if (strncmp(m.msg, "NXLB hello", 10) == 0) {
            s->peers[j].rpid = hello_pid(m.msg);
        }
        rc = target_handle(s, m.msg);
        free(m.from);
        free(m.msg);
        if (rc < 0) {
            return -1;
        }
        if (rc > 0) {
            s->peers[j].done = 1;
            left--;
        }
    }
    return 0;
}

/* bench_run_target runs the target side (--listen). */
int
bench_run_target(const bench_opts_t *o)
{
    bench_session_t s;
    nxl_agent_config_t cfg;
    char addr[256];
    uint16_t port;
    char sz[32];
    int rc = 1;
    pid_t parent = o->report_fd >= 0 ? getppid() : 0;

    memset(&s, 0, sizeof(s));
    s.o = o;
    s.child = -1;
    s.iperf_pid = -1;
    s.pp_fd = -1;
    if (setup_kinds(&s, 1) != 0) {
        return 1;
    }
    if (parse_listen(o->listen, addr, sizeof(addr), &port) != 0) {
        bench_err("--listen %s: want [ADDR:]PORT", o->listen);
        return 2;
    }
    /* let a same-host initiator that is not our parent use CMA on us (for
     * the SHM backend and the baseline); fails harmlessly without Yama */
    (void)prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);

    nxl_agent_config_init(&cfg);
    cfg.listen_thread = 1;
    cfg.listen_port = port;
    cfg.listen_addr = addr[0] != '\0' ? addr : NULL;
    cfg.sync_mode = NXL_SYNC_RW;
    cfg.progress_thread = o->enable_pt;
    if (agent_open(&s, BENCH_TARGET_NAME, &cfg) != 0 ||
        pool_alloc(&s, bench_pool_default(o), o->shared) != 0) {
        goto out;
    }
    port = nxl_agent_listen_port(s.agent);
    s.iperf_pid = -1;
    if (strcasecmp(o->backend, "TCP") == 0) {
        /* the Base B/W column's iperf3 and the raw ping-pong, on the
         * same address */
        s.iperf_port = bench_iperf_server(addr, &s.iperf_pid);
        s.pp_port = bench_pp_server_start(addr, s.pool_size, &s.pp_srv);
    }
    if (o->report_fd >= 0) {
        char line[64];
        int n = snprintf(line, sizeof(line), "NXLB-PORT %u\n", port);

        if (write(o->report_fd, line, (size_t)n) != n) {
            bench_err("target: cannot report the port: %s", strerror(errno));
            goto out;
        }
        close(o->report_fd);
    } else {
        printf("nxl-bench target: agent %s listening on %s:%u, %s %s pool\n",
               BENCH_TARGET_NAME, addr[0] != '\0' ? addr : "0.0.0.0", port,
               bench_fmt_size(s.pool_size, sz, sizeof(sz)),
               o->shared ? "shared" : "private");
    }
    rc = target_loop(&s, parent) == 0 ? 0 : 1;
out:
    bench_pp_server_stop(s.pp_srv);
    if (s.iperf_pid > 0) {
        kill(s.iperf_pid, SIGTERM);
        if (bench_reap(s.iperf_pid, bench_now_ns() + 2000000000ull) < 0) {
            bench_err("target: iperf3 server killed after 2 s");
        }
    }
    queue_clear(&s);
    pool_free(&s);
    if (s.stage != NULL) {
        bench_unmap(s.stage, s.stage_size);
    }
    nxl_agent_destroy(s.agent);
    return rc;
}

/* etcd_exchange publishes this agent's metadata in etcd (the library's
 * store, NXL_ETCD_ENDPOINTS) and loads the peer's, saying what it waits
 * for when the peer is not there yet. */
static int
etcd_exchange(bench_session_t *s, const char *peer)
{
    const bench_opts_t *o = s->o;
    nxl_opts_t op;
    nxl_status_t st;

    nxl_opts_init(&op);
    op.timeout_ms = o->timeout_s * 1000;
    st = nxl_md_send(s->agent, &op);
    if (st != NXL_OK) {
        return bench_nxl_err(st, "nxl_md_send(%s to etcd at %s)",
                             nxl_agent_name(s->agent), o->etcd_endpoints);
    }
    op.timeout_ms = 300;
    st = nxl_md_fetch(s->agent, peer, &op);
    if (st == NXL_ERR_NOT_FOUND || st == NXL_ERR_TIMEOUT) {
        fprintf(o->json || o->csv ? stderr : stdout,
                "nxl-bench: waiting for %s's metadata in etcd at %s (up to "
                "%d s)...\n",
                peer, o->etcd_endpoints, o->timeout_s);
        fflush(stdout);
        op.timeout_ms = o->timeout_s * 1000;
        st = nxl_md_fetch(s->agent, peer, &op);
    }
    if (st != NXL_OK) {
        return bench_nxl_err(st, "nxl_md_fetch(%s from etcd at %s)", peer,
                             o->etcd_endpoints);
    }
    snprintf(s->peer, sizeof(s->peer), "%s", peer);
    return 0;
}

/* bench_run_group_target runs a target rank of an etcd group: its agent
 * and pool, metadata through etcd, then the initiator's requests until
 * "done". Returns the process exit code. */
int
bench_run_group_target(const bench_opts_t *o, struct bench_group *g)
{
    bench_session_t s;
    nxl_agent_config_t cfg;
    char name[128];
    char peer[128];
    char sz[32];
    size_t i;
    int rc = 1;

    memset(&s, 0, sizeof(s));
    s.o = o;
    s.child = -1;
    s.iperf_pid = -1;
    s.pp_fd = -1;
    s.grp = g;
    (void)prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
    if (setup_kinds(&s, 1) != 0) {
        return 1;
    }
    bench_group_agent(o, g->rank, name, sizeof(name));
    bench_group_agent(o, g->peers[0], peer, sizeof(peer));
    nxl_agent_config_init(&cfg);
    cfg.sync_mode = NXL_SYNC_RW;
    cfg.progress_thread = o->enable_pt;
    /* manytoone: one slice of the pool per initiator, so that their
     * WRITEs never overlap and each one's data can be verified */
    s.multi = g->npeers > 1;
    s.slice_size = s.multi ? bench_pool_default(o) : 0;
    if (agent_open(&s, name, &cfg) != 0 ||
        pool_alloc(&s, bench_pool_default(o) * g->npeers, o->shared) != 0) {
        goto out;
    }
    for (i = 0; i < g->npeers; i++) {
        bench_group_agent(o, g->peers[i], s.peers[i].name,
                          sizeof(s.peers[i].name));
        s.peers[i].rank = g->peers[i];
        if (etcd_exchange(&s, s.peers[i].name) != 0) {
            goto out;
        }
    }
    s.npeers = g->npeers;
    if (s.multi) {
        s.peer[0] = '\0'; /* set per message */
        snprintf(peer, sizeof(peer), "%zu initiators (ranks 1..%zu)", g->npeers,
                 g->npeers);
    }
    fprintf(o->json || o->csv ? stderr : stdout,
            "nxl-bench: rank %d of %zu in group '%s': target %s of %s, %s "
            "%s pool\n",
            g->rank, g->world, o->group, name, peer,
            bench_fmt_size(s.pool_size, sz, sizeof(sz)),
            s.lmem == NXL_VRAM ? "VRAM" : "DRAM");
    fflush(stdout);
    if (s.multi) {
        rc = multi_target_loop(&s) == 0 ? 0 : 1;
    } else {
        rc = target_loop(&s, 0) == 0 ? 0 : 1;
    }
out:
    queue_clear(&s);
    pool_free(&s);
    if (s.stage != NULL) {
        bench_unmap(s.stage, s.stage_size);
    }
    nxl_agent_destroy(s.agent);
    return rc;
}

/* --- initiator ---------------------------------------------------------- */

/* launch_target forks and executes this program as the local target and
 * learns its side-channel port from a pipe. */
static int
launch_target(bench_session_t *s, size_t pool_size, uint16_t *port_p)
{
    const bench_opts_t *o = s->o;
    char fdbuf[16];
    char szbuf[32];
    char tobuf[16];
    const char *argv[40];
    char ptbuf[24];
    int argc = 0;
    int pfd[2];
    char line[64];
    size_t used = 0;
    uint64_t deadline;
    pid_t parent = getpid();
    pid_t pid;
    unsigned port;

    if (pipe(pfd) != 0) {
        bench_err("pipe: %s", strerror(errno));
        return -1;
    }
    snprintf(fdbuf, sizeof(fdbuf), "%d", pfd[1]);
    snprintf(szbuf, sizeof(szbuf), "%zu", pool_size);
    snprintf(tobuf, sizeof(tobuf), "%d", o->timeout_s);
    argv[argc++] = "nxl-bench";
    argv[argc++] = "--listen";
    argv[argc++] = "127.0.0.1:0";
    argv[argc++] = "--report_fd";
    argv[argc++] = fdbuf;
    argv[argc++] = "--backend";
    argv[argc++] = o->backend;
    argv[argc++] = "--total_buffer_size";
    argv[argc++] = szbuf;
    argv[argc++] = "--timeout";
    argv[argc++] = tobuf;
    if (o->shared) {
        argv[argc++] = "--shared";
    }
    if (o->params_arg != NULL) {
        argv[argc++] = "--backend_params";
        argv[argc++] = o->params_arg;
    }
    if (o->ucx_err_mode != NULL) {
        argv[argc++] = "--ucx_err_mode";
        argv[argc++] = o->ucx_err_mode;
    }
    argv[argc++] = "--initiator_seg_type";
    argv[argc++] = o->initiator_seg == NXL_VRAM ? "VRAM" : "DRAM";
    argv[argc++] = "--target_seg_type";
    argv[argc++] = o->target_seg == NXL_VRAM ? "VRAM" : "DRAM";
    if (o->vram_device != NULL) {
        argv[argc++] = "--vram_device";
        argv[argc++] = o->vram_device;
    }
    if (o->device_list != NULL) {
        argv[argc++] = "--device_list";
        argv[argc++] = o->device_list;
    }
    if (o->enable_pt) {
        argv[argc++] = "--enable_pt";
    }
    if (o->progress_threads > 0) {
        snprintf(ptbuf, sizeof(ptbuf), "%ld", o->progress_threads);
        argv[argc++] = "--progress_threads";
        argv[argc++] = ptbuf;
    }
    argv[argc] = NULL;

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        bench_err("fork: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        /* the target dies with us */
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != parent) {
            _exit(1);
        }
        close(pfd[0]);
        execv(o->self_exe, (char *const *)argv);
        fprintf(stderr, "nxl-bench: exec %s: %s\n", o->self_exe,
                strerror(errno));
        _exit(127);
    }
    close(pfd[1]);
    s->child = pid;

    deadline = bench_now_ns() + (uint64_t)o->timeout_s * 1000000000ull;
    while (memchr(line, '\n', used) == NULL) {
        struct pollfd p = {pfd[0], POLLIN, 0};
        uint64_t now = bench_now_ns();
        ssize_t n;

        if (now >= deadline || used == sizeof(line) - 1) {
            bench_err("the local target did not report its port within %d s",
                      o->timeout_s);
            close(pfd[0]);
            return -1;
        }
        if (poll(&p, 1, (int)((deadline - now) / 1000000ull) + 1) <= 0) {
            continue;
        }
        n = read(pfd[0], line + used, sizeof(line) - 1 - used);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            bench_err("the local target exited during setup (see its "
                      "messages above)");
            close(pfd[0]);
            return -1;
        }
        used += (size_t)n;
    }
    close(pfd[0]);
    line[used] = '\0';
    if (sscanf(line, "NXLB-PORT %u", &port) != 1 || port == 0 || port > 65535) {
        bench_err("the local target reported '%s'", line);
        return -1;
    }
    *port_p = (uint16_t)port;
    return 0;
}

/* reap_target waits (bounded) for the local target; returns its status
 * as 0 (clean exit) or -1. */
static int
reap_target(bench_session_t *s, int timeout_ms)
{
    uint64_t deadline = bench_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    int status = 0;
    pid_t r;

    if (s->child <= 0) {
        return 0;
    }
    for (;;) {
        r = waitpid(s->child, &status, WNOHANG);
        if (r == s->child || (r < 0 && errno != EINTR)) {
            break;
        }
        if (bench_now_ns() >= deadline) {
            bench_err("the local target did not exit; killing it");
            kill(s->child, SIGKILL);
            r = waitpid(s->child, &status, 0);
            s->child = -1;
            return -1;
        }
        sleep_ms(5);
    }
    s->child = -1;
    if (r < 0) {
        return -1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        return 0;
    }
    if (WIFSIGNALED(status)) {
        bench_err("the local target died of signal %d", WTERMSIG(status));
    } else {
        bench_err("the local target exited with status %d",
                  WEXITSTATUS(status));
    }
    return -1;
}

/* resolve turns a host name into a dotted IPv4 address. */
static int
resolve(const char *host, char *buf, size_t cap)
{
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || res == NULL) {
        bench_err("cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, buf,
              (socklen_t)cap);
    freeaddrinfo(res);
    return 0;
}

/* exchange_md fetches the target's metadata (retrying while it starts)
 * and sends ours. */
static int
exchange_md(bench_session_t *s, const char *ip, uint16_t port)
{
    nxl_opts_t op;
    nxl_status_t st;
    uint64_t deadline =
        bench_now_ns() + (uint64_t)s->o->timeout_s * 1000000000ull;
    int said = 0;

    nxl_opts_init(&op);
    op.ip_addr = ip;
    op.port = port;
    op.timeout_ms = 5000;
    for (;;) {
        st = nxl_md_fetch(s->agent, BENCH_TARGET_NAME, &op);
        if (st == NXL_OK) {
            break;
        }
        if ((st != NXL_ERR_IO && st != NXL_ERR_TIMEOUT &&
             st != NXL_ERR_REMOTE_DISCONNECT) ||
            bench_now_ns() >= deadline) {
            return bench_nxl_err(st, "nxl_md_fetch(%s from %s:%u)",
                                 BENCH_TARGET_NAME, ip, port);
        }
        if (!said) {
            fprintf(s->o->json || s->o->csv ? stderr : stdout,
                    "nxl-bench: waiting for target at %s:%u (up to %d s)..."
                    "\n",
                    ip, port, s->o->timeout_s);
            fflush(stdout);
            said = 1;
        }
        sleep_ms(200);
    }
    st = nxl_md_send(s->agent, &op);
    if (st != NXL_OK) {
        return bench_nxl_err(st, "nxl_md_send(to %s:%u)", ip, port);
    }
    snprintf(s->peer, sizeof(s->peer), "%s", BENCH_TARGET_NAME);
    return 0;
}

/* bench_peer_use makes peers[j] the current peer. */
void
bench_peer_use(bench_session_t *s, size_t j)
{
    bench_peer_t *p = &s->peers[j];

    s->cur = j;
    s->lbase = j * s->lstride;
    snprintf(s->peer, sizeof(s->peer), "%s", p->name);
    s->rbase = p->rbase;
    s->rsize = p->rsize;
    s->rpid = p->rpid;
    s->rshared = p->rshared;
    s->same_host = p->same_host;
}

/* handshake says hello to the current peer (s->peer) and reads its region
 * description into peers[j] and the session's current-peer fields. */
static int
handshake(bench_session_t *s, size_t j)
{
    char ans[512];
    char rboot[64];
    char rpidns[64];
    char boot[64];
    char pidns[64];
    unsigned long long base;
    size_t size;
    unsigned iperf_port = 0;
    unsigned pp_port = 0;
    unsigned long long rdev = 0;
    int rmem = NXL_DRAM;
    int pid;
    int shared;
    int n;

    host_identity(boot, sizeof(boot), pidns, sizeof(pidns));
    if (bench_send(s, "NXLB hello 1 %d %s %s", (int)getpid(), boot, pidns) !=
            0 ||
        bench_recv(s, "NXLB region ", ans, sizeof(ans),
                   s->o->timeout_s * 1000) != 0) {
        return -1;
    }
    n = sscanf(ans, "NXLB region %llx %zu %d %d %63s %63s %u %d %llu %u", &base,
               &size, &pid, &shared, rboot, rpidns, &iperf_port, &rmem, &rdev,
               &pp_port);
    if ((n != 6 && n != 7 && n != 9 && n != 10) ||
        (n >= 7 && iperf_port > 65535) || (n >= 10 && pp_port > 65535) ||
        (rmem != NXL_DRAM && rmem != NXL_VRAM)) {
        bench_err("bad region message from the target: '%s'", ans);
        return -1;
    }
    if ((nxl_mem_t)rmem != s->o->target_seg) {
        bench_err("the target's pool is %s, this side asked for "
                  "--target_seg_type %s: give the target the same flag",
                  rmem == NXL_VRAM ? "VRAM" : "DRAM",
                  s->o->target_seg == NXL_VRAM ? "VRAM" : "DRAM");
        return -1;
    }
    s->rmem = (nxl_mem_t)rmem;
    s->peers[j].rmem = (nxl_mem_t)rmem;
    s->peers[j].rdev = rdev;
    s->peers[j].rbase = base;
    s->peers[j].rsize = size;
    s->peers[j].rpid = (pid_t)pid;
    s->peers[j].rshared = shared;
    s->peers[j].rank = -1;
    s->peers[j].same_host = strcmp(boot, "none") != 0 &&
                            strcmp(boot, rboot) == 0 &&
                            strcmp(pidns, rpidns) == 0;
    snprintf(s->peers[j].name, sizeof(s->peers[j].name), "%.127s", s->peer);
    s->npeers = j + 1;
    if (j == 0) {
        s->iperf_port = n >= 7 ? iperf_port : 0;
        s->pp_port = n >= 10 ? pp_port : 0;
    }
    bench_peer_use(s, j);
    return 0;
}

/* setup_pingpong connects to the target's raw ping-pong server (TCP):
 * the baseline of --lat_bench and the PP columns of the sweep's small
 * rows. Without it those stay '-' (--lat_bench falls back to the usual
 * same-host baseline), said on stderr. */
static void
setup_pingpong(bench_session_t *s)
{
    const bench_opts_t *o = s->o;
    const char *then = !o->lat_bench  ? "; the PP columns are '-'"
                       : s->same_host ? "; using process_vm_readv/writev"
                                      : "; the baseline is '-'";
    char why[256];

    if (s->pp_port == 0) {
        bench_err("raw ping-pong baseline: the target runs no ping-pong "
                  "server (%s)%s",
                  s->grp != NULL ? "targets of an etcd group run none"
                                 : "an older nxl-bench, or it could not "
                                   "start one",
                  then);
        return;
    }
    if (bench_pp_connect(s, why, sizeof(why)) != 0) {
        bench_err("raw ping-pong baseline: %s%s", why, then);
        if (o->smoke) {
            s->failures++; /* the smoke run checks the baseline too */
        }
        return;
    }
    s->base_pp = 1;
}

/* setup_baseline decides how the Base B/W column is measured. */
static void
setup_baseline(bench_session_t *s)
{
    const bench_opts_t *o = s->o;

    s->base_ok = 0;
    s->base_name = "-";
    s->base_perftest = 0;
    if (o->storage) {
        s->base_name = o->direct ? "pread/pwrite, O_DIRECT, same fds"
                                 : "pread/pwrite, same fds";
        s->base_ok = 1;
        if (o->desc_bench == 0 && !o->lat_bench) {
            if (bench_find_exe("fio", s->fio, sizeof(s->fio)) == 0) {
                s->base_fio = 1;
            } else {
                bench_err("the fio column is '-': fio is not installed "
                          "(Debian/Ubuntu: apt-get install fio)");
            }
        }
        return;
    }
    if (strcasecmp(o->backend, "UCX") == 0 && o->desc_bench == 0 &&
        !o->lat_bench) {
        /* The sweep's Base B/W is UCX's own benchmark. */
        if (!s->same_host) {
            bench_err("Base B/W is '-': the ucx_perftest baseline runs on "
                      "this host and the target is elsewhere");
        } else if (bench_find_exe("ucx_perftest", s->perftest,
                                  sizeof(s->perftest)) != 0) {
            bench_err("Base B/W is '-': ucx_perftest is not installed "
                      "(Debian/Ubuntu: ucx-utils)");
        } else {
            s->base_perftest = 1;
        }
        return;
    }
    if (strcasecmp(o->backend, "TCP") == 0 && o->desc_bench == 0 &&
        s->lmem == NXL_DRAM) {
        /* --lat_bench's baseline, and the sweep's PP columns, are a raw
         * ping-pong of the same size on the same path */
        setup_pingpong(s);
        if (o->lat_bench && s->base_pp) {
            s->base_name = "raw TCP ping-pong";
            return;
        }
    }
    if (strcasecmp(o->backend, "TCP") == 0 && !o->lat_bench) {
        /* The sweep's Base B/W is iperf3 on the same path; --desc_bench
         * prints it beside its own baseline. */
        if (s->iperf_port == 0 && s->grp != NULL) {
            bench_err("Base B/W: targets of an etcd group run no iperf3 "
                      "server%s",
                      s->same_host ? "; using process_vm_readv/writev"
                                   : "; Base B/W is '-'");
        } else if (s->iperf_port == 0) {
            bench_err("Base B/W: the target runs no iperf3 server (iperf3 "
                      "not installed there; Debian/Ubuntu: iperf3)%s",
                      s->same_host ? "; using process_vm_readv/writev"
                                   : "; Base B/W is '-'");
        } else if (bench_find_exe("iperf3", s->iperf, sizeof(s->iperf)) != 0) {
            bench_err("Base B/W: iperf3 is not installed here (Debian/"
                      "Ubuntu: iperf3)%s",
                      s->same_host ? "; using process_vm_readv/writev"
                                   : "; Base B/W is '-'");
        } else {
            s->base_iperf = 1;
            if (o->desc_bench == 0) {
                return;
            }
        }
    }
    if (!s->same_host) {
        return;
    }
    if (s->lmem == NXL_VRAM || s->rmem == NXL_VRAM) {
        /* the ceiling: the device kind's own copy between a local pool and
         * a second local one of the target's kind */
        void *p = NULL;

        s->base_mem = s->rmem;
        if (s->rmem == NXL_VRAM) {
            if (s->dk->alloc((int)s->ldev, s->pool_size, &p) != NXL_OK) {
                bench_err("no device memory for the baseline pool (%s); "
                          "Base B/W is '-'",
                          nxl_last_error());
                return;
            }
        } else {
            p = bench_map(s->pool_size);
            if (p == NULL) {
                bench_err("no memory for the baseline pool; Base B/W is "
                          "'-'");
                return;
            }
        }
        s->base_pool = p;
        s->base_dev = 1;
        s->base_name = s->dev_fake ? "fakedev copy (memcpy) between two "
                                     "local pools"
                                   : "device-kind copy between two local "
                                     "pools";
        s->base_ok = 1;
        return;
    }
    if (o->shared) {
        s->base_pool = bench_map(s->pool_size);
        if (s->base_pool == NULL) {
            bench_err("no memory for the baseline pool; Base B/W is '-'");
            return;
        }
        memset(s->base_pool, 0x3c, s->pool_size);
        s->base_name = o->base_memcpy ? "memcpy between two local pools"
                                      : "NT memcpy between two local pools";
        s->base_ok = 1;
    } else if (bench_base_probe(s) == 0) {
        s->base_name = "process_vm_readv/writev";
        s->base_ok = 1;
    }
}

/* print_header describes the run on stdout (table mode only). */
static void
print_header(const bench_session_t *s, const char *where)
{
    const bench_opts_t *o = s->o;
    const char *ops = o->num_ops == 2 ? "READ,WRITE" : bench_op_name(o->ops[0]);
    char a[32];
    char b[32];
    char dev[160];

    if (o->json || o->csv) {
        return;
    }
    if (o->storage) {
        printf("nxl-bench: backend %s, %s DRAM <-> FILE, %d file(s) of %s "
               "in %s%s\n",
               o->backend, ops, s->nfiles,
               bench_fmt_size(s->file_size, a, sizeof(a)), o->filepath,
               o->direct ? ", O_DIRECT" : ", buffered (page cache)");
    } else {
        printf("nxl-bench: backend %s, %s %s -> %s, %s pools, target %s "
               "(%s, pid %d)\n",
               o->backend, ops, s->lmem == NXL_VRAM ? "VRAM" : "DRAM",
               s->rmem == NXL_VRAM ? "VRAM" : "DRAM",
               o->shared ? "shared (memfd)" : "private", where,
               s->child > 0 ? "local child"
                            : (s->same_host ? "same host" : "remote host"),
               (int)s->rpid);
    }
    if (s->dk != NULL) {
        printf("nxl-bench: VRAM: %s\n",
               bench_vram_describe(s, dev, sizeof(dev)));
    }
    if (o->enable_pt || o->progress_threads > 0 || o->recreate_xfer ||
        o->reregister_mem) {
        printf("nxl-bench:%s%s%s%s\n",
               o->enable_pt ? " agent progress thread;" : "",
               o->progress_threads > 0 ? " backend num_threads set;" : "",
               o->recreate_xfer ? " a new transfer per request "
                                  "(--recreate_xfer);"
                                : "",
               o->reregister_mem ? " pool re-registered per block size "
                                   "(--reregister_mem);"
                                 : "");
    }
    if (o->desc_bench > 0 || o->lat_bench) {
        printf("nxl-bench: pool %s per side (LLC %s), %s data\n",
               bench_fmt_size(s->span, a, sizeof(a)),
               bench_fmt_size(bench_llc_size(), b, sizeof(b)),
               o->hot ? "hot (slices reused)" : "cold");
    } else {
        printf("nxl-bench: pool %s per side (LLC %s), %s, %zu thread(s), "
               "depth %zu, iter %zu (warmup %zu, /%zu above 1 MiB), %s "
               "data\n",
               bench_fmt_size(s->span, a, sizeof(a)),
               bench_fmt_size(bench_llc_size(), b, sizeof(b)),
               o->prepared ? "nxl_dlist_prep+nxl_xfer_make" : "nxl_xfer_create",
               o->num_threads, o->pipeline_depth, o->num_iter, o->warmup_iter,
               o->large_blk_iter_ftr, o->hot ? "hot (slices reused)" : "cold");
    }
    if (s->base_iperf && o->desc_bench > 0) {
        printf("nxl-bench: baseline: %s%s; and %s, one stream for %d s "
               "after each op, to the target's server at %s:%u\n",
               s->base_name, s->base_ok ? ", one thread, same slices" : "",
               s->iperf, o->smoke ? 1 : 2, s->rhost, s->iperf_port);
        return;
    }
    if (s->base_pp && o->lat_bench) {
        printf("nxl-bench: baseline: %s to the target's server at %s:%u "
               "(blocking send/recv, TCP_NODELAY, one connection, same "
               "size and slices)\n",
               s->base_name, s->rhost, s->pp_port);
        return;
    }
    if (s->base_pp) {
        printf("nxl-bench: PP columns (batch-1 rows up to %zu KiB): raw "
               "TCP ping-pong to the target's server at %s:%u (blocking "
               "send/recv, TCP_NODELAY, one connection, same size, depth "
               "and slices, one thread), run after each row\n",
               (size_t)BENCH_PP_MAX_BLOCK / KIB, s->rhost, s->pp_port);
    }
    if (s->base_iperf) {
        printf("nxl-bench: baseline: %s, one stream for %d s before each "
               "op's rows, to the target's server at %s:%u (-R for READ: "
               "the target sends)\n",
               s->iperf, o->smoke ? 1 : 2, s->rhost, s->iperf_port);
        return;
    }
    if (s->base_perftest) {
        printf("nxl-bench: baseline: %s (ucp_put_bw for WRITE, ucp_get "
               "for READ; same block size, messages = iter x batch; UCX "
               "allocates and reuses one buffer: compare with --hot)\n",
               s->perftest);
        return;
    }
    printf("nxl-bench: baseline: %s%s\n", s->base_name,
           s->base_ok ? ", one thread, same slices" : "");
    if (s->base_fio) {
        printf("nxl-bench: fio column: %s --ioengine=io_uring on the same "
               "files, same block size, iodepth = depth x batch, one job "
               "per thread, same byte count, run after each row; both "
               "sides' buffers on huge pages where the kernel allows\n",
               s->fio);
    }
}

/* session_common finishes the initiator's setup once the peer is known:
 * span, baseline, eviction buffer, header. */
static int
session_common(bench_session_t *s, const char *where)
{
    /* slices must exist on both sides */
    size_t local = s->lstride != 0 ? s->lstride : s->pool_size;

    s->span = s->rsize < local ? s->rsize : local;
    setup_baseline(s);
    s->evict_size = 4 * bench_llc_size();
    s->evict = bench_map(s->evict_size);
    if (s->evict == NULL) {
        bench_err("cannot allocate the %zu-byte eviction buffer",
                  s->evict_size);
        return -1;
    }
    memset(s->evict, 1, s->evict_size);
    print_header(s, where);
    return 0;
}

/* bench_session_open sets up the initiator and its target: a local child
 * or --target_host through the side channel, the paired rank of an etcd
 * group (grp), or the files of --backend POSIX. */
int
bench_session_open(bench_session_t *s, const bench_opts_t *o,
                   struct bench_group *grp)
{
    nxl_agent_config_t cfg;
    char ip[64];
    char where[320];
    uint16_t port = o->port;
    size_t pool_size = bench_pool_default(o);

    memset(s, 0, sizeof(*s));
    s->o = o;
    s->child = -1;
    s->pp_fd = -1;
    s->grp = grp;
    if (setup_kinds(s, 0) != 0) {
        return -1;
    }
    nxl_agent_config_init(&cfg);
    cfg.sync_mode = o->num_threads > 1 ? NXL_SYNC_RW : NXL_SYNC_NONE;
    cfg.progress_thread = o->enable_pt;
    if (o->storage) {
        if (agent_open(s, BENCH_INITIATOR_NAME, &cfg) != 0 ||
            pool_alloc(s, pool_size, 0) != 0 ||
            bench_storage_open(s, pool_size) != 0) {
            return -1;
        }
        return session_common(s, o->filepath);
    }
    if (grp != NULL) {
        char name[128];
        char peer[128];

        size_t j;

        bench_group_agent(o, grp->rank, name, sizeof(name));
        /* onetomany: a local region per target, so that a READ from
         * each lands (and is verified) in its own region */
        s->lstride = grp->npeers > 1 ? pool_size : 0;
        if (agent_open(s, name, &cfg) != 0 ||
            pool_alloc(s, pool_size * grp->npeers, o->shared) != 0) {
            return -1;
        }
        /* onetomany: every target, each with its own pool */
        for (j = 0; j < grp->npeers; j++) {
            bench_group_agent(o, grp->peers[j], peer, sizeof(peer));
            if (etcd_exchange(s, peer) != 0 || handshake(s, j) != 0) {
                return -1;
            }
            s->peers[j].rank = grp->peers[j];
        }
        for (j = 1; j < s->npeers; j++) {
            if (s->peers[j].rsize < s->peers[0].rsize) {
                s->peers[0].rsize = s->peers[j].rsize; /* common span */
            }
        }
        bench_peer_use(s, 0);
        if (s->npeers > 1) {
            snprintf(where, sizeof(where),
                     "ranks 1..%zu of %zu (onetomany: one request to each "
                     "per iteration, group '%s', etcd %s)",
                     s->npeers, grp->world, o->group, o->etcd_endpoints);
        } else {
            snprintf(where, sizeof(where),
                     "%s (rank %d of %zu, group '%s', etcd %s)", peer,
                     grp->peers[0], grp->world, o->group, o->etcd_endpoints);
        }
        return session_common(s, where);
    }
    if (o->target_host != NULL) {
        if (resolve(o->target_host, ip, sizeof(ip)) != 0) {
            return -1;
        }
    } else {
        snprintf(ip, sizeof(ip), "127.0.0.1");
        if (launch_target(s, pool_size, &port) != 0) {
            return -1;
        }
    }
    if (agent_open(s, BENCH_INITIATOR_NAME, &cfg) != 0 ||
        pool_alloc(s, pool_size, o->shared) != 0 ||
        exchange_md(s, ip, port) != 0 || handshake(s, 0) != 0) {
        return -1;
    }
    snprintf(s->rhost, sizeof(s->rhost), "%s", ip);
    snprintf(where, sizeof(where), "%s:%u", ip, port);
    return session_common(s, where);
}

/* bench_session_close ends the session (bounded) and frees everything. */
int
bench_session_close(bench_session_t *s)
{
    char ans[64];
    int rc = 0;

    bench_pp_close(s);
    if (s->agent != NULL && s->peer[0] != '\0' && !s->o->storage) {
        size_t j;
        size_t n = s->npeers > 1 ? s->npeers : 1;

        for (j = 0; j < n; j++) {
            if (s->npeers > 1) {
                bench_peer_use(s, j);
                s->peer_gone = 0;
            }
            if (bench_send(s, "NXLB done") != 0 ||
                bench_recv(s, "NXLB bye", ans, sizeof(ans), 5000) != 0) {
                rc = -1;
            }
        }
    }
    queue_clear(s);
    if (s->o->storage) {
        bench_storage_close(s);
    }
    pool_free(s);
    if (s->base_pool != NULL) {
        if (s->base_dev && s->base_mem == NXL_VRAM) {
            s->dk->free((int)s->ldev, s->base_pool, s->pool_size);
        } else {
            bench_unmap(s->base_pool, s->pool_size);
        }
        s->base_pool = NULL;
    }
    if (s->stage != NULL) {
        bench_unmap(s->stage, s->stage_size);
        s->stage = NULL;
    }
    if (s->evict != NULL) {
        bench_unmap(s->evict, s->evict_size);
        s->evict = NULL;
    }
    nxl_agent_destroy(s->agent);
    s->agent = NULL;
    if (reap_target(s, 10000) != 0) {
        rc = -1;
    }
    return rc;
}

/* bench_rdesc fills d with the descriptor of the peer's pool range. */
int
bench_rdesc(const bench_session_t *s, size_t roff, size_t len, nxl_desc_t *d)
{
    if (s->o->storage) {
        return bench_storage_desc(s, roff, len, d);
    }
    d->addr = s->rbase + roff;
    d->len = len;
    d->dev_id = s->rmem == NXL_VRAM ? s->peers[s->cur].rdev : 0;
    return 0;
}

/* bench_ldesc fills d with the descriptor of a local pool range. */
void
bench_ldesc(const bench_session_t *s, size_t loff, size_t len, nxl_desc_t *d)
{
    d->addr = (uint64_t)(uintptr_t)(s->pool + loff);
    d->len = len;
    d->dev_id = s->lmem == NXL_VRAM ? s->ldev : 0;
}
