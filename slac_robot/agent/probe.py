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
from dataclasses import dataclass, field
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
    sample_errors = probe_sample_errors(train_features, train_targets, test_features, test_targets)
    return {name: float(errors.mean()) for name, errors in sample_errors.items()}


def probe_sample_errors(train_features: np.ndarray, train_targets: Mapping[str, np.ndarray],
                        test_features: np.ndarray, test_targets: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """As probe_errors, but each test pair's own error: "probe/<key>_error" -> (N_test,)."""
    errors = {}
    for key, train in train_targets.items():
        weights = fit_linear_probe(train_features, train)
        guess, truth = predict(weights, test_features), np.asarray(test_targets[key], dtype=np.float64)
        if key == "valve":  # (cos, sin) -> angle, wrapped difference
            difference = np.arctan2(guess[:, 1], guess[:, 0]) - np.arctan2(truth[:, 1], truth[:, 0])
            errors["probe/valve_error_rad"] = np.abs((difference + math.pi) % (2 * math.pi) - math.pi)
        else:
            unit = "_rad" if key == "joint_pos" else ""
            errors[f"probe/{key}_error{unit}"] = np.abs(guess - truth).mean(axis=1)
    return errors


@torch.no_grad()
def agent_probe(agent, train_sample: dict[str, np.ndarray], test_sample: dict[str, np.ndarray]) -> dict[str, float]:
    """The probe's errors for an agent, from two replay samples (dicts as SequenceReplay.sample
    returns): features of each window's newest observation, targets its true state."""
    keys = [k for k in PROBED_KEYS if k in train_sample and k in test_sample]
    if not keys:
        return {}
    return probe_errors(*_features_and_targets(agent, train_sample, keys),
                        *_features_and_targets(agent, test_sample, keys))


@torch.no_grad()
def _features_and_targets(agent, sample: dict[str, np.ndarray], keys: list[str]) -> tuple[np.ndarray, dict]:
    features = agent.probe_features(agent.to_batch(sample)).cpu().numpy()
    return features, {k: sample[k][:, -1] for k in keys}


@dataclass
class HeldoutProbe:
    """The probe scored on held-out episodes. errors: "probe/<key>_error" -> mean over every
    window; per_episode: the same names' means over each episode's windows, one dict per
    held-out episode (oldest first; what went wrong where, e.g. by the valve's start)."""

    errors: dict[str, float] = field(default_factory=dict)
    per_episode: list[dict[str, float]] = field(default_factory=list)


def heldout_probe(agent, replay, heldout_dir, heldout_steps: int, rng: np.random.Generator,
                  train_windows: int = 1024, test_chunk_windows: int = 512) -> HeldoutProbe:
    """The probe fitted on `train_windows` windows of `replay` (a SequenceReplay) and scored on
    every window of the episodes that make the newest `heldout_steps` steps in heldout_dir (the
    evaluation's, recorded there as replay files), test_chunk_windows at a time. An empty
    HeldoutProbe when there is nothing to probe."""
    from slac_robot.agent.replay import SequenceReplay

    if replay.num_episodes == 0 or heldout_steps < 1:
        return HeldoutProbe()
    # expected_episode_steps=1: room for the first frame of every episode, however short (a trip)
    heldout = SequenceReplay(heldout_dir, replay.action_dim, capacity_steps=heldout_steps,
                             sequence_length=agent.sequence_length, image_shape=replay.image_shape,
                             extras=replay.extras, expected_episode_steps=1)
    train_sample = replay.sample(train_windows, rng)
    keys = [k for k in PROBED_KEYS if k in train_sample and k in heldout.extras]
    if heldout.num_windows == 0 or not keys:
        return HeldoutProbe()
    windows = np.arange(heldout.num_windows)
    test = [_features_and_targets(agent, heldout.windows(chunk), keys)
            for chunk in np.array_split(windows, math.ceil(len(windows) / test_chunk_windows))]
    test_features = np.concatenate([features for features, _ in test])
    test_targets = {k: np.concatenate([targets[k] for _, targets in test]) for k in keys}
    sample_errors = probe_sample_errors(*_features_and_targets(agent, train_sample, keys), test_features, test_targets)
    episode = heldout.window_episodes(windows)
    return HeldoutProbe(
        errors={name: float(errors.mean()) for name, errors in sample_errors.items()},
        per_episode=[{name: float(errors[episode == e].mean()) for name, errors in sample_errors.items()}
                     for e in range(heldout.num_episodes) if np.any(episode == e)],
    )
