"""nixl._bindings: NIXL's low-level Python surface (its pybind11 module of
the same name), written in Python over the ``nxl`` package.

Names, arguments and return values follow NIXL's module: descriptor lists
(``nixlXferDList``, ``nixlRegDList``), ``nixlAgentConfig``, ``nixlAgent``
with NIXL's method names (``registerMem``, ``prepXferDlist``,
``makeXferReq``, ``postXferReq``, ...), the enums and constants, and one
exception class per status. Handles are opaque: a prepared list is an
``nxl.Prepped``, a transfer an ``nxl.Transfer``, a backend its type name.
See docs/python.md, "nixl compatibility".
"""

import enum as _enum
import logging as _logging
import os as _os

import numpy as _np

import nxl as _nxl

_log = _logging.getLogger("nixl.bindings")

NIXL_INIT_AGENT = ""
NIXL_NULL_AGENT = "NULL_AGENT"
DEFAULT_COMM_PORT = 8888


class nixl_mem_t(_enum.IntEnum):
    """Memory kinds (NIXL's nixl_mem_t; the same values as nxl.Mem)."""
    DRAM_SEG = _nxl.DRAM
    VRAM_SEG = _nxl.VRAM
    BLK_SEG = _nxl.BLK
    OBJ_SEG = _nxl.OBJ
    FILE_SEG = _nxl.FILE


class nixl_xfer_op_t(_enum.IntEnum):
    """Transfer operations."""
    NIXL_READ = _nxl.READ
    NIXL_WRITE = _nxl.WRITE


class nixl_thread_sync_t(_enum.IntEnum):
    """Agent thread-safety levels (NIXL's nixl_thread_sync_t)."""
    NIXL_THREAD_SYNC_NONE = _nxl.Sync.NONE
    NIXL_THREAD_SYNC_STRICT = _nxl.Sync.STRICT
    NIXL_THREAD_SYNC_RW = _nxl.Sync.RW
    NIXL_THREAD_SYNC_DEFAULT = _nxl.Sync.NONE  # an alias of NONE


class nixl_cost_t(_enum.IntEnum):
    """Cost estimation methods."""
    NIXL_COST_ANALYTICAL_BACKEND = 0


class nixl_status_t(_enum.IntEnum):
    """Statuses: NIXL's numbering (NXL's own statuses -13..-16 follow)."""
    NIXL_IN_PROG = 1
    NIXL_SUCCESS = 0
    NIXL_ERR_NOT_POSTED = -1
    NIXL_ERR_INVALID_PARAM = -2
    NIXL_ERR_BACKEND = -3
    NIXL_ERR_NOT_FOUND = -4
    NIXL_ERR_MISMATCH = -5
    NIXL_ERR_NOT_ALLOWED = -6
    NIXL_ERR_REPOST_ACTIVE = -7
    NIXL_ERR_UNKNOWN = -8
    NIXL_ERR_NOT_SUPPORTED = -9
    NIXL_ERR_REMOTE_DISCONNECT = -10
    NIXL_ERR_CANCELED = -11
    NIXL_ERR_NO_TELEMETRY = -12


# pybind11's export_values(): every enum member is a module attribute too.
for _e in (nixl_mem_t, nixl_xfer_op_t, nixl_cost_t, nixl_status_t):
    globals().update(_e.__members__)
NIXL_THREAD_SYNC_NONE = nixl_thread_sync_t.NIXL_THREAD_SYNC_NONE
NIXL_THREAD_SYNC_STRICT = nixl_thread_sync_t.NIXL_THREAD_SYNC_STRICT
NIXL_THREAD_SYNC_RW = nixl_thread_sync_t.NIXL_THREAD_SYNC_RW
NIXL_THREAD_SYNC_DEFAULT = nixl_thread_sync_t.NIXL_THREAD_SYNC_DEFAULT
del _e

# ---------------------------------------------------------------- exceptions


def _error_class(name, base, doc):
    cls = type(name, (base,), {"__doc__": doc, "__module__": __name__})
    return cls


#: NIXL's exception classes, one per status. Each is also the matching
#: nxl exception (``except nxl.NotFoundError`` catches nixlNotFoundError),
#: so ``.status`` and ``.name`` work as on nxl's.
nixlNotPostedError = _error_class(
    "nixlNotPostedError", _nxl.NotPostedError, "NIXL_ERR_NOT_POSTED")
nixlInvalidParamError = _error_class(
    "nixlInvalidParamError", _nxl.InvalidParamError, "NIXL_ERR_INVALID_PARAM")
