/*
 * kill_sender.c - reproducer: a same-host sender killed while it sends
 * notifications to a UCX target stops every later notification to that
 * target, from every sender, for good.
 *
 *   repro-kill-sender [ROUNDS [BACKEND_PARAMS]]   (default 200, "")
 *
 * Three kinds of process, one UCX agent each, all on this host: the
 * target T (this process), a witness W that lives through the whole run,
 * and per round a fresh sender S<r>. In each round S<r> fetches T's
 * metadata and sends T standalone notifications of 64 B to 16 KiB in a
 * tight loop; after 0-20 ms T kills it with SIGKILL. Then W sends T one
 * notification naming the round, and T waits up to 3 s for it.
 *
 * Expected: every round's witness notification arrives (exit 0). Exit 1
 * names the first round where it did not; 77: no UCX backend. BACKEND_PARAMS is
 * a list of KEY=VAL separated by ':' for the UCX backend (e.g. err_mode=peer).
 * docs/reliability.md, "Defects found", 6.
 */
#include "two_proc.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

const char *tp_who = "T";

static char buf[65536];

/* agent: a UCX agent with params "K=V:K=V" (copied first). */
static nxl_agent_t *
agent(const char *name, const char *params)
{
    static char pcopy[512];

    snprintf(pcopy, sizeof(pcopy), "%s", params);
    return tp_agent(name, "UCX", pcopy, buf, sizeof(buf));
}

/* sender_main: fetch T, say 'R' on stdout, send until killed. */
static int
sender_main(const char *name, uint16_t port, const char *params)
{
    static char msg[16384];
    nxl_agent_t *a;
    unsigned seed = (unsigned)getpid();

    tp_who = name;
    a = agent(name, params);
    tp_fetch(a, "T", port);
    if (write(1, "R", 1) != 1) {
        return 2;
    }
    for (;;) {
        size_t n = 64 + (size_t)rand_r(&seed) % (sizeof(msg) - 64);
        nxl_notif_list_t *l = NULL;

        (void)nxl_notif_send(a, "T", msg, n, NULL);
        (void)nxl_notifs_get(a, &l, NULL); /* progress */
        nxl_notif_list_free(l);
    }
}

/* witness_main: fetch T, say 'R'; per line "N" on stdin send "w:N". */
static int
witness_main(uint16_t port, const char *params)
{
    nxl_agent_t *a;
    char line[64];

    tp_who = "W";
    a = agent("W", params);
    tp_fetch(a, "T", port);
    if (write(1, "R", 1) != 1) {
        return 2;
    }
    while (fgets(line, sizeof(line), stdin) != NULL) {
        char m[64];
        int n = snprintf(m, sizeof(m), "w:%ld", strtol(line, NULL, 10));

        TP_CHECK(nxl_notif_send(a, "T", m, (size_t)n, NULL));
    }
    nxl_agent_destroy(a);
    return 0;
}

/* spawn runs this program again with args; *in_p (its stdin, or -1) and
 * *out_p (its stdout) are pipes. */
static pid_t
spawn(char *const args[], int *in_p, int *out_p)
{
    int in[2], out[2];
    pid_t pid;

    if (pipe(in) != 0 || pipe(out) != 0) {
        return -1;
    }
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execv("/proc/self/exe", args);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    if (in_p != NULL) {
        *in_p = in[1];
    } else {
        close(in[1]);
    }
    *out_p = out[0];
    return pid;
}

/* drain collects T's notifications for up to secs; returns 1 once one
 * reads want (NULL: collect only). */
static int
drain(nxl_agent_t *a, const char *want, double secs, unsigned long *got)
{
    double t0 = tp_now_s();

    do {
        nxl_notif_list_t *l = NULL;
        size_t i;
        int hit = 0;

        TP_CHECK(nxl_notifs_get(a, &l, NULL));
        for (i = 0; l != NULL && i < l->count; i++) {
            (*got)++;
            if (want != NULL && l->items[i].len == strlen(want) &&
                memcmp(l->items[i].msg, want, l->items[i].len) == 0) {
                hit = 1;
            }
        }
        nxl_notif_list_free(l);
        if (hit) {
            return 1;
        }
        usleep(500);
    } while (tp_now_s() - t0 < secs);
    return 0;
}

int
main(int argc, char **argv)
{
    const char *params;
    char port_s[16], name[32], want[32], line[32];
    unsigned long got = 0;
    int rounds, r, win, wout, sout, st;
    unsigned seed = (unsigned)time(NULL);
    nxl_agent_t *t;
    pid_t w, s;
    char c;

    if (argc == 5 && strcmp(argv[1], "s") == 0) {
        return sender_main(argv[2], (uint16_t)atoi(argv[3]), argv[4]);
    }
    if (argc == 4 && strcmp(argv[1], "w") == 0) {
        return witness_main((uint16_t)atoi(argv[2]), argv[3]);
    }
    rounds = argc > 1 ? atoi(argv[1]) : 200;
    params = argc > 2 ? argv[2] : "";
    signal(SIGPIPE, SIG_IGN);
    t = agent("T", params);
    snprintf(port_s, sizeof(port_s), "%u", nxl_agent_listen_port(t));
    {
        char *args[] = {argv[0], "w", port_s, (char *)params, NULL};

        w = spawn(args, &win, &wout);
    }
    if (w < 0 || read(wout, &c, 1) != 1) {
        printf("T: the witness did not start\n");
        return 2;
    }
    for (r = 1; r <= rounds; r++) {
        double t0;

        snprintf(name, sizeof(name), "S%d", r);
        {
            char *args[] = {argv[0], "s", name, port_s, (char *)params, NULL};

            s = spawn(args, NULL, &sout);
        }
        if (s < 0 || read(sout, &c, 1) != 1) {
            printf("T: sender %s did not start\n", name);
            return 2;
        }
        drain(t, NULL, (double)(rand_r(&seed) % 21) / 1000.0, &got);
        kill(s, SIGKILL);
        waitpid(s, &st, 0);
        close(sout);
        snprintf(line, sizeof(line), "%d\n", r);
        snprintf(want, sizeof(want), "w:%d", r);
        if (write(win, line, strlen(line)) != (ssize_t)strlen(line)) {
            printf("T: the witness is gone\n");
            return 2;
        }
        t0 = tp_now_s();
        if (!drain(t, want, 3.0, &got)) {
            printf("T: round %d: the witness's notification did not arrive "
                   "in 3 s after %s was killed (%lu notifications so far)\n",
                   r, name, got);
            fflush(stdout);
            kill(w, SIGKILL);
            waitpid(w, &st, 0);
            _exit(1);
        }
        if (r % 20 == 0) {
            printf("T: %d rounds, the last witness notification in %.1f ms, "
                   "%lu notifications so far\n",
                   r, (tp_now_s() - t0) * 1e3, got);
            fflush(stdout);
        }
    }
    close(win);
    waitpid(w, &st, 0);
    nxl_agent_destroy(t);
    printf("T: %d rounds, every witness notification arrived (%lu in all)\n",
           rounds, got);
    return 0;
}
