"""SAC without a latent model: the baselines SLAC is compared with (the paper's figure).

  observation="state":  SAC from the true low-dimensional state (e.g. the joint angles and the
      valve angle as cos/sin): the upper reference. The valve servo reads the angle on hardware,
      so this baseline runs on the real claw too.
  observation="pixels": SAC from raw images: the last `frame_stack` frames stacked on the
      channel axis, SLAC's conv encoder, then a linear layer, LayerNorm and tanh. The encoder
      learns through the critic's loss only; the actor reads its features detached (as SAC-AE
      and DrQ do). augmentation="random_shift" pads each image by `shift_px` (edge pixels
      repeated) and crops it back at a random offset, per sample (DrQ).

One update (train_step), on a batch of replay windows whose last transition is (o_t, a_t, r_t,
o_{t+1}), with phi the observation encoder and phi' its slowly moving target copy:
  critic: y = r_t + gamma (1 - done) [min_i Q'_i(phi'(o_{t+1}), a') - alpha log pi(a' | o_{t+1})]
  actor:  minimise E[alpha log pi(a | phi(o_t)) - min_i Q_i(phi(o_t), a)]
  alpha:  match the policy's entropy to the target -|A|
The goal vector (when goal_conditioned) goes beside phi(o) to actor and critics.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from slac_robot.agent.base import Batch, scale_images, to_batch
from slac_robot.agent.history import PolicyHistory
from slac_robot.agent.networks import Encoder, init_weights
from slac_robot.agent.sac import SoftActorCritic, TanhGaussianActor, TwinCritic, soft_update

OBSERVATIONS = ("state", "pixels")
AUGMENTATIONS = ("none", "random_shift")


@dataclass
class SacConfig:
    """Hyperparameters of the SAC baselines (see configs/agent/sac_state.yaml, sac_pixels.yaml)."""

    observation: str = "state"
    state_keys: tuple[str, ...] = ("joint_pos", "valve")
    frame_stack: int = 3
    width: float = 1.0
    feature_dim: int = 50
    augmentation: str = "none"
    shift_px: int = 4
    hidden: tuple[int, ...] = (256, 256)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    initial_alpha: float = 1.0
    gamma: float = 0.99
    tau: float = 0.005
    encoder_tau: float = 0.05
    goal_conditioned: bool = True


class PixelEncoder(nn.Module):
    """Stacked frames (N, 3k, 64, 64) in [-0.5, 0.5] -> features (N, feature_dim) in [-1, 1]."""

    def __init__(self, frame_stack: int, width: float, feature_dim: int):
        super().__init__()
        self.conv = Encoder(width, in_channels=3 * frame_stack)
        self.trunk = nn.Sequential(nn.Linear(self.conv.feature_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
        self.feature_dim = feature_dim
        self.apply(init_weights)

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.conv(stacked))


def random_shift(images: torch.Tensor, shift_px: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ's augmentation: (N, C, H, W) padded by shift_px (edges repeated), cropped back to
    (H, W) at an offset drawn per sample in [0, 2 shift_px]."""
    n, _, h, w = images.shape
    padded = F.pad(images, (shift_px,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * shift_px + 1, (n, 2), device=images.device, generator=generator)
    rows = (torch.arange(h, device=images.device)[None] + offsets[:, :1])[:, :, None]  # (N, H, 1)
    cols = (torch.arange(w, device=images.device)[None] + offsets[:, 1:])[:, None, :]  # (N, 1, W)
    picked = padded.permute(0, 2, 3, 1)[torch.arange(n, device=images.device)[:, None, None], rows, cols]
    return picked.permute(0, 3, 1, 2)


class SacAgent(SoftActorCritic):
    """SAC from the state or from pixels (an agent.base.Agent).

    action_dim: |A|; vector_dims: the task's vector observations, name -> size (the state keys
    and, when goal_conditioned, "goal" must be among them); cfg: SacConfig; device."""

    has_latent_model = False

    def __init__(self, action_dim: int, vector_dims: Mapping[str, int], cfg: SacConfig,
                 device: str | torch.device = "cpu"):
        if cfg.observation not in OBSERVATIONS:
            raise ValueError(f"observation={cfg.observation!r} is not one of {OBSERVATIONS}")
        if cfg.augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation={cfg.augmentation!r} is not one of {AUGMENTATIONS}")
        self.cfg = cfg
        self.device = torch.device(device)
        self.action_dim = action_dim
        self.uses_images = cfg.observation == "pixels"
        self.state_keys = () if self.uses_images else tuple(cfg.state_keys)
        missing = [k for k in self.state_keys if k not in vector_dims]
        if missing:
            raise KeyError(f"the state keys {missing} are not observations of this task (it has {sorted(vector_dims)})")
        self.goal_keys = ("goal",) if cfg.goal_conditioned and "goal" in vector_dims else ()
        self.observation_keys = self.state_keys + self.goal_keys
        self.vector_dims = {k: int(vector_dims[k]) for k in self.observation_keys}
        goal_dim = sum(self.vector_dims[k] for k in self.goal_keys)
        # A window of k transitions holds the k frames of o_t and of o_{t+1}; the state needs one.
        self.sequence_length = self.history_length = cfg.frame_stack if self.uses_images else 1
        if self.uses_images:
            self.encoder: nn.Module = PixelEncoder(cfg.frame_stack, cfg.width, cfg.feature_dim)
            obs_dim = cfg.feature_dim
        else:
            self.encoder = nn.Identity()
            obs_dim = sum(self.vector_dims[k] for k in self.state_keys)
        self.actor = TanhGaussianActor(obs_dim + goal_dim, action_dim, cfg.hidden)
        self.critic = TwinCritic(obs_dim + goal_dim + action_dim, cfg.hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.encoder_target = copy.deepcopy(self.encoder).requires_grad_(False)
        for net in (self.encoder, self.encoder_target, self.actor, self.critic, self.critic_target):
            net.to(self.device)
        self.log_alpha = torch.tensor(np.log(cfg.initial_alpha), device=self.device, requires_grad=True)
        self.target_entropy = -float(action_dim)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        # The encoder learns with the critic (SAC-AE, DrQ): one optimiser for both.
        self.critic_optim = torch.optim.Adam([*self.critic.parameters(), *self.encoder.parameters()], lr=cfg.critic_lr)
        self.alpha_optim = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr)
        self.model_updates = 0  # no latent model; kept for the common counters
        self.sac_updates = 0

    # ----- data -----
    def to_batch(self, sample: dict[str, np.ndarray]) -> Batch:
        """Moves a replay sample to the device (images only for observation=pixels)."""
        return to_batch(sample, self.observation_keys, self.device, images=self.uses_images)

    def _observations(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """o_t and o_{t+1} of each window's last transition: stacked frames (B, 3k, H, W) or
        state vectors (B, S)."""
        if self.uses_images:
            images = batch.images  # (B, k+1, 3, H, W)
            now, after = images[:, :-1].flatten(1, 2), images[:, 1:].flatten(1, 2)
            if self.cfg.augmentation == "random_shift":
                now, after = random_shift(now, self.cfg.shift_px), random_shift(after, self.cfg.shift_px)
            return now, after
        state = batch.vector(self.state_keys)
        return state[:, -2], state[:, -1]

    # ----- the update -----
    def pretrain_step(self, replay, rng: np.random.Generator, model_batch_size: int) -> dict[str, float]:
        return {}  # no latent model to pre-train

    def train_step(self, replay, rng: np.random.Generator, model_batch_size: int,
                   sac_batch_size: int) -> dict[str, float]:
        """One SAC update on sac_batch_size fresh windows (model_batch_size is not used)."""
        return self.update(self.to_batch(replay.sample(sac_batch_size, rng)))

    def update(self, batch: Batch) -> dict[str, float]:
        """Critic (with the encoder), actor and temperature steps on each window's last transition."""
        obs, next_obs = self._observations(batch)
        goals = batch.vector(self.goal_keys)
        goal_t, goal_next = goals[:, -2], goals[:, -1]
        features = self.encoder(obs)  # learns through the critic's loss
        with torch.no_grad():
            next_features, next_target_features = self.encoder(next_obs), self.encoder_target(next_obs)
        metrics = self.sac_step(
            critic_in=lambda a: torch.cat([features, goal_t, a], -1),
            policy_critic_in=lambda a: torch.cat([features.detach(), goal_t, a], -1),  # the actor does not move the encoder
            next_critic_in=lambda a: torch.cat([next_target_features, goal_next, a], -1),
            actor_in=torch.cat([features.detach(), goal_t], -1),
            next_actor_in=torch.cat([next_features, goal_next], -1),
            action=batch.actions[:, -1], reward=batch.rewards[:, -1:], not_done=1.0 - batch.terminated[:, -1:],
        )
        if self.uses_images:
            soft_update(self.encoder_target, self.encoder, self.cfg.encoder_tau)
        return metrics

    # ----- acting -----
    @torch.no_grad()
    def act(self, history: PolicyHistory, explore: bool) -> np.ndarray:
        """The action for the newest observation of history (its last k frames, or its state)."""
        if self.uses_images:
            frames = torch.as_tensor(history.frames).to(self.device).permute(0, 3, 1, 2)
            obs = scale_images(frames, channels_last=False).flatten(0, 1)[None]
        else:
            obs = torch.as_tensor(history.vector(self.state_keys)[-1], device=self.device)[None]
        goal = torch.as_tensor(history.vector(self.goal_keys)[-1], device=self.device)[None]
        inputs = torch.cat([self.encoder(obs), goal], -1)
        action = self.actor(inputs)[0] if explore else self.actor.mean_action(inputs)
        return action[0].cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def probe_features(self, batch: Batch) -> torch.Tensor:
        """What the encoder makes of each window's newest observation: (B, feature_dim or S)."""
        return self.encoder(self._observations(batch)[1]).float()

    # ----- persistence -----
    owned_modules = ("encoder", "encoder_target", "actor", "critic", "critic_target")
    owned_optimisers = ("actor_optim", "critic_optim", "alpha_optim")

    def policy_state_dict(self) -> dict[str, Any]:
        """What acting needs, on the CPU: the encoder and the actor."""
        return self.policy_from_state_dict({
            "encoder": self.encoder.state_dict(), "actor": self.actor.state_dict(),
            "model_updates": self.model_updates, "sac_updates": self.sac_updates,
        })

    @staticmethod
    def policy_from_state_dict(state: dict[str, Any]) -> dict[str, Any]:
        """The policy part (as policy_state_dict) of a full state_dict, e.g. a checkpoint's."""
        on_cpu = lambda d: {k: v.detach().cpu() for k, v in d.items()}  # noqa: E731
        return {"encoder": on_cpu(state["encoder"]), "actor": on_cpu(state["actor"]),
                "model_updates": int(state["model_updates"]), "sac_updates": int(state["sac_updates"])}

    def load_policy_state_dict(self, state: dict[str, Any]) -> None:
        """Takes up published policy weights (see policy_state_dict)."""
        self.encoder.load_state_dict(state["encoder"])
        self.actor.load_state_dict(state["actor"])
        self.model_updates = int(state["model_updates"])
        self.sac_updates = int(state["sac_updates"])
