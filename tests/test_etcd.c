/*
 * test_etcd.c - the etcd metadata store (issue 11, item 1) against real
 * etcd servers: each case that needs one starts Debian's etcd (one member
 * or a three-member cluster) on free 127.0.0.1 ports in a temporary
 * directory and stops it, so nothing outside the case is touched. Without
 * an etcd binary (PATH, or NXL_TEST_ETCD) those cases skip with the
 * reason; `make test` installs it. The parser cases need no server.
 *
 * Covered: two agents discover each other by name (and move data with
 * what they found); the key layout <ns>/<agent>/<label> and the NIXL_
 * spellings; partial metadata by label; a fetch that waits for a key; an
 * invalidation reaching the peer; a SIGKILLed agent seen gone within the
 * lease TTL + 1 s; a clean destroy seen at once; an agent restarted
 * within the TTL reloaded by its peer; a 3-member cluster losing its
 * leader mid-run; etcd down (a clear error within the timeout, no hang);
 * etcd restarted with its data (watches resume) and empty (the agent
 * registers again); and the publish + first fetch cost against raw HTTP
 * put + range on the same etcd (docs/performance.md; NXL_ETCD_PERF_N,
 * NXL_TEST_ETCD_TMP, NXL_TEST_ETCD_TTL tune it).
 */
#include "harness.h"
#include "md/store.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define XE_MAX 3
/* The lease TTL of the cases, seconds: 2, or NXL_TEST_ETCD_TTL (1..20). */
static int
xe_ttl(void)
{
    const char *v = getenv("NXL_TEST_ETCD_TTL");
    int t = v ? atoi(v) : 2;

    return t >= 1 && t <= 20 ? t : 2;
}
#define XE_TTL xe_ttl()

typedef struct xe_member {
    pid_t pid;
    uint16_t client, peer;
} xe_member_t;

typedef struct xe_cluster {
    char dir[128];
    char bin[256];
    int n;
    xe_member_t m[XE_MAX];
    char endpoints[256]; /* every member, member 0 first */
} xe_cluster_t;

/* --- etcd servers --------------------------------------------------------- */

static uint16_t
xe_free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    uint16_t port = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
        port = ntohs(sa.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

/* xe_find_etcd puts the etcd binary's path in bin, or returns -1. */
static int
xe_find_etcd(char *bin, size_t cap)
{
    const char *env = getenv("NXL_TEST_ETCD"), *path = getenv("PATH");
    char buf[1024], *save = NULL, *d;

    if (env != NULL && env[0] != '\0') {
        snprintf(bin, cap, "%s", env);
        return access(bin, X_OK) == 0 ? 0 : -1;
    }
    snprintf(buf, sizeof(buf), "%s", path ? path : "/usr/bin:/bin");
    for (d = strtok_r(buf, ":", &save); d != NULL;
         d = strtok_r(NULL, ":", &save)) {
        snprintf(bin, cap, "%s/etcd", d);
        if (access(bin, X_OK) == 0) {
            return 0;
        }
    }
    return -1;
}

static size_t
xe_sink(char *p, size_t sz, size_t n, void *arg)
{
    char *out = ((char **)arg)[0];
    size_t *len = (size_t *)((char **)arg)[1], cap = 65536;

    n *= sz;
    if (*len + n < cap) {
        memcpy(out + *len, p, n);
        *len += n;
        out[*len] = '\0';
    }
    return n;
}

/* xe_http POSTs body to url and puts the answer (NUL-terminated, cut at
 * 64 KiB) in out. Returns the HTTP status, or -1. A NULL handle makes a
 * throw-away one. */
static long
xe_http(CURL *h, const char *url, const char *body, char *out)
{
    size_t len = 0;
    void *ctx[2] = {out, &len};
    bool own = h == NULL;
    long code = -1;

    out[0] = '\0';
    if (own) {
        h = curl_easy_init();
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, xe_sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, ctx);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 2000L);
    if (curl_easy_perform(h) == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    }
    if (own) {
        curl_easy_cleanup(h);
    }
    return code;
}

static void
xe_b64(const char *s, char *out)
{
    static const char a[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s), i, o = 0;
    const unsigned char *p = (const unsigned char *)s;

    for (i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 |
                     (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);

        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? a[v & 63] : '=';
    }
    out[o] = '\0';
}

/* xe_key_exists reads key on member i: 1 there, 0 not, -1 no answer. */
static int
xe_key_exists(const xe_cluster_t *c, int i, const char *key)
{
    char url[128], body[512], k[400], out[65536];

    xe_b64(key, k);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/v3/kv/range",
             c->m[i].client);
    snprintf(body, sizeof(body), "{\"key\":\"%s\"}", k);
    if (xe_http(NULL, url, body, out) != 200) {
        return -1;
    }
    return strstr(out, "\"kvs\"") != NULL;
}

static pid_t
xe_spawn(xe_cluster_t *c, int i, const char *state)
{
    char name[16], data[192], curl_[64], purl[64], cluster[256], log[192];
    size_t len = 0;
    pid_t pid;
    int k, fd;

    snprintf(name, sizeof(name), "m%d", i);
    snprintf(data, sizeof(data), "%s/%s", c->dir, name);
    snprintf(log, sizeof(log), "%s/%s.log", c->dir, name);
    snprintf(curl_, sizeof(curl_), "http://127.0.0.1:%u", c->m[i].client);
    snprintf(purl, sizeof(purl), "http://127.0.0.1:%u", c->m[i].peer);
    cluster[0] = '\0';
    for (k = 0; k < c->n; k++) {
        nxl__text_addf(cluster, sizeof(cluster), &len,
                       "%sm%d=http://"
                       "127.0.0.1:%u",
                       k ? "," : "", k, c->m[k].peer);
    }
    pid = fork();
    if (pid != 0) {
        return pid;
    }
    fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    execl(c->bin, "etcd", "--name", name, "--data-dir", data,
          "--listen-client-urls", curl_, "--advertise-client-urls", curl_,
          "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
          "--initial-cluster", cluster, "--initial-cluster-state", state,
          "--initial-cluster-token", "nxl-test", "--heartbeat-interval", "50",
          "--election-timeout", "500", "--log-level", "warn", (char *)NULL);
    _exit(127);
}

/* xe_ready waits until member i serves a linearizable read (it has a
 * leader), up to ms. */
static int
xe_ready(const xe_cluster_t *c, int i, unsigned ms)
{
    uint64_t end = xt_now_ms() + ms;

    do {
        if (xe_key_exists(c, i, "/nxl-test/ready") >= 0) {
            return 0;
        }
        usleep(20000);
    } while (xt_now_ms() < end);
    return -1;
}

static void
xe_kill(xe_cluster_t *c, int i)
{
    if (c->m[i].pid > 0) {
        kill(c->m[i].pid, SIGKILL);
        while (waitpid(c->m[i].pid, NULL, 0) < 0 && errno == EINTR) {
        }
        c->m[i].pid = 0;
    }
}

