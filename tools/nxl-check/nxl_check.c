/*
 * nxl_check.c - the pre-deployment check an operator runs on each host
 * before starting workers: one line per item with ok, warn or fail, the
 * reason and the fix; --json for machines; exit status 1 when an item
 * fails (warnings do not fail).
 *
 *   nxl-check [--json] [--port N] [--help]
 *
 * Items: ptrace scope and cross-memory attach (tried between two sibling
 * processes), an SHM transfer between two processes, RLIMIT_MEMLOCK,
 * /dev/shm, huge pages, io_uring (through the POSIX backend), UCX (a
 * backend started, its version), network interfaces and RDMA ports with
 * the UCX_NET_DEVICES recommendation, the CUDA driver and GPU/NIC NUMA
 * affinity, the side-channel port, etcd endpoints, the clock.
 */
#include <nxl/nxl.h>
/* nxl_kv_ucx_diagnostics is experimental (nxl_kv.h). */
#define NXL_KV_EXPERIMENTAL 1
#include <nxl/nxl_kv.h>
#include <nxl/nxl_memkind.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/timex.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef NXL_CHECK_HAVE_UCX
#include <ucp/api/ucp.h>
#endif

enum { NC_OK, NC_WARN, NC_FAIL, NC_INFO };
static const char *const nc_level[] = {"ok", "warn", "fail", "info"};

static int nc_json, nc_first = 1, nc_failed;

/* nc_json_str prints s as a JSON string. */
static void
nc_json_str(const char *s)
{
    putchar('"');
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\') {
            printf("\\%c", *s);
        } else if ((unsigned char)*s < 0x20) {
            printf("\\u%04x", (unsigned char)*s);
        } else {
            putchar(*s);
        }
    }
    putchar('"');
}

