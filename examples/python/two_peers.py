#!/usr/bin/env python3
"""two_peers.py: a NIXL-style two-process transfer, written against NIXL's
Python API only (``nixl``), so that it runs on NIXL and on NXL alike.

The target registers two regions (a source filled with a pattern and a
zeroed destination) and hands its metadata and descriptors to the
initiator over a plain TCP socket (any out-of-band channel will do). The
initiator registers a buffer, loads the target's metadata
(add_remote_agent), prepares both sides (prep_xfer_dlist), READs the
source with a notification, then WRITEs what it read into the
destination with another; it polls check_xfer_state until "DONE". The
target waits for both notifications with get_new_notifs and checks that
its destination now equals its source.

    # NXL: put NXL's nixl folder on the path (NIXL: nothing to do)
    export PYTHONPATH=build/python:build/python-nixl
    python3 examples/python/two_peers.py --mode target --port 5555 &
    python3 examples/python/two_peers.py --mode initiator --port 5555

--backend picks the backend ("UCX", NIXL's default; NXL also has "SHM"
and "TCP"). With --port 0 the target picks a free port and prints it
("listening on port N").
"""

import argparse
import socket
import struct
import sys
import time

import numpy as np

from nixl._api import nixl_agent, nixl_agent_config
from nixl.logging import get_logger

logger = get_logger(__name__)


def send_msg(sock, data):
    sock.sendall(struct.pack("!Q", len(data)) + data)


def recv_msg(sock):
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("peer closed the socket")
            buf += chunk
        return buf

    (n,) = struct.unpack("!Q", exact(8))
    return exact(n)


def pattern(size):
    return (np.arange(size, dtype=np.uint32) * 7 + 3).astype(np.uint8)


def wait_done(agent, handle, what, timeout):
    """Polls check_xfer_state until "DONE"; False on "ERR" or timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = agent.check_xfer_state(handle)
        if state == "DONE":
            return True
        if state == "ERR":
            logger.error("%s: the transfer failed", what)
            return False
    logger.error("%s: still in progress after %s s", what, timeout)
    return False


def run_target(args):
    agent = nixl_agent("target", nixl_agent_config(
        True, False, 0, backends=[args.backend]))
    src = pattern(args.size)
    dst = np.zeros(args.size, dtype=np.uint8)
    regions = np.array([[src.ctypes.data, args.size, 0],
                        [dst.ctypes.data, args.size, 0]], dtype=np.uint64)
    reg_descs = agent.register_memory(regions, "DRAM")
    if not reg_descs:
        logger.error("Memory registration failed.")
        return 1

    server = socket.create_server((args.ip, args.port))
    print(f"listening on port {server.getsockname()[1]}", flush=True)
    conn, _ = server.accept()
    with conn:
        send_msg(conn, agent.get_agent_metadata())
        send_msg(conn, agent.get_serialized_descs(reg_descs.trim()))
        peer = agent.add_remote_agent(recv_msg(conn))
        logger.info("loaded the metadata of %s", peer)

        expected = {b"READ done", b"WRITE done"}
        end = time.monotonic() + args.timeout
        while expected and time.monotonic() < end:
            notifs = agent.get_new_notifs()
            for msg in notifs.get("initiator", []):
                expected.discard(msg)
        ok = not expected and np.array_equal(src, dst)
        if expected:
            logger.error("missing notifications: %s", sorted(expected))
        elif not ok:
            logger.error("the destination does not hold the source")
        send_msg(conn, b"ok" if ok else b"fail")
        recv_msg(conn)  # the initiator is done with our memory

    agent.remove_remote_agent(peer)
    agent.deregister_memory(reg_descs)
    server.close()
    print("target: " + ("Test Complete." if ok else "FAILED"), flush=True)
    return 0 if ok else 1


def run_initiator(args):
    agent = nixl_agent("initiator", nixl_agent_config(
        True, False, 0, backends=[args.backend]))
    buf = np.zeros(args.size, dtype=np.uint8)
    local = [(buf.ctypes.data, args.size, 0, "")]
    reg_descs = agent.register_memory(local, "DRAM")

    with socket.create_connection((args.ip, args.port), timeout=30) as conn:
        remote_name = agent.add_remote_agent(recv_msg(conn))
        target_descs = agent.deserialize_descs(recv_msg(conn))
        send_msg(conn, agent.get_agent_metadata())

        local_side = agent.prep_xfer_dlist("NIXL_INIT_AGENT",
                                           reg_descs.trim())
        remote_side = agent.prep_xfer_dlist(remote_name, target_descs)

        # READ the target's source (descriptor 0) into buf.
        read = agent.make_prepped_xfer("READ", local_side, [0], remote_side,
                                       [0], b"READ done")
        ok = agent.transfer(read) != "ERR"
        ok = ok and wait_done(agent, read, "READ", args.timeout)
        ok = ok and np.array_equal(buf, pattern(args.size))
        if not ok:
            logger.error("READ: wrong data or failure")

        # WRITE buf into the target's destination (descriptor 1).
        if ok:
            write = agent.make_prepped_xfer(
                "WRITE", local_side, np.array([0]), remote_side,
                np.array([1]), b"WRITE done")
            ok = agent.transfer(write) != "ERR"
            ok = ok and wait_done(agent, write, "WRITE", args.timeout)
            agent.release_xfer_handle(write)
        agent.release_xfer_handle(read)

        verdict = recv_msg(conn)
        send_msg(conn, b"bye")
        ok = ok and verdict == b"ok"

    agent.release_dlist_handle(local_side)
    agent.release_dlist_handle(remote_side)
    agent.remove_remote_agent(remote_name)
    agent.deregister_memory(reg_descs)
    print("initiator: " + ("Test Complete." if ok else "FAILED"), flush=True)
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=("target", "initiator"),
                    default="initiator")
    ap.add_argument("--ip", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5555)
    ap.add_argument("--backend", default="UCX")
    ap.add_argument("--size", type=int, default=1 << 20)
    ap.add_argument("--timeout", type=float, default=20.0)
    args = ap.parse_args()
    return run_target(args) if args.mode == "target" else run_initiator(args)


if __name__ == "__main__":
    sys.exit(main())
