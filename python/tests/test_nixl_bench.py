"""tools/nixl_bench.py --quick runs and reports every row through NXL's
nixl layer (the goals are checked by the full runs recorded in
docs/performance.md, not here: this machine is shared)."""

import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
TOP = HERE.parents[1]
BUILD = pathlib.Path(os.environ.get("NXL_BUILD") or TOP / "build")


def test_nixl_bench_quick():
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{BUILD / 'python'}{os.pathsep}{BUILD / 'python-nixl'}"
    out = subprocess.run(
        [sys.executable, str(TOP / "tools" / "nixl_bench.py"), "--quick",
         "--repeats", "1", "--json"], env=env, capture_output=True,
        text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    names = [r["name"] for r in rows]
    assert names[0] == "check_xfer_state, finished handle"
    assert sum(n.startswith("make_prepped_xfer") for n in names) == 3
    assert sum(n.startswith("get_xfer_descs") for n in names) == 2
    assert [n.rsplit(", ", 1)[-1] for n in names
            if n.startswith("register")] == ["SHM", "UCX"]
    for r in rows:
        assert r["nixl_us"] > 0 and isinstance(r["met"], bool), r
        assert r.get("c_us", 1) > 0 and r.get("nxl_us", 1) > 0, r
