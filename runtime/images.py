"""Turns whatever a user hands us (path, bytes, array) into an HxWx3 uint8 RGB array.

Handled: JPEG/PNG/BMP/WebP files, EXIF orientation, grayscale, alpha (composited
over white, the colour a garment photo's background is), 16-bit. Refused with an
`ImageError` that says what is accepted: anything else, and pixel counts large
enough to be decompression bombs (checked from the header before decoding).
"""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError

MAX_PIXELS = 40_000_000  # a 40 MP phone photo is the largest sane input
MIN_SIDE = 16
FORMATS = "JPEG, PNG, BMP or WebP"


class ImageError(InputError):
    """The input is not an image we accept; the message says what is."""


class UnsupportedFormat(ImageError):
    """Not one of the formats we decode."""


class TooManyPixels(ImageError):
    """The header announces more pixels than the limit (a decompression bomb, or a mistake)."""


def load_rgb(source, what: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, what)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{what}: no such file {path}")
        source = path.read_bytes()
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode(bytes(source), what, max_pixels)
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


def decode(data: bytes, what: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    kind = check_header(data, what, max_pixels)
    buf = np.frombuffer(data, np.uint8)
    # Only PNG and WebP carry alpha; JPEG goes through IMREAD_COLOR, which applies EXIF orientation.
    flags = cv2.IMREAD_UNCHANGED if kind in ("png", "webp") else cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH
    image = cv2.imdecode(buf, flags)
    if image is None:
        raise ImageError(f"{what}: the {kind.upper()} data is corrupt or truncated")
    if image.ndim == 3 and image.shape[2] >= 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return _array_to_rgb(image, what)


def _array_to_rgb(image: np.ndarray, what: str) -> np.ndarray:
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(f"{what}: pixel type {image.dtype} is not accepted (uint8 or uint16)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ImageError(
            f"{what}: shape {image.shape} is not an image (HxW gray, HxWx3 RGB or HxWx4 RGBA)"
        )
    if image.shape[2] == 4:
        image = _over_white(image)
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"{what}: {w}x{h} is too small (each side at least {MIN_SIDE} pixels)")
    return np.ascontiguousarray(image)


def _over_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[:, :, 3:4].astype(np.uint16)
    rgb = rgba[:, :, :3].astype(np.uint16)
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def sniff_format(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def header_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """(width, height) read from the header without decoding; None when not found."""
    try:
        if kind == "png":
            return struct.unpack(">II", data[16:24])
        if kind == "bmp":
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if kind == "jpeg":
            return _jpeg_size(data)
        if kind == "webp":
            return _webp_size(data)
    except struct.error:
        raise ImageError(f"the {kind.upper()} header is truncated") from None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i = data.find(b"\xff", i)  # skip garbage between markers at C speed
            if i < 0:
                break
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    return None


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(rgb, path.suffix or ".png"))
