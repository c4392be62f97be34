"""The framework reference: the same pipeline with JPP-Net in TensorFlow and GMM/TOM in eager
PyTorch, on the checkpoints the ONNX models were exported from.

It is what a user of the original code gets: JPP-Net as one TF1 graph doing the resizes,
the scales, the mirror and the merge (LIP_JPPNet's evaluate scripts, as GrayXu's frozen
graph runs them), and CP-VTON's GMM with its original 5-D TPS grid generator. The host
steps (decode, crop, agnostic, composite) are the runtime's own, so every ratio compares
only what the frameworks do.

Run by `tryon bench --reference` in a separate process, so that TensorFlow's and torch's
memory never reaches the runtime's figures:

    python benchmarks/reference.py --models DIR --person P --cloth C --out record.json ...

Needs the export extra (tensorflow-cpu, torch).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import torch
from tryon.bench.garments import run_garments_benchmark
from tryon.bench.latency import BenchSettings, run_benchmark
from tryon.export.cpvton_checkpoint import load_network
from tryon.export.cpvton_export import reference_gmm
from tryon.export.cpvton_networks import tom_outputs
from tryon.export.jppnet_checkpoint import load_weights
from tryon.export.jppnet_graph import CONFIGS, constant_weights
from tryon.export.jppnet_reference import build_reference, keypoints_of
from tryon.models.model_dir import ModelDir
from tryon.pipeline import TryOn
from tryon.stages.agnostic import family_constants
from tryon.stages.cpvton import CpvtonStage
from tryon.stages.parse import ParseResult, PoseHeatmaps, check_photo, photo_to_bgr, pose_confidence


class TfParseStage:
    """ParseStage's interface over LIP_JPPNet's whole inference graph in TensorFlow."""

    def __init__(self, weights, config, scales, mirror: bool, threads: int):
        graph = tf.Graph()
        with graph.as_default():
            self.image = tf.compat.v1.placeholder(tf.float32, [None, None, 3])
            with constant_weights(weights):
                self.outputs = build_reference(self.image, config, scales, mirror)
        session_config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads,
                                                  inter_op_parallelism_threads=threads)
        self.session = tf.compat.v1.Session(graph=graph, config=session_config)

    def identity(self) -> str:
        return "tensorflow reference"

    def run(self, rgb: np.ndarray) -> ParseResult:
        start = time.perf_counter()
        bgr = photo_to_bgr(check_photo(rgb))
        timings = {"preprocess": _ms_since(start)}
        start = time.perf_counter()
        heatmaps, labels = self.session.run(self.outputs, {self.image: bgr})
        timings["tensorflow"] = _ms_since(start)
        start = time.perf_counter()
        keypoints = keypoints_of(heatmaps)
        heatmaps = PoseHeatmaps.from_array(heatmaps)
        confidence = pose_confidence(heatmaps, keypoints)
        timings["merge"] = _ms_since(start)
        return ParseResult(labels.astype(np.uint8), keypoints, heatmaps, confidence, timings)


class TorchSession:
    """Enough of an onnxruntime session (run, get_inputs, get_providers) for CpvtonStage,
    running the eager torch network instead."""

    def __init__(self, forward, input_shapes: dict[str, list], output_names):
        self.forward = forward
        self.input_shapes = input_shapes
        self.output_names = output_names

    def get_inputs(self):
        return [argparse.Namespace(name=n, shape=s) for n, s in self.input_shapes.items()]

    def get_providers(self):
        return ["torch eager", "tensorflow"]

    def run(self, names, feeds):
        with torch.inference_mode():
            outs = self.forward(*(torch.from_numpy(feeds[n]) for n in self.input_shapes))
        by_name = dict(zip(self.output_names, outs))
        return [by_name[n].numpy() for n in names]


def torch_cpvton(gmm_path, tom_path) -> CpvtonStage:
    gmm, family = load_network(gmm_path, "gmm")
    tom, _ = load_network(tom_path, "tom")
    channels = family_constants(family).channels
    gmm_session = TorchSession(lambda a, c: reference_gmm(gmm, a, c),
                               {"agnostic": ["N", channels, 256, 192], "cloth": ["N", 3, 256, 192]},
                               ("theta", "grid", "warped_cloth"))
    tom_session = TorchSession(lambda a, w: tom_outputs(tom, a, w),
                               {"agnostic": ["N", channels, 256, 192], "warped_cloth": ["N", 3, 256, 192]},
                               ("rendered", "mask", "tryon"))
    return CpvtonStage(gmm_session, tom_session, family)


def reference_tryon(settings: BenchSettings) -> TryOn:
    models = ModelDir.open(settings.models)
    threads = settings.threads or 0
    torch.set_num_threads(threads or torch.get_num_threads())
    jppnet = models.entry("jppnet")
    config = CONFIGS[jppnet.variant]
    weights = load_weights(jppnet.source.path, config)
    parse = TfParseStage(weights, config, settings.scales, settings.mirror, threads)
    cpvton = torch_cpvton(models.entry("gmm").source.path, models.entry("tom").source.path)
    return TryOn(parse, cpvton, models)


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


def _settings(args) -> BenchSettings:
    return BenchSettings(models=args.models, threads=args.threads, provider="cpu",
                         scales=tuple(float(s) for s in args.scales.split(",")), mirror=args.mirror,
                         batch=args.batch, runs=args.runs, warmup=args.warmup)


def main(argv=None):
    parser = argparse.ArgumentParser(description="TF + eager-torch reference timings (tryon bench --reference)")
    parser.add_argument("--models", required=True)
    parser.add_argument("--person", required=True)
    parser.add_argument("--cloth", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--scales", default="1.0,0.75,1.25")
    parser.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--garments", type=int, default=0, help="one person in N garments, each pair parsed again")
    args = parser.parse_args(argv)
    if args.garments:
        record = run_garments_benchmark(reference_tryon, _settings(args), Path(args.person), Path(args.cloth),
                                        args.garments, ways=("reparse",))
    else:
        record = run_benchmark(reference_tryon, _settings(args), Path(args.person), Path(args.cloth))
    record["framework_versions"] = {"tensorflow": tf.__version__, "torch": torch.__version__}
    Path(args.out).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
