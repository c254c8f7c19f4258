/*
 * cancel_reset.c - reproducer: after nxl_xfer_release of a UCX transfer
 * that does not finish within a second (the backend then resets the
 * endpoint), notifications between the two agents stop.
 *
 *   repro-cancel-reset [LEN_MIB [LOCAL_PATH]]   (default 512, "ucx")
 *
 * Two processes, A and B, one UCX agent each (local_path=ucx: UCX RMA,
 * slow enough on one host that a large READ outlives the 1 s cancel
 * grace; with "copy" use a LEN the machine cannot copy in 1 s). They
 * load each other and exchange one notification each way. A posts a
 * LEN_MIB READ from B and releases it at once. Then each sends the other
 * 10 notifications of 100 bytes, and A runs a 4 KiB READ with a
 * notification; both collect for 5 s.
 *
 * Expected: 10 and 10 arrive, the READ completes. Exit status 1 if not.
 * docs/reliability.md, "Defects found".
 */
#include <nxl/nxl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *who = "A";
static const char *lpath = "ucx";
static size_t len;

#define CHECK(e)                                                               \
    do {                                                                       \
        nxl_status_t s_ = (e);                                                 \
        if (s_ != NXL_OK) {                                                    \
            printf("%s: %s:%d %s: %s (%s)\n", who, __FILE__, __LINE__, #e,     \
                   nxl_status_name(s_), nxl_last_error());                     \
            fflush(stdout);                                                    \
            _exit(2);                                                          \
        }                                                                      \
    } while (0)

static double
now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static nxl_agent_t *
agent(const char *name, uint8_t **buf_p)
{
    nxl_agent_config_t cfg;
    nxl_param_t pr[1] = {{"local_path", lpath}};
    nxl_params_t ps = {pr, 1};
    nxl_agent_t *a;
    uint8_t *buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    nxl_desc_t d = {(uintptr_t)buf, len, 0};
    nxl_dlist_t dl = {NXL_DRAM, &d, 1};

    if (buf == MAP_FAILED) {
        _exit(2);
    }
    memset(buf, 3, len);
    nxl_agent_config_init(&cfg);
    cfg.listen_thread = 1;
    cfg.listen_port = 0;
    cfg.listen_addr = "127.0.0.1";
    CHECK(nxl_agent_create(name, &cfg, &a));
    CHECK(nxl_backend_create(a, "UCX", &ps, NULL));
    CHECK(nxl_mem_register(a, &dl, NULL));
    *buf_p = buf;
    return a;
}

static void
fetch(nxl_agent_t *a, const char *name, uint16_t port)
{
    nxl_opts_t o;

    nxl_opts_init(&o);
    o.ip_addr = "127.0.0.1";
    o.port = port;
    CHECK(nxl_md_fetch(a, name, &o));
}

static int
collect(nxl_agent_t *a, int want, double secs)
{
    double t0 = now();
    int n = 0;

    while (now() - t0 < secs && n < want) {
        nxl_notif_list_t *l = NULL;

        CHECK(nxl_notifs_get(a, &l, NULL));
        n += l != NULL ? (int)l->count : 0;
        nxl_notif_list_free(l);
        usleep(1000);
    }
    return n;
}

static void
send_n(nxl_agent_t *a, const char *to, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        char m[100] = {0};

        CHECK(nxl_notif_send(a, to, m, sizeof(m), NULL));
    }
}

static int
rd(int fd, void *p, size_t n)
{
    return read(fd, p, n) == (ssize_t)n ? 0 : -1;
}

static int
wr(int fd, const void *p, size_t n)
{
    return write(fd, p, n) == (ssize_t)n ? 0 : -1;
}

int
main(int argc, char **argv)
{
    int ab[2], ba[2], st = 0, bad = 0;
    uint16_t pa, pb;
    uint64_t addr;
    uint8_t *buf;
    char c = 'x';
    pid_t pid;

    len = (size_t)(argc > 1 ? atoi(argv[1]) : 512) << 20;
    if (argc > 2) {
        lpath = argv[2];
    }
    if (pipe(ab) != 0 || pipe(ba) != 0) {
        return 2;
    }
    fflush(stdout);
    pid = fork(); /* before any agent exists */
    if (pid == 0) {
        nxl_agent_t *b;
        int n;

        who = "B";
        b = agent("B", &buf);
        pb = nxl_agent_listen_port(b);
        addr = (uintptr_t)buf;
        if (wr(ba[1], &pb, 2) || wr(ba[1], &addr, 8) || rd(ab[0], &pa, 2)) {
            _exit(2);
        }
        fetch(b, "A", pa);
        if (wr(ba[1], &c, 1) || rd(ab[0], &c, 1)) {
            _exit(2);
        }
        send_n(b, "A", 1);
        collect(b, 1, 3);
        if (rd(ab[0], &c, 1)) { /* A canceled */
            _exit(2);
        }
        send_n(b, "A", 10);
        n = collect(b, 11, 8); /* 10 + the READ's */
        printf("B: after A's cancel, got %d of 11 notifications from A\n", n);
        fflush(stdout);
        if (rd(ab[0], &c, 1)) {
            _exit(2);
        }
        nxl_agent_destroy(b);
        _exit(n == 11 ? 0 : 1);
    }
    {
        nxl_agent_t *a = agent("A", &buf);
        nxl_desc_t l, r;
        nxl_dlist_t ll = {NXL_DRAM, &l, 1}, rl = {NXL_DRAM, &r, 1};
        nxl_opts_t no;
        nxl_xfer_t *x;
        nxl_status_t s;
        double t0;
        int n;

        pa = nxl_agent_listen_port(a);
        if (wr(ab[1], &pa, 2) || rd(ba[0], &pb, 2) || rd(ba[0], &addr, 8) ||
            rd(ba[0], &c, 1)) {
            return 2;
        }
        fetch(a, "B", pb);
        if (wr(ab[1], &c, 1)) {
            return 2;
        }
        send_n(a, "B", 1);
        collect(a, 1, 3);

        l = (nxl_desc_t){(uintptr_t)buf, len, 0};
        r = (nxl_desc_t){addr, len, 0};
        CHECK(nxl_xfer_create(a, NXL_READ, &ll, &rl, "B", NULL, &x));
        s = nxl_xfer_post(x, NULL);
        t0 = now();
        nxl_xfer_release(x);
        printf("A: %zu MiB READ posted (%s), released in %.2f s\n", len >> 20,
               nxl_status_name(s), now() - t0);
        if (wr(ab[1], &c, 1)) {
            return 2;
        }
        send_n(a, "B", 10);
        l.len = r.len = 4096;
        nxl_opts_init(&no);
        no.has_notif = 1;
        no.notif = "read";
        no.notif_len = 4;
        CHECK(nxl_xfer_create(a, NXL_READ, &ll, &rl, "B", &no, &x));
        s = nxl_xfer_post(x, NULL);
        if (s == NXL_IN_PROG) {
            s = nxl_xfer_wait(x, 8000);
        }
        printf("A: 4 KiB READ + notification after the cancel: %s\n",
               nxl_status_name(s));
        bad |= s != NXL_OK;
        nxl_xfer_release(x);
        n = collect(a, 10, 5);
        printf("A: after its cancel, got %d of 10 notifications from B\n", n);
        fflush(stdout);
        bad |= n != 10;
        if (wr(ab[1], &c, 1)) {
            return 2;
        }
        waitpid(pid, &st, 0);
        nxl_agent_destroy(a);
        bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    return bad ? 1 : 0;
}
