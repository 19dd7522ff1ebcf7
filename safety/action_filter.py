"""From the policy's normalised action to joint targets that stay inside the joint limits."""

from __future__ import annotations

import numpy as np

from slac_robot.config import ConfigError


class ActionFilter:
    """Maps actions in [-1, 1]^n linearly onto [lower, upper] joint targets, and clips.

    joint_lower_rad, joint_upper_rad: per-joint limits, shape (n,), lower < upper.

    An action with a NaN or an infinite entry is refused: the claw holds its measured position,
    and the refusal is counted in `refused_actions`.
    """

    def __init__(self, joint_lower_rad, joint_upper_rad):
        lower = np.asarray(joint_lower_rad, dtype=np.float64)
        upper = np.asarray(joint_upper_rad, dtype=np.float64)
        if lower.shape != upper.shape or lower.ndim != 1:
            raise ConfigError(
                "safety.joint_lower_rad and safety.joint_upper_rad must be lists of the same "
                f"length, got {lower.shape} and {upper.shape}"
            )
        if not np.all(lower < upper):
            bad = np.flatnonzero(~(lower < upper)).tolist()
            raise ConfigError(
                f"safety.joint_lower_rad must be below safety.joint_upper_rad; joints {bad} are not"
            )
        self.joint_lower_rad = lower
        self.joint_upper_rad = upper
        self.refused_actions = 0

    @property
    def num_joints(self) -> int:
        return self.joint_lower_rad.shape[0]

    def to_targets(self, action: np.ndarray) -> np.ndarray:
        """The joint targets of a finite action: [-1, 1] onto [lower, upper], clipped."""
        unit = (np.clip(action, -1.0, 1.0) + 1.0) * 0.5
        targets = self.joint_lower_rad + unit * (self.joint_upper_rad - self.joint_lower_rad)
        return np.clip(targets, self.joint_lower_rad, self.joint_upper_rad)

    def to_action(self, joint_targets_rad: np.ndarray) -> np.ndarray:
        """The inverse map: the normalised action that commands these joint targets."""
        span = self.joint_upper_rad - self.joint_lower_rad
        return np.clip(2.0 * (joint_targets_rad - self.joint_lower_rad) / span - 1.0, -1.0, 1.0)

    def __call__(self, action: np.ndarray, measured_pos_rad: np.ndarray) -> np.ndarray:
        """Returns safe joint targets for `action`, given the measured joint positions."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.joint_lower_rad.shape:
            raise ValueError(f"expected an action of shape {self.joint_lower_rad.shape}, got {action.shape}")
        if not np.all(np.isfinite(action)):
            self.refused_actions += 1
            # Hold where the claw is, but never command outside the limits.
            return np.clip(measured_pos_rad, self.joint_lower_rad, self.joint_upper_rad)
        return self.to_targets(action)
