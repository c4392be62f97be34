"""Shared fixtures: tiny synthetic models exported once per test session, and the full-size
ones for the tests that need the published network sizes.

The reduced JPP-Net is the same graph code at 1/8 width and fewer blocks, so the whole
pipeline runs in seconds; full-size models are exercised by the slow tests.
"""
import time
from dataclasses import dataclass
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
    from tryon.pipeline import TryOn

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


@dataclass(frozen=True)
class FullModels:
    checkpoints: Path
    jppnet_checkpoint: Path  # the TF1 checkpoint folder (JPPNet-s2)
    models: Path  # jppnet.onnx, jppnet.winograd.onnx, gmm.onnx, tom.onnx, manifest.json
    jppnet_write_s: float  # how long writing the synthetic JPP-Net checkpoint took


@pytest.fixture(scope="session")
def full_models(tmp_path_factory) -> FullModels:
    """The published network sizes with synthetic weights (seed 0), written and exported once
    per session for every slow test that needs them: 3-7 min on 2 cores."""
    from tryon.export import cpvton_synth, jppnet_synth
    from tryon.export.export_models import export_all
    from tryon.export.jppnet_graph import FULL
    from tryon.export.sources import mark_untrained

    folder = tmp_path_factory.mktemp("full_size")
    checkpoints = folder / "checkpoints"
    mark_untrained(checkpoints)
    start = time.perf_counter()
    written = jppnet_synth.write_synthetic(checkpoints, seed=0, config=FULL, formats=("ckpt",))
    write_s = time.perf_counter() - start
    cpvton_synth.write_synthetic(checkpoints, "grayxu", seed=0)
    export_all(checkpoints, folder / "models")
    return FullModels(checkpoints, written["jppnet_ckpt"], folder / "models", write_s)
