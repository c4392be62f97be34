"""TryOn: a person photo and a garment photo in, the person wearing the garment out.

Follow one photo: `TryOn.predict` -> `predict_batch` -> `_prepare` (decode, brightness,
JPP-Net, crop, crossed arms) -> `CpvtonStage.run_batch` (agnostic, GMM, TOM) -> `Job.finish`
(keep_back) -> `Job.result`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import brightness
from .cpvton_stage import CpvtonStage
from .images import load_rgb
from .keep_background import keep_background
from .keypoints import crossed_arms, lip_to_openpose
from .model_dir import ModelDir
from .parse_stage import ParseStage, open_jppnet
from .person_crop import CannotFrame, crop_person, pose_box, resize_person
from .session import SessionOptions
from .timing import Timer

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


@dataclass(frozen=True)
class Flags:
    """The seed's five predict() switches."""
    need_pre: bool = True
    need_bright: bool = False
    keep_back: bool = False
    need_dilate: bool = False
    check_dirty: bool = False


@dataclass
class Job:
    """One pair on its way through the pipeline."""
    timer: Timer
    cloth: np.ndarray
    confidence: float
    reason: str = ""
    person: np.ndarray | None = None
    labels: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    out: object = None
    image: np.ndarray | None = None

    def finish(self, out, flags: Flags):
        self.out, self.image = out, out.image
        if flags.keep_back:
            with self.timer("total"), self.timer("keep_back"):
                self.image = keep_background(self.person, out.image, self.labels, flags.need_dilate)

    def result(self, intermediates: bool) -> TryOnResult:
        if self.reason:
            return TryOnResult(self.person, 0.0, self.timer.ms, self.reason, self._extras(intermediates))
        return TryOnResult(self.image, self.confidence, self.timer.ms, "", self._extras(intermediates))

    def _extras(self, wanted: bool) -> dict[str, np.ndarray]:
        if not wanted:
            return {}
        extras = {"person": self.person, "labels": self.labels, "keypoints": self.keypoints}
        if self.out is not None:
            extras.update(warped_cloth=self.out.warped_cloth, mask=self.out.mask, rendered=self.out.rendered)
        return extras


class TryOn:
    def __init__(self, parse: ParseStage, cpvton: CpvtonStage, models: ModelDir, jppnet_graph: str = "jppnet"):
        self.parse = parse
        self.cpvton = cpvton
        self.models = models
        self.jppnet_graph = jppnet_graph  # the manifest entry JPP-Net runs from

    @classmethod
    def from_dir(cls, path: str | Path = "models_onnx", provider: str = "auto", threads: int = 0,
                 scales=(1.0, 0.75, 1.25), mirror: bool = True, precision: str = "fp32") -> "TryOn":
        models = ModelDir.open(path)
        options = SessionOptions(provider=provider, threads=threads)
        graph, jppnet = open_jppnet(models, options, precision)
        return cls(ParseStage(jppnet, scales, mirror), CpvtonStage.from_dir(path, options), models, graph)

    @property
    def synthetic(self) -> bool:
        return any(self.models.synthetic(name) for name in ("jppnet", "gmm", "tom"))

    def predict(self, person, cloth, need_pre: bool = True, need_bright: bool = False,
                keep_back: bool = False, need_dilate: bool = False, check_dirty: bool = False,
                labels: np.ndarray | None = None, keypoints: np.ndarray | None = None,
                intermediates: bool = False) -> TryOnResult:
        """The seed's predict() with its bugs fixed. Pass `labels` (HxW LIP labels) and
        `keypoints` (16x2 LIP, x/y) of the person photo to skip JPP-Net."""
        flags = Flags(need_pre, need_bright, keep_back, need_dilate, check_dirty)
        return self.predict_batch([(person, cloth)], flags, [(labels, keypoints)], intermediates)[0]

    def predict_batch(self, pairs, flags: "Flags | None" = None, parses=None,
                      intermediates: bool = False) -> list[TryOnResult]:
        """Many (person, cloth) pairs: JPP-Net runs per photo (sizes differ), GMM and TOM run
        once over every photo that passed. `parses` optionally gives (labels, keypoints) per pair."""
        flags = flags or Flags()
        parses = parses or [(None, None)] * len(pairs)
        jobs = [self._prepare(p, c, flags, lab, kp) for (p, c), (lab, kp) in zip(pairs, parses)]
        ready = [job for job in jobs if not job.reason]
        if ready:
            batch = Timer()
            with batch("cpvton"):
                outs = self.cpvton.run_batch([j.person for j in ready], [j.cloth for j in ready],
                                             [j.labels for j in ready],
                                             [self._family_keypoints(j.keypoints) for j in ready])
            share = batch.ms["cpvton"] / len(ready)
            for job, out in zip(ready, outs):
                job.timer.add("cpvton", out.timings_ms)
                job.timer.ms["total"] += share
                job.finish(out, flags)
        return [job.result(intermediates) for job in jobs]

    def _prepare(self, person, cloth, flags: "Flags", labels, keypoints) -> "Job":
        timer = Timer()
        with timer("total"):
            with timer("decode"):
                person = load_rgb(person, "person photo")
                cloth = self.cpvton.fit_cloth(load_rgb(cloth, "garment photo"))
            if flags.need_bright:
                with timer("brightness"):
                    person = brightness.enhance(person)
            labels, keypoints, confidence = self._parse(person, labels, keypoints, timer)
            job = Job(timer, cloth, confidence)
            with timer("crop"):
                try:
                    if flags.need_pre:
                        framed = crop_person(person, labels, keypoints, pose_box(keypoints, *labels.shape))
                    else:
                        framed = resize_person(person, labels, keypoints)
                except CannotFrame as exc:
                    framed = resize_person(person, labels, keypoints)
                    job.reason = str(exc)
            job.person, job.labels, job.keypoints = framed
            if not job.reason and flags.check_dirty and crossed_arms(job.keypoints):
                job.reason = "crossed arms: a wrist lies inside the torso (check_dirty)"
        return job

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
