"""need_bright: the seed's PIL ImageEnhance.Brightness(1.3), reproduced bit for bit.

Pillow blends with a black image, computing in single precision and truncating:
out = clip(trunc(float32(factor) * pixel), 0, 255).
"""
import numpy as np

SEED_FACTOR = 1.3


def enhance(rgb: np.ndarray, factor: float = SEED_FACTOR) -> np.ndarray:
    scaled = np.float32(factor) * rgb.astype(np.float32)
    return np.clip(scaled, 0, 255).astype(np.uint8)
