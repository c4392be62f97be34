"""manifest.json as typed records: what each exported model is, where it came from, how well
it matched its source, and (for the reduced-precision JPP-Nets) how well it agrees with fp32.

`Manifest.read(folder)` is the one reader: it refuses a manifest of the wrong structure in
one sentence (as a `ModelsMissingError`), so no other code looks at raw keys. Every entry
round-trips: `ModelEntry.from_json(x).to_json() == x`, keys in their order included, and a
key this module does not name is kept in `extra` and written back unchanged, so a manifest
written by a newer or older export still loads and is rewritten as it was.

The JSON shape (format 1):

    {"format": 1, "models": {"<name>": {"file": "<name>.onnx", "sha256": "...", "bytes": 123,
                                        "source": {...}, "validation": {...}, ...}}}
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ModelsMissingError

MANIFEST = "manifest.json"
FORMAT = 1
SHAPE = '{"models": {"<name>": {"file": "<name>.onnx", "sha256": "...", ...}}}'
NUMBER = (int, float)


class ManifestStructureError(ValueError):
    """A manifest or entry of the wrong structure; the message names the key
    (`models.<name>.<key> must be ...`). `Manifest.read` reports it as a ModelsMissingError."""


def _kind_name(kind) -> str:
    return "number" if kind == NUMBER else kind.__name__


class _Record:
    """A JSON object with named, typed keys; keys it does not name are kept in `extra`, and
    the order keys were read in is kept in `key_order` (not compared), so `to_json` writes
    back what `from_json` read."""

    # key -> (kind, nullable). A kind is a type, a tuple of types, or a _Record subclass.
    KINDS: ClassVar[dict[str, tuple[Any, bool]]] = {}

    @classmethod
    def _kwargs(cls, data: dict, where: str) -> dict:
        kwargs: dict[str, Any] = {"extra": {}, "key_order": tuple(data)}
        for key, value in data.items():
            if key not in cls.KINDS:
                kwargs["extra"][key] = value
                continue
            kind, nullable = cls.KINDS[key]
            if value is None and nullable:
                kwargs[key] = None
            elif isinstance(kind, type) and issubclass(kind, _Record):
                if not isinstance(value, dict):
                    raise ManifestStructureError(f"{where}.{key} must be dict, got {type(value).__name__}")
                kwargs[key] = kind.from_json(value, f"{where}.{key}")
            elif not isinstance(value, kind):
                raise ManifestStructureError(f"{where}.{key} must be {_kind_name(kind)}, got {type(value).__name__}")
            else:
                kwargs[key] = value
        return kwargs

    @classmethod
    def from_json(cls, data: dict, where: str = "entry"):
        if not isinstance(data, dict):
            raise ManifestStructureError(f"{where} is a {type(data).__name__}, not an object")
        return cls(**cls._kwargs(data, where))

    def to_json(self) -> dict:
        named = {f.name for f in fields(self)} - {"extra", "key_order"}
        out: dict[str, Any] = {}

        def put(key):
            if key in named:
                value = getattr(self, key)
                out[key] = value.to_json() if isinstance(value, _Record) else value
            elif key in self.extra:
                out[key] = self.extra[key]

        for key in self.key_order:  # as read, null values included
            put(key)
        for f in fields(self):  # set since (or built in code): written when not None
            if f.name in named and f.name not in out and getattr(self, f.name) is not None:
                put(f.name)
        for key in self.extra:
            if key not in out:
                put(key)
        return out


@dataclass(frozen=True)
class ModelSource(_Record):
    """What a model was exported from: a checkpoint (path, sha256, format), or for a
    reduced-precision JPP-Net the fp32 graph (fp32: its file name, sha256: its hash)."""
    path: str | None = None
    sha256: str | None = None
    format: str | None = None
    synthetic: bool | None = None
    fp32: str | None = None
    extra: dict = field(default_factory=dict)
    key_order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    KINDS: ClassVar = {"path": (str, True), "sha256": (str, True), "format": (str, True),
                       "synthetic": (bool, True), "fp32": (str, True)}


@dataclass(frozen=True)
class Agreement(_Record):
    """A reduced-precision JPP-Net against fp32 on real photos (export/quantize.py)."""
    photos: int | None = None
    scales: list | None = None
    mirror: bool | None = None
    provider: str | None = None
    jppnet_providers: list | None = None
    label_agreement: float | None = None
    label_agreement_min: float | None = None
    keypoint_px_median: float | None = None
    keypoint_px_max: float | None = None
    keypoints_within_3px: float | None = None
    tryon_mean_abs_diff_u8: float | None = None
    calibrated_on_these_photos: bool | None = None
    cpu: str | None = None
    vector_extensions: list | None = None
    extra: dict = field(default_factory=dict)
    key_order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    KINDS: ClassVar = {"photos": (int, True), "scales": (list, True), "mirror": (bool, True),
                       "provider": (str, True), "jppnet_providers": (list, True),
                       "label_agreement": (NUMBER, True), "label_agreement_min": (NUMBER, True),
                       "keypoint_px_median": (NUMBER, True), "keypoint_px_max": (NUMBER, True),
                       "keypoints_within_3px": (NUMBER, True), "tryon_mean_abs_diff_u8": (NUMBER, True),
                       "calibrated_on_these_photos": (bool, True), "cpu": (str, True),
                       "vector_extensions": (list, True)}


@dataclass(frozen=True)
class ModelEntry(_Record):
    """One exported model: its file in the models folder, that file's size and hash (checked
    before it loads), and what the export recorded about it."""
    file: str
    sha256: str | None = None
    bytes: int | None = None
    family: str | None = None  # CP-VTON graphs: grayxu or cpvton
    variant: str | None = None  # JPP-Net graphs: full or reduced
    precision: str | None = None  # reduced-precision JPP-Nets: int8, fp16, bf16
    opset: int | None = None
    source: ModelSource | None = None
    validation: dict | None = None  # the export's per-output report
    agreement: Agreement | None = None
    quantization: dict | None = None
    execution_provider: dict | None = None  # bf16: the provider and its options
    winograd_convolutions: int | None = None
    inputs: list | None = None
    outputs: list | None = None
    tools: dict | None = None
    exported_at: str | None = None
    extra: dict = field(default_factory=dict)
    key_order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    # file, source, sha256, bytes and family were the keys checked before the manifest was typed:
    # null is refused there as it was; elsewhere null is kept (quantize may record a null variant).
    KINDS: ClassVar = {"file": (str, False), "source": (ModelSource, False), "sha256": (str, False),
                       "bytes": (int, False), "family": (str, False), "variant": (str, True),
                       "precision": (str, True), "opset": (int, True), "validation": (dict, True),
                       "agreement": (Agreement, True), "quantization": (dict, True),
                       "execution_provider": (dict, True), "winograd_convolutions": (int, True),
                       "inputs": (list, True), "outputs": (list, True), "tools": (dict, True),
                       "exported_at": (str, True)}

    @classmethod
    def from_json(cls, data: dict, where: str = "entry") -> "ModelEntry":
        if not isinstance(data, dict):
            raise ManifestStructureError(f"{where} is a {type(data).__name__}, not an object")
        file = data.get("file")
        if not isinstance(file, str) or not file or Path(file).name != file:
            raise ManifestStructureError(f"{where}.file must be a file name in the models folder, got {file!r}")
        return cls(**cls._kwargs(data, where))


@dataclass(frozen=True)
class Manifest:
    """models_onnx/manifest.json: the exported models by name."""
    format: int | None = FORMAT
    models: dict[str, ModelEntry] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    key_order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def from_json(cls, data) -> "Manifest":
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            raise ManifestStructureError(f"no \"models\" object at the top (found {type(data).__name__})")
        models = {name: ModelEntry.from_json(entry, f"models.{name}") for name, entry in data["models"].items()}
        extra = {key: value for key, value in data.items() if key not in ("format", "models")}
        return cls(data.get("format"), models, extra, tuple(data))

    def to_json(self) -> dict:
        values = {"format": self.format, "models": {name: entry.to_json() for name, entry in self.models.items()}}
        out = {}
        for key in (*self.key_order, "format", "models", *self.extra):
            if key in out:
                continue
            if key in values and (key in self.key_order or values[key] is not None):
                out[key] = values[key]
            elif key in self.extra:
                out[key] = self.extra[key]
        return out

    @classmethod
    def read(cls, folder: str | Path, missing_ok: bool = False) -> "Manifest":
        """The manifest in `folder`; a missing, unreadable or misshapen one is a ModelsMissingError
        (with `missing_ok`, a missing one is an empty Manifest: what an export starts from)."""

        folder = Path(folder)
        path = folder / MANIFEST
        if not path.is_file():
            if missing_ok:
                return cls()
            raise ModelsMissingError(
                f"no exported models in {folder} (manifest.json missing): run `tryon export` first"
            )
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ModelsMissingError(f"{path} is not valid JSON ({exc}); re-run `tryon export`") from None
        try:
            return cls.from_json(data)
        except ManifestStructureError as exc:
            raise ModelsMissingError(f"{path} is not a tryon manifest ({exc}; expected {SHAPE}): "
                                     "re-run `tryon export`") from None

    def with_entry(self, name: str, entry: ModelEntry) -> "Manifest":
        """This manifest with `name` added, or replaced where it was."""
        return Manifest(self.format, {**self.models, name: entry}, self.extra, self.key_order)

    def write(self, folder: str | Path) -> None:
        """Write manifest.json into `folder` atomically: readers see the old one or the new one."""
        folder = Path(folder)
        tmp = folder / f".{MANIFEST}.{os.getpid()}.tmp"
        try:
            tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
            os.replace(tmp, folder / MANIFEST)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
