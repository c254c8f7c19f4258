"""nxl.compat: opt in to NXL's NIXL-compatible ``nixl`` package from code.

The ``nixl`` package is installed in a folder of its own
(``<prefix>/lib/nxl/python-nixl``; ``<build>/python-nixl`` in a build
tree), never in site-packages, so that it cannot shadow a real NIXL by
accident. A program opts in with ``PYTHONPATH=<that folder>``, or with

    import nxl.compat
    nxl.compat.enable()        # before the first "import nixl"
    from nixl._api import nixl_agent

``NXL_NIXL_DIR`` overrides where the folder is looked for.
"""

import os
import sys

__all__ = ["path", "enable", "enabled"]


def path():
    """The folder that holds NXL's ``nixl`` package (it contains
    ``nixl/__init__.py``). Raises FileNotFoundError when there is none."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = []
    env = os.environ.get("NXL_NIXL_DIR")
    if env:
        candidates.append(env)
    try:
        from . import _nixl_dir  # written by CMake (build tree, install)
        candidates.append(os.path.normpath(os.path.join(here,
                                                        _nixl_dir.REL)))
    except ImportError:
        pass
    # The layouts CMake makes: <build>/python/nxl -> <build>/python-nixl;
    # <prefix>/lib/python3*/dist-packages/nxl -> <prefix>/lib/nxl/python-nixl.
    candidates.append(os.path.normpath(os.path.join(here, "..", "..",
                                                    "python-nixl")))
    candidates.append(os.path.normpath(os.path.join(here, "..", "..", "..",
                                                    "nxl", "python-nixl")))
    for c in candidates:
        if os.path.isfile(os.path.join(c, "nixl", "__init__.py")):
            return c
    raise FileNotFoundError(
        "NXL's nixl package was not found (looked in: " +
        ", ".join(candidates) + "); set NXL_NIXL_DIR")


def enabled():
    """True when ``import nixl`` gives (or gave) NXL's package."""
    mod = sys.modules.get("nixl")
    if mod is not None:
        return bool(getattr(mod, "__nxl__", False))
    try:
        return path() in sys.path
    except FileNotFoundError:
        return False


def enable():
    """Puts NXL's ``nixl`` folder first on sys.path (once) and returns it.
    Raises RuntimeError when another ``nixl`` is already imported."""
    folder = path()
    mod = sys.modules.get("nixl")
    if mod is not None and not getattr(mod, "__nxl__", False):
        raise RuntimeError(
            f"another nixl package is already imported ({mod.__file__}); "
            f"call nxl.compat.enable() before importing nixl")
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)
    return folder
