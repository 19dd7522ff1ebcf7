"""What every agent offers the trainer and the learner, and the batch they all learn from.

The trainer (runtime/train.py) and the learner process (runtime/learner.py) talk to an agent
only through `Agent`: act from a history, one update step from the replay, state for
checkpoints and for the published policy. SLAC (agent/slac.py) and the SAC baselines
(agent/sac_baseline.py, from the true state or from pixels) implement it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from slac_robot.agent.history import PolicyHistory

PIXEL_OFFSET = 0.5  # uint8 pixels map to [-0.5, 0.5]: x = p / 255 - 0.5


class Agent(Protocol):
    """One learning agent. Counters `model_updates` and `sac_updates` say how far it trained.

    sequence_length: transitions per replay window an update reads (L + 1 observations).
    history_length: observations the policy acts from (the newest last).
    observation_keys: the vector observations it reads beside the image (e.g. "goal").
    uses_images: whether it reads the image at all (SAC from the state does not).
    has_latent_model: whether it learns a latent model (SLAC): `pretrain_step` trains it, and
        the model media (reconstructions, predictions) show it."""

    sequence_length: int
    history_length: int
    observation_keys: tuple[str, ...]
    uses_images: bool
    has_latent_model: bool
    model_updates: int
    sac_updates: int

    def act(self, history: PolicyHistory, explore: bool) -> np.ndarray:
        """The action for the newest observation of `history`: float32 in [-1, 1]^A."""

    def pretrain_step(self, replay, rng: np.random.Generator, model_batch_size: int) -> dict[str, float]:
        """One model-only update (the paper's pre-training); {} for agents without a model."""

    def train_step(self, replay, rng: np.random.Generator, model_batch_size: int,
                   sac_batch_size: int) -> dict[str, float]:
        """One update of everything that learns, from fresh replay samples; returns metrics."""

    def probe_features(self, batch: "Batch") -> torch.Tensor:
        """What the agent knows of the newest observation of each window: (B, D) (for the probe)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def policy_state_dict(self) -> dict[str, Any]:
        """What acting needs, on the CPU (published to the actor process)."""

    def load_policy_state_dict(self, state: dict[str, Any]) -> None: ...

    def policy_from_state_dict(self, state: dict[str, Any]) -> dict[str, Any]:
        """The policy part of a full state_dict (a checkpoint's), as policy_state_dict gives it."""


@dataclass
class Batch:
    """A batch of sequences on the agent's device.

    images (B, T+1, 3, H, W) float in [-0.5, 0.5] (None for agents without images); actions
    (B, T, A); rewards (B, T); terminated (B, T) float; valid (B, T+1) bool; vectors: each
    vector observation the agent reads, name -> (B, T+1, dim)."""

    images: torch.Tensor | None
    actions: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    valid: torch.Tensor
    vectors: dict[str, torch.Tensor]

    def vector(self, keys: Sequence[str]) -> torch.Tensor:
        """The named vector observations side by side: (B, T+1, sum of dims); 0 wide for no keys."""
        if not keys:
            return self.actions.new_zeros(*self.valid.shape, 0)
        return torch.cat([self.vectors[k] for k in keys], dim=-1)


def scale_images(images_uint8: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float in [-0.5, 0.5], scaled on the device.

    The (H, W, 3) memory order of the replay is channels-last order already, so the permuted
    view needs no copy when the networks run channels-last."""
    if not channels_last:
        images_uint8 = images_uint8.contiguous()
    return images_uint8.float().div_(255.0).sub_(PIXEL_OFFSET)


def to_batch(sample: dict[str, np.ndarray], keys: Sequence[str], device: torch.device,
             images: bool = True, channels_last: bool = False) -> Batch:
    """Moves a replay sample (uint8 images (B, T+1, H, W, 3), ...) to the device; keeps the
    vector observations named in keys."""
    as_float = lambda k: torch.as_tensor(sample[k], dtype=torch.float32).to(device)  # noqa: E731
    image_tensor = None
    if images:
        image_tensor = torch.as_tensor(sample["images"]).to(device, non_blocking=True)
        image_tensor = scale_images(image_tensor.permute(0, 1, 4, 2, 3), channels_last)
    batch, steps = sample["actions"].shape[0], sample["actions"].shape[1] + 1
    valid = sample.get("valid")
    valid = (torch.as_tensor(valid).to(device) if valid is not None
             else torch.ones(batch, steps, dtype=torch.bool, device=device))
    missing = [k for k in keys if k not in sample]
    if missing:
        raise KeyError(f"the replay holds no {missing} observations (it has {sorted(sample)}); record them, "
                       "or choose an agent that does not read them")
    return Batch(image_tensor, as_float("actions"), as_float("rewards"), as_float("terminated"), valid,
                 {k: as_float(k) for k in keys})
