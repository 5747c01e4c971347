# neurotts: `make help` lists the targets.
PY ?= python
VENV ?= .venv

.PHONY: help install test test-fast lint bench

help:  ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

install:  ## Create .venv and install neurotts with its dev and eval extras
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install -e ".[dev,eval]"

test:  ## Run the whole test suite (as CI does)
	$(PY) -m pytest -q

test-fast:  ## Run the tests not marked slow
	$(PY) -m pytest -q -m "not slow"

lint:  ## Lint with ruff
	$(PY) -m ruff check neurotts tests bench

bench:  ## Run the benchmarks (each prints one JSON line)
	$(PY) bench/prepare.py
	$(PY) bench/text_normalize.py
