"""Point reach: rendering, motion, walls, time limit, seeding, reward and success."""

from __future__ import annotations

import numpy as np
import pytest

from slac_robot.agent.replay import SequenceReplay
from slac_robot.config import ConfigError
from slac_robot.tasks.point_reach import DOT_RGB, FLOOR_RGB, GOAL_RGB, PointReachEnv, reference_scores


def mask(image: np.ndarray, rgb) -> np.ndarray:
    return (image == np.array(rgb, dtype=np.uint8)).all(-1)


def centroid(image: np.ndarray, rgb) -> np.ndarray:
    """(column, row) centre of the pixels of one colour."""
    rows, cols = np.nonzero(mask(image, rgb))
    return np.array([cols.mean(), rows.mean()])


def test_image_shows_dot_and_goal_where_they_are():
    env = PointReachEnv()
    obs, info = env.reset(seed=0, options={"position": (-0.6, 0.4), "goal": (0.5, -0.5)})
    image = obs["image"]
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert obs["goal"].tolist() == [0.5, -0.5] and obs["goal"].dtype == np.float32
    np.testing.assert_allclose(centroid(image, DOT_RGB), env.to_pixels((-0.6, 0.4)), atol=0.5)
    np.testing.assert_allclose(centroid(image, GOAL_RGB), env.to_pixels((0.5, -0.5)), atol=0.5)
    # x to the right, y downwards; the dot is a disc of dot_radius_px
    assert centroid(image, DOT_RGB)[0] < 32 < centroid(image, GOAL_RGB)[0]
    assert centroid(image, GOAL_RGB)[1] < 32 < centroid(image, DOT_RGB)[1]
    assert abs(mask(image, DOT_RGB).sum() - np.pi * 5**2) < 12
    goal_radius_px = env.success_radius * env.px_per_unit
    assert abs(mask(image, GOAL_RGB).sum() - np.pi * goal_radius_px**2) < 20
    assert mask(image, FLOOR_RGB).sum() == 64 * 64 - mask(image, DOT_RGB).sum() - mask(image, GOAL_RGB).sum()
    # on the goal, the dot is drawn over it and the goal's rim stays visible around it
    obs, _ = env.reset(options={"position": (0.5, -0.5), "goal": (0.5, -0.5)})
    assert mask(obs["image"], DOT_RGB).sum() == mask(image, DOT_RGB).sum()
    assert mask(obs["image"], GOAL_RGB).any()


def test_actions_move_the_dot_by_max_step():
    env = PointReachEnv(max_step=0.2)
    obs, _ = env.reset(seed=0, options={"position": (0.0, 0.0)})
    before = centroid(obs["image"], DOT_RGB)
    obs, *_ = env.step(np.array([1.0, 0.0]))
    np.testing.assert_allclose(env.position, [0.2, 0.0])
    np.testing.assert_allclose(centroid(obs["image"], DOT_RGB) - before, [0.2 * env.px_per_unit, 0], atol=0.5)
    env.step(np.array([-0.5, 1.0]))
    np.testing.assert_allclose(env.position, [0.1, 0.2])
    env.step(np.array([7.0, -3.0]))  # actions are clipped to [-1, 1]
    np.testing.assert_allclose(env.position, [0.3, 0.0])


def test_walls_stop_the_dot_whole():
    env = PointReachEnv()
    obs, _ = env.reset(seed=0, options={"position": (0.95, -0.9), "goal": (-0.5, 0.5)})
    disc = mask(obs["image"], DOT_RGB).sum()
    for _ in range(3):
        obs, *_ = env.step(np.array([1.0, -1.0]))
    np.testing.assert_allclose(env.position, [1.0, -1.0])
    assert mask(obs["image"], DOT_RGB).sum() == disc  # not cut by the image's edge
    np.testing.assert_allclose(centroid(obs["image"], DOT_RGB), [63 - 5, 5], atol=0.5)


def test_episodes_are_truncated_never_terminated():
    env = PointReachEnv(episode_steps=7)
    env.reset(seed=1)
    ends = [env.step(env.action_space.sample())[2:4] for _ in range(7)]
    assert ends == [(False, False)] * 6 + [(False, True)]
    with pytest.raises(RuntimeError, match="reset"):
        PointReachEnv().step(np.zeros(2))