nixlBackendError = _error_class(
    "nixlBackendError", _nxl.BackendError, "NIXL_ERR_BACKEND")
nixlNotFoundError = _error_class(
    "nixlNotFoundError", _nxl.NotFoundError, "NIXL_ERR_NOT_FOUND")
nixlMismatchError = _error_class(
    "nixlMismatchError", _nxl.MismatchError, "NIXL_ERR_MISMATCH")
nixlNotAllowedError = _error_class(
    "nixlNotAllowedError", _nxl.NotAllowedError, "NIXL_ERR_NOT_ALLOWED")
nixlRepostActiveError = _error_class(
    "nixlRepostActiveError", _nxl.RepostActiveError, "NIXL_ERR_REPOST_ACTIVE")
nixlUnknownError = _error_class(
    "nixlUnknownError", _nxl.UnknownError, "NIXL_ERR_UNKNOWN")
nixlNotSupportedError = _error_class(
    "nixlNotSupportedError", _nxl.NotSupportedError, "NIXL_ERR_NOT_SUPPORTED")
nixlRemoteDisconnectError = _error_class(
    "nixlRemoteDisconnectError", _nxl.RemoteDisconnectError,
    "NIXL_ERR_REMOTE_DISCONNECT")
nixlCancelledError = _error_class(
    "nixlCancelledError", _nxl.CanceledError, "NIXL_ERR_CANCELED")
nixlCanceledError = nixlCancelledError
nixlNoTelemetryError = _error_class(
    "nixlNoTelemetryError", _nxl.NoTelemetryError, "NIXL_ERR_NO_TELEMETRY")
# NXL's own statuses (NIXL has none of these): a side-channel timeout, out
# of memory, an I/O error (a refused connection), a malformed peer message.
nixlTimeoutError = _error_class(
    "nixlTimeoutError", _nxl.TimedOutError, "NXL_ERR_TIMEOUT (NXL only)")
nixlNoMemoryError = _error_class(
    "nixlNoMemoryError", _nxl.NoMemoryError, "NXL_ERR_NOMEM (NXL only)")
nixlIOError = _error_class(
    "nixlIOError", _nxl.IOFailureError, "NXL_ERR_IO (NXL only)")
nixlProtocolError = _error_class(
    "nixlProtocolError", _nxl.ProtocolError, "NXL_ERR_PROTO (NXL only)")

_ERRORS = {cls.status: cls for cls in (
    nixlNotPostedError, nixlInvalidParamError, nixlBackendError,
    nixlNotFoundError, nixlMismatchError, nixlNotAllowedError,
    nixlRepostActiveError, nixlUnknownError, nixlNotSupportedError,
    nixlRemoteDisconnectError, nixlCancelledError, nixlNoTelemetryError,
    nixlTimeoutError, nixlNoMemoryError, nixlIOError, nixlProtocolError)}
_NIXL_ERRORS = tuple(_ERRORS.values())


def _nixl_error(e):
    """The nixl exception for nxl exception e (itself if already one)."""
    if isinstance(e, _NIXL_ERRORS):
        return e
    cls = _ERRORS.get(getattr(e, "status", None), nixlUnknownError)
    return cls(str(e))


def _raise_status(status, what):
    """Raises the class of a negative status (NIXL's
    throw_nixl_exception)."""
    cls = _ERRORS.get(int(status), nixlUnknownError)
    raise cls(f"{what}: {_nxl.status_name(int(status))}")


# ---------------------------------------------------------- descriptor lists

_DESC_DTYPES = (_np.dtype(_np.uint64), _np.dtype(_np.int64))


def _as_str(name):
    """An agent or backend name: str, or bytes (as NIXL's std::string
    arguments take)."""
    if isinstance(name, str):
        return name
    if isinstance(name, (bytes, bytearray)):
        return bytes(name).decode()
    raise TypeError(f"expected a str name, not {type(name).__name__}")


def _as_bytes(msg):
    """A notification or blob: bytes, bytearray, memoryview or str."""
    if isinstance(msg, bytes):
        return msg
    if isinstance(msg, str):
        return msg.encode()
    if isinstance(msg, (bytearray, memoryview)):
        return bytes(msg)
    raise TypeError(f"expected bytes or str, not {type(msg).__name__}")


def _meta_bytes(m):
    if isinstance(m, bytes):
        return m
    if isinstance(m, str):
        return m.encode()
    if m is None:
        return b""
    if isinstance(m, (bytearray, memoryview)):
        return bytes(m)
    return str(m).encode()


