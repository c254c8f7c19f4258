/* test_kv_storage.c - KV storage: allocation of each kind, registration
 * with an agent (idempotent, failure leaves the storage usable), disk
 * files, and the kind -> descriptor mapping. */
#include "harness.h"

#include "kv/kv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* posix_agent makes an agent with the POSIX backend only. */
static int
posix_agent(const char *name, nxl_kv_agent_t **a_p)
{
    const char *names[] = {"POSIX"};

    XT_ASSERT_OK(nxl_kv_agent_with_backends(name, names, 1, a_p));
    return 0;
}

/* registered: 1 when s's descriptor is registered on a's agent, 0 when
 * not, -1 on another error. */
static int
registered(nxl_kv_agent_t *a, const nxl_kv_storage_t *s)
{
    nxl_kv_desc_t d;
    nxl_desc_t desc;
    nxl_dlist_t dl;
    nxl_prepped_t *p;
    nxl_status_t st;

    nxl_kv_storage_desc(s, &d);
    desc = (nxl_desc_t){d.addr, d.size, d.dev_id};
    dl = (nxl_dlist_t){d.mem, &desc, 1};
    st = nxl_dlist_prep(nxl_kv_agent_raw(a), NULL, &dl, NULL, &p);
    if (st == NXL_OK) {
        nxl_dlist_release(p);
        return 1;
    }
    return st == NXL_ERR_NOT_FOUND ? 0 : -1;
}

/* host_kind_cycle runs alloc -> register -> use -> destroy for a host
 * kind. */
static int
host_kind_cycle(nxl_kv_kind_t kind)
{
    nxl_kv_agent_t *a;
    nxl_kv_storage_t *s;
    nxl_kv_loc_t loc;
    nxl_kv_desc_t d;

    if (posix_agent("storage-host", &a) != 0) {
        return 1;
    }
    XT_ASSERT_OK(
        nxl_kv_storage_alloc((nxl_kv_loc_t){kind, 5}, 3 * 4096 + 1, &s));
    loc = nxl_kv_storage_loc(s);
    XT_ASSERT_EQ(loc.kind, kind);
    XT_ASSERT_EQ(loc.index, 0); /* host kinds have index 0 */
    XT_ASSERT(nxl_kv_storage_ptr(s) != NULL);
    XT_ASSERT_EQ(nxl_kv_storage_addr(s),
                 (uint64_t)(uintptr_t)nxl_kv_storage_ptr(s));
    XT_ASSERT_EQ(nxl_kv_storage_size(s), 3 * 4096 + 1);
    XT_ASSERT_EQ(nxl_kv_storage_addr(s) % 4096, 0);
    memset(nxl_kv_storage_ptr(s), 0xab, nxl_kv_storage_size(s));
    nxl_kv_storage_desc(s, &d);
    XT_ASSERT_EQ(d.mem, NXL_DRAM);
    XT_ASSERT_EQ(d.dev_id, 0);

    XT_ASSERT(!nxl_kv_storage_is_registered(s));
    XT_ASSERT_EQ(registered(a, s), 0);
    XT_ASSERT_OK(nxl_kv_storage_register(s, a));
    XT_ASSERT(nxl_kv_storage_is_registered(s));
    XT_ASSERT_EQ(registered(a, s), 1);
    /* Register twice: no-op (a second nxl_mem_register would fail with
     * NOT_ALLOWED). */
    XT_ASSERT_OK(nxl_kv_storage_register(s, a));
    XT_ASSERT(nxl_kv_storage_is_registered(s));
    /* Deregister, register again, then let destroy deregister. */
    XT_ASSERT_OK(nxl_kv_storage_deregister(s));
    XT_ASSERT(!nxl_kv_storage_is_registered(s));
    XT_ASSERT_EQ(registered(a, s), 0);
    XT_ASSERT_OK(nxl_kv_storage_deregister(s));
    XT_ASSERT_OK(nxl_kv_storage_register(s, a));
    XT_ASSERT_EQ(registered(a, s), 1);
    nxl_kv_storage_destroy(s);
    /* The agent holds no registration any more: registering the same
     * range anew works. */
    nxl_kv_agent_destroy(a);
    nxl_kv_storage_destroy(NULL);
    return xt_leaks();
}

static int
t_system_cycle(void)
{
    return host_kind_cycle(NXL_KV_SYSTEM);
}

static int
t_pinned_cycle(void)
{
    return host_kind_cycle(NXL_KV_PINNED);
}

