"""Cross-check of the metadata format: the independent Python decoder
(tools/md_decode.py) reads the golden blob the C encoder wrote
(tests/data/md_golden_v1.bin) and rejects damaged copies of it."""

import importlib.util
import pathlib
import struct

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = TOP / "tests" / "data" / "md_golden_v1.bin"

_spec = importlib.util.spec_from_file_location(
    "md_decode", TOP / "tools" / "md_decode.py")
md_decode = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(md_decode)


@pytest.fixture(scope="module")
def golden():
    return GOLDEN.read_bytes()


def test_golden_values(golden):
    md = md_decode.decode(golden)
    assert len(golden) == 294
    assert md["version"] == (1, 0)
    assert md["agent"] == "prefill-0"
    assert md["flags"] == 1
    assert [(c["backend"], c["info"]) for c in md["conns"]] == [
        ("UCX", bytes(range(16))),
        ("SHM", b"pid=4121"),
        ("TCP", b""),
    ]
    secs = md["sections"]
    assert [(s["kind_name"], s["backend"], len(s["regions"])) for s in secs] \
        == [("DRAM", "UCX", 2), ("VRAM", "UCX", 1), ("DRAM", "SHM", 1),
            ("FILE", "POSIX", 0)]
    assert secs[0]["regions"] == [
        {"addr": 0x7f0000001000, "len": 0x10000, "dev_id": 0,
         "pub": b"\xaa\xbb\xcc\xdd"},
        {"addr": 0x7f0000200000, "len": 0x200000, "dev_id": 0,
         "pub": bytes([1, 2, 3, 4, 5, 6])},
    ]
    assert secs[1]["regions"] == [
        {"addr": 0x7e0000000000, "len": 0x40000000, "dev_id": 1,
         "pub": b"rk-gpu1"}]
    assert secs[2]["regions"][0]["pub"] == b""


def test_truncated_rejected(golden):
    for cut in range(len(golden)):
        with pytest.raises(md_decode.MdError) as e:
            md_decode.decode(golden[:cut])
        assert e.value.code == "PROTO"


def test_truncated_with_patched_length(golden):
    # The total length patched to the cut: only cuts between top-level
    # fields (after the agent name) decode.
    ends, pos = [], 12
    while pos < len(golden):
        pos += 6 + struct.unpack_from("<I", golden, pos + 2)[0]
        ends.append(pos)
    for cut in range(12, len(golden)):
        blob = golden[:8] + struct.pack("<I", cut) + golden[12:cut]
        if cut in ends and cut >= ends[0]:
            md_decode.decode(blob)
        else:
            with pytest.raises(md_decode.MdError) as e:
                md_decode.decode(blob)
            assert e.value.code == "PROTO"


def test_versions_and_magic(golden):
    future_minor = golden[:6] + struct.pack("<H", 9) + golden[8:]
    assert md_decode.decode(future_minor)["version"] == (1, 9)
    future_major = golden[:4] + struct.pack("<H", 2) + golden[6:]
    with pytest.raises(md_decode.MdError) as e:
        md_decode.decode(future_major)
    assert e.value.code == "NOT_SUPPORTED"
    with pytest.raises(md_decode.MdError) as e:
        md_decode.decode(b"nixlSerDes|" + golden[11:])
    assert e.value.code == "MISMATCH"


def test_unknown_fields_skipped(golden):
    extra = struct.pack("<HI", 0x7777, 3) + b"new"
    blob = bytearray(golden[:12] + extra + golden[12:])
    struct.pack_into("<I", blob, 8, len(blob))
    md = md_decode.decode(bytes(blob))
    assert md == md_decode.decode(golden)


def test_giant_count_rejected(golden):
    # Section FILE/POSIX (the last field) claims 2**32-1 regions.
    blob = golden[:-4] + b"\xff\xff\xff\xff"
    with pytest.raises(md_decode.MdError) as e:
        md_decode.decode(blob)
    assert e.value.code == "PROTO"
