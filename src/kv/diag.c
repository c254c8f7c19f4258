/*
 * diag.c - UCX_NET_DEVICES diagnostics (Dynamo's nixl/diagnostics.rs):
 * what to tell a user whose UCX backend failed to start on an RDMA host.
 *
 * Read-only sysfs inspection: the active InfiniBand/RoCE ports, and which
 * of them sit under the same PCIe switch as an NVIDIA GPU, turned into a
 * recommended UCX_NET_DEVICES value. The sysfs root is a parameter so the
 * tests can build a fake tree.
 */
#include "kv.h"

#include <ctype.h>
#include <dirent.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Bounds on what one scan keeps: ports and GPUs beyond are ignored. */
#define DIAG_MAX_PORTS 256
#define DIAG_MAX_GPUS 64
#define DIAG_NAME_MAX 64

typedef struct diag_port {
    char dev[DIAG_NAME_MAX];
    unsigned port;
    char path[PATH_MAX]; /* canonical PCI path of the device, or "" */
} diag_port_t;

/* nxl__kv_is_pci_bdf reports whether s is a PCI address "dddd:bb:dd.f"
 * (hex digits). */
int
nxl__kv_is_pci_bdf(const char *s)
{
    static const char pat[] = "xxxx:xx:xx.x";
    size_t i;

    if (strlen(s) != sizeof(pat) - 1) {
        return 0;
    }
    for (i = 0; pat[i] != '\0'; i++) {
        if (pat[i] == 'x' ? !isxdigit((unsigned char)s[i]) : s[i] != pat[i]) {
            return 0;
        }
    }
    return 1;
}

/* natural_cmp orders names with embedded numbers by value ("mlx5_2" <
 * "mlx5_10"). */
static int
natural_cmp(const char *a, const char *b)
{
    while (*a != '\0' && *b != '\0') {
        if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
            char *ea, *eb;
            unsigned long long x = strtoull(a, &ea, 10);
            unsigned long long y = strtoull(b, &eb, 10);

            if (x != y) {
                return x < y ? -1 : 1;
            }
            a = ea;
            b = eb;
            continue;
        }
        if (*a != *b) {
            return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
        }
        a++;
        b++;
    }
    return (*a != '\0') - (*b != '\0');
}

/* port_cmp orders ports by device (naturally), then port number. */
static int
port_cmp(const void *x, const void *y)
{
    const diag_port_t *a = x, *b = y;
    int c = natural_cmp(a->dev, b->dev);

    if (c != 0) {
        return c;
    }
    return a->port < b->port ? -1 : (a->port > b->port);
}

/* path_fmt formats a path into buf (PATH_MAX bytes). Returns 0, or -1
 * when it does not fit (the entry is then skipped). */
static int path_fmt(char *buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
path_fmt(char *buf, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, PATH_MAX, fmt, ap);
    va_end(ap);
    return n < 0 || n >= PATH_MAX ? -1 : 0;
}

/* read_line reads the first line of a small file into buf. Returns 0 or
 * -1. */
static int
read_line(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    size_t n;

    if (f == NULL) {
        return -1;
    }
    if (fgets(buf, (int)cap, f) == NULL) {
        fclose(f);
        return -1;
    }
    fclose(f);
    n = strcspn(buf, "\r\n");
    buf[n] = '\0';
    return 0;
}

/* bdf_prefix_shared reports whether canonical paths a and b share at least
 * one leading PCI address segment, ignoring each path's last segment (the
 * device itself): they then hang under the same PCIe switch or root
 * port. */
static int
bdf_prefix_shared(const char *a, const char *b)
{
    char sa[PATH_MAX], sb[PATH_MAX];
    char *la, *lb, *pa, *pb, *ta, *tb;
    int shared = 0;

    snprintf(sa, sizeof(sa), "%s", a);
    snprintf(sb, sizeof(sb), "%s", b);
    la = strrchr(sa, '/');
    lb = strrchr(sb, '/');
    if (la == NULL || lb == NULL) {
        return 0;
    }
    *la = '\0';
    *lb = '\0';
    ta = strtok_r(sa, "/", &pa);
    tb = strtok_r(sb, "/", &pb);
    /* Skip to the first PCI address of each path. */
    while (ta != NULL && !nxl__kv_is_pci_bdf(ta)) {
        ta = strtok_r(NULL, "/", &pa);
    }
    while (tb != NULL && !nxl__kv_is_pci_bdf(tb)) {
        tb = strtok_r(NULL, "/", &pb);
    }
    if (ta != NULL && tb != NULL && strcmp(ta, tb) == 0) {
        shared = 1;
    }
    return shared;
}

