"""serve: the HTTP service (needs the serve extra)."""
from __future__ import annotations

from pathlib import Path

import typer

from ..memory_budget import check_room_for
from . import common
from .errors import EXIT_ENVIRONMENT, friendly


def register(app: typer.Typer):
    app.command(help="Serve try-ons over HTTP: /v1/tryon, the seed's /cloth, a /web page, /docs.\n\n"
                     "Example: tryon serve --models models_onnx --host 127.0.0.1 --port 8000")(serve)


@friendly
def serve(models: Path = common.MODELS,
          host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every interface)"),
          port: int = typer.Option(8000, help="TCP port"),
          max_concurrent: int = typer.Option(1, min=1, help="inferences running at once (on CPU each "
                                                             "already uses every core)"),
          queue: int = typer.Option(8, min=0, help="requests waiting for a slot; beyond: 503 + Retry-After"),
          gallery: list[Path] = typer.Option([], help="folder of garment images for the gallery (repeatable)"),
          max_body_mb: float = typer.Option(20, min=0.001, help="largest request body, MB"),
          provider: str = common.PROVIDER, threads: int = common.THREADS,
          scales: str = common.SCALES, mirror: bool = common.MIRROR, precision: str = common.PRECISION):
    check_room_for(max_concurrent)  # first: a concurrency the memory cannot hold stops the start
    try:
        import uvicorn

        from ..serve import create_app
    except ImportError as exc:
        typer.secho(f"error: serve needs the serve extra ({exc.name} missing): "
                    "pip install 'tryon-onnx[serve,cpu]'", fg="red", err=True)
        raise typer.Exit(EXIT_ENVIRONMENT) from None
    from ..tryon import TryOn

    # Loaded before listening: a broken models folder stops the start, not the first request.
    tryon = TryOn.from_dir(models, provider=provider, threads=threads,
                           scales=common.parse_scales(scales), mirror=mirror, precision=precision)
    app = create_app(tryon, gallery=gallery, max_concurrent=max_concurrent, queue=queue,
                     max_body_bytes=int(max_body_mb * 2**20))
    if tryon.synthetic:
        typer.secho(common.SYNTHETIC_NOTE, fg="yellow", err=True)
    typer.echo(f"serving http://{host}:{port}/web  (API docs: /docs)")
    uvicorn.run(app, host=host, port=port, log_level="info")
