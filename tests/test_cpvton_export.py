"""GMM/TOM: published layout, strict loading and its errors, export parity, the linear TPS."""
import collections
import json
import shutil
import zipfile

import cv2
import numpy as np
import pytest
import torch
from shared_data import viton_dir
from tryon.export.cpvton_checkpoint import CheckpointError, load_network, read_state_dict
from tryon.export.cpvton_export import (
    TOLERANCE,
    ExportValidationError,
    export_cpvton,
    garment_sample,
    person_sample,
    reference_gmm,
    sharp_garment_sample,
    validate_cpvton,
    validation_inputs,
)
from tryon.export.cpvton_networks import LinearTpsGridGen, TpsGridGen, tps_matrix
from tryon.export.cpvton_synth import write_synthetic
from tryon.models.session import SessionOptions, create_session
from tryon.stages.agnostic import agnostic_representation, to_unit_range

# REFERENCE.md: floats in the published files (num_batches_tracked, 14 int64 scalars, not counted).
FLOATS = {("grayxu", "gmm"): 19_063_410, ("cpvton", "gmm"): 19_065_458,
          ("grayxu", "tom"): 21_347_204, ("cpvton", "tom"): 21_349_252}
ENTRIES = {"gmm": 104, "tom": 24}


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    return {family: write_synthetic(tmp_path_factory.mktemp(f"ckpt_{family}"), family, seed=0)
            for family in ("grayxu", "cpvton")}


@pytest.fixture(scope="session")
def exported(synthetic, tmp_path_factory):
    out = {}
    for family, paths in synthetic.items():
        models_dir = tmp_path_factory.mktemp(f"models_{family}")
        out[family] = (models_dir, export_cpvton(paths["gmm"], paths["tom"], models_dir))
    return out


@pytest.mark.parametrize("family", ["grayxu", "cpvton"])
@pytest.mark.parametrize("network", ["gmm", "tom"])
def test_synthetic_files_have_the_published_layout(synthetic, family, network):
    path = synthetic[family][network]
    assert path.name == {"grayxu": {"gmm": "gmm.pth", "tom": "tom.pth"},
                         "cpvton": {"gmm": "gmm_final.pth", "tom": "tom_final.pth"}}[family][network]
    assert not zipfile.is_zipfile(path)  # the pre-1.6 container the published files use
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert isinstance(state, collections.OrderedDict) and len(state) == ENTRIES[network]
    floats = sum(v.numel() for v in state.values() if v.is_floating_point())
    assert floats == FLOATS[(family, network)]
    counters = [k for k, v in state.items() if not v.is_floating_point()]
    assert all(k.endswith("num_batches_tracked") for k in counters)
    assert len(counters) == (14 if network == "gmm" else 0)
    model, detected = load_network(path, network)
    assert detected == family and not model.training


def test_synthetic_folder_is_marked_untrained(synthetic, exported):
    from tryon.export.sources import is_synthetic

    assert is_synthetic(synthetic["grayxu"]["gmm"])
    for family, (_, entries) in exported.items():
        assert entries["gmm"]["source"]["synthetic"] is True
        assert entries["gmm"]["source"]["format"] == "torch state_dict"


def test_synthetic_gmm_is_not_degenerate(synthetic):
    gmm, _ = load_network(synthetic["cpvton"]["gmm"], "gmm")
    agnostic, cloth = (torch.from_numpy(a) for a in validation_inputs("cpvton", 2))
    with torch.no_grad():
        _, theta = gmm(agnostic, cloth)
    assert 0.02 < float(theta.std()) and float(theta.abs().max()) < 0.9
    running_var = gmm.extractionA.model[2].running_var
    assert not torch.allclose(running_var, torch.ones_like(running_var))


def test_module_prefix_is_accepted(synthetic, tmp_path):
    state = torch.load(synthetic["grayxu"]["tom"], weights_only=True)
    path = tmp_path / "tom.pth"
    torch.save({"module." + k: v for k, v in state.items()}, path)
    assert load_network(path, "tom")[1] == "grayxu"


