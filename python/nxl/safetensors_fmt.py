"""nxl.safetensors_fmt: the safetensors file format, written from its
documented layout (Debian has no package for the `safetensors` library).

A file is:

    8 bytes      N, the header's size, unsigned little-endian
    N bytes      the header: a UTF-8 JSON object (trailing JSON whitespace
                 allowed; the writer pads it with spaces so that the data
                 starts at a multiple of 8 bytes)
                   {"__metadata__": {"key": "value", ...},      (optional)
                    "<name>": {"dtype": "F32", "shape": [2, 3],
                               "data_offsets": [begin, end]}, ...}
    the rest     the tensors' bytes, little-endian, C order; data_offsets
                 are relative to the byte after the header, and the
                 tensors cover the rest exactly, without gaps or overlap

The writer orders tensors by dtype alignment (largest first), then name,
and writes compact JSON with the fields in the order above, so its output
is byte-identical to the reference implementation's (the tests check the
format's published examples). The reader checks everything before use and
raises SafetensorError naming the reference implementation's error kind.

    save_file({"ec_cache": tensor}, path)     # torch tensors or numpy arrays
    tensors = load_file(path)                 # {name: torch.Tensor} (CPU)
"""

import json
import os
import struct

__all__ = ["SafetensorError", "DTYPES", "serialize", "deserialize",
           "save_file", "load_file", "load", "save", "MAX_HEADER_SIZE"]

#: The largest header the reader accepts (the reference's limit).
MAX_HEADER_SIZE = 100_000_000

#: dtype name -> element size in bytes (the format's dtypes).
DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "F64": 8, "I64": 8, "U64": 8,
}

# Alignment order of the reference writer (its dtype enum order).
_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16",
          "BF16", "I32", "U32", "F32", "F64", "I64", "U64"]


class SafetensorError(ValueError):
    """A file the format refuses; .kind is the reference's error name
    (HeaderTooSmall, InvalidHeaderLength, HeaderTooLarge, InvalidHeader,
    InvalidHeaderStart, InvalidHeaderDeserialization, TensorInvalidInfo,
    ValidationOverflow, InvalidOffset, MetadataIncompleteBuffer,
    InvalidDtype)."""

    def __init__(self, kind, detail=""):
        super().__init__(f"{kind}{': ' + detail if detail else ''}")
        self.kind = kind


# ---- dtypes of torch and numpy -------------------------------------------

def _torch():
    try:
        import torch
        return torch
    except ImportError:  # pragma: no cover
        return None


def _torch_dtypes(torch):
    m = {"BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8,
         "I16": torch.int16, "F16": torch.float16, "BF16": torch.bfloat16,
         "I32": torch.int32, "F32": torch.float32, "F64": torch.float64,
         "I64": torch.int64}
    for name, attr in (("U16", "uint16"), ("U32", "uint32"),
                       ("U64", "uint64"), ("F8_E5M2", "float8_e5m2"),
                       ("F8_E4M3", "float8_e4m3fn")):
        if hasattr(torch, attr):
            m[name] = getattr(torch, attr)
    return m


_NUMPY = {"bool": "BOOL", "uint8": "U8", "int8": "I8", "int16": "I16",
          "uint16": "U16", "float16": "F16", "int32": "I32",
          "uint32": "U32", "float32": "F32", "float64": "F64",
          "int64": "I64", "uint64": "U64"}


def _as_bytes(obj):
    """(dtype name, shape, bytes-like) of a torch tensor or numpy array."""
    torch = _torch()
    if torch is not None and isinstance(obj, torch.Tensor):
        rev = {v: k for k, v in _torch_dtypes(torch).items()}
        if obj.dtype not in rev:
            raise SafetensorError("InvalidDtype", str(obj.dtype))
        t = obj.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        shape = list(t.shape)
        if t.numel() == 0:
            return rev[obj.dtype], shape, b""
        return rev[obj.dtype], shape, memoryview(
            t.reshape(-1).view(torch.uint8).numpy())
    import numpy as np
    a = np.ascontiguousarray(obj)
    name = _NUMPY.get(a.dtype.name)
    if name is None or a.dtype.byteorder == ">":
        raise SafetensorError("InvalidDtype", str(a.dtype))
    return name, list(a.shape), memoryview(a.reshape(-1).view(np.uint8))


# ---- writing -------------------------------------------------------------

def _layout(tensors, metadata):
    """The header bytes (padded) and the ordered (name, bytes) list."""
    items = []
    for name, obj in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise SafetensorError("InvalidHeader", f"bad tensor name {name!r}")
        dt, shape, data = _as_bytes(obj)
        items.append((name, dt, shape, data))
    items.sort(key=lambda it: (-_ORDER.index(it[1]), it[0]))
    header = {}
    if metadata is not None:
        if not all(isinstance(k, str) and isinstance(v, str)
                   for k, v in metadata.items()):
            raise SafetensorError("InvalidHeader",
                                  "__metadata__ must map str to str")
        header["__metadata__"] = dict(metadata)
    off = 0
    for name, dt, shape, data in items:
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        header[name] = {"dtype": dt, "shape": shape,
                        "data_offsets": [off, off + n]}
        off += n
    text = json.dumps(header, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - (len(text) + 8) % 8) % 8)
    return struct.pack("<Q", len(text)) + text, [(it[0], it[3])
                                                   for it in items]


