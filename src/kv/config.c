/*
 * config.c - backend configuration of the KV layer (Dynamo's
 * NixlBackendConfig): which backends an agent creates, with which params,
 * from code or from DYN_KVBM_NIXL_BACKEND_* environment variables.
 *
 * Backends are kept sorted by their uppercase name; params keep the order
 * they were first set in.
 */
#include "kv.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern char **environ;

#define ENV_PREFIX "DYN_KVBM_NIXL_BACKEND_"

/* Backend names the environment parser recognises as prefixes. */
static const char *const known_backends[] = {
    "UCX", "GDS_MT", "GDS", "POSIX", "OBJ", "LIBFABRIC", "SHM", "TCP",
};

/* str_dup_case copies the first n bytes of s, converted with conv
 * (toupper/tolower) or unchanged when conv is NULL. NULL when out of
 * memory. */
static char *
str_dup_case(const char *s, size_t n, int (*conv)(int))
{
    char *d = malloc(n + 1);
    size_t i;

    if (d == NULL) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        d[i] = conv ? (char)conv((unsigned char)s[i]) : s[i];
    }
    d[n] = '\0';
    return d;
}

/* backend_fini frees the strings and params of b. */
static void
backend_fini(nxl__kv_backend_cfg_t *b)
{
    size_t i;

    for (i = 0; i < b->num_params; i++) {
        free((char *)b->params[i].key);
        free((char *)b->params[i].value);
    }
    free(b->params);
    free(b->name);
}

/* nxl__kv_find_name: see kv.h. */
int
nxl__kv_find_name(const void *items, size_t count, size_t item_size,
                  size_t name_off, const char *name, size_t *pos)
{
    size_t lo = 0, hi = count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *at =
            *(char *const *)((const char *)items + mid * item_size + name_off);
        int c = strcasecmp(at, name);

        if (c == 0) {
            *pos = mid;
            return 1;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *pos = lo;
    return 0;
}

/* find_backend looks name up (case-insensitive): returns 1 and its index
 * in *pos when present, else 0 and the sorted insertion index. */
static int
find_backend(const nxl_kv_config_t *cfg, const char *name, size_t *pos)
{
    return nxl__kv_find_name(cfg->items, cfg->count, sizeof(*cfg->items),
                             offsetof(nxl__kv_backend_cfg_t, name), name, pos);
}

/* nxl_kv_config_create makes an empty config; the caller owns *cfg_p
 * (nxl_kv_config_destroy). Returns NXL_OK, NXL_ERR_INVALID_PARAM or
 * NXL_ERR_NOMEM. Thread-safe. */
NXL_API nxl_status_t
nxl_kv_config_create(nxl_kv_config_t **cfg_p)
{
    nxl_kv_config_t *cfg;

    if (cfg_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv config: NULL argument");
    }
    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "kv config: out of memory");
    }
    *cfg_p = cfg;
    return NXL_OK;
}

/* nxl_kv_config_destroy frees cfg and every string it owns. Accepts NULL. */
NXL_API void
nxl_kv_config_destroy(nxl_kv_config_t *cfg)
{
    size_t i;

    if (cfg == NULL) {
        return;
    }
    for (i = 0; i < cfg->count; i++) {
        backend_fini(&cfg->items[i]);
    }
    free(cfg->items);
    free(cfg);
}

/* add_backend enables the first n bytes of name (uppercased) and returns
 * its entry in *b_p; an existing entry keeps its params. */
