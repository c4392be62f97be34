"""keep_back / need_dilate: keep the original photo everywhere but the upper-clothes area.

The seed's mask: label 5 (upper clothes) of the 256x192 parse. With need_dilate it is
dilated by an 18x18 rectangle, box-blurred 14x14, and shrunk to 19x25 and back with
Pillow's float bilinear resize, which softens the seam. Blending and the final uint8
cast truncate, as the seed's numpy arithmetic did.
"""
import cv2
import numpy as np

from . import pil_resize

UPPER_CLOTHES = 5
DILATE = 18
BLUR = 14
SHRINK = 10


def garment_mask(labels: np.ndarray, dilate: bool) -> np.ndarray:
    mask = (labels == UPPER_CLOTHES).astype(np.float32)
    if not dilate:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (DILATE, DILATE))
    soft = cv2.blur(cv2.dilate(mask, kernel), (BLUR, BLUR)) * np.float32(255)
    h, w = mask.shape
    small = pil_resize.resize_float(soft, (w // SHRINK, h // SHRINK))
    return pil_resize.resize_float(small, (w, h)) / np.float32(255)


def keep_background(photo: np.ndarray, tryon: np.ndarray, labels: np.ndarray, dilate: bool) -> np.ndarray:
    mask = garment_mask(labels, dilate)[:, :, None]
    blended = photo * (np.float32(1) - mask) + tryon * mask
    return blended.astype(np.uint8)
