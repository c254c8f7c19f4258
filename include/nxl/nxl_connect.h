/*
 * nxl_connect.h - the tensor connector: Dynamo's `dynamo.nixl_connect` in C,
 * on the agent API, wire-compatible with Dynamo's JSON forms, plus the
 * media producer of Dynamo's frontend (decoded images served for NIXL
 * reads). docs/connect.md has the wire forms with examples and the state
 * machines.
 *
 * Pieces:
 *   wire forms  SerializedDescriptor and RdmaMetadata JSON (encode/decode
 *               between JSON text and plain structs), the agent-metadata
 *               string "b64:" + base64(zlib level 6(metadata)) (legacy hex
 *               accepted), device strings ("cpu", "cuda:N"). Pure functions:
 *               no agent, thread-safe, and the decoders take peer input
 *               (every byte bounds-checked; fuzzed by fuzz/fuzz_connect.c).
 *   connector   one per agent: tracks the memory operations registered, the
 *               remote agents they loaded (reference-counted) and the
 *               agent's notifications (a demultiplexer: each operation takes
 *               only its own key, everything else stays for the
 *               application, see nxl_connector_notifs_get).
 *   operations  passive (readable, writable: register local memory, publish
 *               RdmaMetadata with a fresh notification key, complete when
 *               that key arrives) and active (read, write: load the peer
 *               from RdmaMetadata, check sizes pairwise, post lazily on the
 *               first status poll). States and their int values are
 *               Dynamo's OperationStatus.
 *   media       register a decoded HWC uint8 image and emit Dynamo's
 *               RdmaMediaDataDescriptor JSON with its xxh3-64 content hash;
 *               decode it and read it on the consumer side.
 *
 * Nothing here calls back into the caller, and no library thread touches
 * an operation: state changes happen inside the status, wait, cancel and
 * notification calls. Statuses: every call returns an nxl_status_t and, on
 * failure, leaves a message in nxl_last_error(); where Dynamo raises with a
 * fixed text the message is that text. Outputs are written only on success.
 */
#ifndef NXL_NXL_CONNECT_H
#define NXL_NXL_CONNECT_H

#include <nxl/nxl.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ===================================================================== */
/* Constants and enums (Dynamo's values)                                  */
/* ===================================================================== */

/* NXL_CONNECT_JSON_MAX is the largest JSON text the decoders accept. */
#define NXL_CONNECT_JSON_MAX ((size_t)64 << 20)
/* NXL_CONNECT_MD_MAX is the largest agent metadata a "b64:"/hex string may
 * inflate to (a bound against zlib bombs). */
#define NXL_CONNECT_MD_MAX ((size_t)64 << 20)
/* NXL_CONNECT_KEY_MAX is the longest notification key accepted (bytes). */
#define NXL_CONNECT_KEY_MAX 4096
/* NXL_CONNECT_UUID_LEN is the size of a uuid4 string with its NUL. */
#define NXL_CONNECT_UUID_LEN 37
/* NXL_CONNECT_ZLIB_LEVEL is the compression level of agent metadata. */
#define NXL_CONNECT_ZLIB_LEVEL 6

/* nxl_connect_device_t is Dynamo's DeviceKind. */
typedef enum nxl_connect_device {
    NXL_CONNECT_DEVICE_UNSPECIFIED = 0,
    NXL_CONNECT_DEVICE_HOST = 1, /* "cpu": registered as NXL_DRAM */
    NXL_CONNECT_DEVICE_CUDA = 2  /* "cuda:N": registered as NXL_VRAM */
} nxl_connect_device_t;

/* nxl_connect_kind_t is Dynamo's OperationKind. */
typedef enum nxl_connect_kind {
    NXL_CONNECT_KIND_UNSPECIFIED = 0,
    NXL_CONNECT_READ = 1, /* readable (passive) <-> read (active) */
    NXL_CONNECT_WRITE = 2 /* writable (passive) <-> write (active) */
} nxl_connect_kind_t;

/* nxl_connect_state_t is Dynamo's OperationStatus. */
typedef enum nxl_connect_state {
    NXL_CONNECT_UNINITIALIZED = 0, /* active: made, not posted yet */
    NXL_CONNECT_INITIALIZED = 1,   /* posted (active) / waiting (passive) */
    NXL_CONNECT_IN_PROGRESS = 2,   /* active, polled again, not done */
    NXL_CONNECT_COMPLETE = 3,
    NXL_CONNECT_CANCELLED = 4,
    NXL_CONNECT_ERRORED = 5
} nxl_connect_state_t;

