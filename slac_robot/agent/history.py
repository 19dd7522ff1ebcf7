"""The actor's view of the recent past: the last L frames and the L-1 actions between them.

At the start of an episode the history is padded the way the replay pads its windows: the first
frame repeated and zero actions, so that the actor sees at run time what it was trained on.
"""

from __future__ import annotations

import numpy as np


class PolicyHistory:
    """A rolling window of frames (L, H, W, 3) uint8 and actions (L-1, A) float32, oldest first.

    length: L, the agent's sequence length; goal: the newest goal vector."""

    def __init__(self, length: int, image_shape: tuple[int, int, int], action_dim: int):
        self.frames = np.zeros((length, *image_shape), dtype=np.uint8)
        self.actions = np.zeros((length - 1, action_dim), dtype=np.float32)
        self.goal = np.zeros(0, dtype=np.float32)

    def reset(self, image: np.ndarray, goal: np.ndarray | None = None) -> None:
        """Starts an episode: every slot holds the first frame, every action is zero."""
        self.frames[:] = image
        self.actions[:] = 0.0
        self.goal = np.zeros(0, np.float32) if goal is None else np.asarray(goal, np.float32)

    def push(self, action: np.ndarray, image: np.ndarray, goal: np.ndarray | None = None) -> None:
        """Appends the action just taken and the frame it led to; the oldest drop out."""
        self.frames[:-1] = self.frames[1:]
        self.frames[-1] = image
        if len(self.actions):
            self.actions[:-1] = self.actions[1:]
            self.actions[-1] = action
        if goal is not None:
            self.goal = np.asarray(goal, np.float32)
