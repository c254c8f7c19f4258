/*
 * xt_netns.h - network namespaces for tests: two-host rigs made by
 * tests/netns/rig.sh, and moving a process into one of their namespaces.
 * Both need root; without it a case skips.
 */
#ifndef NXL_TESTS_XT_NETNS_H
#define NXL_TESTS_XT_NETNS_H

#include <stdbool.h>

/* The addresses rig.sh gives a two-host rig's namespaces. */
#define XT_RIG_ADDR_A "10.77.0.1" /* NAME-a */
#define XT_RIG_ADDR_B "10.77.0.2" /* NAME-b */

/* xt_rig is one two-host rig: namespaces ns_a and ns_b joined by a veth
 * pair. */
typedef struct {
    char name[32]; /* NAME: the prefix and this process's pid */
    char ns_a[48]; /* "NAME-a" */
    char ns_b[48]; /* "NAME-b" */
    int guard;     /* write end of the pipe the cleanup guard waits on */
} xt_rig;

/* xt_rig_up makes a two-host rig named prefix and this process's pid
 * (unique among concurrent runs), with rig.sh options opts ("" for none),
 * and a guard process in its own session (the harness's group kill spares
 * it) that removes the rig when this process dies however it dies.
 * Returns 0, XT_SKIP (the reason printed: not root, or rig.sh cannot make
 * namespaces here) or 1 (failure printed); on anything but 0 there is no
 * rig to take down. */
int xt_rig_up(xt_rig *rig, const char *prefix, const char *opts);

/* xt_rig_down removes the rig and releases its guard. */
void xt_rig_down(xt_rig *rig);

/* xt_netns_enter moves the calling process into the network namespace
 * /var/run/netns/<ns>. With own_sysfs it also does what `ip netns exec`
 * does: it gives the process a private mount namespace with a sysfs of
 * the new network namespace (UCX lists network devices from
 * /sys/class/net, which otherwise still shows the devices of the
 * namespace that mounted it); that needs a single-threaded process.
 * Returns 0, or -1 with errno set. */
int xt_netns_enter(const char *ns, bool own_sysfs);

#endif /* NXL_TESTS_XT_NETNS_H */
