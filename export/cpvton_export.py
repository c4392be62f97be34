"""GMM / TOM `.pth` -> gmm.onnx / tom.onnx, then a check against the torch original.

Exporter: torch.onnx's dynamo exporter (the TorchScript one is deprecated). It gets
a batch-2 example and a symbolic batch dimension, so the files take any batch.
In the GMM the original 5-D TPS is replaced by its exact linear form, one MatMul
with a constant [49152, 25] matrix (see cpvton_networks.tps_matrix); the
validation runs the original TPS in torch, so it also proves that replacement.
"""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import onnx
import torch

from tryon.runtime.agnostic import HEIGHT, WIDTH, agnostic_representation, to_unit_range
from tryon.runtime.session import SessionOptions, create_session

from . import manifest
from .cpvton_checkpoint import load_network
from .cpvton_networks import GMM, LinearTpsGridGen, UnetGenerator, tom_outputs, warp_cloth
from .errors import CheckpointError, ExportValidationError
from .sources import is_synthetic

GMM_IO = (("agnostic", "cloth"), ("theta", "grid", "warped_cloth"))
TOM_IO = (("agnostic", "warped_cloth"), ("rendered", "mask", "tryon"))
TOLERANCE = {"theta": 1e-4, "grid": 1e-4, "warped_cloth": 1e-3, "rendered": 1e-3, "mask": 1e-3, "tryon": 1e-3}
INPUTS_DESCRIPTION = ("synthetic person-like agnostic (runtime.agnostic from a drawn LIP label map, "
                      "keypoints and smooth photo) and smooth garment images, batch 1 and 2")


class GmmForExport(torch.nn.Module):
    def __init__(self, gmm: GMM):
        super().__init__()
        self.gmm = gmm
        self.tps = LinearTpsGridGen()

    def forward(self, agnostic, cloth):
        theta = self.gmm.regress_theta(agnostic, cloth)
        grid = self.tps(theta)
        return theta, grid, warp_cloth(cloth, grid)


class TomForExport(torch.nn.Module):
    def __init__(self, unet: UnetGenerator):
        super().__init__()
        self.unet = unet

    def forward(self, agnostic, warped_cloth):
        return tom_outputs(self.unet, agnostic, warped_cloth)


def reference_gmm(gmm: GMM, agnostic, cloth):
    """The published code path: original TPS, then grid_sample."""
    grid, theta = gmm(agnostic, cloth)
    return theta, grid, warp_cloth(cloth, grid)


# ---- realistic validation inputs -------------------------------------------------------------

# A standing person, in 256x192 pixels: (x, y) of the 16 LIP joints ...
LIP_POSE = np.array([(74, 246), (76, 200), (80, 150), (112, 150), (116, 200), (118, 246), (96, 150), (96, 100),
                     (96, 62), (96, 14), (46, 148), (54, 108), (66, 68), (126, 68), (138, 108), (146, 148)], float)
# ... and of the 18 OpenPose joints of the same person (nose, neck, r/l arm, r/l leg, eyes, ears).
OPENPOSE_POSE = np.array([(96, 40), (96, 62), (66, 68), (54, 108), (46, 148), (126, 68), (138, 108), (146, 148),
                          (80, 150), (76, 200), (74, 246), (112, 150), (116, 200), (118, 246), (90, 34), (102, 34),
                          (84, 38), (108, 38)], float)
LABEL_COLOURS = {0: (235, 235, 230), 2: (60, 40, 30), 13: (225, 180, 150), 5: (40, 90, 170), 14: (220, 175, 145),
                 15: (220, 175, 145), 9: (50, 50, 60), 16: (215, 170, 140), 17: (215, 170, 140), 18: (30, 30, 30),
                 19: (30, 30, 30)}


