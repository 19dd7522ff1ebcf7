"""Stopping on SIGINT (Ctrl-C) and SIGTERM at a safe point, between two control steps.

A Python signal handler that raises KeyboardInterrupt can fire anywhere, including inside a
finalizer (of an ffmpeg writer, say), where the exception is printed and then swallowed and the
run goes on. So the handler only records the signal, and control loops poll `StopSignal.check()`
between steps, which raises `Interrupted` in our own code, where cleanup is certain. A second
signal while the first is pending raises KeyboardInterrupt at once, for a stuck loop.
"""

from __future__ import annotations

import signal
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """A stop was requested by a signal; `signal_name` is e.g. "SIGINT", `exit_code` 128 + number."""

    def __init__(self, signum: int):
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {self.signal_name}")


class StopSignal:
    """Context manager: while active, SIGINT and SIGTERM request a stop instead of raising."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignal":
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        self.received = signum

    def check(self) -> None:
        """Raises Interrupted when a stop was requested."""
        if self.received is not None:
            raise Interrupted(self.received)
