/* xt_conf.c - the conformance suite's common fixtures: data patterns,
 * where the case's processes live (cf_env), agents, registrations,
 * transfers and notifications (see xt_conf.h). */
#include "xt_conf.h"
#include "xt_xfer.h"

#include <strings.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

cf_net cf_env = {"", "127.0.0.1", "127.0.0.1", "", {{0}}, {0}};

const char *
cf_caps(uint32_t caps, char *buf, size_t cap)
{
    static const char *const names[] = {"LOCAL", "REMOTE", "NOTIF",
                                        "THREAD_SAFE"};
    size_t i, n = 0;

    buf[0] = '\0';
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (caps & (1u << i)) {
            n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%s%s",
                                  n > 0 ? "|" : "", names[i]);
        }
    }
    return n > 0 ? buf : "none";
}

void
cf_fill(uint8_t *p, uint64_t len, uint32_t seed, uint64_t pidx)
{
    uint64_t k;

    for (k = 0; k < len; k++) {
        p[k] = cf_pat(seed, pidx + k);
    }
}

uint64_t
cf_find_bad(const uint8_t *p, uint64_t len, uint32_t seed, uint64_t pidx)
{
    uint64_t k;

    for (k = 0; k < len; k++) {
        if (p[k] != cf_pat(seed, pidx + k)) {
            break;
        }
    }
    return k;
}

int
cf_check_local(const uint8_t *p, uint64_t len, uint32_t seed, uint64_t pidx,
               const char *what)
{
    uint64_t k = cf_find_bad(p, len, seed, pidx);

    if (k != len) {
        XT_FAILF("%s: byte %" PRIu64 " of %" PRIu64 " is 0x%02x, want 0x%02x",
                 what, k, len, p[k], cf_pat(seed, pidx + k));
    }
    return 0;
}

int
cf_check_byte(const uint8_t *p, uint64_t len, uint8_t v, const char *what)
{
    uint64_t k;

    for (k = 0; k < len; k++) {
        if (p[k] != v) {
            XT_FAILF("%s: guard byte %" PRIu64 " is 0x%02x, want 0x%02x", what,
                     k, p[k], v);
        }
    }
    return 0;
}

uint8_t *
cf_map(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    return p == MAP_FAILED ? NULL : p;
}

void
cf_unmap(void *p, size_t len)
{
    if (p != NULL) {
        munmap(p, len);
    }
}

uint64_t
cf_cpu_us(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_utime.tv_sec * 1000000u +
           (uint64_t)ru.ru_utime.tv_usec +
           (uint64_t)ru.ru_stime.tv_sec * 1000000u +
           (uint64_t)ru.ru_stime.tv_usec;
}

const char *
cf_be(void)
{
    const char *p = xt_param();
    size_t n;

    if (cf_env.backend[0] == '\0' && p != NULL) {
        n = strcspn(p, "@");
        if (n >= sizeof(cf_env.backend)) {
            n = sizeof(cf_env.backend) - 1;
        }
        memcpy(cf_env.backend, p, n);
        cf_env.backend[n] = '\0';
    }
    return cf_env.backend;
}

bool
cf_netns(void)
{
    const char *p = xt_param();

    return p != NULL && strstr(p, CF_NETNS_SUFFIX) != NULL;
}

void
cf_net_params(void)
{
    size_t n = 0;

    if (!cf_netns()) {
        return;
    }
    if (strcasecmp(cf_be(), "TCP") == 0) {
        cf_env.params[n++] = (nxl_param_t){"bind_addr", cf_env.self};
    } else if (strcasecmp(cf_be(), "UCX") == 0) {
        cf_env.params[n++] = (nxl_param_t){"same_host", "off"};
        cf_env.params[n++] =
            (nxl_param_t){"engine_config", "TLS=tcp;NET_DEVICES=veth0"};
    }
    cf_env.plist.items = cf_env.params;
    cf_env.plist.count = n;
}

/* cf_be_params returns the backend params of the case (NULL: defaults). */
static const nxl_params_t *
cf_be_params(void)
{
    return cf_env.plist.count > 0 ? &cf_env.plist : NULL;
}

static void
cf_config(nxl_agent_config_t *c, unsigned flags)
{
    nxl_agent_config_init(c);
    c->listen_thread = !(flags & CF_NO_LISTEN);
    c->listen_port = 0;
    c->listen_addr = cf_env.self;
    c->progress_thread = (flags & CF_PROGRESS) != 0;
    c->capture_telemetry = (flags & CF_TELEMETRY) != 0;
    c->sync_mode = (flags & CF_SYNC_RW) ? NXL_SYNC_RW : NXL_SYNC_NONE;
}

