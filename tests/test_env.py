"""The Gymnasium environment over the real MuJoCo backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slac_robot.backends import make_policy
from slac_robot.tasks import wrap_to_pi

GOAL_GREEN = np.array([0.1, 0.85, 0.1])


def _greenish(image: np.ndarray) -> np.ndarray:
    """Pixels coloured like the goal marker: green well above red and blue."""
    image = image.astype(int)
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    return (g > 120) & (g > r + 60) & (g > b + 60)


def _changed(a: np.ndarray, b: np.ndarray, threshold: int = 30) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int)).max(axis=-1) > threshold


def _rollout(env, seed, actions, options=None):
    observation, info = env.reset(seed=seed, options=options)
    observations, infos = [observation], [info]
    for action in actions:
        observation, _, _, _, info = env.step(action)
        observations.append(observation)
        infos.append(info)
    return observations, infos


def _assert_same(first, second):
    (obs_a, info_a), (obs_b, info_b) = first, second
    assert len(obs_a) == len(obs_b)
    for step, (a, b) in enumerate(zip(obs_a, obs_b)):
        for key in ("image", "joint_pos", "goal"):
            assert np.array_equal(a[key], b[key]), f"{key} differs at step {step}"
    for a, b in zip(info_a, info_b):
        assert a["valve_rad"] == b["valve_rad"]
        assert a["goal_rad"] == b["goal_rad"]


def _check_step_repeats_within_the_reset_tolerance(env) -> None:
    """Stands in for Gymnasium's check_step_determinism, which asks for the same bits from
    reset(seed) + step twice on one env. The scripted reset moves the claw through physics
    from wherever it is (as on hardware), so the second reset arrives within its tolerance,
    not at the same bits. What holds: the same draws, the same start within tolerance."""
    tolerance = env.scripted_reset.tolerance_rad
    action = env.action_space.sample()
    first = env.reset(seed=123)
    after_first = env.step(action)
    second = env.reset(seed=123)
    after_second = env.step(action)
    assert first[1]["goal_rad"] == second[1]["goal_rad"]
    assert abs(wrap_to_pi(first[1]["valve_rad"] - second[1]["valve_rad"])) < tolerance
    for a, b in ((first[0], second[0]), (after_first[0], after_second[0])):
        np.testing.assert_array_equal(a["goal"], b["goal"])
        np.testing.assert_allclose(a["joint_pos"], b["joint_pos"], atol=2 * tolerance)


@pytest.fixture
def check_env_with_physical_resets(monkeypatch):
    """Gymnasium's check_env with its step-determinism check replaced (see above)."""
    from gymnasium.utils import env_checker

    monkeypatch.setattr(env_checker, "check_step_determinism", _check_step_repeats_within_the_reset_tolerance)
    return env_checker.check_env


def test_check_env_passes(shared_env, check_env_with_physical_resets):
    check_env_with_physical_resets(shared_env.unwrapped, skip_render_check=True)


def test_a_fresh_env_repeats_an_episode_bit_for_bit_after_the_same_history(load_cfg, make_fresh_env):
    # What Gymnasium's step-determinism check asks, on two fresh envs given the same calls.
    runs = []
    for _ in range(2):
        env = make_fresh_env(load_cfg())
        action = np.linspace(-1, 1, 9, dtype=np.float32)
        runs.append([env.reset(seed=123)[0], env.step(action)[0], env.reset(seed=123)[0], env.step(action)[0]])
    for a, b in zip(*runs):
        for key in ("image", "joint_pos", "goal"):
            np.testing.assert_array_equal(a[key], b[key])


# check_env can't try other render modes on an env not made through gymnasium.make.
@pytest.mark.filterwarnings("ignore:.*alternative render modes:UserWarning")
def test_check_env_with_render(load_cfg, make_fresh_env, check_env_with_physical_resets):
    cfg = load_cfg("backend.view_camera.width_px=160", "backend.view_camera.height_px=120")
    env = make_fresh_env(cfg, render=True)
    assert env.render_mode == "rgb_array"
    check_env_with_physical_resets(env.unwrapped)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (120, 160, 3)
    assert frame.dtype == np.uint8
    assert frame.std() > 5  # a real picture, not a blank buffer


def test_render_without_render_mode_returns_none(shared_env):
    shared_env.reset(seed=0)
    assert shared_env.render_mode is None
    assert shared_env.render() is None


def test_spaces(shared_env, cfg):
    assert shared_env.action_space.shape == (9,)
    assert np.all(shared_env.action_space.low == -1) and np.all(shared_env.action_space.high == 1)
    image_space = shared_env.observation_space["image"]
    assert image_space.shape == (cfg.camera.height_px, cfg.camera.width_px, 3)
    assert image_space.dtype == np.uint8


