"""tf2onnx export of JPP-Net, its validation against TensorFlow and its manifest entry."""
from collections import Counter

import numpy as np
import onnx
import pytest
from tryon.export import manifest
from tryon.export.errors import ExportValidationError
from tryon.export.jppnet_checkpoint import load_weights
from tryon.export.jppnet_export import (
    RELATIVE_TOLERANCE,
    compare,
    export_jppnet,
    validate_jppnet,
    validation_photo,
)
from tryon.export.jppnet_graph import FULL, REDUCED, variable_specs
from tryon.export.jppnet_reference import run_reference
from tryon.export.jppnet_synth import write_synthetic
from tryon.models.graphs import open_jppnet
from tryon.models.manifest import Manifest
from tryon.models.model_dir import ModelDir
from tryon.models.session import SessionOptions
from tryon.stages.parse import ParseStage


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jppnet_export")
    written = write_synthetic(folder / "synthetic", seed=11, config=REDUCED)
    other = write_synthetic(folder / "other_seed", seed=12, config=REDUCED, formats=("ckpt",))
    entry = export_jppnet(written["jppnet_pb"], folder / "models", config=REDUCED)
    return folder, written, other, entry


def test_manifest_records_source_variant_and_validation(exported):
    folder, written, _, entry = exported
    recorded = Manifest.read(folder / "models").models["jppnet"].to_json()
    assert recorded == entry
    assert entry["file"] == "jppnet.onnx" and entry["variant"] == "reduced" and entry["opset"] == 17
    assert entry["source"] == {"path": str(written["jppnet_pb"]), "format": "pb", "synthetic": True,
                               "sha256": manifest.sha256_file(written["jppnet_pb"])}
    assert entry["sha256"] == manifest.sha256_file(folder / "models" / "jppnet.onnx")
    assert entry["inputs"] == [{"name": "image", "shape": ["N", "H", "W", 3], "dtype": "float32"}]
    assert entry["outputs"] == [{"name": "parsing", "shape": ["N", "h", "w", 20], "dtype": "float32"},
                                {"name": "pose", "shape": ["N", "h", "w", 16], "dtype": "float32"}]
    validation = entry["validation"]
    assert validation["passed"] and validation["relative_tolerance"] == RELATIVE_TOLERANCE
    for output in ("parsing", "pose"):
        assert validation[output]["relative_diff"] < RELATIVE_TOLERANCE
        assert validation[output]["argmax_agreement"] >= 0.999
        assert validation[output]["decisive_argmax_mismatches"] == 0


def test_winograd_graph_is_written_validated_and_what_fp32_runs_on_the_cpu(exported):
    folder = exported[0] / "models"
    entry = Manifest.read(folder).models["jppnet_winograd"].to_json()
    assert entry["file"] == "jppnet.winograd.onnx" and entry["source"] == exported[3]["source"]
    assert entry["validation"]["passed"]
    for output in ("parsing", "pose"):
        assert entry["validation"][output]["relative_diff"] < RELATIVE_TOLERANCE
        assert entry["validation"][output]["decisive_argmax_mismatches"] == 0
    model = onnx.load(str(folder / "jppnet.winograd.onnx"))
    kernels = Counter(tuple(a.ints) for n in model.graph.node if n.op_type == "Conv"
                      for a in n.attribute if a.name == "kernel_shape" and n.input[1] in
                      {i.name for i in model.graph.initializer} and not n.input[1].startswith("winograd/"))
    assert kernels[(5, 5)] == kernels[(9, 9)] == 0 and kernels[(7, 7)] == 1  # conv1, stride 2, stays
    assert entry["winograd_convolutions"] == 25  # the full network's 27 less 2 res3 blocks
    graph, session = open_jppnet(ModelDir.open(folder), SessionOptions(provider="cpu"))
    assert graph == "jppnet_winograd" and session.get_providers() == ["CPUExecutionProvider"]


def test_onnx_graph_is_plain_convolutions_with_the_checkpoint_names(exported):
    """Dilated convolutions stay single Conv nodes (no space-to-batch shuffles), the only
    transposes are the NHWC/NCHW ones at the ends, the weights are initializers named
    like the checkpoint's variables, and the opset is the one asked for."""
    model = onnx.load(str(exported[0] / "models" / "jppnet.onnx"))
    ops = Counter(node.op_type for node in model.graph.node)
    assert ops["Conv"] == 90 and ops["Transpose"] == 3
    assert not {"SpaceToDepth", "DepthToSpace", "Pad", "BatchToSpaceND"} & set(ops)
    dilations = {tuple(a.ints) for n in model.graph.node if n.op_type == "Conv"
                 for a in n.attribute if a.name == "dilations"}
    assert dilations == {(1, 1), (2, 2), (4, 4), (6, 6), (12, 12), (18, 18), (24, 24)}
    assert {name for name, _ in variable_specs(REDUCED)} <= {i.name for i in model.graph.initializer}
    assert [i.name for i in model.graph.input] == ["image"]
    assert {o.domain: o.version for o in model.opset_import}[""] == 17