def _rewritten(synthetic, tmp_path, change):
    state = torch.load(synthetic["cpvton"]["gmm"], weights_only=True)
    change(state)
    path = tmp_path / "gmm_final.pth"
    torch.save(state, path)
    return path


def test_missing_key_is_named(synthetic, tmp_path):
    path = _rewritten(synthetic, tmp_path, lambda s: s.pop("regression.linear.bias"))
    with pytest.raises(CheckpointError, match=r"missing: regression\.linear\.bias"):
        load_network(path, "gmm")


def test_unexpected_key_is_named(synthetic, tmp_path):
    path = _rewritten(synthetic, tmp_path, lambda s: s.update(extra=torch.zeros(1)))
    with pytest.raises(CheckpointError, match="unexpected: extra"):
        load_network(path, "gmm")


def test_wrong_shape_is_named(synthetic, tmp_path):
    path = _rewritten(synthetic, tmp_path, lambda s: s.update({"regression.linear.weight": torch.zeros(50, 10)}))
    expected = r"wrong shape: regression\.linear\.weight \[50, 10\] \(expected \[50, 768\]\)"
    with pytest.raises(CheckpointError, match=expected):
        load_network(path, "gmm")


def test_unknown_family_lists_the_known_ones(synthetic, tmp_path):
    first_conv = {"extractionA.model.0.weight": torch.zeros(64, 26, 4, 4)}
    path = _rewritten(synthetic, tmp_path, lambda s: s.update(first_conv))
    expected = r"\[64, 26, 4, 4\].*cpvton \[64, 22, 4, 4\].*grayxu \[64, 20, 4, 4\]"
    with pytest.raises(CheckpointError, match=expected):
        load_network(path, "gmm")


def test_a_tom_file_is_not_taken_for_a_gmm(synthetic):
    with pytest.raises(CheckpointError, match="not a GMM checkpoint.*missing"):
        load_network(synthetic["grayxu"]["tom"], "gmm")


