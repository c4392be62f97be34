"""Where a user's (or the synthetic) checkpoints sit, by the names they were published under."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tryon.errors import EXIT_BAD_CHECKPOINT, TryonError

# The first line of the README.md that `tryon synth` writes beside its files.
SYNTHETIC_MARKER = "# UNTRAINED SYNTHETIC CHECKPOINTS"
CPVTON_FILES = {"grayxu": ("gmm.pth", "tom.pth"), "cpvton": ("gmm_final.pth", "tom_final.pth")}
JPPNET_FILES = ("jpp.pb", "JPPNet-s2")


class SourcesMissingError(TryonError, FileNotFoundError):
    """No checkpoint under any published name where one was looked for."""
    exit_code = EXIT_BAD_CHECKPOINT
    http_status = 404


@dataclass(frozen=True)
class Sources:
    jppnet: Path
    gmm: Path
    tom: Path
    family: str


def is_synthetic(path: str | Path) -> bool:
    """True when a checkpoint sits in a folder whose README says it is untrained."""
    folder = Path(path).parent
    if (folder / "checkpoint").is_file():  # a TF checkpoint prefix inside JPPNet-s2/
        folder = folder.parent
    readme = folder / "README.md"
    return readme.is_file() and readme.read_text(errors="replace").startswith(SYNTHETIC_MARKER)


SYNTHETIC_README = f"""{SYNTHETIC_MARKER}

Everything in this folder was written by `tryon synth` from a fixed seed. The files have
the published formats, names and shapes, so every loader and export runs on them, but
the weights are NOT TRAINED: every image made with them is noise.

For real results, put the published checkpoints in `checkpoints/` (see
`checkpoints/README.md`) and run `tryon export --checkpoints checkpoints`.
"""


def mark_untrained(folder: str | Path):
    """Give a folder of synthetic checkpoints the README that `is_synthetic` recognises,
    written before any weights so a half-written folder is never taken for real files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    readme = folder / "README.md"
    if not (readme.is_file() and readme.read_text(errors="replace").startswith(SYNTHETIC_MARKER)):
        readme.write_text(SYNTHETIC_README)


def find_sources(folder: str | Path, family: str | None = None) -> Sources:
    folder = Path(folder)
    jppnet = next((folder / n for n in JPPNET_FILES if (folder / n).exists()), None)
    families = [family] if family else list(CPVTON_FILES)
    pair = next((f for f in families if all((folder / n).is_file() for n in CPVTON_FILES[f])), None)
    missing = []
    if jppnet is None:
        missing.append("JPP-Net: jpp.pb (GrayXu) or JPPNet-s2/ (LIP_JPPNet checkpoint directory)")
    if pair is None:
        missing.append("GMM + TOM: " + " or ".join(" + ".join(CPVTON_FILES[f]) for f in families))
    if missing:
        raise SourcesMissingError(
            f"checkpoints missing in {folder}: " + "; ".join(missing)
            + ". Put the published files there (see checkpoints/README.md) or run `tryon synth`."
        )
    gmm, tom = (folder / n for n in CPVTON_FILES[pair])
    return Sources(jppnet, gmm, tom, pair)


def has_real_checkpoints(folder: str | Path) -> bool:
    try:
        sources = find_sources(folder)
    except SourcesMissingError:
        return False
    return not any(is_synthetic(p) for p in (sources.jppnet, sources.gmm))
