"""The rate keeper: a control loop at a fixed rate on the wall clock, with its jitter measured."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from slac_robot.config import require_int, require_positive
from slac_robot.interfaces import ControlClock


MAX_LATE_TICKS = 100  # overruns whose tick and lateness are kept, to find what caused them


@dataclass(frozen=True)
class JitterStats:
    """How well the loop kept its rate: |period error| percentiles over the recorded ticks.

    The period error of a tick is (time between it and the previous tick) - period_s."""

    ticks: int
    overruns: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    late_ticks: tuple[tuple[int, float], ...] = ()  # (tick, ms past its deadline) of the first overruns

    def __str__(self) -> str:
        return (f"{self.ticks} ticks: |period error| p50 {self.p50_ms:.3f} ms, p99 {self.p99_ms:.3f} ms, "
                f"max {self.max_ms:.3f} ms; {self.overruns} overruns")


class RateKeeper:
    """ControlClock that holds a fixed rate on the monotonic wall clock.

    `tick` first lets the inner clock (if any) pass one period, e.g. the simulation's physics,
    then sleeps until the next deadline. Deadlines are period_s apart; a tick that finds its
    deadline already passed counts an overrun and restarts the schedule from now (no burst of
    catch-up ticks, which would move the claw faster than the policy asked).

    period_s: the control period. inner: a backend clock to pace in real time (backend=sim or
    emulated in a session); None on hardware, where time itself passes. `now_s` is the inner
    clock's time when there is one (robot and camera stamps are taken on it), else monotonic.
    history: how many recent period errors are kept for `jitter()`.
    """

    def __init__(self, period_s: float, inner: ControlClock | None = None, history: int = 100_000):
        self._period_s = require_positive("period_s", period_s)
        self._inner = inner
        self._deadline_s: float | None = None
        self._last_wake_s: float | None = None
        self._errors_s = np.zeros(require_int("history", history), dtype=np.float64)
        self._recorded = 0
        self._ticks = 0
        self._late_ticks: list[tuple[int, float]] = []
        self.overruns = 0

    @property
    def period_s(self) -> float:
        return self._period_s

    def now_s(self) -> float:
        return self._inner.now_s() if self._inner is not None else time.monotonic()

    def tick(self) -> None:
        if self._inner is not None:
            self._inner.tick()
        now = time.monotonic()
        if self._deadline_s is None:
            self._deadline_s = now
        self._deadline_s += self._period_s
        self._ticks += 1
        if self._deadline_s < now:
            self.overruns += 1
            if len(self._late_ticks) < MAX_LATE_TICKS:
                self._late_ticks.append((self._ticks, round((now - self._deadline_s) * 1e3, 3)))
            self._deadline_s = now
        else:
            time.sleep(self._deadline_s - now)
        wake = time.monotonic()
        if self._last_wake_s is not None:
            self._errors_s[self._recorded % len(self._errors_s)] = wake - self._last_wake_s - self._period_s
            self._recorded += 1
        self._last_wake_s = wake

    def restart(self) -> None:
        """Forgets the schedule: the next tick starts a new one (after a pause the loop meant to
        take, e.g. waiting for a person, which must not count as an overrun or as jitter)."""
        self._deadline_s = None
        self._last_wake_s = None

    @property
    def ticks_recorded(self) -> int:
        """Ticks whose period error was recorded so far (the first after a restart has none)."""
        return self._recorded

    def recent_period_errors_ms(self, ticks: int) -> np.ndarray:
        """|period error| in ms of the newest `ticks` recorded ticks (fewer when fewer were
        recorded, or more than `history` ago)."""
        ticks = min(ticks, self._recorded, len(self._errors_s))
        newest = (self._recorded - 1 - np.arange(ticks)) % len(self._errors_s)
        return np.abs(self._errors_s[newest]) * 1e3

    def jitter(self) -> JitterStats:
        """|period error| statistics over the recorded ticks (the newest `history` of them)."""
        errors_ms = self.recent_period_errors_ms(len(self._errors_s))
        late = tuple(self._late_ticks)
        if errors_ms.size == 0:
            return JitterStats(0, self.overruns, 0.0, 0.0, 0.0, late)
        p50, p99 = np.percentile(errors_ms, [50, 99])
        return JitterStats(self._recorded, self.overruns, float(p50), float(p99), float(errors_ms.max()), late)


def set_real_time_priority(priority: int) -> str | None:
    """Puts the calling thread (a control loop's) under SCHED_FIFO at priority; returns None, or
    why it could not, naming the fix."""
    import os

    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError:
        return (f"session.actor_rt_priority={priority} needs root, CAP_SYS_NICE or an rtprio limit "
                "(/etc/security/limits.conf); the control loop runs as an ordinary thread")
    return None


def write_control_loop_report(rate_keeper: RateKeeper, path) -> str:
    """Writes the control loop's jitter (JitterStats, and its rate) to path as JSON; returns a
    one-line summary."""
    import dataclasses
    import json

    from slac_robot.storage import write_atomically

    stats = rate_keeper.jitter()
    report = {"rate_hz": 1.0 / rate_keeper.period_s, **dataclasses.asdict(stats)}
    write_atomically(path, json.dumps(report, indent=1).encode())
    return f"control loop at {1.0 / rate_keeper.period_s:g} Hz: {stats}"
