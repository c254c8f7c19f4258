"""nxl.media: the §13.1 content hash (and the C producer's), decoding with
Pillow (channel counts 1-4, formats, limits and their texts), the worker's
read_decoded_media_via_nixl (alpha dropped from 4-channel images as a
zero-copy view, return_metadata), and images exchanged between a C
producer and a Python consumer and the reverse over SHM, TCP and UCX."""

import asyncio
import io
import json

import numpy as np
import pytest

import nxl
from nxl import _nxl
from nxl import connect as nc
from nxl import media

from connect_peers import CPeer, backend_arg, bytes_hash, pattern

PIL = pytest.importorskip("PIL.Image")


def run(coro):
    return asyncio.run(coro)


def encode(arr, mode, fmt="PNG", **kw):
    buf = io.BytesIO()
    im = PIL.fromarray(arr, mode) if arr is not None else kw.pop("image")
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def test_content_hash_vector():
    a = np.arange(6, dtype=np.uint8).reshape(1, 2, 3)
    assert media.content_hash(a) == "7a9bbcb11a898630"
    assert media.content_hash_int(a) == 0x7a9bbcb11a898630
    rgba = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    view = rgba[..., :3]                          # non-contiguous
    assert media.content_hash(view) == media.content_hash(
        np.ascontiguousarray(view))
    assert media.content_hash(view) != media.content_hash(
        np.ascontiguousarray(view).reshape(6, 3))  # the shape counts
    with pytest.raises(ValueError, match="UINT8"):
        media.content_hash(np.zeros(3, np.float32))


@pytest.mark.parametrize("mode,channels,color", [
    ("L", 1, "L8"), ("LA", 2, "La8"), ("RGB", 3, "Rgb8"),
    ("RGBA", 4, "Rgba8")])
def test_decode_channels_and_publish(mode, channels, color):
    rng = np.random.default_rng(channels)
    shape = (17, 23) if channels == 1 else (17, 23, channels)
    px = rng.integers(0, 256, shape, dtype=np.uint8)
    arr, fmt = media.decode_image(encode(px, mode))
    assert fmt == "Png" and arr.shape == (17, 23, channels)
    assert np.array_equal(arr.reshape(shape), px)   # alpha kept
    with media.MediaProducer(backends=("SHM",)) as prod:
        with prod.publish(encode(px, mode)) as m:
            d = m.descriptor
            assert d["shape"] == [17, 23, channels] and d["dtype"] == "UINT8"
            assert d["metadata"] == {"Image": {"format": "Png",
                                               "color_type": color,
                                               "layout": "HWC"}}
            assert d["content_hash"] == media.content_hash(arr)
            assert d["nixl_descriptor"]["mem_type"] == "Dram"
            assert d["nixl_descriptor"]["size"] == arr.nbytes
            assert m.tobytes() == arr.tobytes()
            c = _nxl.media_desc_decode(m.json())    # the C decoder agrees
            assert c["content_hash"] == int(d["content_hash"], 16)
            assert json.loads(c["metadata_json"]) == d["metadata"]


def test_decode_formats_palette_and_16bit():
    px = np.zeros((8, 8, 3), np.uint8)
    px[2:5, 3:6] = (200, 10, 30)
    arr, fmt = media.decode_image(encode(px, "RGB", "JPEG", quality=95))
    assert fmt == "Jpeg" and arr.shape == (8, 8, 3)
    arr, fmt = media.decode_image(encode(px, "RGB", "BMP"))
    assert fmt == "Bmp" and np.array_equal(arr, px)
    pal = PIL.fromarray(px, "RGB").convert("P")
    arr, _ = media.decode_image(encode(None, None, image=pal))
    assert arr.shape == (8, 8, 3)                 # palette -> Rgb8
    pal.info["transparency"] = 0
    arr, _ = media.decode_image(encode(None, None, image=pal,
                                       transparency=0))
    assert arr.shape == (8, 8, 4)                 # with alpha -> Rgba8
    deep = PIL.fromarray(np.full((4, 4), 65535, np.uint16), "I;16")
    arr, _ = media.decode_image(encode(None, None, image=deep))
    assert arr.shape == (4, 4, 1) and (arr == 255).all()


