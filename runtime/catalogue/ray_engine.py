"""The Ray engine of `tryon catalogue`: the same batches as the local engine, on Ray Data.

    persons --map_batches(ParseActor pool)--> parsed persons
            --flat_map(cross with the garments)--> dress batches (one person, <= DRESS_BATCH garments)
            --map_batches(DressActor pool)--> one row per pair: status, image (PNG bytes)
            --> this process writes the images and the ledger (tryon.catalogue.ledger.record)

Each actor loads the models once and runs ONNX Runtime with as many threads as it holds
CPUs. The photos travel through Ray's object store (the garments once, put there by this
process), and the images come back the same way: the worker nodes need the models folder
but no shared file system. Only the Ray modules import ray (the [ray] extra), and only when run.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import InputError
from ..models.graphs import model_hashes
from ..parsed_person import ParseCall
from ..ray_cluster import import_ray, joined_cluster, tryon_cause
from .plan import Input, Settings
from .work import Outcome, Photo, dress_batch, failed_batch, parse_photo, read_photo


@dataclass(frozen=True)
class Pools:
    parse_actors: int = 1  # JPP-Net replicas (the heavy step)
    dress_actors: int = 1  # GMM/TOM replicas
    cpus_per_actor: int = 1  # CPUs each actor reserves, and its ONNX Runtime threads

    def __post_init__(self):
        if min(self.parse_actors, self.dress_actors, self.cpus_per_actor) < 1:
            raise InputError(f"actor counts and CPUs per actor must be >= 1, got {self}")


def build_checked(settings: Settings, threads: int, models: dict, load_jppnet: bool = True):
    """The actor's pipeline, after checking that its node has the models the driver records
    in the ledger (a node with other files would write other images under the same hashes)."""
    import socket

    found = model_hashes(settings.models, settings.precision)
    if found != models:
        raise InputError(f"the models in {settings.models} on node {socket.gethostname()} are not the ones "
                         f"this catalogue runs with ({found} != {models}): give every node the same models folder")
    return settings.build(threads, load_jppnet)


class ParseActor:
    """Holds one pipeline; parses one person photo per call."""

    def __init__(self, settings: Settings, threads: int, models: dict):
        self.settings = settings
        self.tryon = build_checked(settings, threads, models)

    def __call__(self, batch: dict) -> dict:
        rows = {"person": [], "parsed": [], "error": [], "parse_ms": [], "batches": []}
        for name, data, error, batches in zip(batch["person"], batch["photo"], batch["error"], batch["batches"]):
            call, why = parse_photo(self.tryon, Photo(name, bytes(data) or None, error), self.settings.parse)
            rows["person"].append(name)
            rows["parsed"].append(call.parsed.to_bytes() if call is not None else b"")
            rows["error"].append(why)
            # the person's bytes keep no timings: the parse's travel beside them, for the ledger
            rows["parse_ms"].append(json.dumps(call.timings_ms if call is not None else {}))
            rows["batches"].append(batches)
        return rows


def cross(row: dict) -> list[dict]:
    """A parsed person, once per dress batch of its garments."""
    return [{"person": row["person"], "parsed": row["parsed"], "error": row["error"], "parse_ms": row["parse_ms"],
             "garments": json.dumps(garments)} for garments in json.loads(row["batches"])]


class DressActor:
    """Holds one pipeline and every garment's bytes; dresses one batch per call."""

    def __init__(self, settings: Settings, threads: int, models: dict, garments):
        from ..parsed_person import ParsedPerson

        self.settings = settings
        self.tryon = build_checked(settings, threads, models, load_jppnet=False)
        import ray  # after the check, which needs no Ray

        self.garments: dict[str, Photo] = ray.get(garments) if isinstance(garments, ray.ObjectRef) else garments
        self.from_bytes = ParsedPerson.from_bytes

    def __call__(self, batch: dict) -> dict:
        rows = {key: [] for key in ("person", "garment", "status", "confidence", "reason", "timings", "png")}
        for person, parsed, error, garments, parse_ms in zip(batch["person"], batch["parsed"], batch["error"],
                                                             batch["garments"], batch["parse_ms"]):
            photos = [self.garments[name] for name in json.loads(garments)]
            if error:
                outcomes = failed_batch(photos, error)
            else:
                call = ParseCall(self.from_bytes(bytes(parsed)), json.loads(parse_ms))
                outcomes = dress_batch(self.tryon, call, photos, self.settings.dress)
            for photo, outcome in zip(photos, outcomes):
                rows["person"].append(person)
                rows["garment"].append(photo.name)
                rows["status"].append(outcome.status)
                rows["confidence"].append(outcome.confidence)
                rows["reason"].append(outcome.reason)
                rows["timings"].append(json.dumps(outcome.timings_ms))
                rows["png"].append(outcome.png or b"")
        return rows


