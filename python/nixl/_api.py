"""nixl._api: NIXL's Python API (nixl_agent, nixl_agent_config, the handle
classes), over nixl._bindings, which is over nxl.

Programs written for NIXL run unchanged: names, signatures, defaults and
return values are NIXL's (see docs/python.md, "nixl compatibility", for
what differs and why).
"""

import logging as _logging
import pickle
import sys
from enum import Enum
from typing import Optional, Union

import numpy as np

import nxl as _nxl

from . import _bindings as nixlBind
from .logging import get_logger

logger = get_logger(__name__)

DEFAULT_COMM_PORT = nixlBind.DEFAULT_COMM_PORT
NIXL_NULL_AGENT = nixlBind.NIXL_NULL_AGENT

_ERR_EXC = (_nxl.Error,)


def _is_torch_tensor(obj):
    """True for a torch.Tensor; torch is never imported here (a tensor
    exists only once its caller imported torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


class nixl_prepped_dlist_handle:
    """A prepared descriptor list (prep_xfer_dlist). release() frees it;
    garbage collection does too."""

    __slots__ = ("_handle", "_agent", "_released", "__weakref__")

    def __init__(self, agent, value):
        self._handle = value
        self._agent = agent
        self._released = False

    def __repr__(self):
        return (f"nixl_prepped_dlist_handle(0x{id(self._handle):x}, "
                f"released={self._released})")

    def release(self):
        if not self._released:
            self._agent.releasedDlistH(self._handle)
            self._released = True


class nixl_xfer_handle:
    """A transfer request (initialize_xfer, make_prepped_xfer). release()
    frees it, canceling it if still in flight; garbage collection does
    too."""

    __slots__ = ("_handle", "_agent", "_released", "__weakref__")

    def __init__(self, agent, value):
        self._handle = value
        self._agent = agent
        self._released = False

    def __repr__(self):
        return (f"nixl_xfer_handle(0x{id(self._handle):x}, "
                f"released={self._released})")

    def release(self):
        if not self._released:
            self._agent.releaseXferReq(self._handle)
            self._released = True


# Backend handles are the backends' names (never shown to users).
nixl_backend_handle = str


class nixl_thread_sync_t(Enum):
    """Thread synchronization modes of an agent."""

    NIXL_THREAD_SYNC_NONE = nixlBind.NIXL_THREAD_SYNC_NONE
    NIXL_THREAD_SYNC_STRICT = nixlBind.NIXL_THREAD_SYNC_STRICT
    NIXL_THREAD_SYNC_RW = nixlBind.NIXL_THREAD_SYNC_RW
    NIXL_THREAD_SYNC_DEFAULT = nixlBind.NIXL_THREAD_SYNC_DEFAULT


class nixl_agent_config:
    """Configuration of a nixl_agent.

    enable_prog_thread: a progress thread (sleeps on the backends' fds).
    enable_listen_thread: the metadata listener (side channel) on
    listen_port (0: a free port, see nixl_agent.get_listen_port()).
    capture_telemetry: per-transfer telemetry (NIXL_TELEMETRY_ENABLE=y
    turns it on too). num_threads: given to the backends that take a
    "num_threads" parameter. backends: created in order ("UCX" by default;
    NXL's "SHM", "TCP", "POSIX" too). sync_mode: a nixl_thread_sync_t, or
    None for STRICT with a listener and NONE without.
    """

    def __init__(self, enable_prog_thread: bool = True,
                 enable_listen_thread: bool = False,
                 listen_port: int = DEFAULT_COMM_PORT,
                 capture_telemetry: bool = False,
                 num_threads: int = 0,
                 backends: list = ["UCX"],  # noqa: B006 (NIXL's default)
                 sync_mode: Optional[nixl_thread_sync_t] = None):
        self.backends = backends
        self.enable_pthread = enable_prog_thread
        self.enable_listen = enable_listen_thread
        self.port = listen_port
        self.capture_telemetry = capture_telemetry
        self.num_threads = num_threads
        if sync_mode is not None and not isinstance(sync_mode,
                                                    nixl_thread_sync_t):
            raise TypeError(
                f"sync_mode must be a nixl_thread_sync_t "
                f"(got {type(sync_mode).__name__!r})")
        self.sync_mode = sync_mode


def _handles(agent, backends):
    """NIXL's handle list for backend names (KeyError for one that was not
    created); a bool is the old is_sorted argument in that position."""
    if not backends or isinstance(backends, bool):
        return []
    if isinstance(backends, str):
        backends = [backends]
    return [agent.backends[b] for b in backends]


def _name(n):
    return n.decode() if isinstance(n, (bytes, bytearray)) else n


class nixl_agent:
    """A NIXL agent: backends, registered memory, peers' metadata,
    transfers and notifications.

    nixl_agent(agent_name, nixl_conf=None, instantiate_all=False)
    """

    def __init__(self, agent_name: str,
                 nixl_conf: Optional[nixl_agent_config] = None,
                 instantiate_all: bool = False):
        if nixl_conf and instantiate_all:
            instantiate_all = False
            logger.warning("Ignoring instantiate_all based on the provided "
                           "config in agent creation.")
        if not nixl_conf:
            nixl_conf = nixl_agent_config()

        default_sync = (nixl_thread_sync_t.NIXL_THREAD_SYNC_STRICT
                        if nixl_conf.enable_listen
                        else nixl_thread_sync_t.NIXL_THREAD_SYNC_NONE)
        agent_config = nixlBind.nixlAgentConfig()
        agent_config.useProgThread = bool(nixl_conf.enable_pthread)
        agent_config.useListenThread = bool(nixl_conf.enable_listen)
        agent_config.listenPort = int(nixl_conf.port)
        agent_config.syncMode = (nixl_conf.sync_mode or default_sync).value
        agent_config.pthrDelay = 0
        agent_config.lthrDelay = 100000
        agent_config.captureTelemetry = bool(nixl_conf.capture_telemetry)
        # Looked up on the module at call time (tests may patch it).
        self.agent = nixlBind.nixlAgent(agent_name, agent_config)

        self.name = agent_name
        self.notifs: dict = {}
        self.backends: dict = {}
        self.backend_mems: dict = {}
        self.backend_options: dict = {}

        self.plugin_list = self.agent.getAvailPlugins()
        if len(self.plugin_list) == 0:
            logger.error("No plugins available, cannot start transfers!")
            raise RuntimeError(
                "No plugins available for NIXL, cannot start transfers!")
        self.plugin_b_options: dict = {}
        self.plugin_mem_types: dict = {}

        if instantiate_all:
            nixl_conf.backends = self.plugin_list
        for bknd in nixl_conf.backends:
            if bknd not in self.plugin_list:
                logger.warning("Skipping backend registration %s due to the "
                               "missing plugin.", bknd)
                continue
            init = {}
            if nixl_conf.num_threads and nixl_conf.num_threads > 0:
                params = self.get_plugin_params(bknd)
                for key in ("num_threads", "thread_count", "num_cpus"):
                    if key in params:
                        init[key] = str(nixl_conf.num_threads)
                        break
            self.create_backend(bknd, init)

        self.nixl_mems = {
            "DRAM": nixlBind.DRAM_SEG,
            "VRAM": nixlBind.VRAM_SEG,
            "FILE": nixlBind.FILE_SEG,
            "BLOCK": nixlBind.BLK_SEG,
            "OBJ": nixlBind.OBJ_SEG,
            "cpu": nixlBind.DRAM_SEG,  # deprecated
            "cuda": nixlBind.VRAM_SEG,  # deprecated
        }
        self.nixl_ops = {
            "WRITE": nixlBind.NIXL_WRITE,
            "READ": nixlBind.NIXL_READ,
        }
        logger.info("Initialized NIXL agent: %s", agent_name)

    # -- plugins and backends -------------------------------------------------

    def _load_plugin_params(self, plugin):
        if plugin not in self.plugin_list:
            return
        try:
            opts, mems = self.agent.getPluginParams(plugin)
        except Exception:  # noqa: BLE001 (NIXL logs it)
            logger.warning("Failed to load params for plugin %s", plugin,
                           exc_info=True)
            return
        self.plugin_b_options[plugin] = opts
        self.plugin_mem_types[plugin] = mems

    def get_plugin_list(self) -> list:
        """The available backend types."""
        return self.plugin_list

    def get_plugin_mem_types(self, backend: str) -> list:
        """The memory types ("DRAM_SEG", ...) a backend type supports; []
        for an unknown one."""
        if backend not in self.plugin_mem_types:
            self._load_plugin_params(backend)
        if backend not in self.plugin_mem_types:
            logger.warning("Plugin %s is not available to get its supported "
                           "mem types.", backend)
            return []
        return self.plugin_mem_types[backend]

    def get_plugin_params(self, backend: str) -> dict:
        """A backend type's parameters and their defaults; {} for an
        unknown one."""
        if backend not in self.plugin_b_options:
            self._load_plugin_params(backend)
        if backend not in self.plugin_b_options:
            logger.warning("Plugin %s is not available to get its "
                           "parameters.", backend)
            return {}
        return self.plugin_b_options[backend]

    def get_backend_mem_types(self, backend: str) -> list:
        """The memory types of a created backend; [] if not created."""
        if backend in self.backend_mems:
            return self.backend_mems[backend]
        logger.warning("Backend %s not instantiated to get its supported "
                       "mem types.", backend)
        return []

    def get_backend_params(self, backend: str) -> dict:
        """The parameters in effect of a created backend; {} if not
        created."""
        if backend in self.backend_options:
            return self.backend_options[backend]
        logger.warning("Backend %s not instantiated to get its parameters.",
                       backend)
        return {}

    def create_backend(self, backend: str, initParams: dict = {}):  # noqa: B006
        """Creates a backend of type backend with initParams."""
        self.backends[backend] = self.agent.createBackend(backend, initParams)
        opts, mems = self.agent.getBackendParams(self.backends[backend])
        self.backend_mems[backend] = mems
        self.backend_options[backend] = opts
        logger.info("Backend %s was instantiated", backend)

    # -- memory ---------------------------------------------------------------

    def register_memory(self, reg_list, mem_type: Optional[str] = None,
                        backends: list = [],  # noqa: B006
                        is_sorted=None):
        """Registers memory: a nixlRegDList, a list of (addr, len, devId,
        metaInfo) tuples or an Nx3 array with mem_type, a tensor or a list
        of tensors. Returns the nixlRegDList (for deregister_memory)."""
        reg_descs = self.get_reg_descs(reg_list, mem_type)
        self.agent.registerMem(reg_descs, _handles(self, backends))
        return reg_descs

    def deregister_memory(self, dereg_list, backends: list = []):  # noqa
        """Deregisters a nixlRegDList from register_memory or
        get_reg_descs (descriptors must match registrations exactly)."""
        self.agent.deregisterMem(dereg_list, _handles(self, backends))

    def query_memory(self, reg_list, backend: str,
                     mem_type: Optional[str] = None) -> list:
        """For each descriptor, None when its file (metaInfo) is not
        accessible, else {"size", "mode", "mtime"} (file backends:
        POSIX)."""
        reg_descs = self.get_reg_descs(reg_list, mem_type)
        if backend not in self.backends:
            raise ValueError(f"Backend '{backend}' not found. Available "
                             f"backends: {list(self.backends.keys())}")
        return self.agent.queryMem(reg_descs, self.backends[backend])

    def make_connection(self, remote_agent: str,
                        backends: list = []):  # noqa: B006
        """Optional: NXL connects when metadata is loaded. Raises
        nixlNotFoundError for an agent that is not loaded."""
        self.agent.makeConnection(_name(remote_agent),
                                  _handles(self, backends))

    # -- transfers ------------------------------------------------------------

    def prep_xfer_dlist(self, agent_name: str, xfer_list,
                        mem_type: Optional[str] = None,
                        backends: list = [],  # noqa: B006
                        is_sorted=None) -> nixl_prepped_dlist_handle:
        """Prepares descriptors for make_prepped_xfer: agent_name
        "NIXL_INIT_AGENT" or "" for local memory, a loaded agent's name
        for its memory, this agent's own name for loopback."""
        if isinstance(xfer_list, np.ndarray) and xfer_list.ndim == 2 and \
                xfer_list.shape[1] == 5:
            raise nixlBind.nixlNotSupportedError(
                "strided (Nx5) descriptor lists are not supported by NXL")
        agent_name = _name(agent_name)
        if agent_name == "NIXL_INIT_AGENT" or agent_name == "":
            agent_name = nixlBind.NIXL_INIT_AGENT
        descs = self.get_xfer_descs(xfer_list, mem_type)
        handle = self.agent.prepXferDlist(agent_name, descs,
                                          _handles(self, backends))
        return nixl_prepped_dlist_handle(self.agent, handle)

    def estimate_xfer_cost(self, req_handle: nixl_xfer_handle):
        """Not supported by NXL's backends (nixlNotSupportedError)."""
        duration, err, method = self.agent.estimateXferCost(
            req_handle._handle)
        method = ("ANALYTICAL_BACKEND"
                  if method == nixlBind.NIXL_COST_ANALYTICAL_BACKEND
                  else "UNKNOWN")
        return duration, err, method

    def make_prepped_xfer(self, operation: str,
                          local_xfer_side: nixl_prepped_dlist_handle,
                          local_indices: Union[list, np.ndarray],
                          remote_xfer_side: nixl_prepped_dlist_handle,
                          remote_indices: Union[list, np.ndarray],
                          notif_msg: bytes = b"",
                          backends: list = [],  # noqa: B006
                          skip_desc_merge: bool = False) -> nixl_xfer_handle:
        """A transfer of local_xfer_side[local_indices[i]] and
        remote_xfer_side[remote_indices[i]] (lists or integer arrays). A
        non-empty notif_msg reaches the remote agent after the data."""
        op = self.nixl_ops[operation]
        handle = self.agent.makeXferReq(
            op, local_xfer_side._handle, local_indices,
            remote_xfer_side._handle, remote_indices, notif_msg,
            _handles(self, backends), skip_desc_merge)
        return nixl_xfer_handle(self.agent, handle)

    def initialize_xfer(self, operation: str, local_descs, remote_descs,
                        remote_agent: str, notif_msg: bytes = b"",
                        backends: list = []  # noqa: B006
                        ) -> nixl_xfer_handle:
        """A transfer between two nixlXferDLists of equal count and
        lengths, towards remote_agent (or this agent: loopback)."""
        op = self.nixl_ops[operation]
        handle = self.agent.createXferReq(
            op, local_descs, remote_descs, _name(remote_agent), notif_msg,
            _handles(self, backends))
        return nixl_xfer_handle(self.agent, handle)

    def transfer(self, handle: nixl_xfer_handle,
                 notif_msg: bytes = b"") -> str:
        """Posts the transfer: "DONE" (finished at once), "PROC" or "ERR"
        (logged). A non-empty notif_msg replaces the notification."""
        if notif_msg:
            notif_msg = (notif_msg if isinstance(notif_msg, bytes)
                         else nixlBind._as_bytes(notif_msg))
        else:
            notif_msg = None
        try:
            st = handle._handle.post(notif_msg)
        except _ERR_EXC as e:
            logger.error("transfer: %s: %s", _nxl.status_name(e.status), e)
            return "ERR"
        return "DONE" if st == 0 else "PROC"

    def check_xfer_state(self, handle: nixl_xfer_handle) -> str:
        """"DONE", "PROC" or "ERR" (the transfer failed; logged)."""
        try:
            st = handle._handle.raw_status
        except _ERR_EXC as e:
            logger.error("check_xfer_state: %s", e)
            return "ERR"
        if st == 0:
            return "DONE"
        if st == 1:
            return "PROC"
        if logger.isEnabledFor(_logging.ERROR):
            logger.error("check_xfer_state: transfer failed: %s",
                         _nxl.status_name(st))
        return "ERR"

    def get_xfer_telemetry(self, handle: nixl_xfer_handle):
        """nixlXferTelemetry of the last completed post: startTime,
        postDuration, xferDuration (us), totalBytes, descCount; raises
        nixlNoTelemetryError unless telemetry is on."""
        return self.agent.getXferTelemetry(handle._handle)

    def query_xfer_backend(self, handle: nixl_xfer_handle) -> str:
        """The name of the backend running the transfer."""
        b_handle = self.agent.queryXferBackend(handle._handle)
        return next((name for name, h in self.backends.items()
                     if h == b_handle), b_handle)

    def release_xfer_handle(self, handle: nixl_xfer_handle):
        """Releases a transfer (canceling it if still in flight)."""
        handle.release()

    def release_dlist_handle(self, handle: nixl_prepped_dlist_handle):
        """Releases a prepared list."""
        handle.release()

    def prep_mem_view(self, *args, **kw):
        raise nixlBind.nixlNotSupportedError(
            "memory views (GPU-initiated transfers) are not supported by NXL")

    release_mem_view = prepare_device_view = prep_mem_view

    # -- notifications --------------------------------------------------------

    def get_new_notifs(self, backends: list = []) -> dict:  # noqa: B006
        """{agent name: [bytes, ...]} of what arrived since the last call
        (not kept for check_remote_xfer_done)."""
        return self.agent.getNotifs({}, _handles(self, backends))

    def update_notifs(self, backends: list = []) -> dict:  # noqa: B006
        """Adds new notifications to self.notifs and returns it."""
        self.notifs = self.agent.getNotifs(self.notifs,
                                           _handles(self, backends))
        return self.notifs

    def check_remote_xfer_done(self, remote_agent_name: str,
                               lookup_tag: bytes,
                               backends: list = [],  # noqa: B006
                               tag_is_prefix=True) -> bool:
        """True (and the message is consumed) when a notification from
        remote_agent_name starts with lookup_tag (tag_is_prefix) or
        contains it; an empty tag matches any message."""
        self.notifs = self.agent.getNotifs(self.notifs,
                                           _handles(self, backends))
        msgs = self.notifs.get(_name(remote_agent_name))
        if not msgs:
            return False
        if isinstance(lookup_tag, str):
            lookup_tag = lookup_tag.encode()
        for i, msg in enumerate(msgs):
            if (msg.startswith(lookup_tag) if tag_is_prefix
                    else lookup_tag in msg):
                del msgs[i]
                return True
        return False

    def send_notif(self, remote_agent_name: str, notif_msg: bytes,
                   backend: Optional[str] = None):
        """Sends a notification, not bound to a transfer."""
        if backend is None:
            self.agent.genNotif(_name(remote_agent_name), notif_msg)
        else:
            self.agent.genNotif(_name(remote_agent_name), notif_msg,
                                [self.backends[backend]])

    # -- metadata -------------------------------------------------------------

    def get_agent_metadata(self) -> bytes:
        """All of this agent's metadata."""
        return self.agent.getLocalMD()

    def get_partial_agent_metadata(self, descs, inc_conn_info: bool = False,
                                   backends: list = []  # noqa: B006
                                   ) -> bytes:
        """Metadata of the registered descs (a nixlRegDList; empty: the
        connection info only)."""
        return self.agent.getLocalPartialMD(descs, inc_conn_info,
                                            _handles(self, backends))

    def add_remote_agent(self, metadata: bytes) -> bytes:
        """Loads a peer's metadata; returns its name (bytes)."""
        return self.agent.loadRemoteMD(metadata)

    def remove_remote_agent(self, agent: str):
        """Forgets a peer: transfers towards it fail from then on."""
        self.agent.invalidateRemoteMD(_name(agent))

    def send_local_metadata(self, ip_addr: str = "",
                            port: int = DEFAULT_COMM_PORT):
        """Sends this agent's metadata to the listener at ip_addr:port."""
        self.agent.sendLocalMD(ip_addr, port)

    def send_partial_agent_metadata(self, descs, inc_conn_info: bool = False,
                                    backends: list = [],  # noqa: B006
                                    ip_addr: str = "",
                                    port: int = DEFAULT_COMM_PORT,
                                    label: str = ""):
        """Sends the metadata of descs to the listener at ip_addr:port."""
        self.agent.sendLocalPartialMD(descs, inc_conn_info,
                                      _handles(self, backends), ip_addr,
                                      port, label)

    def fetch_remote_metadata(self, remote_agent: str, ip_addr: str = "",
                              port: int = DEFAULT_COMM_PORT,
                              label: str = ""):
        """Loads the metadata of remote_agent from its listener at
        ip_addr:port (synchronous in NXL: loaded when this returns)."""
        self.agent.fetchRemoteMD(_name(remote_agent), ip_addr, port, label)

    def invalidate_local_metadata(self, ip_addr: str = "",
                                  port: int = DEFAULT_COMM_PORT):
        """Tells the listener at ip_addr:port to forget this agent."""
        self.agent.invalidateLocalMD(ip_addr, port)

    def check_remote_metadata(self, agent: str, descs=None) -> bool:
        """True when agent's metadata is loaded (and covers descs)."""
        if descs is None:
            descs = nixlBind.nixlXferDList(nixlBind.DRAM_SEG)
        return (self.agent.checkRemoteMD(_name(agent), descs) ==
                nixlBind.NIXL_SUCCESS)

    def get_listen_port(self) -> int:
        """The port the metadata listener is bound to (0 without one)."""
        return self.agent.getListenPort()

    # -- descriptor lists -----------------------------------------------------

    @staticmethod
    def _tensor_mem_type(tensor):
        return "DRAM" if tensor.get_device() == -1 else "VRAM"

    def _tensor_rows(self, tensors):
        """(mem type, rows) of a list of tensors on one device; None when
        they differ in device or one is not contiguous."""
        gpu = tensors[0].get_device()  # -1: CPU
        dev = 0 if gpu == -1 else gpu
        rows = []
        append = rows.append
        for t in tensors:
            if t.get_device() != gpu:
                return None
            if not t.is_contiguous():
                logger.error("Please use a list of contiguous Tensors")
                return None
            append((t.data_ptr(), t.numel() * t.element_size(), dev))
        return self._tensor_mem_type(tensors[0]), rows

    def _descs(self, cls, width, descs, mem_type):
        if isinstance(descs, cls):
            return descs
        other = (nixlBind.nixlRegDList if cls is nixlBind.nixlXferDList
                 else nixlBind.nixlXferDList)
        if isinstance(descs, other):
            logger.error("%s type detected, please use %s",
                         other.__name__, cls.__name__)
            return None
        if isinstance(descs, np.ndarray):
            if mem_type is not None and descs.ndim == 2 and \
                    descs.shape[1] == 3:
                return cls(self.nixl_mems[mem_type], descs)
            if mem_type is None:
                logger.error("Please specify a mem type if not using Tensors")
            else:
                logger.error("Nx3 shape required for descriptor list from "
                             "numpy array")
            return None
        if _is_torch_tensor(descs):
            if not descs.is_contiguous():
                logger.error("Please use a list of contiguous Tensors")
                return None
            gpu = descs.get_device()
            row = (descs.data_ptr(), descs.numel() * descs.element_size(),
                   0 if gpu == -1 else gpu)
            return cls(self.nixl_mems[self._tensor_mem_type(descs)],
                       [row + ("",) * (width - 3)])
        if isinstance(descs, (list, tuple)) and len(descs) > 0:
            first = descs[0]
            if isinstance(first, tuple):
                if mem_type is not None and len(first) == width:
                    return cls(self.nixl_mems[mem_type], descs)
                if mem_type is None:
                    logger.error("Please specify a mem type if not using "
                                 "Tensors")
                else:
                    logger.error("%d-tuple list needed for %s", width,
                                 cls.__name__)
                return None
            if _is_torch_tensor(first):
                got = self._tensor_rows(descs)
                if got is None:
                    return None
                mem, rows = got
                if width == 4:
                    rows = [r + ("",) for r in rows]
                return cls(self.nixl_mems[mem], rows)
        if isinstance(descs, (list, tuple)) and len(descs) == 0 and \
                mem_type is not None:
            return cls(self.nixl_mems[mem_type], [])  # an empty list
        return None

    def get_xfer_descs(self, descs, mem_type: Optional[str] = None,
                       is_sorted=None):
        """A nixlXferDList from: a list of (addr, len, devId) tuples or an
        Nx3 array (with mem_type), a tensor, a list of tensors, or a
        nixlXferDList (returned as is). None (logged) when the input does
        not fit; KeyError for an unknown mem_type."""
        return self._descs(nixlBind.nixlXferDList, 3, descs, mem_type)

    def get_reg_descs(self, descs, mem_type: Optional[str] = None,
                      is_sorted=None):
        """A nixlRegDList from: a list of (addr, len, devId, metaInfo)
        tuples or an Nx3 array (with mem_type), a tensor, a list of
        tensors, or a nixlRegDList (returned as is). None (logged) when the
        input does not fit; KeyError for an unknown mem_type."""
        return self._descs(nixlBind.nixlRegDList, 4, descs, mem_type)

    def get_serialized_descs(self, descs) -> bytes:
        """Serializes a descriptor list (pickle)."""
        return pickle.dumps(descs)

    def deserialize_descs(self, serialized_descs: bytes):
        """The descriptor list get_serialized_descs serialized."""
        return pickle.loads(serialized_descs)


__all__ = ["nixl_agent", "nixl_agent_config", "nixl_thread_sync_t",
           "nixl_xfer_handle", "nixl_prepped_dlist_handle",
           "nixl_backend_handle", "DEFAULT_COMM_PORT", "NIXL_NULL_AGENT"]