class _DList:
    """What nixlXferDList and nixlRegDList share.

    The descriptors live in an immutable nxl.DescList (built in C from an
    Nx3 array or a list of tuples, in one call); a list that is edited
    (addDesc, remDesc, ...) keeps its rows as Python tuples until the next
    use rebuilds the DescList. No __len__, as in NIXL (whose lists are
    always true): use descCount()."""

    __slots__ = ("_type", "_dl", "_rows", "__weakref__")
    _width = 3

    def __init__(self, type, descs=0, *args):
        try:
            self._type = nixl_mem_t(type)
        except ValueError:
            raise nixlInvalidParamError(f"bad memory type {type!r}") from None
        self._rows = None
        self._dl = None
        if isinstance(descs, bool) and args:
            # NIXL's old constructor: (type, unifiedAddr, sorted, init_size)
            descs = args[-1] if isinstance(args[-1], int) else 0
        if isinstance(descs, int):
            if descs < 0:
                raise ValueError("init_size must be >= 0")
            self._rows = [(0, 0, 0) + (b"",) * (self._width - 3)] * descs
        elif isinstance(descs, _np.ndarray):
            if descs.ndim != 2 or descs.shape[1] != 3:
                raise ValueError("descs must be a Nx3 numpy array")
            if descs.dtype not in _DESC_DTYPES:
                raise ValueError(
                    "descs must be a Nx3 numpy array of uint64 or int64")
            self._dl = _nxl.DescList(descs, int(self._type))
        elif isinstance(descs, (list, tuple)):
            self._set_rows(descs)
        elif isinstance(descs, _nxl.DescList):
            self._dl = _nxl.DescList(descs, int(self._type))
        else:
            raise TypeError(
                f"{self.__class__.__name__}(type, descs): descs must be an "
                f"init size, a Nx3 numpy array or a list of tuples, not "
                f"{descs.__class__.__name__}")

    def _set_rows(self, descs):
        try:
            self._dl = _nxl.DescList(descs, int(self._type))
        except _nxl.Error as e:
            raise _nixl_error(e) from None

    @classmethod
    def _wrap(cls, mem, dl):
        """A list over nxl.DescList dl (shared: DescLists are immutable)."""
        self = cls.__new__(cls)
        self._type = nixl_mem_t(mem)
        self._dl = dl
        self._rows = None
        return self

    def _desclist(self):
        """The nxl.DescList of these descriptors (built once per edit)."""
        dl = self._dl
        if dl is None:
            try:
                dl = _nxl.DescList(self._rows, int(self._type))
            except _nxl.Error as e:
                raise _nixl_error(e) from None
            self._dl = dl
        return dl

    def _edit(self):
        """The rows, as a list to edit (the DescList is dropped)."""
        rows = self._rows
        if rows is None:
            pad = (b"",) * (self._width - 3)
            rows = [tuple(r) + pad for r in
                    _np.asarray(self._dl).tolist()] if self._dl else []
            self._rows = rows
        self._dl = None
        return rows

    def _row(self, desc):
        if not isinstance(desc, (tuple, list)) or len(desc) < self._width:
            raise ValueError(
                f"a descriptor of {type(self).__name__} is a tuple of "
                f"{self._width} elements")
        a, n, d = (int(x) for x in desc[:3])
        if a < 0 or n < 0 or d < 0:
            raise ValueError("addr, len and devId must be >= 0")
        if self._width == 4:
            return (a, n, d, _meta_bytes(desc[3]))
        return (a, n, d)

    def getType(self):
        """The memory type (nixl_mem_t)."""
        return self._type

    def descCount(self):
        """The number of descriptors."""
        rows = self._rows
        return len(rows) if rows is not None else len(self._dl)

    def isEmpty(self):
        return self.descCount() == 0

    def __getitem__(self, i):
        i = self._index(i)
        rows = self._rows
        if rows is not None:
            r = rows[i]
            if self._width == 4:
                return (r[0], r[1], r[2],
                        _meta_bytes(r[3]) if len(r) > 3 else b"")
            return tuple(r[:3])
        r = self._dl[i]
        return r + (b"",) if self._width == 4 else r

    def __setitem__(self, i, desc):
        i = self._index(i)
        row = self._row(desc)
        self._edit()[i] = row

    def _index(self, i):
        n = self.descCount()
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"{type(self).__name__} index out of range")
        return i

    def addDesc(self, desc):
        """Appends desc: (addr, len, devId) or, for registrations, (addr,
        len, devId, metaInfo)."""
        row = self._row(desc)
        self._edit().append(row)

    append = addDesc

    def remDesc(self, index):
        """Removes descriptor index; NIXL_SUCCESS or
        NIXL_ERR_INVALID_PARAM."""
        try:
            i = self._index(index)
        except IndexError:
            return nixl_status_t.NIXL_ERR_INVALID_PARAM
        del self._edit()[i]
        return nixl_status_t.NIXL_SUCCESS

    def clear(self):
        self._rows = []
        self._dl = None

    def index(self, desc):
        """The index of desc (the first equal one); nixlNotFoundError if
        there is none."""
        row = self._row(desc)
        for i in range(self.descCount()):
            if self[i] == row:
                return i
        raise nixlNotFoundError(f"descriptor {desc!r} is not in the list")

    def _table(self):
        return _np.asarray(self._desclist())

    def __eq__(self, other):
        # As NIXL's lists: same class, type and (addr, len, devId) rows;
        # metaInfo does not take part.
        if type(other) is not type(self):
            return NotImplemented
        if self._type != other._type:
            return False
        if self.descCount() != other.descCount():
            return False
        return bool(_np.array_equal(self._table(), other._table()))

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None

    def _metas(self):
        return None

    def __reduce__(self):
        # The descriptors as raw rows (24 bytes each), metaInfo apart.
        return (_restore, (type(self).__name__, int(self._type),
                           self._table().tobytes(), self._metas()))

    def __repr__(self):
        return (f"{type(self).__name__}({self._type.name}, "
                f"{self.descCount()} descriptors)")

    def to_string(self, compact=False):
        """NIXL's text form: "DescList of mem type ..." and one line per
        descriptor."""
        lines = [f"DescList of mem type {self._type.name}"]
        if compact:
            lines[0] += f" count={self.descCount()}"
        else:
            for i in range(self.descCount()):
                r = self[i]
                line = f"Desc ({r[0]:#x}, {r[1]}) from devID {r[2]}"
                if len(r) > 3 and r[3]:
                    line += f", Metadata: {r[3]!r}"
                lines.append(line)
        return "\n".join(lines)

    __str__ = to_string

    def print(self):
        """Prints the list (NIXL's debugging print)."""
        print(self.to_string())


