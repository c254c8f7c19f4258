/*
 * test_connect_xfer.c - the tensor connector across two processes: a
 * forked peer holds the passive side (readable or writable, waiting with
 * nxl_connect_op_wait), the test process the active side (read or write),
 * the RdmaMetadata JSON travels over a pipe as it would over a request
 * plane. Bytes are checked on the receiving side; a peer killed in the
 * middle of a READ must fail the reader within 2 s.
 *
 * The suite runs once per backend that moves data between processes of
 * one host: SHM (skips where cross-process memory access is not
 * permitted) and TCP on 127.0.0.1.
 */
#include "harness.h"
#include "xt_fakedev.h"
#include "xt_io.h"
#include "xt_xfer.h"

#include <nxl/nxl_connect.h>
#include <nxl/nxl_memkind.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const xx_params[] = {"SHM", "TCP", NULL};

#define XX_WAIT_MS 20000

/* ---- helpers ------------------------------------------------------------- */

/* xx_agent makes an agent with the suite's backend (TCP on 127.0.0.1). */
static nxl_status_t
xx_agent(const char *name, nxl_agent_t **a_p)
{
    nxl_param_t lo[] = {{"bind_addr", "127.0.0.1"}};
    nxl_params_t tcp = {lo, 1};
    nxl_agent_config_t cfg;
    nxl_agent_t *a;
    nxl_status_t st;

    nxl_agent_config_init(&cfg);
    cfg.sync_mode = NXL_SYNC_STRICT;
    st = nxl_agent_create(name, &cfg, &a);
    if (st != NXL_OK) {
        return st;
    }
    st = nxl_backend_create(a, xt_param(),
                            strcmp(xt_param(), "TCP") == 0 ? &tcp : NULL, NULL);
    if (st != NXL_OK) {
        nxl_agent_destroy(a);
        return st;
    }
    *a_p = a;
    return NXL_OK;
}

/* The peer's descriptor sizes (a few odd ones). */
#define XX_N 3
static const size_t xx_sizes[XX_N] = {1u << 20, 4096, 123};

/* What the peer does. */
enum {
    XX_READABLE = 1,
    XX_WRITABLE = 2,
    XX_BIG_READABLE = 3,
    XX_CUDA_READABLE = 4 /* one descriptor of device memory, "cuda:0" */
};

#define XX_CUDA_SIZE ((size_t)1 << 20)

/* xx_device installs the device kind: CUDA where it probes OK, else the
 * fake device of the tests (host memory shared through a memfd). Call it
 * before the agent's backends are made. */
static const nxl_memkind_ops_t *
xx_device(void)
{
    const nxl_memkind_ops_t *cu = nxl_memkind_cuda();

    if (cu->probe() == NXL_OK) {
        nxl_memkind_set_device(NULL);
        return cu;
    }
    xt_fakedev_install();
    return xt_fakedev_ops();
}

#define XX_BIG ((size_t)256 << 20)

/* Peer results (int32 over the pipe). */
enum { XX_RES_OK = 0, XX_RES_BYTES = 1000, XX_RES_SETUP = 1001 };

/* xx_peer is the child: it makes the passive operation, publishes its
 * metadata (hex for the writable: the legacy form), waits for it and
 * reports. */
