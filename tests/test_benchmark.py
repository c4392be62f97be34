"""tryon bench and the int8 / fp16 JPP-Nets on the tiny models: the records have their shape.

No timing is asserted anywhere: speed targets live in the printed benchmark figures.
"""
import json
from pathlib import Path

import cv2
import pytest
import typer
from tryon.cli import bench_cmd
from tryon.cpu import vector_extensions
from typer.testing import CliRunner

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
    assert record["machine"]["vector_extensions"] == vector_extensions()
    assert record["synthetic_weights"] is True
    assert "speedup" in done.output and "cpvton.gmm" in done.output


def models_copy(tiny_models_dir, folder):
    """The tiny models linked into `folder` with their own manifest: the session's folder stays fp32-only."""
    folder.mkdir()
    for path in filter(Path.is_file, tiny_models_dir.iterdir()):
        (folder / path.name).symlink_to(path) if path.suffix == ".onnx" else (folder / path.name).write_bytes(path.read_bytes())
    return folder


@pytest.fixture
def int8_models_dir(tiny_models_dir, tmp_path, viton_pair):
    from tryon.export.quantize import quantize_jppnet

    folder = models_copy(tiny_models_dir, tmp_path / "models")
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


def test_int8_weights_use_7_bits_so_cpus_without_vnni_cannot_saturate(int8_models_dir):
    """Without VNNI, ONNX Runtime's u8s8 kernels add pairs of u8*s8 products in 16 bits with
    saturation: weights within -64..64 keep 2*255*64 below 32767, so no sum saturates."""
    import numpy as np
    import onnx
    from onnx import numpy_helper
    from tryon.cpu import describe_cpu, vector_extensions

    entry = json.loads((int8_models_dir / "manifest.json").read_text())["models"]["jppnet_int8"]
    model = onnx.load(str(int8_models_dir / entry["file"]))
    initializers = {t.name: t for t in model.graph.initializer}
    weights = [initializers[n.input[0]] for n in model.graph.node
               if n.op_type == "DequantizeLinear" and n.input[0] in initializers
               and initializers[n.input[0]].data_type == onnx.TensorProto.INT8]
    assert len(weights) >= 10  # every convolution's weights
    for tensor in weights:
        values = numpy_helper.to_array(tensor).astype(np.int16)
        assert -64 <= values.min() and values.max() <= 64, tensor.name
    assert entry["quantization"]["reduce_range"] is True and "7-bit" in entry["quantization"]["weights"]
    assert entry["agreement"]["cpu"] == describe_cpu()
    assert entry["agreement"]["vector_extensions"] == vector_extensions()


