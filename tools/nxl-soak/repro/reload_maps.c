/*
 * reload_maps.c - reproducer: every reload of a live peer's metadata
 * leaves shared-memory mappings behind in the reloading process (UCX).
 *
 *   repro-reload-maps [BACKEND [K]]     (default UCX, K = 100)
 *
 * Two processes, A and B, one agent each (side channels on 127.0.0.1);
 * B serves and drains notifications. A loads B, then K times: drops B's
 * metadata and loads it again (nxl_md_invalidate + nxl_md_fetch), sends B
 * one notification and READs 4 KiB from B. Every call returns NXL_OK.
 * A's mappings (/proc/self/maps lines) and fds are counted after the
 * first reload and after the last.
 *
 * Expected: no growth. UCX 1.13.1: +3 mappings per reload (two
 * /SYSV00000000 and one /dev/shm/ucx_shm_posix_* of B), never released
 * while the agent lives; fds stay flat. SHM and TCP: flat. Exit status 1
 * when mappings grew by more than K / 10. docs/reliability.md, "Defects
 * found".
 */
#include <nxl/nxl.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define LEN (1u << 20)

#define CHECK(e)                                                               \
    do {                                                                       \
        nxl_status_t s_ = (e);                                                 \
        if (s_ != NXL_OK) {                                                    \
            printf("%s:%d %s: %s (%s)\n", __FILE__, __LINE__, #e,              \
                   nxl_status_name(s_), nxl_last_error());                     \
            fflush(stdout);                                                    \
            _exit(2);                                                          \
        }                                                                      \
    } while (0)

/* count_maps counts /proc/self/maps lines, and those naming a SysV or a
 * UCX POSIX shared-memory segment. */
static void
count_maps(unsigned *all_p, unsigned *shm_p)
{
    char line[512];
    FILE *f = fopen("/proc/self/maps", "re");

    *all_p = 0;
    *shm_p = 0;
    if (f == NULL) {
        return;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        (*all_p)++;
        if (strstr(line, "/SYSV") != NULL ||
            strstr(line, "ucx_shm_posix") != NULL) {
            (*shm_p)++;
        }
    }
    fclose(f);
}

static nxl_agent_t *
agent(const char *name, const char *be, uint8_t **buf_p)
{
    nxl_agent_config_t cfg;
    nxl_agent_t *a;
    uint8_t *buf = aligned_alloc(4096, LEN);
    nxl_desc_t d = {(uintptr_t)buf, LEN, 0};
    nxl_dlist_t dl = {NXL_DRAM, &d, 1};

    if (buf == NULL) {
        _exit(2);
    }
    memset(buf, 1, LEN);
    nxl_agent_config_init(&cfg);
    cfg.listen_thread = 1;
    cfg.listen_port = 0;
    cfg.listen_addr = "127.0.0.1";
    CHECK(nxl_agent_create(name, &cfg, &a));
    CHECK(nxl_backend_create(a, be, NULL, NULL));
    CHECK(nxl_mem_register(a, &dl, NULL));
    *buf_p = buf;
    return a;
}

int
main(int argc, char **argv)
{
    const char *be = argc > 1 ? argv[1] : "UCX";
    int k, K = argc > 2 ? atoi(argv[2]) : 100, ab[2], ba[2];
    unsigned m1 = 0, s1 = 0, m2 = 0, s2 = 0;
    uint64_t addr;
    uint16_t pb;
    uint8_t *buf;
    char c;
    pid_t pid;

    if (pipe(ab) != 0 || pipe(ba) != 0) {
        return 2;
    }
    fflush(stdout);
    pid = fork(); /* before any agent exists */
    if (pid == 0) {
        nxl_agent_t *b = agent("B", be, &buf);

        pb = nxl_agent_listen_port(b);
        addr = (uintptr_t)buf;
        if (write(ba[1], &pb, 2) != 2 || write(ba[1], &addr, 8) != 8) {
            _exit(2);
        }
        fcntl(ab[0], F_SETFL, O_NONBLOCK);
        while (read(ab[0], &c, 1) != 1) { /* serve until A is done */
            nxl_notif_list_t *l = NULL;

            if (nxl_notifs_get(b, &l, NULL) == NXL_OK) {
                nxl_notif_list_free(l);
            }
            usleep(1000);
        }
        nxl_agent_destroy(b);
        _exit(0);
    }
    {
        nxl_agent_t *a = agent("A", be, &buf);
        nxl_opts_t o;

        if (read(ba[0], &pb, 2) != 2 || read(ba[0], &addr, 8) != 8) {
            return 2;
        }
        nxl_opts_init(&o);
        o.ip_addr = "127.0.0.1";
        o.port = pb;
        for (k = 0; k <= K; k++) {
            nxl_desc_t l = {(uintptr_t)buf, 4096, 0}, r = {addr, 4096, 0};
            nxl_dlist_t ll = {NXL_DRAM, &l, 1}, rl = {NXL_DRAM, &r, 1};
            nxl_xfer_t *x;
            nxl_status_t s;

            if (k > 0) {
                CHECK(nxl_md_invalidate(a, "B"));
            }
            CHECK(nxl_md_fetch(a, "B", &o));
            CHECK(nxl_notif_send(a, "B", "x", 1, NULL));
            CHECK(nxl_xfer_create(a, NXL_READ, &ll, &rl, "B", NULL, &x));
            s = nxl_xfer_post(x, NULL);
            if (s == NXL_IN_PROG) {
                s = nxl_xfer_wait(x, 5000);
            }
            CHECK(s);
            nxl_xfer_release(x);
            if (k == 1) {
                count_maps(&m1, &s1);
            }
        }
        count_maps(&m2, &s2);
        printf("%s: mappings %u after 1 reload, %u after %d (%+d); SysV/UCX "
               "shared memory among them: %u -> %u\n",
               be, m1, m2, K, (int)m2 - (int)m1, s1, s2);
        fflush(stdout);
        if (write(ab[1], "q", 1) != 1) {
            return 2;
        }
        waitpid(pid, NULL, 0);
        nxl_agent_destroy(a);
    }
    return (int)(m2 - m1) > K / 10 ? 1 : 0;
}
