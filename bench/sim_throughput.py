"""Simulation throughput: environment steps/s with 64x64 images, physics-only steps/s, render fps.

    python bench/sim_throughput.py [--steps 2000] [--all-cores] [hydra overrides ...]

By default the process is pinned to one CPU core (the goal: >= 200 environment steps/s with
images on one core of a 2-core CI machine); llvmpipe's render threads inherit the pinning.
Figures are medians over --repeats runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from slac_robot.backends import make_env
from slac_robot.config import load_config


def _rate(fn, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000, help="environment steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the median is printed")
    parser.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    parser.add_argument("overrides", nargs="*", help="hydra overrides, e.g. camera.width_px=84")
    args = parser.parse_args()
    if not args.all_cores:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    cfg = load_config("rollout", args.overrides)
    env = make_env(cfg)
    sim_camera, clock = env.camera, env.clock
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(args.steps, env.action_space.shape[0])).astype(np.float32)

    def env_steps() -> float:
        env.reset(seed=0)
        index = iter(range(args.steps))

        def one() -> None:
            _, _, _, truncated, _ = env.step(actions[next(index)])
            if truncated:
                env.reset()

        return _rate(one, args.steps)

    env_rates = [env_steps() for _ in range(args.repeats)]
    physics_rates = [_rate(clock.tick, args.steps) for _ in range(args.repeats)]
    render_rates = [_rate(lambda: sim_camera.read(), args.steps) for _ in range(args.repeats)]
    env.close()

    substeps = cfg.backend.substeps
    cores = "all cores" if args.all_cores else "1 core"
    height, width = cfg.camera.height_px, cfg.camera.width_px
    print(f"sim throughput ({cores}, {width}x{height} images, {substeps} physics steps per control step, "
          f"MUJOCO_GL={os.environ.get('MUJOCO_GL')}; median of {args.repeats} x {args.steps} steps)")
    print(f"  environment steps/s with images : {statistics.median(env_rates):8.1f}")
    print(f"  control periods/s, physics only : {statistics.median(physics_rates):8.1f}"
          f"  ({statistics.median(physics_rates) * substeps:,.0f} physics steps/s)")
    print(f"  agent camera frames/s           : {statistics.median(render_rates):8.1f}")


if __name__ == "__main__":
    main()
