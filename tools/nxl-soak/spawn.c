/*
 * spawn.c - the parent's side of the children: starting one (fork, enter
 * a network namespace if asked, exec this binary with --role), reaping,
 * killing, their log files, a backtrace of a hung one, and the namespace
 * rig of tests/netns/rig.sh.
 *
 * The parent never creates an agent or touches UCX, and every child
 * executes a fresh image, so fork safety is not a question.
 */
#include "soak.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *
role_name(sk_role_t r)
{
    switch (r) {
    case SK_ROLE_AGENT:
        return "agent";
    case SK_ROLE_TARGET:
        return "target";
    case SK_ROLE_INITIATOR:
        return "initiator";
    default:
        return "none";
    }
}

int
sk_spawn(const sk_spawn_cfg_t *c, sk_child_t *ch)
{
    char a_group[16], a_idx[16], a_inc[16], a_n[16], a_seed[32], a_max[32];
    char a_opt[32], a_ack[32], a_pt[8];
    const char *argv[40];
    pid_t parent = getpid(), pid;
    int sv[2], logfd, n = 0;

    snprintf(a_group, sizeof(a_group), "%u", c->group);
    snprintf(a_idx, sizeof(a_idx), "%u", c->idx);
    snprintf(a_inc, sizeof(a_inc), "%u", c->inc);
    snprintf(a_n, sizeof(a_n), "%u", c->agents);
    snprintf(a_seed, sizeof(a_seed), "%llu", (unsigned long long)c->o->seed);
    snprintf(a_max, sizeof(a_max), "%llu", (unsigned long long)c->max_size);
    snprintf(a_opt, sizeof(a_opt), "%g", c->o->op_timeout_s);
    snprintf(a_ack, sizeof(a_ack), "%g", c->o->ack_timeout_s);
    snprintf(a_pt, sizeof(a_pt), "%d", c->progress_thread ? 1 : 0);
    argv[n++] = c->self_exe;
    argv[n++] = "--role";
    argv[n++] = role_name(c->role);
    argv[n++] = "--backend";
    argv[n++] = c->backend;
    argv[n++] = "--label";
    argv[n++] = c->label != NULL ? c->label : c->backend;
    if (c->params != NULL && c->params[0] != '\0') {
        argv[n++] = "--params";
        argv[n++] = c->params;
    }
    argv[n++] = "--group";
    argv[n++] = a_group;
    argv[n++] = "--index";
    argv[n++] = a_idx;
    argv[n++] = "--inc";
    argv[n++] = a_inc;
    argv[n++] = "--agents";
    argv[n++] = a_n;
    argv[n++] = "--seed";
    argv[n++] = a_seed;
    argv[n++] = "--max-size";
    argv[n++] = a_max;
    argv[n++] = "--op-timeout";
    argv[n++] = a_opt;
    argv[n++] = "--ack-timeout";
    argv[n++] = a_ack;
    argv[n++] = "--progress-thread";
    argv[n++] = a_pt;
    if (c->o->avoid_known) {
        argv[n++] = "--avoid-known";
    }
    if (c->o->trace) {
        argv[n++] = "--trace";
    }
    argv[n++] = "--addr";
    argv[n++] = c->addr != NULL ? c->addr : "127.0.0.1";
    argv[n++] = "--peer-addr";
    argv[n++] = c->peer_addr != NULL ? c->peer_addr : "127.0.0.1";
    argv[n] = NULL;

    memset(ch, 0, sizeof(*ch));
    ch->fd = -1;
    ch->group = c->group;
    ch->idx = c->idx;
    ch->inc = c->inc;
    snprintf(ch->log, sizeof(ch->log), "%s/%s-%s-%u.log", c->o->log_dir,
             role_name(c->role), c->label != NULL ? c->label : c->backend,
             c->idx);
    logfd = open(ch->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) {
        sk_err("open %s: %s", ch->log, strerror(errno));
        return -1;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        sk_err("socketpair: %s", strerror(errno));
        close(logfd);
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        sk_err("fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        close(logfd);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != parent) {
            _exit(1);
        }
        if (c->netns != NULL && sk_enter_netns(c->netns) != 0) {
            dprintf(logfd, "cannot enter netns %s: %s\n", c->netns,
                    strerror(errno));
            _exit(1);
        }
        /* Output first (logfd may sit on fd 3), then the control socket
         * on fd 3 without close-on-exec. */
        if (dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0) {
            _exit(1);
        }
        if (sv[1] == SK_CTL_FD) {
            (void)fcntl(SK_CTL_FD, F_SETFD, 0);
        } else if (dup2(sv[1], SK_CTL_FD) < 0) {
            _exit(1);
        }
        execv(c->self_exe, (char *const *)argv);
        dprintf(2, "exec %s: %s\n", c->self_exe, strerror(errno));
        _exit(127);
    }
    close(sv[1]);
    close(logfd);
    ch->pid = pid;
    ch->fd = sv[0];
    ch->alive = 1;
    ch->t_spawn = sk_now_s();
    ch->t_last_stats = ch->t_spawn;
    return 0;
}

