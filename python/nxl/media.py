"""nxl.media: decoded media over NIXL reads (reference/dynamo-components.md
§13): the worker's consumer (``read_decoded_media_via_nixl``), the
content hash, and a producer (Dynamo's frontend) over the C one.

    # frontend (producer)
    producer = MediaProducer()
    media = producer.publish(open("cat.png", "rb").read())   # Pillow decode
    send(media.descriptor)            # RdmaMediaDataDescriptor (a dict)
    # worker (consumer)
    array = await read_decoded_media_via_nixl(connector, descriptor)

The descriptor's JSON is the Rust frontend's (docs/connect.md §1.5); a C
producer (nxl_media_image_create) and this one are interchangeable.
"""

import json
import uuid
import weakref

import nxl
from . import _nxl
from . import connect as nixl_connect

__all__ = ["read_decoded_media_via_nixl", "content_hash", "content_hash_int",
           "MediaProducer", "PublishedMedia", "ImageDecoderLimits",
           "decode_image", "DEFAULT_MAX_ALLOC", "progress_delay_us"]

#: Dynamo's default decoder max_alloc: 128 MiB.
DEFAULT_MAX_ALLOC = _nxl.MEDIA_DEFAULT_MAX_ALLOC

_TORCH_DTYPES = ("uint8", "float32", "int64", "float64")


def progress_delay_us():
    """DYN_MM_NIXL_PROGRESS_DELAY_US as Dynamo reads it (default 1000,
    0 allowed, above 1e6 or unparsable: the default)."""
    return _nxl.media_progress_delay_us()


# ---- consumer --------------------------------------------------------------

async def read_decoded_media_via_nixl(connector, decoded_meta,
                                      return_metadata=False, *,
                                      trim_alpha=True):
    """Read a decoded image (or video) the frontend registered, into a
    new CPU tensor, and return a zero-copy numpy view of it: the alpha
    channel of 4-channel media dropped (``array[..., :3]``, a
    non-contiguous view) unless trim_alpha=False; with
    return_metadata=True, ``(array, decoded_meta["metadata"])``.

    decoded_meta is the RdmaMediaDataDescriptor as a dict (or its JSON
    text). The remote device is "cpu" for mem_type Dram, else
    "cuda:<device_id>"; a fresh notification key is drawn per read."""
    import numpy as np
    import torch

    if isinstance(decoded_meta, (str, bytes, bytearray)):
        decoded_meta = json.loads(decoded_meta)
    desc = decoded_meta["nixl_descriptor"]
    remote_device = ("cpu" if str(desc.get("mem_type", "dram")).lower() ==
                     "dram" else f"cuda:{desc.get('device_id', 0)}")
    md = nixl_connect.RdmaMetadata(
        descriptors=[nixl_connect.SerializedDescriptor(
            device=remote_device, ptr=desc["addr"], size=desc["size"])],
        nixl_metadata=decoded_meta["nixl_metadata"],
        notification_key=str(uuid.uuid4()),
        operation_kind=int(nixl_connect.OperationKind.READ))
    shape = decoded_meta["shape"]
    dtype_str = str(decoded_meta.get("dtype", "uint8")).lower()
    if dtype_str not in _TORCH_DTYPES:
        raise ValueError(f"Unsupported media tensor dtype: {dtype_str!r}")
    # Dynamo's torch.empty(shape, dtype), allocated by numpy: its large
    # allocations are advised for transparent huge pages, so the read
    # faults the destination in ~1/512 as many times (4x faster to fill on
    # a host with THP in "madvise" mode, Debian's default).
    tensor = torch.from_numpy(np.empty(shape, dtype=dtype_str))
    op = await connector.begin_read(md, nixl_connect.Descriptor(tensor))
    with op:
        await op.wait_for_completion()
    array = tensor.numpy()  # zero-copy
    if trim_alpha:
        array = array[..., :3]
    if return_metadata:
        return array, decoded_meta.get("metadata")
    return array


