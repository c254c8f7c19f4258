"""nxl.connect: Dynamo's ``dynamo.nixl_connect`` over NXL's C connector.

The classes, states, wire forms, error texts and coroutines are Dynamo's
(reference/dynamo-components.md §12, the "G3" generation: one shared
connection per Connector, remote agents reference-counted per connection,
notifications consumed under a lock without touching other keys,
``wait_for_completion`` raising on ERRORED, pool descriptors never
deregistered by an operation). The work is done in C (nxl_connect.h):

    conn = nxl.connect.Connector()               # one agent "<id>-1"
    # passive side (e.g. the encoder)
    readable = await conn.create_readable(nxl.connect.Descriptor(tensor))
    send(readable.metadata().model_dump())       # RdmaMetadata as a dict
    await readable.wait_for_completion()
    # active side (e.g. the LLM worker)
    md = nxl.connect.RdmaMetadata.model_validate(received)
    op = await conn.begin_read(md, nxl.connect.Descriptor(local))
    await op.wait_for_completion()

Unlike Dynamo, ``wait_for_completion`` does not poll every 100 ms: it
waits on the agent's file descriptor (``loop.add_reader``), so a
completion is seen as soon as its notification (or the transfer) lands.
docs/python.md, "nxl.connect", lists the deviations from Dynamo.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import json
import logging
import socket
import uuid
import weakref
from typing import List, Optional

import nxl
from . import _nxl

logger = logging.getLogger(__name__)

__all__ = [
    "Connector", "Connection", "Descriptor", "Device", "DeviceKind",
    "OperationKind", "OperationStatus", "RdmaMetadata",
    "SerializedDescriptor", "ReadableOperation", "WritableOperation",
    "ReadOperation", "WriteOperation", "Remote", "ValidationError",
    "PassiveOperation", "ActiveOperation", "AbstractOperation",
]


# ---- enums -----------------------------------------------------------------

class DeviceKind(enum.IntEnum):
    """Where a descriptor's memory lives."""
    UNSPECIFIED = 0
    HOST = 1
    CUDA = 2

    def __str__(self):
        if self == DeviceKind.HOST:
            return "cpu"
        if self == DeviceKind.CUDA:
            return "cuda"
        return "<invalid>"

    @property
    def nixl_mem_type(self) -> str:
        """NIXL's memory type of the kind: "DRAM" or "VRAM"."""
        if self == DeviceKind.HOST:
            return "DRAM"
        if self == DeviceKind.CUDA:
            return "VRAM"
        raise ValueError(f"DeviceKind {self.name} has no NIXL memory type.")


class OperationKind(enum.IntEnum):
    """READ (a readable is read) or WRITE (a writable is written)."""
    UNSPECIFIED = 0
    READ = 1
    WRITE = 2

    def __str__(self):
        if self == OperationKind.READ:
            return "READ"
        if self == OperationKind.WRITE:
            return "WRITE"
        return "<invalid>"


class OperationStatus(enum.IntEnum):
    """The state of an operation (the C library's values)."""
    UNINITIALIZED = 0
    INITIALIZED = 1
    IN_PROGRESS = 2
    COMPLETE = 3
    CANCELLED = 4
    ERRORED = 5

    def __str__(self):
        return _nxl.connect_state_str(int(self))


_TERMINAL = (OperationStatus.COMPLETE, OperationStatus.CANCELLED,
             OperationStatus.ERRORED)


# ---- Device ----------------------------------------------------------------

class Device:
    """A device: Device("cuda:1"), Device("gpu"), Device("cpu"),
    Device("host") or Device((DeviceKind.CUDA, 1))."""

    __slots__ = ("_kind", "_id")

    def __init__(self, metadata):
        if metadata is None:
            raise ValueError("Argument `metadata` cannot be `None`.")
        if (isinstance(metadata, tuple) and len(metadata) == 2 and
                isinstance(metadata[0], DeviceKind) and
                isinstance(metadata[1], int) and
                not isinstance(metadata[1], bool)):
            kind, device_id = metadata
        elif isinstance(metadata, str):
            try:
                k, device_id = _nxl.connect_device_parse(metadata)
            except nxl.Error as e:
                raise ValueError(str(e)) from None
            kind = DeviceKind(k)
        else:
            raise TypeError("Argument `metadata` must be a "
                            "`tuple[MemoryKind, int]` or a `str`.")
        self._kind = kind
        self._id = device_id

    @property
    def id(self) -> int:
        """The device ordinal (0 for the host)."""
        return self._id

    @property
    def kind(self) -> DeviceKind:
        """HOST or CUDA."""
        return self._kind

    def __str__(self):
        if self._kind is DeviceKind.CUDA:
            return f"{self._kind}:{self._id}"
        return f"{self._kind}"

    def __repr__(self):
        return f"Device(kind={self._kind}, id={self._id})"

    def __eq__(self, other):
        return (isinstance(other, Device) and self._kind == other._kind and
                self._id == other._id)

    def __hash__(self):
        return hash((self._kind, self._id))


