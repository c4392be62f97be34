"""The CUDA provider, on a machine that has one (onnxruntime-gpu and a GPU); skipped elsewhere.

CI has no GPU, so these run only where a GPU is lent: the same tiny models as the CPU
tests, compared with the CPU provider's results.
"""
import json

import numpy as np
import pytest
from test_benchmark import bench, models_copy, read_record


@pytest.fixture(scope="module", autouse=True)
def needs_cuda():
    onnxruntime = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("no CUDA provider here (install tryon-onnx[gpu] on a machine with an NVIDIA GPU)")


def parse(models, viton_pair, **kwargs):
    from tryon.images import load_rgb
    from tryon.pipeline import TryOn

    tryon = TryOn.from_dir(models, scales=(1.0, 0.75), **kwargs)
    return tryon, tryon.parse_stage.run(load_rgb(viton_pair[0], "person"))


def test_fp32_on_cuda_matches_the_cpu(tiny_models_dir, viton_pair):
    tryon, on_gpu = parse(tiny_models_dir, viton_pair, provider="cuda")
    _, on_cpu = parse(tiny_models_dir, viton_pair, provider="cpu")
    assert tryon.cpvton.gmm.get_providers()[0] == "CUDAExecutionProvider"
    assert tryon.jppnet_graph == "jppnet"  # cuDNN picks its own algorithms; Winograd is the CPU's graph
    assert np.mean(on_gpu.labels == on_cpu.labels) >= 0.999
    assert np.array_equal(on_gpu.keypoints, on_cpu.keypoints)


def test_fp16_on_cuda_records_its_agreement_and_runs(tiny_models_dir, tmp_path, viton_pair):
    from tryon.export.quantize import quantize_jppnet

    folder = models_copy(tiny_models_dir, tmp_path / "models")
    entry = quantize_jppnet(folder, [viton_pair[0]], scales=(1.0,), mirror=True, precision="fp16")
    assert entry["agreement"]["provider"] == "cuda" and entry["agreement"]["label_agreement"] >= 0.99
    tryon, half = parse(folder, viton_pair, provider="cuda", precision="fp16")
    _, full = parse(folder, viton_pair, provider="cuda")
    assert tryon.jppnet_graph == "jppnet_fp16"
    assert np.mean(half.labels == full.labels) >= 0.99

    bench("--models", folder, "--provider", "cuda", "--precision", "fp16", "--scales", "1.0",
          "--no-reference", "--out", tmp_path / "bench")
    record = read_record(tmp_path / "bench")
    assert record["providers"][0] == "CUDAExecutionProvider" and record["jppnet_graph"] == "jppnet.fp16.onnx"
    assert record["gpu_memory_mb"] > 0
    assert record["fp16_agreement"] == json.loads((folder / "manifest.json").read_text())["models"]["jppnet_fp16"]["agreement"]
