#!/usr/bin/env bash
# Set up ./.venv if needed, then run the offline demo (the bundled demo reward model on a held-out sim clip).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/topreward demo --out demo_out "$@"
