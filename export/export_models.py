"""`tryon export` / `tryon validate` over a checkpoint folder: all three networks."""
from __future__ import annotations

from pathlib import Path

from .sources import find_sources


def export_all(checkpoints: str | Path, models_dir: str | Path, family: str | None = None,
               opset: int = 17) -> dict[str, dict]:
    from tryon.models.manifest import Manifest

    from .cpvton_export import export_cpvton
    from .jppnet_export import export_jppnet

    sources = find_sources(checkpoints, family)
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    entries = dict(export_cpvton(sources.gmm, sources.tom, models_dir, opset=opset))
    entries["jppnet"] = export_jppnet(sources.jppnet, models_dir, opset=opset)
    entries["jppnet_winograd"] = Manifest.read(models_dir).models["jppnet_winograd"].to_json()
    return entries


def validate_all(checkpoints: str | Path, models_dir: str | Path, family: str | None = None) -> dict[str, dict]:
    from .cpvton_export import validate_cpvton
    from .jppnet_export import validate_jppnet

    sources = find_sources(checkpoints, family)
    report = dict(validate_cpvton(models_dir, sources.gmm, sources.tom))
    report["jppnet"] = validate_jppnet(models_dir, sources.jppnet)
    if "winograd" in report["jppnet"]:
        report["jppnet_winograd"] = report["jppnet"].pop("winograd")
    return report


def up_to_date(checkpoints: str | Path, models_dir: str | Path, family: str | None = None) -> bool:
    """True when every model in the manifest was exported from these very checkpoint files."""
    from tryon.models.manifest import Manifest

    from . import manifest

    sources = find_sources(checkpoints, family)
    models = Manifest.read(models_dir, missing_ok=True).models
    for name, path in (("jppnet", sources.jppnet), ("jppnet_winograd", sources.jppnet), ("gmm", sources.gmm),
                       ("gmm_person", sources.gmm), ("gmm_garment", sources.gmm), ("tom", sources.tom),
                       ("tom_winograd", sources.tom)):
        entry = models.get(name)
        if entry is None or not (Path(models_dir) / entry.file).is_file():
            return False
        if entry.source is None or entry.source.sha256 != manifest.source_sha256(path):
            return False
    return True


def max_abs_diffs(entry: dict) -> dict[str, float]:
    """{output: max abs difference vs the source framework} of a manifest entry or validation report."""
    return dict(entry.get("validation", entry)["max_abs_diff"])
