"""Turns whatever a user hands us (path, bytes, array) into an HxWx3 uint8 RGB array.

Handled: JPEG/PNG/BMP/WebP files, EXIF orientation (JPEG, PNG and WebP, as a viewer
shows the photo), grayscale, alpha (composited over white, the colour a garment
photo's background is), 16-bit. Refused with an `ImageError` that says what is
accepted: anything else, and pixel counts large enough to be decompression bombs
(checked from the header before decoding).

JPEG is decoded with the accurate integer DCT (what OpenCV and PIL give) unless
`jpeg_dct="fast"` asks for what TensorFlow's `decode_jpeg` gives with its defaults, the
decode in LIP_JPPNet's reader. EXIF orientation is applied either way.
"""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from .errors import EXIT_BAD_INPUT, InputError, RuntimeSetupError
from .files import write_atomically

MAX_PIXELS = 40_000_000  # a 40 MP phone photo is the largest sane input
MIN_SIDE = 16
FORMATS = "JPEG, PNG, BMP or WebP"
BAND_PIXELS = 1 << 20  # pixels converted at a time from 16-bit, gray or RGBA
JPEG_DCTS = ("accurate", "fast")
ORIENTATION_TAG = 0x0112
SIGNATURES = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png", b"BM": "bmp"}  # WebP: RIFF, then WEBP


class ImageError(InputError):
    """The input is not an image we accept; the message says what is."""
    exit_code, http_status = EXIT_BAD_INPUT, 422


class UnsupportedFormat(ImageError):
    """Not one of the formats we decode."""
    exit_code, http_status = EXIT_BAD_INPUT, 415


class TooManyPixels(ImageError):
    """The header announces more pixels than the limit (a decompression bomb, or a mistake)."""
    exit_code, http_status = EXIT_BAD_INPUT, 413


def load_rgb(source, what: str = "image", max_pixels: int = MAX_PIXELS, jpeg_dct: str = "accurate") -> np.ndarray:
    """jpeg_dct: "accurate" (OpenCV's decode) or "fast" (TensorFlow's decode_jpeg, bit for bit;
    needs simplejpeg). Only JPEG files are affected."""
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, what)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{what}: no such file {path}")
        source = path.read_bytes()
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode(bytes(source), what, max_pixels, jpeg_dct)
    raise ImageError(f"{what}: expected a path, bytes or a numpy array, got {type(source).__name__}")


def check_header(data: bytes, what: str = "image", max_pixels: int = MAX_PIXELS) -> str:
    """The format of `data`, after refusing unknown formats and pixel counts over the
    limit from the header alone, before anything is decoded."""
    kind = sniff_format(data)
    if kind is None:
        raise UnsupportedFormat(f"{what}: not a {FORMATS} file")
    try:
        size = header_size(data, kind)
    except ImageError as exc:
        raise ImageError(f"{what}: {exc}") from None
    if size is None:  # no size, no pixel limit: refused rather than decoded blind
        raise ImageError(f"{what}: the {kind.upper()} data has no frame header giving its size "
                         "(corrupt or truncated)")
    if size[0] * size[1] > max_pixels:
        raise TooManyPixels(f"{what}: {size[0]}x{size[1]} pixels is over the limit of {max_pixels:,} pixels")
    return kind


def decode(data: bytes, what: str = "image", max_pixels: int = MAX_PIXELS, jpeg_dct: str = "accurate") -> np.ndarray:
    if jpeg_dct not in JPEG_DCTS:
        raise InputError(f"jpeg_dct must be one of {', '.join(JPEG_DCTS)}, got {jpeg_dct!r}")
    kind = check_header(data, what, max_pixels)
    if kind == "jpeg" and jpeg_dct == "fast":
        image = _decode_jpeg_like_tensorflow(data, what)
    else:
        image = _decode_opencv(data, kind, what)
    return _array_to_rgb(_orient(image, exif_orientation(data, kind)), what)


def _decode_opencv(data: bytes, kind: str, what: str) -> np.ndarray:
    """RGB(A) as stored. The caller applies the orientation, one way for every format and decoder:
    OpenCV skips its own whenever alpha is kept, and reads PNG's and WebP's only in recent versions."""
    buf = np.frombuffer(data, np.uint8)
    # Only PNG and WebP carry alpha (a 32-bit BMP's fourth byte is usually padding, not alpha).
    flags = (cv2.IMREAD_UNCHANGED if kind in ("png", "webp")
             else cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION)
    image = cv2.imdecode(buf, flags)
    if image is None:
        raise ImageError(f"{what}: the {kind.upper()} data is corrupt or truncated")
    if image.ndim == 3 and image.shape[2] >= 3:  # in place: a 40 MP 16-bit RGBA photo is 320 MB
        cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB, dst=image)
    return image


