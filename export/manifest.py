"""models_onnx/manifest.json: what was exported, from what, and how well it matched its source.

Each export calls `record(models_dir, name, entry)` for the model it wrote; the entry
gets the ONNX file's hash, its input/output signature and the tool versions added here.
"""
from __future__ import annotations

import datetime
import hashlib
from dataclasses import replace
from pathlib import Path

from tryon.bench.versions import installed_versions
from tryon.models.manifest import Manifest, ModelEntry
from tryon.models.model_dir import sha256_file

TOOLS = ("onnx", "onnxruntime", "onnxruntime-gpu", "torch", "tensorflow-cpu", "tensorflow", "tf2onnx", "onnxscript", "numpy")


def sha256_files(paths) -> str:
    """One hash over several files (a TF checkpoint is an index plus data shards)."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode())
        digest.update(bytes.fromhex(sha256_file(path)))
    return digest.hexdigest()


def source_sha256(path: str | Path) -> str:
    """Hash of a checkpoint: one file, or every file of a checkpoint directory."""
    path = Path(path)
    if path.is_dir():
        return sha256_files(p for p in path.iterdir() if p.is_file())
    return sha256_file(path)


def tool_versions() -> dict[str, str]:
    return installed_versions(*TOOLS)


def io_signature(onnx_path: str | Path) -> dict[str, list[dict]]:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)

    def describe(values):
        out = []
        for v in values:
            dims = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            out.append({
                "name": v.name,
                "shape": dims,
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
            })
        return out

    return {"inputs": describe(model.graph.input), "outputs": describe(model.graph.output)}


def record(models_dir: str | Path, name: str, entry: ModelEntry | dict) -> dict:
    """Add or replace the manifest entry for one exported model; returns the full entry as
    written. A dict is read with `ModelEntry.from_json`, so an entry of the wrong structure
    (a `file` outside the models folder, a key of the wrong type) is refused before anything
    is hashed or written."""
    models_dir = Path(models_dir)
    if isinstance(entry, dict):
        entry = ModelEntry.from_json(entry, f"models.{name}")
    if entry.source is not None and entry.source.path is not None:
        # absolute, so tools run from elsewhere find the source
        entry = replace(entry, source=replace(entry.source, path=str(Path(entry.source.path).resolve())))
    onnx_path = models_dir / entry.file
    signature = io_signature(onnx_path)
    full = replace(entry, sha256=sha256_file(onnx_path), bytes=onnx_path.stat().st_size,
                   inputs=signature["inputs"], outputs=signature["outputs"], tools=tool_versions(),
                   exported_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    Manifest.read(models_dir, missing_ok=True).with_entry(name, full).write(models_dir)
    return full.to_json()