class nixlXferDList(_DList):
    """A transfer descriptor list: (addr, len, devId) rows of one memory
    type. nixlXferDList(type, init_size=0), nixlXferDList(type, Nx3 int64
    or uint64 array), nixlXferDList(type, [(addr, len, devId), ...])."""

    __slots__ = ()
    _width = 3


class nixlRegDList(_DList):
    """A registration descriptor list: (addr, len, devId, metaInfo) rows
    (metaInfo: bytes, e.g. a file path). Constructors as nixlXferDList's,
    with 4-tuples; an Nx3 array gives empty metaInfo."""

    __slots__ = ()
    _width = 4

    def _set_rows(self, descs):
        rows = list(descs)  # the rows hold the metaInfo
        self._rows = rows
        super()._set_rows(rows)

    def trim(self):
        """The descriptors without metaInfo, as a nixlXferDList."""
        return nixlXferDList._wrap(self._type, self._desclist())

    def _metas(self):
        rows = self._rows
        if rows is None:
            return None
        metas = [_meta_bytes(r[3]) if len(r) > 3 else b"" for r in rows]
        return metas if any(metas) else None


class nixlRemoteDList(nixlXferDList):
    """Declared for NIXL's name (memory views, GPU-initiated transfers):
    not supported by NXL."""

    __slots__ = ()

    def __init__(self, *args, **kw):
        raise nixlNotSupportedError(
            "nixlRemoteDList (memory views) is not supported by NXL")


def _restore(clsname, mem, raw, metas):
    cls = {"nixlXferDList": nixlXferDList, "nixlRegDList": nixlRegDList}[
        clsname]
    table = _np.frombuffer(raw, dtype=_np.uint64).reshape(-1, 3)
    self = cls._wrap(mem, _nxl.DescList(table, mem))
    if metas is not None:
        self._rows = [tuple(r) + (m,) for r, m in
                      zip(table.tolist(), metas)]
    return self


# ------------------------------------------------------------- configuration


