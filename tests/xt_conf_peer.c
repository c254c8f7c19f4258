/* xt_conf_peer.c - the conformance suite's peer: the forked process, its
 * command loop, and the test process's side of the pipes (see
 * xt_conf.h). */
#include "xt_conf.h"
#include "xt_io.h"

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---------------------------------------------------------------------- */
/* The peer process. */

typedef struct {
    nxl_agent_t *agent;
    uint8_t *reg[CF_NREG];
    uint64_t len[CF_NREG];
    int extra_shared; /* reg[CF_REG_EXTRA] is nxl_mem_alloc_shared */
    cf_nq q;
} cf_pstate;

static nxl_status_t
cf_peer_setup(cf_pstate *ps, const cf_peer_cfg *cfg, cf_hello *h)
{
    nxl_status_t st;
    void *p = NULL;

    st = cf_agent(cfg->name ? cfg->name : "peer", CF_PROGRESS, &ps->agent);
    if (st != NXL_OK) {
        return st;
    }
    if (posix_memalign(&p, 4096, cfg->heap_len) != 0) {
        return NXL_ERR_NOMEM;
    }
    memset(p, 0, cfg->heap_len);
    ps->reg[CF_REG_HEAP] = p;
    ps->len[CF_REG_HEAP] = cfg->heap_len;
    st = cf_reg(ps->agent, p, cfg->heap_len);
    if (st != NXL_OK) {
        return st;
    }
    if (cfg->shared_len > 0) {
        st = nxl_mem_alloc_shared(cfg->shared_len, &p);
        if (st != NXL_OK) {
            return st;
        }
        ps->reg[CF_REG_SHARED] = p;
        ps->len[CF_REG_SHARED] = cfg->shared_len;
        st = cf_reg(ps->agent, p, cfg->shared_len);
        if (st != NXL_OK) {
            return st;
        }
    }
    h->pid = (int)getpid();
    h->port = nxl_agent_listen_port(ps->agent);
    return NXL_OK;
}

/* cf_peer_range points *p_p at [off, off + len) of a region. */
static int
cf_peer_range(cf_pstate *ps, const cf_cmd *c, uint64_t span, uint8_t **p_p,
              cf_rep *r)
{
    if (c->region < 0 || c->region >= CF_NREG || ps->reg[c->region] == NULL ||
        c->off > ps->len[c->region] || span > ps->len[c->region] - c->off) {
        r->status = -1;
        snprintf(r->err, sizeof(r->err), "peer: range outside region %d",
                 c->region);
        return -1;
    }
    *p_p = ps->reg[c->region] + c->off;
    return 0;
}

/* cf_peer_touch brackets the peer's own accesses to a region that the
 * test process reads or writes with one-sided transfers: ordered through
 * the test's pipes and the network, which ThreadSanitizer cannot see
 * (xt_tsan_acquire, harness.h). begin = 1 before, 0 after. */
static void
cf_peer_touch(const cf_pstate *ps, int region, int begin)
{
    if (region < 0 || region >= CF_NREG || ps->reg[region] == NULL) {
        return;
    }
    if (begin) {
        xt_tsan_acquire(ps->reg[region]);
    } else {
        xt_tsan_release(ps->reg[region]);
    }
}

static void
cf_peer_status(cf_rep *r, nxl_status_t st)
{
    r->status = st;
    if (st < 0) {
        snprintf(r->err, sizeof(r->err), "%s", nxl_last_error());
    }
}

/* cf_peer_handle runs one command; *blob_p gets bytes to send after the
 * reply (library-owned blob). */
