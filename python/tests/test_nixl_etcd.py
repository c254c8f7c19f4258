"""The etcd metadata store from Python (docs/etcd.md): nixl_agent's
metadata calls without ip_addr, and nxl.Agent's with ip "", against a real
etcd (Debian's etcd-server, one member started here). Skips without an
etcd binary."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import numpy as np
import pytest

import nxl
import nixl._bindings as nb
from nixl._api import nixl_agent, nixl_agent_config

import peers


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def etcd():
    binary = os.environ.get("NXL_TEST_ETCD") or shutil.which("etcd")
    if binary is None:
        pytest.skip("no etcd binary (apt-get install etcd-server, or set "
                    "NXL_TEST_ETCD)")
    tmp = tempfile.mkdtemp(prefix="nxl-pyetcd-")
    client, peer = _free_port(), _free_port()
    url = f"http://127.0.0.1:{client}"
    log = open(os.path.join(tmp, "etcd.log"), "wb")
    proc = subprocess.Popen(
        [binary, "--name", "m0", "--data-dir", os.path.join(tmp, "data"),
         "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"m0=http://127.0.0.1:{peer}",
         "--log-level", "warn"], stdout=log, stderr=log)
    try:
        end = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as r:
                    if b"true" in r.read():
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > end:
                pytest.fail(f"etcd did not start (log in {tmp})")
            time.sleep(0.1)
        yield url
    finally:
        proc.kill()
        proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def etcd_env(etcd, monkeypatch):
    monkeypatch.setenv("NIXL_ETCD_ENDPOINTS", etcd)
    monkeypatch.setenv("NIXL_ETCD_NAMESPACE", "/" + peers.unique("pyns"))
    return etcd


def wait_until(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def nixl(prefix):
    return nixl_agent(peers.unique(prefix),
                      nixl_agent_config(backends=["SHM"]))


def test_nixl_publish_fetch_read_invalidate(etcd_env):
    target, init = nixl("et-t"), nixl("et-i")
    src = np.arange(4096, dtype=np.uint8)
    dst = np.zeros(4096, np.uint8)
    target.register_memory([(src.ctypes.data, 4096, 0, "")], "DRAM")
    init.register_memory([(dst.ctypes.data, 4096, 0, "")], "DRAM")
    target.send_local_metadata()               # no ip_addr: etcd
    init.fetch_remote_metadata(target.name)    # waits for it, loads it
    assert init.check_remote_metadata(target.name)
    local = init.get_xfer_descs([(dst.ctypes.data, 4096, 0)], "DRAM")
    remote = init.get_xfer_descs([(src.ctypes.data, 4096, 0)], "DRAM")
    h = init.initialize_xfer("READ", local, remote, target.name)
    assert init.transfer(h) in ("DONE", "PROC")
    assert wait_until(lambda: init.check_xfer_state(h) == "DONE")
    assert np.array_equal(src, dst)
    init.release_xfer_handle(h)
    # The target leaves the store: the initiator's watch forgets it.
    target.invalidate_local_metadata()
    assert wait_until(lambda: not init.check_remote_metadata(target.name))


def test_nixl_partial_metadata_label(etcd_env):
    target, init = nixl("etp-t"), nixl("etp-i")
    buf = np.zeros(1024, np.uint8)
    target.register_memory([(buf.ctypes.data, 1024, 0, "")], "DRAM")
    part = target.get_reg_descs([(buf.ctypes.data, 1024, 0, "")], "DRAM")
    with pytest.raises(nb.nixlInvalidParamError):  # etcd needs a label
        target.send_partial_agent_metadata(part, True, [])
    target.send_partial_agent_metadata(part, True, [], label="kv-part")
    init.fetch_remote_metadata(target.name, label="kv-part")
    covered = init.get_xfer_descs([(buf.ctypes.data, 1024, 0)], "DRAM")
    assert init.check_remote_metadata(target.name, covered)


def test_nixl_without_etcd_is_not_supported(monkeypatch):
    monkeypatch.delenv("NIXL_ETCD_ENDPOINTS", raising=False)
    monkeypatch.delenv("NXL_ETCD_ENDPOINTS", raising=False)
    a = nixl("et-none")
    with pytest.raises(nb.nixlNotSupportedError):
        a.send_local_metadata()
    with pytest.raises(nb.nixlNotSupportedError):
        a.fetch_remote_metadata("somebody")


def test_nxl_agent_etcd_and_timeout(etcd_env):
    with nxl.Agent(peers.unique("etn-t"), backends=["SHM"]) as t, \
            nxl.Agent(peers.unique("etn-i"), backends=["SHM"]) as i:
        t.send_metadata("", label="md2")
        i.fetch_metadata("", remote=t.name, label="md2", timeout=5)
        assert i.check(t.name)
        # Nobody publishes under this label: NOT_FOUND after the timeout.
        start = time.monotonic()
        with pytest.raises(nxl.NotFoundError):
            i.fetch_metadata("", remote=t.name, label="absent", timeout=0.3)
        assert time.monotonic() - start < 5
        t.invalidate_local("")
        assert wait_until(lambda: not i.check(t.name))
