"""The optimised-model cache of runtime/session.py: written once, reused, equal outputs,
replaced when the model changes, and never in the way where it cannot be written."""
import os

import numpy as np
import pytest
from tryon.models.session import CACHE_DIR, SessionOptions, cached_model_path, create_session

CPU = SessionOptions(provider="cpu", threads=2)


@pytest.fixture()
def gmm_copy(tiny_models_dir, tmp_path):
    path = tmp_path / "gmm.onnx"
    path.write_bytes((tiny_models_dir / "gmm.onnx").read_bytes())
    return path


def _inputs(session):
    rng = np.random.default_rng(0)
    return {i.name: rng.standard_normal([2 if isinstance(d, str) else d for d in i.shape]).astype(np.float32)
            for i in session.get_inputs()}


def test_first_load_writes_the_cache_and_later_loads_read_it(gmm_copy):
    cached = cached_model_path(gmm_copy, CPU)
    assert not cached.exists()
    first = create_session(gmm_copy, CPU)
    assert cached.is_file() and (cached.parent / f"{cached.name}.data").is_file()
    written = cached.stat().st_mtime_ns
    second = create_session(gmm_copy, CPU)
    assert cached.stat().st_mtime_ns == written
    plain = create_session(gmm_copy, SessionOptions(provider="cpu", threads=2, optimization="extended"))
    feeds = _inputs(first)
    for a, b, c in zip(first.run(None, feeds), second.run(None, feeds), plain.run(None, feeds)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, atol=2e-3)  # the export's tolerance, 1e-3, is vs torch
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".incomplete")]


def test_a_changed_model_gets_a_new_copy_and_the_old_one_goes(gmm_copy):
    old = cached_model_path(gmm_copy, CPU)
    create_session(gmm_copy, CPU)
    os.utime(gmm_copy, ns=(1, 1))
    new = cached_model_path(gmm_copy, CPU)
    assert new != old
    create_session(gmm_copy, CPU)
    assert new.is_file() and not old.exists() and not (old.parent / f"{old.name}.data").exists()


def test_a_models_folder_where_the_cache_cannot_be_written_loads_without_it(gmm_copy):
    blocker = gmm_copy.parent / CACHE_DIR
    blocker.write_text("not a folder")  # mkdir fails for every user, root included
    session = create_session(gmm_copy, CPU)
    assert [o.shape for o in session.run(None, _inputs(session))]
    assert blocker.read_text() == "not a folder"


def test_a_damaged_copy_is_written_again(gmm_copy):
    create_session(gmm_copy, CPU)
    cached = cached_model_path(gmm_copy, CPU)
    data = cached.parent / f"{cached.name}.data"
    data.write_bytes(data.read_bytes()[:1000])  # truncated, as by a full disk
    session = create_session(gmm_copy, CPU)
    assert [o.shape for o in session.run(None, _inputs(session))]
    assert data.stat().st_size > 1000
