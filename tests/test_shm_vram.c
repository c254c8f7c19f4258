/*
 * test_shm_vram.c - VRAM over the SHM backend: device allocations opened
 * by a peer of the same host with the device kind's IPC handles.
 *
 * The device kind is picked by probe in every process (after fork, since
 * CUDA does not survive one): the CUDA kind where it runs (a GPU host),
 * else the fake device of xt_fakedev.c, whose memfd-backed allocations a
 * peer maps through pidfd_getfd. Device memory is only ever touched
 * through the kind's copy, so the cases hold for both.
 *
 * Two-process cases fork a "target" that makes its own agent, allocates
 * one device allocation with two VRAM registrations inside it, a plain
 * DRAM region and a shared (memfd) DRAM region, and sends its metadata
 * over a SOCK_SEQPACKET socketpair; it then answers checksum commands and
 * checks, when a notification arrives, that the data it announces is
 * already in place.
 */
#include "backends/shm/shm.h"
#include "harness.h"
#include "util.h"
#include "xt_fakedev.h"
#include "xt_host.h"
#include "xt_xfer.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define SV_ALLOC (256u * 1024u) /* the target's device allocation */
#define SV_REG (96u * 1024u)    /* each of its two VRAM registrations */
#define SV_DRAM (64u * 1024u)   /* its DRAM regions */
#define SV_WAIT_MS 5000
#define SV_TARGET "vram-target"

/* Which of the target's regions a command names. */
enum { SV_VRAM = 0, SV_PLAIN = 1, SV_SHARED = 2 };
enum { SV_CMD_SUM = 1, SV_CMD_NOTIF = 2, SV_CMD_EXIT = 3 };

typedef struct sv_cmd {
    uint32_t cmd;
    uint32_t which;
    uint64_t off;
    uint64_t len;
} sv_cmd;

typedef struct sv_reply {
    int32_t status;
    uint32_t pad;
    uint64_t hash;
} sv_reply;

/* The target's hello: region addresses, then its metadata blob. */
typedef struct sv_hello {
    uint64_t addr[3];
    uint64_t md_len;
} sv_hello;

static int sv_fake; /* the fake device is the device kind */

/* sv_kind installs the device kind for this process: CUDA when it probes
 * OK, else the fake. Returns it. */
static const nxl_memkind_ops_t *
sv_kind(void)
{
    const nxl_memkind_ops_t *cu = nxl_memkind_cuda();

    if (cu->probe() == NXL_OK) {
        nxl_memkind_set_device(NULL);
        sv_fake = 0;
        return cu;
    }
    xt_fakedev_install();
    sv_fake = 1;
    return xt_fakedev_ops();
}

/* sv_pat fills len bytes with a pattern of seed starting at offset off. */
static void
sv_pat(uint8_t *p, size_t off, size_t len, unsigned seed)
{
    size_t i;

    for (i = 0; i < len; i++) {
        size_t k = off + i;

        p[i] = (uint8_t)(seed * 31u + k * 7u + (k >> 9));
    }
}

/* sv_dev_hash reads len device bytes at p through the kind and hashes
 * them. */
static nxl_status_t
sv_dev_hash(const nxl_memkind_ops_t *dk, const void *p, size_t len,
            uint64_t *h_p)
{
    uint8_t *buf = malloc(len);
    nxl_status_t st;

    if (buf == NULL) {
        return NXL_ERR_NOMEM;
    }
    st = dk->copy(buf, p, len, NXL_COPY_D2H);
    if (st == NXL_OK) {
        *h_p = nxl__hash64(buf, len);
    }
    free(buf);
    return st;
}

/* sv_dev_fill writes the pattern of seed (offsets from off) to len device
 * bytes at p. */
static nxl_status_t
sv_dev_fill(const nxl_memkind_ops_t *dk, void *p, size_t off, size_t len,
            unsigned seed)
{
    uint8_t *buf = malloc(len);
    nxl_status_t st;

    if (buf == NULL) {
        return NXL_ERR_NOMEM;
    }
    sv_pat(buf, off, len, seed);
    st = dk->copy(p, buf, len, NXL_COPY_H2D);
    free(buf);
    return st;
}

/* sv_agent makes an agent called name with the SHM backend only. */
static nxl_status_t
sv_agent(const char *name, nxl_agent_t **a_p)
{
    nxl_backend_t *be;
    nxl_status_t st;

    st = nxl_agent_create(name, NULL, a_p);
    if (st != NXL_OK) {
        return st;
    }
    st = nxl_backend_create(*a_p, "SHM", NULL, &be);
    if (st != NXL_OK) {
        nxl_agent_destroy(*a_p);
        *a_p = NULL;
    }
    return st;
}

