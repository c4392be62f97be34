"""Known failures become one line on stderr and an exit code a shell script can act on."""
from __future__ import annotations

import functools
import importlib.util

import typer

from ..errors import TryonError

EXIT_FAILED = 1  # one of our errors without a code of its own
EXIT_MISSING_MODELS = 3
EXIT_BAD_INPUT = 4
EXIT_ENVIRONMENT = 5
EXIT_BAD_CHECKPOINT = 6
EXIT_EXPORT_MISMATCH = 7


def _known():
    """The project's own errors and their exit codes; anything else is a bug and keeps its
    traceback (a ValueError from deep inside says nothing a user can act on)."""
    from ..errors import InputError, TryonError
    from ..model_dir import ModelsMissingError
    from ..session import RuntimeSetupError

    known = [(ModelsMissingError, EXIT_MISSING_MODELS), (InputError, EXIT_BAD_INPUT),
             (RuntimeSetupError, EXIT_ENVIRONMENT)]
    try:  # the export side is optional; its errors only exist where it is installed
        from tryon.export.errors import CheckpointError, ExportValidationError
        from tryon.export.sources import SourcesMissingError
        known += [(SourcesMissingError, EXIT_BAD_CHECKPOINT), (CheckpointError, EXIT_BAD_CHECKPOINT),
                  (ExportValidationError, EXIT_EXPORT_MISMATCH)]
    except ImportError:
        pass
    return known + [(TryonError, EXIT_FAILED)]


def friendly(command):
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except TryonError as exc:
            code = next(code for kind, code in _known() if isinstance(exc, kind))
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(code) from None
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
