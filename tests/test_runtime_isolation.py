"""tryon must run with onnxruntime, numpy and opencv only: no torch, no TensorFlow."""
import pkgutil
import subprocess
import sys
from pathlib import Path

import tryon

BLOCK_FRAMEWORKS = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'tensorflow', 'tf2onnx', 'tf_keras', 'keras'):
            raise ImportError('blocked: imported ' + name)
sys.meta_path.insert(0, Blocker())
"""
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
