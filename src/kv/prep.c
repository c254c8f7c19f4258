/*
 * prep.c - the transfer context's prepared descriptor lists, for the NIXL
 * strategies of the executor (ctx.c).
 *
 * Each side of a NIXL transfer names a layout. Instead of building and
 * preparing merged lists for every transfer (an index lookup per
 * descriptor, on both sides, each time), the context prepares a layout
 * once (nxl_dlist_prep) as one descriptor per unit of every block, in
 * natural order, and makes each transfer from index arrays
 * (nxl_xfer_make): unit u of block b is index b * units + u. A unit is the
 * whole block, a (block, layer) or a (block, layer, outer) region: the
 * coarsest that is contiguous in both layouts of the transfer and whose
 * layers the transfer covers (NXL__KV_G_*). Core merges the index pairs
 * that continue each other on both sides, so consecutive ids of fully
 * contiguous layouts still become one descriptor per run.
 *
 * An entry is keyed by what its descriptors are computed from: the side
 * (local, or the peer's name), the granularity, the memory type, the
 * layout type, dimensions and strides, and every memory region's base and
 * device. Never by the layout's pointer: a layout freed and another made
 * at the same address finds its own entry, unless it would produce the
 * very same descriptors, in which case the entry is right for it too.
 * Whether those descriptors still point at live registrations is core's
 * check: a local list whose memory was deregistered, or a remote list
 * whose peer's metadata was reloaded or invalidated, makes nxl_xfer_make
 * fail with NXL_ERR_NOT_FOUND, and the executor drops the entries,
 * prepares them again and retries once.
 *
 * Below block granularity the executor may order the indices unit by
 * unit rather than block by block, and for transfers whose runs merge
 * into few descriptors it skips the lists altogether (nxl__kv_merged
 * estimates that count; see kv_exec_nixl in ctx.c).
 *
 * The cache holds at most NXL__KV_PREP_ENTRIES lists and KV_PREP_DESCS
 * descriptors in all (about 32 bytes each, in core: the descriptor and
 * its backend key), evicting the least recently used; a layout with more
 * descriptors than that goes the per-transfer way. Lists are released at
 * nxl_kv_ctx_destroy; transfers made from a list outlive its release.
 * Everything here runs with ctx->agent_mu held.
 */
#include "ctx.h"

#include <stdlib.h>
#include <string.h>

/* Most descriptors all cached lists hold together (and one list may). */
#define KV_PREP_DESCS ((size_t)1 << 22)

/* Key words before the per-region ones. */
#define KV_KEY_FIXED 11

struct nxl__kv_prep {
    uint64_t hash;
    uint64_t *key; /* KV_KEY_FIXED + 2 * num_regions words */
    size_t words;
    char *peer; /* NULL: the local side */
    nxl_prepped_t *pp;
    size_t count;  /* descriptors */
    uint64_t used; /* stamp of the last use */
};

/* nxl__kv_gran: see ctx.h. Block 0 decides: every block is block 0
 * shifted by a multiple of the block stride, on either layout type. */
int
nxl__kv_gran(const nxl_kv_layout_t *l)
{
    size_t nl = l->cfg.num_layers, no = l->cfg.outer_dim, lyr, o;
    uint64_t a, prev = 0, dev, pdev = 0;
    int g = NXL__KV_G_BLOCK;

    for (lyr = 0; lyr < nl; lyr++) {
        for (o = 0; o < no; o++) {
            a = nxl__kv_addr(l, 0, lyr, o);
            dev = nxl__kv_dev(l, lyr);
            if ((lyr > 0 || o > 0) &&
                (a != prev + l->region_size || dev != pdev)) {
                if (o > 0) {
                    return NXL__KV_G_REGION;
                }
                g = NXL__KV_G_LAYER;
            }
            prev = a;
            pdev = dev;
        }
    }
    return g;
}

/* nxl__kv_units: see ctx.h. */
size_t
nxl__kv_units(const nxl_kv_layout_t *l, int g)
{
    switch (g) {
    case NXL__KV_G_BLOCK:
        return 1;
    case NXL__KV_G_LAYER:
        return l->cfg.num_layers;
    default:
        return l->cfg.num_layers * l->cfg.outer_dim;
    }
}

/* nxl__kv_unit_bytes: see ctx.h. */
uint64_t
nxl__kv_unit_bytes(const nxl_kv_layout_t *l, int g)
{
    uint64_t r = l->region_size;

    switch (g) {
    case NXL__KV_G_BLOCK:
        return r * l->cfg.num_layers * l->cfg.outer_dim;
    case NXL__KV_G_LAYER:
        return r * l->cfg.outer_dim;
    default:
        return r;
    }
}

