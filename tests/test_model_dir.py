"""manifest.json's structure, and model files checked against what the export recorded."""
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from tryon.errors import ModelMismatchError, ModelsMissingError
from tryon.models import model_dir
from tryon.models.model_dir import VERIFIED, ModelDir


@pytest.fixture
def models(tiny_models_dir, tmp_path) -> Path:
    """A copy of the tiny models (GMM and TOM, the manifest): a folder the test may damage."""
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("gmm.onnx", "tom.onnx", "manifest.json"):
        shutil.copy2(tiny_models_dir / name, folder / name)
    return folder


@pytest.mark.parametrize("manifest, words", [
    ([], "no \"models\" object"),
    (None, "no \"models\" object"),
    ({"models": []}, "no \"models\" object"),
    ({"models": {"gmm": "gmm.onnx"}}, "models.gmm is a str"),
    ({"models": {"gmm": {"file": 5}}}, "models.gmm.file"),
    ({"models": {"gmm": {"file": "../../etc/passwd"}}}, "models.gmm.file"),
    ({"models": {"gmm": {"file": "gmm.onnx", "source": "synthetic"}}}, "models.gmm.source must be dict"),
    ({"models": {"gmm": {"file": "gmm.onnx", "sha256": 1}}}, "models.gmm.sha256 must be str"),
])
def test_a_manifest_of_the_wrong_structure_is_refused_in_one_sentence(tmp_path, manifest, words):
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelsMissingError, match="is not a tryon manifest") as error:
        ModelDir.open(tmp_path)
    assert words in str(error.value) and "tryon export" in str(error.value)


def test_a_manifest_that_is_not_json_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_bytes(b"[" * 100_000)  # deep enough to overflow a recursive parser
    with pytest.raises(ModelsMissingError, match="not valid JSON"):
        ModelDir.open(tmp_path)


def test_gmm_without_a_family_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"models": {"gmm": {"file": "gmm.onnx"}}}))
    with pytest.raises(ModelsMissingError, match="no family"):
        ModelDir.open(tmp_path).family


def test_swapped_model_files_are_refused(models):
    os.rename(models / "gmm.onnx", models / "swap")
    os.rename(models / "tom.onnx", models / "gmm.onnx")
    os.rename(models / "swap", models / "tom.onnx")
    with pytest.raises(ModelMismatchError, match="gmm.onnx is .* bytes but manifest.json recorded"):
        ModelDir.open(models).file("gmm")


def test_a_file_changed_in_place_is_refused_even_after_it_was_verified(models):
    assert ModelDir.open(models).file("tom") == models / "tom.onnx"
    assert "tom.onnx" in json.loads((models / VERIFIED).read_text())
    data = bytearray((models / "tom.onnx").read_bytes())
    data[-100] ^= 0xFF  # same size, one byte flipped
    (models / "tom.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelMismatchError, match="does not match manifest.json"):
        ModelDir.open(models).file("tom")


def test_a_verified_file_is_not_hashed_again_until_it_changes(models, monkeypatch):
    hashed = []
    real = model_dir.sha256_file
    monkeypatch.setattr(model_dir, "sha256_file", lambda path: hashed.append(path.name) or real(path))
    for _ in range(3):
        ModelDir.open(models).file("gmm")
    assert hashed == ["gmm.onnx"]
    os.utime(models / "gmm.onnx", ns=(0, 0))  # touched: hashed again, still the right file
    ModelDir.open(models).file("gmm")
    assert hashed == ["gmm.onnx", "gmm.onnx"]


def test_a_read_only_models_folder_still_verifies(models, monkeypatch):
    def refuse(*_):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(model_dir, "write_atomically", refuse)
    assert ModelDir.open(models).file("gmm").is_file()
    assert not (models / VERIFIED).exists()


def test_a_file_changed_in_place_with_its_timestamps_restored_is_refused(models):
    """Issue 22, N12: the fast path keyed on size, mtime and inode, all of which survive this."""
    path = models / "gmm.onnx"
    ModelDir.open(models).file("gmm")  # verified: remembered in .verified.json
    before = path.stat()
    time.sleep(0.05)  # past the file system's clock tick, so the change time moves
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    with open(path, "r+b") as f:  # in place: the same inode and size
        f.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    with pytest.raises(ModelMismatchError, match="does not match manifest.json"):
        ModelDir.open(models).file("gmm")
