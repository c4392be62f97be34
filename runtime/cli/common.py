"""Options and printing shared by the verbs that run the pipeline."""
from __future__ import annotations

from pathlib import Path

import typer

from ..images import save_rgb
from ..sheet import colour_labels, draw_keypoints, side_by_side

SYNTHETIC_NOTE = "SYNTHETIC (untrained) weights: this output is noise"

MODELS = typer.Option(Path("models_onnx"), help="folder with the exported models")
PROVIDER = typer.Option("auto", help="auto, cpu or cuda")
THREADS = typer.Option(0, help="intra-op threads (0: one per core)")
SCALES = typer.Option("1.0,0.75,1.25", help="JPP-Net scales of a 384 square, comma-separated")
MIRROR = typer.Option(True, help="also run JPP-Net on the mirrored photo and merge")
PRECISION = typer.Option("fp32", help="fp32 (matches the source frameworks), or a JPP-Net from `tryon quantize`: "
                                       "int8 (CPU), fp16 (CUDA) or bf16 (a CPU with avx512_bf16 or AMX, "
                                       "through tryon-onnx[openvino])")


def parse_scales(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--scales {text!r}: expected numbers such as 1.0,0.75,1.25") from None
    if not scales or any(s <= 0 or s > 4 for s in scales):
        raise ValueError(f"--scales {text!r}: each scale must be in (0, 4]")
    return scales


def timings_table(timings_ms: dict[str, float]) -> str:
    width = max(len(k) for k in timings_ms)
    rows = [f"  {'stage'.ljust(width)}  {'ms':>9}"]
    for name, ms in timings_ms.items():
        if name != "total":
            rows.append(f"  {name.ljust(width)}  {ms:9.1f}")
    rows.append(f"  {'total'.ljust(width)}  {timings_ms['total']:9.1f}")
    return "\n".join(rows)


def save_intermediates(folder: Path, stem: str, result, cloth_fitted, synthetic: bool) -> Path:
    """Every intermediate as its own PNG plus one side-by-side sheet; returns the sheet path."""
    it = result.intermediates
    panels = [("person", it["person"]), ("garment", cloth_fitted),
              ("labels", colour_labels(it["labels"])),
              ("keypoints", draw_keypoints(it["person"], it["keypoints"]))]
    if "warped_cloth" in it:
        mask = (it["mask"] * 255).astype("uint8")
        panels += [("warped garment", it["warped_cloth"]), ("TOM mask", mask)]
    panels.append(("result", result.image))
    for title, image in panels:
        save_rgb(folder / f"{stem}_{title.replace(' ', '_')}.png", image if image.ndim == 3 else image)
    sheet = side_by_side(panels, note=SYNTHETIC_NOTE if synthetic else "")
    save_rgb(folder / f"{stem}_sheet.png", sheet)
    return folder / f"{stem}_sheet.png"