/* The storage's registration goes with the storage, not the agent that
 * asks second. */
static int
t_register_other_agent(void)
{
    nxl_kv_agent_t *a, *b;
    nxl_kv_storage_t *s;

    if (posix_agent("storage-a", &a) != 0 || posix_agent("storage-b", &b)) {
        return 1;
    }
    XT_ASSERT_OK(
        nxl_kv_storage_alloc((nxl_kv_loc_t){NXL_KV_SYSTEM, 0}, 8192, &s));
    XT_ASSERT_OK(nxl_kv_storage_register(s, a));
    XT_ASSERT_OK(nxl_kv_storage_register(s, b));
    XT_ASSERT_EQ(registered(a, s), 1);
    XT_ASSERT_EQ(registered(b, s), 0);
    XT_ASSERT_OK(nxl_kv_storage_deregister(s));
    XT_ASSERT_EQ(registered(a, s), 0);
    nxl_kv_storage_destroy(s);
    nxl_kv_agent_destroy(a);
    nxl_kv_agent_destroy(b);
    return xt_leaks();
}

/* VRAM no backend of the agent takes: registration fails, the storage
 * stays valid and unregistered. */
static int
t_failed_registration(void)
{
    nxl_kv_agent_t *a;
    nxl_kv_storage_t *s;
    size_t size = 16384;
    uint8_t *mem = calloc(1, size);
    nxl_kv_desc_t d;
    nxl_status_t st;

    XT_ASSERT(mem != NULL);
    if (posix_agent("storage-fail", &a) != 0) {
        return 1;
    }
    XT_ASSERT_OK(nxl_kv_storage_wrap((nxl_kv_loc_t){NXL_KV_DEVICE, 0},
                                     (uint64_t)(uintptr_t)mem, size, &s));
    st = nxl_kv_storage_register(s, a);
    XT_ASSERT(st != NXL_OK);
    XT_ASSERT(nxl_last_error()[0] != '\0');
    XT_ASSERT(!nxl_kv_storage_is_registered(s));
    XT_ASSERT(nxl_kv_storage_ptr(s) == mem);
    XT_ASSERT_EQ(nxl_kv_storage_size(s), size);
    nxl_kv_storage_desc(s, &d);
    XT_ASSERT_EQ(d.mem, NXL_VRAM);
    XT_ASSERT_OK(nxl_kv_storage_deregister(s));
    /* A second try fails the same way, nothing half-registered. */
    XT_ASSERT_STATUS(nxl_kv_storage_register(s, a), st);
    nxl_kv_storage_destroy(s);
    /* wrap does not own: the memory is still ours. */
    mem[size - 1] = 1;
    free(mem);
    nxl_kv_agent_destroy(a);
    return xt_leaks();
}

/* make_dir creates a fresh directory /tmp/h3-kvst-XXXXXX in buf. */
static int
make_dir(char *buf, size_t cap)
{
    snprintf(buf, cap, "/tmp/h3-kvst-XXXXXX");
    XT_ASSERT(mkdtemp(buf) != NULL);
    return 0;
}

