"""`tryon synth`: seeded, untrained checkpoints in exactly the published formats.

They exist so that export, tests, the demo and the benchmarks run without the real
files (which only live on hosts this project cannot reach). Their outputs are noise;
latency does not depend on weight values.
"""
from __future__ import annotations

from pathlib import Path

from .sources import mark_untrained


def write_synthetic(out_dir: str | Path, families=("grayxu",), jppnet: str = "full",
                    jppnet_formats=("pb", "ckpt"), seed: int = 0) -> dict[str, Path]:
    from . import cpvton_synth, jppnet_graph, jppnet_synth

    out_dir = Path(out_dir)
    mark_untrained(out_dir)
    written = {}
    config = jppnet_graph.CONFIGS[jppnet]
    written.update(jppnet_synth.write_synthetic(out_dir, seed=seed, config=config, formats=tuple(jppnet_formats)))
    for family in families:
        for name, path in cpvton_synth.write_synthetic(out_dir, family, seed=seed).items():
            written[f"{name} ({family})"] = path
    return written
