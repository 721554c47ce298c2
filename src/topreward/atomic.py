"""Writing outputs so that a reader never sees half of one: write beside the target, then rename onto it.

An interrupted run (Ctrl-C, a full disk, a crash) leaves the previous file as it was, never a truncated one;
`os.replace` is atomic on one file system, and the temporary sibling lives in the target's own folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def partial_path(target: str | Path) -> Path:
    """The hidden sibling `target` is written to first: `.NAME.partial.SUFFIX` (writers that pick the format
    from the suffix, e.g. video or npz, still see it)."""
    target = Path(target)
    return target.with_name(f".{target.stem}.partial{target.suffix}")


@contextmanager
def replacing(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target` to write (a file or a folder); when the block ends without an
    error it replaces `target`, else it is removed and `target` stays as it was.

    A file is swapped in one `os.replace`. A folder cannot be renamed onto a non-empty one, so an existing
    folder is deleted first: between the two steps neither exists (a crash there leaves the complete new
    folder under its partial name, and the next write starts again).
    """
    target = Path(target)
    tmp = partial_path(target)
    _remove(tmp)  # a leftover of an earlier interrupted write
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if tmp.is_dir() and target.is_dir():  # a folder cannot be renamed onto a non-empty one
        shutil.rmtree(target)
    os.replace(tmp, target)


def write_text(target: str | Path, text: str) -> Path:
    """Write `text` to `target` atomically; returns the path."""
    with replacing(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
