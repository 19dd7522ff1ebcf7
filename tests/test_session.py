"""`slac-robot train` as a session: the actor and the learner in their own processes.

Real processes throughout: the actor is the `slac-robot` script, the learner its spawned child.
The waits below are bounded loops for something to happen (a file, a process ending), not timing
checks."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest
import torch

from slac_robot.agent.replay import SequenceReplay
from slac_robot.safety import read_events
from tests.test_cli import script_path

EPISODE_STEPS = 10
SESSION = [
    "session.learner=process",
    "device=cpu",
    "agent.width=0.125",
    "agent.hidden=[32,32]",
    "agent.z2_dim=16",
    f"task.episode_steps={EPISODE_STEPS}",
    "schedule.initial_collection_steps=20",
    "schedule.initial_model_updates=3",
    "schedule.model_batch_size=4",
    "schedule.sac_batch_size=8",
    "schedule.eval_every_episodes=0",
    "session.publish_every_updates=2",
    "session.checkpoint_every_updates=10",
    "session.log_every_updates=5",
    "session.poll_s=0.02",
]


def start(out_dir, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [script_path(), "train", f"out_dir={out_dir}", *SESSION, *overrides],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for(condition, what: str, limit_s: float = 180.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def episodes(out_dir) -> list:
    return sorted((out_dir / "replay").glob("episode_*.npz"))


def learner_pid(out_dir) -> int:
    match = re.search(r"learner: pid (\d+)", (out_dir / "learner.log").read_text())
    return int(match[1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (ended, not yet reaped) counts as ended
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def learner_started(out_dir) -> bool:
    log = out_dir / "learner.log"
    return log.is_file() and "learner: pid" in log.read_text()


def replay_of(out_dir) -> SequenceReplay:
    return SequenceReplay(out_dir / "replay", action_dim=9, capacity_steps=10_000, sequence_length=8,
                          extras={"goal": 2}, expected_episode_steps=EPISODE_STEPS)


@pytest.fixture(scope="module")
def session_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("session")
    process = start(out_dir, "schedule.total_env_steps=100")
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return out_dir, out


def test_a_session_records_every_episode_and_reports_its_control_loop(session_run):
    out_dir, out = session_run
    assert len(episodes(out_dir)) == 100 // EPISODE_STEPS
    loop = json.loads((out_dir / "control_loop.json").read_text())
    assert loop["rate_hz"] == pytest.approx(10.0)
    assert loop["ticks"] >= 100  # every episode step, and the resets' ticks
    assert "control loop at 10 Hz" in out


def test_the_learner_trains_checkpoints_and_the_actor_takes_up_its_policy(session_run):
    out_dir, _ = session_run
    match = re.search(r"stopped after (\d+) model and (\d+) SAC updates", (out_dir / "learner.log").read_text())
    assert match, (out_dir / "learner.log").read_text()
    sac_updates = int(match[2])
    assert sac_updates > 0
    checkpoint = torch.load(sorted((out_dir / "checkpoints").glob("*.pt"))[-1], weights_only=False)
    assert checkpoint["agent"]["sac_updates"] == sac_updates and checkpoint["pretrained"]
    with open(out_dir / "train_episodes.csv") as f:
        used = [int(row["policy_sac_updates"]) for row in csv.DictReader(f)]
    assert used[0] == 0 and used[-1] > 0  # random first; later episodes ran published weights
    assert used == sorted(used)
    assert (out_dir / "tensorboard" / "learner").is_dir()


def test_eval_runs_the_sessions_policy(session_run, tmp_path):
    out_dir, _ = session_run
    run = subprocess.run([script_path(), "eval", f"run={out_dir}", "episodes=1", f"out_dir={tmp_path}",
                          f"task.episode_steps={EPISODE_STEPS}", "video.view=false"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "1 episodes: success" in run.stdout
    assert (tmp_path / "episodes.csv").is_file()


def test_the_actor_killed_hard_loses_only_its_unfinished_episode_and_resumes(tmp_path):
    out_dir = tmp_path / "run"
    process = start(out_dir, "schedule.total_env_steps=100000")
    try:
        wait_for(lambda: len(episodes(out_dir)) >= 3 and (out_dir / "policy.pt").is_file(), "3 episodes and a policy")
        learner = learner_pid(out_dir)
        process.kill()  # SIGKILL: no cleanup at all in the actor
        process.communicate(timeout=60)
    finally:
        process.kill()
    # The learner notices its actor is gone, checkpoints and ends.
    wait_for(lambda: not alive(learner), "the orphaned learner to end", limit_s=120)
    assert "stopped after" in (out_dir / "learner.log").read_text()
    finished = episodes(out_dir)
    replay = replay_of(out_dir)
    assert replay.total_episodes == len(finished) and not (out_dir / "replay" / "corrupt").exists()
    torch.load(sorted((out_dir / "checkpoints").glob("*.pt"))[-1], weights_only=False)

    target = EPISODE_STEPS * (len(finished) + 2)
    resumed = subprocess.run([script_path(), "train", f"resume={out_dir}", *SESSION,
                              f"schedule.total_env_steps={target}"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(finished)} episodes recorded" in resumed.stdout
    assert len(episodes(out_dir)) == len(finished) + 2
    assert "resumed from" in (out_dir / "learner.log").read_text()


def test_a_dead_learner_ends_the_session_safely(tmp_path):
    out_dir = tmp_path / "run"
    process = start(out_dir, "schedule.total_env_steps=100000")
    try:
        wait_for(lambda: learner_started(out_dir) and len(episodes(out_dir)) >= 1, "the learner and one episode")
        os.kill(learner_pid(out_dir), signal.SIGKILL)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 1
    assert "the learner process ended (exit code -9)" in err
    assert f"resume with: slac-robot train resume={out_dir}" in err
    stops = [e for e in read_events(out_dir / "safety_events.jsonl") if e["kind"] == "safe_stop"]
    assert stops and "LearnerDied" in stops[-1]["reason"]
    assert replay_of(out_dir).total_episodes == len(episodes(out_dir)) >= 1


def test_sigterm_makes_the_robot_safe_and_the_learner_checkpoints(tmp_path):
    out_dir = tmp_path / "run"
    process = start(out_dir, "schedule.total_env_steps=100000")
    try:
        wait_for(lambda: (out_dir / "policy.pt").is_file(), "a published policy")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=180)
    finally:
        process.kill()
    assert process.returncode == 143, err
    assert "robot made safe" in err
    stops = [e for e in read_events(out_dir / "safety_events.jsonl") if e["kind"] == "safe_stop"]
    assert stops and "SIGTERM" in stops[-1]["reason"]
    assert "stopped after" in (out_dir / "learner.log").read_text()
    assert np.all([p.stat().st_size > 0 for p in episodes(out_dir)])
