"""nxl.embedding: Dynamo's multimodal embedding transfer (encoder ->
LLM worker) over NXL (reference/dynamo-components.md §14).

Three modes, as Dynamo's ``EmbeddingTransferMode``:

  local       LocalEmbeddingSender/Receiver: a safetensors file in the temp
              dir (nxl.safetensors_fmt; same host only)
  nixl-read   NixlReadEmbeddingSender/Receiver: the sender publishes a
              ReadableOperation (nxl.connect); the receiver reads it into a
              buffer of its pre-registered pool (or a dynamic one)
  nixl-write  NixlWriteEmbeddingSender/Receiver: the receiver allocates from
              a registered ring buffer and answers the request with a
              msgpack handshake; the sender WRITEs and confirms with a
              terminal message (leases, retries, cancel, quarantine)

    sender = create_sender("nixl-write")
    request, done = await sender.send_embeddings(tensor)
    ...  # request.model_dump() travels to the worker
    receiver = create_receiver("nixl-write")
    tid, tensor = await receiver.receive_embeddings(request)
    ...
    receiver.release_tensor(tid)

Where Dynamo polls (1 ms loops, 5 ms buffer retries), NXL waits on the
agents' file descriptors and on the deadlines it knows; see docs/python.md.
"""

import asyncio
import base64
import collections
import enum
import json
import logging
import math
import os
import tempfile
import time
import uuid

import nxl
from . import connect as nixl_connect
from . import safetensors_fmt

logger = logging.getLogger(__name__)

__all__ = [
    "EmbeddingTransferMode", "TransferRequest", "NixlTransferRequest",
    "LocalEmbeddingSender", "LocalEmbeddingReceiver",
    "NixlReadEmbeddingSender", "NixlReadEmbeddingReceiver",
    "NixlWriteEmbeddingSender", "NixlWriteEmbeddingReceiver", "RingBuffer",
    "create_sender", "create_receiver", "mode_from_env",
    "torch_dtype_from_string", "torch_dtype_to_string",
    "NIXL_WRITE_LEASE_GUARD_SECONDS", "NIXL_WRITE_RETRY_INITIAL_SECONDS",
    "NIXL_WRITE_RETRY_MAX_SECONDS",
]

#: Seconds the sender keeps answering a descriptor after its lease ends.
NIXL_WRITE_LEASE_GUARD_SECONDS = 5.0
#: First back-off of a handshake the sender cannot serve yet.
NIXL_WRITE_RETRY_INITIAL_SECONDS = 0.01
#: Largest back-off.
NIXL_WRITE_RETRY_MAX_SECONDS = 1.0
#: How often a waiting receiver checks that its sender is still there
#: (NXL: Dynamo's receiver waits out its timeout).
NIXL_WRITE_LIVENESS_SECONDS = 0.5


def _torch():
    import torch
    return torch


def _msgpack():
    import msgpack
    return msgpack


def torch_dtype_from_string(dtype_str):
    """torch.dtype of "bfloat16" or "torch.bfloat16"; ValueError for a
    name that is not a dtype."""
    torch = _torch()
    name = dtype_str[len("torch."):] if dtype_str.startswith("torch.") \
        else dtype_str
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"Unsupported torch dtype: {dtype_str!r}")
    return dtype


def torch_dtype_to_string(dtype):
    """"bfloat16" for torch.bfloat16."""
    s = str(dtype)
    return s[len("torch."):] if s.startswith("torch.") else s


def _nbytes(t):
    return t.numel() * t.element_size()


def _itemsize(dtype):
    return _torch().empty((), dtype=dtype).element_size()


# ---- modes -----------------------------------------------------------------

class EmbeddingTransferMode(str, enum.Enum):
    """Dynamo's EmbeddingTransferMode."""
    LOCAL = "local"
    NIXL_WRITE = "nixl-write"
    NIXL_READ = "nixl-read"

    def __str__(self):
        return self.value


def mode_from_env(default="nixl-write"):
    """The mode of DYN_SGL_EMBEDDING_TRANSFER_MODE (default nixl-write)."""
    return EmbeddingTransferMode(
        os.environ.get("DYN_SGL_EMBEDDING_TRANSFER_MODE", default))


def create_sender(mode, **kw):
    """The sender of a mode ("local", "nixl-read", "nixl-write")."""
    mode = EmbeddingTransferMode(mode)
    cls = {EmbeddingTransferMode.LOCAL: LocalEmbeddingSender,
           EmbeddingTransferMode.NIXL_READ: NixlReadEmbeddingSender,
           EmbeddingTransferMode.NIXL_WRITE: NixlWriteEmbeddingSender}[mode]
    return cls(**kw)


def create_receiver(mode, **kw):
    """The receiver of a mode."""
    mode = EmbeddingTransferMode(mode)
    cls = {EmbeddingTransferMode.LOCAL: LocalEmbeddingReceiver,
           EmbeddingTransferMode.NIXL_READ: NixlReadEmbeddingReceiver,
           EmbeddingTransferMode.NIXL_WRITE: NixlWriteEmbeddingReceiver}[mode]
    return cls(**kw)


# ---- requests --------------------------------------------------------------

class _Model:
    """pydantic-style dump/validate for the request classes."""

    _fields = ()

    def model_dump(self, **kw):
        return {f: getattr(self, f) for f in self._fields}

    dict = model_dump

    def model_dump_json(self, **kw):
        return json.dumps(self.model_dump(), separators=(",", ":"))

    json = model_dump_json

    @classmethod
    def model_validate(cls, obj):
        if isinstance(obj, cls):
            return obj
        if not isinstance(obj, dict):
            raise nixl_connect.ValidationError(
                f"{cls.__name__}: Input should be a valid dictionary")
        try:
            return cls(**obj)
        except TypeError as e:  # a missing field
            raise nixl_connect.ValidationError(
                f"{cls.__name__}: Field required ({e})") from None

    @classmethod
    def model_validate_json(cls, s):
        try:
            obj = json.loads(s)
        except ValueError as e:
            raise nixl_connect.ValidationError(
                f"{cls.__name__}: Invalid JSON: {e}") from None
        return cls.model_validate(obj)

    def __eq__(self, other):
        return type(other) is type(self) and \
            self.model_dump() == other.model_dump()

    def __repr__(self):
        body = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({body})"


