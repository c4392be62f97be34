"""CP-VTON's two networks over ONNX Runtime: agnostic -> GMM -> uint8 round trip -> TOM -> image.

The seed's arithmetic is kept where it shows in the pixels: the warped cloth is
quantised to uint8 between GMM and TOM (cp-vton wrote it to disk, GrayXu cast it
in memory), and the try-on becomes uint8 by truncation of (x + 1) / 2 * 255.

The person's share (the agnostic and, where the export split GMM, its person half
`gmm_person.onnx`) runs once per distinct person of a batch; `gmm_garment.onnx` per garment.
TOM runs `tom.winograd.onnx` on the CPU where the export wrote it; an older export's folder
runs gmm.onnx and tom.onnx.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError, ModelsMissingError
from ..models.graphs import GMM_GARMENT, GMM_PERSON, open_tom
from ..models.model_dir import ModelDir
from ..models.session import SessionOptions, create_session
from ..timing import Timer
from .agnostic import HEIGHT, WIDTH, agnostic_representation, family_constants, to_unit_range
from .keypoints import lip_to_openpose

WHITE = 255  # garment photos are shot on white: padding must not add a frame around the cloth


@dataclass
class CpvtonResult:
    image: np.ndarray  # 256x192x3 uint8 try-on
    garment: np.ndarray  # 256x192x3 uint8, the garment photo fitted to the frame (GMM's input)
    warped_cloth: np.ndarray  # 256x192x3 uint8, what TOM was given
    mask: np.ndarray  # 256x192 float32 in [0, 1], the weight of the warped cloth in the composite
    rendered: np.ndarray  # 256x192x3 uint8, TOM's rendered person
    agnostic: np.ndarray  # [C, 256, 192] float32
    timings_ms: dict[str, float] = field(default_factory=dict)  # per step, for the whole batch it ran in


def to_uint8(nchw: np.ndarray) -> np.ndarray:
    """[-1, 1] float [N, 3, H, W] -> [N, H, W, 3] uint8 by truncation, as the seed's casts did."""
    scaled = (nchw + np.float32(1)) * np.float32(0.5) * np.float32(255)
    # The seed clamped before its cast; values only leave [0, 255] by float rounding.
    return np.clip(scaled, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def fit_cloth(cloth_rgb: np.ndarray) -> np.ndarray:
    """Any garment photo -> 256x192x3 uint8: shrunk or enlarged to fit, aspect kept, padded white."""
    cloth_rgb = np.asarray(cloth_rgb)
    if cloth_rgb.ndim != 3 or cloth_rgb.shape[2] != 3 or cloth_rgb.dtype != np.uint8 or 0 in cloth_rgb.shape:
        raise InputError(f"garment must be an HxWx3 uint8 RGB image, got {cloth_rgb.dtype} {cloth_rgb.shape}")
    h, w = cloth_rgb.shape[:2]
    if (h, w) == (HEIGHT, WIDTH):
        return cloth_rgb
    scale = min(HEIGHT / h, WIDTH / w)
    new_h, new_w = max(1, min(HEIGHT, round(h * scale))), max(1, min(WIDTH, round(w * scale)))
    resized = cv2.resize(cloth_rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
    out = np.full((HEIGHT, WIDTH, 3), WHITE, np.uint8)
    top, left = (HEIGHT - new_h) // 2, (WIDTH - new_w) // 2
    out[top:top + new_h, left:left + new_w] = resized
    return out


class CpvtonStage:
    def __init__(self, gmm_session, tom_session, family: str, gmm_person=None, graphs: tuple[str, ...] = ()):
        """gmm_session: the whole GMM (agnostic, cloth -> ...), or, with `gmm_person` (agnostic ->
        person_features) given, GMM's garment half (person_features, cloth -> ...). graphs: the
        manifest entries the sessions run, for records."""
        self.gmm = gmm_session
        self.gmm_person = gmm_person
        self.tom = tom_session
        self.family = family
        self.graphs = graphs
        channels = family_constants(family).channels
        shape = {i.name: i.shape for i in (gmm_person or gmm_session).get_inputs()}.get("agnostic")
        if shape is None or shape[1] != channels:
            raise ModelsMissingError(f"GMM takes agnostic {shape}, but the manifest's family needs "
                                     f"{channels} channels: re-run `tryon export`")

    @classmethod
    def from_dir(cls, path: str | Path, options: SessionOptions = SessionOptions()) -> "CpvtonStage":
        models = ModelDir.open(path)
        options = replace(options, spinning=False)  # short networks, each followed by another
        tom_graph, tom = open_tom(models, options)
        if models.has(GMM_PERSON) and models.has(GMM_GARMENT):
            return cls(create_session(models.file(GMM_GARMENT), options), tom, models.family,
                       create_session(models.file(GMM_PERSON), options), (GMM_PERSON, GMM_GARMENT, tom_graph))
        return cls(create_session(models.file("gmm"), options), tom, models.family, graphs=("gmm", tom_graph))

    def run(self, person: np.ndarray, cloth: np.ndarray, labels: np.ndarray, keypoints: np.ndarray) -> CpvtonResult:
        """One 256x192 person (RGB uint8, LIP labels, 16 LIP keypoints) wearing one garment
        photo of any size."""
        return self.run_batch([person], [cloth], [labels], [keypoints])[0]

    def run_batch(self, persons, cloths, labels, keypoints, warp_jpeg: bool = False) -> list[CpvtonResult]:
        """Lists of run()'s arguments; GMM and TOM each run once over the whole batch, and the
        person's share of the work (agnostic, GMM's person half) once per distinct person in it.
        The garments are fitted to 256x192 and the LIP keypoints mapped to the family's joints here.
        warp_jpeg: hand the warped garment to TOM through a JPEG file, as cp-vton's test.py did."""
        if not (len(persons) == len(cloths) == len(labels) == len(keypoints)) or not persons:
            raise InputError("run_batch needs non-empty lists of equal length: persons, cloths, labels, keypoints")
        timer = Timer()
        with timer("agnostic"):
            firsts, owners = distinct_persons(persons, labels, keypoints)
            joints = [lip_to_openpose(k) if self.family == "cpvton" else k for k in keypoints]  # the family's order
            agnostic = np.stack([agnostic_representation(persons[i], labels[i], joints[i], self.family) for i in firsts])
            fitted = [fit_cloth(c) for c in cloths]
            cloth = np.stack([to_unit_range(c).transpose(2, 0, 1) for c in fitted])
        with timer("gmm"):
            warped_u8 = to_uint8(self.warp(agnostic, owners, cloth))
            if warp_jpeg:
                warped_u8 = jpeg_round_trip(warped_u8)
        with timer("tom"):
            warped_back = to_unit_range(warped_u8).transpose(0, 3, 1, 2)
            per_pair = agnostic if len(firsts) == len(owners) else agnostic[owners]
            rendered, mask, tryon = self.tom.run(["rendered", "mask", "tryon"],
                                                 {"agnostic": per_pair, "warped_cloth": warped_back})
        with timer("composite"):
            images, rendered_u8 = to_uint8(tryon), to_uint8(rendered)
        return [CpvtonResult(images[i], fitted[i], warped_u8[i], mask[i, 0], rendered_u8[i], agnostic[owners[i]],
                             dict(timer.ms)) for i in range(len(persons))]

    def warp(self, agnostic: np.ndarray, owners: np.ndarray, cloth: np.ndarray) -> np.ndarray:
        """GMM's warped cloth [N, 3, H, W]: garment i (`cloth[i]`) on person `agnostic[owners[i]]`."""
        if self.gmm_person is None:
            (warped,) = self.gmm.run(["warped_cloth"], {"agnostic": agnostic[owners], "cloth": cloth})
            return warped
        return run_gmm_halves(self.gmm_person, self.gmm, agnostic, owners, cloth)[0]


def run_gmm_halves(person, garment, agnostic: np.ndarray, owners: np.ndarray, cloth: np.ndarray,
                   outputs=("warped_cloth",)) -> list[np.ndarray]:
    """GMM through its two exported halves: the person half over the distinct persons
    (`agnostic` [P, C, H, W]), the garment half over the garments, each given the features of its
    person (`owners` [N]: indices into agnostic). The same arithmetic as the whole GMM."""
    (features,) = person.run(["person_features"], {"agnostic": agnostic})
    return garment.run(list(outputs), {"person_features": features[owners], "cloth": cloth})


def distinct_persons(persons, labels, keypoints) -> tuple[list[int], np.ndarray]:
    """(the first pair of each distinct person, each pair's person as an index into those firsts).
    Pairs share a person when photo, labels and keypoints are the same arrays or equal ones (same
    dtype, shape and values), as TryOn.dress gives one person's garments."""
    firsts, owners = [], []
    for i in range(len(persons)):
        owner = next((k for k, j in enumerate(firsts)
                      if all(_same(part[i], part[j]) for part in (persons, labels, keypoints))), None)
        if owner is None:
            firsts.append(i)
            owner = len(firsts) - 1
        owners.append(owner)
    return firsts, np.array(owners, dtype=np.int64)


def _same(a, b) -> bool:
    if a is b:
        return True
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))


def jpeg_round_trip(warped_u8: np.ndarray) -> np.ndarray:
    """cp-vton's hand-off from GMM to TOM: test.py saved each warped cloth with PIL as `<name>.jpg`
    (PIL's defaults: quality 75, 4:2:0, accurate DCT) and TOM's dataset read the file back with PIL.
    OpenCV's libjpeg-turbo, given the same settings, writes the same scan and decodes the same pixels.
    [N, H, W, 3] uint8 RGB in, the same shape out."""
    if warped_u8.ndim != 4 or warped_u8.shape[3] != 3 or warped_u8.dtype != np.uint8:
        raise InputError(f"jpeg_round_trip takes [N, H, W, 3] uint8 RGB, got {warped_u8.dtype} {warped_u8.shape}")
    settings = [cv2.IMWRITE_JPEG_QUALITY, 75, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420]
    out = np.empty_like(warped_u8)
    for i, rgb in enumerate(warped_u8):
        jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), settings)[1]
        out[i] = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out
