"""A run directory is owned, verified and never silently corrupted (issue 13).

Real processes and real files throughout: `slac-robot train` in process (cli.main) or as the
installed script, the learner its spawned child; a small filesystem is a tmpfs mounted for the
test where this machine allows it (root), otherwise a file-size limit (RLIMIT_FSIZE) on the
session's process; a read-only folder is a read-only bind mount (root, whom permissions do not
stop) or a folder without write permission. Each case counts what matters: episodes on disk
and rows in train_episodes.csv (none lost, none twice), checkpoints that load and verify, no
temporary file left, one line for the user, the robot made safe (a safe_stop event)."""

from __future__ import annotations

import contextlib
import csv
import os
import pathlib
import resource
import shutil
import signal
import struct
import subprocess
import uuid
import zipfile

import numpy as np
import pytest
import torch

from slac_robot.agent.checkpoint import (
    CorruptCheckpoint,
    NonFiniteWeights,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from slac_robot.agent.replay import Episode, read_episode, write_episode
from slac_robot.cli import main
from slac_robot.config import ConfigError, require_number
from slac_robot.runtime.learner import POLICY_FILE, PolicySubscriber, publish_policy
from slac_robot.runtime.run_lock import RunLock
from slac_robot.safety import read_events
from tests.test_cli import script_path
from tests.test_session import alive, learner_pid, learner_started, wait_for

EPISODE_STEPS = 10
EXTRAS = {"goal": 2, "joint_pos": 9, "valve": 2}  # the valve env's vector observations, as the replay stores them
TINY = [
    "device=cpu",
    "agent.width=0.125",
    "agent.hidden=[32,32]",
    "agent.z2_dim=16",
    f"task.episode_steps={EPISODE_STEPS}",
    # Nothing is trained unless a test asks for it: these tests are about the run directory.
    "schedule.initial_collection_steps=0",
    "schedule.initial_model_updates=0",
    "schedule.updates_per_step=0",
    "schedule.model_batch_size=4",
    "schedule.sac_batch_size=8",
    "schedule.eval_every_episodes=0",
    "schedule.checkpoint_every_episodes=1",
    "schedule.log_every_steps=1000",
]
INLINE = ["session.learner=inline", *TINY]
PROCESS = [
    "session.learner=process",
    "session.poll_s=0.02",
    "session.publish_every_updates=1",
    "session.checkpoint_every_updates=1000",
    "session.log_every_updates=1000",
    *TINY,
]


# ----- helpers -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> pathlib.Path:
    """A finished inline run of 3 episodes with checkpoints at 10, 20 and 30 steps (tests copy it)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", f"out_dir={run}", *INLINE, "schedule.total_env_steps=30"]) == 0
    return run


def copy_of(run: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(shutil.copytree(run, tmp_path / "run"))


def episode_files(run: pathlib.Path) -> list[pathlib.Path]:
    return sorted((run / "replay").glob("episode_*.npz"))


def episode_rows(run: pathlib.Path) -> list[int]:
    with open(run / "train_episodes.csv", newline="") as f:
        return [int(row["episode"]) for row in csv.DictReader(f)]


def assert_episodes_whole_and_counted(run: pathlib.Path) -> None:
    """Every episode file reads, none twice, and train_episodes.csv has one row for each."""
    files = episode_files(run)
    indices = [int(p.name.split("_")[1]) for p in files]
    assert indices == list(range(len(files))), [p.name for p in files]
    for path in files:
        read_episode(path, (64, 64, 3), 9, EXTRAS)
    assert episode_rows(run) == list(range(1, len(files) + 1))


def temporaries(run: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in run.rglob("*") if p.name.endswith(".tmp")]


def one_line(text: str) -> str:
    """The one message of a command's stderr (progress bars aside), and no traceback."""
    assert "Traceback" not in text, text
    lines = [line[line.index("slac-robot "):] for line in text.splitlines() if "slac-robot " in line]
    assert len(lines) == 1, lines
    return lines[0]


def damage_inside_largest_tensor(path: pathlib.Path) -> None:
    """Writes 2 kB of random bytes into the middle of the file's largest tensor (its largest zip
    record): bytes torch.load reads without noticing."""
    with zipfile.ZipFile(path) as archive:
        record = max(archive.infolist(), key=lambda info: info.file_size)
    with open(path, "r+b") as f:
        f.seek(record.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", f.read(4))
        data_start = record.header_offset + 30 + name_length + extra_length
        size = min(2048, record.file_size)
        f.seek(data_start + (record.file_size - size) // 2)
        f.write(np.random.default_rng(0).bytes(size))


def safe_stops(run: pathlib.Path) -> list[dict]:
    return [e for e in read_events(run / "safety_events.jsonl") if e["kind"] == "safe_stop"]


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# ----- values that reach physics, rendering or the safety layer ------------------------------

@pytest.mark.parametrize(
    "command, override, must_name",
    [
        ("train", "task.fixed_goal_rad=inf", "task.fixed_goal_rad=inf"),
        ("train", "task.fixed_goal_rad=nan", "task.fixed_goal_rad=nan"),
        ("rollout", "task.fixed_goal_rad=nan", "task.fixed_goal_rad=nan"),
        ("train", "task.initial_valve_rad=inf", "task.initial_valve_rad=inf"),
        ("train", "task.random_goal_range_rad=[-inf,1.0]", "task.random_goal_range_rad[0]"),
        ("train", "camera.width_px=nan", "camera.width_px=nan"),
        ("train", "camera.width_px=64.5", "camera.width_px"),
        ("train", "safety.health.max_temperature_c=inf", "safety limit off"),
        ("train", "safety.health.max_current_a=nan", "safety.health.max_current_a"),
        ("train", "safety.health.max_joint_speed_rad_s=inf", "safety.health.max_joint_speed_rad_s"),
        ("train", "safety.health.max_reading_age_s=inf", "safety.health.max_reading_age_s"),
        ("train", "safety.health.max_temperature_c=-5", "safety.health.max_temperature_c"),
        ("train", "safety.reset.stall_s=0", "safety.reset.stall_s"),
        ("train", "agent.model_lr=nan", "agent.model_lr=nan"),
        ("train", "agent.model_lr=0", "agent.model_lr"),
    ],
)
def test_a_bad_value_is_refused_in_one_line_before_anything_is_made(command, override, must_name, tmp_path, capsys):
    out_dir = tmp_path / "run"
    extra = INLINE if command == "train" else ["policy=scripted", "episodes=1", "video.view=false"]
    assert main([command, f"out_dir={out_dir}", *extra, override]) == 2
    assert must_name in one_line(capsys.readouterr().err)
    assert not out_dir.exists()  # no run folder: nothing was opened, nothing moved


def test_require_number_refuses_what_is_not_finite():
    for value in (float("inf"), float("-inf"), float("nan")):
        with pytest.raises(ConfigError, match="finite"):
            require_number("key", value)


def test_a_resumed_config_yaml_with_a_non_finite_value_is_named(finished_run, tmp_path, capsys):
    run = copy_of(finished_run, tmp_path)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("max_current_a: 1.0", "max_current_a: .inf"))
    events_before = (run / "safety_events.jsonl").read_bytes()
    assert main(["train", f"resume={run}", "schedule.total_env_steps=40"]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(config) in line and "safety.health.max_current_a" in line
    assert len(episode_files(run)) == 3 and (run / "safety_events.jsonl").read_bytes() == events_before


# ----- one session per run directory ----------------------------------------------------------

def test_a_second_session_is_refused_while_the_first_or_its_learner_still_runs(tmp_path, capsys):
    run = tmp_path / "run"
    first = subprocess.Popen([script_path(), "train", f"out_dir={run}", *PROCESS, "schedule.total_env_steps=100000"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    learner = None
    try:
        wait_for(lambda: learner_started(run) and len(episode_files(run)) >= 1, "the learner and an episode")
        learner = learner_pid(run)
        config = (run / "config.yaml").read_bytes()
        for second in (["train", f"resume={run}"], ["train", f"out_dir={run}", *PROCESS]):
            assert main(second) == 2
            line = one_line(capsys.readouterr().err)
            assert str(run) in line and f"pid {first.pid}" in line, line
        assert (run / "config.yaml").read_bytes() == config  # the refused sessions wrote nothing

        # The actor killed hard while its learner is still at work (held still here, so that
        # it cannot finish first): the learner keeps the run.
        os.kill(learner, signal.SIGSTOP)
        first.kill()
        first.wait(timeout=60)
        assert main(["train", f"resume={run}"]) == 2
        line = one_line(capsys.readouterr().err)
        assert f"learner process pid {learner}" in line and f"pid {first.pid}, has ended" in line, line
    finally:
        first.kill()
        if learner is not None:
            os.kill(learner, signal.SIGCONT)
    wait_for(lambda: not alive(learner), "the orphaned learner to checkpoint and end", limit_s=120)
    RunLock.acquire(run).release()  # its end freed the run
    files = episode_files(run)
    assert [int(p.name.split("_")[1]) for p in files] == list(range(len(files)))  # none written twice
    rows = episode_rows(run)
    assert rows == list(range(1, len(rows) + 1)) and len(files) <= len(rows) <= len(files) + 1
    # (a row may outlive the episode the killed actor still had queued for its writer thread)
    assert not temporaries(run)


def test_a_lock_left_by_a_dead_process_never_blocks(finished_run, tmp_path):
    run = copy_of(finished_run, tmp_path)
    (run / ".lock").write_text(f"pid={dead_pid()}\nlearner_pid={dead_pid()}\nhost={os.uname().nodename}\n")
    assert main(["train", f"resume={run}", "schedule.total_env_steps=40"]) == 0
    assert_episodes_whole_and_counted(run)
    assert len(episode_files(run)) == 4


# ----- checkpoints and the policy are verified before use -------------------------------------

def test_a_damaged_checkpoint_is_moved_aside_and_the_one_before_it_is_used(finished_run, tmp_path, capsys):
    run = copy_of(finished_run, tmp_path)
    newest = run / "checkpoints" / "checkpoint_000000030.pt"
    torch.load(newest, weights_only=False)  # the damage below is of the kind torch.load does not see
    damage_inside_largest_tensor(newest)
    torch.load(newest, weights_only=False)
    with pytest.raises(CorruptCheckpoint, match="does not match its SHA-256"):
        load_checkpoint(newest)
    with pytest.warns(UserWarning, match="checkpoint_000000030.pt is damaged.*moved to"):
        assert main(["train", f"resume={run}", "schedule.total_env_steps=40"]) == 0
    assert "resumed from " + str(run / "checkpoints" / "checkpoint_000000020.pt") in capsys.readouterr().out
    assert (run / "checkpoints" / "corrupt" / "checkpoint_000000030.pt").is_file()
    assert [p.name for p in list_checkpoints(run / "checkpoints")][-1] == "checkpoint_000000040.pt"
    load_checkpoint(run / "checkpoints" / "checkpoint_000000040.pt")  # verifies
    assert_episodes_whole_and_counted(run)


def test_eval_moves_a_damaged_checkpoint_aside_and_runs_the_next_good_one(finished_run, tmp_path, capsys):
    run = copy_of(finished_run, tmp_path)
    damage_inside_largest_tensor(run / "checkpoints" / "checkpoint_000000030.pt")
    with pytest.warns(UserWarning, match="checkpoint_000000030.pt is damaged"):
        assert main(["eval", f"run={run}", "episodes=1", f"out_dir={tmp_path / 'eval'}", "video.view=false",
                     "video.agent=false"]) == 0
    assert f"policy from {run / 'checkpoints' / 'checkpoint_000000020.pt'}" in capsys.readouterr().out
    assert (run / "checkpoints" / "corrupt" / "checkpoint_000000030.pt").is_file()


def test_a_damaged_policy_file_is_never_taken_up(tmp_path):
    from slac_robot.agent.slac import SlacAgent
    from slac_robot.runtime.learning_check import AGENT

    agent = SlacAgent(2, {"goal": 2}, cfg=AGENT)
    publish_policy(tmp_path, agent, env_steps=10)
    damage_inside_largest_tensor(tmp_path / POLICY_FILE)
    subscriber = PolicySubscriber(tmp_path)
    with pytest.warns(UserWarning, match=f"policy file {tmp_path / POLICY_FILE} is damaged.*moved to"):
        assert subscriber.poll() is None  # the actor keeps the weights it has
    assert (tmp_path / "corrupt" / POLICY_FILE).is_file() and not (tmp_path / POLICY_FILE).exists()
    publish_policy(tmp_path, agent, env_steps=20)  # the learner's next publication is taken up
    assert subscriber.poll() is not None


def test_non_finite_weights_are_never_written(tmp_path):
    from slac_robot.agent.slac import SlacAgent
    from slac_robot.runtime.learning_check import AGENT

    agent = SlacAgent(2, {"goal": 2}, cfg=AGENT)
    path = tmp_path / "checkpoint_000000010.pt"
    save_checkpoint(path, {"agent": agent.state_dict()})
    before = path.read_bytes()
    with torch.no_grad():
        next(agent.actor.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(NonFiniteWeights, match="NaN or inf"):
        save_checkpoint(path, {"agent": agent.state_dict()})
    with pytest.raises(NonFiniteWeights):
        publish_policy(tmp_path, agent, env_steps=20)
    assert path.read_bytes() == before and not (tmp_path / POLICY_FILE).exists() and not temporaries(tmp_path)


def write_poisoned_episodes(folder: pathlib.Path, count: int) -> None:
    """Episodes whose rewards are infinite (what a damaged sensor or file could give): the first
    update on them makes the agent's weights non-finite."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for index in range(count):
        write_episode(folder, index, Episode(
            images=rng.integers(0, 255, (EPISODE_STEPS + 1, 64, 64, 3), dtype=np.uint8),
            extras={name: np.zeros((EPISODE_STEPS + 1, dim), np.float32) for name, dim in EXTRAS.items()},
            actions=rng.uniform(-1, 1, (EPISODE_STEPS, 9)).astype(np.float32),
            rewards=np.full(EPISODE_STEPS, np.inf, np.float32), terminated=False, truncated=True))


def test_an_inline_session_whose_weights_diverge_stops_before_its_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    write_poisoned_episodes(run / "replay", count=2)
    assert main(["train", f"out_dir={run}", *INLINE, "schedule.updates_per_step=1",
                 "schedule.total_env_steps=100"]) == 1
    line = one_line(capsys.readouterr().err)
    assert "not written" in line and "NaN or inf" in line and "the newest checkpoint is still" in line, line
    assert not list_checkpoints(run / "checkpoints") and not temporaries(run)
    assert "NonFiniteWeights" in safe_stops(run)[-1]["reason"]  # the robot was made safe


def test_a_learner_whose_weights_diverge_stops_and_the_newest_good_checkpoint_stays_the_newest(tmp_path):
    """The learner's replay holds episodes with infinite rewards: its first update makes the
    weights non-finite, and it must not publish them."""
    from types import SimpleNamespace

    from slac_robot.backends import make_agent, make_env, make_replay
    from slac_robot.config import load_config
    from slac_robot.runtime.learner import Learner
    from slac_robot.runtime.train import Schedule

    run = tmp_path / "run"
    overrides = [f"out_dir={run}", *PROCESS, "schedule.updates_per_step=1", "schedule.total_env_steps=100000"]
    cfg = load_config("train", overrides)
    env = make_env(cfg)
    try:
        spaces = SimpleNamespace(observation_space=env.observation_space, action_space=env.action_space)
    finally:
        env.close()
    write_poisoned_episodes(run / "replay", count=2)
    # A good checkpoint of the learner's own kind, as an earlier session would have left.
    agent = make_agent(cfg.agent, spaces, torch.device("cpu"))
    schedule = Schedule(**{k: int(v) for k, v in cfg.schedule.items()})
    replay = make_replay(cfg.replay, run / "replay", spaces, agent.sequence_length, EPISODE_STEPS)
    good = Learner(agent, replay, schedule, run, seed=1, publish_every_updates=1, checkpoint_every_updates=1000,
                   log_every_updates=1000, fps=10.0)
    good.pretrained = True
    good_path = good.save()
    good._close_writer(quietly=False)

    session = subprocess.run([script_path(), "train", *overrides], capture_output=True, text=True, timeout=300)
    assert session.returncode == 1, session.stderr
    assert "the learner process ended (exit code 1)" in session.stderr
    assert "NaN or inf" in session.stderr and f"the newest good checkpoint, {good_path}, is kept" in session.stderr
    assert "learner: stopped: " in (run / "learner.log").read_text()
    assert list_checkpoints(run / "checkpoints") == [good_path]
    load_checkpoint(good_path)  # still sound
    # What the learner published (on resuming from the good checkpoint, before it diverged) is sound.
    from slac_robot.runtime.learner import read_policy_file
    read_policy_file(run / POLICY_FILE)
    assert "LearnerDied" in safe_stops(run)[-1]["reason"]
    assert not temporaries(run)


# ----- a full disk, a read-only folder ---------------------------------------------------------

@pytest.fixture
def small_filesystem(tmp_path):
    """(folder, limit): a folder on a 4 MB tmpfs where this machine lets the test mount one
    (limit None: fill it up to make it full), else a plain folder and limit, the file size
    (bytes) past which a session's writes fail (RLIMIT_FSIZE, set in that process)."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True).returncode == 0
    yield folder, None if mounted else 300_000
    if mounted:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def limited(limit: int | None):
    """preexec_fn for a session whose files may not grow past limit bytes (None: no limit)."""
    if limit is None:
        return None

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def fill(folder: pathlib.Path, leave_bytes: int) -> pathlib.Path:
    """Fills folder's filesystem until leave_bytes are free; returns the filler file."""
    filler = folder / f"filler-{uuid.uuid4().hex}"
    free = shutil.disk_usage(folder).free
    with open(filler, "wb") as f:
        f.write(b"\0" * max(free - leave_bytes, 0))
    return filler


def test_a_full_disk_ends_the_session_safely_in_one_line_and_damages_nothing(small_filesystem):
    folder, limit = small_filesystem
    run = folder / "run"
    assert main(["train", f"out_dir={run}", *INLINE, "schedule.total_env_steps=10"]) == 0
    filler = fill(folder, leave_bytes=200_000) if limit is None else None  # room for an episode, not a checkpoint
    config_before = (run / "config.yaml").read_text()

    full = subprocess.run([script_path(), "train", f"resume={run}", "schedule.total_env_steps=10000000000"],
                          capture_output=True, text=True, timeout=300, preexec_fn=limited(limit))
    assert full.returncode == 1, full.stderr
    assert "warning: " in full.stderr and "MB free" in full.stderr  # said at the start
    failed = [line for line in full.stderr.splitlines() if "cannot write" in line]
    assert len(failed) == 1 and "Traceback" not in full.stderr, full.stderr
    cause = "No space left on device" if limit is None else "File too large"
    assert str(run / "checkpoints" / "checkpoint_000000020.pt") in failed[0] and cause in failed[0]
    assert cause in safe_stops(run)[-1]["reason"]  # the robot was made safe
    assert not temporaries(run)
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["checkpoint_000000010.pt"]
    load_checkpoint(run / "checkpoints" / "checkpoint_000000010.pt")
    assert_episodes_whole_and_counted(run)  # the episode before the failed checkpoint is kept
    assert len(episode_files(run)) == 2
    assert (run / "config.yaml").read_text() != config_before  # replaced whole (the new total)

    # Room again: the run goes on from where it stood.
    if filler is not None:
        filler.unlink()
    assert main(["train", f"resume={run}", "schedule.total_env_steps=30"]) == 0
    assert_episodes_whole_and_counted(run)
    assert len(episode_files(run)) == 3 and not temporaries(run)


def test_a_full_disk_under_the_learner_ends_the_session_in_one_line(small_filesystem):
    """The learner's checkpoint (1.3 MB with Adam's moments) does not fit where the actor's
    episodes (20 kB) and the published policy (0.15 MB) still do."""
    folder, limit = small_filesystem
    run = folder / "run"
    if limit is None:
        fill(folder, leave_bytes=700_000)
    overrides = [*PROCESS, "schedule.initial_collection_steps=10", "schedule.initial_model_updates=1",
                 "schedule.updates_per_step=1", "session.checkpoint_every_updates=1", "schedule.total_env_steps=100000"]
    full = subprocess.run([script_path(), "train", f"out_dir={run}", *overrides], capture_output=True, text=True,
                          timeout=300, preexec_fn=limited(limit))
    assert full.returncode == 1, full.stderr
    line = one_line("\n".join(l for l in full.stderr.splitlines() if "warning: " not in l))
    assert "the learner process ended (exit code 1)" in line and "cannot write " + str(run / "checkpoints") in line
    assert "LearnerDied" in safe_stops(run)[-1]["reason"]
    assert not temporaries(run) and not list_checkpoints(run / "checkpoints")
    assert_episodes_whole_and_counted(run)  # the actor's last episodes reached the disk before it ended


def permissions_bind_this_process(folder: pathlib.Path) -> bool:
    """Whether a folder without write permission stops this process (not root's, which has
    CAP_DAC_OVERRIDE)."""
    probe = folder / ".probe"
    probe.mkdir()
    probe.chmod(0o555)
    try:
        (probe / "file").touch()
        return False
    except PermissionError:
        return True
    finally:
        probe.chmod(0o755)
        shutil.rmtree(probe)


@contextlib.contextmanager
def read_only(folder: pathlib.Path):
    """folder and everything in it read-only for the test: without write permission where
    permissions bind this process, else (root) a read-only bind mount."""
    if permissions_bind_this_process(folder.parent):
        modes = {path: path.stat().st_mode for path in [folder, *folder.rglob("*")]}
        for path, mode in modes.items():
            path.chmod(mode & ~0o222)
        try:
            yield
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    if subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode != 0:
        pytest.skip("this process ignores file permissions (root) and cannot bind-mount a folder read-only")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_a_read_only_run_directory_or_out_dir_is_named_in_one_line(finished_run, tmp_path, capsys):
    run = copy_of(finished_run, tmp_path)
    listing = sorted((p.name, p.stat().st_size) for p in run.rglob("*"))
    with read_only(run):
        assert main(["train", f"resume={run}", "schedule.total_env_steps=40"]) == 1
        line = one_line(capsys.readouterr().err)
        assert str(run / ".lock") in line and ("read-only" in line or "Permission denied" in line), line
    assert sorted((p.name, p.stat().st_size) for p in run.rglob("*")) == listing
    parent = tmp_path / "parent"
    parent.mkdir()
    with read_only(parent):
        assert main(["train", f"out_dir={parent / 'new'}", *INLINE]) == 1
        line = one_line(capsys.readouterr().err)
        assert str(parent / "new") in line, line


def test_a_checkpoint_folder_that_refuses_writes_ends_the_session_safely(finished_run, tmp_path, capsys):
    run = copy_of(finished_run, tmp_path)
    with read_only(run / "checkpoints"):
        assert main(["train", f"resume={run}", "schedule.total_env_steps=40"]) == 1
    line = one_line(capsys.readouterr().err)
    assert f"cannot write {run / 'checkpoints' / 'checkpoint_000000040.pt'}" in line, line
    assert "checkpoint_000000040.pt" in safe_stops(run)[-1]["reason"]  # the robot was made safe
    assert [p.name for p in list_checkpoints(run / "checkpoints")][-1] == "checkpoint_000000030.pt"
    assert_episodes_whole_and_counted(run)
    assert len(episode_files(run)) == 4 and not temporaries(run)