def _check(model, name, v, types, optional=False):
    if v is None and optional:
        return v
    if isinstance(v, bool) and bool not in types or not isinstance(v, types):
        raise nixl_connect.ValidationError(
            f"{model}: {name}: Input should be {types}")
    return v


class TransferRequest(_Model):
    """What a sender hands to the receiver: shape, dtype and the mode's
    serialized request (a file path, an RdmaMetadata dict, or a
    NixlTransferRequest JSON string)."""

    _fields = ("embeddings_shape", "embedding_dtype_str", "serialized_request")

    def __init__(self, *, embeddings_shape, embedding_dtype_str,
                 serialized_request, **extra):
        if extra:
            raise nixl_connect.ValidationError(
                f"TransferRequest: {sorted(extra)[0]}: Extra inputs are not "
                f"permitted")
        _check("TransferRequest", "embeddings_shape", embeddings_shape,
               (list, tuple))
        for d in embeddings_shape:
            _check("TransferRequest", "embeddings_shape", d, (int,))
        self.embeddings_shape = list(embeddings_shape)
        self.embedding_dtype_str = _check(
            "TransferRequest", "embedding_dtype_str", embedding_dtype_str,
            (str,))
        self.serialized_request = serialized_request


class NixlTransferRequest(_Model):
    """nixl-write's serialized request: the sender's agent, its metadata
    (base64 of the raw metadata, no zlib) or None, the tensor id, its size
    and the lease's end (unix time)."""

    _fields = ("sender_agent_id", "agent_metadata", "tensor_id",
               "tensor_size", "expires_at_unix")

    def __init__(self, *, sender_agent_id, agent_metadata, tensor_id,
                 tensor_size, expires_at_unix=None, **extra):
        m = "NixlTransferRequest"
        if extra:
            raise nixl_connect.ValidationError(
                f"{m}: {sorted(extra)[0]}: Extra inputs are not permitted")
        self.sender_agent_id = _check(m, "sender_agent_id", sender_agent_id,
                                      (str,))
        self.agent_metadata = _check(m, "agent_metadata", agent_metadata,
                                     (str,), optional=True)
        self.tensor_id = _check(m, "tensor_id", tensor_id, (int,))
        self.tensor_size = _check(m, "tensor_size", tensor_size, (int,))
        if isinstance(expires_at_unix, int) and \
                not isinstance(expires_at_unix, bool):
            expires_at_unix = float(expires_at_unix)
        self.expires_at_unix = _check(m, "expires_at_unix", expires_at_unix,
                                      (float,), optional=True)


def _resolved_future():
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut


# ---- local -----------------------------------------------------------------

class LocalEmbeddingSender:
    """Writes each tensor to a safetensors file in the temp dir; the
    request carries its path."""

    def __init__(self, tmpdir=None):
        self.sender_id = uuid.uuid4().hex
        self.embedding_counter = 0
        self.tmpdir = tmpdir

    def save_embeddings_to_file(self, embedding_key, embeddings):
        """Write embeddings (tensor "ec_cache") to a new file; its path."""
        fd, path = tempfile.mkstemp(prefix=f"encoder_cache.{embedding_key}.",
                                    suffix=".safetensors", dir=self.tmpdir)
        os.close(fd)
        try:
            safetensors_fmt.save_file({"ec_cache": embeddings.cpu()}, path)
        except BaseException:
            os.unlink(path)
            raise
        return path

    async def send_embeddings(self, embeddings, stage_embeddings=False):
        """(TransferRequest, a resolved future): the file is written (in a
        worker thread) before this returns."""
        key = f"{self.sender_id}_{self.embedding_counter}"
        self.embedding_counter += 1
        path = await asyncio.to_thread(self.save_embeddings_to_file, key,
                                       embeddings)
        return (TransferRequest(
            embeddings_shape=list(embeddings.shape),
            embedding_dtype_str=torch_dtype_to_string(embeddings.dtype),
            serialized_request=path), _resolved_future())

    async def aclose(self):
        """Nothing to release (files belong to the receiver)."""


class LocalEmbeddingReceiver:
    """Loads the file of each request; release_tensor deletes it."""

    def __init__(self):
        self.received_tensors = {}
        self.tensor_id_counter = 0

    async def receive_embeddings(self, request):
        """(tensor_id, tensor) of the file the request names."""
        path = request.serialized_request
        tensors = await asyncio.to_thread(safetensors_fmt.load_file, path)
        tid = self.tensor_id_counter
        self.tensor_id_counter += 1
        self.received_tensors[tid] = path
        return tid, tensors["ec_cache"]

    def release_tensor(self, tensor_id):
        """Delete the file of a received tensor."""
        path = self.received_tensors.pop(tensor_id, None)
        if path is not None:
            os.remove(path)

    async def cancel_embeddings(self, request):
        """Delete the request's file (a missing file is fine)."""
        path = request.serialized_request
        if isinstance(path, str):
            try:
                await asyncio.to_thread(os.remove, path)
            except FileNotFoundError:
                pass

    async def aclose(self):
        """Delete the files of tensors not released."""
        for tid in list(self.received_tensors):
            self.release_tensor(tid)


# ---- nixl-read -------------------------------------------------------------

