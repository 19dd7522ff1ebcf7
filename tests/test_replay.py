"""Sequence replay: windows, padding, terminations, storage, eviction, files, crashes, readers.

Every observation, action and reward encodes (episode, step), so each sampled window can be
checked against what was recorded. Images are 8x8 to keep the files small and the tests fast.
"""

from __future__ import annotations

import inspect
import math
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slac_robot.agent.replay import (
    CORRUPT_DIR,
    BackgroundEpisodeWriter,
    EpisodeWriter,
    SequenceReplay,
    read_episode,
    recorded_episodes,
    write_episode,
)
from slac_robot.config import ConfigError

SHAPE = (8, 8, 3)
ACTION_DIM = 3
EXTRAS = {"goal": 2}


def observation(episode: int, t: int, shape=(8, 8, 3)) -> dict:
    """Observation t of an episode: the image's channels and the goal hold (episode, t)."""
    import numpy as np

    image = np.empty(shape, dtype=np.uint8)
    image[..., 0] = episode % 256
    image[..., 1] = t % 256
    image[..., 2] = 7
    return {"image": image, "goal": np.array([episode, t], dtype=np.float32), "joint_pos": np.zeros(9)}


def record(replay, episode: int, steps: int, terminated: bool = False) -> None:
    """Records an episode whose action k is (episode, k, 1) and reward k is 100 episode + k."""
    replay.start_episode(observation(episode, 0))
    for k in range(steps):
        last = k == steps - 1
        replay.add(
            np.array([episode, k, 1], dtype=np.float32),
            100 * episode + k,
            observation(episode, k + 1),
            terminated=terminated and last,
            truncated=last and not terminated,
        )


def make_replay(directory, **kwargs) -> SequenceReplay:
    kwargs = {"capacity_steps": 1000, "sequence_length": 4, **kwargs}
    return SequenceReplay(directory, ACTION_DIM, image_shape=SHAPE, extras=EXTRAS, **kwargs)


def check_windows(batch: dict, lengths: dict[int, int], terminated: set[int], L: int) -> list[tuple[int, int]]:
    """Asserts every window is L steps of one episode, padded by the convention; returns each
    window's (episode, last step)."""
    names = []
    for b in range(len(batch["valid"])):
        episode_ids = batch["goal"][b, :, 0].astype(int)
        episode = episode_ids[0]
        assert (episode_ids == episode).all(), "a window crosses episodes"
        t = batch["goal"][b, :, 1].astype(int)
        valid = batch["valid"][b]
        first_real = L + 1 - valid.sum()
        assert (valid == (np.arange(L + 1) >= first_real)).all(), "padding comes first"
        last_step = t[-1] - 1
        # real observations are consecutive; padding repeats observation 0
        expected_t = np.maximum(np.arange(L + 1) + last_step - L + 1, 0)
        assert (t == expected_t).all()
        assert (batch["images"][b, :, :, :, 0] == (episode % 256)).all()
        assert (batch["images"][b, :, 0, 0, 1] == expected_t % 256).all()
        steps = np.arange(L) + last_step - L + 1
        real = valid[:L]
        assert (real == (steps >= 0)).all()
        expected_actions = np.where(real[:, None], np.stack([np.full(L, episode), steps, np.ones(L)], 1), 0)
        assert (batch["actions"][b] == expected_actions).all()
        assert (batch["rewards"][b] == np.where(real, 100 * episode + steps, 0)).all()
        ends = (steps == lengths[episode] - 1) & (episode in terminated)
        assert (batch["terminated"][b] == ends).all()
        assert 0 <= last_step < lengths[episode]
        names.append((int(episode), int(last_step)))
    return names


