"""GMM / TOM `.pth` -> gmm.onnx / tom.onnx and the graphs the runtime prefers, each checked
against the torch original.

Exporter: torch.onnx's dynamo exporter (the TorchScript one is deprecated). It gets
a batch-2 example and a symbolic batch dimension, so the files take any batch.
In the GMM the original 5-D TPS is replaced by its exact linear form, one MatMul
with a constant [49152, 25] matrix (see cpvton_networks.tps_matrix); the
validation runs the original TPS in torch, so it also proves that replacement.

Besides the two networks whole, the export writes what a person dressed in many garments
runs: GMM as two graphs, `gmm_person.onnx` (agnostic -> L2-normalised person features, the
half that never sees the garment, run once per person) and `gmm_garment.onnx` (features +
garment -> theta, grid, warped cloth), validated together, as the runtime chains them, against
the whole torch GMM; and `tom.winograd.onnx`, TOM with its large 3x3 convolutions rewritten as
Winograd convolutions (export/winograd.py) for the CPU, validated like tom.onnx.

The validation garments have a real garment photo's statistics (hard edges, stripes,
a print, JPEG texture): on smooth ones a wrong warp hides. On such garments the
warped cloth's float difference is no measure: grid_sample turns the grid's 1e-5
float noise into 1e-3 at every sharp edge, and torch against itself (batch of one
against batch of eight) differs as much. So the grid, at 1e-4, is the decisive check
of the warp, and the warped cloth is judged as TOM sees it, after the pipeline's
uint8 cast: the steps it moves there, and on how many values.
"""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import onnx
import torch
from tryon.models.session import SessionOptions, create_session
from tryon.stages.agnostic import HEIGHT, WIDTH, agnostic_representation, to_unit_range
from tryon.stages.cpvton import run_gmm_halves, to_uint8

from . import manifest, winograd
from .cpvton_checkpoint import load_network
from .cpvton_networks import GMM, LinearTpsGridGen, UnetGenerator, tom_outputs, warp_cloth
from .errors import CheckpointError, ExportValidationError
from .sources import is_synthetic

GMM_IO = (("agnostic", "cloth"), ("theta", "grid", "warped_cloth"))
TOM_IO = (("agnostic", "warped_cloth"), ("rendered", "mask", "tryon"))
# Graph name (as in manifest.json) -> (file, inputs, outputs).
GRAPHS = {
    "gmm": ("gmm.onnx", *GMM_IO),
    "gmm_person": ("gmm_person.onnx", ("agnostic",), ("person_features",)),
    "gmm_garment": ("gmm_garment.onnx", ("person_features", "cloth"), GMM_IO[1]),
    "tom": ("tom.onnx", *TOM_IO),
    "tom_winograd": ("tom.winograd.onnx", *TOM_IO),
}
# Each check runs graphs against the torch network in one go: GMM's halves only exist as a pair.
CHECKS = {"gmm": ("gmm",), "gmm_halves": ("gmm_person", "gmm_garment"), "tom": ("tom",),
          "tom_winograd": ("tom_winograd",)}
# TOM's 3x3 convolutions on inputs of 32x24 and more are rewritten: those at 8x6 and 16x12 ran
# slower rewritten (their transformed weights, made at each run and 4x the weights, cost more
# to write and read than the products saved), and the 128x96 one has 64 outputs, under
# winograd.MIN_CHANNELS (rewritten, it saved nothing measurable).
TOM_WINOGRAD_MIN_PIXELS = 32 * 24


@dataclass(frozen=True)
class Uint8Steps:
    """Judges an output after the runtime's uint8 cast (cpvton_stage.to_uint8), which is all TOM sees."""
    max_step: int
    max_fraction: float  # of the values that move at all

    def measure(self, got: np.ndarray, expected: np.ndarray) -> dict:
        steps = np.abs(to_uint8(got).astype(np.int16) - to_uint8(expected))
        return {"max_step": int(steps.max()), "fraction": float((steps > 0).mean())}

    def holds(self, measured: dict) -> bool:
        return measured["max_step"] <= self.max_step and measured["fraction"] <= self.max_fraction


# Every output's bound, in one place (as optimum's exporter keeps its per-output tolerances):
# a float is the largest absolute difference allowed. The warped cloth's bound comes from the 8
# VITON garments through synthetic GMMs of both families: ONNX against torch moves at most 1 step,
# on 0.57-0.63% of values; torch against itself (batch of 1 against 8, or with the linear TPS)
# 0.80-0.98%. Hence at most 1 step, on at most 2%. The drawn validation garments give 0.16%.
TOLERANCE = {"theta": 1e-4, "grid": 1e-4, "warped_cloth": Uint8Steps(max_step=1, max_fraction=0.02),
             "person_features": 1e-5, "rendered": 1e-3, "mask": 1e-3, "tryon": 1e-3}