/* scan_ports fills ports with the ACTIVE ports under root/class/infiniband,
 * sorted. Returns the count. */
static size_t
scan_ports(const char *root, diag_port_t *ports, size_t cap)
{
    char path[PATH_MAX], state[64], real[PATH_MAX];
    struct dirent *d, *p;
    DIR *dd, *pd;
    size_t n = 0;

    if (path_fmt(path, "%s/class/infiniband", root) != 0 ||
        (dd = opendir(path)) == NULL) {
        return 0;
    }
    while ((d = readdir(dd)) != NULL && n < cap) {
        if (d->d_name[0] == '.' || strlen(d->d_name) >= DIAG_NAME_MAX) {
            continue;
        }
        if (path_fmt(path, "%s/class/infiniband/%s/ports", root, d->d_name) !=
                0 ||
            (pd = opendir(path)) == NULL) {
            continue;
        }
        while ((p = readdir(pd)) != NULL && n < cap) {
            char *end;
            unsigned long num = strtoul(p->d_name, &end, 10);

            if (p->d_name[0] == '.' || *end != '\0' || end == p->d_name ||
                num > UINT_MAX) {
                continue;
            }
            if (path_fmt(path, "%s/class/infiniband/%s/ports/%s/state", root,
                         d->d_name, p->d_name) != 0 ||
                read_line(path, state, sizeof(state)) != 0) {
                continue;
            }
            /* "4: ACTIVE" in real sysfs; any case. */
            for (end = state; *end != '\0'; end++) {
                *end = (char)toupper((unsigned char)*end);
            }
            if (strstr(state, "ACTIVE") == NULL) {
                continue;
            }
            /* d_name is shorter than DIAG_NAME_MAX (checked above). */
            memcpy(ports[n].dev, d->d_name, strlen(d->d_name) + 1);
            ports[n].port = (unsigned)num;
            if (path_fmt(path, "%s/class/infiniband/%s/device", root,
                         d->d_name) == 0 &&
                realpath(path, real) != NULL) {
                snprintf(ports[n].path, sizeof(ports[n].path), "%s", real);
            } else {
                ports[n].path[0] = '\0';
            }
            n++;
        }
        closedir(pd);
    }
    closedir(dd);
    qsort(ports, n, sizeof(*ports), port_cmp);
    return n;
}

/* scan_gpus writes the canonical paths of NVIDIA display-class devices
 * (vendor 0x10de, class 0x03xxxx) under root/bus/pci/devices. Returns the
 * count. */
static size_t
scan_gpus(const char *root, char (*gpus)[PATH_MAX], size_t cap)
{
    char path[PATH_MAX], val[64];
    struct dirent *d;
    DIR *dd;
    size_t n = 0;

    if (path_fmt(path, "%s/bus/pci/devices", root) != 0 ||
        (dd = opendir(path)) == NULL) {
        return 0;
    }
    while ((d = readdir(dd)) != NULL && n < cap) {
        if (d->d_name[0] == '.') {
            continue;
        }
        if (path_fmt(path, "%s/bus/pci/devices/%s/vendor", root, d->d_name) !=
                0 ||
            read_line(path, val, sizeof(val)) != 0 ||
            strcasecmp(val, "0x10de") != 0) {
            continue;
        }
        if (path_fmt(path, "%s/bus/pci/devices/%s/class", root, d->d_name) !=
                0 ||
            read_line(path, val, sizeof(val)) != 0 ||
            strncasecmp(val, "0x03", 4) != 0) {
            continue;
        }
        if (path_fmt(path, "%s/bus/pci/devices/%s", root, d->d_name) == 0 &&
            realpath(path, gpus[n]) != NULL) {
            n++;
        }
    }
    closedir(dd);
    return n;
}

