"""JPP-Net checkpoint -> models_onnx/jppnet.onnx (tf2onnx), validated against TensorFlow.

The ONNX graph is one forward pass at one scale (ARCHITECTURE.md): input `image`
[N, H, W, 3] (BGR minus the LIP mean), outputs `parsing` (mean of the three parsing
stages' logits) and `pose` (stage-3 heatmaps), both at 1/8 of the input size. Scales,
mirror and merge live in tryon.stages.parse.

Validation, as optimum does it: the TensorFlow graph the file was converted from and
ONNX Runtime run the same input (a smooth synthetic photo and its mirror at 384x384);
the largest difference must stay within RELATIVE_TOLERANCE of the largest output, and no
label or keypoint may differ where TensorFlow's own margin exceeds that tolerance.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from tryon.errors import ModelsMissingError
from tryon.models.manifest import Manifest, ModelSource
from tryon.models.session import SessionOptions, create_session
from tryon.stages.parse import photo_batch

from . import manifest, winograd
from .errors import ExportValidationError
from .jppnet_checkpoint import detect_config, load_weights, resolve_source
from .jppnet_graph import CONFIGS, JppNetConfig, build_forward, fed_weights
from .sources import is_synthetic

ONNX_FILE = "jppnet.onnx"
# The same network with its large undilated convolutions as Winograd convolutions
# (export/winograd.py): the graph fp32 runs on the CPU provider.
WINOGRAD_FILE = "jppnet.winograd.onnx"
VALIDATION_SIDE = 384
# float32 through ~110 layers, summed in a different order by oneDNN and MLAS.
RELATIVE_TOLERANCE = 1e-4


class _Progress:
    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self, message: str):
        print(f"[jppnet {time.perf_counter() - self.start:6.1f} s] {message}", flush=True)


def forward_graph(weights, config: JppNetConfig):
    """The single-scale graph named as the ONNX file will be, with the weights fed from
    placeholders named like their variables; returns (graph, feed dict of the weights)."""
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [None, None, None, 3], name="image")
        with fed_weights(weights) as feeds:
            out = build_forward(image, config)
        tf.identity(tf.add_n(list(out.parsing)) / 3.0, name="parsing")
        tf.identity(out.pose, name="pose")
    return graph, feeds


def convert(weights, config: JppNetConfig, opset: int):
    """tf2onnx on the graph with the weights as extra inputs, which then become
    initializers. With the weights inside the graph as constants, tf2onnx's optimiser
    passes copy every weight at each pass (over 15 GB at full size); this way its memory
    and time do not depend on the weights at all."""
    from tf2onnx import optimizer, tfonnx

    graph, feeds = forward_graph(weights, config)
    onnx_graph = tfonnx.process_tf_graph(
        graph, opset=opset, input_names=["image:0", *(t.name for t in feeds)],
        output_names=["parsing:0", "pose:0"],
        tensors_to_rename={"image:0": "image", "parsing:0": "parsing", "pose:0": "pose"})
    model = optimizer.optimize_graph(onnx_graph, catch_errors=False).make_model(f"JPP-Net ({config.name})")
    _embed_weights(model, weights)
    _name_dynamic_axes(model)
    _explicit_dilated_padding(model)
    return model


def _embed_weights(model, weights):
    """Weight inputs -> initializers named like the checkpoint's variables; the HWIO ->
    OIHW Transpose that tf2onnx put behind each convolution kernel is applied here."""
    from onnx import numpy_helper

    graph = model.graph
    by_input = {f"{name}:0": name for name in weights}
    renamed, initializers, kept_nodes = {}, [], []
    for node in graph.node:
        if node.op_type == "Transpose" and node.input[0] in by_input:
            name = by_input[node.input[0]]
            perm = next(a.ints for a in node.attribute if a.name == "perm")
            initializers.append(numpy_helper.from_array(np.ascontiguousarray(weights[name].transpose(perm)), name))
            renamed[node.output[0]] = name
        else:
            kept_nodes.append(node)
    used = {i for node in kept_nodes for i in node.input}
    for tensor_name, name in by_input.items():
        if tensor_name in used:
            initializers.append(numpy_helper.from_array(weights[name], name))
            renamed[tensor_name] = name
    for node in kept_nodes:
        node.input[:] = [renamed.get(i, i) for i in node.input]
    del graph.node[:]
    graph.node.extend(kept_nodes)
    data_inputs = [i for i in graph.input if i.name not in by_input]
    del graph.input[:]
    graph.input.extend(data_inputs)
    graph.initializer.extend(initializers)


def _name_dynamic_axes(model):
    """tf2onnx calls the free axes unk__N; give them the names ARCHITECTURE.md uses."""
    for value, names in ((model.graph.input[0], ("N", "H", "W")),
                         *((out, ("N", "h", "w")) for out in model.graph.output)):
        for dim, name in zip(value.type.tensor_type.shape.dim, names):
            dim.dim_param = name


def _explicit_dilated_padding(model):
    """tf2onnx writes SAME as auto_pad=SAME_UPPER when sizes are dynamic, which ONNX
    Runtime refuses for dilated convolutions. Every dilated convolution here has
    stride 1, where SAME means a fixed dilation * (k - 1) split with the odd pixel at
    the end, so the pads can be written out."""
    import onnx

    for node in model.graph.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type != "Conv" or max(attrs["dilations"].ints, default=1) == 1:
            continue
        if attrs.get("auto_pad") is None or attrs["auto_pad"].s != b"SAME_UPPER" or set(attrs["strides"].ints) != {1}:
            raise ValueError(f"unexpected dilated convolution {node.name}: {node.attribute}")
        totals = [d * (k - 1) for d, k in zip(attrs["dilations"].ints, attrs["kernel_shape"].ints)]
        node.attribute.remove(attrs["auto_pad"])
        node.attribute.append(onnx.helper.make_attribute(
            "pads", [t // 2 for t in totals] + [t - t // 2 for t in totals]))


def validation_photo(height: int = 480, width: int = 320) -> np.ndarray:
    """A smooth, deterministic RGB photo: a lit background and a few soft-edged blobs,
    so resizes and convolutions see image-like statistics rather than white noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    photo = np.stack([90 + 60 * x / width, 110 + 50 * y / height, 140 - 40 * x / width], axis=2)
    for cy, cx, ry, rx, colour in ((0.2, 0.5, 0.09, 0.08, (220, 180, 150)), (0.5, 0.5, 0.22, 0.17, (40, 70, 160)),
                                   (0.82, 0.42, 0.16, 0.06, (30, 30, 40)), (0.82, 0.58, 0.16, 0.06, (30, 30, 40))):
        distance = ((y / height - cy) / ry) ** 2 + ((x / width - cx) / rx) ** 2
        inside = 1 / (1 + np.exp(np.minimum(8 * (distance - 1), 50)))
        photo += inside[..., None] * (np.array(colour, np.float32) - photo)
    return np.clip(photo, 0, 255).astype(np.uint8)