/* sv_reg registers [addr, addr + len) of kind mem (dev_id 0). */
static nxl_status_t
sv_reg(nxl_agent_t *a, nxl_mem_t mem, const void *addr, size_t len)
{
    nxl_desc_t d = {(uint64_t)(uintptr_t)addr, len, 0};
    nxl_dlist_t dl = {mem, &d, 1};

    return nxl_mem_register(a, &dl, NULL);
}

/* sv_xfer creates a transfer of one descriptor pair (local lm at l, remote
 * rm at r on peer), optionally with a notification; *x_p on success. */
static nxl_status_t
sv_xfer(nxl_agent_t *a, nxl_op_t op, nxl_mem_t lm, const void *l, nxl_mem_t rm,
        uint64_t r, size_t len, const char *peer, const char *notif,
        nxl_xfer_t **x_p)
{
    nxl_desc_t ld = {(uint64_t)(uintptr_t)l, len, 0}, rd = {r, len, 0};
    nxl_dlist_t ll = {lm, &ld, 1}, rl = {rm, &rd, 1};
    nxl_opts_t o;

    nxl_opts_init(&o);
    if (notif != NULL) {
        o.has_notif = 1;
        o.notif = notif;
        o.notif_len = strlen(notif);
    }
    return nxl_xfer_create(a, op, &ll, &rl, peer, &o, x_p);
}

/* sv_run posts x and waits for it. */
static nxl_status_t
sv_run(nxl_xfer_t *x)
{
    return xt_xfer_run(x, NULL, SV_WAIT_MS);
}

/* sv_move is sv_xfer + sv_run + release. */
static nxl_status_t
sv_move(nxl_agent_t *a, nxl_op_t op, nxl_mem_t lm, const void *l, nxl_mem_t rm,
        uint64_t r, size_t len, const char *peer, const char *notif)
{
    nxl_xfer_t *x = NULL;
    nxl_status_t st;

    st = sv_xfer(a, op, lm, l, rm, r, len, peer, notif, &x);
    if (st != NXL_OK) {
        return st;
    }
    st = sv_run(x);
    nxl_xfer_release(x);
    return st;
}

/* --- the target process ------------------------------------------------ */

typedef struct sv_target {
    const nxl_memkind_ops_t *dk;
    nxl_agent_t *a;
    uint8_t *vram;
    uint8_t *plain;
    uint8_t *shared;
} sv_target;

/* sv_target_hash hashes [off, off + len) of region which (0 on a bad
 * range). */
static uint64_t
sv_target_hash(sv_target *t, uint32_t which, uint64_t off, uint64_t len)
{
    uint64_t h = 0, size = which == SV_VRAM ? SV_ALLOC : SV_DRAM;

    if (which > SV_SHARED || off > size || len > size - off || len == 0) {
        return 0;
    }
    if (which == SV_VRAM) {
        if (sv_dev_hash(t->dk, t->vram + off, (size_t)len, &h) != NXL_OK) {
            return 0;
        }
        return h;
    }
    return nxl__hash64((which == SV_PLAIN ? t->plain : t->shared) + off,
                       (size_t)len);
}

/* sv_target_notif waits for one notification "sum:<which>:<off>:<len>"
 * and hashes the range it names at once. */
static sv_reply
sv_target_notif(sv_target *t)
{
    sv_reply rep = {NXL_ERR_TIMEOUT, 0, 0};
    nxl_notif_list_t *nl = NULL;
    uint64_t t0 = xt_now_ms();
    unsigned which;
    unsigned long long off, len;
    char buf[96];

    while (xt_now_ms() - t0 < SV_WAIT_MS) {
        if (nxl_notifs_get(t->a, &nl, NULL) != NXL_OK) {
            rep.status = NXL_ERR_BACKEND;
            return rep;
        }
        if (nl != NULL && nl->count > 0) {
            size_t n = NXL__MIN(nl->items[0].len, sizeof(buf) - 1);

            memcpy(buf, nl->items[0].msg, n);
            buf[n] = '\0';
            rep.status = NXL_ERR_PROTO;
            if (sscanf(buf, "sum:%u:%llu:%llu", &which, &off, &len) == 3) {
                rep.hash = sv_target_hash(t, which, off, len);
                rep.status = NXL_OK;
            }
            nxl_notif_list_free(nl);
            return rep;
        }
        nxl_notif_list_free(nl);
        nl = NULL;
        usleep(1000);
    }
    return rep;
}

