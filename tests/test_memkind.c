/* test_memkind.c - memory kinds: host, pinned, CUDA (real or absent), the
 * device-kind switch, the fake device kind's async semantics, and the
 * cross-kind copy. */
#include "harness.h"
#include "util.h"
#include "xt_fakedev.h"

#include <nxl/nxl_memkind.h>

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

/* check_host_kind runs alloc, copy, the synchronous stream/event ops and
 * free of a host kind (host or pinned). */
static int
check_host_kind(const nxl_memkind_ops_t *mk, size_t size)
{
    nxl_stream_t *s = NULL;
    nxl_event_t *e = NULL;
    nxl_ipc_handle_t h;
    uint8_t *a = NULL, *b = NULL;
    void *p;
    int count = 0;
    size_t i;

    XT_ASSERT_EQ(mk->abi_version, NXL_MEMKIND_ABI_VERSION);
    XT_ASSERT_EQ(mk->size, sizeof(nxl_memkind_ops_t));
    XT_ASSERT_EQ(mk->mem, NXL_DRAM);
    XT_ASSERT_OK(mk->probe());
    XT_ASSERT_OK(mk->device_count(&count));
    XT_ASSERT_EQ(count, 1);
    XT_ASSERT_STATUS(mk->alloc(1, 16, &p), NXL_ERR_INVALID_PARAM);

    XT_ASSERT_OK(mk->alloc(0, size, &p));
    a = p;
    XT_ASSERT_OK(mk->alloc(0, size, &p));
    b = p;
    XT_ASSERT_EQ((uintptr_t)a % 4096, 0);
    XT_ASSERT_EQ((uintptr_t)b % 4096, 0);
    for (i = 0; i < size; i++) {
        a[i] = (uint8_t)(i * 7 + 1);
    }
    XT_ASSERT_OK(mk->copy(b, a, size, NXL_COPY_H2H));
    XT_ASSERT(memcmp(a, b, size) == 0);
    XT_ASSERT_STATUS(mk->copy(NULL, a, 1, NXL_COPY_H2H), NXL_ERR_INVALID_PARAM);

    /* Streams and events are synchronous: done once recorded. */
    XT_ASSERT_OK(mk->stream_create(0, &s));
    XT_ASSERT_OK(mk->event_create(&e));
    memset(b, 0, size);
    XT_ASSERT_OK(mk->copy_async(b, a, size, NXL_COPY_H2H, s));
    XT_ASSERT(memcmp(a, b, size) == 0);
    XT_ASSERT_OK(mk->event_record(e, s));
    XT_ASSERT_EQ(mk->event_query(e), NXL_OK);
    XT_ASSERT_OK(mk->event_sync(e));
    XT_ASSERT_OK(mk->stream_sync(s));
    /* A handle of the wrong sort is refused, not misread. */
    XT_ASSERT_STATUS(mk->event_query((nxl_event_t *)s), NXL_ERR_INVALID_PARAM);
    mk->event_destroy(e);
    mk->stream_destroy(s);
    mk->event_destroy(NULL);
    mk->stream_destroy(NULL);

    XT_ASSERT_STATUS(mk->ipc_get(a, &h), NXL_ERR_NOT_SUPPORTED);
    mk->free(0, a, size);
    mk->free(0, b, size);
    mk->free(0, NULL, 0);
    XT_ASSERT_OK(mk->alloc(0, 0, &p)); /* size 0 still gives a pointer */
    XT_ASSERT(p != NULL);
    mk->free(0, p, 0);
    XT_ASSERT_EQ(xt_leaks(), 0);
    return 0;
}

static int
t_host_kind(void)
{
    XT_ASSERT_STR(nxl_memkind_host()->name, "host");
    XT_ASSERT_EQ(nxl_memkind_host()->type, NXL_MEMKIND_HOST);
    return check_host_kind(nxl_memkind_host(), 3 * 4096 + 17);
}

static int
t_pinned_kind(void)
{
    XT_ASSERT_STR(nxl_memkind_pinned()->name, "pinned");
    XT_ASSERT_EQ(nxl_memkind_pinned()->type, NXL_MEMKIND_PINNED);
    return check_host_kind(nxl_memkind_pinned(), 5 * 4096 + 3);
}

