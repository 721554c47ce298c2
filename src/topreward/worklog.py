"""Append-only JSON-lines logs that make long jobs resumable (annotate's work file, bench's results)."""

from __future__ import annotations

import json
import logging
import os
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
        for line in complete.decode().splitlines():
            if line.strip():
                rec = json.loads(line)
                self.records[self.key_of(rec)] = rec

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
