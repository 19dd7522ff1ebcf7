"""The learner's pieces in one process: policy publishing, update pacing, checkpoints, eval's loading."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from slac_robot.agent.slac import SlacAgent
from slac_robot.agent.checkpoint import CheckpointError
from slac_robot.agent.history import PolicyHistory
from slac_robot.agent.replay import EpisodeWriter, SequenceReplay
from slac_robot.runtime.learner import POLICY_FILE, Learner, PolicySubscriber, load_policy, publish_policy
from slac_robot.runtime.learning_check import AGENT
from slac_robot.runtime.train import Schedule

SHAPE, ACTIONS, STEPS = (64, 64, 3), 2, 10
SCHEDULE = Schedule(
    total_env_steps=100, initial_collection_steps=15, initial_model_updates=2, updates_per_step=1,
    model_batch_size=2, sac_batch_size=2, eval_every_episodes=0, eval_episodes=1,
    checkpoint_every_episodes=0, keep_checkpoints=2, log_every_steps=100,
)


def agent() -> SlacAgent:
    return SlacAgent(ACTIONS, {"goal": 2}, cfg=AGENT)


def write_episodes(folder, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    writer = EpisodeWriter(folder, ACTIONS, SHAPE, {"goal": 2})
    for _ in range(count):
        obs = lambda: {"image": rng.integers(0, 255, SHAPE, dtype=np.uint8), "goal": np.zeros(2, np.float32)}
        writer.start_episode(obs())
        for t in range(STEPS):
            writer.add(rng.uniform(-1, 1, ACTIONS), 0.0, obs(), False, t == STEPS - 1)


def learner(run_dir) -> Learner:
    replay = SequenceReplay(run_dir / "replay", action_dim=ACTIONS, capacity_steps=1000,
                            sequence_length=AGENT.sequence_length, extras={"goal": 2}, expected_episode_steps=STEPS)
    return Learner(agent(), replay, SCHEDULE, run_dir, seed=1, publish_every_updates=3,
                   checkpoint_every_updates=1000, log_every_updates=1000, fps=10.0)


def test_a_published_policy_is_taken_up_once(tmp_path):
    source, subscriber = agent(), PolicySubscriber(tmp_path)
    assert subscriber.poll() is None  # nothing published yet
    with torch.no_grad():
        source.actor.net[0].weight.fill_(0.25)
    publish_policy(tmp_path, source, env_steps=7)
    state = subscriber.poll()
    assert state is not None and subscriber.poll() is None  # one stat() later: nothing new
    actor = agent()
    actor.load_policy_state_dict(state)
    history = PolicyHistory(AGENT.sequence_length, SHAPE, ACTIONS, {"goal": 2})
    np.testing.assert_array_equal(actor.act(history, explore=False), source.act(history, explore=False))
    publish_policy(tmp_path, source, env_steps=8)
    assert subscriber.poll() is not None and subscriber.version == 2


def test_a_fractional_update_ratio_allows_its_share_of_the_steps_rounded_down():
    half = replace(SCHEDULE, updates_per_step=0.5)  # updates from step 15 (the collection's last) on
    assert [half.updates_allowed(n) for n in (10, 14, 15, 16, 17, 20)] == [0, 0, 0, 1, 1, 3]
    assert [half.updates_after_step(n) for n in range(15, 21)] == [0, 1, 0, 1, 0, 1]
    assert [SCHEDULE.updates_after_step(n) for n in range(15, 21)] == [1] * 6  # the paper's ratio 1
    ratio = replace(SCHEDULE, updates_per_step=0.29)
    assert ratio.updates_allowed(15 + 99) == 29  # 0.29 x 100 is 28.999999999999996 in floats


def test_the_learner_waits_for_data_and_never_outpaces_it(tmp_path):
    learn = learner(tmp_path)
    learn.replay.refresh()
    assert learn.updates_due() == 0  # no finished episode yet
    write_episodes(tmp_path / "replay", 1)
    learn.replay.refresh()
    assert learn.updates_due() == 0  # 10 steps < initial_collection_steps
    write_episodes(tmp_path / "replay", 1, seed=1)
    learn.replay.refresh()
    assert learn.updates_due() == 1  # the pre-training, as one chunk
    learn.pretrain(lambda: False)
    assert learn.agent.model_updates == SCHEDULE.initial_model_updates
    assert learn.updates_due() == 20 - 15 + 1  # one SAC update per recorded step past the collection
    stops = iter([False] * 100)
    learn.run(lambda: learn.updates_due() == 0 or next(stops), poll_s=0.01)
    assert learn.agent.sac_updates == 6 and learn.updates_due() == 0
    assert (tmp_path / POLICY_FILE).is_file()


def test_a_learner_resumes_from_its_checkpoint_and_eval_reads_it(tmp_path):
    write_episodes(tmp_path / "replay", 2)
    first = learner(tmp_path)
    first.replay.refresh()
    first.pretrain(lambda: False)
    first.update()
    path = first.save()
    second = learner(tmp_path)
    assert second.restore() == path
    assert second.pretrained and second.agent.sac_updates == 1
    for name, value in first.agent.actor.state_dict().items():
        assert torch.equal(value, second.agent.actor.state_dict()[name])
    policy = load_policy(path, agent())
    assert policy["sac_updates"] == 1 and set(policy) == {"encoder", "actor", "model_updates", "sac_updates"}
    agent().load_policy_state_dict(policy)  # the checkpoint's encoder and actor fit an acting agent


def test_an_unreadable_policy_file_names_itself(tmp_path):
    (tmp_path / POLICY_FILE).write_bytes(b"not a policy")
    with pytest.raises(CheckpointError, match=POLICY_FILE):
        load_policy(tmp_path / POLICY_FILE, agent())
