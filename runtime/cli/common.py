"""Options and printing shared by the verbs that run the pipeline."""
from __future__ import annotations

from pathlib import Path

import typer

from ..errors import InputError
from ..images import save_rgb
from ..pipeline import PipelineSettings
from ..sheet import colour_labels, draw_keypoints, side_by_side
from ..store import StoreSettings

SYNTHETIC_NOTE = "SYNTHETIC (untrained) weights: this output is noise"

MODELS = typer.Option(Path("models_onnx"), help="folder with the exported models")
PROVIDER = typer.Option("auto", help="auto, cpu or cuda")
THREADS = typer.Option(0, help="intra-op threads (0: one per core)")
SCALES = typer.Option("1.0,0.75,1.25", help="JPP-Net scales of a 384 square, comma-separated")
MIRROR = typer.Option(True, help="also run JPP-Net on the mirrored photo and merge")
CACHE = typer.Option(None, "--cache", "--store", help="person store: a folder for its SQLite file "
                                                     "[default: ~/.cache/tryon-onnx], or redis://HOST:PORT/DB "
                                                     "to share parsed persons between hosts")
NO_CACHE = typer.Option(False, "--no-cache", help="keep parsed persons in memory for this run only")
CACHE_TTL = typer.Option(24.0, "--cache-ttl-hours", min=0.001,
                         help="hours a parsed person is kept (a person photo is personal data)")
CACHE_MB = typer.Option(512.0, "--cache-max-mb", min=1, help="size cap of the person store, MB (least "
                                                             "recently used persons go first)")
# The seed's five predict() flags, for the verbs that take them.
NEED_PRE = typer.Option(True, help="crop around the pose and resize to 256x192")
NEED_BRIGHT = typer.Option(False, help="brighten the photo x1.3 first")
KEEP_BACK = typer.Option(False, help="keep the photo outside the upper-clothes area")
NEED_DILATE = typer.Option(False, help="soften the keep_back mask")
CHECK_DIRTY = typer.Option(False, help="refuse photos with arms crossing the torso")
JPEG_DCT = typer.Option("accurate", help="JPEG decode of person photos: accurate (the seed's PIL/OpenCV "
                                         "decode) or fast (LIP_JPPNet's TensorFlow decode_jpeg, bit for bit)")
WARP_JPEG = typer.Option(False, help="hand the warped garment to TOM through a quality-75 JPEG, as "
                                     "cp-vton's test pipeline did (the seed casts it to uint8 in memory)")
PRECISION = typer.Option("fp32", help="fp32 (matches the source frameworks), or a JPP-Net from `tryon quantize`: "
                                       "int8 (CPU), fp16 (CUDA) or bf16 (a CPU with avx512_bf16 or AMX, "
                                       "through tryon-onnx[openvino])")


def parse_scales(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise InputError(f"--scales {text!r}: expected numbers such as 1.0,0.75,1.25") from None
    if not scales or any(s <= 0 or s > 4 for s in scales):
        raise InputError(f"--scales {text!r}: each scale must be in (0, 4]")
    return scales


def timings_table(timings_ms: dict[str, float]) -> str:
    width = max(len(k) for k in timings_ms)
    total_last = sorted(timings_ms.items(), key=lambda item: item[0] == "total")
    rows = [("stage", f"{'ms':>9}")] + [(name, f"{ms:9.1f}") for name, ms in total_last]
    return "\n".join(f"  {name.ljust(width)}  {cell}" for name, cell in rows)


def save_intermediates(folder: Path, stem: str, result, synthetic: bool) -> Path:
    """Every intermediate as its own PNG plus one side-by-side sheet; returns the sheet path."""
    it = result.intermediates
    panels = [("person", it["person"]), ("labels", colour_labels(it["labels"])),
              ("keypoints", draw_keypoints(it["person"], it["keypoints"]))]
    if "warped_cloth" in it:  # dressed (a refused photo never reached GMM and TOM)
        mask = (it["mask"] * 255).astype("uint8")
        panels[1:1] = [("garment", it["garment"])]
        panels += [("warped garment", it["warped_cloth"]), ("TOM mask", mask)]
    panels.append(("result", result.image))
    for title, image in panels:
        save_rgb(folder / f"{stem}_{title.replace(' ', '_')}.png", image)
    sheet = side_by_side(panels, note=SYNTHETIC_NOTE if synthetic else "")
    save_rgb(folder / f"{stem}_sheet.png", sheet)
    return folder / f"{stem}_sheet.png"


def store_settings(cache, no_cache: bool, ttl_hours: float = 24.0, max_mb: float = 512.0):
    return StoreSettings("memory" if no_cache else cache, ttl_hours, max_mb)


def pipeline_settings(models: Path, provider: str, threads: int, scales: str, mirror: bool, precision: str,
                      store=None):
    """The pipeline options as the PipelineSettings they name (`scales` as --scales reads)."""
    return PipelineSettings(str(models), provider, threads, parse_scales(scales), mirror, precision, store)
