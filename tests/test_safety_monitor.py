"""The health monitor: each threshold trips on a reading of the simulated claw (hardware-only
fields such as error bits and the health stamp set by hand), normal operation does not trip,
and backend errors map onto their fault kinds."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from slac_robot.backends import make_health_monitor
from slac_robot.config import ConfigError
from slac_robot.hardware.errors import (
    BusTimeout,
    CorruptPacket,
    MotorHardwareError,
    MotorMissing,
    PortVanished,
    WatchdogFired,
)
from slac_robot.interfaces import CameraError, StaleFrameError
from slac_robot.safety import NEEDS_PERSON, Fault, HealthLimits, fault_from_error
from slac_robot.safety import faults

from conftest import compose


def health_section(*overrides: str) -> dict:
    return OmegaConf.to_container(compose(*overrides).safety.health, resolve=True)


@pytest.fixture
def sim(load_cfg, make_fresh_env):
    """A fresh simulated env after its reset: robot, camera, clock and the monitor built from config."""

    def build(*overrides: str):
        env = make_fresh_env(load_cfg(*overrides))
        env.reset(seed=0)
        return env

    return build


def tick_and_read(env):
    env.clock.tick()
    return env.robot.read(), env.camera.read(1.0)


def check(env, state, frame, overruns=0, refused=0, now_s=None):
    return env.monitor.check(state, env.clock.now_s() if now_s is None else now_s, frame, overruns, refused)


def test_normal_operation_never_trips(sim):
    # Random actions through the safety filter, two whole episodes: the thresholds sit above
    # everything normal operation shows (the env checks every step and would raise).
    env = sim("task.episode_steps=40")
    for seed in range(2):
        env.reset(seed=seed)
        env.action_space.seed(seed)
        for _ in range(40):
            env.step(env.action_space.sample())


def test_a_hot_motor_trips_overheating(load_cfg, make_fresh_env):
    # Above the 70 C limit, below the XM430's own 80 C (the env's reset would trip on it, so
    # this env is not reset).
    env = make_fresh_env(load_cfg("backend.ambient_temperature_c=75.0"))
    fault = check(env, *tick_and_read(env))
    assert fault.kind == faults.OVERHEATING
    assert fault.joints == tuple(range(9))
    assert (fault.value, fault.limit) == (75.0, 70.0)
    assert "joint 0 (FF top) 75.000 C" in fault.message and "cool" in fault.message


def test_a_blocked_finger_pushing_hard_trips_overcurrent(sim):
    env = sim()
    simulation = env.robot._sim
    simulation.model.dof_damping[simulation.claw_qvel_index[4]] = 1e4  # MF middle cannot move
    targets = env.robot.read().joint_pos_rad.copy()
    targets[4] += 1.0  # straight to the robot, past the action filter: the motor strains
    env.robot.command(targets)
    state, frame = tick_and_read(env)
    fault = check(env, state, frame)
    assert fault.kind == faults.OVERCURRENT
    assert fault.joints == (4,) and fault.value > env.monitor.limits.max_current_a
    assert state.joint_current_a[4] == pytest.approx(fault.value)


def test_a_joint_pushed_past_its_limit_trips_position_limit(sim):
    env = sim()
    pose = env.robot.read().joint_pos_rad.copy()
    pose[3] = env.monitor.joint_upper_rad[3] + 0.15  # MF top 0.15 rad past its limit (margin 0.1)
    env.robot.place(pose, 0.0)
    fault = check(env, env.robot.read(), env.camera.read(1.0))
    assert fault.kind == faults.POSITION_LIMIT
    assert fault.joints == (3,) and fault.value == pytest.approx(0.15)
    # Within the margin: no fault.
    pose[3] = env.monitor.joint_upper_rad[3] + 0.05
    env.robot.place(pose, 0.0)
    env.monitor.reset()
    assert check(env, env.robot.read(), env.camera.read(1.0)) is None


def test_a_non_finite_position_trips_position_limit(sim):
    env = sim()
    state = env.robot.read()
    position = state.joint_pos_rad.copy()
    position[7] = np.nan
    fault = check(env, dataclasses.replace(state, joint_pos_rad=position), env.camera.read(1.0))
    assert fault.kind == faults.POSITION_LIMIT and fault.joints == (7,)


def test_a_fast_joint_trips_velocity(sim):
    env = sim()
    simulation = env.robot._sim
    simulation.data.qvel[simulation.claw_qvel_index[2]] = -8.0  # a finger knocked hard
    fault = check(env, env.robot.read(), env.camera.read(1.0))
    assert fault.kind == faults.VELOCITY
    assert fault.joints == (2,) and fault.value == pytest.approx(8.0)


def test_an_old_or_reused_reading_trips_stale_reading(sim):
    env = sim()
    state, frame = tick_and_read(env)
    limit = env.monitor.limits.max_reading_age_s
    fault = check(env, state, frame, now_s=state.stamp_s + 2 * limit)
    assert fault.kind == faults.STALE_READING and "old" in fault.message
    env.monitor.reset()
    assert check(env, state, frame) is None
    _, new_frame = tick_and_read(env)
    fault = check(env, state, new_frame, now_s=state.stamp_s)  # the same reading again
    assert fault.kind == faults.STALE_READING and "reused" in fault.message


def test_old_temperatures_and_error_bits_trip_stale_reading(sim):
    env = sim()
    state, frame = tick_and_read(env)
    limit = env.monitor.limits.max_health_age_s
    old = dataclasses.replace(state, health_stamp_s=state.stamp_s - 1.5 * limit)
    fault = check(env, old, frame)
    assert fault.kind == faults.STALE_READING and "temperatures" in fault.message
    assert fault.value == pytest.approx(1.5 * limit)


def test_an_old_or_repeated_frame_trips_stale_frame(sim):
    env = sim()
    frame = env.camera.read(1.0)
    for _ in range(2):  # 0.2 s pass without a new frame (limit 0.15 s)
        env.clock.tick()
    fault = check(env, env.robot.read(), frame)
    assert fault.kind == faults.STALE_FRAME and fault.value == pytest.approx(0.2)
    env.monitor.reset()
    state, frame = tick_and_read(env)
    assert check(env, state, frame) is None
    env.clock.tick()
    fault = check(env, env.robot.read(), dataclasses.replace(frame, stamp_s=env.clock.now_s()))  # same index
    assert fault.kind == faults.STALE_FRAME and "again" in fault.message


def test_overruns_trip_only_on_consecutive_ticks(sim):
    env = sim()
    in_a_row = env.monitor.limits.max_overruns_in_a_row
    assert in_a_row == 3

    def run(counts):
        env.monitor.reset()
        found = []
        for count in counts:
            state, frame = tick_and_read(env)
            found.append(check(env, state, frame, overruns=count))
        return found

    # The counter is cumulative: 5, 6, 7, 8 is an overrun on each of the last three ticks.
    assert [f and f.kind for f in run([5, 6, 7, 8])] == [None, None, None, faults.OVERRUN]
    # Two in a row, a good tick, two more: never three in a row.
    assert all(f is None for f in run([0, 1, 2, 2, 3, 4]))


def test_refused_actions_in_a_row_trip(sim):
    env = sim()
    state, frame = tick_and_read(env)
    assert check(env, state, frame, refused=2) is None
    state, frame = tick_and_read(env)
    fault = check(env, state, frame, refused=3)
    assert fault.kind == faults.REFUSED_ACTIONS and fault.value == 3


def test_error_bits_trip_hardware_error_naming_motor_and_error(sim):
    env = sim()
    state, frame = tick_and_read(env)
    bits = np.zeros(9, dtype=np.uint8)
    bits[4] = 0x20
    fault = check(env, dataclasses.replace(state, joint_error_flags=bits), frame)
    assert fault.kind == faults.HARDWARE_ERROR and fault.joints == (4,)
    assert "joint 4 (MF middle)" in fault.message and "overload" in fault.message


def test_backend_errors_map_onto_fault_kinds():
    cases = [
        (MotorHardwareError(21, 0x04), faults.HARDWARE_ERROR, "motor 21"),
        (WatchdogFired((10, 60), 0.5, 0.8), faults.WATCHDOG, "the next reset re-arms them"),
        (PortVanished("the U2D2 went away: check the USB cable"), faults.PORT_LOST, "USB cable"),
        (BusTimeout("no status from motor(s) [12]", (12,)), faults.BUS_ERROR, "[12]"),
        (CorruptPacket("bad CRC"), faults.BUS_ERROR, "bad CRC"),
        (MotorMissing("motor 50 does not answer"), faults.BUS_ERROR, "motor 50"),
        (StaleFrameError("newest frame 0.4 s old"), faults.STALE_FRAME, "0.4 s"),
        (CameraError("RealSense lost"), faults.CAMERA_LOST, "lost"),
    ]
    for error, kind, named in cases:
        fault = fault_from_error(error)
        assert fault.kind == kind and named in fault.message, (error, fault)
    watchdog = fault_from_error(WatchdogFired((10, 60), 0.5, 0.8))
    assert "motor(s) [10, 60]" in watchdog.message and "backend.watchdog_s (0.5 s" in watchdog.message
    assert (watchdog.value, watchdog.limit, watchdog.needs_person) == (0.8, 0.5, False)
    with pytest.raises(TypeError):
        fault_from_error(ZeroDivisionError("a bug, not a fault"))


def test_faults_that_need_a_person():
    assert NEEDS_PERSON == {faults.HARDWARE_ERROR, faults.OVERHEATING, faults.PORT_LOST, faults.CAMERA_LOST}
    assert Fault(faults.PORT_LOST, "x").needs_person and not Fault(faults.VELOCITY, "x").needs_person
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("gremlins", "x")
    fault = Fault(faults.VELOCITY, "too fast", (2, 5), np.float64(7.5), 6.0)
    assert json.loads(json.dumps(fault.to_dict())) == {
        "kind": "velocity", "message": "too fast", "joints": [2, 5], "value": 7.5, "limit": 6.0,
    }


def test_thresholds_come_from_the_config():
    limits = HealthLimits.from_config(health_section())
    assert limits.max_temperature_c == 70.0
    assert limits.max_frame_age_s == compose().camera.frame_max_age_s  # one value, two uses
    assert limits.max_overruns_in_a_row == 3 and limits.max_refused_actions_in_a_row == 3


@pytest.mark.parametrize(
    "key, value",
    [
        ("max_temperature_c", 0), ("max_current_a", -1.0), ("max_joint_speed_rad_s", "fast"),
        ("position_margin_rad", -0.1), ("max_reading_age_s", 0.0), ("max_health_age_s", None),
        ("max_frame_age_s", -1), ("max_overruns_in_a_row", 0), ("max_refused_actions_in_a_row", 1.5),
    ],
)
def test_a_bad_threshold_is_a_config_error_naming_it(key, value):
    health = health_section()
    health[key] = value
    with pytest.raises(ConfigError, match=f"safety.health.{key}"):
        HealthLimits.from_config(health)


def test_unknown_and_missing_threshold_keys_are_config_errors():
    health = health_section()
    health["max_voltage_v"] = 13.0
    del health["max_current_a"]
    with pytest.raises(ConfigError, match="max_voltage_v.*max_current_a"):
        HealthLimits.from_config(health)
    with pytest.raises(ConfigError, match="safety.health.position_margin_rad"):
        make_health_monitor(compose("safety.health.position_margin_rad=-1").safety)
