/*
 * ucx_conninfo.c - the UCX backend's conn info: this process's identity
 * (pid, start time, namespaces, boot id, host, CMA probe address, engine
 * token), its encoding, the decoding of a peer's, and the pid liveness
 * test built on the start time.
 *
 * Conn info (little endian):
 *    0 u32 magic "NXLU"    4 u16 version 1     6 u16 flags (0)
 *    8 u32 pid            12 u32 zero         16 u64 starttime
 *   24 u64 pidns dev      32 u64 pidns ino    40 u64 probe address
 *   48 u64 engine token   56 40 bytes boot id (NUL padded)
 *   96 u8 host length, host bytes, u32 address length, worker address
 */
#include "ucx.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* Peers read this byte with process_vm_readv to learn whether cross-memory
 * attach to this process is permitted. */
static const uint8_t be_ucx_probe_byte = BE_UCX_PROBE_BYTE;

/* be_ucx_read_file reads up to cap - 1 bytes of path into buf (NUL
 * terminated). Returns the length or -1. */
static ssize_t
be_ucx_read_file(const char *path, char *buf, size_t cap)
{
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        return -1;
    }
    n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0) {
        return -1;
    }
    buf[n] = '\0';
    return n;
}

/* be_ucx_starttime reads field 22 of /proc/<pid>/stat (start time in
 * clock ticks since boot), which tells a process from a later one that
 * reuses its pid. */
int
be_ucx_starttime(pid_t pid, uint64_t *st_p)
{
    char path[64], buf[1024], *p, *tok, *save = NULL;
    int i;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (be_ucx_read_file(path, buf, sizeof(buf)) <= 0) {
        return -1;
    }
    p = strrchr(buf, ')');
    if (p == NULL) {
        return -1;
    }
    /* After ") ": state is field 3, starttime field 22. */
    for (i = 3, tok = strtok_r(p + 1, " ", &save); tok != NULL;
         i++, tok = strtok_r(NULL, " ", &save)) {
        if (i == 22) {
            *st_p = strtoull(tok, NULL, 10);
            return 0;
        }
    }
    return -1;
}

/* be_ucx_ident_init: pid, start time, pid namespace, boot id, host name,
 * probe address and a random engine token. */
nxl_status_t
be_ucx_ident_init(be_ucx_engine_t *eng)
{
    be_ucx_ident_t *id = &eng->ident;
    struct stat sb;
    char buf[64];
    ssize_t n;

    id->pid = (uint32_t)getpid();
    if (be_ucx_starttime(getpid(), &id->starttime) != 0) {
        id->starttime = 0;
    }
    if (stat("/proc/self/ns/pid", &sb) == 0) {
        id->pidns_dev = (uint64_t)sb.st_dev;
        id->pidns_ino = (uint64_t)sb.st_ino;
    }
    if (stat("/proc/self/ns/net", &sb) == 0) {
        id->netns_ino = (uint64_t)sb.st_ino;
    }
    n = be_ucx_read_file("/proc/sys/kernel/random/boot_id", buf, sizeof(buf));
    if (n > 0) {
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) {
            buf[--n] = '\0';
        }
        snprintf(id->boot_id, sizeof(id->boot_id), "%.39s", buf);
    }
    if (gethostname(id->host, sizeof(id->host)) != 0) {
        snprintf(id->host, sizeof(id->host), "?");
    }
    id->host[sizeof(id->host) - 1] = '\0';
    id->probe_addr = (uint64_t)(uintptr_t)&be_ucx_probe_byte;
    if (getrandom(&id->token, sizeof(id->token), GRND_NONBLOCK) !=
        (ssize_t)sizeof(id->token)) {
        id->token = nxl__now_ns() ^ ((uint64_t)(uintptr_t)eng << 16) ^
                    ((uint64_t)id->pid << 40);
    }
    return NXL_OK;
}

/* be_ucx_conn_info: this engine's identity and worker 0's address (layout
 * at the top of this file). */
