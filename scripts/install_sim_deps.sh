#!/usr/bin/env bash
# Debian/Ubuntu system libraries for offscreen MuJoCo rendering with MUJOCO_GL=egl (topreward[sim]).
# Installs only what is missing, non-interactively; a no-op when all are present. Needs root (or sudo).
# Python packages come separately: pip install 'topreward[sim]'.
set -euo pipefail
pkgs=(libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0)
missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_sim_deps: all present (${pkgs[*]})"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_sim_deps: apt-get not found; install the EGL/Mesa equivalents of: ${missing[*]}" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install_sim_deps: run as root or install sudo; missing: ${missing[*]}" >&2
    exit 1
  fi
fi
echo "install_sim_deps: installing ${missing[*]}"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