static int
t_disk_cycle(void)
{
    char dir[64], path[256], buf[4096];
    nxl_kv_agent_t *a;
    nxl_kv_storage_t *s;
    nxl_kv_loc_t loc;
    nxl_kv_desc_t d;
    struct stat st;
    int fd;

    if (make_dir(dir, sizeof(dir)) != 0 || posix_agent("storage-disk", &a)) {
        return 1;
    }
    XT_ASSERT_OK(nxl_kv_storage_disk(dir, 1 << 20, 0, &s));
    loc = nxl_kv_storage_loc(s);
    XT_ASSERT_EQ(loc.kind, NXL_KV_DISK);
    fd = (int)loc.index;
    XT_ASSERT(fcntl(fd, F_GETFD) >= 0);
    XT_ASSERT(nxl_kv_storage_ptr(s) == NULL);
    XT_ASSERT_EQ(nxl_kv_storage_addr(s), 0);
    XT_ASSERT_EQ(nxl_kv_storage_size(s), 1 << 20);
    XT_ASSERT(fstat(fd, &st) == 0);
    XT_ASSERT_EQ(st.st_size, 1 << 20);
    XT_ASSERT_EQ(st.st_nlink, 1);
    XT_ASSERT(s->path != NULL && strncmp(s->path, dir, strlen(dir)) == 0);
    snprintf(path, sizeof(path), "%s", s->path);
    XT_ASSERT(access(path, F_OK) == 0);
    nxl_kv_storage_desc(s, &d);
    XT_ASSERT_EQ(d.mem, NXL_FILE);
    XT_ASSERT_EQ(d.dev_id, (uint64_t)fd);
    XT_ASSERT_EQ(d.addr, 0);
    XT_ASSERT_EQ(d.size, 1 << 20);

    XT_ASSERT_OK(nxl_kv_storage_register(s, a));
    XT_ASSERT(nxl_kv_storage_is_registered(s));
    XT_ASSERT_EQ(registered(a, s), 1);
    XT_ASSERT_OK(nxl_kv_storage_register(s, a));
    memset(buf, 0x5a, sizeof(buf));
    XT_ASSERT(pwrite(fd, buf, sizeof(buf), 8192) == (ssize_t)sizeof(buf));
    memset(buf, 0, sizeof(buf));
    XT_ASSERT(pread(fd, buf, sizeof(buf), 8192) == (ssize_t)sizeof(buf));
    XT_ASSERT_EQ(buf[4095], 0x5a);

    nxl_kv_storage_destroy(s);
    XT_ASSERT(access(path, F_OK) != 0 && errno == ENOENT);
    XT_ASSERT(fcntl(fd, F_GETFD) < 0 && errno == EBADF);
    nxl_kv_agent_destroy(a);
    XT_ASSERT(rmdir(dir) == 0);
    return xt_leaks();
}

/* dir NULL: $TMPDIR; O_DIRECT where the file system supports it. */
static int
t_disk_tmpdir_direct(void)
{
    char dir[64];
    nxl_kv_storage_t *s;
    nxl_status_t st;
    int fl;

    if (make_dir(dir, sizeof(dir)) != 0) {
        return 1;
    }
    XT_ASSERT(setenv("TMPDIR", dir, 1) == 0);
    XT_ASSERT_OK(nxl_kv_storage_disk(NULL, 4096, 0, &s));
    XT_ASSERT(strncmp(s->path, dir, strlen(dir)) == 0);
    fl = fcntl((int)nxl_kv_storage_loc(s).index, F_GETFL);
    XT_ASSERT(fl >= 0 && (fl & O_ACCMODE) == O_RDWR && !(fl & O_DIRECT));
    nxl_kv_storage_destroy(s);

    st = nxl_kv_storage_disk(NULL, 8192, 1, &s);
    if (st == NXL_ERR_NOT_SUPPORTED) {
        XT_ASSERT(strstr(nxl_last_error(), "O_DIRECT") != NULL);
    } else {
        XT_ASSERT_OK(st);
        fl = fcntl((int)nxl_kv_storage_loc(s).index, F_GETFL);
        XT_ASSERT(fl >= 0 && (fl & O_DIRECT) && (fl & O_ACCMODE) == O_RDWR);
        XT_ASSERT_EQ(nxl_kv_storage_size(s), 8192);
        nxl_kv_storage_destroy(s);
    }
    /* Nothing is left behind in the directory. */
    XT_ASSERT(rmdir(dir) == 0);
    XT_ASSERT_STATUS(nxl_kv_storage_disk("/nonexistent-h3-dir", 4096, 0, &s),
                     NXL_ERR_IO);
    return xt_leaks();
}

