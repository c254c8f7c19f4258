"""`python3 -m nxl.bench --quick` runs and reports every row (the goals
themselves are checked by the full run recorded in docs/performance.md,
not here: this machine is shared)."""

import json
import os
import subprocess
import sys

import nxl


def test_bench_quick():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(nxl.__file__))
    out = subprocess.run(
        [sys.executable, "-m", "nxl.bench", "--quick", "--repeats", "1",
         "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    names = [r["name"] for r in rows]
    assert names[0] == "Transfer.status, finished handle"
    assert any(n.startswith("post->done") for n in names)
    assert sum(n.startswith("make_xfer") for n in names) == 2
    assert sum(n.startswith("DescList") for n in names) == 2
    assert any(n.startswith("register+deregister") for n in names)
    assert names[-1].endswith("SHM READ, GB/s")
    for r in rows:
        assert r.get("py_us", 1) > 0 and r.get("py_gbs", 1) > 0, r
        assert isinstance(r["met"], bool)
