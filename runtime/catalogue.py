"""A catalogue: every model photo dressed in every garment (or in the listed pairs).

What both engines share (`tryon catalogue --engine local|ray`), so that they render the
same images and resume from the same ledger:

- the plan: which inputs, their output names (`OUT/<person>/<garment>.png`), which pairs
  are already done, and the dress batches (one person, up to `DRESS_BATCH` garments);
- the work on one person and on one dress batch (`parse_photo`, `dress_batch`): the
  engines differ only in where these run;
- the ledger `OUT/catalogue.jsonl`: one JSON line per finished pair, appended and flushed
  after the image is in place, so a killed run loses nothing it had written.
"""
from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError, TryonError
from .images import encode
from .model_dir import ModelDir
from .options import DressOptions, ParseOptions
from .parse_stage import JPPNET_BY_PRECISION, WINOGRAD
from .tryon import DRESS_BATCH, PipelineSettings

LEDGER = "catalogue.jsonl"
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".webp")
# ok: the image is written. low_confidence: written, but below the seed's 0.1 ("failure").
# refused: the person could not be dressed (no image). failed: an input could not be used.
WRITTEN = ("ok", "low_confidence")
DONE = (*WRITTEN, "refused")  # a rerun with the same settings would give the same answer


# -- inputs and names -------------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    path: Path
    name: str  # what its output is called: the stem, or the file name when stems collide


def list_images(folder: Path, what: str) -> list[Path]:
    """The image files directly in `folder`, sorted; hidden files are skipped."""
    if not folder.is_dir():
        raise InputError(f"{what} folder {folder} is not a folder")
    found = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise InputError(f"{what} folder {folder} holds no {', '.join(IMAGE_SUFFIXES)} files")
    return found


def name_inputs(paths: list[Path], what: str) -> list[Input]:
    """Output names: the stem, and the whole file name for files whose stems collide
    (x.jpg and x.png become x.jpg and x.png). Names that still collide are refused. Case
    is ignored when comparing: X and x are one name on macOS's and Windows' file systems."""
    by_stem: dict[str, list[Path]] = {}
    for path in paths:
        by_stem.setdefault(path.stem.casefold(), []).append(path)
    inputs = [Input(p, p.stem if len(by_stem[p.stem.casefold()]) == 1 else p.name) for p in paths]
    by_name: dict[str, list[str]] = {}
    for item in inputs:
        by_name.setdefault(item.name.casefold(), []).append(item.path.name)
    clashes = [" and ".join(files) for files in by_name.values() if len(files) > 1]
    if clashes:
        raise InputError(f"{what} files would share an output name: {'; '.join(clashes)}. Rename one of each")
    return inputs


@dataclass(frozen=True)
class Pair:
    person: Input
    garment: Input

    @property
    def key(self) -> tuple[str, str]:
        """How the ledger knows the pair: the two file names."""
        return self.person.path.name, self.garment.path.name

    def output(self, out: Path) -> Path:
        return out / self.person.name / f"{self.garment.name}.png"


@dataclass
class Catalogue:
    out: Path
    pairs: list[Pair]

    @classmethod
    def plan(cls, persons_dir: Path, garments_dir: Path, out: Path, pairs_file: Path | None = None) -> "Catalogue":
        """The pairs to render, named and checked before any work: every person x every
        garment, or the lines of `pairs_file` ('PERSON GARMENT', file names in the two
        folders). Refuses outputs that would land on an input or on the ledger."""
        persons = name_inputs(list_images(persons_dir, "person"), "person")
        garments = name_inputs(list_images(garments_dir, "garment"), "garment")
        if pairs_file is None:
            pairs = [Pair(p, g) for p in persons for g in garments]
        else:
            pairs = _listed_pairs(pairs_file, persons, garments)
        catalogue = cls(out, pairs)
        catalogue._check_outputs(persons + garments)
        return catalogue

    def _check_outputs(self, inputs: list[Input]):
        given = {item.path.resolve() for item in inputs}
        ledger = (self.out / LEDGER).resolve()
        for pair in self.pairs:
            target = pair.output(self.out).resolve()
            if target in given or target.parent in given:
                raise InputError(f"the output {target} of {pair.key[0]} x {pair.key[1]} would overwrite an "
                                 f"input: choose another -o folder")
            if target.parent == ledger:
                raise InputError(f"person {pair.person.path.name} would write into the ledger's place {ledger}: "
                                 "rename it")

    def batches(self, done: set[tuple[str, str]] = frozenset()) -> list[tuple[Input, list[Input]]]:
        """The dress batches both engines run: per person, its garments not yet done, in
        catalogue order, DRESS_BATCH at a time (GMM/TOM batch them exactly so)."""
        todo: dict[Input, list[Input]] = {}
        for pair in self.pairs:
            if pair.key not in done:
                todo.setdefault(pair.person, []).append(pair.garment)
        return [(person, garments[i:i + DRESS_BATCH])
                for person, garments in todo.items() for i in range(0, len(garments), DRESS_BATCH)]