/* nxl_connect_state_str returns Dynamo's str() of state: "INIT", "PROC",
 * "DONE", "STOP", "ERR", or "<invalid>" (also for UNINITIALIZED, as in
 * Dynamo). Static; thread-safe. */
NXL_API const char *nxl_connect_state_str(nxl_connect_state_t state);

/* nxl_connect_kind_str returns "READ", "WRITE" or "<invalid>". Static. */
NXL_API const char *nxl_connect_kind_str(nxl_connect_kind_t kind);

/* nxl_connect_device_str returns Dynamo's str() of a DeviceKind: "cpu",
 * "cuda" or "<invalid>". Static. */
NXL_API const char *nxl_connect_device_str(nxl_connect_device_t device);

/* ===================================================================== */
/* Descriptors and device strings                                         */
/* ===================================================================== */

/* nxl_connect_desc_t is one memory span (Dynamo's Descriptor): a local
 * buffer of the caller, or a remote one read from RdmaMetadata. */
typedef struct nxl_connect_desc {
    uint64_t ptr;                /* address; never 0 */
    uint64_t size;               /* bytes */
    nxl_connect_device_t device; /* HOST or CUDA */
    uint64_t device_id;          /* CUDA ordinal; 0 for HOST */
} nxl_connect_desc_t;

/* nxl_connect_device_parse reads a device string as Dynamo's Device does:
 * ASCII whitespace stripped, case ignored; "cuda..." or "gpu..." is CUDA
 * with the id after the first ':' (0 without one), "cpu..." or "host..."
 * is HOST (id 0). Writes *device_p and *id_p. Thread-safe. Returns NXL_OK
 * or NXL_ERR_INVALID_PARAM ("Argument `metadata` must be in the format
 * 'cuda:<device_id>' or 'cpu'.", or a bad id). */
NXL_API nxl_status_t nxl_connect_device_parse(const char *s,
                                              nxl_connect_device_t *device_p,
                                              uint64_t *id_p);

/* nxl_connect_device_format writes Dynamo's str() of a Device into buf
 * (cap bytes, NUL-terminated): "cpu", or "cuda:N". Returns NXL_OK,
 * NXL_ERR_INVALID_PARAM (UNSPECIFIED or another value; buf too small). */
NXL_API nxl_status_t nxl_connect_device_format(nxl_connect_device_t device,
                                               uint64_t id, char *buf,
                                               size_t cap);

/* nxl_connect_desc_encode writes d as SerializedDescriptor JSON,
 * {"device":"cpu","ptr":N,"size":N}, into *json_p (NUL-terminated; len
 * excludes the NUL; release with nxl_blob_free). Returns NXL_OK,
 * NXL_ERR_INVALID_PARAM (ptr 0, bad device) or NXL_ERR_NOMEM. */
NXL_API nxl_status_t nxl_connect_desc_encode(const nxl_connect_desc_t *d,
                                             nxl_blob_t *json_p);

/* nxl_connect_desc_decode reads len bytes of SerializedDescriptor JSON
 * into *d_p with the checks of Dynamo's model (extra="forbid", field
 * validators). Thread-safe. Returns NXL_OK, NXL_ERR_PROTO (the message
 * names the field and the rule, pydantic-style) or NXL_ERR_NOMEM. */
NXL_API nxl_status_t nxl_connect_desc_decode(const void *json, size_t len,
                                             nxl_connect_desc_t *d_p);

/* ===================================================================== */
/* Agent metadata strings ("b64:" + base64(zlib(md)), legacy hex)         */
/* ===================================================================== */

/* nxl_connect_md_encode compresses len bytes of agent metadata (zlib level
 * 6) and writes "b64:" + base64 of it, or with hex != 0 the legacy form
 * (lowercase hex, no prefix), into *str_p (NUL-terminated; len excludes
 * the NUL; release with nxl_blob_free). Thread-safe. Returns NXL_OK,
 * NXL_ERR_INVALID_PARAM or NXL_ERR_NOMEM. */
NXL_API nxl_status_t nxl_connect_md_encode(const void *md, size_t len, int hex,
                                           nxl_blob_t *str_p);

