/* xt_netns.c - two-host rigs and entering namespaces (see xt_netns.h). */
#include "xt_netns.h"
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#define XT_RIG NXL_TEST_DATA_DIR "/../netns/rig.sh"

int
xt_rig_up(xt_rig *rig, const char *prefix, const char *opts)
{
    char cmd[512];
    int pfd[2], rc;
    pid_t pid;
    char b;

    if (geteuid() != 0) {
        printf("  skip: network namespaces need root\n");
        return XT_SKIP;
    }
    snprintf(rig->name, sizeof(rig->name), "%.16s%d", prefix, (int)getpid());
    snprintf(rig->ns_a, sizeof(rig->ns_a), "%s-a", rig->name);
    snprintf(rig->ns_b, sizeof(rig->ns_b), "%s-b", rig->name);
    XT_ASSERT(pipe(pfd) == 0);
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    XT_ASSERT(pid >= 0);
    if (pid == 0) {
        setsid();
        close(pfd[1]);
        while (read(pfd[0], &b, 1) > 0 || errno == EINTR) {
        }
        snprintf(cmd, sizeof(cmd), "%s down %s >/dev/null 2>&1", XT_RIG,
                 rig->name);
        rc = system(cmd);
        _exit(rc == 0 ? 0 : 1);
    }
    close(pfd[0]);
    /* Processes forked after this inherit the guard's pipe (close-on-exec
     * does not help: test peers do not exec), so the guard also waits for
     * them, unless they die with us (PR_SET_PDEATHSIG, as conformance
     * peers do). */
    rig->guard = pfd[1];
    snprintf(cmd, sizeof(cmd), "%s up %s 2 %s", XT_RIG, rig->name, opts);
    rc = system(cmd);
    if (rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 77) {
        printf("  skip: rig.sh cannot make network namespaces here\n");
        close(rig->guard);
        return XT_SKIP;
    }
    if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
        close(rig->guard);
        XT_FAILF("rig.sh up %s failed (status 0x%x)", rig->name, rc);
    }
    return 0;
}

void
xt_rig_down(xt_rig *rig)
{
    char cmd[512];

    snprintf(cmd, sizeof(cmd), "%s down %s", XT_RIG, rig->name);
    if (system(cmd) != 0) {
        fprintf(stderr, "rig.sh down %s failed\n", rig->name);
    }
    close(rig->guard);
}

int
xt_netns_enter(const char *ns, bool own_sysfs)
{
    char path[256];
    int fd, rc;

    snprintf(path, sizeof(path), "/var/run/netns/%s", ns);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    rc = setns(fd, CLONE_NEWNET);
    close(fd);
    if (rc != 0 || !own_sysfs) {
        return rc;
    }
    if (unshare(CLONE_NEWNS) != 0 ||
        mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) != 0) {
        return -1;
    }
    (void)umount2("/sys", MNT_DETACH);
    return mount(ns, "/sys", "sysfs", 0, NULL);
}
