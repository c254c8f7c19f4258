/* conf_reg.c - conformance cases: registration rules, and revocation:
 * once deregistered, a region is out of every peer's reach, also through
 * widened or forged metadata (the suite: test_conformance.c). */
#include "xt_conf.h"
#include "md/md.h"

#include <strings.h>

/* Registration rules (nxl.h nxl_mem_register/deregister; NIXL §7.2): a
 * zero length or a NULL list is NXL_ERR_INVALID_PARAM, the same
 * descriptor again NXL_ERR_NOT_ALLOWED, deregistering what was never
 * registered or other bounds NXL_ERR_NOT_FOUND, and a refused call leaves
 * the registration as it was. Memory is usable exactly while registered:
 * a descriptor reaching past a registration, or over a deregistered one,
 * fails NXL_ERR_NOT_FOUND when the transfer or prepared list is made; a
 * new registration works again. Checked on local DRAM and, where the
 * target is this agent's own (a FILE), on the target too. */
int
t_reg_rules(void)
{
    const uint64_t len = 256 * CF_KIB;
    nxl_prepped_t *pp = NULL;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    nxl_desc_t d, rd;
    nxl_dlist_t dl, rl, empty = {NXL_DRAM, NULL, 0};
    uint8_t *loc, *unreg;
    uint64_t dev, base;
    cf_tgt t;

    CF_NEED_TGT(0);
    XT_ASSERT(cf_tsetup(&t, len, 0, &a) == 0);
    loc = cf_map(len);
    unreg = cf_map(len);
    XT_ASSERT(loc != NULL && unreg != NULL);

    /* Local DRAM. */
    XT_ASSERT_STATUS(cf_reg(a, loc, 0), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_mem_register(a, NULL, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_mem_register(NULL, &empty, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_OK(cf_reg(a, loc, len));
    XT_ASSERT_STATUS(cf_reg(a, loc, len), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT(nxl_last_error()[0] != '\0');
    XT_ASSERT_STATUS(cf_dereg(a, unreg, len), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(cf_dereg(a, loc, len / 2), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(cf_dereg(a, loc + 4096, len - 4096), NXL_ERR_NOT_FOUND);
    /* Still registered as it was: a transfer over all of it works. */
    cf_fill(loc, len, 1500, 0);
    XT_ASSERT_OK(cf_txfer1(a, NXL_WRITE, (uintptr_t)loc, &t, 0, len, NULL, &x));
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    x = NULL;
    XT_ASSERT(cf_tcheck(&t, 0, len, 1500, "WRITE after refused calls") == 0);
    /* Partly covered: refused when made. */
    d = (nxl_desc_t){(uintptr_t)loc + len - 2048, 4096, 0};
    dl = cf_dl(&d, 1);
    XT_ASSERT_STATUS(nxl_dlist_prep(a, NULL, &dl, NULL, &pp),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(cf_txfer1(a, NXL_WRITE, (uintptr_t)loc + len - 2048, &t, 0,
                               4096, NULL, &x),
                     NXL_ERR_NOT_FOUND);
    /* Deregistered: gone, once. */
    XT_ASSERT_OK(cf_dereg(a, loc, len));
    XT_ASSERT_STATUS(cf_dereg(a, loc, len), NXL_ERR_NOT_FOUND);
    d = (nxl_desc_t){(uintptr_t)loc, 4096, 0};
    XT_ASSERT_STATUS(nxl_dlist_prep(a, NULL, &dl, NULL, &pp),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(
        cf_txfer1(a, NXL_WRITE, (uintptr_t)loc, &t, 0, 4096, NULL, &x),
        NXL_ERR_NOT_FOUND);
    XT_ASSERT(pp == NULL && x == NULL);
    /* Registered again: works again. */
    XT_ASSERT_OK(cf_reg(a, loc, len));
    XT_ASSERT(cf_tfill(&t, 0, len, 1501) == 0);
    XT_ASSERT_OK(cf_txfer1(a, NXL_READ, (uintptr_t)loc, &t, 0, len, NULL, &x));
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    x = NULL;
    XT_ASSERT(cf_check_local(loc, len, 1501, 0, "READ after re-register") == 0);

    if (t.kind != CF_T_FILE) {
        printf("  not run: target rules (the target is the peer's "
               "memory)\n");
        goto done;
    }
    /* The FILE target: {offset, len, fd}. */
    dev = cf_tdev(&t);
    base = cf_taddr(&t, 0);
    rd = (nxl_desc_t){base, 0, dev};
    rl = cf_tdl(&t, &rd, 1);
    XT_ASSERT_STATUS(nxl_mem_register(a, &rl, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(cf_tregister(&t, a), NXL_ERR_NOT_ALLOWED);
    rd = (nxl_desc_t){base, len / 2, dev};
    XT_ASSERT_STATUS(nxl_mem_deregister(a, &rl, NULL), NXL_ERR_NOT_FOUND);
    rd = (nxl_desc_t){base, len, dev + 1000};
    XT_ASSERT_STATUS(nxl_mem_deregister(a, &rl, NULL), NXL_ERR_NOT_FOUND);
    rd = (nxl_desc_t){0, base + len, dev};
    XT_ASSERT_STATUS(nxl_mem_deregister(a, &rl, NULL), NXL_ERR_NOT_FOUND);
    rd = cf_tdesc(&t, len - 2048, 4096);
    XT_ASSERT_STATUS(nxl_dlist_prep(a, cf_tname(&t, a), &rl, NULL, &pp),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(
        cf_txfer1(a, NXL_WRITE, (uintptr_t)loc, &t, len - 2048, 4096, NULL, &x),
        NXL_ERR_NOT_FOUND);
    rd = (nxl_desc_t){base, len, dev};
    XT_ASSERT_OK(nxl_mem_deregister(a, &rl, NULL));
    XT_ASSERT_STATUS(nxl_mem_deregister(a, &rl, NULL), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(
        cf_txfer1(a, NXL_WRITE, (uintptr_t)loc, &t, 0, 4096, NULL, &x),
        NXL_ERR_NOT_FOUND);
    XT_ASSERT(pp == NULL && x == NULL);
    XT_ASSERT_OK(cf_tregister(&t, a));
    cf_fill(loc, len, 1502, 0);
    XT_ASSERT_OK(cf_txfer1(a, NXL_WRITE, (uintptr_t)loc, &t, 0, len, NULL, &x));
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    XT_ASSERT(cf_tcheck(&t, 0, len, 1502, "WRITE after file re-register") == 0);

done:
    nxl_agent_destroy(a);
    cf_unmap(loc, len);
    cf_unmap(unreg, len);
    return cf_tstop(&t);
}

/* cf_pextra has the peer register its extra region (shared: from
 * nxl_mem_alloc_shared) of len bytes, and loads the peer's metadata again
 * so that a knows it. *addr_p gets its address. */
static int
cf_pextra(cf_peer *p, nxl_agent_t *a, uint64_t len, int shared,
          uint64_t *addr_p)
{
    cf_cmd c = cf_cmd_of(CF_OP_REG_EXTRA);
    cf_rep r;

    c.len = len;
    c.arg = shared;
    if (cf_call(p, &c, &r) != 0) {
        return 1;
    }
    CF_ASSERT_PEER(p, (nxl_status_t)r.status, NXL_OK);
    XT_ASSERT_OK(cf_fetch(a, p));
    *addr_p = r.value;
    return 0;
}

/* CF_SKIP_UNENFORCED skips where revocation is not NXL's to enforce: UCX
 * to a peer on another host over a transport without RDMA (here: tcp),
 * where UCX emulates RMA with active messages whose target-side handler
 * writes or reads any address it is sent, without a key check
 * (docs/backends/ucx.md; the NIC checks keys on RDMA transports, and the
 * registration table covers same-host peers). */
#define CF_SKIP_UNENFORCED()                                                   \
    XT_SKIP_IF(cf_netns() && strcasecmp(cf_be(), "UCX") == 0,                  \
               "UCX software RMA (tcp) reaches any address of a peer on "      \
               "another host; revocation there rests on UCX, which does not "  \
               "check keys on that path")

/* cf_revoked_post posts x, which must fail now (its remote region was
 * deregistered): any error with a message, within the transfer timeout. */
static int
cf_revoked_post(nxl_xfer_t *x, const char *what)
{
    nxl_status_t st = cf_run(x, NULL);

    if (st >= 0) {
        XT_FAILF("%s over a deregistered region -> %s", what,
                 nxl_status_name(st));
    }
    if (nxl_last_error()[0] == '\0') {
        XT_FAILF("%s -> %s without a message", what, nxl_status_name(st));
    }
    printf("  %s: %s (%s)\n", what, nxl_status_name(st), nxl_last_error());
    return 0;
}

/* cf_revoked_all checks both ways to reach the peer's deregistered
 * [raddr, raddr + len): the WRITE *xw (from loc) and READ *xr (into in)
 * made before the deregistration, reposted, fail (both are released and
 * set NULL); a WRITE and a READ made now from the metadata still loaded
 * are refused when made or fail when posted. tag goes into the labels. */
static int
cf_revoked_all(nxl_agent_t *a, nxl_xfer_t **xw, nxl_xfer_t **xr,
               const char *tag, uint8_t *loc, uint8_t *in, uint64_t raddr,
               uint64_t len)
{
    char what[64];
    int bad;

    snprintf(what, sizeof(what), "WRITE%s made before", tag);
    bad = cf_revoked_post(*xw, what);
    snprintf(what, sizeof(what), "READ%s made before", tag);
    bad |= cf_revoked_post(*xr, what);
    nxl_xfer_release(*xw);
    nxl_xfer_release(*xr);
    *xw = *xr = NULL;
    if (cf_xfer1(a, NXL_WRITE, (uintptr_t)loc, raddr, len, "peer", NULL, xw) ==
        NXL_OK) {
        bad |= cf_revoked_post(*xw, "WRITE made after");
    }
    if (cf_xfer1(a, NXL_READ, (uintptr_t)in, raddr, len, "peer", NULL, xr) ==
        NXL_OK) {
        bad |= cf_revoked_post(*xr, "READ made after");
    }
    nxl_xfer_release(*xw);
    nxl_xfer_release(*xr);
    *xw = *xr = NULL;
    return bad;
}

/* Revocation (issue 15): once the owner deregisters a region, no peer
 * reaches it, whatever metadata the peer still holds. The peer registers
 * a region (heap memory, then shared memory), the initiator loads it and
 * moves data both ways; the peer deregisters it and keeps the memory. A
 * READ and a WRITE made before, reposted, and ones made after from the old
 * metadata, all fail with a message; the region's bytes and the READ
 * buffer stay as they were. */
int
t_revoked(void)
{
    const uint64_t len = 256 * CF_KIB;
    nxl_xfer_t *xr = NULL, *xw = NULL;
    nxl_agent_t *a = NULL;
    uint64_t raddr;
    uint8_t *loc, *in;
    int shared;
    cf_peer p;
    cf_cmd c;
    cf_rep r;

    CF_NEED_WHY(NXL_CAP_REMOTE, "a peer that deregisters memory");
    CF_SKIP_UNENFORCED();
    loc = cf_map(len);
    in = cf_map(len);
    XT_ASSERT(loc != NULL && in != NULL);
    for (shared = 0; shared < 2; shared++) {
        XT_ASSERT(cf_setup(&p, CF_MIB, 0, 0, &a) == 0);
        XT_ASSERT_OK(cf_reg(a, loc, len));
        XT_ASSERT_OK(cf_reg(a, in, len));
        XT_ASSERT(cf_pextra(&p, a, len, shared, &raddr) == 0);
        XT_ASSERT_OK(cf_xfer1(a, NXL_WRITE, (uintptr_t)loc, raddr, len, "peer",
                              NULL, &xw));
        XT_ASSERT_OK(cf_xfer1(a, NXL_READ, (uintptr_t)in, raddr, len, "peer",
                              NULL, &xr));
        cf_fill(loc, len, 1800, 0);
        XT_ASSERT_OK(cf_run(xw, NULL));
        XT_ASSERT_OK(cf_run(xr, NULL));
        XT_ASSERT(cf_check_local(in, len, 1800, 0, "READ while registered") ==
                  0);

        /* The owner deregisters (and keeps the bytes, now its own). */
        XT_ASSERT(cf_pfill(&p, CF_REG_EXTRA, 0, len, 1801) == 0);
        c = cf_cmd_of(CF_OP_DEREG_EXTRA);
        XT_ASSERT(cf_call(&p, &c, &r) == 0);
        CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
        cf_fill(loc, len, 1802, 0);
        memset(in, 0x77, len);
        XT_ASSERT(cf_revoked_all(a, &xw, &xr, shared ? " (shared)" : "", loc,
                                 in, raddr, len) == 0);
        XT_ASSERT(cf_pcheck(&p, CF_REG_EXTRA, 0, len, 1801,
                            "deregistered region") == 0);
        XT_ASSERT(cf_check_byte(in, len, 0x77, "READ buffer") == 0);
        /* The peer itself is still fine. */
        XT_ASSERT_OK(cf_xfer1(a, NXL_WRITE, (uintptr_t)loc,
                              cf_raddr(&p, CF_REG_HEAP, 0), len, "peer", NULL,
                              &xw));
        XT_ASSERT_OK(cf_run(xw, NULL));
        XT_ASSERT(cf_pcheck(&p, CF_REG_HEAP, 0, len, 1802, "heap region") == 0);
        nxl_xfer_release(xw);
        xw = NULL;
        nxl_agent_destroy(a);
        a = NULL;
        XT_ASSERT(cf_pstop(&p) == 0);
    }
    cf_unmap(loc, len);
    cf_unmap(in, len);
    return 0;
}

/* Revocation across a new registration of the same memory (issue 15;
 * found by fuzz_api with kept agents): the peer deregisters its region
 * and registers its first half again. Transfers over that half made from
 * the old metadata, before or after, still fail: the new registration is
 * not the one the initiator was told about, and the peer's bytes and the
 * READ buffer stay as they were. Once the initiator loads the new
 * metadata, transfers work again. SHM and UCX refuse through the
 * registration table's generation, TCP through the region key its
 * version-3 requests carry (docs/backends/tcp.md). */
int
t_revoked_again(void)
{
    const uint64_t len = 256 * CF_KIB, half = len / 2;
    nxl_xfer_t *xr = NULL, *xw = NULL;
    nxl_agent_t *a = NULL;
    uint64_t raddr;
    uint8_t *loc, *in;
    cf_peer p;
    cf_cmd c;
    cf_rep r;

    CF_NEED_WHY(NXL_CAP_REMOTE, "a peer that registers memory again");
    CF_SKIP_UNENFORCED();
    loc = cf_map(half);
    in = cf_map(half);
    XT_ASSERT(loc != NULL && in != NULL);
    XT_ASSERT(cf_setup(&p, CF_MIB, 0, 0, &a) == 0);
    XT_ASSERT_OK(cf_reg(a, loc, half));
    XT_ASSERT_OK(cf_reg(a, in, half));
    XT_ASSERT(cf_pextra(&p, a, len, 0, &raddr) == 0);
    XT_ASSERT_OK(
        cf_xfer1(a, NXL_WRITE, (uintptr_t)loc, raddr, half, "peer", NULL, &xw));
    XT_ASSERT_OK(
        cf_xfer1(a, NXL_READ, (uintptr_t)in, raddr, half, "peer", NULL, &xr));
    cf_fill(loc, half, 1810, 0);
    XT_ASSERT_OK(cf_run(xw, NULL));
    XT_ASSERT_OK(cf_run(xr, NULL));
    XT_ASSERT(cf_check_local(in, half, 1810, 0, "READ while registered") == 0);

    /* Deregistered, and the first half registered again. */
    XT_ASSERT(cf_pfill(&p, CF_REG_EXTRA, 0, half, 1811) == 0);
    c = cf_cmd_of(CF_OP_DEREG_EXTRA);
    XT_ASSERT(cf_call(&p, &c, &r) == 0);
    CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
    c = cf_cmd_of(CF_OP_REG_HALF);
    XT_ASSERT(cf_call(&p, &c, &r) == 0);
    CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
    cf_fill(loc, half, 1812, 0);
    memset(in, 0x77, half);
    XT_ASSERT(cf_revoked_all(a, &xw, &xr, "", loc, in, raddr, half) == 0);
    XT_ASSERT(cf_pcheck(&p, CF_REG_EXTRA, 0, half, 1811,
                        "region registered again") == 0);
    XT_ASSERT(cf_check_byte(in, half, 0x77, "READ buffer") == 0);

    /* With the new metadata the new registration is reachable. */
    XT_ASSERT_OK(cf_fetch(a, &p));
    XT_ASSERT_OK(
        cf_xfer1(a, NXL_WRITE, (uintptr_t)loc, raddr, half, "peer", NULL, &xw));
    XT_ASSERT_OK(cf_run(xw, NULL));
    XT_ASSERT(cf_pcheck(&p, CF_REG_EXTRA, 0, half, 1812, "after reload") == 0);
    nxl_xfer_release(xw);
    nxl_agent_destroy(a);
    XT_ASSERT(cf_pstop(&p) == 0);
    cf_unmap(loc, half);
    cf_unmap(in, half);
    return 0;
}

/* cf_widen rewrites the metadata blob md (len bytes) so that the region
 * at addr claims twice its length, in the core's descriptor and wherever
 * the backend's public data repeats (addr, len) as two little-endian
 * words: what a forger would do. *out_p is a new blob (free it). */
static int
cf_widen(const void *md, size_t len, uint64_t addr, void **out_p,
         size_t *out_len_p)
{
    nxl__md_t *m = NULL;
    nxl__wbuf_t w;
    nxl_blob_t b;
    size_t i, j, k, hits = 0;
    uint8_t *copy = malloc(len);

    XT_ASSERT(copy != NULL);
    memcpy(copy, md, len);
    XT_ASSERT_OK(nxl__md_decode(copy, len, &m));
    for (i = 0; i < m->nsections; i++) {
        for (j = 0; j < m->sections[i].count; j++) {
            nxl__md_region_t *r = &m->sections[i].regions[j];
            uint8_t *pub = (uint8_t *)(uintptr_t)r->pub;

            if (r->desc.addr != addr) {
                continue;
            }
            for (k = 0; pub != NULL && k + 16 <= r->pub_len; k++) {
                if (nxl__le64(pub + k) == addr &&
                    nxl__le64(pub + k + 8) == r->desc.len) {
                    nxl__put_le64(pub + k + 8, 2 * r->desc.len);
                }
            }
            r->desc.len *= 2;
            hits++;
        }
    }
    XT_ASSERT(hits > 0);
    nxl__wbuf_init(&w);
    XT_ASSERT_OK(nxl__md_encode(m, &w));
    XT_ASSERT_OK(nxl__wbuf_finish(&w, &b));
    nxl__md_free(m);
    free(copy);
    *out_p = b.data;
    *out_len_p = b.len;
    return 0;
}

/* A widened or forged blob grants nothing (issue 15): the peer's metadata
 * with one region claiming twice its length (in every place it is
 * written) either does not load, or the transfers over the second half
 * fail; that half of the peer's memory stays unread and unwritten. */
int
t_widened(void)
{
    const uint64_t len = 256 * CF_KIB;
    nxl_xfer_t *x = NULL;
    nxl_agent_t *a = NULL;
    nxl_status_t st;
    uint64_t raddr;
    void *md = NULL, *wide = NULL;
    size_t md_len, wide_len;
    uint8_t *loc;
    cf_peer p;
    cf_cmd c;
    cf_rep r;

    CF_NEED_WHY(NXL_CAP_REMOTE, "a peer's metadata to forge");
    CF_SKIP_UNENFORCED();
    XT_ASSERT(cf_setup(&p, CF_MIB, 0, 0, &a) == 0);
    loc = cf_map(2 * len);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, 2 * len));
    /* Two heap regions back to back would let a widened one reach the
     * other; the extra region is alone in its allocation. */
    c = cf_cmd_of(CF_OP_REG_EXTRA);
    c.len = 2 * len;
    XT_ASSERT(cf_call(&p, &c, &r) == 0);
    CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
    raddr = r.value;
    /* Register only the first half: deregister all, register half. */
    c = cf_cmd_of(CF_OP_DEREG_EXTRA);
    XT_ASSERT(cf_call(&p, &c, &r) == 0);
    CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
    XT_ASSERT(cf_pfill(&p, CF_REG_EXTRA, 0, 2 * len, 1900) == 0);
    {
        cf_cmd rc = cf_cmd_of(CF_OP_REG_HALF);

        XT_ASSERT(cf_call(&p, &rc, &r) == 0);
        CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
    }
    XT_ASSERT(cf_pblob(&p, CF_MD_FULL, 0, &md, &md_len) == 0);
    XT_ASSERT(cf_widen(md, md_len, raddr, &wide, &wide_len) == 0);
    XT_ASSERT_OK(nxl_md_invalidate(a, "peer"));
    st = nxl_md_load(a, wide, wide_len, NULL, 0);
    printf("  widened metadata: load %s%s%s\n", nxl_status_name(st),
           st == NXL_OK ? "" : ": ", st == NXL_OK ? "" : nxl_last_error());
    if (st == NXL_OK) {
        memset(loc, 0x66, 2 * len);
        st = cf_xfer1(a, NXL_READ, (uintptr_t)loc, raddr + len, len, "peer",
                      NULL, &x);
        if (st == NXL_OK) {
            st = cf_run(x, NULL);
            nxl_xfer_release(x);
            x = NULL;
        }
        printf("  READ of the unregistered half: %s (%s)\n",
               nxl_status_name(st), nxl_last_error());
        XT_ASSERT(st < 0);
        XT_ASSERT(cf_check_byte(loc, len, 0x66, "READ buffer") == 0);
        cf_fill(loc, len, 1901, 0);
        st = cf_xfer1(a, NXL_WRITE, (uintptr_t)loc, raddr + len, len, "peer",
                      NULL, &x);
        if (st == NXL_OK) {
            st = cf_run(x, NULL);
            nxl_xfer_release(x);
            x = NULL;
        }
        printf("  WRITE of the unregistered half: %s (%s)\n",
               nxl_status_name(st), nxl_last_error());
        XT_ASSERT(st < 0);
    }
    XT_ASSERT(
        cf_pcheck(&p, CF_REG_EXTRA, len, len, 1900, "unregistered half") == 0);
    free(md);
    free(wide);
    nxl_agent_destroy(a);
    cf_unmap(loc, 2 * len);
    return cf_pstop(&p);
}
