#!/usr/bin/env bash
# Set up ./.venv if needed (plus the Debian rendering libraries for the simulator tests), then run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -f scripts/install_sim_deps.sh ] && bash scripts/install_sim_deps.sh
.venv/bin/ruff check src tests benchmarks scripts
exec .venv/bin/python -m pytest -q "$@"
