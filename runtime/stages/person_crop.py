"""need_pre: frame the person from the pose and bring photo, labels and keypoints to 256x192.

The box, as the seed drew it: from the head top down to the lowest hip or wrist, plus
20% of that height above and below (clipped to the photo); width 3/4 of the height,
centred between the outermost right-arm and left-arm joints, slid inside the photo
and clipped where the photo is narrower. Fixed against the seed: keypoints map as
(x - left) * scale (the seed added the offset and scaled by the wrong factor), and labels
are resized with nearest neighbour (the seed smoothed scaled label values).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import EXIT_FAILED, TryonError
from .keypoints import LIP

OUT_H, OUT_W = 256, 192
MARGIN = 0.2
MIN_BOX = 16  # a framed person shorter or narrower than this is not a person


class CannotFrame(TryonError, ValueError):
    """The pose does not give a usable box (no person, or a degenerate pose)."""
    exit_code, http_status = EXIT_FAILED, 422


@dataclass(frozen=True)
class Box:
    top: int
    bottom: int
    left: int
    right: int


def pose_box(keypoints: np.ndarray, height: int, width: int) -> Box:
    k = np.asarray(keypoints, dtype=np.int64)
    head = k[LIP["head_top"], 1]
    low = max(k[LIP[j], 1] for j in ("r_hip", "l_hip", "r_wrist", "l_wrist"))
    span = low - head
    if span <= 0:
        raise CannotFrame("the head top is not above the hips and wrists: no upright person found")
    top = max(head - int(span * MARGIN), 0)
    bottom = min(low + int(span * MARGIN), height)
    box_w = int((bottom - top) * 3 / 4)
    arms_left = min(k[LIP[j], 0] for j in ("r_shoulder", "r_elbow", "r_wrist"))
    arms_right = max(k[LIP[j], 0] for j in ("l_shoulder", "l_elbow", "l_wrist"))
    centre = (arms_left + arms_right) / 2
    left = int(np.clip(round(centre - box_w / 2), 0, max(width - box_w, 0)))
    right = min(left + box_w, width)
    if bottom - top < MIN_BOX or right - left < MIN_BOX:
        raise CannotFrame(f"the pose frames only {right - left}x{bottom - top} pixels: no person found")
    return Box(top, bottom, left, right)


def crop_person(rgb: np.ndarray, labels: np.ndarray, keypoints: np.ndarray, box: Box):
    """-> (256x192 RGB, 256x192 labels, keypoints in the new frame)."""
    window = np.s_[box.top:box.bottom, box.left:box.right]
    return resize_person(rgb[window], labels[window], np.asarray(keypoints) - [box.left, box.top])


def resize_person(rgb: np.ndarray, labels: np.ndarray, keypoints: np.ndarray):
    """Bring a person photo, its labels and keypoints to 256x192 (identity when already there)."""
    h, w = labels.shape
    keypoints = np.asarray(keypoints)
    if (h, w) == (OUT_H, OUT_W):
        return rgb, labels, keypoints
    shrink = h > OUT_H
    image = cv2.resize(rgb, (OUT_W, OUT_H), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    parse = cv2.resize(labels, (OUT_W, OUT_H), interpolation=cv2.INTER_NEAREST)
    scaled = keypoints * np.array([OUT_W / w, OUT_H / h])
    # JPP-Net's joints are pixel indices and stay so; a caller's fractional joints stay fractional.
    return image, parse, np.floor(scaled).astype(np.int64) if keypoints.dtype.kind in "iu" else scaled
