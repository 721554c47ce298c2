"""The documentation holds together: its offline commands run, every page is in the site's nav, every
relative link lands.

**Convention.** A fenced shell block whose info string is exactly ``bash title="runs offline"`` (in
README.md or docs/**/*.md; the site shows the title) is run by this test, as written::

    ```bash title="runs offline"
    topreward score episode.mp4 "open the drawer" --model ./tiny --out result.json --plot curve.png
    ```

Each page's blocks run in order, with `bash -e -o pipefail`, in one fresh folder per page that holds
`episode.mp4` (the demo's held-out clip, a simulated robot opening a drawer: "open the drawer") and `tiny/`
(a tiny random-weight Qwen3-VL, as `topreward make-tiny-model ./tiny --arch qwen3_vl` writes it). PATH
starts with this interpreter's folder (the venv's `topreward` and `python`) and the Hugging Face libraries
are told to stay offline; every block must exit 0. Mark only commands that run in seconds on a CPU without
the Hub, a GPU, a LeRobot venv or a server: the tiny model, the demo reward model
(`python -c "from importlib.resources import files; print(files('topreward') / 'assets' / 'demo_model')"`)
and the sim fixture (`python -c "from topreward.sim import fixture_dir; print(fixture_dir())"`) are there
for that. docs/tests.md ("Commands in the docs are tested") says the same to readers. `mkdocs build
--strict`, run by CI, checks the site itself (anchors, the API pages).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import unicodedata
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MARKER = 'bash title="runs offline"'
#: at least this many marked blocks: a typo in the marker must not turn the test into a no-op
MIN_BLOCKS = 6
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
LINK = re.compile(r"!?\[[^\]\n]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")


def pages() -> list[Path]:
    """README.md, then the docs pages in the site's nav order (pages outside the nav last)."""
    listed = [DOCS / p for p in nav_pages()]
    rest = sorted(p for p in DOCS.rglob("*.md") if p not in listed)
    return [ROOT / "README.md", *listed, *rest]


def nav_pages() -> list[str]:
    """Every page named in mkdocs.yml's nav, relative to docs/."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    found: list[str] = []

    def walk(entry) -> None:
        if isinstance(entry, str):
            found.append(entry)
        elif isinstance(entry, list):
            for item in entry:
                walk(item)
        elif isinstance(entry, dict):
            for value in entry.values():
                walk(value)

    walk(config["nav"])
    return found


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    info: str
    text: str


def fenced_blocks(page: Path) -> list[Block]:
    """Every fenced code block of a Markdown page (a fence closes only with at least as many of its marks,
    so a block shown inside a longer fence is not a block of its own)."""
    blocks, opened, body = [], None, []
    for number, line in enumerate(page.read_text().splitlines(), 1):
        m = FENCE.match(line)
        if opened is None:
            if m:
                opened, body = (number, m["indent"], m["fence"], m["info"].strip()), []
            continue
        start, indent, fence, info = opened
        if m and m["fence"][0] == fence[0] and len(m["fence"]) >= len(fence) and not m["info"].strip():
            blocks.append(Block(page, start, info, "\n".join(body) + "\n"))
            opened = None
        else:
            body.append(line[len(indent) :] if line.startswith(indent) else line)
    assert opened is None, f"{page.relative_to(ROOT)}:{opened[0]}: a code fence is never closed"
    return blocks


def offline_blocks(page: Path) -> list[Block]:
    blocks = [b for b in fenced_blocks(page) if "runs offline" in b.info]
    for b in blocks:
        assert b.info == MARKER, (
            f"{page.relative_to(ROOT)}:{b.line}: info string {b.info!r}; a tested block is marked exactly {MARKER!r}"
        )
    return blocks


PAGES_WITH_COMMANDS = [p for p in pages() if offline_blocks(p)]


def run_page(page: Path, folder: Path, inputs: dict[str, Path]) -> str | None:
    """Run a page's marked blocks in order in `folder`; None when all exit 0, else what went wrong."""
    shutil.copy(inputs["episode.mp4"], folder / "episode.mp4")
    shutil.copytree(inputs["tiny"], folder / "tiny")  # a copy: a block may rewrite ./tiny
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",  # two pages run at once: one thread each, no oversubscription
    }
    for block in offline_blocks(page):
        script = folder / f"block_{block.line}.sh"
        script.write_text(block.text)
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", str(script)],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            return (
                f"{page.relative_to(ROOT)}:{block.line}: the block exited {done.returncode}\n{block.text}\n"
                f"--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-3000:]}"
            )
    return None


