"""`slac-robot sweep`: runs as Ray tasks on a local Ray instance, each an ordinary run directory,
the comparison figure drawn; the same command again continues every run (resume=). The settings
are PointReach (task=point_reach, no robot) and the valve."""

from __future__ import annotations

import csv
import os
import subprocess

from tests.test_cli import script_path

TINY = ["session.learner=inline", "task.episode_steps=5", "schedule.initial_collection_steps=10",
        "schedule.eval_every_episodes=2", "schedule.eval_episodes=1", "schedule.sac_batch_size=8",
        "agent.hidden=[32,32]"]


def sweep(root, total_steps: int) -> subprocess.CompletedProcess:
    overrides = ",".join(f"'{o}'" for o in [*TINY, f"schedule.total_env_steps={total_steps}"])
    return subprocess.run([script_path(), "sweep", f"root={root}", "agents=[sac_state]", "tasks=[point_reach,fixed]",
                           "seeds=[0,1]", "runs_at_once=2", f"overrides=[{overrides}]"],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})


def evaluations(run_dir) -> list[int]:
    with open(run_dir / "eval.csv") as f:
        return [int(row["env_steps"]) for row in csv.DictReader(f)]


def test_a_sweep_runs_every_combination_draws_the_figure_and_continues_when_run_again(tmp_path):
    first = sweep(tmp_path, total_steps=20)
    assert first.returncode == 0, first.stderr
    runs = [tmp_path / setting / f"sac_state_s{seed}" for setting in ("point_reach", "fixed") for seed in (0, 1)]
    for run_dir in runs:
        assert (run_dir / "config.yaml").is_file() and evaluations(run_dir) == [10, 20]
    assert (tmp_path / "comparison.png").stat().st_size > 0
    assert "4 runs finished" in first.stdout
    # `plot-results` reads the same layout
    plot = subprocess.run([script_path(), "plot-results", f"root={tmp_path}", f"out={tmp_path / 'again.png'}"],
                          capture_output=True, text=True, timeout=120)
    assert plot.returncode == 0 and "4 runs in 2 goal settings" in plot.stdout, plot.stderr

    second = sweep(tmp_path, total_steps=30)
    assert second.returncode == 0, second.stderr
    for run_dir in runs:
        assert evaluations(run_dir) == [10, 20, 30]  # continued, not started over
        assert "resume" in (run_dir / "sweep.log").read_text()


def test_bad_sweep_settings_end_in_one_line(tmp_path):
    for override, named in (("agents=[foo]", "agents: foo"), ("seeds=[]", "seeds is empty"),
                            ("overrides=['seed=3']", "set by the sweep itself")):
        run = subprocess.run([script_path(), "sweep", f"root={tmp_path / 'sweep'}", override],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and named in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert not (tmp_path / "sweep").exists()
