"""`slac-robot`: the command line, in process (slac_robot.cli.main) and as the installed script."""

from __future__ import annotations

import contextlib
import csv
import io
import math
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf

from slac_robot.cli import main
from slac_robot.config import load_config

COLUMNS = [
    "episode",
    "goal_rad",
    "initial_valve_rad",
    "episode_return",
    "final_abs_error_rad",
    "success",
    "steps",
    "refused_actions",
]
SMOKE_STEPS = 6


def read_rows(out_dir: pathlib.Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(out_dir / "episodes.csv", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def video_frames(path: pathlib.Path) -> list[np.ndarray]:
    """Decodes an MP4 into its frames with imageio's ffmpeg (the writer's own codec path)."""
    import imageio.v2 as imageio

    with contextlib.closing(imageio.get_reader(path, format="ffmpeg")) as reader:
        return [np.asarray(frame) for frame in reader]


def script_path() -> str:
    found = shutil.which("slac-robot")
    if found:
        return found
    beside = pathlib.Path(sys.executable).with_name("slac-robot")
    assert beside.is_file(), "the slac-robot console script is not installed"
    return str(beside)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One in-process rollout with videos: 2 episodes of SMOKE_STEPS steps, default cameras."""
    out_dir = tmp_path_factory.mktemp("smoke")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["rollout", "episodes=2", f"task.episode_steps={SMOKE_STEPS}", f"out_dir={out_dir}"])
    return rc, stdout.getvalue(), out_dir


def test_smoke_rollout_succeeds_and_summarises(smoke_run):
    rc, stdout, out_dir = smoke_run
    assert rc == 0
    assert "2 episodes: success" in stdout
    assert str(out_dir) in stdout


def test_smoke_rollout_writes_episode_metrics(smoke_run):
    _, _, out_dir = smoke_run
    columns, rows = read_rows(out_dir)
    assert columns == COLUMNS
    assert len(rows) == 2
    assert [int(r["episode"]) for r in rows] == [0, 1]
    for row in rows:
        assert int(row["steps"]) == SMOKE_STEPS
        assert int(row["refused_actions"]) == 0
        assert row["success"] in ("True", "False")
        assert float(row["goal_rad"]) == pytest.approx(math.pi / 2, abs=1e-6)  # task=fixed
        assert -math.pi <= float(row["initial_valve_rad"]) <= math.pi
        assert 0.0 <= float(row["final_abs_error_rad"]) <= math.pi
        assert math.isfinite(float(row["episode_return"]))
    # Seeds 0 and 1 draw different start angles.
    assert rows[0]["initial_valve_rad"] != rows[1]["initial_valve_rad"]


def test_smoke_rollout_saves_the_composed_config(smoke_run):
    _, _, out_dir = smoke_run
    saved = OmegaConf.load(out_dir / "config.yaml")
    assert saved.episodes == 2
    assert saved.task.episode_steps == SMOKE_STEPS
    assert saved.out_dir == str(out_dir)
    expected = load_config("rollout", ["episodes=2", f"task.episode_steps={SMOKE_STEPS}", f"out_dir={out_dir}"])
    assert OmegaConf.to_container(saved) == OmegaConf.to_container(expected)


def test_smoke_rollout_plots_the_valve_error(smoke_run):
    _, _, out_dir = smoke_run
    plot = out_dir / "valve_error.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_smoke_rollout_writes_decodable_videos(smoke_run):
    _, _, out_dir = smoke_run
    cfg = load_config("rollout")
    agent_side = (cfg.camera.height_px * cfg.video.agent_scale, cfg.camera.width_px * cfg.video.agent_scale, 3)
    view_side = (cfg.backend.view_camera.height_px, cfg.backend.view_camera.width_px, 3)
    assert view_side == (360, 480, 3)
    assert agent_side == (256, 256, 3)
    names = sorted(p.name for p in out_dir.glob("*.mp4"))
    assert names == [
        "episode_000_agent.mp4",
        "episode_000_view.mp4",
        "episode_001_agent.mp4",
        "episode_001_view.mp4",
    ]
    for episode in range(2):
        for camera, shape in (("agent", agent_side), ("view", view_side)):
            frames = video_frames(out_dir / f"episode_{episode:03d}_{camera}.mp4")
            assert len(frames) == SMOKE_STEPS + 1, camera  # the reset frame and one per step
            assert all(frame.shape == shape for frame in frames), camera
            assert frames[0].std() > 5  # a picture, not a blank frame


def test_video_flags_turn_videos_off(tmp_path, capsys):
    rc = main(
        ["rollout", "episodes=1", "task.episode_steps=2", "video.agent=false", "video.view=false", f"out_dir={tmp_path}"]
    )
    assert rc == 0
    assert list(tmp_path.glob("*.mp4")) == []
    assert len(read_rows(tmp_path)[1]) == 1


def test_agent_video_honours_a_configured_size(tmp_path, capsys):
    rc = main(
        [
            "rollout", "episodes=1", "task.episode_steps=2", "video.agent_scale=1",
            "camera.width_px=48", "camera.height_px=32",
            "backend.view_camera.width_px=160", "backend.view_camera.height_px=120",
            f"out_dir={tmp_path}",
        ]
    )
    assert rc == 0
    agent = video_frames(tmp_path / "episode_000_agent.mp4")
    view = video_frames(tmp_path / "episode_000_view.mp4")
    assert len(agent) == len(view) == 3
    assert agent[0].shape == (32, 48, 3)
    assert view[0].shape == (120, 160, 3)


def test_installed_script_runs_a_rollout(tmp_path):
    out_dir = tmp_path / "run"
    result = subprocess.run(
        [
            script_path(), "rollout", "task=three_goal", "policy=random", "episodes=3",
            "task.episode_steps=4", "video.view=false", f"out_dir={out_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "3 episodes: success" in result.stdout
    columns, rows = read_rows(out_dir)
    assert columns == COLUMNS
    assert len(rows) == 3
    for row in rows:
        assert int(row["steps"]) == 4
        goal = float(row["goal_rad"])
        assert min(abs(goal - g) for g in (-math.pi / 2, 0.0, math.pi / 2)) < 1e-9
    saved = OmegaConf.load(out_dir / "config.yaml")
    assert saved.task.goal_setting == "three_goal"
    assert saved.policy.name == "random"
    assert sorted(p.name for p in out_dir.glob("*.mp4")) == [f"episode_{i:03d}_agent.mp4" for i in range(3)]
    assert len(video_frames(out_dir / "episode_002_agent.mp4")) == 5


@pytest.mark.parametrize("signal_name, whole_group", [("SIGINT", True), ("SIGTERM", False)])
def test_a_stop_signal_keeps_finished_episodes_playable_videos_and_the_plot(tmp_path, signal_name, whole_group):
    import os
    import signal
    import time

    signum = getattr(signal, signal_name)
    out_dir = tmp_path / "run"
    # A session of its own, so that SIGINT can go to the whole process group as a terminal's
    # Ctrl-C does: the ffmpeg processes writing the videos get it too. SIGTERM goes to the CLI only.
    process = subprocess.Popen(
        [script_path(), "rollout", "episodes=50", "task.episode_steps=10", "backend.view_camera.width_px=160",
         "backend.view_camera.height_px=120", f"out_dir={out_dir}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # Interrupt once at least two episodes have been written (bounded wait, not a timing check).
        for _ in range(600):
            if (out_dir / "episodes.csv").exists() and len(read_rows(out_dir)[1]) >= 2:
                break
            time.sleep(0.1)
        if whole_group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signum, err
    assert f"interrupted by {signal_name}" in err
    _, rows = read_rows(out_dir)
    assert 2 <= len(rows) < 50
    assert [int(row["episode"]) for row in rows] == list(range(len(rows)))
    assert all(int(row["steps"]) == 10 for row in rows)
    assert (out_dir / "valve_error.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    videos = sorted(out_dir.glob("episode_*.mp4"))
    assert len(videos) >= 2 * len(rows)  # agent and view videos of the finished episodes, and more
    for video in videos:
        assert len(video_frames(video)) >= 1  # every file closed properly, none corrupt


@pytest.mark.parametrize(
    "args, must_name",
    [
        (["rollout", "task=nonexistent"], ["task", "fixed", "random", "three_goal"]),
        (["rollout", "policy=foo"], ["policy", "random", "scripted"]),
        (["rollout", "backend=foo"], ["backend", "sim"]),
        # A config group or a key removed.
        (["rollout", "~task"], ["task", "fixed", "random", "three_goal"]),
        (["rollout", "task=null"], ["task", "fixed", "random", "three_goal"]),
        (["rollout", "~policy"], ["policy", "random", "scripted"]),
        (["rollout", "~backend.substeps"], ["backend.substeps", "missing"]),
        (["rollout", "task.reward=null"], ["task.reward"]),
        (["rollout", "task.episode_steps=-3"], ["task.episode_steps", "-3"]),
        (["rollout", "task.episode_steps=2.5"], ["task.episode_steps"]),
        (["rollout", "task=point_reach"], ["runs the valve", "eval.csv"]),
        (["rollout", "task.goal_setting=bogus"], ["bogus", "fixed", "three_goal", "random"]),
        (["rollout", "episodes=0"], ["episodes"]),
        (["rollout", "episodes=true"], ["episodes"]),
        (["rollout", "video.agent_scale=0"], ["video.agent_scale"]),
        (["rollout", "nosuchkey=1"], ["nosuchkey"]),
        (["rollout", "backend.substeps=0"], ["backend.substeps"]),
        (["rollout", "policy.steps_per_phase=0"], ["policy.steps_per_phase"]),
        (["rollout", "safety.joint_lower_rad=[1.0]"], ["safety.joint_lower_rad"]),
        (["rollout", "camera.frame_max_age_s=-1"], ["camera.frame_max_age_s"]),
        # Values of the wrong type, caught against the type the config declares...
        (["rollout", "seed=abc"], ["seed", "abc"]),
        (["rollout", "seed=-1"], ["seed", "-1"]),
        (["rollout", "seed=1.5"], ["seed", "1.5"]),
        (["rollout", "task.fixed_goal_rad=abc"], ["task.fixed_goal_rad", "abc"]),
        (["rollout", "video.agent=maybe"], ["video.agent", "maybe"]),
        (["rollout", "safety.joint_lower_rad=[a,b]"], ["safety.joint_lower_rad"]),
        # ...or, where the config declares null (any value), by the task itself.
        (["rollout", "task.initial_valve_rad=abc"], ["task.initial_valve_rad"]),
        (["rollout", "task.initial_valve_rad=true"], ["task.initial_valve_rad"]),
        (["rollout", "task.initial_valve_rad=[1,2]"], ["task.initial_valve_rad"]),
        (["nosuchcommand"], ["nosuchcommand", "rollout"]),
    ],
)
def test_bad_input_exits_2_with_one_line(args, must_name, tmp_path, capsys):
    rc = main([*args, f"out_dir={tmp_path}"])
    out, err = capsys.readouterr()
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for word in must_name:
        assert word in lines[0]
    assert "Traceback" not in err
    assert list(tmp_path.glob("*.mp4")) == [] and not (tmp_path / "episodes.csv").exists()


def test_cfg_prints_the_composed_config(capsys):
    rc = main(["rollout", "--cfg", "episodes=7", "task=three_goal"])
    out, err = capsys.readouterr()
    assert rc == 0
    printed = OmegaConf.create(out)
    expected = load_config("rollout", ["episodes=7", "task=three_goal"])
    assert OmegaConf.to_container(printed) == OmegaConf.to_container(expected)
    assert printed.episodes == 7
    assert printed.task.goal_setting == "three_goal"


def test_help_and_missing_command(capsys):
    assert main(["--help"]) == 0
    assert "rollout" in capsys.readouterr().out
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_a_safety_trip_ends_the_rollout_with_one_line_and_exit_1(tmp_path, capsys):
    # A current limit no moving claw stays under: the monitor trips on the first step.
    assert main(["rollout", f"out_dir={tmp_path}", "episodes=1", "video.view=false", "video.agent=false",
                 "safety.health.max_current_a=0.0001"]) == 1
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("rollout:")]
    assert len(err) == 1 and "safety trip (overcurrent)" in err[0]  # one line besides the progress bar
    assert "slac-robot rollout:" in err[0]
