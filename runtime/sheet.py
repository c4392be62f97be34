"""Pictures of what the pipeline saw: coloured labels, keypoints, a side-by-side sheet."""
from __future__ import annotations

import cv2
import numpy as np

# The LIP palette used by LIP_JPPNet's decode_labels, one RGB colour per label.
LIP_COLOURS = np.array([
    (0, 0, 0), (128, 0, 0), (255, 0, 0), (0, 85, 0), (170, 0, 51), (255, 85, 0), (0, 0, 85),
    (0, 119, 221), (85, 85, 0), (0, 85, 85), (85, 51, 0), (52, 86, 128), (0, 128, 0), (0, 0, 255),
    (51, 170, 221), (0, 255, 255), (85, 255, 170), (170, 255, 85), (255, 255, 0), (255, 170, 0),
], dtype=np.uint8)

# LIP joints joined into a stick figure (indices per runtime.keypoints.LIP_JOINTS).
LIMBS = ((0, 1), (1, 2), (2, 6), (3, 6), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
         (10, 11), (11, 12), (12, 7), (7, 13), (13, 14), (14, 15))


def colour_labels(labels: np.ndarray) -> np.ndarray:
    return LIP_COLOURS[np.clip(labels, 0, len(LIP_COLOURS) - 1)]


def draw_keypoints(rgb: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    points = [tuple(int(v) for v in p) for p in keypoints]
    for a, b in LIMBS:
        cv2.line(out, points[a], points[b], (0, 255, 0), 1, cv2.LINE_AA)
    for p in points:
        cv2.circle(out, p, 2, (255, 0, 0), -1, cv2.LINE_AA)
    return out


def side_by_side(panels: list[tuple[str, np.ndarray]], height: int = 256, note: str = "") -> np.ndarray:
    tiles = []
    for title, image in panels:
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        width = max(1, round(image.shape[1] * height / image.shape[0]))
        tile = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        header = np.full((22, width, 3), 255, np.uint8)
        cv2.putText(header, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack([header, tile]))
    sheet = np.hstack(tiles)
    if note:
        footer = np.full((24, sheet.shape[1], 3), 255, np.uint8)
        cv2.putText(footer, note, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (200, 0, 0), 1, cv2.LINE_AA)
        sheet = np.vstack([sheet, footer])
    return sheet