@settings(max_examples=25, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=8),
    terminated=st.sets(st.integers(0, 7)),
    L=st.integers(1, 6),
    pad_start=st.booleans(),
    capacity=st.integers(12, 60),
)
def test_windows_never_cross_episodes_and_cover_all_windows(lengths, terminated, L, pad_start, capacity):
    with tempfile.TemporaryDirectory() as directory:
        replay = make_replay(directory, capacity_steps=capacity, sequence_length=L, pad_start=pad_start, expected_episode_steps=4)
        for episode, steps in enumerate(lengths):
            record(replay, episode, steps, terminated=episode in terminated)
        # the newest whole episodes that fit are in memory
        kept, steps_kept, frames_kept = [], 0, 0
        for episode in reversed(range(len(lengths))):
            steps_kept += lengths[episode]
            frames_kept += lengths[episode] + 1
            if steps_kept > capacity or frames_kept > replay.capacity_frames:
                break
            kept.append(episode)
        assert replay.num_episodes == len(kept)
        assert replay.num_steps == len(replay) == sum(lengths[e] for e in kept)
        windows = {(e, s) for e in kept for s in range(lengths[e]) if pad_start or s >= L - 1}
        assert replay.num_windows == len(windows)
        if not windows:
            with pytest.raises(ValueError, match="no windows"):
                replay.sample(4, np.random.default_rng(0))
            return
        batch = replay.sample(60 * len(windows), np.random.default_rng(0))
        seen = check_windows(batch, dict(enumerate(lengths)), terminated, L)
        assert set(seen) == windows
        # every window by number: the oldest episode's first, each episode's in time order
        numbers = np.arange(replay.num_windows)
        in_order = check_windows(replay.windows(numbers), dict(enumerate(lengths)), terminated, L)
        assert in_order == sorted(windows)
        oldest_first = sorted(kept)
        assert [oldest_first[i] for i in replay.window_episodes(numbers)] == [e for e, _ in in_order]


def test_sampled_shapes_and_types(tmp_path):
    replay = make_replay(tmp_path, sequence_length=8)
    record(replay, 0, 12)
    batch = replay.sample(5, np.random.default_rng(1))
    assert batch["images"].shape == (5, 9, *SHAPE) and batch["images"].dtype == np.uint8
    assert batch["actions"].shape == (5, 8, ACTION_DIM) and batch["actions"].dtype == np.float32
    assert batch["rewards"].shape == (5, 8) and batch["rewards"].dtype == np.float32
    assert batch["terminated"].shape == (5, 8) and batch["terminated"].dtype == bool
    assert batch["goal"].shape == (5, 9, 2) and batch["goal"].dtype == np.float32
    assert batch["valid"].shape == (5, 9) and batch["valid"].dtype == bool
    assert set(batch) == {"images", "actions", "rewards", "terminated", "valid", "goal"}


def test_sampling_is_uniform_over_windows(tmp_path):
    # a 2-step and a 30-step episode: 32 windows; per-episode uniform sampling would give the
    # short episode half the draws instead of 1/16
    replay = make_replay(tmp_path)
    record(replay, 0, 2)
    record(replay, 1, 30)
    batch = replay.sample(32_000, np.random.default_rng(2))
    short_share = (batch["goal"][:, 0, 0] == 0).mean()
    assert abs(short_share - 2 / 32) < 0.01


def test_padding_at_the_start_of_an_episode(tmp_path):
    replay = make_replay(tmp_path, sequence_length=4)
    record(replay, 5, 3)
    batch = replay.sample(200, np.random.default_rng(3))
    first = batch["goal"][:, -1, 1] == 1  # windows whose last step is step 0
    assert first.any()
    b = np.flatnonzero(first)[0]
    assert batch["valid"][b].tolist() == [False, False, False, True, True]
    assert batch["goal"][b, :, 1].tolist() == [0, 0, 0, 0, 1]
    assert (batch["images"][b, :4] == observation(5, 0)["image"]).all()
    assert batch["actions"][b].tolist() == [[0, 0, 0]] * 3 + [[5, 0, 1]]
    assert batch["rewards"][b].tolist() == [0, 0, 0, 500]


def test_without_padding_windows_start_inside_episodes(tmp_path):
    replay = make_replay(tmp_path, sequence_length=4, pad_start=False)
    record(replay, 0, 3)
    assert replay.num_windows == 0
    with pytest.raises(ValueError, match="at least 4 steps"):
        replay.sample(1, np.random.default_rng(0))
    record(replay, 1, 6)
    assert replay.num_windows == 3
    batch = replay.sample(100, np.random.default_rng(0))
    assert batch["valid"].all()
    assert (batch["goal"][:, 0, 0] == 1).all()