/* A failed mlock (RLIMIT_MEMLOCK 0) still returns usable memory. */
static int
t_pinned_mlock_limit(void)
{
    const nxl_memkind_ops_t *mk = nxl_memkind_pinned();
    struct rlimit rl = {0, 0};
    uint8_t *p;
    void *v;

    XT_SKIP_IF(nxl_memkind_cuda()->probe() == NXL_OK,
               "CUDA present: pinned memory comes from cuMemHostAlloc");
    XT_ASSERT(setrlimit(RLIMIT_MEMLOCK, &rl) == 0);
    XT_ASSERT_OK(mk->alloc(0, 1 << 20, &v));
    p = v;
    p[0] = 1;
    p[(1 << 20) - 1] = 2;
    XT_ASSERT_OK(mk->alloc(0, 4096, &v)); /* warns only once */
    mk->free(0, v, 4096);
    mk->free(0, p, 1 << 20);
    return 0;
}

/* check_cuda_real exercises the CUDA kind on a real device. */
static int
check_cuda_real(const nxl_memkind_ops_t *mk)
{
    enum { N = 1 << 20 };
    nxl_stream_t *s = NULL;
    nxl_event_t *e = NULL;
    uint8_t *h = malloc(N), *back = malloc(N);
    void *d1, *d2;
    int count = 0, i;
    nxl_status_t st;

    XT_ASSERT(h != NULL && back != NULL);
    XT_ASSERT_OK(mk->device_count(&count));
    XT_ASSERT(count >= 1);
    for (i = 0; i < N; i++) {
        h[i] = (uint8_t)(i * 13);
    }
    XT_ASSERT_OK(mk->alloc(0, N, &d1));
    XT_ASSERT_OK(mk->alloc(0, N, &d2));
    XT_ASSERT_EQ((uintptr_t)d1 % 4096, 0);
    XT_ASSERT_OK(mk->copy(d1, h, N, NXL_COPY_H2D));
    XT_ASSERT_OK(mk->copy(d2, d1, N, NXL_COPY_D2D));
    XT_ASSERT_OK(mk->copy(back, d2, N, NXL_COPY_D2H));
    XT_ASSERT(memcmp(h, back, N) == 0);

    XT_ASSERT_OK(mk->stream_create(0, &s));
    XT_ASSERT_OK(mk->event_create(&e));
    XT_ASSERT_EQ(mk->event_query(e), NXL_OK); /* never recorded */
    memset(back, 0, N);
    XT_ASSERT_OK(mk->copy_async(back, d1, N, NXL_COPY_D2H, s));
    XT_ASSERT_OK(mk->event_record(e, s));
    st = mk->event_query(e);
    XT_ASSERT(st == NXL_OK || st == NXL_IN_PROG);
    XT_ASSERT_OK(mk->event_sync(e));
    XT_ASSERT_EQ(mk->event_query(e), NXL_OK);
    XT_ASSERT(memcmp(h, back, N) == 0);
    XT_ASSERT_OK(mk->stream_sync(s));

    /* Batched: 64 scattered 16 KiB pieces device -> device (reversed
     * order), then back to pinned host memory in one batch (the KV
     * executor batches only pinned and device memory). */
    {
        enum { P = 64, PS = N / P };
        const nxl_memkind_ops_t *pk = nxl_memkind_pinned();
        void *dd[P], *hd[P], *pin = NULL;
        const void *sd[P], *ds[P];
        size_t lens[P];

        XT_ASSERT_OK(pk->alloc(0, N, &pin));
        for (i = 0; i < P; i++) {
            dd[i] = (uint8_t *)d2 + (size_t)(P - 1 - i) * PS;
            sd[i] = (const uint8_t *)d1 + (size_t)i * PS;
            hd[i] = (uint8_t *)pin + (size_t)i * PS;
            ds[i] = (const uint8_t *)d2 + (size_t)(P - 1 - i) * PS;
            lens[i] = PS;
        }
        /* Twice: through the copy engines (no flag), then through the
         * gather kernel (MAPPED: all of it is device or pinned memory). */
        for (int f = 0; f < 2; f++) {
            unsigned fl = f ? NXL_COPY_BATCH_MAPPED : 0;

            memset(pin, 0, N);
            XT_ASSERT_OK(mk->copy(d2, pin, N, NXL_COPY_H2D));
            st = mk->copy_batch_async(dd, sd, lens, P, NXL_COPY_D2D, fl, s);
            if (st == NXL_ERR_NOT_SUPPORTED) {
                printf("  no batched copy (flags %u): %s\n", fl,
                       nxl_last_error());
                continue;
            }
            XT_ASSERT_OK(st);
            XT_ASSERT_OK(
                mk->copy_batch_async(hd, ds, lens, P, NXL_COPY_D2H, fl, s));
            XT_ASSERT_OK(mk->stream_sync(s));
            XT_ASSERT(memcmp(h, pin, N) == 0);
            XT_ASSERT_OK(
                mk->copy_batch_async(hd, ds, lens, 0, NXL_COPY_D2H, fl, s));
            printf("  batched copies, flags %u: bytes checked\n", fl);
        }
        /* The kernel's byte path: odd lengths at odd offsets, host to
         * device and back. */
        for (i = 0; i < P; i++) {
            hd[i] = (uint8_t *)d2 + (size_t)i * PS + 1;
            ds[i] = (const uint8_t *)pin + (size_t)i * PS + 3;
            lens[i] = PS - 7;
        }
        memset(back, 0, N);
        for (i = 0; i < N; i++) {
            ((uint8_t *)pin)[i] = (uint8_t)(i * 7 + 1);
        }
        st = mk->copy_batch_async(hd, ds, lens, P, NXL_COPY_H2D,
                                  NXL_COPY_BATCH_MAPPED, s);
        if (st != NXL_ERR_NOT_SUPPORTED) {
            XT_ASSERT_OK(st);
            XT_ASSERT_OK(mk->stream_sync(s));
            XT_ASSERT_OK(mk->copy(back, d2, N, NXL_COPY_D2H));
            for (i = 0; i < P; i++) {
                XT_ASSERT(memcmp(back + (size_t)i * PS + 1,
                                 (uint8_t *)pin + (size_t)i * PS + 3,
                                 PS - 7) == 0);
            }
            printf("  unaligned batch: bytes checked\n");
        }
        pk->free(0, pin, N);
    }
    mk->event_destroy(e);
    mk->stream_destroy(s);
    XT_ASSERT_STATUS(mk->stream_create(count, &s), NXL_ERR_INVALID_PARAM);
    mk->free(0, d1, N);
    mk->free(0, d2, N);
    free(h);
    free(back);
    return 0;
}

