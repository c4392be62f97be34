"""Which graph runs each stage, at which precision, on which provider: the one place that
chooses (the Winograd graphs on the CPU, the int8/fp16/bf16 JPP-Nets), and the files a
run can use, by hash (what every node of a cluster must share)."""
from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

from ..errors import InputError, ModelsMissingError
from .model_dir import ModelDir
from .session import PROVIDERS, SessionOptions, check_openvino_bf16, create_session, resolve_providers

GMM_PERSON, GMM_GARMENT, TOM_WINOGRAD = "gmm_person", "gmm_garment", "tom_winograd"  # manifest names


def open_tom(models: ModelDir, options: SessionOptions):
    """(manifest name, session) of TOM: tom.winograd.onnx on the CPU, tom.onnx elsewhere."""
    return open_preferring_winograd(models, options, "tom", TOM_WINOGRAD)


def open_preferring_winograd(models: ModelDir, options: SessionOptions, name: str, winograd: str):
    """(manifest name, session): the Winograd graph `winograd` on the CPU provider where the
    export wrote one (it makes its transformed weights at each run, so ONNX Runtime must not
    fold them into constants), else `name` (CUDA picks its own convolution algorithms)."""
    if models.has(winograd) and resolve_providers(options.provider) == PROVIDERS["cpu"]:
        return winograd, create_session(models.file(winograd), replace(options, fold_constants=False))
    return name, create_session(models.file(name), options)


# fp32 reproduces the source frameworks; int8 (CPU), fp16 (CUDA) and bf16 (CPU, OpenVINO) are
# the declared fast modes `tryon quantize` records, each with its agreement with fp32 in the
# manifest. bf16 is a setting of the OpenVINO execution provider, not a file: its entry names
# the graph it runs, the plain one (in bf16 the Winograd graph's transforms lose too much:
# 87% of labels equal to fp32 at 384, against 98% for the plain graph).
JPPNET_BY_PRECISION = {"fp32": "jppnet", "int8": "jppnet_int8", "fp16": "jppnet_fp16", "bf16": "jppnet_bf16"}
WINOGRAD = "jppnet_winograd"
BF16_GRAPH = "jppnet"


def open_jppnet(models: ModelDir, options: SessionOptions, precision: str = "fp32"):
    """(manifest name, session) of the JPP-Net graph for a precision; fp32 as
    `open_preferring_winograd` (the Winograd graph: the same weights, validated against
    TensorFlow like jppnet.onnx, fewer multiplications)."""
    if precision not in JPPNET_BY_PRECISION:
        raise InputError(f"precision {precision!r} is not one of {', '.join(JPPNET_BY_PRECISION)}")
    name = JPPNET_BY_PRECISION[precision]
    on_cpu = resolve_providers(options.provider) == PROVIDERS["cpu"]
    if precision == "fp16" and on_cpu:
        raise InputError("precision fp16 is for the CUDA provider (on the CPU it runs no faster than fp32): "
                         "use --provider cuda, or --precision int8 for the fast CPU mode")
    if precision == "bf16":
        check_openvino_bf16(options.provider)  # first: where it fails, `tryon quantize` cannot record bf16 either
        options = replace(options, openvino_bf16=True)
    if precision != "fp32" and not models.has(name):
        raise ModelsMissingError(f"{models.path} has no {precision} JPP-Net: run "
                                 f"`tryon quantize --precision {precision} PHOTO ...` first (real person photos)")
    options = replace(options, memory_pattern=False)  # one network, three input sizes
    if precision == "fp32":
        return open_preferring_winograd(models, options, name, WINOGRAD)
    if precision == "int8" and not (models.entry(name).quantization or {}).get("reduce_range"):
        from .. import cpu  # (the module, so that tests can stand in for this CPU)

        if not cpu.has_vnni():
            warnings.warn(f"{models.entry(name).file} has 8-bit weights (written by an older `tryon quantize`): "
                          "on this CPU, without VNNI, ONNX Runtime's int8 kernels may saturate their 16-bit sums "
                          "and move labels and keypoints well beyond the recorded agreement with fp32; re-run "
                          "`tryon quantize PHOTO ...` to write 7-bit weights, which give the same answer with and "
                          "without VNNI",
                          RuntimeWarning, stacklevel=2)
    return name, create_session(models.file(name), options)


def model_hashes(models: str | Path, precision: str) -> dict[str, str]:
    """sha256 of each model file a run at `precision` can use, from the manifest."""
    folder = ModelDir.open(models)
    names = [JPPNET_BY_PRECISION.get(precision, "jppnet"), *([WINOGRAD] if precision == "fp32" else []), "gmm", "tom"]
    return {name: folder.entry(name).sha256 or "" for name in names if folder.has(name)}
