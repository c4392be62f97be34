"""The Ray engine of `tryon catalogue`: the local engine's batches on Ray Data.

    persons --map_batches(ParseActor pool)--> dress batches (a parsed person, <= DRESS_BATCH garments)
            --map_batches(DressActor pool)--> one row per pair: status, image (PNG bytes)
            --> this process writes the images and the ledger (tryon.catalogue.ledger.record)

The photos travel through Ray's object store (the garments once) and so do the images: the
worker nodes need the models folder but no shared file system. The pools are sized to the
cluster and the catalogue (`Pools.fit`) unless given.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass

from ..models.graphs import model_hashes
from ..parsed_person import ParseCall, ParsedPerson
from ..ray_cluster import check_cpus, check_node_models, import_ray, joined_cluster, tryon_cause
from .plan import Input, Settings
from .work import Outcome, Photo, dress_batch, failed_batch, parse_photo, read_photo

ROW = ("person", "garment", "status", "confidence", "reason", "timings", "png")  # a DressActor's row: one pair


# A garment's GMM/TOM against a photo's JPP-Net, fp32 on 2 cores with every scale and the mirror (146 ms and
# 12,860 ms: benchmarks/README.md); JPP-Net's time goes with the pixels it runs over, scales squared x mirror.
DRESS_PER_PARSE = 146 / 12_860
FULL_TTA = (1.0 + 0.75 ** 2 + 1.25 ** 2) * 2


@dataclass(frozen=True)
class Pools:
    """The two actor pools: how many actors, the CPUs each reserves (fractions allowed) and its
    ONNX Runtime threads."""
    parse_actors: int = 1  # JPP-Net replicas (the heavy step)
    dress_actors: int = 1  # GMM/TOM replicas
    parse_cpus: float = 1
    dress_cpus: float = 1
    parse_threads: int = 1
    dress_threads: int = 1

    @classmethod
    def given(cls, parse_actors: int, dress_actors: int, cpus: float) -> "Pools":
        """Every actor reserving `cpus` and running as many threads (at least one)."""
        threads = max(1, math.ceil(cpus))
        return cls(parse_actors, dress_actors, cpus, cpus, threads, threads)

    @classmethod
    def fit(cls, node_cpus: list[float], batches: list[tuple[Input, list[Input]]], settings: Settings) -> "Pools":
        """The sizing rule (docs/distributed.md): for each CPU of the cluster a parse actor and a
        dress actor of one thread each, sharing it in the proportion of their work on a person
        (its parse against its garments'), so that the cores a step leaves idle the other uses;
        no more parse actors than persons nor dress actors than dress batches, the threads of
        those not made going to the others (up to the largest node's CPUs)."""
        cpus = max(1, int(sum(node_cpus)))
        persons = len({person for person, _ in batches})
        tta = sum(scale * scale for scale in settings.scales) * (2 if settings.mirror else 1)
        dress = sum(len(garments) for _, garments in batches) / persons * DRESS_PER_PARSE * FULL_TTA / tta
        share = min(0.99, max(0.01, round(dress / (1 + dress), 2)))  # of each CPU, the dress actor's
        parse_actors, dress_actors = min(persons, cpus), min(len(batches), cpus)
        parse_threads, dress_threads = (max(1, min(cpus // actors, int(max(node_cpus, default=1)))) for actors in
                                        (parse_actors, dress_actors))
        return cls(parse_actors, dress_actors, round((1 - share) * parse_threads, 2), round(share * dress_threads, 2),
                   parse_threads, dress_threads)

    def __str__(self):
        return (f"{self.parse_actors} parse actors of {self.parse_cpus:g} CPUs and {self.parse_threads} threads, "
                f"{self.dress_actors} dress actors of {self.dress_cpus:g} CPUs and {self.dress_threads} threads")


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


def render_ray(settings: Settings, batches: list[tuple[Input, list[Input]]], pools: Pools | None = None,
               address: str | None = None,
               sized: Callable[[Pools, list[float]], None] = lambda pools, node_cpus: None,
               ) -> Iterator[tuple[str, str, Outcome]]:
    """Run the batches on Ray Data, on the cluster `joined_cluster` gives; yields (person file
    name, garment file name, outcome) as pairs finish, in any order. `pools`: fitted to the
    cluster's CPUs and the catalogue when not given; `sized` is told them and the nodes' CPUs."""
    ray = import_ray("data")
    if not batches:
        return
    with joined_cluster(ray, address, logging_level=logging.WARNING) as own_cluster:
        try:
            node_cpus = sorted(node["Resources"].get("CPU", 0) for node in ray.nodes()
                               if node["Alive"] and node["Resources"].get("CPU", 0) > 0)
            pools = pools or Pools.fit(node_cpus, batches, settings)
            _check_cpus(ray, pools, fixed=own_cluster)
            sized(pools, node_cpus)
            yield from _run(ray, settings, batches, pools)
        except ray.exceptions.RayError as exc:
            raise tryon_cause(exc, "worker") or exc


def _check_cpus(ray, pools: Pools, fixed: bool):
    need = round(pools.parse_actors * pools.parse_cpus + pools.dress_actors * pools.dress_cpus, 4)
    check_cpus(ray, need, str(pools),
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
    built = {"settings": settings, "models": model_hashes(settings.models, settings.precision)}
    dataset = (
        ray.data.from_items(rows, override_num_blocks=len(rows))
        .map_batches(ParseActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=pools.parse_actors),
                     num_cpus=pools.parse_cpus, fn_constructor_kwargs={**built, "threads": pools.parse_threads})
        .map_batches(DressActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=pools.dress_actors),
                     num_cpus=pools.dress_cpus, fn_constructor_kwargs={**built, "threads": pools.dress_threads,
                                                                       "garments": ray.put(garments)})
    )
    # Each block as it comes: iter_rows prefetches one block ahead, which held every finished
    # person's pairs back until the next person's were dressed too.
    for block in dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        for person, garment, status, confidence, reason, timings, png in zip(*(block[key] for key in ROW)):
            yield str(person), str(garment), Outcome(str(status), float(confidence), str(reason),
                                                     json.loads(timings), bytes(png) if len(png) else None)