# ---- content hash ----------------------------------------------------------

def content_hash_int(array):
    """Dynamo's media content hash of a uint8 array (int): xxh3-64 over
    len(shape) and each dimension as u64 LE, the dtype byte (UINT8 = 0)
    and the bytes in C order (a non-contiguous view is hashed as its
    contiguous copy)."""
    import numpy as np

    a = np.asarray(array)
    if a.dtype != np.uint8:
        raise ValueError(f"the media hash covers UINT8 tensors only, not "
                         f"{a.dtype}")
    a = np.ascontiguousarray(a)
    return _nxl.media_content_hash(list(a.shape), a.reshape(-1).data)


def content_hash(array):
    """content_hash_int as the descriptor writes it: 16 lowercase hex
    digits (shape [1, 2, 3] over bytes 0..5: "7a9bbcb11a898630")."""
    return f"{content_hash_int(array):016x}"


# ---- producer --------------------------------------------------------------

class ImageDecoderLimits:
    """Dynamo's ImageDecoderLimits: max_image_width and max_image_height
    (None = no limit), max_alloc (bytes of the decoded image, default
    128 MiB; None = no limit)."""

    def __init__(self, max_image_width=None, max_image_height=None,
                 max_alloc=DEFAULT_MAX_ALLOC):
        self.max_image_width = max_image_width
        self.max_image_height = max_image_height
        self.max_alloc = max_alloc

    def _native(self):
        return dict(max_image_width=self.max_image_width or 0,
                    max_image_height=self.max_image_height or 0,
                    max_alloc=self.max_alloc or 0)


# Pillow's format -> the image crate's ImageFormat name (Dynamo's JSON).
_FORMATS = {"PNG": "Png", "JPEG": "Jpeg", "GIF": "Gif", "WEBP": "WebP",
            "PPM": "Pnm", "TIFF": "Tiff", "TGA": "Tga", "DDS": "Dds",
            "BMP": "Bmp", "ICO": "Ico", "HDR": "Hdr", "OPENEXR": "OpenExr",
            "QOI": "Qoi", "AVIF": "Avif"}

# Pillow modes -> channels of the decoded image (what the image crate's
# DynamicImage reports for the same file).
_CHANNELS = {"1": 1, "L": 1, "I": 1, "I;16": 1, "I;16B": 1, "I;16L": 1,
             "F": 1, "LA": 2, "La": 2, "PA": 2, "RGB": 3, "YCbCr": 3,
             "LAB": 3, "HSV": 3, "CMYK": 3, "RGBA": 4, "RGBa": 4, "RGBX": 3}


def _limit_checks(w, h, c, limits):
    # The C producer's checks and texts, before the pixels are decoded.
    mw, mh = limits.max_image_width or 0, limits.max_image_height or 0
    if (mw and w > mw) or (mh and h > mh):
        raise nxl.NotAllowedError(f"Image size exceeds limit: {w}x{h}, "
                                  f"limits {mw}x{mh} (0 = none)")
    if limits.max_alloc and w * h * c > limits.max_alloc:
        raise nxl.NotAllowedError(f"Memory limit exceeded: {w * h * c} "
                                  f"bytes of image, max_alloc "
                                  f"{limits.max_alloc}")


