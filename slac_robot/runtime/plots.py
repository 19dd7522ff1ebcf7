"""Plots a person looks at after a run (written as PNG, no display needed)."""

from __future__ import annotations

import io
import math
import pathlib

import matplotlib

matplotlib.use("Agg")  # files only: robots' computers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from slac_robot.storage import write_atomically  # noqa: E402


PANELS_PER_ROW = 4  # a figure of many runs wraps its panels into rows of this many


def _save(figure, path: pathlib.Path) -> None:
    """Writes the figure to path whole or not at all (a full disk leaves the previous plot), and
    closes it."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format=pathlib.Path(path).suffix.lstrip(".") or "png")
    finally:
        plt.close(figure)
    write_atomically(path, buffer.getbuffer())


def plot_valve_errors(
    errors_rad: list[np.ndarray],
    goals_rad: list[float],
    period_s: float,
    success_threshold_rad: float,
    path: pathlib.Path,
) -> None:
    """Plots each episode's signed error (goal - valve, wrapped) against time, with the success
    band, to `path`. errors_rad[i] holds episode i's errors from the reset on (steps + 1 values)."""
    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    axes.axhspan(-success_threshold_rad, success_threshold_rad, color="tab:green", alpha=0.15,
                 label=f"success (|error| < {success_threshold_rad:g} rad)")
    for episode, (errors, goal) in enumerate(zip(errors_rad, goals_rad)):
        time_s = np.arange(len(errors)) * period_s
        axes.plot(time_s, errors, marker=".", markersize=3, label=f"episode {episode} (goal {goal:+.2f} rad)")
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.set_ylim(-math.pi, math.pi)
    axes.set_xlabel("time (s)")
    axes.set_ylabel("goal - valve angle (rad)")
    axes.set_title("Valve error per episode")
    if len(errors_rad) <= 10:
        axes.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    _save(figure, path)


def plot_learning_curve(env_steps: list[int], success_rate: list[float], mean_return: list[float],
                        path: pathlib.Path, title: str = "SLAC evaluation") -> None:
    """Plots evaluation success rate and mean return against environment steps to `path`."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), dpi=100, sharex=True)
    top.plot(env_steps, success_rate, marker="o", markersize=3)
    top.set_ylim(-0.05, 1.05)
    top.set_ylabel("success rate")
    top.set_title(title)
    bottom.plot(env_steps, mean_return, marker="o", markersize=3, color="tab:orange")
    bottom.set_ylabel("mean return")
    bottom.set_xlabel("environment steps")
    for axes in (top, bottom):
        axes.grid(alpha=0.3)
    figure.tight_layout()
    _save(figure, path)


def read_eval_curve(eval_csv: pathlib.Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(env_steps, success_rate, mean_return) of one run's eval.csv."""
    import csv

    with open(eval_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [[float(r[key]) for r in rows] for key in ("env_steps", "success_rate", "mean_return")]
    return tuple(np.asarray(c) for c in columns)  # type: ignore[return-value]


def read_per_goal(eval_csv: pathlib.Path, last_evaluations: int) -> dict[float, tuple[float, int]]:
    """Per goal (rad): (successes, episodes) summed over the last evaluations of one run's
    eval.csv, from its per_goal column ("goal:rate/error/episodes;..."). An entry written before
    the episode count was recorded counts as many episodes as the run's counted entries of that
    goal (a run resumed across the change), else as one; runs without goals ("all") give {}."""
    import csv

    with open(eval_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    entries: list[tuple[float, float, int | None]] = []  # (goal, rate, episodes or None)
    for row in rows[-last_evaluations:]:
        for entry in filter(None, (row.get("per_goal") or "").split(";")):
            goal, _, figures = entry.partition(":")
            if goal == "all" or not figures:
                continue
            parts = figures.split("/")
            entries.append((float(goal), float(parts[0]), int(parts[2]) if len(parts) == 3 else None))
    counted = {goal: episodes for goal, _, episodes in entries if episodes is not None}
    totals: dict[float, list[float]] = {}
    for goal, rate, episodes in entries:
        n = episodes if episodes is not None else counted.get(goal, 1)
        total = totals.setdefault(goal, [0.0, 0])
        total[0] += round(rate * n) if n > 1 else rate  # rates are written rounded: k of n episodes
        total[1] += n
    return {goal: (successes, int(episodes)) for goal, (successes, episodes) in sorted(totals.items())}


def value_bins(values: list[float], bin_width: float | None) -> list[tuple[float, float]]:
    """Bins of bin_width covering the values (goals drawn from an interval, start errors), or one
    bin per distinct value where bin_width is None (a fixed goal, three goals)."""
    distinct = sorted(set(values))
    if bin_width is None:
        return [(g, g) for g in distinct]
    low = math.floor(min(distinct) / bin_width) * bin_width
    edges = np.arange(low, max(distinct) + bin_width, bin_width)
    return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:])]


