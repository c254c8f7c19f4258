/*
 * nxl-soak.c - command line and mode dispatch of nxl-soak.
 *
 * nxl-soak [--duration S] [--agents N] [--backends SHM,TCP,UCX] ...
 *     the soak (docs/reliability.md, "Soak")
 * nxl-soak --fanin 32 [--duration S] [--backends ...] ...
 *     the fan-in check (docs/reliability.md, "Fan-in")
 * nxl-soak --role agent|target|initiator ...
 *     a child; started by the parent only
 *
 * --flag value and --flag=value both work; '_' may stand for '-'.
 */
#include "soak.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#ifndef NXL_SOAK_RIG
#define NXL_SOAK_RIG "tests/netns/rig.sh"
#endif

FILE *sk_txt;

void
sk_err(const char *fmt, ...)
{
    va_list ap;

    fputs("nxl-soak: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

uint64_t
sk_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double
sk_now_s(void)
{
    return (double)sk_now_ns() / 1e9;
}

const char *
sk_fmt_bytes(uint64_t n, char *buf, size_t cap)
{
    if (n >= SK_GIB * 10) {
        snprintf(buf, cap, "%.1f GiB", (double)n / (double)SK_GIB);
    } else if (n >= SK_MIB * 10) {
        snprintf(buf, cap, "%.1f MiB", (double)n / (double)SK_MIB);
    } else if (n >= SK_KIB * 10) {
        snprintf(buf, cap, "%.1f KiB", (double)n / (double)SK_KIB);
    } else {
        snprintf(buf, cap, "%" PRIu64 " B", n);
    }
    return buf;
}

int
sk_parse_size(const char *s, uint64_t *v_p)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s) {
        return -1;
    }
    switch (*end) {
    case 'k':
    case 'K':
        v *= 1024ull;
        end++;
        break;
    case 'm':
    case 'M':
        v *= 1024ull * 1024;
        end++;
        break;
    case 'g':
    case 'G':
        v *= 1024ull * 1024 * 1024;
        end++;
        break;
    default:
        break;
    }
    if (*end == 'i' || *end == 'I') {
        end++;
    }
    if (*end == 'b' || *end == 'B') {
        end++;
    }
    if (*end != '\0') {
        return -1;
    }
    *v_p = v;
    return 0;
}

static void
usage(FILE *f)
{
    fprintf(
        f,
        "usage: nxl-soak [options]           the soak: N agents per backend\n"
        "       nxl-soak --fanin M [options] one target, M initiators per "
        "backend\n"
        "\n"
        "  --duration S        seconds of traffic (default 60; fan-in: per "
        "backend)\n"
        "  --backends LIST     comma-separated (default SHM,TCP,UCX; UCX is "
        "skipped\n"
        "                      with the reason when it is not built); an entry "
        "may\n"
        "                      carry backend params: "
        "UCX:local_path=ucx:num_workers=2\n"
        "  --agents N          soak: agents per backend (default 4)\n"
        "  --stable K          soak: agents never killed (default N/2; they "
        "carry\n"
        "                      the RSS and fd verdict)\n"
        "  --max-size SIZE     largest transfer (default 64M; fan-in 4M)\n"
        "  --kill-interval S   soak: mean seconds between kills per backend "
        "(10)\n"
        "  --fanin M           fan-in mode with M initiators (e.g. 32)\n"
        "  --fanin-kills K     fan-in: initiators killed and restarted "
        "(default 4)\n"
        "  --no-netns          fan-in: TCP on 127.0.0.1, not across the rig\n"
        "  --warmup S          soak: seconds before the first checkpoint\n"
        "                      (default duration/4, 10..60)\n"
        "  --ckpt-interval S   soak: seconds between checkpoints (default "
        "600)\n"
        "  --op-timeout S      a transfer slower than this is a hang (default "
        "30)\n"
        "  --ack-timeout S     a notification unacknowledged this long is lost "
        "(60)\n"
        "  --rss-pct P         allowed RssAnon growth after warm-up (default "
        "5)\n"
        "  --rss-slack-mib M   plus this much (default 4)\n"
        "  --no-rss-verdict    report RSS and mappings without judging them "
        "(for\n"
        "                      sanitizer builds: ASan's quarantine holds "
        "memory)\n"
        "  --seed N            random seed (default: from the clock; printed)\n"
        "  --log-dir DIR       children's logs (default /tmp/nxl-soak.<pid>)\n"
        "  --rig PATH          tests/netns/rig.sh\n"
        "  --smoke             the make-test run: 60 s, 3 agents (1 never "
        "killed);\n"
        "                      fan-in: 20 s per backend\n"
        "  --avoid-known       do not judge the known library defects listed "
        "in\n"
        "                      docs/reliability.md that are still open (now: "
        "the\n"
        "                      fan-in target's UCX mappings, defect 5)\n"
        "  --trace             log every notification sent and received (agent "
        "logs)\n"
        "  --json              the summary as one JSON object on stdout\n"
        "  --verbose           print kills and checkpoints as they happen\n");
}