def test_terminated_is_a_true_end_and_time_limits_are_not(tmp_path):
    replay = make_replay(tmp_path, sequence_length=2)
    record(replay, 0, 3, terminated=True)
    record(replay, 1, 3, terminated=False)
    batch = replay.sample(400, np.random.default_rng(4))
    ends = batch["goal"][:, -1, 1] == 3  # windows that end with the episode's last step
    assert batch["terminated"][ends & (batch["goal"][:, 0, 0] == 0), -1].all()
    assert not batch["terminated"][batch["goal"][:, 0, 0] == 1].any()
    assert not batch["terminated"][:, :-1].any()
    with np.load(sorted(tmp_path.glob("episode_*.npz"))[0]) as first:
        assert bool(first["terminated"]) and not bool(first["truncated"])
    # a one-step episode that terminates: padding before it is never a termination
    replay.start_episode(observation(2, 0))
    replay.add(np.zeros(ACTION_DIM), 0.0, observation(2, 1), terminated=True, truncated=True)
    batch = replay.sample(400, np.random.default_rng(5))
    one_step = batch["goal"][:, 0, 0] == 2
    assert one_step.any()
    assert batch["terminated"][one_step].tolist() == [[False, True]] * one_step.sum()
    with np.load(sorted(tmp_path.glob("episode_*.npz"))[-1]) as last:  # a termination wins
        assert bool(last["terminated"]) and not bool(last["truncated"])


def test_an_episode_cut_short_by_a_trip_is_kept_truncated_and_marked(tmp_path):
    replay = make_replay(tmp_path, sequence_length=2)
    record(replay, 0, 3)
    replay.start_episode(observation(1, 0))
    for k in range(2):  # two whole steps, then the safety layer trips in the third
        replay.add(np.array([1, k, 1], np.float32), 100 + k, observation(1, k + 1), False, False)
    assert replay.end_tripped("position_limit")
    replay.start_episode(observation(2, 0))  # a trip before the first whole step: nothing to keep
    assert not replay.end_tripped("stale_frame")
    assert not replay.writer.in_episode
    assert (replay.total_episodes, replay.total_steps) == (2, 5)
    files = sorted(tmp_path.glob("episode_*.npz"))
    assert [f.name for f in files] == ["episode_00000000_3.npz", "episode_00000001_2.npz"]
    kept = read_episode(files[1], SHAPE, ACTION_DIM, EXTRAS)
    assert kept.tripped == "position_limit" and kept.truncated and not kept.terminated
    assert kept.rewards.tolist() == [100, 101] and kept.extras["goal"][-1].tolist() == [1, 2]
    assert read_episode(files[0], SHAPE, ACTION_DIM, EXTRAS).tripped == ""
    # its windows are sampled like any other, and never as a termination
    batch = replay.sample(200, np.random.default_rng(0))
    assert (batch["goal"][:, 0, 0] == 1).any() and not batch["terminated"].any()
    # a file written before trips were kept (no "tripped" array) reads as not tripped
    with np.load(files[0]) as data:
        arrays = {k: data[k] for k in data.files if k != "tripped"}
    np.savez_compressed(tmp_path / "episode_00000009_3.npz", **arrays)
    assert read_episode(tmp_path / "episode_00000009_3.npz", SHAPE, ACTION_DIM, EXTRAS).tripped == ""


