"""The bench table (terminal and markdown) and its plots."""

from __future__ import annotations

from pathlib import Path

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


def markdown_table(summaries) -> str:
    rows = table_rows(summaries)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def text_table(summaries) -> str:
    rows = table_rows(summaries)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def write_report(out: Path, summaries, records: list[dict], plots: int, method: str) -> Path:
    from topreward.plot import _pyplot

    plt = _pyplot()
    images = []
    for s in summaries:
        eps = [r for r in records if r["dataset"] == s.name][:plots]
        if not eps:
            continue
        fig, axes = plt.subplots(1, len(eps), figsize=(4 * len(eps), 3), squeeze=False)
        for ax, r in zip(axes[0], eps):
            t = np.asarray(r["prefix_end_frames"]) / r["fps"]
            ax.plot(t, r["progress"], "o-", label="predicted")
            if r.get("gt") is not None:
                ax.plot(t, r["gt"], "k--", label="ground truth")
            ax.set_title(f"{r['episode_id']}  VOC {_fmt(r['voc'])}", fontsize=9)
            ax.set_xlabel("time (s)")
            ax.set_ylim(-0.05, 1.05)
            ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"curves_{s.name}.png"
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        images.append(name)
    vocs = [r["voc"] for r in records if r.get("voc") is not None]
    if vocs:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.hist(vocs, bins=20, range=(-1, 1), label="episodes")
        static = [r["static_voc"] for r in records if r.get("static_voc") is not None]
        if static:
            ax.hist(static, bins=20, range=(-1, 1), alpha=0.5, label="static-video control")
        ax.set_xlabel("VOC")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "voc_hist.png", dpi=90)
        plt.close(fig)
        images.insert(0, "voc_hist.png")
    text = [
        f"# Bench report: {method}",
        "",
        markdown_table(summaries),
        "",
        "VOC: Spearman of predicted progress vs time. static VOC: the first frame repeated (length bias). "
        "reversed VOC: the video backwards. debiased VOC: log P(True) minus the static video's. "
        "mismatch diag: column-normalised diagonal share of exp(success score) over the dataset's "
        "instructions (chance = 1 / number of instructions).",
        "",
    ]
    text += [f"![{name}]({name})" for name in images]
    path = out / "report.md"
    path.write_text("\n".join(text) + "\n")
    return path
