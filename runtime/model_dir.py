"""Finds the exported models and reads what manifest.json says about them."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import TryonError

MODEL_FILES = {"jppnet": "jppnet.onnx", "gmm": "gmm.onnx", "tom": "tom.onnx"}


class ModelsMissingError(TryonError, FileNotFoundError):
    """Exported ONNX files are not where they were looked for."""


@dataclass(frozen=True)
class ModelDir:
    path: Path
    manifest: dict

    @classmethod
    def open(cls, path: str | Path) -> "ModelDir":
        path = Path(path)
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file():
            raise ModelsMissingError(
                f"no exported models in {path} (manifest.json missing): run `tryon export` first"
            )
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelsMissingError(f"{manifest_path} is not valid JSON ({exc}); re-run `tryon export`") from exc
        return cls(path, manifest)

    def entry(self, name: str) -> dict:
        entry = self.manifest.get("models", {}).get(name)
        if entry is None:
            raise ModelsMissingError(
                f"{self.path} has no {name} model in manifest.json: run `tryon export` first"
            )
        return entry

    def file(self, name: str) -> Path:
        path = self.path / self.entry(name)["file"]
        if not path.is_file():
            raise ModelsMissingError(f"{path} is listed in manifest.json but missing: re-run `tryon export`")
        return path

    def has(self, name: str) -> bool:
        return name in self.manifest.get("models", {})

    def synthetic(self, name: str) -> bool:
        return bool(self.entry(name).get("source", {}).get("synthetic", False))

    @property
    def family(self) -> str:
        """CP-VTON family of the exported GMM/TOM: 'grayxu' (20-channel agnostic) or 'cpvton' (22)."""
        return self.entry("gmm")["family"]