# ---- wire forms ------------------------------------------------------------

class ValidationError(ValueError):
    """A wire form refused, as pydantic's ValidationError (a ValueError)."""


class _Frozen:
    """A small frozen model with pydantic's v2 (and v1) method names."""

    __slots__ = ()
    _fields: tuple = ()

    def __setattr__(self, name, value):
        raise TypeError(f"{type(self).__name__} is frozen")

    def __delattr__(self, name):
        raise TypeError(f"{type(self).__name__} is frozen")

    def __eq__(self, other):
        return type(other) is type(self) and all(
            getattr(self, f) == getattr(other, f) for f in self._fields)

    def __hash__(self):
        return hash(tuple(_hashable(getattr(self, f)) for f in self._fields))

    def __repr__(self):
        body = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({body})"

    @classmethod
    def model_validate(cls, obj):
        """From a dict (or an instance): unknown fields are refused."""
        if isinstance(obj, cls):
            return obj
        if not isinstance(obj, dict):
            raise ValidationError(f"{cls.__name__}: Input should be a valid "
                                  f"dictionary or instance of {cls.__name__}")
        return cls(**obj)

    parse_obj = model_validate

    def model_dump(self, **kw) -> dict:
        """A dict of plain values (what model_validate takes back)."""
        return {f: _dump(getattr(self, f)) for f in self._fields}

    dict = model_dump

    def model_dump_json(self, **kw) -> str:
        """Compact JSON in field order (pydantic's model_dump_json)."""
        return json.dumps(self.model_dump(), separators=(",", ":"))

    json = model_dump_json


def _dump(v):
    if isinstance(v, _Frozen):
        return v.model_dump()
    if isinstance(v, (list, tuple)):
        return [_dump(x) for x in v]
    return v


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v


def _strict_int(model, field, v):
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValidationError(f"{model}: {field}: Input should be a valid "
                              f"integer")
    return v


def _strict_str(model, field, v):
    if not isinstance(v, str):
        raise ValidationError(f"{model}: {field}: Input should be a valid "
                              f"string")
    return v


class SerializedDescriptor(_Frozen):
    """A descriptor on the wire: {"device", "ptr", "size"}."""

    __slots__ = ("device", "ptr", "size")
    _fields = ("device", "ptr", "size")

    def __init__(self, *, device="cpu", ptr=0, size=0, **extra):
        m = "SerializedDescriptor"
        if extra:
            raise ValidationError(f"{m}: {sorted(extra)[0]}: Extra inputs "
                                  f"are not permitted")
        _strict_str(m, "device", device)
        v = device.strip().lower()
        if not (v.startswith("cuda") or v == "cpu"):
            raise ValidationError(f"{m}: device: Argument `device` must be "
                                  f"one of 'cpu' or 'cuda:<device_id>'.")
        if _strict_int(m, "ptr", ptr) == 0:
            raise ValidationError(f"{m}: ptr: Argument `ptr` cannot be zero "
                                  f"(aka `null` or `None`).")
        if _strict_int(m, "size", size) < 0:
            raise ValidationError(f"{m}: size: Argument `size` must be an "
                                  f"integer greater than or equal to zero.")
        object.__setattr__(self, "device", v)
        object.__setattr__(self, "ptr", ptr)
        object.__setattr__(self, "size", size)

    @classmethod
    def model_validate_json(cls, s):
        """From JSON, with the C decoder's (stricter) checks."""
        try:
            ptr, size, kind, dev = _nxl.connect_desc_decode(s)
        except nxl.Error as e:
            raise ValidationError(str(e)) from None
        return cls(device=_nxl.connect_device_format(kind, dev), ptr=ptr,
                   size=size)

    parse_raw = model_validate_json

    def to_descriptor(self) -> "Descriptor":
        """A (remote) Descriptor of this span."""
        return Descriptor((self.ptr, self.size, self.device, None))

    def _tuple(self):
        kind, dev = _nxl.connect_device_parse(self.device)
        return (self.ptr, self.size, kind, dev)


