#!/usr/bin/env python3
"""md_decode.py - an independent decoder of NXL agent metadata (format 1.x).

Written from docs/metadata-format.md alone, as a cross-check of the C codec
(zstd's "educational decoder" idea). Python 3 standard library only.

    python3 tools/md_decode.py FILE        # prints the metadata as JSON

    import md_decode
    md = md_decode.decode(blob)            # dict, or raises MdError
"""

import json
import struct
import sys

MAGIC = b"NXMD"
MAJOR = 1
HEADER_SIZE = 12
FIELD_HEADER = 6
REGION_FIXED = 28
MEM_KINDS = ("DRAM", "VRAM", "BLK", "OBJ", "FILE")

TAG_AGENT = 0x0001
TAG_FLAGS = 0x0002
TAG_CONN = 0x0003
TAG_SECTION = 0x0004


class MdError(Exception):
    """A blob the spec rejects. code is MISMATCH, NOT_SUPPORTED or PROTO,
    as the spec's decoder rules name them."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


def _proto(message):
    return MdError("PROTO", message)


class _Reader:
    """Bounds-checked little-endian reader over data[pos:end]."""

    def __init__(self, data, pos, end, what):
        self.data, self.pos, self.end, self.what = data, pos, end, what

    def left(self):
        return self.end - self.pos

    def take(self, n, item):
        if n > self.left():
            raise _proto(f"{self.what}: {item} truncated at byte {self.pos}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def u8(self, item):
        return self.take(1, item)[0]

    def u32(self, item):
        return struct.unpack("<I", self.take(4, item))[0]

    def u64(self, item):
        return struct.unpack("<Q", self.take(8, item))[0]

    def name(self, item):
        n = self.u8(item)
        return _check_name(self.take(n, item), f"{self.what}: {item}")

    def skip_extensions(self):
        """Extension fields fill the rest of a CONN/SECTION payload."""
        while self.left() > 0:
            if self.left() < FIELD_HEADER:
                raise _proto(f"{self.what}: extension field header "
                             f"truncated at byte {self.pos}")
            _tag, length = struct.unpack_from("<HI", self.data, self.pos)
            self.pos += FIELD_HEADER
            if length > self.left():
                raise _proto(f"{self.what}: extension field length {length} "
                             f"exceeds the {self.left()} bytes left")
            self.pos += length


def _check_name(raw, what):
    if not 1 <= len(raw) <= 255:
        raise _proto(f"{what}: name of {len(raw)} bytes (must be 1..255)")
    if b"\0" in raw:
        raise _proto(f"{what}: NUL inside the name")
    return raw.decode("utf-8", errors="surrogateescape")


def _conn(data, start, end, index):
    r = _Reader(data, start, end, f"conn {index}")
    backend = r.name("backend name")
    info = r.take(r.u32("info length"), "info")
    r.skip_extensions()
    return {"backend": backend, "info": bytes(info)}


def _section(data, start, end, index):
    r = _Reader(data, start, end, f"section {index}")
    kind = r.u8("memory kind")
    if kind >= len(MEM_KINDS):
        raise _proto(f"section {index}: memory kind {kind}")
    backend = r.name("backend name")
    count = r.u32("region count")
    if count * REGION_FIXED > r.left():
        raise _proto(f"section {index}: {count} regions need at least "
                     f"{count * REGION_FIXED} bytes, {r.left()} left")
    regions = []
    for i in range(count):
        item = f"region {i}"
        addr, length, dev_id = r.u64(item), r.u64(item), r.u64(item)
        pub = r.take(r.u32(item), item)
        regions.append({"addr": addr, "len": length, "dev_id": dev_id,
                        "pub": bytes(pub)})
    r.skip_extensions()
    return {"kind": kind, "kind_name": MEM_KINDS[kind], "backend": backend,
            "regions": regions}


def decode(blob):
    """Decode one metadata blob into a dict with keys version, agent, flags,
    conns (list of {backend, info}) and sections (list of {kind, kind_name,
    backend, regions: [{addr, len, dev_id, pub}]}). Raises MdError."""
    data = bytes(blob)
    if len(data) < 4:
        raise _proto(f"blob of {len(data)} bytes is shorter than the header")
    if data[:4] != MAGIC:
        raise MdError("MISMATCH", f"bad magic {data[:4].hex()}")
    if len(data) < 6:
        raise _proto(f"blob of {len(data)} bytes is shorter than the header")
    major = struct.unpack_from("<H", data, 4)[0]
    if major != MAJOR:
        raise MdError("NOT_SUPPORTED", f"format version {major}.x")
    if len(data) < HEADER_SIZE:
        raise _proto(f"blob of {len(data)} bytes is shorter than the header")
    minor, total = struct.unpack_from("<HI", data, 6)
    if total != len(data):
        raise _proto(f"header says {total} bytes, blob has {len(data)}")

    md = {"version": (major, minor), "agent": None, "flags": 0,
          "conns": [], "sections": []}
    have_flags = False
    pos = HEADER_SIZE
    while pos < len(data):
        if len(data) - pos < FIELD_HEADER:
            raise _proto(f"field header truncated at byte {pos}")
        tag, length = struct.unpack_from("<HI", data, pos)
        start = pos + FIELD_HEADER
        end = start + length
        if end > len(data):
            raise _proto(f"field 0x{tag:04x} at byte {pos}: length {length} "
                         f"exceeds the {len(data) - start} bytes left")
        if tag == TAG_AGENT:
            if md["agent"] is not None:
                raise _proto("second agent name field")
            md["agent"] = _check_name(data[start:end], "agent")
        elif tag == TAG_FLAGS:
            if have_flags:
                raise _proto("second flags field")
            if length != 4:
                raise _proto(f"flags field of length {length}")
            md["flags"] = struct.unpack_from("<I", data, start)[0]
            have_flags = True
        elif tag == TAG_CONN:
            md["conns"].append(_conn(data, start, end, len(md["conns"])))
        elif tag == TAG_SECTION:
            md["sections"].append(
                _section(data, start, end, len(md["sections"])))
        # any other tag: skipped (forward compatibility)
        pos = end
    if md["agent"] is None:
        raise _proto("no agent name field")
    return md


def _jsonable(value):
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


USAGE = """usage: md_decode.py FILE|-
Decodes an NXL agent metadata blob (docs/metadata-format.md: what
nxl_md_local / nxl_md_local_partial produce and nxl_md_load reads) with an
implementation independent of the C library, and prints it as JSON: the
agent's name and flags, each backend's connection info, and each memory
kind's regions with their public data (hex). '-' reads standard input.
Exit status: 0 decoded, 1 malformed, 2 usage."""


def main(argv):
    if len(argv) == 2 and argv[1] in ("-h", "--help"):
        print(USAGE)
        return 0
    if len(argv) != 2:
        print(USAGE, file=sys.stderr)
        return 2
    if argv[1] == "-":
        blob = sys.stdin.buffer.read()
    else:
        with open(argv[1], "rb") as f:
            blob = f.read()
    try:
        md = decode(blob)
    except MdError as e:
        print(f"md_decode: {e}", file=sys.stderr)
        return 1
    print(json.dumps(_jsonable(md), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
