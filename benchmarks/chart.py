"""Bar chart of a `tryon bench` record: per-stage median latency, runtime against reference.

Drawn with OpenCV, which the runtime already needs, so the chart costs no extra install.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from tryon.bench.latency import pipeline_order

OURS = (200, 110, 30)  # BGR: blue
REFERENCE = (150, 150, 150)
INK = (30, 30, 30)
FONT = cv2.FONT_HERSHEY_SIMPLEX
ROW, LABEL_W, BAR_W, MARGIN = 46, 190, 520, 20
SKIPPED = ("request",)  # the batch's wall time; equals total at batch 1


def chart_rows(record: dict) -> list[tuple[str, float, float | None]]:
    """(stage, our median ms, reference median ms), either None where only one side times
    that step, in the order a request meets them."""
    ours = record["stages"]
    reference = record.get("reference", {}).get("stages", {})
    names = [n for n in pipeline_order([*ours, *reference]) if n not in SKIPPED]
    return [(n, ours.get(n, {}).get("median_ms"), reference.get(n, {}).get("median_ms")) for n in names]


def _title(record: dict) -> str:
    s = record["settings"]
    scales = ",".join(f"{x:g}" for x in s["scales"])
    return (f"tryon bench: {s['precision']}, {s['provider']}, threads {s['threads'] or 'auto'}, "
            f"scales {scales}{' + mirror' if s['mirror'] else ''}, batch {s['batch']}")


def draw(record: dict) -> np.ndarray:
    rows = chart_rows(record)
    longest = max(max(ours or 0, ref or 0) for _, ours, ref in rows)
    height = MARGIN * 2 + 60 + ROW * len(rows) + 30
    image = np.full((height, LABEL_W + BAR_W + 170, 3), 255, np.uint8)
    cv2.putText(image, _title(record), (MARGIN, MARGIN + 12), FONT, 0.5, INK, 1, cv2.LINE_AA)
    _legend(image, record, MARGIN + 34)
    top = MARGIN + 60
    speedups = record.get("speedup_vs_reference", {}).get("stages", {})
    for i, (name, ours, ref) in enumerate(rows):
        y = top + i * ROW
        cv2.putText(image, name, (MARGIN, y + 20), FONT, 0.45, INK, 1, cv2.LINE_AA)
        if ours is not None:
            _bar(image, y + 4, ours, longest, OURS, f"{ours:,.1f} ms")
        if ref is not None:
            ratio = speedups.get(name)
            _bar(image, y + 22, ref, longest, REFERENCE,
                 f"{ref:,.1f} ms" + (f"  ({ratio:.2f}x)" if ratio else ""))
    note = "SYNTHETIC (untrained) weights: latency only" if record.get("synthetic_weights") else ""
    cv2.putText(image, note, (MARGIN, height - MARGIN), FONT, 0.4, INK, 1, cv2.LINE_AA)
    return image


def _legend(image, record, y):
    cv2.rectangle(image, (MARGIN, y - 10), (MARGIN + 14, y + 2), OURS, -1)
    cv2.putText(image, "ONNX Runtime", (MARGIN + 20, y), FONT, 0.45, INK, 1, cv2.LINE_AA)
    if "reference" in record:
        cv2.rectangle(image, (MARGIN + 150, y - 10), (MARGIN + 164, y + 2), REFERENCE, -1)
        cv2.putText(image, "TensorFlow + eager PyTorch (ratio = reference / ours)", (MARGIN + 170, y),
                    FONT, 0.45, INK, 1, cv2.LINE_AA)


def _bar(image, y, ms, longest, colour, label):
    width = max(1, int(BAR_W * ms / longest)) if longest > 0 else 1
    cv2.rectangle(image, (LABEL_W, y), (LABEL_W + width, y + 14), colour, -1)
    cv2.putText(image, label, (LABEL_W + width + 6, y + 12), FONT, 0.4, INK, 1, cv2.LINE_AA)


def write_chart(record: dict, path: str | Path) -> Path:
    path = Path(path)
    if not cv2.imwrite(str(path), draw(record)):
        raise OSError(f"cannot write the chart to {path}")
    return path
