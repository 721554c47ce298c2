"""Which answer token separates successful from failed episodes? (TOPReward, Chen et al. 2026, App. B).

The paper reads log P(" True") because " True" is one token in the evaluated vocabularies and shows the
largest gap in mean final-step probability between successful and failed episodes (its Figure 8). This
module repeats that study on your own labelled episodes and model, for a list of candidate answer words
and, optionally, the whole vocabulary.

Recipe:
  1. Keep the candidate words (default `DEFAULT_CANDIDATES`; the leading space matters) that are one
     token in the model's tokenizer; the others are listed in `TokenStudy.dropped` with the reason.
  2. Read every episode's success label (`annotations["success"]`); episodes without one are left out.
     With `max_episodes`, take successes and failures alternately in source order, so both classes are in.
  3. Per episode: prepare the frames like the scorer (`scorer.prepare`), put the whole video before the
     scorer's TOPReward prompt (its `prompt_style`), and read the next-token log-probs of all candidate ids
     from one request at the full prefix (with `top_vocab`, of every id in the vocabulary).
  4. Per token: ROC-AUC of its final-step probability for success vs failure (< 0.5 when the word is
     likelier on failures; `separation = max(auc, 1 - auc)`), mean probability on each class and the gap
     (success - failure). With `top_vocab=N`, add the N other tokens with the largest |gap| (App. B's figure).
  5. Rank by separation, then |gap|.

Cost: per episode one vision pass and one language-model pass over the sampled frames and the prompt; all
candidates (or the whole vocabulary) come from that one forward. With `top_vocab`, the final-step
distribution of every episode is kept in float32 (vocabulary size x 4 bytes each, ~0.6 MB for Qwen-VL).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from topreward.backends.base import Request, scoring_mode
from topreward.episode import Episode
from topreward.metrics import roc_auc
from topreward.scorers.topreward import format_prompt
from topreward.task_text import check_instruction, reserved_tokens

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_CANDIDATES", "TokenRow", "TokenStudy", "answer_token_study"]

DEFAULT_CANDIDATES: tuple[str, ...] = (
    " True",
    " False",
    " true",
    " false",
    " Yes",
    " No",
    " yes",
    " no",
    " Correct",
    " correct",
    " Success",
    " Done",
    " done",
    " complete",
)

Origin = Literal["candidate", "vocab"]


@dataclass
class TokenRow:
    """How well one token's final-step probability separates successful from failed episodes.

    Attributes:
        token: the word as given (candidates) or the token's decoded text (vocabulary tokens).
        token_id: its id in the model's tokenizer.
        auc: ROC-AUC of its probability for success vs failure, as is (< 0.5: likelier on failures).
        separation: max(auc, 1 - auc).
        mean_success: mean probability after the whole video on successful episodes.
        mean_failure: the same on failed episodes.
        gap: mean_success - mean_failure.
        n_success: successful episodes used.
        n_failure: failed episodes used.
        origin: "candidate" (a word asked for) or "vocab" (found by `top_vocab`).
    """

    token: str
    token_id: int
    auc: float
    separation: float
    mean_success: float
    mean_failure: float
    gap: float
    n_success: int
    n_failure: int
    origin: Origin = "candidate"


@dataclass
class TokenStudy:
    """The answer-token study of one source and model (see the module docstring).

    Attributes:
        rows: one row per token, ranked by separation, then |gap|.
        dropped: candidate words left out -> why (e.g. several tokens in this tokenizer).
        episodes: episodes used (labelled and decoded).
        n_success: successful episodes among them.
        n_failure: failed episodes among them.
        episode_ids: ids of the episodes used, in source order.
        skipped: episodes that could not be read or decoded -> the error.
        unlabelled: episodes of the source without a success label (not used).
        top_vocab: how many vocabulary tokens were asked for beside the candidates.
        prompt_style: the scorer's prompt style.
        model: the backend's description (id, revision, dtype, device).
        version: topreward version.
    """

    rows: list[TokenRow]
    dropped: dict[str, str]
    episodes: int
    n_success: int = 0
    n_failure: int = 0
    episode_ids: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    unlabelled: int = 0
    top_vocab: int = 0
    prompt_style: str = ""
    model: dict[str, Any] = field(default_factory=dict)
    version: str = ""

    def row(self, token: str) -> TokenRow:
        """The row of `token` (a candidate word or a vocabulary token's text)."""
        for r in self.rows:
            if r.token == token:
                return r
        raise KeyError(f"no row for {token!r}; tokens: {[r.token for r in self.rows]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the rows, what was dropped or skipped, the model and the package version."""
        return {"study": "answer_tokens", **asdict(self)}

    def table(self) -> str:
        """An aligned text table of the rows, with the episode counts, dropped words and skips below."""
        header = ("rank", "token", "from", "id", "AUC", "separation", "P(success)", "P(failure)", "gap")
        lines = [
            (
                str(i),
                repr(r.token),
                r.origin,
                str(r.token_id),
                f"{r.auc:.4f}",
                f"{r.separation:.4f}",
                f"{r.mean_success:.4g}",
                f"{r.mean_failure:.4g}",
                f"{r.gap:+.4g}",
            )
            for i, r in enumerate(self.rows, 1)
        ]
        widths = [max(len(c) for c in col) for col in zip(header, *lines)]
        left = {1, 2}  # text columns; numbers right-aligned

        def fmt(cells: tuple[str, ...]) -> str:
            return "  ".join(
                c.ljust(w) if j in left else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths))
            )

        out = [fmt(header), "  ".join("-" * w for w in widths), *(fmt(c) for c in lines)]
        out.append(
            f"{self.episodes} episodes ({self.n_success} successful, {self.n_failure} failed); "
            "final-step probabilities; AUC < 0.5: likelier on failures"
        )
        if self.dropped:
            out.append("dropped: " + "; ".join(f"{w!r} ({why})" for w, why in self.dropped.items()))
        if self.skipped:
            out.append(
                f"skipped {len(self.skipped)} episode(s) that could not be decoded: {', '.join(self.skipped)}"
            )
        if self.unlabelled:
            out.append(f"{self.unlabelled} episode(s) without a success label left out")
        return "\n".join(out).rstrip()