/* sv_target_run is the target's life: set up, send the hello, serve. */
static int
sv_target_run(int fd)
{
    uint8_t msg[sizeof(sv_hello) + 65536];
    sv_target t = {0};
    sv_hello hello;
    nxl_blob_t md = {0};
    sv_cmd cmd;
    sv_reply rep;
    void *p = NULL;
    ssize_t n;

    t.dk = sv_kind();
    if (t.dk->alloc(0, SV_ALLOC, &p) != NXL_OK) {
        return 10;
    }
    t.vram = p;
    if (sv_dev_fill(t.dk, t.vram, 0, SV_ALLOC, 1) != NXL_OK) {
        return 11;
    }
    t.plain = malloc(SV_DRAM);
    if (t.plain == NULL || nxl_mem_alloc_shared(SV_DRAM, &p) != NXL_OK) {
        return 12;
    }
    t.shared = p;
    sv_pat(t.plain, 0, SV_DRAM, 2);
    sv_pat(t.shared, 0, SV_DRAM, 3);
    if (sv_agent(SV_TARGET, &t.a) != NXL_OK ||
        sv_reg(t.a, NXL_VRAM, t.vram, SV_REG) != NXL_OK ||
        sv_reg(t.a, NXL_VRAM, t.vram + SV_REG, SV_REG) != NXL_OK ||
        sv_reg(t.a, NXL_DRAM, t.plain, SV_DRAM) != NXL_OK ||
        sv_reg(t.a, NXL_DRAM, t.shared, SV_DRAM) != NXL_OK ||
        nxl_md_local(t.a, &md) != NXL_OK || md.len > 65536) {
        fprintf(stderr, "target: setup: %s\n", nxl_last_error());
        return 13;
    }
    hello.addr[SV_VRAM] = (uint64_t)(uintptr_t)t.vram;
    hello.addr[SV_PLAIN] = (uint64_t)(uintptr_t)t.plain;
    hello.addr[SV_SHARED] = (uint64_t)(uintptr_t)t.shared;
    hello.md_len = md.len;
    memcpy(msg, &hello, sizeof(hello));
    memcpy(msg + sizeof(hello), md.data, md.len);
    if (send(fd, msg, sizeof(hello) + md.len, 0) < 0) {
        return 14;
    }
    nxl_blob_free(&md);
    for (;;) {
        n = recv(fd, &cmd, sizeof(cmd), 0);
        if (n != (ssize_t)sizeof(cmd)) {
            return 15; /* the initiator went away */
        }
        memset(&rep, 0, sizeof(rep));
        switch (cmd.cmd) {
        case SV_CMD_SUM:
            rep.hash = sv_target_hash(&t, cmd.which, cmd.off, cmd.len);
            break;
        case SV_CMD_NOTIF:
            rep = sv_target_notif(&t);
            break;
        case SV_CMD_EXIT:
            nxl_agent_destroy(t.a);
            t.dk->free(0, t.vram, SV_ALLOC);
            free(t.plain);
            nxl_mem_free_shared(t.shared);
            rep.status = (int32_t)xt_leaks();
            if (send(fd, &rep, sizeof(rep), 0) < 0) {
                return 16;
            }
            return 0;
        default:
            rep.status = NXL_ERR_INVALID_PARAM;
            break;
        }
        if (send(fd, &rep, sizeof(rep), 0) < 0) {
            return 16;
        }
    }
}

/* --- the initiator side ------------------------------------------------ */

typedef struct sv_child {
    pid_t pid;
    int fd;
    uint64_t addr[3];
    uint8_t *md;
    size_t md_len;
} sv_child;

