"""Both JPP-Net loaders on synthetic files in the published formats, and their errors."""
import numpy as np
import pytest
import tensorflow as tf
from tryon.export.errors import CheckpointError
from tryon.export.jppnet_checkpoint import detect_config, load_weights, resolve_source
from tryon.export.jppnet_graph import FULL, REDUCED, variable_specs
from tryon.export.jppnet_reference import run_reference
from tryon.export.jppnet_synth import (
    CHECKPOINT_DIR,
    CHECKPOINT_PREFIX,
    FROZEN_GRAPH,
    synthetic_weights,
    write_checkpoint,
    write_synthetic,
)
from tryon.export.sources import SYNTHETIC_MARKER, is_synthetic
from tryon.stages.parse import LIP_MEAN_BGR

SEED = 3


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jppnet_synthetic")
    written = write_synthetic(folder, seed=SEED, config=REDUCED)
    return folder, written


@pytest.fixture(scope="session")
def expected():
    return synthetic_weights(REDUCED, seed=SEED)


def _same(loaded, expected):
    assert set(loaded) == set(expected)
    for name, value in expected.items():
        assert loaded[name].dtype == np.float32 and np.array_equal(loaded[name], value), name


def test_write_synthetic_lays_out_both_published_formats(synthetic):
    folder, written = synthetic
    assert written == {"jppnet_ckpt": folder / CHECKPOINT_DIR, "jppnet_pb": folder / FROZEN_GRAPH}
    ckpt = folder / CHECKPOINT_DIR
    assert (ckpt / f"{CHECKPOINT_PREFIX}.index").is_file()
    assert (ckpt / f"{CHECKPOINT_PREFIX}.data-00000-of-00001").is_file()
    assert f'model_checkpoint_path: "{CHECKPOINT_PREFIX}"' in (ckpt / "checkpoint").read_text()
    assert (folder / "README.md").read_text().startswith(SYNTHETIC_MARKER)
    assert is_synthetic(written["jppnet_ckpt"]) and is_synthetic(written["jppnet_pb"])


@pytest.mark.parametrize("where", ["directory", "prefix", "index"])
def test_checkpoint_loads_from_any_of_its_names(synthetic, expected, where):
    ckpt = synthetic[0] / CHECKPOINT_DIR
    path = {"directory": ckpt, "prefix": ckpt / CHECKPOINT_PREFIX,
            "index": ckpt / f"{CHECKPOINT_PREFIX}.index"}[where]
    source = resolve_source(path)
    assert source.format == "ckpt" and source.path == ckpt / CHECKPOINT_PREFIX
    assert [p.name for p in source.files] == [f"{CHECKPOINT_PREFIX}.index", f"{CHECKPOINT_PREFIX}.data-00000-of-00001"]
    _same(load_weights(path, REDUCED), expected)


def test_frozen_graph_loads_by_node_name(synthetic, expected):
    path = synthetic[0] / FROZEN_GRAPH
    assert resolve_source(path).format == "pb"
    _same(load_weights(path, REDUCED), expected)


def _graph_def(path):
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(path.read_bytes())
    return graph_def


def test_frozen_graph_has_grayxus_input_pipeline_and_outputs(synthetic):
    nodes = {n.name: n for n in _graph_def(synthetic[0] / FROZEN_GRAPH).node}
    ops = {name: n.op for name, n in nodes.items()}
    assert ops["input_producer"] == "FIFOQueueV2"
    assert {"ReadFile", "DecodeJpeg", "Split", "ConcatV2", "ReverseV2"} <= set(ops.values())
    assert ops["img"] == "Cast" and ops["img_1"] == "Sub" and list(nodes["img_1"].input) == ["img", "img_1/y"]
    np.testing.assert_allclose(tf.make_ndarray(nodes["img_1/y"].attr["value"].tensor), LIP_MEAN_BGR)
    assert ops["stack_1"] == "Pack"
    sizes = [tf.make_ndarray(nodes[nodes[f"resize_images{s}/ResizeBilinear"].input[1]].attr["value"].tensor).tolist()
             for s in ("", "_1", "_2")]
    assert sizes == [[384, 384], [288, 288], [480, 480]]
    assert nodes["resize_images/ResizeBilinear"].input[0] == "stack_1"
    assert ops["conv1/weights"] == "Const" and ops["conv1/weights/read"] == "Identity"
    assert list(nodes["conv1/Conv2D"].input) == ["resize_images/ResizeBilinear", "conv1/weights/read"]
    assert ops["pose"] == "Identity" and ops["parse"] == "Identity"


