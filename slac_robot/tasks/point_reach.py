"""Point reach: move a dot onto a goal, seen from above. A tiny image task for learning tests.

The arena is the square [-1, 1]^2 (arena units). The action in [-1, 1]^2 is a velocity command:
the dot moves by max_step * action per step and stops at the walls. The image shows the goal
region (the disc within success_radius of the goal, green) and the dot (red, drawn over it) on
a dark floor; x grows to the right (columns) and y downwards (rows). Rendering is numpy only.

Reward per step: -distance(dot, goal) plus success_bonus while the dot is within
success_radius of the goal (named terms in info["reward_terms"]). info["success"] says whether
it is within success_radius now; an episode succeeds when it is at the last step. Episodes are
truncated after episode_steps steps, never terminated.

Reference scores with the defaults, 100 episodes each (`reference_scores`, seeds 0..99):
  fixed goal:  uniform random actions (from default_rng(0)) return -19.9 on average and end in
               the goal in 7% of episodes; moving straight to the goal (`oracle_action`)
               returns 15.2 and ends there in 100%.
  random goal: random actions -17.9, 5%; oracle 15.4, 100%.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

from slac_robot.config import ConfigError, require_int, require_positive

GOAL_SETTINGS = ("fixed", "random")
FLOOR_RGB = (40, 40, 40)
GOAL_RGB = (40, 200, 60)
DOT_RGB = (230, 50, 40)


class PointReachEnv(gym.Env):
    """Move a dot onto a goal from 64x64 images.

    Observation: dict with
      image:    uint8 (image_size_px, image_size_px, 3);
      position: float32 (2,), the dot's position in arena units (the true state: for SAC from
                the state, and the probe);
      goal:     float32 (2,), the goal's position in arena units.
    Action: float32 (2,) in [-1, 1], the dot's velocity as a fraction of max_step per step.

    image_size_px: side of the square image.
    episode_steps: steps before the time limit truncates the episode.
    max_step: the dot's largest move per step along each axis, in arena units.
    dot_radius_px: the dot's radius in pixels; the arena is inset by it, so the dot stays whole.
    success_radius: distance to the goal (arena units) that counts as success; the drawn goal
        region has this radius.
    success_bonus: reward added at each step within success_radius.
    goal_setting: "fixed" (always fixed_goal) or "random" (uniform in [-random_goal_range,
        random_goal_range]^2 per episode).
    The dot starts uniformly anywhere in the arena. reset(options={"goal": (x, y),
    "position": (x, y)}) overrides the draws.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        image_size_px: int = 64,
        episode_steps: int = 20,
        max_step: float = 0.2,
        dot_radius_px: float = 5.0,
        success_radius: float = 0.25,
        success_bonus: float = 1.0,
        goal_setting: str = "fixed",
        fixed_goal: tuple[float, float] = (0.5, -0.5),
        random_goal_range: float = 0.8,
        render_mode: str | None = None,
    ):
        if goal_setting not in GOAL_SETTINGS:
            raise ConfigError(f"point_reach.goal_setting={goal_setting!r} is not one of: {', '.join(GOAL_SETTINGS)}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r} is not one of {self.metadata['render_modes']}")
        fixed_goal = np.asarray(fixed_goal, dtype=np.float64)
        if fixed_goal.shape != (2,) or np.abs(fixed_goal).max() > 1:
            raise ConfigError(f"point_reach.fixed_goal must be (x, y) inside [-1, 1]^2, got {fixed_goal.tolist()}")
        self.image_size_px = require_int("point_reach.image_size_px", image_size_px)
        self.episode_steps = require_int("point_reach.episode_steps", episode_steps)
        self.max_step = require_positive("point_reach.max_step", max_step)
        self.dot_radius_px = require_positive("point_reach.dot_radius_px", dot_radius_px)
        self.success_radius = require_positive("point_reach.success_radius", success_radius)
        self.success_bonus = float(success_bonus)
        self.goal_setting = goal_setting
        self.fixed_goal = fixed_goal
        self.random_goal_range = require_positive("point_reach.random_goal_range", random_goal_range)
        if not self.random_goal_range <= 1:
            raise ConfigError(f"point_reach.random_goal_range must be in (0, 1], got {random_goal_range}")
        span_px = self.image_size_px - 1 - 2 * self.dot_radius_px
        if span_px <= 0:
            raise ConfigError(
                f"point_reach.dot_radius_px={dot_radius_px} leaves no room to move in a "
                f"{self.image_size_px}-pixel image: make the dot smaller or the image larger"
            )
        self.px_per_unit = span_px / 2
        self.render_mode = render_mode
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = gym.spaces.Dict(
            {
                "image": gym.spaces.Box(0, 255, shape=(self.image_size_px,) * 2 + (3,), dtype=np.uint8),
                "position": gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
                "goal": gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
            }
        )
        rows, cols = np.mgrid[: self.image_size_px, : self.image_size_px]
        self._pixels = np.stack([cols, rows], axis=-1).astype(np.float64)  # (x, y) of each pixel
        self.goal = self.fixed_goal.copy()
        self.position = np.zeros(2)
        self._steps = 0
        self._started = False

    def to_pixels(self, point: np.ndarray) -> np.ndarray:
        """(column, row) pixel coordinates of an arena point (x, y)."""
        return self.dot_radius_px + (np.asarray(point, dtype=np.float64) + 1.0) * self.px_per_unit

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Starts an episode: draws the goal (random setting) and the dot's start position."""
        super().reset(seed=seed)
        options = options or {}
        if self.goal_setting == "fixed":
            goal = self.fixed_goal
        else:
            goal = self.np_random.uniform(-self.random_goal_range, self.random_goal_range, 2)
        position = self.np_random.uniform(-1.0, 1.0, 2)
        self.goal = np.clip(np.asarray(options.get("goal", goal), dtype=np.float64), -1.0, 1.0)
        self.position = np.clip(np.asarray(options.get("position", position), dtype=np.float64), -1.0, 1.0)
        self._steps = 0
        self._started = True
        return self._observation(), self._info(self._reward_terms())

    def evaluation_options(self, count: int) -> list[dict[str, Any]]:
        """reset()'s options for an evaluation's count episodes: none, the goals are the seeds'
        draws (PointReach's evaluation is a learning check, not read per goal)."""
        return [{} for _ in range(count)]

    def step(self, action: np.ndarray):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        self.position = np.clip(self.position + self.max_step * action, -1.0, 1.0)
        self._steps += 1
        terms = self._reward_terms()
        truncated = self._steps >= self.episode_steps
        return self._observation(), float(sum(terms.values())), False, truncated, self._info(terms)

    def render(self) -> np.ndarray | None:
        """The agent's image (render_mode="rgb_array"), else None."""
        return self._image() if self.render_mode == "rgb_array" else None

    def make_safe(self, reason: str) -> list[str]:
        """What a training session calls when it stops (robot envs stop their motors): PointReach
        has no robot and nothing moves between steps, so there is nothing to do; no failures."""
        return []

    def oracle_action(self) -> np.ndarray:
        """The action that moves the dot straight towards the goal, at full speed until it is
        there: a reference policy that knows the dot's position (the agent does not)."""
        offset = (self.goal - self.position) / self.max_step
        return (offset / max(1.0, np.abs(offset).max())).astype(np.float32)

    def distance(self) -> float:
        """Distance from the dot to the goal, in arena units."""
        return float(np.linalg.norm(self.position - self.goal))

    def _reward_terms(self) -> dict[str, float]:
        distance = self.distance()
        return {"distance_cost": -distance, "success_bonus": self.success_bonus * float(distance < self.success_radius)}

    def _image(self) -> np.ndarray:
        image = np.empty((self.image_size_px, self.image_size_px, 3), dtype=np.uint8)
        image[:] = FLOOR_RGB
        for centre, radius_px, colour in (
            (self.goal, self.success_radius * self.px_per_unit, GOAL_RGB),
            (self.position, self.dot_radius_px, DOT_RGB),
        ):
            inside = ((self._pixels - self.to_pixels(centre)) ** 2).sum(-1) <= radius_px**2
            image[inside] = colour
        return image

    def _observation(self) -> dict[str, np.ndarray]:
        return {"image": self._image(), "position": self.position.astype(np.float32), "goal": self.goal.astype(np.float32)}

    def _info(self, reward_terms: dict[str, float]) -> dict[str, Any]:
        return {
            "success": self.distance() < self.success_radius,
            "distance": self.distance(),
            "position": self.position.copy(),
            "reward_terms": reward_terms,
            "step": self._steps,
        }


def reference_scores(
    env: PointReachEnv, act: Callable[[PointReachEnv], np.ndarray], episodes: int = 100, seed: int = 0
) -> tuple[float, float]:
    """Runs `act(env) -> action` for `episodes` episodes (seeds seed, seed+1, ...); returns
    (mean return, fraction of episodes that end within success_radius)."""
    returns, successes = [], []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, info = env.step(act(env))
            total += reward
            done = terminated or truncated
        returns.append(total)
        successes.append(info["success"])
    return float(np.mean(returns)), float(np.mean(successes))
