"""The interfaces shared by the simulated and the real D'Claw.

Everything above this file (the environment, the safety layer, the session runtime) talks to a
Robot, a Camera and a ControlClock and never asks which backend it drives. `slac_robot.backends`
is the one place that picks the implementations from config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


# The joints in the order of every (9,) array here: three fingers, each (top, middle, bottom).
JOINT_NAMES = tuple(f"{finger} {part}" for finger in ("FF", "MF", "TH") for part in ("top", "middle", "bottom"))


@dataclass(frozen=True)
class RobotState:
    """One reading of the claw and the valve, in joint units, with the time it was taken.

    joint_pos_rad, joint_vel_rad_s, joint_current_a, joint_temperature_c: shape (9,), joints in
        the order FF (top, middle, bottom), MF, TH, as ROBEL numbers them.
    joint_error_flags: shape (9,) uint8, each motor's Hardware Error Status bits (0 = healthy).
    valve_pos_rad: the valve angle, unwrapped (it may leave [-pi, pi] after whole turns).
    stamp_s: when the reading was taken, on the backend's clock (see ControlClock.now_s).
    health_stamp_s: when temperatures and error flags were read, if at another time than
        stamp_s (hardware reads them at a lower rate); None: together with the rest.
    A backend never hands on an old reading as a new one: a failed read raises instead.
    """

    joint_pos_rad: np.ndarray
    joint_vel_rad_s: np.ndarray
    joint_current_a: np.ndarray
    joint_temperature_c: np.ndarray
    joint_error_flags: np.ndarray
    valve_pos_rad: float
    stamp_s: float
    health_stamp_s: float | None = None

    @property
    def health_age_s(self) -> float:
        """How much older the temperatures and error flags are than the rest (0 when read together)."""
        return 0.0 if self.health_stamp_s is None else self.stamp_s - self.health_stamp_s


@dataclass(frozen=True)
class Frame:
    """One camera image: uint8 HxWx3 RGB, the time it was captured, and its running index.

    stamp_s: when the frame was captured, on the clock that `Camera.read`'s max_age_s is measured
        on (sim: the simulated time; hardware cameras: the host's time.monotonic() at arrival).
    depth_m: float32 HxW depth in metres, aligned pixel for pixel with `image`, for cameras that
        deliver depth; None otherwise.
    device_stamp_s, device_clock: the capture time on the device's own clock and that clock's
        name (RealSense: "hardware_clock", "system_time" or "global_time"; a video file:
        "media_time"). Compare device stamps only within one clock. None when the source has none.
    """

    image: np.ndarray
    stamp_s: float
    index: int
    depth_m: np.ndarray | None = None
    device_stamp_s: float | None = None
    device_clock: str | None = None


@runtime_checkable
class Robot(Protocol):
    """A D'Claw with a valve: read the state, command joint targets, show the goal."""

    def read(self) -> RobotState:
        """Returns a fresh reading of joints and valve."""

    def command(self, joint_targets_rad: np.ndarray) -> None:
        """Sends position targets (shape (9,), radians); they must already be safe."""

    def hold_valve(self, valve_rad: float | None) -> None:
        """The valve motor turns the valve to valve_rad (radians, the short way round: the angle
        reached may differ by whole turns) and holds it there; None releases it to turn freely.

        Only the scripted reset (slac_robot.safety.reset) turns the valve; during an episode
        the fingers do."""

    def show_goal(self, goal_rad: float) -> None:
        """Makes the goal visible to the camera (sim: the marker; hardware: the guide motor)."""

    def set_torque(self, enabled: bool) -> None:
        """Enables or disables the joint motors' torque."""

    def close(self) -> None:
        """Leaves the robot safe (torque off) and releases it."""


@runtime_checkable
class Camera(Protocol):
    """A source of RGB frames at the agent's resolution."""

    def read(self, max_age_s: float) -> Frame:
        """Returns the newest frame; raises StaleFrameError when it is older than max_age_s."""

    def close(self) -> None:
        """Releases the device or the renderer."""


@runtime_checkable
class ControlClock(Protocol):
    """Time for the control loop: one tick is one control period.

    The simulation's clock advances the physics by one period; a hardware clock waits for the
    next period on the wall clock. The environment calls `tick` and reads `overruns` (the
    health monitor trips when the loop keeps missing its deadlines)."""

    @property
    def period_s(self) -> float:
        """The control period in seconds."""

    def now_s(self) -> float:
        """The current time on this backend's clock."""

    # overruns: int, how many ticks so far found their deadline already passed (a cumulative
    # counter; always 0 on the simulated clocks, whose time never falls behind).
    overruns: int

    def tick(self) -> None:
        """Lets one control period pass."""


class StaleFrameError(RuntimeError):
    """A camera's newest frame is older than the caller accepts."""


class CameraError(RuntimeError):
    """A camera cannot deliver frames: no device, a wrong serial, a device lost after its
    reconnects, or a finite source (video file, image folder) that has ended."""