class RdmaMetadata(_Frozen):
    """What a passive operation publishes for the active side."""

    __slots__ = ("descriptors", "nixl_metadata", "notification_key",
                 "operation_kind")
    _fields = ("descriptors", "nixl_metadata", "notification_key",
               "operation_kind")

    def __init__(self, *, descriptors=(), nixl_metadata="",
                 notification_key="", operation_kind=0, **extra):
        m = "RdmaMetadata"
        if extra:
            raise ValidationError(f"{m}: {sorted(extra)[0]}: Extra inputs "
                                  f"are not permitted")
        if not isinstance(descriptors, (list, tuple)):
            raise ValidationError(f"{m}: descriptors: Input should be a "
                                  f"valid list")
        descs = []
        for i, d in enumerate(descriptors):
            if isinstance(d, SerializedDescriptor):
                descs.append(d)
            elif isinstance(d, dict):
                try:
                    descs.append(SerializedDescriptor(**d))
                except ValidationError as e:
                    raise ValidationError(f"{m}: descriptors.{i}: "
                                          f"{str(e).split(': ', 1)[1]}") \
                        from None
            else:
                raise ValidationError(f"{m}: descriptors.{i}: Input should "
                                      f"be a valid dictionary")
        _strict_str(m, "nixl_metadata", nixl_metadata)
        _strict_str(m, "notification_key", notification_key)
        kind = _strict_int(m, "operation_kind", operation_kind)
        if kind < 1 or kind > 3:
            raise ValidationError(f"{m}: operation_kind: Argument "
                                  f"`operation_kind` must be an integer "
                                  f"value of `dynamo.nixl_connect."
                                  f"OperationKind`.")
        object.__setattr__(self, "descriptors", descs)
        object.__setattr__(self, "nixl_metadata", nixl_metadata)
        object.__setattr__(self, "notification_key", notification_key)
        object.__setattr__(self, "operation_kind", kind)

    @classmethod
    def model_validate_json(cls, s):
        """From JSON, with the C decoder's (stricter) checks: every field
        required, no lax coercion, the metadata string's syntax checked
        (docs/connect.md §1.4)."""
        try:
            descs, md, key, kind = _nxl.rdma_metadata_decode(s)
        except nxl.Error as e:
            raise ValidationError(str(e)) from None
        return cls(descriptors=[
            SerializedDescriptor(device=_nxl.connect_device_format(k, dev),
                                 ptr=p, size=n) for p, n, k, dev in descs],
            nixl_metadata=md, notification_key=key, operation_kind=kind)

    parse_raw = model_validate_json

    def to_descriptors(self):
        """One Descriptor, or a list of them (remote: never registered)."""
        if len(self.descriptors) == 0:
            raise ValueError("Request descriptor must contain at least one "
                             "serialized descriptor.")
        if len(self.descriptors) == 1:
            return self.descriptors[0].to_descriptor()
        return [d.to_descriptor() for d in self.descriptors]


# ---- descriptors -----------------------------------------------------------

def _torch():
    try:
        import torch
        return torch
    except ImportError:  # pragma: no cover (torch is optional)
        return None


class Descriptor:
    """A span of memory: a torch tensor, (ndarray, Device|str), bytes or
    bytearray (host), or (ptr, size[, Device|str[, keepalive]])."""

    def __init__(self, data):
        TYPE_ERROR = ("Argument `data` must be `torch.Tensor`, "
                      "`tuple[ndarray, Device|str]`, `bytes`, or "
                      "`tuple[int, int, Device|str, Any]`.")
        if data is None:
            raise ValueError("Argument `data` cannot be `None`.")
        self._connection = None   # pool registration (register_with_...)
        self._serialized = None
        self._data_device = Device((DeviceKind.HOST, 0))
        self._data_ref = None
        torch = _torch()
        if torch is not None and isinstance(data, torch.Tensor):
            self._data_ptr = data.data_ptr()
            self._data_size = data.numel() * data.element_size()
            if data.is_cuda:
                self._data_device = Device((DeviceKind.CUDA,
                                            data.get_device()))
            self._data_ref = data
        elif isinstance(data, (bytes, bytearray)):
            dl = nxl.DescList(data)   # holds the buffer (no resize)
            self._data_ptr, self._data_size, _ = dl[0]
            self._data_ref = (data, dl)
        elif (isinstance(data, tuple) and len(data) == 2 and
              not isinstance(data[0], int) and
              isinstance(data[1], (Device, str))):
            arr = data[0]
            if hasattr(arr, "__array_interface__"):
                ptr = arr.__array_interface__["data"][0]
            elif hasattr(arr, "__cuda_array_interface__"):
                ptr = arr.__cuda_array_interface__["data"][0]
            else:
                raise TypeError("Argument `data[0]` must be a `ndarray` "
                                "with a valid array interface.")
            self._data_ptr = ptr
            self._data_size = arr.nbytes
            self._data_device = (data[1] if isinstance(data[1], Device)
                                 else Device(data[1]))
            self._data_ref = arr
        elif (isinstance(data, tuple) and len(data) >= 2 and
              isinstance(data[0], int) and isinstance(data[1], int)):
            if len(data) >= 3 and not isinstance(data[2], (Device, str)):
                raise TypeError("Argument `data` must be a "
                                "`tuple[int, int, Device|str, Any]`.")
            self._data_ptr = data[0]
            self._data_size = data[1]
            if len(data) >= 3:
                self._data_device = (data[2] if isinstance(data[2], Device)
                                     else Device(data[2]))
            self._data_ref = data[3] if len(data) >= 4 else None
        else:
            raise TypeError(TYPE_ERROR)

    @property
    def ptr(self) -> int:
        """The address."""
        return self._data_ptr

    @property
    def size(self) -> int:
        """Bytes."""
        return self._data_size

    @property
    def device(self) -> Device:
        """Where the memory is."""
        return self._data_device

    @property
    def is_registered(self) -> bool:
        """Registered as pool memory with a connection."""
        return self._connection is not None

    def _tuple(self):
        return (self._data_ptr, self._data_size, int(self._data_device.kind),
                self._data_device.id)

    def metadata(self) -> SerializedDescriptor:
        """The SerializedDescriptor of this span (cached)."""
        if self._serialized is None:
            self._serialized = SerializedDescriptor(
                device=str(self._data_device), ptr=self._data_ptr,
                size=self._data_size)
        return self._serialized

    @staticmethod
    def from_serialized(serialized: SerializedDescriptor) -> "Descriptor":
        """The Descriptor of a SerializedDescriptor."""
        if not isinstance(serialized, SerializedDescriptor):
            raise TypeError("Argument `serialized` must be "
                            "`SerializedDescriptor`.")
        return serialized.to_descriptor()

    def register_with_connector(self, connection) -> None:
        """Register the memory with a connection once, as pool memory:
        operations that use it (or spans inside it) never deregister it.
        Same connection again: no-op; another: RuntimeError."""
        connection = _as_connection(connection)
        if self._data_ptr == 0:
            raise ValueError("Cannot register memory with a null pointer.")
        if self._connection is connection:
            return
        if self._connection is not None:
            raise RuntimeError("Descriptor is already registered with "
                               "another connection.")
        connection._require()._native.register([self._tuple()])
        self._connection = connection

    register_memory = register_with_connector

    def deregister_with_connector(self, connection) -> None:
        """End the pool registration (the same connection only)."""
        connection = _as_connection(connection)
        if self._connection is None:
            return
        if self._connection is not connection:
            raise RuntimeError("Descriptor is registered with another "
                               "connection.")
        self._connection = None
        native = connection._native
        if native is not None and not native.closed:
            native.deregister([self._tuple()])

    def __del__(self):
        try:
            if self._connection is not None:
                self.deregister_with_connector(self._connection)
        except Exception:  # noqa: BLE001 (a finalizer must not raise)
            pass

    def __str__(self):
        return (f"ptr={hex(self._data_ptr)}, size={self._data_size}, "
                f"device={self._data_device}")

    def __repr__(self):
        return f"Descriptor({self})"