@pytest.mark.parametrize("content, message", [
    (b"garbage bytes, not a pickle", "not a torch state_dict"),
    (b"", "not a torch state_dict"),
    (None, "holds a list, not a state_dict"),
])
def test_unreadable_files_raise_checkpoint_errors(tmp_path, content, message):
    path = tmp_path / "gmm.pth"
    if content is None:
        torch.save([torch.zeros(1)], path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_state_dict(path)


def test_a_pickled_module_is_refused(tmp_path):
    path = tmp_path / "gmm.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_network(path, "gmm")


def test_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_network(tmp_path / "nope.pth", "tom")


def test_families_must_match(synthetic, tmp_path):
    with pytest.raises(CheckpointError, match="GMM .* is grayxu but TOM .* is cpvton"):
        export_cpvton(synthetic["grayxu"]["gmm"], synthetic["cpvton"]["tom"], tmp_path)
    assert not (tmp_path / "gmm.onnx").exists()


GMM_OUTPUTS, TOM_OUTPUTS = ("theta", "grid", "warped_cloth"), ("rendered", "mask", "tryon")
# Graph -> (file, outputs it is judged on): GMM's halves are validated together, as the runtime chains them.
GRAPHS = {"gmm": ("gmm.onnx", GMM_OUTPUTS), "gmm_person": ("gmm_person.onnx", ("person_features", *GMM_OUTPUTS)),
          "gmm_garment": ("gmm_garment.onnx", ("person_features", *GMM_OUTPUTS)),
          "tom": ("tom.onnx", TOM_OUTPUTS), "tom_winograd": ("tom.winograd.onnx", TOM_OUTPUTS)}


@pytest.mark.parametrize("family", ["grayxu", "cpvton"])
def test_export_parity_and_manifest(exported, family):
    models_dir, entries = exported[family]
    channels = {"grayxu": 20, "cpvton": 22}[family]
    manifest = json.loads((models_dir / "manifest.json").read_text())
    assert set(manifest["models"]) == set(entries) == set(GRAPHS)
    for name, (file, outputs) in GRAPHS.items():
        entry = manifest["models"][name]
        assert entry["family"] == family and entry["opset"] == 17 and entry["file"] == file
        validation = entry["validation"]
        assert validation["passed"] and set(validation["max_abs_diff"]) == set(outputs)
        for output, diff in validation["max_abs_diff"].items():
            tolerance = validation["tolerance"][output]
            if output == "warped_cloth":  # judged in uint8 steps, as TOM sees it
                steps = validation["uint8_steps"][output]
                assert steps["max_step"] <= tolerance["uint8_max_step"] == 1
                assert steps["fraction"] <= tolerance["uint8_max_fraction"] == 0.02
            else:
                assert diff <= tolerance <= 1e-3
        assert validation["max_abs_diff"].get("grid", 0) <= 1e-4
        assert validation["max_abs_diff"].get("person_features", 0) <= 1e-5
        assert "one person in 4 garments" in validation["inputs"]
    signatures = {name: ([(i["name"], i["shape"]) for i in manifest["models"][name]["inputs"]],
                         [(o["name"], o["shape"]) for o in manifest["models"][name]["outputs"]]) for name in GRAPHS}
    person, cloth = ("agnostic", ["N", channels, 256, 192]), ("cloth", ["N", 3, 256, 192])
    features = ("person_features", ["N", 512, 16, 12])
    gmm_outputs = [("theta", ["N", 50]), ("grid", ["N", 256, 192, 2]), ("warped_cloth", ["N", 3, 256, 192])]
    assert signatures["gmm"] == ([person, cloth], gmm_outputs)
    assert signatures["gmm_person"] == ([person], [features])
    assert signatures["gmm_garment"] == ([features, cloth], gmm_outputs)
    tom_outputs = [("rendered", ["N", 3, 256, 192]), ("mask", ["N", 1, 256, 192]), ("tryon", ["N", 3, 256, 192])]
    assert signatures["tom"] == signatures["tom_winograd"] == (
        [person, ("warped_cloth", ["N", 3, 256, 192])], tom_outputs)


def test_gmm_halves_split_at_the_person_features(exported):
    """The person half is extraction A alone (6 convolutions); everything that sees the garment,
    extraction B (6), the regression (4) and the warp, is in the garment half."""
    import onnx

    models_dir, _ = exported["grayxu"]
    ops = {name: collections.Counter(n.op_type for n in onnx.load(str(models_dir / f"{name}.onnx")).graph.node)
           for name in ("gmm", "gmm_person", "gmm_garment")}
    assert ops["gmm_person"]["Conv"] == 6 and ops["gmm_person"]["GridSample"] == 0
    assert ops["gmm_garment"]["Conv"] == 10 and ops["gmm_garment"]["GridSample"] == 1
    assert ops["gmm_person"]["Conv"] + ops["gmm_garment"]["Conv"] == ops["gmm"]["Conv"]


def test_tom_winograd_rewrites_the_large_3x3_convolutions(exported):
    """The 3x3 convolutions on 32x24 and 64x48 inputs (1024 -> 256, 512 -> 128 channels) become
    Winograd convolutions; the smaller-input ones and the 64- and 4-output ones stay direct."""
    import onnx

    models_dir, entries = exported["grayxu"]
    assert entries["tom_winograd"]["winograd_convolutions"] == 2
    model = onnx.load(str(models_dir / "tom.winograd.onnx"))
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    direct = sorted(weights[n.input[1]] for n in model.graph.node
                    if n.op_type == "Conv" and n.input[1] in weights and weights[n.input[1]][2:] == (3, 3))
    assert direct == [(4, 128, 3, 3), (64, 256, 3, 3), (512, 512, 3, 3), (512, 1024, 3, 3)]
    # The rewritten layers' weights are stored once, tap-major, not transformed (4x as many numbers).
    assert sorted(v for v in weights.values() if len(v) == 2 and v[0] == 9) == [(9, 128 * 512), (9, 256 * 1024)]


def test_exported_gmm_uses_one_matmul_for_the_grid(exported):
    import onnx

    model = onnx.load(str(exported["grayxu"][0] / "gmm.onnx"))
    assert {o.domain: o.version for o in model.opset_import}.get("") == 17
    graph = model.graph
    ops = collections.Counter(node.op_type for node in graph.node)
    assert ops["GridSample"] == 1 and ops["Log"] == 0  # no radial basis evaluated at run time
    assert any(list(t.dims) == [256 * 192, 25] for t in graph.initializer)


def test_validate_reruns(synthetic, exported):
    models_dir, _ = exported["grayxu"]
    paths = synthetic["grayxu"]
    report = validate_cpvton(models_dir, paths["gmm"], paths["tom"])
    assert set(report) == set(GRAPHS) and all(r["passed"] for r in report.values())
    assert report["gmm"]["max_abs_diff"]["grid"] <= 1e-4 and report["gmm_garment"]["max_abs_diff"]["grid"] <= 1e-4


def test_a_person_half_that_is_off_is_refused(synthetic, exported, tmp_path):
    """gmm_person.onnx with its first convolution's weights 1% off (noise): its features move by ~1e-3."""
    import onnx
    from onnx import numpy_helper

    source, _ = exported["grayxu"]
    for name in ("gmm.onnx", "tom.onnx", "gmm_garment.onnx"):
        shutil.copy(source / name, tmp_path / name)
    model = onnx.load(str(source / "gmm_person.onnx"))
    (first,) = [t for t in model.graph.initializer if list(t.dims) == [64, 20, 4, 4]]
    noise = np.random.default_rng(0).normal(1, 1e-2, first.dims).astype(np.float32)
    first.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(first) * noise, first.name))
    onnx.save(model, str(tmp_path / "gmm_person.onnx"))
    paths = synthetic["grayxu"]
    with pytest.raises(ExportValidationError, match=r"gmm_person\.onnx -> gmm_garment\.onnx differs .*"
                                                    r"person_features max \|diff\|"):
        validate_cpvton(tmp_path, paths["gmm"], paths["tom"])


