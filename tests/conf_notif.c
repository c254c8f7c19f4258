/* conf_notif.c - conformance cases: notifications attached to transfers,
 * standalone and to the agent itself (the suite: test_conformance.c). */
#include "xt_conf.h"

#include <string.h>

/* cf_notif_post: post x with opts while the peer waits for one
 * notification and checks [roff, roff + len) for seed the moment it sees
 * it; the notification must come from "main" with message msg. */
static int
cf_notif_post(cf_peer *p, nxl_xfer_t *x, const nxl_opts_t *opts, uint64_t roff,
              uint64_t len, uint32_t seed, const char *msg, size_t msg_len)
{
    cf_cmd c = cf_cmd_of(CF_OP_NOTIF_WAIT);
    cf_rep r;

    c.arg = 10000;
    c.region = CF_REG_HEAP;
    c.off = roff;
    c.len = len;
    c.seed = seed;
    if (cf_send(p, &c) != 0) {
        return 1;
    }
    XT_ASSERT_OK(cf_run(x, opts));
    if (cf_recv(p, &r, NULL) != 0) {
        return 1;
    }
    if (r.status != NXL_OK) {
        XT_FAILF("peer got no notification \"%s\": %s (%s)", msg,
                 nxl_status_name((nxl_status_t)r.status), r.err);
    }
    if (strcmp(r.name, "main") != 0 || r.msg_len != msg_len ||
        (msg_len > 0 && memcmp(r.msg, msg, msg_len) != 0)) {
        XT_FAILF("notification from \"%s\" with %u bytes \"%.*s\"; want "
                 "from \"main\" with %zu bytes \"%s\"",
                 r.name, r.msg_len,
                 (int)(r.msg_len < CF_MSG_MAX ? r.msg_len : CF_MSG_MAX), r.msg,
                 msg_len, msg);
    }
    if (r.value2 != 1) {
        XT_FAILF("notification \"%s\" arrived before the data (byte %" PRIu64
                 " wrong)",
                 msg, r.value);
    }
    return 0;
}

/* A notification attached to a transfer (NIXL §7.6): delivered to the
 * target under the initiator's name, after the data is visible (the peer
 * checks the data the moment it sees it), exactly one per post over
 * several posts, an empty message is legal; post opts replace the
 * attached message (NULL keeps it, opts without a notification clears
 * it, as NIXL's extra params on post); READ and xfer_make carry one too. */