/* Disk storage whose file is gone cannot be registered. */
static int
t_disk_unlinked(void)
{
    char dir[64], tmpl[128];
    nxl_kv_agent_t *a;
    nxl_kv_storage_t *s, *w;
    int fd;

    if (make_dir(dir, sizeof(dir)) != 0 || posix_agent("storage-unl", &a)) {
        return 1;
    }
    /* A storage of our own whose file someone removed. */
    XT_ASSERT_OK(nxl_kv_storage_disk(dir, 4096, 0, &s));
    XT_ASSERT(unlink(s->path) == 0);
    XT_ASSERT_STATUS(nxl_kv_storage_register(s, a), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_STR(nxl_last_error(), "Disk storage has already been unlinked. "
                                    "GDS registration will fail.");
    XT_ASSERT(!nxl_kv_storage_is_registered(s));
    nxl_kv_storage_destroy(s);

    /* A wrapped fd of an unlinked file. */
    snprintf(tmpl, sizeof(tmpl), "%s/w-XXXXXX", dir);
    fd = mkstemp(tmpl);
    XT_ASSERT(fd >= 0 && ftruncate(fd, 8192) == 0);
    XT_ASSERT_OK(nxl_kv_storage_wrap((nxl_kv_loc_t){NXL_KV_DISK, (uint64_t)fd},
                                     4096, 4096, &w));
    XT_ASSERT_OK(nxl_kv_storage_register(w, a));
    XT_ASSERT_OK(nxl_kv_storage_deregister(w));
    XT_ASSERT(unlink(tmpl) == 0);
    XT_ASSERT_STATUS(nxl_kv_storage_register(w, a), NXL_ERR_NOT_ALLOWED);
    XT_ASSERT_STR(nxl_last_error(), "Disk storage has already been unlinked. "
                                    "GDS registration will fail.");
    nxl_kv_storage_destroy(w);
    /* wrap does not own the fd. */
    XT_ASSERT(fcntl(fd, F_GETFD) >= 0);
    close(fd);
    nxl_kv_agent_destroy(a);
    XT_ASSERT(rmdir(dir) == 0);
    return xt_leaks();
}

/* The storage kind table (Dynamo §1.1). */
static int
t_desc_mapping(void)
{
    static uint8_t mem[4096];
    struct {
        nxl_kv_loc_t loc;
        uint64_t addr;
        nxl_mem_t mem;
        uint64_t dev;
        uint64_t index;
    } rows[] = {
        {{NXL_KV_SYSTEM, 0}, 0, NXL_DRAM, 0, 0},
        {{NXL_KV_SYSTEM, 7}, 0, NXL_DRAM, 0, 0},
        {{NXL_KV_PINNED, 0}, 0, NXL_DRAM, 0, 0},
        {{NXL_KV_DEVICE, 0}, 0, NXL_VRAM, 0, 0},
        {{NXL_KV_DEVICE, 3}, 0, NXL_VRAM, 3, 3},
        {{NXL_KV_DISK, 42}, 65536, NXL_FILE, 42, 42},
    };
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        nxl_kv_storage_t *s;
        nxl_kv_desc_t d;
        uint64_t addr = rows[i].loc.kind == NXL_KV_DISK
                            ? rows[i].addr
                            : (uint64_t)(uintptr_t)mem;

        XT_ASSERT_OK(nxl_kv_storage_wrap(rows[i].loc, addr, sizeof(mem), &s));
        nxl_kv_storage_desc(s, &d);
        if (d.mem != rows[i].mem || d.dev_id != rows[i].dev || d.addr != addr ||
            d.size != sizeof(mem) ||
            nxl_kv_storage_loc(s).index != rows[i].index) {
            XT_FAILF("row %zu (%s): mem %d dev %" PRIu64 " addr %" PRIx64, i,
                     nxl_kv_kind_name(rows[i].loc.kind), (int)d.mem, d.dev_id,
                     d.addr);
        }
        XT_ASSERT_EQ(nxl_kv_storage_ptr(s) == NULL,
                     rows[i].loc.kind == NXL_KV_DISK);
        nxl_kv_storage_destroy(s);
    }
    XT_ASSERT_EQ(nxl__kv_kind_mem(NXL_KV_SYSTEM), NXL_DRAM);
    XT_ASSERT_EQ(nxl__kv_kind_mem(NXL_KV_PINNED), NXL_DRAM);
    XT_ASSERT_EQ(nxl__kv_kind_mem(NXL_KV_DEVICE), NXL_VRAM);
    XT_ASSERT_EQ(nxl__kv_kind_mem(NXL_KV_DISK), NXL_FILE);
    return xt_leaks();
}