def validation_batch(side: int = VALIDATION_SIDE) -> np.ndarray:
    return photo_batch(validation_photo(), side, mirror=True)


def _run_tensorflow(weights, config, batch):
    graph, feeds = forward_graph(weights, config)
    with tf.compat.v1.Session(graph=graph) as sess:
        return sess.run(["parsing:0", "pose:0"], {**feeds, "image:0": batch})


def _run_onnxruntime(onnx_path, batch):
    session = create_session(onnx_path, SessionOptions(provider="cpu", fold_constants=onnx_path.name != WINOGRAD_FILE))
    return session.run(["parsing", "pose"], {"image": batch})


def _decisive_mismatches(ref: np.ndarray, got: np.ndarray, tolerance: float) -> tuple[float, int]:
    """Argmax over the last axis of `ref` and `got` (rows = positions): the agreeing
    fraction, and how many disagreements TensorFlow itself does not call a near-tie."""
    best, chosen = ref.argmax(axis=1), got.argmax(axis=1)
    rows = np.arange(len(ref))
    margin = ref[rows, best] - ref[rows, chosen]
    return float(np.mean(best == chosen)), int(np.sum(margin > tolerance))


def _positions_by_channel(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, x.shape[-1])


def _channels_by_position(x: np.ndarray) -> np.ndarray:
    """[N, h, w, C] -> [N * C, h * w]: one row per image and keypoint."""
    return x.reshape(x.shape[0], -1, x.shape[-1]).transpose(0, 2, 1).reshape(x.shape[0] * x.shape[-1], -1)


def compare(ref: np.ndarray, got: np.ndarray, per_position: bool) -> dict:
    """Differences of one output; argmax per pixel over channels (labels) when
    per_position, else per image and channel over pixels (keypoints)."""
    scale = float(np.abs(ref).max())
    max_abs = float(np.abs(ref - got).max())
    tolerance = RELATIVE_TOLERANCE * scale
    rows = _positions_by_channel if per_position else _channels_by_position
    agreement, decisive = _decisive_mismatches(rows(ref), rows(got), tolerance)
    return {"max_abs_diff": max_abs, "max_abs_value": scale, "relative_diff": max_abs / scale,
            "argmax_agreement": agreement, "decisive_argmax_mismatches": decisive,
            "what_argmax": "labels per pixel" if per_position else "keypoints per image and joint",
            "passed": max_abs <= tolerance and decisive == 0}