int
sk_reap(sk_child_t *ch)
{
    int status;
    pid_t r;

    if (!ch->alive) {
        return 1;
    }
    r = waitpid(ch->pid, &status, WNOHANG);
    if (r == ch->pid) {
        ch->alive = 0;
        ch->exit_status = status;
        ch->t_exit = sk_now_s();
        return 1;
    }
    return 0;
}

void
sk_kill(sk_child_t *ch)
{
    if (ch->alive) {
        kill(ch->pid, SIGKILL);
        ch->killed = 1;
    }
}

void
sk_log_tail(const char *path, int lines, FILE *out)
{
    char buf[65536];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC), seen = 0;
    off_t end;
    char *p;

    if (fd < 0) {
        return;
    }
    end = lseek(fd, 0, SEEK_END);
    if (end > (off_t)sizeof(buf) - 1) {
        lseek(fd, end - (off_t)sizeof(buf) + 1, SEEK_SET);
    } else {
        lseek(fd, 0, SEEK_SET);
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return;
    }
    buf[n] = '\0';
    p = buf + n;
    while (p > buf && seen <= lines) {
        p--;
        if (*p == '\n') {
            seen++;
        }
    }
    fprintf(out, "    --- last lines of %s ---\n%s", path,
            p == buf ? p : p + 1);
    if (n > 0 && buf[n - 1] != '\n') {
        fputc('\n', out);
    }
}

void
sk_backtrace(pid_t pid, const char *log)
{
    char cmd[2048];

    snprintf(cmd, sizeof(cmd),
             "(echo '--- open fds of pid %d'; ls -l /proc/%d/fd; "
             "for f in /proc/%d/fdinfo/*; do echo \"$f: $(head -2 $f | "
             "tr '\\n' ' ')\"; done) >>%s 2>&1; "
             "command -v gdb >/dev/null 2>&1 && timeout 60 gdb -p %d -batch "
             "-ex 'thread apply all bt' >>%s 2>&1",
             (int)pid, (int)pid, (int)pid, log, (int)pid, log);
    if (system(cmd) != 0) {
        sk_err("no backtrace of pid %d (gdb missing or failed)", (int)pid);
    }
}

void
sk_backtrace_brief(pid_t pid, const char *label, FILE *out)
{
    char cmd[256], line[1024], chain[768];
    size_t used = 0;
    int depth = 0;
    FILE *p;

    snprintf(cmd, sizeof(cmd),
             "timeout 60 gdb -p %d -batch -ex 'thread apply all bt 10' "
             "2>/dev/null",
             (int)pid);
    p = popen(cmd, "r");
    if (p == NULL) {
        return;
    }
    fprintf(out, "  threads of %s (pid %d), innermost frame first:\n", label,
            (int)pid);
    chain[0] = '\0';
    while (fgets(line, sizeof(line), p) != NULL) {
        char *fn, *end;

        if (strncmp(line, "Thread ", 7) == 0) {
            if (used > 0) {
                fprintf(out, "    %s\n", chain);
            }
            used = 0;
            depth = 0;
            chain[0] = '\0';
            continue;
        }
        if (line[0] != '#' || depth >= 10) {
            continue;
        }
        /* "#1  0x... in func (args)" or "#0  func (args)" */
        fn = strstr(line, " in ");
        fn = fn != NULL ? fn + 4 : strchr(line, ' ');
        while (fn != NULL && *fn == ' ') {
            fn++;
        }
        if (fn == NULL || (end = strchr(fn, ' ')) == NULL) {
            continue;
        }
        used += (size_t)snprintf(
            chain + used, used < sizeof(chain) ? sizeof(chain) - used : 0,
            "%s%.*s", depth > 0 ? " < " : "", (int)(end - fn), fn);
        used = used < sizeof(chain) ? used : sizeof(chain) - 1;
        depth++;
    }
    if (used > 0) {
        fprintf(out, "    %s\n", chain);
    }
    if (pclose(p) != 0) {
        fprintf(out, "    (gdb missing or failed)\n");
    }
}

