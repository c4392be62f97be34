"""Where the service's inference runs, hidden from the routes: `LocalInference` (this process's
worker threads behind the InferenceGate) or `tryon.serve.ray_engine` (Ray Serve deployments)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from functools import partial
from typing import TYPE_CHECKING

from ..errors import TryonError
from ..images import encode
from ..parsed_person import ParseCall, ParsedPerson
from ..pipeline import join_timings
from .limits import InferenceGate

if TYPE_CHECKING:
    from ..options import DressOptions, ParseOptions
    from ..pipeline import GarmentOutcome, TryOn, TryOnResult
    from ..store import PersonStore


class Inference(ABC):
    """The two steps, the person store they share, and what /healthz says about them.
    `request` (the Starlette request, or None) lets an engine drop work whose client left."""

    store: "PersonStore"
    # Whether `parse_background` and `dress_background` exist: the exact parse behind a preview
    # and the pre-dressed gallery (serve/follow_up.py) run only on an engine that has them.
    background = False

    @abstractmethod
    async def parse(self, request, photo: bytes, options: "ParseOptions") -> ParseCall:
        """Parse a photo, or find it in the store."""

    @abstractmethod
    async def dress(self, request, parsed: ParsedPerson, garments: list, options: "DressOptions",
                    image_format: str) -> list[tuple["TryOnResult", bytes] | TryonError]:
        """Each garment's outcome, in order (`encoded`)."""

    async def parse_preview(self, request, photo: bytes, options: "ParseOptions") -> ParseCall:
        """A quick parse (quality "preview") to answer at once; an engine without one parses exactly."""
        return await self.parse(request, photo, options)

    async def tryon(self, request, person, garment, parse_options: "ParseOptions", dress_options: "DressOptions",
                    image_format: str) -> tuple[ParsedPerson, "TryOnResult", bytes]:
        return await one_tryon(partial(self.parse, request), partial(self.dress, request), person, garment,
                               parse_options, dress_options, image_format)

    def describe(self) -> dict:
        """synthetic, family, jppnet_graph (the file in use) and providers (what the sessions run on)."""
        return self._facts

    @abstractmethod
    def load(self) -> dict:
        """max_concurrent, queue, in_flight."""


async def one_tryon(parse, dress, person, garment, parse_options: "ParseOptions", dress_options: "DressOptions",
                    image_format: str) -> tuple[ParsedPerson, "TryOnResult", bytes]:
    """The one-call try-on over any engine's two steps; `person` is photo bytes or a ParsedPerson.
    The result's timings are the parse's (when this call parsed), then the dress's."""
    call = None if isinstance(person, ParsedPerson) else await parse(person, parse_options)
    parsed = person if call is None else call.parsed
    [outcome] = await dress(parsed, [garment], dress_options, image_format)
    if isinstance(outcome, TryonError):
        raise outcome
    result, image = outcome
    if call is not None:
        result.timings_ms = join_timings(call.timings_ms, result.timings_ms)
    return parsed, result, image


def encoded(outcomes: list["GarmentOutcome"], image_format: str) -> list[tuple["TryOnResult", bytes] | TryonError]:
    """`TryOn.dress`'s outcomes as `Inference.dress` answers them: (result, encoded image) or the error."""
    return [outcome if isinstance(outcome, TryonError) else (outcome, encode(outcome.image, image_format))
            for outcome in outcomes]


def finished(coroutine):
    """The value of a coroutine whose awaits never wait, run to its end here."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("a step that runs at once waited")


class LocalInference(Inference):
    """The TryOn in this process: every step in a worker thread once the gate admits it."""

    background = True

    def __init__(self, pipeline: "TryOn", gate: InferenceGate):
        self.pipeline = pipeline
        self.gate = gate
        self._facts = pipeline.describe()

    @property
    def store(self):
        return self.pipeline.store

    async def parse(self, request, photo, options):
        return await self.gate.run(request, self.pipeline.parse_call, photo, options)

    async def dress(self, request, parsed, garments, options, image_format):
        return await self.gate.run(request, self._dress, parsed, garments, options, image_format)

    async def parse_preview(self, request, photo, options):
        return await self.gate.run(request, partial(self.pipeline.parse_call, preview=True), photo, options)

    async def parse_background(self, photo: bytes, options: "ParseOptions") -> ParseCall:
        return await self.gate.run_background(self.pipeline.parse_call, photo, options)

    async def dress_background(self, parsed: ParsedPerson, garments: list, options: "DressOptions"):
        return await self.gate.run_background(self._dress_singly, parsed, garments, options)

    def _dress_singly(self, parsed, garments, options):
        # One GMM/TOM run per garment, as a click's: a batch's results differ from a single garment's
        # by up to one uint8 step (tests/test_parse_dress.py), and a kept try-on must be a click's bytes.
        return [self._dress(parsed, [garment], options, ".png")[0] for garment in garments]

    async def tryon(self, request, person, garment, parse_options, dress_options, image_format):
        # Parse and dress in one slot: a one-call try-on never queues twice.
        return await self.gate.run(request, self._tryon, person, garment, parse_options, dress_options, image_format)

    def _dress(self, parsed, garments, options, image_format):
        # Decoding and encoding run here, in the worker thread, to keep the event loop free.
        return encoded(self.pipeline.dress(parsed, garments, options), image_format)

    def _tryon(self, *args):
        async def parse(photo, options):
            return self.pipeline.parse_call(photo, options)

        async def dress(*dress_args):
            return self._dress(*dress_args)

        return finished(one_tryon(parse, dress, *args))

    def load(self):
        return {"max_concurrent": self.gate.max_concurrent, "queue": self.gate.queue, "in_flight": self.gate.admitted}
