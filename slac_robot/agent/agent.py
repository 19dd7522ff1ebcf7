"""The SLAC agent: the latent model, SAC in its latent space, and their update steps.

One training step of the paper (Algorithm 1), after the replay has some episodes:
  update_model(batch of 32 sequences):  minimise the negative ELBO (latent_model.LatentModel.loss)
  update_sac(batch of 256 sequences):    critic, actor and temperature steps on posterior latents
The SAC step never moves the latent model: it reads the encoder features and posterior samples
without gradients, as in the paper.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from slac_robot.agent.latent_model import LatentModel
from slac_robot.agent.sac import TanhGaussianActor, TwinCritic, soft_update

PIXEL_OFFSET = 0.5  # uint8 pixels map to [-0.5, 0.5]: x = p / 255 - 0.5


@dataclass
class SlacConfig:
    """SLAC's hyperparameters (defaults: the paper's; see configs/agent/slac.yaml)."""

    sequence_length: int = 8
    z1_dim: int = 32
    z2_dim: int = 256
    hidden: tuple[int, ...] = (256, 256)
    width: float = 1.0
    image_std: float = 0.1**0.5
    model_lr: float = 1e-4
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    initial_alpha: float = 1.0
    gamma: float = 0.99
    tau: float = 0.005
    goal_conditioned: bool = True
    channels_last: bool = True
    autocast_bf16: bool = False
    fused_adam: bool = True


@dataclass
class Batch:
    """A batch of sequences on the agent's device, images already scaled to [-0.5, 0.5].

    images (B, T+1, 3, H, W); actions (B, T, A); rewards (B, T); terminated (B, T) float;
    goals (B, T+1, G) (G = 0 without goal conditioning); valid (B, T+1) bool."""

    images: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    goals: torch.Tensor
    valid: torch.Tensor


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Gradients flow through the module to its inputs, but not into its parameters."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class SlacAgent:
    """Networks, optimisers and temperature of one SLAC agent.

    action_dim: |A|; goal_dim: size of the task's goal vector (used when cfg.goal_conditioned);
    device: where the networks live ("cpu", "cuda")."""

    def __init__(self, action_dim: int, goal_dim: int, cfg: SlacConfig, device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        self.action_dim = action_dim
        self.goal_dim = goal_dim if cfg.goal_conditioned else 0
        L = cfg.sequence_length
        self.model = LatentModel(action_dim, cfg.z1_dim, cfg.z2_dim, cfg.hidden, cfg.width, cfg.image_std)
        feature_dim = self.model.encoder.feature_dim
        actor_in = L * feature_dim + (L - 1) * action_dim + self.goal_dim
        critic_in = self.model.latent_dim + action_dim + self.goal_dim
        self.actor = TanhGaussianActor(actor_in, action_dim, cfg.hidden)
        self.critic = TwinCritic(critic_in, cfg.hidden)
        self.critic_target = TwinCritic(critic_in, cfg.hidden)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        for net in (self.model, self.actor, self.critic, self.critic_target):
            net.to(self.device, memory_format=memory_format)
        self.log_alpha = torch.tensor(np.log(cfg.initial_alpha), device=self.device, requires_grad=True)
        self.target_entropy = -float(action_dim)
        fused = cfg.fused_adam  # one fused kernel per parameter group instead of one per tensor
        self.model_optim = torch.optim.Adam(self.model.parameters(), lr=cfg.model_lr, fused=fused)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, fused=fused)
        self.critic_optim = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, fused=fused)
        self.alpha_optim = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr)
        self.model_updates = 0
        self.sac_updates = 0

    # ----- data -----
    def to_batch(self, sample: dict[str, np.ndarray]) -> Batch:
        """Moves a replay sample (uint8 images (B, T+1, H, W, 3), ...) to the device."""
        images = torch.as_tensor(sample["images"]).to(self.device, non_blocking=True)
        images = self._scale_images(images.permute(0, 1, 4, 2, 3))
        as_float = lambda k: torch.as_tensor(sample[k], dtype=torch.float32).to(self.device)  # noqa: E731
        batch, steps = images.shape[:2]
        goals = as_float("goal") if self.goal_dim else images.new_zeros(batch, steps, 0)
        valid = sample.get("valid")
        valid = (
            torch.as_tensor(valid).to(self.device)
            if valid is not None
            else torch.ones(batch, steps, dtype=torch.bool, device=self.device)
        )
        return Batch(images, as_float("actions"), as_float("rewards"), as_float("terminated"), goals, valid)

    def _scale_images(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 (..., 3, H, W) -> float in [-0.5, 0.5], scaled on the device.

        The (H, W, 3) memory order of the replay is channels-last order already, so the permuted
        view needs no copy when the networks run channels-last."""
        if not self.cfg.channels_last:
            images_uint8 = images_uint8.contiguous()
        return images_uint8.float().div_(255.0).sub_(PIXEL_OFFSET)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.autocast_bf16)

    # ----- the latent model step -----
    def update_model(self, batch: Batch) -> dict[str, float]:
        """One gradient step on the negative ELBO; returns its terms."""
        with self._autocast():
            terms = self.model.loss(batch.images, batch.actions, batch.rewards, batch.valid)
        self.model_optim.zero_grad(set_to_none=True)
        terms.loss.backward()
        self.model_optim.step()
        self.model_updates += 1
        return {
            "model/loss": terms.loss.item(),
            "model/kl": terms.kl.item(),
            "model/image_nll": terms.image_nll.item(),
            "model/reward_nll": terms.reward_nll.item(),
        }

    # ----- the SAC step -----
    def actor_inputs(self, features: torch.Tensor, actions: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """features (N, L, F), actions (N, L-1, A), goal (N, G) -> the actor's input (N, in_dim)."""
        return torch.cat([features.flatten(1), actions.flatten(1), goal], dim=-1)

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    def update_sac(self, batch: Batch) -> dict[str, float]:
        """Critic, actor and temperature steps on the last transition (t = T) of each sequence."""
        cfg = self.cfg
        with torch.no_grad(), self._autocast():
            features = self.model.encode(batch.images)
            z = self.model.posterior(features, batch.actions).z
        features, z = features.float(), z.float()
        goals = batch.goals
        # pi(. | x_{1:T}, a_{1:T-1}) at t = T and pi(. | x_{2:T+1}, a_{2:T}) at t = T+1.
        actor_in = self.actor_inputs(features[:, :-1], batch.actions[:, :-1], goals[:, -2])
        next_actor_in = self.actor_inputs(features[:, 1:], batch.actions[:, 1:], goals[:, -1])
        z_t, z_next = z[:, -2], z[:, -1]
        a_t, r_t = batch.actions[:, -1], batch.rewards[:, -1:]
        not_done = 1.0 - batch.terminated[:, -1:]
        alpha = self.alpha

        # Critic: y = r_t + gamma (1 - done) [min_i Q'_i(z_{t+1}, a') - alpha log pi(a' | .)]
        with torch.no_grad():
            next_action, next_log_pi = self.actor(next_actor_in)
            q1_next, q2_next = self.critic_target(torch.cat([z_next, next_action, goals[:, -1]], -1))
            soft_value = torch.min(q1_next, q2_next) - alpha * next_log_pi
            target_q = r_t + not_done * cfg.gamma * soft_value
        q1, q2 = self.critic(torch.cat([z_t, a_t, goals[:, -2]], -1))
        critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        self.critic_optim.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optim.step()

        # Actor: minimise E[alpha log pi(a | .) - min_i Q_i(z_t, a)], critics held fixed.
        action, log_pi = self.actor(actor_in)
        with frozen(self.critic):
            q1_pi, q2_pi = self.critic(torch.cat([z_t, action, goals[:, -2]], -1))
        actor_loss = (alpha * log_pi - torch.min(q1_pi, q2_pi)).mean()
        self.actor_optim.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optim.step()

        # Temperature: match the policy's entropy to the target -|A|.
        entropy = -log_pi.detach().mean()
        alpha_loss = self.log_alpha * (entropy - self.target_entropy)
        self.alpha_optim.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optim.step()

        soft_update(self.critic_target, self.critic, cfg.tau)
        self.sac_updates += 1
        return {
            "sac/critic_loss": critic_loss.item(),
            "sac/actor_loss": actor_loss.item(),
            "sac/alpha_loss": alpha_loss.item(),
            "sac/alpha": alpha.item(),
            "sac/entropy": entropy.item(),
            "sac/q": q1.detach().mean().item(),
            "sac/target_q": target_q.mean().item(),
        }

    # ----- acting -----
    @torch.no_grad()
    def act(self, frames: np.ndarray, actions: np.ndarray, goal: np.ndarray, explore: bool) -> np.ndarray:
        """The policy's action for one history.

        frames (L, H, W, 3) uint8, the last L frames, oldest first; actions (L-1, A), the
        actions between them; goal (G,). explore: sample (training) or tanh(mean) (evaluation).
        Returns a float32 action in [-1, 1]^A."""
        images = self._scale_images(torch.as_tensor(frames).to(self.device).permute(0, 3, 1, 2))
        with self._autocast():
            features = self.model.encoder(images).float()
        goal_t = torch.as_tensor(goal, dtype=torch.float32, device=self.device)[: self.goal_dim]
        actions_t = torch.as_tensor(actions, dtype=torch.float32, device=self.device)
        inputs = self.actor_inputs(features[None], actions_t[None], goal_t[None])
        action = self.actor(inputs)[0] if explore else self.actor.mean_action(inputs)
        return action[0].float().cpu().numpy()

    # ----- persistence -----
    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs from the agent: networks, optimisers, temperature."""
        return {
            "model": self.model.state_dict(),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().cpu(),
            "model_optim": self.model_optim.state_dict(),
            "actor_optim": self.actor_optim.state_dict(),
            "critic_optim": self.critic_optim.state_dict(),
            "alpha_optim": self.alpha_optim.state_dict(),
            "model_updates": self.model_updates,
            "sac_updates": self.sac_updates,
        }

    def policy_state_dict(self) -> dict[str, Any]:
        """What acting needs, on the CPU: the encoder and the actor (published to the actor process)."""
        def on_cpu(module: nn.Module) -> dict[str, torch.Tensor]:
            return {k: v.detach().cpu() for k, v in module.state_dict().items()}

        return {
            "encoder": on_cpu(self.model.encoder),
            "actor": on_cpu(self.actor),
            "model_updates": self.model_updates,
            "sac_updates": self.sac_updates,
        }

    def load_policy_state_dict(self, state: dict[str, Any]) -> None:
        """Takes up published policy weights (see policy_state_dict)."""
        self.model.encoder.load_state_dict(state["encoder"])
        self.actor.load_state_dict(state["actor"])
        self.model_updates = int(state["model_updates"])
        self.sac_updates = int(state["sac_updates"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("model", "actor", "critic", "critic_target"):
            getattr(self, name).load_state_dict(state[name])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        for name in ("model_optim", "actor_optim", "critic_optim", "alpha_optim"):
            getattr(self, name).load_state_dict(state[name])
        self.model_updates = int(state["model_updates"])
        self.sac_updates = int(state["sac_updates"])
