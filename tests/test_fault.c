/*
 * test_fault.c - fault injection (src/util/fault.h): the spec parser, and
 * that a call failed on purpose comes back as a status with a message, no
 * crash, no hang, and nothing held afterwards: allocation during agent
 * and registration calls, CMA under SHM, socket I/O under TCP. (The whole
 * suite under NXL_FAULT is `make faults`; docs/reliability.md.)
 */
#include "harness.h"
#include "util.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define TF_LEN (256u * 1024u)

/* The spec grammar: sites, "all", rates in [0, 1]; a bad spec changes
 * nothing. */
static int
t_spec(void)
{
    XT_ASSERT_OK(nxl__fault_set("alloc=0.5,send=1", 1));
    XT_ASSERT(atomic_load(&nxl__fault_on));
    XT_ASSERT_STATUS(nxl__fault_set("alloc=2", 1), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl__fault_set("disk=0.1", 1), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl__fault_set("alloc", 1), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl__fault_set("alloc=x", 1), NXL_ERR_INVALID_PARAM);
    XT_ASSERT(atomic_load(&nxl__fault_on)); /* unchanged */
    XT_ASSERT_OK(nxl__fault_set("all=0", 1));
    XT_ASSERT(!atomic_load(&nxl__fault_on));
    XT_ASSERT_OK(nxl__fault_set(NULL, 1));
    XT_ASSERT(!nxl__fault_hit(NXL__FI_ALLOC));
    return 0;
}

/* Every allocation failing: agent creation and registration report
 * NXL_ERR_NOMEM with a message; then, with injection off, everything
 * works. */
