/*
 * test_kv_diag.c - UCX_NET_DEVICES diagnostics over a fake sysfs tree
 * (Dynamo's diagnostics.rs tests): natural port order and the DOWN filter,
 * the GPU-affine recommendation, the fallback to every port, the message
 * without active ports, and the PCI address check.
 */
#include "harness.h"

#include "kv/kv.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#define DG_OUT 4096

/* dg_mkdirs makes every directory of path (mkdir -p). Returns 0 or -1. */
static int
dg_mkdirs(const char *path)
{
    char buf[1024];
    size_t i;

    snprintf(buf, sizeof(buf), "%s", path);
    for (i = 1; buf[i] != '\0'; i++) {
        if (buf[i] == '/') {
            buf[i] = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                return -1;
            }
            buf[i] = '/';
        }
    }
    return mkdir(buf, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/* dg_write writes text to root/rel, making its directories. */
static int
dg_write(const char *root, const char *rel, const char *text)
{
    char path[1024], dir[1024];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", root, rel);
    snprintf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = '\0';
    if (dg_mkdirs(dir) != 0 || (f = fopen(path, "w")) == NULL) {
        return -1;
    }
    fputs(text, f);
    return fclose(f);
}

/* dg_nic adds IB device dev under PCI path pci (relative to root/devices),
 * with ports "n:STATE" in states (NULL-terminated). */
static int
dg_nic(const char *root, const char *dev, const char *pci,
       const char *const *states)
{
    char rel[512], target[1024], link[1024];
    size_t i;

    snprintf(rel, sizeof(rel), "%s/devices/%s", root, pci);
    if (dg_mkdirs(rel) != 0) {
        return -1;
    }
    for (i = 0; states[i] != NULL; i++) {
        unsigned port;
        char st[32];

        if (sscanf(states[i], "%u:%31s", &port, st) != 2) {
            return -1;
        }
        snprintf(rel, sizeof(rel), "class/infiniband/%s/ports/%u/state", dev,
                 port);
        snprintf(target, sizeof(target), "%u: %s\n", port, st);
        if (dg_write(root, rel, target) != 0) {
            return -1;
        }
    }
    snprintf(target, sizeof(target), "%s/devices/%s", root, pci);
    snprintf(link, sizeof(link), "%s/class/infiniband/%s/device", root, dev);
    return symlink(target, link);
}

/* dg_gpu adds an NVIDIA display device at PCI path pci. */
static int
dg_gpu(const char *root, const char *pci)
{
    char rel[512], target[1024], link[1024];
    const char *bdf = strrchr(pci, '/') ? strrchr(pci, '/') + 1 : pci;

    snprintf(rel, sizeof(rel), "devices/%s/vendor", pci);
    if (dg_write(root, rel, "0x10de\n") != 0) {
        return -1;
    }
    snprintf(rel, sizeof(rel), "devices/%s/class", pci);
    if (dg_write(root, rel, "0x030200\n") != 0) {
        return -1;
    }
    snprintf(rel, sizeof(rel), "%s/bus/pci/devices", root);
    if (dg_mkdirs(rel) != 0) {
        return -1;
    }
    snprintf(target, sizeof(target), "%s/devices/%s", root, pci);
    snprintf(link, sizeof(link), "%s/bus/pci/devices/%s", root, bdf);
    return symlink(target, link);
}

/* dg_root makes an empty fake sysfs root in /tmp. */
static int
dg_root(char *root, size_t cap)
{
    snprintf(root, cap, "/tmp/nxl-diag-%d", (int)getpid());
    return dg_mkdirs(root);
}

/* dg_rm removes the fake tree. */
static void
dg_rm(const char *root)
{
    char cmd[600];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot remove %s\n", root);
    }
}

