#!/usr/bin/env bash
# The oldest transformers the package admits (pyproject: "transformers>=X.Y"), tested: the model-math tests
# (both paths of every family, streaming, peers' conventions, LRM heads, training, the released reward models)
# run again with transformers X.Y.0 put in front of the venv's own, as a --no-deps overlay
# (.venv-transformers-X.Y; the rest of .venv is
# shared, and what X.Y.0 needs beside it is checked by pip's dry run below).
# Needs ./.venv (scripts/setup.sh). Run by .ci/run after the test script.
set -euo pipefail
cd "$(dirname "$0")/.."
floor=$(sed -n 's/^ *"transformers>=\([0-9.]*\),.*/\1/p' pyproject.toml | head -1)
[ -n "$floor" ] || { echo "test_transformers_floor: no transformers>=X.Y in pyproject.toml" >&2; exit 1; }
overlay=.venv-transformers-$floor
if [ ! -f "$overlay/.complete" ]; then
  rm -rf "$overlay"
  # the overlay must need nothing the venv lacks: pip's plan for the floor release changes transformers only
  .venv/bin/python -m pip install -q --dry-run --report "$overlay.plan.json" "transformers==$floor.0" 2>/dev/null
  .venv/bin/python - "$overlay.plan.json" <<'PY'
import json, sys
changed = [p["metadata"]["name"] for p in json.load(open(sys.argv[1]))["install"]]
extra = [n for n in changed if n.lower() != "transformers"]
sys.exit(f"the transformers floor also needs {extra}; raise the floor or pin those too" if extra else 0)
PY
  rm -f "$overlay.plan.json"
  .venv/bin/python -m pip install -q --no-deps --target "$overlay" "transformers==$floor.0" 2>&1 \
    | { grep -v "is ignored: it is neither" || true; }
  touch "$overlay/.complete"
fi
export PYTHONPATH="$PWD/$overlay${PYTHONPATH:+:$PYTHONPATH}"
.venv/bin/python -c "import sys, transformers; v = transformers.__version__; print('transformers', v, 'from', transformers.__file__); sys.exit(0 if v == '$floor.0' else 'the overlay is not the one imported')"
exec .venv/bin/python -m pytest -q -p no:cacheprovider -W "error::FutureWarning:topreward" \
  tests/test_prefix_sharing.py tests/test_video_cache.py tests/test_more_families.py tests/test_conventions.py \
  tests/test_lrm.py tests/test_generation.py tests/test_stream.py tests/test_train.py \
  tests/test_robometer.py tests/test_roboreward.py tests/test_lrm_released.py tests/test_sole.py
