"""`topreward view`: the page's data equals the results it shows, and in headless Chromium the page loads
without console errors, the video plays, the playhead follows it, a click on the plot seeks, the plotted
points are the results' values, and the arrow keys move between episodes. A screenshot is kept in
`test-artifacts/view.png`.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from topreward.cli import main
from topreward.video import write_video

from .conftest import colour_frames

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def page_data(html: str) -> dict:
    return json.loads(
        re.search(r'<script id="data" type="application/json">(.*?)</script>', html, re.S).group(1)
    )


@pytest.fixture(scope="module")
def bench_runs(tiny_model_dirs, tmp_path_factory) -> tuple[Path, Path, Path]:
    """Two bench runs (topreward and instruction) over three 6-second clips with success labels."""
    root = tmp_path_factory.mktemp("view")
    rows = []
    for i in range(3):
        write_video(root / f"ep{i}.mp4", colour_frames(60, 64, 96), fps=10)
        rows.append(
            {
                "video": f"ep{i}.mp4",
                "instruction": "open the drawer",
                "success": i != 1,
                "episode_id": f"ep{i}",
            }
        )
    (root / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = ["--model", str(tiny_model_dirs["qwen3_vl"]), "--max-frames", "6", "--num-prefixes", "none"]
    for method in ("topreward", "instruction"):
        out = root / method
        argv = [
            "bench",
            str(root / "tasks.jsonl"),
            "--out",
            str(out),
            "--controls",
            "static,reversed",
            *model,
        ]
        assert main([*argv, "--method", method, "--view", "--quiet"]) == 0
    return root, root / "topreward", root / "instruction"


def test_the_page_holds_the_results_it_shows(bench_runs, tmp_path):
    root, a, b = bench_runs
    html = (a / "view.html").read_text()  # bench --view
    data = page_data(html)
    records = [json.loads(line) for line in (a / "episodes.jsonl").read_text().splitlines()]
    assert data["methods"] == [f"topreward ({Path(records[0]['model']).name})"]
    for episode, record in zip(
        sorted(data["episodes"], key=lambda e: e["episode_id"]),
        sorted(records, key=lambda r: r["episode_id"]),
    ):
        run = next(iter(episode["runs"].values()))
        assert run["frames"] == record["prefix_end_frames"] and run["progress"] == pytest.approx(
            record["progress"]
        )
        assert run["controls"].keys() == {"static", "reversed"}
        truth = record.get("gt_frames")
        assert episode["truth"] == (pytest.approx(truth) if truth else None)
        assert (a / episode["video"]).resolve() == (root / f"{episode['episode_id']}.mp4").resolve()
    assert "<video" not in html  # one player, made when an episode is shown
    assert not any(s in html for s in ("<link", 'src="http', "fetch(", "XMLHttpRequest"))  # nothing fetched
    out = tmp_path / "both.html"
    assert main(["view", str(a), str(b), "--out", str(out), "--label", "TOP", "--label", "INS"]) == 0
    both = page_data(out.read_text())
    assert both["methods"] == ["TOP", "INS"] and all(
        set(e["runs"]) == {"TOP", "INS"} for e in both["episodes"]
    )
    assert (
        main(["view", str(a), str(root / "tasks.jsonl"), "--out", str(tmp_path / "x.html")]) == 2
    )  # mixed inputs
    assert main(["view", str(root), "--out", str(tmp_path / "x.html")]) == 2  # a folder bench did not write
    old = tmp_path / "old_bench"
    old.mkdir()
    (old / "episodes.jsonl").write_text(json.dumps({"episode_id": "ep0", "voc": 0.5}) + "\n")
    assert main(["view", str(old), "--out", str(tmp_path / "x.html")]) == 2  # another version's records


def test_score_view_and_views_of_results(tiny_model_dirs, sample_video, tmp_path):
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    argv = [
        "score",
        str(sample_video),
        "open the drawer",
        "--model",
        str(tiny_model_dirs["qwen3_vl"]),
        "--out",
        str(out),
    ]
    assert main([*argv, "--view", str(page), "--quiet"]) == 0
    result = json.loads(out.read_text())
    (episode,) = page_data(page.read_text())["episodes"]
    ((label, run),) = episode["runs"].items()
    assert (
        run["progress"] == pytest.approx(result["progress"]) and episode["num_frames"] == result["num_frames"]
    )
    assert label == f"topreward ({tiny_model_dirs['qwen3_vl'].name})"  # the model by name, not its provenance


def _driver(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    chrome, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chrome and driver):
        pytest.fail(
            "chromium and chromedriver are missing: bash scripts/install_browser.sh (test.sh runs it)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--allow-file-access-from-files",
        f"--user-data-dir={tmp_path / 'chrome'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(service=Service(driver), options=options)


def _wait(condition, what: str, seconds: float = 15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def test_the_page_in_headless_chromium(bench_runs, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _, a, _ = bench_runs
    page = a / "view.html"
    data = page_data(page.read_text())
    browser = _driver(tmp_path)
    try:
        browser.set_window_size(1400, 900)
        browser.get(page.as_uri())
        _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "video"), "the video element")
        _wait(
            lambda: browser.execute_script("return document.querySelector('video').readyState >= 1"),
            "video metadata",
        )
        first = browser.find_element(By.ID, "title").text
        shown = next(e for e in data["episodes"] if first.startswith(e["episode_id"] + ":"))
        # the plotted points are the page's values
        points = browser.find_elements(By.CSS_SELECTOR, "circle.point")
        plotted = [
            (int(p.get_attribute("data-frame")), float(p.get_attribute("data-progress"))) for p in points
        ]
        (run,) = shown["runs"].values()
        assert plotted == [(f, pytest.approx(v)) for f, v in zip(run["frames"], run["progress"])]
        # the video plays and the playhead follows it
        x0 = float(browser.find_element(By.ID, "playhead").get_attribute("x1"))
        browser.execute_script("document.querySelector('video').play()")
        _wait(
            lambda: browser.execute_script("return document.querySelector('video').currentTime") > 1.0,
            "playback",
        )
        browser.execute_script("document.querySelector('video').pause()")
        t = browser.execute_script("return document.querySelector('video').currentTime")
        x1 = float(browser.find_element(By.ID, "playhead").get_attribute("x1"))
        span = (shown["num_frames"] - 1) / shown["fps"]
        assert x1 > x0 and x1 == pytest.approx(40 + 590 * t / span, abs=2.0)
        # a click on the plot seeks: the plot's x for 2.0 s, in page pixels
        plot = browser.find_element(By.ID, "plot")
        width = plot.size["width"]
        offset = (40 + 590 * 2.0 / span) * width / 640 - width / 2
        ActionChains(browser).move_to_element_with_offset(plot, offset, 0).click().perform()
        _wait(
            lambda: (
                abs(browser.execute_script("return document.querySelector('video').currentTime") - 2.0) < 0.1
            ),
            "the seek",
        )
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "view.png"))
        # the arrow keys move between episodes
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_DOWN)
        _wait(lambda: browser.find_element(By.ID, "title").text != first, "the next episode")
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        browser.quit()
    assert np.isfinite(x1)


def annotated(tiny_model_dirs, tmp_path: Path, *extra: str) -> Path:
    """A two-episode LeRobot v3.0 dataset (one video file) annotated into <root>/sarm_progress.parquet."""
    from .helpers_lerobot import write_lerobot_v3

    root = write_lerobot_v3(tmp_path / "ds", lengths=(6, 7))
    model = ["--model", str(tiny_model_dirs["qwen3_vl"]), "--max-frames", "4", "--quiet"]
    assert main(["annotate", str(root), "--into-dataset", *model, *extra]) == 0
    return root


def test_annotate_view_shows_a_lerobot_dataset_from_its_parquet(tiny_model_dirs, tmp_path):
    from topreward.annotate.progress_file import read_annotations

    page = tmp_path / "ds.html"
    root = annotated(tiny_model_dirs, tmp_path, "--view", str(page))  # both episodes in one video file
    data = page_data(page.read_text())
    table, _ = read_annotations(root / "sarm_progress.parquet")
    rows = table.to_pydict()
    first, second = sorted(data["episodes"], key=lambda e: int(e["episode_id"]))
    assert first["start"] == 0.0 and second["start"] > 0  # the second episode starts later in the shared file
    assert (page.parent / second["video"]).is_file() and second["num_frames"] == 7
    (run,) = second["runs"].values()
    ends = [
        f for f, e, p in zip(rows["frame_index"], rows["episode_index"], rows["prefix_end"]) if e == 1 and p
    ]
    assert run["frames"] == ends
    # the viewer finds the dataset beside <root>/sarm_progress.parquet, or is told it; else it says so
    assert main(["view", str(root / "sarm_progress.parquet"), "--out", str(tmp_path / "again.html")]) == 0
    lone = tmp_path / "lone.parquet"
    lone.write_bytes((root / "sarm_progress.parquet").read_bytes())
    assert main(["view", str(lone), "--out", str(tmp_path / "x.html"), "--dataset", str(root)]) == 0


def _mpeg4(path: Path, frames: np.ndarray, fps: int) -> Path:
    """An MPEG-4 Part 2 video: decodes everywhere, plays in no browser."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_a_video_browsers_cannot_play_is_said_and_reencoded(tiny_model_dirs, tmp_path):
    from selenium.webdriver.common.by import By

    video = _mpeg4(tmp_path / "old.mp4", colour_frames(20, 64, 96), 10)
    result, page = tmp_path / "r.json", tmp_path / "r.html"
    argv = [
        "score",
        str(video),
        "open the drawer",
        "--model",
        str(tiny_model_dirs["qwen3_vl"]),
        "--out",
        str(result),
    ]
    assert main([*argv, "--max-frames", "4", "--view", str(page), "--quiet"]) == 0
    (episode,) = page_data(page.read_text())["episodes"]
    assert episode["codec"] == "mpeg4" and episode["playable"] is False
    fixed = tmp_path / "fixed.html"
    assert main(["view", str(result), "--out", str(fixed), "--reencode"]) == 0
    (copy,) = page_data(fixed.read_text())["episodes"]
    assert copy["codec"] == "h264" and copy["playable"] and copy["video"].startswith("fixed_videos/")
    browser = _driver(tmp_path)
    try:
        browser.get(page.as_uri())
        note = _wait(lambda: browser.find_element(By.ID, "note").text, "the note")
        assert (
            "browsers do not play" in note
            and "--reencode" in note
            and not browser.find_elements(By.TAG_NAME, "video")
        )
        browser.get(fixed.as_uri())
        _wait(
            lambda: browser.execute_script(
                "const v = document.querySelector('video'); return v && v.readyState >= 1"
            ),
            "the copy",
        )
    finally:
        browser.quit()