/* nxl_connect_md_decode reverses nxl_connect_md_encode: s (len bytes)
 * starting "b64:" is base64 (standard alphabet, padded), anything else hex
 * (either case); the bytes must be one whole zlib stream that inflates to
 * at most max_out bytes (0 = NXL_CONNECT_MD_MAX). The metadata goes to
 * *md_p (release with nxl_blob_free). Thread-safe. Returns NXL_OK,
 * NXL_ERR_PROTO (empty, bad base64 or hex, corrupt, truncated or
 * oversized stream, trailing bytes) or NXL_ERR_NOMEM. */
NXL_API nxl_status_t nxl_connect_md_decode(const char *s, size_t len,
                                           size_t max_out, nxl_blob_t *md_p);

/* ===================================================================== */
/* RdmaMetadata                                                           */
/* ===================================================================== */

/* nxl_rdma_metadata_t is Dynamo's RdmaMetadata: what the passive side
 * publishes for the active side. For nxl_rdma_metadata_encode the caller
 * fills it (pointers are only read during the call); from
 * nxl_rdma_metadata_decode it is one library allocation. */
typedef struct nxl_rdma_metadata {
    const nxl_connect_desc_t *descriptors;
    size_t num_descriptors;
    const char *nixl_metadata;    /* "b64:..." or legacy hex */
    const char *notification_key; /* uuid4 of the passive side */
    int64_t operation_kind;       /* 1 READ (readable), 2 WRITE (writable) */
} nxl_rdma_metadata_t;

/* nxl_rdma_metadata_encode writes md as RdmaMetadata JSON in Dynamo's
 * field order, {"descriptors":[...],"nixl_metadata":"...",
 * "notification_key":"...","operation_kind":1}, into *json_p
 * (NUL-terminated; len excludes the NUL; release with nxl_blob_free). md
 * must pass the checks nxl_rdma_metadata_decode makes. Thread-safe.
 * Returns NXL_OK, NXL_ERR_INVALID_PARAM (with the decoder's message) or
 * NXL_ERR_NOMEM. */
NXL_API nxl_status_t nxl_rdma_metadata_encode(const nxl_rdma_metadata_t *md,
                                              nxl_blob_t *json_p);

/* nxl_rdma_metadata_decode reads len bytes of RdmaMetadata JSON (at most
 * NXL_CONNECT_JSON_MAX) into a new *md_p (free with
 * nxl_rdma_metadata_free). It refuses what Dynamo's pydantic models refuse
 * (unknown fields, wrong types, the field validators) and, stricter, any
 * missing field, a nixl_metadata that is not "b64:"+base64 or hex, a key
 * that is empty, longer than NXL_CONNECT_KEY_MAX or holds a NUL; the
 * message names the field ("RdmaMetadata: descriptors.0.ptr: Argument
 * `ptr` cannot be zero (aka `null` or `None`)."). An empty descriptor list
 * is valid here and refused when an operation begins, as in Dynamo. The
 * metadata string is only checked for syntax: nxl_connect_md_decode
 * inflates it. Thread-safe. Returns NXL_OK, NXL_ERR_PROTO or
 * NXL_ERR_NOMEM. */
NXL_API nxl_status_t nxl_rdma_metadata_decode(const void *json, size_t len,
                                              nxl_rdma_metadata_t **md_p);

/* nxl_rdma_metadata_free releases a decoded RdmaMetadata. Accepts NULL. */
NXL_API void nxl_rdma_metadata_free(nxl_rdma_metadata_t *md);

/* nxl_connect_uuid4 writes a fresh random uuid4 string ("xxxxxxxx-xxxx-
 * 4xxx-yxxx-xxxxxxxxxxxx", lowercase) into buf. Thread-safe. Returns
 * NXL_OK or NXL_ERR_IO (no randomness). */
NXL_API nxl_status_t nxl_connect_uuid4(char buf[NXL_CONNECT_UUID_LEN]);

/* ===================================================================== */
/* Connector                                                              */
/* ===================================================================== */

typedef struct nxl_connector nxl_connector_t;
typedef struct nxl_connect_op nxl_connect_op_t;

/* nxl_connector_create attaches a connector to agent (one per agent; the
 * agent must outlive it). From then on the application reads the agent's
 * notifications through nxl_connector_notifs_get, not nxl_notifs_get,
 * which would take the keys operations wait for. The connector calls are
 * thread-safe as far as the agent is: give the agent NXL_SYNC_STRICT or
 * NXL_SYNC_RW to use one connector from several threads. Returns NXL_OK,
 * NXL_ERR_INVALID_PARAM, NXL_ERR_NOT_ALLOWED (the agent has a connector)
 * or NXL_ERR_NOMEM. */