def decode_image(data, limits=None):
    """Decode an encoded image with Pillow as Dynamo's frontend decodes:
    the limits checked from the header before decoding, the channel count
    kept (1..4 -> L8, La8, Rgb8, Rgba8; alpha kept; 16-bit and float
    samples reduced to 8 bits). Returns (HWC uint8 ndarray, format name
    such as "Png")."""
    import io

    import numpy as np
    from PIL import Image

    limits = limits or ImageDecoderLimits()
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the limits above are the policy
    try:
        im = Image.open(io.BytesIO(bytes(data)))
        fmt = _FORMATS.get(im.format or "", im.format.title()
                           if im.format else None)
        w, h = im.size
        mode = im.mode
        if mode == "P":
            mode = "RGBA" if "transparency" in im.info else "RGB"
        elif mode == "PA":
            mode = "RGBA"
        c = _CHANNELS.get(mode)
        if c is None:
            raise nxl.InvalidParamError(
                f"Unsupported channel count {len(im.getbands())}")
        _limit_checks(w, h, c, limits)
        im.load()
    finally:
        Image.MAX_IMAGE_PIXELS = old
    target = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[c]
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255
        arr = np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)
    else:
        if im.mode != target:
            im = im.convert(target)
        arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr), fmt


class PublishedMedia:
    """One decoded image registered for reads: .descriptor (the
    RdmaMediaDataDescriptor dict), .json(), .content_hash, .shape,
    close() (readers must be done)."""

    def __init__(self, producer, native, shape):
        self._producer = producer
        self._native = native
        self.shape = tuple(shape)

    def json(self):
        """The descriptor's JSON (with the agent's current metadata)."""
        return self._native.json()

    @property
    def descriptor(self):
        """The descriptor as a dict (what travels to the worker)."""
        return json.loads(self._native.json())

    @property
    def content_hash(self):
        """16 hex digits."""
        return f"{self._native.hash:016x}"

    @property
    def nbytes(self):
        return self._native.nbytes

    def tobytes(self):
        """A copy of the registered pixels."""
        return self._native.tobytes()

    def close(self):
        """Deregister and free the pixels."""
        self._native.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class MediaProducer:
    """Dynamo's frontend side: decodes images (Pillow) and registers the
    pixels with an agent ("media-loader-<uuid>", progress thread with
    DYN_MM_NIXL_PROGRESS_DELAY_US) through the C producer; readers'
    completion keys are drained and dropped (publish does it; call
    discard_notifications() on an idle producer)."""

    def __init__(self, agent=None, *, backends=None, limits=None):
        self.limits = limits or ImageDecoderLimits()
        self._own = agent is None
        if agent is None:
            agent = nxl.Agent(
                f"media-loader-{uuid.uuid4()}", progress_thread=True,
                progress_delay_us=progress_delay_us(),
                backends=nxl.DEFAULT_BACKENDS if backends is None
                else backends)
        self.agent = agent
        self._published = weakref.WeakSet()

    @property
    def name(self):
        return self.agent.name

    def publish_pixels(self, pixels, format=None):
        """Register an HWC uint8 array (H x W x C, C in 1..4; 2-D = one
        channel) as it is; returns PublishedMedia. Errors: the C
        producer's ("Unsupported channel count N", "Image size exceeds
        limit", "Memory limit exceeded")."""
        import numpy as np

        a = np.asarray(pixels)
        if a.dtype != np.uint8:
            raise ValueError(f"media pixels must be uint8, not {a.dtype}")
        if a.ndim == 2:
            a = a[:, :, None]
        if a.ndim != 3:
            raise ValueError(f"media pixels must be H x W x C, not "
                             f"{a.shape}")
        a = np.ascontiguousarray(a)
        h, w, c = a.shape
        native = _nxl.MediaImage(self.agent, a.reshape(-1).data if a.size
                                 else b"", h, w, c, format,
                                 **self.limits._native())
        self.discard_notifications()
        m = PublishedMedia(self, native, (h, w, c))
        self._published.add(m)
        return m

    def publish(self, data):
        """Decode an encoded image (bytes) and register it."""
        arr, fmt = decode_image(data, self.limits)
        return self.publish_pixels(arr, fmt)

    def discard_notifications(self):
        """Drop the readers' completion keys (Dynamo's frontend does)."""
        _nxl.media_discard_notifs(self.agent)

    def close(self):
        """Close the media still published (readers must be done), then
        the agent if this producer made it."""
        for m in list(self._published):
            m.close()
        if self._own:
            self.agent.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
