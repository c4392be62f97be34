"""A catalogue's plan, which both engines render from so that they write the same images and
resume from the same ledger: the inputs, their output names (`OUT/<person>/<garment>.png`),
the dress batches (one person, up to `DRESS_BATCH` garments), and the settings a result
depends on."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..errors import InputError
from ..models.graphs import model_hashes
from ..options import DressOptions, ParseOptions
from ..pipeline import DRESS_BATCH, PipelineSettings

LEDGER = "catalogue.jsonl"
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".webp")
# ok: the image is written. low_confidence: written, but below the seed's 0.1 ("failure").
# refused: the person could not be dressed (no image). failed: an input could not be used.
WRITTEN = ("ok", "low_confidence")
DONE = (*WRITTEN, "refused")  # a rerun with the same settings would give the same answer


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
    stems = Counter(path.stem.casefold() for path in paths)
    inputs = [Input(p, p.stem if stems[p.stem.casefold()] == 1 else p.name) for p in paths]
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
    def key(self) -> tuple[str, str]:  # how the ledger knows the pair: the two file names
        return self.person.path.name, self.garment.path.name

    def output(self, out: Path) -> Path:
        return out / self.person.name / f"{self.garment.name}.png"


@dataclass
class Catalogue:
    out: Path
    pairs: list[Pair]

    @classmethod
    def plan(cls, persons_dir: Path, garments_dir: Path, out: Path, pairs_file: Path | None = None) -> "Catalogue":
        """Every person x every garment, or the lines of `pairs_file` ('PERSON GARMENT', file names),
        named and checked before any work: refuses outputs that would land on an input or the ledger."""
        persons = name_inputs(list_images(persons_dir, "person"), "person")
        garments = name_inputs(list_images(garments_dir, "garment"), "garment")
        if pairs_file is None:
            pairs = [Pair(p, g) for p in persons for g in garments]
        else:
            pairs = _listed_pairs(pairs_file, persons, garments)
        catalogue = cls(out, pairs)
        catalogue._check_outputs(persons + garments)
        return catalogue

    @cached_property
    def by_key(self) -> dict[tuple[str, str], Pair]:
        return {pair.key: pair for pair in self.pairs}

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
        """Per person, its garments not yet done, in catalogue order, DRESS_BATCH at a time."""
        todo: dict[Input, list[Input]] = {}
        for pair in self.pairs:
            if pair.key not in done:
                todo.setdefault(pair.person, []).append(pair.garment)
        return [(person, garments[i:i + DRESS_BATCH])
                for person, garments in todo.items() for i in range(0, len(garments), DRESS_BATCH)]


def pair_lines(pairs_file: Path) -> list[tuple[int, str]]:
    """A --pairs file's lines that list a pair, stripped, with their numbers from 1: blank lines
    and # comments skipped (`tryon run --pairs` and the catalogue's read one format)."""
    try:
        text = pairs_file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--pairs {pairs_file}: cannot read it ({exc})") from None
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")]


def _listed_pairs(pairs_file: Path, persons: list[Input], garments: list[Input]) -> list[Pair]:
    by_file = [{item.path.name: item for item in inputs} for inputs in (persons, garments)]
    pairs: dict[tuple[str, ...], Pair] = {}
    unknown = []
    for number, line in pair_lines(pairs_file):
        fields = line.split()
        if len(fields) != 2:
            raise InputError(f"--pairs {pairs_file} line {number}: expected 'PERSON GARMENT' (two file names), "
                             f"got {line!r}")
        found = [names.get(name) for names, name in zip(by_file, fields)]
        if None in found:
            unknown.append(f"line {number}: {line}")
        else:
            pairs.setdefault(tuple(fields), Pair(*found))  # a repeated line renders once
    if unknown:
        raise InputError(f"--pairs {pairs_file} names files that are not in the person and garment folders "
                         f"(file names such as 000010_0.jpg are accepted): {'; '.join(unknown[:5])}"
                         + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
    if not pairs:
        raise InputError(f"--pairs {pairs_file} lists no pairs")
    return list(pairs.values())


@dataclass(frozen=True)
class Settings(PipelineSettings):
    """Everything an engine needs to build its pipeline and render (picklable for Ray)."""
    parse: ParseOptions = ParseOptions()
    dress: DressOptions = DressOptions()

    def identity(self) -> dict:
        """What a ledger line records and a rerun compares: the models' sha256 and every
        setting that changes an image. A line with another identity is not 'done'."""
        return {"models": model_hashes(self.models, self.precision),
                "settings": {"scales": list(self.scales), "mirror": self.mirror, "precision": self.precision,
                             "provider": self.provider, **self.parse.__dict__, **self.dress.__dict__}}