int
t_notif_xfer(void)
{
    const uint64_t len = CF_MIB;
    nxl_prepped_t *lp = NULL, *rp = NULL;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    nxl_desc_t ld, rd;
    nxl_dlist_t ll, rl;
    nxl_opts_t o, none;
    uint8_t *loc;
    cf_peer p;
    size_t zero = 0;

    CF_NEED_WHY(NXL_CAP_REMOTE | NXL_CAP_NOTIF,
                "notifications attached to transfers reach a peer process");
    XT_ASSERT(cf_setup(&p, len, 0, 0, &a) == 0);
    loc = cf_map(len);
    XT_ASSERT(loc != NULL);
    XT_ASSERT_OK(cf_reg(a, loc, len));

    cf_opts_notif(&o, "note-0");
    XT_ASSERT_OK(cf_xfer1(a, NXL_WRITE, (uintptr_t)loc,
                          cf_raddr(&p, CF_REG_HEAP, 0), len, "peer", &o, &x));
    /* Post 0 carries the creation-time message. */
    cf_fill(loc, len, 300, 0);
    XT_ASSERT(cf_notif_post(&p, x, NULL, 0, len, 300, "note-0", 6) == 0);
    /* Post 1 replaces it with an empty one. */
    cf_fill(loc, len, 301, 0);
    cf_opts_notif(&o, "");
    XT_ASSERT(cf_notif_post(&p, x, &o, 0, len, 301, "", 0) == 0);
    /* Post 2 keeps the empty one. */
    cf_fill(loc, len, 302, 0);
    XT_ASSERT(cf_notif_post(&p, x, NULL, 0, len, 302, "", 0) == 0);
    /* Post 3 replaces it again. */
    cf_fill(loc, len, 303, 0);
    cf_opts_notif(&o, "note-3, a longer message");
    XT_ASSERT(cf_notif_post(&p, x, &o, 0, len, 303, "note-3, a longer message",
                            24) == 0);
    /* Exactly one per post: nothing else is pending. */
    XT_ASSERT(cf_pnone(&p, 300) == 0);
    /* Opts without a notification clear it. */
    cf_fill(loc, len, 304, 0);
    nxl_opts_init(&none);
    XT_ASSERT_OK(cf_run(x, &none));
    XT_ASSERT(cf_pcheck(&p, CF_REG_HEAP, 0, len, 304, "WRITE") == 0);
    XT_ASSERT(cf_pnone(&p, 300) == 0);
    nxl_xfer_release(x);

    /* READ with a notification: the target is told too. */
    XT_ASSERT(cf_pfill(&p, CF_REG_HEAP, 0, len, 310) == 0);
    cf_opts_notif(&o, "rd");
    XT_ASSERT_OK(cf_xfer1(a, NXL_READ, (uintptr_t)loc,
                          cf_raddr(&p, CF_REG_HEAP, 0), len, "peer", &o, &x));
    XT_ASSERT(cf_notif_post(&p, x, NULL, 0, 0, 0, "rd", 2) == 0);
    XT_ASSERT(cf_check_local(loc, len, 310, 0, "READ") == 0);
    nxl_xfer_release(x);

    /* A prepared-list transfer made with a notification. */
    ld = (nxl_desc_t){(uintptr_t)loc, len, 0};
    rd = (nxl_desc_t){cf_raddr(&p, CF_REG_HEAP, 0), len, 0};
    ll = cf_dl(&ld, 1);
    rl = cf_dl(&rd, 1);
    XT_ASSERT_OK(nxl_dlist_prep(a, NULL, &ll, NULL, &lp));
    XT_ASSERT_OK(nxl_dlist_prep(a, "peer", &rl, NULL, &rp));
    cf_opts_notif(&o, "made");
    XT_ASSERT_OK(nxl_xfer_make(a, NXL_WRITE, lp, &zero, rp, &zero, 1, &o, &x));
    cf_fill(loc, len, 320, 0);
    XT_ASSERT(cf_notif_post(&p, x, NULL, 0, len, 320, "made", 4) == 0);
    XT_ASSERT(cf_pnone(&p, 300) == 0);
    nxl_xfer_release(x);
    nxl_dlist_release(lp);
    nxl_dlist_release(rp);

    nxl_agent_destroy(a);
    cf_unmap(loc, len);
    return cf_pstop(&p);
}

/* Standalone notifications (NIXL NotificationOnly, §1.4 genNotif): each
 * reaches the other agent exactly once under the sender's name, empty
 * ones included, in both directions (the peer sends back after loading
 * our metadata through our side channel). */
