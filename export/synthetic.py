"""`tryon synth`: seeded, untrained checkpoints in exactly the published formats.

They exist so that export, tests, the demo and the benchmarks run without the real
files (which only live on hosts this project cannot reach). Their outputs are noise;
latency does not depend on weight values.
"""
from __future__ import annotations

from pathlib import Path

from .sources import SYNTHETIC_MARKER

README = f"""{SYNTHETIC_MARKER}

Everything in this folder was written by `tryon synth` from a fixed seed. The files have
the published formats, names and shapes, so every loader and export runs on them, but
the weights are NOT TRAINED: every image made with them is noise.

For real results, put the published checkpoints in `checkpoints/` (see
`checkpoints/README.md`) and run `tryon export --checkpoints checkpoints`.
"""


def write_synthetic(out_dir: str | Path, families=("grayxu",), jppnet: str = "full",
                    jppnet_formats=("pb", "ckpt"), seed: int = 0) -> dict[str, Path]:
    """Write the README marker first, so a half-written folder is never taken for real weights."""
    from . import cpvton_synth, jppnet_graph, jppnet_synth

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "README.md").write_text(README)
    written = {}
    config = jppnet_graph.CONFIGS[jppnet]
    written.update(jppnet_synth.write_synthetic(out_dir, seed=seed, config=config, formats=tuple(jppnet_formats)))
    for family in families:
        for name, path in cpvton_synth.write_synthetic(out_dir, family, seed=seed).items():
            written[f"{name} ({family})"] = path
    return written
