"""The declared fast modes: JPP-Net in int8 for the CPU, in fp16 for CUDA, in bf16 for a CPU
with bf16 instructions, each recorded with its agreement with fp32 on real photos.

int8 (jppnet.onnx -> jppnet.int8.onnx) is static: QDQ format, per-channel s8 weights and
u8 activations (ONNX Runtime fuses them into QLinearConv, fast on AVX-512 VNNI). The weights
use 7 bits (reduce_range, -64..64): without VNNI (AVX2 only) ONNX Runtime's u8s8 kernels add
pairs of u8*s8 products in 16 bits with saturation (vpmaddubsw), and with 8-bit weights a pair
can reach 2*255*127 > 32767; with 7-bit weights it stays within 2*255*64 = 32640, so the
integer sums, hence the outputs, are the same on CPUs with and without VNNI. The entry
records the CPU the agreement was measured on.
Calibration feeds the network exactly what the parse stage feeds it: each photo and its
mirror at every configured scale. MinMax ranges suit the photos they came from, so
calibrate on real photos (e.g. ../shared/data/viton/person), never on noise. The
agreement with fp32 (labels, keypoints, and the try-on image through the same GMM/TOM)
is recorded in the manifest under `jppnet_int8`.

fp16 (jppnet.onnx -> jppnet.fp16.onnx) folds the batch norms in float64 first, then
stores every weight and activation in fp16; the input and outputs stay float32, so the
parse stage feeds it unchanged. It is for the CUDA provider (on the CPU it runs no
faster than fp32); its agreement is measured on CUDA where this machine has it, else
on the CPU, and the entry says which.

bf16 writes no file: it is jppnet.onnx run by ONNX Runtime's OpenVINO execution provider
with bf16 arithmetic (onnxruntime-openvino, a CPU with avx512_bf16 or AMX). Its entry names
that graph and the provider's options, with the agreement measured through them.

The runtime uses each only when asked for.

    tryon quantize --models models_onnx [--precision int8|fp16|bf16] PHOTO [PHOTO ...]
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tryon.cpu import describe_cpu, vector_extensions
from tryon.errors import InputError
from tryon.examples import EXAMPLE_GARMENT
from tryon.images import load_rgb
from tryon.models.graphs import BF16_GRAPH, JPPNET_BY_PRECISION
from tryon.models.model_dir import ModelDir
from tryon.models.session import (
    OPENVINO,
    PROVIDERS,
    SessionOptions,
    check_openvino_bf16,
    create_session,
    import_onnxruntime,
    openvino_bf16_options,
    providers_in_use,
    resolve_providers,
)
from tryon.pipeline import TryOn
from tryon.stages.cpvton import CpvtonStage
from tryon.stages.parse import BASE_SIZE, REFERENCE_SCALES, ParseStage, photo_to_bgr, resize_bilinear

from . import manifest
from .batch_norm_folding import fold_batch_norms

PRECISIONS = ("int8", "fp16", "bf16")
FILES = {"int8": "jppnet.int8.onnx", "fp16": "jppnet.fp16.onnx"}  # bf16 is a provider setting, not a file
METHODS = {
    "int8": {"format": "QDQ",
             "weights": "s8 per-channel, 7-bit range (reduce_range: no 16-bit saturation without VNNI)",
             "reduce_range": True, "activations": "u8", "calibration": "MinMax"},
    "fp16": {"weights": "fp16, batch norms folded in float64 first", "activations": "fp16",
             "input_and_outputs": "float32"},
}
KEYPOINT_RADIUS = 3  # pixels within which a reduced-precision keypoint counts as the fp32 one


class PhotoBatches:
    """onnxruntime's calibration reader: one {"image": [1, side, side, 3]} per photo, scale
    and (with the mirror) side of the mirror, made when asked for, over the window
    `set_range` chooses. One image at a time: calibration holds every activation of the
    batch it runs, and MinMax ranges over the images one by one equal those over pairs."""

    def __init__(self, photos, scales, mirror: bool):
        flips = (False, True) if mirror else (False,)
        self.items = [(photo, scale, flip) for photo in photos for scale in scales for flip in flips]
        self.set_range(0, len(self.items))

    def __len__(self):
        return len(self.items)

    def set_range(self, start_index: int, end_index: int):
        self.window = iter(self.items[start_index:end_index])

    def get_next(self):
        item = next(self.window, None)
        return None if item is None else self._batch(*item)

    def _batch(self, photo, scale, flip):
        bgr = photo_to_bgr(load_rgb(photo, "calibration photo"))
        side = int(BASE_SIZE * scale)
        return {"image": resize_bilinear(bgr, side, side, flip)[None]}


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
        # Weights in -64..64: u8s8 pair sums fit 16 bits, so CPUs without VNNI give VNNI's answer.
        reduce_range=METHODS["int8"]["reduce_range"],
        calibrate_method=CalibrationMethod.MinMax,
        # Ranges are folded in after every batch: the full network's activations for one
        # 480x480 batch are gigabytes, and keeping them all would not fit in memory.
        # (CalibMaxIntermediateOutputs would do it, but onnxruntime 1.32 drops the data.)
        extra_options={"CalibStridedMinMax": 1})


def half_file(fp32_path: Path, fp16_path: Path):
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(fp32_path))
    fold_batch_norms(model)
    onnx.save(convert_float_to_float16(model, keep_io_types=True), str(fp16_path))


def agreement_provider(precision: str) -> str:
    """Where the agreement is measured: CUDA for fp16 where this machine has it, else the CPU."""
    return "cuda" if precision == "fp16" and resolve_providers("auto") == PROVIDERS["cuda"] else "cpu"


def agreement(models: ModelDir, low_session, photos, scales, mirror: bool, provider: str = "cpu") -> dict:
    """How far a reduced-precision JPP-Net session moves the outputs a user sees, photo by
    photo, against fp32 (jppnet.onnx on `provider`, which also runs GMM and TOM)."""
    options = SessionOptions(provider=provider)
    fp32 = ParseStage(create_session(models.file("jppnet"), options), scales, mirror)
    low = ParseStage(low_session, scales, mirror)
    # GMM/TOM on each parse, with a fixed garment and without the pose crop: moving the
    # crop would count as an image difference that is not the network's.
    dress = TryOn(fp32, CpvtonStage.from_dir(models.path, options), models)
    garment = load_rgb(EXAMPLE_GARMENT, "garment")
    labels, distances, image_diffs = [], [], []
    for photo in photos:
        rgb = load_rgb(photo, "photo")
        ref, got = fp32.run(rgb), low.run(rgb)
        labels.append(float(np.mean(ref.labels == got.labels)))
        distances.append(np.linalg.norm(ref.keypoints - got.keypoints, axis=1))
        images = [dress.predict(rgb, garment, need_pre=False, labels=p.labels, keypoints=p.keypoints).image
                  for p in (ref, got)]
        image_diffs.append(float(np.mean(np.abs(images[0].astype(np.int16) - images[1]))))
    distances = np.concatenate(distances)
    return {"photos": len(photos), "scales": list(scales), "mirror": mirror, "provider": provider,
            "jppnet_providers": providers_in_use(low_session),
            "label_agreement": float(np.mean(labels)), "label_agreement_min": float(np.min(labels)),
            "keypoint_px_median": float(np.median(distances)), "keypoint_px_max": float(distances.max()),
            f"keypoints_within_{KEYPOINT_RADIUS}px": float(np.mean(distances <= KEYPOINT_RADIUS)),
            "tryon_mean_abs_diff_u8": float(np.mean(image_diffs))}


def quantize_jppnet(models_dir: str | Path, photos, scales=REFERENCE_SCALES, mirror: bool = True,
                   precision: str = "int8") -> dict:
    """Write jppnet.<precision>.onnx beside jppnet.onnx (none for bf16) and record it with its
    agreement; returns the manifest entry."""
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "bf16":
        check_openvino_bf16("cpu")
    photos = [Path(p) for p in photos]
    if not photos:
        raise InputError(f"{precision} JPP-Net needs real photos to measure its agreement with fp32"
                         f"{' and to calibrate on' if precision == 'int8' else ''} "
                         "(e.g. ../shared/data/viton/person/*.jpg)")
    for photo in photos:  # a bad photo stops it before minutes of work, with its name
        load_rgb(photo, "photo")
    models = ModelDir.open(models_dir)
    if precision == "bf16":
        low, method = _openvino_bf16(models)
    else:
        low, method = _write_low_precision(models, precision, photos, scales, mirror)
    fp32 = models.entry("jppnet")
    entry = {"file": method.pop("file"), "variant": fp32.variant, "precision": precision,
             **method,
             "source": {"fp32": fp32.file, "sha256": fp32.sha256,
                        "synthetic": models.synthetic("jppnet")},
             "agreement": {**agreement(models, low, photos, scales, mirror, agreement_provider(precision)),
                           "calibrated_on_these_photos": precision == "int8",
                           "cpu": describe_cpu(), "vector_extensions": vector_extensions()}}
    return manifest.record(models.path, JPPNET_BY_PRECISION[precision], entry)


def _write_low_precision(models: ModelDir, precision: str, photos, scales, mirror: bool):
    """(session, entry fields) of a newly written jppnet.int8.onnx or jppnet.fp16.onnx."""
    path = models.path / FILES[precision]
    if precision == "int8":
        quantize_file(models.file("jppnet"), path, photos, scales, mirror)
    else:
        half_file(models.file("jppnet"), path)
    method = {**METHODS[precision], **({"photos": [p.name for p in photos]} if precision == "int8" else {})}
    session = create_session(path, SessionOptions(provider=agreement_provider(precision)))
    return session, {"file": FILES[precision], "quantization": method}


def _openvino_bf16(models: ModelDir):
    """(session, entry fields) of the graph bf16 runs, on the OpenVINO execution provider."""
    session = create_session(models.file(BF16_GRAPH),
                             SessionOptions(provider="cpu", openvino_bf16=True, memory_pattern=False))
    provider = {"name": OPENVINO, "options": openvino_bf16_options(), "onnxruntime": import_onnxruntime().__version__}
    return session, {"file": models.entry(BF16_GRAPH).file, "execution_provider": provider}