def _desc_list(descriptors, what="local_descriptors"):
    if isinstance(descriptors, Descriptor):
        return [descriptors]
    if isinstance(descriptors, list) and all(
            isinstance(d, Descriptor) for d in descriptors):
        if len(descriptors) == 0:
            raise ValueError(f"Argument `{what}` must not be an empty list.")
        return descriptors
    raise TypeError(f"Argument `{what}` must be `dynamo.nixl_connect."
                    f"Descriptor` or `list[dynamo.nixl_connect.Descriptor]`.")


def _as_connection(c):
    if isinstance(c, Connector):
        return c._connection_now()
    if not isinstance(c, Connection):
        raise TypeError("Argument `connector` must be `dynamo.nixl_connect."
                        "Connection` or `Connector`.")
    return c


def _dynamo_error(e):
    """The exception Dynamo raises where the C library returned e."""
    msg = str(e)
    if isinstance(e, (nxl.InvalidParamError, nxl.MismatchError,
                      nxl.ProtocolError)):
        return ValueError(msg)
    if isinstance(e, nxl.TimedOutError):
        return TimeoutError(msg)
    return RuntimeError(msg)


# ---- connection and connector ----------------------------------------------

class Connection:
    """One agent with its connector, shared by a Connector's operations:
    registrations, reference-counted remote agents, and the agent's
    notifications (each operation takes its own key only)."""

    def __init__(self, connector: "Connector", number: int):
        if not isinstance(connector, Connector):
            raise TypeError("Argument `connector` must be "
                            "`dynamo.nixl_connect.Connector`.")
        self._connector = connector
        self._number = number
        self._name = f"{connector.name}-{number}"
        self._agent = None
        self._native = None
        self._drivers = weakref.WeakKeyDictionary()  # loop -> _Driver
        self._kept = collections.OrderedDict()       # name -> Remote

    async def initialize(self) -> None:
        """Create the agent and its connector (idempotent)."""
        self._init_sync()

    def _init_sync(self):
        if self._native is not None:
            return
        c = self._connector
        agent = nxl.Agent(self._name, progress_thread=c._progress_thread,
                          backends=c._backends)
        try:
            self._native = _nxl.Connector(agent)
        except BaseException:
            agent.close()
            raise
        self._agent = agent

    def _require(self):
        if self._native is None:
            self._init_sync()
        if self._native.closed:
            raise RuntimeError(f"Connection {self._name} is closed.")
        return self

    @property
    def name(self) -> str:
        """The agent's name: "<worker_id>-<number>"."""
        return self._name

    @property
    def connector(self) -> "Connector":
        return self._connector

    @property
    def agent(self) -> "nxl.Agent":
        """The nxl.Agent (read its notifications through this Connection,
        not the agent: the connector is the agent's only reader)."""
        self._require()
        return self._agent

    @property
    def is_initialized(self) -> bool:
        return self._native is not None

    @property
    def metadata(self) -> bytes:
        """The agent's metadata."""
        return self._require()._agent.metadata()

    def consume_notification(self, key) -> bool:
        """Remove the oldest notification no operation claimed whose
        message is exactly key (str or bytes); other notifications, keys
        that share a prefix included, stay. True if one was removed."""
        if isinstance(key, str):
            key = key.encode("utf-8")
        try:
            return self._require()._native.take(key)
        except nxl.Error as e:
            raise _dynamo_error(e) from e

    def get_notifications(self) -> list:
        """[(sender, bytes)]: every notification no operation claimed, in
        arrival order (consumed)."""
        try:
            return self._require()._native.notifs()
        except nxl.Error as e:
            raise _dynamo_error(e) from e

    def info(self) -> dict:
        """What the connection holds: ops, keys, regs, pool, remotes,
        queued (for leak checks)."""
        return self._require()._native.info()

    def remote_refs(self, name: str) -> int:
        """References held on remote agent name (0: not loaded)."""
        return self._require()._native.remote_refs(name)

    def _keep(self, name, nixl_metadata):
        """Keep peer name loaded (LRU of keep_remotes entries)."""
        n = self._connector._keep_remotes
        if n == 0 or not name or name == self._name:
            return
        if name in self._kept:
            self._kept.move_to_end(name)
            return
        self._kept[name] = Remote(self, nixl_metadata)
        while len(self._kept) > n:
            self._kept.popitem(last=False)[1].release()

    def close(self) -> None:
        """Release the open operations, the connector and the agent."""
        for r in self._kept.values():
            r.release()
        self._kept.clear()
        for d in list(self._drivers.values()):
            d.fail_all(RuntimeError(f"Connection {self._name} was closed."))
        if self._native is not None:
            self._native.close()
        if self._agent is not None:
            self._agent.close()

    def _driver(self, loop):
        d = self._drivers.get(loop)
        if d is None:
            d = self._drivers[loop] = _Driver(self, loop)
        return d

    def __repr__(self):
        return f"Connection(name={self._name!r})"