static void
cf_peer_handle(cf_pstate *ps, const cf_cmd *c, cf_rep *r, nxl_blob_t *blob)
{
    nxl_desc_t d, rd;
    nxl_dlist_t dl, rl;
    nxl_opts_t o;
    nxl_xfer_t *x = NULL;
    nxl_status_t st;
    cf_notif n;
    uint8_t *p = NULL;
    uint64_t k, bad, t0, c0;
    void *mem = NULL;

    switch (c->op) {
    case CF_OP_FILL:
        if (cf_peer_range(ps, c, c->len, &p, r) == 0) {
            cf_peer_touch(ps, c->region, 1);
            cf_fill(p, c->len, c->seed, c->off);
            cf_peer_touch(ps, c->region, 0);
        }
        break;
    case CF_OP_CHECK:
        if (cf_peer_range(ps, c, c->len, &p, r) == 0) {
            cf_peer_touch(ps, c->region, 1);
            bad = cf_find_bad(p, c->len, c->seed, c->off);
            cf_peer_touch(ps, c->region, 0);
            r->status = bad != c->len;
            r->value = bad;
            if (bad != c->len) {
                snprintf(r->err, sizeof(r->err),
                         "byte %" PRIu64 " of %" PRIu64
                         " is 0x%02x, want 0x%02x",
                         bad, c->len, p[bad], cf_pat(c->seed, c->off + bad));
            }
        }
        break;
    case CF_OP_CHECK_STRIDED:
        if (c->stride < c->len ||
            cf_peer_range(ps, c, c->stride * c->count, &p, r) != 0) {
            r->status = -1;
            break;
        }
        cf_peer_touch(ps, c->region, 1);
        for (k = 0; k < c->count; k++) {
            uint64_t o0 = c->off + k * c->stride;

            bad = cf_find_bad(p + k * c->stride, c->len, c->seed, o0);
            if (bad == c->len) {
                bad = cf_find_bad(p + k * c->stride + c->len,
                                  c->stride - c->len, c->seed2, o0 + c->len);
                if (bad == c->stride - c->len) {
                    continue;
                }
                bad += c->len;
            }
            r->status = 1;
            r->value = k * c->stride + bad;
            snprintf(r->err, sizeof(r->err),
                     "slot %" PRIu64 " byte %" PRIu64 " wrong", k, bad);
            break;
        }
        cf_peer_touch(ps, c->region, 0);
        break;
    case CF_OP_NOTIF_WAIT:
        st = cf_nq_next(ps->agent, &ps->q, c->arg, &n);
        cf_peer_status(r, st);
        if (st != NXL_OK) {
            break;
        }
        /* The data must be visible once the notification is seen. */
        r->value2 = 1;
        if (c->len > 0 && cf_peer_range(ps, c, c->len, &p, r) == 0) {
            cf_peer_touch(ps, c->region, 1);
            bad = cf_find_bad(p, c->len, c->seed, c->off);
            cf_peer_touch(ps, c->region, 0);
            r->value2 = bad == c->len;
            r->value = bad;
        }
        memcpy(r->name, n.agent, sizeof(r->name));
        memcpy(r->msg, n.msg, sizeof(r->msg));
        r->msg_len = (uint32_t)n.len;
        break;
    case CF_OP_NOTIF_NONE:
        st = cf_nq_next(ps->agent, &ps->q, c->arg, &n);
        if (st == NXL_OK) {
            r->status = 1;
            memcpy(r->name, n.agent, sizeof(r->name));
            memcpy(r->msg, n.msg, sizeof(r->msg));
            r->msg_len = (uint32_t)n.len;
        } else if (st != NXL_ERR_TIMEOUT) {
            cf_peer_status(r, st);
        }
        break;
    case CF_OP_NOTIF_SEND:
        cf_peer_status(
            r, nxl_notif_send(ps->agent, c->name, c->msg, c->msg_len, NULL));
        break;
    case CF_OP_MD_GET:
        d = (nxl_desc_t){0, 0, 0};
        if (c->arg != CF_MD_FULL && c->arg != CF_MD_CONN_ONLY) {
            if (c->region < 0 || c->region >= CF_NREG ||
                ps->reg[c->region] == NULL) {
                r->status = -1;
                break;
            }
            d = (nxl_desc_t){(uintptr_t)ps->reg[c->region], ps->len[c->region],
                             0};
        }
        nxl_opts_init(&o);
        o.include_conn_info = c->arg == CF_MD_DESCS_CONN;
        dl = cf_dl(c->arg == CF_MD_CONN_ONLY ? NULL : &d,
                   c->arg == CF_MD_CONN_ONLY ? 0 : 1);
        st = c->arg == CF_MD_FULL
                 ? nxl_md_local(ps->agent, blob)
                 : nxl_md_local_partial(ps->agent, &dl, &o, blob);
        cf_peer_status(r, st);
        if (st == NXL_OK) {
            r->blob_len = blob->len;
        }
        break;
    case CF_OP_MD_FETCH:
        cf_opts_peer(&o, c->port);
        cf_peer_status(
            r, nxl_md_fetch(ps->agent, c->name[0] ? c->name : NULL, &o));
        break;
    case CF_OP_MD_SEND:
        cf_opts_peer(&o, c->port);
        cf_peer_status(r, nxl_md_send(ps->agent, &o));
        break;
    case CF_OP_MD_INVAL_LOCAL:
        cf_opts_peer(&o, c->port);
        cf_peer_status(r, nxl_md_invalidate_local(ps->agent, &o));
        break;
    case CF_OP_MD_CHECK:
        d = (nxl_desc_t){c->raddr, c->len, 0};
        dl = cf_dl(&d, 1);
        cf_peer_status(
            r, nxl_md_check(ps->agent, c->name, c->len > 0 ? &dl : NULL));
        break;
    case CF_OP_DEREG_EXTRA:
        if (ps->reg[CF_REG_EXTRA] == NULL) {
            r->status = -1;
            break;
        }
        cf_peer_status(r, cf_dereg(ps->agent, ps->reg[CF_REG_EXTRA],
                                   ps->len[CF_REG_EXTRA]));
        break;
    case CF_OP_REG_HALF:
        if (ps->reg[CF_REG_EXTRA] == NULL) {
            r->status = -1;
            break;
        }
        cf_peer_status(r, cf_reg(ps->agent, ps->reg[CF_REG_EXTRA],
                                 ps->len[CF_REG_EXTRA] / 2));
        break;
    case CF_OP_REG_EXTRA:
        mem = NULL;
        if (ps->reg[CF_REG_EXTRA] != NULL ||
            (c->arg == 1 ? nxl_mem_alloc_shared(c->len, &mem) != NXL_OK
                         : posix_memalign(&mem, 4096, c->len) != 0)) {
            r->status = -1;
            break;
        }
        memset(mem, 0, c->len);
        st = cf_reg(ps->agent, mem, c->len);
        cf_peer_status(r, st);
        if (st == NXL_OK) {
            ps->reg[CF_REG_EXTRA] = mem;
            ps->extra_shared = c->arg == 1;
            ps->len[CF_REG_EXTRA] = c->len;
            r->value = (uintptr_t)mem;
        } else if (c->arg == 1) {
            nxl_mem_free_shared(mem);
        } else {
            free(mem);
        }
        break;
    case CF_OP_XFER:
        if (cf_peer_range(ps, c, c->len, &p, r) != 0) {
            break;
        }
        d = (nxl_desc_t){(uintptr_t)p, c->len, 0};
        rd = (nxl_desc_t){c->raddr, c->len, 0};
        dl = cf_dl(&d, 1);
        rl = cf_dl(&rd, 1);
        st = nxl_xfer_create(ps->agent, (nxl_op_t)c->arg, &dl, &rl, c->name,
                             NULL, &x);
        if (st == NXL_OK) {
            st = cf_run(x, NULL);
        }
        cf_peer_status(r, st);
        nxl_xfer_release(x);
        break;
    case CF_OP_IDLE_CPU:
        t0 = xt_now_ms();
        c0 = cf_cpu_us();
        usleep((useconds_t)c->arg * 1000u);
        r->value = cf_cpu_us() - c0;
        r->value2 = (xt_now_ms() - t0) * 1000u;
        break;
    default:
        r->status = -1;
        snprintf(r->err, sizeof(r->err), "peer: unknown op %d", c->op);
        break;
    }
}

