"""cache: look into and empty the person store that `run` and `serve` keep parsed persons in."""
from __future__ import annotations

from pathlib import Path

import typer

from . import common
from .errors import friendly

app = typer.Typer(help="The person store: parsed persons kept between runs (a person photo is personal "
                       "data: entries expire after --cache-ttl-hours).", no_args_is_help=True)


def register(parent: typer.Typer):
    parent.add_typer(app, name="cache")


@app.command(help="Where the store is, how many persons it holds and its limits.\n\n"
                  "Example: tryon cache info --cache ~/.cache/tryon-onnx")
@friendly
def info(cache: str = common.CACHE, cache_ttl_hours: float = common.CACHE_TTL,
         cache_max_mb: float = common.CACHE_MB):
    facts = common.store_settings(cache, False, cache_ttl_hours, cache_max_mb).open(create=False).info()
    if facts.get("exists") is False:  # looked at only: a mistyped --cache makes nothing
        typer.echo(f"no store at {cache or Path(facts['path']).parent} (nothing is cached there)")
    else:
        typer.echo(f"store: {facts['kind']} {facts.get('path') or facts.get('url', '')}".rstrip())
    cap = facts.get("size_cap") or f"{facts['max_bytes'] / 2**20:.0f} MB"
    typer.echo(f"persons: {facts['persons']} ({facts['bytes'] / 2**20:.1f} MB; size capped by {cap})")
    typer.echo(f"entries expire {facts['ttl_s'] / 3600:g} h after they were parsed")
    if facts["disabled"]:
        typer.secho(f"the store cannot be used: {facts['disabled']}", fg="yellow", err=True)


@app.command(help="Delete every parsed person now (a SQLite store's files too: nothing is left).\n\n"
                  "Example: tryon cache clear")
@friendly
def clear(cache: str = common.CACHE):
    removed = common.store_settings(cache, False).open(create=False).clear()
    typer.echo(f"removed {removed} parsed person{'s' if removed != 1 else ''}")