class NixlReadEmbeddingSender:
    """Publishes each tensor as a ReadableOperation; the request carries
    its RdmaMetadata (a dict); the awaitable completes when the receiver
    has read it."""

    def __init__(self, connector=None, *, backends=None):
        self.connector = connector or nixl_connect.Connector(
            backends=backends)

    async def send_embeddings(self, embeddings, stage_embeddings=False):
        """(TransferRequest, awaitable). Without stage_embeddings the
        tensor is copied first; with it, keep the tensor alive and
        unchanged until the awaitable completes."""
        buf = embeddings if stage_embeddings else embeddings.clone().detach()
        try:
            readable = await self.connector.create_readable(
                nixl_connect.Descriptor(buf))
        except Exception as exc:  # noqa: BLE001
            if buf.device.type == "cpu":
                raise
            logger.warning("NIXL registration failed for a %s tensor, "
                           "staging it in host memory: %s",
                           buf.device.type, exc)
            buf = buf.cpu()
            readable = await self.connector.create_readable(
                nixl_connect.Descriptor(buf))
        request = TransferRequest(
            embeddings_shape=list(embeddings.shape),
            embedding_dtype_str=torch_dtype_to_string(embeddings.dtype),
            serialized_request=readable.metadata().model_dump())
        return request, _complete_and_release(readable)

    async def aclose(self):
        """Release the connection (open readables are cancelled)."""
        self.connector.close()


async def _complete_and_release(op):
    try:
        await op.wait_for_completion()
    finally:
        op.release()


class NixlReadEmbeddingReceiver:
    """Reads each request into a buffer of a pool registered once
    (max_items buffers of max_item_mm_token * embedding_hidden_size
    bytes), or into a dynamic tensor when the pool is empty or the
    embedding does not fit a pool buffer."""

    def __init__(self, embedding_hidden_size=8 * 1024,
                 max_item_mm_token=1024, max_items=1024, *, connector=None,
                 backends=None):
        torch = _torch()
        # NXL: the senders stay loaded between reads (bounded), so that a
        # read does not load (and SHM map) the sender's memory again.
        self.connector = connector or nixl_connect.Connector(
            backends=backends, keep_remotes=16)
        self.tensor_id_counter = 0
        self.item_bytes = max_item_mm_token * embedding_hidden_size
        self.warmedup_descriptors = collections.deque()
        self.inuse_descriptors = {}
        self._pool = []
        connection = self.connector._connection_now()
        for _ in range(max_items):
            t = torch.zeros(self.item_bytes, dtype=torch.int8)
            d = nixl_connect.Descriptor(t)
            d.register_with_connector(connection)
            self._pool.append(d)
            self.warmedup_descriptors.append(d)

    async def receive_embeddings(self, request):
        """(tensor_id, tensor): reads the sender's readable. A failed read
        returns its pool buffer before raising."""
        torch = _torch()
        shape = list(request.embeddings_shape)
        dtype = torch_dtype_from_string(request.embedding_dtype_str)
        md = nixl_connect.RdmaMetadata.model_validate(
            request.serialized_request)
        nbytes = math.prod(shape) * _itemsize(dtype)
        pooled = None
        if self.warmedup_descriptors and 0 < nbytes <= self.item_bytes:
            pooled = self.warmedup_descriptors.popleft()
            tensor = pooled._data_ref[:nbytes].view(dtype).view(shape)
            local = nixl_connect.Descriptor(
                (pooled.ptr, nbytes, "cpu", tensor))
        else:
            tensor = torch.zeros(shape, dtype=dtype)
            local = nixl_connect.Descriptor(tensor)
        try:
            op = await self.connector.begin_read(md, local)
            with op:
                await op.wait_for_completion()
                if op.status != nixl_connect.OperationStatus.COMPLETE:
                    raise RuntimeError(f"NIXL READ ended {op.status}")
        except BaseException:
            if pooled is not None:
                self.warmedup_descriptors.append(pooled)
            raise
        tid = self.tensor_id_counter
        self.tensor_id_counter += 1
        self.inuse_descriptors[tid] = pooled
        return tid, tensor

    def release_tensor(self, tensor_id):
        """Return a pooled buffer to the pool (dynamic ones are dropped)."""
        if tensor_id in self.inuse_descriptors:
            pooled = self.inuse_descriptors.pop(tensor_id)
            if pooled is not None:
                self.warmedup_descriptors.append(pooled)

    async def cancel_embeddings(self, request):
        """Nothing to cancel: the receiver reads on demand."""

    async def aclose(self):
        """Deregister the pool and release the connection."""
        conn = self.connector._connection
        for d in self._pool:
            if conn is not None:
                d.deregister_with_connector(conn)
        self._pool.clear()
        self.warmedup_descriptors.clear()
        self.connector.close()


# ---- nixl-write: the ring buffer -------------------------------------------

