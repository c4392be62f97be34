"""Where the service's inference runs. The routes and `TryOnService` call `parse` and `dress`
and never learn where they run: `LocalInference` runs the TryOn in this process's worker
threads behind the InferenceGate; `tryon.runtime.serve_ray` runs them on Ray Serve
deployments (`tryon serve --engine ray`)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from ..images import encode
from ..parsed_person import ParsedPerson
from ..session import providers_in_use
from ..tryon import join_timings
from .limits import InferenceGate

if TYPE_CHECKING:
    from ..options import DressOptions, ParseOptions
    from ..person_store import PersonStore
    from ..tryon import TryOn, TryOnResult


class Inference(ABC):
    """The two steps, the person store they share, and what /healthz says about them.
    `request` (the Starlette request, or None) lets an engine drop work whose client left."""

    store: "PersonStore"

    @abstractmethod
    async def parse(self, request, photo: bytes, options: "ParseOptions") -> ParsedPerson:
        """Parse a photo, or find it in the store (then without running JPP-Net)."""

    @abstractmethod
    async def dress(self, request, parsed: ParsedPerson, garments: list, options: "DressOptions",
                    image_format: str) -> list[tuple["TryOnResult", bytes]]:
        """Each garment's result and its image encoded as `image_format`, in order."""

    async def tryon(self, request, person, garment, parse_options: "ParseOptions", dress_options: "DressOptions",
                    image_format: str) -> tuple[ParsedPerson, "TryOnResult", bytes]:
        """One try-on; `person` is photo bytes or a ParsedPerson."""
        parsed = person if isinstance(person, ParsedPerson) else await self.parse(request, person, parse_options)
        [(result, image)] = await self.dress(request, parsed, [garment], dress_options, image_format)
        return parsed, joined(person, parsed, result), image

    @abstractmethod
    def describe(self) -> dict:
        """synthetic, family, jppnet_graph (the file in use) and providers (what the sessions run on)."""

    @abstractmethod
    def load(self) -> dict:
        """max_concurrent, queue, in_flight."""


def joined(person, parsed: ParsedPerson, result: "TryOnResult") -> "TryOnResult":
    """A one-call try-on's timings: the parse's, when this call parsed, then the dress's."""
    if parsed is not person:
        result.timings_ms = join_timings(parsed.timings_ms, result.timings_ms)
    return result


def describe(tryon: "TryOn") -> dict:
    """What a loaded pipeline runs: `Inference.describe` of the sessions it holds."""
    sessions = [tryon.cpvton.gmm, tryon.cpvton.tom]
    facts = {"synthetic": bool(tryon.synthetic), "family": tryon.models.family}
    if tryon.parse_stage is not None:
        sessions.insert(0, tryon.parse_stage.session)
        facts["jppnet_graph"] = tryon.models.entry(tryon.jppnet_graph)["file"]
    facts["providers"] = list(dict.fromkeys(p for session in sessions for p in providers_in_use(session)))
    return facts


class LocalInference(Inference):
    """The TryOn in this process: every step in a worker thread once the gate admits it."""

    def __init__(self, pipeline: "TryOn", gate: InferenceGate):
        self.pipeline = pipeline
        self.gate = gate
        self._facts = describe(pipeline)

    @property
    def store(self):
        return self.pipeline.store

    async def parse(self, request, photo, options):
        return await self.gate.run(request, self.pipeline.parse, photo, options)

    async def dress(self, request, parsed, garments, options, image_format):
        return await self.gate.run(request, self._dress, parsed, garments, options, image_format)

    async def tryon(self, request, person, garment, parse_options, dress_options, image_format):
        # Parse and dress in one slot: a one-call try-on never queues twice.
        return await self.gate.run(request, self._tryon, person, garment, parse_options, dress_options, image_format)

    def _dress(self, parsed, garments, options, image_format):
        # Decoding and encoding run here, in the worker thread, to keep the event loop free.
        results = self.pipeline.dress(parsed, garments, options)
        return [(result, encode(result.image, image_format)) for result in results]

    def _tryon(self, person, garment, parse_options, dress_options, image_format):
        parsed = person if isinstance(person, ParsedPerson) else self.pipeline.parse(person, parse_options)
        [(result, image)] = self._dress(parsed, [garment], dress_options, image_format)
        return parsed, joined(person, parsed, result), image

    def describe(self):
        return self._facts

    def load(self):
        return {"max_concurrent": self.gate.max_concurrent, "queue": self.gate.queue, "in_flight": self.gate.admitted}
