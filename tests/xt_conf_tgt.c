/* xt_conf_tgt.c - the conformance suite's targets: a peer's memory, a
 * FILE or a buffer of this process, behind one set of calls (see
 * xt_conf.h). */
#include "xt_conf.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* CF_TFILE_BASE is where the registered range of a FILE target starts in
 * its file (xt_conf.h); cf_tfill and cf_tcheck go through a buffer of
 * CF_TCHUNK bytes. */
#define CF_TCHUNK CF_MIB
#define CF_TFILE_BASE ((uint64_t)12288)

bool
cf_file_tgt(void)
{
    nxl_plugin_info_t i;

    return nxl_plugin_info(cf_be(), &i) == NXL_OK && (i.caps & NXL_CAP_LOCAL) &&
           !(i.caps & NXL_CAP_REMOTE) && (i.mem_kinds & (1u << NXL_FILE)) &&
           (i.mem_kinds & (1u << NXL_DRAM));
}

bool
cf_has_cap(uint32_t want)
{
    nxl_plugin_info_t i;

    return nxl_plugin_info(cf_be(), &i) == NXL_OK && (i.caps & want) == want;
}

/* cf_tmpfile opens a new, already unlinked file of len bytes (a hole)
 * under $TMPDIR or /tmp; -1 with errno on failure. */
