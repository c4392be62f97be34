"""JPP-Net (LIP_JPPNet, stage 2) as a TensorFlow 1 graph with the published variable names.

`build_forward` is one forward pass at one scale: the DeepLab ResNet-101 backbone
(kaffe names `weights`/`biases`, slim batch norm `beta`/`gamma`/`moving_mean`/
`moving_variance`) and the pose/parsing refinement heads (`utils/ops.py` names `w`/`b`).
Weights come from `tf.compat.v1.get_variable`, so the names are the checkpoint's;
`constant_weights` swaps them for constants (a frozen graph's Const + /read pairs),
`fed_weights` for placeholders fed at run time, and `variable_specs` lists them without
allocating anything.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import tensorflow as tf

from .errors import CheckpointError

N_CLASSES = 20
N_JOINTS = 16
BN_EPSILON = 0.001  # slim.batch_norm's default, which LIP_JPPNet kept
BN_VARIABLES = ("beta", "gamma", "moving_mean", "moving_variance")


@dataclass(frozen=True)
class JppNetConfig:
    """`width_divisor` and the block counts shrink the same code for fast tests."""

    name: str
    width_divisor: int = 1
    res3_blocks: int = 3
    res4_blocks: int = 22

    def width(self, channels: int) -> int:
        return channels // self.width_divisor


FULL = JppNetConfig("full")
REDUCED = JppNetConfig("reduced", width_divisor=8, res3_blocks=1, res4_blocks=2)
CONFIGS = {c.name: c for c in (FULL, REDUCED)}


@dataclass(frozen=True)
class JppNetOutputs:
    parsing: tuple  # three parsing stages' logits, each [N, h, w, 20]
    pose: tf.Tensor  # stage-3 pose heatmaps [N, h, w, 16]


def _variable(name: str, shape) -> tf.Tensor:
    return tf.compat.v1.get_variable(name, [int(d) for d in shape], dtype=tf.float32)


def _channels(x: tf.Tensor) -> int:
    return int(x.shape[-1])


def atrous_conv(x, kernel, rate=1, stride=1):
    """SAME convolution; with rate > 1 the dilated convolution that LIP_JPPNet's
    tf.nn.atrous_conv2d computes. Written as one Conv2D with dilations because
    atrous_conv2d's SpaceToBatchND form reaches tf2onnx with shape-dependent paddings
    and comes out as pads, depth-to-space shuffles and transposes instead of one Conv."""
    return tf.nn.conv2d(x, kernel, [1, stride, stride, 1], padding="SAME", dilations=[1, rate, rate, 1])


def _kaffe_conv(x, name, k, c_out, stride=1, rate=1, biased=False, relu=False):
    with tf.compat.v1.variable_scope(name) as scope:
        y = atrous_conv(x, _variable("weights", [k, k, _channels(x), c_out]), rate, stride)
        if biased:
            y = tf.nn.bias_add(y, _variable("biases", [c_out]))
        return tf.nn.relu(y, name=scope.name) if relu else y


def _batch_norm(x, name, relu):
    with tf.compat.v1.variable_scope(name):
        beta, gamma, mean, variance = (_variable(v, [_channels(x)]) for v in BN_VARIABLES)
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, mean=mean, variance=variance, epsilon=BN_EPSILON, is_training=False)
        return tf.nn.relu(y) if relu else y


def _bottleneck(x, tag, width, out, stride=1, rate=1, project=False):
    """One ResNet block named as kaffe converted it: res{tag}_branch*, bn{tag}_branch*."""
    shortcut = x
    if project:
        shortcut = _kaffe_conv(x, f"res{tag}_branch1", 1, out, stride=stride)
        shortcut = _batch_norm(shortcut, f"bn{tag}_branch1", relu=False)
    y = _batch_norm(_kaffe_conv(x, f"res{tag}_branch2a", 1, width, stride=stride), f"bn{tag}_branch2a", True)
    y = _batch_norm(_kaffe_conv(y, f"res{tag}_branch2b", 3, width, rate=rate), f"bn{tag}_branch2b", True)
    y = _batch_norm(_kaffe_conv(y, f"res{tag}_branch2c", 1, out), f"bn{tag}_branch2c", False)
    return tf.nn.relu(shortcut + y, name=f"res{tag}_relu")


def _stage(x, stage, tags, width, out, stride=1, rate=1):
    x = _bottleneck(x, f"{stage}{tags[0]}", width, out, stride=stride, rate=rate, project=True)
    for tag in tags[1:]:
        x = _bottleneck(x, f"{stage}{tag}", width, out, rate=rate)
    return x


def _backbone(image, cfg: JppNetConfig):
    """DeepLab ResNet-101 at output stride 8; returns (res4 last relu, res5c relu)."""
    w = cfg.width
    x = _batch_norm(_kaffe_conv(image, "conv1", 7, w(64), stride=2), "bn_conv1", relu=True)
    x = tf.nn.max_pool2d(x, 3, 2, padding="SAME", name="pool1")
    x = _stage(x, 2, "abc", w(64), w(256))
    x = _stage(x, 3, ["a"] + [f"b{i}" for i in range(1, cfg.res3_blocks + 1)], w(128), w(512), stride=2)
    res4 = _stage(x, 4, ["a"] + [f"b{i}" for i in range(1, cfg.res4_blocks + 1)], w(256), w(1024), rate=2)
    res5 = _stage(res4, 5, "abc", w(512), w(2048), rate=4)
    return res4, res5


def _ops_conv(x, name, c_out, k, relu, rate=1):
    """LIP_JPPNet utils/ops.py conv2d / atrous_conv2d: variables `w` and `b`."""
    with tf.compat.v1.variable_scope(name) as scope:
        y = atrous_conv(x, _variable("w", [k, k, _channels(x), c_out]), rate)
        y = tf.nn.bias_add(y, _variable("b", [c_out]))
        return tf.nn.relu(y, name=scope.name) if relu else y


def _pose_net(features, name, cfg):
    w = cfg.width
    with tf.compat.v1.variable_scope(name):
        x = features
        for i, c_out in enumerate((512, 512, 256, 256, 256, 256), start=1):
            x = _ops_conv(x, f"pose_conv{i}", w(c_out), 3, relu=True)
        fea = x
        x = _ops_conv(x, "pose_conv7", w(512), 1, relu=True)
        return _ops_conv(x, "pose_conv8", N_JOINTS, 1, relu=False), fea


def _refine_trunk(x, prefix, cfg):
    """The 3/5/7/9 conv ladder both refine heads share; returns (conv4, conv5)."""
    w = cfg.width
    for i, (k, c_out) in enumerate(((3, 512), (5, 256), (7, 256), (9, 256)), start=1):
        x = _ops_conv(x, f"{prefix}conv{i}", w(c_out), k, relu=True)
    return x, _ops_conv(x, f"{prefix}conv5", w(256), 1, relu=True)


def _remap(pose, parsing, cfg):
    pose = _ops_conv(pose, "pose_remap", cfg.width(128), 1, relu=True)
    parsing = _ops_conv(parsing, "parsing_remap", cfg.width(128), 1, relu=True)
    return pose, parsing


def _pose_refine(pose, parsing, pose_fea, name, cfg):
    with tf.compat.v1.variable_scope(name):
        pose, parsing = _remap(pose, parsing, cfg)
        conv4, conv5 = _refine_trunk(tf.concat([pose, parsing, pose_fea], 3), "", cfg)
        return _ops_conv(conv5, "conv6", N_JOINTS, 1, relu=False), conv4


def _parsing_refine(parsing, pose, parsing_fea, name, cfg):
    with tf.compat.v1.variable_scope(name):
        pose, parsing = _remap(pose, parsing, cfg)
        conv4, conv5 = _refine_trunk(tf.concat([parsing, pose, parsing_fea], 3), "parsing_", cfg)
        humans = [_ops_conv(conv5, f"parsing_human{i}", N_CLASSES, 3, relu=False, rate=rate)
                  for i, rate in enumerate((6, 12, 18, 24), start=1)]
        return tf.add_n(humans, name="parsing_human"), conv4


def build_forward(image: tf.Tensor, config: JppNetConfig = FULL) -> JppNetOutputs:
    """One forward pass of JPP-Net-s2 on `image` [N, H, W, 3] (BGR minus the LIP mean).

    The stage wiring follows LIP_JPPNet's evaluate scripts; fc3_parsing and fc3_pose are
    both built here (each script built only one of them)."""
    with tf.compat.v1.variable_scope(tf.compat.v1.get_variable_scope(), reuse=tf.compat.v1.AUTO_REUSE):
        res4, res5 = _backbone(image, config)
        human = [_kaffe_conv(res5, f"fc1_human_c{i}", 3, N_CLASSES, rate=rate, biased=True)
                 for i, rate in enumerate((6, 12, 18, 24))]
        parsing1 = tf.add_n(human, name="fc1_human")
        parsing_fea1 = _kaffe_conv(res5, "res5d_branch2a_parsing", 3, config.width(512), biased=True, relu=True)
        parsing_fea1 = _kaffe_conv(parsing_fea1, "res5d_branch2b_parsing", 3, config.width(256),
                                   biased=True, relu=True)
        pose1, pose_fea1 = _pose_net(res4, "fc1_pose", config)
        pose2, pose_fea2 = _pose_refine(pose1, parsing1, pose_fea1, "fc2_pose", config)
        parsing2, parsing_fea2 = _parsing_refine(parsing1, pose1, parsing_fea1, "fc2_parsing", config)
        parsing3, _ = _parsing_refine(parsing2, pose2, parsing_fea2, "fc3_parsing", config)
        pose3, _ = _pose_refine(pose2, parsing2, pose_fea2, "fc3_pose", config)
    return JppNetOutputs((parsing1, parsing2, parsing3), pose3)


@contextmanager
def _custom_getter(getter):
    with tf.compat.v1.variable_scope(tf.compat.v1.get_variable_scope(), custom_getter=getter):
        yield


def _checked(name: str, shape, known: Mapping[str, tf.Tensor]) -> tf.Tensor:
    if name not in known:
        raise KeyError(f"no weight named {name} was given")
    if tuple(known[name].shape) != tuple(shape):
        raise CheckpointError(f"weight {name} has shape {tuple(known[name].shape)}, the graph needs {tuple(shape)}")
    return known[name]


@contextmanager
def constant_weights(weights: Mapping[str, np.ndarray]):
    """Inside this block `build_forward` reads `weights` as constants, the way a frozen
    TF1 graph holds them: a `Const` named like the variable plus its `<name>/read`
    Identity, created once and shared by every tower."""
    reads = {}
    with tf.compat.v1.get_default_graph().name_scope(None):
        for name, value in weights.items():
            reads[name] = tf.identity(tf.constant(value, dtype=tf.float32, name=name), name=f"{name}/read")
    with _custom_getter(lambda name, shape=None, **_: _checked(name, shape, reads)):
        yield


@contextmanager
def fed_weights(weights: Mapping[str, np.ndarray]):
    """Inside this block `build_forward` reads each weight from a placeholder named like
    its variable; yields the feed dict {placeholder: array}. The graph then holds no copy
    of the weights, which keeps TF sessions and tf2onnx small at 489 MB of weights."""
    holders = {}
    with tf.compat.v1.get_default_graph().name_scope(None):
        for name, value in weights.items():
            holders[name] = tf.compat.v1.placeholder(tf.float32, value.shape, name=name)
    with _custom_getter(lambda name, shape=None, **_: _checked(name, shape, holders)):
        yield {holders[name]: weights[name] for name in holders}


@functools.lru_cache(maxsize=None)
def variable_specs(config: JppNetConfig = FULL) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """(name, shape) of every variable in creation order; builds a throwaway graph of
    placeholders, so nothing of the weights' size is allocated."""
    specs = []

    def placeholder(name, shape=None, **_):
        specs.append((name, tuple(int(d) for d in shape)))
        return tf.compat.v1.placeholder(tf.float32, shape)

    with tf.Graph().as_default():
        image = tf.compat.v1.placeholder(tf.float32, [1, None, None, 3])
        with _custom_getter(placeholder):
            build_forward(image, config)
    return tuple(specs)


def parameter_count(config: JppNetConfig = FULL) -> int:
    return sum(int(np.prod(shape)) for _, shape in variable_specs(config))
