PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export JAX_PLATFORMS ?= cpu

.PHONY: demo test test-all bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dsm train --config configs/quickstart.yaml --name quickstart
	$(BIN)/dsm sample $$($(BIN)/dsm runs --latest quickstart)
	$(BIN)/dsm eval $$($(BIN)/dsm runs --latest quickstart)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m ''

bench: $(STAMP)
	$(BIN)/pip install --quiet 'torch==2.13.0'  # the CPU build the tables were measured with (an open range can pull a multi-GB CUDA build)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/run_all.py --images

clean:
	rm -rf $(VENV) runs .pytest_cache
