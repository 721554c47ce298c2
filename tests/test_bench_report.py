"""The bench report picks curves that represent each kind and outcome, and lists every episode."""

from __future__ import annotations

from topreward.bench.report import episode_rows, representatives, write_report
from topreward.bench.runner import DatasetSummary


def _rec(eid, kind, success, voc):
    return {
        "dataset": "d",
        "episode_id": eid,
        "kind": kind,
        "success": success,
        "voc": voc,
        "instruction": "open the drawer",
        "fps": 10.0,
        "prefix_end_frames": [0, 5, 9],
        "progress": [0.0, 0.5, 1.0],
        "gt_frames": [i / 9 for i in range(10)],
        "success_score": -1.0,
    }


RECORDS = [
    _rec("e1", "expert", True, 0.9),
    _rec("e2", "expert", True, 0.1),
    _rec("e3", "expert", True, 0.5),
    _rec("r1", "random", False, -0.2),
    _rec("n1", "noisy", None, None),
]


def test_one_median_voc_episode_per_kind_and_outcome():
    picks = {r["episode_id"] for r in representatives(RECORDS)}
    assert picks == {"e3", "r1", "n1"}


def test_report_has_per_episode_table_and_titled_outline_histograms(tmp_path):
    s = DatasetSummary("d", len(RECORDS), values={"voc": (0.3, 0.4)})
    report = write_report(tmp_path, [s], RECORDS, 3, "topreward", provenance={"model": "m", "seed": 0})
    text = report.read_text()
    assert "| model | `m` |" in text and "| seed | `0` |" in text
    rows = episode_rows(RECORDS)
    assert rows[0][:4] == ["dataset", "episode", "kind", "outcome"] and len(rows) == len(RECORDS) + 1
    assert "| d | r1 | random | failure | -0.200 |" in text
    assert (tmp_path / "voc_hist_d.png").exists() and (tmp_path / "curves_d.png").exists()


def test_calibrated_records_get_a_reliability_diagram(tmp_path):
    records = [{**r, "success_probability": p} for r, p in zip(RECORDS, [0.9, 0.2, 0.7, 0.1, 0.5])]
    s = DatasetSummary("d", len(records), values={"voc": (0.3, 0.4)})
    text = write_report(tmp_path, [s], records, 3, "topreward").read_text()
    assert "![reliability.png](reliability.png)" in text and (tmp_path / "reliability.png").exists()
    assert "P(success)" in text