NXL_API nxl_status_t nxl_connector_create(nxl_agent_t *agent,
                                          nxl_connector_t **conn_p);

/* nxl_connector_destroy releases the operations still open (their handles
 * become invalid; a warning is logged), deregisters pool memory, forgets
 * the remote agents it loaded and frees conn. Notifications not yet read
 * are dropped. Accepts NULL. Not thread-safe with other calls on conn. */
NXL_API void nxl_connector_destroy(nxl_connector_t *conn);

/* nxl_connector_agent returns the agent of conn. */
NXL_API nxl_agent_t *nxl_connector_agent(const nxl_connector_t *conn);

/* nxl_connector_register registers n descriptors as pool memory (Dynamo's
 * pre-registered buffers): operations that use them (or spans inside
 * them) never deregister them; they stay registered until
 * nxl_connector_deregister or destroy. Memory an operation registered
 * becomes pool memory when registered here. Returns NXL_OK,
 * NXL_ERR_INVALID_PARAM, NXL_ERR_NOT_ALLOWED (overlaps memory registered
 * outside the connector), or an agent registration error; a failed call
 * registers nothing. */
NXL_API nxl_status_t nxl_connector_register(nxl_connector_t *conn,
                                            const nxl_connect_desc_t *descs,
                                            size_t n);

/* nxl_connector_deregister ends the pool registration of descriptors given
 * to nxl_connector_register (exactly); memory still used by an operation
 * is deregistered when that operation is released. Tries every descriptor
 * and returns the first error: NXL_ERR_NOT_FOUND (not pool memory) or an
 * agent error. */
NXL_API nxl_status_t nxl_connector_deregister(nxl_connector_t *conn,
                                              const nxl_connect_desc_t *descs,
                                              size_t n);

/* nxl_connector_notifs_get drives progress and returns, in arrival order,
 * every notification of the agent that no open passive operation claimed
 * (the application's own, keys of released or cancelled operations, keys
 * that only share a prefix with an operation's). Release *list_p with
 * nxl_notif_list_free. Returns NXL_OK, NXL_ERR_NOMEM (nothing is lost) or
 * the agent's error. */
NXL_API nxl_status_t nxl_connector_notifs_get(nxl_connector_t *conn,
                                              nxl_notif_list_t **list_p);

/* nxl_connector_notif_take drives progress and removes the oldest
 * notification that no open passive operation claimed and whose message is
 * exactly the len bytes at msg (Dynamo G3's consume_notification): other
 * notifications, keys that only share a prefix included, stay queued in
 * order. *found_p is 1 when one was removed, else 0. Returns NXL_OK,
 * NXL_ERR_INVALID_PARAM or the agent's error (nothing is lost; a later call
 * retries). */
NXL_API nxl_status_t nxl_connector_notif_take(nxl_connector_t *conn,
                                              const void *msg, size_t len,
                                              int *found_p);

/* nxl_connector_info_t counts what a connector holds (a snapshot). */
typedef struct nxl_connector_info {
    size_t num_ops;     /* open operations (not yet released) */
    size_t num_keys;    /* passive operations still waiting for their key */
    size_t num_regs;    /* memory registrations the connector made */
    size_t num_pool;    /* of which pool memory (nxl_connector_register) */
    size_t num_remotes; /* peers loaded and referenced by the connector */
    size_t num_queued;  /* notifications kept for nxl_connector_notifs_get */
} nxl_connector_info_t;

/* nxl_connector_info fills *info_p without driving progress (for leak
 * checks and monitoring). Thread-safe. Returns NXL_OK or
 * NXL_ERR_INVALID_PARAM. */
NXL_API nxl_status_t nxl_connector_info(nxl_connector_t *conn,
                                        nxl_connector_info_t *info_p);

/* nxl_connector_remote_add loads the peer of len bytes of agent metadata
 * (raw, as nxl_connect_md_decode returns it) and takes a reference on it,
 * as an active operation does (Dynamo's Remote): the peer stays loaded
 * until the last reference, of operations and of this call, is dropped.
 * The peer's name goes to name_buf (cap bytes, NUL-terminated). This
 * agent's own metadata takes no reference (loopback). Returns NXL_OK,
 * NXL_ERR_INVALID_PARAM (cap too small), NXL_ERR_PROTO (unreadable
 * metadata), NXL_ERR_NOT_ALLOWED (conflicts with a snapshot open
 * operations use) or the agent's error; a failed call holds nothing. */
