"""Making the robot safe: hold where it is for a moment, then torque off (or torque off at once).

Holding first lets a claw that was moving come to rest under control instead of dropping; the
torque goes off in the end either way. This runs when something already went wrong, so it never
raises on a robot error: it does what it can and reports what failed.
"""

from __future__ import annotations

import math

import numpy as np

from slac_robot.interfaces import ControlClock, Robot

TORQUE_OFF = "torque_off"
HOLD_THEN_TORQUE_OFF = "hold_then_torque_off"
STOP_MODES = (TORQUE_OFF, HOLD_THEN_TORQUE_OFF)


def make_safe(robot: Robot, clock: ControlClock, mode: str, hold_s: float) -> list[str]:
    """Brings the robot to its safe state; returns the failures (empty: all went as planned).

    mode: "torque_off", or "hold_then_torque_off": command the measured joint positions for
        hold_s worth of clock ticks (at least one), then torque off. When the position cannot be
        read (or is not finite), the torque goes off at once.
    An unknown mode is reported as a failure, after the torque went off."""
    failures: list[str] = []
    if mode == HOLD_THEN_TORQUE_OFF:
        failures += _hold(robot, clock, hold_s)
    elif mode != TORQUE_OFF:
        failures.append(f"unknown stop mode {mode!r} (one of {', '.join(STOP_MODES)}): switched the torque off")
    try:
        robot.set_torque(False)
    except Exception as error:  # noqa: BLE001 - the safe path goes on and reports it
        failures.append(f"torque off: {type(error).__name__}: {error}")
    return failures


def ticks_in(duration_s: float, period_s: float) -> int:
    """How many control ticks cover duration_s (at least one; 0.5 s at 0.1 s is 5, not 6)."""
    # The tolerance keeps a product like 40 x 0.0025 s from rounding up to one tick more.
    return max(1, math.ceil(duration_s / period_s - 1e-9))


def _hold(robot: Robot, clock: ControlClock, hold_s: float) -> list[str]:
    try:
        here = robot.read().joint_pos_rad
        if not np.all(np.isfinite(here)):
            return [f"hold: the joint reading {here.tolist()} is not finite; switched the torque off at once"]
        for _ in range(ticks_in(hold_s, clock.period_s)):
            robot.command(here)
            clock.tick()
    except Exception as error:  # noqa: BLE001 - whatever the robot raises, the torque goes off next
        return [f"hold: {type(error).__name__}: {error}"]
    return []
