"""Batch-norm folding (export/batch_norm_folding.py), used by the Winograd and fp16 graphs."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import helper  # noqa: E402
from test_winograd import _conv_model, _run  # noqa: E402
from tryon.export.batch_norm_folding import fold_batch_norms  # noqa: E402


def _stats(rng, channels):
    return tuple(s.astype(np.float32) for s in (rng.uniform(0.5, 2, channels), rng.standard_normal(channels),
                                                rng.standard_normal(channels), rng.uniform(0.5, 2, channels)))


def test_folded_convolution_matches_and_the_batch_norm_parameters_are_gone(tmp_path):
    rng = np.random.default_rng(5)
    weight = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    x = rng.standard_normal((2, 4, 9, 7)).astype(np.float32)
    model = _conv_model(weight, bias=rng.standard_normal(6).astype(np.float32), batch_norm=_stats(rng, 6))
    expected = _run(model, x, tmp_path, "unfolded")
    assert fold_batch_norms(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv", "Relu"]
    assert not {"gamma", "beta", "mean", "var", "b"} & {t.name for t in model.graph.initializer}
    got = _run(model, x, tmp_path, "folded")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_a_weight_another_convolution_reads_is_not_scaled(tmp_path):
    rng = np.random.default_rng(6)
    model = _conv_model(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), batch_norm=_stats(rng, 4))
    # A second convolution on the same weights, summed into the output.
    model.graph.node.insert(0, helper.make_node("Conv", ["x", "w"], ["twin"], pads=[1, 1, 1, 1]))
    relu = model.graph.node[-1]
    relu.input[0] = "sum"
    model.graph.node.insert(len(model.graph.node) - 1, helper.make_node("Add", ["bn", "twin"], ["sum"]))
    before = model.SerializeToString()
    assert fold_batch_norms(model) == 0
    assert model.SerializeToString() == before