/* nc_item reports one item: its level, a reason and (may be NULL) the fix. */
static void nc_item(int level, const char *item, const char *fix,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
nc_item(int level, const char *item, const char *fix, const char *fmt, ...)
{
    char reason[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    nc_failed |= level == NC_FAIL;
    if (nc_json) {
        printf("%s\n  {\"item\": ", nc_first ? "" : ",");
        nc_json_str(item);
        printf(", \"status\": \"%s\", \"reason\": ", nc_level[level]);
        nc_json_str(reason);
        printf(", \"fix\": ");
        nc_json_str(fix ? fix : "");
        printf("}");
    } else {
        printf("%-4s  %-16s %s\n", nc_level[level], item, reason);
        if (fix != NULL && level != NC_OK && level != NC_INFO) {
            printf("      %-16s fix: %s\n", "", fix);
        }
    }
    nc_first = 0;
    fflush(stdout);
}

/* nc_read_line reads the first line of path into buf; 0 on success. */
static int
nc_read_line(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        return -1;
    }
    if (fgets(buf, (int)cap, f) == NULL) {
        fclose(f);
        return -1;
    }
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    return 0;
}

/* nc_ptrace: the Yama scope, and process_vm_readv between two siblings
 * (what SHM does between unrelated worker processes). */
static void
nc_ptrace(void)
{
    char scope[32] = "";
    static volatile uint64_t secret = 0x6e786c2d63686b31ull;
    int pfd[2], rc, st;
    uint64_t got = 0;
    pid_t owner, reader;

    if (nc_read_line("/proc/sys/kernel/yama/ptrace_scope", scope,
                     sizeof(scope)) == 0) {
        nc_item(atoi(scope) == 0 ? NC_OK : NC_WARN, "ptrace_scope",
                "sysctl -w kernel.yama.ptrace_scope=0 (or give the workers "
                "CAP_SYS_PTRACE)",
                "kernel.yama.ptrace_scope = %s%s", scope,
                atoi(scope) == 0 ? ""
                                 : ": cross-memory attach (SHM) works "
                                   "only towards descendants");
    } else {
        nc_item(NC_OK, "ptrace_scope", NULL, "no Yama LSM: no extra limit");
    }
    if (pipe(pfd) != 0) {
        nc_item(NC_FAIL, "cma", NULL, "pipe: %s", strerror(errno));
        return;
    }
    owner = fork();
    if (owner == 0) {
        close(pfd[0]);
        close(pfd[1]);
        for (;;) {
            pause();
        }
    }
    reader = fork();
    if (reader == 0) {
        struct iovec l = {&got, sizeof(got)};
        struct iovec r = {(void *)&secret, sizeof(secret)};

        close(pfd[0]);
        rc = process_vm_readv(owner, &l, 1, &r, 1, 0) == (ssize_t)sizeof(got)
                 ? (got == secret ? 0 : 1)
                 : errno;
        (void)!write(pfd[1], &rc, sizeof(rc));
        _exit(0);
    }
    close(pfd[1]);
    rc = -1;
    if (reader > 0 && read(pfd[0], &rc, sizeof(rc)) != (ssize_t)sizeof(rc)) {
        rc = -1;
    }
    close(pfd[0]);
    if (owner > 0) {
        kill(owner, SIGKILL);
        waitpid(owner, &st, 0);
    }
    if (reader > 0) {
        waitpid(reader, &st, 0);
    }
    if (rc == 0) {
        nc_item(NC_OK, "cma", NULL,
                "process_vm_readv works between sibling processes");
    } else {
        nc_item(NC_FAIL, "cma",
                "set kernel.yama.ptrace_scope=0, run workers as one user, "
                "or give them CAP_SYS_PTRACE; in containers allow "
                "process_vm_readv in the seccomp profile",
                "process_vm_readv between sibling processes failed: %s",
                rc > 1 ? strerror(rc) : "wrong bytes or no answer");
    }
}

/* nc_shm runs one checked 1 MiB SHM READ from a child agent's memory. */
static void
nc_shm(void)
{
    const size_t len = 1u << 20;
    nxl_agent_t *a = NULL;
    nxl_blob_t md = {0};
    nxl_xfer_t *x = NULL;
    nxl_status_t st = NXL_OK;
    uint8_t *mine, *theirs;
    int pfd[2], ok = 0, status;
    uint64_t n = 0, addr = 0;
    size_t i;
    pid_t pid;
    char *blob = NULL;

    mine = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                -1, 0);
    if (mine == MAP_FAILED || pipe(pfd) != 0) {
        nc_item(NC_FAIL, "shm_transfer", NULL, "setup: %s", strerror(errno));
        return;
    }
    pid = fork();
    if (pid == 0) {
        nxl_desc_t d;
        nxl_dlist_t dl = {NXL_DRAM, &d, 1};

        close(pfd[0]);
        theirs = mmap(NULL, len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        for (i = 0; theirs != MAP_FAILED && i < len; i++) {
            theirs[i] = (uint8_t)(i * 7 + 3);
        }
        d = (nxl_desc_t){(uintptr_t)theirs, len, 0};
        if (theirs == MAP_FAILED ||
            nxl_agent_create("nxl-check-target", NULL, &a) != NXL_OK ||
            nxl_backend_create(a, "SHM", NULL, NULL) != NXL_OK ||
            nxl_mem_register(a, &dl, NULL) != NXL_OK ||
            nxl_md_local(a, &md) != NXL_OK) {
            _exit(1);
        }
        n = md.len;
        addr = (uintptr_t)theirs;
        if (write(pfd[1], &addr, 8) != 8 || write(pfd[1], &n, 8) != 8 ||
            write(pfd[1], md.data, md.len) != (ssize_t)md.len) {
            _exit(1);
        }
        for (;;) {
            pause();
        }
    }
    close(pfd[1]);
    if (pid > 0 && read(pfd[0], &addr, 8) == 8 && read(pfd[0], &n, 8) == 8 &&
        n < (1u << 20) && (blob = malloc(n)) != NULL) {
        size_t got = 0;
        ssize_t r;

        while (got < n && (r = read(pfd[0], blob + got, n - got)) > 0) {
            got += (size_t)r;
        }
        if (got == n) {
            nxl_desc_t l = {(uintptr_t)mine, len, 0}, r2 = {addr, len, 0};
            nxl_dlist_t ll = {NXL_DRAM, &l, 1}, rl = {NXL_DRAM, &r2, 1};

            st = nxl_agent_create("nxl-check", NULL, &a);
            if (st == NXL_OK) {
                st = nxl_backend_create(a, "SHM", NULL, NULL);
            }
            if (st == NXL_OK) {
                st = nxl_mem_register(a, &ll, NULL);
            }
            if (st == NXL_OK) {
                st = nxl_md_load(a, blob, n, NULL, 0);
            }
            if (st == NXL_OK) {
                st = nxl_xfer_create(a, NXL_READ, &ll, &rl, "nxl-check-target",
                                     NULL, &x);
            }
            if (st == NXL_OK) {
                st = nxl_xfer_post(x, NULL);
                if (st == NXL_IN_PROG) {
                    st = nxl_xfer_wait(x, 5000);
                }
            }
            ok = st == NXL_OK;
            for (i = 0; ok && i < len; i++) {
                ok = mine[i] == (uint8_t)(i * 7 + 3);
            }
        }
    }
    close(pfd[0]);
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    if (ok) {
        nc_item(NC_OK, "shm_transfer", NULL,
                "a 1 MiB SHM READ from another process arrived intact");
    } else {
        nc_item(NC_FAIL, "shm_transfer",
                "see the cma item above; NXL_LOG_LEVEL=debug shows more",
                "a 1 MiB SHM READ between two processes failed: %s",
                st != NXL_OK ? nxl_last_error() : "the bytes differ");
    }
    nxl_xfer_release(x);
    nxl_agent_destroy(a);
    free(blob);
    munmap(mine, len);
}

/* nc_limits: locked memory, /dev/shm and huge pages. */
static void
nc_limits(void)
{
    struct statvfs vs;
    struct rlimit rl;
    char line[256], thp[128] = "";
    unsigned long total = 0, free_hp = 0;
    FILE *f;

    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
        if (rl.rlim_cur == RLIM_INFINITY) {
            nc_item(NC_OK, "memlock", NULL, "RLIMIT_MEMLOCK is unlimited");
        } else {
            nc_item(rl.rlim_cur >= (64ull << 20) ? NC_OK : NC_WARN, "memlock",
                    "ulimit -l unlimited (LimitMEMLOCK=infinity for systemd, "
                    "--ulimit memlock=-1 for docker)",
                    "RLIMIT_MEMLOCK is %llu KiB: pinned buffers and RDMA "
                    "registration need more",
                    (unsigned long long)rl.rlim_cur / 1024);
        }
    }
    if (statvfs("/dev/shm", &vs) == 0) {
        unsigned long long size = (unsigned long long)vs.f_blocks * vs.f_frsize;
        unsigned long long avail =
            (unsigned long long)vs.f_bavail * vs.f_frsize;

        nc_item(size >= (1ull << 30) ? NC_OK : NC_WARN, "dev_shm",
                "mount -o remount,size=8G /dev/shm (docker: --shm-size=8g)",
                "/dev/shm is %llu MiB, %llu MiB free (UCX's shared-memory "
                "transports live there)",
                size >> 20, avail >> 20);
    } else {
        nc_item(NC_WARN, "dev_shm", "mount a tmpfs on /dev/shm", "/dev/shm: %s",
                strerror(errno));
    }
    f = fopen("/proc/meminfo", "r");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        sscanf(line, "HugePages_Total: %lu", &total);
        sscanf(line, "HugePages_Free: %lu", &free_hp);
    }
    if (f != NULL) {
        fclose(f);
    }
    (void)nc_read_line("/sys/kernel/mm/transparent_hugepage/enabled", thp,
                       sizeof(thp));
    nc_item(NC_INFO, "hugepages", NULL,
            "%lu huge pages reserved (%lu free); transparent: %s", total,
            free_hp, thp[0] ? thp : "unknown");
}

