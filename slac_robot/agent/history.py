"""The actor's view of the recent past: the last L observations and the L-1 actions between them.

At the start of an episode the history is padded the way the replay pads its windows: the first
observation repeated and zero actions, so that the actor sees at run time what it was trained on.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def vector_dims(observation_space) -> dict[str, int]:
    """The vector observations of an env (every key but the image), name -> size."""
    return {k: space.shape[0] for k, space in observation_space.spaces.items() if k != "image"}


class PolicyHistory:
    """A rolling window, oldest first: frames (L, H, W, 3) uint8, actions (L-1, A) float32 and
    each vector observation named in vector_dims, name -> (L, dim) float32.

    length: L, the observations the agent acts from; image_shape: (H, W, 3);
    vector_dims: the vector observations to keep (e.g. {"goal": 2}), name -> size."""

    def __init__(self, length: int, image_shape: tuple[int, int, int], action_dim: int,
                 vector_dims: Mapping[str, int] | None = None):
        self.frames = np.zeros((length, *image_shape), dtype=np.uint8)
        self.actions = np.zeros((length - 1, action_dim), dtype=np.float32)
        self.vectors = {name: np.zeros((length, dim), np.float32) for name, dim in (vector_dims or {}).items()}

    def reset(self, observation: Mapping[str, np.ndarray]) -> None:
        """Starts an episode: every slot holds the first observation, every action is zero."""
        self.frames[:] = observation["image"]
        self.actions[:] = 0.0
        for name, values in self.vectors.items():
            values[:] = observation[name]

    def push(self, action: np.ndarray, observation: Mapping[str, np.ndarray]) -> None:
        """Appends the action just taken and the observation it led to; the oldest drop out."""
        self.frames[:-1] = self.frames[1:]
        self.frames[-1] = observation["image"]
        if len(self.actions):
            self.actions[:-1] = self.actions[1:]
            self.actions[-1] = action
        for name, values in self.vectors.items():
            values[:-1] = values[1:]
            values[-1] = observation[name]

    def vector(self, keys) -> np.ndarray:
        """The named vector observations side by side: (L, sum of dims); 0 wide for no keys."""
        if not keys:
            return np.zeros((len(self.frames), 0), np.float32)
        return np.concatenate([self.vectors[k] for k in keys], axis=-1)
