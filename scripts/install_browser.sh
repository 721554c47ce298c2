#!/usr/bin/env bash
# Debian's Chromium and its driver for the viewer's browser test (tests/test_view.py), like the simulator's
# libraries: installs only what is missing, non-interactively; a no-op when both are present. Needs root (or sudo).
set -euo pipefail
pkgs=(chromium chromium-driver)
missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_browser: all present (${pkgs[*]})"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser: apt-get not found; install Chromium and its chromedriver" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install_browser: run as root or install sudo; missing: ${missing[*]}" >&2
    exit 1
  fi
fi
echo "install_browser: installing ${missing[*]}"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