static void
xe_rmdir(const char *path)
{
    char sub[512];
    struct dirent *de;
    struct stat st;
    DIR *d = opendir(path);

    while (d != NULL && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) {
            xe_rmdir(sub);
        } else {
            unlink(sub);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    rmdir(path);
}

static void
xe_stop(xe_cluster_t *c)
{
    int i;

    for (i = 0; i < c->n; i++) {
        xe_kill(c, i);
    }
    if (c->dir[0] != '\0') {
        xe_rmdir(c->dir);
    }
}

/* xe_restart starts member i again: with fresh, on an empty data dir as a
 * new one-member cluster (etcd lost everything). */
static int
xe_restart(xe_cluster_t *c, int i, bool fresh)
{
    char data[192];

    if (fresh) {
        snprintf(data, sizeof(data), "%s/m%d", c->dir, i);
        xe_rmdir(data);
    }
    c->m[i].pid = xe_spawn(c, i, fresh ? "new" : "existing");
    return c->m[i].pid > 0 ? xe_ready(c, i, 10000) : -1;
}

/* xe_start starts an n-member cluster; 1 skip (printed), -1 failure. */
static int
xe_start(xe_cluster_t *c, int n)
{
    size_t len = 0;
    int i, tries;

    memset(c, 0, sizeof(*c));
    if (xe_find_etcd(c->bin, sizeof(c->bin)) != 0) {
        printf("  skip: no etcd binary (apt-get install etcd-server, or set "
               "NXL_TEST_ETCD)\n");
        return 1;
    }
    snprintf(c->dir, sizeof(c->dir), "%s/nxl-etcd-XXXXXX",
             getenv("NXL_TEST_ETCD_TMP") ? getenv("NXL_TEST_ETCD_TMP")
                                         : "/tmp");
    if (mkdtemp(c->dir) == NULL) {
        c->dir[0] = '\0';
        return -1;
    }
    c->n = n;
    for (tries = 0; tries < 3; tries++) {
        for (i = 0; i < n; i++) {
            c->m[i].client = xe_free_port();
            c->m[i].peer = xe_free_port();
        }
        for (i = 0; i < n; i++) {
            c->m[i].pid = xe_spawn(c, i, "new");
        }
        for (i = 0; i < n; i++) {
            if (xe_ready(c, i, 15000) != 0) {
                break;
            }
        }
        if (i == n) {
            break;
        }
        /* A port was taken meanwhile, most likely: again elsewhere. */
        for (i = 0; i < n; i++) {
            char data[192];

            xe_kill(c, i);
            snprintf(data, sizeof(data), "%s/m%d", c->dir, i);
            xe_rmdir(data);
        }
    }
    if (tries == 3) {
        fprintf(stderr, "etcd did not start (logs in %s)\n", c->dir);
        return -1;
    }
    c->endpoints[0] = '\0';
    for (i = 0; i < n; i++) {
        nxl__text_addf(c->endpoints, sizeof(c->endpoints), &len,
                       "%shttp://127.0.0.1:%u", i ? "," : "", c->m[i].client);
    }
    setenv("NXL_ETCD_ENDPOINTS", c->endpoints, 1);
    {
        char ttl[16];

        snprintf(ttl, sizeof(ttl), "%d", XE_TTL);
        setenv("NXL_ETCD_LEASE_TTL", ttl, 1);
    }
    unsetenv("NIXL_ETCD_ENDPOINTS");
    unsetenv("NXL_ETCD_NAMESPACE");
    unsetenv("NIXL_ETCD_NAMESPACE");
    return 0;
}

typedef int (*xe_body_fn)(xe_cluster_t *c);

/* xe_run starts n members, runs body, and stops them whatever happens. */
static int
xe_run(int n, xe_body_fn body)
{
    xe_cluster_t c;
    int rc = xe_start(&c, n);

    if (rc == 1) {
        xe_stop(&c);
        return XT_SKIP;
    }
    if (rc != 0) {
        xe_stop(&c);
        return 1;
    }
    rc = body(&c);
    xe_stop(&c);
    return rc != 0 ? rc : xt_leaks();
}

/* --- agents -------------------------------------------------------------- */

#define XE_BUF 4096

typedef struct xe_agent {
    nxl_agent_t *a;
    uint8_t *buf;
    nxl_desc_t d[2]; /* two registrations, XE_BUF / 2 each */
} xe_agent_t;

/* xe_agent makes an agent with a TCP backend and two registered halves of
 * a buffer filled with seed. */
static nxl_status_t
xe_agent(const char *name, uint8_t seed, xe_agent_t *x)
{
    nxl_backend_t *be;
    nxl_dlist_t dl;
    nxl_status_t st;

    memset(x, 0, sizeof(*x));
    st = nxl_agent_create(name, NULL, &x->a);
    if (st != NXL_OK) {
        return st;
    }
    st = nxl_backend_create(x->a, "TCP", NULL, &be);
    if (st != NXL_OK) {
        return st;
    }
    x->buf = malloc(XE_BUF);
    memset(x->buf, seed, XE_BUF);
    x->d[0] = (nxl_desc_t){(uint64_t)(uintptr_t)x->buf, XE_BUF / 2, 0};
    x->d[1] =
        (nxl_desc_t){(uint64_t)(uintptr_t)x->buf + XE_BUF / 2, XE_BUF / 2, 0};
    dl = (nxl_dlist_t){NXL_DRAM, x->d, 2};
    return nxl_mem_register(x->a, &dl, NULL);
}

static void
xe_agent_free(xe_agent_t *x)
{
    nxl_agent_destroy(x->a);
    free(x->buf);
    memset(x, 0, sizeof(*x));
}

static nxl_opts_t
xe_opts(const char *label, int timeout_ms)
{
    nxl_opts_t o;

    nxl_opts_init(&o);
    o.label = label;
    o.timeout_ms = timeout_ms;
    return o;
}

/* xe_read has `to` READ peer `from`'s first half into its own second half
 * and checks the bytes. */
static int
xe_read(xe_agent_t *to, xe_agent_t *from, uint8_t want)
{
    nxl_dlist_t l = {NXL_DRAM, &to->d[1], 1}, r = {NXL_DRAM, &from->d[0], 1};
    nxl_xfer_t *x = NULL;
    nxl_status_t st;
    size_t i;

    XT_ASSERT_OK(nxl_xfer_create(to->a, NXL_READ, &l, &r,
                                 nxl_agent_name(from->a), NULL, &x));
    st = nxl_xfer_post(x, NULL);
    if (st == NXL_IN_PROG) {
        st = nxl_xfer_wait(x, 5000);
    }
    nxl_xfer_release(x);
    XT_ASSERT_OK(st);
    for (i = XE_BUF / 2; i < XE_BUF; i++) {
        if (to->buf[i] != want) {
            XT_FAILF("byte %zu is %u, want %u", i, to->buf[i], want);
        }
    }
    return 0;
}

/* xe_wait_gone polls until peer is no longer loaded in a; returns the ms
 * it took, or -1 after limit_ms. */
static long
xe_wait_gone(nxl_agent_t *a, const char *peer, uint64_t t0, unsigned limit_ms)
{
    while (xt_now_ms() - t0 <= limit_ms) {
        if (nxl_md_check(a, peer, NULL) == NXL_ERR_NOT_FOUND) {
            return (long)(xt_now_ms() - t0);
        }
        usleep(5000);
    }
    return -1;
}

/* --- cases without a server ---------------------------------------------- */

/* The answer parser: every shape etcd sends, and what it must refuse. */
static int
t_parse(void)
{
    static const char *const bad[] = {
        "",
        "{",
        "[]",
        "\"x\"",
        "{\"header\":{\"revision\":\"12x\"}}",
        "{\"header\":{\"revision\":\"99999999999999999999\"}}",
        "{\"header\":{\"revision\":true}}",
        "{\"header\":[]}",
        "{\"kvs\":{}}",
        "{\"kvs\":[1]}",
        "{\"kvs\":[{\"value\":\"abc\"}]}",
        "{\"kvs\":[{\"value\":\"ab=c\"}]}",
        "{\"kvs\":[{\"value\":\"a===\"}]}",
        "{\"kvs\":[{\"value\":\"!!!!\"}]}",
        "{\"kvs\":[{\"value\":5}]}",
        "{\"result\":7}",
        "{\"result\":{\"events\":{}}}",
        "{\"result\":{\"events\":[{\"type\":\"DELETE\"}]}}",
        "{\"result\":{\"events\":[{\"type\":\"MOVE\",\"kv\":{}}]}}",
        "{\"result\":{\"events\":[{\"type\":5,\"kv\":{}}]}}",
        "{\"created\":\"yes\"}",
        "{\"error\":{\"grpc_code\":\"x\"}}",
        "{\"error\":{\"message\":5}}",
        "{} x",
        "{}{}",
        ("{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]"
         "]]]]]]]]]]]]]]]]]]]]]}"),
        "{\"ID\":1.5}",
    };
    nxl__etcd_reply_t r;
    const char *s;
    size_t i;

    s = "{\"header\":{\"cluster_id\":\"1\",\"revision\":\"42\"},\"kvs\":[{"
        "\"key\":\"a2V5\",\"create_revision\":\"40\",\"mod_revision\":\"41\","
        "\"version\":\"2\",\"value\":\"aGVsbG8=\"}],\"count\":\"1\"}\n";
    XT_ASSERT_OK(nxl__etcd_parse(s, strlen(s), NULL, &r));
    XT_ASSERT_EQ(r.revision, 42);
    XT_ASSERT_EQ(r.count, 1);
    XT_ASSERT(r.has_kv);
    XT_ASSERT_EQ(r.mod_revision, 41);
    XT_ASSERT_EQ(r.value.len, 5);
    XT_ASSERT(memcmp(r.value.data, "hello", 5) == 0);
    nxl__etcd_reply_fini(&r);

    s = "{\"header\":{\"revision\":\"7\"}}";
    XT_ASSERT_OK(nxl__etcd_parse(s, strlen(s), NULL, &r));
    XT_ASSERT(!r.has_kv && r.count == 0 && r.revision == 7);
    nxl__etcd_reply_fini(&r);

    s = "{\"header\":{},\"ID\":\"7587884166958044964\",\"TTL\":\"2\"}";
    XT_ASSERT_OK(nxl__etcd_parse(s, strlen(s), NULL, &r));
    XT_ASSERT(r.lease_id == 7587884166958044964ll && r.ttl == 2);
    nxl__etcd_reply_fini(&r);

    /* A keep-alive of a lease that is gone: no TTL. */
    s = "{\"result\":{\"header\":{\"revision\":\"2\"},\"ID\":\"12345\"}}";
    XT_ASSERT_OK(nxl__etcd_parse(s, strlen(s), NULL, &r));
    XT_ASSERT(r.lease_id == 12345 && r.ttl == 0 && r.grpc_code == 0);
    nxl__etcd_reply_fini(&r);

    /* Unary and stream errors. */
    s = "{\"error\":\"etcdserver: requested lease not found\",\"message\":"
        "\"etcdserver: requested lease not found\",\"code\":5}";
    XT_ASSERT_OK(nxl__etcd_parse(s, strlen(s), NULL, &r));
    XT_ASSERT_EQ(r.grpc_code, 5);
    XT_ASSERT_STR(r.message, "etcdserver: requested lease not found");
    nxl__etcd_reply_fini(&r);
    s = "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":"
        "\"no leader\\u0007\",\"http_status\":\"Service Unavailable\"}}";
    XT_ASSERT_OK(nxl__etcd_parse(s, strlen(s), NULL, &r));
    XT_ASSERT_EQ(r.grpc_code, 14);
    XT_ASSERT_STR(r.message, "no leader?");
    nxl__etcd_reply_fini(&r);

    /* Watch: created, then DELETE events (the highest counts), then the
     * PUT of the key waited for (others ignored). */
    s = "{\"result\":{\"header\":{\"revision\":\"9\"},\"created\":true}}";
    XT_ASSERT_OK(nxl__etcd_parse(s, strlen(s), NULL, &r));
    XT_ASSERT(r.created && !r.canceled && r.revision == 9);
    nxl__etcd_reply_fini(&r);
    s = "{\"result\":{\"header\":{\"revision\":\"12\"},\"events\":[{\"type\":"
        "\"DELETE\",\"kv\":{\"key\":\"YQ==\",\"mod_revision\":\"11\"}},"
        "{\"type\":\"DELETE\",\"kv\":{\"key\":\"Yg==\",\"mod_revision\":"
        "\"12\"}}]}}";
    XT_ASSERT_OK(nxl__etcd_parse(s, strlen(s), NULL, &r));
    XT_ASSERT_EQ(r.delete_rev, 12);
    XT_ASSERT(!r.has_kv);
    nxl__etcd_reply_fini(&r);
    s = "{\"result\":{\"header\":{\"revision\":\"13\"},\"events\":[{\"kv\":{"
        "\"key\":\"Yg==\",\"mod_revision\":\"13\",\"value\":\"eA==\"}},{\"kv\""
        ":{\"key\":\"YQ==\",\"mod_revision\":\"13\",\"value\":\"eXk=\"}}]}}";
    XT_ASSERT_OK(nxl__etcd_parse(s, strlen(s), "YQ==", &r));
    XT_ASSERT(r.has_kv && r.value.len == 2 &&
              memcmp(r.value.data, "yy", 2) == 0);
    nxl__etcd_reply_fini(&r);
    XT_ASSERT_OK(nxl__etcd_parse(s, strlen(s), "Yw==", &r));
    XT_ASSERT(!r.has_kv);
    nxl__etcd_reply_fini(&r);
    s = "{\"result\":{\"header\":{\"revision\":\"20\"},\"canceled\":true,"
        "\"compact_revision\":\"15\"}}";
    XT_ASSERT_OK(nxl__etcd_parse(s, strlen(s), NULL, &r));
    XT_ASSERT(r.canceled && r.compact_revision == 15);
    nxl__etcd_reply_fini(&r);

    for (i = 0; i < NXL__ARRAY_SIZE(bad); i++) {
        nxl_status_t st = nxl__etcd_parse(bad[i], strlen(bad[i]), "YQ==", &r);

        if (st != NXL_ERR_PROTO) {
            XT_FAILF("bad[%zu] '%s' -> %s, want NXL_ERR_PROTO", i, bad[i],
                     nxl_status_name(st));
        }
        XT_ASSERT(r.value.data == NULL);
        XT_ASSERT(strncmp(nxl_last_error(), "etcd: ", 6) == 0);
    }
    /* Not NUL-terminated: the length rules. */
    s = "{\"count\":\"3\"}garbage";
    XT_ASSERT_OK(nxl__etcd_parse(s, 13, NULL, &r));
    XT_ASSERT_EQ(r.count, 3);
    return xt_leaks();
}

typedef struct xe_lines {
    char got[16][64];
    int n;
} xe_lines_t;

static nxl_status_t
xe_line(void *arg, const char *line, size_t len)
{
    xe_lines_t *l = arg;

    if (l->n < 16 && len < 64) {
        memcpy(l->got[l->n], line, len);
        l->got[l->n][len] = '\0';
    }
    l->n++;
    return NXL_OK;
}

/* The stream splitter: any chunking gives the same lines; blank lines are
 * skipped; an over-long line is refused. */
static int
t_stream(void)
{
    const char *text = "{\"a\":1}\n\n  \r\n{\"b\":2}\r\n{\"c\":3}\n{\"d\"";
    size_t n = strlen(text), chunk, off;
    nxl__etcd_stream_t s;
    xe_lines_t l;
    char big[300];

    for (chunk = 1; chunk <= n; chunk++) {
        memset(&s, 0, sizeof(s));
        memset(&l, 0, sizeof(l));
        for (off = 0; off < n; off += chunk) {
            XT_ASSERT_OK(nxl__etcd_stream_feed(
                &s, text + off, NXL__MIN(chunk, n - off), xe_line, &l));
        }
        XT_ASSERT_EQ(l.n, 3);
        XT_ASSERT_STR(l.got[0], "{\"a\":1}");
        XT_ASSERT_STR(l.got[1], "{\"b\":2}\r");
        XT_ASSERT_STR(l.got[2], "{\"c\":3}");
        nxl__etcd_stream_fini(&s);
    }
    memset(&s, 0, sizeof(s));
    s.max = 100;
    memset(big, 'x', sizeof(big));
    XT_ASSERT_STATUS(nxl__etcd_stream_feed(&s, big, sizeof(big), xe_line, &l),
                     NXL_ERR_PROTO);
    nxl__etcd_stream_fini(&s);
    return xt_leaks();
}

static void
xe_gone_ignore(void *arg, const char *remote)
{
    (void)arg;
    (void)remote;
}

/* Configuration: endpoints, namespace and TTL from the environment (both
 * spellings), and what is refused before anything is sent. */
static int
t_config(void)
{
    static const char *const bad_eps[] = {
        "ftp://127.0.0.1:1",
        "http://",
        "https:///",
        ",,, ;",
        "",
        "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17",
    };
    nxl__md_store_t *s = NULL;
    nxl__etcd_cfg_t cfg;
    nxl_agent_t *a = NULL;
    bool replaced;
    nxl_opts_t o;
    uint64_t t0;
    size_t i;

    unsetenv("NXL_ETCD_ENDPOINTS");
    unsetenv("NIXL_ETCD_ENDPOINTS");
    unsetenv("NXL_ETCD_LEASE_TTL");
    XT_ASSERT_STATUS(nxl__etcd_cfg_env(&cfg), NXL_ERR_NOT_FOUND);
    setenv("NIXL_ETCD_ENDPOINTS", "127.0.0.1:1", 1);
    setenv("NIXL_ETCD_NAMESPACE", "/x/", 1);
    XT_ASSERT_OK(nxl__etcd_cfg_env(&cfg));
    XT_ASSERT_STR(cfg.endpoints, "127.0.0.1:1");
    XT_ASSERT_STR(cfg.ns, "/x/");
    XT_ASSERT_EQ(cfg.ttl_s, 0);
    setenv("NXL_ETCD_LEASE_TTL", "0", 1);
    XT_ASSERT_STATUS(nxl__etcd_cfg_env(&cfg), NXL_ERR_INVALID_PARAM);
    setenv("NXL_ETCD_LEASE_TTL", "7", 1);
    XT_ASSERT_OK(nxl__etcd_cfg_env(&cfg));
    XT_ASSERT_EQ(cfg.ttl_s, 7);

    for (i = 0; i < NXL__ARRAY_SIZE(bad_eps); i++) {
        cfg = (nxl__etcd_cfg_t){.endpoints = bad_eps[i]};
        if (nxl__etcd_open(&cfg, "a", xe_gone_ignore, NULL, &s) !=
            NXL_ERR_INVALID_PARAM) {
            XT_FAILF("endpoints '%s' accepted", bad_eps[i]);
        }
    }
    cfg = (nxl__etcd_cfg_t){
        .endpoints = " 127.0.0.1:1, http://127.0.0.1:2/ ;https://h:3"};
    XT_ASSERT_OK(nxl__etcd_open(&cfg, "a", xe_gone_ignore, NULL, &s));
    /* Names the key layout cannot hold, refused before the network. */
    XT_ASSERT_STATUS(s->ops->fetch(s, "x/y", "metadata", 100, NULL, NULL, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_MSG("contains '/'");
    XT_ASSERT_STATUS(s->ops->fetch(s, "x", "", 100, NULL, NULL, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(s->ops->watch(s, "x/y", 1, 0, &replaced),
                     NXL_ERR_INVALID_PARAM);
    s->ops->close(s);
    cfg = (nxl__etcd_cfg_t){.endpoints = "127.0.0.1:1"};
    XT_ASSERT_OK(nxl__etcd_open(&cfg, "a/b", xe_gone_ignore, NULL, &s));
    XT_ASSERT_STATUS(s->ops->publish(s, "metadata", "x", 1, 100),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(s->ops->invalidate(s, 100), NXL_ERR_INVALID_PARAM);
    s->ops->close(s);

    /* Through the API: the NIXL_ spelling selects etcd; without an
     * endpoint and an address the calls are not supported. */
    XT_ASSERT_OK(nxl_agent_create("cfg", NULL, &a));
    o = xe_opts(NULL, 300);
    t0 = xt_now_ms();
    XT_ASSERT_STATUS(nxl_md_send(a, &o), NXL_ERR_IO);
    XT_ASSERT_MSG("etcd: lease grant: no endpoint answered");
    XT_ASSERT(xt_now_ms() - t0 < 1500);
    XT_ASSERT_STATUS(nxl_md_send_partial(a, NULL, &o), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_MSG("opts->label");
    XT_ASSERT_STATUS(nxl_md_fetch(a, NULL, &o), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_md_fetch(a, "cfg", &o), NXL_ERR_INVALID_PARAM);
    unsetenv("NIXL_ETCD_ENDPOINTS");
    XT_ASSERT_STATUS(nxl_md_send(a, NULL), NXL_ERR_NOT_SUPPORTED);
    XT_ASSERT_MSG("NXL_ETCD_ENDPOINTS is not set");
    nxl_agent_destroy(a);
    return xt_leaks();
}

/* --- cases with etcd ------------------------------------------------------ */

/* Two agents publish and find each other by name, then move data with
 * what they found. Keys are <ns>/<agent>/<label>, single slashes. */
static int
b_discover(xe_cluster_t *c)
{
    xe_agent_t a, b;
    nxl_opts_t o = xe_opts(NULL, 5000);

    XT_ASSERT_OK(xe_agent("prefill-0", 0xA1, &a));
    XT_ASSERT_OK(xe_agent("decode-0", 0xB2, &b));
    XT_ASSERT_OK(nxl_md_send(a.a, &o));
    XT_ASSERT_OK(nxl_md_send(b.a, &o));
    XT_ASSERT_OK(nxl_md_fetch(a.a, "decode-0", &o));
    XT_ASSERT_OK(nxl_md_fetch(b.a, "prefill-0", &o));
    XT_ASSERT_OK(nxl_md_check(a.a, "decode-0", NULL));
    XT_ASSERT_OK(nxl_md_check(b.a, "prefill-0", NULL));
    if (xe_read(&b, &a, 0xA1) != 0 || xe_read(&a, &b, 0xB2) != 0) {
        return 1;
    }
    XT_ASSERT_EQ(xe_key_exists(c, 0, "/nixl/agents/prefill-0/metadata"), 1);
    XT_ASSERT_EQ(xe_key_exists(c, 0, "/nixl/agents//prefill-0/metadata"), 0);
    /* A fetch again is additive and keeps working. */
    XT_ASSERT_OK(nxl_md_fetch(b.a, "prefill-0", &o));

    /* Another namespace (trailing slash dropped), NIXL_ spelling. */
    setenv("NIXL_ETCD_NAMESPACE", "/team-a/", 1);
    {
        xe_agent_t x;

        XT_ASSERT_OK(xe_agent("worker", 1, &x));
        XT_ASSERT_OK(nxl_md_send(x.a, &o));
        XT_ASSERT_EQ(xe_key_exists(c, 0, "/team-a/worker/metadata"), 1);
        xe_agent_free(&x);
    }
    unsetenv("NIXL_ETCD_NAMESPACE");
    xe_agent_free(&a);
    xe_agent_free(&b);
    return 0;
}

static int
t_discover(void)
{
    return xe_run(1, b_discover);
}

/* Partial metadata by label: conn info and one region under "l1", the
 * other region under "l2"; a partial send needs a label. */
static int
b_partial(xe_cluster_t *c)
{
    xe_agent_t a, b;
    nxl_dlist_t d0, d1;
    nxl_opts_t o;

    (void)c;
    XT_ASSERT_OK(xe_agent("A", 0x11, &a));
    XT_ASSERT_OK(xe_agent("B", 0x22, &b));
    d0 = (nxl_dlist_t){NXL_DRAM, &a.d[0], 1};
    d1 = (nxl_dlist_t){NXL_DRAM, &a.d[1], 1};
    o = xe_opts(NULL, 5000);
    XT_ASSERT_STATUS(nxl_md_send_partial(a.a, &d0, &o), NXL_ERR_INVALID_PARAM);
    o = xe_opts("l1", 5000);
    o.include_conn_info = 1;
    XT_ASSERT_OK(nxl_md_send_partial(a.a, &d0, &o));
    o = xe_opts("l2", 5000);
    XT_ASSERT_OK(nxl_md_send_partial(a.a, &d1, &o));

    o = xe_opts("l1", 5000);
    XT_ASSERT_OK(nxl_md_fetch(b.a, "A", &o));
    XT_ASSERT_OK(nxl_md_check(b.a, "A", &d0));
    XT_ASSERT_STATUS(nxl_md_check(b.a, "A", &d1), NXL_ERR_NOT_FOUND);
    o = xe_opts("l2", 5000);
    XT_ASSERT_OK(nxl_md_fetch(b.a, "A", &o));
    XT_ASSERT_OK(nxl_md_check(b.a, "A", &d1));
    /* The full metadata was never sent: its label is not there. */
    o = xe_opts(NULL, 200);
    XT_ASSERT_STATUS(nxl_md_fetch(b.a, "A", &o), NXL_ERR_NOT_FOUND);
    XT_ASSERT_MSG("at /nixl/agents/A/metadata");
    xe_agent_free(&a);
    xe_agent_free(&b);
    return 0;
}

static int
t_partial(void)
{
    return xe_run(1, b_partial);
}

static void *
xe_late_publish(void *arg)
{
    xe_agent_t *a = arg;
    nxl_opts_t o = xe_opts(NULL, 5000);

    usleep(400000);
    if (nxl_md_send(a->a, &o) != NXL_OK) {
        fprintf(stderr, "late publish: %s\n", nxl_last_error());
    }
    return NULL;
}

/* A fetch of a key not there yet waits on a watch until it comes; one
 * that never comes ends NOT_FOUND at its timeout. */
static int
b_fetch_waits(xe_cluster_t *c)
{
    xe_agent_t a, b;
    nxl_opts_t o = xe_opts(NULL, 5000);
    pthread_t tid;
    uint64_t t0, dt;

    (void)c;
    XT_ASSERT_OK(xe_agent("late", 0x33, &a));
    XT_ASSERT_OK(xe_agent("early", 0x44, &b));
    XT_ASSERT_EQ(pthread_create(&tid, NULL, xe_late_publish, &a), 0);
    t0 = xt_now_ms();
    XT_ASSERT_OK(nxl_md_fetch(b.a, "late", &o));
    dt = xt_now_ms() - t0;
    pthread_join(tid, NULL);
    printf("  fetch waited %llu ms for a publish made after 400 ms\n",
           (unsigned long long)dt);
    XT_ASSERT(dt >= 350 && dt < 3000);
    if (xe_read(&b, &a, 0x33) != 0) {
        return 1;
    }
    o = xe_opts(NULL, 300);
    t0 = xt_now_ms();
    XT_ASSERT_STATUS(nxl_md_fetch(b.a, "nobody", &o), NXL_ERR_NOT_FOUND);
    dt = xt_now_ms() - t0;
    XT_ASSERT_MSG("etcd: no metadata of 'nobody'");
    XT_ASSERT(dt >= 290 && dt < 1300);
    xe_agent_free(&a);
    xe_agent_free(&b);
    return 0;
}

static int
t_fetch_waits(void)
{
    return xe_run(1, b_fetch_waits);
}

/* nxl_md_invalidate_local deletes the agent's keys; its peer's watch
 * invalidates it there. Publishing again and fetching again works. */
static int
b_invalidate(xe_cluster_t *c)
{
    xe_agent_t a, b;
    nxl_opts_t o = xe_opts(NULL, 5000);
    uint64_t t0;
    long ms;

    XT_ASSERT_OK(xe_agent("A", 0x55, &a));
    XT_ASSERT_OK(xe_agent("B", 0x66, &b));
    XT_ASSERT_OK(nxl_md_send(a.a, &o));
    o.label = "extra";
    XT_ASSERT_OK(nxl_md_send(a.a, &o));
    o.label = NULL;
    XT_ASSERT_OK(nxl_md_fetch(b.a, "A", &o));
    usleep(100000); /* the watch stream is open */
    t0 = xt_now_ms();
    XT_ASSERT_OK(nxl_md_invalidate_local(a.a, &o));
    ms = xe_wait_gone(b.a, "A", t0, 2000);
    printf("  invalidation reached the peer in %ld ms\n", ms);
    XT_ASSERT(ms >= 0);
    XT_ASSERT_EQ(xe_key_exists(c, 0, "/nixl/agents/A/metadata"), 0);
    XT_ASSERT_EQ(xe_key_exists(c, 0, "/nixl/agents/A/extra"), 0);

    /* Again: the peer comes back, is watched again and goes again. */
    XT_ASSERT_OK(nxl_md_send(a.a, &o));
    XT_ASSERT_OK(nxl_md_fetch(b.a, "A", &o));
    if (xe_read(&b, &a, 0x55) != 0) {
        return 1;
    }
    usleep(100000);
    t0 = xt_now_ms();
    XT_ASSERT_OK(nxl_md_invalidate_local(a.a, &o));
    XT_ASSERT(xe_wait_gone(b.a, "A", t0, 2000) >= 0);
    xe_agent_free(&a);
    xe_agent_free(&b);
    return 0;
}

static int
t_invalidate(void)
{
    return xe_run(1, b_invalidate);
}

/* A SIGKILLed agent revokes nothing: its lease expires and its peers see
 * it gone within the TTL + 1 s. */
static int
b_sigkill(xe_cluster_t *c)
{
    int ready[2];
    xe_agent_t b;
    nxl_opts_t o = xe_opts(NULL, 5000);
    uint64_t t0;
    pid_t pid;
    char ch;
    long ms;

    XT_ASSERT_EQ(pipe(ready), 0);
    pid = fork();
    if (pid == 0) {
        xe_agent_t a;

        close(ready[0]);
        if (xe_agent("doomed", 0x77, &a) != NXL_OK ||
            nxl_md_send(a.a, &o) != NXL_OK) {
            fprintf(stderr, "child: %s\n", nxl_last_error());
            _exit(1);
        }
        ch = 'r';
        if (write(ready[1], &ch, 1) != 1) {
            _exit(1);
        }
        for (;;) {
            pause();
        }
    }
    close(ready[1]);
    XT_ASSERT_EQ(read(ready[0], &ch, 1), 1);
    close(ready[0]);
    XT_ASSERT_OK(xe_agent("survivor", 0x88, &b));
    XT_ASSERT_OK(nxl_md_fetch(b.a, "doomed", &o));
    usleep(200000);
    t0 = xt_now_ms();
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    ms = xe_wait_gone(b.a, "doomed", t0, XE_TTL * 1000 + 3000);
    printf("  SIGKILLed agent seen gone after %ld ms (lease TTL %d s)\n", ms,
           XE_TTL);
    XT_ASSERT(ms >= 0);
    XT_ASSERT(ms <= XE_TTL * 1000 + 1000);
    XT_ASSERT_EQ(xe_key_exists(c, 0, "/nixl/agents/doomed/metadata"), 0);
    xe_agent_free(&b);
    return 0;
}

static int
t_sigkill(void)
{
    return xe_run(1, b_sigkill);
}

typedef struct xe_child {
    pid_t pid;
    int go, ready; /* pipes: parent -> child, child -> parent */
} xe_child_t;

/* xe_child forks a process that, once told to go, makes agent name with a
 * buffer of seed bytes, publishes it and reports the buffer's address;
 * it then waits to be killed. Forked before the parent has threads. */
static int
xe_child(xe_child_t *ch, const char *name, uint8_t seed)
{
    int go[2], ready[2];

    if (pipe(go) != 0 || pipe(ready) != 0) {
        return -1;
    }
    ch->pid = fork();
    if (ch->pid == 0) {
        nxl_opts_t o = xe_opts(NULL, 5000);
        xe_agent_t a;
        uint64_t addr;
        char c;

        close(go[1]);
        close(ready[0]);
        if (read(go[0], &c, 1) != 1) {
            _exit(1);
        }
        if (xe_agent(name, seed, &a) != NXL_OK ||
            nxl_md_send(a.a, &o) != NXL_OK) {
            fprintf(stderr, "child %s: %s\n", name, nxl_last_error());
            _exit(1);
        }
        addr = a.d[0].addr;
        if (write(ready[1], &addr, sizeof(addr)) != sizeof(addr)) {
            _exit(1);
        }
        for (;;) {
            pause();
        }
    }
    close(go[0]);
    close(ready[1]);
    ch->go = go[1];
    ch->ready = ready[0];
    return ch->pid > 0 ? 0 : -1;
}

/* xe_child_go starts the child's agent and returns its buffer address (0
 * on failure). */
static uint64_t
xe_child_go(xe_child_t *ch)
{
    uint64_t addr = 0;

    if (write(ch->go, "g", 1) != 1 ||
        read(ch->ready, &addr, sizeof(addr)) != sizeof(addr)) {
        return 0;
    }
    return addr;
}

static void
xe_child_kill(xe_child_t *ch)
{
    if (ch->pid > 0) {
        kill(ch->pid, SIGKILL);
        waitpid(ch->pid, NULL, 0);
        close(ch->go);
        close(ch->ready);
        ch->pid = 0;
    }
}

/* xe_read_remote has `to` READ XE_BUF / 2 bytes at addr of peer and
 * checks them. */
static int
xe_read_remote(xe_agent_t *to, const char *peer, uint64_t addr, uint8_t want)
{
    nxl_desc_t rd = {addr, XE_BUF / 2, 0};
    nxl_dlist_t l = {NXL_DRAM, &to->d[1], 1}, r = {NXL_DRAM, &rd, 1};
    nxl_xfer_t *x = NULL;
    nxl_status_t st;
    size_t i;

    XT_ASSERT_OK(nxl_xfer_create(to->a, NXL_READ, &l, &r, peer, NULL, &x));
    st = nxl_xfer_post(x, NULL);
    if (st == NXL_IN_PROG) {
        st = nxl_xfer_wait(x, 5000);
    }
    nxl_xfer_release(x);
    XT_ASSERT_OK(st);
    for (i = XE_BUF / 2; i < XE_BUF; i++) {
        if (to->buf[i] != want) {
            XT_FAILF("byte %zu is %u, want %u", i, to->buf[i], want);
        }
    }
    return 0;
}

/* An agent killed and restarted under the same name within the TTL
 * replaces its keys (a new lease, no deletion): a peer that fetches it
 * again drops the old process's metadata and loads the new one instead
 * of refusing the conflicting connection info. */
static int
b_quick_restart(xe_cluster_t *c)
{
    nxl_opts_t o = xe_opts(NULL, 5000);
    xe_child_t c1, c2;
    uint64_t addr;
    xe_agent_t b;

    (void)c;
    setenv("NXL_ETCD_LEASE_TTL", "30", 1);
    XT_ASSERT_EQ(xe_child(&c1, "phoenix", 0x31), 0);
    XT_ASSERT_EQ(xe_child(&c2, "phoenix", 0x32), 0);
    addr = xe_child_go(&c1);
    XT_ASSERT(addr != 0);
    XT_ASSERT_OK(xe_agent("B", 0x30, &b));
    XT_ASSERT_OK(nxl_md_fetch(b.a, "phoenix", &o));
    if (xe_read_remote(&b, "phoenix", addr, 0x31) != 0) {
        return 1;
    }
    xe_child_kill(&c1);
    addr = xe_child_go(&c2);
    XT_ASSERT(addr != 0);
    XT_ASSERT_OK(nxl_md_fetch(b.a, "phoenix", &o));
    if (xe_read_remote(&b, "phoenix", addr, 0x32) != 0) {
        return 1;
    }
    xe_child_kill(&c2);
    xe_agent_free(&b);
    return 0;
}

static int
t_quick_restart(void)
{
    return xe_run(1, b_quick_restart);
}

/* A clean destroy revokes the lease: the peer sees it gone at once, not
 * after the TTL (30 s here). */
static int
b_destroy(xe_cluster_t *c)
{
    xe_agent_t a, b;
    nxl_opts_t o = xe_opts(NULL, 5000);
    uint64_t t0;
    long ms;

    setenv("NXL_ETCD_LEASE_TTL", "30", 1);
    XT_ASSERT_OK(xe_agent("A", 1, &a));
    XT_ASSERT_OK(xe_agent("B", 2, &b));
    XT_ASSERT_OK(nxl_md_send(a.a, &o));
    XT_ASSERT_OK(nxl_md_fetch(b.a, "A", &o));
    usleep(100000);
    t0 = xt_now_ms();
    xe_agent_free(&a);
    XT_ASSERT(xt_now_ms() - t0 < 1000);
    ms = xe_wait_gone(b.a, "A", t0, 2000);
    printf("  destroyed agent seen gone after %ld ms (lease TTL 30 s)\n", ms);
    XT_ASSERT(ms >= 0);
    XT_ASSERT_EQ(xe_key_exists(c, 0, "/nixl/agents/A/metadata"), 0);
    xe_agent_free(&b);
    return 0;
}

static int
t_destroy(void)
{
    return xe_run(1, b_destroy);
}

/* xe_leader returns the index of the member that leads, or -1. */
static int
xe_leader(const xe_cluster_t *c)
{
    char url[128], out[65536], want[64];
    const char *p;
    int i;

    for (i = 0; i < c->n; i++) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/v3/maintenance/status",
                 c->m[i].client);
        if (c->m[i].pid <= 0 || xe_http(NULL, url, "{}", out) != 200) {
            continue;
        }
        p = strstr(out, "\"leader\":\"");
        if (p == NULL) {
            continue;
        }
        snprintf(want, sizeof(want), "\"member_id\":\"%.*s\"",
                 (int)strcspn(p + 10, "\""), p + 10);
        if (strstr(out, want) != NULL) {
            return i;
        }
    }
    return -1;
}

/* Three members; the agents use the leader first. The leader is killed
 * mid-run: the lease stays alive through another member, publishing and
 * fetching keep working, and the watch that was on the dead member
 * resumes elsewhere (an invalidation still reaches the peer). */
static int
b_cluster(xe_cluster_t *c)
{
    char eps[256];
    size_t len = 0;
    xe_agent_t a, b, x;
    nxl_opts_t o = xe_opts(NULL, 8000);
    uint64_t t0;
    int lead, i;
    long ms;

    lead = xe_leader(c);
    XT_ASSERT(lead >= 0);
    eps[0] = '\0';
    nxl__text_addf(eps, sizeof(eps), &len, "127.0.0.1:%u", c->m[lead].client);
    for (i = 0; i < c->n; i++) {
        if (i != lead) {
            nxl__text_addf(eps, sizeof(eps), &len, ",127.0.0.1:%u",
                           c->m[i].client);
        }
    }
    setenv("NXL_ETCD_ENDPOINTS", eps, 1);
    XT_ASSERT_OK(xe_agent("A", 0x5A, &a));
    XT_ASSERT_OK(xe_agent("B", 0x5B, &b));
    XT_ASSERT_OK(nxl_md_send(a.a, &o));
    XT_ASSERT_OK(nxl_md_fetch(b.a, "A", &o));
    usleep(100000);
    t0 = xt_now_ms();
    xe_kill(c, lead);
    /* Writes and reads go on through the others. */
    o.label = "after";
    XT_ASSERT_OK(nxl_md_send(a.a, &o));
    printf("  publish right after the leader died took %llu ms\n",
           (unsigned long long)(xt_now_ms() - t0));
    XT_ASSERT_OK(nxl_md_fetch(b.a, "A", &o));
    /* Past the TTL: the keep-alive moved to a live member. */
    usleep((XE_TTL * 1000 + 800) * 1000);
    XT_ASSERT_OK(xe_agent("C", 0x5C, &x));
    o.label = NULL;
    XT_ASSERT_OK(nxl_md_fetch(x.a, "A", &o));
    XT_ASSERT_OK(nxl_md_check(b.a, "A", NULL));
    if (xe_read(&x, &a, 0x5A) != 0) {
        return 1;
    }
    t0 = xt_now_ms();
    XT_ASSERT_OK(nxl_md_invalidate_local(a.a, &o));
    ms = xe_wait_gone(b.a, "A", t0, 3000);
    printf("  invalidation reached the peer in %ld ms after fail-over\n", ms);
    XT_ASSERT(ms >= 0);
    XT_ASSERT(xe_wait_gone(x.a, "A", t0, 3000) >= 0);
    xe_agent_free(&x);
    xe_agent_free(&a);
    xe_agent_free(&b);
    return 0;
}

static int
t_cluster(void)
{
    return xe_run(3, b_cluster);
}

/* xe_not_etcd answers every connection on listening socket arg with a
 * 404 page, as an HTTP server that is not etcd would. */
static void *
xe_not_etcd(void *arg)
{
    static const char page[] = "HTTP/1.1 404 Not Found\r\nContent-Type: "
                               "text/plain\r\nContent-Length: 19\r\n\r\n"
                               "404 page not found\n";
    char buf[4096];
    int lfd = *(int *)arg, fd;

    while ((fd = accept(lfd, NULL, NULL)) >= 0) {
        if (recv(fd, buf, sizeof(buf), 0) > 0 &&
            send(fd, page, sizeof(page) - 1, MSG_NOSIGNAL) < 0) {
            /* the client went away */
        }
        close(fd);
    }
    return NULL;
}

/* etcd down: a clear error within the timeout, never a hang. Nothing
 * listening (refused), a listener that never answers (timeout), and a
 * server killed under a live agent. */
static int
b_down(xe_cluster_t *c)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    char eps[64];
    xe_agent_t a;
    nxl_opts_t o = xe_opts(NULL, 700);
    uint64_t t0, dt;
    int lfd;

    /* Refused. */
    snprintf(eps, sizeof(eps), "127.0.0.1:%u", xe_free_port());
    setenv("NXL_ETCD_ENDPOINTS", eps, 1);
    XT_ASSERT_OK(xe_agent("A", 1, &a));
    t0 = xt_now_ms();
    XT_ASSERT_STATUS(nxl_md_send(a.a, &o), NXL_ERR_IO);
    dt = xt_now_ms() - t0;
    printf("  refused: %llu ms: %s\n", (unsigned long long)dt,
           nxl_last_error());
    XT_ASSERT_MSG("no endpoint answered within");
    XT_ASSERT_MSG(eps);
    XT_ASSERT(dt >= 600 && dt < 1500);
    t0 = xt_now_ms();
    XT_ASSERT_STATUS(nxl_md_fetch(a.a, "B", &o), NXL_ERR_IO);
    XT_ASSERT(xt_now_ms() - t0 < 1500);
    XT_ASSERT_STATUS(nxl_md_invalidate_local(a.a, &o), NXL_ERR_IO);
    xe_agent_free(&a);

    /* Accepts connections, never answers. */
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    XT_ASSERT(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    XT_ASSERT(listen(lfd, 16) == 0);
    XT_ASSERT(getsockname(lfd, (struct sockaddr *)&sa, &sl) == 0);
    snprintf(eps, sizeof(eps), "127.0.0.1:%u", ntohs(sa.sin_port));
    setenv("NXL_ETCD_ENDPOINTS", eps, 1);
    XT_ASSERT_OK(xe_agent("A", 1, &a));
    t0 = xt_now_ms();
    XT_ASSERT_STATUS(nxl_md_fetch(a.a, "B", &o), NXL_ERR_TIMEOUT);
    dt = xt_now_ms() - t0;
    printf("  silent: %llu ms: %s\n", (unsigned long long)dt, nxl_last_error());
    XT_ASSERT(dt >= 600 && dt < 1500);
    xe_agent_free(&a);

    /* Something else answers: refused at once, saying what came back. */
    {
        pthread_t tid;

        XT_ASSERT_EQ(pthread_create(&tid, NULL, xe_not_etcd, &lfd), 0);
        XT_ASSERT_OK(xe_agent("A", 1, &a));
        t0 = xt_now_ms();
        XT_ASSERT_STATUS(nxl_md_send(a.a, &o), NXL_ERR_PROTO);
        printf("  not etcd: %llu ms: %s\n",
               (unsigned long long)(xt_now_ms() - t0), nxl_last_error());
        XT_ASSERT_MSG("(HTTP 404): an answer that is not JSON");
        XT_ASSERT(xt_now_ms() - t0 < 500);
        xe_agent_free(&a);
        shutdown(lfd, SHUT_RDWR);
        pthread_join(tid, NULL);
    }
    close(lfd);

    /* Killed under a live agent: calls fail in time, destroy does not
     * hang. */
    setenv("NXL_ETCD_ENDPOINTS", c->endpoints, 1);
    XT_ASSERT_OK(xe_agent("A", 1, &a));
    o.timeout_ms = 5000;
    XT_ASSERT_OK(nxl_md_send(a.a, &o));
    xe_kill(c, 0);
    o.timeout_ms = 700;
    t0 = xt_now_ms();
    XT_ASSERT_STATUS(nxl_md_send(a.a, &o), NXL_ERR_IO);
    XT_ASSERT(xt_now_ms() - t0 < 1500);
    t0 = xt_now_ms();
    xe_agent_free(&a);
    dt = xt_now_ms() - t0;
    printf("  destroy with etcd down took %llu ms\n", (unsigned long long)dt);
    XT_ASSERT(dt < 2500);
    return 0;
}

static int
t_down(void)
{
    return xe_run(1, b_down);
}

/* etcd restarted: with its data the lease survives; empty (data lost),
 * the agent notices its lease is gone and writes its keys again, so a
 * peer finds it without the application doing anything. */
static int
b_restart(xe_cluster_t *c)
{
    xe_agent_t a, b, w;
    nxl_opts_t o = xe_opts(NULL, 5000);
    uint64_t t0;

    XT_ASSERT_OK(xe_agent("A", 0x99, &a));
    XT_ASSERT_OK(xe_agent("W", 0x97, &w));
    XT_ASSERT_OK(nxl_md_send(a.a, &o));
    o.label = "part";
    XT_ASSERT_OK(nxl_md_send(a.a, &o));
    o.label = NULL;
    XT_ASSERT_OK(nxl_md_fetch(w.a, "A", &o)); /* W watches A */

    /* With its data: the lease and the keys survive, W's watch resumes. */
    xe_kill(c, 0);
    usleep(300000);
    XT_ASSERT_EQ(xe_restart(c, 0, false), 0);
    XT_ASSERT_OK(xe_agent("B", 0x98, &b));
    XT_ASSERT_OK(nxl_md_fetch(b.a, "A", &o));
    xe_agent_free(&b);
    XT_ASSERT_OK(nxl_md_check(w.a, "A", NULL));
    usleep(1000000); /* W's stream is back (it retries within 0.5 s) */
    t0 = xt_now_ms();
    XT_ASSERT_OK(nxl_md_invalidate_local(a.a, &o));
    XT_ASSERT(xe_wait_gone(w.a, "A", t0, 2000) >= 0);
    xe_agent_free(&w);
    XT_ASSERT_OK(nxl_md_send(a.a, &o));
    o.label = "part";
    XT_ASSERT_OK(nxl_md_send(a.a, &o));
    o.label = NULL;

    /* Empty: A notices its lease is gone and writes its keys again. */
    xe_kill(c, 0);
    usleep(300000);
    t0 = xt_now_ms();
    XT_ASSERT_EQ(xe_restart(c, 0, true), 0); /* (A may be back already) */
    XT_ASSERT_OK(xe_agent("B", 0x98, &b));
    o.timeout_ms = 8000;
    XT_ASSERT_OK(nxl_md_fetch(b.a, "A", &o));
    printf("  after an empty restart the agent was back within %llu ms of "
           "the new etcd's start\n",
           (unsigned long long)(xt_now_ms() - t0));
    o.label = "part"; /* written right after "metadata" */
    XT_ASSERT_OK(nxl_md_fetch(b.a, "A", &o));
    o.label = NULL;
    if (xe_read(&b, &a, 0x99) != 0) {
        return 1;
    }
    /* And it is watched as before. */
    usleep(100000);
    t0 = xt_now_ms();
    XT_ASSERT_OK(nxl_md_invalidate_local(a.a, &o));
    XT_ASSERT(xe_wait_gone(b.a, "A", t0, 2000) >= 0);
    xe_agent_free(&a);
    xe_agent_free(&b);
    return 0;
}

static int
t_restart(void)
{
    return xe_run(1, b_restart);
}

static int
xe_cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

    return a < b ? -1 : a > b;
}

/* Rounds of b_perf (NXL_ETCD_PERF_N overrides, up to 1000). */
#define XE_PERF_N 30
#define XE_PERF_MAX 1000

/* Publish + first fetch by name against the same work done with raw HTTP
 * (put + range over one kept-alive connection, what etcdctl put + get do
 * over gRPC), interleaved on the same etcd. Fresh agents each round: the
 * publish includes the lease grant, the fetch the watch set-up. */
static int
b_perf(xe_cluster_t *c)
{
    static uint64_t raw[XE_PERF_MAX], rawl[XE_PERF_MAX], cold[XE_PERF_MAX],
        warm[XE_PERF_MAX], wpub[XE_PERF_MAX], rput[XE_PERF_MAX];
    const char *nv = getenv("NXL_ETCD_PERF_N");
    int n = nv ? atoi(nv) : XE_PERF_N;
    uint64_t t0;
    char url[128], body[8192], out[65536], key[128], kb[256], vb[4096];
    nxl_opts_t o = xe_opts(NULL, 5000);
    nxl_blob_t md;
    CURL *h = curl_easy_init();
    xe_agent_t a, b, b2;
    int i;

    n = NXL__MAX(NXL__MIN(n, XE_PERF_MAX), 3);
    for (i = 0; i < n; i++) {
        char an[32], bn[32];

        snprintf(an, sizeof(an), "pub-%d", i);
        snprintf(bn, sizeof(bn), "sub-%d", i);
        XT_ASSERT_OK(xe_agent(an, 1, &a));
        XT_ASSERT_OK(xe_agent(bn, 2, &b));
        snprintf(bn, sizeof(bn), "sub2-%d", i);
        XT_ASSERT_OK(xe_agent(bn, 3, &b2));
        XT_ASSERT_OK(nxl_md_local(a.a, &md));
        XT_ASSERT(md.len < 2000);

        /* raw: put + range of a value of the same size */
        snprintf(key, sizeof(key), "/raw/%d/metadata", i);
        xe_b64(key, kb);
        memset(body, 'm', md.len);
        body[md.len] = '\0';
        xe_b64(body, vb);
        t0 = nxl__now_ns();
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/v3/kv/put",
                 c->m[0].client);
        snprintf(body, sizeof(body), "{\"key\":\"%s\",\"value\":\"%s\"}", kb,
                 vb);
        XT_ASSERT_EQ(xe_http(h, url, body, out), 200);
        rput[i] = nxl__now_ns() - t0;
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/v3/kv/range",
                 c->m[0].client);
        snprintf(body, sizeof(body), "{\"key\":\"%s\"}", kb);
        XT_ASSERT_EQ(xe_http(h, url, body, out), 200);
        raw[i] = nxl__now_ns() - t0;
        XT_ASSERT(strstr(out, vb) != NULL);

        /* raw with a lease: grant + put bound to it + range */
        t0 = nxl__now_ns();
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/v3/lease/grant",
                 c->m[0].client);
        XT_ASSERT_EQ(xe_http(h, url, "{\"TTL\":\"2\"}", out), 200);
        {
            const char *id = strstr(out, "\"ID\":\"");
            char lease[32];

            XT_ASSERT(id != NULL);
            snprintf(lease, sizeof(lease), "%.*s", (int)strcspn(id + 6, "\""),
                     id + 6);
            snprintf(url, sizeof(url), "http://127.0.0.1:%u/v3/kv/put",
                     c->m[0].client);
            snprintf(body, sizeof(body),
                     "{\"key\":\"%s\",\"value\":\"%s\","
                     "\"lease\":\"%s\"}",
                     kb, vb, lease);
        }
        XT_ASSERT_EQ(xe_http(h, url, body, out), 200);
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/v3/kv/range",
                 c->m[0].client);
        snprintf(body, sizeof(body), "{\"key\":\"%s\"}", kb);
        XT_ASSERT_EQ(xe_http(h, url, body, out), 200);
        rawl[i] = nxl__now_ns() - t0;
        nxl_blob_free(&md);

        /* cold: first publish (lease grant + put) + first fetch */
        t0 = nxl__now_ns();
        XT_ASSERT_OK(nxl_md_send(a.a, &o));
        XT_ASSERT_OK(nxl_md_fetch(b.a, an, &o));
        cold[i] = nxl__now_ns() - t0;

        /* lease held: publish (a put) + another agent's first fetch */
        o.label = "again";
        t0 = nxl__now_ns();
        XT_ASSERT_OK(nxl_md_send(a.a, &o));
        wpub[i] = nxl__now_ns() - t0;
        XT_ASSERT_OK(nxl_md_fetch(b2.a, an, &o));
        warm[i] = nxl__now_ns() - t0;
        o.label = NULL;
        xe_agent_free(&a);
        xe_agent_free(&b);
        xe_agent_free(&b2);
    }
    curl_easy_cleanup(h);
    qsort(raw, n, sizeof(raw[0]), xe_cmp_u64);
    qsort(rawl, n, sizeof(rawl[0]), xe_cmp_u64);
    qsort(cold, n, sizeof(cold[0]), xe_cmp_u64);
    qsort(warm, n, sizeof(warm[0]), xe_cmp_u64);
    qsort(wpub, n, sizeof(wpub[0]), xe_cmp_u64);
    qsort(rput, n, sizeof(rput[0]), xe_cmp_u64);
    printf("  (of which: raw put median %.0f us; NXL publish, lease held, "
           "median %.0f us)\n",
           rput[n / 2] / 1e3, wpub[n / 2] / 1e3);
    printf("  %d rounds, etcd data in %s\n", n, c->dir);
    printf("  raw HTTP put + range (kept-alive)       median %7.0f us  p90 "
           "%7.0f us\n",
           raw[n / 2] / 1e3, raw[n * 9 / 10] / 1e3);
    printf("  raw HTTP grant + put(lease) + range     median %7.0f us  p90 "
           "%7.0f us\n",
           rawl[n / 2] / 1e3, rawl[n * 9 / 10] / 1e3);
    printf("  NXL publish + first fetch, lease held   median %7.0f us  p90 "
           "%7.0f us  %.2fx put + range\n",
           warm[n / 2] / 1e3, warm[n * 9 / 10] / 1e3,
           (double)warm[n / 2] / (double)raw[n / 2]);
    printf("  NXL first publish + first fetch (cold)  median %7.0f us  p90 "
           "%7.0f us  %.2fx grant + put + range, %.2fx put + range\n",
           cold[n / 2] / 1e3, cold[n * 9 / 10] / 1e3,
           (double)cold[n / 2] / (double)rawl[n / 2],
           (double)cold[n / 2] / (double)raw[n / 2]);
    if (getenv("NXL_ETCD_PERF_STRICT") != NULL) {
        XT_ASSERT(warm[n / 2] <= 2 * raw[n / 2]);
    }
    return 0;
}

static int
t_perf(void)
{
    return xe_run(1, b_perf);
}

const xt_suite xt_suite_etcd = {
    .name = "etcd",
    .timeout_s = 40,
    .cases =
        (const xt_case[]){
            {"parse", t_parse},
            {"stream", t_stream},
            {"config", t_config},
            {"discover", t_discover},
            {"partial_labels", t_partial},
            {"fetch_waits", t_fetch_waits},
            {"invalidate_reaches_peer", t_invalidate},
            {"sigkill_lease_expiry", t_sigkill},
            {"destroy_revokes", t_destroy},
            {"agent_restart_within_ttl", t_quick_restart},
            {"cluster_leader_killed", t_cluster},
            {"etcd_down", t_down},
            {"etcd_restart_reregisters", t_restart},
            {"perf_publish_fetch", t_perf},
            {NULL, NULL},
        },
};
