"""The safety event log: one JSON object per line, on disk before the next line is written.

A line is flushed and fsynced as soon as it is written, so that a crash (or a pulled plug) right
after a trip still leaves the trip in the log. A crash while writing can tear the last line;
`read_events` skips it.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import time
from typing import Any

import numpy as np

from slac_robot.storage import append_to_descriptor, named


class EventLog:
    """Appends events to a JSONL file (created with its folder if missing; kept when it exists).

    Each line: {"time_utc": ISO 8601, "monotonic_s": time.monotonic(), "kind": ..., **fields}.
    Reopening a log whose last line was torn by a crash cuts that fragment off first, so that
    new events start on a line of their own.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        if not created:
            _drop_torn_tail(self.path)
        try:
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            raise named(error, self.path) from None
        if created:
            # The new name must survive a crash too, not only the lines written under it.
            _fsync_folder(self.path.parent)

    def write(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Appends one event and returns it; numpy values are written as plain numbers and lists."""
        event = {
            "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "monotonic_s": time.monotonic(),
            "kind": kind,
            **fields,
        }
        line = json.dumps(event, default=_plain) + "\n"
        # One write, cut off again if it fails part-way: a full disk loses this event (the
        # OSError names the log), never the line structure of the ones before.
        append_to_descriptor(self._fd, line.encode("utf-8"), self.path, fsync=True)
        return json.loads(line)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "EventLog":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_events(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The events of a log, oldest first; [] when the file does not exist.

    A torn last line (a crash while writing it) is left out; a damaged line before the last
    raises ValueError naming it."""
    path = pathlib.Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    events = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):  # the last line, without its newline: torn by a crash
                break
            raise ValueError(f"{path}: line {number} is not a JSON event: {line[:80]!r}") from None
    return events


def _plain(value: Any) -> Any:
    """json's fallback for what it cannot write itself: numpy values, paths."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot write a {type(value).__name__} into the event log")


def _drop_torn_tail(path: pathlib.Path) -> None:
    """Cuts off what follows the last newline (a line torn by a crash; never a whole event)."""
    with open(path, "r+b") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())


def _fsync_folder(folder: pathlib.Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
