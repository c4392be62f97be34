"""info: versions, providers, and which models are where."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import typer

from ..bench.versions import installed_versions
from ..cpu import describe_cpu
from ..errors import ModelsMissingError, RuntimeSetupError
from ..models.graphs import JPPNET_BY_PRECISION, open_jppnet
from ..models.manifest import Agreement
from ..models.model_dir import MODEL_FILES, ModelDir
from ..models.session import (
    SessionOptions,
    available_providers,
    check_openvino_bf16,
    create_session,
    import_onnxruntime,
    providers_in_use,
)
from ..pipeline import PipelineSettings
from . import common
from .errors import friendly

PACKAGES = ("tryon-onnx", "onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "numpy",
            "opencv-python-headless", "torch", "tensorflow-cpu", "tf2onnx", "onnx")


def register(app: typer.Typer):
    app.command(help="Show versions, execution providers and the models found.\n\n"
                     "Example: tryon info --models models_onnx --provider cpu")(info)


@friendly
def info(models: Path = common.MODELS, provider: str = common.PROVIDER):
    typer.echo(f"python {platform.python_version()} on {platform.machine()} ({platform.system()})")
    typer.echo(f"cpu: {describe_cpu()}, {os.cpu_count()} cores")
    for name, version in installed_versions(*PACKAGES).items():
        typer.echo(f"  {name} {version}")
    typer.echo(f"providers available: {', '.join(available_providers())} "
               f"(onnxruntime {import_onnxruntime().__version__})")
    try:
        model_dir = ModelDir.open(models)
    except ModelsMissingError as exc:
        typer.echo(f"models: {exc}")
        return
    options = SessionOptions(provider=provider)
    for name in MODEL_FILES:
        if not model_dir.has(name):
            typer.echo(f"{name}: not exported")
            continue
        entry = model_dir.entry(name)
        session = create_session(model_dir.file(name), options)
        source = (entry.source and entry.source.path) or "?"
        kind = "SYNTHETIC (untrained)" if model_dir.synthetic(name) else "from " + source
        detail = entry.family or entry.variant or ""
        typer.echo(f"{name}: {entry.file} {detail} {kind}; providers in use: {', '.join(providers_in_use(session))}")
    if all(model_dir.has(name) for name in MODEL_FILES):
        for stage, graph in PipelineSettings(str(models), provider).build().graphs().items():
            typer.echo(f"fp32 {stage} runs {graph.file} on {', '.join(graph.providers)}")
    for precision, name in JPPNET_BY_PRECISION.items():
        if precision != "fp32":
            typer.echo(f"--precision {precision}: {_fast_mode(model_dir, name, precision, options)}")


def _fast_mode(model_dir: ModelDir, name: str, precision: str, options: SessionOptions) -> str:
    if precision == "bf16":  # a provider setting: whether it runs depends on this machine
        try:
            check_openvino_bf16(options.provider)
        except (ValueError, RuntimeSetupError) as exc:
            return f"cannot run here: {exc}"
    if not model_dir.has(name):
        return (f"not {'recorded' if precision == 'bf16' else 'written'} "
                f"(`tryon quantize --precision {precision} PHOTO ...`)")
    entry = model_dir.entry(name)
    runs_on = ""
    if precision == "bf16":
        runs_on = f" in bf16 on {', '.join(providers_in_use(open_jppnet(model_dir, options, precision)[1]))}"
    agreement = entry.agreement or Agreement()
    measured_on = ", ".join(agreement.jppnet_providers or []) or agreement.provider or "cpu"
    labels = agreement.label_agreement if agreement.label_agreement is not None else float("nan")
    photos = agreement.photos if agreement.photos is not None else "?"
    return (f"{entry.file}{runs_on}; labels {labels:.2%} equal to fp32 "
            f"on {photos} photos (measured on {measured_on})")
