"""The bench report: terminal and markdown tables, per-episode table, representative curves, histograms.

`report.md` is meant to be read at a glance: a provenance header (what was run, on what, with which
model), the per-dataset table, one curve per (kind, outcome) group of episodes — the group's median-VOC
episode, not the first ones — with its ground truth over the whole episode, per-dataset VOC histograms
with the static-frame and reversed-video controls, and the table of every episode.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

COLUMNS = [
    ("voc", "VOC"),
    ("gt_spearman", "GT Spearman"),
    ("static_voc", "static VOC"),
    ("reversed_voc", "reversed VOC"),
    ("debiased_voc", "debiased VOC"),
]


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, tuple):
        return f"{v[0]:.3f}±{v[1]:.3f}"
    return f"{v:.3f}"


def table_rows(summaries) -> list[list[str]]:
    head = [
        "dataset",
        "n",
        *[label for _, label in COLUMNS],
        "success AUC",
        "mismatch diag",
        "mismatch top-1",
        "paper VOC",
    ]
    rows = [head]
    for s in summaries:
        rows.append(
            [
                s.name,
                str(s.n),
                *[_fmt(s.values.get(k)) for k, _ in COLUMNS],
                _fmt(s.success_auc),
                _fmt(s.mismatch_diag),
                _fmt(s.mismatch_top1),
                _fmt(s.paper_voc),
            ]
        )
    return rows


def _markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def markdown_table(summaries) -> str:
    return _markdown(table_rows(summaries))


def text_table(summaries) -> str:
    rows = table_rows(summaries)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def outcome(rec: dict) -> str:
    s = rec.get("success")
    return "unlabelled" if s is None else ("success" if s else "failure")


def episode_rows(records: list[dict]) -> list[list[str]]:
    """One row per scored episode: where it is from, what it is, and how it scored."""
    calibrated = any("success_probability" in r for r in records)
    head = ["dataset", "episode", "kind", "outcome", "VOC", "GT Spearman", "success score"]
    head += ["P(success)"] if calibrated else []
    rows = [head]
    for r in records:
        row = [r["dataset"], str(r["episode_id"]), str(r.get("kind") or "–"), outcome(r)]
        row += [_fmt(r.get("voc")), _fmt(r.get("gt_spearman")), _fmt(r.get("success_score"))]
        row += [_fmt(r.get("success_probability"))] if calibrated else []
        rows.append(row)
    return rows


def representatives(records: list[dict]) -> list[dict]:
    """One episode per (kind, outcome) group: the one with the group's median VOC (ties: first)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((str(r.get("kind") or ""), outcome(r)), []).append(r)
    picks = []
    for key in sorted(groups):
        group = groups[key]
        scored = [r for r in group if r.get("voc") is not None]
        if not scored:
            picks.append(group[0])
            continue
        order = np.argsort([r["voc"] for r in scored], kind="stable")
        picks.append(scored[int(order[(len(order) - 1) // 2])])
    return picks


def _curves(plt, out: Path, name: str, records: list[dict], max_plots: int) -> str | None:
    eps = representatives(records)[:max_plots]
    if not eps:
        return None
    cols = min(len(eps), 3)
    rows = -(-len(eps) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(eps) :]:
        ax.axis("off")
    for ax, r in zip(axes.flat, eps):
        t = np.asarray(r["prefix_end_frames"]) / r["fps"]
        ax.plot(t, r["progress"], "o-", label="predicted")
        gt = r.get("gt_frames") or r.get("gt")
        if gt is not None:
            t_gt = np.arange(len(gt)) / r["fps"] if r.get("gt_frames") else t
            ax.plot(t_gt, gt, "k--", label="ground truth")
        kind = f"{r['kind']}, " if r.get("kind") else ""
        ax.set_title(
            f"{r['episode_id']} ({kind}{outcome(r)})  VOC {_fmt(r.get('voc'))}\n{r['instruction'][:48]!r}",
            fontsize=8,
        )
        ax.set_xlabel("time (s)")
        ax.set_ylabel("progress")
        ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = f"curves_{_slug(name)}.png"
    fig.savefig(out / path, dpi=90)
    plt.close(fig)
    return path


def _histogram(plt, out: Path, name: str, records: list[dict]) -> str | None:
    series = [
        ("voc", "episodes", "tab:blue"),
        ("static_voc", "static-frame control", "tab:orange"),
        ("reversed_voc", "reversed-video control", "tab:green"),
    ]
    drawn = [(lab, c, [r[k] for r in records if r.get(k) is not None]) for k, lab, c in series]
    drawn = [d for d in drawn if d[2]]
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(5, 3))
    for label, colour, xs in drawn:
        ax.hist(
            xs, bins=20, range=(-1, 1), histtype="step", lw=1.5, color=colour, label=f"{label} (n={len(xs)})"
        )
    ax.set_title(f"{name}: VOC per episode", fontsize=9)
    ax.set_xlabel("VOC (Spearman of progress vs time)")
    ax.set_ylabel("episodes")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = f"voc_hist_{_slug(name)}.png"
    fig.savefig(out / path, dpi=90)
    plt.close(fig)
    return path


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _header(method: str, provenance: dict[str, Any] | None) -> list[str]:
    lines = [f"# Bench report: {method}", ""]
    if provenance:
        lines += ["| | |", "|---|---|"]
        for key, value in provenance.items():
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
            lines.append(f"| {key} | `{text}` |")
        lines.append("")
    return lines


def write_report(
    out: Path,
    summaries,
    records: list[dict],
    plots: int,
    method: str,
    *,
    provenance: dict[str, Any] | None = None,
    conventions: str | None = None,
    extra_images: list[str] = (),
) -> Path:
    """Write `out/report.md` and its PNGs; `plots` caps the representative curves per dataset."""
    from topreward.plot import pyplot

    plt = pyplot()
    images = []
    for s in summaries:
        mine = [r for r in records if r["dataset"] == s.name]
        images += [
            p for p in (_histogram(plt, out, s.name, mine), _curves(plt, out, s.name, mine, plots)) if p
        ]
    rated = [r for r in records if r.get("success_probability") is not None and r.get("success") is not None]
    if len({bool(r["success"]) for r in rated}) == 2:  # a reliability diagram needs both outcomes
        from topreward.calibration import plot_reliability

        probs = [r["success_probability"] for r in rated]
        plot_reliability(probs, [bool(r["success"]) for r in rated], out / "reliability.png")
        images.append("reliability.png")
    text = _header(method, provenance)
    text += [
        markdown_table(summaries),
        "",
        "VOC: Spearman of predicted progress vs time. static VOC: the first frame repeated (length bias). "
        "reversed VOC: the video backwards. debiased VOC: the raw value minus the static video's. "
        "mismatch diag: column-normalised diagonal share of exp(success score) over the dataset's "
        "instructions (chance = 1 / number of instructions). Curves: one episode per (kind, outcome) "
        "group, the one with the group's median VOC.",
        "",
    ]
    if any(s.paper_voc is not None for s in summaries):
        like = "like for like" if conventions == "paper" else "NOT like for like: run `--conventions paper`"
        text += [
            "paper VOC: the TOPReward paper's Table 6 (Qwen3-VL-8B, bf16, the authors' first public code = "
            f"`--conventions paper`); every other column: this run (conventions `{conventions}`) — {like}.",
            "",
        ]
    text += [f"![{name}]({name})" for name in [*images, *extra_images]]
    text += ["", "## Episodes", "", _markdown(episode_rows(records))]
    path = out / "report.md"
    path.write_text("\n".join(text) + "\n")
    return path
