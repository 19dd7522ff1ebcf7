"""The valve-turning task: goal and start draws, ROBEL's reward terms, success, config checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from slac_robot.backends import TASK_GROUP_KEYS, make_task
from slac_robot.config import ConfigError
from slac_robot.interfaces import RobotState
from slac_robot.tasks import GOAL_SETTINGS, RewardWeights, ValveTurnTask, wrap_to_pi

from conftest import compose

THREE_GOALS = (-math.pi / 2, 0.0, math.pi / 2)


def task_from(*overrides: str) -> ValveTurnTask:
    return make_task(compose(*overrides).task)


def task_kwargs(**changes):
    """ValveTurnTask's keyword arguments from the config, with `changes`."""
    kwargs = OmegaConf.to_container(compose().task, resolve=True)
    for key in TASK_GROUP_KEYS:
        del kwargs[key]
    kwargs["reward"] = RewardWeights(**kwargs["reward"])
    kwargs.update(changes)
    return kwargs


@pytest.fixture(scope="module")
def task() -> ValveTurnTask:
    return task_from()


def state(task, q=None, vel=None, valve=0.0) -> RobotState:
    """A hand-made reading: the reset pose and zero velocity unless given."""
    zeros = np.zeros(9)
    return RobotState(
        joint_pos_rad=task.reset_pose_rad.copy() if q is None else np.asarray(q, dtype=float),
        joint_vel_rad_s=zeros.copy() if vel is None else np.asarray(vel, dtype=float),
        joint_current_a=zeros.copy(),
        joint_temperature_c=np.full(9, 25.0),
        joint_error_flags=np.zeros(9, dtype=np.uint8),
        valve_pos_rad=float(valve),
        stamp_s=0.0,
    )


# --- goals and start angles -------------------------------------------------------------------


@pytest.mark.parametrize("overrides, expected", [((), 1.5707963), (("task.fixed_goal_rad=-0.3",), -0.3)])
def test_fixed_goal_is_always_the_fixed_goal(overrides, expected):
    task = task_from("task=fixed", *overrides)
    rng = np.random.default_rng(0)
    assert {task.sample_goal(rng) for _ in range(200)} == {expected}


def test_three_goal_draws_each_goal_a_third_of_the_time():
    task = task_from("task=three_goal")
    rng = np.random.default_rng(123)
    draws = np.array([task.sample_goal(rng) for _ in range(3000)])
    assert set(draws.tolist()) <= set(THREE_GOALS)
    for goal in THREE_GOALS:
        assert np.mean(draws == goal) == pytest.approx(1 / 3, abs=0.04)


def test_random_goal_is_uniform_in_its_range():
    task = task_from("task=random")
    low, high = task.random_goal_range_rad
    assert (low, high) == pytest.approx((-math.pi / 2, math.pi / 2), abs=1e-6)
    rng = np.random.default_rng(7)
    draws = np.array([task.sample_goal(rng) for _ in range(4000)])
    assert np.all(draws >= low) and np.all(draws <= high)
    assert abs(draws.mean()) < 0.07
    counts, _ = np.histogram(draws, bins=4, range=(low, high))
    np.testing.assert_allclose(counts / draws.size, 0.25, atol=0.04)
    assert len(np.unique(draws)) > 3900  # continuous, not a few values


def test_random_goal_honours_a_configured_range():
    task = task_from("task=random", "task.random_goal_range_rad=[0.5,1.0]")
    rng = np.random.default_rng(1)
    draws = np.array([task.sample_goal(rng) for _ in range(500)])
    assert draws.min() >= 0.5 and draws.max() <= 1.0
    assert draws.max() - draws.min() > 0.4


@pytest.mark.parametrize("setting, count, expected", [
    ("fixed", 3, [math.pi / 2] * 3),
    ("three_goal", 7, [*THREE_GOALS, *THREE_GOALS, THREE_GOALS[0]]),
    ("random", 4, [-3 * math.pi / 8, -math.pi / 8, math.pi / 8, 3 * math.pi / 8]),  # slices' midpoints
])
def test_an_evaluation_spreads_its_episodes_over_every_goal(setting, count, expected):
    assert task_from(f"task={setting}").evaluation_goals_rad(count) == pytest.approx(expected, abs=1e-6)


def test_an_evaluations_starts_are_spread_around_the_circle_from_each_goal():
    task = task_from("task=three_goal")
    errors = task.evaluation_start_errors_rad(10)
    assert sorted(errors) == pytest.approx([-math.pi + math.pi * (2 * k + 1) / 10 for k in range(10)])
    assert min(abs(e) for e in errors) == pytest.approx(math.pi / 10)  # none starts within 0.1 rad of its goal
    goals = task.evaluation_goals_rad(10)
    for goal in THREE_GOALS:  # each goal's episodes start from both sides, and near and far
        own = [e for g, e in zip(goals, errors) if g == pytest.approx(goal)]
        assert min(own) < 0 < max(own)
        assert max(abs(e) for e in own) - min(abs(e) for e in own) > math.pi / 2


