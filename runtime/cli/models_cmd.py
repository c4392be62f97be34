"""synth, export, validate: build and check models_onnx/ (needs the export extra)."""
from __future__ import annotations

from pathlib import Path

import typer

from ..errors import InputError
from .common import MODELS, parse_scales
from .errors import friendly, require_export_side

FAMILIES = ("grayxu", "cpvton")
CHECKPOINTS = typer.Option(Path("checkpoints"), help="folder with the source checkpoints")
FAMILY = typer.Option(None, help="grayxu or cpvton when both are present")


def register(app: typer.Typer):
    app.command(help="Write seeded, UNTRAINED checkpoints in the published formats.\n\n"
                     "Example: tryon synth --out checkpoints/synthetic --family grayxu --family cpvton")(synth)
    app.command(help="Convert checkpoints to ONNX and validate them against TensorFlow/PyTorch.\n\n"
                     "Example: tryon export --checkpoints checkpoints --out models_onnx")(export)
    app.command(help="Write a reduced-precision JPP-Net and record its agreement with fp32 on real person "
                     "photos: int8 (static QDQ, calibrated on the photos) for the CPU, fp16 for CUDA, or "
                     "bf16 (no file: jppnet.onnx on the OpenVINO execution provider, tryon-onnx[openvino]) "
                     "for a CPU with avx512_bf16 or AMX. Used only where --precision asks for it.\n\n"
                     "Examples:\n\n"
                     "  tryon quantize ../shared/data/viton/person/*.jpg --models models_onnx\n\n"
                     "  tryon quantize --precision fp16 ../shared/data/viton/person/*.jpg\n\n"
                     "  tryon quantize --precision bf16 ../shared/data/viton/person/*.jpg")(quantize)
    app.command(help="Re-run the framework-vs-ONNX validation for already exported models.\n\n"
                     "Example: tryon validate --checkpoints checkpoints --models models_onnx")(validate)


@friendly
def synth(out: Path = typer.Option(Path("checkpoints/synthetic"), help="folder to write"),
          family: list[str] = typer.Option(["grayxu"], help="CP-VTON family: grayxu and/or cpvton"),
          jppnet: str = typer.Option("full", help="JPP-Net size: full (the published graph) or reduced (tests)"),
          seed: int = typer.Option(0, help="random seed")):
    require_export_side()
    if unknown := [f for f in family if f not in FAMILIES]:
        raise InputError(f"family {unknown[0]!r} is not one of {', '.join(FAMILIES)}")
    from tryon.export.synthetic import write_synthetic

    written = write_synthetic(out, families=tuple(family), jppnet=jppnet, seed=seed)
    for name, path in written.items():
        typer.echo(f"wrote {name}: {path}")
    typer.secho(f"These checkpoints are UNTRAINED: results made with them are noise ({out}/README.md).",
                fg="yellow")


@friendly
def export(checkpoints: Path = CHECKPOINTS,
           out: Path = typer.Option(Path("models_onnx"), help="folder for the .onnx files and manifest.json"),
           family: str = FAMILY, opset: int = typer.Option(17, help="ONNX opset")):
    require_export_side()
    from tryon.export.export_models import export_all

    entries = export_all(checkpoints, out, family=family, opset=opset)
    _print_validation(entries)
    typer.echo(f"manifest: {out / 'manifest.json'}")


@friendly
def validate(checkpoints: Path = CHECKPOINTS, models: Path = MODELS, family: str = FAMILY):
    require_export_side()
    from tryon.export.export_models import validate_all

    _print_validation(validate_all(checkpoints, models, family=family))


@friendly
def quantize(photos: list[Path] = typer.Argument(..., help="real person photos: to calibrate int8 on, "
                                                          "and to measure the agreement with fp32"),
             models: Path = MODELS,
             precision: str = typer.Option("int8", help="int8 (CPU), fp16 (CUDA) or bf16 (CPU, OpenVINO)"),
             scales: str = typer.Option("1.0,0.75,1.25", help="JPP-Net scales to calibrate and compare at"),
             mirror: bool = typer.Option(True, help="run the mirrored photos too")):
    require_export_side(("onnx",))  # with onnxruntime's own quantisation and fp16 tools
    from tryon.export.quantize import quantize_jppnet

    from ..models.manifest import ModelEntry

    entry = ModelEntry.from_json(quantize_jppnet(models, photos, parse_scales(scales), mirror, precision))
    done = (f"recorded bf16 in {models / 'manifest.json'}: {entry.file} on {entry.execution_provider['name']}"
            if precision == "bf16" else f"wrote {models / entry.file}")
    typer.echo(f"{done}; agreement with fp32: {entry.agreement.to_json()}")


def _print_validation(entries: dict[str, dict]):
    from tryon.export.export_models import max_abs_diffs

    for name, entry in entries.items():
        verdict = "passed" if entry.get("validation", entry).get("passed") else "FAILED"
        diffs = ", ".join(f"{k} {v:.2e}" for k, v in max_abs_diffs(entry).items())
        typer.echo(f"{name}: validation {verdict}; max abs diff {diffs}")