nxl_status_t
cf_agent(const char *name, unsigned flags, nxl_agent_t **agent_p)
{
    nxl_agent_config_t cfg;
    nxl_agent_t *a = NULL;
    nxl_backend_t *be = NULL;
    nxl_status_t st;

    cf_config(&cfg, flags);
    st = nxl_agent_create(name, &cfg, &a);
    if (st != NXL_OK) {
        return st;
    }
    st = nxl_backend_create(a, cf_be(), cf_be_params(), &be);
    if (st != NXL_OK) {
        nxl_agent_destroy(a);
        return st;
    }
    *agent_p = a;
    return NXL_OK;
}

nxl_dlist_t
cf_dl(const nxl_desc_t *d, size_t n)
{
    nxl_dlist_t l = {NXL_DRAM, d, n};

    return l;
}

nxl_status_t
cf_reg(nxl_agent_t *a, const void *p, uint64_t len)
{
    nxl_desc_t d = {(uintptr_t)p, len, 0};
    nxl_dlist_t l = cf_dl(&d, 1);

    return nxl_mem_register(a, &l, NULL);
}

nxl_status_t
cf_dereg(nxl_agent_t *a, const void *p, uint64_t len)
{
    nxl_desc_t d = {(uintptr_t)p, len, 0};
    nxl_dlist_t l = cf_dl(&d, 1);

    return nxl_mem_deregister(a, &l, NULL);
}

nxl_status_t
cf_run(nxl_xfer_t *x, const nxl_opts_t *opts)
{
    return xt_xfer_run(x, opts, CF_XFER_TIMEOUT_MS);
}

nxl_status_t
cf_xfer1(nxl_agent_t *a, nxl_op_t op, uint64_t laddr, uint64_t raddr,
         uint64_t len, const char *remote, const nxl_opts_t *opts,
         nxl_xfer_t **x_p)
{
    nxl_desc_t ld = {laddr, len, 0}, rd = {raddr, len, 0};
    nxl_dlist_t ll = cf_dl(&ld, 1), rl = cf_dl(&rd, 1);

    return nxl_xfer_create(a, op, &ll, &rl, remote, opts, x_p);
}

void
cf_opts_peer(nxl_opts_t *o, uint16_t port)
{
    nxl_opts_init(o);
    o->ip_addr = cf_env.other;
    o->port = port;
}

void
cf_opts_notif(nxl_opts_t *o, const char *msg)
{
    nxl_opts_init(o);
    o->has_notif = 1;
    o->notif = msg;
    o->notif_len = strlen(msg);
}

nxl_status_t
cf_nq_next(nxl_agent_t *a, cf_nq *q, int timeout_ms, cf_notif *out)
{
    uint64_t t0 = xt_now_ms();
    nxl_notif_list_t *l;
    nxl_status_t st;
    cf_notif *n;
    size_t i, len;

    for (;;) {
        if (q->count > 0) {
            *out = q->items[q->head];
            q->head = (q->head + 1) % CF_NQ_MAX;
            q->count--;
            return NXL_OK;
        }
        l = NULL;
        st = nxl_notifs_get(a, &l, NULL);
        if (st != NXL_OK) {
            return st;
        }
        for (i = 0; l != NULL && i < l->count && q->count < CF_NQ_MAX; i++) {
            n = &q->items[(q->head + q->count) % CF_NQ_MAX];
            memset(n, 0, sizeof(*n));
            snprintf(n->agent, sizeof(n->agent), "%s",
                     l->items[i].agent ? l->items[i].agent : "(null)");
            n->len = l->items[i].len;
            len = n->len < CF_MSG_MAX ? n->len : CF_MSG_MAX;
            if (len > 0 && l->items[i].msg != NULL) {
                memcpy(n->msg, l->items[i].msg, len);
            }
            q->count++;
        }
        nxl_notif_list_free(l);
        if (q->count > 0) {
            continue;
        }
        if (xt_now_ms() - t0 >= (uint64_t)timeout_ms) {
            return NXL_ERR_TIMEOUT;
        }
        usleep(200);
    }
}

int
cf_notif_is(const cf_notif *n, const char *agent, const char *msg, size_t len)
{
    return strcmp(n->agent, agent) == 0 && n->len == len &&
           (len == 0 || memcmp(n->msg, msg, len) == 0);
}