class nixlAgentConfig:
    """Agent configuration, with NIXL's field names. Positional arguments:
    (useProgThread, useListenThread, listenPort, syncMode, num_workers,
    pthrDelay, lthrDelay, captureTelemetry)."""

    def __init__(self, useProgThread=False, useListenThread=False,
                 listenPort=DEFAULT_COMM_PORT,
                 syncMode=nixl_thread_sync_t.NIXL_THREAD_SYNC_DEFAULT,
                 num_workers=1, pthrDelay=0, lthrDelay=100000,
                 captureTelemetry=False):
        self.useProgThread = bool(useProgThread)
        self.useListenThread = bool(useListenThread)
        self.listenPort = int(listenPort)
        self.syncMode = nixl_thread_sync_t(syncMode)
        self.num_workers = num_workers  # NIXL ignores it too
        self.pthrDelay = int(pthrDelay)
        self.lthrDelay = int(lthrDelay)
        self.captureTelemetry = bool(captureTelemetry)
        self.etcdWatchTimeout = 5000000

    def __repr__(self):
        return (f"nixlAgentConfig(useProgThread={self.useProgThread}, "
                f"useListenThread={self.useListenThread}, "
                f"listenPort={self.listenPort}, syncMode="
                f"{nixl_thread_sync_t(self.syncMode).name}, captureTelemetry="
                f"{self.captureTelemetry})")


class nixlXferTelemetry:
    """Telemetry of a transfer's last completed post: startTime (us since
    the epoch), postDuration and xferDuration (us), totalBytes,
    descCount (after merging)."""

    __slots__ = ("startTime", "postDuration", "xferDuration", "totalBytes",
                 "descCount")

    def __init__(self, startTime=0, postDuration=0, xferDuration=0,
                 totalBytes=0, descCount=0):
        self.startTime = startTime
        self.postDuration = postDuration
        self.xferDuration = xferDuration
        self.totalBytes = totalBytes
        self.descCount = descCount

    def __repr__(self):
        return ("nixlXferTelemetry(" + ", ".join(
            f"{k}={getattr(self, k)}" for k in self.__slots__) + ")")


_TRUE = ("y", "yes", "on", "true", "enable", "1")


def _telemetry_on(cfg_flag):
    """NIXL's rule: NIXL_TELEMETRY_ENABLE=y (yes/on/true/enable/1) turns
    telemetry on whatever the config says; otherwise the config decides
    (NIXL only warns about NIXL_TELEMETRY_ENABLE=n with
    captureTelemetry)."""
    v = _os.environ.get("NIXL_TELEMETRY_ENABLE")
    if v is not None and v.strip().lower() in _TRUE:
        return True
    return bool(cfg_flag)


def _mem_names(kinds):
    return [nixl_mem_t(int(k)).name for k in kinds]


def _backend_list(backends):
    """NIXL's backend handle list: None, [] or a list of handles (names);
    a bool is NIXL's old is_sorted argument in that position."""
    if not backends or isinstance(backends, bool):
        return None
    if isinstance(backends, str):
        return [backends]
    return [_as_str(b) for b in backends]


def _file_info(path):
    """What NIXL's file backends answer for queryMem: None when the file
    is not accessible, else its size, mode and mtime (strings)."""
    if not path:
        return None
    try:
        st = _os.stat(path)
    except OSError:
        return None
    return {"size": str(st.st_size), "mode": str(st.st_mode),
            "mtime": str(int(st.st_mtime))}


# ------------------------------------------------------------------- agent


