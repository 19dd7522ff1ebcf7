"""SLAC's sequential latent variable model (Lee et al., "Stochastic Latent Actor-Critic").

Two latent layers per step, z_t = (z1_t, z2_t), with z1 of 32 and z2 of 256 dimensions.

Generative model (prior):
  z1_1 ~ p(z1_1) = N(0, I)                      z2_1 ~ p(z2_1 | z1_1)
  z1_{t+1} ~ p(z1_{t+1} | z2_t, a_t)            z2_{t+1} ~ p(z2_{t+1} | z1_{t+1}, z2_t, a_t)
  x_t ~ p(x_t | z1_t, z2_t)                     r_t ~ p(r_t | z_t, a_t, z_{t+1})
Inference model (posterior), sharing the z2 conditionals with the prior:
  z1_1 ~ q(z1_1 | x_1)                          z2_1 ~ p(z2_1 | z1_1)
  z1_{t+1} ~ q(z1_{t+1} | x_{t+1}, z2_t, a_t)   z2_{t+1} ~ p(z2_{t+1} | z1_{t+1}, z2_t, a_t)
Because the z2 conditionals are shared, the ELBO's KL terms are those of z1 only, in closed form:
  ELBO = sum_t E_q[ log p(x_t | z_t) - KL(q(z1_t | .) || p(z1_t | .)) + log p(r_t | z_t, a_t, z_{t+1}) ]

Tensors: images (B, T+1, 3, 64, 64) float in [-0.5, 0.5]; actions (B, T, A); rewards (B, T).
Proprioception (optional): the joint angles the servos report, (B, T+1, P), go beside the image
features into the posterior q(z1 | x, ...), so the latent state need not find the joints in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from slac_robot.agent.networks import (
    Decoder,
    Encoder,
    Gaussian,
    gaussian_kl,
    gaussian_log_prob,
    gaussian_log_prob_sum,
    init_weights,
)
from slac_robot.agent.noise import standard_normal_like


@dataclass
class Posterior:
    """Posterior samples and the z1 distributions they were drawn from, for steps 1..T+1."""

    z1: torch.Tensor  # (B, T+1, z1_dim)
    z2: torch.Tensor  # (B, T+1, z2_dim)
    z1_mean: torch.Tensor
    z1_std: torch.Tensor

    @property
    def z(self) -> torch.Tensor:
        """The latent state z_t = (z1_t, z2_t): (B, T+1, z1_dim + z2_dim)."""
        return torch.cat([self.z1, self.z2], dim=-1)


@dataclass
class ModelLoss:
    """The negative ELBO and its terms, each averaged over the batch and summed over time."""

    loss: torch.Tensor
    kl: torch.Tensor
    image_nll: torch.Tensor
    reward_nll: torch.Tensor
    features: torch.Tensor  # the encoder's features of the images (B, T+1, F), for the SAC step
    posterior: Posterior


def _sample(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return mean + std * standard_normal_like(std)


class LatentModel(nn.Module):
    """Encoder, decoder, the latent prior and posterior, and the reward model.

    action_dim: |A|. z1_dim, z2_dim: latent sizes (paper: 32, 256). hidden: the Gaussian heads'
    MLP widths (paper: 256, 256). width: channel multiplier of the image networks (paper: 1).
    image_std: the decoder's fixed standard deviation, in the [-0.5, 0.5] pixel scale.
    proprio_dim: size of the proprioceptive vector beside the image features (0: none)."""

    def __init__(
        self,
        action_dim: int,
        z1_dim: int = 32,
        z2_dim: int = 256,
        hidden: tuple[int, ...] = (256, 256),
        width: float = 1.0,
        image_std: float = 0.1**0.5,
        proprio_dim: int = 0,
    ):
        super().__init__()
        self.z1_dim, self.z2_dim, self.image_std = z1_dim, z2_dim, float(image_std)
        self.encoder = Encoder(width)
        feature_dim = self.encoder.feature_dim + proprio_dim
        self.proprio_dim = proprio_dim
        self.decoder = Decoder(z1_dim + z2_dim, width)
        # p(z2_1 | z1_1) and p(z2_{t+1} | z1_{t+1}, z2_t, a_t): shared by prior and posterior.
        self.z2_init = Gaussian(z1_dim, z2_dim, hidden)
        self.z2_step = Gaussian(z1_dim + z2_dim + action_dim, z2_dim, hidden)
        # p(z1_{t+1} | z2_t, a_t)
        self.z1_prior_step = Gaussian(z2_dim + action_dim, z1_dim, hidden)
        # q(z1_1 | x_1) and q(z1_{t+1} | x_{t+1}, z2_t, a_t)
        self.z1_posterior_init = Gaussian(feature_dim, z1_dim, hidden)
        self.z1_posterior_step = Gaussian(feature_dim + z2_dim + action_dim, z1_dim, hidden)
        # p(r_t | z_t, a_t, z_{t+1})
        self.reward = Gaussian(2 * (z1_dim + z2_dim) + action_dim, 1, hidden)
        self.apply(init_weights)

    @property
    def latent_dim(self) -> int:
        return self.z1_dim + self.z2_dim

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, T+1, 3, H, W) -> features (B, T+1, feature_dim)."""
        batch, steps = images.shape[:2]
        return self.encoder(images.flatten(0, 1)).view(batch, steps, -1)

    def posterior(self, features: torch.Tensor, actions: torch.Tensor, proprio: torch.Tensor | None = None) -> Posterior:
        """Filters z_{1:T+1} ~ q(. | x_{1:T+1}, a_{1:T}); step t sees only x_{1:t} and a_{1:t-1}.

        features: the encoder's (B, T+1, F); proprio: (B, T+1, P) when proprio_dim > 0."""
        if self.proprio_dim:
            features = torch.cat([features, proprio], dim=-1)
        z1_mean, z1_std = self.z1_posterior_init(features[:, 0])
        z1 = _sample(z1_mean, z1_std)
        z2 = _sample(*self.z2_init(z1))
        z1s, z2s, means, stds = [z1], [z2], [z1_mean], [z1_std]
        for t in range(actions.shape[1]):
            z1_mean, z1_std = self.z1_posterior_step(features[:, t + 1], z2, actions[:, t])
            z1_next = _sample(z1_mean, z1_std)
            z2 = _sample(*self.z2_step(z1_next, z2, actions[:, t]))
            z1 = z1_next
            z1s.append(z1), z2s.append(z2), means.append(z1_mean), stds.append(z1_std)
        stack = lambda xs: torch.stack(xs, dim=1)  # noqa: E731
        return Posterior(stack(z1s), stack(z2s), stack(means), stack(stds))

    def z1_prior(self, z2: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z1_1) = N(0, I) and p(z1_{t+1} | z2_t, a_t) given posterior samples z2: (B, T+1, z1_dim)."""
        mean_next, std_next = self.z1_prior_step(z2[:, :-1], actions)
        mean_first = torch.zeros_like(mean_next[:, :1])
        std_first = torch.ones_like(std_next[:, :1])
        return torch.cat([mean_first, mean_next], dim=1), torch.cat([std_first, std_next], dim=1)

    def loss(
        self,
        images: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        valid: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> ModelLoss:
        """The negative ELBO of a batch of sequences.

        valid: optional (B, T+1) bool mask; steps padded before an episode's first frame
        (False) add no image or KL term, and transitions into them no reward term.
        proprio: (B, T+1, P) joint angles when the model takes them."""
        features = self.encode(images)
        post = self.posterior(features, actions, proprio)
        prior_mean, prior_std = self.z1_prior(post.z2, actions)
        kl = gaussian_kl(post.z1_mean, post.z1_std, prior_mean, prior_std).sum(-1)  # (B, T+1)

        z = post.z
        mean_images = self.decoder(z.flatten(0, 1)).view_as(images)
        image_ll = gaussian_log_prob_sum(images, mean_images, self.image_std, (2, 3, 4))  # (B, T+1)

        reward_mean, reward_std = self.reward(z[:, :-1], actions, z[:, 1:])
        reward_ll = gaussian_log_prob(rewards, reward_mean.squeeze(-1), reward_std.squeeze(-1))

        if valid is not None:
            step_mask = valid.to(kl.dtype)
            kl, image_ll = kl * step_mask, image_ll * step_mask
            reward_ll = reward_ll * step_mask[:, :-1]
        kl_term = kl.sum(1).mean()
        image_nll = -image_ll.sum(1).mean()
        reward_nll = -reward_ll.sum(1).mean()
        return ModelLoss(kl_term + image_nll + reward_nll, kl_term, image_nll, reward_nll, features, post)

    @torch.no_grad()
    def reconstruct_and_predict(
        self, images: torch.Tensor, actions: torch.Tensor, proprio: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded posterior samples, and open-loop prior predictions from the first frame.

        The paper's figure of image sequences: row 1 ground truth, row 2 the posterior's
        reconstructions (x_{1:T+1} seen), row 3 the prior's predictions (only x_1 seen, then the
        actions). Returns two tensors shaped like images."""
        post = self.posterior(self.encode(images), actions, proprio)
        reconstruction = self.decoder(post.z.flatten(0, 1)).view_as(images)
        z1, z2 = post.z1[:, 0], post.z2[:, 0]
        zs = [torch.cat([z1, z2], dim=-1)]
        for t in range(actions.shape[1]):
            z1 = _sample(*self.z1_prior_step(z2, actions[:, t]))
            z2 = _sample(*self.z2_step(z1, z2, actions[:, t]))
            zs.append(torch.cat([z1, z2], dim=-1))
        prediction = self.decoder(torch.stack(zs, dim=1).flatten(0, 1)).view_as(images)
        return reconstruction, prediction
