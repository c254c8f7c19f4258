"""pytest setup for the nxl package: imports it from $NXL_BUILD/python
(the build tree; tests/run_all.sh sets NXL_BUILD) and fails, never skips,
when that import fails: the collection of this folder is then replaced by
one failing test that shows the error. The test_nixl_* files import NXL's
NIXL-compatible nixl package from $NXL_BUILD/python-nixl, which is put on
sys.path when they are collected (and a failed import fails them)."""

import os
import pathlib
import sys
import traceback

import pytest

HERE = pathlib.Path(__file__).resolve().parent
TOP = HERE.parents[1]
BUILD = pathlib.Path(os.environ.get("NXL_BUILD") or TOP / "build")

sys.path.insert(0, str(BUILD / "python"))
#: NXL's NIXL-compatible package in the build tree: put on sys.path only
#: when a test_nixl_* file is collected (pytest_pycollect_makemodule).
NIXL_DIR = BUILD / "python-nixl"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # peers.py, for spawned processes

NXL_IMPORT_ERROR = None
try:
    import nxl  # noqa: F401
except BaseException:  # noqa: BLE001 (any failure must fail the run)
    NXL_IMPORT_ERROR = (
        f"cannot import nxl from {BUILD / 'python'} (NXL_BUILD="
        f"{os.environ.get('NXL_BUILD')!r}); build it with "
        f"`cmake --build <build>`:\n" + traceback.format_exc())


def pytest_pycollect_makemodule(module_path, parent):
    """The test_nixl_* files import nixl (NXL's NIXL-compatible package)
    from $NXL_BUILD/python-nixl; other tests do not see it."""
    if pathlib.Path(module_path).name.startswith("test_nixl") and \
            str(NIXL_DIR) not in sys.path:
        sys.path.insert(0, str(NIXL_DIR))
    return None


def pytest_ignore_collect(collection_path, config):
    """Without nxl, this folder's test files are not collected (they would
    only add collection errors, which the run's totals do not count)."""
    if NXL_IMPORT_ERROR is None:
        return None
    p = pathlib.Path(collection_path)
    if p.parent == HERE and p.name.startswith("test_"):
        return True
    return None


class ImportNxlFailure(pytest.Item):
    """The one test that stands for this folder when nxl cannot load."""

    def runtest(self):
        raise AssertionError(NXL_IMPORT_ERROR)

    def reportinfo(self):
        return self.path, 0, "import nxl"

    def repr_failure(self, excinfo, style=None):
        return str(excinfo.value)


def pytest_collection_modifyitems(session, config, items):
    if NXL_IMPORT_ERROR is not None:
        items.append(ImportNxlFailure.from_parent(
            session, name="python/tests::import_nxl",
            path=HERE / "conftest.py"))


if NXL_IMPORT_ERROR is None:
    import peers

    @pytest.fixture(scope="session")
    def peer():
        """A peer process with SHM, TCP (and UCX when built) backends and a
        side channel on an ephemeral port; shared by the session's tests."""
        backends = ["SHM", "TCP"]
        if "UCX" in nxl.plugin_names():
            backends.append("UCX")
        p = peers.Peer("peer", backends)
        yield p
        p.close()

    @pytest.fixture
    def stoppable_peer():
        """A TCP-only peer of the test's own, which the test may stop
        (SIGSTOP: its transfers stay in flight), resume or kill."""
        p = peers.Peer(peers.unique("stoppable"), ["TCP"])
        yield p
        p.close()