@pytest.fixture(scope="module")
def page_runs(request, tiny_model_dirs, tmp_path_factory) -> dict[Path, Future]:
    """The selected pages' blocks, started at once on two workers (each block is mostly one process's
    imports and model load: two pages at a time halve the wall time on two cores)."""
    assert (Path(sys.executable).parent / "topreward").exists(), (
        f"no `topreward` beside {sys.executable}; pip install -e ."
    )
    wanted = [
        item.callspec.params["page"]
        for item in request.session.items
        if item.originalname == "test_offline_commands_run" and hasattr(item, "callspec")
    ]
    clip = resources.files("topreward") / "assets" / "demo_heldout.mp4"
    with resources.as_file(clip) as path, ThreadPoolExecutor(max_workers=2) as pool:
        inputs = {"episode.mp4": Path(path), "tiny": tiny_model_dirs["qwen3_vl"]}
        runs = {
            page: pool.submit(run_page, page, tmp_path_factory.mktemp(page.stem), inputs)
            for page in PAGES_WITH_COMMANDS
            if page in wanted
        }
        yield runs


def test_blocks_are_marked():
    count = sum(len(offline_blocks(p)) for p in pages())
    assert count >= MIN_BLOCKS, f"only {count} blocks marked {MARKER!r} in README.md and docs/"


@pytest.mark.parametrize("page", PAGES_WITH_COMMANDS, ids=lambda p: str(p.relative_to(ROOT)))
def test_offline_commands_run(page: Path, page_runs: dict[Path, Future]):
    problem = page_runs[page].result()
    assert problem is None, problem


def test_every_page_is_in_the_nav():
    listed = nav_pages()
    missing = [p for p in listed if not (DOCS / p).is_file()]
    assert not missing, f"mkdocs.yml's nav names pages that do not exist: {missing}"
    unlisted = sorted(
        str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if str(p.relative_to(DOCS)) not in listed
    )
    assert not unlisted, f"pages missing from mkdocs.yml's nav: {unlisted}"


def _heading_text(line: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", line.lstrip("#").strip())  # a link's text only
    return text.replace("`", "").replace("*", "")


def mkdocs_slug(text: str) -> str:
    """Python-Markdown's toc slug (what mkdocs gives a heading)."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def github_slug(text: str) -> str:
    """GitHub's heading anchor (what a link works with when the page is read on GitHub)."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Anchors that work on both the site and GitHub: headings whose two slugs agree."""
    in_code = {n for b in fenced_blocks(page) for n in range(b.line, b.line + b.text.count("\n") + 2)}
    found = set()
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if number in in_code or not re.match(r"#{1,6} ", line):
            continue
        text = _heading_text(line)
        if mkdocs_slug(text) == github_slug(text):
            found.add(mkdocs_slug(text))
    return found


def links(page: Path) -> list[tuple[int, str]]:
    """(line, target) of every Markdown link outside code blocks and inline code."""
    in_code = {n for b in fenced_blocks(page) for n in range(b.line, b.line + b.text.count("\n") + 2)}
    found = []
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if number in in_code:
            continue
        for m in LINK.finditer(re.sub(r"`[^`]*`", "", line)):
            found.append((number, m["target"]))
    return found


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_land(page: Path):
    broken = []
    for number, target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{number}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{number}: {target} (no heading with that anchor on the site and on GitHub)")
        elif path and page.is_relative_to(DOCS) and not dest.is_relative_to(DOCS):
            broken.append(f"{number}: {target} (outside docs/: the site cannot link it)")
    assert not broken, f"{page.relative_to(ROOT)}: broken links\n" + "\n".join(broken)
