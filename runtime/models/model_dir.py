"""Finds the exported models, reads what manifest.json says about them, and checks that
each file is the one the export recorded.

`ModelDir.file(name)` is the one way the runtime gets a model's path, so every loader
(`tryon run`, `tryon serve`, `tryon bench`) refuses a file that was changed, swapped or
damaged since the export: its size and sha256 must match the manifest. Hashing the
full-size JPP-Net costs about a second, so a verified file's size, mtime, inode and inode
change time are remembered in `<models>/.verified.json` and a file whose stat has not changed
since is not hashed again. The change time is the one a user cannot restore: writing the file
and setting its mtime back with os.utime both move it to now (issue 22, N12).
"""
from __future__ import annotations

import hashlib
import json
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelMismatchError, ModelsMissingError
from ..files import write_atomically
from .manifest import Manifest, ModelEntry

MODEL_FILES = {"jppnet": "jppnet.onnx", "gmm": "gmm.onnx", "tom": "tom.onnx"}
VERIFIED = ".verified.json"


@dataclass(frozen=True)
class ModelDir:
    path: Path
    manifest: Manifest

    @classmethod
    def open(cls, path: str | Path) -> "ModelDir":
        return cls(Path(path), Manifest.read(path))

    def entry(self, name: str) -> ModelEntry:
        entry = self.manifest.models.get(name)
        if entry is None:
            raise ModelsMissingError(f"{self.path} has no {name} model in manifest.json: run `tryon export` first")
        return entry

    def file(self, name: str) -> Path:
        """The model's path, after checking it is the file the export recorded."""
        entry = self.entry(name)
        path = self.path / entry.file
        if not path.is_file():
            raise ModelsMissingError(f"{path} is listed in manifest.json but missing: re-run `tryon export`")
        _verify(path, entry)
        return path

    def has(self, name: str) -> bool:
        return name in self.manifest.models

    def synthetic(self, name: str) -> bool:
        source = self.entry(name).source
        return bool(source is not None and source.synthetic)

    @property
    def family(self) -> str:
        """CP-VTON family of the exported GMM/TOM: 'grayxu' (20-channel agnostic) or 'cpvton' (22)."""
        family = self.entry("gmm").family
        if family not in ("grayxu", "cpvton"):
            raise ModelsMissingError(f"{self.path}/manifest.json gives gmm no family (grayxu or cpvton), got "
                                     f"{family!r}: re-run `tryon export`")
        return family


def _verify(path: Path, entry: ModelEntry) -> None:
    """Refuse a file whose size or sha256 differs from its manifest entry (entries without a
    hash, written by hand, are taken as they are)."""
    expected = entry.sha256
    if not expected:
        return
    stat = path.stat()
    if entry.bytes is not None and stat.st_size != entry.bytes:
        raise ModelMismatchError(f"{path} is {stat.st_size:,} bytes but manifest.json recorded {entry.bytes:,}: "
                                 "it was changed, swapped or damaged after export; re-run `tryon export`")
    seen = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns, "inode": stat.st_ino,
            "sha256": expected}
    try:
        verified = json.loads((path.parent / VERIFIED).read_text())
    except (OSError, ValueError):
        verified = None
    verified = verified if isinstance(verified, dict) else {}
    if verified.get(path.name) == seen:
        return
    actual = sha256_file(path)
    if actual != expected:
        raise ModelMismatchError(f"{path} does not match manifest.json (sha256 {actual[:12]}..., recorded "
                                 f"{expected[:12]}...): it was changed, swapped or damaged after export; "
                                 "re-run `tryon export`")
    with suppress(OSError):  # best effort: a read-only folder means hashing again at the next load
        write_atomically(path.parent / VERIFIED, json.dumps({**verified, path.name: seen}).encode())


def sha256_file(path: str | Path) -> str:
    """The sha256 manifest.json records for a file (export writes it, loading checks it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