# (garments, persons): batch 1, batch 4 of four persons, and one person in 4 garments (GMM's
# person half then runs once, at batch 1, as in TryOn.dress).
VALIDATION_CASES = ((1, 1), (4, 4), (4, 1))
INPUTS_DESCRIPTION = ("synthetic person-like agnostic (runtime.agnostic from a drawn LIP label map, "
                      "keypoints and smooth photo) and garment photos with hard edges, stripes, a print "
                      "and JPEG texture: batch 1, batch 4, and one person in 4 garments")


class GmmPersonForExport(torch.nn.Module):
    def __init__(self, gmm: GMM):
        super().__init__()
        self.gmm = gmm

    def forward(self, agnostic):
        return self.gmm.person_features(agnostic)


class GmmGarmentForExport(torch.nn.Module):
    def __init__(self, gmm: GMM):
        super().__init__()
        self.gmm = gmm
        self.tps = LinearTpsGridGen()

    def forward(self, person_features, cloth):
        theta = self.gmm.garment_theta(person_features, cloth)
        grid = self.tps(theta)
        return theta, grid, warp_cloth(cloth, grid)


class GmmForExport(GmmGarmentForExport):
    """The whole GMM: the person half, then the garment half (regress_theta's composition)."""

    def forward(self, agnostic, cloth):
        return super().forward(self.gmm.person_features(agnostic), cloth)


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


def sharp_garment_sample(index: int = 0) -> np.ndarray:
    """256x192x3 uint8 with a real garment photo's statistics (the VITON garments': 1-10 grey levels
    of mean horizontal gradient, 1-3% of steps over 80): a hard-edged T-shirt on white, printed
    stripes, lettering and a disc, folds, fabric noise, JPEG-compressed as catalogue photos are."""
    rng = np.random.default_rng(index)
    shirt = np.zeros((HEIGHT, WIDTH), np.uint8)
    sleeve = 40 + 25 * (index % 3)  # short, elbow, long
    cv2.rectangle(shirt, (52, 50), (140, 236), 1, -1)
    cv2.fillPoly(shirt, [np.array([(52, 50), (12, 50 + sleeve), (32, 66 + sleeve), (52, 92)]),
                         np.array([(140, 50), (180, 50 + sleeve), (160, 66 + sleeve), (140, 92)])], 1)
    cv2.ellipse(shirt, (96, 50), (20, 14), 0, 0, 180, 0, -1)  # neckline
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    base, accent = rng.integers(15, 200, 3), rng.integers(40, 250, 3)
    across = (yy, xx, yy + xx)[index % 3]  # horizontal, vertical or diagonal stripes
    fabric = np.where((across // (6 + 3 * (index % 4)) % 2 == 0)[..., None], base, accent).astype(np.uint8)
    cv2.putText(fabric, "TRY", (62, 150), cv2.FONT_HERSHEY_SIMPLEX, 1.3, (250, 250, 250), 3, cv2.LINE_8)
    cv2.circle(fabric, (96, 190), 16, [int(c) for c in 255 - base], -1)
    folds = 12 * np.sin(xx / 9.0 + index) * np.cos(yy / 31.0)
    image = fabric + folds[..., None] + rng.normal(0, 4, fabric.shape)
    image = np.clip(np.where(shirt[..., None] == 1, image, 255), 0, 255).astype(np.uint8)
    return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1], cv2.IMREAD_COLOR)


