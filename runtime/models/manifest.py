"""manifest.json as typed records: what each exported model is, where it came from, how well
it matched its source, and (for the reduced-precision JPP-Nets) how well it agrees with fp32.

`Manifest.read(folder)` is the one reader: it refuses a manifest of the wrong structure in
one sentence (as a `ModelsMissingError`), so no other code looks at raw keys. Every entry
round-trips (`ModelEntry.from_json(x).to_json() == x`), so a manifest written by a newer or
older export still loads and is rewritten as it was. Format 1:

    {"format": 1, "models": {"<name>": {"file": "<name>.onnx", "sha256": "...", "bytes": 123,
                                        "source": {...}, "validation": {...}, ...}}}
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, get_args, get_type_hints

from ..errors import ModelsMissingError
from ..files import write_atomically

MANIFEST = "manifest.json"
FORMAT = 1
SHAPE = '{"models": {"<name>": {"file": "<name>.onnx", "sha256": "...", ...}}}'
NUMBER = (int, float)


class ManifestStructureError(ValueError):
    """A manifest or entry of the wrong structure; the message names the key
    (`models.<name>.<key> must be ...`). `Manifest.read` reports it as a ModelsMissingError."""


@functools.cache
def _kinds(cls) -> dict[str, tuple[Any, bool]]:
    """key -> (kind, nullable), read from a record's field annotations: a float takes any
    number, a _Record a nested object, and `X | None` takes null unless NOT_NULL names it."""
    hints = get_type_hints(cls)
    kinds = {}
    for f in fields(cls):
        if f.name not in ("extra", "key_order"):
            kind = next(t for t in get_args(hints[f.name]) or (hints[f.name],) if t is not type(None))
            kinds[f.name] = (NUMBER if kind is float else kind,
                             type(None) in get_args(hints[f.name]) and f.name not in cls.NOT_NULL)
    return kinds


@dataclass(frozen=True)
class _Record:
    """A JSON object with named, typed keys (its dataclass fields); keys it does not name are
    kept in `extra`, and the order keys were read in is kept in `key_order` (not compared), so
    `to_json` writes back what `from_json` read."""
    extra: dict = field(default_factory=dict, kw_only=True)
    key_order: tuple[str, ...] = field(default=(), compare=False, repr=False, kw_only=True)

    NOT_NULL: ClassVar[frozenset] = frozenset()

    @classmethod
    def from_json(cls, data: dict, where: str = "entry"):
        if not isinstance(data, dict):
            raise ManifestStructureError(f"{where} is a {type(data).__name__}, not an object")
        kinds = _kinds(cls)
        kwargs: dict[str, Any] = {"extra": {}, "key_order": tuple(data)}
        for key, value in data.items():
            if key not in kinds:
                kwargs["extra"][key] = value
                continue
            kind, nullable = kinds[key]
            if value is None and nullable:
                kwargs[key] = None
            elif isinstance(kind, type) and issubclass(kind, _Record):
                if not isinstance(value, dict):
                    raise ManifestStructureError(f"{where}.{key} must be dict, got {type(value).__name__}")
                kwargs[key] = kind.from_json(value, f"{where}.{key}")
            elif not isinstance(value, kind):
                name = "number" if kind == NUMBER else kind.__name__
                raise ManifestStructureError(f"{where}.{key} must be {name}, got {type(value).__name__}")
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def to_json(self) -> dict:
        named = {key: getattr(self, key) for key in _kinds(type(self))}
        values = {**self.extra, **named}
        # The keys as read (null values included), then those set since or built in code (written
        # when not None), then the unnamed ones.
        keys = [*self.key_order, *(key for key, value in named.items() if value is not None), *self.extra]
        return {key: values[key].to_json() if isinstance(values[key], _Record) else values[key]
                for key in keys if key in values}


@dataclass(frozen=True)
class ModelSource(_Record):
    """What a model was exported from: a checkpoint (path, sha256, format), or for a
    reduced-precision JPP-Net the fp32 graph (fp32: its file name, sha256: its hash)."""
    path: str | None = None
    sha256: str | None = None
    format: str | None = None
    synthetic: bool | None = None
    fp32: str | None = None


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

    # file, source, sha256, bytes and family were the keys checked before the manifest was typed:
    # null is refused there as it was; elsewhere null is kept (quantize may record a null variant).
    NOT_NULL: ClassVar = frozenset({"source", "sha256", "bytes", "family"})

    @classmethod
    def from_json(cls, data: dict, where: str = "entry") -> "ModelEntry":
        file = data.get("file") if isinstance(data, dict) else None
        if isinstance(data, dict) and (not isinstance(file, str) or not file or Path(file).name != file):
            raise ManifestStructureError(f"{where}.file must be a file name in the models folder, got {file!r}")
        return super().from_json(data, where)


@dataclass(frozen=True)
class Manifest(_Record):
    """models_onnx/manifest.json: the exported models by name."""
    format: int | None = FORMAT
    models: dict[str, ModelEntry] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data) -> "Manifest":
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            raise ManifestStructureError(f"no \"models\" object at the top (found {type(data).__name__})")
        models = {name: ModelEntry.from_json(entry, f"models.{name}") for name, entry in data["models"].items()}
        extra = {key: value for key, value in data.items() if key not in ("format", "models")}
        return cls(data.get("format"), models, extra=extra, key_order=tuple(data))

    def to_json(self) -> dict:
        return {key: {name: entry.to_json() for name, entry in value.items()} if key == "models" else value
                for key, value in super().to_json().items()}

    @classmethod
    def read(cls, folder: str | Path, missing_ok: bool = False) -> "Manifest":
        """The manifest in `folder`; a missing, unreadable or misshapen one is a ModelsMissingError
        (with `missing_ok`, a missing one is an empty Manifest: what an export starts from)."""
        path = Path(folder) / MANIFEST
        if not path.is_file():
            if missing_ok:
                return cls()
            raise ModelsMissingError(f"no exported models in {folder} (manifest.json missing): "
                                     "run `tryon export` first")
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
        return replace(self, models={**self.models, name: entry})

    def write(self, folder: str | Path) -> None:
        """Write manifest.json into `folder` atomically: readers see the old one or the new one."""
        write_atomically(Path(folder) / MANIFEST, (json.dumps(self.to_json(), indent=2) + "\n").encode())
