"""The complete LIP_JPPNet inference in TensorFlow, for parity tests of the ONNX runtime.

It follows evaluate_parsing_JPPNet-s2.py and evaluate_pose_JPPNet-s2.py op for op:
the photo and its mirror are resized (TF1 bilinear) to the 384/288/480 squares, every
parsing stage is resized bilinearly back to the photo's size and averaged over scales
and stages, the stage-3 pose heatmaps are resized with nearest neighbour and averaged
over scales, the mirrored half gets its left/right channels swapped and is flipped
back, and the two halves are averaged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import tensorflow as tf
from tryon.stages.parse import BASE_SIZE, REFERENCE_SCALES, photo_to_bgr

from .jppnet_graph import FULL, JppNetConfig, build_forward, fed_weights

# What the mirrored half's channel c holds, seen from the unmirrored photo.
PARSING_MIRROR = tuple(range(14)) + (15, 14, 17, 16, 19, 18)
POSE_MIRROR = (5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10)


@dataclass
class ReferenceResult:
    labels: np.ndarray  # HxW uint8
    keypoints: np.ndarray  # (16, 2) int (x, y)
    heatmaps: np.ndarray  # HxWx16 float32, the merged pose heatmaps


def _unmirror(batch: tf.Tensor, order) -> tf.Tensor:
    head, tail = tf.unstack(batch, num=2, axis=0)
    tail = tf.stack([tail[:, :, c] for c in order], axis=2)
    tail = tf.reverse(tail, tf.stack([1]))
    return tf.reduce_mean(tf.stack([head, tail]), axis=0)


def build_reference(bgr: tf.Tensor, config: JppNetConfig = FULL, scales=REFERENCE_SCALES, mirror: bool = True):
    """`bgr` [H, W, 3] float32 BGR minus the mean -> (heatmaps [H, W, 16], labels [H, W] int64).

    Needs the weights in scope (`constant_weights` or `fed_weights`). With mirror=False the batch is the
    photo alone and the swap/flip step is skipped (the runtime's fast setting)."""
    batch = tf.stack([bgr, tf.reverse(bgr, tf.stack([1]))]) if mirror else bgr[None]
    size = tf.shape(batch)[1:3]
    stages = [[] for _ in range(3)]
    poses = []
    for scale in scales:
        side = int(BASE_SIZE * scale)
        with tf.compat.v1.name_scope("resize_images"):
            resized = tf.compat.v1.image.resize_bilinear(batch, [side, side])
        out = build_forward(resized, config)
        for stage, logits in zip(stages, out.parsing):
            stage.append(tf.compat.v1.image.resize_bilinear(logits, size))
        poses.append(tf.compat.v1.image.resize_nearest_neighbor(out.pose, size))
    parsing = tf.reduce_mean(tf.stack([tf.reduce_mean(tf.stack(s), axis=0) for s in stages]), axis=0)
    pose = tf.reduce_mean(tf.stack(poses), axis=0)
    if mirror:
        parsing, pose = _unmirror(parsing, PARSING_MIRROR), _unmirror(pose, POSE_MIRROR)
    else:
        parsing, pose = parsing[0], pose[0]
    return pose, tf.argmax(parsing, axis=2)


def keypoints_of(heatmaps: np.ndarray) -> np.ndarray:
    """Per-channel argmax as (x, y), the way save_lip_images wrote them."""
    h, w, joints = heatmaps.shape
    flat = heatmaps.reshape(h * w, joints).argmax(axis=0)
    return np.stack([flat % w, flat // w], axis=1)


def run_reference(weights: Mapping[str, np.ndarray], rgb: np.ndarray, config: JppNetConfig = FULL,
                  scales=REFERENCE_SCALES, mirror: bool = True) -> ReferenceResult:
    """Reference labels, keypoints and merged heatmaps for one RGB uint8 photo."""
    bgr = photo_to_bgr(rgb)
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [None, None, 3])
        with fed_weights(weights) as feeds:
            heatmaps, labels = build_reference(image, config, scales, mirror)
    with tf.compat.v1.Session(graph=graph) as sess:
        heat, lab = sess.run([heatmaps, labels], {**feeds, image: bgr})
    return ReferenceResult(lab.astype(np.uint8), keypoints_of(heat), heat)
