"""SAC in SLAC's latent space: a tanh-Gaussian actor on image features, twin critics on latents.

The critic Q(z_t, a_t) sees the latent model's posterior sample z_t = (z1_t, z2_t); the actor
pi(a_t | x_{t-L+1:t}, a_{t-L+1:t-1}) sees the encoder features of the last L frames and the L-1
actions between them (L = the sequence length, 8), so that it can act without running the
latent model. Both may also see the task's goal vector (goal conditioning).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from slac_robot.agent.networks import init_weights, mlp

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
        noise = torch.randn_like(mean)
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


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging: target <- (1 - tau) target + tau source."""
    target_params = list(target.parameters())
    torch._foreach_lerp_(target_params, list(source.parameters()), tau)
