"""What the two Ray engines (catalogue, serve) share: Ray imported with a clear error when it
is missing, joining or starting a cluster, its CPUs and its nodes' models checked, and a tryon
error found in the text of a Ray error. Imports no Ray itself."""
from __future__ import annotations

import importlib
import logging
import re
import socket
from contextlib import contextmanager

from .errors import EXIT_ENVIRONMENT, InputError, TryonError
from .models.graphs import model_hashes


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
    """Joins the Ray cluster this process is part of, or the one at `address`, or starts one here
    (shut down at the end); yields whether this process started its own (which cannot grow)."""
    connected = not ray.is_initialized()
    if connected:
        ray.init(address=address, include_dashboard=False, **init_options)
    try:
        yield connected and address is None
    finally:
        if connected:
            ray.shutdown()


def check_cpus(ray, need: float, asked: str, options: str, fixed: bool = True, where: str = "the Ray cluster"):
    """Every actor or replica holds its CPUs while it lives: a cluster with fewer would wait for
    ever. A cluster started here (`fixed`) cannot grow, so that is refused; another may autoscale."""
    have = ray.cluster_resources().get("CPU", 0)
    if need <= have:
        return
    message = f"{asked} need {need:g} CPUs; {where} has {have:g}"
    if fixed:
        raise InputError(f"{message}: ask for fewer ({options})")
    logging.getLogger("tryon.ray").warning("%s: waiting for it to grow (autoscaling)", message)


def check_node_models(models: str, precision: str, expected: dict, user: str):
    """Refuses a node whose models are not the driver's, which records their hashes (other
    files would give other images under the same hashes)."""
    found = model_hashes(models, precision)
    if found != expected:
        raise InputError(f"the models in {models} on node {socket.gethostname()} are not the ones this {user} "
                         f"({found} != {expected}): give every node the same models folder")


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
        # its class, for its exit code and HTTP status; TypeError: not a class, or a class made from
        # other arguments than a message (Overloaded)
        try:
            found = getattr(importlib.import_module(module), kind)
            return found(f"on a Ray {where}: {message}") if issubclass(found, TryonError) else None
        except (ImportError, AttributeError, TypeError):
            return None
    return None
