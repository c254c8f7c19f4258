/*
 * test_api.c - misuse of the public API (include/nxl/nxl.h): NULL inside
 * structs, counts that disagree with their pointers, sizes that overflow,
 * overlapping and null registrations, and the error message of a split SHM
 * transfer. Each case calls through nxl.h only, as an outside program
 * would, and checks the documented status and that a message says what
 * was wrong. These are the defects an outside test found (issue 15); each
 * case failed before its fix.
 */
#include "harness.h"
#include "xt_xfer.h"

#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define TA_KIB 1024u
#define TA_MIB (1024u * 1024u)

static const char *const ta_shm[] = {"SHM", NULL};
static const char *const ta_shm_tcp[] = {"SHM", "TCP", NULL};

/* ta_reg registers (or with dereg, deregisters) one DRAM descriptor. */
static nxl_status_t
ta_reg(nxl_agent_t *a, uint64_t addr, uint64_t len, int dereg)
{
    nxl_desc_t d = {addr, len, 0};
    nxl_dlist_t dl = {NXL_DRAM, &d, 1};

    return dereg ? nxl_mem_deregister(a, &dl, NULL)
                 : nxl_mem_register(a, &dl, NULL);
}

/* Defect 6: a NULL output is named as such, not as a bad name. */
static int
t_create_messages(void)
{
    nxl_agent_t *a = NULL;

    XT_ASSERT_STATUS(nxl_agent_create("x", NULL, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_MSG("agent_p");
    XT_ASSERT_STATUS(nxl_agent_create(NULL, NULL, &a), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_MSG("name");
    XT_ASSERT_STATUS(nxl_agent_create("", NULL, &a), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_MSG("name");
    XT_ASSERT(a == NULL);
    return 0;
}

/* Defect 3: parameter arrays that disagree with their count. */
static int
t_params_null_items(void)
{
    nxl_param_t one = {NULL, "1"};
    nxl_params_t bad = {NULL, 3}, nullkey = {&one, 1}, none = {NULL, 0};
    nxl_backend_t *be = NULL;
    nxl_agent_t *a = NULL;

    XT_ASSERT_OK(nxl_agent_create("p", NULL, &a));
    XT_ASSERT_STATUS(nxl_backend_create(a, "TCP", &bad, &be),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_MSG("items");
    XT_ASSERT_STATUS(nxl_backend_create(a, "SHM", &bad, &be),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_backend_create(a, "TCP", &nullkey, &be),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT(be == NULL);
    /* An empty array without items is the defaults. */
    XT_ASSERT_OK(nxl_backend_create(a, "TCP", &none, &be));
    XT_ASSERT(be != NULL);
    nxl_agent_destroy(a);
    return 0;
}

/* Defect 4: opts->backends NULL with a count, on every call that reads
 * opts; and an attached notification whose bytes are NULL. */
static int
t_opts_null_backends(void)
{
    const uint64_t len = 64 * TA_KIB;
    uint8_t *buf = NULL;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL, *ok = NULL;
    nxl_prepped_t *lp = NULL, *rp = NULL;
    nxl_notif_list_t *nl = NULL;
    nxl_blob_t blob = {0};
    nxl_desc_t d;
    nxl_dlist_t dl;
    nxl_opts_t o;
    size_t i0 = 0;

    XT_ASSERT(posix_memalign((void **)&buf, 4096, len) == 0);
    XT_ASSERT_OK(xt_agent_with("o", ta_shm_tcp, &a));
    d = (nxl_desc_t){(uintptr_t)buf, len, 0};
    dl = (nxl_dlist_t){NXL_DRAM, &d, 1};
    nxl_opts_init(&o);
    o.backends = NULL;
    o.num_backends = 2;

    XT_ASSERT_STATUS(nxl_mem_register(a, &dl, &o), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_MSG("backends");
    XT_ASSERT_OK(nxl_mem_register(a, &dl, NULL));
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &dl, &dl, "o", &o, &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_MSG("backends");
    XT_ASSERT_STATUS(nxl_dlist_prep(a, NULL, &dl, &o, &lp),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_OK(nxl_dlist_prep(a, NULL, &dl, NULL, &lp));
    XT_ASSERT_OK(nxl_dlist_prep(a, "o", &dl, NULL, &rp));
    XT_ASSERT_STATUS(nxl_xfer_make(a, NXL_WRITE, lp, &i0, rp, &i0, 1, &o, &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_notif_send(a, "o", "m", 1, &o), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_notifs_get(a, &nl, &o), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_md_local_partial(a, &dl, &o, &blob),
                     NXL_ERR_INVALID_PARAM);
    o.ip_addr = "127.0.0.1";
    o.port = 1;
    XT_ASSERT_STATUS(nxl_md_send(a, &o), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_md_fetch(a, NULL, &o), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_md_invalidate_local(a, &o), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_mem_deregister(a, &dl, &o), NXL_ERR_INVALID_PARAM);
    XT_ASSERT(x == NULL && nl == NULL && blob.data == NULL);

    /* A notification with a length but no bytes. */
    nxl_opts_init(&o);
    o.has_notif = 1;
    o.notif = NULL;
    o.notif_len = 5;
    XT_ASSERT_STATUS(nxl_xfer_create(a, NXL_WRITE, &dl, &dl, "o", &o, &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_xfer_make(a, NXL_WRITE, lp, &i0, rp, &i0, 1, &o, &x),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_OK(nxl_xfer_make(a, NXL_WRITE, lp, &i0, rp, &i0, 1, NULL, &ok));
    XT_ASSERT_STATUS(nxl_xfer_post(ok, &o), NXL_ERR_INVALID_PARAM);
    XT_ASSERT(x == NULL);

    /* None of it changed anything: the registration is still there. */
    XT_ASSERT_OK(nxl_xfer_post(ok, NULL) >= 0 ? NXL_OK : NXL_ERR_UNKNOWN);
    XT_ASSERT_OK(nxl_xfer_wait(ok, 5000));
    nxl_xfer_release(ok);
    nxl_dlist_release(lp);
    nxl_dlist_release(rp);
    XT_ASSERT_OK(nxl_mem_deregister(a, &dl, NULL));
    nxl_agent_destroy(a);
    free(buf);
    return 0;
}

/* Defect 2: address 0 is not memory, for every backend set. */
static int
t_register_null_address(void)
{
    static const char *const tcp[] = {"TCP", NULL}, *const shm[] = {"SHM",
                                                                    NULL};
    const char *const *sets[] = {ta_shm_tcp, tcp, shm};
    nxl_agent_t *a = NULL;
    size_t s;

    for (s = 0; s < sizeof(sets) / sizeof(sets[0]); s++) {
        XT_ASSERT_OK(xt_agent_with("z", sets[s], &a));
        XT_ASSERT_STATUS(ta_reg(a, 0, 4096, 0), NXL_ERR_INVALID_PARAM);
        XT_ASSERT_MSG("address 0");
        nxl_agent_destroy(a);
        a = NULL;
    }
    return 0;
}

/* Defect 1: regions of one memory kind and device may not overlap
 * (docs/design.md "Region indexes"): head, tail, inside, covering and
 * exact overlaps are NXL_ERR_NOT_ALLOWED, within one list too, and a
 * refused call registers nothing; touching neighbours and another device
 * id are fine. */
static int
t_register_overlap(void)
{
    const uint64_t k4 = 4 * TA_KIB, k64 = 64 * TA_KIB;
    nxl_desc_t two[2];
    nxl_dlist_t dl2 = {NXL_DRAM, two, 2};
    nxl_agent_t *a = NULL;
    uint8_t *mem;
    uint64_t b;

    mem = mmap(NULL, 4 * k64, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    XT_ASSERT(mem != MAP_FAILED);
    b = (uintptr_t)mem + k64; /* room on both sides */
    XT_ASSERT_OK(xt_agent_with("r", ta_shm_tcp, &a));
    XT_ASSERT_OK(ta_reg(a, b, k64, 0));

    XT_ASSERT_STATUS(ta_reg(a, b + k4, k64, 0), NXL_ERR_NOT_ALLOWED); /* tail */
    XT_ASSERT_MSG("overlaps");
    XT_ASSERT_STATUS(ta_reg(a, b - k4, 2 * k4, 0), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_STATUS(ta_reg(a, b + k4, k4, 0), NXL_ERR_NOT_ALLOWED); /* in */
    XT_ASSERT_STATUS(ta_reg(a, b - k4, k64 + 2 * k4, 0), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_STATUS(ta_reg(a, b + k64 - 1, 1, 0), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_STATUS(ta_reg(a, b, k64, 0), NXL_ERR_NOT_ALLOWED); /* exact */
    XT_ASSERT_MSG("already registered");

    /* Within one list: nothing of it is registered. */
    two[0] = (nxl_desc_t){b + k64, k4, 0};
    two[1] = (nxl_desc_t){b + k64 + k4 - 1, k4, 0};
    XT_ASSERT_STATUS(nxl_mem_register(a, &dl2, NULL), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_MSG("overlap");
    two[1] = two[0];
    XT_ASSERT_STATUS(nxl_mem_register(a, &dl2, NULL), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_STATUS(ta_reg(a, b + k64, k4, 1), NXL_ERR_NOT_FOUND);

    /* Neighbours touching either end, and the same bytes on another
     * device id, are separate regions. */
    XT_ASSERT_OK(ta_reg(a, b - k4, k4, 0));
    XT_ASSERT_OK(ta_reg(a, b + k64, k4, 0));
    two[0] = (nxl_desc_t){b, k64, 1};
    two[1] = (nxl_desc_t){b + 2 * k64, k4, 0};
    XT_ASSERT_OK(nxl_mem_register(a, &dl2, NULL));

    /* The original registration is unchanged. */
    XT_ASSERT_OK(ta_reg(a, b, k64, 1));
    XT_ASSERT_OK(ta_reg(a, b + k4, k4, 0));
    nxl_agent_destroy(a);
    munmap(mem, 4 * k64);
    return 0;
}

/* Sizes that overflow and lists whose pointers are NULL. */
static int
t_counts_and_sizes(void)
{
    nxl_desc_t d = {0x10000, 4096, 0};
    nxl_dlist_t nulld = {NXL_DRAM, NULL, 3}, huge = {NXL_DRAM, &d, SIZE_MAX};
    nxl_dlist_t badmem = {(nxl_mem_t)99, &d, 1};
    nxl_prepped_t *pp = NULL;
    nxl_blob_t blob = {0};
    nxl_agent_t *a = NULL;
    nxl_plugin_info_t info;
    const char *names[1];
    void *shared = NULL;
    size_t n = 0;

    XT_ASSERT_OK(xt_agent_with("c", ta_shm_tcp, &a));
    XT_ASSERT_STATUS(nxl_mem_register(a, &nulld, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_mem_register(a, &badmem, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_mem_deregister(a, &nulld, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_dlist_prep(a, NULL, &nulld, NULL, &pp),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_dlist_prep(a, NULL, &huge, NULL, &pp),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_md_local_partial(a, &nulld, NULL, &blob),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_md_check(a, "c2", &nulld), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_md_load(a, NULL, 10, NULL, 0), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_mem_alloc_shared(SIZE_MAX, &shared),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_mem_alloc_shared(SIZE_MAX - 4095, &shared),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_plugin_names(NULL, 4, &n), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_plugin_names(names, 1, NULL), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_plugin_info(NULL, &info), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_backend_create(a, NULL, NULL, NULL),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT(nxl_backend_get(a, NULL) == NULL);
    XT_ASSERT(nxl_backend_name(NULL) == NULL);
    XT_ASSERT(pp == NULL && blob.data == NULL && shared == NULL);
    nxl_agent_destroy(a);
    return 0;
}

/* ta_target is a process holding agent "tgt" with SHM and len registered
 * bytes at a page-aligned address; with hole, the last MiB is unmapped
 * after registering (CMA then fails there with EFAULT). It writes the
 * address and its metadata (u64 address, u64 length, bytes) to fd and
 * waits to be killed. */
static void
ta_target(int fd, uint64_t len, int hole)
{
    nxl_agent_t *a = NULL;
    nxl_blob_t md = {0};
    uint64_t n;
    uint8_t *mem;
    int rc = 1;

    mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (mem == MAP_FAILED) {
        _exit(1);
    }
    memset(mem, 0x3c, len);
    if (xt_agent_with("tgt", ta_shm, &a) != NXL_OK ||
        ta_reg(a, (uintptr_t)mem, len, 0) != NXL_OK ||
        nxl_md_local(a, &md) != NXL_OK) {
        goto out;
    }
    if (hole) {
        munmap(mem + len - TA_MIB, TA_MIB);
    }
    n = (uintptr_t)mem;
    if (write(fd, &n, sizeof(n)) != sizeof(n)) {
        goto out;
    }
    n = md.len;
    if (write(fd, &n, sizeof(n)) != sizeof(n) ||
        write(fd, md.data, md.len) != (ssize_t)md.len) {
        goto out;
    }
    for (;;) {
        pause();
    }
out:
    _exit(rc);
}

/* ta_spawn starts ta_target, loads its metadata into a and sets *raddr_p
 * to its region's address. */
static pid_t
ta_spawn(nxl_agent_t *a, uint64_t len, int hole, uint64_t *raddr_p)
{
    int fds[2];
    uint64_t n = 0;
    void *md;
    pid_t pid;
    ssize_t got = 0, r;

    if (pipe(fds) < 0) {
        return -1;
    }
    pid = fork();
    if (pid == 0) {
        close(fds[0]);
        ta_target(fds[1], len, hole);
    }
    close(fds[1]);
    if (pid < 0 || read(fds[0], raddr_p, sizeof(*raddr_p)) != sizeof(n) ||
        read(fds[0], &n, sizeof(n)) != sizeof(n) || n > TA_MIB) {
        close(fds[0]);
        return -1;
    }
    md = malloc(n);
    while (md != NULL && (uint64_t)got < n &&
           (r = read(fds[0], (char *)md + got, n - (uint64_t)got)) > 0) {
        got += r;
    }
    close(fds[0]);
    if (md == NULL || (uint64_t)got != n ||
        nxl_md_load(a, md, n, NULL, 0) != NXL_OK) {
        free(md);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    free(md);
    return pid;
}

/* ta_split_agent makes the initiator: SHM with two workers that always
 * split, and 64 MiB of registered local memory. */
static nxl_status_t
ta_split_agent(nxl_agent_t **a_p, uint8_t **buf_p, uint64_t len)
{
    static const nxl_param_t p[] = {{"split_policy", "always"},
                                    {"num_threads", "2"}};
    nxl_params_t ps = {p, 2};
    nxl_agent_t *a = NULL;
    nxl_status_t st;

    *buf_p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (*buf_p == MAP_FAILED) {
        return NXL_ERR_NOMEM;
    }
    st = nxl_agent_create("init", NULL, &a);
    if (st == NXL_OK) {
        st = nxl_backend_create(a, "SHM", &ps, NULL);
    }
    if (st == NXL_OK) {
        st = ta_reg(a, (uintptr_t)*buf_p, len, 0);
    }
    if (st != NXL_OK) {
        nxl_agent_destroy(a);
        return st;
    }
    *a_p = a;
    return NXL_OK;
}

/* ta_read64 makes a READ of 64 x 1 MiB from the target at raddr. */
static nxl_status_t
ta_read64(nxl_agent_t *a, const uint8_t *buf, uint64_t raddr, nxl_xfer_t **x_p)
{
    nxl_desc_t l[64], r[64];
    nxl_dlist_t ll = {NXL_DRAM, l, 64}, rl = {NXL_DRAM, r, 64};
    int i;

    for (i = 0; i < 64; i++) {
        l[i] = (nxl_desc_t){(uintptr_t)buf + (uint64_t)i * TA_MIB, TA_MIB, 0};
        r[i] = (nxl_desc_t){raddr + (uint64_t)i * TA_MIB, TA_MIB, 0};
    }
    return nxl_xfer_create(a, NXL_READ, &ll, &rl, "tgt", NULL, x_p);
}

/* Defect 5: a split SHM transfer that fails on one thread keeps that
 * thread's message, whichever thread finishes the request. The target's
 * last MiB is unmapped, so every post fails with EFAULT in one chunk; 30
 * reposts put the failing chunk and the finishing thread on different
 * threads many times. */
static int
t_split_error_message(void)
{
    const uint64_t len = 64 * TA_MIB;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    nxl_status_t st;
    uint8_t *buf;
    uint64_t raddr;
    pid_t pid;
    int k, async = 0;

    XT_ASSERT_OK(ta_split_agent(&a, &buf, len));
    pid = ta_spawn(a, len, 1, &raddr);
    XT_ASSERT(pid > 0);
    XT_ASSERT_OK(ta_read64(a, buf, raddr, &x));
    for (k = 0; k < 30; k++) {
        st = nxl_xfer_post(x, NULL);
        if (st == NXL_IN_PROG) {
            async++;
            st = nxl_xfer_wait(x, 10000);
        }
        if (st >= 0) {
            XT_FAILF("post %d: %s, want a failure", k, nxl_status_name(st));
        }
        if (strstr(nxl_last_error(), "process_vm_readv") == NULL) {
            XT_FAILF("post %d: %s with the message \"%s\"", k,
                     nxl_status_name(st), nxl_last_error());
        }
    }
    printf("  30 failed posts, %d finished on another thread, each with "
           "its message\n",
           async);
    nxl_xfer_release(x);
    nxl_agent_destroy(a);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    munmap(buf, len);
    return 0;
}

/* The outside test's scenario of defect 5: the target of a split 64 x 1
 * MiB READ is SIGKILLed; the transfer fails REMOTE_DISCONNECT (or, if the
 * kill lands between posts, NOT_FOUND) with a message about the peer. */
static int
t_split_peer_killed(void)
{
    const uint64_t len = 64 * TA_MIB;
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    nxl_status_t st;
    uint8_t *buf;
    uint64_t t0, raddr;
    pid_t pid;
    int trial;

    XT_ASSERT_OK(ta_split_agent(&a, &buf, len));
    for (trial = 0; trial < 3; trial++) {
        pid = ta_spawn(a, len, 0, &raddr);
        XT_ASSERT(pid > 0);
        XT_ASSERT_OK(ta_read64(a, buf, raddr, &x));
        t0 = xt_now_ms();
        st = nxl_xfer_post(x, NULL);
        kill(pid, SIGKILL);
        while (st >= 0 && xt_now_ms() - t0 < 5000) {
            st = (st == NXL_IN_PROG) ? nxl_xfer_wait(x, 100)
                                     : nxl_xfer_post(x, NULL);
            if (st == NXL_ERR_TIMEOUT) {
                st = NXL_IN_PROG;
            }
        }
        if (st != NXL_ERR_REMOTE_DISCONNECT && st != NXL_ERR_NOT_FOUND) {
            XT_FAILF("trial %d: %s (%s)", trial, nxl_status_name(st),
                     nxl_last_error());
        }
        if (strstr(nxl_last_error(), "tgt") == NULL &&
            strstr(nxl_last_error(), "pid") == NULL) {
            XT_FAILF("trial %d: %s with the message \"%s\"", trial,
                     nxl_status_name(st), nxl_last_error());
        }
        nxl_xfer_release(x);
        x = NULL;
        waitpid(pid, NULL, 0);
    }
    nxl_agent_destroy(a);
    munmap(buf, len);
    return 0;
}

const xt_case xt_api_cases[] = {
    {"create_messages", t_create_messages},
    {"params_null_items", t_params_null_items},
    {"opts_null_backends", t_opts_null_backends},
    {"register_null_address", t_register_null_address},
    {"register_overlap", t_register_overlap},
    {"counts_and_sizes", t_counts_and_sizes},
    {"split_error_message", t_split_error_message},
    {"split_peer_killed", t_split_peer_killed},
    {NULL, NULL},
};

const xt_suite xt_suite_api = {"api", xt_api_cases, 60, NULL};