def validation_inputs(family: str, batch: int, persons: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(agnostic [N, C, 256, 192], cloth [N, 3, 256, 192]) float32: N garments, sample i on person
    i % persons (by default each sample a different person)."""
    persons = persons or batch
    agnostic, cloth = [], []
    for i in range(batch):
        photo, labels, keypoints = person_sample(shift=6 * (i % persons))
        agnostic.append(agnostic_representation(photo, labels, keypoints[family], family))
        cloth.append(to_unit_range(sharp_garment_sample(i)).transpose(2, 0, 1))
    return np.stack(agnostic), np.stack(cloth)


# ---- export and validation -------------------------------------------------------------------

def export_cpvton(gmm_pth: str | Path, tom_pth: str | Path, models_dir: str | Path, opset: int = 17) -> dict:
    """Export every graph of GRAPHS into models_dir, validate each against torch, record them in
    manifest.json; returns the manifest entries by graph name."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    gmm, tom, family = _load_pair(gmm_pth, tom_pth)
    entries = {}
    for check, model, pth in (("gmm", gmm, gmm_pth), ("gmm_halves", gmm, gmm_pth), ("tom", tom, tom_pth),
                              ("tom_winograd", tom, tom_pth)):
        extra = _write(check, model, family, models_dir, opset)
        entries.update(_validate_and_record(check, model, family, pth, models_dir, opset, extra))
    return entries


def validate_cpvton(models_dir: str | Path, gmm_pth: str | Path, tom_pth: str | Path) -> dict:
    """Re-run the torch-vs-ONNX check of gmm.onnx, tom.onnx and of the other graphs present;
    raises when beyond tolerance. The report has an entry per graph (GMM's halves share theirs)."""
    gmm, tom, family = _load_pair(gmm_pth, tom_pth)
    models_dir = Path(models_dir)
    report = {}
    for check, graphs in CHECKS.items():
        if check in ("gmm", "tom") or all((models_dir / GRAPHS[name][0]).is_file() for name in graphs):
            validation = _validation(check, gmm if check.startswith("gmm") else tom, family, models_dir)
            report.update({name: validation for name in graphs})
    return report


def _load_pair(gmm_pth, tom_pth):
    print(f"[cpvton] loading {gmm_pth} and {tom_pth} ...", flush=True)
    gmm, gmm_family = load_network(gmm_pth, "gmm")
    tom, tom_family = load_network(tom_pth, "tom")
    if gmm_family != tom_family:
        raise CheckpointError(f"GMM {gmm_pth} is {gmm_family} but TOM {tom_pth} is {tom_family}: "
                         "use the two files of one family")
    return gmm, tom, gmm_family


def _wrapped(name: str, model):
    wrapper = {"gmm": GmmForExport, "gmm_person": GmmPersonForExport, "gmm_garment": GmmGarmentForExport,
               "tom": TomForExport}[name]
    return wrapper(model).eval()


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


def _write(check: str, model, family: str, models_dir: Path, opset: int) -> dict:
    """Write the graphs of a check; returns what their manifest entries add."""
    if check == "tom_winograd":
        graph = onnx.load(str(models_dir / GRAPHS["tom"][0]))
        rewritten = winograd.rewrite(graph, min_pixels=TOM_WINOGRAD_MIN_PIXELS)
        onnx.save(graph, str(models_dir / GRAPHS[check][0]))
        print(f"[{check}] wrote {GRAPHS[check][0]} ({rewritten} convolutions rewritten)", flush=True)
        return {"winograd_convolutions": rewritten}
    for name in CHECKS[check]:
        print(f"[{name}] exporting to {GRAPHS[name][0]} ({family}), opset {opset} ...", flush=True)
        _export(name, model, family, models_dir / GRAPHS[name][0], opset)
    return {}


def _export(name: str, model, family: str, path: Path, opset: int):
    _, inputs, outputs = GRAPHS[name]
    agnostic, cloth = (torch.from_numpy(a) for a in validation_inputs(family, 2))
    example = (agnostic, cloth)
    if name == "gmm_person":
        example = (agnostic,)
    elif name == "gmm_garment":
        with torch.no_grad():
            example = (model.person_features(agnostic), cloth)
    batch = torch.export.Dim("N", min=1, max=1024)
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(
            _wrapped(name, model), example, input_names=list(inputs), output_names=list(outputs),
            dynamic_shapes=tuple({0: batch} for _ in inputs), opset_version=opset, dynamo=True, verbose=False)
    program.save(str(path), external_data=False)  # one self-contained file: manifest hashes one file
    # The exporter builds at its own minimum opset and converts down; make sure it did.
    written = {o.domain: o.version for o in onnx.load(str(path), load_external_data=False).opset_import}
    if written.get("", written.get("ai.onnx")) != opset:
        raise ExportValidationError(f"{path} was written with opset {written}, not {opset}")


def _torch_outputs(check: str, model, agnostic: np.ndarray, second: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        a, b = torch.from_numpy(agnostic), torch.from_numpy(second)
        if check.startswith("gmm"):
            outputs = dict(zip(GMM_IO[1], reference_gmm(model, a, b)))
            if check == "gmm_halves":
                outputs["person_features"] = model.person_features(a)
        else:
            outputs = dict(zip(TOM_IO[1], tom_outputs(model, a, b)))
    return {k: v.numpy() for k, v in outputs.items()}


def _onnx_outputs(check: str, models_dir: Path):
    """run(agnostic, second, persons) -> {output: array}: the check's graphs run as the runtime
    runs them (cpvton_stage); the first `persons` rows of agnostic are the distinct persons."""
    cpu = SessionOptions(provider="cpu")
    if check == "gmm_halves":
        person, garment = (create_session(models_dir / GRAPHS[name][0], cpu) for name in CHECKS[check])

        def run_halves(agnostic, cloth, persons):
            owners = np.arange(len(cloth)) % persons
            chained = run_gmm_halves(person, garment, agnostic[:persons], owners, cloth, GMM_IO[1])
            (features,) = person.run(["person_features"], {"agnostic": agnostic})
            return {**dict(zip(GMM_IO[1], chained)), "person_features": features}
        return run_halves
    # The Winograd graph makes its transformed weights at each run: opened as cpvton_stage.open_tom does.
    session = create_session(models_dir / GRAPHS[check][0], replace(cpu, fold_constants=check != "tom_winograd"))
    _, inputs, outputs = GRAPHS[check]
    return lambda agnostic, second, persons: dict(zip(outputs, session.run(list(outputs),
                                                                            dict(zip(inputs, (agnostic, second))))))


def _validation(check: str, model, family: str, models_dir: Path) -> dict:
    run = _onnx_outputs(check, models_dir)
    diffs: dict[str, float] = {}
    steps: dict[str, dict] = {}
    for batch, persons in VALIDATION_CASES:
        agnostic, cloth = validation_inputs(family, batch, persons)
        # TOM gets the garment photo as its warped cloth: realistic enough, and no GMM needed.
        expected = _torch_outputs(check, model, agnostic, cloth)
        got = run(agnostic, cloth, persons)
        for output, value in expected.items():
            diffs[output] = max(diffs.get(output, 0.0), float(np.abs(got[output] - value).max()))
            if isinstance(TOLERANCE[output], Uint8Steps):
                measured = TOLERANCE[output].measure(got[output], value)
                previous = steps.get(output, measured)
                steps[output] = {k: max(measured[k], previous[k]) for k in measured}
    failed = [k for k in diffs if not _within(k, diffs[k], steps.get(k))]
    report = {"max_abs_diff": diffs, "uint8_steps": steps, "tolerance": {k: _bound(k) for k in diffs},
              "passed": not failed, "inputs": INPUTS_DESCRIPTION}
    files = " -> ".join(GRAPHS[name][0] for name in CHECKS[check])
    print(f"[{check}] torch vs onnxruntime: " + ", ".join(_judged(k, diffs[k], steps.get(k)) for k in diffs),
          flush=True)
    if failed:
        raise ExportValidationError(f"{files} differs from the torch model beyond tolerance: "
                                    + "; ".join(_judged(k, diffs[k], steps.get(k)) for k in failed))
    return report


def _within(output: str, diff: float, steps: dict | None) -> bool:
    tolerance = TOLERANCE[output]
    return tolerance.holds(steps) if isinstance(tolerance, Uint8Steps) else diff <= tolerance


def _bound(output: str):
    tolerance = TOLERANCE[output]
    if isinstance(tolerance, Uint8Steps):
        return {"uint8_max_step": tolerance.max_step, "uint8_max_fraction": tolerance.max_fraction}
    return tolerance


def _judged(output: str, diff: float, steps: dict | None) -> str:
    tolerance = TOLERANCE[output]
    if steps is None:
        return f"{output} max |diff| {diff:.2e} (tol {tolerance:.0e})"
    return (f"{output} in uint8: up to {steps['max_step']} step(s), on {steps['fraction']:.2%} of values "
            f"(tol {tolerance.max_step} step on {tolerance.max_fraction:.0%}; float max |diff| {diff:.2e})")


def _validate_and_record(check: str, model, family: str, pth, models_dir: Path, opset: int,
                         extra: dict) -> dict[str, dict]:
    graphs = CHECKS[check]
    try:
        validation = _validation(check, model, family, models_dir)
    except ExportValidationError:
        for name in graphs:  # an unvalidated file must not be picked up by a stale manifest entry
            (models_dir / GRAPHS[name][0]).unlink()
        raise
    pth = Path(pth)
    source = {"path": str(pth), "sha256": manifest.source_sha256(pth), "format": "torch state_dict",
              # Synthetic files have the published format exactly, so only their folder's
              # README marker (written by `tryon synth`) tells them apart.
              "synthetic": is_synthetic(pth)}
    return {name: manifest.record(models_dir, name, {"file": GRAPHS[name][0], "family": family, "opset": opset,
                                                     "source": source, **extra, "validation": validation})
            for name in graphs}
