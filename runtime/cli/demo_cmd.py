"""demo: from a fresh clone to a try-on sheet and a latency table, no other steps."""
from __future__ import annotations

from pathlib import Path

import typer

from ..examples import EXAMPLE_GARMENT, EXAMPLE_PERSON
from ..images import save_rgb
from ..pipeline import TryOn
from . import common
from .errors import friendly, require_export_side


def register(app: typer.Typer):
    app.command(help="Synthesise checkpoints if none are real, export, validate, run the example pair, "
                     "write a sheet and print the latency table.\n\nExample: tryon demo")(demo)


@friendly
def demo(checkpoints: Path = typer.Option(Path("checkpoints"), help="where real checkpoints would be"),
         models: Path = common.MODELS, out: Path = typer.Option(Path("out/demo"), help="output folder"),
         provider: str = common.PROVIDER, threads: int = common.THREADS,
         jppnet: str = typer.Option("full", help="JPP-Net size for synthetic weights: full or reduced")):
    require_export_side()
    from tryon.export.export_models import export_all, max_abs_diffs, up_to_date
    from tryon.export.sources import has_real_checkpoints
    from tryon.export.synthetic import write_synthetic

    source = checkpoints
    if not has_real_checkpoints(checkpoints):
        source = checkpoints / "synthetic"
        typer.secho(f"No real checkpoints in {checkpoints}/: using SYNTHETIC, UNTRAINED weights in {source}/ "
                    "(results are noise; see checkpoints/README.md for the real files).", fg="yellow")
        if not has_synthetic(source):
            typer.echo(f"[1/4] writing synthetic checkpoints to {source}/")
            write_synthetic(source, jppnet=jppnet)
    if up_to_date(source, models):
        typer.echo(f"[2/4] {models}/ already holds validated exports of these checkpoints")
    else:
        typer.echo("[2/4] exporting to ONNX and validating against the source frameworks")
        for name, entry in export_all(source, models).items():
            diffs = ", ".join(f"{k} {v:.2e}" for k, v in max_abs_diffs(entry).items())
            typer.echo(f"      {name}: validated, max abs diff {diffs}")
    typer.echo("[3/4] loading the ONNX models")
    tryon = TryOn.from_dir(models, provider=provider, threads=threads)
    person, cloth = EXAMPLE_PERSON, EXAMPLE_GARMENT
    typer.echo(f"[4/4] dressing {person.name} in {cloth.name}")
    # The example photo is already framed 3:4, as VITON photos are, so it is only resized:
    # with untrained weights the pose is noise and the pose crop would refuse it.
    result = tryon.predict(person, cloth, need_pre=False, intermediates=True)
    save_rgb(out / "result.png", result.image)
    sheet = common.save_intermediates(out, "demo", result, tryon.synthetic)
    typer.echo(f"result: {out / 'result.png'}\nsheet:  {sheet}")
    typer.echo(f"confidence {result.confidence:.3f}{'; ' + result.reason if result.reason else ''}")
    typer.echo("per-stage latency (one cold run; `tryon bench` gives medians):")
    typer.echo(common.timings_table(result.timings_ms))
    if tryon.synthetic:
        typer.secho(common.SYNTHETIC_NOTE + ". For real try-ons put the published checkpoints in "
                    f"{checkpoints}/ and run the demo again.", fg="yellow")


def has_synthetic(folder: Path) -> bool:
    from tryon.export.sources import SourcesMissingError, find_sources, is_synthetic

    try:
        return is_synthetic(find_sources(folder).gmm)
    except SourcesMissingError:
        return False