/* Without a driver or device every op says why; with one, it works. */
static int
t_cuda_kind(void)
{
    const nxl_memkind_ops_t *mk = nxl_memkind_cuda();
    char why[512];
    nxl_stream_t *s;
    nxl_event_t *e;
    uint8_t x = 1, y = 0;
    void *p;
    int count;

    XT_ASSERT_STR(mk->name, "cuda");
    XT_ASSERT_EQ(mk->type, NXL_MEMKIND_DEVICE);
    XT_ASSERT_EQ(mk->mem, NXL_VRAM);
    XT_ASSERT(nxl_memkind_device() == mk); /* nothing installed */
    if (mk->probe() == NXL_OK) {
        printf("  CUDA present: running real device checks\n");
        return check_cuda_real(mk);
    }
    XT_ASSERT_STATUS(mk->probe(), NXL_ERR_NOT_SUPPORTED);
    snprintf(why, sizeof(why), "%s", nxl_last_error());
    XT_ASSERT(strncmp(why, "no CUDA driver: ", 16) == 0 ||
              strncmp(why, "no CUDA device", 14) == 0 ||
              strncmp(why, "no usable CUDA driver", 21) == 0);
    if (strncmp(why, "no CUDA driver: ", 16) == 0) {
        XT_ASSERT(strstr(why, "libcuda.so.1") != NULL);
    }
    /* Every op reports the same reason. */
    XT_ASSERT_STATUS(mk->alloc(0, 4096, &p), NXL_ERR_NOT_SUPPORTED);
    XT_ASSERT_STR(nxl_last_error(), why);
    XT_ASSERT_STATUS(mk->device_count(&count), NXL_ERR_NOT_SUPPORTED);
    XT_ASSERT_STATUS(mk->copy(&y, &x, 1, NXL_COPY_H2D), NXL_ERR_NOT_SUPPORTED);
    XT_ASSERT_STATUS(mk->stream_create(0, &s), NXL_ERR_NOT_SUPPORTED);
    XT_ASSERT_STATUS(mk->event_create(&e), NXL_ERR_NOT_SUPPORTED);
    XT_ASSERT_STR(nxl_last_error(), why);
    mk->free(0, NULL, 0);
    /* The device copy goes to CUDA and fails the same way. */
    XT_ASSERT_STATUS(
        nxl_memkind_copy(&y, NXL_MEMKIND_DEVICE, &x, NXL_MEMKIND_HOST, 1),
        NXL_ERR_NOT_SUPPORTED);
    XT_ASSERT_EQ(y, 0);
    /* Pinned memory does not need CUDA. */
    XT_ASSERT_OK(nxl_memkind_pinned()->alloc(0, 4096, &p));
    nxl_memkind_pinned()->free(0, p, 4096);
    printf("  no CUDA here: %s\n", why);
    return 0;
}

