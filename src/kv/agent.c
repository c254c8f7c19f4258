/*
 * agent.c - the KV layer's agent wrapper (Dynamo's NixlAgent): an nxl agent
 * that remembers which backends it created, with Dynamo's strict and
 * lenient constructors and their error texts.
 */
#include "kv.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest backend name the wrapper accepts (plugin names are short). */
#define KV_NAME_MAX 64
/* Room for one failure reason and for the joined lists of the messages
 * (nxl_last_error truncates longer texts anyway). */
#define KV_REASON_MAX 512

/* upper_name copies name uppercased into buf (KV_NAME_MAX bytes). Returns
 * NXL_OK or NXL_ERR_INVALID_PARAM (NULL, empty or too long). */
static nxl_status_t
upper_name(const char *name, char *buf)
{
    size_t i, n;

    if (name == NULL || name[0] == '\0') {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv agent: empty backend name");
    }
    n = strlen(name);
    if (n >= KV_NAME_MAX) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "kv agent: backend name too long: %.32s...", name);
    }
    for (i = 0; i < n; i++) {
        buf[i] = (char)toupper((unsigned char)name[i]);
    }
    buf[n] = '\0';
    return NXL_OK;
}

/* find_backend: 1 and the index in *pos when name (any case) was created
 * on a, else 0 and the sorted insertion index. */
static int
find_backend(const nxl_kv_agent_t *a, const char *name, size_t *pos)
{
    return nxl__kv_find_name(a->backends, a->num_backends, sizeof(*a->backends),
                             0, name, pos);
}

/* nxl_kv_agent_create creates an agent called name (copied) with no
 * backends; acfg NULL = nxl_agent_config_init's defaults. The caller owns
 * *a_p (nxl_kv_agent_destroy). Returns NXL_OK or nxl_agent_create's error.
 * Thread-safe. */
NXL_API nxl_status_t
nxl_kv_agent_create(const char *name, const nxl_agent_config_t *acfg,
                    nxl_kv_agent_t **a_p)
{
    nxl_kv_agent_t *a;
    nxl_status_t st;

    if (a_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv agent: NULL argument");
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "kv agent: out of memory");
    }
    st = nxl_agent_create(name, acfg, &a->agent);
    if (st != NXL_OK) {
        free(a);
        return st;
    }
    *a_p = a;
    return NXL_OK;
}

/* nxl_kv_agent_destroy destroys the agent (and its backends) and frees a.
 * Storage registered with a must be destroyed first. Accepts NULL. */
NXL_API void
nxl_kv_agent_destroy(nxl_kv_agent_t *a)
{
    size_t i;

    if (a == NULL) {
        return;
    }
    nxl_agent_destroy(a->agent);
    for (i = 0; i < a->num_backends; i++) {
        free(a->backends[i]);
    }
    free(a->backends);
    free(a);
}

/* merge_params builds info's defaults overwritten by custom (may be NULL)
 * into a new array of info->num_defaults entries (strings borrowed). A
 * custom key that is not among the defaults -> NXL_ERR_INVALID_PARAM
 * "Failed to set param: <key>". */
static nxl_status_t
merge_params(const nxl_plugin_info_t *info, const nxl_params_t *custom,
             nxl_param_t **out_p)
{
    nxl_param_t *out;
    size_t i, j;

    if (custom != NULL && !nxl__kv_array_ok(custom->items, custom->count,
                                            sizeof(*custom->items))) {
        return nxl__fail(NXL_ERR_INVALID_PARAM,
                         "Failed to set params: %zu parameters at %p",
                         custom->count, (const void *)custom->items);
    }
    out = calloc(info->num_defaults + 1, sizeof(*out));
    if (out == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "kv agent: out of memory");
    }
    for (i = 0; i < info->num_defaults; i++) {
        out[i] = info->defaults[i];
    }
    for (j = 0; custom != NULL && j < custom->count; j++) {
        const nxl_param_t *p = &custom->items[j];

        if (p->key == NULL || p->value == NULL) {
            free(out);
            return nxl__fail(NXL_ERR_INVALID_PARAM, "Failed to set param: %s",
                             p->key ? p->key : "(null)");
        }
        for (i = 0; i < info->num_defaults; i++) {
            if (strcmp(out[i].key, p->key) == 0) {
                out[i].value = p->value;
                break;
            }
        }
        if (i == info->num_defaults) {
            free(out);
            return nxl__fail(NXL_ERR_INVALID_PARAM, "Failed to set param: %s",
                             p->key);
        }
    }
    *out_p = out;
    return NXL_OK;
}

