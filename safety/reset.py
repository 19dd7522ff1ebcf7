"""The scripted reset: the claw moves to the reset pose in a safe order and the result is checked.

Every command is one velocity-limited step from the measured position (the action filter's
`limit_step`) followed by a clock tick, so the reset moves the claw no faster than the policy
may. The order is ROBEL's: the top and bottom joints first, with the middle joints held where
they are, then every joint. The valve motor turns the valve to its start angle once the fingers
are out of its way, and holds it until the pose is checked; then it lets go. A reset that does
not arrive (a finger stuck, the valve elsewhere) is retried, then a person is asked; without one
it raises `ResetFailed`, so that no episode starts from a bad state. In simulation nobody needs
asking: the backend may give a `put_right` that places the claw at the pose, as a person would.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from slac_robot.config import ConfigError, require_int, require_positive
from slac_robot.interfaces import JOINT_NAMES, ControlClock, Robot, RobotState
from slac_robot.safety.action_filter import ActionFilter
from slac_robot.safety.safe_stop import ticks_in

# The middle joints, held still in the first stage: moving the top and bottom joints first
# lifts the fingertips clear of the valve before the fingers fold (ROBEL's order).
MIDDLE_JOINTS = tuple(i for i, name in enumerate(JOINT_NAMES) if name.endswith("middle"))


class ResetFailed(RuntimeError):
    """The claw did not reach the reset pose, or the valve its start angle, after every attempt."""


class ScriptedReset:
    """Brings the claw to a pose and the valve to an angle, checks both, retries, asks a person.

    robot, clock: the backend. action_filter: its `limit_step` limits every command's motion.
    tolerance_rad: every joint must end within this of the pose (ROBEL: 5 deg).
    valve_tolerance_rad: the valve must end within this of its angle (modulo whole turns).
    stage_timeout_s: how long each of the two stages may take.
    settled_speed_rad_s, stall_s: a stage also ends once every joint was slower than this for
        stall_s (the claw came to rest short of the pose: blocked; waiting longer would not help).
    attempts: how many times the whole reset is tried before a person is asked.
    ask_person: called with a message saying what is wrong; returns True once a person fixed it
        (the reset then tries `attempts` times again), False or None to give up. None: nobody
        to ask (the reset raises ResetFailed after its attempts). Assignable after construction.
    put_right: the simulation's hand: called with (pose, valve angle) after the attempts failed,
        places claw and valve there at rest and returns the state; the failure is then kept in
        `last_put_right` and nobody is asked. None (hardware, the bus emulator): ask or raise.
    """

    def __init__(
        self,
        robot: Robot,
        clock: ControlClock,
        action_filter: ActionFilter,
        tolerance_rad: float,
        valve_tolerance_rad: float,
        stage_timeout_s: float,
        settled_speed_rad_s: float,
        stall_s: float,
        attempts: int,
        ask_person: Callable[[str], bool | None] | None = None,
        put_right: Callable[[np.ndarray, float], RobotState] | None = None,
    ):
        self.robot = robot
        self.clock = clock
        self.action_filter = action_filter
        self.tolerance_rad = require_positive("safety.reset.tolerance_rad", tolerance_rad)
        self.valve_tolerance_rad = require_positive("safety.reset.valve_tolerance_rad", valve_tolerance_rad)
        self.stage_timeout_s = require_positive("safety.reset.stage_timeout_s", stage_timeout_s)
        self.settled_speed_rad_s = require_positive("safety.reset.settled_speed_rad_s", settled_speed_rad_s)
        self._stall_ticks = ticks_in(require_positive("safety.reset.stall_s", stall_s), clock.period_s)
        self.attempts = require_int("safety.reset.attempts", attempts)
        self.ask_person = ask_person
        self.put_right = put_right
        self._stage_ticks = ticks_in(self.stage_timeout_s, clock.period_s)
        # How many attempts the last call took (1 when the first one arrived); for reports and tests.
        self.last_attempts = 0
        # The failure that put_right mended in the last call (None: the reset arrived by itself).
        self.last_put_right: str | None = None

    def __call__(self, pose_rad: np.ndarray, valve_rad: float) -> RobotState:
        """Moves the claw to pose_rad (9 joint angles) and the valve to valve_rad; returns the
        checked state (valve released). Raises ResetFailed naming what is off and by how much;
        robot errors (slac_robot.hardware.errors) pass through."""
        pose = np.asarray(pose_rad, dtype=np.float64)
        outside = np.flatnonzero((pose < self.action_filter.joint_lower_rad) | (pose > self.action_filter.joint_upper_rad))
        if outside.size:
            raise ConfigError(f"task.reset_pose_rad puts joints {outside.tolist()} outside the safety joint limits")
        self.last_attempts = 0
        self.last_put_right = None
        try:
            while True:
                self.robot.set_torque(True)
                for _ in range(self.attempts):
                    self.last_attempts += 1
                    state = self._attempt(pose, valve_rad)
                    problem = self._problem(state, pose, valve_rad)
                    if problem is None:
                        return state
                message = (
                    f"the reset failed {self.last_attempts} times: {problem}; check for a blocked finger or a "
                    "valve that does not turn, put them right"
                )
                if self.put_right is not None:
                    state = self.put_right(pose, valve_rad)
                    if self._problem(state, pose, valve_rad) is None:
                        self.last_put_right = message
                        return state
                # A person may have to touch the claw and the valve: let both go while asking.
                self.robot.hold_valve(None)
                self.robot.set_torque(False)
                if self.ask_person is None or not self.ask_person(message):
                    raise ResetFailed(message)
        finally:
            self.robot.hold_valve(None)

    def _attempt(self, pose: np.ndarray, valve_rad: float) -> RobotState:
        """One try: stage 1 (top and bottom joints), then the valve is turned, then stage 2 (all)."""
        state = self.robot.read()
        first = pose.copy()
        first[list(MIDDLE_JOINTS)] = state.joint_pos_rad[list(MIDDLE_JOINTS)]
        stage_one = [i for i in range(len(pose)) if i not in MIDDLE_JOINTS]
        state = self._move(first, state, lambda s: _worst(s.joint_pos_rad[stage_one] - first[stage_one]) < self.tolerance_rad)
        self.robot.hold_valve(valve_rad)
        # At rest as well as within tolerance: an episode starts from a claw standing still.
        return self._move(pose, self.robot.read(), lambda s: self._settled(s) and self._problem(s, pose, valve_rad) is None)

    def _move(self, targets: np.ndarray, state: RobotState, arrived: Callable[[RobotState], bool]) -> RobotState:
        """Ramps towards targets, one limited step per tick, until arrived, at rest short of them,
        or the stage's time is up."""
        at_rest = 0
        for _ in range(self._stage_ticks):
            if arrived(state):
                break
            self.robot.command(self.action_filter.limit_step(targets, state.joint_pos_rad))
            self.clock.tick()
            state = self.robot.read()
            at_rest = at_rest + 1 if self._settled(state) else 0
            if at_rest >= self._stall_ticks and not arrived(state):
                break
        return state

    def _settled(self, state: RobotState) -> bool:
        return _worst(state.joint_vel_rad_s) < self.settled_speed_rad_s

    def _problem(self, state: RobotState, pose: np.ndarray, valve_rad: float) -> str | None:
        """What is off in state (joints named, with how far), or None when the reset arrived."""
        off = np.abs(state.joint_pos_rad - pose)
        problems = [
            f"{JOINT_NAMES[i]} (joint {i}) is {off[i]:.3f} rad from {pose[i]:.3f}"
            for i in np.flatnonzero(~(off < self.tolerance_rad))
        ]
        valve_off = abs(math.remainder(state.valve_pos_rad - valve_rad, 2 * math.pi))
        if not valve_off < self.valve_tolerance_rad:
            problems.append(f"the valve is {valve_off:.3f} rad from {valve_rad:.3f}")
        return "; ".join(problems) if problems else None


def _worst(errors: np.ndarray) -> float:
    return float(np.max(np.abs(errors)))