int
t_notif_standalone(void)
{
    enum { M = 20 };
    nxl_agent_t *a = NULL;
    cf_cmd c;
    cf_rep r;
    cf_peer p;
    cf_nq *q;
    cf_notif n;
    char msg[CF_MSG_MAX];
    int seen[M], i, k;

    CF_NEED_WHY(NXL_CAP_REMOTE | NXL_CAP_NOTIF,
                "standalone notifications go between two processes' agents");
    XT_ASSERT(cf_setup(&p, 4096, 0, 0, &a) == 0);
    q = calloc(1, sizeof(*q));
    XT_ASSERT(q != NULL);

    c = cf_cmd_of(CF_OP_NOTIF_WAIT);
    c.arg = 10000;
    XT_ASSERT(cf_send(&p, &c) == 0);
    XT_ASSERT_OK(nxl_notif_send(a, "peer", "hello", 5, NULL));
    XT_ASSERT(cf_recv(&p, &r, NULL) == 0);
    CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
    XT_ASSERT_STR(r.name, "main");
    XT_ASSERT(r.msg_len == 5 && memcmp(r.msg, "hello", 5) == 0);

    /* An empty message is legal. */
    XT_ASSERT(cf_send(&p, &c) == 0);
    XT_ASSERT_OK(nxl_notif_send(a, "peer", "", 0, NULL));
    XT_ASSERT(cf_recv(&p, &r, NULL) == 0);
    CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
    XT_ASSERT_STR(r.name, "main");
    XT_ASSERT_EQ(r.msg_len, 0);

    /* A burst: every message exactly once. */
    for (i = 0; i < M; i++) {
        snprintf(msg, sizeof(msg), "burst-%d", i);
        XT_ASSERT_OK(nxl_notif_send(a, "peer", msg, strlen(msg), NULL));
        seen[i] = 0;
    }
    for (i = 0; i < M; i++) {
        XT_ASSERT(cf_call(&p, &c, &r) == 0);
        CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
        XT_ASSERT_STR(r.name, "main");
        if (r.msg_len < 7 || r.msg_len >= CF_MSG_MAX ||
            memcmp(r.msg, "burst-", 6) != 0) {
            XT_FAILF("unexpected burst message (%u bytes)", r.msg_len);
        }
        r.msg[r.msg_len] = '\0';
        k = atoi(r.msg + 6);
        XT_ASSERT(k >= 0 && k < M);
        XT_ASSERT_EQ(seen[k], 0);
        seen[k] = 1;
    }
    XT_ASSERT(cf_pnone(&p, 300) == 0);

    /* The other way: the peer loads us and notifies us. */
    CF_ASSERT_PEER(&p,
                   cf_pmd(&p, CF_OP_MD_FETCH, nxl_agent_listen_port(a), "main"),
                   NXL_OK);
    c = cf_cmd_of(CF_OP_NOTIF_SEND);
    snprintf(c.name, sizeof(c.name), "main");
    memcpy(c.msg, "back", 4);
    c.msg_len = 4;
    XT_ASSERT(cf_call(&p, &c, &r) == 0);
    CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
    c.msg_len = 0;
    XT_ASSERT(cf_call(&p, &c, &r) == 0);
    CF_ASSERT_PEER(&p, (nxl_status_t)r.status, NXL_OK);
    XT_ASSERT_OK(cf_nq_next(a, q, 10000, &n));
    if (!cf_notif_is(&n, "peer", "back", 4)) {
        XT_FAILF("got \"%s\" from \"%s\", want \"back\" from \"peer\"", n.msg,
                 n.agent);
    }
    XT_ASSERT_OK(cf_nq_next(a, q, 10000, &n));
    XT_ASSERT(cf_notif_is(&n, "peer", "", 0));
    XT_ASSERT_EQ(cf_nq_next(a, q, 300, &n), NXL_ERR_TIMEOUT);

    free(q);
    nxl_agent_destroy(a);
    return cf_pstop(&p);
}

/* A notification to the agent's own name (NIXL SelfNotification, §7.7)
 * arrives under its own name, without any metadata exchange; empty too. */
int
t_notif_self(void)
{
    nxl_agent_t *a = NULL;
    cf_nq *q;
    cf_notif n;

    CF_NEED_WHY(NXL_CAP_LOCAL | NXL_CAP_NOTIF,
                "the case sends notifications to the agent's own name");
    q = calloc(1, sizeof(*q));
    XT_ASSERT(q != NULL);
    XT_ASSERT_OK(cf_agent("main", CF_NO_LISTEN, &a));
    XT_ASSERT_OK(nxl_notif_send(a, "main", "self", 4, NULL));
    XT_ASSERT_OK(nxl_notif_send(a, "main", "", 0, NULL));
    XT_ASSERT_OK(cf_nq_next(a, q, 10000, &n));
    if (!cf_notif_is(&n, "main", "self", 4)) {
        XT_FAILF("got %zu bytes from \"%s\", want \"self\" from \"main\"",
                 n.len, n.agent);
    }
    XT_ASSERT_OK(cf_nq_next(a, q, 10000, &n));
    XT_ASSERT(cf_notif_is(&n, "main", "", 0));
    XT_ASSERT_EQ(cf_nq_next(a, q, 200, &n), NXL_ERR_TIMEOUT);
    nxl_agent_destroy(a);
    free(q);
    return 0;
}
