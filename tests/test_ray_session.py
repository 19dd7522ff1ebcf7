"""`slac-robot train session.learner=ray`: the learner and the robots' actors as Ray actors.

Real parts throughout: a real Ray instance (one head for the module, started as the README's
`ray start --head` with token authentication, which every session here joins), the real CLI
script as the driver, real worker processes killed with SIGKILL, the real simulated claw. The
counts are the point: every episode an actor recorded is in the learner's replay, once.
The waits are bounded loops for something to happen, never timing checks."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from omegaconf import OmegaConf

from slac_robot.agent.replay import episode_stamps
from slac_robot.safety import read_events
from tests.test_cli import script_path
from tests.test_session import SESSION, alive, wait_for

EPISODE_STEPS = 10
RAY_SESSION = [o for o in SESSION if not o.startswith("session.learner=")] + [
    "session.learner=ray", "session.ray.ack_timeout_s=5", "session.ray.connect_timeout_s=120"]


def ray_script() -> str:
    return os.path.join(os.path.dirname(sys.executable), "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """A one-node Ray cluster for the module, started as the README says, with its own token;
    yields (address, env) for the sessions that join it; stopped with its process group."""
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen(
        [ray_script(), "start", "--head", f"--port={port}", "--include-dashboard=false", "--num-cpus=8",
         f"--temp-dir={temp_dir}", "--disable-usage-stats", "--resources", '{"claw_b": 1}', "--block"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            probe = subprocess.run([ray_script(), "status", f"--address={address}"], env=env,
                                   capture_output=True, text=True, timeout=60)
            if probe.returncode == 0:
                break
            assert head.poll() is None, head.stdout.read()
            assert time.monotonic() < deadline, probe.stderr
            time.sleep(1.0)
        yield address, env
    finally:
        stop_node(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def stop_node(node: subprocess.Popen) -> None:
    """Ends a node started by `ray start --block` in its own process group, and everything it
    started (its `ray start` hangs on SIGTERM at times: a node that dies is what is tested anyway)."""
    try:
        os.killpg(node.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    node.wait(timeout=60)


def join_node(address: str, env: dict, resources: str) -> subprocess.Popen:
    """A second Ray node on this machine, as a robot computer joins: `ray start --address=...
    --resources=...`; returns once the cluster counts its resource."""
    node = subprocess.Popen([ray_script(), "start", f"--address={address}", "--num-cpus=2", "--resources", resources,
                             "--block"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    name = resources.split('"')[1]
    wait_for(lambda: f"/1.0 {name}" in subprocess.run([ray_script(), "status", f"--address={address}"], env=env,
                                                       capture_output=True, text=True, timeout=60).stdout
             or node.poll() is not None, f"the node with {resources} to join", limit_s=120)
    assert node.poll() is None
    return node


def start(out_dir, env, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen([script_path(), "train", f"out_dir={out_dir}", *RAY_SESSION, *overrides],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def on(cluster) -> tuple[str, dict]:
    address, env = cluster
    return f"session.ray.address={address}", env


def replay_origins(out_dir) -> dict[str, list[int]]:
    """robot -> the robot's episode indices the learner's replay holds, sorted."""
    found: dict[str, list[int]] = {}
    for path in sorted((out_dir / "replay").glob("episode_*.npz")):
        robot, index = episode_stamps(path).origin
        found.setdefault(robot, []).append(index)
    return {robot: sorted(indices) for robot, indices in found.items()}


def actor_rows(out_dir, robot: str) -> int:
    """Episodes the robot's actor recorded (its train_episodes.csv rows)."""
    path = out_dir / "actors" / robot / "train_episodes.csv"
    if not path.is_file():
        return 0
    with open(path) as f:
        return len(list(csv.DictReader(f)))


def outbox(out_dir, robot: str) -> list:
    return sorted((out_dir / "actors" / robot / "outbox").glob("episode_*.npz"))


def pids(log_path, pattern: str) -> list[int]:
    return [int(m) for m in re.findall(pattern, log_path.read_text())] if log_path.is_file() else []


def at_learner(out_dir, robot: str) -> int:
    return len(replay_origins(out_dir).get(robot, [])) if (out_dir / "replay").is_dir() else 0


