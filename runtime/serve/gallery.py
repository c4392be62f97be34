"""The garment gallery: the bundled T-shirt plus every image in the folders given at start,
decoded once then (a broken file stops the start instead of failing requests later)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..examples import EXAMPLE_GARMENT
from ..images import encode, load_rgb

BUNDLED = EXAMPLE_GARMENT
SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass(frozen=True)
class Garment:
    id: str
    rgb: np.ndarray
    png: bytes

    def listing(self) -> dict:
        h, w = self.rgb.shape[:2]
        return {"id": self.id, "url": f"/v1/garments/{self.id}.png", "width": w, "height": h}


class Gallery:
    def __init__(self, garments: list[Garment]):
        self.garments = {g.id: g for g in garments}

    @classmethod
    def load(cls, folders=()) -> "Gallery":
        files = [BUNDLED]
        for folder in map(Path, folders):
            if not folder.is_dir():
                raise InputError(f"--gallery {folder}: not a folder")
            files += sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
        garments: list[Garment] = []
        for path in files:
            garment = _load(path)
            if any(g.id == garment.id for g in garments):
                raise InputError(f"gallery: two garments would be called {garment.id!r} ({path}); rename one")
            garments.append(garment)
        return cls(garments)

    def listing(self) -> list[dict]:
        return [g.listing() for g in self.garments.values()]


def _load(path: Path) -> Garment:
    # Ids travel in URLs and form fields, so they keep to letters, digits, '-' and '_'.
    garment_id = re.sub(r"[^a-z0-9_-]+", "-", path.stem.lower()).strip("-") or "garment"
    rgb = load_rgb(path, f"gallery garment {path}")
    return Garment(garment_id, rgb, encode(rgb, ".png"))