def test_limits_and_channel_count_texts():
    png = encode(np.zeros((40, 30, 3), np.uint8), "RGB")
    with pytest.raises(nxl.NotAllowedError, match="Image size exceeds "
                                                  "limit"):
        media.decode_image(png, media.ImageDecoderLimits(max_image_width=29))
    with pytest.raises(nxl.NotAllowedError, match="Image size exceeds "
                                                  "limit"):
        media.decode_image(png, media.ImageDecoderLimits(
            max_image_height=39))
    with pytest.raises(nxl.NotAllowedError, match="Memory limit exceeded: "
                                                  "3600 bytes"):
        media.decode_image(png, media.ImageDecoderLimits(max_alloc=3599))
    assert media.decode_image(png, media.ImageDecoderLimits(
        max_image_width=30, max_image_height=40, max_alloc=3600))[0].shape \
        == (40, 30, 3)
    assert media.DEFAULT_MAX_ALLOC == 128 << 20
    with media.MediaProducer(backends=("SHM",)) as prod:
        with pytest.raises(nxl.InvalidParamError,
                           match="^Unsupported channel count 5$"):
            prod.publish_pixels(np.zeros((2, 2, 5), np.uint8))
        prod.limits = media.ImageDecoderLimits(max_alloc=11)
        with pytest.raises(nxl.NotAllowedError, match="Memory limit "
                                                      "exceeded"):
            prod.publish_pixels(np.zeros((2, 2, 3), np.uint8))
        prod.limits = media.ImageDecoderLimits(max_image_height=1)
        with pytest.raises(nxl.NotAllowedError, match="Image size exceeds"):
            prod.publish_pixels(np.zeros((2, 2, 3), np.uint8))


def test_progress_delay_env(monkeypatch):
    for v, want in (("0", 0), ("250", 250), ("1000001", 1000),
                    ("abc", 1000)):
        monkeypatch.setenv("DYN_MM_NIXL_PROGRESS_DELAY_US", v)
        assert media.progress_delay_us() == want
    monkeypatch.delenv("DYN_MM_NIXL_PROGRESS_DELAY_US")
    assert media.progress_delay_us() == 1000


def test_read_decoded_media_in_process():
    rgba = pattern(31 * 47 * 4, 3).reshape(31, 47, 4)
    gray = pattern(31 * 47, 4).reshape(31, 47, 1)
    conn = nc.Connector("worker", backends=("SHM",))

    async def go():
        with media.MediaProducer(backends=("SHM",)) as prod:
            m4 = prod.publish_pixels(rgba, "Png")
            m1 = prod.publish_pixels(gray, "Png")
            arr = await media.read_decoded_media_via_nixl(conn, m4.descriptor)
            assert arr.shape == (31, 47, 3) and not arr.flags.c_contiguous
            assert np.array_equal(arr, rgba[..., :3])
            assert arr.base is not None           # a view, no copy
            full, meta = await media.read_decoded_media_via_nixl(
                conn, m4.json(), return_metadata=True, trim_alpha=False)
            assert np.array_equal(full, rgba)
            assert meta["Image"]["color_type"] == "Rgba8"
            one = await media.read_decoded_media_via_nixl(conn,
                                                          m1.descriptor)
            assert one.shape == (31, 47, 1) and np.array_equal(one, gray)
            bad = dict(m1.descriptor, dtype="complex64")
            with pytest.raises(ValueError, match="Unsupported media tensor "
                                                 "dtype"):
                await media.read_decoded_media_via_nixl(conn, bad)
            m4.close()
            m1.close()
            prod.discard_notifications()
        info = conn._connection_now().info()
        assert info["regs"] == 0 and info["remotes"] == 0 and \
            info["ops"] == 0
    run(go())
    conn.close()


@pytest.mark.parametrize("be", ["SHM", "TCP", "UCX"])
def test_c_producer_python_consumer_and_reverse(be):
    if be not in nxl.plugin_names():
        pytest.skip(f"backend {be} is not built here "
                    f"(nxl.plugin_names() = {nxl.plugin_names()})")
    h, w = 120, 160
    conn = nc.Connector(f"media-{be}", backends=backend_arg(be))

    async def go():
        # C producer (nxl_media_image_create) -> Python consumer.
        c = CPeer(be, "media", h, w, 4, 77)
        d = c.json()
        arr = await media.read_decoded_media_via_nixl(conn, d,
                                                      trim_alpha=False)
        want = pattern(h * w * 4, 77).reshape(h, w, 4)
        assert np.array_equal(arr, want)
        assert d["content_hash"] == media.content_hash(arr)
        assert d["metadata"]["Image"]["color_type"] == "Rgba8"
        rgb = await media.read_decoded_media_via_nixl(conn, d)
        assert np.array_equal(rgb, want[..., :3])
        assert c.finish() == []
        # Python producer -> C consumer (nxl_media_read_begin).
        px = pattern(h * w * 3, 78).reshape(h, w, 3)
        with media.MediaProducer(backends=backend_arg(be)) as prod:
            with prod.publish_pixels(px, "Jpeg") as m:
                c = CPeer(be, "media-read", px.nbytes)
                c.send(m.json())
                assert c.finish() == [f"HASH {bytes_hash(px)}"]
    run(go())
    conn.close()
