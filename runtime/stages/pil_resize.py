"""Pillow's `Image.resize(size, Image.BILINEAR)` in NumPy, for the seed's PIL steps.

Pillow resamples separably, horizontal pass first, with a triangle filter whose
support widens by the downscale factor (so shrinking averages, not samples). For
8-bit images the weights are fixed point with 22 fractional bits and the
horizontal pass is rounded and clipped to uint8 before the vertical one; float
images keep double weights and round to float32 between passes. Both are
reproduced here as weight matrices (cached per size), which makes the uint8 path
bit-identical to Pillow.

Pass order: this is the order the seed's Pillow used (horizontal, then vertical).
Pillow 13 runs the vertical pass first for some shapes that shrink the height a lot;
where the order matters it then differs by 1 in a few pixels. It does not matter
for the sizes the pipeline uses (256x192 to 16x12 or 25x19 and back), which the
tests check against the installed Pillow.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

PRECISION_BITS = 32 - 8 - 2  # Pillow's Resample.c


def _taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices [out, k] and normalised double weights [out, k] (0 where unused)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # the bilinear filter's support is 1
    ksize = int(np.ceil(support)) * 2 + 1
    center = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size) - xmin
    taps = np.arange(ksize)
    used = taps[None, :] < xmax[:, None]
    inverse = 1.0 / filterscale  # multiplied, not divided by, as Pillow does: the roundings differ
    weights = np.maximum(1.0 - np.abs((taps[None, :] + xmin[:, None] - center[:, None] + 0.5) * inverse), 0.0)
    weights = np.where(used, weights, 0.0)
    total = np.zeros(out_size)
    for k in range(ksize):  # sequential, as the C loop adds them, so the sums round alike
        total += weights[:, k]
    weights = np.where(total[:, None] != 0.0, weights / np.where(total == 0.0, 1.0, total)[:, None], weights)
    index = np.minimum(taps[None, :] + xmin[:, None], in_size - 1)
    return index, weights


@lru_cache(maxsize=128)
def _matrix(in_size: int, out_size: int, fixed: bool) -> np.ndarray:
    """The pass as a dense [out, in] matrix: double weights, or Pillow's fixed-point ones."""
    index, weights = _taps(in_size, out_size)
    if fixed:
        scaled = weights * (1 << PRECISION_BITS)
        weights = np.trunc(np.where(scaled < 0, scaled - 0.5, scaled + 0.5)).astype(np.int64)
    matrix = np.zeros((out_size, in_size), dtype=weights.dtype)
    np.add.at(matrix, (np.repeat(np.arange(out_size), index.shape[1]), index.ravel()), weights.ravel())
    return matrix


def _separable(image: np.ndarray, size: tuple[int, int], dtype, wide, finish) -> np.ndarray:
    """Horizontal pass, then vertical, each computed in `wide` and brought back by `finish`."""
    if image.ndim != 2 or image.dtype != dtype:
        raise ValueError(f"expected a 2-D {np.dtype(dtype).name} image, got {image.dtype} {image.shape}")
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"size must be positive (width, height), got {size}")
    fixed, out = dtype == np.uint8, image
    if width != image.shape[1]:
        out = finish(out.astype(wide) @ _matrix(image.shape[1], width, fixed).T)
    if height != image.shape[0]:
        out = finish(_matrix(image.shape[0], height, fixed) @ out.astype(wide))
    return out.copy() if out is image else out


def resize_uint8(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow 'L' image resize to size=(width, height), BILINEAR, bit for bit."""
    half = np.int64(1 << (PRECISION_BITS - 1))
    return _separable(image, size, np.uint8, np.int64,
                      lambda acc: np.clip((acc + half) >> PRECISION_BITS, 0, 255).astype(np.uint8))


def resize_float(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow 'F' image resize to size=(width, height), BILINEAR (float32 between passes)."""
    return _separable(image, size, np.float32, np.float64, lambda acc: acc.astype(np.float32))
