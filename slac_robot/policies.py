"""Policies that need no learning: uniform random actions, and a scripted valve-turning gait.

A policy maps (observation, info) to an action in [-1, 1]^9; `reset` starts an episode.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from slac_robot.config import require_positive, require_int
from slac_robot.safety import ActionFilter


class Policy(Protocol):
    def reset(self, seed: int | None) -> None:
        """Starts an episode (seeds the policy's randomness where it has any)."""

    def act(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        """Returns an action in [-1, 1]^9 for the current observation and step info."""


class RandomPolicy:
    """Uniform random actions in [-1, 1]^num_joints."""

    def __init__(self, num_joints: int):
        self._num_joints = num_joints
        self._rng = np.random.default_rng()

    def reset(self, seed: int | None) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, observation, info) -> np.ndarray:
        return self._rng.uniform(-1.0, 1.0, self._num_joints).astype(np.float32)


class ScriptedTurnPolicy:
    """A four-phase finger gait that turns the valve towards the goal (see configs/policy/scripted.yaml).

    It reads `info["error_rad"]` (goal minus valve angle, wrapped), i.e. the measured valve
    angle. Within `slow_within_rad` of the goal the stroke shrinks in proportion to |error|
    (down to `min_stroke_top_rad`), and once |error| is below `hold_within_rad` the fingers lift
    and hold.
    """

    def __init__(
        self,
        action_filter: ActionFilter,
        stroke_top_rad: float,
        min_stroke_top_rad: float,
        slow_within_rad: float,
        down_pose_rad: tuple[float, float],
        up_pose_rad: tuple[float, float],
        steps_per_phase: int,
        hold_within_rad: float,
    ):
        self._to_action = action_filter.to_action
        self._fingers = action_filter.num_joints // 3
        self._stroke_top_rad = stroke_top_rad
        self._min_stroke_top_rad = min_stroke_top_rad
        self._slow_within_rad = require_positive("policy.slow_within_rad", slow_within_rad)
        self._down = tuple(down_pose_rad)
        self._up = tuple(up_pose_rad)
        self._steps_per_phase = require_int("policy.steps_per_phase", steps_per_phase)
        self._hold_within_rad = hold_within_rad
        self._step = 0

    def reset(self, seed: int | None) -> None:
        self._step = 0

    def act(self, observation, info) -> np.ndarray:
        error = info["error_rad"]
        if abs(error) < self._hold_within_rad:
            middle_bottom, top = self._up, 0.0
        else:
            direction = np.sign(error)
            phases = (
                (self._up, -direction),
                (self._down, -direction),
                (self._down, direction),
                (self._up, direction),
            )
            middle_bottom, side = phases[(self._step // self._steps_per_phase) % 4]
            stroke = self._stroke_top_rad * min(1.0, abs(error) / self._slow_within_rad)
            top = side * max(stroke, self._min_stroke_top_rad)
            self._step += 1
        targets = np.tile([top, *middle_bottom], self._fingers)
        return self._to_action(targets).astype(np.float32)