int
sk_mkdir_logs(const sk_opts_t *o, char *dir, size_t cap)
{
    if (o->log_dir[0] != '\0') {
        if (dir != o->log_dir) {
            snprintf(dir, cap, "%s", o->log_dir);
        }
    } else {
        snprintf(dir, cap, "/tmp/nxl-soak.%d", (int)getpid());
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        sk_err("mkdir %s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* sk_rig_up makes a two-host rig (NAME-a, NAME-b) with a guard process in
 * its own session that removes it if we die however we die. Returns 0, or
 * -1 with the reason in why (not root, no rig script, no namespaces). */
int
sk_rig_up(const sk_opts_t *o, char *name, size_t cap, int *guard_p, char *why,
          size_t why_cap)
{
    char cmd[1024];
    int pfd[2], rc;
    pid_t pid;
    char b;

    if (geteuid() != 0) {
        snprintf(why, why_cap, "not root: cannot make network namespaces");
        return -1;
    }
    if (access(o->rig, X_OK) != 0) {
        snprintf(why, why_cap, "no rig script at %s", o->rig);
        return -1;
    }
    snprintf(name, cap, "nxlsk%d", (int)getpid());
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        snprintf(why, why_cap, "pipe: %s", strerror(errno));
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        snprintf(why, why_cap, "fork: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        setsid();
        close(pfd[1]);
        while (read(pfd[0], &b, 1) > 0 || errno == EINTR) {
        }
        snprintf(cmd, sizeof(cmd), "%s down %s >/dev/null 2>&1", o->rig, name);
        rc = system(cmd);
        _exit(rc == 0 ? 0 : 1);
    }
    close(pfd[0]);
    *guard_p = pfd[1];
    snprintf(cmd, sizeof(cmd), "%s up %s 2 >/dev/null 2>&1", o->rig, name);
    rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
        snprintf(why, why_cap, "%s up %s failed (status %d%s)", o->rig, name,
                 rc == -1 ? -1 : WEXITSTATUS(rc),
                 (rc != -1 && WEXITSTATUS(rc) == 77) ? ": namespaces not "
                                                       "available"
                                                     : "");
        close(*guard_p);
        return -1;
    }
    return 0;
}

void
sk_rig_down(const sk_opts_t *o, const char *name, int guard)
{
    char cmd[1024];

    snprintf(cmd, sizeof(cmd), "%s down %s >/dev/null 2>&1", o->rig, name);
    if (system(cmd) != 0) {
        sk_err("%s down %s failed", o->rig, name);
    }
    close(guard);
}

int
sk_backend_spec(const char *spec, char *type, size_t tcap, char *label,
                size_t lcap, char *params, size_t pcap)
{
    const char *colon = strchr(spec, ':');
    size_t tl = colon != NULL ? (size_t)(colon - spec) : strlen(spec), i;

    if (tl == 0 || tl >= tcap || strlen(spec) >= lcap ||
        (colon != NULL && strlen(colon + 1) >= pcap)) {
        return -1;
    }
    memcpy(type, spec, tl);
    type[tl] = '\0';
    snprintf(params, pcap, "%s", colon != NULL ? colon + 1 : "");
    for (i = 0; spec[i] != '\0'; i++) {
        char ch = spec[i];

        label[i] = ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '-')
                       ? ch
                       : '_';
    }
    label[i] = '\0';
    return 0;
}

int
sk_backend_built(const char *name)
{
    const char *names[32];
    size_t n = 0, i;

    if (nxl_plugin_names(names, 32, &n) != NXL_OK) {
        return 0;
    }
    for (i = 0; i < n && i < 32; i++) {
        if (strcasecmp(names[i], name) == 0) {
            return 1;
        }
    }
    return 0;
}