def answer_token_study(
    source: Any,
    scorer: Any,
    *,
    candidates: list[str] | tuple[str, ...] | None = None,
    top_vocab: int = 0,
    max_episodes: int | None = None,
    progress_bar: bool = True,
) -> TokenStudy:
    """Rank answer tokens by how well their final-step probability separates success from failure.

    Args:
        source: an episode source (`topreward.datasets.open_source`) whose episodes carry
            `annotations["success"]`, with both successful and failed episodes.
        scorer: a TOPReward scorer (`load_scorer("topreward", ...)`): its frame sampling, prompt style and
            backend are used.
        candidates: answer words to compare, leading space included (default `DEFAULT_CANDIDATES`); words
            that are not one token in the model's tokenizer are dropped and listed in `dropped`.
        top_vocab: also add the N vocabulary tokens (other than the candidates) with the largest |gap|.
        max_episodes: use at most this many labelled episodes, successes and failures taken alternately.
        progress_bar: show a progress bar over episodes.

    Raises:
        ValueError: a bad option, no candidate is a single token, or the source lacks labelled episodes of
            both classes.
        TypeError: `scorer` is not a TOPReward scorer, or `candidates` is a single string.
    """
    from tqdm.auto import tqdm

    if top_vocab < 0:
        raise ValueError(f"top_vocab must be >= 0 (0: candidates only), got {top_vocab}")
    if max_episodes is not None and max_episodes < 2:
        raise ValueError(
            f"max_episodes must be >= 2 (one success and one failure at least), got {max_episodes}"
        )
    style = getattr(getattr(scorer, "config", None), "prompt_style", None)
    if style is None or not hasattr(scorer, "prepare"):
        raise TypeError(
            f"answer_token_study needs a TOPReward scorer, got {type(scorer).__name__}; "
            "use topreward.load_scorer('topreward', model=...)"
        )
    backend = scorer.backend
    words, dropped = _single_token_words(backend, DEFAULT_CANDIDATES if candidates is None else candidates)

    chosen, skipped, unlabelled = _labelled_episodes(source, max_episodes)
    ids = tuple(range(_vocabulary_size(backend))) if top_vocab else tuple(words.values())
    # the column of each candidate in an answer: its id when the whole vocabulary is read
    columns = list(words.values()) if top_vocab else list(range(len(words)))
    candidate_probs, vocab_probs, labels, used = [], [], [], []
    for episode, label in tqdm(chosen, desc="answer tokens", unit="ep", disable=not progress_bar):
        eid = _name(episode)
        try:
            instruction = check_instruction(episode, reserved=reserved_tokens(backend))
            video = scorer.prepare(episode)
        except (ValueError, OSError) as e:  # e.g. a corrupt video: skipped and counted, not fatal
            logger.warning("episode %s skipped: %s", eid, e)
            skipped[eid] = str(e)
            continue
        prompt = backend.prompt_text(style, format_prompt(instruction))
        with scoring_mode():
            (answer,) = scorer.video_cache(video, prompt.before).score(
                [Request(video.num_frames, prompt.after, tokens=ids)]
            )
        candidate_probs.append(np.exp(answer.next[columns]))
        if top_vocab:  # float32: a whole vocabulary per episode is kept until the class means are known
            vocab_probs.append(np.exp(answer.next).astype(np.float32))
        labels.append(label)
        used.append(eid)
    y = np.asarray(labels, dtype=bool)
    _check_classes(
        y, f" after skipping {len(skipped)} episode(s) that could not be decoded" if skipped else ""
    )

    cand = np.stack(candidate_probs)
    rows = [_token_row(word, tid, cand[:, j], y, "candidate") for j, (word, tid) in enumerate(words.items())]
    if top_vocab:
        vocab = np.stack(vocab_probs)
        gap = vocab[y].mean(axis=0, dtype=np.float64) - vocab[~y].mean(axis=0, dtype=np.float64)
        order = np.argsort(-np.abs(gap), kind="stable")
        taken = set(words.values())
        extra = [t for t in map(int, order[: top_vocab + len(taken)]) if t not in taken][:top_vocab]
        rows += [_token_row(_token_text(backend, tid), tid, vocab[:, tid], y, "vocab") for tid in extra]
    rows.sort(key=lambda r: (-r.separation if np.isfinite(r.separation) else np.inf, -abs(r.gap)))
    from topreward._version import __version__

    return TokenStudy(
        rows=rows,
        dropped=dropped,
        episodes=len(used),
        n_success=int(y.sum()),
        n_failure=int((~y).sum()),
        episode_ids=used,
        skipped=skipped,
        unlabelled=unlabelled,
        top_vocab=top_vocab,
        prompt_style=str(style),
        model=backend.describe(),
        version=__version__,
    )


