#!/usr/bin/env bash
# Create ./.venv with everything topreward needs (idempotent; re-run after pulling).
# torch/torchvision are pinned as a pair here: transformers' video processors need torchvision,
# and these two releases install together on CPU-only machines. The package itself keeps ranges.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.topreward-setup
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[test,plot,sim,docs]"
echo "$want" > "$stamp"