/* flag_is compares a flag name, '_' matching '-'. */
static int
flag_is(const char *a, const char *name)
{
    for (; *a != '\0' && *a != '=' && *name != '\0'; a++, name++) {
        char x = *a == '_' ? '-' : *a;

        if (x != *name) {
            return 0;
        }
    }
    return (*a == '\0' || *a == '=') && *name == '\0';
}

static int
parse(int argc, char **argv, sk_opts_t *o)
{
    int i, stable_set = 0, dur_set = 0, agents_set = 0;

    memset(o, 0, sizeof(*o));
    o->duration_s = 60;
    o->agents = 4;
    snprintf(o->backends, sizeof(o->backends), "SHM,TCP,UCX");
    o->max_size = 64 * SK_MIB;
    o->kill_interval_s = 10;
    o->warmup_s = -1;
    o->ckpt_interval_s = 600;
    o->op_timeout_s = 30;
    o->ack_timeout_s = 60;
    o->rss_pct = 5;
    o->rss_slack_mib = 4;
    o->fanin_kills = 4;
    snprintf(o->rig, sizeof(o->rig), "%s", NXL_SOAK_RIG);
    snprintf(o->addr, sizeof(o->addr), "127.0.0.1");
    snprintf(o->peer_addr, sizeof(o->peer_addr), "127.0.0.1");

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL, *eq;

        if (strncmp(a, "--", 2) != 0) {
            sk_err("unexpected argument '%s'", a);
            return -1;
        }
        a += 2;
        eq = strchr(a, '=');
#define NEEDV()                                                                \
    do {                                                                       \
        if (eq != NULL) {                                                      \
            v = eq + 1;                                                        \
        } else if (i + 1 < argc) {                                             \
            v = argv[++i];                                                     \
        } else {                                                               \
            sk_err("--%s needs a value", a);                                   \
            return -1;                                                         \
        }                                                                      \
    } while (0)
        if (flag_is(a, "help")) {
            usage(stdout);
            exit(0);
        } else if (flag_is(a, "smoke")) {
            o->smoke = 1;
        } else if (flag_is(a, "json")) {
            o->json = 1;
        } else if (flag_is(a, "verbose")) {
            o->verbose = 1;
        } else if (flag_is(a, "avoid-known")) {
            o->avoid_known = 1;
        } else if (flag_is(a, "trace")) {
            o->trace = 1;
        } else if (flag_is(a, "no-rss-verdict")) {
            o->no_rss = 1;
        } else if (flag_is(a, "no-netns")) {
            o->no_netns = 1;
        } else if (flag_is(a, "duration")) {
            NEEDV();
            o->duration_s = atof(v);
            dur_set = 1;
        } else if (flag_is(a, "backends")) {
            NEEDV();
            snprintf(o->backends, sizeof(o->backends), "%s", v);
        } else if (flag_is(a, "agents")) {
            NEEDV();
            o->agents = (unsigned)atoi(v);
            agents_set = 1;
        } else if (flag_is(a, "stable")) {
            NEEDV();
            o->stable = (unsigned)atoi(v);
            stable_set = 1;
        } else if (flag_is(a, "seed")) {
            NEEDV();
            o->seed = strtoull(v, NULL, 0);
            o->seed_set = 1;
        } else if (flag_is(a, "max-size")) {
            NEEDV();
            if (sk_parse_size(v, &o->max_size) != 0 || o->max_size == 0) {
                sk_err("bad size '%s'", v);
                return -1;
            }
            o->max_size_set = 1;
        } else if (flag_is(a, "kill-interval")) {
            NEEDV();
            o->kill_interval_s = atof(v);
        } else if (flag_is(a, "fanin")) {
            NEEDV();
            o->fanin = (unsigned)atoi(v);
        } else if (flag_is(a, "fanin-kills")) {
            NEEDV();
            o->fanin_kills = (unsigned)atoi(v);
        } else if (flag_is(a, "warmup")) {
            NEEDV();
            o->warmup_s = atof(v);
        } else if (flag_is(a, "ckpt-interval")) {
            NEEDV();
            o->ckpt_interval_s = atof(v);
        } else if (flag_is(a, "op-timeout")) {
            NEEDV();
            o->op_timeout_s = atof(v);
        } else if (flag_is(a, "ack-timeout")) {
            NEEDV();
            o->ack_timeout_s = atof(v);
        } else if (flag_is(a, "rss-pct")) {
            NEEDV();
            o->rss_pct = atof(v);
        } else if (flag_is(a, "rss-slack-mib")) {
            NEEDV();
            o->rss_slack_mib = atof(v);
        } else if (flag_is(a, "log-dir")) {
            NEEDV();
            snprintf(o->log_dir, sizeof(o->log_dir), "%s", v);
        } else if (flag_is(a, "rig")) {
            NEEDV();
            snprintf(o->rig, sizeof(o->rig), "%s", v);
        } else if (flag_is(a, "role")) {
            NEEDV();
            if (strcmp(v, "agent") == 0) {
                o->role = SK_ROLE_AGENT;
            } else if (strcmp(v, "target") == 0) {
                o->role = SK_ROLE_TARGET;
            } else if (strcmp(v, "initiator") == 0) {
                o->role = SK_ROLE_INITIATOR;
            } else {
                sk_err("unknown role '%s'", v);
                return -1;
            }
        } else if (flag_is(a, "backend")) {
            NEEDV();
            snprintf(o->backend, sizeof(o->backend), "%s", v);
        } else if (flag_is(a, "label")) {
            NEEDV();
            snprintf(o->label, sizeof(o->label), "%s", v);
        } else if (flag_is(a, "params")) {
            NEEDV();
            snprintf(o->params, sizeof(o->params), "%s", v);
        } else if (flag_is(a, "group")) {
            NEEDV();
            o->group = (unsigned)atoi(v);
        } else if (flag_is(a, "index")) {
            NEEDV();
            o->index = (unsigned)atoi(v);
        } else if (flag_is(a, "inc")) {
            NEEDV();
            o->inc = (unsigned)atoi(v);
        } else if (flag_is(a, "progress-thread")) {
            NEEDV();
            o->progress_thread = (unsigned)atoi(v);
        } else if (flag_is(a, "addr")) {
            NEEDV();
            snprintf(o->addr, sizeof(o->addr), "%s", v);
        } else if (flag_is(a, "peer-addr")) {
            NEEDV();
            snprintf(o->peer_addr, sizeof(o->peer_addr), "%s", v);
        } else {
            sk_err("unknown flag --%.*s (see --help)",
                   (int)(eq ? (size_t)(eq - a) : strlen(a)), a);
            return -1;
        }
#undef NEEDV
    }
    if (o->role != SK_ROLE_NONE) {
        if (o->label[0] == '\0') {
            snprintf(o->label, sizeof(o->label), "%s", o->backend);
        }
        return 0;
    }
    if (o->smoke) {
        if (!dur_set) {
            o->duration_s = o->fanin ? 20 : 60;
        }
        if (!agents_set) {
            o->agents = 3;
        }
        if (!stable_set) {
            o->stable = 1;
            stable_set = 1;
        }
    }
    if (o->fanin > 0 && !o->max_size_set) {
        o->max_size = 4 * SK_MIB;
    }
    if (!stable_set) {
        o->stable = o->agents / 2;
    }
    if (!o->seed_set) {
        o->seed = sk_mix64((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
    }
    if (o->fanin == 0 && (o->agents < 2 || o->agents > SK_MAX_AGENTS)) {
        sk_err("--agents must be 2..%d", SK_MAX_AGENTS);
        return -1;
    }
    if (o->fanin == 0 && o->stable > o->agents) {
        sk_err("--stable must be at most --agents");
        return -1;
    }
    if (o->fanin + 1 > SK_MAX_AGENTS) {
        sk_err("--fanin must be at most %d", SK_MAX_AGENTS - 1);
        return -1;
    }
    if (o->duration_s <= 0 || o->op_timeout_s <= 0 || o->ack_timeout_s <= 0) {
        sk_err("durations must be positive");
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    static sk_opts_t o;
    char self[4096];
    ssize_t n;

    if (parse(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    if (o.role != SK_ROLE_NONE) {
        return sk_child_main(&o);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    sk_txt = o.json ? stderr : stdout;
    signal(SIGPIPE, SIG_IGN);
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        sk_err("readlink /proc/self/exe: %s", strerror(errno));
        return 2;
    }
    self[n] = '\0';
    if (sk_mkdir_logs(&o, o.log_dir, sizeof(o.log_dir)) != 0) {
        return 2;
    }
    if (o.fanin > 0) {
        return sk_fanin_main(&o, self);
    }
    return sk_soak_main(&o, self);
}
