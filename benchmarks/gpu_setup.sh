#!/usr/bin/env bash
# Prepare the CUDA test host (../shared/gpu/README.md) in the repository root: install the wheels carried in .whl,
# build random-init model shapes with the tokenizer carried in .gpu/. Sourced, so that what it exports stays:
#
#   . benchmarks/gpu_setup.sh 1B [3B]    then: python3 -m trainer bench --model "$TRAINER_GPU_MODELS/llama-3.2-1B-random" ...
#
# The shapes: 1B 3B (Llama 3.2), 8B (Llama 3.1), qwen3-4B qwen3-8B gemma3-4B mistral-7B phi4-mini
# (benchmarks/gpu_models.py, their folders under $TRAINER_GPU_MODELS; bf16: an 8B takes 16 GB of the host's disk).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" HF_HUB_OFFLINE=1 TRAINER_GPU_MODELS=/tmp/models PYTHONUNBUFFERED=1
python3 benchmarks/gpu_models.py "$TRAINER_GPU_MODELS" "$@"