def render_ray(settings: Settings, batches: list[tuple[Input, list[Input]]], pools: Pools = Pools(),
               address: str | None = None) -> Iterator[tuple[str, str, Outcome]]:
    """Run the batches on Ray Data; yields (person file name, garment file name, outcome) as
    pairs finish, in any order. Joins the Ray cluster this process is already part of, or
    the one at `address`, or starts one on this machine (shut down again at the end)."""
    ray = import_ray("data")
    if not batches:
        return
    with joined_cluster(ray, address, logging_level=logging.WARNING) as own_cluster:
        try:
            _check_cpus(ray, pools, fixed=own_cluster)
            yield from _run(ray, settings, batches, pools)
        except ray.exceptions.RayError as exc:
            raise tryon_cause(exc, "worker") or exc


def _check_cpus(ray, pools: Pools, fixed: bool):
    """Every actor holds its CPUs for the whole run: a cluster with fewer would wait for
    ever. A cluster started here cannot grow, so that is refused; another may autoscale."""
    need = (pools.parse_actors + pools.dress_actors) * pools.cpus_per_actor
    have = ray.cluster_resources().get("CPU", 0)
    if need <= have:
        return
    message = (f"{pools.parse_actors} parse and {pools.dress_actors} dress actors of {pools.cpus_per_actor} "
               f"CPUs each need {need:g} CPUs; the Ray cluster has {have:g}")
    if fixed:
        raise InputError(f"{message}: ask for fewer (--parse-actors, --dress-actors, --cpus-per-actor)")
    logging.getLogger("tryon.catalogue").warning("%s: waiting for it to grow (autoscaling)", message)


def _run(ray, settings: Settings, batches, pools: Pools):
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the CLI shows its own, per pair
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # not a log line per operator start and end
    persons: dict[Input, list[list[str]]] = {}
    garments: dict[str, Photo] = {}
    for person, chunk in batches:
        persons.setdefault(person, []).append([g.path.name for g in chunk])
        for garment in chunk:
            if garment.path.name not in garments:
                garments[garment.path.name] = read_photo(garment)
    rows = []
    for person, chunks in persons.items():
        photo = read_photo(person)
        rows.append({"person": photo.name, "photo": photo.data or b"", "error": photo.error,
                     "batches": json.dumps(chunks)})
    threads, models = pools.cpus_per_actor, model_hashes(settings.models, settings.precision)
    dataset = (
        ray.data.from_items(rows, override_num_blocks=len(rows))
        .map_batches(ParseActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=pools.parse_actors),
                     num_cpus=pools.cpus_per_actor, fn_constructor_kwargs={"settings": settings, "threads": threads, "models": models})
        # The cross is a few dictionary copies: it reserves no CPU, so it never waits for
        # the actors that hold them all.
        .flat_map(cross, num_cpus=0)
        .map_batches(DressActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=pools.dress_actors),
                     num_cpus=pools.cpus_per_actor,
                     fn_constructor_kwargs={"settings": settings, "threads": threads, "models": models,
                                            "garments": ray.put(garments)})
    )
    # Each block as it comes: iter_rows prefetches one block ahead, which held every finished
    # person's pairs back until the next person's were dressed too.
    for block in dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        for person, garment, status, confidence, reason, timings, png in zip(
                block["person"], block["garment"], block["status"], block["confidence"], block["reason"],
                block["timings"], block["png"]):
            yield str(person), str(garment), Outcome(str(status), float(confidence), str(reason),
                                                     json.loads(timings), bytes(png) if len(png) else None)