def _bin_index(value: float, bins: list[tuple[float, float]]) -> int:
    """The bin holding value: its own for a one-value bin, else [low, high), the last one closed."""
    for index, (low, high) in enumerate(bins):
        if low == high == value or low <= value < high:
            return index
    return len(bins) - 1


def per_goal_table(per_goal: dict[str, dict[str, list[dict[float, tuple[float, int]]]]],
                   bin_width_rad: float, binned_settings: set[str]) -> list[dict[str, object]]:
    """Rows (setting, agent, goal bin, episodes, success rate) of the per-goal success, pooled over
    seeds. per_goal: setting -> agent -> one read_per_goal result per seed; the goals of
    binned_settings (random goals) fall into bins of bin_width_rad, the others count one by one."""
    rows: list[dict[str, object]] = []
    for setting, agents in per_goal.items():
        goals = [g for seeds in agents.values() for run in seeds for g in run]
        bins = value_bins(goals, bin_width_rad if setting in binned_settings else None)
        for index, (low, high) in enumerate(bins):
            for agent, seeds in sorted(agents.items()):
                inside = [(s, n) for run in seeds for g, (s, n) in run.items()
                          if _bin_index(g, bins) == index]
                episodes = sum(n for _, n in inside)
                if episodes:
                    rows.append({"setting": setting, "agent": agent, "goal_low_rad": round(low, 3),
                                 "goal_high_rad": round(high, 3), "episodes": episodes,
                                 "success_rate": round(sum(s for s, _ in inside) / episodes, 3)})
    return rows


