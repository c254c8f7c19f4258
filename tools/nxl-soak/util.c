/*
 * util.c - nxl-soak's building blocks: random numbers, the deterministic
 * data patterns and their XXH3 checks, control messages, /proc sampling
 * and entering a network namespace.
 *
 * A pattern stream is a function of a 64-bit seed and a byte offset: word
 * w (bytes 8w..8w+7, little endian) is v = w * K + seed; v ^= v >> 32.
 * Both steps are bijective, so no two words of one stream are equal and a
 * byte read from the wrong offset, the wrong incarnation (another seed) or
 * not at all (the destination is poisoned first) cannot pass the check.
 */
#include "soak.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#define SK_PAT_K 0x9E3779B97F4A7C15ull
#define SK_CHUNK 65536

/* ---------------------------------------------------------------------- */
/* Random numbers (xoshiro256**, seeded by splitmix64). */

uint64_t
sk_mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

void
sk_rng_seed(sk_rng_t *r, uint64_t seed)
{
    int i;

    for (i = 0; i < 4; i++) {
        seed = sk_mix64(seed + (uint64_t)i);
        r->s[i] = seed;
    }
}

static inline uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t
sk_rng_next(sk_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

uint64_t
sk_rng_below(sk_rng_t *r, uint64_t n)
{
    return n == 0 ? 0 : sk_rng_next(r) % n;
}

double
sk_rng_unit(sk_rng_t *r)
{
    return (double)(sk_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t
sk_rng_logsize(sk_rng_t *r, uint64_t max)
{
    double l = sk_rng_unit(r) * log2((double)max + 1.0);
    uint64_t v = (uint64_t)exp2(l);

    if (v < 1) {
        v = 1;
    }
    return v > max ? max : v;
}

/* ---------------------------------------------------------------------- */
/* Patterns. */

uint64_t
sk_pattern_seed(uint64_t run_seed, unsigned group, unsigned idx, unsigned inc)
{
    return sk_mix64(run_seed ^ sk_mix64(((uint64_t)group << 48) ^
                                        ((uint64_t)idx << 24) ^ inc));
}

static inline uint64_t
pat_word(uint64_t seed, uint64_t w)
{
    uint64_t v = w * SK_PAT_K + seed;

    return v ^ (v >> 32);
}

void
sk_pattern_fill(uint8_t *dst, uint64_t seed, uint64_t off, uint64_t len)
{
    uint64_t w;

    while (len > 0 && (off & 7) != 0) {
        *dst++ = (uint8_t)(pat_word(seed, off >> 3) >> (8 * (off & 7)));
        off++;
        len--;
    }
    for (w = off >> 3; len >= 8; len -= 8, dst += 8, w++) {
        uint64_t v = pat_word(seed, w);

        memcpy(dst, &v, 8);
    }
    off = w << 3;
    while (len > 0) {
        *dst++ = (uint8_t)(pat_word(seed, off >> 3) >> (8 * (off & 7)));
        off++;
        len--;
    }
}

void
sk_pattern_hash(const sk_piece_t *pieces, size_t n, uint64_t *lo_p,
                uint64_t *hi_p)
{
    static uint8_t chunk[SK_CHUNK];
    XXH3_state_t st;
    XXH128_hash_t h;
    size_t i;

    XXH3_128bits_reset(&st);
    for (i = 0; i < n; i++) {
        uint64_t done = 0;

        while (done < pieces[i].len) {
            uint64_t k = pieces[i].len - done;

            if (k > SK_CHUNK) {
                k = SK_CHUNK;
            }
            sk_pattern_fill(chunk, pieces[i].seed, pieces[i].off + done, k);
            XXH3_128bits_update(&st, chunk, (size_t)k);
            done += k;
        }
    }
    h = XXH3_128bits_digest(&st);
    *lo_p = h.low64;
    *hi_p = h.high64;
}

void
sk_hash(const void *buf, uint64_t len, uint64_t *lo_p, uint64_t *hi_p)
{
    XXH128_hash_t h = XXH3_128bits(buf, (size_t)len);

    *lo_p = h.low64;
    *hi_p = h.high64;
}

static void
hex16(const uint8_t *p, size_t n, char *out)
{
    size_t i;

    for (i = 0; i < n && i < 16; i++) {
        sprintf(out + 2 * i, "%02x", p[i]);
    }
    out[2 * i] = '\0';
}

int
sk_pattern_diff(const uint8_t *buf, const sk_piece_t *pieces, size_t n,
                const uint64_t *alt, size_t nalt, char *text, size_t cap)
{
    static uint8_t chunk[SK_CHUNK];
    uint64_t pos = 0, bad_total = 0, first = UINT64_MAX;
    size_t i, first_piece = 0;
    uint64_t first_off = 0;

    for (i = 0; i < n; i++) {
        uint64_t done = 0;

        while (done < pieces[i].len) {
            uint64_t k = pieces[i].len - done, j;

            if (k > SK_CHUNK) {
                k = SK_CHUNK;
            }
            sk_pattern_fill(chunk, pieces[i].seed, pieces[i].off + done, k);
            if (memcmp(chunk, buf + pos, (size_t)k) != 0) {
                for (j = 0; j < k; j++) {
                    if (chunk[j] != buf[pos + j]) {
                        if (first == UINT64_MAX) {
                            first = pos + j;
                            first_piece = i;
                            first_off = pieces[i].off + done + j;
                        }
                        bad_total++;
                    }
                }
            }
            pos += k;
            done += k;
        }
    }
    if (first == UINT64_MAX) {
        return 0;
    }
    {
        uint8_t exp[16];
        char hg[40], he[40], alts[256] = "";
        uint64_t m = pos - first < 16 ? pos - first : 16;
        const sk_piece_t *p = &pieces[first_piece];
        size_t a, used = 0;

        sk_pattern_fill(exp, p->seed, first_off, m);
        hex16(buf + first, (size_t)m, hg);
        hex16(exp, (size_t)m, he);
        for (a = 0; a < nalt; a++) {
            uint8_t alt_b[16];

            sk_pattern_fill(alt_b, alt[a], first_off, m);
            if (memcmp(alt_b, buf + first, (size_t)m) == 0 &&
                used < sizeof(alts)) {
                used += (size_t)snprintf(alts + used, sizeof(alts) - used,
                                         "; the bytes match pattern "
                                         "stream #%zu (a stale source)",
                                         a);
            }
        }
        snprintf(text, cap,
                 "%" PRIu64 " of %" PRIu64
                 " bytes differ; first at byte %" PRIu64
                 " (piece %zu of %zu, source offset %" PRIu64
                 ", piece length %" PRIu64 "): got %s, expected %s%s",
                 bad_total, pos, first, first_piece, n, first_off, p->len, hg,
                 he, alts);
    }
    return 1;
}

/* ---------------------------------------------------------------------- */
/* Control messages. */

int
sk_msg_send(int fd, const sk_msg_t *m)
{
    for (;;) {
        ssize_t n = send(fd, m, sizeof(*m), MSG_NOSIGNAL);

        if (n == (ssize_t)sizeof(*m)) {
            return 0;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        return -1;
    }
}

int
sk_msg_recv(int fd, sk_msg_t *m, int timeout_ms)
{
    struct pollfd pf = {fd, POLLIN, 0};
    ssize_t n;
    int r;

    do {
        r = poll(&pf, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r <= 0) {
        return r < 0 ? -1 : 0;
    }
    do {
        n = recv(fd, m, sizeof(*m), MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return 0;
    }
    if (n != (ssize_t)sizeof(*m)) {
        return -1;
    }
    return 1;
}

/* ---------------------------------------------------------------------- */
/* /proc sampling. */

static uint64_t
status_kib(const char *buf, const char *key)
{
    const char *p = strstr(buf, key);

    if (p == NULL) {
        return 0;
    }
    return strtoull(p + strlen(key), NULL, 10);
}

int
sk_proc_sample(pid_t pid, sk_proc_t *p)
{
    char path[64], buf[4096];
    ssize_t n;
    int fd, c;
    DIR *d;
    struct dirent *e;
    FILE *f;

    memset(p, 0, sizeof(*p));
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return -1;
    }
    buf[n] = '\0';
    p->rss_kib = status_kib(buf, "VmRSS:");
    p->anon_kib = status_kib(buf, "RssAnon:");
    p->file_kib = status_kib(buf, "RssFile:");
    p->shmem_kib = status_kib(buf, "RssShmem:");
    p->threads = (unsigned)status_kib(buf, "Threads:");
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    d = opendir(path);
    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            p->fds++;
        }
    }
    closedir(d);
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    f = fopen(path, "re");
    if (f == NULL) {
        return -1;
    }
    while ((c = fgetc(f)) != EOF) {
        if (c == '\n') {
            p->maps++;
        }
    }
    fclose(f);
    p->ok = 1;
    return 0;
}

int
sk_proc_fd_list(pid_t pid, char *buf, size_t cap)
{
    char path[320], target[256];
    size_t used = 0;
    DIR *d;
    struct dirent *e;

    buf[0] = '\0';
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    d = opendir(path);
    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL && used + 1 < cap) {
        ssize_t n;

        if (e->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof(path), "/proc/%d/fd/%s", (int)pid, e->d_name);
        n = readlink(path, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = '\0';
        used += (size_t)snprintf(buf + used, cap - used, "%s%s->%s",
                                 used ? " " : "", e->d_name, target);
    }
    closedir(d);
    return 0;
}

/* has_token reports whether the space-separated list holds tok (n bytes). */
static int
has_token(const char *list, const char *tok, size_t n)
{
    const char *p = list;

    while (*p != '\0') {
        const char *e = strchr(p, ' ');
        size_t l = e != NULL ? (size_t)(e - p) : strlen(p);

        if (l == n && memcmp(p, tok, n) == 0) {
            return 1;
        }
        p += l;
        while (*p == ' ') {
            p++;
        }
    }
    return 0;
}

void
sk_fd_diff(const char *a, const char *b, char *out, size_t cap)
{
    const char *lists[2] = {b, a}, *others[2] = {a, b}, *sign = "+-";
    size_t used = 0;
    int k;

    out[0] = '\0';
    for (k = 0; k < 2; k++) {
        const char *p = lists[k];

        while (*p != '\0' && used + 1 < cap) {
            const char *e = strchr(p, ' ');
            size_t l = e != NULL ? (size_t)(e - p) : strlen(p);

            if (l > 0 && !has_token(others[k], p, l)) {
                used += (size_t)snprintf(out + used, cap - used, "%s%c%.*s",
                                         used ? " " : "", sign[k], (int)l, p);
            }
            p += l;
            while (*p == ' ') {
                p++;
            }
        }
    }
}

/* sk_enter_netns moves the calling, single-threaded process into
 * /var/run/netns/<ns> and, as `ip netns exec` does, gives it a private
 * mount namespace with a sysfs of the new network namespace (UCX reads
 * network devices from /sys/class/net). -1 with errno on failure. */
int
sk_enter_netns(const char *ns)
{
    char path[256];
    int fd, rc;

    snprintf(path, sizeof(path), "/var/run/netns/%s", ns);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    rc = setns(fd, CLONE_NEWNET);
    close(fd);
    if (rc != 0 || unshare(CLONE_NEWNS) != 0 ||
        mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) != 0) {
        return -1;
    }
    (void)umount2("/sys", MNT_DETACH);
    return mount(ns, "/sys", "sysfs", 0, NULL);
}

void
sk_stats_add(sk_stats_t *sum, const sk_stats_t *s)
{
    uint64_t *a = (uint64_t *)sum;
    const uint64_t *b = (const uint64_t *)s;
    size_t i, n = sizeof(*s) / sizeof(uint64_t);

    for (i = 0; i < n; i++) {
        if (&a[i] == &sum->max_op_us) {
            if (b[i] > a[i]) {
                a[i] = b[i];
            }
        } else {
            a[i] += b[i];
        }
    }
}

void
sk_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
        } else if (c < 0x20) {
            fprintf(f, "\\u%04x", c);
        } else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}
