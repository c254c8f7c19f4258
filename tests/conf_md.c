/* conf_md.c - conformance cases: metadata. The side channel,
 * invalidation, nxl_md_load errors and partial metadata (the suite:
 * test_conformance.c). */
#include "xt_conf.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* cf_unused_port returns a loopback port nobody listens on. */
static uint16_t
cf_unused_port(void)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    uint16_t port = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0) {
        return port;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0) {
        port = ntohs(sa.sin_port);
    }
    close(fd);
    return port;
}

/* The side channel (NIXL remoteMDFromSocket, §4.4-4.5): fetch loads the
 * peer (a wrong expected name is MISMATCH); send makes the peer load us
 * (its nxl_md_check OK, our regions covered); invalidate_local makes it
 * forget us (NOT_FOUND); partial sends over the socket: conn info only,
 * then descriptors; an address with no listener fails IO/TIMEOUT; no
 * address is NOT_SUPPORTED. */
int
t_sidechannel(void)
{
    const uint64_t len = 64 * CF_KIB;
    nxl_agent_t *a = NULL;
    nxl_desc_t d;
    nxl_dlist_t dl, empty = {NXL_DRAM, NULL, 0};
    nxl_opts_t o;
    uint8_t *loc;
    cf_peer p;

    CF_NEED_WHY(NXL_CAP_REMOTE,
                "metadata exchange over the side channel with a peer process");
    XT_ASSERT(cf_setup(&p, len, 0, 0, &a) == 0);
    loc = cf_map(len);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, len));
    d = (nxl_desc_t){(uintptr_t)loc, len, 0};
    dl = cf_dl(&d, 1);

    /* The fetch of cf_setup loaded the peer with its regions. */
    {
        nxl_desc_t rd = {cf_raddr(&p, CF_REG_HEAP, 0), len, 0};
        nxl_dlist_t rl = cf_dl(&rd, 1);

        XT_ASSERT_OK(nxl_md_check(a, "peer", &rl));
    }
    cf_opts_peer(&o, p.hello.port);
    XT_ASSERT_STATUS(nxl_md_fetch(a, "someone-else", &o), NXL_ERR_MISMATCH);

    /* send -> the peer has us; invalidate_local -> it has not. */
    CF_ASSERT_PEER(&p, cf_pmd_check(&p, "main", 0, 0), NXL_ERR_NOT_FOUND);
    XT_ASSERT_OK(nxl_md_send(a, &o));
    CF_ASSERT_PEER(&p, cf_pmd_check(&p, "main", 0, 0), NXL_OK);
    CF_ASSERT_PEER(&p, cf_pmd_check(&p, "main", (uintptr_t)loc, len), NXL_OK);
    XT_ASSERT_OK(nxl_md_invalidate_local(a, &o));
    CF_ASSERT_PEER(&p, cf_pmd_check(&p, "main", 0, 0), NXL_ERR_NOT_FOUND);

    /* Partial over the socket: conn info only, then the descriptors. */
    XT_ASSERT_OK(nxl_md_send_partial(a, &empty, &o));
    CF_ASSERT_PEER(&p, cf_pmd_check(&p, "main", 0, 0), NXL_OK);
    CF_ASSERT_PEER(&p, cf_pmd_check(&p, "main", (uintptr_t)loc, len),
                   NXL_ERR_NOT_FOUND);
    XT_ASSERT_OK(nxl_md_send_partial(a, &dl, &o));
    CF_ASSERT_PEER(&p, cf_pmd_check(&p, "main", (uintptr_t)loc, len), NXL_OK);
    XT_ASSERT_OK(nxl_md_invalidate_local(a, &o));
    CF_ASSERT_PEER(&p, cf_pmd_check(&p, "main", 0, 0), NXL_ERR_NOT_FOUND);

    /* The peer fetches us through our listener. */
    CF_ASSERT_PEER(&p,
                   cf_pmd(&p, CF_OP_MD_FETCH, nxl_agent_listen_port(a), "main"),
                   NXL_OK);
    CF_ASSERT_PEER(&p, cf_pmd_check(&p, "main", (uintptr_t)loc, len), NXL_OK);

    /* No address at all; nobody listening at the address. */
    nxl_opts_init(&o);
    XT_ASSERT_STATUS(nxl_md_send(a, &o), NXL_ERR_NOT_SUPPORTED);
    cf_opts_peer(&o, cf_unused_port());
    o.timeout_ms = 2000;
    CF_ASSERT_ONE_OF(nxl_md_send(a, &o), NXL_ERR_IO, NXL_ERR_TIMEOUT);
    CF_ASSERT_ONE_OF(nxl_md_fetch(a, "peer", &o), NXL_ERR_IO, NXL_ERR_TIMEOUT);
    CF_ASSERT_ONE_OF(nxl_md_invalidate_local(a, &o), NXL_ERR_IO,
                     NXL_ERR_TIMEOUT);

    nxl_agent_destroy(a);
    cf_unmap(loc, len);
    return cf_pstop(&p);
}