def serialize(tensors, metadata=None) -> bytes:
    """The bytes of a safetensors file holding tensors ({name: tensor or
    array}) and optional metadata ({str: str})."""
    head, items = _layout(tensors, metadata)
    return head + b"".join(bytes(d) for _, d in items)


def save_file(tensors, path, metadata=None) -> None:
    """Write tensors to path as a safetensors file (no intermediate copy
    of the tensors' bytes)."""
    head, items = _layout(tensors, metadata)
    with open(path, "wb") as f:
        f.write(head)
        for _, d in items:
            f.write(d)


save = serialize


# ---- reading -------------------------------------------------------------

def _parse(buf):
    """(header dict without __metadata__, metadata or None, data offset)
    of buf (bytes-like), fully validated."""
    mv = memoryview(buf)
    if mv.nbytes < 8:
        raise SafetensorError("HeaderTooSmall")
    (n,) = struct.unpack_from("<Q", mv, 0)
    if n > MAX_HEADER_SIZE:
        raise SafetensorError("HeaderTooLarge", f"{n} bytes")
    if 8 + n > mv.nbytes:
        raise SafetensorError("InvalidHeaderLength",
                              f"{n} bytes announced, {mv.nbytes - 8} there")
    try:
        text = bytes(mv[8:8 + n]).decode("utf-8")
    except UnicodeDecodeError:
        raise SafetensorError("InvalidHeader", "not UTF-8") from None
    if not text.startswith("{"):
        raise SafetensorError("InvalidHeaderStart", "must start with '{'")
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as e:
        raise SafetensorError("InvalidHeaderDeserialization", str(e)) \
            from None
    if not isinstance(header, dict):
        raise SafetensorError("InvalidHeaderDeserialization", "not an object")
    meta = header.pop("__metadata__", None)
    if meta is not None and not (isinstance(meta, dict) and all(
            isinstance(v, str) for v in meta.values())):
        raise SafetensorError("InvalidHeaderDeserialization",
                              "__metadata__ must map str to str")
    entries = []
    for name, info in header.items():
        if (not isinstance(info, dict) or
                set(info) != {"dtype", "shape", "data_offsets"}):
            raise SafetensorError("InvalidHeaderDeserialization",
                                  f"tensor {name!r}: want exactly dtype, "
                                  f"shape, data_offsets")
        dt, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if dt not in DTYPES:
            raise SafetensorError("InvalidHeaderDeserialization",
                                  f"tensor {name!r}: unknown dtype {dt!r}")
        if (not isinstance(shape, list) or not all(
                _uint(d) for d in shape) or not isinstance(offs, list) or
                len(offs) != 2 or not all(_uint(o) for o in offs)):
            raise SafetensorError("InvalidHeaderDeserialization",
                                  f"tensor {name!r}: bad shape or offsets")
        entries.append((offs[0], offs[1], name, dt, shape))
    entries.sort(key=lambda e: (e[0], e[1]))
    start = 0
    for begin, end, name, dt, shape in entries:
        if begin != start or end < begin:
            raise SafetensorError("InvalidOffset", name)
        count = 1
        for d in shape:
            count *= d
            if count >= 1 << 64:
                raise SafetensorError("ValidationOverflow", name)
        nbytes = count * DTYPES[dt]
        if nbytes >= 1 << 64:
            raise SafetensorError("ValidationOverflow", name)
        if end - begin != nbytes:
            raise SafetensorError("TensorInvalidInfo", name)
        start = end
    if 8 + n + start != mv.nbytes:
        raise SafetensorError("MetadataIncompleteBuffer",
                              f"tensors cover {start} bytes, the buffer has "
                              f"{mv.nbytes - 8 - n}")
    tensors = {name: (dt, shape, begin, end)
               for begin, end, name, dt, shape in entries}
    return tensors, meta, 8 + n


def _uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def deserialize(buf):
    """({name: (dtype, shape, memoryview of its bytes)}, metadata or
    None) of a safetensors file's bytes; raises SafetensorError."""
    tensors, meta, base = _parse(buf)
    mv = memoryview(buf)
    return ({name: (dt, shape, mv[base + b:base + e])
             for name, (dt, shape, b, e) in tensors.items()}, meta)


def load(buf):
    """{name: torch.Tensor} from a safetensors file's bytes (the tensors
    share buf's memory when it is writable, else copy it)."""
    torch = _torch()
    tmap = _torch_dtypes(torch)
    tensors, meta, base = _parse(buf)
    if isinstance(buf, bytes):
        buf = bytearray(buf)
    out = {}
    for name, (dt, shape, b, e) in tensors.items():
        if dt not in tmap:
            raise SafetensorError("InvalidDtype", f"{dt} has no torch dtype")
        count = (e - b) // DTYPES[dt]
        if count == 0:
            out[name] = torch.empty(shape, dtype=tmap[dt])
        else:
            out[name] = torch.frombuffer(buf, dtype=tmap[dt], count=count,
                                         offset=base + b).reshape(shape)
    return out


def load_file(path, device="cpu"):
    """{name: torch.Tensor} of a safetensors file (read into one buffer
    the tensors share)."""
    size = os.path.getsize(path)
    buf = bytearray(size)
    with open(path, "rb", buffering=0) as f:
        mv = memoryview(buf)
        got = 0
        while got < size:
            n = f.readinto(mv[got:])
            if not n:
                raise SafetensorError("MetadataIncompleteBuffer",
                                      "file shrank while reading")
            got += n
    out = load(buf)
    if device != "cpu":
        out = {k: v.to(device) for k, v in out.items()}
    return out
