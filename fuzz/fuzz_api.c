/*
 * fuzz_api.c - libFuzzer target for the public agent API (nxl.h): the input
 * is decoded into a sequence of up to 64 calls on two in-process agents,
 * "A" and "B" (SHM and/or TCP, POSIX on A), created and destroyed for each
 * input so that a finding reproduces from its input alone; or, with
 * FUZZ_API_KEEP=1, kept across inputs (below).
 *
 * The first two bytes pick the backends and their parameters; then each
 * operation takes an opcode byte and its arguments from the input:
 * registering and deregistering descriptors over fixed arenas the target
 * owns (with offsets, lengths and device ids from the input: zero, huge,
 * wrapping, overlapping, outside every arena, NULL lists with counts,
 * counts whose bytes overflow, bad memory kinds), md_local/_partial, loading
 * the other agent's metadata (pristine, truncated, bit-flipped, or
 * re-encoded with changed names, conn info and regions), invalidate, check,
 * prepared lists, xfer_make with index arrays from the input, xfer_create,
 * post/status/wait/release, notifications, queries, backend_create with
 * parameters from the input, scratch agents, shared allocations and the
 * side channel (127.0.0.1 only).
 *
 * What is checked, besides ASan/UBSan:
 *   - every status is a known value; a negative one leaves a message;
 *   - outputs are written only on success (sentinels);
 *   - the library never accepts a transfer over memory that is not
 *     registered: the target keeps its own model of every agent's
 *     registrations, and when xfer_make/xfer_create/xfer_post accept a
 *     descriptor that no registration (of the agent that owns the memory)
 *     covers, it aborts. Transfers are only posted over memory the target
 *     really owns (arenas), never over registered-but-absent memory, and
 *     never with local and remote bytes overlapping;
 *   - registrations that break the documented rules (zero length, address
 *     0, wrap, overlap) are refused; deregistration matches the model; a
 *     refused registration leaves nothing behind (checked at the end of
 *     each input by comparing md_local with the conn-info-only metadata).
 *
 * Network: TCP backends always bind 127.0.0.1 on ephemeral ports; metadata
 * whose TCP conn info is not byte-identical to a live agent's and still
 * decodes is never loaded (it could name another address); the side
 * channel is only called on 127.0.0.1. UCX is left out: creating a UCX
 * context per input takes tens of milliseconds.
 *
 * Environment (to keep fuzzing past a known finding):
 *   FUZZ_API_SKIP bit 0: never deregister memory under a live prepared
 *                        list or transfer (nor use one whose memory was);
 *                 bit 1: no opts with num_backends whose bytes overflow;
 *                 bit 2: no params with counts whose bytes overflow;
 *                 bit 3: do not require a message on failure;
 *                 bit 4: no metadata with empty conn info;
 *                 bit 5: accept INVALID_PARAM from md_load of a peer's
 *                        malformed metadata (documented: PROTO);
 *                 bit 6: finish transfers to a peer before it is
 *                        invalidated.
 *   FUZZ_API_LAX_REMOTE=1: tolerate a transfer to a peer that moves data
 *                 over a region the peer registered earlier and has since
 *                 deregistered (stale metadata). By default that aborts:
 *                 docs/design.md says deregistration is effective for every
 *                 backend (TCP's target check, SHM's registration table).
 *   FUZZ_API_TRACE=1: print every operation (to replay a finding).
 *   FUZZ_API_KEEP=1: keep the agents across inputs, ~2.3x more inputs a
 *                 second. The header's low four bits then pick one of
 *                 NKEEP fixed configurations (keep_cfg) whose two agents
 *                 are created on first use and reused; after each input
 *                 the model's teardown (every registration deregistered,
 *                 metadata back to conn info only) is followed by
 *                 invalidating every peer name the input could have
 *                 loaded, checked with md_check, and draining
 *                 notifications. An input that added a backend to a live
 *                 agent retires its pair. This also fuzzes what a
 *                 long-lived agent carries from one round of work to the
 *                 next (connections, late replies of released transfers,
 *                 reloaded peers). A finding is first replayed without
 *                 FUZZ_API_KEEP; if it needs the history, the run's log
 *                 with FUZZ_API_TRACE=1 around it is the reproducer.
 */
#include "backends/tcp/tcp.h"
#include "md/md.h"

#include <nxl/nxl.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_api: %s:%d: %s: ", __FILE__, __LINE__,       \
                    #cond);                                                    \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, " (last error: \"%s\")\n", nxl_last_error());      \
            abort();                                                           \
        }                                                                      \
    } while (0)

#define MAX_OPS 64
#define MAX_REGS 32
#define MAX_DESCS 6
#define MAX_PREPS 6
#define MAX_XFERS 6
#define MAX_PEERS 4
#define MAX_HIST 64
#define MAX_NOTIF 64
#define MAX_LOADED 8
#define NKEEP 16
#define WAIT_BUDGET_MS 200
#define ARENA_LEN 65536u
#define BIG_LEN (2u << 20) /* the mmap arena: room for split SHM copies */
#define PAGE 4096u

/* The memory the target owns: heap (ASan redzones around it), an mmap
 * with PROT_NONE guard pages, a shared (memfd) allocation, and a reserved
 * PROT_NONE range that is never real memory. FILE descriptors use memfd. */
enum { AR_HEAP, AR_MMAP, AR_SHARED, AR_VOID, NARENA };
static uint8_t *arena[NARENA];
static const uint64_t arena_len[NARENA] = {ARENA_LEN, BIG_LEN, ARENA_LEN,
                                           ARENA_LEN};
static int file_fd = -1;

/* Backend types the model knows. */
enum { BT_SHM, BT_TCP, BT_POSIX, NBT };
static const char *const bt_name[NBT] = {"SHM", "TCP", "POSIX"};

static unsigned skip_bits;
static int strict_remote;
static int trace;
static int keep;

/* --- the input ------------------------------------------------------------ */

typedef struct {
    const uint8_t *p;
    size_t n, i;
} rd_t;

static uint8_t
u8(rd_t *r)
{
    return r->i < r->n ? r->p[r->i++] : 0;
}

static uint16_t
u16(rd_t *r)
{
    uint16_t v = u8(r);

    return (uint16_t)(v | (uint16_t)u8(r) << 8);
}

static uint32_t
u32(rd_t *r)
{
    uint32_t v = u16(r);

    return v | (uint32_t)u16(r) << 16;
}

static uint64_t
u64(rd_t *r)
{
    uint64_t v = u32(r);

    return v | (uint64_t)u32(r) << 32;
}