def _listed_pairs(pairs_file: Path, persons: list[Input], garments: list[Input]) -> list[Pair]:
    try:
        text = pairs_file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--pairs {pairs_file}: cannot read it ({exc})") from None
    by_file = [{item.path.name: item for item in inputs} for inputs in (persons, garments)]
    pairs, seen, unknown = [], set(), []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2:
            raise InputError(f"--pairs {pairs_file} line {number}: expected 'PERSON GARMENT' (two file names), "
                             f"got {line.strip()!r}")
        found = [names.get(name) for names, name in zip(by_file, fields)]
        if None in found:
            unknown.append(f"line {number}: {line.strip()}")
        elif tuple(fields) not in seen:  # a repeated line renders once
            seen.add(tuple(fields))
            pairs.append(Pair(*found))
    if unknown:
        raise InputError(f"--pairs {pairs_file} names files that are not in the person and garment folders "
                         f"(file names such as 000010_0.jpg are accepted): {'; '.join(unknown[:5])}"
                         + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
    if not pairs:
        raise InputError(f"--pairs {pairs_file} lists no pairs")
    return pairs


# -- the settings a result depends on -----------------------------------------------------


@dataclass(frozen=True)
class Settings(PipelineSettings):
    """Everything an engine needs to build its pipeline and render, picklable for Ray actors."""
    parse: ParseOptions = ParseOptions()
    dress: DressOptions = DressOptions()

    def identity(self) -> dict:
        """What a ledger line records and a rerun compares: the models' sha256 and every
        setting that changes an image. A line with another identity is not 'done'."""
        return {"models": model_hashes(self.models, self.precision),
                "settings": {"scales": list(self.scales), "mirror": self.mirror, "precision": self.precision,
                             "provider": self.provider, **self.parse.__dict__, **self.dress.__dict__}}


def model_hashes(models: str | Path, precision: str) -> dict[str, str]:
    """sha256 of each model file a run at `precision` can use, from the manifest."""
    folder = ModelDir.open(models)
    names = [JPPNET_BY_PRECISION.get(precision, "jppnet"), *([WINOGRAD] if precision == "fp32" else []), "gmm", "tom"]
    return {name: folder.entry(name).sha256 or "" for name in names if folder.has(name)}


# -- the work: one person, one dress batch ---------------------------------------------------


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
    """(the ParseCall: the person and its parse's timings, '') or (None, why the photo cannot
    be used)."""
    from .images import ImageError, load_rgb

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
    """A project error's own message; anything else with its kind, as a bug would show.
    Errors of the machine rather than of the input (models, onnxruntime) go on up: they
    would fail every pair alike."""
    from .model_dir import ModelsMissingError
    from .session import RuntimeSetupError

    if isinstance(exc, (ModelsMissingError, RuntimeSetupError)):
        raise exc
    return str(exc) if isinstance(exc, TryonError) else f"unexpected {type(exc).__name__}: {exc}"


def dress_batch(tryon, call, garments: list[Photo], options: DressOptions) -> list[Outcome]:
    """One Outcome per garment, in order: GMM/TOM over the garments that decode, together;
    one that cannot be read or decoded fails alone. `call`: the person's ParseCall."""
    from .images import ImageError

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


def failed_batch(garments: list[Photo], reason: str) -> list[Outcome]:
    return [Outcome("failed", reason=reason) for _ in garments]


def render_local(tryon, batches: list[tuple[Input, list[Input]]], settings: Settings) -> Iterator[tuple[str, str, Outcome]]:
    """The local engine: in this process, person by person. Yields (person file name,
    garment file name, outcome) as each batch is dressed."""
    parsed_by_person: dict[Input, tuple] = {}
    for person, garments in batches:
        if person not in parsed_by_person:
            parsed_by_person.clear()  # batches come person by person: keep one parse at a time
            parsed_by_person[person] = parse_photo(tryon, read_photo(person), settings.parse)
        call, error = parsed_by_person[person]
        photos = [read_photo(g) for g in garments]
        outcomes = failed_batch(photos, error) if error else dress_batch(tryon, call, photos, settings.dress)
        for garment, outcome in zip(garments, outcomes):
            yield person.path.name, garment.path.name, outcome


# -- the ledger --------------------------------------------------------------------------


class Ledger:
    """OUT/catalogue.jsonl: one line per finished pair, the last line of a pair wins. Held
    with an exclusive lock while a run writes, so two runs never share an output folder."""

    def __init__(self, out: Path):
        self.path = out / LEDGER
        self._file = None

    def read(self) -> dict[tuple[str, str], dict]:
        """The last line of each pair; a torn last line (a killed run) is skipped."""
        lines: dict[tuple[str, str], dict] = {}
        if not self.path.is_file():
            return lines
        for text in self.path.read_text(errors="replace").splitlines():
            try:
                line = json.loads(text)
                lines[(line["person"], line["garment"])] = line
            except (ValueError, KeyError, TypeError):
                continue
        return lines

    def done(self, catalogue: Catalogue, identity: dict) -> set[tuple[str, str]]:
        """Pairs a rerun skips: finished with the same models and settings, and their image
        (for those that write one) still in place."""
        lines = self.read()
        done = set()
        for pair in catalogue.pairs:
            line = lines.get(pair.key)
            if (line and line.get("status") in DONE and line.get("models") == identity["models"]
                    and line.get("settings") == identity["settings"]
                    and (line["status"] not in WRITTEN or pair.output(catalogue.out).is_file())):
                done.add(pair.key)
        return done

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            raise InputError(f"another tryon catalogue is writing {self.path.parent} (its ledger is locked): "
                             "wait for it, or choose another -o folder") from None
        self._file.seek(0, os.SEEK_END)
        if self._file.tell():  # a killed run may have left half a line: start on a fresh one
            self._file.seek(-1, os.SEEK_END)
            if self._file.read(1) != b"\n":
                self._file.write(b"\n")
        return self

    def __exit__(self, *exc):
        self._file.close()

    def append(self, line: dict):
        self._file.write((json.dumps(line) + "\n").encode())
        self._file.flush()
        os.fsync(self._file.fileno())


def record(out: Path, ledger: Ledger, pairs: dict[tuple[str, str], Pair], person: str, garment: str,
           outcome: Outcome, identity: dict, engine: str) -> dict:
    """Put one pair's image in place, then its ledger line; returns the line."""
    from .files import write_atomically

    pair = pairs[(person, garment)]
    target = pair.output(out)
    if outcome.png is not None:
        write_atomically(target, outcome.png)
    line = {"person": person, "garment": garment, "output": str(target.relative_to(out)),
            "status": outcome.status, "confidence": round(outcome.confidence, 6), "reason": outcome.reason,
            "timings_ms": outcome.timings_ms, **identity, "engine": engine,
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    ledger.append(line)
    return line


def summarize(catalogue: Catalogue, ledger: Ledger, identity: dict) -> dict[str, list[dict]]:
    """The catalogue's state as its ledger tells it now: ledger lines by status, and
    'pending' for pairs without a line of these settings."""
    lines = ledger.read()
    by_status: dict[str, list[dict]] = {}
    for pair in catalogue.pairs:
        line = lines.get(pair.key)
        current = (line and line.get("models") == identity["models"] and line.get("settings") == identity["settings"])
        status = line["status"] if current else "pending"
        by_status.setdefault(status, []).append(line if current else {"person": pair.key[0], "garment": pair.key[1]})
    return by_status


def pair_index(catalogue: Catalogue) -> dict[tuple[str, str], Pair]:
    return {pair.key: pair for pair in catalogue.pairs}


def batch_pairs(batches: Iterable[tuple[Input, list[Input]]]) -> int:
    return sum(len(garments) for _, garments in batches)
