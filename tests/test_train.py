"""`slac-robot train`: the online loop end to end on the simulated valve, with tiny networks."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import time

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from omegaconf import OmegaConf

from slac_robot.cli import main
from slac_robot.config import load_config
from tests.test_cli import script_path, video_frames

EPISODE_STEPS = 10
TINY = [
    "session.learner=inline",  # updates between steps: reproducible bit for bit (test_session.py: the processes)
    "device=cpu",
    "agent.width=0.125",
    "agent.hidden=[32,32]",
    "agent.z2_dim=16",
    f"task.episode_steps={EPISODE_STEPS}",
    "schedule.initial_collection_steps=20",
    "schedule.initial_model_updates=3",
    "schedule.model_batch_size=4",
    "schedule.sac_batch_size=8",
    "schedule.eval_every_episodes=2",
    "schedule.eval_episodes=1",
    "schedule.checkpoint_every_episodes=1",
    "schedule.log_every_steps=5",
]


def train(out_dir, *overrides: str) -> int:
    return main(["train", f"out_dir={out_dir}", *TINY, *overrides])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("train")
    assert train(out_dir, "schedule.total_env_steps=40") == 0
    return out_dir


def test_a_run_records_every_episode_and_writes_checkpoints(run):
    episodes = sorted((run / "replay").glob("episode_*.npz"))
    assert len(episodes) == 4
    assert [int(p.stem.split("_")[2]) for p in episodes] == [EPISODE_STEPS] * 4
    checkpoints = sorted((run / "checkpoints").glob("checkpoint_*.pt"))
    assert [p.name for p in checkpoints][-1] == "checkpoint_000000040.pt"
    state = torch.load(checkpoints[-1], weights_only=False)
    # 3 pre-training updates at step 20, then one model and one SAC update per step from step 20 on.
    assert state["agent"]["model_updates"] == 3 + 21 and state["agent"]["sac_updates"] == 21
    assert state["progress"] == {"env_steps": 40, "episodes": 4, "pretrained": True, "trips": 0}
    assert (run / "config.yaml").is_file()
    assert (run / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_a_run_logs_tensorboard_scalars_and_evaluations(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("model/loss", "model/kl", "model/grad_norm", "sac/critic_loss", "sac/actor_loss", "sac/alpha",
                "sac/entropy", "sac/q", "train/episode_return", "eval/success_rate"):
        assert tag in tags, tag
    assert all(np.isfinite(e.value) for e in events.Scalars("model/loss"))
    assert all(np.isfinite(e.value) and e.value > 0 for e in events.Scalars("model/grad_norm"))
    for name in ("model/grad_norm", "model/reward_nll", "sac/critic_loss"):  # the peak between two writes
        newest = {e.step: e.value for e in events.Scalars(name)}
        peaks = {e.step: e.value for e in events.Scalars(f"{name}_max")}
        assert peaks.keys() == newest.keys() and all(peaks[step] >= newest[step] for step in peaks)
    assert "model/sequences" in events.Tags()["images"]
    rows = (run / "eval.csv").read_text().splitlines()
    assert rows[0].startswith("env_steps,episodes,success_rate") and len(rows) == 1 + 2  # after episodes 2, 4


def test_update_scalars_keep_the_newest_value_and_the_peak_since_the_last_write():
    from slac_robot.runtime.train import UpdateScalars

    scalars = UpdateScalars()
    for grad_norm, kl in ((2.0, 1.0), (9.0, 3.0), (4.0, 2.0)):
        scalars.add({"model/grad_norm": grad_norm, "model/kl": kl})
    assert scalars.take() == {"model/grad_norm": 4.0, "model/kl": 2.0, "model/grad_norm_max": 9.0}
    scalars.add({"model/grad_norm": 3.0})
    assert scalars.take() == {"model/grad_norm": 3.0, "model/kl": 2.0, "model/grad_norm_max": 3.0}
    assert scalars.take() == {"model/grad_norm": 3.0, "model/kl": 2.0}  # no update since: no peak


def test_each_evaluation_episode_has_a_row_with_its_start_and_final_error(run):
    with open(run / "eval_episodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["env_steps"], r["seed"]) for r in rows] == [("20", "0"), ("40", "0")]
    recorded = sorted((run / "eval_replay").glob("episode_*.npz"))
    assert len(recorded) == len(rows)
    for row, path in zip(rows, recorded):  # the row tells what the recorded episode shows
        with np.load(path) as episode:
            valve, goal = (np.arctan2(episode[k][:, 1], episode[k][:, 0]) for k in ("obs_valve", "obs_goal"))
            episode_return = float(episode["reward"].sum())
        error_rad = np.angle(np.exp(1j * (goal - valve)))  # signed: the way the valve has to turn
        assert float(row["start_error_rad"]) == pytest.approx(error_rad[0], abs=1e-3)
        assert float(row["final_error_rad"]) == pytest.approx(error_rad[-1], abs=1e-3)
        assert row["success"] == str(int(abs(error_rad[-1]) < 0.1))
        assert float(row["return"]) == pytest.approx(episode_return, abs=1e-2)
        assert (row["goal"], row["steps"], row["trip"]) == ("+1.57", str(EPISODE_STEPS), "")


def test_a_three_goal_evaluation_evaluates_every_goal(tmp_path):
    assert train(tmp_path, "task=three_goal", "schedule.total_env_steps=20", "schedule.eval_episodes=3") == 0
    with open(tmp_path / "eval_episodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["seed"], r["goal"]) for r in rows] == [("0", "-1.57"), ("1", "+0.00"), ("2", "+1.57")]
    with open(tmp_path / "eval.csv", newline="") as f:
        per_goal = [entry.split(":") for entry in next(csv.DictReader(f))["per_goal"].split(";")]
    assert sorted((goal, figures.split("/")[2]) for goal, figures in per_goal) == [
        ("+0.00", "1"), ("+1.57", "1"), ("-1.57", "1")]  # one episode of each goal


def test_each_training_episode_has_a_row_with_its_start_and_final_error(run):
    with open(run / "train_episodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    recorded = sorted((run / "replay").glob("episode_*.npz"))
    assert [int(r["episode"]) for r in rows] == [1, 2, 3, 4] and len(recorded) == 4
    for row, path in zip(rows, recorded):
        with np.load(path) as episode:
            valve, goal = (np.arctan2(episode[k][:, 1], episode[k][:, 0]) for k in ("obs_valve", "obs_goal"))
        error_rad = np.angle(np.exp(1j * (goal - valve)))
        assert float(row["start_error_rad"]) == pytest.approx(error_rad[0], abs=1e-3)
        assert float(row["final_error_rad"]) == pytest.approx(error_rad[-1], abs=1e-3)
        assert row["success"] == str(bool(abs(error_rad[-1]) < 0.1))
    assert len({r["start_error_rad"] for r in rows}) == 4  # each episode starts anew


def test_a_run_from_before_the_error_columns_gets_them_back_from_its_episode_files(run, tmp_path):
    import shutil
    import sys

    copy = tmp_path / "run"
    shutil.copytree(run / "replay", copy / "replay")
    with open(run / "train_episodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    old = [{k: v for k, v in r.items() if not k.endswith("error_rad")} for r in rows]
    header = list(old[0])
    old_text = ",".join(header) + "\n" + "".join(",".join(r[k] for k in header) + "\n" for r in old)
    (copy / "train_episodes.csv").write_text(old_text)
    tool = [sys.executable, "tools/backfill_start_errors.py", str(copy)]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(tool, capture_output=True, text=True, cwd=repo)
    assert done.returncode == 0 and "filled 4 rows" in done.stdout, done.stderr
    with open(copy / "train_episodes.csv", newline="") as f:
        filled = list(csv.DictReader(f))
    for before, after in zip(rows, filled):
        assert after["start_error_rad"] == before["start_error_rad"] and after["final_error_rad"] == before["final_error_rad"]
        assert {k: after[k] for k in header} == {k: before[k] for k in header}  # the rest as it was
    next((copy / "replay").glob("episode_00000002_*.npz")).unlink()  # rows and files no longer match
    (copy / "train_episodes.csv").write_text(old_text)
    done = subprocess.run(tool, capture_output=True, text=True, cwd=repo)
    assert done.returncode != 0 and "row 3 (episode 3, 10 steps) has no file" in done.stderr
    assert (copy / "train_episodes.csv").read_text() == old_text  # nothing changed


def test_the_critic_values_tool_groups_a_slac_runs_episodes_by_how_they_ended(run):
    import sys

    ends = []
    for path in sorted((run / "replay").glob("episode_*.npz")):
        with np.load(path) as episode:
            ends.append(float(np.arctan2(episode["obs_valve"][-1, 1], episode["obs_valve"][-1, 0])))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def groups(*args: str) -> dict[str, list[float]]:
        done = subprocess.run([sys.executable, "tools/critic_values.py", str(run), *args],
                              capture_output=True, text=True, cwd=repo)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()[1:]  # after the header: group, episodes, Q first, Q last, reward
        return {line.rsplit(None, 4)[0].strip(): [float(x) for x in line.rsplit(None, 4)[1:]] for line in lines}

    # the second episode's end, asked about: it is the one episode that ended there
    found = groups("--valve-rad", f"{ends[1]:.6f}", "--tolerance-rad", "0.0001")
    ended_at = f"ended at {ends[1]:+.2f}"
    assert set(found) == {"succeeded", ended_at, "other failures"}
    assert found[ended_at][0] == 1 and sum(v[0] for v in found.values()) == 4  # no trips in this run
    assert all(np.isfinite(found[g][1:]).all() for g in found if found[g][0] > 0)
    # --from-steps leaves out the episodes recorded before: two of 10 steps each
    assert sum(v[0] for v in groups("--from-steps", "21").values()) == 2


def test_the_critic_td_error_tool_splits_a_slac_runs_td_error_by_the_valves_error(run):
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "tools/critic_td_error.py", str(run), "--windows", "12", "--samples", "3"],
                          capture_output=True, text=True, cwd=repo)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    spread = re.search(r"std across 3 posterior samples of one window ([\d.]+)", lines[0])
    assert spread and float(spread[1]) > 0.0  # z_t is a posterior sample: its Q varies
    assert re.search(r"as trained [\d.]+; Q and target averaged over the samples [\d.]+", lines[1]), lines[1]
    rows = [line.split() for line in lines[3:]]
    assert [row[0] for row in rows] == ["0.00-0.10", "0.10-0.25", "0.25-0.60", "0.60-1.50", "1.50-3.14"]
    assert sum(int(row[1]) for row in rows) == 12  # every window in one bin
    assert sum(float(row[3]) for row in rows) == pytest.approx(1.0, abs=0.03)


def test_the_look_alikes_tool_splits_a_policys_first_action_by_harmonics_of_the_valves_angle(run):
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tool = [sys.executable, "tools/policy_look_alikes.py", str(run)]
    done = subprocess.run([*tool, "--step-deg", "30"], capture_output=True, text=True, cwd=repo)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("first action over 12 valve angles") and "backend.valve_marker=prong" in lines[0]
    shares = [float(v) for v in re.findall(r"k\d+ ([\d.]+)", lines[1])]
    assert len(shares) == 6 and sum(shares) == pytest.approx(1.0, abs=0.03)  # k1..k6: all of 12 angles' variance
    marker, outline = map(float, re.search(r"marker .* ([\d.]+); to the outline .* ([\d.]+)", lines[2]).groups())
    assert marker + outline == pytest.approx(1.0, abs=0.011)
    assert outline == pytest.approx(shares[2] + shares[5], abs=0.011)  # k = 3 and 6
    apart = [float(v) for v in re.findall(r"d = \d+ deg ([\d.]+)", lines[3])]
    assert len(apart) == 3 and all(v > 0 for v in apart)  # the actions change with the valve's angle
    done = subprocess.run([*tool, "--step-deg", "25"], capture_output=True, text=True, cwd=repo)
    assert done.returncode == 2 and "--step-deg must divide 120" in done.stderr


def best_policy_figures(path) -> tuple[int, float, float]:
    state = torch.load(path, weights_only=True)
    return state["env_steps"], state["success_rate"], state["mean_return"]


def test_the_best_evaluations_policy_is_kept_and_eval_runs_it(run, tmp_path, capsys):
    with open(run / "eval.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    best = max(rows, key=lambda r: (float(r["success_rate"]), float(r["mean_return"])))  # the first of equals
    steps, success_rate, mean_return = best_policy_figures(run / "best_policy.pt")
    assert (steps, success_rate) == (int(best["env_steps"]), float(best["success_rate"]))
    assert mean_return == pytest.approx(float(best["mean_return"]))
    # The checkpoint written just after that evaluation (at 20 or 40 steps: the newest 3 are kept).
    actor = torch.load(run / "checkpoints" / f"checkpoint_{steps:09d}.pt", weights_only=False)["agent"]["actor"]
    kept = torch.load(run / "best_policy.pt", weights_only=True)["policy"]["actor"]
    assert all(torch.equal(actor[k], kept[k]) for k in actor)
    assert main(["eval", f"run={run}", "best=true", "episodes=1", f"out_dir={tmp_path}", "video.view=false",
                 "video.agent=false", f"task.episode_steps={EPISODE_STEPS}"]) == 0
    assert f"policy from {run / 'best_policy.pt'}" in capsys.readouterr().out


def test_a_resumed_run_keeps_a_better_best_policy_and_replaces_a_damaged_one(tmp_path):
    from slac_robot.agent.checkpoint import save_checkpoint
    from tests.test_run_directory import damage_inside_largest_tensor

    assert train(tmp_path, "schedule.total_env_steps=20") == 0  # one evaluation, at 20 steps
    best = tmp_path / "best_policy.pt"
    state = torch.load(best, weights_only=True)
    del state["sha256"]
    save_checkpoint(best, {**state, "success_rate": 1.0, "mean_return": 1e9})  # better than this agent will do
    kept = best.read_bytes()
    assert main(["train", f"resume={tmp_path}", *TINY, "schedule.total_env_steps=40"]) == 0
    assert best.read_bytes() == kept  # the evaluation at 40 steps did worse: the file is the record
    damage_inside_largest_tensor(best)
    with pytest.warns(UserWarning, match="best policy file .*best_policy.pt is damaged.*moved to"):
        assert main(["train", f"resume={tmp_path}", *TINY, "schedule.total_env_steps=60"]) == 0
    assert (tmp_path / "corrupt" / "best_policy.pt").read_bytes() != kept
    assert best_policy_figures(best)[0] == 60  # the next evaluation wrote a new one


def test_eval_best_without_a_best_policy_says_where_it_comes_from(tmp_path, capsys):
    assert train(tmp_path, "schedule.total_env_steps=10") == 0  # stopped before its first evaluation
    assert main(["eval", f"run={tmp_path}", "best=true", "episodes=1"]) == 1
    assert "no best_policy.pt" in capsys.readouterr().err
    checkpoint = next((tmp_path / "checkpoints").glob("checkpoint_*.pt"))
    assert main(["eval", f"checkpoint={checkpoint}", "best=true", "episodes=1"]) == 2
    assert "best=true reads a run's best_policy.pt: pass run=RUN_DIR" in capsys.readouterr().err


def test_a_run_writes_evaluation_and_model_videos(run):
    videos = run / "videos"
    assert len(video_frames(videos / "eval_000000040.mp4")) == EPISODE_STEPS + 1
    grid = imageio.imread(videos / "model_000000040.png")
    # Ground truth, posterior reconstruction and prior prediction rows of 9 frames.
    assert grid.shape == (3 * 64, 9 * 64, 3)
    assert len(video_frames(videos / "model_000000040.mp4")) == 9


@pytest.mark.parametrize("updates", [[], ["agent.concurrent_updates=true"]], ids=["in_turn", "concurrent"])
def test_a_resumed_run_goes_on_from_its_checkpoint_like_the_uninterrupted_run(tmp_path, updates):
    # Up to the checkpoint the two runs are the same bit for bit. After it they cannot be: the
    # resumed run opens a fresh claw, and the scripted reset moves it through physics from where
    # it stands (as on hardware), so its next episode starts within the reset's tolerance of the
    # other run's start, not at the same bits. What carries over exactly: counters, the episode
    # seeds (the same goal), the replay's finished episodes.
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    # task=random: each episode's goal comes from the trainer's generator, which must carry over.
    assert train(straight, "task=random", "schedule.total_env_steps=40", *updates) == 0
    assert train(resumed, "task=random", "schedule.total_env_steps=30", *updates) == 0
    a30 = torch.load(straight / "checkpoints" / "checkpoint_000000030.pt", weights_only=False)
    b30 = torch.load(resumed / "checkpoints" / "checkpoint_000000030.pt", weights_only=False)
    for net in ("model", "actor", "critic", "critic_target"):
        for key, value in a30["agent"][net].items():
            assert torch.equal(value, b30["agent"][net][key]), f"{net}.{key}"
    assert ("sac_generator" in a30["agent"]) == bool(updates)  # the concurrent SAC step's noise carries over
    assert main(["train", f"resume={resumed}", *TINY, "schedule.total_env_steps=40", *updates]) == 0
    a = torch.load(straight / "checkpoints" / "checkpoint_000000040.pt", weights_only=False)
    b = torch.load(resumed / "checkpoints" / "checkpoint_000000040.pt", weights_only=False)
    assert a["progress"] == b["progress"] == {"env_steps": 40, "episodes": 4, "pretrained": True, "trips": 0}
    for counter in ("model_updates", "sac_updates"):
        assert a["agent"][counter] == b["agent"][counter]
    episodes_a = sorted((straight / "replay").glob("*.npz"))
    episodes_b = sorted((resumed / "replay").glob("*.npz"))
    assert [p.name for p in episodes_a] == [p.name for p in episodes_b]
    for x, y in zip(episodes_a[:3], episodes_b[:3]):
        np.testing.assert_array_equal(np.load(x)["action"], np.load(y)["action"])
    goals = [np.load(p)["obs_goal"][0] for p in episodes_b]
    assert len({tuple(g) for g in goals}) == 4  # a goal of its own each episode...
    np.testing.assert_array_equal(np.load(episodes_a[3])["obs_goal"], np.load(episodes_b[3])["obs_goal"])  # ...the same after resume


def test_a_fractional_update_ratio_updates_every_other_step_and_resumes_where_it_left_off(tmp_path):
    # Ratio 0.5 from step 20 on: steps 20..40 are 21 steps, so 10 model + SAC updates (rounded
    # down); steps 20..30 are 11, so 5. A resume at 30 updates on the same steps as the straight run.
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train(straight, "schedule.updates_per_step=0.5", "schedule.total_env_steps=40") == 0
    assert train(resumed, "schedule.updates_per_step=0.5", "schedule.total_env_steps=30") == 0
    b30 = torch.load(resumed / "checkpoints" / "checkpoint_000000030.pt", weights_only=False)
    assert b30["agent"]["sac_updates"] == 5 and b30["agent"]["model_updates"] == 3 + 5
    assert main(["train", f"resume={resumed}", "schedule.total_env_steps=40"]) == 0
    for run in (straight, resumed):
        state = torch.load(run / "checkpoints" / "checkpoint_000000040.pt", weights_only=False)
        assert state["agent"]["sac_updates"] == 10 and state["agent"]["model_updates"] == 3 + 10


def test_sigint_writes_a_checkpoint_keeps_finished_episodes_and_the_run_resumes(tmp_path):
    out_dir = tmp_path / "run"
    process = subprocess.Popen(
        [script_path(), "train", f"out_dir={out_dir}", *TINY, "schedule.total_env_steps=100000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        for _ in range(900):  # bounded wait for three finished episodes, not a timing check
            if len(list((out_dir / "replay").glob("episode_*.npz"))) >= 3:
                break
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert f"resume with: slac-robot train resume={out_dir}" in err
    finished = sorted((out_dir / "replay").glob("episode_*.npz"))
    assert len(finished) >= 3
    checkpoint = torch.load(sorted((out_dir / "checkpoints").glob("*.pt"))[-1], weights_only=False)
    # The unfinished episode is neither stored nor counted.
    assert checkpoint["progress"]["env_steps"] == EPISODE_STEPS * len(finished)
    target = EPISODE_STEPS * (len(finished) + 1)
    assert main(["train", f"resume={out_dir}", *TINY, f"schedule.total_env_steps={target}"]) == 0
    assert len(list((out_dir / "replay").glob("episode_*.npz"))) == len(finished) + 1


@pytest.mark.parametrize(
    "overrides, must_name",
    [
        (["camera.width_px=32"], ["64x64", "camera.width_px=64"]),
        (["agent.gamma=1.5"], ["agent.gamma"]),
        (["agent.sequence_length=1"], ["agent.sequence_length"]),
        (["agent.concurrent_updates=true", "agent.shared_batch=true"], ["agent.concurrent_updates", "agent.shared_batch"]),
        (["schedule.sac_batch_size=0"], ["schedule.sac_batch_size"]),
        (["schedule.updates_per_step=-0.5"], ["schedule.updates_per_step", ">= 0"]),
        (["replay.capacity_steps=0"], ["replay.capacity_steps"]),
        (["device=tpu"], ["device", "cpu"]),
        (["session.learner=cluster"], ["session.learner", "process", "inline"]),
        (["session.after_trip=ignore"], ["session.after_trip", "reset"]),
        (["session.actor_rt_priority=120"], ["session.actor_rt_priority", "1-99"]),
        (["task.kind=maze"], ["task.kind", "point_reach"]),
        (["task=point_reach", "session.learner=process"], ["no control rate", "session.learner=inline"]),
        (["task=point_reach", "task.goal_setting=moving"], ["point_reach.goal_setting", "fixed, random"]),
        (["task=point_reach", "camera.width_px=48"], ["square", "camera.height_px=64"]),
        (["task=point_reach", "+task.gravity=9.81"], ["gravity", "PointReachEnv"]),
    ],
)
def test_bad_training_config_exits_2_with_one_line(overrides, must_name, tmp_path, capsys):
    assert train(tmp_path, *overrides) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    for word in must_name:
        assert word in err[0]
    assert not list(tmp_path.rglob("*.npz")) and not list(tmp_path.rglob("*.pt"))


def test_resume_of_a_directory_without_a_run_names_it(tmp_path, capsys):
    assert main(["train", f"resume={tmp_path / 'nothing'}", *TINY]) == 2
    assert "no config.yaml" in capsys.readouterr().err


def test_a_resumed_run_keeps_its_own_config_and_changes_only_what_the_command_line_names(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, "schedule.total_env_steps=20", "task.fixed_goal_rad=0.5") == 0
    # Only the run directory and a new total: every other setting is the run's own, not a default.
    assert main(["train", f"resume={run}", "schedule.total_env_steps=30", "schedule.eval_episodes=2"]) == 0
    saved = OmegaConf.load(run / "config.yaml")
    assert saved.schedule.total_env_steps == 30 and saved.schedule.eval_episodes == 2  # what was named
    assert saved.schedule.model_batch_size == 4 and saved.agent.z2_dim == 16  # the run's own
    assert saved.task.fixed_goal_rad == 0.5 and saved.task.episode_steps == EPISODE_STEPS
    state = torch.load(run / "checkpoints" / "checkpoint_000000030.pt", weights_only=False)
    assert state["agent"]["sac_updates"] == 11  # one per step from step 20 on: the learning went on
    assert main(["train", f"resume={run}", "agent=sac_state"]) == 2
    assert "agent=slac" in capsys.readouterr().err


def test_a_run_started_by_an_older_version_resumes_with_the_new_keys_defaults(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, "schedule.total_env_steps=20", "session.poll_s=0.3") == 0
    saved = OmegaConf.load(run / "config.yaml")  # as an older version wrote it: keys since added are missing
    del saved.session["actors"], saved.session["ray"], saved.agent["proprio_to_actor"]
    OmegaConf.save(saved, run / "config.yaml")
    capsys.readouterr()
    assert main(["train", f"resume={run}", "schedule.total_env_steps=30"]) == 0
    notice = [line for line in capsys.readouterr().err.splitlines() if "predates these settings" in line]
    assert len(notice) == 1 and "agent.proprio_to_actor=False, session.actors=1, session.ray." in notice[0]
    resumed = OmegaConf.load(run / "config.yaml")
    assert resumed.session.actors == 1 and resumed.agent.proprio_to_actor is False  # this version's defaults
    assert resumed.session.ray == load_config("train", []).session.ray
    assert resumed.session.poll_s == 0.3 and resumed.agent.z2_dim == 16  # the run's own settings stay
    assert (run / "checkpoints" / "checkpoint_000000030.pt").is_file()


@pytest.mark.parametrize("damage", [b"schedule: [unclosed\n", b"\xff\xfe\x00binary", b"just text\n"])
def test_an_unreadable_config_yaml_is_named_in_one_line(tmp_path, capsys, damage):
    (tmp_path / "config.yaml").write_bytes(damage)
    assert main(["train", f"resume={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "config.yaml") in err[0]
    (tmp_path / "policy.pt").write_bytes(b"a policy")  # something to evaluate: eval reads the config
    assert main(["eval", f"run={tmp_path}", "episodes=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "config.yaml") in err[0]


def test_an_unattended_simulated_run_goes_on_after_more_trips_than_the_real_claw():
    assert load_config("train", []).session.max_trips_in_a_row == 100
    assert load_config("train", ["backend=emulated"]).session.max_trips_in_a_row == 100
    assert load_config("train", ["backend=dclaw"]).session.max_trips_in_a_row == 3