def test_each_frame_is_stored_once(tmp_path):
    capacity, episode_steps, L = 400, 20, 8
    replay = make_replay(tmp_path, capacity_steps=capacity, sequence_length=L, expected_episode_steps=episode_steps)
    for episode in range(capacity // episode_steps):
        record(replay, episode, episode_steps)
    assert replay.num_steps == capacity and replay.num_windows == capacity
    frame_bytes = math.prod(SHAPE)
    frames = capacity + capacity // episode_steps
    step_bytes = 4 * ACTION_DIM + 4 + 1
    assert replay.memory_bytes == frames * (frame_bytes + 4 * 2) + capacity * step_bytes
    # one copy per window would take L + 1 frames per window
    assert replay.memory_bytes < 0.15 * replay.num_windows * (L + 1) * frame_bytes
    stored = {(int(g[0]), int(g[1])) for g in replay._extras["goal"]}
    assert len(stored) == frames  # every observation of every episode, once


def test_eviction_keeps_whole_episodes_and_every_file(tmp_path):
    replay = make_replay(tmp_path, capacity_steps=50, expected_episode_steps=10)
    for episode in range(8):
        record(replay, episode, 10)
    assert replay.num_episodes == 5 and replay.num_steps == 50
    assert replay.total_episodes == 8 and replay.total_steps == 80
    batch = replay.sample(2000, np.random.default_rng(5))
    assert set(batch["goal"][:, 0, 0].astype(int)) == {3, 4, 5, 6, 7}
    check_windows(batch, {e: 10 for e in range(8)}, set(), 4)
    assert len(list(tmp_path.glob("episode_*.npz"))) == 8
    # uneven lengths: the ring wraps inside an episode
    record(replay, 8, 7)
    record(replay, 9, 13)
    batch = replay.sample(2000, np.random.default_rng(6))
    assert set(batch["goal"][:, 0, 0].astype(int)) == {5, 6, 7, 8, 9}  # 50 steps, 55 frames
    check_windows(batch, {5: 10, 6: 10, 7: 10, 8: 7, 9: 13}, set(), 4)


def test_reload_reproduces_the_same_content(tmp_path):
    replay = make_replay(tmp_path, capacity_steps=40, expected_episode_steps=5)
    for episode, steps in enumerate([5, 9, 3, 7, 11, 4, 6]):
        record(replay, episode, steps, terminated=episode == 3)
    reloaded = make_replay(tmp_path, capacity_steps=40, expected_episode_steps=5)
    for counter in ("num_episodes", "num_steps", "num_windows", "total_episodes", "total_steps"):
        assert getattr(reloaded, counter) == getattr(replay, counter)
    expected = replay.sample(300, np.random.default_rng(7))
    got = reloaded.sample(300, np.random.default_rng(7))
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    # recording goes on after the last index on disk
    record(reloaded, 7, 2)
    assert sorted(p.name for p in tmp_path.glob("episode_*.npz"))[-1] == "episode_00000007_2.npz"


def test_episode_longer_than_the_capacity_is_refused_but_kept_on_disk(tmp_path):
    replay = make_replay(tmp_path, capacity_steps=12)
    with pytest.raises(ValueError, match="raise capacity_steps"):
        record(replay, 0, 13)
    assert (tmp_path / "episode_00000000_13.npz").exists()


def test_bad_input_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="replay.capacity_steps must be an integer >= 1"):
        make_replay(tmp_path, capacity_steps=0)
    replay = make_replay(tmp_path)
    with pytest.raises(RuntimeError, match="start_episode"):
        replay.add(np.zeros(ACTION_DIM), 0.0, observation(0, 1), False, False)
    with pytest.raises(ValueError, match=r"image_shape=\(16, 16, 3\)"):
        replay.start_episode(observation(0, 0, shape=(16, 16, 3)))
    replay.start_episode(observation(0, 0))
    with pytest.raises(ValueError, match="action_dim=2"):
        replay.add(np.zeros(2), 0.0, observation(0, 1), False, False)
    with pytest.raises(KeyError, match="goal"):
        replay.add(np.zeros(ACTION_DIM), 0.0, {"image": observation(0, 1)["image"]}, False, False)
    replay.discard_episode()
    record(replay, 0, 2)
    replay.start_episode(observation(1, 0))
    replay.add(np.zeros(ACTION_DIM), 0.0, observation(1, 1), False, False)
    with pytest.raises(RuntimeError, match="discard_episode"):
        replay.start_episode(observation(2, 0))


