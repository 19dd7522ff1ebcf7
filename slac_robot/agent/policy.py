"""A trained agent behind the rollout's Policy interface (`slac-robot eval`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from slac_robot.agent.base import Agent
from slac_robot.agent.history import PolicyHistory


def make_history(agent: Agent, observation_space) -> PolicyHistory:
    """The history an agent acts from, shaped for an env's observation space."""
    return PolicyHistory(agent.history_length, observation_space["image"].shape, agent.action_dim,
                         {k: observation_space[k].shape[0] for k in agent.observation_keys})


class AgentPolicy:
    """Acts from the episode's history, padded at its start as in training.

    agent: a trained agent (SLAC or a SAC baseline); observation_space: the env's.
    explore: sample the action (as in training) instead of the deterministic tanh(mean)."""

    def __init__(self, agent: Agent, observation_space, explore: bool = False):
        self.agent = agent
        self.explore = explore
        self._history = make_history(agent, observation_space)
        self._last_action: np.ndarray | None = None

    def reset(self, seed: int | None) -> None:
        self._last_action = None

    def act(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        if self._last_action is None:
            self._history.reset(observation)
        else:
            # A refused (NaN) action went into the episode as a hold: the history takes the hold.
            self._history.push(info.get("held_action", self._last_action), observation)
        self._last_action = self.agent.act(self._history, explore=self.explore)
        return self._last_action
