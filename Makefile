# neurotts: `make help` lists the targets.
VENV ?= .venv
# After `make install`, every target uses the project's virtualenv without activating it.
ifneq ($(wildcard $(VENV)/bin/python),)
export PATH := $(abspath $(VENV))/bin:$(PATH)
endif
PY ?= python

.PHONY: help install test test-fast lint bench bench-gpu speak-check demo recipe

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
	$(PY) bench/alignment_speed.py
	$(PY) bench/wavenet_generate.py
	$(PY) bench/train_tacotron2.py
	$(PY) bench/finetune.py

bench-gpu:  ## Every GPU check (~15 min, one H100): STORE=/tmp/store OUT=outputs/gpu-check [QUALITY_MINUTES=6] [DRY_RUN=1: CPU toy run]
	$(PY) bench/gpu_check.py --store $(or $(STORE),/tmp/store) --out $(or $(OUT),outputs/gpu-check) --quality-minutes $(or $(QUALITY_MINUTES),6) $(if $(DRY_RUN),--dry-run)

speak-check:  ## Does it speak? CPU training on 48 sample clips, free-running CER of its lines (CPU_SECONDS=2400 [SEED=N] [SHORT=1])
	$(PY) bench/speak_check.py --cpu-seconds $(or $(CPU_SECONDS),2400) $(if $(SEED),--seed $(SEED)) $(if $(SHORT),--short) $(if $(WORK),--work $(WORK))

demo:  ## Whole chain with tiny models on CPU (~15 min; proves the chain, not the voice): outputs in demo/
	bash recipes/demo.sh

recipe:  ## The full LJSpeech recipe on GPU (STAGE=0 STOP_STAGE=5 NGPU=1 to choose)
	bash recipes/ljspeech/run.sh --stage $(or $(STAGE),0) --stop-stage $(or $(STOP_STAGE),5) --ngpu $(or $(NGPU),1)