/* cf_peer_main is the body of the forked peer; it never returns. */
static void
cf_peer_main(const cf_peer_cfg *cfg, int cmd_fd, int rep_fd)
{
    static cf_pstate ps;
    nxl_blob_t blob;
    cf_hello h;
    cf_cmd c;
    cf_rep r;
    nxl_status_t st;
    int i;

    if (cfg->deferred) {
        if (xt_read_all(cmd_fd, &c, sizeof(c)) != 0 || c.op != CF_OP_START) {
            _exit(2);
        }
    }
    memset(&h, 0, sizeof(h));
    st = cf_peer_setup(&ps, cfg, &h);
    h.status = st;
    if (st != NXL_OK) {
        snprintf(h.err, sizeof(h.err), "%s", nxl_last_error());
    }
    for (i = 0; i < CF_NREG; i++) {
        h.addr[i] = (uintptr_t)ps.reg[i];
        h.len[i] = ps.len[i];
    }
    if (xt_write_all(rep_fd, &h, sizeof(h)) != 0 || st != NXL_OK) {
        _exit(2);
    }
    for (;;) {
        if (xt_read_all(cmd_fd, &c, sizeof(c)) != 0) {
            _exit(2);
        }
        if (c.op == CF_OP_EXIT) {
            break;
        }
        memset(&r, 0, sizeof(r));
        blob.data = NULL;
        blob.len = 0;
        cf_peer_handle(&ps, &c, &r, &blob);
        if (xt_write_all(rep_fd, &r, sizeof(r)) != 0 ||
            (r.blob_len > 0 &&
             xt_write_all(rep_fd, blob.data, blob.len) != 0)) {
            _exit(2);
        }
        nxl_blob_free(&blob);
    }
    nxl_agent_destroy(ps.agent);
    if (ps.reg[CF_REG_SHARED] != NULL) {
        nxl_mem_free_shared(ps.reg[CF_REG_SHARED]);
    }
    free(ps.reg[CF_REG_HEAP]);
    if (ps.extra_shared) {
        nxl_mem_free_shared(ps.reg[CF_REG_EXTRA]);
    } else {
        free(ps.reg[CF_REG_EXTRA]);
    }
    memset(&r, 0, sizeof(r));
    (void)xt_write_all(rep_fd, &r, sizeof(r));
    /* exit(), not _exit(): under ASan the leak checker runs here. */
    exit(0);
}

