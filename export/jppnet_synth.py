"""Seeded, UNTRAINED JPP-Net weights written in both published formats.

- `JPPNet-s2/`: a TF1 checkpoint as LIP_JPPNet ships it (`model.ckpt-205632.index`,
  `.data-00000-of-00001`, `checkpoint`).
- `jpp.pb`: a frozen GraphDef shaped like GrayXu's: the JPEG input pipeline, every
  weight as a `Const` + `/read` pair, the full three-scale mirrored inference, and the
  outputs `pose` [1, H, W, 16] and `parse` [1, H, W, 1].

The initialisation keeps activations finite through all 101 layers: backbone convolutions
draw from N(0, 1/fan_in) and each batch norm's moving variance is about the variance of
what reaches it, so every normalised activation has roughly unit scale.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import tensorflow as tf
from tryon.errors import InputError
from tryon.stages.parse import LIP_MEAN_BGR

from .jppnet_graph import FULL, JppNetConfig, constant_weights, variable_specs
from .jppnet_reference import build_reference
from .sources import mark_untrained

CHECKPOINT_DIR = "JPPNet-s2"
CHECKPOINT_PREFIX = "model.ckpt-205632"
FROZEN_GRAPH = "jpp.pb"
PHOTO_VARIANCE = 60.0 ** 2  # a photo minus the LIP mean: pixel deviations of about 60
RELU_VARIANCE = 0.5  # a unit-variance conv output after ReLU, fed through N(0, 1/fan_in)


def _conv_std(name: str, shape) -> np.float32:
    """N(0, 1/fan_in) where a batch norm follows; the heads have no batch norm, so their
    ReLU layers get N(0, 2/fan_in) to keep all three stages' outputs of one size."""
    gain = 2.0 if name.rsplit("/", 1)[1] == "w" else 1.0
    return np.float32(np.sqrt(gain / np.prod(shape[:3])))


def _batch_norm_inputs(specs) -> dict[str, float]:
    """Expected variance reaching each batch norm: the photo for bn_conv1, the residual
    stream for a block's branch1/branch2a (it grows by about half a unit per identity
    block and restarts after a projection), a ReLU'd unit activation elsewhere."""
    variances, stream = {}, 1.0
    for name, _ in specs:
        layer = name.split("/")[0]
        if not layer.startswith("bn") or layer in variances:
            continue
        if layer == "bn_conv1":
            variances[layer] = PHOTO_VARIANCE
        elif layer.endswith(("_branch1", "_branch2a")):
            variances[layer] = stream
        else:
            variances[layer] = RELU_VARIANCE
        if layer.endswith("_branch2c"):
            stream = 1.0 if f"{layer[:-1]}1" in variances else stream + 0.5
    return variances


def _draw(rng: np.random.Generator, name: str, shape, bn_inputs: dict[str, float]) -> np.ndarray:
    layer, leaf = name.rsplit("/", 1)
    if leaf in ("weights", "w"):
        return rng.standard_normal(shape, dtype=np.float32) * _conv_std(name, shape)
    if leaf in ("biases", "b"):
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.01)
    if leaf == "beta":
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.1)
    if leaf == "gamma":
        return rng.uniform(0.8, 1.2, shape).astype(np.float32)
    expected = bn_inputs[layer]
    if leaf == "moving_mean":
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.1 * np.sqrt(expected))
    return (expected * rng.uniform(0.7, 1.3, shape)).astype(np.float32)


def synthetic_weights(config: JppNetConfig = FULL, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    specs = variable_specs(config)
    bn_inputs = _batch_norm_inputs(specs)
    return {name: _draw(rng, name, shape, bn_inputs) for name, shape in specs}


def write_checkpoint(weights: Mapping[str, np.ndarray], folder: Path) -> Path:
    """A TF1 name-based checkpoint; SaveV2 writes it straight from the arrays, with no
    variables or session holding a second copy."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(weights)
    tf.raw_ops.SaveV2(prefix=str(folder / CHECKPOINT_PREFIX), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=[weights[n] for n in names])
    (folder / "checkpoint").write_text(
        f'model_checkpoint_path: "{CHECKPOINT_PREFIX}"\nall_model_checkpoint_paths: "{CHECKPOINT_PREFIX}"\n')
    return folder


def _input_pipeline() -> tf.Tensor:
    """GrayXu's first nodes: file name queue -> JPEG -> RGB to BGR -> minus mean (`img_1`)."""
    files = tf.constant(["person.jpg"])
    queue = tf.compat.v1.FIFOQueue(32, [tf.string], shapes=[[]], name="input_producer")
    queue.enqueue_many([files])
    decoded = tf.io.decode_jpeg(tf.io.read_file(queue.dequeue()), channels=3)
    red, green, blue = tf.split(decoded, 3, axis=2)
    img = tf.cast(tf.concat([blue, green, red], 2), tf.float32, name="img")
    return tf.subtract(img, LIP_MEAN_BGR, name="img_1")


def frozen_graph(weights: Mapping[str, np.ndarray], config: JppNetConfig = FULL) -> tf.compat.v1.GraphDef:
    graph = tf.Graph()
    with graph.as_default():
        img_1 = _input_pipeline()
        with constant_weights(weights):
            heatmaps, labels = build_reference(img_1, config)
        tf.identity(heatmaps[None], name="pose")
        tf.identity(labels[None, :, :, None], name="parse")
    return graph.as_graph_def()


def write_frozen_graph(weights: Mapping[str, np.ndarray], path: Path, config: JppNetConfig = FULL) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(frozen_graph(weights, config).SerializeToString())
    return path


def write_synthetic(out_dir: str | Path, seed: int = 0, config: JppNetConfig = FULL,
                    formats=("ckpt", "pb")) -> dict[str, Path]:
    """Write `JPPNet-s2/` and/or `jpp.pb` into out_dir; returns {"jppnet_ckpt"|"jppnet_pb": path}."""
    unknown = set(formats) - {"ckpt", "pb"}
    if unknown:
        raise InputError(f"unknown JPP-Net formats {sorted(unknown)}; use 'ckpt' and/or 'pb'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mark_untrained(out_dir)
    weights = synthetic_weights(config, seed)
    written = {}
    if "ckpt" in formats:
        written["jppnet_ckpt"] = write_checkpoint(weights, out_dir / CHECKPOINT_DIR)
    if "pb" in formats:
        written["jppnet_pb"] = write_frozen_graph(weights, out_dir / FROZEN_GRAPH, config)
    return written
