"""Catalogue throughput: pairs per minute of `tryon catalogue`, the local engine against Ray
Data on a local cluster at several parse x dress actor counts.

    python benchmarks/catalogue.py --models models_onnx --persons 8 --garments 10 \\
        --engine local --engine ray:1x1x2 --engine ray:3x1x2 --out benchmarks/results

Each engine renders the same catalogue (PERSONS photos x GARMENTS garments, made from the
bundled example pair: photos one pixel apart, garments hue-turned and mirrored, so that each
is parsed and dressed as another would be) from scratch into a temporary folder, with a
person store in memory only, so every person is parsed. `ray:PxDxC` is P parse actors and D
dress actors of C CPUs each (and C ONNX Runtime threads); the Ray cluster is started fresh
for each (`--ray-cpus`, default every core) and its start is timed apart. Every engine's
images are compared with the first engine's, byte for byte.

Writes benchmarks/results/catalogue-<precision>-p<P>g<G>-<time>.json and prints a table.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tryon.bench.garments import garment_variants
from tryon.bench.latency import _one_pixel_apart, machine
from tryon.catalogue.ledger import Ledger, record
from tryon.catalogue.plan import WRITTEN, Catalogue, Settings
from tryon.catalogue.work import render_local
from tryon.examples import EXAMPLE_GARMENT, EXAMPLE_PERSON
from tryon.images import load_rgb, save_rgb
from tryon.models.model_dir import ModelDir
from tryon.options import DressOptions, ParseOptions
from tryon.store import StoreSettings


def make_inputs(folder: Path, persons: int, garments: int) -> tuple[Path, Path]:
    photo = load_rgb(EXAMPLE_PERSON, "person photo")
    for k in range(persons):
        save_rgb(folder / "persons" / f"person{k:03d}.png", _one_pixel_apart(photo, k) if k else photo)
    for k, garment in enumerate(garment_variants(EXAMPLE_GARMENT, garments)):
        save_rgb(folder / "garments" / f"garment{k:03d}.png", garment)
    return folder / "persons", folder / "garments"


def parse_engine(text: str) -> dict:
    if text == "local":
        return {"engine": "local"}
    try:
        kind, shape = text.split(":")
        parse, dress, cpus = (int(n) for n in shape.split("x"))
        assert kind == "ray" and min(parse, dress, cpus) >= 1
    except (ValueError, AssertionError):
        raise SystemExit(f"--engine {text!r}: expected local or ray:PxDxC (parse actors x dress actors x CPUs each)")
    return {"engine": "ray", "parse_actors": parse, "dress_actors": dress, "cpus_per_actor": cpus}


def run_engine(spec: dict, settings: Settings, persons: Path, garments: Path, ray_cpus: int) -> tuple[dict, dict]:
    """One engine over the whole catalogue: (its figures, sha256 of each image)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        plan = Catalogue.plan(persons, garments, out)
        batches = plan.batches()
        figures = dict(spec)
        start = time.perf_counter()
        if spec["engine"] == "local":
            results = render_local(settings.build(), batches, settings)
        else:
            import ray
            from tryon.catalogue.ray_engine import Pools, render_ray

            ray.init(num_cpus=ray_cpus, include_dashboard=False, logging_level="WARNING")
            figures["ray_cpus"] = ray_cpus
            results = render_ray(settings, batches,
                                 Pools(spec["parse_actors"], spec["dress_actors"], spec["cpus_per_actor"]))
        figures["startup_s"] = time.perf_counter() - start  # model load (local) or cluster start (ray)
        first, parse_ms, dress_ms, statuses = None, {}, [], {}
        with Ledger(out) as ledger:
            for person, garment, outcome in results:
                record(plan, ledger, person, garment, outcome, {}, spec["engine"])
                first = first or time.perf_counter()
                statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
                if outcome.status in WRITTEN:
                    parse_ms[person] = outcome.timings_ms["parse"]
                    dress_ms.append(outcome.timings_ms["dress"])
        wall = time.perf_counter() - start
        if spec["engine"] == "ray":
            ray.shutdown()
        pairs = len(plan.pairs)
        figures.update(
            pairs=pairs, statuses=statuses, wall_s=wall, first_pair_s=first - start,
            pairs_per_min=pairs / wall * 60,  # start-up included: run enough pairs for it to fade
            parse_ms_per_person=statistics.median(parse_ms.values()) if parse_ms else None,
            dress_ms_per_pair=statistics.median(dress_ms) if dress_ms else None)
        digests = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                   for p in sorted(out.glob("*/*.png"))}
        return figures, digests


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="models_onnx")
    parser.add_argument("--persons", type=int, default=4)
    parser.add_argument("--garments", type=int, default=10)
    parser.add_argument("--engine", action="append", help="local or ray:PxDxC (repeatable) [default: local, ray:1x1xN/2]")
    parser.add_argument("--ray-cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray cluster")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads of the local engine (0: every core)")
    parser.add_argument("--scales", default="1.0,0.75,1.25")
    parser.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--provider", default="cpu")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    half = max(1, (args.ray_cpus or 2) // 2)
    engines = [parse_engine(text) for text in (args.engine or ["local", f"ray:1x1x{half}"])]
    scales = tuple(float(s) for s in args.scales.split(","))
    # As `tryon bench`: resize instead of the pose crop, which untrained weights' pose refuses.
    settings = Settings(args.models, args.provider, args.threads, scales, args.mirror, args.precision,
                        StoreSettings("memory", ttl_hours=1, max_mb=1024), ParseOptions(need_pre=False), DressOptions())
    record_ = {"kind": "catalogue", "persons": args.persons, "garments": args.garments,
               "settings": {"scales": list(scales), "mirror": args.mirror, "precision": args.precision,
                            "provider": args.provider, "threads": args.threads, "need_pre": False},
               "models": settings.identity()["models"], "machine": machine(),
               "synthetic_weights": any(ModelDir.open(args.models).synthetic(n) for n in ("jppnet", "gmm", "tom")),
               "jppnet_variant": ModelDir.open(args.models).entry("jppnet").variant or "full", "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        persons, garments = make_inputs(Path(tmp), args.persons, args.garments)
        reference = None
        for spec in engines:
            print(f"rendering {args.persons} x {args.garments} with {spec} ...", file=sys.stderr, flush=True)
            figures, digests = run_engine(spec, settings, persons, garments, args.ray_cpus)
            reference = reference or digests
            figures["same_images_as_first_engine"] = digests == reference
            record_["runs"].append(figures)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out / f"catalogue-{args.precision}-p{args.persons}g{args.garments}-{stamp}.json"
    path.write_text(json.dumps(record_, indent=2) + "\n")
    print(table(record_))
    print(f"wrote {path}")


def table(record_: dict) -> str:
    rows = [f"{'engine':<16}{'start s':>9}{'1st pair s':>11}{'wall s':>9}{'pairs/min':>11}{'parse ms':>10}"
            f"{'dress ms':>10}  same images"]
    for run in record_["runs"]:
        name = run["engine"] if run["engine"] == "local" else \
            f"ray {run['parse_actors']}x{run['dress_actors']}x{run['cpus_per_actor']}"
        rows.append(f"{name:<16}{run['startup_s']:>9.1f}{run['first_pair_s']:>11.1f}{run['wall_s']:>9.1f}"
                    f"{run['pairs_per_min']:>11.1f}{run['parse_ms_per_person'] or 0:>10.0f}"
                    f"{run['dress_ms_per_pair'] or 0:>10.0f}  {run['same_images_as_first_engine']}")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
