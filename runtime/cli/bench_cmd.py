"""bench: per-stage latency, memory and throughput, against the TF + eager-torch reference."""
from __future__ import annotations

import datetime
import importlib.util
import json
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path

import typer

from ..bench.garments import add_reference, format_garments, run_garments_benchmark
from ..bench.latency import BenchSettings, format_table, run_benchmark, speedups
from ..examples import EXAMPLE_GARMENT, EXAMPLE_PERSON
from . import common
from .errors import friendly

# benchmarks/ (reference pipeline, chart) lives in a source checkout beside runtime/, not in the wheel.
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def register(app: typer.Typer):
    app.command(help="Time every stage of the pipeline on the bundled example pair (median and p90 "
                     "after warm-up), with peak memory, model load time and size, GFLOP/s against this "
                     "machine's sgemm, and the same pipeline in TensorFlow + eager PyTorch for ratios.\n\n"
                     "Writes a JSON record and a bar chart into --out.\n\n"
                     "Examples:\n\n"
                     "  tryon bench --runs 5\n\n"
                     "  tryon bench --precision int8 --no-reference\n\n"
                     "  tryon bench --precision bf16 --baseline fp32 --runs 5\n\n"
                     "  tryon bench --scales 1.0 --no-mirror --threads 2\n\n"
                     "  tryon bench --garments 10 --runs 2      (one person in 10 garments: parse once "
                     "against parsing again)")(bench)


@friendly
def bench(models: Path = common.MODELS,
          runs: int = typer.Option(5, help="timed runs per pipeline"),
          warmup: int = typer.Option(1, help="untimed runs first"),
          provider: str = typer.Option("cpu", help="auto, cpu or cuda"),
          threads: int = common.THREADS, scales: str = common.SCALES, mirror: bool = common.MIRROR,
          precision: str = common.PRECISION,
          batch: int = typer.Option(1, help="pairs per request"),
          baseline: str = typer.Option(None, help="also time this precision in the same process, run for run in "
                                                  "turn with --precision, and record the ratio (e.g. --precision "
                                                  "bf16 --baseline fp32); on a busy machine the ratio is steadier "
                                                  "than either time"),
          reference: bool = typer.Option(True, help="also time TensorFlow + eager PyTorch (needs the export "
                                                    "extra and a source checkout)"),
          garments: int = typer.Option(0, help="time one person in this many garments instead: N predicts "
                                               "against one parse + one dress, and the reference's N pairs"),
          out: Path = typer.Option(Path("benchmarks/results"), help="folder for the JSON record and chart")):
    settings = BenchSettings(str(models), provider, threads, common.parse_scales(scales), mirror, precision,
                             batch=batch, runs=runs, warmup=warmup, baseline=baseline)
    if garments:
        return _bench_garments(settings, garments, reference, out)
    pipelines = f"{precision} and {baseline} in turn" if baseline else precision
    typer.echo(f"timing the ONNX Runtime pipeline, {pipelines} ({runs} runs after {warmup} warm-up)...", err=True)
    record = run_benchmark(BenchSettings.build, settings, EXAMPLE_PERSON, EXAMPLE_GARMENT)
    if reference and _reference_available():
        typer.echo("timing the TensorFlow + eager PyTorch reference in its own process...", err=True)
        record["reference"] = _run_reference(settings)
        ratios = speedups(record["stages"], record["reference"]["stages"])
        record["speedup_vs_reference"] = {"end_to_end": ratios.get("total"), "stages": ratios}
    _write(record, out, f"bench-{precision}-{provider}-b{batch}", format_table(record))


def _bench_garments(settings, garments: int, reference: bool, out: Path):
    typer.echo(f"timing one person in {garments} garments, two ways ({settings.runs} runs)...", err=True)
    record = run_garments_benchmark(BenchSettings.build, settings, EXAMPLE_PERSON, EXAMPLE_GARMENT, garments)
    if reference and _reference_available():
        typer.echo(f"timing the TensorFlow + eager PyTorch reference on {garments} pairs...", err=True)
        add_reference(record, _run_reference(settings, "--garments", str(garments)))
    name = f"bench-garments{garments}-{settings.precision}-{settings.provider}"
    _write(record, out, name, format_garments(record), chart=False)


def _reference_available() -> bool:
    missing = [m for m in ("tensorflow", "torch") if importlib.util.find_spec(m) is None]
    if not (BENCHMARKS / "reference.py").is_file():
        missing.append("benchmarks/reference.py (a source checkout)")
    if missing:
        typer.secho(f"no reference run: {', '.join(missing)} missing (pip install 'tryon-onnx[export,cpu]')",
                    fg="yellow", err=True)
    return not missing


def _run_reference(settings, *extra: str) -> dict:
    """benchmarks/reference.py in a child process: TF and torch never enter this one."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reference.json"
        command = [sys.executable, str(BENCHMARKS / "reference.py"), "--models", settings.models,
                   "--person", str(EXAMPLE_PERSON), "--cloth", str(EXAMPLE_GARMENT), "--out", str(path),
                   "--runs", str(settings.runs), "--warmup", str(settings.warmup),
                   "--threads", str(settings.threads), "--batch", str(settings.batch),
                   "--scales", ",".join(str(s) for s in settings.scales),
                   "--mirror" if settings.mirror else "--no-mirror", *extra]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            last = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
            typer.secho(f"error: the TF + torch reference run failed: {last[0]}", fg="red", err=True)
            raise typer.Exit(1)
        return json.loads(path.read_text())


def _write(record: dict, out: Path, name: str, table: str, chart: bool = True):
    """The JSON record (and its bar chart) as out/name-TIME, the table printed, the files named."""
    stem = out / f"{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path = stem.with_suffix(".json")
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    chart_file, chart_path = BENCHMARKS / "chart.py", None
    if chart and chart_file.is_file():
        chart_path = runpy.run_path(str(chart_file))["write_chart"](record, stem.with_suffix(".png"))
    typer.echo(table)
    typer.echo(f"wrote {json_path}" + (f" and {chart_path}" if chart_path else ""))
    if record["synthetic_weights"]:
        typer.secho("SYNTHETIC (untrained) weights: the latency holds, the outputs are noise", fg="yellow", err=True)