static nxl_status_t
add_backend(nxl_kv_config_t *cfg, const char *name, size_t n,
            nxl__kv_backend_cfg_t **b_p)
{
    nxl__kv_backend_cfg_t *items;
    char *upper;
    size_t pos;

    if (n == 0) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv config: empty backend name");
    }
    upper = str_dup_case(name, n, toupper);
    if (upper == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "kv config: out of memory");
    }
    if (find_backend(cfg, upper, &pos)) {
        free(upper);
        *b_p = &cfg->items[pos];
        return NXL_OK;
    }
    items = realloc(cfg->items, (cfg->count + 1) * sizeof(*items));
    if (items == NULL) {
        free(upper);
        return nxl__fail(NXL_ERR_NOMEM, "kv config: out of memory");
    }
    cfg->items = items;
    memmove(&items[pos + 1], &items[pos], (cfg->count - pos) * sizeof(*items));
    items[pos] = (nxl__kv_backend_cfg_t){.name = upper};
    cfg->count++;
    *b_p = &items[pos];
    return NXL_OK;
}

/* set_param sets key (first klen bytes) to value in b, replacing an
 * earlier value of the same key. */
static nxl_status_t
set_param(nxl__kv_backend_cfg_t *b, const char *key, size_t klen,
          const char *value)
{
    nxl_param_t *params;
    char *k, *v;
    size_t i;

    v = str_dup_case(value, strlen(value), NULL);
    if (v == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "kv config: out of memory");
    }
    for (i = 0; i < b->num_params; i++) {
        if (strlen(b->params[i].key) == klen &&
            memcmp(b->params[i].key, key, klen) == 0) {
            free((char *)b->params[i].value);
            b->params[i].value = v;
            return NXL_OK;
        }
    }
    k = str_dup_case(key, klen, NULL);
    params = realloc(b->params, (b->num_params + 1) * sizeof(*params));
    if (k == NULL || params == NULL) {
        if (params != NULL) {
            b->params = params;
        }
        free(k);
        free(v);
        return nxl__fail(NXL_ERR_NOMEM, "kv config: out of memory");
    }
    b->params = params;
    params[b->num_params++] = (nxl_param_t){.key = k, .value = v};
    return NXL_OK;
}

/* nxl_kv_config_add_backend enables backend name (stored uppercase) with no
 * params; an already enabled backend keeps its params. Returns NXL_OK,
 * NXL_ERR_INVALID_PARAM (NULL or empty name) or NXL_ERR_NOMEM. Not
 * thread-safe with other calls on cfg. */
NXL_API nxl_status_t
nxl_kv_config_add_backend(nxl_kv_config_t *cfg, const char *name)
{
    nxl__kv_backend_cfg_t *b;

    if (cfg == NULL || name == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv config: NULL argument");
    }
    return add_backend(cfg, name, strlen(name), &b);
}

/* nxl_kv_config_set_param enables backend name and sets its param key to
 * value (both copied; a later set of the same key replaces it). Returns
 * NXL_OK, NXL_ERR_INVALID_PARAM (NULL, empty name or key) or NXL_ERR_NOMEM.
 * Not thread-safe with other calls on cfg. */
NXL_API nxl_status_t
nxl_kv_config_set_param(nxl_kv_config_t *cfg, const char *name, const char *key,
                        const char *value)
{
    nxl__kv_backend_cfg_t *b;
    nxl_status_t st;

    if (cfg == NULL || name == NULL || key == NULL || value == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv config: NULL argument");
    }
    if (key[0] == '\0') {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv config: empty param name for backend %s", name);
    }
    st = add_backend(cfg, name, strlen(name), &b);
    if (st != NXL_OK) {
        return st;
    }
    return set_param(b, key, strlen(key), value);
}

/* nxl_kv_config_merge copies every backend and param of src into dst (src
 * wins on a key both set). On NXL_ERR_NOMEM dst may hold part of src.
 * Not thread-safe with writers of either config. */
NXL_API nxl_status_t
nxl_kv_config_merge(nxl_kv_config_t *dst, const nxl_kv_config_t *src)
{
    nxl__kv_backend_cfg_t *b;
    nxl_status_t st;
    size_t i, j;

    if (dst == NULL || src == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv config: NULL argument");
    }
    if (dst == src) {
        return NXL_OK;
    }
    for (i = 0; i < src->count; i++) {
        const nxl__kv_backend_cfg_t *sb = &src->items[i];

        st = add_backend(dst, sb->name, strlen(sb->name), &b);
        if (st != NXL_OK) {
            return st;
        }
        for (j = 0; j < sb->num_params; j++) {
            st = set_param(b, sb->params[j].key, strlen(sb->params[j].key),
                           sb->params[j].value);
            if (st != NXL_OK) {
                return st;
            }
        }
    }
    return NXL_OK;
}

