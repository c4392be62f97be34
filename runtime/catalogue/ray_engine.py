"""The Ray engine of `tryon catalogue`: the local engine's work on Ray actors, one per node.

Each Worker loads all three networks once and does either step: parse a person, or dress one
batch of a parsed person's garments (the batches of `Catalogue.batches`). The driver hands the
next piece of work to whichever worker is free (a batch of a parsed person before a new
person, so that persons finish in order), passes the images on as they come, and gives the work
of a worker that died (its process killed, its node lost) to another. The command's process
writes the images and the ledger; the driver is a child process it watches (`ray_driver`).

The photos travel through Ray's object store (the garments once), and so do the parsed
persons and the images: the nodes need the models folder but no shared file system.
"""
from __future__ import annotations

import logging
import math
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import Unavailable
from ..models.graphs import model_hashes
from ..parsed_person import ParseCall, ParsedPerson
from ..ray_cluster import check_cpus, check_node_models, import_ray, joined_cluster, tryon_cause
from .plan import Input, Settings
from .ray_driver import driven_in_child
from .work import Outcome, Photo, dress_batch, failed_batch, pair_outcomes, parse_photo, read_photo

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
    shapes = Counter((place.cpus, place.threads) for place in places)
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
    per node when not given; `sized` is told them and the nodes' CPUs. Unless this process is in
    a cluster already (its caller's to lose), the driver is a watched child (`ray_driver`), so
    that a lost head ends the command with one line."""
    ray = import_ray()
    if not batches:
        return
    if ray.is_initialized():
        yield from _drive(ray, settings, batches, places, address, sized)
    else:
        yield from driven_in_child(_drive, settings, batches, places, address=address, sized=sized)


def _drive(ray, settings: Settings, batches, places: list[Place] | None, address: str | None, sized):
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
    return {node["NodeID"]: node["Resources"]["CPU"] for node in ray.nodes()
            if node["Alive"] and node["Resources"].get("CPU", 0) > 0}


def _run(ray, settings: Settings, batches, places: list[Place]):
    persons: dict[Input, list[list[str]]] = {}
    for person, chunk in batches:
        persons.setdefault(person, []).append([g.path.name for g in chunk])
    built = {"settings": settings, "models": model_hashes(settings.models, settings.precision),
             "garments": ray.put({g.path.name: read_photo(g) for _, chunk in batches for g in chunk})}
    to_parse: deque = deque(persons)
    # (person, its bytes, put here so that they outlive the node that parsed it, its parse's timings, garment names)
    to_dress: deque = deque()
    # a call's ref -> (its worker: handle and place, to_parse or to_dress, what it was given); a worker's
    # ready() call, answered once the worker has started, has no queue and no item
    calls: dict = {}
    idle: list = []  # (handle, place)
    finished: list = []  # (person, garment, outcome) not yielded yet

    def start(place: Place):
        options = {"num_cpus": place.cpus, "max_restarts": 0}
        if place.node:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(place.node, soft=False)
        handle = ray.remote(Worker).options(**options).remote(threads=place.threads, **built)
        calls[handle.ready.remote()] = ((handle, place), None, None)

    for place in places:
        start(place)
    while to_parse or to_dress or any(queue is not None for _, queue, _ in calls.values()):
        while idle and (to_parse or to_dress):
            handle, _ = worker = idle.pop()
            if to_dress:
                item = to_dress.popleft()
                calls[handle.dress.remote(*item[1:])] = (worker, to_dress, item)
            else:
                item = to_parse.popleft()
                calls[handle.parse.remote(read_photo(item))] = (worker, to_parse, item)
        yield from finished  # after the free workers have their next work
        finished.clear()
        if not calls:
            raise Unavailable("no Ray worker is left to give the catalogue's work to: rerun the command to resume")
        [ref], _ = ray.wait(list(calls), num_returns=1)
        worker, queue, item = calls.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            if exc.actor_init_failed:
                raise  # the error its __init__ raised (its node's models, say)
            if queue is not None:  # its process or node lost: the work goes to another
                queue.appendleft(item)
            place = worker[1]
            if place.node is None or place.node in _live_nodes(ray):  # its process killed, or not pinned
                log.warning("a Ray worker died; starting another in its place and giving its work to the next "
                            "free one")
                start(place)
            elif not (idle or calls):  # its node gone: the others, if any, take its work
                raise Unavailable("every Ray worker was lost with its node: rerun the command to resume from the "
                                  "ledger")
            else:
                log.warning("a Ray worker was lost with its node; its work goes to the others")
            continue
        idle.append(worker)
        if queue is to_dress:
            finished.extend(pair_outcomes(item[0], item[3], result))
        elif queue is to_parse:
            why, timings, parsed = result
            if why:
                for names in persons[item]:
                    finished.extend(pair_outcomes(item, names, failed_batch(names, why)))
            else:
                parsed = ray.put(parsed)
                to_dress.extend((item, parsed, timings, names) for names in persons[item])
    yield from finished
