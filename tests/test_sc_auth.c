/*
 * test_sc_auth.c - the side channel with a shared secret (issue 15,
 * hardening 3): a listener with a secret answers only clients that prove
 * they know it, and a client with one accepts only a listener that proves
 * it too; a wrong or missing secret loads, answers and invalidates
 * nothing; floods of connections and of requests do not lock other
 * clients out. Everything runs on 127.0.0.1 with ephemeral ports.
 */
#include "harness.h"
#include "md/md.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

/* sa_agent makes an agent with a listener on an ephemeral loopback port
 * (listen) and the side-channel secret (NULL: none). */
static nxl_status_t
sa_agent(const char *name, int listen, const char *secret, nxl_agent_t **a_p)
{
    nxl_agent_config_t cfg;

    nxl_agent_config_init(&cfg);
    cfg.listen_thread = listen;
    cfg.listen_port = 0;
    cfg.listen_addr = "127.0.0.1";
    cfg.sc_secret = secret;
    return nxl_agent_create(name, &cfg, a_p);
}

/* sa_opts points opts at agent a's listener. */
static void
sa_opts(nxl_opts_t *o, const nxl_agent_t *a)
{
    nxl_opts_init(o);
    o->ip_addr = "127.0.0.1";
    o->port = nxl_agent_listen_port(a);
    o->timeout_ms = 5000;
}

/* The same secret on both sides: fetch, send and invalidate work. */
static int
t_same_secret(void)
{
    nxl_agent_t *a = NULL, *b = NULL;
    nxl_opts_t o;

    XT_ASSERT_OK(sa_agent("a", 1, "alpha", &a));
    XT_ASSERT_OK(sa_agent("b", 0, "alpha", &b));
    sa_opts(&o, a);
    XT_ASSERT_OK(nxl_md_fetch(b, "a", &o));
    XT_ASSERT_OK(nxl_md_check(b, "a", NULL));
    XT_ASSERT_OK(nxl_md_send(b, &o));
    XT_ASSERT_OK(nxl_md_check(a, "b", NULL));
    XT_ASSERT_OK(nxl_md_invalidate_local(b, &o));
    XT_ASSERT_STATUS(nxl_md_check(a, "b", NULL), NXL_ERR_NOT_FOUND);
    nxl_agent_destroy(b);
    nxl_agent_destroy(a);
    return 0;
}

/* A wrong secret, or none, gets NOT_ALLOWED and changes nothing on the
 * listener: no load, no invalidation, no metadata handed out. */