def test_an_old_8_bit_int8_graph_warns_on_a_cpu_without_vnni(int8_models_dir, monkeypatch):
    import warnings

    from tryon import cpu
    from tryon.models.graphs import open_jppnet
    from tryon.models.model_dir import ModelDir
    from tryon.models.session import SessionOptions

    monkeypatch.setattr(cpu, "has_vnni", lambda: False)
    options = SessionOptions(provider="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the 7-bit graph this `tryon quantize` writes: no warning
        assert open_jppnet(ModelDir.open(int8_models_dir), options, "int8")[0] == "jppnet_int8"

    manifest_path = int8_models_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    method = manifest["models"]["jppnet_int8"]["quantization"]
    del method["reduce_range"]
    method["weights"] = "s8 per-channel"  # as an older `tryon quantize` recorded it
    manifest_path.write_text(json.dumps(manifest))
    with pytest.warns(RuntimeWarning, match=r"may saturate.*re-run `tryon quantize") as caught:
        open_jppnet(ModelDir.open(int8_models_dir), options, "int8")
    assert len(caught) == 1

    monkeypatch.setattr(cpu, "has_vnni", lambda: True)  # with VNNI the 8-bit graph cannot saturate
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_jppnet(ModelDir.open(int8_models_dir), options, "int8")


def test_fp16_jppnet_is_folded_half_precision_and_agrees_with_fp32(tiny_models_dir, tmp_path, viton_pair):
    import onnx
    from tryon.export.quantize import agreement_provider, quantize_jppnet

    folder = models_copy(tiny_models_dir, tmp_path / "models")
    entry = quantize_jppnet(folder, [viton_pair[0]], scales=(1.0,), mirror=True, precision="fp16")
    assert entry["file"] == "jppnet.fp16.onnx" and entry["precision"] == "fp16"
    model = onnx.load(str(folder / entry["file"]))
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops  # folded in float64 before rounding
    weights = [t for t in model.graph.initializer if len(t.dims) == 4]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    # The parse stage feeds it as it feeds fp32.
    assert [i.type.tensor_type.elem_type for i in (*model.graph.input, *model.graph.output)] == [onnx.TensorProto.FLOAT] * 3
    agreement = json.loads((folder / "manifest.json").read_text())["models"]["jppnet_fp16"]["agreement"]
    assert agreement["provider"] == agreement_provider("fp16") and agreement["calibrated_on_these_photos"] is False
    # fp16 rounds each activation to 11 bits: labels move only where fp32 nearly ties.
    # (The try-on difference is recorded but not bounded: the untrained GMM moves the whole
    # garment when a few dozen label pixels change.)
    assert agreement["label_agreement"] >= 0.99 and agreement["keypoint_px_median"] <= 1

    from tryon.cli import app

    info = CliRunner().invoke(app, ["info", "--models", str(folder), "--provider", "cpu"]).output
    assert f"--precision fp16: jppnet.fp16.onnx; labels {agreement['label_agreement']:.2%} equal to fp32" in info


def test_fp16_is_refused_on_the_cpu_and_a_missing_fast_mode_says_how_to_make_it(tiny_models_dir):
    from tryon.errors import ModelsMissingError
    from tryon.pipeline import TryOn

    with pytest.raises(ValueError, match="fp16 is for the CUDA provider.*--precision int8"):
        TryOn.from_dir(tiny_models_dir, provider="cpu", precision="fp16")
    with pytest.raises(ModelsMissingError, match=r"no int8 JPP-Net: run `tryon quantize --precision int8"):
        TryOn.from_dir(tiny_models_dir, provider="cpu", precision="int8")


def test_quantize_rejects_bad_precision_and_photos_before_any_work(tiny_models_dir, tmp_path, viton_pair):
    from tryon.export.quantize import quantize_jppnet
    from tryon.images import ImageError

    folder = models_copy(tiny_models_dir, tmp_path / "models")
    with pytest.raises(ValueError, match="precision 'fp8' is not one of int8, fp16"):
        quantize_jppnet(folder, [viton_pair[0]], precision="fp8")
    with pytest.raises(ValueError, match="needs real photos"):
        quantize_jppnet(folder, [], precision="fp16")
    with pytest.raises(ImageError, match="no such file"):
        quantize_jppnet(folder, [viton_pair[0], tmp_path / "missing.jpg"], precision="int8")
    assert not list(folder.glob("jppnet.*8*.onnx")) and not list(folder.glob("jppnet.fp16*"))


def test_calibration_runs_one_image_at_a_time_and_sees_what_the_parse_stage_runs(viton_pair):
    import numpy as np
    from tryon.export.quantize import PhotoBatches
    from tryon.images import load_rgb
    from tryon.stages.parse import photo_batch

    reader = PhotoBatches([viton_pair[0]], (1.0, 0.5), mirror=True)
    assert len(reader) == 4
    images = [reader.get_next()["image"] for _ in range(4)]
    assert reader.get_next() is None and {i.shape[0] for i in images} == {1}
    photo = load_rgb(viton_pair[0])
    for pair, side in zip((images[:2], images[2:]), (384, 192)):
        np.testing.assert_array_equal(np.concatenate(pair), photo_batch(photo, side, mirror=True))
    reader.set_range(1, 2)  # the window strided calibration asks for
    np.testing.assert_array_equal(reader.get_next()["image"], images[1])
    assert reader.get_next() is None


def test_quantize_needs_neither_tensorflow_nor_torch(tiny_models_dir, tmp_path, viton_pair):
    """The fast modes are onnx + onnxruntime work: `tryon quantize` runs with both blocked."""
    import subprocess
    import sys

    from test_runtime_isolation import BLOCK_FRAMEWORKS

    folder = models_copy(tiny_models_dir, tmp_path / "models")
    cli = BLOCK_FRAMEWORKS + "from tryon.cli import app\napp()\n"
    done = subprocess.run([sys.executable, "-c", cli, "quantize", "--precision", "fp16", "--scales", "1.0",
                           "--no-mirror", "--models", str(folder), str(viton_pair[0])], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "wrote" in done.stdout and (folder / "jppnet.fp16.onnx").is_file()


def test_a_missing_export_module_is_named_with_the_extra_to_install(capsys):
    from tryon.cli.errors import require_export_side
    from tryon.errors import EXIT_ENVIRONMENT

    with pytest.raises(typer.Exit) as stop:
        require_export_side(("onnx", "no_such_module_here"))
    assert stop.value.exit_code == EXIT_ENVIRONMENT
    assert "needs the export extra (no_such_module_here missing)" in capsys.readouterr().err
