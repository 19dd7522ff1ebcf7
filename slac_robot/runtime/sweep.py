"""`slac-robot sweep`: agents x goal settings x seeds as Ray tasks, then the comparison figure.

Each run is one Ray task that runs the ordinary command, `slac-robot train agent=A task=G seed=S
out_dir=<root>/<G>/<A>_s<S> ...` (or `resume=` of that directory when it exists), in its own
process, with `cpus_per_run` CPUs and `gpus_per_run` GPUs reserved: Ray's scheduler decides what
runs where and how many at once (on a local instance, runs_at_once). Nothing here is a
scheduler of its own, and a run directory is what `slac-robot train` makes: `resume=`, `eval`
and `plot-results` work on it as on any other. Its output goes to <run>/sweep.log.

Why plain Ray tasks rather than hydra's Ray launcher or Ray Tune: each run is a whole session
with its own signals, lock and run directory (the CLI), which a task that starts the command
keeps intact; Tune's trial loop and reporting, and the launcher's hydra.main application, would
need a second entry point to the same session.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import subprocess
import sys
import time

from omegaconf import DictConfig

from slac_robot.config import ConfigError, group_options, require_int


def run_commands(cfg: DictConfig, root: pathlib.Path) -> dict[str, list[str]]:
    """run directory (relative to root) -> the `slac-robot train` arguments of that run."""
    commands = {}
    for task in cfg.tasks:
        for agent in cfg.agents:
            for seed in cfg.seeds:
                name = f"{task}/{agent}_s{seed}"
                run_dir = root / name
                if (run_dir / "config.yaml").is_file():
                    commands[name] = ["train", f"resume={run_dir}", *map(str, cfg.overrides)]
                else:
                    commands[name] = ["train", f"agent={agent}", f"task={task}", f"seed={seed}",
                                      f"out_dir={run_dir}", *map(str, cfg.overrides)]
    return commands


def check_sweep_config(cfg: DictConfig) -> None:
    """One line naming the fix for a bad sweep setting, before anything starts."""
    for key, group in (("agents", "agent"), ("tasks", "task")):
        choices = group_options(group)
        for value in cfg[key] or []:
            if str(value) not in choices:
                raise ConfigError(f"{key}: {value} is not an option; choose from: {', '.join(choices)}")
        if not cfg[key]:
            raise ConfigError(f"{key} is empty; name at least one (e.g. {key}=[{choices[0]}])")
    if not cfg.seeds:
        raise ConfigError("seeds is empty; name at least one (e.g. seeds=[0])")
    for seed in cfg.seeds:
        require_int("seeds", seed, minimum=0)
    require_int("runs_at_once", cfg.runs_at_once, minimum=1)
    for override in cfg.overrides:
        key = str(override).split("=", 1)[0]
        if key in ("agent", "task", "seed", "out_dir", "resume"):
            raise ConfigError(f"overrides: {override} is set by the sweep itself; use agents=, tasks=, seeds=, root=")
    if float(cfg.cpus_per_run) <= 0 or float(cfg.gpus_per_run) < 0:
        raise ConfigError("cpus_per_run must be more than 0 and gpus_per_run 0 or more")
    from slac_robot.runtime.ray_session import check_ray_auth

    check_ray_auth(str(cfg.address) if cfg.address else None, "address")


def _train(arguments: list[str], log_path: str, threads: int) -> int:
    """A Ray task: one `slac-robot train` run, its output to log_path; returns its exit code."""
    script = pathlib.Path(sys.executable).with_name("slac-robot")
    pathlib.Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with open(log_path, "a") as log:
        return subprocess.run([str(script), *arguments], stdout=log, stderr=subprocess.STDOUT, env=env,
                              stdin=subprocess.DEVNULL).returncode


def _draw(root: pathlib.Path, out: pathlib.Path) -> bool:
    """`slac-robot plot-results root=<root> out=<out>` (the comparison figure and its per-goal
    table) from the runs that have evaluated so far; False while none has."""
    import contextlib
    import io

    from slac_robot.cli import plot_results
    from slac_robot.config import load_config

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return plot_results(load_config("plot-results", [f"root={root}", f"out={out}"])) == 0


def run_sweep(cfg: DictConfig) -> int:
    """Runs the sweep (see the module docstring); returns 0 when every run finished, 1 otherwise."""
    import ray

    from slac_robot.runtime.ray_session import connect

    check_sweep_config(cfg)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    root = pathlib.Path(str(cfg.root)) if cfg.root else pathlib.Path("runs") / "sweep" / stamp
    root.mkdir(parents=True, exist_ok=True)
    out = pathlib.Path(str(cfg.out)) if cfg.out else root / "comparison.png"
    commands = run_commands(cfg, root)
    cpus = float(cfg.cpus_per_run)
    if cfg.address:
        connect(str(cfg.address), min_cpus=1)
    else:
        ray.init(include_dashboard=False, num_cpus=int(cfg.runs_at_once * cpus + 0.999),
                  num_gpus=None if float(cfg.gpus_per_run) else 0, log_to_driver=False, logging_level="WARNING")
    train = ray.remote(_train).options(num_cpus=cpus, num_gpus=float(cfg.gpus_per_run), max_retries=0)
    threads = max(1, int(cpus))
    pending = {train.remote(arguments, str(root / name / "sweep.log"), threads): name
               for name, arguments in commands.items()}
    print(f"slac-robot sweep: {len(commands)} runs into {root}", flush=True)
    failed = []
    started = time.monotonic()
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            name = pending.pop(ready[0])
            try:
                code = ray.get(ready[0])
            except ray.exceptions.RayError as error:
                code = f"lost ({type(error).__name__})"
            if code != 0:
                failed.append(name)
            figure = f"; figure: {out}" if _draw(root, out) else ""
            how = "finished" if code == 0 else f"ended with {code}, see {root / name / 'sweep.log'}"
            print(f"slac-robot sweep: {name} {how} ({len(commands) - len(pending)}/{len(commands)}, "
                  f"{time.monotonic() - started:.0f} s){figure}", flush=True)
    except KeyboardInterrupt:
        print(f"slac-robot sweep: interrupted; the runs so far are in {root}; the same command goes on "
              "(each run continues from its own run directory)", file=sys.stderr)
        return 130
    finally:
        ray.shutdown()
    if failed:
        print(f"slac-robot sweep: {len(failed)} runs did not finish: {', '.join(failed)}; the same command "
              "continues them", file=sys.stderr)
        return 1
    print(f"slac-robot sweep: {len(commands)} runs finished; figure: {out}")
    return 0