class RingBuffer:
    """One contiguous registered tensor handed out in contiguous pieces,
    never split across the end (Dynamo's allocation rules, §14.4):

      get_buffer(size): size > capacity -> (None, None); flush the freed
      list; if free_start + size passes the end: fail unless
      allocated_start >= size, else mark [free_start, end) freed (filler),
      free_start = 0, wrapped; if wrapped and free_start + size >
      allocated_start: fail; else record id -> range and advance.
      release_buffer(id): its range goes to the freed list, then flush
      (advance allocated_start through consecutive freed ranges, wrapping
      to 0 at the end; when nothing is allocated, reset to 0).
    """

    def __init__(self, buffer_size, tensor=None):
        torch = _torch()
        self.buffer_tensor = (tensor if tensor is not None else
                              torch.zeros(buffer_size, dtype=torch.int8))
        self.buffer_size = buffer_size
        self.end_idx = buffer_size
        self.free_start_idx = 0
        self.allocated_start_idx = 0
        self.wrapped_around = False
        self.freed_list = {}
        self.allocated_buffer_id_to_range = {}
        self._next_id = 0

    def __repr__(self):
        return (f"RingBuffer(size={self.buffer_size}, free_start_idx="
                f"{self.free_start_idx}, allocated_start_idx="
                f"{self.allocated_start_idx}, wrapped_around="
                f"{self.wrapped_around}, freed_list={self.freed_list}, "
                f"allocated_buffers={self.allocated_buffer_id_to_range})")

    def _flush_freed_list(self):
        end = self.freed_list.pop(self.allocated_start_idx, None)
        while end is not None:
            self.allocated_start_idx = end
            if self.allocated_start_idx == self.end_idx:
                self.allocated_start_idx = 0
                self.wrapped_around = False
            end = self.freed_list.pop(self.allocated_start_idx, None)
        if not self.allocated_buffer_id_to_range:
            self.free_start_idx = 0
            self.allocated_start_idx = 0
            self.wrapped_around = False
            self.freed_list.clear()

    def get_buffer(self, size):
        """(buffer_id, int8 tensor of size bytes), or (None, None) when
        the ring cannot hold it now."""
        if size > self.buffer_size:
            return None, None
        self._flush_freed_list()
        if self.free_start_idx + size > self.end_idx:
            if self.allocated_start_idx < size:
                return None, None
            self.freed_list[self.free_start_idx] = self.end_idx
            self.free_start_idx = 0
            self.wrapped_around = True
        start = self.free_start_idx
        end = start + size
        if self.wrapped_around and end > self.allocated_start_idx:
            return None, None
        bid = self._next_id
        self._next_id += 1
        self.allocated_buffer_id_to_range[bid] = (start, end)
        self.free_start_idx = end
        return bid, self.buffer_tensor[start:end]

    def release_buffer(self, buffer_id):
        """Give a buffer back (unknown ids are ignored)."""
        rng = self.allocated_buffer_id_to_range.pop(buffer_id, None)
        if rng is not None:
            self.freed_list[rng[0]] = rng[1]
            self._flush_freed_list()

    @property
    def allocated(self):
        """Number of buffers handed out and not released."""
        return len(self.allocated_buffer_id_to_range)


# ---- nixl-write: agents on the event loop ----------------------------------

class _AgentWaker:
    """Wakes an asyncio.Event when the agent's fd is readable (after one
    progress call) — the event-driven replacement of Dynamo's 1 ms polls."""

    def __init__(self, agent, hook=None):
        self.agent = agent
        self.event = asyncio.Event()
        self.loop = None
        self.fd_fired = False   # the fd (not set()) woke the last wait
        self.hook = hook        # run right in the reader callback

    def arm(self):
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            self.disarm()
            loop.add_reader(self.agent.fd, self._ready)
            self.loop = loop

    def _ready(self):
        if not self.agent.closed:
            self.agent.progress()
            if self.hook is not None:
                # Serve what arrived now, not one task switch later.
                try:
                    self.hook()
                except Exception:  # noqa: BLE001 (the task retries)
                    logger.debug("agent fd hook failed", exc_info=True)
        self.fd_fired = True
        self.event.set()

    def disarm(self):
        if self.loop is not None:
            try:
                self.loop.remove_reader(self.agent.fd)
            except Exception:  # noqa: BLE001 (loop closed)
                pass
            self.loop = None

    async def wait(self, timeout):
        """Until the fd fires, set() is called, or timeout (None:
        forever). (Not asyncio.wait_for: in 3.11 it can swallow a
        cancellation that races the event.)"""
        if not self.event.is_set():
            timer = None
            if timeout is not None:
                timer = asyncio.get_running_loop().call_later(
                    timeout, self.event.set)
            try:
                await self.event.wait()
            finally:
                if timer is not None:
                    timer.cancel()
        self.event.clear()


def _make_agent(prefix, backends):
    name = f"{prefix}_{uuid.uuid4()}"
    return nxl.Agent(name, telemetry=True,
                     backends=nxl.DEFAULT_BACKENDS if backends is None
                     else backends)


# ---- nixl-write: sender ----------------------------------------------------

