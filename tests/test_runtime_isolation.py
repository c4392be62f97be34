"""tryon must run with onnxruntime, numpy and opencv only: no torch, no TensorFlow."""
import pkgutil
import subprocess
import sys
from pathlib import Path

import tryon


def blocking(*packages: str) -> str:
    """Python code that makes importing any of these packages fail, as if not installed."""
    return f"""
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {packages!r}:
            raise ImportError('blocked: imported ' + name, name=name.split('.')[0])
sys.meta_path.insert(0, Blocker())
"""


BLOCK_FRAMEWORKS = blocking("torch", "tensorflow", "tf2onnx", "tf_keras", "keras")
BLOCKER = BLOCK_FRAMEWORKS + """
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
print('imported', len(sys.argv) - 1)
"""


def runtime_modules():
    root = Path(tryon.__file__).parent
    return ["tryon"] + [m.name for m in pkgutil.walk_packages([str(root)], "tryon.")]


def test_every_runtime_module_imports_without_frameworks():
    modules = runtime_modules()
    assert "tryon.pipeline" in modules and "tryon.cli" in modules
    done = subprocess.run([sys.executable, "-c", BLOCKER, *modules], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"imported {len(modules)}" in done.stdout


def test_the_blocker_does_block():
    done = subprocess.run([sys.executable, "-c", BLOCKER, "tryon.export.cpvton_networks"], capture_output=True, text=True)
    assert done.returncode != 0 and "imported torch" in done.stderr


BLOCK_EXTRAS = blocking("fastapi", "starlette", "uvicorn", "multipart", "python_multipart", "fastapi_offline",
                        "prometheus_client", "redis", "ray") + """
from typer.testing import CliRunner
from tryon.cli import app
for argv in (['--help'], ['run', '--help'], ['serve']):
    done = CliRunner().invoke(app, argv)
    print(argv[0], done.exit_code, (done.stdout + (done.stderr or '')).replace(chr(10), ' '))
"""


def test_the_cli_runs_without_the_serve_extras():
    """Only `tryon serve` needs FastAPI (and Ray, Redis only their options): without them every
    other verb works and serve says which extra to install, with the environment's exit code."""
    done = subprocess.run([sys.executable, "-c", BLOCK_EXTRAS], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["--help"].startswith("0 ") and lines["run"].startswith("0 ")
    assert lines["serve"].startswith("5 ") and "serve needs the serve extra" in lines["serve"]