class Connector:
    """Creates readable and writable operations, and reads and writes the
    memory of remote ones. All operations share one Connection (agent
    "<worker_id>-1").

    Connector(worker_id=None, enable_progress_thread=False, *,
              backends=nxl.DEFAULT_BACKENDS, keep_remotes=0)

    keep_remotes=N (NXL) keeps the N remote agents read or written most
    recently loaded after their last operation is released, so that the
    next operation on them skips loading (and SHM skips re-mapping their
    memory); 0 is Dynamo's rule (unloaded with the last reference)."""

    def __init__(self, worker_id: Optional[str] = None,
                 enable_progress_thread: bool = False, *, backends=None,
                 keep_remotes: int = 0):
        if worker_id is None:
            worker_id = str(uuid.uuid4()).replace("-", "")
        if not isinstance(worker_id, str) or len(worker_id) == 0:
            raise TypeError("Argument `worker_id` must be a non-empty `str` "
                            "or `None`.")
        if not isinstance(enable_progress_thread, bool):
            raise TypeError("Argument `enable_progress_thread` must be "
                            "`bool`.")
        self._worker_id = worker_id
        self._progress_thread = enable_progress_thread
        self._backends = (nxl.DEFAULT_BACKENDS if backends is None
                          else backends)
        if isinstance(keep_remotes, bool) or not isinstance(keep_remotes,
                                                            int) or \
                keep_remotes < 0:
            raise TypeError("Argument `keep_remotes` must be an `int` >= 0.")
        self._keep_remotes = keep_remotes
        self._hostname = socket.gethostname()
        self._connection: Optional[Connection] = None

    def __repr__(self):
        return (f"Connector(worker_id='{self._worker_id}', "
                f"hostname={self._hostname})")

    def __str__(self):
        return self._worker_id

    @property
    def name(self) -> str:
        """The worker id."""
        return self._worker_id

    @property
    def hostname(self) -> str:
        return self._hostname

    @property
    def is_cuda_available(self) -> bool:
        """Whether CUDA tensors can be used (torch sees a GPU)."""
        torch = _torch()
        try:
            return bool(torch is not None and torch.cuda.is_available())
        except Exception:  # noqa: BLE001
            return False

    @property
    def enable_progress_thread(self) -> bool:
        return self._progress_thread

    @property
    def metadata(self) -> bytes:
        """The shared connection's agent metadata."""
        return self._connection_now().metadata

    def _connection_now(self) -> Connection:
        if self._connection is None:
            self._connection = Connection(self, 1)
        return self._connection._require()

    async def _create_connection(self) -> Connection:
        """The shared connection (created on first use)."""
        return self._connection_now()

    async def initialize(self) -> None:
        """Create the shared connection now (optional)."""
        await self._create_connection()

    async def begin_read(self, remote_metadata: RdmaMetadata,
                         local_descriptors) -> "ReadOperation":
        """Read the memory of a remote ReadableOperation into
        local_descriptors."""
        if remote_metadata is None or not isinstance(remote_metadata,
                                                     RdmaMetadata):
            raise TypeError("Argument `remote_metadata` must be "
                            "`RdmaMetadata`.")
        _desc_list(local_descriptors)
        if remote_metadata.operation_kind != OperationKind.READ.value:
            raise RuntimeError(
                "Cannot create a `dynamo.nixl_connect.ReadOperation` to read "
                "from a remote `dynamo.nixl_connect.WritableOperation`.")
        conn = await self._create_connection()
        return ReadOperation(conn, remote_metadata, local_descriptors)

    async def begin_write(self, local_descriptors,
                          remote_metadata: RdmaMetadata) -> "WriteOperation":
        """Write local_descriptors into the memory of a remote
        WritableOperation."""
        if remote_metadata is None or not isinstance(remote_metadata,
                                                     RdmaMetadata):
            raise TypeError("Argument `remote_metadata` must be "
                            "`RdmaMetadata`.")
        _desc_list(local_descriptors)
        if remote_metadata.operation_kind != OperationKind.WRITE.value:
            raise RuntimeError("Cannot create a `WriteOperation` to write to "
                               "a remote `ReadableOperation`.")
        if not isinstance(remote_metadata.nixl_metadata, str):
            raise TypeError("Argument `remote_metadata.nixl_metadata` must "
                            "be `str`.")
        conn = await self._create_connection()
        return WriteOperation(conn, local_descriptors, remote_metadata)

    async def create_readable(self, local_descriptors) -> "ReadableOperation":
        """A passive operation a remote ReadOperation reads."""
        conn = await self._create_connection()
        return ReadableOperation(conn, local_descriptors)

    async def create_writable(self, local_descriptors) -> "WritableOperation":
        """A passive operation a remote WriteOperation writes."""
        conn = await self._create_connection()
        return WritableOperation(conn, local_descriptors)

    def close(self) -> None:
        """Release the connection (its operations, agent)."""
        if self._connection is not None:
            self._connection.close()

    async def aclose(self) -> None:
        """close() as a coroutine."""
        self.close()