/* ---------------------------------------------------------------------- */
/* The test process's side of the peer. */

static int
cf_peer_hello(cf_peer *p)
{
    if (xt_read_all(p->rep_fd, &p->hello, sizeof(p->hello)) != 0) {
        XT_FAILF("peer %s (pid %d) died before its hello", p->name,
                 (int)p->pid);
    }
    if (p->hello.status != NXL_OK) {
        XT_FAILF("peer setup failed: %s (%s)",
                 nxl_status_name((nxl_status_t)p->hello.status), p->hello.err);
    }
    return 0;
}

/* cf_peer_enter moves a just-forked peer into its namespace and makes
 * its addresses and backend params those of that side; on failure it
 * answers the hello with the error and exits. */
static void
cf_peer_enter(int rep_fd)
{
    cf_hello h;

    if (xt_netns_enter(cf_env.peer_ns, true) != 0) {
        memset(&h, 0, sizeof(h));
        h.status = NXL_ERR_IO;
        snprintf(h.err, sizeof(h.err), "peer: setns %s: %s", cf_env.peer_ns,
                 strerror(errno));
        (void)xt_write_all(rep_fd, &h, sizeof(h));
        _exit(2);
    }
    cf_env.self = XT_RIG_ADDR_B;
    cf_env.other = XT_RIG_ADDR_A;
    cf_net_params();
}

