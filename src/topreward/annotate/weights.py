"""Training weights from an annotation file: advantage-weighted BC (TOPReward §5.3, Eq.5), LeRobot's RA-BC
weights, and episode ranking.

Eq.5 lost its symbols in our copy of the paper; its text: values come from TOPReward, "advantages by
subtracting the dataset mean", and a maximum weight so a few actions do not dominate. Our reading:

    A_t = r_t − mean(r)          r_t = the per-frame dense reward of the annotation (Eq.3), mean over the dataset
    w_t = min(exp(A_t / β), w_max)

β (`beta`) defaults to the standard deviation of A over the dataset ("auto"), so weights spread like
exp(±1) whatever the reward scale; w_max defaults to 2 (the δ_max the one public AWR implementation of
TOPReward uses). Frames without a value (NaN reward: skipped episodes) get weight NaN, which LeRobot's
RA-BC also reads as "no value".

RA-BC (`rabc_weights`) is LeRobot's `RABCWeights` (SARM, arXiv 2509.25358, Eq.8-9) computed for every frame
at once, so that a training loop other than `lerobot-train` (or a benchmark) can use the weights LeRobot would:

    δ_t = p[min(t + chunk_size, last frame of the episode)] − p[t]        p = progress_sparse or progress_dense
    μ = max(mean δ, 0), σ = max(std δ, ε)                                  over every frame with a δ
    w_t = 1 if δ_t > κ;  clip((δ_t − (μ − 2σ)) / (4σ + ε), 0, 1) if 0 ≤ δ_t ≤ κ;  0 if δ_t < 0
    w_t = fallback_weight (1) where δ_t has no value (no progress at t or at its future frame)

LeRobot then scales each batch's weights to sum to the batch size; a loss weighted as Σ w·l / Σ w is the same.

For your own training loop, `FrameWeights` looks weights up by global frame index (a batch's `index`) and
builds PyTorch `WeightedRandomSampler`s over frames or episodes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from topreward._version import __version__
from topreward.annotate.progress_file import read_annotations, read_metadata, refuse_replacing_inputs
from topreward.atomic import replacing


def awr_weights(
    rewards: np.ndarray, beta: float | str = "auto", max_weight: float = 2.0
) -> tuple[np.ndarray, np.ndarray, float]:
    """(weights, advantages, beta used) for per-frame rewards; NaN rewards give NaN."""
    r = np.asarray(rewards, dtype=np.float64)
    finite = np.isfinite(r)
    if not finite.any():
        raise ValueError("no finite rewards: every episode was skipped; nothing to weight")
    adv = r - r[finite].mean()
    if beta == "auto":
        beta = float(adv[finite].std()) or 1.0
    given = beta
    try:
        beta = float(beta)
    except (TypeError, ValueError):
        beta = float("nan")  # refused below, with the value as given
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be 'auto' or a finite number > 0, got {given!r}")
    if not (isinstance(max_weight, (int, float)) and math.isfinite(max_weight) and max_weight > 0):
        raise ValueError(f"max_weight must be a finite number > 0, got {max_weight!r}")
    w = np.minimum(np.exp(np.where(finite, adv, 0.0) / beta), max_weight)
    w[~finite] = np.nan
    return w, adv, beta


def rabc_weights(
    index: np.ndarray,
    episode_index: np.ndarray,
    progress: np.ndarray,
    *,
    chunk_size: int = 50,
    kappa: float = 0.01,
    epsilon: float = 1e-6,
    fallback_weight: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """(weights, deltas, stats) of LeRobot's RA-BC for every row (module docstring); rows are frames with
    their global `index` (unique), `episode_index` and progress (NaN: none). A delta is NaN where there is no
    progress at the frame or at its future frame (a frame missing from the rows counts as no progress)."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a whole number of frames >= 1, got {chunk_size!r}")
    for name, value in (("kappa", kappa), ("epsilon", epsilon), ("fallback_weight", fallback_weight)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    index = np.asarray(index, np.int64)
    episode = np.asarray(episode_index, np.int64)
    p = np.asarray(progress, np.float64)
    if not (index.shape == episode.shape == p.shape and index.ndim == 1):
        raise ValueError(
            f"index, episode_index and progress must be 1-D of one length, got {index.shape}, "
            f"{episode.shape}, {p.shape}"
        )
    order = np.argsort(index, kind="stable")
    if len(index) and (np.diff(index[order]) == 0).any():
        raise ValueError("global frame indices repeat; one row per frame")
    episodes, inverse = np.unique(episode, return_inverse=True)
    end = np.full(len(episodes), np.iinfo(np.int64).min)
    np.maximum.at(end, inverse, index)
    future = np.minimum(index + chunk_size, end[inverse])  # near the end: the episode's last frame
    sorted_index = index[order]
    at = np.clip(np.searchsorted(sorted_index, future), 0, max(len(index) - 1, 0))
    found = sorted_index[at] == future if len(index) else np.zeros(0, bool)
    p_future = np.where(found, p[order][at], np.nan)
    delta = p_future - p  # NaN where either has no progress
    valid = np.isfinite(delta)
    mean = max(float(delta[valid].mean()), 0.0) if valid.any() else 0.0
    std = max(float(delta[valid].std()), epsilon) if valid.any() else epsilon
    soft = np.clip((delta - (mean - 2 * std)) / (4 * std + epsilon), 0.0, 1.0)
    weights = np.where(delta > kappa, 1.0, np.where((delta >= 0) & (delta <= kappa), soft, 0.0))
    weights[~valid] = fallback_weight
    return weights, delta, {"delta_mean": mean, "delta_std": std}


def write_weights(
    annotations: str | Path,
    out: str | Path,
    beta: float | str = "auto",
    max_weight: float = 2.0,
    *,
    scheme: str = "awr",
    chunk_size: int = 50,
    kappa: float = 0.01,
    head_mode: str = "sparse",
) -> Path:
    """Read an annotation parquet, write `out` with a `weight` column beside the RA-BC columns: scheme "awr"
    (Eq.5, with `advantage`) or "rabc" (LeRobot's RA-BC on `progress_<head_mode>`, with `delta`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if scheme not in ("awr", "rabc"):
        raise ValueError(f"scheme {scheme!r}: choose 'awr' (TOPReward Eq.5) or 'rabc' (LeRobot's RA-BC)")
    if head_mode not in ("sparse", "dense"):
        raise ValueError(
            f"head_mode {head_mode!r}: choose 'sparse' or 'dense' (the progress column RA-BC reads)"
        )
    keep = ["index", "episode_index", "frame_index", "progress_sparse", "progress_dense", "dense_reward"]
    if Path(out).resolve() == Path(annotations).resolve():
        raise ValueError(f"--out {out} is the annotation file it reads; write the weights to another file")
    refuse_replacing_inputs(out)
    table, meta = read_annotations(annotations, columns=tuple(keep))
    cols = {k: table[k] for k in keep}
    if scheme == "awr":
        w, adv, used_beta = awr_weights(
            table["dense_reward"].to_numpy(zero_copy_only=False), beta, max_weight
        )
        cols["advantage"] = pa.array(adv.astype(np.float32))
        rule = {
            "formula": "min(exp((r - mean r) / beta), max_weight)",
            "beta": used_beta,
            "max_weight": max_weight,
        }
    else:
        w, delta, stats = rabc_weights(
            *(
                table[k].to_numpy(zero_copy_only=False)
                for k in ("index", "episode_index", f"progress_{head_mode}")
            ),
            chunk_size=chunk_size,
            kappa=kappa,
        )
        cols["delta"] = pa.array(delta.astype(np.float32))
        rule = {
            "formula": "LeRobot RA-BC (RABCWeights): 1 if delta > kappa, soft in [0, kappa], 0 below; 1 without delta",
            "chunk_size": chunk_size,
            "kappa": kappa,
            "head_mode": head_mode,
            **stats,
        }
    cols["weight"] = pa.array(w.astype(np.float32))
    info = {**meta, "weights": {"scheme": scheme, **rule, "annotations": str(annotations)}}
    out_t = pa.table(cols).replace_schema_metadata(
        {"reward_model_path": str(meta.get("model_id", "")), "topreward": json.dumps(info, sort_keys=True)}
    )
    out = Path(out)
    with replacing(out) as tmp:
        pq.write_table(out_t, tmp)
    return out


def rank_episodes(annotations: str | Path) -> list[dict]:
    """Episodes sorted by success score, best first; those without one last (score None): `status`
    "skipped" (could not be opened or decoded) or "failed" (scored, but the method recorded a failure)."""
    table, meta = read_annotations(annotations, columns=("episode_index", "success_score"))
    ep = table["episode_index"].to_numpy()
    score = table["success_score"].to_numpy(zero_copy_only=False)
    rows = []
    for e in np.unique(ep):
        s = score[ep == e]
        rows.append(
            {
                "episode_index": int(e),
                "success_score": None if np.isnan(s[0]) else float(s[0]),
                "num_frames": int((ep == e).sum()),
            }
        )
    present = {r["episode_index"] for r in rows}
    skipped = {int(x["episode_index"]) for x in meta.get("skipped", [])}
    for index in sorted(skipped - present):  # episodes that could not even be opened have no rows
        rows.append({"episode_index": index, "success_score": None, "num_frames": 0})
    for r in rows:
        unscored = "skipped" if r["episode_index"] in skipped else "failed"
        r["status"] = "scored" if r["success_score"] is not None else unscored
    return sorted(
        rows, key=lambda r: (r["success_score"] is None, -(r["success_score"] or 0.0), r["episode_index"])
    )


@dataclass
class Ranking:
    """The episodes of an annotation file by success score, and those kept (`topreward rank`).

    Attributes:
        rows: every episode, best first (`rank_episodes`); `rank` 1.. for scored ones, None for the rest.
        kept: the kept episode indices, sorted (what LeRobot's `--dataset.episodes` takes).
    """

    annotations: Path
    rows: list[dict[str, Any]]
    kept: list[int]
    top: int | None
    min_score: float | None
    metadata: dict[str, Any]

    @property
    def source(self) -> dict[str, Any]:
        """Where the annotated episodes came from (the file's provenance), {} if it does not say."""
        return (self.metadata.get("provenance") or {}).get("source") or {}

    def record(self) -> dict[str, Any]:
        """The ranking with its provenance, as `topreward rank --out` writes it."""
        meta = self.metadata
        return {
            "episodes": self.kept,  # LeRobot's --dataset.episodes
            "selection": {
                "rule": "success score, best first; skipped and failed episodes never kept",
                "top": self.top,
                "min_score": self.min_score,
            },
            "annotations": str(self.annotations.resolve()),
            "scored_with": {
                "method": meta.get("method"),
                "model_id": meta.get("model_id"),
                "model_revision": meta.get("model_revision"),
                "source": self.source or None,
                "topreward_version": meta.get("topreward_version"),
            },
            "ranking": self.rows,
            "topreward_version": __version__,
        }


def rank(annotations: str | Path, *, top: int | None = None, min_score: float | None = None) -> Ranking:
    """Rank the episodes of an annotation file and keep the `top` best with a score >= `min_score`.

    Raises:
        ValueError: a bad `top` or `min_score`, or a file in which no episode has a success score (every
            one skipped or failed: there is nothing to rank).
    """
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ValueError(f"--top {top}: keep a whole number >= 1 of episodes (or leave --top out)")
    if min_score is not None and not math.isfinite(min_score):
        raise ValueError(f"--min-score {min_score}: give a finite number (success scores are finite)")
    rows = rank_episodes(annotations)
    scored = [r for r in rows if r["status"] == "scored"]
    if not scored:
        counts = {s: sum(r["status"] == s for r in rows) for s in ("skipped", "failed")}
        raise ValueError(
            f"{annotations}: none of its {len(rows)} episodes has a success score ({counts['skipped']} "
            f"skipped, {counts['failed']} failed: the reasons are in the file's metadata, `skipped` and "
            "`failed_episodes`), so there is nothing to rank; fix those and run `topreward annotate` again"
        )
    for i, r in enumerate(rows, 1):
        r["rank"] = i if r["status"] == "scored" else None
    keep = [r for r in scored if min_score is None or r["success_score"] >= min_score][:top]
    for r in rows:
        r["kept"] = r in keep
    rows = [{"rank": r.pop("rank"), **r} for r in rows]
    meta = read_metadata(annotations)
    return Ranking(Path(annotations), rows, sorted(r["episode_index"] for r in keep), top, min_score, meta)


class FrameWeights:
    """Per-frame training weights of one dataset, looked up by global frame index (LeRobot's `index`).

    For your own training loop: either weight each sample's loss
    (``loss = (fw.lookup(batch["index"]) * per_sample_loss).sum() / n``) or draw samples in proportion to
    their weight (`frame_sampler`, `episode_sampler`) -- not both, or the weights count twice.

    Relation to LeRobot's RA-BC: ``lerobot-train --use_rabc=true`` reads only the progress columns of an
    annotation file and computes its own per-sample weights from progress increments over an action chunk
    (`rabc_kappa`); it never reads these weights. `FrameWeights` serves loops that are not LeRobot's, with
    the AWR weights of `topreward weights` (our reading of TOPReward Eq.5) or any other numeric column.

    Frames without a value (NaN: skipped or failed episodes) get `missing` (default 0: never drawn, no loss).
    """

    def __init__(
        self,
        index: np.ndarray,
        weights: np.ndarray,
        episode_index: np.ndarray | None = None,
        *,
        missing: float = 0.0,
        source: str = "weights",
    ) -> None:
        """Args:
        index: global frame index of each row (unique, >= 0).
        weights: one weight per row (>= 0; NaN = no value, replaced by `missing`).
        episode_index: episode of each row (needed by `episode_sampler`).
        missing: weight of frames without a value.
        source: where the weights come from, for error messages.
        """
        index = np.asarray(index)
        w = np.asarray(weights, dtype=np.float64)
        if index.ndim != 1 or w.shape != index.shape or index.size == 0:
            raise ValueError(
                f"{source}: index and weights must be 1-D of one non-zero length, got {index.shape}, {w.shape}"
            )
        if not np.issubdtype(index.dtype, np.integer) or index.min() < 0:
            raise ValueError(f"{source}: frame indices must be non-negative integers")
        if len(np.unique(index)) != index.size:
            raise ValueError(f"{source}: a frame index appears twice; is this one dataset's file?")
        if not (np.isfinite(missing) and missing >= 0):
            raise ValueError(f"missing must be a finite weight >= 0, got {missing}")
        if (w[np.isfinite(w)] < 0).any() or np.isinf(w).any():
            raise ValueError(f"{source}: weights must be finite and >= 0 (NaN = no value)")
        self.source = source
        self.missing = float(missing)
        self._lo, hi = int(index.min()), int(index.max())
        self._table = np.full(hi - self._lo + 1, np.nan)  # dense by global index: a lookup is one gather
        self._known = np.zeros(hi - self._lo + 1, bool)
        self._table[index - self._lo] = np.where(np.isnan(w), self.missing, w)
        self._known[index - self._lo] = True
        self.index = np.sort(index)
        self.episode_index = None
        if episode_index is not None:
            ep = np.asarray(episode_index, dtype=np.int64)
            if ep.shape != index.shape:
                raise ValueError(f"{source}: episode_index needs one entry per row")
            self.episode_index = ep[np.argsort(index, kind="stable")]

    @classmethod
    def from_parquet(
        cls,
        path: str | Path,
        column: str | None = None,
        *,
        beta: float | str = "auto",
        max_weight: float = 2.0,
        missing: float = 0.0,
    ) -> FrameWeights:
        """Weights from a parquet with an `index` column: a `topreward weights` file (column `weight`), or an
        annotation file (AWR weights computed here from `dense_reward` with `beta` and `max_weight`, as
        `topreward weights` would), or any numeric `column` you name (e.g. ``progress_sparse``)."""
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found; write it with `topreward annotate` / `topreward weights`"
            )
        table = pq.read_table(path)
        names = table.column_names
        if "index" not in names:
            raise ValueError(f"{path}: no `index` column (global frame index); columns: {names}")
        if column is None:
            column = "weight" if "weight" in names else "dense_reward" if "dense_reward" in names else None
            if column is None:
                raise ValueError(
                    f"{path}: neither `weight` nor `dense_reward`; name a column (columns: {names})"
                )
        elif column not in names:
            raise ValueError(f"{path}: no column {column!r}; columns: {names}")
        values = table[column].to_numpy(zero_copy_only=False).astype(np.float64)
        if column == "dense_reward":
            values = awr_weights(values, beta, max_weight)[0]
        episodes = table["episode_index"].to_numpy() if "episode_index" in names else None
        return cls(table["index"].to_numpy(), values, episodes, missing=missing, source=f"{path} ({column})")

    def __len__(self) -> int:
        return int(self.index.size)

    def lookup(self, index):
        """Weights of the frames with these global indices (a batch's `index`): a torch tensor (float32, same
        device) for a tensor, else a numpy array. Raises `KeyError` for an index the file does not have."""
        torch = None
        if type(index).__module__.startswith("torch"):
            import torch

            device = index.device
            idx = index.detach().cpu().numpy()
        else:
            idx = np.asarray(index)
        flat = idx.reshape(-1).astype(np.int64)
        pos = flat - self._lo
        ok = (pos >= 0) & (pos < self._table.size)
        ok[ok] = self._known[pos[ok]]
        if not ok.all():
            raise KeyError(
                f"frame index {int(flat[~ok][0])} is not in {self.source} (it has {len(self)} frames, indices "
                f"{self._lo}..{self._lo + self._table.size - 1}); were the weights made for this dataset?"
            )
        out = self._table[pos].reshape(idx.shape)
        if torch is not None:
            return torch.as_tensor(out, dtype=torch.float32, device=device)
        return out

    __getitem__ = lookup

    def frame_sampler(
        self, indices=None, num_samples: int | None = None, *, replacement: bool = True, generator=None
    ):
        """A `torch.utils.data.WeightedRandomSampler` over dataset positions, each drawn in proportion to
        its frame's weight.

        Args:
            indices: the global frame index of each dataset position (for a LeRobot dataset of every
                episode: ``range(len(dataset))``, the default: every frame of this file, in index order).
            num_samples: draws per epoch (default: the number of positions).
            replacement: as `WeightedRandomSampler`.
            generator: as `WeightedRandomSampler`.
        """
        from torch.utils.data import WeightedRandomSampler

        w = self.lookup(self.index if indices is None else np.asarray(indices))
        return WeightedRandomSampler(
            self._checked(w, "frame"), num_samples or len(w), replacement=replacement, generator=generator
        )

    def episode_weights(self, reduce: str = "mean") -> dict[int, float]:
        """One weight per episode: the `mean` (default), `max` or `sum` of its frames' weights."""
        if self.episode_index is None:
            raise ValueError(f"{self.source}: no episode_index column; episode weights need it")
        if reduce not in ("mean", "max", "sum"):
            raise ValueError(f"reduce={reduce!r}; choose 'mean', 'max' or 'sum'")
        w = self._table[self.index - self._lo]
        fn = getattr(np, reduce)
        return {int(e): float(fn(w[self.episode_index == e])) for e in np.unique(self.episode_index)}

    def episode_sampler(
        self,
        episodes=None,
        num_samples: int | None = None,
        *,
        reduce: str = "mean",
        replacement: bool = True,
        generator=None,
    ):
        """A `WeightedRandomSampler` over episode positions: position i stands for episode ``episodes[i]``
        (default: every episode of the file, ascending), drawn in proportion to `episode_weights(reduce)`."""
        per_episode = self.episode_weights(reduce)
        order = sorted(per_episode) if episodes is None else [int(e) for e in episodes]
        unknown = [e for e in order if e not in per_episode]
        if unknown:
            raise KeyError(
                f"episode {unknown[0]} is not in {self.source}; it has episodes {sorted(per_episode)}"
            )
        from torch.utils.data import WeightedRandomSampler

        w = np.array([per_episode[e] for e in order])
        return WeightedRandomSampler(
            self._checked(w, "episode"), num_samples or len(w), replacement=replacement, generator=generator
        )

    def _checked(self, w: np.ndarray, what: str) -> list[float]:
        if not (w > 0).any():
            raise ValueError(
                f"every {what} has weight 0 in {self.source}; nothing to draw (were all episodes skipped?)"
            )
        return w.tolist()
