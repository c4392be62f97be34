"""Per garment, in one process and interleaved: the whole GMM and TOM graphs against the ones the
runtime prefers (GMM's two halves with the person's half once per batch; the Winograd TOM).

One person in N garments, at batch 1 and batch 8, as TryOn.dress runs them. Interleaving keeps
the comparison fair on a machine shared with other work; the load average is printed with each
table. Medians of wall time and of process CPU time (both threads), per garment:

    python benchmarks/dress_graphs.py --models models_onnx --rounds 20
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import numpy as np
from tryon.export.cpvton_export import validation_inputs
from tryon.models.model_dir import ModelDir
from tryon.models.session import SessionOptions, create_session
from tryon.stages.cpvton import run_gmm_halves


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="models_onnx")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batches", default="1,8")
    args = parser.parse_args()
    models = ModelDir.open(args.models)
    options = SessionOptions(provider="cpu", spinning=False)  # as CpvtonStage opens them

    def session(name, **changes):
        return create_session(models.file(name), replace(options, **changes))

    gmm, person, garment = session("gmm"), session("gmm_person"), session("gmm_garment")
    tom, winograd = session("tom"), session("tom_winograd", fold_constants=False)
    for batch in (int(b) for b in args.batches.split(",")):
        agnostic, cloth = validation_inputs(models.family, batch, persons=1)
        owners = np.zeros(batch, np.int64)
        ways = {
            "gmm.onnx": lambda: gmm.run(["warped_cloth"], {"agnostic": agnostic, "cloth": cloth}),
            "gmm halves": lambda: run_gmm_halves(person, garment, agnostic[:1], owners, cloth),
            "tom.onnx": lambda: tom.run(["tryon"], {"agnostic": agnostic, "warped_cloth": cloth}),
            "tom.winograd": lambda: winograd.run(["tryon"], {"agnostic": agnostic, "warped_cloth": cloth}),
        }
        wall: dict[str, list[float]] = {name: [] for name in ways}
        cpu: dict[str, list[float]] = {name: [] for name in ways}
        for way in ways.values():  # warm-up
            way()
        for _ in range(args.rounds):
            for name, way in ways.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                way()
                wall[name].append((time.perf_counter() - start) * 1e3 / batch)
                cpu[name].append((time.process_time() - start_cpu) * 1e3 / batch)
        print(f"one person, batch {batch}, {args.rounds} interleaved rounds, ms per garment (median wall / cpu), "
              f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        for before, after in (("gmm.onnx", "gmm halves"), ("tom.onnx", "tom.winograd")):
            w0, w1, c0, c1 = (float(np.median(wall[before])), float(np.median(wall[after])),
                              float(np.median(cpu[before])), float(np.median(cpu[after])))
            print(f"  {before:10s} {w0:7.1f} / {c0:6.1f}   {after:13s} {w1:7.1f} / {c1:6.1f}   "
                  f"ratio {w1 / w0:.2f} / {c1 / c0:.2f}")


if __name__ == "__main__":
    main()