def test_observations_are_in_the_observation_space(shared_env):
    rng = np.random.default_rng(0)
    observation, info = shared_env.reset(seed=1)
    assert shared_env.observation_space.contains(observation)
    for _ in range(10):
        observation, reward, terminated, truncated, info = shared_env.step(
            rng.uniform(-1, 1, 9).astype(np.float32)
        )
        assert shared_env.observation_space.contains(observation), observation
        assert isinstance(reward, float) and math.isfinite(reward)
        if truncated:
            observation, info = shared_env.reset()


def test_reward_is_the_sum_of_the_terms_and_info_is_consistent(shared_env):
    _, info = shared_env.reset(seed=0, options={"goal_rad": 0.5, "valve_rad": -0.2})
    assert info["goal_rad"] == 0.5
    # The valve motor turned it the short way round: -0.2 rad give or take whole turns.
    assert wrap_to_pi(info["valve_rad"] + 0.2) == pytest.approx(0.0, abs=1e-9)
    assert info["error_rad"] == pytest.approx(0.7)
    assert info["step"] == 0
    _, reward, _, _, info = shared_env.step(np.zeros(9, dtype=np.float32))
    assert reward == pytest.approx(sum(info["reward_terms"].values()))
    assert info["error_rad"] == pytest.approx(wrap_to_pi(info["goal_rad"] - info["valve_rad"]))
    assert info["step"] == 1


def test_truncation_exactly_at_episode_steps_and_never_terminated(shared_env):
    steps = shared_env.task.episode_steps
    assert steps == 5
    for _ in range(2):  # and again after a reset
        shared_env.reset(seed=0)
        for step in range(1, steps + 1):
            _, _, terminated, truncated, info = shared_env.step(shared_env.action_space.sample())
            assert terminated is False
            assert truncated is (step == steps), f"step {step}"
            assert info["step"] == step


def test_step_before_reset_is_an_error(load_cfg, make_fresh_env):
    env = make_fresh_env(load_cfg())
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(9, dtype=np.float32))


ACTIONS = np.random.default_rng(42).uniform(-1, 1, size=(6, 9)).astype(np.float32)


def test_same_seed_same_episode_on_two_fresh_envs(load_cfg, make_fresh_env):
    cfg = load_cfg("task=random")
    first = _rollout(make_fresh_env(cfg), 7, ACTIONS)
    second = _rollout(make_fresh_env(cfg), 7, ACTIONS)
    _assert_same(first, second)
    # Not trivially equal: the claw moved and the pictures changed during the episode.
    observations = first[0]
    assert not np.array_equal(observations[0]["image"], observations[-1]["image"])
    assert not np.array_equal(observations[0]["joint_pos"], observations[-1]["joint_pos"])


def test_same_seed_same_draws_and_start_within_tolerance_after_reset_on_one_env(load_cfg, make_fresh_env):
    # The scripted reset moves the claw from wherever the last episode left it: the same seed
    # gives the same goal and valve angle and a start within the reset's tolerance, not the
    # same bits (see test_a_fresh_env_repeats_an_episode_bit_for_bit_after_the_same_history).
    env = make_fresh_env(load_cfg("task=random"))
    tolerance = env.scripted_reset.tolerance_rad
    first = _rollout(env, 3, ACTIONS)
    _rollout(env, 99, ACTIONS[::-1])  # something different in between
    second = _rollout(env, 3, ACTIONS)
    (obs_a, info_a), (obs_b, info_b) = first, second
    assert info_a[0]["goal_rad"] == info_b[0]["goal_rad"]
    assert abs(wrap_to_pi(info_a[0]["valve_rad"] - info_b[0]["valve_rad"])) < tolerance
    np.testing.assert_allclose(obs_a[0]["joint_pos"], obs_b[0]["joint_pos"], atol=tolerance)
    np.testing.assert_allclose(obs_a[0]["joint_pos"], env.task.reset_pose_rad, atol=tolerance)
    assert not np.array_equal(obs_a[-1]["joint_pos"], obs_a[0]["joint_pos"])  # the episode moved the claw


def test_different_seeds_on_the_random_task(load_cfg, make_fresh_env):
    env = make_fresh_env(load_cfg("task=random"))
    draws = [env.reset(seed=seed)[1] for seed in range(5)]
    assert len({info["goal_rad"] for info in draws}) == 5
    assert len({info["valve_rad"] for info in draws}) == 5
    a = env.reset(seed=0)
    b = env.reset(seed=1)
    assert a[1]["goal_rad"] != b[1]["goal_rad"]
    assert a[1]["valve_rad"] != b[1]["valve_rad"]
    assert not np.array_equal(a[0]["goal"], b[0]["goal"])
    assert not np.array_equal(a[0]["image"], b[0]["image"])


def test_the_agent_image_shows_the_valve_angle(shared_env):
    at_zero = shared_env.reset(seed=0, options={"goal_rad": 0.0, "valve_rad": 0.0})[0]["image"]
    turned = shared_env.reset(seed=0, options={"goal_rad": 0.0, "valve_rad": 1.0})[0]["image"]
    again = shared_env.reset(seed=0, options={"goal_rad": 0.0, "valve_rad": 0.0})[0]["image"]
    assert np.array_equal(at_zero, again)
    assert _changed(at_zero, turned).sum() >= 50  # of 64x64 pixels


