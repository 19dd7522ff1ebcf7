"""Running episodes with a fixed policy: per-episode metrics, progress bar, videos."""

from __future__ import annotations

import csv
import io
import pathlib
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from slac_robot.env import ValveTurnEnv
from slac_robot.policies import Policy
from slac_robot.runtime.plots import plot_valve_errors
from slac_robot.runtime.stop import StopSignal
from slac_robot.runtime.video import VideoWriter
from slac_robot.storage import append_atomically, write_atomically


@dataclass(frozen=True)
class EpisodeMetrics:
    """What one episode achieved: return, final |valve - goal|, success, steps."""

    episode: int
    goal_rad: float
    initial_valve_rad: float
    episode_return: float
    final_abs_error_rad: float
    success: bool
    steps: int
    refused_actions: int


def run_episodes(
    env: ValveTurnEnv,
    policy: Policy,
    episodes: int,
    seed: int,
    out_dir: pathlib.Path,
    agent_video: bool,
    agent_video_scale: int,
    view_video: bool,
    stop: StopSignal | None = None,
    reset_options: list[dict] | None = None,
) -> list[EpisodeMetrics]:
    """Runs `episodes` episodes, seeded seed, seed+1, ..., episode i reset with reset_options[i]
    when given (env.evaluation_options: the goals spread over the task's); writes into out_dir:

    episodes.csv                  one row of EpisodeMetrics per episode (written as it ends);
    valve_error.png               each episode's goal - valve angle against time;
    episode_NNN_agent.mp4         the agent camera, when agent_video;
    episode_NNN_view.mp4          the third-person camera, when view_video (needs env.render()).
    Returns the metrics. With `stop`, a requested stop raises `Interrupted` between two steps,
    after the finished episodes' rows, the videos so far and the plot are written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fps = 1.0 / env.clock.period_s
    results: list[EpisodeMetrics] = []
    errors: list[np.ndarray] = []
    fields = list(EpisodeMetrics.__dataclass_fields__)
    csv_path = out_dir / "episodes.csv"
    write_atomically(csv_path, _csv_lines(fields, None))
    with tqdm(total=episodes * env.task.episode_steps, unit="step", desc="rollout") as progress:
        try:
            for episode in range(episodes):
                videos = {}
                if agent_video:
                    videos["agent"] = VideoWriter(out_dir / f"episode_{episode:03d}_agent.mp4", fps, agent_video_scale)
                if view_video:
                    videos["view"] = VideoWriter(out_dir / f"episode_{episode:03d}_view.mp4", fps)
                try:
                    options = reset_options[episode] if reset_options is not None else None
                    metrics, episode_errors = _run_one(
                        env, policy, episode, seed + episode, options, videos, progress, stop)
                finally:  # an interrupted episode still leaves playable videos
                    for video in videos.values():
                        video.close()
                results.append(metrics)
                errors.append(episode_errors)
                append_atomically(csv_path, _csv_lines(fields, asdict(metrics)))  # no half row on a full disk
                progress.set_postfix(success=f"{sum(r.success for r in results)}/{len(results)}")
        finally:  # when interrupted too: plot the episodes that finished
            if results:
                plot_valve_errors(
                    errors, [r.goal_rad for r in results], env.clock.period_s,
                    env.task.success_threshold_rad, out_dir / "valve_error.png",
                )
    return results


def _csv_lines(fields: list[str], row: dict | None) -> bytes:
    """The header (row None) or one row of episodes.csv, as bytes."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)
    if row is None:
        writer.writeheader()
    else:
        writer.writerow(row)
    return text.getvalue().encode()


def _run_one(env, policy, episode, seed, options, videos, progress, stop) -> tuple[EpisodeMetrics, np.ndarray]:
    """Runs one episode; returns its metrics and its error (goal - valve) at every step."""
    observation, info = env.reset(seed=seed, options=options)
    policy.reset(seed)
    initial_valve_rad = info["valve_rad"]
    refused_before = info["refused_actions"]
    _record(env, observation, videos)
    errors = [info["error_rad"]]
    total, truncated, terminated = 0.0, False, False
    while not (terminated or truncated):
        if stop is not None:
            stop.check()
        action = policy.act(observation, info)
        observation, reward, terminated, truncated, info = env.step(action)
        total += reward
        errors.append(info["error_rad"])
        _record(env, observation, videos)
        progress.update(1)
    metrics = EpisodeMetrics(
        episode=episode,
        goal_rad=info["goal_rad"],
        initial_valve_rad=initial_valve_rad,
        episode_return=total,
        final_abs_error_rad=abs(info["error_rad"]),
        success=bool(info["success"]),
        steps=info["step"],
        refused_actions=info["refused_actions"] - refused_before,
    )
    return metrics, np.array(errors)


def _record(env, observation, videos) -> None:
    if "agent" in videos:
        videos["agent"].append(observation["image"])
    if "view" in videos:
        videos["view"].append(env.render())