def _tampered_copy(exported, tmp_path, change):
    """The grayxu export with its gmm.onnx changed by `change(onnx model)`, next to the same tom.onnx."""
    import onnx

    source, _ = exported["grayxu"]
    shutil.copy(source / "tom.onnx", tmp_path / "tom.onnx")
    model = onnx.load(str(source / "gmm.onnx"))
    change(model)
    onnx.save(model, str(tmp_path / "gmm.onnx"))
    return tmp_path


def test_a_perturbed_grid_is_refused(synthetic, exported, tmp_path):
    """The TPS matrix 0.02% off: the grid moves by ~3e-4 (0.03 pixels), far under what the eye sees."""
    from onnx import numpy_helper

    def scale_tps_matrix(model):
        matrices = [t for t in model.graph.initializer if list(t.dims) == [256 * 192, 25]]
        assert matrices
        for tensor in matrices:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * np.float32(1.0002), tensor.name))

    models_dir = _tampered_copy(exported, tmp_path, scale_tps_matrix)
    paths = synthetic["grayxu"]
    with pytest.raises(ExportValidationError, match=r"grid max \|diff\| [0-9.e-]+ \(tol 1e-04\)"):
        validate_cpvton(models_dir, paths["gmm"], paths["tom"])


def test_wrong_sampling_with_the_right_grid_is_refused_by_the_uint8_check(synthetic, exported, tmp_path):
    """grid_sample without corner alignment: the grid is exact, the warped cloth half a pixel off."""
    def misalign(model):
        (node,) = [n for n in model.graph.node if n.op_type == "GridSample"]
        (attribute,) = [a for a in node.attribute if a.name == "align_corners"]
        attribute.i = 0

    models_dir = _tampered_copy(exported, tmp_path, misalign)
    paths = synthetic["grayxu"]
    with pytest.raises(ExportValidationError, match=r"tolerance: warped_cloth in uint8: up to \d+ step") as refused:
        validate_cpvton(models_dir, paths["gmm"], paths["tom"])
    assert "grid" not in str(refused.value).split("tolerance:")[1]