/* nc_backend starts a backend of type with params on a scratch agent. */
static nxl_status_t
nc_backend(const char *type, const nxl_param_t *params, size_t n)
{
    nxl_params_t ps = {params, n};
    nxl_agent_t *a = NULL;
    nxl_status_t st;

    st = nxl_agent_create("nxl-check-probe", NULL, &a);
    if (st == NXL_OK) {
        st = nxl_backend_create(a, type, n ? &ps : NULL, NULL);
    }
    nxl_agent_destroy(a);
    return st;
}

/* nc_backends: io_uring through POSIX, and UCX. */
static void
nc_backends(void)
{
    static const nxl_param_t uring[] = {{"api", "uring"}};
    char disabled[16] = "";
    const char *names[32];
    size_t n = 0, i;
    int have_ucx = 0, have_posix = 0;
    nxl_status_t st;

    nxl_plugin_names(names, 32, &n);
    for (i = 0; i < n && i < 32; i++) {
        have_ucx |= strcmp(names[i], "UCX") == 0;
        have_posix |= strcmp(names[i], "POSIX") == 0;
    }
    if (have_posix) {
        st = nc_backend("POSIX", uring, 1);
        (void)nc_read_line("/proc/sys/kernel/io_uring_disabled", disabled,
                           sizeof(disabled));
        if (st == NXL_OK) {
            nc_item(NC_OK, "io_uring", NULL,
                    "the POSIX backend runs on io_uring");
        } else {
            nc_item(NC_WARN, "io_uring",
                    "sysctl -w kernel.io_uring_disabled=0, or allow "
                    "io_uring_setup in the seccomp profile (POSIX then uses "
                    "its thread pool, slower for small I/O)",
                    "io_uring unavailable (%s%s%s)", nxl_last_error(),
                    disabled[0] ? "; io_uring_disabled=" : "", disabled);
        }
    }
    if (!have_ucx) {
        nc_item(NC_WARN, "ucx", "install libucx-dev and rebuild NXL",
                "this NXL was built without the UCX backend");
        return;
    }
    st = nc_backend("UCX", NULL, 0);
#ifdef NXL_CHECK_HAVE_UCX
    {
        unsigned maj = 0, min = 0, rel = 0;

        ucp_get_version(&maj, &min, &rel);
        if (st == NXL_OK) {
            nc_item(NC_OK, "ucx", NULL, "UCX %u.%u.%u starts (UCX_TLS=%s)", maj,
                    min, rel,
                    getenv("UCX_TLS") ? getenv("UCX_TLS") : "unset: all");
        } else {
            nc_item(NC_FAIL, "ucx",
                    "check UCX_TLS / UCX_NET_DEVICES; ucx_info -d lists the "
                    "transports",
                    "UCX %u.%u.%u does not start: %s", maj, min, rel,
                    nxl_last_error());
        }
    }
#else
    if (st == NXL_OK) {
        nc_item(NC_OK, "ucx", NULL, "the UCX backend starts");
    } else {
        nc_item(NC_FAIL, "ucx", "check UCX_TLS / UCX_NET_DEVICES",
                "the UCX backend does not start: %s", nxl_last_error());
    }
#endif
}