def test_seeding_reproduces_episodes():
    def rollout(seed, **kwargs):
        env = PointReachEnv(**kwargs)
        obs, _ = env.reset(seed=seed)
        images, goals = [obs["image"]], [obs["goal"]]
        for action in np.linspace(-1, 1, 10).reshape(5, 2):
            obs, *_ = env.step(action)
            images.append(obs["image"])
        return np.stack(images), np.stack(goals)

    for setting in ("fixed", "random"):
        first, again = rollout(3, goal_setting=setting), rollout(3, goal_setting=setting)
        np.testing.assert_array_equal(first[0], again[0])
        np.testing.assert_array_equal(first[1], again[1])
        assert not np.array_equal(first[0], rollout(4, goal_setting=setting)[0])
    goals = [PointReachEnv(goal_setting="random").reset(seed=s)[0]["goal"] for s in range(20)]
    assert len({tuple(g) for g in goals}) == 20 and np.abs(goals).max() <= 0.8
    assert all(PointReachEnv().reset(seed=s)[0]["goal"].tolist() == [0.5, -0.5] for s in range(3))


def test_reward_and_success():
    env = PointReachEnv(success_radius=0.25, success_bonus=1.0, max_step=0.2)
    env.reset(seed=0, options={"position": (0.0, 0.0), "goal": (0.0, 0.7)})
    _, reward, _, _, info = env.step(np.array([0.0, 1.0]))  # 0.5 from the goal
    assert reward == pytest.approx(-0.5) and not info["success"]
    assert info["reward_terms"] == pytest.approx({"distance_cost": -0.5, "success_bonus": 0.0})
    _, reward, _, _, info = env.step(np.array([0.0, 1.0]))  # 0.3: outside the radius
    assert reward == pytest.approx(-0.3) and not info["success"]
    _, reward, _, _, info = env.step(np.array([0.0, 0.5]))  # 0.2: inside
    assert reward == pytest.approx(-0.2 + 1.0) and info["success"]
    assert info["distance"] == pytest.approx(0.2)


def test_the_oracle_reaches_the_goal_and_random_actions_do_not():
    env = PointReachEnv()
    rng = np.random.default_rng(0)
    random_return, random_success = reference_scores(env, lambda e: rng.uniform(-1, 1, 2), episodes=10)
    oracle_return, oracle_success = reference_scores(env, PointReachEnv.oracle_action, episodes=10)
    assert oracle_success == 1.0 and random_success < 0.5
    assert oracle_return > random_return + 20


def test_bad_settings_name_the_key():
    with pytest.raises(ConfigError, match="goal_setting='moving'.*fixed, random"):
        PointReachEnv(goal_setting="moving")
    with pytest.raises(ConfigError, match="dot_radius_px=40.*smaller"):
        PointReachEnv(dot_radius_px=40)
    with pytest.raises(ConfigError, match="fixed_goal"):
        PointReachEnv(fixed_goal=(2.0, 0.0))
    with pytest.raises(ConfigError, match="episode_steps"):
        PointReachEnv(episode_steps=0)


def test_episodes_go_into_the_sequence_replay(tmp_path):
    env = PointReachEnv(image_size_px=32, dot_radius_px=3, episode_steps=6)
    replay = SequenceReplay(tmp_path, 2, sequence_length=3, image_shape=(32, 32, 3), extras={"goal": 2})
    obs, _ = env.reset(seed=0)
    replay.start_episode(obs)
    images, done = [obs["image"]], False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(env.oracle_action())
        replay.add(env.oracle_action(), reward, obs, terminated, truncated)
        images.append(obs["image"])
        done = terminated or truncated
    batch = replay.sample(50, np.random.default_rng(0))
    assert replay.num_steps == 6 and not batch["terminated"].any()
    assert (batch["goal"] == np.float32([0.5, -0.5])).all()
    # each window is 4 consecutive recorded images, the first observation repeated before the start
    padded = np.stack([images[0]] * 2 + images)
    windows = [padded[last : last + 4] for last in range(6)]
    for window in batch["images"]:
        assert any(np.array_equal(window, expected) for expected in windows)