# ---- remote agents ---------------------------------------------------------

class Remote:
    """A remote agent loaded on a connection. Remote(connection,
    nixl_metadata) loads it from its metadata ("b64:..." / legacy hex
    string, or raw bytes) and holds a reference until release(); the
    peer is unloaded when the last reference (of Remotes and of active
    operations) goes. An active operation's .remote is a view that holds
    no reference of its own."""

    def __init__(self, connection, nixl_metadata, expected_name=None):
        connection = _as_connection(connection)
        if not isinstance(nixl_metadata, (bytes, str)):
            raise TypeError("Argument `nixl_metadata` must be `bytes` or "
                            "`str`.")
        if len(nixl_metadata) == 0:
            raise ValueError("Argument `nixl_metadata` cannot be empty.")
        native = connection._require()._native
        try:
            raw = (_nxl.connect_md_decode(nixl_metadata)
                   if isinstance(nixl_metadata, str) else nixl_metadata)
            name = native.remote_add(raw)
        except nxl.Error as e:
            raise _dynamo_error(e) from e
        self._connection = connection
        self._name = name
        self._owned = True
        if expected_name is not None and expected_name != name:
            self.release()
            raise ValueError(f"Remote agent '{name}' is not the expected "
                             f"'{expected_name}'.")

    @classmethod
    def _view(cls, connection, name):
        r = cls.__new__(cls)
        r._connection = connection
        r._name = name
        r._owned = False
        return r

    @property
    def name(self) -> str:
        return self._name

    @property
    def connection(self) -> Connection:
        return self._connection

    @property
    def connector(self):
        return self._connection.connector

    def release(self) -> None:
        """Drop this Remote's reference (idempotent)."""
        if self._owned:
            self._owned = False
            native = self._connection._native
            if native is not None and not native.closed:
                native.remote_remove(self._name)

    _release = release

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __del__(self):
        try:
            self.release()
        except Exception:  # noqa: BLE001
            pass

    def __str__(self):
        return self._name

    def __repr__(self):
        return f"Remote(name={self._name}, connection={self._connection.name})"


# ---- operations ------------------------------------------------------------

