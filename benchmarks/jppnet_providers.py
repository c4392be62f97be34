"""JPP-Net on one square, photo + mirror, in one process and interleaved: ONNX Runtime's CPU
provider on the plain and Winograd graphs against OpenVINO in f32 and bf16 on the plain graph,
as time relative to ONNX Runtime on the plain graph, with the share of labels equal to it.

Runs in the environment with onnxruntime-openvino (`make test-openvino` builds it):

    .venv-openvino/bin/python benchmarks/jppnet_providers.py --models models_onnx --runs 5

Writes benchmarks/results/jppnet-providers-<side>-<time>.json and prints a table. The input
is seeded noise in the photo's value range (the timing does not depend on it; the label
agreement on it is a screen, `tryon quantize --precision bf16` measures it on photos).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from tryon.bench.latency import machine
from tryon.models.graphs import WINOGRAD
from tryon.models.model_dir import ModelDir
from tryon.models.session import OPENVINO, PROVIDERS, import_onnxruntime, openvino_bf16_options

THREADS = 2


def openvino_options(precision: str) -> dict[str, str]:
    """The provider's options as the runtime sets them for bf16, with the precision hint swapped."""
    options = openvino_bf16_options(THREADS)
    options["load_config"] = options["load_config"].replace('"bf16"', f'"{precision}"')
    return options


def sessions(ort, models: ModelDir) -> dict:
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    plain, winograd = str(models.file("jppnet")), str(models.file(WINOGRAD))
    made = {"ort_cpu_plain": ort.InferenceSession(plain, so, providers=PROVIDERS["cpu"]),
            "ort_cpu_winograd": ort.InferenceSession(winograd, so, providers=PROVIDERS["cpu"])}
    if OPENVINO in ort.get_available_providers():
        for precision in ("f32", "bf16"):
            made[f"openvino_{precision}_plain"] = ort.InferenceSession(
                plain, so, providers=[OPENVINO], provider_options=[openvino_options(precision)])
    return made


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="models_onnx")
    parser.add_argument("--side", type=int, default=384)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    ort = import_onnxruntime()
    image = np.random.default_rng(0).uniform(-128, 128, (2, args.side, args.side, 3)).astype(np.float32)
    runs = sessions(ort, ModelDir.open(args.models))
    labels = {name: session.run(["parsing"], {"image": image})[0].argmax(-1) for name, session in runs.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.runs):
        for name, session in runs.items():
            start = time.perf_counter()
            session.run(["parsing", "pose"], {"image": image})
            times[name].append((time.perf_counter() - start) * 1e3)
    base = statistics.median(times["ort_cpu_plain"])
    results = {name: {"median_ms": statistics.median(values), "relative": statistics.median(values) / base,
                      "labels_equal": float((labels[name] == labels["ort_cpu_plain"]).mean())}
               for name, values in times.items()}
    record = {"kind": "jppnet_providers", "side": args.side, "batch": 2, "threads": THREADS, "runs": args.runs,
              "load_average": os.getloadavg(), "machine": machine(), "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"jppnet-providers-{args.side}-{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(record, indent=1))
    print(f"{'configuration':<24}{'median ms':>10}{'relative':>10}{'labels equal':>14}")
    for name, row in results.items():
        print(f"{name:<24}{row['median_ms']:>10.0f}{row['relative']:>10.2f}{100 * row['labels_equal']:>13.2f}%")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
