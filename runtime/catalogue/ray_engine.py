"""The Ray engine of `tryon catalogue`: the local engine's work on Ray actors, one per node.

Each Worker loads all three networks once and does either step: parse a person, or dress one
batch of a parsed person's garments (the batches of `Catalogue.batches`). This process hands the
next piece of work to whichever worker is free (a batch of a parsed person before a new
person, so that persons finish in order), writes the images and the ledger as they come, and
gives the work of a worker that died (its process killed, its node lost) to another.

The photos travel through Ray's object store (the garments once), and so do the parsed
persons and the images: the nodes need the models folder but no shared file system.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import Unavailable
from ..models.graphs import model_hashes
from ..parsed_person import ParseCall, ParsedPerson
from ..ray_cluster import check_cpus, check_node_models, import_ray, joined_cluster, tryon_cause
from .plan import Input, Settings
from .work import Outcome, Photo, dress_batch, failed_batch, parse_photo, read_photo

log = logging.getLogger("tryon.catalogue")


@dataclass(frozen=True)
class Place:
    """One worker: the CPUs it reserves, its ONNX Runtime threads, and the node it is pinned to
    (the sizing rule's one per node; None: wherever Ray finds room)."""
    cpus: float
    threads: int
    node: str | None = None


def fit_workers(node_cpus: dict[str, float]) -> list[Place]:
    """The sizing rule (docs/distributed.md): one worker per node with CPUs, reserving all of
    them and running as many threads. A step's threads then never wait for the other step's, as
    two actors sharing a core did, and a node runs either step at its full speed."""
    return [Place(cpus, max(1, int(cpus)), node) for node, cpus in node_cpus.items()]


def given_workers(count: int, cpus: float) -> list[Place]:
    """`count` workers of `cpus` CPUs each (a fraction allowed) and as many threads, rounded up."""
    return [Place(cpus, max(1, math.ceil(cpus)))] * count


def describe(places: list[Place]) -> str:
    shapes: dict[tuple[float, int], int] = {}
    for place in places:
        shapes[place.cpus, place.threads] = shapes.get((place.cpus, place.threads), 0) + 1
    return ", ".join(f"{n} worker{'s' * (n > 1)} of {cpus:g} CPUs and {threads} threads"
                     for (cpus, threads), n in sorted(shapes.items()))


class Worker:
    """Both steps of a catalogue on one node; holds the pipeline and every garment's bytes."""

    def __init__(self, settings: Settings, threads: int, models: dict, garments: dict[str, Photo]):
        check_node_models(settings.models, settings.precision, models, "catalogue runs with")
        self.settings, self.tryon, self.garments = settings, settings.build(threads), garments

    def ready(self) -> bool:
        return True

    def parse(self, photo: Photo) -> tuple[str, dict, bytes]:
        """(why it cannot be used or '', the parse's timings, the person's bytes)."""
        call, why = parse_photo(self.tryon, photo, self.settings.parse)
        return why, call.timings_ms if call else {}, call.parsed.to_bytes() if call else b""

    def dress(self, parsed: bytes, timings: dict, garments: list[str]) -> list[Outcome]:
        call = ParseCall(ParsedPerson.from_bytes(parsed), timings)
        return dress_batch(self.tryon, call, [self.garments[name] for name in garments], self.settings.dress)


def render_ray(settings: Settings, batches: list[tuple[Input, list[Input]]], places: list[Place] | None = None,
               address: str | None = None,
               sized: Callable[[list[Place], list[float]], None] = lambda places, node_cpus: None,
               ) -> Iterator[tuple[str, str, Outcome]]:
    """Run the batches on the Ray cluster `joined_cluster` gives; yields (person file name,
    garment file name, outcome) as pairs finish, in any order. `places`: the rule's one worker
    per node when not given; `sized` is told them and the nodes' CPUs."""
    ray = import_ray()
    if not batches:
        return
    with joined_cluster(ray, address, logging_level=logging.WARNING) as own_cluster:
        try:
            nodes = _live_nodes(ray)
            places = places or fit_workers(nodes)
            _check_cpus(ray, places, fixed=own_cluster)
            sized(places, sorted(nodes.values()))
            yield from _run(ray, settings, batches, places)
        except ray.exceptions.RayError as exc:
            raise tryon_cause(exc, "worker") or exc


def _check_cpus(ray, places: list[Place], fixed: bool):
    check_cpus(ray, round(sum(place.cpus for place in places), 4), describe(places), "--workers, --cpus-per-worker",
               fixed)


def _live_nodes(ray) -> dict[str, float]:
    """Each live node with CPUs: its id and CPUs."""
    return {node["NodeID"]: node["Resources"]["CPU"] for node in ray.nodes()
            if node["Alive"] and node["Resources"].get("CPU", 0) > 0}


class _Crew:
    """The workers of a run: starting, idle or busy; one lost is started again where it was
    (its process killed) or left out (its node gone: the others take its work)."""

    def __init__(self, ray, places: list[Place], built: dict):
        self.ray, self.built = ray, built
        self.starting: dict = {}  # a worker's ready() call -> (its handle, its place)
        self.idle: list = []  # (handle, place)
        self.busy = 0
        for place in places:
            self.start(place)

    def start(self, place: Place):
        options = {"num_cpus": place.cpus, "max_restarts": 0}
        if place.node:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(place.node, soft=False)
        handle = self.ray.remote(Worker).options(**options).remote(threads=place.threads, **self.built)
        self.starting[handle.ready.remote()] = (handle, place)

    def started(self, ref):
        """A worker's ready() answered: idle; or it could not start: the error its __init__
        raised (its node's models, say), or, lost before it started, as `lost`."""
        _, place = worker = self.starting.pop(ref)
        try:
            self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            if exc.actor_init_failed:
                raise
            self.lost(place)
            return
        self.idle.append(worker)

    def lost(self, place: Place):
        """A worker died: started again where it was (its process killed, or anywhere for one not
        pinned to a node), or left out (its node gone: the others take its work)."""
        if place.node is None or place.node in _live_nodes(self.ray):
            log.warning("a Ray worker died; starting another in its place and giving its work to the next free one")
            self.start(place)
        else:
            self.left_out()

    def left_out(self):
        if not (self.idle or self.busy or self.starting):
            raise Unavailable("every Ray worker was lost with its node: rerun the command to resume from the ledger")
        log.warning("a Ray worker was lost with its node; its work goes to the others")


def _run(ray, settings: Settings, batches, places: list[Place]):
    garments = {g.path.name: read_photo(g) for _, chunk in batches for g in chunk}
    persons: dict[Input, list[list[str]]] = {}
    for person, chunk in batches:
        persons.setdefault(person, []).append([g.path.name for g in chunk])
    crew = _Crew(ray, places, {"settings": settings, "models": model_hashes(settings.models, settings.precision),
                               "garments": ray.put(garments)})
    to_parse: deque = deque(persons)
    # (person, its bytes, put here so that they outlive the node that parsed it, its parse's timings, garment names)
    to_dress: deque = deque()
    running: dict = {}  # a call's ref -> (its worker, "parse" or "dress", what it was given)
    finished: list = []  # (person, garment, outcome) not yielded yet
    while to_parse or to_dress or running:
        while crew.idle and (to_parse or to_dress):
            handle, _ = worker = crew.idle.pop()
            crew.busy += 1
            if to_dress:
                item = to_dress.popleft()
                running[handle.dress.remote(*item[1:])] = (worker, to_dress, item)
            else:
                item = to_parse.popleft()
                running[handle.parse.remote(read_photo(item))] = (worker, to_parse, item)
        yield from finished  # after the free workers have their next work
        finished.clear()
        if not (running or crew.starting):
            raise Unavailable("no Ray worker is left to give the catalogue's work to: rerun the command to resume")
        [ref], _ = ray.wait([*running, *crew.starting], num_returns=1)
        if ref in crew.starting:
            crew.started(ref)
            continue
        worker, queue, item = running.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayActorError:  # its process or node lost: the work goes to another
            queue.appendleft(item)
            crew.busy -= 1
            crew.lost(worker[1])
            continue
        crew.busy -= 1
        crew.idle.append(worker)
        if queue is to_dress:
            person, _, _, names = item
            finished.extend((person.path.name, name, outcome) for name, outcome in zip(names, result))
            continue
        why, timings, parsed = result
        if why:
            for names in persons[item]:
                outcomes = failed_batch([garments[n] for n in names], why)
                finished.extend((item.path.name, name, outcome) for name, outcome in zip(names, outcomes))
        else:
            parsed = ray.put(parsed)
            to_dress.extend((item, parsed, timings, names) for names in persons[item])
    yield from finished
