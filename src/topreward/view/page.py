"""The viewer page: one HTML file, no network, nothing vendored (plain JavaScript and inline SVG).

The episodes' data is embedded as JSON; the page shows a sortable, filterable list of episodes and, for the
one chosen, its video (one `<video>` element whose source changes: 500 episodes embed no 500 videos) above
its progress curves, one per run, with the ground truth dashed. A playhead follows the video's
`currentTime`; a click on the plot seeks the video; arrow keys (or j / k) move between episodes. A video
the browser cannot play is said so on the page, with the command that re-encodes it. Every plotted point
is a `<circle>` carrying its frame and progress (`data-frame`, `data-progress`), so a test can read them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from topreward.atomic import write_text
from topreward.view.collect import ViewEpisode

_STYLE = """
body{font:14px system-ui,sans-serif;margin:0;display:flex;height:100vh;color:#222}
#side{width:44%;overflow:auto;border-right:1px solid #ccc;padding:8px;box-sizing:border-box}
#main{flex:1;padding:12px;overflow:auto}
table{border-collapse:collapse;width:100%}th,td{padding:3px 6px;border-bottom:1px solid #eee;text-align:left}
th{cursor:pointer;background:#f6f6f6;position:sticky;top:0}tr.sel{background:#dde8ff}tbody tr{cursor:pointer}
#filter{width:100%;margin-bottom:6px;padding:4px;box-sizing:border-box}
video{width:640px;max-width:100%;max-height:45vh;background:#000;display:block}
#plot{border:1px solid #ddd;margin-top:8px;cursor:crosshair}#note{color:#a00;margin:6px 0;white-space:pre-wrap}
.legend span{margin-right:14px;white-space:nowrap}.swatch{display:inline-block;width:12px;height:3px;margin-right:4px;vertical-align:middle}
"""

_SCRIPT = r"""
const D = JSON.parse(document.getElementById('data').textContent);
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];
const W = 640, H = 240, L = 40, R = 10, T = 10, B = 30;
let order = D.episodes.map((_, i) => i), current = -1, sortKey = null, sortUp = true;
const $ = (id) => document.getElementById(id);
const outcome = (e) => e.success === true ? 'success' : e.success === false ? 'failure' : '';
const fmt = (v) => (v === null || v === undefined || Number.isNaN(v)) ? '' : Number(v).toFixed(3);
function cell(e, k) {
  if (k === 'id') return e.episode_id; if (k === 'instruction') return e.instruction;
  if (k === 'outcome') return outcome(e); if (k === 'dataset') return e.dataset;
  const [what, m] = k.split(':'); const run = e.runs[m];
  return run ? (what === 'voc' ? run.voc : run.success_score) : null;
}
function header() {
  const cols = [['id', 'episode'], ['dataset', 'dataset'], ['instruction', 'instruction'], ['outcome', 'outcome']];
  D.methods.forEach((m) => { cols.push(['voc:' + m, 'VOC ' + m]); cols.push(['success:' + m, 'success ' + m]); });
  const tr = document.createElement('tr');
  cols.forEach(([k, name]) => {
    const th = document.createElement('th'); th.textContent = name; th.dataset.k = k;
    th.onclick = () => { sortUp = sortKey === k ? !sortUp : true; sortKey = k; renderList(); };
    tr.appendChild(th);
  });
  $('head').appendChild(tr); return cols.map((c) => c[0]);
}
const COLS = header();
function renderList() {
  const q = $('filter').value.toLowerCase();
  order = D.episodes.map((_, i) => i).filter((i) => {
    const e = D.episodes[i]; return !q || [e.episode_id, e.instruction, e.dataset, outcome(e)].join(' ').toLowerCase().includes(q);
  });
  if (sortKey) order.sort((a, b) => {
    const x = cell(D.episodes[a], sortKey), y = cell(D.episodes[b], sortKey);
    const c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x ?? '').localeCompare(String(y ?? ''));
    return sortUp ? c : -c;
  });
  const body = $('rows'); body.innerHTML = '';
  order.forEach((i) => {
    const e = D.episodes[i], tr = document.createElement('tr'); tr.dataset.index = i;
    if (i === current) tr.className = 'sel';
    COLS.forEach((k) => { const td = document.createElement('td'); const v = cell(e, k);
      td.textContent = typeof v === 'number' ? fmt(v) : (v ?? ''); tr.appendChild(td); });
    tr.onclick = () => show(i); body.appendChild(tr);
  });
}
const sx = (e, t) => L + (W - L - R) * t / Math.max((e.num_frames - 1) / e.fps, 1e-9);
const sy = (p) => T + (H - T - B) * (1 - p);
function svg(tag, attrs) { const n = document.createElementNS('http://www.w3.org/2000/svg', tag);
  Object.entries(attrs).forEach(([k, v]) => n.setAttribute(k, v)); return n; }
function drawPlot(e) {
  const p = $('plot'); p.innerHTML = '';
  p.appendChild(svg('line', {x1: L, y1: sy(0), x2: W - R, y2: sy(0), stroke: '#999'}));
  p.appendChild(svg('line', {x1: L, y1: sy(0), x2: L, y2: sy(1), stroke: '#999'}));
  [0, 0.5, 1].forEach((v) => { const t = svg('text', {x: 4, y: sy(v) + 4, 'font-size': 11}); t.textContent = v; p.appendChild(t); });
  const end = svg('text', {x: W - R - 40, y: H - 8, 'font-size': 11}); end.textContent = ((e.num_frames - 1) / e.fps).toFixed(1) + ' s'; p.appendChild(end);
  if (e.truth) p.appendChild(svg('polyline', {points: e.truth.map((v, f) => `${sx(e, f / e.fps)},${sy(v)}`).join(' '),
    fill: 'none', stroke: '#555', 'stroke-dasharray': '5,4', class: 'truth'}));
  const legend = $('legend'); legend.innerHTML = '';
  D.methods.forEach((m, j) => {
    const run = e.runs[m]; if (!run) return; const color = COLORS[j % COLORS.length];
    const pts = run.frames.map((f, k) => [f, run.progress[k]]).filter(([, v]) => v !== null && !Number.isNaN(v));
    p.appendChild(svg('polyline', {points: pts.map(([f, v]) => `${sx(e, f / e.fps)},${sy(v)}`).join(' '), fill: 'none', stroke: color, 'stroke-width': 2}));
    pts.forEach(([f, v]) => p.appendChild(svg('circle', {cx: sx(e, f / e.fps), cy: sy(v), r: 3, fill: color,
      class: 'point', 'data-method': m, 'data-frame': f, 'data-progress': v})));
    const span = document.createElement('span'); const ctl = Object.entries(run.controls || {}).map(([c, v]) => `${c} ${fmt(v)}`).join(', ');
    span.innerHTML = `<i class="swatch" style="background:${color}"></i>`;
    span.appendChild(document.createTextNode(`${m}: VOC ${fmt(run.voc)}` + (ctl ? ` (controls: ${ctl})` : '')));
    legend.appendChild(span);
  });
  if (e.truth) { const s = document.createElement('span'); s.textContent = '- - ground truth'; legend.appendChild(s); }
  p.appendChild(svg('line', {id: 'playhead', x1: L, y1: T, x2: L, y2: H - B, stroke: '#000', 'stroke-width': 1}));
}
function playhead() {
  const e = D.episodes[current], v = document.querySelector('video'); if (!e || !v) return;
  const t = Math.max(0, v.currentTime - e.start), x = sx(e, Math.min(t, (e.num_frames - 1) / e.fps));
  const line = $('playhead'); if (line) { line.setAttribute('x1', x); line.setAttribute('x2', x); }
}
function tick() { playhead(); const v = document.querySelector('video'); if (v && !v.paused) requestAnimationFrame(tick); }
function show(i) {
  current = i; const e = D.episodes[i];
  $('title').textContent = `${e.episode_id}: ${e.instruction}` + (outcome(e) ? ` (${outcome(e)})` : '');
  $('note').textContent = '';
  const box = $('player'); box.innerHTML = '';
  if (e.video && e.playable === false) {
    $('note').textContent = `${e.video} is ${e.codec} video, which browsers do not play. Write H.264 copies beside ` +
      `the page with: topreward view ... --reencode (or: ffmpeg -i "${e.video}" -c:v libx264 -pix_fmt yuv420p OUT.mp4)`;
  } else if (e.video) {
    const v = document.createElement('video'); v.controls = true; v.preload = 'metadata'; v.muted = true;
    v.src = e.video.split('/').map(encodeURIComponent).join('/');
    v.addEventListener('loadedmetadata', () => { if (e.start) v.currentTime = e.start; playhead(); });
    v.addEventListener('timeupdate', playhead); v.addEventListener('seeked', playhead);
    v.addEventListener('play', () => requestAnimationFrame(tick));
    v.addEventListener('error', () => { $('note').textContent = `This browser cannot play ${e.video}. Re-encode it to H.264:\n` +
      `ffmpeg -i "${e.video}" -c:v libx264 -pix_fmt yuv420p "${e.video.replace(/\.[^.]+$/, '')}.h264.mp4"`; });
    box.appendChild(v);
  } else { $('note').textContent = 'No video file found for this episode.'; }
  drawPlot(e); renderList();
  const row = document.querySelector(`tr[data-index="${i}"]`); if (row) row.scrollIntoView({block: 'nearest'});
}
$('plot').addEventListener('click', (ev) => {
  const e = D.episodes[current], v = document.querySelector('video'); if (!e || !v) return;
  const box = $('plot').getBoundingClientRect(), x = (ev.clientX - box.left) * W / box.width;
  const t = Math.min(Math.max((x - L) / (W - L - R), 0), 1) * (e.num_frames - 1) / e.fps;
  v.currentTime = e.start + t; playhead();
});
$('filter').addEventListener('input', renderList);
document.addEventListener('keydown', (ev) => {
  if (ev.target === $('filter')) return;
  const at = order.indexOf(current);
  if (ev.key === 'ArrowDown' || ev.key === 'j') { ev.preventDefault(); if (at + 1 < order.length) show(order[at + 1]); }
  if (ev.key === 'ArrowUp' || ev.key === 'k') { ev.preventDefault(); if (at > 0) show(order[at - 1]); }
});
renderList(); if (order.length) show(order[0]);
"""


#: video codecs browsers play (Chromium, Firefox: H.264 in mp4, VP8/VP9/AV1)
BROWSER_CODECS = frozenset({"h264", "vp8", "vp9", "av1", "libdav1d", "libaom-av1"})


def codec_of(path: str | Path) -> str:
    """The codec of a video file's first video stream ("?" when it cannot be read)."""
    import av

    try:
        with av.open(str(path)) as container:
            return container.streams.video[0].codec_context.name
    except (av.error.FFmpegError, IndexError, OSError):
        return "?"


def reencode(episodes: list[ViewEpisode], folder: str | Path) -> list[str]:
    """Copies of the videos browsers cannot play, as H.264 mp4 in `folder` (frame for frame, same rate, so an
    episode's start second is kept); the episodes point at the copies. Returns the videos re-encoded."""
    from topreward.video import probe_video, read_frames, write_video

    folder = Path(folder)
    done: dict[str, str] = {}
    for episode in episodes:
        if not episode.video or codec_of(episode.video) in BROWSER_CODECS:
            continue
        if episode.video not in done:
            frames = read_frames(episode.video)
            pad = ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0))  # H.264: even sizes
            target = folder / f"{len(done):04d}_{Path(episode.video).stem}.mp4"
            write_video(target, np.pad(frames, pad), probe_video(episode.video).fps)
            done[episode.video] = str(target)
        episode.video = done[episode.video]
    return list(done)