class NixlWriteEmbeddingSender:
    """Publishes tensors for receivers to claim: a receiver answers the
    request with a handshake (target buffer), the sender WRITEs into it and
    confirms with ("terminal", id, "DONE"|"ERR").

    The sender's task wakes on its agent's fd (handshakes, cancels,
    completions), on new sends, and at the next deadline (retries, leases,
    expiry) — no fixed-period polling."""

    def __init__(self, *, backends=None, transfer_timeout=60.0):
        self.nixl_agent = _make_agent("sender", backends)
        self.sender_id = self.nixl_agent.name
        self.agent_metadata = self.nixl_agent.metadata()
        self.agent_metadata_b64 = base64.b64encode(
            self.agent_metadata).decode("ascii")
        self.remote_agents = set()
        self.transfer_tracker = {}       # id -> (tensor, desc_key, future)
        self.transfer_created_at = {}    # id -> monotonic
        self.transfer_failures = {}      # id -> exception
        self.retired_transfer_ids = collections.OrderedDict()
        self.retired_transfer_limit = 4096
        self.pending_terminal_notifications = collections.OrderedDict()
        self.responder_lease_expirations = {}   # id -> unix time
        self.pending_write_requests = collections.OrderedDict()
        self.pending_write_retry_after = {}
        self.pending_write_retry_attempts = {}
        self.inflight_transfers = {}     # id -> [xfer, start, rcv, rtid]
        self.registered_descs = {}       # (ptr, device) -> [Registration, n]
        self.transfer_timeout = transfer_timeout
        self._next_id = 0
        self._closing = False
        self._closed = False
        self._drained = asyncio.Event()
        self._waker = _AgentWaker(self.nixl_agent, hook=self._step)
        self._task = None
        try:
            asyncio.get_running_loop()
            self._start()
        except RuntimeError:
            pass  # started by the first send

    def _start(self):
        if self._task is None:
            self._waker.arm()
            self._task = asyncio.get_running_loop().create_task(self._run())

    # -- sending --

    async def send_embeddings(self, embeddings, stage_embeddings=False):
        """(TransferRequest, future). Without stage_embeddings the tensor
        is copied and the future is already resolved; with it, the future
        settles when the receiver's WRITE is terminal (an exception if it
        failed, was cancelled, or was not claimed before expiry)."""
        if self._closing:
            raise RuntimeError("NIXL WRITE sender is shutting down")
        self._start()
        tensor_id = self._next_id
        self._next_id += 1
        expires_at = time.time() + self.transfer_timeout
        fut = asyncio.get_running_loop().create_future()
        if not stage_embeddings:
            embeddings = embeddings.clone().detach()
            fut.set_result(None)
        key = (embeddings.data_ptr(), embeddings.get_device())
        if key not in self.registered_descs:
            self.registered_descs[key] = [self.nixl_agent.register(
                [(embeddings.data_ptr(), _nbytes(embeddings),
                  max(embeddings.get_device(), 0))],
                mem="VRAM" if embeddings.is_cuda else "DRAM"), 1]
        else:
            self.registered_descs[key][1] += 1
        self.transfer_tracker[tensor_id] = (embeddings, key, fut)
        self.transfer_created_at[tensor_id] = time.monotonic()
        self.responder_lease_expirations[tensor_id] = \
            expires_at + NIXL_WRITE_LEASE_GUARD_SECONDS
        self._waker.event.set()
        request = TransferRequest(
            embeddings_shape=list(embeddings.shape),
            embedding_dtype_str=torch_dtype_to_string(embeddings.dtype),
            serialized_request=NixlTransferRequest(
                sender_agent_id=self.sender_id,
                agent_metadata=self.agent_metadata_b64,
                tensor_id=tensor_id, tensor_size=_nbytes(embeddings),
                expires_at_unix=expires_at).model_dump_json())
        return request, fut

    # -- the progress task --

    def _busy(self):
        return bool(self.transfer_tracker or self.inflight_transfers or
                    self.pending_terminal_notifications or
                    self.responder_lease_expirations or
                    self.pending_write_requests)

    async def _run(self):
        while not self._closed:
            try:
                self._step()
                if self._closing and not self._busy():
                    self._drained.set()
                await self._waker.wait(self._next_deadline())
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 (keep serving; back off)
                logger.exception("NIXL WRITE sender: error in the progress "
                                 "loop")
                await asyncio.sleep(1.0)

    def _next_deadline(self):
        """Seconds until something must be looked at without an fd event:
        a retry, an expiry, a lease; a short re-check while transfers are
        in flight on backends whose completion may not wake the fd."""
        now_m, now_w = time.monotonic(), time.time()
        cands = []
        if self.inflight_transfers:
            cands.append(0.02)
        for t in self.pending_write_retry_after.values():
            cands.append(t - now_m)
        for t in self.transfer_created_at.values():
            cands.append(t + self.transfer_timeout - now_m)
        for t in self.responder_lease_expirations.values():
            cands.append(t - now_w)
        if self.pending_terminal_notifications:
            cands.append(NIXL_WRITE_RETRY_INITIAL_SECONDS)
        if self._closing:
            cands.append(0.01)
        if not cands:
            return None
        return max(0.0, min(cands))

    def _step(self):
        agent = self.nixl_agent
        if agent.closed:
            return
        self._read_notifications()
        now = time.monotonic()
        for req_key, req in list(self.pending_write_requests.items()):
            if now < self.pending_write_retry_after.get(req_key, 0.0):
                continue
            self._serve(req_key, req)
        for tid, err in list(self.transfer_failures.items()):
            if tid not in self.transfer_tracker:
                self.transfer_failures.pop(tid, None)
            elif tid not in self.inflight_transfers:
                self._complete_transfer(tid, err)
        for tid, created in list(self.transfer_created_at.items()):
            if tid in self.inflight_transfers:
                continue
            if now - created > self.transfer_timeout:
                logger.warning("Prepared tensor_id %s was not claimed within "
                               "%s seconds", tid, self.transfer_timeout)
                self._complete_transfer(tid, TimeoutError(
                    "embedding transfer was not claimed before expiry"))
        for tid, (x, start, rcv, rtid) in list(
                self.inflight_transfers.items()):
            st = x.raw_status
            if st == nxl.IN_PROG:
                if now - start > self.transfer_timeout and \
                        tid not in self.transfer_failures:
                    logger.warning("Transfer for tensor_id %s exceeded %s s; "
                                   "keeping its memory registered until it "
                                   "is terminal", tid, self.transfer_timeout)
                    self.transfer_failures[tid] = TimeoutError(
                        "embedding transfer timed out")
                continue
            state = "DONE" if st == nxl.OK else "ERR"
            self._queue_terminal(rcv, rtid, state)
            self._flush_terminal()  # the receiver first, then clean up
            err = self.transfer_failures.pop(tid, None)
            if err is None and state == "ERR":
                err = RuntimeError(f"NIXL WRITE failed for tensor_id {tid}: "
                                   f"{nxl.status_name(st)}")
            del self.inflight_transfers[tid]
            x.release()
            self._complete_transfer(tid, err)
        self._flush_terminal()
        self._expire_leases()

    def _read_notifications(self):
        msgpack = _msgpack()
        for sender, msg in self.nixl_agent.get_notif_pairs():
            try:
                d = msgpack.unpackb(msg, raw=False)
            except Exception:  # noqa: BLE001 (not ours: ignore it)
                continue
            if not isinstance(d, (list, tuple)):
                continue
            if len(d) == 2 and d[0] == "cancel":
                tid = d[1]
                if not any(k[1] == tid for k in self.pending_write_requests):
                    self.responder_lease_expirations.pop(tid, None)
                self.transfer_failures.setdefault(tid, RuntimeError(
                    "embedding transfer cancelled by receiver"))
                continue
            if len(d) != 4 or not isinstance(d[1], (list, tuple)) or \
                    len(d[1]) != 4:
                continue
            tid, target, rtid, md = d
            req = (sender, bytes(md or b""), tid, tuple(target), rtid)
            req_key = (sender, tid, rtid)
            if self.pending_write_requests.get(req_key) != req:
                self.pending_write_retry_after.pop(req_key, None)
                self.pending_write_retry_attempts.pop(req_key, None)
            self.pending_write_requests[req_key] = req

    def _serve(self, req_key, req):
        rcv, md, tid, (ptr, size, dev, mem), rtid = req
        if rcv not in self.remote_agents:
            if not md:
                self._defer(req_key, f"NIXL WRITE handshake from unknown "
                                     f"agent {rcv} without metadata")
                return
            try:
                self.nixl_agent.load_metadata(md)
                self.remote_agents.add(rcv)
            except Exception:  # noqa: BLE001
                self._defer(req_key, f"Failed to add NIXL WRITE receiver "
                                     f"{rcv}", exc_info=True)
                return
        if tid in self.transfer_failures:
            self._queue_terminal(rcv, rtid, "ERR")
            self._release_request(req_key)
            return
        if tid not in self.transfer_tracker:
            if tid in self.retired_transfer_ids:
                logger.debug("Rejecting a late write request for retired "
                             "tensor_id %s", tid)
            else:
                logger.warning("Rejecting a write request for unknown "
                               "tensor_id %s", tid)
            self._queue_terminal(rcv, rtid, "ERR")
            self._release_request(req_key)
            return
        src, _, _ = self.transfer_tracker[tid]
        done = str(rtid).encode()
        try:
            x = self.nixl_agent.xfer(
                "WRITE",
                [(src.data_ptr(), _nbytes(src), max(src.get_device(), 0))],
                [(ptr, size, dev)], rcv, notif=done,
                mem="VRAM" if src.is_cuda else "DRAM",
                remote_mem="VRAM" if str(mem).startswith("cuda") else "DRAM")
        except Exception as exc:  # noqa: BLE001
            self._queue_terminal(rcv, rtid, "ERR")
            self._release_request(req_key)
            self._complete_transfer(tid, exc)
            return
        self.inflight_transfers[tid] = [x, time.monotonic(), rcv, rtid]
        self._release_request(req_key)
        try:
            x.post()
        except Exception as exc:  # noqa: BLE001 (poll it to terminal)
            self.transfer_failures[tid] = exc

    def _release_request(self, req_key):
        self.pending_write_requests.pop(req_key, None)
        self.pending_write_retry_after.pop(req_key, None)
        self.pending_write_retry_attempts.pop(req_key, None)
        self.responder_lease_expirations.pop(req_key[1], None)

    def _defer(self, req_key, message, exc_info=False):
        n = self.pending_write_retry_attempts.get(req_key, 0) + 1
        self.pending_write_retry_attempts[req_key] = n
        max_exp = math.ceil(math.log2(NIXL_WRITE_RETRY_MAX_SECONDS /
                                      NIXL_WRITE_RETRY_INITIAL_SECONDS))
        delay = min(NIXL_WRITE_RETRY_INITIAL_SECONDS *
                    2 ** min(n - 1, max_exp), NIXL_WRITE_RETRY_MAX_SECONDS)
        self.pending_write_retry_after[req_key] = time.monotonic() + delay
        logger.warning("%s; retaining the handshake and retrying in %.3f s",
                       message, delay, exc_info=exc_info)

    def _queue_terminal(self, rcv, rtid, state):
        key = (rcv, rtid)
        self.pending_terminal_notifications[key] = state
        self.pending_terminal_notifications.move_to_end(key)

    def _flush_terminal(self):
        msgpack = _msgpack()
        for (rcv, rtid), state in list(
                self.pending_terminal_notifications.items()):
            try:
                self.nixl_agent.send_notif(
                    rcv, msgpack.packb(("terminal", rtid, state)))
            except nxl.RemoteDisconnectError:
                logger.warning("Receiver %s is gone; dropping its terminal "
                               "acknowledgement for %s", rcv, rtid)
            except Exception:  # noqa: BLE001 (retried)
                logger.warning("Failed to send the terminal acknowledgement "
                               "for %s transfer %s; retrying", rcv, rtid,
                               exc_info=True)
                continue
            self.pending_terminal_notifications.pop((rcv, rtid), None)

    def _expire_leases(self):
        now = time.time()
        for tid, t in list(self.responder_lease_expirations.items()):
            if now >= t:
                if any(k[1] == tid for k in self.pending_write_requests):
                    continue
                self.responder_lease_expirations.pop(tid, None)
                self.retired_transfer_ids.pop(tid, None)

    def _retire(self, tid):
        self.retired_transfer_ids[tid] = time.monotonic()
        self.retired_transfer_ids.move_to_end(tid)
        while len(self.retired_transfer_ids) > self.retired_transfer_limit:
            self.retired_transfer_ids.popitem(last=False)

    def _complete_transfer(self, tid, error=None):
        info = self.transfer_tracker.pop(tid, None)
        self.transfer_created_at.pop(tid, None)
        self.transfer_failures.pop(tid, None)
        if info is None:
            return
        self._retire(tid)
        _, key, fut = info
        entry = self.registered_descs[key]
        entry[1] -= 1
        if entry[1] == 0:
            entry[0].deregister()
            del self.registered_descs[key]
        if not fut.done():
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)

    # -- shutdown --

    async def aclose(self, *, drain_leases=True):
        """Fail every unclaimed send, wait until nothing is tracked, in
        flight, pending or leased, then release the agent. RuntimeError if
        registrations would leak.

        As in Dynamo, the responder leases of sends nobody claimed keep the
        sender answering late handshakes (with ERR) until they end
        (transfer_timeout + NIXL_WRITE_LEASE_GUARD_SECONDS after the send).
        drain_leases=False drops them at once: a receiver that handshakes
        afterwards finds the sender's agent gone (ConnectionError, its
        piece freed) instead of an ERR."""
        if self._closed:
            return
        self._closing = True
        if not drain_leases:
            for tid in list(self.responder_lease_expirations):
                if not any(k[1] == tid for k in self.pending_write_requests):
                    self.responder_lease_expirations.pop(tid, None)
        err = RuntimeError("NIXL WRITE sender is shutting down")
        for tid in list(self.transfer_tracker):
            if tid in self.inflight_transfers:
                self.transfer_failures.setdefault(tid, err)
            else:
                self._complete_transfer(tid, err)
        if self._task is not None:
            self._waker.event.set()
            drained = asyncio.ensure_future(self._drained.wait())
            try:
                await asyncio.wait({drained, self._task},
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                drained.cancel()
            if not self._drained.is_set():
                if self._task.done() and not self._task.cancelled():
                    self._task.result()
                raise RuntimeError("NIXL WRITE progress task exited before "
                                   "shutdown drained")
        else:
            self.responder_lease_expirations.clear()
        leaked = bool(self.registered_descs)
        self._closed = True
        if self._task is not None:
            self._waker.event.set()  # _run sees _closed and returns
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._waker.disarm()
        self.nixl_agent.close()
        if leaked:
            raise RuntimeError("NIXL WRITE shutdown drained transfers but "
                               "retained registrations")

    def __del__(self):
        task = getattr(self, "_task", None)
        if task is not None:
            task.cancel()


# ---- nixl-write: receiver --------------------------------------------------

class NixlWriteEmbeddingReceiver:
    """Owns a registered ring buffer (default 8 GiB, Dynamo's size) that
    senders WRITE into. Each receive allocates a piece, sends the
    handshake and awaits the sender's terminal message, woken by its
    agent's fd. A receive cancelled after its handshake notifies the
    sender and quarantines the piece until the terminal message arrives;
    a sender that disappears (its agent disconnects) frees it."""

    def __init__(self, buffer_size=2 * 8 * 1024 * 1024 * 256 * 2, *,
                 backends=None):
        self.ring_buffer = RingBuffer(buffer_size)
        self.transfer_tensor = self.ring_buffer.buffer_tensor
        self.nixl_agent = _make_agent("receiver", backends)
        self.receiver_id = self.nixl_agent.name
        self.remote_agents = set()
        self.reg_descs = self.nixl_agent.register(
            [(self.transfer_tensor.data_ptr(), buffer_size, 0)])
        self.agent_metadata = self.nixl_agent.metadata()
        self._next_id = 0
        self.to_buffer_id = {}
        self._quarantine_tasks = set()
        self._terminals = {}           # (sender, id) -> state
        self._waiters = {}             # (sender, id) -> Future
        self._dead = set()             # senders whose agent disconnected
        self._hook_got = 0             # notifications the fd hook routed
        self._waker = _AgentWaker(self.nixl_agent, hook=self._hook_route)
        self._router = None

    # -- notifications --

    def _route(self):
        """Sort the agent's notifications: terminal messages to their
        waiters, the plain done signals dropped."""
        msgpack = _msgpack()
        pairs = self.nixl_agent.get_notif_pairs()
        for sender, msg in pairs:
            try:
                d = msgpack.unpackb(msg, raw=False)
            except Exception:  # noqa: BLE001 (the done signal "N", others)
                continue
            if (isinstance(d, (list, tuple)) and len(d) == 3 and
                    d[0] == "terminal"):
                key = (sender, d[1])
                fut = self._waiters.get(key)
                if fut is not None and not fut.done():
                    fut.set_result(d[2])
                else:
                    self._terminals[key] = d[2]
        return len(pairs)

    def _hook_route(self):
        self._hook_got += self._route()

    async def _route_loop(self):
        last_probe = time.monotonic()
        while True:
            try:
                got = self._route() + self._hook_got
                self._hook_got = 0
                fired, self._waker.fd_fired = self._waker.fd_fired, False
                now = time.monotonic()
                # Probe when the fd fired with nothing to read (SHM, UCX
                # and TCP wake it when a loaded peer dies; at most every
                # 50 ms: empty wakes happen) or every LIVENESS seconds.
                since = now - last_probe
                if self._waiters and (
                        (fired and not got and since >= 0.05) or
                        since >= NIXL_WRITE_LIVENESS_SECONDS):
                    last_probe = now
                    self._probe_senders()
            except Exception:  # noqa: BLE001
                logger.exception("NIXL WRITE receiver: routing failed")
            await self._waker.wait(
                NIXL_WRITE_LIVENESS_SECONDS if self._waiters else None)

    def _probe_senders(self):
        """A sender whose agent disconnected will never answer: its
        waiters fail (and their pieces are freed, see receive)."""
        msgpack = _msgpack()
        for sender in {k[0] for k, f in self._waiters.items()
                       if not f.done()}:
            try:
                self.nixl_agent.send_notif(sender, msgpack.packb(("ping",)))
            except (nxl.RemoteDisconnectError, nxl.NotFoundError) as e:
                self._dead.add(sender)
                for key, fut in self._waiters.items():
                    if key[0] == sender and not fut.done():
                        fut.set_exception(ConnectionError(
                            f"NIXL WRITE sender {sender} disconnected: {e}"))
            except nxl.Error:
                pass

    def _ensure_router(self):
        self._waker.arm()
        if self._router is None or self._router.done():
            self._router = asyncio.get_running_loop().create_task(
                self._route_loop())

    async def _wait_for_terminal_state(self, sender, tensor_id, timeout):
        key = (sender, tensor_id)
        self._route()
        if key in self._terminals:
            return self._terminals.pop(key)
        fut = asyncio.get_running_loop().create_future()
        self._waiters[key] = fut
        self._waker.event.set()  # the router recomputes its deadline
        try:
            await asyncio.wait({fut}, timeout=timeout)
            if not fut.done():
                raise TimeoutError(
                    f"Timeout while waiting for transfer completion for "
                    f"tensor_id {tensor_id} for more than {timeout} seconds")
            return fut.result()
        finally:
            if self._waiters.get(key) is fut:
                del self._waiters[key]

    def _quarantine_buffer(self, buffer_id, sender, tensor_id):
        async def wait_and_release():
            try:
                await self._wait_for_terminal_state(sender, tensor_id, None)
            except asyncio.CancelledError:
                raise
            except ConnectionError:
                pass  # the sender is gone: nothing can write any more
            except Exception:  # noqa: BLE001
                logger.exception("Failed while quarantining NIXL WRITE "
                                 "buffer %s", buffer_id)
                return
            self.ring_buffer.release_buffer(buffer_id)

        task = asyncio.get_running_loop().create_task(wait_and_release())
        self._quarantine_tasks.add(task)
        task.add_done_callback(self._quarantine_tasks.discard)

    def _notify_cancel(self, req):
        self.nixl_agent.send_notif(
            req.sender_agent_id,
            _msgpack().packb(("cancel", req.tensor_id)))

    async def _add_sender(self, req, required):
        if req.sender_agent_id in self.remote_agents:
            return True
        if req.agent_metadata is None:
            if required:
                raise ValueError(f"Missing agent metadata for new sender "
                                 f"{req.sender_agent_id}")
            return False
        # Loading may connect to the sender (TCP): not on the loop.
        name = await asyncio.to_thread(self.nixl_agent.load_metadata,
                                       base64.b64decode(req.agent_metadata))
        self.remote_agents.add(name)
        self._dead.discard(name)
        return True

    # -- receiving --

    async def receive_embeddings(self, request, receive_timeout=60):
        """(tensor_id, tensor): a view of the ring buffer the sender wrote.
        Raises TimeoutError (lease expired, no buffer in time, no terminal
        message in time), ValueError (a request that does not add up),
        RuntimeError (the WRITE failed) or ConnectionError (the sender
        disconnected)."""
        self._ensure_router()
        req = NixlTransferRequest.model_validate_json(
            request.serialized_request)
        expires = req.expires_at_unix

        def expired():
            return expires is not None and time.time() >= expires

        if expired():
            raise TimeoutError("NIXL WRITE descriptor lease expired")
        shape = request.embeddings_shape
        if not shape or any(d <= 0 for d in shape):
            raise ValueError(f"Embedding shape must contain only positive "
                             f"dimensions: {shape}")
        dtype = torch_dtype_from_string(request.embedding_dtype_str)
        expected = math.prod(shape) * _itemsize(dtype)
        if req.tensor_size <= 0:
            raise ValueError("Embedding tensor_size must be positive")
        if req.tensor_size != expected:
            raise ValueError(f"Embedding tensor_size does not match shape "
                             f"and dtype: got {req.tensor_size}, expected "
                             f"{expected}")
        await self._add_sender(req, required=True)

        start = time.monotonic()
        while True:
            buffer_id, piece = self.ring_buffer.get_buffer(req.tensor_size)
            if piece is not None:
                break
            if time.monotonic() - start > receive_timeout:
                raise TimeoutError("Timeout while waiting for available "
                                   "buffer.")
            if expired():
                raise TimeoutError("NIXL WRITE descriptor lease expired")
            await asyncio.sleep(0.005)
        handshake_sent = False
        terminal = None
        try:
            if expired():
                raise TimeoutError("NIXL WRITE descriptor lease expired")
            tensor = piece.view(dtype).view(shape)
            rtid = self._next_id
            self._next_id += 1
            dev = piece.get_device()
            msg = _msgpack().packb((
                req.tensor_id,
                (piece.data_ptr(), req.tensor_size, max(dev, 0),
                 "cuda" if piece.is_cuda else "cpu"),
                rtid,
                self.agent_metadata if req.agent_metadata else b""))
            self.nixl_agent.send_notif(req.sender_agent_id, msg)
            handshake_sent = True
            try:
                terminal = await self._wait_for_terminal_state(
                    req.sender_agent_id, rtid, receive_timeout)
            except ConnectionError:
                terminal = "GONE"  # nothing will write into the piece now
                raise
            if terminal == "ERR":
                raise RuntimeError(f"NIXL WRITE failed for tensor_id {rtid}")
        except BaseException:
            if not handshake_sent or terminal is not None:
                self.ring_buffer.release_buffer(buffer_id)
            else:
                try:
                    self._notify_cancel(req)
                except Exception:  # noqa: BLE001
                    logger.warning("Failed to notify the sender about a "
                                   "cancelled NIXL WRITE", exc_info=True)
                self._quarantine_buffer(buffer_id, req.sender_agent_id, rtid)
            raise
        self.to_buffer_id[rtid] = buffer_id
        return rtid, tensor

    async def cancel_embeddings(self, request):
        """Best effort: tell the sender not to serve this request."""
        req = NixlTransferRequest.model_validate_json(
            request.serialized_request)
        if not await self._add_sender(req, required=False):
            return
        self._notify_cancel(req)

    def release_tensor(self, tensor_id):
        """Give a received tensor's piece back to the ring."""
        self.ring_buffer.release_buffer(self.to_buffer_id.pop(tensor_id))

    @property
    def quarantined(self):
        """Pieces waiting for a terminal message after a cancel."""
        return len(self._quarantine_tasks)

    async def aclose(self):
        """Stop routing, drop quarantines, deregister the ring, close the
        agent."""
        for t in list(self._quarantine_tasks):
            t.cancel()
        if self._router is not None:
            self._router.cancel()
            try:
                await self._router
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._router = None
        self._waker.disarm()
        if self.reg_descs is not None:
            self.reg_descs.deregister()
            self.reg_descs = None
        self.nixl_agent.close()
