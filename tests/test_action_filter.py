"""The safety layer's action filter: any action, however malformed, gives targets within the joint
limits and within one step's motion of the measured position."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays

from slac_robot.config import ConfigError
from slac_robot.safety import ActionFilter

from conftest import compose

_SAFETY = compose().safety
LOWER = np.asarray(_SAFETY.joint_lower_rad, dtype=np.float64)
UPPER = np.asarray(_SAFETY.joint_upper_rad, dtype=np.float64)
N = LOWER.shape[0]
MIDDLE = 0.5 * (LOWER + UPPER)
PERIOD_S = 0.1  # ROBEL's 10 Hz
MAX_STEP = _SAFETY.max_joint_speed_rad_s * PERIOD_S

any_float64 = st.floats(allow_nan=True, allow_infinity=True)
any_action = st.one_of(
    arrays(np.float64, N, elements=any_float64),
    arrays(np.float32, N, elements=st.floats(allow_nan=True, allow_infinity=True, width=32)),
)
finite_action = arrays(np.float64, N, elements=st.floats(allow_nan=False, allow_infinity=False))
unit_action = arrays(np.float64, N, elements=st.floats(-1.0, 1.0))
# Measured positions may be anywhere (a joint pushed past its limit, a bad reading).
measured_pos = arrays(np.float64, N, elements=st.floats(-1e6, 1e6))
# ... or, in normal operation, inside the limits.
measured_inside = arrays(np.float64, N, elements=st.floats(0.0, 1.0)).map(lambda u: LOWER + u * (UPPER - LOWER))


def make_filter(max_step_rad=MAX_STEP) -> ActionFilter:
    return ActionFilter(_SAFETY.joint_lower_rad, _SAFETY.joint_upper_rad, max_step_rad)


def test_limits_come_from_the_config():
    from slac_robot.backends import make_action_filter

    f = make_action_filter(_SAFETY, PERIOD_S)
    assert f.num_joints == 9
    np.testing.assert_array_equal(f.joint_lower_rad, LOWER)
    np.testing.assert_array_equal(f.joint_upper_rad, UPPER)
    assert np.all(LOWER < UPPER)
    # ROBEL's velocity limit 2pi/3 rad/s: ~0.21 rad per 0.1 s step, on every joint.
    np.testing.assert_allclose(f.max_step_rad, np.full(N, 2 * np.pi / 3 * PERIOD_S), rtol=1e-7)


@given(action=any_action, measured=measured_pos)
def test_targets_stay_within_limits_for_any_action(action, measured):
    targets = make_filter()(action, measured)
    assert targets.shape == (N,)
    assert np.all(np.isfinite(targets))
    assert np.all(targets >= LOWER)
    assert np.all(targets <= UPPER)


@given(action=any_action, measured=measured_inside)
def test_targets_move_at_most_one_step_from_a_measured_position_inside_the_limits(action, measured):
    targets = make_filter()(action, measured)
    assert np.all(np.abs(targets - measured) <= MAX_STEP + 1e-12)
    assert np.all(targets >= LOWER) and np.all(targets <= UPPER)


@given(targets=arrays(np.float64, N, elements=st.floats(-1e6, 1e6)), measured=measured_inside)
def test_limit_step_moves_a_target_pose_at_most_one_step_and_stays_within_limits(targets, measured):
    limited = make_filter().limit_step(targets, measured)
    assert np.all(np.abs(limited - measured) <= MAX_STEP + 1e-12)
    assert np.all(limited >= LOWER) and np.all(limited <= UPPER)
    # Each joint moves as far as allowed towards its target, or reaches it.
    wanted = np.clip(targets, LOWER, UPPER)
    reached = np.isclose(limited, wanted, rtol=0, atol=1e-12)
    full_step = np.isclose(np.abs(limited - measured), MAX_STEP, rtol=0, atol=1e-12)
    assert np.all(reached | full_step)
    assert np.all(np.sign(limited - measured) * np.sign(wanted - measured) >= 0)


@given(measured=measured_pos)
def test_limit_step_keeps_the_joint_limits_even_from_outside_them(measured):
    limited = make_filter().limit_step(MIDDLE, measured)
    assert np.all(limited >= LOWER) and np.all(limited <= UPPER)


def test_the_step_limit_is_per_joint_when_given_per_joint():
    steps = np.linspace(0.01, 0.09, N)
    f = make_filter(steps)
    np.testing.assert_allclose(f(np.ones(N), MIDDLE) - MIDDLE, steps, rtol=0, atol=1e-12)
    np.testing.assert_allclose(f(-np.ones(N), MIDDLE) - MIDDLE, -steps, rtol=0, atol=1e-12)


def test_a_small_move_is_not_limited_and_a_large_one_stops_one_step_short():
    f = make_filter()
    here = MIDDLE.copy()
    small = f.to_action(here + 0.5 * MAX_STEP)
    np.testing.assert_allclose(f(small, here), here + 0.5 * MAX_STEP, rtol=0, atol=1e-9)
    np.testing.assert_allclose(f(np.ones(N), here), here + MAX_STEP, rtol=0, atol=1e-12)
    # Repeated, the filter walks to the limit one step a tick, never past it.
    for _ in range(20):
        here = f(np.ones(N), here)
    np.testing.assert_allclose(here, UPPER, rtol=0, atol=1e-12)


def test_extreme_actions_map_onto_the_limits():
    f = make_filter()
    np.testing.assert_allclose(f.to_targets(np.full(N, -1.0)), LOWER, rtol=0, atol=1e-12)
    np.testing.assert_allclose(f.to_targets(np.full(N, 1.0)), UPPER, rtol=0, atol=1e-12)
    np.testing.assert_allclose(f.to_targets(np.zeros(N)), MIDDLE, rtol=0, atol=1e-12)
    # Beyond [-1, 1] saturates at the limits.
    np.testing.assert_allclose(f.to_targets(np.full(N, -7.5)), LOWER, rtol=0, atol=1e-12)
    np.testing.assert_allclose(f.to_targets(np.full(N, 1e300)), UPPER, rtol=0, atol=1e-12)
    np.testing.assert_allclose(f.to_targets(np.full(N, 0.5)), LOWER + 0.75 * (UPPER - LOWER), atol=1e-12)
    # Through the filter, from a measured position next to each limit: the limit itself.
    np.testing.assert_allclose(f(np.full(N, -1.0), LOWER + 0.01), LOWER, rtol=0, atol=1e-12)
    np.testing.assert_allclose(f(np.full(N, 1e300), UPPER - 0.01), UPPER, rtol=0, atol=1e-12)
    assert f.refused_actions == 0


@given(a=finite_action, b=finite_action)
def test_targets_are_monotonic_in_the_action(a, b):
    f = make_filter()
    low, high = np.minimum(a, b), np.maximum(a, b)
    assert np.all(f.to_targets(low) <= f.to_targets(high))


@given(action=unit_action)
def test_to_action_inverts_to_targets(action):
    f = make_filter()
    np.testing.assert_allclose(f.to_action(f.to_targets(action)), action, rtol=0, atol=1e-9)


@given(unit=arrays(np.float64, N, elements=st.floats(0.0, 1.0)))
def test_to_targets_inverts_to_action(unit):
    f = make_filter()
    targets = LOWER + unit * (UPPER - LOWER)
    action = f.to_action(targets)
    assert np.all(np.abs(action) <= 1.0)
    np.testing.assert_allclose(f.to_targets(action), targets, rtol=0, atol=1e-9)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_holds_the_measured_position(bad):
    f = make_filter()
    measured = MIDDLE + 0.05
    action = np.full(N, 0.9)
    action[4] = bad
    np.testing.assert_array_equal(f(action, measured), measured)
    assert (f.refused_actions, f.refused_in_a_row) == (1, 1)
    f(np.full(N, np.nan), measured)
    assert (f.refused_actions, f.refused_in_a_row) == (2, 2)
    # A fine action afterwards is not refused, moves as commanded and ends the run of refusals.
    np.testing.assert_allclose(f(np.full(N, 1.0), measured), measured + MAX_STEP, atol=1e-12)
    assert (f.refused_actions, f.refused_in_a_row) == (2, 0)
    f(np.full(N, np.nan), measured)
    assert (f.refused_actions, f.refused_in_a_row) == (3, 1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_measured_position_is_an_error_not_a_target(bad):
    f = make_filter()
    measured = MIDDLE.copy()
    measured[3] = bad
    with pytest.raises(ValueError, match="health monitor"):
        f(np.zeros(N), measured)
    with pytest.raises(ValueError, match="health monitor"):
        f(np.full(N, np.nan), measured)
    with pytest.raises(ValueError, match="health monitor"):
        f.limit_step(MIDDLE, measured)


@given(
    action=arrays(np.float64, N, elements=any_float64),
    index=st.integers(0, N - 1),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
    measured=measured_pos,
)
def test_refused_action_holds_measured_position_clipped_to_limits(action, index, bad, measured):
    action = action.copy()
    action[index] = bad
    f = make_filter()
    targets = f(action, measured)
    np.testing.assert_array_equal(targets, np.clip(measured, LOWER, UPPER))
    assert f.refused_actions == 1 and f.refused_in_a_row == 1


@given(action=finite_action, measured=measured_pos)
def test_finite_actions_are_never_refused(action, measured):
    f = make_filter()
    f(action, measured)
    assert f.refused_actions == 0 and f.refused_in_a_row == 0


def test_action_of_the_wrong_shape_is_rejected():
    f = make_filter()
    with pytest.raises(ValueError):
        f(np.zeros(N - 1), MIDDLE)
    with pytest.raises(ValueError):
        f(np.zeros((1, N)), MIDDLE)


@pytest.mark.parametrize(
    "lower, upper",
    [
        ([0.0, 0.0], [1.0, 0.0]),  # lower == upper on one joint
        ([0.0, 2.0], [1.0, 1.0]),  # lower > upper
        ([0.0, np.nan], [1.0, 1.0]),  # NaN limit
        ([0.0, 0.0, 0.0], [1.0, 1.0]),  # mismatched lengths
        ([-1.0], [1.0, 1.0]),
        (-1.0, 1.0),  # not lists
        ([[-1.0, -1.0]], [[1.0, 1.0]]),  # not flat
    ],
)
def test_bad_limits_raise_config_error(lower, upper):
    with pytest.raises(ConfigError, match="safety.joint_"):
        ActionFilter(lower, upper, MAX_STEP)


@pytest.mark.parametrize("step", [0.0, -0.1, np.nan, np.inf, [0.1] * (N - 1), [[0.1] * N]])
def test_bad_step_limits_raise_config_error(step):
    with pytest.raises(ConfigError, match="safety.max_joint_speed_rad_s"):
        ActionFilter(LOWER, UPPER, step)


def test_bad_config_limits_raise_config_error():
    from slac_robot.backends import make_action_filter

    with pytest.raises(ConfigError, match="safety.joint_"):
        make_action_filter(compose("safety.joint_lower_rad=[-1.0,-1.0]").safety, PERIOD_S)
    swapped = compose(
        f"safety.joint_lower_rad=[{','.join(map(str, UPPER))}]",
        f"safety.joint_upper_rad=[{','.join(map(str, LOWER))}]",
    )
    with pytest.raises(ConfigError, match="safety.joint_"):
        make_action_filter(swapped.safety, PERIOD_S)
    with pytest.raises(ConfigError, match="safety.max_joint_speed_rad_s"):
        make_action_filter(compose("safety.max_joint_speed_rad_s=0").safety, PERIOD_S)
