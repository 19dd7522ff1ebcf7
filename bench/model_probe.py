"""Does a latent model learn to see the valve? Trains SLAC's latent model alone, offline, on a run's
recorded episodes and prints the linear probe (agent/probe.py) as the updates go on.

The newest `--heldout` episodes are kept out of training and score the probe; the rest train
the model (no RL: only the ELBO). Compare configurations on the same data before a long run:

    python bench/model_probe.py runs/train/<run>/replay --updates 2000
    python bench/model_probe.py runs/train/<run>/replay agent.image_std=0.1
    python bench/model_probe.py runs/train/<run>/replay agent.proprio_to_model=true

Prints, every --every updates: the negative ELBO's terms and the probe's valve and joint errors
(radians; chance for the valve, uniform over the circle, is about pi/2), and the valve's arms:
the valve has three, one marked red, so a model may see the arms' orientation (the angle modulo
2 pi/3, probed as (cos 3a, sin 3a); chance pi/6) before it tells the red one from the others.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import tempfile
import time

import numpy as np
import torch

from agent_speed import SPACES  # the valve's observation and action spaces (a script beside this one)
from slac_robot.agent.probe import agent_probe, probe_errors
from slac_robot.agent.replay import SequenceReplay
from slac_robot.backends import make_agent
from slac_robot.config import load_config


def split_replay(directory: pathlib.Path, heldout: int, into: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Links the episode files into a training folder and a held-out folder (the newest)."""
    files = sorted(p.name for p in directory.glob("episode_*.npz"))  # oldest first (zero-padded index)
    if len(files) <= heldout:
        raise SystemExit(f"{directory} holds {len(files)} episodes; more than --heldout {heldout} are needed")
    train, test = into / "train", into / "heldout"
    for folder, names in ((train, files[:-heldout]), (test, files[-heldout:])):
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).symlink_to(directory.resolve() / name)
    return train, test


@torch.no_grad()
def arms_probe_data(agent, sample: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Features, and the valve's (cos 3a, sin 3a) as a "valve" target: the arms' orientation."""
    c, s = sample["valve"][:, -1, 0], sample["valve"][:, -1, 1]
    triple = np.stack([4 * c**3 - 3 * c, 3 * s - 4 * s**3], axis=1)  # cos 3a, sin 3a
    return agent.probe_features(agent.to_batch(sample)).cpu().numpy(), {"valve": triple}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("replay", type=pathlib.Path, help="a run's replay folder")
    parser.add_argument("overrides", nargs="*", help="train config overrides (default agent=slac_cpu)")
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--heldout", type=int, default=10, help="newest episodes kept out of training")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    overrides = args.overrides if any(o.startswith("agent=") for o in args.overrides) else ["agent=slac_cpu", *args.overrides]
    cfg = load_config("train", overrides)
    torch.manual_seed(args.seed)
    agent = make_agent(cfg.agent, SPACES, torch.device("cpu"))
    extras = {k: s.shape[0] for k, s in SPACES.observation_space.spaces.items() if k != "image"}
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="model_probe_"))
    try:
        train_dir, test_dir = split_replay(args.replay, args.heldout, scratch)
        load = lambda d: SequenceReplay(d, 9, capacity_steps=200_000, sequence_length=agent.sequence_length,  # noqa: E731
                                        extras=extras)
        train, test = load(train_dir), load(test_dir)
        print(f"{' '.join(overrides)}: {train.num_episodes} training episodes ({train.num_steps} steps), "
              f"{test.num_episodes} held out; model batch {cfg.schedule.model_batch_size}")
        rng = np.random.default_rng(args.seed)
        started = time.monotonic()
        for update in range(1, args.updates + 1):
            metrics = agent.pretrain_step(train, rng, cfg.schedule.model_batch_size)
            if update % args.every == 0 or update == args.updates:
                train_sample, test_sample = train.sample(1024, rng), test.sample(512, rng)
                probe = agent_probe(agent, train_sample, test_sample)
                arms = probe_errors(*arms_probe_data(agent, train_sample), *arms_probe_data(agent, test_sample))
                print(f"  {update:6d} updates ({time.monotonic() - started:5.0f} s): "
                      f"image nll {metrics['model/image_nll']:9.1f}, kl {metrics['model/kl']:6.1f}; "
                      f"probe valve {probe['probe/valve_error_rad']:.3f} rad "
                      f"(arms {arms['probe/valve_error_rad'] / 3:.3f} rad), "
                      f"joints {probe['probe/joint_pos_error_rad']:.3f} rad", flush=True)
    finally:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