/* nxl_kv_agent_add_backend creates backend name (uppercased) on a with the
 * plugin defaults overwritten by params (NULL = defaults). Already created
 * -> NXL_OK. Errors: NXL_ERR_NOT_FOUND "No <NAME> plugin found";
 * NXL_ERR_INVALID_PARAM "Failed to set param: <key>"; the backend's status
 * with "Failed to create nixl backend: <reason>"; NXL_ERR_NOMEM. Not
 * thread-safe with other calls on a. */
NXL_API nxl_status_t
nxl_kv_agent_add_backend(nxl_kv_agent_t *a, const char *name,
                         const nxl_params_t *params)
{
    char upper[KV_NAME_MAX], why[KV_REASON_MAX];
    nxl_plugin_info_t info;
    nxl_param_t *merged = NULL;
    nxl_params_t mp;
    char **list, *copy;
    size_t pos;
    nxl_status_t st;

    if (a == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv agent: NULL argument");
    }
    st = upper_name(name, upper);
    if (st != NXL_OK) {
        return st;
    }
    if (find_backend(a, upper, &pos)) {
        return NXL_OK;
    }
    if (nxl_plugin_info(upper, &info) != NXL_OK) {
        return nxl__fail(NXL_ERR_NOT_FOUND, "No %s plugin found", upper);
    }
    st = merge_params(&info, params, &merged);
    if (st != NXL_OK) {
        return st;
    }
    copy = strdup(upper);
    list = realloc(a->backends, (a->num_backends + 1) * sizeof(*list));
    if (list != NULL) {
        a->backends = list;
    }
    if (copy == NULL || list == NULL) {
        free(copy);
        free(merged);
        return nxl__fail(NXL_ERR_NOMEM, "kv agent: out of memory");
    }
    mp = (nxl_params_t){.items = merged, .count = info.num_defaults};
    st = nxl_backend_create(a->agent, upper, &mp, NULL);
    free(merged);
    if (st != NXL_OK) {
        /* Copy the reason: nxl__fail writes into the same buffer. */
        snprintf(why, sizeof(why), "%s", nxl_last_error());
        free(copy);
        if (strcmp(upper, "UCX") == 0) {
            /* Dynamo appends these to the error; they exceed the
             * last-error buffer, so they go to the log. */
            char diag[2048];

            nxl_kv_ucx_diagnostics(diag, sizeof(diag));
            nxl__warn("kv: UCX backend failed to start: %s\n%s", why, diag);
        }
        return nxl__fail(st, "Failed to create nixl backend: %s", why);
    }
    memmove(&a->backends[pos + 1], &a->backends[pos],
            (a->num_backends - pos) * sizeof(*list));
    a->backends[pos] = copy;
    a->num_backends++;
    return NXL_OK;
}

/* buf_add_quoted appends s as Rust's {:?} prints a string: in double
 * quotes, with '"' and '\\' escaped and control characters as \t, \r, \n
 * or \u{..} (Dynamo's messages format name lists and sets this way). */
static void
buf_add_quoted(char *buf, size_t cap, size_t *len, const char *s)
{
    const unsigned char *p;
    const char *esc;

    nxl__text_addf(buf, cap, len, "\"");
    for (p = (const unsigned char *)s; *p != '\0'; p++) {
        esc = *p == '"'    ? "\\\""
              : *p == '\\' ? "\\\\"
              : *p == '\t' ? "\\t"
              : *p == '\r' ? "\\r"
              : *p == '\n' ? "\\n"
                           : NULL;
        if (esc != NULL) {
            nxl__text_addf(buf, cap, len, "%s", esc);
        } else if (*p < 0x20 || *p == 0x7f) {
            nxl__text_addf(buf, cap, len, "\\u{%x}", *p);
        } else {
            nxl__text_addf(buf, cap, len, "%c", *p);
        }
    }
    nxl__text_addf(buf, cap, len, "\"");
}

