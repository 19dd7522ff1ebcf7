"""SAC in SLAC's latent space: a tanh-Gaussian actor on image features, twin critics on latents.

The critic Q(z_t, a_t) sees the latent model's posterior sample z_t = (z1_t, z2_t); the actor
pi(a_t | x_{t-L+1:t}, a_{t-L+1:t-1}) sees the encoder features of the last L frames and the L-1
actions between them (L = the sequence length, 8), so that it can act without running the
latent model. Both may also see the task's goal vector (goal conditioning).
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from slac_robot.agent.networks import init_weights, mlp
from slac_robot.agent.noise import standard_normal_like

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # keeps the actor's std in a numerically safe range


class TanhGaussianActor(nn.Module):
    """inputs (N, in_dim) -> a = tanh(u), u ~ N(mean, std), and log pi(a)."""

    def __init__(self, in_dim: int, action_dim: int, hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        self.net = mlp(in_dim, 2 * action_dim, hidden, nn.ReLU)
        self.apply(init_weights)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples an action with the reparameterisation trick: (action, log_prob (N, 1))."""
        mean, log_std = self.net(inputs).chunk(2, dim=-1)
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        noise = standard_normal_like(mean)
        u = mean + log_std.exp() * noise
        # log N(u) - sum log(1 - tanh(u)^2), the latter in its overflow-free form.
        log_prob = (-0.5 * noise**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1, keepdim=True)
        log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1, keepdim=True)
        return torch.tanh(u), log_prob

    def mean_action(self, inputs: torch.Tensor) -> torch.Tensor:
        """The deterministic action tanh(mean), for evaluation."""
        mean, _ = self.net(inputs).chunk(2, dim=-1)
        return torch.tanh(mean)


class TwinCritic(nn.Module):
    """Two independent Q networks (clipped double Q): inputs (N, in_dim) -> (q1, q2), each (N, 1)."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        self.q1 = mlp(in_dim, 1, hidden, nn.ReLU)
        self.q2 = mlp(in_dim, 1, hidden, nn.ReLU)
        self.apply(init_weights)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q1(inputs), self.q2(inputs)


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


class SoftActorCritic:
    """The SAC step, shared by SLAC (on latents) and the baselines (on the state or an encoder).

    Expects the attributes actor (TanhGaussianActor), critic and critic_target (TwinCritic),
    log_alpha, actor_optim, critic_optim, alpha_optim, target_entropy, sac_updates and
    cfg.gamma, cfg.tau."""

    # Modules and optimisers named as in every agent's state_dict (what a checkpoint holds).
    owned_modules: tuple[str, ...] = ("actor", "critic", "critic_target")
    owned_optimisers: tuple[str, ...] = ("actor_optim", "critic_optim", "alpha_optim")

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    def state_dict(self) -> dict:
        """Everything an exact resume needs: networks, optimisers, temperature, update counters."""
        return {
            **{name: getattr(self, name).state_dict() for name in (*self.owned_modules, *self.owned_optimisers)},
            "log_alpha": self.log_alpha.detach().cpu(),
            "model_updates": self.model_updates,
            "sac_updates": self.sac_updates,
        }

    def load_state_dict(self, state: dict) -> None:
        for name in (*self.owned_modules, *self.owned_optimisers):
            getattr(self, name).load_state_dict(state[name])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.model_updates = int(state["model_updates"])
        self.sac_updates = int(state["sac_updates"])

    @torch.no_grad()
    def td_target(self, next_critic_input: torch.Tensor, next_log_pi: torch.Tensor, reward: torch.Tensor,
                  not_done: torch.Tensor) -> torch.Tensor:
        """y = r_t + gamma (1 - done) [min_i Q'_i(s_{t+1}, a') - alpha log pi(a' | .)], all (N, 1);
        next_critic_input: the target critics' input at t+1 with a' ~ pi, whose log-prob is next_log_pi."""
        q1_next, q2_next = self.critic_target(next_critic_input)
        soft_value = torch.min(q1_next, q2_next) - self.alpha * next_log_pi
        return reward + not_done * self.cfg.gamma * soft_value

    def sac_step(
        self,
        critic_in: Callable[[torch.Tensor], torch.Tensor],
        policy_critic_in: Callable[[torch.Tensor], torch.Tensor],
        next_critic_in: Callable[[torch.Tensor], torch.Tensor],
        actor_in: torch.Tensor,
        next_actor_in: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        not_done: torch.Tensor,
    ) -> dict[str, float]:
        """Critic, actor and temperature steps on transitions (s_t, a_t, r_t, s_{t+1}), then the
        critics' soft target update.

        critic_in(a): the critics' input at t with action a, for the critic step (gradients may
        reach what made it: an encoder the critic optimiser trains); policy_critic_in(a): the same
        for the actor step (nothing upstream learns from it); next_critic_in(a'): the target
        critics' input at t+1. actor_in, next_actor_in: the policy's inputs at t and t+1.
        action (N, A), reward (N, 1), not_done (N, 1). Returns the losses and values."""
        alpha = self.alpha
        with torch.no_grad():
            next_action, next_log_pi = self.actor(next_actor_in)
            target_q = self.td_target(next_critic_in(next_action), next_log_pi, reward, not_done)
        q1, q2 = self.critic(critic_in(action))
        critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        self.critic_optim.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optim.step()

        # Actor: minimise E[alpha log pi(a | .) - min_i Q_i(s_t, a)], critics held fixed.
        new_action, log_pi = self.actor(actor_in)
        with frozen(self.critic):
            q1_pi, q2_pi = self.critic(policy_critic_in(new_action))
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

        soft_update(self.critic_target, self.critic, self.cfg.tau)
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


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging: target <- (1 - tau) target + tau source."""
    target_params = list(target.parameters())
    torch._foreach_lerp_(target_params, list(source.parameters()), tau)
