"""One place that creates ONNX Runtime sessions.

Every network class gets its session from `create_session`, so provider choice,
thread counts and graph optimisation are decided once and reported truthfully:
`providers_in_use` reads what the session actually runs on, not what was asked.

On the CPU provider with all optimisations, the first load on a machine saves the
optimised graph (batch norms fused, convolutions in ONNX Runtime's blocked layout) with
its weights in a separate file under `<models>/.ort-cache/`, keyed by the model file,
the onnxruntime version and the CPU's instruction sets; later loads map that file and
optimise nothing. ONNX Runtime keeps the weights it replaced while optimising, so the
plain load of the 489 MB JPP-Net held 1.2 GB; from the cache it holds one mapped copy
and loads in milliseconds. Where the cache cannot be written, the model loads as it is.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..cpu import cpu_flags
from ..errors import InputError, ModelsMissingError, RuntimeSetupError

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
}
OPTIMIZATION_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
                       "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
OPENVINO = "OpenVINOExecutionProvider"
# x86 instructions with bf16 arithmetic (dot products into float32): without one of them
# OpenVINO has no fast bf16 (depending on its version it emulates bf16 or runs float32).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CACHE_DIR = ".ort-cache"


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:  # the user installed the package without an extra
        raise RuntimeSetupError("onnxruntime is not installed. Install the runtime with an extra: "
                                "pip install 'tryon-onnx[cpu]' (or '[gpu]' for CUDA; never both).") from exc
    return onnxruntime


@dataclass(frozen=True)
class SessionOptions:
    provider: str = "auto"  # cpu | cuda | auto (cuda when available)
    threads: int = 0  # intra-op threads; 0 lets ONNX Runtime pick (one per core)
    optimization: str = "all"
    # Idle intra-op workers spin before they sleep: good inside one long network, but on a
    # small machine the spinning pool of a network that just finished steals the cores from
    # the next one (TOM ran 30% slower right after GMM on 2 cores).
    spinning: bool = True
    # False for graphs that compute some weights at run time on purpose (the Winograd
    # JPP-Net), which ONNX Runtime would otherwise precompute and hold at load.
    fold_constants: bool = True
    # ONNX Runtime plans one memory block per input shape and keeps each in its arena;
    # for a network run at several sizes (JPP-Net's scales) per-tensor allocation holds
    # less (the Winograd JPP-Net at 384/288/480: 1.48 GB planned, 1.28 GB per tensor).
    memory_pattern: bool = True
    # On ONNX Runtime's OpenVINO execution provider in bf16 on the CPU (JPP-Net's bf16 fast mode;
    # ONNX Runtime's own CPU kernels have no bf16 on x86). Refused, never quietly run in float32,
    # on a CPU without bf16 instructions or an onnxruntime without that provider.
    openvino_bf16: bool = False

    def __post_init__(self):
        if self.provider not in ("auto", *PROVIDERS):
            raise InputError(f"provider {self.provider!r} is not one of auto, cpu, cuda")
        if self.optimization not in OPTIMIZATION_LEVELS:
            raise InputError(f"optimization {self.optimization!r} is not one of {', '.join(OPTIMIZATION_LEVELS)}")
        if self.threads < 0:
            raise InputError(f"threads must be >= 0, got {self.threads}")


def available_providers() -> list[str]:
    return list(import_onnxruntime().get_available_providers())


def resolve_providers(provider: str) -> list[str]:
    available = available_providers()
    if provider == "auto":
        provider = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if provider == "cuda" and "CUDAExecutionProvider" not in available:
        raise RuntimeSetupError(f"provider 'cuda' asked for, but this onnxruntime offers only {', '.join(available)}. "
                                "Install 'tryon-onnx[gpu]' (onnxruntime-gpu) in an environment without the plain "
                                "onnxruntime package, or use --provider cpu.")
    return PROVIDERS[provider]


def check_openvino_bf16(provider: str):
    """Raise unless `provider` is the CPU (ValueError), this CPU has bf16 instructions and
    this onnxruntime has the OpenVINO execution provider (RuntimeSetupError)."""
    if resolve_providers(provider) != PROVIDERS["cpu"]:
        raise InputError("precision bf16 is for the CPU (OpenVINO): use --provider cpu, or --precision fp16 on CUDA")
    if not cpu_flags() & set(BF16_CPU_FLAGS):
        raise RuntimeSetupError(f"precision bf16 needs a CPU with bf16 instructions ({' or '.join(BF16_CPU_FLAGS)} in "
                                "/proc/cpuinfo) and this one has neither: use --precision fp32, or int8 for the fast "
                                "CPU mode")
    ort = import_onnxruntime()
    if OPENVINO not in ort.get_available_providers():
        raise RuntimeSetupError(f"precision bf16 runs on ONNX Runtime's {OPENVINO}, which this onnxruntime "
                                f"{ort.__version__} lacks (it has {', '.join(ort.get_available_providers())}): install "
                                "'tryon-onnx[openvino]' (onnxruntime-openvino) in an environment without the cpu or "
                                "gpu extra, since it replaces the onnxruntime package")


def openvino_bf16_options(threads: int = 0) -> dict[str, str]:
    """The OpenVINO execution provider's options for bf16 on the CPU, for one latency-bound
    request at a time on `threads` cores (0: OpenVINO picks)."""
    config = {"INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    return {"device_type": "CPU", "load_config": json.dumps({"CPU": config})}


def cached_model_path(path: Path, options: SessionOptions) -> Path:
    """Where the optimised copy of `path` for this machine and onnxruntime lives (the CPU's
    instruction sets are in its key: ONNX Runtime picks kernels and weight layouts by them)."""
    stat = path.stat()
    cpu = f"{platform.machine()} {platform.processor()} {' '.join(sorted(cpu_flags()))}"
    key = hashlib.sha256(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}|{import_onnxruntime().__version__}|"
                         f"{cpu}|{options.fold_constants}".encode()).hexdigest()[:16]
    return path.parent / CACHE_DIR / f"{path.stem}.{key}.onnx"


def _write_optimized(ort, path: Path, cached: Path, so, disabled: list[str]) -> bool:
    """Let ONNX Runtime optimise `path` and save the result as `cached` (+ `.data`);
    written in a scratch folder and moved in, the graph last, so a reader never sees
    half a copy. False when the folder cannot be written."""
    try:
        cached.parent.mkdir(exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=cached.parent, prefix=".incomplete-"))
    except OSError:
        return False
    try:
        so.optimized_model_filepath = str(scratch / cached.name)
        so.add_session_config_entry("session.optimized_model_external_initializers_file_name", f"{cached.name}.data")
        so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        ort.InferenceSession(str(path), so, providers=PROVIDERS["cpu"], disabled_optimizers=disabled)
        os.replace(scratch / f"{cached.name}.data", cached.parent / f"{cached.name}.data")
        os.replace(scratch / cached.name, cached)
        for stale in cached.parent.glob(f"{glob.escape(path.stem)}.*.onnx*"):
            if re.fullmatch(rf"{re.escape(path.stem)}\.[0-9a-f]{{16}}\.onnx(\.data)?", stale.name) \
                    and not stale.name.startswith(cached.name):
                stale.unlink(missing_ok=True)  # copies of an earlier export of the same file
        return True
    except OSError:
        return False
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _session_options(ort, options: SessionOptions):
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.threads
    so.enable_mem_pattern = options.memory_pattern
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spinning else "0")
    level = OPTIMIZATION_LEVELS[options.optimization]
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.log_severity_level = 3
    # Lets providers_in_use name the providers that were given nodes, not just those asked for.
    so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    return so


def create_session(path: str | Path, options: SessionOptions = SessionOptions()):
    ort = import_onnxruntime()
    path = Path(path)
    if not path.is_file():
        raise ModelsMissingError(f"model file {path} does not exist (run `tryon export` first)")
    providers, provider_options = resolve_providers(options.provider), None
    if options.openvino_bf16:
        check_openvino_bf16(options.provider)
        providers, provider_options = [OPENVINO, *PROVIDERS["cpu"]], [openvino_bf16_options(options.threads), {}]
    so = _session_options(ort, options)
    disabled = [] if options.fold_constants else ["ConstantFolding"]
    try:
        if providers == PROVIDERS["cpu"] and options.optimization == "all":
            session = _cached_session(ort, path, options, disabled)
            if session is not None:
                return session
        return ort.InferenceSession(str(path), so, providers=providers, provider_options=provider_options,
                                    disabled_optimizers=disabled)
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise RuntimeSetupError(f"cannot load model {path}: {exc}") from exc


def _cached_session(ort, path: Path, options: SessionOptions, disabled: list[str]):
    """A session on this machine's optimised copy of `path`, written first when missing;
    None where it cannot be written. A damaged copy is removed and written again."""
    cached = cached_model_path(path, options)
    if cached.is_file():
        try:
            return _open_optimized(ort, cached, options)
        except Exception:  # e.g. a disk that filled up under the copy: make it again
            for part in (cached, cached.parent / f"{cached.name}.data"):
                part.unlink(missing_ok=True)
    written = _write_optimized(ort, path, cached, _session_options(ort, options), disabled)
    return _open_optimized(ort, cached, options) if written else None


def _open_optimized(ort, cached: Path, options: SessionOptions):
    so = _session_options(ort, options)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # done once, when written
    return ort.InferenceSession(str(cached), so, providers=PROVIDERS["cpu"])


def providers_in_use(session) -> list[str]:
    """The providers that run some of the graph, in the session's order of preference: a
    provider that was asked for but given no node is left out. Where this onnxruntime
    cannot say, every provider the session holds."""
    held = list(session.get_providers())
    try:
        given = {subgraph.ep_name for subgraph in session.get_provider_graph_assignment_info()}
    except (AttributeError, RuntimeError):
        return held
    return [name for name in held if name in given] or held