int
cf_spawn(cf_peer *p, const cf_peer_cfg *cfg)
{
    int cp[2], rp[2];
    pid_t parent = getpid(), pid;

    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", cfg->name ? cfg->name : "peer");
    XT_ASSERT(pipe(cp) == 0);
    XT_ASSERT(pipe(rp) == 0);
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    XT_ASSERT(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(3);
        }
        close(cp[1]);
        close(rp[0]);
        if (cf_env.peer_ns[0] != '\0') {
            cf_peer_enter(rp[1]);
        }
        cf_peer_main(cfg, cp[0], rp[1]);
        _exit(4);
    }
    close(cp[0]);
    close(rp[1]);
    p->pid = pid;
    p->cmd_fd = cp[1];
    p->rep_fd = rp[0];
    if (!cfg->deferred) {
        return cf_peer_hello(p);
    }
    return 0;
}

int
cf_send(cf_peer *p, const cf_cmd *c)
{
    if (xt_write_all(p->cmd_fd, c, sizeof(*c)) != 0) {
        XT_FAILF("peer %s (pid %d): command pipe broken", p->name, (int)p->pid);
    }
    return 0;
}

int
cf_recv(cf_peer *p, cf_rep *r, void **blob_p)
{
    void *b;

    if (xt_read_all(p->rep_fd, r, sizeof(*r)) != 0) {
        XT_FAILF("peer %s (pid %d) died", p->name, (int)p->pid);
    }
    snprintf(p->err, sizeof(p->err), "%s", r->err);
    if (r->blob_len > 0) {
        b = malloc(r->blob_len);
        XT_ASSERT(b != NULL);
        if (xt_read_all(p->rep_fd, b, r->blob_len) != 0) {
            free(b);
            XT_FAILF("peer %s died sending a blob", p->name);
        }
        if (blob_p != NULL) {
            *blob_p = b;
        } else {
            free(b);
        }
    }
    return 0;
}

int
cf_call(cf_peer *p, const cf_cmd *c, cf_rep *r)
{
    if (cf_send(p, c) != 0) {
        return 1;
    }
    return cf_recv(p, r, NULL);
}

cf_cmd
cf_cmd_of(int op)
{
    cf_cmd c;

    memset(&c, 0, sizeof(c));
    c.op = op;
    return c;
}

int
cf_peer_start(cf_peer *p)
{
    cf_cmd c = cf_cmd_of(CF_OP_START);

    if (cf_send(p, &c) != 0) {
        return 1;
    }
    return cf_peer_hello(p);
}

uint64_t
cf_raddr(const cf_peer *p, int region, uint64_t off)
{
    return p->hello.addr[region] + off;
}

int
cf_pfill(cf_peer *p, int region, uint64_t off, uint64_t len, uint32_t seed)
{
    cf_cmd c = cf_cmd_of(CF_OP_FILL);
    cf_rep r;

    c.region = region;
    c.off = off;
    c.len = len;
    c.seed = seed;
    if (cf_call(p, &c, &r) != 0) {
        return 1;
    }
    if (r.status != 0) {
        XT_FAILF("peer fill: %s", r.err);
    }
    return 0;
}

int
cf_pcheck(cf_peer *p, int region, uint64_t off, uint64_t len, uint32_t seed,
          const char *what)
{
    cf_cmd c = cf_cmd_of(CF_OP_CHECK);
    cf_rep r;

    c.region = region;
    c.off = off;
    c.len = len;
    c.seed = seed;
    if (cf_call(p, &c, &r) != 0) {
        return 1;
    }
    if (r.status != 0) {
        XT_FAILF("%s: peer data wrong at [%" PRIu64 "+%" PRIu64 "): %s", what,
                 off, len, r.err);
    }
    return 0;
}

