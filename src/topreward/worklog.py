"""Append-only JSON-lines logs that make long jobs resumable (annotate's work file, bench's results)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a JSON-lines file (blank lines skipped); a damaged line is an error naming it."""
    path = Path(path)
    records = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(
                        f"{path}:{lineno}: not a JSON line ({e.msg}); the file is damaged"
                    ) from e
    return records


class JsonlLog:
    """Records keyed by some of their fields; each `add` is one line, flushed and fsynced.

    A torn last line (a kill in the middle of a write) is cut off when the log is opened, so the next
    record starts on a line of its own and nothing that was complete is lost.
    """

    def __init__(self, path: str | Path, key: tuple[str, ...]) -> None:
        self.path, self.key = Path(path), key
        self.records: dict[tuple, dict[str, Any]] = {}
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            logger.info("%s: dropping a torn last line from an interrupted run", self.path)
            with open(self.path, "r+b") as f:
                f.truncate(len(complete))
        for lineno, line in enumerate(complete.decode("utf-8", errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                self.records[self.key_of(rec)] = rec
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                # a complete line that is not a record: damage from outside, never from a kill (those tear
                # only the last line); its records are unknown, so the user decides what to drop
                what = e.msg if isinstance(e, json.JSONDecodeError) else f"no {' / '.join(self.key)} field"
                raise ValueError(
                    f"{self.path}:{lineno}: damaged line ({what}: {line[:60]!r}); delete that line to keep "
                    "the other finished records and run again (its work is redone), or start again with "
                    "--overwrite"
                ) from e

    def key_of(self, rec: dict[str, Any]) -> tuple:
        return tuple(rec[k] for k in self.key)

    def __contains__(self, key: tuple) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def add(self, rec: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records[self.key_of(rec)] = rec


_HELD: set[Path] = set()  # lock files this process holds (its own checks must not trip over them)


def check_unlocked(path: str | Path, what: str) -> None:
    """Raise (as `locked` does) when another live run holds the lock `path`; hold nothing afterwards."""
    path = Path(path)
    if path.exists() and path.resolve() not in _HELD:
        with locked(path, what):
            pass


@contextmanager
def locked(path: str | Path, what: str) -> Iterator[Path]:
    """Hold an exclusive lock on `path` (a lock file beside an output) for one run; a second run that
    asks for it while the first is alive gets an error naming the first run's process id.

    The lock is an `flock` on the file (released by the kernel when the process dies, so a killed run
    never leaves a stale lock); the file is removed at the end. `what` names the output in messages.
    Where `fcntl` does not exist (Windows), nothing is locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield Path(path)
        return
    path = Path(path)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise FileExistsError(
                f"another run (process {holder}) is writing {what} now ({path} is locked); wait for it to "
                "finish, or write to another output"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a lock file that the run before us removed after we opened it
            break
        os.close(fd)
    held = path.resolve()
    _HELD.add(held)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield path
    finally:
        _HELD.discard(held)
        path.unlink(missing_ok=True)
        os.close(fd)
