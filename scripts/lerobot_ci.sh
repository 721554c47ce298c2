#!/usr/bin/env bash
# The LeRobot loop against the real lerobot package, on the CPU, offline (no Hugging Face Hub), for one
# lerobot release: LEROBOT=0.4.4 (default) or LEROBOT=0.6.1 (Python >= 3.12: python3.12 on PATH or pyenv's).
#   1. a separate venv .venv-lerobot (0.4.4) or .venv-lerobot-0.6.1 with lerobot and its own torch pin
#      (torch<2.11 / <2.12; ours is newer), reused while this script's pins are unchanged;
#      `--venv-only` stops after this step (.ci/run builds the venvs in the background while the tests run);
#   2. in OUR venv: `topreward sim --format lerobot` writes a small Meta-World LeRobot v3.0 dataset, and
#      `topreward annotate --into-dataset` scores it with a tiny random Qwen3-VL into
#      <root>/sarm_progress.parquet;
#   3. in the lerobot venv: LeRobotDataset(root=..., video_backend="pyav") loads it and iterates a batch,
#      RABCWeights (lerobot.utils.rabc in 0.4, lerobot.rewards.sarm.rabc in 0.6) reads the progress file in
#      both head modes;
#   4. a 2-step RA-BC `lerobot-train` of SmolVLA (its VLM a tiny random SmolVLM2 built here:
#      load_vlm_weights=false, so nothing is downloaded) that finds the progress file on its own: 0.4 with
#      --use_rabc=true, 0.6 with --sample_weighting.type=rabc;
#   5. the pytest tests that need lerobot (TOPREWARD_LEROBOT_PYTHON set), among them our RA-BC weights against
#      its RABCWeights and (0.6, its robometer extra) our Robometer against its port, lerobot.rewards.robometer.
# Needs ./.venv (scripts/setup.sh) with topreward[sim] and EGL (scripts/install_sim_deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
LEROBOT=${LEROBOT:-0.4.4}
case "$LEROBOT" in
  0.4.4)
    PY=${PYTHON:-python3}
    VENV=.venv-lerobot
    LEROBOT_PINS=("torch==2.10.0" "torchvision==0.25.0" "lerobot[smolvla]==0.4.4")
    RABC_FLAGS=(--use_rabc=true --rabc_head_mode=sparse --rabc_kappa=0.01 --eval_freq=0)
    LOADED="Loading SARM progress for RA-BC from"
    ;;
  0.6.1)
    PY=${PYTHON:-}
    if [ -z "$PY" ]; then  # pyenv's 3.12 (its shim on PATH may not select it), else a python3.12 that runs
      PY=$(ls -d "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.12*/bin/python3.12 2>/dev/null | tail -1)
      if [ -z "$PY" ] && python3.12 -c "" 2>/dev/null; then PY=python3.12; fi
    fi
    [ -n "$PY" ] || { echo "lerobot_ci: lerobot 0.6.1 needs Python 3.12 (pyenv's 3.12 or python3.12)" >&2; exit 1; }
    VENV=.venv-lerobot-0.6.1
    LEROBOT_PINS=("torch==2.10.0" "torchvision==0.25.0" "lerobot[smolvla,dataset,robometer]==0.6.1")
    RABC_FLAGS=(--sample_weighting.type=rabc --sample_weighting.head_mode=sparse --sample_weighting.kappa=0.01)
    LOADED="Loading SARM progress values from"
    ;;
  *) echo "lerobot_ci: LEROBOT=$LEROBOT; this script knows 0.4.4 and 0.6.1" >&2; exit 1 ;;
esac
t_start=$(date +%s)
say() { echo "lerobot_ci $LEROBOT [$(($(date +%s) - t_start))s]: $*"; }
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
if [ "${1:-}" = "--venv-only" ]; then
  exit 0
fi
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
say "lerobot-train ${RABC_FLAGS[0]} (SmolVLA, tiny random SmolVLM2, 2 steps)"
"$VENV/bin/python" scripts/lerobot_ci/make_tiny_smolvlm.py "$work/tiny-smolvlm2" 64
"$VENV/bin/lerobot-train" \
  --dataset.repo_id=local/sim_lerobot --dataset.root="$ds" --dataset.video_backend=pyav \
  --policy.type=smolvla --policy.vlm_model_name="$work/tiny-smolvlm2" --policy.load_vlm_weights=false \
  --policy.num_vlm_layers=2 '--policy.resize_imgs_with_padding=[64,64]' --policy.chunk_size=4 \
  --policy.n_action_steps=4 --policy.device=cpu --policy.push_to_hub=false \
  "${RABC_FLAGS[@]}" \
  --steps=2 --batch_size=2 --num_workers=0 --log_freq=1 --save_checkpoint=false \
  --wandb.enable=false --output_dir="$work/train" > "$work/train.log" 2>&1 || {
  tail -40 "$work/train.log"
  exit 1
}
grep -q "$LOADED $ds/sarm_progress.parquet" "$work/train.log" \
  || { tail -40 "$work/train.log"; echo "lerobot_ci: RA-BC did not use the progress file" >&2; exit 1; }
grep -q "step:2 " "$work/train.log" || { tail -40 "$work/train.log"; echo "lerobot_ci: no step 2" >&2; exit 1; }
grep -E "rabc.py.*(Loaded|delta stats)|step:[12] " "$work/train.log" | sed 's/^/  /'

# 5. the tests that need lerobot
say "pytest (TOPREWARD_LEROBOT_PYTHON=$VENV/bin/python)"
TOPREWARD_LEROBOT_PYTHON="$PWD/$VENV/bin/python" .venv/bin/python -m pytest -q -p no:cacheprovider \
  --basetemp "$work/pytest" \
  tests/test_annotate.py::test_lerobot_rabc_reader_accepts_our_file tests/test_sim.py::test_sim_lerobot_format \
  tests/test_weights.py::test_rabc_weights_equal_real_lerobots \
  tests/test_robometer.py::test_robometer_equals_lerobots_port
say "done"
