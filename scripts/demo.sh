#!/usr/bin/env bash
# Set up ./.venv if needed, then run the offline demo (tiny locally built model, bundled sample clip).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/topreward demo --out demo_out "$@"
