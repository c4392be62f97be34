"""Seeded, UNTRAINED GMM / TOM checkpoints in exactly the published `.pth` format.

They let the whole pipeline (export, validation, runtime, tests) run without the
real files. The weights are random, so the try-on pictures are meaningless; the
folder gets a README.md saying UNTRAINED, which is also how the exporter tells
them apart (the files themselves must not differ from the published layout).

Random weights alone give a degenerate GMM (BatchNorm statistics of 0/1 against
activations of any scale, theta pinned at +-1 by tanh), so the BatchNorm layers
are calibrated on the drawn validation samples and the last linear layer is
scaled to keep theta small: a gentle, non-trivial warp.
"""
from __future__ import annotations

from pathlib import Path

import torch
from tryon.errors import InputError

from .cpvton_checkpoint import build
from .cpvton_export import validation_inputs
from .sources import mark_untrained

FILE_NAMES = {"grayxu": {"gmm": "gmm.pth", "tom": "tom.pth"},
              "cpvton": {"gmm": "gmm_final.pth", "tom": "tom_final.pth"}}
THETA_SPREAD = 0.15  # std of theta before tanh on the calibration samples
CALIBRATION_BATCH = 4


def write_synthetic(out_dir: str | Path, family: str, seed: int = 0) -> dict[str, Path]:
    """Write the family's GMM and TOM state_dicts (names as published); returns {'gmm': path, 'tom': path}."""
    if family not in FILE_NAMES:
        raise InputError(f"unknown CP-VTON family {family!r}; known: {', '.join(FILE_NAMES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mark_untrained(out_dir)
    torch.manual_seed(seed)
    models = {"gmm": synthetic_gmm(family), "tom": build("tom", family).eval()}
    paths = {}
    for name, model in models.items():
        paths[name] = out_dir / FILE_NAMES[family][name]
        # The published files predate torch 1.6, so they use the legacy (non-zip) container.
        torch.save(model.state_dict(), paths[name], _use_new_zipfile_serialization=False)
        print(f"[synth] wrote {paths[name]} ({family} {name.upper()}, UNTRAINED, seed {seed})", flush=True)
    return paths


def synthetic_gmm(family: str) -> torch.nn.Module:
    gmm = build("gmm", family)
    agnostic, cloth = (torch.from_numpy(a) for a in validation_inputs(family, CALIBRATION_BATCH))
    calibrate_batchnorm(gmm, agnostic, cloth)
    scale_theta(gmm, agnostic, cloth)
    return gmm.eval()


def calibrate_batchnorm(gmm: torch.nn.Module, agnostic, cloth):
    """Running statistics = the statistics of the calibration batch, as training would approach."""
    norms = [m for m in gmm.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: one batch gives its exact statistics
    gmm.train()
    with torch.no_grad():
        gmm.regress_theta(agnostic, cloth)
    for norm in norms:
        norm.momentum = 0.1
    gmm.eval()


def scale_theta(gmm: torch.nn.Module, agnostic, cloth):
    linear = gmm.regression.linear
    with torch.no_grad():
        features = gmm.regression.conv(gmm.correlation(gmm.l2norm(gmm.extractionA(agnostic)),
                                                        gmm.l2norm(gmm.extractionB(cloth))))
        raw = features.reshape(features.size(0), -1) @ linear.weight.T
        linear.weight.mul_(THETA_SPREAD / float(raw.std()))
        linear.bias.zero_()  # the warp then depends on the inputs only, centred on the identity
