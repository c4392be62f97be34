"""The work of a catalogue, one piece of code for every engine: read a photo, parse one
person, dress one batch of its garments, each outcome named; and the local engine."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import TryonError
from ..images import encode
from ..options import DressOptions, ParseOptions
from .plan import Input, Settings


@dataclass
class Photo:
    """An input's bytes, or why it could not be read."""
    name: str  # its file name
    data: bytes | None
    error: str = ""


def read_photo(item: Input) -> Photo:
    try:
        return Photo(item.path.name, item.path.read_bytes())
    except OSError as exc:
        return Photo(item.path.name, None, f"cannot read {item.path}: {exc.strerror or exc}")


@dataclass
class Outcome:
    status: str  # ok | low_confidence | refused | failed
    confidence: float = 0.0
    reason: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    png: bytes | None = None  # the image, for the statuses in WRITTEN


def parse_photo(tryon, photo: Photo, options: ParseOptions):
    """(its ParseCall: the person and its parse's timings, '') or (None, why it cannot be used)."""
    from ..images import ImageError, load_rgb

    what = f"person photo {photo.name}"
    try:
        if photo.error:
            raise ImageError(f"{what}: {photo.error}")
        rgb = load_rgb(photo.data, what, jpeg_dct=options.jpeg_dct)  # here, so that a refusal names the file
    except ImageError as exc:
        return None, str(exc)
    try:
        return tryon.parse_call(rgb, options), ""
    except Exception as exc:  # one bad photo never stops a catalogue; the ledger keeps why
        return None, f"{what}: {_explained(exc)}"


def _explained(exc: Exception) -> str:
    """A project error's own message; anything else with its kind, as a bug would show. Errors of
    the machine rather than of the input (models, onnxruntime) go on up: they would fail every pair."""
    from ..errors import ModelsMissingError, RuntimeSetupError

    if isinstance(exc, (ModelsMissingError, RuntimeSetupError)):
        raise exc
    return str(exc) if isinstance(exc, TryonError) else f"unexpected {type(exc).__name__}: {exc}"


def dress_batch(tryon, call, garments: list[Photo], options: DressOptions) -> list[Outcome]:
    """One Outcome per garment, in order: GMM/TOM over the garments that decode, together;
    one that cannot be read or decoded fails alone. `call`: the person's ParseCall."""
    from ..images import ImageError

    names = [f"garment {photo.name}" for photo in garments]
    sources = [ImageError(f"{name}: {photo.error}") if photo.error else photo.data
               for name, photo in zip(names, garments)]
    try:
        dressed = tryon.dress(call.parsed, sources, options, names=names)
    except Exception as exc:
        return failed_batch(garments, f"dressing failed: {_explained(exc)}")
    parse_ms = round(call.timings_ms.get("total", 0.0), 1)
    return [_outcome(result, parse_ms) for result in dressed]


def _outcome(result, parse_ms: float) -> Outcome:
    """A garment's ledger outcome: its TryOnResult's status and PNG, or its TryonError."""
    if isinstance(result, TryonError):
        return Outcome("failed", reason=str(result))
    timings = {"parse": parse_ms, "dress": round(result.timings_ms.get("total", 0.0), 1)}
    if result.reason:
        return Outcome("refused", 0.0, result.reason, timings)
    return Outcome("ok" if result.ok else "low_confidence", float(result.confidence), "", timings,
                   encode(result.image, ".png"))


def failed_batch(garments: list, reason: str) -> list[Outcome]:
    return [Outcome("failed", reason=reason) for _ in garments]


def pair_outcomes(person: Input, garments: list[str], outcomes: list[Outcome]) -> list[tuple[str, str, Outcome]]:
    """What an engine yields for a batch: (person, garment file names, outcome) per garment."""
    return [(person.path.name, name, outcome) for name, outcome in zip(garments, outcomes)]


def render_local(tryon, batches: list[tuple[Input, list[Input]]],
                 settings: Settings) -> Iterator[tuple[str, str, Outcome]]:
    """The local engine, person by person: yields (person, garment file names, outcome) per batch."""
    current = None
    for person, garments in batches:
        if person != current:  # batches come person by person: keep one parse at a time
            current, (call, error) = person, parse_photo(tryon, read_photo(person), settings.parse)
        photos = [read_photo(g) for g in garments]
        outcomes = failed_batch(photos, error) if error else dress_batch(tryon, call, photos, settings.dress)
        yield from pair_outcomes(person, [g.path.name for g in garments], outcomes)
