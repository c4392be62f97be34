"""Shared fixtures: tiny synthetic models exported once per test session.

The reduced JPP-Net is the same graph code at 1/8 width and fewer blocks, so the whole
pipeline runs in seconds; full-size models are exercised by the slow parity tests.
"""
from pathlib import Path

import pytest

from shared_data import viton_dir



@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> Path:
    from tryon.export.synthetic import write_synthetic

    folder = tmp_path_factory.mktemp("checkpoints")
    write_synthetic(folder, families=("grayxu",), jppnet="reduced", jppnet_formats=("pb",))
    return folder


@pytest.fixture(scope="session")
def tiny_models_dir(tiny_checkpoints, tmp_path_factory) -> Path:
    from tryon.export.export_models import export_all

    folder = tmp_path_factory.mktemp("models_onnx")
    export_all(tiny_checkpoints, folder)
    return folder


@pytest.fixture(scope="session")
def tiny_tryon(tiny_models_dir):
    from tryon.runtime.tryon import TryOn

    return TryOn.from_dir(tiny_models_dir, provider="cpu")


@pytest.fixture(scope="session")
def viton_pair() -> tuple[Path, Path]:
    """A real VITON person photo and garment from ../shared (research use; never copied here)."""
    viton = viton_dir()
    person = sorted((viton / "person").glob("*.jpg"))[0]
    cloth = viton / "cloth" / person.name.replace("_0.jpg", "_1.jpg")
    assert person.is_file() and cloth.is_file(), f"VITON samples missing under {viton}"
    return person, cloth


@pytest.fixture(scope="session", autouse=True)
def private_cache_home(tmp_path_factory):
    """The person store's default folder lives under XDG_CACHE_HOME: keep every test's (and
    every `tryon` subprocess's) store out of the user's real cache."""
    import os

    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg_cache"))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server on a free loopback port for the whole session; skips without one."""
    import shutil

    from redis_process import INSTALL, RedisServer

    if shutil.which("redis-server") is None:
        pytest.skip(INSTALL)
    pytest.importorskip("redis", reason="the redis package is missing: pip install 'tryon-onnx[redis]'")
    server = RedisServer(tmp_path_factory.mktemp("redis") / "redis.log").start()
    yield server
    server.stop()