static int
cf_tmpfile(uint64_t len)
{
    const char *dir = getenv("TMPDIR");
    char path[256];
    int fd;

    snprintf(path, sizeof(path), "%s/nxl-conf-XXXXXX",
             dir != NULL && dir[0] != '\0' ? dir : "/tmp");
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    unlink(path);
    if (ftruncate(fd, (off_t)len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int
cf_tinit(cf_tgt *t, cf_tkind kind, uint64_t len)
{
    memset(t, 0, sizeof(*t));
    t->kind = kind;
    t->fd = -1;
    t->len = len;
    if (kind == CF_T_FILE) {
        t->fd = cf_tmpfile(CF_TFILE_BASE + len);
        if (t->fd < 0) {
            XT_FAILF("temporary file of %" PRIu64 " bytes: %s", len,
                     strerror(errno));
        }
    } else if (kind == CF_T_MEM) {
        t->mem = cf_map(len);
        XT_ASSERT(t->mem != NULL);
    }
    return 0;
}

nxl_status_t
cf_tregister(const cf_tgt *t, nxl_agent_t *a)
{
    nxl_desc_t d = {CF_TFILE_BASE, t->len, (uint64_t)t->fd};
    nxl_dlist_t l = {NXL_FILE, &d, 1};

    if (t->kind == CF_T_MEM) {
        return cf_reg(a, t->mem, t->len);
    }
    return nxl_mem_register(a, &l, NULL);
}

nxl_status_t
cf_tattach(cf_tgt *t, nxl_agent_t *a)
{
    if (t->kind == CF_T_PEER) {
        return cf_fetch(a, &t->peer);
    }
    return cf_tregister(t, a);
}

int
cf_tsetup_sh(cf_tgt *t, uint64_t len, uint64_t shared, unsigned flags,
             nxl_agent_t **a_p)
{
    if (!cf_file_tgt()) {
        memset(t, 0, sizeof(*t));
        t->kind = CF_T_PEER;
        t->region = CF_REG_HEAP;
        t->fd = -1;
        return cf_setup(&t->peer, len, shared, flags, a_p);
    }
    XT_ASSERT(cf_tinit(t, CF_T_FILE, len) == 0);
    XT_ASSERT_OK(cf_agent("main", flags | CF_NO_LISTEN, a_p));
    XT_ASSERT_OK(cf_tattach(t, *a_p));
    return 0;
}

int
cf_tsetup(cf_tgt *t, uint64_t len, unsigned flags, nxl_agent_t **a_p)
{
    return cf_tsetup_sh(t, len, 0, flags, a_p);
}

int
cf_tstop(cf_tgt *t)
{
    if (t->kind == CF_T_PEER) {
        return cf_pstop(&t->peer);
    }
    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
    cf_unmap(t->mem, t->len);
    t->mem = NULL;
    return 0;
}

const char *
cf_tname(const cf_tgt *t, nxl_agent_t *a)
{
    return t->kind == CF_T_PEER ? "peer" : nxl_agent_name(a);
}

uint64_t
cf_taddr(const cf_tgt *t, uint64_t off)
{
    switch (t->kind) {
    case CF_T_PEER:
        return cf_raddr(&t->peer, t->region, off);
    case CF_T_MEM:
        return (uintptr_t)t->mem + off;
    default:
        return CF_TFILE_BASE + off;
    }
}

uint64_t
cf_tdev(const cf_tgt *t)
{
    return t->kind == CF_T_FILE ? (uint64_t)t->fd : 0;
}

nxl_desc_t
cf_tdesc(const cf_tgt *t, uint64_t off, uint64_t len)
{
    nxl_desc_t d = {cf_taddr(t, off), len, cf_tdev(t)};

    return d;
}

nxl_dlist_t
cf_tdl(const cf_tgt *t, const nxl_desc_t *d, size_t n)
{
    nxl_dlist_t l = {t->kind == CF_T_FILE ? NXL_FILE : NXL_DRAM, d, n};

    return l;
}

nxl_status_t
cf_txfer1(nxl_agent_t *a, nxl_op_t op, uint64_t laddr, const cf_tgt *t,
          uint64_t roff, uint64_t len, const nxl_opts_t *opts, nxl_xfer_t **x_p)
{
    nxl_desc_t ld = {laddr, len, 0}, rd = cf_tdesc(t, roff, len);
    nxl_dlist_t ll = cf_dl(&ld, 1), rl = cf_tdl(t, &rd, 1);

    return nxl_xfer_create(a, op, &ll, &rl, cf_tname(t, a), opts, x_p);
}

/* cf_tio reads (wr = 0) or writes len bytes at off of the FILE target
 * (file offset CF_TFILE_BASE + off). */
static int
cf_tio(const cf_tgt *t, int wr, uint8_t *buf, uint64_t len, uint64_t off)
{
    ssize_t n;

    off += CF_TFILE_BASE;
    while (len > 0) {
        n = wr ? pwrite(t->fd, buf, (size_t)len, (off_t)off)
               : pread(t->fd, buf, (size_t)len, (off_t)off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            XT_FAILF("%s of %" PRIu64 " bytes at offset %" PRIu64
                     " of the target file: %s",
                     wr ? "pwrite" : "pread", len, off,
                     n < 0 ? strerror(errno) : "end of file");
        }
        buf += n;
        len -= (uint64_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int
cf_tfill(cf_tgt *t, uint64_t off, uint64_t len, uint32_t seed)
{
    uint8_t *b;
    uint64_t k, n;

    if (t->kind == CF_T_PEER) {
        return cf_pfill(&t->peer, t->region, off, len, seed);
    }
    XT_ASSERT(off <= t->len && len <= t->len - off);
    if (t->kind == CF_T_MEM) {
        cf_fill(t->mem + off, len, seed, off);
        return 0;
    }
    b = malloc(CF_TCHUNK);
    XT_ASSERT(b != NULL);
    for (k = 0; k < len; k += n) {
        n = len - k < CF_TCHUNK ? len - k : CF_TCHUNK;
        cf_fill(b, n, seed, off + k);
        if (cf_tio(t, 1, b, n, off + k) != 0) {
            free(b);
            return 1;
        }
    }
    free(b);
    return 0;
}

int
cf_tcheck(cf_tgt *t, uint64_t off, uint64_t len, uint32_t seed,
          const char *what)
{
    uint8_t *b;
    uint64_t k, n, bad;

    if (t->kind == CF_T_PEER) {
        return cf_pcheck(&t->peer, t->region, off, len, seed, what);
    }
    XT_ASSERT(off <= t->len && len <= t->len - off);
    if (t->kind == CF_T_MEM) {
        return cf_check_local(t->mem + off, len, seed, off, what);
    }
    b = malloc(CF_TCHUNK);
    XT_ASSERT(b != NULL);
    for (k = 0; k < len; k += n) {
        n = len - k < CF_TCHUNK ? len - k : CF_TCHUNK;
        if (cf_tio(t, 0, b, n, off + k) != 0) {
            free(b);
            return 1;
        }
        bad = cf_find_bad(b, n, seed, off + k);
        if (bad != n) {
            uint8_t got = b[bad];

            free(b);
            XT_FAILF("%s: file data wrong at [%" PRIu64 "+%" PRIu64
                     "): byte %" PRIu64 " is 0x%02x, want 0x%02x",
                     what, off, len, k + bad, got, cf_pat(seed, off + k + bad));
        }
    }
    free(b);
    return 0;
}

int
cf_tcheck_strided(cf_tgt *t, uint64_t len, uint64_t stride, uint64_t count,
                  uint32_t seed, uint32_t seed2, const char *what)
{
    cf_cmd c;
    cf_rep r;
    uint8_t *b;
    uint64_t k, bad;

    if (t->kind == CF_T_PEER) {
        c = cf_cmd_of(CF_OP_CHECK_STRIDED);
        c.region = t->region;
        c.len = len;
        c.stride = stride;
        c.count = count;
        c.seed = seed;
        c.seed2 = seed2;
        if (cf_call(&t->peer, &c, &r) != 0) {
            return 1;
        }
        if (r.status != 0) {
            XT_FAILF("%s: peer data wrong: %s", what, r.err);
        }
        return 0;
    }
    XT_ASSERT(stride >= len && count <= t->len / stride);
    b = t->mem;
    if (t->kind == CF_T_FILE) {
        b = malloc(stride * count);
        XT_ASSERT(b != NULL);
        if (cf_tio(t, 0, b, stride * count, 0) != 0) {
            free(b);
            return 1;
        }
    }
    for (k = 0; k < count; k++) {
        uint64_t o0 = k * stride;

        bad = cf_find_bad(b + o0, len, seed, o0);
        if (bad == len) {
            bad =
                len + cf_find_bad(b + o0 + len, stride - len, seed2, o0 + len);
        }
        if (bad != stride) {
            uint8_t got = b[o0 + bad];

            if (t->kind == CF_T_FILE) {
                free(b);
            }
            XT_FAILF(
                "%s: slot %" PRIu64 " byte %" PRIu64 " is 0x%02x, want 0x%02x",
                what, k, bad, got, cf_pat(bad < len ? seed : seed2, o0 + bad));
        }
    }
    if (t->kind == CF_T_FILE) {
        free(b);
    }
    return 0;
}
