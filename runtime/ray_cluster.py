"""What the two Ray engines (catalogue_ray, serve_ray) share: Ray imported with a clear error
when it is missing, joining or starting a cluster, and a tryon error found in the text of a
Ray error. Imports no Ray itself."""
from __future__ import annotations

import importlib
import re
from contextlib import contextmanager

from .errors import EXIT_ENVIRONMENT, TryonError


class RayMissingError(TryonError, RuntimeError):
    """--engine ray without the [ray] extra."""
    exit_code = EXIT_ENVIRONMENT
    http_status = 503


def import_ray(*parts: str):
    """ray, after importing ray.<part> for each part (data, serve), or RayMissingError."""
    try:
        import ray

        for part in parts:
            importlib.import_module(f"ray.{part}")
    except ImportError as exc:
        raise RayMissingError(f"--engine ray needs Ray ({exc.name} missing): pip install 'tryon-onnx[ray]'") from None
    return ray


@contextmanager
def joined_cluster(ray, address: str | None, **init_options):
    """Joins the Ray cluster this process is part of, or the one at `address`, or starts one on
    this machine; yields whether this process started its own (which cannot grow). Leaves
    what it joined at the end, shutting down a cluster it started."""
    connected = not ray.is_initialized()
    if connected:
        ray.init(address=address, include_dashboard=False, **init_options)
    try:
        yield connected and address is None
    finally:
        if connected:
            ray.shutdown()


def tryon_cause(error, where: str) -> TryonError | None:
    """Ray reports an actor or replica that could not start (models missing on a node,
    another precision's graph absent) as the text of its traceback; a tryon error at its end
    is made again, so that the command answers with its one line and exit code."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    for line in reversed([line.strip() for line in text.splitlines() if line.strip()]):
        name, _, message = line.partition(": ")
        module, _, kind = name.rpartition(".")
        if not module.startswith("tryon."):
            continue
        try:
            found = getattr(importlib.import_module(module), kind)
        except (ImportError, AttributeError):
            return None
        if isinstance(found, type) and issubclass(found, TryonError):
            try:  # its class, so its exit code and HTTP status
                return found(f"on a Ray {where}: {message}")
            except TypeError:  # a class made from other arguments than a message (Overloaded)
                return None
        return None
    return None
