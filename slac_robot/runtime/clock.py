"""The wall clock of real hardware: one tick waits for the next control period."""

from __future__ import annotations

import time

from slac_robot.config import require_positive


class WallClock:
    """ControlClock on the monotonic wall clock: `tick` sleeps until the next deadline.

    Deadlines are period_s apart from the first tick; a tick that finds its deadline already
    passed counts an overrun and starts the schedule again from now (no burst of catch-up ticks).
    """

    def __init__(self, period_s: float):
        self._period_s = require_positive("period_s", period_s)
        self._deadline_s: float | None = None
        self.overruns = 0

    @property
    def period_s(self) -> float:
        return self._period_s

    def now_s(self) -> float:
        return time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        if self._deadline_s is None:
            self._deadline_s = now
        self._deadline_s += self._period_s
        if self._deadline_s < now:
            self.overruns += 1
            self._deadline_s = now
            return
        time.sleep(self._deadline_s - now)
