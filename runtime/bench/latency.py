"""What `tryon bench` measures in the runtime: per-stage latency over repeated runs, memory,
model load time and size, FLOPs per stage, and this machine's sgemm throughput.

Only ONNX Runtime, NumPy and the standard library: the framework reference (TensorFlow,
eager PyTorch) runs in another process (benchmarks/reference.py), so that its memory and
imports never reach these figures.
"""
from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from ..cpu import cpu_model, vector_extensions
from ..errors import InputError
from ..images import load_rgb
from ..models.graphs import JPPNET_BY_PRECISION
from ..models.model_dir import ModelDir
from ..models.session import import_onnxruntime
from ..options import ParseOptions
from ..pipeline import PipelineSettings
from .versions import installed_versions

BASE_SIDE = 384  # JPP-Net's scale 1.0 is a 384x384 square
# GFLOP per image at the sides LIP_JPPNet uses (REFERENCE.md); other sides scale with area.
JPPNET_GFLOP = {384: 566.0, 288: 319.0, 480: 887.0}
# GFLOP per image, counted with torch.utils.flop_counter on the published GrayXu layouts.
GMM_GFLOP = 9.28
TOM_GFLOP = 16.86
PRECISIONS = tuple(JPPNET_BY_PRECISION)


@dataclass(frozen=True)
class BenchSettings(PipelineSettings):
    provider: str = "cpu"
    batch: int = 1
    runs: int = 5
    warmup: int = 1
    # A second precision timed in the same process, run for run in turn with `precision`:
    # on a busy machine the ratio of the two holds where each one's own time does not.
    baseline: str | None = None

    def __post_init__(self):
        for name, value in (("precision", self.precision), ("baseline", self.baseline)):
            if value is not None and value not in PRECISIONS:
                raise InputError(f"{name} {value!r} is not one of {', '.join(PRECISIONS)}")
        if self.baseline == self.precision:
            raise InputError(f"baseline {self.baseline!r} is the precision being timed: choose another one")
        if self.runs < 1 or self.warmup < 0 or self.batch < 1:
            raise InputError("runs and batch must be >= 1, warmup >= 0")


def summarize(samples_ms) -> dict[str, float]:
    samples = np.asarray(samples_ms, dtype=np.float64)
    return {"median_ms": float(np.median(samples)), "p90_ms": float(np.percentile(samples, 90)),
            "min_ms": float(samples.min()), "runs": int(samples.size)}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gpu_memory_mb() -> float | None:
    """Memory in use on the first GPU, or None without nvidia-smi (no GPU here to ask)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return float(out.split()[0])


def sgemm_gflops(n: int = 2048, seconds: float = 2.0) -> float:
    """float32 matrix product throughput through NumPy's BLAS on every core: the yardstick
    for GFLOP/s below. Measured in a child process, since the runtime keeps BLAS to one
    thread in its own (see tryon/runtime/__init__.py)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(os.cpu_count() or 1)}
    code = f"from tryon.bench.latency import _sgemm; print(_sgemm({n}, {seconds}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(done.stdout.split()[-1])


def _sgemm(n: int, seconds: float) -> float:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def jppnet_side(scale: float) -> int:
    return int(BASE_SIDE * scale)


def jppnet_gflop(scales, mirror: bool) -> float:
    per_photo = sum(JPPNET_GFLOP.get(jppnet_side(s), JPPNET_GFLOP[BASE_SIDE] * s * s) for s in scales)
    return per_photo * (2 if mirror else 1)


def stage_gflop(settings: BenchSettings, stages, jppnet_variant: str) -> dict[str, float]:
    """GFLOP per timed stage that does network work, for one request. JPP-Net runs per
    photo (its timings are one photo's); GMM and TOM run once over the batch. The JPP-Net
    figures hold for the full network only, not the reduced one the tests build."""
    gflop = {"cpvton.gmm": GMM_GFLOP * settings.batch, "cpvton.tom": TOM_GFLOP * settings.batch}
    if jppnet_variant == "full":
        gflop["parse"] = jppnet_gflop(settings.scales, settings.mirror)
        for scale in settings.scales:
            if (name := f"parse.jppnet_{jppnet_side(scale)}") in stages:
                gflop[name] = jppnet_gflop((scale,), settings.mirror)
    return gflop