class AbstractOperation:
    """What every operation has: its connection, kind, local descriptors,
    notification key, status, wait_for_completion, and release (with,
    or garbage collection)."""

    _native = None

    def __init__(self, connection, kind, local_descriptors):
        self._connection = connection
        self._operation_kind = kind
        self._local_desc_list = local_descriptors
        self._status = OperationStatus.UNINITIALIZED
        self._error_text = ""

    # The native op; None once released.
    def _attach(self, native):
        self._native = native
        info = native.info()
        self._notification_key = info["notification_key"]
        self._status = OperationStatus(info["state"])

    @property
    def connection(self) -> Connection:
        return self._connection

    @property
    def connector(self) -> Connector:
        return self._connection.connector

    @property
    def operation_kind(self) -> OperationKind:
        return self._operation_kind

    @property
    def notification_key(self) -> str:
        return self._notification_key

    def _poll(self) -> OperationStatus:
        if self._status in _TERMINAL:
            return self._status
        native = self._native
        if native is None or native.released:
            raise RuntimeError("NIXL transfer handle is invalid.")
        try:
            s = OperationStatus(native.status())
        except nxl.Error as e:
            raise _dynamo_error(e) from e
        if s == OperationStatus.ERRORED:
            self._error_text = native.info()["error_text"]
        self._status = s
        return s

    @property
    def status(self) -> OperationStatus:
        """Polls once (an active operation's first poll posts its
        transfer); terminal states never change."""
        return self._poll()

    def _raise_if_errored(self):
        if self._status == OperationStatus.ERRORED:
            raise RuntimeError(
                f"{type(self).__name__} {self._operation_kind} failed: "
                f"{self._error_text or 'the transfer errored'}")

    async def wait_for_completion(self) -> None:
        """Await a terminal state, woken by the agent's file descriptor.
        Returns for COMPLETE and CANCELLED; raises RuntimeError for
        ERRORED."""
        s = self._poll()
        if s not in _TERMINAL:
            loop = asyncio.get_running_loop()
            if self._connection.connector.enable_progress_thread:
                await _wait_in_executor(self, loop)
            else:
                fut = loop.create_future()
                d = self._connection._driver(loop)
                d.watch(self, fut)
                try:
                    await fut
                finally:
                    d.unwatch(self, fut)
        self._raise_if_errored()

    def release(self) -> None:
        """Cancel if not terminal, drop the registrations it made (never
        pool memory) and its reference on the peer. Idempotent."""
        native, self._native = self._native, None
        if native is None:
            return
        if self._status not in _TERMINAL:
            try:
                self._status = OperationStatus(native.info()["state"])
            except nxl.Error:
                pass
            if self._status not in _TERMINAL:
                self._status = OperationStatus.CANCELLED
        native.release()

    _release = release

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.release()

    def __del__(self):
        try:
            self.release()
        except Exception:  # noqa: BLE001
            pass

    def __repr__(self):
        return (f"{type(self).__name__}(operation_kind="
                f"{self._operation_kind}, local_descriptors="
                f"{self._local_desc_list}, notification_key="
                f"'{getattr(self, '_notification_key', '')}', "
                f"status='{self._status}')")


class PassiveOperation(AbstractOperation):
    """A readable or writable: registers its descriptors, publishes
    RdmaMetadata with a fresh notification key, and completes when a
    notification carrying exactly that key arrives."""

    def __init__(self, connection, kind, local_descriptors):
        super().__init__(connection, kind, local_descriptors)
        descs = _desc_list(local_descriptors)
        native = connection._require()._native
        make = native.readable if kind == OperationKind.READ else \
            native.writable
        try:
            self._attach(make([d._tuple() for d in descs], descs))
        except nxl.Error as e:
            raise _dynamo_error(e) from e
        self._serialized = {}

    def metadata(self, hex_encode: bool = False) -> RdmaMetadata:
        """The RdmaMetadata for the active side (cached): the agent
        metadata as "b64:" + base64(zlib), or legacy hex."""
        md = self._serialized.get(bool(hex_encode))
        if md is None:
            if self._native is None:
                raise RuntimeError("The operation was released.")
            md = RdmaMetadata.model_validate_json(
                self._native.metadata(hex=bool(hex_encode)))
            self._serialized[bool(hex_encode)] = md
        return md

    def cancel(self) -> None:
        """Stop claiming the key (NXL: Dynamo's passive operations have no
        cancel); a late notification then goes to the connection."""
        if self._native is not None and self._status not in _TERMINAL:
            self._native.cancel()
            self._status = OperationStatus(self._native.state)


class ReadableOperation(PassiveOperation):
    """Memory a remote ReadOperation reads."""

    def __init__(self, connection, local_descriptors):
        super().__init__(_as_connection(connection), OperationKind.READ,
                         local_descriptors)


class WritableOperation(PassiveOperation):
    """Memory a remote WriteOperation writes."""

    def __init__(self, connection, local_descriptors):
        super().__init__(_as_connection(connection), OperationKind.WRITE,
                         local_descriptors)


class ActiveOperation(AbstractOperation):
    """A read or write: loads the peer (reference-counted), checks the
    sizes pairwise, and posts its transfer on the first status poll."""

    def __init__(self, connection, kind, local_descriptors, remote_metadata):
        super().__init__(connection, kind, local_descriptors)
        descs = _desc_list(local_descriptors)
        native = connection._require()._native
        try:
            op = native.begin(int(kind), [d._tuple() for d in descs],
                              remote_metadata.model_dump_json(), descs)
        except nxl.Error as e:
            raise _dynamo_error(e) from e
        self._attach(op)
        self._remote = Remote._view(connection, op.info()["remote_agent"])
        self._remote_metadata = remote_metadata
        try:
            connection._keep(self._remote.name,
                             remote_metadata.nixl_metadata)
        except Exception:  # noqa: BLE001 (an optimisation only)
            logger.debug("could not keep remote %s loaded",
                         self._remote.name, exc_info=True)

    @property
    def remote(self) -> Remote:
        """The peer (a view: it holds no reference of its own)."""
        return self._remote

    def cancel(self) -> None:
        """Cancel: the transfer is released (the backend has let go of
        the buffers on return). No effect once COMPLETE or CANCELLED;
        RuntimeError once ERRORED."""
        if self._status == OperationStatus.ERRORED:
            raise RuntimeError("Operation is errored, unable to cancel the "
                               "operation.")
        if self._native is None:
            return
        try:
            self._native.cancel()
        except nxl.NotAllowedError as e:
            self._status = OperationStatus.ERRORED
            raise RuntimeError(str(e)) from None
        self._status = OperationStatus(self._native.state)

    _cancel_ = cancel