/* nxl_kv_config_has_backend returns 1 if name (any case) is enabled. */
NXL_API int
nxl_kv_config_has_backend(const nxl_kv_config_t *cfg, const char *name)
{
    size_t pos;

    if (cfg == NULL || name == NULL) {
        return 0;
    }
    return find_backend(cfg, name, &pos);
}

/* nxl_kv_config_count returns the number of enabled backends (0 for
 * NULL). */
NXL_API size_t
nxl_kv_config_count(const nxl_kv_config_t *cfg)
{
    return cfg == NULL ? 0 : cfg->count;
}

/* nxl_kv_config_backend returns backend i in name order: its uppercase
 * name and its params, both owned by cfg and valid until cfg changes.
 * Returns NXL_OK or NXL_ERR_INVALID_PARAM (NULL, i out of range). */
NXL_API nxl_status_t
nxl_kv_config_backend(const nxl_kv_config_t *cfg, size_t i, const char **name_p,
                      nxl_params_t *params_p)
{
    if (cfg == NULL || name_p == NULL || params_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv config: NULL argument");
    }
    if (i >= cfg->count) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv config: backend index %zu out of range (%zu "
                         "backends)",
                         i, cfg->count);
    }
    *name_p = cfg->items[i].name;
    *params_p = (nxl_params_t){.items = cfg->items[i].params,
                               .count = cfg->items[i].num_params};
    return NXL_OK;
}

/* nxl_kv_parse_bool parses Dynamo's boolean grammar (any case): 1, true,
 * on, yes -> 1; 0, false, off, no -> 0. Returns NXL_OK or
 * NXL_ERR_INVALID_PARAM "Invalid boolean value: '<s>'. Expected one of:
 * true/false, 1/0, on/off, yes/no". Thread-safe. */
NXL_API nxl_status_t
nxl_kv_parse_bool(const char *s, int *value_p)
{
    static const char *const truthy[] = {"1", "true", "on", "yes"};
    static const char *const falsy[] = {"0", "false", "off", "no"};
    size_t i;

    if (s == NULL || value_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "parse_bool: NULL argument");
    }
    for (i = 0; i < NXL__ARRAY_SIZE(truthy); i++) {
        if (strcasecmp(s, truthy[i]) == 0) {
            *value_p = 1;
            return NXL_OK;
        }
        if (strcasecmp(s, falsy[i]) == 0) {
            *value_p = 0;
            return NXL_OK;
        }
    }
    return nxl__fail(NXL_ERR_INVALID_PARAM,
                     "Invalid boolean value: '%s'. Expected one of: "
                     "true/false, 1/0, on/off, yes/no",
                     s);
}

/* env_backend_len returns the length of the backend name at the start of
 * rest (the part of a variable name after the prefix): the longest known
 * backend name that is all of rest or is followed by '_', else the part
 * before the first '_'. */
static size_t
env_backend_len(const char *rest)
{
    size_t best = 0, i, n;
    const char *us;

    for (i = 0; i < NXL__ARRAY_SIZE(known_backends); i++) {
        n = strlen(known_backends[i]);
        if (n > best && strncasecmp(rest, known_backends[i], n) == 0 &&
            (rest[n] == '\0' || rest[n] == '_')) {
            best = n;
        }
    }
    if (best > 0) {
        return best;
    }
    us = strchr(rest, '_');
    return us ? (size_t)(us - rest) : strlen(rest);
}

