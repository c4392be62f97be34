import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from tryon.images import ImageError, decode, encode, exif_orientation, header_size, load_rgb


def _png(rgb):
    return encode(rgb, ".png")


def test_rgb_png_round_trip_keeps_channel_order():
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200  # red
    out = decode(_png(rgb))
    assert out.shape == (20, 30, 3) and out[0, 0].tolist() == [200, 0, 0]


def test_grayscale_16bit_and_rgba_become_rgb_uint8():
    gray16 = np.full((20, 20), 65535, np.uint16)
    ok, buf = cv2.imencode(".png", gray16)
    out = decode(buf.tobytes())
    assert out.dtype == np.uint8 and out.shape == (20, 20, 3) and (out == 255).all()
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent on the left half
    rgba[:, 10:, 3] = 255
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    out = decode(buf.tobytes())
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 15].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied():
    rgb = np.zeros((20, 40, 3), np.uint8)
    ok, jpg = cv2.imencode(".jpg", rgb)
    jpg = jpg.tobytes()
    # An APP1 Exif segment with Orientation = 6 (rotate 90 degrees clockwise).
    tiff = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + b"\x00" * 4
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff)) + b"Exif\x00\x00" + tiff
    out = decode(jpg[:2] + app1 + jpg[2:])
    assert out.shape == (40, 20, 3)


def test_arrays_are_accepted_and_validated():
    assert load_rgb(np.zeros((20, 20), np.uint8)).shape == (20, 20, 3)
    with pytest.raises(ImageError, match="pixel type float32"):
        load_rgb(np.zeros((20, 20, 3), np.float32))
    with pytest.raises(ImageError, match="too small"):
        load_rgb(np.zeros((4, 20, 3), np.uint8))
    with pytest.raises(ImageError, match="not an image"):
        load_rgb(np.zeros((20, 20, 5), np.uint8))


def test_garbage_truncated_and_missing_inputs_say_what_is_accepted(tmp_path):
    with pytest.raises(ImageError, match="JPEG, PNG, BMP or WebP"):
        decode(b"hello world, not an image")
    png = _png(np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(ImageError, match="corrupt or truncated"):
        decode(png[:60])
    with pytest.raises(ImageError, match="no such file"):
        load_rgb(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="expected a path"):
        load_rgb(3.5)


def test_decompression_bomb_is_refused_before_decoding():
    png = bytearray(_png(np.zeros((20, 20, 3), np.uint8)))
    png[16:24] = struct.pack(">II", 100_000, 100_000)  # header claims 10 gigapixels
    with pytest.raises(ImageError, match="over the limit"):
        decode(bytes(png))
    jpg = cv2.imencode(".jpg", np.zeros((300, 200, 3), np.uint8))[1].tobytes()
    with pytest.raises(ImageError, match="200x300 pixels"):
        decode(jpg, max_pixels=1000)


def _os2_bmp(rgb):
    """An OS/2 1.x BMP: the 12-byte BITMAPCOREHEADER, whose width and height are 16-bit."""
    h, w, _ = rgb.shape
    row = (w * 3 + 3) // 4 * 4
    pixels = b"".join(rgb[y, :, ::-1].tobytes().ljust(row, b"\0") for y in range(h - 1, -1, -1))
    offset = 14 + 12
    return (b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
            + struct.pack("<IHHHH", 12, w, h, 1, 24) + pixels)


def test_os2_bmp_is_decoded_with_its_own_size():
    rgb = np.random.default_rng(0).integers(0, 256, (20, 31, 3), dtype=np.uint8)
    data = _os2_bmp(rgb)
    assert header_size(data, "bmp") == (31, 20)
    np.testing.assert_array_equal(decode(data), rgb)
    with pytest.raises(ImageError, match="31x20 pixels"):
        decode(data, max_pixels=600)


def _asymmetric():
    """20x40 RGB whose every flip and transpose looks different."""
    return np.random.default_rng(1).integers(0, 256, (20, 40, 3), dtype=np.uint8)


def _with_orientation(rgb, fmt, orientation):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, fmt, exif=exif.tobytes(), **({"lossless": True} if fmt == "WEBP" else {}))
    return out.getvalue()


def _as_a_viewer_shows(data):
    from PIL import Image, ImageOps

    return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_of_png_and_webp_is_applied_as_a_viewer_shows_it(fmt, orientation):
    data = _with_orientation(_asymmetric(), fmt, orientation)
    assert exif_orientation(data, fmt.lower()) == orientation
    np.testing.assert_array_equal(decode(data), _as_a_viewer_shows(data))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_orientation_is_what_opencv_and_viewers_give(orientation):
    data = _with_orientation(_asymmetric(), "JPEG", orientation)
    opencv = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(decode(data), opencv)  # today's behaviour, now from our own parser
    np.testing.assert_array_equal(decode(data), _as_a_viewer_shows(data))


def test_hand_written_png_exif_chunk_with_alpha_kept():
    """An eXIf chunk written by hand (little-endian TIFF, after IDAT, with JPEG's Exif prefix as some
    writers leave it), on an RGBA image: rotated and still composited over white."""
    rgba = np.zeros((20, 40, 4), np.uint8)
    rgba[:, :10] = (255, 0, 0, 255)  # opaque red on the left, transparent elsewhere
    png = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))[1].tobytes()
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 8, 0) + b"\x00" * 4
    payload = b"Exif\x00\x00" + tiff
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload + struct.pack(">I", zlib.crc32(b"eXIf" + payload))
    out = decode(png[:-12] + chunk + png[-12:])  # before IEND
    assert out.shape == (40, 20, 3)  # 8: rotated 90 degrees counter-clockwise
    assert out[-1, 0].tolist() == [255, 0, 0] and out[0, 0].tolist() == [255, 255, 255]


def test_broken_exif_is_ignored():
    jpg = cv2.imencode(".jpg", np.zeros((20, 40, 3), np.uint8))[1].tobytes()
    for tiff in (b"MM\x00*\x00\x00\x00\x08\x00\x05", b"XX\x00*", b"MM\x00*" + struct.pack(">I", 10**6)):
        app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff)) + b"Exif\x00\x00" + tiff
        assert decode(jpg[:2] + app1 + jpg[2:]).shape == (20, 40, 3)


@pytest.mark.parametrize("shape, dtype", [((3000, 700, 4), np.uint16), ((2100, 900, 4), np.uint8),
                                          ((1800, 1300), np.uint16), ((1500, 800, 3), np.uint16)])
def test_band_by_band_conversion_equals_the_whole_image_formula(shape, dtype):
    """16-bit, gray and RGBA are converted in bands of rows (memory); the pixels are those of
    the formula applied to the whole image at once."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    whole = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8) if dtype == np.uint16 else image
    if whole.ndim == 2:
        whole = np.repeat(whole[:, :, None], 3, axis=2)
    if whole.shape[2] == 4:
        alpha, rgb = whole[:, :, 3:4].astype(np.uint16), whole[:, :, :3].astype(np.uint16)
        whole = ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    assert image.shape[0] * image.shape[1] > (1 << 20)  # more than one band
    assert np.array_equal(load_rgb(image), whole)
