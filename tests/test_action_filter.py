"""The safety layer's action filter: any action, however malformed, gives targets within limits."""

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

any_float64 = st.floats(allow_nan=True, allow_infinity=True)
any_action = st.one_of(
    arrays(np.float64, N, elements=any_float64),
    arrays(np.float32, N, elements=st.floats(allow_nan=True, allow_infinity=True, width=32)),
)
finite_action = arrays(np.float64, N, elements=st.floats(allow_nan=False, allow_infinity=False))
unit_action = arrays(np.float64, N, elements=st.floats(-1.0, 1.0))
# Measured positions may be anywhere (a joint pushed past its limit, a bad reading).
measured_pos = arrays(np.float64, N, elements=st.floats(-1e6, 1e6))


def make_filter() -> ActionFilter:
    return ActionFilter(_SAFETY.joint_lower_rad, _SAFETY.joint_upper_rad)


def test_limits_come_from_the_config():
    f = make_filter()
    assert f.num_joints == 9
    np.testing.assert_array_equal(f.joint_lower_rad, LOWER)
    np.testing.assert_array_equal(f.joint_upper_rad, UPPER)
    assert np.all(LOWER < UPPER)


@given(action=any_action, measured=measured_pos)
def test_targets_stay_within_limits_for_any_action(action, measured):
    targets = make_filter()(action, measured)
    assert targets.shape == (N,)
    assert np.all(np.isfinite(targets))
    assert np.all(targets >= LOWER)
    assert np.all(targets <= UPPER)


def test_extreme_actions_map_onto_the_limits():
    f = make_filter()
    here = MIDDLE.copy()
    np.testing.assert_allclose(f(np.full(N, -1.0), here), LOWER, rtol=0, atol=1e-12)
    np.testing.assert_allclose(f(np.full(N, 1.0), here), UPPER, rtol=0, atol=1e-12)
    np.testing.assert_allclose(f(np.zeros(N), here), MIDDLE, rtol=0, atol=1e-12)
    # Beyond [-1, 1] saturates at the limits.
    np.testing.assert_allclose(f(np.full(N, -7.5), here), LOWER, rtol=0, atol=1e-12)
    np.testing.assert_allclose(f(np.full(N, 1e300), here), UPPER, rtol=0, atol=1e-12)
    np.testing.assert_allclose(f(np.full(N, 0.5), here), LOWER + 0.75 * (UPPER - LOWER), atol=1e-12)
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
    assert f.refused_actions == 1
    # A fine action afterwards is not refused, and moves as commanded.
    np.testing.assert_allclose(f(np.full(N, 1.0), measured), UPPER, atol=1e-12)
    assert f.refused_actions == 1
    f(np.full(N, np.nan), measured)
    assert f.refused_actions == 2


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
    assert f.refused_actions == 1


@given(action=finite_action, measured=measured_pos)
def test_finite_actions_are_never_refused(action, measured):
    f = make_filter()
    f(action, measured)
    assert f.refused_actions == 0


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
        ActionFilter(lower, upper)


def test_bad_config_limits_raise_config_error():
    from slac_robot.backends import make_action_filter

    with pytest.raises(ConfigError):
        make_action_filter(compose("safety.joint_lower_rad=[-1.0,-1.0]").safety)
    swapped = compose(
        f"safety.joint_lower_rad=[{','.join(map(str, UPPER))}]",
        f"safety.joint_upper_rad=[{','.join(map(str, LOWER))}]",
    )
    with pytest.raises(ConfigError):
        make_action_filter(swapped.safety)