/* nc_network: interfaces with addresses, and the RDMA diagnostics. */
static void
nc_network(void)
{
    struct ifaddrs *ifa = NULL, *p;
    char list[1024] = "", addr[INET6_ADDRSTRLEN], diag[4096];
    size_t used = 0, k;

    if (getifaddrs(&ifa) == 0) {
        for (p = ifa; p != NULL; p = p->ifa_next) {
            if (p->ifa_addr == NULL || !(p->ifa_flags & IFF_UP) ||
                (p->ifa_addr->sa_family != AF_INET &&
                 p->ifa_addr->sa_family != AF_INET6)) {
                continue;
            }
            if (getnameinfo(p->ifa_addr,
                            p->ifa_addr->sa_family == AF_INET
                                ? sizeof(struct sockaddr_in)
                                : sizeof(struct sockaddr_in6),
                            addr, sizeof(addr), NULL, 0, NI_NUMERICHOST) != 0) {
                continue;
            }
            used += (size_t)snprintf(
                list + used, used < sizeof(list) ? sizeof(list) - used : 0,
                "%s%s=%s", used ? " " : "", p->ifa_name, addr);
        }
        freeifaddrs(ifa);
    }
    nc_item(NC_INFO, "interfaces", NULL, "%s", list[0] ? list : "none up");
    nxl_kv_ucx_diagnostics(diag, sizeof(diag));
    for (k = 0; diag[k] != '\0'; k++) {
        if (diag[k] == '\n') {
            diag[k] = ';';
        }
    }
    nc_item(strstr(diag, "No active RDMA ports") ? NC_INFO : NC_OK, "rdma",
            NULL, "%s", diag);
}

/* nc_numa_of reads a PCI device's NUMA node (-1 when unknown). */
static int
nc_numa_of(const char *dir)
{
    char path[600], buf[32];

    if ((size_t)snprintf(path, sizeof(path), "%s/numa_node", dir) >=
        sizeof(path)) {
        return -1;
    }
    return nc_read_line(path, buf, sizeof(buf)) == 0 ? atoi(buf) : -1;
}

