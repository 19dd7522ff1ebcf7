"""Fills train_episodes.csv's start_error_rad and final_error_rad of a valve run started before
those columns were written, from the run's own episode files (replay/).

    python tools/backfill_start_errors.py runs/train/<run> [more runs...]

The k-th row (k from 0) is the k-th episode file, replay/episode_<k>_<steps>.npz, checked against
the row's step count (older versions numbered the rows' episodes from 0, newer from 1). The
errors are the task's (tasks/valve_turn.wrap_to_pi of goal - valve), from the recorded (cos, sin)
of both, after the reset and at the last whole step.
Rows that have the errors already are kept as they are; the file is replaced atomically. Stop
the run first (its trainer appends to the file). Runs of a Ray session (rows per robot) and
PointReach runs are refused.
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import sys

import numpy as np

from slac_robot.agent.replay import episode_files_of_rows
from slac_robot.storage import csv_text, write_atomically
from slac_robot.tasks.valve_turn import wrap_to_pi


def signed_errors_rad(episode_file: pathlib.Path) -> tuple[float, float]:
    """(goal - valve after the reset, at the last step), wrapped to [-pi, pi), of one episode file.
    Raises SystemExit with one line when the file records no valve (a PointReach run)."""
    with np.load(episode_file) as episode:
        if "obs_valve" not in episode:
            raise SystemExit(f"{episode_file} records no valve (a PointReach run?); nothing was changed")
        valve, goal = (np.arctan2(episode[k][:, 1], episode[k][:, 0]) for k in ("obs_valve", "obs_goal"))
    error = wrap_to_pi(goal - valve)  # elementwise, in the file's float32
    return float(error[0]), float(error[-1])


def backfill(run_dir: pathlib.Path) -> int:
    """Fills the missing errors of run_dir's train_episodes.csv; returns how many rows it filled.
    Raises SystemExit with one line when the rows and the episode files do not match."""
    table = run_dir / "train_episodes.csv"
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "robot" in rows[0]:
        raise SystemExit(f"{table}: no rows, or a Ray session's rows per robot; nothing to fill")
    filled = 0
    files = episode_files_of_rows(run_dir / "replay", [int(row["env_steps"]) for row in rows])
    for index, (row, (steps, path)) in enumerate(zip(rows, files)):
        if row.get("start_error_rad"):
            continue
        if not path.is_file():
            raise SystemExit(f"{table}: row {index + 1} (episode {row['episode']}, {steps} steps) has no file "
                             f"{path}; the rows and the episode files do not match, nothing was changed")
        row["start_error_rad"], row["final_error_rad"] = (round(e, 4) for e in signed_errors_rad(path))
        filled += 1
    header = list(rows[0]) + [k for k in ("start_error_rad", "final_error_rad") if k not in rows[0]]
    write_atomically(table, csv_text(header, rows).encode())
    return filled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=pathlib.Path, help="run directories (stopped)")
    for run_dir in parser.parse_args(argv).runs:
        print(f"{run_dir}: filled {backfill(run_dir)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
