"""NXL's nixl package from the outside: the NIXL-style two-process example
(examples/python/two_peers.py) over SHM, TCP and UCX, and where the
package is built and installed (never where it could shadow a real NIXL).
"""

import os
import pathlib
import selectors
import shutil
import subprocess
import sys
import tempfile

import pytest

HERE = pathlib.Path(__file__).resolve().parent
TOP = HERE.parents[1]
BUILD = pathlib.Path(os.environ.get("NXL_BUILD") or TOP / "build")
EXAMPLE = TOP / "examples" / "python" / "two_peers.py"
PY = sys.executable


def _env(*paths):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    env.pop("NIXL_TELEMETRY_ENABLE", None)
    return env


def _read_line(proc, timeout):
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            return ""
        return proc.stdout.readline()
    finally:
        sel.close()


@pytest.mark.parametrize("backend", ["SHM", "TCP", "UCX"])
def test_two_peers_example(backend):
    env = _env(BUILD / "python", BUILD / "python-nixl")
    args = [PY, str(EXAMPLE), "--backend", backend, "--size", str(1 << 20)]
    target = subprocess.Popen(args + ["--mode", "target", "--port", "0"],
                              env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        line = _read_line(target, 30)
        assert line.startswith("listening on port "), line
        port = line.split()[-1]
        init = subprocess.run(args + ["--mode", "initiator", "--port", port],
                              env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              timeout=60)
        out, _ = target.communicate(timeout=30)
    finally:
        if target.poll() is None:
            target.kill()
            target.wait()
    assert init.returncode == 0, init.stdout
    assert "initiator: Test Complete." in init.stdout
    assert target.returncode == 0, out
    assert "target: Test Complete." in out


def test_nixl_needs_its_folder():
    """The nxl folder does not hold nixl: without the opt-in, import nixl
    does not find NXL's (a real NIXL, when installed, is what programs
    get); nxl.compat.enable() opts in."""
    code = ("import importlib.util, nxl; "
            "s = importlib.util.find_spec('nixl'); "
            f"assert s is None or not s.origin.startswith({str(BUILD)!r}); "
            "import nxl.compat, sys; p = nxl.compat.enable(); "
            "import nixl; assert nixl.__nxl__ and nixl.__file__.startswith(p)"
            "; print(p)")
    r = subprocess.run([PY, "-c", code], env=_env(BUILD / "python"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout
    assert r.stdout.strip() == str(BUILD / "python-nixl")


def test_install_layout():
    """make install puts nixl in <prefix>/lib/nxl/python-nixl, beside and
    not inside site-packages; nxl.compat finds it from the installed
    nxl."""
    cmake = shutil.which("cmake")
    assert cmake, "cmake is needed to build NXL"
    with tempfile.TemporaryDirectory() as prefix:
        for d in ("src", "python"):
            subprocess.run([cmake, f"-DCMAKE_INSTALL_PREFIX={prefix}", "-P",
                            str(BUILD / d / "cmake_install.cmake")],
                           check=True, stdout=subprocess.DEVNULL, timeout=60)
        root = pathlib.Path(prefix)
        found = sorted(p.relative_to(root).as_posix()
                       for p in root.rglob("nixl/__init__.py"))
        assert found == ["lib/nxl/python-nixl/nixl/__init__.py"]
        site = [p.parent.parent for p in root.rglob("nxl/__init__.py")]
        assert len(site) == 1 and not (site[0] / "nixl").exists()
        code = ("import importlib.util, nxl.compat; "
                "s = importlib.util.find_spec('nixl'); "
                f"assert s is None or not s.origin.startswith({prefix!r}); "
                "print(nxl.compat.enable()); import nixl._api; "
                f"assert nixl.__file__.startswith({prefix!r})")
        r = subprocess.run([PY, "-c", code], env=_env(site[0]),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stdout
        assert r.stdout.strip() == str(root / "lib/nxl/python-nixl")