nxl_status_t
cf_pmd_check(cf_peer *p, const char *name, uint64_t addr, uint64_t len)
{
    cf_cmd c = cf_cmd_of(CF_OP_MD_CHECK);
    cf_rep r;

    snprintf(c.name, sizeof(c.name), "%s", name);
    c.raddr = addr;
    c.len = len;
    if (cf_call(p, &c, &r) != 0) {
        return NXL_ERR_UNKNOWN;
    }
    return (nxl_status_t)r.status;
}

nxl_status_t
cf_pmd(cf_peer *p, int op, uint16_t port, const char *name)
{
    cf_cmd c = cf_cmd_of(op);
    cf_rep r;

    c.port = port;
    if (name != NULL) {
        snprintf(c.name, sizeof(c.name), "%s", name);
    }
    if (cf_call(p, &c, &r) != 0) {
        return NXL_ERR_UNKNOWN;
    }
    return (nxl_status_t)r.status;
}

int
cf_pblob(cf_peer *p, int kind, int region, void **data_p, size_t *len_p)
{
    cf_cmd c = cf_cmd_of(CF_OP_MD_GET);
    cf_rep r;
    void *b = NULL;

    c.arg = kind;
    c.region = region;
    if (cf_send(p, &c) != 0 || cf_recv(p, &r, &b) != 0) {
        return 1;
    }
    if (r.status != NXL_OK || b == NULL) {
        free(b);
        XT_FAILF("peer metadata (kind %d): %s (%s)", kind,
                 nxl_status_name((nxl_status_t)r.status), r.err);
    }
    *data_p = b;
    *len_p = r.blob_len;
    return 0;
}

int
cf_pnone(cf_peer *p, int ms)
{
    cf_cmd c = cf_cmd_of(CF_OP_NOTIF_NONE);
    cf_rep r;

    c.arg = ms;
    if (cf_call(p, &c, &r) != 0) {
        return 1;
    }
    if (r.status != 0) {
        XT_FAILF("peer got an unexpected notification from \"%s\" "
                 "(%u bytes \"%.*s\") or failed: %s",
                 r.name, r.msg_len,
                 (int)(r.msg_len < CF_MSG_MAX ? r.msg_len : CF_MSG_MAX), r.msg,
                 r.err);
    }
    return 0;
}

int
cf_pstop(cf_peer *p)
{
    cf_cmd c = cf_cmd_of(CF_OP_EXIT);
    cf_rep r;
    int ws = 0;

    if (p->pid <= 0) {
        return 0;
    }
    if (cf_send(p, &c) != 0 || cf_recv(p, &r, NULL) != 0) {
        return 1;
    }
    while (waitpid(p->pid, &ws, 0) < 0 && errno == EINTR) {
    }
    close(p->cmd_fd);
    close(p->rep_fd);
    p->pid = -1;
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
        XT_FAILF("peer %s exited with status 0x%x", p->name, ws);
    }
    return 0;
}

void
cf_pkill(cf_peer *p)
{
    int ws;

    if (p->pid <= 0) {
        return;
    }
    kill(p->pid, SIGKILL);
    while (waitpid(p->pid, &ws, 0) < 0 && errno == EINTR) {
    }
    close(p->cmd_fd);
    close(p->rep_fd);
    p->pid = -1;
}

nxl_status_t
cf_fetch(nxl_agent_t *a, const cf_peer *p)
{
    nxl_opts_t o;

    cf_opts_peer(&o, p->hello.port);
    return nxl_md_fetch(a, p->name, &o);
}

int
cf_setup(cf_peer *p, uint64_t heap, uint64_t shared, unsigned flags,
         nxl_agent_t **a_p)
{
    cf_peer_cfg pc = {NULL, heap, shared, 0};

    if (cf_spawn(p, &pc) != 0) {
        return 1;
    }
    XT_ASSERT_OK(cf_agent("main", flags, a_p));
    XT_ASSERT_OK(cf_fetch(*a_p, p));
    return 0;
}