def validate_files(weights, config: JppNetConfig, onnx_path: Path, reference=None) -> dict:
    """`reference`: TensorFlow's (parsing, pose) on validation_batch(), when already run."""
    batch = validation_batch()
    tf_parsing, tf_pose = reference or _run_tensorflow(weights, config, batch)
    ort_parsing, ort_pose = _run_onnxruntime(onnx_path, batch)
    report = {
        "input": f"smooth synthetic photo + mirror, {VALIDATION_SIDE}x{VALIDATION_SIDE}, batch 2",
        "relative_tolerance": RELATIVE_TOLERANCE,
        "parsing": compare(tf_parsing, ort_parsing, per_position=True),
        "pose": compare(tf_pose, ort_pose, per_position=False),
    }
    report["max_abs_diff"] = {name: report[name]["max_abs_diff"] for name in ("parsing", "pose")}
    report["passed"] = report["parsing"]["passed"] and report["pose"]["passed"]
    report["reference"] = (tf_parsing, tf_pose)
    return report


def _raise_unless_passed(report: dict, file: str = ONNX_FILE):
    if not report["passed"]:
        failed = {k: report[k] for k in ("parsing", "pose") if not report[k]["passed"]}
        raise ExportValidationError(f"{file} differs from TensorFlow beyond relative tolerance "
                              f"{RELATIVE_TOLERANCE:g} (or an argmax flipped decisively): {failed}")


def _source_record(path: Path) -> dict:
    source = resolve_source(path)
    digest = manifest.sha256_files(source.files) if source.format == "ckpt" else manifest.sha256_file(source.path)
    return {"path": str(path), "format": source.format, "sha256": digest, "synthetic": is_synthetic(path)}


def export_jppnet(source: str | Path, models_dir: str | Path, opset: int = 17,
                  config: JppNetConfig | None = None) -> dict:
    """Convert, validate and record jppnet.onnx; returns its manifest entry. Without a
    config the layout (published or reduced test build) is read from the file's shapes."""
    import onnx
    import tf2onnx

    source, models_dir = Path(source), Path(models_dir)
    config = config or detect_config(source)
    progress = _Progress()
    progress(f"reading weights from {source} ({config.name} network)")
    weights = load_weights(source, config)
    models_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = models_dir / ONNX_FILE
    progress(f"converting with tf2onnx {tf2onnx.__version__}, opset {opset}")
    model = convert(weights, config, opset)
    onnx.save(model, str(onnx_path))
    del model
    progress(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB); validating against TensorFlow")
    validation = validate_files(weights, config, onnx_path)
    _report(progress, validation)
    _raise_unless_passed(validation)
    reference = validation.pop("reference")
    entry = {"file": ONNX_FILE, "variant": config.name, "opset": opset,
             "source": _source_record(source), "validation": validation}
    recorded = manifest.record(models_dir, "jppnet", entry)
    progress("recorded in manifest.json; rewriting large convolutions as Winograd convolutions")
    model = onnx.load(str(onnx_path))
    rewritten = winograd.rewrite(model, winograd.MIN_CHANNELS // config.width_divisor,
                                 winograd.MAX_INPUT_CHANNELS // config.width_divisor)
    winograd_path = models_dir / WINOGRAD_FILE
    onnx.save(model, str(winograd_path))
    del model
    progress(f"wrote {winograd_path} ({rewritten} convolutions rewritten); validating against TensorFlow")
    validation = validate_files(weights, config, winograd_path, reference)
    validation.pop("reference")
    _report(progress, validation)
    _raise_unless_passed(validation, WINOGRAD_FILE)
    manifest.record(models_dir, "jppnet_winograd", {
        **entry, "file": WINOGRAD_FILE, "winograd_convolutions": rewritten, "validation": validation})
    return recorded


def _report(progress, validation: dict):
    progress(f"parsing relative diff {validation['parsing']['relative_diff']:.2e}, "
             f"pose {validation['pose']['relative_diff']:.2e} (tolerance {RELATIVE_TOLERANCE:g})")


def validate_jppnet(models_dir: str | Path, source: str | Path) -> dict:
    """Re-run the TensorFlow vs ONNX Runtime check on an existing jppnet.onnx."""
    models_dir = Path(models_dir)
    entry = Manifest.read(models_dir, missing_ok=True).models.get("jppnet")
    if entry is None:
        raise ModelsMissingError(f"{models_dir}/manifest.json has no jppnet entry: run `tryon export` first")
    config = CONFIGS[entry.variant]
    weights = load_weights(source, config)
    report = validate_files(weights, config, models_dir / entry.file)
    reference = report.pop("reference")
    recorded = entry.source.sha256 if entry.source is not None else None
    report["source_matches_manifest"] = ModelSource.from_json(_source_record(Path(source))).sha256 == recorded
    _raise_unless_passed(report)
    if (models_dir / WINOGRAD_FILE).is_file():
        report["winograd"] = validate_files(weights, config, models_dir / WINOGRAD_FILE, reference)
        report["winograd"].pop("reference")
        _raise_unless_passed(report["winograd"], WINOGRAD_FILE)
    return report