def test_frozen_graph_runs_the_way_grayxu_fed_it(synthetic, expected):
    """GrayXu fed `img_1:0` (BGR minus mean here) and read `pose:0` and `parse:0`."""
    rgb = np.random.default_rng(0).integers(0, 256, (61, 43, 3), dtype=np.uint8)
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(_graph_def(synthetic[0] / FROZEN_GRAPH), name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        pose, parse = sess.run(["pose:0", "parse:0"],
                               {"img_1:0": rgb[:, :, ::-1].astype(np.float32) - LIP_MEAN_BGR})
    assert pose.shape == (1, 61, 43, 16) and parse.shape == (1, 61, 43, 1)
    assert np.isfinite(pose).all() and 0 <= parse.min() and parse.max() < 20
    reference = run_reference(expected, rgb, REDUCED)
    np.testing.assert_array_equal(parse[0, :, :, 0], reference.labels)
    np.testing.assert_allclose(pose[0], reference.heatmaps, atol=1e-5)


def test_missing_tensors_are_listed_and_counted(tmp_path, expected):
    dropped = [name for name, _ in variable_specs(REDUCED)][-8:]
    write_checkpoint({k: v for k, v in expected.items() if k not in dropped}, tmp_path / "ckpt")
    with pytest.raises(CheckpointError) as error:
        load_weights(tmp_path / "ckpt", REDUCED)
    message = str(error.value)
    assert f"8 of {len(expected)} tensors missing" in message
    assert dropped[0] in message and "... and 3 more" in message and dropped[-1] not in message


def test_misshapen_tensor_is_named_with_both_shapes(tmp_path, expected):
    weights = dict(expected)
    weights["fc2_parsing/parsing_conv2/w"] = np.zeros((3, 3, 64, 32), np.float32)
    write_checkpoint(weights, tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=r"1 of \d+ tensors wrong shape: fc2_parsing/parsing_conv2/w "
                                               r"\[3, 3, 64, 32\] \(expected \[5, 5, 64, 32\]\)"):
        load_weights(tmp_path / "ckpt", REDUCED)


def test_reduced_files_are_not_taken_for_the_full_network(synthetic):
    wrong_conv1 = r"wrong shape: conv1/weights \[7, 7, 3, 8\] \(expected \[7, 7, 3, 64\]\)"
    for path in (synthetic[0] / CHECKPOINT_DIR, synthetic[0] / FROZEN_GRAPH):
        with pytest.raises(CheckpointError, match=wrong_conv1):
            load_weights(path, FULL)


def test_unreadable_files_get_a_clear_error(tmp_path):
    garbage = tmp_path / "jpp.pb"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="neither a TF checkpoint nor a frozen GraphDef"):
        load_weights(garbage)
    (tmp_path / "empty.pb").write_bytes(b"")
    with pytest.raises(CheckpointError, match="neither a TF checkpoint nor a frozen GraphDef"):
        load_weights(tmp_path / "empty.pb")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(tmp_path / "nowhere")
    (tmp_path / "JPPNet-s2").mkdir()
    with pytest.raises(CheckpointError, match="not a TF checkpoint directory"):
        load_weights(tmp_path / "JPPNet-s2")


def test_damaged_checkpoint_data_gets_a_clear_error(tmp_path, expected):
    write_checkpoint(expected, tmp_path / "ckpt")
    data = tmp_path / "ckpt" / f"{CHECKPOINT_PREFIX}.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=f"{CHECKPOINT_PREFIX}"):
        load_weights(tmp_path / "ckpt", REDUCED)
    (tmp_path / "ckpt" / f"{CHECKPOINT_PREFIX}.index").write_bytes(b"not an index")
    with pytest.raises(CheckpointError, match="not a readable TF checkpoint"):
        load_weights(tmp_path / "ckpt", REDUCED)


def test_checkpoint_file_may_name_the_training_machines_path(tmp_path, expected):
    write_checkpoint(expected, tmp_path / "JPPNet-s2")
    (tmp_path / "JPPNet-s2" / "checkpoint").write_text(
        f'model_checkpoint_path: "./checkpoint/JPPNet-s2/{CHECKPOINT_PREFIX}"\n')
    _same(load_weights(tmp_path / "JPPNet-s2", REDUCED), expected)


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="'onnx'"):
        write_synthetic(tmp_path, config=REDUCED, formats=("onnx",))


def test_the_layout_is_detected_from_the_files_shapes(synthetic, expected, tmp_path):
    assert detect_config(synthetic[0] / CHECKPOINT_DIR) == REDUCED
    assert detect_config(synthetic[0] / FROZEN_GRAPH) == REDUCED
    weights = dict(expected)
    weights["conv1/weights"] = np.zeros((7, 7, 3, 9), np.float32)
    write_checkpoint(weights, tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=r"wrong shape: conv1/weights \[7, 7, 3, 9\]"):
        detect_config(tmp_path / "ckpt")