class ReadOperation(ActiveOperation):
    """Reads a remote ReadableOperation's memory into local
    descriptors."""

    def __init__(self, connection, remote_metadata: RdmaMetadata,
                 local_descriptors):
        connection = _as_connection(connection)
        if not isinstance(remote_metadata, RdmaMetadata):
            raise TypeError("Argument `remote_metadata` must be "
                            "`dynamo.nixl_connect.RdmaMetadata`.")
        if remote_metadata.operation_kind != OperationKind.READ.value:
            raise ValueError("Argument `remote_metadata` must be of kind "
                             "`READ`.")
        super().__init__(connection, OperationKind.READ, local_descriptors,
                         remote_metadata)

    def results(self) -> List[Descriptor]:
        """The local descriptors, once COMPLETE."""
        if self._status != OperationStatus.COMPLETE:
            raise RuntimeError("Operation has not completed yet, cannot get "
                               "results.")
        d = self._local_desc_list
        return d if isinstance(d, list) else [d]


class WriteOperation(ActiveOperation):
    """Writes local descriptors into a remote WritableOperation's
    memory."""

    def __init__(self, connection, local_descriptors,
                 remote_metadata: RdmaMetadata):
        connection = _as_connection(connection)
        if not isinstance(remote_metadata, RdmaMetadata):
            raise TypeError("Argument `remote_metadata` must be "
                            "`dynamo.nixl_connect.RdmaMetadata`.")
        if remote_metadata.operation_kind != OperationKind.WRITE.value:
            raise ValueError("Argument `remote_metadata` must be of kind "
                             "`WRITE`.")
        super().__init__(connection, OperationKind.WRITE, local_descriptors,
                         remote_metadata)


# ---- asyncio ---------------------------------------------------------------

class _Driver:
    """The reader on one connection's agent fd for one event loop: when the
    fd is readable it drives progress once, then polls the operations that
    wait. Nothing sleeps on a timer."""

    def __init__(self, connection, loop):
        self.connection = connection
        self.loop = loop
        self.fd = connection._agent.fd
        self.ops = {}       # operation -> [Future]
        self.armed = False

    def watch(self, op, fut):
        self.ops.setdefault(op, []).append(fut)
        if not self.armed:
            self.loop.add_reader(self.fd, self.on_ready)
            self.armed = True
        # Whatever completed before the reader was armed is seen at once.
        self.loop.call_soon(self.poll)

    def unwatch(self, op, fut):
        futs = self.ops.get(op)
        if futs is not None and fut in futs:
            futs.remove(fut)
            if not futs:
                del self.ops[op]
        self.disarm_if_idle()

    def disarm_if_idle(self):
        if not self.ops and self.armed:
            self.loop.remove_reader(self.fd)
            self.armed = False

    def on_ready(self):
        agent = self.connection._agent
        if agent is None or agent.closed:
            self.fail_all(RuntimeError("the connection was closed"))
            return
        agent.progress()
        self.poll()

    def poll(self):
        for op, futs in list(self.ops.items()):
            try:
                s = op._poll()
            except Exception as e:  # noqa: BLE001 (handed to the waiter)
                s = e
            if isinstance(s, OperationStatus) and s not in _TERMINAL:
                continue
            del self.ops[op]
            for f in futs:
                if f.done():
                    continue
                if isinstance(s, Exception):
                    f.set_exception(s)
                else:
                    f.set_result(s)
        self.disarm_if_idle()

    def fail_all(self, exc):
        for futs in self.ops.values():
            for f in futs:
                if not f.done():
                    f.set_exception(exc)
        self.ops.clear()
        if self.armed:
            try:
                self.loop.remove_reader(self.fd)
            except Exception:  # noqa: BLE001 (the loop may be closed)
                pass
            self.armed = False


def _wait_slices(native, stop):
    while not stop:
        try:
            native.wait(0.2)
            return
        except nxl.TimedOutError:
            continue
        except nxl.Error:
            return  # the state says why (ERRORED, CANCELLED)


async def _wait_in_executor(op, loop):
    """With a progress thread the agent fd is drained by that thread: the
    C wait (GIL released) runs in the loop's executor instead."""
    stop = []
    native = op._native
    if native is None:
        raise RuntimeError("NIXL transfer handle is invalid.")
    try:
        await loop.run_in_executor(None, _wait_slices, native, stop)
    finally:
        stop.append(True)
    op._poll()