/* nc_gpu: the CUDA driver, and GPU/NIC NUMA affinity from sysfs. */
static void
nc_gpu(void)
{
    const nxl_memkind_ops_t *cuda = nxl_memkind_cuda();
    char path[512], cls[32], vendor[32], gpus[512] = "", nics[512] = "";
    struct dirent *e;
    size_t gu = 0, nu = 0;
    int count = 0, gpu_nodes = 0, nic_nodes = 0, same = 0, node;
    unsigned gmask = 0, nmask = 0;
    DIR *d;

    if (cuda == NULL || cuda->probe == NULL || cuda->probe() != NXL_OK) {
        nc_item(NC_INFO, "cuda", NULL, "%s", nxl_last_error());
    } else {
        if (cuda->device_count != NULL) {
            (void)cuda->device_count(&count);
        }
        nc_item(NC_OK, "cuda", NULL, "CUDA driver loaded, %d device%s", count,
                count == 1 ? "" : "s");
    }
    d = opendir("/sys/bus/pci/devices");
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/class",
                 e->d_name);
        if (nc_read_line(path, cls, sizeof(cls)) != 0) {
            continue;
        }
        snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor",
                 e->d_name);
        if (nc_read_line(path, vendor, sizeof(vendor)) != 0) {
            continue;
        }
        snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", e->d_name);
        node = nc_numa_of(path);
        if (strcmp(vendor, "0x10de") == 0 && (strncmp(cls, "0x0300", 6) == 0 ||
                                              strncmp(cls, "0x0302", 6) == 0)) {
            gpu_nodes++;
            gmask |= node >= 0 && node < 32 ? 1u << node : 0;
            gu += (size_t)snprintf(gpus + gu,
                                   gu < sizeof(gpus) ? sizeof(gpus) - gu : 0,
                                   "%s%s@%d", gu ? " " : "", e->d_name, node);
        } else if (strncmp(cls, "0x0207", 6) == 0 ||
                   strncmp(cls, "0x0200", 6) == 0) {
            nic_nodes++;
            nmask |= node >= 0 && node < 32 ? 1u << node : 0;
            nu += (size_t)snprintf(nics + nu,
                                   nu < sizeof(nics) ? sizeof(nics) - nu : 0,
                                   "%s%s@%d", nu ? " " : "", e->d_name, node);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    if (gpu_nodes == 0) {
        nc_item(NC_INFO, "gpu_nic_numa", NULL,
                "no NVIDIA GPU on the PCI bus (NICs: %s)",
                nics[0] ? nics : "none");
        return;
    }
    same = (gmask & nmask) == gmask || gmask == 0;
    nc_item(same ? NC_OK : NC_WARN, "gpu_nic_numa",
            "pin each worker to its GPU's NUMA node and pick a NIC on the same "
            "node (UCX_NET_DEVICES, see the rdma item)",
            "GPUs (bdf@numa): %s; NICs: %s", gpus, nics[0] ? nics : "none");
}

/* nc_port: can the side channel bind its port on every address? */
static void
nc_port(uint16_t port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_ANY)};
    int fd, one = 1;

    if (port == 0) {
        nc_item(NC_INFO, "sc_port", NULL, "not checked (--port 0)");
        return;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd >= 0 && bind(fd, (const struct sockaddr *)&sin, sizeof(sin)) == 0) {
        nc_item(NC_OK, "sc_port", NULL, "TCP port %u is free", port);
    } else {
        nc_item(NC_FAIL, "sc_port",
                "stop what holds it (ss -ltnp), or give the agents another "
                "listen_port",
                "TCP port %u cannot be bound: %s", port, strerror(errno));
    }
    if (fd >= 0) {
        close(fd);
    }
}

/* nc_http_get sends "GET path" to host:port and reads the status line;
 * returns the HTTP status or -errno. */
static int
nc_http_get(const char *host, const char *port, const char *path, char *body,
            size_t cap)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    char req[512], buf[2048];
    struct pollfd pfd;
    ssize_t n, got = 0;
    int fd = -1, status = -ETIMEDOUT, rc;

    if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL) {
        return -EHOSTUNREACH;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    rc = fd < 0 ? -1 : connect(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (fd < 0 || (rc != 0 && errno != EINPROGRESS)) {
        status = -errno;
        goto out;
    }
    pfd = (struct pollfd){.fd = fd, .events = POLLOUT};
    if (poll(&pfd, 1, 2000) != 1) {
        goto out;
    }
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n", path,
             host);
    if (send(fd, req, strlen(req), MSG_NOSIGNAL) < 0) {
        status = -errno;
        goto out;
    }
    for (;;) {
        pfd = (struct pollfd){.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 2000) != 1) {
            break;
        }
        n = recv(fd, buf + got, sizeof(buf) - 1 - (size_t)got, 0);
        if (n <= 0) {
            break;
        }
        got += n;
        if ((size_t)got >= sizeof(buf) - 1) {
            break;
        }
    }
    buf[got] = '\0';
    if (got > 12 && sscanf(buf, "HTTP/%*s %d", &status) == 1) {
        char *b = strstr(buf, "\r\n\r\n");

        snprintf(body, cap, "%s", b ? b + 4 : "");
    } else if (got > 0) {
        status = -EPROTO;
    }
