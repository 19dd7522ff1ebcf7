"""The learning check run longer: SLAC on PointReach, with an evaluation every 10 episodes.

Prints the evaluation rows and writes eval.csv and learning_curve.png into the output folder
(default docs/results/point_reach). Same settings as the CI learning test
(slac_robot/runtime/learning_check.py).

    python bench/learning_point_reach.py --steps 3000
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import tempfile
import time

from slac_robot.runtime.learning_check import SCHEDULE, random_policy_scores, train_point_reach


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("docs/results/point_reach"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        trainer, result = train_point_reach(pathlib.Path(run_dir), show_progress=True,
                                            total_env_steps=args.steps, eval_every_episodes=10)
        elapsed = time.perf_counter() - start
        args.out.mkdir(parents=True, exist_ok=True)
        for name in ("eval.csv", "learning_curve.png"):
            shutil.copy(pathlib.Path(run_dir) / name, args.out / name)
    random_return, random_success = random_policy_scores(SCHEDULE.eval_episodes)
    print((args.out / "eval.csv").read_text())
    print(f"{args.steps} environment steps, {trainer.agent.sac_updates} SAC updates in {elapsed:.0f} s; final: "
          f"success {result.success_rate['all']:.2f}, return {result.mean_return:.1f} "
          f"(random actions: success {random_success:.2f}, return {random_return:.1f})")
    print(f"wrote {args.out}/eval.csv and learning_curve.png")


if __name__ == "__main__":
    main()
