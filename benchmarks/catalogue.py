"""Catalogue throughput: pairs per minute of `tryon catalogue`, the local engine against Ray
actors on a local cluster, sized by the rule (`ray`: one worker per node) or given (`ray:WxC`).

    python benchmarks/catalogue.py --models models_onnx --persons 8 --garments 10 \\
        --engine local --engine ray --engine ray:2x1 --repeat 3 --out benchmarks/results

Each engine renders the same catalogue (PERSONS photos x GARMENTS garments, made from the
bundled example pair: photos one pixel apart, garments hue-turned and mirrored, so that each
is parsed and dressed as another would be) from scratch into a temporary folder, with a
person store in memory only, so every person is parsed. `ray:WxC` is W workers (each doing
both steps) of C CPUs each (a fraction allowed; at least one ONNX Runtime thread, C rounded
up); the Ray cluster is started fresh for each run (`--ray-cpus`, default every core, or
`--ray-nodes` CPUs per node: a head and workers of Ray's multi-node test cluster) and its
start is timed apart: `pairs_per_min` counts it, as a command that starts its own cluster
pays it, `pairs_per_min_cluster_up` does not, as on a cluster that is already running. `--repeat N` runs the engines in turn N times, so that a busy machine
slows each alike; the record's `summary` has each engine's medians and their ratio to the
local engine's, and every run the 1-minute load average before and after. Every run's images
are compared with the first run's, byte for byte.

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
from contextlib import contextmanager, nullcontext
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


RATES = ("pairs_per_min", "pairs_per_min_cluster_up")  # with the Ray cluster's start, without it


def make_inputs(folder: Path, persons: int, garments: int) -> tuple[Path, Path]:
    photo = load_rgb(EXAMPLE_PERSON, "person photo")
    for k in range(persons):
        save_rgb(folder / "persons" / f"person{k:03d}.png", _one_pixel_apart(photo, k) if k else photo)
    for k, garment in enumerate(garment_variants(EXAMPLE_GARMENT, garments)):
        save_rgb(folder / "garments" / f"garment{k:03d}.png", garment)
    return folder / "persons", folder / "garments"


def parse_engine(text: str) -> dict:
    if text in ("local", "ray"):
        return {"engine": text, "label": text}
    try:
        kind, shape = text.split(":")
        workers, cpus = shape.split("x")
        workers, cpus = int(workers), float(cpus)
        assert kind == "ray" and workers >= 1 and cpus > 0
    except (ValueError, AssertionError):
        raise SystemExit(f"--engine {text!r}: expected local, ray or ray:WxC (workers x CPUs each)")
    return {"engine": "ray", "label": text, "workers": workers, "cpus_per_worker": cpus}


@contextmanager
def ray_cluster(cpus: int, nodes: list[int] | None):
    """Ray on this machine: one node of `cpus`, or a head and workers of `nodes` CPUs each."""
    import ray

    cluster = None
    if nodes:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": nodes[0]})
        for count in nodes[1:]:
            cluster.add_node(num_cpus=count)
        ray.init(address=cluster.address, include_dashboard=False, logging_level="WARNING")
    else:
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()


def run_engine(spec: dict, settings: Settings, persons: Path, garments: Path, ray_cpus: int,
               ray_nodes: list[int] | None = None) -> tuple[dict, dict]:
    """One engine over the whole catalogue: (its figures, sha256 of each image)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        plan = Catalogue.plan(persons, garments, out)
        batches = plan.batches()
        figures = {**spec, "load_before": os.getloadavg()[0]}
        cluster = ray_cluster(ray_cpus, ray_nodes) if spec["engine"] == "ray" else nullcontext()
        start = time.perf_counter()
        with cluster:
            up = time.perf_counter()
            results = render(spec, settings, batches, figures)
            figures["startup_s"] = time.perf_counter() - start  # model load (local) or cluster start (ray)
            first, parse_ms, dress_ms, statuses = collect(plan, results, spec["engine"])
        wall = time.perf_counter() - start
        figures["load_after"] = os.getloadavg()[0]
        pairs = len(plan.pairs)
        figures.update(
            pairs=pairs, statuses=statuses, wall_s=wall, first_pair_s=first - start,
            pairs_per_min=pairs / wall * 60,  # start-up included: run enough pairs for it to fade
            cluster_start_s=up - start, pairs_per_min_cluster_up=pairs / (wall - (up - start)) * 60,
            parse_ms_per_person=statistics.median(parse_ms.values()) if parse_ms else None,
            dress_ms_per_pair=statistics.median(dress_ms) if dress_ms else None)
        digests = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                   for p in sorted(out.glob("*/*.png"))}
        return figures, digests


