"""A trained SLAC agent behind the rollout's Policy interface (`slac-robot eval`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from slac_robot.agent.agent import SlacAgent
from slac_robot.agent.history import PolicyHistory


class SlacPolicy:
    """Acts from the episode's history, padded at its start as in training.

    agent: the SLAC agent with the trained encoder and actor; image_shape: (H, W, 3).
    explore: sample the action (as in training) instead of the deterministic tanh(mean)."""

    def __init__(self, agent: SlacAgent, image_shape: tuple[int, int, int], explore: bool = False):
        self.agent = agent
        self.explore = explore
        self._history = PolicyHistory(agent.cfg.sequence_length, image_shape, agent.action_dim)
        self._last_action: np.ndarray | None = None

    def reset(self, seed: int | None) -> None:
        self._last_action = None

    def act(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        if self._last_action is None:
            self._history.reset(observation["image"], observation.get("goal"))
        else:
            # A refused (NaN) action went into the episode as a hold: the history takes the hold.
            self._history.push(info.get("held_action", self._last_action), observation["image"], observation.get("goal"))
        h = self._history
        self._last_action = self.agent.act(h.frames, h.actions, h.goal, explore=self.explore)
        return self._last_action
