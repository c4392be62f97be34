"""Reads JPP-Net weights, by name and strictly, from either published format.

- a TF1 checkpoint as LIP_JPPNet ships it: the `JPPNet-s2/` directory (its `checkpoint`
  file names the prefix), the prefix itself, or its `.index` file;
- a frozen GraphDef like GrayXu's `jpp.pb`: each weight is a `Const` node named like the
  variable; the JPEG input pipeline, the resizes and the merge nodes are ignored.

Every variable `variable_specs(config)` lists must be present with its exact shape, or
`CheckpointError` says which are not.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError

from .errors import CheckpointError
from .jppnet_graph import CONFIGS, FULL, JppNetConfig, variable_specs

SHOWN = 5  # names listed per problem; the rest are counted


@dataclass(frozen=True)
class JppNetSource:
    path: Path  # the frozen graph file, or the checkpoint prefix (no extension)
    format: str  # "ckpt" or "pb"

    @property
    def files(self) -> list[Path]:
        """The files the weights live in."""
        if self.format == "pb":
            return [self.path]
        return sorted(self.path.parent.glob(f"{self.path.name}.index")) + sorted(
            self.path.parent.glob(f"{self.path.name}.data-*"))


def _prefix_in_directory(folder: Path) -> Path:
    state = folder / "checkpoint"
    if state.is_file():
        found = re.search(r'^model_checkpoint_path:\s*"(.*)"', state.read_text(errors="replace"), re.M)
        # The file may hold the training machine's path; only the prefix's name matters here.
        if found and (folder / (Path(found.group(1)).name + ".index")).is_file():
            return folder / Path(found.group(1)).name
    indexes = sorted(folder.glob("*.index"))
    if len(indexes) != 1:
        raise CheckpointError(
            f"{folder} is not a TF checkpoint directory: expected one model.ckpt-N.index "
            f"(or a `checkpoint` file naming it), found {len(indexes)} .index files")
    return indexes[0].with_suffix("")


def resolve_source(path: str | Path) -> JppNetSource:
    """Which format `path` holds: a checkpoint directory/prefix/.index, or a frozen graph."""
    path = Path(path)
    if path.is_dir():
        return JppNetSource(_prefix_in_directory(path), "ckpt")
    if path.suffix == ".index" and path.is_file():
        return JppNetSource(path.with_suffix(""), "ckpt")
    if Path(f"{path}.index").is_file():
        return JppNetSource(path, "ckpt")
    if path.is_file():
        return JppNetSource(path, "pb")
    raise CheckpointError(f"{path} does not exist (expected jpp.pb, a JPPNet-s2/ directory or a checkpoint prefix)")


def check_shapes(found: dict[str, tuple[int, ...]], config: JppNetConfig, where: str):
    """Raise CheckpointError unless every expected tensor is in `found` with its shape."""
    missing = [name for name, _ in variable_specs(config) if name not in found]
    misshapen = [f"{name} {list(found[name])} (expected {list(shape)})"
                 for name, shape in variable_specs(config) if name in found and tuple(found[name]) != shape]
    if not missing and not misshapen:
        return
    total = len(variable_specs(config))
    lines = [f"{where} does not hold the JPP-Net ({config.name}) weights:"]
    for label, items in (("missing", missing), ("wrong shape", misshapen)):
        if items:
            more = f", ... and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
            lines.append(f"  {len(items)} of {total} tensors {label}: {', '.join(items[:SHOWN])}{more}")
    raise CheckpointError("\n".join(lines))


def _load_checkpoint(prefix: Path, config: JppNetConfig) -> dict[str, np.ndarray]:
    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except (tf.errors.OpError, ValueError) as exc:
        raise CheckpointError(f"{prefix} is not a readable TF checkpoint: {exc}") from exc
    check_shapes(reader.get_variable_to_shape_map(), config, f"checkpoint {prefix}")
    dtypes = reader.get_variable_to_dtype_map()
    wrong = [name for name, _ in variable_specs(config) if dtypes[name] != tf.float32]
    if wrong:
        raise CheckpointError(f"checkpoint {prefix}: {len(wrong)} tensors are not float32: {', '.join(wrong[:SHOWN])}")
    try:
        return {name: reader.get_tensor(name) for name, _ in variable_specs(config)}
    except (tf.errors.OpError, IndexError, ValueError) as exc:  # the reader's errors for short or corrupt data
        raise CheckpointError(f"checkpoint {prefix} is damaged: {exc}") from exc


def _read_graph_def(path: Path) -> tf.compat.v1.GraphDef:
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except DecodeError as exc:
        raise CheckpointError(f"{path} is neither a TF checkpoint nor a frozen GraphDef ({exc})") from exc
    if not graph_def.node:
        raise CheckpointError(f"{path} is neither a TF checkpoint nor a frozen GraphDef (no graph nodes)")
    return graph_def


def _load_frozen_graph(path: Path, config: JppNetConfig) -> dict[str, np.ndarray]:
    wanted = dict(variable_specs(config))
    consts = {node.name: node.attr["value"].tensor for node in _read_graph_def(path).node
              if node.op == "Const" and node.name in wanted}
    check_shapes({name: tuple(d.size for d in t.tensor_shape.dim) for name, t in consts.items()},
                 config, f"frozen graph {path}")
    wrong = [name for name, t in consts.items() if t.dtype != tf.float32.as_datatype_enum]
    if wrong:
        raise CheckpointError(f"frozen graph {path}: {len(wrong)} weights are not float32: {', '.join(wrong[:SHOWN])}")
    return {name: tf.make_ndarray(consts[name]) for name in wanted}


def _shapes(source: JppNetSource) -> dict[str, tuple[int, ...]]:
    if source.format == "ckpt":
        try:
            return tf.train.load_checkpoint(str(source.path)).get_variable_to_shape_map()
        except (tf.errors.OpError, ValueError) as exc:
            raise CheckpointError(f"{source.path} is not a readable TF checkpoint: {exc}") from exc
    return {node.name: tuple(d.size for d in node.attr["value"].tensor.tensor_shape.dim)
            for node in _read_graph_def(source.path).node if node.op == "Const"}


def detect_config(path: str | Path) -> JppNetConfig:
    """The network whose every variable the file holds with its exact shape: the published
    (full) one, or our reduced test build. Anything else is refused with the full list."""
    found = _shapes(resolve_source(path))
    for config in CONFIGS.values():
        if all(tuple(found.get(name, ())) == shape for name, shape in variable_specs(config)):
            return config
    check_shapes(found, FULL, str(path))  # raises, naming what is missing or misshapen
    return FULL


def load_weights(path: str | Path, config: JppNetConfig = FULL) -> dict[str, np.ndarray]:
    """{variable name: float32 array} for every JPP-Net variable, from either format."""
    source = resolve_source(path)
    if source.format == "ckpt":
        return _load_checkpoint(source.path, config)
    return _load_frozen_graph(source.path, config)
