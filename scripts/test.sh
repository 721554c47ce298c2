#!/usr/bin/env bash
# Set up ./.venv if needed (plus the Debian rendering libraries for the simulator tests), then run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Rendering libraries for the Meta-World tests; without them (no root) those tests skip, saying why.
bash scripts/install_sim_deps.sh || echo "test.sh: simulator rendering libraries missing; sim tests will skip" >&2
# Chromium for the viewer's browser test (tests/test_view.py fails, saying so, without it)
bash scripts/install_browser.sh || echo "test.sh: chromium missing; the viewer's browser test will fail, saying so" >&2
.venv/bin/ruff check src tests benchmarks scripts examples
exec .venv/bin/python -m pytest -q "$@"