NXL_API nxl_status_t nxl_connector_remote_add(nxl_connector_t *conn,
                                              const void *md, size_t len,
                                              char *name_buf, size_t cap);

/* nxl_connector_remote_remove drops a reference that
 * nxl_connector_remote_add took on peer name; the last reference
 * invalidates the peer unless something else loaded it first. Returns
 * NXL_OK (also for this agent's own name), NXL_ERR_INVALID_PARAM or
 * NXL_ERR_NOT_FOUND (no reference held). */
NXL_API nxl_status_t nxl_connector_remote_remove(nxl_connector_t *conn,
                                                 const char *name);

/* nxl_connector_remote_refs stores in *refs_p how many references (open
 * active operations and nxl_connector_remote_add) hold peer name: 0 when
 * the connector does not hold it. Returns NXL_OK or
 * NXL_ERR_INVALID_PARAM. */
NXL_API nxl_status_t nxl_connector_remote_refs(nxl_connector_t *conn,
                                               const char *name,
                                               unsigned *refs_p);

/* ===================================================================== */
/* Operations                                                             */
/* ===================================================================== */

/* nxl_connect_readable_create makes a passive READ operation (Dynamo's
 * ReadableOperation) over n local descriptors (n >= 1, one device kind,
 * ptr != 0): registers them (see nxl_connector_register for pool memory;
 * memory registered with the agent outside the connector is used as is),
 * draws a uuid4 notification key and snapshots the agent metadata for
 * nxl_connect_op_metadata. State INITIALIZED; COMPLETE once a notification
 * carrying exactly the key arrives (from any agent). Release with
 * nxl_connect_op_release. Returns NXL_OK, NXL_ERR_INVALID_PARAM (Dynamo's
 * texts: "Argument `local_descriptors` must not be an empty list.", "All
 * local descriptors must have the same memory type.", "Cannot register
 * memory with a null pointer."), NXL_ERR_NOT_ALLOWED (overlaps a
 * registration it does not cover), NXL_ERR_NOMEM or an agent error. */
NXL_API nxl_status_t nxl_connect_readable_create(
    nxl_connector_t *conn, const nxl_connect_desc_t *descs, size_t n,
    nxl_connect_op_t **op_p);

/* nxl_connect_writable_create is nxl_connect_readable_create for a passive
 * WRITE operation (Dynamo's WritableOperation): the peer writes into the
 * descriptors. */
NXL_API nxl_status_t nxl_connect_writable_create(
    nxl_connector_t *conn, const nxl_connect_desc_t *descs, size_t n,
    nxl_connect_op_t **op_p);

/* nxl_connect_op_metadata writes the RdmaMetadata JSON of a passive
 * operation (its descriptors, the agent metadata snapshot as "b64:..." or,
 * with hex != 0, legacy hex, its key, its kind) into *json_p (release with
 * nxl_blob_free). Returns NXL_OK, NXL_ERR_INVALID_PARAM (an active
 * operation) or NXL_ERR_NOMEM. */
NXL_API nxl_status_t nxl_connect_op_metadata(const nxl_connect_op_t *op,
                                             int hex, nxl_blob_t *json_p);

/* nxl_connect_read_begin makes an active READ operation (Dynamo's
 * ReadOperation) that pulls the memory described by rdma_json (len bytes
 * of RdmaMetadata from a readable operation) into n local descriptors.
 * It decodes and checks the metadata, checks the descriptor sizes
 * pairwise, registers the local descriptors, loads the peer (shared with
 * the connector's other operations on it, reference-counted) and makes
 * the transfer, which carries the notification key; the transfer is
 * posted by the first nxl_connect_op_status or nxl_connect_op_wait. State
 * UNINITIALIZED. Returns NXL_OK; NXL_ERR_PROTO (bad metadata: see
 * nxl_rdma_metadata_decode, nxl_connect_md_decode, "Request descriptor
 * must contain at least one serialized descriptor."); NXL_ERR_INVALID_PARAM
 * (as readable_create; metadata of a writable: "Cannot create a
 * `dynamo.nixl_connect.ReadOperation` to read from a remote
 * `dynamo.nixl_connect.WritableOperation`."); NXL_ERR_MISMATCH (Dynamo's
 * size texts: "Both `local_descriptors` and `remote_descriptors` must be
 * either lists or single descriptors.", "When `local_descriptors` and
 * `remote_descriptors` are lists, they must have the same length. N !=
 * M.", "Descriptor length mismatch: `local_descriptors` and
 * `remote_descriptors` descriptor at I must have the same size. A != B.",
 * "Local and remote descriptors must be the same size. A != B.");
 * NXL_ERR_NOT_ALLOWED (the peer's metadata conflicts with what open
 * operations on it still use); or an agent error (md_load, xfer_create).
 * A failed call leaves nothing registered or loaded. */
