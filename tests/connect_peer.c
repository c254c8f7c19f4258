/*
 * connect_peer.c - nxl_connect_peer, a C peer for the Python tests of
 * nxl.connect / nxl.embedding / nxl.media (python/tests/connect_peers.py,
 * CPeer; test_connect_procs.py, test_embedding_procs.py, test_media.py): one
 * side of a transfer through the public C API only, talking JSON lines on
 * stdin/stdout as it would over a request plane.
 *
 *   nxl_connect_peer BACKEND readable SIZE SEED   prints RdmaMetadata, waits
 *   nxl_connect_peer BACKEND writable SIZE        prints RdmaMetadata, waits,
 *                                                 prints "HASH <hex>"
 *   nxl_connect_peer BACKEND read SIZE            reads RdmaMetadata, reads,
 *                                                 prints "HASH <hex>"
 *   nxl_connect_peer BACKEND write SIZE SEED      reads RdmaMetadata, writes
 *   nxl_connect_peer BACKEND media H W C SEED     prints the media JSON, then
 *                                                 serves until stdin closes
 *   nxl_connect_peer BACKEND media-read SIZE      reads a media JSON, reads,
 *                                                 prints "HASH <hex>"
 *
 * Every line it prints ends with "\n"; a final "DONE" (or "ERR <text>" and
 * exit 1). Data: byte i of seed s is ((i * 131 + s * 7 + (i >> 8)) ^ s)
 * mod 256; HASH is nxl_media_content_hash of the bytes with shape [SIZE],
 * in 16 hex digits. TCP binds to 127.0.0.1.
 */
#include <nxl/nxl.h>
#include <nxl/nxl_connect.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS 20000

/* fail prints the error line and exits. */
static void
fail(const char *what)
{
    printf("ERR %s: %s\n", what, nxl_last_error());
    fflush(stdout);
    exit(1);
}

static void
fill(uint8_t *p, size_t n, uint32_t seed)
{
    size_t i;

    for (i = 0; i < n; i++) {
        p[i] = (uint8_t)((i * 131u + seed * 7u + (i >> 8)) ^ seed);
    }
}

static void
print_hash(const uint8_t *p, size_t n)
{
    uint64_t shape = n, h = 0;

    if (nxl_media_content_hash(&shape, 1, p, n, &h) != NXL_OK) {
        fail("hash");
    }
    printf("HASH %016" PRIx64 "\n", h);
}

/* read_line reads one line of stdin (malloc'd, without the newline). */
static char *
read_line(size_t *len_p)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);

    if (n <= 0) {
        free(line);
        printf("ERR stdin closed\n");
        exit(1);
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
        line[--n] = '\0';
    }
    *len_p = (size_t)n;
    return line;
}

static nxl_agent_t *
make_agent(const char *be)
{
    nxl_param_t lo[] = {{"bind_addr", "127.0.0.1"}};
    nxl_params_t tcp = {lo, 1};
    nxl_agent_config_t cfg;
    nxl_agent_t *a;
    char name[64];

    snprintf(name, sizeof(name), "c-peer-%d", (int)getpid());
    nxl_agent_config_init(&cfg);
    cfg.sync_mode = NXL_SYNC_STRICT;
    if (nxl_agent_create(name, &cfg, &a) != NXL_OK) {
        fail("agent_create");
    }
    if (nxl_backend_create(a, be, strcmp(be, "TCP") == 0 ? &tcp : NULL, NULL) !=
        NXL_OK) {
        fail("backend_create");
    }
    return a;
}

static void
print_blob(nxl_blob_t *b)
{
    fwrite(b->data, 1, b->len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    nxl_blob_free(b);
}

int
main(int argc, char **argv)
{
    const char *be, *mode;
    nxl_connector_t *c;
    nxl_connect_op_t *op;
    nxl_connect_desc_t d;
    nxl_agent_t *a;
    nxl_blob_t js;
    uint8_t *buf;
    size_t size, len;
    uint32_t seed = 0;
    char *line;

    if (argc < 4) {
        fprintf(stderr, "usage: nxl_connect_peer BACKEND MODE ARGS...\n");
        return 2;
    }
    be = argv[1];
    mode = argv[2];
    a = make_agent(be);

    if (strcmp(mode, "media") == 0) {
        uint32_t h, w, ch;
        nxl_media_t *m;

        if (argc < 7) {
            return 2;
        }
        h = (uint32_t)strtoul(argv[3], NULL, 10);
        w = (uint32_t)strtoul(argv[4], NULL, 10);
        ch = (uint32_t)strtoul(argv[5], NULL, 10);
        seed = (uint32_t)strtoul(argv[6], NULL, 10);
        size = (size_t)h * w * ch;
        buf = malloc(size ? size : 1);
        fill(buf, size, seed);
        if (nxl_media_image_create(a, buf, h, w, ch, "Png", NULL, &m) !=
                NXL_OK ||
            nxl_media_json(m, &js) != NXL_OK) {
            fail("media");
        }
        print_blob(&js);
        /* Serve until the test closes stdin; drop the readers' keys. */
        while (getchar() != EOF) {
        }
        (void)nxl_media_discard_notifs(a);
        nxl_media_destroy(m);
        free(buf);
        nxl_agent_destroy(a);
        printf("DONE\n");
        return 0;
    }

    size = (size_t)strtoull(argv[3], NULL, 10);
    if (argc > 4) {
        seed = (uint32_t)strtoul(argv[4], NULL, 10);
    }
    buf = calloc(1, size ? size : 1);
    if (buf == NULL || nxl_connector_create(a, &c) != NXL_OK) {
        fail("setup");
    }
    d = (nxl_connect_desc_t){(uint64_t)(uintptr_t)buf, size,
                             NXL_CONNECT_DEVICE_HOST, 0};
    if (strcmp(mode, "readable") == 0 || strcmp(mode, "writable") == 0) {
        int readable = mode[0] == 'r';

        if (readable) {
            fill(buf, size, seed);
        }
        if ((readable ? nxl_connect_readable_create(c, &d, 1, &op)
                      : nxl_connect_writable_create(c, &d, 1, &op)) != NXL_OK ||
            nxl_connect_op_metadata(op, 0, &js) != NXL_OK) {
            fail("passive");
        }
        print_blob(&js);
        if (nxl_connect_op_wait(op, WAIT_MS) != NXL_OK) {
            fail("wait");
        }
        if (!readable) {
            print_hash(buf, size);
        }
    } else if (strcmp(mode, "read") == 0 || strcmp(mode, "write") == 0 ||
               strcmp(mode, "media-read") == 0) {
        nxl_status_t st;

        if (mode[0] == 'w') {
            fill(buf, size, seed);
        }
        line = read_line(&len);
        if (strcmp(mode, "read") == 0) {
            st = nxl_connect_read_begin(c, &d, 1, line, len, &op);
        } else if (strcmp(mode, "write") == 0) {
            st = nxl_connect_write_begin(c, &d, 1, line, len, &op);
        } else {
            st = nxl_media_read_begin(c, line, len, &d, 1, &op);
        }
        free(line);
        if (st != NXL_OK) {
            fail("begin");
        }
        if (nxl_connect_op_wait(op, WAIT_MS) != NXL_OK) {
            fail("wait");
        }
        if (mode[0] != 'w') {
            print_hash(buf, size);
        }
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    nxl_connect_op_release(op);
    nxl_connector_destroy(c);
    nxl_agent_destroy(a);
    free(buf);
    printf("DONE\n");
    fflush(stdout);
    return 0;
}
