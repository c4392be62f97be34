"""TryOn: a person photo and a garment photo in, the person wearing the garment out.

Read `TryOn.predict` top to bottom to follow one photo through every stage.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import brightness
from .cpvton_stage import CpvtonStage
from .images import load_rgb
from .keep_background import keep_background
from .keypoints import crossed_arms, lip_to_openpose
from .model_dir import ModelDir
from .parse_stage import ParseStage
from .person_crop import CannotFrame, crop_person, pose_box, resize_person
from .session import SessionOptions

SEED_FAILURE_CONFIDENCE = 0.1  # below this the seed's service answered "failure"


@dataclass
class TryOnResult:
    image: np.ndarray  # 256x192x3 uint8 RGB: the try-on, or the framed photo when refused
    confidence: float  # 0 when a hard exclusion fired (no person, crossed arms)
    timings_ms: dict[str, float]
    reason: str = ""  # why confidence is 0, when it is
    intermediates: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.confidence >= SEED_FAILURE_CONFIDENCE


class Timer:
    def __init__(self):
        self.ms: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        yield
        self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1e3

    def add(self, prefix: str, timings: dict[str, float]):
        for name, ms in timings.items():
            self.ms[f"{prefix}.{name}"] = ms


class TryOn:
    def __init__(self, parse: ParseStage, cpvton: CpvtonStage, models: ModelDir):
        self.parse = parse
        self.cpvton = cpvton
        self.models = models

    @classmethod
    def from_dir(cls, path: str | Path = "models_onnx", provider: str = "auto", threads: int = 0,
                 scales=(1.0, 0.75, 1.25), mirror: bool = True) -> "TryOn":
        models = ModelDir.open(path)
        options = SessionOptions(provider=provider, threads=threads)
        return cls(ParseStage.from_dir(path, options, scales=scales, mirror=mirror),
                   CpvtonStage.from_dir(path, options), models)

    @property
    def synthetic(self) -> bool:
        return any(self.models.synthetic(name) for name in ("jppnet", "gmm", "tom"))

    def predict(self, person, cloth, need_pre: bool = True, need_bright: bool = False,
                keep_back: bool = False, need_dilate: bool = False, check_dirty: bool = False,
                labels: np.ndarray | None = None, keypoints: np.ndarray | None = None,
                intermediates: bool = False) -> TryOnResult:
        """The seed's predict() with its bugs fixed. Pass `labels` (HxW LIP labels) and
        `keypoints` (16x2 LIP, x/y) of the person photo to skip JPP-Net."""
        timer = Timer()
        with timer("total"):
            with timer("decode"):
                person = load_rgb(person, "person photo")
                cloth = self.cpvton.fit_cloth(load_rgb(cloth, "garment photo"))
            if need_bright:
                with timer("brightness"):
                    person = brightness.enhance(person)
            labels, keypoints, confidence = self._parse(person, labels, keypoints, timer)
            refused = None
            with timer("crop"):
                try:
                    if need_pre:
                        person, labels, keypoints = crop_person(
                            person, labels, keypoints, pose_box(keypoints, *labels.shape))
                    else:
                        person, labels, keypoints = resize_person(person, labels, keypoints)
                except CannotFrame as exc:
                    person, labels, keypoints = resize_person(person, labels, keypoints)
                    refused = str(exc)
            if refused is None and check_dirty and crossed_arms(keypoints):
                refused = "crossed arms: a wrist lies inside the torso (check_dirty)"
            if refused is not None:
                return TryOnResult(person, 0.0, timer.ms, refused,
                                   self._extras(intermediates, person=person, labels=labels, keypoints=keypoints))
            out = self.cpvton.run(person, cloth, labels, self._family_keypoints(keypoints))
            timer.add("cpvton", out.timings_ms)
            image = out.image
            if keep_back:
                with timer("keep_back"):
                    image = keep_background(person, image, labels, need_dilate)
        return TryOnResult(image, confidence, timer.ms, "", self._extras(
            intermediates, person=person, labels=labels, keypoints=keypoints,
            warped_cloth=out.warped_cloth, mask=out.mask, rendered=out.rendered))

    def _parse(self, person, labels, keypoints, timer):
        if (labels is None) != (keypoints is None):
            raise ValueError("pass both labels and keypoints to skip JPP-Net, or neither")
        if labels is not None:
            labels, keypoints = _check_given_parse(labels, keypoints, person.shape[:2])
            return labels, keypoints, 1.0
        parsed = self.parse.run(person)
        timer.add("parse", parsed.timings_ms)
        return parsed.labels, parsed.keypoints, parsed.confidence

    def _family_keypoints(self, lip: np.ndarray) -> np.ndarray:
        return lip_to_openpose(lip) if self.cpvton.family == "cpvton" else lip

    @staticmethod
    def _extras(wanted: bool, **arrays) -> dict[str, np.ndarray]:
        return {k: v for k, v in arrays.items() if v is not None} if wanted else {}


def _check_given_parse(labels, keypoints, shape):
    labels = np.asarray(labels)
    keypoints = np.asarray(keypoints)
    if labels.shape != shape:
        raise ValueError(f"labels have shape {labels.shape}; the person photo is {shape[0]}x{shape[1]}")
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() > 19:
        raise ValueError("labels must be integers 0..19 (the LIP label set)")
    if keypoints.shape != (16, 2):
        raise ValueError(f"keypoints must be 16 LIP joints as a (16, 2) x/y array, got {keypoints.shape}")
    return labels.astype(np.uint8), keypoints.astype(np.int64)
