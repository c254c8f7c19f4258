/*
 * sidechan.h - what the two halves of the metadata side channel share
 * (md.h declares what the rest of the library uses): the handshake's
 * proof tags and helpers. sidechan.c has the framing, the handshake and
 * the client; sidechan_srv.c the listener.
 */
#ifndef NXL_MD_SIDECHAN_H
#define NXL_MD_SIDECHAN_H

#include "md.h"

/* The tags of the handshake's proofs: the listener proves
 * HMAC(secret, LISTENER || Nc || Nl), the client
 * HMAC(secret, CLIENT || Nl || Nc). */
#define NXL__SC_TAG_LISTENER "NXSC listener v1"
#define NXL__SC_TAG_CLIENT "NXSC client v1"

/* nxl__sc_proof computes HMAC-SHA256(key, tag || a || b) into out (tag at
 * most 32 bytes). Never fails: should HMAC fail, out is all zeros, which
 * matches no honest proof. No lock; any thread. */
void nxl__sc_proof(const void *key, size_t key_len, const char *tag,
                   const uint8_t *a, const uint8_t *b,
                   uint8_t out[NXL__SC_PROOF]);

/* nxl__sc_nonce fills n with fresh random bytes (getrandom, may block
 * until the kernel's pool is ready at boot). Returns NXL_OK, or the
 * errno's status with a last-error message. */
nxl_status_t nxl__sc_nonce(uint8_t n[NXL__SC_NONCE]);

#endif /* NXL_MD_SIDECHAN_H */