def test_export_prints_its_phases_and_finds_the_layout_itself(tmp_path, exported, capsys):
    export_jppnet(exported[1]["jppnet_ckpt"], tmp_path)
    lines = capsys.readouterr().out.splitlines()
    assert any("converting with tf2onnx" in line for line in lines)
    assert all(line.startswith("[jppnet ") and " s] " in line for line in lines)
    entry = Manifest.read(tmp_path).models["jppnet"].to_json()
    assert entry["source"]["format"] == "ckpt" and entry["variant"] == "reduced"
    assert entry["source"]["sha256"] == manifest.sha256_files(
        sorted((exported[1]["jppnet_ckpt"]).glob("model.ckpt-*")))


def test_validate_rechecks_the_existing_file(exported):
    folder, written, _, _ = exported
    report = validate_jppnet(folder / "models", written["jppnet_pb"])
    assert report["passed"] and report["source_matches_manifest"]
    # The checkpoint holds the same weights in the other format: it validates, but is not the hashed source.
    report = validate_jppnet(folder / "models", written["jppnet_ckpt"])
    assert report["passed"] and not report["source_matches_manifest"]


def test_validate_fails_against_other_weights(exported):
    folder, _, other, _ = exported
    with pytest.raises(ExportValidationError, match="relative tolerance"):
        validate_jppnet(folder / "models", other["jppnet_ckpt"])


def test_near_ties_do_not_count_as_argmax_mismatches():
    ref = np.zeros((1, 4, 4, 3), np.float32)
    ref[..., 0] = 10.0
    ref[0, 0, 0, 1] = 10.0 - 2e-4  # a near tie in TensorFlow's own output
    got = ref.copy()
    got[0, 0, 0, 1] = 10.0 + 2e-4  # flips that argmax, within 1e-4 of the largest value
    report = compare(ref, got, per_position=True)
    assert report["argmax_agreement"] == pytest.approx(15 / 16)
    assert report["decisive_argmax_mismatches"] == 0 and report["passed"]
    ref[0, 1, 1, 2] = 10.5  # TensorFlow is sure here; ONNX Runtime "says" label 0
    report = compare(ref, got, per_position=True)
    assert report["decisive_argmax_mismatches"] == 1 and not report["passed"]


def test_keypoint_comparison_is_per_image_and_joint():
    ref = np.zeros((2, 5, 6, 16), np.float32)
    ref[1, 2, 3, 7] = 4.0
    got = ref.copy()
    got[1, 2, 3, 7], got[1, 4, 4, 7] = 0.0, 4.0
    report = compare(ref, got, per_position=False)
    assert report["argmax_agreement"] == pytest.approx(31 / 32) and report["decisive_argmax_mismatches"] == 1


@pytest.mark.slow
def test_full_size_export_matches_tensorflow(full_models):
    """The published network size: synthetic checkpoint -> tf2onnx -> one 384 scale with
    the mirror through ParseStage, against the TensorFlow reference. The export is the
    session's shared full-size one (conftest.full_models)."""
    entry = Manifest.read(full_models.models).models["jppnet"].to_json()
    assert entry["variant"] == "full" and entry["source"]["synthetic"] and entry["validation"]["passed"]
    assert entry["bytes"] > 488e6 and entry["source"]["format"] == "ckpt"
    winograd = Manifest.read(full_models.models).models["jppnet_winograd"].to_json()
    assert winograd["validation"]["passed"] and winograd["winograd_convolutions"] == 27
    photo = validation_photo(301, 203)
    result = ParseStage.from_dir(full_models.models, scales=(1.0,), mirror=True).run(photo)
    reference = run_reference(load_weights(full_models.jppnet_checkpoint), photo, FULL, scales=(1.0,), mirror=True)
    assert np.mean(result.labels == reference.labels) >= 0.999
    np.testing.assert_array_equal(result.keypoints, reference.keypoints)
    np.testing.assert_allclose(result.heatmaps.expand(), reference.heatmaps, atol=1e-4 * np.abs(reference.heatmaps).max())
    write_s = full_models.jppnet_write_s
    assert write_s < 60, f"writing the full synthetic checkpoint took {write_s:.0f} s"
    print(f"full size: write {write_s:.1f} s, validation {entry['validation']}, parse timings {result.timings_ms}")