out:
    if (fd >= 0) {
        close(fd);
    }
    return status;
}

/* nc_etcd: every endpoint of NXL_ETCD_ENDPOINTS / NIXL_ETCD_ENDPOINTS. */
static void
nc_etcd(void)
{
    const char *env = getenv("NXL_ETCD_ENDPOINTS");
    char list[1024], *save = NULL, *ep, host[256], port[16], body[256];
    int status;

    if (env == NULL) {
        env = getenv("NIXL_ETCD_ENDPOINTS");
    }
    if (env == NULL || env[0] == '\0') {
        nc_item(NC_INFO, "etcd", NULL,
                "NXL_ETCD_ENDPOINTS is not set (metadata by side channel "
                "only)");
        return;
    }
    snprintf(list, sizeof(list), "%s", env);
    for (ep = strtok_r(list, ",", &save); ep != NULL;
         ep = strtok_r(NULL, ",", &save)) {
        const char *hp = strstr(ep, "://") ? strstr(ep, "://") + 3 : ep;

        if (sscanf(hp, "%255[^:/]:%15[0-9]", host, port) != 2) {
            snprintf(port, sizeof(port), "2379");
            sscanf(hp, "%255[^:/]", host);
        }
        body[0] = '\0';
        status = nc_http_get(host, port, "/version", body, sizeof(body));
        body[strcspn(body, "\r\n")] = '\0';
        if (status == 200) {
            nc_item(NC_OK, "etcd", NULL, "%s answers: %s", ep, body);
        } else {
            nc_item(NC_FAIL, "etcd",
                    "start etcd there, fix NXL_ETCD_ENDPOINTS, or open the "
                    "port",
                    "%s: %s", ep,
                    status < 0 ? strerror(-status) : "unexpected HTTP status");
        }
    }
}

/* nc_clock: is the clock disciplined (telemetry start times compare
 * across hosts)? */
static void
nc_clock(void)
{
    struct timex tx = {0};
    int state = adjtimex(&tx);

    if (state < 0) {
        nc_item(NC_WARN, "clock", NULL, "adjtimex: %s", strerror(errno));
    } else if (state == TIME_ERROR || (tx.status & STA_UNSYNC)) {
        nc_item(NC_WARN, "clock",
                "run an NTP or PTP client (chrony, systemd-timesyncd)",
                "the clock is not synchronized: transfer start times "
                "(telemetry) are not comparable across hosts");
    } else {
        nc_item(NC_OK, "clock", NULL, "synchronized (estimated error %ld us)",
                tx.esterror);
    }
}

int
main(int argc, char **argv)
{
    unsigned long port = 8888;
    int k;

    for (k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--json") == 0) {
            nc_json = 1;
        } else if (strcmp(argv[k], "--port") == 0 && k + 1 < argc) {
            port = strtoul(argv[++k], NULL, 10);
        } else {
            printf("usage: nxl-check [--json] [--port N (0: skip that item)]\n"
                   "Checks this host before NXL workers start on it: ptrace "
                   "scope and cross-memory\nattach, an SHM transfer, locked "
                   "memory, /dev/shm, huge pages, io_uring, UCX,\nnetwork "
                   "and RDMA ports (UCX_NET_DEVICES), CUDA and GPU/NIC NUMA, "
                   "the side-channel\nport (default 8888), etcd endpoints "
                   "(NXL_ETCD_ENDPOINTS) and the clock. One line\nper item "
                   "(ok, warn, fail, info) with the reason and a fix; exits 1 "
                   "when an item\nfails.\n");
            return strcmp(argv[k], "--help") == 0 ? 0 : 2;
        }
    }
    if (port > 65535) {
        fprintf(stderr, "nxl-check: --port must be 0..65535 (0: skip)\n");
        return 2;
    }
    if (nc_json) {
        printf("{\"version\": \"%s\", \"items\": [", nxl_version());
    } else {
        printf("nxl-check (NXL %s)\n", nxl_version());
    }
    /* Forks first: UCX state is not fork-safe. */
    nc_ptrace();
    nc_shm();
    nc_limits();
    nc_port((uint16_t)port);
    nc_etcd();
    nc_clock();
    nc_network();
    nc_gpu();
    nc_backends();
    if (nc_json) {
        printf("\n], \"failed\": %s}\n", nc_failed ? "true" : "false");
    }
    return nc_failed ? 1 : 0;
}
