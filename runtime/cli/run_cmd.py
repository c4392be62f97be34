"""run: try garments on people, one pair or many."""
from __future__ import annotations

from pathlib import Path

import typer

from ..images import load_rgb, save_rgb
from . import common
from .errors import friendly

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def register(app: typer.Typer):
    app.command(help="Dress PERSON in CLOTH.\n\n"
                     "Examples:\n\n"
                     "  tryon run person.jpg shirt.jpg -o out.png\n\n"
                     "  tryon run photos/ shirt.jpg -o results/      (every photo in a folder)\n\n"
                     "  tryon run --pairs pairs.txt -o results/      (lines: PERSON CLOTH)")(run)


@friendly
def run(person: Path = typer.Argument(None, help="person photo, or a folder of them"),
        cloth: Path = typer.Argument(None, help="garment photo"),
        out: Path = typer.Option(..., "-o", "--out", help="output image (one pair) or folder (many)"),
        pairs: Path = typer.Option(None, help="text file with one 'PERSON CLOTH' pair per line"),
        need_pre: bool = typer.Option(True, help="crop around the pose and resize to 256x192"),
        need_bright: bool = typer.Option(False, help="brighten the photo x1.3 first"),
        keep_back: bool = typer.Option(False, help="keep the photo outside the upper-clothes area"),
        need_dilate: bool = typer.Option(False, help="soften the keep_back mask"),
        check_dirty: bool = typer.Option(False, help="refuse photos with arms crossing the torso"),
        save_intermediates: Path = typer.Option(None, help="folder for labels, keypoints, warped garment, sheet"),
        models: Path = common.MODELS, provider: str = common.PROVIDER, threads: int = common.THREADS,
        scales: str = common.SCALES, mirror: bool = common.MIRROR, precision: str = common.PRECISION):
    jobs = _jobs(person, cloth, pairs, out)
    from ..tryon import TryOn

    tryon = TryOn.from_dir(models, provider=provider, threads=threads,
                           scales=common.parse_scales(scales), mirror=mirror, precision=precision)
    flags = dict(need_pre=need_pre, need_bright=need_bright, keep_back=keep_back,
                 need_dilate=need_dilate, check_dirty=check_dirty)
    failures = 0
    with typer.progressbar(jobs, label="try-on", hidden=len(jobs) == 1) as bar:
        for person_path, cloth_path, out_path in bar:
            failures += _one(tryon, person_path, cloth_path, out_path, flags, save_intermediates, len(jobs) == 1)
    if tryon.synthetic:
        typer.secho(common.SYNTHETIC_NOTE, fg="yellow", err=True)
    if failures:
        typer.secho(f"{failures} of {len(jobs)} photos were refused (confidence below 0.1)", fg="yellow", err=True)


def _one(tryon, person_path, cloth_path, out_path, flags, intermediates_dir, verbose) -> int:
    result = tryon.predict(person_path, cloth_path, intermediates=intermediates_dir is not None, **flags)
    save_rgb(out_path, result.image)
    if intermediates_dir is not None:
        cloth = tryon.cpvton.fit_cloth(load_rgb(cloth_path, "garment photo"))
        common.save_intermediates(intermediates_dir, out_path.stem, result, cloth, tryon.synthetic)
    if verbose:
        typer.echo(f"wrote {out_path} (confidence {result.confidence:.3f}{'; ' + result.reason if result.reason else ''})")
        typer.echo(common.timings_table(result.timings_ms))
    return 0 if result.ok else 1


def _jobs(person, cloth, pairs, out) -> list[tuple[Path, Path, Path]]:
    if pairs is not None:
        if person is not None:
            raise ValueError("give either PERSON CLOTH or --pairs, not both")
        lines = [line.split() for line in pairs.read_text().splitlines() if line.strip() and not line.startswith("#")]
        bad = [" ".join(parts) for parts in lines if len(parts) != 2]
        if bad:
            raise ValueError(f"{pairs}: each line must be 'PERSON CLOTH'; not: {bad[0]!r}")
        base = pairs.parent
        return [(base / p, base / c, out / f"{Path(p).stem}__{Path(c).stem}.png") for p, c in lines]
    if person is None or cloth is None:
        raise ValueError("give PERSON and CLOTH, or --pairs FILE")
    if person.is_dir():
        photos = sorted(p for p in person.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not photos:
            raise ValueError(f"{person} holds no {', '.join(sorted(IMAGE_SUFFIXES))} files")
        return [(p, cloth, out / f"{p.stem}__{cloth.stem}.png") for p in photos]
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"-o {out}: name an image file ending in {', '.join(sorted(IMAGE_SUFFIXES))}")
    return [(person, cloth, out)]
