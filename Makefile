# Two commands on a fresh machine: `make demo` and `make test`.
# torch 2.13.0 is installed first (the CPU wheel); the package's torch range
# admits it, so installing the package pulls no CUDA wheels.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean-venv samples bench-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,plots]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash sample_models/demo.sh

# Retrain the shipped checkpoints from the shipped data (rebuilding the data
# itself needs build-time packages: see sample_models/README.md).
samples: $(STAMP)
	$(BIN)/python sample_models/build.py --train-only --unlearn "$(BIN)/unlearn"

# Benchmark-only references (cleanlab, curvlinops, scikit-learn), pinned to the same torch.
bench-deps: $(STAMP)
	$(BIN)/pip install --quiet -c benchmarks/constraints.txt -r benchmarks/requirements.txt

clean-venv:
	rm -rf $(VENV)
