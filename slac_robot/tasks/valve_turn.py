"""Valve turning, as in ROBEL's D'Claw turn task: goals, reward terms, success.

The task knows nothing of backends: it reads RobotStates and says where an episode starts, what
the goal is, and how well the claw is doing. Angles are in radians; the goal is shown to the
camera by the Robot (`show_goal`) and given to the agent as (cos, sin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from slac_robot.config import ConfigError, require_number, require_positive, require_int
from slac_robot.interfaces import RobotState

GOAL_SETTINGS = ("fixed", "three_goal", "random")
THREE_GOALS_RAD = (-math.pi / 2, 0.0, math.pi / 2)
CIRCLE_TOLERANCE_RAD = 1e-5  # a start range this close to 2 pi wide is the whole circle (configs write pi to 7 digits)


def angle_features(angle_rad: float) -> np.ndarray:
    """An angle as a network sees it, without the jump at +-pi: (cos, sin), float32."""
    return np.array([math.cos(angle_rad), math.sin(angle_rad)], dtype=np.float32)


def wrap_to_pi(angle_rad: float) -> float:
    """Maps an angle to [-pi, pi)."""
    return (angle_rad + math.pi) % (2 * math.pi) - math.pi


@dataclass(frozen=True)
class RewardWeights:
    """ROBEL's turn reward: -w_dist|err| - w_pose||q - q_reset|| - w_vel||fast qvel|| + bonuses.

    fast qvel are the joint velocities with |qvel| >= joint_vel_threshold_rad_s; the small and
    big bonuses are paid while |err| is below their thresholds."""

    target_dist: float = 5.0
    pose_diff: float = 1.0
    joint_vel: float = 1.0
    joint_vel_threshold_rad_s: float = 0.5
    bonus_small: float = 10.0
    bonus_small_threshold_rad: float = 0.25
    bonus_big: float = 50.0
    bonus_big_threshold_rad: float = 0.10


class ValveTurnTask:
    """Turn the valve to a goal angle.

    goal_setting: "fixed" (always fixed_goal_rad), "three_goal" (uniform over -pi/2, 0, pi/2) or
        "random" (uniform in random_goal_range_rad).
    initial_valve_rad: the valve's angle at the start of an episode, or None for uniform in
        initial_valve_range_rad.
    reset_pose_rad: the claw's joint pose at the start of an episode, shape (9,).
    episode_steps: control steps per episode.
    success_threshold_rad: the episode succeeds when the final |valve - goal| is below it.
    """

    def __init__(
        self,
        goal_setting: str,
        fixed_goal_rad: float,
        random_goal_range_rad: tuple[float, float],
        initial_valve_rad: float | None,
        initial_valve_range_rad: tuple[float, float],
        reset_pose_rad: np.ndarray,
        episode_steps: int,
        success_threshold_rad: float,
        reward: RewardWeights,
    ):
        if goal_setting not in GOAL_SETTINGS:
            raise ConfigError(
                f"task.goal_setting={goal_setting!r} is not one of: {', '.join(GOAL_SETTINGS)}"
            )
        for key, (low, high) in (
            ("random_goal_range_rad", random_goal_range_rad),
            ("initial_valve_range_rad", initial_valve_range_rad),
        ):
            require_number(f"task.{key}[0]", low)
            require_number(f"task.{key}[1]", high)
            if not low <= high:
                raise ConfigError(f"task.{key} must be [low, high] with low <= high, got {[low, high]}")
        reset_pose_rad = np.asarray(reset_pose_rad, dtype=np.float64)
        if reset_pose_rad.shape != (9,):
            raise ConfigError(
                f"task.reset_pose_rad must hold 9 joint angles, got {reset_pose_rad.shape[0]}"
            )
        self.goal_setting = goal_setting
        self.fixed_goal_rad = require_number("task.fixed_goal_rad", fixed_goal_rad)
        self.random_goal_range_rad = (float(random_goal_range_rad[0]), float(random_goal_range_rad[1]))
        self.initial_valve_rad = (
            None if initial_valve_rad is None else require_number("task.initial_valve_rad", initial_valve_rad)
        )
        self.initial_valve_range_rad = (
            float(initial_valve_range_rad[0]),
            float(initial_valve_range_rad[1]),
        )
        self.reset_pose_rad = reset_pose_rad
        self.episode_steps = require_int("task.episode_steps", episode_steps)
        self.success_threshold_rad = require_positive("task.success_threshold_rad", success_threshold_rad)
        self.reward_weights = reward

    def sample_goal(self, rng: np.random.Generator) -> float:
        """Draws the goal angle of a new episode."""
        if self.goal_setting == "fixed":
            return self.fixed_goal_rad
        if self.goal_setting == "three_goal":
            return THREE_GOALS_RAD[rng.integers(len(THREE_GOALS_RAD))]
        return float(rng.uniform(*self.random_goal_range_rad))

    def evaluation_goals_rad(self, count: int) -> list[float]:
        """The goals of an evaluation's count episodes, spread evenly over the goal setting's
        goals so that every goal is evaluated however few the episodes: the fixed goal; the three
        goals in turn; the midpoints of count equal slices of the random range."""
        if self.goal_setting == "fixed":
            return [self.fixed_goal_rad] * count
        if self.goal_setting == "three_goal":
            return [THREE_GOALS_RAD[i % len(THREE_GOALS_RAD)] for i in range(count)]
        low, high = self.random_goal_range_rad
        return [low + (high - low) * (i + 0.5) / count for i in range(count)]

    def evaluation_starts_rad(self, goals_rad: list[float]) -> list[float] | None:
        """The valve's start for each evaluation episode of goals_rad: spread around the circle
        from its goal (evaluation_start_errors_rad, wrapped to [-pi, pi]) when the task starts the
        valve anywhere on the circle; None (each episode's seed draws it, as in training) when the
        task starts it at initial_valve_rad or within a narrower initial_valve_range_rad."""
        low, high = self.initial_valve_range_rad
        if self.initial_valve_rad is not None or high - low < 2.0 * math.pi - CIRCLE_TOLERANCE_RAD:
            return None
        errors_rad = self.evaluation_start_errors_rad(len(goals_rad))
        return [wrap_to_pi(goal - error) for goal, error in zip(goals_rad, errors_rad)]

    @staticmethod
    def evaluation_start_errors_rad(count: int) -> list[float]:
        """How far each of an evaluation's count episodes starts from its goal (goal - start, in
        radians): the midpoints of n equal slices of the circle (n: count, or count + 1 when odd,
        so that no midpoint is 0), taken alternately from its lower and upper half, so that the
        episodes of each goal (evaluation_goals_rad: the goals in turn) start from both sides,
        near and far. None starts nearer its goal than pi / n, so a policy that leaves the valve
        alone succeeds in none (seeded uniform starts put 2 of the three-goal setting's first 10
        within 0.1 rad of their goal)."""
        slices = count + count % 2
        upper_half = slices // 2
        order = [i // 2 if i % 2 == 0 else upper_half + i // 2 for i in range(count)]
        return [-math.pi + 2.0 * math.pi * (k + 0.5) / slices for k in order]

    def sample_initial_valve(self, rng: np.random.Generator) -> float:
        """Draws the valve angle a new episode starts from."""
        if self.initial_valve_rad is not None:
            return self.initial_valve_rad
        return float(rng.uniform(*self.initial_valve_range_rad))

    @staticmethod
    def goal_features(goal_rad: float) -> np.ndarray:
        """The goal as the agent sees it: (cos, sin), float32."""
        return angle_features(goal_rad)

    @staticmethod
    def error_rad(state: RobotState, goal_rad: float) -> float:
        """Signed angle from the valve to the goal, wrapped to [-pi, pi)."""
        return wrap_to_pi(goal_rad - state.valve_pos_rad)

    def reward_terms(self, state: RobotState, goal_rad: float) -> dict[str, float]:
        """ROBEL's named reward terms for one state; the reward is their sum."""
        w = self.reward_weights
        dist = abs(self.error_rad(state, goal_rad))
        vel = state.joint_vel_rad_s
        fast = vel[np.abs(vel) >= w.joint_vel_threshold_rad_s]
        return {
            "target_dist_cost": -w.target_dist * dist,
            "pose_diff_cost": -w.pose_diff * float(np.linalg.norm(state.joint_pos_rad - self.reset_pose_rad)),
            "joint_vel_cost": -w.joint_vel * float(np.linalg.norm(fast)),
            "bonus_small": w.bonus_small * float(dist < w.bonus_small_threshold_rad),
            "bonus_big": w.bonus_big * float(dist < w.bonus_big_threshold_rad),
        }

    def is_success(self, state: RobotState, goal_rad: float) -> bool:
        """Whether the valve is within the success threshold of the goal."""
        return abs(self.error_rad(state, goal_rad)) < self.success_threshold_rad