def test_unreadable_files_are_moved_aside_with_a_warning(tmp_path):
    replay = make_replay(tmp_path)
    for episode in range(4):
        record(replay, episode, 3)
    files = sorted(tmp_path.glob("episode_*.npz"))
    files[1].write_bytes(files[1].read_bytes()[:200])  # torn
    files[2].write_bytes(b"not an episode")
    (tmp_path / ".episode_00000004_3.npz.123.tmp").write_bytes(b"half")  # a crashed write
    with pytest.warns(UserWarning) as caught:
        reloaded = make_replay(tmp_path)
    messages = " ".join(str(w.message) for w in caught)
    assert files[1].name in messages and files[2].name in messages and "corrupt" in messages
    assert sorted(p.name for p in (tmp_path / CORRUPT_DIR).iterdir()) == [files[1].name, files[2].name]
    assert reloaded.num_episodes == 2 and reloaded.total_episodes == 2
    assert set(reloaded.sample(100, np.random.default_rng(8))["goal"][:, 0, 0].astype(int)) == {0, 3}
    record(reloaded, 4, 3)
    assert (tmp_path / "episode_00000004_3.npz").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert make_replay(tmp_path).num_episodes == 3


def test_files_of_other_shapes_give_a_clear_error(tmp_path):
    record(make_replay(tmp_path), 0, 3)
    with pytest.raises(ConfigError, match=r"images of shape \(8, 8, 3\).*expects \(16, 16, 3\).*new replay directory"):
        SequenceReplay(tmp_path, ACTION_DIM, image_shape=(16, 16, 3), extras=EXTRAS)
    with pytest.raises(ConfigError, match="3-d actions.*action_dim=9"):
        SequenceReplay(tmp_path, 9, image_shape=SHAPE, extras=EXTRAS)
    with pytest.raises(ConfigError, match="no 'joint_pos'.*extras"):
        SequenceReplay(tmp_path, ACTION_DIM, image_shape=SHAPE, extras={"goal": 2, "joint_pos": 9})
    with pytest.raises(ConfigError, match=r"extras\['goal'\]=3"):
        SequenceReplay(tmp_path, ACTION_DIM, image_shape=SHAPE, extras={"goal": 3})
    assert not (tmp_path / CORRUPT_DIR).exists()


CHILD = """
import os, sys, time
import numpy as np
from slac_robot.agent.replay import EpisodeWriter, SequenceReplay
{helpers}
directory, mode = sys.argv[1], sys.argv[2]
if mode == "writer":  # an actor process: writes two episodes, then exits
    writer = EpisodeWriter(directory, 3, (8, 8, 3), {{"goal": 2}})
    for episode in (100, 101):
        record(writer, episode, 4 + episode - 100)
    sys.exit(0)
replay = SequenceReplay(directory, 3, capacity_steps=30, sequence_length=4, image_shape=(8, 8, 3), extras={{"goal": 2}})
for episode in range(3):
    record(replay, episode, 5 + episode)
    print(episode, flush=True)
if mode == "hold":  # killed in the middle of an episode
    replay.start_episode(observation(3, 0))
    for k in range(2):
        replay.add(np.zeros(3), 0.0, observation(3, k + 1), False, False)
    print("mid-episode", flush=True)
    time.sleep(60)
episode = 3
while True:  # killed at a random moment, maybe while a file is being written
    episode += 1
    record(replay, episode, 1 + episode % 9)
    print(episode, flush=True)
"""


def start_child(directory: Path, mode: str) -> subprocess.Popen:
    helpers = "\n".join(textwrap.dedent(inspect.getsource(f)) for f in (observation, record))
    code = CHILD.format(helpers=helpers)
    return subprocess.Popen([sys.executable, "-c", code, str(directory), mode], stdout=subprocess.PIPE, text=True)


def test_sigkill_loses_at_most_the_unfinished_episode(tmp_path):
    child = start_child(tmp_path, "hold")
    try:
        lines = [child.stdout.readline().strip() for _ in range(4)]
        assert lines == ["0", "1", "2", "mid-episode"]
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no file is corrupt
        replay = make_replay(tmp_path)
    assert replay.num_episodes == 3 and replay.total_steps == 5 + 6 + 7
    batch = replay.sample(500, np.random.default_rng(9))
    check_windows(batch, {0: 5, 1: 6, 2: 7}, set(), 4)
    assert set(batch["goal"][:, 0, 0].astype(int)) == {0, 1, 2}

    # killed at random moments while episodes keep being written
    rng = np.random.default_rng(10)
    for _ in range(3):
        child = start_child(tmp_path, "loop")
        try:
            reported = [child.stdout.readline().strip() for _ in range(4)]
            assert all(line.isdigit() for line in reported), reported
            time.sleep(rng.uniform(0, 0.05))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            replay = make_replay(tmp_path, capacity_steps=100_000)
        lengths = {}
        for path in tmp_path.glob("episode_*.npz"):
            _, index, steps = path.stem.split("_")
            lengths[int(index)] = int(steps)
        assert replay.total_episodes == len(lengths) >= 3 + len(reported)
        assert replay.num_steps == sum(lengths.values())
        # the stored content is whole: windows of the reloaded replay match their recording
        episode_of_file = {}
        for index in lengths:
            with np.load(next(tmp_path.glob(f"episode_{index:08d}_*.npz"))) as data:
                episode_of_file[int(data["obs_goal"][0, 0])] = lengths[index]
                assert len(data["obs_image"]) == lengths[index] + 1
        check_windows(replay.sample(500, np.random.default_rng(11)), episode_of_file, set(), 4)