def test_the_agent_image_shows_the_goal_marker(shared_env):
    goal_zero = shared_env.reset(seed=0, options={"goal_rad": 0.0, "valve_rad": 0.0})[0]["image"]
    goal_up = shared_env.reset(seed=0, options={"goal_rad": math.pi / 2, "valve_rad": 0.0})[0]["image"]
    changed = _changed(goal_zero, goal_up)
    assert changed.sum() >= 10
    # What changed is the green marker: it left one place and appeared at another.
    green_in_either = _greenish(goal_zero) | _greenish(goal_up)
    assert (changed & green_in_either).sum() >= 0.8 * changed.sum()
    assert (changed & _greenish(goal_zero)).any()
    assert (changed & _greenish(goal_up)).any()
    # The marker's colour, as rendered, is close to its rgba.
    marker_pixels = goal_zero[changed & _greenish(goal_zero)] / 255.0
    assert np.all(np.abs(marker_pixels.mean(axis=0) - GOAL_GREEN) < 0.25)


def test_joint_targets_stay_within_the_safety_limits(shared_env, safety_limits):
    lower, upper = safety_limits
    rng = np.random.default_rng(5)
    shared_env.reset(seed=2)
    refused_before = shared_env.action_filter.refused_actions
    for step in range(15):
        action = rng.uniform(-3, 3, 9)  # also outside the action space
        if step == 7:
            action[2] = np.nan
        _, _, _, truncated, info = shared_env.step(action)
        targets = info["joint_targets_rad"]
        assert np.all(targets >= lower) and np.all(targets <= upper)
        if truncated:
            shared_env.reset()
    assert shared_env.action_filter.refused_actions == refused_before + 1


@pytest.mark.parametrize("goal", [math.pi / 2, -math.pi / 2])
def test_scripted_policy_turns_the_valve_to_the_goal(load_cfg, make_fresh_env, goal):
    cfg = load_cfg("task.episode_steps=40", "policy=scripted")
    env = make_fresh_env(cfg)
    policy = make_policy(cfg.policy, env)
    observation, info = env.reset(seed=0, options={"goal_rad": goal, "valve_rad": 0.0})
    policy.reset(0)
    start_error = abs(info["error_rad"])
    truncated, steps = False, 0
    while not truncated:
        action = policy.act(observation, info)
        assert env.action_space.contains(action)
        observation, _, terminated, truncated, info = env.step(action)
        steps += 1
        assert not terminated
    assert steps == 40
    assert start_error == pytest.approx(math.pi / 2)
    assert abs(info["error_rad"]) < 0.3


def test_evaluation_options_give_each_episode_its_goal_and_its_spread_start(load_cfg, make_fresh_env):
    env = make_fresh_env(load_cfg("task=three_goal"))
    options = env.evaluation_options(4)
    assert [o["goal_rad"] for o in options] == pytest.approx([-math.pi / 2, 0.0, math.pi / 2, -math.pi / 2])
    start_errors = []
    for seed, option in enumerate(options):
        info = env.reset(seed=seed, options=option)[1]
        assert info["goal_rad"] == pytest.approx(option["goal_rad"])
        start_errors.append(math.remainder(info["goal_rad"] - info["valve_rad"], 2 * math.pi))
    # The reset reached the starts: slices of a quarter turn, alternately from each half.
    assert start_errors == pytest.approx([-3 * math.pi / 4, math.pi / 4, -math.pi / 4, 3 * math.pi / 4], abs=0.05)


@pytest.mark.parametrize("valve", [0.0, 2.4])
def test_the_goal_marker_is_visible_for_every_goal_the_tasks_draw(shared_env, valve):
    low, high = (-math.pi / 2, math.pi / 2)  # the random task's range; it holds the three goals
    for goal in np.linspace(low, high, 7):
        image = shared_env.reset(seed=0, options={"goal_rad": float(goal), "valve_rad": valve})[0]["image"]
        assert _greenish(image).sum() >= 5, f"goal {goal:.2f}: marker hidden"


def test_gymnasium_make_builds_the_registered_env_and_passes_the_full_check(check_env_with_physical_resets):
    import gymnasium

    import slac_robot

    env = gymnasium.make(
        slac_robot.ENV_ID,
        overrides=["task=three_goal", "backend.view_camera.width_px=96", "backend.view_camera.height_px=64"],
        render_mode="rgb_array",
    )
    try:
        check_env_with_physical_resets(env.unwrapped)  # render modes included, now that it comes from gymnasium.make
        observation, info = env.reset(seed=3)
        assert info["goal_rad"] in (-math.pi / 2, 0.0, math.pi / 2)
        assert env.render().shape == (64, 96, 3)
        assert env.spec.max_episode_steps is None  # the task truncates, not a wrapper
    finally:
        env.close()