static int
xx_peer(int mode, int up, int down)
{
    uint8_t *buf[XX_N];
    nxl_connect_desc_t d[XX_N];
    nxl_connector_t *c;
    nxl_connect_op_t *op;
    nxl_agent_t *a;
    nxl_blob_t js;
    nxl_status_t st;
    int32_t res = XX_RES_SETUP;
    size_t n = mode == XX_BIG_READABLE ? 1 : XX_N, i;
    char byte;

    if (mode == XX_CUDA_READABLE) {
        const nxl_memkind_ops_t *dk = xx_device();
        uint8_t *host = malloc(XX_CUDA_SIZE);
        void *dev = NULL;

        n = 0;
        if (host == NULL || xx_agent("peer", &a) != NXL_OK ||
            nxl_connector_create(a, &c) != NXL_OK ||
            dk->alloc(0, XX_CUDA_SIZE, &dev) != NXL_OK) {
            fprintf(stderr, "peer: %s\n", nxl_last_error());
            return 1;
        }
        xt_fill(host, XX_CUDA_SIZE, 7);
        if (dk->copy(dev, host, XX_CUDA_SIZE, NXL_COPY_H2D) != NXL_OK) {
            return 1;
        }
        free(host);
        d[0] = (nxl_connect_desc_t){(uintptr_t)dev, XX_CUDA_SIZE,
                                    NXL_CONNECT_DEVICE_CUDA, 0};
        st = nxl_connect_readable_create(c, d, 1, &op);
        goto publish;
    }
    if (xx_agent("peer", &a) != NXL_OK ||
        nxl_connector_create(a, &c) != NXL_OK) {
        fprintf(stderr, "peer: %s\n", nxl_last_error());
        return 1;
    }
    for (i = 0; i < n; i++) {
        size_t sz = mode == XX_BIG_READABLE ? XX_BIG : xx_sizes[i];

        buf[i] = calloc(1, sz);
        if (buf[i] == NULL) {
            return 1;
        }
        if (mode != XX_WRITABLE) {
            xt_fill(buf[i], sz, (uint32_t)i + 1);
        }
        d[i] = (nxl_connect_desc_t){(uintptr_t)buf[i], sz,
                                    NXL_CONNECT_DEVICE_HOST, 0};
    }
    st = mode == XX_WRITABLE ? nxl_connect_writable_create(c, d, n, &op)
                             : nxl_connect_readable_create(c, d, n, &op);
publish:
    if (st != NXL_OK ||
        nxl_connect_op_metadata(op, mode == XX_WRITABLE, &js) != NXL_OK) {
        fprintf(stderr, "peer: %s\n", nxl_last_error());
        return 1;
    }
    if (xt_send_blob(up, js.data, js.len) != 0) {
        return 1;
    }
    nxl_blob_free(&js);
    st = nxl_connect_op_wait(op, XX_WAIT_MS);
    res = (int32_t)st;
    if (st == NXL_OK && mode == XX_WRITABLE) {
        for (i = 0; i < n; i++) {
            if (!xt_check(buf[i], xx_sizes[i], (uint32_t)i + 10)) {
                res = XX_RES_BYTES;
            }
        }
    }
    if (xt_io_all(up, &res, sizeof(res), true) != 0) {
        return 1;
    }
    /* Stay until the test process is done with our memory. */
    while (read(down, &byte, 1) < 0 && errno == EINTR) {
    }
    nxl_connect_op_release(op);
    nxl_connector_destroy(c);
    nxl_agent_destroy(a);
    for (i = 0; i < n; i++) {
        free(buf[i]);
    }
    return 0;
}

typedef struct xx_child {
    pid_t pid;
    int up, down;
    char *json;
    size_t len;
} xx_child;

/* xx_start forks a peer in mode and reads its metadata. */
static int
xx_start(xx_child *ch, int mode)
{
    int up[2], down[2];

    memset(ch, 0, sizeof(*ch));
    if (pipe(up) != 0 || pipe(down) != 0) {
        return -1;
    }
    ch->pid = fork();
    if (ch->pid < 0) {
        return -1;
    }
    if (ch->pid == 0) {
        close(up[0]);
        close(down[1]);
        _exit(xx_peer(mode, up[1], down[0]));
    }
    close(up[1]);
    close(down[0]);
    ch->up = up[0];
    ch->down = down[1];
    return xt_recv_blob(ch->up, &ch->json, &ch->len);
}

/* xx_result reads the peer's result (-1 if it died). */
static int32_t
xx_result(xx_child *ch)
{
    int32_t res;

    if (xt_io_all(ch->up, &res, sizeof(res), false) != 0) {
        return -1;
    }
    return res;
}

