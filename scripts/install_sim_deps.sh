#!/usr/bin/env bash
# Debian/Ubuntu system libraries for offscreen MuJoCo rendering with MUJOCO_GL=egl (topreward[sim]).
# Installs only what is missing, non-interactively; a no-op when all are present. Needs root (or sudo).
# Python packages come separately: pip install 'topreward[sim]'.
set -euo pipefail
exec bash "$(dirname "$0")/install_debian_packages.sh" install_sim_deps libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0