def _last_evaluations_rows(eval_episodes_csv: pathlib.Path, last_evaluations: int, column: str) -> list[dict]:
    """The rows of one run's eval_episodes.csv in its last `last_evaluations` evaluations; [] where
    the file has no `column` (PointReach has no valve)."""
    import csv

    with open(eval_episodes_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or column not in rows[0]:
        return []
    kept = set(list(dict.fromkeys(r["env_steps"] for r in rows))[-last_evaluations:])
    return [r for r in rows if r["env_steps"] in kept]


def read_start_errors(eval_episodes_csv: pathlib.Path, last_evaluations: int) -> list[tuple[float, bool, float]]:
    """(goal - valve at the start in rad, signed: the way to turn; success; the probe's valve error
    over the episode in rad, NaN where not recorded) of every episode in the last evaluations of
    one run's eval_episodes.csv; [] for a task without a valve (PointReach)."""
    rows = _last_evaluations_rows(eval_episodes_csv, last_evaluations, "start_error_rad")
    return [(float(r["start_error_rad"]), r["success"] == "1", float(r.get("probe_valve_error_rad") or "nan"))
            for r in rows if r["start_error_rad"] not in ("", "nan")]


def start_error_table(start_errors: dict[str, dict[str, list[list[tuple[float, bool, float]]]]],
                      bin_width_rad: float) -> list[dict[str, object]]:
    """Rows (setting, agent, start error bin, episodes, success rate, the probe's mean valve error
    where the episodes recorded it, else blank): evaluation success by how far, and which way,
    the valve started from its goal, pooled over seeds, beside how well the agent's features
    told the valve's angle in those episodes (a start that fails while the probe reads the
    valve well is the policy's miss, not the perception's). start_errors: setting -> agent ->
    one read_start_errors result per seed; bin edges at multiples of bin_width_rad."""
    rows: list[dict[str, object]] = []
    for setting, agents in start_errors.items():
        bins = value_bins([e for seeds in agents.values() for run in seeds for e, _, _ in run], bin_width_rad)
        for index, (low, high) in enumerate(bins):
            for agent, seeds in sorted(agents.items()):
                inside = [(ok, probe) for run in seeds for e, ok, probe in run if _bin_index(e, bins) == index]
                if inside:
                    probed = [probe for _, probe in inside if math.isfinite(probe)]
                    rows.append({"setting": setting, "agent": agent, "start_error_low_rad": round(low, 3),
                                 "start_error_high_rad": round(high, 3), "episodes": len(inside),
                                 "success_rate": round(sum(ok for ok, _ in inside) / len(inside), 3),
                                 "probe_valve_error_rad": round(float(np.mean(probed)), 3) if probed else None})
    return rows


def read_final_errors(eval_episodes_csv: pathlib.Path, last_evaluations: int) -> list[float]:
    """|goal - valve| at the end, in rad, of every failed episode in the last evaluations of one
    run's eval_episodes.csv; [] for a task without a valve (PointReach)."""
    rows = _last_evaluations_rows(eval_episodes_csv, last_evaluations, "final_error_rad")
    return [abs(float(r["final_error_rad"])) for r in rows
            if r["success"] != "1" and r["final_error_rad"] not in ("", "nan")]


def final_error_table(final_errors: dict[str, dict[str, list[list[float]]]],
                      bin_width_rad: float) -> list[dict[str, object]]:
    """Rows (setting, agent, final error bin, failed episodes, share of the agent's failures): where
    the valve stood when evaluation episodes failed, pooled over seeds. final_errors: setting ->
    agent -> one read_final_errors result per seed. The bins are centred on the multiples of
    bin_width_rad, [0, w/2), [w/2, 3w/2), ..., the last closed at pi: with 2pi/9 one is centred on
    2pi/3, where the valve's three prongs stand as at the goal. Every bin gets a row, empty ones
    too, for an agent with failures."""
    inner = [(k + 0.5) * bin_width_rad for k in range(int(math.pi / bin_width_rad + 0.5))]
    edges = [0.0, *(e for e in inner if e < math.pi - bin_width_rad / 4), math.pi]  # no sliver at pi
    rows: list[dict[str, object]] = []
    for setting, agents in final_errors.items():
        for agent, seeds in sorted(agents.items()):
            failed = [e for run in seeds for e in run]
            if not failed:
                continue
            counts = np.histogram(np.clip(failed, 0.0, math.pi), bins=edges)[0]  # the last bin closed at pi
            for low, high, inside in zip(edges[:-1], edges[1:], counts):
                rows.append({"setting": setting, "agent": agent, "final_error_low_rad": round(low, 3),
                             "final_error_high_rad": round(high, 3), "failed_episodes": int(inside),
                             "share_of_failures": round(int(inside) / len(failed), 3)})
    return rows


def read_train_start_errors(train_episodes_csv: pathlib.Path) -> list[tuple[int, float, bool]]:
    """(env_steps at the episode's end, goal - valve at the start in rad, success) of every training
    episode of one run's train_episodes.csv whose row has its start error; [] where none has
    (PointReach, or rows written before the column)."""
    import csv

    with open(train_episodes_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    return [(int(r["env_steps"]), float(r["start_error_rad"]), r["success"] == "True") for r in rows
            if r.get("start_error_rad") not in (None, "", "nan")]


def train_start_error_table(starts: dict[str, dict[str, list[list[tuple[int, float, bool]]]]],
                            bin_width_rad: float, block_env_steps: int, min_episodes: int) -> list[dict[str, object]]:
    """Rows (setting, agent, block of env steps, start error bin, episodes, success rate): the
    success of the exploring training episodes by how far, and which way, the valve started from
    its goal, per block of steps, pooled over seeds: which starts are being learnt, and how fast.
    starts: setting -> agent -> one read_train_start_errors result per seed. A cell of fewer than
    min_episodes episodes (a run's last steps past a block's start) gives no row."""
    rows: list[dict[str, object]] = []
    for setting, agents in starts.items():
        bins = value_bins([e for seeds in agents.values() for run in seeds for _, e, _ in run], bin_width_rad)
        for agent, seeds in sorted(agents.items()):
            episodes = [(steps // block_env_steps, _bin_index(e, bins), ok) for run in seeds for steps, e, ok in run]
            for block in sorted({b for b, _, _ in episodes}):
                for index, (low, high) in enumerate(bins):
                    inside = [ok for b, i, ok in episodes if b == block and i == index]
                    if len(inside) >= min_episodes:
                        rows.append({"setting": setting, "agent": agent,
                                     "env_steps_low": block * block_env_steps,
                                     "env_steps_high": (block + 1) * block_env_steps,
                                     "start_error_low_rad": round(low, 3), "start_error_high_rad": round(high, 3),
                                     "episodes": len(inside), "success_rate": round(sum(inside) / len(inside), 3)})
    return rows


def plot_success_by_start_over_steps(rows: list[dict[str, object]], path: pathlib.Path) -> None:
    """train_start_error_table's rows as lines: one panel per goal setting and agent, the success of
    the training episodes against environment steps (each block's middle), one line per start
    error bin."""
    panels = list(dict.fromkeys((str(r["setting"]), str(r["agent"])) for r in rows))
    columns = min(len(panels), PANELS_PER_ROW)
    lines = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(4.5 * columns, 3.4 * lines), dpi=100, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for panel, (setting, agent) in enumerate(panels):
        ax = axes.flat[panel]
        mine = [r for r in rows if (r["setting"], r["agent"]) == (setting, agent)]
        # one colour per bin across the setting's panels: blue, the valve's angle must fall; red, rise
        bins = sorted({(r["start_error_low_rad"], r["start_error_high_rad"]) for r in rows if r["setting"] == setting})
        for k, (low, high) in enumerate(bins):
            line = [r for r in mine if (r["start_error_low_rad"], r["start_error_high_rad"]) == (low, high)]
            if not line:
                continue
            ax.plot([(r["env_steps_low"] + r["env_steps_high"]) / 2 for r in line], [r["success_rate"] for r in line],
                    marker="o", markersize=3, color=plt.cm.coolwarm(k / max(len(bins) - 1, 1)),
                    label=f"[{low:+.2f},{high:+.2f})")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"task={setting}, {agent}")
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best", title="goal - valve at the start (rad)", title_fontsize=6)
    for ax in axes[:, 0]:
        ax.set_ylabel("training episodes' success rate")
    figure.tight_layout()
    _save(figure, path)


def budget_table(runs: dict[str, dict[str, list[tuple[int, np.ndarray, np.ndarray]]]],
                 budget_env_steps: dict[str, int], target_success: dict[str, float],
                 last_evaluations: int) -> list[dict[str, object]]:
    """Rows (setting, agent, seed, ...) reading each run against its goal setting's step budget and
    target success (the issue's goals), then one row per agent with seed "median": the median over
    seeds of each figure. runs: setting -> agent -> (seed, env_steps, success_rate) per run; only
    the evaluations at or before the budget count. Columns: last_env_steps (the last such evaluation:
    below the budget while a run is short of it), success_at_budget (that evaluation),
    mean_last (the mean of the last last_evaluations of them), first_env_steps_at_target (the first
    evaluation at or above the target, None if none). The median row's last_env_steps is the least
    of its seeds'. Settings without a budget are left out; the others in runs' order."""
    rows: list[dict[str, object]] = []
    for setting, agents in runs.items():
        if setting not in budget_env_steps:
            continue
        budget, target = budget_env_steps[setting], target_success[setting]
        for agent, seeds in sorted(agents.items()):
            figures = []
            for seed, env_steps, success in sorted(seeds, key=lambda run: run[0]):
                kept = env_steps <= budget
                if not kept.any():
                    continue
                steps, rates = env_steps[kept], success[kept]
                reached = np.flatnonzero(rates >= target)
                figures.append({"last_env_steps": int(steps[-1]), "success_at_budget": float(rates[-1]),
                                "mean_last": round(float(rates[-last_evaluations:].mean()), 3),
                                "first_env_steps_at_target": int(steps[reached[0]]) if reached.size else None})
                rows.append({"setting": setting, "agent": agent, "seed": seed, "budget_env_steps": budget,
                             "target_success": target, **figures[-1]})
            if len(figures) > 1:
                firsts = [f["first_env_steps_at_target"] for f in figures]
                rows.append({"setting": setting, "agent": agent, "seed": "median", "budget_env_steps": budget,
                             "target_success": target,
                             "last_env_steps": min(f["last_env_steps"] for f in figures),
                             **{key: round(float(np.median([f[key] for f in figures])), 3)
                                for key in ("success_at_budget", "mean_last")},
                             # a run that never reached the target counts as later than every one that did
                             "first_env_steps_at_target": median_or_none(firsts)})
    return rows


def median_or_none(values: list[int | None]) -> int | None:
    """The median of values, a None counting as larger than any number; None when the median is one."""
    ordered = sorted(values, key=lambda v: math.inf if v is None else v)
    middle = ordered[(len(ordered) - 1) // 2], ordered[len(ordered) // 2]
    return None if None in middle else int(round((middle[0] + middle[1]) / 2))


def agent_colours(agents) -> dict[str, str]:
    """One matplotlib colour ("C0", "C1", ...) per agent name, by sorted name, so that an agent
    has the same colour in every panel of a figure whichever agents each panel holds."""
    return {agent: f"C{k}" for k, agent in enumerate(sorted(set(agents)))}


def plot_binned_success(rows: list[dict[str, object]], path: pathlib.Path, low_key: str = "goal_low_rad",
                        high_key: str = "goal_high_rad", xlabel: str = "goal (rad)",
                        value_key: str = "success_rate", count_key: str = "episodes",
                        ylabel: str = "evaluation success rate") -> None:
    """Bars of a rate per bin (per_goal_table's, start_error_table's or final_error_table's rows):
    one panel per goal setting, one bar of rows[value_key] per agent and bin (rows[low_key],
    rows[high_key]), each labelled with its number of episodes, rows[count_key]."""
    settings = list(dict.fromkeys(str(r["setting"]) for r in rows))
    colours = agent_colours(str(r["agent"]) for r in rows)
    figure, axes = plt.subplots(1, len(settings), figsize=(4.5 * len(settings), 3.2), dpi=100, squeeze=False)
    for column, setting in enumerate(settings):
        ax = axes[0, column]
        mine = [r for r in rows if r["setting"] == setting]
        bins = list(dict.fromkeys((r[low_key], r[high_key]) for r in mine))
        agents = sorted({str(r["agent"]) for r in mine})
        width = 0.8 / len(agents)
        for k, agent in enumerate(agents):
            for r in (r for r in mine if r["agent"] == agent):
                x = bins.index((r[low_key], r[high_key])) + (k - (len(agents) - 1) / 2) * width
                bar = ax.bar(x, r[value_key], width, color=colours[agent], label=agent)
                ax.bar_label(bar, labels=[f"n={r[count_key]}"], fontsize=6)
        ax.set_xticks(range(len(bins)), [f"{a:+.2f}" if a == b else f"[{a:+.2f},{b:+.2f})" for a, b in bins],
                      fontsize=7, rotation=30 if len(bins) > 4 else 0, ha="right" if len(bins) > 4 else "center")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper left")
        ax.set_ylim(0, 1.15)
        ax.set_title(f"task={setting}")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3, axis="y")
    axes[0, 0].set_ylabel(ylabel)
    figure.tight_layout()
    _save(figure, path)


def plot_comparison(curves: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]],
                    path: pathlib.Path, budget_env_steps: dict[str, int] | None = None,
                    target_success: dict[str, float] | None = None) -> None:
    """Writes comparison_figure(curves, budget_env_steps, target_success) to path."""
    _save(comparison_figure(curves, budget_env_steps, target_success), path)


def comparison_figure(curves: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]],
                      budget_env_steps: dict[str, int] | None = None,
                      target_success: dict[str, float] | None = None) -> "matplotlib.figure.Figure":
    """The comparison figure: one column per goal setting, evaluation success rate (top) and mean
    return (bottom) against environment steps (in thousands); per agent the mean over its seeds
    and the min-max band. curves: setting -> agent -> one (env_steps, success, return) per seed.
    Seeds are compared at the steps all of them reached; a seed that went further goes on alone,
    a thin line of its agent's colour, so a short seed does not hide the others. budget_env_steps / target_success
    (setting -> value, e.g. plot-results' at_budget): each column's steps axis runs to its budget
    (runs still going show how far they are), and a dotted line marks the success wanted. An agent
    has one colour in every column."""
    budget_env_steps, target_success = budget_env_steps or {}, target_success or {}
    settings = list(curves)
    colours = agent_colours(agent for runs in curves.values() for agent in runs)
    figure, axes = plt.subplots(2, len(settings), figsize=(4.5 * len(settings), 6), dpi=100, squeeze=False,
                                sharex="col")
    for column, setting in enumerate(settings):
        for agent in sorted(curves[setting]):
            seeds = curves[setting][agent]
            length = min(len(steps) for steps, _, _ in seeds)
            steps = seeds[0][0][:length]
            for row, values in ((0, [s[1][:length] for s in seeds]), (1, [s[2][:length] for s in seeds])):
                stacked = np.stack(values)
                label = f"{agent} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})"
                line, = axes[row, column].plot(steps, stacked.mean(0), color=colours[agent], label=label)
                if len(seeds) > 1:
                    axes[row, column].fill_between(steps, stacked.min(0), stacked.max(0), color=line.get_color(),
                                                   alpha=0.2)
                for seed in seeds:
                    if len(seed[0]) > length:  # from the last step all seeds reached on
                        axes[row, column].plot(seed[0][length - 1:], seed[1 + row][length - 1:], color=line.get_color(),
                                               linewidth=0.8, alpha=0.7)
        axes[0, column].set_title(f"task={setting}")
        axes[0, column].set_ylim(-0.05, 1.05)
        if setting in target_success:
            axes[0, column].axhline(target_success[setting], color="0.4", linestyle=":", linewidth=1,
                                    label=f"goal {target_success[setting]:.0%}")
        if setting in budget_env_steps:
            axes[1, column].set_xlim(0, budget_env_steps[setting] * 1.02)
        axes[1, column].xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
        axes[1, column].set_xlabel("environment steps")
        for row in (0, 1):
            axes[row, column].grid(alpha=0.3)
        axes[0, column].legend(fontsize=7, loc="upper left")
    axes[0, 0].set_ylabel("evaluation success rate")
    axes[1, 0].set_ylabel("evaluation mean return")
    figure.tight_layout()
    return figure

