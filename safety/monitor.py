"""The health monitor: every tick, the reading, the frame and the loop's timing against limits.

`HealthMonitor.check` returns the first `Fault` it finds (or None); `fault_from_error` turns
what a backend raises during a step (bus, motor, camera errors) into a Fault. The environment
trips on either (slac_robot.env). Thresholds come from the `safety.health` config section,
where each is documented with the figures measured in normal operation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from slac_robot.config import ConfigError, require_int, require_number, require_positive
from slac_robot.hardware.control_table import describe_hardware_error
from slac_robot.hardware.errors import DynamixelError, MotorHardwareError, PortVanished, WatchdogFired
from slac_robot.interfaces import JOINT_NAMES, CameraError, Frame, RobotState, StaleFrameError
from slac_robot.safety import faults
from slac_robot.safety.faults import Fault


@dataclass(frozen=True)
class HealthLimits:
    """The monitor's thresholds (config section `safety.health`; see configs/_robot.yaml).

    max_temperature_c: hottest a servo may be (the XM430 shuts down at its own 80 C).
    max_current_a: largest current a joint servo may draw.
    max_joint_speed_rad_s: fastest a joint may turn.
    position_margin_rad: how far outside its joint limits a joint may be pushed.
    max_reading_age_s: oldest a joint reading may be when checked.
    max_health_age_s: how much older temperatures and error bits may be than the reading.
    max_frame_age_s: oldest a camera frame may be when checked.
    max_overruns_in_a_row: trip when the loop overran on this many ticks in a row.
    max_refused_actions_in_a_row: trip when this many actions in a row were refused.
    """

    max_temperature_c: float
    max_current_a: float
    max_joint_speed_rad_s: float
    position_margin_rad: float
    max_reading_age_s: float
    max_health_age_s: float
    max_frame_age_s: float
    max_overruns_in_a_row: int
    max_refused_actions_in_a_row: int

    def __post_init__(self):
        for field in fields(self):
            key, value = f"safety.health.{field.name}", getattr(self, field.name)
            if field.type == "int":
                require_int(key, value)
            elif field.name == "position_margin_rad":
                if not require_number(key, value) >= 0 or not math.isfinite(value):
                    raise ConfigError(f"{key} must be a finite number >= 0, got {value!r}")
            else:
                require_positive(key, value)

    @classmethod
    def from_config(cls, health: dict) -> "HealthLimits":
        """From the `safety.health` section (a plain dict); unknown or missing keys are ConfigErrors."""
        names = {f.name for f in fields(cls)}
        unknown, missing = set(health) - names, names - set(health)
        if unknown or missing:
            raise ConfigError(
                f"safety.health: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}; "
                f"the keys are: {', '.join(sorted(names))}"
            )
        return cls(**health)


class HealthMonitor:
    """Checks each tick's reading and frame; keeps what it needs from the previous tick.

    limits: the thresholds. joint_lower_rad, joint_upper_rad: the joint limits (safety config).
    Call `reset()` at the start of every episode (the previous tick's stamps no longer apply).
    """

    def __init__(self, limits: HealthLimits, joint_lower_rad, joint_upper_rad):
        self.limits = limits
        self.joint_lower_rad = np.asarray(joint_lower_rad, dtype=np.float64)
        self.joint_upper_rad = np.asarray(joint_upper_rad, dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        """Forgets the previous tick (stamps, frame index, overrun count)."""
        self._last_stamp_s: float | None = None
        self._last_frame_index: int | None = None
        self._last_overruns: int | None = None
        self._overruns_in_a_row = 0

    def check(
        self, state: RobotState, now_s: float, frame: Frame, overruns: int, refused_in_a_row: int
    ) -> Fault | None:
        """The first limit this tick crosses, as a Fault; None when all is well.

        state: this tick's reading. now_s: the clock's time now (the clock of state.stamp_s and
        frame.stamp_s). frame: this tick's camera frame. overruns: the clock's cumulative overrun
        count. refused_in_a_row: the action filter's count of refused actions in a row."""
        limits = self.limits
        last_stamp_s, self._last_stamp_s = self._last_stamp_s, state.stamp_s
        last_index, self._last_frame_index = self._last_frame_index, frame.index
        if self._last_overruns is not None and overruns > self._last_overruns:
            self._overruns_in_a_row += 1
        else:
            self._overruns_in_a_row = 0
        self._last_overruns = overruns

        bits = np.asarray(state.joint_error_flags)
        if np.any(bits):
            joints = _joints(bits != 0)
            described = "; ".join(f"{_name(i)}: {describe_hardware_error(int(bits[i]))}" for i in joints)
            return Fault(
                faults.HARDWARE_ERROR,
                f"hardware error on {described}; check power, load and temperature, then reboot the motor",
                joints,
            )
        temperature = np.asarray(state.joint_temperature_c, dtype=np.float64)
        if fault := _over(
            temperature, limits.max_temperature_c, faults.OVERHEATING, "C",
            "let the servos cool down and reduce their load (or lower the duty: longer pauses between episodes)",
        ):
            return fault
        if fault := _over(
            np.abs(state.joint_current_a), limits.max_current_a, faults.OVERCURRENT, "A",
            "a finger is blocked or pushing hard: check for an obstacle and the valve's friction",
        ):
            return fault
        position = np.asarray(state.joint_pos_rad, dtype=np.float64)
        beyond = np.maximum(self.joint_lower_rad - position, position - self.joint_upper_rad)
        if fault := _over(
            beyond, limits.position_margin_rad, faults.POSITION_LIMIT, "rad beyond its limit",
            "something pushed the finger out of its range, or the joint calibration is wrong "
            "(slac-robot calibrate-joints)",
        ):
            return fault
        if fault := _over(
            np.abs(state.joint_vel_rad_s), limits.max_joint_speed_rad_s, faults.VELOCITY, "rad/s",
            "a finger is moving faster than commanded: check for a slipping horn or a loose finger",
        ):
            return fault
        age_s = now_s - state.stamp_s
        if not age_s <= limits.max_reading_age_s:
            return Fault(
                faults.STALE_READING,
                f"the joint reading is {age_s:.3f} s old (limit {limits.max_reading_age_s} s); the bus is too "
                "slow or the reading was kept: check the latency timer and the bus load",
                value=age_s, limit=limits.max_reading_age_s,
            )
        if last_stamp_s is not None and not state.stamp_s > last_stamp_s:
            return Fault(
                faults.STALE_READING,
                f"the joint reading's stamp {state.stamp_s:.3f} s is not newer than the previous one "
                f"{last_stamp_s:.3f} s: a reading was reused; the driver must read the bus every tick",
                value=state.stamp_s, limit=last_stamp_s,
            )
        if not state.health_age_s <= limits.max_health_age_s:
            return Fault(
                faults.STALE_READING,
                f"temperatures and error bits are {state.health_age_s:.3f} s old (limit "
                f"{limits.max_health_age_s} s); check backend.health_period_s",
                value=state.health_age_s, limit=limits.max_health_age_s,
            )
        frame_age_s = now_s - frame.stamp_s
        if not frame_age_s <= limits.max_frame_age_s:
            return Fault(
                faults.STALE_FRAME,
                f"the camera frame is {frame_age_s:.3f} s old (limit {limits.max_frame_age_s} s); check the "
                "camera's cable and frame rate",
                value=frame_age_s, limit=limits.max_frame_age_s,
            )
        if last_index is not None and not frame.index > last_index:
            return Fault(
                faults.STALE_FRAME,
                f"the camera delivered frame {frame.index} again (previous {last_index}): the camera froze; "
                "check its cable and restart it",
                value=float(frame.index), limit=float(last_index),
            )
        if self._overruns_in_a_row >= limits.max_overruns_in_a_row:
            return Fault(
                faults.OVERRUN,
                f"the control loop missed its deadline on {self._overruns_in_a_row} ticks in a row; the machine "
                "is overloaded: stop other work on it or lower the control rate",
                value=float(self._overruns_in_a_row), limit=float(limits.max_overruns_in_a_row),
            )
        if refused_in_a_row >= limits.max_refused_actions_in_a_row:
            return Fault(
                faults.REFUSED_ACTIONS,
                f"{refused_in_a_row} actions in a row were not finite (NaN or infinite) and were refused: the "
                "policy has diverged; look at the learner's losses and restart from a good checkpoint",
                value=float(refused_in_a_row), limit=float(limits.max_refused_actions_in_a_row),
            )
        return None


def fault_from_error(error: Exception) -> Fault:
    """The Fault for an error a backend raised during a step (hardware errors, camera errors).

    MotorHardwareError -> hardware_error (the motor and its bits), WatchdogFired -> watchdog
    (the longest quiet the driver saw against the watchdog time), PortVanished -> port_lost,
    any other DynamixelError -> bus_error, StaleFrameError -> stale_frame, CameraError ->
    camera_lost. Anything else is a programming error and raises TypeError."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, MotorHardwareError):
        return Fault(faults.HARDWARE_ERROR, text, value=float(error.bits))
    if isinstance(error, WatchdogFired):
        return Fault(faults.WATCHDOG, text, value=error.quiet_s, limit=float(error.watchdog_s))
    if isinstance(error, PortVanished):
        return Fault(faults.PORT_LOST, text)
    if isinstance(error, DynamixelError):
        return Fault(faults.BUS_ERROR, f"{text}; check the cables and the bus's power, then reset")
    if isinstance(error, StaleFrameError):
        return Fault(faults.STALE_FRAME, f"{text}; check the camera's cable and frame rate")
    if isinstance(error, CameraError):
        return Fault(faults.CAMERA_LOST, text)
    raise TypeError(f"no fault kind for {text}") from error


# What a backend may raise during a step, which the environment turns into a trip.
BACKEND_ERRORS = (DynamixelError, StaleFrameError, CameraError)


def _joints(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.flatnonzero(mask))


def _name(joint: int) -> str:
    return f"joint {joint} ({JOINT_NAMES[joint]})"


def _over(values: np.ndarray, limit: float, kind: str, unit: str, fix: str) -> Fault | None:
    """A Fault naming every joint whose value is above limit (or not finite), else None."""
    bad = ~(values <= limit)
    if not np.any(bad):
        return None
    joints = _joints(bad)
    worst = max(joints, key=lambda i: values[i] if math.isfinite(values[i]) else math.inf)
    listed = ", ".join(f"{_name(i)} {values[i]:.3f} {unit}" for i in joints)
    return Fault(kind, f"{listed} (limit {limit} {unit.split()[0]}); {fix}", joints, float(values[worst]), float(limit))