def write_view(
    episodes: list[ViewEpisode], methods: list[str], out: str | Path, title: str = "topreward view"
) -> Path:
    """Write the page to `out`; video paths are made relative to its folder (the page opens from file://).
    A video in a codec browsers do not play is marked, and the page says how to re-encode it."""
    out = Path(out)
    if not episodes:
        raise ValueError("nothing to show: the inputs hold no episodes")
    folder = out.resolve().parent
    data = {"title": title, "methods": methods, "episodes": []}
    codecs: dict[str, str] = {}
    for episode in episodes:
        item = dataclasses.asdict(episode)
        if episode.video:
            item["video"] = Path(os.path.relpath(Path(episode.video).resolve(), folder)).as_posix()
            codec = codecs.setdefault(episode.video, codec_of(episode.video))
            item["codec"], item["playable"] = codec, codec in BROWSER_CODECS
        data["episodes"].append(item)
    payload = json.dumps(_no_nan(data), allow_nan=False).replace("</", "<\\/")
    html = (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{_escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>"
        '<div id="side"><input id="filter" placeholder="filter: episode, task, dataset, outcome">'
        '<table><thead id="head"></thead><tbody id="rows"></tbody></table></div>'
        '<div id="main"><h3 id="title"></h3><div id="player"></div>'
        f'<svg id="plot" width="640" height="240" viewBox="0 0 640 240"></svg>'
        '<div id="legend" class="legend"></div><div id="note"></div>'
        '<p style="color:#777">arrow keys or j / k: next and previous episode; click the plot to seek</p></div>'
        f'<script id="data" type="application/json">{payload}</script><script>{_SCRIPT}</script></body></html>'
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, html)
    return out


def _no_nan(value):
    """NaN (no value, e.g. a failed GVL point) as null: JSON has no NaN."""
    if isinstance(value, float):
        return None if value != value else value
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