@pytest.mark.parametrize("count", [1, 5, 7])
def test_an_odd_evaluation_starts_none_at_its_goal(count):
    errors = ValveTurnTask.evaluation_start_errors_rad(count)
    slices = count + 1
    assert len(errors) == len(set(errors)) == count
    assert min(abs(e) for e in errors) == pytest.approx(math.pi / slices)
    assert all(abs(e) < math.pi for e in errors)


@pytest.mark.parametrize("overrides, spread", [
    ((), True),
    (("task.initial_valve_rad=0.3",), False),  # a configured start: evaluated from it, as trained
    (("task.initial_valve_range_rad=[-0.5,0.5]",), False),  # a narrower range: the seeds draw from it
])
def test_an_evaluation_spreads_the_starts_only_where_training_starts_anywhere(overrides, spread):
    task = task_from("task=fixed", *overrides)
    starts = task.evaluation_starts_rad(task.evaluation_goals_rad(4))
    if not spread:
        assert starts is None
        return
    errors = [-3 * math.pi / 4, math.pi / 4, -math.pi / 4, 3 * math.pi / 4]
    assert starts == pytest.approx([wrap_to_pi(math.pi / 2 - e) for e in errors])


def test_goal_draws_are_reproducible_from_the_seed():
    task = task_from("task=random")
    first = [task.sample_goal(np.random.default_rng(5)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    assert task.sample_goal(np.random.default_rng(6)) != first[0]


def test_initial_valve_is_fixed_when_set():
    task = task_from("task.initial_valve_rad=0.4")
    rng = np.random.default_rng(0)
    assert {task.sample_initial_valve(rng) for _ in range(100)} == {0.4}


def test_initial_valve_is_uniform_in_its_range_when_unset():
    task = task_from()
    assert task.initial_valve_rad is None
    low, high = task.initial_valve_range_rad
    assert (low, high) == pytest.approx((-math.pi, math.pi), abs=1e-6)
    rng = np.random.default_rng(11)
    draws = np.array([task.sample_initial_valve(rng) for _ in range(4000)])
    assert np.all(draws >= low) and np.all(draws <= high)
    counts, _ = np.histogram(draws, bins=4, range=(low, high))
    np.testing.assert_allclose(counts / draws.size, 0.25, atol=0.04)


def test_goal_features_are_cos_and_sin():
    for goal in (0.0, math.pi / 2, -2.0):
        features = ValveTurnTask.goal_features(goal)
        assert features.dtype == np.float32 and features.shape == (2,)
        np.testing.assert_allclose(features, [math.cos(goal), math.sin(goal)], atol=1e-7)


# --- reward and success -----------------------------------------------------------------------


def test_reward_at_the_goal_in_the_reset_pose_is_both_bonuses(task):
    terms = task.reward_terms(state(task, valve=0.0), 0.0)
    assert set(terms) == {"target_dist_cost", "pose_diff_cost", "joint_vel_cost", "bonus_small", "bonus_big"}
    assert terms["bonus_small"] == 10.0
    assert terms["bonus_big"] == 50.0
    assert terms["target_dist_cost"] == 0.0
    assert terms["pose_diff_cost"] == 0.0
    assert terms["joint_vel_cost"] == 0.0
    assert sum(terms.values()) == pytest.approx(60.0)


@pytest.mark.parametrize(
    "valve, goal, expected",
    [
        (0.0, 0.2, -1.0 + 10.0),  # inside the small bonus, outside the big one
        (0.2, 0.0, -1.0 + 10.0),  # the cost is symmetric
        (0.0, 0.3, -1.5),  # no bonus
        (1.0, -1.0, -10.0),
        (0.0, 0.05, -0.25 + 10.0 + 50.0),
    ],
)
def test_reward_distance_cost_and_bonuses(task, valve, goal, expected):
    terms = task.reward_terms(state(task, valve=valve), goal)
    assert sum(terms.values()) == pytest.approx(expected)
    assert terms["target_dist_cost"] == pytest.approx(-5.0 * abs(goal - valve))


@pytest.mark.parametrize(
    "fast, expected",
    [
        ({0: 0.4, 3: 0.6}, -0.6),  # only |qvel| >= 0.5 counts
        ({0: 0.4, 3: -0.6}, -0.6),
        ({1: 0.49, 2: -0.49}, 0.0),
        ({5: 0.5}, -0.5),  # the threshold itself counts
        ({0: 0.6, 8: -0.8}, -1.0),  # the norm of the fast ones
    ],
)
def test_joint_velocity_cost_counts_only_fast_joints(task, fast, expected):
    vel = np.zeros(9)
    for joint, value in fast.items():
        vel[joint] = value
    terms = task.reward_terms(state(task, vel=vel), 0.0)
    assert terms["joint_vel_cost"] == pytest.approx(expected)
    assert terms["pose_diff_cost"] == 0.0


def test_pose_diff_cost_is_the_norm_from_the_reset_pose(task):
    q = task.reset_pose_rad + np.array([0.3, 0.0, 0.0, 0.0, -0.4, 0.0, 0.0, 0.0, 0.0])
    terms = task.reward_terms(state(task, q=q), 0.0)
    assert terms["pose_diff_cost"] == pytest.approx(-0.5)
    assert sum(terms.values()) == pytest.approx(60.0 - 0.5)


def test_error_wraps_across_pi(task):
    s = state(task, valve=3.1)
    error = task.error_rad(s, -3.1)
    assert abs(error) == pytest.approx(2 * math.pi - 6.2, abs=1e-9)  # about 0.083
    assert error > 0  # turning forward across pi is the short way
    assert task.is_success(s, -3.1)
    terms = task.reward_terms(s, -3.1)
    assert terms["target_dist_cost"] == pytest.approx(-5.0 * (2 * math.pi - 6.2))
    assert terms["bonus_big"] == 50.0


def test_error_handles_unwrapped_valve_angles(task):
    # The valve angle is unwrapped: two whole turns past the goal is still at the goal.
    assert task.error_rad(state(task, valve=4 * math.pi + 0.05), 0.0) == pytest.approx(-0.05)
    assert task.is_success(state(task, valve=-2 * math.pi - 0.05), 0.0)


def test_error_is_goal_minus_valve(task):
    assert task.error_rad(state(task, valve=0.0), 1.0) == pytest.approx(1.0)
    assert task.error_rad(state(task, valve=1.0), 0.0) == pytest.approx(-1.0)


@pytest.mark.parametrize("error, success", [(0.0, True), (0.09, True), (-0.09, True), (0.11, False), (-0.11, False), (math.pi / 2, False)])
def test_success_threshold(task, error, success):
    assert task.success_threshold_rad == pytest.approx(0.1)
    assert task.is_success(state(task, valve=0.5), 0.5 + error) is success


def test_wrap_to_pi_range():
    angles = np.linspace(-20, 20, 2001)
    wrapped = np.array([wrap_to_pi(a) for a in angles])
    assert np.all(wrapped >= -math.pi) and np.all(wrapped < math.pi)
    np.testing.assert_allclose(np.cos(wrapped), np.cos(angles), atol=1e-9)
    np.testing.assert_allclose(np.sin(wrapped), np.sin(angles), atol=1e-9)


# --- invalid config ---------------------------------------------------------------------------


def test_unknown_goal_setting_names_the_valid_ones():
    with pytest.raises(ConfigError) as error:
        ValveTurnTask(**task_kwargs(goal_setting="bogus"))
    message = str(error.value)
    assert "bogus" in message
    for setting in ("fixed", "three_goal", "random"):
        assert setting in message
    assert set(GOAL_SETTINGS) == {"fixed", "three_goal", "random"}


def test_unknown_goal_setting_from_config():
    with pytest.raises(ConfigError, match="task.goal_setting"):
        task_from("task.goal_setting=bogus")


@pytest.mark.parametrize("steps", [-5, 0, 2.5, True, "10", None])
def test_invalid_episode_steps(steps):
    with pytest.raises(ConfigError, match="task.episode_steps"):
        ValveTurnTask(**task_kwargs(episode_steps=steps))


@pytest.mark.parametrize("override", ["task.episode_steps=-5", "task.episode_steps=0", "task.episode_steps=2.5", "task.episode_steps=true"])
def test_invalid_episode_steps_from_config(override):
    with pytest.raises(ConfigError, match="task.episode_steps"):
        task_from(override)


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"random_goal_range_rad": [1.0, -1.0]}, "random_goal_range_rad"),
        ({"initial_valve_range_rad": [0.5, 0.4]}, "initial_valve_range_rad"),
        ({"success_threshold_rad": 0.0}, "success_threshold_rad"),
        ({"reset_pose_rad": [0.0] * 8}, "reset_pose_rad"),
    ],
)
def test_other_invalid_task_values(changes, key):
    with pytest.raises(ConfigError, match=key):
        ValveTurnTask(**task_kwargs(**changes))


def test_unknown_reward_key_is_a_config_error():
    with pytest.raises(ConfigError, match="task.reward"):
        task_from("+task.reward.bogus_weight=1.0")
