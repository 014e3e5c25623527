# Two commands for a fresh machine with Python >= 3.10 and make:
#   make run    set up .venv, then train the default DIFFormer-s on the embedded Cora (one run)
#   make test   set up .venv, then run the test suite (fast profile; slow/gpu markers skipped)
# TORCH_SPEC overrides the torch requirement (default: the CPU build torch==2.13.0); a torch that
# the environment already has is kept (the venv sees the system site-packages).

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.diffusion-pde-installed
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: setup run test test-slow test-gpu clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv --system-site-packages $(VENV)
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "keeping the installed torch $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	else \
		$(PIP) install "$(TORCH_SPEC)"; \
	fi
	$(PIP) install -q -e ".[test]"
	@touch $@

run: setup
	$(BIN)/diffusion-pde train --dataset cora --model difformer_s --preset paper --out runs/make-run --overwrite --plot

test: setup
	$(BIN)/python -m pytest

test-slow: setup
	$(BIN)/python -m pytest -m slow

test-gpu: setup
	$(BIN)/python -m pytest -m gpu

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