def test_a_rerun_recording_reads_back_with_its_timelines(tiny_model_dirs, tmp_path):
    """`view --rerun`: frames under the camera key, progress per run at its frames, on `frame_index` and
    `timestamp` timelines (lerobot-dataset-viz's); read back with Rerun's own reader."""
    from topreward.annotate.progress_file import read_annotations

    from .helpers_lerobot import CAMERAS

    chunk = pytest.importorskip("rerun.chunk")
    root = annotated(tiny_model_dirs, tmp_path)
    rrd = tmp_path / "rec"
    parquet = root / "sarm_progress.parquet"
    assert (
        main(["view", str(parquet), "--out", str(tmp_path / "v.html"), "--rerun", str(rrd), "--label", "top"])
        == 0
    )
    rows = read_annotations(parquet)[0].to_pydict()
    recording = chunk.RrdReader(rrd / "episode_1.rrd").store()
    tables = {}
    for c in recording.stream().to_chunks():
        tables.setdefault(str(c.entity_path), []).append(c.to_record_batch().to_pydict())
    camera = "/" + CAMERAS[0]  # the dataset's first camera, the one annotate scored
    images = [r for t in tables[camera] for r in t["frame_index"]]
    assert images == list(range(7)) and all(k in tables[camera][0] for k in ("timestamp", "Image:buffer"))
    progress = tables["/progress/top"]
    frames = [f for t in progress for f in t["frame_index"]]
    values = [v[0] for t in progress for v in t["Scalars:scalars"]]
    ends = [
        (f, p)
        for f, e, p, end in zip(
            rows["frame_index"], rows["episode_index"], rows["progress_sparse"], rows["prefix_end"]
        )
        if e == 1 and end
    ]
    assert frames == [f for f, _ in ends] and values == pytest.approx([p for _, p in ends])