NXL_API nxl_status_t nxl_connect_read_begin(nxl_connector_t *conn,
                                            const nxl_connect_desc_t *local,
                                            size_t n, const void *rdma_json,
                                            size_t len,
                                            nxl_connect_op_t **op_p);

/* nxl_connect_write_begin is nxl_connect_read_begin for an active WRITE
 * (Dynamo's WriteOperation): pushes the local descriptors into the memory
 * of a writable operation. Metadata of a readable: NXL_ERR_INVALID_PARAM
 * "Cannot create a `WriteOperation` to write to a remote
 * `ReadableOperation`.". */
NXL_API nxl_status_t nxl_connect_write_begin(nxl_connector_t *conn,
                                             const nxl_connect_desc_t *local,
                                             size_t n, const void *rdma_json,
                                             size_t len,
                                             nxl_connect_op_t **op_p);

/* nxl_connect_begin_md is nxl_connect_read_begin (kind NXL_CONNECT_READ)
 * or nxl_connect_write_begin (NXL_CONNECT_WRITE) from an RdmaMetadata
 * struct (decoded, or built by the caller, e.g. a media consumer); md is
 * checked as nxl_rdma_metadata_encode checks it and only read during the
 * call. */
NXL_API nxl_status_t nxl_connect_begin_md(nxl_connector_t *conn,
                                          nxl_connect_kind_t kind,
                                          const nxl_connect_desc_t *local,
                                          size_t n,
                                          const nxl_rdma_metadata_t *md,
                                          nxl_connect_op_t **op_p);

/* nxl_connect_op_status polls op once without blocking and stores its
 * state in *state_p. Passive: reads the agent's notifications (the
 * connector keeps those of others). Active: the first poll posts the
 * transfer (done at once -> COMPLETE, else INITIALIZED, failure ->
 * ERRORED), later polls check it (COMPLETE, IN_PROGRESS or ERRORED).
 * Terminal states (COMPLETE, CANCELLED, ERRORED) never change and cost
 * nothing. ERRORED is a state, not a failure of this call: see
 * nxl_connect_op_info for the cause. Returns NXL_OK, NXL_ERR_INVALID_PARAM,
 * or an error of the agent's notification poll (the state is unchanged; a
 * later poll retries). Thread-safe as the connector. */
NXL_API nxl_status_t nxl_connect_op_status(nxl_connect_op_t *op,
                                           nxl_connect_state_t *state_p);

/* nxl_connect_op_wait polls op until it reaches a terminal state or
 * timeout_ms passes (-1 = forever, 0 = one poll), sleeping on the agent's
 * file descriptor (passive) or in nxl_xfer_wait (active) between polls;
 * several threads may wait on operations of one connector. Returns NXL_OK
 * (COMPLETE), NXL_ERR_CANCELED (CANCELLED), the operation's error
 * (ERRORED, e.g. NXL_ERR_REMOTE_DISCONNECT; Dynamo raises here),
 * NXL_ERR_TIMEOUT, or an error of the notification poll. */
NXL_API nxl_status_t nxl_connect_op_wait(nxl_connect_op_t *op, int timeout_ms);

/* nxl_connect_op_cancel cancels op: an active transfer is released (the
 * backend stops touching the buffers before this returns), a passive
 * operation stops claiming its key (a late notification then goes to
 * nxl_connector_notifs_get). State CANCELLED. No effect on COMPLETE or
 * CANCELLED operations. Returns NXL_OK, NXL_ERR_INVALID_PARAM, or
 * NXL_ERR_NOT_ALLOWED for an ERRORED one ("Operation is errored, unable to
 * cancel the operation."). */
NXL_API nxl_status_t nxl_connect_op_cancel(nxl_connect_op_t *op);