def assert_nothing_lost(out_dir, robots: list[str], in_flight: dict[str, int] | None = None) -> None:
    """Every robot's episodes are in the learner's replay once each, indices 0..n-1 without a gap,
    as many as its actor recorded (in_flight: episodes a killed actor's writer thread still held,
    recorded in its CSV but never on its disk), and none left in an outbox."""
    origins = replay_origins(out_dir)
    for robot in robots:
        held = origins.get(robot, [])
        assert held == list(range(len(held))), f"{robot}: gaps or duplicates in {held}"
        assert outbox(out_dir, robot) == []
        recorded = actor_rows(out_dir, robot)
        assert recorded - (in_flight or {}).get(robot, 0) <= len(held) <= recorded, (robot, held, recorded)


def test_bad_ray_settings_end_in_one_line_before_anything_starts(tmp_path):
    runs = {
        "session.actors=2": ("session.learner=process", "session.actors=2"),
        "RAY_AUTH_MODE=token": ("session.learner=ray", "session.ray.address=10.1.2.3:6379"),
        "session.robots": ("session.learner=ray", "session.robots=[claw_a,claw_a]"),
        "RAY_AUTH_MODE=disabled": ("session.learner=ray",),
    }
    for named, overrides in runs.items():
        env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
        if named == "RAY_AUTH_MODE=disabled":
            env["RAY_AUTH_MODE"] = "disabled"
        run = subprocess.run([script_path(), "train", f"out_dir={tmp_path / 'run'}", *overrides],
                             capture_output=True, text=True, timeout=120, env=env)
        assert run.returncode == 2, run.stderr
        assert named in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert not (tmp_path / "run").exists()


