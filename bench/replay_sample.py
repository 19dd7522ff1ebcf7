"""Sequence replay: sampling time, memory per step, episode write time, reload time.

    python bench/replay_sample.py [--steps 100000] [--episode-steps 40] [--repeats 50]

Fills a SequenceReplay in a temporary directory with --steps transitions of the simulated
valve's real 64x64 camera frames (one episode rendered with random actions, replayed for every
episode), 9-d actions and the 2-d goal, then prints:
  - episode write time (compress, fsync, atomic link: what the actor pays per finished episode)
    and the file size;
  - memory of the in-memory rings, in total and per stored step, and the process's peak RSS;
  - the time to draw a SAC batch (256 windows of 9 frames) and a model batch (32 x 9):
    medians over --repeats draws (the public PyTorch port takes ~58 ms for 256 sequences,
    FACTS.md);
  - the time to reload the directory, as a resumed run does.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time

import numpy as np

from slac_robot.agent.replay import SequenceReplay
from slac_robot.backends import make_env
from slac_robot.config import load_config


def render_episode(steps: int) -> list[dict]:
    """Observations of one simulated valve episode with random actions."""
    env = make_env(load_config("rollout", [f"task.episode_steps={steps}"]))
    obs, _ = env.reset(seed=0)
    observations = [obs]
    for _ in range(steps):
        obs, *_ = env.step(env.action_space.sample())
        observations.append(obs)
    env.close()
    return observations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000, help="transitions to store")
    parser.add_argument("--episode-steps", type=int, default=40, help="steps per episode")
    parser.add_argument("--repeats", type=int, default=50, help="draws per sampling figure; the median is printed")
    args = parser.parse_args()

    observations = render_episode(args.episode_steps)
    action_dim = 9
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as directory:
        replay = SequenceReplay(
            directory, action_dim, capacity_steps=args.steps, extras={"goal": 2}, expected_episode_steps=args.episode_steps
        )
        write_s = []
        for _ in range(args.steps // args.episode_steps):
            replay.start_episode(observations[0])
            for k in range(args.episode_steps):
                last = k == args.episode_steps - 1
                action = rng.uniform(-1, 1, action_dim)
                if last:
                    start = time.perf_counter()
                replay.add(action, 0.0, observations[k + 1], terminated=False, truncated=last)
            write_s.append(time.perf_counter() - start)
        files = sorted(replay.directory.glob("episode_*.npz"))
        print(f"stored {replay.num_steps} steps in {replay.num_episodes} episodes of {args.episode_steps} steps")
        print(
            f"episode write (last add: stack, compress, fsync, link): median {1e3 * statistics.median(write_s):.1f} ms, "
            f"max {1e3 * max(write_s):.1f} ms; file {files[0].stat().st_size / 1e3:.0f} kB "
            f"({files[0].stat().st_size / args.episode_steps / 1e3:.1f} kB per step)"
        )
        print(
            f"memory: rings {replay.memory_bytes / 1e9:.3f} GB = {replay.memory_bytes / args.steps:.0f} bytes per "
            f"stored step; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB"
        )
        for batch_size in (256, 32):
            draws = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                replay.sample(batch_size, rng)
                draws.append(time.perf_counter() - start)
            print(
                f"sample {batch_size} x {replay.sequence_length + 1} frames: median {1e3 * statistics.median(draws):.2f} ms, "
                f"min {1e3 * min(draws):.2f} ms"
            )
        del replay
        start = time.perf_counter()
        reloaded = SequenceReplay(directory, action_dim, capacity_steps=args.steps, extras={"goal": 2}, expected_episode_steps=args.episode_steps)
        print(f"reload of {reloaded.num_episodes} episode files: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
