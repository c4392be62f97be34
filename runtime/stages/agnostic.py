"""The cloth-agnostic person representation CP-VTON's GMM and TOM take, for both families.

Channels, top to bottom: body shape (1), head (3), one pose map per keypoint, all
in [-1, 1] at 256x192. The arithmetic follows cp-vton's cp_dataset.py and
GrayXu's CPVTON.py step for step (float32, Pillow's 8-bit bilinear resize for the
blurred shape, Pillow's rectangle rule for the pose squares), so the same inputs
give the same bits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from . import pil_resize

HEIGHT, WIDTH = 256, 192
SHAPE_DOWNSCALE = 16  # the body shape is blurred through a 16x12 image
LEGS, PANTS = (16, 17), 9


@dataclass(frozen=True)
class Family:
    name: str
    keypoints: int  # 18 OpenPose joints (cp-vton) or 16 LIP joints (GrayXu)
    radius: int  # half side of each pose square
    head_labels: tuple[int, ...]  # LIP labels kept from the photo
    legs_as_pants: bool  # GrayXu relabels legs 16, 17 as pants before anything else

    @property
    def channels(self) -> int:
        return 1 + 3 + self.keypoints


FAMILIES = {
    "cpvton": Family("cpvton", keypoints=18, radius=5, head_labels=(1, 2, 4, 13), legs_as_pants=False),
    "grayxu": Family("grayxu", keypoints=16, radius=3, head_labels=(1, 2, 4, 13, 9), legs_as_pants=True),
}


def family_constants(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise InputError(f"unknown CP-VTON family {name!r}; known: {', '.join(FAMILIES)}") from None


def to_unit_range(u8: np.ndarray) -> np.ndarray:
    """torchvision ToTensor + Normalize(0.5, 0.5) on uint8, in float32 as they compute it."""
    return (u8.astype(np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)


def body_shape(labels: np.ndarray) -> np.ndarray:
    """(labels > 0) as an 8-bit image, bilinear down to 12x16 and back: a blurred silhouette."""
    silhouette = (labels > 0).astype(np.uint8) * np.uint8(255)
    small = pil_resize.resize_uint8(silhouette, (WIDTH // SHAPE_DOWNSCALE, HEIGHT // SHAPE_DOWNSCALE))
    return to_unit_range(pil_resize.resize_uint8(small, (WIDTH, HEIGHT)))


def head(person_rgb: np.ndarray, labels: np.ndarray, fam: Family) -> np.ndarray:
    """The photo where the labels are head labels, -1 elsewhere: [3, H, W]."""
    mask = np.isin(labels, fam.head_labels).astype(np.float32)
    image = to_unit_range(person_rgb).transpose(2, 0, 1)
    return image * mask - (np.float32(1) - mask)


def pose_maps(keypoints: np.ndarray, radius: int) -> np.ndarray:
    """One channel per keypoint: +1 on the square x±r, y±r, -1 elsewhere.

    Pillow's rectangle() truncates float corners to int and includes both ends; a
    keypoint with x <= 1 or y <= 1 counts as undetected and draws nothing.
    """
    maps = np.full((len(keypoints), HEIGHT, WIDTH), -1.0, dtype=np.float32)
    for channel, (x, y) in enumerate(np.asarray(keypoints, dtype=np.float64)):
        if x > 1 and y > 1:
            x0, x1 = max(int(x - radius), 0), min(int(x + radius), WIDTH - 1)
            y0, y1 = max(int(y - radius), 0), min(int(y + radius), HEIGHT - 1)
            maps[channel, y0:y1 + 1, x0:x1 + 1] = 1.0
    return maps


def agnostic_representation(person_rgb: np.ndarray, labels: np.ndarray, keypoints: np.ndarray,
                            family: str) -> np.ndarray:
    """[C, 256, 192] float32: shape, head, pose maps. C = 22 (cp-vton) or 20 (GrayXu).

    person_rgb: 256x192x3 uint8; labels: 256x192 LIP labels; keypoints: (K, 2) x, y
    in the family's joint order (18 OpenPose for cp-vton, 16 LIP for GrayXu).
    """
    fam = family_constants(family)
    person_rgb, labels, keypoints = _checked(person_rgb, labels, keypoints, fam)
    if fam.legs_as_pants:
        labels = np.where(np.isin(labels, LEGS), PANTS, labels)
    return np.concatenate([body_shape(labels)[None], head(person_rgb, labels, fam),
                           pose_maps(keypoints, fam.radius)])


def _checked(person_rgb, labels, keypoints, fam: Family):
    person_rgb, labels, keypoints = np.asarray(person_rgb), np.asarray(labels), np.asarray(keypoints)
    if person_rgb.shape != (HEIGHT, WIDTH, 3) or person_rgb.dtype != np.uint8:
        raise InputError(f"person must be a {HEIGHT}x{WIDTH}x3 uint8 RGB image, got {person_rgb.dtype} "
                         f"{person_rgb.shape}")
    if labels.shape != (HEIGHT, WIDTH) or labels.dtype.kind not in "iu":
        raise InputError(f"labels must be a {HEIGHT}x{WIDTH} integer label map, got {labels.dtype} {labels.shape}")
    if keypoints.shape != (fam.keypoints, 2) or keypoints.dtype.kind not in "iuf":
        raise InputError(f"{fam.name} needs ({fam.keypoints}, 2) x/y keypoints, got {keypoints.dtype} "
                         f"{keypoints.shape}")
    if not np.isfinite(keypoints).all():
        raise InputError("keypoints must be finite numbers")
    return person_rgb, labels, keypoints
