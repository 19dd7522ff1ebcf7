"""The building blocks of SLAC's networks: image encoder and decoder, Gaussian heads, MLPs.

Architecture as in the SLAC paper's code (Lee et al.), for 64x64 RGB images:
  encoder: five convolutions, 64x64x3 -> 256 features;
  decoder: five transposed convolutions mirroring it, 288-d latent -> 64x64x3 mean image;
  Gaussian heads: MLP (256, 256) with leaky ReLU -> mean and softplus standard deviation.
`width` scales every convolution's channel count (1.0 is the paper's); small widths let the
tests and the CI learning run train quickly on a CPU.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

LEAKY_SLOPE = 0.2  # leaky ReLU slope of the latent model and the image networks (paper's code)
MIN_STD = 1e-5  # floor of learned standard deviations, so that log-likelihoods stay finite


def init_weights(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases on every linear and (transposed) convolution."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.xavier_uniform_(module.weight, gain=1.0)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def mlp(in_dim: int, out_dim: int, hidden: tuple[int, ...], activation: type[nn.Module]) -> nn.Sequential:
    """A multilayer perceptron: Linear -> activation, repeated, then a final Linear."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), activation()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class LeakyReLU(nn.LeakyReLU):
    def __init__(self):
        super().__init__(LEAKY_SLOPE)


def _channels(width: float) -> tuple[int, int, int, int, int]:
    return tuple(max(4, int(round(c * width))) for c in (32, 64, 128, 256, 256))  # type: ignore[return-value]


class Encoder(nn.Module):
    """x (N, C, 64, 64) float in [-0.5, 0.5] -> features (N, feature_dim); C = 3 for one RGB
    image, 3k for k stacked frames (SAC from pixels)."""

    def __init__(self, width: float = 1.0, in_channels: int = 3):
        super().__init__()
        c1, c2, c3, c4, c5 = _channels(width)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, 2, 2), LeakyReLU(),  # 32x32
            nn.Conv2d(c1, c2, 3, 2, 1), LeakyReLU(),  # 16x16
            nn.Conv2d(c2, c3, 3, 2, 1), LeakyReLU(),  # 8x8
            nn.Conv2d(c3, c4, 3, 2, 1), LeakyReLU(),  # 4x4
            nn.Conv2d(c4, c5, 4), LeakyReLU(),  # 1x1
        )
        self.feature_dim = c5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class Decoder(nn.Module):
    """z (N, latent_dim) -> mean image (N, 3, 64, 64); the likelihood's std is fixed (std_px)."""

    def __init__(self, latent_dim: int, width: float = 1.0):
        super().__init__()
        c1, c2, c3, c4, _ = _channels(width)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, c4, 4), LeakyReLU(),  # 4x4
            nn.ConvTranspose2d(c4, c3, 3, 2, 1, 1), LeakyReLU(),  # 8x8
            nn.ConvTranspose2d(c3, c2, 3, 2, 1, 1), LeakyReLU(),  # 16x16
            nn.ConvTranspose2d(c2, c1, 3, 2, 1, 1), LeakyReLU(),  # 32x32
            nn.ConvTranspose2d(c1, 3, 5, 2, 2, 1),  # 64x64
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class Gaussian(nn.Module):
    """A diagonal Gaussian whose mean and std are an MLP of the concatenated inputs."""

    def __init__(self, in_dim: int, out_dim: int, hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        self.net = mlp(in_dim, 2 * out_dim, hidden, LeakyReLU)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, pre_std = self.net(torch.cat(inputs, dim=-1)).chunk(2, dim=-1)
        return mean, F.softplus(pre_std) + MIN_STD


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor | float) -> torch.Tensor:
    """Elementwise log N(x; mean, std^2)."""
    if isinstance(std, float):
        log_std = math.log(std)
    else:
        log_std = std.log()
    return -0.5 * ((x - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)


def gaussian_log_prob_sum(x: torch.Tensor, mean: torch.Tensor, std: float, dims: tuple[int, ...]) -> torch.Tensor:
    """log N(x; mean, std^2 I) over `dims` for one fixed std: gaussian_log_prob(x, mean, std).sum(dims),
    as a sum of squared errors and a constant. The image term of the ELBO: one squared error and one
    sum over the pixels instead of seven elementwise passes (~1/4 of the time on a CPU, backward pass
    included)."""
    count = math.prod(x.shape[d] for d in dims)
    constant = count * (math.log(std) + 0.5 * math.log(2 * math.pi))
    return (x - mean).square().sum(dims) * (-0.5 / std**2) - constant


def gaussian_kl(
    mean_q: torch.Tensor, std_q: torch.Tensor, mean_p: torch.Tensor, std_p: torch.Tensor
) -> torch.Tensor:
    """Analytic KL(N(mean_q, std_q^2) || N(mean_p, std_p^2)), elementwise."""
    var_ratio = (std_q / std_p) ** 2
    return 0.5 * (var_ratio + ((mean_q - mean_p) / std_p) ** 2 - 1.0 - var_ratio.log())
