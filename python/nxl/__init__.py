"""nxl: move inference data (KV-cache blocks, tensors) between processes and
machines with NIXL's semantics.

The Python binding of libnxl. The native module ``nxl._nxl`` (CPython C API)
does the work; this package adds the policy: default backends, sync modes by
name, enums, and asyncio (``await transfer``, ``agent.notifications()``).
See docs/python.md.

    import nxl, numpy as np
    with nxl.Agent("decode-0") as a:            # SHM and TCP backends
        buf = np.zeros(1 << 20, np.uint8)
        reg = a.register(buf)                   # keeps buf alive
        peer = a.load_metadata(blob_from_peer)  # -> "prefill-0"
        t = a.xfer("READ", buf, remote_descs, peer, notif=b"done")
        t.post(); t.wait()
"""

import enum as _enum
from collections.abc import Mapping as _Mapping
from typing import NamedTuple as _NamedTuple

from . import _nxl
from ._nxl import (  # noqa: F401  (re-exported)
    BLK, CAP_LOCAL, CAP_NOTIF, CAP_REMOTE, CAP_THREAD_SAFE, DRAM, FILE,
    IN_PROG, OBJ, OK, READ, VRAM, WRITE, DescList, Prepped, Registration,
    SharedBuffer, Telemetry, Transfer, plugin_names, status_name, strerror,
    version,
)
from ._nxl import (  # noqa: F401  (the exceptions, one per status)
    BackendError, CanceledError, Error, InvalidParamError, IOFailureError,
    MismatchError, NoMemoryError, NoTelemetryError, NotAllowedError,
    NotFoundError, NotPostedError, NotSupportedError, ProtocolError,
    RemoteDisconnectError, RepostActiveError, TimedOutError, UnknownError,
)
from . import _aio

#: {status (int): exception class}
errors = dict(_nxl.errors)

__all__ = [
    "Agent", "DescList", "Registration", "Prepped", "Transfer", "SharedBuffer",
    "Telemetry", "PluginInfo", "Op", "Mem", "Sync", "Status",
    "plugin_names", "plugin_info", "status_name", "strerror", "version",
    "errors", "Error",
] + [cls.__name__ for cls in errors.values()]


class Op(_enum.IntEnum):
    """Transfer operations: READ pulls remote into local, WRITE pushes."""
    READ = READ
    WRITE = WRITE


class Mem(_enum.IntEnum):
    """Memory kinds (NIXL's nixl_mem_t)."""
    DRAM = DRAM
    VRAM = VRAM
    BLK = BLK
    OBJ = OBJ
    FILE = FILE


class Sync(_enum.IntEnum):
    """Agent thread-safety levels (docs/design.md, "Threads and locks")."""
    NONE = _nxl.SYNC_NONE
    STRICT = _nxl.SYNC_STRICT
    RW = _nxl.SYNC_RW


Status = _enum.IntEnum("Status", {
    name: getattr(_nxl, name) for name in (
        "OK", "IN_PROG", "ERR_NOT_POSTED", "ERR_INVALID_PARAM", "ERR_BACKEND",
        "ERR_NOT_FOUND", "ERR_MISMATCH", "ERR_NOT_ALLOWED",
        "ERR_REPOST_ACTIVE", "ERR_UNKNOWN", "ERR_NOT_SUPPORTED",
        "ERR_REMOTE_DISCONNECT", "ERR_CANCELED", "ERR_NO_TELEMETRY",
        "ERR_TIMEOUT", "ERR_NOMEM", "ERR_IO", "ERR_PROTO")})
Status.__doc__ = "NXL statuses (NIXL's numbering, then NXL's own)."


class PluginInfo(_NamedTuple):
    """What plugin_info() reports about a backend type."""
    name: str
    mem_kinds: tuple
    defaults: dict
    local: bool
    remote: bool
    notif: bool
    caps: int


def plugin_info(name):
    """Describe backend type `name` (case-insensitive): its memory kinds
    (tuple of Mem), default parameters and capabilities. Raises
    NotFoundError for an unknown type."""
    d = _nxl.plugin_info(name)
    kinds = tuple(m for m in Mem if d["mem_kinds"] & (1 << m))
    caps = d["caps"]
    return PluginInfo(d["name"], kinds, d["defaults"],
                      bool(caps & CAP_LOCAL), bool(caps & CAP_REMOTE),
                      bool(caps & CAP_NOTIF), caps)


_SYNC_NAMES = {"none": Sync.NONE, "strict": Sync.STRICT, "rw": Sync.RW}

#: The backends an Agent creates unless told otherwise: SHM for peers on
#: this host (tried first), TCP for any host.
DEFAULT_BACKENDS = ("SHM", "TCP")


def _sync_value(sync):
    if isinstance(sync, str):
        try:
            return int(_SYNC_NAMES[sync.lower()])
        except KeyError:
            raise InvalidParamError(
                f"bad sync mode {sync!r} (none, strict, rw)") from None
    if sync is None:
        return int(Sync.RW)
    return int(sync)


class Agent(_nxl.Agent):
    """An NXL agent: registered memory, backends, peers' metadata,
    transfers and notifications.

    Agent(name, *, progress_thread=False, listen_thread=False,
          listen_port=8888, listen_addr=None, sync="rw", telemetry=False,
          backends=("SHM", "TCP"), progress_delay_us=0)

    backends is a sequence of type names, or a mapping {type: params} whose
    params are dicts (values are turned into str). sync is "none", "strict"
    or "rw" (the default here, so that threads may share the agent: the GIL
    is released in blocking calls). listen_port=0 picks an ephemeral port
    (see .listen_port). Use as a context manager, or call close(); garbage
    collection closes it too, after every object that uses it is gone.
    """

    def __init__(self, name, *, progress_thread=False, listen_thread=False,
                 listen_port=8888, listen_addr=None, sync="rw",
                 telemetry=False, backends=DEFAULT_BACKENDS,
                 progress_delay_us=0):
        super().__init__(name, progress_thread=progress_thread,
                         listen_thread=listen_thread, listen_port=listen_port,
                         listen_addr=listen_addr, sync=_sync_value(sync),
                         telemetry=telemetry,
                         progress_delay_us=progress_delay_us)
        self._backends = []
        self._aio_drivers = {}
        try:
            if isinstance(backends, _Mapping):
                for btype, params in backends.items():
                    self.create_backend(btype, params)
            else:
                for btype in backends or ():
                    self.create_backend(btype)
        except BaseException:
            self.close()
            raise

    def create_backend(self, type, params=None):
        """Create a backend of `type` with `params` (a dict; values are
        turned into str: True -> "true"). Returns its name ("SHM")."""
        if params is not None:
            params = {str(k): _param_str(v) for k, v in params.items()}
        name = super().create_backend(type, params)
        self._backends.append(name)
        return name

    @property
    def backends(self):
        """The names of the backends created on this agent, in order."""
        return tuple(self._backends)

    def notifications(self):
        """An async iterator of (sender, message) notifications, driven by
        the agent's fd on the running asyncio loop:

            async for sender, msg in agent.notifications(): ...

        It consumes them: get_notifs() no longer returns what it yields."""
        return _aio.notifications(self)

    async def recv_notif(self):
        """Await the next notification: (sender, message)."""
        return await _aio.next_notif(self)

    def __repr__(self):
        state = " closed" if self.closed else ""
        return f"<nxl.Agent {self.name!r} backends={self.backends}{state}>"


def _param_str(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


_nxl._set_await_hook(_aio.await_hook)
