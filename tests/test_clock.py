"""The wall clock of backend=dclaw: deadlines one period apart, overruns counted."""

import time

import pytest

from slac_robot.config import ConfigError
from slac_robot.runtime.clock import WallClock


def test_a_late_tick_counts_an_overrun_and_does_not_burst():
    clock = WallClock(0.01)
    clock.tick()
    assert clock.overruns == 0
    time.sleep(0.05)  # five periods late
    clock.tick()
    assert clock.overruns == 1
    clock.tick()  # the schedule restarted from the late tick: this one is on time again
    assert clock.overruns == 1


def test_the_period_must_be_positive():
    with pytest.raises(ConfigError, match="period_s"):
        WallClock(0.0)
