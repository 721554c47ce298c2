"""`topreward train`: fine-tune a VLM into a reward model on episodes with ground truth.

Recipe (`train(config)`):
  1. Episodes from every source (`open_source`: manifests, LeRobot datasets, `topreward sim` output) with
     their per-frame ground truth (`topreward.groundtruth`: a `progress` list, `subtasks`, or time for
     successes); an episode without any is skipped (the completion head also takes failures, all "no"),
     and no usable episode at all is an error naming the fields needed.
  2. Split by episode (seeded): `val_fraction` of the episodes for validation, never seen in training.
  3. Examples per episode (`topreward.train.heads.examples_for`) at `num_points` evaluation points of the
     frames the scorer would see (same sampling and sizes as `topreward score`).
  4. LoRA adapters (peft; attention and MLP projections of the language model) for big models, full
     fine-tuning for small ones (`lora="auto"`: LoRA above 100 M parameters). AdamW, `batch_size`
     examples per step (gradients accumulated one example at a time), bf16 autocast on CUDA.
  5. Every `eval_every` steps: mean validation loss, and the matching method (`heads.METHOD_OF`) run on
     the validation episodes with the model being trained: VOC (Spearman of progress vs time on
     successful episodes) and success ROC-AUC when both outcomes are there.
  6. Checkpoints every `checkpoint_every` steps (`<out>/checkpoint-<step>`: the model or adapter, the
     optimizer, the step, the config); `resume=True` continues from the latest, and refuses a checkpoint
     made with another config, listing the differences. A non-finite loss stops the run with a message
     naming the last good checkpoint. The final model goes to `<out>/final`.

A saved full model loads back with `--model <out>/final`; an adapter with `--adapter <out>/final` over
its base `--model` (`load_adapter`: a base-model mismatch or an all-zero adapter is an error).
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from topreward.backends.adapters import peft
from topreward.episode import view_order
from topreward.sampling import SamplingConfig
from topreward.scorers.registry import SCORING_FILE
from topreward.train.checkpoints import check_resume, latest_checkpoint, save
from topreward.train.config import TrainConfig, TrainingDiverged, TrainResult
from topreward.train.heads import Example, examples_for, head_scorer, loss

logger = logging.getLogger(__name__)



# ---- data ----------------------------------------------------------------------------------------------
@dataclass
class _Episode:
    key: str
    instruction: str
    success: bool | None
    truth: np.ndarray
    video: Any  # ModelVideo


def load_episodes(config: TrainConfig, preparer) -> list[_Episode]:
    """Episodes with ground truth from every source, prepared as the scorer would see them."""
    from topreward.datasets import LeRobotSource, open_source
    from topreward.groundtruth import ground_truth_for

    episodes, without = [], 0
    for spec in config.sources:
        source = open_source(spec)
        columns = source.frame_column(config.progress_column) if isinstance(source, LeRobotSource) else None
        for eid in source.episode_ids():
            ep = source.get(eid)
            where = f"{spec}/{eid}"
            annotations = ep.annotations
            if columns is not None and "progress" not in annotations:
                annotations = {**annotations, "progress": columns[int(annotations["episode_index"])]}
            truth = ground_truth_for(annotations, ep.num_frames, ep.fps, episode=where)
            success = ep.annotations.get("success")
            if truth is None and success is None and config.demos_succeed:  # e.g. a LeRobot dataset of demos
                success, truth = (
                    True,
                    ground_truth_for({"success": True}, ep.num_frames, ep.fps, episode=where),
                )
            if truth is None and config.head == "completion" and success is False:
                truth = np.zeros(ep.num_frames)  # a failure is never done
            if truth is None or not ep.instruction:
                without += 1
                continue
            episodes.append(_Episode(where, ep.instruction, success, np.asarray(truth, float), preparer(ep)))
    if not episodes:
        raise ValueError(
            f"none of the {without} episodes of {', '.join(config.sources)} has ground truth for head "
            f"{config.head!r}: each needs an instruction and a per-frame 'progress' list, 'subtasks' "
            "[{name, start, end}], or 'success': true (time-based progress); for a dataset of successful "
            "demonstrations without labels (e.g. LeRobot), pass --demos-succeed"
        )
    if without:
        logger.warning("%d episodes without ground truth (or instruction) left out", without)
    return episodes


def views(ep: _Episode, which: tuple[str, ...]) -> list[_Episode]:
    """Control views of a training episode (`topreward.episode.view_order`), so that a prefix's length
    cannot stand for progress: `static` (the first frame throughout; every target that frame's progress)
    and `reversed` (the frames backwards; prefix k ends at the original frame N - k: its progress).

    Training works on prepared frames, so the view reorders the sampled frames (bench's controls reorder
    the episode before sampling); timestamps stay those of the original frames.
    """
    from topreward.backends.base import ModelVideo

    v, src = ep.video, np.asarray(ep.video.source_indices)
    out = []
    for name in which:
        order = view_order(name, len(v.frames))
        truth = np.array(ep.truth, dtype=float)
        truth[src] = ep.truth[src[order]]
        video = ModelVideo(v.frames[order], src, v.source_fps, v.rate)
        success = None if name == "static" else False
        out.append(_Episode(f"{ep.key} [{name}]", ep.instruction, success, truth, video))
    return out


def split(episodes: list[_Episode], fraction: float, seed: int) -> tuple[list[_Episode], list[_Episode]]:
    """(train, validation) by episode, seeded; at least one training episode."""
    order = np.random.default_rng(seed).permutation(len(episodes))
    n_val = min(int(round(fraction * len(episodes))), len(episodes) - 1)
    val = {int(i) for i in order[:n_val]}
    return [e for i, e in enumerate(episodes) if i not in val], [
        e for i, e in enumerate(episodes) if i in val
    ]


def scorer_for(config: TrainConfig, backend):
    """The method that scores with the trained head (`heads.METHOD_OF`), with the run's sampling: it writes
    the examples' prompts and requests, and evaluates on the validation episodes."""
    return head_scorer(config.head, backend, num_prefixes=config.num_points, **config.sampling)


def build_examples(
    config: TrainConfig, backend, episodes: list[_Episode], seed: int, scorer=None
) -> list[Example]:
    """A head's examples for `episodes`, asked of its method (`scorer`, default `scorer_for`)."""
    from topreward.sampling import prefix_lengths

    scorer = scorer or scorer_for(config, backend)
    rng = np.random.default_rng(seed)
    out = []
    for ep in episodes:
        points = prefix_lengths(ep.video.num_frames, config.num_points)
        out += examples_for(
            config.head,
            scorer,
            ep.video,
            ep.truth,
            ep.instruction,
            points,
            ep.key,
            done_at=config.done_at,
            rng=rng,
        )
    return out


# ---- the model -----------------------------------------------------------------------------------------
def _num_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def use_lora(config: TrainConfig, model) -> bool:
    return config.lora == "yes" or (config.lora == "auto" and _num_params(model) > 100_000_000)


def _lora_targets(model) -> list[str]:
    """The language model's attention and MLP projections (the vision tower stays frozen)."""
    wanted = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if "visual" not in n}
    return [w for w in wanted if w in names]