def test_two_simulated_claws_on_a_local_ray_instance_every_episode_reaches_the_learner(tmp_path):
    # No address: the session starts its own local Ray instance (the README's one-machine command).
    out_dir = tmp_path / "run"
    process = start(out_dir, {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
                    "session.actors=2", "schedule.total_env_steps=100", "schedule.eval_every_episodes=2",
                    "schedule.eval_episodes=1")
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    # 10 episodes of 10 steps, unless a trip cut one short: on a loaded machine a claw's 10 Hz
    # loop overruns and its safety layer ends the episode (then the 100 steps take more episodes).
    recorded = {robot: actor_rows(out_dir, robot) for robot in ("robot0", "robot1")}
    assert min(recorded.values()) >= 1 and sum(recorded.values()) >= 10, recorded
    summary = re.search(r"(\d+) environment steps, (\d+) episodes from 2 robots", out)
    assert summary and int(summary[1]) >= 100 and int(summary[2]) == sum(recorded.values()), out
    assert_nothing_lost(out_dir, ["robot0", "robot1"])
    assert replay_origins(out_dir) == {robot: list(range(n)) for robot, n in recorded.items()}
    with open(out_dir / "train_episodes.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["robot"] for r in rows) == ["robot0"] * recorded["robot0"] + ["robot1"] * recorded["robot1"]
    assert sum(int(r["steps"]) for r in rows) == int(summary[1])
    assert all(int(r["steps"]) == EPISODE_STEPS or r["tripped"] for r in rows), rows
    assert all(r["return"] and r["robot_trips_per_1000_steps"] for r in rows)
    # each claw's control loop is paced: its jitter and late ticks per episode, measured there,
    # shown here; an episode ended by an `overrun` trip counted the late ticks in a row that trip
    assert all(0.0 <= float(r["robot_period_error_p99_ms"]) and int(r["robot_overruns"]) >= 0 for r in rows)
    in_a_row = OmegaConf.load(out_dir / "config.yaml").safety.health.max_overruns_in_a_row
    assert all(int(r["robot_overruns"]) >= in_a_row for r in rows if r["tripped"] == "overrun")
    assert (out_dir / "tensorboard" / "robots").is_dir() and (out_dir / "tensorboard" / "learner").is_dir()
    for robot in ("robot0", "robot1"):
        assert (out_dir / "actors" / robot / "control_loop.json").is_file()
        assert (out_dir / "actors" / robot / "safety_events.jsonl").is_file()
    # each claw its own seed: their first (random) episodes differ
    first = [open(p, "rb").read() for p in sorted((out_dir / "replay").glob("episode_0000000[01]_*.npz"))]
    assert first[0] != first[1]
    log = (out_dir / "learner.log").read_text()
    match = re.search(r"stopped after (\d+) model and (\d+) SAC updates", log)
    assert match and int(match[2]) > 0, log
    with open(out_dir / "actors" / "robot0" / "train_episodes.csv") as f:
        used = [int(r["policy_sac_updates"]) for r in csv.DictReader(f)]
    assert used[-1] > 0  # the policy published through Ray reached the actor
    assert (out_dir / "policy.pt").is_file() and sorted((out_dir / "checkpoints").glob("*.pt"))
    # the learner's probe scores the first claw's evaluation episodes (on this machine's disk)
    assert (out_dir / "actors" / "robot0" / "eval.csv").is_file()
    with open(out_dir / "probe.csv") as f:
        probes = list(csv.DictReader(f))
    assert probes and 0.0 <= float(probes[-1]["valve_error_rad"]) <= math.pi


def test_an_actor_killed_hard_rejoins_and_no_episode_is_lost(tmp_path, cluster):
    address, env = on(cluster)
    out_dir = tmp_path / "run"
    process = start(out_dir, env, address, "session.actors=2", "schedule.total_env_steps=160")
    try:
        wait_for(lambda: at_learner(out_dir, "robot0") >= 2, "two of robot0's episodes at the learner")
        victim = pids(out_dir / "actors" / "robot0" / "actor.log", r"actor robot0: pid (\d+)")[-1]
        before = at_learner(out_dir, "robot1")
        os.kill(victim, signal.SIGKILL)
        out, err = process.communicate(timeout=600)
    finally:
        process.kill()
    assert process.returncode == 0, err
    restarted = pids(out_dir / "actors" / "robot0" / "actor.log", r"actor robot0: pid (\d+)")
    assert len(restarted) == 2 and restarted[0] == victim and not alive(victim)
    assert at_learner(out_dir, "robot1") > before  # the learner went on with the other claw
    assert_nothing_lost(out_dir, ["robot0", "robot1"], in_flight={"robot0": 1})


def test_a_learner_killed_hard_is_restarted_and_the_actors_resend_their_backlog(tmp_path, cluster):
    address, env = on(cluster)
    out_dir = tmp_path / "run"
    process = start(out_dir, env, address, "session.actors=2", "schedule.total_env_steps=200",
                    "session.ray.learner_restarts=1")
    try:
        wait_for(lambda: list((out_dir / "checkpoints").glob("*.pt")) and at_learner(out_dir, "robot1") >= 2,
                 "a checkpoint and robot1's episodes")
        learner = pids(out_dir / "learner.log", r"learner: pid (\d+)")[-1]
        os.kill(learner, signal.SIGKILL)
        out, err = process.communicate(timeout=600)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert len(pids(out_dir / "learner.log", r"learner: pid (\d+)")) == 2
    assert "resumed from" in (out_dir / "learner.log").read_text()
    for robot in ("robot0", "robot1"):
        stops = [e for e in read_events(out_dir / "actors" / robot / "safety_events.jsonl") if e["kind"] == "safe_stop"]
        assert any("LearnerLost" in e["reason"] for e in stops), stops
    assert_nothing_lost(out_dir, ["robot0", "robot1"])
    assert sum(len(v) for v in replay_origins(out_dir).values()) == 20


def test_a_learner_gone_for_good_the_actors_keep_their_episodes_and_resume_sends_them(tmp_path, cluster):
    address, env = on(cluster)
    out_dir = tmp_path / "run"
    process = start(out_dir, env, address, "session.actors=2", "schedule.total_env_steps=100000",
                    "session.ray.learner_restarts=0", "session.ray.learner_wait_s=3")
    try:
        wait_for(lambda: at_learner(out_dir, "robot0") >= 1 and at_learner(out_dir, "robot1") >= 1,
                 "an episode of each claw at the learner")
        os.kill(pids(out_dir / "learner.log", r"learner: pid (\d+)")[-1], signal.SIGKILL)
        _, err = process.communicate(timeout=600)
    finally:
        process.kill()
    assert process.returncode == 1, err
    assert f"resume with: slac-robot train resume={out_dir}" in err
    for robot in ("robot0", "robot1"):
        stops = [e for e in read_events(out_dir / "actors" / robot / "safety_events.jsonl") if e["kind"] == "safe_stop"]
        assert any("LearnerLost" in e["reason"] for e in stops), stops
        # what the learner did not acknowledge is on the actor's disk: nothing lost
        assert at_learner(out_dir, robot) + len(outbox(out_dir, robot)) == actor_rows(out_dir, robot)
    recorded = {r: actor_rows(out_dir, r) for r in ("robot0", "robot1")}
    target = EPISODE_STEPS * (sum(recorded.values()) + 2)
    per_claw = math.ceil(math.ceil(target / 2) / EPISODE_STEPS)  # each claw collects its half
    resumed = subprocess.run([script_path(), "train", f"resume={out_dir}", *RAY_SESSION, address,
                              f"schedule.total_env_steps={target}"], capture_output=True, text=True,
                             timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert_nothing_lost(out_dir, ["robot0", "robot1"])
    assert {r: len(v) for r, v in replay_origins(out_dir).items()} == {
        r: max(n, per_claw) for r, n in recorded.items()}


def test_each_robot_gets_its_own_settings_and_name():
    from omegaconf import OmegaConf

    from slac_robot.config import ConfigError, load_config
    from slac_robot.runtime.ray_session import actor_config, robot_names

    cfg = load_config("train", ["session.learner=ray", "session.robots=[claw_a,claw_b]",
                                "session.robot_overrides={claw_b: ['backend.substeps=20', 'seed=5']}"])
    assert robot_names(cfg.session) == ["claw_a", "claw_b"]
    plain = OmegaConf.to_container(cfg, resolve=True)
    a = actor_config(plain, "claw_a", plain["session"]["robot_overrides"])
    b = actor_config(plain, "claw_b", plain["session"]["robot_overrides"])
    assert (a["backend"]["substeps"], a["seed"]) == (cfg.backend.substeps, 0)
    assert (b["backend"]["substeps"], b["seed"]) == (20, 5)
    with pytest.raises(ConfigError, match="letters, digits"):
        robot_names(load_config("train", ["session.robots=['claw a']"]).session)


def test_an_episode_file_carries_its_robot_and_is_placed_once_under_a_free_index(tmp_path):
    import numpy as np

    from slac_robot.agent.replay import (Episode, episode_bytes, episode_stamps, episode_summary,
                                         place_episode_file, read_episode)

    episode = Episode(images=np.zeros((4, 8, 8, 3), np.uint8), extras={"goal": np.ones((4, 2), np.float32)},
                      actions=np.zeros((3, 9), np.float32), rewards=np.array([1, 2, 3], np.float32),
                      terminated=False, truncated=True, tripped="speed", robot="claw_a", robot_episode=7)
    first = place_episode_file(tmp_path, 0, 3, episode_bytes(episode))
    second = place_episode_file(tmp_path, 0, 3, episode_bytes(episode))  # index 0 is taken: the next free one
    assert (first.name, second.name) == ("episode_00000000_3.npz", "episode_00000001_3.npz")
    assert episode_stamps(first).origin == ("claw_a", 7)
    assert episode_summary(first) == (0, 3, 6.0, "speed")
    back = read_episode(first, (8, 8, 3), 9, {"goal": 2})
    assert (back.robot, back.robot_episode, back.tripped) == ("claw_a", 7, "speed")
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name, second.name]  # no temporary left
    # the control loop's jitter over the episode travels with it when the loop measured it
    stamps = episode_stamps(first)
    assert math.isnan(stamps.period_error_p99_ms) and stamps.overruns == -1 and back.overruns == -1
    timed = place_episode_file(tmp_path, 5, 3, episode_bytes(
        dataclasses.replace(episode, period_error_p99_ms=1.25, overruns=2)))
    assert (episode_stamps(timed).period_error_p99_ms, episode_stamps(timed).overruns) == (1.25, 2)
    assert read_episode(timed, (8, 8, 3), 9, {"goal": 2}).overruns == 2


def test_a_robot_computer_that_leaves_and_joins_again_loses_nothing_and_the_others_go_on(tmp_path, cluster):
    # claw_a's actor lives on a second node (its resource); claw_b's on the head. The node dies
    # whole (its raylet and workers killed with SIGKILL), then a node with claw_a joins again.
    address, env = cluster
    out_dir = tmp_path / "run"
    node = join_node(address, env, '{"claw_a": 1}')
    process = None
    try:
        process = start(out_dir, env, f"session.ray.address={address}", "session.robots=[claw_a,claw_b]",
                        "schedule.total_env_steps=160")
        wait_for(lambda: at_learner(out_dir, "claw_a") >= 2, "two of claw_a's episodes at the learner")
        first = pids(out_dir / "actors" / "claw_a" / "actor.log", r"actor claw_a: pid (\d+)")
        stop_node(node)
        before = at_learner(out_dir, "claw_b")
        wait_for(lambda: at_learner(out_dir, "claw_b") > before, "the learner going on with claw_b")
        assert not alive(first[-1])
        node = join_node(address, env, '{"claw_a": 1}')
        out, err = process.communicate(timeout=600)
    finally:
        if process is not None:
            process.kill()
        stop_node(node)
    assert process.returncode == 0, err
    assert len(pids(out_dir / "actors" / "claw_a" / "actor.log", r"actor claw_a: pid (\d+)")) == 2
    assert_nothing_lost(out_dir, ["claw_a", "claw_b"], in_flight={"claw_a": 1})
    assert {r: len(v) for r, v in replay_origins(out_dir).items()} == {"claw_a": 8, "claw_b": 8}


def test_ctrl_c_makes_every_robot_safe_and_resume_goes_on_from_what_each_recorded(tmp_path, cluster):
    address, env = on(cluster)
    out_dir = tmp_path / "run"
    process = subprocess.Popen([script_path(), "train", f"out_dir={out_dir}", *RAY_SESSION, address,
                                "session.actors=2", "schedule.total_env_steps=100000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        wait_for(lambda: at_learner(out_dir, "robot0") >= 1 and at_learner(out_dir, "robot1") >= 1,
                 "an episode of each claw at the learner")
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C at a terminal: the whole process group
        _, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert f"resume with: slac-robot train resume={out_dir}" in err
    for robot in ("robot0", "robot1"):
        stops = [e for e in read_events(out_dir / "actors" / robot / "safety_events.jsonl") if e["kind"] == "safe_stop"]
        assert stops and "SIGINT" in stops[-1]["reason"]
    assert_nothing_lost(out_dir, ["robot0", "robot1"])
    assert "stopped after" in (out_dir / "learner.log").read_text()


def test_a_frozen_learner_looks_like_a_dropped_link_and_no_episode_is_lost_or_doubled(tmp_path, cluster):
    # SIGSTOP: the learner's process holds its connections but answers nothing, as behind a link
    # that dropped. Calls time out (ack_timeout_s), each actor makes its robot safe and waits;
    # SIGCONT: the calls queued meanwhile run (an episode the actor will send again among them).
    address, env = on(cluster)
    out_dir = tmp_path / "run"
    process = start(out_dir, env, address, "session.actors=2", "schedule.total_env_steps=160",
                    "session.ray.ack_timeout_s=2")
    learner = None
    try:
        wait_for(lambda: at_learner(out_dir, "robot0") >= 1 and at_learner(out_dir, "robot1") >= 1,
                 "an episode of each claw at the learner")
        learner = pids(out_dir / "learner.log", r"learner: pid (\d+)")[-1]
        os.kill(learner, signal.SIGSTOP)

        def both_safe() -> bool:
            logs = [out_dir / "actors" / r / "actor.log" for r in ("robot0", "robot1")]
            return all("robot made safe, waiting" in log.read_text() for log in logs)

        wait_for(both_safe, "both actors to make their robots safe and wait")
        os.kill(learner, signal.SIGCONT)
        out, err = process.communicate(timeout=600)
    finally:
        if learner is not None:  # never leave it stopped (it may have ended since: nothing to do)
            with contextlib.suppress(ProcessLookupError):
                os.kill(learner, signal.SIGCONT)
        process.kill()
    assert process.returncode == 0, err
    for robot in ("robot0", "robot1"):
        stops = [e for e in read_events(out_dir / "actors" / robot / "safety_events.jsonl") if e["kind"] == "safe_stop"]
        assert any("LearnerLost" in e["reason"] for e in stops), stops
        assert "the learner is back" in (out_dir / "actors" / robot / "actor.log").read_text()
    assert_nothing_lost(out_dir, ["robot0", "robot1"])
    assert {r: len(v) for r, v in replay_origins(out_dir).items()} == {"robot0": 8, "robot1": 8}
    assert len(pids(out_dir / "learner.log", r"learner: pid (\d+)")) == 1  # the same learner throughout


def test_the_learner_stores_a_resent_episode_once_even_after_a_restart(tmp_path):
    # The acknowledgement can be lost after the write (a frozen or restarted learner): the actor
    # sends the episode again, and the learner, restarted or not, must not store it twice.
    import numpy as np
    from omegaconf import OmegaConf

    from slac_robot.agent.replay import Episode, episode_bytes
    from slac_robot.config import load_config
    from slac_robot.runtime.ray_session import LearnerService

    cfg = OmegaConf.to_container(load_config("train", ["session.learner=ray"]), resolve=True)
    episode = Episode(images=np.zeros((3, 64, 64, 3), np.uint8), extras={}, actions=np.zeros((2, 9), np.float32),
                      rewards=np.array([1, 1], np.float32), terminated=False, truncated=True, robot="claw_a",
                      robot_episode=0)
    content = episode_bytes(episode)
    learner = LearnerService(str(tmp_path), cfg)
    assert learner.ingest("claw_a", 0, 2, content, 2.0, "") is True
    assert learner.ingest("claw_a", 0, 2, content, 2.0, "") is False
    restarted = LearnerService(str(tmp_path), cfg)
    assert restarted.counts["claw_a"].episodes == 1 and restarted.counts["claw_a"].next_index == 1
    assert restarted.ingest("claw_a", 0, 2, content, 2.0, "") is False
    other = episode_bytes(dataclasses.replace(episode, robot="claw_b"))
    assert restarted.ingest("claw_b", 0, 2, other, 2.0, "") is True  # another robot's episode 0
    with pytest.raises(ValueError, match="stamped"):  # bytes that say another robot or index: refused
        restarted.ingest("claw_b", 1, 2, other, 2.0, "")
    assert len(list((tmp_path / "replay").glob("episode_*.npz"))) == 2
    with open(tmp_path / "train_episodes.csv") as f:
        assert [row["robot"] for row in csv.DictReader(f)] == ["claw_a", "claw_b"]


def test_an_outbox_file_the_learner_refuses_is_set_aside_and_the_robot_goes_on(tmp_path):
    # An episode in robot0's outbox stamped as another robot's (a folder copied between robot
    # computers): the learner refuses it, the actor moves it to outbox/corrupt/ (never deleting
    # it) and every episode of its own still reaches the learner.
    import numpy as np

    from slac_robot.agent.replay import Episode, episode_bytes, place_episode_file

    out_dir = tmp_path / "run"
    box = out_dir / "actors" / "robot0" / "outbox"
    box.mkdir(parents=True)
    stranger = Episode(images=np.zeros((3, 64, 64, 3), np.uint8), extras={}, actions=np.zeros((2, 9), np.float32),
                       rewards=np.zeros(2, np.float32), terminated=False, truncated=True, robot="claw_x",
                       robot_episode=0)
    place_episode_file(box, 0, 2, episode_bytes(stranger))
    process = start(out_dir, {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}, "schedule.total_env_steps=50")
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    assert [p.name for p in (box / "corrupt").iterdir()] == ["episode_00000000_2.npz"]
    assert "not sent (the learner refused it" in (out_dir / "actors" / "robot0" / "actor.log").read_text()
    # its own episodes (five of 10 steps; more where a loaded machine's overrun trips cut some
    # short), numbered after the stranger's index
    recorded = actor_rows(out_dir, "robot0")
    assert recorded >= 5 and replay_origins(out_dir) == {"robot0": list(range(1, recorded + 1))}
    assert outbox(out_dir, "robot0") == []