static void
tr(const char *fmt, ...)
{
    va_list ap;

    if (!trace) {
        return;
    }
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* --- statuses and messages -------------------------------------------------
 */

/* call_begin empties the last error so that a failure without a message
 * shows; call_end checks the status is known and a failure left text. */
static void
call_begin(void)
{
    nxl__clear_error();
}

static nxl_status_t
call_end(nxl_status_t st, const char *what, int line)
{
    CHECK(st >= NXL_ERR_PROTO && st <= NXL_IN_PROG, "%s (line %d) -> %d", what,
          line, (int)st);
    if (st < 0 && !(skip_bits & 8)) {
        CHECK(nxl_last_error()[0] != '\0',
              "%s (line %d) -> %s without a message", what, line,
              nxl_status_name(st));
    }
    tr("  %s -> %s %s", what, nxl_status_name(st),
       st < 0 ? nxl_last_error() : "");
    return st;
}

#define CALL(expr) (call_begin(), call_end((expr), #expr, __LINE__))

/* --- the model ---------------------------------------------------------------
 */

typedef struct {
    int kind;
    nxl_desc_t d;
} reg_t;

/* A peer an agent loaded: its name and which live agent each backend's
 * conn info came from (-1: none loaded, -2: not a live agent's). */
typedef struct {
    char name[NXL__MD_NAME_MAX + 1];
    int src[NBT];
} peer_t;

typedef struct {
    nxl_agent_t *a;
    char name[8];
    nxl_backend_t *be[NBT];
    nxl_blob_t conn[NBT]; /* its conn info, per backend type */
    reg_t regs[MAX_REGS];
    int nregs;
    reg_t hist[MAX_HIST]; /* every registration of this input: what stale
                           * metadata of this agent may still name */
    int nhist;
    int hist_all; /* hist overflowed: anything may be stale */
    peer_t peers[MAX_PEERS];
    int npeers;
    uint16_t sc_port;
    /* Every name this input loaded successfully (FUZZ_API_KEEP: what the
     * reset invalidates); nloaded > MAX_LOADED retires the pair. */
    char loaded[MAX_LOADED][NXL__MD_NAME_MAX + 1];
    int nloaded;
} ag_t;

typedef struct {
    nxl_prepped_t *h;
    int owner;
    int remote; /* prepared with a non-empty agent name */
    char peer[300];
    int kind;
    nxl_desc_t d[MAX_DESCS];
    size_t n;
    int tainted; /* memory under it was deregistered (skip bit 0) */
} prep_t;

typedef struct {
    nxl_xfer_t *h;
    int owner;
    char peer[300];
    int lkind, rkind;
    nxl_desc_t l[MAX_DESCS], r[MAX_DESCS];
    size_t n;
    int tainted;
    int pending; /* verdict of a post that returned NXL_IN_PROG, or -1 */
} xf_t;

typedef struct {
    nxl_blob_t b;
    int src; /* agent whose metadata it is */
} blob_t;

static ag_t ag[2];
static prep_t preps[MAX_PREPS];
static xf_t xfs[MAX_XFERS];
static blob_t blobs[4];
static int wait_left_ms;

static int
real_arena(uint64_t addr, uint64_t len)
{
    int k;

    for (k = 0; k < AR_VOID; k++) {
        uint64_t base = (uint64_t)(uintptr_t)arena[k];

        if (addr >= base && len <= arena_len[k] &&
            addr - base <= arena_len[k] - len) {
            return 1;
        }
    }
    return 0;
}

/* is_real: the descriptor's bytes exist and belong to the target. */
static int
is_real(int kind, const nxl_desc_t *d)
{
    if (d->len == 0 || d->addr + d->len < d->addr) {
        return 0;
    }
    if (kind == NXL_FILE) {
        return d->dev_id == (uint64_t)file_fd && d->addr <= ARENA_LEN &&
               d->len <= ARENA_LEN - d->addr;
    }
    if (kind == NXL_DRAM) {
        return real_arena(d->addr, d->len);
    }
    return 0;
}

/* covered_by: every byte of d lies in some region of regs (kind, dev). */
static int
covered_by(const reg_t *regs, int n, int kind, const nxl_desc_t *d)
{
    uint64_t at = d->addr, end = d->addr + d->len;
    int i, progress = 1;

    if (d->len == 0 || end < d->addr) {
        return 0;
    }
    while (at < end && progress) {
        progress = 0;
        for (i = 0; i < n; i++) {
            const nxl_desc_t *r = &regs[i].d;

            if (regs[i].kind == kind && r->dev_id == d->dev_id &&
                at >= r->addr && at - r->addr < r->len) {
                at = (r->addr + r->len > end || r->addr + r->len < r->addr)
                         ? end
                         : r->addr + r->len;
                progress = 1;
            }
        }
    }
    return at >= end;
}

static int
overlaps(const nxl_desc_t *x, const nxl_desc_t *y)
{
    return x->dev_id == y->dev_id && x->addr < y->addr + y->len &&
           y->addr < x->addr + x->len;
}

static peer_t *
peer_get(ag_t *g, const char *name)
{
    int i;

    for (i = 0; i < g->npeers; i++) {
        if (strcmp(g->peers[i].name, name) == 0) {
            return &g->peers[i];
        }
    }
    return NULL;
}

static int
bt_of(const char *name)
{
    int t;

    for (t = 0; name != NULL && t < NBT; t++) {
        if (strcasecmp(name, bt_name[t]) == 0) {
            return t;
        }
    }
    return -1;
}

/* refresh_conn re-reads an agent's conn info per backend from its own
 * conn-only metadata (after a backend is added). */
static void
refresh_conn(ag_t *g)
{
    nxl_blob_t b = {0};
    nxl__md_t *md = NULL;
    size_t i;
    int t;

    CHECK(nxl_md_local_partial(g->a, NULL, NULL, &b) == NXL_OK, "conn info");
    CHECK(nxl__md_decode(b.data, b.len, &md) == NXL_OK, "own metadata");
    for (t = 0; t < NBT; t++) {
        nxl_blob_free(&g->conn[t]);
    }
    for (i = 0; i < md->nconns; i++) {
        t = bt_of(md->conns[i].backend);
        if (t >= 0 && md->conns[i].len > 0) {
            g->conn[t].data = malloc(md->conns[i].len);
            memcpy(g->conn[t].data, md->conns[i].info, md->conns[i].len);
            g->conn[t].len = md->conns[i].len;
        }
    }
    nxl__md_free(md);
    nxl_blob_free(&b);
}

/* conn_source tells which live agent conn info (backend type t) came
 * from: 0/1, or -2. */
static int
conn_source(int t, const uint8_t *info, size_t len)
{
    int k;

    for (k = 0; k < 2; k++) {
        if (ag[k].a != NULL && ag[k].conn[t].len == len && len > 0 &&
            memcmp(ag[k].conn[t].data, info, len) == 0) {
            return k;
        }
    }
    return -2;
}

/* tcp_safe: conn info the TCP backend would connect to is a live agent's
 * (127.0.0.1) or does not decode at all. */
static int
tcp_safe(const uint8_t *info, size_t len)
{
    be_tcp_conninfo_t ci;
    const char *why = NULL;

    return conn_source(BT_TCP, info, len) >= 0 ||
           !be_tcp_conninfo_decode(info, len, &ci, &why);
}

/* --- descriptors from the input ------------------------------------------- */

static const uint64_t specials[][2] = {
    {0, 0},
    {0, 4096},
    {1, 1},
    {UINT64_MAX, 1},
    {UINT64_MAX - 4095, 4096},
    {UINT64_MAX - 4095, 4097},
    {4096, UINT64_MAX},
    {0x8000000000000000ull, 0x8000000000000000ull},
    {0x10000, 0},
};

static nxl_desc_t
gen_desc(rd_t *r, int owner, int kind)
{
    uint8_t sel = u8(r), k;
    nxl_desc_t d = {0, 0, 0};
    const ag_t *g = owner >= 0 ? &ag[owner] : NULL;
    uint64_t base;

    switch (sel % 10) {
    case 0:
    case 1:
    case 2:
    case 3: /* inside (or just past) an arena, on 256-byte steps */
        k = u8(r);
        if (kind == NXL_FILE) {
            d.addr = (uint64_t)u8(r) * 256u;
            d.len = ((uint64_t)u8(r) + 1u) * 256u;
            d.dev_id = (k & 7)   ? (uint64_t)file_fd
                       : (k & 8) ? 0x80000000ull
                                 : UINT64_MAX;
            break;
        }
        base = (uint64_t)(uintptr_t)arena[k % NARENA];
        if ((k % NARENA) == AR_MMAP && (sel & 0x40)) {
            /* 8 KiB steps over 2 MiB: transfers big enough to split. */
            d.addr = base + (uint64_t)u8(r) * 8192u;
            d.len = ((uint64_t)u8(r) + 1u) * 8192u;
        } else {
            d.addr = base + (uint64_t)u8(r) * 256u;
            d.len =
                (sel & 0x80) ? (uint64_t)u16(r) : ((uint64_t)u8(r) + 1u) * 256u;
        }
        d.dev_id = (k & 0x30) == 0x30 ? (k >> 6) : 0;
        break;
    case 4:
    case 5:
    case 6: /* derived from a registration of the owner */
        if (g != NULL && g->nregs > 0) {
            const reg_t *rg = &g->regs[u8(r) % g->nregs];
            uint64_t o = u16(r), l = u16(r);

            d = rg->d;
            switch (u8(r) % 7) {
            case 0: /* exact */
                break;
            case 1: /* inside */
                o %= d.len;
                d.addr += o;
                d.len = l % (d.len - o) + 1;
                break;
            case 2: /* from the start */
                d.len = l % d.len + 1;
                break;
            case 3: /* starts before */
                d.addr -= (o % 4096) + 1;
                d.len += (o % 4096) + 1;
                break;
            case 4: /* ends after */
                d.len += (l % 4096) + 1;
                break;
            case 5: /* other device */
                d.dev_id ^= 1u + (o & 1);
                break;
            default: /* shifted */
                d.addr += o;
                break;
            }
            break;
        }
        /* fall through */
    case 7: /* special values */
        k = u8(r) % (sizeof(specials) / sizeof(specials[0]));
        d.addr = specials[k][0];
        d.len = specials[k][1];
        if (d.addr == 4096 || d.addr == 0x10000) {
            d.addr = (uint64_t)(uintptr_t)arena[u8(r) % NARENA];
        }
        break;
    case 8: /* a reserved range that is never real */
        d.addr = (uint64_t)(uintptr_t)arena[AR_VOID] + u16(r);
        d.len = u16(r);
        break;
    default: /* raw values that cannot be mapped memory */
        d.addr = u64(r) | 0x8000000000000000ull;
        d.len = u64(r) >> (u8(r) % 64);
        d.dev_id = (sel & 0x40) ? u64(r) : 0;
        break;
    }
    return d;
}

static int
gen_kind(rd_t *r)
{
    uint8_t k = u8(r);

    if (k < 200) {
        return NXL_DRAM;
    }
    if (k < 230) {
        return (k & 1) ? NXL_FILE : NXL_VRAM;
    }
    if (k < 245) {
        return NXL_BLK + (k & 1);
    }
    return (k & 1) ? (int)(int8_t)k : NXL_MEM_KINDS + (k & 7);
}

/* A list from the input; mode says what its count and pointer do. */
typedef struct {
    nxl_dlist_t dl;
    nxl_desc_t d[MAX_DESCS];
    int honest; /* count matches descs */
} gl_t;

static void
gen_list(rd_t *r, int owner, gl_t *gl, int count)
{
    uint8_t m = u8(r);
    size_t i, n = count >= 0 ? (size_t)count : m % (MAX_DESCS + 1);

    gl->dl.mem = (nxl_mem_t)gen_kind(r);
    for (i = 0; i < n; i++) {
        gl->d[i] = gen_desc(r, owner, gl->dl.mem);
    }
    gl->dl.descs = gl->d;
    gl->dl.count = n;
    gl->honest = 1;
    if ((m & 0xe0) == 0xe0) {
        gl->honest = 0;
        switch ((m >> 3) & 3) {
        case 0: /* NULL with a count */
            gl->dl.descs = NULL;
            gl->dl.count = n + 1;
            break;
        case 1: /* a count whose bytes overflow, NULL */
            gl->dl.descs = NULL;
            gl->dl.count = SIZE_MAX / sizeof(nxl_desc_t) + 1 + n;
            break;
        case 2: /* a count whose bytes overflow, real pointer */
            gl->dl.count = SIZE_MAX - n;
            break;
        default: /* NULL and no count */
            gl->dl.descs = NULL;
            gl->dl.count = 0;
            gl->honest = 1;
            n = 0;
            break;
        }
    }
}

/* --- opts -------------------------------------------------------------- */

typedef struct {
    nxl_opts_t o;
    nxl_backend_t *bes[4];
    uint8_t msg[MAX_NOTIF];
    int null;
} go_t;

static const nxl_opts_t *
gen_opts(rd_t *r, int owner, go_t *go)
{
    uint8_t m = u8(r), k, i;

    if ((m & 3) != 0) {
        return NULL;
    }
    nxl_opts_init(&go->o);
    if (m & 4) {
        k = u8(r);
        for (i = 0; i < 4; i++) {
            int t = (k >> (2 * i)) & 3;

            go->bes[i] = t < NBT ? ag[(k & 0x80) ? 1 - owner : owner].be[t]
                                 : (nxl_backend_t *)(uintptr_t)0x10;
        }
        go->o.backends = go->bes;
        go->o.num_backends = 1 + (k & 3);
        if ((k & 0x70) == 0x70) {
            go->o.backends = NULL;
        } else if ((k & 0x70) == 0x60 && !(skip_bits & 2)) {
            go->o.num_backends = SIZE_MAX / sizeof(nxl_backend_t *) + 2;
        }
    }
    if (m & 8) {
        go->o.has_notif = 1;
        go->o.notif_len = u8(r) % (MAX_NOTIF + 1);
        memset(go->msg, 'n', sizeof(go->msg));
        go->o.notif = (m & 0x80) ? NULL : go->msg;
    }
    go->o.skip_merge = (m & 0x10) != 0;
    go->o.include_conn_info = (m & 0x20) != 0;
    if (m & 0x40) {
        go->o.ip_addr = "127.0.0.1";
        go->o.port = ag[1].sc_port ? ag[1].sc_port : 1;
        go->o.timeout_ms = 1 + u8(r) % 50;
    }
    return &go->o;
}

/* opts_bad: what nxl__opts_check refuses. */
static int
opts_bad(const nxl_opts_t *o)
{
    return o != NULL &&
           ((o->num_backends > 0 && o->backends == NULL) ||
            o->num_backends > SIZE_MAX / sizeof(nxl_backend_t *) ||
            (o->has_notif && o->notif_len > 0 && o->notif == NULL));
}

/* --- agents -----------------------------------------------------------------
 */

static nxl_status_t
add_backend(ag_t *g, int t, uint8_t h)
{
    static const char *const thr[] = {"0", "1", "2", "0"};
    nxl_param_t p[4];
    nxl_params_t ps = {p, 0};
    nxl_status_t st;

    if (t == BT_SHM) {
        p[ps.count++] = (nxl_param_t){"num_threads", thr[h & 3]};
        if (h & 4) {
            p[ps.count++] = (nxl_param_t){"split_policy", "always"};
            p[ps.count++] = (nxl_param_t){"split_threshold", "4096"};
        }
    } else if (t == BT_TCP) {
        p[ps.count++] = (nxl_param_t){"num_streams", (h & 8) ? "3" : "1"};
        if (h & 16) {
            p[ps.count++] = (nxl_param_t){"stripe_min_bytes", "0"};
        }
        p[ps.count++] = (nxl_param_t){"bind_addr", "127.0.0.1"};
    } else {
        p[ps.count++] = (nxl_param_t){"api", (h & 32) ? "threads" : "auto"};
        p[ps.count++] = (nxl_param_t){"num_threads", "1"};
    }
    st = CALL(nxl_backend_create(g->a, bt_name[t], &ps, &g->be[t]));
    CHECK(st == NXL_OK, "creating %s on %s", bt_name[t], g->name);
    return st;
}

/* The configurations of FUZZ_API_KEEP, as header bytes for agents_start
 * (h0: bits 0-1 A's backends, 0/3 SHM and TCP, 1 SHM, 2 TCP; bit 2 POSIX
 * on A; bits 3-4 B's backends; bit 6 B listens. h1: bits 0-1 SHM
 * num_threads, bit 2 SHM split_policy=always, bit 3 TCP num_streams=3,
 * bit 4 TCP stripe_min_bytes=0, bit 5 POSIX api=threads and telemetry,
 * bits 6-7 sync mode). Every option's every value appears. */
static const uint8_t keep_cfg[NKEEP][2] = {
    {0x40, 0x00}, {0x44, 0x25}, {0x49, 0x46}, {0x52, 0x58},
    {0x11, 0x80}, {0x0a, 0x81}, {0x46, 0x9e}, {0x04, 0x61},
    {0x48, 0x02}, {0x51, 0x39}, {0x4c, 0xa4}, {0x03, 0x5d},
    {0x5b, 0x07}, {0x44, 0x7a}, {0x41, 0xbb}, {0x16, 0x20},
};

/* A pair of agents kept for one configuration (FUZZ_API_KEEP). */
typedef struct {
    nxl_agent_t *a;
    nxl_backend_t *be[NBT];
    nxl_blob_t conn[NBT];
    uint16_t sc_port;
} kept_t;

static kept_t kept[NKEEP][2];
static int keep_slot = -1; /* this input's configuration */
static int keep_retire;    /* this input changed what its pair is */

/* keep_take moves a kept pair into ag[] (1) or says there is none (0). */
static int
keep_take(int c)
{
    int k, t;

    if (kept[c][0].a == NULL) {
        return 0;
    }
    for (k = 0; k < 2; k++) {
        ag_t *g = &ag[k];
        kept_t *e = &kept[c][k];

        memset(g, 0, sizeof(*g));
        strcpy(g->name, k ? "B" : "A");
        g->a = e->a;
        g->sc_port = e->sc_port;
        for (t = 0; t < NBT; t++) {
            g->be[t] = e->be[t];
            g->conn[t] = e->conn[t];
        }
        memset(e, 0, sizeof(*e));
    }
    return 1;
}

/* keep_reset brings the pair of this input back to what it was when it
 * was kept: no peer loaded, no notification waiting. The model's teardown
 * has already released every transfer and registration. */
static void
keep_reset(void)
{
    static const char *const always[] = {"A", "B", "C"};
    char longname[300];
    nxl_notif_list_t *l = NULL;
    nxl_status_t st;
    int k, i, n;

    memset(longname, 'L', 299);
    longname[299] = '\0';
    for (k = 0; k < 2; k++) {
        ag_t *g = &ag[k];
        const char *names[MAX_LOADED + 4];

        if (g->nloaded > MAX_LOADED) {
            keep_retire = 1; /* names the reset cannot know */
            return;
        }
        n = 0;
        for (i = 0; i < 3; i++) {
            names[n++] = always[i];
        }
        names[n++] = longname;
        for (i = 0; i < g->nloaded; i++) {
            names[n++] = g->loaded[i];
        }
        for (i = 0; i < n; i++) {
            if (strcmp(names[i], g->name) == 0) {
                continue;
            }
            st = nxl_md_invalidate(g->a, names[i]);
            CHECK(nxl_md_check(g->a, names[i], NULL) != NXL_OK,
                  "keep: %s still knows '%.20s' after invalidating it (%s)",
                  g->name, names[i], nxl_status_name(st));
        }
        do {
            nxl_notif_list_free(l);
            l = NULL;
            CHECK(nxl_notifs_get(g->a, &l, NULL) == NXL_OK, "keep: notifs");
        } while (l->count > 0);
        nxl_notif_list_free(l);
        l = NULL;
    }
}

static void
agents_start(uint8_t h0, uint8_t h1)
{
    nxl_agent_config_t cfg;
    int k;

    if (keep) {
        keep_slot = h0 % NKEEP;
        keep_retire = 0;
        if (keep_take(keep_slot)) {
            tr("keep: configuration %d, kept agents", keep_slot);
            return;
        }
        h0 = keep_cfg[keep_slot][0];
        h1 = keep_cfg[keep_slot][1];
        tr("keep: configuration %d, new agents (%02x %02x)", keep_slot, h0, h1);
    }
    for (k = 0; k < 2; k++) {
        ag_t *g = &ag[k];
        unsigned set = (h0 >> (k * 3)) & 3;

        memset(g, 0, sizeof(*g));
        strcpy(g->name, k ? "B" : "A");
        nxl_agent_config_init(&cfg);
        cfg.sync_mode = (nxl_sync_t)((h1 >> 6) % 3);
        cfg.capture_telemetry = (h1 >> 5) & 1;
        if (k == 1 && (h0 & 0x40)) {
            cfg.listen_thread = 1;
            cfg.listen_addr = "127.0.0.1";
            cfg.listen_port = 0;
        }
        CHECK(nxl_agent_create(g->name, &cfg, &g->a) == NXL_OK, "agent");
        g->sc_port = nxl_agent_listen_port(g->a);
        if (set != 2) {
            add_backend(g, BT_SHM, h1);
        }
        if (set != 1) {
            add_backend(g, BT_TCP, h1);
        }
        if (k == 0 && (h0 & 4)) {
            add_backend(g, BT_POSIX, h1);
        }
        refresh_conn(g);
    }
}

/* --- checks of accepted transfers ---------------------------------------- */

enum { V_OK, V_STALE, V_UNKNOWN, V_BAD };

/* verdict_remote judges one remote descriptor of owner's transfer to
 * peer name, run by backend type t. A loopback (own name) is judged
 * against the owner's registrations, which the library knows exactly. A
 * real peer's memory only when data moves (peer metadata may be stale or
 * made up; the peer's side must refuse): registered there now (V_OK),
 * registered there earlier in this input (V_STALE: stale metadata, which
 * SHM cannot see), never (V_BAD). */
static int
verdict_remote(int owner, const char *name, int t, int kind,
               const nxl_desc_t *d, int moving)
{
    const ag_t *g = &ag[owner], *s;
    const peer_t *p;

    if (strcmp(name, g->name) == 0) {
        return covered_by(g->regs, g->nregs, kind, d) ? V_OK : V_BAD;
    }
    if (!moving) {
        return V_OK;
    }
    p = peer_get((ag_t *)g, name);
    if (p == NULL || t < 0 || p->src[t] < 0) {
        return V_UNKNOWN;
    }
    s = &ag[p->src[t]];
    if (covered_by(s->regs, s->nregs, kind, d)) {
        return V_OK;
    }
    if (s->hist_all || covered_by(s->hist, s->nhist, kind, d)) {
        return V_STALE;
    }
    return V_BAD;
}

/* judge_xfer returns the worst verdict over x's pairs (t: its backend;
 * moving: data moves now, so a peer's memory is judged too). */
static int
judge_xfer(const xf_t *x, int t, int moving, int *idx_p)
{
    const ag_t *g = &ag[x->owner];
    int worst = V_OK, v;
    size_t i;

    for (i = 0; i < x->n; i++) {
        v = covered_by(g->regs, g->nregs, x->lkind, &x->l[i]) ? V_OK : V_BAD;
        if (v != V_BAD) {
            v = NXL__MAX(v, verdict_remote(x->owner, x->peer, t, x->rkind,
                                           &x->r[i], moving));
        }
        if (v > worst) {
            worst = v;
            *idx_p = (int)i;
        }
    }
    return worst;
}

static int
xfer_bt(const xf_t *x)
{
    nxl_backend_t *be = NULL;

    CHECK(nxl_xfer_backend(x->h, &be) == NXL_OK && be != NULL, "backend");
    return bt_of(nxl_backend_name(be));
}

/* check_accepted: the library accepted x (made it, or moved its data: a
 * post that returned NXL_OK, or a status/wait that did after
 * NXL_IN_PROG): its memory must be registered. v is the verdict taken
 * when the data moved (-1: take it now). */
static void
check_accepted(const xf_t *x, const char *when, int moving, int v)
{
    int t = xfer_bt(x), idx = -1;

    if (v < 0) {
        v = judge_xfer(x, t, moving, &idx);
    } else {
        (void)judge_xfer(x, t, moving, &idx);
    }
    CHECK(v != V_BAD,
          "%s: %s accepted a transfer of %s to '%s' over memory that is not "
          "registered: pair %d local 0x%" PRIx64 "+%" PRIu64 " (kind %d) "
          "remote 0x%" PRIx64 "+%" PRIu64 " (kind %d dev %" PRIu64 ")",
          when, t >= 0 ? bt_name[t] : "?", ag[x->owner].name, x->peer, idx,
          idx >= 0 ? x->l[idx].addr : 0, idx >= 0 ? x->l[idx].len : 0, x->lkind,
          idx >= 0 ? x->r[idx].addr : 0, idx >= 0 ? x->r[idx].len : 0, x->rkind,
          idx >= 0 ? x->r[idx].dev_id : 0);
    CHECK(v != V_STALE || !strict_remote,
          "%s: moved data of a transfer to '%s' over a region it had "
          "deregistered",
          when, x->peer);
}

/* postable: every byte is the target's own, and no local byte is a
 * remote byte (a loopback copy over itself). */
static int
postable(const xf_t *x)
{
    size_t i, j;

    for (i = 0; i < x->n; i++) {
        if (!is_real(x->lkind, &x->l[i]) || !is_real(x->rkind, &x->r[i])) {
            return 0;
        }
    }
    for (i = 0; i < x->n; i++) {
        for (j = 0; j < x->n; j++) {
            if (x->lkind == x->rkind && overlaps(&x->l[i], &x->r[j])) {
                return 0;
            }
        }
    }
    return 1;
}

/* --- operations --------------------------------------------------------------
 */

static int
pick_agent(rd_t *r)
{
    return u8(r) & 1;
}

static void
taint_after_dereg(int k, int kind, const nxl_desc_t *d)
{
    size_t i, j;

    for (i = 0; i < MAX_PREPS; i++) {
        prep_t *p = &preps[i];

        if (p->h == NULL || p->owner != k || p->kind != kind ||
            (p->remote && strcmp(p->peer, ag[k].name) != 0)) {
            continue;
        }
        for (j = 0; j < p->n; j++) {
            if (overlaps(&p->d[j], d)) {
                p->tainted = 1;
            }
        }
    }
    for (i = 0; i < MAX_XFERS; i++) {
        xf_t *x = &xfs[i];

        if (x->h == NULL || x->owner != k) {
            continue;
        }
        for (j = 0; j < x->n; j++) {
            if ((x->lkind == kind && overlaps(&x->l[j], d)) ||
                (strcmp(x->peer, ag[k].name) == 0 && x->rkind == kind &&
                 overlaps(&x->r[j], d))) {
                x->tainted = 1;
            }
        }
    }
}

static void
op_register(rd_t *r)
{
    int k = pick_agent(r), bad = 0;
    ag_t *g = &ag[k];
    gl_t gl;
    go_t go;
    const nxl_opts_t *o;
    nxl_status_t st;
    size_t i, j;

    gen_list(r, k, &gl, -1);
    o = gen_opts(r, k, &go);
    tr("register %s kind %d count %zu", g->name, (int)gl.dl.mem, gl.dl.count);
    for (i = 0; trace && gl.honest && i < gl.dl.count; i++) {
        tr("  0x%" PRIx64 "+%" PRIu64 " dev %" PRIu64, gl.d[i].addr,
           gl.d[i].len, gl.d[i].dev_id);
    }
    st = CALL(nxl_mem_register(g->a, (u8(r) == 0xff) ? NULL : &gl.dl, o));
    if (st != NXL_OK) {
        /* A refused call registers nothing: each new descriptor is still
         * unknown to deregister. */
        for (i = 0; gl.honest && i < gl.dl.count; i++) {
            nxl_dlist_t one = {gl.dl.mem, &gl.d[i], 1};

            if ((unsigned)gl.dl.mem >= NXL_MEM_KINDS || gl.d[i].len == 0) {
                continue;
            }
            for (j = 0; j < (size_t)g->nregs; j++) {
                if (g->regs[j].kind == (int)gl.dl.mem &&
                    memcmp(&g->regs[j].d, &gl.d[i], sizeof(gl.d[i])) == 0) {
                    break;
                }
            }
            if (j == (size_t)g->nregs) {
                CHECK(CALL(nxl_mem_deregister(g->a, &one, NULL)) ==
                          NXL_ERR_NOT_FOUND,
                      "refused registration left descriptor %zu registered", i);
            }
        }
        return;
    }
    /* Accepted: the documented rules held. */
    CHECK(gl.honest && gl.dl.count > 0 && !opts_bad(o),
          "register accepted a dishonest list (count %zu)", gl.dl.count);
    CHECK((unsigned)gl.dl.mem < NXL_MEM_KINDS, "kind %d", (int)gl.dl.mem);
    for (i = 0; i < gl.dl.count; i++) {
        const nxl_desc_t *d = &gl.d[i];

        bad |=
            d->len == 0 || d->addr + d->len < d->addr ||
            (d->addr == 0 && (gl.dl.mem == NXL_DRAM || gl.dl.mem == NXL_VRAM));
        for (j = 0; j < (size_t)g->nregs; j++) {
            bad |= (g->regs[j].kind == (int)gl.dl.mem &&
                    overlaps(&g->regs[j].d, d))
                   << 1;
        }
        for (j = 0; j < i; j++) {
            bad |= overlaps(&gl.d[j], d) << 2;
        }
        CHECK(bad == 0,
              "register accepted descriptor %zu 0x%" PRIx64 "+%" PRIu64
              " dev %" PRIu64 " (rule %d)",
              i, d->addr, d->len, d->dev_id, bad);
    }
    for (i = 0; i < gl.dl.count && g->nregs < MAX_REGS; i++) {
        g->regs[g->nregs++] = (reg_t){(int)gl.dl.mem, gl.d[i]};
        if (g->nhist < MAX_HIST) {
            g->hist[g->nhist++] = g->regs[g->nregs - 1];
        } else {
            g->hist_all = 1;
        }
    }
    /* Past MAX_REGS the model would be wrong: drop the excess again. */
    for (; i < gl.dl.count; i++) {
        nxl_dlist_t one = {gl.dl.mem, &gl.d[i], 1};

        CHECK(CALL(nxl_mem_deregister(g->a, &one, NULL)) == NXL_OK, "drop");
    }
}

/* xfer_covers: a live transfer of agent k (only one the model saw posted,
 * IN_PROG, and not yet finish, with posted_only) covers memory of d
 * locally (or loopback). */
static int
xfer_covers(int k, int kind, const nxl_desc_t *d, int posted_only)
{
    size_t i, j;

    for (i = 0; i < MAX_XFERS; i++) {
        const xf_t *x = &xfs[i];

        if (x->h == NULL || x->owner != k || (posted_only && x->pending < 0)) {
            continue;
        }
        for (j = 0; j < x->n; j++) {
            if ((x->lkind == kind && overlaps(&x->l[j], d)) ||
                (strcmp(x->peer, ag[k].name) == 0 && x->rkind == kind &&
                 overlaps(&x->r[j], d))) {
                return 1;
            }
        }
    }
    return 0;
}

/* in_flight: a transfer of agent k in flight covers memory of d: the
 * library may refuse to deregister it (NXL_ERR_NOT_ALLOWED), or accept
 * when the transfer finished meanwhile. */
static int
in_flight(int k, int kind, const nxl_desc_t *d)
{
    return xfer_covers(k, kind, d, 1);
}

/* in_use: a live prepared list or transfer of agent k covers memory of
 * d locally (or loopback). */
static int
in_use(int k, int kind, const nxl_desc_t *d)
{
    size_t i, j;

    for (i = 0; i < MAX_PREPS; i++) {
        const prep_t *p = &preps[i];

        if (p->h == NULL || p->owner != k || p->kind != kind ||
            (p->remote && strcmp(p->peer, ag[k].name) != 0)) {
            continue;
        }
        for (j = 0; j < p->n; j++) {
            if (overlaps(&p->d[j], d)) {
                return 1;
            }
        }
    }
    return xfer_covers(k, kind, d, 0);
}

static void
op_deregister(rd_t *r)
{
    int k = pick_agent(r), want_ok = 1;
    ag_t *g = &ag[k];
    gl_t gl;
    go_t go;
    const nxl_opts_t *o;
    nxl_status_t st;
    size_t i;
    int j;

    if ((u8(r) & 3) && g->nregs > 0) {
        /* Existing registrations, sometimes one twice. */
        uint8_t m = u8(r);

        gl.dl.mem = NXL_DRAM;
        gl.dl.count = 1 + m % 3;
        gl.dl.descs = gl.d;
        gl.honest = 1;
        for (i = 0; i < gl.dl.count; i++) {
            const reg_t *rg = &g->regs[u8(r) % g->nregs];

            gl.dl.mem = (nxl_mem_t)rg->kind;
            gl.d[i] = rg->d;
        }
        if (m & 0x80) {
            gl.d[gl.dl.count - 1] = gen_desc(r, k, gl.dl.mem);
        }
    } else {
        gen_list(r, k, &gl, -1);
    }
    o = gen_opts(r, k, &go);
    for (i = 0; (skip_bits & 1) && gl.honest && i < gl.dl.count; i++) {
        if (in_use(k, gl.dl.mem, &gl.d[i])) {
            return; /* known: deregistering memory a transfer uses */
        }
    }
    tr("deregister %s kind %d count %zu", g->name, (int)gl.dl.mem, gl.dl.count);
    st = CALL(nxl_mem_deregister(g->a, &gl.dl, o));
    /* The model's answer: every descriptor an exact registration. */
    if (!gl.honest || opts_bad(o) || (unsigned)gl.dl.mem >= NXL_MEM_KINDS) {
        want_ok = 0;
    }
    for (i = 0; want_ok && i < gl.dl.count; i++) {
        for (j = 0; j < g->nregs; j++) {
            if (g->regs[j].kind == (int)gl.dl.mem &&
                memcmp(&g->regs[j].d, &gl.d[i], sizeof(gl.d[i])) == 0) {
                break;
            }
        }
        want_ok = j < g->nregs;
    }
    if (st == NXL_ERR_NOT_ALLOWED && want_ok) {
        int busy = 0;

        for (i = 0; !busy && i < gl.dl.count; i++) {
            busy = in_flight(k, gl.dl.mem, &gl.d[i]);
        }
        CHECK(busy,
              "deregister -> NOT_ALLOWED with no transfer in flight "
              "over it (%s)",
              nxl_last_error());
        return;
    }
    CHECK((st == NXL_OK) == want_ok, "deregister -> %s, model says %s",
          nxl_status_name(st), want_ok ? "OK" : "refuse");
    if (st != NXL_OK) {
        return;
    }
    for (i = 0; i < gl.dl.count; i++) {
        for (j = 0; j < g->nregs; j++) {
            if (g->regs[j].kind == (int)gl.dl.mem &&
                memcmp(&g->regs[j].d, &gl.d[i], sizeof(gl.d[i])) == 0) {
                taint_after_dereg(k, g->regs[j].kind, &g->regs[j].d);
                g->regs[j] = g->regs[--g->nregs];
                break;
            }
        }
    }
}

static void
blob_store(int src, nxl_blob_t *b, uint8_t slot)
{
    blob_t *s = &blobs[slot % 4];

    nxl_blob_free(&s->b);
    s->b = *b;
    s->src = src;
}

static void
op_md_local(rd_t *r, int partial)
{
    int k = pick_agent(r);
    ag_t *g = &ag[k];
    nxl_blob_t b = {(void *)(uintptr_t)0xdead0, 12345};
    nxl_status_t st;
    gl_t gl;
    go_t go;
    const nxl_opts_t *o = NULL;
    uint8_t m = u8(r);

    if (!partial) {
        st = CALL(nxl_md_local(g->a, (m & 0xf0) == 0xf0 ? NULL : &b));
    } else {
        gen_list(r, k, &gl, -1);
        o = gen_opts(r, k, &go);
        st = CALL(nxl_md_local_partial(g->a, (m & 0x0f) == 0x0f ? NULL : &gl.dl,
                                       o, (m & 0xf0) == 0xf0 ? NULL : &b));
    }
    if (st != NXL_OK) {
        CHECK(b.data == (void *)(uintptr_t)0xdead0 && b.len == 12345,
              "md_local wrote its output on failure");
        return;
    }
    CHECK(b.data != NULL && b.len > 0, "empty metadata");
    blob_store(k, &b, m);
}

/* learn_load updates the model after owner tried to load md (status
 * st): which live agent each backend's conn info belongs to. A failed
 * load of a new peer leaves nothing; a failed load into a loaded peer may
 * have loaded some conn info (md_apply keeps what it added), which the
 * model then cannot attribute (-2: transfers through it are not judged). */
static void
learn_load(int owner, const nxl__md_t *md, nxl_status_t st)
{
    ag_t *g = &ag[owner];
    peer_t *p = peer_get(g, md->agent);
    size_t i;
    int t;

    if (p == NULL && st != NXL_OK) {
        return;
    }
    if (p == NULL) {
        if (g->npeers == MAX_PEERS) {
            return; /* the model then cannot judge this name: V_UNKNOWN */
        }
        p = &g->peers[g->npeers++];
        memset(p, 0, sizeof(*p));
        snprintf(p->name, sizeof(p->name), "%s", md->agent);
        for (t = 0; t < NBT; t++) {
            p->src[t] = -1;
        }
    }
    for (i = 0; i < md->nconns; i++) {
        t = bt_of(md->conns[i].backend);
        if (t < 0 || p->src[t] != -1) {
            continue;
        }
        p->src[t] = st == NXL_OK
                        ? conn_source(t, md->conns[i].info, md->conns[i].len)
                        : -2;
    }
}

static void
forget_peer(int owner, const char *name)
{
    ag_t *g = &ag[owner];
    peer_t *p = peer_get(g, name);

    if (p != NULL) {
        *p = g->peers[--g->npeers];
    }
}

/* note_loaded records that agent g loaded a peer called name. */
static void
note_loaded(ag_t *g, const char *name)
{
    int i;

    for (i = 0; i < g->nloaded && i < MAX_LOADED; i++) {
        if (strcmp(g->loaded[i], name) == 0) {
            return;
        }
    }
    if (g->nloaded < MAX_LOADED) {
        snprintf(g->loaded[g->nloaded], sizeof(g->loaded[0]), "%s", name);
    }
    g->nloaded++;
}

/* load runs nxl_md_load of bytes into agent k, unless the bytes carry
 * TCP conn info that could make the backend connect anywhere but a live
 * agent's 127.0.0.1 listener. */
static void
load(rd_t *r, int k, const uint8_t *data, size_t len)
{
    ag_t *g = &ag[k];
    nxl__md_t *md = NULL;
    nxl_status_t dst, st;
    char name[301];
    size_t cap, i;
    uint8_t m = u8(r);

    dst = nxl__md_decode(data, len, &md);
    if (dst == NXL_OK) {
        for (i = 0; i < md->nconns; i++) {
            if (bt_of(md->conns[i].backend) == BT_TCP &&
                !tcp_safe(md->conns[i].info, md->conns[i].len)) {
                tr("load: skipped (TCP conn info names another address)");
                nxl__md_free(md);
                return;
            }
        }
    }
    cap = (m & 3) == 0 ? 0 : (m & 3) == 1 ? 1 : (m & 3) == 2 ? 3 : 300;
    /* name[cap] is a guard byte that must stay untouched. */
    memset(name, 0x5a, sizeof(name));
    tr("md_load into %s (%zu bytes, decode %s)", g->name, len,
       nxl_status_name(dst));
    st = CALL(nxl_md_load(g->a, len == 0 && (m & 4) ? NULL : data, len,
                          (m & 8) ? NULL : name, cap));
    if (dst != NXL_OK) {
        CHECK(st != NXL_OK, "md_load accepted bytes its decoder refuses");
        return;
    }
    /* INVALID_PARAM is for this caller's mistakes (its own name, NULL);
     * a peer's malformed metadata is NXL_ERR_PROTO. */
    CHECK(st != NXL_ERR_INVALID_PARAM || (skip_bits & 32) ||
              strcmp(md->agent, g->name) == 0 || (len == 0 && (m & 4)),
          "md_load of metadata from '%s' -> INVALID_PARAM", md->agent);
    if (st == NXL_OK) {
        CHECK(strcmp(md->agent, g->name) != 0, "loaded its own metadata");
        if (!(m & 8) && cap > 0) {
            CHECK(memchr(name, '\0', cap) != NULL, "name_buf not terminated");
            CHECK(strncmp(name, md->agent, cap - 1) == 0, "name_buf");
        }
        if (!(m & 8)) {
            CHECK(name[cap] == 0x5a, "name_buf written past cap %zu", cap);
        }
    }
    if (strcmp(md->agent, g->name) != 0) {
        learn_load(k, md, st);
    }
    if (st == NXL_OK) {
        note_loaded(g, md->agent);
    }
    nxl__md_free(md);
}

static void
op_md_load(rd_t *r)
{
    blob_t *s = &blobs[u8(r) % 4];
    int k = pick_agent(r);
    uint8_t *copy, m = u8(r);
    size_t len, i;

    if (s->b.data == NULL) {
        return;
    }
    len = s->b.len;
    copy = malloc(len + 1);
    memcpy(copy, s->b.data, len);
    switch (m % 4) {
    case 0: /* as is */
        break;
    case 1: /* truncated */
        len = u16(r) % (len + 1);
        break;
    case 2: /* bit flips */
        for (i = 0; i < 1u + (m >> 6); i++) {
            size_t at = u16(r) % len;

            copy[at] ^= (uint8_t)(1u << (u8(r) & 7));
        }
        break;
    default: /* bytes overwritten */
        for (i = 0; i < 1u + (m >> 6); i++) {
            size_t at = u16(r) % len;

            copy[at] = u8(r);
        }
        break;
    }
    load(r, k, copy, len);
    free(copy);
}

/* op_md_craft re-encodes a real blob with changes the codec allows but a
 * loader must judge: another agent name, conn info swapped, emptied,
 * dropped or doubled, sections of another kind or backend, regions moved,
 * public data cut. */
static void
op_md_craft(rd_t *r)
{
    static const char *const names[] = {"A", "B", "C", "shm", "D"};
    static const char *const bnames[] = {"SHM", "tcp", "POSIX", "UCX", "X"};
    blob_t *s = &blobs[u8(r) % 4];
    int k = pick_agent(r);
    nxl__md_t *md = NULL, out;
    nxl__md_conn_t conns[8];
    nxl__md_section_t secs[8];
    nxl__md_region_t regs[8][MAX_DESCS];
    char longname[NXL__MD_NAME_MAX + 1];
    nxl__wbuf_t w;
    nxl_blob_t b = {0};
    uint8_t m;
    size_t i, j, n;
    int other;

    if (s->b.data == NULL ||
        nxl__md_decode(s->b.data, s->b.len, &md) != NXL_OK) {
        return;
    }
    out = *md;
    m = u8(r);
    if (m & 1) {
        out.agent = names[u8(r) % 5];
    } else if ((m & 6) == 6) {
        memset(longname, 'L', NXL__MD_NAME_MAX);
        longname[NXL__MD_NAME_MAX] = '\0';
        out.agent = longname;
    }
    out.flags = (m & 8) ? u32(r) : md->flags;
    /* Conns. */
    n = 0;
    for (i = 0; i < md->nconns && n < 8; i++) {
        uint8_t c = u8(r);

        conns[n] = md->conns[i];
        switch (c % 8) {
        case 0: /* dropped */
            continue;
        case 1: /* emptied */
            if (!(skip_bits & 16)) {
                conns[n].info = NULL;
                conns[n].len = 0;
            }
            break;
        case 2: /* the other agent's */
            other = (u8(r) & 1);
            j = (size_t)bt_of(conns[n].backend);
            if (j < NBT && ag[other].conn[j].len > 0) {
                conns[n].info = ag[other].conn[j].data;
                conns[n].len = (uint32_t)ag[other].conn[j].len;
            }
            break;
        case 3: /* cut */
            conns[n].len = conns[n].len ? u8(r) % conns[n].len : 0;
            if (conns[n].len == 0) {
                conns[n].len = (skip_bits & 16) ? 1 : 0;
                conns[n].info = (skip_bits & 16) ? conns[n].info : NULL;
            }
            break;
        case 4: /* renamed */
            conns[n].backend = bnames[u8(r) % 5];
            break;
        default:
            break;
        }
        n++;
        if ((c & 0x80) && n < 8) { /* doubled */
            conns[n] = conns[n - 1];
            n++;
        }
    }
    out.conns = conns;
    out.nconns = n;
    /* Sections. */
    n = 0;
    for (i = 0; i < md->nsections && n < 8; i++) {
        uint8_t c = u8(r);
        const nxl__md_section_t *ms = &md->sections[i];

        if (c % 8 == 0) {
            continue;
        }
        secs[n] = *ms;
        if (c % 8 == 1) {
            secs[n].kind = (nxl_mem_t)(u8(r) % NXL_MEM_KINDS);
        } else if (c % 8 == 2) {
            secs[n].backend = bnames[u8(r) % 5];
        }
        secs[n].count = NXL__MIN(ms->count, (size_t)MAX_DESCS);
        secs[n].regions = regs[n];
        for (j = 0; j < secs[n].count; j++) {
            regs[n][j] = ms->regions[j];
            if (c & 0x10) {
                regs[n][j].desc = gen_desc(r, 1 - k, secs[n].kind);
            }
            if ((c & 0x20) && regs[n][j].pub_len > 0) {
                regs[n][j].pub_len = u8(r) % regs[n][j].pub_len;
                if (regs[n][j].pub_len == 0) {
                    regs[n][j].pub = NULL;
                }
            }
        }
        if ((c & 0x40) && secs[n].count < MAX_DESCS && secs[n].count > 0) {
            regs[n][secs[n].count] = regs[n][0];
            regs[n][secs[n].count].desc = gen_desc(r, 1 - k, secs[n].kind);
            secs[n].count++;
        }
        n++;
    }
    out.sections = secs;
    out.nsections = n;
    nxl__wbuf_init(&w);
    if (nxl__md_encode(&out, &w) == NXL_OK &&
        nxl__wbuf_finish(&w, &b) == NXL_OK) {
        load(r, k, b.data, b.len);
        if (u8(r) & 1) {
            blob_store(s->src, &b, u8(r));
            b.data = NULL;
        }
        nxl_blob_free(&b);
    } else {
        nxl__wbuf_fini(&w);
    }
    nxl__md_free(md);
}

static const char *
gen_name(rd_t *r, int k, char *buf)
{
    uint8_t m = u8(r);

    switch (m % 8) {
    case 0:
        return NULL;
    case 1:
        return "";
    case 2:
        return ag[k].name;
    case 3:
        return "C";
    case 4:
        memset(buf, 'L', 299);
        buf[299] = '\0';
        return buf;
    default:
        return ag[1 - k].name;
    }
}

static void completed(xf_t *x, nxl_status_t st);

/* drain_to polls agent k's transfers to peer name to completion (skip
 * bit 6: before that peer is forgotten). */
static void
drain_to(int k, const char *name)
{
    size_t i;

    for (i = 0; (skip_bits & 64) && name != NULL && i < MAX_XFERS; i++) {
        xf_t *x = &xfs[i];

        if (x->h != NULL && x->owner == k && strcmp(x->peer, name) == 0) {
            completed(x, CALL(nxl_xfer_wait(x->h, 1000)));
        }
    }
}

static void
op_invalidate(rd_t *r)
{
    int k = pick_agent(r);
    char buf[300];
    const char *name = gen_name(r, k, buf);
    nxl_status_t st;

    drain_to(k, name);
    st = CALL(nxl_md_invalidate(ag[k].a, name));
    if (st == NXL_OK) {
        CHECK(name != NULL && strcmp(name, ag[k].name) != 0,
              "invalidated itself");
        forget_peer(k, name);
    }
}

static void
op_check(rd_t *r)
{
    int k = pick_agent(r);
    char buf[300];
    const char *name = gen_name(r, k, buf);
    gl_t gl;
    nxl_status_t st;

    gen_list(r, 1 - k, &gl, -1);
    st = CALL(nxl_md_check(ag[k].a, name, (u8(r) & 1) ? NULL : &gl.dl));
    (void)st;
}

static prep_t *
prep_slot(uint8_t v)
{
    prep_t *p = &preps[v % MAX_PREPS];

    if (p->h != NULL) {
        nxl_dlist_release(p->h);
        p->h = NULL;
    }
    return p;
}

static void
op_prep(rd_t *r)
{
    int k = pick_agent(r);
    char buf[300];
    const char *name;
    prep_t *p = prep_slot(u8(r));
    nxl_prepped_t *h = (nxl_prepped_t *)(uintptr_t)0xdead0;
    gl_t gl;
    go_t go;
    const nxl_opts_t *o;
    nxl_status_t st;
    uint8_t m = u8(r);

    name = gen_name(r, k, buf);
    gen_list(r,
             (name != NULL && name[0] && strcmp(name, ag[k].name)) ? 1 - k : k,
             &gl, -1);
    o = gen_opts(r, k, &go);
    tr("prep %s '%s' kind %d count %zu", ag[k].name, name ? name : "(null)",
       (int)gl.dl.mem, gl.dl.count);
    for (size_t j = 0; trace && gl.honest && j < gl.dl.count; j++) {
        tr("  0x%" PRIx64 "+%" PRIu64 " dev %" PRIu64, gl.d[j].addr,
           gl.d[j].len, gl.d[j].dev_id);
    }
    st = CALL(nxl_dlist_prep(ag[k].a, name, (m & 0xf) == 0xf ? NULL : &gl.dl, o,
                             (m & 0xf0) == 0xf0 ? NULL : &h));
    if (st != NXL_OK) {
        CHECK(h == (nxl_prepped_t *)(uintptr_t)0xdead0,
              "dlist_prep wrote its output on failure");
        return;
    }
    CHECK(gl.honest && !opts_bad(o) && h != NULL, "prep accepted");
    memset(p, 0, sizeof(*p));
    p->h = h;
    p->owner = k;
    p->remote = name != NULL && name[0] != '\0';
    snprintf(p->peer, sizeof(p->peer), "%s", p->remote ? name : "");
    p->kind = gl.dl.mem;
    p->n = gl.dl.count;
    memcpy(p->d, gl.d, p->n * sizeof(nxl_desc_t));
    /* Local memory (and loopback, under its own name) must be covered by
     * the agent's registrations; a peer's is judged when data moves. */
    if (!p->remote || strcmp(p->peer, ag[k].name) == 0) {
        size_t i;

        for (i = 0; i < p->n; i++) {
            CHECK(covered_by(ag[k].regs, ag[k].nregs, p->kind, &p->d[i]),
                  "dlist_prep accepted descriptor %zu 0x%" PRIx64 "+%" PRIu64
                  " (kind %d dev %" PRIu64 ") that %s did not "
                  "register",
                  i, p->d[i].addr, p->d[i].len, p->kind, p->d[i].dev_id,
                  ag[k].name);
        }
    }
}

static xf_t *
xfer_slot(uint8_t v)
{
    xf_t *x = &xfs[v % MAX_XFERS];

    if (x->h != NULL) {
        nxl_xfer_release(x->h);
        x->h = NULL;
    }
    return x;
}

/* made: the library accepted a transfer; record and judge it. */
static void
made(xf_t *x, nxl_xfer_t *h)
{
    nxl_xfer_telemetry_t t;
    uint64_t total = 0;
    size_t i;

    x->h = h;
    x->pending = -1;
    check_accepted(x, "make", 0, -1);
    if (nxl_xfer_telemetry(h, &t) == NXL_OK) {
        for (i = 0; i < x->n; i++) {
            total += x->l[i].len;
        }
        CHECK(t.total_bytes == total && t.desc_count <= x->n &&
                  t.desc_count >= 1,
              "telemetry %" PRIu64 " bytes %" PRIu64 " descs", t.total_bytes,
              t.desc_count);
    }
}

static void
op_xfer_make(rd_t *r)
{
    uint8_t m = u8(r);
    prep_t *lp = &preps[u8(r) % MAX_PREPS], *rp = &preps[u8(r) % MAX_PREPS];
    int k = (m & 0x80) ? pick_agent(r) : lp->owner;
    xf_t *x;
    nxl_xfer_t *h = (nxl_xfer_t *)(uintptr_t)0xdead0;
    size_t lidx[MAX_DESCS], ridx[MAX_DESCS], n, i;
    size_t *li = lidx, *ri = ridx;
    int op = (m & 0x40) ? (int)(int8_t)u8(r) : (m & 1);
    go_t go;
    const nxl_opts_t *o;
    nxl_status_t st;
    int ok_model = 1;

    if (lp->h == NULL || rp->h == NULL) {
        return;
    }
    if ((skip_bits & 1) && (lp->tainted || rp->tainted)) {
        return;
    }
    n = 1 + u8(r) % MAX_DESCS;
    for (i = 0; i < n; i++) {
        uint8_t a = u8(r), b = u8(r);

        lidx[i] = (a & 0x80) ? (size_t)u64(r) : a % (lp->n + 1);
        ridx[i] = (b & 0x80) ? (size_t)u64(r) : b % (rp->n + 1);
    }
    switch ((m >> 1) & 7) {
    case 0:
        li = NULL;
        break;
    case 1:
        ri = NULL;
        break;
    case 2: /* a count whose index bytes overflow */
        n = SIZE_MAX / sizeof(size_t) + 1 + (m >> 4);
        break;
    case 3:
        n = 0;
        break;
    default:
        break;
    }
    o = gen_opts(r, k, &go);
    x = xfer_slot(u8(r));
    tr("xfer_make %s op %d count %zu", ag[k].name, op, n);
    st = CALL(nxl_xfer_make(ag[k].a, (nxl_op_t)op, lp->h, li, rp->h, ri, n, o,
                            (m & 0x30) == 0x30 ? NULL : &h));
    if (st != NXL_OK) {
        CHECK(h == (nxl_xfer_t *)(uintptr_t)0xdead0,
              "xfer_make wrote its output on failure");
        return;
    }
    ok_model = li != NULL && ri != NULL && n > 0 && n <= MAX_DESCS &&
               (op == 0 || op == 1) && !opts_bad(o) && lp->owner == k &&
               rp->owner == k && !lp->remote && rp->remote &&
               lp->n <= MAX_DESCS && rp->n <= MAX_DESCS;
    for (i = 0; ok_model && i < n; i++) {
        ok_model = lidx[i] < lp->n && ridx[i] < rp->n &&
                   lp->d[lidx[i]].len == rp->d[ridx[i]].len;
    }
    CHECK(ok_model, "xfer_make accepted bad arguments (count %zu op %d)", n,
          op);
    memset(x, 0, sizeof(*x));
    x->owner = k;
    snprintf(x->peer, sizeof(x->peer), "%s", rp->peer);
    x->lkind = lp->kind;
    x->rkind = rp->kind;
    x->n = n;
    for (i = 0; i < n; i++) {
        x->l[i] = lp->d[lidx[i]];
        x->r[i] = rp->d[ridx[i]];
    }
    x->tainted = lp->tainted || rp->tainted;
    made(x, h);
}

static void
op_xfer_create(rd_t *r)
{
    int k = pick_agent(r);
    uint8_t m = u8(r);
    char buf[300];
    const char *name = gen_name(r, k, buf);
    int op = (m & 0x40) ? (int)(int8_t)u8(r) : (m & 1);
    int tgt = (name != NULL && strcmp(name, ag[k].name) == 0) ? k : 1 - k;
    nxl_xfer_t *h = (nxl_xfer_t *)(uintptr_t)0xdead0;
    gl_t lg, rg;
    go_t go;
    const nxl_opts_t *o;
    nxl_status_t st;
    xf_t *x;
    size_t i;
    int ok_model;

    gen_list(r, k, &lg, -1);
    /* Mostly as many remote descriptors as local ones, of equal lengths,
     * which the library wants. */
    gen_list(r, tgt, &rg,
             (m & 0x0c) != 0x0c && lg.honest ? (int)lg.dl.count : -1);
    if (m & 2) {
        for (i = 0; i < lg.dl.count && i < rg.dl.count && i < MAX_DESCS &&
                    lg.honest && rg.honest;
             i++) {
            rg.d[i].len = lg.d[i].len;
        }
    }
    o = gen_opts(r, k, &go);
    x = xfer_slot(u8(r));
    tr("xfer_create %s -> %s op %d count %zu/%zu", ag[k].name,
       name ? name : "(null)", op, lg.dl.count, rg.dl.count);
    st = CALL(nxl_xfer_create(ag[k].a, (nxl_op_t)op, &lg.dl, &rg.dl, name, o,
                              (m & 0x30) == 0x30 ? NULL : &h));
    if (st != NXL_OK) {
        CHECK(h == (nxl_xfer_t *)(uintptr_t)0xdead0,
              "xfer_create wrote its output on failure");
        return;
    }
    ok_model = lg.honest && rg.honest && lg.dl.count == rg.dl.count &&
               lg.dl.count > 0 && lg.dl.count <= MAX_DESCS &&
               (op == 0 || op == 1) && !opts_bad(o) && name != NULL &&
               name[0] != '\0';
    for (i = 0; ok_model && i < lg.dl.count; i++) {
        ok_model = lg.d[i].len == rg.d[i].len;
    }
    CHECK(ok_model, "xfer_create accepted bad arguments");
    memset(x, 0, sizeof(*x));
    x->owner = k;
    snprintf(x->peer, sizeof(x->peer), "%s", name);
    x->lkind = lg.dl.mem;
    x->rkind = rg.dl.mem;
    x->n = lg.dl.count;
    memcpy(x->l, lg.d, x->n * sizeof(nxl_desc_t));
    memcpy(x->r, rg.d, x->n * sizeof(nxl_desc_t));
    made(x, h);
}

static void
op_post(rd_t *r)
{
    xf_t *x = &xfs[u8(r) % MAX_XFERS];
    go_t go;
    const nxl_opts_t *o;
    nxl_status_t st;
    int t, idx = -1, v;

    if (x->h == NULL || ((skip_bits & 1) && x->tainted)) {
        return;
    }
    o = gen_opts(r, x->owner, &go);
    t = xfer_bt(x);
    v = judge_xfer(x, t, 1, &idx);
    /* Data moves only over the target's own memory. A transfer the model
     * says must be refused is posted too: if its memory is absent, a wrong
     * acceptance faults, which is a finding as well. */
    if (v == V_UNKNOWN || (v != V_BAD && !postable(x))) {
        tr("post: skipped (verdict %d)", v);
        return;
    }
    if (v == V_BAD && !postable(x)) {
        size_t i, j;

        /* ... but never a loopback copy of real memory over itself. */
        for (i = 0; i < x->n; i++) {
            for (j = 0; j < x->n; j++) {
                if (x->lkind == x->rkind && is_real(x->lkind, &x->l[i]) &&
                    is_real(x->rkind, &x->r[j]) &&
                    overlaps(&x->l[i], &x->r[j])) {
                    return;
                }
            }
        }
    }
    tr("post %s -> %s (%zu pairs, verdict %d)", ag[x->owner].name, x->peer,
       x->n, v);
    st = CALL(nxl_xfer_post(x->h, o));
    if (st == NXL_ERR_REPOST_ACTIVE) {
        return; /* the earlier post is still in flight: pending stays */
    }
    if (opts_bad(o)) {
        /* Refused before the transfer is looked at: an earlier post
         * still in flight stays so (found by FUZZ_API_KEEP's first run). */
        CHECK(st == NXL_ERR_INVALID_PARAM, "post with bad opts -> %s",
              nxl_status_name(st));
        return;
    }
    x->pending = -1;
    /* Post reads only the notification of opts. */
    if (st == NXL_OK || st == NXL_IN_PROG) {
        CHECK(o == NULL || !o->has_notif || o->notif_len == 0 ||
                  o->notif != NULL,
              "post accepted a NULL notification of %zu bytes", o->notif_len);
    }
    if (st == NXL_OK) {
        check_accepted(x, "post", 1, v);
    } else if (st == NXL_IN_PROG) {
        x->pending = v;
    }
}

/* completed: a status or wait of x returned st. */
static void
completed(xf_t *x, nxl_status_t st)
{
    if (st == NXL_OK && x->pending >= 0) {
        check_accepted(x, "completion", 1, x->pending);
    }
    if (st != NXL_IN_PROG && st != NXL_ERR_TIMEOUT) {
        x->pending = -1;
    }
}

static void
op_wait(rd_t *r)
{
    xf_t *x = &xfs[u8(r) % MAX_XFERS];
    uint8_t m = u8(r);
    int ms = m % 51;

    if (x->h == NULL) {
        return;
    }
    if (m & 0x80) {
        completed(x, CALL(nxl_xfer_status(x->h)));
        return;
    }
    if (ms > wait_left_ms) {
        ms = wait_left_ms;
    }
    wait_left_ms -= ms;
    completed(x, CALL(nxl_xfer_wait(x->h, ms)));
}

static void
op_release(rd_t *r)
{
    uint8_t m = u8(r);

    if (m & 1) {
        xf_t *x = &xfs[(m >> 1) % MAX_XFERS];

        nxl_xfer_release(x->h);
        x->h = NULL;
    } else {
        prep_t *p = &preps[(m >> 1) % MAX_PREPS];

        nxl_dlist_release(p->h);
        p->h = NULL;
    }
}

static void
op_notif_send(rd_t *r)
{
    int k = pick_agent(r);
    char buf[300];
    const char *name = gen_name(r, k, buf);
    uint8_t msg[MAX_NOTIF], m = u8(r);
    size_t len = m % (MAX_NOTIF + 1);
    go_t go;
    const nxl_opts_t *o = gen_opts(r, k, &go);

    memset(msg, 'm', sizeof(msg));
    (void)CALL(nxl_notif_send(ag[k].a, name, (m & 0x80) ? NULL : msg, len, o));
}

static void
op_notifs_get(rd_t *r)
{
    int k = pick_agent(r);
    nxl_notif_list_t *l = (nxl_notif_list_t *)(uintptr_t)0xdead0;
    go_t go;
    const nxl_opts_t *o = gen_opts(r, k, &go);
    nxl_status_t st;
    size_t i;
    uint8_t m = u8(r);

    st = CALL(nxl_notifs_get(ag[k].a, (m & 0xf) == 0xf ? NULL : &l, o));
    if (st != NXL_OK) {
        CHECK(l == (nxl_notif_list_t *)(uintptr_t)0xdead0,
              "notifs_get wrote its output on failure");
        return;
    }
    CHECK(l != NULL && (l->count == 0 || l->items != NULL), "notif list");
    for (i = 0; i < l->count; i++) {
        CHECK(l->items[i].agent != NULL &&
                  strlen(l->items[i].agent) <= NXL__MD_NAME_MAX &&
                  l->items[i].len <= MAX_NOTIF &&
                  (l->items[i].len == 0 || l->items[i].msg != NULL),
              "notification %zu", i);
    }
    nxl_notif_list_free(l);
}

static void
op_queries(rd_t *r)
{
    uint8_t m = u8(r);
    int k = pick_agent(r);
    const char *names[8];
    nxl_plugin_info_t info;
    nxl_backend_t *be = (nxl_backend_t *)(uintptr_t)0xdead0;
    nxl_xfer_telemetry_t t;
    size_t cnt = 777, cap;
    xf_t *x = &xfs[u8(r) % MAX_XFERS];
    static const char *const types[] = {"SHM", "tcp",  "Posix", "UCX",
                                        "",    "nope", NULL};
    const char *type = types[u8(r) % 7];
    nxl_status_t st;

    switch (m % 8) {
    case 0:
        CHECK(nxl_strerror((nxl_status_t)(int32_t)u32(r)) != NULL, "strerror");
        CHECK(nxl_status_name((nxl_status_t)(int32_t)u32(r)) != NULL, "name");
        break;
    case 1:
        cap = u8(r) % 9;
        st = CALL(nxl_plugin_names((m & 0x80) ? NULL : names, cap,
                                   (m & 0x40) ? NULL : &cnt));
        if (st == NXL_OK) {
            CHECK(cnt >= 1 && cnt < 64, "plugin count %zu", cnt);
        } else {
            CHECK(cnt == 777, "plugin_names wrote its output on failure");
        }
        break;
    case 2:
        memset(&info, 0x5a, sizeof(info));
        st = CALL(nxl_plugin_info(type, (m & 0x80) ? NULL : &info));
        if (st == NXL_OK) {
            CHECK(info.name != NULL &&
                      (info.num_defaults == 0 || info.defaults != NULL),
                  "plugin info");
        }
        break;
    case 3:
        be = nxl_backend_get(ag[k].a, type);
        if (be != NULL) {
            CHECK(strcasecmp(nxl_backend_name(be), type) == 0, "backend_get");
        }
        break;
    case 4:
        if (x->h != NULL) {
            st = CALL(nxl_xfer_telemetry(x->h, (m & 0x80) ? NULL : &t));
            st = CALL(nxl_xfer_backend(x->h, (m & 0x40) ? NULL : &be));
            (void)st;
        }
        break;
    case 5:
        (void)nxl_agent_progress(ag[k].a);
        CHECK(nxl_agent_fd(ag[k].a) >= 0, "agent fd");
        CHECK(strcmp(nxl_agent_name(ag[k].a), ag[k].name) == 0, "name");
        break;
    case 6: /* NULL handles */
        CHECK(CALL(nxl_xfer_post(NULL, NULL)) == NXL_ERR_INVALID_PARAM, "p");
        CHECK(CALL(nxl_xfer_status(NULL)) == NXL_ERR_INVALID_PARAM, "s");
        CHECK(CALL(nxl_xfer_wait(NULL, 0)) == NXL_ERR_INVALID_PARAM, "w");
        CHECK(nxl_agent_progress(NULL) == 0, "progress");
        CHECK(nxl_agent_fd(NULL) == -1 && nxl_agent_name(NULL) == NULL, "fd");
        nxl_xfer_release(NULL);
        nxl_dlist_release(NULL);
        nxl_notif_list_free(NULL);
        nxl_blob_free(NULL);
        nxl_agent_destroy(NULL);
        nxl_mem_free_shared(NULL);
        break;
    default:
        nxl_opts_init(NULL);
        nxl_agent_config_init(NULL);
        break;
    }
}

/* op_backend_create: parameters from the input, on a live agent or a
 * scratch one. TCP always ends with bind_addr=127.0.0.1 (the last value
 * of a key wins), and is never given a NULL item array. */
static void
op_backend_create(rd_t *r)
{
    static const char *const types[] = {"SHM",   "shm", "TCP",  "tcp",
                                        "POSIX", "",    "NOPE", NULL};
    static const char *const keys[] = {
        "num_threads", "split_policy", "split_threshold",  "nt_threshold",
        "num_streams", "port",         "stripe_min_bytes", "api",
        "queue_depth", "bogus",        "bind_addr",        NULL};
    static const char *const vals[] = {"0",
                                       "1",
                                       "2",
                                       "auto",
                                       "always",
                                       "4096",
                                       "-1",
                                       "99999999999999999999",
                                       "1k",
                                       "",
                                       "abc",
                                       "threads",
                                       NULL,
                                       "127.0.0.1",
                                       "18446744073709551615",
                                       "4g"};
    uint8_t m = u8(r), n = u8(r) % 5, i;
    const char *type = types[u8(r) % 8];
    int tcp = type != NULL && strcasecmp(type, "TCP") == 0;
    nxl_param_t p[8];
    nxl_params_t ps = {p, 0};
    nxl_backend_t *be = (nxl_backend_t *)(uintptr_t)0xdead0;
    nxl_agent_t *scratch = NULL;
    int k = pick_agent(r), live = (m & 1) && !(m & 0x40);
    nxl_status_t st;

    for (i = 0; i < n; i++) {
        const char *key = keys[u8(r) % 12], *val = vals[u8(r) % 16];

        if (tcp &&
            (key == NULL || val == NULL || (strcmp(key, "bind_addr") == 0))) {
            continue; /* keep TCP on 127.0.0.1 and creatable */
        }
        if (key != NULL && strcmp(key, "num_threads") == 0 && val != NULL &&
            val[0] >= '3' && val[0] <= '9') {
            val = "2";
        }
        p[ps.count++] = (nxl_param_t){key, val};
    }
    if (tcp) {
        p[ps.count++] = (nxl_param_t){"bind_addr", "127.0.0.1"};
    } else if ((m & 6) == 6) {
        ps.items = NULL;
        ps.count = 1 + (m >> 5);
    } else if ((m & 6) == 4 && !(skip_bits & 4) && ps.count > 0) {
        ps.count = SIZE_MAX / sizeof(nxl_param_t) + 1;
    }
    if (!live) {
        if (nxl_agent_create("S", NULL, &scratch) != NXL_OK) {
            return;
        }
    }
    tr("backend_create %s on %s (%zu params)", type ? type : "(null)",
       live ? ag[k].name : "scratch", ps.count);
    st =
        CALL(nxl_backend_create(live ? ag[k].a : scratch, type,
                                (m & 8) ? NULL : &ps, (m & 0x10) ? NULL : &be));
    if (st != NXL_OK) {
        CHECK(be == (nxl_backend_t *)(uintptr_t)0xdead0,
              "backend_create wrote its output on failure");
    } else if (live) {
        int t = bt_of(type);

        CHECK(t >= 0 && ag[k].be[t] == NULL, "duplicate %s backend", type);
        keep_retire = 1;
        ag[k].be[t] = nxl_backend_get(ag[k].a, type);
        refresh_conn(&ag[k]);
    }
    nxl_agent_destroy(scratch);
}

static void
op_alloc_shared(rd_t *r)
{
    static const size_t sizes[] = {
        0, 1, 4096, 65537, SIZE_MAX, SIZE_MAX - 4095, SIZE_MAX - 8192};
    uint8_t m = u8(r);
    void *p = (void *)(uintptr_t)0xdead0;
    nxl_status_t st;

    st = CALL(nxl_mem_alloc_shared(sizes[m % 7], (m & 0x80) ? NULL : &p));
    if (st != NXL_OK) {
        CHECK(p == (void *)(uintptr_t)0xdead0, "alloc_shared output");
        return;
    }
    CHECK(sizes[m % 7] > 0 && sizes[m % 7] <= 65537, "alloc_shared of %zu",
          sizes[m % 7]);
    memset(p, 1, sizes[m % 7]);
    nxl_mem_free_shared(p);
    if (m & 0x40) {
        nxl_mem_free_shared(arena[AR_HEAP]); /* not ours: a warning */
    }
}

static void
op_scratch_agent(rd_t *r)
{
    nxl_agent_config_t cfg;
    nxl_agent_t *a = (nxl_agent_t *)(uintptr_t)0xdead0;
    char name[300];
    uint8_t m = u8(r), l = u8(r);
    nxl_status_t st;

    nxl_agent_config_init(&cfg);
    cfg.sync_mode =
        (m & 1) ? (nxl_sync_t)(int32_t)u32(r) : (nxl_sync_t)(u8(r) % 3);
    cfg.progress_thread = (m & 2) != 0;
    cfg.progress_delay_us = u32(r) % 2000000u;
    cfg.capture_telemetry = (m & 4) != 0;
    if (m & 8) {
        cfg.listen_thread = 1;
        cfg.listen_addr = "127.0.0.1";
        cfg.listen_port = 0;
    }
    memset(name, 'n', sizeof(name));
    name[l % 300] = '\0';
    st = CALL(nxl_agent_create((m & 0x10) ? NULL : name,
                               (m & 0x20) ? NULL : &cfg,
                               (m & 0x40) ? NULL : &a));
    if (st != NXL_OK) {
        CHECK(a == (nxl_agent_t *)(uintptr_t)0xdead0, "agent output");
        return;
    }
    CHECK(strlen(name) >= 1 && strlen(name) <= NXL__MD_NAME_MAX, "name");
    nxl_agent_destroy(a);
}

static void
op_side_channel(rd_t *r)
{
    int k = pick_agent(r);
    go_t go;
    const nxl_opts_t *o = gen_opts(r, k, &go);
    gl_t gl;
    char buf[300];
    uint8_t m = u8(r);
    nxl_status_t st;

    if (o == NULL || (o->ip_addr != NULL && strcmp(o->ip_addr, "127.0.0.1"))) {
        return;
    }
    switch (m % 4) {
    case 0:
        st = CALL(nxl_md_send(ag[k].a, o));
        break;
    case 1:
        gen_list(r, k, &gl, -1);
        st = CALL(nxl_md_send_partial(ag[k].a, &gl.dl, o));
        break;
    case 2: {
        const char *name = gen_name(r, k, buf);

        /* What a fetch loads is B's metadata: its conn info is B's. */
        st = CALL(nxl_md_fetch(ag[k].a, name, o));
        break;
    }
    default:
        drain_to(1 - k, ag[k].name);
        st = CALL(nxl_md_invalidate_local(ag[k].a, o));
        break;
    }
    /* A send or invalidate_local that failed on this side (a timeout from
     * the opts, say) may still be applied by B's listener later, also
     * after this input: kept agents are not reused after that (found by
     * FUZZ_API_KEEP: B knew A again after the reset had invalidated it). */
    if (st != NXL_OK && m % 4 != 2) {
        keep_retire = 1;
    }
    /* The peer table may have changed behind the model's back: a fetch
     * loads B (into A, or into B itself: refused), a send loads k into B,
     * an invalidate_local drops k from B. Learn what is now loaded. */
    if (k == 0 && ag[1].sc_port != 0) {
        nxl_blob_t b = {0};
        nxl__md_t *md = NULL;

        if (nxl_md_local(ag[1].a, &b) == NXL_OK &&
            nxl__md_decode(b.data, b.len, &md) == NXL_OK) {
            if (m % 4 == 2) {
                learn_load(0, md, st);
            }
            nxl__md_free(md);
        }
        nxl_blob_free(&b);
        if (m % 4 < 2 && nxl_md_local(ag[0].a, &b) == NXL_OK &&
            nxl__md_decode(b.data, b.len, &md) == NXL_OK) {
            learn_load(1, md, st);
            nxl__md_free(md);
        }
        nxl_blob_free(&b);
        if (m % 4 == 3 && st == NXL_OK) {
            forget_peer(1, "A");
        }
    }
}

/* --- per input
 * ------------------------------------------------------------------ */

/* teardown releases everything and checks the model against the library:
 * every modeled registration deregisters exactly, and what remains in
 * the metadata is the conn info alone. */
static void
teardown(void)
{
    nxl_blob_t full = {0}, conn = {0};
    int k, j;
    size_t i;

    for (i = 0; i < MAX_XFERS; i++) {
        if (xfs[i].h != NULL && xfs[i].pending >= 0) {
            completed(&xfs[i], CALL(nxl_xfer_wait(xfs[i].h, 50)));
        }
        nxl_xfer_release(xfs[i].h);
        xfs[i].h = NULL;
    }
    for (i = 0; i < MAX_PREPS; i++) {
        nxl_dlist_release(preps[i].h);
        preps[i].h = NULL;
    }
    for (k = 0; k < 2; k++) {
        ag_t *g = &ag[k];

        for (j = g->nregs - 1; j >= 0; j--) {
            nxl_dlist_t one = {(nxl_mem_t)g->regs[j].kind, &g->regs[j].d, 1};

            CHECK(CALL(nxl_mem_deregister(g->a, &one, NULL)) == NXL_OK,
                  "teardown: %s lost registration 0x%" PRIx64 "+%" PRIu64,
                  g->name, g->regs[j].d.addr, g->regs[j].d.len);
        }
        CHECK(nxl_md_local(g->a, &full) == NXL_OK &&
                  nxl_md_local_partial(g->a, NULL, NULL, &conn) == NXL_OK,
              "teardown metadata");
        CHECK(full.len == conn.len,
              "teardown: %s holds registrations the model does not know "
              "(%zu bytes of metadata, %zu without regions)",
              g->name, full.len, conn.len);
        nxl_blob_free(&full);
        nxl_blob_free(&conn);
    }
    if (keep) {
        keep_reset();
    }
    for (k = 0; k < 2; k++) {
        if (keep && !keep_retire) {
            kept_t *e = &kept[keep_slot][k];

            e->a = ag[k].a;
            e->sc_port = ag[k].sc_port;
            for (j = 0; j < NBT; j++) {
                e->be[j] = ag[k].be[j];
                e->conn[j] = ag[k].conn[j];
            }
            memset(&ag[k], 0, sizeof(ag[k]));
            continue;
        }
        nxl_agent_destroy(ag[k].a);
        for (j = 0; j < NBT; j++) {
            nxl_blob_free(&ag[k].conn[j]);
        }
        memset(&ag[k], 0, sizeof(ag[k]));
    }
    for (i = 0; i < 4; i++) {
        nxl_blob_free(&blobs[i].b);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *v;
    uint8_t *m;

    (void)argc;
    (void)argv;
    setenv("NXL_LOG_LEVEL", "fatal", 1);
    unsetenv("NIXL_LOG_LEVEL");
    unsetenv("NXL_PLUGIN_DIR");
    unsetenv("NIXL_PLUGIN_DIR");
    /* No metadata store: the side channel only, on 127.0.0.1. */
    unsetenv("ETCD_ENDPOINTS");
    unsetenv("NXL_ETCD_ENDPOINTS");
    unsetenv("NIXL_ETCD_ENDPOINTS");
    v = getenv("FUZZ_API_SKIP");
    skip_bits = v ? (unsigned)strtoul(v, NULL, 0) : 0;
    v = getenv("FUZZ_API_LAX_REMOTE");
    strict_remote = !(v != NULL && v[0] == '1');
    v = getenv("FUZZ_API_TRACE");
    trace = v != NULL && v[0] == '1';
    v = getenv("FUZZ_API_KEEP");
    keep = v != NULL && v[0] == '1';

    arena[AR_HEAP] = malloc(ARENA_LEN);
    m = mmap(NULL, BIG_LEN + 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
             -1, 0);
    if (arena[AR_HEAP] == NULL || m == MAP_FAILED ||
        mprotect(m + PAGE, BIG_LEN, PROT_READ | PROT_WRITE) != 0 ||
        nxl_mem_alloc_shared(ARENA_LEN, (void **)&arena[AR_SHARED]) != NXL_OK) {
        abort();
    }
    arena[AR_MMAP] = m + PAGE;
    arena[AR_VOID] = mmap(NULL, 2 * ARENA_LEN, PROT_NONE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    file_fd = memfd_create("fuzz_api", MFD_CLOEXEC);
    if (arena[AR_VOID] == MAP_FAILED || file_fd < 0 ||
        ftruncate(file_fd, ARENA_LEN) != 0) {
        abort();
    }
    memset(arena[AR_HEAP], 0x11, ARENA_LEN);
    memset(arena[AR_MMAP], 0x22, BIG_LEN);
    memset(arena[AR_SHARED], 0x33, ARENA_LEN);
    return 0;
}

typedef void (*op_fn)(rd_t *);

static void
op_md_local0(rd_t *r)
{
    op_md_local(r, 0);
}
static void
op_md_local1(rd_t *r)
{
    op_md_local(r, 1);
}

/* The opcode table: the common paths have several slots. */
static const op_fn ops[32] = {
    op_register,     op_register,      op_register,     op_deregister,
    op_md_local0,    op_md_local1,     op_md_load,      op_md_load,
    op_md_craft,     op_invalidate,    op_check,        op_prep,
    op_prep,         op_prep,          op_xfer_make,    op_xfer_make,
    op_xfer_create,  op_xfer_create,   op_post,         op_post,
    op_post,         op_wait,          op_wait,         op_release,
    op_notif_send,   op_notifs_get,    op_queries,      op_backend_create,
    op_alloc_shared, op_scratch_agent, op_side_channel, op_deregister,
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rd_t r = {data, size, 0};
    uint8_t h0, h1;
    int n;

    if (size < 3) {
        return 0;
    }
    h0 = u8(&r);
    h1 = u8(&r);
    wait_left_ms = WAIT_BUDGET_MS;
    tr("== input of %zu bytes, header %02x %02x", size, h0, h1);
    agents_start(h0, h1);
    /* Both agents start knowing each other (the common case); ops may
     * invalidate and reload. */
    if (!(h0 & 0x80)) {
        int k;

        for (k = 0; k < 2; k++) {
            nxl_blob_t b = {0};

            CHECK(nxl_md_local(ag[1 - k].a, &b) == NXL_OK, "md_local");
            blob_store(1 - k, &b, (uint8_t)(1 - k));
            load(&(rd_t){(const uint8_t *)"\x03", 1, 0}, k, blobs[1 - k].b.data,
                 blobs[1 - k].b.len);
        }
    }
    for (n = 0; n < MAX_OPS && r.i < r.n; n++) {
        uint8_t op = u8(&r);

        tr("op %d: %u", n, (unsigned)(op % 32));
        ops[op % 32](&r);
    }
    teardown();
    return 0;
}
