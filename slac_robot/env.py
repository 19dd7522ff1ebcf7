"""The valve-turning environment: a Robot, a Camera and a ControlClock behind the Gymnasium API.

One step, always in this order, whatever the backend:
  read the robot -> action filter (safety) -> command -> one control period -> read robot and
  camera -> observation, named reward terms, success.
Tasks and backends fill in their parts; none of them can step around the safety filter.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from slac_robot.config import require_positive
from slac_robot.interfaces import Camera, ControlClock, Robot, RobotState
from slac_robot.safety import ActionFilter
from slac_robot.tasks import ValveTurnTask


class ValveTurnEnv(gym.Env):
    """Gymnasium environment for turning the D'Claw's valve from images.

    Observation: dict with
      image:     uint8 (H, W, 3), the agent camera's newest frame;
      joint_pos: float32 (9,), measured joint angles in radians;
      goal:      float32 (2,), (cos, sin) of the goal angle.
    Action: float32 (9,) in [-1, 1], mapped by the safety layer onto the joint target limits.
    An episode is truncated (never terminated) after task.episode_steps steps.

    robot, camera, clock: the backend (see slac_robot.backends.make_env).
    view_camera: optional third-person camera for `render()` (render_mode="rgb_array").
    frame_max_age_s: the oldest camera frame a step accepts.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        robot: Robot,
        camera: Camera,
        clock: ControlClock,
        task: ValveTurnTask,
        action_filter: ActionFilter,
        image_shape: tuple[int, int, int],
        frame_max_age_s: float,
        view_camera: Camera | None = None,
        render_mode: str | None = None,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r} is not one of {self.metadata['render_modes']}")
        if render_mode == "rgb_array" and view_camera is None:
            raise ValueError("render_mode='rgb_array' needs a view_camera")
        self.robot = robot
        self.camera = camera
        self.clock = clock
        self.task = task
        self.action_filter = action_filter
        self.view_camera = view_camera
        self.render_mode = render_mode
        self._frame_max_age_s = require_positive("camera.frame_max_age_s", frame_max_age_s)
        self.metadata = {**self.metadata, "render_fps": 1.0 / clock.period_s}
        n = action_filter.num_joints
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(n,), dtype=np.float32)
        self.observation_space = gym.spaces.Dict(
            {
                "image": gym.spaces.Box(0, 255, shape=image_shape, dtype=np.uint8),
                "joint_pos": gym.spaces.Box(-math.pi, math.pi, shape=(n,), dtype=np.float32),
                "goal": gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
            }
        )
        self.goal_rad = 0.0
        self._steps = 0
        self._state: RobotState | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Starts an episode: draws goal and valve angle, resets the claw, shows the goal.

        options: {"goal_rad": float, "valve_rad": float} override the task's draws."""
        super().reset(seed=seed)
        options = options or {}
        self.goal_rad = float(options.get("goal_rad", self.task.sample_goal(self.np_random)))
        valve_rad = float(options.get("valve_rad", self.task.sample_initial_valve(self.np_random)))
        self.robot.show_goal(self.goal_rad)
        self._state = self.robot.reset(self.task.reset_pose_rad, valve_rad)
        self._steps = 0
        return self._observation(self._state), self._info(self._state, self.task.reward_terms(self._state, self.goal_rad))

    def step(self, action: np.ndarray):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        targets = self.action_filter(action, self._state.joint_pos_rad)
        self.robot.command(targets)
        self.clock.tick()
        self._state = self.robot.read()
        self._steps += 1
        terms = self.task.reward_terms(self._state, self.goal_rad)
        reward = float(sum(terms.values()))
        truncated = self._steps >= self.task.episode_steps
        info = self._info(self._state, terms)
        info["joint_targets_rad"] = targets
        return self._observation(self._state), reward, False, truncated, info

    def render(self) -> np.ndarray | None:
        """The third-person view (render_mode="rgb_array"), else None."""
        if self.render_mode != "rgb_array":
            return None
        return self.view_camera.read(self._frame_max_age_s).image

    def close(self) -> None:
        for part in (self.view_camera, self.camera, self.robot):
            if part is not None:
                part.close()

    def _observation(self, state: RobotState) -> dict[str, np.ndarray]:
        frame = self.camera.read(self._frame_max_age_s)
        return {
            "image": frame.image,
            "joint_pos": np.clip(state.joint_pos_rad, -math.pi, math.pi).astype(np.float32),
            "goal": self.task.goal_features(self.goal_rad),
        }

    def _info(self, state: RobotState, reward_terms: dict[str, float]) -> dict[str, Any]:
        error = self.task.error_rad(state, self.goal_rad)
        return {
            "goal_rad": self.goal_rad,
            "valve_rad": state.valve_pos_rad,
            "error_rad": error,
            "success": self.task.is_success(state, self.goal_rad),
            "reward_terms": reward_terms,
            "refused_actions": self.action_filter.refused_actions,
            "step": self._steps,
        }