def test_refresh_loads_episodes_written_by_another_process(tmp_path):
    learner = make_replay(tmp_path)
    record(learner, 0, 3)
    assert learner.refresh() == 0
    actor = start_child(tmp_path, "writer")
    assert actor.wait(timeout=60) == 0
    assert learner.refresh() == 2
    assert learner.num_episodes == 3 and learner.total_steps == 3 + 4 + 5
    batch = learner.sample(600, np.random.default_rng(12))
    assert set(batch["goal"][:, 0, 0].astype(int)) == {0, 100, 101}
    check_windows(batch, {0: 3, 100: 4, 101: 5}, set(), 4)
    assert learner.refresh() == 0
    # the learner's own recording goes on after the actor's files
    record(learner, 1, 2)
    assert (tmp_path / "episode_00000003_2.npz").exists()


def test_a_writer_never_replaces_another_writers_file(tmp_path):
    first = EpisodeWriter(tmp_path, ACTION_DIM, SHAPE, EXTRAS)
    second = EpisodeWriter(tmp_path, ACTION_DIM, SHAPE, EXTRAS)
    record(first, 0, 2)
    record(second, 1, 2)
    record(first, 2, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"episode_0000000{i}_2.npz" for i in range(3)]
    # a writer that lost a race for index 1 takes the next free one
    taken = (tmp_path / "episode_00000001_2.npz").read_bytes()
    episode = read_episode(tmp_path / "episode_00000001_2.npz", SHAPE, ACTION_DIM, EXTRAS)
    assert write_episode(tmp_path, 1, episode).name == "episode_00000003_2.npz"
    assert (tmp_path / "episode_00000001_2.npz").read_bytes() == taken
    assert sorted(p.name for p in tmp_path.iterdir())[-1] == "episode_00000003_2.npz"  # no temporary left
    replay = make_replay(tmp_path)
    assert replay.total_episodes == 4
    assert set(replay.sample(300, np.random.default_rng(13))["goal"][:, 0, 0].astype(int)) == {0, 1, 2}


def test_a_background_writer_writes_the_same_files_and_flush_waits_for_them(tmp_path):
    direct, background = tmp_path / "direct", tmp_path / "background"
    record(EpisodeWriter(direct, ACTION_DIM, SHAPE, EXTRAS), 0, 3)
    writer = BackgroundEpisodeWriter(background, ACTION_DIM, SHAPE, EXTRAS)
    for episode, steps in enumerate((3, 4, 5)):
        record(writer, episode, steps)
    writer.close()  # returns once every finished episode is on disk
    assert recorded_episodes(background) == (3, 3 + 4 + 5)
    a = read_episode(direct / "episode_00000000_3.npz", SHAPE, ACTION_DIM, EXTRAS)
    b = read_episode(background / "episode_00000000_3.npz", SHAPE, ACTION_DIM, EXTRAS)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.actions, b.actions)


def test_a_background_write_that_fails_is_reported(tmp_path):
    folder = tmp_path / "replay"
    writer = BackgroundEpisodeWriter(folder, ACTION_DIM, SHAPE, EXTRAS)
    folder.rmdir()
    folder.write_bytes(b"")  # where the folder was, a file: the thread's write fails
    record(writer, 0, 2)
    with pytest.raises(RuntimeError, match="could not be written"):
        writer.flush()