static int
t_wrong_or_no_secret(void)
{
    nxl_agent_t *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    nxl_opts_t o;

    XT_ASSERT_OK(sa_agent("a", 1, "alpha", &a));
    XT_ASSERT_OK(sa_agent("b", 0, "alpha", &b));
    XT_ASSERT_OK(sa_agent("c", 0, "beta", &c));
    XT_ASSERT_OK(sa_agent("d", 0, NULL, &d));
    sa_opts(&o, a);
    XT_ASSERT_OK(nxl_md_send(b, &o)); /* a knows b */

    XT_ASSERT_STATUS(nxl_md_fetch(c, "a", &o), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_STATUS(nxl_md_send(c, &o), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_STATUS(nxl_md_invalidate_local(c, &o), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_STATUS(nxl_md_check(c, "a", NULL), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(nxl_md_check(a, "c", NULL), NXL_ERR_NOT_FOUND);

    XT_ASSERT_STATUS(nxl_md_fetch(d, "a", &o), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_MSG("requires authentication");
    XT_ASSERT_STATUS(nxl_md_send(d, &o), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_STATUS(nxl_md_check(a, "d", NULL), NXL_ERR_NOT_FOUND);
    XT_ASSERT_STATUS(nxl_md_check(d, "a", NULL), NXL_ERR_NOT_FOUND);

    /* Still b, still loaded: nobody invalidated it. */
    XT_ASSERT_OK(nxl_md_check(a, "b", NULL));
    nxl_agent_destroy(d);
    nxl_agent_destroy(c);
    nxl_agent_destroy(b);
    nxl_agent_destroy(a);
    return 0;
}

/* sa_raw_call sends one frame (type, payload) on a fresh connection
 * without authenticating and returns the status of the ACK it gets. */
static nxl_status_t
sa_raw_call(uint16_t port, uint8_t type, const void *payload, uint32_t len)
{
    uint8_t rtype = 0;
    nxl_blob_t reply = {0};
    nxl_status_t st;

    st = nxl__sc_call("127.0.0.1", port, type, payload, len, 5000, &rtype,
                      &reply);
    if (st == NXL_OK) {
        st = rtype == NXL__SC_ACK ? nxl__sc_ack_parse(reply.data, reply.len)
                                  : NXL_OK;
    }
    nxl_blob_free(&reply);
    return st;
}

/* An unauthenticated INVL naming a loaded peer, or a LOAD of forged
 * metadata, is refused before its payload is read. */
static int
t_raw_frames_refused(void)
{
    nxl_agent_t *a = NULL, *b = NULL;
    nxl_blob_t md = {0};
    nxl_opts_t o;

    XT_ASSERT_OK(sa_agent("a", 1, "alpha", &a));
    XT_ASSERT_OK(sa_agent("b", 0, "alpha", &b));
    sa_opts(&o, a);
    XT_ASSERT_OK(nxl_md_send(b, &o));
    XT_ASSERT_STATUS(sa_raw_call(o.port, NXL__SC_INVL, "b", 1),
                     NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_OK(nxl_md_check(a, "b", NULL));
    nxl_agent_destroy(b);
    XT_ASSERT_OK(nxl_agent_create("x", NULL, &b));
    XT_ASSERT_OK(nxl_md_local(b, &md));
    XT_ASSERT_STATUS(
        sa_raw_call(o.port, NXL__SC_LOAD, md.data, (uint32_t)md.len),
        NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_STATUS(nxl_md_check(a, "x", NULL), NXL_ERR_NOT_FOUND);
    nxl_blob_free(&md);
    nxl_agent_destroy(b);
    nxl_agent_destroy(a);
    return 0;
}

/* A client with a secret does not trust a listener without one (or with
 * another): the listener must prove it, too. */
static int
t_listener_must_prove(void)
{
    nxl_agent_t *open_l = NULL, *other = NULL, *b = NULL;
    nxl_opts_t o;

    XT_ASSERT_OK(sa_agent("open", 1, NULL, &open_l));
    XT_ASSERT_OK(sa_agent("other", 1, "gamma", &other));
    XT_ASSERT_OK(sa_agent("b", 0, "alpha", &b));
    sa_opts(&o, open_l);
    XT_ASSERT_STATUS(nxl_md_fetch(b, NULL, &o), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_MSG("no secret");
    XT_ASSERT_STATUS(nxl_md_check(b, "open", NULL), NXL_ERR_NOT_FOUND);
    sa_opts(&o, other);
    XT_ASSERT_STATUS(nxl_md_fetch(b, NULL, &o), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_STATUS(nxl_md_check(b, "other", NULL), NXL_ERR_NOT_FOUND);
    nxl_agent_destroy(b);
    nxl_agent_destroy(other);
    nxl_agent_destroy(open_l);
    return 0;
}

/* NXL_SC_SECRET stands in for the config field. */
static int
t_env_secret(void)
{
    nxl_agent_t *a = NULL, *b = NULL, *c = NULL;
    nxl_opts_t o;

    XT_ASSERT_OK(sa_agent("a", 1, "delta", &a));
    setenv("NXL_SC_SECRET", "delta", 1);
    XT_ASSERT_OK(sa_agent("b", 0, NULL, &b));
    setenv("NXL_SC_SECRET", "epsilon", 1);
    XT_ASSERT_OK(sa_agent("c", 0, NULL, &c));
    unsetenv("NXL_SC_SECRET");
    sa_opts(&o, a);
    XT_ASSERT_OK(nxl_md_fetch(b, "a", &o));
    XT_ASSERT_STATUS(nxl_md_fetch(c, "a", &o), NXL_ERR_NOT_ALLOWED);
    nxl_agent_destroy(c);
    nxl_agent_destroy(b);
    nxl_agent_destroy(a);
    return 0;
}

/* sa_connect opens a TCP connection to 127.0.0.1:port (-1 on failure). */
static int
sa_connect(uint16_t port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd >= 0 &&
        connect(fd, (const struct sockaddr *)&sin, sizeof(sin)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

typedef struct {
    uint16_t port;
    atomic_bool stop;
    unsigned opened;
} sa_flood_t;

/* sa_flood_main opens connections as fast as it can, half of them sending
 * half a header, keeping the last 300 open. */
static void *
sa_flood_main(void *arg)
{
    sa_flood_t *f = arg;
    int fds[300];
    unsigned i = 0, k;

    memset(fds, -1, sizeof(fds));
    while (!atomic_load(&f->stop)) {
        k = i % 300;
        if (fds[k] >= 0) {
            close(fds[k]);
        }
        fds[k] = sa_connect(f->port);
        if (fds[k] >= 0 && (i & 1)) {
            (void)send(fds[k], "NXSC", 4, MSG_NOSIGNAL);
        }
        i++;
    }
    for (k = 0; k < 300; k++) {
        if (fds[k] >= 0) {
            close(fds[k]);
        }
    }
    f->opened = i;
    return NULL;
}

/* A flood of idle and stalled connections (more than the listener
 * holds) does not stop an authenticated client's fetches. */
static int
t_connection_flood(void)
{
    nxl_agent_t *a = NULL, *b = NULL;
    sa_flood_t f;
    pthread_t th;
    nxl_opts_t o;
    int k, held[400], n = 0;

    XT_ASSERT_OK(sa_agent("a", 1, "alpha", &a));
    XT_ASSERT_OK(sa_agent("b", 0, "alpha", &b));
    sa_opts(&o, a);
    /* 400 connections held open first: the table is full. */
    for (k = 0; k < 400; k++) {
        held[k] = sa_connect(o.port);
        n += held[k] >= 0;
    }
    XT_ASSERT(n > 300);
    usleep(100000);
    memset(&f, 0, sizeof(f));
    f.port = o.port;
    atomic_init(&f.stop, false);
    XT_ASSERT(pthread_create(&th, NULL, sa_flood_main, &f) == 0);
    for (k = 0; k < 20; k++) {
        XT_ASSERT_OK(nxl_md_fetch(b, "a", &o));
    }
    atomic_store(&f.stop, true);
    pthread_join(th, NULL);
    printf("  20 fetches served while %d connections were held and %u more "
           "were opened\n",
           n, f.opened);
    for (k = 0; k < 400; k++) {
        if (held[k] >= 0) {
            close(held[k]);
        }
    }
    nxl_agent_destroy(b);
    nxl_agent_destroy(a);
    return 0;
}

/* Requests over a client's rate are refused with a message; the bucket
 * refills. */
static int
t_request_rate(void)
{
    nxl_agent_t *a = NULL, *b = NULL;
    nxl_status_t st;
    nxl_opts_t o;
    int k, refused = 0;

    setenv("NXL_SC_RATE", "20", 1);
    XT_ASSERT_OK(sa_agent("a", 1, NULL, &a));
    unsetenv("NXL_SC_RATE");
    XT_ASSERT_OK(sa_agent("b", 0, NULL, &b));
    sa_opts(&o, a);
    for (k = 0; k < 100; k++) {
        st = nxl_md_fetch(b, "a", &o);
        if (st == NXL_ERR_NOT_ALLOWED) {
            XT_ASSERT_MSG("rate");
            refused++;
        } else {
            XT_ASSERT_OK(st);
        }
    }
    printf("  100 fetches at full speed, rate 20/s: %d refused\n", refused);
    XT_ASSERT(refused >= 30);
    usleep(300000);
    XT_ASSERT_OK(nxl_md_fetch(b, "a", &o));
    nxl_agent_destroy(b);
    nxl_agent_destroy(a);
    return 0;
}

static const xt_case sa_cases[] = {
    {"same_secret", t_same_secret},
    {"wrong_or_no_secret", t_wrong_or_no_secret},
    {"raw_frames_refused", t_raw_frames_refused},
    {"listener_must_prove", t_listener_must_prove},
    {"env_secret", t_env_secret},
    {"connection_flood", t_connection_flood},
    {"request_rate", t_request_rate},
    {NULL, NULL},
};

const xt_suite xt_suite_sc_auth = {"sc_auth", sa_cases, 60, NULL};