/* xx_finish lets the peer go and reaps it; its exit status. */
static int
xx_finish(xx_child *ch)
{
    int ws = 0;

    close(ch->down);
    close(ch->up);
    free(ch->json);
    while (waitpid(ch->pid, &ws, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

/* xx_skip_cma says whether st means cross-process access is not allowed
 * here (SHM only). */
static bool
xx_skip_cma(nxl_status_t st)
{
    return strcmp(xt_param(), "SHM") == 0 &&
           (st == NXL_ERR_NOT_ALLOWED || st == NXL_ERR_NOT_SUPPORTED);
}

/* ---- cases --------------------------------------------------------------- */

/* A readable in the peer, a read here: bytes arrive, the peer's operation
 * completes on its key. */
static int
t_read(void)
{
    uint8_t *dst[XX_N];
    nxl_connect_desc_t d[XX_N];
    nxl_connect_op_t *op;
    nxl_connector_t *c;
    nxl_agent_t *a;
    nxl_status_t st;
    xx_child ch;
    size_t i;

    XT_ASSERT_EQ(xx_start(&ch, XX_READABLE), 0);
    XT_ASSERT(strstr(ch.json, "\"nixl_metadata\":\"b64:") != NULL);
    XT_ASSERT_OK(xx_agent("reader", &a));
    XT_ASSERT_OK(nxl_connector_create(a, &c));
    for (i = 0; i < XX_N; i++) {
        dst[i] = calloc(1, xx_sizes[i]);
        XT_ASSERT(dst[i] != NULL);
        d[i] = (nxl_connect_desc_t){(uintptr_t)dst[i], xx_sizes[i],
                                    NXL_CONNECT_DEVICE_HOST, 0};
    }
    XT_ASSERT_OK(nxl_connect_read_begin(c, d, XX_N, ch.json, ch.len, &op));
    st = nxl_connect_op_wait(op, XX_WAIT_MS);
    XT_SKIP_IF(xx_skip_cma(st), "cross-process access refused: %s",
               nxl_last_error());
    XT_ASSERT_OK(st);
    for (i = 0; i < XX_N; i++) {
        XT_ASSERT(xt_check(dst[i], xx_sizes[i], (uint32_t)i + 1));
    }
    XT_ASSERT_EQ(xx_result(&ch), XX_RES_OK);
    nxl_connect_op_release(op);
    XT_ASSERT_EQ(xx_finish(&ch), 0);
    nxl_connector_destroy(c);
    nxl_agent_destroy(a);
    for (i = 0; i < XX_N; i++) {
        free(dst[i]);
    }
    return 0;
}

/* A writable in the peer (legacy hex metadata), a write here: the peer
 * checks the bytes once its key arrived. */
static int
t_write(void)
{
    uint8_t *src[XX_N];
    nxl_connect_desc_t d[XX_N];
    nxl_connect_op_t *op;
    nxl_connector_t *c;
    nxl_agent_t *a;
    nxl_status_t st;
    xx_child ch;
    size_t i;

    XT_ASSERT_EQ(xx_start(&ch, XX_WRITABLE), 0);
    XT_ASSERT(strstr(ch.json, "\"nixl_metadata\":\"b64:") == NULL);
    XT_ASSERT_OK(xx_agent("writer", &a));
    XT_ASSERT_OK(nxl_connector_create(a, &c));
    for (i = 0; i < XX_N; i++) {
        src[i] = malloc(xx_sizes[i]);
        XT_ASSERT(src[i] != NULL);
        xt_fill(src[i], xx_sizes[i], (uint32_t)i + 10);
        d[i] = (nxl_connect_desc_t){(uintptr_t)src[i], xx_sizes[i],
                                    NXL_CONNECT_DEVICE_HOST, 0};
    }
    XT_ASSERT_OK(nxl_connect_write_begin(c, d, XX_N, ch.json, ch.len, &op));
    st = nxl_connect_op_wait(op, XX_WAIT_MS);
    XT_SKIP_IF(xx_skip_cma(st), "cross-process access refused: %s",
               nxl_last_error());
    XT_ASSERT_OK(st);
    XT_ASSERT_EQ(xx_result(&ch), XX_RES_OK);
    nxl_connect_op_release(op);
    XT_ASSERT_EQ(xx_finish(&ch), 0);
    nxl_connector_destroy(c);
    nxl_agent_destroy(a);
    for (i = 0; i < XX_N; i++) {
        free(src[i]);
    }
    return 0;
}

/* The peer (the sender of a READ) is killed while the read is in flight:
 * the reader's operation ends ERRORED within 2 s. TCP: the peer is
 * stopped, the read posted (its request sits unanswered), then the peer
 * is killed. SHM copies synchronously inside the post, so there the peer
 * is killed before the lazy post. */
static int
t_sender_killed(void)
{
    nxl_connect_desc_t d;
    nxl_connect_op_info_t info;
    nxl_connect_state_t s;
    nxl_connect_op_t *op;
    nxl_connector_t *c;
    nxl_agent_t *a;
    nxl_status_t st;
    uint64_t t0, took;
    uint8_t *dst;
    xx_child ch;
    bool tcp = strcmp(xt_param(), "TCP") == 0;
    int ws;

    XT_ASSERT_EQ(xx_start(&ch, XX_BIG_READABLE), 0);
    XT_ASSERT_OK(xx_agent("reader", &a));
    XT_ASSERT_OK(nxl_connector_create(a, &c));
    dst = malloc(XX_BIG);
    XT_ASSERT(dst != NULL);
    d = (nxl_connect_desc_t){(uintptr_t)dst, XX_BIG, NXL_CONNECT_DEVICE_HOST,
                             0};
    XT_ASSERT_OK(nxl_connect_read_begin(c, &d, 1, ch.json, ch.len, &op));
    if (tcp) {
        XT_ASSERT_EQ(xt_stop_process(ch.pid), 0);
        XT_ASSERT_OK(nxl_connect_op_status(op, &s)); /* posts */
        XT_ASSERT_EQ(s, NXL_CONNECT_INITIALIZED);
        usleep(100 * 1000);
        XT_ASSERT_OK(nxl_connect_op_status(op, &s));
        XT_ASSERT_EQ(s, NXL_CONNECT_IN_PROGRESS);
    }
    t0 = xt_now_ms();
    kill(ch.pid, SIGKILL);
    while (waitpid(ch.pid, &ws, 0) < 0 && errno == EINTR) {
    }
    st = nxl_connect_op_wait(op, 5000);
    took = xt_now_ms() - t0;
    XT_SKIP_IF(xx_skip_cma(st), "cross-process access refused: %s",
               nxl_last_error());
    printf("  reader failed after %llu ms: %s (%s)\n", (unsigned long long)took,
           nxl_status_name(st), nxl_last_error());
    XT_ASSERT(st < 0 && st != NXL_ERR_TIMEOUT);
    XT_ASSERT(took < 2000);
    XT_ASSERT_OK(nxl_connect_op_info(op, &info));
    XT_ASSERT_EQ(info.state, NXL_CONNECT_ERRORED);
    XT_ASSERT_EQ(info.error, st);
    XT_ASSERT_EQ(nxl_connect_op_cancel(op), NXL_ERR_NOT_ALLOWED);
    nxl_connect_op_release(op);
    close(ch.down);
    close(ch.up);
    free(ch.json);
    nxl_connector_destroy(c);
    nxl_agent_destroy(a);
    free(dst);
    return 0;
}

/* A readable over device memory ("cuda:0": CUDA where a GPU is, else the
 * fake device kind) read into host memory here, through SHM's device
 * path (IPC handles). */
static int
t_cuda_read(void)
{
    nxl_connect_desc_t d;
    nxl_connect_op_t *op;
    nxl_connector_t *c;
    nxl_agent_t *a;
    nxl_status_t st;
    uint8_t *dst;
    xx_child ch;

    XT_SKIP_IF(strcmp(xt_param(), "SHM") != 0, "%s serves host memory only",
               xt_param());
    XT_ASSERT_EQ(xx_start(&ch, XX_CUDA_READABLE), 0);
    XT_ASSERT(strstr(ch.json, "{\"device\":\"cuda:0\",\"ptr\":") != NULL);
    (void)xx_device();
    XT_ASSERT_OK(xx_agent("reader", &a));
    XT_ASSERT_OK(nxl_connector_create(a, &c));
    dst = calloc(1, XX_CUDA_SIZE);
    XT_ASSERT(dst != NULL);
    d = (nxl_connect_desc_t){(uintptr_t)dst, XX_CUDA_SIZE,
                             NXL_CONNECT_DEVICE_HOST, 0};
    XT_ASSERT_OK(nxl_connect_read_begin(c, &d, 1, ch.json, ch.len, &op));
    st = nxl_connect_op_wait(op, XX_WAIT_MS);
    XT_SKIP_IF(xx_skip_cma(st), "cross-process access refused: %s",
               nxl_last_error());
    XT_ASSERT_OK(st);
    XT_ASSERT(xt_check(dst, XX_CUDA_SIZE, 7));
    XT_ASSERT_EQ(xx_result(&ch), XX_RES_OK);
    nxl_connect_op_release(op);
    XT_ASSERT_EQ(xx_finish(&ch), 0);
    nxl_connector_destroy(c);
    nxl_agent_destroy(a);
    free(dst);
    return 0;
}

const xt_suite xt_suite_connect_xfer = {
    .name = "connect_xfer",
    .timeout_s = 60,
    .params = xx_params,
    .cases =
        (const xt_case[]){
            {"read", t_read},
            {"write", t_write},
            {"sender_killed", t_sender_killed},
            {"cuda_read", t_cuda_read},
            {NULL, NULL},
        },
};
