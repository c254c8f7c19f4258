"""nixl: NIXL's Python API, on NXL.

This package is NXL's NIXL-compatible layer (pure Python over the ``nxl``
package): programs written for NIXL's Python API run unchanged when its
folder is on the path. It is installed apart from site-packages so that it
never stands in for a real NIXL by accident; opt in with
``PYTHONPATH=<prefix>/lib/nxl/python-nixl`` or, from code,
``import nxl.compat; nxl.compat.enable()``. See docs/python.md, "nixl
compatibility".

    from nixl._api import nixl_agent, nixl_agent_config
    agent = nixl_agent("decode-0", nixl_agent_config(backends=["UCX"]))
"""

import os as _os

# NIXL's package sets NIXL_PLUGIN_DIR when unset, and NIXL's examples print
# it. NXL's backends are built in (plugins: NXL_PLUGIN_DIR).
if "NIXL_PLUGIN_DIR" not in _os.environ:
    _os.environ["NIXL_PLUGIN_DIR"] = _os.environ.get(
        "NXL_PLUGIN_DIR", _os.path.dirname(_os.path.abspath(__file__)))

from . import logging  # noqa: E402
from . import _bindings, _utils, _api  # noqa: E402
from ._api import *  # noqa: E402,F401,F403
from ._api import nixl_agent, nixl_agent_config  # noqa: E402,F401
from ._bindings import (  # noqa: E402,F401
    DRAM_SEG, VRAM_SEG, BLK_SEG, OBJ_SEG, FILE_SEG, NIXL_READ, NIXL_WRITE,
    NIXL_INIT_AGENT, nixlAgent, nixlAgentConfig, nixlRegDList,
    nixlXferDList, nixlXferTelemetry, nixl_mem_t, nixl_xfer_op_t,
    nixl_status_t, nixlNotPostedError, nixlInvalidParamError,
    nixlBackendError, nixlNotFoundError, nixlMismatchError,
    nixlNotAllowedError, nixlRepostActiveError, nixlUnknownError,
    nixlNotSupportedError, nixlRemoteDisconnectError, nixlCancelledError,
    nixlNoTelemetryError,
)
from ._utils import (  # noqa: E402,F401
    malloc_passthru, free_passthru, ba_buf, verify_transfer,
)

#: This package is NXL's layer, not NVIDIA's NIXL.
__nxl__ = True