def _decode_jpeg_like_tensorflow(data: bytes, what: str) -> np.ndarray:
    """tf.image.decode_jpeg(data, channels=3) with its defaults: the fast integer DCT (JDCT_IFAST)
    and fancy upsampling, through the same libjpeg-turbo code paths; CMYK converted as TF does."""
    try:
        import simplejpeg
    except ImportError:
        raise RuntimeSetupError("jpeg_dct='fast' decodes with simplejpeg, which is not installed: "
                                "pip install 'tryon-onnx[fastdct]'") from None
    try:
        if simplejpeg.decode_jpeg_header(data)[2] != "CMYK":
            return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=False)
        cmyk = simplejpeg.decode_jpeg(data, colorspace="CMYK", fastdct=True, fastupsample=False)
    except ValueError as exc:
        raise ImageError(f"{what}: the JPEG data is corrupt or truncated ({exc})") from None
    # TF's own conversion: an Adobe APP14 marker means inverted inks (what Photoshop writes).
    adobe = any(marker == 0xEE and payload.startswith(b"Adobe") for marker, payload in _jpeg_segments(data))
    ink = cmyk.astype(np.uint16) if adobe else 255 - cmyk.astype(np.uint16)
    return (ink[..., :3] * ink[..., 3:] // 255).astype(np.uint8)


def exif_orientation(data: bytes, kind: str) -> int:
    """EXIF Orientation (1-8) of a JPEG, PNG (eXIf chunk) or WebP (EXIF chunk) file; 1 when there
    is none or it cannot be read (viewers ignore a broken tag, and so do we)."""
    tiff = _exif_block(data, kind).removeprefix(b"Exif\0\0")  # some writers keep JPEG's prefix
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return 1
    try:
        (ifd,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[ifd:ifd + 2])
        for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
            tag, field_type, _, value = struct.unpack(order + "HHI2s", tiff[entry:entry + 10])
            if tag == ORIENTATION_TAG and field_type == 3:  # SHORT, as the standard defines it
                orientation = struct.unpack(order + "H", value)[0]
                return orientation if 1 <= orientation <= 8 else 1
    except struct.error:  # cut short
        pass
    return 1


def _exif_block(data: bytes, kind: str) -> bytes:
    if kind == "jpeg":
        return next((p for m, p in _jpeg_segments(data) if m == 0xE1 and p.startswith(b"Exif\0\0")), b"")
    if kind == "png":  # chunks: length (big-endian), name, payload, CRC
        i = 8
        while i + 8 <= len(data):
            length, name = struct.unpack(">I4s", data[i:i + 8])
            if name == b"eXIf":
                return data[i + 8:i + 8 + length]
            i += 12 + length
    if kind == "webp":  # RIFF chunks: name, length (little-endian), payload padded to even
        i = 12
        while i + 8 <= len(data):
            name, length = struct.unpack("<4sI", data[i:i + 8])
            if name == b"EXIF":
                return data[i + 8:i + 8 + length]
            i += 8 + length + (length & 1)
    return b""


def _orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """Applies EXIF orientation the way OpenCV does for JPEG: 5-8 transpose first, then flip."""
    if orientation >= 5:
        image = image.swapaxes(0, 1)
    axes = {2: 1, 3: (0, 1), 4: 0, 6: 1, 7: (0, 1), 8: 0}.get(orientation)
    return image if axes is None else np.flip(image, axes)


def _array_to_rgb(image: np.ndarray, what: str) -> np.ndarray:
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"{what}: pixel type {image.dtype} is not accepted (uint8 or uint16)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ImageError(
            f"{what}: shape {image.shape} is not an image (HxW gray, HxWx3 RGB or HxWx4 RGBA)"
        )
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"{what}: {w}x{h} is too small (each side at least {MIN_SIDE} pixels)")
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    # Per-pixel conversions, done in bands of rows so that their wider temporaries stay small
    # (a 40 MP 16-bit RGBA photo converted whole held 1.3 GB of them).
    rgb = np.empty((h, w, 3), np.uint8)
    rows = max(1, BAND_PIXELS // w)
    for top in range(0, h, rows):
        rgb[top:top + rows] = _band_to_rgb(image[top:top + rows])
    return rgb


def _band_to_rgb(band: np.ndarray) -> np.ndarray:
    if band.dtype == np.uint16:
        band = ((band.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if band.ndim == 2:
        return np.repeat(band[:, :, None], 3, axis=2)
    if band.shape[2] == 3:
        return band
    alpha, rgb = band[:, :, 3:4].astype(np.uint16), band[:, :, :3].astype(np.uint16)  # over white
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def sniff_format(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((kind for magic, kind in SIGNATURES.items() if data.startswith(magic)), None)


def header_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """(width, height) read from the header without decoding; None when not found."""
    try:
        if kind == "png":
            return struct.unpack(">II", data[16:24])
        if kind == "bmp":
            if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 1.x BITMAPCOREHEADER: 16-bit sides
                return struct.unpack("<HH", data[18:22])
            w, h = struct.unpack("<ii", data[18:26])  # every later header: 32-bit, height signed
            return abs(w), abs(h)
        if kind == "jpeg":
            return _jpeg_size(data)
        if kind == "webp":
            return _webp_size(data)
    except struct.error:
        raise ImageError(f"the {kind.upper()} header is truncated") from None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    for marker, payload in _jpeg_segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn, not DHT/JPG/DAC
            h, w = struct.unpack(">HH", payload[1:5])
            return w, h
    return None


def _jpeg_segments(data: bytes):
    """(marker, payload) of each segment before the first scan, where headers and metadata live."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            i = data.find(b"\xff", i)  # skip stray bytes between segments at C speed
            if i < 0:
                return
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill bytes
            i += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image
            return
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        yield marker, data[i + 4:i + 2 + length]
        i += 2 + length


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def encode(rgb: np.ndarray, ext: str = ".png") -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ImageError(f"cannot encode an image as {ext}")
    return buf.tobytes()


def save_rgb(path: str | Path, rgb: np.ndarray) -> None:
    """Encode by the file's suffix (PNG without one) and write it whole or not at all."""
    write_atomically(path, encode(rgb, Path(path).suffix or ".png"))