/* nxl_connect_op_release cancels op if it is not terminal, deregisters its
 * local descriptors (unless pool memory, memory registered outside the
 * connector, or still used by another operation), drops its reference on
 * the peer (the peer is invalidated with the last reference, unless it was
 * loaded outside the connector) and frees op. Tries every step even after
 * a failure (logged). Accepts NULL. Not thread-safe with other calls on
 * the same op. */
NXL_API void nxl_connect_op_release(nxl_connect_op_t *op);

/* nxl_connect_op_info_t describes an operation. Strings live as long as
 * the operation. */
typedef struct nxl_connect_op_info {
    nxl_connect_kind_t kind;   /* READ or WRITE */
    int passive;               /* 1: readable/writable; 0: read/write */
    nxl_connect_state_t state; /* last known; no polling */
    nxl_status_t error;        /* the cause when ERRORED, else NXL_OK */
    const char *error_text;    /* its message when ERRORED, else "" */
    const char *notification_key;
    const char *remote_agent; /* active: the peer's name; passive: "" */
    size_t num_descriptors;   /* local descriptors */
} nxl_connect_op_info_t;

/* nxl_connect_op_info fills *info_p without polling. Thread-safe. Returns
 * NXL_OK or NXL_ERR_INVALID_PARAM. */
NXL_API nxl_status_t nxl_connect_op_info(const nxl_connect_op_t *op,
                                         nxl_connect_op_info_t *info_p);

/* ===================================================================== */
/* Media (Dynamo's frontend producer and worker consumer)                 */
/* ===================================================================== */

/* nxl_media_limits_t are the image decoder limits of Dynamo's frontend
 * (ImageDecoderLimits); fill with nxl_media_limits_init. */
typedef struct nxl_media_limits {
    uint32_t max_image_width;  /* 0 = no limit */
    uint32_t max_image_height; /* 0 = no limit */
    uint64_t max_alloc;        /* bytes of the decoded image; 0 = none */
} nxl_media_limits_t;

/* NXL_MEDIA_DEFAULT_MAX_ALLOC is Dynamo's default max_alloc (128 MiB). */
#define NXL_MEDIA_DEFAULT_MAX_ALLOC ((uint64_t)128 * 1024 * 1024)
/* NXL_MEDIA_MAX_DIMS is the largest tensor rank the media decoder reads. */
#define NXL_MEDIA_MAX_DIMS 8

/* nxl_media_limits_init sets no width or height limit and max_alloc
 * NXL_MEDIA_DEFAULT_MAX_ALLOC. */
NXL_API void nxl_media_limits_init(nxl_media_limits_t *limits);

/* nxl_media_content_hash computes Dynamo's canonical media hash: xxh3-64
 * over ndim as u64 LE, each dim as u64 LE, the dtype byte (UINT8 = 0) and
 * the len bytes at data. Shape [1,2,3] over bytes 0..5 gives
 * 0x7a9bbcb11a898630. Thread-safe. Returns NXL_OK, NXL_ERR_INVALID_PARAM
 * or NXL_ERR_NOMEM. */
NXL_API nxl_status_t nxl_media_content_hash(const uint64_t *shape, size_t ndim,
                                            const void *data, size_t len,
                                            uint64_t *hash_p);

/* nxl_media_progress_delay_us returns the media agent's progress-thread
 * delay from DYN_MM_NIXL_PROGRESS_DELAY_US as Dynamo reads it: default
 * 1000 us, 0 allowed, values above 1000000 or unparsable ones give the
 * default (logged). Thread-safe. */
NXL_API uint32_t nxl_media_progress_delay_us(void);

typedef struct nxl_media nxl_media_t;

/* nxl_media_image_create copies a decoded image (height x width x
 * channels uint8, HWC, rows packed) into library memory, registers it with
 * agent as DRAM device 0 and prepares its RdmaMediaDataDescriptor (shape
 * [H, W, C], dtype "UINT8", metadata {"Image": {"format": format or null,
 * "color_type": "L8"|"La8"|"Rgb8"|"Rgba8", "layout": "HWC"}}, content
 * hash). format is the image format's name as Dynamo writes it ("Png",
 * "Jpeg", "WebP"...) or NULL. limits NULL = nxl_media_limits_init's. The
 * agent must outlive the object; readers' notifications arrive on it (see
 * nxl_media_discard_notifs). Returns NXL_OK, NXL_ERR_INVALID_PARAM
 * ("Unsupported channel count N", a zero dimension, a bad format string),
 * NXL_ERR_NOT_ALLOWED ("Image size exceeds limit: ...", "Memory limit
 * exceeded: ..."), NXL_ERR_NOMEM or an agent error. */