/* env_get finds name in envp (NULL-terminated "K=V" strings). */
static const char *
env_get(char *const *envp, const char *name)
{
    size_t len = strlen(name);

    for (; envp != NULL && *envp != NULL; envp++) {
        if (strncmp(*envp, name, len) == 0 && (*envp)[len] == '=') {
            return *envp + len + 1;
        }
    }
    return NULL;
}

/* nxl__kv_ucx_diag writes the diagnostics text for sysfs at root and the
 * environment envp into buf (cap bytes, NUL-terminated, truncated when
 * short). Returns the length written. Thread-safe. */
size_t
nxl__kv_ucx_diag(const char *root, char *const *envp, char *buf, size_t cap)
{
    static const char *const vars[] = {"UCX_NET_DEVICES", "UCX_TLS",
                                       "UCX_IB_ADDR_TYPE"};
    diag_port_t *ports = calloc(DIAG_MAX_PORTS, sizeof(*ports));
    char(*gpus)[PATH_MAX] = calloc(DIAG_MAX_GPUS, sizeof(*gpus));
    size_t np = 0, ng = 0, naff = 0, len = 0, i, j;
    unsigned char *aff = NULL;

    if (cap == 0) {
        free(ports);
        free(gpus);
        return 0;
    }
    buf[0] = '\0';
    nxl__text_addf(buf, cap, &len, "--- UCX_NET_DEVICES diagnostics ---\n");
    for (i = 0; i < NXL__ARRAY_SIZE(vars); i++) {
        const char *v = env_get(envp, vars[i]);

        nxl__text_addf(buf, cap, &len, "%s=%s\n", vars[i],
                       v != NULL ? v : "<unset>");
    }
    if (ports != NULL && gpus != NULL) {
        np = scan_ports(root, ports, DIAG_MAX_PORTS);
        ng = scan_gpus(root, gpus, DIAG_MAX_GPUS);
        aff = calloc(np ? np : 1, 1);
    }
    if (np == 0 || aff == NULL) {
        nxl__text_addf(buf, cap, &len,
                       "No active RDMA ports found under %s/class/infiniband: "
                       "UCX can only use TCP and shared memory here.\n",
                       root);
    } else {
        for (i = 0; i < np; i++) {
            for (j = 0; j < ng && !aff[i]; j++) {
                if (ports[i].path[0] != '\0' &&
                    bdf_prefix_shared(ports[i].path, gpus[j])) {
                    aff[i] = 1;
                }
            }
            naff += aff[i];
        }
        nxl__text_addf(buf, cap, &len, "Active RDMA ports:");
        for (i = 0; i < np; i++) {
            nxl__text_addf(buf, cap, &len, " %s:%u%s", ports[i].dev,
                           ports[i].port, aff[i] ? " (GPU-affine)" : "");
        }
        nxl__text_addf(buf, cap, &len, "\nRecommended: UCX_NET_DEVICES=");
        for (i = 0, j = 0; i < np; i++) {
            /* The affine subset when it is non-empty and smaller than the
             * active list; else every active port. */
            if (naff > 0 && naff < np && !aff[i]) {
                continue;
            }
            nxl__text_addf(buf, cap, &len, "%s%s:%u", j++ ? "," : "",
                           ports[i].dev, ports[i].port);
        }
        nxl__text_addf(buf, cap, &len, "\n");
    }
    nxl__text_addf(buf, cap, &len,
                   "See docs/backends/ucx.md for choosing "
                   "transports and devices.\n");
    free(aff);
    free(ports);
    free(gpus);
    return len;
}

/* nxl_kv_ucx_diagnostics: see nxl_kv.h. */
NXL_API size_t
nxl_kv_ucx_diagnostics(char *buf, size_t cap)
{
    extern char **environ;

    if (buf == NULL) {
        return 0;
    }
    return nxl__kv_ucx_diag("/sys", environ, buf, cap);
}
