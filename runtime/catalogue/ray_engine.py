"""The Ray engine of `tryon catalogue`: the local engine's batches on Ray Data.

    persons --map_batches(ParseActor pool)--> dress batches (a parsed person, <= DRESS_BATCH garments)
            --map_batches(DressActor pool)--> one row per pair: status, image (PNG bytes)
            --> this process writes the images and the ledger (tryon.catalogue.ledger.record)

The photos travel through Ray's object store (the garments once) and so do the images: the
worker nodes need the models folder but no shared file system.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from ..models.graphs import model_hashes
from ..parsed_person import ParseCall, ParsedPerson
from ..ray_cluster import check_cpus, check_node_models, import_ray, joined_cluster, tryon_cause
from .plan import Input, Settings
from .work import Outcome, Photo, dress_batch, failed_batch, parse_photo, read_photo

ROW = ("person", "garment", "status", "confidence", "reason", "timings", "png")  # a DressActor's row: one pair


@dataclass(frozen=True)
class Pools:
    parse_actors: int = 1  # JPP-Net replicas (the heavy step)
    dress_actors: int = 1  # GMM/TOM replicas
    cpus_per_actor: int = 1  # CPUs each actor reserves, and its ONNX Runtime threads


class ParseActor:
    def __init__(self, settings: Settings, threads: int, models: dict):
        check_node_models(settings.models, settings.precision, models, "catalogue runs with")
        self.settings, self.tryon = settings, settings.build(threads)

    def __call__(self, batch: dict) -> dict:
        """Each person, once per dress batch of its garments."""
        rows = {key: [] for key in ("person", "parsed", "error", "parse_ms", "garments")}
        for name, data, error, batches in zip(batch["person"], batch["photo"], batch["error"], batch["batches"]):
            call, why = parse_photo(self.tryon, Photo(name, bytes(data) or None, error), self.settings.parse)
            # the person's bytes keep no timings: the parse's travel beside them, for the ledger
            values = (name, call.parsed.to_bytes() if call else b"", why, json.dumps(call.timings_ms if call else {}))
            for garments in json.loads(batches):
                for key, value in zip(rows, (*values, json.dumps(garments))):
                    rows[key].append(value)
        return rows


class DressActor:
    """Holds one pipeline and every garment's bytes; dresses one batch per call."""

    def __init__(self, settings: Settings, threads: int, models: dict, garments):
        check_node_models(settings.models, settings.precision, models, "catalogue runs with")
        self.settings, self.tryon = settings, settings.build(threads, load_jppnet=False)
        import ray  # after the check, which needs no Ray

        self.garments: dict[str, Photo] = ray.get(garments) if isinstance(garments, ray.ObjectRef) else garments

    def __call__(self, batch: dict) -> dict:
        rows = {key: [] for key in ROW}
        for person, parsed, error, garments, parse_ms in zip(batch["person"], batch["parsed"], batch["error"],
                                                             batch["garments"], batch["parse_ms"]):
            photos = [self.garments[name] for name in json.loads(garments)]
            if error:
                outcomes = failed_batch(photos, error)
            else:
                call = ParseCall(ParsedPerson.from_bytes(bytes(parsed)), json.loads(parse_ms))
                outcomes = dress_batch(self.tryon, call, photos, self.settings.dress)
            for photo, outcome in zip(photos, outcomes):
                values = (person, photo.name, outcome.status, outcome.confidence, outcome.reason,
                          json.dumps(outcome.timings_ms), outcome.png or b"")
                for key, value in zip(ROW, values):
                    rows[key].append(value)
        return rows


def render_ray(settings: Settings, batches: list[tuple[Input, list[Input]]], pools: Pools = Pools(),
               address: str | None = None) -> Iterator[tuple[str, str, Outcome]]:
    """Run the batches on Ray Data, on the cluster `joined_cluster` gives; yields (person file
    name, garment file name, outcome) as pairs finish, in any order."""
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
    check_cpus(ray, (pools.parse_actors + pools.dress_actors) * pools.cpus_per_actor,
               f"{pools.parse_actors} parse and {pools.dress_actors} dress actors of {pools.cpus_per_actor} CPUs each",
               "--parse-actors, --dress-actors, --cpus-per-actor", fixed)


def _run(ray, settings: Settings, batches, pools: Pools):
    ray.data.DataContext.get_current().enable_progress_bars = False  # the CLI shows its own, per pair
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # not a log line per operator start and end
    persons: dict[Input, list[list[str]]] = {}
    for person, chunk in batches:
        persons.setdefault(person, []).append([g.path.name for g in chunk])
    garments = {g.path.name: g for _, chunk in batches for g in chunk}
    garments = {name: read_photo(garment) for name, garment in garments.items()}
    rows = []
    for person, chunks in persons.items():
        photo = read_photo(person)
        rows.append({"person": photo.name, "photo": photo.data or b"", "error": photo.error,
                     "batches": json.dumps(chunks)})
    built = {"settings": settings, "threads": pools.cpus_per_actor,
             "models": model_hashes(settings.models, settings.precision)}
    dataset = (
        ray.data.from_items(rows, override_num_blocks=len(rows))
        .map_batches(ParseActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=pools.parse_actors),
                     num_cpus=pools.cpus_per_actor, fn_constructor_kwargs=built)
        .map_batches(DressActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=pools.dress_actors),
                     num_cpus=pools.cpus_per_actor, fn_constructor_kwargs={**built, "garments": ray.put(garments)})
    )
    # Each block as it comes: iter_rows prefetches one block ahead, which held every finished
    # person's pairs back until the next person's were dressed too.
    for block in dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        for person, garment, status, confidence, reason, timings, png in zip(*(block[key] for key in ROW)):
            yield str(person), str(garment), Outcome(str(status), float(confidence), str(reason),
                                                     json.loads(timings), bytes(png) if len(png) else None)
