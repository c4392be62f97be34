"""Known failures become one line on stderr and an exit code a shell script can act on."""
from __future__ import annotations

import functools
import importlib.util

import typer

from ..errors import EXIT_ENVIRONMENT, TryonError


def friendly(command):
    """The project's own errors as one line on stderr and the error's own exit code (its
    class's `exit_code`); anything else is a bug and keeps its traceback (a ValueError from
    deep inside says nothing a user can act on)."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except TryonError as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(exc.exit_code) from None
    return wrapper


EXPORT_MODULES = ("torch", "tensorflow", "tf2onnx", "onnx")


def require_export_side(modules=EXPORT_MODULES):
    """The export verbs need parts of the export extra; say how to get them instead of a
    traceback. Looked up, not imported: TensorFlow and torch take 6 s and 700 MB to import,
    and `tryon quantize` needs neither."""
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        typer.secho(
            f"error: this verb needs the export extra ({', '.join(missing)} missing): "
            "pip install 'tryon-onnx[export,cpu]'", fg="red", err=True)
        raise typer.Exit(EXIT_ENVIRONMENT)
