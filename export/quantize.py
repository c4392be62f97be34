"""Static int8 JPP-Net for CPU: jppnet.onnx -> jppnet.int8.onnx, calibrated on real photos.

QDQ format, per-channel s8 weights and u8 activations (ONNX Runtime fuses them into
QLinearConv, fast on AVX-512 VNNI). Calibration feeds the network exactly what the parse
stage feeds it: each photo and its mirror at every configured scale. MinMax ranges suit
the photos they came from, so calibrate on real photos (e.g. ../shared/data/viton/person),
never on noise. The agreement with fp32 (labels, keypoints, and the try-on image through
the same GMM/TOM) is recorded in the manifest under `jppnet_int8`; the runtime uses this
model only when int8 is asked for.

    tryon quantize --models models_onnx PHOTO [PHOTO ...]
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tryon.runtime.cpvton_stage import CpvtonStage
from tryon.runtime.examples import EXAMPLE_GARMENT
from tryon.runtime.images import load_rgb
from tryon.runtime.model_dir import ModelDir
from tryon.runtime.parse_stage import (
    BASE_SIZE, JPPNET_BY_PRECISION, REFERENCE_SCALES, ParseStage, photo_to_bgr, square_batch,
)
from tryon.runtime.session import SessionOptions, create_session
from tryon.runtime.tryon import TryOn

from . import manifest

INT8_FILE = "jppnet.int8.onnx"
KEYPOINT_RADIUS = 3  # pixels within which an int8 keypoint counts as the fp32 one


class PhotoBatches:
    """onnxruntime's calibration reader: one {"image": batch} per photo and scale, made
    when asked for, over the window `set_range` chooses (strided calibration needs it)."""

    def __init__(self, photos, scales, mirror: bool):
        self.items = [(photo, scale) for photo in photos for scale in scales]
        self.mirror = mirror
        self.set_range(0, len(self.items))

    def __len__(self):
        return len(self.items)

    def set_range(self, start_index: int, end_index: int):
        self.window = iter(self.items[start_index:end_index])

    def get_next(self):
        item = next(self.window, None)
        return None if item is None else self._batch(*item)

    def _batch(self, photo, scale):
        bgr = photo_to_bgr(load_rgb(photo, "calibration photo"))
        return {"image": square_batch(bgr, int(BASE_SIZE * scale), self.mirror)}


def quantize_file(fp32_path: Path, int8_path: Path, photos, scales, mirror: bool):
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # Fold batch norm into the convolutions first, as ORT's own pre-processing does: left
    # apart, each BN would sit between a dequantise and a quantise and stay float.
    folded = int8_path.with_suffix(".folded.onnx")
    quant_pre_process(str(fp32_path), str(folded), skip_symbolic_shape=True)
    try:
        _quantize(folded, int8_path, photos, scales, mirror)
    finally:
        folded.unlink(missing_ok=True)


def _quantize(fp32_path: Path, int8_path: Path, photos, scales, mirror: bool):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(fp32_path), str(int8_path), PhotoBatches(photos, scales, mirror),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        # Ranges are folded in after every batch: the full network's activations for one
        # 480x480 batch are gigabytes, and keeping them all would not fit in memory.
        # (CalibMaxIntermediateOutputs would do it, but onnxruntime 1.32 drops the data.)
        extra_options={"CalibStridedMinMax": 1})


def agreement(models: ModelDir, int8_path: Path, photos, scales, mirror: bool) -> dict:
    """How far int8 moves the outputs a user sees, photo by photo, against fp32."""
    options = SessionOptions(provider="cpu")
    fp32 = ParseStage(create_session(models.file("jppnet"), options), scales, mirror)
    int8 = ParseStage(create_session(int8_path, options), scales, mirror)
    # GMM/TOM on each parse, with a fixed garment and without the pose crop: moving the
    # crop would count as an image difference that is not the network's.
    dress = TryOn(fp32, CpvtonStage.from_dir(models.path, options), models)
    garment = load_rgb(EXAMPLE_GARMENT, "garment")
    labels, distances, image_diffs = [], [], []
    for photo in photos:
        rgb = load_rgb(photo, "photo")
        ref, got = fp32.run(rgb), int8.run(rgb)
        labels.append(float(np.mean(ref.labels == got.labels)))
        distances.append(np.linalg.norm(ref.keypoints - got.keypoints, axis=1))
        images = [dress.predict(rgb, garment, need_pre=False, labels=p.labels, keypoints=p.keypoints).image
                  for p in (ref, got)]
        image_diffs.append(float(np.mean(np.abs(images[0].astype(np.int16) - images[1]))))
    distances = np.concatenate(distances)
    return {"photos": len(photos), "scales": list(scales), "mirror": mirror,
            "label_agreement": float(np.mean(labels)), "label_agreement_min": float(np.min(labels)),
            "keypoint_px_median": float(np.median(distances)), "keypoint_px_max": float(distances.max()),
            f"keypoints_within_{KEYPOINT_RADIUS}px": float(np.mean(distances <= KEYPOINT_RADIUS)),
            "tryon_mean_abs_diff_u8": float(np.mean(image_diffs)),
            "calibrated_on_these_photos": True}


def quantize_jppnet(models_dir: str | Path, photos, scales=REFERENCE_SCALES, mirror: bool = True) -> dict:
    """Write jppnet.int8.onnx beside jppnet.onnx and record it with its agreement; returns the entry."""
    photos = [Path(p) for p in photos]
    if not photos:
        raise ValueError("int8 calibration needs real photos (e.g. ../shared/data/viton/person/*.jpg)")
    models = ModelDir.open(models_dir)
    int8_path = models.path / INT8_FILE
    quantize_file(models.file("jppnet"), int8_path, photos, scales, mirror)
    entry = {"file": INT8_FILE, "variant": models.entry("jppnet").get("variant"), "precision": "int8",
             "quantization": {"format": "QDQ", "weights": "s8 per-channel", "activations": "u8",
                              "calibration": "MinMax", "photos": [p.name for p in photos]},
             "source": {"fp32": models.entry("jppnet")["file"], "sha256": models.entry("jppnet")["sha256"],
                        "synthetic": models.synthetic("jppnet")},
             "agreement": agreement(models, int8_path, photos, scales, mirror)}
    return manifest.record(models.path, JPPNET_BY_PRECISION["int8"], entry)