/* build_agent creates agent name and backends names[i] with params[i]
 * (params NULL = defaults for all). strict: every backend must succeed,
 * else "Failed to initialize required backends: [B1: reason, ...]";
 * lenient: failures are logged and only "none succeeded" fails with
 * "Failed to initialize any NIXL backends from ["b1", "B2"]" (the names
 * as given, quoted as Rust's {:?} prints them). The status is
 * that of the first failure (NXL_ERR_INVALID_PARAM for an empty lenient
 * list). */
static nxl_status_t
build_agent(const char *name, const char *const *names,
            const nxl_params_t *params, size_t n, int strict,
            nxl_kv_agent_t **a_p)
{
    char msg[KV_REASON_MAX], list[KV_REASON_MAX];
    size_t mlen = 0, llen = 0, i, failed = 0;
    nxl_status_t st, first = NXL_OK;
    nxl_kv_agent_t *a;

    if (a_p == NULL || !nxl__kv_array_ok(names, n, sizeof(*names))) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv agent: NULL argument");
    }
    st = nxl_kv_agent_create(name, NULL, &a);
    if (st != NXL_OK) {
        return st;
    }
    msg[0] = list[0] = '\0';
    for (i = 0; i < n; i++) {
        char upper[KV_NAME_MAX];
        const char *shown = names[i] ? names[i] : "(null)";

        if (upper_name(names[i], upper) == NXL_OK) {
            shown = upper;
        }
        /* Dynamo prints the list as given ({:?} of the names). */
        nxl__text_addf(list, sizeof(list), &llen, "%s", i ? ", " : "");
        buf_add_quoted(list, sizeof(list), &llen,
                       names[i] ? names[i] : "(null)");
        st = nxl_kv_agent_add_backend(a, names[i], params ? &params[i] : NULL);
        if (st == NXL_OK) {
            continue;
        }
        if (first == NXL_OK) {
            first = st;
        }
        if (strict) {
            nxl__text_addf(msg, sizeof(msg), &mlen, "%s%s: %s",
                           failed ? ", " : "", shown, nxl_last_error());
        } else {
            nxl__warn("kv agent %s: failed to create %s backend: %s", name,
                      shown, nxl_last_error());
        }
        failed++;
    }
    if (strict && failed > 0) {
        nxl_kv_agent_destroy(a);
        return nxl__fail(first, "Failed to initialize required backends: [%s]",
                         msg);
    }
    if (!strict && failed == n) {
        nxl_kv_agent_destroy(a);
        return nxl__fail(first != NXL_OK ? first : NXL_ERR_INVALID_PARAM,
                         "Failed to initialize any NIXL backends from [%s]",
                         list);
    }
    *a_p = a;
    return NXL_OK;
}

/* nxl_kv_agent_with_backends (strict) creates agent name with every
 * backend of names (n may be 0). On any failure the agent is destroyed and
 * the first failure's status returned with "Failed to initialize required
 * backends: [B1: reason, B2: reason]". The caller owns *a_p. */
NXL_API nxl_status_t
nxl_kv_agent_with_backends(const char *name, const char *const *names, size_t n,
                           nxl_kv_agent_t **a_p)
{
    return build_agent(name, names, NULL, n, 1, a_p);
}

/* nxl_kv_agent_new_with_backends (lenient) creates agent name with those
 * backends of names that can be created, logging the others; fails only
 * when none could: "Failed to initialize any NIXL backends from ["b1",
 * "B2"]" (the names as given, quoted). The caller owns *a_p. */
NXL_API nxl_status_t
nxl_kv_agent_new_with_backends(const char *name, const char *const *names,
                               size_t n, nxl_kv_agent_t **a_p)
{
    return build_agent(name, names, NULL, n, 0, a_p);
}

