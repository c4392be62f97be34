"""bf16 JPP-Net on ONNX Runtime's OpenVINO execution provider, and `tryon bench --baseline`.

The refusals and the bench baseline run everywhere. What needs the provider and a CPU
with bf16 instructions runs where both exist and skips elsewhere, saying how to get them:
`make test-openvino` builds a venv with onnxruntime-openvino (which replaces onnxruntime)
and runs this file there; CI runs it after `make test`.
"""
import json

import numpy as np
import pytest
from test_benchmark import bench, check_stages, int8_models_dir, models_copy, read_record  # noqa: F401
from test_cli import tryon
from tryon.errors import RuntimeSetupError
from tryon.models import session as sessions
from tryon.models.session import OPENVINO, SessionOptions, providers_in_use


def _why_no_bf16() -> str:
    try:
        sessions.check_openvino_bf16("cpu")
    except RuntimeSetupError as exc:
        return str(exc)
    return ""


needs_openvino_bf16 = pytest.mark.skipif(
    bool(_why_no_bf16()),
    reason=f"{_why_no_bf16()} (`make test-openvino` builds such an environment and runs this file in it)")


def test_bf16_is_refused_on_a_cpu_without_bf16_instructions(tiny_models_dir, tmp_path, viton_pair, monkeypatch):
    from tryon.export.quantize import quantize_jppnet
    from tryon.pipeline import TryOn

    monkeypatch.setattr(sessions, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_vnni"})
    with pytest.raises(RuntimeSetupError, match=r"bf16 instructions \(avx512_bf16 or amx_bf16 in /proc/cpuinfo\)"):
        TryOn.from_dir(tiny_models_dir, provider="cpu", precision="bf16")
    folder = models_copy(tiny_models_dir, tmp_path / "models")
    with pytest.raises(RuntimeSetupError, match="avx512_bf16 or amx_bf16"):
        quantize_jppnet(folder, [viton_pair[0]], precision="bf16")
    assert "jppnet_bf16" not in json.loads((folder / "manifest.json").read_text())["models"]


def test_bf16_without_the_openvino_provider_names_the_extra(tiny_models_dir, monkeypatch):
    import onnxruntime
    from tryon.pipeline import TryOn

    monkeypatch.setattr(sessions, "cpu_flags", lambda: {"avx512_bf16"})
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(RuntimeSetupError, match=r"OpenVINOExecutionProvider.*install 'tryon-onnx\[openvino\]'"):
        TryOn.from_dir(tiny_models_dir, provider="cpu", precision="bf16")
    with pytest.raises(RuntimeSetupError, match=r"tryon-onnx\[openvino\]"):
        sessions.create_session(tiny_models_dir / "gmm.onnx", SessionOptions(provider="cpu", openvino_bf16=True))


def test_bf16_is_refused_on_cuda(tiny_models_dir, monkeypatch):
    from tryon.models.graphs import open_jppnet
    from tryon.models.model_dir import ModelDir

    monkeypatch.setattr(sessions, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    for provider in ("cuda", "auto"):  # auto means CUDA where there is one
        with pytest.raises(ValueError, match="bf16 is for the CPU.*--provider cpu.*fp16 on CUDA"):
            open_jppnet(ModelDir.open(tiny_models_dir), SessionOptions(provider=provider), "bf16")


def test_the_cli_refuses_bf16_in_one_line_with_what_to_do(tiny_models_dir, viton_pair, tmp_path):
    done = tryon("run", *viton_pair, "-o", tmp_path / "o.png", "--models", tiny_models_dir,
                 "--provider", "cpu", "--precision", "bf16")
    if _why_no_bf16():
        assert done.returncode == 5 and _why_no_bf16() in done.stderr
    else:  # it could run here: what is missing is the manifest entry
        assert done.returncode == 3 and "`tryon quantize --precision bf16 PHOTO ...` first" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "o.png").exists()


def test_bench_times_a_baseline_run_for_run_in_the_same_process(int8_models_dir, tmp_path):  # noqa: F811
    bench("--models", int8_models_dir, "--precision", "int8", "--baseline", "fp32", "--scales", "1.0",
          "--no-reference", "--out", tmp_path)
    record = read_record(tmp_path)
    check_stages(record["stages"])
    check_stages(record["baseline"]["stages"])
    assert record["jppnet_graph"] == "jppnet.int8.onnx" and record["baseline"]["precision"] == "fp32"
    assert record["baseline"]["jppnet_graph"] == "jppnet.winograd.onnx"
    ratios = record["speedup_vs_baseline"]["stages"]
    assert ratios["total"] == pytest.approx(
        record["baseline"]["stages"]["total"]["median_ms"] / record["stages"]["total"]["median_ms"])
    assert record["speedup_vs_baseline"]["end_to_end"] == ratios["total"] and ratios["parse"] > 0


@pytest.fixture(scope="module")
def bf16_models_dir(tiny_models_dir, tmp_path_factory, viton_pair):
    if _why_no_bf16():
        pytest.skip(_why_no_bf16())
    folder = models_copy(tiny_models_dir, tmp_path_factory.mktemp("bf16") / "models")
    done = tryon("quantize", "--precision", "bf16", "--scales", "1.0", "--models", folder, viton_pair[0])
    assert done.returncode == 0, done.stderr
    assert f"recorded bf16 in {folder / 'manifest.json'}: jppnet.onnx on {OPENVINO}" in done.stdout
    return folder


@needs_openvino_bf16
def test_bf16_is_recorded_as_the_plain_graph_on_openvino_without_a_new_file(bf16_models_dir, tiny_models_dir):
    entry = json.loads((bf16_models_dir / "manifest.json").read_text())["models"]["jppnet_bf16"]
    assert entry["file"] == "jppnet.onnx" and entry["precision"] == "bf16"
    assert entry["sha256"] == json.loads((tiny_models_dir / "manifest.json").read_text())["models"]["jppnet"]["sha256"]
    provider = entry["execution_provider"]
    assert provider["name"] == OPENVINO and provider["options"]["device_type"] == "CPU"
    assert json.loads(provider["options"]["load_config"])["CPU"]["INFERENCE_PRECISION_HINT"] == "bf16"
    agreement = entry["agreement"]
    assert agreement["jppnet_providers"] == [OPENVINO] and agreement["calibrated_on_these_photos"] is False
    assert 0.9 <= agreement["label_agreement"] <= 1
    graphs = [sorted(p.name for p in folder.glob("*.onnx")) for folder in (bf16_models_dir, tiny_models_dir)]
    assert graphs[0] == graphs[1]  # no new file


@needs_openvino_bf16
def test_bf16_runs_jppnet_on_openvino_in_bf16(bf16_models_dir, viton_pair):
    from tryon.images import load_rgb
    from tryon.pipeline import TryOn
    from tryon.stages.parse import photo_batch

    bf16 = TryOn.from_dir(bf16_models_dir, provider="cpu", precision="bf16", scales=(1.0,))
    fp32 = TryOn.from_dir(bf16_models_dir, provider="cpu", scales=(1.0,))
    assert bf16.jppnet_graph == "jppnet_bf16" and providers_in_use(bf16.parse_stage.session) == [OPENVINO]
    assert providers_in_use(bf16.cpvton.gmm) == ["CPUExecutionProvider"]  # GMM/TOM: bf16 did not help them
    rgb = load_rgb(viton_pair[0])
    assert np.mean(bf16.parse_stage.run(rgb).labels == fp32.parse_stage.run(rgb).labels) >= 0.9
    # bf16 really is on: float32 on any provider moves the logits by ~1e-6 of their range,
    # bf16's 8-bit mantissa by far more.
    batch = {"image": photo_batch(rgb, 384, mirror=True)}
    low, full = (t.parse_stage.session.run(["parsing"], batch)[0] for t in (bf16, fp32))
    assert np.abs(low - full).max() > 1e-3 * np.abs(full).max()


@needs_openvino_bf16
def test_bench_times_bf16_against_fp32_in_one_record(bf16_models_dir, tmp_path):
    bench("--models", bf16_models_dir, "--precision", "bf16", "--baseline", "fp32", "--scales", "1.0",
          "--no-reference", "--out", tmp_path)
    record = read_record(tmp_path)
    check_stages(record["stages"])
    assert record["providers"] == [OPENVINO, "CPUExecutionProvider"] and record["jppnet_graph"] == "jppnet.onnx"
    assert record["baseline"]["providers"] == ["CPUExecutionProvider"]
    assert record["baseline"]["jppnet_graph"] == "jppnet.winograd.onnx"
    entry = json.loads((bf16_models_dir / "manifest.json").read_text())["models"]["jppnet_bf16"]
    assert record["bf16_agreement"] == entry["agreement"] and record["speedup_vs_baseline"]["end_to_end"] > 0


@needs_openvino_bf16
def test_info_says_bf16_runs_on_openvino(bf16_models_dir):
    done = tryon("info", "--models", bf16_models_dir, "--provider", "cpu")
    assert done.returncode == 0, done.stderr
    agreement = json.loads((bf16_models_dir / "manifest.json").read_text())["models"]["jppnet_bf16"]["agreement"]
    assert (f"--precision bf16: jppnet.onnx in bf16 on {OPENVINO}; labels {agreement['label_agreement']:.2%} "
            f"equal to fp32 on 1 photos (measured on {OPENVINO})") in done.stdout


def test_the_provider_screen_writes_a_record(tiny_models_dir, tmp_path):
    """benchmarks/jppnet_providers.py: ONNX Runtime's two graphs everywhere, OpenVINO's f32 and
    bf16 where the provider is installed; the Winograd graph and OpenVINO f32 give fp32's labels."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "jppnet_providers.py"
    spec = importlib.util.spec_from_file_location("jppnet_providers", path)
    screen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(screen)
    screen.main(["--models", str(tiny_models_dir), "--side", "64", "--runs", "1", "--out", str(tmp_path)])
    record = json.loads(next(tmp_path.glob("jppnet-providers-64-*.json")).read_text())
    results = record["results"]
    expected = {"ort_cpu_plain", "ort_cpu_winograd"}
    if OPENVINO in sessions.import_onnxruntime().get_available_providers():
        expected |= {"openvino_f32_plain", "openvino_bf16_plain"}
    assert set(results) == expected and results["ort_cpu_plain"]["relative"] == 1.0
    assert results["ort_cpu_winograd"]["labels_equal"] > 0.99
    assert all(row["median_ms"] > 0 for row in results.values())
    if "openvino_f32_plain" in results:
        assert results["openvino_f32_plain"]["labels_equal"] > 0.99