def person_sample(shift: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(256x192x3 uint8 photo, LIP labels, keypoints per family) of a drawn person, moved right by shift."""
    labels = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.ellipse(labels, (96, 34), (20, 24), 0, 0, 360, 2, -1)  # hair
    cv2.ellipse(labels, (96, 42), (16, 20), 0, 0, 360, 13, -1)  # face
    cv2.rectangle(labels, (66, 64), (126, 150), 5, -1)  # upper clothes
    cv2.line(labels, (66, 70), (46, 148), 14, 14)  # arms
    cv2.line(labels, (126, 70), (146, 148), 15, 14)
    cv2.rectangle(labels, (70, 150), (122, 190), 9, -1)  # pants, legs, shoes
    cv2.rectangle(labels, (70, 190), (94, 240), 16, -1)
    cv2.rectangle(labels, (98, 190), (122, 240), 17, -1)
    cv2.rectangle(labels, (68, 240), (94, 252), 18, -1)
    cv2.rectangle(labels, (98, 240), (124, 252), 19, -1)
    labels = np.roll(labels, shift, axis=1)
    palette = np.zeros((20, 3), np.uint8)
    for label, colour in LABEL_COLOURS.items():
        palette[label] = colour
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    shading = (12 * np.sin(yy / 23.0) + 10 * np.cos(xx / 17.0))[..., None]
    photo = np.clip(palette[labels].astype(np.float64) + shading, 0, 255).astype(np.uint8)
    photo = cv2.GaussianBlur(photo, (5, 5), 1.2)
    moved = np.array([shift, 0], float)
    return photo, labels, {"grayxu": LIP_POSE + moved, "cpvton": OPENPOSE_POSE + moved}


def garment_sample(hue: int = 0) -> np.ndarray:
    """256x192x3 uint8: a smooth T-shirt on white, as catalogue garment photos are."""
    shirt = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.rectangle(shirt, (52, 60), (140, 230), 1, -1)
    cv2.fillPoly(shirt, [np.array([(52, 60), (10, 110), (30, 130), (52, 100)]),
                         np.array([(140, 60), (182, 110), (162, 130), (140, 100)])], 1)
    cv2.ellipse(shirt, (96, 60), (18, 10), 0, 0, 180, 0, -1)  # neckline
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    colour = np.stack([120 + 60 * np.sin(xx / 20.0 + hue), 80 + 50 * np.cos(yy / 30.0),
                       150 + 40 * np.sin((xx + yy) / 25.0 - hue)], -1)
    image = np.where(shirt[..., None] == 1, colour, 255.0)
    return cv2.GaussianBlur(np.clip(image, 0, 255).astype(np.uint8), (5, 5), 1.0)


def validation_inputs(family: str, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(agnostic [N, C, 256, 192], cloth [N, 3, 256, 192]) float32, each sample a little different."""
    agnostic, cloth = [], []
    for i in range(batch):
        photo, labels, keypoints = person_sample(shift=6 * i)
        agnostic.append(agnostic_representation(photo, labels, keypoints[family], family))
        cloth.append(to_unit_range(garment_sample(hue=i)).transpose(2, 0, 1))
    return np.stack(agnostic), np.stack(cloth)


# ---- export and validation -------------------------------------------------------------------

def export_cpvton(gmm_pth: str | Path, tom_pth: str | Path, models_dir: str | Path, opset: int = 17) -> dict:
    """Export gmm.onnx and tom.onnx into models_dir, validate both, record them in manifest.json."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    gmm, tom, family = _load_pair(gmm_pth, tom_pth)
    entries = {}
    for name, model, pth in (("gmm", gmm, gmm_pth), ("tom", tom, tom_pth)):
        print(f"[{name}] exporting {Path(pth).name} ({family}) to {name}.onnx, opset {opset} ...", flush=True)
        _export(name, model, family, models_dir / f"{name}.onnx", opset)
        entries[name] = _validate_and_record(name, model, family, pth, models_dir, opset)
    return entries


def validate_cpvton(models_dir: str | Path, gmm_pth: str | Path, tom_pth: str | Path) -> dict:
    """Re-run the torch-vs-ONNX check for already exported files; raises when beyond tolerance."""
    gmm, tom, family = _load_pair(gmm_pth, tom_pth)
    return {name: _validation(name, model, family, Path(models_dir) / f"{name}.onnx")
            for name, model in (("gmm", gmm), ("tom", tom))}


def _load_pair(gmm_pth, tom_pth):
    print(f"[cpvton] loading {gmm_pth} and {tom_pth} ...", flush=True)
    gmm, gmm_family = load_network(gmm_pth, "gmm")
    tom, tom_family = load_network(tom_pth, "tom")
    if gmm_family != tom_family:
        raise CheckpointError(f"GMM {gmm_pth} is {gmm_family} but TOM {tom_pth} is {tom_family}: "
                         "use the two files of one family")
    return gmm, tom, gmm_family


def _wrapped(name: str, model):
    return (GmmForExport(model) if name == "gmm" else TomForExport(model)).eval()


@contextmanager
def _quiet_exporter():
    """The exporter's notes about its own internals (deprecations, missing torchvision, opset
    conversion) say nothing a user can act on; our prints report progress and the check."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _export(name: str, model, family: str, path: Path, opset: int):
    inputs, outputs = GMM_IO if name == "gmm" else TOM_IO
    agnostic, cloth = (torch.from_numpy(a) for a in validation_inputs(family, 2))
    batch = torch.export.Dim("N", min=1, max=1024)
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(
            _wrapped(name, model), (agnostic, cloth), input_names=list(inputs), output_names=list(outputs),
            dynamic_shapes=({0: batch}, {0: batch}), opset_version=opset, dynamo=True, verbose=False)
    program.save(str(path), external_data=False)  # one self-contained file: manifest hashes one file
    # The exporter builds at its own minimum opset and converts down; make sure it did.
    written = {o.domain: o.version for o in onnx.load(str(path), load_external_data=False).opset_import}
    if written.get("", written.get("ai.onnx")) != opset:
        raise ExportValidationError(f"{path} was written with opset {written}, not {opset}")


