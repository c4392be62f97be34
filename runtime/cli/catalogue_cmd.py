"""catalogue: every model photo in every garment, here or on a Ray cluster, resumable."""
from __future__ import annotations

import time
from pathlib import Path

import typer

from ..catalogue.ledger import Ledger, record, summarize
from ..catalogue.plan import LEDGER, Catalogue, Settings
from ..catalogue.work import render_local
from ..errors import InputError
from ..models.model_dir import ModelDir
from ..options import DressOptions, ParseOptions
from . import common
from .errors import friendly

EXIT_INCOMPLETE = 1


def register(app: typer.Typer):
    app.command(help="Render a catalogue: every person photo in PERSONS_DIR dressed in every garment in "
                     "GARMENTS_DIR (or the pairs listed in --pairs), each person parsed once and its "
                     "garments dressed in batches.\n\n"
                     f"Writes OUT/<person>/<garment>.png and a ledger OUT/{LEDGER} (one line per pair: "
                     "status, confidence, reason, timings, the models' sha256). A rerun skips the pairs the "
                     "ledger shows done with the same models and settings; a bad photo is recorded and the "
                     "run goes on; the exit code is 1 when any pair has no image.\n\n"
                     "Examples:\n\n"
                     "  tryon catalogue models/ garments/ -o catalogue/\n\n"
                     "  tryon catalogue models/ garments/ -o catalogue/ --pairs pairs.txt   (lines: PERSON GARMENT)\n\n"
                     "  tryon catalogue models/ garments/ -o catalogue/ --engine ray --workers 3\n\n"
                     "  tryon catalogue models/ garments/ -o catalogue/ --engine ray --address HEAD:6379")(catalogue)


@friendly
def catalogue(persons_dir: Path = typer.Argument(..., help="folder of person (model) photos"),
              garments_dir: Path = typer.Argument(..., help="folder of garment photos"),
              out: Path = typer.Option(..., "-o", "--out", help="output folder (images and the ledger)"),
              pairs: Path = typer.Option(None, help="text file of 'PERSON GARMENT' lines (file names in the two "
                                                    "folders) instead of every combination"),
              engine: str = typer.Option("local", help="local (this process) or ray (Ray actors, one per node)"),
              address: str = typer.Option(None, help="Ray cluster to join (--engine ray) [default: start one "
                                                     "on this machine]"),
              workers: int = typer.Option(None, min=1, help="Ray actors, each doing both steps (--engine ray) "
                                                            "[default: one per node, with all of its CPUs]"),
              cpus_per_worker: float = typer.Option(None, min=0.01, help="CPUs each worker reserves, a fraction "
                                                    "allowed; its ONNX Runtime threads, at least 1 (--engine ray) "
                                                    "[default: its node's]"),
              need_pre: bool = common.NEED_PRE, need_bright: bool = common.NEED_BRIGHT,
              keep_back: bool = common.KEEP_BACK, need_dilate: bool = common.NEED_DILATE,
              check_dirty: bool = common.CHECK_DIRTY, jpeg_dct: str = common.JPEG_DCT,
              warp_jpeg: bool = common.WARP_JPEG,
              cache: str = common.CACHE, no_cache: bool = common.NO_CACHE, cache_ttl_hours: float = common.CACHE_TTL,
              cache_max_mb: float = common.CACHE_MB,
              models: Path = common.MODELS, provider: str = common.PROVIDER, threads: int = common.THREADS,
              scales: str = common.SCALES, mirror: bool = common.MIRROR, precision: str = common.PRECISION):
    if engine not in ("local", "ray"):
        raise InputError(f"--engine {engine!r}: choose local or ray")
    settings = Settings(str(models), provider, threads, common.parse_scales(scales), mirror, precision,
                        common.store_settings(cache, no_cache, cache_ttl_hours, cache_max_mb),
                        ParseOptions(need_pre, need_bright, check_dirty, jpeg_dct),
                        DressOptions(keep_back, need_dilate, warp_jpeg))
    identity = settings.identity()  # reads the manifest: a missing models folder stops here
    plan = Catalogue.plan(persons_dir, garments_dir, out, pairs)
    with Ledger(out) as ledger:
        batches = plan.batches(ledger.done(plan, identity))
        todo = sum(len(garments) for _, garments in batches)
        typer.echo(f"{len(plan.pairs)} pairs; {len(plan.pairs) - todo} done before, {todo} to render "
                   f"({engine} engine)", err=True)
        if not batches:
            results = []
        elif engine == "local":
            results = render_local(settings.build(), batches, settings)
        else:
            from ..catalogue.ray_engine import given_workers, render_ray
            from ..ray_cluster import import_ray

            import_ray()  # or RayMissingError: its one line and exit 5, before any work
            given = given_workers(workers or 1, cpus_per_worker or 1) if workers or cpus_per_worker else None
            results = render_ray(settings, batches, given, address, sized=_sized)
        start = time.perf_counter()
        with typer.progressbar(length=todo, label="catalogue", hidden=todo == 0) as bar:
            for person, garment, outcome in results:
                record(plan, ledger, person, garment, outcome, identity, engine)
                bar.update(1)
        elapsed = time.perf_counter() - start
    if any(ModelDir.open(models).synthetic(name) for name in ("gmm", "tom")):
        typer.secho(common.SYNTHETIC_NOTE, fg="yellow", err=True)
    if not _summary(plan, Ledger(out), identity, todo, elapsed):
        raise typer.Exit(EXIT_INCOMPLETE)


def _sized(places, node_cpus: list[float]):
    from ..catalogue.ray_engine import describe

    typer.echo(f"Ray: {describe(places)} on {len(node_cpus)} node(s) of {', '.join(f'{n:g}' for n in node_cpus)} CPUs", err=True)


def _summary(plan, ledger, identity, rendered: int, elapsed: float) -> bool:
    """Print the catalogue's state; True when every pair has its image."""
    by_status = summarize(plan, ledger, identity)
    count = {status: len(lines) for status, lines in by_status.items()}
    written = count.get("ok", 0) + count.get("low_confidence", 0)
    rate = f" ({rendered / elapsed * 60:.1f} pairs/min)" if rendered and elapsed > 0 else ""
    typer.echo(f"{plan.out}: {len(plan.pairs)} pairs, {written} images "
               f"({count.get('low_confidence', 0)} below confidence 0.1), {count.get('refused', 0)} refused, "
               f"{count.get('failed', 0)} failed"
               + (f", {count['pending']} not rendered" if count.get("pending") else "")
               + f"; this run rendered {rendered} in {elapsed:.1f} s{rate}; ledger {plan.out / LEDGER}")
    problems = by_status.get("refused", []) + by_status.get("failed", [])
    for line in problems[:10]:
        typer.secho(f"  {line['status']}: {line['person']} x {line['garment']}: {line['reason']}", fg="yellow",
                    err=True)
    if len(problems) > 10:
        typer.secho(f"  ... and {len(problems) - 10} more (see the ledger)", fg="yellow", err=True)
    return written == len(plan.pairs)
