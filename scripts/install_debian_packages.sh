#!/usr/bin/env bash
# Install the Debian packages named after WHO (a label for messages) that are missing, non-interactively;
# a no-op when all are present. Needs root (or sudo). Used by install_sim_deps.sh and install_browser.sh.
#   bash scripts/install_debian_packages.sh WHO PACKAGE...
set -euo pipefail
who=$1
shift
pkgs=("$@")
missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "$who: all present (${pkgs[*]})"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "$who: apt-get not found; install the equivalents of: ${missing[*]}" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "$who: run as root or install sudo; missing: ${missing[*]}" >&2
    exit 1
  fi
fi
echo "$who: installing ${missing[*]}"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