static int
t_natural_order_and_down(void)
{
    static const char *const up[] = {"1:ACTIVE", NULL};
    static const char *const down[] = {"1:DOWN", NULL};
    static const char *const mixed[] = {"1:active", "2:INIT", NULL};
    char root[256], out[DG_OUT];
    char *env[] = {NULL};

    XT_ASSERT(dg_root(root, sizeof(root)) == 0);
    XT_ASSERT(dg_nic(root, "mlx5_10", "pci0000:00/0000:00:02.0/0000:5e:00.0",
                     up) == 0);
    XT_ASSERT(dg_nic(root, "mlx5_2", "pci0000:00/0000:00:03.0/0000:3b:00.0",
                     up) == 0);
    XT_ASSERT(dg_nic(root, "mlx5_0", "pci0000:00/0000:00:01.0/0000:1a:00.0",
                     mixed) == 0);
    XT_ASSERT(dg_nic(root, "mlx5_1", "pci0000:00/0000:00:04.0/0000:1b:00.0",
                     down) == 0);
    nxl__kv_ucx_diag(root, env, out, sizeof(out));
    dg_rm(root);
    XT_ASSERT(strstr(out, "--- UCX_NET_DEVICES diagnostics ---\n") == out);
    XT_ASSERT(strstr(out, "UCX_NET_DEVICES=<unset>\n") != NULL);
    XT_ASSERT(strstr(out, "UCX_TLS=<unset>\n") != NULL);
    XT_ASSERT(strstr(out, "UCX_IB_ADDR_TYPE=<unset>\n") != NULL);
    /* Natural order, DOWN and INIT ports filtered; no GPU: all of them. */
    if (strstr(out, "Recommended: UCX_NET_DEVICES=mlx5_0:1,mlx5_2:1,"
                    "mlx5_10:1\n") == NULL) {
        XT_FAILF("unexpected diagnostics:\n%s", out);
    }
    XT_ASSERT(strstr(out, "mlx5_1:") == NULL);
    return 0;
}

static int
t_affine_subset(void)
{
    static const char *const up[] = {"1:ACTIVE", NULL};
    char root[256], out[DG_OUT];
    char *env[] = {"UCX_TLS=rc,cuda_copy", "UCX_NET_DEVICES=mlx5_0:1", NULL};

    XT_ASSERT(dg_root(root, sizeof(root)) == 0);
    /* mlx5_0 and the GPU share the switch port 0000:00:01.0. */
    XT_ASSERT(dg_nic(root, "mlx5_0",
                     "pci0000:00/0000:00:01.0/0000:01:00.0/0000:1a:00.0",
                     up) == 0);
    XT_ASSERT(dg_nic(root, "mlx5_1",
                     "pci0000:80/0000:80:01.0/0000:81:00.0/0000:9a:00.0",
                     up) == 0);
    XT_ASSERT(
        dg_gpu(root, "pci0000:00/0000:00:01.0/0000:01:00.0/0000:1b:00.0") == 0);
    nxl__kv_ucx_diag(root, env, out, sizeof(out));
    dg_rm(root);
    if (strstr(out, "Recommended: UCX_NET_DEVICES=mlx5_0:1\n") == NULL ||
        strstr(out, "mlx5_0:1 (GPU-affine)") == NULL ||
        strstr(out, "UCX_TLS=rc,cuda_copy\n") == NULL ||
        strstr(out, "UCX_NET_DEVICES=mlx5_0:1\n") == NULL) {
        XT_FAILF("unexpected diagnostics:\n%s", out);
    }
    return 0;
}

static int
t_all_affine_means_all(void)
{
    static const char *const up[] = {"1:ACTIVE", "2:ACTIVE", NULL};
    char root[256], out[DG_OUT];
    char *env[] = {NULL};

    XT_ASSERT(dg_root(root, sizeof(root)) == 0);
    XT_ASSERT(dg_nic(root, "mlx5_0",
                     "pci0000:00/0000:00:01.0/0000:01:00.0/0000:1a:00.0",
                     up) == 0);
    XT_ASSERT(
        dg_gpu(root, "pci0000:00/0000:00:01.0/0000:01:00.0/0000:1b:00.0") == 0);
    nxl__kv_ucx_diag(root, env, out, sizeof(out));
    dg_rm(root);
    /* Every port is affine: not a strict subset, so all are recommended. */
    if (strstr(out, "Recommended: UCX_NET_DEVICES=mlx5_0:1,mlx5_0:2\n") ==
        NULL) {
        XT_FAILF("unexpected diagnostics:\n%s", out);
    }
    return 0;
}

