"""From the policy's normalised action to joint targets that are safe to send.

Two limits, in this order: the motion limit (a target at most `max_step_rad` from the *measured*
position, i.e. the velocity limit times the control period), then the joint limits, which
always win, even when the measured position lies outside them.
"""

from __future__ import annotations

import numpy as np

from slac_robot.config import ConfigError


class ActionFilter:
    """Maps actions in [-1, 1]^n linearly onto [lower, upper] joint targets, and limits them.

    joint_lower_rad, joint_upper_rad: per-joint limits, shape (n,), lower < upper.
    max_step_rad: the largest move per control step from the measured position, one number or
        one per joint (safety.max_joint_speed_rad_s x the control period).

    An action with a NaN or an infinite entry is refused: the claw holds its measured position
    (inside the limits). Refusals are counted in `refused_actions` (all of them) and
    `refused_in_a_row` (since the last finite action; the health monitor trips on it).
    """

    def __init__(self, joint_lower_rad, joint_upper_rad, max_step_rad):
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
        step = np.asarray(max_step_rad, dtype=np.float64)
        if step.ndim > 1 or (step.ndim == 1 and step.shape != lower.shape) or not np.all(step > 0) or not np.all(np.isfinite(step)):
            raise ConfigError(
                "safety.max_joint_speed_rad_s x the control period must give one finite step > 0, or one per "
                f"joint; got max_step_rad={max_step_rad!r}"
            )
        self.joint_lower_rad = lower
        self.joint_upper_rad = upper
        self.max_step_rad = np.broadcast_to(step, lower.shape).copy()
        self.refused_actions = 0
        self.refused_in_a_row = 0

    @property
    def num_joints(self) -> int:
        return self.joint_lower_rad.shape[0]

    def to_targets(self, action: np.ndarray) -> np.ndarray:
        """The joint targets of a finite action: [-1, 1] onto [lower, upper], clipped (no motion limit)."""
        unit = (np.clip(action, -1.0, 1.0) + 1.0) * 0.5
        targets = self.joint_lower_rad + unit * (self.joint_upper_rad - self.joint_lower_rad)
        return np.clip(targets, self.joint_lower_rad, self.joint_upper_rad)

    def to_action(self, joint_targets_rad: np.ndarray) -> np.ndarray:
        """The inverse map: the normalised action that commands these joint targets."""
        span = self.joint_upper_rad - self.joint_lower_rad
        return np.clip(2.0 * (joint_targets_rad - self.joint_lower_rad) / span - 1.0, -1.0, 1.0)

    def __call__(self, action: np.ndarray, measured_pos_rad: np.ndarray) -> np.ndarray:
        """Returns safe joint targets (shape (n,), radians) for `action`, given the measured joints.

        A non-finite action is refused and counted: the targets hold the measured position.
        Raises ValueError for a wrong shape or a non-finite measured position (a reading that the
        health monitor should have refused)."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.joint_lower_rad.shape:
            raise ValueError(f"expected an action of shape {self.joint_lower_rad.shape}, got {action.shape}")
        measured = self._measured(measured_pos_rad)
        if not np.all(np.isfinite(action)):
            self.refused_actions += 1
            self.refused_in_a_row += 1
            # Hold where the claw is, but never command outside the limits.
            return np.clip(measured, self.joint_lower_rad, self.joint_upper_rad)
        self.refused_in_a_row = 0
        return self._limit(self.to_targets(action), measured)

    def limit_step(self, targets_rad: np.ndarray, measured_pos_rad: np.ndarray) -> np.ndarray:
        """The same motion and joint limits for a target pose in radians (the scripted reset's ramp):
        each joint moves at most max_step_rad from its measured position, towards targets_rad."""
        targets = np.asarray(targets_rad, dtype=np.float64)
        if targets.shape != self.joint_lower_rad.shape or not np.all(np.isfinite(targets)):
            raise ValueError(f"targets must be {self.num_joints} finite angles, got {targets_rad!r}")
        return self._limit(targets, self._measured(measured_pos_rad))

    def _measured(self, measured_pos_rad: np.ndarray) -> np.ndarray:
        measured = np.asarray(measured_pos_rad, dtype=np.float64)
        if measured.shape != self.joint_lower_rad.shape:
            raise ValueError(f"expected measured positions of shape {self.joint_lower_rad.shape}, got {measured.shape}")
        if not np.all(np.isfinite(measured)):
            raise ValueError(
                f"measured joint positions {measured.tolist()} are not finite: the health monitor should have "
                "tripped on this reading; no target can be derived from it"
            )
        return measured

    def _limit(self, targets: np.ndarray, measured: np.ndarray) -> np.ndarray:
        # The motion limit first, then the joint limits, so that the limits always win.
        near = np.clip(targets, measured - self.max_step_rad, measured + self.max_step_rad)
        return np.clip(near, self.joint_lower_rad, self.joint_upper_rad)
