/*
 * test_kv_remote.c - disaggregated serving end to end, across processes:
 * a forked "prefill" worker fills KV blocks and publishes its agent
 * metadata and its layout as Dynamo's v1 JSON (SerializedNixlBlockLayout);
 * the "decode" worker (the test process) loads both, pulls blocks with the
 * KV executor (NixlReadFlipped) over a network backend, and checks them
 * against the prefill worker's checksums. Then two decode TP ranks
 * (decode TP 2, prefill TP 1) each read their head slice of every prefill
 * region with nxl_kv_tp_read_slices, and the bytes are checked against the
 * Sequential pattern.
 *
 * The suite runs once per network backend (TCP, UCX where built).
 */
#include "harness.h"
#include "xt_io.h"
#include "xt_kv.h"

#include <nxl/nxl_kv.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define KR_WAIT_MS 60000
#define KR_BLOCKS 8
#define KR_N 5

static const char *const kr_params[] = {"TCP", "UCX", NULL};

/* kr_cfg: 2 layers, K/V, 16 tokens, inner elements, 2-byte dtype. */
static nxl_kv_layout_config_t
kr_cfg(size_t inner)
{
    nxl_kv_layout_config_t c = xt_kv_cfg(KR_BLOCKS);

    c.inner_dim = inner;
    return c;
}

/* kr_agent makes a KV agent with the suite's backend and a strict lock
 * (the context's poller and the caller share it). Skips cleanly when the
 * backend is not built. */
static nxl_status_t
kr_agent(const char *name, nxl_kv_agent_t **a_p)
{
    nxl_agent_config_t cfg;
    nxl_status_t st;

    nxl_agent_config_init(&cfg);
    cfg.sync_mode = NXL_SYNC_STRICT;
    st = nxl_kv_agent_create(name, &cfg, a_p);
    if (st != NXL_OK) {
        return st;
    }
    st = nxl_kv_agent_add_backend(*a_p, xt_param(), NULL);
    if (st != NXL_OK) {
        nxl_kv_agent_destroy(*a_p);
    }
    return st;
}

/* kr_prefill is the child: an agent "prefill" with a System FC layout of
 * inner 200, blocks filled Sequential; sends metadata, layout JSON (v1)
 * and the checksums of every block, then serves until the parent closes
 * its pipe. Exit status 0 on success. */
static int
kr_prefill(int out, int in)
{
    nxl_kv_layout_config_t c = kr_cfg(200);
    nxl_kv_checksum_t sums[KR_BLOCKS];
    size_t ids[KR_BLOCKS], i;
    nxl_kv_agent_t *a;
    nxl_kv_layout_t *l;
    nxl_kv_region_t r0;
    nxl_blob_t md, js;
    char byte;

    for (i = 0; i < KR_BLOCKS; i++) {
        ids[i] = i;
    }
    if (kr_agent("prefill", &a) != NXL_OK ||
        nxl_kv_layout_alloc(&c, NXL_KV_FULLY_CONTIGUOUS, 0,
                            (nxl_kv_loc_t){NXL_KV_SYSTEM, 0}, a,
                            &l) != NXL_OK ||
        nxl_kv_fill_blocks(l, ids, KR_BLOCKS, NXL_KV_FILL_SEQUENTIAL, 0) !=
            NXL_OK ||
        nxl_kv_checksum_blocks(l, ids, KR_BLOCKS, 0, 0, sums) != NXL_OK ||
        nxl_md_local(nxl_kv_agent_raw(a), &md) != NXL_OK ||
        nxl_kv_layout_to_json_v1(l, &js) != NXL_OK) {
        fprintf(stderr, "prefill: %s\n", nxl_last_error());
        return 1;
    }
    /* The parent READs what we filled, ordered through our pipe: make
     * that visible to ThreadSanitizer (harness.h). The key is the
     * registered region's start: a FullyContiguous layout_alloc has one
     * region, and its block 0 starts it (no base offset). */
    if (nxl_kv_layout_region(l, 0, 0, 0, &r0) == NXL_OK) {
        xt_tsan_release((const void *)(uintptr_t)r0.addr);
    }
    if (xt_send_blob(out, md.data, md.len) != 0 ||
        xt_send_blob(out, js.data, js.len) != 0 ||
        xt_write_all(out, sums, sizeof(sums)) != 0) {
        return 1;
    }
    nxl_blob_free(&md);
    nxl_blob_free(&js);
    /* Serve (the backend's threads answer READs) until the parent is
     * done. */
    while (read(in, &byte, 1) < 0 && errno == EINTR) {
    }
    nxl_kv_layout_destroy(l);
    nxl_kv_agent_destroy(a);
    return 0;
}

