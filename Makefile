# The two set-up commands of the README:
#   make test   build the virtual environment from nothing, install, run the test suite
#   make demo   the embedded default: synthetic RGB -> event adaptation on CPU
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_FLAGS ?= --disable-pip-version-check --progress-bar off
STAMP := $(VENV)/.madm-installed

.PHONY: venv test test-fast demo demo-depth demo-infrared benchmark-synthetic mmcv-ops clean

venv: $(STAMP)

$(STAMP): setup.py requirements/runtime.txt requirements/tests.txt requirements/constraints.txt
	@echo ">> creating $(VENV) with $(PYTHON) (first time: ~2-3 min, ~2.2 GB)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) -q -r requirements/tests.txt -c requirements/constraints.txt 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(PY) -m pip install $(PIP_FLAGS) -q --no-deps --no-build-isolation -e . 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(PY) -c "import madm, mmseg.models, diffusers; print('madm', madm.__version__, 'ready')"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

demo: $(STAMP)
	$(PY) tools/demo.py --modality event

demo-depth: $(STAMP)
	$(PY) tools/demo.py --modality depth

demo-infrared: $(STAMP)
	$(PY) tools/demo.py --modality infrared

benchmark-synthetic: $(STAMP)
	$(PY) tools/benchmark_synthetic.py

# Opt-in: full mmcv 2.1.0 with compiled CPU ops (~20 min on 2 cores).
mmcv-ops: $(STAMP)
	bash tools/build_mmcv_ops.sh $(VENV)

clean:
	rm -rf $(VENV) work_dirs .pytest_cache