/* nxl_kv_config_from_env builds a config from envp (NULL = environ) with
 * Dynamo v2's rules (see nxl_kv.h): <NAME>=<bool> enables or disables,
 * <NAME>_<PARAM>=<v> sets lowercase(<PARAM>) and enables unless
 * <NAME>=false; UCX when nothing is enabled. The caller owns *cfg_p.
 * Returns NXL_OK, NXL_ERR_INVALID_PARAM ("Invalid value for <KEY>: ...")
 * or NXL_ERR_NOMEM. Thread-safe when envp is given; with environ, not
 * thread-safe with setenv. */
NXL_API nxl_status_t
nxl_kv_config_from_env(char *const *envp, nxl_kv_config_t **cfg_p)
{
    nxl_kv_config_t *cfg = NULL, *disabled = NULL;
    nxl__kv_backend_cfg_t *b;
    nxl_status_t st;
    size_t i, plen = strlen(ENV_PREFIX);
    int on;

    if (cfg_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv config: NULL argument");
    }
    if (envp == NULL) {
        envp = environ;
    }
    st = nxl_kv_config_create(&cfg);
    if (st == NXL_OK) {
        st = nxl_kv_config_create(&disabled);
    }
    for (i = 0; st == NXL_OK && envp != NULL && envp[i] != NULL; i++) {
        const char *var = envp[i], *eq, *rest, *param, *value;
        size_t rlen, nlen;

        if (strncmp(var, ENV_PREFIX, plen) != 0) {
            continue;
        }
        eq = strchr(var, '=');
        if (eq == NULL) {
            continue;
        }
        rest = var + plen;
        rlen = (size_t)(eq - rest);
        value = eq + 1;
        {
            /* The name part without the "=value" for prefix matching. */
            char *name = str_dup_case(rest, rlen, NULL);

            if (name == NULL) {
                st = nxl__fail(NXL_ERR_NOMEM, "kv config: out of memory");
                break;
            }
            nlen = env_backend_len(name);
            free(name);
        }
        if (nlen == 0) {
            nxl__warn("kv config: ignoring %.*s: no backend name",
                      (int)(eq - var), var);
            continue;
        }
        if (nlen == rlen) {
            st = nxl_kv_parse_bool(value, &on);
            if (st != NXL_OK) {
                /* Copy the message: nxl__fail overwrites the buffer. */
                char why[256];

                snprintf(why, sizeof(why), "%s", nxl_last_error());
                st = nxl__fail(NXL_ERR_INVALID_PARAM,
                               "Invalid value for %.*s: %s", (int)(eq - var),
                               var, why);
                break;
            }
            st = add_backend(on ? cfg : disabled, rest, nlen, &b);
            continue;
        }
        param = rest + nlen + 1;
        if (param == eq) {
            nxl__warn("kv config: ignoring %.*s: empty parameter name",
                      (int)(eq - var), var);
            continue;
        }
        st = add_backend(cfg, rest, nlen, &b);
        if (st == NXL_OK) {
            char *key = str_dup_case(param, (size_t)(eq - param), tolower);

            if (key == NULL) {
                st = nxl__fail(NXL_ERR_NOMEM, "kv config: out of memory");
                break;
            }
            st = set_param(b, key, strlen(key), value);
            free(key);
        }
    }
    /* NAME=false wins over NAME_PARAM=v and NAME=true (another spelling). */
    for (i = 0; st == NXL_OK && i < disabled->count; i++) {
        size_t pos;

        if (find_backend(cfg, disabled->items[i].name, &pos)) {
            backend_fini(&cfg->items[pos]);
            memmove(&cfg->items[pos], &cfg->items[pos + 1],
                    (cfg->count - pos - 1) * sizeof(cfg->items[0]));
            cfg->count--;
        }
    }
    if (st == NXL_OK && cfg->count == 0) {
        st = nxl_kv_config_add_backend(cfg, "UCX");
    }
    nxl_kv_config_destroy(disabled);
    if (st != NXL_OK) {
        nxl_kv_config_destroy(cfg);
        return st;
    }
    *cfg_p = cfg;
    return NXL_OK;
}
