"""Winograd rewrite (export/winograd.py): the algebra, the graph against ONNX Runtime's own
Conv, which convolutions it touches, and that the file keeps one copy of the weights."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from tryon.export import winograd  # noqa: E402
from tryon.models.session import SessionOptions, create_session  # noqa: E402

RELATIVE_TOLERANCE = 5e-5  # the export's whole-network tolerance is 1e-4


@pytest.mark.parametrize("size", sorted(winograd.PLANS))
def test_one_dimensional_identity_is_exact(size):
    """A^T [(Q g) * (B^T d)] summed over blocks equals the correlation, in float64."""
    m, r = winograd.PLANS[size]
    t, nb = m + r - 1, winograd.kernel_blocks(size, m, r)
    at, _, bt = winograd.transforms(m, r)
    q = winograd.weight_transform(size, m, r).reshape(nb, t, size)
    rng = np.random.default_rng(size)
    g, d = rng.standard_normal(size), rng.standard_normal((nb - 1) * m + t)
    y = sum(at @ ((q[b] @ g) * (bt @ d[b * m:b * m + t])) for b in range(nb))
    expected = [np.dot(d[i:i + size], g) for i in range(m)]
    np.testing.assert_allclose(y, expected, atol=1e-11)


def test_a_plan_that_cannot_cover_the_kernel_is_refused():
    with pytest.raises(ValueError, match="cannot cover"):
        winograd.weight_transform(5, 4, 3)  # blocks of 3 taps every 4 leave gaps


def _conv_model(weight, bias=None, dilation=1, stride=1, batch_norm=None, same="pads", spatial=("H", "W")):
    k, c, size, _ = weight.shape
    pad = dilation * (size - 1) // 2
    attrs = {"dilations": [dilation] * 2, "strides": [stride] * 2}
    attrs.update({"pads": [pad] * 4} if same == "pads" else {"auto_pad": "SAME_UPPER"})
    inits = [numpy_helper.from_array(weight, "w")]
    inputs = ["x", "w"]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias, "b"))
        inputs.append("b")
    nodes = [helper.make_node("Conv", inputs, ["conv"], name="conv", **attrs)]
    if batch_norm is not None:
        for name, value in zip(("gamma", "beta", "mean", "var"), batch_norm):
            inits.append(numpy_helper.from_array(value, name))
        nodes.append(helper.make_node("BatchNormalization", ["conv", "gamma", "beta", "mean", "var"], ["bn"],
                                      epsilon=1e-3))
    nodes.append(helper.make_node("Relu", [nodes[-1].output[0]], ["y"]))
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, *spatial])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x, folder, name):
    path = folder / f"{name}.onnx"
    onnx.save(model, str(path))
    options = SessionOptions(provider="cpu", threads=2, fold_constants=False)
    return create_session(path, options).run(None, {"x": x})[0]


@pytest.mark.parametrize("size,channels,height,width,batch", [
    (3, (8, 8), 11, 7, 1), (5, (6, 8), 9, 13, 2), (7, (8, 5), 16, 15, 3), (9, (8, 8), 12, 12, 2), (9, (4, 4), 5, 3, 1)])
def test_rewritten_convolution_matches_onnxruntime_conv(tmp_path, size, channels, height, width, batch):
    k, c = channels
    rng = np.random.default_rng(size * 100 + height)
    weight = rng.standard_normal((k, c, size, size)).astype(np.float32)
    bias = rng.standard_normal(k).astype(np.float32)
    x = rng.standard_normal((batch, c, height, width)).astype(np.float32)
    direct = _run(_conv_model(weight, bias), x, tmp_path, "direct")
    model = _conv_model(weight, bias)
    assert winograd.rewrite(model, min_channels=1) == 1
    assert "Conv" not in [n.op_type for n in model.graph.node if n.name == "conv"]
    got = _run(model, x, tmp_path, "winograd")
    assert got.shape == direct.shape
    assert np.abs(got - direct).max() <= RELATIVE_TOLERANCE * np.abs(direct).max()


def test_batch_norm_is_folded_into_the_rewritten_convolution(tmp_path):
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    stats = (rng.uniform(0.5, 2, 8), rng.standard_normal(8), rng.standard_normal(8), rng.uniform(0.5, 2, 8))
    stats = tuple(s.astype(np.float32) for s in stats)
    x = rng.standard_normal((2, 8, 10, 10)).astype(np.float32)
    direct = _run(_conv_model(weight, batch_norm=stats, same="auto"), x, tmp_path, "direct")
    model = _conv_model(weight, batch_norm=stats, same="auto")
    assert winograd.rewrite(model, min_channels=1) == 1
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
    got = _run(model, x, tmp_path, "winograd")
    assert np.abs(got - direct).max() <= RELATIVE_TOLERANCE * np.abs(direct).max()


@pytest.mark.parametrize("kwargs,min_channels,max_input_channels", [
    ({"dilation": 2}, 1, 8), ({"stride": 2}, 1, 8), ({}, 9, 8), ({}, 1, 7)])
def test_dilated_strided_narrow_and_widest_convolutions_are_left_alone(kwargs, min_channels, max_input_channels):
    weight = np.ones((8, 8, 3, 3), np.float32)
    model = _conv_model(weight, **kwargs)
    before = model.SerializeToString()
    assert winograd.rewrite(model, min_channels, max_input_channels) == 0
    assert model.SerializeToString() == before


def test_min_pixels_leaves_convolutions_on_small_inputs_alone():
    """Only a size the graph fixes counts: a free size (JPP-Net's any H, W) is rewritten."""
    weight = np.ones((8, 8, 3, 3), np.float32)
    assert winograd.rewrite(_conv_model(weight, spatial=(16, 12)), 1, 8, min_pixels=16 * 12 + 1) == 0
    assert winograd.rewrite(_conv_model(weight, spatial=(16, 12)), 1, 8, min_pixels=16 * 12) == 1
    assert winograd.rewrite(_conv_model(weight), 1, 8, min_pixels=10**6) == 1


def test_the_file_keeps_one_copy_of_the_weights_and_sessions_do_not_precompute_u(tmp_path):
    """U is 4x larger than W for 3x3: neither the file nor ONNX Runtime's optimised copy
    may hold it, else memory grows by that much."""
    weight = np.random.default_rng(0).standard_normal((256, 256, 3, 3)).astype(np.float32)
    model = _conv_model(weight)
    winograd.rewrite(model, min_channels=1)
    sizes = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    assert sizes.pop("w") == weight.size
    shared = sum(v for name, v in sizes.items() if name.startswith("winograd/"))  # transforms, one per shape
    assert shared < weight.size
    assert max(v for name, v in sizes.items() if not name.startswith("winograd/")) < weight.size / 100  # no U
    path = tmp_path / "winograd.onnx"
    onnx.save(model, str(path))
    create_session(path, SessionOptions(provider="cpu", fold_constants=False))
    data = next((tmp_path / ".ort-cache").glob("*.onnx.data"))
    assert data.stat().st_size < 2 * weight.nbytes