/* nxl_kv_agent_from_config creates agent name with the backends of cfg and
 * their params, strict or lenient as above. The caller owns *a_p. Returns
 * NXL_OK, NXL_ERR_INVALID_PARAM, NXL_ERR_NOMEM or a backend failure. */
NXL_API nxl_status_t
nxl_kv_agent_from_config(const char *name, const nxl_kv_config_t *cfg,
                         int strict, nxl_kv_agent_t **a_p)
{
    const char **names;
    nxl_params_t *params;
    nxl_status_t st;
    size_t i, n;

    if (cfg == NULL || a_p == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv agent: NULL argument");
    }
    n = nxl_kv_config_count(cfg);
    names = calloc(n + 1, sizeof(*names));
    params = calloc(n + 1, sizeof(*params));
    if (names == NULL || params == NULL) {
        free(names);
        free(params);
        return nxl__fail(NXL_ERR_NOMEM, "kv agent: out of memory");
    }
    for (i = 0; i < n; i++) {
        names[i] = cfg->items[i].name;
        params[i] = (nxl_params_t){.items = cfg->items[i].params,
                                   .count = cfg->items[i].num_params};
    }
    st = build_agent(name, names, params, n, strict, a_p);
    free(names);
    free(params);
    return st;
}

/* nxl_kv_agent_has_backend returns 1 if backend name (any case) was
 * created on a. */
NXL_API int
nxl_kv_agent_has_backend(const nxl_kv_agent_t *a, const char *name)
{
    size_t pos;

    if (a == NULL || name == NULL) {
        return 0;
    }
    return find_backend(a, name, &pos);
}

/* nxl_kv_agent_require_backend returns NXL_OK if name was created on a,
 * else NXL_ERR_NOT_FOUND "Operation requires <NAME> backend, but it was not
 * initialized. Available backends: {"A", "B"}". */
NXL_API nxl_status_t
nxl_kv_agent_require_backend(const nxl_kv_agent_t *a, const char *name)
{
    char upper[KV_NAME_MAX], set[KV_REASON_MAX];
    size_t len = 0, i;
    nxl_status_t st;

    if (a == NULL) {
        return nxl__fail(NXL_ERR_INVALID_PARAM, "kv agent: NULL argument");
    }
    st = upper_name(name, upper);
    if (st != NXL_OK) {
        return st;
    }
    if (nxl_kv_agent_has_backend(a, upper)) {
        return NXL_OK;
    }
    set[0] = '\0';
    for (i = 0; i < a->num_backends; i++) {
        nxl__text_addf(set, sizeof(set), &len, "%s", i ? ", " : "");
        buf_add_quoted(set, sizeof(set), &len, a->backends[i]);
    }
    return nxl__fail(NXL_ERR_NOT_FOUND,
                     "Operation requires %s backend, but it was not "
                     "initialized. Available backends: {%s}",
                     upper, set);
}

/* nxl_kv_agent_backend_count returns how many backends a created. */
NXL_API size_t
nxl_kv_agent_backend_count(const nxl_kv_agent_t *a)
{
    return a == NULL ? 0 : a->num_backends;
}

/* nxl_kv_agent_backend_name returns created backend i (uppercase, sorted),
 * owned by a; NULL when i is out of range. */
NXL_API const char *
nxl_kv_agent_backend_name(const nxl_kv_agent_t *a, size_t i)
{
    if (a == NULL || i >= a->num_backends) {
        return NULL;
    }
    return a->backends[i];
}

/* nxl_kv_agent_raw returns the underlying agent, owned by a. */
NXL_API nxl_agent_t *
nxl_kv_agent_raw(const nxl_kv_agent_t *a)
{
    return a == NULL ? NULL : a->agent;
}

/* nxl_kv_agent_name returns the agent's name, owned by a. */
NXL_API const char *
nxl_kv_agent_name(const nxl_kv_agent_t *a)
{
    return a == NULL ? NULL : nxl_agent_name(a->agent);
}
