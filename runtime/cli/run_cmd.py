"""run: dress people in garments, one pair or many, each person parsed once.

Everything that can be checked is checked before any work: the inputs exist, no result
would overwrite an input, two results never share a name, existing results are replaced
only with --overwrite, and the output folder can be written. During the run a bad photo
or garment, or a result that cannot be written, is named and skipped; the rest go on.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import typer

from ..catalogue.plan import pair_lines
from ..errors import EXIT_BAD_INPUT, InputError, TryonError
from ..files import write_atomically
from ..images import save_rgb
from ..options import DressOptions, ParseOptions
from ..parsed_person import SEED_FAILURE_CONFIDENCE
from ..pipeline import DRESS_BATCH, join_timings
from . import common
from .errors import friendly

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def register(app: typer.Typer):
    app.command(help="Dress PERSON in one or more GARMENTs, parsing the person once.\n\n"
                     "PERSON is a photo or a folder of photos; each GARMENT a photo or a folder of them. "
                     "Parsed persons are kept in the person store (--cache), so later runs on the same "
                     "photos skip JPP-Net.\n\n"
                     "Examples:\n\n"
                     "  tryon run person.jpg shirt.jpg -o out.png\n\n"
                     "  tryon run person.jpg shirt.jpg dress.jpg garments/ -o results/\n\n"
                     "  tryon run photos/ shirt.jpg -o results/      (every photo in a folder)\n\n"
                     "  tryon run --pairs pairs.txt -o results/      (lines: PERSON GARMENT)")(run)


@dataclass(frozen=True)
class Pair:
    person: Path
    garment: Path
    out: Path


@friendly
def run(inputs: list[Path] = typer.Argument(None, help="PERSON then GARMENT... (files or folders)",
                                            show_default=False),
        out: Path = typer.Option(..., "-o", "--out", help="output image (one pair) or folder (many)"),
        pairs: Path = typer.Option(None, help="text file with one 'PERSON GARMENT' pair per line"),
        overwrite: bool = typer.Option(False, help="replace results that exist already"),
        need_pre: bool = common.NEED_PRE, need_bright: bool = common.NEED_BRIGHT, keep_back: bool = common.KEEP_BACK,
        need_dilate: bool = common.NEED_DILATE, check_dirty: bool = common.CHECK_DIRTY,
        jpeg_dct: str = common.JPEG_DCT, warp_jpeg: bool = common.WARP_JPEG,
        save_intermediates: Path = typer.Option(None, help="folder for labels, keypoints, warped garment, sheet"),
        models: Path = common.MODELS, provider: str = common.PROVIDER, threads: int = common.THREADS,
        scales: str = common.SCALES, mirror: bool = common.MIRROR, precision: str = common.PRECISION,
        cache: str = common.CACHE, no_cache: bool = common.NO_CACHE, cache_ttl_hours: float = common.CACHE_TTL,
        cache_max_mb: float = common.CACHE_MB):
    parse_options = ParseOptions(need_pre, need_bright, check_dirty, jpeg_dct)
    dress_options = DressOptions(keep_back, need_dilate, warp_jpeg)
    jobs = plan(inputs or [], pairs, out)
    check_outputs(jobs, [*(inputs or []), *([pairs] if pairs else [])], overwrite, save_intermediates)
    tryon = common.pipeline_settings(models, provider, threads, scales, mirror, precision,
                                     common.store_settings(cache, no_cache, cache_ttl_hours, cache_max_mb)).build()
    batch = Batch(tryon, parse_options, dress_options, save_intermediates, verbose=len(jobs) == 1)
    by_person: dict[Path, list[Pair]] = {}
    for job in jobs:
        by_person.setdefault(job.person, []).append(job)
    with typer.progressbar(length=len(jobs), label="try-on", hidden=len(jobs) == 1) as bar:
        for person, its_jobs in by_person.items():
            batch.person(person, its_jobs, bar.update)
    batch.summary(len(jobs))
    if tryon.synthetic:
        typer.secho(common.SYNTHETIC_NOTE, fg="yellow", err=True)
    if batch.failures or batch.refused:
        raise typer.Exit(EXIT_BAD_INPUT)


class Batch:
    """Runs the jobs of one person at a time and keeps the score, as the catalogue's ledger
    does: a try-on below the seed's confidence is written with a warning; a refused person
    (no person found, crossed arms) gets no image."""

    def __init__(self, tryon, parse_options, dress_options, intermediates_dir, verbose):
        self.tryon, self.parse_options, self.dress_options = tryon, parse_options, dress_options
        self.intermediates_dir, self.verbose = intermediates_dir, verbose
        self.written, self.failures, self.refused = 0, [], []
        self.low: dict[Path, float] = {}  # person photo -> its confidence, below SEED_FAILURE_CONFIDENCE

    def person(self, path: Path, jobs: list[Pair], advance):
        try:
            call = self.tryon.parse_call(path, self.parse_options)
        except (TryonError, OSError) as exc:
            self._fail(jobs, exc, advance)
            return
        for start in range(0, len(jobs), DRESS_BATCH):  # a chunk's garments in memory at a time
            chunk = jobs[start:start + DRESS_BATCH]
            outcomes = self.tryon.dress(call.parsed, [job.garment for job in chunk], self.dress_options,
                                        intermediates=self.intermediates_dir is not None)
            for job, outcome in zip(chunk, outcomes):
                if isinstance(outcome, TryonError):  # this garment alone
                    self._fail([job], outcome, advance)
                else:
                    self._save(job, call, outcome)
                    advance(1)

    def _save(self, job: Pair, call, result):
        if result.reason:
            self.refused.append((job, result.reason))
            return
        try:
            save_rgb(job.out, result.image)
            if self.intermediates_dir is not None:
                common.save_intermediates(self.intermediates_dir, job.out.stem, result, self.tryon.synthetic)
        except OSError as exc:
            self.failures.append((job, f"cannot write {job.out}: {exc.strerror or exc}"))
            return
        self.written += 1
        if not result.ok:
            self.low[job.person] = result.confidence
        if self.verbose:
            typer.echo(f"wrote {job.out} (confidence {result.confidence:.3f})")
            typer.echo(common.timings_table(join_timings(call.timings_ms, result.timings_ms)))

    def _fail(self, jobs: list[Pair], exc: Exception, advance):
        self.failures += [(job, str(exc)) for job in jobs]
        advance(len(jobs))

    def summary(self, total: int):
        for person, confidence in self.low.items():
            typer.secho(f"warning: {person}: confidence {confidence:.3f}, below {SEED_FAILURE_CONFIDENCE} (the seed "
                        "answered \"failure\"): its try-ons are written, but the pose may be wrong", fg="yellow",
                        err=True)
        for what, listed in (("refused (no image written)", self.refused), ("failed", self.failures)):
            if listed:
                typer.secho(f"wrote {self.written} of {total} results; {len(listed)} {what}:", fg="red", err=True)
            for job, reason in listed:
                typer.secho(f"  {job.person.name} + {job.garment.name}: {reason}", fg="red", err=True)


def plan(inputs: list[Path], pairs_file: Path | None, out: Path) -> list[Pair]:
    if pairs_file is not None:
        if inputs:
            raise InputError("give either PERSON GARMENT... or --pairs, not both")
        listed = read_pairs(pairs_file)
    else:
        if len(inputs) < 2:
            raise InputError("give a PERSON and at least one GARMENT (files or folders), or --pairs FILE")
        persons = images_in(inputs[0], "PERSON")
        garments = [garment for path in inputs[1:] for garment in images_in(path, "GARMENT")]
        listed = [(p, g) for p in persons for g in garments]
    listed = list(dict.fromkeys(listed))  # the same pair twice is one job
    if out.suffix and out.suffix.lower() not in IMAGE_SUFFIXES and not out.is_dir():
        raise InputError(f"-o {out}: tryon writes {', '.join(sorted(IMAGE_SUFFIXES))} images; give -o one of "
                         "those names, or a folder (a name without a suffix)")
    if len(listed) == 1 and out.suffix.lower() in IMAGE_SUFFIXES:
        return [Pair(*listed[0], out)]
    if out.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(f"-o {out} names an image, but {len(listed)} pairs need a folder: give -o a folder")
    names = result_names(listed)
    return [Pair(person, garment, out / name) for (person, garment), name in zip(listed, names)]


def images_in(path: Path, what: str) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise InputError(f"{what} {path}: the folder holds no {', '.join(sorted(IMAGE_SUFFIXES))} files")
        return found
    if not path.is_file():
        raise InputError(f"{what} {path}: no such file or folder")
    return [path]


def read_pairs(pairs_file: Path) -> list[tuple[Path, Path]]:
    listed = []
    for number, line in pair_lines(pairs_file):
        try:
            parts = shlex.split(line)
        except ValueError as exc:
            raise InputError(f"{pairs_file}:{number}: {exc}") from None
        if len(parts) != 2:
            raise InputError(f"{pairs_file}:{number}: each line must be 'PERSON GARMENT' (quote names with "
                             f"spaces); not {line!r}")
        listed.append(tuple(pairs_file.parent / part for part in parts))
    if not listed:
        raise InputError(f"--pairs {pairs_file}: no pairs in it")
    return listed


def result_names(listed: list[tuple[Path, Path]]) -> list[str]:
    """`<person stem>__<garment stem>.png`; where two pairs would share a name (x.jpg and x.png,
    or one name in two folders) the colliding ones keep their suffixes, then get a number."""
    plain = [f"{person.stem}__{garment.stem}" for person, garment in listed]
    counts = {n: plain.count(n) for n in plain}
    names, taken = [], set()
    for (person, garment), base in zip(listed, plain):
        candidate = base if counts[base] == 1 else f"{person.name}__{garment.name}".replace(".", "-")
        unique, number = candidate, 2
        while unique in taken:
            unique, number = f"{candidate}-{number}", number + 1
        taken.add(unique)
        names.append(unique + ".png")
    return names


def check_outputs(jobs: list[Pair], given: list[Path], overwrite: bool, intermediates_dir: Path | None):
    inputs = {path.resolve() for path in given if path.is_file()}
    inputs |= {path.resolve() for job in jobs for path in (job.person, job.garment)}
    for job in jobs:
        if job.out.resolve() in inputs:
            raise InputError(f"-o {job.out} is one of the inputs; name another file so that nothing is overwritten")
    existing = [job.out for job in jobs if job.out.exists()]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise InputError(f"{existing[0]}{more} exist already; pass --overwrite to replace them, "
                         "or choose another -o")
    for folder in {job.out.parent for job in jobs} | ({intermediates_dir} if intermediates_dir else set()):
        writable(folder)


def writable(folder: Path):
    """Fail now, in one line, if results cannot be written into `folder`."""
    probe = folder / ".tryon-write-test"
    try:
        write_atomically(probe, b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"cannot write into {folder}: {exc.strerror or exc}") from None