def render(spec: dict, settings: Settings, batches, figures: dict):
    if spec["engine"] == "local":
        return render_local(settings.build(), batches, settings)
    import ray
    from tryon.catalogue.ray_engine import given_workers, render_ray

    def sized(places, node_cpus):
        figures.update(workers=[{"cpus": p.cpus, "threads": p.threads} for p in places], nodes=len(node_cpus),
                       node_cpus=node_cpus)

    figures["ray_cpus"] = ray.cluster_resources().get("CPU", 0)
    places = given_workers(spec["workers"], spec["cpus_per_worker"]) if "workers" in spec else None
    return render_ray(settings, batches, places, sized=sized)


def collect(plan: Catalogue, results, engine: str):
    """Writes each pair as the CLI does; (time of the first pair, parse ms by person, dress ms, statuses)."""
    first, parse_ms, dress_ms, statuses = None, {}, [], {}
    with Ledger(plan.out) as ledger:
        for person, garment, outcome in results:
            record(plan, ledger, person, garment, outcome, {}, engine)
            first = first or time.perf_counter()
            statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
            if outcome.status in WRITTEN:
                parse_ms[person] = outcome.timings_ms["parse"]
                dress_ms.append(outcome.timings_ms["dress"])
    return first, parse_ms, dress_ms, statuses


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="models_onnx")
    parser.add_argument("--persons", type=int, default=4)
    parser.add_argument("--garments", type=int, default=10)
    parser.add_argument("--engine", action="append", help="local, ray (sized by the rule) or ray:WxC (repeatable) "
                                                          "[default: local, ray]")
    parser.add_argument("--repeat", type=int, default=1, help="run the engines in turn this many times")
    parser.add_argument("--ray-cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray cluster")
    parser.add_argument("--ray-nodes", help="CPUs of each node of a multi-node Ray cluster on this machine, the "
                                            "head's first: 1,1,1")
    parser.add_argument("--threads", type=int, default=0,
                        help="ONNX Runtime threads of the local engine (0: every core)")
    parser.add_argument("--scales", default="1.0,0.75,1.25")
    parser.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--provider", default="cpu")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    engines = [parse_engine(text) for text in (args.engine or ["local", "ray"])]
    ray_nodes = [int(n) for n in args.ray_nodes.split(",")] if args.ray_nodes else None
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
        for _ in range(args.repeat):
            for spec in engines:
                print(f"rendering {args.persons} x {args.garments} with {spec['label']} ...", file=sys.stderr,
                      flush=True)
                figures, digests = run_engine(spec, settings, persons, garments, args.ray_cpus, ray_nodes)
                reference = reference or digests
                figures["same_images_as_first_engine"] = digests == reference
                record_["runs"].append(figures)
    record_["summary"] = summary(record_["runs"])
    record_["ray_nodes"] = ray_nodes  # CPUs per node of Ray's multi-node test cluster, the head's first
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out / f"catalogue-{args.precision}-p{args.persons}g{args.garments}-{stamp}.json"
    path.write_text(json.dumps(record_, indent=2) + "\n")
    print(table(record_))
    print(f"wrote {path}")


def summary(runs: list[dict]) -> dict:
    """Per engine: its runs' median pairs/min (with and without the cluster's start) and wall,
    the loads they ran under, and the ratios of its medians to the local engine's."""
    by_label: dict[str, list[dict]] = {}
    for run in runs:
        by_label.setdefault(run["label"], []).append(run)
    medians = {label: {"runs": len(its), "median_wall_s": statistics.median(r["wall_s"] for r in its),
                       "load": [round(r["load_before"], 2) for r in its],
                       **{f"median_{key}": statistics.median(r[key] for r in its) for key in RATES}}
               for label, its in by_label.items()}
    for key in RATES:
        local = medians.get("local", {}).get(f"median_{key}")
        for figures in medians.values():
            figures[f"vs_local{key[len('pairs_per_min'):]}"] = round(figures[f"median_{key}"] / local, 3) \
                if local else None
    return medians


def table(record_: dict) -> str:
    rows = [f"{'engine':<16}{'load':>6}{'start s':>9}{'1st pair s':>11}{'wall s':>9}{'pairs/min':>11}{'parse ms':>10}"
            f"{'dress ms':>10}  same images"]
    for run in record_["runs"]:
        rows.append(f"{run['label']:<16}{run['load_before']:>6.1f}{run['startup_s']:>9.1f}"
                    f"{run['first_pair_s']:>11.1f}{run['wall_s']:>9.1f}"
                    f"{run['pairs_per_min']:>11.1f}{run['parse_ms_per_person'] or 0:>10.0f}"
                    f"{run['dress_ms_per_pair'] or 0:>10.0f}  {run['same_images_as_first_engine']}")
    rows += [f"{label}: median {figures['median_pairs_per_min']:.1f} pairs/min over {figures['runs']} run(s), "
             f"{figures['vs_local']}x the local engine ({figures['vs_local_cluster_up']}x with the cluster up)"
             for label, figures in record_["summary"].items()]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
