"""tryon bench --garments: one person in N garments, three ways; the record has its shape and
each way runs JPP-Net as often as it claims. No timing is asserted."""
import json

import numpy as np
import pytest
from test_benchmark import bench
from tryon.bench.garments import garment_variants
from tryon.examples import EXAMPLE_GARMENT
from tryon.stages.parse import ParseStage


def test_bench_garments_times_reparse_parse_once_and_the_reference(tiny_models_dir, tmp_path, monkeypatch):
    pytest.importorskip("tensorflow")
    runs = []
    original = ParseStage.run
    monkeypatch.setattr(ParseStage, "run", lambda self, rgb: runs.append(1) or original(self, rgb))
    done = bench("--models", tiny_models_dir, "--scales", "1.0", "--no-mirror", "--garments", 3, "--out", tmp_path)
    # 1 warm-up predict, then per run: 3 predicts each parsing again, and 1 parse for the 3 garments.
    assert len(runs) == 1 + 2 * (3 + 1)
    (path,) = tmp_path.glob("bench-garments3-*.json")
    record = json.loads(path.read_text())
    assert record["garments"] == 3 and record["synthetic_weights"] is True
    # The dress path: GMM's halves (the person's once per batch) and, on the CPU, the Winograd TOM.
    assert record["cpvton_graphs"] == ["gmm_person.onnx", "gmm_garment.onnx", "tom.winograd.onnx"]
    for way in ("reparse", "parse_once", "parse", "dress"):
        assert record["ways"][way]["runs"] == 2 and record["ways"][way]["median_ms"] > 0
    assert record["ms_per_extra_garment"] == pytest.approx(record["ways"]["dress"]["median_ms"] / 3)
    assert record["speedup_vs_reparse"] > 0 and record["speedup_vs_reference"] > 0
    # The batched dress lands where the predicts do, give or take one uint8 step (see compare_outputs).
    same = record["outputs_vs_reparse"]
    assert same["images"] == 3 and same["confidence_equal"] and same["max_uint8_step"] <= 1
    assert "byte-identical to the predicts" in done.output
    assert set(record["reference"]["ways"]) == {"reparse"} and record["reference"]["garments"] == 3
    assert "parse once vs reparse" in done.output and "TF + PyTorch reference, 3 pairs" in done.output


def test_garment_variants_are_all_different():
    variants = garment_variants(EXAMPLE_GARMENT, 10)
    assert len({v.tobytes() for v in variants}) == 10 and all(v.shape == variants[0].shape for v in variants)


def test_compare_outputs_counts_identical_images_and_the_largest_step():
    from types import SimpleNamespace

    from tryon.bench.garments import compare_outputs
    image = np.zeros((4, 4, 3), np.uint8)
    moved = image.copy()
    moved[0, 0, 1] = 2  # one pixel of 16, two steps
    result = lambda img, c=0.5: SimpleNamespace(image=img, confidence=c)
    same = compare_outputs([result(image), result(image)], [result(image), result(moved, 0.4)])
    assert same == {"images": 2, "byte_identical": 1, "max_uint8_step": 2,
                    "pixels_moved": pytest.approx((0 + 1 / 16) / 2), "confidence_equal": False}
