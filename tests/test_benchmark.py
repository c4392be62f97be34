"""tryon bench and the int8 export on the tiny models: the records have their shape.

No timing is asserted anywhere: speed targets live in the printed benchmark figures.
"""
import json
from pathlib import Path

import cv2
import pytest
import typer
from typer.testing import CliRunner

from tryon.runtime.cli import bench_cmd

STAGES = ("decode", "parse", "crop", "cpvton.agnostic", "cpvton.gmm", "cpvton.tom", "cpvton.composite", "total")


def bench(*args):
    app = typer.Typer()
    bench_cmd.register(app)
    app.callback()(lambda: None)  # keeps `bench` a named verb, as in the real CLI
    done = CliRunner().invoke(app, ["bench", "--runs", "2", "--warmup", "1", "--provider", "cpu", *map(str, args)])
    assert done.exit_code == 0, done.output + repr(done.exception)
    return done


def read_record(out_dir):
    (json_path,) = out_dir.glob("*.json")
    (chart_path,) = out_dir.glob("*.png")
    chart = cv2.imread(str(chart_path))
    assert chart is not None and chart.shape[0] > 100
    return json.loads(json_path.read_text())


def check_stages(stages):
    for name in STAGES:
        assert stages[name]["median_ms"] > 0, name
        assert stages[name]["p90_ms"] >= stages[name]["median_ms"], name
        assert stages[name]["runs"] == 2


def test_bench_against_the_reference(tiny_models_dir, tmp_path):
    pytest.importorskip("tensorflow")
    done = bench("--models", tiny_models_dir, "--scales", "1.0,0.75", "--out", tmp_path)
    record = read_record(tmp_path)
    check_stages(record["stages"])
    check_stages(record["reference"]["stages"])
    assert record["speedup_vs_reference"]["end_to_end"] > 0
    assert set(record["speedup_vs_reference"]["stages"]) >= {"parse", "cpvton.gmm", "cpvton.tom", "total"}
    assert record["settings"]["scales"] == [1.0, 0.75] and record["settings"]["mirror"] is True
    assert record["peak_rss_mb"]["after_runs"] > 0 and record["load_ms"] > 0
    assert set(record["model_mb"]) >= {"jppnet", "jppnet_winograd", "gmm", "tom"}
    assert record["jppnet_graph"] == "jppnet.winograd.onnx"  # what fp32 runs on the CPU
    assert record["sgemm_gflops"] > 0 and record["gflops_achieved"]["cpvton.tom"] > 0
    assert "parse" not in record["gflop"]  # the reduced JPP-Net has no published FLOP count
    assert record["machine"]["versions"]["onnxruntime"]
    assert record["synthetic_weights"] is True
    assert "speedup" in done.output and "cpvton.gmm" in done.output


@pytest.fixture
def int8_models_dir(tiny_models_dir, tmp_path, viton_pair):
    """A copy of the tiny models (the session's folder stays fp32-only) with jppnet.int8.onnx."""
    from tryon.export.quantize import quantize_jppnet

    folder = tmp_path / "models"
    folder.mkdir()
    for path in filter(Path.is_file, tiny_models_dir.iterdir()):
        (folder / path.name).symlink_to(path) if path.suffix == ".onnx" else (folder / path.name).write_bytes(path.read_bytes())
    quantize_jppnet(folder, [viton_pair[0]], scales=(1.0,), mirror=True)
    return folder


def test_int8_quantize_records_agreement_and_bench_uses_it(int8_models_dir, tmp_path):
    import onnxruntime

    entry = json.loads((int8_models_dir / "manifest.json").read_text())["models"]["jppnet_int8"]
    session = onnxruntime.InferenceSession(str(int8_models_dir / entry["file"]), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["parsing", "pose"]
    assert any(n.op_type == "DequantizeLinear" for n in _nodes(int8_models_dir / entry["file"]))
    agreement = entry["agreement"]
    assert 0 <= agreement["label_agreement"] <= 1 and agreement["photos"] == 1
    assert {"keypoint_px_median", "tryon_mean_abs_diff_u8"} <= set(agreement)

    bench("--models", int8_models_dir, "--precision", "int8", "--scales", "1.0", "--no-reference", "--out", tmp_path)
    record = read_record(tmp_path)
    check_stages(record["stages"])
    assert record["settings"]["precision"] == "int8"
    assert record["int8_agreement"] == agreement and record["jppnet_graph"] == "jppnet.int8.onnx"
    assert "reference" not in record


def _nodes(path):
    import onnx

    return onnx.load(str(path)).graph.node