# ---- pieces ---------------------------------------------------------------------------------------------
def _single_token_words(backend: Any, candidates: Any) -> tuple[dict[str, int], dict[str, str]]:
    """Candidate word -> token id for the words that are one token; dropped word -> reason."""
    if isinstance(candidates, str):
        raise TypeError(
            f"candidates must be a list of words, got the string {candidates!r}; pass [{candidates!r}]"
        )
    words: dict[str, int] = {}
    dropped: dict[str, str] = {}
    for word in candidates:
        word = str(word)
        if word in words or word in dropped:
            continue
        ids = backend.tokenize(word)
        if len(ids) != 1:
            pieces = " + ".join(repr(_token_text(backend, i)) for i in ids)
            dropped[word] = f"{len(ids)} tokens: {pieces}" if ids else "empty"
            continue
        twin = next((w for w, tid in words.items() if tid == ids[0]), None)
        if twin is not None:
            dropped[word] = f"the same token as {twin!r}"
            continue
        words[word] = int(ids[0])
    if dropped:
        logger.info("answer words left out: %s", dropped)
    if not words:
        raise ValueError(
            f"none of the candidate words is a single token in model {getattr(backend, 'model_id', '?')}'s "
            f"tokenizer ({'; '.join(f'{w!r}: {why}' for w, why in dropped.items())}); pass other candidates "
            "(with their leading space, e.g. ' True'), or top_vocab=N to search the vocabulary"
        )
    return words, dropped


