"""Keypoint orders and the rules the seed applied to JPP-Net's 16 LIP joints."""
from __future__ import annotations

import numpy as np

from ..errors import InputError

LIP_JOINTS = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
    "neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
)
OPENPOSE_JOINTS = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)
LIP = {name: i for i, name in enumerate(LIP_JOINTS)}

# OpenPose-18 index -> LIP-16 index; nose, eyes and ears have no LIP joint and stay empty.
OPENPOSE_FROM_LIP = {OPENPOSE_JOINTS.index(n): LIP[n] for n in OPENPOSE_JOINTS if n in LIP}

# The seed let a wrist rest near its own hip without calling the arms crossed:
# its test was (dx + dy)^2 <= 250, meant as a distance of about 16 pixels.
NEAR_HIP_PX = 250 ** 0.5


def lip_to_openpose(lip: np.ndarray) -> np.ndarray:
    """(16, 2) LIP keypoints -> (18, 2) OpenPose keypoints; missing joints are (0, 0),
    which the pose map skips (it draws only points with x > 1 and y > 1)."""
    lip = np.asarray(lip)
    if lip.shape != (16, 2):
        raise InputError(f"expected 16 LIP keypoints as a (16, 2) array, got shape {lip.shape}")
    out = np.zeros((18, 2), dtype=lip.dtype)
    out[list(OPENPOSE_FROM_LIP)] = lip[list(OPENPOSE_FROM_LIP.values())]
    return out


def crossed_arms(lip: np.ndarray) -> bool:
    """check_dirty: a wrist inside the torso quadrilateral (shoulders and hips) means the
    arms cross the garment; a wrist resting near its own hip does not count."""
    lip = np.asarray(lip, dtype=np.float64)
    torso = lip[[LIP["r_shoulder"], LIP["r_hip"], LIP["l_hip"], LIP["l_shoulder"]]]
    for wrist, hip in (("r_wrist", "r_hip"), ("l_wrist", "l_hip")):
        point = lip[LIP[wrist]]
        if np.hypot(*(point - lip[LIP[hip]])) > NEAR_HIP_PX and _inside_convex(point, torso):
            return True
    return False


def _inside_convex(point: np.ndarray, polygon: np.ndarray) -> bool:
    edges = np.roll(polygon, -1, axis=0) - polygon
    to_point = point - polygon
    cross = edges[:, 0] * to_point[:, 1] - edges[:, 1] * to_point[:, 0]
    return bool(np.all(cross > 0) or np.all(cross < 0))