/* prep_unit writes unit u of block 0 of l at granularity g into *d. */
static void
prep_unit(const nxl_kv_layout_t *l, int g, size_t u, nxl_desc_t *d)
{
    size_t no = l->cfg.outer_dim, lyr = 0, o = 0;

    if (g == NXL__KV_G_LAYER) {
        lyr = u;
    } else if (g == NXL__KV_G_REGION) {
        lyr = u / no;
        o = u % no;
    }
    *d = (nxl_desc_t){nxl__kv_addr(l, 0, lyr, o), nxl__kv_unit_bytes(l, g),
                      nxl__kv_dev(l, lyr)};
}

/* prep_span says whether units [ulo, uhi) of a block of l at granularity
 * g form one contiguous range on one device, of *len_p bytes. */
static int
prep_span(const nxl_kv_layout_t *l, int g, size_t ulo, size_t uhi,
          uint64_t *len_p)
{
    nxl_desc_t first, d;
    uint64_t len;
    size_t u;

    prep_unit(l, g, ulo, &first);
    len = first.len;
    for (u = ulo + 1; u < uhi; u++) {
        prep_unit(l, g, u, &d);
        if (d.addr != first.addr + len || d.dev_id != first.dev_id) {
            return 0;
        }
        len += d.len;
    }
    *len_p = len;
    return 1;
}

/* Breaks between runs are counted at this many evenly spaced places of
 * a longer id list; the estimate only picks the cheaper of two correct
 * ways, so a sample is enough and costs no pass over the ids. */
#define KV_RUN_SAMPLES 64

/* nxl__kv_merged: see ctx.h. */
size_t
nxl__kv_merged(const nxl_kv_layout_t *ll, const size_t *lids,
               const nxl_kv_layout_t *rl, const size_t *rids, size_t n, int g,
               size_t ulo, size_t uhi)
{
    uint64_t lspan, rspan;
    size_t i, j, step, breaks = 0;

    if (!prep_span(ll, g, ulo, uhi, &lspan) ||
        !prep_span(rl, g, ulo, uhi, &rspan)) {
        return n * (uhi - ulo);
    }
    if (lspan != ll->block_stride || rspan != rl->block_stride || n < 2) {
        return n;
    }
    if (n - 1 <= KV_RUN_SAMPLES) {
        for (i = 1; i < n; i++) {
            breaks += lids[i] != lids[i - 1] + 1 || rids[i] != rids[i - 1] + 1;
        }
        return 1 + breaks;
    }
    step = (n - 1) / KV_RUN_SAMPLES;
    for (j = 0; j < KV_RUN_SAMPLES; j++) {
        i = 1 + j * step;
        breaks += lids[i] != lids[i - 1] + 1 || rids[i] != rids[i - 1] + 1;
    }
    return 1 + breaks * ((n - 1) / KV_RUN_SAMPLES);
}

/* prep_key returns the key words of l at granularity g (malloc'd), or
 * NULL when memory is short. */
static uint64_t *
prep_key(const nxl_kv_layout_t *l, int g, size_t *words_p)
{
    size_t nr = l->num_regions, i;
    uint64_t *k = malloc((KV_KEY_FIXED + 2 * nr) * sizeof(*k));

    if (k == NULL) {
        return NULL;
    }
    k[0] = (uint64_t)g;
    k[1] = (uint64_t)l->mem;
    k[2] = (uint64_t)l->type;
    k[3] = l->cfg.num_blocks;
    k[4] = l->cfg.num_layers;
    k[5] = l->cfg.outer_dim;
    k[6] = l->region_size;
    k[7] = l->block_stride;
    k[8] = l->layer_stride;
    k[9] = l->outer_stride;
    k[10] = nr;
    for (i = 0; i < nr; i++) {
        k[KV_KEY_FIXED + i] = l->base[i];
        k[KV_KEY_FIXED + nr + i] = l->region_dev[i];
    }
    *words_p = KV_KEY_FIXED + 2 * nr;
    return k;
}

/* prep_hash is FNV-1a over the key words and the peer's name. */
static uint64_t
prep_hash(const uint64_t *k, size_t words, const char *peer)
{
    uint64_t h = 0xcbf29ce484222325ull;
    const unsigned char *p = (const unsigned char *)k;
    size_t i;

    for (i = 0; i < words * sizeof(*k); i++) {
        h = (h ^ p[i]) * 0x100000001b3ull;
    }
    h = (h ^ (peer != NULL)) * 0x100000001b3ull;
    for (p = (const unsigned char *)peer; p != NULL && *p != '\0'; p++) {
        h = (h ^ *p) * 0x100000001b3ull;
    }
    return h;
}

/* prep_free releases an entry and its list. */
static void
prep_free(nxl__kv_prep_t *e)
{
    nxl_dlist_release(e->pp);
    free(e->key);
    free(e->peer);
    free(e);
}

/* prep_remove drops entry i of c (the last one takes its slot). */
static void
prep_remove(nxl__kv_preps_t *c, size_t i)
{
    c->descs -= c->e[i]->count;
    prep_free(c->e[i]);
    c->e[i] = c->e[--c->n];
    c->e[c->n] = NULL;
}

/* prep_make_room evicts least recently used entries, never keep, until
 * count more descriptors and one more entry fit or only keep is left. */