typedef struct kr_peer {
    pid_t pid;
    int to, from;
    char *md, *json;
    size_t md_len, json_len;
    nxl_kv_checksum_t sums[KR_BLOCKS];
} kr_peer;

/* kr_start forks the prefill worker and reads what it publishes. */
static int
kr_start(kr_peer *p)
{
    int up[2], down[2];

    memset(p, 0, sizeof(*p));
    if (pipe(up) != 0 || pipe(down) != 0) {
        return -1;
    }
    p->pid = fork();
    if (p->pid < 0) {
        return -1;
    }
    if (p->pid == 0) {
        close(up[0]);
        close(down[1]);
        _exit(kr_prefill(up[1], down[0]));
    }
    close(up[1]);
    close(down[0]);
    p->from = up[0];
    p->to = down[1];
    if (xt_recv_blob(p->from, &p->md, &p->md_len) != 0 ||
        xt_recv_blob(p->from, &p->json, &p->json_len) != 0 ||
        xt_read_all(p->from, p->sums, sizeof(p->sums)) != 0) {
        return -1;
    }
    return 0;
}

/* kr_stop lets the prefill worker exit and reaps it; returns its exit
 * status (0 = clean). */
static int
kr_stop(kr_peer *p)
{
    int status = 0;

    close(p->to);
    close(p->from);
    free(p->md);
    free(p->json);
    if (waitpid(p->pid, &status, 0) != p->pid) {
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* kr_setup: peer started, decode agent with the prefill metadata loaded and
 * the prefill layout parsed from its v1 JSON. Returns 0, XT_SKIP or 1. */
static int
kr_setup(kr_peer *p, nxl_kv_agent_t **a_p, nxl_kv_layout_t **remote_p)
{
    nxl_plugin_info_t info;
    char name[64];

    XT_SKIP_IF(nxl_plugin_info(xt_param(), &info) != NXL_OK,
               "%s backend not built", xt_param());
    if (kr_start(p) != 0) {
        XT_FAILF("prefill worker did not publish (see its stderr)");
    }
    XT_ASSERT_OK(kr_agent("decode", a_p));
    XT_ASSERT_OK(nxl_md_load(nxl_kv_agent_raw(*a_p), p->md, p->md_len, name,
                             sizeof(name)));
    XT_ASSERT_STR(name, "prefill");
    XT_ASSERT_OK(
        nxl_kv_layout_from_json_v1(p->json, p->json_len, "prefill", remote_p));
    XT_ASSERT_STR(nxl_kv_layout_agent(*remote_p), "prefill");
    return 0;
}

/* Whole blocks: the decode worker pulls 5 prefill blocks into other slots
 * of its own layout (layer-separate, so the descriptors differ on each
 * side) and compares checksums with the prefill worker's. */
static int
t_pull_blocks(void)
{
    nxl_kv_layout_config_t c = kr_cfg(200);
    const size_t src[KR_N] = {7, 0, 3, 4, 5}, dst[KR_N] = {0, 1, 2, 6, 7};
    nxl_kv_checksum_t got[KR_N];
    nxl_kv_layout_t *remote = NULL, *local;
    nxl_kv_agent_t *a = NULL;
    nxl_kv_notif_t *n;
    nxl_kv_ctx_t *ctx;
    kr_peer p;
    size_t i;
    int rc;

    rc = kr_setup(&p, &a, &remote);
    if (rc != 0) {
        return rc;
    }
    XT_ASSERT_OK(nxl_kv_layout_alloc(&c, NXL_KV_LAYER_SEPARATE, 0,
                                     (nxl_kv_loc_t){NXL_KV_SYSTEM, 0}, a,
                                     &local));
    XT_ASSERT_OK(nxl_kv_ctx_create(a, NULL, &ctx));
    XT_ASSERT_OK(nxl_kv_transfer(ctx, remote, src, local, dst, KR_N, NULL, &n));
    XT_ASSERT_OK(nxl_kv_notif_wait(n, KR_WAIT_MS));
    nxl_kv_notif_release(n);
    XT_ASSERT_OK(nxl_kv_checksum_blocks(local, dst, KR_N, 0, 0, got));
    for (i = 0; i < KR_N; i++) {
        if (strcmp(got[i].hex, p.sums[src[i]].hex) != 0) {
            XT_FAILF("block %zu -> %zu: checksum %s, prefill has %s", src[i],
                     dst[i], got[i].hex, p.sums[src[i]].hex);
        }
    }
    /* A block the prefill worker did not publish: out of its range. */
    {
        const size_t bad[1] = {KR_BLOCKS}, one[1] = {0};

        XT_ASSERT_STATUS(
            nxl_kv_transfer(ctx, remote, bad, local, one, 1, NULL, &n),
            NXL_ERR_INVALID_PARAM);
    }
    nxl_kv_ctx_destroy(ctx);
    nxl_kv_layout_destroy(local);
    nxl_kv_layout_destroy(remote);
    nxl_kv_agent_destroy(a);
    XT_ASSERT_EQ(kr_stop(&p), 0);
    return 0;
}

/* Heterogeneous TP: prefill TP 1 (inner 200), decode TP 2 (inner 100 per
 * rank; slices of 200 bytes, not a multiple of the pattern's 256-byte
 * period, so a misplaced slice shows). Each rank reads its head slice of the
 * prefill blocks; every byte is checked against the Sequential pattern of the
 * prefill region. */
static int
t_tp_slices(void)
{
    nxl_kv_layout_config_t c = kr_cfg(100);
    const size_t src[3] = {6, 2, 5}, dst[3] = {0, 1, 2};
    nxl_kv_layout_t *remote = NULL, *local[2];
    nxl_kv_agent_t *a = NULL;
    kr_peer p;
    unsigned r;
    int rc;

    rc = kr_setup(&p, &a, &remote);
    if (rc != 0) {
        return rc;
    }
    for (r = 0; r < 2; r++) {
        nxl_kv_dlists_t dl = {0};
        nxl_dlist_t ll, rl;
        nxl_xfer_t *x;
        nxl_status_t st;
        size_t i, l, o, t, j;

        XT_ASSERT_OK(nxl_kv_layout_alloc(&c, NXL_KV_FULLY_CONTIGUOUS, 0,
                                         (nxl_kv_loc_t){NXL_KV_SYSTEM, 0}, a,
                                         &local[r]));
        XT_ASSERT_OK(nxl_kv_tp_read_slices(local[r], dst, remote, src, 3, 1, 2,
                                           r, 0, &dl));
        /* NHD: a head slice is strided, one descriptor per token. */
        XT_ASSERT(dl.count >= 3 * 2 * 2 * 16 / 16);
        ll = (nxl_dlist_t){dl.dst_mem, dl.dst, dl.count};
        rl = (nxl_dlist_t){dl.src_mem, dl.src, dl.count};
        XT_ASSERT_OK(nxl_xfer_create(nxl_kv_agent_raw(a), NXL_READ, &ll, &rl,
                                     "prefill", NULL, &x));
        st = nxl_xfer_post(x, NULL);
        if (st == NXL_IN_PROG) {
            st = nxl_xfer_wait(x, KR_WAIT_MS);
        }
        XT_ASSERT_OK(st);
        nxl_xfer_release(x);
        nxl_kv_dlists_free(&dl);
        /* Region (dst[i], l, o), token t, byte j of the rank's 200-byte
         * row slice = prefill region (src[i], l, o) byte t*400 + r*200 +
         * j, which holds (src[i] + l + offset) mod 256. */
        for (i = 0; i < 3; i++) {
            for (l = 0; l < 2; l++) {
                for (o = 0; o < 2; o++) {
                    nxl_kv_region_t rg;
                    const uint8_t *b;

                    XT_ASSERT_OK(
                        nxl_kv_layout_region(local[r], dst[i], l, o, &rg));
                    b = (const uint8_t *)(uintptr_t)rg.addr;
                    for (t = 0; t < 16; t++) {
                        for (j = 0; j < 200; j++) {
                            size_t off = t * 400 + r * 200 + j;
                            uint8_t want = (uint8_t)(src[i] + l + off);

                            if (b[t * 200 + j] != want) {
                                XT_FAILF("rank %u block %zu layer %zu outer "
                                         "%zu token %zu byte %zu: %u, want "
                                         "%u",
                                         r, dst[i], l, o, t, j, b[t * 200 + j],
                                         want);
                            }
                        }
                    }
                }
            }
        }
    }
    nxl_kv_layout_destroy(local[0]);
    nxl_kv_layout_destroy(local[1]);
    nxl_kv_layout_destroy(remote);
    nxl_kv_agent_destroy(a);
    XT_ASSERT_EQ(kr_stop(&p), 0);
    return 0;
}

/* The prefill worker dies: the next pull fails with REMOTE_DISCONNECT (or
 * another error), never hangs. */
static int
t_prefill_dies(void)
{
    nxl_kv_layout_config_t c = kr_cfg(200);
    const size_t src[2] = {0, 1}, dst[2] = {0, 1};
    nxl_kv_layout_t *remote = NULL, *local;
    nxl_kv_agent_t *a = NULL;
    nxl_kv_notif_t *n;
    nxl_kv_ctx_t *ctx;
    nxl_status_t st;
    kr_peer p;
    int rc, status;

    rc = kr_setup(&p, &a, &remote);
    if (rc != 0) {
        return rc;
    }
    XT_ASSERT_OK(nxl_kv_layout_alloc(&c, NXL_KV_FULLY_CONTIGUOUS, 0,
                                     (nxl_kv_loc_t){NXL_KV_SYSTEM, 0}, a,
                                     &local));
    XT_ASSERT_OK(nxl_kv_ctx_create(a, NULL, &ctx));
    kill(p.pid, SIGKILL);
    waitpid(p.pid, &status, 0);
    st = nxl_kv_transfer(ctx, remote, src, local, dst, 2, NULL, &n);
    if (st == NXL_OK) {
        st = nxl_kv_notif_wait(n, KR_WAIT_MS);
        XT_ASSERT(st != NXL_ERR_TIMEOUT);
        nxl_kv_notif_release(n);
    }
    XT_ASSERT(st < 0);
    printf("  after SIGKILL: %s (%s)\n", nxl_status_name(st), nxl_last_error());
    nxl_kv_ctx_destroy(ctx);
    nxl_kv_layout_destroy(local);
    nxl_kv_layout_destroy(remote);
    nxl_kv_agent_destroy(a);
    close(p.to);
    close(p.from);
    free(p.md);
    free(p.json);
    return 0;
}

const xt_suite xt_suite_kv_remote = {
    .name = "kv_remote",
    .cases =
        (const xt_case[]){
            {"pull_blocks", t_pull_blocks},
            {"tp_slices", t_tp_slices},
            {"prefill_dies", t_prefill_dies},
            {NULL, NULL},
        },
    .timeout_s = 120,
    .params = kr_params,
};
