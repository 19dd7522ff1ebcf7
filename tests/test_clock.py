"""The rate keeper: deadlines one period apart, overruns counted, period errors measured."""

import time

import pytest

from slac_robot.backends import make_simulation
from slac_robot.config import ConfigError, load_config
from slac_robot.runtime.clock import RateKeeper
from slac_robot.sim.physics import SimClock


def test_a_late_tick_counts_an_overrun_and_does_not_burst():
    clock = RateKeeper(0.01)
    clock.tick()
    assert clock.overruns == 0
    time.sleep(0.05)  # five periods late
    clock.tick()
    assert clock.overruns == 1
    clock.tick()  # the schedule restarted from the late tick: this one is on time again
    assert clock.overruns == 1


def test_period_errors_are_recorded_per_tick():
    clock = RateKeeper(0.005)
    for _ in range(11):
        clock.tick()
    time.sleep(0.02)
    clock.tick()
    stats = clock.jitter()
    assert stats.ticks == 11  # intervals between 12 ticks
    assert stats.overruns == 1
    # the late tick came >= 15 ms after its predecessor, 10 ms more than the period
    assert stats.max_ms >= 10.0
    ((tick, late_ms),) = stats.late_ticks
    assert tick == 12 and late_ms >= 10.0


def test_the_newest_period_errors_are_those_of_the_latest_ticks_across_the_ring():
    clock = RateKeeper(0.005, history=4)  # a ring of 4: the 6 recorded errors wrap around it
    for _ in range(6):
        clock.tick()
    time.sleep(0.02)
    clock.tick()
    assert clock.ticks_recorded == 6  # intervals between 7 ticks
    newest = clock.recent_period_errors_ms(2)
    assert len(newest) == 2 and newest[0] >= 10.0 and newest[1] < 10.0  # newest first: the late one
    assert len(clock.recent_period_errors_ms(10)) == 4  # no more than the ring holds


def test_restart_forgets_a_pause():
    clock = RateKeeper(0.005)
    clock.tick()
    time.sleep(0.02)
    clock.restart()
    clock.tick()
    assert clock.overruns == 0 and clock.jitter().ticks == 0


def test_it_paces_an_inner_clock_and_takes_its_time():
    simulation = make_simulation(dict(load_config("rollout").backend))
    inner = SimClock(simulation)
    clock = RateKeeper(inner.period_s, inner=inner)
    t0 = clock.now_s()
    clock.tick()
    clock.tick()
    assert clock.now_s() == pytest.approx(t0 + 2 * inner.period_s)  # the physics advanced two periods


def test_the_period_must_be_positive():
    with pytest.raises(ConfigError, match="period_s"):
        RateKeeper(0.0)