def _torch_outputs(name: str, model, agnostic: np.ndarray, second: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        a, b = torch.from_numpy(agnostic), torch.from_numpy(second)
        values = reference_gmm(model, a, b) if name == "gmm" else tom_outputs(model, a, b)
    return dict(zip((GMM_IO if name == "gmm" else TOM_IO)[1], (v.numpy() for v in values)))


def _validation(name: str, model, family: str, onnx_path: Path) -> dict:
    session = create_session(onnx_path, SessionOptions(provider="cpu"))
    inputs = (GMM_IO if name == "gmm" else TOM_IO)[0]
    diffs: dict[str, float] = {}
    for batch in (1, 2):
        agnostic, cloth = validation_inputs(family, batch)
        # TOM gets the smooth garment as its warped cloth: realistic enough, and no GMM needed.
        expected = _torch_outputs(name, model, agnostic, cloth)
        got = dict(zip(expected, session.run(list(expected), dict(zip(inputs, (agnostic, cloth))))))
        for output, value in expected.items():
            diffs[output] = max(diffs.get(output, 0.0), float(np.abs(got[output] - value).max()))
    report = {"max_abs_diff": diffs, "tolerance": {k: TOLERANCE[k] for k in diffs},
              "passed": all(diffs[k] <= TOLERANCE[k] for k in diffs), "inputs": INPUTS_DESCRIPTION}
    print(f"[{name}] torch vs onnxruntime, max |diff|: "
          + ", ".join(f"{k} {v:.2e} (tol {TOLERANCE[k]:.0e})" for k, v in diffs.items()), flush=True)
    if not report["passed"]:
        raise ExportValidationError(f"{onnx_path} differs from the torch model beyond tolerance: {diffs}")
    return report


def _validate_and_record(name: str, model, family: str, pth, models_dir: Path, opset: int) -> dict:
    onnx_path = models_dir / f"{name}.onnx"
    try:
        validation = _validation(name, model, family, onnx_path)
    except ExportValidationError:
        onnx_path.unlink()  # an unvalidated file must not be picked up by a stale manifest entry
        raise
    pth = Path(pth)
    entry = {"file": f"{name}.onnx", "family": family, "opset": opset,
             # Synthetic files have the published format exactly, so only their folder's
             # README marker (written by `tryon synth`) tells them apart.
             "source": {"path": str(pth), "sha256": manifest.source_sha256(pth), "format": "torch state_dict",
                        "synthetic": is_synthetic(pth)},
             "validation": validation}
    return manifest.record(models_dir, name, entry)

