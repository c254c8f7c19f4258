/* peer.c - the agent's table of loaded peers: lookup, unload, and the
 * mark a backend leaves when a peer died. The metadata operations that
 * fill the table are in md_ops.c. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

nxl__peer_t *
nxl__peer_find(nxl_agent_t *a, const char *name)
{
    nxl__peer_t *p;

    for (p = a->peers; p != NULL; p = p->next) {
        if (strcmp(p->name, name) == 0) {
            return p;
        }
    }
    return NULL;
}

void
nxl__peer_drop(nxl_agent_t *a, nxl__peer_t *p)
{
    nxl__peer_t **pp;
    nxl_backend_t *be;
    nxl__rregion_t *r;
    unsigned b, k;

    a->peer_drops++;
    for (pp = &a->peers; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    /* Stop the peer's transfers first, then drop its regions. */
    for (b = 0; b < a->nbackends; b++) {
        be = a->backends[b];
        if (p->ctx[b] != NULL) {
            nxl__be_lock(be);
            be->ops.peer_unload(be->engine, p->ctx[b]);
            nxl__be_unlock(be);
        }
    }
    for (k = 0; k < NXL_MEM_KINDS; k++) {
        for (r = nxl__index_first(&p->regions[k]); r != NULL;
             r = nxl__index_next(&p->regions[k], r)) {
            for (b = 0; b < a->nbackends; b++) {
                if (r->rmd[b] != NULL) {
                    be = a->backends[b];
                    nxl__be_lock(be);
                    be->ops.md_unload(be->engine, r->rmd[b]);
                    nxl__be_unlock(be);
                }
            }
        }
        nxl__index_fini(&p->regions[k]);
    }
    for (b = 0; b < NXL__MAX_BACKENDS; b++) {
        free(p->conn[b].data);
    }
    free(p);
}

void
nxl__peer_mark_dead(nxl_agent_t *a, const char *name)
{
    nxl__peer_t *p = nxl__peer_find(a, name);

    if (p != NULL) {
        atomic_store(&p->dead, true);
    }
}
