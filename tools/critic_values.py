"""The critic's values along a SLAC run's own training episodes, grouped by how they ended: does
the critic value a wrong place to leave the valve as it values the goal?

    python tools/critic_values.py runs/train/<run> [--from-steps 95000] [--valve-rad 0.0]
                                  [--tolerance-rad 0.03] [--episodes 12]

Loads the run's newest sound checkpoint and, from its training episodes recorded at or after
--from-steps (train_episodes.csv's rows; the k-th row is replay's k-th episode file), takes up to
--episodes of each group:
  succeeded       the episode succeeded;
  ended at VALVE  it failed with the valve within --tolerance-rad of --valve-rad at its end;
  other failures  the rest.
For each group it prints the minimum of the twin critics' Q(z_t, a_t, goal), at the actions the
episode took and the posterior's z_t, averaged over the first and the last 5 steps, and the mean
reward over those last steps. SLAC runs only (the baselines' critics see no latent state).
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import sys
from dataclasses import dataclass

import numpy as np
import torch

from slac_robot.agent.replay import episode_files_of_rows, read_episode
from slac_robot.backends import vector_dims
from slac_robot.tasks.valve_turn import wrap_to_pi
from trained_run import opened_run

EDGE_STEPS = 5  # the steps averaged at an episode's start and end


@dataclass(frozen=True)
class GroupValues:
    """One group's episodes and the means over them (NaN when the group is empty)."""

    episodes: int
    q_first: float
    q_last: float
    reward_last: float


def critic_along(agent, episode) -> np.ndarray:
    """min(Q1, Q2)(z_t, a_t, goal_t) at each of the episode's steps t, as a (T,) array."""
    sample = {"images": episode.images[None], "actions": episode.actions[None],
              "rewards": episode.rewards[None], "terminated": np.array([[episode.terminated]])}
    sample.update({key: value[None] for key, value in episode.extras.items()})
    batch = agent.to_batch(sample)
    with torch.no_grad():
        z = agent.model.posterior(agent.model.encode(batch.images), batch.actions, agent.proprio(batch)).z[0, :-1]
        goal = batch.vector(agent.goal_keys)[0, :-1]
        q1, q2 = agent.critic(torch.cat([z.float(), batch.actions[0], goal], -1))
    return torch.min(q1, q2)[:, 0].numpy()


def critic_values(run_dir: pathlib.Path, from_steps: int, valve_rad: float, tolerance_rad: float,
                  episodes: int) -> dict[str, GroupValues]:
    """The three groups' values, keyed "succeeded", "ended at <valve_rad>", "other failures".
    Raises SystemExit with one line for a run that is not a one-actor SLAC run."""
    with opened_run(run_dir, latent_model=True) as (_, env, agent):
        image_shape, action_dim = env.observation_space["image"].shape, env.action_space.shape[0]
        extras = vector_dims(env.observation_space)
    with open(run_dir / "train_episodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "robot" in rows[0]:
        raise SystemExit(f"{run_dir}/train_episodes.csv: a Ray session's rows per robot; their episode files "
                         "are not numbered by row")
    ended_at = f"ended at {valve_rad:+.2f}"
    chosen: dict[str, list] = {"succeeded": [], ended_at: [], "other failures": []}
    files = episode_files_of_rows(run_dir / "replay", [int(row["env_steps"]) for row in rows])
    for row, (_, path) in zip(rows, files):
        if int(row["env_steps"]) < from_steps or row["tripped"]:
            continue
        episode = read_episode(path, image_shape, action_dim, extras)
        final_valve_rad = float(np.arctan2(*episode.extras["valve"][-1][::-1]))
        if row["success"] == "True":
            group = "succeeded"
        elif abs(wrap_to_pi(final_valve_rad - valve_rad)) < tolerance_rad:
            group = ended_at
        else:
            group = "other failures"
        if len(chosen[group]) < episodes:
            chosen[group].append(episode)
    values = {}
    for group, members in chosen.items():
        if not members:
            values[group] = GroupValues(0, float("nan"), float("nan"), float("nan"))
            continue
        q = [critic_along(agent, episode) for episode in members]
        values[group] = GroupValues(
            episodes=len(members),
            q_first=float(np.mean([v[:EDGE_STEPS].mean() for v in q])),
            q_last=float(np.mean([v[-EDGE_STEPS:].mean() for v in q])),
            reward_last=float(np.mean([e.rewards[-EDGE_STEPS:].mean() for e in members])),
        )
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=pathlib.Path, help="a `slac-robot train` run of a SLAC agent")
    parser.add_argument("--from-steps", type=int, default=0, help="episodes recorded at or after these env steps")
    parser.add_argument("--valve-rad", type=float, default=0.0, help="the place to leave the valve that is asked about")
    parser.add_argument("--tolerance-rad", type=float, default=0.03)
    parser.add_argument("--episodes", type=int, default=12, help="at most this many episodes per group")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)  # z_t is a posterior sample: the same figures every time
    values = critic_values(args.run, args.from_steps, args.valve_rad, args.tolerance_rad, args.episodes)
    print(f"{'group':>16} {'episodes':>8} {'Q first 5':>10} {'Q last 5':>10} {'reward last 5':>14}")
    for group, v in values.items():
        print(f"{group:>16} {v.episodes:>8} {v.q_first:>10.1f} {v.q_last:>10.1f} {v.reward_last:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