def wrap_lora(model, rank: int):
    LoraConfig, get_peft_model = peft().LoraConfig, peft().get_peft_model

    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=rf"^(?!.*visual).*\.({'|'.join(_lora_targets(model))})$",
        lora_dropout=0.0,
    )
    return get_peft_model(model, config)


# ---- evaluation ----------------------------------------------------------------------------------------
def evaluate(
    config: TrainConfig, backend, examples: list[Example], episodes: list[_Episode], scorer=None
) -> dict[str, Any]:
    """Mean validation loss, and the matching method's VOC / success AUC on the validation episodes."""
    import torch

    from topreward import metrics

    model = backend.model
    was_training = model.training
    model.eval()
    out: dict[str, Any] = {}
    try:
        with torch.inference_mode():
            if examples:
                out["val_loss"] = float(np.mean([float(loss(config.head, backend, ex)) for ex in examples]))
        scorer = scorer or scorer_for(config, backend)
        vocs, scores, labels = [], [], []
        for ep in episodes:
            res = scorer.score_prepared(_as_episode(ep), ep.video)
            if ep.success is not False:
                v = metrics.voc(res.progress, res.prefix_end_frames)
                if np.isfinite(v):
                    vocs.append(v)
            if ep.success is not None:
                scores.append(res.success_score)
                labels.append(bool(ep.success))
        if vocs:
            out["val_voc"] = float(np.mean(vocs))
        if labels and 0 < sum(labels) < len(labels):
            out["val_auc"] = float(metrics.roc_auc(scores, labels))
    finally:
        model.train(was_training)
    return out


