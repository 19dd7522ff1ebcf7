"""Does a trained policy tell the goal from its look-alikes? Its first action around the circle.

    python tools/policy_look_alikes.py runs/train/<run> [--step-deg 10] [--goal-rad G]

The valve's three prongs, and the claw's three fingers, stand the same every 120 degrees: with
the valve 120 degrees off its goal, only the valve's marker (backend.valve_marker) tells the two
apart in the image. This tool resets the run's env with the claw at its reset pose, the goal at
--goal-rad (default: the first evaluation episode's goal) and the valve at every --step-deg
around the circle, takes the run's deterministic action from each first frame, and prints:
  - how the action's variance over the valve's angle splits into harmonics (k cycles per turn);
  - the share a policy owes to the marker (k not a multiple of 3: the outline alone repeats
    every 120 degrees and makes only k = 3, 6, 9, ...) and to the outline;
  - the mean distance between the actions at angles 10, 60 and 120 degrees apart.
A policy that holds the valve at the goal's look-alikes (docs/results/comparison) shows a small
marker share and actions 120 degrees apart as close as those 60 apart, or closer.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

import numpy as np
import torch

from slac_robot.agent.policy import make_history
from slac_robot.backends import valve_marker
from trained_run import opened_run

HARMONICS_SHOWN = 9


def first_actions(env, agent, goal_rad: float, valves_rad: np.ndarray) -> np.ndarray:
    """The agent's deterministic action from the first frame of an episode with the goal at
    goal_rad and the valve at each of valves_rad: (len(valves_rad), action_dim)."""
    history = make_history(agent, env.observation_space)
    actions = []
    for valve_rad in valves_rad:
        observation, _ = env.reset(seed=0, options={"goal_rad": goal_rad, "valve_rad": float(valve_rad)})
        history.reset(observation)
        actions.append(agent.act(history, explore=False))
    return np.asarray(actions)


def harmonic_shares(actions: np.ndarray) -> np.ndarray:
    """Each harmonic's share (k = 0, 1, ... cycles per turn) of the actions' variance over N angles
    evenly spaced around the circle: actions (N, A) -> (N // 2 + 1,), summing to 1."""
    spectrum = np.fft.rfft(actions - actions.mean(0), axis=0)
    power = (np.abs(spectrum) ** 2).sum(1)
    if len(actions) % 2 == 0:
        power[1:-1] *= 2  # each of these stands for itself and its mirror, k and N - k
    else:
        power[1:] *= 2
    return power / power.sum()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=pathlib.Path, help="a `slac-robot train` run on the valve")
    parser.add_argument("--step-deg", type=int, default=10, help="the valve's angles: every this many degrees")
    parser.add_argument("--goal-rad", type=float, default=None, help="default: the first evaluation episode's goal")
    args = parser.parse_args(argv)
    if args.step_deg <= 0 or 120 % args.step_deg:
        parser.error(f"--step-deg must divide 120 (the look-alikes' spacing), got {args.step_deg}")
    torch.set_num_threads(1)
    with opened_run(args.run) as (cfg, env, agent):
        if "valve" not in env.observation_space.spaces:
            raise SystemExit(f"{args.run}: task={cfg.task.name} has no valve")
        goal_rad = env.unwrapped.evaluation_options(1)[0]["goal_rad"] if args.goal_rad is None else args.goal_rad
        valves_rad = goal_rad + np.radians(np.arange(0, 360, args.step_deg))
        actions = first_actions(env, agent, goal_rad, valves_rad)
    shares = harmonic_shares(actions)
    outline = float(shares[3::3].sum())
    print(f"first action over {len(valves_rad)} valve angles, goal {goal_rad:+.2f} rad, "
          f"agent={cfg.agent.name}, backend.valve_marker={valve_marker(cfg.backend)}")
    print("share of its variance per harmonic (k cycles per turn): "
          + " ".join(f"k{k} {s:.2f}" for k, s in enumerate(shares[1:HARMONICS_SHOWN + 1], start=1)))
    print(f"owed to the marker (k not a multiple of 3) {1.0 - outline:.2f}; to the outline (k = 3, 6, ...) {outline:.2f}")
    apart = {deg: float(np.linalg.norm(actions - np.roll(actions, -deg // args.step_deg, 0), axis=1).mean())
             for deg in (args.step_deg, 60, 120)}
    print("mean |a(valve) - a(valve + d)|: " + ", ".join(f"d = {deg} deg {v:.3f}" for deg, v in apart.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