nxl_status_t
be_ucx_conn_info(void *self, nxl_blob_t *out)
{
    be_ucx_engine_t *eng = self;
    const be_ucx_ident_t *id = &eng->ident;
    size_t hl = strlen(id->host);
    nxl__wbuf_t w;

    nxl__wbuf_init(&w);
    nxl__wbuf_u32(&w, BE_UCX_CONN_MAGIC);
    nxl__wbuf_u16(&w, BE_UCX_CONN_VERSION);
    nxl__wbuf_u16(&w, 0);
    nxl__wbuf_u32(&w, id->pid);
    nxl__wbuf_u32(&w, 0);
    nxl__wbuf_u64(&w, id->starttime);
    nxl__wbuf_u64(&w, id->pidns_dev);
    nxl__wbuf_u64(&w, id->pidns_ino);
    nxl__wbuf_u64(&w, id->probe_addr);
    nxl__wbuf_u64(&w, id->token);
    nxl__wbuf_put(&w, id->boot_id, BE_UCX_BOOT_ID_LEN);
    nxl__wbuf_u8(&w, (uint8_t)hl);
    nxl__wbuf_put(&w, id->host, hl);
    nxl__wbuf_u32(&w, (uint32_t)eng->addr_len);
    nxl__wbuf_put(&w, eng->addr, eng->addr_len);
    return nxl__wbuf_finish(&w, out);
}

/* be_ucx_conn_parse validates and decodes a peer's conn info. */
nxl_status_t
be_ucx_conn_parse(const char *peer, const void *info, size_t len,
                  be_ucx_conn_t *c)
{
    const uint8_t *boot, *host;
    nxl__rbuf_t r;
    uint32_t magic, zero32;
    uint16_t version, flags;
    uint8_t hl;

    memset(c, 0, sizeof(*c));
    nxl__rbuf_init(&r, info, len);
    if (!nxl__rbuf_u32(&r, &magic) || magic != BE_UCX_CONN_MAGIC) {
        return nxl__fail(NXL_ERR_PROTO,
                         "ucx: conn info of '%s' is not NXL UCX conn info",
                         peer);
    }
    if (!nxl__rbuf_u16(&r, &version) || version != BE_UCX_CONN_VERSION) {
        return nxl__fail(NXL_ERR_PROTO,
                         "ucx: conn info of '%s' has version %u, this build "
                         "reads %u",
                         peer, version, BE_UCX_CONN_VERSION);
    }
    if (!nxl__rbuf_u16(&r, &flags) || !nxl__rbuf_u32(&r, &c->id.pid) ||
        !nxl__rbuf_u32(&r, &zero32) || !nxl__rbuf_u64(&r, &c->id.starttime) ||
        !nxl__rbuf_u64(&r, &c->id.pidns_dev) ||
        !nxl__rbuf_u64(&r, &c->id.pidns_ino) ||
        !nxl__rbuf_u64(&r, &c->id.probe_addr) ||
        !nxl__rbuf_u64(&r, &c->id.token) ||
        !nxl__rbuf_bytes(&r, BE_UCX_BOOT_ID_LEN, &boot) ||
        !nxl__rbuf_u8(&r, &hl) || !nxl__rbuf_bytes(&r, hl, &host) ||
        !nxl__rbuf_u32(&r, &c->addr_len) ||
        !nxl__rbuf_bytes(&r, c->addr_len, &c->addr)) {
        return nxl__fail(NXL_ERR_PROTO,
                         "ucx: conn info of '%s' is truncated (%zu bytes)",
                         peer, len);
    }
    (void)flags;
    (void)zero32;
    if (c->addr_len == 0 || c->addr_len > BE_UCX_ADDR_MAX) {
        return nxl__fail(NXL_ERR_PROTO,
                         "ucx: conn info of '%s' has a worker address of "
                         "%u bytes",
                         peer, c->addr_len);
    }
    if (c->id.pid == 0 || c->id.pid > (uint32_t)INT32_MAX) {
        return nxl__fail(NXL_ERR_PROTO, "ucx: conn info of '%s': bad pid %u",
                         peer, c->id.pid);
    }
    memcpy(c->id.boot_id, boot, BE_UCX_BOOT_ID_LEN);
    c->id.boot_id[BE_UCX_BOOT_ID_LEN - 1] = '\0';
    memcpy(c->id.host, host, NXL__MIN((size_t)hl, sizeof(c->id.host) - 1));
    c->id.host[NXL__MIN((size_t)hl, sizeof(c->id.host) - 1)] = '\0';
    return NXL_OK;
}

/* be_ucx_pid_alive: pid still runs the process that started at
 * starttime. */
bool
be_ucx_pid_alive(pid_t pid, uint64_t starttime)
{
    uint64_t st;

    if (kill(pid, 0) != 0 && errno == ESRCH) {
        return false;
    }
    return be_ucx_starttime(pid, &st) == 0 && st == starttime;
}
