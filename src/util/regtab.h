/*
 * regtab.h - a registration table that same-host peers read: how an owner
 * of registered memory revokes it from peers that copy into it themselves
 * (SHM's CMA and mapped paths, UCX's same-host paths).
 *
 * The owner keeps one table per backend engine in a memfd. Every
 * registration takes a slot and writes its memory kind, address and
 * length there with a fresh generation number; the region's public data
 * names (the table's fd number in the owner, slot, generation). A peer
 * copies the fd (pidfd_getfd, the same permission CMA needs), maps the
 * table read-only once and checks at load time that the slot describes
 * exactly the region the metadata claims (so a widened or forged blob is
 * refused), and at every post that the generation is still the one it
 * loaded (one shared-memory load per region: a deregistration, which
 * gives the slot a new generation, stops every later transfer).
 *
 * Layout (little endian, version 1): a 64-byte header
 *    0 u32 magic "NXRT"   4 u32 version   8 u64 owner token
 *   16 u64 slots the file holds (grows; the file never shrinks)
 * then 32-byte slots: 0 u64 generation (0: never used), 8 u64 kind,
 *   16 u64 addr, 24 u64 len.
 * Both sides map NXL__REGTAB_MAX_SLOTS slots of address space once, so
 * growing the file moves nothing; only slots below the file's size are
 * touched.
 *
 * In-flight semantics: a transfer posted before the deregistration may
 * complete (its check came first); one posted after fails.
 */
#ifndef NXL_UTIL_REGTAB_H
#define NXL_UTIL_REGTAB_H

#include <nxl/nxl.h>
#include <nxl/nxl_backend.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NXL__REGTAB_MAGIC 0x5452584eu /* "NXRT" */
#define NXL__REGTAB_VERSION 1u
#define NXL__REGTAB_HDR 64u
#define NXL__REGTAB_MAX_SLOTS (4u << 20) /* 128 MiB of address space */

typedef struct nxl__regtab_slot {
    _Atomic uint64_t gen;
    _Atomic uint64_t kind; /* relaxed: the generation orders them */
    _Atomic uint64_t addr;
    _Atomic uint64_t len;
} nxl__regtab_slot_t;

/* The owner's table. Thread-safe (its own lock). */
typedef struct nxl__regtab {
    pthread_mutex_t lock;
    int fd;         /* the memfd, -1 before init */
    uint8_t *base;  /* NXL__REGTAB_MAX_SLOTS mapped */
    uint32_t cap;   /* slots the file holds */
    uint32_t used;  /* slots ever handed out */
    uint32_t *free; /* slots given back, reused first; room for
                     * cap of them, so remove never allocates */
    uint32_t nfree, free_cap;
    uint64_t next_gen;
} nxl__regtab_t;

/* A peer's read-only view of an owner's table. */
typedef struct nxl__regtab_view {
    int fd;
    const uint8_t *base; /* NXL__REGTAB_MAX_SLOTS mapped */
    uint64_t token;
    _Atomic uint32_t slots; /* the file held at least this many (grows) */
} nxl__regtab_view_t;

/* nxl__regtab_init makes an empty table for an owner with token (written
 * in the header for peers to check). Returns NXL_OK or an error with a
 * message (memfd, mmap); t is then safe for fini. */
nxl_status_t nxl__regtab_init(nxl__regtab_t *t, uint64_t token);

/* nxl__regtab_fini unmaps and closes t. Accepts a table init failed on. */
void nxl__regtab_fini(nxl__regtab_t *t);

/* nxl__regtab_add publishes a registration and returns its slot and
 * generation. Returns NXL_OK, NXL_ERR_NOMEM (table full or growth
 * failed, with a message). */
nxl_status_t nxl__regtab_add(nxl__regtab_t *t, uint64_t kind, uint64_t addr,
                             uint64_t len, uint32_t *slot_p, uint64_t *gen_p);

/* nxl__regtab_remove revokes slot: peers' later checks of its old
 * generation fail. */
void nxl__regtab_remove(nxl__regtab_t *t, uint32_t slot);

/* nxl__regtab_prefetch asks for slot's line ahead of a
 * nxl__regtab_remove of it (among many regions it is not cached). Reads
 * only the mapping's base, set at init and never moved; a hint only,
 * any slot number is harmless. Thread-safe. */
static inline void
nxl__regtab_prefetch(const nxl__regtab_t *t, uint32_t slot)
{
    __builtin_prefetch(t->base + NXL__REGTAB_HDR +
                           (size_t)slot * sizeof(nxl__regtab_slot_t),
                       1);
}

/* nxl__regtab_view_open maps the owner's table from fd (a copy the view
 * takes over, closed on failure too) after checking its header names
 * token. Returns NXL_OK or NXL_ERR_PROTO / an errno status with a
 * message. */
nxl_status_t nxl__regtab_view_open(nxl__regtab_view_t *v, int fd,
                                   uint64_t token);

/* nxl__regtab_view_close unmaps v. Accepts a zeroed or failed view. */
void nxl__regtab_view_close(nxl__regtab_view_t *v);

/* nxl__regtab_view_slot returns slot of v when it lies in the owner's
 * file and describes exactly (gen, kind, addr, len); else NULL. Call when
 * loading a region's metadata. */
const nxl__regtab_slot_t *nxl__regtab_view_slot(const nxl__regtab_view_t *v,
                                                uint32_t slot, uint64_t gen,
                                                uint64_t kind, uint64_t addr,
                                                uint64_t len);

/* nxl__regtab_live says whether a slot found by nxl__regtab_view_slot
 * still holds generation gen (the region is still registered). */
static inline bool
nxl__regtab_live(const nxl__regtab_slot_t *s, uint64_t gen)
{
    return atomic_load_explicit((_Atomic uint64_t *)&s->gen,
                                memory_order_acquire) == gen;
}

/* nxl__regtab_dedup sorts the n region handles of v and drops repeats;
 * returns how many distinct ones are left at the front of v. */
size_t nxl__regtab_dedup(const void **v, size_t n);

/* nxl__regtab_distinct lists in a new array *v_p (free() it) the distinct
 * remote region handles (md) of x's segments, *n_p of them: what a post
 * checks. Returns NXL_OK or NXL_ERR_NOMEM with a message. */
nxl_status_t nxl__regtab_distinct(const nxl_be_xfer_t *x, const void ***v_p,
                                  size_t *n_p);

#endif /* NXL_UTIL_REGTAB_H */