static int
t_set_device_validation(void)
{
    nxl_memkind_ops_t bad = *xt_fakedev_ops();

    XT_ASSERT(nxl_memkind_device() == nxl_memkind_cuda());
    bad.abi_version = NXL_MEMKIND_ABI_VERSION + 1;
    XT_ASSERT_STATUS(nxl_memkind_set_device(&bad), NXL_ERR_INVALID_PARAM);
    bad = *xt_fakedev_ops();
    bad.size = sizeof(nxl_memkind_ops_t) - 8;
    XT_ASSERT_STATUS(nxl_memkind_set_device(&bad), NXL_ERR_INVALID_PARAM);
    bad = *xt_fakedev_ops();
    bad.type = NXL_MEMKIND_HOST;
    XT_ASSERT_STATUS(nxl_memkind_set_device(&bad), NXL_ERR_INVALID_PARAM);
    XT_ASSERT(strstr(nxl_last_error(), "fakedev") != NULL);
    bad = *xt_fakedev_ops();
    bad.name = NULL;
    XT_ASSERT_STATUS(nxl_memkind_set_device(&bad), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_memkind_set_device(nxl_memkind_host()),
                     NXL_ERR_INVALID_PARAM);
    /* Failures left the CUDA kind in place. */
    XT_ASSERT(nxl_memkind_device() == nxl_memkind_cuda());

    xt_fakedev_install();
    XT_ASSERT(nxl_memkind_device() == xt_fakedev_ops());
    XT_ASSERT_STR(nxl_memkind_device()->name, "fakedev");
    /* A failed install keeps the installed kind. */
    bad = *xt_fakedev_ops();
    bad.abi_version = 0;
    XT_ASSERT_STATUS(nxl_memkind_set_device(&bad), NXL_ERR_INVALID_PARAM);
    XT_ASSERT(nxl_memkind_device() == xt_fakedev_ops());
    /* A version 2 table (before copy_batch_async) is accepted and reads
     * as having no batched copy; one cut short of version 2 is not. */
    bad = *xt_fakedev_ops();
    bad.abi_version = 2;
    bad.size = NXL_MEMKIND_V2_SIZE;
    XT_ASSERT(!NXL_MEMKIND_HAS(&bad, copy_batch_async));
    XT_ASSERT(NXL_MEMKIND_HAS(&bad, mem_range));
    XT_ASSERT_OK(nxl_memkind_set_device(&bad));
    bad.size = NXL_MEMKIND_V2_SIZE - 8;
    XT_ASSERT_STATUS(nxl_memkind_set_device(&bad), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_OK(nxl_memkind_set_device(xt_fakedev_ops()));
    XT_ASSERT(NXL_MEMKIND_HAS(xt_fakedev_ops(), copy_batch_async));
    /* A copy of the table is a valid kind too. */
    bad = *xt_fakedev_ops();
    XT_ASSERT_OK(nxl_memkind_set_device(&bad));
    XT_ASSERT(nxl_memkind_device() == &bad);
    XT_ASSERT_OK(nxl_memkind_set_device(NULL));
    XT_ASSERT(nxl_memkind_device() == nxl_memkind_cuda());
    return 0;
}

/* A chain of copies a -> b1 -> b2 ... on one stream only carries the data
 * to the end when the worker runs them in order. */
static int
t_fakedev_stream_order(void)
{
    enum { HOPS = 64, SZ = 4096 };
    const nxl_memkind_ops_t *mk = xt_fakedev_ops();
    nxl_stream_t *s;
    nxl_event_t *e;
    uint8_t src[SZ], out[SZ];
    void *bufs[HOPS + 1];
    int i;

    for (i = 0; i < SZ; i++) {
        src[i] = (uint8_t)(i ^ 0x5a);
    }
    for (i = 0; i <= HOPS; i++) {
        XT_ASSERT_OK(mk->alloc(i % 2, SZ, &bufs[i]));
    }
    XT_ASSERT_EQ(xt_fakedev_live_allocs(), HOPS + 1);
    xt_fakedev_set_delay_us(200); /* let the queue build up */
    XT_ASSERT_OK(mk->stream_create(0, &s));
    XT_ASSERT_OK(mk->event_create(&e));
    XT_ASSERT_OK(mk->copy_async(bufs[0], src, SZ, NXL_COPY_H2D, s));
    for (i = 0; i < HOPS; i++) {
        XT_ASSERT_OK(mk->copy_async(bufs[i + 1], bufs[i], SZ, NXL_COPY_D2D, s));
    }
    XT_ASSERT_OK(mk->copy_async(out, bufs[HOPS], SZ, NXL_COPY_D2H, s));
    XT_ASSERT_OK(mk->event_record(e, s));
    XT_ASSERT_EQ(mk->event_query(e), NXL_IN_PROG);
    XT_ASSERT_OK(mk->event_sync(e));
    XT_ASSERT(memcmp(src, out, SZ) == 0);
    XT_ASSERT_EQ(xt_fakedev_async_copies(), HOPS + 2);
    XT_ASSERT_EQ(xt_fakedev_bytes_copied(), (uint64_t)(HOPS + 2) * SZ);
    mk->event_destroy(e);
    mk->stream_destroy(s);
    for (i = 0; i <= HOPS; i++) {
        mk->free(i % 2, bufs[i], SZ);
    }
    XT_ASSERT_EQ(xt_fakedev_live_allocs(), 0);
    XT_ASSERT_EQ(xt_fakedev_live_streams(), 0);
    XT_ASSERT_EQ(xt_fakedev_live_events(), 0);
    XT_ASSERT_STATUS(mk->stream_create(2, &s), NXL_ERR_INVALID_PARAM);
    XT_ASSERT_EQ(xt_leaks(), 0);
    return 0;
}

/* With a delay the event is observably in progress, then done. */
static int
t_fakedev_event_in_prog(void)
{
    const nxl_memkind_ops_t *mk = xt_fakedev_ops();
    uint8_t a[256], b[256];
    nxl_stream_t *s;
    nxl_event_t *e;
    uint64_t t0;
    int polls = 0;
    nxl_status_t st;

    memset(a, 7, sizeof(a));
    memset(b, 0, sizeof(b));
    XT_ASSERT_OK(mk->stream_create(1, &s));
    XT_ASSERT_OK(mk->event_create(&e));
    XT_ASSERT_EQ(mk->event_query(e), NXL_OK); /* never recorded */
    xt_fakedev_set_delay_us(150 * 1000);
    t0 = xt_now_ms();
    XT_ASSERT_OK(mk->copy_async(b, a, sizeof(a), NXL_COPY_H2D, s));
    XT_ASSERT_OK(mk->event_record(e, s));
    while ((st = mk->event_query(e)) == NXL_IN_PROG) {
        polls++;
        usleep(1000);
    }
    XT_ASSERT_OK(st);
    XT_ASSERT(polls > 0);
    XT_ASSERT(xt_now_ms() - t0 >= 140);
    XT_ASSERT(memcmp(a, b, sizeof(a)) == 0);
    XT_ASSERT_EQ(xt_fakedev_async_copies(), 1);
    /* Re-recording makes it pending again until the worker gets there. */
    memset(a, 9, sizeof(a));
    XT_ASSERT_OK(mk->copy_async(b, a, sizeof(a), NXL_COPY_H2D, s));
    XT_ASSERT_OK(mk->event_record(e, s));
    XT_ASSERT_EQ(mk->event_query(e), NXL_IN_PROG);
    XT_ASSERT_OK(mk->event_sync(e));
    XT_ASSERT_EQ(b[0], 9);
    mk->event_destroy(e);
    mk->stream_destroy(s);
    return 0;
}

/* An injected failure reaches the event recorded after it (only that
 * one) and the next stream_sync. */
static int
t_fakedev_event_error(void)
{
    const nxl_memkind_ops_t *mk = xt_fakedev_ops();
    uint8_t a[64], b[64], c[64];
    nxl_stream_t *s;
    nxl_event_t *e1, *e2;

    memset(a, 3, sizeof(a));
    memset(b, 0, sizeof(b));
    memset(c, 0, sizeof(c));
    XT_ASSERT_OK(mk->stream_create(0, &s));
    XT_ASSERT_OK(mk->event_create(&e1));
    XT_ASSERT_OK(mk->event_create(&e2));
    xt_fakedev_fail_next(1);
    XT_ASSERT_OK(mk->copy_async(b, a, sizeof(a), NXL_COPY_H2D, s));
    XT_ASSERT_OK(mk->event_record(e1, s));
    XT_ASSERT_OK(mk->copy_async(c, a, sizeof(a), NXL_COPY_H2D, s));
    XT_ASSERT_OK(mk->event_record(e2, s));
    XT_ASSERT_STATUS(mk->event_sync(e1), NXL_ERR_BACKEND);
    XT_ASSERT(strstr(nxl_last_error(), "injected") != NULL);
    XT_ASSERT_STATUS(mk->event_query(e1), NXL_ERR_BACKEND);
    XT_ASSERT_OK(mk->event_sync(e2));
    XT_ASSERT_EQ(b[0], 0); /* the failed copy wrote nothing */
    XT_ASSERT_EQ(c[0], 3);
    XT_ASSERT_STATUS(mk->stream_sync(s), NXL_ERR_BACKEND);
    XT_ASSERT_OK(mk->stream_sync(s)); /* reported once */
    XT_ASSERT_EQ(xt_fakedev_async_copies(), 1);
    /* Blocking copies fail the same way. */
    xt_fakedev_fail_next(1);
    XT_ASSERT_STATUS(mk->copy(b, a, sizeof(a), NXL_COPY_H2D), NXL_ERR_BACKEND);
    XT_ASSERT_OK(mk->copy(b, a, sizeof(a), NXL_COPY_H2D));
    XT_ASSERT_EQ(b[0], 3);
    XT_ASSERT_EQ(xt_fakedev_sync_copies(), 1);
    mk->event_destroy(e1);
    mk->event_destroy(e2);
    mk->stream_destroy(s);
    return 0;
}

/* stream_destroy runs the whole queue first; an event destroyed while
 * pending is freed by the worker. */
static int
t_fakedev_stream_destroy_waits(void)
{
    enum { N = 10 };
    const nxl_memkind_ops_t *mk = xt_fakedev_ops();
    uint8_t src[N], dst[N];
    nxl_stream_t *s;
    nxl_event_t *e, *orphan;
    int i;

    for (i = 0; i < N; i++) {
        src[i] = (uint8_t)(i + 1);
        dst[i] = 0;
    }
    xt_fakedev_set_delay_us(10 * 1000);
    XT_ASSERT_OK(mk->stream_create(0, &s));
    XT_ASSERT_OK(mk->event_create(&e));
    XT_ASSERT_OK(mk->event_create(&orphan));
    for (i = 0; i < N; i++) {
        XT_ASSERT_OK(mk->copy_async(&dst[i], &src[i], 1, NXL_COPY_H2D, s));
    }
    XT_ASSERT_OK(mk->event_record(orphan, s));
    mk->event_destroy(orphan); /* still pending: the marker holds it */
    XT_ASSERT_EQ(xt_fakedev_live_events(), 2);
    XT_ASSERT_OK(mk->event_record(e, s));
    XT_ASSERT_EQ(mk->event_query(e), NXL_IN_PROG);
    XT_ASSERT(xt_fakedev_async_copies() < N);
    mk->stream_destroy(s);
    XT_ASSERT_EQ(xt_fakedev_async_copies(), N);
    XT_ASSERT(memcmp(src, dst, N) == 0);
    XT_ASSERT_EQ(mk->event_query(e), NXL_OK); /* outlives its stream */
    mk->event_destroy(e);
    XT_ASSERT_EQ(xt_fakedev_live_events(), 0);
    XT_ASSERT_EQ(xt_fakedev_live_streams(), 0);
    XT_ASSERT_EQ(xt_leaks(), 0);
    return 0;
}

enum { XT_MT_THREADS = 4, XT_MT_COPIES = 500, XT_MT_SZ = 64 };

typedef struct {
    int id;
    uint8_t *dev; /* this thread's slice of fake device memory */
    uint8_t src[XT_MT_COPIES][XT_MT_SZ];
    int rc;
} xt_mt_arg;

/* xt_mt_worker uploads XT_MT_COPIES slices on its own stream and checks
 * them after one event. */
static void *
xt_mt_worker(void *p)
{
    const nxl_memkind_ops_t *mk = xt_fakedev_ops();
    xt_mt_arg *a = p;
    nxl_stream_t *s = NULL;
    nxl_event_t *e = NULL;
    int i;

    a->rc = 1;
    if (mk->stream_create(a->id % 2, &s) != NXL_OK ||
        mk->event_create(&e) != NXL_OK) {
        return NULL;
    }
    for (i = 0; i < XT_MT_COPIES; i++) {
        memset(a->src[i], (a->id * 31 + i) & 0xff, XT_MT_SZ);
        if (mk->copy_async(a->dev + (size_t)i * XT_MT_SZ, a->src[i], XT_MT_SZ,
                           NXL_COPY_H2D, s) != NXL_OK) {
            return NULL;
        }
    }
    if (mk->event_record(e, s) != NXL_OK || mk->event_sync(e) != NXL_OK) {
        return NULL;
    }
    for (i = 0; i < XT_MT_COPIES; i++) {
        if (memcmp(a->dev + (size_t)i * XT_MT_SZ, a->src[i], XT_MT_SZ) != 0) {
            return NULL;
        }
    }
    mk->event_destroy(e);
    mk->stream_destroy(s);
    a->rc = 0;
    return NULL;
}

static int
t_fakedev_threads(void)
{
    const nxl_memkind_ops_t *mk = xt_fakedev_ops();
    static xt_mt_arg args[XT_MT_THREADS];
    pthread_t th[XT_MT_THREADS];
    size_t slice = (size_t)XT_MT_COPIES * XT_MT_SZ;
    void *dev;
    int i;

    XT_ASSERT_OK(mk->alloc(0, slice * XT_MT_THREADS, &dev));
    for (i = 0; i < XT_MT_THREADS; i++) {
        args[i].id = i;
        args[i].dev = (uint8_t *)dev + slice * (size_t)i;
        XT_ASSERT(pthread_create(&th[i], NULL, xt_mt_worker, &args[i]) == 0);
    }
    for (i = 0; i < XT_MT_THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    for (i = 0; i < XT_MT_THREADS; i++) {
        XT_ASSERT_EQ(args[i].rc, 0);
    }
    XT_ASSERT_EQ(xt_fakedev_async_copies(),
                 (uint64_t)XT_MT_THREADS * XT_MT_COPIES);
    XT_ASSERT_EQ(xt_fakedev_live_streams(), 0);
    mk->free(0, dev, slice * XT_MT_THREADS);
    XT_ASSERT_EQ(xt_leaks(), 0);
    return 0;
}

/* nxl_memkind_copy goes through the device kind exactly when a side is
 * device memory. */
static int
t_copy_across_kinds(void)
{
    const nxl_memkind_ops_t *dk;
    uint8_t host[100], back[100];
    void *d1, *d2, *pin;
    int i;

    xt_fakedev_install();
    dk = nxl_memkind_device();
    for (i = 0; i < 100; i++) {
        host[i] = (uint8_t)(200 - i);
    }
    XT_ASSERT_OK(dk->alloc(0, 100, &d1));
    XT_ASSERT_OK(dk->alloc(1, 100, &d2));
    XT_ASSERT_OK(nxl_memkind_pinned()->alloc(0, 100, &pin));

    XT_ASSERT_OK(
        nxl_memkind_copy(d1, NXL_MEMKIND_DEVICE, host, NXL_MEMKIND_HOST, 100));
    XT_ASSERT_EQ(xt_fakedev_sync_copies(), 1);
    XT_ASSERT_OK(
        nxl_memkind_copy(d2, NXL_MEMKIND_DEVICE, d1, NXL_MEMKIND_DEVICE, 100));
    XT_ASSERT_OK(
        nxl_memkind_copy(pin, NXL_MEMKIND_PINNED, d2, NXL_MEMKIND_DEVICE, 100));
    XT_ASSERT_EQ(xt_fakedev_sync_copies(), 3);
    XT_ASSERT_OK(
        nxl_memkind_copy(back, NXL_MEMKIND_HOST, pin, NXL_MEMKIND_PINNED, 100));
    XT_ASSERT_EQ(xt_fakedev_sync_copies(), 3); /* host side: memcpy */
    XT_ASSERT(memcmp(host, back, 100) == 0);
    XT_ASSERT_EQ(xt_fakedev_bytes_copied(), 300);

    /* The device kind's failure comes back as is. */
    xt_fakedev_fail_next(1);
    XT_ASSERT_STATUS(
        nxl_memkind_copy(back, NXL_MEMKIND_HOST, d1, NXL_MEMKIND_DEVICE, 100),
        NXL_ERR_BACKEND);
    XT_ASSERT_STATUS(nxl_memkind_copy(back, (nxl_memkind_type_t)7, d1,
                                      NXL_MEMKIND_DEVICE, 100),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(
        nxl_memkind_copy(NULL, NXL_MEMKIND_HOST, d1, NXL_MEMKIND_DEVICE, 1),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT_OK(
        nxl_memkind_copy(NULL, NXL_MEMKIND_HOST, NULL, NXL_MEMKIND_DEVICE, 0));

    dk->free(0, d1, 100);
    dk->free(1, d2, 100);
    nxl_memkind_pinned()->free(0, pin, 100);
    XT_ASSERT_EQ(xt_fakedev_live_allocs(), 0);
    XT_ASSERT_OK(nxl_memkind_set_device(NULL));
    return 0;
}

const xt_suite xt_suite_memkind = {
    .name = "memkind",
    .timeout_s = 30,
    .cases =
        (const xt_case[]){
            {"host_kind", t_host_kind},
            {"pinned_kind", t_pinned_kind},
            {"pinned_mlock_limit", t_pinned_mlock_limit},
            {"cuda_kind", t_cuda_kind},
            {"set_device_validation", t_set_device_validation},
            {"fakedev_stream_order", t_fakedev_stream_order},
            {"fakedev_event_in_prog", t_fakedev_event_in_prog},
            {"fakedev_event_error", t_fakedev_event_error},
            {"fakedev_stream_destroy_waits", t_fakedev_stream_destroy_waits},
            {"fakedev_threads", t_fakedev_threads},
            {"copy_across_kinds", t_copy_across_kinds},
            {NULL, NULL},
        },
};
