#!/usr/bin/env bash
# Debian's Chromium and its driver for the viewer's browser test (tests/test_view.py), like the simulator's
# libraries: installs only what is missing, non-interactively; a no-op when both are present. Needs root (or sudo).
set -euo pipefail
exec bash "$(dirname "$0")/install_debian_packages.sh" install_browser chromium chromium-driver