static int
t_alloc(void)
{
    nxl_agent_t *a = NULL;
    nxl_status_t st;
    uint8_t *buf;
    nxl_desc_t d;
    nxl_dlist_t dl = {NXL_DRAM, &d, 1};

    buf = mmap(NULL, TF_LEN, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    XT_ASSERT(buf != MAP_FAILED);
    d = (nxl_desc_t){(uintptr_t)buf, TF_LEN, 0};
    XT_ASSERT_OK(nxl__fault_set("alloc=1", 1));
    st = nxl_agent_create("f", NULL, &a);
    XT_ASSERT_OK(nxl__fault_set(NULL, 1));
    XT_ASSERT_STATUS(st, NXL_ERR_NOMEM);
    XT_ASSERT(a == NULL);

    XT_ASSERT_OK(nxl_agent_create("f", NULL, &a));
    XT_ASSERT_OK(nxl_backend_create(a, "SHM", NULL, NULL));
    XT_ASSERT_OK(nxl__fault_set("alloc=1", 1));
    st = nxl_mem_register(a, &dl, NULL);
    XT_ASSERT_OK(nxl__fault_set(NULL, 1));
    XT_ASSERT_STATUS(st, NXL_ERR_NOMEM);
    XT_ASSERT(nxl__fault_count(NXL__FI_ALLOC) > 0);
    /* Nothing half-registered: it registers now, once. */
    XT_ASSERT_OK(nxl_mem_register(a, &dl, NULL));
    XT_ASSERT_STATUS(nxl_mem_register(a, &dl, NULL), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_OK(nxl_mem_deregister(a, &dl, NULL));
    nxl_agent_destroy(a);
    munmap(buf, TF_LEN);
    return 0;
}

/* tf_pair makes two agents in this process with backend be, src and dst
 * registered, b's metadata loaded into a, and a WRITE a -> b of them. */
static int
tf_pair(const char *be, nxl_agent_t **a_p, nxl_agent_t **b_p, uint8_t *src,
        uint8_t *dst, nxl_xfer_t **x_p)
{
    nxl_desc_t s = {(uintptr_t)src, TF_LEN, 0}, t = {(uintptr_t)dst, TF_LEN, 0};
    nxl_dlist_t sl = {NXL_DRAM, &s, 1}, tl = {NXL_DRAM, &t, 1};
    nxl_blob_t md = {0};

    XT_ASSERT_OK(nxl_agent_create("fa", NULL, a_p));
    XT_ASSERT_OK(nxl_agent_create("fb", NULL, b_p));
    XT_ASSERT_OK(nxl_backend_create(*a_p, be, NULL, NULL));
    XT_ASSERT_OK(nxl_backend_create(*b_p, be, NULL, NULL));
    XT_ASSERT_OK(nxl_mem_register(*a_p, &sl, NULL));
    XT_ASSERT_OK(nxl_mem_register(*b_p, &tl, NULL));
    XT_ASSERT_OK(nxl_md_local(*b_p, &md));
    XT_ASSERT_OK(nxl_md_load(*a_p, md.data, md.len, NULL, 0));
    nxl_blob_free(&md);
    XT_ASSERT_OK(nxl_xfer_create(*a_p, NXL_WRITE, &sl, &tl, "fb", NULL, x_p));
    return 0;
}

/* tf_post posts x and waits (driving b's progress too); returns the
 * final status within 10 s, or NXL_ERR_TIMEOUT. */
static nxl_status_t
tf_post(nxl_xfer_t *x, nxl_agent_t *b)
{
    nxl_status_t st = nxl_xfer_post(x, NULL);
    uint64_t t0 = xt_now_ms();

    while (st == NXL_IN_PROG && xt_now_ms() - t0 < 10000) {
        nxl_agent_progress(b);
        st = nxl_xfer_wait(x, 20);
        if (st == NXL_ERR_TIMEOUT) {
            st = NXL_IN_PROG;
        }
    }
    return st == NXL_IN_PROG ? NXL_ERR_TIMEOUT : st;
}

/* A site failing every call under backend be: the transfer fails with a
 * status and a message (no hang, no crash); with injection off the next
 * transfers (after a reload if the peer was marked gone) move the bytes. */
static int
tf_site(const char *be, const char *spec, nxl__fault_site_t site)
{
    nxl_agent_t *a = NULL, *b = NULL;
    nxl_xfer_t *x = NULL;
    nxl_status_t st;
    uint8_t *src, *dst;
    nxl_blob_t md = {0};

    src = mmap(NULL, 2 * TF_LEN, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    XT_ASSERT(src != MAP_FAILED);
    dst = src + TF_LEN;
    memset(src, 0x5c, TF_LEN);
    XT_ASSERT(tf_pair(be, &a, &b, src, dst, &x) == 0);
    XT_ASSERT_OK(tf_post(x, b));
    XT_ASSERT_OK(nxl__fault_set(spec, 1));
    st = tf_post(x, b);
    XT_ASSERT_OK(nxl__fault_set(NULL, 1));
    printf("  %s, %s: %s (%s), %llu calls failed\n", be, spec,
           nxl_status_name(st), nxl_last_error(), nxl__fault_count(site));
    XT_ASSERT(st < 0 && st != NXL_ERR_TIMEOUT);
    XT_ASSERT(nxl_last_error()[0] != '\0');
    XT_ASSERT(nxl__fault_count(site) > 0);
    nxl_xfer_release(x);
    x = NULL;
    /* Recovery: reload the peer if it was marked gone, and move data. */
    memset(src, 0x6d, TF_LEN);
    XT_ASSERT_OK(nxl_md_local(b, &md));
    (void)nxl_md_load(a, md.data, md.len, NULL, 0);
    nxl_blob_free(&md);
    {
        nxl_desc_t s = {(uintptr_t)src, TF_LEN, 0},
                   t = {(uintptr_t)dst, TF_LEN, 0};
        nxl_dlist_t sl = {NXL_DRAM, &s, 1}, tl = {NXL_DRAM, &t, 1};

        XT_ASSERT_OK(nxl_xfer_create(a, NXL_WRITE, &sl, &tl, "fb", NULL, &x));
    }
    XT_ASSERT_OK(tf_post(x, b));
    XT_ASSERT(memcmp(src, dst, TF_LEN) == 0);
    nxl_xfer_release(x);
    nxl_agent_destroy(a);
    nxl_agent_destroy(b);
    munmap(src, 2 * TF_LEN);
    return 0;
}

/* SHM between processes (in one process SHM copies without CMA): a
 * child holds agent "fb" with a filled region; READs from it fail while
 * every CMA call fails, then work. */
static int
t_shm_cma(void)
{
    nxl_agent_t *a = NULL;
    nxl_xfer_t *x = NULL;
    nxl_status_t st;
    uint8_t *buf, *md = NULL;
    uint64_t hdr[2] = {0, 0}, got = 0;
    int pfd[2];
    ssize_t r;
    pid_t pid;

    buf = mmap(NULL, TF_LEN, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    XT_ASSERT(buf != MAP_FAILED && pipe(pfd) == 0);
    pid = fork();
    if (pid == 0) {
        nxl_agent_t *b = NULL;
        nxl_blob_t blob = {0};
        nxl_desc_t d = {(uintptr_t)buf, TF_LEN, 0};
        nxl_dlist_t dl = {NXL_DRAM, &d, 1};

        memset(buf, 0x7e, TF_LEN);
        if (nxl_agent_create("fb", NULL, &b) != NXL_OK ||
            nxl_backend_create(b, "SHM", NULL, NULL) != NXL_OK ||
            nxl_mem_register(b, &dl, NULL) != NXL_OK ||
            nxl_md_local(b, &blob) != NXL_OK) {
            _exit(1);
        }
        hdr[0] = (uintptr_t)buf;
        hdr[1] = blob.len;
        if (write(pfd[1], hdr, sizeof(hdr)) != sizeof(hdr) ||
            write(pfd[1], blob.data, blob.len) != (ssize_t)blob.len) {
            _exit(1);
        }
        for (;;) {
            pause();
        }
    }
    close(pfd[1]);
    XT_ASSERT(read(pfd[0], hdr, sizeof(hdr)) == sizeof(hdr));
    XT_ASSERT(hdr[1] > 0 && hdr[1] < (1u << 20));
    md = malloc(hdr[1]);
    XT_ASSERT(md != NULL);
    while (got < hdr[1] && (r = read(pfd[0], md + got, hdr[1] - got)) > 0) {
        got += (uint64_t)r;
    }
    XT_ASSERT_EQ(got, hdr[1]);
    XT_ASSERT_OK(nxl_agent_create("fa", NULL, &a));
    XT_ASSERT_OK(nxl_backend_create(a, "SHM", NULL, NULL));
    {
        nxl_desc_t l = {(uintptr_t)buf, TF_LEN, 0}, rd = {hdr[0], TF_LEN, 0};
        nxl_dlist_t ll = {NXL_DRAM, &l, 1}, rl = {NXL_DRAM, &rd, 1};

        XT_ASSERT_OK(nxl_mem_register(a, &ll, NULL));
        XT_ASSERT_OK(nxl_md_load(a, md, hdr[1], NULL, 0));
        XT_ASSERT_OK(nxl_xfer_create(a, NXL_READ, &ll, &rl, "fb", NULL, &x));
    }
    memset(buf, 0, TF_LEN);
    XT_ASSERT_OK(nxl__fault_set("cma=1", 1));
    st = nxl_xfer_post(x, NULL);
    if (st == NXL_IN_PROG) {
        st = nxl_xfer_wait(x, 10000);
    }
    XT_ASSERT_OK(nxl__fault_set(NULL, 1));
    printf("  SHM, cma=1: %s (%s), %llu calls failed\n", nxl_status_name(st),
           nxl_last_error(), nxl__fault_count(NXL__FI_CMA));
    XT_ASSERT(st < 0 && st != NXL_ERR_TIMEOUT);
    XT_ASSERT(nxl_last_error()[0] != '\0');
    st = nxl_xfer_post(x, NULL);
    if (st == NXL_IN_PROG) {
        st = nxl_xfer_wait(x, 10000);
    }
    XT_ASSERT_OK(st);
    XT_ASSERT(buf[0] == 0x7e && buf[TF_LEN - 1] == 0x7e);
    nxl_xfer_release(x);
    nxl_agent_destroy(a);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(pfd[0]);
    free(md);
    munmap(buf, TF_LEN);
    return 0;
}

static int
t_tcp_send(void)
{
    return tf_site("TCP", "send=1", NXL__FI_SEND);
}

static int
t_tcp_recv(void)
{
    return tf_site("TCP", "recv=1", NXL__FI_RECV);
}

static const xt_case tf_cases[] = {
    {"spec", t_spec},         {"alloc", t_alloc},       {"shm_cma", t_shm_cma},
    {"tcp_send", t_tcp_send}, {"tcp_recv", t_tcp_recv}, {NULL, NULL},
};

const xt_suite xt_suite_fault = {"fault", tf_cases, 60, NULL};
