/*
 * nxl_info.c - what this NXL build holds: its version, every backend
 * (built in, or a plugin from NXL_PLUGIN_DIR) with its capabilities,
 * memory kinds and parameters with their defaults, and the memory kinds
 * of the host. Public API only.
 *
 *   nxl-info [--json] [--help]
 */
#include <nxl/nxl.h>
#include <nxl/nxl_backend.h>
#include <nxl/nxl_memkind.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NI_MAX_BACKENDS 64

static const char *const ni_mem_names[NXL_MEM_KINDS] = {"DRAM", "VRAM", "BLK",
                                                        "OBJ", "FILE"};

/* ni_caps writes the names of the NXL_CAP_* bits of caps into buf. */
static const char *
ni_caps(uint32_t caps, char *buf, size_t cap)
{
    static const struct {
        uint32_t bit;
        const char *name;
    } bits[] = {{NXL_CAP_LOCAL, "LOCAL"},
                {NXL_CAP_REMOTE, "REMOTE"},
                {NXL_CAP_NOTIF, "NOTIF"},
                {NXL_CAP_THREAD_SAFE, "THREAD_SAFE"}};
    size_t i, n = 0;

    buf[0] = '\0';
    for (i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
        if (caps & bits[i].bit) {
            n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%s%s",
                                  n ? "|" : "", bits[i].name);
        }
    }
    return buf;
}

/* ni_json_str prints s as a JSON string. */
static void
ni_json_str(const char *s)
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

/* ni_kind_state says whether a memory kind can run here, and why not. */
static const char *
ni_kind_state(const nxl_memkind_ops_t *k, int *count_p)
{
    *count_p = 0;
    if (k == NULL) {
        return "absent";
    }
    if (k->probe != NULL && k->probe() != NXL_OK) {
        return nxl_last_error();
    }
    if (k->device_count != NULL) {
        (void)k->device_count(count_p);
    }
    return "ok";
}

int
main(int argc, char **argv)
{
    const char *names[NI_MAX_BACKENDS], *state;
    const nxl_memkind_ops_t *kinds[3];
    const char *kind_names[3] = {"host", "pinned", "cuda"};
    nxl_plugin_info_t info;
    size_t n = 0, i, j;
    char caps[64];
    int json = 0, count, k, first;

    for (k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--json") == 0) {
            json = 1;
        } else {
            printf("usage: nxl-info [--json]\n"
                   "Prints this NXL build's version, its backends (built in "
                   "and plugins from\nNXL_PLUGIN_DIR) with capabilities, "
                   "memory kinds and parameter defaults, and\nwhich memory "
                   "kinds (host, pinned, CUDA) run on this host.\n");
            return strcmp(argv[k], "--help") == 0 ? 0 : 2;
        }
    }
    if (nxl_plugin_names(names, NI_MAX_BACKENDS, &n) != NXL_OK) {
        fprintf(stderr, "nxl-info: %s\n", nxl_last_error());
        return 1;
    }
    n = n > NI_MAX_BACKENDS ? NI_MAX_BACKENDS : n;
    kinds[0] = nxl_memkind_host();
    kinds[1] = nxl_memkind_pinned();
    kinds[2] = nxl_memkind_cuda();

    if (json) {
        printf("{\"version\": ");
        ni_json_str(nxl_version());
        printf(", \"plugin_dir\": ");
        ni_json_str(getenv("NXL_PLUGIN_DIR")    ? getenv("NXL_PLUGIN_DIR")
                    : getenv("NIXL_PLUGIN_DIR") ? getenv("NIXL_PLUGIN_DIR")
                                                : "");
        printf(", \"backends\": [");
        for (i = 0; i < n; i++) {
            if (nxl_plugin_info(names[i], &info) != NXL_OK) {
                continue;
            }
            printf("%s{\"name\": ", i ? ", " : "");
            ni_json_str(info.name);
            printf(", \"caps\": ");
            ni_json_str(ni_caps(info.caps, caps, sizeof(caps)));
            printf(", \"mem\": [");
            for (j = 0, first = 1; j < NXL_MEM_KINDS; j++) {
                if (info.mem_kinds & (1u << j)) {
                    printf("%s\"%s\"", first ? "" : ", ", ni_mem_names[j]);
                    first = 0;
                }
            }
            printf("], \"params\": {");
            for (j = 0; j < info.num_defaults; j++) {
                printf("%s", j ? ", " : "");
                ni_json_str(info.defaults[j].key);
                printf(": ");
                ni_json_str(info.defaults[j].value);
            }
            printf("}}");
        }
        printf("], \"memory_kinds\": [");
        for (i = 0; i < 3; i++) {
            state = ni_kind_state(kinds[i], &count);
            printf("%s{\"name\": \"%s\", \"devices\": %d, \"state\": ",
                   i ? ", " : "", kind_names[i], count);
            ni_json_str(state);
            printf("}");
        }
        printf("]}\n");
        return 0;
    }

    printf("NXL %s (headers %d.%d.%d)\n", nxl_version(), NXL_VERSION_MAJOR,
           NXL_VERSION_MINOR, NXL_VERSION_PATCH);
    printf("plugin dir: %s\n\n",
           getenv("NXL_PLUGIN_DIR")    ? getenv("NXL_PLUGIN_DIR")
           : getenv("NIXL_PLUGIN_DIR") ? getenv("NIXL_PLUGIN_DIR")
                                       : "(unset: built-in backends only)");
    for (i = 0; i < n; i++) {
        if (nxl_plugin_info(names[i], &info) != NXL_OK) {
            printf("%s: cannot be loaded: %s\n\n", names[i], nxl_last_error());
            continue;
        }
        printf("%s\n  caps: %s\n  memory:", info.name,
               ni_caps(info.caps, caps, sizeof(caps)));
        for (j = 0; j < NXL_MEM_KINDS; j++) {
            if (info.mem_kinds & (1u << j)) {
                printf(" %s", ni_mem_names[j]);
            }
        }
        printf("\n  params (defaults):\n");
        for (j = 0; j < info.num_defaults; j++) {
            printf("    %-18s %s\n", info.defaults[j].key,
                   info.defaults[j].value[0] ? info.defaults[j].value
                                             : "(empty)");
        }
        printf("\n");
    }
    printf("memory kinds on this host:\n");
    for (i = 0; i < 3; i++) {
        state = ni_kind_state(kinds[i], &count);
        printf("  %-7s %s", kind_names[i], state);
        if (strcmp(state, "ok") == 0) {
            printf(" (%d device%s)", count, count == 1 ? "" : "s");
        }
        printf("\n");
    }
    return 0;
}
