#!/usr/bin/env bash
# The LeRobot loop against the real lerobot package, on the CPU, offline (no Hugging Face Hub):
#   1. a separate venv .venv-lerobot with lerobot==0.4.4 and its own torch pin (torch<2.11; ours is newer),
#      reused while this script's pins are unchanged;
#   2. in OUR venv: `topreward sim --format lerobot` writes a small Meta-World LeRobot v3.0 dataset, and
#      `topreward annotate --into-dataset` scores it with a tiny random Qwen3-VL into
#      <root>/sarm_progress.parquet;
#   3. in the lerobot venv: LeRobotDataset(root=..., video_backend="pyav") loads it and iterates a batch,
#      RABCWeights reads the progress file in both head modes;
#   4. a 2-step RA-BC `lerobot-train` of SmolVLA (its VLM a tiny random SmolVLM2 built here:
#      load_vlm_weights=false, so nothing is downloaded) that finds the progress file on its own;
#   5. the pytest tests that need lerobot (TOPREWARD_LEROBOT_PYTHON set).
# Needs ./.venv (scripts/setup.sh) with topreward[sim] and EGL (scripts/install_sim_deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv-lerobot
LEROBOT_PINS=("torch==2.10.0" "torchvision==0.25.0" "lerobot[smolvla]==0.4.4")
t_start=$(date +%s)
say() { echo "lerobot_ci [$(($(date +%s) - t_start))s]: $*"; }
pip_q() { "$VENV/bin/python" -m pip install -q "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }; }

# 1. the lerobot venv (cached: rebuilt only when the pins change)
stamp=$VENV/.topreward-lerobot-ci
want="$(printf '%s\n' "${LEROBOT_PINS[@]}" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "building $VENV (${LEROBOT_PINS[*]})"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  pip_q --upgrade pip
  # torch first, from LEROBOT_TORCH_INDEX if set (e.g. https://download.pytorch.org/whl/cpu: CPU wheels, no
  # CUDA libraries); lerobot then keeps it
  pip_q "${LEROBOT_PINS[0]}" "${LEROBOT_PINS[1]}" ${LEROBOT_TORCH_INDEX:+--index-url "$LEROBOT_TORCH_INDEX"}
  pip_q "${LEROBOT_PINS[2]}"
  echo "$want" > "$stamp"
fi
"$VENV/bin/python" -c "import lerobot, torch; print('lerobot', lerobot.__version__, 'torch', torch.__version__)"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

work=$(mktemp -d "${TMPDIR:-/tmp}/topreward-lerobot-ci.XXXXXX")
trap 'rm -rf "$work"' EXIT
ds=$work/sim_lerobot

# 2. simulate and annotate (our venv)
say "topreward sim --format lerobot"
.venv/bin/topreward sim --format lerobot --out "$ds" --tasks push-v3,drawer-open-v3 --seeds 1 \
  --kinds expert,random --max-steps 40 --size 64 --quiet
.venv/bin/topreward make-tiny-model "$work/tiny-qwen3_vl" >/dev/null 2>&1
say "topreward annotate --into-dataset"
.venv/bin/topreward annotate "$ds" --into-dataset --model "$work/tiny-qwen3_vl" --max-frames 6 \
  --num-prefixes 3 --quiet
test -f "$ds/sarm_progress.parquet"

# 3. LeRobot reads both (lerobot venv)
say "LeRobotDataset + RABCWeights"
"$VENV/bin/python" scripts/lerobot_ci/check_dataset.py "$ds" "$ds/sarm_progress.parquet" 2>&1 \
  | grep -v -i "deprecat\|warnings.warn"

# 4. a 2-step RA-BC training run of SmolVLA on the CPU
say "lerobot-train --use_rabc=true (SmolVLA, tiny random SmolVLM2, 2 steps)"
"$VENV/bin/python" scripts/lerobot_ci/make_tiny_smolvlm.py "$work/tiny-smolvlm2" 64
"$VENV/bin/lerobot-train" \
  --dataset.repo_id=local/sim_lerobot --dataset.root="$ds" --dataset.video_backend=pyav \
  --policy.type=smolvla --policy.vlm_model_name="$work/tiny-smolvlm2" --policy.load_vlm_weights=false \
  --policy.num_vlm_layers=2 '--policy.resize_imgs_with_padding=[64,64]' --policy.chunk_size=4 \
  --policy.n_action_steps=4 --policy.device=cpu --policy.push_to_hub=false \
  --use_rabc=true --rabc_head_mode=sparse --rabc_kappa=0.01 \
  --steps=2 --batch_size=2 --num_workers=0 --log_freq=1 --save_checkpoint=false --eval_freq=0 \
  --wandb.enable=false --output_dir="$work/train" > "$work/train.log" 2>&1 || {
  tail -40 "$work/train.log"
  exit 1
}
grep -q "Loading SARM progress for RA-BC from $ds/sarm_progress.parquet" "$work/train.log" \
  || { tail -40 "$work/train.log"; echo "lerobot_ci: RA-BC did not use the progress file" >&2; exit 1; }
grep -q "step:2 " "$work/train.log" || { tail -40 "$work/train.log"; echo "lerobot_ci: no step 2" >&2; exit 1; }
grep -E "rabc.py.*(Loaded|delta stats)|step:[12] " "$work/train.log" | sed 's/^/  /'

# 5. the tests that need lerobot
say "pytest (TOPREWARD_LEROBOT_PYTHON=$VENV/bin/python)"
TOPREWARD_LEROBOT_PYTHON="$PWD/$VENV/bin/python" .venv/bin/python -m pytest -q \
  tests/test_annotate.py::test_lerobot_rabc_reader_accepts_our_file tests/test_sim.py::test_sim_lerobot_format
say "done"