def _as_episode(ep: _Episode):
    from topreward.episode import Episode

    n = len(ep.truth)
    return Episode(n, ep.video.source_fps, lambda idx: None, ep.instruction, ep.key, {}, ep.key)


# ---- the loop ------------------------------------------------------------------------------------------
def train(config: TrainConfig, *, progress_bar: bool = True, backend=None) -> TrainResult:
    """Train one head (see the module docstring); returns the losses and the evaluations."""
    import torch
    from tqdm.auto import tqdm

    from topreward.backends.hf import HFBackend
    from topreward.sampling import FramePreparer

    out = Path(config.out)
    checkpoint = latest_checkpoint(out) if out.exists() else None
    if checkpoint is not None and not config.resume:
        raise FileExistsError(
            f"{out} holds checkpoints of an earlier run; pass --resume to continue it, or another --out"
        )
    state = check_resume(config, checkpoint) if checkpoint is not None else None
    torch.manual_seed(config.seed)
    if backend is None:
        backend = HFBackend(
            config.model, device=config.device, dtype=config.dtype or "float32", path="reference"
        )
    preparer = FramePreparer(SamplingConfig(**config.sampling), int(backend.patch_factor))
    train_eps, val_eps = split(load_episodes(config, preparer), config.val_fraction, config.seed)
    train_eps += [view for ep in train_eps for view in views(ep, config.augment)]
    scorer = scorer_for(config, backend)  # it sees the model through the backend, LoRA-wrapped or not
    train_ex = build_examples(config, backend, train_eps, config.seed, scorer)
    val_ex = build_examples(config, backend, val_eps, config.seed + 1, scorer)
    if not train_ex:
        raise ValueError(f"head {config.head!r} found no training examples in {len(train_eps)} episodes")

    lora = use_lora(config, backend.model)
    if lora:
        backend.model = wrap_lora(backend.model, config.lora_rank)
        if state is not None:
            from safetensors.torch import load_file

            set_peft_model_state_dict = peft().set_peft_model_state_dict

            set_peft_model_state_dict(backend.model, load_file(str(checkpoint / "adapter_model.safetensors")))
    elif state is not None:
        backend.model = (
            type(backend.model).from_pretrained(checkpoint, dtype=backend.model.dtype).to(backend.device)
        )
    model = backend.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    start = 0
    if state is not None:
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
        start = int(state["step"])
        logger.info("resuming %s at step %d", checkpoint, start)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if str(backend.device).startswith("cuda")
        else nullcontext()
    )

    rng = np.random.default_rng([config.seed, start])
    losses, evaluations, last_good = [], [], checkpoint
    bar = tqdm(
        total=config.steps, initial=start, disable=not progress_bar, desc=f"train {config.head}", unit="step"
    )
    t0 = time.perf_counter()
    for step in range(start + 1, config.steps + 1):
        batch = [
            train_ex[i]
            for i in rng.choice(len(train_ex), min(config.batch_size, len(train_ex)), replace=False)
        ]
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for ex in batch:
            with autocast:
                value = loss(config.head, backend, ex) / len(batch)
            if not torch.isfinite(value):
                bar.close()
                where = (
                    f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was saved yet"
                )
                raise TrainingDiverged(
                    f"the loss became {value.item()} at step {step} (episode {ex.episode}); {where}; lower --lr "
                    "and --resume from it"
                )
            value.backward()
            total += value.item()
        optimizer.step()
        losses.append(total)
        bar.set_postfix_str(f"loss {total:.4f}, {(step - start) / (time.perf_counter() - t0):.2f} steps/s")
        bar.update(1)
        if step % config.eval_every == 0 or step == config.steps:
            result = (
                {"step": step, **evaluate(config, backend, val_ex, val_eps, scorer)} if val_eps else {"step": step}
            )
            evaluations.append(result)
            bar.write(
                "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items())
            )
        if step % config.checkpoint_every == 0:
            last_good = save(out / f"checkpoint-{step}", backend, model, optimizer, step, config, lora)
    bar.close()
    final = save(out / "final", backend, model, None, config.steps, config, lora)
    # score it as it was trained: `topreward score --model <out>/final` (or --adapter) needs no more flags
    scoring = {**json.loads(json.dumps(config.sampling)), "num_prefixes": config.num_points}
    (final / SCORING_FILE).write_text(json.dumps(scoring, indent=1) + "\n")
    return TrainResult(out, config.steps, losses, evaluations)
