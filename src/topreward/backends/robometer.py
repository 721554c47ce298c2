"""Robometer (`robometer/Robometer-4B`, arXiv 2603.02115): a Qwen3-VL backbone with trained reward heads.

The release is not a causal LM: it is a `Qwen3VLModel` (no LM head) plus three heads read at special
tokens. What this module reproduces, read in the authors' code (github robometer/robometer at c7f38e2):

* **Checkpoint** (`RobometerCheckpoint`): `config.yaml` (the training settings; inference reads
  `model.base_model_id`, `model.torch_dtype`, the progress head's `progress_loss_type` and
  `progress_discrete_bins`, `data.use_multi_image`, `data.use_per_frame_progress_token` and
  `training.predict_pref_progress`), `config.json` (the backbone's Qwen3-VL config), and the weights,
  one file or shards with an index: `model.*` (the backbone), `progress_head.*`, `success_head.*`,
  `preference_head.*` and `frame_pool_attn.weight` (unused on this path).
* **Tokenizer and processor** come from `base_model_id` (a Hub id or a local folder), not from the
  checkpoint; the five tokens of `ROBOMETER_TOKENS` are added one by one, in that order, and the
  checkpoint's embedding must have exactly that many rows.
* **Heads**: Linear(H, H/2), LayerNorm, GELU, Dropout, Linear(H/2, out); progress has `bins` outputs
  (discrete: softmax . linspace(0, 1, bins), in float32) or one output and a sigmoid (continuous);
  success is the sigmoid of its logit in the model's dtype, as theirs.
* **Prompt** (`progress_text`, `preference_text`): one user turn rendered by the base's chat template
  with `add_vision_id=True` and no generation prompt: the instruction text first, then every frame as an
  image followed by `<|prog_token|>`. The readout is the text model's last hidden state (after its
  final norm) at each `<|prog_token|>`.

Their loader differs in one way on purpose: a checkpoint without its backbone or head tensors is refused
here (theirs starts from the base weights and random heads, with a log line).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from topreward.backends.base import REWARD_HEADS
from topreward.backends.loading import hub_snapshot, pick_device, pick_dtype
from topreward.prompts import ROBOMETER_TOKENS

logger = logging.getLogger(__name__)

PROG_TOKEN, PREF_TOKEN, SPLIT_TOKEN = "<|prog_token|>", "<|pref_token|>", "<|split_token|>"
HEADS: tuple[str, ...] = ("progress_head", "success_head", "preference_head")

#: their collator's prompts (robometer/data/collators/rbm_heads.py), `{task}` verbatim
PROGRESS_PROMPT = (
    "The task for the robot is '{task}'. Given the trajectory video, predict the task progress at each frame, "
    "how far along the robot is towards completing the task, a float between 0 and 1, where 0 is the starting "
    "state and 1 is when the task is completed. If the robot is not performing the same task, predict 0 progress."
)
PREFERENCE_PROMPT = (
    "Given these two trajectories for the task '{task}', evaluate which one makes more progress towards the "
    "task. Return A for the first trajectory and B for the second trajectory."
)
PREFERENCE_PROGRESS_SUFFIX = (
    " Also predict the task progress at each frame of the first trajectory, how far along the robot is towards "
    "completing the task, a float between 0 and 1, where 0 is the starting state and 1 is when the task is "
    "completed. If the robot is not performing the same task, predict 0 progress."
)


@dataclass(frozen=True)
class RobometerCheckpoint:
    """A Robometer checkpoint folder, read and checked without loading a tensor.

    Attributes:
        folder: the checkpoint folder.
        base_model_id: where the tokenizer and processor come from (Hub id or local folder).
        dtype: the model's dtype (`model.torch_dtype`).
        bins: progress bins (discrete head), or None for the continuous (sigmoid) head.
        predict_pref_progress: the preference prompt's extra sentence (`training.predict_pref_progress`).
        weights: weight name -> the safetensors file that holds it.
    """

    folder: Path
    base_model_id: str
    dtype: str
    bins: int | None
    predict_pref_progress: bool
    weights: dict[str, str]

    @classmethod
    def read(cls, folder: str | Path) -> RobometerCheckpoint:
        import yaml

        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise ValueError(
                f"Robometer checkpoint {folder} is not a folder; download it first "
                "(`huggingface-cli download robometer/Robometer-4B --local-dir DIR`) or pass a local folder"
            )
        settings_file = next(
            (p for p in (folder / "config.yaml", folder.parent / "config.yaml") if p.is_file()), None
        )
        if settings_file is None:
            raise ValueError(
                f"{folder} has no config.yaml, so it is not a Robometer checkpoint (the release keeps its "
                "settings there, beside config.json and the weights)"
            )
        try:
            settings = yaml.safe_load(settings_file.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{settings_file} is not valid YAML ({e}); download it again") from e
        model, data = settings.get("model") or {}, settings.get("data") or {}
        loss, training = settings.get("loss") or {}, settings.get("training") or {}
        base = model.get("base_model_id")
        if not base:
            raise ValueError(f"{settings_file} has no model.base_model_id: the processor's source is unknown")
        base = str(base)
        if not str(base).startswith("/") and (folder / base).is_dir():  # a base shipped beside the weights
            base = str((folder / base).resolve())
        if "Qwen3" not in base and "qwen3" not in base.lower():
            raise ValueError(
                f"{settings_file}: base_model_id {base!r} is not a Qwen3-VL model; only Robometer's "
                "Qwen3-VL checkpoints (e.g. robometer/Robometer-4B) are supported"
            )
        for section, values in (("model", model), ("data", data)):
            for key in ("use_multi_image", "use_per_frame_progress_token"):
                if values.get(key, True) is not True:
                    raise ValueError(
                        f"{settings_file}: {section}.{key} is {values.get(key)!r}; only the released layout "
                        "(one image per frame, a <|prog_token|> after each) is supported"
                    )
        head_type = str(model.get("progress_loss_type", "discrete")).lower()
        read_type = str(loss.get("progress_loss_type", head_type)).lower()
        bins = int(model.get("progress_discrete_bins", 10)) if head_type == "discrete" else None
        read_bins = int(loss.get("progress_discrete_bins", bins or 10)) if read_type == "discrete" else None
        if (head_type == "discrete") != (read_type == "discrete") or (bins and read_bins != bins):
            raise ValueError(
                f"{settings_file}: the progress head is {head_type} ({bins} bins) but loss reads it as "
                f"{read_type} ({read_bins} bins); the checkpoint's settings disagree"
            )
        return cls(
            folder=folder,
            base_model_id=base,
            dtype=str(model.get("torch_dtype", "bfloat16")),
            bins=bins,
            predict_pref_progress=bool(training.get("predict_pref_progress", False)),
            weights=weight_files(folder),
        )

    def check_tensors(self, backbone_keys: list[str]) -> None:
        """Refuse a checkpoint that lacks backbone or head tensors (it would run on random weights)."""
        missing = [k for k in backbone_keys if f"model.{k}" not in self.weights]
        heads = [h for h in HEADS if not any(k.startswith(f"{h}.") for k in self.weights)]
        if heads or missing:
            what = (f"the heads {heads}" if heads else "") + (" and " if heads and missing else "")
            what += f"{len(missing)} backbone tensors (e.g. model.{missing[0]})" if missing else ""
            raise ValueError(
                f"Robometer checkpoint {self.folder} lacks {what}; it is incomplete or not a Robometer "
                "checkpoint: download all of its safetensors files again"
            )


def weight_files(folder: Path) -> dict[str, str]:
    """Weight name -> safetensors file, from the shard index or the single file."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        absent = sorted({f for f in weight_map.values() if not (folder / f).is_file()})
        if absent:
            raise ValueError(f"{index} names shards that are not in {folder}: {absent}; download them again")
        return dict(weight_map)
    single = folder / "model.safetensors"
    if not single.is_file():
        raise ValueError(
            f"{folder} has no model.safetensors nor model.safetensors.index.json: the weights are missing"
        )
    with safe_open(str(single), "pt") as f:
        return {k: single.name for k in f.keys()}  # noqa: SIM118  (a safetensors handle, not a dict)


