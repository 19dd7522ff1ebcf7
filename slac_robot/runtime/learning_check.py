"""A quick check that SLAC learns: PointReach from 64x64 pixels with small networks and batches.

Used by the CI learning test (tests/test_learning.py) and by bench/learning_point_reach.py,
which runs it longer and plots the curve. With these settings SLAC reaches the goal in every
evaluation episode from about 900 environment steps on, about two minutes on a 2-core CPU.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import torch

from slac_robot.agent.slac import SlacAgent, SlacConfig
from slac_robot.agent.replay import SequenceReplay
from slac_robot.runtime.train import EvalResult, Schedule, Trainer
from slac_robot.tasks.point_reach import PointReachEnv, reference_scores

# A larger dot than the default (8 px, not 5): the latent model must place it before the critic
# can tell good states from bad, and a larger dot is learnt in fewer model updates.
ENV_KWARGS = dict(dot_radius_px=8.0)
AGENT = SlacConfig(
    sequence_length=4, z1_dim=16, z2_dim=32, hidden=(64, 64), width=0.25,
    model_lr=1e-3, actor_lr=1e-3, critic_lr=1e-3, alpha_lr=1e-3, initial_alpha=0.1,
    channels_last=False,  # at these small widths plain NCHW is the faster CPU path
)
SCHEDULE = Schedule(
    total_env_steps=1400, initial_collection_steps=300, initial_model_updates=500, updates_per_step=1,
    model_batch_size=16, sac_batch_size=32, eval_every_episodes=0, eval_episodes=20,
    checkpoint_every_episodes=0, keep_checkpoints=1, log_every_steps=100,
)


def train_point_reach(out_dir: pathlib.Path, seed: int = 0, show_progress: bool = False,
                      **schedule_changes: int) -> tuple[Trainer, EvalResult]:
    """Trains SLAC on PointReach into out_dir, then evaluates it (SCHEDULE.eval_episodes).

    schedule_changes: Schedule fields to change, e.g. total_env_steps=3000.
    Returns the trainer (agent, counters) and the final evaluation."""
    torch.manual_seed(seed)
    schedule = dataclasses.replace(SCHEDULE, **schedule_changes)
    env, eval_env = PointReachEnv(**ENV_KWARGS), PointReachEnv(**ENV_KWARGS)
    agent = SlacAgent(action_dim=2, vector_dims={"goal": 2}, cfg=AGENT)
    replay = SequenceReplay(pathlib.Path(out_dir) / "replay", action_dim=2, capacity_steps=10_000,
                            sequence_length=AGENT.sequence_length, extras={"goal": 2},
                            expected_episode_steps=env.episode_steps)
    trainer = Trainer(env, eval_env, agent, replay, schedule, out_dir, seed=seed, show_progress=show_progress)
    trainer.train()
    last = trainer.last_eval
    if last is not None and last.env_steps == trainer.progress.env_steps:
        return trainer, last
    return trainer, trainer.evaluate()


def random_policy_scores(episodes: int, seed: int = 0) -> tuple[float, float]:
    """Mean return and success rate of uniform random actions on the evaluation seeds
    0..episodes-1 (the seeds Trainer.evaluate uses)."""
    rng = np.random.default_rng(seed)
    random_action = lambda env: rng.uniform(-1, 1, 2).astype(np.float32)  # noqa: E731
    return reference_scores(PointReachEnv(**ENV_KWARGS), random_action, episodes)