static int
t_no_active_ports(void)
{
    static const char *const down[] = {"1:DOWN", NULL};
    char root[256], out[DG_OUT];
    char *env[] = {"UCX_TLS=rc,cuda_copy", NULL};

    XT_ASSERT(dg_root(root, sizeof(root)) == 0);
    XT_ASSERT(dg_nic(root, "mlx5_0", "pci0000:00/0000:00:01.0/0000:1a:00.0",
                     down) == 0);
    nxl__kv_ucx_diag(root, env, out, sizeof(out));
    dg_rm(root);
    if (strstr(out, "No active RDMA ports") == NULL ||
        strstr(out, "UCX_TLS=rc,cuda_copy\n") == NULL ||
        strstr(out, "Recommended") != NULL) {
        XT_FAILF("unexpected diagnostics:\n%s", out);
    }
    /* No sysfs at all, and a tiny buffer: still terminated. */
    XT_ASSERT(nxl__kv_ucx_diag("/nonexistent", env, out, 8) == 7);
    XT_ASSERT_EQ(strlen(out), 7);
    return 0;
}

static int
t_is_pci_bdf(void)
{
    XT_ASSERT(nxl__kv_is_pci_bdf("0000:3b:00.0"));
    XT_ASSERT(nxl__kv_is_pci_bdf("0000:AF:1f.7"));
    XT_ASSERT(!nxl__kv_is_pci_bdf("pci0000:00"));
    XT_ASSERT(!nxl__kv_is_pci_bdf("ports"));
    XT_ASSERT(!nxl__kv_is_pci_bdf("mlx5_0"));
    XT_ASSERT(!nxl__kv_is_pci_bdf("0000:3b:00.00"));
    XT_ASSERT(!nxl__kv_is_pci_bdf("0000-3b:00.0"));
    return 0;
}

/* The public entry reads the real /sys and the real environment. */
static int
t_public_entry(void)
{
    char out[DG_OUT];
    size_t n;

    setenv("UCX_TLS", "tcp", 1);
    n = nxl_kv_ucx_diagnostics(out, sizeof(out));
    XT_ASSERT(n > 0 && n == strlen(out));
    XT_ASSERT(strstr(out, "UCX_TLS=tcp\n") != NULL);
    XT_ASSERT_EQ(nxl_kv_ucx_diagnostics(NULL, 10), 0);
    return 0;
}

/* A UCX backend that cannot start logs the diagnostics beside the error. */
static int
t_logged_on_ucx_failure(void)
{
    static const nxl_param_t bad[] = {
        {"engine_config", "TLS=no_such_transport"}};
    const nxl_params_t ps = {bad, 1};
    char path[128], log[8192];
    nxl_kv_agent_t *a;
    nxl_plugin_info_t info;
    nxl_status_t st;
    FILE *f;
    size_t n;
    int saved;

    XT_SKIP_IF(nxl_plugin_info("UCX", &info) != NXL_OK,
               "UCX backend not built");
    XT_ASSERT_OK(nxl_kv_agent_create("diag", NULL, &a));
    snprintf(path, sizeof(path), "/tmp/nxl-diag-log-%d", (int)getpid());
    f = fopen(path, "w+");
    XT_ASSERT(f != NULL);
    fflush(stderr);
    saved = dup(2);
    XT_ASSERT(saved >= 0 && dup2(fileno(f), 2) == 2);
    st = nxl_kv_agent_add_backend(a, "ucx", &ps);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    XT_ASSERT(st < 0);
    XT_ASSERT(
        strncmp(nxl_last_error(), "Failed to create nixl backend: ", 31) == 0);
    rewind(f);
    n = fread(log, 1, sizeof(log) - 1, f);
    log[n] = '\0';
    fclose(f);
    unlink(path);
    if (strstr(log, "--- UCX_NET_DEVICES diagnostics ---") == NULL) {
        XT_FAILF("diagnostics not logged; log was:\n%s", log);
    }
    XT_ASSERT(!nxl_kv_agent_has_backend(a, "UCX"));
    nxl_kv_agent_destroy(a);
    return 0;
}

const xt_suite xt_suite_kv_diag = {
    .name = "kv_diag",
    .cases =
        (const xt_case[]){
            {"natural_order_and_down", t_natural_order_and_down},
            {"affine_subset", t_affine_subset},
            {"all_affine_means_all", t_all_affine_means_all},
            {"no_active_ports", t_no_active_ports},
            {"is_pci_bdf", t_is_pci_bdf},
            {"public_entry", t_public_entry},
            {"logged_on_ucx_failure", t_logged_on_ucx_failure},
            {NULL, NULL},
        },
};
