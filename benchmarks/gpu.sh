#!/usr/bin/env bash
# The streaming and server benchmarks at the real Qwen3-VL-8B config (random weights, bf16) on one GPU.
#
#   bash benchmarks/gpu.sh            # on a machine with a CUDA GPU and a venv holding CUDA torch + topreward
#
# Random weights of the full 8B shape (36 text layers, the full vision tower) are built locally, so nothing is
# downloaded; the values mean nothing, the times are those of the real model. Prints the machine-readable
# lines of benchmarks/streaming.py (forwards per round, server steps per second with 1, 8 and 32 clients,
# batched pushes against one forward per push, peak RSS) and of benchmarks/prefix_sharing.py, after
# nvidia-smi's name of the device: quote the figures with it.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-../.venv/bin/python}
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device: run this on a GPU machine'"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
model=(--preset 8b --text-layers 0 --vision-layers 0 --device cuda --dtype bfloat16)
"$PY" streaming.py "${model[@]}" --size 448 --clients 1,8,32 --server-steps 8
"$PY" prefix_sharing.py "${model[@]}"