static int
t_bad_args(void)
{
    nxl_kv_storage_t *s = (nxl_kv_storage_t *)&s;

    XT_ASSERT_STATUS(
        nxl_kv_storage_alloc((nxl_kv_loc_t){NXL_KV_SYSTEM, 0}, 0, &s),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(
        nxl_kv_storage_alloc((nxl_kv_loc_t){NXL_KV_DISK, 0}, 4096, &s),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(
        nxl_kv_storage_alloc((nxl_kv_loc_t){(nxl_kv_kind_t)9, 0}, 4096, &s),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(
        nxl_kv_storage_wrap((nxl_kv_loc_t){NXL_KV_SYSTEM, 0}, 0, 4096, &s),
        NXL_ERR_INVALID_PARAM);
    XT_ASSERT_STATUS(nxl_kv_storage_disk(NULL, 0, 0, &s),
                     NXL_ERR_INVALID_PARAM);
    XT_ASSERT(s == (nxl_kv_storage_t *)&s);
    XT_ASSERT_STATUS(nxl_kv_storage_register(NULL, NULL),
                     NXL_ERR_INVALID_PARAM);
    return xt_leaks();
}

/* Device storage: allocated where a device kind runs, else
 * NXL_ERR_NOT_SUPPORTED with the kind's reason. */
static int
t_device_alloc(void)
{
    nxl_kv_storage_t *s;
    nxl_kv_desc_t d;
    nxl_status_t st;

    st = nxl_kv_storage_alloc((nxl_kv_loc_t){NXL_KV_DEVICE, 0}, 1 << 20, &s);
    if (st == NXL_ERR_NOT_SUPPORTED) {
        XT_ASSERT(nxl_last_error()[0] != '\0');
        printf("  device: %s\n", nxl_last_error());
        return 0;
    }
    XT_ASSERT_OK(st);
    XT_ASSERT(nxl_kv_storage_ptr(s) != NULL);
    nxl_kv_storage_desc(s, &d);
    XT_ASSERT_EQ(d.mem, NXL_VRAM);
    XT_ASSERT_EQ(d.dev_id, 0);
    nxl_kv_storage_destroy(s);
    return xt_leaks();
}

/* ---- deregistration before free, observed through a fake device kind --- */

static nxl_kv_agent_t *g_agent;
static nxl_kv_storage_t *g_storage;
static int g_freed, g_registered_at_free;

static nxl_status_t
fake_probe(void)
{
    return NXL_OK;
}

static nxl_status_t
fake_count(int *count_p)
{
    *count_p = 1;
    return NXL_OK;
}

static nxl_status_t
fake_alloc(int dev, size_t size, void **ptr_p)
{
    (void)dev;
    *ptr_p = aligned_alloc(4096, (size + 4095) & ~(size_t)4095);
    return *ptr_p ? NXL_OK : NXL_ERR_NOMEM;
}

static void
fake_free(int dev, void *ptr, size_t size)
{
    (void)dev, (void)size;
    g_freed++;
    g_registered_at_free = g_agent ? registered(g_agent, g_storage) : -1;
    free(ptr);
}

static int
t_deregister_before_free(void)
{
    static const nxl_memkind_ops_t fake = {
        .abi_version = NXL_MEMKIND_ABI_VERSION,
        .size = sizeof(nxl_memkind_ops_t),
        .name = "h3-fake-device",
        .type = NXL_MEMKIND_DEVICE,
        .mem = NXL_VRAM,
        .probe = fake_probe,
        .device_count = fake_count,
        .alloc = fake_alloc,
        .free = fake_free,
    };
    const char *ucx[] = {"UCX"};
    nxl_status_t st;

    XT_ASSERT_OK(nxl_memkind_set_device(&fake));
    XT_ASSERT_OK(nxl_kv_storage_alloc((nxl_kv_loc_t){NXL_KV_DEVICE, 0}, 8192,
                                      &g_storage));
    st = nxl_kv_agent_with_backends("storage-order", ucx, 1, &g_agent);
    if (st == NXL_OK) {
        st = nxl_kv_storage_register(g_storage, g_agent);
    }
    if (st != NXL_OK) {
        printf("  skip: no backend registers VRAM here: %s\n",
               nxl_last_error());
        nxl_kv_storage_destroy(g_storage);
        nxl_kv_agent_destroy(g_agent);
        return XT_SKIP;
    }
    XT_ASSERT_EQ(registered(g_agent, g_storage), 1);
    nxl_kv_storage_destroy(g_storage);
    XT_ASSERT_EQ(g_freed, 1);
    XT_ASSERT_EQ(g_registered_at_free, 0);
    nxl_kv_agent_destroy(g_agent);
    return xt_leaks();
}

const xt_suite xt_suite_kv_storage = {
    .name = "kv_storage",
    .cases =
        (const xt_case[]){
            {"system_cycle", t_system_cycle},
            {"pinned_cycle", t_pinned_cycle},
            {"register_other_agent", t_register_other_agent},
            {"failed_registration", t_failed_registration},
            {"disk_cycle", t_disk_cycle},
            {"disk_tmpdir_direct", t_disk_tmpdir_direct},
            {"disk_unlinked", t_disk_unlinked},
            {"desc_mapping", t_desc_mapping},
            {"bad_args", t_bad_args},
            {"device_alloc", t_device_alloc},
            {"deregister_before_free", t_deregister_before_free},
            {NULL, NULL},
        },
    .timeout_s = 30,
};