class nixlAgent:
    """A NIXL agent (NIXL's nixlAgent binding) over nxl.Agent.

    nixlAgent(name, config): name is a non-empty str (ValueError
    otherwise); config a nixlAgentConfig. Backends are created with
    createBackend; their handles are their type names."""

    def __init__(self, name, config=None):
        name = _as_str(name)
        if not name:
            raise ValueError("Agent needs a name")
        if config is None:
            config = nixlAgentConfig()
        sync = int(config.syncMode)
        if config.useListenThread and sync == int(_nxl.Sync.NONE):
            sync = int(_nxl.Sync.STRICT)  # NIXL's effectiveSyncMode
        self._sync = nixl_thread_sync_t(sync)
        port = int(config.listenPort)
        try:
            self._agent = _nxl.Agent(
                name, progress_thread=bool(config.useProgThread),
                listen_thread=bool(config.useListenThread),
                listen_port=port, sync=sync,
                telemetry=_telemetry_on(config.captureTelemetry),
                backends=(),
                progress_delay_us=min(int(config.pthrDelay), 0xFFFFFFFF))
        except _nxl.Error as e:
            raise _nixl_error(e) from None
        self._name = name
        self._params = {}   # backend name -> params in effect
        self._byname = {}   # any spelling -> backend name

    # -- plugins and backends -------------------------------------------------

    def getEffectiveSyncMode(self):
        return self._sync

    def getAvailPlugins(self):
        """The backend types: NXL's built-in ones, then NXL_PLUGIN_DIR's."""
        return list(_nxl.plugin_names())

    def getPluginParams(self, type):
        """(default params, memory types) of backend type."""
        try:
            info = _nxl.plugin_info(_as_str(type))
        except _nxl.Error as e:
            raise _nixl_error(e) from None
        return dict(info.defaults), _mem_names(info.mem_kinds)

    def getBackendParams(self, backend):
        """(params in effect, memory types) of a created backend."""
        name = self._backend(backend)
        info = _nxl.plugin_info(name)
        return dict(self._params[name]), _mem_names(info.mem_kinds)

    def createBackend(self, type, initParams=None):
        """Creates a backend of type; returns its handle. Parameters the
        backend does not know are dropped with a warning (NIXL's backends
        ignore them); values become strings."""
        type = _as_str(type)
        try:
            info = _nxl.plugin_info(type)
        except _nxl.Error as e:
            raise _nixl_error(e) from None
        params = {}
        for k, v in (initParams or {}).items():
            k = _as_str(k)
            if k in info.defaults:
                params[k] = v
            else:
                _log.warning("backend %s: ignoring unknown parameter %s=%r",
                             info.name, k, v)
        try:
            name = self._agent.create_backend(type, params or None)
        except _nxl.Error as e:
            raise _nixl_error(e) from None
        eff = dict(info.defaults)
        eff.update({k: str(v) for k, v in params.items()})
        self._params[name] = eff
        self._byname[type] = name
        self._byname[name] = name
        return name

    def _backend(self, b):
        name = self._byname.get(b if isinstance(b, str) else _as_str(b))
        if name is None:
            raise nixlNotFoundError(f"backend {b!r} is not created on agent "
                                    f"{self._name!r}")
        return name

    def _backends(self, handles):
        hl = _backend_list(handles)
        if hl is None:
            return None
        return [self._backend(b) for b in hl]

    # -- memory ---------------------------------------------------------------

    def registerMem(self, descs, backends=None):
        """Registers a nixlRegDList (with every backend that takes its
        memory type, or backends). Returns NIXL_SUCCESS."""
        dl = _reg_desclist(descs)
        try:
            self._agent.register_raw(dl, None, self._backends(backends))
        except _nxl.Error as e:
            raise _nixl_error(e) from None
        return nixl_status_t.NIXL_SUCCESS

    def deregisterMem(self, descs, backends=None):
        """Deregisters descriptors that match registrations exactly."""
        dl = _reg_desclist(descs)
        try:
            self._agent.deregister_raw(dl, None, self._backends(backends))
        except _nxl.Error as e:
            raise _nixl_error(e) from None
        return nixl_status_t.NIXL_SUCCESS

    def queryMem(self, descs, backend):
        """For each descriptor of a nixlRegDList, None when its file
        (metaInfo) is not accessible, else {"size", "mode", "mtime"}.
        Backends without files (SHM, TCP, UCX): nixlNotSupportedError."""
        if not isinstance(descs, nixlRegDList):
            raise TypeError("queryMem takes a nixlRegDList")
        name = self._backend(backend)
        if _nxl.FILE not in _nxl.plugin_info(name).mem_kinds:
            raise nixlNotSupportedError(
                f"backend {name} does not support queryMem")
        return [_file_info(descs[i][3].decode(errors="surrogateescape"))
                for i in range(descs.descCount())]

    def makeConnection(self, remote_agent, backends=None):
        """Connections are made when metadata is loaded; this checks that
        remote_agent is loaded (nixlNotFoundError otherwise)."""
        remote = _as_str(remote_agent)
        self._backends(backends)
        if remote != self._name and not self._agent.check(remote):
            raise nixlNotFoundError(f"agent {remote!r} is not loaded")
        return nixl_status_t.NIXL_SUCCESS

    # -- transfers ------------------------------------------------------------

    def prepXferDlist(self, agent_name, descs=None, backends=None):
        """Prepares a nixlXferDList: agent_name "" (NIXL_INIT_AGENT) for
        local memory, a loaded agent's name, or this agent's own
        (loopback). prepXferDlist(descs, backends) is the local form.
        Returns the handle (an nxl.Prepped)."""
        if isinstance(agent_name, _DList):
            agent_name, descs, backends = NIXL_INIT_AGENT, agent_name, descs
        name = _as_str(agent_name)
        dl = _xfer_desclist(descs)
        try:
            return self._agent.prep(dl, name or None, None,
                                    self._backends(backends))
        except _nxl.Error as e:
            raise _nixl_error(e) from None

    def makeXferReq(self, operation, local_side, local_indices, remote_side,
                    remote_indices, notif_msg="", backends=None,
                    skip_desc_merge=False):
        """A transfer from two prepared lists by index (lists or integer
        arrays). A non-empty notif_msg is sent after the data."""
        try:
            return self._agent.make_xfer(
                int(operation), local_side, local_indices, remote_side,
                remote_indices, _as_bytes(notif_msg) or None,
                self._backends(backends), bool(skip_desc_merge))
        except _nxl.Error as e:
            raise _nixl_error(e) from None

    def createXferReq(self, operation, local_descs, remote_descs,
                      remote_agent, notif_msg="", backends=None):
        """A transfer from two nixlXferDLists of equal count and lengths
        (descriptors are not merged, as in NIXL)."""
        ldl = _xfer_desclist(local_descs)
        rdl = _xfer_desclist(remote_descs)
        try:
            return self._agent.xfer(
                int(operation), ldl, rdl, _as_str(remote_agent),
                _as_bytes(notif_msg) or None, self._backends(backends),
                skip_merge=True)
        except _nxl.Error as e:
            raise _nixl_error(e) from None

    def estimateXferCost(self, reqh):
        raise nixlNotSupportedError("NXL backends do not estimate costs")

    def postXferReq(self, reqh, notif_msg=""):
        """Posts a transfer: NIXL_SUCCESS (done) or NIXL_IN_PROG; raises
        the error. A non-empty notif_msg replaces the notification."""
        try:
            return nixl_status_t(reqh.post(_as_bytes(notif_msg) or None))
        except _nxl.Error as e:
            raise _nixl_error(e) from None

    def getXferStatus(self, reqh):
        """NIXL_SUCCESS or NIXL_IN_PROG; raises the transfer's error."""
        try:
            st = reqh.raw_status
        except _nxl.Error as e:
            raise _nixl_error(e) from None
        if st < 0:
            _raise_status(st, "getXferStatus")
        return nixl_status_t(st)

    def getXferTelemetry(self, reqh):
        """nixlXferTelemetry of the last completed post
        (nixlNoTelemetryError unless telemetry is on)."""
        try:
            t = reqh.telemetry
        except _nxl.Error as e:
            raise _nixl_error(e) from None
        # NXL truncates nanoseconds to whole microseconds; a post that took
        # less than 1 us is reported as 1 us (NIXL's users, and its tests,
        # take a finished post's durations as > 0).
        post, xfer = t.post_us, t.xfer_us
        if t.start_us:
            post = post or 1
            xfer = max(xfer, post)
        return nixlXferTelemetry(t.start_us, post, xfer, t.total_bytes,
                                 t.desc_count)

    def queryXferBackend(self, reqh):
        """The handle (name) of the backend that runs the transfer."""
        try:
            return reqh.backend
        except _nxl.Error as e:
            raise _nixl_error(e) from None

    def releaseXferReq(self, reqh):
        """Releases a transfer (canceling it if still in flight)."""
        try:
            reqh.release()
        except _nxl.Error as e:
            raise _nixl_error(e) from None
        return nixl_status_t.NIXL_SUCCESS

    def releasedDlistH(self, handle):
        """Releases a prepared list (transfers made from it stay valid)."""
        handle.release()
        return nixl_status_t.NIXL_SUCCESS

    # -- notifications --------------------------------------------------------

    def getNotifs(self, notif_map, backends=None):
        """Adds what arrived since the last call to notif_map ({agent:
        [bytes, ...]}) and returns it. NXL drains every backend (backends
        is checked, not used to filter)."""
        self._backends(backends)
        try:
            new = self._agent.get_notifs()
        except _nxl.Error as e:
            raise _nixl_error(e) from None
        if notif_map is None:
            notif_map = {}
        for sender, msgs in new.items():
            old = notif_map.get(sender)
            if old is None:
                notif_map[sender] = msgs
            else:
                old.extend(msgs)
        return notif_map

    def genNotif(self, remote_agent, msg, backends=None):
        """Sends a notification to remote_agent (or this agent)."""
        try:
            self._agent.send_notif(_as_str(remote_agent), _as_bytes(msg),
                                   self._backends(backends))
        except _nxl.Error as e:
            raise _nixl_error(e) from None
        return nixl_status_t.NIXL_SUCCESS

    # -- metadata -------------------------------------------------------------

    def getLocalMD(self):
        try:
            return self._agent.metadata()
        except _nxl.Error as e:
            raise _nixl_error(e) from None

    def getLocalPartialMD(self, descs, inc_conn_info=False, backends=None):
        """Metadata of descs only (an empty list: connection info only)."""
        dl = _reg_desclist(descs)
        try:
            return self._agent.partial_metadata(
                dl, None, bool(inc_conn_info), self._backends(backends))
        except _nxl.Error as e:
            raise _nixl_error(e) from None

    def loadRemoteMD(self, remote_metadata):
        """Loads a peer's metadata; returns its name as bytes."""
        try:
            return self._agent.load_metadata(
                _as_bytes(remote_metadata)).encode()
        except _nxl.Error as e:
            raise _nixl_error(e) from None

    def invalidateRemoteMD(self, remote_agent):
        """Forgets a peer; returns the status (NIXL_ERR_NOT_FOUND for an
        unknown one), as NIXL's binding does."""
        try:
            self._agent.invalidate(_as_str(remote_agent))
        except _nxl.Error as e:
            return nixl_status_t(e.status) if -12 <= e.status < 0 \
                else nixl_status_t.NIXL_ERR_UNKNOWN
        return nixl_status_t.NIXL_SUCCESS

    @staticmethod
    def _sidechan(ip_addr, port):
        # No ip_addr: the library's etcd store (NIXL_ETCD_ENDPOINTS or
        # NXL_ETCD_ENDPOINTS), or its NOT_SUPPORTED when neither is set.
        return _as_str(ip_addr) or "", int(port) or DEFAULT_COMM_PORT

    def sendLocalMD(self, ip_addr="", port=0):
        """Sends all metadata to the listener at ip_addr:port (which loads
        it)."""
        ip, port = self._sidechan(ip_addr, port)
        try:
            self._agent.send_metadata(ip, port)
        except _nxl.Error as e:
            raise _nixl_error(e) from None

    def sendLocalPartialMD(self, descs, inc_conn_info=False, backends=None,
                           ip_addr="", port=0, label=""):
        """Sends the metadata of descs to the listener at ip_addr:port.
        backends is checked; the partial metadata covers every backend."""
        dl = _reg_desclist(descs)
        self._backends(backends)
        ip, port = self._sidechan(ip_addr, port)
        try:
            self._agent.send_metadata(ip, port, dl, None, bool(inc_conn_info),
                                      label=_as_str(label) or None)
        except _nxl.Error as e:
            raise _nixl_error(e) from None

    def fetchRemoteMD(self, remote_agent, ip_addr="", port=0, label=""):
        """Fetches and loads the metadata of the listener at ip_addr:port,
        which must be remote_agent's. Synchronous in NXL."""
        ip, port = self._sidechan(ip_addr, port)
        remote = _as_str(remote_agent) or None
        try:
            self._agent.fetch_metadata(ip, port, remote,
                                       label=_as_str(label) or None)
        except _nxl.Error as e:
            raise _nixl_error(e) from None

    def invalidateLocalMD(self, ip_addr="", port=0):
        """Tells the listener at ip_addr:port to forget this agent."""
        ip, port = self._sidechan(ip_addr, port)
        try:
            self._agent.invalidate_local(ip, port)
        except _nxl.Error as e:
            raise _nixl_error(e) from None

    def checkRemoteMD(self, remote_agent, descs=None):
        """NIXL_SUCCESS when remote_agent is loaded and covers descs (a
        nixlXferDList; empty or None: just loaded), else
        NIXL_ERR_NOT_FOUND."""
        dl = None
        if descs is not None:
            dl = _xfer_desclist(descs)
            if len(dl) == 0:
                dl = None
        try:
            ok = self._agent.check(_as_str(remote_agent), dl)
        except _nxl.Error as e:
            raise _nixl_error(e) from None
        return (nixl_status_t.NIXL_SUCCESS if ok
                else nixl_status_t.NIXL_ERR_NOT_FOUND)

    # -- NXL extensions -------------------------------------------------------

    def getListenPort(self):
        """The port the metadata listener is bound to (0 without one)."""
        return self._agent.listen_port

    @property
    def nxl_agent(self):
        """The nxl.Agent underneath."""
        return self._agent

    def __repr__(self):
        return f"nixlAgent({self._name!r})"


def _reg_desclist(descs):
    if isinstance(descs, nixlRegDList):
        return descs._desclist()
    raise TypeError(f"expected a nixlRegDList, not {type(descs).__name__}")


def _xfer_desclist(descs):
    if isinstance(descs, nixlXferDList):
        return descs._desclist()
    raise TypeError(f"expected a nixlXferDList, not {type(descs).__name__}")