def _gradient_statistics(rgb):
    """(99th percentile, share over 80) of horizontal grey-level steps: how sharp a garment photo is."""
    steps = np.abs(np.diff(rgb.astype(float).mean(2), axis=1))
    return np.percentile(steps, 99), (steps > 80).mean()


def _viton_garments():
    paths = sorted((viton_dir() / "cloth").glob("*.jpg"))
    assert len(paths) == 8
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def test_validation_garments_are_as_sharp_as_real_ones():
    real = np.array([_gradient_statistics(g) for g in _viton_garments()])
    drawn = np.array([_gradient_statistics(sharp_garment_sample(i)) for i in range(4)])
    smooth = np.array([_gradient_statistics(garment_sample(i)) for i in range(4)])
    for column in range(2):  # medians inside the real garments' range; the old smooth ones' were not
        low, high = real[:, column].min(), real[:, column].max()
        assert low <= np.median(drawn[:, column]) <= high
    assert smooth[:, 1].max() == 0 < np.median(real[:, 1])


def test_on_real_garments_the_grid_decides_and_the_warp_holds_in_uint8(synthetic, exported):
    """The VITON garments through the exported GMM and through torch, and through torch batched
    differently: the grid stays far inside 1e-4, the warped cloth's uint8 steps inside their bound,
    while its float difference is noise of the reference itself, well above the grid's."""
    models_dir, _ = exported["cpvton"]
    gmm, _ = load_network(synthetic["cpvton"]["gmm"], "gmm")
    cloth = np.stack([to_unit_range(g).transpose(2, 0, 1) for g in _viton_garments()])
    agnostic = []
    for i in range(len(cloth)):
        photo, labels, keypoints = person_sample(shift=6 * (i % 4))
        agnostic.append(agnostic_representation(photo, labels, keypoints["cpvton"], "cpvton"))
    agnostic = np.stack(agnostic)
    with torch.no_grad():
        _, grid, warped = (v.numpy() for v in reference_gmm(gmm, torch.from_numpy(agnostic), torch.from_numpy(cloth)))
        one_by_one = np.concatenate([reference_gmm(gmm, torch.from_numpy(agnostic[i:i + 1]),
                                                   torch.from_numpy(cloth[i:i + 1]))[2].numpy()
                                     for i in range(len(cloth))])
    session = create_session(models_dir / "gmm.onnx", SessionOptions(provider="cpu"))
    _, onnx_grid, onnx_warped = session.run(None, {"agnostic": agnostic, "cloth": cloth})
    assert np.abs(onnx_grid - grid).max() <= 1e-4
    bound = TOLERANCE["warped_cloth"]
    for candidate in (onnx_warped, one_by_one):  # the export, and the reference batched differently
        steps = bound.measure(candidate, warped)
        assert bound.holds(steps), steps
        assert steps["max_step"] == 1  # flips happen: float noise at sharp edges crosses uint8 steps
    assert np.abs(one_by_one - warped).max() > 2e-4


def test_linear_tps_equals_the_original():
    theta = torch.from_numpy(np.random.default_rng(0).uniform(-0.5, 0.5, (3, 50)).astype(np.float32))
    with torch.no_grad():
        original, linear = TpsGridGen()(theta), LinearTpsGridGen()(theta)
    assert original.shape == linear.shape == (3, 256, 192, 2)
    assert float((original - linear).abs().max()) < 1e-4


def test_tps_of_zero_offsets_is_the_identity_grid():
    matrix = tps_matrix()
    assert matrix.shape == (256 * 192, 25)
    from tryon.export.cpvton_networks import control_points

    px, py = control_points()
    gx, gy = np.meshgrid(np.linspace(-1, 1, 192), np.linspace(-1, 1, 256))
    np.testing.assert_allclose(matrix @ px, gx.ravel(), atol=1e-9)
    np.testing.assert_allclose(matrix @ py, gy.ravel(), atol=1e-9)
