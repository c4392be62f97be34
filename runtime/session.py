"""One place that creates ONNX Runtime sessions.

Every network class gets its session from `create_session`, so provider choice,
thread counts and graph optimisation are decided once and reported truthfully:
`providers_in_use` reads what the session actually runs on, not what was asked.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
}
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


class RuntimeSetupError(RuntimeError):
    """The environment cannot run models (missing onnxruntime, missing provider)."""


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:  # the user installed the package without an extra
        raise RuntimeSetupError(
            "onnxruntime is not installed. Install the runtime with an extra: "
            "pip install 'tryon-onnx[cpu]' (or '[gpu]' for CUDA; never both)."
        ) from exc
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

    def __post_init__(self):
        if self.provider not in ("auto", *PROVIDERS):
            raise ValueError(f"provider {self.provider!r} is not one of auto, cpu, cuda")
        if self.optimization not in OPTIMIZATION_LEVELS:
            raise ValueError(
                f"optimization {self.optimization!r} is not one of {', '.join(OPTIMIZATION_LEVELS)}"
            )
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


def available_providers() -> list[str]:
    return list(import_onnxruntime().get_available_providers())


def resolve_providers(provider: str) -> list[str]:
    available = available_providers()
    if provider == "auto":
        provider = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if provider == "cuda" and "CUDAExecutionProvider" not in available:
        raise RuntimeSetupError(
            "provider 'cuda' asked for, but this onnxruntime offers only "
            f"{', '.join(available)}. Install 'tryon-onnx[gpu]' (onnxruntime-gpu) "
            "in an environment without the plain onnxruntime package, or use --provider cpu."
        )
    return PROVIDERS[provider]


def create_session(path: str | Path, options: SessionOptions = SessionOptions()):
    ort = import_onnxruntime()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist (run `tryon export` first)")
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spinning else "0")
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[options.optimization]
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), so, providers=resolve_providers(options.provider))
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        if isinstance(exc, RuntimeSetupError):
            raise
        raise RuntimeSetupError(f"cannot load model {path}: {exc}") from exc


def providers_in_use(session) -> list[str]:
    return list(session.get_providers())