def test_outputs_never_replace_inputs_and_sole_checks_its_sampling(bench_runs, tmp_path, capsys):
    from topreward.scorers.sole import SoleConfig

    _, a, _ = bench_runs
    records = a / "episodes.jsonl"
    before = records.read_bytes()
    assert main(["view", str(a), "--out", str(records)]) == 2  # the page would replace an input
    assert main(["view", str(a), "--out", str(tmp_path / "v.html"), "--rerun", str(a)]) == 2
    assert "never replaces an input" in capsys.readouterr().err and records.read_bytes() == before
    for bad in (
        {"temperature": -1.0},
        {"temperature": float("nan")},
        {"top_p": 0.0},
        {"top_k": -3},
        {"max_new_tokens": 0},
    ):
        with pytest.raises(ValueError):
            SoleConfig(**bad)


def test_the_progress_overlay_video_grows_its_curve_with_the_frames(bench_runs, tmp_path, capsys):
    """`view --mp4`: the source frame on top, pixel for pixel; under it a playhead at each frame and each
    run's curve drawn up to the prefixes that end by then; one mp4 per episode at the episode's rate."""
    from topreward.video import probe_video, read_frames, seek_read_frames
    from topreward.view import from_bench
    from topreward.view.overlay import COLORS, Panel, faint, render_episode, rgb

    _, a, b = bench_runs
    episodes, methods = from_bench([a, b])
    episode = episodes[0]
    source = seek_read_frames(episode.video, np.arange(episode.num_frames))
    frames = render_episode(episode, methods, source)
    scale = -(-384 // source.shape[2])
    h = source.shape[1] * scale
    assert np.array_equal(frames[:, :h], source.repeat(scale, 1).repeat(scale, 2))
    panel = Panel(frames.shape[2], len(frames), len(methods))
    assert frames.shape[1] == h + panel.height
    below = frames[:, h:]
    mid = (panel.top + panel.bottom) // 2
    for i in (0, len(frames) // 2, len(frames) - 1):  # the playhead is at frame i, and only there on its row
        row = below[i, mid + 1].astype(int)  # just off the 0.5 grid line
        assert np.abs(row[panel.x(i)] - (40, 40, 40)).max() < 30, i
        others = [x for x in range(panel.left, panel.right) if abs(x - panel.x(i)) > 1]
        assert not (np.abs(row[others] - (40, 40, 40)).max(axis=1) < 30).any(), i
    for label, colour in zip(methods, COLORS):
        run = episode.runs[label]
        last, first = max(run.frames), min(run.frames)
        value = run.progress[run.frames.index(last)]
        spot = (
            panel.y(value),
            panel.x(last),
        )  # the run's last point: faint before its prefix ends, then full
        assert np.abs(below[first][spot].astype(int) - faint(rgb(colour))).max() < 40, label
        assert np.abs(below[last][spot].astype(int) - rgb(colour)).max() < 40, label

    out = tmp_path / "overlays"
    assert main(["view", str(a), str(b), "--out", str(tmp_path / "v.html"), "--mp4", str(out)]) == 0
    written = sorted(out.glob("*.mp4"))
    assert [p.name for p in written] == [
        f"episode_{e.episode_id}.mp4" for e in sorted(episodes, key=lambda e: e.episode_id)
    ]
    info = probe_video(written[0])
    assert (info.num_frames, info.height, info.width) == frames.shape[:3] and info.fps == episode.fps
    assert np.abs(read_frames(written[0]).astype(int) - frames).mean() < 3  # H.264 at crf 18
    assert main(["view", str(a), "--out", str(tmp_path / "w.html"), "--mp4", str(tmp_path / "one.mp4")]) != 0
    assert "names one video but the inputs hold 3 episodes" in capsys.readouterr().err
    assert not (tmp_path / "w.html").exists()  # refused before anything is written


def test_the_overlay_needs_videos_and_never_writes_over_one(bench_runs, tmp_path):
    from topreward.view import from_bench
    from topreward.view.overlay import write_overlay

    _, a, _ = bench_runs
    episodes, methods = from_bench([a])
    (tmp_path / "o").mkdir()
    copy = shutil.copy(episodes[0].video, tmp_path / "o" / f"episode_{episodes[0].episode_id}.mp4")
    episodes[0].video = str(copy)
    with pytest.raises(ValueError, match="over a source video"):
        write_overlay(episodes, methods, tmp_path / "o")
    episodes[0].video = None
    with pytest.raises(ValueError, match="have no video"):
        write_overlay(episodes, methods, tmp_path / "o")
