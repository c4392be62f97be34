# Two commands for a newcomer: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

OV_VENV := .venv-openvino
OV_STAMP := $(OV_VENV)/.installed-stamp

.PHONY: demo test test-openvino

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[cpu,export,serve,ray,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tryon demo

# The bit-for-bit tests again as an AVX2-only x86-64 CPU runs them, on any machine: NumPy's
# OpenBLAS on its Haswell kernels (unless the machine already sets a core type), NumPy's and
# OpenCV's AVX-512 code paths off. ONNX Runtime picks its kernels from the CPU alone; the
# claims that rest on it hold by construction (README, "What is bit for bit").
AVX2_ONLY := OPENBLAS_CORETYPE=$${OPENBLAS_CORETYPE:-Haswell} NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR" \
	OPENCV_CPU_DISABLE=AVX512-SKX,AVX512-CLX

test: $(STAMP)
	$(BIN)/python -m pytest -q
	$(AVX2_ONLY) $(BIN)/python -m pytest -q -m exact -p no:cacheprovider

# The bf16 fast mode needs onnxruntime-openvino, which replaces onnxruntime: it gets a venv of
# its own. That venv borrows everything else (TensorFlow, torch, pytest) from .venv through a
# .pth file instead of installing it twice; its own onnxruntime comes first on sys.path.
$(OV_STAMP): pyproject.toml $(STAMP)
	$(PY) -m venv $(OV_VENV)
	$(BIN)/python -c "import sys; print('\n'.join(p for p in sys.path if p.endswith('site-packages')))" \
		> "$$($(OV_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/borrowed-from-venv.pth"
	$(OV_VENV)/bin/pip install -q -e ".[openvino]"
	touch $(OV_STAMP)

test-openvino: $(OV_STAMP)
	$(OV_VENV)/bin/python -m pytest -q tests/test_openvino.py
