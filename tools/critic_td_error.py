"""A SLAC run's TD error: how much of it is the posterior sample's noise, and where the valve was.

    python tools/critic_td_error.py runs/train/<run> [--windows 256] [--samples 8]
                                    [--recent-steps 16000]

SLAC's critics are trained on one posterior sample z_t per window, and their targets on another
sample z_{t+1}. This tool loads the run's newest sound checkpoint, draws --windows training
windows from the newest --recent-steps of its replay (read; an unreadable episode file is moved
to replay/corrupt/, as training does), draws --samples (at least 2) posterior samples of each,
and prints:
  - the spread of Q1(z_t, a_t) across the samples of one window, against its spread across windows;
  - the RMS TD error of critic 1 as it is trained (one sample for z_t, an independent one for
    z_{t+1}), and with Q and its target averaged over the samples: the difference is the part
    the posterior's sampling noise makes;
  - the RMS TD error and its share of the squared error by |valve - goal| at t (valve tasks).
SLAC runs on the valve only (the baselines' critics see no latent state).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import OmegaConf

from slac_robot.backends import make_replay
from slac_robot.tasks.valve_turn import wrap_to_pi
from trained_run import opened_run

ERROR_BINS_RAD = (0.0, 0.1, 0.25, 0.6, 1.5, np.pi + 1e-6)  # the reward's bonus thresholds, then coarser


@dataclass(frozen=True)
class TdErrors:
    """The TD errors of B windows, K posterior samples each, and the valve's distance from the goal at t."""

    q_std_across_samples: np.ndarray  # (B,) std of Q1(z_t, a_t) over the posterior samples
    q_mean: np.ndarray  # (B,) Q1(z_t, a_t) averaged over the samples
    td_one_sample: np.ndarray  # (K, B) y(z_{t+1}) - Q1(z_t), independent samples, as in training
    td_averaged: np.ndarray  # (B,) mean_k y(z^k_{t+1}) - mean_k Q1(z^k_t)
    error_rad: np.ndarray  # (B,) |valve - goal| at t


@torch.no_grad()
def td_errors(agent, sample: dict[str, np.ndarray], samples: int) -> TdErrors:
    """The TD errors of agent's critic 1 on a replay sample (SequenceReplay.sample), its
    posterior drawn `samples` times; the next action and its log-probability drawn once."""
    batch = agent.to_batch(sample)
    goals = batch.vector(agent.goal_keys)
    features = agent.model.encode(batch.images)
    proprio = agent.proprio(batch)
    z = torch.stack([agent.model.posterior(features, batch.actions, proprio).z
                     for _ in range(samples)])  # (K, B, T+1, Z)
    next_action, next_log_pi = agent.actor(agent.actor_inputs(
        features[:, 1:], batch.actions[:, 1:], goals[:, -1], proprio[:, 1:] if proprio is not None else None))
    q_t, target = [], []
    for z_k in z:
        q1, _ = agent.critic(torch.cat([z_k[:, -2], batch.actions[:, -1], goals[:, -2]], -1))
        q_t.append(q1[:, 0])
        target.append(agent.td_target(torch.cat([z_k[:, -1], next_action, goals[:, -1]], -1), next_log_pi,
                                      batch.rewards[:, -1:], 1.0 - batch.terminated[:, -1:])[:, 0])
    q_t, target = torch.stack(q_t), torch.stack(target)  # (K, B)
    valve, goal = sample["valve"][:, -2], sample["goal"][:, -2]
    error = wrap_to_pi(np.arctan2(valve[:, 1], valve[:, 0]) - np.arctan2(goal[:, 1], goal[:, 0]))
    return TdErrors(
        q_std_across_samples=q_t.std(0).numpy(),
        q_mean=q_t.mean(0).numpy(),
        td_one_sample=(target.roll(1, 0) - q_t).numpy(),  # z_{t+1} from another draw than z_t
        td_averaged=(target.mean(0) - q_t.mean(0)).numpy(),
        error_rad=np.abs(error),
    )


def load(run_dir: pathlib.Path, recent_steps: int):
    """(agent with the newest checkpoint, replay of the newest recent_steps); SystemExit with
    one line for a run this tool cannot read."""
    with opened_run(run_dir, latent_model=True) as (cfg, env, agent):
        if not {"valve", "goal"} <= set(env.observation_space.spaces):
            raise SystemExit(f"{run_dir}: task={cfg.task.name} has no valve; this tool bins by the valve's error")
        replay = make_replay(OmegaConf.merge(cfg.replay, {"capacity_steps": recent_steps}), run_dir / "replay", env,
                             agent.sequence_length, int(cfg.task.episode_steps))
    return agent, replay


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=pathlib.Path, help="a `slac-robot train` run of a SLAC agent on the valve")
    parser.add_argument("--windows", type=int, default=256, help="training windows drawn from the replay")
    parser.add_argument("--samples", type=int, default=8, help="posterior samples per window")
    parser.add_argument("--recent-steps", type=int, default=16000, help="draw from the replay's newest steps")
    args = parser.parse_args(argv)
    if args.samples < 2:
        parser.error("--samples must be at least 2 (z_t and z_{t+1} from different draws)")
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the same draws every time
    agent, replay = load(args.run, args.recent_steps)
    td = td_errors(agent, replay.sample(args.windows, np.random.default_rng(0)), args.samples)
    print(f"Q1(z_t, a_t): mean {td.q_mean.mean():.1f}; std across {args.samples} posterior samples of one window "
          f"{td.q_std_across_samples.mean():.1f} (median {np.median(td.q_std_across_samples):.1f}), "
          f"across windows {td.q_mean.std():.1f}")
    print(f"RMS TD error: one sample each, as trained {rms(td.td_one_sample):.1f}; "
          f"Q and target averaged over the samples {rms(td.td_averaged):.1f}")
    per_window = (td.td_one_sample ** 2).mean(0)  # mean squared TD error of each window over its draws
    print(f"{'|valve - goal| rad':>20} {'windows':>8} {'RMS TD':>8} {'share':>6}")
    for low, high in zip(ERROR_BINS_RAD[:-1], ERROR_BINS_RAD[1:]):
        chosen = (td.error_rad >= low) & (td.error_rad < high)
        print(f"{f'{low:.2f}-{min(high, np.pi):.2f}':>20} {int(chosen.sum()):>8} "
              f"{float(np.sqrt(per_window[chosen].mean())) if chosen.any() else float('nan'):>8.1f} "
              f"{per_window[chosen].sum() / per_window.sum():>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
