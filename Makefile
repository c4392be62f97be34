# Two commands for a newcomer: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[cpu,export,serve,ray,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tryon demo

test: $(STAMP)
	$(BIN)/python -m pytest -q