/* sv_spawn forks the target and reads its hello. */
static int
sv_spawn(sv_child *c)
{
    uint8_t msg[sizeof(sv_hello) + 65536];
    sv_hello hello;
    int sv[2];
    ssize_t n;

    XT_ASSERT(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    fflush(stdout);
    fflush(stderr);
    c->pid = fork();
    XT_ASSERT(c->pid >= 0);
    if (c->pid == 0) {
        close(sv[0]);
        _exit(sv_target_run(sv[1]));
    }
    close(sv[1]);
    c->fd = sv[0];
    n = recv(c->fd, msg, sizeof(msg), 0);
    XT_ASSERT(n >= (ssize_t)sizeof(hello));
    memcpy(&hello, msg, sizeof(hello));
    XT_ASSERT_EQ(hello.md_len, (uint64_t)n - sizeof(hello));
    memcpy(c->addr, hello.addr, sizeof(c->addr));
    c->md_len = (size_t)hello.md_len;
    c->md = malloc(c->md_len);
    XT_ASSERT(c->md != NULL);
    memcpy(c->md, msg + sizeof(hello), c->md_len);
    return 0;
}

/* sv_ask sends a command and returns the reply (status -1 on a dead
 * target). */
static sv_reply
sv_ask(sv_child *c, uint32_t cmd, uint32_t which, uint64_t off, uint64_t len)
{
    sv_cmd m = {cmd, which, off, len};
    sv_reply rep = {-1, 0, 0};

    if (send(c->fd, &m, sizeof(m), 0) != (ssize_t)sizeof(m) ||
        recv(c->fd, &rep, sizeof(rep), 0) != (ssize_t)sizeof(rep)) {
        rep.status = -1;
    }
    return rep;
}

/* sv_reap ends the target (asking it to exit unless killed) and returns
 * its exit code. */
static int
sv_reap(sv_child *c, int ask)
{
    sv_reply rep = {0, 0, 0};
    int status = 0;

    if (ask) {
        rep = sv_ask(c, SV_CMD_EXIT, 0, 0, 0);
    }
    close(c->fd);
    while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR) {
    }
    free(c->md);
    c->md = NULL;
    if (ask && rep.status != 0) {
        return 100 + rep.status;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* sv_load makes the initiator's agent and loads the target's metadata; a
 * host that forbids CMA (the peer probe) skips. */
static int
sv_load(sv_child *c, const char *name, nxl_agent_t **a_p)
{
    char peer[64];
    nxl_status_t st;

    XT_ASSERT_OK(sv_agent(name, a_p));
    st = nxl_md_load(*a_p, c->md, c->md_len, peer, sizeof(peer));
    if (st == NXL_ERR_NOT_ALLOWED) {
        printf("  skip: CMA not permitted here: %s\n", nxl_last_error());
        return XT_SKIP;
    }
    XT_ASSERT_OK(st);
    XT_ASSERT_STR(peer, SV_TARGET);
    return 0;
}

/* sv_start forks the target, installs this process's device kind (*dk_p)
 * and makes the initiator's agent "vram-init" with the target's metadata
 * loaded; on a failure or skip it reaps the target first. Returns 0, 1 or
 * XT_SKIP as sv_load does. */
static int
sv_start(sv_child *c, const nxl_memkind_ops_t **dk_p, nxl_agent_t **a_p)
{
    int rc;

    XT_ASSERT_EQ(sv_spawn(c), 0);
    *dk_p = sv_kind();
    rc = sv_load(c, "vram-init", a_p);
    if (rc != 0) {
        sv_reap(c, 1);
    }
    return rc;
}

/* Remote VRAM <-> local DRAM and local VRAM, both ways, with and without
 * notifications; local VRAM <-> the target's shared DRAM; local VRAM to
 * its plain DRAM is refused; descriptors outside the registrations are
 * NOT_FOUND; the peer's allocation is opened once and closed when its
 * metadata goes. */
static int
t_remote(void)
{
    const nxl_memkind_ops_t *dk;
    uint8_t *dram, *want;
    uint64_t rv, h, copies0 = 0;
    nxl_agent_t *a;
    sv_reply rep;
    sv_child c;
    void *lv = NULL;
    char note[96];
    int rc;

    rc = sv_start(&c, &dk, &a);
    if (rc != 0) {
        return rc;
    }
    printf("  device kind: %s\n", dk->name);
    rv = c.addr[SV_VRAM];
    dram = malloc(SV_REG);
    want = malloc(SV_REG);
    XT_ASSERT(dram != NULL && want != NULL);
    XT_ASSERT_OK(dk->alloc(0, SV_REG, &lv));
    XT_ASSERT_OK(sv_reg(a, NXL_DRAM, dram, SV_REG));
    XT_ASSERT_OK(sv_reg(a, NXL_VRAM, lv, SV_REG));
    if (sv_fake) {
        /* Two registrations in one allocation: opened once. */
        XT_ASSERT_EQ(xt_fakedev_live_ipc_maps(), 1);
        copies0 = xt_fakedev_sync_copies();
    }

    /* READ remote VRAM -> local DRAM. */
    memset(dram, 0, SV_REG);
    XT_ASSERT_OK(sv_move(a, NXL_READ, NXL_DRAM, dram, NXL_VRAM, rv + 4096,
                         65536, SV_TARGET, NULL));
    sv_pat(want, 4096, 65536, 1);
    XT_ASSERT(memcmp(dram, want, 65536) == 0);
    if (sv_fake) {
        /* The device kind's copy moved it, not a memcpy of the backend. */
        XT_ASSERT(xt_fakedev_sync_copies() > copies0);
    }

    /* READ remote VRAM (second registration) -> local VRAM. */
    XT_ASSERT_OK(sv_move(a, NXL_READ, NXL_VRAM, lv, NXL_VRAM, rv + SV_REG,
                         SV_REG, SV_TARGET, NULL));
    XT_ASSERT_OK(sv_dev_hash(dk, lv, SV_REG, &h));
    sv_pat(want, SV_REG, SV_REG, 1);
    XT_ASSERT_EQ(h, nxl__hash64(want, SV_REG));

    /* WRITE local DRAM -> remote VRAM with a notification: the data is in
     * place when the target sees it. */
    sv_pat(dram, 0, 32768, 4);
    snprintf(note, sizeof(note), "sum:%d:%u:%u", SV_VRAM, 8192u, 32768u);
    rep.status = 0;
    {
        sv_cmd m = {SV_CMD_NOTIF, 0, 0, 0};

        XT_ASSERT(send(c.fd, &m, sizeof(m), 0) == (ssize_t)sizeof(m));
    }
    XT_ASSERT_OK(sv_move(a, NXL_WRITE, NXL_DRAM, dram, NXL_VRAM, rv + 8192,
                         32768, SV_TARGET, note));
    XT_ASSERT(recv(c.fd, &rep, sizeof(rep), 0) == (ssize_t)sizeof(rep));
    XT_ASSERT_EQ(rep.status, NXL_OK);
    XT_ASSERT_EQ(rep.hash, nxl__hash64(dram, 32768));
    /* Bytes around it are untouched. */
    sv_pat(want, 0, 8192, 1);
    rep = sv_ask(&c, SV_CMD_SUM, SV_VRAM, 0, 8192);
    XT_ASSERT_EQ(rep.hash, nxl__hash64(want, 8192));
    sv_pat(want, 8192 + 32768, 4096, 1);
    rep = sv_ask(&c, SV_CMD_SUM, SV_VRAM, 8192 + 32768, 4096);
    XT_ASSERT_EQ(rep.hash, nxl__hash64(want, 4096));

    /* WRITE local VRAM -> remote VRAM (device to device). */
    XT_ASSERT_OK(sv_dev_fill(dk, lv, 0, SV_REG, 5));
    XT_ASSERT_OK(sv_move(a, NXL_WRITE, NXL_VRAM, lv, NXL_VRAM, rv + SV_REG,
                         SV_REG, SV_TARGET, NULL));
    sv_pat(want, 0, SV_REG, 5);
    rep = sv_ask(&c, SV_CMD_SUM, SV_VRAM, SV_REG, SV_REG);
    XT_ASSERT_EQ(rep.hash, nxl__hash64(want, SV_REG));

    /* Local VRAM <-> the target's shared DRAM (its memfd, mapped here). */
    XT_ASSERT_OK(sv_move(a, NXL_WRITE, NXL_VRAM, lv, NXL_DRAM,
                         c.addr[SV_SHARED] + 100, 20000, SV_TARGET, NULL));
    rep = sv_ask(&c, SV_CMD_SUM, SV_SHARED, 100, 20000);
    XT_ASSERT_EQ(rep.hash, nxl__hash64(want, 20000));
    XT_ASSERT_OK(sv_move(a, NXL_READ, NXL_VRAM, (uint8_t *)lv + 4096, NXL_DRAM,
                         c.addr[SV_SHARED], SV_DRAM, SV_TARGET, NULL));
    XT_ASSERT_OK(sv_dev_hash(dk, (uint8_t *)lv + 4096, SV_DRAM, &h));
    sv_pat(want, 0, SV_DRAM, 3);
    sv_pat(want + 100, 0, 20000, 5);
    XT_ASSERT_EQ(h, nxl__hash64(want, SV_DRAM));

    /* Local VRAM <-> its plain DRAM: CMA cannot reach device memory. */
    {
        nxl_xfer_t *x = NULL;

        XT_ASSERT_STATUS(sv_xfer(a, NXL_WRITE, NXL_VRAM, lv, NXL_DRAM,
                                 c.addr[SV_PLAIN], 4096, SV_TARGET, NULL, &x),
                         NXL_ERR_NOT_SUPPORTED);
        XT_ASSERT(strstr(nxl_last_error(), "nxl_mem_alloc_shared") != NULL);
        /* DRAM to its plain DRAM still goes (CMA). */
        XT_ASSERT_OK(sv_move(a, NXL_READ, NXL_DRAM, dram, NXL_DRAM,
                             c.addr[SV_PLAIN], 4096, SV_TARGET, NULL));
        sv_pat(want, 0, 4096, 2);
        XT_ASSERT(memcmp(dram, want, 4096) == 0);

        /* Bounds: across the two registrations, inside the allocation
         * but past them, and a local range not registered. */
        XT_ASSERT_STATUS(sv_xfer(a, NXL_READ, NXL_DRAM, dram, NXL_VRAM,
                                 rv + SV_REG - 100, 200, SV_TARGET, NULL, &x),
                         NXL_ERR_NOT_FOUND);
        XT_ASSERT_STATUS(sv_xfer(a, NXL_READ, NXL_DRAM, dram, NXL_VRAM,
                                 rv + 2 * SV_REG, 4096, SV_TARGET, NULL, &x),
                         NXL_ERR_NOT_FOUND);
        XT_ASSERT_STATUS(sv_xfer(a, NXL_READ, NXL_VRAM, (uint8_t *)lv + 4096,
                                 NXL_VRAM, rv, SV_REG, SV_TARGET, NULL, &x),
                         NXL_ERR_NOT_FOUND);
    }

    /* Forgetting the peer closes its allocation. */
    XT_ASSERT_OK(nxl_md_invalidate(a, SV_TARGET));
    if (sv_fake) {
        /* Every copy named the direction its pointers have. */
        XT_ASSERT_EQ(xt_fakedev_dir_mismatches(), 0);
        XT_ASSERT_EQ(xt_fakedev_live_ipc_maps(), 0);
    }
    nxl_agent_destroy(a);
    dk->free(0, lv, SV_REG);
    free(dram);
    free(want);
    XT_ASSERT_EQ(sv_reap(&c, 1), 0);
    if (sv_fake) {
        XT_ASSERT_EQ(xt_fakedev_live_allocs(), 0);
    }
    XT_ASSERT_EQ(xt_leaks(), 0);
    return 0;
}

/* A target killed between posts: the next post (or its wait) is
 * NXL_ERR_REMOTE_DISCONNECT, and so is a new one. */
static int
t_peer_killed(void)
{
    const nxl_memkind_ops_t *dk;
    nxl_xfer_t *x = NULL;
    nxl_agent_t *a;
    nxl_status_t st;
    sv_child c;
    void *lv = NULL;
    int rc;

    rc = sv_start(&c, &dk, &a);
    if (rc != 0) {
        return rc;
    }
    XT_ASSERT_OK(dk->alloc(0, SV_REG, &lv));
    XT_ASSERT_OK(sv_reg(a, NXL_VRAM, lv, SV_REG));
    XT_ASSERT_OK(sv_xfer(a, NXL_READ, NXL_VRAM, lv, NXL_VRAM, c.addr[SV_VRAM],
                         SV_REG, SV_TARGET, NULL, &x));
    XT_ASSERT_OK(sv_run(x));
    XT_ASSERT_OK(kill(c.pid, SIGKILL) == 0 ? NXL_OK : NXL_ERR_IO);
    XT_ASSERT_EQ(sv_reap(&c, 0), 128 + SIGKILL);
    st = sv_run(x);
    XT_ASSERT_STATUS(st, NXL_ERR_REMOTE_DISCONNECT);
    nxl_xfer_release(x);
    st = sv_move(a, NXL_WRITE, NXL_VRAM, lv, NXL_VRAM, c.addr[SV_VRAM], 4096,
                 SV_TARGET, NULL);
    XT_ASSERT(st == NXL_ERR_REMOTE_DISCONNECT || st == NXL_ERR_NOT_FOUND);
    nxl_agent_destroy(a);
    dk->free(0, lv, SV_REG);
    if (sv_fake) {
        XT_ASSERT_EQ(xt_fakedev_live_ipc_maps(), 0);
    }
    XT_ASSERT_EQ(xt_leaks(), 0);
    return 0;
}

/* Loopback: an agent moves between its own DRAM and VRAM and between two
 * of its VRAM allocations, with a notification to itself; nothing is
 * opened with IPC. */
static int
t_loopback(void)
{
    const nxl_memkind_ops_t *dk = sv_kind();
    const char *me = "vram-self";
    nxl_notif_list_t *nl = NULL;
    uint8_t *dram, *want;
    void *va = NULL, *vb = NULL;
    nxl_xfer_t *x = NULL;
    nxl_agent_t *a;
    uint64_t h, t0;
    size_t got = 0;

    dram = malloc(SV_REG);
    want = malloc(SV_REG);
    XT_ASSERT(dram != NULL && want != NULL);
    XT_ASSERT_OK(dk->alloc(0, SV_REG, &va));
    XT_ASSERT_OK(dk->alloc(0, SV_REG, &vb));
    XT_ASSERT_OK(sv_agent(me, &a));
    XT_ASSERT_OK(sv_reg(a, NXL_DRAM, dram, SV_REG));
    XT_ASSERT_OK(sv_reg(a, NXL_VRAM, va, SV_REG));
    XT_ASSERT_OK(sv_reg(a, NXL_VRAM, vb, SV_REG));

    /* DRAM -> own VRAM (H2D), notification after the data. */
    sv_pat(dram, 0, SV_REG, 7);
    XT_ASSERT_OK(sv_move(a, NXL_WRITE, NXL_DRAM, dram, NXL_VRAM,
                         (uint64_t)(uintptr_t)va, SV_REG, me, "loop-done"));
    t0 = xt_now_ms();
    while (got == 0 && xt_now_ms() - t0 < SV_WAIT_MS) {
        XT_ASSERT_OK(nxl_notifs_get(a, &nl, NULL));
        if (nl != NULL && nl->count > 0) {
            XT_ASSERT_EQ(nl->items[0].len, 9);
            XT_ASSERT(memcmp(nl->items[0].msg, "loop-done", 9) == 0);
            got = nl->count;
        }
        nxl_notif_list_free(nl);
        nl = NULL;
    }
    XT_ASSERT_EQ(got, 1);
    XT_ASSERT_OK(sv_dev_hash(dk, va, SV_REG, &h));
    XT_ASSERT_EQ(h, nxl__hash64(dram, SV_REG));

    /* Own VRAM a -> VRAM b (READ, D2D), a piece at an offset. */
    XT_ASSERT_OK(sv_xfer(a, NXL_READ, NXL_VRAM, (uint8_t *)vb + 4096, NXL_VRAM,
                         (uint64_t)(uintptr_t)va + 8192, 65536, me, NULL, &x));
    XT_ASSERT_OK(sv_run(x));
    XT_ASSERT_OK(sv_run(x)); /* re-post */
    nxl_xfer_release(x);
    XT_ASSERT_OK(sv_dev_hash(dk, (uint8_t *)vb + 4096, 65536, &h));
    XT_ASSERT_EQ(h, nxl__hash64(dram + 8192, 65536));

    /* Own VRAM b -> DRAM (READ, D2H). */
    memset(dram, 0, SV_REG);
    XT_ASSERT_OK(sv_move(a, NXL_READ, NXL_DRAM, dram, NXL_VRAM,
                         (uint64_t)(uintptr_t)vb + 4096, 65536, me, NULL));
    sv_pat(want, 8192, 65536, 7);
    XT_ASSERT(memcmp(dram, want, 65536) == 0);

    /* Past the registration. */
    XT_ASSERT_STATUS(sv_xfer(a, NXL_READ, NXL_DRAM, dram, NXL_VRAM,
                             (uint64_t)(uintptr_t)vb + SV_REG - 10, 20, me,
                             NULL, &x),
                     NXL_ERR_NOT_FOUND);
    if (sv_fake) {
        XT_ASSERT_EQ(xt_fakedev_live_ipc_maps(), 0);
        XT_ASSERT_EQ(xt_fakedev_dir_mismatches(), 0);
        XT_ASSERT(xt_fakedev_sync_copies() >= 5);
    }
    nxl_agent_destroy(a);
    dk->free(0, va, SV_REG);
    dk->free(0, vb, SV_REG);
    free(dram);
    free(want);
    XT_ASSERT_EQ(xt_leaks(), 0);
    return 0;
}

/* The backend's VRAM public data through its ops table: the good blob
 * loads (loopback), every malformed one is NXL_ERR_PROTO. */
static int
t_malformed(void)
{
    const nxl_backend_ops_t *ops = &nxl__be_shm_ops;
    const nxl_memkind_ops_t *dk = sv_kind();
    nxl_backend_host_t host;
    nxl_params_t ps = {NULL, 0};
    nxl_be_region_t reg = {0};
    void *eng, *md = NULL, *peer = NULL, *rmd = NULL, *v = NULL;
    nxl_blob_t pub = {0}, conn = {0};
    uint8_t bad[256];
    nxl_desc_t d;
    size_t i;

    xt_host_init("self", NULL, NULL, NULL, dk, &host);
    XT_ASSERT_OK(xt_engine_open(ops, &host, &ps, &eng));
    XT_ASSERT_OK(dk->alloc(0, SV_ALLOC, &v));
    reg.addr = (uint64_t)(uintptr_t)v + 8192;
    reg.len = 16384;
    reg.kind = NXL_VRAM;
    reg.backing_fd = -1;
    XT_ASSERT_OK(ops->mem_register(eng, &reg, &md));
    XT_ASSERT_OK(ops->md_pack(eng, md, &pub));
    XT_ASSERT_EQ(pub.len, 128);
    XT_ASSERT_OK(ops->conn_info(eng, &conn));
    XT_ASSERT_OK(ops->peer_load(eng, "self", conn.data, conn.len, &peer));
    d = (nxl_desc_t){reg.addr, reg.len, 0};
    XT_ASSERT_OK(
        ops->md_unpack(eng, peer, &d, NXL_VRAM, pub.data, pub.len, &rmd));
    ops->md_unload(eng, rmd);

    struct {
        size_t off;
        uint64_t val;
        int width; /* 8: u64, 1: byte */
    } muts[] = {
        {40, 8192, 8},             /* allocation ends before the region */
        {40, 16384, 8},            /* ... just before its end */
        {32, reg.addr + 1, 8},     /* allocation starts after it */
        {40, 0, 8},                /* empty allocation */
        {40, UINT64_MAX - 100, 8}, /* wraps around */
        {5, 3, 1},                 /* shared and VRAM */
        {5, 0, 1},                 /* plain DRAM of VRAM length */
        {5, 1, 1},                 /* shared DRAM of VRAM length */
        {5, 4, 1},                 /* unknown flag */
        {16, 16385, 8},            /* another region */
        {120, 987654321, 8},       /* a generation never given */
        {112, 0xffffffffull, 8},   /* another table fd, slot 0 */
    };
    for (i = 0; i < NXL__ARRAY_SIZE(muts); i++) {
        memcpy(bad, pub.data, pub.len);
        if (muts[i].width == 8) {
            nxl__put_le64(bad + muts[i].off, muts[i].val);
        } else {
            bad[muts[i].off] = (uint8_t)muts[i].val;
        }
        rmd = NULL;
        XT_ASSERT_STATUS(
            ops->md_unpack(eng, peer, &d, NXL_VRAM, bad, pub.len, &rmd),
            NXL_ERR_PROTO);
        XT_ASSERT(rmd == NULL);
    }
    /* Truncated and padded blobs; the VRAM blob loaded as DRAM. */
    XT_ASSERT_STATUS(
        ops->md_unpack(eng, peer, &d, NXL_VRAM, pub.data, pub.len - 1, &rmd),
        NXL_ERR_PROTO);
    memcpy(bad, pub.data, pub.len);
    bad[pub.len] = 0;
    XT_ASSERT_STATUS(
        ops->md_unpack(eng, peer, &d, NXL_VRAM, bad, pub.len + 1, &rmd),
        NXL_ERR_PROTO);
    XT_ASSERT_STATUS(
        ops->md_unpack(eng, peer, &d, NXL_DRAM, pub.data, pub.len, &rmd),
        NXL_ERR_PROTO);
    /* A registration outside a device allocation is refused. */
    reg.addr = (uint64_t)(uintptr_t)bad;
    reg.len = 64;
    XT_ASSERT_STATUS(ops->mem_register(eng, &reg, &rmd), NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "no allocation") != NULL);

    ops->peer_unload(eng, peer);
    ops->mem_deregister(eng, md);
    xt_engine_close(ops, eng);
    free(pub.data);
    free(conn.data);
    dk->free(0, v, SV_ALLOC);
    XT_ASSERT_EQ(xt_leaks(), 0);
    return 0;
}

/* Without an IPC-capable device kind VRAM registration fails with the
 * reason: CUDA that cannot run here, or a kind built before mem_range
 * existed (an abi_version 1 table). */
static int
t_no_ipc(void)
{
    static nxl_memkind_ops_t v1;
    const nxl_memkind_ops_t *cu = nxl_memkind_cuda();
    static uint8_t buf[8192] __attribute__((aligned(4096)));
    nxl_agent_t *a;
    char why[256];

    if (cu->probe() != NXL_OK) {
        snprintf(why, sizeof(why), "%s", nxl_last_error());
        XT_ASSERT(nxl_memkind_device() == cu);
        XT_ASSERT_OK(sv_agent("vram-none", &a));
        XT_ASSERT_STATUS(sv_reg(a, NXL_VRAM, buf, sizeof(buf)),
                         NXL_ERR_NOT_SUPPORTED);
        XT_ASSERT(strstr(nxl_last_error(), "VRAM") != NULL);
        XT_ASSERT(strstr(nxl_last_error(), why) != NULL);
        printf("  %s\n", nxl_last_error());
        nxl_agent_destroy(a);
    } else {
        printf("  CUDA runs here; only the old-table half runs\n");
    }

    v1 = *xt_fakedev_ops();
    v1.abi_version = 1;
    v1.size = NXL_MEMKIND_V1_SIZE;
    XT_ASSERT(!NXL_MEMKIND_HAS(&v1, mem_range));
    XT_ASSERT(NXL_MEMKIND_HAS(xt_fakedev_ops(), mem_range));
    XT_ASSERT_OK(nxl_memkind_set_device(&v1));
    XT_ASSERT_OK(sv_agent("vram-v1", &a));
    XT_ASSERT_STATUS(sv_reg(a, NXL_VRAM, buf, sizeof(buf)),
                     NXL_ERR_NOT_SUPPORTED);
    XT_ASSERT(strstr(nxl_last_error(), "mem_range") != NULL);
    nxl_agent_destroy(a);
    /* A version 2 table must be complete. */
    v1.abi_version = 2;
    XT_ASSERT_STATUS(nxl_memkind_set_device(&v1), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_OK(nxl_memkind_set_device(NULL));
    XT_ASSERT_EQ(xt_leaks(), 0);
    return 0;
}

const xt_suite xt_suite_shm_vram = {
    .name = "shm_vram",
    .timeout_s = 60,
    .cases =
        (const xt_case[]){
            {"remote", t_remote},
            {"peer_killed", t_peer_killed},
            {"loopback", t_loopback},
            {"malformed", t_malformed},
            {"no_ipc", t_no_ipc},
            {NULL, NULL},
        },
};