static void
prep_make_room(nxl__kv_preps_t *c, size_t count, const nxl_prepped_t *keep)
{
    size_t i, lru;

    while (c->n == NXL__KV_PREP_ENTRIES || c->descs + count > KV_PREP_DESCS) {
        lru = c->n;
        for (i = 0; i < c->n; i++) {
            if (c->e[i]->pp != keep &&
                (lru == c->n || c->e[i]->used < c->e[lru]->used)) {
                lru = i;
            }
        }
        if (lru == c->n) {
            return;
        }
        prep_remove(c, lru);
    }
}

/* prep_new prepares every unit of l at granularity g (count descriptors)
 * for peer's side. */
static nxl_status_t
prep_new(nxl_kv_ctx_t *ctx, const nxl_kv_layout_t *l, const char *peer, int g,
         size_t count, nxl_prepped_t **pp_p)
{
    size_t units = nxl__kv_units(l, g), b, u;
    uint64_t bs = l->block_stride;
    nxl_desc_t *d;
    nxl_dlist_t dl;
    nxl_status_t st;

    d = malloc(count * sizeof(*d));
    if (d == NULL) {
        return nxl__fail(NXL_ERR_NOMEM,
                         "kv: out of memory for a list of %zu descriptors",
                         count);
    }
    for (u = 0; u < units; u++) {
        prep_unit(l, g, u, &d[u]);
    }
    for (b = 1; b < l->cfg.num_blocks; b++) {
        for (u = 0; u < units; u++) {
            d[b * units + u] = d[u];
            d[b * units + u].addr += b * bs;
        }
    }
    dl = (nxl_dlist_t){l->mem, d, count};
    st = nxl_dlist_prep(ctx->agent, peer, &dl, NULL, pp_p);
    free(d);
    return st;
}

/* nxl__kv_prep_get: see ctx.h. */
nxl_status_t
nxl__kv_prep_get(nxl_kv_ctx_t *ctx, const nxl_kv_layout_t *l, const char *peer,
                 int g, const nxl_prepped_t *keep, const nxl_prepped_t **pp_p)
{
    nxl__kv_preps_t *c = &ctx->preps;
    size_t nb = l->cfg.num_blocks, units = nxl__kv_units(l, g), words, i;
    nxl_prepped_t *pp = NULL;
    nxl__kv_prep_t *e;
    uint64_t *key, h;
    nxl_status_t st;

    if (nb == 0 || units > KV_PREP_DESCS / nb) {
        return NXL_ERR_NOT_SUPPORTED;
    }
    key = prep_key(l, g, &words);
    if (key == NULL) {
        return nxl__fail(NXL_ERR_NOMEM, "kv: out of memory");
    }
    h = prep_hash(key, words, peer);
    for (i = 0; i < c->n; i++) {
        e = c->e[i];
        if (e->hash == h && e->words == words &&
            memcmp(e->key, key, words * sizeof(*key)) == 0 &&
            (e->peer == NULL ? peer == NULL
                             : peer != NULL && strcmp(e->peer, peer) == 0)) {
            free(key);
            e->used = ++c->tick;
            *pp_p = e->pp;
            return NXL_OK;
        }
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL || (peer != NULL && (e->peer = strdup(peer)) == NULL)) {
        free(e);
        free(key);
        return nxl__fail(NXL_ERR_NOMEM, "kv: out of memory");
    }
    st = prep_new(ctx, l, peer, g, nb * units, &pp);
    if (st != NXL_OK) {
        free(e->peer);
        free(e);
        free(key);
        return st;
    }
    prep_make_room(c, nb * units, keep);
    e->hash = h;
    e->key = key;
    e->words = words;
    e->pp = pp;
    e->count = nb * units;
    e->used = ++c->tick;
    c->e[c->n++] = e;
    c->descs += e->count;
    c->made++;
    *pp_p = pp;
    return NXL_OK;
}

/* nxl__kv_prep_drop: see ctx.h. */
void
nxl__kv_prep_drop(nxl_kv_ctx_t *ctx, const nxl_prepped_t *pp)
{
    nxl__kv_preps_t *c = &ctx->preps;
    size_t i;

    for (i = 0; i < c->n; i++) {
        if (c->e[i]->pp == pp) {
            prep_remove(c, i);
            return;
        }
    }
}

/* nxl__kv_prep_clear: see ctx.h. */
void
nxl__kv_prep_clear(nxl_kv_ctx_t *ctx)
{
    while (ctx->preps.n > 0) {
        prep_remove(&ctx->preps, ctx->preps.n - 1);
    }
}

/* nxl__kv_prep_made: see ctx.h. */
uint64_t
nxl__kv_prep_made(nxl_kv_ctx_t *ctx)
{
    uint64_t made;

    pthread_mutex_lock(&ctx->agent_mu);
    made = ctx->preps.made;
    pthread_mutex_unlock(&ctx->agent_mu);
    return made;
}