def head(hidden: int, out: int, sigmoid: bool = False) -> nn.Sequential:
    """Robometer's head: Linear(H, H/2), LayerNorm, GELU, Dropout(0.1), Linear(H/2, out) [, Sigmoid]."""
    layers = [nn.Linear(hidden, hidden // 2), nn.LayerNorm(hidden // 2), nn.GELU(), nn.Dropout(0.1)]
    layers.append(nn.Linear(hidden // 2, out))
    return nn.Sequential(*layers, *([nn.Sigmoid()] if sigmoid else []))


@dataclass
class FrameReadout:
    """Robometer's per-frame outputs for one trajectory: progress in [0, 1] and success probability."""

    progress: np.ndarray
    success: np.ndarray


class RobometerBackend:
    """A Robometer checkpoint loaded with transformers: per-frame progress and success, and preference.

    Args:
        model: the checkpoint folder (a Hub id resolves to its downloaded snapshot; the Hub is optional).
        revision: Hub revision when `model` is a Hub id.
        device, dtype: as `HFBackend`; dtype defaults to the checkpoint's own (`model.torch_dtype`) on CUDA
            and float32 on CPU.
        attn_implementation: "sdpa" or "eager".
    """

    name = "robometer"
    capabilities = frozenset({REWARD_HEADS})

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        attn_implementation: str = "sdpa",
    ) -> None:
        from safetensors import safe_open
        from transformers import AutoConfig, AutoProcessor, Qwen3VLModel

        self.model_id, self.revision = str(model), revision
        folder = _local_folder(self.model_id, revision)
        self.checkpoint = ckpt = RobometerCheckpoint.read(folder)
        self.device = pick_device(device)
        self.dtype = pick_dtype(
            dtype if dtype is not None else (ckpt.dtype if self.device != "cpu" else None), self.device
        )
        config = AutoConfig.from_pretrained(folder)
        if config.model_type != "qwen3_vl":
            raise ValueError(
                f"{folder}/config.json is a {config.model_type!r} model; Robometer's backbone is qwen3_vl"
            )
        self.processor = AutoProcessor.from_pretrained(ckpt.base_model_id)
        tokenizer = self.processor.tokenizer
        for token in ROBOMETER_TOKENS:  # one at a time, in their order: the ids must be theirs
            if token not in tokenizer.get_vocab():
                tokenizer.add_special_tokens({"additional_special_tokens": [token]})
        rows = int(config.get_text_config().vocab_size)
        if rows != len(tokenizer):
            raise ValueError(
                f"Robometer checkpoint {folder}: its embedding has {rows} rows, but the tokenizer of "
                f"{ckpt.base_model_id!r} with Robometer's five added tokens {list(ROBOMETER_TOKENS)} has "
                f"{len(tokenizer)}; the checkpoint lacks its special tokens or base_model_id names another base"
            )
        with torch.device("meta"):
            keys = list(Qwen3VLModel(config).state_dict())
        ckpt.check_tensors(keys)
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the heads are "unexpected" to the backbone: loaded below
        try:
            self.backbone = Qwen3VLModel.from_pretrained(
                folder, dtype=self.dtype, attn_implementation=attn_implementation
            ).to(self.device)
        finally:
            hf_logging.set_verbosity(verbosity)
        hidden = int(config.get_text_config().hidden_size)
        self.heads = nn.ModuleDict(
            {
                "progress_head": head(hidden, ckpt.bins or 1, sigmoid=ckpt.bins is None),
                "success_head": head(hidden, 1),
                "preference_head": head(hidden, 1),
            }
        )
        state: dict[str, torch.Tensor] = {}
        for file in sorted({f for k, f in ckpt.weights.items() if k.split(".")[0] in HEADS}):
            with safe_open(str(folder / file), "pt") as f:
                names = [k for k in f.keys() if k.split(".")[0] in HEADS]  # noqa: SIM118  (not a dict)
                state.update({k: f.get_tensor(k) for k in names})
        try:
            self.heads.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"Robometer checkpoint {folder}: its heads do not fit config.yaml ({e})") from e
        self.heads.to(device=self.device, dtype=self.dtype).eval()
        self.backbone.eval()
        self.token_ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ROBOMETER_TOKENS}
        self.reserved_tokens = tuple(
            sorted(
                {t.content for t in tokenizer.added_tokens_decoder.values()}
                | set(tokenizer.all_special_tokens)
            )
        )
        patch = int(self.processor.image_processor.patch_size)
        self.patch_factor = patch * int(self.processor.image_processor.merge_size)

    @classmethod
    def from_config(cls, config) -> RobometerBackend:
        if config.backend != "transformers":
            raise ValueError(f"Robometer runs on backend 'transformers' only, not {config.backend!r}")
        if config.adapter:
            raise ValueError("Robometer checkpoints take no adapter; drop --adapter")
        return cls(
            config.model,
            revision=config.revision,
            device=config.device,
            dtype=config.dtype,
            attn_implementation=config.attn_implementation,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.model_id,
            "revision": self.revision,
            "family": "robometer",
            "base_model": self.checkpoint.base_model_id,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": self.device,
            "backend": "transformers",
        }

    # ---- prompts ----------------------------------------------------------------------------------
    def progress_text(self, task: str, num_frames: int) -> str:
        """Their progress conversation, rendered: the prompt, then each frame and a `<|prog_token|>`."""
        content = [{"type": "text", "text": PROGRESS_PROMPT.format(task=task)}]
        content += _frames(num_frames)
        return self._render(content)

    def preference_text(self, task: str, frames_a: int, frames_b: int) -> str:
        """Their preference conversation: trajectory A, `<|split_token|>`, trajectory B, `<|pref_token|>`."""
        prompt = PREFERENCE_PROMPT.format(task=task)
        if self.checkpoint.predict_pref_progress:
            prompt += PREFERENCE_PROGRESS_SUFFIX
        content = [{"type": "text", "text": prompt}, {"type": "text", "text": "This is Trajectory A. "}]
        content += _frames(frames_a)
        content += [{"type": "text", "text": SPLIT_TOKEN}, {"type": "text", "text": "This is Trajectory B. "}]
        content += _frames(frames_b)
        content += [
            {"type": "text", "text": "Now predict the preference between the two trajectories."},
            {"type": "text", "text": PREF_TOKEN},
        ]
        return self._render(content)

    def _render(self, content: list[dict]) -> str:
        return self.processor.apply_chat_template(
            [{"role": "user", "content": content}],
            tokenize=False,
            add_generation_prompt=False,
            add_vision_id=True,
        )

    # ---- forwards ---------------------------------------------------------------------------------
    @torch.no_grad()
    def hidden_at(self, text: str, frames: np.ndarray | list[np.ndarray], token: str) -> torch.Tensor:
        """The last hidden state at every `token` of `text` with `frames` as its images, in order (each
        image may have its own size)."""
        inputs = self.processor(text=[text], images=list(frames), do_resize=False, return_tensors="pt")
        inputs = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        out = self.backbone(**inputs)
        at = inputs["input_ids"][0] == self.token_ids[token]
        return out.last_hidden_state[0, at]

    def readout(self, hidden: torch.Tensor) -> FrameReadout:
        """Progress and success of hidden states at `<|prog_token|>`s, decoded as their code does."""
        logits = self.heads["progress_head"](hidden)
        if self.checkpoint.bins is None:  # continuous: the head ends in a sigmoid
            progress = logits[:, 0].float()
        else:
            centers = torch.linspace(0, 1, self.checkpoint.bins, device=logits.device)
            progress = torch.softmax(logits.float(), dim=-1) @ centers
        success = torch.sigmoid(self.heads["success_head"](hidden)[:, 0])  # in the model's dtype, as theirs
        return FrameReadout(progress.cpu().double().numpy(), success.float().cpu().double().numpy())

    @torch.no_grad()
    def frame_values(self, frames: np.ndarray, task: str) -> FrameReadout:
        """Every frame's progress and success in one forward (causal: frame k sees frames 1..k only)."""
        return self.readout(self.hidden_at(self.progress_text(task, len(frames)), frames, PROG_TOKEN))

    @torch.no_grad()
    def prefix_values(self, frames: np.ndarray, task: str) -> FrameReadout:
        """The reference path: one forward per prefix, the last frame's values of each."""
        outs = [self.frame_values(frames[:k], task) for k in range(1, len(frames) + 1)]
        return FrameReadout(np.array([o.progress[-1] for o in outs]), np.array([o.success[-1] for o in outs]))

    @torch.no_grad()
    def preference(self, frames_a: np.ndarray, frames_b: np.ndarray, task: str) -> float:
        """P(trajectory A makes more progress than B): the sigmoid of the preference head."""
        text = self.preference_text(task, len(frames_a), len(frames_b))
        hidden = self.hidden_at(text, [*frames_a, *frames_b], PREF_TOKEN)
        if len(hidden) != 1:
            raise ValueError(f"the preference prompt must hold one {PREF_TOKEN}, found {len(hidden)}")
        return float(torch.sigmoid(self.heads["preference_head"](hidden)[0, 0]).float())


def _frames(n: int) -> list[dict]:
    return [part for _ in range(n) for part in ({"type": "image"}, {"type": "text", "text": PROG_TOKEN})]


def _local_folder(model: str, revision: str | None) -> Path:
    """A local checkpoint folder, or the Hub snapshot of `model` (downloaded by huggingface_hub)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise ValueError(f"Robometer checkpoint {model!r}: the folder {path} does not exist")
    patterns = ["*.safetensors", "*.json", "*.yaml", "*.txt", "*.model"]
    return hub_snapshot(model, revision, patterns, "the Robometer checkpoint")


class RobometerCache:
    """One trajectory's Robometer forward, grown frame by frame: the KV cache of [prompt, frames so far]
    is kept, and each new frame runs only its own tokens (`Picture k: `, its image, `<|prog_token|>`) on
    top of it. Causal attention makes frame k's values the same as in one forward over all frames
    (`RobometerBackend.frame_values`), which a test holds to 1e-4.

    The token ids of the whole text are rebuilt at each step (the prompt's last word and "Picture 1" may
    tokenise together) and must begin with those already run; the M-RoPE positions come from the model's
    own `get_rope_index` over the whole sequence.
    """

    def __init__(self, backend: RobometerBackend, task: str) -> None:
        from transformers import DynamicCache

        self.backend, self.task = backend, task
        self.frames: list[np.ndarray] = []
        self.progress, self.success = np.zeros(0), np.zeros(0)  # every frame's values so far
        self.ids = torch.zeros(0, dtype=torch.long)
        self.grids = torch.zeros(0, 3, dtype=torch.long)
        self.kv = DynamicCache()

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @torch.no_grad()
    def extend(self, frames: np.ndarray) -> FrameReadout:
        """Append uint8 frames (n, H, W, 3) of the trajectory's frame size; their progress and success."""
        from topreward.backends.video_cache import cache_arg

        b = self.backend
        frames = np.asarray(frames)
        if self.frames and frames.shape[1:] != self.frames[0].shape:
            raise ValueError(
                f"new frames are {frames.shape[1:]}, the trajectory's are {self.frames[0].shape}"
            )
        image = b.processor.image_processor(images=list(frames), do_resize=False, return_tensors="pt")
        grids = torch.cat([self.grids, image["image_grid_thw"]])
        per_image = int(image["image_grid_thw"][0].prod()) // int(b.processor.image_processor.merge_size) ** 2
        text = b.progress_text(self.task, len(self.frames) + len(frames))
        text = text.replace("<|image_pad|>", "<|image_pad|>" * per_image)
        ids = torch.tensor(b.processor.tokenizer(text, add_special_tokens=False)["input_ids"])
        start = len(self.ids)
        if not torch.equal(ids[:start], self.ids):
            raise RuntimeError("the prompt's tokens changed when frames were appended; score the frames anew")
        end = int(torch.nonzero(ids == b.token_ids[PROG_TOKEN])[-1]) + 1  # up to the last new frame's token
        model = b.backbone
        types = (ids[None, :end] == model.config.image_token_id).to(torch.int32)
        positions, _ = model.get_rope_index(ids[None, :end], mm_token_type_ids=types, image_grid_thw=grids)
        new = ids[start:end]
        out = model(
            input_ids=new[None].to(b.device),
            pixel_values=image["pixel_values"].to(b.device, b.dtype),
            image_grid_thw=image["image_grid_thw"].to(b.device),
            mm_token_type_ids=types[:, start:end].to(b.device),
            position_ids=positions[:, :, start:end].to(b.device),
            use_cache=True,
            **cache_arg(model, self.kv),
        )
        self.ids, self.grids = ids[:end], grids
        self.frames += list(frames)
        hidden = out.last_hidden_state[0, new.to(b.device) == b.token_ids[PROG_TOKEN]]
        read = b.readout(hidden)
        self.progress = np.concatenate([self.progress, read.progress])
        self.success = np.concatenate([self.success, read.success])
        return read
