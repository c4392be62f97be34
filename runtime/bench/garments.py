"""`tryon bench --garments N`: what parsing a person once saves when one shopper tries N garments.

One person, N garments, timed three ways in one run:
- reparse: N independent predicts, each parsing the photo again (what a one-call API costs);
- parse_once: one parse, then one dress over the N garments (GMM/TOM in batches);
- the TF + PyTorch reference doing the N pairs as the original code did (in a child process,
  `benchmarks/reference.py --garments N`; the reference's side is `reparse` alone).
"""
from __future__ import annotations

from dataclasses import asdict

import numpy as np

from ..errors import InputError
from ..images import load_rgb
from ..options import ParseOptions
from ..timing import Timer
from .latency import BenchSettings, machine, peak_rss_mb, summarize

# As in `tryon bench`: resize instead of the pose crop, which untrained weights' pose refuses.
OPTIONS = ParseOptions(need_pre=False)
WAYS = ("reparse", "parse_once")


def garment_variants(cloth, count: int) -> list[np.ndarray]:
    """`count` different garments made from one photo (hue turned, mirrored), so that no
    layer of the pipeline could take one for another."""
    rgb = load_rgb(cloth, "garment photo")
    variants = []
    for k in range(count):
        turned = np.roll(rgb, k % 3, axis=2)
        variants.append(np.ascontiguousarray(turned[:, ::-1] if k % 2 else turned) ^ np.uint8(k // 6))
    return variants


def compare_outputs(reparsed: list, dressed: list) -> dict:
    """How far parse once + dress lands from N predicts: GMM/TOM run batched in one and one at a
    time in the other, which may move a pixel by one uint8 step (ONNX Runtime's batched
    convolutions sum in another order); anything more would be a bug."""
    steps = [np.abs(a.image.astype(np.int16) - b.image.astype(np.int16)) for a, b in zip(reparsed, dressed)]
    return {"images": len(steps),
            "byte_identical": sum(not step.any() for step in steps),
            "max_uint8_step": int(max(step.max() for step in steps)),
            "pixels_moved": float(np.mean([step.any(axis=-1).mean() for step in steps])),
            "confidence_equal": all(a.confidence == b.confidence for a, b in zip(reparsed, dressed))}


def time_garments(tryon, person, cloth, settings: BenchSettings, count: int, ways=WAYS):
    """Milliseconds per run of each way, plus the parse and dress parts of parse_once; and the
    last run's results of each way."""
    garments = garment_variants(cloth, count)
    for _ in range(settings.warmup):
        tryon.predict_batch([(person, garments[0])], OPTIONS)
    samples: dict[str, list[float]] = {}
    results: dict[str, list] = {}
    for _ in range(settings.runs):
        timer = Timer()
        if "reparse" in ways:
            with timer("reparse"):
                results["reparse"] = [tryon.predict_batch([(person, garment)], OPTIONS)[0]
                                      for garment in garments]
        if "parse_once" in ways:
            with timer("parse_once"):
                with timer("parse"):
                    parsed = tryon.parse(person, OPTIONS)
                with timer("dress"):
                    results["parse_once"] = tryon.dress(parsed, garments)
        for name, ms in timer.ms.items():
            samples.setdefault(name, []).append(ms)
    return samples, results


def run_garments_benchmark(tryon_factory, settings: BenchSettings, person, cloth, count: int,
                           ways=WAYS) -> dict:
    if count < 1:
        raise InputError(f"--garments must be >= 1, got {count}")
    tryon = tryon_factory(settings)
    if tryon.store is not None:
        raise InputError("the garments benchmark times parsing: give it a TryOn without a person store")
    samples, results = time_garments(tryon, person, cloth, settings, count, ways)
    described = tryon.describe()
    record = {"settings": asdict(settings), "garments": count, "machine": machine(),
              "providers": described["providers"], "jppnet_graph": described.get("jppnet_graph"),
              "cpvton_graphs": [graph.file for stage, graph in tryon.graphs().items() if stage != "parse"],
              "synthetic_weights": tryon.synthetic, "peak_rss_mb": peak_rss_mb(),
              "ways": {name: summarize(values) for name, values in samples.items()}}
    if "parse_once" in samples:
        ways_ms = record["ways"]
        record["ms_per_extra_garment"] = ways_ms["dress"]["median_ms"] / count
        if "reparse" in samples:
            record["speedup_vs_reparse"] = ways_ms["reparse"]["median_ms"] / ways_ms["parse_once"]["median_ms"]
            record["outputs_vs_reparse"] = compare_outputs(results["reparse"], results["parse_once"])
    return record


def add_reference(record: dict, reference: dict) -> dict:
    """The reference's N pairs against our parse-once run."""
    record["reference"] = reference
    record["speedup_vs_reference"] = (reference["ways"]["reparse"]["median_ms"]
                                      / record["ways"]["parse_once"]["median_ms"])
    return record


def format_garments(record: dict) -> str:
    count, ways = record["garments"], record["ways"]
    rows = [f"one person, {count} garments ({record['settings']['runs']} runs, medians):"]
    labels = {"reparse": f"{count} predicts, each parsing again", "parse_once": "parse once + dress all",
              "parse": "  of which the parse", "dress": f"  of which the dress ({count} garments)"}
    for name, label in labels.items():
        if name in ways:
            rows.append(f"  {label:<36}{ways[name]['median_ms']:>11.1f} ms")
    if "reference" in record:
        rows.append(f"  {'TF + PyTorch reference, ' + str(count) + ' pairs':<36}"
                    f"{record['reference']['ways']['reparse']['median_ms']:>11.1f} ms")
    for key, text in (("ms_per_extra_garment", "an extra garment: {:.1f} ms"),
                      ("speedup_vs_reparse", "parse once vs reparse: {:.1f}x"),
                      ("speedup_vs_reference", "parse once vs the reference: {:.1f}x")):
        if key in record:
            rows.append("  " + text.format(record[key]))
    if "outputs_vs_reparse" in record:
        same = record["outputs_vs_reparse"]
        rows.append(f"  outputs: {same['byte_identical']} of {same['images']} images byte-identical to the "
                    f"predicts', the rest within {same['max_uint8_step']} uint8 step "
                    f"on {100 * same['pixels_moved']:.1f}% of pixels")
    return "\n".join(rows)
