"""The SLAC agent: the latent model, SAC in its latent space, and their update steps.

One training step of the paper (Algorithm 1), after the replay has some episodes:
  update_model(batch of 32 sequences):  minimise the negative ELBO (latent_model.LatentModel.loss)
  update_sac(batch of 256 sequences):    critic, actor and temperature steps on posterior latents
The SAC step never moves the latent model: it reads the encoder features and posterior samples
without gradients, as in the paper. With `shared_batch` both steps read one batch, and the SAC
step reuses the features and posterior samples of the model step's forward pass (detached):
one encoder pass and one filtering pass per step instead of two. With `concurrent_updates` the
two steps of separate batches run at once on two threads (the CPU configuration's speed-up on a
machine of 2+ cores): the SAC step then reads the model as it was before this step's update.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from slac_robot.agent.base import Batch, scale_images, to_batch
from slac_robot.agent.history import PolicyHistory
from slac_robot.agent.latent_model import LatentModel, ModelLoss
from slac_robot.agent.noise import drawing_from
from slac_robot.agent.sac import SoftActorCritic, TanhGaussianActor, TwinCritic

PROPRIO_KEY = "joint_pos"  # the proprioceptive observation: joint angles the servos report


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
    proprio_to_model: bool = False
    proprio_to_actor: bool = False
    shared_batch: bool = False
    channels_last: bool = True
    autocast_bf16: bool = False
    sac_features_bf16: bool = False
    fused_adam: bool = True
    concurrent_updates: bool = False


class SlacAgent(SoftActorCritic):
    """Networks, optimisers and temperature of one SLAC agent (an agent.base.Agent).

    action_dim: |A|; vector_dims: the task's vector observations, name -> size: "goal" is read
    when cfg.goal_conditioned, "joint_pos" when cfg.proprio_to_model or cfg.proprio_to_actor;
    device: where the networks live ("cpu", "cuda")."""

    uses_images = True
    has_latent_model = True

    def __init__(self, action_dim: int, vector_dims: Mapping[str, int], cfg: SlacConfig,
                 device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        self.action_dim = action_dim
        self.goal_keys = ("goal",) if cfg.goal_conditioned and "goal" in vector_dims else ()
        self.goal_dim = sum(vector_dims[k] for k in self.goal_keys)
        wants_proprio = cfg.proprio_to_model or cfg.proprio_to_actor
        if wants_proprio and PROPRIO_KEY not in vector_dims:
            raise KeyError(f"proprioception needs a {PROPRIO_KEY!r} observation; this task has {sorted(vector_dims)}")
        proprio_dim = vector_dims[PROPRIO_KEY] if wants_proprio else 0
        self.observation_keys = self.goal_keys + ((PROPRIO_KEY,) if wants_proprio else ())
        self.vector_dims = {k: int(vector_dims[k]) for k in self.observation_keys}
        self.sequence_length = self.history_length = L = cfg.sequence_length
        self.model = LatentModel(action_dim, cfg.z1_dim, cfg.z2_dim, cfg.hidden, cfg.width, cfg.image_std,
                                 proprio_dim if cfg.proprio_to_model else 0)
        self.actor_proprio_dim = proprio_dim if cfg.proprio_to_actor else 0
        feature_dim = self.model.encoder.feature_dim
        actor_in = L * (feature_dim + self.actor_proprio_dim) + (L - 1) * action_dim + self.goal_dim
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
        # The SAC thread's own noise (see agent.noise), seeded from the global generator.
        self.sac_generator: torch.Generator | None = None
        if cfg.concurrent_updates:
            self.sac_generator = torch.Generator(device=self.device)
            self.sac_generator.manual_seed(int(torch.randint(2**62, (1,)).item()))
        self._sac_thread: ThreadPoolExecutor | None = None

    # ----- data -----
    def to_batch(self, sample: dict[str, np.ndarray]) -> Batch:
        """Moves a replay sample (uint8 images (B, T+1, H, W, 3), ...) to the device."""
        return to_batch(sample, self.observation_keys, self.device, channels_last=self.cfg.channels_last)

    def proprio(self, batch: Batch) -> torch.Tensor | None:
        """The batch's joint angles (B, T+1, 9) when the model or the actor takes them, else None."""
        return batch.vectors.get(PROPRIO_KEY)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.autocast_bf16)

    # ----- the latent model step -----
    def update_model(self, batch: Batch) -> dict[str, float]:
        """One gradient step on the negative ELBO; returns its terms."""
        return self._update_model(batch)[0]

    def _update_model(self, batch: Batch) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
        """update_model, also returning the forward pass's encoder features and posterior z
        (detached, as the model was before this step) for a SAC step on the same batch."""
        terms = self._model_gradients(batch)
        return self._model_step(terms), terms.features.detach().float(), terms.posterior.z.detach().float()

    def _model_gradients(self, batch: Batch) -> ModelLoss:
        """The negative ELBO's forward and backward passes: the gradients, not yet applied."""
        with self._autocast():
            terms = self.model.loss(batch.images, batch.actions, batch.rewards, batch.valid, self.proprio(batch))
        self.model_optim.zero_grad(set_to_none=True)
        terms.loss.backward()
        return terms

    def _model_step(self, terms: ModelLoss) -> dict[str, float]:
        """Applies the gradients of _model_gradients (one Adam step); returns the loss's terms."""
        # Watched, not clipped: a three-goal run that had learnt collapsed within 100 updates
        # when the model's loss jumped (docs/results/comparison/README.md); this, and its peak
        # between TensorBoard writes (runtime/train.UpdateScalars), says whether a spike came first.
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self.model.parameters() if p.grad is not None])
        self.model_optim.step()
        self.model_updates += 1
        return {
            "model/grad_norm": grad_norm.item(),
            "model/loss": terms.loss.item(),
            "model/kl": terms.kl.item(),
            "model/image_nll": terms.image_nll.item(),
            "model/reward_nll": terms.reward_nll.item(),
        }

    def pretrain_step(self, replay, rng: np.random.Generator, model_batch_size: int) -> dict[str, float]:
        """One model-only update on a fresh replay sample (the paper's pre-training)."""
        return self.update_model(self.to_batch(replay.sample(model_batch_size, rng)))

    def train_step(self, replay, rng: np.random.Generator, model_batch_size: int,
                   sac_batch_size: int) -> dict[str, float]:
        """One latent-model update and one SAC update (the inner step of the paper's Algorithm 1).

        Each reads a fresh replay sample; with cfg.shared_batch one sample of model_batch_size
        serves both, and the SAC step takes the model step's features and latents; with
        cfg.concurrent_updates the two steps run at once (_train_step_concurrently)."""
        if self.cfg.shared_batch:
            batch = self.to_batch(replay.sample(model_batch_size, rng))
            metrics, features, z = self._update_model(batch)
            metrics.update(self._update_sac(batch, features, z))
            return metrics
        model_batch = self.to_batch(replay.sample(model_batch_size, rng))
        sac_batch = self.to_batch(replay.sample(sac_batch_size, rng))
        if self.cfg.concurrent_updates:
            return self._train_step_concurrently(model_batch, sac_batch)
        metrics = self.update_model(model_batch)
        metrics.update(self.update_sac(sac_batch))
        return metrics

    def _train_step_concurrently(self, model_batch: Batch, sac_batch: Batch) -> dict[str, float]:
        """The model step on this thread and the SAC step on a second one, each with half of
        torch's CPU threads (at least one): on 2 cores 1.11x the updates/s of the two in turn.

        The SAC step only reads the model (its encoder and filter, without gradients), so the
        model's Adam step waits until that read is done: SAC sees the model as it was before
        this step, where the sequential step shows it the model just updated. The SAC thread
        draws its noise from self.sac_generator, so the result does not depend on timing."""
        if self._sac_thread is None:
            self._sac_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slac-sac-update")
        threads_each = max(1, torch.get_num_threads() // 2)
        model_read = threading.Event()

        def sac_step() -> dict[str, float]:
            torch.set_num_threads(threads_each)
            with drawing_from(self.sac_generator):
                try:
                    features, z = self._features_and_latents(sac_batch)
                finally:
                    model_read.set()
                return self._update_sac(sac_batch, features, z)

        threads_before = torch.get_num_threads()
        sac = self._sac_thread.submit(sac_step)
        try:
            torch.set_num_threads(threads_each)
            terms = self._model_gradients(model_batch)
            model_read.wait()
            metrics = self._model_step(terms)
        except BaseException:
            sac.exception()  # the SAC thread must be done with the networks before the error goes up
            raise
        finally:
            torch.set_num_threads(threads_before)
        metrics.update(sac.result())
        return metrics

    # ----- the SAC step -----
    def actor_inputs(self, features: torch.Tensor, actions: torch.Tensor, goal: torch.Tensor,
                     proprio: torch.Tensor | None = None) -> torch.Tensor:
        """features (N, L, F), actions (N, L-1, A), goal (N, G), proprio (N, L, P) when the actor
        takes the joint angles -> the actor's input (N, in_dim)."""
        if self.actor_proprio_dim:
            features = torch.cat([features, proprio], dim=-1)
        return torch.cat([features.flatten(1), actions.flatten(1), goal], dim=-1)

    @torch.no_grad()
    def _features_and_latents(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder features (B, T+1, F) and posterior samples z (B, T+1, z1 + z2), no gradients.

        With cfg.sac_features_bf16 the encoder's convolutions run in bf16 (features rounded to
        8 bits of mantissa, ~0.4%); the filtering pass and everything after stay float32."""
        with self._autocast():
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.sac_features_bf16):
                features = self.model.encode(batch.images).float()
            z = self.model.posterior(features, batch.actions, self.proprio(batch)).z
        return features, z.float()

    def update_sac(self, batch: Batch) -> dict[str, float]:
        """Critic, actor and temperature steps on the last transition (t = T) of each sequence."""
        return self._update_sac(batch, *self._features_and_latents(batch))

    def _update_sac(self, batch: Batch, features: torch.Tensor, z: torch.Tensor) -> dict[str, float]:
        goals = batch.vector(self.goal_keys)
        proprio = self.proprio(batch)
        before, after = (proprio[:, :-1], proprio[:, 1:]) if proprio is not None else (None, None)
        # pi(. | x_{1:T}, a_{1:T-1}) at t = T and pi(. | x_{2:T+1}, a_{2:T}) at t = T+1.
        actor_in = self.actor_inputs(features[:, :-1], batch.actions[:, :-1], goals[:, -2], before)
        next_actor_in = self.actor_inputs(features[:, 1:], batch.actions[:, 1:], goals[:, -1], after)
        z_t, z_next = z[:, -2], z[:, -1]
        # The critics see (z_t, a_t, goal); the actor the features of x_{1:T} and a_{1:T-1}.
        return self.sac_step(
            critic_in=lambda a: torch.cat([z_t, a, goals[:, -2]], -1),
            policy_critic_in=lambda a: torch.cat([z_t, a, goals[:, -2]], -1),
            next_critic_in=lambda a: torch.cat([z_next, a, goals[:, -1]], -1),
            actor_in=actor_in, next_actor_in=next_actor_in,
            action=batch.actions[:, -1], reward=batch.rewards[:, -1:], not_done=1.0 - batch.terminated[:, -1:],
        )

    # ----- acting -----
    @torch.no_grad()
    def act(self, history: PolicyHistory, explore: bool) -> np.ndarray:
        """The policy's action for one history: its L frames (oldest first), the L-1 actions
        between them, the newest goal (and the L joint readings when the actor takes them).
        explore: sample (training) or tanh(mean) (evaluation). Returns float32 in [-1, 1]^A."""
        images = scale_images(torch.as_tensor(history.frames).to(self.device).permute(0, 3, 1, 2),
                              self.cfg.channels_last)
        with self._autocast():
            features = self.model.encoder(images).float()
        as_tensor = lambda x: torch.as_tensor(x, dtype=torch.float32, device=self.device)[None]  # noqa: E731
        goal = as_tensor(history.vector(self.goal_keys)[-1])
        proprio = as_tensor(history.vectors[PROPRIO_KEY]) if self.actor_proprio_dim else None
        inputs = self.actor_inputs(features[None], as_tensor(history.actions), goal, proprio)
        action = self.actor(inputs)[0] if explore else self.actor.mean_action(inputs)
        return action[0].float().cpu().numpy()

    @torch.no_grad()
    def probe_features(self, batch: Batch) -> torch.Tensor:
        """The posterior's mean of z1 and sample of z2 at each window's newest observation: (B, z1 + z2)."""
        with self._autocast():
            post = self.model.posterior(self.model.encode(batch.images), batch.actions, self.proprio(batch))
        return torch.cat([post.z1_mean[:, -1], post.z2[:, -1]], dim=-1).float()

    # ----- persistence -----
    owned_modules = ("model", "actor", "critic", "critic_target")
    owned_optimisers = ("model_optim", "actor_optim", "critic_optim", "alpha_optim")

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

    @staticmethod
    def policy_from_state_dict(state: dict[str, Any]) -> dict[str, Any]:
        """The policy part (as policy_state_dict) of a full state_dict, e.g. a checkpoint's."""
        prefix = "encoder."
        return {
            "encoder": {k[len(prefix):]: v for k, v in state["model"].items() if k.startswith(prefix)},
            "actor": state["actor"],
            "model_updates": state["model_updates"],
            "sac_updates": state["sac_updates"],
        }

    def state_dict(self) -> dict[str, Any]:
        """SoftActorCritic.state_dict, with the SAC thread's generator when updates run concurrently."""
        state = super().state_dict()
        if self.sac_generator is not None:
            state["sac_generator"] = self.sac_generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self.sac_generator is not None and "sac_generator" in state:
            self.sac_generator.set_state(state["sac_generator"])

    def load_policy_state_dict(self, state: dict[str, Any]) -> None:
        """Takes up published policy weights (see policy_state_dict)."""
        self.model.encoder.load_state_dict(state["encoder"])
        self.actor.load_state_dict(state["actor"])
        self.model_updates = int(state["model_updates"])
        self.sac_updates = int(state["sac_updates"])