NXL_API nxl_status_t nxl_media_image_create(nxl_agent_t *agent,
                                            const void *pixels, uint32_t height,
                                            uint32_t width, uint32_t channels,
                                            const char *format,
                                            const nxl_media_limits_t *limits,
                                            nxl_media_t **media_p);

/* nxl_media_json writes the RdmaMediaDataDescriptor JSON of media
 * ({"nixl_metadata","nixl_descriptor":{"addr","size","mem_type":"Dram",
 * "device_id"},"shape","dtype","metadata","content_hash"}) with the
 * agent's current metadata into *json_p (release with nxl_blob_free).
 * Returns NXL_OK, NXL_ERR_NOMEM or an agent error. */
NXL_API nxl_status_t nxl_media_json(const nxl_media_t *media,
                                    nxl_blob_t *json_p);

/* nxl_media_hash returns the content hash of media. */
NXL_API uint64_t nxl_media_hash(const nxl_media_t *media);

/* nxl_media_data returns the registered copy of the pixels (size bytes in
 * *size_p when not NULL); it lives as long as media. */
NXL_API const void *nxl_media_data(const nxl_media_t *media, size_t *size_p);

/* nxl_media_destroy deregisters the image and frees it. Readers must be
 * done. Accepts NULL. */
NXL_API void nxl_media_destroy(nxl_media_t *media);

/* nxl_media_discard_notifs drains and drops every notification of agent
 * (Dynamo's frontend does this: each reader's completion key would
 * otherwise pile up). Only for an agent that serves media alone, without
 * a connector. Returns NXL_OK or the agent's error. */
NXL_API nxl_status_t nxl_media_discard_notifs(nxl_agent_t *agent);

/* nxl_media_desc_t is a decoded RdmaMediaDataDescriptor; one library
 * allocation (free with nxl_media_desc_free). */
typedef struct nxl_media_desc {
    const char *nixl_metadata; /* "b64:..." (or hex), as received */
    uint64_t addr;
    uint64_t size;
    nxl_mem_t mem_type; /* "Dram" -> NXL_DRAM, "Vram" -> NXL_VRAM... */
    uint64_t device_id;
    uint64_t shape[NXL_MEDIA_MAX_DIMS];
    size_t ndim;
    const char *dtype;         /* "UINT8" */
    const char *metadata_json; /* the "metadata" value as JSON ("null") */
    int has_content_hash;
    uint64_t content_hash;
} nxl_media_desc_t;

/* nxl_media_desc_decode reads len bytes of RdmaMediaDataDescriptor JSON
 * into a new *desc_p. Unknown fields are ignored (serde's default);
 * nixl_metadata, nixl_descriptor (addr, size, mem_type, device_id), shape
 * (1..NXL_MEDIA_MAX_DIMS dims) and dtype ("UINT8", the only DataType) are
 * required and checked for type and range; the byte count of shape must
 * equal size; metadata (any JSON) and content_hash (16 hex digits) are
 * optional. Thread-safe. Returns NXL_OK, NXL_ERR_PROTO or NXL_ERR_NOMEM. */
NXL_API nxl_status_t nxl_media_desc_decode(const void *json, size_t len,
                                           nxl_media_desc_t **desc_p);

/* nxl_media_desc_free releases a decoded media descriptor. Accepts NULL. */
NXL_API void nxl_media_desc_free(nxl_media_desc_t *desc);

/* nxl_media_read_begin is the consumer of Dynamo's worker
 * (read_decoded_media_via_nixl): it decodes media_json, builds RdmaMetadata
 * for it (device "cpu" for Dram, else "cuda:<device_id>" as Dynamo does; a
 * fresh key; READ) and begins a read into the local descriptors, with
 * nxl_connect_read_begin's checks: one local descriptor of the image's
 * byte size (n = 1) is the call. Returns as nxl_connect_read_begin and
 * nxl_media_desc_decode. */
NXL_API nxl_status_t nxl_media_read_begin(nxl_connector_t *conn,
                                          const void *media_json, size_t len,
                                          const nxl_connect_desc_t *local,
                                          size_t n, nxl_connect_op_t **op_p);

#ifdef __cplusplus
}
#endif

#endif /* NXL_NXL_CONNECT_H */