/* Invalidation (NIXL §4.5, §7.9): after nxl_md_invalidate, transfers,
 * prepared lists and new requests to that peer fail NOT_FOUND; a reload
 * works and the requests made before it stay stale (generation). */
int
t_invalidate(void)
{
    const uint64_t len = 64 * CF_KIB;
    nxl_prepped_t *lp = NULL, *rp = NULL, *pp = NULL;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL, *xm = NULL, *x2 = NULL;
    nxl_desc_t ld, rd;
    nxl_dlist_t ll, rl;
    uint8_t *loc;
    cf_peer p;
    size_t zero = 0;

    CF_NEED_WHY(NXL_CAP_REMOTE | NXL_CAP_NOTIF,
                "invalidation of a loaded peer's metadata");
    XT_ASSERT(cf_setup(&p, len, 0, 0, &a) == 0);
    loc = cf_map(len);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, len));
    ld = (nxl_desc_t){(uintptr_t)loc, len, 0};
    rd = (nxl_desc_t){cf_raddr(&p, CF_REG_HEAP, 0), len, 0};
    ll = cf_dl(&ld, 1);
    rl = cf_dl(&rd, 1);

    XT_ASSERT_OK(nxl_xfer_create(a, NXL_WRITE, &ll, &rl, "peer", NULL, &x));
    XT_ASSERT_OK(nxl_dlist_prep(a, NULL, &ll, NULL, &lp));
    XT_ASSERT_OK(nxl_dlist_prep(a, "peer", &rl, NULL, &rp));
    XT_ASSERT_OK(
        nxl_xfer_make(a, NXL_WRITE, lp, &zero, rp, &zero, 1, NULL, &xm));
    XT_ASSERT_OK(cf_run(x, NULL));
    XT_ASSERT_OK(cf_run(xm, NULL));

    XT_ASSERT_OK(nxl_md_invalidate(a, "peer"));
    XT_ASSERT_STATUS(nxl_md_check(a, "peer", NULL), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(nxl_xfer_post(x, NULL), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(nxl_xfer_post(xm, NULL), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(
        nxl_xfer_make(a, NXL_WRITE, lp, &zero, rp, &zero, 1, NULL, &x2),
        NXL_ERR_NOT_FOUND);
    XT_ASSERT(x2 == NULL);
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &ll, &rl, "peer", NULL, &x2),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT(x2 == NULL);
    XT_ASSERT_STATUS(nxl_dlist_prep(a, "peer", &rl, NULL, &pp),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT(pp == NULL);
    XT_ASSERT_STATUS(nxl_notif_send(a, "peer", "x", 1, NULL),
                     NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(nxl_md_invalidate(a, "peer"), NXL_ERR_NOT_FOUND);

    /* Reload: new requests work, the old ones stay stale. */
    XT_ASSERT_OK(cf_fetch(a, &p));
    XT_ASSERT_STATUS(nxl_xfer_post(x, NULL), NXL_ERR_NOT_FOUND);
    XT_ASSERT_OK(nxl_xfer_create(a, NXL_WRITE, &ll, &rl, "peer", NULL, &x2));
    cf_fill(loc, len, 500, 0);
    XT_ASSERT_OK(cf_run(x2, NULL));
    XT_ASSERT(cf_pcheck(&p, CF_REG_HEAP, 0, len, 500, "after reload") == 0);
    nxl_xfer_release(x2);
    XT_ASSERT_OK(nxl_dlist_prep(a, "peer", &rl, NULL, &pp));
    XT_ASSERT_OK(
        nxl_xfer_make(a, NXL_WRITE, lp, &zero, pp, &zero, 1, NULL, &x2));
    cf_fill(loc, len, 501, 0);
    XT_ASSERT_OK(cf_run(x2, NULL));
    XT_ASSERT(cf_pcheck(&p, CF_REG_HEAP, 0, len, 501, "after reload") == 0);

    nxl_xfer_release(x2);
    nxl_xfer_release(x);
    nxl_xfer_release(xm);
    nxl_dlist_release(pp);
    nxl_dlist_release(lp);
    nxl_dlist_release(rp);
    nxl_agent_destroy(a);
    cf_unmap(loc, len);
    return cf_pstop(&p);
}

/* nxl_md_load errors (NIXL §4.2, §7.8): own blob INVALID_PARAM; garbage
 * and truncated blobs MISMATCH or PROTO and load nothing; a conflicting
 * reload (same name, other conn info) NOT_ALLOWED and leaves the loaded
 * peer usable; an identical reload is ignored; an additive reload (a new
 * region) is OK and covers old and new regions. */
int
t_md_errors(void)
{
    const uint64_t len = 64 * CF_KIB, extra = 256 * CF_KIB;
    nxl_agent_t *a = NULL, *twin = NULL;
    nxl_blob_t own = {NULL, 0}, tb = {NULL, 0};
    nxl_xfer_t *x = NULL;
    uint8_t junk[512], *loc;
    char name[CF_NAME_MAX];
    cf_peer_cfg pc = {NULL, len, 0, 0};
    void *full = NULL, *fx = NULL;
    size_t full_len = 0, fx_len = 0, i;
    uint64_t xaddr;
    cf_cmd c;
    cf_rep r;
    cf_peer p;

    CF_NEED_WHY(NXL_CAP_REMOTE,
                "loading a peer's metadata blob (own blob, garbage, "
                "conflicts)");
    XT_ASSERT(cf_spawn(&p, &pc) == 0);
    XT_ASSERT_OK(cf_agent("main", 0, &a));
    loc = cf_map(extra);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, extra));

    XT_ASSERT_OK(nxl_md_local(a, &own));
    XT_ASSERT_STATUS(nxl_md_load(a, own.data, own.len, NULL, 0),
                     NXL_ERR_INVALID_PARAM);
    nxl_blob_free(&own);

    /* Garbage: random bytes, a short string, a truncated real blob. */
    for (i = 0; i < sizeof(junk); i++) {
        junk[i] = (uint8_t)(i * 37 + 11);
    }
    CF_ASSERT_ONE_OF(nxl_md_load(a, junk, sizeof(junk), NULL, 0),
                     NXL_ERR_MISMATCH, NXL_ERR_PROTO);
    CF_ASSERT_ONE_OF(nxl_md_load(a, "hello", 5, NULL, 0), NXL_ERR_MISMATCH,
                     NXL_ERR_PROTO);
    XT_ASSERT(cf_pblob(&p, CF_MD_FULL, 0, &full, &full_len) == 0);
    for (i = 1; i < full_len; i += (full_len / 7) + 1) {
        CF_ASSERT_ONE_OF(nxl_md_load(a, full, i, NULL, 0), NXL_ERR_MISMATCH,
                         NXL_ERR_PROTO);
    }
    XT_ASSERT_STATUS(nxl_md_check(a, "peer", NULL), NXL_ERR_NOT_FOUND);

    /* The real blob loads and reports the name; identical reload is OK. */
    memset(name, 0, sizeof(name));
    XT_ASSERT_OK(nxl_md_load(a, full, full_len, name, sizeof(name)));
    XT_ASSERT_STR(name, "peer");
    XT_ASSERT_OK(nxl_md_load(a, full, full_len, NULL, 0));

    /* Another process's agent of the same name conflicts. */
    XT_ASSERT_OK(cf_agent("peer", CF_NO_LISTEN, &twin));
    XT_ASSERT_OK(cf_reg(twin, loc, len));
    XT_ASSERT_OK(nxl_md_local(twin, &tb));
    XT_ASSERT_STATUS(nxl_md_load(a, tb.data, tb.len, NULL, 0),
                     NXL_ERR_NOT_ALLOWED);
    nxl_blob_free(&tb);
    nxl_agent_destroy(twin);
    XT_ASSERT_OK(cf_xfer1(a, NXL_WRITE, (uintptr_t)loc,
                          cf_raddr(&p, CF_REG_HEAP, 0), len, "peer", NULL, &x));
    cf_fill(loc, len, 600, 0);
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    XT_ASSERT(cf_pcheck(&p, CF_REG_HEAP, 0, len, 600, "after conflict") == 0);

    /* Additive: the peer registers another region; reload adds it. */
    c = cf_cmd_of(CF_OP_REG_EXTRA);
    c.len = extra;
    XT_ASSERT(cf_call(&p, &c, &r) == 0);
    CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
    xaddr = r.value;
    {
        nxl_desc_t d = {xaddr, extra, 0};
        nxl_dlist_t dl = cf_dl(&d, 1);

        XT_ASSERT_STATUS(nxl_md_check(a, "peer", &dl), NXL_ERR_NOT_FOUND);
        XT_ASSERT(cf_pblob(&p, CF_MD_FULL, 0, &fx, &fx_len) == 0);
        XT_ASSERT_OK(nxl_md_load(a, fx, fx_len, NULL, 0));
        XT_ASSERT_OK(nxl_md_check(a, "peer", &dl));
        d = (nxl_desc_t){cf_raddr(&p, CF_REG_HEAP, 0), len, 0};
        XT_ASSERT_OK(nxl_md_check(a, "peer", &dl));
    }
    XT_ASSERT_OK(
        cf_xfer1(a, NXL_WRITE, (uintptr_t)loc, xaddr, extra, "peer", NULL, &x));
    cf_fill(loc, extra, 601, 0);
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    XT_ASSERT(cf_pcheck(&p, CF_REG_EXTRA, 0, extra, 601, "extra region") == 0);

    free(full);
    free(fx);
    nxl_agent_destroy(a);
    cf_unmap(loc, extra);
    return cf_pstop(&p);
}

/* Partial metadata (NIXL §4.3, §7.11): descriptors without conn info do
 * not load for an unknown peer; conn info only (nxl_md_local_partial with
 * an empty list) loads the peer with no regions; its descriptors then
 * load additively and transfers work; descriptors with conn info load in
 * one step. */
int
t_md_partial(void)
{
    const uint64_t len = 64 * CF_KIB;
    nxl_agent_t *a = NULL, *b = NULL;
    nxl_xfer_t *x = NULL;
    nxl_desc_t hd, sd;
    nxl_dlist_t hl, sl;
    nxl_status_t st;
    cf_peer_cfg pc = {NULL, len, len, 0};
    void *conn = NULL, *descs = NULL, *sdescs = NULL, *both = NULL;
    size_t conn_len, descs_len, sdescs_len, both_len;
    char name[CF_NAME_MAX];
    uint8_t *loc;
    cf_peer p;

    CF_NEED_WHY(NXL_CAP_REMOTE, "partial metadata of a peer process");
    XT_ASSERT(cf_spawn(&p, &pc) == 0);
    XT_ASSERT_OK(cf_agent("main", 0, &a));
    loc = cf_map(len);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, len));
    hd = (nxl_desc_t){cf_raddr(&p, CF_REG_HEAP, 0), len, 0};
    sd = (nxl_desc_t){cf_raddr(&p, CF_REG_SHARED, 0), len, 0};
    hl = cf_dl(&hd, 1);
    sl = cf_dl(&sd, 1);
    XT_ASSERT(cf_pblob(&p, CF_MD_CONN_ONLY, 0, &conn, &conn_len) == 0);
    XT_ASSERT(cf_pblob(&p, CF_MD_DESCS, CF_REG_HEAP, &descs, &descs_len) == 0);
    XT_ASSERT(cf_pblob(&p, CF_MD_DESCS, CF_REG_SHARED, &sdescs, &sdescs_len) ==
              0);
    XT_ASSERT(cf_pblob(&p, CF_MD_DESCS_CONN, CF_REG_HEAP, &both, &both_len) ==
              0);

    st = nxl_md_load(a, descs, descs_len, NULL, 0);
    if (st >= 0) {
        XT_FAILF("descriptors without conn info of an unknown peer loaded "
                 "(%s)",
                 nxl_status_name(st));
    }
    XT_ASSERT(nxl_last_error()[0] != '\0');
    XT_ASSERT_STATUS(nxl_md_check(a, "peer", NULL), NXL_ERR_NOT_FOUND);

    memset(name, 0, sizeof(name));
    XT_ASSERT_OK(nxl_md_load(a, conn, conn_len, name, sizeof(name)));
    XT_ASSERT_STR(name, "peer");
    XT_ASSERT_OK(nxl_md_check(a, "peer", NULL));
    XT_ASSERT_STATUS(nxl_md_check(a, "peer", &hl), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(
        cf_xfer1(a, NXL_WRITE, (uintptr_t)loc, hd.addr, len, "peer", NULL, &x),
        NXL_ERR_NOT_FOUND);

    XT_ASSERT_OK(nxl_md_load(a, descs, descs_len, NULL, 0));
    XT_ASSERT_OK(nxl_md_check(a, "peer", &hl));
    XT_ASSERT_STATUS(nxl_md_check(a, "peer", &sl), NXL_ERR_NOT_FOUND);
    XT_ASSERT_OK(
        cf_xfer1(a, NXL_WRITE, (uintptr_t)loc, hd.addr, len, "peer", NULL, &x));
    cf_fill(loc, len, 700, 0);
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    XT_ASSERT(cf_pcheck(&p, CF_REG_HEAP, 0, len, 700, "partial") == 0);

    XT_ASSERT_OK(nxl_md_load(a, sdescs, sdescs_len, NULL, 0));
    XT_ASSERT_OK(nxl_md_check(a, "peer", &sl));
    XT_ASSERT_OK(nxl_md_check(a, "peer", &hl));
    XT_ASSERT_OK(
        cf_xfer1(a, NXL_READ, (uintptr_t)loc, sd.addr, len, "peer", NULL, &x));
    XT_ASSERT(cf_pfill(&p, CF_REG_SHARED, 0, len, 701) == 0);
    XT_ASSERT_OK(cf_run(x, NULL));
    nxl_xfer_release(x);
    XT_ASSERT(cf_check_local(loc, len, 701, 0, "partial shared") == 0);

    /* Descriptors with conn info: one step, on a fresh agent. */
    XT_ASSERT_OK(cf_agent("main2", CF_NO_LISTEN, &b));
    XT_ASSERT_OK(nxl_md_load(b, both, both_len, NULL, 0));
    XT_ASSERT_OK(nxl_md_check(b, "peer", &hl));
    XT_ASSERT_STATUS(nxl_md_check(b, "peer", &sl), NXL_ERR_NOT_FOUND);
    nxl_agent_destroy(b);

    free(conn);
    free(descs);
    free(sdescs);
    free(both);
    nxl_agent_destroy(a);
    cf_unmap(loc, len);
    return cf_pstop(&p);
}