def model_sizes_mb(models: ModelDir) -> dict[str, float]:
    files = {name: models.path / entry.file for name, entry in models.manifest.models.items()}
    return {name: path.stat().st_size / 2**20 for name, path in files.items() if path.is_file()}


def machine() -> dict:
    return {"cpu": cpu_model(), "vector_extensions": vector_extensions(), "cores": os.cpu_count(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "platform": platform.platform(), "python": platform.python_version(),
            "versions": installed_versions("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "numpy",
                                           "opencv-python-headless"),
            "onnxruntime_imported": import_onnxruntime().__version__}


def time_pipelines(tryons, person, cloth, settings: BenchSettings) -> list[dict[str, list[float]]]:
    """Per-stage milliseconds of `settings.runs` requests after `settings.warmup` discarded ones,
    for each pipeline; with several, each run goes through them in turn.

    A request is `batch` pairs of the garment with different photos (the example photo, then
    copies of it one pixel apart, so that each is parsed as another shopper's would be); its
    stages are the first pair's timings (GMM/TOM run once over the batch), `parse` sums the
    parse stage's parts within each run (the reference splits that stage differently) and
    `request` is the whole request's wall time."""
    photo = load_rgb(person, "person photo")
    pairs = [(person, cloth)] + [(_one_pixel_apart(photo, k), cloth) for k in range(1, settings.batch)]
    # No pose crop: untrained weights give keypoints no crop can frame, and a refused
    # photo would skip GMM and TOM. Resizing instead costs the same and always reaches them.
    options = ParseOptions(need_pre=False)
    samples: list[dict[str, list[float]]] = [{} for _ in tryons]
    for i in range(settings.warmup + settings.runs):
        for tryon, timed in zip(tryons, samples):
            start = time.perf_counter()
            result = tryon.predict_batch(pairs, options)[0]
            wall = (time.perf_counter() - start) * 1e3
            if i < settings.warmup:
                continue
            parse = sum(ms for name, ms in result.timings_ms.items() if name.startswith("parse."))
            for name, ms in {**result.timings_ms, "parse": parse, "request": wall}.items():
                timed.setdefault(name, []).append(ms)
    return samples


def _one_pixel_apart(photo, k: int):
    other = photo.copy()
    other[0, 0, 0] ^= k
    return other


# Where a stage stands in a request: by its name, else by its step (the part before the dot).
STAGE_RANK = {"decode": 0, "brightness": 1, "parse": 3, "crop": 4, "total": 8, "request": 9}
STEP_RANK = {"parse": 2, "cpvton": 5}


def pipeline_order(names) -> list[str]:
    """Stage names in the order a request meets them (first-seen order within a step)."""
    return sorted(dict.fromkeys(names),
                  key=lambda name: STAGE_RANK.get(name, STEP_RANK.get(name.split(".")[0], 6)))


def speedups(ours: dict[str, dict], reference: dict[str, dict]) -> dict[str, float]:
    """Reference median over ours, for every stage both timed: above 1 means we are faster."""
    return {name: reference[name]["median_ms"] / ours[name]["median_ms"]
            for name in ours if name in reference and ours[name]["median_ms"] > 0}


def run_benchmark(tryon_factory, settings: BenchSettings, person, cloth) -> dict:
    """The record `tryon bench` writes. `tryon_factory(settings)` builds the pipeline; its
    time is the model load time. Peak RSS is read before sgemm allocates anything."""
    start = time.perf_counter()
    tryon = tryon_factory(settings)
    load_ms = (time.perf_counter() - start) * 1e3
    rss_loaded = peak_rss_mb()
    tryons = [tryon]
    if settings.baseline:
        tryons.append(tryon_factory(replace(settings, precision=settings.baseline, baseline=None)))
    samples = time_pipelines(tryons, person, cloth, settings)
    stages = _stages(samples[0])
    described = tryon.describe()
    record = {
        "settings": asdict(settings),
        "providers": described["providers"],
        "jppnet_graph": described.get("jppnet_graph"),
        "graphs": described["stages"],
        "machine": machine(),
        "synthetic_weights": tryon.synthetic,
        "load_ms": load_ms,
        "model_mb": model_sizes_mb(tryon.models),
        "peak_rss_mb": {"after_load": rss_loaded, "after_runs": peak_rss_mb()},
        "gpu_memory_mb": gpu_memory_mb() if "CUDAExecutionProvider" in described["providers"] else None,
        "stages": stages,
    }
    gflop = record["gflop"] = stage_gflop(settings, stages, tryon.models.entry("jppnet").variant or "full")
    record["gflops_achieved"] = {name: work / stages[name]["median_ms"] * 1e3 for name, work in gflop.items()
                                 if name in stages and stages[name]["median_ms"] > 0}
    record["sgemm_gflops"] = sgemm_gflops()
    if settings.precision != "fp32":
        agreement = tryon.models.entry(JPPNET_BY_PRECISION[settings.precision]).agreement
        record[f"{settings.precision}_agreement"] = agreement.to_json() if agreement is not None else None
    if settings.baseline:
        baseline = _stages(samples[1])
        ratios = speedups(stages, baseline)
        other = tryons[1].describe()
        record["baseline"] = {"precision": settings.baseline, "providers": other["providers"],
                              "jppnet_graph": other.get("jppnet_graph"),
                              "stages": baseline,
                              "note": "timed in this process, run for run in turn with the precision above; "
                                      "peak_rss_mb.after_runs holds both pipelines"}
        record["speedup_vs_baseline"] = {"end_to_end": ratios.get("total"), "stages": ratios}
    return record


def _stages(samples: dict[str, list[float]]) -> dict[str, dict]:
    return {name: summarize(samples[name]) for name in pipeline_order(samples)}


def format_table(record: dict) -> str:
    """The printed table: one row per stage, the reference and GFLOP/s where known."""
    reference = record.get("reference", {}).get("stages", {})
    ratios = record.get("speedup_vs_reference", {}).get("stages", {})
    achieved = record["gflops_achieved"]
    rows = [f"{'stage':<22}{'median ms':>11}{'p90 ms':>11}{'reference':>11}{'speedup':>9}{'GFLOP/s':>9}"]
    for name, stats in record["stages"].items():
        ref = reference.get(name, {}).get("median_ms")
        rows.append(f"{name:<22}{stats['median_ms']:>11.1f}{stats['p90_ms']:>11.1f}"
                    f"{_cell(ref, '.1f', 11)}{_cell(ratios.get(name), '.2f', 8)}{'x' if name in ratios else ' '}"
                    f"{_cell(achieved.get(name), '.0f', 9)}")
    rows.append(f"JPP-Net graph {record['jppnet_graph']} (GFLOP/s count the direct convolutions' work); "
                f"sgemm (NumPy BLAS) {record['sgemm_gflops']:.0f} GFLOP/s; "
                f"peak RSS {record['peak_rss_mb']['after_runs']:.0f} MB; load {record['load_ms']:.0f} ms; "
                f"models {', '.join(f'{k} {v:.0f} MB' for k, v in record['model_mb'].items())}")
    if "reference" in record:
        rows.append(f"reference peak RSS {record['reference']['peak_rss_mb']['after_runs']:.0f} MB, "
                    f"load {record['reference']['load_ms']:.0f} ms")
    if "baseline" in record:
        baseline, ratios = record["baseline"], record["speedup_vs_baseline"]["stages"]
        rows.append(f"{record['settings']['precision']} against {baseline['precision']} ({baseline['jppnet_graph']}), "
                    "run for run in turn in this process: "
                    + ", ".join(f"{name} {baseline['stages'][name]['median_ms']:.1f} ms -> {ratios[name]:.2f}x"
                                for name in ("parse", "total") if name in ratios))
    precision = record["settings"]["precision"]
    if record.get(f"{precision}_agreement"):
        rows.append(f"{precision} agreement with fp32: {record[f'{precision}_agreement']}")
    return "\n".join(rows)


def _cell(value, spec: str, width: int) -> str:
    return f"{value:>{width}{spec}}" if value is not None else " " * (width - 1) + "-"