def _tokenizer(backend: Any) -> Any:
    return getattr(getattr(backend, "processor", None), "tokenizer", None)


def _token_text(backend: Any, token_id: int) -> str:
    tokenizer = _tokenizer(backend)
    return str(tokenizer.decode([int(token_id)])) if tokenizer is not None else f"<{int(token_id)}>"


def _vocabulary_size(backend: Any) -> int:
    tokenizer = _tokenizer(backend)
    if tokenizer is None:
        raise ValueError(
            f"top_vocab needs a backend whose tokenizer can be listed (the transformers backend), got "
            f"{getattr(backend, 'name', type(backend).__name__)!r}; use top_vocab=0"
        )
    return len(tokenizer)


def _name(episode: Episode) -> str:
    return str(episode.episode_id if episode.episode_id is not None else episode.source)


def _label(episode: Episode) -> bool | None:
    value = episode.annotations.get("success")
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    raise ValueError(
        f"episode {_name(episode)}: success label {value!r} is not true/false; fix the annotation"
    )


def _fixture_hint() -> str:
    from topreward.sim import fixture_dir

    return f"the shipped sim fixture has both: {fixture_dir() / 'manifest.jsonl'}"


def _check_classes(y: np.ndarray, after: str = "") -> None:
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"the answer-token study needs both successful and failed episodes; got {n_pos} successful and "
            f"{n_neg} failed{after}. Use a source with both, e.g. {_fixture_hint()}"
        )


def _labelled_episodes(
    source: Any, max_episodes: int | None
) -> tuple[list[tuple[Episode, bool]], dict[str, str], int]:
    """(episode, label) to study, in source order; unreadable episodes -> error; the unlabelled count."""
    skipped: dict[str, str] = {}
    ids = list(source.episode_ids())
    successes: list[tuple[int, Episode, bool]] = []
    failures: list[tuple[int, Episode, bool]] = []
    unlabelled = 0
    for order, eid in enumerate(ids):
        try:
            episode = source.get(eid)
        except (ValueError, OSError) as e:
            logger.warning("episode %s skipped: %s", eid, e)
            skipped[str(eid)] = str(e)
            continue
        label = _label(episode)
        if label is None:
            unlabelled += 1
        else:
            (successes if label else failures).append((order, episode, label))
    if not successes and not failures:
        raise ValueError(
            f"none of the {len(ids)} episodes of {source!r} has a success label (annotations['success']); the "
            "answer-token study compares successful and failed episodes, so label them (a manifest row's "
            f'"success": true/false), or use a labelled source: {_fixture_hint()}'
        )
    _check_classes(np.array([True] * len(successes) + [False] * len(failures)))
    if max_episodes is None:
        picked = successes + failures
    else:
        # alternate the classes so a cap keeps both, however the source is ordered
        picked = [x for pair in _interleave(successes, failures) for x in pair][:max_episodes]
    picked.sort(key=lambda item: item[0])
    return [(episode, label) for _, episode, label in picked], skipped, unlabelled


def _interleave(a: list, b: list) -> list[tuple]:
    n = max(len(a), len(b))
    return [tuple(x[i] for x in (a, b) if i < len(x)) for i in range(n)]


def _token_row(token: str, token_id: int, p: np.ndarray, y: np.ndarray, origin: Origin) -> TokenRow:
    p = np.asarray(p, dtype=np.float64)
    auc = roc_auc(p, y)
    mean_s, mean_f = float(p[y].mean()), float(p[~y].mean())
    return TokenRow(
        token=token,
        token_id=int(token_id),
        auc=auc,
        separation=float(max(auc, 1.0 - auc)) if np.isfinite(auc) else float("nan"),
        mean_success=mean_s,
        mean_failure=mean_f,
        gap=mean_s - mean_f,
        n_success=int(y.sum()),
        n_failure=int((~y).sum()),
        origin=origin,
    )
