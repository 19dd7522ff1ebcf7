"""Does the agent see the valve? A linear probe of what it knows against the true state.

A ridge regression from the agent's features of an observation (SLAC: the posterior latent;
SAC from pixels: the encoder's features; SAC from the state: the state) to the true state the
simulator (or the valve servo) reports, fitted on replay windows and scored on held-out
episodes (the evaluation's, which no update has seen). Reported per observation key:
  valve:     the valve angle from its (cos, sin): mean |error| in radians (a constant guess
             scores about pi/2 when the valve is uniform over the circle);
  joint_pos: the joint angles: mean |error| in radians over joints;
  position:  PointReach's dot: mean |error| in arena units over both axes.
A small error says the features hold the quantity linearly; a large one after many updates says
the model has not learnt to see it (look at the prediction strips, videos/model_*.png).
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch

PROBED_KEYS = ("valve", "joint_pos", "position")
RIDGE = 1e-3  # ridge penalty relative to the features' mean square: stable with collinear features


def fit_linear_probe(features: np.ndarray, targets: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """Ridge regression with a bias: features (N, D), targets (N, K) -> weights (D + 1, K)."""
    x = np.concatenate([features, np.ones((len(features), 1))], axis=1).astype(np.float64)
    gram = x.T @ x
    penalty = ridge * np.trace(gram) / len(gram) * np.eye(len(gram))
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    return np.linalg.solve(gram + penalty, x.T @ targets.astype(np.float64))


def predict(weights: np.ndarray, features: np.ndarray) -> np.ndarray:
    """The probe's prediction (N, K) for features (N, D)."""
    return np.concatenate([features, np.ones((len(features), 1))], axis=1) @ weights


def probe_errors(train_features: np.ndarray, train_targets: Mapping[str, np.ndarray],
                 test_features: np.ndarray, test_targets: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Fits one probe per key on the training pairs and scores it on the test pairs.

    targets: key -> (N, K) true values (keys among PROBED_KEYS). Returns "probe/<key>_error"
    (valve and joint_pos in radians, position in arena units)."""
    errors = {}
    for key, train in train_targets.items():
        weights = fit_linear_probe(train_features, train)
        guess, truth = predict(weights, test_features), np.asarray(test_targets[key], dtype=np.float64)
        if key == "valve":  # (cos, sin) -> angle, wrapped difference
            difference = np.arctan2(guess[:, 1], guess[:, 0]) - np.arctan2(truth[:, 1], truth[:, 0])
            error = np.abs((difference + math.pi) % (2 * math.pi) - math.pi)
            errors["probe/valve_error_rad"] = float(error.mean())
        else:
            unit = "_rad" if key == "joint_pos" else ""
            errors[f"probe/{key}_error{unit}"] = float(np.abs(guess - truth).mean())
    return errors


@torch.no_grad()
def agent_probe(agent, train_sample: dict[str, np.ndarray], test_sample: dict[str, np.ndarray]) -> dict[str, float]:
    """The probe's errors for an agent, from two replay samples (dicts as SequenceReplay.sample
    returns): features of each window's newest observation, targets its true state."""
    keys = [k for k in PROBED_KEYS if k in train_sample and k in test_sample]
    if not keys:
        return {}

    def features_and_targets(sample):
        features = agent.probe_features(agent.to_batch(sample)).cpu().numpy()
        return features, {k: sample[k][:, -1] for k in keys}

    return probe_errors(*features_and_targets(train_sample), *features_and_targets(test_sample))


def heldout_probe(agent, replay, heldout_dir, heldout_steps: int, rng: np.random.Generator,
                  train_windows: int = 1024, test_windows: int = 512) -> dict[str, float]:
    """The probe fitted on `replay` (a SequenceReplay) and scored on the newest `heldout_steps`
    steps of episodes in heldout_dir (the evaluation's, recorded there as replay files).
    Returns {} when there is nothing to probe."""
    from slac_robot.agent.replay import SequenceReplay

    if replay.num_episodes == 0 or heldout_steps < 1:
        return {}
    heldout = SequenceReplay(heldout_dir, replay.action_dim, capacity_steps=heldout_steps,
                             sequence_length=agent.sequence_length, image_shape=replay.image_shape,
                             extras=replay.extras)
    if heldout.num_windows == 0:
        return {}
    return agent_probe(agent, replay.sample(train_windows, rng), heldout.sample(test_windows, rng))
