"""The TF1 JPP-Net graph: published variable names and shapes, and what the graph computes."""
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tryon.export.jppnet_graph import (
    FULL,
    N_CLASSES,
    N_JOINTS,
    REDUCED,
    atrous_conv,
    build_forward,
    constant_weights,
    parameter_count,
    variable_specs,
)
from tryon.export.jppnet_synth import synthetic_weights

# Examples REFERENCE.md gives from the published checkpoint.
PUBLISHED_SHAPES = {
    "conv1/weights": (7, 7, 3, 64),
    "bn_conv1/beta": (64,),
    "bn_conv1/gamma": (64,),
    "bn_conv1/moving_mean": (64,),
    "bn_conv1/moving_variance": (64,),
    "res2a_branch1/weights": (1, 1, 64, 256),
    "res4b22_branch2b/weights": (3, 3, 256, 256),
    "fc1_human_c0/weights": (3, 3, 2048, 20),
    "fc1_human_c0/biases": (20,),
    "res5d_branch2a_parsing/weights": (3, 3, 2048, 512),
    "res5d_branch2a_parsing/biases": (512,),
    "fc1_pose/pose_conv1/w": (3, 3, 1024, 512),
    "fc1_pose/pose_conv1/b": (512,),
    "fc2_pose/pose_remap/w": (1, 1, 16, 128),
    "fc3_parsing/parsing_human4/w": (3, 3, 256, 20),
}


def test_full_graph_has_the_published_624_variables():
    specs = variable_specs(FULL)
    names = [name for name, _ in specs]
    assert len(specs) == 624 and len(set(names)) == 624
    assert parameter_count(FULL) == 122_154_464
    shapes = dict(specs)
    for name, shape in PUBLISHED_SHAPES.items():
        assert shapes[name] == shape, name


def test_heads_use_ops_names_and_the_backbone_kaffe_names():
    for name, _ in variable_specs(FULL):
        layer, leaf = name.rsplit("/", 1)
        if name.startswith(("fc1_pose/", "fc2_", "fc3_")):
            assert leaf in ("w", "b"), name
        elif layer.startswith("bn"):
            assert leaf in ("beta", "gamma", "moving_mean", "moving_variance"), name
        else:
            assert leaf in ("weights", "biases"), name
    names = dict(variable_specs(FULL))
    assert "res4b22_branch2c/weights" in names and "res4b23_branch2a/weights" not in names
    assert {f"fc1_human_c{i}/biases" for i in range(4)} <= set(names)
    assert "conv1/biases" not in names  # kaffe's backbone convs are unbiased


def test_listing_the_full_variables_allocates_no_weights():
    """Measured in a fresh process: the high-water mark barely moves while 489 MB of
    weights are described."""
    script = (
        "import resource, tensorflow as tf\n"
        "from tryon.export.jppnet_graph import FULL, parameter_count\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "assert parameter_count(FULL) == 122154464\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    grown_mb = int(done.stdout.split()[-1])
    assert grown_mb < 150, f"listing variables grew memory by {grown_mb} MB"


def test_reduced_build_is_the_same_code_with_fewer_channels_and_blocks():
    full, reduced = dict(variable_specs(FULL)), dict(variable_specs(REDUCED))
    assert set(reduced) < set(full)
    assert reduced["conv1/weights"] == (7, 7, 3, 64 // REDUCED.width_divisor)
    assert reduced["fc1_human_c0/weights"][-1] == N_CLASSES
    assert reduced["fc3_pose/conv6/w"][-1] == N_JOINTS
    assert parameter_count(REDUCED) < parameter_count(FULL) / 50


@pytest.mark.parametrize("rate", [2, 4, 6, 12, 18, 24])
def test_dilated_conv_equals_tf_atrous_conv2d(rate):
    """LIP_JPPNet calls tf.nn.atrous_conv2d; the graph uses Conv2D with dilations."""
    rng = np.random.default_rng(rate)
    x = rng.standard_normal((2, 37, 29, 8)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 8, 5)).astype(np.float32)
    ours = atrous_conv(tf.constant(x), tf.constant(kernel), rate).numpy()
    theirs = tf.nn.atrous_conv2d(x, kernel, rate, padding="SAME").numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5 * np.abs(theirs).max())


def _forward(weights, config, images):
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [None, None, None, 3])
        with constant_weights(weights):
            out = build_forward(image, config)
    with tf.compat.v1.Session(graph=graph) as sess:
        return sess.run([*out.parsing, out.pose], {image: images}), graph


def test_reduced_forward_gives_stride_8_outputs_and_finite_values():
    images = (np.random.default_rng(0).standard_normal((2, 96, 72, 3)) * 60).astype(np.float32)
    outputs, graph = _forward(synthetic_weights(REDUCED, seed=1), REDUCED, images)
    assert [o.shape for o in outputs] == [(2, 12, 9, N_CLASSES)] * 3 + [(2, 12, 9, N_JOINTS)]
    for out in outputs:
        assert np.isfinite(out).all() and 0.1 < np.abs(out).max() < 1e3
    norms = [op for op in graph.get_operations() if op.type.startswith("FusedBatchNorm")]
    assert len(norms) == sum(1 for name, _ in variable_specs(REDUCED) if name.endswith("/gamma"))
    assert all(not op.get_attr("is_training") and op.get_attr("epsilon") == pytest.approx(0.001) for op in norms)


def test_constant_weights_refuses_a_misshapen_tensor():
    weights = synthetic_weights(REDUCED)
    weights["fc2_pose/conv3/w"] = weights["fc2_pose/conv3/w"][:5]
    with tf.Graph().as_default(), pytest.raises(ValueError, match="fc2_pose/conv3/w"):
        with constant_weights(weights):
            build_forward(tf.compat.v1.placeholder(tf.float32, [1, None, None, 3]), REDUCED)
